//! What every benchmark message carries, so that the receiving side can tell who sent it, which
//! one it is and when it left: run id, sender, sequence number, send time (big-endian).
//!
//! ```text
//! [0..4)   run id      messages of another run (retained, late, a second tool) are ignored
//! [4..8)   mote id     0-based; BROKER for the broker-side publisher (fan-out)
//! [8..12)  sequence    0-based, per sender
//! [12..20) sent at     nanoseconds since the tool started (one process, one clock)
//! [20..)   filler      up to --payload-size
//! ```

/// Bytes of the header; the smallest payload the tool sends.
pub(crate) const STAMP_LEN: usize = 20;

/// The sender id of messages published by the broker-side publisher.
pub(crate) const BROKER: u32 = u32::MAX;

/// The decoded header of a benchmark payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Identifies one run of the tool.
    pub(crate) run: u32,
    /// The sender: a mote id, or [`BROKER`].
    pub(crate) mote: u32,
    /// Per-sender sequence number.
    pub(crate) seq: u32,
    /// Send time, nanoseconds since the tool's start.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// Writes the header into the first [`STAMP_LEN`] bytes of `buf` (which the caller sized).
    pub(crate) fn write(&self, buf: &mut [u8]) {
        let fields = [
            &self.run.to_be_bytes()[..],
            &self.mote.to_be_bytes()[..],
            &self.seq.to_be_bytes()[..],
            &self.sent_ns.to_be_bytes()[..],
        ];
        let mut at = 0;
        for field in fields {
            if let Some(dst) = buf.get_mut(at..at + field.len()) {
                dst.copy_from_slice(field);
            }
            at += field.len();
        }
    }

    /// Reads a header; `None` when the payload is too short to be one of ours.
    pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(
                payload.get(at..at + 4)?.try_into().ok()?,
            ))
        };
        let sent_ns = u64::from_be_bytes(payload.get(12..20)?.try_into().ok()?);
        Some(Stamp {
            run: u32_at(0)?,
            mote: u32_at(4)?,
            seq: u32_at(8)?,
            sent_ns,
        })
    }
}

/// A payload buffer of `size` bytes (at least [`STAMP_LEN`]), filler included.
pub(crate) fn buffer(size: usize) -> Vec<u8> {
    vec![b'x'; size.max(STAMP_LEN)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stamp = Stamp {
            run: 0xdead_beef,
            mote: 7,
            seq: 1_000_000,
            sent_ns: 123_456_789_012,
        };
        let mut buf = buffer(32);
        stamp.write(&mut buf);
        assert_eq!(buf.len(), 32);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(buf.get(..19).unwrap_or_default()), None);
    }
}
