//! The rumqttc broker link: one task that owns one MQTT connection at a time.
//!
//! Each connection gets a brand-new rumqttc client and event loop. rumqttc's own replay of
//! unacknowledged publishes on reconnect is thereby never used: measured, it silently drops
//! its queue when the broker reports no session, and its open issues #1014/#1056 can leave an
//! event loop reconnecting without ever publishing again. The core replays everything
//! unacknowledged after each `Connected`, so a fresh client per connection loses nothing and
//! cannot livelock on stale state. A watchdog reconnects when acknowledgements stop coming.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, LastWill, MqttOptions,
    NetworkOptions, Outgoing, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use sn_config::BrokerConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::Backoff;
use crate::core::{BrokerCommand, BrokerEvent, DeliveryId, MqttQoS, PublishId};

/// Largest MQTT packet accepted from or sent to the broker. Far above any MQTT-SN datagram;
/// the point is that a large retained message on a subscribed topic must not kill the
/// connection in a loop (rumqttc's default is 10 KiB).
pub(super) const MAX_MQTT_PACKET: usize = 4 * 1024 * 1024;
/// Requests queued inside rumqttc; beyond this the link keeps its own backlog.
const REQUEST_CAPACITY: usize = 256;
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
fn took(queued: &AtomicUsize) {
    // Never below zero: every command was counted before it was sent.
    let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Starts the link task. It connects, reconnects with backoff and jitter, and reports.
pub fn spawn_link(config: BrokerLinkConfig) -> Result<BrokerLinkHandle, BrokerLinkError> {
    if config.tls.is_some() {
        // Two rustls providers are compiled in (see tls.rs): pick one before any TLS client.
        super::install_crypto_provider();
    }
    let transport = transport(config.tls.as_ref())?;
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let queued = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(run(
        config,
        transport,
        commands_rx,
        events_tx,
        queued.clone(),
    ));
    Ok(BrokerLinkHandle {
        commands: commands_tx,
        queued,
        events: events_rx,
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

/// Reads the TLS files once, at start, so that a wrong path is reported before anything runs.
fn transport(tls: Option<&TlsFiles>) -> Result<Option<Transport>, BrokerLinkError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let ca = read(&tls.ca_file, "CA file", "ca_file")?;
    let client_auth = match &tls.client_auth {
        Some((cert, key)) => Some((
            read(cert, "client certificate", "client_cert")?,
            read(key, "client key", "client_key")?,
        )),
        None => None,
    };
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })))
}

pub(super) fn to_rumqttc(qos: MqttQoS) -> QoS {
    match qos {
        MqttQoS::AtMostOnce => QoS::AtMostOnce,
        MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
        MqttQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_rumqttc(qos: QoS) -> MqttQoS {
    match qos {
        QoS::AtMostOnce => MqttQoS::AtMostOnce,
        QoS::AtLeastOnce => MqttQoS::AtLeastOnce,
        QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
    }
}

/// Why a connection ended.
pub(super) enum End {
    /// Reconnect after the backoff.
    Reconnect,
    /// The runtime is gone: stop.
    Shutdown,
    /// DISCONNECT was sent as asked ([`Input::Disconnect`]; transparent mode only).
    Disconnected,
}

/// What the owner of a [`Connection`] sends it. The aggregating link sends only commands;
/// a mote's link (transparent mode, `mote_link.rs`) also closes its connection cleanly.
pub(super) enum Input {
    /// A command from the core.
    Command(BrokerCommand),
    /// Hand what is queued to the broker, send DISCONNECT, and end.
    Disconnect,
}

/// How long a clean close may take to write DISCONNECT before the connection is dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn run(
    config: BrokerLinkConfig,
    transport: Option<Transport>,
    mut commands: mpsc::UnboundedReceiver<BrokerCommand>,
    events: mpsc::Sender<BrokerEvent>,
    queued: Arc<AtomicUsize>,
) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let seed = u64::from(std::process::id()) ^ (nanos << 17);
    let mut backoff = Backoff::new(
        config.options.reconnect_min,
        config.options.reconnect_max,
        seed,
    );
    let endpoint = format!("{}:{}", config.options.host, config.options.port);
    let mut failures: u64 = 0;
    loop {
        let (client, mut eventloop) = new_client(&config, transport.clone());
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack)))
                if ack.code == ConnectReturnCode::Success =>
            {
                if failures > 0 {
                    info!(broker = %endpoint, attempts = failures + 1, "broker link restored");
                } else {
                    info!(broker = %endpoint, session_present = ack.session_present, "connected to broker");
                }
                failures = 0;
                backoff.reset();
                // Whatever the core sent before learning of the outage belongs to the old
                // connection; it replays all of it after `Connected`, in order.
                while commands.try_recv().is_ok() {
                    took(&queued);
                }
                let connected = BrokerEvent::Connected {
                    session_present: ack.session_present,
                };
                if events.send(connected).await.is_err() {
                    return;
                }
                let mut connection = Connection::new(&config, client, eventloop);
                if let Some(topic) = config.status_topic() {
                    connection.announce(&topic);
                }
                let end = connection.run(&mut commands, &events, &queued).await;
                if events.send(BrokerEvent::Disconnected).await.is_err() {
                    return;
                }
                if let End::Shutdown = end {
                    return;
                }
            }
            outcome => {
                failures += 1;
                let reason = match outcome {
                    Ok(event) => format!("unexpected first packet {event:?}"),
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        refused(code).to_string()
                    }
                    Err(error) => error.to_string(),
                };
                // Loud once per outage, then quiet: an edge box may be offline for hours.
                if failures == 1 {
                    warn!(broker = %endpoint, %reason, "cannot connect to broker; retrying with backoff");
                } else {
                    debug!(broker = %endpoint, %reason, attempt = failures, "broker still unreachable");
                }
            }
        }
        if commands.is_closed() {
            return;
        }
        let delay = backoff.next_delay();
        // Wait, but drop commands meanwhile: they are for a connection that does not exist,
        // and the core replays what matters after `Connected`.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                command = commands.recv() => match command {
                    Some(_) => took(&queued),
                    None => return,
                },
            }
        }
    }
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

fn new_client(config: &BrokerLinkConfig, transport: Option<Transport>) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(
        config.options.client_id.clone(),
        config.options.host.clone(),
        config.options.port,
    );
    options
        .set_keep_alive(config.options.keep_alive.max(Duration::from_secs(1)))
        .set_clean_session(config.options.clean_session)
        .set_manual_acks(true)
        // rumqttc frees a QoS 2 packet id at PUBREC and hands it out again before PUBCOMP;
        // mosquitto then takes the new PUBLISH for a duplicate of the one it holds and drops
        // it. With the whole id space, an id comes round again only after 65 535 others; the
        // link enforces the configured window itself (`Connection::window`).
        .set_inflight(u16::MAX)
        .set_max_packet_size(MAX_MQTT_PACKET, MAX_MQTT_PACKET)
        .set_request_channel_capacity(REQUEST_CAPACITY);
    if let Some(username) = &config.options.username {
        // The file again, at every connection: a changed password is used from the next one.
        let password = super::password::current(
            config.options.password_file.as_deref(),
            config.options.password.as_ref(),
            "broker.password_file",
        );
        options.set_credentials(username.clone(), password.unwrap_or_default());
    }
    if let Some(transport) = transport {
        options.set_transport(transport);
    }
    if let Some(topic) = config.status_topic() {
        options.set_last_will(LastWill::new(topic, STATUS_OFFLINE, QoS::AtLeastOnce, true));
    }
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut network = NetworkOptions::new();
    network.set_connection_timeout(config.options.connect_timeout.as_secs().max(1));
    // Small publishes must not wait for delayed ACKs (Nagle): the load tool measured QoS 0
    // latency of +16 ms at p99 with it on (docs/benchmarks.md).
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// What rumqttc's event loop reported, in order, from the task that polls it.
type Polled = Result<Event, rumqttc::ConnectionError>;

/// Events queued between the polling task and the connection; a full queue makes the poller
/// wait, which stops reading from the broker (backpressure), never drops.
const POLLED_CAPACITY: usize = 32;

/// Polls rumqttc's event loop in a task of its own, forwarding every result, until the
/// connection fails or the receiver is gone.
///
/// Why a task: `EventLoop::poll` is not cancel-safe. It takes a request from its channel and
/// then awaits room in the socket's send buffer; dropping the future there (as a `select!`
/// does when another branch wins) drops the request: a QoS 0 message vanishes, a QoS 1/2
/// message is written nowhere yet reported as sent. Measured: about 0.1 % of QoS 0 messages
/// lost under overload (docs/benchmarks.md). Here the poll is never cancelled; the
/// connection's own `select!` waits on the channel, which is.
fn spawn_poller(mut eventloop: EventLoop) -> (mpsc::Receiver<Polled>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(POLLED_CAPACITY);
    let task = tokio::spawn(async move {
        loop {
            let polled = eventloop.poll().await;
            let failed = polled.is_err();
            if tx.send(polled).await.is_err() || failed {
                return;
            }
        }
    });
    (rx, task)
}

/// One live connection and the bookkeeping that maps rumqttc's packet ids to the core's ids.
pub(super) struct Connection {
    client: AsyncClient,
    /// What the polling task (see [`spawn_poller`]) reports.
    polled: mpsc::Receiver<Polled>,
    /// The polling task; aborted with the connection, which closes the socket.
    poller: JoinHandle<()>,
    /// Core ids of the publishes handed to rumqttc, in order; rumqttc reports each one's
    /// packet id, in the same order, as `Outgoing::Publish` when it writes it.
    publish_order: VecDeque<Option<PublishId>>,
    /// Packet id → core id of publishes awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    unacked: HashMap<u16, PublishId>,
    /// Packet id → core ids of QoS 2 publishes between PUBREC and PUBCOMP, oldest first:
    /// an id can be in release while a newer publish uses the same number.
    releasing: HashMap<u16, VecDeque<PublishId>>,
    /// Most QoS 1/2 publishes outstanding at once (broker.max_inflight).
    window: usize,
    subscribe_order: VecDeque<Arc<str>>,
    subscribes: HashMap<u16, Arc<str>>,
    /// Broker QoS 1/2 messages the core has not yet said it holds.
    deliveries: HashMap<u64, rumqttc::Publish>,
    next_delivery: u64,
    /// Commands rumqttc had no room for yet.
    backlog: VecDeque<BrokerCommand>,
    /// Last acknowledgement from the broker, for the watchdog.
    last_progress: Instant,
    stall_timeout: Duration,
    /// Transparent mode's small packet-id space (rumqttc's in-flight limit), `None` for the
    /// aggregating link's whole space: see [`Connection::pkid_blocked`].
    pkid_space: Option<u16>,
    /// The packet id rumqttc gave last (it counts 1, 2, ... `pkid_space`, then 1 again).
    last_pkid: u16,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The poller owns the socket: a dropped connection must not linger.
        self.poller.abort();
    }
}

impl Connection {
    fn new(config: &BrokerLinkConfig, client: AsyncClient, eventloop: EventLoop) -> Self {
        let (polled, poller) = spawn_poller(eventloop);
        Connection {
            client,
            polled,
            poller,
            publish_order: VecDeque::new(),
            unacked: HashMap::new(),
            releasing: HashMap::new(),
            window: usize::from(config.options.max_inflight.max(1)),
            subscribe_order: VecDeque::new(),
            subscribes: HashMap::new(),
            deliveries: HashMap::new(),
            next_delivery: 0,
            backlog: VecDeque::new(),
            last_progress: Instant::now(),
            // Long enough for a slow broker, short enough that a wedged connection is
            // replaced well before motes give up on their PUBACKs.
            stall_timeout: (config.options.keep_alive * 2).max(Duration::from_secs(10)),
            pkid_space: None,
            last_pkid: 0,
        }
    }

    /// A connection whose rumqttc client was made with `set_inflight(pkid_space)` (transparent
    /// mode: a small window per mote keeps 10 000 connections small).
    pub(super) fn with_limits(
        client: AsyncClient,
        eventloop: EventLoop,
        pkid_space: u16,
        stall_timeout: Duration,
    ) -> Self {
        let (polled, poller) = spawn_poller(eventloop);
        Connection {
            client,
            polled,
            poller,
            publish_order: VecDeque::new(),
            unacked: HashMap::new(),
            releasing: HashMap::new(),
            window: usize::from(pkid_space.max(1)),
            subscribe_order: VecDeque::new(),
            subscribes: HashMap::new(),
            deliveries: HashMap::new(),
            next_delivery: 0,
            backlog: VecDeque::new(),
            last_progress: Instant::now(),
            stall_timeout,
            pkid_space: Some(pkid_space.max(1)),
            last_pkid: 0,
        }
    }

    async fn run(
        self,
        commands: &mut mpsc::UnboundedReceiver<BrokerCommand>,
        events: &mpsc::Sender<BrokerEvent>,
        queued: &AtomicUsize,
    ) -> End {
        let input = |command| {
            took(queued);
            Input::Command(command)
        };
        self.run_with(commands, input, events, |event| event).await
    }

    /// Runs the connection until it is lost, the owner is gone, or it was asked to close.
    /// `input` and `output` adapt the owner's channels (the aggregating link's carry commands
    /// and events as they are; a mote link's carry [`Input`]s and events with its client id).
    pub(super) async fn run_with<C, E>(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<C>,
        input: impl Fn(C) -> Input,
        events: &mpsc::Sender<E>,
        output: impl Fn(BrokerEvent) -> E,
    ) -> End {
        loop {
            self.flush_backlog();
            let waiting = self.outstanding() > 0;
            if !waiting {
                self.last_progress = Instant::now();
            }
            let stall_at = self.last_progress + self.stall_timeout;
            tokio::select! {
                polled = self.polled.recv() => match polled {
                    Some(Ok(event)) => {
                        if let Some(out) = self.on_event(event) {
                            if events.send(output(out)).await.is_err() {
                                return End::Shutdown;
                            }
                        }
                    }
                    None => return End::Reconnect,
                    Some(Err(error)) => {
                        if self.pkid_space.is_some() {
                            // A mote's link: one line per mote would flood the log when the
                            // broker goes away under 10 000 of them.
                            debug!(%error, "mote's broker connection lost");
                        } else {
                            warn!(%error, "broker connection lost; reconnecting");
                        }
                        return End::Reconnect;
                    }
                },
                command = commands.recv(), if self.backlog.is_empty() => match command.map(&input) {
                    Some(Input::Command(command)) => self.backlog.push_back(command),
                    // The backlog is empty: everything before it is with rumqttc already.
                    Some(Input::Disconnect) => return self.disconnect().await,
                    None => {
                        let _ = self.client.try_disconnect();
                        return End::Shutdown;
                    }
                },
                _ = tokio::time::sleep_until(stall_at), if waiting => {
                    warn!(
                        timeout = ?self.stall_timeout,
                        unacked = self.outstanding(),
                        "broker acknowledged nothing for too long; reconnecting"
                    );
                    return End::Reconnect;
                }
            }
        }
    }

    /// Sends DISCONNECT after what rumqttc holds, waits until it is written (or the
    /// connection fails, or [`DISCONNECT_TIMEOUT`]), and ends. Events meanwhile are dropped:
    /// the owner is done with this connection.
    pub(super) async fn disconnect(mut self) -> End {
        let deadline = Instant::now() + DISCONNECT_TIMEOUT;
        let mut queued = false;
        loop {
            // rumqttc's request queue may be full; polling the event loop drains it.
            if !queued {
                queued = self.client.try_disconnect().is_ok();
            }
            tokio::select! {
                polled = self.polled.recv() => match polled {
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) | None => {
                        return End::Disconnected
                    }
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep_until(deadline) => return End::Disconnected,
            }
        }
    }

    /// Transparent mode only: whether the next packet id rumqttc will give is still in use
    /// upstream. rumqttc frees a QoS 2 packet id at PUBREC and hands it out again before
    /// PUBCOMP; with a small id space it would come round while the first is in release (the
    /// broker then drops the new PUBLISH as a duplicate). rumqttc gives ids in the order of
    /// the requests, so the next one is known; a request that would get a busy id waits in
    /// the backlog until it is free.
    fn pkid_blocked(&self) -> bool {
        match self.pkid_space {
            None => false,
            Some(_) => {
                let next = self.last_pkid.wrapping_add(1);
                self.releasing.contains_key(&next) || self.unacked.contains_key(&next)
            }
        }
    }

    /// Transparent mode only: a request that takes a packet id went to rumqttc.
    fn pkid_taken(&mut self) {
        if let Some(space) = self.pkid_space {
            let next = self.last_pkid.wrapping_add(1);
            self.last_pkid = if next >= space { 0 } else { next };
        }
    }

    /// QoS 1/2 publishes handed to rumqttc and not yet complete.
    fn outstanding(&self) -> usize {
        self.publish_order.iter().filter(|id| id.is_some()).count()
            + self.unacked.len()
            + self.releasing.values().map(VecDeque::len).sum::<usize>()
    }

    /// Publishes the gateway's retained "online" status, first on the new connection (its
    /// Will says "offline"). Not one of the core's publishes: its place in the publish order
    /// carries no id, so its PUBACK completes nothing.
    fn announce(&mut self, topic: &str) {
        let sent = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, STATUS_ONLINE.to_vec())
            .is_ok();
        if sent {
            self.publish_order.push_back(None);
        } else {
            warn!(topic, "could not publish the gateway's online status");
        }
    }

    /// Hands queued commands to rumqttc while it has room and the window allows.
    fn flush_backlog(&mut self) {
        while let Some(command) = self.backlog.pop_front() {
            let takes_pkid = match &command {
                BrokerCommand::Publish(publish) => publish.qos != MqttQoS::AtMostOnce,
                BrokerCommand::Subscribe { .. } | BrokerCommand::Unsubscribe { .. } => true,
                BrokerCommand::Ack { .. }
                | BrokerCommand::Connect { .. }
                | BrokerCommand::Close { .. } => false,
            };
            let accepted = match &command {
                BrokerCommand::Publish(publish)
                    if publish.id.is_some() && self.outstanding() >= self.window =>
                {
                    false
                }
                _ if takes_pkid && self.pkid_blocked() => false,
                // rumqttc refuses an invalid topic or filter with the same error as a full
                // queue: retried, it would block every later command for good. The core
                // refuses such names before they get here; were one to slip through, it is
                // dropped and logged rather than stall the link.
                _ if !valid_request(&command) => {
                    error!(?command, "dropped a broker request with an invalid MQTT topic or filter (a gateway bug: the core should have refused it)");
                    continue;
                }
                BrokerCommand::Publish(publish) => {
                    let sent = self
                        .client
                        .try_publish(
                            &*publish.topic,
                            to_rumqttc(publish.qos),
                            publish.retain,
                            publish.payload.to_vec(),
                        )
                        .is_ok();
                    if sent {
                        self.publish_order.push_back(publish.id);
                    }
                    sent
                }
                BrokerCommand::Subscribe { filter, qos } => {
                    let sent = self
                        .client
                        .try_subscribe(&**filter, to_rumqttc(*qos))
                        .is_ok();
                    if sent {
                        self.subscribe_order.push_back(filter.clone());
                    }
                    sent
                }
                BrokerCommand::Unsubscribe { filter } => {
                    self.client.try_unsubscribe(&**filter).is_ok()
                }
                BrokerCommand::Ack { delivery } => match self.deliveries.remove(&delivery.0) {
                    Some(publish) => {
                        let sent = self.client.try_ack(&publish).is_ok();
                        if !sent {
                            self.deliveries.insert(delivery.0, publish);
                        }
                        sent
                    }
                    // From an earlier connection: the broker redelivers it if it must.
                    None => true,
                },
                // The connection's own lifecycle is the runtime's (it opens and closes the
                // link); the core sends these only on a mote's route, where the runtime
                // carries them out before they could reach an open connection.
                BrokerCommand::Connect { .. } | BrokerCommand::Close { .. } => {
                    debug!("connection command on an open connection: ignored");
                    true
                }
            };
            if !accepted {
                self.backlog.push_front(command);
                return;
            }
            if takes_pkid {
                self.pkid_taken();
            }
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }
}

/// Whether rumqttc takes the request's topic or filter as valid MQTT.
fn valid_request(command: &BrokerCommand) -> bool {
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

impl Connection {
    fn on_event(&mut self, event: Event) -> Option<BrokerEvent> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(Some(id)) = self.publish_order.pop_front() {
                    if pkid != 0 {
                        self.unacked.insert(pkid, id);
                    }
                }
                None
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(filter) = self.subscribe_order.pop_front() {
                    self.subscribes.insert(pkid, filter);
                }
                None
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                self.progress();
                self.unacked
                    .remove(&ack.pkid)
                    .map(|id| BrokerEvent::PublishAcked { id })
            }
            Event::Incoming(Incoming::PubRec(rec)) => {
                self.progress();
                if let Some(id) = self.unacked.remove(&rec.pkid) {
                    self.releasing.entry(rec.pkid).or_default().push_back(id);
                }
                None
            }
            // QoS 2 counts as held once complete: if the connection dropped between PUBREC
            // and PUBCOMP, replaying it risks a duplicate, never a loss.
            Event::Incoming(Incoming::PubComp(comp)) => {
                self.progress();
                let queue = self.releasing.get_mut(&comp.pkid)?;
                let id = queue.pop_front();
                if queue.is_empty() {
                    self.releasing.remove(&comp.pkid);
                }
                id.map(|id| BrokerEvent::PublishAcked { id })
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                self.progress();
                let filter = self.subscribes.remove(&ack.pkid)?;
                let granted = match ack.return_codes.first() {
                    Some(SubscribeReasonCode::Success(qos)) => Some(from_rumqttc(*qos)),
                    _ => None,
                };
                if granted.is_none() {
                    warn!(%filter, "broker refused the subscription");
                }
                Some(BrokerEvent::SubAck { filter, granted })
            }
            Event::Incoming(Incoming::Publish(publish)) => {
                let delivery = if publish.qos == QoS::AtMostOnce {
                    None
                } else {
                    self.next_delivery += 1;
                    self.deliveries.insert(self.next_delivery, publish.clone());
                    Some(DeliveryId(self.next_delivery))
                };
                // The payload stays a slice of rumqttc's read buffer: measured with 100 000
                // sleeping motes, copying it out costs more memory (a shared allocation per
                // message once cloned for its targets) than the buffers it would free.
                Some(BrokerEvent::Message {
                    topic: Arc::from(publish.topic.as_str()),
                    payload: publish.payload,
                    qos: from_rumqttc(publish.qos),
                    retain: publish.retain,
                    delivery,
                })
            }
            _ => None,
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
