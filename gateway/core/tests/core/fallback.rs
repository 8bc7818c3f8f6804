//! The fallback broker: while the remote broker is unreachable, the local (embedded) broker
//! serves the motes; the spool still holds every accepted message for the remote broker; when
//! it returns, service switches back.

use bytes::Bytes;
use sn_codec::v12::{
    Connect, Packet, PubAck, PublishTopic, ReturnCode, SubAck, Subscribe, SubscribeTopic,
};
use sn_codec::QoS;
use sn_core::{
    BrokerCommand, BrokerEvent, CoreConfig, DeliveryId, MqttQoS, Peer, SpoolConfig, UplinkPublish,
};

use crate::harness::{peer, Harness};
use crate::uplink::{publish, register};

fn spooling() -> CoreConfig {
    CoreConfig {
        spool: SpoolConfig {
            enabled: true,
            ..SpoolConfig::default()
        },
        ..CoreConfig::default()
    }
}

fn fallback_commands(h: &mut Harness) -> Vec<BrokerCommand> {
    h.fallback_commands()
}

fn fallback(h: &mut Harness, event: BrokerEvent) {
    let now = h.now;
    h.gw.handle_broker(now, sn_core::BrokerRoute::Fallback, event);
}

/// A harness whose remote broker is down and whose fallback link is up.
fn in_fallback() -> Harness {
    let mut h = Harness::with_config(spooling());
    fallback(
        &mut h,
        BrokerEvent::Connected {
            session_present: false,
        },
    );
    assert!(
        fallback_commands(&mut h).is_empty(),
        "nothing while the remote broker is up"
    );
    h.broker(BrokerEvent::Disconnected);
    assert!(h.gw.fallback_active());
    h.drain();
    h
}

fn subscribe_packet(name: &str, msg_id: u16) -> Packet<'_> {
    Packet::Subscribe(Subscribe {
        dup: false,
        qos: QoS::AtLeastOnce,
        msg_id,
        topic: SubscribeTopic::Name(name.as_bytes()),
    })
}

/// A mote subscribed to `name` through the fallback broker; returns the topic id.
fn subscribed_via_fallback(h: &mut Harness, m: Peer, name: &str) -> u16 {
    h.send(m, subscribe_packet(name, 1));
    assert!(h.commands().is_empty(), "the remote broker is down");
    match fallback_commands(h).as_slice() {
        [BrokerCommand::Subscribe { filter, qos }] => {
            assert_eq!(&**filter, name);
            assert_eq!(*qos, MqttQoS::AtLeastOnce);
        }
        other => panic!("expected one SUBSCRIBE on the fallback broker, got {other:?}"),
    }
    fallback(
        h,
        BrokerEvent::SubAck {
            filter: name.into(),
            granted: Some(MqttQoS::AtLeastOnce),
        },
    );
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    match Packet::decode(&sent[0]).unwrap() {
        Packet::SubAck(SubAck {
            return_code: ReturnCode::Accepted,
            topic_id,
            ..
        }) => topic_id,
        other => panic!("expected SUBACK accepted, got {other:?}"),
    }
}

#[test]
fn without_a_fallback_new_motes_are_refused_during_an_outage() {
    let mut h = Harness::with_config(spooling());
    h.broker(BrokerEvent::Disconnected);
    let m = peer(1);
    h.send(
        m,
        Packet::Connect(Connect {
            will: false,
            clean_session: true,
            protocol_id: 1,
            duration: 60,
            client_id: b"late",
        }),
    );
    h.expect(
        m,
        &[Packet::ConnAck {
            return_code: ReturnCode::Congestion,
        }],
    );
}

#[test]
fn a_new_mote_connects_and_subscribes_while_the_fallback_serves() {
    let mut h = in_fallback();
    let m = peer(1);
    h.connect(m, "late", true, 60);
    let topic_id = subscribed_via_fallback(&mut h, m, "room/+/temp");
    // A local app publishes on the embedded broker: the mote gets it, and the acknowledgement
    // goes back to the fallback broker under the id its link gave.
    fallback(
        &mut h,
        BrokerEvent::Message {
            topic: "room/1/temp".into(),
            payload: Bytes::from_static(b"21.5"),
            qos: MqttQoS::AtLeastOnce,
            retain: false,
            delivery: Some(DeliveryId(7)),
        },
    );
    // The mote learns the topic id with a REGISTER first (a wildcard subscription).
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    assert!(matches!(
        Packet::decode(&sent[0]).unwrap(),
        Packet::Register(r) if r.topic_name == b"room/1/temp" && r.topic_id != topic_id
    ));
    assert!(h.commands().is_empty());
    assert_eq!(
        fallback_commands(&mut h),
        vec![BrokerCommand::Ack {
            delivery: DeliveryId(7)
        }]
    );
}

#[test]
fn uplink_is_spooled_and_copied_to_the_fallback_then_replayed_to_the_remote_broker() {
    let mut h = in_fallback();
    let m = peer(1);
    h.connect(m, "m", true, 600);
    let id = register(&mut h, m, 1, "up/m");
    for (msg_id, data) in [(2, &b"a"[..]), (3, b"b")] {
        h.send(
            m,
            publish(QoS::AtLeastOnce, PublishTopic::Normal(id), msg_id, data),
        );
        // Acknowledged from the spool, as in any outage.
        h.expect(
            m,
            &[Packet::PubAck(PubAck {
                topic_id: id,
                msg_id,
                return_code: ReturnCode::Accepted,
            })],
        );
    }
    // QoS 0 goes to the fallback broker too (and is not spooled by default).
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id), 0, b"zero"),
    );
    let copies: Vec<UplinkPublish> = fallback_commands(&mut h)
        .into_iter()
        .map(|c| match c {
            BrokerCommand::Publish(p) => p,
            other => panic!("expected publishes, got {other:?}"),
        })
        .collect();
    assert_eq!(
        copies
            .iter()
            .map(|p| (&*p.topic, &p.payload[..], p.qos, p.id))
            .collect::<Vec<_>>(),
        vec![
            ("up/m", &b"a"[..], MqttQoS::AtLeastOnce, None),
            ("up/m", b"b", MqttQoS::AtLeastOnce, None),
            ("up/m", b"zero", MqttQoS::AtMostOnce, None),
        ]
    );
    assert_eq!(h.gw.metrics().fallback_published, 3);
    assert!(h.commands().is_empty());

    // The remote broker returns: the spool goes there, in order.
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let replayed: Vec<(String, Vec<u8>)> = h
        .commands()
        .into_iter()
        .filter_map(|c| match c {
            BrokerCommand::Publish(p) => Some((p.topic.to_string(), p.payload.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(
        replayed,
        vec![
            ("up/m".to_string(), b"a".to_vec()),
            ("up/m".to_string(), b"b".to_vec())
        ]
    );
    // From now on, the remote broker only.
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 4, b"c"),
    );
    assert_eq!(&h.one_publish().payload[..], b"c");
    assert!(fallback_commands(&mut h).is_empty());
}

#[test]
fn subscriptions_move_to_the_fallback_and_back() {
    let mut h = Harness::with_config(spooling());
    fallback(
        &mut h,
        BrokerEvent::Connected {
            session_present: false,
        },
    );
    let m = peer(1);
    h.connect(m, "m", true, 600);
    h.send(m, subscribe_packet("cmd/m", 1));
    assert!(matches!(
        h.commands().as_slice(),
        [BrokerCommand::Subscribe { .. }]
    ));
    h.broker(BrokerEvent::SubAck {
        filter: "cmd/m".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    h.drain();
    assert!(fallback_commands(&mut h).is_empty());

    h.broker(BrokerEvent::Disconnected);
    assert_eq!(h.gw.metrics().fallback_switches, 1);
    assert_eq!(
        fallback_commands(&mut h),
        vec![BrokerCommand::Subscribe {
            filter: "cmd/m".into(),
            qos: MqttQoS::AtLeastOnce
        }]
    );
    // The mote is not disconnected by the outage.
    h.transmits();
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);

    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    assert_eq!(
        fallback_commands(&mut h),
        vec![BrokerCommand::Unsubscribe {
            filter: "cmd/m".into()
        }]
    );
    assert!(h
        .commands()
        .iter()
        .any(|c| matches!(c, BrokerCommand::Subscribe { filter, .. } if &**filter == "cmd/m")));
    // A late SUBACK from the fallback after switching back is ignored.
    h.transmits();
    fallback(
        &mut h,
        BrokerEvent::SubAck {
            filter: "cmd/m".into(),
            granted: None,
        },
    );
    h.expect_silence();
}

#[test]
fn a_fallback_that_comes_up_during_an_outage_takes_over() {
    let mut h = Harness::with_config(spooling());
    h.broker(BrokerEvent::Disconnected);
    assert!(!h.gw.fallback_active());
    fallback(
        &mut h,
        BrokerEvent::Connected {
            session_present: false,
        },
    );
    assert!(h.gw.fallback_active());
    // Discovery resumes: motes learn the gateway serves.
    let advertised = h.transmits();
    assert!(
        advertised
            .iter()
            .any(|t| matches!(Packet::decode(&t.datagram), Ok(Packet::Advertise(_)))),
        "{advertised:?}"
    );
    fallback(&mut h, BrokerEvent::Disconnected);
    assert!(!h.gw.fallback_active());
}
