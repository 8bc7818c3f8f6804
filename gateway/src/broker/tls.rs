//! The process-wide TLS crypto provider, for `mqtts://` broker links.
//!
//! rustls chooses a provider by itself only when exactly one is compiled in. rumqttc (through
//! tokio-rustls) brings aws-lc-rs; the embedded broker's dependencies (quinn, under rmqtt-net)
//! add ring. With both present, building a TLS client without an installed provider panics, so
//! the gateway installs aws-lc-rs, the provider it used before the embedded broker came in.

/// Installs aws-lc-rs as the process's rustls provider, unless one is installed already.
/// Call it before the first TLS connection; calling it again does nothing.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is all this needs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
