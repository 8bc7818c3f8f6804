//! Transparent mode: each mote has its own broker connection. CONNACK waits for the broker's
//! answer (a refusal maps to a return code), publishes and subscriptions go on the mote's
//! connection, broker messages are acknowledged only when the mote has them (or they are
//! stored), and Wills are left to the broker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, ReturnCode, SubAck, Subscribe,
    SubscribeTopic, WillTopic,
};
use sn_codec::QoS;
use sn_core::{
    BrokerCommand, BrokerEvent, BrokerMode, CoreConfig, DeliveryId, MoteWill, MqttQoS, Peer,
    Refusal, UplinkPublish,
};

use crate::harness::{peer, Harness};
use crate::uplink::{publish, register};

fn transparent() -> Harness {
    Harness::with_config(CoreConfig {
        mode: BrokerMode::Transparent,
        ..CoreConfig::default()
    })
}

fn mote_commands(h: &mut Harness) -> Vec<(Arc<str>, BrokerCommand)> {
    h.mote_commands()
}

fn mote_event(h: &mut Harness, client_id: &str, event: BrokerEvent) {
    let now = h.now;
    h.gw.handle_broker(now, sn_core::BrokerRoute::Mote(Arc::from(client_id)), event);
}

fn connected(h: &mut Harness, client_id: &str, session_present: bool) {
    mote_event(h, client_id, BrokerEvent::Connected { session_present });
}

fn connect_packet(client_id: &str, will: bool, duration: u16) -> Packet<'_> {
    Packet::Connect(Connect {
        will,
        clean_session: true,
        protocol_id: 1,
        duration,
        client_id: client_id.as_bytes(),
    })
}

const ACCEPTED: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::Accepted,
};

/// A mote connected through its own, open broker connection.
fn connected_mote(h: &mut Harness, m: Peer, client_id: &str) {
    h.send(m, connect_packet(client_id, false, 60));
    h.expect_silence();
    assert!(matches!(
        mote_commands(h).as_slice(),
        [(id, BrokerCommand::Connect { .. })] if &**id == client_id
    ));
    connected(h, client_id, false);
    h.expect(m, &[ACCEPTED]);
    h.events();
}

fn puback(topic_id: u16, msg_id: u16, return_code: ReturnCode) -> Packet<'static> {
    Packet::PubAck(PubAck {
        topic_id,
        msg_id,
        return_code,
    })
}

fn subscribe(name: &str, msg_id: u16) -> Packet<'_> {
    Packet::Subscribe(Subscribe {
        dup: false,
        qos: QoS::AtLeastOnce,
        msg_id,
        topic: SubscribeTopic::Name(name.as_bytes()),
    })
}

fn message(topic: &str, payload: &'static [u8], delivery: u64) -> BrokerEvent {
    BrokerEvent::Message {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: MqttQoS::AtLeastOnce,
        retain: false,
        delivery: Some(DeliveryId(delivery)),
    }
}

/// Subscribes `name` on the mote's connection; returns the topic id from the SUBACK.
fn subscribed(h: &mut Harness, m: Peer, client_id: &str, name: &str) -> u16 {
    h.send(m, subscribe(name, 1));
    assert_eq!(
        mote_commands(h),
        vec![(
            Arc::from(client_id),
            BrokerCommand::Subscribe {
                filter: name.into(),
                qos: MqttQoS::AtLeastOnce
            }
        )]
    );
    mote_event(
        h,
        client_id,
        BrokerEvent::SubAck {
            filter: name.into(),
            granted: Some(MqttQoS::AtLeastOnce),
        },
    );
    let sent = h.sent_to(m);
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
fn connack_waits_for_the_broker_and_carries_keep_alive_clean_session_and_will() {
    let mut h = transparent();
    let m = peer(1);
    h.send(m, connect_packet("mote-1", true, 30));
    h.expect(m, &[Packet::WillTopicReq]);
    h.send(
        m,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: b"status/mote-1",
        })),
    );
    h.expect(m, &[Packet::WillMsgReq]);
    h.send(m, Packet::WillMsg { msg: b"gone" });
    // Nothing for the mote until its own connection is accepted.
    h.expect_silence();
    assert_eq!(
        mote_commands(&mut h),
        vec![(
            Arc::from("mote-1"),
            BrokerCommand::Connect {
                keep_alive: Duration::from_secs(30),
                clean_session: true,
                will: Some(MoteWill {
                    topic: "status/mote-1".into(),
                    payload: Bytes::from_static(b"gone"),
                    qos: MqttQoS::AtLeastOnce,
                    retain: true,
                }),
                // An open-admitted mote: never its own [[credentials]] login.
                own_login: false,
            }
        )]
    );
    connected(&mut h, "mote-1", false);
    h.expect(m, &[ACCEPTED]);
    // The gateway's own connection is not used for it.
    assert!(h.commands().is_empty());
}

#[test]
fn a_refusal_becomes_the_connack_return_code_and_no_session() {
    for (refusal, code) in [
        (Refusal::BadCredentials, ReturnCode::NotSupported),
        (Refusal::NotAuthorized, ReturnCode::NotSupported),
        (Refusal::IdentifierRejected, ReturnCode::NotSupported),
        (Refusal::ServerUnavailable, ReturnCode::Congestion),
    ] {
        let mut h = transparent();
        let m = peer(1);
        h.send(m, connect_packet("mote-1", false, 60));
        mote_commands(&mut h);
        mote_event(&mut h, "mote-1", BrokerEvent::Refused(refusal));
        h.expect(m, &[Packet::ConnAck { return_code: code }]);
        assert_eq!(h.gw.session_count(), 0, "{refusal:?}");
        // The runtime gave up on that connection: nothing to close.
        assert!(mote_commands(&mut h).is_empty());
        assert_eq!(h.gw.metrics().connect_refused, 1);
    }
    // With CleanSession=0 too: a refused first connection stores no session.
    let mut h = transparent();
    let m = peer(1);
    h.send(
        m,
        Packet::Connect(Connect {
            will: false,
            clean_session: false,
            protocol_id: 1,
            duration: 60,
            client_id: b"persistent",
        }),
    );
    mote_commands(&mut h);
    mote_event(
        &mut h,
        "persistent",
        BrokerEvent::Refused(Refusal::NotAuthorized),
    );
    assert_eq!(h.gw.session_count(), 0);
}

#[test]
fn qos1_is_acknowledged_after_the_broker_acknowledged_it_on_the_motes_connection() {
    let mut h = transparent();
    let m = peer(1);
    connected_mote(&mut h, m, "mote-1");
    let id = register(&mut h, m, 1, "t/1");
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 2, b"x"),
    );
    h.expect_silence();
    let commands = mote_commands(&mut h);
    let publish_id = match commands.as_slice() {
        [(client, BrokerCommand::Publish(p))] if &**client == "mote-1" => {
            assert_eq!(&*p.topic, "t/1");
            p.id.unwrap()
        }
        other => panic!("expected one publish on the mote's connection, got {other:?}"),
    };
    assert!(h.commands().is_empty());
    mote_event(
        &mut h,
        "mote-1",
        BrokerEvent::PublishAcked { id: publish_id },
    );
    h.expect(m, &[puback(id, 2, ReturnCode::Accepted)]);
}

#[test]
fn while_the_motes_connection_is_down_publishes_are_refused_and_the_unacked_replayed_after() {
    let mut h = transparent();
    let m = peer(1);
    connected_mote(&mut h, m, "mote-1");
    let id = register(&mut h, m, 1, "t/1");
    let _ = subscribed(&mut h, m, "mote-1", "cmd/1");
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 2, b"in-flight"),
    );
    mote_commands(&mut h);
    mote_event(&mut h, "mote-1", BrokerEvent::Disconnected);
    // The unacknowledged one waits; a new one is refused (the mote keeps it).
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 3, b"new"),
    );
    h.expect(m, &[puback(id, 3, ReturnCode::Congestion)]);
    // Reconnected without the session: subscriptions made again, the unacked sent again.
    connected(&mut h, "mote-1", false);
    let commands = mote_commands(&mut h);
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(matches!(
        &commands[0].1,
        BrokerCommand::Subscribe { filter, .. } if &**filter == "cmd/1"
    ));
    let replay = match &commands[1].1 {
        BrokerCommand::Publish(p) => p.clone(),
        other => panic!("expected the replay, got {other:?}"),
    };
    assert!(replay.replay);
    assert_eq!(&replay.payload[..], b"in-flight");
    // The mote is not answered twice: CONNACK was given already.
    h.expect_silence();
}

#[test]
fn a_broker_message_is_acknowledged_only_when_the_mote_has_it() {
    let mut h = transparent();
    let a = peer(1);
    let b = peer(2);
    connected_mote(&mut h, a, "mote-a");
    connected_mote(&mut h, b, "mote-b");
    let topic_id = subscribed(&mut h, a, "mote-a", "cmd/all");
    let _ = subscribed(&mut h, b, "mote-b", "cmd/all");
    mote_event(&mut h, "mote-a", message("cmd/all", b"on", 11));
    // Only mote-a: the message came on its connection (mote-b gets its own copy on its own).
    let sent = h.transmits();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let msg_id = match Packet::decode(&sent[0].datagram).unwrap() {
        Packet::Publish(Publish {
            topic: PublishTopic::Normal(t),
            msg_id,
            data,
            ..
        }) => {
            assert_eq!(t, topic_id);
            assert_eq!(data, b"on");
            msg_id
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert!(
        mote_commands(&mut h).is_empty(),
        "no ack before the mote's PUBACK"
    );
    h.send(a, puback(topic_id, msg_id, ReturnCode::Accepted));
    assert_eq!(
        mote_commands(&mut h),
        vec![(
            Arc::from("mote-a"),
            BrokerCommand::Ack {
                delivery: DeliveryId(11)
            }
        )]
    );
}

#[test]
fn a_message_for_a_sleeping_mote_is_acknowledged_once_stored() {
    let mut h = transparent();
    let m = peer(1);
    h.send(
        m,
        Packet::Connect(Connect {
            will: false,
            clean_session: true,
            protocol_id: 1,
            duration: 60,
            client_id: b"sleeper",
        }),
    );
    mote_commands(&mut h);
    connected(&mut h, "sleeper", false);
    h.drain();
    let _ = subscribed(&mut h, m, "sleeper", "cmd/s");
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(600),
        }),
    );
    h.transmits();
    // Asleep: the connection stays open (no Close).
    assert!(mote_commands(&mut h).is_empty());
    mote_event(&mut h, "sleeper", message("cmd/s", b"later", 5));
    let stored = h.store_ops();
    assert!(
        !stored.is_empty(),
        "the message is stored for the sleeping mote"
    );
    assert_eq!(
        mote_commands(&mut h),
        vec![(
            Arc::from("sleeper"),
            BrokerCommand::Ack {
                delivery: DeliveryId(5)
            }
        )]
    );
    h.expect_silence();
}

#[test]
fn disconnect_closes_gracefully_and_a_lost_mote_leaves_its_will_to_the_broker() {
    let mut h = transparent();
    let a = peer(1);
    connected_mote(&mut h, a, "clean");
    h.send(a, Packet::Disconnect(Disconnect { duration: None }));
    assert_eq!(
        mote_commands(&mut h),
        vec![(Arc::from("clean"), BrokerCommand::Close { graceful: true })]
    );

    let b = peer(2);
    h.send(b, connect_packet("lost", true, 10));
    h.send(
        b,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: b"status/lost",
        })),
    );
    h.send(b, Packet::WillMsg { msg: b"bye" });
    mote_commands(&mut h);
    connected(&mut h, "lost", false);
    h.drain();
    // Silent past 1.5 x keep-alive.
    h.advance(Duration::from_secs(16));
    assert_eq!(
        mote_commands(&mut h),
        vec![(Arc::from("lost"), BrokerCommand::Close { graceful: false })]
    );
    // The gateway does not publish the Will itself: the broker does, on the dropped
    // connection.
    assert!(h
        .commands()
        .iter()
        .all(|c| !matches!(c, BrokerCommand::Publish(_))));
    assert_eq!(h.gw.metrics().wills_published, 1);
}

#[test]
fn qos_minus_one_goes_through_the_gateways_own_connection() {
    let mut h = transparent();
    let m = peer(9);
    h.gw.handle_datagram(
        h.now,
        m,
        &Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::Short(*b"ab"),
            msg_id: 0,
            data: b"q-1",
        })
        .to_vec()
        .unwrap(),
    );
    let commands = h.commands();
    assert!(matches!(
        commands.as_slice(),
        [BrokerCommand::Publish(UplinkPublish { topic, .. })] if &**topic == "ab"
    ));
    assert!(mote_commands(&mut h).is_empty());
}
