//! Zero configuration: no remote broker, so the gateway runs its embedded broker (rmqtt) and
//! connects to it over loopback. Motes reach each other through it at QoS 0/1/2, with retained
//! messages and Wills, and MQTT apps on 127.0.0.1 see the motes' messages and reach the motes.
//! A taken port is a start-up error that names the port and the option.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mqtt_sn_gateway::runtime::Runtime;
use mqtt_sn_gateway::settings::Settings;
use sn_tests::{
    ConnectOptions, Gateway, GatewayBuilder, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic,
    Will,
};

/// A gateway with no remote broker, its embedded broker on a free loopback port, and the
/// broker link up.
async fn zero_config() -> (Gateway, u16) {
    let gateway = GatewayBuilder::embedded().start().await;
    let port = gateway
        .embedded_broker_addr()
        .expect("the embedded broker listens for local apps")
        .port();
    wait_for_link(&gateway).await;
    (gateway, port)
}

/// Waits until the gateway's link to its broker is up: a SUBSCRIBE is answered with
/// Congestion until then (a CONNECT may be accepted before, while the spool holds uplink
/// messages).
async fn wait_for_link(gateway: &Gateway) {
    let mut probe = Mote::connected(gateway.addr(), "link-probe").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ack = probe
            .subscribe(SubTopic::name("link-probe/up"), QoS::AtMostOnce)
            .await;
        if ack.return_code == ReturnCode::Accepted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker link did not come up within 10 s: SUBACK {:?}",
            ack.return_code
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probe.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_app_on_the_embedded_broker_receives_a_motes_qos1_publish() {
    let (gateway, port) = zero_config().await;
    let mut app = MqttClient::connect(port, "local-app").await;
    assert_eq!(app.subscribe("sensors/#", 1).await, 1);

    let mut mote = Mote::connected(gateway.addr(), "zero-config-mote").await;
    let id = mote.register("sensors/temperature").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"21.5")
            .await,
        ReturnCode::Accepted,
        "the embedded broker acknowledged the publish"
    );
    let message = app
        .recv_on("sensors/temperature", Duration::from_secs(10))
        .await;
    assert_eq!(message.payload, b"21.5");
    assert_eq!(message.qos, 1);
    assert!(!message.retain);

    // And the other way: the app publishes, a subscribed mote receives.
    let sub = mote
        .subscribe(
            SubTopic::name("commands/zero-config-mote"),
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(sub.return_code, ReturnCode::Accepted);
    app.publish("commands/zero-config-mote", b"blink", 1, false)
        .await;
    let delivered = mote.recv_publish().await;
    assert_eq!(
        delivered.topic_name.as_deref(),
        Some("commands/zero-config-mote")
    );
    assert_eq!(delivered.data, b"blink");
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_motes_reach_each_other_at_qos_0_1_2_with_the_qos_downgrade() {
    let (gateway, _port) = zero_config().await;
    let mut listener = Mote::connected(gateway.addr(), "listener").await;
    let mut talker = Mote::connected(gateway.addr(), "talker").await;
    let sub = listener
        .subscribe(SubTopic::name("chat/#"), QoS::ExactlyOnce)
        .await;
    assert_eq!(sub.return_code, ReturnCode::Accepted);
    assert_eq!(sub.qos, QoS::ExactlyOnce, "granted QoS 2");

    for (qos, topic) in [
        (QoS::AtMostOnce, "chat/q0"),
        (QoS::AtLeastOnce, "chat/q1"),
        (QoS::ExactlyOnce, "chat/q2"),
    ] {
        let id = talker.register(topic).await;
        let payload = format!("{topic} payload");
        assert_eq!(
            talker
                .publish(Topic::Normal(id), qos, false, payload.as_bytes())
                .await,
            ReturnCode::Accepted,
            "{topic}"
        );
        let delivered = listener.recv_publish().await;
        assert_eq!(delivered.topic_name.as_deref(), Some(topic));
        assert_eq!(delivered.data, payload.as_bytes());
        assert_eq!(
            delivered.qos, qos,
            "{topic}: delivered at the publisher's QoS"
        );
    }

    // A QoS 1 subscription gets a QoS 2 publish at QoS 1 and a QoS 0 publish at QoS 0
    // (MQTT 3.1.1 §3.8.4: the lower of the two), end to end through the embedded broker.
    let sub = listener
        .subscribe(SubTopic::name("low/#"), QoS::AtLeastOnce)
        .await;
    assert_eq!(sub.qos, QoS::AtLeastOnce);
    for (qos, expected, topic) in [
        (QoS::ExactlyOnce, QoS::AtLeastOnce, "low/q2"),
        (QoS::AtMostOnce, QoS::AtMostOnce, "low/q0"),
    ] {
        let id = talker.register(topic).await;
        assert_eq!(
            talker.publish(Topic::Normal(id), qos, false, b"x").await,
            ReturnCode::Accepted
        );
        let delivered = listener.recv_publish().await;
        assert_eq!(delivered.topic_name.as_deref(), Some(topic));
        assert_eq!(delivered.qos, expected, "{topic}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_reaches_a_mote_that_subscribes_later() {
    let (gateway, port) = zero_config().await;
    let mut talker = Mote::connected(gateway.addr(), "retainer").await;
    let id = talker.register("state/door").await;
    assert_eq!(
        talker
            .publish(Topic::Normal(id), QoS::AtLeastOnce, true, b"open")
            .await,
        ReturnCode::Accepted
    );

    // A mote that subscribes afterwards gets it, flagged as retained.
    let mut late = Mote::connected(gateway.addr(), "late-mote").await;
    let sub = late
        .subscribe(SubTopic::name("state/#"), QoS::AtLeastOnce)
        .await;
    assert_eq!(sub.return_code, ReturnCode::Accepted);
    let delivered = late.recv_publish().await;
    assert_eq!(delivered.topic_name.as_deref(), Some("state/door"));
    assert_eq!(delivered.data, b"open");
    assert!(delivered.retain, "delivered as a retained message");

    // So does a local MQTT app.
    let mut app = MqttClient::connect(port, "retained-app").await;
    app.subscribe("state/#", 1).await;
    let message = app.recv_on("state/door", Duration::from_secs(10)).await;
    assert_eq!(message.payload, b"open");
    assert!(message.retain);

    // An empty retained message clears it: a new subscriber gets nothing.
    assert_eq!(
        talker
            .publish(Topic::Normal(id), QoS::AtLeastOnce, true, b"")
            .await,
        ReturnCode::Accepted
    );
    // The app sees the clearing message itself: state/door with an empty payload, and
    // nothing before it.
    let cleared = app.recv_within(Duration::from_secs(10)).await;
    assert_eq!(
        (cleared.topic.as_str(), cleared.payload.as_slice()),
        ("state/door", &b""[..]),
        "the clearing (empty) retained message"
    );
    let mut later = MqttClient::connect(port, "later-app").await;
    later.subscribe("state/#", 1).await;
    assert_eq!(later.try_recv(Duration::from_millis(500)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_motes_will_reaches_a_mote_and_an_app() {
    let (gateway, port) = zero_config().await;
    let mut app = MqttClient::connect(port, "will-app").await;
    app.subscribe("wills/#", 1).await;
    let mut watcher = Mote::connected(gateway.addr(), "watcher").await;
    let sub = watcher
        .subscribe(SubTopic::name("wills/#"), QoS::AtLeastOnce)
        .await;
    assert_eq!(sub.return_code, ReturnCode::Accepted);

    let mut doomed = Mote::new(gateway.addr(), "doomed").await;
    doomed
        .connect_accepted(&ConnectOptions {
            clean_session: true,
            keep_alive: 1,
            will: Some(Will::new("wills/doomed", b"doomed is gone")),
        })
        .await;
    // Silence from here on: lost after 1.5 x keep-alive, and its Will published.

    let will = app.recv_on("wills/doomed", Duration::from_secs(10)).await;
    assert_eq!(will.payload, b"doomed is gone");
    assert_eq!(will.qos, 1);
    let delivered = watcher.recv_publish().await;
    assert_eq!(delivered.topic_name.as_deref(), Some("wills/doomed"));
    assert_eq!(delivered.data, b"doomed is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_listen_off_motes_still_reach_each_other() {
    let mut builder = GatewayBuilder::embedded();
    builder.config_mut().embedded_broker.listen = None;
    let gateway = builder.start().await;
    assert_eq!(gateway.embedded_broker_addr(), None, "no address for apps");
    wait_for_link(&gateway).await;

    let mut listener = Mote::connected(gateway.addr(), "off-listener").await;
    let mut talker = Mote::connected(gateway.addr(), "off-talker").await;
    listener
        .subscribe(SubTopic::name("private/#"), QoS::AtLeastOnce)
        .await;
    let id = talker.register("private/x").await;
    assert_eq!(
        talker
            .publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"only us")
            .await,
        ReturnCode::Accepted
    );
    let delivered = listener.recv_publish().await;
    assert_eq!(delivered.data, b"only us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_start_up_naming_the_port_and_the_option() {
    // Something (another broker, say) holds the port.
    let holder = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken = holder.local_addr().unwrap();

    let mut builder = GatewayBuilder::embedded();
    builder.config_mut().embedded_broker.listen = Some(taken);
    let settings = Settings::from_config(builder.config_mut()).unwrap();
    let error = match Runtime::start(settings).await {
        Ok(_) => panic!("the gateway started although {taken} is taken"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(&format!("{taken}: address already in use")),
        "{error}"
    );
    assert!(
        error.contains(&format!("--broker mqtt://{taken}")),
        "{error}"
    );
    assert!(error.contains("[embedded_broker] listen"), "{error}");
    println!("{error}");

    // Once the port is free the same configuration starts.
    drop(holder);
    let gateway = builder.start().await;
    assert_eq!(gateway.embedded_broker_addr(), Some(taken));
    wait_for_link(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_port_and_the_apps_connections_and_a_restart_serves_again() {
    let (gateway, port) = zero_config().await;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut mote = Mote::connected(gateway.addr(), "restart-mote").await;
    let id = mote.register("restart/kept").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, true, b"before")
            .await,
        ReturnCode::Accepted
    );
    let probe = tokio::net::TcpStream::connect(addr).await.unwrap();

    let gateway = gateway.restart().await;
    // The old broker closed the app's connection when it stopped.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let mut probe = probe;
        probe.read(&mut buf).await
    })
    .await
    .expect("the old broker closed its connections");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // The new one listens on the same port. The embedded broker keeps retained messages in
    // memory only: they do not survive the restart.
    assert_eq!(gateway.embedded_broker_addr(), Some(addr));
    wait_for_link(&gateway).await;
    let mut app = MqttClient::connect(port, "after-restart").await;
    app.subscribe("restart/#", 1).await;
    assert_eq!(app.try_recv(Duration::from_millis(500)).await, None);
    let mut mote = Mote::connected(gateway.addr(), "restart-mote").await;
    let id = mote.register("restart/live").await;
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, b"after")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        app.recv_on("restart/live", Duration::from_secs(10))
            .await
            .payload,
        b"after"
    );
}
