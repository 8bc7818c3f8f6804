//! Scripted exchanges with a fake clock: what the client sends, when, and what it reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    SubAck, Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
use sn_codec::QoS;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// A client with T_retry 1 s, N_retry 2, and a fake clock.
struct Script {
    client: Client,
    t0: Instant,
}

fn bytes(packet: &Packet<'_>) -> Vec<u8> {
    packet.to_vec().unwrap()
}

impl Script {
    fn new() -> Self {
        let mut config = ClientConfig::new("c1");
        config.timing = Timing::new(SECOND, 2);
        Script::with(config)
    }

    fn with(config: ClientConfig) -> Self {
        Script {
            client: Client::new(config),
            t0: Instant::now(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    /// Everything the client wants sent, in order.
    fn sent(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while self.client.poll_transmit(&mut buf) {
            out.push(buf.clone());
        }
        out
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// The messages among the events, in order (the other events are dropped).
    fn messages(&mut self) -> Vec<Message> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// At 0.1 s the gateway sends a QoS 2 PUBLISH with `msg_id` on the short topic `ab`; the
    /// client PUBRECs it and reports it. No PUBREL follows.
    fn take_qos2_without_pubrel(&mut self, msg_id: u16) {
        let qos2 = publish(PublishTopic::Short(*b"ab"), QoS::ExactlyOnce, msg_id, false);
        self.give(0.1, &qos2);
        self.sent();
        self.events();
    }

    /// At 1 s the gateway's new session sends a QoS 2 message with `msg_id` on `ab`: the
    /// client takes it as a new message, not as a repeat of the one it held.
    fn expect_a_new_message_with(&mut self, msg_id: u16) {
        let other = Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: PublishTopic::Short(*b"ab"),
            msg_id,
            data: b"new",
        });
        self.give(1.0, &other);
        let messages = self.messages();
        assert_eq!(messages.len(), 1);
        assert!(!messages[0].repeat, "a new message of the new session");
    }

    fn feed(&mut self, secs: f64, packet: &Packet<'_>) -> Received {
        let now = self.at(secs);
        self.client.handle_datagram(now, &bytes(packet))
    }

    /// [`Script::feed`] where what it made of the packet is not the point.
    fn give(&mut self, secs: f64, packet: &Packet<'_>) {
        let _ = self.feed(secs, packet);
    }

    fn tick(&mut self, secs: f64) {
        let now = self.at(secs);
        self.client.handle_timeout(now);
    }

    fn connect(&mut self, keep_alive: u16) {
        self.connect_with(keep_alive, true);
    }

    fn connect_keeping_session(&mut self, keep_alive: u16) {
        self.connect_with(keep_alive, false);
    }

    fn connect_with(&mut self, keep_alive: u16, clean_session: bool) {
        let options = ConnectOptions {
            keep_alive,
            clean_session,
            will: None,
        };
        self.client.connect(self.at(0.0), &options).unwrap();
        self.sent();
        assert_eq!(
            self.feed(
                0.0,
                &Packet::ConnAck {
                    return_code: ReturnCode::Accepted
                }
            ),
            Received::Consumed
        );
        assert_eq!(self.events(), vec![Event::ConnAck(ReturnCode::Accepted)]);
    }
}

fn publish(topic: PublishTopic<'static>, qos: QoS, msg_id: u16, dup: bool) -> Packet<'static> {
    Packet::Publish(Publish {
        dup,
        qos,
        retain: false,
        topic,
        msg_id,
        data: b"hi",
    })
}

#[test]
fn connect_sends_connect_and_reports_the_connack() {
    let mut s = Script::new();
    let options = ConnectOptions {
        keep_alive: 30,
        clean_session: false,
        will: None,
    };
    s.client.connect(s.at(0.0), &options).unwrap();
    let connect = Packet::Connect(Connect {
        will: false,
        clean_session: false,
        protocol_id: 1,
        duration: 30,
        client_id: b"c1",
    });
    assert_eq!(s.sent(), vec![bytes(&connect)]);
    assert_eq!(s.client.pending(), Some(Request::Connect));
    assert_eq!(
        s.feed(
            0.1,
            &Packet::ConnAck {
                return_code: ReturnCode::Congestion
            }
        ),
        Received::Consumed
    );
    assert_eq!(s.events(), vec![Event::ConnAck(ReturnCode::Congestion)]);
    assert_eq!(s.client.pending(), None);
    // Refused: no keep-alive timer.
    assert_eq!(s.client.poll_timeout(), None);
}

#[test]
fn connect_with_a_will_answers_each_request_of_the_handshake() {
    let mut s = Script::new();
    let will = Will {
        topic: "w/t".into(),
        message: b"gone".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let options = ConnectOptions {
        keep_alive: 10,
        clean_session: true,
        will: Some(will),
    };
    s.client.connect(s.at(0.0), &options).unwrap();
    let sent = s.sent();
    assert!(matches!(Packet::decode(&sent[0]), Ok(Packet::Connect(c)) if c.will));
    assert_eq!(s.feed(0.1, &Packet::WillTopicReq), Received::Consumed);
    let willtopic = Packet::WillTopic(Some(WillTopic {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: b"w/t",
    }));
    assert_eq!(s.sent(), vec![bytes(&willtopic)]);
    // The WILLTOPIC is what is resent now, a full T_retry after the progress.
    assert_eq!(s.client.poll_timeout(), Some(s.at(1.1)));
    s.tick(1.1);
    assert_eq!(s.sent(), vec![bytes(&willtopic)]);
    assert_eq!(s.feed(1.2, &Packet::WillMsgReq), Received::Consumed);
    assert_eq!(s.sent(), vec![bytes(&Packet::WillMsg { msg: b"gone" })]);
    assert_eq!(s.client.pending(), Some(Request::WillMsg));
    s.give(
        1.3,
        &Packet::ConnAck {
            return_code: ReturnCode::Accepted,
        },
    );
    assert_eq!(s.events(), vec![Event::ConnAck(ReturnCode::Accepted)]);
}

#[test]
fn a_will_request_without_a_will_is_not_an_answer() {
    let mut s = Script::new();
    let options = ConnectOptions {
        keep_alive: 10,
        clean_session: true,
        will: None,
    };
    s.client.connect(s.at(0.0), &options).unwrap();
    s.sent();
    assert_eq!(s.feed(0.1, &Packet::WillTopicReq), Received::Unexpected);
    assert_eq!(s.client.pending(), Some(Request::Connect));
}

#[test]
fn an_unanswered_request_is_resent_n_retry_times_then_given_up() {
    let mut s = Script::new();
    s.client.ping(s.at(0.0)).unwrap();
    let ping = bytes(&Packet::PingReq { client_id: &[] });
    assert_eq!(s.sent(), vec![ping.clone()]);
    assert_eq!(s.client.poll_timeout(), Some(s.at(1.0)));
    s.tick(0.5); // too early: nothing
    assert!(s.sent().is_empty());
    s.tick(1.0);
    assert_eq!(s.sent(), vec![ping.clone()]);
    s.tick(2.0);
    assert_eq!(s.sent(), vec![ping]);
    // N_retry = 2 resends done: the next deadline is the timeout, 3 × T_retry.
    assert_eq!(s.client.poll_timeout(), Some(s.at(3.0)));
    s.tick(3.0);
    assert!(s.sent().is_empty());
    assert_eq!(s.events(), vec![Event::TimedOut(Request::Ping)]);
    assert_eq!(s.client.pending(), None);
    assert_eq!(s.client.retransmits(), 2);
}

#[test]
fn a_shorter_timeout_ends_the_schedule_early() {
    let mut s = Script::new();
    s.client
        .set_timing(Timing::new(SECOND, 5).with_timeout(Duration::from_millis(1500)));
    s.client.ping(s.at(0.0)).unwrap();
    s.tick(1.0);
    assert_eq!(s.client.poll_timeout(), Some(s.at(1.5)));
    s.tick(1.5);
    assert_eq!(s.events(), vec![Event::TimedOut(Request::Ping)]);
}

/// What the bench motes build their CONNECT budget on: the time of the last send, a refusal
/// that ends the request, and timers set per request (no resend at N_retry 0).
#[test]
fn request_sent_at_is_the_last_send_and_timers_apply_per_request() {
    let mut s = Script::new();
    let options = ConnectOptions {
        keep_alive: 0,
        clean_session: true,
        will: None,
    };
    s.client.connect(s.at(0.0), &options).unwrap();
    assert_eq!(s.client.request_sent_at(), Some(s.at(0.0)));
    s.tick(1.0);
    assert_eq!(s.sent().len(), 2);
    assert_eq!(s.client.request_sent_at(), Some(s.at(1.0)));
    s.give(
        1.2,
        &Packet::ConnAck {
            return_code: ReturnCode::Congestion,
        },
    );
    assert_eq!(s.events(), vec![Event::ConnAck(ReturnCode::Congestion)]);
    assert_eq!(s.client.pending(), None);
    assert_eq!(s.client.request_sent_at(), Some(s.at(1.0)));
    // One send left: no resend, given up one T_retry after it.
    s.client.set_timing(Timing::new(SECOND, 0));
    s.client.connect(s.at(2.0), &options).unwrap();
    assert_eq!(s.sent().len(), 1);
    assert_eq!(s.client.poll_timeout(), Some(s.at(3.0)));
    s.tick(3.0);
    assert!(s.sent().is_empty());
    assert_eq!(s.events(), vec![Event::TimedOut(Request::Connect)]);
    assert_eq!(s.client.retransmits(), 1);
}

#[test]
fn one_request_at_a_time_but_qos0_goes_any_time() {
    let mut s = Script::new();
    s.client.ping(s.at(0.0)).unwrap();
    assert_eq!(
        s.client.register(s.at(0.0), "a"),
        Err(ClientError::Busy(Request::Ping))
    );
    let id = s
        .client
        .publish(
            s.at(0.0),
            PublishTopic::Normal(1),
            QoS::AtMostOnce,
            false,
            b"x",
        )
        .unwrap();
    assert_eq!(id, 0);
    assert_eq!(s.sent().len(), 2);
    assert_eq!(s.client.abandon(), Some(Request::Ping));
    assert!(s.client.register(s.at(0.0), "a").is_ok());
}

#[test]
fn register_remembers_the_name_the_gateway_accepted() {
    let mut s = Script::new();
    let msg_id = s.client.register(s.at(0.0), "a/b").unwrap();
    let register = Packet::Register(Register {
        topic_id: 0,
        msg_id,
        topic_name: b"a/b",
    });
    assert_eq!(s.sent(), vec![bytes(&register)]);
    // A REGACK for another MsgId is not the answer.
    let other = Packet::RegAck(RegAck {
        topic_id: 9,
        msg_id: msg_id + 1,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.feed(0.1, &other), Received::Unexpected);
    let ack = Packet::RegAck(RegAck {
        topic_id: 7,
        msg_id,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.feed(0.2, &ack), Received::Consumed);
    assert_eq!(
        s.events(),
        vec![Event::RegAck {
            msg_id,
            topic_id: 7,
            code: ReturnCode::Accepted
        }]
    );
    assert_eq!(s.client.topic_name(7), Some("a/b"));
}

#[test]
fn qos1_publish_is_resent_with_dup_until_its_puback() {
    let mut s = Script::new();
    let msg_id = s
        .client
        .publish(
            s.at(0.0),
            PublishTopic::Normal(5),
            QoS::AtLeastOnce,
            false,
            b"hi",
        )
        .unwrap();
    assert_ne!(msg_id, 0);
    let first = publish(PublishTopic::Normal(5), QoS::AtLeastOnce, msg_id, false);
    let again = publish(PublishTopic::Normal(5), QoS::AtLeastOnce, msg_id, true);
    assert_eq!(s.sent(), vec![bytes(&first)]);
    s.tick(1.0);
    assert_eq!(s.sent(), vec![bytes(&again)]);
    let puback = Packet::PubAck(PubAck {
        topic_id: 5,
        msg_id,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.feed(1.5, &puback), Received::Consumed);
    assert_eq!(
        s.events(),
        vec![Event::Published {
            msg_id,
            code: ReturnCode::Accepted
        }]
    );
}

#[test]
fn qos2_publish_releases_after_pubrec_and_releases_again_on_a_repeat() {
    let mut s = Script::new();
    let msg_id = s
        .client
        .publish(
            s.at(0.0),
            PublishTopic::Short(*b"ab"),
            QoS::ExactlyOnce,
            false,
            b"hi",
        )
        .unwrap();
    s.sent();
    assert_eq!(
        s.client.pending(),
        Some(Request::Publish {
            msg_id,
            qos: QoS::ExactlyOnce
        })
    );
    // An accepting PUBACK is no answer to a QoS 2 PUBLISH.
    let puback = Packet::PubAck(PubAck {
        topic_id: 0,
        msg_id,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.feed(0.1, &puback), Received::Unexpected);
    let pubrel = bytes(&Packet::PubRel { msg_id });
    s.give(0.2, &Packet::PubRec { msg_id });
    assert_eq!(s.sent(), vec![pubrel.clone()]);
    assert_eq!(s.client.pending(), Some(Request::PubRel { msg_id }));
    // Our PUBREL was lost: the gateway repeats PUBREC.
    s.give(0.9, &Packet::PubRec { msg_id });
    assert_eq!(s.sent(), vec![pubrel.clone()]);
    // Resent as it is (no DUP on PUBREL), a T_retry after the last progress.
    s.tick(1.9);
    assert_eq!(s.sent(), vec![pubrel]);
    s.give(2.0, &Packet::PubComp { msg_id });
    assert_eq!(
        s.events(),
        vec![Event::Published {
            msg_id,
            code: ReturnCode::Accepted
        }]
    );
}

#[test]
fn a_refusing_puback_ends_a_qos2_publish() {
    let mut s = Script::new();
    let msg_id = s
        .client
        .publish(
            s.at(0.0),
            PublishTopic::Normal(3),
            QoS::ExactlyOnce,
            false,
            b"hi",
        )
        .unwrap();
    let refusal = Packet::PubAck(PubAck {
        topic_id: 3,
        msg_id,
        return_code: ReturnCode::InvalidTopicId,
    });
    s.give(0.1, &refusal);
    assert_eq!(
        s.events(),
        vec![Event::Published {
            msg_id,
            code: ReturnCode::InvalidTopicId
        }]
    );
}

#[test]
fn subscribe_resends_with_dup_and_remembers_a_plain_name() {
    let mut s = Script::new();
    let msg_id = s
        .client
        .subscribe(s.at(0.0), SubscribeTopic::Name(b"s/t"), QoS::AtLeastOnce)
        .unwrap();
    s.sent();
    s.tick(1.0);
    let again = Packet::Subscribe(Subscribe {
        dup: true,
        qos: QoS::AtLeastOnce,
        msg_id,
        topic: SubscribeTopic::Name(b"s/t"),
    });
    assert_eq!(s.sent(), vec![bytes(&again)]);
    let ack = SubAck {
        qos: QoS::AtLeastOnce,
        topic_id: 12,
        msg_id,
        return_code: ReturnCode::Accepted,
    };
    s.give(1.1, &Packet::SubAck(ack));
    assert_eq!(s.events(), vec![Event::SubAck(ack)]);
    assert_eq!(s.client.topic_name(12), Some("s/t"));
    // A filter's id is not a name.
    let msg_id = s
        .client
        .subscribe(s.at(2.0), SubscribeTopic::Name(b"s/#"), QoS::AtMostOnce)
        .unwrap();
    s.give(
        2.1,
        &Packet::SubAck(SubAck {
            topic_id: 13,
            msg_id,
            ..ack
        }),
    );
    assert_eq!(s.client.topic_name(13), None);
}

#[test]
fn unsubscribe_waits_for_its_unsuback() {
    let mut s = Script::new();
    let msg_id = s
        .client
        .unsubscribe(s.at(0.0), SubscribeTopic::Predefined(4))
        .unwrap();
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        msg_id,
        topic: SubscribeTopic::Predefined(4),
    });
    assert_eq!(s.sent(), vec![bytes(&unsubscribe)]);
    s.give(0.1, &Packet::UnsubAck { msg_id });
    assert_eq!(s.events(), vec![Event::UnsubAck { msg_id }]);
}

#[test]
fn gateway_register_is_acknowledged_and_names_later_publishes() {
    let mut s = Script::new();
    let register = Packet::Register(Register {
        topic_id: 21,
        msg_id: 3,
        topic_name: b"x/y",
    });
    assert_eq!(s.feed(0.0, &register), Received::Consumed);
    let regack = Packet::RegAck(RegAck {
        topic_id: 21,
        msg_id: 3,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.sent(), vec![bytes(&regack)]);
    s.give(
        0.1,
        &publish(PublishTopic::Normal(21), QoS::AtMostOnce, 0, false),
    );
    let events = s.events();
    assert_eq!(
        events[0],
        Event::Registered {
            topic_id: 21,
            name: "x/y".into()
        }
    );
    let Event::Message(m) = &events[1] else {
        panic!("no message: {events:?}");
    };
    assert_eq!(m.topic_name.as_deref(), Some("x/y"));
    assert_eq!(m.payload, b"hi");
    // A reserved id is refused.
    let reserved = Packet::Register(Register {
        topic_id: 0xFFFF,
        msg_id: 4,
        topic_name: b"z",
    });
    s.give(0.2, &reserved);
    let refusal = Packet::RegAck(RegAck {
        topic_id: 0xFFFF,
        msg_id: 4,
        return_code: ReturnCode::InvalidTopicId,
    });
    assert_eq!(s.sent(), vec![bytes(&refusal)]);
    assert!(s.events().is_empty());
}

#[test]
fn received_publishes_are_acknowledged_at_their_qos() {
    let mut s = Script::new();
    s.client.name_predefined(1, "pre/one");
    s.give(
        0.0,
        &publish(PublishTopic::Predefined(1), QoS::AtLeastOnce, 8, false),
    );
    let puback = Packet::PubAck(PubAck {
        topic_id: 1,
        msg_id: 8,
        return_code: ReturnCode::Accepted,
    });
    assert_eq!(s.sent(), vec![bytes(&puback)]);
    let qos2 = publish(PublishTopic::Short(*b"ab"), QoS::ExactlyOnce, 9, false);
    s.give(0.1, &qos2);
    s.give(0.2, &qos2);
    let pubrec = bytes(&Packet::PubRec { msg_id: 9 });
    assert_eq!(s.sent(), vec![pubrec.clone(), pubrec]);
    s.give(0.3, &Packet::PubRel { msg_id: 9 });
    assert_eq!(s.sent(), vec![bytes(&Packet::PubComp { msg_id: 9 })]);
    let messages = s.messages();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].topic_name.as_deref(), Some("pre/one"));
    assert_eq!(messages[1].topic_name.as_deref(), Some("ab"));
    assert!(!messages[1].repeat);
    assert!(messages[2].repeat, "the repeat before PUBREL is flagged");
    // After PUBREL the id is free again.
    s.give(0.4, &qos2);
    let Some(Event::Message(m)) = s.client.poll_event() else {
        panic!("no message");
    };
    assert!(!m.repeat);
}

#[test]
fn unknown_topic_ids_are_rejected_or_accepted_as_configured() {
    let mut s = Script::new();
    s.give(
        0.0,
        &publish(PublishTopic::Normal(77), QoS::AtLeastOnce, 2, false),
    );
    let nack = Packet::PubAck(PubAck {
        topic_id: 77,
        msg_id: 2,
        return_code: ReturnCode::InvalidTopicId,
    });
    assert_eq!(s.sent(), vec![bytes(&nack)]);
    assert!(s.events().is_empty());

    let mut config = ClientConfig::new("c2");
    config.unknown_topic_ids = UnknownTopicIds::Accept;
    let mut s = Script::with(config);
    s.give(
        0.0,
        &publish(PublishTopic::Normal(77), QoS::AtLeastOnce, 2, false),
    );
    let ack = Packet::PubAck(PubAck {
        return_code: ReturnCode::Accepted,
        topic_id: 77,
        msg_id: 2,
    });
    assert_eq!(s.sent(), vec![bytes(&ack)]);
    assert!(matches!(&s.events()[..], [Event::Message(m)] if m.topic_name.is_none()));
}

#[test]
fn what_the_client_does_not_expect_is_reported_unexpected() {
    let mut s = Script::new();
    assert_eq!(
        s.client.handle_datagram(s.at(0.0), &[0x05, 0xff]),
        Received::Undecodable
    );
    assert_eq!(
        s.feed(
            0.0,
            &Packet::ConnAck {
                return_code: ReturnCode::Accepted
            }
        ),
        Received::Unexpected
    );
    assert_eq!(
        s.feed(0.0, &Packet::Disconnect(Disconnect { duration: None })),
        Received::Unexpected
    );
    let refusal = Packet::PubAck(PubAck {
        topic_id: 1,
        msg_id: 0,
        return_code: ReturnCode::Congestion,
    });
    assert_eq!(s.feed(0.0, &refusal), Received::Unexpected);
    assert_eq!(
        s.events(),
        vec![
            Event::Disconnected { duration: None },
            Event::Rejected {
                topic_id: 1,
                msg_id: 0,
                code: ReturnCode::Congestion
            }
        ]
    );
    // PINGREQ is answered.
    assert_eq!(
        s.feed(0.0, &Packet::PingReq { client_id: &[] }),
        Received::Consumed
    );
    assert_eq!(s.sent(), vec![bytes(&Packet::PingResp)]);
}

#[test]
fn keep_alive_pings_when_idle_and_declares_the_gateway_lost() {
    let mut s = Script::new();
    s.connect(5);
    let ping = bytes(&Packet::PingReq { client_id: &[] });
    assert_eq!(s.client.poll_timeout(), Some(s.at(5.0)));
    s.tick(5.0);
    assert_eq!(s.sent(), vec![ping.clone()]);
    // Answered: the next ping is a keep-alive period after the last send.
    assert_eq!(s.feed(5.1, &Packet::PingResp), Received::Consumed);
    assert_eq!(s.client.poll_timeout(), Some(s.at(10.0)));
    // Sending anything moves it.
    s.client
        .publish(
            s.at(7.0),
            PublishTopic::Normal(1),
            QoS::AtMostOnce,
            false,
            b"",
        )
        .unwrap();
    s.sent();
    assert_eq!(s.client.poll_timeout(), Some(s.at(12.0)));
    s.tick(12.0);
    assert_eq!(s.sent(), vec![ping.clone()]);
    s.tick(13.0);
    assert_eq!(s.sent(), vec![ping]);
    // Lost T_retry × N_retry after the first PINGREQ.
    assert_eq!(s.client.poll_timeout(), Some(s.at(14.0)));
    s.tick(14.0);
    assert_eq!(
        s.events(),
        vec![Event::GatewayLost {
            after: Duration::from_secs(2)
        }]
    );
    assert_eq!(s.client.poll_timeout(), None);
}

#[test]
fn without_keep_alive_pings_the_client_stays_silent() {
    let mut config = ClientConfig::new("quiet");
    config.keep_alive_pings = false;
    let mut s = Script::with(config);
    s.connect(5);
    assert_eq!(s.client.poll_timeout(), None);
}

#[test]
fn sleep_stops_keep_alive_and_wake_collects_what_waited() {
    let mut s = Script::new();
    s.connect(5);
    s.client.sleep(s.at(1.0), 60).unwrap();
    let sleep = Packet::Disconnect(Disconnect { duration: Some(60) });
    assert_eq!(s.sent(), vec![bytes(&sleep)]);
    s.give(1.1, &Packet::Disconnect(Disconnect { duration: None }));
    assert_eq!(s.events(), vec![Event::DisconnectAck]);
    assert_eq!(s.client.poll_timeout(), None);

    s.client.wake(s.at(30.0)).unwrap();
    assert_eq!(s.sent(), vec![bytes(&Packet::PingReq { client_id: b"c1" })]);
    s.give(
        30.1,
        &publish(PublishTopic::Short(*b"zz"), QoS::AtMostOnce, 0, false),
    );
    s.give(30.2, &Packet::PingResp);
    let events = s.events();
    assert!(matches!(events[0], Event::Message(_)));
    assert_eq!(events[1], Event::PingResp);
}

#[test]
fn disconnect_waits_for_the_gateways_disconnect() {
    let mut s = Script::new();
    s.connect(5);
    s.client.disconnect(s.at(1.0)).unwrap();
    assert_eq!(
        s.sent(),
        vec![bytes(&Packet::Disconnect(Disconnect { duration: None }))]
    );
    assert_eq!(
        s.feed(1.1, &Packet::Disconnect(Disconnect { duration: None })),
        Received::Consumed
    );
    assert_eq!(s.events(), vec![Event::DisconnectAck]);
    assert_eq!(s.client.poll_timeout(), None);
}

#[test]
fn will_updates_report_their_return_codes() {
    let mut s = Script::new();
    s.client.update_will_topic(s.at(0.0), None).unwrap();
    assert_eq!(s.sent(), vec![bytes(&Packet::WillTopicUpd(None))]);
    s.give(
        0.1,
        &Packet::WillTopicResp {
            return_code: ReturnCode::Accepted,
        },
    );
    s.client.update_will_message(s.at(0.2), b"m").unwrap();
    s.give(
        0.3,
        &Packet::WillMsgResp {
            return_code: ReturnCode::NotSupported,
        },
    );
    assert_eq!(
        s.events(),
        vec![
            Event::WillTopicResp(ReturnCode::Accepted),
            Event::WillMsgResp(ReturnCode::NotSupported)
        ]
    );
}

#[test]
fn dup_bit_lands_on_the_flags_byte_in_both_length_forms() {
    let mut short = bytes(&publish(
        PublishTopic::Normal(1),
        QoS::AtLeastOnce,
        2,
        false,
    ));
    set_dup(&mut short);
    assert!(matches!(Packet::decode(&short), Ok(Packet::Publish(p)) if p.dup && p.msg_id == 2));
    let long = vec![b'x'; 300];
    let mut long = bytes(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(1),
        msg_id: 2,
        data: &long,
    }));
    set_dup(&mut long);
    assert!(matches!(Packet::decode(&long), Ok(Packet::Publish(p)) if p.dup));
}

#[test]
fn publish_with_a_chosen_msg_id() {
    let mut s = Script::new();
    s.client
        .publish_with_id(
            s.at(0.0),
            PublishTopic::Normal(1),
            QoS::AtLeastOnce,
            false,
            b"hi",
            4242,
        )
        .unwrap();
    assert_eq!(
        s.sent(),
        vec![bytes(&publish(
            PublishTopic::Normal(1),
            QoS::AtLeastOnce,
            4242,
            false
        ))]
    );
    assert_eq!(
        s.client.pending(),
        Some(Request::Publish {
            msg_id: 4242,
            qos: QoS::AtLeastOnce
        })
    );
}

/// Found by the gateway simulation (sim/, seed 144): a QoS 2 PUBLISH whose PUBREL never came
/// (the gateway restarted) left its MsgId held; after a CleanSession=1 CONNECT the gateway's
/// new session used that MsgId again, and the client dropped the new message as a repeat.
#[test]
fn seed_144_a_clean_session_forgets_msgids_awaiting_their_pubrel() {
    let mut s = Script::new();
    s.connect(60);
    s.take_qos2_without_pubrel(72);
    // No PUBREL: the gateway is gone. The client starts a clean session.
    s.connect(60);
    s.expect_a_new_message_with(72);
}

/// Found by the gateway simulation (sim/, seed 14000856284022276952): a QoS 2 PUBLISH of a
/// CleanSession=1 session, PUBREC'd, whose PUBREL never came (the gateway gave the mote up
/// and discarded the session, with DISCONNECT) left its MsgId held; the mote then connected with
/// CleanSession=0, the gateway began a new session (there was none to resume) numbering its
/// messages from 1, and the client dropped a new message with that MsgId as a repeat.
#[test]
fn seed_14000856284022276952_a_clean_sessions_msgids_do_not_outlive_it() {
    let mut s = Script::new();
    s.connect(60);
    s.take_qos2_without_pubrel(3);
    // No PUBREL: the gateway gave up and said so. The client comes back asking to keep
    // its session.
    s.give(0.2, &Packet::Disconnect(Disconnect { duration: None }));
    s.events();
    s.connect_keeping_session(60);
    s.expect_a_new_message_with(3);
}

/// The other side of seed 14000856284022276952: a CleanSession=1 session that sleeps is still
/// the session (the gateway resumes it at a CleanSession=0 CONNECT), so its QoS 2 MsgIds
/// awaiting PUBREL stay: the gateway's resend of such a PUBLISH is a repeat.
#[test]
fn a_sleeping_clean_session_keeps_msgids_awaiting_their_pubrel() {
    let mut s = Script::new();
    s.connect(60);
    s.take_qos2_without_pubrel(3);
    s.client.sleep(s.at(0.2), 100).unwrap();
    s.sent();
    s.give(0.3, &Packet::Disconnect(Disconnect { duration: None }));
    s.events();
    s.connect_keeping_session(60);
    s.give(
        1.0,
        &publish(PublishTopic::Short(*b"ab"), QoS::ExactlyOnce, 3, true),
    );
    let repeats: Vec<bool> = s.messages().iter().map(|m| m.repeat).collect();
    assert_eq!(
        repeats,
        vec![true],
        "the resend of the message taken before the sleep"
    );
}
