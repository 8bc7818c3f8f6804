//! The aggregating broker link: one task that owns one MQTT connection to the broker at a
//! time, reconnecting with backoff, and the events it reports to the core.
//!
//! The connection itself (`connection.rs`) is a socket and rumqttc's MQTT codec under this
//! task, not rumqttc's client and event loop: the core owns QoS reliability, replay and
//! in-flight limits, so the link needs no client state machine of its own, and owning the
//! socket lets it write all the packets of a turn at once. Each connection starts from
//! nothing: the core replays everything unacknowledged after each `Connected`, so nothing
//! of an earlier connection is carried over (with rumqttc, its own replay silently dropped
//! its queue when the broker reported no session, and its open issues #1014/#1056 could
//! leave an event loop reconnecting without ever publishing again). A watchdog reconnects
//! when acknowledgements stop coming.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
use rumqttc::tokio_rustls::TlsConnector;
use rumqttc::ConnectReturnCode;
use sn_config::BrokerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::connection::{handshake, ConnectFailure, Connection, Inbound, Outbound};
use super::Backoff;
use crate::core::{BrokerCommand, BrokerEvent};

/// Largest MQTT packet accepted from or sent to the broker. Far above any MQTT-SN datagram;
/// the point is that a large retained message on a subscribed topic must not kill the
/// connection in a loop (rumqttc's default is 10 KiB).
pub(super) const MAX_MQTT_PACKET: usize = 4 * 1024 * 1024;
/// Events queued for the runtime; a full queue pauses reading from the broker (backpressure).
const EVENT_CAPACITY: usize = 1024;
/// Commands handed to the link and not yet taken by it, beyond which the runtime leaves the
/// core's commands in the core ([`BrokerLinkHandle::has_room`]): there QoS 0 messages are
/// bounded by `[gateway] max_pending_qos0`, instead of piling up in this channel when the
/// broker takes messages slower than the motes send them. Not a limit anything is dropped
/// at: a hand-off size, large enough that the link never waits for the runtime.
const LINK_QUEUE: usize = 1024;

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// Client certificate and key, for brokers that authenticate clients by certificate.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// What one broker link runs with: the `[broker]` options as the configuration defines them
/// ([`BrokerConfig`], the one place each option and its default is written), plus what the
/// gateway derived from them at start-up. Nothing here has a default of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLinkConfig {
    /// Address, client id, login, keep-alive, timeouts, reconnect delays, in-flight window.
    /// Its `password` is the one the link logs in with: read from `password_file` when that
    /// is set.
    pub options: BrokerConfig,
    /// For `mqtts://`: the TLS files, with the system CA bundle where no `ca_file` is set;
    /// `None` for plain `mqtt://`.
    pub tls: Option<TlsFiles>,
}

impl BrokerLinkConfig {
    /// The gateway's status topic on this broker (`status_topic` with `%i` put in), if any.
    pub fn status_topic(&self) -> Option<String> {
        self.options
            .status_topic
            .as_ref()
            .map(|topic| topic.replace("%i", &self.options.client_id))
    }
}

/// The retained payloads of the gateway's status topic.
pub(crate) const STATUS_ONLINE: &[u8] = b"online";
/// The status the broker publishes when the gateway's connection ends without a DISCONNECT
/// (its MQTT Will): a crash, a kill, a lost network, or a stop (which drops the connection).
pub(crate) const STATUS_OFFLINE: &[u8] = b"offline";

/// Why the link cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerLinkError {
    /// A TLS file holds nothing usable.
    #[error("{path} holds no {what} in PEM form; check broker.{field} in the config")]
    NoPem {
        /// What was looked for.
        what: &'static str,
        /// Its config key.
        field: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// rustls refused the client certificate or key.
    #[error("the TLS client certificate and key were refused: {source}; check broker.client_cert and broker.client_key")]
    ClientAuth {
        /// rustls's reason.
        source: rumqttc::tokio_rustls::rustls::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read {what} {path}: {source}; check broker.{field} in the config")]
    TlsFile {
        /// Which file.
        what: &'static str,
        /// Its config key.
        field: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The running link: send it commands, receive its events.
#[derive(Debug)]
pub struct BrokerLinkHandle {
    /// Commands from the core. Never blocks the runtime.
    commands: mpsc::UnboundedSender<BrokerCommand>,
    /// Commands in `commands` the link has not taken yet.
    queued: Arc<AtomicUsize>,
    /// Events for the core.
    pub events: mpsc::Receiver<BrokerEvent>,
    /// Notified each time the broker turns out unreachable: an attempt to connect failed, or
    /// a connection was lost. The runtime starts the fallback broker on the first.
    pub down: Arc<Notify>,
    /// The link task; it ends when the handle is dropped.
    pub task: JoinHandle<()>,
}

impl BrokerLinkHandle {
    /// Hands a command to the link; false when the link task is gone. Never blocks.
    pub fn send(&self, command: BrokerCommand) -> bool {
        // Counted before it is sent, so the link's decrement can never come first.
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.commands.send(command).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether the link has taken nearly all it was given, so more commands are useful now;
    /// when not, they are better left with the core (see [`LINK_QUEUE`]).
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < LINK_QUEUE
    }
}

/// The link took one command from the runtime's channel.
pub(super) fn took(queued: &AtomicUsize) {
    // Never below zero: every command was counted before it was sent.
    let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Starts the link task. It connects, reconnects with backoff and jitter, and reports.
pub fn spawn_link(config: BrokerLinkConfig) -> Result<BrokerLinkHandle, BrokerLinkError> {
    if config.tls.is_some() {
        // Two rustls providers are compiled in (see tls.rs): pick one before any TLS client.
        super::install_crypto_provider();
    }
    let tls = tls_connector(config.tls.as_ref())?;
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let queued = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(Notify::new());
    let task = tokio::spawn(run(
        config,
        tls,
        commands_rx,
        events_tx,
        queued.clone(),
        down.clone(),
    ));
    Ok(BrokerLinkHandle {
        commands: commands_tx,
        queued,
        events: events_rx,
        down,
        task,
    })
}

fn read(
    path: &PathBuf,
    what: &'static str,
    field: &'static str,
) -> Result<Vec<u8>, BrokerLinkError> {
    std::fs::read(path).map_err(|source| BrokerLinkError::TlsFile {
        what,
        field,
        path: path.clone(),
        source,
    })
}

/// Reads the TLS files and builds the TLS client configuration: at start, so that a wrong
/// path or a file without certificates is reported before anything runs, and again before
/// each connection ([`Link::reload_tls`]).
fn tls_connector(tls: Option<&TlsFiles>) -> Result<Option<TlsConnector>, BrokerLinkError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let ca = read(&tls.ca_file, "CA file", "ca_file")?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&ca).filter_map(Result::ok));
    if roots.is_empty() {
        return Err(BrokerLinkError::NoPem {
            what: "CA certificate",
            field: "ca_file",
            path: tls.ca_file.clone(),
        });
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match &tls.client_auth {
        Some((cert_path, key_path)) => {
            let pem = read(cert_path, "client certificate", "client_cert")?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(BrokerLinkError::NoPem {
                    what: "certificate",
                    field: "client_cert",
                    path: cert_path.clone(),
                });
            }
            let pem = read(key_path, "client key", "client_key")?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| BrokerLinkError::NoPem {
                what: "private key (PKCS#8, PKCS#1 or SEC1)",
                field: "client_key",
                path: key_path.clone(),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| BrokerLinkError::ClientAuth { source })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

/// Why a connection ended.
pub(super) enum End {
    /// Reconnect after the backoff.
    Reconnect,
    /// The runtime is gone: stop.
    Shutdown,
    /// DISCONNECT was sent as asked (transparent mode only, `rumqttc_connection.rs`).
    Disconnected,
}

/// What one connection attempt came to.
enum Attempt {
    /// It failed before CONNACK, or CONNACK refused.
    Failed(ConnectFailure),
    /// It was up and has ended.
    Ran(End),
}

/// What the link keeps from one connection to the next.
struct Link {
    config: BrokerLinkConfig,
    tls: Option<TlsConnector>,
    commands: mpsc::UnboundedReceiver<BrokerCommand>,
    events: mpsc::Sender<BrokerEvent>,
    queued: Arc<AtomicUsize>,
    endpoint: String,
    /// Failed attempts since the last connection that worked.
    failures: u64,
    backoff: Backoff,
    /// The receiver's state of the broker's QoS 1/2 messages, across connections.
    inbound: Inbound,
    /// The sender's state of the gateway's QoS 2 publishes, across connections.
    outbound: Outbound,
}

async fn run(
    config: BrokerLinkConfig,
    tls: Option<TlsConnector>,
    commands: mpsc::UnboundedReceiver<BrokerCommand>,
    events: mpsc::Sender<BrokerEvent>,
    queued: Arc<AtomicUsize>,
    down: Arc<Notify>,
) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let seed = u64::from(std::process::id()) ^ (nanos << 17);
    let backoff = Backoff::new(
        config.options.reconnect_min,
        config.options.reconnect_max,
        seed,
    );
    let endpoint = format!("{}:{}", config.options.host, config.options.port);
    let mut link = Link {
        config,
        tls,
        commands,
        events,
        queued,
        endpoint,
        failures: 0,
        backoff,
        inbound: Inbound::default(),
        outbound: Outbound::default(),
    };
    loop {
        match link.attempt().await {
            Attempt::Ran(End::Shutdown) => return,
            Attempt::Ran(_) => down.notify_one(),
            Attempt::Failed(failure) => {
                down.notify_one();
                link.failures += 1;
                let reason = match failure {
                    ConnectFailure::Refused(code) => refused(code).to_string(),
                    ConnectFailure::Other(reason) => reason,
                };
                // Loud once per outage, then quiet: an edge box may be offline for hours.
                if link.failures == 1 {
                    warn!(broker = %link.endpoint, %reason, "cannot connect to broker; retrying with backoff");
                } else {
                    debug!(broker = %link.endpoint, %reason, attempt = link.failures, "broker still unreachable");
                }
            }
        }
        if link.commands.is_closed() {
            return;
        }
        let delay = link.backoff.next_delay();
        // Wait, but drop commands meanwhile: they are for a connection that does not exist,
        // and the core replays what matters after `Connected`.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                command = link.commands.recv() => match command {
                    Some(_) => took(&link.queued),
                    None => return,
                },
            }
        }
    }
}

impl Link {
    /// Reads the TLS files again before each connection, so that a renewed CA, certificate or
    /// key (announced with SIGHUP, or not) is used from the next connection on, as the
    /// password file is. Files that cannot be used now (being rewritten, say) leave the
    /// configuration read before, with a warning naming the file.
    fn reload_tls(&mut self) {
        if self.tls.is_none() {
            return;
        }
        match tls_connector(self.config.tls.as_ref()) {
            Ok(Some(connector)) => self.tls = Some(connector),
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "cannot use the broker's TLS files now: connecting with the ones read before");
            }
        }
    }

    /// One connection: TCP (and TLS), CONNECT and CONNACK within `connect_timeout`, then the
    /// connection until it ends.
    async fn attempt(&mut self) -> Attempt {
        self.reload_tls();
        let options = &self.config.options;
        let timeout = options
            .connect_timeout
            .max(std::time::Duration::from_secs(1));
        let addr = (options.host.clone(), options.port);
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Attempt::Failed(ConnectFailure::Other(format!("I/O: {e}"))),
            Err(_) => return Attempt::Failed(timed_out(timeout)),
        };
        // Small publishes must not wait for delayed ACKs (Nagle): the load tool measured QoS
        // 0 latency of +16 ms at p99 with it on (docs/benchmarks.md).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY on the broker connection");
        }
        match self.tls.clone() {
            None => self.serve(tcp, timeout).await,
            Some(connector) => {
                let name = match ServerName::try_from(options.host.clone()) {
                    Ok(name) => name,
                    Err(e) => {
                        return Attempt::Failed(ConnectFailure::Other(format!(
                            "the broker host {:?} is no valid TLS server name: {e}",
                            options.host
                        )))
                    }
                };
                match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                    Ok(Ok(tls)) => self.serve(tls, timeout).await,
                    Ok(Err(e)) => Attempt::Failed(ConnectFailure::Other(format!("TLS: {e}"))),
                    Err(_) => Attempt::Failed(timed_out(timeout)),
                }
            }
        }
    }

    /// CONNECT on an open stream, then the connection.
    async fn serve<S>(&mut self, mut stream: S, timeout: std::time::Duration) -> Attempt
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (ack, input) =
            match tokio::time::timeout(timeout, handshake(&mut stream, &self.config)).await {
                Ok(Ok(connected)) => connected,
                Ok(Err(failure)) => return Attempt::Failed(failure),
                Err(_) => return Attempt::Failed(timed_out(timeout)),
            };
        if self.failures > 0 {
            info!(broker = %self.endpoint, attempts = self.failures + 1, "broker link restored");
        } else {
            info!(broker = %self.endpoint, session_present = ack.session_present, "connected to broker");
        }
        self.failures = 0;
        self.backoff.reset();
        // Whatever the core sent before learning of the outage belongs to the old
        // connection; it replays all of it after `Connected`, in order.
        while self.commands.try_recv().is_ok() {
            took(&self.queued);
        }
        let connected = BrokerEvent::Connected {
            session_present: ack.session_present,
        };
        if self.events.send(connected).await.is_err() {
            return Attempt::Ran(End::Shutdown);
        }
        self.inbound.connected(ack.session_present);
        self.outbound.connected(ack.session_present);
        let mut connection = Connection::new(&self.config, input, &self.outbound);
        if let Some(topic) = self.config.status_topic() {
            connection.announce(&topic);
        }
        let end = connection
            .run(
                stream,
                &mut self.commands,
                &self.events,
                &self.queued,
                &mut self.inbound,
                &mut self.outbound,
            )
            .await;
        // On shutdown too: the stream is dropped without DISCONNECT, so the broker
        // publishes the Will ("offline" on the status topic).
        if self.events.send(BrokerEvent::Disconnected).await.is_err() {
            return Attempt::Ran(End::Shutdown);
        }
        Attempt::Ran(end)
    }
}

fn timed_out(timeout: std::time::Duration) -> ConnectFailure {
    ConnectFailure::Other(format!(
        "no connection within {timeout:?} (broker.connect_timeout)"
    ))
}

/// A refused CONNACK in words an operator can act on.
pub(super) fn refused(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadUserNamePassword => {
            "broker refused the user name or password (check broker.username / broker.password)"
        }
        // mosquitto (and others) answer a wrong password with "not authorized" (5), not
        // "bad user name or password" (4): say both causes, the likely one first.
        ConnectReturnCode::NotAuthorized => {
            "broker says not authorized: the user name or password is wrong, or this user may \
             not connect (check broker.username / broker.password / broker.password_file and \
             the broker's users)"
        }
        ConnectReturnCode::BadClientId => "broker refused the client id (check broker.client_id)",
        ConnectReturnCode::ServiceUnavailable => "broker unavailable",
        ConnectReturnCode::RefusedProtocolVersion => "broker does not speak MQTT 3.1.1",
        ConnectReturnCode::Success => "accepted",
    }
}

/// Whether the request's topic or filter is valid MQTT (as rumqttc's codec checks it), for
/// both the aggregating connection and transparent mode's.
pub(super) fn valid_request(command: &BrokerCommand) -> bool {
    match command {
        BrokerCommand::Publish(publish) => rumqttc::valid_topic(&publish.topic),
        BrokerCommand::Subscribe { filter, .. } | BrokerCommand::Unsubscribe { filter } => {
            rumqttc::valid_filter(filter)
        }
        BrokerCommand::Ack { .. } | BrokerCommand::Connect { .. } | BrokerCommand::Close { .. } => {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrong password comes back from mosquitto as "not authorized": the message must send
    /// the operator to the password first, not to an ACL (the new-user report of issue 16).
    #[test]
    fn not_authorized_names_the_password_first() {
        let text = refused(ConnectReturnCode::NotAuthorized);
        assert!(text.contains("password is wrong"), "{text}");
        assert!(!text.contains("ACL"), "{text}");
        assert!(refused(ConnectReturnCode::BadUserNamePassword).contains("broker.password"));
    }
}
