//! The spool's bookkeeping: uplink messages accepted while the broker is unreachable.
//!
//! A spooled message is an ordinary pending uplink (in the outbox, replayed after every
//! `Connected` in id order) that is also in the durable store. The client's exchange completes
//! when the message is spooled: its acknowledgement is held until the store batch holding the
//! message is written, so the acknowledgement means the message is on disk.

use crate::broker::PublishId;
use crate::events::Event;
use crate::outbox::SpoolRoom;
use crate::spool::SpoolFull;

use super::persist::StoreOp;
use super::Gateway;

impl Gateway {
    /// Whether messages can be spooled now.
    pub(crate) fn spooling(&self) -> bool {
        self.config.spool.enabled && !self.broker_up
    }

    /// Puts the pending uplink `id` in the spool, making room by the configured policy.
    /// Returns false (and counts it) when it does not fit and the policy refuses.
    pub(crate) fn spool(&mut self, id: PublishId) -> bool {
        let Some(pending) = self.outbox.get(id) else {
            return false;
        };
        if pending.spooled() {
            return true;
        }
        let max = self.config.spool.max_bytes;
        let room = self.outbox.spool_room(id, max);
        if room != SpoolRoom::Fits {
            let room = match self.config.spool.when_full {
                SpoolFull::Refuse => false,
                // Nothing is dropped for a message that could never fit.
                SpoolFull::DropOldest => room != SpoolRoom::Never && self.evict_oldest_spooled(id),
            };
            if !room {
                self.metrics.spool_refused += 1;
                self.report_spool_full();
                return false;
            }
        }
        let Some(message) = self.outbox.mark_spooled(id) else {
            return false;
        };
        self.metrics.spooled += 1;
        self.persistence
            .push(StoreOp::PutSpool { id: id.0, message });
        true
    }

    /// Drops the oldest spooled messages (other than `keep`) until `keep` fits.
    fn evict_oldest_spooled(&mut self, keep: PublishId) -> bool {
        let max = self.config.spool.max_bytes;
        while let SpoolRoom::Short { .. } = self.outbox.spool_room(keep, max) {
            let Some(oldest) = self.outbox.oldest_spooled_except(keep) else {
                return false;
            };
            self.unspool(oldest);
            self.outbox.remove(oldest);
            self.metrics.spool_dropped += 1;
            self.report_spool_full();
        }
        true
    }

    /// A spooled message left the spool (acknowledged by the broker, or dropped).
    pub(crate) fn unspool(&mut self, id: PublishId) {
        if self.outbox.unmark_spooled(id, self.config.spool.max_bytes) {
            self.persistence.push(StoreOp::DeleteSpool { id: id.0 });
        }
    }

    fn report_spool_full(&mut self) {
        if self.outbox.first_spool_overflow() {
            self.emit(Event::SpoolFull {
                max_bytes: self.config.spool.max_bytes,
                policy: self.config.spool.when_full,
            });
        }
    }

    /// Messages in the spool.
    pub fn spooled(&self) -> usize {
        self.outbox.spooled()
    }

    /// Bytes the spool's messages count against `spool.max_bytes`.
    pub fn spool_bytes(&self) -> usize {
        self.outbox.spool_bytes()
    }
}
