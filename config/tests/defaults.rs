//! Defaults, the example file, a complete file, loading from disk, the error format.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{issues, ok};
use sn_config::{
    BrokerConfig, BrokerMode, Config, ConfigError, ConfigIssue, CoreConfig, CredentialsConfig,
    Fallback, LogConfig, LogFormat, SpoolConfig, UdpConfig,
};

const EXAMPLE: &str = include_str!("../gateway.example.toml");
const DOCS: &str = include_str!("../../docs/configuration.md");

/// Every option of every section, as documented.
const OPTIONS: &[(&str, &[&str])] = &[
    (
        "gateway",
        &[
            "gw_id",
            "advertise_interval",
            "retry_interval",
            "max_retries",
            "max_sessions",
            "max_sessions_per_address",
            "max_topics_per_session",
            "max_queued_per_session",
            "max_queued_bytes_per_session",
            "max_queued_bytes_total",
            "max_state_bytes",
            "queue_overflow",
            "max_packet_size",
            "max_client_id_len",
            "max_sleep_duration",
            "qos_minus_one",
            "roaming",
            "connect_rate",
            "max_pending_qos0",
            "worker_threads",
        ],
    ),
    (
        "policy",
        &[
            "admission",
            "publish",
            "subscribe",
            "mountpoint",
            "qos_minus_one_publish",
            "qos_minus_one_from",
        ],
    ),
    (
        "mote",
        &[
            "client_id",
            "address",
            "link",
            "identity",
            "roaming",
            "publish",
            "subscribe",
            "mountpoint",
        ],
    ),
    (
        "udp",
        &[
            "bind",
            "discovery",
            "multicast_ttl",
            "multicast_loop",
            "recv_buffer",
        ],
    ),
    (
        "serial",
        &[
            "device",
            "usb",
            "serial_number",
            "baud",
            "framing",
            "max_frame",
            "discovery",
        ],
    ),
    (
        "dtls",
        &[
            "bind",
            "engine",
            "connection_id",
            "psk_file",
            "cert",
            "key",
            "ca_file",
            "cipher_suites",
            "mtu",
            "max_handshakes",
            "max_handshakes_per_ip",
            "handshake_timeout",
            "idle_timeout",
            "recv_buffer",
        ],
    ),
    (
        "broker",
        &[
            "url",
            "client_id",
            "username",
            "password",
            "password_file",
            "keep_alive",
            "clean_session",
            "connect_timeout",
            "reconnect_min",
            "reconnect_max",
            "max_inflight",
            "max_inflight_qos2",
            "ca_file",
            "client_cert",
            "client_key",
            "fallback",
            "mode",
            "client_id_prefix",
            "max_connecting",
            "status_topic",
        ],
    ),
    (
        "credentials",
        &[
            "client_id",
            "username",
            "password",
            "password_file",
            "client_cert",
            "client_key",
        ],
    ),
    ("embedded_broker", &["listen"]),
    ("log", &["level", "format", "stats_interval"]),
];

#[test]
fn empty_file_is_the_default() {
    assert_eq!(ok(""), Config::default());
    assert_eq!(ok("\n# only a comment\n\n"), Config::default());
    assert_eq!(
        ok("[gateway]\n[predefined_topics]\n[log]\n"),
        Config::default()
    );
}

#[test]
fn default_values() {
    let c = Config::default();
    let g = &c.core;
    assert_eq!(g.gw_id, 1);
    assert_eq!(g.advertise_interval, Duration::from_secs(900));
    assert_eq!(g.retry_interval, Duration::from_secs(10));
    assert_eq!(g.max_retries, 3);
    assert_eq!(g.max_sessions, 10_000);
    assert_eq!(g.max_topics_per_session, 1000);
    assert_eq!(g.max_queued_per_session, 1000);
    assert_eq!(g.max_packet_size, 1024);
    assert_eq!(g.max_client_id_len, 64);
    assert!(g.qos_minus_one);
    assert_eq!(g.max_pending_qos0, 10_000);
    assert_eq!(c.worker_threads, 1);
    assert!(c.core.predefined_topics.is_empty());
    assert_eq!(
        c.udp,
        vec![UdpConfig {
            bind: "0.0.0.0:1883".parse().unwrap(),
            discovery: Some("225.1.1.1:1883".parse().unwrap()),
            multicast_ttl: 1,
            multicast_loop: false,
            recv_buffer: 4 << 20,
        }]
    );
    assert_eq!(c.broker, None);
    assert!(c.credentials.is_empty());
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, sn_config::LogFormat::Text);
    assert_eq!(c.log.stats_interval, Duration::from_secs(300));
}

#[test]
fn an_empty_udp_list_means_no_udp_link() {
    assert!(ok("udp = []").udp.is_empty());
}

/// The example's commented-out `# key = value` lines that state an option's default, by
/// section: [`example_file_states_exactly_the_defaults`] uncomments and checks them.
const COMMENTED_DEFAULTS: &[(&str, &[&str])] = &[
    ("serial", &["baud", "max_frame", "discovery"]),
    (
        "dtls",
        &[
            "connection_id",
            "cipher_suites",
            "mtu",
            "max_handshakes",
            "max_handshakes_per_ip",
            "handshake_timeout",
            "idle_timeout",
            "recv_buffer",
        ],
    ),
    (
        "policy",
        &[
            "admission",
            "publish",
            "subscribe",
            "mountpoint",
            "qos_minus_one_from",
        ],
    ),
];
/// The keys a commented-out section needs to parse at all (required options, no default).
const REQUIRED_TO_PARSE: &[(&str, &[&str])] = &[
    ("serial", &["device", "framing"]),
    ("dtls", &["bind", "psk_file"]),
];
/// The example's commented-out lines that show an example value of an option without a
/// default (optional, or required in a section that is itself optional).
const COMMENTED_EXAMPLES: &[(&str, &[&str])] = &[
    ("predefined_topics", &["1", "0x0010"]),
    ("policy", &["qos_minus_one_publish"]),
    ("presence", &["topic"]),
    ("metrics", &["listen"]),
    (
        "mote",
        &[
            "client_id",
            "address",
            "link",
            "identity",
            "roaming",
            "publish",
            "subscribe",
            "mountpoint",
        ],
    ),
    ("serial", &["device", "usb", "serial_number", "framing"]),
    (
        "dtls",
        &["bind", "engine", "psk_file", "cert", "key", "ca_file"],
    ),
    (
        "broker",
        &[
            "username",
            "password",
            "password_file",
            "ca_file",
            "client_cert",
            "client_key",
        ],
    ),
    (
        "credentials",
        &[
            "client_id",
            "username",
            "password",
            "password_file",
            "client_cert",
            "client_key",
        ],
    ),
];

/// A line of the example as (section, key, the line uncommented) when it is a commented-out
/// option or section header; the section is the last header above it, commented or not.
fn commented_options(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let (commented, body) = match line.strip_prefix("# ") {
            Some(body) => (true, body),
            None => (false, line),
        };
        if let Some(header) = body.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            section = name[..name.find(']').unwrap()].to_string();
            continue;
        }
        let Some((key, _)) = body.split_once(" = ") else {
            continue;
        };
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if commented && is_key {
            found.push((section.clone(), key.to_string(), body.to_string()));
        }
    }
    found
}

fn listed(list: &[(&str, &[&str])], section: &str, key: &str) -> bool {
    list.iter()
        .any(|(s, keys)| *s == section && keys.contains(&key))
}

/// The example states exactly the defaults: every option written in it has the value the code
/// gives it when it is left out (the one deliberate difference is the [broker] section, whose
/// options other than url are at their defaults too), and every commented-out option is
/// either one without a default or states the default, which is checked by uncommenting it.
#[test]
fn example_file_states_exactly_the_defaults() {
    // What the file states, as written.
    let mut config = ok(EXAMPLE);
    // The one deliberate difference: the example has a [broker] section with only the url set,
    // and so (with the default open admission) the warning that it opens the broker.
    assert_eq!(
        config.broker,
        Some(BrokerConfig::from_url("mqtt://localhost:1883").unwrap())
    );
    config.broker = None;
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    assert_eq!(config.warnings[0].field, "broker");
    assert!(config.warnings[0].message.contains("docs/security.md"));
    config.warnings.clear();
    assert_eq!(config, Config::default());

    // Every commented-out option is accounted for, and every listed one is in the file.
    let commented = commented_options(EXAMPLE);
    for (section, key, line) in &commented {
        assert!(
            listed(COMMENTED_DEFAULTS, section, key) || listed(COMMENTED_EXAMPLES, section, key),
            "the example's commented-out line {line:?} in [{section}] is neither listed as \
             stating a default nor as an example value; add it to one of the lists"
        );
    }
    for list in [COMMENTED_DEFAULTS, COMMENTED_EXAMPLES] {
        for (section, keys) in list {
            for key in *keys {
                assert!(
                    commented.iter().any(|(s, k, _)| s == section && k == key),
                    "the example has no commented-out {section}.{key}"
                );
            }
        }
    }

    // A commented-out default, uncommented, changes nothing: the section with it parses to
    // what the section with only its required keys does.
    for (section, defaults) in COMMENTED_DEFAULTS {
        let required = REQUIRED_TO_PARSE
            .iter()
            .find(|(s, _)| s == section)
            .map_or(&[][..], |(_, keys)| *keys);
        let header = if ["serial", "udp", "dtls", "credentials", "mote"].contains(section) {
            format!("[[{section}]]\n")
        } else {
            format!("[{section}]\n")
        };
        let lines = |keys: &[&str]| -> String {
            commented
                .iter()
                .filter(|(s, k, _)| s == section && keys.contains(&k.as_str()))
                .map(|(_, _, line)| format!("{line}\n"))
                .collect()
        };
        let bare = ok(&format!("{header}{}", lines(required)));
        let all: Vec<&str> = required.iter().chain(defaults.iter()).copied().collect();
        let stated = ok(&format!("{header}{}", lines(&all)));
        assert_eq!(
            stated,
            bare,
            "a commented-out default in [{section}] of the example is not the code's default:\n{}",
            lines(defaults)
        );
    }
}

#[test]
fn example_file_and_docs_mention_every_option() {
    for (section, keys) in OPTIONS {
        for key in *keys {
            let assignment = format!("{key} = ");
            assert!(
                EXAMPLE.contains(&assignment),
                "example lacks {section}.{key}"
            );
            assert!(
                DOCS.contains(&format!("`{key}`")),
                "docs/configuration.md lacks {section}.{key}"
            );
        }
    }
}

#[test]
fn the_option_lists_match_the_code() {
    // The unknown-option message lists the valid options; they must be the documented ones.
    for (section, keys) in OPTIONS {
        let header = if *section == "credentials" {
            // [[credentials]] need a [broker] in transparent mode.
            "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\n[[credentials]]".to_string()
        } else if ["udp", "serial", "dtls", "mote"].contains(section) {
            format!("[[{section}]]")
        } else {
            format!("[{section}]")
        };
        let extra = if *section == "broker" {
            "url = \"mqtt://h\"\n"
        } else if *section == "serial" {
            "device = \"/dev/ttyUSB0\"\nframing = \"xbee\"\n"
        } else if *section == "credentials" {
            "client_id = \"m\"\nusername = \"u\"\n"
        } else if *section == "mote" {
            "client_id = \"m\"\n"
        } else if *section == "dtls" {
            "bind = \"127.0.0.1:8883\"\npsk_file = \"k.psk\"\n"
        } else {
            ""
        };
        let all = issues(&format!("{header}\n{extra}zzzz = 1\n"));
        let message = &all[0].message;
        let listed = message.split(": ").last().unwrap();
        assert_eq!(listed, keys.join(", "), "{section}");
    }
}

#[test]
fn a_complete_file() {
    let text = r#"
[gateway]
gw_id = 42
advertise_interval = "0"
retry_interval = "2500ms"
max_retries = 0
max_sessions = 5
max_topics_per_session = 65533
max_queued_per_session = 7
max_queued_bytes_per_session = 4096
queue_overflow = "drop-new"
max_packet_size = 16
max_client_id_len = 23
qos_minus_one = false
roaming = true
max_queued_bytes_total = 0x40000000
max_state_bytes = 4096
max_sleep_duration = "65535s"
max_sessions_per_address = 1
connect_rate = 0
max_pending_qos0 = 3
worker_threads = 0

[predefined_topics]
1 = "sensors/temperature"
"0x0010" = "alerts"
0xFFFE = "last"

[[udp]]
bind = "127.0.0.1:10000"
discovery = "255.255.255.255:10001"
multicast_ttl = 0
multicast_loop = true
recv_buffer = 0x10000

[[udp]]
bind = "[::]:1884"

[[udp]]
bind = "0.0.0.0:1885"
discovery = "off"

[broker]
url = "mqtts://alice:s%40cret@broker.example.com"
client_id = "edge-1"
keep_alive = "1m"
clean_session = true
connect_timeout = "3s"
reconnect_min = "1s"
reconnect_max = "5m"
max_inflight = 65535
max_inflight_qos2 = 20
ca_file = "/etc/ssl/ca.pem"
client_cert = "certs/gw.crt"
client_key = "certs/gw.key"
fallback = "off"
mode = "transparent"
client_id_prefix = "site-7/"
max_connecting = 10000
status_topic = "sites/7/gateway"

[[credentials]]
client_id = "mote-1"
username = "mote-1"
password = "p1"

[[credentials]]
client_id = "mote-2"
username = "m2"
password_file = "secrets/mote-2.pass"
client_cert = "certs/mote-2.crt"
client_key = "certs/mote-2.key"

[[credentials]]
client_id = "mote-3"
client_cert = "/etc/motes/3.crt"
client_key = "/etc/motes/3.key"

[presence]
topic = "m/%c/p"

[log]
level = "mqtt_sn_gateway=debug,info"
format = "json"
stats_interval = "30s"
"#;
    let c = ok(text);
    assert_eq!(c.worker_threads, 0);
    assert_eq!(
        c.core,
        CoreConfig {
            gw_id: 42,
            advertise_interval: Duration::ZERO,
            retry_interval: Duration::from_millis(2500),
            max_retries: 0,
            max_sessions: 5,
            max_topics_per_session: 65533,
            max_queued_per_session: 7,
            max_queued_bytes_per_session: 4096,
            queue_overflow: sn_config::QueueOverflow::DropNew,
            max_packet_size: 16,
            max_client_id_len: 23,
            qos_minus_one: false,
            roaming: true,
            max_queued_bytes_total: 1 << 30,
            max_state_bytes: 4096,
            max_sleep_duration: Duration::from_secs(65535),
            max_sessions_per_address: 1,
            connect_rate: 0,
            presence_topic: Some("m/%c/p".to_string()),
            policy: sn_config::PolicyConfig::default(),
            max_pending_qos0: 3,
            predefined_topics: vec![
                (1, "sensors/temperature".to_string()),
                (16, "alerts".to_string()),
                (0xFFFE, "last".to_string()),
            ],
            spool: SpoolConfig::default(),
            mode: BrokerMode::Transparent,
        }
    );
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        c.udp,
        vec![
            UdpConfig {
                bind: addr("127.0.0.1:10000"),
                discovery: Some(addr("255.255.255.255:10001")),
                multicast_ttl: 0,
                multicast_loop: true,
                recv_buffer: 65536,
            },
            UdpConfig {
                bind: addr("[::]:1884"),
                discovery: Some(addr("[ff02::1]:1883")),
                multicast_ttl: 1,
                multicast_loop: false,
                recv_buffer: 4 << 20,
            },
            UdpConfig {
                bind: addr("0.0.0.0:1885"),
                discovery: None,
                multicast_ttl: 1,
                multicast_loop: false,
                recv_buffer: 4 << 20,
            },
        ]
    );
    assert_eq!(
        c.broker,
        Some(BrokerConfig {
            url: "mqtts://broker.example.com:8883".to_string(),
            tls: true,
            host: "broker.example.com".to_string(),
            port: 8883,
            client_id: "edge-1".to_string(),
            username: Some("alice".to_string()),
            password: Some("s@cret".to_string()),
            password_file: None,
            keep_alive: Duration::from_secs(60),
            clean_session: true,
            connect_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(300),
            max_inflight: 65535,
            max_inflight_qos2: 20,
            ca_file: Some(PathBuf::from("/etc/ssl/ca.pem")),
            client_cert: Some(PathBuf::from("certs/gw.crt")),
            client_key: Some(PathBuf::from("certs/gw.key")),
            fallback: Fallback::Off,
            client_id_prefix: "site-7/".to_string(),
            max_connecting: 10000,
            status_topic: Some("sites/7/gateway".to_string()),
        })
    );
    assert_eq!(
        c.credentials,
        vec![
            CredentialsConfig {
                username: Some("mote-1".into()),
                password: Some("p1".into()),
                ..CredentialsConfig::new("mote-1")
            },
            CredentialsConfig {
                username: Some("m2".into()),
                password_file: Some(PathBuf::from("secrets/mote-2.pass")),
                client_cert: Some(PathBuf::from("certs/mote-2.crt")),
                client_key: Some(PathBuf::from("certs/mote-2.key")),
                ..CredentialsConfig::new("mote-2")
            },
            CredentialsConfig {
                client_cert: Some(PathBuf::from("/etc/motes/3.crt")),
                client_key: Some(PathBuf::from("/etc/motes/3.key")),
                ..CredentialsConfig::new("mote-3")
            },
        ]
    );
    assert_eq!(
        c.log,
        LogConfig {
            level: "mqtt_sn_gateway=debug,info".to_string(),
            format: LogFormat::Json,
            stats_interval: Duration::from_secs(30),
        }
    );
}

#[test]
fn error_display_names_file_line_column_and_field() {
    let text = "\n\n\n\n\n[gateway]\n  retry_interval = \"10x\"\n";
    let err = Config::parse(text, "gateway.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "gateway.toml:7:20: gateway.retry_interval: \"10x\" is not a duration; write a number \
         with a unit, like \"10s\", \"500ms\" or \"2m\""
    );
    let err = ConfigError {
        origin: "a.toml".to_string(),
        issues: vec![
            ConfigIssue {
                line: None,
                column: None,
                field: String::new(),
                message: "first".to_string(),
            },
            ConfigIssue {
                line: Some(3),
                column: Some(1),
                field: "log.level".to_string(),
                message: "second".to_string(),
            },
        ],
    };
    assert_eq!(
        err.to_string(),
        "a.toml: first\na.toml:3:1: log.level: second"
    );
    let _: &dyn std::error::Error = &err;
}

#[test]
fn columns_count_characters_not_bytes() {
    let all = issues("[predefined_topics]\n\"ü/é\" = 5\n");
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].line, all[0].column), (Some(2), Some(1)));
    assert_eq!((all[1].line, all[1].column), (Some(2), Some(9)));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sn-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes each of `files` (creating its folder) with some content.
fn touch(files: &[&Path]) {
    for file in files {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "x\n").unwrap();
    }
}

#[test]
fn load_resolves_relative_paths_against_the_file() {
    let dir = TempDir::new("load");
    let conf = dir.0.join("conf");
    let path = conf.join("gateway.toml");
    let ca = dir.0.join("abs/ca.pem");
    touch(&[
        &conf.join("secret"),
        &ca,
        &conf.join("tls/c.pem"),
        &dir.0.join("k.pem"),
    ]);
    std::fs::write(
        &path,
        format!(
            "[broker]\nurl = \"mqtts://h\"\nusername = \"u\"\npassword_file = \"secret\"\n\
             ca_file = \"{}\"\nclient_cert = \"tls/c.pem\"\nclient_key = \"../k.pem\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let broker = Config::load(&path).unwrap().broker.unwrap();
    assert_eq!(broker.password_file, Some(conf.join("secret")));
    assert_eq!(broker.ca_file, Some(ca));
    assert_eq!(broker.client_cert, Some(conf.join("tls/c.pem")));
    assert_eq!(broker.client_key, Some(conf.join("../k.pem")));
    // parse keeps them as written
    let text = std::fs::read_to_string(&path).unwrap();
    let broker = ok(&text).broker.unwrap();
    assert_eq!(broker.client_cert, Some(PathBuf::from("tls/c.pem")));
}

#[test]
fn load_reports_each_missing_file_at_its_line() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("gateway.toml");
    touch(&[&dir.0.join("secret")]);
    std::fs::create_dir_all(dir.0.join("certs")).unwrap();
    std::fs::write(
        &path,
        "[broker]\nurl = \"mqtts://h\"\nusername = \"u\"\npassword_file = \"secret\"\n\
         ca_file = \"ca.pem\"\nclient_cert = \"certs\"\nclient_key = \"k.pem\"\n\
         [policy]\nadmission = \"listed\"\n",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let at = |line: &str, field: &str, file: &str, why: &str| {
        let start = format!(
            "{}:{line}: {field}: {}",
            path.display(),
            dir.0.join(file).display()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&start) && l.contains(why)),
            "no line starting {start:?} and saying {why:?} in:\n{text}"
        );
    };
    at("5:11", "broker.ca_file", "ca.pem", "does not exist");
    at("6:15", "broker.client_cert", "certs", "is a folder");
    at("7:14", "broker.client_key", "k.pem", "does not exist");
    // Parsing text reads no file.
    ok(&std::fs::read_to_string(&path).unwrap());
}

#[test]
fn load_reports_errors_with_the_path() {
    let dir = TempDir::new("bad");
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, "[gateway]\ngw_id = 256\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.origin, path.display().to_string());
    assert!(err
        .to_string()
        .starts_with(&format!("{}:2:9: gateway.gw_id: ", path.display())));
}

#[test]
fn a_missing_file_names_the_path_and_the_os_error() {
    let path = Path::new("/nonexistent/dir/gateway.toml");
    let err = Config::load(path).unwrap_err();
    assert_eq!(err.origin, "/nonexistent/dir/gateway.toml");
    assert_eq!(err.issues.len(), 1);
    assert_eq!(err.issues[0].line, None);
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/dir/gateway.toml: cannot read"),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(text.contains("--config"), "{text}");
}

#[test]
fn a_file_that_is_not_utf8_is_an_error() {
    let dir = TempDir::new("binary");
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn the_password_is_not_in_debug_output() {
    let broker = BrokerConfig::from_url("mqtt://user:hunter2@host").unwrap();
    let debug = format!("{broker:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
    assert!(!broker.url.contains("hunter2"));
}

#[test]
fn the_sample_output_in_the_docs_is_real() {
    let text = r#"[gateway]
gw_id = 1
retry_interval = "10x"
max_retry = 3

[predefined_topics]
16 = "a"
0x10 = "b"

[[udp]]
bind = "0.0.0.0"

[broker]
url = "mqtt://localhost"
ca_file = "ca.pem"
"#;
    let err = Config::parse(text, "gateway.toml").unwrap_err();
    assert_eq!(err.issues.len(), 5);
    for line in err.to_string().lines() {
        assert!(DOCS.contains(line), "docs/configuration.md lacks:\n{line}");
    }
}

#[test]
fn store_section() {
    let c = ok("[store]\nenabled = false\npath = \"/var/lib/gw/state.redb\"\n");
    assert!(!c.store.enabled);
    assert_eq!(
        c.store.path,
        std::path::PathBuf::from("/var/lib/gw/state.redb")
    );
    let d = ok("");
    assert!(d.store.enabled);
    assert_eq!(
        d.store.path,
        std::path::PathBuf::from("mqtt-sn-gateway.redb")
    );
}

#[test]
fn udp_recv_buffer_range() {
    assert_eq!(ok("[[udp]]\nrecv_buffer = 4096").udp[0].recv_buffer, 4096);
    assert_eq!(
        ok("[[udp]]\nrecv_buffer = 1073741824").udp[0].recv_buffer,
        1 << 30
    );
    for bad in ["4095", "1073741825", "-1", "\"4M\""] {
        let all = issues(&format!("[[udp]]\nrecv_buffer = {bad}\n"));
        assert_eq!(all.len(), 1, "{bad}: {all:?}");
        assert_eq!(all[0].field, "udp[0].recv_buffer", "{bad}");
        assert_eq!(all[0].line, Some(2), "{bad}");
    }
}
