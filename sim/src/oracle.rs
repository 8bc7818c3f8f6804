//! The oracle: a model of what the gateway owes, fed by everything the simulation sees, that
//! fails the run at the first broken guarantee. The rules, and why each holds (or does not),
//! are in the crate documentation (`lib.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sn_codec::QoS;
use sn_core::{Event, Gateway, MqttQoS};

use crate::broker::matches;

/// What the oracle knows of one mote's session at the gateway.
#[derive(Debug, Default)]
struct MoteModel {
    client_id: Arc<str>,
    /// Sessions seen so far; the current one is the last.
    session: u64,
    /// CleanSession of the current session.
    clean: bool,
    /// The gateway must keep this session across restarts: the mote was told CONNACK for a
    /// CleanSession=0 CONNECT, or its sleep was acknowledged.
    durable: bool,
    /// The gateway dropped messages of this session at a queue limit (Event::QueueFull):
    /// which ones is not reported, so nothing more is owed to it.
    lossy: bool,
    /// The gateway reported this session asleep (a DISCONNECT to a sleep request can also be
    /// its answer to a peer it does not know, so the mote's view alone proves nothing).
    gw_asleep: bool,
    /// When (tick) the mote last sent a CleanSession=1 CONNECT.
    clean_connect: u64,
    /// When (tick) the current session began, as far as the oracle knows.
    started: u64,
    /// Subscriptions confirmed by SUBACK in this session: filter, granted QoS, when.
    subs: Vec<(String, QoS, u64)>,
    /// Every message received (not a QoS 2 repeat the client filtered): receipts since the
    /// last gateway restart, and that restart's number.
    received: HashMap<u64, (u32, u64)>,
    /// Messages received in this session, and the highest sequence number per stream.
    seen_in_session: HashSet<u64>,
    last_seq: HashMap<u32, u32>,
}

/// The oracle.
#[derive(Debug, Default)]
pub struct Oracle {
    /// A counter of everything that happened, to order subscriptions and publishes.
    pub tick: u64,
    motes: Vec<MoteModel>,
    by_client: HashMap<Arc<str>, usize>,
    /// Streams: (origin, topic) by id, and the next sequence number of each.
    streams: Vec<(String, String, u32)>,
    stream_ids: HashMap<(String, String), u32>,
    /// Gateway restarts so far.
    crashes: u64,
    /// Gateway restarts before each message was created, and when (tick).
    born: HashMap<u64, (u64, u64)>,
    /// When (tick) the gateway last took a stale radio copy of a PUBLISH from each mote.
    stale_from: HashMap<String, u64>,
    /// New deliveries of each message by a broker to the gateway.
    deliveries: HashMap<u64, u32>,
    /// When (tick) a broker last delivered each message to the gateway.
    delivered_at: HashMap<u64, u64>,
    /// QoS 1/2 uplink messages acknowledged to their mote.
    acked_uplink: Vec<(usize, u64)>,
    /// Messages the remote broker accepted: count, and the connection of the last one.
    at_remote: HashMap<u64, (u32, u64)>,
    /// Per mote stream, the highest sequence number the remote broker got (QoS 1/2).
    remote_last_seq: HashMap<u32, u32>,
    /// QoS 1/2 uplink messages the gateway refused to their mote (a PUBACK with an error
    /// code): not owed, and outside the order of the stream's accepted messages.
    refused_uplink: HashSet<u64>,
    /// Messages owed to motes: (mote, uid, session).
    owed: Vec<(usize, u64, u64)>,
    /// When `owed` is next pruned of what can no longer be missing (its length then).
    prune_owed_at: usize,
    /// Extra QoS 2 receipts at the broker allowed because the radio delivered a stale copy
    /// of the mote's PUBLISH.
    copies: HashMap<(Option<usize>, u64), u32>,
    /// The datagram being handled is a stale radio copy (duplicated, or overtaken by a
    /// later one): see `radio_copy`.
    pub stale_arrival: bool,
    /// Gateway restarts before the datagram being handled was sent.
    pub arrival_epoch: Option<u64>,
    /// When (tick) the datagram being handled was sent.
    pub arrival_sent: u64,
    /// The first broken guarantee, with the simulated time.
    failure: Option<String>,
    /// Simulated time now (for messages).
    pub now: Duration,
    /// Counts for the summary.
    pub stats: Stats,
}

/// What a run did, for its summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// QoS 1/2 uplink messages acknowledged to motes.
    pub uplink_acked: u64,
    /// Messages the remote broker accepted from the gateway.
    pub remote_accepted: u64,
    /// Messages motes received.
    pub mote_received: u64,
    /// QoS 1/2 messages the gateway acknowledged to a broker and owed to a mote.
    pub owed: u64,
    /// Gateway crashes.
    pub crashes: u64,
}

impl Oracle {
    /// An oracle for `motes` motes named `mote0`...
    pub fn new(client_ids: &[Arc<str>]) -> Self {
        let mut oracle = Oracle::default();
        for (i, id) in client_ids.iter().enumerate() {
            oracle.motes.push(MoteModel {
                client_id: id.clone(),
                ..MoteModel::default()
            });
            oracle.by_client.insert(id.clone(), i);
        }
        oracle
    }

    /// Records a broken guarantee (the first one is kept).
    pub fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.failure = Some(format!(
                "at {:.3} s simulated: {what}",
                self.now.as_secs_f64()
            ));
        }
    }

    /// The first broken guarantee.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// A new message from `origin` to `topic`: its uid (stream << 32 | sequence number).
    pub fn new_message(&mut self, origin: &str, topic: &str) -> u64 {
        let key = (origin.to_owned(), topic.to_owned());
        let stream = match self.stream_ids.get(&key) {
            Some(s) => *s,
            None => {
                let s = u32::try_from(self.streams.len()).unwrap_or(u32::MAX);
                self.streams.push((key.0.clone(), key.1.clone(), 0));
                self.stream_ids.insert(key, s);
                s
            }
        };
        let seq = match self.streams.get_mut(stream as usize) {
            Some(entry) => {
                entry.2 += 1;
                entry.2
            }
            None => 0,
        };
        let uid = (u64::from(stream) << 32) | u64::from(seq);
        self.born.insert(uid, (self.crashes, self.tick));
        uid
    }

    fn stream(uid: u64) -> (u32, u32) {
        ((uid >> 32) as u32, uid as u32)
    }

    fn is_cloud(&self, uid: u64) -> bool {
        self.streams
            .get(Self::stream(uid).0 as usize)
            .is_some_and(|(origin, _, _)| origin.starts_with('c'))
    }

    fn mote(&mut self, i: usize) -> Option<&mut MoteModel> {
        self.motes.get_mut(i)
    }

    /// The gateway's session for mote `i` ended (it said so, or it came back from a
    /// restart without it): the next one starts with no messages dropped at a limit.
    /// Only the gateway's word counts here, not the mote's: a CleanSession=1 CONNECT lost
    /// on the radio ends the session for the mote ([`Oracle::end_session`]), but the
    /// gateway's goes on and is resumed by the mote's next CleanSession=0 CONNECT, with the
    /// drops it already reported (`QueueFull` is reported once per overflow, not per message).
    fn gateway_ended(&mut self, i: usize) {
        self.end_session(i);
        if let Some(m) = self.mote(i) {
            m.lossy = false;
        }
    }

    fn end_session(&mut self, i: usize) {
        let tick = self.tick;
        if let Some(m) = self.mote(i) {
            m.session += 1;
            m.started = tick;
            m.durable = false;
            m.gw_asleep = false;
            m.subs.clear();
            m.seen_in_session.clear();
            m.last_seq.clear();
        }
    }

    // ----- what motes do and are told -----

    /// Mote `i` sent CONNECT: with CleanSession=1 its old session ends now.
    pub fn connect_sent(&mut self, i: usize, clean: bool) {
        if clean {
            self.end_session(i);
            let tick = self.tick;
            if let Some(m) = self.mote(i) {
                m.clean_connect = tick;
            }
        }
    }

    /// Mote `i` got CONNACK accepted.
    pub fn connected(&mut self, i: usize) {
        if let Some(m) = self.mote(i) {
            if !m.clean {
                m.durable = true;
            }
        }
    }

    /// Mote `i` asked to sleep.
    pub fn sleep_sent(&mut self, _i: usize, _duration: u16) {}

    /// Mote `i`'s sleep was acknowledged: its session is durable now, if the gateway put it
    /// to sleep (and did not just tell a stranger to go away).
    pub fn asleep(&mut self, i: usize) {
        if let Some(m) = self.mote(i) {
            if m.gw_asleep {
                m.durable = true;
            }
        }
    }

    /// Mote `i` sent PINGREQ to wake.
    pub fn waking(&mut self, _i: usize) {}

    /// Mote `i`'s DISCONNECT was acknowledged.
    pub fn disconnected(&mut self, i: usize) {
        if self.motes.get(i).is_some_and(|m| m.clean) {
            self.end_session(i);
        }
    }

    /// Mote `i` got SUBACK accepted for `filter`.
    pub fn subscribed(&mut self, i: usize, filter: &str, granted: QoS) {
        let tick = self.tick;
        if let Some(m) = self.mote(i) {
            m.subs.push((filter.to_owned(), granted, tick));
        }
    }

    /// Mote `i`'s QoS 1/2 PUBLISH was acknowledged (PUBACK accepted, or PUBCOMP).
    pub fn uplink_accepted(&mut self, i: usize, uid: u64) {
        self.stats.uplink_acked += 1;
        self.acked_uplink.push((i, uid));
    }

    /// Mote `i`'s QoS 1/2 PUBLISH was refused (a PUBACK with an error code). The mote moves
    /// on to its next message; a delayed radio copy of the refused PUBLISH (DUP) may still
    /// reach the gateway after it, and v1.2 gives the gateway no way to tell that copy from
    /// a new message (it remembers only the last exchange it completed), so it may forward
    /// it after the later one. The order kept per stream is that of the messages the
    /// gateway accepted; a refused one that arrives anyway is an extra, not owed (seed
    /// 10893562971496880071).
    pub fn uplink_refused(&mut self, _i: usize, uid: u64) {
        self.refused_uplink.insert(uid);
    }

    /// Mote `i` received a message (already acknowledged by its client).
    pub fn mote_received(&mut self, i: usize, uid: u64, qos: QoS, repeat: bool) {
        if repeat {
            return;
        }
        self.stats.mote_received += 1;
        let deliveries = self.deliveries.get(&uid).copied().unwrap_or(0);
        let delivered_at = self.delivered_at.get(&uid).copied().unwrap_or(0);
        // Receipts are counted per gateway life: the one that sent the datagram.
        let crashes = self.arrival_epoch.unwrap_or(self.crashes);
        let cloud = self.is_cloud(uid);
        let (stream, seq) = Self::stream(uid);
        let Some(m) = self.motes.get_mut(i) else {
            return;
        };
        // Counted per gateway life and per session: a datagram for a session the mote has
        // discarded can still be on its way (in the radio, or held by the store gate).
        let life = crashes ^ (m.session << 32);
        let entry = m.received.entry(uid).or_insert((0, life));
        if entry.1 != life {
            *entry = (0, life);
        }
        // A datagram the gateway sent for the session the mote has since discarded with a
        // CleanSession=1 CONNECT is stale too: nothing in v1.2 names the session.
        // So is a message the gateway took before this session began: it was queued for an
        // earlier one (its datagram held by the store gate, or in the air) and is no part
        // of this session's order.
        let old_session = self.arrival_sent < m.clean_connect || delivered_at < m.started;
        if old_session || (self.stale_arrival && qos == QoS::ExactlyOnce) {
            // A stale radio copy of a QoS 2 PUBLISH (duplicated, or overtaken by later
            // datagrams) arriving after its exchange ended or was refused: v1.2 gives the
            // client no way to tell (see `World::radio_copy`). It counts as received, not
            // as one of the deliveries the exactly-once rule counts.
            return;
        }
        // Only QoS 2 receipts count towards exactly once: a copy the gateway delivered at
        // QoS 1 (through another subscription or broker) may come twice by QoS 1's rules.
        if qos == QoS::ExactlyOnce {
            entry.0 += 1;
        }
        // Each new delivery by a broker may reach the mote once.
        let twice = qos == QoS::ExactlyOnce && entry.0 > deliveries;
        let receipts = entry.0;
        let first_in_session = m.seen_in_session.insert(uid);
        let mut out_of_order = None;
        // A message a broker sent the gateway again (its acknowledgement was lost with the
        // connection) is a resend, outside the order of first deliveries: its first copy
        // may have been dropped at a queue limit while later ones went through.
        if cloud && first_in_session && qos != QoS::AtMostOnce && deliveries <= 1 {
            let last = m.last_seq.entry(stream).or_insert(0);
            if seq < *last {
                out_of_order = Some(*last);
            }
            *last = (*last).max(seq);
        }
        let client = m.client_id.clone();
        if twice {
            self.fail(format!(
                "QoS 2 message {uid:#x} delivered to {client} {receipts} times since the last restart, for {deliveries} deliveries to the gateway"
            ));
        }
        if let Some(last) = out_of_order {
            self.fail(format!(
                "order: {client} got message {seq} of stream {stream} after message {last} (QoS 1/2, same session)"
            ));
        }
    }

    // ----- what the gateway reports -----

    /// The gateway took a stale radio copy of a PUBLISH from mote `i`.
    pub fn stale_publish_from(&mut self, i: usize) {
        let tick = self.tick;
        self.stale_from.insert(format!("m{i}"), tick);
    }

    /// The radio delivered a stale copy of a QoS 2 PUBLISH carrying `uid` to mote `to` (or,
    /// with `None`, to the gateway).
    pub fn radio_copy(&mut self, to: Option<usize>, uid: u64) {
        *self.copies.entry((to, uid)).or_insert(0) += 1;
    }

    /// Uses up one allowance for a stale radio copy of `uid` to `to`, if there is one.
    fn excused_by_copy(&mut self, to: Option<usize>, uid: u64) -> bool {
        match self.copies.get_mut(&(to, uid)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// An event the core reported.
    pub fn gateway_event(&mut self, event: &Event) {
        match event {
            Event::Connected {
                client_id,
                clean_session,
                resumed,
                ..
            } => {
                let Some(&i) = self.by_client.get(client_id) else {
                    return;
                };
                let durable = self.motes.get(i).is_some_and(|m| m.durable);
                if !*resumed {
                    if !*clean_session && durable {
                        self.fail(format!(
                            "{client_id}: its CleanSession=0 session was not resumed, though nothing ended it"
                        ));
                    }
                    self.gateway_ended(i);
                }
                if let Some(m) = self.mote(i) {
                    m.clean = *clean_session;
                }
            }
            Event::Lost { client_id, .. } | Event::Disconnected { client_id } => {
                if let Some(&i) = self.by_client.get(client_id) {
                    if self.motes.get(i).is_some_and(|m| m.clean) {
                        self.gateway_ended(i);
                    }
                }
            }
            Event::Asleep { client_id, .. } => {
                if let Some(&i) = self.by_client.get(client_id) {
                    if let Some(m) = self.mote(i) {
                        m.gw_asleep = true;
                    }
                }
            }
            Event::QueueFull { client_id, .. } => {
                if let Some(&i) = self.by_client.get(client_id) {
                    if let Some(m) = self.mote(i) {
                        m.lossy = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Gateway restarts so far.
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// The gateway crashed; it is restarting from its store.
    pub fn crashed(&mut self) {
        self.crashes += 1;
        self.stats.crashes += 1;
    }

    /// The gateway was restored: sessions it does not have are over, and a durable one
    /// must be there.
    pub fn restored(&mut self, gw: &Gateway) {
        for i in 0..self.motes.len() {
            let Some(m) = self.motes.get(i) else { continue };
            if gw.session_info(&m.client_id).is_some() {
                continue;
            }
            if m.durable {
                let client = m.client_id.clone();
                self.fail(format!(
                    "{client}: its durable session is gone after a restart"
                ));
            }
            self.gateway_ended(i);
        }
    }

    /// A broker delivered a message to the gateway (a new delivery, not a resend).
    pub fn broker_delivered(&mut self, uid: u64) {
        *self.deliveries.entry(uid).or_insert(0) += 1;
        self.delivered_at.insert(uid, self.tick);
    }

    /// The gateway acknowledged a QoS 1/2 message to a broker: it is owed to every session
    /// whose confirmed subscription (confirmed before the broker took the message) matches
    /// at QoS 1/2.
    pub fn gateway_acked(&mut self, uid: u64, topic: &str, qos: MqttQoS, published_tick: u64) {
        for (i, m) in self.motes.iter().enumerate() {
            let owed = m.subs.iter().any(|(filter, granted, tick)| {
                *tick < published_tick
                    && matches(filter, topic)
                    && qos != MqttQoS::AtMostOnce
                    && *granted != QoS::AtMostOnce
            });
            if owed {
                self.owed.push((i, uid, m.session));
                self.stats.owed += 1;
            }
        }
        if self.owed.len() >= self.prune_owed_at {
            self.prune_owed();
        }
    }

    /// Drops from `owed` what `final_check` would skip whatever happens later: a message
    /// the mote received (receipts are never forgotten), or one owed to a session that has
    /// ended (session numbers only grow) or lost messages at a limit (that lasts until the
    /// session ends). A 5,000-mote run owes millions of messages; kept whole they were most
    /// of its memory.
    fn prune_owed(&mut self) {
        let motes = &self.motes;
        self.owed.retain(|(i, uid, session)| {
            motes
                .get(*i)
                .is_some_and(|m| m.session == *session && !m.lossy && !m.received.contains_key(uid))
        });
        self.prune_owed_at = (self.owed.len() * 2).max(1 << 16);
    }

    /// The remote broker accepted a message from the gateway on connection `conn`.
    pub fn remote_accepted(&mut self, uid: u64, qos: MqttQoS, conn: u64) {
        self.stats.remote_accepted += 1;
        let entry = self.at_remote.entry(uid).or_insert((0, u64::MAX));
        let first = entry.0 == 0;
        // The gateway's half of a client's QoS 2 exchange is not durable (persist.rs): a
        // client that resends its PUBLISH to a gateway restarted meanwhile has it forwarded
        // again, so QoS 2 is at least once across a crash.
        let (born_crashes, born_tick) = self.born.get(&uid).copied().unwrap_or((0, 0));
        let crashed_since = born_crashes < self.crashes;
        // A stale copy of an older PUBLISH from the same mote (DUP=0: new by the spec)
        // takes the client's one exchange slot in the gateway, so the QoS 2 exchange it
        // displaced is forwarded again when the client resends it.
        let origin = self
            .streams
            .get(Self::stream(uid).0 as usize)
            .map(|(o, _, _)| o.clone())
            .unwrap_or_default();
        let displaced = self
            .stale_from
            .get(&origin)
            .is_some_and(|t| *t >= born_tick);
        let twice = qos == MqttQoS::ExactlyOnce
            && !first
            && entry.1 == conn
            && !crashed_since
            && !displaced;
        *entry = (entry.0 + 1, conn);
        if twice && !self.excused_by_copy(None, uid) {
            self.fail(format!(
                "QoS 2 uplink message {uid:#x} reached the broker twice on one connection"
            ));
        }
        if first
            && qos != MqttQoS::AtMostOnce
            && !self.is_cloud(uid)
            && !self.refused_uplink.contains(&uid)
        {
            let (stream, seq) = Self::stream(uid);
            let last = self.remote_last_seq.entry(stream).or_insert(0);
            let behind = seq < *last;
            let was = *last;
            *last = (*last).max(seq);
            if behind {
                self.fail(format!(
                    "order: the broker got message {seq} of mote stream {stream} after message {was}"
                ));
            }
        }
    }

    /// The end of the calm phase: everything acknowledged must have arrived.
    pub fn final_check(&mut self) {
        let missing_up: Vec<(usize, u64)> = self
            .acked_uplink
            .iter()
            .filter(|(_, uid)| !self.at_remote.contains_key(uid))
            .copied()
            .collect();
        if let Some((i, uid)) = missing_up.first() {
            self.fail(format!(
                "lost uplink: mote{i}'s message {uid:#x} was acknowledged to it but never reached the broker ({} such)",
                missing_up.len()
            ));
        }
        let mut missing = Vec::new();
        for (i, uid, session) in &self.owed {
            let Some(m) = self.motes.get(*i) else {
                continue;
            };
            if m.session != *session || m.lossy || m.received.contains_key(uid) {
                continue;
            }
            missing.push((m.client_id.clone(), *uid));
        }
        if let Some((client, uid)) = missing.first() {
            let n = missing.len();
            let some: Vec<String> = missing
                .iter()
                .take(8)
                .map(|(c, u)| format!("{c}:{u:#x}"))
                .collect();
            self.fail(format!(
                "lost downlink: message {uid:#x} was acknowledged to the broker but never reached {client}, whose session went on ({n} such: {})",
                some.join(" ")
            ));
        }
    }
}
