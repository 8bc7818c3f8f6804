//! Transparent mode's interface between the core and the runtime: each mote has an MQTT
//! connection of its own to the broker, named by the mote's client id.
//!
//! A mote's connection is a broker route of its own ([`BrokerRoute::Mote`], by client id).
//! The core asks for it to be opened ([`BrokerCommand::Connect`]) once the mote's CONNECT (and
//! Will handshake) is complete, and answers the mote's CONNECT only when the broker has
//! answered: [`BrokerEvent::Refused`] maps to a CONNACK return code. On an open connection it
//! publishes, subscribes and acknowledges with the ordinary [`BrokerCommand`]s, and receives
//! the ordinary [`BrokerEvent`]s. A clean DISCONNECT from the
//! mote closes the connection gracefully (the broker discards the Will); a lost mote's
//! connection is dropped without DISCONNECT, so that the broker publishes the Will.

use std::sync::Arc;

use bytes::Bytes;

use super::broker::MqttQoS;
#[cfg(doc)]
use super::broker::{BrokerCommand, BrokerEvent, BrokerRoute};

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
