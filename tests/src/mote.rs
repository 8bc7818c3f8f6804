//! An MQTT-SN v1.2 test client ("mote") over a real UDP socket. Its protocol logic is the
//! sans-I/O client machine of `sn-client`, the one the `mqtt-sn` tool and the bench motes
//! use; this file moves the machine's datagrams over the socket and adds what a test needs:
//! raw and hand-crafted packets ([`Mote::send`], [`Mote::send_raw`], [`Mote::recv_raw`]),
//! exact-packet expectations ([`Mote::expect`]) and failing the test on a timeout.
//!
//! Requests are retransmitted every `retry_interval` (PUBLISH with DUP=1) until answered or
//! until `op_timeout` has passed, which fails the test. What the gateway sends on its own
//! initiative is answered as it arrives, whatever the mote is waiting for: REGISTER gets
//! REGACK, PUBLISH gets PUBACK or PUBREC (and is queued for [`Mote::recv_publish`]), PUBREL
//! gets PUBCOMP, PINGREQ gets PINGRESP. Anything else is kept in an inbox for the next
//! [`Mote::expect`].

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sn_client::{Client, ClientConfig, Event, Received, Timing, UnknownTopicIds};
use sn_codec::v12::{
    Packet, PublishTopic, ReturnCode, SearchGw, SubAck, SubscribeTopic, WillTopic,
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

    fn from_client(topic: sn_client::Topic) -> Topic {
        match topic {
            sn_client::Topic::Normal(id) => Topic::Normal(id),
            sn_client::Topic::Predefined(id) => Topic::Predefined(id),
            sn_client::Topic::Short(name) => Topic::Short(name),
            sn_client::Topic::LongName(name) => Topic::LongName(name),
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

/// What a CONNECT asks for (CleanSession, keep-alive, a Will), and the Will: the client
/// machine's own types, which the mote hands to it as they are.
pub use sn_client::{ConnectOptions, Will};

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
    /// The protocol: requests, retransmission, answers to what the gateway initiates.
    client: Client,
    /// Received packets nobody asked for yet (raw datagrams).
    inbox: VecDeque<Vec<u8>>,
    /// Delivered PUBLISHes not yet taken by [`Mote::recv_publish`].
    delivered: VecDeque<Delivered>,
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

/// What one turn of the socket brought.
enum Turn {
    /// Nothing from the gateway (a timeout, or a datagram from someone else).
    Quiet,
    /// A datagram the machine handled.
    Handled,
    /// A datagram that is not the machine's: for the caller or the inbox.
    Unexpected(Vec<u8>),
}

impl Mote {
    /// A mote on a new socket on 127.0.0.1 (or ::1 for an IPv6 gateway address), talking to
    /// the gateway at `gateway`.
    pub async fn new(gateway: SocketAddr, client_id: &str) -> Mote {
        Mote::on_socket(bind_like(gateway).await, gateway, client_id)
    }

    /// A mote on a new socket on `local` (port 0): another loopback address, such as
    /// 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), for the tests of what the gateway
    /// allows from which address.
    pub async fn new_at(gateway: SocketAddr, client_id: &str, local: IpAddr) -> Mote {
        let socket = UdpSocket::bind((local, 0))
            .await
            .unwrap_or_else(|e| panic!("bind a mote socket on {local}: {e}"));
        Mote::on_socket(socket, gateway, client_id)
    }

    fn on_socket(socket: UdpSocket, gateway: SocketAddr, client_id: &str) -> Mote {
        let mut config = ClientConfig::new(client_id);
        // A test decides when the mote is silent (the gateway's keep-alive is under test),
        // and sees every PUBLISH, known topic id or not.
        config.keep_alive_pings = false;
        config.unknown_topic_ids = UnknownTopicIds::Accept;
        Mote {
            socket,
            gateway,
            client_id: client_id.to_string(),
            client: Client::new(config),
            inbox: VecDeque::new(),
            delivered: VecDeque::new(),
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
        self.client.name_predefined(id, name);
    }

    /// The name of a normal topic id the mote knows.
    pub fn topic_name(&self, id: u16) -> Option<&str> {
        self.client.topic_name(id)
    }

    /// A fresh MsgId, never 0.
    pub fn next_msg_id(&mut self) -> u16 {
        self.client.next_msg_id()
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

    /// Sends what the machine has to send.
    async fn flush(&mut self) {
        let mut buf = Vec::new();
        while self.client.poll_transmit(&mut buf) {
            self.send_raw(&buf).await;
        }
    }

    /// Waits until `deadline` for one datagram from the gateway and feeds it to the machine
    /// (or, at the deadline, lets the machine's timers run), then sends what it answers.
    async fn turn(&mut self, deadline: Instant) -> Turn {
        let left = deadline.saturating_duration_since(Instant::now());
        let turn = match self.recv_raw(left).await {
            None => {
                self.client.handle_timeout(Instant::now().into_std());
                Turn::Quiet
            }
            Some((_, from)) if from != self.gateway => Turn::Quiet,
            Some((datagram, _)) => {
                match self
                    .client
                    .handle_datagram(Instant::now().into_std(), &datagram)
                {
                    Received::Consumed => Turn::Handled,
                    Received::Unexpected => Turn::Unexpected(datagram),
                    Received::Undecodable => {
                        decode(&datagram);
                        unreachable!("the machine decodes what sn-codec decodes")
                    }
                }
            }
        };
        self.flush().await;
        turn
    }

    /// Takes the machine's events: messages and REGISTERs are kept for the test; the answer
    /// to a request is returned; a request given up fails the test.
    fn take_events(&mut self) -> Option<Event> {
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::Message(m) => {
                    // A QoS 2 repeat before PUBREC's PUBREL is acknowledged, not delivered twice.
                    if !m.repeat {
                        self.delivered.push_back(Delivered {
                            topic: Topic::from_client(m.topic),
                            topic_name: m.topic_name,
                            data: m.payload,
                            qos: m.qos,
                            retain: m.retain,
                            dup: m.dup,
                            msg_id: m.msg_id,
                        });
                    }
                }
                Event::Registered { topic_id, name } => self.registers.push((topic_id, name)),
                Event::TimedOut(request) => panic!(
                    "{}: no {} from the gateway within {:?} (retransmitting every {:?}); \
                     unhandled packets: {:?}",
                    self.client_id,
                    request.awaited(),
                    self.op_timeout,
                    self.retry_interval,
                    self.inbox_summary()
                ),
                // The raw DISCONNECT or refusing PUBACK is in the inbox for the test.
                Event::Disconnected { .. } | Event::Rejected { .. } | Event::GatewayLost { .. } => {
                }
                // The answer to the request: what follows stays queued for the next call.
                answer => return Some(answer),
            }
        }
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
            if Instant::now() >= deadline {
                return None;
            }
            let turn = self.turn(deadline).await;
            self.take_events();
            let Turn::Unexpected(datagram) = turn else {
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

    /// Starts a request on the machine (resent every `retry_interval`, given up after
    /// `op_timeout`) and runs it to its answer; fails the test on timeout.
    async fn exchange(
        &mut self,
        start: impl FnOnce(&mut Client, std::time::Instant) -> Result<(), sn_client::ClientError>,
    ) -> Event {
        self.client.set_timing(Timing {
            retry: self.retry_interval,
            retries: u32::MAX,
            timeout: self.op_timeout,
        });
        let now = Instant::now().into_std();
        if let Err(e) = start(&mut self.client, now) {
            panic!("{}: cannot start the request: {e}", self.client_id);
        }
        self.flush().await;
        loop {
            if let Some(answer) = self.take_events() {
                return answer;
            }
            let deadline = self
                .client
                .poll_timeout()
                .map_or_else(|| Instant::now() + self.retry_interval, Instant::from_std);
            if let Turn::Unexpected(datagram) = self.turn(deadline).await {
                self.inbox.push_back(datagram);
            }
        }
    }

    /// One CONNECT (with the Will handshake if `options.will` is set); returns the CONNACK
    /// return code. A refusal may come at any step of the handshake.
    pub async fn connect_with(&mut self, options: &ConnectOptions) -> ReturnCode {
        match self
            .exchange(|client, now| client.connect(now, options))
            .await
        {
            Event::ConnAck(code) => code,
            other => panic!("{}: CONNECT ended with {other:?}", self.client_id),
        }
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
        let ended = self
            .exchange(|client, now| client.register(now, name).map(|_| ()))
            .await;
        let Event::RegAck { topic_id, code, .. } = ended else {
            panic!("{}: REGISTER ended with {ended:?}", self.client_id);
        };
        assert_eq!(
            code,
            ReturnCode::Accepted,
            "{}: REGISTER {name:?} refused",
            self.client_id
        );
        assert_ne!(topic_id, 0, "REGACK accepted with topic id 0");
        topic_id
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
        if !qos.needs_ack() {
            let now = Instant::now().into_std();
            if let Err(e) =
                self.client
                    .publish_with_id(now, topic.to_codec(), qos, retain, data, msg_id)
            {
                panic!("{}: cannot publish: {e}", self.client_id);
            }
            self.flush().await;
            return ReturnCode::Accepted;
        }
        let ended = self
            .exchange(|client, now| {
                client.publish_with_id(now, topic.to_codec(), qos, retain, data, msg_id)
            })
            .await;
        match ended {
            Event::Published { code, .. } => code,
            other => panic!("{}: PUBLISH ended with {other:?}", self.client_id),
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
        let ended = self
            .exchange(|client, now| client.subscribe(now, topic.to_codec(), qos).map(|_| ()))
            .await;
        match ended {
            Event::SubAck(ack) => ack,
            other => panic!("{}: SUBSCRIBE ended with {other:?}", self.client_id),
        }
    }

    /// UNSUBSCRIBEs and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, topic: SubTopic) {
        self.exchange(|client, now| client.unsubscribe(now, topic.to_codec()).map(|_| ()))
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
            if Instant::now() >= deadline {
                return None;
            }
            if let Turn::Unexpected(other) = self.turn(deadline).await {
                self.inbox.push_back(other);
            }
            self.take_events();
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
        self.exchange(Client::ping).await;
    }

    /// DISCONNECT and waits for the gateway's DISCONNECT.
    pub async fn disconnect(&mut self) {
        self.exchange(Client::disconnect).await;
    }

    /// Goes to sleep: DISCONNECT with `duration` seconds, and waits for the gateway's
    /// DISCONNECT.
    pub async fn sleep(&mut self, duration: u16) {
        self.exchange(|client, now| client.sleep(now, duration))
            .await;
    }

    /// Wakes up: PINGREQ with the client id (repeated every `retry_interval`) until PINGRESP.
    /// Returns everything delivered before the PINGRESP (and not yet taken), in order.
    pub async fn wake(&mut self) -> Vec<Delivered> {
        self.exchange(Client::wake).await;
        self.delivered.drain(..).collect()
    }

    /// WILLTOPICUPD (`None`: the empty form, which deletes the Will); returns the
    /// WILLTOPICRESP return code.
    pub async fn update_will_topic(&mut self, will: Option<(&str, QoS, bool)>) -> ReturnCode {
        let will = will.map(|(topic, qos, retain)| WillTopic {
            qos,
            retain,
            topic: topic.as_bytes(),
        });
        match self
            .exchange(|client, now| client.update_will_topic(now, will))
            .await
        {
            Event::WillTopicResp(code) => code,
            other => panic!("{}: WILLTOPICUPD ended with {other:?}", self.client_id),
        }
    }

    /// WILLMSGUPD; returns the WILLMSGRESP return code.
    pub async fn update_will_message(&mut self, message: &[u8]) -> ReturnCode {
        match self
            .exchange(|client, now| client.update_will_message(now, message))
            .await
        {
            Event::WillMsgResp(code) => code,
            other => panic!("{}: WILLMSGUPD ended with {other:?}", self.client_id),
        }
    }

    /// Sends SEARCHGW with `radius` to the gateway's address.
    pub async fn search_gw(&self, radius: u8) {
        self.send(Packet::SearchGw(SearchGw { radius })).await;
    }
}
