//! The one source of randomness of a run: SplitMix64, seeded. Every choice of the simulation
//! comes from here, in a fixed order, so a seed replays the same run exactly. Written here
//! (a dozen lines) rather than taken from a crate so that no dependency update can change
//! what a recorded seed does.

use std::time::Duration;

/// A seeded pseudo-random generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that replays the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }

    /// An index into a slice of `len` elements (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// One of `items`, or `default` if there are none.
    pub fn pick<T: Copy>(&mut self, items: &[T], default: T) -> T {
        let i = self.index(items.len());
        items.get(i).copied().unwrap_or(default)
    }

    /// True with probability `p` (0.0..=1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 bits give a uniform f64 in [0, 1).
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A duration between `lo` and `hi` (inclusive of `lo`), at millisecond resolution.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = u64::try_from(lo.as_millis()).unwrap_or(u64::MAX);
        let hi_ms = u64::try_from(hi.as_millis()).unwrap_or(u64::MAX);
        if hi_ms <= lo_ms {
            return lo;
        }
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms))
    }

    /// Whole seconds between `lo` and `hi` inclusive.
    pub fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_secs(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}
