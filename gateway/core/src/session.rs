//! One MQTT-SN client as the gateway sees it (v1.2 §6.14, reference §4.13).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::broker::{MqttQoS, PublishId};
use super::peer::ClientAddr;
use super::policy::Grant;
use super::quotas::{Account, Meter};
use super::topics::TopicTable;

/// Index of a session in the gateway's slab.
pub(crate) type SessionIdx = usize;

/// The client's state, with what only that state needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// CONNECT with Will=1 received; WILLTOPICREQ/WILLMSGREQ outstanding. `will`: the
    /// WILLTOPIC received, waiting for its WILLMSG.
    Handshake { will: Option<Will> },
    /// Connected.
    Active,
    /// Sleeping after DISCONNECT{duration}; everything for it is queued.
    Asleep { duration: Duration },
    /// Woken by PINGREQ; receiving what was queued, then back to sleep for `duration`.
    Awake { duration: Duration },
    /// Disconnected or lost, kept because CleanSession was 0. `since`: when it went offline,
    /// to evict the oldest first at the session limit; `None` while a new CONNECT waits for
    /// the mote's own broker connection (transparent mode), which is not to be evicted.
    Offline { since: Option<Instant> },
}

impl State {
    /// Asleep or awake: a sleeping client's supervision and queueing apply.
    pub(crate) fn sleeping(&self) -> bool {
        matches!(self, State::Asleep { .. } | State::Awake { .. })
    }
}

/// A client's Will, published by the gateway when the client is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Will {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) qos: MqttQoS,
    pub(crate) retain: bool,
}

/// How a subscription was made, which decides how its messages are addressed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubKind {
    /// A topic name without wildcards; its normal id went back in the SUBACK.
    Name,
    /// A filter with wildcards: each concrete topic is REGISTERed before its first PUBLISH.
    Wildcard,
    /// A predefined topic id.
    Predefined(u16),
    /// A short topic name.
    Short([u8; 2]),
}

/// One subscription of a session.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub(crate) filter: Arc<str>,
    pub(crate) kind: SubKind,
    /// What the client asked for.
    pub(crate) requested: MqttQoS,
    /// What it got (min of requested and the broker's grant); `requested` until the SUBACK.
    pub(crate) granted: MqttQoS,
    /// Which upstream SUBSCRIBE of this filter this subscription caused; retained messages
    /// (Retain=1, sent by the broker because of a new subscription) go only to subscriptions
    /// of the most recently acknowledged one.
    pub(crate) generation: u64,
    /// The SUBSCRIBE's MsgId and topic id while the client waits for its SUBACK.
    pub(crate) awaiting_suback: Option<(u16, u16)>,
}

/// How a delivery names its topic to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A normal topic id from the session's table (REGISTERed first if the client lacks it).
    Normal,
    /// A predefined id.
    Predefined(u16),
    /// A short name.
    Short([u8; 2]),
}

/// Transparent mode: the state of a mote's own broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoteLink {
    /// None asked for.
    Closed,
    /// Asked for, waiting for the broker's CONNACK. `answer`: the mote waits for its CONNACK
    /// (otherwise the connection is reopened for a sleeping mote after a restart).
    Opening { answer: bool, resumed: bool },
    /// Open.
    Up,
    /// Lost after it was open; the runtime reconnects.
    Down,
}

/// A message waiting to go to the client.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) qos: MqttQoS,
    pub(crate) retain: bool,
    pub(crate) route: Route,
    /// Re-registrations after PUBACK 0x02, to stop a client that keeps refusing from looping.
    pub(crate) reregistered: bool,
    /// Its key in the durable store, once stored (see `persist`).
    pub(crate) seq: Option<u64>,
    /// Transparent mode: the broker's delivery id on the mote's own connection, acknowledged
    /// once the mote has the message or it is stored (see `release_upstream`).
    pub(crate) upstream_ack: Option<super::broker::DeliveryId>,
    /// The MsgId it was sent with in an exchange abandoned before the client acknowledged
    /// it (the client slept, reconnected or was lost): it is sent again with that MsgId and
    /// DUP set, as MQTT requires of a resumed session, so a client that did receive it
    /// recognises a QoS 2 message it holds instead of delivering it twice.
    pub(crate) sent_as: Option<u16>,
}

/// The client's QoS 1/2 PUBLISH being handled (one at a time, v1.2 §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Nothing outstanding; remembers the last completed exchange to answer a duplicate.
    Idle { last: Option<(u16, u16)> },
    /// Sent to the broker, waiting for its acknowledgement.
    Forwarding {
        msg_id: u16,
        topic_id: u16,
        qos: MqttQoS,
        id: PublishId,
        /// When the PUBLISH arrived, for the acknowledgement latency histogram.
        since: Instant,
    },
    /// QoS 2: PUBREC sent, waiting for the client's PUBREL.
    AwaitPubRel { msg_id: u16 },
}

/// What the gateway sent that expects a reply, for retransmission (v1.2 §6.13).
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    WillTopicReq,
    WillMsgReq,
    Register {
        topic_id: u16,
        msg_id: u16,
    },
    Publish {
        delivery: Delivery,
        topic_id: u16,
        msg_id: u16,
        stage: PublishStage,
    },
}

/// Where a gateway → client QoS 1/2 PUBLISH stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishStage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// QoS 2: PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// The one outstanding gateway message and its retry clock.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) what: Outgoing,
    /// Transmissions so far (1 after the first send).
    pub(crate) sends: u32,
    pub(crate) deadline: Instant,
}

/// MsgIds reserved by one store write of a session record (see
/// [`Session::reserve_msg_ids`]): one extra write per this many messages to a durable session.
pub(crate) const MSG_ID_BLOCK: u16 = 256;

/// A session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: Arc<str>,
    /// Where the client is reached; `None` while offline.
    pub(crate) addr: Option<ClientAddr>,
    /// The address the session is bound to: where its client last connected from, kept while
    /// it is offline. Without `roaming`, the session answers to no other.
    pub(crate) bound: Option<ClientAddr>,
    pub(crate) state: State,
    pub(crate) clean_session: bool,
    /// Keep-alive from CONNECT; zero turns supervision off.
    pub(crate) keep_alive: Duration,
    pub(crate) last_seen: Instant,
    pub(crate) will: Option<Will>,
    pub(crate) topics: TopicTable,
    pub(crate) subscriptions: Vec<Subscription>,
    pub(crate) inbound: Inbound,
    pub(crate) in_flight: Option<InFlight>,
    /// A QoS 2 delivery the client acknowledged with PUBREC whose PUBREL it has not
    /// confirmed, from an exchange abandoned when it slept, reconnected or was lost: its
    /// PUBREL goes out first when it is reachable again (MQTT resends PUBREL on a resumed
    /// session), so the client releases the MsgId and never takes a later message with the
    /// same MsgId for a repeat of this one.
    pub(crate) release_pending: Option<Outgoing>,
    pub(crate) queue: DeliveryQueue,
    /// Messages for this client dropped at its queue limits, since the session began.
    pub(crate) dropped: u64,
    /// Datagrams to this client its link reported undelivered (XBee transmit status), since
    /// the session began.
    pub(crate) undelivered: u64,
    /// Topic names the client refused with a REGACK error: not offered again this session.
    pub(crate) refused_topics: Vec<Arc<str>>,
    /// A queue overflow was reported; cleared when the queue drains, so it is logged once
    /// per episode rather than once per dropped message.
    pub(crate) queue_full_reported: bool,
    next_msg_id: u16,
    /// MsgIds handed out so far are at most this (wrapping), as the stored record says: a
    /// restored session continues after it, so it never reuses a MsgId the client may still
    /// hold from before the restart (a QoS 2 PUBLISH it received and awaits the PUBREL of).
    pub(crate) msg_id_mark: u16,
    /// Transparent mode: the state of the mote's own broker connection.
    pub(crate) mote_link: MoteLink,
    /// Bumped every time the slot is reused or the client reconnects, so that late timers and
    /// broker acknowledgements for an earlier life of the session are ignored.
    pub(crate) epoch: u64,
    /// What the policy lets this client do, set when it connects (or is restored).
    pub(crate) grant: Arc<Grant>,
    /// The identity its link authenticated when it connected (DTLS), if any: the session then
    /// answers only to that identity, wherever it speaks from.
    pub(crate) identity: Option<Arc<str>>,
    /// The bytes of [`Session::held_bytes`] last counted towards `max_state_bytes`.
    pub(crate) held: Account,
}

impl Session {
    pub(crate) fn new(client_id: Arc<str>, now: Instant, epoch: u64, grant: Arc<Grant>) -> Self {
        Session {
            client_id,
            addr: None,
            bound: None,
            state: State::Offline { since: Some(now) },
            clean_session: true,
            keep_alive: Duration::ZERO,
            last_seen: now,
            will: None,
            topics: TopicTable::default(),
            subscriptions: Vec::new(),
            inbound: Inbound::Idle { last: None },
            in_flight: None,
            release_pending: None,
            queue: DeliveryQueue::default(),
            dropped: 0,
            undelivered: 0,
            refused_topics: Vec::new(),
            queue_full_reported: false,
            next_msg_id: 0,
            msg_id_mark: 0,
            mote_link: MoteLink::Closed,
            epoch,
            grant,
            identity: None,
            held: Account::default(),
        }
    }

    /// What the session holds besides its queued messages, as `max_state_bytes` counts it:
    /// client id, topic names, subscription filters, Will, and the names the client refused.
    pub(crate) fn held_bytes(&self) -> usize {
        let will = self
            .will
            .as_ref()
            .map_or(0, |w| w.topic.len() + w.payload.len());
        let filters: usize = self.subscriptions.iter().map(|s| s.filter.len()).sum();
        let refused: usize = self.refused_topics.iter().map(|t| t.len()).sum();
        self.client_id.len() + self.topics.name_bytes() + filters + will + refused
    }

    /// A fresh MsgId for a gateway → client message: never 0.
    pub(crate) fn next_msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    /// Whether the MsgId just handed out is past [`Session::msg_id_mark`]; if so, moves the
    /// mark [`MSG_ID_BLOCK`] ahead, and the caller must have the record stored again
    /// (before the MsgId leaves: the store gate sees to that).
    pub(crate) fn reserve_msg_ids(&mut self) -> bool {
        let ahead = self.msg_id_mark.wrapping_sub(self.next_msg_id);
        if ahead != 0 && ahead <= MSG_ID_BLOCK {
            return false;
        }
        self.msg_id_mark = self.next_msg_id.wrapping_add(MSG_ID_BLOCK);
        true
    }

    /// Continues MsgIds after `mark` (a restored session).
    pub(crate) fn restore_msg_ids(&mut self, mark: u16) {
        self.next_msg_id = mark;
        self.msg_id_mark = mark;
    }

    /// When the client is lost if it stays silent: 1.5 × its keep-alive or sleep duration
    /// (reference §4.11; the v2.0 rule and Paho's and EMQX's convention).
    pub(crate) fn silence_deadline(&self) -> Option<Instant> {
        let period = match self.state {
            State::Active | State::Handshake { .. } => self.keep_alive,
            State::Asleep { duration } | State::Awake { duration } => duration,
            State::Offline { .. } => return None,
        };
        if period.is_zero() {
            return None;
        }
        Some(self.last_seen + period + period / 2)
    }

    pub(crate) fn subscription(&self, filter: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| &*s.filter == filter)
    }

    /// Whether messages can be sent to the client now.
    pub(crate) fn reachable(&self) -> bool {
        matches!(self.state, State::Active | State::Awake { .. })
    }
}

/// A client's waiting messages, keeping count of their payload bytes so the byte limit is
/// checked in O(1).
#[derive(Debug, Default)]
pub(crate) struct DeliveryQueue {
    items: VecDeque<Delivery>,
    /// Payload bytes queued (`max_queued_bytes_per_session`).
    payload: usize,
    /// What the queue costs, as `max_queued_bytes_total` counts it ([`Delivery::cost`]),
    /// counted in the gateway's pool once the queue has a meter.
    cost: Account,
}

impl Delivery {
    /// Bookkeeping per queued message (its key, QoS, route, sequence number), counted with
    /// its payload and topic towards `max_queued_bytes_total`, so that empty messages are
    /// not free.
    pub(crate) const OVERHEAD: usize = 64;

    /// Bytes the message counts for towards `max_queued_bytes_total`.
    pub(crate) fn cost(&self) -> usize {
        self.payload.len() + self.topic.len() + Self::OVERHEAD
    }
}

impl DeliveryQueue {
    /// Counts this queue's cost in `meter` from now on.
    pub(crate) fn set_meter(&mut self, meter: Meter) {
        self.cost.set_meter(meter);
    }

    /// The meter this queue counts in.
    pub(crate) fn meter(&self) -> Option<&Meter> {
        self.cost.meter()
    }

    fn added(&mut self, delivery: &Delivery) {
        self.payload += delivery.payload.len();
        self.cost.set(self.cost.bytes() + delivery.cost());
    }

    fn removed(&mut self, delivery: &Delivery) {
        self.payload -= delivery.payload.len();
        self.cost.set(self.cost.bytes() - delivery.cost());
    }

    fn recount(&mut self) {
        self.payload = self.items.iter().map(|d| d.payload.len()).sum();
        self.cost.set(self.items.iter().map(Delivery::cost).sum());
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Payload bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.payload
    }

    pub(crate) fn front(&self) -> Option<&Delivery> {
        self.items.front()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Delivery> {
        self.items.iter()
    }

    /// Mutable access that cannot change payload sizes (used to stamp store keys).
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut Delivery)) {
        for delivery in &mut self.items {
            f(delivery);
        }
    }

    pub(crate) fn push_back(&mut self, delivery: Delivery) {
        self.added(&delivery);
        self.items.push_back(delivery);
    }

    pub(crate) fn push_front(&mut self, delivery: Delivery) {
        self.added(&delivery);
        self.items.push_front(delivery);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Delivery> {
        let delivery = self.items.pop_front()?;
        self.removed(&delivery);
        Some(delivery)
    }

    pub(crate) fn remove(&mut self, index: usize) -> Option<Delivery> {
        let delivery = self.items.remove(index)?;
        self.removed(&delivery);
        Some(delivery)
    }

    /// Keeps what `keep` accepts; returns what was removed.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
        let (kept, removed): (Vec<Delivery>, Vec<Delivery>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|d| keep(d));
        self.items = kept.into();
        self.recount();
        removed
    }

    /// Empties the queue, returning what it held.
    pub(crate) fn drain(&mut self) -> Vec<Delivery> {
        let drained = self.items.drain(..).collect();
        self.recount();
        drained
    }
}
