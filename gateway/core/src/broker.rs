//! What the core asks of the broker link, and what the link reports back.
//!
//! The core owns QoS reliability towards the broker: every QoS 1/2 uplink publish carries a
//! [`PublishId`] and stays in the core until the link reports [`BrokerEvent::PublishAcked`];
//! after every [`BrokerEvent::Connected`] the core sends again all that is unacknowledged and
//! every subscription. The link therefore needs no memory across connections, which makes it
//! immune to an MQTT client library that drops its queue on reconnect.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::transparent_api::{MoteWill, Refusal};

/// Which broker connection a command is for, or an event came from. The core speaks to all
/// of them through one pair, `Gateway::handle_broker` and `Gateway::poll_broker`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BrokerRoute {
    /// The gateway's own connection to its broker: the remote one, or the embedded one when
    /// no remote broker is configured.
    Remote,
    /// The embedded broker serving while the remote one is unreachable (`fallback`).
    Fallback,
    /// A mote's own connection (transparent mode), by the mote's client id.
    Mote(Arc<str>),
}

/// An MQTT QoS level (the broker side has no QoS -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MqttQoS {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1.
    AtLeastOnce,
    /// QoS 2.
    ExactlyOnce,
}

impl MqttQoS {
    /// The level as a number, 0..=2.
    pub const fn level(self) -> u8 {
        match self {
            MqttQoS::AtMostOnce => 0,
            MqttQoS::AtLeastOnce => 1,
            MqttQoS::ExactlyOnce => 2,
        }
    }

    /// The QoS an MQTT-SN QoS maps to upstream (QoS -1 is published at QoS 0).
    pub const fn from_sn(qos: sn_codec::QoS) -> Self {
        match qos {
            sn_codec::QoS::MinusOne | sn_codec::QoS::AtMostOnce => MqttQoS::AtMostOnce,
            sn_codec::QoS::AtLeastOnce => MqttQoS::AtLeastOnce,
            sn_codec::QoS::ExactlyOnce => MqttQoS::ExactlyOnce,
        }
    }

    /// The same level as an MQTT-SN QoS.
    pub const fn to_sn(self) -> sn_codec::QoS {
        match self {
            MqttQoS::AtMostOnce => sn_codec::QoS::AtMostOnce,
            MqttQoS::AtLeastOnce => sn_codec::QoS::AtLeastOnce,
            MqttQoS::ExactlyOnce => sn_codec::QoS::ExactlyOnce,
        }
    }
}

/// The core's name for one uplink QoS 1/2 publish, stable across reconnects and replays.
/// Increasing: replaying in id order keeps each mote's messages in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishId(pub u64);

/// The link's name for one QoS 1/2 message received from the broker, to acknowledge it upstream
/// once the gateway holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryId(pub u64);

/// A message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkPublish {
    /// `Some` for QoS 1/2: the link reports [`BrokerEvent::PublishAcked`] with it.
    pub id: Option<PublishId>,
    /// The MQTT topic name.
    pub topic: Arc<str>,
    /// The payload, unchanged.
    pub payload: Bytes,
    /// QoS towards the broker.
    pub qos: MqttQoS,
    /// MQTT retain flag.
    pub retain: bool,
    /// Whether this is a replay of a publish sent on an earlier connection (sets DUP where the
    /// same packet id is reused; a fresh connection may give it a new packet id).
    pub replay: bool,
}

/// What the core asks the broker link to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCommand {
    /// Publish a message.
    Publish(UplinkPublish),
    /// Subscribe the gateway's connection to a filter (aggregating mode: one subscription
    /// upstream however many motes share the filter).
    Subscribe {
        /// The MQTT topic filter.
        filter: Arc<str>,
        /// The highest QoS any mote asked for on this filter.
        qos: MqttQoS,
    },
    /// Remove an upstream subscription no mote needs any more.
    Unsubscribe {
        /// The MQTT topic filter.
        filter: Arc<str>,
    },
    /// Acknowledge a QoS 1/2 message from the broker: the gateway now holds it.
    Ack {
        /// The link's id for it.
        delivery: DeliveryId,
    },
    /// Open a mote's own connection ([`BrokerRoute::Mote`] only), replacing one that is
    /// open: MQTT CONNECT with the mote's client id (the runtime adds the configured prefix
    /// and the mote's credentials). Commands sent before it is open wait for it.
    Connect {
        /// MQTT keep-alive: the mote's keep-alive. The runtime keeps the connection pinged
        /// itself, also while the mote sleeps.
        keep_alive: Duration,
        /// The mote's CleanSession flag.
        clean_session: bool,
        /// The mote's Will, if it gave one.
        will: Option<MoteWill>,
        /// Whether the mote's own `[[credentials]]` login may be used: only for a mote the
        /// policy admitted by an entry that binds it to a link or address (or, later, a DTLS
        /// identity). Otherwise anyone claiming its client id would log in as it; the
        /// shared login is used instead.
        own_login: bool,
    },
    /// Close a mote's own connection ([`BrokerRoute::Mote`] only). `graceful`: send
    /// DISCONNECT first, so the broker discards the Will (the mote disconnected cleanly);
    /// otherwise drop the TCP connection, so the broker publishes the Will (the mote was lost).
    Close {
        /// Whether to send DISCONNECT.
        graceful: bool,
    },
}

/// What happened on the broker side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// The connection is up (CONNACK accepted).
    Connected {
        /// Whether the broker kept the gateway's session.
        session_present: bool,
    },
    /// The connection is down; the link is reconnecting.
    Disconnected,
    /// The broker holds this publish: PUBACK for QoS 1, PUBCOMP for QoS 2 (a connection lost
    /// between PUBREC and PUBCOMP then means a replay, which may duplicate but never loses).
    PublishAcked {
        /// The core's id for it.
        id: PublishId,
    },
    /// The broker answered a SUBSCRIBE.
    SubAck {
        /// The filter subscribed.
        filter: Arc<str>,
        /// Granted QoS, or `None` when the broker refused (0x80).
        granted: Option<MqttQoS>,
    },
    /// A message from the broker for the gateway's subscriptions.
    Message {
        /// The MQTT topic name.
        topic: Arc<str>,
        /// The payload.
        payload: Bytes,
        /// QoS it was delivered with.
        qos: MqttQoS,
        /// Set when sent because of a new subscription (a retained message).
        retain: bool,
        /// For QoS 1/2: to acknowledge once the gateway holds it.
        delivery: Option<DeliveryId>,
    },
    /// The broker refused a mote's own connection, or could not be reached for its first
    /// CONNECT ([`BrokerRoute::Mote`] only); the runtime has given up on that connection.
    /// The gateway's own connections never give up: they report `Disconnected` and retry.
    Refused(Refusal),
}
