//! The DTLS Connection ID (RFC 9146) on the Mbed TLS engine, sans-I/O: the endpoint and a
//! client on the same library ([`MbedtlsClient`]) exchange datagrams in memory, so a test
//! decides from which address each datagram arrives, and which arrive at all.
//!
//! What is shown: a session with a CID follows its peer to a new address on an authenticated
//! record newer than any before it (the endpoint reports `Moved`, counts it, and answers at
//! the new address); a replayed, older or forged record from a third address moves nothing;
//! without the CID the same move is a datagram from a stranger, dropped.

#![cfg(feature = "dtls")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// Without the Mbed TLS engine there is no Connection ID: this build cannot pass.
#[cfg(not(feature = "dtls-mbedtls"))]
#[test]
fn the_connection_id_needs_the_mbedtls_engine() {
    panic!(
        "built without the dtls-mbedtls feature: no engine has the DTLS Connection ID; \
         build with the default features (cargo test -p sn-transports --test dtls_cid)"
    );
}

#[cfg(feature = "dtls-mbedtls")]
#[path = "dtls_cid/cases.rs"]
mod cases;
