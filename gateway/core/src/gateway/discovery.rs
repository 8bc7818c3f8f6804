//! Gateway discovery (v1.2 §6.1, reference §4.1): ADVERTISE every advertise_interval on each
//! discovery link, GWINFO in answer to SEARCHGW. Both only while a broker (the remote one or
//! the fallback) serves: a gateway that cannot serve should not attract clients.

use std::time::Instant;

use sn_codec::v12::{Advertise, Forwarded, Frame, GwInfo, Packet};

use super::Gateway;
use crate::peer::{ClientAddr, Destination};

impl Gateway {
    pub(crate) fn on_searchgw(&mut self, addr: &ClientAddr, radius: u8) {
        if !self.upstream_up() {
            return;
        }
        let gwinfo = Packet::GwInfo(GwInfo {
            gw_id: self.config.gw_id,
            gw_add: &[],
        });
        match &addr.node {
            // Through a forwarder: back to it, which broadcasts with the radius in Ctrl.
            Some(node) => {
                let frame = Frame::Forwarded(Forwarded {
                    radius: radius.min(3),
                    node_id: node,
                    packet: gwinfo,
                });
                self.queue_frame(addr.peer.link, Destination::Unicast(addr.peer.addr), &frame);
            }
            None => {
                self.queue_frame(
                    addr.peer.link,
                    Destination::Discovery { radius },
                    &Frame::Packet(gwinfo),
                );
            }
        }
    }

    /// Advertise now and every advertise_interval from now on (called when the broker link
    /// comes up, so that waiting clients learn at once).
    pub(crate) fn start_advertising(&mut self, now: Instant) {
        if self.config.advertise_interval.is_zero() {
            return;
        }
        self.next_advertise = Some(now);
        self.on_advertise_timer(now);
    }

    pub(crate) fn on_advertise_timer(&mut self, now: Instant) {
        let interval = self.config.advertise_interval;
        if interval.is_zero() || !self.upstream_up() {
            self.next_advertise = None;
            return;
        }
        self.next_advertise = Some(now + interval);
        let advertise = Frame::Packet(Packet::Advertise(Advertise {
            gw_id: self.config.gw_id,
            duration: u16::try_from(interval.as_secs()).unwrap_or(u16::MAX),
        }));
        for link in self.discovery_links.clone() {
            self.queue_frame(link, Destination::Discovery { radius: 0 }, &advertise);
        }
    }
}
