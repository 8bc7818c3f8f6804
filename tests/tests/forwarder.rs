//! Forwarder encapsulation (v1.2 §5.5) over real UDP: one forwarder socket relays two wireless
//! nodes; each gets its own session, and every reply comes back wrapped with its node id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use sn_codec::MsgType;
use sn_tests::{Forwarder, Gateway, Mosquitto, Mote, MqttClient, QoS, ReturnCode, SubTopic, Topic};

const NODE_A: &[u8] = &[0x0A, 0x0B];
const NODE_B: &[u8] = &[0x0C];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_one_forwarder_have_separate_sessions() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut sub = MqttClient::connect(broker.port(), "forwarder-sub").await;
    sub.subscribe("fwd/+/up", 2).await;
    let mut publisher = MqttClient::connect(broker.port(), "forwarder-publisher").await;

    let forwarder = Forwarder::start(gateway.addr(), &[NODE_A, NODE_B]).await;
    let mut a = Mote::new(forwarder.radio_addr(NODE_A), "node-a").await;
    let mut b = Mote::new(forwarder.radio_addr(NODE_B), "node-b").await;

    // Both connect through the same forwarder address.
    a.connect().await;
    b.connect().await;

    // REGISTER: per-session topic tables.
    let id_a = a.register("fwd/a/up").await;
    let id_b = b.register("fwd/b/up").await;

    assert_eq!(
        a.publish(Topic::Normal(id_a), QoS::AtLeastOnce, false, b"from a")
            .await,
        ReturnCode::Accepted
    );
    assert_eq!(
        b.publish(Topic::Normal(id_b), QoS::ExactlyOnce, false, b"from b")
            .await,
        ReturnCode::Accepted
    );
    let first = sub.recv().await;
    let second = sub.recv().await;
    let mut got = [
        (first.topic, first.payload, first.qos),
        (second.topic, second.payload, second.qos),
    ];
    got.sort();
    assert_eq!(
        got,
        [
            ("fwd/a/up".to_string(), b"from a".to_vec(), 1),
            ("fwd/b/up".to_string(), b"from b".to_vec(), 2),
        ]
    );

    // Downlink to each node, wrapped with its node id.
    a.subscribe(SubTopic::name("fwd/a/down"), QoS::AtLeastOnce)
        .await;
    b.subscribe(SubTopic::name("fwd/b/down"), QoS::AtLeastOnce)
        .await;
    publisher.publish("fwd/b/down", b"for b", 1, false).await;
    publisher.publish("fwd/a/down", b"for a", 1, false).await;
    let got_a = a.recv_publish().await;
    assert_eq!(got_a.data, b"for a");
    assert_eq!(got_a.topic_name.as_deref(), Some("fwd/a/down"));
    let got_b = b.recv_publish().await;
    assert_eq!(got_b.data, b"for b");
    assert_eq!(got_b.topic_name.as_deref(), Some("fwd/b/down"));
    a.ping().await;
    b.ping().await;
    // Each received exactly its own.
    assert!(a
        .try_recv_publish(Duration::from_millis(100))
        .await
        .is_none());
    assert!(b
        .try_recv_publish(Duration::from_millis(100))
        .await
        .is_none());

    let log = forwarder.log();
    assert_eq!(log.unknown_node, 0, "frames for unknown node ids: {log:?}");
    let plain: Vec<_> = log
        .from_gateway
        .iter()
        .filter(|(n, _)| n.is_none())
        .collect();
    assert!(
        plain.is_empty(),
        "unwrapped datagrams to the forwarder: {plain:?}"
    );
    let types_for = |node: &[u8]| -> Vec<u8> {
        log.from_gateway
            .iter()
            .filter(|(n, _)| n.as_deref() == Some(node))
            .map(|(_, t)| *t)
            .collect()
    };
    let (types_a, types_b) = (types_for(NODE_A), types_for(NODE_B));
    for (node, types, expected) in [
        (
            "a",
            &types_a,
            &[
                MsgType::ConnAck,
                MsgType::RegAck,
                MsgType::PubAck,
                MsgType::SubAck,
                MsgType::Publish,
                MsgType::PingResp,
            ][..],
        ),
        (
            "b",
            &types_b,
            &[
                MsgType::ConnAck,
                MsgType::RegAck,
                MsgType::PubRec,
                MsgType::PubComp,
                MsgType::SubAck,
                MsgType::Publish,
                MsgType::PingResp,
            ][..],
        ),
    ] {
        for t in expected {
            assert!(
                types.contains(&t.to_u8()),
                "node {node} got no {t:?} wrapped with its node id: {types:02x?}"
            );
        }
    }
    // Node A's QoS 2 flow never happened, node B's QoS 1 PUBACK never happened.
    assert!(
        !types_a.contains(&MsgType::PubRec.to_u8()),
        "{types_a:02x?}"
    );
    assert!(
        !types_b.contains(&MsgType::PubAck.to_u8()),
        "{types_b:02x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_from_a_forwarded_node_to_a_direct_address() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start_roaming(broker.port()).await;
    let forwarder = Forwarder::start(gateway.addr(), &[NODE_A]).await;
    let mut a = Mote::new(forwarder.radio_addr(NODE_A), "node-a").await;
    a.connect().await;

    // The same client id directly (not through the forwarder) is a different address: the
    // session moves there, and node A's address is no longer bound to it.
    let mut direct = Mote::new(gateway.addr(), "node-a").await;
    direct.connect().await;
    direct.ping().await;
    a.send(sn_tests::Packet::PingReq { client_id: &[] }).await;
    a.expect("DISCONNECT for node A after its session moved", |p| {
        matches!(p, sn_tests::Packet::Disconnect(_)).then_some(())
    })
    .await;
}
