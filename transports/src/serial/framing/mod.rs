//! Framings for serial links: how datagrams are delimited and addressed in a byte stream.
//!
//! Each framing is a pure encoder/decoder without I/O, so that it can be tested with
//! arbitrary input, split at arbitrary points, and fuzzed:
//!
//! | framing | module | address | integrity check | resynchronises on |
//! |---|---|---|---|---|
//! | XBee API, mode 1 or 2 (Zigbee) | [`xbee`] | 64-bit + 16-bit | 8-bit checksum | next 0x7E |
//! | COBS + CRC-16 (LoRa transparent mode, custom motes) | [`cobs`] | 16-bit node | CRC-16/CCITT-FALSE | next 0x00 |
//! | KISS (RNode-style LoRa devices) | [`kiss`] | KISS port 0..=15 | none | next FEND |
//! | raw MQTT-SN (one attached mote) | [`raw`] | none | none | not reliably |
//!
//! # How a decoder is driven
//!
//! Bytes read from the port go in with `push`; decoded items come out of `next_event` (or the
//! framing's own `next_frame`) until it returns `None`. Decoding happens in `next_*`, so a
//! caller that drains after every `push` keeps at most one partial frame buffered, and that
//! buffer never grows beyond the framing's `max_frame` whatever the input: a length field or
//! a run of garbage cannot make the decoder allocate more.
//!
//! An `Err` item reports a frame that was dropped (bad checksum, too long, malformed); it is
//! already counted in [`FramerStats`], and decoding continues with the next call. Nothing a
//! decoder is fed makes it panic.
//!
//! # Encoding
//!
//! `encode` appends one whole frame to the caller's buffer, or refuses with an error and
//! leaves the buffer as it was. A datagram that does not fit `max_frame` is refused, never
//! split: a split datagram would reach the mote as two broken ones. Refusals are not counted
//! here (encoding takes `&self`); the link that asked counts them.

pub mod cobs;
pub mod kiss;
pub mod raw;
pub mod xbee;

use std::fmt::Debug;
use std::hash::Hash;

/// What a decoder hands out, besides errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<A> {
    /// A datagram from a peer.
    Datagram {
        /// Who sent it, in the framing's address form.
        from: A,
        /// The MQTT-SN datagram (for [`raw`], the whole packet with its length field).
        datagram: Vec<u8>,
    },
    /// The radio's report on an earlier transmission that asked for one (XBee 0x8B). Only
    /// framings whose [`Framer::reports_delivery`] is true yield it.
    TransmitStatus(xbee::TransmitStatus),
}

/// The interface the serial link drives, the same for every framing.
///
/// Framing-specific extras (XBee frame types other than data, KISS port filters) are on the
/// framer types themselves.
pub trait Framer {
    /// How a peer is named on this framing.
    type Address: Clone + Eq + Hash + Debug;

    /// Appends bytes read from the port. Nothing is decoded until
    /// [`next_event`](Self::next_event) is called; call it until it returns `None`.
    fn push(&mut self, bytes: &[u8]);

    /// The next datagram or transmit status, an error for a dropped frame, or `None` when the
    /// bytes pushed so far hold no further complete frame.
    fn next_event(&mut self) -> Option<Result<Received<Self::Address>, FrameError>>;

    /// Appends the frame that carries `datagram` to `to`, or refuses it (too large, or not
    /// representable in this framing) and leaves `out` unchanged.
    fn encode(
        &self,
        to: &Self::Address,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError>;

    /// Like [`encode`](Self::encode), asking the radio to report the outcome under
    /// `frame_id` (1..=255; 0 asks for no report). Framings without delivery reports ignore
    /// the id.
    fn encode_tracked(
        &self,
        to: &Self::Address,
        datagram: &[u8],
        frame_id: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let _ = frame_id;
        self.encode(to, datagram, out)
    }

    /// Whether the radio reports the outcome of a transmission
    /// ([`Received::TransmitStatus`]), so that [`encode_tracked`](Self::encode_tracked) is
    /// worth using.
    fn reports_delivery(&self) -> bool {
        false
    }

    /// Where ADVERTISE and GWINFO go: the address that reaches every mote in range.
    fn broadcast_address(&self) -> Self::Address;

    /// The longest datagram [`encode`](Self::encode) accepts, whatever its content.
    fn max_datagram(&self) -> usize;

    /// What the decoder has seen so far.
    fn stats(&self) -> FramerStats;
}

/// Counters of a decoder since it was created.
///
/// Which counter a dropped frame lands in follows the error it was reported with, so the sum
/// of `bad_checksum`, `oversize` and `malformed` is the number of `Err` items handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramerStats {
    /// Frames handed out as datagrams or transmit statuses.
    pub frames_ok: u64,
    /// Frames dropped for a wrong checksum or CRC.
    pub bad_checksum: u64,
    /// Frames dropped for being longer than `max_frame`.
    pub oversize: u64,
    /// Frames dropped for a broken structure (a bad escape, too short for their type, ...).
    pub malformed: u64,
    /// Valid frames not handed out: other XBee frame types, KISS commands other than data
    /// or ports not listened to.
    pub skipped: u64,
    /// Bytes thrown away while looking for the start of a frame. Bytes of a frame rejected
    /// as a whole are counted by that frame's counter instead. (XBee API mode 1 searches a
    /// rejected frame again for a start, so its bytes show up here too.)
    pub garbage_bytes: u64,
}

impl FramerStats {
    fn add_garbage(&mut self, bytes: usize) {
        self.garbage_bytes = self
            .garbage_bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Counts an error under the counter its variant belongs to and passes it on.
    fn count(&mut self, error: FrameError) -> FrameError {
        let counter = match error {
            FrameError::BadChecksum { .. } => &mut self.bad_checksum,
            FrameError::FrameTooLong { .. } => &mut self.oversize,
            _ => &mut self.malformed,
        };
        *counter = counter.saturating_add(1);
        error
    }

    fn ok(&mut self) {
        self.frames_ok = self.frames_ok.saturating_add(1);
    }

    fn skipped(&mut self) {
        self.skipped = self.skipped.saturating_add(1);
    }
}

/// Why a frame was dropped on receive, a datagram refused on send, or a framer not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's checksum (XBee) or CRC (COBS) does not match its contents: the bytes were
    /// damaged on the way, or this was not a frame at all.
    #[error("frame dropped: checksum {received:#06x} in the frame, {computed:#06x} computed")]
    BadChecksum {
        /// The checksum the frame carried.
        received: u16,
        /// The checksum of the bytes that arrived.
        computed: u16,
    },
    /// A received frame is longer than the framer's `max_frame`; it is skipped up to the
    /// next frame boundary.
    #[error(
        "frame dropped: at least {at_least} bytes, over max_frame {max}; raise max_frame if \
         the radio really sends frames this long"
    )]
    FrameTooLong {
        /// The length seen or announced before the frame was given up.
        at_least: usize,
        /// The framer's limit.
        max: usize,
    },
    /// A received frame breaks the framing's rules.
    #[error("frame dropped: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// A datagram to send is too large for one frame; it is refused, not split.
    #[error(
        "datagram of {len} bytes refused: at most {max} fit in one frame of this link \
         (max_frame); lower max_packet_size to fit"
    )]
    DatagramTooLarge {
        /// The datagram's length.
        len: usize,
        /// The longest datagram that fits.
        max: usize,
    },
    /// A datagram to send cannot be carried by this framing as it is.
    #[error("datagram refused: {reason}")]
    Unencodable {
        /// What was wrong.
        reason: &'static str,
    },
    /// A framer was asked for a `max_frame` it cannot work with.
    #[error("max_frame {max_frame} is out of range for {framing} framing; use {min} to {max}")]
    InvalidMaxFrame {
        /// The framing's name as written in the configuration.
        framing: &'static str,
        /// What was asked for.
        max_frame: usize,
        /// The smallest value that can carry a minimal MQTT-SN datagram.
        min: usize,
        /// The largest value the framing allows.
        max: usize,
    },
}

/// Checks a `max_frame` against a framing's range.
fn check_max_frame(
    framing: &'static str,
    max_frame: usize,
    min: usize,
    max: usize,
) -> Result<(), FrameError> {
    if (min..=max).contains(&max_frame) {
        Ok(())
    } else {
        Err(FrameError::InvalidMaxFrame {
            framing,
            max_frame,
            min,
            max,
        })
    }
}

/// Bytes pushed but not yet decoded.
///
/// Decoding is lazy (done in `next_*`), so the buffer holds what the caller pushed since it
/// last drained, plus the current partial frame. Consumed bytes are dropped on the next
/// `push`, not one by one, so decoding a chunk costs one move of its tail at most.
///
/// A mark keeps the bytes of a frame in progress so that the XBee API mode 1 decoder can go
/// back and search them again for a start delimiter when the frame turns out bad.
#[derive(Debug, Default)]
struct Input {
    bytes: Vec<u8>,
    /// Next byte to decode.
    pos: usize,
    /// Start of the frame in progress, when the decoder may need to return to it.
    mark: Option<usize>,
}

impl Input {
    fn push(&mut self, data: &[u8]) {
        let keep_from = self.mark.unwrap_or(self.pos).min(self.pos);
        if keep_from > 0 {
            self.bytes.drain(..keep_from.min(self.bytes.len()));
            self.pos -= keep_from;
            self.mark = self.mark.map(|m| m - keep_from);
        }
        self.bytes.extend_from_slice(data);
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.bytes.get(self.pos).copied()?;
        self.pos += 1;
        Some(byte)
    }

    /// The bytes not decoded yet.
    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// Marks decoded bytes as consumed (at most the rest).
    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.bytes.len());
    }

    /// Remembers that the byte just read starts a frame.
    fn mark_last(&mut self) {
        self.mark = Some(self.pos.saturating_sub(1));
    }

    fn clear_mark(&mut self) {
        self.mark = None;
    }

    /// Goes back to the byte after the mark, so the bytes of a rejected frame are searched
    /// again, and forgets the mark.
    fn rewind_after_mark(&mut self) {
        if let Some(m) = self.mark.take() {
            self.pos = m + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn input_keeps_marked_bytes_across_pushes() {
        let mut input = Input::default();
        input.push(&[1, 2, 3]);
        assert_eq!(input.next_byte(), Some(1));
        assert_eq!(input.next_byte(), Some(2));
        input.mark_last();
        assert_eq!(input.next_byte(), Some(3));
        assert_eq!(input.next_byte(), None);
        input.push(&[4]);
        // 1 was consumed and dropped; 2 is kept for the mark.
        assert_eq!(input.bytes, [2, 3, 4]);
        input.rewind_after_mark();
        assert_eq!(input.next_byte(), Some(3));
        input.push(&[5]);
        assert_eq!(input.bytes, [4, 5]);
        assert_eq!(input.rest(), [4, 5]);
        input.advance(10);
        assert_eq!(input.rest(), [] as [u8; 0]);
    }

    #[test]
    fn errors_land_in_their_counters() {
        let mut stats = FramerStats::default();
        stats.count(FrameError::BadChecksum {
            received: 1,
            computed: 2,
        });
        stats.count(FrameError::FrameTooLong {
            at_least: 9,
            max: 8,
        });
        stats.count(FrameError::Malformed { reason: "x" });
        assert_eq!(
            (stats.bad_checksum, stats.oversize, stats.malformed),
            (1, 1, 1)
        );
    }
}
