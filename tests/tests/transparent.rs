//! Transparent mode end to end, against a mosquitto that enforces per-device identity: a
//! password file and ACLs. Each mote connects with its own login; the broker's refusal reaches
//! the mote as its CONNACK; a publish outside the mote's ACL is dropped by the broker (MQTT
//! 3.1.1 has no way to say so: mosquitto acknowledges and drops it); a lost mote's Will is
//! published by the broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_config::{BrokerMode, CredentialsConfig};
use sn_tests::custom_broker::CustomBroker;
use sn_tests::{
    ConnectOptions, Gateway, GatewayBuilder, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic,
    Will,
};

/// mosquitto with users `gateway`, `mote-a`, `mote-b`, each allowed its own topics.
async fn broker_with_acls() -> CustomBroker {
    CustomBroker::with_logins(
        "transparent",
        &[
            ("gateway", "gw-pass"),
            ("mote-a", "a-pass"),
            ("mote-b", "b-pass"),
        ],
        "user gateway\ntopic readwrite #\n\n\
         user mote-a\ntopic readwrite motes/a/#\ntopic read cmd/#\n\n\
         user mote-b\ntopic readwrite motes/b/#\ntopic read cmd/#\n",
    )
    .await
}

fn login(client_id: &str, username: &str, password: &str) -> CredentialsConfig {
    CredentialsConfig {
        username: Some(username.into()),
        password: Some(password.into()),
        ..CredentialsConfig::new(client_id)
    }
}

async fn transparent_gateway(broker: &CustomBroker) -> Gateway {
    let mut builder = GatewayBuilder::new(broker.secure_port);
    let config = builder.config_mut();
    config.core.mode = BrokerMode::Transparent;
    let b = config.broker.as_mut().unwrap();
    b.client_id_prefix = "sn-".into();
    b.username = Some("gateway".into());
    b.password = Some("gw-pass".into());
    config.credentials = vec![
        login("mote-a", "mote-a", "a-pass"),
        login("mote-b", "mote-b", "b-pass"),
        login("mote-wrong", "mote-a", "not-the-password"),
    ];
    // A mote's own login is lent only to a mote the policy binds to where it connects from
    // (docs/security.md); the test motes speak from loopback.
    config.core.policy.motes = ["mote-a", "mote-b", "mote-wrong"]
        .into_iter()
        .map(|id| {
            let mut entry = sn_config::MoteEntry::new(id);
            entry.addresses = vec![sn_config::AddrPattern::parse("127.0.0.0/8").unwrap()];
            entry
        })
        .collect();
    builder.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mote_is_its_own_client_with_its_own_login_and_acl() {
    let broker = broker_with_acls().await;
    let gateway = transparent_gateway(&broker).await;
    let mut watcher = MqttClient::connect(broker.plain_port, "watcher").await;
    assert_eq!(watcher.subscribe("motes/#", 1).await, 1);

    // A mote with the wrong password: the broker refuses, the mote is told (0x03).
    let mut wrong = Mote::new(gateway.addr(), "mote-wrong").await;
    assert_eq!(
        wrong.connect_with(&ConnectOptions::default()).await,
        ReturnCode::NotSupported
    );

    // mote-a publishes inside its ACL: it arrives.
    let mut a = Mote::connected(gateway.addr(), "mote-a").await;
    let mine = a.register("motes/a/temp").await;
    assert_eq!(
        a.publish(Topic::Normal(mine), QoS::AtLeastOnce, false, b"21.5")
            .await,
        ReturnCode::Accepted
    );
    // The watcher sees every message under motes/#, nothing skipped: the first one is this.
    let got = watcher.recv_within(Duration::from_secs(10)).await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("motes/a/temp", &b"21.5"[..]),
        "the first message under motes/#"
    );

    // mote-a publishes into mote-b's topics: mosquitto acknowledges and drops it (MQTT
    // 3.1.1), so the watcher never sees it: the next message it gets, on any topic, is the
    // next allowed one (the fence), and nothing follows.
    let theirs = a.register("motes/b/temp").await;
    let _ = a
        .publish(Topic::Normal(theirs), QoS::AtLeastOnce, false, b"forged")
        .await;
    assert_eq!(
        a.publish(Topic::Normal(mine), QoS::AtLeastOnce, false, b"22.0")
            .await,
        ReturnCode::Accepted
    );
    let next = watcher.recv_within(Duration::from_secs(10)).await;
    assert_eq!(
        (next.topic.as_str(), next.payload.as_slice()),
        ("motes/a/temp", &b"22.0"[..]),
        "a message outside the mote's ACL reached a subscriber (or the fence was lost)"
    );
    let after = watcher.try_recv(Duration::from_millis(500)).await;
    assert!(
        after.is_none(),
        "a message outside the mote's ACL reached a subscriber: {after:?}"
    );

    // A command published on the broker reaches the subscribed mote through its own
    // connection.
    let ack = a.subscribe(SubTopic::name("cmd/a"), QoS::AtLeastOnce).await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let mut commander = MqttClient::connect(broker.plain_port, "commander").await;
    commander.publish("cmd/a", b"on", 1, false).await;
    let delivered = a.recv_publish().await;
    assert_eq!(delivered.data, b"on");

    // mosquitto knows the mote by its own client id (with the prefix).
    let log = std::fs::read_to_string(broker.dir.join("mosquitto.log")).unwrap_or_default();
    assert!(
        log.contains("as sn-mote-a") || log.contains("sn-mote-a"),
        "mosquitto log does not show the mote's own client id:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_motes_will_is_published_by_the_broker_and_a_clean_disconnect_has_none() {
    let broker = broker_with_acls().await;
    let gateway = transparent_gateway(&broker).await;
    let mut watcher = MqttClient::connect(broker.plain_port, "will-watcher").await;
    assert_eq!(watcher.subscribe("motes/+/status", 1).await, 1);

    // mote-b disconnects cleanly: no Will.
    let mut b = Mote::new(gateway.addr(), "mote-b").await;
    b.connect_accepted(&ConnectOptions {
        will: Some(Will::new("motes/b/status", b"b lost")),
        ..ConnectOptions::default()
    })
    .await;
    b.disconnect().await;

    // mote-a goes silent with a 2 s keep-alive: lost after 3 s, its connection dropped, and
    // mosquitto publishes its Will.
    let mut a = Mote::new(gateway.addr(), "mote-a").await;
    a.connect_accepted(&ConnectOptions {
        keep_alive: 2,
        will: Some(Will::new("motes/a/status", b"a lost")),
        ..ConnectOptions::default()
    })
    .await;
    // The watcher sees every message under motes/+/status, nothing skipped: the first one
    // is mote-a's Will (mote-b's would have come first, at its DISCONNECT), and nothing
    // follows it.
    let will = watcher.recv_within(Duration::from_secs(15)).await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("motes/a/status", &b"a lost"[..]),
        "the first status message is mote-a's Will (anything else: a Will after a clean \
         DISCONNECT)"
    );
    let after = watcher.try_recv(Duration::from_millis(500)).await;
    assert!(
        after.is_none(),
        "a Will after a clean DISCONNECT: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_motes_connection_is_kept_alive_and_its_messages_wait_for_it() {
    let broker = broker_with_acls().await;
    let gateway = transparent_gateway(&broker).await;
    let mut watcher = MqttClient::connect(broker.plain_port, "sleep-watcher").await;
    assert_eq!(watcher.subscribe("motes/+/status", 1).await, 1);

    // Keep-alive 5 s upstream: mosquitto would drop a silent connection after 7.5 s and
    // publish the Will. The mote sleeps for 12 s.
    let mut a = Mote::new(gateway.addr(), "mote-a").await;
    a.connect_accepted(&ConnectOptions {
        keep_alive: 5,
        will: Some(Will::new("motes/a/status", b"a lost")),
        ..ConnectOptions::default()
    })
    .await;
    let ack = a.subscribe(SubTopic::name("cmd/a"), QoS::AtLeastOnce).await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    a.sleep(60).await;
    let mut commander = MqttClient::connect(broker.plain_port, "sleep-commander").await;
    commander.publish("cmd/a", b"while asleep", 1, false).await;
    // The watcher listens through the whole 12 s (not a sleep and a glance afterwards): any
    // status message in that time, a Will included, ends the wait and fails the test.
    let early = watcher.try_recv(Duration::from_secs(12)).await;
    assert!(
        early.is_none(),
        "the broker published the Will of a mote that was asleep within its duration: \
         {early:?}"
    );
    let delivered = a.wake().await;
    assert_eq!(
        delivered.iter().map(|d| d.data.clone()).collect::<Vec<_>>(),
        vec![b"while asleep".to_vec()]
    );
}
