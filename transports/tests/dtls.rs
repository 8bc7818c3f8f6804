//! The DTLS endpoint over a real UDP socket on loopback, against clients this project did not
//! write: `openssl s_client -dtls1_2` (PSK and certificates) and python-mbedtls (PSK).
//!
//! Each interop test completes a handshake, sends one line, and expects the endpoint's echo
//! `[identity] line` back. The tools are required: a missing one fails the test with the
//! package to install.
//!
//! Every case runs against each engine: `openssl::cases::*` on libssl, `mbedtls::cases::*`
//! on Mbed TLS (feature `dtls-mbedtls`); the cases are in `dtls_cases/mod.rs`.

#![cfg(feature = "dtls")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    // The cases file is loaded once per engine, on purpose: that is the parametrisation.
    clippy::duplicate_mod,
    clippy::indexing_slicing
)]

mod dtls_tools;

/// The cases on libssl.
#[path = "dtls_cases"]
mod openssl {
    use sn_transports::dtls::DtlsEngine;
    const ENGINE: DtlsEngine = DtlsEngine::OpenSsl;
    #[path = "mod.rs"]
    mod cases;
}

/// The cases on Mbed TLS.
#[cfg(feature = "dtls-mbedtls")]
#[path = "dtls_cases"]
mod mbedtls {
    use sn_transports::dtls::DtlsEngine;
    const ENGINE: DtlsEngine = DtlsEngine::MbedTls;
    #[path = "mod.rs"]
    mod cases;
}
