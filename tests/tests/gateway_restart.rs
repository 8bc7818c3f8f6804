//! Gateway restarts: the durable store keeps persistent and sleeping sessions, their
//! subscriptions and queued messages; a stopped gateway releases its port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_tests::{ConnectOptions, Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic};

fn persistent() -> ConnectOptions {
    ConnectOptions {
        clean_session: false,
        ..ConnectOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_and_sleeping_sessions_and_their_queues_survive_a_gateway_restart() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut publisher = MqttClient::connect(broker.port(), "restart-publisher").await;

    // One mote offline with CleanSession=0, one asleep; both subscribed at QoS 1.
    let mut away = Mote::new(gateway.addr(), "away").await;
    away.connect_accepted(&persistent()).await;
    let ack = away
        .subscribe(SubTopic::name("gwrestart/away"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    away.disconnect().await;

    let mut sleeper = Mote::new(gateway.addr(), "sleeper").await;
    sleeper.connect_accepted(&persistent()).await;
    let ack = sleeper
        .subscribe(SubTopic::name("gwrestart/sleeper"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    sleeper.sleep(300).await;

    // The fence: when the watcher has it, the gateway holds what was published before it.
    let mut watcher = Mote::connected(gateway.addr(), "watcher").await;
    watcher
        .subscribe(SubTopic::name("gwrestart/fence"), QoS::AtLeastOnce)
        .await;
    publisher
        .publish("gwrestart/away", b"queued for away", 1, false)
        .await;
    publisher
        .publish("gwrestart/sleeper", b"queued for sleeper", 1, false)
        .await;
    publisher
        .publish("gwrestart/fence", b"fence", 1, false)
        .await;
    assert_eq!(watcher.recv_publish().await.data, b"fence");
    drop(watcher);

    let gateway = gateway.restart().await;

    // The sleeper wakes and gets what was queued before the restart.
    let got = sleeper.wake().await;
    assert_eq!(
        got.iter().map(|d| d.data.clone()).collect::<Vec<_>>(),
        vec![b"queued for sleeper".to_vec()],
        "queued for the sleeping mote before the restart"
    );
    assert_eq!(got[0].topic_name.as_deref(), Some("gwrestart/sleeper"));

    // The offline mote reconnects and gets its queued message.
    away.connect_accepted(&persistent()).await;
    let got = away.recv_publish().await;
    assert_eq!(got.data, b"queued for away");
    assert_eq!(got.topic_name.as_deref(), Some("gwrestart/away"));

    // Their subscriptions are live again upstream.
    publisher
        .publish("gwrestart/away", b"after restart", 1, false)
        .await;
    assert_eq!(away.recv_publish().await.data, b"after restart");
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_releases_its_udp_port() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let addr = gateway.addr();
    let _mote = Mote::connected(addr, "before-stop").await;
    gateway.shutdown().await;
    // Give the runtime's tasks a moment to wind down; no datagram is sent to the old port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "{addr} still bound 2 s after Runtime::run returned: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
