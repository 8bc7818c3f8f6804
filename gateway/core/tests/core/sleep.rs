//! Sleeping clients (reference §4.12–4.14, §7): DISCONNECT{d}, buffering while asleep, the
//! awake phase after PINGREQ{ClientId}, the sleep timer, and the corner cases around them.

use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, ReturnCode, Subscribe,
    SubscribeTopic, WillTopic,
};
use sn_codec::QoS;
use sn_core::{BrokerCommand, BrokerEvent, Event, LostReason, MqttQoS, Peer};

use crate::harness::{peer, Harness};

const DISCONNECT: Packet<'static> = Packet::Disconnect(Disconnect { duration: None });

fn connect_packet(client_id: &str, will: bool, clean_session: bool, duration: u16) -> Packet<'_> {
    Packet::Connect(Connect {
        will,
        clean_session,
        protocol_id: 1,
        duration,
        client_id: client_id.as_bytes(),
    })
}

/// CONNECT with a Will on "will/<id>" carrying "gone".
fn connect_with_will(h: &mut Harness, m: Peer, id: &str, clean: bool, keep_alive: u16) {
    h.send(m, connect_packet(id, true, clean, keep_alive));
    h.expect(m, &[Packet::WillTopicReq]);
    let topic = format!("will/{id}");
    h.send(
        m,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.as_bytes(),
        })),
    );
    h.expect(m, &[Packet::WillMsgReq]);
    h.send(m, Packet::WillMsg { msg: b"gone" });
    h.expect(
        m,
        &[Packet::ConnAck {
            return_code: ReturnCode::Accepted,
        }],
    );
    h.events();
}

/// Subscribes by name and completes the broker side; returns the SUBACK topic id.
fn subscribed(h: &mut Harness, m: Peer, filter: &str, qos: QoS, msg_id: u16) -> u16 {
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos,
            msg_id,
            topic: SubscribeTopic::Name(filter.as_bytes()),
        }),
    );
    let granted = MqttQoS::from_sn(qos);
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Subscribe {
            filter: filter.into(),
            qos: granted
        }]
    );
    h.broker(BrokerEvent::SubAck {
        filter: filter.into(),
        granted: Some(granted),
    });
    let sent = h.sent_to(m);
    assert_eq!(sent.len(), 1, "{sent:02X?}");
    match Packet::decode(&sent[0]).unwrap() {
        Packet::SubAck(s) => {
            assert_eq!((s.msg_id, s.return_code), (msg_id, ReturnCode::Accepted));
            s.topic_id
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// DISCONNECT{d}: the reply must be the 2-byte DISCONNECT, without a Duration (§4.12).
#[track_caller]
fn go_to_sleep(h: &mut Harness, m: Peer, duration: u16) {
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(duration),
        }),
    );
    let sent = h.sent_to(m);
    assert_eq!(
        sent,
        vec![vec![0x02, 0x18]],
        "DISCONNECT reply to DISCONNECT{{{duration}}}"
    );
}

fn wake(h: &mut Harness, from: Peer, id: &str) {
    h.send(
        from,
        Packet::PingReq {
            client_id: id.as_bytes(),
        },
    );
}

/// The one packet sent to `m`, owned.
#[track_caller]
fn one_sent(h: &mut Harness, m: Peer) -> Vec<u8> {
    let mut sent = h.sent_to(m);
    assert_eq!(
        sent.len(),
        1,
        "expected exactly one packet, got {sent:02X?}"
    );
    sent.remove(0)
}

fn puback(topic_id: u16, msg_id: u16) -> Packet<'static> {
    Packet::PubAck(PubAck {
        topic_id,
        msg_id,
        return_code: ReturnCode::Accepted,
    })
}

fn will_publishes(h: &mut Harness) -> Vec<String> {
    h.commands()
        .into_iter()
        .filter_map(|c| match c {
            BrokerCommand::Publish(p) if p.topic.starts_with("will/") => Some(p.topic.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn disconnect_with_duration_gets_a_two_byte_disconnect_and_the_client_sleeps() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 60);
    go_to_sleep(&mut h, m, 300);
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Asleep { client_id, duration: 300 }] if &**client_id == "s1"),
        "{events:?}"
    );
    // Going to sleep is not a disconnect: no Will, nothing upstream (§4.5, §6).
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.session_count(), 1, "the session lives on while asleep");
    // Still the client at this address: a wake-up PINGREQ is answered, not refused.
    wake(&mut h, m, "s1");
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn nothing_is_sent_to_a_sleeping_client_not_even_register() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    subscribed(&mut h, m, "cmd/s1", QoS::AtLeastOnce, 1);
    subscribed(&mut h, m, "ev/+", QoS::AtLeastOnce, 2);
    go_to_sleep(&mut h, m, 600);
    h.message("cmd/s1", b"a", MqttQoS::AtLeastOnce, false);
    h.message("ev/1", b"b", MqttQoS::AtLeastOnce, false);
    h.message("ev/2", b"c", MqttQoS::AtMostOnce, false);
    h.expect_silence();
    // Not on any timer either: retransmission or otherwise.
    for _ in 0..10 {
        h.advance(Duration::from_secs(30));
        h.expect_silence();
    }
}

#[test]
fn wake_delivers_buffered_messages_one_exchange_at_a_time_then_pingresp() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let cmd = subscribed(&mut h, m, "cmd/s1", QoS::AtLeastOnce, 1);
    assert_ne!(cmd, 0);
    subscribed(&mut h, m, "ev/+", QoS::AtLeastOnce, 2);
    go_to_sleep(&mut h, m, 600);
    h.message("cmd/s1", b"a", MqttQoS::AtLeastOnce, false);
    h.message("ev/1", b"b", MqttQoS::AtLeastOnce, false);
    h.expect_silence();

    h.advance(Duration::from_secs(100));
    wake(&mut h, m, "s1");
    // First the message on the id the client knows: a QoS 1 PUBLISH, and nothing else yet.
    let first = one_sent(&mut h, m);
    let Packet::Publish(p1) = Packet::decode(&first).unwrap() else {
        panic!("expected PUBLISH, got {first:02X?}")
    };
    assert_eq!(
        (p1.qos, p1.topic, p1.data, p1.dup),
        (
            QoS::AtLeastOnce,
            PublishTopic::Normal(cmd),
            &b"a"[..],
            false
        )
    );
    assert_ne!(p1.msg_id, 0);
    h.send(m, puback(cmd, p1.msg_id));
    // The wildcard topic has no id yet: REGISTER first, alone.
    let second = one_sent(&mut h, m);
    let Packet::Register(reg) = Packet::decode(&second).unwrap() else {
        panic!("expected REGISTER, got {second:02X?}")
    };
    assert_eq!(reg.topic_name, b"ev/1");
    assert!(reg.topic_id != 0 && reg.topic_id != 0xFFFF);
    h.send(
        m,
        Packet::RegAck(RegAck {
            topic_id: reg.topic_id,
            msg_id: reg.msg_id,
            return_code: ReturnCode::Accepted,
        }),
    );
    let third = one_sent(&mut h, m);
    let Packet::Publish(p2) = Packet::decode(&third).unwrap() else {
        panic!("expected PUBLISH, got {third:02X?}")
    };
    assert_eq!(
        (p2.qos, p2.topic, p2.data),
        (
            QoS::AtLeastOnce,
            PublishTopic::Normal(reg.topic_id),
            &b"b"[..]
        )
    );
    // PINGRESP only after the last PUBACK.
    h.send(m, puback(reg.topic_id, p2.msg_id));
    h.expect(m, &[Packet::PingResp]);
    // Back asleep: new messages are buffered again.
    h.message("cmd/s1", b"later", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    wake(&mut h, m, "s1");
    let again = one_sent(&mut h, m);
    let Packet::Publish(p3) = Packet::decode(&again).unwrap() else {
        panic!("expected PUBLISH, got {again:02X?}")
    };
    assert_eq!(p3.data, b"later");
}

#[test]
fn wake_runs_the_full_qos2_flow_before_pingresp() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let id = subscribed(&mut h, m, "q2", QoS::ExactlyOnce, 1);
    go_to_sleep(&mut h, m, 600);
    h.message("q2", b"x", MqttQoS::ExactlyOnce, false);
    h.expect_silence();
    wake(&mut h, m, "s1");
    let sent = one_sent(&mut h, m);
    let Packet::Publish(p) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!(
        (p.qos, p.topic),
        (QoS::ExactlyOnce, PublishTopic::Normal(id))
    );
    h.send(m, Packet::PubRec { msg_id: p.msg_id });
    h.expect(m, &[Packet::PubRel { msg_id: p.msg_id }]);
    h.send(m, Packet::PubComp { msg_id: p.msg_id });
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn qos0_messages_are_buffered_while_asleep_too() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let id = subscribed(&mut h, m, "t", QoS::AtMostOnce, 1);
    go_to_sleep(&mut h, m, 600);
    h.message("t", b"1", MqttQoS::AtMostOnce, false);
    h.message("t", b"2", MqttQoS::AtMostOnce, false);
    h.expect_silence();
    wake(&mut h, m, "s1");
    let publish = |data: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Normal(id),
            msg_id: 0,
            data,
        })
    };
    h.expect(m, &[publish(b"1"), publish(b"2"), Packet::PingResp]);
}

#[test]
fn wake_with_nothing_buffered_gets_pingresp_at_once() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    subscribed(&mut h, m, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, m, 60);
    h.advance(Duration::from_secs(50));
    wake(&mut h, m, "s1");
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn sleep_timer_expires_at_one_and_a_half_durations_and_publishes_the_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    // A short keep-alive must not matter while asleep: the sleep duration rules.
    connect_with_will(&mut h, m, "s1", true, 10);
    go_to_sleep(&mut h, m, 20);
    h.events();
    h.advance(Duration::from_millis(29_900));
    assert!(
        will_publishes(&mut h).is_empty(),
        "lost too early (1.5 × 20 s = 30 s)"
    );
    h.transmits();
    h.advance(Duration::from_millis(200));
    assert_eq!(will_publishes(&mut h), vec!["will/s1".to_string()]);
    h.transmits();
    let events = h.events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Lost {
                reason: LostReason::SleepExpired,
                will_published: true,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(h.gw.metrics().wills_published, 1);
    // Lost: the client must CONNECT again.
    wake(&mut h, m, "s1");
    h.expect(m, &[DISCONNECT]);
}

#[test]
fn each_wake_restarts_the_sleep_timer() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 60);
    go_to_sleep(&mut h, m, 20);
    for _ in 0..4 {
        h.advance(Duration::from_secs(25));
        wake(&mut h, m, "s1");
        h.expect(m, &[Packet::PingResp]);
    }
    assert!(will_publishes(&mut h).is_empty());
    // 30 s after the last PINGRESP, not before.
    h.advance(Duration::from_millis(29_900));
    assert!(will_publishes(&mut h).is_empty());
    h.advance(Duration::from_millis(200));
    assert_eq!(will_publishes(&mut h), vec!["will/s1".to_string()]);
}

#[test]
fn disconnect_with_a_new_duration_while_asleep_moves_the_deadline_later() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 60);
    go_to_sleep(&mut h, m, 20);
    h.advance(Duration::from_secs(10));
    go_to_sleep(&mut h, m, 100);
    // The old deadline (+30 s) passes without loss; the new one is 10 + 150 s.
    h.advance(Duration::from_secs(40));
    assert!(
        will_publishes(&mut h).is_empty(),
        "old sleep timer still running"
    );
    h.advance(Duration::from_millis(109_900));
    assert!(will_publishes(&mut h).is_empty(), "lost before 1.5 × 100 s");
    h.advance(Duration::from_millis(200));
    assert_eq!(will_publishes(&mut h), vec!["will/s1".to_string()]);
}

#[test]
fn disconnect_with_a_shorter_duration_while_asleep_moves_the_deadline_earlier() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 60);
    go_to_sleep(&mut h, m, 1000);
    h.advance(Duration::from_secs(5));
    go_to_sleep(&mut h, m, 10);
    h.advance(Duration::from_millis(14_900));
    assert!(will_publishes(&mut h).is_empty());
    h.advance(Duration::from_millis(200));
    assert_eq!(will_publishes(&mut h), vec!["will/s1".to_string()]);
}

#[test]
fn plain_disconnect_while_asleep_ends_the_session_without_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 60);
    subscribed(&mut h, m, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, m, 20);
    h.message("t", b"x", MqttQoS::AtLeastOnce, false);
    h.send(m, DISCONNECT);
    h.expect(m, &[DISCONNECT]);
    h.advance(Duration::from_secs(100));
    assert!(
        will_publishes(&mut h).is_empty(),
        "a clean DISCONNECT discards the Will"
    );
    assert_eq!(h.gw.session_count(), 0);
    // Disconnected, not asleep: a wake-up PINGREQ is refused.
    wake(&mut h, m, "s1");
    h.expect(m, &[DISCONNECT]);
}

#[test]
fn connect_from_asleep_returns_to_active_and_buffered_messages_flow() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", false, 60);
    let id = subscribed(&mut h, m, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, m, 600);
    h.message("t", b"one", MqttQoS::AtLeastOnce, false);
    h.message("t", b"two", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    h.send(m, connect_packet("s1", false, false, 60));
    let sent = h.sent_to(m);
    assert_eq!(
        sent.first(),
        Some(&crate::harness::bytes(Packet::ConnAck {
            return_code: ReturnCode::Accepted
        })),
        "{sent:02X?}"
    );
    // After a CleanSession=0 reconnect the gateway may REGISTER the id again (§4.7).
    let mut next: Vec<Vec<u8>> = sent.into_iter().skip(1).collect();
    let mut received = Vec::new();
    for _ in 0..6 {
        assert_eq!(next.len(), 1, "one exchange at a time: {next:02X?}");
        match Packet::decode(&next[0]).unwrap() {
            Packet::Register(reg) => {
                assert_eq!((reg.topic_id, reg.topic_name), (id, &b"t"[..]));
                h.send(
                    m,
                    Packet::RegAck(RegAck {
                        topic_id: reg.topic_id,
                        msg_id: reg.msg_id,
                        return_code: ReturnCode::Accepted,
                    }),
                );
            }
            Packet::Publish(p) => {
                assert_eq!(
                    (p.qos, p.topic),
                    (QoS::AtLeastOnce, PublishTopic::Normal(id))
                );
                received.push(p.data.to_vec());
                h.send(m, puback(id, p.msg_id));
            }
            other => panic!("unexpected {other:?}"),
        }
        next = h.sent_to(m);
        if next.is_empty() {
            break;
        }
    }
    assert_eq!(received, vec![b"one".to_vec(), b"two".to_vec()]);
    // Active now: live traffic is delivered at once, and PINGREQ is a keep-alive.
    h.message("t", b"live", MqttQoS::AtLeastOnce, false);
    let sent = one_sent(&mut h, m);
    let Packet::Publish(p) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!(p.data, b"live");
    h.send(m, puback(id, p.msg_id));
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);
    // And supervised by its keep-alive again, not the sleep duration.
    h.advance(Duration::from_secs(91));
    h.expect(m, &[DISCONNECT]);
}

#[test]
fn with_roaming_a_wake_from_a_new_address_is_matched_by_client_id_and_answered_there() {
    let mut h = Harness::with_config(sn_core::CoreConfig {
        roaming: true,
        ..sn_core::CoreConfig::default()
    });
    let old = peer(1000);
    let new = peer(1777);
    h.connect(old, "s1", true, 60);
    let id = subscribed(&mut h, old, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, old, 600);
    h.message("t", b"x", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    wake(&mut h, new, "s1");
    let sent = one_sent(&mut h, new);
    let Packet::Publish(p) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!((p.topic, p.data), (PublishTopic::Normal(id), &b"x"[..]));
    h.send(new, puback(id, p.msg_id));
    h.expect(new, &[Packet::PingResp]);
    assert_eq!(h.gw.session_count(), 1);
}

#[test]
fn without_roaming_a_pingreq_naming_a_sleeper_from_elsewhere_gets_nothing_of_it() {
    let mut h = Harness::new();
    let (mote, thief) = (peer(1000), peer(6666));
    h.connect(mote, "s1", true, 60);
    let id = subscribed(&mut h, mote, "victim/cmd", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, mote, 600);
    h.message("victim/cmd", b"open", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    wake(&mut h, thief, "s1");
    h.expect(thief, &[Packet::Disconnect(Disconnect { duration: None })]);
    assert_eq!(h.gw.metrics().takeover_refused, 1);
    assert_eq!(
        h.gw.session_info("s1").unwrap().queued,
        1,
        "the message waits"
    );
    // The real mote wakes and gets it.
    wake(&mut h, mote, "s1");
    let sent = one_sent(&mut h, mote);
    let Packet::Publish(p) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!((p.topic, p.data), (PublishTopic::Normal(id), &b"open"[..]));
}

#[test]
fn pingreq_naming_another_client_is_ignored() {
    let mut h = Harness::new();
    let (a, b) = (peer(1000), peer(1001));
    h.connect(a, "a", true, 60);
    h.connect(b, "b", true, 60);
    subscribed(&mut h, a, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, a, 600);
    go_to_sleep(&mut h, b, 600);
    h.message("t", b"x", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    // From a's address, naming b: not a's wake-up, and not b's either (§4.14, EMQX).
    wake(&mut h, a, "b");
    h.expect_silence();
    wake(&mut h, a, "nobody");
    h.expect_silence();
    // a is still asleep with its message buffered; its own PINGREQ wakes it.
    wake(&mut h, a, "a");
    let sent = one_sent(&mut h, a);
    assert!(
        matches!(Packet::decode(&sent).unwrap(), Packet::Publish(_)),
        "{sent:02X?}"
    );
}

#[test]
fn disconnect_with_duration_zero_is_a_plain_disconnect() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "s1", true, 10);
    // Vector X3.
    h.raw(m, &[0x04, 0x18, 0x00, 0x00]);
    assert_eq!(h.sent_to(m), vec![vec![0x02, 0x18]]);
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Disconnected { client_id }] if &**client_id == "s1"),
        "{events:?}"
    );
    h.advance(Duration::from_secs(100));
    assert!(
        h.commands().is_empty(),
        "a plain DISCONNECT publishes no Will"
    );
    assert_eq!(h.gw.session_count(), 0);
    wake(&mut h, m, "s1");
    h.expect(m, &[DISCONNECT]);
}

#[test]
fn a_publish_in_flight_when_the_client_sleeps_is_not_retransmitted_and_comes_on_wake() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let id = subscribed(&mut h, m, "t", QoS::AtLeastOnce, 1);
    h.message("t", b"x", MqttQoS::AtLeastOnce, false);
    let sent = one_sent(&mut h, m);
    assert!(matches!(Packet::decode(&sent).unwrap(), Packet::Publish(_)));
    // No PUBACK: the client goes to sleep instead.
    go_to_sleep(&mut h, m, 600);
    h.advance(Duration::from_secs(60));
    h.expect_silence();
    assert_eq!(h.gw.metrics().sessions_lost, 0);
    wake(&mut h, m, "s1");
    let sent = one_sent(&mut h, m);
    let Packet::Publish(p) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!((p.topic, p.data), (PublishTopic::Normal(id), &b"x"[..]));
    h.send(m, puback(id, p.msg_id));
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn a_message_arriving_during_the_awake_phase_is_delivered_before_pingresp() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let id = subscribed(&mut h, m, "t", QoS::AtLeastOnce, 1);
    go_to_sleep(&mut h, m, 600);
    h.message("t", b"1", MqttQoS::AtLeastOnce, false);
    wake(&mut h, m, "s1");
    let sent = one_sent(&mut h, m);
    let Packet::Publish(p1) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    h.message("t", b"2", MqttQoS::AtLeastOnce, false);
    h.expect_silence();
    h.send(m, puback(id, p1.msg_id));
    let sent = one_sent(&mut h, m);
    let Packet::Publish(p2) = Packet::decode(&sent).unwrap() else {
        panic!("{sent:02X?}")
    };
    assert_eq!(p2.data, b"2");
    h.send(m, puback(id, p2.msg_id));
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn replies_that_complete_after_the_client_fell_asleep_are_not_sent_while_asleep() {
    // Reference §4.13/§4.14: asleep → "buffer everything for the client"; nothing reaches a
    // sleeping client (its radio is off) until it wakes with PINGREQ.
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s1", true, 60);
    let id = crate::uplink::register(&mut h, m, 1, "up");
    h.send(
        m,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(id),
            msg_id: 7,
            data: b"x",
        }),
    );
    let uplink = h.one_publish();
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtMostOnce,
            msg_id: 8,
            topic: SubscribeTopic::Name(b"down"),
        }),
    );
    h.commands();
    go_to_sleep(&mut h, m, 600);
    // The broker answers only now.
    h.ack(uplink.id.unwrap());
    h.broker(BrokerEvent::SubAck {
        filter: "down".into(),
        granted: Some(MqttQoS::AtMostOnce),
    });
    h.expect_silence();
    // The wake-up still ends with PINGRESP.
    wake(&mut h, m, "s1");
    let sent = h.sent_to(m);
    assert_eq!(
        sent.last(),
        Some(&crate::harness::bytes(Packet::PingResp)),
        "{sent:02X?}"
    );
}
