//! An MQTT-SN v1.2 test client ("mote") over a real UDP socket, encoding and decoding with
//! sn-codec.
//!
//! Requests are retransmitted every `retry_interval` (PUBLISH with DUP=1) until answered or
//! until `op_timeout` has passed, which fails the test. What the gateway sends on its own
//! initiative is answered as it arrives, whatever the mote is waiting for: REGISTER gets
//! REGACK, PUBLISH gets PUBACK or PUBREC (and is queued for [`Mote::recv_publish`]), PUBREL
//! gets PUBCOMP, PINGREQ gets PINGRESP. Anything else is kept in an inbox for the next
//! [`Mote::expect`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    SearchGw, SubAck, Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
use sn_codec::QoS;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Largest datagram the mote reads.
const MAX_DATAGRAM: usize = 65_535;

/// The topic of a PUBLISH, as the mote addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A normal topic id (from REGISTER/REGACK or SUBACK).
    Normal(u16),
    /// A predefined topic id.
    Predefined(u16),
    /// A two-character short topic name.
    Short([u8; 2]),
    /// A full topic name in a QoS -1 PUBLISH (TopicIdType 00, the Paho / v2.0 extension).
    LongName(String),
}

impl Topic {
    /// A short topic name from a two-character string.
    pub fn short(name: &str) -> Topic {
        let bytes: [u8; 2] = name
            .as_bytes()
            .try_into()
            .expect("a short topic name has exactly two bytes");
        Topic::Short(bytes)
    }

    fn to_codec(&self) -> PublishTopic<'_> {
        match self {
            Topic::Normal(id) => PublishTopic::Normal(*id),
            Topic::Predefined(id) => PublishTopic::Predefined(*id),
            Topic::Short(name) => PublishTopic::Short(*name),
            Topic::LongName(name) => PublishTopic::LongName(name.as_bytes()),
        }
    }

    fn from_codec(topic: &PublishTopic<'_>) -> Topic {
        match *topic {
            PublishTopic::Normal(id) => Topic::Normal(id),
            PublishTopic::Predefined(id) => Topic::Predefined(id),
            PublishTopic::Short(name) => Topic::Short(name),
            PublishTopic::LongName(name) => Topic::LongName(String::from_utf8_lossy(name).into()),
        }
    }

    /// The TopicId field echoed in a PUBACK.
    fn id_field(&self) -> u16 {
        match self {
            Topic::Normal(id) | Topic::Predefined(id) => *id,
            Topic::Short(name) => u16::from_be_bytes(*name),
            Topic::LongName(_) => 0,
        }
    }
}

/// What a SUBSCRIBE or UNSUBSCRIBE names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubTopic {
    /// A topic name or a filter with wildcards.
    Name(String),
    /// A predefined topic id.
    Predefined(u16),
    /// A two-character short topic name.
    Short([u8; 2]),
}

impl SubTopic {
    /// A topic name or filter.
    pub fn name(name: &str) -> SubTopic {
        SubTopic::Name(name.to_string())
    }

    /// A short topic name from a two-character string.
    pub fn short(name: &str) -> SubTopic {
        let bytes: [u8; 2] = name
            .as_bytes()
            .try_into()
            .expect("a short topic name has exactly two bytes");
        SubTopic::Short(bytes)
    }

    fn to_codec(&self) -> SubscribeTopic<'_> {
        match self {
            SubTopic::Name(name) => SubscribeTopic::Name(name.as_bytes()),
            SubTopic::Predefined(id) => SubscribeTopic::Predefined(*id),
            SubTopic::Short(name) => SubscribeTopic::Short(*name),
        }
    }
}

/// A Will for CONNECT or the Will updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The Will topic.
    pub topic: String,
    /// The Will message.
    pub message: Vec<u8>,
    /// Its QoS (0..=2).
    pub qos: QoS,
    /// Whether it is published retained.
    pub retain: bool,
}

impl Will {
    /// A QoS 1, non-retained Will.
    pub fn new(topic: &str, message: &[u8]) -> Will {
        Will {
            topic: topic.to_string(),
            message: message.to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }
    }
}

/// What a CONNECT asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// CleanSession.
    pub clean_session: bool,
    /// Keep-alive (Duration) in seconds.
    pub keep_alive: u16,
    /// A Will, sent in the WILLTOPIC/WILLMSG handshake.
    pub will: Option<Will>,
}

impl Default for ConnectOptions {
    /// CleanSession=1, keep-alive 60 s, no Will.
    fn default() -> Self {
        ConnectOptions {
            clean_session: true,
            keep_alive: 60,
            will: None,
        }
    }
}

/// A PUBLISH the gateway delivered to the mote (already acknowledged by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The topic as the PUBLISH carried it.
    pub topic: Topic,
    /// The topic name, when the mote knew it at the time the PUBLISH arrived: a normal id
    /// learnt from a REGISTER, a SUBACK or its own REGISTER; a predefined id given to
    /// [`Mote::know_predefined`]; a short name.
    pub topic_name: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// The Retain flag.
    pub retain: bool,
    /// The DUP flag.
    pub dup: bool,
    /// The MsgId.
    pub msg_id: u16,
}

/// An MQTT-SN client on its own UDP socket.
#[derive(Debug)]
pub struct Mote {
    socket: UdpSocket,
    gateway: SocketAddr,
    client_id: String,
    next_msg_id: u16,
    /// Received packets nobody asked for yet (raw datagrams).
    inbox: VecDeque<Vec<u8>>,
    /// Delivered PUBLISHes not yet taken by [`Mote::recv_publish`].
    delivered: VecDeque<Delivered>,
    /// Normal topic ids the mote knows.
    topics: HashMap<u16, String>,
    /// Predefined topic ids the mote's "firmware" knows.
    predefined: HashMap<u16, String>,
    /// QoS 2 PUBLISHes received and PUBREC'd, waiting for PUBREL: a repeat is not delivered
    /// twice.
    qos2_received: HashSet<u16>,
    /// REGISTERs received from the gateway, in order: (topic id, name).
    registers: Vec<(u16, String)>,
    /// How long to wait for an answer before retransmitting.
    pub retry_interval: Duration,
    /// How long one request (with its retransmissions) may take before the test fails.
    pub op_timeout: Duration,
}

/// A new socket on the loopback address of `peer`'s family, port 0.
async fn bind_like(peer: SocketAddr) -> UdpSocket {
    let local: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    UdpSocket::bind(local)
        .await
        .unwrap_or_else(|e| panic!("bind a mote socket on {local}: {e}"))
}

fn decode(bytes: &[u8]) -> Packet<'_> {
    Packet::decode(bytes)
        .unwrap_or_else(|e| panic!("the gateway sent an undecodable datagram {bytes:02x?}: {e}"))
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    packet
        .to_vec()
        .unwrap_or_else(|e| panic!("cannot encode {packet:?}: {e}"))
}

impl Mote {
    /// A mote on a new socket on 127.0.0.1 (or ::1 for an IPv6 gateway address), talking to
    /// the gateway at `gateway`.
    pub async fn new(gateway: SocketAddr, client_id: &str) -> Mote {
        let socket = bind_like(gateway).await;
        Mote {
            socket,
            gateway,
            client_id: client_id.to_string(),
            next_msg_id: 0,
            inbox: VecDeque::new(),
            delivered: VecDeque::new(),
            topics: HashMap::new(),
            predefined: HashMap::new(),
            qos2_received: HashSet::new(),
            registers: Vec::new(),
            retry_interval: Duration::from_secs(1),
            op_timeout: Duration::from_secs(20),
        }
    }

    /// A mote that is already connected (CleanSession=1, keep-alive 60 s).
    pub async fn connected(gateway: SocketAddr, client_id: &str) -> Mote {
        let mut mote = Mote::new(gateway, client_id).await;
        mote.connect().await;
        mote
    }

    /// The mote's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("the mote's local address")
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The REGISTERs the gateway sent so far: (topic id, name), in order.
    pub fn registers(&self) -> &[(u16, String)] {
        &self.registers
    }

    /// Tells the mote the name of a predefined topic id (for [`Delivered::topic_name`]).
    pub fn know_predefined(&mut self, id: u16, name: &str) {
        self.predefined.insert(id, name.to_string());
    }

    /// The name of a normal topic id the mote knows.
    pub fn topic_name(&self, id: u16) -> Option<&str> {
        self.topics.get(&id).map(String::as_str)
    }

    /// A fresh MsgId, never 0.
    pub fn next_msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    /// Moves to a new UDP port (a NAT rebinding), keeping the client id and everything else.
    /// Returns the old socket, so a test can check that nothing more arrives there.
    pub async fn rebind(&mut self) -> UdpSocket {
        let socket = bind_like(self.gateway).await;
        std::mem::replace(&mut self.socket, socket)
    }

    /// Sends raw bytes to the gateway.
    pub async fn send_raw(&self, datagram: &[u8]) {
        self.socket
            .send_to(datagram, self.gateway)
            .await
            .expect("send to the gateway");
    }

    /// Sends a packet to the gateway.
    pub async fn send(&self, packet: Packet<'_>) {
        self.send_raw(&encode(&packet)).await;
    }

    /// The next datagram from anyone, raw and unprocessed, or `None` after `timeout`.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match tokio::time::timeout(timeout, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((len, from))) => {
                buf.truncate(len);
                Some((buf, from))
            }
            Ok(Err(e)) => panic!("{}: receive failed: {e}", self.client_id),
            Err(_) => None,
        }
    }

    /// Answers what the gateway sends on its own initiative; returns the datagram when it is
    /// something else (for the caller to look at).
    async fn handle_incoming(&mut self, datagram: Vec<u8>) -> Option<Vec<u8>> {
        let reply = match decode(&datagram) {
            Packet::Register(r) => {
                let name = String::from_utf8_lossy(r.topic_name).into_owned();
                self.topics.insert(r.topic_id, name.clone());
                self.registers.push((r.topic_id, name));
                Packet::RegAck(RegAck {
                    topic_id: r.topic_id,
                    msg_id: r.msg_id,
                    return_code: ReturnCode::Accepted,
                })
            }
            Packet::Publish(p) => {
                let topic = Topic::from_codec(&p.topic);
                let topic_name = match &topic {
                    Topic::Normal(id) => self.topics.get(id).cloned(),
                    Topic::Predefined(id) => self.predefined.get(id).cloned(),
                    Topic::Short(name) => Some(String::from_utf8_lossy(name).into_owned()),
                    Topic::LongName(name) => Some(name.clone()),
                };
                let delivered = Delivered {
                    topic_name,
                    data: p.data.to_vec(),
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                    msg_id: p.msg_id,
                    topic: topic.clone(),
                };
                match p.qos {
                    QoS::AtLeastOnce => {
                        self.delivered.push_back(delivered);
                        Packet::PubAck(PubAck {
                            topic_id: topic.id_field(),
                            msg_id: p.msg_id,
                            return_code: ReturnCode::Accepted,
                        })
                    }
                    QoS::ExactlyOnce => {
                        if self.qos2_received.insert(p.msg_id) {
                            self.delivered.push_back(delivered);
                        }
                        Packet::PubRec { msg_id: p.msg_id }
                    }
                    QoS::AtMostOnce | QoS::MinusOne => {
                        self.delivered.push_back(delivered);
                        return None;
                    }
                }
            }
            Packet::PubRel { msg_id } => {
                self.qos2_received.remove(&msg_id);
                Packet::PubComp { msg_id }
            }
            Packet::PingReq { .. } => Packet::PingResp,
            _ => return Some(datagram),
        };
        self.send(reply).await;
        None
    }

    /// Receives (answering what the gateway initiates) until `f` accepts a packet from the
    /// inbox or the socket; `None` after `timeout`.
    pub async fn try_expect<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&Packet<'_>) -> Option<T>,
    ) -> Option<T> {
        for i in 0..self.inbox.len() {
            let found = self.inbox.get(i).and_then(|d| f(&decode(d)));
            if found.is_some() {
                self.inbox.remove(i);
                return found;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (datagram, from) = self.recv_raw(left).await?;
            if from != self.gateway {
                continue;
            }
            let Some(datagram) = self.handle_incoming(datagram).await else {
                continue;
            };
            if let Some(found) = f(&decode(&datagram)) {
                return Some(found);
            }
            self.inbox.push_back(datagram);
        }
    }

    /// Like [`Mote::try_expect`] with [`crate::WAIT`]; fails the test on timeout.
    pub async fn expect<T>(&mut self, what: &str, f: impl FnMut(&Packet<'_>) -> Option<T>) -> T {
        match self.try_expect(crate::WAIT, f).await {
            Some(found) => found,
            None => panic!(
                "{}: no {what} from the gateway within {:?}; unhandled packets: {:?}",
                self.client_id,
                crate::WAIT,
                self.inbox_summary()
            ),
        }
    }

    /// The message types waiting in the inbox (for failure messages).
    pub fn inbox_summary(&self) -> Vec<String> {
        self.inbox
            .iter()
            .map(|d| format!("{:?}", decode(d)))
            .collect()
    }

    /// Takes everything left in the inbox, raw.
    pub fn drain_inbox(&mut self) -> Vec<Vec<u8>> {
        self.inbox.drain(..).collect()
    }

    /// Sends `first`, then `again` every `retry_interval` until `f` accepts an answer; fails
    /// the test after `op_timeout`.
    async fn exchange<T>(
        &mut self,
        what: &str,
        first: Vec<u8>,
        again: Vec<u8>,
        mut f: impl FnMut(&Packet<'_>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + self.op_timeout;
        self.send_raw(&first).await;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(found) = self.try_expect(self.retry_interval.min(left), &mut f).await {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no {what} from the gateway within {:?} (retransmitting every {:?}); \
                     unhandled packets: {:?}",
                    self.client_id,
                    self.op_timeout,
                    self.retry_interval,
                    self.inbox_summary()
                );
            }
            self.send_raw(&again).await;
        }
    }

    /// One CONNECT (with the Will handshake if `options.will` is set); returns the CONNACK
    /// return code. A refusal may come at any step of the handshake.
    pub async fn connect_with(&mut self, options: &ConnectOptions) -> ReturnCode {
        let connect = encode(&Packet::Connect(Connect {
            will: options.will.is_some(),
            clean_session: options.clean_session,
            protocol_id: 1,
            duration: options.keep_alive,
            client_id: self.client_id.as_bytes(),
        }));
        let Some(will) = &options.will else {
            return self
                .exchange("CONNACK", connect.clone(), connect, |p| match p {
                    Packet::ConnAck { return_code } => Some(*return_code),
                    _ => None,
                })
                .await;
        };
        enum Step {
            Next,
            Refused(ReturnCode),
        }
        let step = self
            .exchange("WILLTOPICREQ", connect.clone(), connect, |p| match p {
                Packet::WillTopicReq => Some(Step::Next),
                Packet::ConnAck { return_code } => Some(Step::Refused(*return_code)),
                _ => None,
            })
            .await;
        if let Step::Refused(code) = step {
            return code;
        }
        let willtopic = encode(&Packet::WillTopic(Some(WillTopic {
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.as_bytes(),
        })));
        let step = self
            .exchange("WILLMSGREQ", willtopic.clone(), willtopic, |p| match p {
                Packet::WillMsgReq => Some(Step::Next),
                Packet::ConnAck { return_code } => Some(Step::Refused(*return_code)),
                _ => None,
            })
            .await;
        if let Step::Refused(code) = step {
            return code;
        }
        let willmsg = encode(&Packet::WillMsg { msg: &will.message });
        self.exchange("CONNACK", willmsg.clone(), willmsg, |p| match p {
            Packet::ConnAck { return_code } => Some(*return_code),
            _ => None,
        })
        .await
    }

    /// Connects with `options`, repeating the CONNECT every 100 ms while the gateway answers
    /// CONNACK 0x01 (congestion: e.g. its broker link is not up yet); fails the test on any
    /// other refusal or after `op_timeout`.
    pub async fn connect_accepted(&mut self, options: &ConnectOptions) {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            match self.connect_with(options).await {
                ReturnCode::Accepted => return,
                ReturnCode::Congestion if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                code => panic!("{}: CONNECT refused with {code:?}", self.client_id),
            }
        }
    }

    /// Connects with the default options (CleanSession=1, keep-alive 60 s, no Will).
    pub async fn connect(&mut self) {
        self.connect_accepted(&ConnectOptions::default()).await;
    }

    /// REGISTERs a topic name; returns the topic id (fails the test on a refusal).
    pub async fn register(&mut self, name: &str) -> u16 {
        let msg_id = self.next_msg_id();
        let register = encode(&Packet::Register(Register {
            topic_id: 0,
            msg_id,
            topic_name: name.as_bytes(),
        }));
        let ack = self
            .exchange("REGACK", register.clone(), register, |p| match p {
                Packet::RegAck(a) if a.msg_id == msg_id => Some(*a),
                _ => None,
            })
            .await;
        assert_eq!(
            ack.return_code,
            ReturnCode::Accepted,
            "{}: REGISTER {name:?} refused",
            self.client_id
        );
        assert_ne!(ack.topic_id, 0, "REGACK accepted with topic id 0");
        self.topics.insert(ack.topic_id, name.to_string());
        ack.topic_id
    }

    /// Publishes with the full flow of `qos`: nothing to wait for at QoS -1 and 0 (returns
    /// Accepted); PUBACK at QoS 1; PUBREC, PUBREL, PUBCOMP at QoS 2. Retransmits with DUP=1.
    /// Returns the return code (a PUBACK can refuse at QoS 1 and 2).
    pub async fn publish(
        &mut self,
        topic: Topic,
        qos: QoS,
        retain: bool,
        data: &[u8],
    ) -> ReturnCode {
        let msg_id = if qos.needs_ack() {
            self.next_msg_id()
        } else {
            0
        };
        self.publish_with_id(topic, qos, retain, data, msg_id).await
    }

    /// [`Mote::publish`] with a given MsgId.
    pub async fn publish_with_id(
        &mut self,
        topic: Topic,
        qos: QoS,
        retain: bool,
        data: &[u8],
        msg_id: u16,
    ) -> ReturnCode {
        let packet = |dup| {
            encode(&Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic: topic.to_codec(),
                msg_id,
                data,
            }))
        };
        match qos {
            QoS::MinusOne | QoS::AtMostOnce => {
                self.send_raw(&packet(false)).await;
                ReturnCode::Accepted
            }
            QoS::AtLeastOnce => {
                self.exchange("PUBACK", packet(false), packet(true), |p| match p {
                    Packet::PubAck(a) if a.msg_id == msg_id => Some(a.return_code),
                    _ => None,
                })
                .await
            }
            QoS::ExactlyOnce => {
                let code = self
                    .exchange("PUBREC", packet(false), packet(true), |p| match p {
                        Packet::PubRec { msg_id: m } if *m == msg_id => Some(ReturnCode::Accepted),
                        Packet::PubAck(a) if a.msg_id == msg_id => Some(a.return_code),
                        _ => None,
                    })
                    .await;
                if code != ReturnCode::Accepted {
                    return code;
                }
                let pubrel = encode(&Packet::PubRel { msg_id });
                self.exchange("PUBCOMP", pubrel.clone(), pubrel, |p| match p {
                    Packet::PubComp { msg_id: m } if *m == msg_id => Some(()),
                    _ => None,
                })
                .await;
                ReturnCode::Accepted
            }
        }
    }

    /// Publishes until the gateway accepts: on PUBACK 0x01 (congestion, e.g. the broker is
    /// down) waits 100 ms and sends the same message again. Fails the test on another refusal
    /// or after `op_timeout`.
    pub async fn publish_reliably(&mut self, topic: Topic, qos: QoS, retain: bool, data: &[u8]) {
        let deadline = Instant::now() + self.op_timeout;
        loop {
            match self.publish(topic.clone(), qos, retain, data).await {
                ReturnCode::Accepted => return,
                ReturnCode::Congestion if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                code => panic!(
                    "{}: PUBLISH on {topic:?} refused with {code:?}",
                    self.client_id
                ),
            }
        }
    }

    /// SUBSCRIBEs; returns the SUBACK (the caller checks its return code). A name
    /// subscription's topic id is remembered for later PUBLISHes.
    pub async fn subscribe(&mut self, topic: SubTopic, qos: QoS) -> SubAck {
        let msg_id = self.next_msg_id();
        let packet = |dup| {
            encode(&Packet::Subscribe(Subscribe {
                dup,
                qos,
                msg_id,
                topic: topic.to_codec(),
            }))
        };
        let ack = self
            .exchange("SUBACK", packet(false), packet(true), |p| match p {
                Packet::SubAck(a) if a.msg_id == msg_id => Some(*a),
                _ => None,
            })
            .await;
        if let SubTopic::Name(name) = &topic {
            if ack.return_code == ReturnCode::Accepted && ack.topic_id != 0 {
                self.topics.insert(ack.topic_id, name.clone());
            }
        }
        ack
    }

    /// UNSUBSCRIBEs and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, topic: SubTopic) {
        let msg_id = self.next_msg_id();
        let packet = encode(&Packet::Unsubscribe(Unsubscribe {
            msg_id,
            topic: topic.to_codec(),
        }));
        self.exchange("UNSUBACK", packet.clone(), packet, |p| match p {
            Packet::UnsubAck { msg_id: m } if *m == msg_id => Some(()),
            _ => None,
        })
        .await;
    }

    /// The next PUBLISH delivered by the gateway (REGISTERs before it are answered), or `None`
    /// after `timeout`.
    pub async fn try_recv_publish(&mut self, timeout: Duration) -> Option<Delivered> {
        if let Some(d) = self.delivered.pop_front() {
            return Some(d);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (datagram, from) = self.recv_raw(left).await?;
            if from != self.gateway {
                continue;
            }
            if let Some(other) = self.handle_incoming(datagram).await {
                self.inbox.push_back(other);
            }
            if let Some(d) = self.delivered.pop_front() {
                return Some(d);
            }
        }
    }

    /// The next PUBLISH delivered by the gateway; fails the test after [`crate::WAIT`].
    pub async fn recv_publish(&mut self) -> Delivered {
        match self.try_recv_publish(crate::WAIT).await {
            Some(d) => d,
            None => panic!(
                "{}: no PUBLISH from the gateway within {:?}; unhandled packets: {:?}",
                self.client_id,
                crate::WAIT,
                self.inbox_summary()
            ),
        }
    }

    /// PINGREQ (plain, without client id) and waits for PINGRESP.
    pub async fn ping(&mut self) {
        let ping = encode(&Packet::PingReq { client_id: &[] });
        self.exchange("PINGRESP", ping.clone(), ping, |p| {
            matches!(p, Packet::PingResp).then_some(())
        })
        .await;
    }

    /// DISCONNECT and waits for the gateway's DISCONNECT.
    pub async fn disconnect(&mut self) {
        let packet = encode(&Packet::Disconnect(Disconnect { duration: None }));
        self.exchange("DISCONNECT", packet.clone(), packet, |p| {
            matches!(p, Packet::Disconnect(_)).then_some(())
        })
        .await;
    }

    /// Goes to sleep: DISCONNECT with `duration` seconds, and waits for the gateway's
    /// DISCONNECT.
    pub async fn sleep(&mut self, duration: u16) {
        let packet = encode(&Packet::Disconnect(Disconnect {
            duration: Some(duration),
        }));
        self.exchange("DISCONNECT", packet.clone(), packet, |p| {
            matches!(p, Packet::Disconnect(_)).then_some(())
        })
        .await;
    }

    /// Wakes up: PINGREQ with the client id (repeated every `retry_interval`) until PINGRESP.
    /// Returns everything delivered before the PINGRESP (and not yet taken), in order.
    pub async fn wake(&mut self) -> Vec<Delivered> {
        let ping = encode(&Packet::PingReq {
            client_id: self.client_id.as_bytes(),
        });
        self.exchange("PINGRESP", ping.clone(), ping, |p| {
            matches!(p, Packet::PingResp).then_some(())
        })
        .await;
        self.delivered.drain(..).collect()
    }

    /// WILLTOPICUPD (`None`: the empty form, which deletes the Will); returns the
    /// WILLTOPICRESP return code.
    pub async fn update_will_topic(&mut self, will: Option<(&str, QoS, bool)>) -> ReturnCode {
        let packet = encode(&Packet::WillTopicUpd(will.map(|(topic, qos, retain)| {
            WillTopic {
                qos,
                retain,
                topic: topic.as_bytes(),
            }
        })));
        self.exchange("WILLTOPICRESP", packet.clone(), packet, |p| match p {
            Packet::WillTopicResp { return_code } => Some(*return_code),
            _ => None,
        })
        .await
    }

    /// WILLMSGUPD; returns the WILLMSGRESP return code.
    pub async fn update_will_message(&mut self, message: &[u8]) -> ReturnCode {
        let packet = encode(&Packet::WillMsgUpd { msg: message });
        self.exchange("WILLMSGRESP", packet.clone(), packet, |p| match p {
            Packet::WillMsgResp { return_code } => Some(*return_code),
            _ => None,
        })
        .await
    }

    /// Sends SEARCHGW with `radius` to the gateway's address.
    pub async fn search_gw(&self, radius: u8) {
        self.send(Packet::SearchGw(SearchGw { radius })).await;
    }
}
