//! The event queue: what happens next, in time order, ties broken by the order of
//! scheduling (so a run is the same every time).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use sn_core::{BrokerCommand, BrokerEvent, Peer, PeerAddr};

/// Which broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    /// The remote broker.
    Remote,
    /// The fallback (embedded) broker.
    Fallback,
}

/// Kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The remote broker drops the connection.
    BrokerDrop,
    /// The remote broker restarts.
    BrokerRestart,
    /// The remote broker refuses connections.
    BrokerRefuse,
    /// The remote broker answers slowly.
    BrokerSlow,
    /// The fallback link drops.
    FallbackDrop,
    /// Store writes fail.
    StoreFail,
    /// Store writes are slow.
    StoreSlow,
    /// The gateway crashes.
    Crash,
}

/// Something that will happen.
#[derive(Debug)]
pub enum Ev {
    /// A datagram reaches the gateway.
    ToGateway {
        /// From.
        from: Peer,
        /// Bytes.
        bytes: Vec<u8>,
        /// A second copy the radio made.
        copy: bool,
        /// Its number among the datagrams sent this way, to tell when it was overtaken.
        seq: u64,
    },
    /// A datagram reaches an address on the motes' side.
    ToMote {
        /// To.
        addr: PeerAddr,
        /// Bytes.
        bytes: Vec<u8>,
        /// A second copy the radio made.
        copy: bool,
        /// Its number among the datagrams sent this way, to tell when it was overtaken.
        seq: u64,
        /// Gateway restarts before it was sent (it may arrive after the next one).
        epoch: u64,
        /// The oracle's tick when it was sent.
        sent: u64,
    },
    /// A mote's client timer.
    MoteTimer(usize),
    /// A mote's next action (with the token it was scheduled under).
    MoteAct(usize, u64),
    /// The gateway's timer.
    GwTimer,
    /// A command reaches a broker over connection `gen`.
    ToBroker(Which, u64, BrokerCommand),
    /// An event reaches the gateway over connection `gen`.
    FromBroker(Which, u64, BrokerEvent),
    /// The link tries to connect.
    LinkAttempt(Which),
    /// A slow store write completes.
    StoreDone,
    /// A failed store write is retried.
    StoreRetry,
    /// The crashed gateway starts again.
    Restart,
    /// A cloud application publishes.
    CloudPublish(usize),
    /// A fault begins.
    Fault(Fault),
    /// A fault ends.
    FaultEnd(Fault),
    /// The calm phase begins.
    Calm,
}

/// A heap entry: when, the tie-breaker, and where the event waits. The events themselves
/// (datagrams, broker commands) stay in place in `Schedule::slots`: the heap moves its
/// entries at every push and pop, and moving whole events made that most of a large run's
/// time (2,000 motes: a third of it in `BinaryHeap::pop`).
#[derive(Clone, Copy)]
struct Item {
    at: Instant,
    seq: u64,
    slot: usize,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The queue.
#[derive(Default)]
pub struct Schedule {
    heap: BinaryHeap<Item>,
    /// The events, by slot; a popped event's slot is reused.
    slots: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
}

impl Schedule {
    /// Schedules `ev` at `at` (after everything already scheduled at the same instant).
    pub fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot) {
                    *place = Some(ev);
                }
                slot
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.heap.push(Item {
            at,
            seq: self.seq,
            slot,
        });
    }

    /// The next event.
    pub fn pop(&mut self) -> Option<(Instant, Ev)> {
        loop {
            let item = self.heap.pop()?;
            let ev = self.slots.get_mut(item.slot).and_then(Option::take);
            self.free.push(item.slot);
            if let Some(ev) = ev {
                return Some((item.at, ev));
            }
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
