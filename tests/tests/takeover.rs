//! Sessions cannot be stolen (security issue, item 4): with the default `roaming = false`, a
//! session answers only to the address its mote is bound to. Each test is an attack as someone
//! in radio range would run it, against the real gateway and a real mosquitto: the attacker
//! knows the victim's client id and sends from another socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use sn_codec::v12::Disconnect;
use sn_tests::{
    ConnectOptions, Gateway, Mosquitto, Mote, MqttClient, Packet, QoS, ReturnCode, SubTopic,
};

/// The attacker's PINGREQ naming a sleeping mote gets DISCONNECT and none of the mote's
/// messages; the mote wakes and gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pingreq_naming_a_sleeping_mote_from_another_address_gets_none_of_its_messages() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut publisher = MqttClient::connect(broker.port(), "takeover-publisher").await;
    let mut victim = Mote::new(gateway.addr(), "victim").await;
    victim
        .connect_accepted(&ConnectOptions {
            clean_session: false,
            ..ConnectOptions::default()
        })
        .await;
    let ack = victim
        .subscribe(SubTopic::name("victim/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    // An awake mote on the same gateway: when it has the fence, the gateway has the command
    // (one publisher, one upstream connection, in order).
    let mut watcher = Mote::connected(gateway.addr(), "takeover-watcher").await;
    watcher
        .subscribe(SubTopic::name("victim/fence"), QoS::AtLeastOnce)
        .await;
    victim.sleep(600).await;
    publisher.publish("victim/cmd", b"unlock", 1, false).await;
    publisher.publish("victim/fence", b"", 1, false).await;
    assert_eq!(
        watcher.recv_publish().await.topic_name.as_deref(),
        Some("victim/fence")
    );

    let mut thief = Mote::new(gateway.addr(), "victim").await;
    thief
        .send(Packet::PingReq {
            client_id: b"victim",
        })
        .await;
    let answer = thief
        .expect("the gateway's answer to the thief", |p| match p {
            Packet::Disconnect(d) => Some(*d),
            _ => None,
        })
        .await;
    assert_eq!(answer, Disconnect { duration: None });
    assert!(
        thief
            .try_recv_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "the thief got the victim's message"
    );
    gateway
        .metric_reaches("takeover_refused", 1, |m| m.takeover_refused)
        .await;

    let got = victim.wake().await;
    let data: Vec<&[u8]> = got.iter().map(|d| &d.data[..]).collect();
    assert_eq!(data, vec![&b"unlock"[..]]);
}

/// A CONNECT with the victim's client id from another address is refused (CONNACK 0x03), with
/// CleanSession 0 or 1; the victim keeps its session: its next PINGREQ gets PINGRESP, not
/// DISCONNECT, and its subscription still delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_with_the_client_id_from_another_address_cannot_take_the_session() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut publisher = MqttClient::connect(broker.port(), "takeover-publisher-2").await;
    let mut victim = Mote::connected(gateway.addr(), "victim-2").await;
    let ack = victim
        .subscribe(SubTopic::name("victim2/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);

    for clean_session in [false, true] {
        let mut thief = Mote::new(gateway.addr(), "victim-2").await;
        let code = thief
            .connect_with(&ConnectOptions {
                clean_session,
                ..ConnectOptions::default()
            })
            .await;
        assert_eq!(
            code,
            ReturnCode::NotSupported,
            "clean_session {clean_session}"
        );
    }
    gateway
        .metric_reaches("takeover_refused", 2, |m| m.takeover_refused)
        .await;

    victim.ping().await;
    publisher
        .publish("victim2/cmd", b"still mine", 1, false)
        .await;
    assert_eq!(victim.recv_publish().await.data, b"still mine");
}
