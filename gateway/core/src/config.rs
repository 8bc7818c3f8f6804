//! The settings the core runs with, and their defaults: the one definition of these options.
//! The config crate (sn-config) fills them from the TOML file (`[gateway]`,
//! `[predefined_topics]`, `[spool]`, `[broker] mode`, `[policy]`, `[[mote]]`) and checks the ranges named below.

use std::time::Duration;

use super::policy::PolicyConfig;
use super::spool::SpoolConfig;
use super::transparent_api::BrokerMode;

/// Protocol settings and limits of the core. Every limit comes from here; `Default` gives the
/// documented defaults (docs/configuration.md, config/gateway.example.toml; a test in the
/// config crate checks that the example file states exactly these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// `[gateway] gw_id`: GwId in ADVERTISE and GWINFO. Default 1.
    pub gw_id: u8,
    /// `[gateway] advertise_interval`: ADVERTISE period; zero turns ADVERTISE off. Whole
    /// seconds, at most 65535 s. Default 15 min.
    pub advertise_interval: Duration,
    /// `[gateway] retry_interval`, T_retry: how long to wait for a reply before resending.
    /// 1 s to 1 h, default 10 s.
    pub retry_interval: Duration,
    /// `[gateway] max_retries`, N_retry: resends before the client is declared lost. 0 to 20,
    /// default 3.
    pub max_retries: u32,
    /// `[gateway] max_sessions`: sessions held at once (connected, sleeping, or disconnected
    /// with CleanSession=0). At least 1, default 10000.
    pub max_sessions: usize,
    /// `[gateway] max_topics_per_session`: registered topic ids per session. 1 to 65533,
    /// default 1000.
    pub max_topics_per_session: usize,
    /// `[gateway] max_queued_per_session`: messages waiting for one client. At least 1,
    /// default 1000.
    pub max_queued_per_session: usize,
    /// `[gateway] max_queued_bytes_per_session`: payload bytes waiting for one client (a
    /// sleeping mote's buffer). At least 1, default 256 KiB.
    pub max_queued_bytes_per_session: usize,
    /// `[gateway] queue_overflow`: what gives way at a full queue (after QoS 0 messages,
    /// which always go first). Default [`QueueOverflow::DropOldest`].
    pub queue_overflow: QueueOverflow,
    /// `[gateway] max_packet_size`: largest datagram accepted from or sent to a client, in
    /// bytes. 16 to 65535, default 1024.
    pub max_packet_size: usize,
    /// `[gateway] max_client_id_len`: longest client id accepted in CONNECT, in bytes (the
    /// spec says 23, Paho allows 64). 1 to 65535, default 64.
    pub max_client_id_len: usize,
    /// `[gateway] qos_minus_one`: accept QoS -1 PUBLISH from peers that never connected.
    /// Default true.
    pub qos_minus_one: bool,
    /// `[gateway] roaming`: let a session move to another address (a CONNECT with its client
    /// id, or a sleeping mote's PINGREQ naming it, from an address it is not bound to), as a
    /// mote behind a NAT that rebinds or on NB-IoT needs. Off by default: anyone who knows a
    /// client id could then take the session and its queued messages. Default false.
    pub roaming: bool,
    /// `[gateway] max_queued_bytes_total`: bytes waiting for all clients together (in memory,
    /// and in the store for sessions that persist): each message's payload, topic name and 64
    /// bytes of bookkeeping. Sessions the open policy let in
    /// (no `[[mote]]` entry) may fill half of it; listed motes the rest. At least 1, default
    /// 64 MiB.
    pub max_queued_bytes_total: usize,
    /// `[gateway] max_state_bytes`: bytes all sessions together hold besides their queued
    /// messages: client ids, registered topic names, subscription filters and Wills (in
    /// memory, and in the state file for sessions that persist). Sessions the open policy let
    /// in may fill half of it. With `max_queued_bytes_total` and `[spool] max_bytes` it bounds
    /// the state file. At least 1, default 32 MiB.
    pub max_state_bytes: usize,
    /// `[gateway] max_sleep_duration`: the longest sleep honoured; a mote asking for more is
    /// held to this (it is lost after 1.5 times it without a PINGREQ). 1 s to 65535 s,
    /// default 12 h.
    pub max_sleep_duration: Duration,
    /// `[gateway] max_sessions_per_address`: sessions bound to one source (an IP address, a
    /// radio node, a forwarder) at once. At least 1, default 1000.
    pub max_sessions_per_address: usize,
    /// `[gateway] connect_rate`: CONNECTs per second one source may send (it may burst twice
    /// that); beyond it CONNACK 0x01. Zero turns the limit off. Default 100.
    pub connect_rate: u32,
    /// `[presence] topic`: where each mote's presence goes on the broker, retained (`%c`: its
    /// client id): "connected", "asleep", "awake", "lost" or "disconnected". `None`: no
    /// presence messages. Default `None`.
    pub presence_topic: Option<String>,
    /// `[policy]` and `[[mote]]`: admission, topic rules and mountpoints.
    pub policy: PolicyConfig,
    /// `[predefined_topics]`: topic ids shared with the clients' firmware, sorted by id.
    /// None by default.
    pub predefined_topics: Vec<(u16, String)>,
    /// `[gateway] max_pending_qos0`: QoS 0/-1 uplink messages that may wait for the broker
    /// link; beyond it new ones are dropped and counted (`publish_dropped_backlog`). At least
    /// 1, default 10000.
    pub max_pending_qos0: usize,
    /// `[spool]`: holding uplink messages while the broker is unreachable.
    pub spool: SpoolConfig,
    /// `[broker] mode`: one broker connection for all motes, or one per mote. Default
    /// [`BrokerMode::Aggregating`].
    pub mode: BrokerMode,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            gw_id: 1,
            advertise_interval: Duration::from_secs(900),
            retry_interval: Duration::from_secs(10),
            max_retries: 3,
            max_sessions: 10_000,
            max_topics_per_session: 1_000,
            max_queued_per_session: 1_000,
            max_queued_bytes_per_session: 256 * 1024,
            queue_overflow: QueueOverflow::DropOldest,
            max_packet_size: 1024,
            max_client_id_len: 64,
            qos_minus_one: true,
            roaming: false,
            max_queued_bytes_total: 64 * 1024 * 1024,
            max_state_bytes: 32 * 1024 * 1024,
            max_sleep_duration: Duration::from_secs(12 * 3600),
            max_sessions_per_address: 1_000,
            connect_rate: 100,
            presence_topic: None,
            policy: PolicyConfig::default(),
            predefined_topics: Vec::new(),
            max_pending_qos0: 10_000,
            spool: SpoolConfig::default(),
            mode: BrokerMode::Aggregating,
        }
    }
}

/// What gives way when a client's queue is full (`[gateway] queue_overflow`: `"drop-oldest"`
/// or `"drop-new"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOverflow {
    /// Drop the oldest queued message: the client gets the newest data. A message already
    /// sent to the client and waiting to go again (its exchange abandoned by a sleep or a
    /// reconnection) is not dropped: a copy of it may still reach the client, and must not
    /// arrive after the messages that follow it.
    DropOldest,
    /// Drop the arriving message: the client gets an unbroken run from when it stopped
    /// receiving.
    DropNew,
}
