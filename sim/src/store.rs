//! The simulated store: what the real one (gateway/src/store, redb) keeps, as values. The
//! batches are applied with the real store's semantics (one transaction per write; deleting a
//! session deletes its messages), writes can fail for a while or take long, and only what a
//! completed write applied survives a crash. The redb encoding is private to the gateway
//! crate; its round trip is tested there (docs/decisions.md says why the values are kept).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sn_core::{BatchId, Restored, SessionRecord, SpooledPublish, StoreOp, StoredMessage};

/// How writes behave now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Written at once.
    Normal,
    /// Each write takes a while.
    Slow,
    /// Every write fails (a full disk); the runtime retries later.
    Failing,
}

/// A write under way.
#[derive(Debug)]
pub struct Writing {
    /// Its ops.
    pub ops: Vec<StoreOp>,
    /// The last batch it holds.
    pub upto: BatchId,
    /// When it completes.
    pub done_at: Instant,
}

/// The durable state and the runtime's queue of unwritten ops.
#[derive(Debug)]
pub struct SimStore {
    sessions: BTreeMap<Arc<str>, SessionRecord>,
    messages: BTreeMap<(Arc<str>, u64), StoredMessage>,
    spool: BTreeMap<u64, SpooledPublish>,
    /// Ops handed out by the core and not written yet (the runtime's `unwritten`).
    pub unwritten: Vec<StoreOp>,
    /// The last batch among them.
    pub unwritten_upto: Option<BatchId>,
    /// A write in progress (slow mode).
    pub writing: Option<Writing>,
    /// A retry is scheduled (failing mode).
    pub retry_at: Option<Instant>,
    /// How writes behave.
    pub mode: Mode,
    /// Writes applied.
    pub writes: u64,
    /// Writes refused.
    pub failures: u64,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> Self {
        SimStore {
            sessions: BTreeMap::new(),
            messages: BTreeMap::new(),
            spool: BTreeMap::new(),
            unwritten: Vec::new(),
            unwritten_upto: None,
            writing: None,
            retry_at: None,
            mode: Mode::Normal,
            writes: 0,
            failures: 0,
        }
    }

    /// Applies one transaction.
    pub fn apply(&mut self, ops: &[StoreOp]) {
        self.writes += 1;
        for op in ops {
            match op {
                StoreOp::PutSession(record) => {
                    self.sessions
                        .insert(record.client_id.clone(), record.clone());
                }
                StoreOp::DeleteSession { client_id } => {
                    self.sessions.remove(client_id);
                    self.messages.retain(|(c, _), _| c != client_id);
                }
                StoreOp::PutMessage {
                    client_id,
                    seq,
                    message,
                } => {
                    self.messages
                        .insert((client_id.clone(), *seq), message.clone());
                }
                StoreOp::DeleteMessage { client_id, seq } => {
                    self.messages.remove(&(client_id.clone(), *seq));
                }
                StoreOp::PutSpool { id, message } => {
                    self.spool.insert(*id, message.clone());
                }
                StoreOp::DeleteSpool { id } => {
                    self.spool.remove(id);
                }
            }
        }
    }

    /// The process died: what was not written is gone. A write under way either reached
    /// the disk or did not (`landed`).
    pub fn crash(&mut self, landed: bool) {
        if let Some(writing) = self.writing.take() {
            if landed {
                self.apply(&writing.ops);
            }
        }
        self.unwritten.clear();
        self.unwritten_upto = None;
        self.retry_at = None;
    }

    /// What a new gateway is given back at start.
    pub fn load(&self) -> Restored {
        Restored {
            sessions: self.sessions.values().cloned().collect(),
            messages: self
                .messages
                .iter()
                .map(|((c, seq), m)| (c.clone(), *seq, m.clone()))
                .collect(),
            spool: self.spool.iter().map(|(id, m)| (*id, m.clone())).collect(),
        }
    }

    /// Spooled messages held.
    pub fn spooled(&self) -> usize {
        self.spool.len()
    }
}

impl Default for SimStore {
    fn default() -> Self {
        Self::new()
    }
}
