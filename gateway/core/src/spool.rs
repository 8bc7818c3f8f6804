//! The spool: uplink messages accepted while the broker is unreachable, held durably and sent,
//! in order, when it returns (issue: offline operation).
//!
//! This module holds the spool's settings and the record the store keeps; the outbox holds the
//! spooled messages themselves (see the gateway's `spool` module).

use std::sync::Arc;

use bytes::Bytes;

use super::broker::MqttQoS;

/// `[spool]` settings; `Default` gives the documented defaults (enabled, 64 MiB, refuse, no
/// QoS 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Whether to spool at all (it needs the durable store).
    pub enabled: bool,
    /// Most bytes held (topic + payload + a fixed per-message overhead).
    pub max_bytes: usize,
    /// What happens when a message does not fit.
    pub when_full: SpoolFull,
    /// Spool QoS 0 and -1 messages too (by default they are dropped, and counted, while the
    /// broker is unreachable).
    pub qos0: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            when_full: SpoolFull::Refuse,
            qos0: false,
        }
    }
}

/// The policy at the spool's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFull {
    /// Refuse the new message: QoS 1/2 get PUBACK 0x01 (congestion), so the mote keeps it and
    /// tries again later; nothing already accepted is lost.
    Refuse,
    /// Drop the oldest spooled messages to make room: the newest data wins.
    DropOldest,
}

/// A spooled message, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledPublish {
    /// MQTT topic.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS towards the broker.
    pub qos: MqttQoS,
    /// Retain flag.
    pub retain: bool,
}

/// Bytes a message counts against `max_bytes`: what it stores plus the store's overhead.
pub(crate) fn spool_size(topic: &str, payload: &[u8]) -> usize {
    topic.len() + payload.len() + 32
}
