//! MQTT-SN packets to bytes and back.
//!
//! This crate is the wire layer of the gateway: pure functions, no I/O, no clock, and no
//! allocation on decode. A decoded packet borrows its payload, topic names and client id from
//! the datagram it came from.
//!
//! The protocol versions live in their own modules so that a new version can be added beside
//! the old one without changing what v1.2 callers see:
//!
//! - [`v12`]: every MQTT-SN v1.2 message and the forwarder encapsulation (0xFE).
//!
//! Shared by all versions: the length framing ([`header`]), flag values ([`QoS`]), errors
//! ([`DecodeError`], [`EncodeError`]) and the topic-name / client-id checks ([`validate`]).
//!
//! ```
//! use sn_codec::v12::{Frame, Packet};
//!
//! // PINGREQ relayed by a forwarder for wireless node 0A 0B.
//! let frame = Frame::decode(&[0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x02, 0x16]).unwrap();
//! let Frame::Forwarded(fwd) = frame else { panic!("expected a forwarder frame") };
//! assert_eq!(fwd.node_id, &[0x0A, 0x0B]);
//! assert!(matches!(fwd.packet, Packet::PingReq { .. }));
//! ```
#![forbid(unsafe_code)]

mod error;
pub mod header;
mod msg_type;
mod qos;
pub mod v12;
pub mod validate;
mod version;

pub use error::{DecodeError, EncodeError, Expected};
pub use msg_type::MsgType;
pub use qos::QoS;
pub use version::ProtocolVersion;
