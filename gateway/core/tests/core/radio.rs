//! Motes behind serial radios: radio addresses key sessions like IP addresses do, discovery
//! goes to every discovery link, and a link's report of an undelivered datagram is counted.

use sn_codec::v12::{Packet, SearchGw};
use sn_core::{Destination, LinkId, Peer, PeerAddr, RadioAddr};

use crate::harness::{peer, Harness};

const RADIO_LINK: LinkId = LinkId(3);

fn zigbee(long: u64) -> Peer {
    Peer {
        link: RADIO_LINK,
        addr: PeerAddr::Radio(RadioAddr::XBee(long)),
    }
}

#[test]
fn radio_motes_connect_and_are_told_apart_by_address() {
    let mut h = Harness::new();
    let a = zigbee(0x0013_A200_0000_0001);
    let b = zigbee(0x0013_A200_0000_0002);
    h.connect(a, "zig-a", true, 60);
    h.connect(b, "zig-b", true, 60);
    // The same address on a UDP link is another peer altogether.
    h.connect(peer(1), "udp-a", true, 60);
    h.send(a, Packet::PingReq { client_id: b"" });
    h.expect(a, &[Packet::PingResp]);
    assert_eq!(h.gw.session_count(), 3);
}

#[test]
fn a_search_on_a_radio_link_is_answered_on_that_link() {
    let mut h = Harness::new();
    h.gw.add_discovery_link(RADIO_LINK);
    h.send(zigbee(7), Packet::SearchGw(SearchGw { radius: 0 }));
    let transmits = h.transmits();
    assert_eq!(transmits.len(), 1, "{transmits:?}");
    assert_eq!(transmits[0].link, RADIO_LINK);
    assert_eq!(
        transmits[0].destination,
        Destination::Discovery { radius: 0 }
    );
}

#[test]
fn undelivered_datagrams_are_counted_for_the_session_and_in_total() {
    let mut h = Harness::new();
    let a = zigbee(0x0013_A200_0000_0001);
    h.connect(a, "zig-a", true, 60);
    let now = h.now;
    h.gw.handle_delivery_failure(now, a);
    h.gw.handle_delivery_failure(now, a);
    // A peer without a session is only counted in total.
    h.gw.handle_delivery_failure(now, zigbee(99));
    assert_eq!(h.gw.session_info("zig-a").unwrap().undelivered, 2);
    assert_eq!(h.gw.metrics().link_undelivered, 3);
    // Nothing is resent or reported to the broker for it.
    h.expect_silence();
    assert!(h.commands().is_empty());
}
