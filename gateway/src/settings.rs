//! From the configuration file (sn-config) to what the runtime runs: core settings, UDP links,
//! the broker link, the embedded broker. Kept apart so the CLI, the tests and the runtime agree
//! on one mapping.

use std::time::Duration;

use sn_config::Config;
use sn_transports::UdpLinkConfig;

use crate::broker::{BrokerLinkConfig, EmbeddedBrokerConfig, TlsFiles};
use crate::core::{CoreConfig, QueueOverflow, SpoolConfig, SpoolFull};
use crate::runtime::SerialLinkSettings;

/// The Debian/Ubuntu system CA bundle, used for `mqtts://` when no ca_file is configured.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Everything the runtime needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Protocol settings and limits.
    pub core: CoreConfig,
    /// One entry per UDP link.
    pub udp: Vec<UdpLinkConfig>,
    /// One entry per serial link.
    pub serial: Vec<SerialLinkSettings>,
    /// The remote broker, if one is configured.
    pub broker: Option<BrokerLinkConfig>,
    /// The embedded broker, which runs when no remote broker is configured, and as the
    /// remote broker's fallback when `fallback` is set.
    pub embedded_broker: EmbeddedBrokerConfig,
    /// With a remote broker: serve the motes from the embedded broker while it is
    /// unreachable (`[broker] fallback = "embedded"`).
    pub fallback: bool,
    /// The durable state file, unless storing is turned off.
    pub store: Option<std::path::PathBuf>,
}

/// A setting that is valid in the file but cannot be used on this machine.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// password_file could not be read.
    #[error("cannot read broker.password_file {path}: {source}")]
    PasswordFile {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS without a CA bundle.
    #[error("mqtts:// needs a CA bundle: set broker.ca_file, or install the ca-certificates package ({SYSTEM_CA_BUNDLE})")]
    NoCaBundle,
}

impl Settings {
    /// Maps a validated configuration onto the runtime's parts.
    pub fn from_config(config: &Config) -> Result<Settings, SettingsError> {
        let g = &config.gateway;
        let core = CoreConfig {
            gw_id: g.gw_id,
            advertise_interval: g.advertise_interval,
            retry_interval: g.retry_interval,
            max_retries: u32::from(g.max_retries),
            max_sessions: g.max_sessions as usize,
            max_topics_per_session: usize::from(g.max_topics_per_session),
            max_queued_per_session: g.max_queued_per_session as usize,
            max_queued_bytes_per_session: g.max_queued_bytes_per_session as usize,
            queue_overflow: match g.queue_overflow {
                sn_config::QueueOverflow::DropOldest => QueueOverflow::DropOldest,
                sn_config::QueueOverflow::DropNew => QueueOverflow::DropNew,
            },
            max_packet_size: usize::from(g.max_packet_size),
            max_client_id_len: usize::from(g.max_client_id_len),
            qos_minus_one: g.qos_minus_one,
            predefined_topics: config
                .predefined_topics
                .iter()
                .map(|(id, name)| (*id, name.clone()))
                .collect(),
            spool: SpoolConfig {
                // The spool lives in the store: without one there is nothing durable to hold
                // messages in, and refusing (PUBACK 0x01) is the honest answer.
                enabled: config.spool.enabled && config.store.enabled,
                max_bytes: usize::try_from(config.spool.max_bytes).unwrap_or(usize::MAX),
                when_full: match config.spool.when_full {
                    sn_config::SpoolFull::Refuse => SpoolFull::Refuse,
                    sn_config::SpoolFull::DropOldest => SpoolFull::DropOldest,
                },
                qos0: config.spool.qos0,
            },
            mode: crate::core::BrokerMode::Aggregating,
        };
        let udp = config
            .udp
            .iter()
            .map(|u| UdpLinkConfig {
                bind: u.bind,
                discovery: u.discovery,
                multicast_ttl: u.multicast_ttl,
                multicast_loop: u.multicast_loop,
                max_datagram: usize::from(g.max_packet_size),
            })
            .collect();
        let broker = match &config.broker {
            None => None,
            Some(b) => {
                let password = match (&b.password, &b.password_file) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(path)) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|source| SettingsError::PasswordFile {
                                path: path.display().to_string(),
                                source,
                            })?
                            .trim_end_matches(['\r', '\n'])
                            .to_string(),
                    ),
                    (None, None) => None,
                };
                let tls = if b.tls {
                    let ca_file = match &b.ca_file {
                        Some(path) => path.clone(),
                        None if std::path::Path::new(SYSTEM_CA_BUNDLE).exists() => {
                            SYSTEM_CA_BUNDLE.into()
                        }
                        None => return Err(SettingsError::NoCaBundle),
                    };
                    let client_auth = b.client_cert.clone().zip(b.client_key.clone());
                    Some(TlsFiles {
                        ca_file,
                        client_auth,
                    })
                } else {
                    None
                };
                Some(BrokerLinkConfig {
                    host: b.host.clone(),
                    port: b.port,
                    tls,
                    client_id: b.client_id.clone(),
                    username: b.username.clone(),
                    password,
                    keep_alive: b.keep_alive.max(Duration::from_secs(1)),
                    clean_session: b.clean_session,
                    connect_timeout: b.connect_timeout,
                    reconnect_min: b.reconnect_min,
                    reconnect_max: b.reconnect_max,
                    max_inflight: b.max_inflight,
                })
            }
        };
        let store = config.store.enabled.then(|| config.store.path.clone());
        let embedded_broker = EmbeddedBrokerConfig {
            listen: config.embedded_broker.listen,
        };
        let serial = config
            .serial
            .iter()
            .map(SerialLinkSettings::from_config)
            .collect();
        let fallback = config
            .broker
            .as_ref()
            .is_some_and(|b| b.fallback == sn_config::Fallback::Embedded);
        Ok(Settings {
            core,
            udp,
            serial,
            fallback,
            broker,
            embedded_broker,
            store,
        })
    }
}
