//! The `mqtt-sn` tool's library side: the simulated USB radio dongle ([`radio_sim`]) that
//! `mqtt-sn radio-sim` and the black-box tests put in front of the gateway's serial link.
//!
//! The tool itself (`mqtt-sn pub`, `sub`, `bench`, `radio-sim`) is the `mqtt-sn` binary of this
//! package; its client role, like the tests' mote's, is the sans-I/O machine of `sn-client`.
//! None of this is part of the gateway product (`mqtt-sn-gateway`).

pub mod radio_sim;
