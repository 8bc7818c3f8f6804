//! One MQTT-SN v1.2 client session over a UDP socket connected to the gateway, in plain UDP
//! or inside a DTLS connection (a [`Channel`] that encrypts and decrypts each datagram).
//!
//! The commands drive it with request/answer exchanges ([`Session::connect`],
//! [`Session::register`], [`Session::publish`], ...) and with [`Session::poll`] while idle.
//! The protocol is the sans-I/O client machine of `sn-client` (retransmission, the Will
//! handshake, QoS flows, keep-alive, and the answers to what the gateway sends on its own:
//! PINGREQ, REGISTER, PUBLISH, PUBREL); this file only moves its datagrams over the socket,
//! feeds it tokio's clock and turns its events into results and errors.
//!
//! Every wait has a deadline, and nothing the network sends can panic this code: undecodable
//! datagrams are logged at debug level and dropped.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sn_client::{Client, ClientConfig, Event, Received, Request, UnknownTopicIds};
use sn_codec::v12::{Packet, PublishTopic, SubscribeTopic};
use sn_codec::QoS;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::describe;
use crate::dtls::{self, Channel};
use crate::error::ClientError;

/// The largest datagram MQTT-SN can carry (3-byte length form), so nothing is ever truncated.
const MAX_DATAGRAM: usize = 65_535;

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

/// What goes into CONNECT: the client id, and the client machine's CONNECT options
/// (keep-alive, CleanSession, Will).
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// Client id.
    pub(crate) client_id: String,
    /// Keep-alive, CleanSession and the Will.
    pub(crate) options: sn_client::ConnectOptions,
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

/// A client session with one gateway: the sans-I/O client machine of `sn-client` driven over
/// a UDP socket and tokio's clock.
#[derive(Debug)]
pub(crate) struct Session {
    socket: UdpSocket,
    /// The DTLS connection, when the gateway is reached over DTLS.
    channel: Option<Channel>,
    gateway: SocketAddr,
    timing: Timing,
    client: Client,
    /// Whether received messages are kept for the caller (`sub`) or only acknowledged (`pub`).
    collect: bool,
    delivered: VecDeque<Message>,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
}

/// Whether an I/O error only means "nothing listens at the gateway address (yet)": an ICMP port
/// unreachable reported on a connected UDP socket. The answer may still come (the gateway may be
/// starting), so it is treated like silence and the timers decide.
fn is_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
}

/// What an exchange waits for to end.
struct Exchange {
    /// Names the awaited answer in the timeout error.
    reply: String,
    /// Appended to the timeout error.
    hint: &'static str,
    /// The time budget (for the timeout error).
    budget: Duration,
}

impl Session {
    /// Opens a UDP socket connected to `gateway`, so that only its datagrams are received, and
    /// with `dtls` runs the DTLS handshake on it.
    pub(crate) async fn open(
        gateway: SocketAddr,
        timing: Timing,
        collect: bool,
        dtls: Option<sn_transports::dtls::DtlsClient>,
    ) -> Result<Self, ClientError> {
        let local: SocketAddr = if gateway.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket_error = |source| ClientError::Socket { gateway, source };
        let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
        socket.connect(gateway).await.map_err(socket_error)?;
        let mut recv_buf = vec![0; MAX_DATAGRAM];
        let channel = match dtls {
            None => None,
            Some(client) => {
                let started = Instant::now();
                let channel = dtls::handshake(&socket, client, &mut recv_buf)
                    .await
                    .map_err(|e| ClientError::Dtls {
                        gateway,
                        reason: e.to_string(),
                    })?;
                debug!(
                    "DTLS handshake with {gateway} done in {:?} ({})",
                    started.elapsed(),
                    channel.cipher
                );
                Some(channel)
            }
        };
        let mut config = ClientConfig::new(String::new());
        config.timing = sn_client::Timing::new(timing.retry, timing.retries);
        config.keep_alive_pings = true;
        config.unknown_topic_ids = UnknownTopicIds::Reject;
        Ok(Session {
            socket,
            channel,
            gateway,
            timing,
            client: Client::new(config),
            collect,
            delivered: VecDeque::new(),
            recv_buf,
            send_buf: Vec::with_capacity(256),
        })
    }

    /// Remembers the name of a predefined id, so received messages show it.
    pub(crate) fn name_predefined(&mut self, id: u16, name: String) {
        self.client.name_predefined(id, name);
    }

    /// The next message delivered by the gateway, already acknowledged.
    pub(crate) fn next_message(&mut self) -> Option<Message> {
        self.delivered.pop_front()
    }

    /// Sends what the machine has to send.
    async fn flush(&mut self) -> Result<(), ClientError> {
        while self.client.poll_transmit(&mut self.send_buf) {
            let bytes = &self.send_buf;
            if tracing::enabled!(tracing::Level::DEBUG) {
                match Packet::decode(bytes) {
                    Ok(p) => debug!("→ {}", describe::packet(&p)),
                    Err(_) => debug!("→ {} bytes", bytes.len()),
                }
            }
            trace!("→ {bytes:02x?}");
            match &mut self.channel {
                None => send(&self.socket, self.gateway, bytes).await?,
                Some(channel) => {
                    channel.seal(bytes).map_err(|reason| ClientError::Dtls {
                        gateway: self.gateway,
                        reason,
                    })?;
                    while let Some(record) = channel.next_transmit() {
                        send(&self.socket, self.gateway, &record).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Feeds one received datagram to the machine (decrypted first over DTLS).
    fn receive(&mut self, len: usize) -> Result<(), ClientError> {
        let bytes = self.recv_buf.get(..len).unwrap_or_default();
        let Some(channel) = &mut self.channel else {
            feed(&mut self.client, bytes);
            return Ok(());
        };
        let opened = channel.open(bytes);
        while let Some(plaintext) = channel.take() {
            feed(&mut self.client, &plaintext);
        }
        opened.map_err(|reason| ClientError::Dtls {
            gateway: self.gateway,
            reason,
        })
    }

    /// Starts a request with `budget` as its timeout.
    fn with_budget(&mut self, budget: Duration) {
        self.client.set_timing(
            sn_client::Timing::new(self.timing.retry, self.timing.retries).with_timeout(budget),
        );
    }

    /// Waits until `deadline` for one datagram or the machine's next deadline, and feeds what
    /// came to the machine. Returns early after each datagram.
    async fn turn(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        let timer = self.client.poll_timeout().map(Instant::from_std);
        let wake = match (timer, deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        let received = match wake {
            Some(wake) => {
                // `None` when the deadline came first.
                tokio::time::timeout_at(wake, self.socket.recv(&mut self.recv_buf))
                    .await
                    .ok()
            }
            None => Some(self.socket.recv(&mut self.recv_buf).await),
        };
        let now = Instant::now().into_std();
        match received {
            None => self.client.handle_timeout(now),
            Some(Ok(len)) => self.receive(len)?,
            Some(Err(e)) if is_refused(&e) => {
                debug!("{}: {e} (is the gateway running?)", self.gateway);
            }
            Some(Err(source)) => {
                return Err(ClientError::Io {
                    gateway: self.gateway,
                    source,
                })
            }
        }
        self.flush().await
    }

    /// Handles an event that is no answer to a request: a message is kept for the caller; a
    /// DISCONNECT from the gateway, a refusing PUBACK and a lost gateway end the run.
    fn background(&mut self, event: Event) -> Result<(), ClientError> {
        match event {
            Event::Message(m) => {
                if self.collect && !m.repeat {
                    let topic = match (&m.topic, m.topic_name) {
                        (_, Some(name)) => name,
                        (sn_client::Topic::Predefined(id), None) => format!("predefined:{id}"),
                        (_, None) => String::new(),
                    };
                    self.delivered.push_back(Message {
                        topic,
                        payload: m.payload,
                        qos: m.qos,
                        retain: m.retain,
                        dup: m.dup,
                    });
                } else if m.repeat {
                    debug!(
                        "duplicate QoS 2 PUBLISH msg id {} not delivered again",
                        m.msg_id
                    );
                }
                Ok(())
            }
            Event::Disconnected { .. } => Err(ClientError::GatewayDisconnected {
                gateway: self.gateway,
            }),
            // A rejection of a QoS 0 PUBLISH (its only possible answer) or of a late retry.
            Event::Rejected {
                topic_id,
                msg_id,
                code,
            } => Err(ClientError::Refused {
                what: format!("PUBLISH (topic id {topic_id}, msg id {msg_id})"),
                code,
            }),
            Event::GatewayLost { after } => Err(ClientError::GatewayLost {
                gateway: self.gateway,
                within: after,
            }),
            Event::Registered { .. } => Ok(()),
            other => {
                debug!("ignoring {other:?}");
                Ok(())
            }
        }
    }

    /// Runs the machine until the pending request ends; returns the event that ended it.
    async fn exchange(&mut self, exchange: Exchange) -> Result<Event, ClientError> {
        self.flush().await?;
        loop {
            while let Some(event) = self.client.poll_event() {
                match event {
                    Event::TimedOut(request) => {
                        let reply = match request {
                            // Past PUBREC, the PUBCOMP is what did not come.
                            Request::PubRel { msg_id } => {
                                format!("PUBCOMP for PUBREL (msg id {msg_id})")
                            }
                            _ => exchange.reply,
                        };
                        return Err(ClientError::NoReply {
                            reply,
                            gateway: self.gateway,
                            within: exchange.budget,
                            hint: exchange.hint,
                        });
                    }
                    Event::ConnAck(_)
                    | Event::RegAck { .. }
                    | Event::Published { .. }
                    | Event::SubAck(_)
                    | Event::UnsubAck { .. }
                    | Event::PingResp
                    | Event::DisconnectAck
                    | Event::WillTopicResp(_)
                    | Event::WillMsgResp(_) => return Ok(event),
                    other => self.background(other)?,
                }
            }
            if self.client.pending().is_none() {
                // Nothing to wait for (cannot happen after a started request).
                return Err(ClientError::NoReply {
                    reply: exchange.reply,
                    gateway: self.gateway,
                    within: exchange.budget,
                    hint: exchange.hint,
                });
            }
            self.turn(None).await?;
        }
    }

    /// Waits until `until` for one packet or timer and handles it; keeps the session alive with
    /// PINGREQ meanwhile. Returns early after each packet so the caller can drain messages.
    pub(crate) async fn poll(&mut self, until: Instant) -> Result<(), ClientError> {
        self.turn(Some(until)).await?;
        while let Some(event) = self.client.poll_event() {
            self.background(event)?;
        }
        Ok(())
    }

    /// Keeps the session alive until `until` (the pause between two publishes).
    pub(crate) async fn idle_until(&mut self, until: Instant) -> Result<(), ClientError> {
        while Instant::now() < until {
            self.poll(until).await?;
        }
        Ok(())
    }

    /// CONNECT, with the Will handshake when a Will is set; fails unless CONNACK 0x00.
    pub(crate) async fn connect(
        &mut self,
        opts: &ConnectOptions,
        budget: Duration,
    ) -> Result<(), ClientError> {
        self.client.set_client_id(opts.client_id.clone());
        self.with_budget(budget);
        self.client
            .connect(Instant::now().into_std(), &opts.options)
            .map_err(|e| machine_error("CONNECT", e))?;
        let ended = self
            .exchange(Exchange {
                reply: "CONNACK".to_owned(),
                hint: ": is the gateway running?",
                budget,
            })
            .await?;
        match ended {
            Event::ConnAck(code) if code.is_accepted() => Ok(()),
            Event::ConnAck(code) => Err(ClientError::Refused {
                what: "CONNECT".to_owned(),
                code,
            }),
            other => Err(unexpected_end(other)),
        }
    }

    /// REGISTERs a topic name and returns the id the gateway assigned.
    pub(crate) async fn register(
        &mut self,
        name: &str,
        budget: Duration,
    ) -> Result<u16, ClientError> {
        self.with_budget(budget);
        self.client
            .register(Instant::now().into_std(), name)
            .map_err(|e| machine_error("REGISTER", e))?;
        let ended = self
            .exchange(Exchange {
                reply: format!("REGACK for REGISTER of '{name}'"),
                hint: "",
                budget,
            })
            .await?;
        match ended {
            Event::RegAck { topic_id, code, .. } if code.is_accepted() => Ok(topic_id),
            Event::RegAck { code, .. } => Err(ClientError::Refused {
                what: format!("REGISTER of '{name}'"),
                code,
            }),
            other => Err(unexpected_end(other)),
        }
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
        self.with_budget(budget);
        let msg_id = self
            .client
            .publish(Instant::now().into_std(), topic, qos, retain, payload)
            .map_err(|e| machine_error("PUBLISH", e))?;
        if !qos.needs_ack() {
            return self.flush().await;
        }
        let first_reply = if qos == QoS::AtLeastOnce {
            "PUBACK"
        } else {
            "PUBREC"
        };
        let ended = self
            .exchange(Exchange {
                reply: format!("{first_reply} for PUBLISH (msg id {msg_id})"),
                hint: "",
                budget,
            })
            .await?;
        match ended {
            Event::Published { code, .. } if code.is_accepted() => Ok(()),
            Event::Published { code, .. } => Err(ClientError::Refused {
                what: format!("PUBLISH (msg id {msg_id})"),
                code,
            }),
            other => Err(unexpected_end(other)),
        }
    }

    /// SUBSCRIBEs and returns the granted QoS and the topic id of the SUBACK.
    pub(crate) async fn subscribe(
        &mut self,
        topic: SubscribeTopic<'_>,
        qos: QoS,
        budget: Duration,
    ) -> Result<(QoS, u16), ClientError> {
        self.with_budget(budget);
        self.client
            .subscribe(Instant::now().into_std(), topic, qos)
            .map_err(|e| machine_error("SUBSCRIBE", e))?;
        let ended = self
            .exchange(Exchange {
                reply: "SUBACK".to_owned(),
                hint: "",
                budget,
            })
            .await?;
        match ended {
            Event::SubAck(ack) if ack.return_code.is_accepted() => Ok((ack.qos, ack.topic_id)),
            Event::SubAck(ack) => Err(ClientError::Refused {
                what: "SUBSCRIBE".to_owned(),
                code: ack.return_code,
            }),
            other => Err(unexpected_end(other)),
        }
    }

    /// DISCONNECT and wait for the gateway's DISCONNECT. Not hearing it back only earns a
    /// warning: our part is done, and the gateway drops the session at its keep-alive anyway.
    pub(crate) async fn disconnect(&mut self, budget: Duration) -> Result<(), ClientError> {
        self.with_budget(budget);
        // Whatever was still waiting (an interrupted exchange) is given up.
        self.client.abandon();
        self.client
            .disconnect(Instant::now().into_std())
            .map_err(|e| machine_error("DISCONNECT", e))?;
        let outcome = self
            .exchange(Exchange {
                reply: "DISCONNECT".to_owned(),
                hint: "",
                budget,
            })
            .await;
        self.close_channel().await;
        match outcome {
            Err(e @ ClientError::NoReply { .. }) => {
                warn!("{e}; the gateway may publish the Will when it times the session out");
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// Ends the DTLS connection with close_notify (best effort), so the gateway lets go of it
    /// at once rather than at its idle timeout.
    pub(crate) async fn close_channel(&mut self) {
        if let Some(channel) = &mut self.channel {
            channel.close();
            while let Some(record) = channel.next_transmit() {
                let _ = self.socket.send(&record).await;
            }
        }
    }

    /// Sends a PUBLISH at QoS -1 (no connection, no answer).
    pub(crate) async fn publish_without_session(
        &mut self,
        topic: PublishTopic<'_>,
        retain: bool,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.client
            .publish(
                Instant::now().into_std(),
                topic,
                QoS::MinusOne,
                retain,
                payload,
            )
            .map_err(|e| machine_error("PUBLISH", e))?;
        self.flush().await
    }
}

/// Sends one datagram; a bounce (nothing listening yet) is only logged: the timers decide.
async fn send(socket: &UdpSocket, gateway: SocketAddr, bytes: &[u8]) -> Result<(), ClientError> {
    match socket.send(bytes).await {
        Ok(_) => Ok(()),
        // An earlier datagram bounced; this one may still arrive. The timers decide.
        Err(e) if is_refused(&e) => {
            debug!("send to {gateway}: {e}");
            Ok(())
        }
        Err(source) => Err(ClientError::Io { gateway, source }),
    }
}

/// Feeds one MQTT-SN datagram from the gateway to the machine, logging what it was.
fn feed(client: &mut Client, bytes: &[u8]) {
    trace!("← {bytes:02x?}");
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Ok(p) = Packet::decode(bytes) {
            debug!("← {}", describe::packet(&p));
        }
    }
    let now = Instant::now().into_std();
    match client.handle_datagram(now, bytes) {
        Received::Undecodable => {
            debug!(
                "← {} bytes ignored, not an MQTT-SN v1.2 packet",
                bytes.len()
            )
        }
        Received::Unexpected => {
            if let Ok(p) = Packet::decode(bytes) {
                debug!("ignoring unexpected {}", p.msg_type().name());
            }
        }
        Received::Consumed => {}
    }
}

/// A request the machine would not start: only encoding can fail here (one request at a time
/// is how the commands use the session).
fn machine_error(what: &'static str, e: sn_client::ClientError) -> ClientError {
    match e {
        sn_client::ClientError::Encode(source) => ClientError::Encode { what, source },
        sn_client::ClientError::Busy(request) => {
            ClientError::Usage(format!("{what} while waiting for {}", request.awaited()))
        }
    }
}

/// An exchange ended with an answer of another kind (cannot happen: one request at a time).
fn unexpected_end(event: Event) -> ClientError {
    ClientError::Usage(format!("unexpected end of an exchange: {event:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_covers_every_resend() {
        let t = Timing {
            retry: Duration::from_millis(200),
            retries: 3,
        };
        assert_eq!(t.budget(), Duration::from_millis(800));
    }
}
