//! The DTLS engine on libssl (rust-openssl). Everything OpenSSL-specific lives in this file,
//! behind the small interface the endpoint uses ([`Engine`] and [`Session`]), so another
//! library (one with the Connection ID, say) can take its place without touching the
//! endpoint's bookkeeping.
//!
//! How libssl is made sans-I/O: each `Ssl` runs over [`Queue`], an in-memory datagram queue
//! (a read pops one datagram, a write pushes one), so the endpoint decides what goes on the
//! wire. One shared listener `Ssl` answers ClientHellos with `DTLSv1_listen`, which keeps no
//! state per peer: a peer gets an `Ssl` of its own only once its cookie verifies.
//!
//! libssl owns its retransmission clock: the endpoint can only ask how long is left
//! (`DTLSv1_get_timeout`) and tell it to act (`DTLSv1_handle_timeout`). Those two and
//! `DTLSv1_listen` are not bound by rust-openssl; they are the only `unsafe` code here.

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use foreign_types_shared::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslFiletype, SslMethod, SslOptions, SslRef, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::X509VerifyResult;

use super::engine::{Failure, Listened, Step};
use super::{CertificateFiles, DtlsConfig, DtlsError, PskTable};

extern "C" {
    // Not bound by openssl-sys. Signatures from OpenSSL 3.0's <openssl/ssl.h> and <openssl/bio.h>:
    //   int DTLSv1_listen(SSL *s, BIO_ADDR *client);
    //   BIO_ADDR *BIO_ADDR_new(void);
    //   void BIO_ADDR_free(BIO_ADDR *);
    // BIO_ADDR is opaque, so it is passed as `*mut c_void`.
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut c_void) -> c_int;
    fn BIO_ADDR_new() -> *mut c_void;
    fn BIO_ADDR_free(a: *mut c_void);
}

/// `DTLS_CTRL_GET_TIMEOUT` from <openssl/ssl.h>: `DTLSv1_get_timeout(ssl, tv)` is a macro for
/// `SSL_ctrl(ssl, 73, 0, tv)` with a `struct timeval *`.
const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
/// `DTLS_CTRL_HANDLE_TIMEOUT`: `DTLSv1_handle_timeout(ssl)` is `SSL_ctrl(ssl, 74, 0, NULL)`.
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

/// Bytes of HMAC-SHA256 kept as the cookie (RFC 6347 allows up to 255; 16 is unguessable).
const COOKIE_LEN: usize = 16;

/// A datagram queue standing in for the socket under one `Ssl` (the client side uses it too).
#[derive(Default)]
pub(super) struct Queue {
    pub(super) incoming: VecDeque<Vec<u8>>,
    pub(super) outgoing: Vec<Vec<u8>>,
}

impl Read for Queue {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            Some(datagram) => {
                // A datagram longer than libssl's buffer is cut, as a socket would; the record
                // layer then rejects it.
                let n = datagram.len().min(buf.len());
                if let (Some(to), Some(from)) = (buf.get_mut(..n), datagram.get(..n)) {
                    to.copy_from_slice(from);
                }
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Queue {
    fn write(&mut self, datagram: &[u8]) -> io::Result<usize> {
        // libssl hands one whole datagram (records packed up to the MTU) to each write.
        self.outgoing.push(datagram.to_vec());
        Ok(datagram.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the cookie callbacks need, set before each `DTLSv1_listen`: they are not told the
/// peer's address (the BIO is a memory queue), and the secret rotates. Shared with the
/// callbacks through a mutex that is never contended (one endpoint, one thread at a time).
struct CookieInput {
    peer: SocketAddr,
    current: [u8; 32],
    previous: [u8; 32],
    /// Set by the verify callback when a ClientHello carried a cookie that did not verify.
    rejected: bool,
}

/// Set on a handshake's `Ssl` by the PSK callback when the client named an unknown identity.
struct UnknownIdentity(AtomicBool);

/// HMAC-SHA256(secret, peer address and port), cut to [`COOKIE_LEN`].
fn cookie_for(secret: &[u8; 32], peer: SocketAddr) -> Result<[u8; COOKIE_LEN], ErrorStack> {
    let key = PKey::hmac(secret)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key)?;
    match peer.ip() {
        IpAddr::V4(ip) => signer.update(&ip.octets())?,
        IpAddr::V6(ip) => signer.update(&ip.octets())?,
    }
    signer.update(&peer.port().to_be_bytes())?;
    let tag = signer.sign_to_vec()?;
    let mut cookie = [0u8; COOKIE_LEN];
    if let Some(head) = tag.get(..COOKIE_LEN) {
        cookie.copy_from_slice(head);
    }
    Ok(cookie)
}

/// A fresh random cookie secret.
fn new_secret() -> Result<[u8; 32], ErrorStack> {
    let mut secret = [0u8; 32];
    openssl::rand::rand_bytes(&mut secret)?;
    Ok(secret)
}

/// The context shared by every peer of one endpoint, and the stateless listener.
pub(super) struct Engine {
    context: SslContext,
    mtu: u32,
    psk: Arc<RwLock<PskTable>>,
    cookie: Arc<Mutex<CookieInput>>,
    unknown_index: Index<Ssl, UnknownIdentity>,
    listener: SslStream<Queue>,
}

impl Engine {
    /// Builds the context: DTLS 1.2 only, the configured suites, PSK and/or certificates,
    /// the cookie callbacks.
    pub(super) fn new(config: &DtlsConfig, psk: PskTable) -> Result<Self, DtlsError> {
        let unknown_index = Ssl::new_ex_index::<UnknownIdentity>()?;
        let psk = Arc::new(RwLock::new(psk));

        let mut builder = SslContext::builder(SslMethod::dtls_server())?;
        builder.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        builder.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        let suites = config.cipher_suites.join(":");
        builder
            .set_cipher_list(&suites)
            .map_err(|e| DtlsError::CipherSuites(suites.clone(), e.to_string()))?;
        // The MTU is set per `Ssl`; without NO_QUERY_MTU libssl would ask the memory BIO,
        // which answers 0. No tickets: sessions are resumed from the server's cache only.
        builder.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        builder.set_read_ahead(true);

        let table = Arc::clone(&psk);
        builder.set_psk_server_callback(move |ssl, identity, out| {
            let key = identity.and_then(|id| {
                let table = table
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                std::str::from_utf8(id)
                    .ok()
                    .and_then(|id| table.key(id).map(<[u8]>::to_vec))
            });
            match key.and_then(|k| out.get_mut(..k.len()).map(|o| (o, k))) {
                Some((out, key)) => {
                    out.copy_from_slice(&key);
                    Ok(key.len())
                }
                None => {
                    // 0 = no key: libssl ends the handshake with unknown_psk_identity.
                    if let Some(flag) = ssl.ex_data(unknown_index) {
                        flag.0.store(true, Ordering::Relaxed);
                    }
                    Ok(0)
                }
            }
        });

        let secret = new_secret()?;
        let cookie = Arc::new(Mutex::new(CookieInput {
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            current: secret,
            previous: secret,
            rejected: false,
        }));
        let shared = Arc::clone(&cookie);
        builder.set_cookie_generate_cb(move |_ssl, out| {
            let input = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let cookie = cookie_for(&input.current, input.peer)?;
            let out = out.get_mut(..COOKIE_LEN).ok_or_else(ErrorStack::get)?;
            out.copy_from_slice(&cookie);
            Ok(COOKIE_LEN)
        });
        let shared = Arc::clone(&cookie);
        builder.set_cookie_verify_cb(move |_ssl, cookie| {
            let mut input = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let matches = |secret: &[u8; 32]| {
                cookie_for(secret, input.peer)
                    .map(|c| cookie.len() == COOKIE_LEN && openssl::memcmp::eq(&c, cookie))
                    .unwrap_or(false)
            };
            // The previous secret too, so a cookie handed out just before a rotation works.
            let ok = matches(&input.current) || matches(&input.previous);
            if !ok {
                input.rejected = true;
            }
            ok
        });

        if let Some(certs) = &config.certificates {
            load_certificates(&mut builder, certs)?;
        }
        let context = builder.build();
        let listener = new_stream(&context, config.mtu, unknown_index)?;
        Ok(Engine {
            context,
            mtu: config.mtu,
            psk,
            cookie,
            unknown_index,
            listener,
        })
    }

    /// Replaces the PSK table; handshakes from now on use it, established sessions stay.
    pub(super) fn set_psk(&mut self, table: PskTable) {
        let mut guard = self
            .psk
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = table;
    }

    /// Starts a new cookie secret; cookies made with the one before still verify until the
    /// next rotation.
    pub(super) fn rotate_cookie_secret(&mut self) {
        // A failed random draw keeps the current secret until the next rotation.
        let Ok(fresh) = new_secret() else {
            return;
        };
        let mut input = self.cookie_input();
        input.previous = input.current;
        input.current = fresh;
    }

    fn cookie_input(&self) -> std::sync::MutexGuard<'_, CookieInput> {
        self.cookie
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one datagram from a peer without state through the stateless listener; what it
    /// answers (a HelloVerifyRequest) is pushed to `out`.
    pub(super) fn listen(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Listened<Session>, DtlsError> {
        {
            let mut input = self.cookie_input();
            input.peer = from;
            input.rejected = false;
        }
        self.listener
            .get_mut()
            .incoming
            .push_back(datagram.to_vec());
        let addr = BioAddr::new()?;
        // SAFETY: `self.listener.ssl()` is a live `SSL` owned by `self.listener` for the whole
        // call, set up as a DTLS server (SslMethod::dtls_server) over a BIO that libssl may
        // read and write (rust-openssl's stream BIO over `Queue`); `addr.0` is a non-null
        // BIO_ADDR from BIO_ADDR_new that `addr` owns until after the call. DTLSv1_listen keeps
        // neither pointer. The callbacks it runs are the safe closures installed in `new`.
        let result = unsafe { DTLSv1_listen(self.listener.ssl().as_ptr(), addr.0) };
        drop(addr);
        let queue = self.listener.get_mut();
        queue.incoming.clear();
        out.append(&mut queue.outgoing);
        let bad_cookie = self.cookie_input().rejected;
        match result {
            1 => {
                let fresh = new_stream(&self.context, self.mtu, self.unknown_index)?;
                let stream = std::mem::replace(&mut self.listener, fresh);
                Ok(Listened::Verified(Session {
                    stream,
                    unknown_index: self.unknown_index,
                }))
            }
            0 if !out.is_empty() => Ok(Listened::HelloVerify { bad_cookie }),
            0 => Ok(Listened::Dropped),
            _ => {
                // A fatal error leaves the listener unusable: start a fresh one, and empty the
                // thread's error queue so it is not blamed on the next call.
                drop(ErrorStack::get());
                self.listener = new_stream(&self.context, self.mtu, self.unknown_index)?;
                Ok(Listened::Dropped)
            }
        }
    }
}

fn load_certificates(
    builder: &mut openssl::ssl::SslContextBuilder,
    certs: &CertificateFiles,
) -> Result<(), DtlsError> {
    let file_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source: ErrorStack| DtlsError::Certificate {
            path,
            reason: source.to_string(),
        }
    };
    builder
        .set_certificate_chain_file(&certs.certificate)
        .map_err(file_error(&certs.certificate))?;
    builder
        .set_private_key_file(&certs.private_key, SslFiletype::PEM)
        .map_err(file_error(&certs.private_key))?;
    builder
        .check_private_key()
        .map_err(file_error(&certs.private_key))?;
    builder
        .set_ca_file(&certs.client_ca)
        .map_err(file_error(&certs.client_ca))?;
    // Certificate suites ask for a client certificate and fail the handshake without a valid
    // one; PSK suites never ask.
    builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(())
}

fn new_stream(
    context: &SslContext,
    mtu: u32,
    unknown_index: Index<Ssl, UnknownIdentity>,
) -> Result<SslStream<Queue>, ErrorStack> {
    let mut ssl = Ssl::new(context)?;
    ssl.set_mtu(mtu)?;
    ssl.set_ex_data(unknown_index, UnknownIdentity(AtomicBool::new(false)));
    SslStream::new(ssl, Queue::default())
}

/// A `BIO_ADDR` for one `DTLSv1_listen` call, freed on drop.
struct BioAddr(*mut c_void);

impl BioAddr {
    fn new() -> Result<Self, ErrorStack> {
        // SAFETY: BIO_ADDR_new takes no arguments and returns an owned allocation or null.
        let ptr = unsafe { BIO_ADDR_new() };
        if ptr.is_null() {
            Err(ErrorStack::get())
        } else {
            Ok(BioAddr(ptr))
        }
    }
}

impl Drop for BioAddr {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from BIO_ADDR_new, is non-null, and is freed only here, once.
        unsafe { BIO_ADDR_free(self.0) }
    }
}

/// One peer's DTLS state, from the verified ClientHello on.
pub(super) struct Session {
    stream: SslStream<Queue>,
    unknown_index: Index<Ssl, UnknownIdentity>,
}

impl Session {
    /// Queues one datagram from the peer.
    pub(super) fn feed(&mut self, datagram: &[u8]) {
        self.stream.get_mut().incoming.push_back(datagram.to_vec());
    }

    /// Moves the handshake on as far as the queued datagrams allow.
    pub(super) fn handshake(&mut self) -> Step {
        match self.stream.accept() {
            Ok(()) => Step::Established {
                identity: identity_of(self.stream.ssl()),
            },
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Step::Pending
            }
            Err(e) => {
                let ssl = self.stream.ssl();
                let unknown = ssl
                    .ex_data(self.unknown_index)
                    .is_some_and(|flag| flag.0.load(Ordering::Relaxed));
                let verify = ssl.verify_result();
                drop(ErrorStack::get());
                Step::Failed(if unknown {
                    Failure::UnknownPskIdentity
                } else if verify != X509VerifyResult::OK {
                    Failure::BadCertificate(verify.error_string().to_owned())
                } else {
                    Failure::Other(e.to_string())
                })
            }
        }
    }

    /// Reads the next decrypted datagram of an established connection into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Step {
        match self.stream.ssl_read(buf) {
            Ok(n) => Step::Data(buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default()),
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Step::Pending
            }
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => Step::Closed,
            Err(e) => {
                drop(ErrorStack::get());
                Step::Failed(Failure::Other(e.to_string()))
            }
        }
    }

    /// Whether the peer's PSK identity was one the table holds (for telling a wrong key from
    /// a handshake that merely stalled).
    pub(super) fn knew_psk_identity(&self) -> bool {
        self.stream.ssl().psk_identity().is_some()
            && !self
                .stream
                .ssl()
                .ex_data(self.unknown_index)
                .is_some_and(|flag| flag.0.load(Ordering::Relaxed))
    }

    /// Encrypts one application datagram.
    pub(super) fn write(&mut self, plaintext: &[u8]) -> Result<(), String> {
        match self.stream.ssl_write(plaintext) {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(ErrorStack::get());
                Err(e.to_string())
            }
        }
    }

    /// Sends close_notify (best effort: the connection is dropped either way).
    pub(super) fn close(&mut self) {
        if self.stream.shutdown().is_err() {
            drop(ErrorStack::get());
        }
    }

    /// The datagrams libssl wrote since the last call.
    pub(super) fn take_output(&mut self, out: &mut Vec<Vec<u8>>) {
        out.append(&mut self.stream.get_mut().outgoing);
    }

    /// Time left until libssl wants to retransmit its last flight, if a flight is pending.
    pub(super) fn retransmit_in(&self) -> Option<Duration> {
        retransmit_in(self.stream.ssl())
    }

    /// Lets libssl retransmit if its timer ran out. `Err` when it gave up (too many
    /// retransmissions).
    pub(super) fn handle_retransmit(&mut self) -> Result<(), ()> {
        handle_retransmit(self.stream.ssl())
    }
}

/// Time left until libssl wants to retransmit `ssl`'s last flight, if a flight is pending
/// (`DTLSv1_get_timeout`). Shared with the client side.
pub(super) fn retransmit_in(ssl: &SslRef) -> Option<Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: `ssl` is a live `SSL` (a reference to it); for DTLS_CTRL_GET_TIMEOUT, libssl
    // writes one `struct timeval` through the pointer, and `tv` is a properly aligned
    // `libc::timeval` (the platform's `struct timeval`) that outlives the call.
    let r = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            (&mut tv as *mut libc::timeval).cast::<c_void>(),
        )
    };
    if r <= 0 {
        return None;
    }
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Lets libssl retransmit `ssl`'s last flight if its timer ran out
/// (`DTLSv1_handle_timeout`). `Err` when it gave up (too many retransmissions).
pub(super) fn handle_retransmit(ssl: &SslRef) -> Result<(), ()> {
    // SAFETY: `ssl` is a live `SSL` (a reference to it); DTLS_CTRL_HANDLE_TIMEOUT takes no
    // argument and ignores the null pointer.
    let r = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_HANDLE_TIMEOUT,
            0,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        drop(ErrorStack::get());
        Err(())
    } else {
        Ok(())
    }
}

/// The authenticated identity: the PSK identity, else the certificate's CN, else its first
/// DNS name.
fn identity_of(ssl: &SslRef) -> Result<Arc<str>, String> {
    if let Some(id) = ssl.psk_identity() {
        return std::str::from_utf8(id)
            .map(Arc::from)
            .map_err(|_| "PSK identity is not UTF-8".to_owned());
    }
    let cert = ssl
        .peer_certificate()
        .ok_or_else(|| "neither a PSK identity nor a client certificate".to_owned())?;
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|entry| entry.data().to_string().ok())
        .filter(|s| !s.is_empty());
    let dns = || {
        cert.subject_alt_names().and_then(|names| {
            names
                .iter()
                .find_map(|name| name.dnsname().map(str::to_owned))
        })
    };
    cn.or_else(dns)
        .map(Arc::from)
        .ok_or_else(|| "client certificate has no CN and no DNS name".to_owned())
}
