//! The byte layout of stored records: a version byte, then fields in a fixed order with
//! length-prefixed strings. Hand-written because it is small, has no dependency, and a reader
//! that checks every length cannot be made to panic or over-allocate by a damaged file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use crate::core::{
    ClientAddr, LinkId, MqttQoS, Peer, PeerAddr, RadioAddr, SessionRecord, SpooledPublish,
    StoredMessage, StoredRoute, StoredState, StoredSubKind, StoredSubscription, StoredWill,
};

/// Layout version of session records and messages; bump on any change, and keep reading the
/// old ones.
const VERSION: u8 = 1;

/// Layout version of session records written now: version 1 plus the authenticated identity
/// (version 2) and the MsgId mark (version 3) at the end. Older records are still read
/// (no identity; mark 0).
const SESSION_VERSION: u8 = 3;

/// Why a stored record cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged record: {0}")]
pub struct Damaged(&'static str);

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        // Records hold MQTT topics and payloads: far below 4 GiB.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
    }
    fn qos(&mut self, qos: MqttQoS) {
        self.u8(qos.level());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Damaged> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Damaged(what))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Damaged> {
        match *self.take(1, what)? {
            [b] => Ok(b),
            _ => Err(Damaged(what)),
        }
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Damaged> {
        match *self.take(2, what)? {
            [a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(Damaged(what)),
        }
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, Damaged> {
        match *self.take(4, what)? {
            [a, b, c, d] => Ok(u32::from_be_bytes([a, b, c, d])),
            _ => Err(Damaged(what)),
        }
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, Damaged> {
        Ok(self.u8(what)? != 0)
    }
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Damaged> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }
    fn text(&mut self, what: &'static str) -> Result<Arc<str>, Damaged> {
        std::str::from_utf8(self.bytes(what)?)
            .map(Arc::from)
            .map_err(|_| Damaged(what))
    }
    fn qos(&mut self, what: &'static str) -> Result<MqttQoS, Damaged> {
        match self.u8(what)? {
            0 => Ok(MqttQoS::AtMostOnce),
            1 => Ok(MqttQoS::AtLeastOnce),
            2 => Ok(MqttQoS::ExactlyOnce),
            _ => Err(Damaged(what)),
        }
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left so
    /// a damaged count cannot make the caller allocate.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<usize, Damaged> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(min_item) > self.0.len() {
            return Err(Damaged(what));
        }
        Ok(count)
    }
    fn version(&mut self) -> Result<(), Damaged> {
        match self.u8("version")? {
            VERSION => Ok(()),
            _ => Err(Damaged("unknown version")),
        }
    }
}

/// Address-family tags of radio peers (IP uses 4 and 6).
const RADIO_XBEE: u8 = 0x10;
const RADIO_NODE: u8 = 0x11;
const RADIO_KISS: u8 = 0x12;
const RADIO_DIRECT: u8 = 0x13;

fn write_addr(w: &mut Writer, addr: &ClientAddr) {
    w.u16(addr.peer.link.0);
    match addr.peer.addr {
        PeerAddr::Ip(SocketAddr::V4(a)) => {
            w.u8(4);
            w.0.extend_from_slice(&a.ip().octets());
            w.u16(a.port());
        }
        PeerAddr::Ip(SocketAddr::V6(a)) => {
            w.u8(6);
            w.0.extend_from_slice(&a.ip().octets());
            w.u16(a.port());
            w.u32(a.scope_id());
        }
        PeerAddr::Radio(RadioAddr::XBee(long)) => {
            w.u8(RADIO_XBEE);
            w.0.extend_from_slice(&long.to_be_bytes());
        }
        PeerAddr::Radio(RadioAddr::Node(node)) => {
            w.u8(RADIO_NODE);
            w.u16(node);
        }
        PeerAddr::Radio(RadioAddr::KissPort(port)) => {
            w.u8(RADIO_KISS);
            w.u8(port);
        }
        PeerAddr::Radio(RadioAddr::Direct) => w.u8(RADIO_DIRECT),
    }
    match &addr.node {
        Some(node) => {
            w.bool(true);
            w.bytes(node);
        }
        None => w.bool(false),
    }
}

fn read_addr(r: &mut Reader<'_>) -> Result<ClientAddr, Damaged> {
    let link = LinkId(r.u16("link")?);
    let addr = match r.u8("address family")? {
        4 => {
            let o = r.take(4, "IPv4 address")?;
            let octets: [u8; 4] = o.try_into().map_err(|_| Damaged("IPv4 address"))?;
            let port = r.u16("port")?;
            PeerAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
        }
        6 => {
            let o = r.take(16, "IPv6 address")?;
            let octets: [u8; 16] = o.try_into().map_err(|_| Damaged("IPv6 address"))?;
            let port = r.u16("port")?;
            let scope = r.u32("scope id")?;
            PeerAddr::Ip(SocketAddr::V6(std::net::SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                0,
                scope,
            )))
        }
        RADIO_XBEE => {
            let o = r.take(8, "XBee address")?;
            let octets: [u8; 8] = o.try_into().map_err(|_| Damaged("XBee address"))?;
            PeerAddr::Radio(RadioAddr::XBee(u64::from_be_bytes(octets)))
        }
        RADIO_NODE => PeerAddr::Radio(RadioAddr::Node(r.u16("node address")?)),
        RADIO_KISS => PeerAddr::Radio(RadioAddr::KissPort(r.u8("KISS port")?)),
        RADIO_DIRECT => PeerAddr::Radio(RadioAddr::Direct),
        _ => return Err(Damaged("address family")),
    };
    let node = if r.bool("node flag")? {
        Some(Box::from(r.bytes("node id")?))
    } else {
        None
    };
    Ok(ClientAddr {
        peer: Peer { link, addr },
        node,
    })
}

fn write_two(w: &mut Writer, tag: u8, pair: Option<[u8; 2]>) {
    w.u8(tag);
    if let Some(p) = pair {
        w.0.extend_from_slice(&p);
    }
}

fn read_two(r: &mut Reader<'_>, what: &'static str) -> Result<[u8; 2], Damaged> {
    r.take(2, what)?.try_into().map_err(|_| Damaged(what))
}

/// Encodes a session record.
pub(super) fn encode_session(record: &SessionRecord) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128));
    w.u8(SESSION_VERSION);
    w.bytes(record.client_id.as_bytes());
    match &record.addr {
        Some(addr) => {
            w.bool(true);
            write_addr(&mut w, addr);
        }
        None => w.bool(false),
    }
    w.u8(match record.state {
        StoredState::Active => 0,
        StoredState::Asleep => 1,
        StoredState::Offline => 2,
    });
    w.bool(record.clean_session);
    w.u16(record.keep_alive);
    w.u16(record.sleep);
    match &record.will {
        Some(will) => {
            w.bool(true);
            w.bytes(will.topic.as_bytes());
            w.bytes(&will.payload);
            w.qos(will.qos);
            w.bool(will.retain);
        }
        None => w.bool(false),
    }
    w.u32(u32::try_from(record.topics.len()).unwrap_or(u32::MAX));
    for (id, name, known) in &record.topics {
        w.u16(*id);
        w.bytes(name.as_bytes());
        w.bool(*known);
    }
    w.u32(u32::try_from(record.subscriptions.len()).unwrap_or(u32::MAX));
    for sub in &record.subscriptions {
        w.bytes(sub.filter.as_bytes());
        match sub.kind {
            StoredSubKind::Name => write_two(&mut w, 0, None),
            StoredSubKind::Wildcard => write_two(&mut w, 1, None),
            StoredSubKind::Predefined(id) => write_two(&mut w, 2, Some(id.to_be_bytes())),
            StoredSubKind::Short(name) => write_two(&mut w, 3, Some(name)),
        }
        w.qos(sub.requested);
        w.qos(sub.granted);
    }
    match &record.identity {
        Some(identity) => {
            w.bool(true);
            w.bytes(identity.as_bytes());
        }
        None => w.bool(false),
    }
    w.u16(record.msg_id_mark);
    w.0
}

/// Decodes a session record.
pub(super) fn decode_session(bytes: &[u8]) -> Result<SessionRecord, Damaged> {
    let mut r = Reader(bytes);
    let version = r.u8("version")?;
    if !(VERSION..=SESSION_VERSION).contains(&version) {
        return Err(Damaged("unknown version"));
    }
    let client_id = r.text("client id")?;
    let addr = if r.bool("address flag")? {
        Some(read_addr(&mut r)?)
    } else {
        None
    };
    let state = match r.u8("state")? {
        0 => StoredState::Active,
        1 => StoredState::Asleep,
        2 => StoredState::Offline,
        _ => return Err(Damaged("state")),
    };
    let clean_session = r.bool("clean session")?;
    let keep_alive = r.u16("keep-alive")?;
    let sleep = r.u16("sleep")?;
    let will = if r.bool("will flag")? {
        Some(StoredWill {
            topic: r.text("will topic")?,
            payload: Bytes::copy_from_slice(r.bytes("will payload")?),
            qos: r.qos("will qos")?,
            retain: r.bool("will retain")?,
        })
    } else {
        None
    };
    let topic_count = r.count(7, "topic count")?;
    let mut topics = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        topics.push((
            r.u16("topic id")?,
            r.text("topic name")?,
            r.bool("topic known")?,
        ));
    }
    let sub_count = r.count(7, "subscription count")?;
    let mut subscriptions = Vec::with_capacity(sub_count);
    for _ in 0..sub_count {
        let filter = r.text("filter")?;
        let kind = match r.u8("subscription kind")? {
            0 => StoredSubKind::Name,
            1 => StoredSubKind::Wildcard,
            2 => StoredSubKind::Predefined(u16::from_be_bytes(read_two(&mut r, "predefined id")?)),
            3 => StoredSubKind::Short(read_two(&mut r, "short name")?),
            _ => return Err(Damaged("subscription kind")),
        };
        subscriptions.push(StoredSubscription {
            filter,
            kind,
            requested: r.qos("requested qos")?,
            granted: r.qos("granted qos")?,
        });
    }
    let identity = if version >= 2 && r.bool("identity flag")? {
        Some(r.text("identity")?)
    } else {
        None
    };
    let msg_id_mark = if version >= 3 {
        r.u16("msg id mark")?
    } else {
        0
    };
    Ok(SessionRecord {
        client_id,
        addr,
        state,
        clean_session,
        keep_alive,
        sleep,
        will,
        topics,
        subscriptions,
        identity,
        msg_id_mark,
    })
}

/// The fields a queued message and a spooled one share: topic, payload, QoS, retain.
fn write_body(w: &mut Writer, topic: &str, payload: &[u8], qos: MqttQoS, retain: bool) {
    w.u8(VERSION);
    w.bytes(topic.as_bytes());
    w.bytes(payload);
    w.qos(qos);
    w.bool(retain);
}

type Body = (Arc<str>, Bytes, MqttQoS, bool);

fn read_body(r: &mut Reader<'_>) -> Result<Body, Damaged> {
    r.version()?;
    Ok((
        r.text("topic")?,
        Bytes::copy_from_slice(r.bytes("payload")?),
        r.qos("qos")?,
        r.bool("retain")?,
    ))
}

/// Encodes a queued message.
pub(super) fn encode_message(message: &StoredMessage) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        19 + message.topic.len() + message.payload.len(),
    ));
    write_body(
        &mut w,
        &message.topic,
        &message.payload,
        message.qos,
        message.retain,
    );
    match message.route {
        StoredRoute::Normal => write_two(&mut w, 0, None),
        StoredRoute::Predefined(id) => write_two(&mut w, 1, Some(id.to_be_bytes())),
        StoredRoute::Short(name) => write_two(&mut w, 2, Some(name)),
    }
    w.0
}

/// Decodes a queued message.
pub(super) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, Damaged> {
    let mut r = Reader(bytes);
    let (topic, payload, qos, retain) = read_body(&mut r)?;
    let route = match r.u8("route")? {
        0 => StoredRoute::Normal,
        1 => StoredRoute::Predefined(u16::from_be_bytes(read_two(&mut r, "predefined id")?)),
        2 => StoredRoute::Short(read_two(&mut r, "short name")?),
        _ => return Err(Damaged("route")),
    };
    Ok(StoredMessage {
        topic,
        payload,
        qos,
        retain,
        route,
    })
}

/// Encodes a spooled uplink message.
pub(super) fn encode_spooled(message: &SpooledPublish) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        16 + message.topic.len() + message.payload.len(),
    ));
    write_body(
        &mut w,
        &message.topic,
        &message.payload,
        message.qos,
        message.retain,
    );
    w.0
}

/// Decodes a spooled uplink message.
pub(super) fn decode_spooled(bytes: &[u8]) -> Result<SpooledPublish, Damaged> {
    let (topic, payload, qos, retain) = read_body(&mut Reader(bytes))?;
    Ok(SpooledPublish {
        topic,
        payload,
        qos,
        retain,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            client_id: "mote-7".into(),
            addr: Some(ClientAddr {
                peer: Peer {
                    link: LinkId(2),
                    addr: PeerAddr::Ip("[fe80::1%3]:40000".parse().unwrap()),
                },
                node: Some(Box::from(&[0x0A, 0x0B][..])),
            }),
            state: StoredState::Asleep,
            clean_session: false,
            keep_alive: 60,
            sleep: 3600,
            will: Some(StoredWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: MqttQoS::AtLeastOnce,
                retain: true,
            }),
            topics: vec![(1, "a/b".into(), true), (0xFFFE, "c".into(), false)],
            subscriptions: vec![
                StoredSubscription {
                    filter: "a/#".into(),
                    kind: StoredSubKind::Wildcard,
                    requested: MqttQoS::ExactlyOnce,
                    granted: MqttQoS::AtLeastOnce,
                },
                StoredSubscription {
                    filter: "pre".into(),
                    kind: StoredSubKind::Predefined(0x10),
                    requested: MqttQoS::AtMostOnce,
                    granted: MqttQoS::AtMostOnce,
                },
                StoredSubscription {
                    filter: "xy".into(),
                    kind: StoredSubKind::Short(*b"xy"),
                    requested: MqttQoS::AtLeastOnce,
                    granted: MqttQoS::AtLeastOnce,
                },
            ],
            identity: Some("mote-7-psk".into()),
            msg_id_mark: 513,
        }
    }

    #[test]
    fn session_round_trips() {
        let r = record();
        assert_eq!(decode_session(&encode_session(&r)).unwrap(), r);
        let offline = SessionRecord {
            addr: Some(ClientAddr {
                peer: Peer {
                    link: LinkId(0),
                    addr: PeerAddr::Ip("127.0.0.1:1".parse().unwrap()),
                },
                node: None,
            }),
            will: None,
            topics: vec![],
            subscriptions: vec![],
            identity: None,
            ..r
        };
        assert_eq!(decode_session(&encode_session(&offline)).unwrap(), offline);
    }

    #[test]
    fn version_1_sessions_are_still_read_without_an_identity() {
        let r = SessionRecord {
            identity: None,
            msg_id_mark: 0,
            ..record()
        };
        let mut old = encode_session(&r);
        // Version 1: the same layout without the identity flag and the mark at the end.
        old[0] = VERSION;
        old.truncate(old.len() - 3);
        assert_eq!(decode_session(&old).unwrap(), r);
    }

    #[test]
    fn version_2_sessions_are_still_read_with_mark_0() {
        let r = SessionRecord {
            msg_id_mark: 0,
            ..record()
        };
        let mut old = encode_session(&r);
        // Version 2: the same layout without the MsgId mark at the end.
        old[0] = 2;
        old.truncate(old.len() - 2);
        assert_eq!(decode_session(&old).unwrap(), r);
    }

    #[test]
    fn radio_addresses_round_trip() {
        for addr in [
            RadioAddr::XBee(0x0013_A200_4052_2BAA),
            RadioAddr::Node(0xFFFE),
            RadioAddr::KissPort(3),
            RadioAddr::Direct,
        ] {
            let r = SessionRecord {
                addr: Some(ClientAddr {
                    peer: Peer {
                        link: LinkId(1),
                        addr: PeerAddr::Radio(addr),
                    },
                    node: None,
                }),
                ..record()
            };
            assert_eq!(decode_session(&encode_session(&r)).unwrap(), r, "{addr}");
        }
    }

    #[test]
    fn message_round_trips() {
        for route in [
            StoredRoute::Normal,
            StoredRoute::Predefined(7),
            StoredRoute::Short(*b"ab"),
        ] {
            let m = StoredMessage {
                topic: "t/1".into(),
                payload: Bytes::from_static(&[0, 1, 2, 255]),
                qos: MqttQoS::ExactlyOnce,
                retain: false,
                route,
            };
            assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
        }
    }

    #[test]
    fn spooled_round_trips() {
        let m = SpooledPublish {
            topic: "up/1".into(),
            payload: Bytes::from_static(b"21.5"),
            qos: MqttQoS::AtLeastOnce,
            retain: true,
        };
        assert_eq!(decode_spooled(&encode_spooled(&m)).unwrap(), m);
        assert!(decode_spooled(&encode_spooled(&m)[..5]).is_err());
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = encode_session(&record());
        for len in 0..bytes.len() {
            assert!(decode_session(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let _ = decode_session(&damaged);
            }
        }
        // A huge count cannot make the reader allocate.
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&[0, 0, 0, 1, b'x', 0, 0, 0, 0, 0, 0, 0, 0]);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_session(&huge).is_err());
    }
}
