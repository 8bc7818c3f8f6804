//! Forwarder encapsulation (reference §3): sessions keyed by (forwarder address, node id),
//! every reply and every gateway-initiated message wrapped with the same node id and sent to
//! the forwarder.

use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Forwarded, Frame, Packet, PubAck, Publish, PublishTopic, RegAck, Register,
    ReturnCode, SubAck, Subscribe, SubscribeTopic,
};
use sn_codec::QoS;
use sn_core::{BrokerCommand, BrokerEvent, CoreConfig, MqttQoS, Peer};

use crate::harness::{peer, Harness};

const NODE_A: &[u8] = &[0x0A, 0x0B];
const NODE_B: &[u8] = &[0x0C];
const CONNACK_OK: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::Accepted,
};
const DISCONNECT: Packet<'static> = Packet::Disconnect(Disconnect { duration: None });

fn connect_packet(client_id: &str, clean_session: bool, duration: u16) -> Packet<'_> {
    Packet::Connect(Connect {
        will: false,
        clean_session,
        protocol_id: 1,
        duration,
        client_id: client_id.as_bytes(),
    })
}

fn connect_node(h: &mut Harness, fwd: Peer, node: &[u8], id: &str, keep_alive: u16) {
    h.send_forwarded(fwd, node, connect_packet(id, true, keep_alive));
    h.expect_forwarded(fwd, node, &[CONNACK_OK]);
    h.events();
}

fn register_node(h: &mut Harness, fwd: Peer, node: &[u8], msg_id: u16, name: &str) -> u16 {
    h.send_forwarded(
        fwd,
        node,
        Packet::Register(Register {
            topic_id: 0,
            msg_id,
            topic_name: name.as_bytes(),
        }),
    );
    let sent = h.sent_to(fwd);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    let Frame::Forwarded(Forwarded {
        node_id,
        packet: Packet::RegAck(regack),
        ..
    }) = Frame::decode(&sent[0]).unwrap()
    else {
        panic!("expected an encapsulated REGACK, got {:02X?}", sent[0])
    };
    assert_eq!(node_id, node);
    assert_eq!(
        (regack.msg_id, regack.return_code),
        (msg_id, ReturnCode::Accepted)
    );
    regack.topic_id
}

fn publish(
    qos: QoS,
    topic: PublishTopic<'static>,
    msg_id: u16,
    data: &'static [u8],
) -> Packet<'static> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        msg_id,
        data,
    })
}

#[test]
fn encapsulated_connect_gets_an_encapsulated_connack_at_the_forwarder() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    // The example of §3, inner CONNECT from vector V06.
    h.raw(
        fwd,
        &[
            0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x09, 0x04, 0x04, 0x01, 0x00, 0x3C, 0x61, 0x62, 0x63,
        ],
    );
    let sent = h.transmits();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].destination, sn_core::Destination::Unicast(fwd.addr));
    assert_eq!(sent[0].link, fwd.link);
    assert_eq!(
        &sent[0].datagram[..],
        &[0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x03, 0x05, 0x00]
    );
    assert_eq!(h.gw.session_count(), 1);
    // And the node's PINGREQ (the example of §3) is answered the same way.
    h.raw(fwd, &[0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x02, 0x16]);
    assert_eq!(
        h.sent_to(fwd),
        vec![vec![0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x02, 0x17]]
    );
}

#[test]
fn two_nodes_behind_one_forwarder_are_two_sessions_with_their_own_topic_ids() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    connect_node(&mut h, fwd, NODE_B, "node-b", 60);
    assert_eq!(h.gw.session_count(), 2);
    let id_a = register_node(&mut h, fwd, NODE_A, 1, "only/a");
    // b has registered nothing: a's id means nothing in b's session.
    h.send_forwarded(
        fwd,
        NODE_B,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id_a), 5, b"b?"),
    );
    h.expect_forwarded(
        fwd,
        NODE_B,
        &[Packet::PubAck(PubAck {
            topic_id: id_a,
            msg_id: 5,
            return_code: ReturnCode::InvalidTopicId,
        })],
    );
    assert!(h.commands().is_empty());
    let id_b = register_node(&mut h, fwd, NODE_B, 1, "only/b");
    h.send_forwarded(
        fwd,
        NODE_A,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id_a), 0, b"from a"),
    );
    h.send_forwarded(
        fwd,
        NODE_B,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id_b), 0, b"from b"),
    );
    h.expect_silence();
    let published: Vec<(String, Vec<u8>)> = h
        .publishes()
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec()))
        .collect();
    assert_eq!(
        published,
        vec![
            ("only/a".to_string(), b"from a".to_vec()),
            ("only/b".to_string(), b"from b".to_vec())
        ]
    );
    // One node's DISCONNECT ends only its own session.
    h.send_forwarded(fwd, NODE_A, DISCONNECT);
    h.expect_forwarded(fwd, NODE_A, &[DISCONNECT]);
    h.send_forwarded(fwd, NODE_B, Packet::PingReq { client_id: b"" });
    h.expect_forwarded(fwd, NODE_B, &[Packet::PingResp]);
    h.send_forwarded(fwd, NODE_A, Packet::PingReq { client_id: b"" });
    h.expect_forwarded(fwd, NODE_A, &[DISCONNECT]);
}

#[test]
fn gateway_initiated_register_and_publish_are_encapsulated() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 3,
            topic: SubscribeTopic::Name(b"cmd/#"),
        }),
    );
    h.expect_silence();
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Subscribe {
            filter: "cmd/#".into(),
            qos: MqttQoS::AtLeastOnce
        }]
    );
    h.broker(BrokerEvent::SubAck {
        filter: "cmd/#".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    h.expect_forwarded(
        fwd,
        NODE_A,
        &[Packet::SubAck(SubAck {
            qos: QoS::AtLeastOnce,
            topic_id: 0,
            msg_id: 3,
            return_code: ReturnCode::Accepted,
        })],
    );
    h.message("cmd/led", b"on", MqttQoS::AtLeastOnce, false);
    let sent = h.sent_to(fwd);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    let Frame::Forwarded(Forwarded {
        radius: 0,
        node_id,
        packet: Packet::Register(reg),
    }) = Frame::decode(&sent[0]).unwrap()
    else {
        panic!("expected an encapsulated REGISTER, got {:02X?}", sent[0])
    };
    assert_eq!(node_id, NODE_A);
    assert_eq!(reg.topic_name, b"cmd/led");
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::RegAck(RegAck {
            topic_id: reg.topic_id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    let sent = h.sent_to(fwd);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    let Frame::Forwarded(Forwarded {
        radius: 0,
        node_id,
        packet: Packet::Publish(p),
    }) = Frame::decode(&sent[0]).unwrap()
    else {
        panic!("expected an encapsulated PUBLISH, got {:02X?}", sent[0])
    };
    assert_eq!(node_id, NODE_A);
    assert_eq!(
        (p.qos, p.topic, p.data),
        (
            QoS::AtLeastOnce,
            PublishTopic::Normal(reg.topic_id),
            &b"on"[..]
        )
    );
    // A retransmission goes the same way, DUP set.
    h.advance(Duration::from_secs(10));
    let sent = h.sent_to(fwd);
    let Frame::Forwarded(Forwarded {
        node_id,
        packet: Packet::Publish(again),
        ..
    }) = Frame::decode(&sent[0]).unwrap()
    else {
        panic!("{sent:02X?}")
    };
    assert_eq!(node_id, NODE_A);
    assert!(again.dup);
    assert_eq!(again.msg_id, p.msg_id);
}

#[test]
fn a_node_and_a_direct_client_at_the_forwarder_address_are_distinct() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    h.connect(fwd, "direct", true, 60);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    assert_eq!(h.gw.session_count(), 2);
    // Same topic name, separate tables: both get an id, each in its own session.
    let direct_id = crate::uplink::register(&mut h, fwd, 1, "x/direct");
    let node_id = register_node(&mut h, fwd, NODE_A, 1, "x/node");
    h.send(
        fwd,
        publish(QoS::AtMostOnce, PublishTopic::Normal(direct_id), 0, b"d"),
    );
    h.send_forwarded(
        fwd,
        NODE_A,
        publish(QoS::AtMostOnce, PublishTopic::Normal(node_id), 0, b"n"),
    );
    let topics: Vec<String> = h.publishes().iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, vec!["x/direct".to_string(), "x/node".to_string()]);
    // Plain PINGREQ → plain PINGRESP; encapsulated → encapsulated.
    h.send(fwd, Packet::PingReq { client_id: b"" });
    h.expect(fwd, &[Packet::PingResp]);
    h.send_forwarded(fwd, NODE_A, Packet::PingReq { client_id: b"" });
    h.expect_forwarded(fwd, NODE_A, &[Packet::PingResp]);
    // The direct client leaving does not touch the node.
    h.send(fwd, DISCONNECT);
    h.expect(fwd, &[DISCONNECT]);
    h.send_forwarded(fwd, NODE_A, Packet::PingReq { client_id: b"" });
    h.expect_forwarded(fwd, NODE_A, &[Packet::PingResp]);
    assert_eq!(h.gw.session_count(), 1);
}

#[test]
fn the_same_node_id_behind_two_forwarders_is_two_sessions() {
    let mut h = Harness::new();
    let (f1, f2) = (peer(4000), peer(4001));
    connect_node(&mut h, f1, NODE_A, "one", 60);
    connect_node(&mut h, f2, NODE_A, "two", 60);
    assert_eq!(h.gw.session_count(), 2);
    h.send_forwarded(f1, NODE_A, DISCONNECT);
    h.expect_forwarded(f1, NODE_A, &[DISCONNECT]);
    h.send_forwarded(f2, NODE_A, Packet::PingReq { client_id: b"" });
    h.expect_forwarded(f2, NODE_A, &[Packet::PingResp]);
}

#[test]
fn an_unknown_node_gets_an_encapsulated_disconnect() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    h.send_forwarded(
        fwd,
        NODE_B,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(1), 1, b"x"),
    );
    h.expect_forwarded(fwd, NODE_B, &[DISCONNECT]);
    assert!(h.commands().is_empty());
}

#[test]
fn keep_alive_loss_of_a_node_is_reported_through_its_forwarder() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 10);
    h.advance(Duration::from_millis(15_100));
    h.expect_forwarded(fwd, NODE_A, &[DISCONNECT]);
    assert_eq!(h.gw.metrics().sessions_lost, 1);
}

#[test]
fn a_node_sleeps_and_wakes_through_its_forwarder() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtMostOnce,
            msg_id: 1,
            topic: SubscribeTopic::Short(*b"zz"),
        }),
    );
    h.commands();
    h.broker(BrokerEvent::SubAck {
        filter: "zz".into(),
        granted: Some(MqttQoS::AtMostOnce),
    });
    h.sent_to(fwd);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::Disconnect(Disconnect {
            duration: Some(300),
        }),
    );
    assert_eq!(
        h.sent_to(fwd),
        vec![vec![0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x02, 0x18]]
    );
    h.message("zz", b"q", MqttQoS::AtMostOnce, false);
    h.expect_silence();
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::PingReq {
            client_id: b"node-a",
        },
    );
    h.expect_forwarded(
        fwd,
        NODE_A,
        &[
            publish(QoS::AtMostOnce, PublishTopic::Short(*b"zz"), 0, b"q"),
            Packet::PingResp,
        ],
    );
}

#[test]
fn a_publish_that_fits_bare_but_not_encapsulated_is_dropped_and_counted() {
    // 7-byte PUBLISH header + 20 bytes of data = 27; the 5-byte encapsulation makes it 32.
    let mut h = Harness::with_config(CoreConfig {
        max_packet_size: 30,
        ..CoreConfig::default()
    });
    let fwd = peer(4000);
    connect_node(&mut h, fwd, NODE_A, "node-a", 60);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 1,
            topic: SubscribeTopic::Short(*b"zz"),
        }),
    );
    h.commands();
    h.broker(BrokerEvent::SubAck {
        filter: "zz".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    h.sent_to(fwd);
    h.message("zz", &[0x41; 20], MqttQoS::AtLeastOnce, false);
    h.message("zz", b"ok", MqttQoS::AtLeastOnce, false);
    let sent = h.sent_to(fwd);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    assert!(sent[0].len() <= 30);
    let Frame::Forwarded(Forwarded {
        packet: Packet::Publish(p),
        ..
    }) = Frame::decode(&sent[0]).unwrap()
    else {
        panic!("{sent:02X?}")
    };
    assert_eq!(p.data, b"ok");
    assert_eq!(h.gw.metrics().dropped_too_big_for_client, 1);
}

#[test]
fn the_will_handshake_runs_through_the_forwarder() {
    let mut h = Harness::new();
    let fwd = peer(4000);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::Connect(Connect {
            will: true,
            clean_session: true,
            protocol_id: 1,
            duration: 10,
            client_id: b"node-a",
        }),
    );
    h.expect_forwarded(fwd, NODE_A, &[Packet::WillTopicReq]);
    h.send_forwarded(
        fwd,
        NODE_A,
        Packet::WillTopic(Some(sn_codec::v12::WillTopic {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: b"will/a",
        })),
    );
    h.expect_forwarded(fwd, NODE_A, &[Packet::WillMsgReq]);
    h.send_forwarded(fwd, NODE_A, Packet::WillMsg { msg: b"bye" });
    h.expect_forwarded(fwd, NODE_A, &[CONNACK_OK]);
    // Lost: DISCONNECT through the forwarder, and the Will upstream.
    h.advance(Duration::from_millis(15_100));
    h.expect_forwarded(fwd, NODE_A, &[DISCONNECT]);
    let will = h.one_publish();
    assert_eq!((&*will.topic, &will.payload[..]), ("will/a", &b"bye"[..]));
}
