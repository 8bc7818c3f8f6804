//! A simulated USB radio dongle, for tests and for trying the gateway without hardware.
//!
//! [`RadioSim`] plays the dongle (an XBee in API mode 1 or 2, a LoRa modem with COBS
//! framing, a KISS device, or a mote wired to the line with raw framing) and the motes
//! beyond it:
//!
//! * **The serial side** is a pseudo-terminal pair. The gateway opens the slave side
//!   (`/dev/pts/N`, see [`RadioSim::device`]) as its serial device; the simulator holds the
//!   master side. With a link path configured, the simulator keeps a symlink there pointing
//!   at the current slave, like a `/dev/serial/by-id/...` name, so the gateway's
//!   configuration can name a path that survives a [`replug`](RadioSim::replug).
//! * **The mote side** is a UDP socket ([`RadioSim::udp_addr`]). Every UDP source address
//!   that sends to it becomes one simulated mote, with a radio address given in order of
//!   first contact ([`SimulatedRadio::mote_address`]): XBee 64-bit `0x0013A20000000001 + n` and
//!   16-bit `0x0001 + n`, COBS node `1 + n`. KISS (port 0, as on an RNode) and raw carry the
//!   line's one mote: the last new UDP source takes the line over. So any MQTT-SN client,
//!   e.g. `mqtt-sn pub --gateway <udp_addr>`, reaches the gateway through the simulated radio.
//!
//! A datagram from a mote is framed as the radio hands it to its host (XBee: a 0x90
//! Receive Packet from the mote's address) and written to the line. What the gateway writes
//! is decoded: a unicast goes to its mote's UDP address, a broadcast (XBee 64-bit 0xFFFF,
//! COBS node 0xFFFF: each framer's `broadcast_address()`) to every mote; on KISS everything
//! on port 0 (the framer's broadcast address too) goes to the one mote. An XBee
//! transmit request with a non-zero frame id is answered with a 0x8B Transmit Status:
//! success, 0x24 (address not found) when no mote has the destination address, or the
//! status set with [`RadioSim::fail_delivery`].
//!
//! Everything runs in one tokio task; the [`RadioSim`] handle talks to it. Buffers are
//! bounded: the mote table (the least recently heard mote is forgotten when it is full),
//! and the bytes waiting for the gateway to read the line (64 KiB; frames beyond are dropped
//! and counted, as a radio with a full serial buffer would).

mod codec;
mod error;
mod framing;
mod line;
mod link_path;
mod motes;
mod stats;
mod task;
mod xbee_radio;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sn_transports::serial::framing::xbee::DeliveryStatus;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use error::RadioSimError;
pub use framing::{
    parse_framing, RadioAddress, SimulatedRadio, UnknownFraming, COBS_FIRST_NODE, FRAMING_NAMES,
    KISS_PORT, XBEE_FIRST_LONG, XBEE_FIRST_SHORT,
};
pub use motes::Mote;
/// The framing the simulator plays: the gateway's `[[serial]]` `framing`, defined in sn-config.
pub use sn_config::SerialFraming;
pub use stats::RadioSimStats;
pub use xbee_radio::{ADDRESS_NOT_FOUND, NETWORK_ACK_FAILURE};

use codec::RadioCodec;
use line::Line;
use task::{lock, Command, Parts, Radio, Shared};

/// How many events wait for [`RadioSim::next_event`] before further ones are dropped.
const EVENT_QUEUE: usize = 1024;

/// How a simulator is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RadioSimConfig {
    /// The framing on the serial line; the gateway's `[[serial]]` `framing` must match.
    pub framing: SerialFraming,
    /// The framing's size limit, counted as the gateway's `max_frame` counts it. Default:
    /// the gateway's default for the framing ([`SerialFraming::default_max_frame`]).
    pub max_frame: usize,
    /// Where motes send their MQTT-SN datagrams. Default `127.0.0.1:0` (a free port on
    /// loopback; [`RadioSim::udp_addr`] tells which).
    pub udp: SocketAddr,
    /// A symlink to keep pointing at the current pty slave, or none.
    pub link: Option<PathBuf>,
    /// The most motes in the table at once ([`SimulatedRadio::default_max_motes`] by default).
    pub max_motes: usize,
}

impl RadioSimConfig {
    /// The defaults for `framing`: its default `max_frame`, UDP on `127.0.0.1:0`, no link.
    pub fn new(framing: SerialFraming) -> Self {
        RadioSimConfig {
            framing,
            max_frame: framing.default_max_frame(),
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            link: None,
            max_motes: framing.default_max_motes(),
        }
    }

    /// The same with a link path.
    pub fn with_link(mut self, link: impl Into<PathBuf>) -> Self {
        self.link = Some(link.into());
        self
    }

    /// The same with another `max_frame`.
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// The same with another UDP address for the motes.
    pub fn with_udp(mut self, udp: SocketAddr) -> Self {
        self.udp = udp;
        self
    }

    /// The same with another bound on the mote table.
    pub fn with_max_motes(mut self, max_motes: usize) -> Self {
        self.max_motes = max_motes;
        self
    }
}

/// Something that happened in the simulator, for a user watching it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RadioSimEvent {
    /// A UDP address sent for the first time and became this mote.
    MoteJoined(Mote),
    /// The mote table was full; this mote, heard from least recently, was dropped and its
    /// radio address given to the next new one.
    MoteForgotten(Mote),
    /// The dongle was pulled out (a replug, or the line failed).
    Unplugged {
        /// The slave device that went away.
        device: PathBuf,
    },
    /// A dongle was plugged (back) in.
    Plugged {
        /// The new slave device.
        device: PathBuf,
    },
}

/// A running radio simulator. Dropping it stops the simulator, closes the line and removes
/// the link; [`shutdown`](Self::shutdown) does the same and waits for it.
#[derive(Debug)]
pub struct RadioSim {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<RadioSimEvent>,
    shared: Arc<Mutex<Shared>>,
    udp_addr: SocketAddr,
    link: Option<PathBuf>,
    framing: SerialFraming,
    max_frame: usize,
    task: JoinHandle<()>,
}

impl RadioSim {
    /// Checks `config`, binds the UDP socket, opens the pty pair, makes the link and starts
    /// the simulator's task. Must be called within a tokio runtime.
    pub async fn start(config: RadioSimConfig) -> Result<RadioSim, RadioSimError> {
        let RadioSimConfig {
            framing,
            max_frame,
            udp,
            link,
            max_motes,
        } = config;
        let codec = RadioCodec::new(framing, max_frame)
            .map_err(|error| RadioSimError::MaxFrame { framing, error })?;
        let capacity = framing.mote_capacity();
        if !(1..=capacity).contains(&max_motes) {
            return Err(RadioSimError::MaxMotes {
                framing,
                max_motes,
                capacity,
            });
        }
        if let Some(link) = &link {
            link_path::check(link)?;
        }
        let socket = UdpSocket::bind(udp)
            .await
            .map_err(|error| RadioSimError::Udp { addr: udp, error })?;
        let udp_addr = socket
            .local_addr()
            .map_err(|error| RadioSimError::Udp { addr: udp, error })?;
        let line = Line::open()?;
        if let Some(link) = &link {
            link_path::point(link, &line.device).map_err(|error| RadioSimError::Link {
                link: link.clone(),
                error,
            })?;
        }
        tracing::info!(
            device = %line.device.display(),
            link = ?link,
            %udp_addr,
            framing = framing.description(),
            max_frame,
            "radio simulator started"
        );
        let shared = Arc::new(Mutex::new(Shared {
            device: line.device.clone(),
            plugged: true,
            stats: RadioSimStats::default(),
            motes: Vec::new(),
        }));
        let (command_tx, command_rx) = mpsc::channel(16);
        let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
        let radio = Radio::new(Parts {
            framing,
            max_frame,
            max_motes,
            codec,
            udp: socket,
            line,
            link: link.clone(),
            commands: command_rx,
            events: event_tx,
            shared: Arc::clone(&shared),
        });
        let task = tokio::spawn(radio.run());
        Ok(RadioSim {
            commands: command_tx,
            events: event_rx,
            shared,
            udp_addr,
            link,
            framing,
            max_frame,
            task,
        })
    }

    /// Where motes send MQTT-SN: `mqtt-sn pub --gateway <this>`.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The current pty slave, e.g. `/dev/pts/7` (while unplugged, the last one). It changes
    /// with a replug; [`link`](Self::link) does not.
    pub fn device(&self) -> PathBuf {
        lock(&self.shared).device.clone()
    }

    /// The symlink kept pointing at the current device, if configured.
    pub fn link(&self) -> Option<&Path> {
        self.link.as_deref()
    }

    /// The path for the gateway's `device`: the link if there is one, else the device.
    pub fn serial_path(&self) -> PathBuf {
        self.link.clone().unwrap_or_else(|| self.device())
    }

    /// The framing on the line.
    pub fn framing(&self) -> SerialFraming {
        self.framing
    }

    /// The framing's size limit in use.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether the dongle is plugged in (false during a replug's downtime).
    pub fn is_plugged(&self) -> bool {
        lock(&self.shared).plugged
    }

    /// The counters as of the task's last step.
    pub fn stats(&self) -> RadioSimStats {
        lock(&self.shared).stats
    }

    /// The motes heard so far, in index order.
    pub fn motes(&self) -> Vec<Mote> {
        lock(&self.shared).motes.clone()
    }

    /// Pulls the dongle out and plugs it back in after `downtime`: closes the pty pair (the
    /// gateway's reads fail with EIO or end of file), drops the bytes not yet written,
    /// removes the link; then opens a new pair and points the link at it. The mote table is
    /// kept. Returns the new device path once it is plugged back in.
    pub async fn replug(&self, downtime: Duration) -> Result<PathBuf, RadioSimError> {
        let (done, answer) = oneshot::channel();
        self.request(Command::Replug { downtime, done }).await?;
        answer.await.map_err(|_| RadioSimError::Stopped)?
    }

    /// Writes `bytes` on the line as they are, before any frame that follows: line noise,
    /// to test that the gateway finds the next frame.
    pub async fn inject_garbage(&self, bytes: &[u8]) -> Result<(), RadioSimError> {
        let (done, answer) = oneshot::channel();
        self.request(Command::InjectGarbage {
            bytes: bytes.to_vec(),
            done,
        })
        .await?;
        answer.await.map_err(|_| RadioSimError::Stopped)?
    }

    /// Makes every unicast to the mote at `to` fail from now on: not delivered, and on XBee
    /// answered with a transmit status carrying `status` (e.g. [`NETWORK_ACK_FAILURE`]).
    /// Broadcasts skip the mote too. Other framings just drop the datagrams.
    pub async fn fail_delivery(
        &self,
        to: RadioAddress,
        status: DeliveryStatus,
    ) -> Result<(), RadioSimError> {
        self.set_failing(to, Some(status)).await
    }

    /// Delivers to the mote at `to` again after [`fail_delivery`](Self::fail_delivery).
    pub async fn restore_delivery(&self, to: RadioAddress) -> Result<(), RadioSimError> {
        self.set_failing(to, None).await
    }

    async fn set_failing(
        &self,
        to: RadioAddress,
        status: Option<DeliveryStatus>,
    ) -> Result<(), RadioSimError> {
        let (done, answer) = oneshot::channel();
        self.request(Command::FailDelivery { to, status, done })
            .await?;
        answer.await.map_err(|_| RadioSimError::Stopped)
    }

    /// The next thing that happened (a new mote, an unplug), waiting for one. `None` once
    /// the simulator has stopped and every event was taken.
    pub async fn next_event(&mut self) -> Option<RadioSimEvent> {
        self.events.recv().await
    }

    /// Stops the simulator: closes the line, removes the link, and waits until that is done.
    pub async fn shutdown(self) {
        let (done, answer) = oneshot::channel();
        if self.request(Command::Stop { done }).await.is_ok() {
            let _ = answer.await;
        }
    }

    async fn request(&self, command: Command) -> Result<(), RadioSimError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| RadioSimError::Stopped)
    }
}

impl Drop for RadioSim {
    /// Stops the task at once and removes the link, so that nothing is left behind even
    /// when the runtime shuts down right after.
    fn drop(&mut self) {
        self.task.abort();
        if let Some(link) = &self.link {
            let device = lock(&self.shared).device.clone();
            link_path::remove(link, &device);
        }
    }
}
