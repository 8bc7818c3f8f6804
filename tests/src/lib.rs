//! Support code for the black-box end-to-end tests of the MQTT-SN gateway.
//!
//! Every test runs the real gateway [`runtime`](mqtt_sn_gateway::runtime) in-process on real
//! UDP sockets, against a real mosquitto started by the test on a free port:
//!
//! - [`Mosquitto`]: a private mosquitto with its own config file, persistence and log in a temp
//!   directory; it can be stopped (SIGTERM) and started again on the same port.
//! - [`Gateway`]: the gateway runtime on `127.0.0.1:0`, pointed at that mosquitto, with short
//!   retry and reconnect timings; [`GatewayBuilder`] tweaks the configuration before start.
//! - [`Mote`]: an MQTT-SN client over a tokio `UdpSocket`, speaking through sn-codec, with
//!   full QoS flows, retransmission with DUP, and automatic answers to what the gateway sends.
//! - [`Forwarder`]: a forwarder (v1.2 §5.5) relaying motes' datagrams in 0xFE frames.
//! - [`MqttClient`]: an MQTT client (rumqttc) on the broker side, to subscribe and publish.
//! - [`custom_broker::CustomBroker`]: a mosquitto with the test's own listener settings
//!   (TLS, password file, ACLs) next to an anonymous one.
//!
//! Network safety: everything binds and connects to 127.0.0.1 only.
//!
//! The helpers fail the test (panic) when an expectation is not met within its timeout; no
//! helper waits without a deadline.

// Test support: a failed expectation must fail the test, with a message saying what was
// expected; panicking is how a test fails.
#![allow(clippy::panic, clippy::expect_used)]

pub mod binaries;
pub mod custom_broker;
mod forwarder;
mod gateway;
pub(crate) mod mosquitto;
mod mote;
mod mqtt;
pub mod process;
mod rng;

use std::time::Duration;

pub use forwarder::{Forwarder, ForwarderLog};
pub use gateway::{Gateway, GatewayBuilder};
pub use mosquitto::{free_port, Mosquitto};
pub use mote::{ConnectOptions, Delivered, Mote, SubTopic, Topic, Will};
pub use mqtt::{MqttClient, MqttMessage};
pub use rng::XorShift;

/// Re-exported for tests: the MQTT-SN QoS and the v1.2 packets.
pub use sn_codec::v12::{Packet, ReturnCode};
pub use sn_codec::QoS;

/// How long a helper waits for an expected packet or message before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until `condition` holds, checking every 10 ms; fails the test after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
