//! The MQTT side: a link to a full broker over rumqttc (aggregating mode: one connection for
//! all motes). It turns the core's [`BrokerCommand`](crate::core::BrokerCommand)s into MQTT and
//! MQTT back into [`BrokerEvent`](crate::core::BrokerEvent)s, and holds no protocol state of
//! its own beyond one connection: reliability lives in the core.

mod backoff;
mod link;

pub use backoff::Backoff;
pub use link::{spawn_link, BrokerLinkConfig, BrokerLinkError, BrokerLinkHandle, TlsFiles};
