//! The durability gate: nothing is acknowledged before the store holds what it acknowledges.
//!
//! The core hands its state changes out in numbered batches ([`StoreBatch`], from
//! `Gateway::poll_store`). Every output queued before a batch was handed out may depend on it
//! (a PUBACK for a spooled message, an upstream acknowledgement of a message queued for a
//! sleeping mote), so the gate holds those outputs until the runtime reports the batch
//! written (`Gateway::handle_stored`). A batch with nothing in it needs no write: what was
//! queued before it waits only for the batches still unwritten, or for nothing.
//!
//! So the rule lives in the core, whatever order a runtime polls in: outputs the gate has not
//! released are simply not handed out.

use std::collections::VecDeque;

use crate::gateway::StoreOp;
use crate::outputs::Marks;

/// The number of a store batch; batches are numbered in the order they are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// State changes to write in one transaction, then report with `Gateway::handle_stored`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the outputs that depend on a batch are held until it is reported written"]
pub struct StoreBatch {
    /// Its number, for `Gateway::handle_stored`.
    pub id: BatchId,
    /// The changes, in order.
    pub ops: Vec<StoreOp>,
}

/// Which outputs may leave: those queued before every batch they may depend on was written.
#[derive(Debug, Default)]
pub(crate) struct AckGate {
    /// The number the next non-empty batch gets.
    next: u64,
    /// Batches handed out and not yet reported written, oldest first, each with the outputs
    /// it holds back (everything queued before it was handed out).
    unwritten: VecDeque<(BatchId, Marks)>,
    /// Outputs that may leave.
    released: Marks,
}

impl AckGate {
    /// A batch is handed out now, with the outputs queued so far (`queued`). Returns its
    /// number if it has changes to write (`has_ops`); an empty batch gets none, and what was
    /// queued before it is released at once or, while earlier batches are unwritten, when
    /// the last of them is.
    pub(crate) fn seal(&mut self, queued: Marks, has_ops: bool) -> Option<BatchId> {
        if has_ops {
            let id = BatchId(self.next);
            self.next += 1;
            self.unwritten.push_back((id, queued));
            return Some(id);
        }
        match self.unwritten.back_mut() {
            Some((_, marks)) => *marks = queued,
            None => self.released = queued,
        }
        None
    }

    /// Batches up to `id` are written: what they held back may leave. An id never handed out
    /// releases only the batches that were.
    pub(crate) fn written(&mut self, id: BatchId) {
        while let Some((batch, marks)) = self.unwritten.front().copied() {
            if batch > id {
                break;
            }
            self.released = marks;
            self.unwritten.pop_front();
        }
    }

    /// The outputs that may leave: those numbered below these marks.
    pub(crate) fn released(&self) -> Marks {
        self.released
    }

    /// Batches handed out and not yet reported written.
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(transmits: u64, commands: u64) -> Marks {
        Marks {
            transmits,
            commands,
        }
    }

    #[test]
    fn outputs_wait_for_the_batch_handed_out_after_them() {
        let mut gate = AckGate::default();
        let id = gate.seal(marks(2, 1), true).unwrap_or(BatchId(u64::MAX));
        assert_eq!(gate.released(), marks(0, 0), "held until written");
        assert_eq!(gate.unwritten(), 1);
        gate.written(id);
        assert_eq!(gate.released(), marks(2, 1));
        assert_eq!(gate.unwritten(), 0);
    }

    #[test]
    fn an_empty_batch_releases_at_once_unless_an_earlier_one_is_unwritten() {
        let mut gate = AckGate::default();
        assert_eq!(gate.seal(marks(1, 0), false), None);
        assert_eq!(gate.released(), marks(1, 0), "nothing to wait for");
        let first = gate.seal(marks(3, 2), true).unwrap_or(BatchId(u64::MAX));
        // Queued after the unwritten batch: they may depend on it, so they wait for it.
        assert_eq!(gate.seal(marks(5, 2), false), None);
        assert_eq!(gate.released(), marks(1, 0));
        gate.written(first);
        assert_eq!(gate.released(), marks(5, 2));
    }

    #[test]
    fn writing_a_later_batch_releases_the_earlier_ones_too() {
        let mut gate = AckGate::default();
        let first = gate.seal(marks(1, 1), true).unwrap_or(BatchId(u64::MAX));
        let second = gate.seal(marks(2, 3), true).unwrap_or(BatchId(u64::MAX));
        assert!(first < second);
        gate.written(BatchId(second.0 + 10));
        assert_eq!(gate.released(), marks(2, 3));
        // A stale report changes nothing.
        gate.written(first);
        assert_eq!(gate.released(), marks(2, 3));
    }

    #[test]
    fn batches_are_released_in_order_only() {
        let mut gate = AckGate::default();
        let first = gate.seal(marks(1, 0), true).unwrap_or(BatchId(u64::MAX));
        let _second = gate.seal(marks(4, 0), true);
        gate.written(first);
        assert_eq!(
            gate.released(),
            marks(1, 0),
            "the second batch is not written yet"
        );
        assert_eq!(gate.unwritten(), 1);
    }
}
