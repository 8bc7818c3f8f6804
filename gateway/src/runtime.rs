//! The tokio driver: moves datagrams, broker events and time into the core and its outputs out
//! to the links and the broker. It holds no protocol logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sn_transports::{UdpLink, UdpLinkError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::broker::{
    install_crypto_provider, spawn_link, BrokerLinkError, BrokerLinkHandle, EmbeddedBroker,
    EmbeddedBrokerError,
};
use crate::core::{Destination, Event, Gateway, LinkId, Peer, PeerAddr};
use crate::settings::Settings;
use crate::store::{Store, StoreError};

/// Datagrams waiting for the core; a full queue makes receive tasks wait, and the kernel's
/// socket buffer absorbs bursts beyond that.
const DATAGRAM_QUEUE: usize = 4096;

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
    /// Nothing to listen on.
    #[error("no links configured: add a [[udp]] section or pass --udp ADDR")]
    NoLinks,
    /// The state store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A received datagram on its way to the core.
struct Received {
    link: LinkId,
    from: SocketAddr,
    datagram: Bytes,
}

/// A running gateway: its links are bound and its broker link started.
pub struct Runtime {
    core: Gateway,
    store: Option<Store>,
    links: Vec<Arc<UdpLink>>,
    /// The receive loops; aborted when the runtime stops so their sockets close with it.
    receivers: Vec<tokio::task::JoinHandle<()>>,
    received: mpsc::Receiver<Received>,
    broker: BrokerLinkHandle,
    /// The embedded broker the link is connected to, when no remote broker is configured.
    embedded: Option<EmbeddedBroker>,
}

impl Runtime {
    /// Binds every link and starts the broker link; without a remote broker, starts the
    /// embedded broker first and points the link at it. Errors name what failed and how to
    /// fix it.
    pub async fn start(settings: Settings) -> Result<Runtime, RuntimeError> {
        if settings.udp.is_empty() {
            return Err(RuntimeError::NoLinks);
        }
        let (broker_config, embedded) = match settings.broker {
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
        for (index, config) in settings.udp.into_iter().enumerate() {
            let id = LinkId(u16::try_from(index).unwrap_or(u16::MAX));
            let discovery = config.discovery;
            let link = Arc::new(UdpLink::bind(config).await?);
            info!(link = link.name(), discovery = ?discovery, "listening for MQTT-SN");
            if discovery.is_some() {
                core.add_discovery_link(id);
            }
            receivers.push(tokio::spawn(receive(id, link.clone(), tx.clone())));
            links.push(link);
        }
        // Before the link builds a TLS client for an mqtts:// broker.
        install_crypto_provider();
        let broker = spawn_link(broker_config)?;
        Ok(Runtime {
            core,
            store,
            links,
            receivers,
            received,
            broker,
            embedded,
        })
    }

    /// The address local MQTT apps reach the embedded broker on; `None` with a remote broker
    /// or with `[embedded_broker] listen = "off"`.
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        self.embedded.as_ref().and_then(EmbeddedBroker::listen_addr)
    }

    /// The local address of each link, in config order (tests bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.links
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Maps the core's clock (std Instant) onto tokio's, which tests can pause.
        let mut stats_at = Instant::now() + STATS_INTERVAL;
        loop {
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            let wake = deadline.map_or(stats_at, |d| d.min(stats_at));
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = self.broker.events.recv() => match event {
                    Some(event) => {
                        let now = now();
                        self.core.handle_broker(now, event);
                        // A burst of broker messages becomes one flush, so one store commit
                        // (one fsync) rather than one per message.
                        for _ in 0..BATCH {
                            match self.broker.events.try_recv() {
                                Ok(more) => self.core.handle_broker(now, more),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        warn!("broker link stopped");
                        break;
                    }
                },
                received = self.received.recv() => {
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
                }
                () = tokio::time::sleep_until(wake) => {
                    self.core.handle_timeout(now());
                    if Instant::now() >= stats_at {
                        stats_at = Instant::now() + STATS_INTERVAL;
                        self.log_stats();
                    }
                }
            }
            self.flush().await;
        }
        info!("gateway stopping");
        self.log_stats();
        // Release the ports now, not when a receive loop next wakes up.
        for receiver in &self.receivers {
            receiver.abort();
        }
        for receiver in self.receivers.drain(..) {
            let _ = receiver.await;
        }
        self.broker.task.abort();
        let _ = self.broker.task.await;
        if let Some(embedded) = self.embedded.take() {
            embedded.shutdown().await;
        }
    }

    fn deliver(&mut self, now: std::time::Instant, received: Received) {
        let peer = Peer {
            link: received.link,
            addr: PeerAddr::Ip(received.from),
        };
        self.core.handle_datagram(now, peer, &received.datagram);
    }

    /// Sends everything the core produced. Durable state first: a broker acknowledgement for
    /// a message queued for a sleeping mote must not leave before the message is on disk.
    async fn flush(&mut self) {
        let ops = self.core.poll_store();
        if let (Some(store), false) = (&self.store, ops.is_empty()) {
            // redb commits with an fsync: on a multi-threaded runtime, tell tokio this worker
            // blocks so its other tasks move elsewhere (block_in_place is not allowed on a
            // current-thread runtime, where there is nowhere to move them).
            let multi = tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread;
            let result = if multi {
                tokio::task::block_in_place(|| store.apply(&ops))
            } else {
                store.apply(&ops)
            };
            if let Err(error) = result {
                error!(%error, "could not write state; what is queued for sleeping motes may not survive a restart");
            }
        }
        while let Some(transmit) = self.core.poll_transmit() {
            let Some(link) = self.links.get(usize::from(transmit.link.0)) else {
                continue;
            };
            let result = match transmit.destination {
                Destination::Unicast(PeerAddr::Ip(addr)) => {
                    link.send_to(&transmit.datagram, addr).await
                }
                Destination::Discovery { radius } => link
                    .send_discovery(&transmit.datagram, radius)
                    .await
                    .map(|_| ()),
                // Other address kinds belong to links this runtime does not drive yet.
                #[allow(unreachable_patterns)]
                Destination::Unicast(_) => Ok(()),
            };
            if let Err(error) = result {
                debug!(link = link.name(), %error, "send failed");
            }
        }
        while let Some(command) = self.core.poll_broker() {
            if self.broker.commands.send(command).is_err() {
                break;
            }
        }
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
        }
    }

    fn log_stats(&self) {
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
            refused_broker_down = m.publish_broker_down,
            spooled = self.core.spooled(),
            spool_refused = m.spool_refused,
            spool_dropped = m.spool_dropped,
            unknown_peer = m.unknown_peer,
            unexpected = m.unexpected_packet,
            dropped_too_big = m.dropped_too_big_for_client,
            refused_by_client = m.delivery_refused,
            "stats"
        );
    }
}

/// Inputs handled per turn before the outputs are flushed: large enough to amortise a store
/// commit and syscalls over a burst, small enough to keep latency low.
const BATCH: usize = 64;

/// How often a stats line is logged.
const STATS_INTERVAL: Duration = Duration::from_secs(300);

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// One receive loop per link, copying each datagram out of the link's buffer.
async fn receive(link_id: LinkId, link: Arc<UdpLink>, tx: mpsc::Sender<Received>) {
    let mut buf = link.recv_buffer();
    loop {
        match link.recv(&mut buf).await {
            Ok((len, from)) => {
                let datagram = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
                let received = Received {
                    link: link_id,
                    from,
                    datagram,
                };
                if tx.send(received).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                warn!(link = link.name(), %error, "receive failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One line per session event.
fn log_event(event: &Event) {
    match event {
        Event::Connected {
            client_id,
            addr,
            clean_session,
            keep_alive,
            resumed,
        } => info!(%client_id, %addr, clean_session, keep_alive, resumed, "client connected"),
        Event::ConnectRefused { addr, reason } => info!(%addr, reason, "CONNECT refused"),
        Event::Disconnected { client_id } => info!(%client_id, "client disconnected"),
        Event::Asleep {
            client_id,
            duration,
        } => info!(%client_id, duration, "client asleep"),
        Event::Awake { client_id, queued } => info!(%client_id, queued, "client awake"),
        Event::Lost {
            client_id,
            reason,
            will_published,
        } => info!(%client_id, %reason, will_published, "client lost"),
        Event::SpoolFull { max_bytes, policy } => {
            warn!(max_bytes, ?policy, "spool full (spool.max_bytes): new uplink messages are refused or the oldest dropped, by spool.when_full")
        }
        Event::QueueFull { client_id, limit } => {
            warn!(%client_id, limit, "queue full: dropping messages for this client (max_queued_per_session)")
        }
    }
}
