//! Walks the parsed TOML tree (with spans), checks every value and collects every problem.
//!
//! The tree is read by hand rather than through `serde::Deserialize` so that every error,
//! including type errors and unknown keys, carries its field path and position, and so that all
//! of them are reported at once.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::duration::{format_duration, parse_duration};
use crate::suggest::closest;

mod credentials;
mod dtls;
mod policy;
mod serial;
use crate::values::{
    check_discovery, check_log_level, check_topic_name, parse_broker_url, parse_socket_addr,
    parse_topic_id, BrokerUrl, PASSWORD_NEEDS_USER,
};
use crate::{
    BrokerConfig, BrokerMode, Config, ConfigError, ConfigIssue, CoreConfig, EmbeddedBrokerConfig,
    Fallback, LogConfig, LogFormat, MetricsConfig, QueueOverflow, SpoolConfig, SpoolFull,
    StoreConfig, UdpConfig, DEFAULT_MQTT_PORT,
};
pub(crate) use credentials::CREDENTIALS_KEYS;
pub(crate) use dtls::DTLS_KEYS;
pub(crate) use policy::{MOTE_KEYS, POLICY_KEYS};
pub(crate) use serial::SERIAL_KEYS;

type Value<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<Cow<'i, str>>;

/// The sections, in the order the documentation lists them.
pub(crate) const SECTIONS: [&str; 15] = [
    "gateway",
    "predefined_topics",
    "policy",
    "mote",
    "udp",
    "serial",
    "dtls",
    "broker",
    "credentials",
    "presence",
    "metrics",
    "embedded_broker",
    "spool",
    "store",
    "log",
];
/// The options of `[gateway]`.
pub(crate) const GATEWAY_KEYS: [&str; 20] = [
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
];
/// The options of each `[[udp]]`.
pub(crate) const UDP_KEYS: [&str; 5] = [
    "bind",
    "discovery",
    "multicast_ttl",
    "multicast_loop",
    "recv_buffer",
];
/// The options of `[broker]`.
pub(crate) const BROKER_KEYS: [&str; 20] = [
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
];
/// The options of `[log]`.
pub(crate) const LOG_KEYS: [&str; 3] = ["level", "format", "stats_interval"];
/// The options of `[embedded_broker]`.
pub(crate) const EMBEDDED_BROKER_KEYS: [&str; 1] = ["listen"];
/// The options of `[store]`.
pub(crate) const STORE_KEYS: [&str; 2] = ["enabled", "path"];
/// The options of `[metrics]`.
pub(crate) const METRICS_KEYS: [&str; 1] = ["listen"];
/// The options of `[presence]`.
pub(crate) const PRESENCE_KEYS: [&str; 1] = ["topic"];
/// The options of `[spool]`.
pub(crate) const SPOOL_KEYS: [&str; 4] = ["enabled", "max_bytes", "when_full", "qos0"];

/// The header a section is written with, for messages.
fn section_label(section: &str) -> String {
    if matches!(section, "udp" | "serial" | "dtls" | "credentials" | "mote") {
        format!("[[{section}]]")
    } else {
        format!("[{section}]")
    }
}

fn section_keys(section: &str) -> &'static [&'static str] {
    match section {
        "gateway" => &GATEWAY_KEYS,
        "policy" => &POLICY_KEYS,
        "mote" => &MOTE_KEYS,
        "udp" => &UDP_KEYS,
        "serial" => &SERIAL_KEYS,
        "dtls" => &DTLS_KEYS,
        "broker" => &BROKER_KEYS,
        "credentials" => &CREDENTIALS_KEYS,
        "embedded_broker" => &EMBEDDED_BROKER_KEYS,
        "log" => &LOG_KEYS,
        "store" => &STORE_KEYS,
        "presence" => &PRESENCE_KEYS,
        "metrics" => &METRICS_KEYS,
        "spool" => &SPOOL_KEYS,
        _ => &[],
    }
}

/// Allowed values of a duration option.
#[derive(Clone, Copy)]
struct Limits {
    min: Duration,
    max: Duration,
    /// Zero is allowed and turns the feature off.
    zero_is_off: bool,
    /// The value goes into a whole-seconds field.
    whole_seconds: bool,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const ADVERTISE_LIMITS: Limits = Limits {
    min: secs(1),
    max: secs(65535),
    zero_is_off: true,
    whole_seconds: true,
};
const RETRY_LIMITS: Limits = Limits {
    min: secs(1),
    max: secs(3600),
    zero_is_off: false,
    whole_seconds: false,
};
const MAX_SLEEP_LIMITS: Limits = Limits {
    min: secs(1),
    max: secs(65535),
    zero_is_off: false,
    whole_seconds: true,
};
const KEEP_ALIVE_LIMITS: Limits = Limits {
    min: secs(5),
    max: secs(65535),
    zero_is_off: false,
    whole_seconds: true,
};
const CONNECT_TIMEOUT_LIMITS: Limits = Limits {
    min: Duration::from_millis(100),
    max: secs(3600),
    zero_is_off: false,
    whole_seconds: false,
};
const STATS_INTERVAL_LIMITS: Limits = Limits {
    min: secs(1),
    max: secs(7 * 24 * 3600),
    zero_is_off: true,
    whole_seconds: false,
};
const RECONNECT_LIMITS: Limits = Limits {
    min: Duration::from_millis(1),
    max: secs(3600),
    zero_is_off: false,
    whole_seconds: false,
};

/// What a value was expected to be, for type-error messages and their hints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Boolean,
    Text,
}

/// Parses and validates `text`; the entry point behind `Config::parse`.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_with_files(text, origin).map(|(config, _)| config)
}

/// A file the configuration names and the gateway reads (a password, a certificate, a key),
/// with where it is named, so that one that cannot be read is reported at its line.
#[derive(Debug, Clone)]
pub(crate) struct NamedFile {
    /// The option's field path, like `broker.ca_file`.
    pub(crate) field: String,
    /// 1-based line and column of the value.
    pub(crate) line: usize,
    pub(crate) column: usize,
    /// The path as written.
    pub(crate) path: PathBuf,
}

/// [`parse`], and the files the configuration names (see [`NamedFile`]), for
/// `Config::load`, which checks them.
pub(crate) fn parse_with_files(
    text: &str,
    origin: &str,
) -> Result<(Config, Vec<NamedFile>), ConfigError> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut reader = Reader::new(text);
    let config = if errors.is_empty() {
        Some(reader.document(doc.get_ref()))
    } else {
        reader.syntax_errors(doc.get_ref(), &errors);
        None
    };
    let files = std::mem::take(&mut reader.files);
    reader.finish(origin, config).map(|config| (config, files))
}

/// The options whose value is a file the gateway reads at start (the state file and serial
/// devices are not: the one is created, the others may be plugged in later).
const READ_FILE_OPTIONS: [&str; 7] = [
    "password_file",
    "ca_file",
    "client_cert",
    "client_key",
    "psk_file",
    "cert",
    "key",
];

struct Reader<'s> {
    text: &'s str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// (byte offset, issue), sorted by offset at the end.
    issues: Vec<(usize, ConfigIssue)>,
    /// Settings without effect, as `issues`; they do not make the file invalid.
    warnings: Vec<(usize, ConfigIssue)>,
    /// The files the options name that the gateway reads (see [`READ_FILE_OPTIONS`]).
    files: Vec<NamedFile>,
}

impl<'s> Reader<'s> {
    fn new(text: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.char_indices()
                .filter(|&(_, c)| c == '\n')
                .map(|(i, _)| i + 1),
        );
        Reader {
            text,
            line_starts,
            issues: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
        }
    }

    fn finish(mut self, origin: &str, config: Option<Config>) -> Result<Config, ConfigError> {
        self.issues.sort_by_key(|(offset, _)| *offset);
        match config {
            Some(mut config) if self.issues.is_empty() => {
                self.warnings.sort_by_key(|(offset, _)| *offset);
                config.warnings = self.warnings.into_iter().map(|(_, w)| w).collect();
                Ok(config)
            }
            _ => {
                let mut issues: Vec<ConfigIssue> =
                    self.issues.into_iter().map(|(_, issue)| issue).collect();
                if issues.is_empty() {
                    issues.push(ConfigIssue {
                        line: None,
                        column: None,
                        field: String::new(),
                        message: "the file is not valid TOML".to_string(),
                    });
                }
                Err(ConfigError {
                    origin: origin.to_string(),
                    issues,
                })
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = line
            .checked_sub(1)
            .and_then(|i| self.line_starts.get(i))
            .copied()
            .unwrap_or(0);
        let column = self.text.get(start..offset).map_or(offset - start, |s| {
            s.chars().filter(|&c| c != '\u{feff}').count()
        });
        (line.max(1), column + 1)
    }

    fn issue(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let issue = self.at(span.start, field, message);
        self.issues.push((span.start, issue));
    }

    /// A setting that parses but has no effect; the file stays valid.
    fn warning(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let warning = self.at(span.start, field, message);
        self.warnings.push((span.start, warning));
    }

    fn at(&self, offset: usize, field: &str, message: impl Into<String>) -> ConfigIssue {
        let (line, column) = self.position(offset);
        ConfigIssue {
            line: Some(line),
            column: Some(column),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The source text of a span (empty if the span is not in the text).
    fn source(&self, span: Range<usize>) -> &'s str {
        self.text.get(span).unwrap_or("")
    }

    fn describe(&self, value: &Value<'_>) -> String {
        let source = self.source(value.span());
        match value.get_ref() {
            DeValue::String(s) => format!("the text {}", quote(s)),
            DeValue::Integer(_) | DeValue::Float(_) => format!("the number {source}"),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(_) => format!("the date-time {source}"),
            DeValue::Array(_) => "a list".to_string(),
            DeValue::Table(_) => "a table".to_string(),
        }
    }

    fn wrong_type(&mut self, value: &Value<'_>, field: &str, kind: Kind, expected: &str) {
        let hint = match (kind, value.get_ref()) {
            (Kind::Integer, DeValue::String(s)) if s.trim().parse::<i64>().is_ok() => {
                "; remove the quotes"
            }
            (Kind::Boolean, DeValue::String(s))
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
            {
                "; remove the quotes"
            }
            (Kind::Text, DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)) => {
                "; put it in double quotes"
            }
            _ => "",
        };
        let message = format!("expected {expected}, found {}{hint}", self.describe(value));
        self.issue(value.span(), field, message);
    }

    fn int<T>(&mut self, value: &Value<'_>, field: &str, min: T, max: T) -> Option<T>
    where
        T: Copy + Display + Into<i128> + TryFrom<i128>,
    {
        let expected = format!("a whole number from {min} to {max}");
        let DeValue::Integer(integer) = value.get_ref() else {
            self.wrong_type(value, field, Kind::Integer, &expected);
            return None;
        };
        let number = i128::from_str_radix(integer.as_str(), integer.radix()).ok();
        let in_range = number
            .filter(|n| (min.into()..=max.into()).contains(n))
            .and_then(|n| T::try_from(n).ok());
        if in_range.is_none() {
            let source = self.source(value.span());
            self.issue(
                value.span(),
                field,
                format!("{source} is out of range; use {expected}"),
            );
        }
        in_range
    }

    fn boolean(&mut self, value: &Value<'_>, field: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(value, field, Kind::Boolean, "true or false");
                None
            }
        }
    }

    fn string<'a>(&mut self, value: &'a Value<'_>, field: &str, expected: &str) -> Option<&'a str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(value, field, Kind::Text, expected);
                None
            }
        }
    }

    fn path(&mut self, value: &Value<'_>, field: &str) -> Option<PathBuf> {
        let text = self.string(value, field, "a file path in double quotes")?;
        if text.trim().is_empty() {
            self.issue(
                value.span(),
                field,
                "the path is empty; write the file's path, or remove the option",
            );
            return None;
        }
        let path = PathBuf::from(text);
        if READ_FILE_OPTIONS
            .iter()
            .any(|option| field.rsplit('.').next() == Some(option))
        {
            let (line, column) = self.position(value.span().start);
            self.files.push(NamedFile {
                field: field.to_string(),
                line,
                column,
                path: path.clone(),
            });
        }
        Some(path)
    }

    fn duration(&mut self, value: &Value<'_>, field: &str, limits: Limits) -> Option<Duration> {
        let source = self.source(value.span());
        let (duration, text) = match value.get_ref() {
            DeValue::String(s) => match parse_duration(s) {
                Ok(duration) => (duration, format!("{s:?}")),
                Err(message) => {
                    self.issue(value.span(), field, message);
                    return None;
                }
            },
            DeValue::Integer(i) if i.as_str().chars().all(|c| c == '0') => {
                (Duration::ZERO, "0".to_string())
            }
            DeValue::Integer(_) | DeValue::Float(_) => {
                let message = format!(
                    "{source} has no unit; write a duration in quotes, like \"{source}s\" for \
                     seconds or \"{source}ms\" for milliseconds"
                );
                self.issue(value.span(), field, message);
                return None;
            }
            _ => {
                self.wrong_type(
                    value,
                    field,
                    Kind::Text,
                    "a duration in quotes, like \"10s\"",
                );
                return None;
            }
        };
        if duration.is_zero() && limits.zero_is_off {
            return Some(duration);
        }
        let off = if limits.zero_is_off {
            ", or \"0\" to turn it off"
        } else {
            ""
        };
        let problem = if limits.whole_seconds && duration.subsec_nanos() != 0 {
            let below = duration.as_secs();
            let above = below.saturating_add(1);
            let choices = if below == 0 {
                format!("\"{above}s\"")
            } else {
                format!("\"{below}s\" or \"{above}s\"")
            };
            Some(format!(
                "{text} is not a whole number of seconds, which this option needs; write {choices}"
            ))
        } else if duration < limits.min {
            Some(format!(
                "{text} is too short; use at least \"{}\"{off}",
                format_duration(limits.min)
            ))
        } else if duration > limits.max {
            Some(format!(
                "{text} is too long; use at most \"{}\"{off}",
                format_duration(limits.max)
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.issue(value.span(), field, message);
                None
            }
            None => Some(duration),
        }
    }

    fn table<'a, 'i>(&mut self, value: &'a Value<'i>, field: &str) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                let message = format!(
                    "expected a section, written {} on a line of its own, found {}",
                    section_label(field),
                    self.describe(value)
                );
                self.issue(value.span(), field, message);
                None
            }
        }
    }

    fn unknown_key(&mut self, key: &Key<'_>, path: &str, section: &str) {
        let name: &str = key.get_ref();
        let valid = section_keys(section);
        let label = section_label(section);
        let elsewhere = SECTIONS
            .iter()
            .find(|&&other| other != section && section_keys(other).contains(&name));
        let message = match (closest(name, valid), elsewhere) {
            (_, Some(other)) => format!(
                "unknown option in {label}; {name:?} belongs in {}",
                section_label(other)
            ),
            (Some(close), None) => format!(
                "unknown option; did you mean {close:?}? The options of {label} are: {}",
                valid.join(", ")
            ),
            (None, None) => format!(
                "unknown option; the options of {label} are: {}",
                valid.join(", ")
            ),
        };
        self.issue(key.span(), &join(path, name), message);
    }

    fn document(&mut self, doc: &DeTable<'_>) -> Config {
        let mut config = Config::default();
        // `[[credentials]]` with where each entry is, for the checks against `[broker]`.
        let mut credentials = Vec::new();
        // `[policy]` and `[[mote]]` as read, completed once the links are known.
        let mut policy = policy::PolicySpans::default();
        let mut motes = Vec::new();
        // `[[dtls]]`, read once the `[[udp]]` binds it must not share are known.
        let mut dtls = None;
        for (key, value) in doc.iter() {
            let name: &str = key.get_ref();
            match name {
                "gateway" => {
                    if let Some(table) = self.table(value, name) {
                        self.gateway(table, &mut config);
                    }
                }
                "predefined_topics" => {
                    if let Some(table) = self.table(value, name) {
                        config.core.predefined_topics =
                            self.predefined_topics(table).into_iter().collect();
                    }
                }
                "policy" => {
                    if let Some(table) = self.table(value, name) {
                        policy = self.policy(table, &mut config.core.policy);
                    }
                }
                "mote" => motes = self.motes(value),
                "udp" => config.udp = self.udp_links(value),
                "serial" => config.serial = self.serial_links(value),
                "dtls" => dtls = Some(value),
                "broker" => config.broker = self.broker(value, &mut config.core.mode),
                "credentials" => {
                    credentials = self.credentials(value);
                    config.credentials = credentials.iter().map(|e| e.config.clone()).collect();
                }
                "embedded_broker" => {
                    if let Some(table) = self.table(value, name) {
                        config.embedded_broker = self.embedded_broker(table);
                    }
                }
                "spool" => {
                    if let Some(table) = self.table(value, name) {
                        config.core.spool = self.spool(table);
                    }
                }
                "store" => {
                    if let Some(table) = self.table(value, name) {
                        config.store = self.store(table);
                    }
                }
                "metrics" => {
                    if let Some(table) = self.table(value, name) {
                        config.metrics = self.metrics(table);
                    }
                }
                "presence" => {
                    if let Some(table) = self.table(value, name) {
                        config.core.presence_topic = self.presence(table);
                    }
                }
                "log" => {
                    if let Some(table) = self.table(value, name) {
                        config.log = self.log(table);
                    }
                }
                _ => self.unknown_top_level(key, value),
            }
        }
        if let Some(value) = dtls {
            let binds: Vec<SocketAddr> = config.udp.iter().map(|u| u.bind).collect();
            config.dtls = self.dtls_links(value, &binds);
        }
        let mode = doc
            .get("broker")
            .and_then(|b| match b.get_ref() {
                DeValue::Table(table) => table.get("mode"),
                _ => None,
            })
            .map(|v| v.span());
        self.check_credentials(&config, &credentials, mode);
        self.finish_policy(&mut config, &policy, &motes, &credentials, doc);
        self.check_ignored(&config, doc);
        config
    }

    /// Warns about settings the gateway accepts but ignores: a spool without a store to
    /// keep it in, a fallback in transparent mode (gateway/src/settings.rs turns both off).
    fn check_ignored(&mut self, config: &Config, doc: &DeTable<'_>) {
        let table_of = |section: &str| match doc.get(section).map(|v| v.get_ref()) {
            Some(DeValue::Table(table)) => Some(table),
            _ => None,
        };
        let line_of = |reader: &Self, table: Option<&DeTable<'_>>, key: &str| {
            table
                .and_then(|t| t.get(key))
                .map(|v| reader.position(v.span().start).0)
        };
        let transparent = config.broker.is_some() && config.core.mode == BrokerMode::Transparent;
        if config.core.spool.enabled && !config.store.enabled {
            if let Some((spool, value)) = table_of("spool").zip(doc.get("spool")) {
                let store_line = line_of(self, table_of("store"), "enabled")
                    .map_or(String::new(), |line| format!(" (line {line})"));
                let (span, field) = match spool.get_key_value("enabled") {
                    Some((key, _)) => (key.span(), "spool.enabled"),
                    None => (value.span(), "spool"),
                };
                // Transparent mode has no spool with the store on either (each message must
                // reach the broker on its mote's own connection): turning the store on is
                // no fix there.
                let fix = if transparent {
                    "Set [spool] enabled = false: in transparent mode there is no spool at all"
                } else {
                    "Set [store] enabled = true to spool, or [spool] enabled = false to say \
                     there is none"
                };
                let message = format!(
                    "ignored: the spool is kept in the store file and [store] enabled = \
                     false{store_line}, so there is no spool; during a broker outage QoS 1/2 \
                     PUBLISHes get return code 0x01 (congestion). {fix}"
                );
                self.warning(span, field, message);
            } else if !transparent {
                // No [spool] section: the spool is on by default, and turning the store off
                // turns it off too, which nothing in the file says.
                if let Some((key, _)) = table_of("store").and_then(|t| t.get_key_value("enabled")) {
                    let message = "with the store off there is no spool either (it is kept in \
                                   the store file): during a broker outage QoS 1/2 PUBLISHes \
                                   get return code 0x01 (congestion). Add [spool] enabled = \
                                   false to say so, or set [store] enabled = true to spool";
                    self.warning(key.span(), "store.enabled", message);
                }
            }
        }
        self.check_open_embedded_broker(config, doc);
        // `transparent` implies a [broker] section.
        if transparent {
            let table = table_of("broker");
            if let Some((key, _)) = table.and_then(|t| t.get_key_value("fallback")) {
                let mode_line = line_of(self, table, "mode")
                    .map_or(String::new(), |line| format!(" (line {line})"));
                let message = format!(
                    "ignored: mode = \"transparent\"{mode_line} gives each mote its own \
                     connection to this broker, which no local broker can stand in for, so \
                     there is no fallback; during an outage motes' QoS 1/2 PUBLISHes get \
                     return code 0x01 (congestion) and are retried. Remove fallback, or set \
                     mode = \"aggregating\" to have the embedded broker take over"
                );
                self.warning(key.span(), "broker.fallback", message);
            }
        }
    }

    /// Warns when the embedded broker runs (no `[broker]`, or as its fallback) and listens
    /// beyond this host: it has no logins, so anyone who reaches the port reads and writes
    /// every mote's topics.
    fn check_open_embedded_broker(&mut self, config: &Config, doc: &DeTable<'_>) {
        let runs = match &config.broker {
            None => true,
            Some(broker) => {
                broker.fallback == Fallback::Embedded && config.core.mode == BrokerMode::Aggregating
            }
        };
        let Some(addr) = config.embedded_broker.listen else {
            return;
        };
        if !runs || addr.ip().is_loopback() {
            return;
        }
        let place = match doc.get("embedded_broker").map(|v| v.get_ref()) {
            Some(DeValue::Table(table)) => table.get_key_value("listen").map(|(key, _)| key.span()),
            _ => None,
        };
        let Some(span) = place else { return };
        let message = format!(
            "the embedded broker listens on {addr}, beyond this host, and it has no logins: \
             anyone who reaches that port can read every mote's messages and publish to the \
             motes. Listen on 127.0.0.1 (the default), or firewall the port to the hosts that \
             may use it"
        );
        self.warning(span, "embedded_broker.listen", message);
    }

    fn unknown_top_level(&mut self, key: &Key<'_>, value: &Value<'_>) {
        let name: &str = key.get_ref();
        let owner = SECTIONS
            .iter()
            .find(|&&section| section_keys(section).contains(&name));
        let labels: Vec<String> = SECTIONS.iter().map(|s| section_label(s)).collect();
        let (last, rest) = labels
            .split_last()
            .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        let all = format!("the sections are {} and {last}", rest.join(", "));
        let all_cap = format!("The sections are {} and {last}", rest.join(", "));
        let message = match owner {
            Some(section) if !matches!(value.get_ref(), DeValue::Table(_)) => {
                let label = section_label(section);
                format!("{name:?} is an option of {label}; move it below a {label} header")
            }
            _ => match closest(name, &SECTIONS) {
                Some(close) => format!(
                    "unknown section; did you mean {}? {all_cap}",
                    section_label(close)
                ),
                None => format!("unknown section; {all}"),
            },
        };
        self.issue(key.span(), &key_display(name), message);
    }

    /// `[gateway]`: the core's limits into `config.core`, `worker_threads` into `config`.
    fn gateway(&mut self, table: &DeTable<'_>, config: &mut Config) {
        let g: &mut CoreConfig = &mut config.core;
        // The file's ranges, read at the width they fit in, then widened to the core's types.
        let wide = |n: Option<u32>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("gateway", name);
            match name {
                "gw_id" => set(&mut g.gw_id, self.int(v, &f, 0, u8::MAX)),
                "advertise_interval" => set(
                    &mut g.advertise_interval,
                    self.duration(v, &f, ADVERTISE_LIMITS),
                ),
                "retry_interval" => {
                    set(&mut g.retry_interval, self.duration(v, &f, RETRY_LIMITS));
                }
                "max_retries" => set(&mut g.max_retries, self.int(v, &f, 0, 20)),
                "max_sessions" => set(&mut g.max_sessions, wide(self.int(v, &f, 1, u32::MAX))),
                "max_sessions_per_address" => {
                    set(
                        &mut g.max_sessions_per_address,
                        wide(self.int(v, &f, 1, u32::MAX)),
                    );
                }
                "max_queued_bytes_total" => set(
                    &mut g.max_queued_bytes_total,
                    self.int(v, &f, 1, u64::MAX)
                        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                ),
                "max_state_bytes" => set(
                    &mut g.max_state_bytes,
                    self.int(v, &f, 1, u64::MAX)
                        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                ),
                "max_sleep_duration" => set(
                    &mut g.max_sleep_duration,
                    self.duration(v, &f, MAX_SLEEP_LIMITS),
                ),
                "connect_rate" => set(&mut g.connect_rate, self.int(v, &f, 0, 1_000_000)),
                "max_topics_per_session" => {
                    set(
                        &mut g.max_topics_per_session,
                        wide(self.int(v, &f, 1, 65533)),
                    );
                }
                "max_queued_per_session" => {
                    set(
                        &mut g.max_queued_per_session,
                        wide(self.int(v, &f, 1, u32::MAX)),
                    );
                }
                "max_queued_bytes_per_session" => {
                    set(
                        &mut g.max_queued_bytes_per_session,
                        wide(self.int(v, &f, 1, u32::MAX)),
                    );
                }
                "queue_overflow" => {
                    let expected = "\"drop-oldest\" or \"drop-new\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        match text {
                            "drop-oldest" => g.queue_overflow = QueueOverflow::DropOldest,
                            "drop-new" => g.queue_overflow = QueueOverflow::DropNew,
                            other => self.issue(
                                v.span(),
                                &f,
                                format!("{other:?} is not a policy; use {expected}"),
                            ),
                        }
                    }
                }
                "max_packet_size" => {
                    set(&mut g.max_packet_size, wide(self.int(v, &f, 16, 65535)));
                }
                "max_client_id_len" => {
                    set(&mut g.max_client_id_len, wide(self.int(v, &f, 1, 65535)));
                }
                "qos_minus_one" => set(&mut g.qos_minus_one, self.boolean(v, &f)),
                "roaming" => set(&mut g.roaming, self.boolean(v, &f)),
                "max_pending_qos0" => {
                    set(&mut g.max_pending_qos0, wide(self.int(v, &f, 1, u32::MAX)));
                }
                "worker_threads" => {
                    set(&mut config.worker_threads, self.int(v, &f, 0u16, 1024));
                }
                _ => self.unknown_key(key, "gateway", "gateway"),
            }
        }
    }

    fn predefined_topics(&mut self, table: &DeTable<'_>) -> BTreeMap<u16, String> {
        let mut topics = BTreeMap::new();
        // Where each id was first defined: (key as written, line).
        let mut seen: BTreeMap<u16, (String, usize)> = BTreeMap::new();
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let name: &str = key.get_ref();
            let field = join("predefined_topics", name);
            let id = match parse_topic_id(name) {
                Ok(id) => Some(id),
                Err(message) => {
                    self.issue(key.span(), &field, message);
                    None
                }
            };
            let topic = self
                .string(value, &field, "a topic name in double quotes")
                .and_then(|topic| match check_topic_name(topic) {
                    Ok(()) => Some(topic.to_string()),
                    Err(message) => {
                        self.issue(value.span(), &field, message);
                        None
                    }
                });
            let Some(id) = id else { continue };
            if let Some((first, line)) = seen.get(&id) {
                let message = format!(
                    "topic id {id} is already defined on line {line} (as {first}); give each \
                     topic its own id"
                );
                self.issue(key.span(), &field, message);
                continue;
            }
            let (line, _) = self.position(key.span().start);
            seen.insert(id, (key_display(name), line));
            if let Some(topic) = topic {
                topics.insert(id, topic);
            }
        }
        topics
    }

    fn udp_links(&mut self, value: &Value<'_>) -> Vec<UdpConfig> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.issue(
                    value.span(),
                    "udp",
                    "write [[udp]] with double brackets: each [[udp]] section is one UDP link",
                );
                return vec![UdpConfig::default()];
            }
            _ => {
                self.wrong_type(value, "udp", Kind::Text, "one or more [[udp]] sections");
                return vec![UdpConfig::default()];
            }
        };
        let mut links = Vec::new();
        // Bind addresses seen so far: (address, field, line).
        let mut binds: Vec<(SocketAddr, String, usize)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("udp[{index}]");
            let DeValue::Table(table) = item.get_ref() else {
                let message = format!(
                    "expected a [[udp]] section or a table like {{ bind = \"0.0.0.0:1883\" }}, \
                     found {}",
                    self.describe(item)
                );
                self.issue(item.span(), &field, message);
                continue;
            };
            let (link, bind_span) = self.udp_link(table, &field);
            let span = bind_span.unwrap_or_else(|| item.span());
            let bind_field = format!("{field}.bind");
            if link.bind.port() != 0 {
                if let Some((_, other, line)) = binds.iter().find(|(a, _, _)| *a == link.bind) {
                    let message = format!(
                        "\"{}\" is already the bind address of {other} (line {line}); give each \
                         link its own address or port",
                        link.bind
                    );
                    self.issue(span, &bind_field, message);
                } else {
                    let (line, _) = self.position(span.start);
                    binds.push((link.bind, field.clone(), line));
                }
            }
            links.push(link);
        }
        links
    }

    /// One `[[udp]]`; also returns the span of its `bind` value, if written.
    fn udp_link(&mut self, table: &DeTable<'_>, path: &str) -> (UdpConfig, Option<Range<usize>>) {
        let mut link = UdpConfig::default();
        let mut bind_known = true;
        let bind_value = table.get("bind");
        if let Some(v) = bind_value {
            let f = format!("{path}.bind");
            let text = self.string(v, &f, "an IP address and port like \"0.0.0.0:1883\"");
            match text.map(parse_socket_addr) {
                Some(Ok(bind)) => link.bind = bind,
                Some(Err(message)) => {
                    self.issue(v.span(), &f, message);
                    bind_known = false;
                }
                None => bind_known = false,
            }
        }
        link.discovery = Some(UdpConfig::default_discovery(&link.bind));
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join(path, name);
            match name {
                "bind" => {}
                "discovery" => {
                    let expected = "an address like \"225.1.1.1:1883\", or \"off\"";
                    let Some(text) = self.string(v, &f, expected) else {
                        continue;
                    };
                    if text.trim().eq_ignore_ascii_case("off") {
                        link.discovery = None;
                        continue;
                    }
                    let bind = bind_known.then_some(link.bind);
                    let checked = parse_socket_addr(text)
                        .and_then(|addr| check_discovery(addr, bind).map(|()| addr));
                    match checked {
                        Ok(addr) => link.discovery = Some(addr),
                        Err(message) => self.issue(v.span(), &f, message),
                    }
                }
                "multicast_ttl" => set(&mut link.multicast_ttl, self.int(v, &f, 0, 255)),
                "multicast_loop" => set(&mut link.multicast_loop, self.boolean(v, &f)),
                "recv_buffer" => set(
                    &mut link.recv_buffer,
                    self.int(
                        v,
                        &f,
                        crate::MIN_UDP_RECV_BUFFER,
                        crate::MAX_UDP_RECV_BUFFER,
                    ),
                ),
                _ => self.unknown_key(key, path, "udp"),
            }
        }
        (link, bind_value.map(|v| v.span()))
    }

    /// `[broker]`; its `mode` (a core option) goes into `mode`.
    fn broker(&mut self, value: &Value<'_>, mode: &mut BrokerMode) -> Option<BrokerConfig> {
        let table = self.table(value, "broker")?;
        let url: Option<(BrokerUrl, Range<usize>)> = match table.get("url") {
            None => {
                self.issue(
                    value.span(),
                    "broker.url",
                    "missing; [broker] needs url = \"mqtt://HOST:PORT\" (or mqtts:// for TLS); \
                     remove the [broker] section to run without a remote broker",
                );
                None
            }
            Some(v) => self
                .string(v, "broker.url", "a URL like \"mqtt://localhost:1883\"")
                .and_then(|text| match parse_broker_url(text) {
                    Ok(url) => Some((url, v.span())),
                    Err(message) => {
                        self.issue(v.span(), "broker.url", message);
                        None
                    }
                }),
        };
        let tls = url.as_ref().map(|(url, _)| url.tls);
        let url_span = url.as_ref().map(|(_, span)| span.clone());
        let mut b = BrokerConfig::from_parsed(url.map_or_else(placeholder_url, |(url, _)| url));

        let mut username: Option<String> = None;
        let mut password: Option<(String, Range<usize>)> = None;
        let mut password_file: Option<Range<usize>> = None;
        let mut tls_files: Vec<(&str, Range<usize>)> = Vec::new();
        let mut reconnect_min: Option<Range<usize>> = None;
        let mut reconnect_max: Option<Range<usize>> = None;
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("broker", name);
            match name {
                "url" => {}
                "fallback" => {
                    let expected = "\"embedded\" or \"off\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        match text.trim() {
                            "embedded" => b.fallback = Fallback::Embedded,
                            "off" => b.fallback = Fallback::Off,
                            other => self.issue(
                                v.span(),
                                &f,
                                format!("{other:?} is not a fallback; use {expected}"),
                            ),
                        }
                    }
                }
                "client_id" => {
                    if let Some(id) = self.mqtt_string(v, &f, "client id") {
                        if id.is_empty() {
                            self.issue(
                                v.span(),
                                &f,
                                "the client id is empty; write the id the broker should know \
                                 the gateway by, like \"mqtt-sn-gateway\"",
                            );
                        } else {
                            b.client_id = id;
                        }
                    }
                }
                "username" => username = self.mqtt_string(v, &f, "user name"),
                "password" => {
                    if let Some(text) = self.string(v, &f, "the password in double quotes") {
                        if text.len() > usize::from(u16::MAX) {
                            self.issue(v.span(), &f, "the password is longer than 65535 bytes");
                        } else {
                            password = Some((text.to_string(), v.span()));
                        }
                    }
                }
                "password_file" => {
                    b.password_file = self.path(v, &f);
                    password_file = b.password_file.as_ref().map(|_| v.span());
                }
                "keep_alive" => set(&mut b.keep_alive, self.duration(v, &f, KEEP_ALIVE_LIMITS)),
                "clean_session" => set(&mut b.clean_session, self.boolean(v, &f)),
                "connect_timeout" => set(
                    &mut b.connect_timeout,
                    self.duration(v, &f, CONNECT_TIMEOUT_LIMITS),
                ),
                "reconnect_min" => {
                    set(&mut b.reconnect_min, self.duration(v, &f, RECONNECT_LIMITS));
                    reconnect_min = Some(v.span());
                }
                "reconnect_max" => {
                    set(&mut b.reconnect_max, self.duration(v, &f, RECONNECT_LIMITS));
                    reconnect_max = Some(v.span());
                }
                "max_inflight" => set(&mut b.max_inflight, self.int(v, &f, 1, u16::MAX)),
                "max_inflight_qos2" => {
                    set(&mut b.max_inflight_qos2, self.int(v, &f, 1, u16::MAX));
                }
                "mode" => {
                    let expected = BROKER_MODE_NAMES;
                    if let Some(text) = self.string(v, &f, expected) {
                        match broker_mode(text.trim()) {
                            Some(found) => *mode = found,
                            None => self.issue(
                                v.span(),
                                &f,
                                format!("{text:?} is not a mode; use {expected}"),
                            ),
                        }
                    }
                }
                "client_id_prefix" => {
                    set(
                        &mut b.client_id_prefix,
                        self.mqtt_string(v, &f, "client id prefix"),
                    );
                }
                "max_connecting" => set(&mut b.max_connecting, self.int(v, &f, 1, 10_000)),
                "status_topic" => {
                    if let Some(topic) = self.mqtt_string(v, &f, "status topic") {
                        if topic.is_empty() {
                            b.status_topic = None;
                        } else if topic.contains(['+', '#']) || topic.starts_with('$') {
                            self.issue(
                                v.span(),
                                &f,
                                "a status topic cannot hold '+' or '#' or begin with '$'; \
                                 write a topic like \"%i/status\" (%i: the client id), or \"\" \
                                 for no status",
                            );
                        } else {
                            b.status_topic = Some(topic);
                        }
                    }
                }
                "ca_file" | "client_cert" | "client_key" => {
                    let path = self.path(v, &f);
                    if path.is_some() {
                        tls_files.push((name_of(name), v.span()));
                    }
                    match name {
                        "ca_file" => b.ca_file = path,
                        "client_cert" => b.client_cert = path,
                        _ => b.client_key = path,
                    }
                }
                _ => self.unknown_key(key, "broker", "broker"),
            }
        }

        // TLS files need an mqtts:// URL.
        if tls == Some(false) {
            for (name, span) in &tls_files {
                let message = format!(
                    "{name} is a TLS option, but the url is plain mqtt://; use an mqtts:// url \
                     or remove {name}"
                );
                self.issue(span.clone(), &join("broker", name), message);
            }
        }
        // A client certificate and its key come together.
        let has = |wanted: &str| tls_files.iter().any(|(name, _)| *name == wanted);
        for (name, other, span) in tls_files
            .iter()
            .filter_map(|(name, span)| match *name {
                "client_cert" if !has("client_key") => Some(("client_cert", "client_key", span)),
                "client_key" if !has("client_cert") => Some(("client_key", "client_cert", span)),
                _ => None,
            })
            .collect::<Vec<_>>()
        {
            let message = format!(
                "{name} needs {other} as well (the client certificate and its private key, both PEM)"
            );
            self.issue(span.clone(), &join("broker", name), message);
        }
        // One source for the password.
        if let (Some((_, _)), Some(span)) = (&password, &password_file) {
            self.issue(
                span.clone(),
                "broker.password_file",
                "set either password or password_file, not both",
            );
        }
        // The options win over the URL's user info.
        if let Some(name) = username.filter(|name| !name.is_empty()) {
            b.username = Some(name);
        }
        let password = password.filter(|(text, _)| !text.is_empty());
        if let Some((text, _)) = &password {
            b.password = Some(text.clone());
        } else if password_file.is_some() {
            b.password = None;
        }
        if b.username.is_none() {
            let (span, field) = if let Some((_, span)) = &password {
                (Some(span.clone()), "broker.password")
            } else if let Some(span) = &password_file {
                (Some(span.clone()), "broker.password_file")
            } else if b.password.is_some() {
                (url_span.clone(), "broker.url")
            } else {
                (None, "")
            };
            if let Some(span) = span {
                self.issue(span, field, PASSWORD_NEEDS_USER);
            }
        }
        if b.reconnect_min > b.reconnect_max {
            let (span, field) = match (&reconnect_min, &reconnect_max) {
                (Some(span), _) => (span.clone(), "broker.reconnect_min"),
                (None, Some(span)) => (span.clone(), "broker.reconnect_max"),
                (None, None) => (value.span(), "broker"),
            };
            let message = format!(
                "reconnect_min (\"{}\") is longer than reconnect_max (\"{}\"); make \
                 reconnect_min the shorter one",
                format_duration(b.reconnect_min),
                format_duration(b.reconnect_max)
            );
            self.issue(span, field, message);
        }
        Some(b)
    }

    /// A UTF-8 string as MQTT encodes it: at most 65535 bytes, no NUL.
    fn mqtt_string(&mut self, value: &Value<'_>, field: &str, what: &str) -> Option<String> {
        let text = self.string(value, field, &format!("the {what} in double quotes"))?;
        if text.len() > usize::from(u16::MAX) {
            self.issue(
                value.span(),
                field,
                format!("the {what} is longer than 65535 bytes, the MQTT limit"),
            );
            return None;
        }
        if text.contains('\0') {
            self.issue(
                value.span(),
                field,
                format!("the {what} contains a NUL character, which MQTT forbids; remove it"),
            );
            return None;
        }
        Some(text.to_string())
    }

    /// A `client_id` key of `[[credentials]]` or `[[mote]]`: a non-empty MQTT string, with its
    /// span; `None` when it is not (the problem reported, `hint` saying what to write).
    fn client_id_value(
        &mut self,
        value: &Value<'_>,
        field: &str,
        hint: &str,
    ) -> Option<(String, Range<usize>)> {
        let id = self.mqtt_string(value, field, "client id")?;
        if id.is_empty() {
            self.issue(
                value.span(),
                field,
                format!("the client id is empty; {hint}"),
            );
            return None;
        }
        Some((id, value.span()))
    }

    fn spool(&mut self, table: &DeTable<'_>) -> SpoolConfig {
        let mut spool = SpoolConfig::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("spool", name);
            match name {
                "enabled" => set(&mut spool.enabled, self.boolean(v, &f)),
                "max_bytes" => set(
                    &mut spool.max_bytes,
                    self.int(v, &f, 1024, u64::MAX)
                        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                ),
                "qos0" => set(&mut spool.qos0, self.boolean(v, &f)),
                "when_full" => {
                    let expected = "\"refuse\" or \"drop-oldest\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        match text {
                            "refuse" => spool.when_full = SpoolFull::Refuse,
                            "drop-oldest" => spool.when_full = SpoolFull::DropOldest,
                            other => self.issue(
                                v.span(),
                                &f,
                                format!("{other:?} is not a policy; use {expected}"),
                            ),
                        }
                    }
                }
                _ => self.unknown_key(key, "spool", "spool"),
            }
        }
        spool
    }

    fn metrics(&mut self, table: &DeTable<'_>) -> MetricsConfig {
        let mut metrics = MetricsConfig::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("metrics", name);
            match name {
                "listen" => {
                    let expected = "an address like \"127.0.0.1:9090\", or \"off\"";
                    let Some(text) = self.string(v, &f, expected) else {
                        continue;
                    };
                    if text.trim().eq_ignore_ascii_case("off") {
                        metrics.listen = None;
                        continue;
                    }
                    match parse_socket_addr(text) {
                        Ok(addr) => {
                            if !addr.ip().is_loopback() {
                                self.warning(
                                    v.span(),
                                    &f,
                                    "the metrics endpoint has no login: beyond loopback anyone \
                                     who reaches this address reads the gateway's counters; \
                                     keep it on 127.0.0.1 or behind a firewall",
                                );
                            }
                            metrics.listen = Some(addr);
                        }
                        Err(message) => self.issue(v.span(), &f, message),
                    }
                }
                _ => self.unknown_key(key, "metrics", "metrics"),
            }
        }
        metrics
    }

    fn embedded_broker(&mut self, table: &DeTable<'_>) -> EmbeddedBrokerConfig {
        let mut embedded = EmbeddedBrokerConfig::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("embedded_broker", name);
            match name {
                "listen" => {
                    let expected = "an address like \"127.0.0.1:1883\", or \"off\"";
                    let Some(text) = self.string(v, &f, expected) else {
                        continue;
                    };
                    if text.trim().eq_ignore_ascii_case("off") {
                        embedded.listen = None;
                        continue;
                    }
                    match parse_socket_addr(text) {
                        Ok(addr) => embedded.listen = Some(addr),
                        Err(message) => self.issue(v.span(), &f, message),
                    }
                }
                _ => self.unknown_key(key, "embedded_broker", "embedded_broker"),
            }
        }
        embedded
    }

    /// `[presence] topic`: a topic template (`%c`: the client id), or none.
    fn presence(&mut self, table: &DeTable<'_>) -> Option<String> {
        let mut topic = None;
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("presence", name);
            match name {
                "topic" => {
                    let Some(text) = self.mqtt_string(v, &f, "presence topic") else {
                        continue;
                    };
                    if text.is_empty() {
                        topic = None;
                    } else if text.contains(['+', '#']) || text.starts_with('$') {
                        self.issue(
                            v.span(),
                            &f,
                            "a presence topic cannot hold '+' or '#' or begin with '$'; write a \
                             topic like \"motes/%c/presence\" (%c: the client id)",
                        );
                    } else {
                        if !text.contains("%c") {
                            self.warning(
                                v.span(),
                                &f,
                                "the presence topic has no %c: every mote's presence goes to the \
                                 same topic and only the last one is kept; write \
                                 \"motes/%c/presence\" or similar",
                            );
                        }
                        topic = Some(text);
                    }
                }
                _ => self.unknown_key(key, "presence", "presence"),
            }
        }
        topic
    }

    fn store(&mut self, table: &DeTable<'_>) -> StoreConfig {
        let mut store = StoreConfig::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("store", name);
            match name {
                "enabled" => set(&mut store.enabled, self.boolean(v, &f)),
                "path" => set(&mut store.path, self.path(v, &f)),
                _ => self.unknown_key(key, "store", "store"),
            }
        }
        store
    }

    fn log(&mut self, table: &DeTable<'_>) -> LogConfig {
        let mut log = LogConfig::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("log", name);
            match name {
                "level" => {
                    let expected = "a level in double quotes, like \"info\"";
                    if let Some(level) = self.string(v, &f, expected) {
                        match check_log_level(level) {
                            Ok(()) => log.level = level.trim().to_string(),
                            Err(message) => self.issue(v.span(), &f, message),
                        }
                    }
                }
                "format" => {
                    let expected = "\"text\" or \"json\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        match LogFormat::parse(text) {
                            Ok(format) => log.format = format,
                            Err(message) => self.issue(v.span(), &f, message),
                        }
                    }
                }
                "stats_interval" => set(
                    &mut log.stats_interval,
                    self.duration(v, &f, STATS_INTERVAL_LIMITS),
                ),
                _ => self.unknown_key(key, "log", "log"),
            }
        }
        log
    }

    fn syntax_errors(&mut self, doc: &DeTable<'_>, errors: &[toml::de::Error]) {
        let mut places = Vec::new();
        collect_places(doc, "", self.text, &mut places);
        let mut errors: Vec<(Range<usize>, &str)> = errors
            .iter()
            .map(|e| (e.span().unwrap_or(0..0), e.message()))
            .collect();
        errors.sort_by_key(|(span, _)| span.start);
        // One error per line: the parser's follow-up errors on the same line are noise.
        let mut lines = BTreeSet::new();
        for (span, message) in errors {
            let (line, _) = self.position(span.start);
            if !lines.insert(line) {
                continue;
            }
            let field = self.field_at(&places, span.clone());
            let message = self.syntax_message(message, span.clone());
            self.issue(span, &field, message);
        }
    }

    /// The source line holding `offset`, without its line break.
    fn line_text(&self, offset: usize) -> &'s str {
        let (line, _) = self.position(offset);
        let start = line
            .checked_sub(1)
            .and_then(|i| self.line_starts.get(i))
            .copied()
            .unwrap_or(0);
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        self.source(start..end).trim_end_matches(['\n', '\r'])
    }

    /// A best guess at the field a syntax error is in.
    fn field_at(&self, places: &[Place], span: Range<usize>) -> String {
        let (line, _) = self.position(span.start);
        // A key on the same line, before the error.
        let on_line = places
            .iter()
            .filter(|p| p.key.start <= span.start && self.position(p.key.start).0 == line)
            .max_by_key(|p| p.key.start);
        if let Some(place) = on_line {
            return place.path.clone();
        }
        // A table header line (e.g. a duplicate table).
        let line_text = self.line_text(span.start).trim();
        if line_text.starts_with('[') {
            let inner = line_text
                .split(']')
                .next()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim();
            return inner.to_string();
        }
        // Otherwise the section the error is in, plus the key if the error is on a key.
        let section = places
            .iter()
            .filter(|p| p.header && p.value.start <= span.start)
            .max_by_key(|p| p.value.start)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let text = self.source(span.clone());
        if is_bare_key(text) && self.before_on_line(span.start).trim().is_empty() {
            join(&section, text)
        } else {
            section
        }
    }

    /// The text of the line before `offset`.
    fn before_on_line(&self, offset: usize) -> &'s str {
        let (line, _) = self.position(offset);
        let start = line
            .checked_sub(1)
            .and_then(|i| self.line_starts.get(i))
            .copied()
            .unwrap_or(0);
        self.source(start..offset)
    }

    fn syntax_message(&self, message: &str, span: Range<usize>) -> String {
        let text = self.source(span.clone());
        if message == "duplicate key" {
            if self.line_text(span.start).trim_start().starts_with('[') {
                return format!(
                    "the section [{text}] appears twice; put all its options under one header"
                );
            }
            return "this option is set twice in the same section; keep one".to_string();
        }
        // A bare word after `=` (like `level = info`) is a string without its quotes.
        let before = self.before_on_line(span.start);
        let token_start = before
            .rfind(|c: char| c == '=' || c.is_whitespace())
            .map_or(0, |i| i + 1);
        let after_equals = before
            .get(..token_start)
            .is_some_and(|prefix| prefix.trim_end().ends_with('='));
        let token: String = before
            .get(token_start..)
            .unwrap_or("")
            .chars()
            .chain(self.source(span.start..self.text.len()).chars())
            .take_while(|c| !c.is_whitespace() && *c != '#' && *c != ',')
            .collect();
        if after_equals {
            if token.eq_ignore_ascii_case("true") || token.eq_ignore_ascii_case("false") {
                return format!(
                    "{token} must be written in lower case: {}",
                    token.to_ascii_lowercase()
                );
            }
            let quoted = token.starts_with(['"', '\'', '[', '{']);
            if !quoted && token.chars().any(|c| c.is_ascii_alphabetic() || c == ':') {
                return format!("text must be in double quotes: write \"{token}\"");
            }
        }
        if message.starts_with("invalid basic string")
            || message.starts_with("invalid literal string")
        {
            return "the text has no closing quote; add it at the end of the value".to_string();
        }
        format!("invalid TOML: {message}")
    }
}

/// A key in the parsed document, for placing syntax errors.
struct Place {
    key: Range<usize>,
    value: Range<usize>,
    path: String,
    /// The value is a table written as a `[header]` or `[[header]]`.
    header: bool,
}

fn collect_places(table: &DeTable<'_>, prefix: &str, text: &str, out: &mut Vec<Place>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        let header =
            |span: &Range<usize>| text.get(span.clone()).is_some_and(|s| s.starts_with('['));
        match value.get_ref() {
            DeValue::Table(inner) => {
                out.push(Place {
                    key: key.span(),
                    value: value.span(),
                    path: path.clone(),
                    header: header(&value.span()),
                });
                collect_places(inner, &path, text, out);
            }
            DeValue::Array(items) => {
                out.push(Place {
                    key: key.span(),
                    value: value.span(),
                    path: path.clone(),
                    header: false,
                });
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        let item_path = format!("{path}[{i}]");
                        out.push(Place {
                            key: item.span(),
                            value: item.span(),
                            path: item_path.clone(),
                            header: header(&item.span()),
                        });
                        collect_places(inner, &item_path, text, out);
                    }
                }
            }
            _ => out.push(Place {
                key: key.span(),
                value: value.span(),
                path,
                header: false,
            }),
        }
    }
}

/// A BrokerUrl for a `[broker]` whose url is missing or wrong, so the other options can still
/// be checked.
/// The names `[broker] mode` accepts, for messages.
const BROKER_MODE_NAMES: &str = "\"aggregating\" or \"transparent\"";

/// Parses a `[broker] mode` name (each mode's `Display` is its name).
fn broker_mode(name: &str) -> Option<BrokerMode> {
    [BrokerMode::Aggregating, BrokerMode::Transparent]
        .into_iter()
        .find(|mode| mode.to_string() == name)
}

fn placeholder_url() -> BrokerUrl {
    BrokerUrl {
        tls: false,
        host: String::new(),
        port: DEFAULT_MQTT_PORT,
        username: None,
        password: None,
        normalized: String::new(),
    }
}

/// The static name of a broker TLS option.
fn name_of(name: &str) -> &'static str {
    match name {
        "ca_file" => "ca_file",
        "client_cert" => "client_cert",
        _ => "client_key",
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn is_bare_key(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A key as it appears in a field path: bare if it can be, else quoted.
fn key_display(name: &str) -> String {
    if is_bare_key(name) {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        key_display(name)
    } else {
        format!("{prefix}.{}", key_display(name))
    }
}

/// A string value quoted for a message, shortened if long.
fn quote(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}
