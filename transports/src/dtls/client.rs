//! DTLS 1.2 client side, as a sans-I/O connection (feature `dtls`): what the `mqtt-sn` tool
//! and its bench motes use to talk to a `[[dtls]]` link.
//!
//! A [`DtlsClientContext`] is built once from the credentials (a PSK identity and key, or a
//! client certificate and key) and the CA that must have signed the gateway's certificate;
//! each connection is a [`DtlsClient`] from [`DtlsClientContext::connect`]. The client is fed
//! the datagrams its UDP socket received ([`handle`](DtlsClient::handle)) and the time
//! ([`handle_timeout`](DtlsClient::handle_timeout)), and polled for datagrams to send, events
//! (connected, decrypted application datagrams, closed, failed) and its next deadline. It
//! keeps no socket and no clock of its own.
//!
//! The engine is libssl over the same in-memory datagram queue as the server side; libssl
//! times the retransmission of the client's flights (a lost ClientHello, a lost Finished), the
//! client only asks it how long is left, as the server endpoint does.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::openssl::error::ErrorStack;
use ::openssl::ex_data::Index;
use ::openssl::nid::Nid;
use ::openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslFiletype, SslMethod, SslOptions, SslStream, SslVerifyMode,
    SslVersion,
};
use ::openssl::x509::{X509VerifyResult, X509};

#[cfg(feature = "dtls-mbedtls")]
use super::mbedtls::MbedtlsClient;
use super::openssl::{handle_retransmit, retransmit_in, Queue};
use super::{DtlsError, PskTable, DEFAULT_CIPHER_SUITES, MAX_IDENTITY_LEN, MAX_PSK_LEN};

/// A PSK identity and its key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPsk {
    /// The identity sent to the gateway (1 to 128 bytes).
    pub identity: String,
    /// The key (1 to 64 bytes).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ClientPsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPsk")
            .field("identity", &self.identity)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .finish()
    }
}

/// The entries of a PSK file in the gateway's format (`identity:hexkey` per line, `#`
/// comments), in file order, each checked as the gateway checks it.
pub fn read_psk_file(path: &Path) -> Result<Vec<ClientPsk>, DtlsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DtlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // Each line alone through the gateway's parser, so both read a line the same way.
        let table = PskTable::parse(line).map_err(|e| match e {
            DtlsError::PskLine { reason, .. } => DtlsError::PskLine {
                line: n + 1,
                reason,
            },
            other => other,
        })?;
        let identity = line.trim().rsplit_once(':').map(|(id, _)| id.trim());
        if let Some(key) = identity.and_then(|id| table.key(id)) {
            entries.push(ClientPsk {
                identity: identity.unwrap_or_default().to_owned(),
                key: key.to_vec(),
            });
        }
    }
    Ok(entries)
}

/// The identity a gateway reads from a certificate (PEM): its CN, else its first DNS name.
pub fn certificate_identity(path: &Path) -> Result<String, DtlsClientError> {
    let file = |source| DtlsClientError::File {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| DtlsClientError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let cert = X509::from_pem(&pem).map_err(file)?;
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|entry| entry.data().to_string().ok())
        .filter(|s| !s.is_empty());
    let dns = || {
        cert.subject_alt_names()
            .and_then(|names| names.iter().find_map(|n| n.dnsname().map(str::to_owned)))
    };
    cn.or_else(dns)
        .ok_or_else(|| DtlsClientError::NoIdentity(path.to_path_buf()))
}

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientCredentials {
    /// A pre-shared key: the PSK suites are offered. Each connection may name its own
    /// ([`DtlsClientContext::connect_as`]).
    Psk(ClientPsk),
    /// A client certificate and its private key (PEM): the ECDHE-ECDSA suites are offered.
    Certificate {
        /// The certificate chain, leaf first.
        certificate: PathBuf,
        /// Its private key.
        private_key: PathBuf,
    },
}

/// Options of a DTLS client.
#[derive(Debug, Clone)]
pub struct DtlsClientConfig {
    /// The credentials.
    pub credentials: ClientCredentials,
    /// CA certificates (PEM) the gateway's certificate must chain to. Required with
    /// certificate credentials (otherwise anyone could pose as the gateway); with a PSK it
    /// is not needed, the key authenticates both sides.
    pub ca_file: Option<PathBuf>,
    /// When set, the gateway's certificate must also name this host (DNS name) or address.
    pub server_name: Option<String>,
    /// Cipher suites in OpenSSL names; empty: those of [`DEFAULT_CIPHER_SUITES`] that fit the
    /// credentials (the PSK ones for a PSK, the ECDHE-ECDSA ones for a certificate).
    pub cipher_suites: Vec<String>,
    /// Largest datagram libssl may send.
    pub mtu: u32,
    /// A handshake not finished this long after it started fails.
    pub handshake_timeout: Duration,
    /// The library each PSK connection runs on (certificate connections always use libssl).
    pub engine: ClientEngine,
}

/// The DTLS library of a client's PSK connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientEngine {
    /// libssl (the default).
    #[default]
    OpenSsl,
    /// Mbed TLS 3.6, built into this program (feature `dtls-mbedtls`): the same engine as the
    /// gateway's default, with AES instructions; PSK only.
    MbedTls,
}

impl DtlsClientConfig {
    /// A configuration with the defaults: suites that fit the credentials, MTU 1200, a 10 s
    /// handshake timeout, no CA, no server name.
    pub fn new(credentials: ClientCredentials) -> Self {
        DtlsClientConfig {
            credentials,
            ca_file: None,
            server_name: None,
            cipher_suites: Vec::new(),
            mtu: 1200,
            handshake_timeout: Duration::from_secs(10),
            engine: ClientEngine::OpenSsl,
        }
    }

    /// The suites offered: the configured ones, or the defaults that fit the credentials.
    pub fn suites(&self) -> Vec<String> {
        if !self.cipher_suites.is_empty() {
            return self.cipher_suites.clone();
        }
        let psk = matches!(self.credentials, ClientCredentials::Psk(_));
        DEFAULT_CIPHER_SUITES
            .iter()
            .filter(|s| s.starts_with("PSK-") == psk)
            .map(|s| (*s).to_owned())
            .collect()
    }
}

/// Errors from building a client context or a connection, or from sending.
#[derive(Debug, thiserror::Error)]
pub enum DtlsClientError {
    /// A PSK identity or key out of bounds.
    #[error("PSK {0}")]
    BadPsk(String),
    /// Certificate credentials without a CA to check the gateway with.
    #[error(
        "a client certificate needs a CA file to verify the gateway's certificate \
         (give the CA that signed the gateway's certificate)"
    )]
    NoCaFile,
    /// libssl accepted none of the cipher suites.
    #[error("cipher suites {0:?} not usable: {1}")]
    CipherSuites(String, ErrorStack),
    /// A certificate, key or CA file was rejected by libssl.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// libssl's reason.
        source: ErrorStack,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A certificate with neither a CN nor a DNS name: the gateway could not identify it.
    #[error("{0}: the certificate has no CN and no DNS name, so it names no identity")]
    NoIdentity(PathBuf),
    /// The server name is not usable for certificate checks.
    #[error("server name {0:?}: {1}")]
    ServerName(String, ErrorStack),
    /// Any other libssl failure (out of memory, a broken installation).
    #[error("libssl: {0}")]
    OpenSsl(#[from] ErrorStack),
    /// Mbed TLS refused the PSK configuration, or this build has no Mbed TLS.
    #[error("mbedtls: {0}")]
    MbedTls(String),
    /// `send` before the handshake completed or after the connection ended.
    #[error("the DTLS connection is not established")]
    NotConnected,
    /// libssl could not encrypt the datagram.
    #[error("DTLS write failed: {0}")]
    Write(String),
}

/// Why a connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFailure {
    /// The handshake did not finish within the handshake timeout. `answered` tells whether
    /// the gateway answered at all: with a PSK, an answered handshake that never finishes is
    /// almost always a wrong key (DTLS drops records that fail authentication silently).
    HandshakeTimeout {
        /// Whether any datagram came back from the gateway.
        answered: bool,
    },
    /// The gateway's certificate did not verify (libssl's reason).
    BadServerCertificate(String),
    /// The gateway answered our Finished with an alert that says it could not authenticate
    /// it (`bad_record_mac` or `decrypt_error`): with a PSK, a key that differs from the
    /// gateway's for this identity. Engines that drop such a Finished silently give
    /// [`ClientFailure::HandshakeTimeout`] instead.
    KeyRefused(String),
    /// The handshake failed: an alert from the gateway or a protocol error (libssl's text).
    Handshake(String),
    /// An established connection failed: a fatal alert or error (libssl's text).
    Connection(String),
}

impl std::fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientFailure::HandshakeTimeout { answered: false } => {
                write!(f, "the DTLS handshake got no answer from the gateway")
            }
            ClientFailure::HandshakeTimeout { answered: true } => write!(
                f,
                "the DTLS handshake did not complete although the gateway answered \
                 (with a PSK this is a wrong key: the gateway cannot decrypt our Finished)"
            ),
            ClientFailure::BadServerCertificate(why) => {
                write!(f, "the gateway's certificate did not verify: {why}")
            }
            ClientFailure::KeyRefused(why) => write!(
                f,
                "the gateway refused the DTLS handshake: our Finished did not authenticate \
                 (with a PSK this is a wrong key for this identity): {why}"
            ),
            ClientFailure::Handshake(why) => write!(f, "the DTLS handshake failed: {why}"),
            ClientFailure::Connection(why) => write!(f, "the DTLS connection failed: {why}"),
        }
    }
}

/// What happened on a client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake completed with this cipher suite.
    Connected {
        /// The suite's OpenSSL name.
        cipher: String,
    },
    /// A decrypted application datagram from the gateway.
    Datagram(Vec<u8>),
    /// The gateway closed the connection (close_notify).
    Closed,
    /// The handshake or the connection failed; nothing more will come.
    Failed(ClientFailure),
}

/// The context every connection of one client configuration shares (libssl's `SSL_CTX`:
/// suites, certificates, CA); cheap to clone.
#[derive(Clone)]
pub struct DtlsClientContext {
    context: SslContext,
    psk_index: Index<Ssl, ClientPsk>,
    psk: Option<ClientPsk>,
    server_name: Option<String>,
    mtu: u32,
    handshake_timeout: Duration,
    engine: ClientEngine,
    /// The suites offered, for the Mbed TLS connections.
    #[cfg_attr(not(feature = "dtls-mbedtls"), allow(dead_code))]
    suites: Vec<String>,
}

impl std::fmt::Debug for DtlsClientContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsClientContext")
            .field("psk", &self.psk)
            .field("server_name", &self.server_name)
            .field("mtu", &self.mtu)
            .finish()
    }
}

fn check_psk(psk: &ClientPsk) -> Result<(), DtlsClientError> {
    if psk.identity.is_empty() || psk.identity.len() > MAX_IDENTITY_LEN {
        return Err(DtlsClientError::BadPsk(format!(
            "identity must be 1 to {MAX_IDENTITY_LEN} bytes"
        )));
    }
    if psk.identity.as_bytes().contains(&0) {
        return Err(DtlsClientError::BadPsk(
            "identity must not contain NUL".into(),
        ));
    }
    if psk.key.is_empty() || psk.key.len() > MAX_PSK_LEN {
        return Err(DtlsClientError::BadPsk(format!(
            "key must be 1 to {MAX_PSK_LEN} bytes"
        )));
    }
    Ok(())
}

impl DtlsClientContext {
    /// Builds the context: DTLS 1.2 only, the suites, the credentials, the CA.
    pub fn new(config: &DtlsClientConfig) -> Result<Self, DtlsClientError> {
        let psk_index = Ssl::new_ex_index::<ClientPsk>()?;
        let mut builder = SslContext::builder(SslMethod::dtls_client())?;
        builder.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        builder.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        let suites = config.suites().join(":");
        builder
            .set_cipher_list(&suites)
            .map_err(|e| DtlsClientError::CipherSuites(suites.clone(), e))?;
        // As on the server: the MTU is set per `Ssl` (the memory queue has none to query).
        builder.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        builder.set_read_ahead(true);

        let file = |path: &PathBuf| {
            let path = path.clone();
            move |source| DtlsClientError::File { path, source }
        };
        let psk = match &config.credentials {
            ClientCredentials::Psk(psk) => {
                check_psk(psk)?;
                Some(psk.clone())
            }
            ClientCredentials::Certificate {
                certificate,
                private_key,
            } => {
                builder
                    .set_certificate_chain_file(certificate)
                    .map_err(file(certificate))?;
                builder
                    .set_private_key_file(private_key, SslFiletype::PEM)
                    .map_err(file(private_key))?;
                builder.check_private_key().map_err(file(private_key))?;
                if config.ca_file.is_none() {
                    return Err(DtlsClientError::NoCaFile);
                }
                None
            }
        };
        // The PSK of each connection is in its own `Ssl`, so one context serves motes with
        // different identities.
        builder.set_psk_client_callback(move |ssl, _hint, identity_out, key_out| {
            let Some(psk) = ssl.ex_data(psk_index) else {
                // No PSK: 0 makes libssl end the handshake.
                return Ok(0);
            };
            let id = psk.identity.as_bytes();
            match (
                identity_out.get_mut(..=id.len()),
                key_out.get_mut(..psk.key.len()),
            ) {
                (Some(identity_out), Some(key_slot)) => {
                    if let Some((last, head)) = identity_out.split_last_mut() {
                        head.copy_from_slice(id);
                        *last = 0;
                    }
                    key_slot.copy_from_slice(&psk.key);
                    Ok(psk.key.len())
                }
                _ => Ok(0),
            }
        });
        match &config.ca_file {
            Some(ca) => {
                builder.set_ca_file(ca).map_err(file(ca))?;
                builder.set_verify(SslVerifyMode::PEER);
            }
            // PSK suites only (a certificate without a CA was refused above): no certificate
            // is ever presented.
            None => builder.set_verify(SslVerifyMode::NONE),
        }
        Ok(DtlsClientContext {
            context: builder.build(),
            psk_index,
            psk,
            server_name: config.server_name.clone(),
            mtu: config.mtu,
            handshake_timeout: config.handshake_timeout,
            engine: config.engine,
            suites: config.suites(),
        })
    }

    /// Starts a connection with the context's credentials: the ClientHello is ready in
    /// [`DtlsClient::poll_transmit`].
    pub fn connect(&self, now: Instant) -> Result<DtlsClient, DtlsClientError> {
        self.start(now, self.psk.clone())
    }

    /// Starts a connection with another PSK identity and key (a bench mote of its own).
    pub fn connect_as(&self, now: Instant, psk: ClientPsk) -> Result<DtlsClient, DtlsClientError> {
        check_psk(&psk)?;
        self.start(now, Some(psk))
    }

    fn start(&self, now: Instant, psk: Option<ClientPsk>) -> Result<DtlsClient, DtlsClientError> {
        let state = State::Handshake {
            deadline: now + self.handshake_timeout,
            retransmit_at: None,
            answered: false,
        };
        if let (ClientEngine::MbedTls, Some(psk)) = (self.engine, &psk) {
            return self.start_mbedtls(now, psk, state);
        }
        let mut ssl = Ssl::new(&self.context)?;
        ssl.set_mtu(self.mtu)?;
        if let Some(psk) = psk {
            ssl.set_ex_data(self.psk_index, psk);
        }
        if let Some(name) = &self.server_name {
            let bad = |e| DtlsClientError::ServerName(name.clone(), e);
            match name.parse::<IpAddr>() {
                Ok(ip) => ssl.param_mut().set_ip(ip).map_err(bad)?,
                Err(_) => {
                    ssl.param_mut().set_host(name).map_err(bad)?;
                    ssl.set_hostname(name).map_err(bad)?;
                }
            }
        }
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, Queue::default())?;
        let mut client = DtlsClient {
            backend: Backend::OpenSsl(Box::new(stream)),
            state,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            read_buf: vec![0u8; 18 * 1024],
        };
        client.drive(now);
        Ok(client)
    }

    #[cfg(feature = "dtls-mbedtls")]
    fn start_mbedtls(
        &self,
        now: Instant,
        psk: &ClientPsk,
        state: State,
    ) -> Result<DtlsClient, DtlsClientError> {
        let mbed = |e: DtlsError| DtlsClientError::MbedTls(e.to_string());
        let mtu = u16::try_from(self.mtu).unwrap_or(u16::MAX);
        let mut client =
            MbedtlsClient::psk(&psk.identity, &psk.key, &self.suites, false, mtu).map_err(mbed)?;
        client.start(now).map_err(mbed)?;
        let mut client = DtlsClient {
            backend: Backend::MbedTls(Box::new(client)),
            state,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            read_buf: Vec::new(),
        };
        client.after_mbedtls(now, Ok(()));
        Ok(client)
    }

    #[cfg(not(feature = "dtls-mbedtls"))]
    fn start_mbedtls(
        &self,
        _now: Instant,
        _psk: &ClientPsk,
        _state: State,
    ) -> Result<DtlsClient, DtlsClientError> {
        Err(DtlsClientError::MbedTls(
            "this build has no Mbed TLS (built without the dtls-mbedtls feature)".into(),
        ))
    }
}

/// The library under one connection.
enum Backend {
    OpenSsl(Box<SslStream<Queue>>),
    #[cfg(feature = "dtls-mbedtls")]
    MbedTls(Box<MbedtlsClient>),
}

enum State {
    Handshake {
        deadline: Instant,
        retransmit_at: Option<Instant>,
        answered: bool,
    },
    Established,
    Ended,
}

/// One DTLS connection to a gateway, no I/O of its own.
///
/// `now` must follow the real clock: libssl times its flight retransmissions itself.
pub struct DtlsClient {
    backend: Backend,
    state: State,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    read_buf: Vec<u8>,
}

impl std::fmt::Debug for DtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Handshake { .. } => "handshake",
            State::Established => "established",
            State::Ended => "ended",
        };
        f.debug_struct("DtlsClient").field("state", &state).finish()
    }
}

impl DtlsClient {
    /// Whether the handshake completed and the connection has not ended.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// Whether the connection failed or was closed.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// One datagram received from the gateway.
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) {
        if let State::Handshake { answered, .. } = &mut self.state {
            *answered = true;
        }
        if matches!(self.state, State::Ended) {
            return;
        }
        match &mut self.backend {
            Backend::OpenSsl(stream) => {
                stream.get_mut().incoming.push_back(datagram.to_vec());
                self.drive(now);
            }
            #[cfg(feature = "dtls-mbedtls")]
            Backend::MbedTls(client) => {
                let result = client.handle(now, datagram);
                self.after_mbedtls(now, result);
            }
        }
    }

    /// Acts on the deadlines: the handshake timeout and the library's retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Handshake {
            deadline,
            retransmit_at,
            answered,
        } = self.state
        else {
            return;
        };
        if now >= deadline {
            self.fail(ClientFailure::HandshakeTimeout { answered });
        } else if retransmit_at.is_some_and(|at| now >= at) {
            match &mut self.backend {
                Backend::OpenSsl(stream) => {
                    if handle_retransmit(stream.ssl()).is_err() {
                        self.fail(ClientFailure::HandshakeTimeout { answered });
                    } else {
                        self.flush();
                        self.schedule_retransmit(now);
                    }
                }
                #[cfg(feature = "dtls-mbedtls")]
                Backend::MbedTls(client) => {
                    let result = client.handle_timeout(now);
                    self.after_mbedtls(now, result);
                }
            }
        }
    }

    /// The earliest deadline [`handle_timeout`](Self::handle_timeout) should be called at;
    /// `None` once the handshake is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake {
                deadline,
                retransmit_at,
                ..
            } => Some(retransmit_at.map_or(deadline, |at| at.min(deadline))),
            _ => None,
        }
    }

    /// The next datagram to send to the gateway.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Encrypts one application datagram for the gateway.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), DtlsClientError> {
        if !self.is_established() {
            return Err(DtlsClientError::NotConnected);
        }
        let written = match &mut self.backend {
            Backend::OpenSsl(stream) => stream.ssl_write(plaintext).map(drop).map_err(|e| {
                drop(ErrorStack::get());
                e.to_string()
            }),
            #[cfg(feature = "dtls-mbedtls")]
            Backend::MbedTls(client) => client.send(plaintext).map_err(|e| e.to_string()),
        };
        match written {
            Ok(()) => {
                self.flush();
                Ok(())
            }
            Err(why) => {
                self.fail(ClientFailure::Connection(why.clone()));
                Err(DtlsClientError::Write(why))
            }
        }
    }

    /// Sends close_notify (best effort) and ends the connection. No event follows.
    pub fn close(&mut self) {
        if self.is_established() {
            match &mut self.backend {
                Backend::OpenSsl(stream) => {
                    if stream.shutdown().is_err() {
                        drop(ErrorStack::get());
                    }
                }
                #[cfg(feature = "dtls-mbedtls")]
                Backend::MbedTls(client) => client.close(),
            }
        }
        self.flush();
        self.state = State::Ended;
    }

    fn fail(&mut self, failure: ClientFailure) {
        self.flush();
        self.state = State::Ended;
        self.events.push_back(ClientEvent::Failed(failure));
    }

    fn flush(&mut self) {
        match &mut self.backend {
            Backend::OpenSsl(stream) => self.transmits.extend(stream.get_mut().outgoing.drain(..)),
            #[cfg(feature = "dtls-mbedtls")]
            Backend::MbedTls(client) => self.transmits.extend(client.take_transmits()),
        }
    }

    fn schedule_retransmit(&mut self, now: Instant) {
        let left = match &self.backend {
            Backend::OpenSsl(stream) => retransmit_in(stream.ssl()),
            #[cfg(feature = "dtls-mbedtls")]
            Backend::MbedTls(client) => client.poll_timeout(),
        };
        if let State::Handshake { retransmit_at, .. } = &mut self.state {
            *retransmit_at = left.map(|d| now + d);
        }
    }

    /// What a call into the Mbed TLS client did, turned into this connection's state,
    /// events and datagrams.
    #[cfg(feature = "dtls-mbedtls")]
    fn after_mbedtls(&mut self, now: Instant, result: Result<(), DtlsError>) {
        let Backend::MbedTls(client) = &mut self.backend else {
            return;
        };
        let established = client.is_established();
        // Asked of Mbed TLS once, when the handshake completes.
        let cipher = match self.state {
            State::Handshake { .. } if established => client.cipher().unwrap_or_default(),
            _ => "",
        };
        let closed = client.is_closed();
        let received = client.take_received();
        if let State::Handshake { .. } = self.state {
            match (&result, established) {
                (Err(e), _) => {
                    let text = e.to_string();
                    // Mbed TLS does not say which alert ended it: only a Finished of the
                    // gateway's that failed to authenticate here is known to be the key.
                    self.fail(if text.starts_with("invalid MAC") {
                        ClientFailure::KeyRefused(text)
                    } else {
                        ClientFailure::Handshake(text)
                    });
                    return;
                }
                (Ok(()), true) => {
                    self.state = State::Established;
                    self.events.push_back(ClientEvent::Connected {
                        cipher: cipher.to_owned(),
                    });
                }
                (Ok(()), false) => {
                    self.flush();
                    self.schedule_retransmit(now);
                    return;
                }
            }
        }
        self.events
            .extend(received.into_iter().map(ClientEvent::Datagram));
        if let Err(e) = result {
            self.fail(ClientFailure::Connection(e.to_string()));
            return;
        }
        if closed && self.is_established() {
            self.flush();
            self.state = State::Ended;
            self.events.push_back(ClientEvent::Closed);
            return;
        }
        self.flush();
    }

    /// Runs libssl on what was fed: the handshake, then every queued record.
    #[cfg_attr(not(feature = "dtls-mbedtls"), allow(irrefutable_let_patterns))]
    fn drive(&mut self, now: Instant) {
        if let State::Handshake { .. } = self.state {
            let Backend::OpenSsl(stream) = &mut self.backend else {
                return;
            };
            match stream.do_handshake() {
                Ok(()) => {
                    let cipher = stream
                        .ssl()
                        .current_cipher()
                        .map(|c| c.name().to_owned())
                        .unwrap_or_default();
                    self.state = State::Established;
                    self.flush();
                    self.events.push_back(ClientEvent::Connected { cipher });
                }
                Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                    self.flush();
                    self.schedule_retransmit(now);
                    return;
                }
                Err(e) => {
                    let verify = stream.ssl().verify_result();
                    drop(ErrorStack::get());
                    let text = e.to_string();
                    self.fail(if verify != X509VerifyResult::OK {
                        ClientFailure::BadServerCertificate(verify.error_string().to_owned())
                    } else if text.contains("bad record mac") || text.contains("decrypt error") {
                        ClientFailure::KeyRefused(text)
                    } else {
                        ClientFailure::Handshake(text)
                    });
                    return;
                }
            }
        }
        while self.is_established() {
            let Backend::OpenSsl(stream) = &mut self.backend else {
                return;
            };
            match stream.ssl_read(&mut self.read_buf) {
                Ok(n) => {
                    let data = self
                        .read_buf
                        .get(..n)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    self.events.push_back(ClientEvent::Datagram(data));
                }
                Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                    break
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.flush();
                    self.state = State::Ended;
                    self.events.push_back(ClientEvent::Closed);
                }
                Err(e) => {
                    drop(ErrorStack::get());
                    self.fail(ClientFailure::Connection(e.to_string()));
                }
            }
        }
        self.flush();
    }
}
