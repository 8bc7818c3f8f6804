//! Raw MQTT-SN over a serial line, for one directly attached mote.
//!
//! There is no framing beyond the packet itself: its own length field says where it ends
//! (one byte, 2..=255, or 0x01 followed by a 2-byte big-endian length of at least 4, each
//! counting the whole packet). There is no address (one mote per line) and no checksum.
//!
//! **Raw framing cannot resynchronise reliably.** After garbage or a lost byte, any byte can
//! look like a length. The decoder drops one byte at a time while the length it sees is
//! impossible (0x00, a long form below 4, above `max_frame`), but a plausible length in
//! the garbage swallows the bytes after it, real packets included, and hands them out as one
//! bogus datagram that the MQTT-SN decoder then refuses. Use it only for a mote wired
//! directly to the gateway, where the line is clean; for anything with a radio in between
//! use the COBS, KISS or XBee framing.

use super::{check_max_frame, FrameError, Framer, FramerStats, Input, Received};

/// The first byte of a packet with a 3-byte length field.
pub const LONG_FORM: u8 = 0x01;

/// The smallest `max_frame`: a 2-byte packet (length and type).
pub const MIN_MAX_FRAME: usize = 2;
/// The largest `max_frame`: the long length field is 16 bits.
pub const MAX_MAX_FRAME: usize = u16::MAX as usize;

/// The length a packet starting with `bytes` announces: `Ok(Some(len))`, `Ok(None)` when
/// more bytes are needed to tell, or `Err(())` when no packet can start like this.
fn announced_len(bytes: &[u8]) -> Result<Option<usize>, ()> {
    match bytes {
        [] | [LONG_FORM] | [LONG_FORM, _] => Ok(None),
        [0x00, ..] => Err(()),
        [LONG_FORM, high, low, ..] => {
            let len = usize::from(u16::from_be_bytes([*high, *low]));
            // Length field (3) and message type (1) at least.
            if len < 4 {
                Err(())
            } else {
                Ok(Some(len))
            }
        }
        [short, ..] => Ok(Some(usize::from(*short))),
    }
}

/// Streaming decoder and pass-through encoder of raw MQTT-SN packets.
#[derive(Debug)]
pub struct RawFramer {
    max_frame: usize,
    input: Input,
    stats: FramerStats,
}

impl RawFramer {
    /// A framer for packets of at most `max_frame` bytes, [`MIN_MAX_FRAME`] to
    /// [`MAX_MAX_FRAME`] (use the gateway's `max_packet_size`).
    pub fn new(max_frame: usize) -> Result<Self, FrameError> {
        check_max_frame("raw", max_frame, MIN_MAX_FRAME, MAX_MAX_FRAME)?;
        Ok(RawFramer {
            max_frame,
            input: Input::default(),
            stats: FramerStats::default(),
        })
    }

    /// Appends bytes read from the port; call [`next_datagram`](Self::next_datagram) until
    /// `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// The next packet (with its length field), an error for a length over `max_frame`, or
    /// `None` when no complete packet is left.
    ///
    /// A length over `max_frame` drops one byte, like an impossible length, because that is
    /// all the decoder can do; it is reported because a mote sending packets longer than the
    /// gateway accepts is a configuration mistake the user must see.
    pub fn next_datagram(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            let rest = self.input.rest();
            let len = match announced_len(rest) {
                Ok(Some(len)) => len,
                Ok(None) => return None,
                Err(()) => {
                    self.input.advance(1);
                    self.stats.add_garbage(1);
                    continue;
                }
            };
            if len > self.max_frame {
                self.input.advance(1);
                return Some(Err(self.stats.count(FrameError::FrameTooLong {
                    at_least: len,
                    max: self.max_frame,
                })));
            }
            // Waits (buffering at most max_frame bytes) until the whole packet is there.
            let packet = rest.get(..len)?.to_vec();
            self.input.advance(len);
            self.stats.ok();
            return Some(Ok(packet));
        }
    }

    /// Appends `datagram` as it is, after checking that its length field matches its length
    /// (the receiver relies on it) and that it fits `max_frame`; otherwise refuses it and
    /// leaves `out` unchanged.
    pub fn encode(&self, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if datagram.len() > self.max_frame {
            return Err(FrameError::DatagramTooLarge {
                len: datagram.len(),
                max: self.max_frame,
            });
        }
        match announced_len(datagram) {
            Ok(Some(len)) if len == datagram.len() => {
                out.extend_from_slice(datagram);
                Ok(())
            }
            _ => Err(FrameError::Unencodable {
                reason: "the MQTT-SN length field does not match the datagram's length",
            }),
        }
    }

    /// The longest datagram [`encode`](Self::encode) accepts: `max_frame`.
    pub fn max_datagram(&self) -> usize {
        self.max_frame
    }

    /// What the decoder has seen so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }
}

impl Framer for RawFramer {
    /// One mote per line: nothing to address.
    type Address = ();

    fn push(&mut self, bytes: &[u8]) {
        RawFramer::push(self, bytes);
    }

    fn next_event(&mut self) -> Option<Result<Received<()>, FrameError>> {
        let item = self.next_datagram()?;
        Some(item.map(|datagram| Received::Datagram { from: (), datagram }))
    }

    fn encode(&self, _to: &(), datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        RawFramer::encode(self, datagram, out)
    }

    fn broadcast_address(&self) {}

    fn max_datagram(&self) -> usize {
        self.max_frame
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

    fn decode_all(f: &mut RawFramer, bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        f.push(bytes);
        std::iter::from_fn(|| f.next_datagram()).collect()
    }

    /// PINGREQ, and CONNECT "ab" in the short and long length forms.
    const PINGREQ: [u8; 2] = [0x02, 0x16];
    const CONNECT: [u8; 8] = [0x08, 0x04, 0x04, 0x01, 0x00, 0x3C, b'a', b'b'];
    const CONNECT_LONG: [u8; 10] = [0x01, 0x00, 0x0A, 0x04, 0x04, 0x01, 0x00, 0x3C, b'a', b'b'];

    #[test]
    fn splits_packets_by_their_length_fields() {
        let mut bytes = PINGREQ.to_vec();
        bytes.extend(CONNECT);
        bytes.extend(CONNECT_LONG);
        let mut f = RawFramer::new(1024).unwrap();
        assert_eq!(
            decode_all(&mut f, &bytes),
            [
                Ok(PINGREQ.to_vec()),
                Ok(CONNECT.to_vec()),
                Ok(CONNECT_LONG.to_vec())
            ]
        );
    }

    #[test]
    fn waits_for_the_whole_packet() {
        let mut f = RawFramer::new(1024).unwrap();
        assert!(decode_all(&mut f, &CONNECT_LONG[..1]).is_empty());
        assert!(decode_all(&mut f, &CONNECT_LONG[1..2]).is_empty());
        assert!(decode_all(&mut f, &CONNECT_LONG[2..9]).is_empty());
        assert_eq!(
            decode_all(&mut f, &CONNECT_LONG[9..]),
            [Ok(CONNECT_LONG.to_vec())]
        );
    }

    #[test]
    fn impossible_lengths_are_dropped_byte_by_byte() {
        // 0x00, and a long form announcing 3 bytes, then a PINGREQ.
        let bytes = [0x00, 0x00, 0x01, 0x00, 0x03, 0x02, 0x16];
        let mut f = RawFramer::new(1024).unwrap();
        // 00, 00 dropped; 01 00 03 impossible: 01 dropped; 00 dropped; then 03 02 16 is a
        // 3-byte packet: the documented limit of raw framing.
        assert_eq!(decode_all(&mut f, &bytes), [Ok(vec![0x03, 0x02, 0x16])]);
        assert_eq!(f.stats().garbage_bytes, 4);
    }

    #[test]
    fn lengths_over_max_are_reported() {
        let mut f = RawFramer::new(8).unwrap();
        let mut bytes = vec![0x40];
        bytes.extend(PINGREQ);
        assert_eq!(
            decode_all(&mut f, &bytes),
            [
                Err(FrameError::FrameTooLong {
                    at_least: 0x40,
                    max: 8
                }),
                Ok(PINGREQ.to_vec())
            ]
        );
        assert_eq!(f.stats().oversize, 1);
    }

    #[test]
    fn encode_checks_length_field_and_size() {
        let f = RawFramer::new(9).unwrap();
        let mut out = Vec::new();
        f.encode(&CONNECT, &mut out).unwrap();
        assert_eq!(out, CONNECT);
        assert_eq!(
            f.encode(&CONNECT_LONG, &mut out),
            Err(FrameError::DatagramTooLarge { len: 10, max: 9 })
        );
        for bad in [
            &[0x03, 0x16][..],
            &[][..],
            &[0x00, 0x16][..],
            &[0x01, 0x00, 0x03][..],
        ] {
            assert!(
                matches!(f.encode(bad, &mut out), Err(FrameError::Unencodable { .. })),
                "{bad:02x?}"
            );
        }
        assert_eq!(out, CONNECT);
    }
}
