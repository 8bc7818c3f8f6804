//! One connection of the aggregating broker link: a socket (TCP, or TLS over it) and rumqttc's
//! MQTT 3.1.1 packet codec (`rumqttc::mqttbytes::v4`), driven by the link's own task.
//!
//! The core owns QoS reliability, replay and in-flight limits, so a connection needs no MQTT
//! client state machine, only packet ids, the map from them to the core's ids, and the socket.
//! Each turn of the loop takes every command waiting (up to [`WRITE_BATCH`] bytes) into one
//! write buffer and hands it to the socket in one write, and parses every packet a read
//! brought in: rumqttc's event loop wrote and flushed each request alone (one `writev` per
//! PUBLISH, docs/benchmarks.md) and copied each payload. Here a publish's payload stays the
//! core's `Bytes` until it is encoded into the write buffer.
//!
//! Nothing in the loop is cancelled half-way: the socket is polled for reading and writing in
//! one future that reports what it did, and a command is taken from the channel only when the
//! connection can keep it ([`Connection::pending`]).

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, LastWill, Login, Packet, PubAck, PubComp, PubRec, PubRel, Publish, Subscribe,
    SubscribeReasonCode, Unsubscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::ConnectReturnCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::link::{
    took, valid_request, BrokerLinkConfig, End, MAX_MQTT_PACKET, STATUS_OFFLINE, STATUS_ONLINE,
};
use crate::core::{BrokerCommand, BrokerEvent, DeliveryId, MqttQoS, PublishId, UplinkPublish};

/// Bytes of encoded packets one turn collects before it writes them; commands beyond wait in
/// the channel for the next turn. Not a limit anything is dropped at: it bounds the write
/// buffer (and the latency of the first packet in it), and 64 KiB is a few hundred MQTT-SN
/// publishes, more than one turn of the core produces.
const WRITE_BATCH: usize = 64 * 1024;
/// Room made in the read buffer before each read: one read takes whatever the socket holds,
/// up to this, and every complete packet in it is handled in the same turn.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection could not be established.
#[derive(Debug)]
pub(super) enum ConnectFailure {
    /// The broker answered CONNECT with a refusal.
    Refused(ConnectReturnCode),
    /// Anything else: the socket, TLS, a timeout, a malformed answer. In words.
    Other(String),
}

/// Sends CONNECT on a freshly opened `stream` and waits for CONNACK. On success returns the
/// CONNACK and the bytes read after it (the broker may send queued messages right behind it),
/// which [`Connection::run`] must parse first.
pub(super) async fn handshake<S>(
    stream: &mut S,
    config: &BrokerLinkConfig,
) -> Result<(ConnAck, BytesMut), ConnectFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let options = &config.options;
    let mut connect = Connect::new(options.client_id.clone());
    // MQTT keep-alive is in whole seconds; at least 1 (0 would turn the broker's check off).
    let seconds = options.keep_alive.as_secs().max(1);
    connect.keep_alive = u16::try_from(seconds).unwrap_or(u16::MAX);
    connect.clean_session = options.clean_session;
    if let Some(username) = &options.username {
        // The file again, at every connection: a changed password is used from the next one.
        let password = super::password::current(
            options.password_file.as_deref(),
            options.password.as_ref(),
            "broker.password_file",
        );
        connect.login = Some(Login::new(username.clone(), password.unwrap_or_default()));
    }
    if let Some(topic) = config.status_topic() {
        connect.last_will = Some(LastWill::new(topic, STATUS_OFFLINE, QoS::AtLeastOnce, true));
    }
    let mut out = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut out, MAX_MQTT_PACKET)
        .map_err(|e| ConnectFailure::Other(format!("cannot encode CONNECT: {e}")))?;
    let io_error = |e: io::Error| ConnectFailure::Other(format!("I/O: {e}"));
    stream.write_all(&out).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match Packet::read(&mut input, MAX_MQTT_PACKET) {
            Ok(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    return Err(ConnectFailure::Refused(ack.code));
                }
                return Ok((ack, input));
            }
            Ok(other) => {
                return Err(ConnectFailure::Other(format!(
                    "unexpected first packet from the broker: {other:?}"
                )))
            }
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ConnectFailure::Other(format!("malformed CONNACK: {e}"))),
        }
        let n = tokio::io::AsyncReadExt::read_buf(stream, &mut input)
            .await
            .map_err(io_error)?;
        if n == 0 {
            return Err(ConnectFailure::Other(
                "the broker closed the connection before CONNACK".into(),
            ));
        }
    }
}

/// What the socket did in one poll of [`io_turn`].
struct IoTurn {
    /// Bytes read into the read buffer (0: nothing was read this time).
    read: usize,
}

/// Packet ids in use (awaiting an acknowledgement), one bit each: an id is handed out again
/// only once the broker is done with it. 8 KiB, so a lookup costs no hashing.
struct PacketIds {
    used: Box<[u64]>,
    /// The id given last; the next search starts after it, so ids come round in order.
    last: u16,
    in_use: usize,
}

impl PacketIds {
    fn new() -> Self {
        PacketIds {
            used: vec![0; 1024].into_boxed_slice(),
            last: 0,
            in_use: 0,
        }
    }

    fn slot(id: u16) -> (usize, u64) {
        (usize::from(id / 64), 1u64 << (id % 64))
    }

    /// The next free id (1..=65535), or `None` when all are in use.
    fn take(&mut self) -> Option<u16> {
        if self.in_use >= usize::from(u16::MAX) {
            return None;
        }
        let mut id = self.last;
        loop {
            id = id.wrapping_add(1);
            if id == 0 {
                continue;
            }
            let (word, bit) = Self::slot(id);
            if let Some(w) = self.used.get_mut(word) {
                if *w & bit == 0 {
                    *w |= bit;
                    self.in_use += 1;
                    self.last = id;
                    return Some(id);
                }
            }
        }
    }

    /// Marks `id` in use (an exchange of an earlier connection the broker may still hold), so
    /// [`PacketIds::take`] never hands it out; nothing happens for 0 or an id in use.
    fn reserve(&mut self, id: u16) {
        let (word, bit) = Self::slot(id);
        if id == 0 {
            return;
        }
        if let Some(w) = self.used.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                self.in_use += 1;
            }
        }
    }

    /// Frees `id`; nothing happens for an id not in use.
    fn free(&mut self, id: u16) {
        let (word, bit) = Self::slot(id);
        if let Some(w) = self.used.get_mut(word) {
            if *w & bit != 0 {
                *w &= !bit;
                self.in_use -= 1;
            }
        }
    }
}

/// A QoS 1/2 message from the broker that the core has not yet said it holds.
struct Delivery {
    pkid: u16,
    qos: QoS,
}

/// What the gateway, as MQTT's receiver, keeps of the broker's QoS 1/2 messages. It
/// outlives a connection: the broker's session does, when the next CONNACK says so.
#[derive(Default)]
pub(super) struct Inbound {
    /// The last delivery id given to a broker message; never reused, so that a late
    /// acknowledgement for an earlier connection's message cannot acknowledge another.
    next_delivery: u64,
    /// Broker QoS 1/2 messages the core has not yet said it holds, by delivery id.
    deliveries: HashMap<u64, Delivery>,
    /// QoS 2 packet ids received and not yet released by PUBREL (MQTT 3.1.1 4.3.3, method
    /// B): the delivery handed to the core while it does not hold the message yet, `None`
    /// once PUBREC went. A PUBLISH resent with one of these ids is the same message: not
    /// handed to the core again. At most one entry per packet id.
    qos2: HashMap<u16, Option<u64>>,
}

impl Inbound {
    /// A new connection is up. Without the broker's session, its packet ids mean nothing
    /// more and it resends nothing: all is forgotten (an acknowledgement the core still
    /// sends for an old delivery is dropped). With it, the QoS 2 exchanges go on: the
    /// broker resends the PUBLISH (DUP) of those without PUBREC and the PUBREL of the
    /// others, and the core's acknowledgement of a delivery it was handed before sends the
    /// PUBREC on this connection. QoS 1 deliveries of the old connection are forgotten as
    /// before (the broker resends them; a duplicate is QoS 1's right).
    pub(super) fn connected(&mut self, session_present: bool) {
        if !session_present {
            self.deliveries.clear();
            self.qos2.clear();
            return;
        }
        let qos2 = &self.qos2;
        self.deliveries.retain(|id, delivery| {
            delivery.qos == QoS::ExactlyOnce && qos2.get(&delivery.pkid) == Some(&Some(*id))
        });
    }

    /// A QoS 1/2 PUBLISH arrived with `pkid`: the delivery id to hand the core, or `None`
    /// when it is a resend of a QoS 2 message already handed over (answered with PUBREC
    /// again when the core already holds it: `resend_pubrec`).
    fn receive(&mut self, pkid: u16, qos: QoS) -> Received {
        if qos == QoS::ExactlyOnce {
            match self.qos2.get(&pkid) {
                Some(Some(_)) => return Received::Repeat { pubrec: false },
                Some(None) => return Received::Repeat { pubrec: true },
                None => {}
            }
        }
        self.next_delivery += 1;
        let id = self.next_delivery;
        self.deliveries.insert(id, Delivery { pkid, qos });
        if qos == QoS::ExactlyOnce {
            self.qos2.insert(pkid, Some(id));
        }
        Received::New(DeliveryId(id))
    }

    /// The core holds delivery `id`: the packet to answer with, if it is still known.
    fn acknowledge(&mut self, id: u64) -> Option<Packet> {
        let delivery = self.deliveries.remove(&id)?;
        if delivery.qos == QoS::ExactlyOnce {
            if let Some(entry) = self.qos2.get_mut(&delivery.pkid) {
                *entry = None;
            }
            Some(Packet::PubRec(PubRec::new(delivery.pkid)))
        } else {
            Some(Packet::PubAck(PubAck::new(delivery.pkid)))
        }
    }

    /// PUBREL for `pkid`: the exchange is over, the id free for a new message.
    fn release(&mut self, pkid: u16) {
        self.qos2.remove(&pkid);
    }
}

/// Where one QoS 2 uplink exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH written on this connection, awaiting PUBREC.
    Sent,
    /// PUBLISH written on an earlier connection whose session the broker kept, awaiting
    /// PUBREC; it goes out again (same id, DUP) when the core's replay of it comes.
    Carried,
    /// PUBREC came and PUBREL went: awaiting PUBCOMP.
    Released,
}

/// One QoS 2 uplink exchange: the core's id for it (`None` for a publish that is not the
/// core's) and its stage.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    id: Option<PublishId>,
    stage: Stage,
}

/// What the gateway, as MQTT's sender, keeps of its QoS 2 publishes (PUBLISH written, no
/// PUBCOMP yet). It outlives a connection: when the next CONNACK says the broker kept the
/// session, MQTT 3.1.1 §4.4 wants each of them finished with its ORIGINAL packet id. A
/// replay under a new id is a second message to the broker, and the old id, half-done in
/// the broker's session, would make it take a later message given that id for a resend
/// of the old one and drop it.
#[derive(Default)]
pub(super) struct Outbound {
    /// Exchanges in progress, by packet id; each counts against `broker.max_inflight_qos2`
    /// (the broker counts them against its own quota, carried over or not).
    exchanges: HashMap<u16, Exchange>,
    /// Exchanges of an earlier connection whose replay by the core has not come yet: the
    /// core's id → packet id. The replay of one is not a new message: it goes out again
    /// with its old id when it still awaits PUBREC, and not at all once released.
    carried: HashMap<PublishId, u16>,
    /// Core ids whose carried exchange ended (PUBCOMP) before the core's replay of it came:
    /// the core was told, and the replay still on its way is not sent. Emptied at each
    /// connection (the core replays only what is incomplete).
    finished: HashSet<PublishId>,
    /// Packet ids of carried exchanges awaiting PUBREC that no replay claimed while
    /// nothing else could free a slot of the QoS 2 quota (see [`Outbound::unblock`]). Kept
    /// out of use, since the broker may hold a message under them, until the exchange
    /// ends or a connection without the session: at most the 16-bit id space.
    orphans: HashSet<u16>,
}

impl Outbound {
    /// A new connection is up. Without the broker's session there is nothing to finish:
    /// all is forgotten and the core's replays are new messages. With it, every exchange
    /// is carried over, awaiting its replay (see [`Outbound::carried`]).
    pub(super) fn connected(&mut self, session_present: bool) {
        self.finished.clear();
        if !session_present {
            self.exchanges.clear();
            self.carried.clear();
            self.orphans.clear();
            return;
        }
        for (&pkid, exchange) in &mut self.exchanges {
            if exchange.stage == Stage::Sent {
                exchange.stage = Stage::Carried;
            }
            if let Some(id) = exchange.id {
                self.carried.insert(id, pkid);
            }
        }
    }

    /// QoS 2 publishes outstanding, for the quota.
    fn outstanding(&self) -> usize {
        self.exchanges.len()
    }

    /// The quota is full and a new QoS 2 publish waits: when only carried exchanges no
    /// replay has claimed fill it, nothing on this connection can free a slot (the
    /// replays that would are behind the waiting publish, or will never come: the core
    /// dropped them). Their ids are kept out of use (`orphans`) but no longer counted,
    /// and a later replay of one is sent as a new message: a possible duplicate, never a
    /// loss or a stall. The core replays in the order it accepted the messages, so
    /// carried ones normally come first and this does not happen.
    fn unblock(&mut self) -> bool {
        if self.exchanges.values().any(|e| e.stage != Stage::Carried) {
            return false;
        }
        for (pkid, exchange) in self.exchanges.drain() {
            if let Some(id) = exchange.id {
                self.carried.remove(&id);
            }
            self.orphans.insert(pkid);
        }
        warn!(
            orphans = self.orphans.len(),
            "QoS 2 publishes of the previous connection were not replayed; their packet ids stay reserved"
        );
        true
    }
}

/// What a QoS 1/2 PUBLISH from the broker is to the receiver.
enum Received {
    /// A message to hand the core, with its delivery id.
    New(DeliveryId),
    /// The same QoS 2 message again (DUP, same packet id, before PUBREL): not handed over;
    /// PUBREC again if the core already holds it.
    Repeat { pubrec: bool },
}

/// One live connection: the socket's buffers, the packet ids in flight and what they stand
/// for, and the two timers (keep-alive and the acknowledgement watchdog).
pub(super) struct Connection {
    /// Packets encoded and not yet written.
    out: BytesMut,
    /// Bytes read and not yet parsed (a packet split across reads waits here).
    input: BytesMut,
    ids: PacketIds,
    /// Packet id → core id of QoS 1 publishes awaiting PUBACK; `None` for the gateway's
    /// own status publish. QoS 2 ones are in [`Outbound`], which outlives the connection.
    unacked: HashMap<u16, Option<PublishId>>,
    /// Packet id → filter of SUBSCRIBEs awaiting SUBACK.
    subscribes: HashMap<u16, Arc<str>>,
    /// Packet ids of UNSUBSCRIBEs awaiting UNSUBACK.
    unsubscribes: HashMap<u16, ()>,
    /// Most QoS 1/2 publishes outstanding at once (broker.max_inflight).
    window: usize,
    /// Most QoS 2 publishes outstanding at once (broker.max_inflight_qos2, at most `window`).
    window_qos2: usize,
    /// QoS 2 publishes outstanding ([`Outbound::outstanding`]) when last looked at.
    outstanding_qos2: usize,
    /// A command taken from the channel that cannot go out yet (the window is full, or no
    /// packet id is free); the channel is not read until it has.
    pending: Option<BrokerCommand>,
    /// When the broker last acknowledged something (or when the first of the outstanding
    /// publishes went out), for the watchdog.
    last_progress: Instant,
    stall_timeout: Duration,
    keep_alive: Duration,
    /// A PINGREQ is out and its PINGRESP has not come.
    ping_outstanding: bool,
}

/// Takes one command from the channel without waiting, counting it as taken.
fn try_take(
    commands: &mut mpsc::UnboundedReceiver<BrokerCommand>,
    queued: &AtomicUsize,
) -> Result<Option<BrokerCommand>, End> {
    match commands.try_recv() {
        Ok(command) => {
            took(queued);
            Ok(Some(command))
        }
        Err(mpsc::error::TryRecvError::Empty) => Ok(None),
        Err(mpsc::error::TryRecvError::Disconnected) => Err(End::Shutdown),
    }
}

impl Connection {
    /// A connection whose handshake is done; `input` holds what was read after CONNACK.
    /// `outbound` was told of the CONNACK ([`Outbound::connected`]): the packet ids of its
    /// exchanges are kept out of use, and a PUBREL for each released one is written first.
    pub(super) fn new(config: &BrokerLinkConfig, input: BytesMut, outbound: &Outbound) -> Self {
        let window = usize::from(config.options.max_inflight.max(1));
        let mut connection = Connection {
            out: BytesMut::with_capacity(WRITE_BATCH),
            input,
            ids: PacketIds::new(),
            unacked: HashMap::new(),
            subscribes: HashMap::new(),
            unsubscribes: HashMap::new(),
            window,
            window_qos2: usize::from(config.options.max_inflight_qos2.max(1)).min(window),
            outstanding_qos2: outbound.outstanding(),
            pending: None,
            last_progress: Instant::now(),
            // Long enough for a slow broker, short enough that a wedged connection is
            // replaced well before motes give up on their PUBACKs.
            stall_timeout: (config.options.keep_alive * 2).max(Duration::from_secs(10)),
            keep_alive: config.options.keep_alive.max(Duration::from_secs(1)),
            ping_outstanding: false,
        };
        let mut released: Vec<u16> = Vec::new();
        for (&pkid, exchange) in &outbound.exchanges {
            connection.ids.reserve(pkid);
            if exchange.stage == Stage::Released {
                released.push(pkid);
            }
        }
        for &pkid in &outbound.orphans {
            connection.ids.reserve(pkid);
        }
        // In id order, which is the order they were sent in (until ids wrap).
        released.sort_unstable();
        for pkid in released {
            connection.encode(&Packet::PubRel(PubRel::new(pkid)));
        }
        connection
    }

    /// QoS 1/2 publishes written and not yet complete (QoS 2 ones carried over included).
    fn outstanding(&self) -> usize {
        self.unacked.len() + self.outstanding_qos2
    }

    /// Queues the gateway's retained "online" status, first on the new connection (its Will
    /// says "offline"). Not one of the core's publishes: its PUBACK completes nothing.
    pub(super) fn announce(&mut self, topic: &str) {
        let Some(pkid) = self.ids.take() else {
            warn!(topic, "could not publish the gateway's online status");
            return;
        };
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, STATUS_ONLINE);
        publish.retain = true;
        publish.pkid = pkid;
        self.encode(&Packet::Publish(publish));
        self.unacked.insert(pkid, None);
    }

    /// Appends `packet` to the write buffer. Only the publish can be too large, and the core
    /// never makes one that is (an MQTT-SN datagram is under 64 KiB): dropped and logged.
    fn encode(&mut self, packet: &Packet) {
        if let Err(e) = packet.write(&mut self.out, MAX_MQTT_PACKET) {
            error!(%e, "dropped an MQTT packet the codec could not encode");
        }
    }

    /// Runs the connection until it is lost, the runtime is gone, or the watchdog gives up.
    pub(super) async fn run<S>(
        mut self,
        mut stream: S,
        commands: &mut mpsc::UnboundedReceiver<BrokerCommand>,
        events: &mpsc::Sender<BrokerEvent>,
        queued: &AtomicUsize,
        inbound: &mut Inbound,
        outbound: &mut Outbound,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Whatever came behind CONNACK.
        if let Err(end) = self.handle_input(events, inbound, outbound).await {
            return end;
        }
        let ping = tokio::time::sleep(self.keep_alive);
        tokio::pin!(ping);
        let watchdog = tokio::time::sleep(self.stall_timeout);
        tokio::pin!(watchdog);
        let mut flushed = true;
        loop {
            if let Err(end) = self.take_commands(commands, queued, inbound, outbound) {
                return end;
            }
            let can_take = self.pending.is_none() && self.out.len() < WRITE_BATCH;
            let out = &mut self.out;
            let input = &mut self.input;
            tokio::select! {
                biased;
                turn = poll_fn(|cx| io_turn(cx, &mut stream, out, &mut flushed, input)) => match turn {
                    Ok(turn) => {
                        if turn.read > 0 {
                            if let Err(end) = self.handle_input(events, inbound, outbound).await {
                                return end;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "broker connection lost; reconnecting");
                        return End::Reconnect;
                    }
                },
                command = commands.recv(), if can_take => match command {
                    Some(command) => {
                        took(queued);
                        self.pending = Some(command);
                    }
                    None => return End::Shutdown,
                },
                () = &mut ping => {
                    if self.ping_outstanding {
                        warn!(keep_alive = ?self.keep_alive, "the broker did not answer PINGREQ; reconnecting");
                        return End::Reconnect;
                    }
                    self.encode(&Packet::PingReq);
                    self.ping_outstanding = true;
                    ping.as_mut().reset(Instant::now() + self.keep_alive);
                }
                () = &mut watchdog => {
                    let now = Instant::now();
                    // Carried exchanges not yet resent are not on this connection's wire.
                    let waiting = outbound.exchanges.values().filter(|e| e.stage != Stage::Carried).count();
                    if self.unacked.len() + waiting == 0 {
                        self.last_progress = now;
                    }
                    let stall_at = self.last_progress + self.stall_timeout;
                    if stall_at <= now {
                        warn!(
                            timeout = ?self.stall_timeout,
                            unacked = self.unacked.len() + waiting,
                            "broker acknowledged nothing for too long; reconnecting"
                        );
                        return End::Reconnect;
                    }
                    watchdog.as_mut().reset(stall_at);
                }
            }
        }
    }

    /// Encodes the pending command and every command waiting in the channel, until the
    /// write buffer holds [`WRITE_BATCH`] bytes or a command must wait (window, packet ids).
    fn take_commands(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<BrokerCommand>,
        queued: &AtomicUsize,
        inbound: &mut Inbound,
        outbound: &mut Outbound,
    ) -> Result<(), End> {
        while self.out.len() < WRITE_BATCH {
            let command = match self.pending.take() {
                Some(command) => command,
                None => match try_take(commands, queued)? {
                    Some(command) => command,
                    None => return Ok(()),
                },
            };
            if let Err(command) = self.start(command, inbound, outbound) {
                self.pending = Some(command);
                return Ok(());
            }
        }
        Ok(())
    }

    /// Encodes one command into the write buffer; gives it back when it must wait.
    fn start(
        &mut self,
        command: BrokerCommand,
        inbound: &mut Inbound,
        outbound: &mut Outbound,
    ) -> Result<(), BrokerCommand> {
        if !valid_request(&command) {
            // The broker would close the connection over it, and the core's replay would
            // send it again after every reconnect. The core refuses such names before they
            // get here; were one to slip through, it is dropped and logged.
            error!(?command, "dropped a broker request with an invalid MQTT topic or filter (a gateway bug: the core should have refused it)");
            return Ok(());
        }
        match command {
            BrokerCommand::Publish(publish) => {
                if publish.qos == MqttQoS::AtMostOnce {
                    let mut packet =
                        Publish::from_bytes(&*publish.topic, QoS::AtMostOnce, publish.payload);
                    packet.retain = publish.retain;
                    self.encode(&Packet::Publish(packet));
                    return Ok(());
                }
                let qos2 = publish.qos == MqttQoS::ExactlyOnce;
                if qos2 {
                    if let Some(id) = publish.id {
                        if outbound.finished.remove(&id) {
                            // Its carried exchange ended and the core was told.
                            return Ok(());
                        }
                        if let Some(pkid) = outbound.carried.remove(&id) {
                            self.resume(pkid, &publish, outbound);
                            return Ok(());
                        }
                    }
                    if self.outstanding_qos2 >= self.window_qos2 && outbound.unblock() {
                        self.outstanding_qos2 = outbound.outstanding();
                    }
                }
                if publish.id.is_some()
                    && (self.outstanding() >= self.window
                        || (qos2 && self.outstanding_qos2 >= self.window_qos2))
                {
                    return Err(BrokerCommand::Publish(publish));
                }
                let Some(pkid) = self.ids.take() else {
                    return Err(BrokerCommand::Publish(publish));
                };
                if self.outstanding() == 0 {
                    // The watchdog measures from the first publish waiting, not from the
                    // last acknowledgement before an idle spell.
                    self.last_progress = Instant::now();
                }
                let mut packet = Publish::from_bytes(
                    &*publish.topic,
                    to_codec(publish.qos),
                    publish.payload.clone(),
                );
                packet.retain = publish.retain;
                packet.pkid = pkid;
                self.encode(&Packet::Publish(packet));
                if qos2 {
                    let exchange = Exchange {
                        id: publish.id,
                        stage: Stage::Sent,
                    };
                    outbound.exchanges.insert(pkid, exchange);
                    self.outstanding_qos2 = outbound.outstanding();
                } else {
                    self.unacked.insert(pkid, publish.id);
                }
            }
            BrokerCommand::Subscribe { filter, qos } => {
                let Some(pkid) = self.ids.take() else {
                    return Err(BrokerCommand::Subscribe { filter, qos });
                };
                let mut packet = Subscribe::new(&*filter, to_codec(qos));
                packet.pkid = pkid;
                self.encode(&Packet::Subscribe(packet));
                self.subscribes.insert(pkid, filter);
            }
            BrokerCommand::Unsubscribe { filter } => {
                let Some(pkid) = self.ids.take() else {
                    return Err(BrokerCommand::Unsubscribe { filter });
                };
                let mut packet = Unsubscribe::new(&*filter);
                packet.pkid = pkid;
                self.encode(&Packet::Unsubscribe(packet));
                self.unsubscribes.insert(pkid, ());
            }
            BrokerCommand::Ack { delivery } => {
                // Unknown: from an earlier connection without the broker's session; the
                // broker redelivers it if it must.
                if let Some(answer) = inbound.acknowledge(delivery.0) {
                    self.encode(&answer);
                }
            }
            // The connection's own lifecycle is the runtime's (it opens and closes the
            // link); the core sends these only on a mote's route, where the runtime carries
            // them out before they could reach an open connection.
            BrokerCommand::Connect { .. } | BrokerCommand::Close { .. } => {
                debug!("connection command on an open connection: ignored");
            }
        }
        Ok(())
    }

    /// The core's replay of a QoS 2 publish whose exchange an earlier connection began under
    /// `pkid` (MQTT 3.1.1 §4.4): still awaiting PUBREC, it goes out again with that id and
    /// DUP; released (PUBREL already written at the start), nothing goes out: PUBCOMP
    /// completes it for the core.
    fn resume(&mut self, pkid: u16, publish: &UplinkPublish, outbound: &mut Outbound) {
        let Some(exchange) = outbound.exchanges.get_mut(&pkid) else {
            return;
        };
        if exchange.stage != Stage::Carried {
            return;
        }
        exchange.stage = Stage::Sent;
        if self.outstanding() == 0 {
            self.last_progress = Instant::now();
        }
        let mut packet =
            Publish::from_bytes(&*publish.topic, QoS::ExactlyOnce, publish.payload.clone());
        packet.retain = publish.retain;
        packet.pkid = pkid;
        packet.dup = true;
        self.encode(&Packet::Publish(packet));
    }

    /// Handles every complete packet in the read buffer, in order, sending the core its
    /// events (waiting for room: a full event queue stops the connection, which stops
    /// reading from the broker) and queueing the answers the broker expects.
    async fn handle_input(
        &mut self,
        events: &mpsc::Sender<BrokerEvent>,
        inbound: &mut Inbound,
        outbound: &mut Outbound,
    ) -> Result<(), End> {
        let mut acked = false;
        loop {
            let packet = match Packet::read(&mut self.input, MAX_MQTT_PACKET) {
                Ok(packet) => packet,
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(e) => {
                    warn!(error = %e, "malformed packet from the broker; reconnecting");
                    return Err(End::Reconnect);
                }
            };
            let event = match packet {
                Packet::PubAck(ack) => {
                    acked = true;
                    self.unacked
                        .remove(&ack.pkid)
                        .inspect(|_| self.ids.free(ack.pkid))
                }
                Packet::PubRec(rec) => {
                    acked = true;
                    if let Some(exchange) = outbound.exchanges.get_mut(&rec.pkid) {
                        // A carried one too (the broker answered a PUBLISH it had): its
                        // replay then sends nothing.
                        exchange.stage = Stage::Released;
                    }
                    // Answered whether or not it is known: the broker waits for it.
                    self.encode(&Packet::PubRel(PubRel::new(rec.pkid)));
                    None
                }
                // QoS 2 counts as held once complete: if the connection dropped between
                // PUBREC and PUBCOMP, replaying it risks a duplicate, never a loss.
                Packet::PubComp(comp) => {
                    acked = true;
                    if outbound.orphans.remove(&comp.pkid) {
                        self.ids.free(comp.pkid);
                    }
                    match outbound.exchanges.remove(&comp.pkid) {
                        Some(exchange) => {
                            self.ids.free(comp.pkid);
                            self.outstanding_qos2 = outbound.outstanding();
                            if let Some(id) = exchange.id {
                                if outbound.carried.remove(&id).is_some() {
                                    // Done before the core's replay of it came.
                                    outbound.finished.insert(id);
                                }
                            }
                            Some(exchange.id)
                        }
                        None => None,
                    }
                }
                Packet::SubAck(ack) => {
                    acked = true;
                    match self.subscribes.remove(&ack.pkid) {
                        Some(filter) => {
                            self.ids.free(ack.pkid);
                            let granted = match ack.return_codes.first() {
                                Some(SubscribeReasonCode::Success(qos)) => Some(from_codec(*qos)),
                                _ => None,
                            };
                            if granted.is_none() {
                                warn!(%filter, "broker refused the subscription");
                            }
                            let event = BrokerEvent::SubAck { filter, granted };
                            if events.send(event).await.is_err() {
                                return Err(End::Shutdown);
                            }
                        }
                        None => debug!(pkid = ack.pkid, "SUBACK for no SUBSCRIBE: ignored"),
                    }
                    None
                }
                Packet::UnsubAck(ack) => {
                    acked = true;
                    if self.unsubscribes.remove(&ack.pkid).is_some() {
                        self.ids.free(ack.pkid);
                    }
                    None
                }
                Packet::PubRel(rel) => {
                    inbound.release(rel.pkid);
                    self.encode(&Packet::PubComp(PubComp::new(rel.pkid)));
                    None
                }
                Packet::PingResp => {
                    self.ping_outstanding = false;
                    None
                }
                Packet::Publish(publish) => {
                    let delivery = if publish.qos == QoS::AtMostOnce {
                        None
                    } else {
                        match inbound.receive(publish.pkid, publish.qos) {
                            Received::New(id) => Some(id),
                            Received::Repeat { pubrec } => {
                                debug!(
                                    pkid = publish.pkid,
                                    dup = publish.dup,
                                    "QoS 2 PUBLISH resent by the broker: not delivered again"
                                );
                                if pubrec {
                                    self.encode(&Packet::PubRec(PubRec::new(publish.pkid)));
                                }
                                continue;
                            }
                        }
                    };
                    // The payload stays a slice of the read buffer: measured with 100 000
                    // sleeping motes, copying it out costs more memory (a shared allocation
                    // per message once cloned for its targets) than the buffers it would free.
                    let message = BrokerEvent::Message {
                        topic: Arc::from(publish.topic),
                        payload: publish.payload,
                        qos: from_codec(publish.qos),
                        retain: publish.retain,
                        delivery,
                    };
                    if events.send(message).await.is_err() {
                        return Err(End::Shutdown);
                    }
                    None
                }
                other => {
                    debug!(packet = ?other, "unexpected packet from the broker: ignored");
                    None
                }
            };
            if let Some(Some(id)) = event {
                if events.send(BrokerEvent::PublishAcked { id }).await.is_err() {
                    return Err(End::Shutdown);
                }
            }
        }
        if acked {
            self.last_progress = Instant::now();
        }
        Ok(())
    }
}

/// One poll of the socket: writes what the write buffer holds (then flushes, for TLS),
/// and reads what the socket has. Ready when either made progress; never loses data when
/// dropped, so it can sit in a `select!`: a write or read that returned `Pending` did
/// nothing, and one that completed is accounted for before returning.
fn io_turn<S>(
    cx: &mut std::task::Context<'_>,
    stream: &mut S,
    out: &mut BytesMut,
    flushed: &mut bool,
    input: &mut BytesMut,
) -> Poll<io::Result<IoTurn>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut progressed = false;
    while !out.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, out) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                *flushed = false;
                progressed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    // A TLS stream may hold records back until flushed; a TCP stream's flush does nothing.
    if out.is_empty() && !*flushed {
        match Pin::new(&mut *stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                *flushed = true;
                progressed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    if input.capacity() - input.len() < READ_CHUNK / 4 {
        input.reserve(READ_CHUNK);
    }
    let read = match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, input) {
        Poll::Ready(Ok(0)) => {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            )))
        }
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => 0,
    };
    if progressed || read > 0 {
        Poll::Ready(Ok(IoTurn { read }))
    } else {
        Poll::Pending
    }
}

fn to_codec(qos: MqttQoS) -> QoS {
    match qos {
        MqttQoS::AtMostOnce => QoS::AtMostOnce,
        MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
        MqttQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_codec(qos: QoS) -> MqttQoS {
    match qos {
        QoS::AtMostOnce => MqttQoS::AtMostOnce,
        QoS::AtLeastOnce => MqttQoS::AtLeastOnce,
        QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::task::Context;

    use bytes::Bytes;
    use sn_config::BrokerConfig;
    use tokio::io::{AsyncReadExt, DuplexStream, ReadBuf};

    use crate::core::UplinkPublish;

    /// A stream that counts the writes that took bytes.
    struct Counting {
        inner: DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = &polled {
                if *n > 0 {
                    self.writes.fetch_add(1, Ordering::SeqCst);
                }
            }
            polled
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Every command waiting when the connection turns goes out in one write (issue 17:
    /// rumqttc wrote each alone), as valid MQTT, in order, with QoS 1 ids from 1.
    #[tokio::test]
    async fn the_commands_waiting_go_out_in_one_write() {
        let (ours, mut broker) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let stream = Counting {
            inner: ours,
            writes: writes.clone(),
        };
        let config = BrokerLinkConfig {
            options: BrokerConfig::plain(([127, 0, 0, 1], 1883).into()),
            tls: None,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (events, _events_rx) = mpsc::channel(16);
        let queued = AtomicUsize::new(0);
        for i in 0..100u64 {
            tx.send(BrokerCommand::Publish(UplinkPublish {
                id: Some(PublishId(i)),
                topic: Arc::from("t/x"),
                payload: Bytes::from(vec![b'p'; 20]),
                qos: if i % 2 == 0 {
                    MqttQoS::AtLeastOnce
                } else {
                    MqttQoS::AtMostOnce
                },
                retain: false,
                replay: false,
            }))
            .unwrap();
        }
        let task = tokio::spawn(async move {
            let mut inbound = Inbound::default();
            Connection::new(&config, BytesMut::new(), &Outbound::default())
                .run(
                    stream,
                    &mut rx,
                    &events,
                    &queued,
                    &mut inbound,
                    &mut Outbound::default(),
                )
                .await
        });
        let mut input = BytesMut::new();
        let mut publishes = Vec::new();
        while publishes.len() < 100 {
            broker.read_buf(&mut input).await.unwrap();
            while let Ok(packet) = Packet::read(&mut input, MAX_MQTT_PACKET) {
                match packet {
                    Packet::Publish(p) => publishes.push(p),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        let ids: Vec<u16> = publishes.iter().map(|p| p.pkid).collect();
        let expected: Vec<u16> = (0..100u16)
            .map(|i| if i % 2 == 0 { i / 2 + 1 } else { 0 })
            .collect();
        assert_eq!(ids, expected);
        assert!(publishes
            .iter()
            .all(|p| p.topic == "t/x" && p.payload.len() == 20));
        drop(tx);
        assert!(matches!(task.await.unwrap(), End::Shutdown));
    }

    /// Reads packets from the gateway until `want` of them came.
    async fn read_packets(
        broker: &mut DuplexStream,
        input: &mut BytesMut,
        want: usize,
    ) -> Vec<Packet> {
        let mut packets = Vec::new();
        while packets.len() < want {
            while let Ok(packet) = Packet::read(input, MAX_MQTT_PACKET) {
                packets.push(packet);
            }
            if packets.len() < want {
                broker.read_buf(input).await.unwrap();
            }
        }
        packets
    }

    /// Writes `packets` as the broker.
    async fn write_packets(broker: &mut DuplexStream, packets: &[Packet]) {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.write(&mut out, MAX_MQTT_PACKET).unwrap();
        }
        tokio::io::AsyncWriteExt::write_all(broker, &out)
            .await
            .unwrap();
    }

    fn qos2(pkid: u16, dup: bool, payload: &'static [u8]) -> Packet {
        let mut publish = Publish::new("t/q2", QoS::ExactlyOnce, payload);
        publish.pkid = pkid;
        publish.dup = dup;
        Packet::Publish(publish)
    }

    /// A QoS 2 PUBLISH the broker resends with DUP and the same packet id before PUBREL is
    /// the same message (MQTT 3.1.1 4.3.3, method B): handed to the core once, answered
    /// with PUBREC again once the core holds it, and the id is new only after PUBREL. Across
    /// a reconnect that finds the broker's session too.
    #[tokio::test]
    async fn a_resent_qos2_publish_reaches_the_core_once() {
        let config = BrokerLinkConfig {
            options: BrokerConfig::plain(([127, 0, 0, 1], 1883).into()),
            tls: None,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (events, mut events_rx) = mpsc::channel(16);
        let (ours, mut broker) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            let queued = AtomicUsize::new(0);
            let mut inbound = Inbound::default();
            let first = Connection::new(&config, BytesMut::new(), &Outbound::default())
                .run(
                    ours,
                    &mut rx,
                    &events,
                    &queued,
                    &mut inbound,
                    &mut Outbound::default(),
                )
                .await;
            (first, rx, events, config, inbound)
        });
        let mut input = BytesMut::new();
        // Sent twice before the core answered: one message for the core.
        write_packets(&mut broker, &[qos2(7, false, b"a"), qos2(7, true, b"a")]).await;
        let Some(BrokerEvent::Message {
            delivery: Some(first),
            payload,
            ..
        }) = events_rx.recv().await
        else {
            panic!("no message");
        };
        assert_eq!(&payload[..], b"a");
        // The core holds it: PUBREC. The broker resends the PUBLISH again (it did not see
        // the PUBREC, say): PUBREC again, nothing for the core.
        tx.send(BrokerCommand::Ack { delivery: first }).unwrap();
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubRec(PubRec::new(7))]
        );
        write_packets(&mut broker, &[qos2(7, true, b"a")]).await;
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubRec(PubRec::new(7))]
        );
        // PUBREL ends it: the id then carries a new message.
        write_packets(
            &mut broker,
            &[Packet::PubRel(PubRel::new(7)), qos2(7, false, b"b")],
        )
        .await;
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubComp(PubComp::new(7))]
        );
        let Some(BrokerEvent::Message {
            delivery: Some(second),
            payload,
            ..
        }) = events_rx.recv().await
        else {
            panic!("no second message");
        };
        assert_ne!(second, first);
        assert_eq!(&payload[..], b"b");
        // The connection drops before the core answers; the next one finds the session and
        // the broker resends the PUBLISH with DUP: not for the core again, and the core's
        // acknowledgement of the first delivery sends the PUBREC on the new connection.
        drop(broker);
        let (end, mut rx, events, config, mut inbound) = task.await.unwrap();
        assert!(matches!(end, End::Reconnect));
        inbound.connected(true);
        let (ours, mut broker) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            let queued = AtomicUsize::new(0);
            Connection::new(&config, BytesMut::new(), &Outbound::default())
                .run(
                    ours,
                    &mut rx,
                    &events,
                    &queued,
                    &mut inbound,
                    &mut Outbound::default(),
                )
                .await
        });
        let mut input = BytesMut::new();
        let mut other = Publish::new("t/q1", QoS::AtLeastOnce, &b"c"[..]);
        other.pkid = 8;
        write_packets(&mut broker, &[qos2(7, true, b"b"), Packet::Publish(other)]).await;
        // What the core gets next is the message behind the resend, not the resend.
        let Some(BrokerEvent::Message { payload, .. }) = events_rx.recv().await else {
            panic!("no message behind the resend");
        };
        assert_eq!(&payload[..], b"c", "the resend reached the core");
        tx.send(BrokerCommand::Ack { delivery: second }).unwrap();
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubRec(PubRec::new(7))]
        );
        write_packets(&mut broker, &[Packet::PubRel(PubRel::new(7))]).await;
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubComp(PubComp::new(7))]
        );
        drop(tx);
        assert!(matches!(task.await.unwrap(), End::Shutdown));
        // Nothing more reached the core.
        assert!(events_rx.try_recv().is_err(), "a resend reached the core");
    }

    /// What a link keeps across its connections, moved into a connection's task and back.
    struct LinkState {
        rx: mpsc::UnboundedReceiver<BrokerCommand>,
        events: mpsc::Sender<BrokerEvent>,
        config: BrokerLinkConfig,
        inbound: Inbound,
        outbound: Outbound,
    }

    /// Runs one connection over a new in-memory stream; the other end is the broker's.
    fn connect(mut link: LinkState) -> (DuplexStream, tokio::task::JoinHandle<(End, LinkState)>) {
        let (ours, broker) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            let queued = AtomicUsize::new(0);
            let connection = Connection::new(&link.config, BytesMut::new(), &link.outbound);
            let end = connection
                .run(
                    ours,
                    &mut link.rx,
                    &link.events,
                    &queued,
                    &mut link.inbound,
                    &mut link.outbound,
                )
                .await;
            (end, link)
        });
        (broker, task)
    }

    /// A link with `max_inflight_qos2` = `qos2`, its command sender and its event receiver.
    fn link_state(
        qos2: u16,
    ) -> (
        LinkState,
        mpsc::UnboundedSender<BrokerCommand>,
        mpsc::Receiver<BrokerEvent>,
    ) {
        let mut options = BrokerConfig::plain(([127, 0, 0, 1], 1883).into());
        options.max_inflight_qos2 = qos2;
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(64);
        let link = LinkState {
            rx,
            events,
            config: BrokerLinkConfig { options, tls: None },
            inbound: Inbound::default(),
            outbound: Outbound::default(),
        };
        (link, tx, events_rx)
    }

    /// The core's QoS 2 publish `id` (a replay when `replay`), payload "m<id>".
    fn core_qos2(id: u64, replay: bool) -> BrokerCommand {
        BrokerCommand::Publish(UplinkPublish {
            id: Some(PublishId(id)),
            topic: Arc::from("t/up"),
            payload: Bytes::from(format!("m{id}")),
            qos: MqttQoS::ExactlyOnce,
            retain: false,
            replay,
        })
    }

    /// The packet id, DUP flag and payload of a PUBLISH; panics on anything else.
    fn published(packet: &Packet) -> (u16, bool, Vec<u8>) {
        match packet {
            Packet::Publish(p) => (p.pkid, p.dup, p.payload.to_vec()),
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    /// Nothing more is written for a while.
    async fn nothing_written(broker: &mut DuplexStream, input: &mut BytesMut) {
        let read = tokio::time::timeout(Duration::from_millis(300), broker.read_buf(input)).await;
        assert!(
            read.is_err() && input.is_empty(),
            "unexpected bytes from the gateway: {:?}",
            Packet::read(input, MAX_MQTT_PACKET)
        );
    }

    /// The broker answers `pkid` with PUBREC; the gateway's PUBREL follows.
    async fn pubrec_answered_with_pubrel(
        broker: &mut DuplexStream,
        input: &mut BytesMut,
        pkid: u16,
    ) {
        write_packets(broker, &[Packet::PubRec(PubRec::new(pkid))]).await;
        assert_eq!(
            read_packets(broker, input, 1).await,
            vec![Packet::PubRel(PubRel::new(pkid))]
        );
    }

    /// The broker drops the connection: the connection ends for a reconnect and hands back
    /// the link's state.
    async fn dropped(
        broker: DuplexStream,
        task: tokio::task::JoinHandle<(End, LinkState)>,
    ) -> LinkState {
        drop(broker);
        let (end, link) = task.await.unwrap();
        assert!(matches!(end, End::Reconnect));
        link
    }

    /// The core is told `id` is complete, and of nothing else.
    async fn completed(events_rx: &mut mpsc::Receiver<BrokerEvent>, id: u64) {
        let event = tokio::time::timeout(Duration::from_secs(5), events_rx.recv())
            .await
            .unwrap();
        assert_eq!(event, Some(BrokerEvent::PublishAcked { id: PublishId(id) }));
    }

    /// broker.max_inflight_qos2 bounds QoS 2 publishes between PUBLISH and PUBCOMP (issue
    /// 18: mosquitto discards one beyond its own limit after answering PUBREC): a third
    /// one waits for a PUBCOMP, a PUBREC is not enough.
    #[tokio::test]
    async fn qos2_publishes_beyond_the_quota_wait_for_pubcomp() {
        let (link, tx, mut events_rx) = link_state(2);
        for id in 1..=3 {
            tx.send(core_qos2(id, false)).unwrap();
        }
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let first = read_packets(&mut broker, &mut input, 2).await;
        assert_eq!(first.len(), 2);
        assert_eq!(published(&first[0]), (1, false, b"m1".to_vec()));
        assert_eq!(published(&first[1]), (2, false, b"m2".to_vec()));
        nothing_written(&mut broker, &mut input).await;
        pubrec_answered_with_pubrel(&mut broker, &mut input, 1).await;
        nothing_written(&mut broker, &mut input).await;
        write_packets(&mut broker, &[Packet::PubComp(PubComp::new(1))]).await;
        let third = read_packets(&mut broker, &mut input, 1).await;
        assert_eq!(third.len(), 1);
        assert_eq!(published(&third[0]), (3, false, b"m3".to_vec()));
        completed(&mut events_rx, 1).await;
        drop(tx);
        assert!(matches!(task.await.unwrap().0, End::Shutdown));
    }

    /// PUBREC came, the connection dropped before PUBCOMP, the broker kept the session
    /// (MQTT 3.1.1 §4.4): PUBREL with the same id goes first, the core's replay of the
    /// message is not published again (the broker would deliver it twice), and PUBCOMP
    /// completes it for the core. The id is not given to another message meanwhile.
    #[tokio::test]
    async fn a_released_qos2_publish_is_finished_with_pubrel_after_a_reconnect() {
        let (link, tx, mut events_rx) = link_state(10);
        tx.send(core_qos2(5, false)).unwrap();
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let sent = read_packets(&mut broker, &mut input, 1).await;
        assert_eq!(published(&sent[0]), (1, false, b"m5".to_vec()));
        pubrec_answered_with_pubrel(&mut broker, &mut input, 1).await;
        let mut link = dropped(broker, task).await;

        link.outbound.connected(true);
        // The core replays what is incomplete, then goes on with a new message.
        tx.send(core_qos2(5, true)).unwrap();
        tx.send(core_qos2(6, false)).unwrap();
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let resumed = read_packets(&mut broker, &mut input, 2).await;
        assert_eq!(resumed.len(), 2, "{resumed:?}");
        assert_eq!(resumed[0], Packet::PubRel(PubRel::new(1)));
        assert_eq!(published(&resumed[1]), (2, false, b"m6".to_vec()));
        nothing_written(&mut broker, &mut input).await;
        write_packets(&mut broker, &[Packet::PubComp(PubComp::new(1))]).await;
        completed(&mut events_rx, 5).await;
        drop(tx);
        assert!(matches!(task.await.unwrap().0, End::Shutdown));
        assert!(events_rx.try_recv().is_err());
    }

    /// A QoS 2 publish awaiting PUBREC when the connection dropped, the broker kept the
    /// session: the core's replay goes out with the same packet id and DUP, and a new
    /// message does not get that id.
    #[tokio::test]
    async fn an_unanswered_qos2_publish_is_resent_with_its_id_and_dup() {
        let (link, tx, mut events_rx) = link_state(10);
        tx.send(core_qos2(5, false)).unwrap();
        tx.send(core_qos2(6, false)).unwrap();
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let sent = read_packets(&mut broker, &mut input, 2).await;
        assert_eq!(published(&sent[0]), (1, false, b"m5".to_vec()));
        assert_eq!(published(&sent[1]), (2, false, b"m6".to_vec()));
        // 6 completes; 5 is still unanswered at the drop.
        pubrec_answered_with_pubrel(&mut broker, &mut input, 2).await;
        write_packets(&mut broker, &[Packet::PubComp(PubComp::new(2))]).await;
        completed(&mut events_rx, 6).await;
        let mut link = dropped(broker, task).await;

        link.outbound.connected(true);
        tx.send(core_qos2(5, true)).unwrap();
        tx.send(core_qos2(7, false)).unwrap();
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let resumed = read_packets(&mut broker, &mut input, 2).await;
        assert_eq!(resumed.len(), 2, "{resumed:?}");
        assert_eq!(published(&resumed[0]), (1, true, b"m5".to_vec()));
        assert_eq!(published(&resumed[1]), (2, false, b"m7".to_vec()));
        write_packets(
            &mut broker,
            &[
                Packet::PubRec(PubRec::new(1)),
                Packet::PubComp(PubComp::new(1)),
            ],
        )
        .await;
        assert_eq!(
            read_packets(&mut broker, &mut input, 1).await,
            vec![Packet::PubRel(PubRel::new(1))]
        );
        completed(&mut events_rx, 5).await;
        drop(tx);
        assert!(matches!(task.await.unwrap().0, End::Shutdown));
    }

    /// The broker did not keep the session: it holds nothing of the old exchanges, so no
    /// PUBREL goes out and the core's replays are new messages with new ids.
    #[tokio::test]
    async fn without_the_session_replays_are_new_messages() {
        let (link, tx, mut events_rx) = link_state(10);
        for id in [5, 6, 7] {
            tx.send(core_qos2(id, false)).unwrap();
        }
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let sent = read_packets(&mut broker, &mut input, 3).await;
        assert_eq!(published(&sent[2]), (3, false, b"m7".to_vec()));
        pubrec_answered_with_pubrel(&mut broker, &mut input, 2).await;
        let mut link = dropped(broker, task).await;

        link.outbound.connected(false);
        for id in [6, 5, 7] {
            tx.send(core_qos2(id, true)).unwrap();
        }
        let (mut broker, task) = connect(link);
        let mut input = BytesMut::new();
        let resumed = read_packets(&mut broker, &mut input, 3).await;
        assert_eq!(resumed.len(), 3, "{resumed:?}");
        assert_eq!(published(&resumed[0]), (1, false, b"m6".to_vec()));
        assert_eq!(published(&resumed[1]), (2, false, b"m5".to_vec()));
        assert_eq!(published(&resumed[2]), (3, false, b"m7".to_vec()));
        pubrec_answered_with_pubrel(&mut broker, &mut input, 1).await;
        write_packets(&mut broker, &[Packet::PubComp(PubComp::new(1))]).await;
        completed(&mut events_rx, 6).await;
        drop(tx);
        assert!(matches!(task.await.unwrap().0, End::Shutdown));
    }

    #[test]
    fn packet_ids_skip_those_in_use_and_zero() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.take(), Some(1));
        assert_eq!(ids.take(), Some(2));
        ids.free(1);
        ids.last = u16::MAX - 1;
        assert_eq!(ids.take(), Some(u16::MAX));
        // 0 is never an id; 1 is free again, 2 is still in use.
        assert_eq!(ids.take(), Some(1));
        assert_eq!(ids.take(), Some(3));
        ids.free(2);
        ids.free(2);
        assert_eq!(ids.in_use, 3);
    }

    #[test]
    fn packet_ids_run_out_and_come_back() {
        let mut ids = PacketIds::new();
        for _ in 0..u16::MAX {
            assert!(ids.take().is_some());
        }
        assert_eq!(ids.take(), None);
        ids.free(777);
        assert_eq!(ids.take(), Some(777));
    }
}
