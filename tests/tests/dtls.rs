//! MQTT-SN over DTLS, end to end: the real runtime with a `[[dtls]]` link, a real mosquitto,
//! and DTLS clients this project did not write: python-mbedtls (PSK), which speaks MQTT-SN
//! from a small script, and `openssl s_client -dtls1_2` (PSK and a client certificate), fed
//! MQTT-SN bytes on its stdin and read on its stdout.
//!
//! The tools are required: a missing one fails the test with how to install it.
//!
//! Every case runs against each engine (`openssl::cases::*`, `mbedtls::cases::*`); the cases
//! are in `dtls_cases/mod.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    // The cases file is loaded once per engine, on purpose: that is the parametrisation.
    clippy::duplicate_mod,
    missing_docs
)]

#[path = "../../transports/tests/dtls_tools/mod.rs"]
mod dtls_tools;

/// The cases on libssl.
#[path = "dtls_cases"]
mod openssl {
    use sn_config::DtlsEngineName;
    const ENGINE: DtlsEngineName = DtlsEngineName::OpenSsl;
    #[path = "mod.rs"]
    mod cases;
}

/// The cases on Mbed TLS.
#[path = "dtls_cases"]
mod mbedtls {
    use sn_config::DtlsEngineName;
    const ENGINE: DtlsEngineName = DtlsEngineName::MbedTls;
    #[path = "mod.rs"]
    mod cases;
}
