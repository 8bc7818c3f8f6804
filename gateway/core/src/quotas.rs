//! Quotas on what unauthenticated input can make the gateway hold or do: bytes held across all
//! sessions (queued messages; client ids, topic names, filters and Wills), and CONNECTs per
//! second from one source. (Sessions per source are counted by the session table, which owns
//! the bindings.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::peer::{ClientAddr, LinkId, PeerAddr, RadioAddr};

/// Where traffic comes from, for per-source quotas: an IP address (any port: a host opening
/// many sockets is one source), or a radio node on its link. Encapsulated clients count as
/// their forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Ip(IpAddr),
    Radio(LinkId, RadioAddr),
}

impl Source {
    pub(crate) fn of(addr: &ClientAddr) -> Source {
        match addr.peer.addr {
            PeerAddr::Ip(socket) => Source::Ip(match socket.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            }),
            PeerAddr::Radio(radio) => Source::Radio(addr.peer.link, radio),
        }
    }
}

/// Bytes of one kind held for clients, summed over every session: in total, and for the
/// sessions only the open policy let in. Shared by the sessions' [`Account`]s (each adds and
/// takes away its own bytes, also when it is dropped), so the sum is always exact and costs
/// O(1).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    total: AtomicUsize,
    open: AtomicUsize,
}

impl Pool {
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One session's handle on a [`Pool`]: which share it counts in.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    shared: Arc<Pool>,
    /// The session was let in by the open policy only (no `[[mote]]` entry).
    open: bool,
}

impl Meter {
    pub(crate) fn new(shared: Arc<Pool>, open: bool) -> Self {
        Meter { shared, open }
    }

    pub(crate) fn add(&self, bytes: usize) {
        self.shared.total.fetch_add(bytes, Ordering::Relaxed);
        if self.open {
            self.shared.open.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn sub(&self, bytes: usize) {
        self.shared.total.fetch_sub(bytes, Ordering::Relaxed);
        if self.open {
            self.shared.open.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Whether `incoming` more bytes fit: within `max_total` for all, and within half of it
    /// for open-admitted sessions, so that listed motes always keep the other half.
    pub(crate) fn fits(&self, incoming: usize, max_total: usize) -> bool {
        let total = self.shared.total();
        if total.saturating_add(incoming) > max_total {
            return false;
        }
        !self.open || self.shared.open().saturating_add(incoming) <= max_total / 2
    }
}

/// Bytes one session holds of one kind, counted in a [`Pool`] once it has a meter; taken out
/// of the pool when dropped, however the session ends.
#[derive(Debug, Default)]
pub(crate) struct Account {
    bytes: usize,
    meter: Option<Meter>,
}

impl Account {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The meter this account counts in.
    pub(crate) fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    /// Counts in `meter` from now on.
    pub(crate) fn set_meter(&mut self, meter: Meter) {
        if let Some(old) = &self.meter {
            old.sub(self.bytes);
        }
        meter.add(self.bytes);
        self.meter = Some(meter);
    }

    pub(crate) fn set(&mut self, bytes: usize) {
        if let Some(meter) = &self.meter {
            meter.sub(self.bytes);
            meter.add(bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Sources tracked by the CONNECT rate limiter before idle ones are forgotten. A forgotten
/// source starts again with a full bucket, which gives it no more than a new source gets.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// A token bucket per source: `rate` CONNECTs per second, bursts of twice that.
#[derive(Debug)]
pub(crate) struct ConnectLimiter {
    rate: u32,
    buckets: HashMap<Source, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a CONNECT.
    tokens: u64,
    last: Instant,
}

impl ConnectLimiter {
    /// `rate` 0 turns the limit off.
    pub(crate) fn new(rate: u32) -> Self {
        ConnectLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.rate) * 2 * 1000
    }

    /// Takes one CONNECT from `source`'s bucket; false when it is empty.
    pub(crate) fn allow(&mut self, now: Instant, source: Source) -> bool {
        if self.rate == 0 {
            return true;
        }
        let capacity = self.capacity();
        let rate = u64::from(self.rate);
        if self.buckets.len() >= MAX_TRACKED_SOURCES && !self.buckets.contains_key(&source) {
            // Forget the sources whose buckets have refilled: they are as good as new.
            self.buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.last).as_millis();
                b.tokens
                    + u64::try_from(elapsed)
                        .unwrap_or(u64::MAX)
                        .saturating_mul(rate)
                    < capacity
            });
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                // Every tracked source is busy (a flood from many, likely spoofed,
                // addresses): let this one through untracked rather than lock out new
                // sources; it gets no more than a tracked new source would.
                return true;
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = u64::try_from(now.saturating_duration_since(bucket.last).as_millis())
            .unwrap_or(u64::MAX);
        if elapsed > 0 {
            bucket.tokens = bucket
                .tokens
                .saturating_add(elapsed.saturating_mul(rate))
                .min(capacity);
            bucket.last = now;
        }
        if bucket.tokens >= 1000 {
            bucket.tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Sources tracked now (for tests and the memory bound).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::peer::Peer;
    use std::time::Duration;

    fn from(ip: &str) -> Source {
        Source::of(&ClientAddr {
            peer: Peer {
                link: LinkId(0),
                addr: PeerAddr::Ip(ip.parse().unwrap()),
            },
            node: None,
        })
    }

    #[test]
    fn ports_of_one_host_are_one_source() {
        assert_eq!(from("10.0.0.1:1"), from("10.0.0.1:2"));
        assert_eq!(from("10.0.0.1:1"), from("[::ffff:10.0.0.1]:3"));
        assert_ne!(from("10.0.0.1:1"), from("10.0.0.2:1"));
    }

    #[test]
    fn a_source_gets_a_burst_then_its_rate() {
        let mut limiter = ConnectLimiter::new(10);
        let start = Instant::now();
        let a = from("10.0.0.1:1");
        let allowed = (0..100).filter(|_| limiter.allow(start, a)).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        // Another source is not affected.
        assert!(limiter.allow(start, from("10.0.0.2:1")));
        // After 1 s, 10 more.
        let later = start + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limiter.allow(later, a)).count();
        assert_eq!(allowed, 10);
        assert!(ConnectLimiter::new(0).allow(start, a));
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let mut limiter = ConnectLimiter::new(1);
        let start = Instant::now();
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(i);
            limiter.allow(start, Source::Ip(IpAddr::V4(ip)));
        }
        // Nothing had refilled yet: the table stops at the bound...
        assert_eq!(limiter.tracked(), MAX_TRACKED_SOURCES);
        // ...and once the buckets refill, the next new source clears them.
        limiter.allow(start + Duration::from_secs(10), from("10.9.9.9:1"));
        assert!(limiter.tracked() < 10, "{}", limiter.tracked());
    }

    #[test]
    fn open_sessions_fill_only_half_of_the_total() {
        let shared = Arc::new(Pool::default());
        let open = Meter::new(shared.clone(), true);
        let listed = Meter::new(shared.clone(), false);
        assert!(open.fits(50, 100));
        open.add(50);
        assert!(!open.fits(1, 100));
        assert!(listed.fits(50, 100));
        listed.add(50);
        assert!(!listed.fits(1, 100));
        open.sub(50);
        assert_eq!((shared.total(), shared.open()), (50, 0));
    }

    #[test]
    fn an_account_leaves_the_pool_when_dropped() {
        let shared = Arc::new(Pool::default());
        let mut account = Account::default();
        account.set(10);
        account.set_meter(Meter::new(shared.clone(), true));
        assert_eq!((shared.total(), shared.open()), (10, 10));
        account.set(30);
        account.set_meter(Meter::new(shared.clone(), false));
        assert_eq!((shared.total(), shared.open()), (30, 0));
        drop(account);
        assert_eq!(shared.total(), 0);
    }
}
