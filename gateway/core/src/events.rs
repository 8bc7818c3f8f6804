//! What the core reports for logs and metrics.

use std::sync::Arc;

use crate::policy::Denied;

/// Why a session ended without a clean DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// Silent past 1.5 × its keep-alive.
    KeepAliveExpired,
    /// Asleep past 1.5 × its sleep duration.
    SleepExpired,
    /// Did not answer a gateway message after N_retry retransmissions.
    RetriesExhausted,
    /// Never finished the Will handshake.
    HandshakeTimeout,
    /// The link lost its connection with the client (a DTLS alert, or a dead connection).
    LinkLost,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LostReason::KeepAliveExpired => "keep-alive expired",
            LostReason::SleepExpired => "sleep duration expired",
            LostReason::RetriesExhausted => "no reply after all retransmissions",
            LostReason::HandshakeTimeout => "Will handshake not completed",
            LostReason::LinkLost => "its link connection was lost (DTLS alert or dead peer)",
        })
    }
}

/// A session-level event, one log line each at info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client connected (CONNACK 0x00 sent).
    Connected {
        /// Its client id.
        client_id: Arc<str>,
        /// Where it is, as text.
        addr: String,
        /// CleanSession flag.
        clean_session: bool,
        /// Keep-alive in seconds.
        keep_alive: u16,
        /// Whether an earlier session was resumed (CleanSession=0 and one existed).
        resumed: bool,
    },
    /// A CONNECT was refused.
    ConnectRefused {
        /// Where it came from.
        addr: String,
        /// Why, for the log.
        reason: &'static str,
    },
    /// Someone tried to take a session from an address it is not bound to (a CONNECT with its
    /// client id, or a PINGREQ naming a sleeping mote) and was refused: `roaming` is off.
    TakeoverRefused {
        /// The session's client id.
        client_id: Arc<str>,
        /// Where the attempt came from.
        addr: String,
    },
    /// The policy refused something: a CONNECT, a wake-up, a REGISTER, PUBLISH or SUBSCRIBE,
    /// or a QoS -1 PUBLISH. The runtime logs these at most once a minute per peer.
    PolicyDenied {
        /// Where it came from.
        addr: String,
        /// The client id, when one is known.
        client_id: Option<Arc<str>>,
        /// Why.
        reason: Denied,
        /// The topic or filter refused, if any.
        topic: Option<Arc<str>>,
    },
    /// A reloaded policy no longer admits a session held (or moved its mountpoint): the
    /// mote, if connected, was sent a DISCONNECT, and its session is gone.
    Revoked {
        /// Its client id.
        client_id: Arc<str>,
        /// Where it was connected, if it was.
        addr: Option<String>,
        /// Why.
        reason: crate::gateway::Revoked,
    },
    /// A client disconnected cleanly.
    Disconnected {
        /// Its client id.
        client_id: Arc<str>,
    },
    /// A client went to sleep.
    Asleep {
        /// Its client id.
        client_id: Arc<str>,
        /// Sleep duration in seconds.
        duration: u16,
    },
    /// A sleeping client woke up.
    Awake {
        /// Its client id.
        client_id: Arc<str>,
        /// Messages waiting for it.
        queued: usize,
    },
    /// A client was lost.
    Lost {
        /// Its client id.
        client_id: Arc<str>,
        /// Why.
        reason: LostReason,
        /// Whether its Will was published.
        will_published: bool,
    },
    /// The spool reached spool.max_bytes (reported once until it has room again).
    SpoolFull {
        /// The limit.
        max_bytes: usize,
        /// What happens to messages that do not fit.
        policy: super::spool::SpoolFull,
    },
    /// QoS 0 uplink messages are being dropped: `max_pending_qos0` of them already wait for
    /// the broker link, which is slower than the motes (reported once until the backlog has
    /// drained).
    BrokerBacklogFull {
        /// The limit.
        limit: usize,
    },
    /// A client's messages were dropped at a limit (logged once per session until it recovers).
    QueueFull {
        /// Its client id.
        client_id: Arc<str>,
        /// The setting whose limit was reached (`max_queued_per_session`,
        /// `max_queued_bytes_per_session` or `max_queued_bytes_total`).
        setting: &'static str,
        /// The limit that applied to this client (for `max_queued_bytes_total`, half of it for
        /// a mote the open policy let in).
        limit: usize,
    },
}

/// Counters since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Datagrams handed to the core.
    pub datagrams_received: u64,
    /// Datagrams the core asked to send.
    pub datagrams_sent: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Datagrams over max_packet_size.
    pub dropped_oversize: u64,
    /// Packets from peers with no session, answered with DISCONNECT.
    pub unknown_peer: u64,
    /// Valid packets that make no sense in the session's state.
    pub unexpected_packet: u64,
    /// CONNECTs refused (any return code).
    pub connect_refused: u64,
    /// Attempts to take a session from an address it is not bound to (a CONNECT with its
    /// client id, or a PINGREQ naming it), refused because `roaming` is off.
    pub takeover_refused: u64,
    /// Uplink PUBLISHes forwarded to the broker.
    pub publish_forwarded: u64,
    /// Uplink PUBLISHes dropped or refused because the broker link was down, QoS 0 ones still
    /// waiting for the link when its connection was lost included.
    pub publish_broker_down: u64,
    /// QoS 0/-1 uplink PUBLISHes dropped because `max_pending_qos0` of them already waited
    /// for the broker link (the broker took them slower than the motes sent them).
    pub publish_dropped_backlog: u64,
    /// Uplink PUBLISHes refused: unknown topic id, bad topic, or a second exchange in flight.
    pub publish_rejected: u64,
    /// QoS -1 PUBLISHes dropped because qos_minus_one is off.
    pub publish_minus_one_disabled: u64,
    /// Duplicate PUBLISHes answered without forwarding again.
    pub publish_duplicate: u64,
    /// Broker messages delivered to clients (PUBLISH sent, first transmission).
    pub delivered: u64,
    /// Broker messages dropped at a full per-session queue.
    pub dropped_queue_full: u64,
    /// Packets not sent because they exceed max_packet_size.
    pub dropped_too_big_for_client: u64,
    /// Deliveries the client refused (REGACK/PUBACK with an error code).
    pub delivery_refused: u64,
    /// Retransmissions to clients.
    pub retransmissions: u64,
    /// Sessions lost (keep-alive, sleep, retries).
    pub sessions_lost: u64,
    /// Wills published.
    pub wills_published: u64,
    /// Offline sessions evicted to make room at max_sessions.
    pub sessions_evicted: u64,
    /// Events dropped because the runtime did not poll them.
    pub events_dropped: u64,
    /// Uplink messages put in the spool while the broker was unreachable.
    pub spooled: u64,
    /// SUBSCRIBEs refused because the session already has max_topics_per_session subscriptions.
    pub subscribe_refused: u64,
    /// Uplink messages refused (PUBACK 0x01) because the spool was full.
    pub spool_refused: u64,
    /// Spooled messages dropped to make room (spool.when_full = "drop-oldest").
    pub spool_dropped: u64,
    /// Datagrams a link reported it could not deliver (an XBee transmit status other than
    /// success). The MQTT-SN retries recover those that needed an answer.
    pub link_undelivered: u64,
    /// Sessions moved to a new address with their DTLS connection (Connection ID: the
    /// mote's NAT rebound its port); the mote went on without a new CONNECT.
    pub peer_moves: u64,
    /// DTLS connection moves that did not move a session: the session there was not opened
    /// by the connection's identity, or the new address is another session's.
    pub peer_moves_refused: u64,
    /// Uplink messages copied to the fallback broker while it served the motes.
    pub fallback_published: u64,
    /// Times service moved to the fallback broker (remote broker lost, local one up).
    pub fallback_switches: u64,
    /// Uplink messages sent to the broker again after it came back (spooled, or not yet
    /// acknowledged when the link dropped).
    pub replayed: u64,
    /// QoS 0/-1 uplink messages dropped because no broker could take them (also counted in
    /// `publish_broker_down`).
    pub qos0_dropped_broker_down: u64,
    /// Time from a mote's QoS 1/2 PUBLISH to its PUBACK/PUBREC (the broker or the spool
    /// holds it then).
    pub publish_ack_latency: LatencyHistogram,
    /// Refusals by the security policy, per reason (each is also in the CONNACK, PUBACK,
    /// SUBACK or REGACK the client got, or a silent drop at QoS 0/-1).
    pub denied: Denials,
    /// CONNECTs refused (CONNACK 0x01) because their source sent more than `connect_rate`
    /// a second.
    pub connect_rate_limited: u64,
    /// CONNECTs refused (CONNACK 0x01) because their source already held
    /// `max_sessions_per_address` sessions.
    pub sessions_per_address_refused: u64,
    /// Broker messages not queued because all queues together held `max_queued_bytes_total`
    /// (or half of it, for sessions the open policy let in).
    pub dropped_queue_total: u64,
    /// REGISTERs, SUBSCRIBEs, Wills, new sessions and topic ids refused (congestion) because
    /// all sessions together held `max_state_bytes` (or half of it, for sessions the open
    /// policy let in).
    pub state_full: u64,
    /// Sleep requests longer than `max_sleep_duration`, held to it.
    pub sleep_capped: u64,
    /// Stored sessions the policy no longer admits, dropped when the gateway started.
    pub restore_refused: u64,
    /// Sessions ended because a policy reloaded while they were held no longer admits them
    /// (or moved their mountpoint); connected motes were sent a DISCONNECT.
    pub policy_revoked: u64,
    /// Subscriptions dropped because a reloaded policy no longer covers their filter.
    pub subscriptions_revoked: u64,
}

/// A histogram of durations with fixed bucket bounds (Prometheus style: each bucket counts
/// the observations at or below its bound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations in each bucket of [`LatencyHistogram::BOUNDS_US`] (not cumulative),
    /// then those above the last bound.
    buckets: [u64; LatencyHistogram::BOUNDS_US.len() + 1],
    count: u64,
    sum_us: u64,
}

impl LatencyHistogram {
    /// Upper bounds of the buckets, in microseconds: 250 µs to 10 s.
    pub const BOUNDS_US: [u64; 15] = [
        250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ];

    /// Counts one observation.
    pub fn record(&mut self, duration: std::time::Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = Self::BOUNDS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(Self::BOUNDS_US.len());
        if let Some(slot) = self.buckets.get_mut(bucket) {
            *slot += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Observations at or below each bound of [`LatencyHistogram::BOUNDS_US`] (cumulative,
    /// as Prometheus wants them).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        Self::BOUNDS_US
            .iter()
            .zip(self.buckets.iter())
            .scan(0u64, |seen, (bound, count)| {
                *seen += count;
                Some((*bound, *seen))
            })
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of all observations, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
}

/// Policy refusals, one counter per [`Denied`] reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denials {
    /// [`Denied::NotListed`].
    pub not_listed: u64,
    /// [`Denied::WrongLink`].
    pub wrong_link: u64,
    /// [`Denied::WrongAddress`].
    pub wrong_address: u64,
    /// [`Denied::UnusableClientId`].
    pub unusable_client_id: u64,
    /// [`Denied::Publish`].
    pub publish: u64,
    /// [`Denied::Subscribe`].
    pub subscribe: u64,
    /// [`Denied::Register`].
    pub register: u64,
    /// [`Denied::DollarTopic`].
    pub dollar_topic: u64,
    /// [`Denied::MinusOneTopic`].
    pub minus_one_topic: u64,
    /// [`Denied::MinusOneAddress`].
    pub minus_one_address: u64,
    /// [`Denied::IdentityMismatch`].
    pub identity_mismatch: u64,
    /// [`Denied::NotAuthenticated`].
    pub not_authenticated: u64,
}

impl Denials {
    /// Counts one refusal.
    pub fn count(&mut self, reason: Denied) {
        let counter = match reason {
            Denied::NotListed => &mut self.not_listed,
            Denied::WrongLink => &mut self.wrong_link,
            Denied::WrongAddress => &mut self.wrong_address,
            Denied::UnusableClientId => &mut self.unusable_client_id,
            Denied::Publish => &mut self.publish,
            Denied::Subscribe => &mut self.subscribe,
            Denied::Register => &mut self.register,
            Denied::DollarTopic => &mut self.dollar_topic,
            Denied::MinusOneTopic => &mut self.minus_one_topic,
            Denied::MinusOneAddress => &mut self.minus_one_address,
            Denied::IdentityMismatch => &mut self.identity_mismatch,
            Denied::NotAuthenticated => &mut self.not_authenticated,
        };
        *counter += 1;
    }

    /// Every refusal, whatever the reason.
    pub fn total(&self) -> u64 {
        self.not_listed
            + self.wrong_link
            + self.wrong_address
            + self.unusable_client_id
            + self.publish
            + self.subscribe
            + self.register
            + self.dollar_topic
            + self.minus_one_topic
            + self.minus_one_address
            + self.identity_mismatch
            + self.not_authenticated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_histogram_counts_each_observation_once_at_its_bound() {
        let mut h = LatencyHistogram::default();
        for us in [100, 250, 251, 3_000, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let cumulative: Vec<(u64, u64)> = h.cumulative().take(4).collect();
        assert_eq!(cumulative, vec![(250, 2), (500, 3), (1_000, 3), (2_500, 3)]);
        assert_eq!(
            h.cumulative().last(),
            Some((10_000_000, 4)),
            "20 s is above every bound"
        );
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_us(), 100 + 250 + 251 + 3_000 + 20_000_000);
    }
}
