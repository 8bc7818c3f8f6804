//! The MQTT-SN v1.2 messages as borrowed views (v1.2 §5.4).
//!
//! Text fields (client ids, topic names) are raw bytes here: the layout says nothing about their
//! validity, and the gateway must still answer a REGISTER with a bad name (REGACK 0x03), which it
//! could not do if decoding refused it. Check them with [`crate::validate`].

use crate::{MsgType, QoS};

use super::ReturnCode;

/// One MQTT-SN v1.2 message. Borrows its variable-length fields from the decoded datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// ADVERTISE (0x00): a gateway announces itself.
    Advertise(Advertise),
    /// SEARCHGW (0x01): a client looks for a gateway.
    SearchGw(SearchGw),
    /// GWINFO (0x02): answer to SEARCHGW.
    GwInfo(GwInfo<'a>),
    /// CONNECT (0x04).
    Connect(Connect<'a>),
    /// CONNACK (0x05).
    ConnAck {
        /// Whether the connection is accepted.
        return_code: ReturnCode,
    },
    /// WILLTOPICREQ (0x06): the gateway asks for the Will topic.
    WillTopicReq,
    /// WILLTOPIC (0x07). `None` is the empty 2-byte form, which deletes the Will.
    WillTopic(Option<WillTopic<'a>>),
    /// WILLMSGREQ (0x08): the gateway asks for the Will message.
    WillMsgReq,
    /// WILLMSG (0x09).
    WillMsg {
        /// The Will payload (binary-safe, may be empty).
        msg: &'a [u8],
    },
    /// REGISTER (0x0A), either direction.
    Register(Register<'a>),
    /// REGACK (0x0B), either direction.
    RegAck(RegAck),
    /// PUBLISH (0x0C), either direction.
    Publish(Publish<'a>),
    /// PUBACK (0x0D), either direction.
    PubAck(PubAck),
    /// PUBCOMP (0x0E): last step of QoS 2.
    PubComp {
        /// The exchange being completed.
        msg_id: u16,
    },
    /// PUBREC (0x0F): first answer in QoS 2.
    PubRec {
        /// The exchange being acknowledged.
        msg_id: u16,
    },
    /// PUBREL (0x10): release in QoS 2.
    PubRel {
        /// The exchange being released.
        msg_id: u16,
    },
    /// SUBSCRIBE (0x12).
    Subscribe(Subscribe<'a>),
    /// SUBACK (0x13).
    SubAck(SubAck),
    /// UNSUBSCRIBE (0x14).
    Unsubscribe(Unsubscribe<'a>),
    /// UNSUBACK (0x15).
    UnsubAck {
        /// The UNSUBSCRIBE being acknowledged.
        msg_id: u16,
    },
    /// PINGREQ (0x16). A sleeping client wakes with its client id in it.
    PingReq {
        /// The client id, or empty for the plain 2-byte PINGREQ.
        client_id: &'a [u8],
    },
    /// PINGRESP (0x17).
    PingResp,
    /// DISCONNECT (0x18), either direction.
    Disconnect(Disconnect),
    /// WILLTOPICUPD (0x1A). `None` is the empty 2-byte form, which deletes the whole Will.
    WillTopicUpd(Option<WillTopic<'a>>),
    /// WILLTOPICRESP (0x1B).
    WillTopicResp {
        /// Outcome of the update.
        return_code: ReturnCode,
    },
    /// WILLMSGUPD (0x1C).
    WillMsgUpd {
        /// The new Will payload.
        msg: &'a [u8],
    },
    /// WILLMSGRESP (0x1D).
    WillMsgResp {
        /// Outcome of the update.
        return_code: ReturnCode,
    },
}

impl Packet<'_> {
    /// The MsgType this packet is sent as.
    pub const fn msg_type(&self) -> MsgType {
        match self {
            Packet::Advertise(_) => MsgType::Advertise,
            Packet::SearchGw(_) => MsgType::SearchGw,
            Packet::GwInfo(_) => MsgType::GwInfo,
            Packet::Connect(_) => MsgType::Connect,
            Packet::ConnAck { .. } => MsgType::ConnAck,
            Packet::WillTopicReq => MsgType::WillTopicReq,
            Packet::WillTopic(_) => MsgType::WillTopic,
            Packet::WillMsgReq => MsgType::WillMsgReq,
            Packet::WillMsg { .. } => MsgType::WillMsg,
            Packet::Register(_) => MsgType::Register,
            Packet::RegAck(_) => MsgType::RegAck,
            Packet::Publish(_) => MsgType::Publish,
            Packet::PubAck(_) => MsgType::PubAck,
            Packet::PubComp { .. } => MsgType::PubComp,
            Packet::PubRec { .. } => MsgType::PubRec,
            Packet::PubRel { .. } => MsgType::PubRel,
            Packet::Subscribe(_) => MsgType::Subscribe,
            Packet::SubAck(_) => MsgType::SubAck,
            Packet::Unsubscribe(_) => MsgType::Unsubscribe,
            Packet::UnsubAck { .. } => MsgType::UnsubAck,
            Packet::PingReq { .. } => MsgType::PingReq,
            Packet::PingResp => MsgType::PingResp,
            Packet::Disconnect(_) => MsgType::Disconnect,
            Packet::WillTopicUpd(_) => MsgType::WillTopicUpd,
            Packet::WillTopicResp { .. } => MsgType::WillTopicResp,
            Packet::WillMsgUpd { .. } => MsgType::WillMsgUpd,
            Packet::WillMsgResp { .. } => MsgType::WillMsgResp,
        }
    }
}

/// ADVERTISE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertise {
    /// The advertising gateway.
    pub gw_id: u8,
    /// Seconds until the next ADVERTISE.
    pub duration: u16,
}

/// SEARCHGW body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchGw {
    /// Broadcast radius in hops; 0 means every node.
    pub radius: u8,
}

/// GWINFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GwInfo<'a> {
    /// The gateway being described.
    pub gw_id: u8,
    /// Its address on the client network, raw; empty when a gateway answers for itself.
    pub gw_add: &'a [u8],
}

/// CONNECT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The client will send a Will (WILLTOPICREQ/WILLMSGREQ follow).
    pub will: bool,
    /// CleanSession: drop subscriptions, topic ids and the Will of an earlier session.
    pub clean_session: bool,
    /// ProtocolId as received; only 0x01 is v1.2 (see [`crate::ProtocolVersion`]).
    pub protocol_id: u8,
    /// Keep-alive in seconds.
    pub duration: u16,
    /// The client id, raw (check it with [`crate::validate::client_id`]).
    pub client_id: &'a [u8],
}

impl Connect<'_> {
    /// The protocol version the ProtocolId names, if this crate speaks it.
    pub const fn version(&self) -> Option<crate::ProtocolVersion> {
        crate::ProtocolVersion::from_protocol_id(self.protocol_id)
    }
}

/// WILLTOPIC / WILLTOPICUPD body when not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WillTopic<'a> {
    /// QoS the Will is published with.
    pub qos: QoS,
    /// Whether the Will is published retained.
    pub retain: bool,
    /// The Will topic name, raw.
    pub topic: &'a [u8],
}

/// REGISTER body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register<'a> {
    /// 0x0000 from a client; the id being assigned when the gateway sends it.
    pub topic_id: u16,
    /// Matches the REGACK.
    pub msg_id: u16,
    /// The topic name, raw.
    pub topic_name: &'a [u8],
}

/// REGACK body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegAck {
    /// The id assigned (gateway → client) or echoed (client → gateway).
    pub topic_id: u16,
    /// The REGISTER being acknowledged.
    pub msg_id: u16,
    /// Outcome.
    pub return_code: ReturnCode,
}

/// The topic of a PUBLISH, by its TopicIdType and QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishTopic<'a> {
    /// TopicIdType `00`: an id from REGISTER/REGACK or SUBACK.
    Normal(u16),
    /// TopicIdType `01`: an id configured on both sides.
    Predefined(u16),
    /// TopicIdType `10`: a two-character topic name carried in the TopicId field.
    Short([u8; 2]),
    /// TopicIdType `00` with QoS -1: the name itself precedes the data and the TopicId field
    /// holds its length (reference §4.9; Paho extension, v2.0 Annex C.6).
    LongName(&'a [u8]),
}

/// PUBLISH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Retransmission of an earlier PUBLISH with the same MsgId.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// Retained message.
    pub retain: bool,
    /// Where it is published.
    pub topic: PublishTopic<'a>,
    /// 0 at QoS 0 and -1; matches the acks at QoS 1 and 2.
    pub msg_id: u16,
    /// The application payload.
    pub data: &'a [u8],
}

/// PUBACK body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// The topic id of the PUBLISH.
    pub topic_id: u16,
    /// The PUBLISH being acknowledged.
    pub msg_id: u16,
    /// Outcome; a non-zero code ends the exchange at any QoS.
    pub return_code: ReturnCode,
}

/// The topic of a SUBSCRIBE or UNSUBSCRIBE, by its TopicIdType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeTopic<'a> {
    /// TopicIdType `00`: a topic name or filter (may contain `+` and `#`), raw.
    Name(&'a [u8]),
    /// TopicIdType `01`: a predefined topic id.
    Predefined(u16),
    /// TopicIdType `10`: a two-character topic name.
    Short([u8; 2]),
}

/// SUBSCRIBE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Retransmission of an earlier SUBSCRIBE.
    pub dup: bool,
    /// Requested QoS.
    pub qos: QoS,
    /// Matches the SUBACK.
    pub msg_id: u16,
    /// What is subscribed to.
    pub topic: SubscribeTopic<'a>,
}

/// SUBACK body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck {
    /// Granted QoS.
    pub qos: QoS,
    /// The topic id assigned; 0x0000 for a wildcard filter.
    pub topic_id: u16,
    /// The SUBSCRIBE being acknowledged.
    pub msg_id: u16,
    /// Outcome.
    pub return_code: ReturnCode,
}

/// UNSUBSCRIBE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// Matches the UNSUBACK.
    pub msg_id: u16,
    /// What is unsubscribed from.
    pub topic: SubscribeTopic<'a>,
}

/// DISCONNECT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// The sleep duration in seconds, when the client is going to sleep; exactly as received.
    pub duration: Option<u16>,
}

impl Disconnect {
    /// The sleep duration if this DISCONNECT puts the client to sleep. A Duration of 0 is
    /// treated as a plain DISCONNECT (reference §7, vector X3): a zero-second sleep would only
    /// make the client lost at once.
    pub fn sleep_duration(&self) -> Option<std::num::NonZeroU16> {
        self.duration.and_then(std::num::NonZeroU16::new)
    }
}
