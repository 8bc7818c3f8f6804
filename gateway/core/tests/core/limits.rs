//! Per-client queue limits (count and bytes), the overflow policy and per-client drop counters,
//! shown on a sleeping client whose messages pile up.

use sn_codec::v12::{Packet, Subscribe, SubscribeTopic};
use sn_codec::QoS;
use sn_core::{CoreConfig, MqttQoS, Peer, QueueOverflow, SessionState};

use crate::harness::{peer, Harness};

/// A client subscribed to "t" at QoS 1 (granted 1), then asleep.
fn sleeper(config: CoreConfig) -> (Harness, Peer) {
    let mut h = Harness::with_config(config);
    let m = peer(1000);
    h.sleeper(m, "s");
    (h, m)
}

/// (messages queued, their payload bytes, messages dropped) for the sleeping client "s".
fn queued(h: &Harness) -> (usize, usize, u64) {
    let info = h.gw.session_info("s").unwrap();
    assert_eq!(info.state, SessionState::Asleep);
    (info.queued, info.queued_bytes, info.dropped)
}

#[test]
fn count_limit_drops_the_oldest_by_default() {
    let (mut h, _) = sleeper(CoreConfig {
        max_queued_per_session: 3,
        ..CoreConfig::default()
    });
    for i in 0..5u8 {
        h.message("t", &[i; 10], MqttQoS::AtLeastOnce, false);
    }
    assert_eq!(queued(&h), (3, 30, 2));
    assert_eq!(h.gw.metrics().dropped_queue_full, 2);
}

#[test]
fn byte_limit_counts_payload_bytes() {
    let (mut h, _) = sleeper(CoreConfig {
        max_queued_bytes_per_session: 100,
        ..CoreConfig::default()
    });
    for _ in 0..4 {
        h.message("t", &[0; 30], MqttQoS::AtLeastOnce, false);
    }
    assert_eq!(queued(&h), (3, 90, 1));
    // A message larger than the whole budget is dropped on arrival, nothing else is.
    h.message("t", &[0; 101], MqttQoS::AtLeastOnce, false);
    assert_eq!(queued(&h), (3, 90, 2));
}

#[test]
fn qos0_messages_give_way_first() {
    let (mut h, _) = sleeper(CoreConfig {
        max_queued_per_session: 3,
        ..CoreConfig::default()
    });
    h.message("t", b"q1-a", MqttQoS::AtLeastOnce, false);
    h.message("t", b"q0", MqttQoS::AtMostOnce, false);
    h.message("t", b"q1-b", MqttQoS::AtLeastOnce, false);
    h.message("t", b"q1-c", MqttQoS::AtLeastOnce, false);
    // The QoS 0 message made room; both QoS 1 neighbours stay.
    assert_eq!(queued(&h), (3, 12, 1));
    // With no QoS 0 queued, an arriving QoS 0 is the one dropped.
    h.message("t", b"late-q0", MqttQoS::AtMostOnce, false);
    assert_eq!(queued(&h), (3, 12, 2));
}

#[test]
fn drop_new_keeps_the_oldest_run() {
    let (mut h, m) = sleeper(CoreConfig {
        max_queued_per_session: 2,
        queue_overflow: QueueOverflow::DropNew,
        ..CoreConfig::default()
    });
    for payload in [&b"first"[..], b"second", b"third"] {
        h.message("t", payload, MqttQoS::AtLeastOnce, false);
    }
    assert_eq!(queued(&h), (2, 11, 1));
    // Waking shows which ones were kept.
    h.send(m, Packet::PingReq { client_id: b"s" });
    let sent = h.sent_to(m);
    let Packet::Publish(p) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(p.data, b"first");
}

#[test]
fn overflow_is_reported_once_per_episode() {
    let (mut h, _) = sleeper(CoreConfig {
        max_queued_per_session: 1,
        ..CoreConfig::default()
    });
    h.events();
    for i in 0..10u8 {
        h.message("t", &[i], MqttQoS::AtLeastOnce, false);
    }
    let reports = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, sn_core::Event::QueueFull { .. }))
        .count();
    assert_eq!(reports, 1);
    assert_eq!(queued(&h).2, 9);
}

#[test]
fn subscriptions_per_session_are_bounded_like_topic_ids() {
    let mut h = Harness::with_config(CoreConfig {
        max_topics_per_session: 2,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "w", true, 600);
    // Wildcards take no topic id; the limit still applies to them.
    for (msg_id, filter) in [(1u16, &b"a/#"[..]), (2, b"b/#")] {
        h.send(
            m,
            Packet::Subscribe(Subscribe {
                dup: false,
                qos: QoS::AtMostOnce,
                msg_id,
                topic: SubscribeTopic::Name(filter),
            }),
        );
    }
    assert_eq!(h.commands().len(), 2);
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtMostOnce,
            msg_id: 3,
            topic: SubscribeTopic::Name(b"c/#"),
        }),
    );
    h.expect(
        m,
        &[Packet::SubAck(sn_codec::v12::SubAck {
            qos: QoS::AtMostOnce,
            topic_id: 0,
            msg_id: 3,
            return_code: sn_codec::v12::ReturnCode::NotSupported,
        })],
    );
    assert!(
        h.commands().is_empty(),
        "nothing upstream for a refused subscription"
    );
    assert_eq!(h.gw.metrics().subscribe_refused, 1);
    // Re-subscribing to a filter it has is not a new subscription.
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 4,
            topic: SubscribeTopic::Name(b"a/#"),
        }),
    );
    assert_eq!(h.commands().len(), 1);
}
