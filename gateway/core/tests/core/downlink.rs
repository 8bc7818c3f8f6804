//! Broker → client: SUBSCRIBE in all forms, granted QoS, wildcard REGISTER before PUBLISH,
//! QoS 0/1/2 delivery one at a time, retained messages, UNSUBSCRIBE, retransmission.

use std::time::Duration;

use sn_codec::v12::{
    Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, ReturnCode, SubAck, Subscribe,
    SubscribeTopic, Unsubscribe,
};
use sn_codec::QoS;
use sn_core::{BrokerCommand, BrokerEvent, CoreConfig, MqttQoS, Peer};

use crate::harness::{peer, Harness};

fn subscribe(topic: SubscribeTopic<'_>, qos: QoS, msg_id: u16) -> Packet<'_> {
    Packet::Subscribe(Subscribe {
        dup: false,
        qos,
        msg_id,
        topic,
    })
}

fn suback(qos: QoS, topic_id: u16, msg_id: u16, return_code: ReturnCode) -> Packet<'static> {
    Packet::SubAck(SubAck {
        qos,
        topic_id,
        msg_id,
        return_code,
    })
}

fn delivered(
    qos: QoS,
    dup: bool,
    retain: bool,
    topic: PublishTopic<'static>,
    msg_id: u16,
    data: &'static [u8],
) -> Packet<'static> {
    Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        msg_id,
        data,
    })
}

/// Subscribes and completes the broker side; returns the topic id from the SUBACK.
fn subscribed(
    h: &mut Harness,
    m: Peer,
    topic: SubscribeTopic<'_>,
    qos: QoS,
    granted: MqttQoS,
) -> u16 {
    h.send(m, subscribe(topic, qos, 1));
    h.expect_silence();
    let filter = match h.commands().as_slice() {
        [BrokerCommand::Subscribe { filter, .. }] => filter.clone(),
        other => panic!("expected one SUBSCRIBE upstream, got {other:?}"),
    };
    h.broker(BrokerEvent::SubAck {
        filter,
        granted: Some(granted),
    });
    let sent = h.sent_to(m);
    match Packet::decode(&sent[0]).unwrap() {
        Packet::SubAck(s) => {
            assert_eq!(s.return_code, ReturnCode::Accepted);
            s.topic_id
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscribe_by_name_then_receive_qos1() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    h.send(
        m,
        subscribe(SubscribeTopic::Name(b"cmd/m1"), QoS::AtLeastOnce, 3),
    );
    h.expect_silence();
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Subscribe {
            filter: "cmd/m1".into(),
            qos: MqttQoS::AtLeastOnce
        }]
    );
    h.broker(BrokerEvent::SubAck {
        filter: "cmd/m1".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    let sent = h.sent_to(m);
    let Packet::SubAck(ack) = Packet::decode(&sent[0]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (ack.qos, ack.msg_id, ack.return_code),
        (QoS::AtLeastOnce, 3, ReturnCode::Accepted)
    );
    let id = ack.topic_id;
    assert_ne!(id, 0);
    h.message("cmd/m1", b"on", MqttQoS::AtLeastOnce, false);
    h.message("cmd/m1", b"off", MqttQoS::AtLeastOnce, false);
    // One at a time: the second waits for the first's PUBACK.
    let first = h.sent_to(m);
    assert_eq!(first.len(), 1);
    let Packet::Publish(p) = Packet::decode(&first[0]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (p.topic, p.data, p.qos, p.dup),
        (
            PublishTopic::Normal(id),
            &b"on"[..],
            QoS::AtLeastOnce,
            false
        )
    );
    h.send(
        m,
        Packet::PubAck(PubAck {
            topic_id: id,
            msg_id: p.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    let second = h.sent_to(m);
    let Packet::Publish(p2) = Packet::decode(&second[0]).unwrap() else {
        panic!()
    };
    assert_eq!(p2.data, b"off");
    assert_ne!(p2.msg_id, p.msg_id);
}

#[test]
fn granted_qos_comes_from_the_broker() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    h.send(
        m,
        subscribe(SubscribeTopic::Name(b"a"), QoS::ExactlyOnce, 3),
    );
    h.commands();
    h.broker(BrokerEvent::SubAck {
        filter: "a".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    let sent = h.sent_to(m);
    let Packet::SubAck(ack) = Packet::decode(&sent[0]).unwrap() else {
        panic!()
    };
    assert_eq!(ack.qos, QoS::AtLeastOnce);
    // Refused upstream: SUBACK 0x03.
    h.send(
        m,
        subscribe(SubscribeTopic::Name(b"forbidden"), QoS::AtLeastOnce, 4),
    );
    h.commands();
    h.broker(BrokerEvent::SubAck {
        filter: "forbidden".into(),
        granted: None,
    });
    let sent = h.sent_to(m);
    let Packet::SubAck(ack) = Packet::decode(&sent[0]).unwrap() else {
        panic!()
    };
    assert_eq!((ack.msg_id, ack.return_code), (4, ReturnCode::NotSupported));
    // And the refused filter is not kept upstream.
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Unsubscribe {
            filter: "forbidden".into()
        }]
    );
}

#[test]
fn wildcard_subscriber_gets_register_then_publish() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    let topic_id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"sensors/+"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    assert_eq!(topic_id, 0, "SUBACK carries 0x0000 for a wildcard");
    h.message("sensors/t1", b"20", MqttQoS::AtMostOnce, false);
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 1, "the PUBLISH waits for REGACK");
    let Packet::Register(reg) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(reg.topic_name, b"sensors/t1");
    assert!(reg.topic_id != 0 && reg.topic_id != 0xFFFF);
    h.send(
        m,
        Packet::RegAck(RegAck {
            topic_id: reg.topic_id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    h.expect(
        m,
        &[delivered(
            QoS::AtMostOnce,
            false,
            false,
            PublishTopic::Normal(reg.topic_id),
            0,
            b"20",
        )],
    );
    // Known now: the next message on the topic needs no REGISTER.
    h.message("sensors/t1", b"21", MqttQoS::AtMostOnce, false);
    h.expect(
        m,
        &[delivered(
            QoS::AtMostOnce,
            false,
            false,
            PublishTopic::Normal(reg.topic_id),
            0,
            b"21",
        )],
    );
}

#[test]
fn regack_refusal_drops_that_topic_only() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"s/#"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    h.message("s/unwanted", b"1", MqttQoS::AtMostOnce, false);
    let sent = h.sent_to(m);
    let Packet::Register(reg) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    h.send(
        m,
        Packet::RegAck(RegAck {
            topic_id: reg.topic_id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::NotSupported,
        }),
    );
    h.expect_silence();
    h.message("s/unwanted", b"2", MqttQoS::AtMostOnce, false);
    h.expect_silence();
    h.message("s/wanted", b"3", MqttQoS::AtMostOnce, false);
    let sent = h.sent_to(m);
    let Packet::Register(reg) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(reg.topic_name, b"s/wanted");
}

#[test]
fn predefined_and_short_subscriptions_need_no_register() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(0x20, "cfg/all".into())],
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Predefined(0x20),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    assert_eq!(id, 0x20);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Short(*b"zz"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    assert_eq!(id, u16::from_be_bytes(*b"zz"));
    h.message("cfg/all", b"a", MqttQoS::AtMostOnce, false);
    h.message("zz", b"b", MqttQoS::AtMostOnce, false);
    h.expect(
        m,
        &[
            delivered(
                QoS::AtMostOnce,
                false,
                false,
                PublishTopic::Predefined(0x20),
                0,
                b"a",
            ),
            delivered(
                QoS::AtMostOnce,
                false,
                false,
                PublishTopic::Short(*b"zz"),
                0,
                b"b",
            ),
        ],
    );
    // Unknown predefined id: SUBACK 0x02, nothing upstream.
    h.send(
        m,
        subscribe(SubscribeTopic::Predefined(0x21), QoS::AtMostOnce, 9),
    );
    h.expect(
        m,
        &[suback(QoS::AtMostOnce, 0, 9, ReturnCode::InvalidTopicId)],
    );
    assert!(h.commands().is_empty());
}

#[test]
fn qos2_delivery_runs_the_full_flow() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"q2"),
        QoS::ExactlyOnce,
        MqttQoS::ExactlyOnce,
    );
    h.message("q2", b"once", MqttQoS::ExactlyOnce, false);
    let sent = h.sent_to(m);
    let Packet::Publish(p) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(
        (p.qos, p.topic),
        (QoS::ExactlyOnce, PublishTopic::Normal(id))
    );
    h.send(m, Packet::PubRec { msg_id: p.msg_id });
    h.expect(m, &[Packet::PubRel { msg_id: p.msg_id }]);
    // PUBREL is retransmitted until PUBCOMP.
    h.advance(Duration::from_secs(10));
    h.expect(m, &[Packet::PubRel { msg_id: p.msg_id }]);
    h.send(m, Packet::PubComp { msg_id: p.msg_id });
    h.advance(Duration::from_secs(30));
    h.expect_silence();
}

#[test]
fn unacknowledged_publish_is_retransmitted_with_dup_then_the_client_is_lost() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 0);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"x"),
        QoS::AtLeastOnce,
        MqttQoS::AtLeastOnce,
    );
    h.message("x", b"1", MqttQoS::AtLeastOnce, false);
    let sent = h.sent_to(m);
    let Packet::Publish(first) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert!(!first.dup);
    for _ in 0..3 {
        h.advance(Duration::from_secs(10));
        h.expect(
            m,
            &[delivered(
                QoS::AtLeastOnce,
                true,
                false,
                PublishTopic::Normal(id),
                first.msg_id,
                b"1",
            )],
        );
    }
    h.advance(Duration::from_secs(10));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    assert_eq!(h.gw.metrics().sessions_lost, 1);
    assert_eq!(h.gw.metrics().retransmissions, 3);
}

#[test]
fn register_is_retransmitted_too() {
    let mut h = Harness::with_config(CoreConfig {
        retry_interval: Duration::from_secs(2),
        max_retries: 1,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 0);
    subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"w/#"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    h.message("w/1", b"x", MqttQoS::AtMostOnce, false);
    let first = h.sent_to(m);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.sent_to(m), first, "same REGISTER, same MsgId");
    h.advance(Duration::from_secs(2));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
}

#[test]
fn retained_messages_go_only_to_the_new_subscriber_with_retain_set() {
    let mut h = Harness::new();
    let (a, b) = (peer(1000), peer(1001));
    h.connect(a, "a", true, 600);
    h.connect(b, "b", true, 600);
    let ida = subscribed(
        &mut h,
        a,
        SubscribeTopic::Name(b"state"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    // The broker sends the retained message after a's SUBACK.
    h.message("state", b"r", MqttQoS::AtMostOnce, true);
    h.expect(
        a,
        &[delivered(
            QoS::AtMostOnce,
            false,
            true,
            PublishTopic::Normal(ida),
            0,
            b"r",
        )],
    );
    // b subscribes to the same filter: the gateway subscribes again so the broker re-sends
    // the retained message; only b gets it.
    let idb = subscribed(
        &mut h,
        b,
        SubscribeTopic::Name(b"state"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    h.message("state", b"r", MqttQoS::AtMostOnce, true);
    h.expect(
        b,
        &[delivered(
            QoS::AtMostOnce,
            false,
            true,
            PublishTopic::Normal(idb),
            0,
            b"r",
        )],
    );
    // Live traffic (Retain=0) goes to both.
    h.message("state", b"live", MqttQoS::AtMostOnce, false);
    let sent = h.transmits();
    assert_eq!(sent.len(), 2);
}

#[test]
fn unsubscribe_releases_the_upstream_subscription_when_last() {
    let mut h = Harness::new();
    let (a, b) = (peer(1000), peer(1001));
    h.connect(a, "a", true, 600);
    h.connect(b, "b", true, 600);
    subscribed(
        &mut h,
        a,
        SubscribeTopic::Name(b"t/#"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    subscribed(
        &mut h,
        b,
        SubscribeTopic::Name(b"t/#"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    h.send(
        a,
        Packet::Unsubscribe(Unsubscribe {
            msg_id: 5,
            topic: SubscribeTopic::Name(b"t/#"),
        }),
    );
    h.expect(a, &[Packet::UnsubAck { msg_id: 5 }]);
    assert!(h.commands().is_empty(), "b still needs it");
    h.send(
        b,
        Packet::Unsubscribe(Unsubscribe {
            msg_id: 6,
            topic: SubscribeTopic::Name(b"t/#"),
        }),
    );
    h.expect(b, &[Packet::UnsubAck { msg_id: 6 }]);
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Unsubscribe {
            filter: "t/#".into()
        }]
    );
    // Unsubscribing from nothing is still acknowledged.
    h.send(
        b,
        Packet::Unsubscribe(Unsubscribe {
            msg_id: 7,
            topic: SubscribeTopic::Name(b"never"),
        }),
    );
    h.expect(b, &[Packet::UnsubAck { msg_id: 7 }]);
}

#[test]
fn subscriptions_are_restored_after_a_broker_reconnect() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"a/+"),
        QoS::AtLeastOnce,
        MqttQoS::AtLeastOnce,
    );
    h.broker(BrokerEvent::Disconnected);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    // An ADVERTISE goes out at once so waiting clients find the gateway.
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Subscribe {
            filter: "a/+".into(),
            qos: MqttQoS::AtLeastOnce
        }]
    );
    h.broker(BrokerEvent::SubAck {
        filter: "a/+".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    // The resubscribe is not the client's: no SUBACK to it, no retained copies.
    h.message("a/x", b"old", MqttQoS::AtLeastOnce, true);
    h.expect_silence();
}

#[test]
fn clean_connect_drops_subscriptions_upstream() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"k"),
        QoS::AtMostOnce,
        MqttQoS::AtMostOnce,
    );
    h.connect(m, "m1", true, 600);
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Unsubscribe { filter: "k".into() }]
    );
    h.message("k", b"x", MqttQoS::AtMostOnce, false);
    h.expect_silence();
}

#[test]
fn persistent_session_keeps_qos1_messages_while_offline_and_reregisters() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"k"),
        QoS::AtLeastOnce,
        MqttQoS::AtLeastOnce,
    );
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    h.transmits();
    h.message("k", b"kept", MqttQoS::AtLeastOnce, false);
    h.message("k", b"dropped", MqttQoS::AtMostOnce, false);
    h.expect_silence();
    h.send(
        m,
        Packet::Connect(sn_codec::v12::Connect {
            will: false,
            clean_session: false,
            protocol_id: 1,
            duration: 600,
            client_id: b"m1",
        }),
    );
    // After a CleanSession=0 reconnect the client may have forgotten its ids: CONNACK, then
    // REGISTER before the kept message.
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[0],
        crate::harness::bytes(Packet::ConnAck {
            return_code: ReturnCode::Accepted
        })
    );
    let Packet::Register(reg) = Packet::decode(&sent[1]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!((reg.topic_id, reg.topic_name), (id, &b"k"[..]));
    h.send(
        m,
        Packet::RegAck(RegAck {
            topic_id: id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    let sent = h.sent_to(m);
    let Packet::Publish(p) = Packet::decode(&sent[0]).unwrap() else {
        panic!()
    };
    assert_eq!(p.data, b"kept");
    assert_eq!(sent.len(), 1);
}

#[test]
fn queue_limit_drops_and_counts() {
    let mut h = Harness::with_config(CoreConfig {
        max_queued_per_session: 2,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"q"),
        QoS::AtLeastOnce,
        MqttQoS::AtLeastOnce,
    );
    for i in 0..5u8 {
        h.message("q", &[i], MqttQoS::AtLeastOnce, false);
    }
    // The limit counts the one in flight (it goes back to the queue if the exchange is
    // abandoned): one in flight, one queued, three dropped.
    assert_eq!(h.gw.metrics().dropped_queue_full, 3);
    let events = h.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, sn_core::Event::QueueFull { .. }))
            .count(),
        1
    );
}

#[test]
fn puback_invalid_topic_id_triggers_one_reregistration() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 600);
    let id = subscribed(
        &mut h,
        m,
        SubscribeTopic::Name(b"r"),
        QoS::AtLeastOnce,
        MqttQoS::AtLeastOnce,
    );
    h.message("r", b"1", MqttQoS::AtLeastOnce, false);
    let sent = h.sent_to(m);
    let Packet::Publish(p) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    h.send(
        m,
        Packet::PubAck(PubAck {
            topic_id: id,
            msg_id: p.msg_id,
            return_code: ReturnCode::InvalidTopicId,
        }),
    );
    let sent = h.sent_to(m);
    let Packet::Register(reg) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(reg.topic_id, id);
    h.send(
        m,
        Packet::RegAck(RegAck {
            topic_id: id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    let sent = h.sent_to(m);
    let Packet::Publish(again) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(again.data, b"1");
}
