//! Typed errors for decoding and encoding. Each says which field or byte is wrong.

use std::fmt;

use crate::MsgType;

/// How long a packet body may be, for [`DecodeError::BodyLength`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this many bytes.
    Exactly(usize),
    /// This many bytes or more.
    AtLeast(usize),
    /// Either empty or exactly this many bytes (DISCONNECT's optional Duration).
    ZeroOr(usize),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Exactly(n) => write!(f, "exactly {n}"),
            Expected::AtLeast(n) => write!(f, "at least {n}"),
            Expected::ZeroOr(n) => write!(f, "0 or {n}"),
        }
    }
}

/// Why a datagram is not a well-formed MQTT-SN packet.
///
/// Byte offsets count from the start of the datagram, including the length field, so that a
/// hex dump of the datagram and the error line up (for a forwarder-encapsulated message the
/// offsets point into the whole datagram, past the encapsulation header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the smallest possible header.
    #[error("packet at byte {at} is {len} byte(s) long; its header alone needs {needed}")]
    TooShort {
        /// Where the packet starts in the datagram.
        at: usize,
        /// How many bytes there were.
        len: usize,
        /// How many the header needs (2, or 4 for the 3-byte length form).
        needed: usize,
    },
    /// The length byte is 0x00, which is never a length.
    #[error("length byte 0x00 at byte {at} is not a valid length")]
    ZeroLength {
        /// Where the length byte is.
        at: usize,
    },
    /// The 3-byte length form declares fewer than 4 bytes, less than its own header.
    #[error(
        "3-byte length form at byte {at} declares {declared} bytes, less than its 4-byte header"
    )]
    LongLengthTooSmall {
        /// Where the length field starts.
        at: usize,
        /// The declared total length.
        declared: usize,
    },
    /// The declared length is not the number of bytes received.
    #[error("length field at byte {at} declares {declared} bytes but {received} were received")]
    LengthMismatch {
        /// Where the length field starts.
        at: usize,
        /// The declared total length.
        declared: usize,
        /// The bytes actually present.
        received: usize,
    },
    /// A MsgType code that v1.2 reserves.
    #[error("MsgType 0x{msg_type:02X} at byte {at} is reserved in MQTT-SN v1.2")]
    ReservedMsgType {
        /// The MsgType byte.
        msg_type: u8,
        /// Where the MsgType byte is.
        at: usize,
    },
    /// The body after the header has the wrong size for this message type.
    #[error("{msg_type} body starting at byte {at} is {actual} byte(s); it must be {expected}")]
    BodyLength {
        /// The message being decoded.
        msg_type: MsgType,
        /// Where the body starts.
        at: usize,
        /// What the layout allows.
        expected: Expected,
        /// What was received.
        actual: usize,
    },
    /// TopicIdType `11` is reserved.
    #[error("{msg_type} flags at byte {at}: TopicIdType 0b11 is reserved")]
    ReservedTopicIdType {
        /// The message being decoded.
        msg_type: MsgType,
        /// Where the flags byte is.
        at: usize,
    },
    /// In the QoS -1 long-topic-name form, the name length runs past the end of the packet.
    #[error(
        "PUBLISH QoS -1 long-name form: topic name length {declared} at byte {at} exceeds the {available} byte(s) after MsgId"
    )]
    TopicNameOverrun {
        /// Where the name-length field is.
        at: usize,
        /// The declared name length.
        declared: usize,
        /// The bytes left for name and data.
        available: usize,
    },
    /// A forwarder encapsulation header whose length is below 3 or leaves no inner message.
    #[error(
        "forwarder encapsulation length {declared} at byte {at} must be at least 3 and leave room for an inner message in the {received}-byte datagram"
    )]
    EncapsulationLength {
        /// Where the encapsulation starts.
        at: usize,
        /// The declared header length.
        declared: usize,
        /// The datagram's size from `at` on.
        received: usize,
    },
    /// MsgType 0xFE where only a plain message may stand: nested inside another encapsulation,
    /// with the 3-byte length form, or handed to [`crate::v12::Packet::decode`].
    #[error(
        "forwarder encapsulation (0xFE) at byte {at} is not allowed here: it must be the outermost header and use a 1-byte length (decode datagrams with Frame::decode)"
    )]
    UnexpectedEncapsulation {
        /// Where the 0xFE byte is.
        at: usize,
    },
}

impl DecodeError {
    /// The same error with every byte offset moved by `by`, for a message found `by` bytes into
    /// the datagram (after a forwarder encapsulation header).
    pub(crate) fn shifted(self, by: usize) -> Self {
        use DecodeError::*;
        match self {
            TooShort { at, len, needed } => TooShort {
                at: at + by,
                len,
                needed,
            },
            ZeroLength { at } => ZeroLength { at: at + by },
            LongLengthTooSmall { at, declared } => LongLengthTooSmall {
                at: at + by,
                declared,
            },
            LengthMismatch {
                at,
                declared,
                received,
            } => LengthMismatch {
                at: at + by,
                declared,
                received,
            },
            ReservedMsgType { msg_type, at } => ReservedMsgType {
                msg_type,
                at: at + by,
            },
            BodyLength {
                msg_type,
                at,
                expected,
                actual,
            } => BodyLength {
                msg_type,
                at: at + by,
                expected,
                actual,
            },
            ReservedTopicIdType { msg_type, at } => ReservedTopicIdType {
                msg_type,
                at: at + by,
            },
            TopicNameOverrun {
                at,
                declared,
                available,
            } => TopicNameOverrun {
                at: at + by,
                declared,
                available,
            },
            EncapsulationLength {
                at,
                declared,
                received,
            } => EncapsulationLength {
                at: at + by,
                declared,
                received,
            },
            UnexpectedEncapsulation { at } => UnexpectedEncapsulation { at: at + by },
        }
    }

    /// The message type the datagram claimed to be, when decoding got that far. The gateway uses
    /// it to pick a reply (e.g. CONNACK 0x03 for a CONNECT it cannot read) or a counter.
    pub fn msg_type(&self) -> Option<MsgType> {
        match self {
            DecodeError::BodyLength { msg_type, .. }
            | DecodeError::ReservedTopicIdType { msg_type, .. } => Some(*msg_type),
            DecodeError::TopicNameOverrun { .. } => Some(MsgType::Publish),
            DecodeError::EncapsulationLength { .. }
            | DecodeError::UnexpectedEncapsulation { .. } => Some(MsgType::Encapsulated),
            _ => None,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded packet would exceed the 65 535 bytes the 3-byte length form can express.
    #[error("{msg_type} would be {len} bytes; an MQTT-SN packet is at most 65535")]
    TooLong {
        /// The message being encoded.
        msg_type: MsgType,
        /// Its total length.
        len: usize,
    },
    /// The destination buffer has less room than the packet needs; nothing was written.
    #[error("buffer has room for {remaining} byte(s) but the packet needs {needed}")]
    BufferTooSmall {
        /// The packet's total length.
        needed: usize,
        /// What the buffer can take.
        remaining: usize,
    },
    /// The fields contradict each other, so the bytes would decode as a different packet.
    #[error("{msg_type} cannot be encoded: {reason}")]
    Inconsistent {
        /// The message being encoded.
        msg_type: MsgType,
        /// What is contradictory.
        reason: &'static str,
    },
    /// A forwarder encapsulation header longer than its 1-byte length field can express.
    #[error("forwarder node id of {len} bytes is too long: the encapsulation header is at most 255 bytes (node id at most 252)")]
    NodeIdTooLong {
        /// The node id's length.
        len: usize,
    },
}
