//! The radio simulator, driven from both ends: the gateway's side with the real serial link
//! (`SerialLink` over the simulator's pty, by its device path or its symlink) and the motes'
//! side with plain UDP sockets. Plus the `mqtt-sn radio-sim` binary, black-box.
//!
//! Network safety: everything stays on loopback (127.0.0.1); the serial line is a pty.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mqtt_sn_tools::radio_sim::{
    RadioAddress, RadioSim, RadioSimConfig, RadioSimError, RadioSimEvent, SerialFraming,
    ADDRESS_NOT_FOUND, NETWORK_ACK_FAILURE,
};
use sn_config::{SerialConfig, SerialDevice};
use sn_transports::serial::framing::cobs::CobsFramer;
use sn_transports::serial::framing::kiss::{KissFramer, KissPort};
use sn_transports::serial::framing::raw::RawFramer;
use sn_transports::serial::framing::xbee::{
    ApiMode, DeliveryStatus, Frame, ReceivePacket, TransmitStatus, XBeeAddress, XBeeFramer,
};
use sn_transports::serial::framing::{Framer, Received};
use sn_transports::serial::link::{SerialLink, SerialLinkConfig};
use tokio::net::UdpSocket;

const BIN: &str = env!("CARGO_BIN_EXE_mqtt-sn");

/// How long anything that should happen may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);
/// How long to listen for something that should not happen.
const QUIET: Duration = Duration::from_millis(300);

/// MQTT-SN packets, so the datagrams look like what motes send (raw framing needs real
/// length fields; the other framings carry any bytes).
const PINGREQ: [u8; 2] = [0x02, 0x16];
const PINGRESP: [u8; 2] = [0x02, 0x17];
/// GWINFO from gateway 1, as a gateway broadcasts it.
const GWINFO: [u8; 3] = [0x03, 0x02, 0x01];
/// CONNECT, clean session, keep-alive 60, client id "m1".
const CONNECT: [u8; 8] = [0x08, 0x04, 0x04, 0x01, 0x00, 0x3C, b'm', b'1'];

fn xbee_mote(n: u64) -> XBeeAddress {
    XBeeAddress::new(0x0013_A200_0000_0000 + n, u16::try_from(n).unwrap())
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A scratch directory, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("radio-sim-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(config: RadioSimConfig) -> RadioSim {
    RadioSim::start(config).await.unwrap()
}

/// The gateway's serial link on `path`, reopening quickly after a replug. The link frames
/// the line with `framer`; the options' framing and max_frame are not the link's.
fn open_link<F: Framer>(path: &Path, framer: F) -> SerialLink<F> {
    let mut config = SerialLinkConfig::new(SerialConfig {
        device: SerialDevice::path(path),
        baud: 115_200,
        framing: SerialFraming::XBee,
        max_frame: 98,
        discovery: true,
    });
    config.reopen_initial = Duration::from_millis(20);
    config.reopen_max = Duration::from_millis(200);
    SerialLink::open(config, framer).unwrap()
}

fn xbee_link(sim: &RadioSim) -> SerialLink<XBeeFramer> {
    open_link(
        &sim.serial_path(),
        XBeeFramer::new(ApiMode::Escaped, 98).unwrap(),
    )
}

async fn mote() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `datagram` from `mote` and waits for the link to hand it out.
async fn uplink<F: Framer>(
    sim: &RadioSim,
    link: &mut SerialLink<F>,
    mote: &UdpSocket,
    datagram: &[u8],
) -> F::Address {
    mote.send_to(datagram, sim.udp_addr()).await.unwrap();
    let (from, got) = within("a datagram at the gateway", link.recv()).await;
    assert_eq!(got, datagram);
    from
}

async fn mote_recv(mote: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (len, from) = within("a datagram at the mote", mote.recv_from(&mut buf))
        .await
        .unwrap();
    assert!(from.ip().is_loopback());
    buf[..len].to_vec()
}

async fn mote_hears_nothing(mote: &UdpSocket) {
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(QUIET, mote.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the mote received {got:?}");
}

async fn next_status(link: &mut SerialLink<XBeeFramer>) -> TransmitStatus {
    match within("a transmit status", link.recv_event()).await {
        Received::TransmitStatus(status) => status,
        Received::Datagram { from, datagram } => {
            panic!("datagram {datagram:02x?} from {from} instead of a status")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XBee

#[tokio::test]
async fn xbee_motes_reach_the_gateway_from_their_own_addresses() {
    let mut sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let mut link = xbee_link(&sim);
    let (a, b) = (mote().await, mote().await);
    assert_eq!(uplink(&sim, &mut link, &a, &CONNECT).await, xbee_mote(1));
    assert_eq!(uplink(&sim, &mut link, &b, &PINGREQ).await, xbee_mote(2));
    assert_eq!(uplink(&sim, &mut link, &a, &PINGREQ).await, xbee_mote(1));

    let motes = sim.motes();
    assert_eq!(motes.len(), 2);
    assert_eq!(motes[0].udp, a.local_addr().unwrap());
    assert_eq!(motes[1].address, RadioAddress::XBee(xbee_mote(2)));
    let joined = within("an event", sim.next_event()).await;
    assert_eq!(joined, Some(RadioSimEvent::MoteJoined(motes[0])));
    let stats = sim.stats();
    assert_eq!((stats.from_motes, stats.frames_to_gateway), (3, 3));
    assert_eq!(stats.motes_joined, 2);
    assert_eq!(link.stats().framing_errors, 0);
}

#[tokio::test]
async fn xbee_reply_reaches_the_mote_and_is_reported_delivered() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let mut link = xbee_link(&sim);
    let a = mote().await;
    let from = uplink(&sim, &mut link, &a, &PINGREQ).await;

    link.send_tracked(&from, &PINGRESP, 7).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    let status = next_status(&mut link).await;
    assert_eq!(
        status,
        TransmitStatus {
            frame_id: 7,
            short: 0x0001,
            retries: 0,
            delivery: DeliveryStatus::SUCCESS,
            discovery: 0
        }
    );
    // Frame id 0 asks for no status: the next event is the mote's next datagram.
    link.send(&from, &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    a.send_to(&PINGREQ, sim.udp_addr()).await.unwrap();
    assert!(matches!(
        within("the next event", link.recv_event()).await,
        Received::Datagram { .. }
    ));
    let stats = sim.stats();
    assert_eq!((stats.to_motes, stats.statuses), (2, 1));
}

#[tokio::test]
async fn xbee_broadcast_reaches_every_mote() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let mut link = xbee_link(&sim);
    let (a, b) = (mote().await, mote().await);
    uplink(&sim, &mut link, &a, &PINGREQ).await;
    uplink(&sim, &mut link, &b, &PINGREQ).await;

    link.send_tracked(&XBeeAddress::BROADCAST, &GWINFO, 3)
        .await
        .unwrap();
    assert_eq!(mote_recv(&a).await, GWINFO);
    assert_eq!(mote_recv(&b).await, GWINFO);
    let status = next_status(&mut link).await;
    assert_eq!((status.frame_id, status.short), (3, 0xFFFE));
    assert!(status.delivery.is_success());
    assert_eq!(sim.stats().broadcasts, 1);
}

#[tokio::test]
async fn xbee_unknown_destinations_and_failing_motes_are_reported() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let mut link = xbee_link(&sim);
    let a = mote().await;
    let from = uplink(&sim, &mut link, &a, &PINGREQ).await;

    // Nobody has this address: 0x24, address not found.
    link.send_tracked(&xbee_mote(9), &PINGRESP, 1)
        .await
        .unwrap();
    let status = next_status(&mut link).await;
    assert_eq!(
        (status.frame_id, status.delivery, status.short),
        (1, ADDRESS_NOT_FOUND, 0xFFFD)
    );
    assert_eq!(status.delivery.description(), "address not found");

    // A mote made to fail: not delivered, the chosen status reported.
    sim.fail_delivery(RadioAddress::XBee(from), NETWORK_ACK_FAILURE)
        .await
        .unwrap();
    link.send_tracked(&from, &PINGRESP, 2).await.unwrap();
    let status = next_status(&mut link).await;
    assert_eq!(
        (status.frame_id, status.delivery),
        (2, DeliveryStatus(0x21))
    );
    mote_hears_nothing(&a).await;
    // Any status on demand.
    sim.fail_delivery(RadioAddress::XBee(from), DeliveryStatus(0x25))
        .await
        .unwrap();
    link.send_tracked(&from, &PINGRESP, 3).await.unwrap();
    assert_eq!(next_status(&mut link).await.delivery, DeliveryStatus(0x25));

    // And back to normal.
    sim.restore_delivery(RadioAddress::XBee(from))
        .await
        .unwrap();
    link.send_tracked(&from, &PINGRESP, 4).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    assert!(next_status(&mut link).await.delivery.is_success());

    let stats = sim.stats();
    assert_eq!(stats.unknown_destinations, 1);
    assert_eq!(stats.failed_deliveries, 2);
    assert_eq!(stats.statuses, 4);
}

#[tokio::test]
async fn xbee_api_mode_1_both_ways() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBeeApi1)).await;
    let mut link = open_link(
        &sim.device(),
        XBeeFramer::new(ApiMode::Unescaped, 98).unwrap(),
    );
    let a = mote().await;
    // 0x7E and 0x11 inside: unescaped in API mode 1.
    let datagram = [0x05, 0x0C, 0x7E, 0x11, 0x13];
    let from = uplink(&sim, &mut link, &a, &datagram).await;
    assert_eq!(from, xbee_mote(1));
    link.send_tracked(&from, &datagram, 0x7E).await.unwrap();
    assert_eq!(mote_recv(&a).await, datagram);
    assert_eq!(next_status(&mut link).await.frame_id, 0x7E);
}

#[tokio::test]
async fn garbage_on_the_line_costs_the_gateway_no_frame() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let mut link = xbee_link(&sim);
    let a = mote().await;
    // Noise, then the start of a receive packet cut short, as after a module reset.
    sim.inject_garbage(b"\x55\xAA noise \x7E\x00\x20\x90\x00\x13")
        .await
        .unwrap();
    assert_eq!(uplink(&sim, &mut link, &a, &CONNECT).await, xbee_mote(1));
    assert!(link.stats().framing_errors >= 1, "{:?}", link.stats());
    assert_eq!(sim.stats().garbage_bytes, 15);
}

// ---------------------------------------------------------------------------------------------
// Replug

#[tokio::test]
async fn replug_the_link_reopens_by_the_symlink_and_traffic_flows_again() {
    let scratch = Scratch::new("replug");
    let link_path = scratch.path("radio0");
    let mut sim = start(RadioSimConfig::new(SerialFraming::XBee).with_link(&link_path)).await;
    assert_eq!(std::fs::read_link(&link_path).unwrap(), sim.device());
    assert_eq!(sim.serial_path(), link_path);
    let mut link = xbee_link(&sim);
    let a = mote().await;
    let from = uplink(&sim, &mut link, &a, &CONNECT).await;

    let device = within("the replug", sim.replug(Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(std::fs::read_link(&link_path).unwrap(), device);
    assert_eq!(device, sim.device());
    assert!(sim.is_plugged());

    // The mote keeps its address; the link notices the unplug, reopens by the symlink and
    // gets what the mote sends now.
    assert_eq!(uplink(&sim, &mut link, &a, &PINGREQ).await, from);
    assert_eq!(link.stats().disconnects, 1, "{:?}", link.stats());
    assert!(link.stats().reopens >= 1);
    link.send_tracked(&from, &PINGRESP, 9).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    assert_eq!(next_status(&mut link).await.frame_id, 9);

    assert_eq!(sim.stats().unplugs, 1);
    assert_eq!(sim.motes().len(), 1);
    let mut events = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(QUIET, sim.next_event()).await {
        events.push(event);
    }
    assert!(matches!(
        events.as_slice(),
        [
            RadioSimEvent::MoteJoined(_),
            RadioSimEvent::Unplugged { .. },
            RadioSimEvent::Plugged { device: plugged }
        ] if *plugged == device
    ));

    sim.shutdown().await;
    assert!(std::fs::symlink_metadata(&link_path).is_err());
}

#[tokio::test]
async fn while_unplugged_datagrams_are_dropped_and_the_link_is_gone() {
    let scratch = Scratch::new("unplugged");
    let link_path = scratch.path("radio0");
    let sim = start(RadioSimConfig::new(SerialFraming::XBee).with_link(&link_path)).await;
    let mut link = xbee_link(&sim);
    let a = mote().await;
    uplink(&sim, &mut link, &a, &PINGREQ).await;

    let replug = sim.replug(Duration::from_millis(500));
    tokio::pin!(replug);
    // Let the unplug happen, then look while the dongle is out.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut replug)
            .await
            .is_err()
    );
    assert!(!sim.is_plugged());
    assert!(std::fs::symlink_metadata(&link_path).is_err());
    a.send_to(&PINGREQ, sim.udp_addr()).await.unwrap();
    let error = sim.inject_garbage(b"x").await.unwrap_err();
    assert!(matches!(error, RadioSimError::LineUnavailable { .. }));
    within("the replug", &mut replug).await.unwrap();
    assert_eq!(sim.stats().dropped, 1);
    assert!(std::fs::symlink_metadata(&link_path).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The other framings

#[tokio::test]
async fn cobs_lora_framing_both_ways() {
    let config = RadioSimConfig::new(SerialFraming::from_name("lora").unwrap());
    let sim = start(config).await;
    let mut link = open_link(&sim.device(), CobsFramer::new(240).unwrap());
    let (a, b) = (mote().await, mote().await);
    // A zero byte inside: COBS must carry it.
    let datagram = [0x05, 0x0C, 0x00, 0x00, 0x01];
    assert_eq!(uplink(&sim, &mut link, &a, &datagram).await, 1);
    assert_eq!(uplink(&sim, &mut link, &b, &PINGREQ).await, 2);

    link.send(&2, &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&b).await, PINGRESP);
    link.send(&1, &datagram).await.unwrap();
    assert_eq!(mote_recv(&a).await, datagram);
    let broadcast = link.framer().broadcast_address();
    assert_eq!(broadcast, 0xFFFF);
    link.send(&broadcast, &GWINFO).await.unwrap();
    assert_eq!(mote_recv(&a).await, GWINFO);
    assert_eq!(mote_recv(&b).await, GWINFO);
    // No node 7: dropped and counted.
    link.send(&7, &PINGRESP).await.unwrap();
    mote_hears_nothing(&a).await;
    let stats = sim.stats();
    assert_eq!(stats.unknown_destinations, 1);
    assert_eq!(stats.statuses, 0);
    assert_eq!(stats.to_motes, 4);
}

#[tokio::test]
async fn kiss_carries_one_mote_on_port_0_broadcasts_included() {
    let sim = start(RadioSimConfig::new(SerialFraming::Kiss)).await;
    // As the gateway's runtime opens an RNode: data frames on port 0 only.
    let mut link = open_link(
        &sim.device(),
        KissFramer::new(254).unwrap().with_ports(0x0001),
    );
    let (a, b) = (mote().await, mote().await);
    assert_eq!(uplink(&sim, &mut link, &a, &CONNECT).await, KissPort::ZERO);
    link.send(&KissPort::ZERO, &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    // The gateway's broadcast address is port 0 too: it reaches the mote.
    let broadcast = link.framer().broadcast_address();
    assert_eq!(broadcast, KissPort::ZERO);
    link.send(&broadcast, &GWINFO).await.unwrap();
    assert_eq!(mote_recv(&a).await, GWINFO);

    // A second client takes the line over, on the same port.
    assert_eq!(uplink(&sim, &mut link, &b, &CONNECT).await, KissPort::ZERO);
    link.send(&KissPort::ZERO, &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&b).await, PINGRESP);
    mote_hears_nothing(&a).await;
    // Another port reaches nobody.
    link.send(&KissPort::new(3).unwrap(), &PINGRESP)
        .await
        .unwrap();
    mote_hears_nothing(&b).await;
    let motes = sim.motes();
    assert_eq!(motes.len(), 1);
    assert_eq!(motes[0].udp, b.local_addr().unwrap());
    let stats = sim.stats();
    assert_eq!(stats.motes_forgotten, 1);
    assert_eq!(stats.unknown_destinations, 1);
    assert_eq!(stats.to_motes, 3);
    assert_eq!(link.stats().framing_errors, 0);
    assert_eq!(link.framer().stats().skipped, 0, "every frame on port 0");
}

#[tokio::test]
async fn raw_line_carries_one_mote_the_last_new_sender() {
    let mut sim = start(RadioSimConfig::new(SerialFraming::Raw)).await;
    let mut link = open_link(&sim.device(), RawFramer::new(1024).unwrap());
    let (a, b) = (mote().await, mote().await);
    uplink(&sim, &mut link, &a, &CONNECT).await;
    link.send(&(), &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    // A second client takes the line over (a new `mqtt-sn pub` run, say).
    uplink(&sim, &mut link, &b, &CONNECT).await;
    link.send(&(), &PINGRESP).await.unwrap();
    assert_eq!(mote_recv(&b).await, PINGRESP);
    mote_hears_nothing(&a).await;
    let mut events = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(QUIET, sim.next_event()).await {
        events.push(event);
    }
    assert!(
        matches!(
            events.as_slice(),
            [
                RadioSimEvent::MoteJoined(_),
                RadioSimEvent::MoteForgotten(old),
                RadioSimEvent::MoteJoined(new)
            ] if old.udp == a.local_addr().unwrap() && new.udp == b.local_addr().unwrap()
        ),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits and refusals

/// What the simulator holds for a gateway that does not read, at most (module docs: "the
/// bytes waiting for the gateway to read the line (64 KiB; frames beyond are dropped").
const BACKLOG_LIMIT: u64 = 64 * 1024;
/// What the kernel's pty takes in before its writer must wait, at most: the tty layer's flip
/// buffers are limited to 64 KiB per port, plus the 4 KiB line-discipline buffer; doubled
/// for slack. The bound below is these two, so a simulator that kept every frame (it is fed
/// megabytes here) fails it.
const PTY_CAPACITY: u64 = 2 * (64 + 4) * 1024;

/// Sends `count` copies of `datagram` from `mote`, in batches the simulator's socket buffer
/// holds, waiting after each batch until the simulator has received all of them (so a
/// datagram lost in the kernel cannot pass for one the simulator dropped).
async fn send_all(sim: &RadioSim, mote: &UdpSocket, datagram: &[u8], count: u64) {
    const BATCH: u64 = 50;
    let target = sim.stats().from_motes + count;
    let mut sent = 0;
    while sent < count {
        for _ in 0..BATCH.min(count - sent) {
            mote.send_to(datagram, sim.udp_addr()).await.unwrap();
            sent += 1;
        }
        let reached = target - (count - sent);
        within("the simulator to receive every datagram", async {
            while sim.stats().from_motes < reached {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
}

#[tokio::test]
async fn a_gateway_that_does_not_read_costs_bounded_memory_and_counted_drops() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee)).await;
    let a = mote().await;
    let datagram = [0x55u8; 80];
    // The exact bytes the simulator puts on the line for each datagram (the first mote gets
    // radio address 1).
    let mut frame = Vec::new();
    XBeeFramer::new(ApiMode::Escaped, SerialFraming::XBee.default_max_frame())
        .unwrap()
        .encode_frame(
            &Frame::Receive(ReceivePacket {
                source: xbee_mote(1),
                options: 0x01,
                data: datagram.to_vec(),
            }),
            &mut frame,
        )
        .unwrap();
    let frame_len = frame.len() as u64;

    // Nobody opens the device: the pty's buffer, then the simulator's backlog fill up.
    let mut sent = 0;
    while sim.stats().dropped == 0 {
        assert!(
            sent * frame_len < 4 * (BACKLOG_LIMIT + PTY_CAPACITY),
            "nothing dropped after {sent} datagrams: {:?}",
            sim.stats()
        );
        send_all(&sim, &a, &datagram, 100).await;
        sent += 100;
    }
    // Then 16 times more than the simulator and the pty may hold together (3.2 MB).
    let more = 16 * (BACKLOG_LIMIT + PTY_CAPACITY) / datagram.len() as u64;
    send_all(&sim, &a, &datagram, more).await;
    sent += more;

    let stats = sim.stats();
    // Every datagram is accounted for: carried towards the gateway, or dropped and counted.
    assert_eq!(stats.from_motes, sent, "{stats:?}");
    assert_eq!(stats.frames_to_gateway + stats.dropped, sent, "{stats:?}");
    assert!(stats.frames_to_gateway > 0, "{stats:?}");
    // The bound itself: what was carried is all still held (nobody reads), in the backlog or
    // in the pty, and it stays within the backlog limit plus the pty's capacity however much
    // came in.
    let held = stats.frames_to_gateway * frame_len;
    assert!(
        held <= BACKLOG_LIMIT + PTY_CAPACITY,
        "{held} bytes held after {} bytes sent: {stats:?}",
        sent * frame_len
    );
    assert!(stats.dropped >= more, "{stats:?}");
}

#[tokio::test]
async fn oversized_datagrams_from_motes_are_dropped() {
    let sim = start(RadioSimConfig::new(SerialFraming::XBee).with_max_frame(30)).await;
    let mut link = open_link(
        &sim.device(),
        XBeeFramer::new(ApiMode::Escaped, 30).unwrap(),
    );
    let a = mote().await;
    // 12 header bytes + 19 > 30.
    a.send_to(&[0x13; 19], sim.udp_addr()).await.unwrap();
    assert_eq!(uplink(&sim, &mut link, &a, &[0x12; 18]).await, xbee_mote(1));
    assert_eq!(sim.stats().dropped, 1);
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_way_out() {
    let error = RadioSim::start(RadioSimConfig::new(SerialFraming::XBee).with_max_frame(10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("16 to 65535"), "{error}");
    let error = RadioSim::start(RadioSimConfig::new(SerialFraming::Cobs).with_max_motes(0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("1 to 65534"), "{error}");
    let error = RadioSim::start(RadioSimConfig::new(SerialFraming::Kiss).with_max_motes(2))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("one mote: use 1"), "{error}");
    let scratch = Scratch::new("refusals");
    let error = RadioSim::start(
        RadioSimConfig::new(SerialFraming::XBee).with_link(scratch.path("missing/radio0")),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("mkdir -p"), "{error}");
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let error = RadioSim::start(
        RadioSimConfig::new(SerialFraming::XBee).with_udp(taken.local_addr().unwrap()),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("port 0 picks a free one"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary

/// `mqtt-sn radio-sim` as a child, its stdout read line by line on a thread.
struct SimProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl SimProcess {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("radio-sim")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        SimProcess { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from mqtt-sn radio-sim")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mqtt-sn radio-sim did not exit after SIGTERM");
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_where_to_connect_carries_a_mote_and_cleans_up_on_sigterm() {
    let scratch = Scratch::new("binary");
    let link_path = scratch.path("radio0");
    let link_arg = link_path.to_str().unwrap();
    let mut process = SimProcess::start(&["--framing", "xbee", "--link", link_arg]);

    let first = process.line();
    let rest = first
        .strip_prefix("radio-sim: serial device ")
        .unwrap_or_else(|| panic!("{first}"));
    let (device, rest) = rest.split_once(' ').unwrap();
    assert!(device.starts_with("/dev/"), "{first}");
    assert_eq!(
        rest,
        format!("(link {link_arg}), framing xbee (API mode 2), max_frame 98")
    );
    assert_eq!(
        std::fs::read_link(&link_path).unwrap(),
        Path::new(device),
        "the link points at the device"
    );
    let second = process.line();
    let udp: SocketAddr = second
        .strip_prefix("radio-sim: motes send MQTT-SN to ")
        .unwrap_or_else(|| panic!("{second}"))
        .parse()
        .unwrap();

    // End to end through the process: a mote's datagram reaches the link, and back.
    let mut link = open_link(&link_path, XBeeFramer::new(ApiMode::Escaped, 98).unwrap());
    let a = mote().await;
    a.send_to(&CONNECT, udp).await.unwrap();
    let (from, got) = within("a datagram at the gateway", link.recv()).await;
    assert_eq!((from, got.as_slice()), (xbee_mote(1), &CONNECT[..]));
    assert_eq!(
        process.line(),
        format!(
            "radio-sim: new mote {} is radio address 0013a20000000001/0001",
            a.local_addr().unwrap()
        )
    );
    link.send_tracked(&from, &PINGRESP, 1).await.unwrap();
    assert_eq!(mote_recv(&a).await, PINGRESP);
    assert!(next_status(&mut link).await.delivery.is_success());

    // SIGUSR1 replugs the dongle; the link follows the symlink to the new pty.
    process.signal("USR1");
    assert_eq!(
        process.line(),
        format!("radio-sim: dongle unplugged: {device}")
    );
    let plugged = process.line();
    let new_device = plugged
        .strip_prefix("radio-sim: dongle plugged in: ")
        .unwrap_or_else(|| panic!("{plugged}"));
    assert_eq!(
        std::fs::read_link(&link_path).unwrap(),
        Path::new(new_device)
    );
    a.send_to(&PINGREQ, udp).await.unwrap();
    let (from, got) = within("a datagram after the replug", link.recv()).await;
    assert_eq!((from, got.as_slice()), (xbee_mote(1), &PINGREQ[..]));
    assert_eq!(link.stats().disconnects, 1);

    let status = process.terminate();
    assert!(status.success(), "{status:?}");
    let last = process.line();
    assert!(
        last.starts_with("radio-sim: stopped: 2 datagram(s) to the gateway, 1 from it"),
        "{last}"
    );
    assert!(
        std::fs::symlink_metadata(&link_path).is_err(),
        "the link is removed on exit"
    );
}

#[test]
fn the_binary_explains_a_missing_link_directory() {
    let output = Command::new(BIN)
        .args([
            "radio-sim",
            "--framing",
            "lora",
            "--link",
            "/nonexistent-radio-sim-dir/radio0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("directory /nonexistent-radio-sim-dir does not exist")
            && stderr.contains("mkdir -p"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
