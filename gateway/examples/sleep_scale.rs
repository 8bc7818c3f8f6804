//! Scale measurement for sleeping motes: N motes behind one forwarder (each its own session,
//! keyed by its wireless node id) connect, subscribe to their own topic at QoS 1 and go to
//! sleep; then 2 messages per mote are published on the broker; the gateway's RSS is read
//! from /proc before and after.
//!
//! ```sh
//! mosquitto -p 18930 &
//! target/release/mqtt-sn-gateway --broker mqtt://127.0.0.1:18930 --udp 127.0.0.1:18931 \
//!     --config scale.toml &     # [gateway] max_sessions = 200000
//! cargo run --release -p mqtt-sn-gateway --example sleep_scale -- \
//!     127.0.0.1:18931 18930 $(pidof mqtt-sn-gateway) 100000
//! ```
//!
//! Only loopback addresses; every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS as MqttQoS};
use sn_codec::v12::{Connect, Disconnect, Forwarded, Frame, Packet, Subscribe, SubscribeTopic};
use sn_codec::QoS;
use tokio::net::UdpSocket;

const PAYLOAD: usize = 16;
const WINDOW: usize = 400;
/// Motes woken at the end to check that their messages are really held.
const SAMPLE: u32 = 200;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("gateway pid");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn node(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn wrap(i: u32, packet: Packet<'_>) -> Vec<u8> {
    Frame::Forwarded(Forwarded {
        radius: 0,
        node_id: &node(i),
        packet,
    })
    .to_vec()
    .unwrap()
}

/// Runs one step for every mote with at most WINDOW outstanding: `send(i)` builds the request,
/// `done(packet)` recognises the reply. Retries what got no reply.
async fn step(
    socket: &UdpSocket,
    gateway: SocketAddr,
    n: u32,
    what: &str,
    send: impl Fn(u32) -> Vec<u8>,
    done: impl Fn(&Packet<'_>) -> bool,
) {
    let started = Instant::now();
    let mut pending: HashSet<u32> = HashSet::new();
    let mut next = 0u32;
    let mut completed = 0u32;
    let mut buf = vec![0u8; 2048];
    let mut last_send = Instant::now();
    while completed < n {
        while pending.len() < WINDOW && next < n {
            socket.send_to(&send(next), gateway).await.unwrap();
            pending.insert(next);
            next += 1;
        }
        match tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) => {
                if let Ok(Frame::Forwarded(f)) = Frame::decode(&buf[..len]) {
                    let Ok(id) = <[u8; 4]>::try_from(f.node_id) else {
                        continue;
                    };
                    let i = u32::from_be_bytes(id);
                    if done(&f.packet) && pending.remove(&i) {
                        completed += 1;
                        last_send = Instant::now();
                    }
                }
            }
            _ => {
                // Lost or slow: send again what is outstanding.
                assert!(
                    last_send.elapsed() < Duration::from_secs(60),
                    "{what}: no progress for 60 s"
                );
                for &i in &pending {
                    socket.send_to(&send(i), gateway).await.unwrap();
                }
            }
        }
    }
    eprintln!("{what}: {n} motes in {:?}", started.elapsed());
}

/// Reads the socket until `node` gets a packet `matches` accepts (60 s at most); other
/// packets are skipped.
async fn wait_for(
    socket: &UdpSocket,
    node_id: u32,
    what: &str,
    matches: impl Fn(&Packet<'_>) -> bool,
) {
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (len, _) = tokio::time::timeout(left, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {what} within 60 s"))
            .unwrap();
        if let Ok(Frame::Forwarded(f)) = Frame::decode(&buf[..len]) {
            if f.node_id == node(node_id) && matches(&f.packet) {
                return;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gateway: SocketAddr = args.get(1).expect("gateway address").parse().unwrap();
    let broker_port: u16 = args.get(2).expect("broker port").parse().unwrap();
    let pid: u32 = args.get(3).expect("gateway pid").parse().unwrap();
    let n: u32 = args.get(4).map_or(100_000, |a| a.parse().unwrap());
    assert!(gateway.ip().is_loopback(), "loopback only");

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rss_start = rss_kib(pid);

    step(
        &socket,
        gateway,
        n,
        "connect",
        |i| {
            let id = format!("s{i:06}");
            wrap(
                i,
                Packet::Connect(Connect {
                    will: false,
                    clean_session: true,
                    protocol_id: 1,
                    duration: 3600,
                    client_id: id.as_bytes(),
                }),
            )
        },
        |p| matches!(p, Packet::ConnAck { .. }),
    )
    .await;
    step(
        &socket,
        gateway,
        n,
        "subscribe",
        |i| {
            let topic = format!("sleep/{i}");
            wrap(
                i,
                Packet::Subscribe(Subscribe {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    msg_id: 1,
                    topic: SubscribeTopic::Name(topic.as_bytes()),
                }),
            )
        },
        |p| matches!(p, Packet::SubAck(_)),
    )
    .await;
    step(
        &socket,
        gateway,
        n,
        "sleep",
        |i| {
            wrap(
                i,
                Packet::Disconnect(Disconnect {
                    duration: Some(3600),
                }),
            )
        },
        |p| matches!(p, Packet::Disconnect(_)),
    )
    .await;
    let rss_asleep = rss_kib(pid);

    // A watcher that stays awake (node id n), subscribed to a fence topic: the broker delivers
    // to the gateway in order over one connection, so when the fence reaches the watcher, the
    // gateway has taken in every message published before it.
    let watcher = n;
    socket
        .send_to(
            &wrap(
                watcher,
                Packet::Connect(Connect {
                    will: false,
                    clean_session: true,
                    protocol_id: 1,
                    duration: 3600,
                    client_id: b"scale-watcher",
                }),
            ),
            gateway,
        )
        .await
        .unwrap();
    wait_for(&socket, watcher, "watcher CONNACK", |p| {
        matches!(p, Packet::ConnAck { .. })
    })
    .await;
    socket
        .send_to(
            &wrap(
                watcher,
                Packet::Subscribe(Subscribe {
                    dup: false,
                    qos: QoS::AtMostOnce,
                    msg_id: 1,
                    topic: SubscribeTopic::Name(b"sleep/fence"),
                }),
            ),
            gateway,
        )
        .await
        .unwrap();
    wait_for(&socket, watcher, "watcher SUBACK", |p| {
        matches!(p, Packet::SubAck(_))
    })
    .await;

    // Two QoS 1 messages per mote from an MQTT client on the broker.
    let mut options = MqttOptions::new("sleep-scale-publisher", "127.0.0.1", broker_port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let total = 2 * n as usize;
    let publisher = tokio::spawn(async move {
        for round in 0..2u8 {
            for i in 0..n {
                let payload = [round; PAYLOAD];
                client
                    .publish(
                        format!("sleep/{i}"),
                        MqttQoS::AtLeastOnce,
                        false,
                        payload.to_vec(),
                    )
                    .await
                    .unwrap();
            }
        }
        client
    });
    let started = Instant::now();
    let mut acked = 0usize;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(60), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher: {e}"),
            Err(_) => panic!("publisher: no progress for 60 s ({acked} of {total} acknowledged)"),
        }
    }
    let client = publisher.await.unwrap();
    eprintln!(
        "published {total} QoS 1 messages in {:?}",
        started.elapsed()
    );
    client
        .publish(
            "sleep/fence",
            MqttQoS::AtLeastOnce,
            false,
            b"fence".to_vec(),
        )
        .await
        .unwrap();
    let fence = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let started = Instant::now();
    wait_for(&socket, watcher, "the fence", |p| {
        matches!(p, Packet::Publish(_))
    })
    .await;
    eprintln!(
        "gateway took in every message {:?} after the last was published",
        started.elapsed()
    );
    fence.abort();
    let rss_full = rss_kib(pid);
    // Proof that the messages are really held: wake a sample of motes; each must get exactly
    // its 2 messages (acknowledged one at a time), then PINGRESP.
    let sample: Vec<u32> = (0..SAMPLE)
        .map(|k| k * (n / SAMPLE).max(1))
        .filter(|&i| i < n)
        .collect();
    let mut buf = vec![0u8; 2048];
    let mut short = Vec::new();
    for &i in &sample {
        let id = format!("s{i:06}");
        socket
            .send_to(
                &wrap(
                    i,
                    Packet::PingReq {
                        client_id: id.as_bytes(),
                    },
                ),
                gateway,
            )
            .await
            .unwrap();
        let mut got = 0;
        loop {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("mote {i}: nothing after waking ({got} messages)"))
                    .unwrap();
            let Ok(Frame::Forwarded(f)) = Frame::decode(&buf[..len]) else {
                continue;
            };
            if f.node_id != node(i) {
                continue;
            }
            match f.packet {
                Packet::Publish(p) => {
                    assert_eq!(p.data.len(), PAYLOAD);
                    got += 1;
                    let ack = Packet::PubAck(sn_codec::v12::PubAck {
                        topic_id: match p.topic {
                            sn_codec::v12::PublishTopic::Normal(t) => t,
                            _ => 0,
                        },
                        msg_id: p.msg_id,
                        return_code: sn_codec::v12::ReturnCode::Accepted,
                    });
                    socket.send_to(&wrap(i, ack), gateway).await.unwrap();
                }
                Packet::PingResp => break,
                _ => {}
            }
        }
        if got != 2 {
            short.push((i, got));
        }
    }
    assert!(
        short.is_empty(),
        "motes that did not get both messages (mote, got): {short:?}"
    );
    eprintln!(
        "woke {} sampled motes: each got its 2 messages, then PINGRESP",
        sample.len()
    );
    let payload_kib = (total * PAYLOAD) as u64 / 1024;
    let per_mote_asleep = (rss_asleep.saturating_sub(rss_start) * 1024) / u64::from(n);
    let per_mote_full = ((rss_full
        .saturating_sub(rss_start)
        .saturating_sub(payload_kib))
        * 1024)
        / u64::from(n);
    println!(
        "{{\"motes\":{n},\"messages\":{total},\"payload_bytes\":{PAYLOAD},\"rss_start_kib\":{rss_start},\
         \"rss_asleep_kib\":{rss_asleep},\"rss_with_messages_kib\":{rss_full},\
         \"bytes_per_sleeping_mote\":{per_mote_asleep},\
         \"bytes_per_mote_with_2_messages_beyond_payload\":{per_mote_full}}}"
    );
}
