//! The length + MsgType header shared by every MQTT-SN packet (v1.2 §5.2.1; unchanged in 2.0).
//!
//! ```text
//! 1-byte form: [L] [MsgType]                 L = total length, 2..=255
//! 3-byte form: [01] [Lhi] [Llo] [MsgType]    total length up to 65535, header included
//! ```

use bytes::BufMut;

use crate::DecodeError;

/// Largest total length the 1-byte form carries.
pub const MAX_SHORT_LEN: usize = 255;
/// Largest total length any MQTT-SN packet can have.
pub const MAX_LEN: usize = u16::MAX as usize;
/// The marker byte that introduces the 3-byte length form.
const LONG_FORM_MARKER: u8 = 0x01;

/// What the header of a datagram says, after its length has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The MsgType byte (not yet checked against the known types).
    pub msg_type: u8,
    /// How many bytes the header takes: 2 (1-byte form) or 4 (3-byte form). The body starts here.
    pub header_len: usize,
}

impl Header {
    /// Reads the header of `datagram` and checks that the declared length equals the datagram's
    /// length. Accepts the 3-byte form for short packets (the spec allows it), rejects length
    /// bytes 0x00, a 3-byte form below 4, and any mismatch.
    pub fn parse(datagram: &[u8]) -> Result<Self, DecodeError> {
        let received = datagram.len();
        let (declared, msg_type, header_len) = match *datagram {
            [] | [_] => {
                return Err(DecodeError::TooShort {
                    at: 0,
                    len: received,
                    needed: 2,
                })
            }
            [0x00, ..] => return Err(DecodeError::ZeroLength { at: 0 }),
            [LONG_FORM_MARKER, hi, lo, msg_type, ..] => {
                let declared = usize::from(u16::from_be_bytes([hi, lo]));
                if declared < 4 {
                    return Err(DecodeError::LongLengthTooSmall { at: 0, declared });
                }
                (declared, msg_type, 4)
            }
            [LONG_FORM_MARKER, ..] => {
                return Err(DecodeError::TooShort {
                    at: 0,
                    len: received,
                    needed: 4,
                })
            }
            [len, msg_type, ..] => (usize::from(len), msg_type, 2),
        };
        if declared != received {
            return Err(DecodeError::LengthMismatch {
                at: 0,
                declared,
                received,
            });
        }
        Ok(Header {
            msg_type,
            header_len,
        })
    }
}

/// The total length of a packet whose body (everything after MsgType) is `body_len` bytes:
/// the 1-byte form while the total fits in 255, the 3-byte form above (so a body that would
/// make a 256-byte packet makes a 258-byte one).
pub const fn total_len(body_len: usize) -> usize {
    if body_len + 2 <= MAX_SHORT_LEN {
        body_len + 2
    } else {
        body_len + 4
    }
}

/// Writes the length field and MsgType for a packet of `total` bytes (as from [`total_len`]).
/// The caller has checked that `total <= MAX_LEN`.
pub(crate) fn write(buf: &mut impl BufMut, total: usize, msg_type: u8) {
    match u8::try_from(total) {
        Ok(short) => buf.put_u8(short),
        Err(_) => {
            buf.put_u8(LONG_FORM_MARKER);
            // Checked by the caller; saturate rather than wrap if that promise is ever broken.
            buf.put_u16(u16::try_from(total).unwrap_or(u16::MAX));
        }
    }
    buf.put_u8(msg_type);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn switches_form_at_255() {
        assert_eq!(total_len(0), 2);
        assert_eq!(total_len(253), 255);
        assert_eq!(total_len(254), 258);
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            Header::parse(&[0x02, 0x17]).unwrap(),
            Header {
                msg_type: 0x17,
                header_len: 2
            }
        );
        assert_eq!(
            Header::parse(&[0x01, 0x00, 0x04, 0x17]).unwrap(),
            Header {
                msg_type: 0x17,
                header_len: 4
            }
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(matches!(
            Header::parse(&[]),
            Err(DecodeError::TooShort { needed: 2, .. })
        ));
        assert!(matches!(
            Header::parse(&[0x02]),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            Header::parse(&[0x00, 0x17]),
            Err(DecodeError::ZeroLength { .. })
        ));
        assert!(matches!(
            Header::parse(&[0x01, 0x00, 0x03]),
            Err(DecodeError::TooShort { needed: 4, .. })
        ));
        assert!(matches!(
            Header::parse(&[0x01, 0x00, 0x03, 0x17]),
            Err(DecodeError::LongLengthTooSmall { declared: 3, .. })
        ));
        assert!(matches!(
            Header::parse(&[0x03, 0x17]),
            Err(DecodeError::LengthMismatch {
                declared: 3,
                received: 2,
                ..
            })
        ));
    }
}
