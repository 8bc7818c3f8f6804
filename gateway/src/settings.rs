//! From the configuration file (sn-config) to what the runtime runs: core settings, UDP links,
//! the broker link, the embedded broker. Kept apart so the CLI, the tests and the runtime agree
//! on one mapping.

use crate::broker::read_password;
use std::time::Duration;

use sn_config::{Config, CredentialsConfig, EmbeddedBrokerConfig, SerialConfig};
use sn_transports::UdpLinkConfig;

use crate::broker::{BrokerLinkConfig, TlsFiles, TransparentSettings};
use crate::core::{BrokerMode, CoreConfig};

/// The Debian/Ubuntu system CA bundle, used for `mqtts://` when no ca_file is configured.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Everything the runtime needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Protocol settings and limits.
    pub core: CoreConfig,
    /// One entry per UDP link: its `[[udp]]` options, and the core's `max_packet_size` as
    /// the largest datagram it accepts.
    pub udp: Vec<UdpLinkConfig>,
    /// One entry per serial link.
    pub serial: Vec<SerialConfig>,
    /// One entry per DTLS link (`[[dtls]]`), with its files' paths resolved.
    pub dtls: Vec<sn_config::DtlsConfig>,
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
    /// Transparent mode (`[broker] mode = "transparent"`): what the motes' own broker
    /// connections need; `None` in aggregating mode.
    pub transparent: Option<TransparentSettings>,
    /// What a running gateway can change without a restart (`[log] stats_interval`).
    pub live: LiveSettings,
}

/// The settings a running gateway takes without a restart (SIGHUP); see
/// [`crate::runtime::Runtime::live_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    /// `[log] stats_interval`: how often the stats line, the motes summary and the service
    /// status are written; zero: never (the final stats line is still logged).
    pub stats_interval: Duration,
}

impl LiveSettings {
    /// The live part of a configuration.
    pub fn from_config(config: &Config) -> LiveSettings {
        LiveSettings {
            stats_interval: config.log.stats_interval,
        }
    }
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
    /// A `[[credentials]]` password_file could not be read.
    #[error("cannot read the password_file {path} of [[credentials]] client_id = {client_id:?}: {source}")]
    CredentialsPasswordFile {
        /// The mote.
        client_id: String,
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
        let mut core = config.core.clone();
        // The spool lives in the store: without one there is nothing durable to hold messages
        // in, and refusing (PUBACK 0x01) is the honest answer.
        core.spool.enabled &= config.store.enabled;
        // Transparent mode is a way of meeting a remote broker; without one there is none.
        if config.broker.is_none() {
            core.mode = BrokerMode::Aggregating;
        }
        let udp = config
            .udp
            .iter()
            .map(|u| UdpLinkConfig {
                options: u.clone(),
                max_datagram: core.max_packet_size,
            })
            .collect();
        let broker = match &config.broker {
            None => None,
            Some(b) => {
                let password =
                    match (&b.password, &b.password_file) {
                        (Some(p), _) => Some(p.clone()),
                        (None, Some(path)) => Some(read_password(path).map_err(|source| {
                            SettingsError::PasswordFile {
                                path: path.display().to_string(),
                                source,
                            }
                        })?),
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
                let mut options = b.clone();
                options.password = password;
                options.keep_alive = b.keep_alive.max(Duration::from_secs(1));
                Some(BrokerLinkConfig { options, tls })
            }
        };
        let store = config.store.enabled.then(|| config.store.path.clone());
        let embedded_broker = config.embedded_broker.clone();
        let serial = config.serial.clone();
        // The fallback serves the aggregating connection's motes; in transparent mode each mote
        // is its own broker client, which a local broker cannot stand in for.
        let fallback = config.broker.as_ref().is_some_and(|b| {
            b.fallback == sn_config::Fallback::Embedded && core.mode == BrokerMode::Aggregating
        });
        let transparent = match &broker {
            Some(link) if core.mode == BrokerMode::Transparent => {
                Some(transparent_settings(config, link)?)
            }
            _ => None,
        };
        Ok(Settings {
            core,
            udp,
            serial,
            dtls: config.dtls.clone(),
            fallback,
            broker,
            embedded_broker,
            store,
            transparent,
            live: LiveSettings::from_config(config),
        })
    }
}

/// `[broker]` in transparent mode and `[[credentials]]`, with the password files read.
fn transparent_settings(
    config: &Config,
    link: &BrokerLinkConfig,
) -> Result<TransparentSettings, SettingsError> {
    let credentials = config
        .credentials
        .iter()
        .map(|c| {
            let password = match (&c.password, &c.password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(path)) => Some(read_password(path).map_err(|source| {
                    SettingsError::CredentialsPasswordFile {
                        client_id: c.client_id.clone(),
                        path: path.display().to_string(),
                        source,
                    }
                })?),
                (None, None) => None,
            };
            Ok(CredentialsConfig {
                password,
                ..c.clone()
            })
        })
        .collect::<Result<Vec<_>, SettingsError>>()?;
    Ok(TransparentSettings {
        broker: link.clone(),
        credentials,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn aggregating_mode_has_no_transparent_settings() {
        let config = Config::parse("[broker]\nurl = \"mqtt://h\"\n", "t.toml").unwrap();
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.core.mode, BrokerMode::Aggregating);
        assert!(settings.transparent.is_none());
        let settings = Settings::from_config(&Config::default()).unwrap();
        assert_eq!(settings.core.mode, BrokerMode::Aggregating);
        assert!(settings.transparent.is_none());
    }

    #[test]
    fn transparent_mode_maps_the_prefix_limits_and_logins() {
        let dir = std::env::temp_dir().join(format!("settings-transparent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m2.pass"), "from-file\n").unwrap();
        let text = "[broker]\nurl = \"mqtt://h:1999\"\nmode = \"transparent\"\n\
                    client_id_prefix = \"gw-\"\nmax_connecting = 7\nusername = \"shared\"\n\
                    password = \"sp\"\n\
                    [[credentials]]\nclient_id = \"m1\"\nusername = \"u1\"\npassword = \"p1\"\n\
                    [[credentials]]\nclient_id = \"m2\"\nusername = \"u2\"\n\
                    password_file = \"m2.pass\"\n";
        std::fs::write(dir.join("gw.toml"), text).unwrap();
        let config = Config::load(&dir.join("gw.toml")).unwrap();
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.core.mode, BrokerMode::Transparent);
        let t = settings.transparent.unwrap();
        assert_eq!(t.broker.options.client_id_prefix, "gw-");
        assert_eq!(t.broker.options.max_connecting, 7);
        assert_eq!(t.broker.options.port, 1999);
        assert_eq!(t.broker.options.username.as_deref(), Some("shared"));
        assert_eq!(t.credentials.len(), 2);
        assert_eq!(t.credentials[0].password.as_deref(), Some("p1"));
        assert_eq!(t.credentials[1].client_id, "m2");
        assert_eq!(t.credentials[1].password.as_deref(), Some("from-file"));
        // The gateway's own connection still runs (QoS -1 publishes).
        assert!(settings.broker.is_some());

        std::fs::remove_file(dir.join("m2.pass")).unwrap();
        let error = Settings::from_config(&config).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read the password_file")
                && error.contains("m2.pass of [[credentials]] client_id = \"m2\""),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
