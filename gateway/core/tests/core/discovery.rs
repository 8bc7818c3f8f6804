//! Gateway discovery (reference §4.1): ADVERTISE while the broker link is up, GWINFO in answer
//! to SEARCHGW (through forwarders too), and other gateways' discovery traffic ignored.

use std::time::Duration;

use sn_codec::v12::{Advertise, GwInfo, Packet, SearchGw};
use sn_core::{BrokerEvent, CoreConfig, Destination, LinkId};

use crate::harness::{peer, Harness, Sent, LINK};

fn config(gw_id: u8, interval_secs: u64) -> CoreConfig {
    CoreConfig {
        gw_id,
        advertise_interval: Duration::from_secs(interval_secs),
        ..CoreConfig::default()
    }
}

/// The one transmit, which must be an ADVERTISE{gw_id, duration} broadcast on `link`.
#[track_caller]
fn assert_advertise(sent: &[Sent], link: LinkId, gw_id: u8, duration: u16) {
    let mine: Vec<&Sent> = sent.iter().filter(|t| t.link == link).collect();
    assert_eq!(
        mine.len(),
        1,
        "expected one ADVERTISE on {link:?}: {sent:?}"
    );
    let t = mine[0];
    assert_eq!(t.destination, Destination::Discovery { radius: 0 });
    let [d0, d1] = duration.to_be_bytes();
    assert_eq!(&t.datagram[..], &[0x05, 0x00, gw_id, d0, d1]);
}

#[test]
fn advertise_when_the_broker_connects_and_every_interval_after() {
    let mut h = Harness::without_broker(config(7, 60));
    h.expect_silence();
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = h.transmits();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_advertise(&sent, LINK, 7, 60);
    for _ in 0..3 {
        h.advance(Duration::from_millis(59_900));
        h.expect_silence();
        h.advance(Duration::from_millis(100));
        let sent = h.transmits();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_advertise(&sent, LINK, 7, 60);
    }
}

#[test]
fn advertise_goes_out_on_every_discovery_link() {
    let mut h = Harness::without_broker(config(3, 900));
    let radio = LinkId(5);
    h.gw.add_discovery_link(radio);
    h.gw.add_discovery_link(radio);
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    let sent = h.transmits();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_advertise(&sent, LINK, 3, 900);
    assert_advertise(&sent, radio, 3, 900);
}

#[test]
fn advertise_interval_zero_never_advertises() {
    let mut h = Harness::without_broker(config(1, 0));
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    h.expect_silence();
    for _ in 0..10 {
        h.advance(Duration::from_secs(3600));
        h.expect_silence();
    }
    // SEARCHGW is still answered.
    let m = peer(1000);
    h.send(m, Packet::SearchGw(SearchGw { radius: 0 }));
    assert_eq!(h.transmits().len(), 1);
}

#[test]
fn no_advertise_while_the_broker_link_is_down() {
    let mut h = Harness::without_broker(config(1, 60));
    for _ in 0..5 {
        h.advance(Duration::from_secs(60));
        h.expect_silence();
    }
    h.broker(BrokerEvent::Connected {
        session_present: false,
    });
    assert_advertise(&h.transmits(), LINK, 1, 60);
    h.advance(Duration::from_secs(30));
    h.broker(BrokerEvent::Disconnected);
    for _ in 0..5 {
        h.advance(Duration::from_secs(60));
        h.expect_silence();
    }
    // Up again: advertise at once, then on the interval from there.
    h.broker(BrokerEvent::Connected {
        session_present: true,
    });
    assert_advertise(&h.transmits(), LINK, 1, 60);
    h.advance(Duration::from_millis(59_900));
    h.expect_silence();
    h.advance(Duration::from_millis(100));
    assert_advertise(&h.transmits(), LINK, 1, 60);
}

#[test]
fn searchgw_is_answered_with_gwinfo_broadcast_with_its_radius() {
    let mut h = Harness::with_config(config(9, 900));
    let m = peer(1000);
    for radius in [0u8, 1, 2, 3] {
        h.raw(m, &[0x03, 0x01, radius]);
        let sent = h.transmits();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].link, LINK);
        assert_eq!(sent[0].destination, Destination::Discovery { radius });
        assert_eq!(
            &sent[0].datagram[..],
            &[0x03, 0x02, 9],
            "GWINFO{{GwId}}, 3 bytes"
        );
    }
    // A search changes nothing else: no session, nothing upstream.
    assert_eq!(h.gw.session_count(), 0);
    assert!(h.commands().is_empty());
    assert_eq!(h.gw.metrics().unknown_peer, 0);
}

#[test]
fn searchgw_from_a_connected_client_leaves_its_session_alone() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    h.send(m, Packet::SearchGw(SearchGw { radius: 1 }));
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, Destination::Discovery { radius: 1 });
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);
}

#[test]
fn searchgw_through_a_forwarder_is_answered_through_it() {
    let mut h = Harness::with_config(config(9, 900));
    let fwd = peer(4000);
    // SEARCHGW radius 1 from node 0A 0B.
    h.raw(fwd, &[0x05, 0xFE, 0x00, 0x0A, 0x0B, 0x03, 0x01, 0x01]);
    let sent = h.transmits();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].link, LINK);
    assert_eq!(sent[0].destination, Destination::Unicast(fwd.addr));
    // Same node id, the inner GWINFO unchanged, Ctrl carrying the radius to broadcast with.
    assert_eq!(
        &sent[0].datagram[..],
        &[0x05, 0xFE, 0x01, 0x0A, 0x0B, 0x03, 0x02, 9]
    );
}

#[test]
fn advertise_and_gwinfo_from_others_are_ignored_silently() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "m1", true, 60);
    let other = peer(1883);
    let before = h.gw.metrics().clone();
    let foreign = [
        Packet::Advertise(Advertise {
            gw_id: 2,
            duration: 900,
        }),
        Packet::GwInfo(GwInfo {
            gw_id: 2,
            gw_add: &[],
        }),
        Packet::GwInfo(GwInfo {
            gw_id: 2,
            gw_add: &[0x12, 0x34],
        }),
    ];
    for packet in foreign {
        h.send(other, packet);
        h.send(m, packet);
        h.send_forwarded(other, &[0x01], packet);
    }
    h.expect_silence();
    assert!(h.commands().is_empty());
    let after = h.gw.metrics();
    assert_eq!(
        after.unknown_peer, before.unknown_peer,
        "no DISCONNECT for discovery traffic"
    );
    assert_eq!(after.malformed, before.malformed);
    assert_eq!(h.gw.session_count(), 1);
    h.send(m, Packet::PingReq { client_id: b"" });
    h.expect(m, &[Packet::PingResp]);
}
