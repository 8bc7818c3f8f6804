//! A simulated mote: the real MQTT-SN client machine (`sn-client`, on sn-codec) driven by a
//! random but seeded behaviour: connect with CleanSession 0 or 1, register, subscribe by
//! name and by wildcard, publish at QoS -1/0/1/2 (the client retries per T_retry/N_retry),
//! sleep and wake with PINGREQ, lose the radio, come back from a new address, disconnect.
//! It tells the oracle what it sent and what it was told.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sn_client::{Client, ClientConfig, ConnectOptions, Event, Request, Timing};
use sn_codec::v12::{PublishTopic, ReturnCode, SubscribeTopic};
use sn_codec::QoS;
use sn_core::{LinkId, Peer, PeerAddr};

use crate::oracle::Oracle;
use crate::rng::Rng;

/// The link all motes are on.
pub const LINK: LinkId = LinkId(0);

/// Where a mote is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No session in use (never connected, disconnected, or gave the gateway up).
    Off,
    /// CONNECT sent.
    Connecting,
    /// Connected.
    Active,
    /// DISCONNECT with a duration sent.
    GoingToSleep,
    /// Asleep, radio off.
    Sleeping,
    /// PINGREQ with its client id sent; receiving what was kept.
    Waking,
    /// DISCONNECT sent.
    Disconnecting,
    /// The radio is gone (out of range, power loss of the radio).
    Silent,
}

/// What the mote's outstanding request is, for its own bookkeeping.
#[derive(Debug, Clone)]
enum Pending {
    Publish { msg_id: u16, uid: u64 },
    Register { msg_id: u16, topic: String },
    Subscribe { msg_id: u16, filter: String },
}

/// One mote.
#[derive(Debug)]
pub struct Mote {
    /// Its number.
    pub index: usize,
    /// Its client id.
    pub client_id: Arc<str>,
    /// The protocol machine.
    pub client: Client,
    /// Where it is now.
    pub addr: PeerAddr,
    port: u16,
    /// Its phase.
    pub phase: Phase,
    /// The CleanSession flag it usually connects with.
    prefers_clean: bool,
    registered: HashMap<String, u16>,
    subscribed: Vec<String>,
    pending: Option<Pending>,
    /// The deadline it has in the schedule.
    pub armed: Option<Instant>,
    /// The token of its scheduled action (an older one is stale).
    pub act_token: u64,
    /// The calm phase: stay connected, publish nothing, collect what is owed.
    pub calm: bool,
    /// Its client gave the gateway up (or was told DISCONNECT) while its radio was gone.
    lost_while_silent: bool,
}

/// Filters motes subscribe to (names and wildcards); `{m}` is another mote.
const FILTERS: [&str; 6] = ["dn/0", "dn/1", "dn/+", "dn/#", "up/+/0", "up/m{m}/1"];

impl Mote {
    /// Mote `index`, not connected yet.
    pub fn new(index: usize, rng: &mut Rng, retry: Duration) -> Self {
        let client_id: Arc<str> = Arc::from(format!("mote{index}"));
        let mut config = ClientConfig::new(client_id.to_string());
        config.timing = Timing::new(retry, 3);
        let port = 1000 + u16::try_from(index % 60_000).unwrap_or(0);
        Mote {
            index,
            client: Client::new(config),
            addr: Self::address(index, port),
            port,
            client_id,
            phase: Phase::Off,
            prefers_clean: rng.chance(0.4),
            registered: HashMap::new(),
            subscribed: Vec::new(),
            pending: None,
            armed: None,
            act_token: 0,
            calm: false,
            lost_while_silent: false,
        }
    }

    fn address(index: usize, port: u16) -> PeerAddr {
        let i = u32::try_from(index).unwrap_or(0);
        PeerAddr::Ip(SocketAddr::from((Ipv4Addr::from(0x0A00_0000 | i), port)))
    }

    /// The mote's peer as the gateway sees it.
    pub fn peer(&self) -> Peer {
        Peer {
            link: LINK,
            addr: self.addr,
        }
    }

    /// Whether its radio receives.
    pub fn listening(&self) -> bool {
        !matches!(self.phase, Phase::Sleeping | Phase::Silent)
    }

    /// A new address (NAT rebinding, another cell).
    fn move_address(&mut self) {
        self.port = self.port.wrapping_add(7919) | 1;
        self.addr = Self::address(self.index, self.port);
    }

    fn topic(&self, k: usize) -> String {
        format!("up/m{}/{k}", self.index)
    }

    fn go_off(&mut self) {
        self.client.abandon();
        self.pending = None;
        self.phase = Phase::Off;
    }

    fn connect(&mut self, now: Instant, rng: &mut Rng, oracle: &mut Oracle, clean: bool) {
        self.client.abandon();
        self.pending = None;
        let options = ConnectOptions {
            keep_alive: u16::try_from(rng.secs(30, 300).as_secs()).unwrap_or(60),
            clean_session: clean,
            will: None,
        };
        if self.client.connect(now, &options).is_ok() {
            self.phase = Phase::Connecting;
            if clean {
                self.registered.clear();
                self.subscribed.clear();
            }
            oracle.connect_sent(self.index, clean);
        }
    }

    /// Its scheduled action is due: returns when the next one is, if any (otherwise an
    /// answer or a timeout moves it on).
    pub fn act(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        oracle: &mut Oracle,
        motes: usize,
    ) -> Option<Duration> {
        match self.phase {
            Phase::Off => {
                let clean = !self.calm && (rng.chance(0.1) != self.prefers_clean);
                if rng.chance(0.05) && !self.calm {
                    self.move_address();
                }
                self.connect(now, rng, oracle, clean);
                None
            }
            Phase::Silent => {
                // Back in range, perhaps from elsewhere. A client that gave the gateway up
                // meanwhile connects again; one that did not carries on.
                if rng.chance(0.5) {
                    self.move_address();
                }
                if std::mem::take(&mut self.lost_while_silent) {
                    let clean = !self.calm && (rng.chance(0.1) != self.prefers_clean);
                    self.connect(now, rng, oracle, clean);
                    return None;
                }
                self.phase = Phase::Active;
                Some(rng.secs(0, 5))
            }
            Phase::Sleeping => {
                if !self.calm && rng.chance(0.15) {
                    // Wakes to connect again instead of to collect.
                    self.connect(now, rng, oracle, false);
                    return None;
                }
                if rng.chance(0.05) && !self.calm {
                    self.move_address();
                }
                if self.client.wake(now).is_ok() {
                    self.phase = Phase::Waking;
                    oracle.waking(self.index);
                }
                None
            }
            Phase::Active if self.client.pending().is_none() => {
                self.active_action(now, rng, oracle, motes)
            }
            Phase::Active => Some(rng.secs(1, 5)),
            // Waiting for an answer.
            _ => None,
        }
    }

    fn active_action(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        oracle: &mut Oracle,
        motes: usize,
    ) -> Option<Duration> {
        if self.calm {
            return Some(rng.secs(20, 60));
        }
        let roll = rng.below(100);
        match roll {
            0..=44 => self.publish(now, rng, oracle),
            45..=54 => {
                let other = rng.index(motes.max(1));
                let filter = rng
                    .pick(&FILTERS, "dn/0")
                    .replace("{m}", &other.to_string());
                if !self.subscribed.contains(&filter) {
                    let qos = rng.pick(
                        &[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce],
                        QoS::AtMostOnce,
                    );
                    if let Ok(msg_id) =
                        self.client
                            .subscribe(now, SubscribeTopic::Name(filter.as_bytes()), qos)
                    {
                        self.pending = Some(Pending::Subscribe { msg_id, filter });
                        return None;
                    }
                }
                Some(rng.secs(1, 30))
            }
            55..=62 => {
                let duration = u16::try_from(rng.secs(20, 900).as_secs()).unwrap_or(60);
                if self.client.sleep(now, duration).is_ok() {
                    self.phase = Phase::GoingToSleep;
                    oracle.sleep_sent(self.index, duration);
                }
                None
            }
            63..=65 => {
                if self.client.disconnect(now).is_ok() {
                    self.phase = Phase::Disconnecting;
                }
                None
            }
            66..=68 => {
                self.client.abandon();
                self.pending = None;
                self.phase = Phase::Silent;
                Some(rng.secs(10, 600))
            }
            69..=70 => {
                // Comes back from a new address at once: CONNECT from there.
                self.move_address();
                let clean = rng.chance(0.2) != self.prefers_clean;
                self.connect(now, rng, oracle, clean);
                None
            }
            _ => Some(rng.secs(1, 30)),
        }
    }

    fn publish(&mut self, now: Instant, rng: &mut Rng, oracle: &mut Oracle) -> Option<Duration> {
        let topic = self.topic(rng.index(2));
        let qos = match rng.below(20) {
            0 => QoS::MinusOne,
            1..=4 => QoS::AtMostOnce,
            5..=12 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        if qos == QoS::MinusOne {
            let uid = oracle.new_message(&format!("m{}", self.index), &topic);
            let payload = payload(uid, rng);
            let _ = self.client.publish(
                now,
                PublishTopic::LongName(topic.as_bytes()),
                qos,
                false,
                &payload,
            );
            return Some(rng.secs(1, 30));
        }
        let Some(&id) = self.registered.get(&topic) else {
            if let Ok(msg_id) = self.client.register(now, &topic) {
                self.pending = Some(Pending::Register { msg_id, topic });
                return None;
            }
            return Some(rng.secs(1, 5));
        };
        let uid = oracle.new_message(&format!("m{}", self.index), &topic);
        let payload = payload(uid, rng);
        match self
            .client
            .publish(now, PublishTopic::Normal(id), qos, false, &payload)
        {
            Ok(msg_id) if qos != QoS::AtMostOnce => {
                self.pending = Some(Pending::Publish { msg_id, uid });
                None
            }
            _ => Some(rng.secs(1, 30)),
        }
    }

    /// Handles what the client machine reports; returns when to act next, if the answer
    /// calls for it.
    pub fn drain_events(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        oracle: &mut Oracle,
    ) -> Option<Duration> {
        let mut next = None;
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::ConnAck(ReturnCode::Accepted) if self.phase == Phase::Connecting => {
                    self.phase = Phase::Active;
                    oracle.connected(self.index);
                    next = Some(rng.secs(0, 5));
                }
                Event::ConnAck(_) => {
                    self.go_off();
                    next = Some(rng.secs(5, 30));
                }
                Event::RegAck {
                    msg_id,
                    topic_id,
                    code,
                } => {
                    if let Some(Pending::Register { msg_id: m, topic }) = self.pending.take() {
                        if m == msg_id && code == ReturnCode::Accepted {
                            self.registered.insert(topic, topic_id);
                        }
                    }
                    next = Some(rng.secs(0, 3));
                }
                Event::Published { msg_id, code } => {
                    if let Some(Pending::Publish { msg_id: m, uid }) = self.pending.take() {
                        if m == msg_id {
                            match code {
                                ReturnCode::Accepted => oracle.uplink_accepted(self.index, uid),
                                // A session the gateway no longer knows: register again.
                                ReturnCode::InvalidTopicId => {
                                    oracle.uplink_refused(self.index, uid);
                                    self.registered.clear();
                                }
                                _ => oracle.uplink_refused(self.index, uid),
                            }
                        }
                    }
                    next = Some(rng.secs(0, 20));
                }
                Event::SubAck(suback) => {
                    if let Some(Pending::Subscribe { msg_id, filter }) = self.pending.take() {
                        if msg_id == suback.msg_id && suback.return_code == ReturnCode::Accepted {
                            oracle.subscribed(self.index, &filter, suback.qos);
                            self.subscribed.push(filter);
                        }
                    }
                    next = Some(rng.secs(0, 10));
                }
                Event::Message(message) => {
                    if let Some(uid) = uid_of(&message.payload) {
                        oracle.mote_received(self.index, uid, message.qos, message.repeat);
                    }
                }
                Event::DisconnectAck => match self.phase {
                    Phase::GoingToSleep => {
                        self.phase = Phase::Sleeping;
                        oracle.asleep(self.index);
                        next = Some(rng.secs(20, 900));
                    }
                    _ => {
                        oracle.disconnected(self.index);
                        self.go_off();
                        next = Some(rng.secs(5, 300));
                    }
                },
                Event::PingResp if self.phase == Phase::Waking => {
                    // Awake state ends with PINGRESP: back to sleep, or connect to stay up.
                    if self.calm || rng.chance(0.3) {
                        self.connect(now, rng, oracle, false);
                    } else {
                        self.phase = Phase::Sleeping;
                        next = Some(rng.secs(20, 900));
                    }
                }
                Event::TimedOut(request) => {
                    self.pending = None;
                    match request {
                        Request::Publish { .. }
                        | Request::Register { .. }
                        | Request::Subscribe { .. }
                        | Request::PubRel { .. }
                        | Request::Ping => {
                            next = Some(rng.secs(1, 10));
                        }
                        _ => {
                            self.go_off();
                            next = Some(rng.secs(1, 30));
                        }
                    }
                }
                Event::GatewayLost { .. } | Event::Disconnected { .. } => {
                    if self.phase == Phase::Silent {
                        self.lost_while_silent = true;
                    }
                    if matches!(
                        self.phase,
                        Phase::Active | Phase::Waking | Phase::Connecting
                    ) {
                        self.go_off();
                        next = Some(rng.secs(1, 30));
                    }
                }
                _ => {}
            }
        }
        next
    }

    /// The calm phase starts: whatever it does, it ends up connected.
    pub fn calm_down(&mut self) {
        self.calm = true;
    }

    /// The gateway did not resume its session: the mote's topic ids and subscriptions are gone.
    pub fn forget_session(&mut self) {
        self.registered.clear();
        self.subscribed.clear();
    }
}

/// A payload carrying the message's uid, padded to a random length.
pub fn payload(uid: u64, rng: &mut Rng) -> Vec<u8> {
    let mut payload = uid.to_be_bytes().to_vec();
    let pad = rng.index(40);
    payload.resize(8 + pad, 0x55);
    payload
}

/// The uid a payload carries.
pub fn uid_of(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
