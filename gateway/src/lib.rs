//! The MQTT-SN gateway: the sans-I/O protocol core (the `sn-core` package, re-exported as
//! [`core`]), the broker link ([`broker`]), the
//! durable store ([`store`]), the tokio runtime that drives them ([`runtime`]), the CLI's
//! helpers ([`settings`], [`ports`], [`logging`], [`reload`], [`sd_notify`]). The `mqtt-sn` tool and the radio simulator live in the
//! `mqtt-sn-tools` package.
//!
//! The core holds every protocol rule and performs no I/O: the runtime feeds it datagrams,
//! broker events and the time, and polls it for datagrams to send, broker commands and its next
//! deadline. See `docs/decisions.md` and the architecture notes for why.

pub mod broker;
pub use sn_core as core;
pub mod logging;
pub mod metrics;
pub mod ports;
pub mod reload;
pub mod runtime;
pub mod sd_notify;
pub mod settings;
pub mod store;
