//! The spool: uplink messages accepted while the broker is unreachable, held durably (the
//! store is written before the acknowledgement leaves), sent in order when it returns, bounded
//! with a policy at the limit, and kept across a restart.

use sn_codec::v12::{Packet, PubAck, PublishTopic, ReturnCode};
use sn_codec::QoS;
use sn_core::{
    BrokerCommand, BrokerEvent, CoreConfig, Event, Gateway, MqttQoS, Peer, SpoolConfig, SpoolFull,
    UplinkPublish,
};

use crate::harness::{peer, Harness};
use crate::persist::FakeStore;
use crate::uplink::{publish, register};

fn puback(topic_id: u16, msg_id: u16, return_code: ReturnCode) -> Packet<'static> {
    Packet::PubAck(PubAck {
        topic_id,
        msg_id,
        return_code,
    })
}

fn with_spool(spool: SpoolConfig) -> Harness {
    Harness::with_config(CoreConfig {
        spool,
        ..CoreConfig::default()
    })
}

/// A connected mote with a registered topic; the broker link then goes down.
fn mote_during_outage(h: &mut Harness) -> (Peer, u16) {
    let m = peer(1000);
    h.connect(m, "m", true, 600);
    let id = register(h, m, 1, "up/m");
    h.broker(BrokerEvent::Disconnected);
    (m, id)
}

fn replayed(h: &mut Harness) -> Vec<UplinkPublish> {
    h.commands()
        .into_iter()
        .filter_map(|c| match c {
            BrokerCommand::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn the_puback_of_a_spooled_message_waits_for_the_store_batch_that_holds_it() {
    let mut h = Harness::new();
    let (m, id) = mote_during_outage(&mut h);
    h.settle();
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 7, b"kept"),
    );
    // Polled in any order, the acknowledgement does not leave before the write.
    assert_eq!(
        h.gw.poll_transmit(&mut bytes::BytesMut::new()),
        None,
        "PUBACK before the spool is written"
    );
    let batch = h.gw.poll_store().expect("the message goes into the spool");
    assert!(
        batch
            .ops
            .iter()
            .any(|op| matches!(op, sn_core::StoreOp::PutSpool { .. })),
        "{batch:?}"
    );
    assert_eq!(
        h.gw.poll_transmit(&mut bytes::BytesMut::new()),
        None,
        "PUBACK before the batch is written"
    );
    // A runtime whose write failed polls again: a new (empty) batch releases nothing.
    assert!(h.gw.poll_store().is_none());
    assert_eq!(
        h.gw.poll_transmit(&mut bytes::BytesMut::new()),
        None,
        "PUBACK while the write is retried"
    );
    h.gw.handle_stored(batch.id);
    h.expect(m, &[puback(id, 7, ReturnCode::Accepted)]);
}

#[test]
fn qos1_during_an_outage_is_acknowledged_from_the_spool_and_sent_when_the_broker_returns() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let (m, id) = mote_during_outage(&mut h);
    for (msg_id, data) in [(1, &b"a"[..]), (2, b"b"), (3, b"c")] {
        h.send(
            m,
            publish(QoS::AtLeastOnce, PublishTopic::Normal(id), msg_id, data),
        );
        h.expect(m, &[puback(id, msg_id, ReturnCode::Accepted)]);
    }
    assert!(
        h.commands().is_empty(),
        "nothing goes to a broker that is down"
    );
    store.apply(&mut h);
    assert_eq!(store.spool.len(), 3);
    assert_eq!(h.gw.spooled(), 3);

    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = replayed(&mut h);
    assert_eq!(
        sent.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        vec![b"a", b"b", b"c"],
        "in order"
    );
    for p in &sent {
        h.broker(BrokerEvent::PublishAcked { id: p.id.unwrap() });
    }
    // The motes were answered long ago: nothing more for them.
    assert!(h
        .transmits()
        .iter()
        .all(|t| matches!(t.destination, sn_core::Destination::Discovery { .. })));
    store.apply(&mut h);
    assert!(
        store.spool.is_empty(),
        "acknowledged by the broker: out of the spool"
    );
    assert_eq!(h.gw.spooled(), 0);
    // The counters add up: 3 spooled, 3 replayed, 3 acknowledgements timed (at once: the
    // spool held them).
    let metrics = h.gw.metrics();
    assert_eq!((metrics.spooled, metrics.replayed), (3, 3));
    assert_eq!(metrics.publish_ack_latency.count(), 3);
    assert_eq!(
        metrics.publish_ack_latency.cumulative().next(),
        Some((250, 3))
    );
}

#[test]
fn qos2_during_an_outage_gets_pubrec_and_is_forwarded_once() {
    let mut h = Harness::new();
    let (m, id) = mote_during_outage(&mut h);
    h.send(
        m,
        publish(QoS::ExactlyOnce, PublishTopic::Normal(id), 9, b"x"),
    );
    h.expect(m, &[Packet::PubRec { msg_id: 9 }]);
    h.send(m, Packet::PubRel { msg_id: 9 });
    h.expect(m, &[Packet::PubComp { msg_id: 9 }]);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = replayed(&mut h);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].qos, MqttQoS::ExactlyOnce);
}

#[test]
fn publishes_in_flight_when_the_broker_drops_are_spooled_and_acknowledged() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "m", true, 600);
    let id = register(&mut h, m, 1, "up/m");
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 4, b"in flight"),
    );
    let first = h.one_publish();
    h.expect_silence();
    // The broker goes away before acknowledging: the spool takes it and the mote is answered.
    h.broker(BrokerEvent::Disconnected);
    h.expect(m, &[puback(id, 4, ReturnCode::Accepted)]);
    store.apply(&mut h);
    assert_eq!(store.spool.len(), 1);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let again = replayed(&mut h);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first.id, "the same message, replayed");
    h.broker(BrokerEvent::PublishAcked {
        id: first.id.unwrap(),
    });
    store.apply(&mut h);
    assert!(store.spool.is_empty());
}

#[test]
fn a_full_spool_refuses_with_congestion_by_default() {
    let mut h = with_spool(SpoolConfig {
        max_bytes: 100,
        ..SpoolConfig::default()
    });
    let (m, id) = mote_during_outage(&mut h);
    // Each message counts topic (4) + payload (20) + 32 = 56 bytes: one fits, two do not.
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 1, &[0; 20]),
    );
    h.expect(m, &[puback(id, 1, ReturnCode::Accepted)]);
    h.send(
        m,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id), 2, &[0; 20]),
    );
    h.expect(m, &[puback(id, 2, ReturnCode::Congestion)]);
    assert_eq!(h.gw.metrics().spool_refused, 1);
    assert_eq!(h.gw.spooled(), 1);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::SpoolFull {
            policy: SpoolFull::Refuse,
            ..
        }
    )));
}

#[test]
fn drop_oldest_makes_room_and_counts_what_it_dropped() {
    let mut h = with_spool(SpoolConfig {
        max_bytes: 120,
        when_full: SpoolFull::DropOldest,
        ..SpoolConfig::default()
    });
    let mut store = FakeStore::default();
    let (m, id) = mote_during_outage(&mut h);
    for (msg_id, fill) in [(1u16, 1u8), (2, 2), (3, 3)] {
        h.send(
            m,
            publish(
                QoS::AtLeastOnce,
                PublishTopic::Normal(id),
                msg_id,
                &[fill; 20],
            ),
        );
        h.expect(m, &[puback(id, msg_id, ReturnCode::Accepted)]);
    }
    assert_eq!(h.gw.metrics().spool_dropped, 1);
    store.apply(&mut h);
    assert_eq!(store.spool.len(), 2);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = replayed(&mut h);
    assert_eq!(
        sent.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        vec![2, 3],
        "the oldest went"
    );
}

#[test]
fn qos0_is_dropped_during_an_outage_unless_asked() {
    let mut h = Harness::new();
    let (m, id) = mote_during_outage(&mut h);
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id), 0, b"q0"),
    );
    assert_eq!(h.gw.metrics().publish_broker_down, 1);
    assert_eq!(h.gw.metrics().qos0_dropped_broker_down, 1);
    assert_eq!(h.gw.spooled(), 0);

    let mut h = with_spool(SpoolConfig {
        qos0: true,
        ..SpoolConfig::default()
    });
    let (m, id) = mote_during_outage(&mut h);
    h.send(
        m,
        publish(QoS::AtMostOnce, PublishTopic::Normal(id), 0, b"q0"),
    );
    h.send(
        peer(2000),
        publish(QoS::MinusOne, PublishTopic::Short(*b"zz"), 0, b"q-1"),
    );
    assert_eq!(h.gw.spooled(), 2);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = replayed(&mut h);
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .all(|p| p.qos == MqttQoS::AtMostOnce && p.id.is_none()));
    assert_eq!(
        h.gw.spooled(),
        0,
        "QoS 0 leaves the spool once handed to the link"
    );
}

#[test]
fn the_spool_survives_a_restart_and_is_sent_in_order() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let (m, id) = mote_during_outage(&mut h);
    for msg_id in 1..=5u16 {
        h.send(
            m,
            publish(
                QoS::AtLeastOnce,
                PublishTopic::Normal(id),
                msg_id,
                &[msg_id as u8],
            ),
        );
    }
    store.apply(&mut h);
    assert_eq!(store.spool.len(), 5);

    // Power cut: a new gateway from the store; its first publishes come after the spooled ones.
    let mut gw = Gateway::new(CoreConfig::default());
    gw.restore(h.now, store.restored());
    let mut h2 = Harness::from_gateway(gw, h.now);
    assert_eq!(h2.gw.spooled(), 5);
    h2.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = replayed(&mut h2);
    assert_eq!(
        sent.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    h2.transmits(); // the ADVERTISE sent when the link came up
    let m2 = peer(1001);
    h2.connect(m2, "n", true, 600);
    let id2 = register(&mut h2, m2, 1, "up/n");
    h2.send(
        m2,
        publish(QoS::AtLeastOnce, PublishTopic::Normal(id2), 1, b"new"),
    );
    let new = h2.one_publish();
    assert!(
        sent.iter().all(|p| p.id.unwrap() < new.id.unwrap()),
        "new ids after the restored ones"
    );
    for p in sent {
        h2.broker(BrokerEvent::PublishAcked { id: p.id.unwrap() });
    }
    store.apply(&mut h2);
    assert!(store.spool.is_empty());
}

#[test]
fn a_will_published_during_an_outage_is_spooled() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.send(
        m,
        Packet::Connect(sn_codec::v12::Connect {
            will: true,
            clean_session: true,
            protocol_id: 1,
            duration: 10,
            client_id: b"w",
        }),
    );
    h.transmits();
    h.send(
        m,
        Packet::WillTopic(Some(sn_codec::v12::WillTopic {
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: b"status/w",
        })),
    );
    h.send(m, Packet::WillMsg { msg: b"gone" });
    h.transmits();
    h.broker(BrokerEvent::Disconnected);
    h.advance(std::time::Duration::from_secs(16));
    store.apply(&mut h);
    assert_eq!(store.spool.len(), 1);
    assert!(matches!(store.spool.values().next(), Some(w) if &*w.topic == "status/w"));
}
