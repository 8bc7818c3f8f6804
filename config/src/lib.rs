//! The gateway's configuration: one TOML file, every option with a default.
//!
//! [`Config::load`] reads, parses and validates a file; [`Config::parse`] does the same for text
//! already in memory. An empty file (or [`Config::default`]) is a complete, valid configuration.
//!
//! Every problem is reported as a [`ConfigIssue`] naming the line, the column and the field path
//! (`gateway.retry_interval`, `udp[1].bind`), with a message that says what is wrong and how to
//! fix it. All problems in a file are reported at once, except TOML syntax errors, after which
//! the file is not read further. The options themselves are described in
//! `docs/configuration.md` and in `config/gateway.example.toml`.
//!
//! ```
//! let config = sn_config::Config::parse("[gateway]\ngw_id = 7\n", "gateway.toml")?;
//! assert_eq!(config.core.gw_id, 7);
//! assert_eq!(config.udp.len(), 1); // no [[udp]]: one UDP link with the defaults
//!
//! let err = sn_config::Config::parse("[gateway]\nretry_interval = \"10x\"\n", "gateway.toml")
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "gateway.toml:2:18: gateway.retry_interval: \"10x\" is not a duration; \
//!      write a number with a unit, like \"10s\", \"500ms\" or \"2m\""
//! );
//! # Ok::<(), sn_config::ConfigError>(())
//! ```

#![forbid(unsafe_code)]

mod credentials;
mod duration;
mod error;
mod reader;
mod serial;
mod suggest;
mod values;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::CredentialsConfig;
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigIssue};
pub use serial::{SelectorParseError, SerialConfig, SerialDevice, SerialFraming, DEFAULT_BAUD};
/// The protocol core's options, defined (with their defaults) in sn-core and filled here from
/// `[gateway]`, `[predefined_topics]`, `[policy]`, `[[mote]]`, `[spool]` and `[broker] mode`.
pub use sn_core::{
    AddrPattern, Admission, BrokerMode, CoreConfig, LinkId, MinusOneRules, MoteEntry, PolicyConfig,
    QueueOverflow, SpoolConfig, SpoolFull, TopicRules,
};

/// The default MQTT-SN UDP port, used by the default bind and discovery addresses.
pub const DEFAULT_UDP_PORT: u16 = 1883;
/// The default `recv_buffer` of a `[[udp]]` link: 4 MiB.
///
/// A gateway serving many motes sees bursts (every mote waking on the same schedule), and
/// while the gateway is busy the kernel holds what arrives in this buffer; the Linux default
/// (~200 KiB) overflows at once. The kernel caps the request at `net.core.rmem_max`
/// (sysctl), which is fine: it is a wish, not a requirement. Datagrams that arrive while the
/// buffer is full are dropped by the kernel and counted (the UDP link's `kernel_drops`).
pub const DEFAULT_UDP_RECV_BUFFER: u32 = 4 << 20;
/// The smallest `recv_buffer` accepted: 4 KiB.
pub const MIN_UDP_RECV_BUFFER: u32 = 4 << 10;
/// The largest `recv_buffer` accepted: 1 GiB.
pub const MAX_UDP_RECV_BUFFER: u32 = 1 << 30;
/// The default port of an `mqtt://` broker URL.
pub const DEFAULT_MQTT_PORT: u16 = 1883;
/// The default port of an `mqtts://` (TLS) broker URL.
pub const DEFAULT_MQTTS_PORT: u16 = 8883;
/// The default IPv4 discovery group (ADVERTISE and GWINFO are sent there).
pub const DEFAULT_DISCOVERY_V4: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(225, 1, 1, 1)), DEFAULT_UDP_PORT);
/// The default IPv6 discovery group: all nodes on the link, `[ff02::1]:1883`.
pub const DEFAULT_DISCOVERY_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
    DEFAULT_UDP_PORT,
);

/// The whole gateway configuration, as read from one TOML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The protocol core's options: `[gateway]` (all but `worker_threads`),
    /// `[predefined_topics]` (sorted by id), `[policy]` and `[[mote]]` (`core.policy`, each
    /// entry completed with the `[policy]` rules it does not state), `[spool]` and `[broker]
    /// mode`. Their defaults are [`CoreConfig::default`]'s; the gateway turns the spool off
    /// when `[store]` is off.
    pub core: CoreConfig,
    /// `[[mote]] link` of each entry of `core.policy.motes`, at the same index, as written
    /// (`"udp:0.0.0.0:1883"`, `"serial:/dev/ttyUSB0"`); `None` for an entry without one. The
    /// names are kept because the link ids they resolve to depend on the `[[udp]]` and
    /// `[[serial]]` lists, which the CLI may replace: see [`Config::resolve_mote_links`].
    pub mote_links: Vec<Option<String>>,
    /// `[gateway] worker_threads`: threads that run the gateway (links, core, broker
    /// connections): 1 (the default) runs everything on one thread, which measured fastest
    /// (no hand-offs between threads); 0 means one per CPU core; more can help transparent
    /// mode with many motes. 0 to 1024. The embedded broker always has a thread of its own.
    pub worker_threads: u16,
    /// `[[udp]]`: the UDP links. A file without `[[udp]]` gets one link with the defaults;
    /// `udp = []` means no UDP link at all.
    pub udp: Vec<UdpConfig>,
    /// `[[serial]]`: serial-attached radios and motes; none by default.
    pub serial: Vec<SerialConfig>,
    /// `[[dtls]]`: DTLS 1.2 links (encrypted UDP, motes authenticated by a pre-shared key or
    /// a certificate); none by default. They are numbered after the UDP and serial links.
    pub dtls: Vec<DtlsConfig>,
    /// `[broker]`: the remote MQTT broker, or `None` when the file has no `[broker]` section.
    pub broker: Option<BrokerConfig>,
    /// `[[credentials]]`: the login of each mote's own broker connection in transparent mode
    /// (`[broker] mode = "transparent"`), by the mote's client id; none by default.
    pub credentials: Vec<CredentialsConfig>,
    /// `[embedded_broker]`: the MQTT broker inside the gateway, used when no remote broker
    /// is configured.
    pub embedded_broker: EmbeddedBrokerConfig,
    /// `[metrics]`: the metrics and health endpoint (off by default).
    pub metrics: MetricsConfig,
    /// `[log]`: what is logged.
    pub log: LogConfig,
    /// `[store]`: the durable state file.
    pub store: StoreConfig,
    /// Settings the file makes that have no effect (the file is still valid), each with its
    /// place and how to fix the file: `[spool]` (or its default) with `[store] enabled =
    /// false`, `[broker] fallback` in transparent mode; and one setting that works but is
    /// risky: the embedded broker listening beyond loopback (it has no logins). `check-config` prints them and the gateway logs them
    /// at start. Empty for [`Config::default`].
    pub warnings: Vec<ConfigIssue>,
}

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    ///
    /// Relative paths inside the file (`password_file`, `ca_file`, `client_cert`,
    /// `client_key`, in `[broker]` and in `[[credentials]]`; `psk_file`, `cert`, `key` and
    /// `ca_file` in `[[dtls]]`) are resolved against the file's
    /// directory, and each of those files must be readable: one that is missing or unreadable
    /// is an error at its line, so `check-config` finds it and the gateway stops before it
    /// binds a port (rather than when a broker connection first needs it). A missing or
    /// unreadable configuration file is an error naming the path and the operating system's
    /// reason. The state file and serial devices are not checked: the one is created, the
    /// others may be plugged in later.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| {
            let hint = match err.kind() {
                std::io::ErrorKind::NotFound => "; check the path given to --config",
                std::io::ErrorKind::PermissionDenied => {
                    "; make the file readable by the user the gateway runs as"
                }
                std::io::ErrorKind::InvalidData => "; the file must be UTF-8 text",
                _ => "",
            };
            ConfigError {
                origin: origin.clone(),
                issues: vec![ConfigIssue {
                    line: None,
                    column: None,
                    field: String::new(),
                    message: format!("cannot read the configuration file: {err}{hint}"),
                }],
            }
        })?;
        let (mut config, files) = reader::parse_with_files(&text, &origin)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(dir);
        let mut issues: Vec<ConfigIssue> = files
            .iter()
            .filter_map(|file| unreadable(file, dir))
            .collect();
        // In the file's order, like every other list of issues.
        issues.sort_by_key(|issue| (issue.line, issue.column));
        if !issues.is_empty() {
            return Err(ConfigError { origin, issues });
        }
        Ok(config)
    }

    /// Parses and validates configuration text; `origin` is the file name used in messages.
    ///
    /// Returns every problem found (see [`ConfigError`]); an empty text gives
    /// [`Config::default`]. Paths are kept as written (see [`Config::resolve_paths`]).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        reader::parse(text, origin)
    }

    /// Makes the relative paths in the configuration relative to `base` (normally the
    /// directory of the configuration file). [`Config::load`] calls this itself.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.store.path.is_relative() {
            self.store.path = base.join(&self.store.path);
        }
        if let Some(broker) = &mut self.broker {
            for path in [
                &mut broker.password_file,
                &mut broker.ca_file,
                &mut broker.client_cert,
                &mut broker.client_key,
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        for link in &mut self.dtls {
            let certificates = link
                .certificates
                .as_mut()
                .into_iter()
                .flat_map(|c| [&mut c.certificate, &mut c.private_key, &mut c.client_ca]);
            for path in link.psk_file.iter_mut().chain(certificates) {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        for entry in &mut self.credentials {
            for path in [
                &mut entry.password_file,
                &mut entry.client_cert,
                &mut entry.client_key,
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
    }
}

/// The problem with a file an option names, if it cannot be read (resolved like
/// [`Config::resolve_paths`] does).
fn unreadable(file: &reader::NamedFile, base: &Path) -> Option<ConfigIssue> {
    let path = if file.path.is_relative() {
        base.join(&file.path)
    } else {
        file.path.clone()
    };
    let shown = path.display();
    let problem = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Some(format!("{shown} is a folder; name the file in it")),
        // Opening is the test that counts: permissions, ACLs and SELinux all have their say.
        Ok(_) => match std::fs::File::open(&path) {
            Ok(_) => None,
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                "cannot read {shown}: {error}; make it readable by the user the gateway runs as"
            )),
            Err(error) => Some(format!("cannot read {shown}: {error}")),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "{shown} does not exist; check the path (a relative path is relative to the \
             configuration file's folder)"
        )),
        Err(error) => Some(format!("cannot read {shown}: {error}")),
    }?;
    Some(ConfigIssue {
        line: Some(file.line),
        column: Some(file.column),
        field: file.field.clone(),
        message: problem,
    })
}

impl Default for Config {
    /// The configuration of an empty file: all defaults, one UDP link, no remote broker.
    fn default() -> Self {
        Config {
            core: CoreConfig::default(),
            mote_links: Vec::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
            udp: vec![UdpConfig::default()],
            serial: Vec::new(),
            dtls: Vec::new(),
            broker: None,
            credentials: Vec::new(),
            embedded_broker: EmbeddedBrokerConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            warnings: Vec::new(),
        }
    }
}

/// The default `[gateway] worker_threads`: one thread, measured fastest.
pub const DEFAULT_WORKER_THREADS: u16 = 1;

/// `[[udp]]`: one UDP link.
///
/// The UDP link (sn-transports) runs with these options as they are; this is where each is
/// defined, with its rules and its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// The local address and port the link listens on, e.g. `0.0.0.0:1883` or `[::]:1883`.
    /// Default `0.0.0.0:1883`.
    pub bind: SocketAddr,
    /// Where ADVERTISE and GWINFO are sent; `None` turns discovery off. Default
    /// `225.1.1.1:1883` for an IPv4 bind, `[ff02::1]:1883` for an IPv6 bind.
    ///
    /// * IPv4 multicast group: joined at bind, so SEARCHGW sent to the group is received
    ///   (when bound to `0.0.0.0` and the bind port equals the group's port). The group is
    ///   joined on the bind address's interface, or on the one the routing table picks when
    ///   bound to `0.0.0.0`.
    /// * Any other IPv4 address: treated as a (limited or directed) broadcast address;
    ///   SO_BROADCAST is set.
    /// * IPv6 multicast group: joined on the interface index given as the address's scope
    ///   id (`0` = any), which is also used for sending when not 0.
    /// * IPv6 unicast: sent to as it is (IPv6 has no broadcast).
    ///
    /// Must be of the same IP version as `bind`.
    pub discovery: Option<SocketAddr>,
    /// IP_MULTICAST_TTL (IPv4) / IPV6_MULTICAST_HOPS (IPv6) of discovery sends, 0 to 255 (0
    /// keeps them on this host). A SEARCHGW radius caps it per send. Default 1.
    pub multicast_ttl: u32,
    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP: whether this host's own sockets see our
    /// discovery sends. Default false.
    pub multicast_loop: bool,
    /// The socket receive buffer (SO_RCVBUF) to ask the kernel for, in bytes: what arrives
    /// while the gateway is busy waits there, and what does not fit is dropped by the kernel
    /// (and counted). The kernel caps it at `net.core.rmem_max`. Default 4 MiB
    /// ([`DEFAULT_UDP_RECV_BUFFER`]), 4 KiB to 1 GiB.
    pub recv_buffer: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_UDP_PORT),
            discovery: Some(DEFAULT_DISCOVERY_V4),
            multicast_ttl: 1,
            multicast_loop: false,
            recv_buffer: DEFAULT_UDP_RECV_BUFFER,
        }
    }
}

impl UdpConfig {
    /// A UDP link bound to `addr` (`"0.0.0.0:1883"`, `"[::]:1883"`) with the other options at
    /// their defaults; discovery goes to the default group of the bind address's IP family.
    /// For the CLI's `--udp ADDR`. The error says what is wrong with `addr`.
    pub fn from_bind(addr: &str) -> Result<UdpConfig, String> {
        let bind = values::parse_socket_addr(addr)?;
        Ok(UdpConfig {
            bind,
            discovery: Some(UdpConfig::default_discovery(&bind)),
            ..UdpConfig::default()
        })
    }

    /// The default discovery address for a link bound to `bind`: `225.1.1.1:1883` for IPv4,
    /// `[ff02::1]:1883` for IPv6.
    pub fn default_discovery(bind: &SocketAddr) -> SocketAddr {
        match bind {
            SocketAddr::V4(_) => DEFAULT_DISCOVERY_V4,
            SocketAddr::V6(_) => DEFAULT_DISCOVERY_V6,
        }
    }
}

/// The cipher suites a `[[dtls]]` link offers by default (OpenSSL names): the RFC 7925 IoT
/// profile's PSK and ECDSA suites with CCM_8, and their GCM counterparts.
pub const DEFAULT_DTLS_CIPHER_SUITES: [&str; 4] = [
    "PSK-AES128-CCM8",
    "PSK-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
];

/// `engine` of a `[[dtls]]` link: the library that does its DTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsEngineName {
    /// `"openssl"`: the system's libssl (OpenSSL 3). No Connection ID.
    OpenSsl,
    /// `"mbedtls"`: Mbed TLS 3.6, built into the gateway. Has the Connection ID.
    MbedTls,
}

/// `[[dtls]]`: one DTLS 1.2 link, a UDP socket whose motes speak MQTT-SN inside DTLS
/// records and prove who they are with a pre-shared key or a client certificate.
///
/// There is no `discovery`: ADVERTISE and GWINFO go to a broadcast or multicast address,
/// which DTLS cannot protect (records belong to one connection), and a mote that holds a key
/// for this gateway is given its address with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsConfig {
    /// The local address and port the link listens on, like `0.0.0.0:8883` or `[::]:8883`.
    /// Required.
    pub bind: SocketAddr,
    /// `engine`: `"openssl"` or `"mbedtls"`; `None` (not given): the build's default, Mbed
    /// TLS when it is built in (the default build).
    pub engine: Option<DtlsEngineName>,
    /// `connection_id`: give each session a DTLS Connection ID (RFC 9146), so a mote whose
    /// address changes (a NAT that rebinds its port) keeps its session. Needs the mbedtls
    /// engine. Default false.
    pub connection_id: bool,
    /// `psk_file`: the motes' pre-shared keys, one `identity:hexkey` per line; read at start
    /// and again on SIGHUP. `None`: certificates only.
    pub psk_file: Option<PathBuf>,
    /// `cert`, `key`, `ca_file`: the gateway's certificate and key, and the CAs client
    /// certificates must chain to. `None`: pre-shared keys only.
    pub certificates: Option<DtlsCertificates>,
    /// Cipher suites in OpenSSL names, in preference order. Default
    /// [`DEFAULT_DTLS_CIPHER_SUITES`].
    pub cipher_suites: Vec<String>,
    /// Largest datagram the link sends (the path MTU less IP and UDP headers), 256 to 65507.
    /// Default 1200.
    pub mtu: u32,
    /// Handshakes in progress at once, all sources together, 1 to 1 000 000. Default 256.
    pub max_handshakes: u32,
    /// Handshakes in progress at once from one IP address, 1 to 1 000 000. Default 8.
    pub max_handshakes_per_ip: u32,
    /// A handshake not finished this long after the mote proved its address is dropped,
    /// 100 ms to 5 min. Default 10 s.
    pub handshake_timeout: Duration,
    /// A connection silent this long is lost (the mote's Will goes out), 1 s to 30 days.
    /// Default 24 h: longer than a mote sleeps, so a sleeping mote wakes on its session.
    pub idle_timeout: Duration,
    /// `recv_buffer`: the socket receive buffer (SO_RCVBUF) to ask the kernel for, in bytes,
    /// as `[[udp]] recv_buffer` (the same default and range, and the same socket code): a
    /// fleet's handshakes and publishes arrive in bursts, and what does not fit while the
    /// link is busy decrypting is dropped by the kernel (and counted). Default 4 MiB
    /// ([`DEFAULT_UDP_RECV_BUFFER`]), 4 KiB to 1 GiB.
    pub recv_buffer: u32,
}

/// The certificate files of a `[[dtls]]` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsCertificates {
    /// `cert`: the gateway's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// `key`: the gateway's private key (PEM).
    pub private_key: PathBuf,
    /// `ca_file`: the CA certificates (PEM) client certificates must chain to; a client
    /// certificate's CN (else its first DNS name) is the mote's identity.
    pub client_ca: PathBuf,
}

impl DtlsConfig {
    /// A link on `bind` with no keys or certificates yet and every other option at its
    /// default.
    pub fn new(bind: SocketAddr) -> DtlsConfig {
        DtlsConfig {
            bind,
            engine: None,
            connection_id: false,
            psk_file: None,
            certificates: None,
            cipher_suites: DEFAULT_DTLS_CIPHER_SUITES
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            mtu: 1200,
            max_handshakes: 256,
            max_handshakes_per_ip: 8,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(24 * 3600),
            recv_buffer: DEFAULT_UDP_RECV_BUFFER,
        }
    }

    /// The link's name as a `[[mote]] link` writes it: `dtls:0.0.0.0:8883`.
    pub fn name(&self) -> String {
        format!("dtls:{}", self.bind)
    }
}

/// `[broker]`: the remote MQTT broker the gateway forwards to. (Its `mode` is a core option:
/// The default `[broker] status_topic`: `%i` is the broker client id.
pub const DEFAULT_STATUS_TOPIC: &str = "%i/status";

/// [`CoreConfig::mode`] in [`Config::core`].)
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// The broker URL, normalised and without user info (so it is safe to log):
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// True for `mqtts://`: the connection uses TLS.
    pub tls: bool,
    /// The host: a DNS name, an IPv4 address, or an IPv6 address *without* brackets
    /// (see [`BrokerConfig::address`]).
    pub host: String,
    /// The TCP port: from the URL, or 1883 for `mqtt://` and 8883 for `mqtts://`.
    pub port: u16,
    /// The gateway's own MQTT client id. Default `mqtt-sn-gateway`.
    pub client_id: String,
    /// MQTT user name: the `username` option, else the user in the URL.
    pub username: Option<String>,
    /// MQTT password: the `password` option, else the password in the URL (unless
    /// `password_file` is set).
    pub password: Option<String>,
    /// A file whose content (without a trailing newline) is the password; read by the gateway
    /// at start-up.
    pub password_file: Option<PathBuf>,
    /// MQTT keep-alive towards the broker; whole seconds, 5 s to 65535 s. Default 30 s.
    pub keep_alive: Duration,
    /// MQTT CleanSession for the gateway's own connection. Default false.
    pub clean_session: bool,
    /// How long one connection attempt (TCP, TLS and CONNACK) may take. Default 10 s.
    pub connect_timeout: Duration,
    /// First reconnect delay; it doubles (with jitter) up to `reconnect_max`. Default 500 ms.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub reconnect_max: Duration,
    /// Unacknowledged upstream QoS 1/2 publishes at once, 1 to 65535. Default 100.
    pub max_inflight: u16,
    /// Of those, QoS 2 publishes between PUBLISH and PUBCOMP at once, 1 to 65535, used up to
    /// `max_inflight`. Default 10: below mosquitto's 20 (`max_inflight_messages`), beyond
    /// which a broker discards a QoS 2 message it answered with PUBREC.
    pub max_inflight_qos2: u16,
    /// PEM CA bundle to verify the broker (TLS only); `None` uses the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (TLS only); set together with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert` (TLS only).
    pub client_key: Option<PathBuf>,
    /// What serves the motes while this broker is unreachable. Default
    /// [`Fallback::Embedded`].
    pub fallback: Fallback,
    /// Transparent mode: prepended to each mote's client id on its broker connection.
    /// Default empty.
    pub client_id_prefix: String,
    /// Transparent mode: motes' connections being opened at once (TCP, TLS, CONNACK); the
    /// others wait their turn. 1 to 10000, default 100.
    pub max_connecting: u16,
    /// `status_topic`: the gateway's own retained status on the broker, "online" while its
    /// link is up and "offline" (its MQTT Will) once it is gone, also when the gateway is
    /// killed; `%i` stands for `client_id`. `None` (`status_topic = ""`): no status.
    /// Default `"%i/status"`.
    pub status_topic: Option<String>,
}

/// `[broker] fallback`: what serves the motes while the remote broker is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The embedded broker: motes and local apps keep seeing each other's messages, new motes
    /// can connect and subscribe; uplink messages are also spooled for the remote broker.
    Embedded,
    /// Nothing: connected motes' messages go to the spool, new CONNECTs and SUBSCRIBEs are
    /// refused (return code 0x01) until the broker is back.
    Off,
}

impl BrokerConfig {
    /// A broker configuration for `url` with every other option at its default (user name and
    /// password come from the URL's user info, if any). For the CLI's `--broker URL`. The error
    /// says what is wrong with the URL.
    pub fn from_url(url: &str) -> Result<BrokerConfig, String> {
        let parsed = values::parse_broker_url(url)?;
        if parsed.password.is_some() && parsed.username.is_none() {
            return Err(values::PASSWORD_NEEDS_USER.to_string());
        }
        Ok(BrokerConfig::from_parsed(parsed))
    }

    /// A plain `mqtt://` broker at `addr` with every other option at its default and no
    /// login: for connections the gateway makes to a broker it knows the address of (its
    /// embedded broker), and for tests.
    pub fn plain(addr: SocketAddr) -> BrokerConfig {
        BrokerConfig::from_parsed(values::BrokerUrl {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            username: None,
            password: None,
            normalized: format!("mqtt://{addr}"),
        })
    }

    pub(crate) fn from_parsed(url: values::BrokerUrl) -> BrokerConfig {
        BrokerConfig {
            url: url.normalized,
            tls: url.tls,
            host: url.host,
            port: url.port,
            client_id: "mqtt-sn-gateway".to_string(),
            username: url.username,
            password: url.password,
            password_file: None,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            connect_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            max_inflight: 100,
            max_inflight_qos2: 10,
            ca_file: None,
            client_cert: None,
            client_key: None,
            fallback: Fallback::Embedded,
            client_id_prefix: String::new(),
            max_connecting: 100,
            status_topic: Some(DEFAULT_STATUS_TOPIC.to_string()),
        }
    }

    /// `host:port` for connecting, with an IPv6 host in brackets (`[::1]:1883`).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for BrokerConfig {
    /// Like a derived `Debug`, but the password is shown as `"***"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("max_inflight", &self.max_inflight)
            .field("max_inflight_qos2", &self.max_inflight_qos2)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("fallback", &self.fallback)
            .field("client_id_prefix", &self.client_id_prefix)
            .field("max_connecting", &self.max_connecting)
            .finish()
    }
}

/// The default TCP address of the embedded broker: loopback only, the standard MQTT port.
pub const DEFAULT_EMBEDDED_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_MQTT_PORT);

/// `[metrics]`: the HTTP endpoint for Prometheus (`/metrics`) and health checks (`/healthz`,
/// `/readyz`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `listen`: the TCP address to serve on; `None` (the default, or `"off"`): no endpoint.
    /// Loopback is the safe choice: the endpoint has no login.
    pub listen: Option<SocketAddr>,
}

/// `[embedded_broker]`: the MQTT broker that runs inside the gateway when no remote broker is
/// configured, so that motes reach each other and local MQTT apps reach the motes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedBrokerConfig {
    /// The TCP address local MQTT apps (mosquitto_sub, Node-RED) connect to; `None` (written
    /// `"off"`) when no app may connect (the gateway's own link then uses an ephemeral loopback
    /// port). Default `127.0.0.1:1883`; port 0 picks a free port.
    pub listen: Option<SocketAddr>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            listen: Some(DEFAULT_EMBEDDED_LISTEN),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `off`, `error`, `warn`, `info`, `debug` or `trace`, or a list of tracing `EnvFilter`
    /// directives such as `mqtt_sn_gateway=debug,info`, each with a level. Default `info`.
    pub level: String,
    /// How each line is written. Default [`LogFormat::Text`].
    pub format: LogFormat,
    /// How often the stats line (and the summary of motes connected, disconnected and lost,
    /// when there were any) is logged; zero turns both off. Default 300 s
    /// ([`DEFAULT_STATS_INTERVAL`]).
    pub stats_interval: Duration,
}

/// The default `[log] stats_interval`: 5 minutes.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(300);

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
            stats_interval: DEFAULT_STATS_INTERVAL,
        }
    }
}

impl LogConfig {
    /// A log configuration with `level`, checked like the `level` option, and the other
    /// options at their defaults. For the CLI's `--log-level LEVEL`.
    pub fn from_level(level: &str) -> Result<LogConfig, String> {
        check_log_level(level)?;
        Ok(LogConfig {
            level: level.trim().to_string(),
            ..LogConfig::default()
        })
    }
}

/// Checks a log level or a list of tracing `EnvFilter` directives like the `[log] level`
/// option: every directive has a real level (`"verbose"` and `"x=infoo"` are refused, with a
/// suggestion when one is close). For `--log-level` and `RUST_LOG`; the error is a sentence
/// saying what to write instead.
pub fn check_log_level(level: &str) -> Result<(), String> {
    values::check_log_level(level)
}

/// `[log] format`: how each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text: time, level, message, then the fields as `name=value`.
    Text,
    /// One JSON object per line, for log collectors: `timestamp`, `level`, `target`,
    /// `message`, and the event's fields as members.
    Json,
}

impl LogFormat {
    /// The format named `name` (`"text"` or `"json"`, any case); the error says what to write.
    pub fn parse(name: &str) -> Result<LogFormat, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "{name:?} is not a log format; use \"text\" or \"json\""
            )),
        }
    }

    /// The name the option is written with.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[store]`: where the gateway keeps what must survive a restart (sessions of sleeping and
/// persistent motes, their subscriptions, topic ids and queued messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Whether state is kept on disk at all. Default true.
    pub enabled: bool,
    /// The redb file. Default `mqtt-sn-gateway.redb`; a relative path is relative to the
    /// configuration file's folder (or the working directory without one).
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: PathBuf::from("mqtt-sn-gateway.redb"),
        }
    }
}
