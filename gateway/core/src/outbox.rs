//! The uplink outbox: every QoS 1/2 message on its way to a broker that the broker has not
//! acknowledged yet, in the order it was accepted, and which of them are in the durable spool.
//!
//! The outbox owns two invariants: publish ids only grow (so replaying in id order keeps each
//! mote's messages in order, across restarts too), and the spool's size is always the sum of
//! its messages (a message enters and leaves the spool only through
//! [`Outbox::mark_spooled`] and [`Outbox::unmark_spooled`], and [`Outbox::remove`] takes a
//! spooled message out of the count with it).

use std::collections::BTreeMap;

use crate::broker::{PublishId, UplinkPublish};
use crate::session::SessionIdx;
use crate::spool::{spool_size, SpooledPublish};

/// An uplink QoS 1/2 publish the broker has not acknowledged yet.
#[derive(Debug, Clone)]
pub(crate) struct PendingUplink {
    /// The message, as it is (re)sent.
    pub(crate) publish: UplinkPublish,
    /// The session (slot, epoch) waiting to acknowledge it to its client.
    pub(crate) origin: Option<(SessionIdx, u64)>,
    /// Sent on the origin mote's own connection (transparent mode), not the gateway's.
    pub(crate) via_mote: bool,
    /// Also in the durable spool (taken while the broker was unreachable).
    spooled: bool,
}

impl PendingUplink {
    /// Whether it is in the durable spool.
    pub(crate) fn spooled(&self) -> bool {
        self.spooled
    }
}

/// What a message needs to fit the spool, once it is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpoolRoom {
    /// It fits.
    Fits,
    /// `needed` more bytes than are free.
    Short {
        /// Bytes over the limit.
        needed: usize,
    },
    /// Larger than the whole spool: it never fits.
    Never,
}

/// Pending uplinks and the spool's bookkeeping.
#[derive(Debug)]
pub(crate) struct Outbox {
    pending: BTreeMap<PublishId, PendingUplink>,
    next_id: u64,
    spool_bytes: usize,
    spool_count: usize,
    /// A full spool was reported; cleared when it has room again.
    spool_full_reported: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            pending: BTreeMap::new(),
            next_id: 1,
            spool_bytes: 0,
            spool_count: 0,
            spool_full_reported: false,
        }
    }
}

impl Outbox {
    /// A fresh publish id, larger than every one handed out or restored.
    pub(crate) fn next_id(&mut self) -> PublishId {
        let id = PublishId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Holds `publish` (which carries its id) until the broker acknowledges it.
    pub(crate) fn insert(
        &mut self,
        publish: UplinkPublish,
        origin: Option<(SessionIdx, u64)>,
        via_mote: bool,
    ) -> Option<PublishId> {
        let id = publish.id?;
        self.pending.insert(
            id,
            PendingUplink {
                publish,
                origin,
                via_mote,
                spooled: false,
            },
        );
        Some(id)
    }

    /// Puts back a message the store held in the spool, to be sent when the broker returns.
    pub(crate) fn restore_spooled(&mut self, id: u64, message: SpooledPublish) {
        self.next_id = self.next_id.max(id.saturating_add(1));
        self.spool_bytes += spool_size(&message.topic, &message.payload);
        self.spool_count += 1;
        self.pending.insert(
            PublishId(id),
            PendingUplink {
                publish: UplinkPublish {
                    id: Some(PublishId(id)),
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos,
                    retain: message.retain,
                    replay: true,
                },
                origin: None,
                via_mote: false,
                spooled: true,
            },
        );
    }

    /// The pending message `id`.
    pub(crate) fn get(&self, id: PublishId) -> Option<&PendingUplink> {
        self.pending.get(&id)
    }

    /// The client waiting for `id` reconnected to its session: the acknowledgement goes to
    /// the session's new life (unless it was already delivered).
    pub(crate) fn retag_origin(&mut self, id: PublishId, origin: (SessionIdx, u64)) {
        if let Some(pending) = self.pending.get_mut(&id) {
            if pending.origin.is_some() {
                pending.origin = Some(origin);
            }
        }
    }

    /// Takes the session waiting for `id`'s acknowledgement, if one still does.
    pub(crate) fn take_origin(&mut self, id: PublishId) -> Option<(SessionIdx, u64)> {
        self.pending.get_mut(&id)?.origin.take()
    }

    /// Forgets `id` (acknowledged by the broker, refused, or dropped); a spooled message
    /// leaves the spool's count with it (the caller deletes it from the store).
    pub(crate) fn remove(&mut self, id: PublishId) -> Option<PendingUplink> {
        let pending = self.pending.remove(&id)?;
        if pending.spooled {
            self.uncount(&pending);
        }
        Some(pending)
    }

    /// Pending messages, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PublishId, &PendingUplink)> {
        self.pending.iter().map(|(id, p)| (*id, p))
    }

    /// Pending messages.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` would fit the spool's `max_bytes`.
    pub(crate) fn spool_room(&self, id: PublishId, max_bytes: usize) -> SpoolRoom {
        let Some(pending) = self.pending.get(&id) else {
            return SpoolRoom::Fits;
        };
        let size = spool_size(&pending.publish.topic, &pending.publish.payload);
        if size > max_bytes {
            return SpoolRoom::Never;
        }
        match (self.spool_bytes + size).checked_sub(max_bytes) {
            Some(needed) if needed > 0 => SpoolRoom::Short { needed },
            _ => SpoolRoom::Fits,
        }
    }

    /// The oldest spooled message other than `keep`, to make room.
    pub(crate) fn oldest_spooled_except(&self, keep: PublishId) -> Option<PublishId> {
        self.pending
            .iter()
            .find(|(id, p)| p.spooled && **id != keep)
            .map(|(id, _)| *id)
    }

    /// Counts `id` into the spool; returns the record to store, or `None` if it is unknown
    /// or already spooled.
    pub(crate) fn mark_spooled(&mut self, id: PublishId) -> Option<SpooledPublish> {
        let pending = self.pending.get_mut(&id).filter(|p| !p.spooled)?;
        pending.spooled = true;
        self.spool_bytes += spool_size(&pending.publish.topic, &pending.publish.payload);
        self.spool_count += 1;
        Some(SpooledPublish {
            topic: pending.publish.topic.clone(),
            payload: pending.publish.payload.clone(),
            qos: pending.publish.qos,
            retain: pending.publish.retain,
        })
    }

    /// Takes `id` out of the spool (it stays pending); returns whether it was spooled. Once
    /// the spool has room for such a message again, the next overflow is reported anew.
    pub(crate) fn unmark_spooled(&mut self, id: PublishId, max_bytes: usize) -> bool {
        let Some(pending) = self.pending.get_mut(&id).filter(|p| p.spooled) else {
            return false;
        };
        pending.spooled = false;
        let size = spool_size(&pending.publish.topic, &pending.publish.payload);
        self.spool_bytes = self.spool_bytes.saturating_sub(size);
        self.spool_count = self.spool_count.saturating_sub(1);
        // Room again for a message like this one: the next overflow is a new episode.
        if self.spool_bytes + size <= max_bytes {
            self.spool_full_reported = false;
        }
        true
    }

    fn uncount(&mut self, pending: &PendingUplink) {
        let size = spool_size(&pending.publish.topic, &pending.publish.payload);
        self.spool_bytes = self.spool_bytes.saturating_sub(size);
        self.spool_count = self.spool_count.saturating_sub(1);
    }

    /// Whether an overflow is new (to be reported once per episode).
    pub(crate) fn first_spool_overflow(&mut self) -> bool {
        !std::mem::replace(&mut self.spool_full_reported, true)
    }

    /// Messages in the spool.
    pub(crate) fn spooled(&self) -> usize {
        self.spool_count
    }

    /// Bytes the spool's messages count against `max_bytes`.
    pub(crate) fn spool_bytes(&self) -> usize {
        self.spool_bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::broker::MqttQoS;

    fn publish(outbox: &mut Outbox, payload: &'static [u8]) -> PublishId {
        let id = outbox.next_id();
        outbox.insert(
            UplinkPublish {
                id: Some(id),
                topic: Arc::from("t"),
                payload: Bytes::from_static(payload),
                qos: MqttQoS::AtLeastOnce,
                retain: false,
                replay: false,
            },
            Some((0, 1)),
            false,
        );
        id
    }

    #[test]
    fn the_spool_size_is_the_sum_of_its_messages_whichever_way_they_leave() {
        let mut outbox = Outbox::default();
        let a = publish(&mut outbox, b"0123456789");
        let b = publish(&mut outbox, b"01234");
        assert!(outbox.mark_spooled(a).is_some());
        assert!(outbox.mark_spooled(a).is_none(), "spooled once only");
        assert!(outbox.mark_spooled(b).is_some());
        assert_eq!(outbox.spooled(), 2);
        assert_eq!(
            outbox.spool_bytes(),
            spool_size("t", b"0123456789") + spool_size("t", b"01234")
        );
        assert!(outbox.unmark_spooled(a, usize::MAX));
        assert!(!outbox.unmark_spooled(a, usize::MAX));
        assert_eq!(outbox.spool_bytes(), spool_size("t", b"01234"));
        // Removed while spooled: out of the count too.
        assert!(outbox.remove(b).unwrap().spooled());
        assert_eq!((outbox.spooled(), outbox.spool_bytes()), (0, 0));
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn restored_ids_come_before_new_ones() {
        let mut outbox = Outbox::default();
        outbox.restore_spooled(
            41,
            SpooledPublish {
                topic: Arc::from("t"),
                payload: Bytes::from_static(b"x"),
                qos: MqttQoS::AtLeastOnce,
                retain: false,
            },
        );
        assert_eq!(outbox.next_id(), PublishId(42));
        assert_eq!(outbox.spooled(), 1);
        assert!(outbox.get(PublishId(41)).unwrap().publish.replay);
    }

    #[test]
    fn room_eviction_order_and_overflow_reports() {
        let mut outbox = Outbox::default();
        let a = publish(&mut outbox, b"aaaa");
        let b = publish(&mut outbox, b"bbbb");
        let size = spool_size("t", b"aaaa");
        outbox.mark_spooled(a);
        assert_eq!(outbox.spool_room(b, 2 * size), SpoolRoom::Fits);
        assert_eq!(
            outbox.spool_room(b, size),
            SpoolRoom::Short { needed: size }
        );
        assert_eq!(outbox.spool_room(b, size - 1), SpoolRoom::Never);
        assert_eq!(outbox.oldest_spooled_except(b), Some(a));
        assert_eq!(outbox.oldest_spooled_except(a), None);
        assert!(outbox.first_spool_overflow());
        assert!(!outbox.first_spool_overflow(), "once per episode");
        outbox.unmark_spooled(a, size);
        assert!(outbox.first_spool_overflow(), "room again: a new episode");
        assert!(!outbox.first_spool_overflow());
        assert_eq!(outbox.take_origin(b), Some((0, 1)));
        assert_eq!(outbox.take_origin(b), None);
    }
}
