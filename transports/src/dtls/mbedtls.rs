//! The DTLS engine on Mbed TLS 3.6 (feature `dtls-mbedtls`, through the raw bindings of
//! `mbedtls-rs-sys`), with the DTLS Connection ID (RFC 9146). Everything Mbed TLS-specific
//! lives here, behind the interface of `engine.rs`; the `unsafe` calls are in
//! `mbedtls_ffi.rs`, each proven sound there.
//!
//! How it is made sans-I/O: each `mbedtls_ssl_context` reads and writes an in-memory datagram
//! queue (its BIO callbacks), and its retransmission timer reads the time the endpoint hands
//! it (`set_now`), so the endpoint's clock drives the flights. One shared listener context
//! answers ClientHellos from peers without state: it is reset for each one, checks the cookie
//! (our own HMAC of the peer's address under a rotating secret: this build of Mbed TLS has no
//! clock for its own cookie module), and only a verified ClientHello turns it into a peer's
//! session, with a fresh random Connection ID.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine::{Failure, Listened, Step, CID_LEN};
use super::mbedtls_ffi::{self as ffi, Config, Context, Outcome, Role};
use super::{DtlsConfig, DtlsError, PskTable};

/// The cipher suites this engine knows, by their OpenSSL names (the configuration's) and
/// IANA numbers.
const SUITES: [(&str, i32); 4] = [
    ("PSK-AES128-CCM8", 0xC0A8),
    ("PSK-AES128-GCM-SHA256", 0x00A8),
    ("ECDHE-ECDSA-AES128-CCM8", 0xC0AE),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02B),
];

/// The IANA numbers of `names`, in order; an unknown name is an error that lists the known.
pub(super) fn suite_ids(names: &[String]) -> Result<Vec<i32>, DtlsError> {
    names
        .iter()
        .map(|name| {
            SUITES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    let known: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
                    DtlsError::CipherSuites(
                        names.join(":"),
                        format!(
                            "the mbedtls engine knows {name:?} not; it offers {}",
                            known.join(", ")
                        ),
                    )
                })
        })
        .collect()
}

/// The transport id of a peer (its address and port), which the cookie is bound to.
fn transport_id(peer: SocketAddr) -> Vec<u8> {
    let mut id = match peer.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    id.extend_from_slice(&peer.port().to_be_bytes());
    id
}

/// The context shared by every peer of one endpoint, and the stateless listener.
pub(super) struct Engine {
    config: Arc<Config>,
    mtu: u16,
    connection_id: bool,
    listener: Context,
}

impl Engine {
    /// Builds the configuration: DTLS 1.2 server, the configured suites, PSK and/or
    /// certificates, our cookie callbacks, the Connection ID when asked for.
    pub(super) fn new(config: &DtlsConfig, psk: PskTable) -> Result<Self, DtlsError> {
        let suites = suite_ids(&config.cipher_suites)?;
        let shared = Config::new(
            Role::Server,
            &suites,
            config.certificates.as_ref(),
            psk,
            config.connection_id.then_some(CID_LEN),
            config.handshake_timeout,
        )?;
        let shared = Arc::new(shared);
        let mtu = u16::try_from(config.mtu).unwrap_or(u16::MAX);
        let listener = Context::new(&shared, mtu)?;
        Ok(Engine {
            config: shared,
            mtu,
            connection_id: config.connection_id,
            listener,
        })
    }

    /// Replaces the PSK table; handshakes from now on use it, established sessions stay.
    pub(super) fn set_psk(&mut self, table: PskTable) {
        self.config.set_psk(table);
    }

    /// Starts a new cookie secret; the one before still verifies until the next rotation.
    pub(super) fn rotate_cookie_secret(&mut self) {
        self.config.rotate_cookie_secret();
    }

    /// Runs one datagram from a peer without state through the stateless listener.
    pub(super) fn listen(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Listened<Session>, DtlsError> {
        // Only a ClientHello of epoch 0 may start anything; the rest is not worth a reset.
        if !super::is_client_hello(datagram) {
            return Ok(Listened::Dropped);
        }
        let cid = if self.connection_id {
            let mut cid = [0u8; CID_LEN];
            ffi::fill_random(&mut cid);
            Some(cid)
        } else {
            None
        };
        let listener = &mut self.listener;
        if listener
            .reset_for(&transport_id(from), cid.as_ref())
            .is_err()
        {
            // A reset that fails leaves the context unusable: start a fresh one.
            self.listener = Context::new(&self.config, self.mtu)?;
            return Ok(Listened::Dropped);
        }
        let listener = &mut self.listener;
        listener.set_now(now);
        listener.feed(datagram);
        self.config.take_cookie_rejected();
        let result = listener.handshake();
        listener.take_output(out);
        let bad_cookie = self.config.take_cookie_rejected();
        // The PSK callback runs only in a later flight; whatever it left is no one's.
        let _ = self.config.take_psk_identity();
        match result {
            Outcome::HelloVerifyRequired => Ok(Listened::HelloVerify { bad_cookie }),
            // The cookie verified and the ServerHello flight is out (its timer runs): the
            // context is this peer's now.
            Outcome::WantRead if listener.timer_running() => {
                let fresh = Context::new(&self.config, self.mtu)?;
                let context = std::mem::replace(&mut self.listener, fresh);
                Ok(Listened::Verified(Session {
                    context,
                    identity: None,
                    cid: cid.filter(|_| self.connection_id),
                }))
            }
            _ => Ok(Listened::Dropped),
        }
    }
}

/// One peer's DTLS state, from the verified ClientHello on.
pub(super) struct Session {
    context: Context,
    /// The PSK identity the client named: `Ok` when the table held it.
    identity: Option<Result<Arc<str>, ()>>,
    /// The Connection ID we gave the peer (it is used only if the peer negotiated it).
    cid: Option<[u8; CID_LEN]>,
}

impl Session {
    /// The time the retransmission timer reads.
    pub(super) fn set_now(&mut self, now: Instant) {
        self.context.set_now(now);
    }

    /// Queues one datagram from the peer.
    pub(super) fn feed(&mut self, datagram: &[u8]) {
        self.context.feed(datagram);
    }

    /// Moves the handshake on as far as the queued datagrams allow.
    pub(super) fn handshake(&mut self) -> Step {
        let outcome = self.context.handshake();
        if let Some(named) = self.context.config().take_psk_identity() {
            self.identity = Some(named);
        }
        match outcome {
            Outcome::Done(_) => Step::Established {
                identity: self.identity_of(),
            },
            Outcome::WantRead => Step::Pending,
            Outcome::Error(code) => Step::Failed(self.failure(code)),
            Outcome::HelloVerifyRequired | Outcome::CloseNotify => {
                Step::Failed(Failure::Other("unexpected ClientHello".into()))
            }
        }
    }

    fn failure(&self, code: i32) -> Failure {
        if code == ffi::ERR_UNKNOWN_IDENTITY || matches!(self.identity, Some(Err(()))) {
            Failure::UnknownPskIdentity
        } else if code == ffi::ERR_X509_CERT_VERIFY_FAILED {
            Failure::BadCertificate(self.context.verify_failure())
        } else if code == ffi::ERR_INVALID_MAC && matches!(self.identity, Some(Ok(_))) {
            Failure::WrongKey
        } else {
            Failure::Other(ffi::error_text(code))
        }
    }

    /// The PSK identity, else the certificate's CN, else its first DNS name.
    fn identity_of(&self) -> Result<Arc<str>, String> {
        if let Some(Ok(identity)) = &self.identity {
            return Ok(Arc::clone(identity));
        }
        self.context
            .peer_certificate_name()
            .map(Arc::from)
            .ok_or_else(|| {
                "neither a PSK identity nor a client certificate with a CN or DNS name".to_owned()
            })
    }

    /// Reads the next decrypted datagram of an established connection into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Step {
        match self.context.read(buf) {
            Outcome::Done(n) => Step::Data(buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
            Outcome::WantRead => Step::Pending,
            Outcome::CloseNotify => Step::Closed,
            Outcome::HelloVerifyRequired => Step::Pending,
            Outcome::Error(code) => Step::Failed(Failure::Other(ffi::error_text(code))),
        }
    }

    /// Whether the peer's PSK identity was one the table holds.
    pub(super) fn knew_psk_identity(&self) -> bool {
        matches!(self.identity, Some(Ok(_)))
    }

    /// Encrypts one application datagram.
    pub(super) fn write(&mut self, plaintext: &[u8]) -> Result<(), String> {
        self.context.write(plaintext)
    }

    /// Sends close_notify (best effort).
    pub(super) fn close(&mut self) {
        self.context.close_notify();
    }

    /// The datagrams Mbed TLS wrote since the last call.
    pub(super) fn take_output(&mut self, out: &mut Vec<Vec<u8>>) {
        self.context.take_output(out);
    }

    /// Time left until the flight is retransmitted, if one is pending.
    pub(super) fn retransmit_in(&self) -> Option<Duration> {
        self.context.timer_left()
    }

    /// Lets Mbed TLS retransmit its flight; `Err` when it gave up (the timeout doubled past
    /// its maximum) or failed.
    pub(super) fn handle_retransmit(&mut self) -> Result<(), ()> {
        match self.context.handshake() {
            Outcome::WantRead | Outcome::Done(_) => Ok(()),
            _ => Err(()),
        }
    }

    /// Our Connection ID, once the peer negotiated it.
    pub(super) fn connection_id(&self) -> Option<[u8; CID_LEN]> {
        self.cid.filter(|_| self.context.cid_negotiated())
    }

    /// Whether the first record authenticates, was not seen, and is newer than any record
    /// received so far on the session (RFC 9146 §6).
    pub(super) fn may_move(&mut self, datagram: &[u8]) -> bool {
        self.context.record_is_authentic_and_newest(datagram)
    }
}

/// A DTLS 1.2 client on the same engine, sans-I/O: a mote (or a test) that speaks PSK with
/// the Connection ID. Fed the datagrams its socket received and the time; polled for the
/// datagrams to send and the plaintexts received.
pub struct MbedtlsClient {
    context: Context,
    received: Vec<Vec<u8>>,
    established: bool,
    /// The server sent close_notify.
    closed: bool,
    read_buf: Vec<u8>,
}

impl std::fmt::Debug for MbedtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbedtlsClient")
            .field("established", &self.established)
            .finish()
    }
}

impl MbedtlsClient {
    /// A PSK client offering `suites` (OpenSSL names); with `connection_id` it asks the
    /// server for a Connection ID (and offers an empty one of its own). Call
    /// [`start`](Self::start) to send the ClientHello.
    pub fn psk(
        identity: &str,
        key: &[u8],
        suites: &[String],
        connection_id: bool,
        mtu: u16,
    ) -> Result<Self, DtlsError> {
        let ids = suite_ids(suites)?;
        let config = Config::new_psk_client(&ids, identity, key, connection_id)?;
        let context = Context::new(&Arc::new(config), mtu)?;
        if connection_id {
            context.request_cid()?;
        }
        Ok(MbedtlsClient {
            context,
            received: Vec::new(),
            established: false,
            closed: false,
            read_buf: vec![0u8; 4096],
        })
    }

    /// Sends the ClientHello.
    pub fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        self.context.set_now(now);
        self.step()
    }

    /// One datagram from the server.
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        self.context.set_now(now);
        self.context.feed(datagram);
        self.step()
    }

    /// Acts on the retransmission timer.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        self.context.set_now(now);
        if self.established {
            Ok(())
        } else {
            self.step()
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.context.timer_left()
    }

    fn step(&mut self) -> Result<(), DtlsError> {
        if self.closed {
            return Ok(());
        }
        if !self.established {
            match self.context.handshake() {
                Outcome::Done(_) => self.established = true,
                Outcome::WantRead => return Ok(()),
                Outcome::Error(code) => return Err(DtlsError::Engine(ffi::error_text(code))),
                other => return Err(DtlsError::Engine(format!("handshake: {other:?}"))),
            }
        }
        loop {
            match self.context.read(&mut self.read_buf) {
                Outcome::Done(n) => self.received.push(
                    self.read_buf
                        .get(..n)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                ),
                Outcome::WantRead => return Ok(()),
                Outcome::CloseNotify => {
                    self.closed = true;
                    return Ok(());
                }
                Outcome::Error(code) => return Err(DtlsError::Engine(ffi::error_text(code))),
                other => return Err(DtlsError::Engine(format!("read: {other:?}"))),
            }
        }
    }

    /// Whether the server closed the connection (close_notify).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The negotiated cipher suite's OpenSSL name, once established.
    pub fn cipher(&self) -> Option<&'static str> {
        let id = self.context.ciphersuite_id();
        SUITES.iter().find(|(_, n)| *n == id).map(|(name, _)| *name)
    }

    /// Whether the handshake completed.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Whether the server agreed to a Connection ID (RFC 9146).
    pub fn connection_id_negotiated(&self) -> bool {
        self.context.cid_negotiated()
    }

    /// Encrypts one datagram for the server.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), DtlsError> {
        self.context.write(plaintext).map_err(DtlsError::Engine)
    }

    /// Sends close_notify (an alert record; with a CID, of content type 25 like data).
    pub fn close(&mut self) {
        self.context.close_notify();
    }

    /// The datagrams to send, oldest first.
    pub fn take_transmits(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.context.take_output(&mut out);
        out
    }

    /// The plaintexts received, oldest first.
    pub fn take_received(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.received)
    }
}
