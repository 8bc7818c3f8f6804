//! XBee API frames, as spoken by Digi Zigbee modules (XBee S2C, XBee 3) in API mode.
//!
//! A frame on the wire is `0x7E, length (2 bytes, big-endian), frame data, checksum`, where
//! the length counts the frame data (frame type included) and the checksum is
//! `0xFF - (sum of the frame data bytes)`. In API mode 2 (`AP=2`) every byte after the start
//! delimiter that is 0x7E, 0x7D, 0x11 or 0x13 is sent as 0x7D followed by the byte XOR 0x20,
//! so a raw 0x7E always starts a frame; in API mode 1 (`AP=1`) nothing is escaped and a 0x7E
//! may also be a data byte.
//!
//! The gateway uses three frame types:
//!
//! | type | name | direction | fields after the type byte |
//! |---|---|---|---|
//! | 0x10 | Transmit Request | to the module | frame id, 64-bit destination, 16-bit destination, broadcast radius, options, RF data |
//! | 0x90 | Receive Packet | from the module | 64-bit source, 16-bit source, receive options, RF data |
//! | 0x8B | Transmit Status | from the module | frame id, 16-bit destination, retry count, delivery status, discovery status |
//!
//! Other frame types (modem status, AT command responses, explicit-addressing frames) are
//! skipped and counted, not treated as errors: a module sends them on its own (a modem status
//! after a reset, for example).
//!
//! A transmit request with a non-zero frame id makes the module answer with a transmit
//! status carrying the same id; [`DeliveryTracker`] maps those ids back to what was sent so
//! that a failed delivery can be reported.

use std::fmt;
use std::num::NonZeroU8;
use std::time::{Duration, Instant};

use super::{check_max_frame, FrameError, Framer, FramerStats, Input, Received};

/// The start delimiter of every frame.
pub const START: u8 = 0x7E;
/// In API mode 2, announces an escaped byte.
const ESCAPE: u8 = 0x7D;
/// XON and XOFF: escaped in API mode 2 so that software flow control never sees them.
const XON: u8 = 0x11;
const XOFF: u8 = 0x13;
/// What an escaped byte is XORed with.
const ESCAPE_XOR: u8 = 0x20;

/// Frame type of a Zigbee Transmit Request.
pub const TRANSMIT_REQUEST: u8 = 0x10;
/// Frame type of a Zigbee Receive Packet (with `AO=0`).
pub const RECEIVE_PACKET: u8 = 0x90;
/// Frame type of a Zigbee Transmit Status.
pub const TRANSMIT_STATUS: u8 = 0x8B;

/// Frame data before the RF data of a receive packet: type, 64-bit, 16-bit, options.
const RECEIVE_HEADER: usize = 12;
/// Frame data before the RF data of a transmit request: type, frame id, 64-bit, 16-bit,
/// radius, options.
const TRANSMIT_HEADER: usize = 14;
/// The smallest `max_frame`: a transmit request carrying a 2-byte MQTT-SN packet.
pub const MIN_MAX_FRAME: usize = TRANSMIT_HEADER + 2;
/// The largest `max_frame`: the length field is 16 bits.
pub const MAX_MAX_FRAME: usize = u16::MAX as usize;

/// The module's `AP` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiMode {
    /// `AP=1`: no escaping. A 0x7E inside a frame cannot be told from a start delimiter, so
    /// resynchronising after damage is slower and less certain.
    Unescaped,
    /// `AP=2`: 0x7E, 0x7D, 0x11 and 0x13 are escaped; the mode to use.
    Escaped,
}

/// A Zigbee node's address: the 64-bit IEEE address, fixed for the radio, and the 16-bit
/// network address the coordinator gave it when it joined (which changes when it rejoins).
///
/// Both are kept, as the peer address, because a transmission to a known 16-bit address
/// saves the module an address discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XBeeAddress {
    /// The 64-bit IEEE (MAC) address, as printed on the module (`SH` + `SL`).
    pub long: u64,
    /// The 16-bit network address (`MY`), or [`XBeeAddress::UNKNOWN_SHORT`].
    pub short: u16,
}

impl XBeeAddress {
    /// The broadcast address: 64-bit 0x000000000000FFFF with the 16-bit address unknown.
    pub const BROADCAST: XBeeAddress = XBeeAddress {
        long: 0xFFFF,
        short: Self::UNKNOWN_SHORT,
    };

    /// The 16-bit address to send when it is not known (the module then looks it up).
    pub const UNKNOWN_SHORT: u16 = 0xFFFE;

    /// An address from its two parts.
    pub const fn new(long: u64, short: u16) -> Self {
        XBeeAddress { long, short }
    }
}

impl fmt::Display for XBeeAddress {
    /// `0013a20040522baa/7d84`, the form XCTU shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{:04x}", self.long, self.short)
    }
}

/// A 0x90 frame: RF data a node sent to this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivePacket {
    /// Who sent it.
    pub source: XBeeAddress,
    /// Receive options: bit 0x01 acknowledged, 0x02 broadcast, 0x20 APS-encrypted, 0x40
    /// sent from an end device.
    pub options: u8,
    /// The RF data: one MQTT-SN datagram.
    pub data: Vec<u8>,
}

impl ReceivePacket {
    /// Whether the sender broadcast it rather than addressing this module.
    pub fn is_broadcast(&self) -> bool {
        self.options & 0x02 != 0
    }
}

/// A 0x10 frame: RF data for the module to send.
///
/// The gateway encodes these with [`XBeeFramer::encode_transmit`] without building one; the
/// type exists so that a simulated radio can decode what the gateway sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransmitRequest {
    /// 1..=255 asks for a [`TransmitStatus`] with the same id; 0 asks for none.
    pub frame_id: u8,
    /// Where to send it; [`XBeeAddress::BROADCAST`] for every node.
    pub destination: XBeeAddress,
    /// Maximum hops of a broadcast; 0 means the network's maximum.
    pub radius: u8,
    /// Transmit options; 0 uses the module's `TO` setting.
    pub options: u8,
    /// The RF data: one MQTT-SN datagram.
    pub data: Vec<u8>,
}

/// The delivery status byte of a transmit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryStatus(pub u8);

impl DeliveryStatus {
    /// The frame reached its destination (for a broadcast: it was sent).
    pub const SUCCESS: DeliveryStatus = DeliveryStatus(0x00);

    /// Whether the transmission succeeded.
    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }

    /// The status in words, for logs; codes not listed here are named by number.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "success",
            0x01 => "MAC ACK failure",
            0x02 => "CCA/LBT failure (channel busy)",
            0x21 => "network ACK failure",
            0x22 => "not joined to a network",
            0x23 => "self-addressed",
            0x24 => "address not found",
            0x25 => "route not found",
            0x26 => "broadcast not relayed by any neighbour",
            0x74 => "data payload too large",
            0x75 => "indirect message unrequested",
            _ => "other failure (see the Transmit Status frame in the module's manual)",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.description())
    }
}

/// A 0x8B frame: the outcome of the transmit request with the same frame id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmitStatus {
    /// The id of the transmit request this reports on (never 0 from a real module).
    pub frame_id: u8,
    /// The destination's 16-bit address as the module used it (0xFFFD or 0xFFFE when
    /// unknown or broadcast).
    pub short: u16,
    /// How many times the module retransmitted.
    pub retries: u8,
    /// Whether it arrived.
    pub delivery: DeliveryStatus,
    /// Whether an address or route discovery was needed (0x00 none, 0x01 address, 0x02
    /// route, 0x03 both, 0x40 extended timeout).
    pub discovery: u8,
}

/// A decoded frame of one of the types the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// 0x90.
    Receive(ReceivePacket),
    /// 0x10.
    TransmitRequest(TransmitRequest),
    /// 0x8B.
    TransmitStatus(TransmitStatus),
}

/// Where the decoder is in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a start delimiter.
    Hunt,
    LengthHigh,
    LengthLow(u8),
    /// Reading this many bytes of frame data.
    Data(usize),
    Checksum,
}

/// Streaming decoder and encoder of XBee API frames.
///
/// Resynchronisation: after garbage, a bad checksum or an impossible length the decoder
/// looks for the next 0x7E. In API mode 2 that is always a real start, and a raw 0x7E in the
/// middle of a frame ends the frame in progress (as malformed) and starts a new one. In API
/// mode 1 a 0x7E may be data, so a rejected frame is searched again from the byte after its
/// start delimiter; a frame hidden behind a false start whose checksum happens to match can
/// still be lost, which is why API mode 2 is the one to use.
#[derive(Debug)]
pub struct XBeeFramer {
    mode: ApiMode,
    max_frame: usize,
    input: Input,
    state: State,
    /// API mode 2: the previous byte was an escape.
    escaped: bool,
    /// The unescaped frame data read so far; never longer than `max_frame`.
    frame: Vec<u8>,
    stats: FramerStats,
}

impl XBeeFramer {
    /// A framer for a module in `mode` that accepts and sends frames whose frame data (the
    /// length field's value: frame type, addresses, options and RF data) is at most
    /// `max_frame` bytes, [`MIN_MAX_FRAME`] to [`MAX_MAX_FRAME`].
    ///
    /// The longest RF payload is `max_frame - 14`; match it to the module's `NP` (a larger
    /// payload makes the module answer with status 0x74, payload too large).
    pub fn new(mode: ApiMode, max_frame: usize) -> Result<Self, FrameError> {
        let name = match mode {
            ApiMode::Escaped => "xbee",
            ApiMode::Unescaped => "xbee-api1",
        };
        check_max_frame(name, max_frame, MIN_MAX_FRAME, MAX_MAX_FRAME)?;
        Ok(XBeeFramer {
            mode,
            max_frame,
            input: Input::default(),
            state: State::Hunt,
            escaped: false,
            frame: Vec::new(),
            stats: FramerStats::default(),
        })
    }

    /// The API mode this framer speaks.
    pub fn mode(&self) -> ApiMode {
        self.mode
    }

    /// Appends bytes read from the port; call [`next_frame`](Self::next_frame) until `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.push(bytes);
    }

    /// The next frame of a type the gateway uses, an error for a dropped frame, or `None`
    /// when no complete frame is left. Frames of other types are skipped and counted.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        self.next_kept(|_| true)
    }

    fn next_kept(&mut self, keep: fn(&Frame) -> bool) -> Option<Result<Frame, FrameError>> {
        loop {
            let raw = self.input.next_byte()?;
            if self.state == State::Hunt {
                if raw == START {
                    self.begin();
                } else {
                    self.stats.add_garbage(1);
                }
                continue;
            }
            if raw == START && self.mode == ApiMode::Escaped {
                // In API mode 2 a raw 0x7E is always a start: the frame in progress was cut
                // short (a byte lost, the module reset), and this one must not be lost too.
                let error = self.stats.count(FrameError::Malformed {
                    reason: "frame cut short by the start of another",
                });
                self.begin();
                return Some(Err(error));
            }
            let byte = match self.mode {
                ApiMode::Unescaped => raw,
                ApiMode::Escaped if self.escaped => {
                    self.escaped = false;
                    raw ^ ESCAPE_XOR
                }
                ApiMode::Escaped if raw == ESCAPE => {
                    self.escaped = true;
                    continue;
                }
                ApiMode::Escaped => raw,
            };
            match self.state {
                State::Hunt => {}
                State::LengthHigh => self.state = State::LengthLow(byte),
                State::LengthLow(high) => {
                    let len = usize::from(u16::from_be_bytes([high, byte]));
                    if len == 0 {
                        return Some(Err(self.reject(FrameError::Malformed {
                            reason: "length 0 (no frame type)",
                        })));
                    }
                    if len > self.max_frame {
                        return Some(Err(self.reject(FrameError::FrameTooLong {
                            at_least: len,
                            max: self.max_frame,
                        })));
                    }
                    self.state = State::Data(len);
                }
                State::Data(len) => {
                    self.frame.push(byte);
                    if self.frame.len() >= len {
                        self.state = State::Checksum;
                    }
                }
                State::Checksum => {
                    let computed = checksum(&self.frame, &[]);
                    if byte != computed {
                        return Some(Err(self.reject(FrameError::BadChecksum {
                            received: byte.into(),
                            computed: computed.into(),
                        })));
                    }
                    // A good checksum: the frame is taken as it is, even if its contents turn
                    // out malformed, so there is nothing to search again.
                    self.input.clear_mark();
                    self.state = State::Hunt;
                    match parse(&self.frame) {
                        Ok(Some(frame)) if keep(&frame) => {
                            self.stats.ok();
                            return Some(Ok(frame));
                        }
                        Ok(_) => self.stats.skipped(),
                        Err(error) => return Some(Err(self.stats.count(error))),
                    }
                }
            }
        }
    }

    /// Starts a frame at the start delimiter just read.
    fn begin(&mut self) {
        // Only API mode 1 goes back into a rejected frame; in mode 2 keeping its bytes
        // would only cost memory.
        if self.mode == ApiMode::Unescaped {
            self.input.mark_last();
        }
        self.state = State::LengthHigh;
        self.escaped = false;
        self.frame.clear();
    }

    /// Drops the frame in progress and counts why.
    fn reject(&mut self, error: FrameError) -> FrameError {
        match self.mode {
            ApiMode::Unescaped => self.input.rewind_after_mark(),
            ApiMode::Escaped => self.input.clear_mark(),
        }
        self.state = State::Hunt;
        self.escaped = false;
        self.frame.clear();
        self.stats.count(error)
    }

    /// Appends a transmit request (0x10) carrying `data` to `to`. `frame_id` 1..=255 asks
    /// the module for a transmit status, 0 for none; `radius` 0 means the network's maximum
    /// hops; `options` 0 uses the module's `TO` setting.
    ///
    /// Refused, with `out` unchanged, when the frame would exceed `max_frame`.
    pub fn encode_transmit(
        &self,
        frame_id: u8,
        to: &XBeeAddress,
        radius: u8,
        options: u8,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let header = transmit_header(frame_id, to, radius, options);
        self.write(&header, data, out)
    }

    /// Appends any [`Frame`]; a simulated module uses it for 0x90 and 0x8B frames.
    ///
    /// Refused, with `out` unchanged, when the frame would exceed `max_frame`.
    pub fn encode_frame(&self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match frame {
            Frame::Receive(rx) => {
                let header = receive_header(&rx.source, rx.options);
                self.write(&header, &rx.data, out)
            }
            Frame::TransmitRequest(tx) => self.encode_transmit(
                tx.frame_id,
                &tx.destination,
                tx.radius,
                tx.options,
                &tx.data,
                out,
            ),
            Frame::TransmitStatus(status) => {
                let [short_high, short_low] = status.short.to_be_bytes();
                let frame = [
                    TRANSMIT_STATUS,
                    status.frame_id,
                    short_high,
                    short_low,
                    status.retries,
                    status.delivery.0,
                    status.discovery,
                ];
                self.write(&frame, &[], out)
            }
        }
    }

    /// Writes one frame whose frame data is `header` followed by `data`.
    fn write(&self, header: &[u8], data: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = header.len() + data.len();
        let too_large = || FrameError::DatagramTooLarge {
            len: data.len(),
            max: self.max_frame.saturating_sub(header.len()),
        };
        if len > self.max_frame {
            return Err(too_large());
        }
        // max_frame is at most u16::MAX, so this cannot fail; checked all the same.
        let len = u16::try_from(len).map_err(|_| too_large())?;
        out.reserve(len.into());
        out.push(START);
        let sum = checksum(header, data);
        let escaped = self.mode == ApiMode::Escaped;
        for &byte in len.to_be_bytes().iter().chain(header).chain(data) {
            put(out, byte, escaped);
        }
        put(out, sum, escaped);
        Ok(())
    }

    /// The longest RF payload a transmit request may carry.
    pub fn max_datagram(&self) -> usize {
        self.max_frame - TRANSMIT_HEADER
    }

    /// What the decoder has seen so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }
}

impl Framer for XBeeFramer {
    type Address = XBeeAddress;

    fn push(&mut self, bytes: &[u8]) {
        XBeeFramer::push(self, bytes);
    }

    /// Receive packets and transmit statuses; a transmit request (which only a module
    /// receives) is skipped like any other frame type.
    fn next_event(&mut self) -> Option<Result<Received<XBeeAddress>, FrameError>> {
        loop {
            let item = self.next_kept(|frame| !matches!(frame, Frame::TransmitRequest(_)))?;
            return Some(match item {
                Ok(Frame::Receive(rx)) => Ok(Received::Datagram {
                    from: rx.source,
                    datagram: rx.data,
                }),
                Ok(Frame::TransmitStatus(status)) => Ok(Received::TransmitStatus(status)),
                // Already skipped and counted by the filter above; never reached.
                Ok(Frame::TransmitRequest(_)) => continue,
                Err(error) => Err(error),
            });
        }
    }

    /// A transmit request with frame id 0: no transmit status will come back.
    fn encode(
        &self,
        to: &XBeeAddress,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        self.encode_transmit(0, to, 0, 0, datagram, out)
    }

    fn encode_tracked(
        &self,
        to: &XBeeAddress,
        datagram: &[u8],
        frame_id: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        self.encode_transmit(frame_id, to, 0, 0, datagram, out)
    }

    fn reports_delivery(&self) -> bool {
        true
    }

    fn broadcast_address(&self) -> XBeeAddress {
        XBeeAddress::BROADCAST
    }

    fn max_datagram(&self) -> usize {
        XBeeFramer::max_datagram(self)
    }

    fn stats(&self) -> FramerStats {
        self.stats
    }
}

/// `0xFF - (sum of the frame data bytes)`, over the frame data given in two parts.
fn checksum(header: &[u8], data: &[u8]) -> u8 {
    let sum = header
        .iter()
        .chain(data)
        .fold(0u8, |sum, &byte| sum.wrapping_add(byte));
    0xFF - sum
}

/// Appends one byte after the start delimiter, escaped if the mode and the byte need it.
fn put(out: &mut Vec<u8>, byte: u8, escaped: bool) {
    if escaped && matches!(byte, START | ESCAPE | XON | XOFF) {
        out.push(ESCAPE);
        out.push(byte ^ ESCAPE_XOR);
    } else {
        out.push(byte);
    }
}

/// The 14 bytes of a transmit request before its RF data.
fn transmit_header(
    frame_id: u8,
    to: &XBeeAddress,
    radius: u8,
    options: u8,
) -> [u8; TRANSMIT_HEADER] {
    let [l0, l1, l2, l3, l4, l5, l6, l7] = to.long.to_be_bytes();
    let [s0, s1] = to.short.to_be_bytes();
    [
        TRANSMIT_REQUEST,
        frame_id,
        l0,
        l1,
        l2,
        l3,
        l4,
        l5,
        l6,
        l7,
        s0,
        s1,
        radius,
        options,
    ]
}

/// The 12 bytes of a receive packet before its RF data.
fn receive_header(from: &XBeeAddress, options: u8) -> [u8; RECEIVE_HEADER] {
    let [l0, l1, l2, l3, l4, l5, l6, l7] = from.long.to_be_bytes();
    let [s0, s1] = from.short.to_be_bytes();
    [
        RECEIVE_PACKET,
        l0,
        l1,
        l2,
        l3,
        l4,
        l5,
        l6,
        l7,
        s0,
        s1,
        options,
    ]
}

/// Reads the 64-bit and 16-bit addresses at the start of `bytes`, and what follows.
fn take_address(bytes: &[u8]) -> Option<(XBeeAddress, &[u8])> {
    let (long, rest) = bytes.split_first_chunk::<8>()?;
    let (short, rest) = rest.split_first_chunk::<2>()?;
    Some((
        XBeeAddress::new(u64::from_be_bytes(*long), u16::from_be_bytes(*short)),
        rest,
    ))
}

/// Interprets checked frame data; `Ok(None)` for a frame type the gateway does not use.
fn parse(frame: &[u8]) -> Result<Option<Frame>, FrameError> {
    match frame {
        [RECEIVE_PACKET, rest @ ..] => {
            let (source, rest) = take_address(rest).ok_or(FrameError::Malformed {
                reason: "receive packet (0x90) shorter than its 12-byte header",
            })?;
            let [options, data @ ..] = rest else {
                return Err(FrameError::Malformed {
                    reason: "receive packet (0x90) shorter than its 12-byte header",
                });
            };
            Ok(Some(Frame::Receive(ReceivePacket {
                source,
                options: *options,
                data: data.to_vec(),
            })))
        }
        [TRANSMIT_REQUEST, frame_id, rest @ ..] => {
            let too_short = FrameError::Malformed {
                reason: "transmit request (0x10) shorter than its 14-byte header",
            };
            let (destination, rest) = take_address(rest).ok_or(too_short.clone())?;
            let [radius, options, data @ ..] = rest else {
                return Err(too_short);
            };
            Ok(Some(Frame::TransmitRequest(TransmitRequest {
                frame_id: *frame_id,
                destination,
                radius: *radius,
                options: *options,
                data: data.to_vec(),
            })))
        }
        [TRANSMIT_REQUEST] => Err(FrameError::Malformed {
            reason: "transmit request (0x10) shorter than its 14-byte header",
        }),
        // Longer status frames are accepted: the fields the gateway needs are all there.
        [TRANSMIT_STATUS, frame_id, short_high, short_low, retries, delivery, discovery, ..] => {
            Ok(Some(Frame::TransmitStatus(TransmitStatus {
                frame_id: *frame_id,
                short: u16::from_be_bytes([*short_high, *short_low]),
                retries: *retries,
                delivery: DeliveryStatus(*delivery),
                discovery: *discovery,
            })))
        }
        [TRANSMIT_STATUS, ..] => Err(FrameError::Malformed {
            reason: "transmit status (0x8B) shorter than 7 bytes",
        }),
        _ => Ok(None),
    }
}

/// Hands out frame ids 1, 2, ..., 255, 1, ... (0 means "no transmit status" and is never
/// handed out).
///
/// Cycling through all 255 ids, rather than reusing the lowest free one, keeps a late
/// status for an old transmission from being taken for a new one as long as possible.
#[derive(Debug, Clone, Default)]
pub struct FrameIdAllocator {
    last: u8,
}

impl FrameIdAllocator {
    /// An allocator whose first id is 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next id.
    pub fn next_id(&mut self) -> NonZeroU8 {
        self.last = self.last.checked_add(1).unwrap_or(1);
        NonZeroU8::new(self.last).unwrap_or(NonZeroU8::MIN)
    }
}

/// One transmission waiting for its transmit status.
#[derive(Debug)]
struct Pending<T> {
    token: T,
    /// `None` when `now + timeout` does not fit in an `Instant`: it never expires.
    deadline: Option<Instant>,
}

/// Maps frame ids of transmit requests to what the link sent, so that a transmit status
/// can be reported as a delivery (or a failed one) of that datagram.
///
/// `T` is whatever the link needs to report the outcome, e.g. the peer and a sequence
/// number. At most 255 transmissions are tracked at once; beyond that [`track`](Self::track)
/// refuses and the datagram can be sent with frame id 0 (untracked) or held back.
///
/// A module answers every request with a non-zero frame id, so a missing status means the
/// status frame was lost on the serial line or the module reset; [`expire`](Self::expire)
/// frees such entries after a timeout, and their outcome is unknown (the MQTT-SN retries
/// above will tell).
#[derive(Debug)]
pub struct DeliveryTracker<T> {
    ids: FrameIdAllocator,
    /// Slot `id - 1` holds the transmission with frame id `id`.
    slots: Vec<Option<Pending<T>>>,
    pending: usize,
    timeout: Duration,
}

impl<T> DeliveryTracker<T> {
    /// A tracker that gives up on a status after `timeout` (the module's own retries can
    /// take several seconds; 30 s is a safe choice).
    pub fn new(timeout: Duration) -> Self {
        DeliveryTracker {
            ids: FrameIdAllocator::new(),
            slots: (0..usize::from(u8::MAX)).map(|_| None).collect(),
            pending: 0,
            timeout,
        }
    }

    /// Allocates a frame id for a transmission sent at `now`, or gives the token back when
    /// 255 are already waiting.
    pub fn track(&mut self, now: Instant, token: T) -> Result<NonZeroU8, T> {
        if self.pending >= self.slots.len() {
            return Err(token);
        }
        for _ in 0..self.slots.len() {
            let id = self.ids.next_id();
            if let Some(slot @ None) = self.slots.get_mut(slot_index(id.get())) {
                *slot = Some(Pending {
                    token,
                    deadline: now.checked_add(self.timeout),
                });
                self.pending += 1;
                return Ok(id);
            }
        }
        Err(token)
    }

    /// The token of the transmission `status` reports on, which is no longer tracked; `None`
    /// for frame id 0 or an id not waiting (a duplicate, or a status after the timeout).
    pub fn resolve(&mut self, status: &TransmitStatus) -> Option<T> {
        if status.frame_id == 0 {
            return None;
        }
        let pending = self.slots.get_mut(slot_index(status.frame_id))?.take()?;
        self.pending -= 1;
        Some(pending.token)
    }

    /// One transmission whose status has not come by `now` (timeout passed), no longer
    /// tracked; call until `None`.
    pub fn expire(&mut self, now: Instant) -> Option<T> {
        let slot = self.slots.iter_mut().find(|slot| {
            matches!(slot, Some(Pending { deadline: Some(deadline), .. }) if *deadline <= now)
        })?;
        let pending = slot.take()?;
        self.pending -= 1;
        Some(pending.token)
    }

    /// When the next transmission times out, if any is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| slot.as_ref().and_then(|p| p.deadline))
            .min()
    }

    /// How many transmissions wait for a status.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }
}

fn slot_index(frame_id: u8) -> usize {
    usize::from(frame_id).saturating_sub(1)
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

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn framer(mode: ApiMode) -> XBeeFramer {
        XBeeFramer::new(mode, 256).unwrap()
    }

    fn decode_all(f: &mut XBeeFramer, bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
        f.push(bytes);
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    /// Digi's Zigbee receive packet example: "RxData" from 0013A20040522BAA / 7D84.
    const RX_API1: &str = "7E 0012 90 0013A20040522BAA 7D84 01 527844617461 0D";
    /// The same in API mode 2: 0x13 and 0x7D escaped.
    const RX_API2: &str = "7E 0012 90 007D33A20040522BAA 7D5D84 01 527844617461 0D";
    /// Digi's Zigbee transmit request example: "TxData0A" to 0013A200400A0127, 16-bit
    /// unknown, frame id 1.
    const TX_API1: &str = "7E 0016 10 01 0013A200400A0127 FFFE 00 00 5478446174613041 13";
    /// The same in API mode 2: 0x13 in the address and the checksum escaped.
    const TX_API2: &str = "7E 0016 10 01 007D33A200400A0127 FFFE 00 00 5478446174613041 7D33";
    /// Digi's transmit status example: frame 1 to 7D84 delivered, no retries, address
    /// discovery.
    const STATUS_API1: &str = "7E 0007 8B 01 7D84 00 00 01 71";
    /// The same in API mode 2.
    const STATUS_API2: &str = "7E 0007 8B 01 7D5D84 00 00 01 71";

    fn rx_frame() -> Frame {
        Frame::Receive(ReceivePacket {
            source: XBeeAddress::new(0x0013_A200_4052_2BAA, 0x7D84),
            options: 0x01,
            data: b"RxData".to_vec(),
        })
    }

    fn tx_frame() -> Frame {
        Frame::TransmitRequest(TransmitRequest {
            frame_id: 1,
            destination: XBeeAddress::new(0x0013_A200_400A_0127, 0xFFFE),
            radius: 0,
            options: 0,
            data: b"TxData0A".to_vec(),
        })
    }

    fn status_frame() -> Frame {
        Frame::TransmitStatus(TransmitStatus {
            frame_id: 1,
            short: 0x7D84,
            retries: 0,
            delivery: DeliveryStatus::SUCCESS,
            discovery: 0x01,
        })
    }

    #[test]
    fn digi_examples_checksums() {
        // Frame data sums plus checksum must come to 0xFF.
        for example in [RX_API1, TX_API1, STATUS_API1] {
            let bytes = hex(example);
            let data = &bytes[3..];
            let sum = data.iter().fold(0u8, |s, b| s.wrapping_add(*b));
            assert_eq!(sum, 0xFF, "{example}");
        }
        assert_eq!(checksum(&hex(RX_API1)[3..21], &[]), 0x0D);
        assert_eq!(checksum(&hex(TX_API1)[3..25], &[]), 0x13);
        assert_eq!(checksum(&hex(STATUS_API1)[3..10], &[]), 0x71);
    }

    #[test]
    fn decodes_digi_examples_in_both_modes() {
        for (mode, rx, tx, status) in [
            (ApiMode::Unescaped, RX_API1, TX_API1, STATUS_API1),
            (ApiMode::Escaped, RX_API2, TX_API2, STATUS_API2),
        ] {
            let mut f = framer(mode);
            assert_eq!(decode_all(&mut f, &hex(rx)), [Ok(rx_frame())], "{mode:?}");
            assert_eq!(decode_all(&mut f, &hex(tx)), [Ok(tx_frame())], "{mode:?}");
            assert_eq!(
                decode_all(&mut f, &hex(status)),
                [Ok(status_frame())],
                "{mode:?}"
            );
            assert_eq!(f.stats().frames_ok, 3);
        }
    }

    #[test]
    fn encodes_digi_examples_in_both_modes() {
        for (mode, rx, tx, status) in [
            (ApiMode::Unescaped, RX_API1, TX_API1, STATUS_API1),
            (ApiMode::Escaped, RX_API2, TX_API2, STATUS_API2),
        ] {
            let f = framer(mode);
            let mut out = Vec::new();
            f.encode_frame(&rx_frame(), &mut out).unwrap();
            assert_eq!(out, hex(rx), "{mode:?}");
            out.clear();
            let to = XBeeAddress::new(0x0013_A200_400A_0127, 0xFFFE);
            f.encode_transmit(1, &to, 0, 0, b"TxData0A", &mut out)
                .unwrap();
            assert_eq!(out, hex(tx), "{mode:?}");
            out.clear();
            f.encode_frame(&status_frame(), &mut out).unwrap();
            assert_eq!(out, hex(status), "{mode:?}");
        }
    }

    #[test]
    fn broadcast_transmit_request() {
        let f = framer(ApiMode::Escaped);
        let mut out = Vec::new();
        Framer::encode(&f, &f.broadcast_address(), &[0x03, 0x00, 0x01], &mut out).unwrap();
        // 64-bit 000000000000FFFF, 16-bit FFFE, radius 0, options 0, frame id 0; the length
        // 0x11 is XON and so escaped; checksum 0xF0.
        let data = hex("10 00 000000000000FFFF FFFE 00 00 030001");
        assert_eq!(checksum(&data, &[]), 0xF0);
        assert_eq!(
            out,
            hex("7E 00 7D31 10 00 000000000000FFFF FFFE 00 00 030001 F0")
        );
    }

    #[test]
    fn start_delimiter_is_never_escaped_and_special_bytes_are() {
        let f = framer(ApiMode::Escaped);
        let mut out = Vec::new();
        let to = XBeeAddress::new(0x7E7D_1113_0000_0000, 0x7E7D);
        f.encode_transmit(0x7E, &to, 0x11, 0x13, &[0x7E, 0x7D, 0x11, 0x13], &mut out)
            .unwrap();
        assert_eq!(out[0], START);
        assert!(!out[1..].contains(&START), "{out:02x?}");
        assert!(!out[1..].contains(&XON));
        assert!(!out[1..].contains(&XOFF));
        let mut d = framer(ApiMode::Escaped);
        let frames = decode_all(&mut d, &out);
        let [Ok(Frame::TransmitRequest(tx))] = frames.as_slice() else {
            panic!("{frames:?}");
        };
        assert_eq!(tx.frame_id, 0x7E);
        assert_eq!(tx.destination, to);
        assert_eq!(tx.data, [0x7E, 0x7D, 0x11, 0x13]);
    }

    #[test]
    fn other_frame_types_are_skipped_and_counted() {
        // Modem status "coordinator started" (0x8A 06) then Digi's receive example.
        let mut bytes = hex("7E 0002 8A 06 6F");
        bytes.extend(hex(RX_API2));
        let mut f = framer(ApiMode::Escaped);
        assert_eq!(decode_all(&mut f, &bytes), [Ok(rx_frame())]);
        let stats = f.stats();
        assert_eq!((stats.frames_ok, stats.skipped), (1, 1));
    }

    #[test]
    fn bad_checksum_is_reported_and_the_next_frame_decodes() {
        for (mode, rx) in [(ApiMode::Unescaped, RX_API1), (ApiMode::Escaped, RX_API2)] {
            let mut bad = hex(rx);
            *bad.last_mut().unwrap() ^= 0xFF;
            bad.extend(hex(rx));
            let mut f = framer(mode);
            let out = decode_all(&mut f, &bad);
            assert_eq!(
                out,
                [
                    Err(FrameError::BadChecksum {
                        received: 0xF2,
                        computed: 0x0D
                    }),
                    Ok(rx_frame())
                ],
                "{mode:?}"
            );
            assert_eq!(f.stats().bad_checksum, 1);
        }
    }

    #[test]
    fn api1_searches_a_rejected_frame_again() {
        // A false start whose length swallows the real frame: in API mode 1 the real frame
        // is found by searching the rejected bytes again.
        let mut bytes = vec![0x7E, 0x00, 0x20];
        bytes.extend(hex(RX_API1));
        bytes.extend([0u8; 16]);
        let mut f = framer(ApiMode::Unescaped);
        let out = decode_all(&mut f, &bytes);
        assert!(
            matches!(out[0], Err(FrameError::BadChecksum { .. })),
            "{out:?}"
        );
        assert_eq!(out[1], Ok(rx_frame()));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn api2_raw_start_cuts_a_frame_short() {
        let mut bytes = hex("7E 0012 90 00 7D");
        bytes.extend(hex(RX_API2));
        let mut f = framer(ApiMode::Escaped);
        let out = decode_all(&mut f, &bytes);
        assert_eq!(
            out,
            [
                Err(FrameError::Malformed {
                    reason: "frame cut short by the start of another"
                }),
                Ok(rx_frame())
            ]
        );
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut bytes = b"hello".to_vec();
        bytes.extend(hex(RX_API2));
        let mut f = framer(ApiMode::Escaped);
        assert_eq!(decode_all(&mut f, &bytes), [Ok(rx_frame())]);
        assert_eq!(f.stats().garbage_bytes, 5);
    }

    #[test]
    fn lengths_over_max_and_zero_are_refused_without_buffering() {
        let mut f = XBeeFramer::new(ApiMode::Escaped, 20).unwrap();
        let out = decode_all(&mut f, &hex("7E FFFF"));
        assert_eq!(
            out,
            [Err(FrameError::FrameTooLong {
                at_least: 0xFFFF,
                max: 20
            })]
        );
        let out = decode_all(&mut f, &hex("7E 0000"));
        assert!(matches!(out[..], [Err(FrameError::Malformed { .. })]));
        // The bytes after the refused header are hunted through, not stored.
        f.push(&[0x55; 1000]);
        assert!(f.next_frame().is_none());
        assert!(f.frame.capacity() <= 20);
        assert_eq!(f.stats().oversize, 1);
        assert_eq!(f.stats().malformed, 1);
    }

    #[test]
    fn short_frames_of_known_types_are_malformed() {
        let mut f = framer(ApiMode::Escaped);
        for data in [
            &[0x90, 1, 2][..],
            &[0x10][..],
            &[0x10, 1, 2][..],
            &[0x8B, 1][..],
        ] {
            let mut bytes = vec![0x7E, 0, data.len() as u8];
            bytes.extend(data);
            bytes.push(checksum(data, &[]));
            let out = decode_all(&mut f, &bytes);
            assert!(
                matches!(out[..], [Err(FrameError::Malformed { .. })]),
                "{data:02x?}: {out:?}"
            );
        }
    }

    #[test]
    fn oversize_datagrams_are_refused_and_out_left_alone() {
        let f = XBeeFramer::new(ApiMode::Escaped, 30).unwrap();
        assert_eq!(f.max_datagram(), 16);
        let mut out = vec![1, 2, 3];
        let result = f.encode_transmit(1, &XBeeAddress::BROADCAST, 0, 0, &[0; 17], &mut out);
        assert_eq!(
            result,
            Err(FrameError::DatagramTooLarge { len: 17, max: 16 })
        );
        assert_eq!(out, [1, 2, 3]);
        f.encode_transmit(1, &XBeeAddress::BROADCAST, 0, 0, &[0; 16], &mut out)
            .unwrap();
    }

    #[test]
    fn max_frame_is_checked() {
        assert!(matches!(
            XBeeFramer::new(ApiMode::Escaped, 15),
            Err(FrameError::InvalidMaxFrame { .. })
        ));
        assert!(XBeeFramer::new(ApiMode::Escaped, 16).is_ok());
        assert!(XBeeFramer::new(ApiMode::Unescaped, 65_535).is_ok());
        assert!(XBeeFramer::new(ApiMode::Unescaped, 65_536).is_err());
    }

    #[test]
    fn framer_trait_yields_datagrams_and_statuses_and_skips_requests() {
        let mut f = framer(ApiMode::Unescaped);
        let mut bytes = hex(TX_API1);
        bytes.extend(hex(RX_API1));
        bytes.extend(hex(STATUS_API1));
        Framer::push(&mut f, &bytes);
        let out: Vec<_> = std::iter::from_fn(|| f.next_event()).collect();
        assert_eq!(
            out,
            [
                Ok(Received::Datagram {
                    from: XBeeAddress::new(0x0013_A200_4052_2BAA, 0x7D84),
                    datagram: b"RxData".to_vec()
                }),
                Ok(Received::TransmitStatus(TransmitStatus {
                    frame_id: 1,
                    short: 0x7D84,
                    retries: 0,
                    delivery: DeliveryStatus::SUCCESS,
                    discovery: 1
                }))
            ]
        );
        assert_eq!((f.stats().frames_ok, f.stats().skipped), (2, 1));
    }

    #[test]
    fn frame_ids_cycle_and_skip_zero() {
        let mut ids = FrameIdAllocator::new();
        let first: Vec<u8> = (0..256).map(|_| ids.next_id().get()).collect();
        assert_eq!(first[0], 1);
        assert_eq!(first[254], 255);
        assert_eq!(first[255], 1);
        assert!(!first.contains(&0));
    }

    #[test]
    fn tracker_reports_failures_and_expires() {
        let t0 = Instant::now();
        let mut tracker = DeliveryTracker::new(Duration::from_secs(30));
        let a = tracker.track(t0, "a").unwrap();
        let b = tracker.track(t0 + Duration::from_secs(10), "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(tracker.len(), 2);
        let failed = TransmitStatus {
            frame_id: b.get(),
            short: 0xFFFD,
            retries: 3,
            delivery: DeliveryStatus(0x21),
            discovery: 0,
        };
        assert_eq!(tracker.resolve(&failed), Some("b"));
        assert!(!failed.delivery.is_success());
        assert_eq!(failed.delivery.description(), "network ACK failure");
        // A duplicate or id 0 resolves nothing.
        assert_eq!(tracker.resolve(&failed), None);
        assert_eq!(
            tracker.resolve(&TransmitStatus {
                frame_id: 0,
                ..failed
            }),
            None
        );
        assert_eq!(tracker.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(tracker.expire(t0 + Duration::from_secs(29)), None);
        assert_eq!(tracker.expire(t0 + Duration::from_secs(30)), Some("a"));
        assert!(tracker.is_empty());
        assert_eq!(tracker.next_deadline(), None);
    }

    #[test]
    fn tracker_refuses_the_256th_and_reuses_freed_ids() {
        let t0 = Instant::now();
        let mut tracker = DeliveryTracker::new(Duration::from_secs(1));
        let ids: Vec<u8> = (0..255)
            .map(|i| tracker.track(t0, i).unwrap().get())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 255);
        assert_eq!(tracker.track(t0, 999), Err(999));
        let status = TransmitStatus {
            frame_id: 77,
            short: 0,
            retries: 0,
            delivery: DeliveryStatus::SUCCESS,
            discovery: 0,
        };
        assert_eq!(tracker.resolve(&status), Some(76));
        assert_eq!(tracker.track(t0, 1000).map(NonZeroU8::get), Ok(77));
    }

    #[test]
    fn address_display() {
        assert_eq!(
            XBeeAddress::new(0x0013_A200_4052_2BAA, 0x7D84).to_string(),
            "0013a20040522baa/7d84"
        );
        assert_eq!(
            DeliveryStatus(0x74).to_string(),
            "0x74 (data payload too large)"
        );
    }
}
