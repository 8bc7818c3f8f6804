//! A broker slower than the motes: QoS 0 messages the broker link cannot take wait in the
//! gateway up to `[gateway] max_pending_qos0`; beyond that they are dropped and counted, so
//! memory stays bounded and the gateway keeps answering its motes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use mqtt_sn_gateway::core::Metrics;
use sn_codec::v12::{Packet, Publish, PublishTopic};
use sn_tests::process::socket_drops;
use sn_tests::{wait_until, Gateway, Mote, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Messages the mote sends: 12 MB at 600 bytes each, several times what the TCP buffers
/// between the gateway and a broker that has stopped reading can hold.
const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 600;
const MAX_PENDING: usize = 100;
/// How much the resident set may grow during the flood: a quarter of the flood's 12 MB of
/// payload, far above what the limit holds (MAX_PENDING x 600 B) plus allocator and
/// runtime noise, far below what queueing the flood would take.
const MAX_RSS_GROWTH_KIB: u64 = 3 * 1024;

/// An MQTT "broker" that accepts one connection, answers its CONNECT and then never reads
/// again. Its receive buffer is made small so the gateway's writes back up soon. Returns the
/// port; the task holds the connection open until the test ends.
async fn broker_that_stops_reading() -> u16 {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let listener = socket.listen(4).unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // CONNECT fits one read: a short fixed header, the gateway's client id, no Will.
        let mut connect = [0u8; 512];
        let n = stream.read(&mut connect).await.unwrap();
        assert_eq!(
            connect[0] >> 4,
            1,
            "the first packet is CONNECT: {:02X?}",
            &connect[..n]
        );
        // CONNACK: session not present, accepted.
        stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        // Never read again; keep the connection open.
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(stream);
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_reading_makes_the_gateway_drop_and_count_qos0_not_queue_it() {
    let port = broker_that_stops_reading().await;
    let mut builder = Gateway::builder(port).predefined(1, "backlog/p");
    builder.config_mut().core.max_pending_qos0 = MAX_PENDING;
    // A QoS 0 flood with nothing acknowledged must not look like a stalled link.
    builder.config_mut().broker.as_mut().unwrap().keep_alive = Duration::from_secs(600);
    let gateway = builder.start().await;
    gateway.wait_for_broker().await;

    let mut mote = Mote::connected(gateway.addr(), "flooder").await;
    let before = gateway.metrics();
    let kernel_drops_before = socket_drops(gateway.addr().port());
    // The memory baseline: the resident set now, with the peak reset to it, so that the peak
    // read after the flood is the flood's own.
    reset_peak_rss();
    let rss_before = status_kib("VmRSS");

    let data = vec![0x5A; PAYLOAD];
    let datagram = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Predefined(1),
        msg_id: 0,
        data: &data,
    })
    .to_vec()
    .unwrap();
    for i in 0..MESSAGES {
        mote.send_raw(&datagram).await;
        // Let the gateway keep up, so what is dropped is dropped at the limit, not by the
        // kernel at the gateway's socket.
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // Every datagram of the flood is accounted for: taken by the gateway (datagrams_received)
    // or dropped by the kernel at the gateway's full socket (the socket's drop counter in
    // /proc/net/udp). Wait until the gateway has read what is still queued.
    let taken = |m: &Metrics| m.datagrams_received - before.datagrams_received;
    let kernel_dropped = || socket_drops(gateway.addr().port()) - kernel_drops_before;
    wait_until(
        "every datagram of the flood taken by the gateway or dropped at its socket",
        Duration::from_secs(60),
        || taken(&gateway.metrics()) + kernel_dropped() >= MESSAGES as u64,
    )
    .await;
    let metrics = gateway.metrics();
    let kernel_dropped = kernel_dropped();
    let forwarded = metrics.publish_forwarded - before.publish_forwarded;
    let dropped = metrics.publish_dropped_backlog - before.publish_dropped_backlog;
    let peak_growth = status_kib("VmHWM").saturating_sub(rss_before);
    println!(
        "{MESSAGES} QoS 0 messages: {forwarded} forwarded, {dropped} dropped at \
         max_pending_qos0 = {MAX_PENDING}, {kernel_dropped} dropped by the kernel at the \
         gateway's socket; resident set {rss_before} KiB before, peak {peak_growth} KiB above it"
    );
    // Exact accounting of the flood: every one of its PUBLISHes was forwarded to the broker
    // link (publish_forwarded), dropped at the limit and counted (publish_dropped_backlog), or
    // dropped by the kernel at the gateway's full socket; nothing else happened to any of them.
    // (Counted by PUBLISH, not by datagram: a CONNECT the mote resent while the gateway was
    // slow to answer it may reach the gateway after the baseline was read.)
    assert_eq!(
        forwarded + dropped + kernel_dropped,
        MESSAGES as u64,
        "QoS 0 messages neither forwarded, nor counted as dropped, nor dropped by the kernel: \
         {metrics:?}"
    );
    // And the gateway took every datagram of the flood it was not refused by the kernel.
    assert!(
        taken(&metrics) + kernel_dropped >= MESSAGES as u64,
        "datagrams taken by the gateway + dropped at its socket < sent: {metrics:?}"
    );
    for (what, now, then) in [
        (
            "publish_broker_down",
            metrics.publish_broker_down,
            before.publish_broker_down,
        ),
        (
            "publish_rejected",
            metrics.publish_rejected,
            before.publish_rejected,
        ),
        ("malformed", metrics.malformed, before.malformed),
        ("unknown_peer", metrics.unknown_peer, before.unknown_peer),
    ] {
        assert_eq!(now, then, "{what} changed during the flood: {metrics:?}");
    }
    assert!(
        dropped > 0,
        "no QoS 0 message was dropped at max_pending_qos0: {metrics:?}"
    );
    assert!(
        forwarded < MESSAGES as u64,
        "all {MESSAGES} were forwarded to a broker that reads nothing: {metrics:?}"
    );
    // Bounded memory, measured: the gateway runs in this process, so its memory is this
    // process's resident set. Queueing the flood instead of dropping it would hold its
    // 12 MB of payload; the limit holds MAX_PENDING x 600 B = 60 KB.
    assert!(
        peak_growth < MAX_RSS_GROWTH_KIB,
        "the resident set grew by {peak_growth} KiB during the flood (limit \
         {MAX_RSS_GROWTH_KIB} KiB): the backlog is not bounded"
    );

    // The gateway still answers its motes.
    mote.ping().await;
    gateway.shutdown().await;
}

/// A `kB` field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets the peak resident set (VmHWM) to the current one (Linux 4.0+).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}
