//! What must survive a gateway restart, as plain records: the core says what changed
//! ([`Gateway::poll_store`]) and is given it back at start ([`Gateway::restore`]); where and how
//! it is stored is the runtime's business.
//!
//! Durable: sessions that outlive their connection (CleanSession=0, or asleep) with their
//! subscriptions, topic ids and Will; and the messages queued for sleeping or offline clients.
//! Not durable: anything of an active CleanSession=1 client (it reconnects after a restart), and
//! in-flight exchange state (clients retransmit; a message in flight to a client stays queued
//! in the store until acknowledged, so it is delivered again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Gateway;
use crate::broker::MqttQoS;
use crate::peer::ClientAddr;
use crate::session::{
    Delivery, InFlight, Outgoing, Route, Session, SessionIdx, State, SubKind, Subscription, Will,
};
use crate::spool::SpooledPublish;

/// How a stored subscription was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredSubKind {
    /// A topic name without wildcards.
    Name,
    /// A filter with wildcards.
    Wildcard,
    /// A predefined topic id.
    Predefined(u16),
    /// A short topic name.
    Short([u8; 2]),
}

/// How a stored message names its topic to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredRoute {
    /// Normal topic id (REGISTERed first if needed).
    Normal,
    /// Predefined id.
    Predefined(u16),
    /// Short name.
    Short([u8; 2]),
}

/// The state a stored session is restored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    /// Connected: restored at its address, keep-alive running from the restore.
    Active,
    /// Asleep: messages wait for its PINGREQ; sleep timer running from the restore.
    Asleep,
    /// Disconnected or lost, kept for its next CONNECT.
    Offline,
}

/// A stored Will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// Topic.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: MqttQoS,
    /// Retain flag.
    pub retain: bool,
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The MQTT filter.
    pub filter: Arc<str>,
    /// How it was made.
    pub kind: StoredSubKind,
    /// QoS the client asked for.
    pub requested: MqttQoS,
    /// QoS granted.
    pub granted: MqttQoS,
}

/// Everything durable about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client id (the key).
    pub client_id: Arc<str>,
    /// Where the client was last reached.
    pub addr: Option<ClientAddr>,
    /// Its state.
    pub state: StoredState,
    /// CleanSession of its last CONNECT.
    pub clean_session: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Sleep duration in seconds.
    pub sleep: u16,
    /// Its Will.
    pub will: Option<StoredWill>,
    /// Topic ids: (id, name, known to the client).
    pub topics: Vec<(u16, Arc<str>, bool)>,
    /// Subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// The identity an authenticated link proved when the client connected (DTLS); the
    /// session answers only to it after a restart too.
    pub identity: Option<Arc<str>>,
    /// MsgIds the gateway has used towards the client are at most this (wrapping); after a
    /// restart it continues from here, so a MsgId the client may still hold (a QoS 2
    /// PUBLISH awaiting its PUBREL) is not reused for another message, which the client
    /// would take for a repeat and drop. 0 in records written before it existed.
    pub msg_id_mark: u16,
}

/// A message queued for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Topic name.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS towards the client.
    pub qos: MqttQoS,
    /// Retain flag.
    pub retain: bool,
    /// How the topic is named to the client.
    pub route: StoredRoute,
}

/// A change to durable state. Apply the ops of one [`Gateway::poll_store`] batch atomically and
/// report it with [`Gateway::handle_stored`]: the core holds the acknowledgements that depend
/// on it until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace a session.
    PutSession(SessionRecord),
    /// Forget a session and its messages.
    DeleteSession {
        /// The client id.
        client_id: Arc<str>,
    },
    /// Store a queued message under (client id, sequence number).
    PutMessage {
        /// The client id.
        client_id: Arc<str>,
        /// Increasing per gateway; restore order is sequence order.
        seq: u64,
        /// The message.
        message: StoredMessage,
    },
    /// A queued message was delivered or dropped.
    DeleteMessage {
        /// The client id.
        client_id: Arc<str>,
        /// Its sequence number.
        seq: u64,
    },
    /// An uplink message taken while the broker was unreachable.
    PutSpool {
        /// Its order: spooled messages are sent in increasing id.
        id: u64,
        /// The message.
        message: SpooledPublish,
    },
    /// A spooled message the broker now holds, or that was dropped.
    DeleteSpool {
        /// Its id.
        id: u64,
    },
}

/// What was stored, handed back at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Sessions.
    pub sessions: Vec<SessionRecord>,
    /// Messages: (client id, sequence number, message), in any order.
    pub messages: Vec<(Arc<str>, u64, StoredMessage)>,
    /// The spool: (id, message), in any order.
    pub spool: Vec<(u64, SpooledPublish)>,
}

impl Session {
    /// Whether this session outlives a restart.
    pub(crate) fn durable(&self) -> bool {
        !self.clean_session || self.state.sleeping()
    }

    fn record(&self) -> SessionRecord {
        SessionRecord {
            client_id: self.client_id.clone(),
            // Offline, the address it is bound to (a restart must not free the client id).
            addr: self.addr.clone().or_else(|| self.bound.clone()),
            state: match self.state {
                State::Active | State::Handshake { .. } => StoredState::Active,
                State::Asleep { .. } | State::Awake { .. } => StoredState::Asleep,
                State::Offline { .. } => StoredState::Offline,
            },
            clean_session: self.clean_session,
            keep_alive: u16::try_from(self.keep_alive.as_secs()).unwrap_or(u16::MAX),
            sleep: match self.state {
                State::Asleep { duration } | State::Awake { duration } => {
                    u16::try_from(duration.as_secs()).unwrap_or(u16::MAX)
                }
                _ => 0,
            },
            will: self.will.as_ref().map(|w| StoredWill {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
            }),
            topics: self.topics.entries().collect(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| StoredSubscription {
                    filter: s.filter.clone(),
                    kind: match s.kind {
                        SubKind::Name => StoredSubKind::Name,
                        SubKind::Wildcard => StoredSubKind::Wildcard,
                        SubKind::Predefined(id) => StoredSubKind::Predefined(id),
                        SubKind::Short(name) => StoredSubKind::Short(name),
                    },
                    requested: s.requested,
                    granted: s.granted,
                })
                .collect(),
            identity: self.identity.clone(),
            msg_id_mark: self.msg_id_mark,
        }
    }
}

impl Delivery {
    fn stored(&self) -> StoredMessage {
        StoredMessage {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            route: match self.route {
                Route::Normal => StoredRoute::Normal,
                Route::Predefined(id) => StoredRoute::Predefined(id),
                Route::Short(name) => StoredRoute::Short(name),
            },
        }
    }
}

/// The core's bookkeeping of what it has told the store.
#[derive(Debug, Default)]
pub(crate) struct Persistence {
    /// Sessions whose record may have changed since the last drain.
    dirty: Vec<SessionIdx>,
    /// Sessions removed since the last drain, by client id.
    deleted: Vec<Arc<str>>,
    /// Client ids with a record in the store.
    stored: HashSet<Arc<str>>,
    /// Message operations, in order.
    ops: Vec<StoreOp>,
    pub(crate) next_seq: u64,
}

impl Persistence {
    /// Records an operation for the next drain.
    pub(crate) fn push(&mut self, op: StoreOp) {
        self.ops.push(op);
    }

    /// Gives an unstored delivery its key and records the write.
    fn stamp(&mut self, client_id: &Arc<str>, delivery: &mut Delivery) {
        if delivery.seq.is_some() {
            return;
        }
        self.next_seq += 1;
        delivery.seq = Some(self.next_seq);
        self.ops.push(StoreOp::PutMessage {
            client_id: client_id.clone(),
            seq: self.next_seq,
            message: delivery.stored(),
        });
    }
}

impl Gateway {
    /// Notes that a session's durable state may have changed.
    pub(crate) fn persist(&mut self, idx: SessionIdx) {
        if !self.persistence.dirty.contains(&idx) {
            self.persistence.dirty.push(idx);
        }
    }

    /// Notes that a session is gone for good.
    pub(crate) fn persist_removal(&mut self, client_id: &Arc<str>) {
        if self.persistence.stored.contains(client_id) {
            self.persistence.deleted.push(client_id.clone());
        }
    }

    /// A delivery is being queued for a client: store it if the session is durable (asleep,
    /// or CleanSession=0), so it survives a restart.
    pub(crate) fn persist_delivery(&mut self, idx: SessionIdx, delivery: &mut Delivery) {
        let Some(session) = self.sessions.get(idx) else {
            return;
        };
        if session.durable() {
            self.persistence.stamp(&session.client_id, delivery);
        }
    }

    /// A stored delivery was delivered or dropped.
    pub(crate) fn forget_delivery(&mut self, client_id: &Arc<str>, delivery: &Delivery) {
        if let Some(seq) = delivery.seq {
            self.persistence.ops.push(StoreOp::DeleteMessage {
                client_id: client_id.clone(),
                seq,
            });
        }
    }

    /// Stores every queued message of a session that just became durable (went to sleep),
    /// including the one in flight, which stays stored until the client acknowledges it.
    pub(crate) fn persist_queue(&mut self, idx: SessionIdx) {
        let Some(session) = self.sessions.get_mut(idx) else {
            return;
        };
        if !session.durable() {
            return;
        }
        let persistence = &mut self.persistence;
        let client_id = session.client_id.clone();
        // Stored now: what the broker waits for an acknowledgement of (transparent mode) is
        // held durably, so it is acknowledged.
        let mut acks = Vec::new();
        // Sequence numbers are the restore order: the message in flight is older than the
        // queue, so it is numbered first.
        if let Some(InFlight {
            what: Outgoing::Publish { delivery, .. },
            ..
        }) = session.in_flight.as_mut()
        {
            persistence.stamp(&client_id, delivery);
            acks.extend(delivery.upstream_ack.take());
        }
        session.queue.for_each_mut(|d| {
            persistence.stamp(&client_id, d);
            acks.extend(d.upstream_ack.take());
        });
        for ack in acks {
            self.ack_on_mote_link(idx, ack);
        }
        self.persist(idx);
    }

    /// What changed in durable state since the last call (see [`Gateway::poll_store`]).
    pub(super) fn drain_store_ops(&mut self) -> Vec<StoreOp> {
        let mut out = Vec::new();
        for client_id in std::mem::take(&mut self.persistence.deleted) {
            // Removed then recreated within one turn: the new record below replaces it.
            if self.sessions.find(&client_id).is_some() {
                continue;
            }
            self.persistence.stored.remove(&client_id);
            out.push(StoreOp::DeleteSession { client_id });
        }
        for idx in std::mem::take(&mut self.persistence.dirty) {
            let Some(session) = self.sessions.get(idx) else {
                continue;
            };
            if session.durable() {
                self.persistence.stored.insert(session.client_id.clone());
                out.push(StoreOp::PutSession(session.record()));
            } else if self.persistence.stored.remove(&session.client_id) {
                out.push(StoreOp::DeleteSession {
                    client_id: session.client_id.clone(),
                });
            }
        }
        out.append(&mut self.persistence.ops);
        out
    }

    /// Loads stored state into a new gateway, before any traffic. Sessions come back in their
    /// stored state with their timers starting now; messages are queued in sequence order;
    /// upstream subscriptions are rebuilt and sent when the broker link comes up.
    pub fn restore(&mut self, now: Instant, mut restored: Restored) {
        restored.messages.sort_by_key(|(_, seq, _)| *seq);
        self.restore_spool(std::mem::take(&mut restored.spool));
        for record in restored.sessions {
            self.restore_session(now, record);
        }
        for (client_id, seq, message) in restored.messages {
            self.persistence.next_seq = self.persistence.next_seq.max(seq);
            let Some(idx) = self.sessions.find(&client_id) else {
                // A message whose session is gone: drop it from the store too.
                self.persistence
                    .ops
                    .push(StoreOp::DeleteMessage { client_id, seq });
                continue;
            };
            let delivery = Delivery {
                topic: message.topic,
                payload: message.payload,
                qos: message.qos,
                retain: message.retain,
                route: match message.route {
                    StoredRoute::Normal => Route::Normal,
                    StoredRoute::Predefined(id) => Route::Predefined(id),
                    StoredRoute::Short(name) => Route::Short(name),
                },
                reregistered: false,
                seq: Some(seq),
                upstream_ack: None,
                sent_as: None,
            };
            if let Some(session) = self.session_mut(idx) {
                session.queue.push_back(delivery);
            }
        }
        // A connected client's queue goes out now: nothing else would start it until the
        // next message for it arrives (a client that only pings would wait for good). A
        // sleeping client's waits for its PINGREQ, an offline one's for its CONNECT.
        let active: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|s| matches!(s.state, State::Active) && s.queue.len() > 0)
            .map(|s| s.client_id.clone())
            .collect();
        for client_id in active {
            if let Some(idx) = self.sessions.find(&client_id) {
                self.pump(now, idx);
            }
        }
    }

    fn restore_session(&mut self, now: Instant, record: SessionRecord) {
        if self.sessions.find(&record.client_id).is_some() {
            return;
        }
        // The policy may have changed since the session was stored: a client id it no longer
        // admits loses its stored session (its messages included).
        let grant = match self
            .policy
            .grant_for(&record.client_id, record.identity.as_deref())
        {
            Ok(grant) => grant,
            Err(reason) => {
                self.metrics.restore_refused += 1;
                tracing::warn!(client_id = %record.client_id, %reason, "stored session dropped: the policy no longer admits it");
                self.persistence.stored.insert(record.client_id.clone());
                self.persist_removal(&record.client_id);
                return;
            }
        };
        let epoch = self.next_epoch();
        let mut session = Session::new(record.client_id.clone(), now, epoch, grant);
        session.identity = record.identity.clone();
        session.restore_msg_ids(record.msg_id_mark);
        session.clean_session = record.clean_session;
        session.keep_alive = Duration::from_secs(u64::from(record.keep_alive));
        session.state = match record.state {
            StoredState::Active => State::Active,
            StoredState::Asleep => State::Asleep {
                duration: Duration::from_secs(u64::from(record.sleep)),
            },
            StoredState::Offline => State::Offline { since: Some(now) },
        };
        session.will = record.will.map(|w| Will {
            topic: w.topic,
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
        });
        for (id, name, known) in record.topics {
            session.topics.restore(id, name, known);
        }
        session.bound = record.addr.clone();
        let addr = if matches!(session.state, State::Offline { .. }) {
            None
        } else {
            record.addr
        };
        session.addr = addr.clone();
        let filters: Vec<(Arc<str>, MqttQoS)> = record
            .subscriptions
            .iter()
            .map(|s| (s.filter.clone(), s.requested))
            .collect();
        session.subscriptions = record
            .subscriptions
            .into_iter()
            .map(|s| Subscription {
                filter: s.filter,
                kind: match s.kind {
                    StoredSubKind::Name => SubKind::Name,
                    StoredSubKind::Wildcard => SubKind::Wildcard,
                    StoredSubKind::Predefined(id) => SubKind::Predefined(id),
                    StoredSubKind::Short(name) => SubKind::Short(name),
                },
                requested: s.requested,
                granted: s.granted,
                generation: 0,
                awaiting_suback: None,
            })
            .collect();
        let client_id = record.client_id.clone();
        let idx = self.insert_session(session);
        self.meter_session(idx);
        self.persistence.stored.insert(client_id);
        if self.transparent() {
            // Each mote has its own connection: a sleeping mote's is opened again (kept
            // pinged while it sleeps); its subscriptions go on it, not the gateway's.
            if self
                .session(idx)
                .is_some_and(|s| matches!(s.state, State::Asleep { .. }))
            {
                self.open_mote_link(idx, false, true);
            }
        } else {
            for (filter, qos) in filters {
                self.restore_filter(idx, filter, qos);
            }
        }
        self.arm_silence(idx);
    }
}

impl Gateway {
    /// Puts stored spool entries back as pending uplinks, to be sent in order when the broker
    /// link comes up.
    fn restore_spool(&mut self, spool: Vec<(u64, SpooledPublish)>) {
        for (id, message) in spool {
            self.outbox.restore_spooled(id, message);
        }
    }
}
