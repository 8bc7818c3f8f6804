//! The command line: what the user can ask for, parsed and checked by clap, plus the few value
//! parsers clap cannot derive (QoS -1, durations like `100ms`, predefined ids with a name).

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use sn_codec::QoS;

/// Act as an MQTT-SN v1.2 client (a "mote") over UDP or DTLS: publish or subscribe through a gateway,
/// drive many simulated motes to benchmark it, or simulate a radio dongle for it.
#[derive(Debug, Parser)]
#[command(name = "mqtt-sn", version)]
pub(crate) struct Cli {
    /// Log every packet sent and received to stderr (-vv for more detail). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The modes of the tool.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish one or more messages, then disconnect.
    Pub(PubArgs),
    /// Subscribe and print every message received, one line each.
    Sub(SubArgs),
    /// Load-test a gateway: many simulated motes, throughput, latency, losses, CPU and memory.
    Bench(Box<crate::bench::BenchArgs>),
    /// Simulate a USB radio dongle on a pty for the gateway's serial link; its motes are
    /// MQTT-SN clients on UDP (`mqtt-sn pub --gateway <the address it prints>`).
    RadioSim(crate::radio_sim::RadioSimArgs),
}

/// Options shared by `pub` and `sub`: where the gateway is and how to talk to it.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Gateway address as HOST:PORT; IPv6 as [::1]:1883.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1883")]
    pub(crate) gateway: String,

    /// Client id sent in CONNECT (the spec allows 1-23 characters) [default: mqtt-sn-<pid>].
    #[arg(short = 'i', long, value_name = "ID")]
    pub(crate) client_id: Option<String>,

    /// Keep-alive in seconds, sent in CONNECT; a PINGREQ goes out after this long without
    /// sending anything. 0 turns keep-alive off.
    #[arg(short = 'k', long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) keep_alive: u16,

    /// CleanSession flag of CONNECT.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub(crate) clean_session: bool,

    /// Resend a request that got no answer after this long (T_retry).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) retry: Duration,

    /// How many times a request is resent before giving up (N_retry).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) retries: u32,

    /// Will topic: makes CONNECT carry the Will flag and answer WILLTOPICREQ/WILLMSGREQ.
    #[arg(long, value_name = "TOPIC")]
    pub(crate) will_topic: Option<String>,

    /// Will payload [default: empty].
    #[arg(long, value_name = "MESSAGE", requires = "will_topic")]
    pub(crate) will_message: Option<String>,

    /// Will QoS, 0-2 [default: 0].
    #[arg(
        long,
        value_name = "QOS",
        requires = "will_topic",
        allow_negative_numbers = true,
        value_parser = parse_qos_0_to_2
    )]
    pub(crate) will_qos: Option<QoS>,

    /// Publish the Will retained.
    #[arg(long, requires = "will_topic")]
    pub(crate) will_retain: bool,

    /// DTLS options.
    #[command(flatten)]
    pub(crate) dtls: crate::dtls::DtlsArgs,
}

/// Which topic to use: exactly one of the three forms MQTT-SN has.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct TopicArgs {
    /// Topic name (pub: REGISTERed first; sub: a name or a filter with + and #).
    #[arg(short = 't', long, value_name = "NAME")]
    pub(crate) topic: Option<String>,

    /// Predefined topic id, optionally with the name it stands for (shown by `sub`): 5 or
    /// 5=sensors/temp.
    #[arg(long, value_name = "ID[=NAME]", value_parser = parse_predefined)]
    pub(crate) predefined: Option<Predefined>,

    /// Short topic name: exactly two bytes, carried in the TopicId field.
    #[arg(long, value_name = "AB", value_parser = parse_short)]
    pub(crate) short: Option<[u8; 2]>,
}

/// `mqtt-sn pub`.
#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    /// Gateway and session options.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    /// Topic options.
    #[command(flatten)]
    pub(crate) topic: TopicArgs,

    /// Payload. The placeholder `{ n }` (written without the spaces) is replaced by the 0-based
    /// sequence number of the message.
    #[arg(
        short = 'm',
        long,
        value_name = "PAYLOAD",
        required_unless_present = "stdin_lines",
        conflicts_with = "stdin_lines"
    )]
    pub(crate) message: Option<String>,

    /// Publish each line read from stdin as one message, until end of input.
    #[arg(long, conflicts_with = "count")]
    pub(crate) stdin_lines: bool,

    /// QoS: -1 (no connection: the PUBLISH carries a predefined id, a short name or the whole
    /// topic name), 0, 1 or 2.
    #[arg(
        short = 'q',
        long,
        value_name = "QOS",
        default_value = "0",
        allow_negative_numbers = true,
        value_parser = parse_qos
    )]
    pub(crate) qos: QoS,

    /// Set the Retain flag.
    #[arg(short = 'r', long)]
    pub(crate) retain: bool,

    /// Number of messages to publish.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1)]
    pub(crate) count: u64,

    /// Pause between two messages.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub(crate) interval: Duration,

    /// Give up on an exchange (CONNACK, REGACK, PUBACK, ...) after this long, retries included.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// `mqtt-sn sub`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    /// Gateway and session options.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    /// Topic options.
    #[command(flatten)]
    pub(crate) topic: TopicArgs,

    /// Requested QoS, 0-2.
    #[arg(
        short = 'q',
        long,
        value_name = "QOS",
        default_value = "0",
        allow_negative_numbers = true,
        value_parser = parse_qos_0_to_2
    )]
    pub(crate) qos: QoS,

    /// Exit 0 after this many messages.
    #[arg(short = 'c', long, value_name = "N")]
    pub(crate) count: Option<u64>,

    /// Overall time limit. With --count, reaching it first exits 2; without, it ends the run
    /// cleanly (exit 0). Without either the tool runs until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,

    /// How each message is printed.
    #[arg(short = 'F', long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

/// How `sub` prints a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `topic payload`, payload as UTF-8 (invalid bytes replaced).
    Text,
    /// One JSON object per line: topic, payload, qos, retain, dup.
    Json,
    /// The payload in lowercase hex.
    Hex,
}

/// A predefined topic id and, if the user gave one, the name it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Predefined {
    /// The id both sides have configured.
    pub(crate) id: u16,
    /// The name it maps to, only for display.
    pub(crate) name: Option<String>,
}

/// Parses `5` or `5=sensors/temp`. Ids 0x0000 and 0xFFFF are reserved by the spec.
pub(crate) fn parse_predefined(s: &str) -> Result<Predefined, String> {
    let (id, name) = match s.split_once('=') {
        Some((id, name)) => (id, Some(name.to_owned())),
        None => (s, None),
    };
    let id: u16 = id
        .trim()
        .parse()
        .map_err(|_| format!("'{id}' is not a topic id (1-65534)"))?;
    if id == 0 || id == u16::MAX {
        return Err(format!("topic id {id} is reserved; use 1-65534"));
    }
    Ok(Predefined { id, name })
}

/// A short topic name is exactly two bytes on the wire, so two ASCII characters (or one
/// two-byte UTF-8 character).
pub(crate) fn parse_short(s: &str) -> Result<[u8; 2], String> {
    <[u8; 2]>::try_from(s.as_bytes()).map_err(|_| {
        format!(
            "a short topic name is exactly 2 bytes; '{s}' has {}",
            s.len()
        )
    })
}

/// QoS for publishing: -1, 0, 1 or 2.
pub(crate) fn parse_qos(s: &str) -> Result<QoS, String> {
    match s.trim() {
        "-1" => Ok(QoS::MinusOne),
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err(format!("'{s}' is not a QoS; use -1, 0, 1 or 2")),
    }
}

/// QoS where -1 means nothing (SUBSCRIBE, Will).
pub(crate) fn parse_qos_0_to_2(s: &str) -> Result<QoS, String> {
    match parse_qos(s) {
        Ok(QoS::MinusOne) | Err(_) => Err(format!("'{s}' is not a QoS here; use 0, 1 or 2")),
        Ok(qos) => Ok(qos),
    }
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let Some((number, unit)) = s.split_at_checked(split) else {
        return Err(format!("'{s}' is not a duration"));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; use e.g. 250ms, 10s, 2m"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}'; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("'{s}' is out of range for a duration"))
}

/// Shows a duration the way a user would type it: `250ms`, `10s`, `1.5s`.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, rest) = (ms / 1000, ms % 1000);
    if secs == 0 {
        format!("{ms}ms")
    } else if rest == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{rest:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("10x").is_err());
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn topic_forms_parse() {
        assert_eq!(
            parse_predefined("5=a/b"),
            Ok(Predefined {
                id: 5,
                name: Some("a/b".into())
            })
        );
        assert!(parse_predefined("0").is_err());
        assert_eq!(parse_short("ab"), Ok(*b"ab"));
        assert!(parse_short("abc").is_err());
        assert_eq!(parse_qos("-1"), Ok(QoS::MinusOne));
        assert!(parse_qos_0_to_2("-1").is_err());
    }
}
