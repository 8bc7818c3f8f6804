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

use sn_codec::v12::{Packet, Publish, PublishTopic};
use sn_tests::{Gateway, Mote, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Messages the mote sends: 12 MB at 600 bytes each, several times what the TCP buffers
/// between the gateway and a broker that has stopped reading can hold.
const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 600;
const MAX_PENDING: usize = 100;

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
    // The gateway still answers its motes.
    mote.ping().await;

    let mut metrics = gateway.metrics();
    for _ in 0..100 {
        if metrics.publish_dropped_backlog > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = gateway.metrics();
    }
    assert!(
        metrics.publish_dropped_backlog > 0,
        "no QoS 0 message was dropped at max_pending_qos0: {metrics:?}"
    );
    // Whatever was not dropped was handed on: the gateway holds at most MAX_PENDING of them
    // (checked in the core's tests); here, every message it took is either forwarded or
    // counted as dropped.
    assert!(metrics.publish_forwarded + metrics.publish_dropped_backlog <= MESSAGES as u64);
    assert!(
        metrics.publish_forwarded < MESSAGES as u64,
        "all {MESSAGES} were forwarded to a broker that reads nothing: {metrics:?}"
    );
    gateway.shutdown().await;
}
