//! CONNECT, the Will handshake, Will updates, keep-alive, DISCONNECT, unknown peers, rebinding.

use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Packet, Publish, PublishTopic, Register, ReturnCode, WillTopic,
};
use sn_codec::QoS;
use sn_core::{BrokerEvent, CoreConfig, Event, LostReason, MqttQoS};

use crate::harness::{peer, Harness};

fn connect_packet(client_id: &str, will: bool, clean_session: bool, duration: u16) -> Packet<'_> {
    Packet::Connect(Connect {
        will,
        clean_session,
        protocol_id: 1,
        duration,
        client_id: client_id.as_bytes(),
    })
}

const CONNACK_OK: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::Accepted,
};

/// Runs the full Will handshake.
fn connect_with_will(h: &mut Harness, from: sn_core::Peer, id: &str, clean: bool, keep_alive: u16) {
    h.send(from, connect_packet(id, true, clean, keep_alive));
    h.expect(from, &[Packet::WillTopicReq]);
    h.send(
        from,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: b"status/m1",
        })),
    );
    h.expect(from, &[Packet::WillMsgReq]);
    h.send(from, Packet::WillMsg { msg: b"offline" });
    h.expect(from, &[CONNACK_OK]);
    h.events();
}

#[test]
fn connect_without_will_is_accepted_and_reported() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.send(m, connect_packet("m1", false, true, 60));
    h.expect(m, &[CONNACK_OK]);
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Connected { client_id, keep_alive: 60, clean_session: true, resumed: false, .. }] if &**client_id == "m1"),
        "{events:?}"
    );
    assert_eq!(h.gw.session_count(), 1);
}

#[test]
fn will_handshake_then_keep_alive_expiry_publishes_the_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", true, 10);
    // Alive until 1.5 × 10 s.
    h.advance(Duration::from_secs(14));
    h.expect_silence();
    assert!(h.commands().is_empty());
    h.advance(Duration::from_millis(1001));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    let will = h.one_publish();
    assert_eq!(&*will.topic, "status/m1");
    assert_eq!(&will.payload[..], b"offline");
    assert_eq!(will.qos, MqttQoS::AtLeastOnce);
    assert!(will.retain);
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [Event::Lost {
                reason: LostReason::KeepAliveExpired,
                will_published: true,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(h.gw.session_count(), 0, "CleanSession=1: nothing kept");
}

#[test]
fn traffic_and_pings_keep_a_client_alive() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", true, 10);
    for _ in 0..5 {
        h.advance(Duration::from_secs(9));
        h.send(m, Packet::PingReq { client_id: b"" });
        h.expect(m, &[Packet::PingResp]);
    }
    assert!(h.commands().is_empty(), "no Will while the client pings");
}

#[test]
fn empty_willtopic_skips_willmsgreq_and_deletes_the_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.send(m, connect_packet("m1", true, true, 10));
    h.expect(m, &[Packet::WillTopicReq]);
    h.send(m, Packet::WillTopic(None));
    h.expect(m, &[CONNACK_OK]);
    h.advance(Duration::from_secs(16));
    assert!(h.commands().is_empty(), "no Will to publish");
}

#[test]
fn duplicate_connect_mid_handshake_has_no_side_effect() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.send(m, connect_packet("m1", true, true, 10));
    h.expect(m, &[Packet::WillTopicReq]);
    h.send(m, connect_packet("m1", true, true, 10));
    h.expect(m, &[Packet::WillTopicReq]);
    h.send(
        m,
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: b"w",
        })),
    );
    h.expect(m, &[Packet::WillMsgReq]);
    h.send(m, Packet::WillMsg { msg: b"x" });
    h.expect(m, &[CONNACK_OK]);
    let connected = h
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connected, 1);
    assert_eq!(h.gw.session_count(), 1);
    assert!(h.commands().is_empty());
}

#[test]
fn unsupported_protocol_id_gets_connack_not_supported() {
    let mut h = Harness::new();
    let m = peer(1000);
    // Vector X4 of the reference.
    h.raw(m, &[0x09, 0x04, 0x04, 0x00, 0x00, 0x3C, 0x61, 0x62, 0x63]);
    h.expect(
        m,
        &[Packet::ConnAck {
            return_code: ReturnCode::NotSupported,
        }],
    );
    assert_eq!(h.gw.session_count(), 0);
}

#[test]
fn bad_client_ids_are_refused() {
    let mut h = Harness::new();
    let m = peer(1000);
    for id in [&[0xFF, 0xFE][..], &[b'a'; 65][..]] {
        h.send(
            m,
            Packet::Connect(Connect {
                will: false,
                clean_session: true,
                protocol_id: 1,
                duration: 10,
                client_id: id,
            }),
        );
        h.expect(
            m,
            &[Packet::ConnAck {
                return_code: ReturnCode::NotSupported,
            }],
        );
    }
}

/// An empty client id with CleanSession=1 gets one assigned (as MQTT 3.1.1 servers do;
/// cc.mqttsn's clients send none by default): each such mote has its own session, found by
/// its address. With CleanSession=0 it is refused: nobody could come back to that session.
#[test]
fn an_empty_client_id_gets_one_assigned_with_clean_session_only() {
    let mut h = Harness::new();
    let empty = |clean_session| {
        Packet::Connect(Connect {
            will: false,
            clean_session,
            protocol_id: 1,
            duration: 10,
            client_id: b"",
        })
    };
    let (a, b) = (peer(1000), peer(1001));
    for m in [a, b] {
        h.send(m, empty(true));
        h.expect(
            m,
            &[Packet::ConnAck {
                return_code: ReturnCode::Accepted,
            }],
        );
    }
    assert_eq!(
        h.gw.session_count(),
        2,
        "each anonymous mote its own session"
    );
    assert!(h.gw.session_info("auto-1").is_some() && h.gw.session_info("auto-2").is_some());
    // A client that already holds the name keeps it: the next one is skipped.
    h.connect(peer(1002), "auto-3", true, 10);
    h.send(peer(1003), empty(true));
    h.drain();
    assert!(h.gw.session_info("auto-4").is_some());
    let c = peer(1004);
    h.send(c, empty(false));
    h.expect(
        c,
        &[Packet::ConnAck {
            return_code: ReturnCode::NotSupported,
        }],
    );
}

#[test]
fn broker_down_without_a_spool_means_congestion_never_silence() {
    let mut h = Harness::with_config(sn_core::CoreConfig {
        spool: sn_core::SpoolConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    });
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    h.send(
        m,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 1,
            topic_name: b"a/b",
        }),
    );
    let regack = h.sent_to(m);
    let Packet::RegAck(regack) = Packet::decode(&regack[0]).unwrap() else {
        panic!()
    };
    h.broker(BrokerEvent::Disconnected);
    h.send(
        m,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(regack.topic_id),
            msg_id: 7,
            data: b"x",
        }),
    );
    h.expect(
        m,
        &[Packet::PubAck(sn_codec::v12::PubAck {
            topic_id: regack.topic_id,
            msg_id: 7,
            return_code: ReturnCode::Congestion,
        })],
    );
    let m2 = peer(1001);
    h.send(m2, connect_packet("m2", false, true, 60));
    h.expect(
        m2,
        &[Packet::ConnAck {
            return_code: ReturnCode::Congestion,
        }],
    );
    // Motes are not disconnected by an outage: pings still answered.
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn disconnect_is_answered_and_ends_without_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", true, 10);
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    h.advance(Duration::from_secs(100));
    assert!(h.commands().is_empty(), "no Will after a clean DISCONNECT");
    // Now unknown: anything but CONNECT gets DISCONNECT so the mote reconnects.
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
}

#[test]
fn unknown_peer_gets_disconnect() {
    let mut h = Harness::new();
    let stranger = peer(2000);
    h.send(
        stranger,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(1),
            msg_id: 1,
            data: b"x",
        }),
    );
    h.expect(
        stranger,
        &[Packet::Disconnect(Disconnect { duration: None })],
    );
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.metrics().unknown_peer, 1);
}

#[test]
fn clean_session_zero_keeps_the_will_across_reconnects() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", false, 10);
    // Reconnect with Will=0: the stored Will survives (reference §4.3).
    h.connect(m, "m1", false, 10);
    h.advance(Duration::from_secs(16));
    let will = h.one_publish();
    assert_eq!(&*will.topic, "status/m1");
    assert_eq!(
        h.gw.session_count(),
        1,
        "CleanSession=0: the session is kept"
    );
}

#[test]
fn clean_session_one_drops_the_old_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", false, 10);
    h.connect(m, "m1", true, 10);
    h.advance(Duration::from_secs(16));
    assert!(h.commands().is_empty());
}

#[test]
fn will_updates_are_applied() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", true, 10);
    h.send(
        m,
        Packet::WillTopicUpd(Some(WillTopic {
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: b"status/new",
        })),
    );
    h.expect(
        m,
        &[Packet::WillTopicResp {
            return_code: ReturnCode::Accepted,
        }],
    );
    h.send(m, Packet::WillMsgUpd { msg: b"gone" });
    h.expect(
        m,
        &[Packet::WillMsgResp {
            return_code: ReturnCode::Accepted,
        }],
    );
    h.advance(Duration::from_secs(16));
    let will = h.one_publish();
    assert_eq!(
        (&*will.topic, &will.payload[..], will.qos, will.retain),
        ("status/new", &b"gone"[..], MqttQoS::ExactlyOnce, false)
    );
}

#[test]
fn empty_willtopicupd_deletes_the_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    connect_with_will(&mut h, m, "m1", true, 10);
    h.send(m, Packet::WillTopicUpd(None));
    h.expect(
        m,
        &[Packet::WillTopicResp {
            return_code: ReturnCode::Accepted,
        }],
    );
    h.advance(Duration::from_secs(16));
    assert!(h.commands().is_empty());
}

#[test]
fn with_roaming_a_reconnect_from_a_new_address_keeps_the_session() {
    let mut h = Harness::with_config(CoreConfig {
        roaming: true,
        ..CoreConfig::default()
    });
    let old = peer(1000);
    let new = peer(1001);
    h.connect(old, "m1", false, 60);
    h.send(
        old,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 1,
            topic_name: b"a/b",
        }),
    );
    let first = h.sent_to(old);
    h.connect(new, "m1", false, 60);
    // The old address is no longer the client.
    h.send(old, Packet::PingReq { client_id: b"" });
    h.expect(old, &[Packet::Disconnect(Disconnect { duration: None })]);
    // The session (its topic table) came along.
    h.send(
        new,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 2,
            topic_name: b"a/b",
        }),
    );
    let second = h.sent_to(new);
    let id = |b: &Vec<u8>| match Packet::decode(b).unwrap() {
        Packet::RegAck(r) => r.topic_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(id(&first[0]), id(&second[0]));
    assert_eq!(h.gw.session_count(), 1);
}

#[test]
fn without_roaming_a_connect_from_another_address_cannot_take_the_session() {
    let mut h = Harness::new();
    let (mote, thief) = (peer(1000), peer(6666));
    h.connect(mote, "victim", false, 60);
    h.send(
        mote,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 1,
            topic_name: b"a/b",
        }),
    );
    h.sent_to(mote);
    for clean_session in [false, true] {
        h.send(
            thief,
            Packet::Connect(Connect {
                will: false,
                clean_session,
                protocol_id: 1,
                duration: 60,
                client_id: b"victim",
            }),
        );
        h.expect(
            thief,
            &[Packet::ConnAck {
                return_code: ReturnCode::NotSupported,
            }],
        );
    }
    assert_eq!(h.gw.metrics().takeover_refused, 2);
    let reported = h
        .events()
        .into_iter()
        .filter(|e| {
            matches!(e, Event::TakeoverRefused { client_id, addr }
                if &**client_id == "victim" && *addr == thief.addr.to_string())
        })
        .count();
    assert_eq!(reported, 2, "each refusal is reported for the log");
    // The real mote keeps its session, its address and its topic ids.
    h.send(mote, Packet::PingReq { client_id: b"" });
    h.expect(mote, &[Packet::PingResp]);
    h.send(
        mote,
        Packet::Register(Register {
            topic_id: 0,
            msg_id: 2,
            topic_name: b"a/b",
        }),
    );
    let regack = h.sent_to(mote);
    assert!(
        matches!(Packet::decode(&regack[0]).unwrap(), Packet::RegAck(r) if r.topic_id == 1),
        "{regack:02X?}"
    );
    // Offline, the session is still bound to the mote's address.
    h.send(mote, Packet::Disconnect(Disconnect { duration: None }));
    h.sent_to(mote);
    h.send(
        thief,
        Packet::Connect(Connect {
            will: false,
            clean_session: false,
            protocol_id: 1,
            duration: 60,
            client_id: b"victim",
        }),
    );
    h.expect(
        thief,
        &[Packet::ConnAck {
            return_code: ReturnCode::NotSupported,
        }],
    );
    h.connect(mote, "victim", false, 60);
    assert_eq!(h.gw.session_count(), 1);
}

#[test]
fn garbage_changes_nothing_for_anyone() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 10);
    let attacker = peer(6666);
    for garbage in [
        &[][..],
        &[0x00],
        &[0x03, 0x17],
        &[0xFF; 300],
        &[0x05, 0xFE, 0x00, 0x0A, 0x0B],
    ] {
        h.raw(attacker, garbage);
        h.raw(m, garbage);
    }
    h.expect_silence();
    assert!(h.gw.metrics().malformed >= 8);
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn handshake_that_never_completes_times_out_without_will() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.send(m, connect_packet("m1", true, true, 60));
    h.expect(m, &[Packet::WillTopicReq]);
    // T_retry 10 s × N_retry 3: three resends, then given up.
    for _ in 0..3 {
        h.advance(Duration::from_secs(10));
        h.expect(m, &[Packet::WillTopicReq]);
    }
    h.advance(Duration::from_secs(10));
    h.expect(m, &[Packet::Disconnect(Disconnect { duration: None })]);
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.session_count(), 0);
}
