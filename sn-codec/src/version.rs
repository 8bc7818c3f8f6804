//! Which MQTT-SN protocol version a peer speaks.

/// An MQTT-SN protocol version, as carried in the ProtocolId byte of CONNECT.
///
/// Only v1.2 is implemented today. The enum is `non_exhaustive` so that adding MQTT-SN 2.0
/// (ProtocolId 0x02, its own packet module) does not break code that matches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// MQTT-SN v1.2 (ProtocolId 0x01); packets in [`crate::v12`].
    V1_2,
}

impl ProtocolVersion {
    /// The ProtocolId byte a CONNECT of this version carries.
    pub const fn protocol_id(self) -> u8 {
        match self {
            ProtocolVersion::V1_2 => 0x01,
        }
    }

    /// The version a CONNECT's ProtocolId names, or `None` when this crate does not speak it
    /// (the gateway answers such a CONNECT with CONNACK 0x03, "not supported").
    pub const fn from_protocol_id(id: u8) -> Option<Self> {
        match id {
            0x01 => Some(ProtocolVersion::V1_2),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolVersion;

    #[test]
    fn protocol_id_round_trips_and_unknown_ids_are_refused() {
        assert_eq!(ProtocolVersion::V1_2.protocol_id(), 0x01);
        assert_eq!(
            ProtocolVersion::from_protocol_id(0x01),
            Some(ProtocolVersion::V1_2)
        );
        assert_eq!(ProtocolVersion::from_protocol_id(0x00), None);
        assert_eq!(ProtocolVersion::from_protocol_id(0x02), None);
    }
}
