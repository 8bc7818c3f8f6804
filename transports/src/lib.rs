//! Links that carry MQTT-SN datagrams between motes and the gateway.
//!
//! A transport turns bytes on a wire into `(peer address, datagram)` and back; it knows
//! framing and addresses, nothing of MQTT-SN semantics (see the architecture page). The
//! gateway's runtime owns one link per configured transport and feeds what it receives to
//! the sans-I/O protocol core.
//!
//! Links so far: [`udp`] (IPv4/IPv6, broadcast or multicast discovery), [`serial`], and with
//! the `dtls` feature (on by default) the sans-I/O DTLS 1.2 server endpoint in `dtls`, on libssl
//! or (feature `dtls-mbedtls`, on by default) Mbed TLS with the Connection ID.

// The exceptions, batched datagram I/O (udp/mmsg.rs), the three libssl calls rust-openssl
// does not bind (dtls/openssl.rs) and the wrapper of the Mbed TLS C API (dtls/mbedtls_ffi.rs),
// allow it for themselves and prove each block sound.
#![deny(unsafe_code)]

#[cfg(feature = "dtls")]
pub mod dtls;
pub mod serial;
pub mod udp;

pub use udp::{LinkStats, UdpLink, UdpLinkConfig, UdpLinkError};
