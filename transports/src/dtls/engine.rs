//! The interface between the endpoint and a DTLS library: [`Engine`] (the shared context and
//! the stateless listener) and [`Session`] (one peer's state once its cookie verified), each an
//! enum over the engines built in. The endpoint keeps the bookkeeping (caps, deadlines,
//! events); an engine only turns datagrams into records and back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "dtls-mbedtls")]
use super::mbedtls;
use super::openssl;
use super::{DtlsConfig, DtlsEngine, DtlsError, PskTable};

/// What the shared listener made of one datagram from a peer without state.
pub(super) enum Listened<S> {
    /// The cookie verified: here is the peer's own handshake, already holding its ClientHello.
    Verified(S),
    /// A ClientHello without a valid cookie: answered with a HelloVerifyRequest (in the
    /// output), nothing kept. `bad_cookie` when it carried a cookie that did not verify.
    HelloVerify { bad_cookie: bool },
    /// Not a ClientHello the engine would answer (garbage, a stray record): dropped.
    Dropped,
}

/// How a handshake step or a read ended.
pub(super) enum Step {
    /// Nothing more to do until the next datagram or timer.
    Pending,
    /// The handshake completed; the peer is `identity`.
    Established { identity: Result<Arc<str>, String> },
    /// A decrypted application datagram.
    Data(Vec<u8>),
    /// The peer sent close_notify.
    Closed,
    /// The handshake or connection failed.
    Failed(Failure),
}

/// Why the engine gave up on a peer.
pub(super) enum Failure {
    /// The client named a PSK identity the table does not hold.
    UnknownPskIdentity,
    /// The client named a known PSK identity, but its Finished did not authenticate: the key
    /// is wrong. (libssl drops such records silently, so with it this shows as a timeout.)
    #[cfg_attr(not(feature = "dtls-mbedtls"), allow(dead_code))]
    WrongKey,
    /// The client's certificate did not verify (the library's reason).
    BadCertificate(String),
    /// Any other fatal error: an alert received or sent, a protocol violation.
    Other(String),
}

/// The engine of one endpoint.
pub(super) enum Engine {
    /// libssl.
    OpenSsl(Box<openssl::Engine>),
    /// Mbed TLS 3.6.
    #[cfg(feature = "dtls-mbedtls")]
    MbedTls(Box<mbedtls::Engine>),
}

/// One peer's state in the endpoint's engine.
pub(super) enum Session {
    /// libssl.
    OpenSsl(Box<openssl::Session>),
    /// Mbed TLS 3.6.
    #[cfg(feature = "dtls-mbedtls")]
    MbedTls(Box<mbedtls::Session>),
}

/// Calls the same method on whichever engine's session this is.
macro_rules! each {
    ($value:expr, $s:ident => $call:expr) => {
        match $value {
            Session::OpenSsl($s) => $call,
            #[cfg(feature = "dtls-mbedtls")]
            Session::MbedTls($s) => $call,
        }
    };
}

impl Engine {
    /// Builds the engine `config.engine` names; the Connection ID needs one that has it.
    pub(super) fn new(config: &DtlsConfig, psk: PskTable) -> Result<Self, DtlsError> {
        match config.engine {
            DtlsEngine::OpenSsl => {
                if config.connection_id {
                    return Err(DtlsError::Unsupported(
                        "the openssl engine has no DTLS Connection ID (libssl does not \
                         implement RFC 9146); use the mbedtls engine or turn connection_id off"
                            .into(),
                    ));
                }
                Ok(Engine::OpenSsl(Box::new(openssl::Engine::new(
                    config, psk,
                )?)))
            }
            #[cfg(feature = "dtls-mbedtls")]
            DtlsEngine::MbedTls => Ok(Engine::MbedTls(Box::new(mbedtls::Engine::new(
                config, psk,
            )?))),
            #[cfg(not(feature = "dtls-mbedtls"))]
            DtlsEngine::MbedTls => Err(DtlsError::Unsupported(
                "this build has no mbedtls engine (built without the dtls-mbedtls feature); \
                 use engine = \"openssl\" or rebuild with the default features"
                    .into(),
            )),
        }
    }

    /// Replaces the PSK table; handshakes from now on use it, established sessions stay.
    pub(super) fn set_psk(&mut self, table: PskTable) {
        match self {
            Engine::OpenSsl(e) => e.set_psk(table),
            #[cfg(feature = "dtls-mbedtls")]
            Engine::MbedTls(e) => e.set_psk(table),
        }
    }

    /// Starts a new cookie secret; cookies made with the one before still verify until the
    /// next rotation.
    pub(super) fn rotate_cookie_secret(&mut self) {
        match self {
            Engine::OpenSsl(e) => e.rotate_cookie_secret(),
            #[cfg(feature = "dtls-mbedtls")]
            Engine::MbedTls(e) => e.rotate_cookie_secret(),
        }
    }

    /// Runs one datagram from a peer without state through the stateless listener; what it
    /// answers (a HelloVerifyRequest) is pushed to `out`.
    pub(super) fn listen(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Listened<Session>, DtlsError> {
        // libssl keeps its own clock; only the Mbed TLS engine reads `now`.
        #[cfg(not(feature = "dtls-mbedtls"))]
        let _ = now;
        Ok(match self {
            Engine::OpenSsl(e) => match e.listen(from, datagram, out)? {
                Listened::Verified(s) => Listened::Verified(Session::OpenSsl(Box::new(s))),
                Listened::HelloVerify { bad_cookie } => Listened::HelloVerify { bad_cookie },
                Listened::Dropped => Listened::Dropped,
            },
            #[cfg(feature = "dtls-mbedtls")]
            Engine::MbedTls(e) => match e.listen(now, from, datagram, out)? {
                Listened::Verified(s) => Listened::Verified(Session::MbedTls(Box::new(s))),
                Listened::HelloVerify { bad_cookie } => Listened::HelloVerify { bad_cookie },
                Listened::Dropped => Listened::Dropped,
            },
        })
    }
}

impl Session {
    /// Tells the session the time (the Mbed TLS engine's retransmission timers read it; libssl
    /// keeps its own clock).
    pub(super) fn set_now(&mut self, now: Instant) {
        match self {
            Session::OpenSsl(_) => {}
            #[cfg(feature = "dtls-mbedtls")]
            Session::MbedTls(s) => s.set_now(now),
        }
        let _ = now;
    }

    /// Queues one datagram from the peer.
    pub(super) fn feed(&mut self, datagram: &[u8]) {
        each!(self, s => s.feed(datagram))
    }

    /// Moves the handshake on as far as the queued datagrams allow.
    pub(super) fn handshake(&mut self) -> Step {
        each!(self, s => s.handshake())
    }

    /// Reads the next decrypted datagram of an established connection into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Step {
        each!(self, s => s.read(buf))
    }

    /// Whether the peer's PSK identity was one the table holds.
    pub(super) fn knew_psk_identity(&self) -> bool {
        each!(self, s => s.knew_psk_identity())
    }

    /// Encrypts one application datagram.
    pub(super) fn write(&mut self, plaintext: &[u8]) -> Result<(), String> {
        each!(self, s => s.write(plaintext))
    }

    /// Sends close_notify (best effort).
    pub(super) fn close(&mut self) {
        each!(self, s => s.close())
    }

    /// The datagrams the engine wrote since the last call.
    pub(super) fn take_output(&mut self, out: &mut Vec<Vec<u8>>) {
        each!(self, s => s.take_output(out))
    }

    /// Time left until the engine wants to retransmit its last flight, if one is pending.
    pub(super) fn retransmit_in(&self) -> Option<Duration> {
        each!(self, s => s.retransmit_in())
    }

    /// Lets the engine retransmit if its timer ran out; `Err` when it gave up.
    pub(super) fn handle_retransmit(&mut self) -> Result<(), ()> {
        each!(self, s => s.handle_retransmit())
    }

    /// The Connection ID the peer puts in its records to us, once negotiated (RFC 9146).
    pub(super) fn connection_id(&self) -> Option<[u8; CID_LEN]> {
        match self {
            Session::OpenSsl(_) => None,
            #[cfg(feature = "dtls-mbedtls")]
            Session::MbedTls(s) => s.connection_id(),
        }
    }

    /// Whether `datagram` (from another address than the session's) begins with a record
    /// that authenticates and is newer than any received on the session: the only case in
    /// which RFC 9146 §6 lets the peer's address change. Changes nothing in the session.
    pub(super) fn may_move(&mut self, datagram: &[u8]) -> bool {
        match self {
            Session::OpenSsl(_) => {
                let _ = datagram;
                false
            }
            #[cfg(feature = "dtls-mbedtls")]
            Session::MbedTls(s) => s.may_move(datagram),
        }
    }
}

/// Length of the Connection ID the gateway hands each peer (random, so unguessable; 8 bytes
/// keep each record short on a radio).
pub(super) const CID_LEN: usize = 8;

/// The Connection ID in a `tls12_cid` record (content type 25, RFC 9146 §4) carrying one of
/// ours: it follows the 11-byte header start (type, version, epoch, sequence number).
pub(super) fn record_cid(datagram: &[u8]) -> Option<[u8; CID_LEN]> {
    if datagram.first() != Some(&25) {
        return None;
    }
    let bytes = datagram.get(11..11 + CID_LEN)?;
    let mut cid = [0u8; CID_LEN];
    cid.copy_from_slice(bytes);
    Some(cid)
}
