//! Bytes → [`Packet`]. Slice patterns only: no indexing, so no input can make it panic, and
//! nothing is allocated.

use crate::header::Header;
use crate::{DecodeError, Expected, MsgType, QoS};

use super::flags::{CLEAN_SESSION, DUP, RETAIN, TOPIC_ID_TYPE, WILL};
use super::packet::*;
use super::ReturnCode;

impl<'a> Packet<'a> {
    /// Decodes one MQTT-SN v1.2 message that fills `datagram` exactly.
    ///
    /// A forwarder-encapsulated datagram (MsgType 0xFE) is refused here with
    /// [`DecodeError::UnexpectedEncapsulation`]; decode what arrives from the network with
    /// [`super::Frame::decode`], which accepts both.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        // An encapsulation's Len counts only its own header, so the length check below would
        // misreport it as a mismatch; name it for what it is first.
        match *datagram {
            [0x01, _, _, 0xFE, ..] => return Err(DecodeError::UnexpectedEncapsulation { at: 3 }),
            [len, 0xFE, ..] if len != 0x01 => {
                return Err(DecodeError::UnexpectedEncapsulation { at: 1 })
            }
            _ => {}
        }
        let header = Header::parse(datagram)?;
        let type_at = header.header_len - 1;
        let msg_type = MsgType::from_u8(header.msg_type).ok_or(DecodeError::ReservedMsgType {
            msg_type: header.msg_type,
            at: type_at,
        })?;
        let body = datagram.get(header.header_len..).unwrap_or_default();
        Body {
            bytes: body,
            at: header.header_len,
            msg_type,
        }
        .decode()
    }
}

/// The bytes after the MsgType, with where they start (for error offsets).
struct Body<'a> {
    bytes: &'a [u8],
    at: usize,
    msg_type: MsgType,
}

fn u16be(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

impl<'a> Body<'a> {
    fn wrong_len(&self, expected: Expected) -> DecodeError {
        DecodeError::BodyLength {
            msg_type: self.msg_type,
            at: self.at,
            expected,
            actual: self.bytes.len(),
        }
    }

    fn reserved_topic_id_type(&self) -> DecodeError {
        DecodeError::ReservedTopicIdType {
            msg_type: self.msg_type,
            at: self.at,
        }
    }

    /// A body that must be empty.
    fn empty(&self, packet: Packet<'a>) -> Result<Packet<'a>, DecodeError> {
        if self.bytes.is_empty() {
            Ok(packet)
        } else {
            Err(self.wrong_len(Expected::Exactly(0)))
        }
    }

    /// A body of exactly one ReturnCode byte.
    fn return_code(&self) -> Result<ReturnCode, DecodeError> {
        match *self.bytes {
            [rc] => Ok(ReturnCode::from_u8(rc)),
            _ => Err(self.wrong_len(Expected::Exactly(1))),
        }
    }

    /// A body of exactly one MsgId.
    fn msg_id(&self) -> Result<u16, DecodeError> {
        match *self.bytes {
            [hi, lo] => Ok(u16be(hi, lo)),
            _ => Err(self.wrong_len(Expected::Exactly(2))),
        }
    }

    /// TopicId, MsgId, ReturnCode: the shared layout of REGACK and PUBACK.
    fn id_id_rc(&self) -> Result<(u16, u16, ReturnCode), DecodeError> {
        match *self.bytes {
            [t0, t1, m0, m1, rc] => Ok((u16be(t0, t1), u16be(m0, m1), ReturnCode::from_u8(rc))),
            _ => Err(self.wrong_len(Expected::Exactly(5))),
        }
    }

    /// The optional Flags + topic of WILLTOPIC and WILLTOPICUPD.
    fn will_topic(&self) -> Option<WillTopic<'a>> {
        match self.bytes {
            [] => None,
            [flags, topic @ ..] => Some(WillTopic {
                qos: QoS::from_flags(*flags),
                retain: flags & RETAIN != 0,
                topic,
            }),
        }
    }

    /// The topic of SUBSCRIBE/UNSUBSCRIBE: a name to the end, or exactly 2 id bytes.
    fn subscribe_topic(
        &self,
        flags: u8,
        rest: &'a [u8],
    ) -> Result<SubscribeTopic<'a>, DecodeError> {
        let two = |rest: &[u8]| match *rest {
            [hi, lo] => Ok([hi, lo]),
            // Flags and MsgId take 3 bytes, the id 2 more.
            _ => Err(self.wrong_len(Expected::Exactly(5))),
        };
        match flags & TOPIC_ID_TYPE {
            0b00 => Ok(SubscribeTopic::Name(rest)),
            0b01 => two(rest).map(|[hi, lo]| SubscribeTopic::Predefined(u16be(hi, lo))),
            0b10 => two(rest).map(SubscribeTopic::Short),
            _ => Err(self.reserved_topic_id_type()),
        }
    }

    fn decode(self) -> Result<Packet<'a>, DecodeError> {
        let packet = match self.msg_type {
            MsgType::Advertise => match *self.bytes {
                [gw_id, d0, d1] => Packet::Advertise(Advertise {
                    gw_id,
                    duration: u16be(d0, d1),
                }),
                _ => return Err(self.wrong_len(Expected::Exactly(3))),
            },
            MsgType::SearchGw => match *self.bytes {
                [radius] => Packet::SearchGw(SearchGw { radius }),
                _ => return Err(self.wrong_len(Expected::Exactly(1))),
            },
            MsgType::GwInfo => match self.bytes {
                [gw_id, gw_add @ ..] => Packet::GwInfo(GwInfo {
                    gw_id: *gw_id,
                    gw_add,
                }),
                _ => return Err(self.wrong_len(Expected::AtLeast(1))),
            },
            MsgType::Connect => match self.bytes {
                [flags, protocol_id, d0, d1, client_id @ ..] => Packet::Connect(Connect {
                    will: flags & WILL != 0,
                    clean_session: flags & CLEAN_SESSION != 0,
                    protocol_id: *protocol_id,
                    duration: u16be(*d0, *d1),
                    client_id,
                }),
                _ => return Err(self.wrong_len(Expected::AtLeast(4))),
            },
            MsgType::ConnAck => Packet::ConnAck {
                return_code: self.return_code()?,
            },
            MsgType::WillTopicReq => return self.empty(Packet::WillTopicReq),
            MsgType::WillTopic => Packet::WillTopic(self.will_topic()),
            MsgType::WillMsgReq => return self.empty(Packet::WillMsgReq),
            MsgType::WillMsg => Packet::WillMsg { msg: self.bytes },
            MsgType::Register => match self.bytes {
                [t0, t1, m0, m1, topic_name @ ..] => Packet::Register(Register {
                    topic_id: u16be(*t0, *t1),
                    msg_id: u16be(*m0, *m1),
                    topic_name,
                }),
                _ => return Err(self.wrong_len(Expected::AtLeast(4))),
            },
            MsgType::RegAck => {
                let (topic_id, msg_id, return_code) = self.id_id_rc()?;
                Packet::RegAck(RegAck {
                    topic_id,
                    msg_id,
                    return_code,
                })
            }
            MsgType::Publish => return self.publish(),
            MsgType::PubAck => {
                let (topic_id, msg_id, return_code) = self.id_id_rc()?;
                Packet::PubAck(PubAck {
                    topic_id,
                    msg_id,
                    return_code,
                })
            }
            MsgType::PubComp => Packet::PubComp {
                msg_id: self.msg_id()?,
            },
            MsgType::PubRec => Packet::PubRec {
                msg_id: self.msg_id()?,
            },
            MsgType::PubRel => Packet::PubRel {
                msg_id: self.msg_id()?,
            },
            MsgType::Subscribe => match self.bytes {
                [flags, m0, m1, rest @ ..] => Packet::Subscribe(Subscribe {
                    dup: flags & DUP != 0,
                    qos: QoS::from_flags(*flags),
                    msg_id: u16be(*m0, *m1),
                    topic: self.subscribe_topic(*flags, rest)?,
                }),
                _ => return Err(self.wrong_len(Expected::AtLeast(3))),
            },
            MsgType::SubAck => match *self.bytes {
                [flags, t0, t1, m0, m1, rc] => Packet::SubAck(SubAck {
                    qos: QoS::from_flags(flags),
                    topic_id: u16be(t0, t1),
                    msg_id: u16be(m0, m1),
                    return_code: ReturnCode::from_u8(rc),
                }),
                _ => return Err(self.wrong_len(Expected::Exactly(6))),
            },
            MsgType::Unsubscribe => match self.bytes {
                [flags, m0, m1, rest @ ..] => Packet::Unsubscribe(Unsubscribe {
                    msg_id: u16be(*m0, *m1),
                    topic: self.subscribe_topic(*flags, rest)?,
                }),
                _ => return Err(self.wrong_len(Expected::AtLeast(3))),
            },
            MsgType::UnsubAck => Packet::UnsubAck {
                msg_id: self.msg_id()?,
            },
            MsgType::PingReq => Packet::PingReq {
                client_id: self.bytes,
            },
            MsgType::PingResp => return self.empty(Packet::PingResp),
            MsgType::Disconnect => match *self.bytes {
                [] => Packet::Disconnect(Disconnect { duration: None }),
                [d0, d1] => Packet::Disconnect(Disconnect {
                    duration: Some(u16be(d0, d1)),
                }),
                _ => return Err(self.wrong_len(Expected::ZeroOr(2))),
            },
            MsgType::WillTopicUpd => Packet::WillTopicUpd(self.will_topic()),
            MsgType::WillTopicResp => Packet::WillTopicResp {
                return_code: self.return_code()?,
            },
            MsgType::WillMsgUpd => Packet::WillMsgUpd { msg: self.bytes },
            MsgType::WillMsgResp => Packet::WillMsgResp {
                return_code: self.return_code()?,
            },
            MsgType::Encapsulated => {
                return Err(DecodeError::UnexpectedEncapsulation { at: self.at - 1 })
            }
        };
        Ok(packet)
    }

    fn publish(&self) -> Result<Packet<'a>, DecodeError> {
        let [flags, t0, t1, m0, m1, rest @ ..] = self.bytes else {
            return Err(self.wrong_len(Expected::AtLeast(5)));
        };
        let qos = QoS::from_flags(*flags);
        let topic_field = u16be(*t0, *t1);
        let (topic, data) = match flags & TOPIC_ID_TYPE {
            0b00 if qos == QoS::MinusOne => {
                // Long-name form: the TopicId field is the name's length, the name leads the data.
                let name_len = usize::from(topic_field);
                let Some((name, data)) = rest.split_at_checked(name_len) else {
                    return Err(DecodeError::TopicNameOverrun {
                        at: self.at + 1,
                        declared: name_len,
                        available: rest.len(),
                    });
                };
                (PublishTopic::LongName(name), data)
            }
            0b00 => (PublishTopic::Normal(topic_field), rest),
            0b01 => (PublishTopic::Predefined(topic_field), rest),
            0b10 => (PublishTopic::Short([*t0, *t1]), rest),
            _ => return Err(self.reserved_topic_id_type()),
        };
        Ok(Packet::Publish(Publish {
            dup: flags & DUP != 0,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            msg_id: u16be(*m0, *m1),
            data,
        }))
    }
}
