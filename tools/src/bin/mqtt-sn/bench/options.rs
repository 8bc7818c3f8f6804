//! The command line of `mqtt-sn bench` and the checked [`Plan`] it becomes. Every run is bounded
//! in time and count, and only ever talks to loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sn_codec::QoS;

use super::payload::STAMP_LEN;
use crate::cli::{parse_duration, parse_predefined, parse_qos, parse_qos_0_to_2, parse_short};

/// Most simulated motes one run may drive.
pub(crate) const MAX_MOTES: u32 = 200_000;
/// Longest load phase.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most messages per mote (uplink) or from the broker (downlink).
const MAX_COUNT: u64 = 100_000_000;
/// Highest message rate that can be asked for, all motes together.
const MAX_RATE: u64 = 10_000_000;
/// Largest payload: the gateway's default max_packet_size is 1024 and a PUBLISH header is 7.
const MAX_PAYLOAD: usize = 1000;
/// Sockets kept free for everything else (broker connections, /proc files, stdio).
const RESERVED_FDS: u64 = 256;

/// `mqtt-sn bench`: drive many simulated motes through a gateway and report throughput,
/// latency, losses and the gateway's CPU and memory. Loopback only; bounded in time and count.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Gateway UDP address; an IPv4 loopback address (127.0.0.0/8).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1883")]
    pub(crate) gateway: String,

    /// The MQTT broker the gateway forwards to: the counting subscriber (uplink), the publisher
    /// (downlink) and the --baseline clients connect here. mqtt://HOST:PORT or HOST:PORT,
    /// loopback only.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883")]
    pub(crate) broker: String,

    /// Number of simulated motes, each with its own UDP source address.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub(crate) motes: u32,

    /// Direction of the load: `up` (motes publish, a subscriber on the broker counts) or
    /// `down` (fan-out: a publisher on the broker, every mote subscribed).
    #[arg(long, value_enum, default_value_t = Direction::Up)]
    pub(crate) direction: Direction,

    /// QoS of the motes' PUBLISHes (-1, 0, 1, 2); for `down`, the QoS of the motes'
    /// subscriptions and of the broker-side publisher (0, 1, 2).
    #[arg(
        short = 'q',
        long,
        value_name = "QOS",
        default_value = "1",
        allow_negative_numbers = true,
        value_parser = parse_qos
    )]
    pub(crate) qos: QoS,

    /// Topic name, REGISTERed by each mote (`{mote}` becomes the mote's number, as a whole
    /// level) [default: bench/up/{mote}, or bench/down for `down`]. At QoS -1 the name travels
    /// in the PUBLISH (long-name form).
    #[arg(short = 't', long, value_name = "NAME", group = "topic_kind")]
    pub(crate) topic: Option<String>,

    /// Predefined topic id and the name the gateway maps it to (its [predefined_topics]):
    /// 1=bench/p. The name is what the broker-side subscriber or publisher uses.
    #[arg(long, value_name = "ID=NAME", value_parser = parse_predefined, group = "topic_kind")]
    pub(crate) predefined: Option<crate::cli::Predefined>,

    /// Short topic name (exactly two characters, e.g. `bn`).
    #[arg(long, value_name = "AB", value_parser = parse_short, group = "topic_kind")]
    pub(crate) short: Option<[u8; 2]>,

    /// Messages per second, all motes (or the broker publisher) together. 0: closed loop, each
    /// mote sends its next message as soon as the previous one is acknowledged (QoS 1/2) or
    /// as fast as its socket accepts (QoS 0/-1). At QoS 1/2 a mote never has more than one
    /// message in flight, so the rate is a ceiling.
    #[arg(short = 'r', long, value_name = "MSG/S", default_value_t = 0)]
    pub(crate) rate: u64,

    /// Messages per mote (`up`) or published by the broker (`down`); the load ends when every
    /// mote has sent its count or at --duration, whichever comes first [default: no count].
    #[arg(short = 'c', long, value_name = "N")]
    pub(crate) count: Option<u64>,

    /// Longest load phase (after the connect phase).
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,

    /// New connections per second during the connect phase; 0: every mote at once (a connect
    /// storm).
    #[arg(long, value_name = "CONN/S", default_value_t = 0)]
    pub(crate) connect_rate: u64,

    /// Time allowed for every mote to connect (and register or subscribe) before the load
    /// starts without the stragglers.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,

    /// Start each mote's load as soon as it is connected, instead of all together once all are
    /// connected. Implied when there are more motes than --max-sockets.
    #[arg(long)]
    pub(crate) no_barrier: bool,

    /// Payload size in bytes (20 to 1000); the first 20 carry run, mote, sequence number and
    /// send time.
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    pub(crate) payload_size: usize,

    /// QoS of the broker-side subscriber (`up`) [default: the motes' QoS, 0 for -1].
    #[arg(long, value_name = "QOS", allow_negative_numbers = true, value_parser = parse_qos_0_to_2)]
    pub(crate) sub_qos: Option<QoS>,

    /// Resend an unanswered CONNECT, REGISTER, SUBSCRIBE, PUBLISH or PUBREL after this long
    /// (T_retry).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub(crate) retry: Duration,

    /// Resends before a mote gives up on an exchange (N_retry).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) retries: u32,

    /// Keep-alive in seconds sent in CONNECT; the gateway drops a silent mote after 1.5 times
    /// this, so it must outlast the run.
    #[arg(short = 'k', long, value_name = "SECONDS", default_value_t = 600)]
    pub(crate) keep_alive: u16,

    /// After the load, wait at most this long for outstanding acknowledgements and deliveries.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub(crate) drain: Duration,

    /// After the drain, keep every session open this long while sampling the gateway's memory.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub(crate) hold: Duration,

    /// Leave the sessions at the gateway at the end instead of sending DISCONNECT.
    #[arg(long)]
    pub(crate) no_disconnect: bool,

    /// Process id of the gateway: its CPU use and memory (from /proc) go into the report.
    #[arg(long, value_name = "PID")]
    pub(crate) gateway_pid: Option<u32>,

    /// Process id of the broker, reported the same way.
    #[arg(long, value_name = "PID")]
    pub(crate) broker_pid: Option<u32>,

    /// Run the same load as direct MQTT clients (one rumqttc connection per mote) against
    /// --broker, without the gateway: the baseline the gateway's figures are compared with.
    #[arg(long)]
    pub(crate) baseline: bool,

    /// Worker threads of the tool; 1 runs everything on one thread.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) threads: usize,

    /// Most mote sockets open at once [default: the open-file limit minus 256]. With more
    /// motes than this, motes connect in waves: each releases its socket once its load is done
    /// (the session stays at the gateway) and rebinds the same address at the end.
    #[arg(long, value_name = "N")]
    pub(crate) max_sockets: Option<u64>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,

    /// Also write the JSON report to this file.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    /// No progress line on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,

    /// A label copied into the report (e.g. the scenario name).
    #[arg(long, value_name = "TEXT")]
    pub(crate) label: Option<String>,

    /// DTLS: each mote handshakes on its own socket first (timed in the report's
    /// `handshake` part). With --psk-identity or --cert every mote shares the identity, so
    /// the gateway needs a [[mote]] entry letting it use the bench's client ids (client_id =
    /// "b*"); with --psk-file mote i takes line i and connects with its identity as client id.
    #[command(flatten)]
    pub(crate) dtls: crate::dtls::DtlsArgs,
}

/// Which way the messages flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Direction {
    /// Motes publish; a subscriber on the broker counts.
    Up,
    /// The broker publishes; every mote is subscribed (fan-out).
    Down,
}

/// How the motes name their topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicPlan {
    /// A name REGISTERed (or SUBSCRIBEd) by each mote; `{mote}` is replaced by its number.
    Registered {
        /// The template.
        template: String,
    },
    /// A predefined id configured on the gateway, and the name it stands for.
    Predefined {
        /// The id.
        id: u16,
        /// The MQTT topic name.
        name: String,
    },
    /// A two-character short name.
    Short([u8; 2]),
}

impl TopicPlan {
    /// The MQTT topic name mote `mote` publishes to (or is subscribed to).
    pub(crate) fn name_for(&self, mote: u32) -> String {
        match self {
            TopicPlan::Registered { template } => template.replace("{mote}", &mote.to_string()),
            TopicPlan::Predefined { name, .. } => name.clone(),
            TopicPlan::Short(short) => String::from_utf8_lossy(short).into_owned(),
        }
    }

    /// The filter the broker-side subscriber uses to see every mote's messages.
    pub(crate) fn filter(&self) -> String {
        match self {
            TopicPlan::Registered { template } => template.replace("{mote}", "+"),
            other => other.name_for(0),
        }
    }

    /// For the report.
    pub(crate) fn describe(&self) -> String {
        match self {
            TopicPlan::Registered { template } => format!("registered {template}"),
            TopicPlan::Predefined { id, name } => format!("predefined {id}={name}"),
            TopicPlan::Short(_) => format!("short {}", self.name_for(0)),
        }
    }
}

/// A checked run description.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The gateway.
    pub(crate) gateway: SocketAddrV4,
    /// The broker.
    pub(crate) broker: SocketAddr,
    /// Number of motes.
    pub(crate) motes: u32,
    /// Direction.
    pub(crate) direction: Direction,
    /// QoS of the motes' side.
    pub(crate) qos: QoS,
    /// Topic.
    pub(crate) topic: TopicPlan,
    /// Messages per second in total; 0 closed loop.
    pub(crate) rate: u64,
    /// Per mote (up) or in total (down).
    pub(crate) count: Option<u64>,
    /// Longest load phase.
    pub(crate) duration: Duration,
    /// Connections per second; 0 all at once.
    pub(crate) connect_rate: u64,
    /// Longest connect phase.
    pub(crate) connect_timeout: Duration,
    /// Whether the load starts for all motes together.
    pub(crate) barrier: bool,
    /// Payload size.
    pub(crate) payload_size: usize,
    /// QoS of the broker-side subscriber or publisher (MQTT 0..2).
    pub(crate) broker_qos: QoS,
    /// T_retry.
    pub(crate) retry: Duration,
    /// N_retry.
    pub(crate) retries: u32,
    /// CONNECT keep-alive.
    pub(crate) keep_alive: u16,
    /// Drain limit.
    pub(crate) drain: Duration,
    /// Hold time.
    pub(crate) hold: Duration,
    /// DISCONNECT at the end.
    pub(crate) disconnect: bool,
    /// Gateway pid.
    pub(crate) gateway_pid: Option<u32>,
    /// Broker pid.
    pub(crate) broker_pid: Option<u32>,
    /// Direct MQTT clients instead of motes.
    pub(crate) baseline: bool,
    /// Tool threads.
    pub(crate) threads: usize,
    /// Most sockets open at once.
    pub(crate) max_sockets: usize,
    /// JSON on stdout.
    pub(crate) json: bool,
    /// JSON file.
    pub(crate) output: Option<PathBuf>,
    /// No progress line.
    pub(crate) quiet: bool,
    /// Report label.
    pub(crate) label: Option<String>,
    /// DTLS credentials and context; `None` for plain UDP.
    pub(crate) dtls: Option<crate::dtls::DtlsSetup>,
}

impl Plan {
    /// Whether motes connect in waves (more motes than sockets).
    pub(crate) fn waves(&self) -> bool {
        self.motes as usize > self.max_sockets
    }

    /// Whether the motes' QoS has an acknowledgement flow.
    pub(crate) fn acked(&self) -> bool {
        self.qos.needs_ack()
    }

    /// The longest a mote waits for one answer, resends included.
    pub(crate) fn exchange_budget(&self) -> Duration {
        self.retry.saturating_mul(self.retries.saturating_add(1))
    }

    /// Checks the options and fills in the defaults.
    pub(crate) fn from_args(args: BenchArgs) -> Result<Plan, String> {
        let gateway = match loopback(&args.gateway, "--gateway")? {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => {
                return Err(
                    "--gateway: the bench gives every mote its own 127.x.y.z source \
                            address, so the gateway must listen on IPv4 loopback (127.0.0.1)"
                        .to_owned(),
                )
            }
        };
        let broker_text = args
            .broker
            .strip_prefix("mqtt://")
            .or_else(|| args.broker.strip_prefix("tcp://"))
            .unwrap_or(&args.broker);
        if args.broker.contains("://") && broker_text == args.broker {
            return Err(format!(
                "--broker {}: only mqtt:// (plain TCP on loopback) is supported",
                args.broker
            ));
        }
        let broker = loopback(broker_text.trim_end_matches('/'), "--broker")?;
        if args.motes == 0 || args.motes > MAX_MOTES {
            return Err(format!("--motes must be 1 to {MAX_MOTES}"));
        }
        if args.duration.is_zero() || args.duration > MAX_DURATION {
            return Err("--duration must be more than 0 and at most 1h".to_owned());
        }
        for (name, d) in [
            ("--connect-timeout", args.connect_timeout),
            ("--drain", args.drain),
            ("--hold", args.hold),
        ] {
            if d > MAX_DURATION {
                return Err(format!("{name} must be at most 1h"));
            }
        }
        if args.retry < Duration::from_millis(10) || args.retry > Duration::from_secs(60) {
            return Err("--retry must be 10ms to 60s".to_owned());
        }
        if args.retries > 100 {
            return Err("--retries must be at most 100".to_owned());
        }
        if args
            .count
            .is_some_and(|c| c == 0 && args.direction == Direction::Down)
        {
            return Err("--count 0 publishes nothing; give at least 1 for --direction down".into());
        }
        if args.count.is_some_and(|c| c > MAX_COUNT) {
            return Err(format!("--count must be at most {MAX_COUNT}"));
        }
        if args.rate > MAX_RATE || args.connect_rate > MAX_RATE {
            return Err(format!(
                "--rate and --connect-rate must be at most {MAX_RATE}"
            ));
        }
        if !(STAMP_LEN..=MAX_PAYLOAD).contains(&args.payload_size) {
            return Err(format!(
                "--payload-size must be {STAMP_LEN} to {MAX_PAYLOAD} bytes"
            ));
        }
        if args.threads == 0 || args.threads > 64 {
            return Err("--threads must be 1 to 64".to_owned());
        }
        if args.keep_alive == 0 {
            return Err(
                "--keep-alive 0 would let sessions live forever after the run; \
                        give a number of seconds"
                    .to_owned(),
            );
        }
        let topic = topic_plan(&args)?;
        if args.direction == Direction::Down && args.qos == QoS::MinusOne {
            return Err("--direction down needs a subscription QoS: 0, 1 or 2".to_owned());
        }
        let broker_qos = match (args.direction, args.sub_qos) {
            (Direction::Up, Some(q)) => q,
            (Direction::Up, None) | (Direction::Down, None) => match args.qos {
                QoS::MinusOne => QoS::AtMostOnce,
                q => q,
            },
            (Direction::Down, Some(_)) => {
                return Err(
                    "--sub-qos is for --direction up; for down, -q sets both the \
                            publisher's and the motes' QoS"
                        .to_owned(),
                )
            }
        };
        let dtls = crate::dtls::setup(&args.dtls)?;
        if let Some(setup) = &dtls {
            if args.baseline {
                return Err("--baseline runs MQTT clients against the broker: drop --dtls".into());
            }
            let entries = setup.psk_entries.len();
            if entries > 0 && entries < args.motes as usize {
                return Err(format!(
                    "--psk-file holds {entries} keys for {} motes: each mote takes a line of                      its own (identity:hexkey); add lines or lower --motes",
                    args.motes
                ));
            }
        }
        let limit = crate::bench::procfs::open_file_limit().unwrap_or(1024);
        let default_sockets = limit.saturating_sub(RESERVED_FDS).max(16);
        let max_sockets = args.max_sockets.unwrap_or(default_sockets);
        if max_sockets == 0 {
            return Err("--max-sockets must be at least 1".to_owned());
        }
        if max_sockets > default_sockets {
            return Err(format!(
                "--max-sockets {max_sockets} is above the open-file limit ({limit}) minus \
                 {RESERVED_FDS}; raise `ulimit -n` or lower it"
            ));
        }
        let plan = Plan {
            gateway,
            broker,
            motes: args.motes,
            direction: args.direction,
            qos: args.qos,
            topic,
            rate: args.rate,
            count: args.count,
            duration: args.duration,
            connect_rate: args.connect_rate,
            connect_timeout: args.connect_timeout,
            barrier: !args.no_barrier,
            payload_size: args.payload_size,
            broker_qos,
            retry: args.retry,
            retries: args.retries,
            keep_alive: args.keep_alive,
            drain: args.drain,
            hold: args.hold,
            disconnect: !args.no_disconnect,
            gateway_pid: args.gateway_pid,
            broker_pid: args.broker_pid,
            baseline: args.baseline,
            threads: args.threads,
            max_sockets: usize::try_from(max_sockets).unwrap_or(usize::MAX),
            json: args.json,
            output: args.output,
            quiet: args.quiet,
            label: args.label,
            dtls,
        };
        if plan.waves() {
            if plan.dtls.is_some() {
                return Err(format!(
                    "--dtls keeps each mote's DTLS connection on its socket: at most {} motes \
                     with the current open-file limit (raise `ulimit -n`, e.g. `ulimit -n {}`)",
                    plan.max_sockets,
                    u64::from(plan.motes) + RESERVED_FDS + 64
                ));
            }
            if plan.baseline {
                return Err(format!(
                    "--baseline keeps one TCP connection per client open: at most {} \
                     clients with the current open-file limit",
                    plan.max_sockets
                ));
            }
            if plan.direction == Direction::Down {
                return Err(format!(
                    "--direction down needs every mote's socket open: at most {} motes with \
                     the current open-file limit (raise `ulimit -n`)",
                    plan.max_sockets
                ));
            }
        }
        let barrier = plan.barrier && !plan.waves();
        Ok(Plan { barrier, ..plan })
    }
}

/// A literal loopback address (or `localhost:PORT`). Names are not resolved: the tool only
/// ever sends to this machine.
fn loopback(text: &str, option: &str) -> Result<SocketAddr, String> {
    let addr = match text.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .map_err(|_| format!("{option} {text}: bad port"))?,
        None => text.parse::<SocketAddr>().map_err(|_| {
            format!(
                "{option} {text}: expected a loopback address as HOST:PORT, e.g. 127.0.0.1:1883"
            )
        })?,
    };
    let is_loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !is_loopback || addr.port() == 0 {
        return Err(format!(
            "{option} {text}: the bench only runs against this machine: use a loopback \
             address (127.0.0.1) and a non-zero port"
        ));
    }
    Ok(addr)
}

/// The topic options, with the direction's default.
fn topic_plan(args: &BenchArgs) -> Result<TopicPlan, String> {
    if let Some(p) = &args.predefined {
        let Some(name) = p.name.clone().filter(|n| !n.is_empty()) else {
            return Err(format!(
                "--predefined {}: give the name the gateway maps it to, e.g. --predefined {}=bench/p, \
                 so the broker side can use it",
                p.id, p.id
            ));
        };
        return Ok(TopicPlan::Predefined { id: p.id, name });
    }
    if let Some(short) = args.short {
        return Ok(TopicPlan::Short(short));
    }
    let template = args.topic.clone().unwrap_or_else(|| match args.direction {
        Direction::Up => "bench/up/{mote}".to_owned(),
        Direction::Down => "bench/down".to_owned(),
    });
    if template.is_empty() || template.contains(['+', '#']) {
        return Err(format!(
            "--topic '{template}': a topic name, without the wildcards + and #"
        ));
    }
    if template.contains("{mote}") {
        if args.direction == Direction::Down {
            return Err(format!(
                "--topic '{template}': with --direction down every mote subscribes to the same \
                 topic (fan-out); drop {{mote}}"
            ));
        }
        if template
            .split('/')
            .any(|level| level.contains("{mote}") && level != "{mote}")
        {
            return Err(format!(
                "--topic '{template}': {{mote}} must be a whole topic level (a/{{mote}}/b), so \
                 that the subscriber can use + in its place"
            ));
        }
    }
    Ok(TopicPlan::Registered { template })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(loopback("127.0.0.1:1883", "x").is_ok());
        assert!(loopback("localhost:1883", "x").is_ok());
        assert!(loopback("[::1]:1883", "x").is_ok());
        assert!(loopback("10.0.0.1:1883", "x").is_err());
        assert!(loopback("127.0.0.1:0", "x").is_err());
        assert!(loopback("example.com:1883", "x").is_err());
    }

    #[test]
    fn topics_and_filters() {
        let t = TopicPlan::Registered {
            template: "bench/up/{mote}".into(),
        };
        assert_eq!(t.name_for(7), "bench/up/7");
        assert_eq!(t.filter(), "bench/up/+");
        assert_eq!(TopicPlan::Short(*b"bn").filter(), "bn");
    }
}
