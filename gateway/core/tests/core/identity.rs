//! Peers a link authenticated (DTLS): an identity speaks for one client id, a session it
//! opened answers only to it (wherever it speaks from), and a lost connection loses the mote.

use std::net::SocketAddr;

use sn_codec::v12::{Connect, Disconnect, Packet, ReturnCode, WillTopic};
use sn_codec::QoS;
use sn_core::{
    Admission, BrokerCommand, CoreConfig, Event, LinkId, LostReason, MoteEntry, Peer, PeerAddr,
    PolicyConfig, StoreOp,
};

use crate::harness::Harness;

/// The DTLS link.
const DTLS: LinkId = LinkId(1);

fn at(port: u16) -> Peer {
    Peer {
        link: DTLS,
        addr: PeerAddr::Ip(SocketAddr::from(([10, 0, 0, 1], port))),
    }
}

fn connect(client_id: &str, clean_session: bool, will: bool) -> Packet<'_> {
    Packet::Connect(Connect {
        will,
        clean_session,
        protocol_id: 1,
        duration: 60,
        client_id: client_id.as_bytes(),
    })
}

const ACCEPTED: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::Accepted,
};
const REFUSED: Packet<'static> = Packet::ConnAck {
    return_code: ReturnCode::NotSupported,
};

#[test]
fn an_identity_speaks_for_the_client_id_equal_to_it() {
    let mut h = Harness::new();
    h.send_as(at(1), "mote-1", connect("mote-1", true, false));
    h.expect(at(1), &[ACCEPTED]);
    h.send_as(at(2), "mote-1", connect("mote-2", true, false));
    h.expect(at(2), &[REFUSED]);
    assert_eq!(h.gw.metrics().denied.identity_mismatch, 1);
}

#[test]
fn an_entry_naming_an_identity_admits_only_that_identity() {
    let mut entry = MoteEntry::new("valve-*");
    entry.identity = Some("valve-psk".into());
    let mut h = Harness::with_config(CoreConfig {
        policy: PolicyConfig {
            admission: Admission::Listed,
            motes: vec![entry],
            ..PolicyConfig::default()
        },
        ..CoreConfig::default()
    });
    h.send_as(at(1), "valve-psk", connect("valve-3", true, false));
    h.expect(at(1), &[ACCEPTED]);
    // Without authentication (a plain link) the client id is refused.
    let plain = Peer {
        link: LinkId(0),
        addr: PeerAddr::Ip(SocketAddr::from(([10, 0, 0, 2], 1))),
    };
    h.send(plain, connect("valve-4", true, false));
    h.expect(plain, &[REFUSED]);
    assert_eq!(h.gw.metrics().denied.not_authenticated, 1);
}

#[test]
fn a_session_an_identity_opened_follows_that_identity_and_nobody_else() {
    let mut h = Harness::new();
    h.send_as(at(1), "m", connect("m", false, false));
    h.expect(at(1), &[ACCEPTED]);
    h.send(
        at(1),
        Packet::Disconnect(Disconnect {
            duration: Some(600),
        }),
    );
    h.drain();
    // Someone on a plain link naming it: refused, even though it is asleep.
    let plain = Peer {
        link: LinkId(0),
        addr: PeerAddr::Ip(SocketAddr::from(([10, 0, 0, 9], 1))),
    };
    h.send(plain, Packet::PingReq { client_id: b"m" });
    h.send(plain, connect("m", false, false));
    h.expect(
        plain,
        &[Packet::Disconnect(Disconnect { duration: None }), REFUSED],
    );
    assert_eq!(h.gw.metrics().takeover_refused, 2);
    // The mote itself, from a new address (its NAT rebound; no roaming needed): woken there.
    h.send_as(at(7), "m", Packet::PingReq { client_id: b"m" });
    h.expect(at(7), &[Packet::PingResp]);
    // And its session is stored with the identity, so a restart keeps it bound.
    let stored = h.store_ops().into_iter().any(
        |op| matches!(op, StoreOp::PutSession(record) if record.identity.as_deref() == Some("m")),
    );
    assert!(stored, "the session record holds its identity");
}

#[test]
fn a_lost_link_connection_loses_the_mote_and_its_will_goes_out() {
    let mut h = Harness::new();
    h.send_as(at(1), "m", connect("m", true, true));
    h.expect(at(1), &[Packet::WillTopicReq]);
    h.send_as(
        at(1),
        "m",
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: b"status/m",
        })),
    );
    h.expect(at(1), &[Packet::WillMsgReq]);
    h.send_as(at(1), "m", Packet::WillMsg { msg: b"gone" });
    h.expect(at(1), &[ACCEPTED]);
    h.events();
    h.gw.handle_peer_lost(h.now, at(1));
    let will = h.one_publish();
    assert_eq!(
        (&*will.topic, &will.payload[..]),
        ("status/m", &b"gone"[..])
    );
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Lost {
            reason: LostReason::LinkLost,
            will_published: true,
            ..
        }
    )));
    assert!(h.gw.session_info("m").is_none());
    // A clean DISCONNECT first: no Will when the connection then closes.
    h.send_as(at(2), "n", connect("n", true, false));
    h.expect(at(2), &[ACCEPTED]);
    h.send_as(
        at(2),
        "n",
        Packet::Disconnect(Disconnect { duration: None }),
    );
    h.drain();
    h.gw.handle_peer_lost(h.now, at(2));
    assert!(h
        .commands()
        .iter()
        .all(|c| !matches!(c, BrokerCommand::Publish(_))));
}

#[test]
fn a_moved_dtls_connection_takes_the_session_its_identity_opened_along() {
    let mut h = Harness::new();
    h.send_as(at(1), "m", connect("m", false, false));
    h.expect(at(1), &[ACCEPTED]);
    h.send_as(at(2), "n", connect("n", false, false));
    h.expect(at(2), &[ACCEPTED]);
    let moved: std::sync::Arc<str> = std::sync::Arc::from("m");
    // Another identity's move, or a move onto another session's address: nothing moves.
    let other: std::sync::Arc<str> = std::sync::Arc::from("n");
    h.gw.handle_peer_moved(h.now, at(1), at(3), &other);
    h.gw.handle_peer_moved(h.now, at(1), at(2), &moved);
    assert_eq!(h.gw.metrics().peer_moves_refused, 2);
    // Its own connection, moved by the link (Connection ID): the session answers at the new
    // address with no new CONNECT, and no longer at the old one.
    h.gw.handle_peer_moved(h.now, at(1), at(3), &moved);
    assert_eq!(h.gw.metrics().peer_moves, 1);
    h.send_as(at(3), "m", Packet::PingReq { client_id: b"" });
    h.expect(at(3), &[Packet::PingResp]);
    h.send_as(at(1), "m", Packet::PingReq { client_id: b"" });
    h.expect(at(1), &[Packet::Disconnect(Disconnect { duration: None })]);
}

#[test]
fn a_close_notify_loses_a_connected_mote_but_not_a_sleeping_one() {
    let mut h = Harness::new();
    // Connected, closed without a DISCONNECT: lost at once.
    h.send_as(at(1), "m", connect("m", true, false));
    h.expect(at(1), &[ACCEPTED]);
    h.events();
    h.gw.handle_peer_closed(h.now, at(1));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Lost {
            reason: LostReason::LinkLost,
            ..
        }
    )));
    assert!(h.gw.session_info("m").is_none());
    // Asleep, then closed: the mote may handshake again to wake, so the session stays.
    h.send_as(at(2), "s", connect("s", true, false));
    h.expect(at(2), &[ACCEPTED]);
    h.send_as(
        at(2),
        "s",
        Packet::Disconnect(Disconnect {
            duration: Some(600),
        }),
    );
    h.drain();
    h.events();
    h.gw.handle_peer_closed(h.now, at(2));
    assert!(!h.events().iter().any(|e| matches!(e, Event::Lost { .. })));
    assert!(h.gw.session_info("s").is_some());
}
