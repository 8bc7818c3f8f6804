//! Sleeping motes (v1.2 §6.14): messages are buffered while asleep and delivered on wake-up
//! before the PINGRESP; a mote that oversleeps is lost and its Will published.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::{Duration, Instant};

use sn_tests::{
    ConnectOptions, Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Will,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_mote_gets_its_buffered_messages_when_it_wakes() {
    let broker = Mosquitto::running().await;
    // It wakes from a new port (its radio came back with another address): roaming.
    let gateway = Gateway::start_roaming(broker.port()).await;
    let mut publisher = MqttClient::connect(broker.port(), "sleep-publisher").await;

    let mut sleeper = Mote::connected(gateway.addr(), "sleeper").await;
    for (filter, qos) in [
        ("sleep/q1", QoS::AtLeastOnce),
        ("sleep/q2", QoS::ExactlyOnce),
        ("sleep/wild/#", QoS::AtLeastOnce),
    ] {
        let ack = sleeper.subscribe(SubTopic::name(filter), qos).await;
        assert_eq!(ack.return_code, ReturnCode::Accepted, "{filter}");
    }
    // An awake mote on the same gateway: when it has the fence, the gateway has everything
    // published before it (one publisher, one upstream connection, in order).
    let mut watcher = Mote::connected(gateway.addr(), "watcher").await;
    watcher
        .subscribe(SubTopic::name("sleep/fence"), QoS::AtLeastOnce)
        .await;

    sleeper.sleep(60).await;
    publisher.publish("sleep/q1", b"one", 1, false).await;
    publisher.publish("sleep/q2", b"two", 2, false).await;
    publisher
        .publish("sleep/wild/new", b"three", 1, false)
        .await;
    publisher.publish("sleep/q1", b"four", 0, false).await;
    publisher.publish("sleep/fence", b"fence", 1, false).await;
    assert_eq!(watcher.recv_publish().await.data, b"fence");

    // Nothing was sent to the sleeper, not even the REGISTER for sleep/wild/new.
    assert!(
        sleeper.recv_raw(Duration::ZERO).await.is_none(),
        "the gateway sent to a sleeping mote"
    );

    // Wake-up from a new port (the mote's radio came back with another address).
    let _old = sleeper.rebind().await;
    let got = sleeper.wake().await;
    let summary: Vec<(Option<String>, Vec<u8>, QoS)> = got
        .iter()
        .map(|d| (d.topic_name.clone(), d.data.clone(), d.qos))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("sleep/q1".into()), b"one".to_vec(), QoS::AtLeastOnce),
            (Some("sleep/q2".into()), b"two".to_vec(), QoS::ExactlyOnce),
            (
                Some("sleep/wild/new".into()),
                b"three".to_vec(),
                QoS::AtLeastOnce
            ),
            (Some("sleep/q1".into()), b"four".to_vec(), QoS::AtMostOnce),
        ],
        "everything buffered, in order, before the PINGRESP"
    );
    assert!(
        sleeper
            .registers()
            .iter()
            .any(|(_, name)| name == "sleep/wild/new"),
        "REGISTER during the awake phase"
    );

    // Back asleep: a new message waits for the next wake-up.
    publisher.publish("sleep/q1", b"five", 1, false).await;
    publisher.publish("sleep/fence", b"fence 2", 1, false).await;
    assert_eq!(watcher.recv_publish().await.data, b"fence 2");
    let got = sleeper.wake().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].data, b"five");

    // CONNECT ends the sleep.
    sleeper
        .connect_accepted(&ConnectOptions {
            clean_session: false,
            ..ConnectOptions::default()
        })
        .await;
    publisher.publish("sleep/q1", b"awake", 1, false).await;
    assert_eq!(sleeper.recv_publish().await.data, b"awake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_that_oversleeps_is_lost_and_its_will_published() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut sub = MqttClient::connect(broker.port(), "oversleep-sub").await;
    sub.subscribe("wills/#", 1).await;

    let mut mote = Mote::new(gateway.addr(), "oversleeper").await;
    mote.connect_accepted(&ConnectOptions {
        clean_session: true,
        keep_alive: 60,
        will: Some(Will::new("wills/oversleeper", b"overslept")),
    })
    .await;
    let before = Instant::now();
    mote.sleep(1).await;
    let asleep = Instant::now();
    // The first message under wills/# (nothing skipped) is its Will. Not before 1.5 x the
    // sleep duration (the protocol's limit); the upper bound is generous (10 x), for a
    // loaded machine: it catches a Will that never comes.
    let earliest = Duration::from_millis(1500);
    let latest = earliest * 10;
    let will = sub.recv_within(latest + Duration::from_secs(5)).await;
    let arrived = Instant::now();
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("wills/oversleeper", &b"overslept"[..])
    );
    assert!(
        arrived - before >= earliest,
        "lost {:?} after going to sleep for 1 s: before 1.5 x the sleep duration",
        arrived - before
    );
    assert!(
        arrived - asleep <= latest,
        "lost {:?} after going to sleep for 1 s: later than 10 x 1.5 x the sleep duration",
        arrived - asleep
    );
}
