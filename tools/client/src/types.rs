//! The values that go into and come out of the client machine.

use std::time::Duration;

use sn_codec::v12::{PublishTopic, ReturnCode, SubAck};
use sn_codec::QoS;

/// Retransmission timers (v1.2 §6.13: T_retry and N_retry) and how long one request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Resend an unanswered request after this long (T_retry).
    pub retry: Duration,
    /// Resend at most this many times (N_retry).
    pub retries: u32,
    /// Give a request up this long after it was sent, or after its last progress (a
    /// WILLTOPICREQ during CONNECT, a PUBREC during a QoS 2 PUBLISH).
    pub timeout: Duration,
}

impl Timing {
    /// `retry` and `retries`, with the timeout the whole schedule needs: the first send and
    /// every resend, each given `retry` to be answered.
    pub fn new(retry: Duration, retries: u32) -> Self {
        Timing {
            retry,
            retries,
            timeout: retry.saturating_mul(retries.saturating_add(1)),
        }
    }

    /// The same timers with another timeout.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Timing { timeout, ..self }
    }
}

/// What the machine does with a PUBLISH on a normal topic id it was never told the name of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTopicIds {
    /// Answer PUBACK 0x02 (invalid topic id) and deliver nothing, as v1.2 §6.10 asks.
    Reject,
    /// Acknowledge and deliver it without a name (a load generator or a test client that
    /// only counts what arrives).
    Accept,
}

/// How a client is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client id, sent in CONNECT and in the PINGREQ that wakes a sleeping client.
    pub client_id: String,
    /// Retransmission timers of requests.
    pub timing: Timing,
    /// Send PINGREQ after a keep-alive period without sending, and report the gateway lost
    /// when it goes unanswered. Off for clients whose silence is the point (a test of the
    /// gateway's keep-alive) or that do not need it (a bench mote).
    pub keep_alive_pings: bool,
    /// What to do with a PUBLISH on an unknown normal topic id.
    pub unknown_topic_ids: UnknownTopicIds,
}

impl ClientConfig {
    /// `client_id` with T_retry 10 s, N_retry 3 (v1.2 §6.13's suggestions), keep-alive pings
    /// on and unknown topic ids rejected.
    pub fn new(client_id: impl Into<String>) -> Self {
        ClientConfig {
            client_id: client_id.into(),
            timing: Timing::new(Duration::from_secs(10), 3),
            keep_alive_pings: true,
            unknown_topic_ids: UnknownTopicIds::Reject,
        }
    }
}

/// The Will the gateway asks for during CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will topic name.
    pub topic: String,
    /// Will payload.
    pub message: Vec<u8>,
    /// QoS it is published with.
    pub qos: QoS,
    /// Whether it is published retained.
    pub retain: bool,
}

impl Will {
    /// A QoS 1, non-retained Will.
    pub fn new(topic: &str, message: &[u8]) -> Will {
        Will {
            topic: topic.to_owned(),
            message: message.to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }
    }
}

/// What goes into CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Keep-alive (Duration) in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// CleanSession flag.
    pub clean_session: bool,
    /// The Will, sent in the WILLTOPIC/WILLMSG handshake.
    pub will: Option<Will>,
}

impl Default for ConnectOptions {
    /// CleanSession=1, keep-alive 60 s, no Will.
    fn default() -> Self {
        ConnectOptions {
            keep_alive: 60,
            clean_session: true,
            will: None,
        }
    }
}

/// The topic of a PUBLISH, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A normal topic id (from REGISTER/REGACK or SUBACK).
    Normal(u16),
    /// A predefined topic id.
    Predefined(u16),
    /// A two-character short topic name.
    Short([u8; 2]),
    /// A full topic name in a QoS -1 PUBLISH (TopicIdType 00).
    LongName(String),
}

impl Topic {
    /// The owned form of a PUBLISH's topic.
    pub fn from_codec(topic: &PublishTopic<'_>) -> Topic {
        match *topic {
            PublishTopic::Normal(id) => Topic::Normal(id),
            PublishTopic::Predefined(id) => Topic::Predefined(id),
            PublishTopic::Short(name) => Topic::Short(name),
            PublishTopic::LongName(name) => Topic::LongName(String::from_utf8_lossy(name).into()),
        }
    }

    /// The borrowed form, for encoding.
    pub fn to_codec(&self) -> PublishTopic<'_> {
        match self {
            Topic::Normal(id) => PublishTopic::Normal(*id),
            Topic::Predefined(id) => PublishTopic::Predefined(*id),
            Topic::Short(name) => PublishTopic::Short(*name),
            Topic::LongName(name) => PublishTopic::LongName(name.as_bytes()),
        }
    }
}

/// The 2-byte TopicId field of a PUBLISH, as echoed in its PUBACK.
pub fn topic_id_field(topic: &PublishTopic<'_>) -> u16 {
    match *topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
        PublishTopic::LongName(_) => 0,
    }
}

/// A PUBLISH the gateway delivered, already acknowledged at its QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic as the PUBLISH carried it.
    pub topic: Topic,
    /// The topic name when the client knows it: a normal id from a REGISTER, a REGACK or a
    /// SUBACK; a predefined id named with [`Client::name_predefined`](crate::Client::name_predefined);
    /// a short or long name.
    pub topic_name: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
    /// QoS it was delivered with.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
    /// The MsgId.
    pub msg_id: u16,
    /// A QoS 2 PUBLISH received again before its PUBREL: acknowledged again, and to be
    /// delivered to an application only once (a counter may still want to see it).
    pub repeat: bool,
}

/// A request the client waits on an answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// CONNECT, waiting for CONNACK (or WILLTOPICREQ).
    Connect,
    /// WILLTOPIC, waiting for WILLMSGREQ (or CONNACK).
    WillTopic,
    /// WILLMSG, waiting for CONNACK.
    WillMsg,
    /// REGISTER, waiting for REGACK.
    Register {
        /// Its MsgId.
        msg_id: u16,
    },
    /// PUBLISH at QoS 1 or 2, waiting for PUBACK or PUBREC.
    Publish {
        /// Its MsgId.
        msg_id: u16,
        /// QoS 1 or 2.
        qos: QoS,
    },
    /// PUBREL, waiting for PUBCOMP.
    PubRel {
        /// Its MsgId.
        msg_id: u16,
    },
    /// SUBSCRIBE, waiting for SUBACK.
    Subscribe {
        /// Its MsgId.
        msg_id: u16,
    },
    /// UNSUBSCRIBE, waiting for UNSUBACK.
    Unsubscribe {
        /// Its MsgId.
        msg_id: u16,
    },
    /// PINGREQ, waiting for PINGRESP.
    Ping,
    /// PINGREQ with the client id (waking up), waiting for PINGRESP.
    Wake,
    /// DISCONNECT, waiting for the gateway's DISCONNECT.
    Disconnect,
    /// DISCONNECT with a sleep duration, waiting for the gateway's DISCONNECT.
    Sleep,
    /// WILLTOPICUPD, waiting for WILLTOPICRESP.
    WillTopicUpdate,
    /// WILLMSGUPD, waiting for WILLMSGRESP.
    WillMessageUpdate,
}

impl Request {
    /// The name of the answer awaited, e.g. `CONNACK`.
    pub fn awaited(&self) -> &'static str {
        match self {
            Request::Connect | Request::WillTopic | Request::WillMsg => "CONNACK",
            Request::Register { .. } => "REGACK",
            Request::Publish {
                qos: QoS::ExactlyOnce,
                ..
            } => "PUBREC",
            Request::Publish { .. } => "PUBACK",
            Request::PubRel { .. } => "PUBCOMP",
            Request::Subscribe { .. } => "SUBACK",
            Request::Unsubscribe { .. } => "UNSUBACK",
            Request::Ping | Request::Wake => "PINGRESP",
            Request::Disconnect | Request::Sleep => "DISCONNECT",
            Request::WillTopicUpdate => "WILLTOPICRESP",
            Request::WillMessageUpdate => "WILLMSGRESP",
        }
    }
}

/// What happened, for [`Client::poll_event`](crate::Client::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The CONNACK of [`Client::connect`](crate::Client::connect) (a refusal may come at any
    /// step of the Will handshake).
    ConnAck(ReturnCode),
    /// The REGACK of [`Client::register`](crate::Client::register).
    RegAck {
        /// The REGISTER's MsgId.
        msg_id: u16,
        /// The topic id assigned (remembered with its name when accepted).
        topic_id: u16,
        /// The return code.
        code: ReturnCode,
    },
    /// The end of a QoS 1 or 2 PUBLISH's flow: its PUBACK, or its PUBCOMP (`Accepted`), or a
    /// PUBACK that refused it.
    Published {
        /// The PUBLISH's MsgId.
        msg_id: u16,
        /// The return code.
        code: ReturnCode,
    },
    /// The SUBACK of [`Client::subscribe`](crate::Client::subscribe).
    SubAck(SubAck),
    /// The UNSUBACK of [`Client::unsubscribe`](crate::Client::unsubscribe).
    UnsubAck {
        /// The UNSUBSCRIBE's MsgId.
        msg_id: u16,
    },
    /// The PINGRESP of [`Client::ping`](crate::Client::ping) or [`Client::wake`](crate::Client::wake).
    PingResp,
    /// The gateway's DISCONNECT answering [`Client::disconnect`](crate::Client::disconnect)
    /// or [`Client::sleep`](crate::Client::sleep).
    DisconnectAck,
    /// The WILLTOPICRESP of a Will topic update.
    WillTopicResp(ReturnCode),
    /// The WILLMSGRESP of a Will message update.
    WillMsgResp(ReturnCode),
    /// A request went unanswered through every retransmission and its timeout.
    TimedOut(Request),
    /// A PUBLISH from the gateway, already acknowledged.
    Message(Message),
    /// The gateway REGISTERed a topic name (accepted and remembered).
    Registered {
        /// The topic id.
        topic_id: u16,
        /// Its name.
        name: String,
    },
    /// The gateway sent DISCONNECT on its own: the session is over.
    Disconnected {
        /// The Duration field, if any.
        duration: Option<u16>,
    },
    /// A PUBACK refusing something no request waits for (a QoS 0 PUBLISH, or a late one).
    Rejected {
        /// Its TopicId field.
        topic_id: u16,
        /// Its MsgId.
        msg_id: u16,
        /// The return code.
        code: ReturnCode,
    },
    /// Keep-alive PINGREQs went unanswered: the gateway is lost.
    GatewayLost {
        /// How long after the first PINGREQ.
        after: Duration,
    },
}

/// What [`Client::handle_datagram`](crate::Client::handle_datagram) made of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// Handled: an answer to the pending request, or something the client answers itself.
    Consumed,
    /// A packet that is neither: the caller may look at it (a test expecting it) or drop it.
    Unexpected,
    /// Not an MQTT-SN v1.2 packet; dropped.
    Undecodable,
}

/// Why a request could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Another request is waiting for its answer: v1.2 clients have one at a time (§6.13).
    Busy(Request),
    /// The packet could not be encoded (a name or payload too long).
    Encode(sn_codec::EncodeError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Busy(request) => {
                write!(f, "another request waits for its {}", request.awaited())
            }
            ClientError::Encode(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<sn_codec::EncodeError> for ClientError {
    fn from(e: sn_codec::EncodeError) -> Self {
        ClientError::Encode(e)
    }
}
