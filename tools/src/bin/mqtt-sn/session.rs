//! One MQTT-SN v1.2 client session over a UDP socket connected to the gateway.
//!
//! The commands drive it with request/answer exchanges ([`Session::connect`],
//! [`Session::register`], [`Session::publish`], ...) and with [`Session::poll`] while idle.
//! Whatever arrives that is not the awaited answer is handled here the way the spec wants a
//! client to handle it (PINGREQ answered, REGISTER acknowledged and remembered, PUBLISH
//! acknowledged at its QoS and queued for the caller), so no command can forget a rule.
//!
//! Every wait has a deadline, and nothing the network sends can panic this code: undecodable
//! datagrams are logged at debug level and dropped.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    Subscribe, SubscribeTopic, WillTopic,
};
use sn_codec::QoS;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::describe;
use crate::error::ClientError;

/// The largest datagram MQTT-SN can carry (3-byte length form), so nothing is ever truncated.
const MAX_DATAGRAM: usize = 65_535;

/// How many inbound QoS 2 message ids are remembered for duplicate detection. The gateway has
/// one QoS 2 PUBLISH in flight at a time (reference §4.8), so a handful is plenty; the bound
/// only stops a misbehaving gateway from growing it without limit.
const MAX_QOS2_REMEMBERED: usize = 64;

/// Retransmission timers (§6.13: T_retry and N_retry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Resend an unanswered request after this long.
    pub(crate) retry: Duration,
    /// Resend at most this many times.
    pub(crate) retries: u32,
}

impl Timing {
    /// The longest the retransmission schedule can wait for an answer: the first send plus
    /// every resend, each given `retry` to be answered.
    pub(crate) fn budget(&self) -> Duration {
        self.retry.saturating_mul(self.retries.saturating_add(1))
    }
}

/// The Will the gateway asks for during CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    /// Will topic name.
    pub(crate) topic: String,
    /// Will payload.
    pub(crate) message: Vec<u8>,
    /// QoS it is published with.
    pub(crate) qos: QoS,
    /// Whether it is published retained.
    pub(crate) retain: bool,
}

/// What goes into CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// Client id.
    pub(crate) client_id: String,
    /// Keep-alive in seconds.
    pub(crate) keep_alive: u16,
    /// CleanSession flag.
    pub(crate) clean_session: bool,
    /// The Will, if any.
    pub(crate) will: Option<Will>,
}

/// A PUBLISH the gateway delivered, already acknowledged, waiting to be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The topic name, or `predefined:ID` when the name of a predefined id is unknown.
    pub(crate) topic: String,
    /// The payload.
    pub(crate) payload: Vec<u8>,
    /// QoS it was delivered with.
    pub(crate) qos: QoS,
    /// Retain flag.
    pub(crate) retain: bool,
    /// DUP flag.
    pub(crate) dup: bool,
}

/// What an exchange makes of a received packet.
enum Step<T> {
    /// The awaited answer: the exchange is over.
    Done(T),
    /// A request from the gateway that is part of this exchange (WILLTOPICREQ during CONNECT,
    /// a repeated PUBREC during PUBREL): send this answer, and resend it from now on.
    Answer(Vec<u8>),
    /// Not part of this exchange: handle it like any unsolicited packet.
    Other,
}

/// A PINGREQ waiting for its PINGRESP.
#[derive(Debug, Clone, Copy)]
struct PendingPing {
    first_sent: Instant,
    last_sent: Instant,
}

/// A client session with one gateway.
#[derive(Debug)]
pub(crate) struct Session {
    socket: UdpSocket,
    gateway: SocketAddr,
    timing: Timing,
    /// `None` when keep-alive is off (Duration 0) or not connected (QoS -1).
    keep_alive: Option<Duration>,
    last_sent: Instant,
    ping: Option<PendingPing>,
    next_msg_id: u16,
    /// Normal topic ids the gateway assigned (REGISTER from it, REGACK, SUBACK).
    topics: HashMap<u16, String>,
    /// Names of predefined ids the user told us, for display only.
    predefined: HashMap<u16, String>,
    /// QoS 2 PUBLISHes received and PUBREC'd, until their PUBREL: a retransmitted PUBLISH with
    /// one of these ids is acknowledged again but not delivered twice.
    inbound_qos2: VecDeque<u16>,
    /// Whether received messages are kept for the caller (`sub`) or only acknowledged (`pub`).
    collect: bool,
    delivered: VecDeque<Message>,
    recv_buf: Vec<u8>,
}

/// Sets the DUP bit of an encoded PUBLISH or SUBSCRIBE. Encoding twice would need the borrowed
/// packet again; the flags byte sits right after the header, which is 2 bytes for the 1-byte
/// length form and 4 for the 3-byte form.
fn with_dup(mut bytes: Vec<u8>) -> Vec<u8> {
    let flags_at = if bytes.first() == Some(&0x01) { 4 } else { 2 };
    if let Some(flags) = bytes.get_mut(flags_at) {
        *flags |= 0x80;
    }
    bytes
}

fn encode(what: &'static str, packet: &Packet<'_>) -> Result<Vec<u8>, ClientError> {
    packet
        .to_vec()
        .map_err(|source| ClientError::Encode { what, source })
}

/// The 2-byte TopicId field of a PUBLISH, as echoed in its PUBACK.
fn topic_id_field(topic: &PublishTopic<'_>) -> u16 {
    match *topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
        PublishTopic::LongName(_) => 0,
    }
}

/// Whether an I/O error only means "nothing listens at the gateway address (yet)": an ICMP port
/// unreachable reported on a connected UDP socket. The answer may still come (the gateway may be
/// starting), so it is treated like silence and the timers decide.
fn is_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

impl Session {
    /// Opens a UDP socket connected to `gateway`, so that only its datagrams are received.
    pub(crate) async fn open(
        gateway: SocketAddr,
        timing: Timing,
        collect: bool,
    ) -> Result<Self, ClientError> {
        let local: SocketAddr = if gateway.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket_error = |source| ClientError::Socket { gateway, source };
        let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
        socket.connect(gateway).await.map_err(socket_error)?;
        Ok(Session {
            socket,
            gateway,
            timing,
            keep_alive: None,
            last_sent: Instant::now(),
            ping: None,
            next_msg_id: 0,
            topics: HashMap::new(),
            predefined: HashMap::new(),
            inbound_qos2: VecDeque::new(),
            collect,
            delivered: VecDeque::new(),
            recv_buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// Remembers the name of a predefined id, so received messages show it.
    pub(crate) fn name_predefined(&mut self, id: u16, name: String) {
        self.predefined.insert(id, name);
    }

    /// The next message delivered by the gateway, already acknowledged.
    pub(crate) fn next_message(&mut self) -> Option<Message> {
        self.delivered.pop_front()
    }

    /// A fresh MsgId; 0 is skipped because it means "no MsgId" (QoS 0 and -1).
    fn new_msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            match Packet::decode(bytes) {
                Ok(p) => debug!("→ {}", describe::packet(&p)),
                Err(_) => debug!("→ {} bytes", bytes.len()),
            }
        }
        trace!("→ {bytes:02x?}");
        match self.socket.send(bytes).await {
            Ok(_) => {}
            // An earlier datagram bounced; this one may still arrive. The timers decide.
            Err(e) if is_refused(&e) => debug!("send to {}: {e}", self.gateway),
            Err(source) => {
                return Err(ClientError::Io {
                    gateway: self.gateway,
                    source,
                })
            }
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Encodes and sends one packet.
    async fn send(&mut self, what: &'static str, packet: &Packet<'_>) -> Result<(), ClientError> {
        let bytes = encode(what, packet)?;
        self.send_bytes(&bytes).await
    }

    /// Receives into `recv_buf` until a datagram decodes or `deadline` passes; returns its
    /// length, or `None` at the deadline.
    async fn recv_until(&mut self, deadline: Instant) -> Result<Option<usize>, ClientError> {
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut self.recv_buf));
            let len = match received.await {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(len)) => len,
                Ok(Err(e)) if is_refused(&e) => {
                    debug!("{}: {e} (is the gateway running?)", self.gateway);
                    continue;
                }
                Ok(Err(source)) => {
                    return Err(ClientError::Io {
                        gateway: self.gateway,
                        source,
                    })
                }
            };
            let bytes = self.recv_buf.get(..len).unwrap_or_default();
            trace!("← {bytes:02x?}");
            match Packet::decode(bytes) {
                Ok(p) => {
                    debug!("← {}", describe::packet(&p));
                    return Ok(Some(len));
                }
                Err(e) => debug!("← {len} bytes ignored, not an MQTT-SN v1.2 packet: {e}"),
            }
        }
    }

    /// Sends `first`, then waits for the answer `on_packet` recognises, resending `resend`
    /// every T_retry up to N_retry times, for at most `budget` after the last progress.
    ///
    /// `reply` names the awaited answer in the timeout error; `hint` is appended to it.
    async fn exchange<T>(
        &mut self,
        reply: String,
        hint: &'static str,
        first: Vec<u8>,
        resend: Vec<u8>,
        budget: Duration,
        mut on_packet: impl FnMut(&Packet<'_>) -> Result<Step<T>, ClientError>,
    ) -> Result<T, ClientError> {
        let timing = self.timing;
        self.send_bytes(&first).await?;
        let mut resend = resend;
        let mut sends: u32 = 1;
        let mut next_resend = Instant::now() + timing.retry;
        let mut give_up = Instant::now() + budget;
        loop {
            let can_resend = sends <= timing.retries;
            let wake = if can_resend {
                next_resend.min(give_up)
            } else {
                give_up
            };
            let Some(len) = self.recv_until(wake).await? else {
                let now = Instant::now();
                if now >= give_up {
                    return Err(ClientError::NoReply {
                        reply,
                        gateway: self.gateway,
                        within: budget,
                        hint,
                    });
                }
                if can_resend && now >= next_resend {
                    self.send_bytes(&resend).await?;
                    sends = sends.saturating_add(1);
                    next_resend = now + timing.retry;
                }
                continue;
            };
            // The buffer is moved out while the packet borrows it, so that answering it can
            // borrow the session mutably; it is put back before the next receive.
            let buf = std::mem::take(&mut self.recv_buf);
            let outcome = self.dispatch(&buf, len, &mut on_packet).await;
            self.recv_buf = buf;
            match outcome? {
                Some(Step::Done(value)) => return Ok(value),
                Some(Step::Answer(bytes)) => {
                    // Progress: the gateway is alive and asked for the next step.
                    self.send_bytes(&bytes).await?;
                    resend = bytes;
                    sends = 1;
                    let now = Instant::now();
                    next_resend = now + timing.retry;
                    give_up = now + budget;
                }
                Some(Step::Other) | None => {}
            }
        }
    }

    /// Offers a received packet to the exchange, and handles it as unsolicited if it is not
    /// part of it. `None` when the datagram does not decode (already logged).
    async fn dispatch<T>(
        &mut self,
        buf: &[u8],
        len: usize,
        on_packet: &mut impl FnMut(&Packet<'_>) -> Result<Step<T>, ClientError>,
    ) -> Result<Option<Step<T>>, ClientError> {
        let Some(Ok(packet)) = buf.get(..len).map(Packet::decode) else {
            return Ok(None);
        };
        match on_packet(&packet)? {
            Step::Other => {
                self.unsolicited(&packet).await?;
                Ok(Some(Step::Other))
            }
            step => Ok(Some(step)),
        }
    }

    /// Waits until `until` for one packet or timer and handles it; keeps the session alive with
    /// PINGREQ meanwhile. Returns early after each packet so the caller can drain messages.
    pub(crate) async fn poll(&mut self, until: Instant) -> Result<(), ClientError> {
        let wake = self.next_timer().map_or(until, |t| t.min(until));
        match self.recv_until(wake).await? {
            Some(len) => {
                let buf = std::mem::take(&mut self.recv_buf);
                let outcome = match buf.get(..len).map(Packet::decode) {
                    Some(Ok(packet)) => self.unsolicited(&packet).await,
                    _ => Ok(()),
                };
                self.recv_buf = buf;
                outcome
            }
            None => self.on_timer().await,
        }
    }

    /// Keeps the session alive until `until` (the pause between two publishes).
    pub(crate) async fn idle_until(&mut self, until: Instant) -> Result<(), ClientError> {
        while Instant::now() < until {
            self.poll(until).await?;
        }
        Ok(())
    }

    /// When the keep-alive machinery next needs to act.
    fn next_timer(&self) -> Option<Instant> {
        let keep_alive = self.keep_alive?;
        Some(match self.ping {
            Some(ping) => (ping.last_sent + self.timing.retry).min(self.ping_lost_at(ping)),
            None => self.last_sent + keep_alive,
        })
    }

    /// The PINGRESP is given --retry × --retries (at least one --retry) after the first PINGREQ.
    fn ping_lost_at(&self, ping: PendingPing) -> Instant {
        ping.first_sent + self.ping_patience()
    }

    fn ping_patience(&self) -> Duration {
        self.timing.retry.saturating_mul(self.timing.retries.max(1))
    }

    async fn on_timer(&mut self) -> Result<(), ClientError> {
        let Some(keep_alive) = self.keep_alive else {
            return Ok(());
        };
        let now = Instant::now();
        match self.ping {
            Some(ping) if now >= self.ping_lost_at(ping) => Err(ClientError::GatewayLost {
                gateway: self.gateway,
                within: self.ping_patience(),
            }),
            Some(ping) if now >= ping.last_sent + self.timing.retry => {
                self.send("PINGREQ", &Packet::PingReq { client_id: &[] })
                    .await?;
                self.ping = Some(PendingPing {
                    last_sent: now,
                    ..ping
                });
                Ok(())
            }
            None if now >= self.last_sent + keep_alive => {
                self.send("PINGREQ", &Packet::PingReq { client_id: &[] })
                    .await?;
                self.ping = Some(PendingPing {
                    first_sent: now,
                    last_sent: now,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Handles a packet nobody is waiting for, as a v1.2 client must.
    async fn unsolicited(&mut self, packet: &Packet<'_>) -> Result<(), ClientError> {
        match packet {
            Packet::PingReq { .. } => self.send("PINGRESP", &Packet::PingResp).await,
            Packet::PingResp => {
                self.ping = None;
                Ok(())
            }
            Packet::Register(r) => self.gateway_register(r).await,
            Packet::Publish(p) => self.gateway_publish(p).await,
            Packet::PubRel { msg_id } => {
                self.inbound_qos2.retain(|id| id != msg_id);
                self.send("PUBCOMP", &Packet::PubComp { msg_id: *msg_id })
                    .await
            }
            Packet::Disconnect(_) => Err(ClientError::GatewayDisconnected {
                gateway: self.gateway,
            }),
            // A rejection of a QoS 0 PUBLISH (its only possible answer) or of a late retry.
            Packet::PubAck(a) if !a.return_code.is_accepted() => Err(ClientError::Refused {
                what: format!("PUBLISH (topic id {}, msg id {})", a.topic_id, a.msg_id),
                code: a.return_code,
            }),
            other => {
                debug!("ignoring unexpected {}", other.msg_type().name());
                Ok(())
            }
        }
    }

    /// The gateway announces the name behind a topic id before its first PUBLISH on it (§6.10).
    async fn gateway_register(&mut self, r: &Register<'_>) -> Result<(), ClientError> {
        // Ids 0x0000 and 0xFFFF are reserved; accepting one would let a later PUBLISH on it
        // print under a name the gateway never meant.
        let code = if r.topic_id == 0 || r.topic_id == u16::MAX {
            ReturnCode::InvalidTopicId
        } else {
            let name = String::from_utf8_lossy(r.topic_name).into_owned();
            self.topics.insert(r.topic_id, name);
            ReturnCode::Accepted
        };
        let ack = Packet::RegAck(RegAck {
            topic_id: r.topic_id,
            msg_id: r.msg_id,
            return_code: code,
        });
        self.send("REGACK", &ack).await
    }

    /// A PUBLISH from the gateway: acknowledge at its QoS and queue it for the caller.
    async fn gateway_publish(&mut self, p: &Publish<'_>) -> Result<(), ClientError> {
        let topic_id = topic_id_field(&p.topic);
        let topic = match p.topic {
            PublishTopic::Normal(id) => match self.topics.get(&id) {
                Some(name) => name.clone(),
                None => {
                    // §6.10: a client that does not know the id answers PUBACK 0x02.
                    warn!("PUBLISH on unknown topic id {id} rejected (PUBACK 0x02)");
                    let nack = Packet::PubAck(PubAck {
                        topic_id,
                        msg_id: p.msg_id,
                        return_code: ReturnCode::InvalidTopicId,
                    });
                    return self.send("PUBACK", &nack).await;
                }
            },
            PublishTopic::Predefined(id) => self
                .predefined
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("predefined:{id}")),
            PublishTopic::Short(name) => String::from_utf8_lossy(&name).into_owned(),
            PublishTopic::LongName(name) => String::from_utf8_lossy(name).into_owned(),
        };
        let deliver = match p.qos {
            QoS::MinusOne | QoS::AtMostOnce => true,
            QoS::AtLeastOnce => {
                let ack = Packet::PubAck(PubAck {
                    topic_id,
                    msg_id: p.msg_id,
                    return_code: ReturnCode::Accepted,
                });
                self.send("PUBACK", &ack).await?;
                true
            }
            QoS::ExactlyOnce => {
                let first_time = !self.inbound_qos2.contains(&p.msg_id);
                if first_time {
                    if self.inbound_qos2.len() >= MAX_QOS2_REMEMBERED {
                        self.inbound_qos2.pop_front();
                    }
                    self.inbound_qos2.push_back(p.msg_id);
                } else {
                    debug!(
                        "duplicate QoS 2 PUBLISH msg id {} not delivered again",
                        p.msg_id
                    );
                }
                self.send("PUBREC", &Packet::PubRec { msg_id: p.msg_id })
                    .await?;
                first_time
            }
        };
        if deliver && self.collect {
            self.delivered.push_back(Message {
                topic,
                payload: p.data.to_vec(),
                qos: p.qos,
                retain: p.retain,
                dup: p.dup,
            });
        }
        Ok(())
    }

    /// CONNECT, with the Will handshake when a Will is set; fails unless CONNACK 0x00.
    pub(crate) async fn connect(
        &mut self,
        opts: &ConnectOptions,
        budget: Duration,
    ) -> Result<(), ClientError> {
        let connect = encode(
            "CONNECT",
            &Packet::Connect(Connect {
                will: opts.will.is_some(),
                clean_session: opts.clean_session,
                protocol_id: 0x01,
                duration: opts.keep_alive,
                client_id: opts.client_id.as_bytes(),
            }),
        )?;
        // Built up front: the closure below cannot encode (and fail) in the middle.
        let (will_topic, will_msg) = match &opts.will {
            Some(w) => (
                Some(encode(
                    "WILLTOPIC",
                    &Packet::WillTopic(Some(WillTopic {
                        qos: w.qos,
                        retain: w.retain,
                        topic: w.topic.as_bytes(),
                    })),
                )?),
                Some(encode("WILLMSG", &Packet::WillMsg { msg: &w.message })?),
            ),
            None => (None, None),
        };
        let code = self
            .exchange(
                "CONNACK".to_owned(),
                ": is the gateway running?",
                connect.clone(),
                connect,
                budget,
                |p| {
                    Ok(match (p, &will_topic, &will_msg) {
                        (Packet::ConnAck { return_code }, _, _) => Step::Done(*return_code),
                        (Packet::WillTopicReq, Some(topic), _) => Step::Answer(topic.clone()),
                        (Packet::WillMsgReq, _, Some(msg)) => Step::Answer(msg.clone()),
                        _ => Step::Other,
                    })
                },
            )
            .await?;
        if !code.is_accepted() {
            return Err(ClientError::Refused {
                what: "CONNECT".to_owned(),
                code,
            });
        }
        self.keep_alive =
            (opts.keep_alive > 0).then(|| Duration::from_secs(u64::from(opts.keep_alive)));
        Ok(())
    }

    /// REGISTERs a topic name and returns the id the gateway assigned.
    pub(crate) async fn register(
        &mut self,
        name: &str,
        budget: Duration,
    ) -> Result<u16, ClientError> {
        let msg_id = self.new_msg_id();
        let register = encode(
            "REGISTER",
            &Packet::Register(Register {
                topic_id: 0,
                msg_id,
                topic_name: name.as_bytes(),
            }),
        )?;
        let (code, topic_id) = self
            .exchange(
                format!("REGACK for REGISTER of '{name}'"),
                "",
                register.clone(),
                register,
                budget,
                |p| {
                    Ok(match p {
                        Packet::RegAck(a) if a.msg_id == msg_id => {
                            Step::Done((a.return_code, a.topic_id))
                        }
                        _ => Step::Other,
                    })
                },
            )
            .await?;
        if !code.is_accepted() {
            return Err(ClientError::Refused {
                what: format!("REGISTER of '{name}'"),
                code,
            });
        }
        self.topics.insert(topic_id, name.to_owned());
        Ok(topic_id)
    }

    /// Publishes one message at `qos` and completes its acknowledgement flow: nothing at QoS -1
    /// and 0, PUBACK at 1, PUBREC → PUBREL → PUBCOMP at 2. A rejecting PUBACK is an error.
    pub(crate) async fn publish(
        &mut self,
        topic: PublishTopic<'_>,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        budget: Duration,
    ) -> Result<(), ClientError> {
        let msg_id = if qos.needs_ack() {
            self.new_msg_id()
        } else {
            0
        };
        let publish = encode(
            "PUBLISH",
            &Packet::Publish(Publish {
                dup: false,
                qos,
                retain,
                topic,
                msg_id,
                data: payload,
            }),
        )?;
        if !qos.needs_ack() {
            return self.send_bytes(&publish).await;
        }
        let rejected = |code| ClientError::Refused {
            what: format!("PUBLISH (msg id {msg_id})"),
            code,
        };
        let first_reply = if qos == QoS::AtLeastOnce {
            "PUBACK"
        } else {
            "PUBREC"
        };
        let resend = with_dup(publish.clone());
        self.exchange(
            format!("{first_reply} for PUBLISH (msg id {msg_id})"),
            "",
            publish,
            resend,
            budget,
            |p| match p {
                Packet::PubAck(a) if a.msg_id == msg_id => {
                    if !a.return_code.is_accepted() {
                        Err(rejected(a.return_code))
                    } else if qos == QoS::AtLeastOnce {
                        Ok(Step::Done(()))
                    } else {
                        // A QoS 2 PUBLISH is never PUBACKed with 0x00; keep waiting.
                        Ok(Step::Other)
                    }
                }
                Packet::PubRec { msg_id: m } if *m == msg_id && qos == QoS::ExactlyOnce => {
                    Ok(Step::Done(()))
                }
                _ => Ok(Step::Other),
            },
        )
        .await?;
        if qos == QoS::AtLeastOnce {
            return Ok(());
        }
        let pubrel = encode("PUBREL", &Packet::PubRel { msg_id })?;
        self.exchange(
            format!("PUBCOMP for PUBREL (msg id {msg_id})"),
            "",
            pubrel.clone(),
            pubrel.clone(),
            budget,
            |p| {
                Ok(match p {
                    Packet::PubComp { msg_id: m } if *m == msg_id => Step::Done(()),
                    // Our PUBREL was lost and the gateway repeats PUBREC: answer it again.
                    Packet::PubRec { msg_id: m } if *m == msg_id => Step::Answer(pubrel.clone()),
                    _ => Step::Other,
                })
            },
        )
        .await
    }

    /// SUBSCRIBEs and returns the granted QoS and the topic id of the SUBACK.
    pub(crate) async fn subscribe(
        &mut self,
        topic: SubscribeTopic<'_>,
        qos: QoS,
        budget: Duration,
    ) -> Result<(QoS, u16), ClientError> {
        let msg_id = self.new_msg_id();
        let subscribe = encode(
            "SUBSCRIBE",
            &Packet::Subscribe(Subscribe {
                dup: false,
                qos,
                msg_id,
                topic,
            }),
        )?;
        let resend = with_dup(subscribe.clone());
        let ack = self
            .exchange("SUBACK".to_owned(), "", subscribe, resend, budget, |p| {
                Ok(match p {
                    Packet::SubAck(a) if a.msg_id == msg_id => Step::Done(*a),
                    _ => Step::Other,
                })
            })
            .await?;
        if !ack.return_code.is_accepted() {
            return Err(ClientError::Refused {
                what: "SUBSCRIBE".to_owned(),
                code: ack.return_code,
            });
        }
        // A plain name gets a normal id that later PUBLISHes use without a REGISTER (§6.9).
        if let SubscribeTopic::Name(name) = topic {
            let name = String::from_utf8_lossy(name);
            if ack.topic_id != 0 && !sn_codec::validate::is_wildcard(&name) {
                self.topics.insert(ack.topic_id, name.into_owned());
            }
        }
        Ok((ack.qos, ack.topic_id))
    }

    /// DISCONNECT and wait for the gateway's DISCONNECT. Not hearing it back only earns a
    /// warning: our part is done, and the gateway drops the session at its keep-alive anyway.
    pub(crate) async fn disconnect(&mut self, budget: Duration) -> Result<(), ClientError> {
        self.keep_alive = None;
        let disconnect = encode(
            "DISCONNECT",
            &Packet::Disconnect(Disconnect { duration: None }),
        )?;
        let outcome = self
            .exchange(
                "DISCONNECT".to_owned(),
                "",
                disconnect.clone(),
                disconnect,
                budget,
                |p| {
                    Ok(match p {
                        Packet::Disconnect(_) => Step::Done(()),
                        _ => Step::Other,
                    })
                },
            )
            .await;
        match outcome {
            Err(e @ ClientError::NoReply { .. }) => {
                warn!("{e}; the gateway may publish the Will when it times the session out");
                Ok(())
            }
            other => other,
        }
    }

    /// Sends a PUBLISH at QoS -1 (no connection, no answer).
    pub(crate) async fn publish_without_session(
        &mut self,
        topic: PublishTopic<'_>,
        retain: bool,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain,
            topic,
            msg_id: 0,
            data: payload,
        });
        self.send("PUBLISH", &publish).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dup_bit_lands_on_the_flags_byte() {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(1),
            msg_id: 2,
            data: b"hi",
        });
        let bytes = with_dup(publish.to_vec().unwrap_or_default());
        let Ok(Packet::Publish(p)) = Packet::decode(&bytes) else {
            unreachable!("re-decoding our own PUBLISH");
        };
        assert!(p.dup);
        assert_eq!(p.msg_id, 2);

        let long = vec![b'x'; 300];
        let publish = Packet::Publish(Publish {
            data: &long,
            ..match publish {
                Packet::Publish(p) => p,
                _ => unreachable!(),
            }
        });
        let bytes = with_dup(publish.to_vec().unwrap_or_default());
        assert!(matches!(Packet::decode(&bytes), Ok(Packet::Publish(p)) if p.dup));
    }

    #[test]
    fn budget_covers_every_resend() {
        let t = Timing {
            retry: Duration::from_millis(200),
            retries: 3,
        };
        assert_eq!(t.budget(), Duration::from_millis(800));
    }
}
