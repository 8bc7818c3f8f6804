//! Broker outages: mosquitto restarted (gracefully) while motes publish, and mosquitto down
//! when the gateway starts. The gateway reconnects with backoff and loses nothing a mote got
//! a PUBACK for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sn_tests::{
    wait_until, ConnectOptions, Gateway, GatewayBuilder, Mosquitto, Mote, MqttClient, QoS,
    ReturnCode, SubTopic, Topic,
};

const MESSAGES: usize = 1000;
/// Where the broker is restarted: after this many acknowledged publishes.
const RESTARTS: [usize; 2] = [MESSAGES * 3 / 10, MESSAGES * 65 / 100];
/// How many publishes past a restart point the publisher may get before the broker is back.
const GATE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_qos1_message_is_lost_across_two_broker_restarts() {
    let started = Instant::now();
    let mut broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;

    // A persistent session: the broker queues for it while it is away and keeps the queue
    // across a graceful restart.
    let mut collector = MqttClient::connect_with(broker.port(), "outage-collector", false).await;
    assert_eq!(collector.subscribe("outage/seq", 1).await, 1);

    // The two restarts fall in the middle of the run by construction, not by pacing: the
    // publisher stops at each restart point until the test is about to stop the broker (so
    // that its publishes race the stop), and again GATE messages later until the broker is
    // back (so that it cannot run to the end before the outage is over).
    let acked = Arc::new(AtomicUsize::new(0));
    let (stopping, mut stopping_rx) = tokio::sync::watch::channel(0usize);
    let (restarted, mut restarted_rx) = tokio::sync::watch::channel(0usize);
    let publisher = {
        let acked = acked.clone();
        let addr = gateway.addr();
        tokio::spawn(async move {
            let mut mote = Mote::connected(addr, "outage-mote").await;
            mote.op_timeout = Duration::from_secs(30);
            let id = mote.register("outage/seq").await;
            for seq in 0..MESSAGES {
                if let Some(k) = RESTARTS.iter().position(|&r| r == seq) {
                    stopping_rx.wait_for(|&n| n > k).await.expect("the test");
                }
                if let Some(k) = RESTARTS.iter().position(|&r| r + GATE == seq) {
                    restarted_rx.wait_for(|&n| n > k).await.expect("the test");
                }
                mote.publish_reliably(
                    Topic::Normal(id),
                    QoS::AtLeastOnce,
                    false,
                    seq.to_string().as_bytes(),
                )
                .await;
                acked.store(seq + 1, Ordering::SeqCst);
            }
        })
    };

    for (k, &restart_at) in RESTARTS.iter().enumerate() {
        wait_until(
            &format!("{restart_at} acknowledged publishes"),
            Duration::from_secs(30),
            || acked.load(Ordering::SeqCst) >= restart_at,
        )
        .await;
        let spooled = gateway.metrics().spooled;
        stopping.send_replace(k + 1);
        broker.stop().await;
        // The outage itself lasts until the gateway has taken a publish into its spool: the
        // mote's traffic has met the outage (not a fixed pause that may or may not).
        wait_until(
            &format!(
                "a publish spooled while the broker is down (restart {})",
                k + 1
            ),
            Duration::from_secs(30),
            || gateway.metrics().spooled > spooled,
        )
        .await;
        broker.start().await;
        restarted.send_replace(k + 1);
    }
    tokio::time::timeout(Duration::from_secs(40), publisher)
        .await
        .expect("the mote published every message within 40 s")
        .expect("the publishing task");

    let mut seen = BTreeSet::new();
    let mut received = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < MESSAGES {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(message) = collector.try_recv(left).await else {
            break;
        };
        received += 1;
        let seq: usize = message.text().parse().expect("a sequence number");
        seen.insert(seq);
    }
    let lost: Vec<usize> = (0..MESSAGES).filter(|s| !seen.contains(s)).collect();
    println!(
        "broker restarted twice: {received} messages received, {} distinct, {} duplicates, \
         {} lost, in {:?}",
        seen.len(),
        received - seen.len(),
        lost.len(),
        started.elapsed()
    );
    assert!(
        lost.is_empty(),
        "{} of {MESSAGES} acknowledged QoS 1 messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(50)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_broker_down_at_start_gives_congestion_then_works_once_it_is_up() {
    // The broker's port is chosen now and bound only later, when mosquitto starts: if another
    // process takes it in between, the whole scenario runs again on a new port (mosquitto
    // says "Address already in use"; any other start failure fails the test).
    let mut attempts = 0;
    let (broker, _gateway, mut mote) = loop {
        attempts += 1;
        assert!(attempts <= 5, "five broker ports in a row were taken");
        let mut broker = Mosquitto::new();
        // With the spool (the default) the CONNECT is accepted during the outage; this checks
        // the gateway without one, which has nothing to hold messages in.
        let mut builder = GatewayBuilder::new(broker.port());
        builder.config_mut().core.spool.enabled = false;
        let gateway = builder.start().await;

        let mut mote = Mote::new(gateway.addr(), "early-mote").await;
        let code = mote.connect_with(&ConnectOptions::default()).await;
        assert_eq!(
            code,
            ReturnCode::Congestion,
            "CONNECT while the broker is unreachable"
        );

        if broker.start_unless_port_taken().await {
            break (broker, gateway, mote);
        }
        println!(
            "broker port {} was taken by another process: new port",
            broker.port()
        );
        gateway.shutdown().await;
    };
    let mut sub = MqttClient::connect(broker.port(), "late-sub").await;
    sub.subscribe("late/#", 1).await;

    // The gateway reconnects on its own (no restart): CONNECT is accepted within the backoff.
    let before = Instant::now();
    mote.connect_accepted(&ConnectOptions::default()).await;
    println!(
        "CONNECT accepted {:?} after the broker started",
        before.elapsed()
    );

    let id = mote.register("late/data").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"finally")
            .await,
        ReturnCode::Accepted
    );
    let message = sub.recv_on("late/data", Duration::from_secs(10)).await;
    assert_eq!(message.payload, b"finally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_publish_while_the_broker_is_down_gets_congestion_and_subscriptions_survive_a_restart(
) {
    let mut broker = Mosquitto::running().await;
    // With the spool (the default) the PUBLISH would be accepted; tests/spool.rs covers that.
    let mut builder = GatewayBuilder::new(broker.port());
    builder.config_mut().core.spool.enabled = false;
    let gateway = builder.start().await;
    let mut mote = Mote::connected(gateway.addr(), "restart-mote").await;
    let id = mote.register("restart/up").await;
    let ack = mote
        .subscribe(SubTopic::name("restart/down"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);

    broker.stop().await;
    // Once the gateway has noticed the lost connection, a QoS 1 PUBLISH gets PUBACK 0x01,
    // never a silent drop. (One taken before it noticed would wait in the gateway for the
    // broker to return: nothing else can hold it without a spool.)
    gateway.wait_until_broker_down(&mut mote, id).await;
    let code = mote
        .publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"probe")
        .await;
    assert_eq!(code, ReturnCode::Congestion, "QoS 1 with the broker down");
    broker.start().await;

    // Uplink again, with the PUBACK 0x01 back-off of publish_reliably.
    let mut sub = MqttClient::connect(broker.port(), "restart-sub").await;
    sub.subscribe("restart/up", 1).await;
    mote.publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"after restart")
        .await;
    loop {
        let message = sub.recv_on("restart/up", Duration::from_secs(10)).await;
        if message.payload == b"after restart" {
            break;
        }
    }

    // Downlink: the mote's subscription is still served after the restart.
    let mut publisher = MqttClient::connect(broker.port(), "restart-publisher").await;
    publisher
        .publish("restart/down", b"to the mote", 1, false)
        .await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"to the mote");
    assert_eq!(got.topic_name.as_deref(), Some("restart/down"));
}
