//! The settings the core runs with. The config crate turns the TOML file into this.

use std::time::Duration;

use super::spool::SpoolConfig;
use super::transparent_api::BrokerMode;

/// Protocol settings and limits of the core. Every limit comes from here; `Default` gives the
/// documented defaults (docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// GwId in ADVERTISE and GWINFO.
    pub gw_id: u8,
    /// ADVERTISE period; zero turns ADVERTISE off.
    pub advertise_interval: Duration,
    /// T_retry: how long to wait for a reply before resending.
    pub retry_interval: Duration,
    /// N_retry: resends before the client is declared lost.
    pub max_retries: u32,
    /// Sessions held at once (connected, sleeping, or disconnected with CleanSession=0).
    pub max_sessions: usize,
    /// Registered topic ids per session.
    pub max_topics_per_session: usize,
    /// Messages waiting for one client.
    pub max_queued_per_session: usize,
    /// Payload bytes waiting for one client.
    pub max_queued_bytes_per_session: usize,
    /// What gives way at a full queue (after QoS 0 messages, which always go first).
    pub queue_overflow: QueueOverflow,
    /// Largest datagram accepted from or sent to a client.
    pub max_packet_size: usize,
    /// Longest client id accepted.
    pub max_client_id_len: usize,
    /// Accept QoS -1 PUBLISH from peers that never connected.
    pub qos_minus_one: bool,
    /// Predefined topic ids shared with the clients' firmware.
    pub predefined_topics: Vec<(u16, String)>,
    /// QoS 0/-1 uplink messages that may wait for the broker link; beyond it new ones are
    /// dropped and counted (`publish_dropped_backlog`).
    pub max_pending_qos0: usize,
    /// Holding uplink messages while the broker is unreachable.
    pub spool: SpoolConfig,
    /// One broker connection for all motes, or one per mote.
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
            predefined_topics: Vec::new(),
            max_pending_qos0: 10_000,
            spool: SpoolConfig::default(),
            mode: BrokerMode::Aggregating,
        }
    }
}

/// What gives way when a client's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOverflow {
    /// Drop the oldest queued message: the client gets the newest data.
    DropOldest,
    /// Drop the arriving message: the client gets an unbroken run from when it stopped
    /// receiving.
    DropNew,
}
