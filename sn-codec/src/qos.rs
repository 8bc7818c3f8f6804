//! The QoS field of the flags byte.

/// Quality of service, from bits 6..5 of the flags byte (v1.2 §5.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// QoS -1 (bits `11`): publish without a connection; only valid in a client PUBLISH.
    MinusOne,
    /// QoS 0 (bits `00`): at most once.
    AtMostOnce,
    /// QoS 1 (bits `01`): at least once.
    AtLeastOnce,
    /// QoS 2 (bits `10`): exactly once.
    ExactlyOnce,
}

/// Mask of the QoS bits in the flags byte.
pub(crate) const QOS_MASK: u8 = 0x60;
const QOS_SHIFT: u32 = 5;

impl QoS {
    /// Reads the QoS bits out of a flags byte; the other bits are ignored.
    pub const fn from_flags(flags: u8) -> Self {
        match (flags & QOS_MASK) >> QOS_SHIFT {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => QoS::MinusOne,
        }
    }

    /// The QoS bits of a flags byte (already shifted into place, other bits zero).
    pub const fn to_flags(self) -> u8 {
        let bits = match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
            QoS::MinusOne => 3,
        };
        bits << QOS_SHIFT
    }

    /// The MQTT QoS level this maps to upstream: QoS -1 is published as QoS 0.
    pub const fn mqtt_level(self) -> u8 {
        match self {
            QoS::MinusOne | QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        }
    }

    /// Whether this QoS needs an acknowledgement flow and hence a non-zero MsgId.
    pub const fn needs_ack(self) -> bool {
        matches!(self, QoS::AtLeastOnce | QoS::ExactlyOnce)
    }
}

#[cfg(test)]
mod tests {
    use super::QoS;

    #[test]
    fn flag_bits_follow_the_spec_table() {
        assert_eq!(QoS::from_flags(0x00), QoS::AtMostOnce);
        assert_eq!(QoS::from_flags(0x20), QoS::AtLeastOnce);
        assert_eq!(QoS::from_flags(0x40), QoS::ExactlyOnce);
        assert_eq!(QoS::from_flags(0x60), QoS::MinusOne);
        // Other bits never leak into the QoS.
        assert_eq!(QoS::from_flags(0x9F), QoS::AtMostOnce);
        for q in [
            QoS::MinusOne,
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
            QoS::ExactlyOnce,
        ] {
            assert_eq!(QoS::from_flags(q.to_flags()), q);
        }
    }
}
