//! Client → broker: REGISTER, PUBLISH at QoS -1/0/1/2, acknowledgements after the broker,
//! duplicates, one exchange at a time, and replay after a broker reconnect.

use sn_codec::v12::{Packet, PubAck, Publish, PublishTopic, Register, ReturnCode};
use sn_codec::QoS;
use sn_core::{BrokerCommand, BrokerEvent, CoreConfig, Event, MqttQoS, Peer};

use crate::harness::{peer, Harness};

/// REGISTERs `name` and returns the id the gateway assigned.
pub fn register(h: &mut Harness, m: Peer, msg_id: u16, name: &str) -> u16 {
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id,
            topic_name: name.as_bytes(),
        }),
    );
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 1);
    match Packet::decode(&sent[0]).unwrap() {
        Packet::RegAck(r) => {
            assert_eq!(r.msg_id, msg_id);
            assert_eq!(r.return_code, ReturnCode::Accepted);
            assert_ne!(r.topic_id, 0);
            assert_ne!(r.topic_id, 0xFFFF);
            r.topic_id
        }
        other => panic!("expected REGACK, got {other:?}"),
    }
}

pub fn publish<'a>(qos: QoS, topic: PublishTopic<'a>, msg_id: u16, data: &'a [u8]) -> Packet<'a> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        msg_id,
        data,
    })
}

fn puback(topic_id: u16, msg_id: u16, return_code: ReturnCode) -> Packet<'static> {
    Packet::PubAck(PubAck {
        topic_id,
        msg_id,
        return_code,
    })
}

#[test]
fn register_assigns_one_id_per_name() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    let a = register(&mut h, m, 1, "a/b");
    let b = register(&mut h, m, 2, "a/c");
    assert_ne!(a, b);
    assert_eq!(register(&mut h, m, 3, "a/b"), a);
    // Wildcards cannot be registered.
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 4,
            topic_name: b"a/+",
        }),
    );
    h.expect(
        m,
        &[Packet::RegAck(sn_codec::v12::RegAck {
            topic_id: 0,
            msg_id: 4,
            return_code: ReturnCode::NotSupported,
        })],
    );
}

#[test]
fn topic_table_limit_comes_from_config() {
    let mut h = Harness::with_config(CoreConfig {
        max_topics_per_session: 2,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    register(&mut h, m, 1, "t/1");
    register(&mut h, m, 2, "t/2");
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 3,
            topic_name: b"t/3",
        }),
    );
    h.expect(
        m,
        &[Packet::RegAck(sn_codec::v12::RegAck {
            topic_id: 0,
            msg_id: 3,
            return_code: ReturnCode::NotSupported,
        })],
    );
}

#[test]
fn qos0_publish_goes_to_the_broker() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    let id = register(&mut h, m, 1, "sensors/t");
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id), 0, b"21.5"),
    );
    h.expect_silence();
    let p = h.one_publish();
    assert_eq!(
        (&*p.topic, &p.payload[..], p.qos, p.id),
        ("sensors/t", &b"21.5"[..], MqttQoS::AtMostOnce, None)
    );
}

#[test]
fn unknown_topic_id_gets_puback_invalid_topic_id() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(77), 5, b"x"),
    );
    h.expect(m, &[puback(77, 5, ReturnCode::InvalidTopicId)]);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Predefined(9), 6, b"x"),
    );
    h.expect(m, &[puback(9, 6, ReturnCode::InvalidTopicId)]);
    assert!(h.commands().is_empty());
}

#[test]
fn qos1_is_acknowledged_only_after_the_broker() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    let id = register(&mut h, m, 1, "a");
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 10, b"x"),
    );
    h.expect_silence();
    let p = h.one_publish();
    assert_eq!(p.qos, MqttQoS::AtLeastOnce);
    // The client retransmits: not forwarded again, not acknowledged yet.
    h.send(
        m,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(id),
            msg_id: 10,
            data: b"x",
        }),
    );
    h.expect_silence();
    assert!(h.commands().is_empty());
    // A second exchange while one is open: congestion (one at a time, §6.6).
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 11, b"y"),
    );
    h.expect(m, &[puback(id, 11, ReturnCode::Congestion)]);
    // The broker takes 30 ms: the acknowledgement latency histogram says so.
    h.advance(std::time::Duration::from_millis(30));
    h.ack(p.id.unwrap());
    h.expect(m, &[puback(id, 10, ReturnCode::Accepted)]);
    let latency = &h.gw.metrics().publish_ack_latency;
    assert_eq!((latency.count(), latency.sum_us()), (1, 30_000));
    assert_eq!(
        latency.cumulative().find(|(bound, _)| *bound == 25_000),
        Some((25_000, 0))
    );
    assert_eq!(
        latency.cumulative().find(|(bound, _)| *bound == 50_000),
        Some((50_000, 1))
    );
    // A late duplicate after the ack is acknowledged again, not forwarded.
    h.send(
        m,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(id),
            msg_id: 10,
            data: b"x",
        }),
    );
    h.expect(m, &[puback(id, 10, ReturnCode::Accepted)]);
    assert!(h.commands().is_empty());
}

#[test]
fn qos2_is_forwarded_exactly_once() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    let id = register(&mut h, m, 1, "a");
    h.send(
        m,
        publish(QoS::ExactlyOnce, PublishTopic::Normal(id), 20, b"x"),
    );
    let p = h.one_publish();
    assert_eq!(p.qos, MqttQoS::ExactlyOnce);
    h.ack(p.id.unwrap());
    h.expect(m, &[Packet::PubRec { msg_id: 20 }]);
    // PUBREC lost: the client resends the PUBLISH; PUBREC again, nothing forwarded.
    let dup = Packet::Publish(Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: PublishTopic::Normal(id),
        msg_id: 20,
        data: b"x",
    });
    h.send(m, dup);
    h.expect(m, &[Packet::PubRec { msg_id: 20 }]);
    h.send(m, Packet::PubRel { msg_id: 20 });
    h.expect(m, &[Packet::PubComp { msg_id: 20 }]);
    // PUBREL repeated (PUBCOMP lost): PUBCOMP again.
    h.send(m, Packet::PubRel { msg_id: 20 });
    h.expect(m, &[Packet::PubComp { msg_id: 20 }]);
    h.send(m, dup);
    h.expect(m, &[Packet::PubRec { msg_id: 20 }]);
    assert!(h.commands().is_empty(), "forwarded once only");
}

#[test]
fn qos_minus_one_from_a_peer_that_never_connected() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(5, "pre/five".into())],
        ..CoreConfig::default()
    });
    let stranger = peer(3000);
    h.send(
        stranger,
        publish(QoS::MinusOne, PublishTopic::Predefined(5), 0, b"p"),
    );
    h.send(
        stranger,
        publish(QoS::MinusOne, PublishTopic::Short(*b"ab"), 0, b"s"),
    );
    h.send(
        stranger,
        publish(QoS::MinusOne, PublishTopic::LongName(b"long/name"), 0, b"l"),
    );
    // Unknown predefined id: never acknowledged, dropped and counted.
    h.send(
        stranger,
        publish(QoS::MinusOne, PublishTopic::Predefined(6), 0, b"?"),
    );
    h.expect_silence();
    let got: Vec<(String, Vec<u8>, MqttQoS)> = h
        .publishes()
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec(), p.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pre/five".into(), b"p".to_vec(), MqttQoS::AtMostOnce),
            ("ab".into(), b"s".to_vec(), MqttQoS::AtMostOnce),
            ("long/name".into(), b"l".to_vec(), MqttQoS::AtMostOnce),
        ]
    );
    assert_eq!(h.gw.metrics().publish_rejected, 1);
}

#[test]
fn qos_minus_one_can_be_turned_off() {
    let mut h = Harness::with_config(CoreConfig {
        qos_minus_one: false,
        ..CoreConfig::default()
    });
    h.send(
        peer(3000),
        publish(QoS::MinusOne, PublishTopic::Short(*b"ab"), 0, b"s"),
    );
    h.expect_silence();
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.metrics().publish_minus_one_disabled, 1);
}

#[test]
fn predefined_and_short_topics_at_qos1() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(0x10, "alerts".into())],
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Predefined(0x10), 1, b"fire"),
    );
    let p = h.one_publish();
    assert_eq!(&*p.topic, "alerts");
    h.ack(p.id.unwrap());
    h.expect(m, &[puback(0x10, 1, ReturnCode::Accepted)]);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Short(*b"xy"), 2, b"v"),
    );
    let p = h.one_publish();
    assert_eq!(&*p.topic, "xy");
    h.ack(p.id.unwrap());
    h.expect(
        m,
        &[puback(u16::from_be_bytes(*b"xy"), 2, ReturnCode::Accepted)],
    );
}

#[test]
fn unacknowledged_publishes_are_replayed_in_order_after_reconnect() {
    // Without a spool the motes wait for the broker itself (spool.rs covers the spool).
    let mut h = Harness::with_config(CoreConfig {
        spool: sn_core::SpoolConfig {
            enabled: false,
            ..Default::default()
        },
        ..CoreConfig::default()
    });
    let motes: Vec<Peer> = (0..3).map(|i| peer(1000 + i)).collect();
    let mut ids = Vec::new();
    for (i, &m) in motes.iter().enumerate() {
        h.connect(m, &format!("m{i}"), true, 600);
        let topic = register(&mut h, m, 1, &format!("t/{i}"));
        h.send(
            m,
            publish(QoS::AtLeastOnce, PublishTopic::Normal(topic), 9, b"x"),
        );
        ids.push((m, topic, h.one_publish().id.unwrap()));
    }
    // The first is acknowledged; the link then drops (losing whatever it had queued).
    h.ack(ids[0].2);
    h.expect(motes[0], &[puback(ids[0].1, 9, ReturnCode::Accepted)]);
    h.broker(BrokerEvent::Disconnected);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let replayed: Vec<_> = h
        .commands()
        .into_iter()
        .filter_map(|c| match c {
            BrokerCommand::Publish(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(
        replayed.iter().map(|p| p.id.unwrap()).collect::<Vec<_>>(),
        vec![ids[1].2, ids[2].2]
    );
    assert!(replayed.iter().all(|p| p.replay));
    assert_eq!(h.gw.pending_uplink(), 2);
    h.transmits(); // the ADVERTISE sent on reconnect
                   // Acknowledged on the new connection: the motes get their PUBACKs.
    h.ack(ids[2].2);
    h.ack(ids[1].2);
    let sent: Vec<_> = h.transmits();
    assert_eq!(sent.len(), 2);
    assert_eq!(h.gw.pending_uplink(), 0);
}

#[test]
fn broker_acks_for_a_previous_connection_of_the_mote_are_not_sent_to_it() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    let topic = register(&mut h, m, 1, "a");
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(topic), 9, b"x"),
    );
    let p = h.one_publish();
    // The mote gives up and reconnects clean; the old exchange is gone.
    h.connect(m, "m1", true, 600);
    h.ack(p.id.unwrap());
    h.expect_silence();
}

/// The broker link takes nothing (the runtime leaves commands in the core while the link is
/// full): QoS 0 messages beyond `max_pending_qos0` are dropped, counted and reported once;
/// QoS 1 messages and the ones already waiting are not; once the link has taken the backlog,
/// QoS 0 flows again.
#[test]
fn qos0_beyond_max_pending_qos0_is_dropped_and_counted_while_the_broker_link_is_full() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(1, "p".into())],
        max_pending_qos0: 3,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    for i in 0..5u8 {
        h.send(
            m,
            publish(QoS::AtMostOnce, PublishTopic::Predefined(1), 0, &[i]),
        );
    }
    // A QoS 1 message is never dropped at this limit.
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Predefined(1), 7, b"q1"),
    );
    assert_eq!(h.gw.broker_commands_waiting(), 4);
    assert_eq!(h.gw.metrics().publish_dropped_backlog, 2);
    assert_eq!(h.gw.metrics().publish_forwarded, 4);
    let reported: Vec<Event> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::BrokerBacklogFull { .. }))
        .collect();
    assert_eq!(reported, vec![Event::BrokerBacklogFull { limit: 3 }]);
    let got: Vec<(Vec<u8>, MqttQoS)> = h
        .publishes()
        .into_iter()
        .map(|p| (p.payload.to_vec(), p.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![0], MqttQoS::AtMostOnce),
            (vec![1], MqttQoS::AtMostOnce),
            (vec![2], MqttQoS::AtMostOnce),
            (b"q1".to_vec(), MqttQoS::AtLeastOnce),
        ]
    );
    // The link took them all: room again, and a new episode would be reported anew.
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Predefined(1), 0, b"again"),
    );
    assert_eq!(h.publishes().len(), 1);
    assert_eq!(h.gw.metrics().publish_dropped_backlog, 2);
    for _ in 0..4 {
        h.send(
            m,
            publish(QoS::AtMostOnce, PublishTopic::Predefined(1), 0, b"x"),
        );
    }
    assert_eq!(h.gw.metrics().publish_dropped_backlog, 3);
    assert_eq!(
        h.events()
            .into_iter()
            .filter(|e| matches!(e, Event::BrokerBacklogFull { .. }))
            .count(),
        1
    );
}

/// Commands still waiting in the core when the broker connection is lost (the link had no
/// room for them) are for that connection: after the reconnect only the replay goes out, not
/// the stale copy as well.
#[test]
fn commands_waiting_at_a_disconnect_are_not_sent_after_the_reconnect_besides_the_replay() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(1, "p".into())],
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Predefined(1), 9, b"q1"),
    );
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Predefined(1), 0, b"q0"),
    );
    assert_eq!(h.gw.broker_commands_waiting(), 2);
    h.broker(BrokerEvent::Disconnected);
    assert_eq!(h.gw.broker_commands_waiting(), 0);
    // The QoS 0 message went with the connection, counted.
    assert_eq!(h.gw.metrics().publish_broker_down, 1);
    assert_eq!(h.gw.metrics().qos0_dropped_broker_down, 1);
    h.broker(BrokerEvent::Connected {
        session_present: true,
    });
    let got: Vec<(Vec<u8>, bool)> = h
        .publishes()
        .into_iter()
        .map(|p| (p.payload.to_vec(), p.replay))
        .collect();
    assert_eq!(got, vec![(b"q1".to_vec(), true)]);
}
