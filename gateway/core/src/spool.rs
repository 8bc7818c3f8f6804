//! The spool: uplink messages accepted while the broker is unreachable, held durably and sent,
//! in order, when it returns (issue: offline operation).
//!
//! A spooled message is an ordinary pending uplink (in `Gateway::uplink`, replayed after every
//! `Connected` in id order) that is also in the durable store. The client's exchange completes
//! when the message is spooled: the runtime commits the store before it sends the PUBACK, so
//! the acknowledgement means the message is on disk.

use std::sync::Arc;

use bytes::Bytes;

use super::broker::{MqttQoS, PublishId};
use super::events::Event;
use super::gateway::Gateway;
use super::persist::StoreOp;

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

/// The spool's running state.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    pub(crate) bytes: usize,
    pub(crate) count: usize,
    /// A full spool was reported; cleared when it has room again.
    full_reported: bool,
}

impl Gateway {
    /// Whether messages can be spooled now.
    pub(crate) fn spooling(&self) -> bool {
        self.config.spool.enabled && !self.broker_up
    }

    /// Puts the pending uplink `id` in the spool, making room by the configured policy.
    /// Returns false (and counts it) when it does not fit and the policy refuses.
    pub(crate) fn spool(&mut self, id: PublishId) -> bool {
        let Some(pending) = self.uplink.get(&id) else {
            return false;
        };
        if pending.spooled {
            return true;
        }
        let size = spool_size(&pending.publish.topic, &pending.publish.payload);
        let max = self.config.spool.max_bytes;
        if self.spool_state.bytes + size > max {
            let room = match self.config.spool.when_full {
                SpoolFull::Refuse => false,
                SpoolFull::DropOldest => size <= max && self.evict_oldest_spooled(size, id),
            };
            if !room {
                self.metrics.spool_refused += 1;
                self.report_spool_full();
                return false;
            }
        }
        let Some(pending) = self.uplink.get_mut(&id) else {
            return false;
        };
        pending.spooled = true;
        let message = SpooledPublish {
            topic: pending.publish.topic.clone(),
            payload: pending.publish.payload.clone(),
            qos: pending.publish.qos,
            retain: pending.publish.retain,
        };
        self.spool_state.bytes += size;
        self.spool_state.count += 1;
        self.metrics.spooled += 1;
        self.persistence
            .push(StoreOp::PutSpool { id: id.0, message });
        true
    }

    /// Drops the oldest spooled messages (other than `keep`) until `size` more bytes fit.
    fn evict_oldest_spooled(&mut self, size: usize, keep: PublishId) -> bool {
        let max = self.config.spool.max_bytes;
        while self.spool_state.bytes + size > max {
            let oldest = self
                .uplink
                .iter()
                .find(|(id, p)| p.spooled && **id != keep)
                .map(|(id, _)| *id);
            let Some(oldest) = oldest else {
                return false;
            };
            self.unspool(oldest);
            self.uplink.remove(&oldest);
            self.metrics.spool_dropped += 1;
            self.report_spool_full();
        }
        true
    }

    /// A spooled message left the spool (acknowledged by the broker, or dropped).
    pub(crate) fn unspool(&mut self, id: PublishId) {
        let Some(pending) = self.uplink.get_mut(&id) else {
            return;
        };
        if !pending.spooled {
            return;
        }
        pending.spooled = false;
        let size = spool_size(&pending.publish.topic, &pending.publish.payload);
        self.spool_state.bytes = self.spool_state.bytes.saturating_sub(size);
        self.spool_state.count = self.spool_state.count.saturating_sub(1);
        if self.spool_state.bytes + size <= self.config.spool.max_bytes {
            self.spool_state.full_reported = false;
        }
        self.persistence.push(StoreOp::DeleteSpool { id: id.0 });
    }

    fn report_spool_full(&mut self) {
        if !self.spool_state.full_reported {
            self.spool_state.full_reported = true;
            self.emit(Event::SpoolFull {
                max_bytes: self.config.spool.max_bytes,
                policy: self.config.spool.when_full,
            });
        }
    }

    /// Messages in the spool.
    pub fn spooled(&self) -> usize {
        self.spool_state.count
    }
}
