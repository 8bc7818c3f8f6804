//! Sessions: keep-alive expiry and the Will, the Will handshake and Will updates, a mote that
//! moves to a new UDP port, an offline persistent session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sn_tests::{
    ConnectOptions, Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic, Will,
};

async fn setup() -> (Mosquitto, Gateway, MqttClient) {
    setup_with(false).await
}

/// The same with `roaming` on: for motes that come back from another address.
async fn setup_roaming() -> (Mosquitto, Gateway, MqttClient) {
    setup_with(true).await
}

async fn setup_with(roaming: bool) -> (Mosquitto, Gateway, MqttClient) {
    let broker = Mosquitto::running().await;
    let gateway = if roaming {
        Gateway::start_roaming(broker.port()).await
    } else {
        Gateway::start(broker.port()).await
    };
    let mut sub = MqttClient::connect(broker.port(), "session-sub").await;
    sub.subscribe("wills/#", 1).await;
    (broker, gateway, sub)
}

fn with_will(keep_alive: u16, will: Will) -> ConnectOptions {
    ConnectOptions {
        clean_session: true,
        keep_alive,
        will: Some(will),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_publishes_the_will_after_one_and_a_half_periods() {
    let (_broker, gateway, mut sub) = setup().await;
    let mut mote = Mote::new(gateway.addr(), "will-mote").await;
    let keep_alive = Duration::from_secs(1);
    let before_connect = Instant::now();
    mote.connect_accepted(&with_will(1, Will::new("wills/will-mote", b"gone")))
        .await;
    let connected = Instant::now();
    // Silence from here on.

    // The first message under wills/# (nothing skipped) is this Will. Not before 1.5 x
    // keep-alive (the protocol's limit); the upper bound is generous (10 x), for a loaded
    // machine: it catches a Will that never comes or waits for something else.
    let earliest = keep_alive * 3 / 2;
    let latest = earliest * 10;
    let will = sub.recv_within(latest + Duration::from_secs(5)).await;
    let arrived = Instant::now();
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice(), will.qos),
        ("wills/will-mote", &b"gone"[..], 1)
    );
    assert!(
        arrived - before_connect >= earliest,
        "Will published {:?} after the last packet, before 1.5 x keep-alive",
        arrived - before_connect
    );
    assert!(
        arrived - connected <= latest,
        "Will published {:?} after the CONNACK, later than 10 x 1.5 x keep-alive",
        arrived - connected
    );
    println!(
        "Will arrived {:?} after the CONNACK (keep-alive {keep_alive:?})",
        arrived - connected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_the_session_alive_and_a_clean_disconnect_discards_the_will() {
    let (_broker, gateway, mut sub) = setup().await;
    // Pings every 500 ms for 2.5 x its keep-alive of 1 s: it must not be lost.
    let mut pinger = Mote::new(gateway.addr(), "pinger").await;
    pinger
        .connect_accepted(&with_will(1, Will::new("wills/pinger", b"pinger lost")))
        .await;
    // Disconnects cleanly: its Will is discarded.
    let mut polite = Mote::new(gateway.addr(), "polite").await;
    polite
        .connect_accepted(&with_will(1, Will::new("wills/polite", b"polite lost")))
        .await;
    polite.disconnect().await;
    // Goes silent: its Will is the fence that shows the others' would have arrived by now.
    let mut fence = Mote::new(gateway.addr(), "fence").await;
    fence
        .connect_accepted(&with_will(1, Will::new("wills/fence", b"fence lost")))
        .await;

    // The pinger pings every 500 ms until the silent mote's Will arrives (not for a fixed
    // time): the pinger connected first, so without its pings its keep-alive would expire
    // first and its Will would come first; a Will for polite would come at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        pinger.ping().await;
        if let Some(message) = sub.try_recv(Duration::from_millis(500)).await {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "no Will within 30 s (the fence's keep-alive is 1 s)"
        );
    };
    assert_eq!(
        first.topic, "wills/fence",
        "only the silent mote's Will is published: {first:?}"
    );
    // Still connected: it can publish.
    let id = pinger.register("wills/alive").await;
    assert_eq!(
        pinger
            .publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"alive")
            .await,
        ReturnCode::Accepted
    );
    let next = sub.recv().await;
    assert_eq!(next.topic, "wills/alive", "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_updates_change_the_will_that_is_published() {
    let (broker, gateway, mut sub) = setup().await;

    // Topic and message updated, and the update makes it retained.
    let mut both = Mote::new(gateway.addr(), "update-both").await;
    both.connect_accepted(&with_will(2, Will::new("wills/a", b"first")))
        .await;
    assert_eq!(
        both.update_will_topic(Some(("wills/b", QoS::AtLeastOnce, true)))
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        both.update_will_message(b"second").await,
        ReturnCode::Accepted
    );

    // Topic only: the message stays.
    let mut topic_only = Mote::new(gateway.addr(), "update-topic").await;
    topic_only
        .connect_accepted(&with_will(2, Will::new("wills/c", b"kept message")))
        .await;
    assert_eq!(
        topic_only
            .update_will_topic(Some(("wills/d", QoS::AtLeastOnce, false)))
            .await,
        ReturnCode::Accepted
    );

    // Message only: the topic stays.
    let mut message_only = Mote::new(gateway.addr(), "update-message").await;
    message_only
        .connect_accepted(&with_will(2, Will::new("wills/e", b"old message")))
        .await;
    assert_eq!(
        message_only.update_will_message(b"new message").await,
        ReturnCode::Accepted
    );

    // Empty WILLTOPICUPD: no Will at all. Its keep-alive is shorter, so its Will, if any,
    // would come before the others'.
    let mut deleted = Mote::new(gateway.addr(), "update-delete").await;
    deleted
        .connect_accepted(&with_will(1, Will::new("wills/f", b"must not appear")))
        .await;
    assert_eq!(deleted.update_will_topic(None).await, ReturnCode::Accepted);

    let mut wills = BTreeMap::new();
    for _ in 0..3 {
        let m = sub.recv().await;
        assert!(
            !wills.contains_key(&m.topic),
            "two Wills on {}: {m:?}",
            m.topic
        );
        wills.insert(m.topic.clone(), (m.text(), m.retain));
    }
    let expected: BTreeMap<String, (String, bool)> = [
        ("wills/b", "second"),
        ("wills/d", "kept message"),
        ("wills/e", "new message"),
    ]
    .into_iter()
    .map(|(t, m)| (t.to_string(), (m.to_string(), false)))
    .collect();
    assert_eq!(wills, expected);

    // The updated Will of "update-both" was retained by the broker.
    let mut late = MqttClient::connect(broker.port(), "session-late").await;
    late.subscribe("wills/b", 1).await;
    let retained = late.recv().await;
    assert_eq!(retained.text(), "second");
    assert!(retained.retain, "WILLTOPICUPD set Retain: {retained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_on_a_new_port_keeps_its_session_and_subscriptions() {
    // The mote comes back from another port: roaming.
    let (broker, gateway, _sub) = setup_roaming().await;
    let mut publisher = MqttClient::connect(broker.port(), "rebind-publisher").await;
    let mut up = MqttClient::connect(broker.port(), "rebind-up").await;
    up.subscribe("rebind/up", 1).await;

    let mut mote = Mote::new(gateway.addr(), "rebinder").await;
    mote.connect().await;
    let ack = mote
        .subscribe(SubTopic::name("rebind/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    publisher.publish("rebind/cmd", b"before", 1, false).await;
    assert_eq!(mote.recv_publish().await.data, b"before");
    let old_port = mote.local_addr();

    // A NAT rebinding: same client id, new port, CleanSession=0, no DISCONNECT before.
    let old = mote.rebind().await;
    assert_ne!(mote.local_addr(), old_port);
    mote.connect_accepted(&ConnectOptions {
        clean_session: false,
        ..ConnectOptions::default()
    })
    .await;

    publisher.publish("rebind/cmd", b"after", 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"after");
    assert_eq!(
        got.topic_name.as_deref(),
        Some("rebind/cmd"),
        "the topic id is known to the mote (from the SUBACK or a new REGISTER)"
    );
    let mut buf = [0u8; 512];
    assert!(
        old.try_recv_from(&mut buf).is_err(),
        "the gateway still sends to the old port"
    );

    // Uplink from the new port works too.
    let id = mote.register("rebind/up").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"from new port")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        up.recv_on("rebind/up", Duration::from_secs(10))
            .await
            .payload,
        b"from new port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_queues_qos1_messages_while_the_mote_is_away() {
    // The mote comes back from another port: roaming.
    let (broker, gateway, _sub) = setup_roaming().await;
    let mut publisher = MqttClient::connect(broker.port(), "offline-publisher").await;
    let mut mote = Mote::new(gateway.addr(), "sometimes-away").await;
    mote.connect_accepted(&ConnectOptions {
        clean_session: false,
        ..ConnectOptions::default()
    })
    .await;
    let ack = mote
        .subscribe(SubTopic::name("away/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    mote.disconnect().await;

    publisher.publish("away/cmd", b"one", 1, false).await;
    publisher.publish("away/cmd", b"two", 1, false).await;

    // Back from another port.
    let _old = mote.rebind().await;
    mote.connect_accepted(&ConnectOptions {
        clean_session: false,
        ..ConnectOptions::default()
    })
    .await;
    let first = mote.recv_publish().await;
    let second = mote.recv_publish().await;
    assert_eq!(
        (first.data.as_slice(), second.data.as_slice()),
        (&b"one"[..], &b"two"[..])
    );
    assert_eq!(first.topic_name.as_deref(), Some("away/cmd"));
    assert_eq!(first.qos, QoS::AtLeastOnce);

    // CleanSession=1 drops the subscription.
    mote.disconnect().await;
    mote.connect().await;
    publisher.publish("away/cmd", b"dropped", 1, false).await;
    let id = mote.register("away/fence").await;
    let ack = mote
        .subscribe(SubTopic::name("away/fence"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.topic_id, id);
    publisher.publish("away/fence", b"fence", 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(
        got.data, b"fence",
        "the CleanSession=1 session kept a subscription: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_that_never_acknowledges_is_retried_with_dup_then_lost() {
    use sn_tests::Packet;
    let (broker, gateway, mut sub) = setup().await;
    let mut publisher = MqttClient::connect(broker.port(), "retry-publisher").await;
    let mut mote = Mote::new(gateway.addr(), "deaf-mote").await;
    mote.connect_accepted(&with_will(60, Will::new("wills/deaf-mote", b"deaf")))
        .await;
    let ack = mote
        .subscribe(SubTopic::name("retry/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    publisher.publish("retry/cmd", b"ack me", 1, false).await;

    // Read raw (no automatic PUBACK): the first send and the retransmissions, T_retry (1 s)
    // apart, DUP set on all but the first, same MsgId; then the mote is lost.
    let retries = gateway.config().core.max_retries;
    let mut sends = Vec::new();
    let mut disconnected = false;
    // Generous bounds for a loaded machine: 10 x T_retry for each gap.
    let t_retry = gateway.config().core.retry_interval;
    let max_gap = t_retry * 10;
    let deadline = Instant::now() + max_gap * (retries + 2);
    while Instant::now() < deadline && !disconnected {
        let Some((datagram, _)) = mote.recv_raw(max_gap).await else {
            break;
        };
        match Packet::decode(&datagram).unwrap() {
            Packet::Publish(p) => sends.push((Instant::now(), p.dup, p.msg_id, p.data.to_vec())),
            Packet::Disconnect(_) => disconnected = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        sends.len() as u32,
        1 + retries,
        "one send and max_retries retransmissions: {sends:?}"
    );
    assert!(!sends[0].1, "the first send has DUP=0");
    for s in &sends[1..] {
        assert!(s.1, "a retransmission has DUP=1");
        assert_eq!(s.2, sends[0].2, "same MsgId");
        assert_eq!(s.3, b"ack me");
    }
    // Never before T_retry (less 10 % for timer granularity); the upper bound is generous.
    for pair in sends.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= t_retry * 9 / 10 && gap <= max_gap,
            "retransmission after {gap:?}, T_retry is {t_retry:?}"
        );
    }
    // The first message under wills/# (nothing skipped) is its Will.
    let will = sub.recv_within(Duration::from_secs(10)).await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("wills/deaf-mote", &b"deaf"[..]),
        "a mote lost after N_retry gets its Will published"
    );
    assert!(disconnected, "the lost mote is told with DISCONNECT");
}
