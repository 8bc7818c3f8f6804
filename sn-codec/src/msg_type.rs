//! The MsgType byte of MQTT-SN v1.2.

use std::fmt;

/// An MQTT-SN v1.2 message type (v1.2 §5.2.2). Reserved codes have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// 0x00, gateway → broadcast.
    Advertise = 0x00,
    /// 0x01, client → broadcast.
    SearchGw = 0x01,
    /// 0x02, gateway or client → broadcast.
    GwInfo = 0x02,
    /// 0x04, client → gateway.
    Connect = 0x04,
    /// 0x05, gateway → client.
    ConnAck = 0x05,
    /// 0x06, gateway → client.
    WillTopicReq = 0x06,
    /// 0x07, client → gateway.
    WillTopic = 0x07,
    /// 0x08, gateway → client.
    WillMsgReq = 0x08,
    /// 0x09, client → gateway.
    WillMsg = 0x09,
    /// 0x0A, both directions.
    Register = 0x0A,
    /// 0x0B, both directions.
    RegAck = 0x0B,
    /// 0x0C, both directions.
    Publish = 0x0C,
    /// 0x0D, both directions.
    PubAck = 0x0D,
    /// 0x0E, both directions (note: before PUBREC, unlike MQTT).
    PubComp = 0x0E,
    /// 0x0F, both directions.
    PubRec = 0x0F,
    /// 0x10, both directions.
    PubRel = 0x10,
    /// 0x12, client → gateway.
    Subscribe = 0x12,
    /// 0x13, gateway → client.
    SubAck = 0x13,
    /// 0x14, client → gateway.
    Unsubscribe = 0x14,
    /// 0x15, gateway → client.
    UnsubAck = 0x15,
    /// 0x16, both directions.
    PingReq = 0x16,
    /// 0x17, both directions.
    PingResp = 0x17,
    /// 0x18, both directions.
    Disconnect = 0x18,
    /// 0x1A, client → gateway.
    WillTopicUpd = 0x1A,
    /// 0x1B, gateway → client.
    WillTopicResp = 0x1B,
    /// 0x1C, client → gateway.
    WillMsgUpd = 0x1C,
    /// 0x1D, gateway → client.
    WillMsgResp = 0x1D,
    /// 0xFE, forwarder ↔ gateway: a message wrapped with a wireless node id.
    Encapsulated = 0xFE,
}

impl MsgType {
    /// The type named by a MsgType byte, or `None` for a reserved code.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x00 => MsgType::Advertise,
            0x01 => MsgType::SearchGw,
            0x02 => MsgType::GwInfo,
            0x04 => MsgType::Connect,
            0x05 => MsgType::ConnAck,
            0x06 => MsgType::WillTopicReq,
            0x07 => MsgType::WillTopic,
            0x08 => MsgType::WillMsgReq,
            0x09 => MsgType::WillMsg,
            0x0A => MsgType::Register,
            0x0B => MsgType::RegAck,
            0x0C => MsgType::Publish,
            0x0D => MsgType::PubAck,
            0x0E => MsgType::PubComp,
            0x0F => MsgType::PubRec,
            0x10 => MsgType::PubRel,
            0x12 => MsgType::Subscribe,
            0x13 => MsgType::SubAck,
            0x14 => MsgType::Unsubscribe,
            0x15 => MsgType::UnsubAck,
            0x16 => MsgType::PingReq,
            0x17 => MsgType::PingResp,
            0x18 => MsgType::Disconnect,
            0x1A => MsgType::WillTopicUpd,
            0x1B => MsgType::WillTopicResp,
            0x1C => MsgType::WillMsgUpd,
            0x1D => MsgType::WillMsgResp,
            0xFE => MsgType::Encapsulated,
            _ => return None,
        })
    }

    /// The MsgType byte.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// The spec's upper-case name (`"PUBLISH"`), for logs and error messages.
    pub const fn name(self) -> &'static str {
        match self {
            MsgType::Advertise => "ADVERTISE",
            MsgType::SearchGw => "SEARCHGW",
            MsgType::GwInfo => "GWINFO",
            MsgType::Connect => "CONNECT",
            MsgType::ConnAck => "CONNACK",
            MsgType::WillTopicReq => "WILLTOPICREQ",
            MsgType::WillTopic => "WILLTOPIC",
            MsgType::WillMsgReq => "WILLMSGREQ",
            MsgType::WillMsg => "WILLMSG",
            MsgType::Register => "REGISTER",
            MsgType::RegAck => "REGACK",
            MsgType::Publish => "PUBLISH",
            MsgType::PubAck => "PUBACK",
            MsgType::PubComp => "PUBCOMP",
            MsgType::PubRec => "PUBREC",
            MsgType::PubRel => "PUBREL",
            MsgType::Subscribe => "SUBSCRIBE",
            MsgType::SubAck => "SUBACK",
            MsgType::Unsubscribe => "UNSUBSCRIBE",
            MsgType::UnsubAck => "UNSUBACK",
            MsgType::PingReq => "PINGREQ",
            MsgType::PingResp => "PINGRESP",
            MsgType::Disconnect => "DISCONNECT",
            MsgType::WillTopicUpd => "WILLTOPICUPD",
            MsgType::WillTopicResp => "WILLTOPICRESP",
            MsgType::WillMsgUpd => "WILLMSGUPD",
            MsgType::WillMsgResp => "WILLMSGRESP",
            MsgType::Encapsulated => "ENCAPSULATED",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::MsgType;

    #[test]
    fn every_byte_maps_back_to_itself_or_is_reserved() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            if let Some(t) = MsgType::from_u8(byte) {
                assert_eq!(t.to_u8(), byte);
                known += 1;
            }
        }
        // 27 v1.2 messages plus the forwarder encapsulation.
        assert_eq!(known, 28);
        for reserved in [0x03, 0x11, 0x19, 0x1E, 0xFD, 0xFF] {
            assert_eq!(MsgType::from_u8(reserved), None);
        }
    }
}
