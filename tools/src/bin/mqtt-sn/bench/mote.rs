//! One simulated mote: its own UDP socket on its own loopback address (127.1.0.0 + id, one
//! port for all), CONNECT, REGISTER or SUBSCRIBE, then publishing (uplink) or receiving and
//! acknowledging (downlink), then PINGREQ to check the session is still there, and DISCONNECT.
//!
//! The protocol is the sans-I/O client machine of `sn-client`, the one `mqtt-sn pub`/`sub` and
//! the tests' mote drive; this file moves its datagrams over the socket, paces the load and
//! counts. The machine is set up for a load generator: no keep-alive pings, and a PUBLISH on a
//! topic id it was never told is acknowledged and counted like any other.
//!
//! The address is a function of the id, so a mote can close its socket and later rebind the
//! same address and still be the peer the gateway knows: that is how one process holds more
//! sessions than it may open sockets (waves).
//!
//! Over DTLS (`--dtls`) each mote handshakes on its socket before its CONNECT, and every
//! datagram goes through its own DTLS connection; its socket is then never released (the
//! connection lives in this process), so DTLS runs have no waves.
//!
//! Nothing the network sends can panic this code: undecodable datagrams are counted and
//! dropped, unexpected packets are answered the way a client must (by the machine) or ignored.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use sn_client::{
    Client, ClientConfig, ClientError, ConnectOptions, Event, Received, Timing, UnknownTopicIds,
};
use sn_codec::v12::{PublishTopic, ReturnCode, SubscribeTopic};
use sn_codec::QoS;
use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::options::{Direction, Plan, TopicPlan};
use super::payload::{self, Stamp};
use super::{Ctx, MoteOutcome, Phase};
use crate::dtls::{self, Channel};

/// Receive buffer: the gateway's default max_packet_size is 1024.
const RX_BUFFER: usize = 2048;
/// QoS 0/-1 motes yield to the other tasks after this many back-to-back sends.
const BURST: u32 = 32;

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
    /// The machine would not start a request: a packet could not be encoded (cannot happen
    /// with checked options) or another request was still waiting.
    Client(ClientError),
    /// The DTLS handshake or connection failed.
    Dtls(String),
}

impl std::fmt::Display for MoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoteError::Io(e) => write!(f, "socket error: {e}"),
            MoteError::NoReply(what) => write!(f, "no {what}"),
            MoteError::Refused(what, code) => write!(f, "{what} refused: {code:?}"),
            MoteError::Disconnected => write!(f, "gateway sent DISCONNECT"),
            MoteError::Client(e) => write!(f, "{e}"),
            MoteError::Dtls(why) => write!(f, "DTLS: {why}"),
        }
    }
}

impl From<io::Error> for MoteError {
    fn from(e: io::Error) -> Self {
        MoteError::Io(e)
    }
}

impl From<ClientError> for MoteError {
    fn from(e: ClientError) -> Self {
        MoteError::Client(e)
    }
}

/// Whether a send or receive error only means "that datagram is lost": an ICMP port
/// unreachable (nothing listens at the gateway address yet) or a full local queue.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(105) // ENOBUFS
}

/// The machine's clock: `std` time, which is what tokio's `Instant` wraps.
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The client machine set up as a bench mote: the plan's T_retry and N_retry, no keep-alive
/// pings (a mote under load is never silent for a keep-alive period, and the end-of-run
/// PINGREQ is the check that the session is still there), and PUBLISHes on any topic id
/// acknowledged and counted.
fn machine(plan: &Plan, client_id: String) -> Client {
    let mut config = ClientConfig::new(client_id);
    config.timing = Timing::new(plan.retry, plan.retries);
    config.keep_alive_pings = false;
    config.unknown_topic_ids = UnknownTopicIds::Accept;
    Client::new(config)
}

/// A mote's socket, connected to the gateway, and its client machine.
struct Link {
    socket: UdpSocket,
    client: Client,
    /// The mote's DTLS connection (`--dtls`).
    channel: Option<Channel>,
    rx: Vec<u8>,
    /// The datagram being sent.
    tx: Vec<u8>,
    /// Sends the kernel refused ([`transient`] errors).
    send_failures: u64,
}

impl Link {
    fn open(local: SocketAddrV4, gateway: SocketAddrV4, client: Client) -> io::Result<Link> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(gateway)?;
        socket.set_nonblocking(true)?;
        Ok(Link {
            socket: UdpSocket::from_std(socket)?,
            client,
            channel: None,
            rx: vec![0; RX_BUFFER],
            tx: Vec::with_capacity(64),
            send_failures: 0,
        })
    }

    /// Runs the DTLS handshake on the socket; every datagram goes through it from then on.
    async fn secure(&mut self, client: sn_transports::dtls::DtlsClient) -> Result<(), MoteError> {
        let channel = dtls::handshake(&self.socket, client, &mut self.rx)
            .await
            .map_err(|e| MoteError::Dtls(e.to_string()))?;
        self.channel = Some(channel);
        Ok(())
    }

    /// Ends the DTLS connection with close_notify (best effort).
    async fn close_channel(&mut self) {
        if let Some(channel) = &mut self.channel {
            channel.close();
            while let Some(record) = channel.next_transmit() {
                let _ = self.socket.send(&record).await;
            }
        }
        self.channel = None;
    }

    /// Sends every datagram the machine has for the gateway.
    async fn flush(&mut self) -> Result<(), MoteError> {
        while self.client.poll_transmit(&mut self.tx) {
            match &mut self.channel {
                None => send(&self.socket, &self.tx, &mut self.send_failures).await?,
                Some(channel) => {
                    channel.seal(&self.tx).map_err(MoteError::Dtls)?;
                    while let Some(record) = channel.next_transmit() {
                        send(&self.socket, &record, &mut self.send_failures).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Feeds one received datagram to the machine (decrypted first over DTLS: what is then
    /// not an application datagram, a stray handshake record, counts as unexpected).
    fn feed(&mut self, len: usize) -> Result<Received, MoteError> {
        let bytes = self.rx.get(..len).unwrap_or_default();
        let Some(channel) = &mut self.channel else {
            return Ok(self.client.handle_datagram(now(), bytes));
        };
        let opened = channel.open(bytes);
        let mut received = Received::Unexpected;
        while let Some(plaintext) = channel.take() {
            received = match (self.client.handle_datagram(now(), &plaintext), received) {
                (Received::Undecodable, _) | (_, Received::Undecodable) => Received::Undecodable,
                (Received::Consumed, _) | (_, Received::Consumed) => Received::Consumed,
                (Received::Unexpected, Received::Unexpected) => Received::Unexpected,
            };
        }
        opened.map_err(MoteError::Dtls)?;
        Ok(received)
    }

    /// The next datagram, fed to the machine; `None` once the machine's deadline has come
    /// (then [`Link::expire`] or [`Client::abandon`]). Without a deadline it waits for a
    /// datagram.
    async fn turn(&mut self) -> Result<Option<Received>, MoteError> {
        let deadline = self.client.poll_timeout().map(Instant::from_std);
        loop {
            let received = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.socket.recv(&mut self.rx)).await {
                        Err(_elapsed) => return Ok(None),
                        Ok(received) => received,
                    }
                }
                None => self.socket.recv(&mut self.rx).await,
            };
            match received {
                Ok(len) => return self.feed(len).map(Some),
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A datagram if one is waiting, fed to the machine, without waiting.
    fn try_turn(&mut self) -> Result<Option<Received>, MoteError> {
        match self.socket.try_recv(&mut self.rx) {
            Ok(len) => self.feed(len).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The machine's deadline has come: resend or give up. Returns how many requests were
    /// resent.
    fn expire(&mut self) -> u64 {
        let before = self.client.retransmits();
        self.client.handle_timeout(now());
        self.client.retransmits().saturating_sub(before)
    }
}

/// Sends one datagram; a [`transient`] refusal is counted, the datagram lost.
async fn send(socket: &UdpSocket, bytes: &[u8], failures: &mut u64) -> io::Result<()> {
    match socket.send(bytes).await {
        Ok(_) => Ok(()),
        Err(e) if transient(&e) => {
            *failures += 1;
            Ok(())
        }
        Err(e) => Err(e),
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

impl Topic {
    fn to_codec(self, name: &str) -> PublishTopic<'_> {
        match self {
            Topic::Normal(id) => PublishTopic::Normal(id),
            Topic::Predefined(id) => PublishTopic::Predefined(id),
            Topic::Short(short) => PublishTopic::Short(short),
            Topic::LongName => PublishTopic::LongName(name.as_bytes()),
        }
    }
}

/// One mote while its socket is open.
struct Mote<'a> {
    ctx: &'a Ctx,
    id: u32,
    link: Link,
    out: &'a mut MoteOutcome,
    topic: Topic,
    name: String,
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

/// The client id of mote `id`: its PSK identity when each mote has its own (--psk-file),
/// else one unique to the run.
fn client_id(ctx: &Ctx, id: u32) -> String {
    match ctx
        .plan
        .dtls
        .as_ref()
        .and_then(|d| d.psk_entries.get(id as usize))
    {
        Some(entry) => entry.identity.clone(),
        None => format!("b{:08x}-{id}", ctx.run_id),
    }
}

/// Mote `id`'s DTLS handshake on `link`, timed into `out`.
async fn secure(
    ctx: &Ctx,
    id: u32,
    link: &mut Link,
    out: &mut MoteOutcome,
) -> Result<(), MoteError> {
    let Some(setup) = &ctx.plan.dtls else {
        return Ok(());
    };
    let started = now();
    out.handshake_started_ns = Some(ctx.clock.now_ns());
    let client = match setup.psk_entries.get(id as usize) {
        Some(entry) => setup.context.connect_as(started, entry.clone()),
        None => setup.context.connect(started),
    }
    .map_err(|e| MoteError::Dtls(e.to_string()))?;
    link.secure(client).await?;
    out.handshake_done_ns = Some(ctx.clock.now_ns());
    ctx.live.handshakes.fetch_add(1, Relaxed);
    Ok(())
}

async fn lifecycle(ctx: &Ctx, id: u32, out: &mut MoteOutcome) -> Result<(), MoteError> {
    let plan = &ctx.plan;
    // The connect schedule: mote i starts i / connect_rate after the connect phase began.
    ctx.wait_connect_slot(id).await;
    let mut link = Link::open(
        address(id, ctx.mote_port),
        plan.gateway,
        machine(plan, client_id(ctx, id)),
    )?;
    secure(ctx, id, &mut link, out).await?;
    let mut mote = Mote {
        ctx,
        id,
        link,
        out,
        topic: Topic::LongName,
        name: plan.topic.name_for(id),
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
    mote.out.send_failures = mote.link.send_failures;
    ctx.live.motes_done.fetch_add(1, Relaxed);
    if plan.waves() || plan.qos == QoS::MinusOne {
        // The session (if any) stays at the gateway; the sweep at the end checks it.
        mote.out.released = plan.qos != QoS::MinusOne;
        mote.link.close_channel().await;
        return Ok(());
    }
    ctx.control.reached(Phase::Finish).await;
    let (alive, disconnected) = finish(ctx, &mut mote.link).await?;
    mote.out.alive_at_end = Some(alive);
    mote.out.disconnected = disconnected;
    Ok(())
}

/// The end of a session: PINGREQ (is the session still there?), then DISCONNECT unless the
/// sessions are to stay. Returns (alive, disconnected). Late downlink traffic is
/// acknowledged by the machine meanwhile, so the gateway is not left waiting.
async fn finish(ctx: &Ctx, link: &mut Link) -> Result<(bool, bool), MoteError> {
    let plan = &ctx.plan;
    link.client.abandon();
    link.client
        .set_timing(Timing::new(plan.retry, plan.retries));
    link.client.ping(now())?;
    // What arrives meanwhile is not counted, nor are resends of PINGREQ.
    let mut uncounted = Tally::default();
    let alive = loop {
        match next_event(link, &mut uncounted, || false).await? {
            Some(Event::PingResp) => break true,
            // The gateway does not know us (any more).
            Some(Event::Disconnected { .. }) => {
                link.client.abandon();
                break false;
            }
            Some(Event::TimedOut(_)) | None => break false,
            Some(_) => {}
        }
    };
    let mut disconnected = false;
    if plan.disconnect {
        // One T_retry for the gateway's DISCONNECT, without resending.
        link.client.set_timing(Timing::new(plan.retry, 0));
        link.client.disconnect(now())?;
        disconnected = loop {
            match next_event(link, &mut uncounted, || false).await? {
                Some(Event::DisconnectAck) => break true,
                Some(Event::TimedOut(_)) | None => break false,
                Some(_) => {}
            }
        };
        link.close_channel().await;
    }
    Ok((alive, disconnected))
}

/// Counters [`next_event`] adds to.
#[derive(Debug, Default)]
struct Tally {
    /// Datagrams that did not decode.
    malformed: u64,
    /// Requests resent.
    resent: u64,
}

/// Runs the machine until it has an event: sends what it has for the gateway, feeds it what
/// arrives, and at its deadline lets it resend or give up (then [`Event::TimedOut`]) — or,
/// when `give_up` says so, drops the pending request and returns `None`. `None` also when
/// nothing is pending and no event is left.
async fn next_event(
    link: &mut Link,
    tally: &mut Tally,
    give_up: impl Fn() -> bool,
) -> Result<Option<Event>, MoteError> {
    loop {
        link.flush().await?;
        if let Some(event) = link.client.poll_event() {
            return Ok(Some(event));
        }
        if link.client.pending().is_none() {
            return Ok(None);
        }
        match link.turn().await? {
            Some(Received::Undecodable) => tally.malformed += 1,
            Some(Received::Consumed | Received::Unexpected) => {}
            None if give_up() => {
                link.client.abandon();
                return Ok(None);
            }
            None => tally.resent += link.expire(),
        }
    }
}

/// The end-of-run check for a mote that released its socket: rebinds its address, then
/// [`finish`]. Returns (alive, disconnected).
pub(crate) async fn sweep(
    ctx: Arc<Ctx>,
    id: u32,
    permit: OwnedSemaphorePermit,
) -> Result<(bool, bool), String> {
    let result = async {
        let mut link = Link::open(
            address(id, ctx.mote_port),
            ctx.plan.gateway,
            machine(&ctx.plan, client_id(&ctx, id)),
        )?;
        finish(&ctx, &mut link).await
    }
    .await
    .map_err(|e| e.to_string());
    drop(permit);
    result
}

/// What a mote does with an event no request of its own waits for: the machine has already
/// answered it (REGACK, PUBACK, PUBREC, PUBCOMP, PINGRESP); only the gateway's DISCONNECT
/// ends the mote.
fn background(event: &Event) -> Result<(), MoteError> {
    match event {
        Event::Disconnected { .. } => Err(MoteError::Disconnected),
        _ => Ok(()),
    }
}

/// Which counter the resends of a request go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resends {
    /// `connect_attempts`: every CONNECT sent counts, resends included.
    Connects,
    /// `retransmits`.
    Retransmits,
}

impl Mote<'_> {
    /// [`next_event`] with this mote's counters; `give_up_at_finish` drops the pending
    /// request at its next deadline once the finish phase has begun.
    async fn next(
        &mut self,
        resends: Resends,
        give_up_at_finish: bool,
    ) -> Result<Option<Event>, MoteError> {
        let control = &self.ctx.control;
        let mut tally = Tally::default();
        let event = next_event(&mut self.link, &mut tally, || {
            give_up_at_finish && control.phase() >= Phase::Finish
        })
        .await;
        self.out.malformed += tally.malformed;
        match resends {
            Resends::Connects => {
                let resent = u32::try_from(tally.resent).unwrap_or(u32::MAX);
                self.out.connect_attempts = self.out.connect_attempts.saturating_add(resent);
            }
            Resends::Retransmits => self.out.retransmits += tally.resent,
        }
        event
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

    /// CONNECT, sent at most N_retry + 1 times in all: resent every T_retry while
    /// unanswered, and sent again one T_retry after a refused one (congestion,
    /// max_sessions), each send counted.
    async fn connect(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let plan = &ctx.plan;
        let options = ConnectOptions {
            keep_alive: plan.keep_alive,
            clean_session: true,
            will: None,
        };
        let sends = plan.retries.saturating_add(1);
        self.out.connect_started_ns = Some(ctx.clock.now_ns());
        let mut refusal = None;
        'attempts: while self.out.connect_attempts < sends {
            // What is left of the send budget after refusals.
            let resends = sends - self.out.connect_attempts - 1;
            self.link
                .client
                .set_timing(Timing::new(plan.retry, resends));
            self.link.client.connect(now(), &options)?;
            self.out.connect_attempts += 1;
            loop {
                match self.next(Resends::Connects, false).await? {
                    Some(Event::ConnAck(ReturnCode::Accepted)) => {
                        self.out.connected_ns = Some(ctx.clock.now_ns());
                        ctx.live.connected.fetch_add(1, Relaxed);
                        self.link
                            .client
                            .set_timing(Timing::new(plan.retry, plan.retries));
                        return Ok(());
                    }
                    // Refused: try again T_retry after the last CONNECT.
                    Some(Event::ConnAck(code)) => {
                        self.out.refused += 1;
                        refusal = Some(code);
                        if let Some(sent) = self.link.client.request_sent_at() {
                            tokio::time::sleep_until(Instant::from_std(sent + plan.retry)).await;
                        }
                        continue 'attempts;
                    }
                    Some(Event::TimedOut(_)) | None => break 'attempts,
                    Some(other) => background(&other)?,
                }
            }
        }
        Err(match refusal {
            Some(code) => MoteError::Refused("CONNECT", code),
            None => MoteError::NoReply("CONNACK"),
        })
    }

    async fn register(&mut self) -> Result<u16, MoteError> {
        self.link.client.register(now(), &self.name)?;
        loop {
            match self.next(Resends::Retransmits, false).await? {
                Some(Event::RegAck {
                    topic_id,
                    code: ReturnCode::Accepted,
                    ..
                }) => return Ok(topic_id),
                Some(Event::RegAck { code, .. }) => {
                    return Err(MoteError::Refused("REGISTER", code))
                }
                Some(Event::TimedOut(_)) | None => return Err(MoteError::NoReply("REGACK")),
                Some(other) => background(&other)?,
            }
        }
    }

    async fn subscribe(&mut self) -> Result<(), MoteError> {
        let plan = &self.ctx.plan;
        let topic = match &plan.topic {
            TopicPlan::Registered { .. } => SubscribeTopic::Name(self.name.as_bytes()),
            TopicPlan::Predefined { id, .. } => SubscribeTopic::Predefined(*id),
            TopicPlan::Short(short) => SubscribeTopic::Short(*short),
        };
        self.link.client.subscribe(now(), topic, plan.qos)?;
        loop {
            match self.next(Resends::Retransmits, false).await? {
                Some(Event::SubAck(ack)) => {
                    return match ack.return_code {
                        ReturnCode::Accepted => Ok(()),
                        code => Err(MoteError::Refused("SUBSCRIBE", code)),
                    }
                }
                Some(Event::TimedOut(_)) | None => return Err(MoteError::NoReply("SUBACK")),
                Some(other) => background(&other)?,
            }
        }
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
            match self.link.try_turn()? {
                None => return Ok(()),
                Some(Received::Undecodable) => self.out.malformed += 1,
                Some(Received::Consumed | Received::Unexpected) => {}
            }
            while let Some(event) = self.link.client.poll_event() {
                match event {
                    Event::Rejected { .. } => self.out.rejected += 1,
                    other => background(&other)?,
                }
            }
            self.link.flush().await?;
        }
        Ok(())
    }

    /// Stamps the payload with the next sequence number and the time and hands the PUBLISH
    /// to the machine (MsgId 0 at QoS 0 and -1, the next one at QoS 1 and 2); returns the
    /// sequence number.
    fn stamp_and_publish(&mut self, qos: QoS) -> Result<u32, MoteError> {
        let ctx = self.ctx;
        let seq = self.out.sent;
        Stamp {
            run: ctx.run_id,
            mote: self.id,
            seq,
            sent_ns: ctx.clock.now_ns(),
        }
        .write(&mut self.payload);
        let topic = self.topic.to_codec(&self.name);
        self.link
            .client
            .publish(now(), topic, qos, false, &self.payload)?;
        self.out.sent = seq.saturating_add(1);
        Ok(seq)
    }

    /// One QoS 0 or -1 PUBLISH.
    async fn publish_unacked(&mut self) -> Result<(), MoteError> {
        self.stamp_and_publish(self.ctx.plan.qos)?;
        self.link.flush().await?;
        Ok(())
    }

    /// One QoS 1 or 2 PUBLISH, its flow completed (or given up) before returning: the
    /// machine resends it with DUP every T_retry (a PUBREL as it was) and gives it up after
    /// N_retry resends, or at the first deadline of the finish phase.
    async fn publish_acked(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let seq = self.stamp_and_publish(ctx.plan.qos)?;
        self.link.flush().await?;
        ctx.live.sent.fetch_add(1, Relaxed);
        loop {
            match self.next(Resends::Retransmits, true).await? {
                Some(Event::Published {
                    code: ReturnCode::Accepted,
                    ..
                }) => {
                    self.accept(seq);
                    return Ok(());
                }
                Some(Event::Published { .. }) => {
                    self.out.rejected += 1;
                    return Ok(());
                }
                Some(Event::TimedOut(_)) | None => {
                    self.out.unacked += 1;
                    return Ok(());
                }
                Some(other) => background(&other)?,
            }
        }
    }

    fn accept(&mut self, seq: u32) {
        self.out.acked.insert(seq);
        self.ctx.live.acked.fetch_add(1, Relaxed);
        self.ctx.live.accepted.fetch_add(1, Relaxed);
    }

    /// Receives the broker's messages until the finish phase; the machine acknowledges each
    /// at its QoS. Every PUBLISH is counted, a QoS 2 one the machine marks as a repeat
    /// included: the sequence numbers tell new from duplicate.
    async fn downlink(&mut self) -> Result<(), MoteError> {
        let ctx = self.ctx;
        let finish = ctx.control.reached(Phase::Finish);
        tokio::pin!(finish);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut finish => return Ok(()),
                received = self.link.turn() => received?,
            };
            match received {
                Some(Received::Undecodable) => self.out.malformed += 1,
                Some(Received::Consumed | Received::Unexpected) => {}
                // Nothing is pending and there are no keep-alive pings: no deadline to meet.
                None => {
                    self.link.expire();
                }
            }
            while let Some(event) = self.link.client.poll_event() {
                match event {
                    Event::Message(message) => {
                        self.out.record_downlink(ctx, Stamp::read(&message.payload));
                    }
                    other => background(&other)?,
                }
            }
            self.link.flush().await?;
        }
    }
}
