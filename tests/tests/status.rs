//! The gateway's own status on the broker: a retained "online" once its link is up, and
//! "offline" (its MQTT Will) when it is killed, as Home Assistant or Node-RED would watch it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use sn_tests::custom_broker::temp_dir;
use sn_tests::process::GatewayProcess;
use sn_tests::{Mosquitto, MqttClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_topic_says_online_and_offline_after_a_kill() {
    let broker = Mosquitto::running().await;
    let mut gateway = GatewayProcess::start(
        temp_dir("status"),
        &format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"edge-7\"\n",
            broker.port()
        ),
    );
    let mut watcher = MqttClient::connect(broker.port(), "status-watcher").await;
    assert_eq!(watcher.subscribe("edge-7/status", 1).await, 1);
    let online = watcher.recv_within(Duration::from_secs(15)).await;
    assert_eq!(
        (online.topic.as_str(), online.payload.as_slice()),
        ("edge-7/status", &b"online"[..])
    );

    // kill -9: no DISCONNECT, so the broker publishes the gateway's Will.
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    let offline = watcher.recv_within(Duration::from_secs(15)).await;
    assert_eq!(
        (offline.topic.as_str(), offline.payload.as_slice()),
        ("edge-7/status", &b"offline"[..])
    );
    // Retained: whoever looks later sees it too.
    let mut later = MqttClient::connect(broker.port(), "status-later").await;
    assert_eq!(later.subscribe("edge-7/status", 1).await, 1);
    let seen = later.recv_within(Duration::from_secs(5)).await;
    assert_eq!(seen.payload, b"offline");
    assert!(seen.retain, "the status is retained");
}

/// `[presence] topic`: a mosquitto subscriber sees each mote's state as a retained message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_motes_presence_is_a_retained_topic() {
    let broker = Mosquitto::running().await;
    let mut builder = sn_tests::Gateway::builder(broker.port());
    builder.config_mut().core.presence_topic = Some("motes/%c/presence".into());
    let gateway = builder.start().await;
    let mut watcher = MqttClient::connect(broker.port(), "presence-watcher").await;
    assert_eq!(watcher.subscribe("motes/+/presence", 1).await, 1);

    let mut mote = sn_tests::Mote::connected(gateway.addr(), "door-1").await;
    mote.sleep(60).await;
    mote.wake().await;
    mote.disconnect().await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let message = watcher.recv_within(Duration::from_secs(10)).await;
        assert_eq!(message.topic, "motes/door-1/presence");
        seen.push(String::from_utf8(message.payload).unwrap());
    }
    assert_eq!(
        seen,
        ["connected", "asleep", "awake", "asleep", "disconnected"]
    );
    // Retained: a dashboard that starts later sees the last state.
    let mut later = MqttClient::connect(broker.port(), "presence-later").await;
    assert_eq!(later.subscribe("motes/door-1/presence", 1).await, 1);
    let last = later.recv_within(Duration::from_secs(5)).await;
    assert_eq!(
        (last.payload.as_slice(), last.retain),
        (&b"disconnected"[..], true)
    );
}
