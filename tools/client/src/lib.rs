//! A sans-I/O MQTT-SN v1.2 client: the protocol rules of one client session with one gateway,
//! with no socket, no clock and no async runtime, in the style of the gateway core (`sn-core`).
//!
//! The `mqtt-sn` tool (`pub`, `sub`), the bench's simulated motes and the black-box tests' mote
//! all drive this one machine, so the client role is written once.
//!
//! # The polling contract
//!
//! - Start a request ([`Client::connect`], [`Client::register`], [`Client::publish`], ...).
//!   One waits for its answer at a time (v1.2 §6.13); starting another meanwhile fails with
//!   [`ClientError::Busy`]. QoS -1 and 0 PUBLISHes wait for nothing and can go any time.
//! - Feed every datagram from the gateway to [`Client::handle_datagram`], and call
//!   [`Client::handle_timeout`] once [`Client::poll_timeout`]'s instant has passed.
//! - After each of these calls, drain [`Client::poll_transmit`] (datagrams to send to the
//!   gateway, in order) and [`Client::poll_event`] (answers, delivered messages, timeouts).
//! - `now` is monotonic: never earlier than the `now` of an earlier call.
//!
//! What the gateway sends on its own initiative is answered here, the way the spec wants a
//! client to: PINGREQ gets PINGRESP, REGISTER gets REGACK (and the name is remembered), a
//! PUBLISH gets PUBACK or PUBREC (and becomes an [`Event::Message`]), PUBREL gets PUBCOMP.
//! Requests are resent every T_retry up to N_retry times (a PUBLISH or SUBSCRIBE with DUP set)
//! and given up with [`Event::TimedOut`] at their timeout. Nothing the network sends can make
//! it panic: undecodable datagrams are reported and dropped.

mod types;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    Subscribe, SubscribeTopic, Unsubscribe, WillTopic,
};
use sn_codec::QoS;
use tracing::{debug, warn};

pub use types::{
    topic_id_field, ClientConfig, ClientError, ConnectOptions, Event, Message, Received, Request,
    Timing, Topic, UnknownTopicIds, Will,
};

/// How many inbound QoS 2 message ids are remembered for duplicate detection. The gateway has
/// one QoS 2 PUBLISH in flight at a time (reference §4.8), so a handful is plenty; the bound
/// only stops a misbehaving gateway from growing it without limit.
const MAX_QOS2_REMEMBERED: usize = 64;

/// ProtocolId of MQTT-SN v1.2 in CONNECT.
const PROTOCOL_ID: u8 = 0x01;

/// A request waiting for its answer.
#[derive(Debug)]
struct Pending {
    request: Request,
    /// Sends of the current step so far (1 after the first).
    sends: u32,
    next_resend: Instant,
    give_up: Instant,
    /// Whether a resend sets DUP (PUBLISH, SUBSCRIBE).
    dup_on_resend: bool,
}

/// The Will being handed over during CONNECT.
#[derive(Debug)]
struct WillHandshake {
    topic: Vec<u8>,
    message: Vec<u8>,
}

/// A keep-alive PINGREQ waiting for its PINGRESP.
#[derive(Debug, Clone, Copy)]
struct KeepAlivePing {
    first_sent: Instant,
    last_sent: Instant,
}

/// One MQTT-SN client session with one gateway. See the crate documentation for how to
/// drive it.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    pending: Option<Pending>,
    /// The encoded request of `pending`, for resending.
    request: Vec<u8>,
    /// Encoded WILLTOPIC and WILLMSG while CONNECT with a Will is under way.
    will: Option<WillHandshake>,
    /// The name of the topic a pending REGISTER or SUBSCRIBE is for.
    pending_name: Option<String>,
    /// Datagrams to send, back to back in one buffer.
    outgoing: Vec<u8>,
    outgoing_ranges: VecDeque<Range<usize>>,
    events: VecDeque<Event>,
    next_msg_id: u16,
    /// `Some` once a CONNECT with a non-zero keep-alive was accepted, until DISCONNECT.
    keep_alive: Option<Duration>,
    ping: Option<KeepAlivePing>,
    last_sent: Option<Instant>,
    /// The keep-alive of the CONNECT under way, applied once it is accepted.
    connect_keep_alive: u16,
    /// When the pending (or last) request was last sent.
    request_sent: Option<Instant>,
    /// Normal topic ids and their names.
    topics: HashMap<u16, String>,
    /// Names of predefined ids the application told us.
    predefined: HashMap<u16, String>,
    /// QoS 2 PUBLISHes received and PUBREC'd, until their PUBREL.
    inbound_qos2: VecDeque<u16>,
    /// Whether the last CONNECT asked for CleanSession=1: that session's state lasts only
    /// as long as the session (asleep included), and is forgotten when it ends.
    session_clean: bool,
    retransmits: u64,
}

impl Client {
    /// A client that has sent nothing yet.
    pub fn new(config: ClientConfig) -> Self {
        Client {
            config,
            pending: None,
            request: Vec::with_capacity(64),
            will: None,
            pending_name: None,
            outgoing: Vec::with_capacity(256),
            outgoing_ranges: VecDeque::new(),
            events: VecDeque::new(),
            next_msg_id: 0,
            keep_alive: None,
            ping: None,
            last_sent: None,
            connect_keep_alive: 0,
            request_sent: None,
            topics: HashMap::new(),
            predefined: HashMap::new(),
            inbound_qos2: VecDeque::new(),
            session_clean: false,
            retransmits: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Changes the client id, for the next CONNECT and wake-up PINGREQ.
    pub fn set_client_id(&mut self, client_id: impl Into<String>) {
        self.config.client_id = client_id.into();
    }

    /// Changes the timers of the requests started from now on (e.g. a shorter timeout for
    /// the last step of a run).
    pub fn set_timing(&mut self, timing: Timing) {
        self.config.timing = timing;
    }

    /// The request waiting for its answer, if any.
    pub fn pending(&self) -> Option<Request> {
        self.pending.as_ref().map(|p| p.request)
    }

    /// When the pending (or last) request was last sent.
    pub fn request_sent_at(&self) -> Option<Instant> {
        self.request_sent
    }

    /// How many times requests were resent since the client was made.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Remembers the name of a predefined id, for [`Message::topic_name`].
    pub fn name_predefined(&mut self, id: u16, name: impl Into<String>) {
        self.predefined.insert(id, name.into());
    }

    /// The name of a normal topic id the client knows.
    pub fn topic_name(&self, id: u16) -> Option<&str> {
        self.topics.get(&id).map(String::as_str)
    }

    /// A fresh MsgId, never 0 (0 means "no MsgId" at QoS 0 and -1).
    pub fn next_msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    /// Drops the pending request without waiting any longer; returns it.
    pub fn abandon(&mut self) -> Option<Request> {
        self.will = None;
        self.pending_name = None;
        self.pending.take().map(|p| p.request)
    }

    // ----- requests -----

    /// CONNECT, with the Will handshake when `options.will` is set; ends with
    /// [`Event::ConnAck`] or [`Event::TimedOut`].
    pub fn connect(&mut self, now: Instant, options: &ConnectOptions) -> Result<(), ClientError> {
        self.check_idle()?;
        self.will = match &options.will {
            Some(w) => Some(WillHandshake {
                topic: Packet::WillTopic(Some(WillTopic {
                    qos: w.qos,
                    retain: w.retain,
                    topic: w.topic.as_bytes(),
                }))
                .to_vec()?,
                message: Packet::WillMsg { msg: &w.message }.to_vec()?,
            }),
            None => None,
        };
        let client_id = std::mem::take(&mut self.config.client_id);
        let connect = Packet::Connect(Connect {
            will: options.will.is_some(),
            clean_session: options.clean_session,
            protocol_id: PROTOCOL_ID,
            duration: options.keep_alive,
            client_id: client_id.as_bytes(),
        });
        let started = self.start(now, Request::Connect, &connect, false);
        self.config.client_id = client_id;
        if started.is_ok() {
            self.keep_alive = None;
            self.ping = None;
            // Kept for the CONNACK: keep-alive starts once the gateway accepted.
            self.connect_keep_alive = options.keep_alive;
            if options.clean_session {
                // A clean session discards the old one's state (MQTT 3.1.2.4), QoS 2 MsgIds
                // awaiting their PUBREL included: the gateway's new session numbers its
                // messages afresh, and one of them must not be taken for a repeat.
                self.inbound_qos2.clear();
            }
            self.session_clean = options.clean_session;
        } else {
            self.will = None;
        }
        started
    }

    /// REGISTERs a topic name; returns its MsgId. Ends with [`Event::RegAck`] (the id is
    /// remembered when accepted) or [`Event::TimedOut`].
    pub fn register(&mut self, now: Instant, name: &str) -> Result<u16, ClientError> {
        self.check_idle()?;
        let msg_id = self.next_msg_id();
        let register = Packet::Register(Register {
            topic_id: 0,
            msg_id,
            topic_name: name.as_bytes(),
        });
        self.start(now, Request::Register { msg_id }, &register, false)?;
        self.pending_name = Some(name.to_owned());
        Ok(msg_id)
    }

    /// PUBLISHes with a fresh MsgId (0 at QoS -1 and 0); returns it. QoS -1 and 0 are sent
    /// at once and wait for nothing; QoS 1 ends with [`Event::Published`] after PUBACK, QoS 2
    /// after PUBREC, PUBREL, PUBCOMP.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: PublishTopic<'_>,
        qos: QoS,
        retain: bool,
        payload: &[u8],
    ) -> Result<u16, ClientError> {
        if qos.needs_ack() {
            self.check_idle()?;
        }
        let msg_id = if qos.needs_ack() {
            self.next_msg_id()
        } else {
            0
        };
        self.publish_with_id(now, topic, qos, retain, payload, msg_id)?;
        Ok(msg_id)
    }

    /// [`Client::publish`] with a MsgId the caller chose.
    pub fn publish_with_id(
        &mut self,
        now: Instant,
        topic: PublishTopic<'_>,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        msg_id: u16,
    ) -> Result<(), ClientError> {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic,
            msg_id,
            data: payload,
        });
        if qos.needs_ack() {
            self.start(now, Request::Publish { msg_id, qos }, &publish, true)
        } else {
            self.send_packet(now, &publish)
        }
    }

    /// SUBSCRIBEs; returns its MsgId. Ends with [`Event::SubAck`] (a plain name's topic id is
    /// remembered when accepted) or [`Event::TimedOut`].
    pub fn subscribe(
        &mut self,
        now: Instant,
        topic: SubscribeTopic<'_>,
        qos: QoS,
    ) -> Result<u16, ClientError> {
        self.check_idle()?;
        let msg_id = self.next_msg_id();
        let subscribe = Packet::Subscribe(Subscribe {
            dup: false,
            qos,
            msg_id,
            topic,
        });
        self.start(now, Request::Subscribe { msg_id }, &subscribe, true)?;
        if let SubscribeTopic::Name(name) = topic {
            let name = String::from_utf8_lossy(name);
            if !sn_codec::validate::is_wildcard(&name) {
                self.pending_name = Some(name.into_owned());
            }
        }
        Ok(msg_id)
    }

    /// UNSUBSCRIBEs; returns its MsgId. Ends with [`Event::UnsubAck`] or [`Event::TimedOut`].
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        topic: SubscribeTopic<'_>,
    ) -> Result<u16, ClientError> {
        self.check_idle()?;
        let msg_id = self.next_msg_id();
        let unsubscribe = Packet::Unsubscribe(Unsubscribe { msg_id, topic });
        self.start(now, Request::Unsubscribe { msg_id }, &unsubscribe, false)?;
        Ok(msg_id)
    }

    /// PINGREQ (without client id); ends with [`Event::PingResp`] or [`Event::TimedOut`].
    pub fn ping(&mut self, now: Instant) -> Result<(), ClientError> {
        self.check_idle()?;
        self.start(
            now,
            Request::Ping,
            &Packet::PingReq { client_id: &[] },
            false,
        )
    }

    /// DISCONNECT; ends with [`Event::DisconnectAck`] or [`Event::TimedOut`]. Keep-alive
    /// stops at once.
    pub fn disconnect(&mut self, now: Instant) -> Result<(), ClientError> {
        self.check_idle()?;
        let disconnect = Packet::Disconnect(Disconnect { duration: None });
        self.start(now, Request::Disconnect, &disconnect, false)?;
        self.stop_keep_alive();
        Ok(())
    }

    /// Goes to sleep for `duration` seconds: DISCONNECT with a duration; ends with
    /// [`Event::DisconnectAck`] or [`Event::TimedOut`]. Keep-alive stops until woken.
    pub fn sleep(&mut self, now: Instant, duration: u16) -> Result<(), ClientError> {
        self.check_idle()?;
        let disconnect = Packet::Disconnect(Disconnect {
            duration: Some(duration),
        });
        self.start(now, Request::Sleep, &disconnect, false)?;
        self.stop_keep_alive();
        Ok(())
    }

    /// Wakes up: PINGREQ with the client id; what the gateway kept arrives as
    /// [`Event::Message`]s before [`Event::PingResp`].
    pub fn wake(&mut self, now: Instant) -> Result<(), ClientError> {
        self.check_idle()?;
        let client_id = std::mem::take(&mut self.config.client_id);
        let started = self.start(
            now,
            Request::Wake,
            &Packet::PingReq {
                client_id: client_id.as_bytes(),
            },
            false,
        );
        self.config.client_id = client_id;
        started
    }

    /// WILLTOPICUPD (`None`: the empty form, which deletes the Will); ends with
    /// [`Event::WillTopicResp`].
    pub fn update_will_topic(
        &mut self,
        now: Instant,
        will: Option<WillTopic<'_>>,
    ) -> Result<(), ClientError> {
        self.check_idle()?;
        self.start(
            now,
            Request::WillTopicUpdate,
            &Packet::WillTopicUpd(will),
            false,
        )
    }

    /// WILLMSGUPD; ends with [`Event::WillMsgResp`].
    pub fn update_will_message(&mut self, now: Instant, message: &[u8]) -> Result<(), ClientError> {
        self.check_idle()?;
        self.start(
            now,
            Request::WillMessageUpdate,
            &Packet::WillMsgUpd { msg: message },
            false,
        )
    }

    // ----- input -----

    /// A datagram from the gateway.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Received {
        let packet = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(e) => {
                debug!(
                    "{} bytes ignored, not an MQTT-SN v1.2 packet: {e}",
                    bytes.len()
                );
                return Received::Undecodable;
            }
        };
        if self.answer(now, &packet) {
            return Received::Consumed;
        }
        self.unsolicited(now, &packet)
    }

    /// The time has come (see [`Client::poll_timeout`]): resend, give up, keep alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(pending) = &mut self.pending {
            if now >= pending.give_up {
                let request = pending.request;
                self.abandon();
                self.events.push_back(Event::TimedOut(request));
                return;
            }
            if pending.sends > self.config.timing.retries || now < pending.next_resend {
                return;
            }
            pending.sends = pending.sends.saturating_add(1);
            pending.next_resend = now + self.config.timing.retry;
            if pending.dup_on_resend {
                set_dup(&mut self.request);
            }
            self.retransmits = self.retransmits.saturating_add(1);
            let request = std::mem::take(&mut self.request);
            self.queue(now, &request);
            self.request = request;
            self.request_sent = Some(now);
            return;
        }
        let Some(keep_alive) = self.keep_alive_timer() else {
            return;
        };
        let retry = self.config.timing.retry;
        match self.ping {
            Some(ping) if now >= ping.first_sent + self.ping_patience() => {
                self.stop_keep_alive();
                self.events.push_back(Event::GatewayLost {
                    after: self.ping_patience(),
                });
            }
            Some(ping) if now >= ping.last_sent + retry => {
                self.send_keep_alive_ping(now);
                self.ping = Some(KeepAlivePing {
                    last_sent: now,
                    ..ping
                });
            }
            None if self.last_sent.is_some_and(|last| now >= last + keep_alive) => {
                self.send_keep_alive_ping(now);
                self.ping = Some(KeepAlivePing {
                    first_sent: now,
                    last_sent: now,
                });
            }
            _ => {}
        }
    }

    // ----- output -----

    /// The next datagram for the gateway, written into `buf` (cleared first); `false` when
    /// there is none.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let Some(range) = self.outgoing_ranges.pop_front() else {
            return false;
        };
        if let Some(bytes) = self.outgoing.get(range) {
            buf.extend_from_slice(bytes);
        }
        if self.outgoing_ranges.is_empty() {
            self.outgoing.clear();
        }
        true
    }

    /// When [`Client::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(pending) = &self.pending {
            return Some(if pending.sends <= self.config.timing.retries {
                pending.next_resend.min(pending.give_up)
            } else {
                pending.give_up
            });
        }
        let keep_alive = self.keep_alive_timer()?;
        Some(match self.ping {
            Some(ping) => (ping.last_sent + self.config.timing.retry)
                .min(ping.first_sent + self.ping_patience()),
            None => self.last_sent? + keep_alive,
        })
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- inside -----

    fn check_idle(&self) -> Result<(), ClientError> {
        match &self.pending {
            Some(p) => Err(ClientError::Busy(p.request)),
            None => Ok(()),
        }
    }

    /// Encodes `packet` as the pending request and sends it.
    fn start(
        &mut self,
        now: Instant,
        request: Request,
        packet: &Packet<'_>,
        dup_on_resend: bool,
    ) -> Result<(), ClientError> {
        self.check_idle()?;
        self.request.clear();
        packet.encode(&mut self.request)?;
        let bytes = std::mem::take(&mut self.request);
        self.queue(now, &bytes);
        self.request = bytes;
        self.pending = Some(self.fresh_pending(now, request, dup_on_resend));
        self.pending_name = None;
        self.request_sent = Some(now);
        Ok(())
    }

    fn fresh_pending(&self, now: Instant, request: Request, dup_on_resend: bool) -> Pending {
        let timing = self.config.timing;
        Pending {
            request,
            sends: 1,
            next_resend: now + timing.retry,
            give_up: now + timing.timeout,
            dup_on_resend,
        }
    }

    /// The pending request made progress: `next` is sent and becomes the request to resend.
    fn step(&mut self, now: Instant, request: Request, next: &[u8]) {
        self.request.clear();
        self.request.extend_from_slice(next);
        self.queue(now, next);
        self.pending = Some(self.fresh_pending(now, request, false));
        self.request_sent = Some(now);
    }

    /// The pending request is answered.
    fn finish(&mut self, event: Event) {
        self.pending = None;
        self.will = None;
        self.events.push_back(event);
    }

    /// Offers `packet` to the pending request; `true` if it was its answer (or a step of it).
    fn answer(&mut self, now: Instant, packet: &Packet<'_>) -> bool {
        let Some(request) = self.pending() else {
            return false;
        };
        match (request, packet) {
            (
                Request::Connect | Request::WillTopic | Request::WillMsg,
                Packet::ConnAck { return_code },
            ) => {
                if return_code.is_accepted() {
                    self.keep_alive = (self.connect_keep_alive > 0)
                        .then(|| Duration::from_secs(u64::from(self.connect_keep_alive)));
                    self.ping = None;
                }
                self.finish(Event::ConnAck(*return_code));
            }
            (Request::Connect | Request::WillTopic, Packet::WillTopicReq) => {
                let Some(will) = self.will.take() else {
                    return false;
                };
                self.step(now, Request::WillTopic, &will.topic);
                self.will = Some(will);
            }
            (Request::WillTopic | Request::WillMsg, Packet::WillMsgReq) => {
                let Some(will) = self.will.take() else {
                    return false;
                };
                self.step(now, Request::WillMsg, &will.message);
                self.will = Some(will);
            }
            (Request::Register { msg_id }, Packet::RegAck(a)) if a.msg_id == msg_id => {
                if let Some(name) = self.pending_name.take() {
                    if a.return_code.is_accepted() {
                        self.topics.insert(a.topic_id, name);
                    }
                }
                self.finish(Event::RegAck {
                    msg_id,
                    topic_id: a.topic_id,
                    code: a.return_code,
                });
            }
            (Request::Publish { msg_id, qos }, Packet::PubAck(a)) if a.msg_id == msg_id => {
                // A QoS 2 PUBLISH is never PUBACKed with 0x00: not an answer.
                if qos == QoS::ExactlyOnce && a.return_code.is_accepted() {
                    return false;
                }
                self.finish(Event::Published {
                    msg_id,
                    code: a.return_code,
                });
            }
            (
                Request::Publish {
                    msg_id,
                    qos: QoS::ExactlyOnce,
                }
                | Request::PubRel { msg_id },
                Packet::PubRec { msg_id: m },
            ) if *m == msg_id => {
                // The gateway holds it: release it (again, if our PUBREL was lost).
                let mut pubrel = Vec::with_capacity(4);
                if (Packet::PubRel { msg_id }).encode(&mut pubrel).is_ok() {
                    self.step(now, Request::PubRel { msg_id }, &pubrel);
                }
            }
            (Request::PubRel { msg_id }, Packet::PubComp { msg_id: m }) if *m == msg_id => {
                self.finish(Event::Published {
                    msg_id,
                    code: ReturnCode::Accepted,
                });
            }
            (Request::Subscribe { msg_id }, Packet::SubAck(a)) if a.msg_id == msg_id => {
                if let Some(name) = self.pending_name.take() {
                    if a.return_code.is_accepted() && a.topic_id != 0 {
                        self.topics.insert(a.topic_id, name);
                    }
                }
                self.finish(Event::SubAck(*a));
            }
            (Request::Unsubscribe { msg_id }, Packet::UnsubAck { msg_id: m }) if *m == msg_id => {
                self.finish(Event::UnsubAck { msg_id });
            }
            (Request::Ping | Request::Wake, Packet::PingResp) => {
                self.ping = None;
                self.finish(Event::PingResp);
            }
            (Request::Disconnect | Request::Sleep, Packet::Disconnect(_)) => {
                if request == Request::Disconnect {
                    self.end_session();
                }
                self.finish(Event::DisconnectAck);
            }
            (Request::WillTopicUpdate, Packet::WillTopicResp { return_code }) => {
                self.finish(Event::WillTopicResp(*return_code));
            }
            (Request::WillMessageUpdate, Packet::WillMsgResp { return_code }) => {
                self.finish(Event::WillMsgResp(*return_code));
            }
            _ => return false,
        }
        true
    }

    /// Handles a packet no request waits for, as a v1.2 client must.
    fn unsolicited(&mut self, now: Instant, packet: &Packet<'_>) -> Received {
        match packet {
            Packet::PingReq { .. } => self.reply(now, &Packet::PingResp),
            Packet::PingResp if self.ping.is_some() => self.ping = None,
            Packet::Register(r) => self.gateway_register(now, r),
            Packet::Publish(p) => self.gateway_publish(now, p),
            Packet::PubRel { msg_id } => {
                self.inbound_qos2.retain(|id| id != msg_id);
                self.reply(now, &Packet::PubComp { msg_id: *msg_id });
            }
            Packet::Disconnect(d) => {
                // The gateway ends an active connection (a sleeping client's, or a stale copy
                // of the answer to a sleep, would not have keep-alive running).
                if self.keep_alive.is_some() {
                    self.end_session();
                }
                self.events.push_back(Event::Disconnected {
                    duration: d.duration,
                });
                return Received::Unexpected;
            }
            Packet::PubAck(a) if !a.return_code.is_accepted() => {
                self.events.push_back(Event::Rejected {
                    topic_id: a.topic_id,
                    msg_id: a.msg_id,
                    code: a.return_code,
                });
                return Received::Unexpected;
            }
            other => {
                debug!("unexpected {}", other.msg_type().name());
                return Received::Unexpected;
            }
        }
        Received::Consumed
    }

    /// The gateway announces the name behind a topic id before its first PUBLISH on it (§6.10).
    fn gateway_register(&mut self, now: Instant, r: &Register<'_>) {
        // Ids 0x0000 and 0xFFFF are reserved; accepting one would let a later PUBLISH on it
        // show under a name the gateway never meant.
        let code = if r.topic_id == 0 || r.topic_id == u16::MAX {
            ReturnCode::InvalidTopicId
        } else {
            let name = String::from_utf8_lossy(r.topic_name).into_owned();
            self.topics.insert(r.topic_id, name.clone());
            self.events.push_back(Event::Registered {
                topic_id: r.topic_id,
                name,
            });
            ReturnCode::Accepted
        };
        self.reply(
            now,
            &Packet::RegAck(RegAck {
                topic_id: r.topic_id,
                msg_id: r.msg_id,
                return_code: code,
            }),
        );
    }

    /// A PUBLISH from the gateway: acknowledge at its QoS and report it.
    fn gateway_publish(&mut self, now: Instant, p: &Publish<'_>) {
        let topic_id = topic_id_field(&p.topic);
        let topic_name = match p.topic {
            PublishTopic::Normal(id) => match self.topics.get(&id) {
                Some(name) => Some(name.clone()),
                None if self.config.unknown_topic_ids == UnknownTopicIds::Reject => {
                    // §6.10: a client that does not know the id answers PUBACK 0x02.
                    warn!("PUBLISH on unknown topic id {id} rejected (PUBACK 0x02)");
                    self.reply(
                        now,
                        &Packet::PubAck(PubAck {
                            topic_id,
                            msg_id: p.msg_id,
                            return_code: ReturnCode::InvalidTopicId,
                        }),
                    );
                    return;
                }
                None => None,
            },
            PublishTopic::Predefined(id) => self.predefined.get(&id).cloned(),
            PublishTopic::Short(name) => Some(String::from_utf8_lossy(&name).into_owned()),
            PublishTopic::LongName(name) => Some(String::from_utf8_lossy(name).into_owned()),
        };
        let mut repeat = false;
        match p.qos {
            QoS::MinusOne | QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.reply(
                now,
                &Packet::PubAck(PubAck {
                    topic_id,
                    msg_id: p.msg_id,
                    return_code: ReturnCode::Accepted,
                }),
            ),
            QoS::ExactlyOnce => {
                repeat = self.inbound_qos2.contains(&p.msg_id);
                if !repeat {
                    if self.inbound_qos2.len() >= MAX_QOS2_REMEMBERED {
                        self.inbound_qos2.pop_front();
                    }
                    self.inbound_qos2.push_back(p.msg_id);
                }
                self.reply(now, &Packet::PubRec { msg_id: p.msg_id });
            }
        }
        self.events.push_back(Event::Message(Message {
            topic: Topic::from_codec(&p.topic),
            topic_name,
            payload: p.data.to_vec(),
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            msg_id: p.msg_id,
            repeat,
        }));
    }

    /// Sends an answer or a fire-and-forget packet.
    fn send_packet(&mut self, now: Instant, packet: &Packet<'_>) -> Result<(), ClientError> {
        let start = self.outgoing.len();
        if let Err(e) = packet.encode(&mut self.outgoing) {
            self.outgoing.truncate(start);
            return Err(e.into());
        }
        self.outgoing_ranges.push_back(start..self.outgoing.len());
        self.last_sent = Some(now);
        Ok(())
    }

    /// [`Client::send_packet`] for the answers the client makes itself, which always encode.
    fn reply(&mut self, now: Instant, packet: &Packet<'_>) {
        if let Err(e) = self.send_packet(now, packet) {
            debug!("cannot encode {}: {e}", packet.msg_type().name());
        }
    }

    fn queue(&mut self, now: Instant, bytes: &[u8]) {
        let start = self.outgoing.len();
        self.outgoing.extend_from_slice(bytes);
        self.outgoing_ranges.push_back(start..self.outgoing.len());
        self.last_sent = Some(now);
    }

    fn keep_alive_timer(&self) -> Option<Duration> {
        if self.config.keep_alive_pings {
            self.keep_alive
        } else {
            None
        }
    }

    /// The session ended (DISCONNECT either way, not a sleep): a CleanSession=1 session's
    /// state goes with it (MQTT 3.1.2.4: not reused by any later session). A later
    /// CleanSession=0 CONNECT finds no session at the gateway, whose new one numbers its
    /// messages afresh: a QoS 2 MsgId still held from the old one would drop a new message
    /// as a repeat. A CleanSession=0 session's state stays for its resumption.
    fn end_session(&mut self) {
        if self.session_clean {
            self.inbound_qos2.clear();
        }
    }

    fn stop_keep_alive(&mut self) {
        self.keep_alive = None;
        self.ping = None;
    }

    fn send_keep_alive_ping(&mut self, now: Instant) {
        self.reply(now, &Packet::PingReq { client_id: &[] });
    }

    /// A keep-alive PINGRESP is given T_retry × N_retry (at least one T_retry) after the
    /// first PINGREQ.
    fn ping_patience(&self) -> Duration {
        let timing = self.config.timing;
        timing.retry.saturating_mul(timing.retries.max(1))
    }
}

/// Sets the DUP bit of an encoded PUBLISH or SUBSCRIBE: the flags byte sits right after the
/// header, which is 2 bytes for the 1-byte length form and 4 for the 3-byte form.
fn set_dup(bytes: &mut [u8]) {
    let flags_at = if bytes.first() == Some(&0x01) { 4 } else { 2 };
    if let Some(flags) = bytes.get_mut(flags_at) {
        *flags |= 0x80;
    }
}
