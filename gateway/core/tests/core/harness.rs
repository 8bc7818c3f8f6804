//! The test harness: one gateway, a clock that only moves when told, and helpers that send
//! packets as a client and check what the gateway sends back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sn_codec::v12::{Connect, Forwarded, Frame, Packet};
use sn_core::{
    BrokerCommand, BrokerEvent, BrokerRoute, CoreConfig, Destination, Event, Gateway, LinkId,
    MqttQoS, Peer, PeerAddr, PublishId, StoreOp, UplinkPublish,
};

pub const LINK: LinkId = LinkId(0);

/// A client address (the core performs no I/O; the address is only a key).
pub fn peer(port: u16) -> Peer {
    Peer {
        link: LINK,
        addr: PeerAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port))),
    }
}

pub fn bytes(packet: Packet<'_>) -> Vec<u8> {
    packet.to_vec().unwrap()
}

/// A datagram the gateway sent: where, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub link: LinkId,
    pub destination: Destination,
    pub datagram: bytes::Bytes,
}

pub struct Harness {
    pub gw: Gateway,
    pub now: Instant,
    start: Instant,
    /// Transmits already taken from the gateway but not yet read by the test.
    pending: Vec<Sent>,
    /// Broker commands taken from the gateway (every route) but not yet read by the test.
    routed: Vec<(BrokerRoute, BrokerCommand)>,
    /// State changes written to the harness's perfect store, not yet read by the test.
    stored: Vec<StoreOp>,
}

impl Harness {
    /// A gateway with default settings and its broker link up, discovery on LINK.
    pub fn new() -> Self {
        Self::with_config(CoreConfig::default())
    }

    pub fn with_config(config: CoreConfig) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(config);
        gw.add_discovery_link(LINK);
        let mut h = Harness {
            gw,
            now,
            start: now,
            pending: Vec::new(),
            routed: Vec::new(),
            stored: Vec::new(),
        };
        h.broker(BrokerEvent::Connected {
            session_present: false,
        });
        h.drain();
        h
    }

    /// Seconds since the harness started, for messages.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn raw(&mut self, from: Peer, datagram: &[u8]) {
        self.gw.handle_datagram(self.now, from, datagram);
    }

    pub fn send(&mut self, from: Peer, packet: Packet<'_>) {
        let datagram = bytes(packet);
        self.raw(from, &datagram);
    }

    /// Sends `packet` as a peer its link authenticated as `identity` (DTLS).
    pub fn send_as(&mut self, from: Peer, identity: &str, packet: Packet<'_>) {
        let datagram = bytes(packet);
        let identity: Arc<str> = Arc::from(identity);
        self.gw
            .handle_authenticated_datagram(self.now, from, &identity, &datagram);
    }

    pub fn send_forwarded(&mut self, forwarder: Peer, node: &[u8], packet: Packet<'_>) {
        let datagram = Frame::Forwarded(Forwarded {
            radius: 0,
            node_id: node,
            packet,
        })
        .to_vec()
        .unwrap();
        self.raw(forwarder, &datagram);
    }

    pub fn broker(&mut self, event: BrokerEvent) {
        self.gw.handle_broker(self.now, BrokerRoute::Remote, event);
    }

    /// Moves the clock and fires whatever is due, in deadline order.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(at) = self.gw.poll_timeout() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.gw.handle_timeout(self.now);
        }
        self.now = target;
        self.gw.handle_timeout(self.now);
    }

    /// Plays a runtime with a store that never fails: writes whatever the gateway has to
    /// store (kept for [`Harness::store_ops`]) and reports it written, which releases the
    /// outputs that waited for it.
    pub fn settle(&mut self) {
        if let Some(batch) = self.gw.poll_store() {
            self.stored.extend(batch.ops);
            self.gw.handle_stored(batch.id);
        }
    }

    /// State changes written since the last call.
    pub fn store_ops(&mut self) -> Vec<StoreOp> {
        self.settle();
        std::mem::take(&mut self.stored)
    }

    pub fn transmits(&mut self) -> Vec<Sent> {
        self.settle();
        let mut all = std::mem::take(&mut self.pending);
        let mut buf = bytes::BytesMut::new();
        while let Some(transmit) = self.gw.poll_transmit(&mut buf) {
            let datagram = buf.split().freeze();
            assert_eq!(datagram.len(), transmit.size, "the size it reports");
            all.push(Sent {
                link: transmit.link,
                destination: transmit.destination,
                datagram,
            });
        }
        all
    }

    /// Takes every released broker command into `routed`, then the ones for routes `keep`
    /// accepts out of it, in order.
    fn take_routed(
        &mut self,
        keep: impl Fn(&BrokerRoute) -> bool,
    ) -> Vec<(BrokerRoute, BrokerCommand)> {
        self.settle();
        while let Some(routed) = self.gw.poll_broker(true) {
            self.routed.push(routed);
        }
        let (taken, left) = std::mem::take(&mut self.routed)
            .into_iter()
            .partition(|(route, _)| keep(route));
        self.routed = left;
        taken
    }

    /// Commands for the remote broker.
    pub fn commands(&mut self) -> Vec<BrokerCommand> {
        self.take_routed(|r| *r == BrokerRoute::Remote)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// Commands for the fallback broker.
    pub fn fallback_commands(&mut self) -> Vec<BrokerCommand> {
        self.take_routed(|r| *r == BrokerRoute::Fallback)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// Commands for motes' own connections, with their client ids.
    pub fn mote_commands(&mut self) -> Vec<(Arc<str>, BrokerCommand)> {
        self.take_routed(|r| matches!(r, BrokerRoute::Mote(_)))
            .into_iter()
            .filter_map(|(route, c)| match route {
                BrokerRoute::Mote(id) => Some((id, c)),
                _ => None,
            })
            .collect()
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.gw.poll_event()).collect()
    }

    /// Discards all pending output.
    pub fn drain(&mut self) {
        self.transmits();
        self.commands();
        self.events();
    }

    /// Everything sent to `to`, decoded to owned bytes.
    pub fn sent_to(&mut self, to: Peer) -> Vec<Vec<u8>> {
        let all = self.transmits();
        let mut mine = Vec::new();
        for t in all {
            assert_eq!(t.link, to.link);
            match t.destination {
                Destination::Unicast(addr) if addr == to.addr => mine.push(t.datagram.to_vec()),
                other => panic!("unexpected transmit to {other:?}: {:02X?}", &t.datagram[..]),
            }
        }
        mine
    }

    /// Asserts that exactly these packets were sent to `to`, in order.
    #[track_caller]
    pub fn expect(&mut self, to: Peer, packets: &[Packet<'_>]) {
        let sent = self.sent_to(to);
        let expected: Vec<Vec<u8>> = packets.iter().map(|p| bytes(*p)).collect();
        assert_eq!(
            sent.iter()
                .map(|b| Packet::decode(b)
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|e| format!("{e}")))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|b| format!("{:?}", Packet::decode(b).unwrap()))
                .collect::<Vec<_>>(),
            "packets sent to {to:?} at +{:?}",
            self.elapsed()
        );
    }

    /// Asserts that nothing was sent.
    #[track_caller]
    pub fn expect_silence(&mut self) {
        let sent = self.transmits();
        assert!(sent.is_empty(), "expected silence, got {sent:?}");
    }

    /// CONNECT without Will, expecting CONNACK accepted.
    #[track_caller]
    pub fn connect(&mut self, from: Peer, client_id: &str, clean_session: bool, keep_alive: u16) {
        self.send(
            from,
            Packet::Connect(Connect {
                will: false,
                clean_session,
                protocol_id: 1,
                duration: keep_alive,
                client_id: client_id.as_bytes(),
            }),
        );
        self.expect(
            from,
            &[Packet::ConnAck {
                return_code: sn_codec::v12::ReturnCode::Accepted,
            }],
        );
        self.events();
    }

    /// Connects `client_id` from `from`, subscribes it to "t" at QoS 1 (the broker grants 1),
    /// and puts it to sleep for 600 s; everything sent so far is drained.
    #[track_caller]
    pub fn sleeper(&mut self, from: Peer, client_id: &str) {
        self.connect(from, client_id, true, 600);
        self.send(
            from,
            Packet::Subscribe(sn_codec::v12::Subscribe {
                dup: false,
                qos: sn_codec::QoS::AtLeastOnce,
                msg_id: 1,
                topic: sn_codec::v12::SubscribeTopic::Name(b"t"),
            }),
        );
        assert!(matches!(
            self.commands().as_slice(),
            [] | [BrokerCommand::Subscribe { .. }]
        ));
        self.broker(BrokerEvent::SubAck {
            filter: "t".into(),
            granted: Some(MqttQoS::AtLeastOnce),
        });
        self.send(
            from,
            Packet::Disconnect(sn_codec::v12::Disconnect {
                duration: Some(600),
            }),
        );
        self.drain();
    }

    /// The broker commands issued since the last call, which must all be publishes.
    #[track_caller]
    pub fn publishes(&mut self) -> Vec<UplinkPublish> {
        self.commands()
            .into_iter()
            .map(|c| match c {
                BrokerCommand::Publish(p) => p,
                other => panic!("expected only publishes, got {other:?}"),
            })
            .collect()
    }

    /// Exactly one publish to the broker; returns it.
    #[track_caller]
    pub fn one_publish(&mut self) -> UplinkPublish {
        let mut all = self.publishes();
        assert_eq!(all.len(), 1, "expected one publish, got {all:?}");
        all.remove(0)
    }

    pub fn ack(&mut self, id: PublishId) {
        self.broker(BrokerEvent::PublishAcked { id });
    }

    /// Delivers a broker message to the gateway.
    pub fn message(&mut self, topic: &str, payload: &[u8], qos: MqttQoS, retain: bool) {
        self.broker(BrokerEvent::Message {
            topic: topic.into(),
            payload: bytes::Bytes::copy_from_slice(payload),
            qos,
            retain,
            delivery: None,
        });
    }
}

// -------------------------------------------------------------------------------------------
// Helpers for sleep.rs, forwarder.rs, discovery.rs and edge.rs.
// -------------------------------------------------------------------------------------------

impl Harness {
    /// A gateway whose broker link has not come up yet (nothing sent, nothing drained).
    pub fn without_broker(config: CoreConfig) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(config);
        gw.add_discovery_link(LINK);
        Harness {
            gw,
            now,
            start: now,
            pending: Vec::new(),
            routed: Vec::new(),
            stored: Vec::new(),
        }
    }

    /// Asserts that exactly these packets were sent to `forwarder`, each encapsulated for
    /// `node` with Ctrl = 0, in order.
    #[track_caller]
    pub fn expect_forwarded(&mut self, forwarder: Peer, node: &[u8], packets: &[Packet<'_>]) {
        let sent = self.sent_to(forwarder);
        let expected: Vec<Vec<u8>> = packets
            .iter()
            .map(|p| {
                Frame::Forwarded(Forwarded {
                    radius: 0,
                    node_id: node,
                    packet: *p,
                })
                .to_vec()
                .unwrap()
            })
            .collect();
        let show = |b: &Vec<u8>| match Frame::decode(b) {
            Ok(frame) => format!("{frame:?}"),
            Err(e) => format!("{e} {b:02X?}"),
        };
        assert_eq!(
            sent.iter().map(show).collect::<Vec<_>>(),
            expected.iter().map(show).collect::<Vec<_>>(),
            "packets sent to {forwarder:?} for node {node:02X?} at +{:?}",
            self.elapsed()
        );
    }
}

impl Harness {
    /// Wraps an existing gateway (for restart tests), at time `now`.
    pub fn from_gateway(mut gw: Gateway, now: Instant) -> Self {
        gw.add_discovery_link(LINK);
        Harness {
            gw,
            now,
            start: now,
            pending: Vec::new(),
            routed: Vec::new(),
            stored: Vec::new(),
        }
    }

    /// CONNECT without Will; CONNACK accepted is the first thing sent back, and whatever
    /// follows it is left for the test to read.
    #[track_caller]
    pub fn connect_expecting_more(
        &mut self,
        from: Peer,
        client_id: &str,
        clean_session: bool,
        keep_alive: u16,
    ) {
        self.send(
            from,
            Packet::Connect(Connect {
                will: false,
                clean_session,
                protocol_id: 1,
                duration: keep_alive,
                client_id: client_id.as_bytes(),
            }),
        );
        let mut sent = self.transmits();
        assert!(!sent.is_empty(), "no CONNACK");
        let first = sent.remove(0);
        assert_eq!(
            &first.datagram[..],
            &[0x03, 0x05, 0x00],
            "CONNACK accepted first"
        );
        self.pending = sent;
        self.events();
    }
}
