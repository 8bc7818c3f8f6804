//! The fallback end to end: a remote mosquitto goes away while motes work; the embedded broker
//! serves them (motes and a local MQTT app keep seeing each other's messages, a new mote
//! connects and subscribes), every accepted message is spooled, and when mosquitto returns
//! the spool reaches it in order and service switches back. No mote is disconnected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_tests::{
    ConnectOptions, GatewayBuilder, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic,
};

const DURING: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_serves_during_an_outage_and_the_spool_reaches_the_remote_after() {
    let mut broker = Mosquitto::running().await;
    let gateway = GatewayBuilder::new(broker.port()).fallback().start().await;
    let local_port = gateway
        .embedded_broker_addr()
        .expect("the fallback broker listens for local apps")
        .port();

    // Before the outage: a listener mote, a publishing mote, and a persistent collector on
    // the remote broker for the publisher's topic.
    let mut listener = Mote::connected(gateway.addr(), "fb-listener").await;
    let ack = listener
        .subscribe(SubTopic::name("fb/down/listener"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let mut publisher = Mote::connected(gateway.addr(), "fb-publisher").await;
    let up = publisher.register("fb/up").await;
    let mut collector = MqttClient::connect_with(broker.port(), "fb-collector", false).await;
    assert_eq!(collector.subscribe("fb/up", 1).await, 1);
    assert_eq!(
        publisher
            .publish(Topic::Normal(up), QoS::AtLeastOnce, false, b"before")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        collector
            .recv_on("fb/up", Duration::from_secs(10))
            .await
            .payload,
        b"before"
    );
    drop(collector);

    broker.stop().await;

    // A local app on the embedded broker sees the motes' messages once the fallback serves.
    let mut app = MqttClient::connect(local_port, "fb-local-app").await;
    assert_eq!(app.subscribe("fb/#", 1).await, 1);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let probe = format!("probe-{}", sent.len()).into_bytes();
        let code = publisher
            .publish(Topic::Normal(up), QoS::AtLeastOnce, false, &probe)
            .await;
        assert_eq!(
            code,
            ReturnCode::Accepted,
            "a mote's QoS 1 during the outage"
        );
        sent.push(probe);
        if app.try_recv(Duration::from_millis(200)).await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fallback broker did not take over within 15 s"
        );
    }
    while app.try_recv(Duration::from_millis(300)).await.is_some() {}

    // Every message during the outage: acknowledged to the mote, seen by the local app in
    // order.
    for seq in 0..DURING {
        let payload = format!("during-{seq}").into_bytes();
        let code = publisher
            .publish(Topic::Normal(up), QoS::AtLeastOnce, false, &payload)
            .await;
        assert_eq!(code, ReturnCode::Accepted, "message {seq}");
        sent.push(payload);
    }
    for seq in 0..DURING {
        let message = app.recv_on("fb/up", Duration::from_secs(10)).await;
        assert_eq!(message.payload, format!("during-{seq}").into_bytes());
    }

    // A new mote connects and subscribes during the outage, and hears the first mote.
    let mut late = Mote::new(gateway.addr(), "fb-late").await;
    assert_eq!(
        late.connect_with(&ConnectOptions::default()).await,
        ReturnCode::Accepted,
        "a new CONNECT while the fallback serves"
    );
    let ack = late
        .subscribe(SubTopic::name("fb/up"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted, "a new SUBSCRIBE");
    let code = publisher
        .publish(Topic::Normal(up), QoS::AtLeastOnce, false, b"to-late")
        .await;
    assert_eq!(code, ReturnCode::Accepted);
    sent.push(b"to-late".to_vec());
    let heard = late.recv_publish().await;
    assert_eq!(heard.data, b"to-late");

    // The local app reaches a mote that subscribed before the outage.
    app.publish("fb/down/listener", b"from-app", 1, false).await;
    let got = listener.recv_publish().await;
    assert_eq!(got.data, b"from-app");

    // The remote broker returns: the spool reaches the persistent collector, in order.
    broker.start().await;
    let mut collector = MqttClient::connect_with(broker.port(), "fb-collector", false).await;
    let mut received: Vec<Vec<u8>> = Vec::new();
    while received.len() < sent.len() {
        match collector.try_recv(Duration::from_secs(20)).await {
            Some(message) if message.topic == "fb/up" => {
                if !received.contains(&message.payload) {
                    received.push(message.payload);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(
        received.len(),
        sent.len(),
        "messages accepted during the outage that reached the remote broker"
    );
    assert_eq!(received, sent, "in order, none lost");

    // Service has switched back: the remote broker's messages reach the motes again (the
    // gateway resubscribed there), and the motes were never disconnected.
    let mut remote_app = MqttClient::connect(broker.port(), "fb-remote-app").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        remote_app
            .publish("fb/down/listener", b"from-remote", 1, false)
            .await;
        if let Some(got) = listener.try_recv_publish(Duration::from_millis(500)).await {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message from the remote broker after it returned"
        );
    };
    assert_eq!(got.data, b"from-remote");
    listener.ping().await;
    publisher.ping().await;
    late.ping().await;
    let code = publisher
        .publish(Topic::Normal(up), QoS::AtLeastOnce, false, b"after")
        .await;
    assert_eq!(code, ReturnCode::Accepted);
    assert_eq!(
        collector
            .recv_on("fb/up", Duration::from_secs(10))
            .await
            .payload,
        b"after"
    );
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// The embedded broker starts only when the fallback is first needed (issue 17): while the
/// remote broker is up its port refuses local apps; once the remote broker is gone it serves
/// them, and keeps serving after the remote broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_starts_only_once_the_remote_broker_is_unreachable() {
    let mut broker = Mosquitto::running().await;
    let gateway = GatewayBuilder::new(broker.port()).fallback().start().await;
    let local_port = gateway
        .embedded_broker_addr()
        .expect("the fallback's address is known from the start")
        .port();
    let mut mote = Mote::connected(gateway.addr(), "lazy-mote").await;
    let id = mote.register("lazy/t").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"up")
            .await,
        ReturnCode::Accepted
    );
    assert!(
        !accepts(local_port).await,
        "the embedded broker runs although the remote broker is up"
    );

    broker.stop().await;
    let mut app = MqttClient::connect(local_port, "lazy-local-app").await;
    assert_eq!(app.subscribe("lazy/#", 1).await, 1);
    broker.start().await;
    assert!(
        accepts(local_port).await,
        "the embedded broker keeps serving local apps once started"
    );
}

/// A remote broker unreachable from the start: the fallback starts and serves the motes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_broker_down_at_start_starts_the_fallback() {
    // A port nothing listens on: bound, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = GatewayBuilder::new(port).fallback().start().await;
    let local_port = gateway.embedded_broker_addr().unwrap().port();
    let mut app = MqttClient::connect(local_port, "down-at-start-app").await;
    assert_eq!(app.subscribe("downstart/#", 1).await, 1);
    let mut mote = Mote::connected(gateway.addr(), "down-at-start-mote").await;
    let id = mote.register("downstart/t").await;
    mote.publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"served")
        .await;
    let message = app
        .try_recv(Duration::from_secs(10))
        .await
        .expect("the local app got the mote's message through the fallback");
    assert_eq!(message.text(), "served");
}
