//! The configuration files the packages install (packaging/gateway.toml for the .deb and the
//! container image, packaging/docker/gateway.toml for the compose example) stay what their
//! comments say they are as options are added: the defaults, with the state file where the
//! service may write it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use common::ok;
use sn_config::{BrokerConfig, Config};

const INSTALLED: &str = include_str!("../../packaging/gateway.toml");
const COMPOSE: &str = include_str!("../../packaging/docker/gateway.toml");
const STATE: &str = "/var/lib/mqtt-sn-gateway/state.redb";

/// The .deb's /etc/mqtt-sn-gateway/gateway.toml is the zero-configuration gateway (no remote
/// broker: the embedded one serves), except that the state file is in the state directory the
/// unit gives the service (StateDirectory=; /etc is read-only under ProtectSystem=strict).
#[test]
fn the_installed_file_is_the_defaults_with_the_state_in_var_lib() {
    let mut config = ok(INSTALLED);
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
    assert_eq!(config.store.path, PathBuf::from(STATE));
    assert!(config.store.enabled);
    config.store.path = Config::default().store.path;
    assert_eq!(config, Config::default());
}

/// The compose example forwards to the mosquitto service and keeps its state in the volume;
/// its one warning is the open admission one its comment names.
#[test]
fn the_compose_file_forwards_to_mosquitto_with_the_state_in_the_volume() {
    let mut config = ok(COMPOSE);
    assert_eq!(
        config.broker,
        Some(BrokerConfig::from_url("mqtt://mosquitto:1883").unwrap())
    );
    assert_eq!(config.store.path, PathBuf::from(STATE));
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    assert!(config.warnings[0].message.contains("docs/security.md"));
    config.broker = None;
    config.warnings.clear();
    config.store.path = Config::default().store.path;
    assert_eq!(config, Config::default());
}
