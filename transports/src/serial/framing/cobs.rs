//! COBS + CRC-16 framing, for LoRa modems in transparent mode (Ebyte E22 and the like) and
//! for custom mote firmware on a serial line.
//!
//! One frame on the wire:
//!
//! ```text
//! 0x00  COBS( node address (2 bytes, big-endian) | MQTT-SN datagram | CRC (2 bytes, big-endian) )  0x00
//! ```
//!
//! * The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection,
//!   no final XOR) over the address and the datagram.
//! * COBS (consistent overhead byte stuffing, Cheshire and Baker 1999) removes every 0x00
//!   from the frame, so 0x00 marks frame boundaries and a receiver resynchronises on the next
//!   one after any damage.
//! * The address is the mote's node address: the sender on the way to the gateway, the
//!   destination on the way to a mote. [`BROADCAST`] (0xFFFF) addresses every mote.
//! * The gateway writes a 0x00 before each frame as well as after it. The leading one costs
//!   a byte and means a frame that follows line noise or a truncated frame (a mote reset in
//!   mid-send, an RSSI byte appended by a modem) is not glued to it and lost. Senders may
//!   omit it; a receiver ignores empty frames (two 0x00 in a row).
//!
//! `max_frame` is the radio's packet size: all the bytes of one frame on the wire, both
//! delimiters included (240 for an Ebyte E22 with its default sub-packet size). A datagram
//! that does not fit is refused, never split over two radio packets, which the radio could
//! deliver one without the other.

use super::{check_max_frame, FrameError, Framer, FramerStats, Input, Received};

/// The node address that reaches every mote.
pub const BROADCAST: u16 = 0xFFFF;

/// Node address and CRC around the datagram, before COBS.
const OVERHEAD: usize = 4;
/// The smallest `max_frame`: two delimiters, one COBS code byte, address, a 2-byte
/// datagram and the CRC.
pub const MIN_MAX_FRAME: usize = 2 + 1 + OVERHEAD + 2;
/// The largest `max_frame` accepted.
pub const MAX_MAX_FRAME: usize = 65_535;

/// The CRC-16/CCITT-FALSE of `data` (check value: `b"123456789"` gives 0x29B1).
pub fn crc16_ccitt_false(data: &[u8]) -> u16 {
    crc16_update(0xFFFF, data)
}

/// Continues a CRC-16/CCITT-FALSE over more data, so address and datagram need not be
/// copied together. Bitwise: frames are a few hundred bytes, a table would buy nothing
/// measurable.
fn crc16_update(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The most bytes COBS can make of `len` bytes: one code byte per started run of 254
/// non-zero bytes, and at least one.
pub fn max_encoded_len(len: usize) -> usize {
    len + len.div_ceil(254).max(1)
}

/// Appends the COBS encoding of `data` to `out`, without delimiters.
///
/// The variant is the usual one (as in the paper and the Wikipedia examples): a run of 254
/// non-zero bytes is closed by code 0xFF without an implied zero, and no code byte follows a
/// final full run.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    let mut writer = CobsWriter::new(out);
    writer.write(data);
    writer.finish();
}

/// Appends the bytes `encoded` (one frame's COBS bytes, without delimiters) stand for to
/// `out`. On error `out` may hold part of the frame.
pub fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut rest = encoded;
    while let [code, tail @ ..] = rest {
        if *code == 0 {
            return Err(FrameError::Malformed {
                reason: "COBS frame contains a 0x00",
            });
        }
        let (run, after) =
            tail.split_at_checked(usize::from(*code) - 1)
                .ok_or(FrameError::Malformed {
                    reason: "COBS code byte points past the end of the frame",
                })?;
        if run.contains(&0) {
            return Err(FrameError::Malformed {
                reason: "COBS frame contains a 0x00",
            });
        }
        out.extend_from_slice(run);
        rest = after;
        // A code below 0xFF stands for its run followed by a zero, except at the very end
        // where the zero is the delimiter itself.
        if *code != 0xFF && !rest.is_empty() {
            out.push(0);
        }
    }
    Ok(())
}

/// COBS encoder that takes its input in pieces.
struct CobsWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the current run's code byte goes; `None` after a full run of 254, until a
    /// further byte opens the next one (so a final full run gets no empty run after it).
    code_at: Option<usize>,
    code: u8,
}

impl<'a> CobsWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        let code_at = Some(out.len());
        out.push(0);
        CobsWriter {
            out,
            code_at,
            code: 1,
        }
    }

    fn write(&mut self, data: &[u8]) {
        for &byte in data {
            let code_at = match self.code_at {
                Some(at) => at,
                None => {
                    let at = self.out.len();
                    self.out.push(0);
                    self.code = 1;
                    self.code_at = Some(at);
                    at
                }
            };
            if byte == 0 {
                self.set_code(code_at);
                self.code_at = Some(self.out.len());
                self.out.push(0);
                self.code = 1;
            } else {
                self.out.push(byte);
                self.code += 1;
                if self.code == 0xFF {
                    self.set_code(code_at);
                    self.code_at = None;
                }
            }
        }
    }

    fn set_code(&mut self, at: usize) {
        if let Some(slot) = self.out.get_mut(at) {
            *slot = self.code;
        }
    }

    fn finish(self) {
        if let Some(at) = self.code_at {
            if let Some(slot) = self.out.get_mut(at) {
                *slot = self.code;
            }
        }
    }
}

/// Streaming decoder and encoder of COBS + CRC-16 frames.
#[derive(Debug)]
pub struct CobsFramer {
    max_frame: usize,
    /// The longest datagram whose frame always fits `max_frame`.
    max_datagram: usize,
    input: Input,
    /// The COBS bytes of the frame in progress; at most `max_frame - 1`.
    frame: Vec<u8>,
    /// Bytes of a frame being skipped because it grew past `max_frame`.
    overflow: Option<usize>,
    /// Scratch space for decoding, kept to avoid an allocation per frame.
    decoded: Vec<u8>,
    stats: FramerStats,
}

impl CobsFramer {
    /// A framer for frames of at most `max_frame` bytes on the wire, delimiters included,
    /// [`MIN_MAX_FRAME`] to [`MAX_MAX_FRAME`].
    pub fn new(max_frame: usize) -> Result<Self, FrameError> {
        check_max_frame("cobs", max_frame, MIN_MAX_FRAME, MAX_MAX_FRAME)?;
        Ok(CobsFramer {
            max_frame,
            max_datagram: max_datagram(max_frame),
            input: Input::default(),
            frame: Vec::new(),
            overflow: None,
            decoded: Vec::new(),
            stats: FramerStats::default(),
        })
    }

    /// Appends bytes read from the port; call [`next_datagram`](Self::next_datagram) until
    /// `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// The next `(node address, datagram)`, an error for a dropped frame, or `None` when no
    /// complete frame is left.
    pub fn next_datagram(&mut self) -> Option<Result<(u16, Vec<u8>), FrameError>> {
        loop {
            let byte = self.input.next_byte()?;
            if byte != 0 {
                if let Some(seen) = &mut self.overflow {
                    *seen = seen.saturating_add(1);
                } else if self.frame.len() + 1 >= self.max_frame {
                    // One more byte would not leave room for the delimiter: skip the rest
                    // of this frame instead of buffering it.
                    self.overflow = Some(self.frame.len() + 1);
                    self.frame.clear();
                } else {
                    self.frame.push(byte);
                }
                continue;
            }
            if let Some(seen) = self.overflow.take() {
                return Some(Err(self.stats.count(FrameError::FrameTooLong {
                    // The bytes seen plus the delimiter just read.
                    at_least: seen + 1,
                    max: self.max_frame,
                })));
            }
            if self.frame.is_empty() {
                // A leading delimiter, or idle fill between frames.
                continue;
            }
            let result = self.finish_frame();
            self.frame.clear();
            return Some(result.map_err(|error| self.stats.count(error)));
        }
    }

    /// Decodes and checks the complete frame in `self.frame`.
    fn finish_frame(&mut self) -> Result<(u16, Vec<u8>), FrameError> {
        self.decoded.clear();
        decode(&self.frame, &mut self.decoded)?;
        let [address_high, address_low, datagram @ .., crc_high, crc_low] = self.decoded.as_slice()
        else {
            return Err(FrameError::Malformed {
                reason: "frame shorter than its address and CRC",
            });
        };
        let address = [*address_high, *address_low];
        let received = u16::from_be_bytes([*crc_high, *crc_low]);
        let computed = crc16_update(crc16_update(0xFFFF, &address), datagram);
        if received != computed {
            return Err(FrameError::BadChecksum { received, computed });
        }
        self.stats.ok();
        Ok((u16::from_be_bytes(address), datagram.to_vec()))
    }

    /// Appends the frame carrying `datagram` to node `to` (0x00, COBS bytes, 0x00), or
    /// refuses a datagram longer than [`max_datagram`](Self::max_datagram) and leaves `out`
    /// unchanged.
    pub fn encode(&self, to: u16, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if datagram.len() > self.max_datagram {
            return Err(FrameError::DatagramTooLarge {
                len: datagram.len(),
                max: self.max_datagram,
            });
        }
        let address = to.to_be_bytes();
        let crc = crc16_update(crc16_update(0xFFFF, &address), datagram);
        out.reserve(2 + max_encoded_len(OVERHEAD + datagram.len()));
        out.push(0);
        let mut writer = CobsWriter::new(out);
        writer.write(&address);
        writer.write(datagram);
        writer.write(&crc.to_be_bytes());
        writer.finish();
        out.push(0);
        Ok(())
    }

    /// The longest datagram that fits `max_frame` whatever its content (COBS adds a byte per
    /// 254, so the bound is the worst case).
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// What the decoder has seen so far. `garbage_bytes` stays 0: with 0x00 delimiters every
    /// byte belongs to some frame, and a bad one is counted as a frame.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }
}

/// The largest datagram `n` with `2 + max_encoded_len(n + 4) <= max_frame`.
fn max_datagram(max_frame: usize) -> usize {
    let mut n = max_frame.saturating_sub(2 + 1 + OVERHEAD);
    while n > 0 && 2 + max_encoded_len(n + OVERHEAD) > max_frame {
        n -= 1;
    }
    n
}

impl Framer for CobsFramer {
    type Address = u16;

    fn push(&mut self, bytes: &[u8]) {
        CobsFramer::push(self, bytes);
    }

    fn next_event(&mut self) -> Option<Result<Received<u16>, FrameError>> {
        let item = self.next_datagram()?;
        Some(item.map(|(from, datagram)| Received::Datagram { from, datagram }))
    }

    fn encode(&self, to: &u16, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        CobsFramer::encode(self, *to, datagram, out)
    }

    fn broadcast_address(&self) -> u16 {
        BROADCAST
    }

    fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    fn stats(&self) -> FramerStats {
        self.stats
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

    fn cobs(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(data, &mut out);
        out
    }

    fn uncobs(encoded: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        decode(encoded, &mut out).map(|()| out)
    }

    #[test]
    fn crc_check_values() {
        // The catalogue's check value, and the empty input (the initial value).
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
        assert_eq!(crc16_ccitt_false(b"A"), 0xB915);
        assert_eq!(
            crc16_update(crc16_update(0xFFFF, b"1234"), b"56789"),
            0x29B1
        );
    }

    /// The examples table of the Wikipedia article on COBS (examples 1-11), without the
    /// trailing delimiter.
    #[test]
    fn cobs_examples() {
        let run = |from: u8, to: u8| (from..=to).collect::<Vec<u8>>();
        let cat = |parts: &[&[u8]]| parts.concat();
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![0x00], vec![0x01, 0x01]),
            (vec![0x00, 0x00], vec![0x01, 0x01, 0x01]),
            (vec![0x00, 0x11, 0x00], vec![0x01, 0x02, 0x11, 0x01]),
            (
                vec![0x11, 0x22, 0x00, 0x33],
                vec![0x03, 0x11, 0x22, 0x02, 0x33],
            ),
            (
                vec![0x11, 0x22, 0x33, 0x44],
                vec![0x05, 0x11, 0x22, 0x33, 0x44],
            ),
            (
                vec![0x11, 0x00, 0x00, 0x00],
                vec![0x02, 0x11, 0x01, 0x01, 0x01],
            ),
            // 01..FE: a full run of 254, no code after it.
            (run(0x01, 0xFE), cat(&[&[0xFF], &run(0x01, 0xFE)])),
            (
                cat(&[&[0x00], &run(0x01, 0xFE)]),
                cat(&[&[0x01, 0xFF], &run(0x01, 0xFE)]),
            ),
            (
                run(0x01, 0xFF),
                cat(&[&[0xFF], &run(0x01, 0xFE), &[0x02, 0xFF]]),
            ),
            (
                cat(&[&run(0x02, 0xFF), &[0x00]]),
                cat(&[&[0xFF], &run(0x02, 0xFF), &[0x01, 0x01]]),
            ),
            (
                cat(&[&run(0x03, 0xFF), &[0x00, 0x01]]),
                cat(&[&[0xFE], &run(0x03, 0xFF), &[0x02, 0x01]]),
            ),
        ];
        for (i, (plain, encoded)) in cases.iter().enumerate() {
            assert_eq!(&cobs(plain), encoded, "example {}", i + 1);
            assert_eq!(&uncobs(encoded).unwrap(), plain, "example {}", i + 1);
            assert!(encoded.len() <= max_encoded_len(plain.len()));
        }
        assert_eq!(cobs(&[]), [0x01]);
    }

    #[test]
    fn broken_cobs_is_refused() {
        assert!(uncobs(&[0x05, 0x11, 0x22]).is_err()); // run past the end
        assert!(uncobs(&[0x03, 0x11, 0x00]).is_err()); // a zero inside
        assert!(uncobs(&[0x00]).is_err()); // a zero code
    }

    fn decode_all(f: &mut CobsFramer, bytes: &[u8]) -> Vec<Result<(u16, Vec<u8>), FrameError>> {
        f.push(bytes);
        std::iter::from_fn(|| f.next_datagram()).collect()
    }

    #[test]
    fn frame_layout() {
        // Node 0x0102 sends PINGREQ (02 16): CRC over 01 02 02 16.
        let f = CobsFramer::new(240).unwrap();
        let mut out = Vec::new();
        f.encode(0x0102, &[0x02, 0x16], &mut out).unwrap();
        let crc = crc16_ccitt_false(&[0x01, 0x02, 0x02, 0x16]);
        let [c0, c1] = crc.to_be_bytes();
        assert!(
            c0 != 0 && c1 != 0,
            "the example wants a CRC without zero bytes"
        );
        assert_eq!(out, [0x00, 0x07, 0x01, 0x02, 0x02, 0x16, c0, c1, 0x00]);
        // Address 0x0000 shows the zeros being stuffed.
        out.clear();
        f.encode(0x0000, &[0x02, 0x16], &mut out).unwrap();
        let [c0, c1] = crc16_ccitt_false(&[0x00, 0x00, 0x02, 0x16]).to_be_bytes();
        assert_eq!(out[..4], [0x00, 0x01, 0x01, 0x05]);
        assert_eq!(out[4..], [0x02, 0x16, c0, c1, 0x00]);
        let mut d = CobsFramer::new(240).unwrap();
        assert_eq!(decode_all(&mut d, &out), [Ok((0, vec![0x02, 0x16]))]);
    }

    #[test]
    fn bad_crc_is_dropped_and_counted() {
        let f = CobsFramer::new(64).unwrap();
        let mut out = Vec::new();
        f.encode(7, b"hello", &mut out).unwrap();
        let good = out.clone();
        out[4] ^= 0x01;
        out.extend(&good);
        let mut d = CobsFramer::new(64).unwrap();
        let result = decode_all(&mut d, &out);
        assert!(matches!(result[0], Err(FrameError::BadChecksum { .. })));
        assert_eq!(result[1], Ok((7, b"hello".to_vec())));
        assert_eq!(d.stats().bad_checksum, 1);
        assert_eq!(d.stats().frames_ok, 1);
    }

    #[test]
    fn max_datagram_follows_max_frame() {
        // E22: 240 bytes per sub-packet = 2 delimiters + 1 code byte + 4 + 233.
        assert_eq!(CobsFramer::new(240).unwrap().max_datagram(), 233);
        assert_eq!(CobsFramer::new(MIN_MAX_FRAME).unwrap().max_datagram(), 2);
        // 2 + 1 + 254 = 257: the first size where a second code byte can be needed.
        assert_eq!(CobsFramer::new(257).unwrap().max_datagram(), 250);
        assert_eq!(CobsFramer::new(258).unwrap().max_datagram(), 250);
        assert_eq!(CobsFramer::new(259).unwrap().max_datagram(), 251);
        assert!(CobsFramer::new(MIN_MAX_FRAME - 1).is_err());
        for max_frame in MIN_MAX_FRAME..700 {
            let f = CobsFramer::new(max_frame).unwrap();
            let n = f.max_datagram();
            // The worst case (no zeros) fits; one more byte would not always.
            let mut out = Vec::new();
            f.encode(0x0101, &vec![0x55; n], &mut out).unwrap();
            assert!(out.len() <= max_frame, "{max_frame}");
            assert!(
                2 + max_encoded_len(n + 1 + OVERHEAD) > max_frame,
                "{max_frame}"
            );
        }
    }

    #[test]
    fn oversize_is_refused_not_split() {
        let f = CobsFramer::new(240).unwrap();
        let mut out = vec![9];
        assert_eq!(
            f.encode(1, &[1; 234], &mut out),
            Err(FrameError::DatagramTooLarge { len: 234, max: 233 })
        );
        assert_eq!(out, [9]);
    }

    #[test]
    fn long_frames_are_skipped_without_buffering() {
        let mut d = CobsFramer::new(16).unwrap();
        let mut bytes = vec![0x33; 1000];
        bytes.push(0);
        let f = CobsFramer::new(16).unwrap();
        f.encode(3, b"ok", &mut bytes).unwrap();
        let out = decode_all(&mut d, &bytes);
        assert_eq!(
            out,
            [
                Err(FrameError::FrameTooLong {
                    at_least: 1001,
                    max: 16
                }),
                Ok((3, b"ok".to_vec()))
            ]
        );
        assert!(d.frame.capacity() <= 16);
        assert_eq!(d.stats().oversize, 1);
    }

    #[test]
    fn short_and_malformed_frames() {
        let mut d = CobsFramer::new(64).unwrap();
        // Decodes to 3 bytes: too short for address + CRC.
        let out = decode_all(&mut d, &[0x04, 1, 2, 3, 0x00]);
        assert!(matches!(out[..], [Err(FrameError::Malformed { .. })]));
        // A code running past the delimiter.
        let out = decode_all(&mut d, &[0x09, 1, 2, 3, 0x00]);
        assert!(matches!(out[..], [Err(FrameError::Malformed { .. })]));
        // Idle delimiters produce nothing.
        assert!(decode_all(&mut d, &[0, 0, 0]).is_empty());
        assert_eq!(d.stats().malformed, 2);
    }
}
