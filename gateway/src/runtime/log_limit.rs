//! Rate-limited refusal logging: at most one line a minute per peer, in bounded memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Peers remembered at once. A flood from more addresses than this (likely spoofed) is not
/// logged peer by peer: one line a minute says it goes on, and the counters have the rest.
const MAX_PEERS: usize = 1024;

/// Decides which refusals get a log line: the first from each peer, then one a minute.
#[derive(Debug)]
pub(crate) struct PerPeerLimit {
    interval: Duration,
    last: HashMap<String, Instant>,
    /// When the "too many peers" line was last logged.
    overflow_logged: Option<Instant>,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it.
    Log,
    /// This peer was logged less than an interval ago.
    Quiet,
    /// Too many peers at once: log that, once an interval.
    Overflow,
}

impl PerPeerLimit {
    pub(crate) fn new(interval: Duration) -> Self {
        PerPeerLimit {
            interval,
            last: HashMap::new(),
            overflow_logged: None,
        }
    }

    pub(crate) fn check(&mut self, now: Instant, peer: &str) -> Verdict {
        if let Some(at) = self.last.get_mut(peer) {
            if now < *at + self.interval {
                return Verdict::Quiet;
            }
            *at = now;
            return Verdict::Log;
        }
        if self.last.len() >= MAX_PEERS {
            let interval = self.interval;
            self.last.retain(|_, at| now < *at + interval);
        }
        if self.last.len() >= MAX_PEERS {
            if self
                .overflow_logged
                .is_some_and(|at| now < at + self.interval)
            {
                return Verdict::Quiet;
            }
            self.overflow_logged = Some(now);
            return Verdict::Overflow;
        }
        self.last.insert(peer.to_string(), now);
        Verdict::Log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_minute_per_peer_in_bounded_memory() {
        let mut limit = PerPeerLimit::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(limit.check(start, "a"), Verdict::Log);
        assert_eq!(limit.check(start, "a"), Verdict::Quiet);
        assert_eq!(limit.check(start, "b"), Verdict::Log);
        let later = start + Duration::from_secs(61);
        assert_eq!(limit.check(later, "a"), Verdict::Log);
        for i in 0..MAX_PEERS + 100 {
            limit.check(later, &format!("flood {i}"));
        }
        assert!(limit.last.len() <= MAX_PEERS);
        assert_eq!(
            limit.check(later, "new"),
            Verdict::Quiet,
            "the overflow line was logged"
        );
        let much_later = later + Duration::from_secs(120);
        assert_eq!(
            limit.check(much_later, "new"),
            Verdict::Log,
            "old entries make room"
        );
    }
}
