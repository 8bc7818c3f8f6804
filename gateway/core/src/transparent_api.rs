//! Transparent mode's interface between the core and the runtime: each mote has an MQTT
//! connection of its own to the broker, named by the mote's client id.
//!
//! The core asks for a mote's connection to be opened ([`MoteCommand::Connect`]) once the
//! mote's CONNECT (and Will handshake) is complete, and answers the mote's CONNECT only when
//! the broker has answered: [`MoteEvent::Refused`] maps to a CONNACK return code. On an open
//! connection it publishes, subscribes and acknowledges with the ordinary
//! [`BrokerCommand`]s, and receives the ordinary [`BrokerEvent`]s. A clean DISCONNECT from the
//! mote closes the connection gracefully (the broker discards the Will); a lost mote's
//! connection is dropped without DISCONNECT, so that the broker publishes the Will.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::broker::{BrokerCommand, BrokerEvent, MqttQoS};

/// A Will for the broker to publish when a mote's connection is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoteWill {
    /// The Will topic.
    pub topic: Arc<str>,
    /// The Will message.
    pub payload: Bytes,
    /// Its QoS.
    pub qos: MqttQoS,
    /// Its retain flag.
    pub retain: bool,
}

/// What the core asks of one mote's broker connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoteCommand {
    /// Open the connection (replacing one that is open): MQTT CONNECT with the mote's own
    /// client id (the runtime adds the configured prefix and the mote's credentials).
    Connect {
        /// MQTT keep-alive: the mote's keep-alive. The runtime keeps the connection pinged
        /// itself, also while the mote sleeps.
        keep_alive: Duration,
        /// The mote's CleanSession flag.
        clean_session: bool,
        /// The mote's Will, if it gave one.
        will: Option<MoteWill>,
    },
    /// A command on the open connection; queued by the runtime until it is open.
    Broker(BrokerCommand),
    /// Close the connection. `graceful`: send DISCONNECT first, so the broker discards the
    /// Will (the mote disconnected cleanly); otherwise drop the TCP connection, so the broker
    /// publishes the Will (the mote was lost).
    Close {
        /// Whether to send DISCONNECT.
        graceful: bool,
    },
}

/// Why a broker refused a mote's connection (the MQTT CONNACK return code, as a kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Bad user name or password (MQTT 0x04).
    BadCredentials,
    /// Not authorized (MQTT 0x05).
    NotAuthorized,
    /// Identifier rejected (MQTT 0x02).
    IdentifierRejected,
    /// Server unavailable (MQTT 0x03), or the broker could not be reached at all.
    ServerUnavailable,
}

/// What happened on one mote's broker connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoteEvent {
    /// An ordinary broker event on this connection: `Connected` (CONNACK accepted),
    /// `Disconnected` (lost; the runtime reconnects with backoff), `PublishAcked`, `SubAck`,
    /// `Message`.
    Broker(BrokerEvent),
    /// The broker refused the connection (or could not be reached for the first CONNECT);
    /// the runtime has given up on this connection.
    Refused(Refusal),
}

/// How the gateway meets the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerMode {
    /// One connection for all motes (the default): subscriptions are shared, topic mapping
    /// is done in the core.
    #[default]
    Aggregating,
    /// One connection per mote, with the mote's client id, keep-alive, clean session and
    /// Will: for brokers that enforce per-device identity, ACLs and Wills. QoS -1 publishes
    /// go through the gateway's own connection.
    Transparent,
}

/// The configuration's name: `aggregating`, `transparent` (`[broker] mode`).
impl std::fmt::Display for BrokerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BrokerMode::Aggregating => "aggregating",
            BrokerMode::Transparent => "transparent",
        })
    }
}

/// A command for one mote's connection, named by the mote's client id.
pub type MoteCommandFor = (Arc<str>, MoteCommand);
