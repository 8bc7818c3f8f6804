//! KISS framing, for RNode-style LoRa devices (and other KISS TNCs).
//!
//! A frame is `FEND, command byte, data, FEND`. Inside a frame FEND (0xC0) is sent as
//! FESC TFEND (0xDB 0xDC) and FESC (0xDB) as FESC TFESC (0xDB 0xDD). The command byte holds
//! the port in its high nibble and the command in its low one; command 0 is a data frame,
//! the others (TXDELAY, persistence, an RNode's RSSI/SNR reports, ...) are skipped and
//! counted.
//!
//! KISS has no addresses and no checksum: the LoRa radio delivers only packets whose radio
//! CRC passed, and everything on the channel reaches every listener. The address a datagram
//! comes with is the KISS port (the radio, on multi-radio devices); motes sharing a channel
//! are told apart by MQTT-SN forwarder encapsulation, not by this framing.
//!
//! The decoder starts by discarding bytes up to the first FEND, so that a gateway started in
//! the middle of a frame does not take its tail for a datagram (there is no checksum to
//! catch it). An escape followed by anything but TFEND or TFESC drops the frame: without a
//! checksum, refusing damaged frames is the only protection.

use super::{check_max_frame, FrameError, Framer, FramerStats, Input, Received};

/// Frame end: starts and ends every frame.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Transposed frame end: FESC TFEND stands for a FEND in the data.
pub const TFEND: u8 = 0xDC;
/// Transposed frame escape: FESC TFESC stands for a FESC in the data.
pub const TFESC: u8 = 0xDD;
/// The command (low nibble) of a data frame.
pub const CMD_DATA: u8 = 0x00;

/// The smallest `max_frame`: a 2-byte MQTT-SN packet.
pub const MIN_MAX_FRAME: usize = 2;
/// The largest `max_frame` accepted.
pub const MAX_MAX_FRAME: usize = 65_535;

/// A KISS port, 0..=15: the high nibble of the command byte. Single-radio devices (an
/// RNode) use port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KissPort(u8);

impl KissPort {
    /// Port 0, the only one of a single-radio device.
    pub const ZERO: KissPort = KissPort(0);

    /// The port `n`, if it is 0..=15.
    pub const fn new(n: u8) -> Option<KissPort> {
        if n <= 0x0F {
            Some(KissPort(n))
        } else {
            None
        }
    }

    /// The port number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Where the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first FEND.
    Hunt,
    /// Inside a frame; `escaped` after a FESC.
    Frame { escaped: bool },
    /// Skipping a dropped frame up to the next FEND.
    Discard,
}

/// Streaming decoder and encoder of KISS frames.
#[derive(Debug)]
pub struct KissFramer {
    max_frame: usize,
    /// Bit `n` set: data frames on port `n` are handed out.
    ports: u16,
    input: Input,
    state: State,
    /// Unescaped command byte and data of the frame in progress; at most `1 + max_frame`.
    frame: Vec<u8>,
    stats: FramerStats,
}

impl KissFramer {
    /// A framer for data frames of at most `max_frame` data bytes (unescaped, command byte
    /// not counted), [`MIN_MAX_FRAME`] to [`MAX_MAX_FRAME`], on any port.
    pub fn new(max_frame: usize) -> Result<Self, FrameError> {
        check_max_frame("kiss", max_frame, MIN_MAX_FRAME, MAX_MAX_FRAME)?;
        Ok(KissFramer {
            max_frame,
            ports: u16::MAX,
            input: Input::default(),
            state: State::Hunt,
            frame: Vec::new(),
            stats: FramerStats::default(),
        })
    }

    /// Hands out data frames only from the ports whose bit is set in `mask` (bit 0 = port
    /// 0); the others are skipped and counted. Some RNode firmware reports use command bytes
    /// whose low nibble is 0 (0x40, 0x50, 0x90), so on an RNode `0x0001` (port 0 only) keeps
    /// those out.
    pub fn with_ports(mut self, mask: u16) -> Self {
        self.ports = mask;
        self
    }

    /// Appends bytes read from the port; call [`next_datagram`](Self::next_datagram) until
    /// `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// The next `(port, datagram)` of a data frame, an error for a dropped frame, or `None`
    /// when no complete frame is left.
    pub fn next_datagram(&mut self) -> Option<Result<(KissPort, Vec<u8>), FrameError>> {
        loop {
            let byte = self.input.next_byte()?;
            let escaped = match self.state {
                State::Hunt | State::Discard => {
                    if byte == FEND {
                        self.start_frame();
                    } else if self.state == State::Hunt {
                        self.stats.add_garbage(1);
                    }
                    continue;
                }
                State::Frame { escaped } => escaped,
            };
            if byte == FEND {
                if escaped {
                    // The FEND still ends the frame, which lost a byte: drop it.
                    self.start_frame();
                    return Some(Err(self.stats.count(FrameError::Malformed {
                        reason: "KISS escape (FESC) followed by FEND",
                    })));
                }
                let done = self.finish_frame();
                self.start_frame();
                match done {
                    Some(result) => return Some(result),
                    None => continue,
                }
            }
            let byte = if escaped {
                self.state = State::Frame { escaped: false };
                match byte {
                    TFEND => FEND,
                    TFESC => FESC,
                    _ => {
                        self.state = State::Discard;
                        return Some(Err(self.stats.count(FrameError::Malformed {
                            reason: "KISS escape (FESC) followed by neither TFEND nor TFESC",
                        })));
                    }
                }
            } else if byte == FESC {
                self.state = State::Frame { escaped: true };
                continue;
            } else {
                byte
            };
            // The command byte plus max_frame data bytes are already there.
            if self.frame.len() > self.max_frame {
                self.state = State::Discard;
                return Some(Err(self.stats.count(FrameError::FrameTooLong {
                    at_least: self.frame.len(),
                    max: self.max_frame,
                })));
            }
            self.frame.push(byte);
        }
    }

    fn start_frame(&mut self) {
        self.state = State::Frame { escaped: false };
        self.frame.clear();
    }

    /// Hands out or skips the complete frame in `self.frame`; `None` for nothing to hand out
    /// (an empty frame between two FENDs, or a skipped one).
    fn finish_frame(&mut self) -> Option<Result<(KissPort, Vec<u8>), FrameError>> {
        let (&command, data) = self.frame.split_first()?;
        let port = command >> 4;
        if command & 0x0F != CMD_DATA || self.ports & (1 << port) == 0 {
            self.stats.skipped();
            return None;
        }
        self.stats.ok();
        Some(Ok((KissPort(port), data.to_vec())))
    }

    /// Appends the data frame carrying `datagram` on `port` (FEND, command, escaped data,
    /// FEND), or refuses a datagram longer than `max_frame` and leaves `out` unchanged.
    pub fn encode(
        &self,
        port: KissPort,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        if datagram.len() > self.max_frame {
            return Err(FrameError::DatagramTooLarge {
                len: datagram.len(),
                max: self.max_frame,
            });
        }
        out.reserve(datagram.len() + 4);
        out.push(FEND);
        // The command byte is escaped too: port 12's data command is 0xC0, a FEND.
        for &byte in std::iter::once(&(port.0 << 4 | CMD_DATA)).chain(datagram) {
            match byte {
                FEND => out.extend_from_slice(&[FESC, TFEND]),
                FESC => out.extend_from_slice(&[FESC, TFESC]),
                _ => out.push(byte),
            }
        }
        out.push(FEND);
        Ok(())
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

impl Framer for KissFramer {
    type Address = KissPort;

    fn push(&mut self, bytes: &[u8]) {
        KissFramer::push(self, bytes);
    }

    fn next_event(&mut self) -> Option<Result<Received<KissPort>, FrameError>> {
        let item = self.next_datagram()?;
        Some(item.map(|(from, datagram)| Received::Datagram { from, datagram }))
    }

    fn encode(&self, to: &KissPort, datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        KissFramer::encode(self, *to, datagram, out)
    }

    /// Port 0: on a LoRa channel every transmission reaches every mote.
    fn broadcast_address(&self) -> KissPort {
        KissPort::ZERO
    }

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

    fn decode_all(
        f: &mut KissFramer,
        bytes: &[u8],
    ) -> Vec<Result<(KissPort, Vec<u8>), FrameError>> {
        f.push(bytes);
        std::iter::from_fn(|| f.next_datagram()).collect()
    }

    fn port(n: u8) -> KissPort {
        KissPort::new(n).unwrap()
    }

    #[test]
    fn encodes_with_escapes() {
        let f = KissFramer::new(64).unwrap();
        let mut out = Vec::new();
        f.encode(KissPort::ZERO, b"TEST", &mut out).unwrap();
        assert_eq!(out, [0xC0, 0x00, 0x54, 0x45, 0x53, 0x54, 0xC0]);
        out.clear();
        // The classic example: data C0 DB becomes DB DC DB DD.
        f.encode(port(5), &[0x01, 0xC0, 0xDB, 0x02], &mut out)
            .unwrap();
        assert_eq!(out, [0xC0, 0x50, 0x01, 0xDB, 0xDC, 0xDB, 0xDD, 0x02, 0xC0]);
        out.clear();
        f.encode(port(12), &[0x03], &mut out).unwrap();
        assert_eq!(out, [0xC0, 0xDB, 0xDC, 0x03, 0xC0]);
        out.clear();
        f.encode(port(13), &[0x03], &mut out).unwrap();
        assert_eq!(out, [0xC0, 0xD0, 0x03, 0xC0]);
    }

    #[test]
    fn decodes_what_it_encodes() {
        let f = KissFramer::new(64).unwrap();
        let mut bytes = Vec::new();
        f.encode(port(5), &[0x01, 0xC0, 0xDB, 0x02], &mut bytes)
            .unwrap();
        f.encode(port(12), &[0xC0], &mut bytes).unwrap();
        let mut d = KissFramer::new(64).unwrap();
        assert_eq!(
            decode_all(&mut d, &bytes),
            [
                Ok((port(5), vec![0x01, 0xC0, 0xDB, 0x02])),
                Ok((port(12), vec![0xC0]))
            ]
        );
    }

    #[test]
    fn shared_fends_and_idle_fends() {
        // Back-to-back frames sharing one FEND, and runs of FEND between them.
        let bytes = [0xC0, 0xC0, 0x00, 0x41, 0xC0, 0x00, 0x42, 0xC0, 0xC0, 0xC0];
        let mut d = KissFramer::new(64).unwrap();
        assert_eq!(
            decode_all(&mut d, &bytes),
            [
                Ok((KissPort::ZERO, vec![0x41])),
                Ok((KissPort::ZERO, vec![0x42]))
            ]
        );
    }

    #[test]
    fn commands_and_filtered_ports_are_skipped() {
        // RNode RSSI (0x23) and SNR (0x24) reports, then data on port 0, then CMD_RANDOM
        // (0x40) which looks like data on port 4.
        let bytes = [
            0xC0, 0x23, 0x8A, 0xC0, 0x24, 0x10, 0xC0, 0x00, 0x02, 0x16, 0xC0, 0x40, 0x99, 0xC0,
        ];
        let mut d = KissFramer::new(64).unwrap().with_ports(0x0001);
        assert_eq!(
            decode_all(&mut d, &bytes),
            [Ok((KissPort::ZERO, vec![0x02, 0x16]))]
        );
        assert_eq!(d.stats().skipped, 3);
    }

    #[test]
    fn leading_bytes_are_garbage_until_the_first_fend() {
        let bytes = [0x00, 0x41, 0x42, 0xC0, 0x00, 0x43, 0xC0];
        let mut d = KissFramer::new(64).unwrap();
        assert_eq!(
            decode_all(&mut d, &bytes),
            [Ok((KissPort::ZERO, vec![0x43]))]
        );
        assert_eq!(d.stats().garbage_bytes, 3);
    }

    #[test]
    fn bad_escapes_drop_the_frame() {
        let bytes = [
            0xC0, 0x00, 0xDB, 0x41, 0x42, 0xC0, // FESC then 'A'
            0x00, 0x44, 0xC0, // a good frame
            0x00, 0xDB, 0xC0, // FESC then FEND
            0x00, 0x45, 0xC0,
        ];
        let mut d = KissFramer::new(64).unwrap();
        let out = decode_all(&mut d, &bytes);
        assert!(matches!(out[0], Err(FrameError::Malformed { .. })));
        assert_eq!(out[1], Ok((KissPort::ZERO, vec![0x44])));
        assert!(matches!(out[2], Err(FrameError::Malformed { .. })));
        assert_eq!(out[3], Ok((KissPort::ZERO, vec![0x45])));
        assert_eq!(d.stats().malformed, 2);
    }

    #[test]
    fn long_frames_are_skipped_and_large_datagrams_refused() {
        let mut d = KissFramer::new(4).unwrap();
        let mut bytes = vec![0xC0, 0x00];
        bytes.extend([0x41; 500]);
        bytes.extend([0xC0, 0x00, 1, 2, 3, 4, 0xC0]);
        let out = decode_all(&mut d, &bytes);
        assert_eq!(
            out,
            [
                Err(FrameError::FrameTooLong {
                    at_least: 5,
                    max: 4
                }),
                Ok((KissPort::ZERO, vec![1, 2, 3, 4]))
            ]
        );
        assert!(d.frame.capacity() <= 16);
        let mut out = Vec::new();
        assert_eq!(
            d.encode(KissPort::ZERO, &[0; 5], &mut out),
            Err(FrameError::DatagramTooLarge { len: 5, max: 4 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn ports_are_0_to_15() {
        assert_eq!(KissPort::new(15).map(KissPort::get), Some(15));
        assert_eq!(KissPort::new(16), None);
    }
}
