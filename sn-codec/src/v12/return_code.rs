//! The ReturnCode byte of v1.2 acknowledgements (§5.3.10).

/// An MQTT-SN v1.2 return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnCode {
    /// 0x00: accepted.
    Accepted,
    /// 0x01: rejected, congestion; the client waits T_WAIT before trying again.
    Congestion,
    /// 0x02: rejected, invalid topic id.
    InvalidTopicId,
    /// 0x03: rejected, not supported.
    NotSupported,
    /// 0x04..=0xFF: reserved by v1.2 (EMQX sends 0x80..=0x84); a client can only read them as
    /// "rejected". Never holds 0x00..=0x03.
    Reserved(u8),
}

impl ReturnCode {
    /// The code a byte carries.
    pub const fn from_u8(byte: u8) -> Self {
        match byte {
            0x00 => ReturnCode::Accepted,
            0x01 => ReturnCode::Congestion,
            0x02 => ReturnCode::InvalidTopicId,
            0x03 => ReturnCode::NotSupported,
            other => ReturnCode::Reserved(other),
        }
    }

    /// The byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            ReturnCode::Accepted => 0x00,
            ReturnCode::Congestion => 0x01,
            ReturnCode::InvalidTopicId => 0x02,
            ReturnCode::NotSupported => 0x03,
            ReturnCode::Reserved(byte) => byte,
        }
    }

    /// Whether the request was accepted.
    pub const fn is_accepted(self) -> bool {
        matches!(self, ReturnCode::Accepted)
    }
}
