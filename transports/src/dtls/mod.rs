//! DTLS 1.2 server side of a UDP link, as a sans-I/O endpoint (feature `dtls`).
//!
//! [`DtlsEndpoint`] is fed the datagrams a UDP socket received (`handle(now, from, bytes)`)
//! and the time (`handle_timeout(now)`), and polled for datagrams to send
//! ([`poll_transmit`](DtlsEndpoint::poll_transmit)), for what happened
//! ([`poll_event`](DtlsEndpoint::poll_event): decrypted application datagrams with the peer's
//! authenticated identity, lost and closed connections, refusals) and for its next deadline
//! ([`poll_timeout`](DtlsEndpoint::poll_timeout)). The runtime hands the gateway core the
//! peer and its identity; keys and records never leave this module.
//!
//! Defences, in the order a datagram meets them:
//! - a peer without state goes through a stateless cookie exchange (HelloVerifyRequest, the
//!   cookie an HMAC of its address under a rotating secret): a spoofed source costs one small
//!   answer and no memory;
//! - a peer whose cookie verified gets a handshake slot only while the handshakes in progress
//!   are under their caps (in total and per source IP), and loses it at the handshake deadline;
//! - an established connection that stays silent past the idle timeout is dropped (long by
//!   default: a sleeping mote keeps its session across its sleep).
//!
//! Every refusal is counted in [`DtlsStats`].
//!
//! Two engines do the cryptography, chosen by [`DtlsConfig::engine`]: libssl (`openssl.rs`)
//! and Mbed TLS 3.6 (`mbedtls.rs`, feature `dtls-mbedtls`), behind the interface of
//! `engine.rs`. Only Mbed TLS has the DTLS Connection ID (RFC 9146): with
//! [`DtlsConfig::connection_id`] each session gets a random 8-byte CID, records of content
//! type 25 are matched to their session by it, and a session follows its peer to a new
//! address (a NAT that rebound the mote's port) on an authenticated record of application
//! data newer than any before it ([`DtlsEvent::Moved`]). libssl has no CID: there a mote whose NAT rebinds
//! handshakes again.
//!
//! The client side, for the `mqtt-sn` tool and its bench motes, is [`DtlsClient`]
//! (`client.rs`): libssl over the same in-memory queue, with the retransmission calls of
//! `openssl.rs`.

mod client;
mod engine;
#[cfg(feature = "dtls-mbedtls")]
mod mbedtls;
#[cfg(feature = "dtls-mbedtls")]
mod mbedtls_aes;
#[cfg(feature = "dtls-mbedtls")]
mod mbedtls_ffi;
mod openssl;

#[cfg(feature = "dtls-mbedtls")]
pub use self::mbedtls::MbedtlsClient;

pub use self::client::{
    certificate_identity, read_psk_file, ClientCredentials, ClientEngine, ClientEvent,
    ClientFailure, ClientPsk, DtlsClient, DtlsClientConfig, DtlsClientContext, DtlsClientError,
};

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::engine::{record_cid, Engine, Failure, Listened, Session, Step, CID_LEN};

/// The cipher suites offered by default (OpenSSL names): the RFC 7925 IoT profile's PSK and
/// ECDSA suites with CCM_8, and their GCM counterparts.
pub const DEFAULT_CIPHER_SUITES: [&str; 4] = [
    "PSK-AES128-CCM8",
    "PSK-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
];

/// Longest PSK accepted from the file, in bytes (RFC 4279 allows more; motes use 16 or 32).
pub const MAX_PSK_LEN: usize = 64;
/// Longest PSK identity accepted from the file, in bytes (libssl's own bound is 128).
pub const MAX_IDENTITY_LEN: usize = 128;

/// Errors from building an endpoint, reading a PSK file, or sending.
#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line of a PSK file is not `identity:hexkey`.
    #[error("PSK file line {line}: {reason}")]
    PskLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine accepted none of (or not all of) the configured cipher suites.
    #[error("cipher suites {0:?} not usable: {1}")]
    CipherSuites(String, String),
    /// A certificate, key or CA file was rejected by the engine.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The engine's reason.
        reason: String,
    },
    /// The configuration asks for what the engine (or this build) cannot do; the text says
    /// what to change.
    #[error("{0}")]
    Unsupported(String),
    /// A failure inside the Mbed TLS engine (out of memory, no randomness, a broken build).
    #[error("mbedtls: {0}")]
    Engine(String),
    /// Any other libssl failure (out of memory, a broken installation).
    #[error("libssl: {0}")]
    OpenSsl(#[from] ::openssl::error::ErrorStack),
    /// `send` to a peer without an established connection.
    #[error("no established DTLS connection with {0}")]
    NotConnected(SocketAddr),
    /// libssl could not encrypt the datagram (the connection is dropped).
    #[error("DTLS write to {peer} failed: {reason}")]
    Write {
        /// The peer.
        peer: SocketAddr,
        /// libssl's reason.
        reason: String,
    },
}

/// Pre-shared keys by identity. `Debug` never shows a key.
#[derive(Clone, Default)]
pub struct PskTable {
    keys: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("PskTable")
            .field("identities", &ids)
            .finish()
    }
}

/// A PSK file read from disk, with a warning when its permissions expose the keys.
#[derive(Debug)]
pub struct LoadedPsk {
    /// The keys.
    pub table: PskTable,
    /// Set when group or others may read or write the file (the fix is in the text).
    pub warning: Option<String>,
}

impl PskTable {
    /// An empty table (certificates only, or keys added with [`insert`](Self::insert)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one identity's key.
    pub fn insert(&mut self, identity: impl Into<String>, key: Vec<u8>) {
        self.keys.insert(identity.into(), key);
    }

    /// The key for `identity`.
    pub fn key(&self, identity: &str) -> Option<&[u8]> {
        self.keys.get(identity).map(Vec::as_slice)
    }

    /// How many identities the table holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a PSK file's text: one `identity:hexkey` per line; blank lines and lines
    /// starting with `#` are skipped. The key is the text after the last `:`, so an identity
    /// may itself contain colons.
    pub fn parse(text: &str) -> Result<Self, DtlsError> {
        let mut table = PskTable::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let bad = |reason: String| DtlsError::PskLine { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (identity, hex) = trimmed
                .rsplit_once(':')
                .ok_or_else(|| bad("expected identity:hexkey".into()))?;
            let identity = identity.trim();
            if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
                return Err(bad(format!(
                    "identity must be 1 to {MAX_IDENTITY_LEN} bytes"
                )));
            }
            let key = parse_hex(hex.trim()).map_err(bad)?;
            if key.is_empty() || key.len() > MAX_PSK_LEN {
                return Err(bad(format!("key must be 1 to {MAX_PSK_LEN} bytes")));
            }
            if table.keys.contains_key(identity) {
                return Err(bad(format!("identity {identity:?} appears twice")));
            }
            table.insert(identity, key);
        }
        Ok(table)
    }

    /// Reads and parses a PSK file, and checks who else may read it.
    pub fn load(path: &Path) -> Result<LoadedPsk, DtlsError> {
        let io = |source| DtlsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let metadata = std::fs::metadata(path).map_err(io)?;
        Ok(LoadedPsk {
            table: PskTable::parse(&text)?,
            warning: permission_warning(path, &metadata),
        })
    }
}

#[cfg(unix)]
fn permission_warning(path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    // Keys readable by others are keys others have; writable lets them add an identity.
    (mode & 0o066 != 0).then(|| {
        format!(
            "PSK file {} has mode {mode:03o}: group or others can read or write the keys \
             (fix: chmod 600 {})",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path, _metadata: &std::fs::Metadata) -> Option<String> {
    None
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("hex key has an odd number of digits".into());
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            match pair {
                [hi, lo] => match (digit(*hi), digit(*lo)) {
                    (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                    _ => Err("key is not hex".to_owned()),
                },
                _ => Err("key is not hex".to_owned()),
            }
        })
        .collect()
}

/// The files for certificate suites.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// The gateway's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// The gateway's private key (PEM).
    pub private_key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// The library that does the DTLS of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsEngine {
    /// libssl through rust-openssl (the system's OpenSSL 3). No Connection ID.
    OpenSsl,
    /// Mbed TLS 3.6 LTS, built in (feature `dtls-mbedtls`). Has the Connection ID.
    MbedTls,
}

impl DtlsEngine {
    /// The engine used when the configuration names none: Mbed TLS when it is built in.
    pub const fn default_engine() -> DtlsEngine {
        if cfg!(feature = "dtls-mbedtls") {
            DtlsEngine::MbedTls
        } else {
            DtlsEngine::OpenSsl
        }
    }
}

/// Options of one DTLS endpoint.
#[derive(Debug, Clone)]
pub struct DtlsConfig {
    /// The library doing the DTLS.
    pub engine: DtlsEngine,
    /// Give each session a Connection ID (RFC 9146), so a mote keeps its session when its
    /// address changes (NAT rebinding). Needs [`DtlsEngine::MbedTls`].
    pub connection_id: bool,
    /// Cipher suites in OpenSSL names, in preference order.
    pub cipher_suites: Vec<String>,
    /// Certificate and CA files; `None` serves PSK suites only.
    pub certificates: Option<CertificateFiles>,
    /// Largest datagram libssl may send (path MTU minus IP/UDP headers).
    pub mtu: u32,
    /// Handshakes in progress, all sources together.
    pub max_handshakes: usize,
    /// Handshakes in progress from one IP address.
    pub max_handshakes_per_ip: usize,
    /// Connections (handshaking and established) in total.
    pub max_connections: usize,
    /// A handshake not finished this long after its cookie verified is dropped.
    pub handshake_timeout: Duration,
    /// An established connection silent this long is dropped as lost. Long by default: a
    /// sleeping mote must find its session when it wakes.
    pub idle_timeout: Duration,
    /// How often the cookie secret changes (a cookie stays valid up to twice this).
    pub cookie_rotation: Duration,
    /// Events waiting to be polled; more are dropped and counted.
    pub max_pending_events: usize,
    /// Datagrams waiting to be sent; more are dropped and counted (DTLS retransmits).
    pub max_pending_transmits: usize,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            engine: DtlsEngine::default_engine(),
            connection_id: false,
            cipher_suites: DEFAULT_CIPHER_SUITES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            certificates: None,
            mtu: 1200,
            max_handshakes: 256,
            max_handshakes_per_ip: 8,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(24 * 60 * 60),
            cookie_rotation: Duration::from_secs(60),
            max_pending_events: 4096,
            max_pending_transmits: 4096,
        }
    }
}

/// A datagram to send on the UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The DTLS records.
    pub data: Vec<u8>,
}

/// What happened on the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// A handshake completed; `from` is now `identity`.
    Connected {
        /// The peer.
        from: SocketAddr,
        /// Its authenticated identity (PSK identity, or certificate CN / first DNS name).
        identity: Arc<str>,
    },
    /// A decrypted application datagram.
    Datagram {
        /// The peer.
        from: SocketAddr,
        /// Its authenticated identity.
        identity: Arc<str>,
        /// The plaintext.
        data: Vec<u8>,
    },
    /// An established connection ended other than by close_notify: the mote is lost.
    Lost {
        /// The peer.
        from: SocketAddr,
        /// Its identity.
        identity: Arc<str>,
        /// Why.
        reason: LostReason,
    },
    /// A session with a Connection ID follows its peer to a new address: a record carrying
    /// its CID came from `to`, authenticated, was newer than any before it (RFC 9146 §6) and
    /// held application data.
    /// Datagrams to the peer go to `to` from now on.
    Moved {
        /// The address the session had.
        from: SocketAddr,
        /// The address it has now.
        to: SocketAddr,
        /// Its identity.
        identity: Arc<str>,
    },
    /// The peer closed the connection cleanly (close_notify).
    Closed {
        /// The peer.
        from: SocketAddr,
        /// Its identity.
        identity: Arc<str>,
    },
    /// A handshake was refused after the cookie exchange (stateless refusals before it are
    /// only counted, so a flood cannot fill the event queue).
    Refused {
        /// The peer.
        from: SocketAddr,
        /// Why.
        reason: RefusalReason,
    },
}

/// Why an established connection was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// A fatal alert or error on the connection (libssl's text).
    Alert(String),
    /// Silent for longer than the idle timeout.
    IdleTimeout,
    /// The same address started a new handshake (a rebooted mote): the old connection is gone.
    NewHandshake,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// Too many handshakes in progress.
    HandshakeCap,
    /// Too many handshakes in progress from this IP address.
    HandshakeCapPerIp,
    /// Too many connections.
    ConnectionCap,
    /// Not finished within the handshake timeout.
    HandshakeTimeout,
    /// The PSK identity was known but the handshake never completed: the client's key is
    /// almost certainly wrong (DTLS drops records that fail authentication silently).
    PskMismatch,
    /// The client named a PSK identity the table does not hold.
    UnknownPskIdentity,
    /// The client certificate did not verify against the CA (libssl's reason).
    BadCertificate(String),
    /// The handshake completed but yielded no usable identity.
    NoIdentity(String),
    /// Any other handshake failure (an alert, a protocol error; libssl's text).
    HandshakeFailed(String),
}

/// Counters of one endpoint. Each refusal and each discarded datagram has its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DtlsStats {
    /// Datagrams handed to `handle`.
    pub datagrams_received: u64,
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// HelloVerifyRequests sent (stateless).
    pub hello_verify_sent: u64,
    /// ClientHellos whose cookie did not verify (answered with a fresh HelloVerifyRequest).
    pub bad_cookie: u64,
    /// Datagrams from peers without state that were not a ClientHello (garbage).
    pub garbage: u64,
    /// Handshakes refused at the total cap.
    pub handshake_cap: u64,
    /// Handshakes refused at the per-IP cap.
    pub handshake_cap_per_ip: u64,
    /// Handshakes refused at the connection cap.
    pub connection_cap: u64,
    /// Handshakes dropped at the deadline (`psk_mismatch` not included).
    pub handshake_timeouts: u64,
    /// Handshakes that timed out after naming a known PSK identity (a wrong key).
    pub psk_mismatch: u64,
    /// Handshakes naming an unknown PSK identity.
    pub unknown_psk_identity: u64,
    /// Client certificates that did not verify.
    pub bad_certificate: u64,
    /// Handshakes that completed without a usable identity.
    pub no_identity: u64,
    /// Other handshake failures.
    pub handshake_failed: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// Established connections ended by an alert or error.
    pub alerts: u64,
    /// Established connections dropped after the idle timeout.
    pub idle_timeouts: u64,
    /// Established connections replaced by a new handshake from the same address.
    pub replaced: u64,
    /// Clean closes (close_notify) by peers.
    pub closed: u64,
    /// Datagrams on an established connection that produced nothing: records that failed
    /// authentication, truncated or replayed records, stray handshake retransmissions.
    pub records_discarded: u64,
    /// Sessions that followed their peer to a new address (Connection ID, RFC 9146 §6).
    pub cid_moves: u64,
    /// Records carrying a known Connection ID from another address that did not move the
    /// session (not authentic, replayed, older than the newest seen, or the address is
    /// another session's): dropped.
    pub cid_moves_refused: u64,
    /// Events dropped at `max_pending_events`.
    pub events_dropped: u64,
    /// Datagrams dropped at `max_pending_transmits`.
    pub transmits_dropped: u64,
}

enum Phase {
    Handshake {
        started: Instant,
        retransmit_at: Option<Instant>,
    },
    Established {
        identity: Arc<str>,
        last_seen: Instant,
    },
}

impl Phase {
    /// An established connection's peer was heard from at `now` (a decrypted datagram): it
    /// is not idle, and here is its identity. `None` during the handshake.
    fn heard(&mut self, now: Instant) -> Option<Arc<str>> {
        match self {
            Phase::Established {
                identity,
                last_seen,
            } => {
                *last_seen = now;
                Some(Arc::clone(identity))
            }
            Phase::Handshake { .. } => None,
        }
    }
}

struct Peer {
    session: Session,
    phase: Phase,
}

/// A DTLS 1.2 server endpoint: many peers on one UDP socket, no I/O of its own.
///
/// `now` must follow the real clock: libssl times its flight retransmissions itself, and the
/// endpoint only asks it how long is left.
pub struct DtlsEndpoint {
    config: DtlsConfig,
    engine: Engine,
    peers: HashMap<SocketAddr, Peer>,
    /// Established sessions with a Connection ID: where each is now.
    by_cid: HashMap<[u8; CID_LEN], SocketAddr>,
    handshakes: usize,
    handshakes_per_ip: HashMap<IpAddr, usize>,
    outputs: Outputs,
    stats: DtlsStats,
    next_rotation: Instant,
    next_sweep: Instant,
    read_buf: Vec<u8>,
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("peers", &self.peers.len())
            .field("handshakes", &self.handshakes)
            .field("stats", &self.stats)
            .finish()
    }
}

impl DtlsEndpoint {
    /// Builds an endpoint; fails when libssl rejects the suites or a certificate file.
    pub fn new(now: Instant, config: DtlsConfig, psk: PskTable) -> Result<Self, DtlsError> {
        let engine = Engine::new(&config, psk)?;
        let outputs = Outputs {
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            out: Vec::new(),
            max_transmits: config.max_pending_transmits,
            max_events: config.max_pending_events,
        };
        Ok(DtlsEndpoint {
            next_rotation: now + config.cookie_rotation,
            next_sweep: now + sweep_interval(config.idle_timeout),
            config,
            engine,
            peers: HashMap::new(),
            by_cid: HashMap::new(),
            handshakes: 0,
            handshakes_per_ip: HashMap::new(),
            outputs,
            stats: DtlsStats::default(),
            // Larger than any record libssl accepts (2^14 plus expansion).
            read_buf: vec![0u8; 18 * 1024],
        })
    }

    /// Replaces the PSK table (a reloaded file). Handshakes from now on use the new keys;
    /// established connections keep theirs.
    pub fn set_psk(&mut self, table: PskTable) {
        self.engine.set_psk(table);
    }

    /// The counters.
    pub fn stats(&self) -> &DtlsStats {
        &self.stats
    }

    /// Established connections.
    pub fn connections(&self) -> usize {
        self.peers.len() - self.handshakes
    }

    /// Handshakes in progress (peers whose cookie verified).
    pub fn handshakes(&self) -> usize {
        self.handshakes
    }

    /// The authenticated identity of an established peer.
    pub fn identity(&self, peer: SocketAddr) -> Option<&Arc<str>> {
        match self.peers.get(&peer).map(|p| &p.phase) {
            Some(Phase::Established { identity, .. }) => Some(identity),
            _ => None,
        }
    }

    /// One datagram received from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams_received += 1;
        if let Some(at) = record_cid(datagram).and_then(|cid| self.by_cid.get(&cid).copied()) {
            if at != from {
                self.follow(now, at, from, datagram);
                return;
            }
        }
        let Some(peer) = self.peers.get_mut(&from) else {
            self.listen(now, from, datagram);
            return;
        };
        let established = matches!(peer.phase, Phase::Established { .. });
        if established && is_client_hello(datagram) {
            // A mote that rebooted starts over from the same address: answer statelessly,
            // and replace the old connection only once the new cookie verifies.
            self.listen(now, from, datagram);
            return;
        }
        peer.session.set_now(now);
        peer.session.feed(datagram);
        if !established {
            self.drive(now, from, None);
            return;
        }
        // The steady state, records of an established connection: read with this one lookup
        // of the peer; only what is not application data (an alert, a close_notify) goes the
        // general way, through `drive`.
        let mut produced = false;
        let step = loop {
            match peer.session.read(&mut self.read_buf) {
                Step::Data(data) => {
                    produced = true;
                    if let Some(identity) = peer.phase.heard(now) {
                        let event = DtlsEvent::Datagram {
                            from,
                            identity,
                            data,
                        };
                        self.outputs.event(event, &mut self.stats);
                    }
                }
                other => break other,
            }
        };
        if let Step::Pending = step {
            peer.session.take_output(&mut self.outputs.out);
            produced |= self.outputs.queue_out(from, &mut self.stats);
            if !produced {
                self.stats.records_discarded += 1;
            }
        } else {
            self.drive(now, from, Some(step));
        }
    }

    /// A record with the Connection ID of the session at `at` came from `to`. The session
    /// moves there only if the record authenticates, is newer than any the session received
    /// (RFC 9146 §6), carries application data (a retransmitted handshake message or an alert
    /// moves nothing), and `to` is no other session's; otherwise the record is dropped, or
    /// (authentic but not data) processed where the session is, and counted.
    fn follow(&mut self, now: Instant, at: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let candidate = !self.peers.contains_key(&to)
            && self.peers.get_mut(&at).is_some_and(|peer| {
                matches!(peer.phase, Phase::Established { .. }) && peer.session.may_move(datagram)
            });
        let step = match self.peers.get_mut(&at) {
            Some(peer) if candidate => {
                peer.session.set_now(now);
                peer.session.feed(datagram);
                peer.session.read(&mut self.read_buf)
            }
            _ => {
                self.stats.cid_moves_refused += 1;
                return;
            }
        };
        let moved = match step {
            Step::Data(_) => self.peers.remove(&at),
            _ => None,
        };
        let Some(peer) = moved else {
            self.stats.cid_moves_refused += 1;
            self.drive(now, at, Some(step));
            return;
        };
        let identity = match &peer.phase {
            Phase::Established { identity, .. } => Arc::clone(identity),
            Phase::Handshake { .. } => Arc::from(""),
        };
        if let Some(cid) = peer.session.connection_id() {
            self.by_cid.insert(cid, to);
        }
        self.peers.insert(to, peer);
        self.stats.cid_moves += 1;
        self.event(DtlsEvent::Moved {
            from: at,
            to,
            identity,
        });
        self.drive(now, to, Some(step));
    }

    /// Encrypts `plaintext` for an established peer and queues it.
    pub fn send(&mut self, to: SocketAddr, plaintext: &[u8]) -> Result<(), DtlsError> {
        let Some(peer) = self.peers.get_mut(&to) else {
            return Err(DtlsError::NotConnected(to));
        };
        let Phase::Established { identity, .. } = &peer.phase else {
            return Err(DtlsError::NotConnected(to));
        };
        match peer.session.write(plaintext) {
            Ok(()) => {
                // The peer is at hand: its records go to the queue without a second lookup.
                peer.session.take_output(&mut self.outputs.out);
                self.outputs.queue_out(to, &mut self.stats);
                Ok(())
            }
            Err(reason) => {
                let identity = Arc::clone(identity);
                self.remove(to);
                self.stats.alerts += 1;
                self.event(DtlsEvent::Lost {
                    from: to,
                    identity,
                    reason: LostReason::Alert(reason.clone()),
                });
                Err(DtlsError::Write { peer: to, reason })
            }
        }
    }

    /// Ends the connection with `peer` (close_notify, then forgets it). No event follows.
    pub fn close(&mut self, peer: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.session.close();
            self.flush(peer);
            self.remove(peer);
        }
    }

    /// Acts on deadlines: handshake timeouts, libssl's retransmissions, idle connections,
    /// the cookie secret's rotation.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_rotation {
            self.engine.rotate_cookie_secret();
            self.next_rotation = now + self.config.cookie_rotation;
        }

        let mut expired = Vec::new();
        let mut retransmit = Vec::new();
        // Only handshakes have these deadlines: with none in progress, no peer is visited.
        let peers = if self.handshakes > 0 {
            Some(&self.peers)
        } else {
            None
        };
        for (addr, peer) in peers.into_iter().flatten() {
            if let Phase::Handshake {
                started,
                retransmit_at,
            } = peer.phase
            {
                if now >= started + self.config.handshake_timeout {
                    expired.push((*addr, peer.session.knew_psk_identity()));
                } else if retransmit_at.is_some_and(|at| now >= at) {
                    retransmit.push(*addr);
                }
            }
        }
        for (addr, knew_identity) in expired {
            self.remove(addr);
            let reason = if knew_identity {
                self.stats.psk_mismatch += 1;
                RefusalReason::PskMismatch
            } else {
                self.stats.handshake_timeouts += 1;
                RefusalReason::HandshakeTimeout
            };
            self.event(DtlsEvent::Refused { from: addr, reason });
        }
        for addr in retransmit {
            let failed = match self.peers.get_mut(&addr) {
                Some(peer) => {
                    peer.session.set_now(now);
                    peer.session.handle_retransmit().is_err()
                }
                None => continue,
            };
            if failed {
                self.remove(addr);
                self.stats.handshake_timeouts += 1;
                self.event(DtlsEvent::Refused {
                    from: addr,
                    reason: RefusalReason::HandshakeTimeout,
                });
            } else {
                self.flush(addr);
                self.schedule_retransmit(now, addr);
            }
        }

        if now >= self.next_sweep {
            let idle = self.config.idle_timeout;
            let silent: Vec<(SocketAddr, Arc<str>)> = self
                .peers
                .iter()
                .filter_map(|(addr, peer)| match &peer.phase {
                    Phase::Established {
                        identity,
                        last_seen,
                    } if now >= *last_seen + idle => Some((*addr, Arc::clone(identity))),
                    _ => None,
                })
                .collect();
            for (addr, identity) in silent {
                self.remove(addr);
                self.stats.idle_timeouts += 1;
                self.event(DtlsEvent::Lost {
                    from: addr,
                    identity,
                    reason: LostReason::IdleTimeout,
                });
            }
            self.next_sweep = now + sweep_interval(idle);
        }
    }

    /// The earliest deadline `handle_timeout` should be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_rotation;
        if self.connections() > 0 {
            next = next.min(self.next_sweep);
        }
        // Called before every wait of the link's loop: with established connections only (the
        // steady state), the deadlines are the two above, and no peer need be visited.
        if self.handshakes == 0 {
            return Some(next);
        }
        for peer in self.peers.values() {
            if let Phase::Handshake {
                started,
                retransmit_at,
            } = peer.phase
            {
                next = next.min(started + self.config.handshake_timeout);
                if let Some(at) = retransmit_at {
                    next = next.min(at);
                }
            }
        }
        Some(next)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.outputs.transmits.pop_front()?;
        self.stats.datagrams_sent += 1;
        Some(t)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.outputs.events.pop_front()
    }

    /// A datagram from a peer without state (or a new ClientHello from an established one).
    fn listen(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let listened = self
            .engine
            .listen(now, from, datagram, &mut self.outputs.out);
        self.outputs.queue_out(from, &mut self.stats);
        let session = match listened {
            Ok(Listened::Verified(session)) => session,
            Ok(Listened::HelloVerify { bad_cookie }) => {
                self.stats.hello_verify_sent += 1;
                if bad_cookie {
                    self.stats.bad_cookie += 1;
                }
                return;
            }
            Ok(Listened::Dropped) | Err(_) => {
                self.stats.garbage += 1;
                return;
            }
        };
        // The address is proven now (it answered the cookie): caps are checked per source.
        let replacing = self.peers.contains_key(&from);
        let ip = from.ip();
        let refusal = if self.handshakes >= self.config.max_handshakes {
            self.stats.handshake_cap += 1;
            Some(RefusalReason::HandshakeCap)
        } else if self.handshakes_per_ip.get(&ip).copied().unwrap_or(0)
            >= self.config.max_handshakes_per_ip
        {
            self.stats.handshake_cap_per_ip += 1;
            Some(RefusalReason::HandshakeCapPerIp)
        } else if !replacing && self.peers.len() >= self.config.max_connections {
            self.stats.connection_cap += 1;
            Some(RefusalReason::ConnectionCap)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.event(DtlsEvent::Refused { from, reason });
            return;
        }
        if replacing {
            if let Some(old) = self.identity(from).cloned() {
                self.stats.replaced += 1;
                self.event(DtlsEvent::Lost {
                    from,
                    identity: old,
                    reason: LostReason::NewHandshake,
                });
            }
            self.remove(from);
        }
        self.peers.insert(
            from,
            Peer {
                session,
                phase: Phase::Handshake {
                    started: now,
                    retransmit_at: None,
                },
            },
        );
        self.handshakes += 1;
        *self.handshakes_per_ip.entry(ip).or_insert(0) += 1;
        self.drive(now, from, None);
    }

    /// Runs the peer's state machine on what it was fed. Returns whether anything came of it
    /// (handshake progress, data, a close, a failure, a datagram to send).
    /// `first`: a step already taken on the session (a record read by `follow`), acted on
    /// before anything else.
    fn drive(&mut self, now: Instant, from: SocketAddr, mut first: Option<Step>) -> bool {
        let mut produced = false;
        loop {
            let Some(peer) = self.peers.get_mut(&from) else {
                return true;
            };
            let step = match (first.take(), &peer.phase) {
                (Some(step), _) => step,
                (None, phase) => match phase {
                    Phase::Handshake { .. } => match peer.session.handshake() {
                        Step::Established { identity } => match identity {
                            Ok(identity) => {
                                peer.phase = Phase::Established {
                                    identity: Arc::clone(&identity),
                                    last_seen: now,
                                };
                                self.handshakes = self.handshakes.saturating_sub(1);
                                release_ip(&mut self.handshakes_per_ip, from.ip());
                                self.stats.handshakes_completed += 1;
                                if let Some(cid) = peer.session.connection_id() {
                                    self.by_cid.insert(cid, from);
                                }
                                self.flush(from);
                                self.event(DtlsEvent::Connected { from, identity });
                                produced = true;
                                continue;
                            }
                            Err(why) => {
                                peer.session.close();
                                self.flush(from);
                                self.remove(from);
                                self.stats.no_identity += 1;
                                self.event(DtlsEvent::Refused {
                                    from,
                                    reason: RefusalReason::NoIdentity(why),
                                });
                                return true;
                            }
                        },
                        other => other,
                    },
                    Phase::Established { .. } => peer.session.read(&mut self.read_buf),
                },
            };
            match step {
                Step::Pending => {
                    produced |= self.flush(from);
                    self.schedule_retransmit(now, from);
                    return produced;
                }
                Step::Established { .. } => {}
                Step::Data(data) => {
                    produced = true;
                    let heard = self.peers.get_mut(&from).and_then(|p| p.phase.heard(now));
                    if let Some(identity) = heard {
                        self.event(DtlsEvent::Datagram {
                            from,
                            identity,
                            data,
                        });
                    }
                }
                Step::Closed => {
                    if let Some(peer) = self.peers.get_mut(&from) {
                        peer.session.close();
                    }
                    self.flush(from);
                    let identity = self.identity(from).cloned();
                    self.remove(from);
                    if let Some(identity) = identity {
                        self.stats.closed += 1;
                        self.event(DtlsEvent::Closed { from, identity });
                    }
                    return true;
                }
                Step::Failed(failure) => {
                    self.flush(from);
                    match self.identity(from).cloned() {
                        Some(identity) => {
                            let text = match failure {
                                Failure::Other(text) | Failure::BadCertificate(text) => text,
                                Failure::UnknownPskIdentity => "unknown PSK identity".to_owned(),
                                Failure::WrongKey => "record failed authentication".to_owned(),
                            };
                            self.remove(from);
                            self.stats.alerts += 1;
                            self.event(DtlsEvent::Lost {
                                from,
                                identity,
                                reason: LostReason::Alert(text),
                            });
                        }
                        None => {
                            self.remove(from);
                            let reason = match failure {
                                Failure::UnknownPskIdentity => {
                                    self.stats.unknown_psk_identity += 1;
                                    RefusalReason::UnknownPskIdentity
                                }
                                Failure::WrongKey => {
                                    self.stats.psk_mismatch += 1;
                                    RefusalReason::PskMismatch
                                }
                                Failure::BadCertificate(why) => {
                                    self.stats.bad_certificate += 1;
                                    RefusalReason::BadCertificate(why)
                                }
                                Failure::Other(why) => {
                                    self.stats.handshake_failed += 1;
                                    RefusalReason::HandshakeFailed(why)
                                }
                            };
                            self.event(DtlsEvent::Refused { from, reason });
                        }
                    }
                    return true;
                }
            }
        }
    }

    /// Moves what libssl wrote for `to` into the transmit queue; whether there was any.
    fn flush(&mut self, to: SocketAddr) -> bool {
        if let Some(peer) = self.peers.get_mut(&to) {
            peer.session.take_output(&mut self.outputs.out);
        }
        self.outputs.queue_out(to, &mut self.stats)
    }

    fn schedule_retransmit(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(peer) = self.peers.get_mut(&addr) {
            let left = peer.session.retransmit_in();
            if let Phase::Handshake { retransmit_at, .. } = &mut peer.phase {
                *retransmit_at = left.map(|d| now + d);
            }
        }
    }

    fn remove(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.remove(&addr) {
            if let Some(cid) = peer.session.connection_id() {
                self.by_cid.remove(&cid);
            }
            if let Phase::Handshake { .. } = peer.phase {
                self.handshakes = self.handshakes.saturating_sub(1);
                release_ip(&mut self.handshakes_per_ip, addr.ip());
            }
        }
    }

    fn event(&mut self, event: DtlsEvent) {
        self.outputs.event(event, &mut self.stats);
    }
}

/// What the endpoint has for the socket (records) and for its caller (events), bounded, and
/// the records an engine call just wrote. Kept apart from the peers so that code holding one
/// peer's state can still queue.
struct Outputs {
    transmits: VecDeque<Transmit>,
    events: VecDeque<DtlsEvent>,
    /// What the last engine call wrote, not yet queued.
    out: Vec<Vec<u8>>,
    /// `max_pending_transmits` and `max_pending_events` of the configuration (which never
    /// changes), kept here so that queueing needs no other part of the endpoint.
    max_transmits: usize,
    max_events: usize,
}

impl Outputs {
    /// Queues the records in `out` (emptied) for `to`, up to `max_pending_transmits`; what is
    /// over is dropped and counted. Whether there were any.
    fn queue_out(&mut self, to: SocketAddr, stats: &mut DtlsStats) -> bool {
        let any = !self.out.is_empty();
        for data in self.out.drain(..) {
            if self.transmits.len() >= self.max_transmits {
                stats.transmits_dropped += 1;
            } else {
                self.transmits.push_back(Transmit { to, data });
            }
        }
        any
    }

    /// Queues an event, up to `max_pending_events`; what is over is dropped and counted.
    fn event(&mut self, event: DtlsEvent, stats: &mut DtlsStats) {
        if self.events.len() >= self.max_events {
            stats.events_dropped += 1;
        } else {
            self.events.push_back(event);
        }
    }
}

fn release_ip(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// How often idle connections are looked for: a quarter of the idle timeout, at most a
/// minute, so a connection is dropped at most 25 % (or a minute) late without a timer each.
fn sweep_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// A DTLS record of epoch 0 carrying a ClientHello (content type 22, handshake type 1).
fn is_client_hello(datagram: &[u8]) -> bool {
    matches!(
        (datagram.first(), datagram.get(3..5), datagram.get(13)),
        (Some(22), Some([0, 0]), Some(1))
    )
}

#[cfg(test)]
mod tests;
