//! The metrics and health endpoint: the Prometheus text format of the gateway's counters and
//! gauges ([`exposition`]), served over HTTP with `/healthz` and `/readyz` ([`http`]).

pub mod exposition;
pub mod http;

pub use exposition::{render, LinkCounters, LinkSnapshot, Snapshot};
