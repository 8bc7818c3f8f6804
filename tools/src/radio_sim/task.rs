//! The simulator's one task: moves datagrams between the motes' UDP socket and the serial
//! line, answers the handle's requests, and plugs the dongle back in after a replug.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sn_config::SerialFraming;
use sn_transports::serial::framing::xbee::DeliveryStatus;
use sn_transports::serial::framing::FrameError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_serial::SerialStream;

use super::codec::{Destination, Downlink, FromGateway, RadioCodec};
use super::error::RadioSimError;
use super::framing::RadioAddress;
use super::line::Line;
use super::link_path;
use super::motes::{Contact, Mote, MoteTable};
use super::stats::{add, bump, RadioSimStats};
use super::xbee_radio::ADDRESS_NOT_FOUND;
use super::RadioSimEvent;

/// The most bytes waiting to be written to the line. When the gateway does not read (not
/// started yet, stalled), frames beyond this are dropped and counted, as a radio whose serial
/// buffer is full would.
pub(super) const BACKLOG_LIMIT: usize = 64 * 1024;
/// Bytes asked for per read from the line.
const READ_CHUNK: usize = 4096;
/// The largest UDP datagram.
const UDP_BUFFER: usize = 65_536;
/// How long to wait before opening a new pty pair after the line failed on its own (or a
/// pair could not be opened), so that a persistent failure is no busy loop.
const LINE_RETRY: Duration = Duration::from_secs(1);
/// How long to stop receiving from motes after an unexpected UDP error, for the same reason.
const UDP_PAUSE: Duration = Duration::from_millis(100);

/// A request from the handle.
#[derive(Debug)]
pub(super) enum Command {
    /// Unplug now, plug back in after `downtime`; answered with the new device path.
    Replug {
        downtime: Duration,
        done: oneshot::Sender<Result<PathBuf, RadioSimError>>,
    },
    /// Write these bytes on the line, before any frame that follows.
    InjectGarbage {
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), RadioSimError>>,
    },
    /// Make unicasts to `to` fail with `status` (XBee), or deliver them again (`None`).
    FailDelivery {
        to: RadioAddress,
        status: Option<DeliveryStatus>,
        done: oneshot::Sender<()>,
    },
    /// Close everything and end the task.
    Stop { done: oneshot::Sender<()> },
}

/// What the handle reads without asking the task.
#[derive(Debug)]
pub(super) struct Shared {
    /// The current (or, while unplugged, the last) slave device path.
    pub(super) device: PathBuf,
    /// Whether the dongle is plugged in.
    pub(super) plugged: bool,
    /// Counters as of the task's last step.
    pub(super) stats: RadioSimStats,
    /// The mote table as of the task's last step.
    pub(super) motes: Vec<Mote>,
}

/// Locks `shared`, taking the data over if a panicking thread poisoned the lock (the task
/// only ever stores whole values in it, so it is always consistent).
pub(super) fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Things logged at warn level once per run, then at debug level.
#[derive(Debug, Default)]
struct Warned {
    oversize: bool,
    backlog: bool,
    unplugged: bool,
}

/// The simulator's state, owned by its task.
pub(super) struct Radio {
    framing: SerialFraming,
    max_frame: usize,
    codec: RadioCodec,
    motes: MoteTable,
    failing: HashMap<RadioAddress, DeliveryStatus>,
    udp: UdpSocket,
    udp_buf: Vec<u8>,
    /// Set after an unexpected UDP error: receiving resumes then.
    udp_paused_until: Option<Instant>,
    reader: Option<ReadHalf<SerialStream>>,
    writer: Option<WriteHalf<SerialStream>>,
    slave: Option<SerialStream>,
    device: PathBuf,
    link: Option<PathBuf>,
    read_buf: Vec<u8>,
    /// Bytes for the line, written as the gateway reads; at most [`BACKLOG_LIMIT`].
    backlog: Vec<u8>,
    /// While unplugged: when to plug back in.
    plug_at: Option<Instant>,
    /// Replug requests to answer once plugged back in.
    replug_waiters: Vec<oneshot::Sender<Result<PathBuf, RadioSimError>>>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<RadioSimEvent>,
    shared: Arc<Mutex<Shared>>,
    stats: RadioSimStats,
    motes_changed: bool,
    warned: Warned,
}

/// What [`Radio::new`] needs.
pub(super) struct Parts {
    pub(super) framing: SerialFraming,
    pub(super) max_frame: usize,
    pub(super) max_motes: usize,
    pub(super) codec: RadioCodec,
    pub(super) udp: UdpSocket,
    pub(super) line: Line,
    pub(super) link: Option<PathBuf>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<RadioSimEvent>,
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl Radio {
    /// The state of a simulator whose line is open and link made.
    pub(super) fn new(parts: Parts) -> Self {
        let Parts {
            framing,
            max_frame,
            max_motes,
            codec,
            udp,
            line,
            link,
            commands,
            events,
            shared,
        } = parts;
        Radio {
            framing,
            max_frame,
            codec,
            motes: MoteTable::new(framing, max_motes),
            failing: HashMap::new(),
            udp,
            udp_buf: vec![0; UDP_BUFFER],
            udp_paused_until: None,
            reader: Some(line.reader),
            writer: Some(line.writer),
            slave: Some(line.slave),
            device: line.device,
            link,
            read_buf: vec![0; READ_CHUNK],
            backlog: Vec::new(),
            plug_at: None,
            replug_waiters: Vec::new(),
            commands,
            events,
            shared,
            stats: RadioSimStats::default(),
            motes_changed: false,
            warned: Warned::default(),
        }
    }

    /// Runs until the handle asks it to stop or is dropped.
    pub(super) async fn run(mut self) {
        loop {
            self.publish();
            let plugged = self.writer.is_some();
            let writing = plugged && !self.backlog.is_empty();
            let receiving = self.udp_paused_until.is_none();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Stop { done }) => {
                        self.close();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.command(command),
                    None => {
                        self.close();
                        return;
                    }
                },
                read = read_some(self.reader.as_mut(), &mut self.read_buf), if plugged => {
                    self.line_read(read);
                }
                written = write_some(self.writer.as_mut(), &self.backlog), if writing => {
                    self.line_written(written);
                }
                received = self.udp.recv_from(&mut self.udp_buf), if receiving => {
                    self.mote_datagram(received);
                }
                () = sleep_until(self.plug_at) => self.plug(),
                () = sleep_until(self.udp_paused_until) => self.udp_paused_until = None,
            }
        }
    }

    /// Copies what the handle shows into the shared state.
    fn publish(&mut self) {
        let mut shared = lock(&self.shared);
        shared.stats = self.stats;
        shared.plugged = self.writer.is_some();
        shared.device.clone_from(&self.device);
        if self.motes_changed {
            shared.motes = self.motes.all().copied().collect();
            self.motes_changed = false;
        }
    }

    fn emit(&self, event: RadioSimEvent) {
        // Nobody reading events is fine: they are dropped when the queue is full.
        let _ = self.events.try_send(event);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Replug { downtime, done } => {
                self.unplug("replug requested");
                self.plug_at = Some(Instant::now() + downtime);
                self.replug_waiters.push(done);
            }
            Command::InjectGarbage { bytes, done } => {
                let result = self.queue_raw(&bytes);
                if result.is_ok() {
                    add(&mut self.stats.garbage_bytes, bytes.len());
                }
                self.publish();
                let _ = done.send(result);
            }
            Command::FailDelivery { to, status, done } => {
                match status {
                    Some(status) => self.failing.insert(to, status),
                    None => self.failing.remove(&to),
                };
                let _ = done.send(());
            }
            Command::Stop { done } => {
                // Handled in `run`; answered here only if it ever arrives another way.
                let _ = done.send(());
            }
        }
    }

    /// Appends bytes to the backlog as they are, or says why not.
    fn queue_raw(&mut self, bytes: &[u8]) -> Result<(), RadioSimError> {
        if self.writer.is_none() {
            return Err(RadioSimError::LineUnavailable {
                reason: "the dongle is unplugged",
            });
        }
        if self.backlog.len().saturating_add(bytes.len()) > BACKLOG_LIMIT {
            return Err(RadioSimError::LineUnavailable {
                reason: "the backlog is full: the gateway does not read the line",
            });
        }
        self.backlog.extend_from_slice(bytes);
        Ok(())
    }

    /// A datagram (or an error) from the motes' socket.
    fn mote_datagram(&mut self, received: io::Result<(usize, SocketAddr)>) {
        let (len, from) = match received {
            Ok(received) => received,
            Err(error) => {
                bump(&mut self.stats.udp_errors);
                if !matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) {
                    tracing::warn!(%error, "receiving from motes failed; pausing briefly");
                    self.udp_paused_until = Some(Instant::now() + UDP_PAUSE);
                }
                return;
            }
        };
        bump(&mut self.stats.from_motes);
        if len == 0 {
            // A radio sends no empty packets.
            bump(&mut self.stats.dropped);
            tracing::debug!(%from, "empty datagram from a mote dropped");
            return;
        }
        let Some(mote) = self.contact(from) else {
            bump(&mut self.stats.dropped);
            return;
        };
        let datagram = self.udp_buf.get(..len).unwrap_or_default();
        let queued = queue_frame(
            &mut self.backlog,
            self.writer.is_some(),
            &mut self.warned.backlog,
            |out| self.codec.encode_uplink(&mote.address, datagram, out),
        );
        match queued {
            Ok(true) => {
                bump(&mut self.stats.frames_to_gateway);
                tracing::trace!(mote = %mote.address, len, "datagram to the gateway");
            }
            Ok(false) => {
                bump(&mut self.stats.dropped);
                if self.writer.is_none() {
                    let first = !std::mem::replace(&mut self.warned.unplugged, true);
                    log_drop(
                        first,
                        "datagram from a mote dropped: the dongle is unplugged",
                    );
                }
            }
            Err(error) => {
                bump(&mut self.stats.dropped);
                let first = !std::mem::replace(&mut self.warned.oversize, true);
                if first {
                    tracing::warn!(mote = %mote.address, %error, "datagram from a mote dropped");
                } else {
                    tracing::debug!(mote = %mote.address, %error, "datagram from a mote dropped");
                }
            }
        }
    }

    /// The mote that sends from `from`, added to the table if new.
    fn contact(&mut self, from: SocketAddr) -> Option<Mote> {
        match self.motes.contact(from)? {
            Contact::Known(mote) => Some(mote),
            Contact::Joined { mote, forgotten } => {
                if let Some(old) = forgotten {
                    bump(&mut self.stats.motes_forgotten);
                    tracing::info!(mote = %old.address, udp = %old.udp, "mote forgotten: table full");
                    self.emit(RadioSimEvent::MoteForgotten(old));
                }
                bump(&mut self.stats.motes_joined);
                self.motes_changed = true;
                tracing::info!(mote = %mote.address, udp = %mote.udp, "new mote");
                self.emit(RadioSimEvent::MoteJoined(mote));
                Some(mote)
            }
        }
    }

    /// Bytes (or an error) read from the line.
    fn line_read(&mut self, read: io::Result<usize>) {
        let len = match read {
            Ok(0) => return self.line_failed("end of file on the pty master"),
            Ok(len) => len,
            Err(error) if is_retryable(&error) => return,
            Err(error) => return self.line_failed(&error.to_string()),
        };
        self.codec
            .push(self.read_buf.get(..len).unwrap_or_default());
        while let Some(item) = self.codec.next() {
            match item {
                Ok(FromGateway::Downlink(downlink)) => self.downlink(downlink),
                Ok(FromGateway::Unexpected(what)) => {
                    bump(&mut self.stats.unexpected_frames);
                    tracing::debug!(what, "frame from the gateway ignored");
                }
                Err(error) => {
                    bump(&mut self.stats.framing_errors);
                    tracing::debug!(%error, "frame from the gateway dropped");
                }
            }
        }
    }

    /// The outcome of a write to the line.
    fn line_written(&mut self, written: io::Result<usize>) {
        match written {
            Ok(0) => self.line_failed("the pty master takes no more bytes"),
            Ok(len) => {
                self.backlog.drain(..len.min(self.backlog.len()));
            }
            Err(error) if is_retryable(&error) => {}
            Err(error) => self.line_failed(&error.to_string()),
        }
    }

    /// A datagram the gateway asked the radio to send.
    fn downlink(&mut self, downlink: Downlink) {
        bump(&mut self.stats.frames_from_gateway);
        let Downlink {
            to,
            datagram,
            frame_id,
        } = downlink;
        match to {
            Destination::Broadcast => {
                bump(&mut self.stats.broadcasts);
                for mote in self.motes.all() {
                    if !self.failing.contains_key(&mote.address) {
                        send(&self.udp, &mut self.stats, mote.udp, &datagram);
                    }
                }
                self.status(frame_id, None, DeliveryStatus::SUCCESS);
            }
            Destination::Unicast(address) => match self.motes.by_address(&address).copied() {
                None => {
                    bump(&mut self.stats.unknown_destinations);
                    tracing::debug!(to = %address, "datagram for no known mote");
                    self.status(frame_id, None, ADDRESS_NOT_FOUND);
                }
                Some(mote) => match self.failing.get(&mote.address).copied() {
                    Some(status) => {
                        bump(&mut self.stats.failed_deliveries);
                        tracing::debug!(to = %mote.address, %status, "delivery failed on purpose");
                        self.status(frame_id, Some(mote.address), status);
                    }
                    None => {
                        send(&self.udp, &mut self.stats, mote.udp, &datagram);
                        self.status(frame_id, Some(mote.address), DeliveryStatus::SUCCESS);
                    }
                },
            },
        }
    }

    /// Answers a transmit request that asked for it (XBee, frame id not 0).
    fn status(&mut self, frame_id: u8, to: Option<RadioAddress>, delivery: DeliveryStatus) {
        if frame_id == 0 || !self.codec.reports_delivery() {
            return;
        }
        let queued = queue_frame(
            &mut self.backlog,
            self.writer.is_some(),
            &mut self.warned.backlog,
            |out| {
                self.codec
                    .encode_status(frame_id, to.as_ref(), delivery, out)
            },
        );
        match queued {
            Ok(true) => bump(&mut self.stats.statuses),
            Ok(false) | Err(_) => bump(&mut self.stats.dropped),
        }
    }

    /// The line failed on its own: treated as an unplug, with a new pair after a pause.
    fn line_failed(&mut self, cause: &str) {
        tracing::warn!(cause, "serial line failed; opening a new pty pair");
        self.unplug(cause);
        self.plug_at = Some(Instant::now() + LINE_RETRY);
    }

    /// Pulls the dongle out: closes both sides of the pty (the gateway's reads then fail),
    /// loses what was not written yet, removes the link.
    fn unplug(&mut self, cause: &str) {
        if self.writer.is_none() {
            return;
        }
        self.reader = None;
        self.writer = None;
        self.slave = None;
        self.backlog.clear();
        if let Some(link) = &self.link {
            link_path::remove(link, &self.device);
        }
        bump(&mut self.stats.unplugs);
        tracing::info!(device = %self.device.display(), cause, "dongle unplugged");
        self.emit(RadioSimEvent::Unplugged {
            device: self.device.clone(),
        });
    }

    /// Plugs a dongle back in: a new pty pair, the link pointed at it, a fresh decoder.
    fn plug(&mut self) {
        self.plug_at = None;
        let line = match Line::open() {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "cannot open a new pty pair; retrying");
                self.plug_at = Some(Instant::now() + LINE_RETRY);
                for waiter in self.replug_waiters.drain(..) {
                    let _ = waiter.send(Err(RadioSimError::Pty {
                        reason: error.to_string(),
                    }));
                }
                return;
            }
        };
        match RadioCodec::new(self.framing, self.max_frame) {
            Ok(codec) => self.codec = codec,
            // Cannot happen (the same values were accepted at start); keep the old decoder.
            Err(error) => tracing::debug!(%error, "decoder not renewed"),
        }
        self.reader = Some(line.reader);
        self.writer = Some(line.writer);
        self.slave = Some(line.slave);
        self.device = line.device;
        let mut link_error = None;
        if let Some(link) = &self.link {
            if let Err(error) = link_path::point(link, &self.device) {
                tracing::warn!(link = %link.display(), %error, "cannot point the link at the new device");
                link_error = Some((link.clone(), error));
            }
        }
        tracing::info!(device = %self.device.display(), "dongle plugged in");
        self.emit(RadioSimEvent::Plugged {
            device: self.device.clone(),
        });
        // The handle shows the new device before the replug is answered.
        self.publish();
        for waiter in self.replug_waiters.drain(..) {
            let result = match &link_error {
                None => Ok(self.device.clone()),
                Some((link, error)) => Err(RadioSimError::Link {
                    link: link.clone(),
                    error: io::Error::new(error.kind(), error.to_string()),
                }),
            };
            let _ = waiter.send(result);
        }
    }

    /// Closes the line and removes the link, for the end of the run.
    fn close(&mut self) {
        self.reader = None;
        self.writer = None;
        self.slave = None;
        if let Some(link) = &self.link {
            link_path::remove(link, &self.device);
        }
        self.publish();
    }
}

/// Appends one frame made by `encode` to the backlog. `Ok(false)` when the dongle is
/// unplugged or the backlog would grow past [`BACKLOG_LIMIT`] (nothing appended); `Err` when
/// the framer refused the datagram.
fn queue_frame(
    backlog: &mut Vec<u8>,
    plugged: bool,
    warned: &mut bool,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), FrameError>,
) -> Result<bool, FrameError> {
    if !plugged {
        return Ok(false);
    }
    let before = backlog.len();
    encode(backlog)?;
    if backlog.len() > BACKLOG_LIMIT {
        backlog.truncate(before);
        let first = !std::mem::replace(warned, true);
        log_drop(
            first,
            "line backlog full (is the gateway reading the serial device?); frame dropped",
        );
        return Ok(false);
    }
    Ok(true)
}

/// Sends one datagram to a mote, counting the outcome. A full socket buffer drops it (UDP
/// may lose datagrams; the mote's client retries), so the task never waits on a mote.
fn send(udp: &UdpSocket, stats: &mut RadioSimStats, to: SocketAddr, datagram: &[u8]) {
    match udp.try_send_to(datagram, to) {
        Ok(_) => bump(&mut stats.to_motes),
        Err(error) => {
            bump(&mut stats.udp_errors);
            tracing::debug!(%to, %error, "datagram to a mote not sent");
        }
    }
}

fn log_drop(first: bool, what: &'static str) {
    if first {
        tracing::warn!("{what} (counted; further ones logged at debug level)");
    } else {
        tracing::debug!("{what}");
    }
}

/// Errors after which the same descriptor is worth using again.
fn is_retryable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// Reads from the line, or waits forever while it is unplugged.
async fn read_some(
    reader: Option<&mut ReadHalf<SerialStream>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Writes part of the backlog, or waits forever while unplugged.
async fn write_some(
    writer: Option<&mut WriteHalf<SerialStream>>,
    bytes: &[u8],
) -> io::Result<usize> {
    match writer {
        Some(writer) => writer.write(bytes).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
