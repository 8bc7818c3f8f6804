//! Replacing the policy while motes are connected (`Gateway::set_policy`, a SIGHUP): new
//! checks use the new rules at once, a mote no longer admitted is disconnected and its
//! session dropped, a subscription no longer covered is dropped upstream too, and the motes
//! still admitted keep their sessions.

use sn_codec::v12::{
    Disconnect, Packet, PubAck, Publish, PublishTopic, ReturnCode, SubAck, Subscribe,
    SubscribeTopic,
};
use sn_codec::QoS;
use sn_core::{
    Admission, BrokerCommand, BrokerEvent, CoreConfig, Denied, Event, MoteEntry, MqttQoS,
    PolicyConfig, Revoked, TopicRules,
};

use crate::harness::{peer, Harness};

fn rules(publish: &[&str], subscribe: &[&str]) -> TopicRules {
    TopicRules {
        publish: publish.iter().map(ToString::to_string).collect(),
        subscribe: subscribe.iter().map(ToString::to_string).collect(),
        mountpoint: None,
    }
}

fn entry(client_id: &str, rules: TopicRules) -> MoteEntry {
    let mut entry = MoteEntry::new(client_id);
    entry.rules = rules;
    entry
}

fn policy(admission: Admission, motes: Vec<MoteEntry>) -> PolicyConfig {
    PolicyConfig {
        admission,
        motes,
        ..PolicyConfig::default()
    }
}

/// A QoS 1 PUBLISH to a short topic name (no REGISTER needed).
fn publish(msg_id: u16, topic: &[u8; 2]) -> Packet<'static> {
    let topic = *topic;
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Short(topic),
        msg_id,
        data: b"x",
    })
}

fn subscribe(msg_id: u16, filter: &'static [u8]) -> Packet<'static> {
    Packet::Subscribe(Subscribe {
        dup: false,
        qos: QoS::AtLeastOnce,
        msg_id,
        topic: SubscribeTopic::Name(filter),
    })
}

#[test]
fn a_reloaded_policy_applies_at_once_and_ends_the_motes_it_no_longer_admits() {
    // A may publish to a/# only; B to anything; both listed.
    let first = policy(
        Admission::Listed,
        vec![
            entry("A", rules(&["a/#"], &["a/#", "b/#"])),
            entry("B", TopicRules::default()),
        ],
    );
    let mut h = Harness::with_config(CoreConfig {
        policy: first,
        ..CoreConfig::default()
    });
    let (a, b) = (peer(1), peer(2));
    h.connect(a, "A", true, 60);
    h.connect(b, "B", true, 60);
    // "b/x" is refused to A under the first policy.
    h.send(a, publish(1, b"bx"));
    h.expect(
        a,
        &[Packet::PubAck(PubAck {
            topic_id: u16::from_be_bytes(*b"bx"),
            msg_id: 1,
            return_code: ReturnCode::NotSupported,
        })],
    );
    assert!(h.commands().is_empty());
    // A subscribes to b/# (allowed for now).
    h.send(a, subscribe(2, b"b/#"));
    assert!(matches!(
        h.commands().as_slice(),
        [BrokerCommand::Subscribe { .. }]
    ));
    h.broker(BrokerEvent::SubAck {
        filter: "b/#".into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    h.drain();

    // Second policy: A may also publish to bx, but no longer subscribe to b/#.
    let change = h.gw.set_policy(
        h.now,
        policy(
            Admission::Listed,
            vec![
                entry("A", rules(&["a/#", "bx"], &["a/#"])),
                entry("B", TopicRules::default()),
            ],
        ),
    );
    assert_eq!(
        (
            change.sessions,
            change.revoked,
            change.subscriptions_revoked
        ),
        (2, 0, 1)
    );
    // Its subscription is dropped upstream (nobody else held it) ...
    assert_eq!(
        h.commands(),
        [BrokerCommand::Unsubscribe {
            filter: "b/#".into()
        }]
    );
    assert_eq!(h.gw.metrics().subscriptions_revoked, 1);
    assert_eq!(h.gw.session_info("A").unwrap().subscriptions, 0);
    // ... no DISCONNECT to anyone, and the same short topic now goes through without A
    // reconnecting (the refusal cached for it is forgotten).
    h.expect_silence();
    h.send(a, publish(3, b"bx"));
    let sent = h.one_publish();
    assert_eq!(&*sent.topic, "bx");
    // A new SUBSCRIBE to b/# is refused by the new rules.
    h.send(a, subscribe(4, b"b/#"));
    h.expect(
        a,
        &[Packet::SubAck(SubAck {
            qos: QoS::AtMostOnce,
            topic_id: 0,
            msg_id: 4,
            return_code: ReturnCode::NotSupported,
        })],
    );
    h.drain();

    // Third policy: only B is listed. A is told (DISCONNECT) and its session goes; B stays.
    let change = h.gw.set_policy(
        h.now,
        policy(Admission::Listed, vec![entry("B", TopicRules::default())]),
    );
    assert_eq!((change.sessions, change.revoked), (2, 1));
    h.expect(a, &[Packet::Disconnect(Disconnect { duration: None })]);
    assert_eq!(h.gw.metrics().policy_revoked, 1);
    assert!(h.gw.session_info("A").is_none());
    assert!(h.gw.session_info("B").is_some());
    let events = h.events();
    assert!(
        events.iter().any(|e| matches!(e,
            Event::Revoked { client_id, reason: Revoked::Denied(Denied::NotListed), addr: Some(_) }
                if &**client_id == "A")),
        "{events:?}"
    );
    // No Will, no "lost": it did nothing wrong.
    assert_eq!(h.gw.metrics().sessions_lost, 0);
    // Its reconnect is refused; B goes on publishing.
    h.send(
        a,
        Packet::Connect(sn_codec::v12::Connect {
            will: false,
            clean_session: true,
            protocol_id: 1,
            duration: 60,
            client_id: b"A",
        }),
    );
    h.expect(
        a,
        &[Packet::ConnAck {
            return_code: ReturnCode::NotSupported,
        }],
    );
    h.send(b, publish(5, b"bx"));
    assert_eq!(&*h.one_publish().topic, "bx");
}

#[test]
fn a_changed_mountpoint_ends_the_session_and_offline_sessions_are_checked_too() {
    let mounted = TopicRules {
        mountpoint: Some("site-1/".into()),
        ..TopicRules::default()
    };
    let mut h = Harness::with_config(CoreConfig {
        policy: PolicyConfig {
            rules: mounted,
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    let (m, o) = (peer(1), peer(2));
    h.connect(m, "m", true, 60);
    // "o" keeps an offline session (CleanSession=0, disconnected).
    h.connect(o, "o", false, 60);
    h.send(o, Packet::Disconnect(Disconnect { duration: None }));
    h.drain();
    assert!(h.gw.session_info("o").is_some());
    let moved = TopicRules {
        mountpoint: Some("site-2/".into()),
        ..TopicRules::default()
    };
    let change = h.gw.set_policy(
        h.now,
        PolicyConfig {
            rules: moved,
            ..PolicyConfig::default()
        },
    );
    assert_eq!((change.sessions, change.revoked), (2, 2));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    assert_eq!(h.gw.session_count(), 0);
    // It comes back under the new mountpoint.
    h.connect(m, "m", true, 60);
    h.send(m, publish(1, b"tt"));
    assert_eq!(&*h.one_publish().topic, "site-2/tt");
}

#[test]
fn a_revoked_motes_presence_says_disconnected() {
    let mut h = Harness::with_config(CoreConfig {
        presence_topic: Some("motes/%c/presence".into()),
        ..CoreConfig::default()
    });
    let m = peer(1);
    h.connect(m, "m", true, 60);
    h.drain();
    let change = h.gw.set_policy(
        h.now,
        policy(
            Admission::Listed,
            vec![entry("other", TopicRules::default())],
        ),
    );
    assert_eq!(change.revoked, 1);
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    let presence = h.one_publish();
    assert_eq!(
        (&*presence.topic, &presence.payload[..], presence.retain),
        ("motes/m/presence", &b"disconnected"[..], true)
    );
}
