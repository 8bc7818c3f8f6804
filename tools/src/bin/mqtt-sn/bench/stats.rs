//! Counting without storing every sample: a log-linear latency histogram (under 0.8 % error,
//! fixed memory) and a per-mote set of sequence numbers for loss and duplicate detection.

/// Sub-buckets per power of two: 2^7 = 128, so a bucket is at most 1/128 of its value wide.
const MANTISSA_BITS: u32 = 7;
/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 1 << MANTISSA_BITS;
/// Powers of two covered above the linear range: up to 2^(7+36) ns, about 2.4 hours.
const OCTAVES: usize = 36;
/// Total number of buckets.
const BUCKETS: usize = LINEAR as usize + OCTAVES * LINEAR as usize;

/// Latencies in nanoseconds, bucketed so that any percentile is within 0.8 % of the truth.
/// Min, max, count and sum are exact.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket a value falls in.
fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= MANTISSA_BITS
    let shift = exponent - MANTISSA_BITS;
    let mantissa = (value >> shift) & (LINEAR - 1);
    let octave = (shift as usize).min(OCTAVES - 1);
    LINEAR as usize + octave * LINEAR as usize + mantissa as usize
}

/// The middle of a bucket, the value reported for a percentile falling in it.
fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let octave = (index - LINEAR) / LINEAR;
    let mantissa = (index - LINEAR) % LINEAR;
    let low = (LINEAR + mantissa) << octave;
    let width = 1u64 << octave;
    low + width / 2
}

impl Histogram {
    /// Counts one value.
    pub(crate) fn record(&mut self, nanos: u64) {
        if let Some(slot) = self.counts.get_mut(bucket_of(nanos)) {
            *slot += 1;
        }
        self.count += 1;
        self.sum += u128::from(nanos);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    /// The value below which `fraction` (0..=1) of the recorded values lie, in nanoseconds;
    /// `None` when empty. The exact max is returned for fraction 1.
    pub(crate) fn percentile(&self, fraction: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if fraction >= 1.0 {
            return Some(self.max);
        }
        let rank = ((fraction * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_value(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The summary the report prints.
    pub(crate) fn summary(&self) -> Option<Summary> {
        if self.count == 0 {
            return None;
        }
        let ms = |nanos: u64| nanos as f64 / 1e6;
        Some(Summary {
            count: self.count,
            min_ms: ms(self.min),
            mean_ms: self.sum as f64 / self.count as f64 / 1e6,
            p50_ms: ms(self.percentile(0.50).unwrap_or(0)),
            p90_ms: ms(self.percentile(0.90).unwrap_or(0)),
            p99_ms: ms(self.percentile(0.99).unwrap_or(0)),
            p999_ms: ms(self.percentile(0.999).unwrap_or(0)),
            max_ms: ms(self.max),
        })
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    /// Number of samples.
    pub(crate) count: u64,
    /// Smallest.
    pub(crate) min_ms: f64,
    /// Arithmetic mean.
    pub(crate) mean_ms: f64,
    /// Median.
    pub(crate) p50_ms: f64,
    /// 90th percentile.
    pub(crate) p90_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile.
    pub(crate) p999_ms: f64,
    /// Largest.
    pub(crate) max_ms: f64,
}

/// Largest sequence number a [`SeqSet`] tracks: 2^28 bits is 32 MiB for one mote, far beyond
/// what a bounded run sends. Larger numbers are refused (and counted by the caller).
pub(crate) const MAX_TRACKED_SEQ: u32 = 1 << 28;

/// The sequence numbers seen from one sender, as a growable bit set.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqSet {
    bits: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; true if it was not there yet. `None` when `seq` is beyond
    /// [`MAX_TRACKED_SEQ`].
    pub(crate) fn insert(&mut self, seq: u32) -> Option<bool> {
        if seq >= MAX_TRACKED_SEQ {
            return None;
        }
        let word = (seq / 64) as usize;
        if word >= self.bits.len() {
            // Grow geometrically so a mote's stream costs amortised O(1) per message.
            let want = (word + 1).max(self.bits.len() * 2).max(4);
            self.bits.resize(want, 0);
        }
        let slot = self.bits.get_mut(word)?;
        let mask = 1u64 << (seq % 64);
        let new = *slot & mask == 0;
        *slot |= mask;
        if new {
            self.len += 1;
        }
        Some(new)
    }

    /// Whether `seq` is in the set.
    pub(crate) fn contains(&self, seq: u32) -> bool {
        self.bits
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// How many distinct numbers are in the set.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The numbers in the set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &word)| {
            (0..64u32)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| (w as u32) * 64 + b)
        })
    }

    /// How many of `0..end` are missing.
    pub(crate) fn missing_below(&self, end: u32) -> u64 {
        let present = self.iter().take_while(|&s| s < end).count() as u64;
        u64::from(end) - present
    }

    /// How many numbers of `other` are missing from `self`.
    pub(crate) fn missing_of(&self, other: &SeqSet) -> u64 {
        other.iter().filter(|&s| !self.contains(s)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(0.5).unwrap_or(0) as f64;
        let p99 = h.percentile(0.99).unwrap_or(0) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.percentile(1.0), Some(100_000_000));
        let s = h.summary();
        assert!(s.is_some_and(|s| s.count == 100_000 && s.min_ms == 0.001));
    }

    #[test]
    fn small_values_are_exact() {
        let mut a = Histogram::default();
        a.record(5);
        a.record(7);
        a.record(u64::MAX);
        assert_eq!(a.percentile(0.0), Some(5));
        assert_eq!(a.percentile(0.5), Some(7));
        assert_eq!(a.percentile(1.0), Some(u64::MAX));
    }

    #[test]
    fn seq_set_counts_new_and_missing() {
        let mut s = SeqSet::default();
        assert_eq!(s.insert(0), Some(true));
        assert_eq!(s.insert(0), Some(false));
        assert_eq!(s.insert(130), Some(true));
        assert_eq!(s.insert(MAX_TRACKED_SEQ), None);
        assert_eq!(s.len(), 2);
        assert!(s.contains(130) && !s.contains(129));
        assert_eq!(s.missing_below(3), 2);
        let mut other = SeqSet::default();
        other.insert(1);
        other.insert(130);
        assert_eq!(s.missing_of(&other), 1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 130]);
    }
}
