//! The security policy at the core's edge: admission, topic rules, mountpoints, QoS -1 rules,
//! and which session gives way at max_sessions. Each refusal is answered as the spec says and
//! counted per reason, and nothing refused reaches the broker.

use std::net::SocketAddr;
use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    SubAck, Subscribe, SubscribeTopic, WillTopic,
};
use sn_codec::QoS;
use sn_core::{
    AddrPattern, Admission, BrokerCommand, BrokerEvent, CoreConfig, Denied, Event, MinusOneRules,
    MoteEntry, MqttQoS, Peer, PeerAddr, PolicyConfig, TopicRules,
};

use crate::harness::{peer, Harness, LINK};

/// A UDP peer at `ip:port`.
fn at(ip: &str, port: u16) -> Peer {
    Peer {
        link: LINK,
        addr: PeerAddr::Ip(SocketAddr::new(ip.parse().unwrap(), port)),
    }
}

fn connect_packet(client_id: &str, will: bool) -> Packet<'_> {
    Packet::Connect(Connect {
        will,
        clean_session: true,
        protocol_id: 1,
        duration: 60,
        client_id: client_id.as_bytes(),
    })
}

fn with_policy(policy: PolicyConfig) -> Harness {
    Harness::with_config(CoreConfig {
        policy,
        ..CoreConfig::default()
    })
}

fn listed(motes: Vec<MoteEntry>) -> PolicyConfig {
    PolicyConfig {
        admission: Admission::Listed,
        motes,
        ..PolicyConfig::default()
    }
}

fn subscribe(h: &mut Harness, from: Peer, msg_id: u16, topic: SubscribeTopic<'_>) {
    h.send(
        from,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id,
            topic,
        }),
    );
}

const REFUSED: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::NotSupported,
};
const CONGESTION: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::Congestion,
};

#[test]
fn unlisted_and_misplaced_motes_get_connack_3_counted_per_reason() {
    let mut entry = MoteEntry::new("mote-*");
    entry.addresses = vec![AddrPattern::parse("10.0.0.0/24").unwrap()];
    let mut h = with_policy(listed(vec![entry]));
    let stranger = at("10.0.0.7", 1);
    h.send(stranger, connect_packet("intruder", false));
    h.expect(stranger, &[REFUSED]);
    let elsewhere = at("10.0.1.7", 1);
    h.send(elsewhere, connect_packet("mote-1", false));
    h.expect(elsewhere, &[REFUSED]);
    let denied = &h.gw.metrics().denied;
    assert_eq!((denied.not_listed, denied.wrong_address), (1, 1));
    assert_eq!(h.gw.session_count(), 0, "a refused CONNECT holds nothing");
    let events = h.events();
    assert!(events.iter().any(|e| matches!(e,
        Event::PolicyDenied { reason: Denied::NotListed, client_id: Some(id), .. } if &**id == "intruder")));
    h.connect(at("10.0.0.9", 1), "mote-1", true, 60);
}

#[test]
fn dollar_topics_are_refused_by_default_and_nothing_reaches_the_broker() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(7, "$SYS/broker/fake".into())],
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m", true, 60);
    subscribe(&mut h, m, 1, SubscribeTopic::Name(b"$SYS/#"));
    h.expect(
        m,
        &[Packet::SubAck(SubAck {
            qos: QoS::AtMostOnce,
            topic_id: 0,
            msg_id: 1,
            return_code: ReturnCode::NotSupported,
        })],
    );
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 2,
            topic_name: b"$SYS/broker/fake",
        }),
    );
    h.expect(
        m,
        &[Packet::RegAck(RegAck {
            topic_id: 0,
            msg_id: 2,
            return_code: ReturnCode::NotSupported,
        })],
    );
    let publish = |qos, msg_id| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: PublishTopic::Predefined(7),
            msg_id,
            data: b"fake",
        })
    };
    h.send(m, publish(QoS::AtLeastOnce, 3));
    h.expect(
        m,
        &[Packet::PubAck(PubAck {
            topic_id: 7,
            msg_id: 3,
            return_code: ReturnCode::NotSupported,
        })],
    );
    // At QoS 0: dropped, counted, no answer.
    h.send(m, publish(QoS::AtMostOnce, 0));
    h.expect_silence();
    assert!(
        h.commands().is_empty(),
        "nothing refused reaches the broker"
    );
    assert_eq!(h.gw.metrics().denied.dollar_topic, 4);
    // `#` still covers every other topic: the zero-config trial works.
    subscribe(&mut h, m, 4, SubscribeTopic::Name(b"#"));
    assert!(matches!(
        h.commands().as_slice(),
        [BrokerCommand::Subscribe { filter, .. }] if &**filter == "#"
    ));
}

#[test]
fn rules_name_the_client_id_and_filters_must_lie_within_them() {
    let mut entry = MoteEntry::new("tenant-a-*");
    entry.rules = TopicRules {
        publish: vec!["tenant-a/%c/#".into()],
        subscribe: vec!["tenant-a/#".into()],
        mountpoint: None,
    };
    let mut h = with_policy(listed(vec![entry]));
    let m = peer(1000);
    h.connect(m, "tenant-a-1", true, 60);
    for (msg_id, filter) in [(1, &b"#"[..]), (2, b"private/#"), (3, b"+/x")] {
        subscribe(&mut h, m, msg_id, SubscribeTopic::Name(filter));
        h.expect(
            m,
            &[Packet::SubAck(SubAck {
                qos: QoS::AtMostOnce,
                topic_id: 0,
                msg_id,
                return_code: ReturnCode::NotSupported,
            })],
        );
    }
    assert_eq!(h.gw.metrics().denied.subscribe, 3);
    subscribe(&mut h, m, 4, SubscribeTopic::Name(b"tenant-a/+/cmd"));
    assert_eq!(h.commands().len(), 1);
    // Its own topic: forwarded; another tenant member's: PUBACK 0x03.
    for (msg_id, name, allowed) in [
        (5, &b"tenant-a/tenant-a-1/t"[..], true),
        (6, b"tenant-a/tenant-a-2/t", false),
    ] {
        h.send(
            m,
            Packet::Register(Register {
                topic_id: 0,
                msg_id,
                topic_name: name,
            }),
        );
        let sent = h.sent_to(m);
        let regack = Packet::decode(&sent[0]).unwrap();
        let Packet::RegAck(RegAck {
            topic_id,
            return_code,
            ..
        }) = regack
        else {
            panic!("expected REGACK, got {regack:?}");
        };
        // Subscribable (within tenant-a/#), so registering is allowed either way.
        assert_eq!(return_code, ReturnCode::Accepted);
        h.send(
            m,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: PublishTopic::Normal(topic_id),
                msg_id: msg_id + 100,
                data: b"x",
            }),
        );
        if allowed {
            assert_eq!(&*h.one_publish().topic, "tenant-a/tenant-a-1/t");
        } else {
            h.expect(
                m,
                &[Packet::PubAck(PubAck {
                    topic_id,
                    msg_id: msg_id + 100,
                    return_code: ReturnCode::NotSupported,
                })],
            );
            assert!(h.commands().is_empty());
        }
    }
    // A name it may neither publish nor subscribe to gets no id.
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 9,
            topic_name: b"private/x",
        }),
    );
    h.expect(
        m,
        &[Packet::RegAck(RegAck {
            topic_id: 0,
            msg_id: 9,
            return_code: ReturnCode::NotSupported,
        })],
    );
    let denied = &h.gw.metrics().denied;
    assert_eq!((denied.publish, denied.register), (1, 1));
}

#[test]
fn the_mountpoint_is_put_before_every_topic_and_taken_off_on_the_way_down() {
    let mut h = with_policy(PolicyConfig {
        rules: TopicRules {
            mountpoint: Some("site/%c/".into()),
            ..TopicRules::default()
        },
        ..PolicyConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    subscribe(&mut h, m, 1, SubscribeTopic::Name(b"cmd"));
    let commands = h.commands();
    assert!(
        matches!(commands.as_slice(), [BrokerCommand::Subscribe { filter, .. }] if &**filter == "site/m1/cmd"),
        "{commands:?}"
    );
    h.broker(BrokerEvent::SubAck {
        filter: "site/m1/cmd".into(),
        granted: Some(MqttQoS::AtMostOnce),
    });
    let sent = h.sent_to(m);
    let suback = Packet::decode(&sent[0]).unwrap();
    let Packet::SubAck(SubAck { topic_id, .. }) = suback else {
        panic!("{suback:?}");
    };
    h.message("site/m1/cmd", b"go", MqttQoS::AtMostOnce, false);
    h.expect(
        m,
        &[Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Normal(topic_id),
            msg_id: 0,
            data: b"go",
        })],
    );
    // Up: a short topic name goes under the mountpoint too.
    h.send(
        m,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Short(*b"tp"),
            msg_id: 0,
            data: b"21",
        }),
    );
    assert_eq!(&*h.one_publish().topic, "site/m1/tp");
}

#[test]
fn a_will_to_a_topic_the_mote_may_not_publish_refuses_the_connect() {
    let mut entry = MoteEntry::new("m");
    entry.rules.publish = vec!["status/%c".into()];
    let mut h = with_policy(listed(vec![entry]));
    let m = peer(1000);
    h.send(m, connect_packet("m", true));
    h.expect(m, &[Packet::WillTopicReq]);
    h.send(
        m,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: b"alarms/all",
        })),
    );
    h.expect(m, &[REFUSED]);
    assert_eq!(h.gw.metrics().denied.publish, 1);
}

#[test]
fn qos_minus_one_takes_only_its_own_topics_and_sources() {
    let mut h = Harness::with_config(CoreConfig {
        predefined_topics: vec![(1, "beacons/a".into()), (2, "other".into())],
        policy: PolicyConfig {
            admission: Admission::Listed,
            minus_one: MinusOneRules {
                publish: Some(vec!["beacons/+".into()]),
                from: vec![AddrPattern::parse("127.0.0.0/8").unwrap()],
            },
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    let minus_one = |id| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::Predefined(id),
            msg_id: 0,
            data: b"b",
        })
    };
    h.send(peer(1), minus_one(1));
    assert_eq!(&*h.one_publish().topic, "beacons/a");
    h.send(peer(1), minus_one(2));
    h.send(at("10.0.0.1", 1), minus_one(1));
    assert!(h.commands().is_empty());
    let denied = &h.gw.metrics().denied;
    assert_eq!((denied.minus_one_topic, denied.minus_one_address), (1, 1));
}

#[test]
fn under_listed_admission_qos_minus_one_needs_its_own_rules() {
    let mut h = Harness::with_config(CoreConfig {
        policy: listed(vec![MoteEntry::new("m")]),
        ..CoreConfig::default()
    });
    h.send(
        peer(1),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: false,
            topic: PublishTopic::Short(*b"ab"),
            msg_id: 0,
            data: b"b",
        }),
    );
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.metrics().denied.minus_one_topic, 1);
}

#[test]
fn at_max_sessions_a_listed_mote_pushes_out_an_open_admitted_one_never_the_reverse() {
    let mut real = MoteEntry::new("real");
    real.addresses = vec![AddrPattern::parse("127.0.0.1").unwrap()];
    let mut h = Harness::with_config(CoreConfig {
        max_sessions: 3,
        policy: PolicyConfig {
            motes: vec![real],
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    for i in 0..3u16 {
        h.connect(at("10.0.0.1", i + 1), &format!("attacker-{i}"), true, 600);
    }
    h.send(at("10.0.0.1", 9), connect_packet("attacker-9", false));
    h.expect(at("10.0.0.1", 9), &[CONGESTION]);
    // The listed mote gets in: the attacker heard from longest ago is told and goes.
    h.send(peer(500), connect_packet("real", false));
    let sent: Vec<(sn_core::Destination, Vec<u8>)> = h
        .transmits()
        .into_iter()
        .map(|s| (s.destination, s.datagram.to_vec()))
        .collect();
    let to = |p: Peer| sn_core::Destination::Unicast(p.addr);
    assert_eq!(
        sent,
        vec![
            (
                to(at("10.0.0.1", 1)),
                Packet::Disconnect(Disconnect { duration: None })
                    .to_vec()
                    .unwrap()
            ),
            (
                to(peer(500)),
                Packet::ConnAck {
                    return_code: ReturnCode::Accepted
                }
                .to_vec()
                .unwrap()
            ),
        ]
    );
    assert!(h.gw.session_info("attacker-0").is_none());
    assert_eq!(h.gw.metrics().sessions_evicted, 1);
    // And an open-admitted CONNECT cannot push the listed mote out.
    h.send(at("10.0.0.1", 10), connect_packet("attacker-10", false));
    h.expect(at("10.0.0.1", 10), &[CONGESTION]);
    assert!(h.gw.session_info("real").is_some());
}

#[test]
fn one_source_gets_max_sessions_per_address_and_connect_rate() {
    let mut h = Harness::with_config(CoreConfig {
        max_sessions_per_address: 3,
        connect_rate: 5,
        ..CoreConfig::default()
    });
    for i in 0..3u16 {
        h.connect(at("10.0.0.1", i + 1), &format!("a-{i}"), true, 60);
    }
    h.send(at("10.0.0.1", 4), connect_packet("a-3", false));
    h.expect(at("10.0.0.1", 4), &[CONGESTION]);
    assert_eq!(h.gw.metrics().sessions_per_address_refused, 1);
    // A session reconnecting from its own source takes no new place.
    h.connect(at("10.0.0.1", 1), "a-0", true, 60);
    // Burst of twice the rate (10): 5 taken above; the rest of the burst, then congestion.
    let mut congested = 0;
    for _ in 0..20 {
        h.send(at("10.0.0.1", 1), connect_packet("a-0", false));
        let sent = h.sent_to(at("10.0.0.1", 1));
        if sent.first().map(|d| d.as_slice()) == Some(&CONGESTION.to_vec().unwrap()[..]) {
            congested += 1;
        }
    }
    assert_eq!(congested, 15, "10 in the burst, 5 used before");
    assert_eq!(h.gw.metrics().connect_rate_limited, 15);
    // Another source is not affected, and after a second the source may go on.
    h.connect(at("10.0.0.2", 1), "b", true, 60);
    h.advance(Duration::from_secs(1));
    h.connect(at("10.0.0.1", 1), "a-0", true, 60);
}

#[test]
fn all_queues_together_stay_within_max_queued_bytes_total() {
    let mut h = Harness::with_config(CoreConfig {
        max_queued_bytes_total: 1000,
        ..CoreConfig::default()
    });
    h.sleeper(peer(1), "s1");
    h.sleeper(peer(2), "s2");
    for _ in 0..10 {
        h.message("t", &[0; 100], MqttQoS::AtLeastOnce, false);
    }
    // Open-admitted sessions share half of the total, 500 bytes; a message counts its
    // payload, its topic and 64 bytes of bookkeeping (165 here): three messages in all.
    assert_eq!(h.gw.queued_bytes(), 3 * 165);
    assert_eq!(h.gw.metrics().dropped_queue_total, 17);
    let queued = h.gw.session_info("s1").unwrap().queued + h.gw.session_info("s2").unwrap().queued;
    assert_eq!(queued, 3);
    let reports: Vec<Event> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::QueueFull { .. }))
        .collect();
    assert!(
        reports.iter().all(|e| matches!(
            e,
            Event::QueueFull {
                setting: "max_queued_bytes_total",
                limit: 500,
                ..
            }
        )),
        "{reports:?}"
    );
    assert_eq!(reports.len(), 2, "once per session");
}

#[test]
fn a_sleep_longer_than_max_sleep_duration_is_held_to_it() {
    let mut h = Harness::with_config(CoreConfig {
        max_sleep_duration: Duration::from_secs(60),
        ..CoreConfig::default()
    });
    let m = peer(1);
    h.connect(m, "s", true, 60);
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(65_535),
        }),
    );
    h.drain();
    assert_eq!(h.gw.metrics().sleep_capped, 1);
    // Lost after 1.5 x 60 s, not 1.5 x 65535 s.
    h.advance(Duration::from_secs(89));
    assert!(h.gw.session_info("s").is_some());
    h.advance(Duration::from_secs(2));
    assert!(h.gw.session_info("s").is_none());
}

#[test]
fn a_roaming_mote_moves_only_within_its_addresses() {
    let mut entry = MoteEntry::new("nb");
    entry.addresses = vec![AddrPattern::parse("10.0.0.0/24").unwrap()];
    entry.roaming = Some(true);
    let mut h = with_policy(listed(vec![entry]));
    h.connect(at("10.0.0.1", 1), "nb", false, 60);
    h.send(
        at("10.0.0.1", 1),
        Packet::Disconnect(Disconnect {
            duration: Some(600),
        }),
    );
    h.drain();
    // A PINGREQ naming it from outside its network: refused, and it stays asleep there.
    h.send(at("10.9.0.1", 1), Packet::PingReq { client_id: b"nb" });
    assert!(h
        .sent_to(at("10.9.0.1", 1))
        .iter()
        .all(|d| d.as_ref() != Packet::PingResp.to_vec().unwrap()));
    assert_eq!(h.gw.metrics().denied.wrong_address, 1);
    // From a new address inside it (a NAT rebinding): woken there.
    h.send(at("10.0.0.2", 7), Packet::PingReq { client_id: b"nb" });
    h.expect(at("10.0.0.2", 7), &[Packet::PingResp]);
}

#[test]
fn transparent_mode_lends_a_motes_own_login_only_to_a_bound_mote() {
    let mut bound = MoteEntry::new("bound");
    bound.addresses = vec![AddrPattern::parse("127.0.0.1").unwrap()];
    let mut h = Harness::with_config(CoreConfig {
        mode: sn_core::BrokerMode::Transparent,
        policy: PolicyConfig {
            motes: vec![bound],
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    for (port, id, own) in [(1u16, "bound", true), (2, "claimed", false)] {
        h.send(peer(port), connect_packet(id, false));
        let commands = h.mote_commands();
        assert!(
            matches!(commands.as_slice(), [(_, BrokerCommand::Connect { own_login, .. })] if *own_login == own),
            "{id}: {commands:?}"
        );
    }
}

#[test]
fn names_beyond_max_state_bytes_get_congestion() {
    let mut h = Harness::with_config(CoreConfig {
        max_state_bytes: 200,
        ..CoreConfig::default()
    });
    let m = peer(1);
    h.connect(m, "m", true, 60);
    let long = [b'n'; 60];
    // Open-admitted: half of 200 bytes, the client id's byte included.
    for msg_id in 1..=3u16 {
        let mut name = long.to_vec();
        name[0] = b'a' + msg_id as u8;
        h.send(
            m,
            Packet::Register(Register {
                topic_id: 0,
                msg_id,
                topic_name: &name,
            }),
        );
        let sent = h.sent_to(m);
        let Packet::RegAck(regack) = Packet::decode(&sent[0]).unwrap() else {
            panic!("expected REGACK");
        };
        let expected = if msg_id == 1 {
            ReturnCode::Accepted
        } else {
            ReturnCode::Congestion
        };
        assert_eq!(regack.return_code, expected, "REGISTER {msg_id}");
    }
    assert_eq!(h.gw.held_bytes(), 61);
    assert_eq!(h.gw.metrics().state_full, 2);
    // A clean reconnect gives the bytes back.
    h.connect(m, "m", true, 60);
    assert_eq!(h.gw.held_bytes(), 1);
}

#[test]
fn a_bound_mote_is_not_held_to_its_sources_quotas() {
    let mut real = MoteEntry::new("real");
    real.addresses = vec![AddrPattern::parse("10.0.0.1").unwrap()];
    let mut h = Harness::with_config(CoreConfig {
        max_sessions_per_address: 2,
        connect_rate: 1,
        policy: PolicyConfig {
            motes: vec![real],
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    // Others behind the same source (a forwarder, a NAT) use up its quotas...
    h.connect(at("10.0.0.1", 1), "other-1", true, 60);
    h.connect(at("10.0.0.1", 2), "other-2", true, 60);
    h.send(at("10.0.0.1", 3), connect_packet("other-3", false));
    h.expect(at("10.0.0.1", 3), &[CONGESTION]);
    // ...and the mote bound to it still gets in, again and again.
    for _ in 0..3 {
        h.connect(at("10.0.0.1", 4), "real", true, 60);
    }
}
