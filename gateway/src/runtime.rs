//! The tokio driver: moves datagrams, broker events and time into the core and its outputs out
//! to the links and the broker. It holds no protocol logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sn_transports::{UdpLink, UdpLinkError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::broker::{
    install_crypto_provider, spawn_link, BrokerLinkError, BrokerLinkHandle, EmbeddedBroker,
    EmbeddedBrokerError, MoteLinkError,
};
use crate::core::{
    BatchId, BrokerEvent, BrokerRoute, Destination, Event, Gateway, LinkId, Peer, PeerAddr,
    PolicyConfig, StoreOp,
};
use crate::sd_notify::Notifier;
use crate::settings::{LiveSettings, Settings};
use crate::store::{Store, StoreError};

mod dtls;
mod fallback;
mod log_limit;
mod serial;
mod transparent;

use dtls::DtlsHandle;
pub use dtls::{DtlsLinkStats, DtlsStartError, DtlsStatsWatch, PskReload, PskReloader};
use fallback::DormantFallback;
use serial::SerialHandle;
pub use serial::{SerialCounters, SerialStartError};
pub use transparent::TransparentLinks;

/// Datagrams waiting for the core; a full queue makes receive tasks wait (nothing is dropped
/// here), and the kernel's socket buffer absorbs bursts beyond that. What overflows that
/// buffer the kernel drops; the runtime counts it (`kernel_dropped`) and warns.
const DATAGRAM_QUEUE: usize = 4096;

/// A UDP link's outgoing datagrams are sent together (`sendmmsg`) at the end of a turn, or
/// as soon as this many are waiting, which bounds the memory and the delay a large turn adds;
/// a DTLS link's go to its task in batches of at most this many, for the same reasons.
const UDP_SEND_BATCH: usize = 256;

/// The turn's outgoing datagrams are written into one buffer of this size; a turn that writes
/// more takes another block of it (not one allocation per datagram).
const OUT_BUF_CAPACITY: usize = 64 * 1024;

/// While the broker link has no room for the core's commands, how soon the runtime looks
/// again.
const LINK_BUSY_RECHECK: Duration = Duration::from_millis(1);

/// At most one warning of a kind that a flood repeats ("QoS 0 dropped at max_pending_qos0",
/// "session takeover refused") this often; the stats line has the counts.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// First wait before writing refused state again; it doubles up to [`STORE_RETRY_MAX`].
const STORE_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts to write refused state.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// How often the UDP sockets' kernel drop counters are checked: at most one warning per
/// check.
const KERNEL_DROPS_CHECK: Duration = Duration::from_secs(60);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A UDP link could not be opened.
    #[error(transparent)]
    Udp(#[from] UdpLinkError),
    /// The broker link could not be set up.
    #[error(transparent)]
    Broker(#[from] BrokerLinkError),
    /// The embedded broker (no remote broker configured) could not start.
    #[error(transparent)]
    EmbeddedBroker(#[from] EmbeddedBrokerError),
    /// Transparent mode's per-mote connections could not be set up (a TLS file).
    #[error(transparent)]
    Transparent(#[from] MoteLinkError),
    /// A serial link could not be opened.
    #[error(transparent)]
    Serial(#[from] SerialStartError),
    /// A DTLS link could not start (its PSK file, certificates or socket).
    #[error(transparent)]
    Dtls(#[from] DtlsStartError),
    /// Nothing to listen on.
    #[error(
        "no links configured: add a [[udp]], [[serial]] or [[dtls]] section, or pass --udp ADDR"
    )]
    NoLinks,
    /// The state store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the links report to the core.
#[derive(Debug)]
enum Inbound {
    /// A received datagram.
    Datagram {
        link: LinkId,
        from: PeerAddr,
        datagram: Bytes,
    },
    /// The link could not deliver a datagram (an XBee transmit status other than success).
    Undelivered { link: LinkId, to: PeerAddr },
    /// A datagram a DTLS link decrypted, from a peer it authenticated as `identity`.
    Authenticated {
        link: LinkId,
        from: SocketAddr,
        identity: Arc<str>,
        datagram: Bytes,
    },
    /// A DTLS link lost its connection with `from` (an alert, the idle timeout).
    PeerLost { link: LinkId, from: SocketAddr },
    /// The peer `from` closed its DTLS connection (close_notify).
    PeerClosed { link: LinkId, from: SocketAddr },
    /// A DTLS link's session (Connection ID) follows its peer from `from` to `to`.
    PeerMoved {
        link: LinkId,
        from: SocketAddr,
        to: SocketAddr,
        identity: Arc<str>,
    },
}

/// One running link, at the index of its [`LinkId`].
enum Link {
    Udp(Arc<UdpLink>),
    Serial(SerialHandle),
    Dtls(DtlsHandle),
}

/// A running gateway: its links are bound and its broker link started.
pub struct Runtime {
    core: Gateway,
    store: Option<Store>,
    links: Vec<Link>,
    /// The receive loops and the kernel drop watcher; aborted when the runtime stops so
    /// their sockets close with it.
    receivers: Vec<tokio::task::JoinHandle<()>>,
    received: mpsc::Receiver<Inbound>,
    /// `[store] path`, to open the store again after a write error (`store` is then `None`).
    store_path: Option<std::path::PathBuf>,
    /// State changes the store refused (a full disk); retried before anything else happens.
    unwritten: Vec<StoreOp>,
    /// The last store batch in `unwritten`, to report once they are written.
    unwritten_upto: Option<BatchId>,
    /// While `unwritten` is not empty: when to try again, and the wait after that.
    store_retry: Option<(Instant, Duration)>,
    /// When the last "QoS 0 dropped at max_pending_qos0" warning was logged.
    backlog_warned: Option<Instant>,
    /// When the last "session takeover refused" warning was logged.
    takeover_warned: Option<Instant>,
    /// Which policy refusals get a log line: once a minute per peer.
    denied_logged: log_limit::PerPeerLimit,
    /// Per link (same index as `links`), the UDP and DTLS datagrams of this turn not yet sent
    /// (a DTLS link's go to its task as one batch); empty for serial links.
    udp_out: Vec<Vec<(Bytes, SocketAddr)>>,
    /// Where the core writes the turn's datagrams (see [`Gateway::poll_transmit`]).
    out_buf: BytesMut,
    broker: BrokerLinkHandle,
    /// The link to the embedded broker while it is the remote broker's fallback.
    fallback: Option<BrokerLinkHandle>,
    /// The fallback broker before it is first needed (see `runtime/fallback.rs`).
    dormant_fallback: Option<DormantFallback>,
    /// Transparent mode: the motes' own broker connections.
    transparent: Option<TransparentLinks>,
    /// The embedded broker: the broker the link is connected to when no remote broker is
    /// configured, or the fallback's.
    embedded: Option<EmbeddedBroker>,
    /// The core's counters, for whoever watches them (tests, a future admin endpoint);
    /// updated after each turn only while someone does.
    metrics: tokio::sync::watch::Sender<crate::core::Metrics>,
    /// The settings a reload may change while running (see [`Runtime::live_settings`]).
    live: tokio::sync::watch::Sender<LiveSettings>,
    /// Reloaded policies for the core (see [`Runtime::policy_reloader`]).
    policies: mpsc::Receiver<PolicyConfig>,
    /// The sending side of `policies`, handed out by [`Runtime::policy_reloader`].
    policy_tx: mpsc::Sender<PolicyConfig>,
    /// Motes connected, disconnected, lost (...) since the last summary line.
    summary: MoteSummary,
    /// The service manager (systemd), when it asked for notifications.
    notifier: Option<Notifier>,
    /// How often to tell the service manager the loop is alive (`WATCHDOG=1`).
    watchdog: Option<Duration>,
    /// What the metrics endpoint shows, when one is serving ([`Runtime::serve_metrics`]).
    status: Option<tokio::sync::watch::Sender<crate::metrics::http::Status>>,
}

/// How often the metrics endpoint's snapshot is taken (and `/healthz` learns the loop turns).
const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// A snapshot older than this makes `/healthz` fail: the loop has stopped turning.
const STATUS_STALE: Duration = Duration::from_secs(10);

/// The per-mote events since the last summary: each is a debug line of its own, and at
/// info only their counts, once per stats interval (5 000 motes connecting wrote 10 001
/// info lines).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct MoteSummary {
    connected: u64,
    disconnected: u64,
    lost: u64,
    asleep: u64,
    awake: u64,
}

impl MoteSummary {
    fn count(&mut self, event: &Event) {
        let counter = match event {
            Event::Connected { .. } => &mut self.connected,
            Event::Disconnected { .. } => &mut self.disconnected,
            Event::Lost { .. } => &mut self.lost,
            Event::Asleep { .. } => &mut self.asleep,
            Event::Awake { .. } => &mut self.awake,
            _ => return,
        };
        *counter = counter.saturating_add(1);
    }
}

impl Runtime {
    /// Binds every link and starts the broker link; without a remote broker, starts the
    /// embedded broker first and points the link at it. Errors name what failed and how to
    /// fix it.
    pub async fn start(settings: Settings) -> Result<Runtime, RuntimeError> {
        if settings.udp.is_empty() && settings.serial.is_empty() && settings.dtls.is_empty() {
            return Err(RuntimeError::NoLinks);
        }
        let mut dormant_fallback = None;
        let (broker_config, embedded) = match settings.broker {
            Some(remote) if settings.fallback => {
                // Started when the remote broker first turns out unreachable.
                dormant_fallback = Some(DormantFallback::new(&settings.embedded_broker)?);
                (remote, None)
            }
            Some(remote) => (remote, None),
            None => {
                let embedded = EmbeddedBroker::start(&settings.embedded_broker).await?;
                match embedded.listen_addr() {
                    Some(addr) => info!(
                        %addr,
                        "no remote broker configured: embedded MQTT broker listening for local apps"
                    ),
                    None => info!(
                        "no remote broker configured: embedded MQTT broker running, closed to local apps ([embedded_broker] listen = \"off\")"
                    ),
                }
                (embedded.link_config(), Some(embedded))
            }
        };
        let mut core = Gateway::new(settings.core);
        let store_path = settings.store.clone();
        let store = match &settings.store {
            Some(path) => {
                let store = Store::open(path)?;
                let restored = store.load()?;
                info!(
                    path = %path.display(),
                    sessions = restored.sessions.len(),
                    messages = restored.messages.len(),
                    "state restored"
                );
                core.restore(now(), restored);
                Some(store)
            }
            None => None,
        };
        let mut links = Vec::new();
        let mut receivers = Vec::new();
        let (tx, received) = mpsc::channel(DATAGRAM_QUEUE);
        // Link ids are indexes into `links`: UDP links first, then serial links, in config
        // order (so a UDP link keeps its id, and sessions stored with it, when radios are
        // added).
        for config in settings.udp {
            let id = link_id(links.len());
            let discovery = config.options.discovery;
            let link = Arc::new(UdpLink::bind(config).await?);
            info!(
                link = link.name(),
                discovery = ?discovery,
                recv_buffer = link.socket_recv_buffer().ok(),
                "listening for MQTT-SN"
            );
            if discovery.is_some() {
                core.add_discovery_link(id);
            }
            receivers.push(tokio::spawn(receive(id, link.clone(), tx.clone())));
            links.push(Link::Udp(link));
        }
        for config in &settings.serial {
            let id = link_id(links.len());
            let handle = SerialHandle::start(id, config, tx.clone())?;
            if config.discovery {
                core.add_discovery_link(id);
            }
            links.push(Link::Serial(handle));
        }
        // DTLS links after them, so adding one renumbers none of the others.
        for config in &settings.dtls {
            let (handle, task) =
                DtlsHandle::start(link_id(links.len()), config, tx.clone()).await?;
            receivers.push(task);
            links.push(Link::Dtls(handle));
        }
        // Every UDP socket, the DTLS links' too: a burst overflows either the same way.
        let sockets: Vec<Arc<UdpLink>> = links
            .iter()
            .filter_map(|l| match l {
                Link::Udp(link) => Some(link.clone()),
                Link::Dtls(link) => Some(link.socket.clone()),
                Link::Serial(_) => None,
            })
            .collect();
        if !sockets.is_empty() {
            receivers.push(tokio::spawn(watch_kernel_drops(sockets)));
        }
        // Before the link builds a TLS client for an mqtts:// broker.
        install_crypto_provider();
        let broker = spawn_link(broker_config)?;
        let transparent = match &settings.transparent {
            Some(t) => Some(TransparentLinks::start(t)?),
            None => None,
        };
        let udp_out = links.iter().map(|_| Vec::new()).collect();
        // A reload waits for the loop to take the one before: a second SIGHUP in the same
        // instant waits a turn, nothing is lost.
        let (policy_tx, policies) = mpsc::channel(1);
        Ok(Runtime {
            policies,
            policy_tx,
            core,
            store,
            links,
            receivers,
            received,
            store_path,
            unwritten: Vec::new(),
            unwritten_upto: None,
            store_retry: None,
            backlog_warned: None,
            takeover_warned: None,
            denied_logged: log_limit::PerPeerLimit::new(WARNING_INTERVAL),
            udp_out,
            out_buf: BytesMut::with_capacity(OUT_BUF_CAPACITY),
            broker,
            fallback: None,
            dormant_fallback,
            transparent,
            embedded,
            metrics: tokio::sync::watch::Sender::new(crate::core::Metrics::default()),
            live: tokio::sync::watch::Sender::new(settings.live),
            summary: MoteSummary::default(),
            notifier: None,
            watchdog: None,
            status: None,
        })
    }

    /// Where to send the settings a running gateway takes without a restart (a reloaded
    /// configuration's `[log] stats_interval`): the loop picks a new value up at once.
    pub fn live_settings(&self) -> tokio::sync::watch::Sender<LiveSettings> {
        self.live.clone()
    }

    /// Where to send a reloaded `[policy]` and `[[mote]]` list: the loop hands it to the core
    /// ([`Gateway::set_policy`]) at its next turn, logs what changed, and sends the
    /// DISCONNECTs to the motes it no longer admits.
    pub fn policy_reloader(&self) -> mpsc::Sender<PolicyConfig> {
        self.policy_tx.clone()
    }

    /// Tells the service manager how the gateway is doing: `READY=1` when [`Runtime::run`]
    /// starts (the links are bound and the broker link started by then), a `STATUS=` line at
    /// every stats interval, `WATCHDOG=1` every `watchdog` (from the loop itself, so a loop
    /// that hangs stops the pings and the manager restarts the gateway), `STOPPING=1` when
    /// it stops.
    pub fn set_notifier(&mut self, notifier: Notifier, watchdog: Option<Duration>) {
        self.notifier = Some(notifier);
        self.watchdog = watchdog;
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` ([`crate::metrics`]): the
    /// loop publishes a snapshot every second while it runs.
    pub fn serve_metrics(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::watch::channel(crate::metrics::http::Status::starting());
        self.status = Some(tx);
        self.publish_status();
        tokio::spawn(crate::metrics::http::serve(listener, rx, STATUS_STALE));
    }

    /// Takes the snapshot the metrics endpoint shows. Ready while some broker serves the
    /// motes: the remote one (or, without one, the embedded broker the link connects to), or
    /// the fallback.
    fn publish_status(&self) {
        let Some(status) = &self.status else {
            return;
        };
        let gauges = self.core.gauges();
        let ready = if gauges.broker_connected || gauges.fallback_active {
            Ok(())
        } else {
            Err(
                "no broker serves the motes (the broker link is down and no fallback serves)"
                    .to_string(),
            )
        };
        let links = self
            .links
            .iter()
            .map(|link| match link {
                Link::Udp(udp) => crate::metrics::LinkSnapshot {
                    name: udp.name().to_string(),
                    stats: crate::metrics::LinkCounters::Udp(udp.stats(), udp.kernel_drops()),
                },
                Link::Serial(serial) => crate::metrics::LinkSnapshot {
                    name: serial.name.clone(),
                    stats: crate::metrics::LinkCounters::Serial(
                        Some(Box::new(*serial.stats.borrow())),
                        serial.dropped,
                    ),
                },
                Link::Dtls(dtls) => crate::metrics::LinkSnapshot {
                    name: dtls.name.clone(),
                    stats: crate::metrics::LinkCounters::Dtls(
                        Box::new(dtls.stats.borrow().clone()),
                        dtls.dropped,
                        dtls.socket.kernel_drops(),
                    ),
                },
            })
            .collect();
        status.send_replace(crate::metrics::http::Status {
            snapshot: crate::metrics::Snapshot {
                metrics: self.core.metrics().clone(),
                gauges,
                links,
            },
            ready,
            updated: std::time::Instant::now(),
        });
    }

    /// The address local MQTT apps reach the embedded broker on (also as the fallback);
    /// `None` without an embedded broker or with `[embedded_broker] listen = "off"`.
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        match &self.dormant_fallback {
            Some(dormant) => dormant.listen_addr(),
            None => self.embedded.as_ref().and_then(EmbeddedBroker::listen_addr),
        }
    }

    /// The core's counters (datagrams, forwarded, dropped, undelivered, ...), updated after
    /// every turn of [`Runtime::run`] while a receiver exists; costs nothing otherwise.
    pub fn metrics_watch(&self) -> tokio::sync::watch::Receiver<crate::core::Metrics> {
        self.metrics.subscribe()
    }

    /// The local address of each link, in config order (tests bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Udp(link) => link.local_addr().ok(),
                Link::Serial(_) | Link::Dtls(_) => None,
            })
            .collect()
    }

    /// The local address of each DTLS link, in config order (tests bind port 0).
    pub fn dtls_addrs(&self) -> Vec<SocketAddr> {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Dtls(link) => Some(link.local_addr),
                _ => None,
            })
            .collect()
    }

    /// The receive buffer (SO_RCVBUF) of each DTLS link's socket as the kernel reports it
    /// (twice what it granted, on Linux), in config order; `None` where it cannot be read.
    pub fn dtls_recv_buffers(&self) -> Vec<Option<usize>> {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Dtls(link) => Some(link.socket.socket_recv_buffer().ok()),
                _ => None,
            })
            .collect()
    }

    /// The counters of each DTLS link, in config order, kept current by the links' tasks.
    pub fn dtls_stats(&self) -> Vec<DtlsStatsWatch> {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Dtls(link) => Some(link.stats.clone()),
                _ => None,
            })
            .collect()
    }

    /// What a `SIGHUP` needs to reload the DTLS links' PSK files.
    pub fn psk_reloader(&self) -> PskReloader {
        PskReloader {
            links: self
                .links
                .iter()
                .filter_map(|l| match l {
                    Link::Dtls(link) => link.psk_reload(),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.notify(&format!("READY=1\nSTATUS={}", self.status()));
        let mut live = self.live.subscribe();
        // Maps the core's clock (std Instant) onto tokio's, which tests can pause.
        let mut stats_at = stats_deadline(&live.borrow_and_update());
        let mut watchdog_at = self.watchdog.map(|every| Instant::now() + every);
        let mut status_at = self.status.as_ref().map(|_| Instant::now() + STATUS_PERIOD);
        let broker_down = self.broker.down.clone();
        loop {
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            let wake = [deadline, stats_at].into_iter().flatten().min();
            // Commands the link had no room for: look again shortly (the link gives no
            // signal when it has taken them).
            let link_busy = self.core.broker_commands_waiting() > 0;
            // While the store refuses to write, the turn's acknowledgements wait in the core
            // and nothing new is taken in (it would only pile up behind them).
            let stalled = self.store_retry.is_some();
            let far = Instant::now() + Duration::from_secs(3600);
            let retry_at = self.store_retry.map_or(far, |(at, _)| at);
            // Whether the turn had input (or a retry, or a deadline) whose outputs to flush;
            // the watchdog and a reload have none, and must not hasten a store retry.
            let flush = tokio::select! {
                biased;
                () = &mut shutdown => break,
                // Also while stalled: the loop is alive, retrying the store.
                () = tokio::time::sleep_until(watchdog_at.unwrap_or(far)), if watchdog_at.is_some() => false,
                // The metrics snapshot, also while stalled (the endpoint then says why).
                () = tokio::time::sleep_until(status_at.unwrap_or(far)), if status_at.is_some() => {
                    self.publish_status();
                    status_at = Some(Instant::now() + STATUS_PERIOD);
                    false
                }
                changed = live.changed() => {
                    if changed.is_ok() {
                        stats_at = stats_deadline(&live.borrow_and_update());
                    }
                    false
                }
                Some(policy) = self.policies.recv(), if !stalled => {
                    self.set_policy(policy);
                    true
                }
                () = tokio::time::sleep_until(retry_at), if stalled => true,
                () = broker_down.notified(), if self.dormant_fallback.is_some() => {
                    self.start_fallback().await;
                    false
                }
                event = recv_broker(&mut self.broker, &mut self.fallback, &mut self.transparent), if !stalled => match event {
                    Some((route, event)) => {
                        let now = now();
                        self.core.handle_broker(now, route, event);
                        // A burst of broker messages becomes one flush, so one store commit
                        // (one fsync) rather than one per message.
                        for _ in 0..BATCH {
                            match try_recv_broker(&mut self.broker, &mut self.fallback, &mut self.transparent) {
                                Some((route, more)) => self.core.handle_broker(now, route, more),
                                None => break,
                            }
                        }
                        true
                    }
                    None => {
                        warn!("broker link stopped");
                        break;
                    }
                },
                received = self.received.recv(), if !stalled => {
                    let Some(first) = received else { break };
                    let now = now();
                    self.deliver(now, first);
                    // Take what else is already waiting before flushing outputs: one flush
                    // per burst instead of one per datagram.
                    for _ in 0..BATCH {
                        match self.received.try_recv() {
                            Ok(more) => self.deliver(now, more),
                            Err(_) => break,
                        }
                    }
                    true
                }
                () = tokio::time::sleep(LINK_BUSY_RECHECK), if link_busy && !stalled => true,
                () = tokio::time::sleep_until(wake.unwrap_or(far)), if wake.is_some() && !stalled => {
                    self.core.handle_timeout(now());
                    if stats_at.is_some_and(|at| Instant::now() >= at) {
                        stats_at = stats_deadline(&live.borrow());
                        self.log_summary();
                        self.log_stats("stats");
                        self.notify(&format!("STATUS={}", self.status()));
                    }
                    true
                }
            };
            if let (Some(at), Some(every)) = (watchdog_at, self.watchdog) {
                if Instant::now() >= at {
                    self.notify("WATCHDOG=1");
                    watchdog_at = Some(Instant::now() + every);
                }
            }
            if flush {
                self.flush().await;
            }
        }
        self.notify("STOPPING=1\nSTATUS=stopping");
        info!("gateway stopping");
        if !self.unwritten.is_empty() {
            error!(
                changes = self.unwritten.len(),
                "stopping with state the store refused to write; nothing that depended on it \
                 was acknowledged, so motes and the broker will send it again"
            );
        }
        self.log_summary();
        self.log_stats("final stats");
        // Release the ports now, not when a receive loop next wakes up.
        for receiver in &self.receivers {
            receiver.abort();
        }
        for receiver in self.receivers.drain(..) {
            let _ = receiver.await;
        }
        // Close the serial devices too, so a restart in the same process can open them.
        for link in self.links.drain(..) {
            if let Link::Serial(handle) = link {
                handle.task.abort();
                let _ = handle.task.await;
            }
        }
        if let Some(links) = self.transparent.take() {
            links.shutdown().await;
        }
        self.broker.task.abort();
        let _ = self.broker.task.await;
        if let Some(fallback) = self.fallback.take() {
            fallback.task.abort();
            let _ = fallback.task.await;
        }
        if let Some(embedded) = self.embedded.take() {
            embedded.shutdown().await;
        }
    }

    /// Puts a reloaded policy in force in the core and logs the summary line.
    fn set_policy(&mut self, policy: PolicyConfig) {
        let entries = policy.motes.len();
        let admission = match policy.admission {
            crate::core::Admission::Open => "open",
            crate::core::Admission::Listed => "listed",
        };
        let change = self.core.set_policy(now(), policy);
        info!(
            entries,
            admission,
            sessions = change.sessions,
            revoked = change.revoked,
            subscriptions_revoked = change.subscriptions_revoked,
            wills_revoked = change.wills_revoked,
            "SIGHUP: policy reloaded: {entries} mote entries, admission={admission}; of {} \
             sessions held, {} no longer admitted (disconnected, dropped), {} subscriptions \
             and {} Wills the new rules refuse dropped",
            change.sessions,
            change.revoked,
            change.subscriptions_revoked,
            change.wills_revoked
        );
    }

    /// The remote broker is unreachable for the first time: starts the embedded broker and
    /// the link to it. The core switches the motes to it when that link reports `Connected`.
    /// A failure is logged and leaves the gateway without a fallback (as with `fallback =
    /// "off"`), not stopped.
    async fn start_fallback(&mut self) {
        let Some(dormant) = self.dormant_fallback.take() else {
            return;
        };
        match dormant.start().await {
            Ok((embedded, link)) => {
                self.embedded = Some(embedded);
                self.fallback = Some(link);
            }
            Err(error) => {
                error!(%error, "cannot start the fallback broker; the motes are served again when the remote broker is back");
            }
        }
    }

    fn deliver(&mut self, now: std::time::Instant, inbound: Inbound) {
        match inbound {
            Inbound::Datagram {
                link,
                from,
                datagram,
            } => {
                let peer = Peer { link, addr: from };
                self.core.handle_datagram(now, peer, &datagram);
            }
            Inbound::Undelivered { link, to } => {
                self.core
                    .handle_delivery_failure(now, Peer { link, addr: to });
            }
            Inbound::Authenticated {
                link,
                from,
                identity,
                datagram,
            } => {
                let peer = Peer {
                    link,
                    addr: PeerAddr::Ip(from),
                };
                self.core
                    .handle_authenticated_datagram(now, peer, &identity, &datagram);
            }
            Inbound::PeerLost { link, from } => {
                let peer = Peer {
                    link,
                    addr: PeerAddr::Ip(from),
                };
                self.core.handle_peer_lost(now, peer);
            }
            Inbound::PeerClosed { link, from } => {
                let peer = Peer {
                    link,
                    addr: PeerAddr::Ip(from),
                };
                self.core.handle_peer_closed(now, peer);
            }
            Inbound::PeerMoved {
                link,
                from,
                to,
                identity,
            } => {
                let old = Peer {
                    link,
                    addr: PeerAddr::Ip(from),
                };
                let new = Peer {
                    link,
                    addr: PeerAddr::Ip(to),
                };
                self.core.handle_peer_moved(now, old, new, &identity);
            }
        }
    }

    /// Writes what the core has to store, then sends everything the core releases. The core
    /// itself holds back whatever depends on state not yet written (an acknowledgement of a
    /// spooled message, or of a message queued for a sleeping mote), so what it hands out
    /// here may leave.
    async fn flush(&mut self) {
        self.write_state();
        // The core writes each datagram into `out_buf`; split off, it is a Bytes sharing the
        // buffer, whose memory is reused once the turn's datagrams are sent.
        while let Some(transmit) = self.core.poll_transmit(&mut self.out_buf) {
            let datagram = self.out_buf.split().freeze();
            let index = usize::from(transmit.link.0);
            let (link, out) = match (self.links.get_mut(index), self.udp_out.get_mut(index)) {
                (Some(Link::Udp(link)), Some(out)) => (link, out),
                (Some(Link::Serial(serial)), _) => {
                    serial.send(transmit.destination, datagram);
                    continue;
                }
                (Some(Link::Dtls(dtls)), Some(out)) => {
                    dtls.push(out, transmit.destination, datagram);
                    if out.len() >= UDP_SEND_BATCH {
                        dtls.send_batch(out);
                    }
                    continue;
                }
                _ => continue,
            };
            match transmit.destination {
                Destination::Unicast(PeerAddr::Ip(addr)) => {
                    out.push((datagram, addr));
                    if out.len() >= UDP_SEND_BATCH {
                        send_udp(link, out).await;
                    }
                }
                Destination::Discovery { radius } => {
                    // What the core produced before it goes first, as it would have unbatched.
                    send_udp(link, out).await;
                    if let Err(error) = link.send_discovery(&datagram, radius).await {
                        debug!(link = link.name(), %error, "send failed");
                    }
                }
                Destination::Unicast(other) => {
                    debug!(link = link.name(), peer = %other, "not a UDP address: datagram dropped");
                }
            }
        }
        for (link, out) in self.links.iter_mut().zip(self.udp_out.iter_mut()) {
            match link {
                Link::Udp(link) => send_udp(link, out).await,
                // The turn's datagrams for the DTLS link's peers reach its task in one piece.
                Link::Dtls(dtls) => dtls.send_batch(out),
                Link::Serial(_) => {}
            }
        }
        // One drain for every broker route. The remote link gets commands only as fast as it
        // takes them: what it cannot take yet stays in the core, which bounds the QoS 0 part
        // (max_pending_qos0) and sheds the rest, counted. The fallback's and the motes'
        // commands are drained every turn even without a live link, so nothing piles up in
        // the core; what a missing link would have carried is resent when one comes up.
        while let Some((route, command)) = self.core.poll_broker(self.broker.has_room()) {
            match route {
                BrokerRoute::Remote => {
                    if !self.broker.send(command) {
                        debug!("broker link stopped: command dropped");
                    }
                }
                BrokerRoute::Fallback => {
                    if let Some(fallback) = &self.fallback {
                        let _ = fallback.send(command);
                    }
                }
                BrokerRoute::Mote(client_id) => {
                    if let Some(links) = &mut self.transparent {
                        links.send(client_id, command);
                    }
                }
            }
        }
        while let Some(event) = self.core.poll_event() {
            // Under a sustained flood the backlog fills and drains many times a second, and
            // anyone in range can repeat a takeover attempt as often: one line a minute each
            // says it all (the stats line has the counts).
            let last = match event {
                Event::BrokerBacklogFull { .. } => Some(&mut self.backlog_warned),
                Event::TakeoverRefused { .. } => Some(&mut self.takeover_warned),
                _ => None,
            };
            if let Some(last) = last {
                let now = Instant::now();
                if last.is_some_and(|at| now < at + WARNING_INTERVAL) {
                    continue;
                }
                *last = Some(now);
            }
            // Anyone in range can repeat a refused request as often as the link carries it:
            // one line a minute per peer (the stats line counts them all).
            if let Event::PolicyDenied { addr, .. } | Event::ConnectRefused { addr, .. } = &event {
                match self.denied_logged.check(std::time::Instant::now(), addr) {
                    log_limit::Verdict::Log => {}
                    log_limit::Verdict::Quiet => continue,
                    log_limit::Verdict::Overflow => {
                        warn!("refusing requests from more than a thousand peers: no longer logged peer by peer (the stats line counts them; this warning at most once a minute)");
                        continue;
                    }
                }
            }
            self.summary.count(&event);
            log_event(&event);
        }
        if self.metrics.receiver_count() > 0 {
            let current = self.core.metrics();
            self.metrics.send_if_modified(|shown| {
                let changed = shown != current;
                if changed {
                    *shown = current.clone();
                }
                changed
            });
        }
    }

    /// Writes the core's state changes (and any the store refused before) and reports them
    /// written, which releases the outputs the core held for them. On a refusal (a full disk)
    /// keeps them and schedules a retry with a growing wait; the core keeps holding what
    /// depends on them, so no mote or broker is told a message is safe before it is.
    fn write_state(&mut self) {
        if let Some(batch) = self.core.poll_store() {
            if self.store_path.is_none() {
                // Nothing is stored: nothing to wait for.
                self.core.handle_stored(batch.id);
                return;
            }
            self.unwritten.extend(batch.ops);
            self.unwritten_upto = Some(batch.id);
        }
        let (Some(path), Some(upto)) = (&self.store_path, self.unwritten_upto) else {
            return;
        };
        let result = match self.store.take() {
            Some(store) => Ok(store),
            // Closed after a failed write: open it again (redb recovers the file).
            None => Store::open(path),
        }
        .and_then(|store| {
            // redb commits with an fsync: on a multi-threaded runtime, tell tokio this worker
            // blocks so its other tasks move elsewhere (block_in_place is not allowed on a
            // current-thread runtime, where there is nowhere to move them).
            let multi = tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread;
            let written = if multi {
                tokio::task::block_in_place(|| store.apply(&self.unwritten))
            } else {
                store.apply(&self.unwritten)
            };
            // After an I/O error redb refuses every later write on the same handle, so a
            // store that failed is dropped and opened afresh for the next attempt.
            written.map(|()| store)
        });
        match result {
            Ok(store) => {
                self.store = Some(store);
                self.unwritten.clear();
                self.unwritten_upto = None;
                self.core.handle_stored(upto);
                if self.store_retry.take().is_some() {
                    info!("state written again: acknowledgements released, taking in messages");
                }
            }
            Err(error) => {
                let wait = match self.store_retry {
                    None => {
                        error!(
                            %error,
                            "could not write state (disk full?): holding acknowledgements and \
                             taking in nothing until it is written; retrying"
                        );
                        STORE_RETRY_MIN
                    }
                    Some((_, wait)) => {
                        debug!(%error, "state still not written");
                        (wait * 2).min(STORE_RETRY_MAX)
                    }
                };
                self.store_retry = Some((Instant::now() + wait, wait));
            }
        }
    }

    /// Sends `state` to the service manager, if there is one. A failure is logged at debug
    /// only: the manager going away must not disturb the gateway.
    fn notify(&self, state: &str) {
        if let Some(notifier) = &self.notifier {
            if let Err(error) = notifier.notify(state) {
                debug!(%error, "service manager notification not sent");
            }
        }
    }

    /// A one-line summary for `systemctl status`.
    fn status(&self) -> String {
        let m = self.core.metrics();
        format!(
            "{} sessions; {} messages forwarded, {} delivered; {} awaiting the broker",
            self.core.session_count(),
            m.publish_forwarded,
            m.delivered,
            self.core.pending_uplink()
        )
    }

    /// The motes connected, disconnected and lost since the last summary, at info, if any
    /// were; then starts counting again.
    fn log_summary(&mut self) {
        let s = std::mem::take(&mut self.summary);
        if s.connected == 0 && s.disconnected == 0 && s.lost == 0 {
            // Sleep cycles alone are routine: they are in the next summary's fields.
            self.summary.asleep = s.asleep;
            self.summary.awake = s.awake;
            return;
        }
        info!(
            connected = s.connected,
            disconnected = s.disconnected,
            lost = s.lost,
            asleep = s.asleep,
            awake = s.awake,
            sessions = self.core.session_count(),
            "{} motes connected, {} disconnected, {} lost since the last summary",
            s.connected,
            s.disconnected,
            s.lost
        );
    }

    /// The stats line, with `message` ("stats", or "final stats" when stopping).
    fn log_stats(&self, message: &str) {
        let m = self.core.metrics();
        info!(
            sessions = self.core.session_count(),
            received = m.datagrams_received,
            sent = m.datagrams_sent,
            forwarded = m.publish_forwarded,
            delivered = m.delivered,
            pending_uplink = self.core.pending_uplink(),
            malformed = m.malformed,
            dropped_queue_full = m.dropped_queue_full,
            dropped_broker_backlog = m.publish_dropped_backlog,
            refused_broker_down = m.publish_broker_down,
            qos0_dropped_broker_down = m.qos0_dropped_broker_down,
            // The spool's size now, and what went through it since the start: the totals
            // add up (spooled_total = in the spool now + replayed or dropped since).
            spool_messages = self.core.spooled(),
            spool_bytes = self.core.spool_bytes(),
            spooled_total = m.spooled,
            replayed = m.replayed,
            fallback_switches = m.fallback_switches,
            dropped_oversize = m.dropped_oversize,
            state_full = m.state_full,
            takeover_refused = m.takeover_refused,
            denied = m.denied.total(),
            denied_by_reason = ?m.denied,
            connect_rate_limited = m.connect_rate_limited,
            sessions_per_address_refused = m.sessions_per_address_refused,
            queued_bytes = self.core.queued_bytes(),
            dropped_queue_total = m.dropped_queue_total,
            sleep_capped = m.sleep_capped,
            spool_refused = m.spool_refused,
            spool_dropped = m.spool_dropped,
            unknown_peer = m.unknown_peer,
            unexpected = m.unexpected_packet,
            dropped_too_big = m.dropped_too_big_for_client,
            refused_by_client = m.delivery_refused,
            link_undelivered = m.link_undelivered,
            peer_moves = m.peer_moves,
            peer_moves_refused = m.peer_moves_refused,
            kernel_dropped = self.kernel_dropped(),
            serial_queue_dropped = self
                .links
                .iter()
                .map(|l| match l {
                    Link::Serial(s) => s.dropped,
                    Link::Udp(_) | Link::Dtls(_) => 0,
                })
                .sum::<u64>(),
            dtls_handshakes = self.dtls_total(|s| s.endpoint.handshakes_completed),
            dtls_refused = self.dtls_total(DtlsLinkStats::refused),
            dtls_lost = self.dtls_total(|s| s.endpoint.alerts + s.endpoint.idle_timeouts),
            dtls_discarded = self.dtls_total(|s| s.endpoint.records_discarded + s.endpoint.garbage),
            dtls_not_connected = self.dtls_total(|s| s.not_connected),
            dtls_cid_moves = self.dtls_total(|s| s.endpoint.cid_moves),
            dtls_cid_moves_refused = self.dtls_total(|s| s.endpoint.cid_moves_refused),
            dtls_queue_dropped = self
                .links
                .iter()
                .map(|l| match l {
                    Link::Dtls(d) => d.dropped,
                    _ => 0,
                })
                .sum::<u64>(),
            "{message}"
        );
    }

    /// Datagrams the kernel dropped at the UDP and DTLS links' sockets since they were bound
    /// (full receive buffers), summed; a link whose count cannot be read (no /proc) adds 0.
    fn kernel_dropped(&self) -> u64 {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Udp(link) => link.kernel_drops(),
                Link::Dtls(link) => link.socket.kernel_drops(),
                Link::Serial(_) => None,
            })
            .sum()
    }

    /// A DTLS counter summed over the DTLS links.
    fn dtls_total(&self, counter: impl Fn(&DtlsLinkStats) -> u64) -> u64 {
        self.links
            .iter()
            .filter_map(|l| match l {
                Link::Dtls(link) => Some(counter(&link.stats.borrow())),
                _ => None,
            })
            .sum()
    }
}

/// Inputs handled per turn before the outputs are flushed: large enough to amortise a store
/// commit and syscalls over a burst, small enough to keep latency low.
const BATCH: usize = 64;

/// When the next stats line is due, from now; `None` when the interval is zero (off).
fn stats_deadline(live: &LiveSettings) -> Option<Instant> {
    (!live.stats_interval.is_zero()).then(|| Instant::now() + live.stats_interval)
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The next event of any broker connection, with its route: the remote broker's first, then
/// the fallback's, then the motes' own. `None` when the remote broker's link has stopped.
async fn recv_broker(
    broker: &mut BrokerLinkHandle,
    fallback: &mut Option<BrokerLinkHandle>,
    transparent: &mut Option<TransparentLinks>,
) -> Option<(BrokerRoute, BrokerEvent)> {
    tokio::select! {
        biased;
        event = broker.events.recv() => event.map(|e| (BrokerRoute::Remote, e)),
        Some(event) = recv_fallback(fallback) => Some((BrokerRoute::Fallback, event)),
        Some((client_id, event)) = recv_transparent(transparent) => {
            Some((BrokerRoute::Mote(client_id), event))
        }
    }
}

/// An event any broker connection has ready now, without waiting.
fn try_recv_broker(
    broker: &mut BrokerLinkHandle,
    fallback: &mut Option<BrokerLinkHandle>,
    transparent: &mut Option<TransparentLinks>,
) -> Option<(BrokerRoute, BrokerEvent)> {
    if let Ok(event) = broker.events.try_recv() {
        return Some((BrokerRoute::Remote, event));
    }
    if let Some(Ok(event)) = fallback.as_mut().map(|f| f.events.try_recv()) {
        return Some((BrokerRoute::Fallback, event));
    }
    let (client_id, event) = transparent.as_mut()?.try_recv()?;
    Some((BrokerRoute::Mote(client_id), event))
}

/// The next event of the fallback link; never ready without one.
async fn recv_fallback(fallback: &mut Option<BrokerLinkHandle>) -> Option<BrokerEvent> {
    match fallback {
        Some(link) => link.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The next event of a mote's own connection; never ready outside transparent mode.
async fn recv_transparent(links: &mut Option<TransparentLinks>) -> Option<(Arc<str>, BrokerEvent)> {
    match links {
        Some(links) => links.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts the embedded broker as the remote broker's fallback. Its listener for local apps is
/// a convenience here: a taken port (often by the very broker the gateway forwards to) is a
/// warning, and the fallback runs without a listener.
async fn start_fallback_broker(
    config: &sn_config::EmbeddedBrokerConfig,
) -> Result<EmbeddedBroker, EmbeddedBrokerError> {
    match EmbeddedBroker::start(config).await {
        Ok(embedded) => {
            if let Some(addr) = embedded.listen_addr() {
                info!(%addr, "fallback: embedded MQTT broker ready, listening for local apps");
            }
            Ok(embedded)
        }
        Err(EmbeddedBrokerError::AddrInUse { addr, .. }) => {
            warn!(
                %addr,
                "fallback: the embedded broker's port is taken, so local apps cannot reach it \
                 while the remote broker is down; set [embedded_broker] listen to a free port \
                 to allow that"
            );
            let closed = sn_config::EmbeddedBrokerConfig { listen: None };
            EmbeddedBroker::start(&closed).await
        }
        Err(error) => Err(error),
    }
}

/// The id of the link at `index` in the runtime's list.
fn link_id(index: usize) -> LinkId {
    LinkId(u16::try_from(index).unwrap_or(u16::MAX))
}

/// Sends a UDP link's waiting datagrams in as few system calls as the OS allows and empties
/// the list. A datagram the OS refuses is counted in the link's `send_errors`.
async fn send_udp(link: &UdpLink, out: &mut Vec<(Bytes, SocketAddr)>) {
    if out.is_empty() {
        return;
    }
    let accepted = link.send_batch(out).await;
    if accepted < out.len() {
        debug!(
            link = link.name(),
            refused = out.len() - accepted,
            "sends failed"
        );
    }
    out.clear();
}

/// One receive loop per UDP link: takes every datagram waiting in one system call
/// (`recvmmsg`), copies the batch out of the link's buffer into one allocation, and hands
/// each datagram to the core as a slice of it.
async fn receive(link_id: LinkId, link: Arc<UdpLink>, tx: mpsc::Sender<Inbound>) {
    let mut batch = link.recv_batch_buffer();
    loop {
        match link.recv_batch(&mut batch).await {
            Ok(_) => {
                let mut bytes = BytesMut::with_capacity(batch.total_len());
                for (datagram, from) in batch.iter() {
                    bytes.extend_from_slice(datagram);
                    let received = Inbound::Datagram {
                        link: link_id,
                        from: PeerAddr::Ip(from),
                        datagram: bytes.split().freeze(),
                    };
                    if tx.send(received).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                warn!(link = link.name(), %error, "receive failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Checks the UDP sockets' kernel drop counters once a [`KERNEL_DROPS_CHECK`] and warns when
/// they grew: those datagrams never reached the gateway, and nothing else would tell. Runs on
/// its own task, so a core loop busy with a backlog (exactly when drops happen) cannot
/// postpone the warning, and reading /proc does not stall the core.
async fn watch_kernel_drops(links: Vec<Arc<UdpLink>>) {
    let mut last: Vec<Option<u64>> = links.iter().map(|l| l.kernel_drops()).collect();
    if last.iter().all(Option::is_none) {
        debug!("no /proc/net/udp: datagrams the kernel drops at the UDP sockets are not counted");
        return;
    }
    let mut checked = Instant::now();
    let mut ticker = tokio::time::interval_at(checked + KERNEL_DROPS_CHECK, KERNEL_DROPS_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut new = 0u64;
        let mut total = 0u64;
        let mut overflowed = Vec::new();
        for (link, last) in links.iter().zip(last.iter_mut()) {
            let Some(count) = link.kernel_drops() else {
                continue;
            };
            // The kernel's counter is 32 bits wide: the difference modulo 2^32 survives a wrap.
            let grown = last.map_or(count, |l| count.wrapping_sub(l) & u64::from(u32::MAX));
            if grown > 0 {
                overflowed.push(link.name());
            }
            new = new.saturating_add(grown);
            total = total.saturating_add(count);
            *last = Some(count);
        }
        let since = checked.elapsed().as_secs();
        checked = Instant::now();
        if new > 0 {
            warn!(
                dropped = new,
                total,
                links = %overflowed.join(", "),
                "UDP receive buffer overflowed: {new} datagrams dropped by the kernel since the \
                 last check {since} s ago; the gateway cannot keep up — raise \
                 net.core.rmem_max / recv_buffer of [[udp]] or [[dtls]] or reduce the load"
            );
        }
    }
}

/// One line per session event. A mote's own comings and goings are at debug: a fleet of
/// thousands would fill the log at info, where the periodic summary counts them.
fn log_event(event: &Event) {
    match event {
        Event::Connected {
            client_id,
            addr,
            clean_session,
            keep_alive,
            resumed,
        } => debug!(%client_id, %addr, clean_session, keep_alive, resumed, "client connected"),
        Event::ConnectRefused { addr, reason } => {
            info!(%addr, reason, "CONNECT refused (at most one line a minute per peer)")
        }
        Event::TakeoverRefused { client_id, addr } => {
            warn!(%client_id, %addr, "refused a CONNECT or PINGREQ naming a session bound to another address ([gateway] roaming is off; counted as takeover_refused in the stats line; this warning at most once a minute)")
        }
        Event::Disconnected { client_id } => debug!(%client_id, "client disconnected"),
        Event::Asleep {
            client_id,
            duration,
        } => debug!(%client_id, duration, "client asleep"),
        Event::Awake { client_id, queued } => debug!(%client_id, queued, "client awake"),
        Event::Lost {
            client_id,
            reason,
            will_published,
        } => debug!(%client_id, %reason, will_published, "client lost"),
        Event::SpoolFull { max_bytes, policy } => {
            warn!(max_bytes, ?policy, "spool full (spool.max_bytes): new uplink messages are refused or the oldest dropped, by spool.when_full")
        }
        Event::BrokerBacklogFull { limit } => {
            warn!(limit, "the broker takes messages slower than the motes send them: QoS 0 messages beyond max_pending_qos0 are dropped (counted as dropped_broker_backlog in the stats line; this warning at most once a minute)")
        }
        Event::QueueFull {
            client_id,
            setting,
            limit,
        } => {
            warn!(%client_id, setting, limit, "queue full: dropping messages for this client (logged once until its queue drains)")
        }
        Event::Revoked {
            client_id,
            addr,
            reason,
        } => {
            let addr = addr.as_deref().unwrap_or("");
            warn!(%client_id, addr, %reason, "SIGHUP: the reloaded policy no longer admits this session: DISCONNECT sent if connected, session dropped (counted as policy_revoked)")
        }
        Event::PolicyDenied {
            addr,
            client_id,
            reason,
            topic,
        } => {
            let client_id = client_id.as_deref().unwrap_or("");
            let topic = topic.as_deref().unwrap_or("");
            warn!(%addr, client_id, topic, %reason, "refused by the policy ([policy], [[mote]]; counted as denied in the stats line; at most one line a minute per peer)")
        }
    }
}
