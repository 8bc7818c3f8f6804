//! What arrives in one datagram: a plain message, or one wrapped by a forwarder (v1.2 §5.5).
//!
//! ```text
//! [0] Len   = 3 + length(NodeId); counts only this header
//! [1] 0xFE
//! [2] Ctrl  bits 1..0 = broadcast radius (gateway → forwarder); bits 7..2 reserved
//! [3..Len]  Wireless Node Id (opaque)
//! [Len..]   the complete inner message with its own length header
//! ```

use bytes::BufMut;

use crate::{DecodeError, EncodeError, MsgType};

use super::Packet;

/// Mask of the radius bits in the Ctrl byte.
const CTRL_RADIUS: u8 = 0x03;
/// Len + MsgType + Ctrl.
const FIXED_HEADER: usize = 3;
/// Longest node id the 1-byte Len can describe.
pub const MAX_NODE_ID_LEN: usize = u8::MAX as usize - FIXED_HEADER;

/// One datagram's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message sent directly by a client or gateway.
    Packet(Packet<'a>),
    /// A message relayed by a forwarder on behalf of a wireless node.
    Forwarded(Forwarded<'a>),
}

/// A forwarder-encapsulated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded<'a> {
    /// Broadcast radius, 0..=3: the Ctrl bits 1..0. Set only when the forwarder must broadcast
    /// the inner message; the reserved bits 7..2 are ignored on receipt and sent as 0.
    pub radius: u8,
    /// The wireless node the message is from or for, opaque. Sessions are keyed by
    /// (forwarder address, node id).
    pub node_id: &'a [u8],
    /// The inner message, unchanged.
    pub packet: Packet<'a>,
}

impl<'a> Frame<'a> {
    /// Decodes a datagram as received from the network: a plain v1.2 message, or a forwarder
    /// encapsulation around one. Nested encapsulation is refused.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        match datagram {
            // 0x01 at byte 0 is the 3-byte length form, which the encapsulation never uses.
            [len, 0xFE, ..] if *len != 0x01 => {
                let header_len = usize::from(*len);
                let received = datagram.len();
                let bad_len = DecodeError::EncapsulationLength {
                    at: 0,
                    declared: header_len,
                    received,
                };
                // The inner message needs at least its own 2-byte header.
                if header_len < FIXED_HEADER || header_len >= received {
                    return Err(bad_len);
                }
                let (Some(&ctrl), Some(node_id), Some(inner)) = (
                    datagram.get(2),
                    datagram.get(FIXED_HEADER..header_len),
                    datagram.get(header_len..),
                ) else {
                    return Err(bad_len);
                };
                let packet = Packet::decode(inner).map_err(|e| e.shifted(header_len))?;
                Ok(Frame::Forwarded(Forwarded {
                    radius: ctrl & CTRL_RADIUS,
                    node_id,
                    packet,
                }))
            }
            _ => Packet::decode(datagram).map(Frame::Packet),
        }
    }

    /// The message inside, whether forwarded or not.
    pub const fn packet(&self) -> &Packet<'a> {
        match self {
            Frame::Packet(p) => p,
            Frame::Forwarded(f) => &f.packet,
        }
    }

    /// The number of bytes [`Frame::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Packet(p) => p.encoded_len(),
            Frame::Forwarded(f) => FIXED_HEADER + f.node_id.len() + f.packet.encoded_len(),
        }
    }

    /// Encodes the frame into `buf`. Nothing is written when an error is returned.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        match self {
            Frame::Packet(p) => p.encode(buf),
            Frame::Forwarded(f) => {
                let header_len = u8::try_from(FIXED_HEADER + f.node_id.len()).map_err(|_| {
                    EncodeError::NodeIdTooLong {
                        len: f.node_id.len(),
                    }
                })?;
                if f.radius > CTRL_RADIUS {
                    return Err(EncodeError::Inconsistent {
                        msg_type: MsgType::Encapsulated,
                        reason: "radius must be 0..=3 (Ctrl bits 1..0)",
                    });
                }
                let inner_len = f.packet.checked_len()?;
                let needed = usize::from(header_len) + inner_len;
                if buf.remaining_mut() < needed {
                    return Err(EncodeError::BufferTooSmall {
                        needed,
                        remaining: buf.remaining_mut(),
                    });
                }
                buf.put_u8(header_len);
                buf.put_u8(MsgType::Encapsulated.to_u8());
                buf.put_u8(f.radius);
                buf.put_slice(f.node_id);
                f.packet.write_checked(buf, inner_len);
                Ok(())
            }
        }
    }

    /// Encodes into a new `Vec`, sized exactly.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len().min(crate::header::MAX_LEN + 256));
        self.encode(&mut out)?;
        Ok(out)
    }
}
