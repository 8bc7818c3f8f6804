//! Bits of the shared flags byte (v1.2 §5.3.4). Read and written only through these masks.

/// Retransmission.
pub(crate) const DUP: u8 = 0x80;
/// Retained message (PUBLISH) or retained Will (WILLTOPIC).
pub(crate) const RETAIN: u8 = 0x10;
/// The client will send a Will (CONNECT).
pub(crate) const WILL: u8 = 0x08;
/// CleanSession (CONNECT).
pub(crate) const CLEAN_SESSION: u8 = 0x04;
/// TopicIdType: `00` normal id or name, `01` predefined, `10` short name, `11` reserved.
pub(crate) const TOPIC_ID_TYPE: u8 = 0x03;
/// TopicIdType value for a predefined topic id.
pub(crate) const TOPIC_ID_TYPE_PREDEFINED: u8 = 0x01;
/// TopicIdType value for a short topic name.
pub(crate) const TOPIC_ID_TYPE_SHORT: u8 = 0x02;
