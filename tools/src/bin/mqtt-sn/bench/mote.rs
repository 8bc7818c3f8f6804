//! One simulated mote: its own UDP socket on its own loopback address (127.1.0.0 + id, one
//! port for all), CONNECT, REGISTER or SUBSCRIBE, then publishing (uplink) or receiving and
//! acknowledging (downlink), then PINGREQ to check the session is still there, and DISCONNECT.
//!
//! The address is a function of the id, so a mote can close its socket and later rebind the
//! same address and still be the peer the gateway knows: that is how one process holds more
//! sessions than it may open sockets (waves).
//!
//! Nothing the network sends can panic this code: undecodable datagrams are counted and
//! dropped, unexpected packets are answered the way a client must or ignored.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    Subscribe, SubscribeTopic,
};
use sn_codec::QoS;
use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::options::{Direction, TopicPlan};
use super::payload::{self, Stamp};
use super::{Ctx, MoteOutcome, Phase};

/// Receive buffer: the gateway's default max_packet_size is 1024.
const RX_BUFFER: usize = 2048;
/// QoS 0/-1 motes yield to the other tasks after this many back-to-back sends.
const BURST: u32 = 32;
/// ProtocolId of MQTT-SN v1.2 in CONNECT.
const PROTOCOL_ID: u8 = 0x01;

/// The first mote address; mote `id` uses this plus `id`.
const FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);

/// The source address of mote `id`.
pub(crate) fn address(id: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(FIRST_ADDRESS).wrapping_add(id)),
        port,
    )
}

/// A port every mote address can bind: one the kernel hands out on the first mote address
/// (so no wildcard socket holds it), released before the motes take it.
pub(crate) fn pick_port() -> io::Result<u16> {
    let probe = std::net::UdpSocket::bind(address(0, 0))?;
    Ok(probe.local_addr()?.port())
}

/// Why a mote stopped early.
#[derive(Debug)]
pub(crate) enum MoteError {
    /// The socket failed.
    Io(io::Error),
    /// No answer within T_retry × (N_retry + 1).
    NoReply(&'static str),
    /// The gateway answered with a non-zero return code.
    Refused(&'static str, ReturnCode),
    /// The gateway sent DISCONNECT.
    Disconnected,
    /// A packet could not be encoded (cannot happen with checked options).
    Encode(sn_codec::EncodeError),
}

impl std::fmt::Display for MoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoteError::Io(e) => write!(f, "socket error: {e}"),
            MoteError::NoReply(what) => write!(f, "no {what}"),
            MoteError::Refused(what, code) => write!(f, "{what} refused: {code:?}"),
            MoteError::Disconnected => write!(f, "gateway sent DISCONNECT"),
            MoteError::Encode(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl From<io::Error> for MoteError {
    fn from(e: io::Error) -> Self {
        MoteError::Io(e)
    }
}

/// What a received datagram means to a mote, copied out of the receive buffer.
#[derive(Debug, Clone, Copy)]
enum In {
    ConnAck(ReturnCode),
    RegAck {
        msg_id: u16,
        topic_id: u16,
        code: ReturnCode,
    },
    SubAck {
        msg_id: u16,
        code: ReturnCode,
    },
    PubAck {
        msg_id: u16,
        code: ReturnCode,
    },
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Publish {
        qos: QoS,
        msg_id: u16,
        topic_field: u16,
        stamp: Option<Stamp>,
    },
    Register {
        topic_id: u16,
        msg_id: u16,
    },
    PingReq,
    PingResp,
    Disconnect,
    Other,
}

/// The 2-byte TopicId field of a PUBLISH, as echoed in its PUBACK.
fn topic_field(topic: &PublishTopic<'_>) -> u16 {
    match *topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
        PublishTopic::LongName(_) => 0,
    }
}

fn classify(bytes: &[u8]) -> Option<In> {
    Some(match Packet::decode(bytes).ok()? {
        Packet::ConnAck { return_code } => In::ConnAck(return_code),
        Packet::RegAck(a) => In::RegAck {
            msg_id: a.msg_id,
            topic_id: a.topic_id,
            code: a.return_code,
        },
        Packet::SubAck(a) => In::SubAck {
            msg_id: a.msg_id,
            code: a.return_code,
        },
        Packet::PubAck(a) => In::PubAck {
            msg_id: a.msg_id,
            code: a.return_code,
        },
        Packet::PubRec { msg_id } => In::PubRec(msg_id),
        Packet::PubRel { msg_id } => In::PubRel(msg_id),
        Packet::PubComp { msg_id } => In::PubComp(msg_id),
        Packet::Publish(p) => In::Publish {
            qos: p.qos,
            msg_id: p.msg_id,
            topic_field: topic_field(&p.topic),
            stamp: Stamp::read(p.data),
        },
        Packet::Register(r) => In::Register {
            topic_id: r.topic_id,
            msg_id: r.msg_id,
        },
        Packet::PingReq { .. } => In::PingReq,
        Packet::PingResp => In::PingResp,
        Packet::Disconnect(_) => In::Disconnect,
        _ => In::Other,
    })
}

/// A mote's socket, connected to the gateway, with its buffers.
struct Wire {
    socket: UdpSocket,
    rx: Vec<u8>,
    /// Scratch for replies.
    tx: Vec<u8>,
    /// The request being waited on, kept for resending.
    req: Vec<u8>,
    /// Sends the kernel refused ([`transient`] errors).
    send_failures: u64,
}

/// Whether a send or receive error only means "that datagram is lost": an ICMP port
/// unreachable (nothing listens at the gateway address yet) or a full local queue.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(105) // ENOBUFS
}

impl Wire {
    fn open(local: SocketAddrV4, gateway: SocketAddrV4) -> io::Result<Wire> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(gateway)?;
        socket.set_nonblocking(true)?;
        Ok(Wire {
            socket: UdpSocket::from_std(socket)?,
            rx: vec![0; RX_BUFFER],
            tx: Vec::with_capacity(64),
            req: Vec::with_capacity(64),
            send_failures: 0,
        })
    }

    async fn send_bytes(socket: &UdpSocket, bytes: &[u8], failures: &mut u64) -> io::Result<()> {
        match socket.send(bytes).await {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => {
                *failures += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a reply (nothing to resend).
    async fn send(&mut self, packet: &Packet<'_>) -> Result<(), MoteError> {
        self.tx.clear();
        packet.encode(&mut self.tx).map_err(MoteError::Encode)?;
        Ok(Self::send_bytes(&self.socket, &self.tx, &mut self.send_failures).await?)
    }

    /// Sends a request and keeps it for [`Wire::resend`].
    async fn request(&mut self, packet: &Packet<'_>) -> Result<(), MoteError> {
        self.req.clear();
        packet.encode(&mut self.req).map_err(MoteError::Encode)?;
        Ok(Self::send_bytes(&self.socket, &self.req, &mut self.send_failures).await?)
    }

    /// Sends the kept request again, with DUP set if it is a PUBLISH.
    async fn resend(&mut self, dup: bool) -> io::Result<()> {
        if dup {
            // The flags byte follows the header: 2 bytes, or 4 in the 3-byte length form.
            let at = if self.req.first() == Some(&0x01) {
                4
            } else {
                2
            };
            if let Some(flags) = self.req.get_mut(at) {
                *flags |= 0x80;
            }
        }
        Self::send_bytes(&self.socket, &self.req, &mut self.send_failures).await
    }

    /// The next datagram, or `None` at `deadline`.
    async fn recv_until(&mut self, deadline: Instant) -> io::Result<Option<Option<In>>> {
        loop {
            match tokio::time::timeout_at(deadline, self.socket.recv(&mut self.rx)).await {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(len)) => return Ok(Some(self.rx.get(..len).and_then(classify))),
                Ok(Err(e)) if transient(&e) => continue,
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// The next datagram, without a deadline.
    async fn recv(&mut self) -> io::Result<Option<In>> {
        loop {
            match self.socket.recv(&mut self.rx).await {
                Ok(len) => return Ok(self.rx.get(..len).and_then(classify)),
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A datagram if one is waiting, without waiting.
    fn try_recv(&mut self) -> Option<Option<In>> {
        let len = self.socket.try_recv(&mut self.rx).ok()?;
        Some(self.rx.get(..len).and_then(classify))
    }
}

/// The topic as a PUBLISH carries it, once set up.
#[derive(Debug, Clone, Copy)]
enum Topic {
    Normal(u16),
    Predefined(u16),
    Short([u8; 2]),
    /// QoS -1 with a name: the name travels in each PUBLISH.
    LongName,
}

/// One mote while its socket is open.
struct Mote<'a> {
    ctx: &'a Ctx,
    id: u32,
    wire: Wire,
    out: &'a mut MoteOutcome,
    msg_id: u16,
    topic: Topic,
    name: Vec<u8>,
    payload: Vec<u8>,
}

/// Runs mote `id` from CONNECT to DISCONNECT; `permit` is its socket slot.
pub(crate) async fn run(ctx: Arc<Ctx>, id: u32, permit: OwnedSemaphorePermit) -> MoteOutcome {
    let mut out = MoteOutcome {
        id,
        ..MoteOutcome::default()
    };
    if let Err(e) = lifecycle(&ctx, id, &mut out).await {
        out.error = Some(e.to_string());
        if matches!(e, MoteError::Disconnected) {
            out.dropped_by_gateway = true;
        }
    }
    out.settle(&ctx);
    drop(permit);
    out
}

async fn lifecycle(ctx: &Ctx, id: u32, out: &mut MoteOutcome) -> Result<(), MoteError> {
    let plan = &ctx.plan;
    // The connect schedule: mote i starts i / connect_rate after the connect phase began.
    ctx.wait_connect_slot(id).await;
    let wire = Wire::open(address(id, ctx.mote_port), plan.gateway)?;
    let name = plan.topic.name_for(id).into_bytes();
    let mut mote = Mote {
        ctx,
        id,
        wire,
        out,
        msg_id: 0,
        topic: Topic::LongName,
        name,
        payload: payload::buffer(plan.payload_size),
    };
    mote.setup().await?;
    mote.out.setup_done = true;
    ctx.live.ready.fetch_add(1, Relaxed);
    // The barrier (or, without one, the load phase that began at once).
    ctx.control.reached(Phase::Load).await;
    match plan.direction {
        Direction::Up => mote.uplink().await?,
        Direction::Down => mote.downlink().await?,
    }
    mote.out.load_done = true;
    mote.out.send_failures = mote.wire.send_failures;
    ctx.live.motes_done.fetch_add(1, Relaxed);
    if plan.waves() || plan.qos == QoS::MinusOne {
        // The session (if any) stays at the gateway; the sweep at the end checks it.
        mote.out.released = plan.qos != QoS::MinusOne;
        return Ok(());
    }
    ctx.control.reached(Phase::Finish).await;
    let (alive, disconnected) = finish(ctx, &mut mote.wire).await?;
    mote.out.alive_at_end = Some(alive);
    mote.out.disconnected = disconnected;
    Ok(())
}

/// The end of a session: PINGREQ (is the session still there?), then DISCONNECT unless the
/// sessions are to stay. Returns (alive, disconnected).
async fn finish(ctx: &Ctx, wire: &mut Wire) -> Result<(bool, bool), MoteError> {
    let plan = &ctx.plan;
    let mut alive = false;
    'ping: for attempt in 0..=plan.retries {
        if attempt == 0 {
            wire.request(&Packet::PingReq { client_id: b"" }).await?;
        } else {
            wire.resend(false).await?;
        }
        let deadline = Instant::now() + plan.retry;
        while let Some(received) = wire.recv_until(deadline).await? {
            match received {
                Some(In::PingResp) => {
                    alive = true;
                    break 'ping;
                }
                // The gateway does not know us (any more).
                Some(In::Disconnect) => break 'ping,
                // Late downlink traffic: acknowledge so the gateway is not left waiting.
                Some(other) => reply_unsolicited(wire, other).await?,
                None => {}
            }
        }
    }
    let mut disconnected = false;
    if plan.disconnect {
        wire.request(&Packet::Disconnect(Disconnect { duration: None }))
            .await?;
        let deadline = Instant::now() + plan.retry;
        while let Some(received) = wire.recv_until(deadline).await? {
            if let Some(In::Disconnect) = received {
                disconnected = true;
                break;
            }
        }
    }
    Ok((alive, disconnected))
}

/// The end-of-run check for a mote that released its socket: rebinds its address, then
/// [`finish`]. Returns (alive, disconnected).
pub(crate) async fn sweep(
    ctx: Arc<Ctx>,
    id: u32,
    permit: OwnedSemaphorePermit,
) -> Result<(bool, bool), String> {
    let result = async {
        let mut wire = Wire::open(address(id, ctx.mote_port), ctx.plan.gateway)?;
        finish(&ctx, &mut wire).await
    }
    .await
    .map_err(|e| e.to_string());
    drop(permit);
    result
}

/// How a mote answers what it did not ask for (the rules of a v1.2 client).
async fn reply_unsolicited(wire: &mut Wire, received: In) -> Result<(), MoteError> {
    match received {
        In::PingReq => wire.send(&Packet::PingResp).await,
        In::Register { topic_id, msg_id } => {
            wire.send(&Packet::RegAck(RegAck {
                topic_id,
                msg_id,
                return_code: ReturnCode::Accepted,
            }))
            .await
        }
        In::Publish {
            qos: QoS::AtLeastOnce,
            msg_id,
            topic_field,
            ..
        } => {
            wire.send(&Packet::PubAck(PubAck {
                topic_id: topic_field,
                msg_id,
                return_code: ReturnCode::Accepted,
            }))
            .await
        }
        In::Publish {
            qos: QoS::ExactlyOnce,
            msg_id,
            ..
        } => wire.send(&Packet::PubRec { msg_id }).await,
        In::PubRel(msg_id) => wire.send(&Packet::PubComp { msg_id }).await,
        In::Disconnect => Err(MoteError::Disconnected),
        _ => Ok(()),
    }
}

impl Mote<'_> {
    fn next_msg_id(&mut self) -> u16 {
        self.msg_id = self.msg_id.checked_add(1).unwrap_or(1);
        self.msg_id
    }

    /// Handles a received datagram that is not the awaited answer.
    async fn unsolicited(&mut self, received: Option<In>) -> Result<(), MoteError> {
        match received {
            None => {
                self.out.malformed += 1;
                Ok(())
            }
            Some(other) => reply_unsolicited(&mut self.wire, other).await,
        }
    }

    /// Waits for the answer `pick` recognises to the request in `wire.req`, resending it every
    /// T_retry up to N_retry times.
    async fn exchange<T>(
        &mut self,
        what: &'static str,
        mut pick: impl FnMut(In) -> Option<Result<T, MoteError>>,
    ) -> Result<T, MoteError> {
        let plan = &self.ctx.plan;
        for attempt in 0..=plan.retries {
            if attempt > 0 {
                self.out.retransmits += 1;
                self.wire.resend(false).await?;
            }
            let deadline = Instant::now() + plan.retry;
            while let Some(received) = self.wire.recv_until(deadline).await? {
                match received.map(&mut pick) {
                    Some(Some(result)) => return result,
                    _ => self.unsolicited(received).await?,
                }
            }
        }
        Err(MoteError::NoReply(what))
    }

    /// CONNECT, then REGISTER or SUBSCRIBE as the plan asks. QoS -1 needs none of it.
    async fn setup(&mut self) -> Result<(), MoteError> {
        let plan = &self.ctx.plan;
        self.topic = match &plan.topic {
            TopicPlan::Registered { .. } => Topic::LongName,
            TopicPlan::Predefined { id, .. } => Topic::Predefined(*id),
            TopicPlan::Short(short) => Topic::Short(*short),
        };
        if plan.qos == QoS::MinusOne {
            return Ok(());
        }
        self.connect().await?;
        match (plan.direction, &plan.topic) {
            (Direction::Up, TopicPlan::Registered { .. }) => {
                let id = self.register().await?;
                self.topic = Topic::Normal(id);
            }
            (Direction::Up, _) => {}
            (Direction::Down, _) => self.subscribe().await?,
        }
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let client_id = format!("b{:08x}-{}", ctx.run_id, self.id);
        let connect = Packet::Connect(Connect {
            will: false,
            clean_session: true,
            protocol_id: PROTOCOL_ID,
            duration: ctx.plan.keep_alive,
            client_id: client_id.as_bytes(),
        });
        self.out.connect_started_ns = Some(ctx.clock.now_ns());
        let mut refusal = None;
        for attempt in 0..=ctx.plan.retries {
            self.out.connect_attempts += 1;
            if attempt == 0 {
                self.wire.request(&connect).await?;
            } else {
                self.wire.resend(false).await?;
            }
            let deadline = Instant::now() + ctx.plan.retry;
            while let Some(received) = self.wire.recv_until(deadline).await? {
                match received {
                    Some(In::ConnAck(ReturnCode::Accepted)) => {
                        self.out.connected_ns = Some(ctx.clock.now_ns());
                        ctx.live.connected.fetch_add(1, Relaxed);
                        return Ok(());
                    }
                    // Refused (congestion, max_sessions): try again after T_retry.
                    Some(In::ConnAck(code)) => {
                        self.out.refused += 1;
                        refusal = Some(code);
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    other => self.unsolicited(other).await?,
                }
            }
        }
        Err(match refusal {
            Some(code) => MoteError::Refused("CONNECT", code),
            None => MoteError::NoReply("CONNACK"),
        })
    }

    async fn register(&mut self) -> Result<u16, MoteError> {
        let msg_id = self.next_msg_id();
        let name = std::mem::take(&mut self.name);
        let sent = self
            .wire
            .request(&Packet::Register(Register {
                topic_id: 0,
                msg_id,
                topic_name: &name,
            }))
            .await;
        self.name = name;
        sent?;
        self.exchange("REGACK", |received| match received {
            In::RegAck {
                msg_id: m,
                topic_id,
                code,
            } if m == msg_id => Some(match code {
                ReturnCode::Accepted => Ok(topic_id),
                code => Err(MoteError::Refused("REGISTER", code)),
            }),
            _ => None,
        })
        .await
    }

    async fn subscribe(&mut self) -> Result<(), MoteError> {
        let plan = &self.ctx.plan;
        let msg_id = self.next_msg_id();
        let topic = match &plan.topic {
            TopicPlan::Registered { .. } => SubscribeTopic::Name(&self.name),
            TopicPlan::Predefined { id, .. } => SubscribeTopic::Predefined(*id),
            TopicPlan::Short(short) => SubscribeTopic::Short(*short),
        };
        let subscribe = Packet::Subscribe(Subscribe {
            dup: false,
            qos: plan.qos,
            msg_id,
            topic,
        });
        self.wire.request(&subscribe).await?;
        self.exchange("SUBACK", |received| match received {
            In::SubAck { msg_id: m, code } if m == msg_id => Some(match code {
                ReturnCode::Accepted => Ok(()),
                code => Err(MoteError::Refused("SUBSCRIBE", code)),
            }),
            _ => None,
        })
        .await
    }

    /// Publishes until the count, the load deadline or the drain phase.
    async fn uplink(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let plan = &ctx.plan;
        let load_start = ctx.control.load_start_ns();
        let load_end =
            load_start.saturating_add(u64::try_from(plan.duration.as_nanos()).unwrap_or(u64::MAX));
        let count = plan.count.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
        // Open loop: this mote's share of --rate, its first message offset by its id so the
        // motes do not all send in the same instant.
        let interval = (plan.rate > 0).then(|| f64::from(plan.motes) * 1e9 / plan.rate as f64);
        let mut next_due = interval.map_or(0.0, |iv| {
            let offset = iv * f64::from(self.id) / f64::from(plan.motes);
            (load_start as f64 + offset).max(ctx.clock.now_ns() as f64)
        });
        let acked = plan.acked();
        let mut unflushed: u64 = 0;
        loop {
            if u64::from(self.out.sent) >= count {
                break;
            }
            let now = ctx.clock.now_ns();
            if now >= load_end || ctx.control.phase() >= Phase::Drain {
                break;
            }
            if let Some(iv) = interval {
                if (now as f64) < next_due {
                    ctx.live.sent.fetch_add(unflushed, Relaxed);
                    ctx.live.accepted.fetch_add(unflushed, Relaxed);
                    unflushed = 0;
                    let wake = (next_due as u64).min(load_end);
                    tokio::time::sleep_until(ctx.clock.instant(wake)).await;
                    self.drain_incoming().await?;
                    continue;
                }
                next_due += iv;
            }
            if acked {
                self.publish_acked().await?;
            } else {
                self.publish_unacked().await?;
                unflushed += 1;
                if unflushed.is_multiple_of(u64::from(BURST)) {
                    ctx.live.sent.fetch_add(unflushed, Relaxed);
                    ctx.live.accepted.fetch_add(unflushed, Relaxed);
                    unflushed = 0;
                    self.drain_incoming().await?;
                    tokio::task::yield_now().await;
                }
            }
        }
        ctx.live.sent.fetch_add(unflushed, Relaxed);
        ctx.live.accepted.fetch_add(unflushed, Relaxed);
        Ok(())
    }

    /// Answers whatever is waiting (QoS 0 motes get PUBACKs only when refused).
    async fn drain_incoming(&mut self) -> Result<(), MoteError> {
        for _ in 0..64 {
            match self.wire.try_recv() {
                None => return Ok(()),
                Some(Some(In::PubAck { code, .. })) if code != ReturnCode::Accepted => {
                    self.out.rejected += 1;
                }
                Some(other) => self.unsolicited(other).await?,
            }
        }
        Ok(())
    }

    /// Stamps the payload with the next sequence number and the time, and encodes the PUBLISH
    /// into the request buffer.
    fn stamp(&mut self, qos: QoS, msg_id: u16) -> Result<u32, MoteError> {
        let ctx = self.ctx;
        let seq = self.out.sent;
        Stamp {
            run: ctx.run_id,
            mote: self.id,
            seq,
            sent_ns: ctx.clock.now_ns(),
        }
        .write(&mut self.payload);
        let topic = match self.topic {
            Topic::Normal(id) => PublishTopic::Normal(id),
            Topic::Predefined(id) => PublishTopic::Predefined(id),
            Topic::Short(s) => PublishTopic::Short(s),
            Topic::LongName => PublishTopic::LongName(&self.name),
        };
        let publish = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            msg_id,
            data: &self.payload,
        });
        self.wire.req.clear();
        publish
            .encode(&mut self.wire.req)
            .map_err(MoteError::Encode)?;
        self.out.sent = seq.saturating_add(1);
        Ok(seq)
    }

    /// One QoS 0 or -1 PUBLISH.
    async fn publish_unacked(&mut self) -> Result<(), MoteError> {
        let qos = self.ctx.plan.qos;
        self.stamp(qos, 0)?;
        self.wire.resend(false).await?;
        Ok(())
    }

    /// One QoS 1 or 2 PUBLISH, its flow completed (or given up) before returning.
    async fn publish_acked(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let plan = &ctx.plan;
        let msg_id = self.next_msg_id();
        let seq = self.stamp(plan.qos, msg_id)?;
        self.wire.resend(false).await?;
        ctx.live.sent.fetch_add(1, Relaxed);
        let qos2 = plan.qos == QoS::ExactlyOnce;
        let mut released = false; // QoS 2: PUBREL sent, waiting for PUBCOMP
        let mut tries = 0;
        let mut deadline = Instant::now() + plan.retry;
        loop {
            let Some(received) = self.wire.recv_until(deadline).await? else {
                if tries >= plan.retries || ctx.control.phase() >= Phase::Finish {
                    self.out.unacked += 1;
                    return Ok(());
                }
                tries += 1;
                self.out.retransmits += 1;
                // A PUBLISH goes again with DUP; a PUBREL as it was.
                self.wire.resend(!released).await?;
                deadline = Instant::now() + plan.retry;
                continue;
            };
            match received {
                Some(In::PubAck { msg_id: m, code }) if m == msg_id && !released => {
                    if code == ReturnCode::Accepted && !qos2 {
                        self.accept(seq);
                    } else {
                        self.out.rejected += 1;
                    }
                    return Ok(());
                }
                Some(In::PubRec(m)) if qos2 && m == msg_id => {
                    // The broker holds it; release it (again, if PUBREC was repeated).
                    self.wire.request(&Packet::PubRel { msg_id }).await?;
                    if !released {
                        released = true;
                        tries = 0;
                    }
                    deadline = Instant::now() + plan.retry;
                }
                Some(In::PubComp(m)) if qos2 && m == msg_id && released => {
                    self.accept(seq);
                    return Ok(());
                }
                other => self.unsolicited(other).await?,
            }
        }
    }

    fn accept(&mut self, seq: u32) {
        self.out.acked.insert(seq);
        self.ctx.live.acked.fetch_add(1, Relaxed);
        self.ctx.live.accepted.fetch_add(1, Relaxed);
    }

    /// Receives and acknowledges the broker's messages until the finish phase.
    async fn downlink(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let finish = ctx.control.reached(Phase::Finish);
        tokio::pin!(finish);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut finish => return Ok(()),
                received = self.wire.recv() => received?,
            };
            match received {
                Some(In::Publish {
                    qos,
                    msg_id,
                    topic_field,
                    stamp,
                }) => {
                    self.out.record_downlink(ctx, stamp);
                    match qos {
                        QoS::AtLeastOnce => {
                            self.wire
                                .send(&Packet::PubAck(PubAck {
                                    topic_id: topic_field,
                                    msg_id,
                                    return_code: ReturnCode::Accepted,
                                }))
                                .await?
                        }
                        QoS::ExactlyOnce => self.wire.send(&Packet::PubRec { msg_id }).await?,
                        _ => {}
                    }
                }
                other => self.unsolicited(other).await?,
            }
        }
    }
}
