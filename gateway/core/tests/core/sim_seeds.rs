//! Regressions found by the deterministic simulation (sim/, issue 18), each named after the
//! seed that found it (`cargo run -p sim --release -- --seed N --motes 10 --minutes 120`
//! replays the run), reduced to the few packets that show it.

use sn_codec::v12::{
    Connect, Disconnect, Packet, Publish, PublishTopic, Register, Subscribe, SubscribeTopic,
};
use sn_codec::QoS;
use sn_core::{
    BrokerCommand, BrokerEvent, CoreConfig, DeliveryId, Destination, MqttQoS, Peer, QueueOverflow,
};

use crate::harness::{peer, Harness};
use crate::persist::{restart, FakeStore};

fn connect(client_id: &str, clean_session: bool) -> Packet<'_> {
    Packet::Connect(Connect {
        will: false,
        clean_session,
        protocol_id: 1,
        duration: 600,
        client_id: client_id.as_bytes(),
    })
}

/// Subscribes `m` to `filter` at `qos`, the broker granting it.
fn subscribe(h: &mut Harness, m: Peer, filter: &str, qos: QoS) {
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos,
            msg_id: 1,
            topic: SubscribeTopic::Name(filter.as_bytes()),
        }),
    );
    for command in h.commands() {
        if let BrokerCommand::Subscribe { filter, qos } = command {
            h.broker(BrokerEvent::SubAck {
                filter,
                granted: Some(qos),
            });
        }
    }
    h.drain();
}

/// What the gateway sent to `m`, decoded.
fn packets(h: &mut Harness, m: Peer) -> Vec<Packet<'static>> {
    h.sent_to(m)
        .into_iter()
        .map(|bytes| {
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            Packet::decode(leaked).unwrap()
        })
        .collect()
}

/// What the gateway sent to `m`, answering its REGISTERs (as a client does) until it has
/// nothing more to say.
fn collect(h: &mut Harness, m: Peer) -> Vec<Packet<'static>> {
    let mut all = Vec::new();
    loop {
        let sent = packets(h, m);
        if sent.is_empty() {
            return all;
        }
        for p in &sent {
            if let Packet::Register(r) = p {
                h.send(
                    m,
                    Packet::RegAck(sn_codec::v12::RegAck {
                        topic_id: r.topic_id,
                        msg_id: r.msg_id,
                        return_code: sn_codec::v12::ReturnCode::Accepted,
                    }),
                );
            }
        }
        all.extend(sent);
    }
}

fn publishes(sent: &[Packet<'static>]) -> Vec<Publish<'static>> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn seed_1_the_publish_in_flight_counts_against_the_queue_limit() {
    let mut h = Harness::with_config(CoreConfig {
        max_queued_per_session: 2,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "q", QoS::AtLeastOnce);
    for i in 0..3u8 {
        h.message("q", &[i], MqttQoS::AtLeastOnce, false);
    }
    assert_eq!(publishes(&packets(&mut h, m)).len(), 1, "one in flight");
    // It goes to sleep before acknowledging: the message in flight goes back to the queue,
    // which must still hold no more than max_queued_per_session.
    h.send(m, Packet::Disconnect(Disconnect { duration: Some(60) }));
    h.drain();
    let info = h.gw.session_info("m1").unwrap();
    assert!(info.queued <= 2, "{} queued, limit 2", info.queued);
}

#[test]
fn seed_1_an_abandoned_qos2_publish_goes_again_with_its_msgid_and_dup() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::ExactlyOnce);
    h.message("t", b"x", MqttQoS::ExactlyOnce, false);
    let first = publishes(&packets(&mut h, m));
    assert_eq!(first.len(), 1);
    assert!(!first[0].dup);
    // The mote got it (and will answer PUBREC), but its CONNACK was lost and it repeats
    // its CONNECT: the resumed session sends the message again, recognisably the same.
    h.send(m, connect("m1", false));
    let again = publishes(&collect(&mut h, m));
    assert_eq!(again.len(), 1, "sent again");
    assert_eq!(again[0].msg_id, first[0].msg_id, "with its MsgId");
    assert!(again[0].dup, "and DUP");
}

#[test]
fn seed_15_an_unconfirmed_pubrel_goes_again_when_the_client_reconnects() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::ExactlyOnce);
    h.message("t", b"x", MqttQoS::ExactlyOnce, false);
    let msg_id = publishes(&packets(&mut h, m))[0].msg_id;
    h.send(m, Packet::PubRec { msg_id });
    // The PUBREL is lost; the client reconnects to its session.
    assert_eq!(packets(&mut h, m), vec![Packet::PubRel { msg_id }]);
    h.send(m, connect("m1", false));
    let sent = collect(&mut h, m);
    assert!(
        sent.contains(&Packet::PubRel { msg_id }),
        "the PUBREL goes again, so the client frees MsgId {msg_id}: {sent:?}"
    );
    h.send(m, Packet::PubComp { msg_id });
    h.message("t", b"y", MqttQoS::ExactlyOnce, false);
    assert_eq!(
        publishes(&collect(&mut h, m)).len(),
        1,
        "and the next message follows"
    );
}

#[test]
fn seed_8_msgids_are_not_reused_after_a_restart() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::ExactlyOnce);
    h.message("t", b"x", MqttQoS::ExactlyOnce, false);
    let held = publishes(&packets(&mut h, m))[0].msg_id;
    // The client acknowledges; the gateway's PUBREL is lost, then the gateway dies: the
    // client keeps MsgId `held` until a PUBREL that will never come.
    h.send(m, Packet::PubRec { msg_id: held });
    h.drain();
    store.apply(&mut h);
    let mut h2 = restart(&h, &store);
    h2.drain();
    h2.send(m, connect("m1", false));
    collect(&mut h2, m);
    for i in 0..5u8 {
        h2.message("t", &[i], MqttQoS::ExactlyOnce, false);
        let sent = collect(&mut h2, m);
        for p in &sent {
            let id = match p {
                Packet::Publish(p) => p.msg_id,
                Packet::Register(r) => r.msg_id,
                _ => continue,
            };
            assert_ne!(id, held, "MsgId {held} reused after the restart: {sent:?}");
            if let Packet::Publish(p) = p {
                h2.send(m, Packet::PubRec { msg_id: p.msg_id });
                h2.send(m, Packet::PubComp { msg_id: p.msg_id });
            }
        }
    }
}

#[test]
fn seed_32_a_repeated_connect_keeps_the_clients_qos2_exchange() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 1,
            topic_name: b"up",
        }),
    );
    let topic_id = match packets(&mut h, m).as_slice() {
        [Packet::RegAck(ack)] => ack.topic_id,
        other => panic!("{other:?}"),
    };
    let publish = |dup| {
        Packet::Publish(Publish {
            dup,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: PublishTopic::Normal(topic_id),
            msg_id: 15,
            data: b"once",
        })
    };
    h.send(m, publish(false));
    let id = h.one_publish().id.unwrap();
    h.ack(id);
    assert_eq!(packets(&mut h, m), vec![Packet::PubRec { msg_id: 15 }]);
    // The radio delivers the mote's CONNECT a second time, and the mote, its PUBREC lost,
    // sends the PUBLISH again.
    h.send(m, connect("m1", false));
    h.drain();
    h.send(m, publish(true));
    assert!(h.publishes().is_empty(), "not forwarded a second time");
    assert!(packets(&mut h, m).contains(&Packet::PubRec { msg_id: 15 }));
}

#[test]
fn seed_53_an_acknowledgement_outlives_the_connection_that_lost_it() {
    for session_present in [true, false] {
        let mut h = Harness::new();
        let m = peer(1000);
        h.connect(m, "m1", false, 600);
        subscribe(&mut h, m, "q", QoS::AtLeastOnce);
        h.broker(BrokerEvent::Message {
            topic: "q".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: MqttQoS::AtLeastOnce,
            retain: false,
            delivery: Some(DeliveryId(7)),
        });
        // The connection drops before the link took the acknowledgement.
        h.broker(BrokerEvent::Disconnected);
        h.broker(BrokerEvent::Connected { session_present });
        let acked = h.commands().contains(&BrokerCommand::Ack {
            delivery: DeliveryId(7),
        });
        // With the session kept, the broker waits for it (and a link that hands a resent
        // QoS 2 message over only once would never let the core acknowledge it again);
        // without, the broker has forgotten the message.
        assert_eq!(acked, session_present, "session_present {session_present}");
    }
}

#[test]
fn seed_165_a_clean_session_does_not_get_the_old_sessions_message_in_flight() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::ExactlyOnce);
    h.message("t", b"old", MqttQoS::ExactlyOnce, false);
    assert_eq!(publishes(&packets(&mut h, m)).len(), 1, "in flight");
    // The mote starts afresh: the old session, its message in flight included, is gone.
    h.send(m, connect("m1", true));
    let sent = collect(&mut h, m);
    assert!(
        publishes(&sent).is_empty(),
        "the old session's message went to the clean one: {sent:?}"
    );
    assert_eq!(h.gw.session_info("m1").unwrap().queued, 0);
}

#[test]
fn seed_10897174275170391839_queued_messages_keep_their_order_across_a_restart() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    // CleanSession=1: nothing is stored while it is connected.
    h.connect(m, "m1", true, 600);
    subscribe(&mut h, m, "t", QoS::AtLeastOnce);
    h.message("t", b"A", MqttQoS::AtLeastOnce, false);
    h.message("t", b"B", MqttQoS::AtLeastOnce, false);
    h.drain();
    // It connects again with CleanSession=0 (its session goes on, durable now), a third
    // message arrives, and it goes to sleep without acknowledging anything.
    h.send(m, connect("m1", false));
    h.drain();
    h.message("t", b"C", MqttQoS::AtLeastOnce, false);
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(600),
        }),
    );
    h.drain();
    store.apply(&mut h);
    // The gateway restarts; the mote reconnects and gets its messages in order.
    let mut h2 = restart(&h, &store);
    h2.drain();
    h2.send(m, connect("m1", false));
    let mut got = Vec::new();
    for _ in 0..10 {
        let sent = collect(&mut h2, m);
        let publishes = publishes(&sent);
        if publishes.is_empty() {
            break;
        }
        for p in publishes {
            got.push(p.data.to_vec());
            h2.send(
                m,
                Packet::PubAck(sn_codec::v12::PubAck {
                    topic_id: match p.topic {
                        PublishTopic::Normal(id) => id,
                        _ => 0,
                    },
                    msg_id: p.msg_id,
                    return_code: sn_codec::v12::ReturnCode::Accepted,
                }),
            );
        }
    }
    assert_eq!(got, vec![b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]);
}

/// Found with seed 15458902360647533030: the gateway restarted while a connected
/// CleanSession=0 mote had messages queued. Restored as connected, the session got nothing:
/// its queue started moving only when the next message for it arrived, and in a quiet spell
/// the mote (which only pinged) never got what was owed.
#[test]
fn seed_15458902360647533030_a_connected_clients_queue_moves_after_a_restart() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::AtLeastOnce);
    h.message("t", b"A", MqttQoS::AtLeastOnce, false);
    h.message("t", b"B", MqttQoS::AtLeastOnce, false);
    // The first goes out (and is lost on the radio); the gateway dies.
    collect(&mut h, m);
    store.apply(&mut h);
    let mut h2 = restart(&h, &store);
    // The restarted gateway's own announcements aside, what it sends is for the mote.
    let mut sent: Vec<Packet<'static>> = h2
        .transmits()
        .into_iter()
        .filter(|t| t.destination == Destination::Unicast(m.addr))
        .map(|t| {
            let leaked: &'static [u8] = Box::leak(t.datagram.to_vec().into_boxed_slice());
            Packet::decode(leaked).unwrap()
        })
        .collect();
    // No new message, only the mote's keep-alive: what it is owed goes out all the same.
    h2.send(m, Packet::PingReq { client_id: b"" });
    let mut got = Vec::new();
    for _ in 0..10 {
        sent.extend(collect(&mut h2, m));
        let publishes = publishes(&std::mem::take(&mut sent));
        for p in &publishes {
            got.push(p.data.to_vec());
            h2.send(
                m,
                Packet::PubAck(sn_codec::v12::PubAck {
                    topic_id: match p.topic {
                        PublishTopic::Normal(id) => id,
                        _ => 0,
                    },
                    msg_id: p.msg_id,
                    return_code: sn_codec::v12::ReturnCode::Accepted,
                }),
            );
        }
        if publishes.is_empty() {
            break;
        }
    }
    assert_eq!(got, vec![b"A".to_vec(), b"B".to_vec()]);
}

/// Wakes or reconnects `m` and then acknowledges every PUBLISH the gateway sends, answering
/// its REGISTERs: what it delivered, in order, with MsgId and DUP.
fn drain_publishes(h: &mut Harness, m: Peer, wake: Packet<'_>) -> Vec<(Vec<u8>, u16, bool)> {
    h.send(m, wake);
    let mut order = Vec::new();
    loop {
        let sent = publishes(&collect(h, m));
        let Some(p) = sent.first() else {
            return order;
        };
        order.push((p.data.to_vec(), p.msg_id, p.dup));
        h.send(
            m,
            Packet::PubAck(sn_codec::v12::PubAck {
                topic_id: match p.topic {
                    PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
                    _ => 0,
                },
                msg_id: p.msg_id,
                return_code: sn_codec::v12::ReturnCode::Accepted,
            }),
        );
    }
}

#[test]
fn seed_5774334240319897551_drop_oldest_keeps_a_message_already_sent() {
    // The mote was sent message A, and then went to sleep (or was lost, or reconnected)
    // before acknowledging it: A went back to the front of the queue, to go again with its
    // MsgId and DUP. Its datagram may still be on the way (in the radio, or held by the
    // store gate while writes fail, as in the seed's run). Messages B and C then overflow
    // the queue. Dropping A (the oldest) and sending B and C would let the late copy of A
    // reach the mote after B: out of order on one topic in one session. A keeps its place
    // as a message in flight does; B (the oldest not yet sent) gives way.
    let mut h = Harness::with_config(CoreConfig {
        max_queued_per_session: 2,
        queue_overflow: QueueOverflow::DropOldest,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::AtLeastOnce);
    h.message("t", b"A", MqttQoS::AtLeastOnce, false);
    let first = publishes(&collect(&mut h, m));
    assert_eq!(first.len(), 1, "A in flight");
    assert_eq!(first[0].data, b"A");
    h.send(m, Packet::Disconnect(Disconnect { duration: Some(60) }));
    h.drain();
    for payload in [&b"B"[..], b"C"] {
        h.message("t", payload, MqttQoS::AtLeastOnce, false);
    }
    assert_eq!(h.gw.session_info("m1").unwrap().queued, 2);
    // Waking: A goes first, as the same message (MsgId, DUP), then C.
    let order = drain_publishes(&mut h, m, Packet::PingReq { client_id: b"m1" });
    let payloads: Vec<&[u8]> = order.iter().map(|(d, _, _)| d.as_slice()).collect();
    assert_eq!(
        payloads,
        vec![&b"A"[..], b"C"],
        "A kept and first, B dropped"
    );
    assert_eq!(order[0].1, first[0].msg_id, "A with its MsgId");
    assert!(order[0].2, "and DUP");
}

#[test]
fn seed_2784978412893464590_drop_oldest_keeps_a_message_sent_to_a_lost_client() {
    // The run's path: the mote woke, the gateway sent it A, and (its datagrams held while
    // store writes failed) ran out of retries and declared it lost. A waits at the front
    // of the offline session's queue; B and C overflow it; the mote reconnects. The copies
    // of A sent before it was lost may still arrive, so A must go before C, not be dropped.
    let mut h = Harness::with_config(CoreConfig {
        max_queued_per_session: 2,
        queue_overflow: QueueOverflow::DropOldest,
        ..CoreConfig::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::AtLeastOnce);
    h.message("t", b"A", MqttQoS::AtLeastOnce, false);
    let first = publishes(&collect(&mut h, m));
    assert_eq!(first.len(), 1, "A in flight");
    // No answer: retransmissions, then the client is lost.
    for _ in 0..40 {
        h.advance(std::time::Duration::from_secs(30));
    }
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, sn_core::Event::Lost { .. })),
        "the client is lost"
    );
    h.drain();
    for payload in [&b"B"[..], b"C"] {
        h.message("t", payload, MqttQoS::AtLeastOnce, false);
    }
    let order = drain_publishes(&mut h, m, connect("m1", false));
    let payloads: Vec<&[u8]> = order.iter().map(|(d, _, _)| d.as_slice()).collect();
    assert_eq!(
        payloads,
        vec![&b"A"[..], b"C"],
        "A kept and first, B dropped"
    );
    assert_eq!(order[0].1, first[0].msg_id, "A with its MsgId");
    assert!(order[0].2, "and DUP");
}

#[test]
fn seed_2_a_qos2_publish_refused_for_its_topic_id_goes_again_with_its_msgid() {
    // `--seed 2 --motes 2000 --minutes 120`: the mote subscribed to a topic name; the
    // gateway gave the topic an id in the SUBACK and sent a QoS 2 message with it. The
    // radio lost that PUBLISH and delivered its retransmission before the SUBACK: the mote
    // answered PUBACK "invalid topic ID". A second retransmission, already sent, arrived
    // after the SUBACK and was taken (PUBREC). The gateway registered the topic and sent the
    // message as a new exchange, new MsgId, no DUP: the mote delivered it twice.
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", false, 600);
    subscribe(&mut h, m, "t", QoS::ExactlyOnce);
    h.message("t", b"x", MqttQoS::ExactlyOnce, false);
    let first = publishes(&packets(&mut h, m));
    assert_eq!(first.len(), 1);
    let (msg_id, topic_id) = match first[0].topic {
        PublishTopic::Normal(id) => (first[0].msg_id, id),
        other => panic!("{other:?}"),
    };
    // The retransmission goes out before the refusal of the first copy arrives.
    h.advance(std::time::Duration::from_secs(11));
    let again = publishes(&packets(&mut h, m));
    assert_eq!(again.len(), 1, "retransmitted");
    h.send(
        m,
        Packet::PubAck(sn_codec::v12::PubAck {
            topic_id,
            msg_id,
            return_code: sn_codec::v12::ReturnCode::InvalidTopicId,
        }),
    );
    // The retransmission was taken.
    h.send(m, Packet::PubRec { msg_id });
    let resent = publishes(&collect(&mut h, m));
    assert_eq!(resent.len(), 1, "sent again after the REGISTER");
    assert_eq!(resent[0].msg_id, msg_id, "with its MsgId");
    assert!(
        resent[0].dup,
        "and DUP: a repeat to a client that took a copy"
    );
}
