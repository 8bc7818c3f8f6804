//! The safe wrapper around the Mbed TLS 3.6 C API (`mbedtls-rs-sys`) that the `mbedtls`
//! engine uses: one [`Config`] per endpoint (what every context of it shares: suites, keys,
//! certificates, callbacks), one [`Context`] per peer (and the listener). All `unsafe` of the
//! engine is here, but for the AES instructions' (`mbedtls_aes.rs`).
//!
//! Soundness rests on three rules that every function below keeps:
//! - **Ownership.** Each C object is allocated once (`Box::into_raw`), initialised before
//!   use, and freed once in `Drop`. A [`Context`] holds an `Arc` of its [`Config`], so the
//!   configuration Mbed TLS points to outlives every context set up with it. The memory the
//!   callbacks are handed (`Callbacks`, `Io`) is boxed, never moved, and outlives the C
//!   object that points to it (it is a field of the same owner, dropped after the C object is
//!   freed).
//! - **One caller at a time.** This build of Mbed TLS has no threading support, and its PSA
//!   key store is global: every call into it takes [`lock`], a process-wide mutex, so
//!   endpoints on different threads never run Mbed TLS at once. Callbacks run inside such a
//!   call and never take the lock themselves.
//! - **Interior mutability only** for what callbacks reach (`Mutex`, `RefCell`): Rust code
//!   never holds a `&mut` to memory a C pointer also reaches.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_uchar, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mbedtls_rs_sys as m;

use super::{CertificateFiles, DtlsError, PskTable};

/// Serialises every call into Mbed TLS (see the module's rules): held, the process-wide
/// critical section of the `critical-section` crate (a global mutex on a host, reentrant on
/// the thread that holds it). mbedtls-rs-sys enters that same critical section inside Mbed
/// TLS for each hooked primitive (every AES block of every record, the clocks): under this
/// lock those entries are nested ones, a thread-local check, where a lock of our own would
/// leave each of them to take the global mutex again.
struct Lock {
    state: critical_section::RestoreState,
    /// Released on the thread that acquired it: not `Send`.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: `state` is what `critical_section::acquire` returned for this guard, on
        // this thread (the guard is not `Send`); it is released once, here. The guards are
        // locals of this file's functions and never outlive a guard taken after them, so
        // acquisitions and releases nest as the crate requires.
        unsafe { critical_section::release(self.state) };
    }
}

/// Enters the lock of every Mbed TLS call (see [`Lock`]).
fn lock() -> Lock {
    Lock {
        // SAFETY: released by the returned guard's Drop (see there).
        state: unsafe { critical_section::acquire() },
        _thread: std::marker::PhantomData,
    }
}

/// `MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY`: the PSK callback did not know the identity.
pub(super) const ERR_UNKNOWN_IDENTITY: i32 = m::MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY;
/// `MBEDTLS_ERR_X509_CERT_VERIFY_FAILED`: the client certificate did not verify.
pub(super) const ERR_X509_CERT_VERIFY_FAILED: i32 = m::MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
/// `MBEDTLS_ERR_SSL_INVALID_MAC`: a record (in a handshake: the Finished) did not authenticate.
pub(super) const ERR_INVALID_MAC: i32 = m::MBEDTLS_ERR_SSL_INVALID_MAC;

/// Bytes of HMAC-SHA256 kept as the cookie (RFC 6347 allows up to 255; 16 is unguessable).
const COOKIE_LEN: usize = 16;

/// Mbed TLS error codes by name, for logs and refusal reasons (`mbedtls_strerror` is not in
/// this build).
pub(super) fn error_text(code: i32) -> String {
    let name = match code {
        c if c == m::MBEDTLS_ERR_SSL_INVALID_MAC => "invalid MAC",
        c if c == m::MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE => "fatal alert received",
        c if c == m::MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY => "unknown PSK identity",
        c if c == m::MBEDTLS_ERR_SSL_TIMEOUT => "timeout",
        c if c == m::MBEDTLS_ERR_SSL_CLIENT_RECONNECT => "client reconnect",
        c if c == m::MBEDTLS_ERR_X509_CERT_VERIFY_FAILED => "certificate verify failed",
        c if c == m::MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE => "handshake failure",
        c if c == m::MBEDTLS_ERR_SSL_BAD_INPUT_DATA => "bad input data",
        c if c == m::MBEDTLS_ERR_SSL_ALLOC_FAILED => "out of memory",
        _ => "Mbed TLS error",
    };
    format!("{name} (-0x{:04x})", code.unsigned_abs())
}

// ---------------------------------------------------------------------------------------------
// randomness and process-wide set-up

/// Fills `out` from the OS's random source; false when it could not (then nothing that needs
/// randomness may go ahead).
pub(super) fn fill_random(out: &mut [u8]) -> bool {
    use std::io::Read;
    #[cfg(target_os = "linux")]
    {
        let mut done = 0;
        while let Some(rest) = out.get_mut(done..).filter(|r| !r.is_empty()) {
            // SAFETY: `rest` is a live, writable buffer of `rest.len()` bytes for the call;
            // getrandom writes at most that many bytes into it and keeps no pointer.
            let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast::<c_void>(), rest.len(), 0) };
            match usize::try_from(r) {
                Ok(n) if n > 0 => done += n,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        if done == out.len() {
            return true;
        }
    }
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(out))
        .is_ok()
}

/// `PSA_ERROR_INVALID_ARGUMENT` (a macro in psa/crypto_values.h, not bound).
const PSA_ERROR_INVALID_ARGUMENT: i32 = -135;
/// `PSA_ERROR_INSUFFICIENT_ENTROPY` (likewise).
const PSA_ERROR_INSUFFICIENT_ENTROPY: i32 = -148;

/// The random source `mbedtls-rs-sys` leaves to its user (its build defines
/// `MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG`): PSA crypto draws every random byte through it.
///
/// # Safety
/// Mbed TLS passes a writable buffer `output` of `output_size` bytes and a writable
/// `output_length`.
#[no_mangle]
pub(super) unsafe extern "C" fn mbedtls_psa_external_get_random(
    _context: *mut c_void,
    output: *mut u8,
    output_size: usize,
    output_length: *mut usize,
) -> i32 {
    if output.is_null() || output_length.is_null() {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: PSA calls this with `output` pointing to `output_size` writable bytes that no
    // one else accesses during the call (psa_generate_random's contract), checked non-null.
    let out = unsafe { std::slice::from_raw_parts_mut(output, output_size) };
    if !fill_random(out) {
        return PSA_ERROR_INSUFFICIENT_ENTROPY;
    }
    // SAFETY: `output_length` is a valid, writable `size_t` given by PSA, checked non-null.
    unsafe { *output_length = output_size };
    0
}

/// The RNG callback of the SSL configurations (ECDHE keys, randoms).
unsafe extern "C" fn rng(_p: *mut c_void, out: *mut c_uchar, len: usize) -> c_int {
    if out.is_null() {
        return -1;
    }
    // SAFETY: Mbed TLS hands a writable buffer of `len` bytes, checked non-null.
    let out = unsafe { std::slice::from_raw_parts_mut(out, len) };
    if fill_random(out) {
        0
    } else {
        -1
    }
}

static CLOCK: m::hook::backend::std::timer::StdTimer = m::hook::backend::std::timer::StdTimer;
static WALL_CLOCK: m::hook::backend::std::wall_clock::StdWallClock =
    m::hook::backend::std::wall_clock::StdWallClock;

/// PSA crypto, the clocks and the AES instructions, once per process. The wall clock makes certificate validation
/// check notBefore/notAfter (without it Mbed TLS would accept an expired certificate).
fn init() -> Result<(), DtlsError> {
    static DONE: OnceLock<i32> = OnceLock::new();
    let status = *DONE.get_or_init(|| {
        let _guard = lock();
        // SAFETY: the hooks are installed before any other Mbed TLS call of this process
        // (this runs first, under the lock) with `'static` implementations; psa_crypto_init
        // takes no arguments and may be called more than once.
        unsafe {
            m::hook::timer::hook_timer(Some(&CLOCK));
            m::hook::wall_clock::hook_wall_clock(Some(&WALL_CLOCK));
            // The CPU's AES instructions where it has them (see mbedtls_aes.rs).
            m::hook::aes::hook_aes(super::mbedtls_aes::hook());
            m::psa_crypto_init()
        }
    });
    if status == 0 {
        Ok(())
    } else {
        Err(DtlsError::Engine(format!(
            "psa_crypto_init failed ({status})"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// the configuration shared by an endpoint's contexts

/// Which side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The gateway.
    Server,
    /// A mote (tests, tools).
    Client,
}

/// What the callbacks of a configuration reach.
struct Callbacks {
    psk: Mutex<PskTable>,
    /// The identity the PSK callback last saw: `Ok` if the table held it. Taken by the
    /// session whose handshake call ran the callback (calls are serialised).
    identity: Mutex<Option<Result<Arc<str>, ()>>>,
    cookie: Mutex<CookieKeys>,
}

struct CookieKeys {
    current: [u8; 32],
    previous: [u8; 32],
    /// Set when a ClientHello carried a cookie that did not verify.
    rejected: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An `mbedtls_ssl_config` and everything it points to.
pub(super) struct Config {
    conf: *mut m::mbedtls_ssl_config,
    own_cert: *mut m::mbedtls_x509_crt,
    own_key: *mut m::mbedtls_pk_context,
    ca: *mut m::mbedtls_x509_crt,
    /// The suite list Mbed TLS points to (0-terminated).
    _suites: Box<[c_int]>,
    callbacks: Box<Callbacks>,
}

// SAFETY: the raw pointers are owned by the `Config` (freed in its Drop) and reached only
// through Mbed TLS calls made under [`lock`], so moving the `Config` to another thread or
// sharing it (through the `Arc` its contexts hold) never lets two threads touch them at once;
// `Callbacks` is made of mutexes.
unsafe impl Send for Config {}
// SAFETY: as above: every access to the C objects is serialised by [`lock`].
unsafe impl Sync for Config {}

impl Config {
    fn empty(suites: &[i32]) -> Result<Config, DtlsError> {
        init()?;
        let mut list: Vec<c_int> = suites.iter().map(|s| *s as c_int).collect();
        list.push(0);
        let mut secret = [0u8; 32];
        if !fill_random(&mut secret) {
            return Err(DtlsError::Engine(
                "no randomness for the cookie secret".into(),
            ));
        }
        let _guard = lock();
        // SAFETY: a zeroed `mbedtls_ssl_config` is plain memory (integers and pointers, all
        // valid when zero) that mbedtls_ssl_config_init then sets up; it is boxed so its
        // address stays put, and owned by the `Config` from here on (freed in Drop).
        let conf = Box::into_raw(Box::new(unsafe { std::mem::zeroed() }));
        // SAFETY: `conf` is a fresh, exclusively owned allocation.
        unsafe { m::mbedtls_ssl_config_init(conf) };
        Ok(Config {
            conf,
            own_cert: std::ptr::null_mut(),
            own_key: std::ptr::null_mut(),
            ca: std::ptr::null_mut(),
            _suites: list.into_boxed_slice(),
            callbacks: Box::new(Callbacks {
                psk: Mutex::new(PskTable::new()),
                identity: Mutex::new(None),
                cookie: Mutex::new(CookieKeys {
                    current: secret,
                    previous: secret,
                    rejected: false,
                }),
            }),
        })
    }

    /// Defaults for DTLS, the RNG, the suites, the retransmission timeouts.
    fn base(&mut self, role: Role, handshake_timeout: Duration) -> Result<(), DtlsError> {
        let endpoint = match role {
            Role::Server => m::MBEDTLS_SSL_IS_SERVER,
            Role::Client => m::MBEDTLS_SSL_IS_CLIENT,
        } as c_int;
        let max_ms = u32::try_from(handshake_timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1000);
        let _guard = lock();
        // SAFETY: `self.conf` is initialised and owned by `self`; config_defaults writes into
        // it only. The RNG callback takes no context. The suite list is `self._suites`, a
        // 0-terminated array owned by `self` and never changed, so it outlives every use of
        // the configuration (Mbed TLS keeps the pointer).
        let r = unsafe {
            let r = m::mbedtls_ssl_config_defaults(
                self.conf,
                endpoint,
                m::MBEDTLS_SSL_TRANSPORT_DATAGRAM as c_int,
                m::MBEDTLS_SSL_PRESET_DEFAULT as c_int,
            );
            m::mbedtls_ssl_conf_rng(self.conf, Some(rng), std::ptr::null_mut());
            m::mbedtls_ssl_conf_ciphersuites(self.conf, self._suites.as_ptr());
            // The first flight is resent after 1 s, doubling up to the handshake deadline
            // (the endpoint enforces the deadline itself).
            m::mbedtls_ssl_conf_handshake_timeout(self.conf, 1000, max_ms);
            r
        };
        check(r, "mbedtls_ssl_config_defaults")
    }

    /// The gateway's configuration.
    pub(super) fn new(
        role: Role,
        suites: &[i32],
        certificates: Option<&CertificateFiles>,
        psk: PskTable,
        cid_len: Option<usize>,
        handshake_timeout: Duration,
    ) -> Result<Config, DtlsError> {
        let mut config = Config::empty(suites)?;
        config.base(role, handshake_timeout)?;
        *locked(&config.callbacks.psk) = psk;
        let callbacks = &*config.callbacks as *const Callbacks as *mut c_void;
        {
            let _guard = lock();
            // SAFETY: `callbacks` points to the boxed `Callbacks` owned by `config`, which
            // lives as long as the configuration (dropped after mbedtls_ssl_config_free); the
            // callbacks only read it through shared references (its fields are mutexes).
            unsafe {
                m::mbedtls_ssl_conf_psk_cb(config.conf, Some(psk_callback), callbacks);
                m::mbedtls_ssl_conf_dtls_cookies(
                    config.conf,
                    Some(cookie_write),
                    Some(cookie_check),
                    callbacks,
                );
            }
        }
        if let Some(files) = certificates {
            config.load_certificates(files)?;
        }
        if let Some(len) = cid_len {
            let _guard = lock();
            // SAFETY: `config.conf` is initialised and owned; the call writes two fields.
            let r = unsafe {
                m::mbedtls_ssl_conf_cid(
                    config.conf,
                    len,
                    m::MBEDTLS_SSL_UNEXPECTED_CID_IGNORE as c_int,
                )
            };
            drop(_guard);
            check(r, "mbedtls_ssl_conf_cid")?;
        }
        Ok(config)
    }

    /// A mote's configuration: one PSK, and with `cid` an empty Connection ID of its own
    /// (the client's records then carry the server's).
    pub(super) fn new_psk_client(
        suites: &[i32],
        identity: &str,
        key: &[u8],
        cid: bool,
    ) -> Result<Config, DtlsError> {
        let mut config = Config::empty(suites)?;
        config.base(Role::Client, Duration::from_secs(16))?;
        let _guard = lock();
        // SAFETY: `config.conf` is initialised and owned; mbedtls_ssl_conf_psk copies the key
        // and identity (both live, with their lengths) into its own allocations.
        let r = unsafe {
            m::mbedtls_ssl_conf_psk(
                config.conf,
                key.as_ptr(),
                key.len(),
                identity.as_ptr(),
                identity.len(),
            )
        };
        let r2 = if cid {
            // SAFETY: as above; the call writes two fields.
            unsafe {
                m::mbedtls_ssl_conf_cid(
                    config.conf,
                    0,
                    m::MBEDTLS_SSL_UNEXPECTED_CID_IGNORE as c_int,
                )
            }
        } else {
            0
        };
        drop(_guard);
        check(r, "mbedtls_ssl_conf_psk")?;
        check(r2, "mbedtls_ssl_conf_cid")?;
        Ok(config)
    }

    fn load_certificates(&mut self, files: &CertificateFiles) -> Result<(), DtlsError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map(|mut bytes| {
                    // PEM is parsed as a C string: the length must count a final NUL.
                    bytes.push(0);
                    bytes
                })
                .map_err(|source| DtlsError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let cert_pem = read(&files.certificate)?;
        let key_pem = read(&files.private_key)?;
        let ca_pem = read(&files.client_ca)?;
        let bad = |path: &std::path::Path, what: &str, r: c_int| DtlsError::Certificate {
            path: path.to_path_buf(),
            reason: format!("{what}: {}", error_text(r)),
        };
        let _guard = lock();
        // SAFETY: each object is a fresh zeroed allocation (plain memory, valid when zero)
        // initialised by its init function, owned by `self` from the moment it is stored
        // (freed in Drop, also when a later step fails). The parse functions read the given
        // buffers (live, with their lengths) and copy what they keep. The configuration keeps
        // pointers to the three objects, which live as long as it.
        unsafe {
            self.own_cert = Box::into_raw(Box::new(std::mem::zeroed()));
            m::mbedtls_x509_crt_init(self.own_cert);
            self.own_key = Box::into_raw(Box::new(std::mem::zeroed()));
            m::mbedtls_pk_init(self.own_key);
            self.ca = Box::into_raw(Box::new(std::mem::zeroed()));
            m::mbedtls_x509_crt_init(self.ca);
            let r = m::mbedtls_x509_crt_parse(self.own_cert, cert_pem.as_ptr(), cert_pem.len());
            if r != 0 {
                return Err(bad(&files.certificate, "not a PEM certificate chain", r));
            }
            let r = m::mbedtls_pk_parse_key(
                self.own_key,
                key_pem.as_ptr(),
                key_pem.len(),
                std::ptr::null(),
                0,
                Some(rng),
                std::ptr::null_mut(),
            );
            if r != 0 {
                return Err(bad(
                    &files.private_key,
                    "not an unencrypted PEM private key",
                    r,
                ));
            }
            let r = m::mbedtls_x509_crt_parse(self.ca, ca_pem.as_ptr(), ca_pem.len());
            if r != 0 {
                return Err(bad(&files.client_ca, "not PEM CA certificates", r));
            }
            let r = m::mbedtls_ssl_conf_own_cert(self.conf, self.own_cert, self.own_key);
            if r != 0 {
                return Err(bad(&files.private_key, "does not match the certificate", r));
            }
            m::mbedtls_ssl_conf_ca_chain(self.conf, self.ca, std::ptr::null_mut());
            // Certificate suites require a client certificate that chains to the CA; PSK
            // suites never ask for one.
            m::mbedtls_ssl_conf_authmode(self.conf, m::MBEDTLS_SSL_VERIFY_REQUIRED as c_int);
        }
        Ok(())
    }

    /// Replaces the PSK table.
    pub(super) fn set_psk(&self, table: PskTable) {
        *locked(&self.callbacks.psk) = table;
    }

    /// Starts a new cookie secret; the previous one still verifies.
    pub(super) fn rotate_cookie_secret(&self) {
        let mut fresh = [0u8; 32];
        if fill_random(&mut fresh) {
            let mut keys = locked(&self.callbacks.cookie);
            keys.previous = keys.current;
            keys.current = fresh;
        }
    }

    /// Whether a cookie was rejected since the last call.
    pub(super) fn take_cookie_rejected(&self) -> bool {
        std::mem::take(&mut locked(&self.callbacks.cookie).rejected)
    }

    /// The PSK identity the callback saw since the last call.
    pub(super) fn take_psk_identity(&self) -> Option<Result<Arc<str>, ()>> {
        locked(&self.callbacks.identity).take()
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _guard = lock();
        // SAFETY: every pointer is either null or an initialised object allocated with
        // Box::into_raw by this `Config`, freed here exactly once. No context uses the
        // configuration any more: each holds an `Arc` of it.
        unsafe {
            m::mbedtls_ssl_config_free(self.conf);
            drop(Box::from_raw(self.conf));
            if !self.own_cert.is_null() {
                m::mbedtls_x509_crt_free(self.own_cert);
                drop(Box::from_raw(self.own_cert));
            }
            if !self.own_key.is_null() {
                m::mbedtls_pk_free(self.own_key);
                drop(Box::from_raw(self.own_key));
            }
            if !self.ca.is_null() {
                m::mbedtls_x509_crt_free(self.ca);
                drop(Box::from_raw(self.ca));
            }
        }
    }
}

fn check(r: c_int, what: &str) -> Result<(), DtlsError> {
    if r == 0 {
        Ok(())
    } else {
        Err(DtlsError::Engine(format!("{what}: {}", error_text(r))))
    }
}

/// Server side: the key for the identity the client named, from the table.
unsafe extern "C" fn psk_callback(
    p: *mut c_void,
    ssl: *mut m::mbedtls_ssl_context,
    identity: *const c_uchar,
    len: usize,
) -> c_int {
    if p.is_null() || identity.is_null() {
        return -1;
    }
    // SAFETY: `p` is the `Callbacks` of the configuration (see `Config::new`), alive while
    // any context of it runs; only shared references are made.
    let callbacks = unsafe { &*(p as *const Callbacks) };
    // SAFETY: Mbed TLS hands the identity it received, `len` readable bytes, checked non-null.
    let named = unsafe { std::slice::from_raw_parts(identity, len) };
    let key = std::str::from_utf8(named).ok().and_then(|id| {
        locked(&callbacks.psk)
            .key(id)
            .map(|k| (Arc::<str>::from(id), k.to_vec()))
    });
    match key {
        Some((id, key)) => {
            *locked(&callbacks.identity) = Some(Ok(id));
            // SAFETY: `ssl` is the context whose handshake is running (valid for the call);
            // set_hs_psk copies the key.
            unsafe { m::mbedtls_ssl_set_hs_psk(ssl, key.as_ptr(), key.len()) }
        }
        None => {
            *locked(&callbacks.identity) = Some(Err(()));
            -1
        }
    }
}

/// HMAC-SHA256(secret, transport id), cut to [`COOKIE_LEN`].
fn cookie_for(secret: &[u8; 32], info: &[u8]) -> Option<[u8; COOKIE_LEN]> {
    let mut tag = [0u8; 32];
    // SAFETY: md_info_from_type returns a pointer to a static descriptor or null (checked);
    // md_hmac reads the key and input (live, with their lengths) and writes 32 bytes to
    // `tag`, which has 32.
    let r = unsafe {
        let md = m::mbedtls_md_info_from_type(m::mbedtls_md_type_t_MBEDTLS_MD_SHA256);
        if md.is_null() {
            return None;
        }
        m::mbedtls_md_hmac(
            md,
            secret.as_ptr(),
            secret.len(),
            info.as_ptr(),
            info.len(),
            tag.as_mut_ptr(),
        )
    };
    if r != 0 {
        return None;
    }
    let mut cookie = [0u8; COOKIE_LEN];
    cookie.copy_from_slice(tag.get(..COOKIE_LEN)?);
    Some(cookie)
}

/// Writes the cookie for the client's transport id (its address and port).
unsafe extern "C" fn cookie_write(
    p: *mut c_void,
    out: *mut *mut c_uchar,
    end: *mut c_uchar,
    info: *const c_uchar,
    ilen: usize,
) -> c_int {
    const FAIL: c_int = m::MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    if p.is_null() || out.is_null() || info.is_null() {
        return FAIL;
    }
    // SAFETY: `p` is the configuration's `Callbacks` (shared references only); `info` is
    // the transport id set on the context, `ilen` readable bytes.
    let (callbacks, info) = unsafe {
        (
            &*(p as *const Callbacks),
            std::slice::from_raw_parts(info, ilen),
        )
    };
    let secret = locked(&callbacks.cookie).current;
    let Some(cookie) = cookie_for(&secret, info) else {
        return FAIL;
    };
    // SAFETY: `*out` and `end` delimit the writable space Mbed TLS left in its output buffer
    // (same allocation, `*out <= end`); the cookie is written only if it fits, then `*out` is
    // advanced past it, as the callback's contract asks.
    unsafe {
        let at = *out;
        if at.is_null() || (end as usize).saturating_sub(at as usize) < COOKIE_LEN {
            return m::MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
        }
        std::ptr::copy_nonoverlapping(cookie.as_ptr(), at, COOKIE_LEN);
        *out = at.add(COOKIE_LEN);
    }
    0
}

/// Checks a cookie against the current and the previous secret, in constant time.
unsafe extern "C" fn cookie_check(
    p: *mut c_void,
    cookie: *const c_uchar,
    clen: usize,
    info: *const c_uchar,
    ilen: usize,
) -> c_int {
    if p.is_null() || info.is_null() {
        return -1;
    }
    // SAFETY: as in `cookie_write`.
    let (callbacks, info) = unsafe {
        (
            &*(p as *const Callbacks),
            std::slice::from_raw_parts(info, ilen),
        )
    };
    if clen == 0 || cookie.is_null() {
        return -1;
    }
    // SAFETY: Mbed TLS hands the cookie from the ClientHello, `clen` readable bytes.
    let given = unsafe { std::slice::from_raw_parts(cookie, clen) };
    let mut keys = locked(&callbacks.cookie);
    let matches = |secret: &[u8; 32]| {
        cookie_for(secret, info).is_some_and(|expected| {
            given.len() == COOKIE_LEN
                && expected
                    .iter()
                    .zip(given)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    };
    if matches(&keys.current) || matches(&keys.previous) {
        0
    } else {
        keys.rejected = true;
        -1
    }
}

// ---------------------------------------------------------------------------------------------
// one context

/// Read buffers kept per context (see `IoState::spare`): a handshake flight of several
/// datagrams allocates again, and a context keeps at most this many...
const SPARE_BUFFERS: usize = 1;
/// ...of at most this capacity, so that one large datagram does not stay allocated with
/// every connection (a mote's MQTT-SN datagrams are far smaller).
const SPARE_CAPACITY: usize = 1536;

/// The datagram queues and the timer under one context, reached by its callbacks.
struct Io {
    state: RefCell<IoState>,
}

struct IoState {
    incoming: VecDeque<Vec<u8>>,
    /// Buffers of datagrams Mbed TLS has read, kept for the next ones: an established
    /// connection takes one datagram at a time, so one buffer serves it without an
    /// allocation per datagram.
    spare: Vec<Vec<u8>>,
    outgoing: Vec<Vec<u8>>,
    now: Instant,
    /// The intermediate and final deadlines Mbed TLS set (`None`: cancelled).
    timer: Option<(Instant, Instant)>,
}

unsafe extern "C" fn bio_send(p: *mut c_void, buf: *const c_uchar, len: usize) -> c_int {
    if p.is_null() || buf.is_null() {
        return m::MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    // SAFETY: `p` is the context's boxed `Io` (see `Context::new`), alive while the context
    // is; `buf` holds `len` bytes Mbed TLS wrote.
    let (io, data) = unsafe { (&*(p as *const Io), std::slice::from_raw_parts(buf, len)) };
    let Ok(mut state) = io.state.try_borrow_mut() else {
        return m::MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    };
    state.outgoing.push(data.to_vec());
    c_int::try_from(len).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn bio_recv(p: *mut c_void, buf: *mut c_uchar, len: usize) -> c_int {
    if p.is_null() || buf.is_null() {
        return m::MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    }
    // SAFETY: as in `bio_send`; `buf` has room for `len` bytes.
    let (io, out) = unsafe { (&*(p as *const Io), std::slice::from_raw_parts_mut(buf, len)) };
    let Ok(mut state) = io.state.try_borrow_mut() else {
        return m::MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    };
    match state.incoming.pop_front() {
        None => m::MBEDTLS_ERR_SSL_WANT_READ,
        Some(datagram) => {
            // A datagram longer than the buffer is cut, as a socket would; the record layer
            // then rejects it.
            let n = datagram.len().min(out.len());
            if let (Some(to), Some(from)) = (out.get_mut(..n), datagram.get(..n)) {
                to.copy_from_slice(from);
            }
            if state.spare.len() < SPARE_BUFFERS && datagram.capacity() <= SPARE_CAPACITY {
                state.spare.push(datagram);
            }
            c_int::try_from(n).unwrap_or(c_int::MAX)
        }
    }
}

unsafe extern "C" fn timer_set(p: *mut c_void, intermediate_ms: u32, final_ms: u32) {
    if p.is_null() {
        return;
    }
    // SAFETY: as in `bio_send`.
    let io = unsafe { &*(p as *const Io) };
    let Ok(mut state) = io.state.try_borrow_mut() else {
        return;
    };
    state.timer = (final_ms != 0).then(|| {
        let now = state.now;
        (
            now + Duration::from_millis(u64::from(intermediate_ms)),
            now + Duration::from_millis(u64::from(final_ms)),
        )
    });
}

unsafe extern "C" fn timer_get(p: *mut c_void) -> c_int {
    if p.is_null() {
        return -1;
    }
    // SAFETY: as in `bio_send`.
    let io = unsafe { &*(p as *const Io) };
    let Ok(state) = io.state.try_borrow() else {
        return -1;
    };
    match state.timer {
        None => -1,
        Some((_, fin)) if state.now >= fin => 2,
        Some((int, _)) if state.now >= int => 1,
        Some(_) => 0,
    }
}

/// How a call into a context ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Success: for a read, the bytes read.
    Done(usize),
    /// Needs another datagram (or the timer).
    WantRead,
    /// A HelloVerifyRequest went out (listener).
    HelloVerifyRequired,
    /// The peer sent close_notify.
    CloseNotify,
    /// A fatal error (the code).
    Error(i32),
}

fn outcome(r: c_int) -> Outcome {
    match r {
        r if r >= 0 => Outcome::Done(usize::try_from(r).unwrap_or(0)),
        r if r == m::MBEDTLS_ERR_SSL_WANT_READ || r == m::MBEDTLS_ERR_SSL_WANT_WRITE => {
            Outcome::WantRead
        }
        r if r == m::MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED => Outcome::HelloVerifyRequired,
        r if r == m::MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY => Outcome::CloseNotify,
        r => Outcome::Error(r),
    }
}

/// One `mbedtls_ssl_context` over in-memory datagram queues.
pub(super) struct Context {
    ssl: *mut m::mbedtls_ssl_context,
    io: Box<Io>,
    config: Arc<Config>,
}

// SAFETY: `ssl` is owned by the `Context` (freed in its Drop) and used only through Mbed TLS
// calls under [`lock`]; the `Io` it points to is owned by the same `Context` and moves with it
// (its address does not change: it is boxed). Nothing here is tied to a thread.
unsafe impl Send for Context {}

impl Context {
    /// A context set up with `config`, talking through its own queues, MTU `mtu`.
    pub(super) fn new(config: &Arc<Config>, mtu: u16) -> Result<Context, DtlsError> {
        let io = Box::new(Io {
            state: RefCell::new(IoState {
                incoming: VecDeque::new(),
                spare: Vec::new(),
                outgoing: Vec::new(),
                now: Instant::now(),
                timer: None,
            }),
        });
        let guard = lock();
        // SAFETY: a zeroed `mbedtls_ssl_context` is plain memory that mbedtls_ssl_init sets
        // up; boxed, so its address stays put; owned by the returned `Context` (freed in
        // Drop, also if setup fails).
        let ssl = Box::into_raw(Box::new(unsafe { std::mem::zeroed() }));
        // SAFETY: `ssl` is fresh and exclusively owned.
        unsafe { m::mbedtls_ssl_init(ssl) };
        let context = Context {
            ssl,
            io,
            config: Arc::clone(config),
        };
        let p = &*context.io as *const Io as *mut c_void;
        // SAFETY: `context.config.conf` is a configured `mbedtls_ssl_config` that outlives
        // the context (it holds the Arc). `p` is the context's boxed `Io`, which lives until
        // after mbedtls_ssl_free in Drop; the callbacks only use shared references to it.
        let r = unsafe {
            let r = m::mbedtls_ssl_setup(context.ssl, context.config.conf);
            m::mbedtls_ssl_set_bio(context.ssl, p, Some(bio_send), Some(bio_recv), None);
            m::mbedtls_ssl_set_timer_cb(context.ssl, p, Some(timer_set), Some(timer_get));
            m::mbedtls_ssl_set_mtu(context.ssl, mtu);
            r
        };
        drop(guard);
        check(r, "mbedtls_ssl_setup")?;
        Ok(context)
    }

    /// The configuration the context was set up with.
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    fn state(&self) -> std::cell::RefMut<'_, IoState> {
        // No callback runs outside a call into Mbed TLS, and none is running while Rust code
        // of this file holds `&self`: the borrow cannot conflict.
        self.io.state.borrow_mut()
    }

    /// The time the timer callbacks read.
    pub(super) fn set_now(&mut self, now: Instant) {
        self.state().now = now;
    }

    /// Queues one datagram for the next call.
    pub(super) fn feed(&mut self, datagram: &[u8]) {
        let mut state = self.state();
        let mut buffer = state.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(datagram);
        state.incoming.push_back(buffer);
    }

    /// Moves what Mbed TLS wrote to `out`.
    pub(super) fn take_output(&mut self, out: &mut Vec<Vec<u8>>) {
        out.append(&mut self.state().outgoing);
    }

    /// Whether a retransmission timer runs (a flight is out).
    pub(super) fn timer_running(&self) -> bool {
        self.state().timer.is_some()
    }

    /// Time left until the final deadline of the timer.
    pub(super) fn timer_left(&self) -> Option<Duration> {
        let state = self.state();
        state
            .timer
            .map(|(_, fin)| fin.saturating_duration_since(state.now))
    }

    /// Resets the context for a new ClientHello from the peer with `transport_id`, giving it
    /// `cid` as our Connection ID. Clears the queues and the timer.
    pub(super) fn reset_for(
        &mut self,
        transport_id: &[u8],
        cid: Option<&[u8; 8]>,
    ) -> Result<(), i32> {
        {
            let mut state = self.state();
            state.incoming.clear();
            state.outgoing.clear();
            state.timer = None;
        }
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context owned by `self`; session_reset keeps its
        // configuration and callbacks. The transport id and CID are live buffers with their
        // lengths; Mbed TLS copies both.
        let r = unsafe {
            let r = m::mbedtls_ssl_session_reset(self.ssl);
            if r != 0 {
                return Err(r);
            }
            let r = m::mbedtls_ssl_set_client_transport_id(
                self.ssl,
                transport_id.as_ptr(),
                transport_id.len(),
            );
            if r != 0 {
                return Err(r);
            }
            match cid {
                Some(cid) => m::mbedtls_ssl_set_cid(
                    self.ssl,
                    m::MBEDTLS_SSL_CID_ENABLED as c_int,
                    cid.as_ptr(),
                    cid.len(),
                ),
                None => 0,
            }
        };
        if r == 0 {
            Ok(())
        } else {
            Err(r)
        }
    }

    /// Client: ask for a Connection ID (our own is empty).
    pub(super) fn request_cid(&self) -> Result<(), DtlsError> {
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context owned by `self`; a null CID of length 0 is
        // what the API documents for "no CID of our own".
        let r = unsafe {
            m::mbedtls_ssl_set_cid(
                self.ssl,
                m::MBEDTLS_SSL_CID_ENABLED as c_int,
                std::ptr::null(),
                0,
            )
        };
        drop(_guard);
        check(r, "mbedtls_ssl_set_cid")
    }

    /// Runs the handshake as far as the queued datagrams allow (also: resends a flight whose
    /// timer ran out).
    pub(super) fn handshake(&mut self) -> Outcome {
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context owned by `self`; the callbacks it runs reach
        // only memory owned by `self` and its configuration.
        outcome(unsafe { m::mbedtls_ssl_handshake(self.ssl) })
    }

    /// Reads one decrypted datagram into `buf`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Outcome {
        let _guard = lock();
        // SAFETY: as in `handshake`; `buf` is writable for its length.
        match outcome(unsafe { m::mbedtls_ssl_read(self.ssl, buf.as_mut_ptr(), buf.len()) }) {
            // 0 would mean the transport closed, which a queue never does.
            Outcome::Done(0) => Outcome::WantRead,
            other => other,
        }
    }

    /// Encrypts one datagram (one record).
    pub(super) fn write(&mut self, plaintext: &[u8]) -> Result<(), String> {
        let _guard = lock();
        // SAFETY: as in `handshake`; `plaintext` is readable for its length.
        let r = unsafe { m::mbedtls_ssl_write(self.ssl, plaintext.as_ptr(), plaintext.len()) };
        match outcome(r) {
            Outcome::Done(n) if n == plaintext.len() => Ok(()),
            Outcome::Done(n) => Err(format!(
                "only {n} of {} bytes fit in a record (MTU)",
                plaintext.len()
            )),
            Outcome::Error(code) => Err(error_text(code)),
            other => Err(format!("{other:?}")),
        }
    }

    /// Sends close_notify (best effort).
    pub(super) fn close_notify(&mut self) {
        let _guard = lock();
        // SAFETY: as in `handshake`.
        let _ = unsafe { m::mbedtls_ssl_close_notify(self.ssl) };
    }

    /// The IANA number of the negotiated cipher suite (0 before the handshake chose one).
    pub(super) fn ciphersuite_id(&self) -> i32 {
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context owned by `self`; the call only reads it, and
        // returns 0 while the context has no session yet.
        unsafe { m::mbedtls_ssl_get_ciphersuite_id_from_ssl(self.ssl) }
    }

    /// Whether the Connection ID extension was negotiated on this connection.
    pub(super) fn cid_negotiated(&self) -> bool {
        let mut enabled: c_int = 0;
        let mut peer = [0u8; m::MBEDTLS_SSL_CID_OUT_LEN_MAX as usize];
        let mut len = 0usize;
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context; the out-parameters are live and writable,
        // `peer` of the MBEDTLS_SSL_CID_OUT_LEN_MAX bytes the API asks for.
        let r = unsafe {
            m::mbedtls_ssl_get_peer_cid(self.ssl, &mut enabled, peer.as_mut_ptr(), &mut len)
        };
        r == 0 && enabled == m::MBEDTLS_SSL_CID_ENABLED as c_int
    }

    /// RFC 9146 §6: whether the datagram's first record authenticates, was not received
    /// before, and has a later sequence number (in the current epoch) than any record
    /// received so far. The context's state is unchanged.
    pub(super) fn record_is_authentic_and_newest(&self, datagram: &[u8]) -> bool {
        let (Some(epoch), Some(seq)) = (datagram.get(3..5), datagram.get(5..11)) else {
            return false;
        };
        let be = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let epoch = be(epoch);
        let seq = be(seq);
        // check_record decrypts in place: give it a copy.
        let mut copy = datagram.to_vec();
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context; `copy` is writable for its length.
        // check_record leaves the context's visible state unchanged (documented); the two
        // fields read afterwards are plain integers of the context (the current incoming
        // epoch and the top of the replay window, i.e. the highest sequence number that
        // authenticated in that epoch).
        unsafe {
            if m::mbedtls_ssl_check_record(self.ssl, copy.as_mut_ptr(), copy.len()) != 0 {
                return false;
            }
            let ssl = &*self.ssl;
            epoch == u64::from(ssl.private_in_epoch) && seq > ssl.private_in_window_top
        }
    }

    /// Why the peer's certificate did not verify.
    pub(super) fn verify_failure(&self) -> String {
        let mut buf = [0u8; 256];
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context; verify_info writes a NUL-terminated string
        // of at most `buf.len()` bytes into `buf`, and the prefix is a NUL-terminated literal.
        let flags = unsafe { m::mbedtls_ssl_get_verify_result(self.ssl) };
        let r = unsafe {
            m::mbedtls_x509_crt_verify_info(buf.as_mut_ptr().cast(), buf.len(), c"".as_ptr(), flags)
        };
        if r <= 0 {
            return format!("verification flags 0x{flags:x}");
        }
        CStr::from_bytes_until_nul(&buf)
            .map(|s| s.to_string_lossy().trim().replace('\n', "; "))
            .unwrap_or_else(|_| format!("verification flags 0x{flags:x}"))
    }

    /// The peer certificate's CN, else its first DNS name.
    pub(super) fn peer_certificate_name(&self) -> Option<String> {
        let _guard = lock();
        // SAFETY: `self.ssl` is a set-up context; get_peer_cert returns null or a pointer to
        // the certificate the context keeps (MBEDTLS_SSL_KEEP_PEER_CERTIFICATE) while it
        // lives. The name and SAN lists are linked lists of nodes inside it, each `p`/`len`
        // pair a readable buffer of the parsed certificate; all is read under the lock and
        // copied out before it ends.
        unsafe {
            let cert = m::mbedtls_ssl_get_peer_cert(self.ssl);
            if cert.is_null() {
                return None;
            }
            let bytes = |buf: &m::mbedtls_asn1_buf| -> Option<String> {
                if buf.p.is_null() {
                    return None;
                }
                let b = std::slice::from_raw_parts(buf.p, buf.len);
                std::str::from_utf8(b)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let mut name: *const m::mbedtls_x509_name = &(*cert).subject;
            while !name.is_null() {
                let n = &*name;
                // 2.5.4.3: commonName.
                let is_cn = !n.oid.p.is_null()
                    && std::slice::from_raw_parts(n.oid.p, n.oid.len) == [0x55, 0x04, 0x03];
                if is_cn {
                    if let Some(cn) = bytes(&n.val) {
                        return Some(cn);
                    }
                }
                name = n.next;
            }
            let mut san: *const m::mbedtls_x509_sequence = &(*cert).subject_alt_names;
            while !san.is_null() {
                let s = &*san;
                // [2] IA5String: dNSName (context-specific tag 2).
                if s.buf.tag == 0x82 {
                    if let Some(dns) = bytes(&s.buf) {
                        return Some(dns);
                    }
                }
                san = s.next;
            }
            None
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _guard = lock();
        // SAFETY: `self.ssl` came from Box::into_raw in `new` and was initialised there; it
        // is freed here exactly once, while its configuration and `Io` are still alive
        // (fields drop after this).
        unsafe {
            m::mbedtls_ssl_free(self.ssl);
            drop(Box::from_raw(self.ssl));
        }
    }
}
