//! The MQTT side: a link to a full broker (aggregating mode: one connection for all motes, on
//! the gateway's own socket loop and rumqttc's MQTT codec; transparent mode adds one rumqttc
//! client per mote, `mote_link`), and the embedded broker it
//! connects to when no remote broker is configured.
//! The link turns the core's [`BrokerCommand`](crate::core::BrokerCommand)s into MQTT and
//! MQTT back into [`BrokerEvent`](crate::core::BrokerEvent)s. Reliability lives in the core;
//! the link keeps only what MQTT's own QoS 2 exchanges need across a reconnect to a session
//! the broker kept (their packet ids and stage, MQTT 3.1.1 §4.4).

mod backoff;
mod connection;
mod embedded;
mod link;
mod mote_link;
mod password;
mod rumqttc_connection;
mod tls;

pub use backoff::Backoff;
pub use embedded::{EmbeddedBroker, EmbeddedBrokerError};
pub use link::{spawn_link, BrokerLinkConfig, BrokerLinkError, BrokerLinkHandle, TlsFiles};
pub use mote_link::{
    MoteConnect, MoteConnector, MoteLink, MoteLinkError, MoteReport, TransparentSettings,
    MAX_MOTE_INFLIGHT, MIN_MOTE_KEEP_ALIVE,
};
pub(crate) use password::read_password;
pub use tls::install_crypto_provider;
