//! Reconnect delays: exponential from a minimum to a maximum, with jitter so that many
//! gateways cut off by the same outage do not all reconnect in the same instant.

use std::time::Duration;

/// Exponential backoff with ±25 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    /// xorshift state: jitter needs no cryptographic randomness.
    seed: u64,
}

impl Backoff {
    /// A backoff starting at `min`, doubling up to `max`. `seed` varies the jitter.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            current: min,
            seed: seed | 1,
        }
    }

    /// The delay before the next attempt; each call doubles the base delay up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        // A factor in [0.75, 1.25).
        let factor = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        base.mul_f64(factor).min(self.max.mul_f64(1.25))
    }

    /// Back to the minimum, after a connection that worked.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 42);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let bases = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base.mul_f64(0.75) && *delay < base.mul_f64(1.25),
                "{delay:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(125));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2);
        let same = (0..5).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 5);
    }
}
