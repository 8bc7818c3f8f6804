//! The sleeping-mote scenario of the specification, end to end: a mote sleeps 60 s while 100
//! QoS 1 messages are published to its subscription, wakes, and receives all 100 in order
//! with PINGRESP after the last; and the same with the gateway restarted during the sleep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_tests::{Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic};

const MESSAGES: usize = 100;
const SLEEP: Duration = Duration::from_secs(60);

/// Subscribes a mote, puts it to sleep for 60 s, publishes 100 QoS 1 messages to it (and
/// restarts the gateway meanwhile when asked), wakes it after the 60 s and checks it gets all
/// 100 in order before its PINGRESP.
async fn sleep_publish_wake(restart_during_sleep: bool) {
    let broker = Mosquitto::running().await;
    let mut gateway = Gateway::start(broker.port()).await;
    let topic = if restart_during_sleep {
        "sleep100/restart"
    } else {
        "sleep100/plain"
    };
    let mut mote = Mote::connected(gateway.addr(), &format!("{topic}-mote")).await;
    mote.op_timeout = Duration::from_secs(30);
    let ack = mote
        .subscribe(SubTopic::name(topic), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    mote.sleep(SLEEP.as_secs() as u16).await;
    let asleep_at = tokio::time::Instant::now();

    let mut publisher = MqttClient::connect(broker.port(), &format!("{topic}-publisher")).await;
    for seq in 0..MESSAGES {
        publisher
            .publish(topic, seq.to_string().as_bytes(), 1, false)
            .await;
    }
    // A fence: once a watcher has the next message, the gateway has handled every one before
    // it (one broker connection, in order).
    let mut watcher = Mote::connected(gateway.addr(), &format!("{topic}-watcher")).await;
    watcher
        .subscribe(SubTopic::name(&format!("{topic}/fence")), QoS::AtLeastOnce)
        .await;
    publisher
        .publish(&format!("{topic}/fence"), b"fence", 1, false)
        .await;
    assert_eq!(watcher.recv_publish().await.data, b"fence");
    drop(watcher);

    if restart_during_sleep {
        gateway = gateway.restart().await;
    }
    let slept = asleep_at.elapsed();
    tokio::time::sleep(SLEEP.saturating_sub(slept)).await;

    let woke_at = tokio::time::Instant::now();
    let got = mote.wake().await;
    let payloads: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(|s| s.to_string()).collect();
    assert_eq!(
        payloads, expected,
        "all {MESSAGES} in order, before the PINGRESP"
    );
    assert!(got.iter().all(|d| d.topic_name.as_deref() == Some(topic)));
    println!(
        "{topic}: slept {:?}, received {} messages in order, PINGRESP after the last, wake took {:?}",
        asleep_at.elapsed() - woke_at.elapsed(),
        got.len(),
        woke_at.elapsed()
    );
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_sleeping_60s_gets_100_messages_in_order_then_pingresp() {
    sleep_publish_wake(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_across_a_gateway_restart_during_the_sleep() {
    sleep_publish_wake(true).await;
}
