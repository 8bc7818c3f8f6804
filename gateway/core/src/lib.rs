//! The sans-I/O protocol core: every MQTT-SN rule, no sockets, no clock, no tokio.
//!
//! [`Gateway`] is fed datagrams ([`Gateway::handle_datagram`]), broker events
//! ([`Gateway::handle_broker`]) and time ([`Gateway::handle_timeout`]), and polled for
//! datagrams to send ([`Gateway::poll_transmit`]), broker commands ([`Gateway::poll_broker`]),
//! its next deadline ([`Gateway::poll_timeout`]) and events ([`Gateway::poll_event`]).
//! The shape follows quinn-proto: every rule is testable in microseconds with a simulated
//! clock, and the same core serves UDP, serial radios and DTLS without knowing which.

mod broker;
mod config;
mod durability;
mod events;
mod gateway;
mod outbox;
mod outputs;
mod peer;
mod policy;
mod quotas;
mod session;
mod sessions;
mod spool;
mod topics;
mod transparent_api;
mod upstream;

pub use broker::{
    BrokerCommand, BrokerEvent, BrokerRoute, DeliveryId, MqttQoS, PublishId, UplinkPublish,
};
pub use config::{CoreConfig, QueueOverflow};
pub use durability::{BatchId, StoreBatch};
pub use events::{Denials, Event, LatencyHistogram, LostReason, Metrics};
pub use gateway::{Gateway, Gauges, PolicyChange, Revoked, SessionInfo, SessionState};
pub use gateway::{
    Restored, SessionRecord, StoreOp, StoredMessage, StoredRoute, StoredState, StoredSubKind,
    StoredSubscription, StoredWill,
};
pub use peer::{ClientAddr, Destination, LinkId, Peer, PeerAddr, RadioAddr, Transmit};
pub use policy::{
    check_mountpoint, check_topic_rule, AddrPattern, Admission, Denied, MinusOneRules, MoteEntry,
    PolicyConfig, TopicRules,
};
pub use spool::{SpoolConfig, SpoolFull, SpooledPublish};
pub use transparent_api::{BrokerMode, MoteWill, Refusal};
