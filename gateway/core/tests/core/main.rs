//! Scripted conversations with the sans-I/O core: a simulated clock, a fake broker, and
//! datagrams built with sn-codec. Each file covers one procedure of the specification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod harness;

mod connect;
mod downlink;
mod gauges;
mod identity;
mod limits;
mod persist;
mod policy;
mod policy_caps;
mod policy_reload;
mod presence;
mod uplink;

mod discovery;
mod edge;
mod fallback;
mod forwarder;
mod radio;
mod sim_seeds;
mod sleep;
mod spool;
mod transparent;
