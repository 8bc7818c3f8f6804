//! Serial radio links in the runtime: one task per `[[serial]]` that owns the device, turns
//! the framing's addresses into the core's [`RadioAddr`]s and back, and reports XBee transmit
//! failures.
//!
//! The task reads and writes the device itself (a serial port has one owner), so the core's
//! transmits reach it through a bounded queue; a full queue drops the datagram, counts it and
//! logs it, like a full socket buffer would, and the MQTT-SN retries recover what mattered.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sn_config::{SerialConfig, SerialFraming};
use sn_transports::serial::framing::cobs::CobsFramer;
use sn_transports::serial::framing::kiss::{KissFramer, KissPort};
use sn_transports::serial::framing::raw::RawFramer;
use sn_transports::serial::framing::xbee::{ApiMode, DeliveryTracker, XBeeAddress, XBeeFramer};
use sn_transports::serial::framing::{FrameError, Framer, FramerStats, Received};
use sn_transports::serial::link::{SerialLink, SerialLinkConfig, SerialLinkError, SerialLinkStats};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::Inbound;
use crate::core::{Destination, LinkId, PeerAddr, RadioAddr};

/// Datagrams waiting for one serial link; a radio at 9600 baud sends about 10 short datagrams
/// a second, so this is minutes of backlog at most.
const OUTGOING_QUEUE: usize = 256;

/// How long an XBee transmit status is waited for before the transmission is forgotten (the
/// module's own retries and route discovery can take several seconds).
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a link's counters are taken when nothing else happens on it (the metrics
/// endpoint's snapshot is taken once a second).
const COUNTERS_REFRESH: Duration = Duration::from_secs(1);

/// Zigbee nodes whose latest 16-bit address is remembered per link; beyond it the oldest
/// entries are forgotten and the module looks the address up again.
const MAX_KNOWN_NODES: usize = 4096;

/// Why a serial link could not start.
#[derive(Debug, thiserror::Error)]
pub enum SerialStartError {
    /// The framing refused the configured size.
    #[error("serial link {device}: {error}; change max_frame in its [[serial]] section")]
    Framing {
        /// The device, as configured.
        device: String,
        /// What the framing said.
        error: FrameError,
    },
    /// The device could not be found or opened.
    #[error(transparent)]
    Open(#[from] SerialLinkError),
}

/// Every counter a serial link keeps, kept current by its task for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SerialCounters {
    /// The link's own: frames in and out, framing errors, sends refused or failed, the
    /// device going away and coming back.
    pub link: SerialLinkStats,
    /// The framer's, by reason: frames decoded, bad checksums, oversize, malformed,
    /// skipped, bytes thrown away while looking for a frame.
    pub framer: FramerStats,
    /// XBee links: radio transmissions to a mote the module's transmit status reports
    /// failed (the core counts them as `link_undelivered` for all links together).
    pub xbee_undelivered: u64,
    /// XBee links: transmissions whose transmit status never came within 30 s.
    pub xbee_status_timeouts: u64,
    /// XBee links: unicasts sent without asking for a status, because 255 were already
    /// awaited (a failure of those goes unreported).
    pub xbee_untracked: u64,
}

/// A datagram for the link's task to send.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) destination: Destination,
    pub(super) datagram: Bytes,
}

/// The runtime's side of a running serial link.
#[derive(Debug)]
pub(super) struct SerialHandle {
    pub(super) name: String,
    pub(super) outgoing: mpsc::Sender<Outgoing>,
    pub(super) task: JoinHandle<()>,
    /// Datagrams dropped because the link's queue was full.
    pub(super) dropped: u64,
    /// The link's counters, updated by its task.
    pub(super) stats: tokio::sync::watch::Receiver<SerialCounters>,
}

impl SerialHandle {
    /// Opens the device and starts the link's task. The device must be there now: a wrong
    /// path or identity is reported at start-up, not discovered later.
    pub(super) fn start(
        id: LinkId,
        settings: &SerialConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<SerialHandle, SerialStartError> {
        let config = SerialLinkConfig::new(settings.clone());
        let framing_error = |error| SerialStartError::Framing {
            device: settings.device.to_string(),
            error,
        };
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let (counters, stats) = tokio::sync::watch::channel(SerialCounters::default());
        let max = settings.max_frame;
        let (name, task) = match settings.framing {
            SerialFraming::XBee | SerialFraming::XBeeApi1 => {
                let mode = if settings.framing == SerialFraming::XBee {
                    ApiMode::Escaped
                } else {
                    ApiMode::Unescaped
                };
                let framer = XBeeFramer::new(mode, max).map_err(framing_error)?;
                let link = SerialLink::open(config, framer)?;
                spawn(id, link, XBeeBook::default(), inbound, rx, counters)
            }
            SerialFraming::Cobs => {
                let framer = CobsFramer::new(max).map_err(framing_error)?;
                let link = SerialLink::open(config, framer)?;
                spawn(id, link, NodeBook, inbound, rx, counters)
            }
            SerialFraming::Kiss => {
                // Data frames on port 0 only: an RNode's status reports use command bytes
                // whose low nibble is 0 on other ports (docs/radios/rnode-kiss.md).
                let framer = KissFramer::new(max)
                    .map_err(framing_error)?
                    .with_ports(0x0001);
                let link = SerialLink::open(config, framer)?;
                spawn(id, link, KissBook, inbound, rx, counters)
            }
            SerialFraming::Raw => {
                let framer = RawFramer::new(max).map_err(framing_error)?;
                let link = SerialLink::open(config, framer)?;
                spawn(id, link, DirectBook, inbound, rx, counters)
            }
        };
        Ok(SerialHandle {
            name,
            outgoing: tx,
            task,
            dropped: 0,
            stats,
        })
    }

    /// Queues a datagram for the link; a full queue drops it (counted, logged at debug).
    pub(super) fn send(&mut self, destination: Destination, datagram: Bytes) {
        let outgoing = Outgoing {
            destination,
            datagram,
        };
        if let Err(error) = self.outgoing.try_send(outgoing) {
            self.dropped += 1;
            debug!(link = %self.name, %error, dropped = self.dropped, "serial link queue full or closed: datagram dropped");
        }
    }
}

fn spawn<F, B>(
    id: LinkId,
    link: SerialLink<F>,
    book: B,
    inbound: mpsc::Sender<Inbound>,
    outgoing: mpsc::Receiver<Outgoing>,
    counters: tokio::sync::watch::Sender<SerialCounters>,
) -> (String, JoinHandle<()>)
where
    F: Framer + Send + 'static,
    F::Address: Send + Sync,
    B: AddressBook<F::Address> + Send + 'static,
{
    let name = link.name().to_string();
    info!(link = %name, "serial link open");
    (
        name,
        tokio::spawn(drive(id, link, book, inbound, outgoing, counters)),
    )
}

/// The link's task: receive, send, and match transmit statuses to what was sent.
async fn drive<F, B>(
    id: LinkId,
    mut link: SerialLink<F>,
    mut book: B,
    inbound: mpsc::Sender<Inbound>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    counters: tokio::sync::watch::Sender<SerialCounters>,
) where
    F: Framer,
    B: AddressBook<F::Address>,
{
    let mut xbee = SerialCounters::default();
    // Bytes that make no frame (garbage, a bad checksum) end no `recv_event`: the counters
    // are also taken on this tick, as often as the metrics snapshot.
    let mut refresh = tokio::time::interval(COUNTERS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tracked = link.framer().reports_delivery();
    let mut tracker: DeliveryTracker<RadioAddr> = DeliveryTracker::new(STATUS_TIMEOUT);
    let mut expiry = tokio::time::interval(STATUS_TIMEOUT);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // After every event: a copy of a few counters, taken by the metrics snapshot.
        let now = SerialCounters {
            link: link.stats(),
            framer: link.framer().stats(),
            ..xbee
        };
        counters.send_if_modified(|shown| {
            let changed = *shown != now;
            *shown = now;
            changed
        });
        tokio::select! {
            received = link.recv_event() => match received {
                Received::Datagram { from, datagram } => {
                    let from = book.learn(&from);
                    let message = Inbound::Datagram {
                        link: id,
                        from: PeerAddr::Radio(from),
                        datagram: Bytes::from(datagram),
                    };
                    if inbound.send(message).await.is_err() {
                        return;
                    }
                }
                Received::TransmitStatus(status) => {
                    let Some(to) = tracker.resolve(&status) else { continue };
                    if status.delivery.is_success() {
                        continue;
                    }
                    xbee.xbee_undelivered += 1;
                    debug!(link = %link.name(), peer = %to, status = %status.delivery, "radio reports a datagram undelivered");
                    let message = Inbound::Undelivered { link: id, to: PeerAddr::Radio(to) };
                    if inbound.send(message).await.is_err() {
                        return;
                    }
                }
            },
            next = outgoing.recv() => {
                let Some(Outgoing { destination, datagram }) = next else { return };
                let (to, peer) = match destination {
                    Destination::Unicast(PeerAddr::Radio(peer)) => match book.lookup(peer) {
                        Some(to) => (to, Some(peer)),
                        None => {
                            debug!(link = %link.name(), %peer, "no such address on this link: datagram dropped");
                            continue;
                        }
                    },
                    Destination::Unicast(other) => {
                        debug!(link = %link.name(), peer = %other, "not an address of this link: datagram dropped");
                        continue;
                    }
                    Destination::Discovery { .. } => (link.framer().broadcast_address(), None),
                };
                // Unicasts ask the radio for a transmit status so a failure reaches the core;
                // with 255 already waiting, the datagram goes untracked rather than late.
                let frame_id = match peer {
                    Some(peer) if tracked => {
                        match tracker.track(tokio::time::Instant::now().into_std(), peer) {
                            Ok(id) => id.get(),
                            Err(_) => {
                                xbee.xbee_untracked += 1;
                                0
                            }
                        }
                    }
                    _ => 0,
                };
                if let Err(error) = link.send_tracked(&to, &datagram, frame_id).await {
                    debug!(link = %link.name(), %error, "send failed");
                }
            }
            _ = refresh.tick() => {}
            _ = expiry.tick(), if tracked => {
                let now = tokio::time::Instant::now().into_std();
                while tracker.expire(now).is_some() {
                    xbee.xbee_status_timeouts += 1;
                }
            }
        }
    }
}

/// Maps a framing's addresses to the core's [`RadioAddr`] and back.
trait AddressBook<A> {
    /// The core's address of a sender (and remember what is needed to reach it).
    fn learn(&mut self, from: &A) -> RadioAddr;
    /// The framing's address for a destination, or `None` when it is not one of this link's.
    fn lookup(&self, to: RadioAddr) -> Option<A>;
}

/// XBee: the core sees the 64-bit address; the 16-bit network address, which changes when a
/// node rejoins, is kept here from the node's latest frame.
#[derive(Debug, Default)]
struct XBeeBook {
    shorts: HashMap<u64, u16>,
}

impl AddressBook<XBeeAddress> for XBeeBook {
    fn learn(&mut self, from: &XBeeAddress) -> RadioAddr {
        if self.shorts.len() >= MAX_KNOWN_NODES && !self.shorts.contains_key(&from.long) {
            // Forgetting a node costs only an address discovery by the module on the next
            // send to it, so any entry will do.
            if let Some(&victim) = self.shorts.keys().next() {
                self.shorts.remove(&victim);
            }
        }
        self.shorts.insert(from.long, from.short);
        RadioAddr::XBee(from.long)
    }

    fn lookup(&self, to: RadioAddr) -> Option<XBeeAddress> {
        match to {
            RadioAddr::XBee(long) => Some(XBeeAddress::new(
                long,
                self.shorts
                    .get(&long)
                    .copied()
                    .unwrap_or(XBeeAddress::UNKNOWN_SHORT),
            )),
            _ => None,
        }
    }
}

/// COBS: 16-bit node addresses, used as they are.
struct NodeBook;

impl AddressBook<u16> for NodeBook {
    fn learn(&mut self, from: &u16) -> RadioAddr {
        RadioAddr::Node(*from)
    }

    fn lookup(&self, to: RadioAddr) -> Option<u16> {
        match to {
            RadioAddr::Node(node) => Some(node),
            _ => None,
        }
    }
}

/// KISS: the port is the address.
struct KissBook;

impl AddressBook<KissPort> for KissBook {
    fn learn(&mut self, from: &KissPort) -> RadioAddr {
        RadioAddr::KissPort(from.get())
    }

    fn lookup(&self, to: RadioAddr) -> Option<KissPort> {
        match to {
            RadioAddr::KissPort(port) => KissPort::new(port),
            _ => None,
        }
    }
}

/// Raw: one mote, no address.
struct DirectBook;

impl AddressBook<()> for DirectBook {
    fn learn(&mut self, _from: &()) -> RadioAddr {
        RadioAddr::Direct
    }

    fn lookup(&self, to: RadioAddr) -> Option<()> {
        (to == RadioAddr::Direct).then_some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xbee_replies_use_the_latest_network_address() {
        let mut book = XBeeBook::default();
        let long = 0x0013_A200_0000_0001;
        assert_eq!(
            book.learn(&XBeeAddress::new(long, 0x1234)),
            RadioAddr::XBee(long)
        );
        // The node rejoined with another 16-bit address: same peer for the core.
        assert_eq!(
            book.learn(&XBeeAddress::new(long, 0x4321)),
            RadioAddr::XBee(long)
        );
        assert_eq!(
            book.lookup(RadioAddr::XBee(long)),
            Some(XBeeAddress::new(long, 0x4321))
        );
        // Never heard from: the module looks the network address up.
        assert_eq!(
            book.lookup(RadioAddr::XBee(7)),
            Some(XBeeAddress::new(7, XBeeAddress::UNKNOWN_SHORT))
        );
        assert_eq!(book.lookup(RadioAddr::Node(1)), None);
    }

    #[test]
    fn the_xbee_book_is_bounded() {
        let mut book = XBeeBook::default();
        for long in 0..(MAX_KNOWN_NODES as u64 + 100) {
            book.learn(&XBeeAddress::new(long, 1));
        }
        assert_eq!(book.shorts.len(), MAX_KNOWN_NODES);
    }

    #[test]
    fn other_books_map_both_ways_and_refuse_foreign_addresses() {
        let mut nodes = NodeBook;
        assert_eq!(nodes.learn(&0xBEEF), RadioAddr::Node(0xBEEF));
        assert_eq!(nodes.lookup(RadioAddr::Node(0xBEEF)), Some(0xBEEF));
        assert_eq!(nodes.lookup(RadioAddr::Direct), None);
        let mut kiss = KissBook;
        let port = KissPort::new(3).unwrap();
        assert_eq!(kiss.learn(&port), RadioAddr::KissPort(3));
        assert_eq!(kiss.lookup(RadioAddr::KissPort(3)), Some(port));
        assert_eq!(kiss.lookup(RadioAddr::KissPort(16)), None);
        let mut direct = DirectBook;
        assert_eq!(direct.learn(&()), RadioAddr::Direct);
        assert_eq!(direct.lookup(RadioAddr::Direct), Some(()));
        assert_eq!(direct.lookup(RadioAddr::Node(0)), None);
    }
}
