//! Counters of what a link did, kept lock-free so the hot path never waits on them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a link's counters since it was bound.
///
/// Each field is read on its own, so a snapshot taken while traffic flows may be a few
/// datagrams apart between fields; that is fine for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Datagrams handed to the caller by `recv` (oversize ones are not included).
    pub datagrams_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Datagrams the OS accepted for sending, discovery ones included.
    pub datagrams_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams longer than `max_datagram`, dropped whole.
    pub oversize_dropped: u64,
    /// Sends the OS refused.
    pub send_errors: u64,
    /// Receive errors, transient (skipped) and fatal (returned) alike.
    pub receive_errors: u64,
}

/// The live counters behind [`LinkStats`].
///
/// `Relaxed` ordering everywhere: each counter is independent and nothing is synchronised
/// through them, so there is no reason to pay for fences on every datagram.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    oversize_dropped: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
}

/// usize -> u64 never truncates on the platforms we build for; saturate rather than cast so
/// the conversion cannot wrap even in theory.
fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Counters {
    pub(crate) fn received(&self, len: usize) {
        self.datagrams_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(as_u64(len), Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, len: usize) {
        self.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(as_u64(len), Ordering::Relaxed);
    }

    pub(crate) fn oversize(&self) {
        self.oversize_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn receive_error(&self) {
        self.receive_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkStats {
        LinkStats {
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            oversize_dropped: self.oversize_dropped.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
        }
    }
}
