//! Transparent mode's broker side: one MQTT connection per mote, each a small tokio task.
//!
//! A mote link connects with the mote's client id (after the configured prefix), keep-alive,
//! CleanSession and Will, and the mote's login (its `[[credentials]]` entry, else the
//! `[broker]` one). It reuses the aggregating link's [`Connection`] for the QoS bookkeeping
//! (core publish ids, delivery ids, manual acknowledgements, the progress watchdog), with a
//! small window: rumqttc pre-allocates per packet id, so 16 ids instead of 65 535 is what makes
//! 10 000 connections fit in memory.
//!
//! - The first attempt decides: a refused CONNACK, or a broker that cannot be reached within
//!   `connect_timeout`, is reported as [`BrokerEvent::Refused`] and the task ends.
//! - A connection that was up and is lost is reported as `Disconnected` and opened again with
//!   backoff; `Connected` follows, and the core replays. A refusal then for the login, the
//!   authorization or the client id ends the task with `Refused`; an unavailable broker is
//!   retried.
//! - Connection attempts, first or not, each take a permit of a semaphore of
//!   `max_connecting`: a storm of motes connecting at once reaches the broker a bounded
//!   number at a time.
//! - Commands that arrive while there is no connection are dropped (the core sends nothing
//!   before `Connected` and replays after it); a clean close is honoured at any time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, NetworkOptions, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::link::{End, MAX_MQTT_PACKET};
use super::rumqttc_connection::{to_rumqttc, Connection, Input};
use sn_config::CredentialsConfig;

use super::{Backoff, BrokerLinkConfig};
use crate::core::{BrokerCommand, BrokerEvent, MoteWill, Refusal};

/// Requests queued inside each mote's rumqttc client; beyond it the link's backlog holds them.
const REQUEST_CAPACITY: usize = 10;
/// Most QoS 1/2 publishes in flight on one mote's connection (and rumqttc's packet-id space).
pub const MAX_MOTE_INFLIGHT: u16 = 16;
/// The shortest keep-alive a mote's connection gets, whatever the mote asked for.
pub const MIN_MOTE_KEEP_ALIVE: Duration = Duration::from_secs(5);
/// The longest keep-alive MQTT can carry.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(65_535);
/// How long a new connection waits for the one it replaces to be gone.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(6);

/// What transparent mode needs: `[broker]` (the broker, the shared login, the client id
/// prefix, the connection-attempt limit) and each mote's own login (`[[credentials]]`), as
/// the configuration defines them, with the password files read and the TLS files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransparentSettings {
    /// Host, port, TLS (CA file, shared client certificate), the shared user name and
    /// password, `connect_timeout`, the reconnect delays and `max_inflight` (capped at
    /// [`MAX_MOTE_INFLIGHT`]); `client_id_prefix`, put in front of each mote's client id
    /// upstream; `max_connecting`, the motes' connections being opened at once (at least 1).
    /// Its `client_id`, `keep_alive` and `clean_session` are the gateway's own connection's;
    /// a mote's connection takes the mote's (its keep-alive at least
    /// [`MIN_MOTE_KEEP_ALIVE`]); the watchdog uses `keep_alive`.
    pub broker: BrokerLinkConfig,
    /// Per-mote logins. A part an entry leaves out comes from `[broker]`. Each entry's
    /// `password` is the one its connection logs in with: read from `password_file` when
    /// that is set.
    pub credentials: Vec<CredentialsConfig>,
}

/// Why transparent mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MoteLinkError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}; check {field} in the config")]
    File {
        /// Which file.
        what: &'static str,
        /// Its option, like `broker.ca_file` or `credentials "mote-1" client_cert`.
        field: String,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error("{path} holds no {what} in PEM form; check {field} in the config")]
    NoPem {
        /// What was looked for.
        what: &'static str,
        /// Its option.
        field: String,
        /// Its path.
        path: PathBuf,
    },
    /// rustls refused a certificate or key.
    #[error("the TLS setup with {field} failed: {source}")]
    Tls {
        /// The option concerned.
        field: String,
        /// rustls's reason.
        source: rumqttc::tokio_rustls::rustls::Error,
    },
    /// A mote has a client certificate, but the broker is not TLS.
    #[error("[[credentials]] give mote {client_id:?} a client certificate, but the broker url is not mqtts://")]
    CertificateWithoutTls {
        /// The mote.
        client_id: String,
    },
}

/// What a mote's connection is opened with (from [`crate::core::BrokerCommand::Connect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoteConnect {
    /// The mote's keep-alive (raised to [`MIN_MOTE_KEEP_ALIVE`]).
    pub keep_alive: Duration,
    /// The mote's CleanSession.
    pub clean_session: bool,
    /// The mote's Will.
    pub will: Option<MoteWill>,
    /// Whether the mote's own `[[credentials]]` login may be used (the policy bound the
    /// mote to where it connects from); otherwise the shared login.
    pub own_login: bool,
}

/// An event of one mote link. `generation` names the link among the successive ones of the
/// same client id, so that a late event of a replaced link can be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoteReport {
    /// The mote's client id (without the prefix).
    pub client_id: Arc<str>,
    /// The generation given to [`MoteConnector::open`].
    pub generation: u64,
    /// What happened.
    pub event: BrokerEvent,
}

/// A user name, a password and a transport: what a connection logs in with.
struct Login {
    username: Option<String>,
    password: Option<String>,
    /// Where `password` came from, read again at each connection.
    password_file: Option<std::path::PathBuf>,
    /// The option that names `password_file`, for the warning when it cannot be read.
    option: String,
    transport: Option<Transport>,
}

/// Opens mote links; holds what they all share: the broker's address and timings, the TLS
/// configurations (built once, shared by reference), the logins, the connection permits.
pub struct MoteConnector {
    host: String,
    port: u16,
    prefix: String,
    connect_timeout: Duration,
    reconnect_min: Duration,
    reconnect_max: Duration,
    window: u16,
    stall_timeout: Duration,
    permits: Semaphore,
    shared: Arc<Login>,
    logins: HashMap<String, Arc<Login>>,
}

impl std::fmt::Debug for MoteConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoteConnector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("prefix", &self.prefix)
            .field("logins", &self.logins.len())
            .finish_non_exhaustive()
    }
}

impl MoteConnector {
    /// Reads every TLS file and builds the TLS configurations, so that a wrong path or a bad
    /// certificate is reported at start, before any mote connects.
    pub fn new(settings: &TransparentSettings) -> Result<MoteConnector, MoteLinkError> {
        let b = &settings.broker;
        let roots = match &b.tls {
            Some(tls) => {
                super::install_crypto_provider();
                Some(Arc::new(root_store(&tls.ca_file)?))
            }
            None => None,
        };
        let shared_auth = b.tls.as_ref().and_then(|t| t.client_auth.clone());
        // `field` names an option in errors: "broker.client_cert", or "client_cert of the
        // [[credentials]] for \"m\"".
        let transport = |auth: Option<&(PathBuf, PathBuf)>,
                         field: &dyn Fn(&str) -> String|
         -> Result<Option<Transport>, MoteLinkError> {
            let Some(roots) = &roots else {
                return Ok(None);
            };
            let builder = ClientConfig::builder().with_root_certificates(roots.clone());
            let config = match auth {
                Some((cert, key)) => {
                    let (certs, key) = client_identity(cert, key, field)?;
                    builder
                        .with_client_auth_cert(certs, key)
                        .map_err(|source| MoteLinkError::Tls {
                            field: field("client_cert"),
                            source,
                        })?
                }
                None => builder.with_no_client_auth(),
            };
            Ok(Some(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            ))))
        };
        let shared_transport = transport(shared_auth.as_ref(), &|name| format!("broker.{name}"))?;
        let shared = Arc::new(Login {
            username: b.options.username.clone(),
            password: b.options.password.clone(),
            password_file: b.options.password_file.clone(),
            option: "broker.password_file".to_string(),
            transport: shared_transport.clone(),
        });
        let mut logins = HashMap::new();
        for entry in &settings.credentials {
            let (username, password, password_file, option) = match &entry.username {
                Some(name) => (
                    Some(name.clone()),
                    entry.password.clone(),
                    entry.password_file.clone(),
                    format!(
                        "password_file of the [[credentials]] for {:?}",
                        entry.client_id
                    ),
                ),
                None => (
                    b.options.username.clone(),
                    b.options.password.clone(),
                    b.options.password_file.clone(),
                    "broker.password_file".to_string(),
                ),
            };
            let client_auth = entry.client_cert.clone().zip(entry.client_key.clone());
            let transport = match &client_auth {
                Some(auth) => {
                    if roots.is_none() {
                        return Err(MoteLinkError::CertificateWithoutTls {
                            client_id: entry.client_id.clone(),
                        });
                    }
                    let id = &entry.client_id;
                    transport(Some(auth), &|name| {
                        format!("{name} of the [[credentials]] for {id:?}")
                    })?
                }
                None => shared_transport.clone(),
            };
            logins.insert(
                entry.client_id.clone(),
                Arc::new(Login {
                    username,
                    password,
                    password_file,
                    option,
                    transport,
                }),
            );
        }
        let window = b.options.max_inflight.clamp(1, MAX_MOTE_INFLIGHT);
        Ok(MoteConnector {
            host: b.options.host.clone(),
            port: b.options.port,
            prefix: b.options.client_id_prefix.clone(),
            connect_timeout: b.options.connect_timeout.max(Duration::from_millis(100)),
            reconnect_min: b.options.reconnect_min,
            reconnect_max: b.options.reconnect_max,
            window,
            stall_timeout: (b.options.keep_alive * 2).max(Duration::from_secs(10)),
            permits: Semaphore::new(usize::from(b.options.max_connecting.max(1))),
            shared,
            logins,
        })
    }

    /// The client id a mote's connection uses upstream: the prefix, then the mote's.
    pub fn upstream_id(&self, client_id: &str) -> String {
        format!("{}{client_id}", self.prefix)
    }

    /// Starts a link for the mote `client_id`. `previous` is the task of the link it
    /// replaces, closing: the new one connects when it has ended (or after a few seconds),
    /// so that the broker never sees both. Events go to `reports` with `generation`.
    pub fn open(
        self: &Arc<Self>,
        client_id: Arc<str>,
        generation: u64,
        connect: MoteConnect,
        previous: Option<JoinHandle<()>>,
        reports: mpsc::Sender<MoteReport>,
    ) -> MoteLink {
        let (commands, inputs) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            self.clone(),
            Reporter {
                client_id,
                generation,
                reports,
            },
            connect,
            previous,
            inputs,
        ));
        MoteLink { commands, task }
    }

    fn login(&self, client_id: &str, own_login: bool) -> Arc<Login> {
        let own = own_login.then(|| self.logins.get(client_id)).flatten();
        own.unwrap_or(&self.shared).clone()
    }

    fn new_client(&self, client_id: &str, connect: &MoteConnect) -> (AsyncClient, EventLoop) {
        let login = self.login(client_id, connect.own_login);
        let mut options =
            MqttOptions::new(self.upstream_id(client_id), self.host.clone(), self.port);
        options
            // rumqttc pings on its own every keep-alive, also while the mote sleeps.
            .set_keep_alive(
                connect
                    .keep_alive
                    .clamp(MIN_MOTE_KEEP_ALIVE, MAX_KEEP_ALIVE),
            )
            .set_clean_session(connect.clean_session)
            .set_manual_acks(true)
            .set_inflight(self.window)
            .set_max_packet_size(MAX_MQTT_PACKET, MAX_MQTT_PACKET)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some(will) = &connect.will {
            options.set_last_will(LastWill {
                topic: will.topic.to_string(),
                message: will.payload.clone(),
                qos: to_rumqttc(will.qos),
                retain: will.retain,
            });
        }
        if let Some(username) = &login.username {
            // The file again, at every connection: a changed password is used from the next.
            let password = super::password::current(
                login.password_file.as_deref(),
                login.password.as_ref(),
                &login.option,
            );
            options.set_credentials(username.clone(), password.unwrap_or_default());
        }
        if let Some(transport) = &login.transport {
            options.set_transport(transport.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        // rumqttc reserves room for 100 events (144 bytes each) per client; a mote's
        // connection rarely holds more than a few, and the queue grows when it must.
        // Measured: about 3 KiB less RSS per connection (docs/benchmarks.md).
        eventloop.state.events = std::collections::VecDeque::new();
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        (client, eventloop)
    }

    /// One connection attempt, holding a permit while it lasts.
    async fn attempt(
        &self,
        client_id: &str,
        connect: &MoteConnect,
    ) -> Result<(AsyncClient, EventLoop, bool), Failure> {
        // The semaphore is never closed; a closed one would mean no attempts at all.
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(Failure::Unreachable("shutting down".to_string()));
        };
        let (client, mut eventloop) = self.new_client(client_id, connect);
        match tokio::time::timeout(self.connect_timeout, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(ack))))
                if ack.code == ConnectReturnCode::Success =>
            {
                Ok((client, eventloop, ack.session_present))
            }
            Ok(Ok(other)) => Err(Failure::Unreachable(format!(
                "unexpected first packet {other:?}"
            ))),
            Ok(Err(ConnectionError::ConnectionRefused(code))) => Err(Failure::Refused(code)),
            Ok(Err(error)) => Err(Failure::Unreachable(error.to_string())),
            Err(_) => Err(Failure::Unreachable(format!(
                "no CONNACK within connect_timeout ({:?})",
                self.connect_timeout
            ))),
        }
    }
}

/// A running mote link.
#[derive(Debug)]
pub struct MoteLink {
    commands: mpsc::UnboundedSender<Input>,
    task: JoinHandle<()>,
}

impl MoteLink {
    /// Hands a command to the link; false when its task has ended (refused, or closed).
    pub fn command(&self, command: BrokerCommand) -> bool {
        self.commands.send(Input::Command(command)).is_ok()
    }

    /// Closes the link. `graceful`: what is queued goes out, then DISCONNECT (the broker
    /// discards the Will); otherwise the connection is dropped at once, without DISCONNECT
    /// (the broker publishes the Will). Returns the task, which ends by itself.
    pub fn close(self, graceful: bool) -> JoinHandle<()> {
        if graceful {
            // A task that has ended already has nothing to close.
            let _ = self.commands.send(Input::Disconnect);
        } else {
            self.task.abort();
        }
        self.task
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Why an attempt failed.
enum Failure {
    /// The broker answered CONNACK with a refusal.
    Refused(ConnectReturnCode),
    /// No CONNACK: the broker could not be reached, or said something else.
    Unreachable(String),
}

impl Failure {
    fn refusal(&self) -> Refusal {
        match self {
            // mosquitto 2 answers a wrong password with "not authorized" (0x05), not 0x04.
            Failure::Refused(ConnectReturnCode::BadUserNamePassword) => Refusal::BadCredentials,
            Failure::Refused(ConnectReturnCode::NotAuthorized) => Refusal::NotAuthorized,
            Failure::Refused(ConnectReturnCode::BadClientId) => Refusal::IdentifierRejected,
            Failure::Refused(_) | Failure::Unreachable(_) => Refusal::ServerUnavailable,
        }
    }

    fn reason(&self) -> String {
        match self {
            Failure::Refused(code) => super::link::refused(*code).to_string(),
            Failure::Unreachable(reason) => reason.clone(),
        }
    }
}

/// Sends a link's events, named by its client id and generation.
struct Reporter {
    client_id: Arc<str>,
    generation: u64,
    reports: mpsc::Sender<MoteReport>,
}

impl Reporter {
    fn report(&self, event: BrokerEvent) -> MoteReport {
        MoteReport {
            client_id: self.client_id.clone(),
            generation: self.generation,
            event,
        }
    }

    /// False when the runtime is gone.
    async fn send(&self, event: BrokerEvent) -> bool {
        self.reports.send(self.report(event)).await.is_ok()
    }
}

/// What the link does with an input while it has no connection.
enum Idle {
    /// A command for no connection: dropped.
    Drop,
    /// Closed, or the manager is gone: end.
    Stop,
}

fn idle(input: Option<Input>) -> Idle {
    match input {
        Some(Input::Command(_)) => Idle::Drop,
        Some(Input::Disconnect) | None => Idle::Stop,
    }
}

async fn run(
    connector: Arc<MoteConnector>,
    reporter: Reporter,
    connect: MoteConnect,
    previous: Option<JoinHandle<()>>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
) {
    let client_id = reporter.client_id.clone();
    if let Some(previous) = previous {
        let abort = previous.abort_handle();
        if tokio::time::timeout(REPLACE_TIMEOUT, previous)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    if !connect.clean_session && connector.upstream_id(&client_id).is_empty() {
        // MQTT 3.1.1 (3.1.3-8): an empty client id needs CleanSession; the broker would
        // answer 0x02 (and rumqttc refuses to build such a CONNECT).
        let _ = reporter
            .send(BrokerEvent::Refused(Refusal::IdentifierRejected))
            .await;
        return;
    }
    let mut backoff = Backoff::new(
        connector.reconnect_min,
        connector.reconnect_max,
        seed(&client_id),
    );
    let mut was_up = false;
    let mut failures: u64 = 0;
    loop {
        let attempt = connector.attempt(&client_id, &connect);
        tokio::pin!(attempt);
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                input = inputs.recv() => if let Idle::Stop = idle(input) { return },
            }
        };
        match outcome {
            Ok((client, eventloop, session_present)) => {
                let connection = Connection::with_limits(
                    client,
                    eventloop,
                    connector.window,
                    connector.stall_timeout,
                );
                // Whatever came meanwhile was for no connection: the core replays what
                // matters after `Connected`. A close is honoured on the new connection.
                loop {
                    match inputs.try_recv() {
                        Ok(Input::Command(_)) => {}
                        Ok(Input::Disconnect) => {
                            let _ = connection.disconnect().await;
                            return;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                if failures > 0 {
                    debug!(%client_id, attempts = failures + 1, "mote's broker connection restored");
                }
                failures = 0;
                backoff.reset();
                was_up = true;
                if !reporter
                    .send(BrokerEvent::Connected { session_present })
                    .await
                {
                    return;
                }
                let end = connection
                    .run_with(
                        &mut inputs,
                        |input| input,
                        &reporter.reports,
                        |event| reporter.report(event),
                    )
                    .await;
                match end {
                    End::Disconnected | End::Shutdown => return,
                    End::Reconnect => {
                        debug!(%client_id, "mote's broker connection lost; reconnecting");
                        if !reporter.send(BrokerEvent::Disconnected).await {
                            return;
                        }
                    }
                }
            }
            Err(failure) => {
                failures += 1;
                let refusal = failure.refusal();
                // The first attempt decides; later, only what retrying cannot cure does.
                if !was_up || refusal != Refusal::ServerUnavailable {
                    let upstream_id = connector.upstream_id(&client_id);
                    let reason = failure.reason();
                    match failure {
                        // What the operator must fix (a login, an ACL): once per mote.
                        Failure::Refused(_) => info!(
                            %client_id, %upstream_id, %reason,
                            "broker refused the mote's connection"
                        ),
                        // An outage: the core reports each mote's CONNECT refused.
                        Failure::Unreachable(_) => debug!(
                            %client_id, %upstream_id, %reason,
                            "cannot reach the broker for the mote's connection"
                        ),
                    }
                    let _ = reporter.send(BrokerEvent::Refused(refusal)).await;
                    return;
                }
                debug!(%client_id, reason = %failure.reason(), attempt = failures, "mote's broker connection still down");
            }
        }
        let sleep = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                input = inputs.recv() => if let Idle::Stop = idle(input) { return },
            }
        }
    }
}

/// A jitter seed that differs between motes and between runs.
fn seed(client_id: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    // FNV-1a over the client id.
    let hash = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash ^ (nanos << 17) ^ u64::from(std::process::id())
}

fn read(path: &Path, what: &'static str, field: &str) -> Result<Vec<u8>, MoteLinkError> {
    std::fs::read(path).map_err(|source| MoteLinkError::File {
        what,
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// The CA bundle, parsed once for every connection.
fn root_store(ca_file: &Path) -> Result<RootCertStore, MoteLinkError> {
    let field = "broker.ca_file";
    let pem = read(ca_file, "CA file", field)?;
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(MoteLinkError::NoPem {
            what: "CA certificate",
            field: field.to_string(),
            path: ca_file.to_path_buf(),
        });
    }
    Ok(roots)
}

/// A client certificate chain and its key. `field` names the options in errors.
fn client_identity(
    cert: &Path,
    key: &Path,
    field: &dyn Fn(&str) -> String,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), MoteLinkError> {
    let cert_field = field("client_cert");
    let key_field = field("client_key");
    let pem = read(cert, "client certificate", &cert_field)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(MoteLinkError::NoPem {
            what: "certificate",
            field: cert_field,
            path: cert.to_path_buf(),
        });
    }
    let pem = read(key, "client key", &key_field)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| MoteLinkError::NoPem {
        what: "private key (PKCS#8, PKCS#1 or SEC1)",
        field: key_field,
        path: key.to_path_buf(),
    })?;
    Ok((certs, key))
}
