//! DTLS links in the runtime: one task per `[[dtls]]` that owns the UDP socket and the
//! sans-I/O [`DtlsEndpoint`], feeds it datagrams and the real time, and hands the core what it
//! decrypted, with the peer's authenticated identity.
//!
//! The task owns the endpoint because every datagram in either direction changes its state
//! (records, replay windows, retransmission timers): the core's transmits reach it through a
//! queue bounded in datagrams, and a full queue drops the datagram and counts it (the MQTT-SN
//! retries recover what mattered). The runtime hands over a turn's datagrams for the link as
//! one batch, not one by one: the task wakes once per turn, encrypts the batch and sends it
//! in one `sendmmsg`. A transmit for a peer without an established connection (it went away
//! between the datagram and the answer) is counted and dropped: there is no key to encrypt it
//! with.
//!
//! The socket is a [`UdpLink`], the plain UDP link's: the same receive buffer sizing
//! (`recv_buffer`, 4 MiB by default), the same kernel drop counter, and the same batched
//! I/O: every datagram waiting is read in one `recvmmsg`, fed to the endpoint, and what the
//! endpoint answers to the whole batch leaves in one `sendmmsg`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sn_config::DtlsEngineName;
use sn_transports::dtls::{
    CertificateFiles, DtlsConfig as EndpointConfig, DtlsEndpoint, DtlsEngine, DtlsError, DtlsEvent,
    DtlsStats, PskTable,
};
use sn_transports::udp::{UdpLink, UdpLinkConfig, UdpLinkError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::Inbound;
use crate::core::{Destination, LinkId, PeerAddr};

/// Datagrams waiting for one DTLS link's task, all batches together; the task encrypts them
/// as fast as the core makes them, so this only absorbs a turn's burst.
const OUTGOING_QUEUE: usize = 4096;

/// The largest UDP payload: a record is never refused as too long before the endpoint
/// sees it (it counts what it cannot use).
const MAX_DATAGRAM: usize = 65_535;

/// Why a DTLS link could not start.
#[derive(Debug, thiserror::Error)]
pub enum DtlsStartError {
    /// The PSK file could not be read or has a bad line.
    #[error("[[dtls]] {link}: psk_file {path}: {source}")]
    PskFile {
        /// The link's name (`dtls:0.0.0.0:8883`).
        link: String,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: DtlsError,
    },
    /// libssl refused the cipher suites, a certificate or the key.
    #[error("[[dtls]] {link}: {source}")]
    Endpoint {
        /// The link's name.
        link: String,
        /// libssl's reason.
        source: DtlsError,
    },
    /// The socket could not be bound.
    #[error("[[dtls]] {link}: cannot listen on {bind}: {source}{hint}")]
    Bind {
        /// The link's name.
        link: String,
        /// The address.
        bind: SocketAddr,
        /// The OS error.
        source: std::io::Error,
        /// How to fix it, when the error says.
        hint: &'static str,
    },
    /// The socket could not be set up (an option refused, the runtime unavailable).
    #[error("[[dtls]] {link}: {source}")]
    Socket {
        /// The link's name.
        link: String,
        /// What failed.
        source: UdpLinkError,
    },
}

/// What the core asks of a DTLS link's task: one turn's datagrams for the link's peers, in
/// the order the core made them.
type Outgoing = Vec<(Bytes, SocketAddr)>;

/// The counters of one DTLS link, for the stats line and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DtlsLinkStats {
    /// The endpoint's counters (handshakes, refusals by reason, records discarded, ...).
    pub endpoint: DtlsStats,
    /// Established connections now.
    pub connections: usize,
    /// Handshakes in progress now.
    pub handshakes: usize,
    /// The core's datagrams for a peer without an established connection, dropped.
    pub not_connected: u64,
}

impl DtlsLinkStats {
    /// Handshakes refused or abandoned, all reasons together.
    pub fn refused(&self) -> u64 {
        let s = &self.endpoint;
        s.handshake_cap
            + s.handshake_cap_per_ip
            + s.connection_cap
            + s.handshake_timeouts
            + s.psk_mismatch
            + s.unknown_psk_identity
            + s.bad_certificate
            + s.no_identity
            + s.handshake_failed
    }
}

/// The runtime's side of a running DTLS link.
#[derive(Debug)]
pub(super) struct DtlsHandle {
    pub(super) name: String,
    pub(super) local_addr: SocketAddr,
    /// The socket, shared with the task, for the kernel drop counter.
    pub(super) socket: Arc<UdpLink>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Datagrams handed to the task and not yet taken by it: the queue's bound
    /// ([`OUTGOING_QUEUE`]) counts these, not batches.
    queued: Arc<AtomicUsize>,
    /// Where a reloaded PSK file goes (the task applies the latest).
    psk: watch::Sender<PskTable>,
    psk_file: Option<PathBuf>,
    pub(super) stats: watch::Receiver<DtlsLinkStats>,
    /// Datagrams dropped because the link's queue was full.
    pub(super) dropped: u64,
}

impl DtlsHandle {
    /// Reads the PSK file, binds the socket and starts the link's task (returned, for the
    /// runtime to stop with the other receive tasks).
    pub(super) async fn start(
        id: LinkId,
        config: &sn_config::DtlsConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<(DtlsHandle, JoinHandle<()>), DtlsStartError> {
        let name = config.name();
        let psk = match &config.psk_file {
            Some(path) => load_psk(&name, path).map_err(|source| DtlsStartError::PskFile {
                link: name.clone(),
                path: path.clone(),
                source,
            })?,
            None => PskTable::new(),
        };
        let endpoint_config = EndpointConfig {
            engine: match config.engine {
                Some(DtlsEngineName::OpenSsl) => DtlsEngine::OpenSsl,
                Some(DtlsEngineName::MbedTls) => DtlsEngine::MbedTls,
                None => DtlsEngine::default_engine(),
            },
            connection_id: config.connection_id,
            cipher_suites: config.cipher_suites.clone(),
            certificates: config.certificates.as_ref().map(|c| CertificateFiles {
                certificate: c.certificate.clone(),
                private_key: c.private_key.clone(),
                client_ca: c.client_ca.clone(),
            }),
            mtu: config.mtu,
            max_handshakes: usize::try_from(config.max_handshakes).unwrap_or(usize::MAX),
            max_handshakes_per_ip: usize::try_from(config.max_handshakes_per_ip)
                .unwrap_or(usize::MAX),
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            ..EndpointConfig::default()
        };
        let identities = psk.len();
        let endpoint = DtlsEndpoint::new(std::time::Instant::now(), endpoint_config, psk.clone())
            .map_err(|source| DtlsStartError::Endpoint {
            link: name.clone(),
            source,
        })?;
        let udp = UdpLinkConfig {
            options: sn_config::UdpConfig {
                bind: config.bind,
                discovery: None,
                recv_buffer: config.recv_buffer,
                ..sn_config::UdpConfig::default()
            },
            max_datagram: MAX_DATAGRAM,
        };
        let socket = UdpLink::bind(udp)
            .await
            .map_err(|error| bind_error(&name, config.bind, error))?
            .named(name.clone());
        let socket = Arc::new(socket);
        let local_addr = socket.local_addr().unwrap_or(config.bind);
        info!(
            link = %name,
            %local_addr,
            identities,
            certificates = config.certificates.is_some(),
            connection_id = config.connection_id,
            "listening for MQTT-SN over DTLS"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (psk_tx, psk_rx) = watch::channel(psk);
        let (stats_tx, stats_rx) = watch::channel(DtlsLinkStats::default());
        let task = tokio::spawn(run(
            LinkTask {
                id,
                name: name.clone(),
                socket: socket.clone(),
                endpoint,
                inbound,
                stats: stats_tx,
                not_connected: 0,
                queued: queued.clone(),
            },
            rx,
            psk_rx,
        ));
        Ok((
            DtlsHandle {
                name,
                local_addr,
                socket,
                outgoing: tx,
                queued,
                psk: psk_tx,
                psk_file: config.psk_file.clone(),
                stats: stats_rx,
                dropped: 0,
            },
            task,
        ))
    }

    /// Adds one of the core's datagrams to the turn's `batch` for this link (sent with
    /// [`send_batch`](Self::send_batch)); a destination that is not a DTLS peer is dropped.
    pub(super) fn push(
        &self,
        batch: &mut Vec<(Bytes, SocketAddr)>,
        destination: Destination,
        datagram: Bytes,
    ) {
        match destination {
            Destination::Unicast(PeerAddr::Ip(addr)) => batch.push((datagram, addr)),
            // The core advertises only on links declared for discovery, which a DTLS link
            // never is; and a DTLS peer is always an IP address.
            other => {
                debug!(link = %self.name, destination = ?other, "not a DTLS peer: datagram dropped");
            }
        }
    }

    /// Hands the turn's datagrams to the link's task in one piece (one wake-up for the task,
    /// one `sendmmsg` for the batch) and empties `batch`. What does not fit in the queue
    /// ([`OUTGOING_QUEUE`] datagrams waiting) is dropped, newest first, and counted.
    pub(super) fn send_batch(&mut self, batch: &mut Vec<(Bytes, SocketAddr)>) {
        if batch.is_empty() {
            return;
        }
        let room = OUTGOING_QUEUE.saturating_sub(self.queued.load(Ordering::Acquire));
        if batch.len() > room {
            let excess = batch.len() - room;
            batch.truncate(room);
            self.dropped = self.dropped.saturating_add(excess as u64);
            debug!(link = %self.name, dropped = excess, "DTLS link queue full: datagrams dropped");
            if batch.is_empty() {
                return;
            }
        }
        // One allocation of the batch's exact size; `batch` keeps its capacity for the next
        // turn.
        let mut taken: Outgoing = Vec::with_capacity(batch.len());
        taken.append(batch);
        self.queued.fetch_add(taken.len(), Ordering::AcqRel);
        // The task stops only with the runtime: nothing is waiting for these then.
        let _ = self.outgoing.send(taken);
    }

    /// What a reload needs to hand the link a fresh PSK table.
    pub(super) fn psk_reload(&self) -> Option<PskReloadLink> {
        let path = self.psk_file.clone()?;
        Some(PskReloadLink {
            name: self.name.clone(),
            path,
            psk: self.psk.clone(),
        })
    }
}

/// The PSK files of the running DTLS links, for `SIGHUP` (see
/// [`crate::reload::reload_psk_files`]).
#[derive(Debug, Clone, Default)]
pub struct PskReloader {
    pub(super) links: Vec<PskReloadLink>,
}

/// One DTLS link's PSK file and where its new table goes.
#[derive(Debug, Clone)]
pub(super) struct PskReloadLink {
    name: String,
    path: PathBuf,
    psk: watch::Sender<PskTable>,
}

/// What reloading one PSK file did.
#[derive(Debug)]
pub enum PskReload {
    /// The link now uses the file's keys.
    Loaded {
        /// The link's name.
        link: String,
        /// The file.
        path: PathBuf,
        /// How many identities it holds.
        identities: usize,
    },
    /// The file could not be read or parsed: the link keeps its keys.
    Failed {
        /// The link's name.
        link: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: DtlsError,
    },
}

impl PskReloader {
    /// Reads every DTLS link's PSK file again and hands the links the new keys: handshakes
    /// from now on use them, established connections (and so the motes' sessions) stay. A
    /// file that cannot be read leaves its link with the keys it had. A file others may read
    /// is warned about, as at start.
    pub fn reload(&self) -> Vec<PskReload> {
        self.links
            .iter()
            .map(|link| match load_psk(&link.name, &link.path) {
                Ok(table) => {
                    let identities = table.len();
                    // The link's task has stopped only when the gateway is stopping.
                    let _ = link.psk.send(table);
                    PskReload::Loaded {
                        link: link.name.clone(),
                        path: link.path.clone(),
                        identities,
                    }
                }
                Err(error) => PskReload::Failed {
                    link: link.name.clone(),
                    path: link.path.clone(),
                    error,
                },
            })
            .collect()
    }

    /// Whether any running link has a PSK file.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// A bind failure in the words of a `[[dtls]]` link (the UDP link's own say `[[udp]]`).
fn bind_error(link: &str, bind: SocketAddr, error: UdpLinkError) -> DtlsStartError {
    let (source, hint) = match error {
        UdpLinkError::AddressInUse { error, .. } => (
            error,
            "; another program (or another link) uses the port: choose another bind",
        ),
        UdpLinkError::AddressNotAvailable { error, .. } => {
            (error, "; the address is not one of this machine's")
        }
        UdpLinkError::PermissionDenied { error, .. } => {
            (error, "; ports below 1024 need CAP_NET_BIND_SERVICE")
        }
        UdpLinkError::Bind { error, .. } => (error, ""),
        other => {
            return DtlsStartError::Socket {
                link: link.to_owned(),
                source: other,
            }
        }
    };
    DtlsStartError::Bind {
        link: link.to_owned(),
        bind,
        source,
        hint,
    }
}

/// Reads a PSK file, warning when group or others may read or write it.
fn load_psk(link: &str, path: &std::path::Path) -> Result<PskTable, DtlsError> {
    let loaded = PskTable::load(path)?;
    if let Some(warning) = loaded.warning {
        warn!(link, "{warning}");
    }
    Ok(loaded.table)
}

/// The state of a link's task.
struct LinkTask {
    id: LinkId,
    name: String,
    socket: Arc<UdpLink>,
    endpoint: DtlsEndpoint,
    inbound: mpsc::Sender<Inbound>,
    stats: watch::Sender<DtlsLinkStats>,
    not_connected: u64,
    /// The runtime's count of datagrams handed over and not yet taken (see
    /// [`DtlsHandle::send_batch`]).
    queued: Arc<AtomicUsize>,
}

/// The link's loop: one input (a datagram, a transmit, a deadline, new keys), then the
/// endpoint's events to the core and its datagrams to the socket.
async fn run(
    mut task: LinkTask,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut psk: watch::Receiver<PskTable>,
) {
    let mut batch = task.socket.recv_batch_buffer();
    // The endpoint's datagrams of one turn, sent together; reused from turn to turn.
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    // The table the endpoint started with is not news.
    psk.borrow_and_update();
    // One timer for the endpoint's deadline, moved only when the deadline moves: a fresh
    // timer every turn would be registered with tokio's timer and removed again each time.
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<Option<std::time::Instant>> = None;
    loop {
        // libssl times its retransmissions by the real clock, so the endpoint's deadlines
        // are real-clock instants too (std, not tokio's clock, which tests may pause): the
        // timer waits for as long as is left of it by the real clock.
        let deadline = task.endpoint.poll_timeout();
        if armed != Some(deadline) {
            let wait = deadline.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(std::time::Instant::now())
            });
            timer.as_mut().reset(tokio::time::Instant::now() + wait);
            armed = Some(deadline);
        }
        tokio::select! {
            // Every datagram waiting, in one system call; cancel-safe (a batch read is
            // returned in the same poll), so a transmit or a deadline loses nothing.
            received = task.socket.recv_batch(&mut batch) => match received {
                Ok(_) => {
                    let now = std::time::Instant::now();
                    for (datagram, from) in batch.iter() {
                        task.endpoint.handle(now, from, datagram);
                    }
                }
                Err(error) => {
                    // The socket itself is broken (transient errors, such as an ICMP port
                    // unreachable from a peer that went away, are skipped and counted by
                    // the UDP link): wait rather than spin.
                    warn!(link = %task.name, %error, "DTLS receive failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            command = outgoing.recv() => match command {
                Some(batch) => task.encrypt(batch),
                None => return,
            },
            changed = psk.changed() => {
                if changed.is_err() {
                    return;
                }
                let table = psk.borrow_and_update().clone();
                task.endpoint.set_psk(table);
            }
            () = &mut timer => {
                task.endpoint.handle_timeout(std::time::Instant::now());
                // Armed again for the endpoint's next deadline, even if it did not move.
                armed = None;
            }
        }
        // Take what else the core queued before answering, so the turns' datagrams leave
        // together.
        while let Ok(batch) = outgoing.try_recv() {
            task.encrypt(batch);
        }
        if !task.report().await {
            return;
        }
        task.transmit(&mut out).await;
        task.publish_stats();
    }
}

impl LinkTask {
    /// Encrypts a batch of the core's datagrams (the endpoint queues the records).
    fn encrypt(&mut self, batch: Outgoing) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        for (datagram, to) in batch {
            match self.endpoint.send(to, &datagram) {
                Ok(()) => {}
                Err(DtlsError::NotConnected(peer)) => {
                    self.not_connected = self.not_connected.saturating_add(1);
                    debug!(link = %self.name, %peer, "no DTLS connection with the peer: datagram dropped");
                }
                // The endpoint has dropped the connection and queued a Lost event for it.
                Err(error) => debug!(link = %self.name, %error, "DTLS send failed"),
            }
        }
    }

    /// Hands the core the endpoint's events; false when the core has stopped.
    async fn report(&mut self) -> bool {
        while let Some(event) = self.endpoint.poll_event() {
            let inbound = match event {
                DtlsEvent::Datagram {
                    from,
                    identity,
                    data,
                } => Inbound::Authenticated {
                    link: self.id,
                    from,
                    identity,
                    datagram: Bytes::from(data),
                },
                DtlsEvent::Lost {
                    from,
                    identity,
                    reason,
                } => {
                    debug!(link = %self.name, peer = %from, %identity, ?reason, "DTLS connection lost");
                    Inbound::PeerLost {
                        link: self.id,
                        from,
                    }
                }
                // A session with a Connection ID followed its mote to a new address (a NAT
                // rebinding): the core moves the MQTT-SN session with it.
                DtlsEvent::Moved { from, to, identity } => {
                    debug!(link = %self.name, %from, %to, %identity, "DTLS session moved (Connection ID)");
                    Inbound::PeerMoved {
                        link: self.id,
                        from,
                        to,
                        identity,
                    }
                }
                DtlsEvent::Connected { from, identity } => {
                    debug!(link = %self.name, peer = %from, %identity, "DTLS handshake completed");
                    continue;
                }
                // After a clean DISCONNECT this changes nothing; a connected mote that closes
                // without one is lost (the core decides, from the session's state).
                DtlsEvent::Closed { from, identity } => {
                    debug!(link = %self.name, peer = %from, %identity, "DTLS connection closed");
                    Inbound::PeerClosed {
                        link: self.id,
                        from,
                    }
                }
                // Counted in the stats; anyone can cause these, so never above debug.
                DtlsEvent::Refused { from, reason } => {
                    debug!(link = %self.name, peer = %from, ?reason, "DTLS handshake refused");
                    continue;
                }
            };
            if self.inbound.send(inbound).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Sends the endpoint's datagrams in as few system calls as the OS allows
    /// (`sendmmsg`); a datagram the OS refuses is counted by the UDP link and logged.
    async fn transmit(&mut self, out: &mut Vec<(Vec<u8>, SocketAddr)>) {
        out.extend(std::iter::from_fn(|| self.endpoint.poll_transmit()).map(|t| (t.data, t.to)));
        if out.is_empty() {
            return;
        }
        let accepted = self.socket.send_batch(out).await;
        if accepted < out.len() {
            debug!(link = %self.name, refused = out.len() - accepted, "DTLS sends failed");
        }
        out.clear();
    }

    fn publish_stats(&self) {
        let current = DtlsLinkStats {
            endpoint: self.endpoint.stats().clone(),
            connections: self.endpoint.connections(),
            handshakes: self.endpoint.handshakes(),
            not_connected: self.not_connected,
        };
        self.stats.send_if_modified(|shown| {
            let changed = *shown != current;
            if changed {
                *shown = current;
            }
            changed
        });
    }
}

/// A shared view of one link's counters (see [`DtlsLinkStats`]).
pub type DtlsStatsWatch = watch::Receiver<DtlsLinkStats>;
