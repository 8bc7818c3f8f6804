//! The world of one run: the real core (`sn_core::Gateway`), the motes, the radio, the two
//! brokers, the store, the clock and the oracle, and the loop that plays the runtime's turn
//! (feed, store, send) for each event in time order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sn_core::{BrokerCommand, BrokerRoute, Destination, Event, Gateway, MqttQoS, PeerAddr};

use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::{RadioFaults, SimConfig};
use crate::mote::{uid_of, Mote, Phase};
use crate::oracle::{Oracle, Stats};
use crate::radio;
use crate::rng::Rng;
use crate::schedule::{Ev, Schedule, Which};
use crate::store::{Mode, SimStore, Writing};

/// The gateway's connection to one broker, as its link (the runtime's MQTT client) keeps it.
#[derive(Debug)]
pub(crate) struct Link {
    /// Connection number: anything in flight on an older one is lost.
    pub(crate) gen: u64,
    /// The core was told Connected on this connection.
    pub(crate) gw_up: bool,
    /// FIFO: the last arrival time scheduled each way (TCP keeps order).
    pub(crate) to_broker_at: Instant,
    pub(crate) to_gw_at: Instant,
    /// A connection attempt is scheduled.
    pub(crate) attempt_pending: bool,
    /// QoS 2 deliveries handed to the core, and those it acknowledged: MQTT's receiver
    /// state, so a resend of one is not handed over twice (the link's duty, MQTT 4.3.3).
    pub(crate) qos2_passed: HashSet<u64>,
    pub(crate) qos2_acked: HashSet<u64>,
}

impl Link {
    fn new(now: Instant) -> Self {
        Link {
            gen: 0,
            gw_up: false,
            to_broker_at: now,
            to_gw_at: now,
            attempt_pending: false,
            qos2_passed: HashSet::new(),
            qos2_acked: HashSet::new(),
        }
    }
}

/// What a delivery id stands for: the message, its topic and QoS, and when the broker
/// took it (oracle ticks).
#[derive(Debug, Clone)]
pub(crate) struct DeliveryInfo {
    pub(crate) uid: u64,
    pub(crate) topic: Arc<str>,
    pub(crate) qos: MqttQoS,
    pub(crate) tick: u64,
}

/// The summary of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated time.
    pub simulated: Duration,
    /// Motes.
    pub motes: usize,
    /// What the oracle counted.
    pub stats: Stats,
    /// Store writes applied and refused.
    pub store_writes: (u64, u64),
    /// Datagrams received by the core.
    pub datagrams: u64,
}

/// One run.
pub struct World {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: Rng,
    pub(crate) clock: Clock,
    pub(crate) gw: Option<Gateway>,
    gw_armed: Option<Instant>,
    pub(crate) motes: Vec<Mote>,
    pub(crate) remote: Broker,
    pub(crate) fallback: Broker,
    pub(crate) links: HashMap<Which, Link>,
    pub(crate) store: SimStore,
    pub(crate) oracle: Oracle,
    pub(crate) schedule: Schedule,
    pub(crate) deliveries: HashMap<(Which, u64), DeliveryInfo>,
    /// When each message was published on each broker (oracle ticks).
    pub(crate) published: HashMap<(Which, u64), u64>,
    pub(crate) uplink_faults: RadioFaults,
    pub(crate) downlink_faults: RadioFaults,
    pub(crate) calm: bool,
    pub(crate) refuse_until: Instant,
    pub(crate) slow_until: Instant,
    turns: u64,
    events: u64,
    datagrams: u64,
    end: Instant,
    buf: BytesMut,
    /// `SIM_TRACE=all` or `SIM_TRACE=moteN`: print what happens (to debug a seed).
    trace: Option<String>,
    /// Datagrams sent to (motes) or from (the gateway's side) each address, and the highest
    /// number that arrived: one arriving below it was overtaken.
    radio_sent: HashMap<PeerAddr, u64>,
    radio_arrived: HashMap<(bool, PeerAddr), u64>,
    /// The mote whose datagram is being handled.
    from_mote: Option<usize>,
}

impl World {
    /// The world of `cfg`, at simulated time zero.
    pub fn new(cfg: SimConfig) -> Self {
        let clock = Clock::new();
        let now = clock.now();
        let mut rng = Rng::new(cfg.seed);
        let motes: Vec<Mote> = (0..cfg.motes)
            .map(|i| Mote::new(i, &mut rng, cfg.core.retry_interval))
            .collect();
        let ids: Vec<Arc<str>> = motes.iter().map(|m| m.client_id.clone()).collect();
        let mut links = HashMap::new();
        links.insert(Which::Remote, Link::new(now));
        links.insert(Which::Fallback, Link::new(now));
        let end = now + cfg.duration + cfg.calm;
        let mut world = World {
            uplink_faults: cfg.faults.uplink,
            downlink_faults: cfg.faults.downlink,
            gw: Some(Gateway::new(cfg.core.clone())),
            gw_armed: None,
            motes,
            remote: Broker::new(),
            fallback: Broker::new(),
            links,
            store: SimStore::new(),
            oracle: Oracle::new(&ids),
            schedule: Schedule::default(),
            deliveries: HashMap::new(),
            published: HashMap::new(),
            calm: false,
            refuse_until: now,
            slow_until: now,
            turns: 0,
            events: 0,
            datagrams: 0,
            end,
            buf: BytesMut::with_capacity(2048),
            trace: std::env::var("SIM_TRACE").ok(),
            radio_sent: HashMap::new(),
            radio_arrived: HashMap::new(),
            from_mote: None,
            cfg,
            rng,
            clock,
        };
        world.start();
        world
    }

    fn start(&mut self) {
        let now = self.clock.now();
        for i in 0..self.motes.len() {
            let at = now + self.rng.secs(0, 60);
            self.schedule_act_at(i, at);
        }
        for p in 0..self.cfg.publishers {
            let at = now + self.rng.secs(1, 60);
            self.schedule.push(at, Ev::CloudPublish(p));
        }
        self.schedule_faults();
        self.schedule.push(now, Ev::LinkAttempt(Which::Remote));
        self.schedule.push(now, Ev::LinkAttempt(Which::Fallback));
        self.schedule.push(now + self.cfg.duration, Ev::Calm);
    }

    /// Runs to the end; `progress` is called about every simulated hour.
    pub fn run(&mut self, mut progress: impl FnMut(&World)) -> Result<Summary, String> {
        let start = self.clock.now();
        let mut next_report = start + Duration::from_secs(3600);
        while let Some((at, ev)) = self.schedule.pop() {
            if at > self.end {
                break;
            }
            self.clock.advance_to(at);
            self.oracle.now = self.clock.elapsed();
            self.oracle.tick += 1;
            self.events += 1;
            self.handle(ev);
            if self.oracle.failure().is_some() {
                break;
            }
            if at >= next_report {
                next_report += Duration::from_secs(3600);
                progress(self);
            }
        }
        if self.oracle.failure().is_none() {
            self.oracle.final_check();
        }
        match self.oracle.failure() {
            Some(failure) => Err(failure.to_owned()),
            None => Ok(self.summary()),
        }
    }

    /// What happened so far.
    pub fn summary(&self) -> Summary {
        Summary {
            seed: self.cfg.seed,
            events: self.events,
            simulated: self.clock.elapsed(),
            motes: self.motes.len(),
            stats: self.oracle.stats,
            store_writes: (self.store.writes, self.store.failures),
            datagrams: self.datagrams,
        }
    }

    /// Prints a line when tracing covers `who` (a client id, or "" for the gateway's side).
    pub(crate) fn trace(&self, who: &str, what: impl FnOnce() -> String) {
        if let Some(filter) = &self.trace {
            if filter == "all" || who.is_empty() || filter == who {
                eprintln!(
                    "{:>10.3} #{} {who:>8} {}",
                    self.clock.elapsed().as_secs_f64(),
                    self.oracle.tick,
                    what()
                );
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.clock.now();
        if self.trace.is_some() {
            self.trace_ev(&ev);
        }
        match ev {
            Ev::ToGateway {
                from,
                bytes,
                copy,
                seq,
            } => {
                self.from_mote = self.mote_at(from.addr);
                if self.overtaken(true, from.addr, seq) || copy {
                    self.radio_copy(None, &bytes);
                }
                if let Some(gw) = self.gw.as_mut() {
                    self.datagrams += 1;
                    gw.handle_datagram(now, from, &bytes);
                    self.gw_turn();
                }
            }
            Ev::ToMote {
                addr,
                bytes,
                copy,
                seq,
                epoch,
                sent,
            } => {
                let stale = self.overtaken(false, addr, seq) || copy;
                self.oracle.stale_arrival = stale;
                self.oracle.arrival_sent = sent;
                self.oracle.arrival_epoch = Some(epoch);
                self.arrive_at_mote(addr, &bytes);
                self.oracle.stale_arrival = false;
                self.oracle.arrival_epoch = None;
            }
            Ev::MoteTimer(i) => {
                if let Some(mote) = self.motes.get_mut(i) {
                    mote.armed = None;
                    mote.client.handle_timeout(now);
                }
                self.mote_io(i);
            }
            Ev::MoteAct(i, token) => {
                let motes = self.motes.len();
                let Some(mote) = self.motes.get_mut(i) else {
                    return;
                };
                if mote.act_token != token {
                    return;
                }
                if let Some(after) = mote.act(now, &mut self.rng, &mut self.oracle, motes) {
                    self.schedule_act(i, after);
                }
                self.mote_io(i);
            }
            Ev::GwTimer => {
                self.gw_armed = None;
                if let Some(gw) = self.gw.as_mut() {
                    gw.handle_timeout(now);
                    self.gw_turn();
                }
            }
            Ev::ToBroker(which, gen, command) => self.arrive_at_broker(which, gen, command),
            Ev::FromBroker(which, gen, event) => self.arrive_from_broker(which, gen, event),
            Ev::LinkAttempt(which) => self.link_attempt(which),
            Ev::StoreDone => {
                if let Some(writing) = self.store.writing.take() {
                    self.store.apply(&writing.ops);
                    if let Some(gw) = self.gw.as_mut() {
                        gw.handle_stored(writing.upto);
                    }
                }
                self.gw_turn();
            }
            Ev::StoreRetry => {
                self.store.retry_at = None;
                self.gw_turn();
            }
            Ev::Restart => self.restart(),
            Ev::CloudPublish(p) => self.cloud_publish(p),
            Ev::Fault(fault) => self.fault(fault),
            Ev::FaultEnd(fault) => self.fault_end(fault),
            Ev::Calm => self.calm_down(),
        }
    }

    // ----- the gateway's turn -----

    /// Plays the runtime after something was fed to the core: store, then send.
    pub(crate) fn gw_turn(&mut self) {
        let now = self.clock.now();
        let Some(gw) = self.gw.as_mut() else { return };
        self.turns += 1;
        if let Some(batch) = gw.poll_store() {
            if self.trace.is_some() {
                for op in &batch.ops {
                    eprintln!("{:>10.3} store {op:?}", self.clock.elapsed().as_secs_f64());
                }
            }
            self.store.unwritten.extend(batch.ops);
            self.store.unwritten_upto = Some(batch.id);
        }
        if self.store.writing.is_none() && self.store.retry_at.is_none() {
            if let Some(upto) = self.store.unwritten_upto {
                match self.store.mode {
                    Mode::Normal => {
                        let ops = std::mem::take(&mut self.store.unwritten);
                        self.store.apply(&ops);
                        self.store.unwritten_upto = None;
                        gw.handle_stored(upto);
                    }
                    Mode::Slow => {
                        let done_at = now
                            + self
                                .rng
                                .between(Duration::from_millis(50), Duration::from_secs(3));
                        self.store.writing = Some(Writing {
                            ops: std::mem::take(&mut self.store.unwritten),
                            upto,
                            done_at,
                        });
                        self.store.unwritten_upto = None;
                        self.schedule.push(done_at, Ev::StoreDone);
                    }
                    Mode::Failing => {
                        self.store.failures += 1;
                        let at = now + self.rng.secs(1, 10);
                        self.store.retry_at = Some(at);
                        self.schedule.push(at, Ev::StoreRetry);
                    }
                }
            }
        }
        // Datagrams for the motes.
        while let Some(transmit) = gw.poll_transmit(&mut self.buf) {
            let bytes = self.buf.split().to_vec();
            if let Destination::Unicast(addr) = transmit.destination {
                let arrivals = radio::arrivals(&mut self.rng, now, &self.downlink_faults);
                if let Some(filter) = &self.trace {
                    // Every datagram when it leaves the gateway (the store gate has let it
                    // out), with how many copies the radio will deliver: arrivals alone
                    // hide what was sent when, and what was lost.
                    let who = mote_of(addr)
                        .map(|i| format!("mote{i}"))
                        .unwrap_or_default();
                    if filter == "all" || *filter == who {
                        let p = sn_codec::v12::Packet::decode(&bytes)
                            .map(|p| format!("{p:?}"))
                            .unwrap_or_default();
                        eprintln!(
                            "{:>10.3} #{} {who:>8}    gw=> {p} to {addr}, {} copies",
                            self.clock.elapsed().as_secs_f64(),
                            self.oracle.tick,
                            arrivals.len()
                        );
                    }
                }
                let seq = next_seq(&mut self.radio_sent, addr);
                let epoch = self.oracle.crashes();
                let sent = self.oracle.tick;
                for (at, copy) in arrivals {
                    self.schedule.push(
                        at,
                        Ev::ToMote {
                            addr,
                            bytes: bytes.clone(),
                            copy,
                            seq,
                            epoch,
                            sent,
                        },
                    );
                }
            }
        }
        // Commands for the brokers.
        let remote_ready = self.links.get(&Which::Remote).is_some_and(|l| l.gw_up);
        let mut commands = Vec::new();
        while let Some(routed) = gw.poll_broker(remote_ready) {
            commands.push(routed);
        }
        let mut events = Vec::new();
        while let Some(event) = gw.poll_event() {
            events.push(event);
        }
        self.check_limits();
        if let Some(at) = self.gw.as_ref().and_then(Gateway::poll_timeout) {
            if self.gw_armed != Some(at) {
                self.gw_armed = Some(at);
                self.schedule.push(at.max(now), Ev::GwTimer);
            }
        }
        for (route, command) in commands {
            let which = match route {
                BrokerRoute::Remote => Which::Remote,
                BrokerRoute::Fallback => Which::Fallback,
                BrokerRoute::Mote(_) => continue,
            };
            if let BrokerCommand::Ack { delivery } = &command {
                if let Some(info) = self.deliveries.get(&(which, delivery.0)).cloned() {
                    self.oracle
                        .gateway_acked(info.uid, &info.topic, info.qos, info.tick);
                    if info.qos == MqttQoS::ExactlyOnce {
                        if let Some(link) = self.links.get_mut(&which) {
                            link.qos2_acked.insert(delivery.0);
                        }
                    }
                }
            }
            self.send_to_broker(which, command);
        }
        for event in events {
            self.trace("", || format!("event {event:?}"));
            self.oracle.gateway_event(&event);
            if let Event::Connected {
                client_id,
                resumed: false,
                ..
            } = &event
            {
                if let Some(mote) = mote_index(client_id).and_then(|i| self.motes.get_mut(i)) {
                    mote.forget_session();
                }
            }
        }
    }

    /// The limits of the configuration hold (queues, sessions, held bytes, the spool).
    fn check_limits(&mut self) {
        let Some(gw) = self.gw.as_ref() else { return };
        let core = &self.cfg.core;
        let mut broken = Vec::new();
        if gw.queued_bytes() > core.max_queued_bytes_total {
            broken.push(format!(
                "queued bytes {} > max_queued_bytes_total {}",
                gw.queued_bytes(),
                core.max_queued_bytes_total
            ));
        }
        if gw.held_bytes() > core.max_state_bytes {
            broken.push(format!(
                "held bytes {} > max_state_bytes {}",
                gw.held_bytes(),
                core.max_state_bytes
            ));
        }
        if gw.session_count() > core.max_sessions {
            broken.push(format!(
                "{} sessions > max_sessions {}",
                gw.session_count(),
                core.max_sessions
            ));
        }
        if self.turns.is_multiple_of(64) {
            let gauges = gw.gauges();
            if gauges.spool_bytes > core.spool.max_bytes {
                broken.push(format!(
                    "spool bytes {} > [spool] max_bytes {}",
                    gauges.spool_bytes, core.spool.max_bytes
                ));
            }
            for mote in &self.motes {
                if let Some(info) = gw.session_info(&mote.client_id) {
                    if info.queued > core.max_queued_per_session
                        || info.queued_bytes > core.max_queued_bytes_per_session
                    {
                        broken.push(format!(
                            "{}: {} messages / {} bytes queued, over max_queued_per_session {} / max_queued_bytes_per_session {}",
                            mote.client_id, info.queued, info.queued_bytes, core.max_queued_per_session, core.max_queued_bytes_per_session
                        ));
                    }
                }
            }
        }
        for what in broken {
            self.oracle.fail(format!("limit: {what}"));
        }
    }

    /// Whether a datagram arriving now was overtaken by one sent after it (the same way).
    fn overtaken(&mut self, to_gateway: bool, addr: PeerAddr, seq: u64) -> bool {
        let highest = self.radio_arrived.entry((to_gateway, addr)).or_insert(0);
        let overtaken = seq < *highest;
        *highest = (*highest).max(seq);
        overtaken
    }

    /// The radio delivered a second copy of a datagram, or one that was overtaken. A stale QoS 2
    /// PUBLISH that arrives after its exchange ended is, by the spec, a new message: a
    /// v1.2 receiver forgets the MsgId at PUBREL (the client) or takes DUP=0 as new (the
    /// gateway). No receiver can tell, so the oracle allows one more receipt of it.
    fn radio_copy(&mut self, to: Option<usize>, bytes: &[u8]) {
        if let Ok(sn_codec::v12::Packet::Publish(_)) = sn_codec::v12::Packet::decode(bytes) {
            if to.is_none() {
                if let Some(i) = self.from_mote {
                    self.oracle.stale_publish_from(i);
                }
            }
        }
        if let Ok(sn_codec::v12::Packet::Publish(publish)) = sn_codec::v12::Packet::decode(bytes) {
            if publish.qos == sn_codec::QoS::ExactlyOnce {
                if let Some(uid) = uid_of(publish.data) {
                    self.oracle.radio_copy(to, uid);
                }
            }
        }
    }

    // ----- motes -----

    fn schedule_act_at(&mut self, i: usize, at: Instant) {
        if let Some(mote) = self.motes.get_mut(i) {
            mote.act_token += 1;
            self.schedule.push(at, Ev::MoteAct(i, mote.act_token));
        }
    }

    pub(crate) fn schedule_act(&mut self, i: usize, after: Duration) {
        let at = self.clock.now() + after;
        self.schedule_act_at(i, at);
    }

    /// The mote an address belongs to (10.x.y.z: mote x.y.z), whatever its port.
    fn mote_at(&self, addr: PeerAddr) -> Option<usize> {
        mote_of(addr)
    }

    fn arrive_at_mote(&mut self, addr: PeerAddr, bytes: &[u8]) {
        let now = self.clock.now();
        let Some(i) = self.mote_at(addr) else { return };
        let Some(mote) = self.motes.get_mut(i) else {
            return;
        };
        // Nobody listens at an old address, nor on a radio that is off.
        if mote.addr != addr || !mote.listening() {
            return;
        }
        let _ = mote.client.handle_datagram(now, bytes);
        self.mote_io(i);
    }

    /// After a mote's client was fed: its answers, its datagrams, its timer.
    fn mote_io(&mut self, i: usize) {
        let now = self.clock.now();
        let Some(mote) = self.motes.get_mut(i) else {
            return;
        };
        let next = mote.drain_events(now, &mut self.rng, &mut self.oracle);
        let peer = mote.peer();
        let on_air = !matches!(mote.phase, Phase::Silent);
        let mut buf = Vec::new();
        while mote.client.poll_transmit(&mut buf) {
            if !on_air {
                continue;
            }
            let seq = next_seq(&mut self.radio_sent, peer.addr);
            for (at, copy) in radio::arrivals(&mut self.rng, now, &self.uplink_faults) {
                self.schedule.push(
                    at,
                    Ev::ToGateway {
                        from: peer,
                        bytes: buf.clone(),
                        copy,
                        seq,
                    },
                );
            }
        }
        if let Some(at) = mote.client.poll_timeout() {
            if mote.armed != Some(at) {
                mote.armed = Some(at);
                self.schedule.push(at.max(now), Ev::MoteTimer(i));
            }
        }
        if let Some(after) = next {
            self.schedule_act(i, after);
        }
    }

    // ----- crash and restart -----

    /// The gateway process dies at a turn boundary.
    pub(crate) fn crash(&mut self) {
        if self.gw.is_none() {
            return;
        }
        self.gw = None;
        self.gw_armed = None;
        self.oracle.crashed();
        let landed = self.rng.chance(0.5);
        self.store.crash(landed);
        for which in [Which::Remote, Which::Fallback] {
            if let Some(link) = self.links.get_mut(&which) {
                link.gen += 1;
                link.gw_up = false;
                link.qos2_passed.clear();
                link.qos2_acked.clear();
            }
        }
        self.remote.disconnect();
        // The embedded broker lives in the gateway's process: it is reborn empty.
        self.fallback = Broker::new();
        self.deliveries
            .retain(|(which, _), _| *which == Which::Remote);
        self.published
            .retain(|(which, _), _| *which == Which::Remote);
        let at = self.clock.now() + self.rng.secs(1, 30);
        self.schedule.push(at, Ev::Restart);
    }

    fn restart(&mut self) {
        let now = self.clock.now();
        let mut gw = Gateway::new(self.cfg.core.clone());
        gw.restore(now, self.store.load());
        self.oracle.restored(&gw);
        self.gw = Some(gw);
        self.gw_turn();
        for which in [Which::Remote, Which::Fallback] {
            self.schedule_attempt(which, Duration::from_millis(100));
        }
    }

    // ----- cloud applications -----

    fn cloud_publish(&mut self, p: usize) {
        if self.calm {
            return;
        }
        let topic = format!("dn/{}", self.rng.index(3));
        let qos = self.rng.pick(
            &[
                MqttQoS::AtMostOnce,
                MqttQoS::AtLeastOnce,
                MqttQoS::ExactlyOnce,
            ],
            MqttQoS::AtMostOnce,
        );
        let uid = self.oracle.new_message(&format!("c{p}"), &topic);
        let payload = bytes::Bytes::from(crate::mote::payload(uid, &mut self.rng));
        if self.remote.up {
            self.broker_publish(Which::Remote, &Arc::from(topic), &payload, qos);
        }
        let at = self.clock.now() + self.rng.secs(5, 120);
        self.schedule.push(at, Ev::CloudPublish(p));
    }

    /// The calm phase: every fault ends, every mote comes back and stays, nothing new is
    /// published; whatever is owed must arrive before the end.
    fn calm_down(&mut self) {
        self.calm = true;
        self.uplink_faults.loss = 0.0;
        self.uplink_faults.duplicate = 0.0;
        self.downlink_faults.loss = 0.0;
        self.downlink_faults.duplicate = 0.0;
        let now = self.clock.now();
        self.refuse_until = now;
        self.slow_until = now;
        self.store.mode = Mode::Normal;
        if !self.remote.up {
            self.remote.up = true;
        }
        for which in [Which::Remote, Which::Fallback] {
            self.schedule_attempt(which, Duration::from_secs(1));
        }
        for i in 0..self.motes.len() {
            let Some(mote) = self.motes.get_mut(i) else {
                continue;
            };
            mote.calm_down();
            if matches!(mote.phase, Phase::Off | Phase::Sleeping | Phase::Silent) {
                let after = self.rng.secs(1, 120);
                self.schedule_act(i, after);
            }
        }
        self.gw_turn();
    }
}

impl World {
    fn trace_ev(&self, ev: &Ev) {
        let decode = |bytes: &[u8]| match sn_codec::v12::Packet::decode(bytes) {
            Ok(p) => format!("{p:?}"),
            Err(e) => format!("undecodable: {e}"),
        };
        let mote_at = |addr: &PeerAddr| match addr {
            PeerAddr::Ip(sock) => match sock.ip() {
                std::net::IpAddr::V4(ip) => format!("mote{}", u32::from(ip) & 0x00FF_FFFF),
                std::net::IpAddr::V6(_) => String::new(),
            },
            PeerAddr::Radio(_) => String::new(),
        };
        match ev {
            Ev::ToGateway { from, bytes, .. } => self.trace(&mote_at(&from.addr), || {
                format!("-> gw  {} from {}", decode(bytes), from.addr)
            }),
            Ev::ToMote {
                addr, bytes, sent, ..
            } => self.trace(&mote_at(addr), || {
                format!("<- gw  {} to {addr} sent #{sent}", decode(bytes))
            }),
            Ev::ToBroker(which, gen, command) => {
                self.trace("", || format!("gw -> {which:?}#{gen} {command:?}"))
            }
            Ev::FromBroker(which, gen, event) => {
                self.trace("", || format!("{which:?}#{gen} -> gw {event:?}"))
            }
            Ev::MoteTimer(_) | Ev::GwTimer | Ev::CloudPublish(_) => {}
            Ev::MoteAct(i, _) => self.trace(&format!("mote{i}"), || {
                format!("act in {:?}", self.motes.get(*i).map(|m| m.phase))
            }),
            other => self.trace("", || format!("{other:?}")),
        }
    }
}

/// The next number of a datagram sent to or from `addr`.
fn next_seq(sent: &mut HashMap<PeerAddr, u64>, addr: PeerAddr) -> u64 {
    let n = sent.entry(addr).or_insert(0);
    *n += 1;
    *n
}

/// The mote an address belongs to (10.x.y.z: mote x.y.z), whatever its port.
fn mote_of(addr: PeerAddr) -> Option<usize> {
    let PeerAddr::Ip(sock) = addr else {
        return None;
    };
    let std::net::IpAddr::V4(ip) = sock.ip() else {
        return None;
    };
    usize::try_from(u32::from(ip) & 0x00FF_FFFF).ok()
}

/// The mote index of a client id `moteN`.
pub(crate) fn mote_index(client_id: &str) -> Option<usize> {
    client_id.strip_prefix("mote")?.parse().ok()
}

/// The uid in a payload, for the oracle.
pub(crate) fn uid(payload: &[u8]) -> Option<u64> {
    uid_of(payload)
}
