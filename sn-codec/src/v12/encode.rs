//! [`Packet`] → bytes, into any [`BufMut`].

use bytes::BufMut;

use crate::header::{self, MAX_LEN};
use crate::{EncodeError, QoS};

use super::flags::{
    CLEAN_SESSION, DUP, RETAIN, TOPIC_ID_TYPE_PREDEFINED, TOPIC_ID_TYPE_SHORT, WILL,
};
use super::packet::*;

/// Flags byte bit for a boolean field.
const fn bit(set: bool, mask: u8) -> u8 {
    if set {
        mask
    } else {
        0
    }
}

impl PublishTopic<'_> {
    /// TopicIdType bits and the 2-byte TopicId field.
    fn wire(&self) -> (u8, u16) {
        match *self {
            PublishTopic::Normal(id) => (0, id),
            PublishTopic::Predefined(id) => (TOPIC_ID_TYPE_PREDEFINED, id),
            PublishTopic::Short(name) => (TOPIC_ID_TYPE_SHORT, u16::from_be_bytes(name)),
            // The length fits: encode() refuses packets over 65535 bytes before writing.
            PublishTopic::LongName(name) => (0, u16::try_from(name.len()).unwrap_or(u16::MAX)),
        }
    }
}

impl SubscribeTopic<'_> {
    fn type_bits(&self) -> u8 {
        match self {
            SubscribeTopic::Name(_) => 0,
            SubscribeTopic::Predefined(_) => TOPIC_ID_TYPE_PREDEFINED,
            SubscribeTopic::Short(_) => TOPIC_ID_TYPE_SHORT,
        }
    }

    fn len(&self) -> usize {
        match self {
            SubscribeTopic::Name(name) => name.len(),
            SubscribeTopic::Predefined(_) | SubscribeTopic::Short(_) => 2,
        }
    }

    fn write(&self, buf: &mut impl BufMut) {
        match *self {
            SubscribeTopic::Name(name) => buf.put_slice(name),
            SubscribeTopic::Predefined(id) => buf.put_u16(id),
            SubscribeTopic::Short(name) => buf.put_slice(&name),
        }
    }
}

fn will_topic_len(will: &Option<WillTopic<'_>>) -> usize {
    will.map_or(0, |w| 1 + w.topic.len())
}

impl Packet<'_> {
    /// Bytes after the MsgType.
    fn body_len(&self) -> usize {
        match self {
            Packet::Advertise(_) => 3,
            Packet::SearchGw(_) => 1,
            Packet::GwInfo(g) => 1 + g.gw_add.len(),
            Packet::Connect(c) => 4 + c.client_id.len(),
            Packet::ConnAck { .. } | Packet::WillTopicResp { .. } | Packet::WillMsgResp { .. } => 1,
            Packet::WillTopicReq | Packet::WillMsgReq | Packet::PingResp => 0,
            Packet::WillTopic(w) | Packet::WillTopicUpd(w) => will_topic_len(w),
            Packet::WillMsg { msg } | Packet::WillMsgUpd { msg } => msg.len(),
            Packet::Register(r) => 4 + r.topic_name.len(),
            Packet::RegAck(_) | Packet::PubAck(_) => 5,
            Packet::Publish(p) => {
                let name = match p.topic {
                    PublishTopic::LongName(name) => name.len(),
                    _ => 0,
                };
                5 + name + p.data.len()
            }
            Packet::PubComp { .. }
            | Packet::PubRec { .. }
            | Packet::PubRel { .. }
            | Packet::UnsubAck { .. } => 2,
            Packet::Subscribe(s) => 3 + s.topic.len(),
            Packet::SubAck(_) => 6,
            Packet::Unsubscribe(u) => 3 + u.topic.len(),
            Packet::PingReq { client_id } => client_id.len(),
            Packet::Disconnect(d) => d.duration.map_or(0, |_| 2),
        }
    }

    /// The number of bytes [`Packet::encode`] writes, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        header::total_len(self.body_len())
    }

    /// Field combinations that would decode as a different packet.
    fn check(&self) -> Result<(), EncodeError> {
        let inconsistent = |reason| {
            Err(EncodeError::Inconsistent {
                msg_type: self.msg_type(),
                reason,
            })
        };
        match self {
            Packet::Publish(p) => match (p.topic, p.qos) {
                (PublishTopic::LongName(_), q) if q != QoS::MinusOne => {
                    inconsistent("a long topic name is only carried at QoS -1")
                }
                (PublishTopic::Normal(_), QoS::MinusOne) => inconsistent(
                    "QoS -1 with a normal topic id would read as the long-name form; use a predefined id or short name",
                ),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The total length, after checking that the packet can be encoded at all.
    pub(crate) fn checked_len(&self) -> Result<usize, EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        if len > MAX_LEN {
            return Err(EncodeError::TooLong {
                msg_type: self.msg_type(),
                len,
            });
        }
        Ok(len)
    }

    /// Writes header and body; `len` comes from [`Packet::checked_len`] and the buffer has room.
    pub(crate) fn write_checked(&self, buf: &mut impl BufMut, len: usize) {
        header::write(buf, len, self.msg_type().to_u8());
        self.write_body(buf);
    }

    /// Encodes the packet into `buf`, with the 1-byte length form up to 255 bytes and the
    /// 3-byte form above. Nothing is written when an error is returned.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let len = self.checked_len()?;
        if buf.remaining_mut() < len {
            return Err(EncodeError::BufferTooSmall {
                needed: len,
                remaining: buf.remaining_mut(),
            });
        }
        self.write_checked(buf, len);
        Ok(())
    }

    /// Encodes into a new `Vec`, sized exactly.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len().min(MAX_LEN));
        self.encode(&mut out)?;
        Ok(out)
    }

    fn write_body(&self, buf: &mut impl BufMut) {
        match self {
            Packet::Advertise(a) => {
                buf.put_u8(a.gw_id);
                buf.put_u16(a.duration);
            }
            Packet::SearchGw(s) => buf.put_u8(s.radius),
            Packet::GwInfo(g) => {
                buf.put_u8(g.gw_id);
                buf.put_slice(g.gw_add);
            }
            Packet::Connect(c) => {
                buf.put_u8(bit(c.will, WILL) | bit(c.clean_session, CLEAN_SESSION));
                buf.put_u8(c.protocol_id);
                buf.put_u16(c.duration);
                buf.put_slice(c.client_id);
            }
            Packet::ConnAck { return_code }
            | Packet::WillTopicResp { return_code }
            | Packet::WillMsgResp { return_code } => buf.put_u8(return_code.to_u8()),
            Packet::WillTopicReq | Packet::WillMsgReq | Packet::PingResp => {}
            Packet::WillTopic(will) | Packet::WillTopicUpd(will) => {
                if let Some(w) = will {
                    buf.put_u8(w.qos.to_flags() | bit(w.retain, RETAIN));
                    buf.put_slice(w.topic);
                }
            }
            Packet::WillMsg { msg } | Packet::WillMsgUpd { msg } => buf.put_slice(msg),
            Packet::Register(r) => {
                buf.put_u16(r.topic_id);
                buf.put_u16(r.msg_id);
                buf.put_slice(r.topic_name);
            }
            Packet::RegAck(RegAck {
                topic_id,
                msg_id,
                return_code,
            })
            | Packet::PubAck(PubAck {
                topic_id,
                msg_id,
                return_code,
            }) => {
                buf.put_u16(*topic_id);
                buf.put_u16(*msg_id);
                buf.put_u8(return_code.to_u8());
            }
            Packet::Publish(p) => {
                let (type_bits, topic_field) = p.topic.wire();
                buf.put_u8(bit(p.dup, DUP) | p.qos.to_flags() | bit(p.retain, RETAIN) | type_bits);
                buf.put_u16(topic_field);
                buf.put_u16(p.msg_id);
                if let PublishTopic::LongName(name) = p.topic {
                    buf.put_slice(name);
                }
                buf.put_slice(p.data);
            }
            Packet::PubComp { msg_id }
            | Packet::PubRec { msg_id }
            | Packet::PubRel { msg_id }
            | Packet::UnsubAck { msg_id } => buf.put_u16(*msg_id),
            Packet::Subscribe(s) => {
                buf.put_u8(bit(s.dup, DUP) | s.qos.to_flags() | s.topic.type_bits());
                buf.put_u16(s.msg_id);
                s.topic.write(buf);
            }
            Packet::SubAck(s) => {
                buf.put_u8(s.qos.to_flags());
                buf.put_u16(s.topic_id);
                buf.put_u16(s.msg_id);
                buf.put_u8(s.return_code.to_u8());
            }
            Packet::Unsubscribe(u) => {
                buf.put_u8(u.topic.type_bits());
                buf.put_u16(u.msg_id);
                u.topic.write(buf);
            }
            Packet::PingReq { client_id } => buf.put_slice(client_id),
            Packet::Disconnect(d) => {
                if let Some(duration) = d.duration {
                    buf.put_u16(duration);
                }
            }
        }
    }
}
