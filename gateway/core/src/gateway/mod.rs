//! The [`Gateway`] state machine: its state, the public feed/poll API, and the plumbing the
//! protocol handlers (in the sibling modules) share: sessions, timers and outputs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use sn_codec::v12::{Forwarded, Frame, Packet};
use tracing::trace;

use crate::broker::{BrokerCommand, BrokerEvent, BrokerRoute, PublishId};
use crate::config::CoreConfig;
use crate::durability::{AckGate, BatchId, StoreBatch};
use crate::events::{Event, LostReason, Metrics};
use crate::outbox::Outbox;
use crate::outputs::{BrokerQueue, Marks, Transmits};
use crate::peer::{ClientAddr, Destination, LinkId, Peer, Transmit};
use crate::policy::{Denied, Policy};
use crate::quotas::{ConnectLimiter, Meter, Pool};
use crate::session::{Session, SessionIdx, State};
use crate::sessions::SessionTable;
pub(crate) use crate::sessions::TimerKind;
use crate::topics::Predefined;
use crate::upstream::Upstream;

use persist::Persistence;

mod connection;
mod discovery;
mod downlink;
mod fallback;
mod persist;
mod policy_reload;
mod presence;
mod spool;
mod subscriptions;
mod transparent;
mod uplink;

pub use persist::{
    Restored, SessionRecord, StoreOp, StoredMessage, StoredRoute, StoredState, StoredSubKind,
    StoredSubscription, StoredWill,
};
pub use policy_reload::{PolicyChange, Revoked};

/// The MQTT-SN gateway protocol engine, free of I/O: feed it datagrams, broker events and the
/// time; poll it for datagrams, broker commands, its next deadline and events.
///
/// # The polling contract
///
/// A runtime drives it in turns. In each turn:
///
/// 1. **Feed** what happened, each with the current time: [`Gateway::handle_datagram`],
///    [`Gateway::handle_delivery_failure`], [`Gateway::handle_broker`] (with the route the
///    event came from), and [`Gateway::handle_timeout`] once [`Gateway::poll_timeout`]'s
///    deadline has passed (early calls are harmless). `now` never goes backwards: take it
///    from a monotonic clock. The core reads no clock itself.
/// 2. **Store**: [`Gateway::poll_store`] hands out the turn's state changes as one numbered
///    batch; write it in one transaction, then report it with [`Gateway::handle_stored`]
///    (without a store, report it at once). Until then the core holds back every datagram and
///    broker command queued before the batch, since they may acknowledge what the batch holds:
///    that is how "nothing is acknowledged before the next hop holds it" is kept, whatever the
///    runtime does. A write that fails is retried later with the same ops; new batches wait
///    behind it.
/// 3. **Send**: drain [`Gateway::poll_transmit`] (each datagram is written into the caller's
///    buffer) and [`Gateway::poll_broker`] (each command with its route; `remote_ready` says
///    whether the remote broker's link takes more now), then [`Gateway::poll_event`] for logs.
/// 4. **Sleep** until the earliest of [`Gateway::poll_timeout`] and the next input.
///
/// Outputs left unpolled stay queued; the only ones the core sheds are QoS 0 PUBLISHes for a
/// broker that does not keep up (`max_pending_qos0`), counted in [`Metrics`].
#[derive(Debug)]
pub struct Gateway {
    config: CoreConfig,
    predefined: Predefined,
    /// Admission, topic rules and mountpoints.
    policy: Policy,
    /// CONNECTs per second per source.
    connects: ConnectLimiter,
    /// Bytes queued for clients, all sessions together.
    queued: std::sync::Arc<Pool>,
    /// Bytes sessions hold besides their queues (client ids, names, filters, Wills).
    held: std::sync::Arc<Pool>,
    /// Sessions, their indexes by client id and address, and their timers.
    sessions: SessionTable,
    upstream: Upstream,
    /// Uplink messages the broker has not acknowledged, and the spool's bookkeeping.
    outbox: Outbox,
    broker_up: bool,
    /// The fallback (local) broker link is connected; see [`fallback`].
    fallback_up: bool,
    discovery_links: Vec<LinkId>,
    next_advertise: Option<Instant>,
    /// Datagrams waiting for [`Gateway::poll_transmit`].
    transmits: Transmits,
    /// Commands for every broker route, waiting for [`Gateway::poll_broker`].
    broker_queue: BrokerQueue,
    /// A drop at `max_pending_qos0` was reported; cleared once the backlog has drained.
    pending_qos0_full_reported: bool,
    /// Holds outputs back until the store batches they depend on are written.
    gate: AckGate,
    /// Client ids assigned to motes that sent an empty one, so far.
    assigned_ids: u64,
    /// The latest presence message of each live session still held for the broker, by topic
    /// (see [`presence`]); at most one per session.
    presence_pending: std::collections::HashMap<Arc<str>, PublishId>,
    events: VecDeque<Event>,
    metrics: Metrics,
    persistence: Persistence,
}

/// Events kept for the runtime before the oldest is dropped (it polls them after every call,
/// so this only bounds memory if a runtime forgets to).
const MAX_EVENTS: usize = 4096;

impl Gateway {
    /// A gateway with no sessions, its broker link down.
    pub fn new(config: CoreConfig) -> Self {
        Gateway {
            predefined: Predefined::new(&config.predefined_topics),
            policy: Policy::new(&config.policy, config.roaming),
            connects: ConnectLimiter::new(config.connect_rate),
            queued: std::sync::Arc::default(),
            held: std::sync::Arc::default(),
            config,
            sessions: SessionTable::default(),
            upstream: Upstream::default(),
            outbox: Outbox::default(),
            broker_up: false,
            fallback_up: false,
            discovery_links: Vec::new(),
            next_advertise: None,
            transmits: Transmits::default(),
            broker_queue: BrokerQueue::default(),
            pending_qos0_full_reported: false,
            gate: AckGate::default(),
            assigned_ids: 0,
            presence_pending: std::collections::HashMap::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            persistence: Persistence::default(),
        }
    }

    /// Declares a link whose discovery address gets ADVERTISE (and GWINFO answers).
    pub fn add_discovery_link(&mut self, link: LinkId) {
        if !self.discovery_links.contains(&link) {
            self.discovery_links.push(link);
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: Peer, datagram: &[u8]) {
        self.receive(now, from, None, datagram);
    }

    /// A datagram arrived from `from`, a peer the link authenticated as `identity` (DTLS: the
    /// PSK identity, or the client certificate's CN or SAN). The link has decrypted it; the
    /// core never sees keys or records. An identity speaks for the client id its `[[mote]]`
    /// entry allows, by default the one equal to it; a session it opened answers only to it.
    pub fn handle_authenticated_datagram(
        &mut self,
        now: Instant,
        from: Peer,
        identity: &Arc<str>,
        datagram: &[u8],
    ) {
        self.receive(now, from, Some(identity), datagram);
    }

    /// The link lost its (authenticated) connection with `peer`: a DTLS alert, or a peer
    /// that stopped answering. The session there ends as a lost client: its Will goes out.
    /// (A clean DISCONNECT has ended the session before the connection closes.)
    pub fn handle_peer_lost(&mut self, now: Instant, peer: Peer) {
        let addr = ClientAddr { peer, node: None };
        let Some(idx) = self.sessions.at(&addr) else {
            return;
        };
        self.end_session(now, idx, connection::Ending::Lost(LostReason::LinkLost));
    }

    /// The link's secure channel with `peer` was closed by the peer (a DTLS close_notify).
    /// After a DISCONNECT the session is already over and this does nothing; a connected
    /// mote that closes without one has gone without a word, so its session ends as lost
    /// and its Will goes out, as the MQTT-SN keep-alive would find later. A sleeping mote
    /// keeps its session: it may close its channel to sleep and handshake again to wake.
    pub fn handle_peer_closed(&mut self, now: Instant, peer: Peer) {
        let addr = ClientAddr { peer, node: None };
        let Some(idx) = self.sessions.at(&addr) else {
            return;
        };
        let connected = self.session(idx).is_some_and(|s| {
            matches!(
                s.state,
                crate::session::State::Active | crate::session::State::Handshake { .. }
            )
        });
        if connected {
            self.end_session(now, idx, connection::Ending::Lost(LostReason::LinkLost));
        }
    }

    /// The link moved its authenticated connection from `from` to `to` (DTLS Connection ID:
    /// the mote's NAT rebound its port, and a record it authenticated came from the new
    /// address). The session bound to `from` moves with it, if `identity` opened it: the mote
    /// goes on without a new CONNECT. Nothing else may move a session opened by an identity.
    pub fn handle_peer_moved(&mut self, _now: Instant, from: Peer, to: Peer, identity: &Arc<str>) {
        let old = ClientAddr {
            peer: from,
            node: None,
        };
        let new = ClientAddr {
            peer: to,
            node: None,
        };
        let Some(idx) = self.sessions.at(&old) else {
            return;
        };
        let owned = self
            .session(idx)
            .is_some_and(|s| s.identity.as_ref() == Some(identity));
        let taken = self.sessions.at(&new).is_some_and(|other| other != idx);
        if !owned || taken {
            self.metrics.peer_moves_refused += 1;
            return;
        }
        self.metrics.peer_moves += 1;
        trace!(from = %old, to = %new, "session follows its DTLS connection");
        self.rebind(idx, new);
    }

    fn receive(&mut self, now: Instant, from: Peer, identity: Option<&Arc<str>>, datagram: &[u8]) {
        self.metrics.datagrams_received += 1;
        if datagram.len() > self.config.max_packet_size {
            self.metrics.dropped_oversize += 1;
            trace!(peer = %from.addr, len = datagram.len(), "dropped: datagram over max_packet_size");
            return;
        }
        let (node, packet) = match Frame::decode(datagram) {
            Ok(Frame::Packet(packet)) => (None, packet),
            Ok(Frame::Forwarded(Forwarded {
                node_id, packet, ..
            })) => (Some(Box::from(node_id)), packet),
            Err(error) => {
                self.metrics.malformed += 1;
                trace!(peer = %from.addr, %error, "dropped: malformed datagram");
                return;
            }
        };
        let addr = ClientAddr { peer: from, node };
        trace!(client = %addr, ?packet, "received");
        self.dispatch(now, addr, identity, packet);
    }

    /// Something happened on a broker connection: the remote broker's, the fallback's, or a
    /// mote's own (transparent mode). Events for a mote without a session or a connection (a
    /// late event after it closed) are ignored.
    pub fn handle_broker(&mut self, now: Instant, route: BrokerRoute, event: BrokerEvent) {
        match route {
            BrokerRoute::Remote => self.on_remote_event(now, event),
            BrokerRoute::Fallback => self.on_fallback_event(now, event),
            BrokerRoute::Mote(client_id) => self.on_mote_event(now, &client_id, event),
        }
    }

    fn on_remote_event(&mut self, now: Instant, event: BrokerEvent) {
        match event {
            BrokerEvent::Connected { session_present } => {
                self.on_broker_connected(now, session_present)
            }
            BrokerEvent::Disconnected => self.on_broker_disconnected(now),
            BrokerEvent::PublishAcked { id } => self.on_uplink_acked(now, id),
            BrokerEvent::SubAck { filter, granted } => self.on_broker_suback(now, &filter, granted),
            BrokerEvent::Message {
                topic,
                payload,
                qos,
                retain,
                delivery,
            } => self.on_broker_message(now, topic, payload, qos, retain, delivery),
            // The gateway's own link never gives up (it reconnects); nothing to do.
            BrokerEvent::Refused(_) => {}
        }
    }

    /// The link reports that a datagram it sent to `to` did not arrive (an XBee transmit
    /// status other than success). Counted globally and for the session bound to `to`; the
    /// MQTT-SN retransmission timers recover anything that expected an answer, so nothing is
    /// resent here (the radio has already retried several times).
    pub fn handle_delivery_failure(&mut self, _now: Instant, to: Peer) {
        self.metrics.link_undelivered += 1;
        let addr = ClientAddr {
            peer: to,
            node: None,
        };
        let idx = self.sessions.at(&addr);
        if let Some(session) = idx.and_then(|idx| self.session_mut(idx)) {
            session.undelivered += 1;
            trace!(client_id = %session.client_id, peer = %to.addr, "link reports a datagram undelivered");
        } else {
            trace!(peer = %to.addr, "link reports a datagram undelivered to a peer without a session");
        }
    }

    /// Time has reached a deadline from [`Gateway::poll_timeout`] (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((idx, kind)) = self.sessions.pop_due(now) {
            match kind {
                TimerKind::Silence => self.on_silence_timer(now, idx),
                TimerKind::Retry => self.on_retry_timer(now, idx),
            }
        }
        if self.next_advertise.is_some_and(|at| at <= now) {
            self.on_advertise_timer(now);
        }
    }

    /// The next datagram to send, once the store holds everything it depends on (see
    /// [`Gateway::poll_store`]): its bytes are appended to `buf`, and the [`Transmit`] says
    /// where they go and how many there are. Nothing is allocated per datagram: a runtime
    /// that takes each datagram out of `buf` (`BytesMut::split`) and keeps `buf` reuses its
    /// memory.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) -> Option<Transmit> {
        self.transmits.pop(self.gate.released().transmits, buf)
    }

    /// The next command for a broker connection, with its route, once the store holds
    /// everything it depends on (see [`Gateway::poll_store`]).
    ///
    /// `remote_ready`: whether the remote broker's link takes a command now. A runtime takes
    /// commands only as fast as the link takes them: while it cannot, the remote route's
    /// commands stay here, where QoS 0 PUBLISHes count against `max_pending_qos0`, so a
    /// broker slower than the motes makes the core shed QoS 0 messages, counted, instead of
    /// queueing without bound. The other routes' commands are never held up by it.
    #[must_use]
    pub fn poll_broker(&mut self, remote_ready: bool) -> Option<(BrokerRoute, BrokerCommand)> {
        let released = self.gate.released().commands;
        let (route, command) = self.broker_queue.pop(released, remote_ready)?;
        if self.broker_queue.remote_qos0() == 0 {
            self.pending_qos0_full_reported = false;
        }
        Some((route, command))
    }

    /// Commands waiting for the remote broker's link.
    pub fn broker_commands_waiting(&self) -> usize {
        self.broker_queue.remote_waiting()
    }

    /// State changes since the last call, as one batch to write in one transaction, or
    /// `None` when nothing changed. Every datagram and broker command queued before this
    /// call is held until the batch is reported written with [`Gateway::handle_stored`]
    /// (without a store, report it at once): so whatever a runtime does, no mote and no broker
    /// is told that something is safe before it is on disk.
    pub fn poll_store(&mut self) -> Option<StoreBatch> {
        let ops = self.drain_store_ops();
        let queued = Marks {
            transmits: self.transmits.mark(),
            commands: self.broker_queue.mark(),
        };
        let id = self.gate.seal(queued, !ops.is_empty())?;
        Some(StoreBatch { id, ops })
    }

    /// The batches up to `id` from [`Gateway::poll_store`] are written (in one transaction,
    /// or each in its own, in order): the outputs that waited for them are released.
    pub fn handle_stored(&mut self, id: BatchId) {
        self.gate.written(id);
    }

    /// Store batches handed out and not yet reported written.
    pub fn unwritten_batches(&self) -> usize {
        self.gate.unwritten()
    }

    /// The earliest deadline; call [`Gateway::handle_timeout`] when it is reached.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.sessions.next_deadline();
        match (timer, self.next_advertise) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, for logs and metrics.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters since start.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Sessions held (any state).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The gateway's gauges now, for a metrics endpoint: sessions by state, what waits for
    /// the motes and for the broker, and which broker serves. Walks every session (a scrape
    /// every few seconds, not a per-message cost).
    pub fn gauges(&self) -> Gauges {
        let mut gauges = Gauges {
            held_bytes: self.held_bytes(),
            queued_bytes: self.queued_bytes(),
            spooled: self.spooled(),
            spool_bytes: self.spool_bytes(),
            pending_uplink: self.pending_uplink(),
            broker_connected: self.broker_up,
            fallback_active: self.fallback_active(),
            ..Gauges::default()
        };
        for session in self.sessions.iter() {
            let count = match session_state(&session.state) {
                SessionState::Connecting => &mut gauges.sessions_connecting,
                SessionState::Active => &mut gauges.sessions_active,
                SessionState::Asleep => &mut gauges.sessions_asleep,
                SessionState::Awake => &mut gauges.sessions_awake,
                SessionState::Offline => &mut gauges.sessions_offline,
            };
            *count += 1;
            gauges.queued_messages += session.queue.len();
        }
        gauges
    }

    /// What the gateway holds for one client, by client id (for tests, metrics and admin).
    pub fn session_info(&self, client_id: &str) -> Option<SessionInfo> {
        let session = self.session(self.sessions.find(client_id)?)?;
        Some(SessionInfo {
            state: session_state(&session.state),
            queued: session.queue.len(),
            queued_bytes: session.queue.bytes(),
            dropped: session.dropped,
            undelivered: session.undelivered,
            subscriptions: session.subscriptions.len(),
        })
    }

    /// Uplink QoS 1/2 messages the broker has not acknowledged yet.
    pub fn pending_uplink(&self) -> usize {
        self.outbox.len()
    }

    // ---------------------------------------------------------------------------------------
    // Shared plumbing for the handlers.
    // ---------------------------------------------------------------------------------------

    pub(crate) fn session(&self, idx: SessionIdx) -> Option<&Session> {
        self.sessions.get(idx)
    }

    pub(crate) fn session_mut(&mut self, idx: SessionIdx) -> Option<&mut Session> {
        self.sessions.get_mut(idx)
    }

    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.sessions.next_epoch()
    }

    pub(crate) fn next_publish_id(&mut self) -> PublishId {
        self.outbox.next_id()
    }

    /// Stores a new session in a free slot.
    pub(crate) fn insert_session(&mut self, session: Session) -> SessionIdx {
        self.sessions.insert(session)
    }

    /// Frees a session's slot; the caller has already dropped its subscriptions.
    pub(crate) fn remove_session(&mut self, idx: SessionIdx) {
        if let Some(session) = self.sessions.remove(idx) {
            self.persist_removal(&session.client_id);
            self.forget_presence(&session.client_id);
        }
    }

    pub(crate) fn arm(&mut self, idx: SessionIdx, at: Instant, kind: TimerKind) {
        self.sessions.arm(idx, at, kind);
    }

    /// Arms the keep-alive / sleep supervision of a session if it has one.
    pub(crate) fn arm_silence(&mut self, idx: SessionIdx) {
        if let Some(at) = self.session(idx).and_then(Session::silence_deadline) {
            self.arm(idx, at, TimerKind::Silence);
        }
    }

    /// Counts a policy refusal and reports it (the runtime rate-limits the log line).
    pub(crate) fn deny(
        &mut self,
        addr: &ClientAddr,
        client_id: Option<std::sync::Arc<str>>,
        reason: Denied,
        topic: Option<std::sync::Arc<str>>,
    ) {
        self.metrics.denied.count(reason);
        trace!(client = %addr, ?client_id, %reason, ?topic, "refused by the policy");
        self.emit(Event::PolicyDenied {
            addr: addr.to_string(),
            client_id,
            reason,
            topic,
        });
    }

    /// [`Gateway::deny`] for a session's client, at its address.
    pub(crate) fn deny_session(
        &mut self,
        idx: SessionIdx,
        reason: Denied,
        topic: Option<std::sync::Arc<str>>,
    ) {
        let Some((addr, client_id)) = self.session(idx).map(|s| {
            (
                s.addr.clone().or_else(|| s.bound.clone()),
                s.client_id.clone(),
            )
        }) else {
            return;
        };
        match addr {
            Some(addr) => self.deny(&addr, Some(client_id), reason, topic),
            None => self.metrics.denied.count(reason),
        }
    }

    /// A meter for a session's queue: its bytes count towards `max_queued_bytes_total`, in
    /// the open-policy share unless a `[[mote]]` entry admitted it.
    pub(crate) fn queue_meter(&self, listed: bool) -> Meter {
        Meter::new(self.queued.clone(), !listed)
    }

    /// Gives a new (or restored) session its meters: its queue counts towards
    /// `max_queued_bytes_total`, the rest of what it holds towards `max_state_bytes`.
    pub(crate) fn meter_session(&mut self, idx: SessionIdx) {
        let Some(listed) = self.session(idx).map(|s| s.grant.listed()) else {
            return;
        };
        let queue = self.queue_meter(listed);
        let held = Meter::new(self.held.clone(), !listed);
        if let Some(session) = self.session_mut(idx) {
            session.queue.set_meter(queue);
            session.held.set_meter(held);
        }
        self.reaccount(idx);
    }

    /// Counts what the session holds now towards `max_state_bytes` (after a change to its
    /// topic names, filters or Will).
    pub(crate) fn reaccount(&mut self, idx: SessionIdx) {
        if let Some(session) = self.session_mut(idx) {
            let bytes = session.held_bytes();
            session.held.set(bytes);
        }
    }

    /// Whether the session may hold `extra` more bytes of names, filters or Will within
    /// `max_state_bytes` (sessions the open policy let in: within half of it). A refusal is
    /// counted.
    pub(crate) fn state_room(&mut self, idx: SessionIdx, extra: usize) -> bool {
        let listed = self.session(idx).is_some_and(|s| s.grant.listed());
        self.state_room_for(listed, extra)
    }

    /// [`Gateway::state_room`] for a session not created yet.
    pub(crate) fn state_room_for(&mut self, listed: bool, extra: usize) -> bool {
        let max = self.config.max_state_bytes;
        let fits = Meter::new(self.held.clone(), !listed).fits(extra, max);
        if !fits {
            self.metrics.state_full += 1;
        }
        fits
    }

    /// Bytes all sessions hold besides their queues (client ids, names, filters, Wills).
    pub fn held_bytes(&self) -> usize {
        self.held.total()
    }

    /// Payload bytes queued for all clients together.
    pub fn queued_bytes(&self) -> usize {
        self.queued.total()
    }

    pub(crate) fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.metrics.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Queues a command for the remote broker's connection.
    pub(crate) fn command(&mut self, command: BrokerCommand) {
        self.broker_queue.push(BrokerRoute::Remote, command);
    }

    /// Queues a command for the fallback broker's connection.
    pub(crate) fn fallback_command(&mut self, command: BrokerCommand) {
        self.broker_queue.push(BrokerRoute::Fallback, command);
    }

    /// Forgets the remote broker's commands not yet polled (the connection they were for is
    /// gone). QoS 1/2 messages and subscriptions are sent again after the reconnect, and
    /// acknowledgements of the broker's messages are kept for it; QoS 0 messages are lost
    /// with the connection and counted in `publish_broker_down`.
    pub(crate) fn drop_broker_commands(&mut self) {
        // Only QoS 0 publishes are shed here (the rest stay in the outbox for the replay).
        let lost = u64::try_from(self.broker_queue.drop_remote()).unwrap_or(u64::MAX);
        self.metrics.publish_broker_down += lost;
        self.metrics.qos0_dropped_broker_down += lost;
        self.pending_qos0_full_reported = false;
    }

    /// Whether one more QoS 0 message fits the backlog for the broker link
    /// (`max_pending_qos0`); when it does not, counts the drop and reports the first one of
    /// an episode (until the backlog has drained).
    pub(crate) fn qos0_backlog_has_room(&mut self) -> bool {
        if self.broker_queue.remote_qos0() < self.config.max_pending_qos0 {
            return true;
        }
        self.metrics.publish_dropped_backlog += 1;
        if !self.pending_qos0_full_reported {
            self.pending_qos0_full_reported = true;
            self.emit(Event::BrokerBacklogFull {
                limit: self.config.max_pending_qos0,
            });
        }
        false
    }

    /// Encodes `packet` for a client (wrapped for its forwarder if it has one) and queues it.
    /// Returns false, counting the drop, when it cannot be sent within max_packet_size.
    pub(crate) fn send(&mut self, to: &ClientAddr, packet: Packet<'_>) -> bool {
        let frame = match &to.node {
            None => Frame::Packet(packet),
            Some(node) => Frame::Forwarded(Forwarded {
                radius: 0,
                node_id: node,
                packet,
            }),
        };
        self.queue_frame(to.peer.link, Destination::Unicast(to.peer.addr), &frame)
    }

    /// Sends to the session's current address, if it has one.
    pub(crate) fn send_to_session(&mut self, idx: SessionIdx, packet: Packet<'_>) -> bool {
        match self.session(idx).and_then(|s| s.addr.clone()) {
            Some(addr) => self.send(&addr, packet),
            None => false,
        }
    }

    pub(crate) fn queue_frame(
        &mut self,
        link: LinkId,
        destination: Destination,
        frame: &Frame<'_>,
    ) -> bool {
        let len = frame.encoded_len();
        if len > self.config.max_packet_size {
            self.metrics.dropped_too_big_for_client += 1;
            trace!(len, "not sent: packet over max_packet_size");
            return false;
        }
        if let Err(error) = self.transmits.push(link, destination, frame) {
            self.metrics.dropped_too_big_for_client += 1;
            trace!(%error, "not sent: cannot encode");
            return false;
        }
        trace!(?link, ?destination, packet = ?frame.packet(), "send");
        self.metrics.datagrams_sent += 1;
        true
    }

    /// Answers a peer the gateway has no session for with DISCONNECT, so that the client
    /// reconnects instead of publishing into the void (reference §4.12).
    pub(crate) fn reject_unknown(&mut self, addr: &ClientAddr) {
        self.metrics.unknown_peer += 1;
        self.send(
            addr,
            Packet::Disconnect(sn_codec::v12::Disconnect { duration: None }),
        );
    }

    /// Routes a decoded packet to its handler.
    fn dispatch(
        &mut self,
        now: Instant,
        addr: ClientAddr,
        identity: Option<&Arc<str>>,
        packet: Packet<'_>,
    ) {
        match packet {
            Packet::Connect(connect) => return self.on_connect(now, addr, identity, connect),
            Packet::SearchGw(search) => return self.on_searchgw(&addr, search.radius),
            Packet::Publish(publish) if publish.qos == sn_codec::QoS::MinusOne => {
                return self.on_publish_minus_one(&addr, publish)
            }
            // Other gateways' and clients' discovery traffic: nothing to do.
            Packet::Advertise(_) | Packet::GwInfo(_) => return,
            _ => {}
        }
        let idx = match self.sessions.at(&addr) {
            Some(idx) => idx,
            None => match packet {
                // A sleeping client may wake from a new address; its PINGREQ names it.
                Packet::PingReq { client_id } if !client_id.is_empty() => {
                    match self.rebind_sleeper(client_id, &addr, identity) {
                        Some(idx) => idx,
                        None => return self.reject_unknown(&addr),
                    }
                }
                // Only what a client sends is answered: a DISCONNECT, PINGRESP or another
                // gateway's reply from a stranger is dropped, so two gateways (or a spoofed
                // datagram) can never bounce DISCONNECTs back and forth.
                Packet::Disconnect(_)
                | Packet::PingResp
                | Packet::ConnAck { .. }
                | Packet::WillTopicReq
                | Packet::WillMsgReq
                | Packet::SubAck(_)
                | Packet::UnsubAck { .. }
                | Packet::WillTopicResp { .. }
                | Packet::WillMsgResp { .. } => {
                    self.metrics.unknown_peer += 1;
                    return;
                }
                _ => return self.reject_unknown(&addr),
            },
        };
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.last_seen = now;
        let allowed = match &session.state {
            State::Active => true,
            State::Handshake { .. } => matches!(
                packet,
                Packet::WillTopic(_)
                    | Packet::WillMsg { .. }
                    | Packet::Disconnect(_)
                    | Packet::PingReq { .. }
            ),
            // A sleeping or waking client only acknowledges, pings, or disconnects (§6.14).
            State::Asleep { .. } | State::Awake { .. } => matches!(
                packet,
                Packet::PingReq { .. }
                    | Packet::Disconnect(_)
                    | Packet::RegAck(_)
                    | Packet::PubAck(_)
                    | Packet::PubRec { .. }
                    | Packet::PubComp { .. }
                    | Packet::PubRel { .. }
            ),
            State::Offline { .. } => false,
        };
        if !allowed {
            self.metrics.unexpected_packet += 1;
            let state = self.session(idx).map(|s| &s.state);
            trace!(?state, msg = %packet.msg_type(), "ignored: not expected in this state");
            return;
        }
        match packet {
            Packet::WillTopic(will) => self.on_willtopic(now, idx, will),
            Packet::WillMsg { msg } => self.on_willmsg(now, idx, msg),
            Packet::WillTopicUpd(will) => self.on_willtopicupd(idx, will),
            Packet::WillMsgUpd { msg } => self.on_willmsgupd(idx, msg),
            Packet::Register(register) => self.on_register(idx, register),
            Packet::RegAck(regack) => self.on_regack(now, idx, regack),
            Packet::Publish(publish) => self.on_publish(now, idx, publish),
            Packet::PubAck(puback) => self.on_puback(now, idx, puback),
            Packet::PubRec { msg_id } => self.on_pubrec(now, idx, msg_id),
            Packet::PubRel { msg_id } => self.on_pubrel(idx, msg_id),
            Packet::PubComp { msg_id } => self.on_pubcomp(now, idx, msg_id),
            Packet::Subscribe(subscribe) => self.on_subscribe(idx, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(idx, unsubscribe),
            Packet::PingReq { client_id } => self.on_pingreq(now, idx, client_id),
            Packet::Disconnect(disconnect) => self.on_disconnect(now, idx, disconnect),
            // A client answering our PINGREQ: liveness was refreshed above.
            Packet::PingResp => {}
            // Gateway-to-client messages a client has no business sending.
            Packet::ConnAck { .. }
            | Packet::WillTopicReq
            | Packet::WillMsgReq
            | Packet::SubAck(_)
            | Packet::UnsubAck { .. }
            | Packet::WillTopicResp { .. }
            | Packet::WillMsgResp { .. }
            | Packet::Connect(_)
            | Packet::SearchGw(_)
            | Packet::Advertise(_)
            | Packet::GwInfo(_) => {
                self.metrics.unexpected_packet += 1;
            }
        }
    }
}

/// A client's state, as reported by [`Gateway::session_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// CONNECT received, Will handshake under way.
    Connecting,
    /// Connected.
    Active,
    /// Sleeping; messages are queued.
    Asleep,
    /// Woken, receiving its queued messages.
    Awake,
    /// Disconnected or lost, kept because CleanSession was 0.
    Offline,
}

fn session_state(state: &State) -> SessionState {
    match state {
        State::Handshake { .. } => SessionState::Connecting,
        State::Active => SessionState::Active,
        State::Asleep { .. } => SessionState::Asleep,
        State::Awake { .. } => SessionState::Awake,
        State::Offline { .. } => SessionState::Offline,
    }
}

/// The gateway's gauges at one moment ([`Gateway::gauges`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gauges {
    /// Sessions in the Will handshake.
    pub sessions_connecting: usize,
    /// Connected sessions.
    pub sessions_active: usize,
    /// Sleeping sessions.
    pub sessions_asleep: usize,
    /// Sessions woken and receiving what was queued.
    pub sessions_awake: usize,
    /// Sessions kept while their mote is away (CleanSession=0).
    pub sessions_offline: usize,
    /// Messages waiting for motes, all sessions together.
    pub queued_messages: usize,
    /// Bytes those messages count towards `max_queued_bytes_total`.
    pub queued_bytes: usize,
    /// Bytes sessions hold besides their queues (`max_state_bytes`).
    pub held_bytes: usize,
    /// Uplink messages in the spool.
    pub spooled: usize,
    /// Bytes the spool's messages count against `[spool] max_bytes`.
    pub spool_bytes: usize,
    /// Uplink messages not yet acknowledged by a broker.
    pub pending_uplink: usize,
    /// The remote broker link is connected.
    pub broker_connected: bool,
    /// The fallback (embedded) broker serves the motes.
    pub fallback_active: bool,
}

/// What the gateway holds for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its state.
    pub state: SessionState,
    /// Messages waiting for it.
    pub queued: usize,
    /// Their payload bytes.
    pub queued_bytes: usize,
    /// Messages dropped at its queue limits since the session began.
    pub dropped: u64,
    /// Datagrams to it that its link reported undelivered, since the session began.
    pub undelivered: u64,
    /// Its subscriptions.
    pub subscriptions: usize,
}
