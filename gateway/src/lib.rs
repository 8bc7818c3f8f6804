//! The MQTT-SN gateway: a sans-I/O protocol core ([`core`]), and (in later modules) the broker
//! link, the tokio runtime that drives them, and the CLI.
//!
//! The core holds every protocol rule and performs no I/O: the runtime feeds it datagrams,
//! broker events and the time, and polls it for datagrams to send, broker commands and its next
//! deadline. See `docs/decisions.md` and the architecture notes for why.

pub mod broker;
pub mod core;
pub mod runtime;
pub mod settings;
pub mod store;
