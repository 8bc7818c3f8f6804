//! What a run reports: the progress line once a second on stderr, and at the end a summary for
//! people and a JSON object for scripts (stdout with --json, and/or a file with --output).

use crate::output::json_string;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use sn_codec::QoS;

use super::broker::{PublisherResult, SubscriberResult};
use super::options::Direction;
use super::procfs::{MachineSample, ProcSample, UdpCounters, UdpDrops};
use super::stats::{Histogram, Summary};
use super::{Ctx, MoteOutcome, Phase};
use crate::describe::qos_number;

/// Readings of one process at the phase boundaries.
#[derive(Debug, Default)]
struct ProcTrack {
    pid: Option<u32>,
    load_start: Option<ProcSample>,
    load_end: Option<ProcSample>,
    held: Option<ProcSample>,
    error: Option<String>,
}

impl ProcTrack {
    fn new(pid: Option<u32>) -> ProcTrack {
        let mut track = ProcTrack {
            pid,
            ..ProcTrack::default()
        };
        if let Some(pid) = pid {
            if let Err(e) = ProcSample::read(pid) {
                let message = format!("cannot read /proc/{pid}: {e}");
                eprintln!("mqtt-sn bench: warning: {message}");
                track.error = Some(message);
            }
        }
        track
    }

    fn read(&self) -> Option<ProcSample> {
        ProcSample::read(self.pid?).ok()
    }
}

/// /proc readings of the gateway, the broker and the tool itself.
#[derive(Debug)]
pub(crate) struct Samples {
    gateway: ProcTrack,
    broker: ProcTrack,
    tool: ProcTrack,
    machine: (Option<MachineSample>, Option<MachineSample>),
}

impl Samples {
    /// Checks that the given pids can be read (a warning otherwise; the run goes on).
    pub(crate) fn start(ctx: &Ctx) -> Samples {
        Samples {
            gateway: ProcTrack::new(ctx.plan.gateway_pid),
            broker: ProcTrack::new(ctx.plan.broker_pid),
            tool: ProcTrack::new(Some(std::process::id())),
            machine: (None, None),
        }
    }

    fn each(&mut self, f: impl Fn(&mut ProcTrack)) {
        for track in [&mut self.gateway, &mut self.broker, &mut self.tool] {
            f(track);
        }
    }

    /// At the start of the load phase.
    pub(crate) fn load_started(&mut self, _ctx: &Ctx) {
        self.each(|t| t.load_start = t.read());
        self.machine.0 = MachineSample::read();
    }

    /// At the end of the load phase.
    pub(crate) fn load_ended(&mut self, _ctx: &Ctx) {
        self.each(|t| t.load_end = t.read());
        self.machine.1 = MachineSample::read();
    }

    /// After the hold, with every session still open.
    pub(crate) fn held(&mut self, _ctx: &Ctx) {
        self.each(|t| t.held = t.read());
    }
}

/// Samples memory once a second (for the maxima) and prints the progress line, until the run
/// is done.
pub(crate) async fn sample_loop(ctx: Arc<Ctx>) {
    let live = &ctx.live;
    let mut last_sent = 0;
    let mut last_delivered = 0;
    let mut last_gateway: Option<ProcSample> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let done = ctx.control.reached(Phase::Done);
    tokio::pin!(done);
    loop {
        tokio::select! {
            () = &mut done => return,
            _ = ticker.tick() => {}
        }
        let gateway = ctx
            .plan
            .gateway_pid
            .and_then(|pid| ProcSample::read(pid).ok());
        let broker = ctx
            .plan
            .broker_pid
            .and_then(|pid| ProcSample::read(pid).ok());
        if let Some(g) = gateway {
            live.gateway_rss_max_kib.fetch_max(g.rss_kib, Relaxed);
        }
        if let Some(b) = broker {
            live.broker_rss_max_kib.fetch_max(b.rss_kib, Relaxed);
        }
        if ctx.plan.quiet {
            continue;
        }
        let sent = live.sent.load(Relaxed);
        let delivered = live.delivered.load(Relaxed);
        let mut line = format!(
            "[{:6.1}s] {:<7} ready {}/{}",
            ctx.clock.now_ns() as f64 / 1e9,
            ctx.control.phase().name(),
            live.ready.load(Relaxed),
            ctx.plan.motes
        );
        let failed = live.failed.load(Relaxed);
        if failed > 0 {
            let _ = write!(line, " ({failed} failed)");
        }
        match ctx.plan.direction {
            Direction::Up => {
                let _ = write!(
                    line,
                    "  sent {sent} ({}/s)  acked {}",
                    si(sent.saturating_sub(last_sent) as f64),
                    live.acked.load(Relaxed)
                );
            }
            Direction::Down => {
                let _ = write!(line, "  published {}", live.published.load(Relaxed));
            }
        }
        let _ = write!(
            line,
            "  delivered {delivered} ({}/s)",
            si(delivered.saturating_sub(last_delivered) as f64)
        );
        if let Some(g) = gateway {
            let cpu = last_gateway.map_or(0.0, |l| g.cpu_percent_since(&l));
            let _ = write!(line, "  gateway cpu {cpu:.0}% rss {:.1} MB", mb(g.rss_kib));
        }
        last_gateway = gateway;
        last_sent = sent;
        last_delivered = delivered;
        eprintln!("{line}");
    }
}

/// 12345.6 → "12.3k".
fn si(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// When the phases began and ended, ns on the run clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    /// Connect phase start.
    pub(crate) connect_start: u64,
    /// Load phase start.
    pub(crate) load_start: u64,
    /// Load phase end.
    pub(crate) load_end: u64,
    /// Drain end.
    pub(crate) drain_end: u64,
}

/// A tiny JSON object writer: keys in insertion order, numbers as given, non-finite as null.
#[derive(Debug)]
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, key: &str) -> &mut Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_string(key));
        self.0.push(':');
        self
    }

    fn u(&mut self, key: &str, value: u64) -> &mut Self {
        let _ = write!(self.key(key).0, "{value}");
        self
    }

    fn i(&mut self, key: &str, value: i64) -> &mut Self {
        let _ = write!(self.key(key).0, "{value}");
        self
    }

    fn f(&mut self, key: &str, value: f64) -> &mut Self {
        if value.is_finite() {
            let _ = write!(self.key(key).0, "{}", (value * 1000.0).round() / 1000.0);
        } else {
            self.key(key).0.push_str("null");
        }
        self
    }

    fn s(&mut self, key: &str, value: &str) -> &mut Self {
        let quoted = json_string(value);
        self.key(key).0.push_str(&quoted);
        self
    }

    fn b(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key)
            .0
            .push_str(if value { "true" } else { "false" });
        self
    }

    fn opt_u(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u(key, v),
            None => {
                self.key(key).0.push_str("null");
                self
            }
        }
    }

    fn opt_f(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        self.f(key, value.unwrap_or(f64::NAN))
    }

    fn opt_s(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.s(key, v),
            None => {
                self.key(key).0.push_str("null");
                self
            }
        }
    }

    fn raw(&mut self, key: &str, json: String) -> &mut Self {
        self.key(key).0.push_str(&json);
        self
    }

    fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.0);
        out.push('}');
        out
    }
}

fn summary_json(summary: Option<Summary>) -> String {
    match summary {
        None => "null".to_owned(),
        Some(s) => Obj::new()
            .u("count", s.count)
            .f("min", s.min_ms)
            .f("mean", s.mean_ms)
            .f("p50", s.p50_ms)
            .f("p90", s.p90_ms)
            .f("p99", s.p99_ms)
            .f("p999", s.p999_ms)
            .f("max", s.max_ms)
            .finish(),
    }
}

fn summary_text(summary: Option<Summary>) -> String {
    match summary {
        None => "no samples".to_owned(),
        Some(s) => format!(
            "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (mean {:.3}, n={})",
            s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms, s.count
        ),
    }
}

/// A process's figures for the report.
fn proc_json(track: &ProcTrack, rss_max_kib: Option<u64>) -> (String, Option<f64>, Option<u64>) {
    let cpu = match (&track.load_start, &track.load_end) {
        (Some(a), Some(b)) => Some(b.cpu_percent_since(a)),
        _ => None,
    };
    let rss = track.held.map(|s| s.rss_kib);
    let json = Obj::new()
        .opt_u("pid", track.pid.map(u64::from))
        .opt_f("cpu_percent", cpu)
        .opt_f("rss_mb", rss.map(mb))
        .opt_f("rss_max_mb", rss_max_kib.filter(|&k| k > 0).or(rss).map(mb))
        .opt_f("hwm_mb", track.held.map(|s| mb(s.hwm_kib)))
        .opt_s("error", track.error.as_deref())
        .finish();
    (json, cpu, rss)
}

/// The finished report.
#[derive(Debug)]
pub(crate) struct Report {
    json: String,
    summary: String,
    nothing_connected: bool,
    gateway: String,
    to_stdout: bool,
    output: Option<PathBuf>,
    quiet: bool,
}

impl Report {
    /// Whether no mote (or client) got connected, which means the run measured nothing.
    pub(crate) fn nothing_connected(&self) -> bool {
        self.nothing_connected
    }

    /// The gateway address, for messages.
    pub(crate) fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Prints the summary and the JSON where the options say.
    pub(crate) fn emit(&self) -> std::io::Result<()> {
        if let Some(path) = &self.output {
            std::fs::write(path, format!("{}\n", self.json))?;
        }
        if self.to_stdout {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", self.json)?;
            out.flush()?;
            if !self.quiet {
                eprint!("{}", self.summary);
            }
        } else {
            print!("{}", self.summary);
        }
        Ok(())
    }

    /// Computes every figure from what the tasks returned.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        ctx: &Ctx,
        time: Timeline,
        outcomes: Vec<MoteOutcome>,
        subscriber: Option<SubscriberResult>,
        publisher: Option<PublisherResult>,
        samples: Samples,
        udp: (UdpDrops, UdpDrops, UdpCounters),
        swept: usize,
    ) -> Report {
        let plan = &ctx.plan;
        let secs = |ns: u64| ns as f64 / 1e9;

        // Connect.
        let mut connect_latency = Histogram::default();
        let mut first_connect = None::<u64>;
        let mut last_connack = None::<u64>;
        let (mut connected, mut ready, mut refused, mut attempts) = (0u64, 0u64, 0u64, 0u64);
        for o in &outcomes {
            if let (Some(start), Some(done)) = (o.connect_started_ns, o.connected_ns) {
                connected += 1;
                connect_latency.record(done.saturating_sub(start));
                first_connect = Some(first_connect.map_or(start, |f| f.min(start)));
                last_connack = Some(last_connack.map_or(done, |l| l.max(done)));
            }
            ready += u64::from(o.setup_done);
            refused += u64::from(o.refused);
            attempts += u64::from(o.connect_attempts);
        }
        let connect_span = match (first_connect, last_connack) {
            (Some(f), Some(l)) => Some(secs(l.saturating_sub(f))),
            _ => None,
        };
        let connect_rate = connect_span
            .filter(|&s| s > 0.0)
            .map(|s| connected as f64 / s);

        // DTLS handshakes: the rate is completed handshakes over the span from the first
        // ClientHello to the last completion (all motes at once without --connect-rate).
        let mut handshake_latency = Histogram::default();
        let (mut handshakes, mut handshake_first, mut handshake_last) =
            (0u64, None::<u64>, None::<u64>);
        for o in &outcomes {
            if let (Some(start), Some(done)) = (o.handshake_started_ns, o.handshake_done_ns) {
                handshakes += 1;
                handshake_latency.record(done.saturating_sub(start));
                handshake_first = Some(handshake_first.map_or(start, |f| f.min(start)));
                handshake_last = Some(handshake_last.map_or(done, |l| l.max(done)));
            }
        }
        let handshake_started = outcomes
            .iter()
            .filter(|o| o.handshake_started_ns.is_some())
            .count() as u64;
        let handshake_span = match (handshake_first, handshake_last) {
            (Some(f), Some(l)) => Some(secs(l.saturating_sub(f))),
            _ => None,
        };
        let handshake_rate = handshake_span
            .filter(|&s| s > 0.0)
            .map(|s| handshakes as f64 / s);

        // Messages.
        let load_s = secs(time.load_end.saturating_sub(time.load_start));
        let last_delivery = ctx.live.last_delivery_ns.load(Relaxed);
        let delivery_s = secs(last_delivery.saturating_sub(time.load_start));
        let sent: u64 = outcomes.iter().map(|o| u64::from(o.sent)).sum();
        let acknowledged: u64 = outcomes.iter().map(|o| o.acked.len()).sum();
        let rejected: u64 = outcomes.iter().map(|o| o.rejected).sum();
        let unacked: u64 = outcomes.iter().map(|o| o.unacked).sum();
        let retransmits: u64 = outcomes.iter().map(|o| o.retransmits).sum();
        let malformed: u64 = outcomes.iter().map(|o| o.malformed).sum();
        let send_failures: u64 = outcomes.iter().map(|o| o.send_failures).sum();
        let mut messages = Obj::new();
        let latency;
        let delivered;
        let lost;
        let mut text = String::new();
        match plan.direction {
            Direction::Up => {
                let sub = subscriber.unwrap_or_default();
                let mut lost_total = 0;
                let mut undelivered = 0;
                let mut motes_with_loss = 0;
                let mut delivered_total = 0;
                for o in &outcomes {
                    let Some(seen) = sub.per_mote.get(o.id as usize) else {
                        continue;
                    };
                    delivered_total += seen.len();
                    let missing = seen.missing_below(o.sent);
                    let lost_here = if plan.acked() {
                        seen.missing_of(&o.acked)
                    } else {
                        missing
                    };
                    undelivered += missing;
                    lost_total += lost_here;
                    motes_with_loss += u64::from(lost_here > 0);
                }
                delivered = delivered_total;
                lost = lost_total;
                latency = sub.latency.summary();
                messages
                    .u("sent", sent)
                    .u("acknowledged", acknowledged)
                    .u("rejected", rejected)
                    .u("unacknowledged", unacked)
                    .u("retransmissions", retransmits)
                    .u("delivered", delivered)
                    .u("duplicates", sub.duplicates)
                    .u("lost", lost)
                    .u("undelivered", undelivered)
                    .u("motes_with_loss", motes_with_loss)
                    .u("foreign", sub.foreign)
                    .u("malformed", malformed)
                    .u("send_failures", send_failures)
                    .f("load_s", load_s)
                    .f("sent_per_s", per_second(sent, load_s))
                    .f("acknowledged_per_s", per_second(acknowledged, load_s))
                    .f("delivered_per_s", per_second(delivered, delivery_s))
                    .u("subscriber_reconnects", sub.reconnects)
                    .opt_s("subscriber_error", sub.error.as_deref());
                let _ = writeln!(
                    text,
                    "messages  sent {sent}  acknowledged {acknowledged}  delivered {delivered}  \
                     lost {lost}  undelivered {undelivered}  duplicates {}  rejected {rejected}  \
                     unacknowledged {unacked}  retransmissions {retransmits}",
                    sub.duplicates
                );
            }
            Direction::Down => {
                let publisher = publisher.unwrap_or_default();
                let published = publisher.published;
                let subscribed = ready;
                let mut lost_total = 0;
                let mut motes_with_loss = 0;
                let mut duplicates = 0;
                for o in outcomes.iter().filter(|o| o.setup_done) {
                    let missing = o
                        .received
                        .missing_below(published.min(u64::from(u32::MAX)) as u32);
                    lost_total += missing;
                    motes_with_loss += u64::from(missing > 0);
                    duplicates += o.duplicates;
                }
                delivered = outcomes.iter().map(|o| o.received.len()).sum();
                lost = lost_total;
                latency = ctx.downlink_latency.lock().ok().and_then(|h| h.summary());
                let expected = published * subscribed;
                messages
                    .u("published", published)
                    .u("broker_acknowledged", publisher.acked)
                    .u("subscribed_motes", subscribed)
                    .u("expected", expected)
                    .u("delivered", delivered)
                    .u("duplicates", duplicates)
                    .u("lost", lost)
                    .u("motes_with_loss", motes_with_loss)
                    .u("malformed", malformed)
                    .f("load_s", load_s)
                    .f("published_per_s", per_second(published, load_s))
                    .f("delivered_per_s", per_second(delivered, delivery_s))
                    .opt_s("publisher_error", publisher.error.as_deref());
                let _ = writeln!(
                    text,
                    "messages  published {published} to {subscribed} motes  expected {expected}  \
                     delivered {delivered}  lost {lost}  duplicates {duplicates}"
                );
            }
        }
        let _ = writeln!(
            text,
            "rate      {} msg/s delivered over {:.2} s (load phase {:.2} s)",
            si(per_second(delivered, delivery_s)),
            delivery_s,
            load_s
        );
        let _ = writeln!(text, "latency   {}", summary_text(latency));

        // End of the sessions.
        let checked = outcomes.iter().filter(|o| o.alive_at_end.is_some()).count() as u64;
        let alive = outcomes
            .iter()
            .filter(|o| o.alive_at_end == Some(true))
            .count() as u64;
        let disconnected = outcomes.iter().filter(|o| o.disconnected).count() as u64;
        let dropped = outcomes.iter().filter(|o| o.dropped_by_gateway).count() as u64;
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &outcomes {
            if let Some(e) = &o.error {
                *errors.entry(e.as_str()).or_default() += 1;
            }
        }
        let mut errors_json = Obj::new();
        for (error, n) in errors.iter().take(10) {
            errors_json.u(error, *n);
        }

        // Processes and sockets.
        let live = &ctx.live;
        let (gateway_json, gw_cpu, gw_rss) = proc_json(
            &samples.gateway,
            Some(live.gateway_rss_max_kib.load(Relaxed)),
        );
        let (broker_json, br_cpu, _) =
            proc_json(&samples.broker, Some(live.broker_rss_max_kib.load(Relaxed)));
        let (tool_json, tool_cpu, _) = proc_json(&samples.tool, None);
        let machine_cpu = match samples.machine {
            (Some(a), Some(b)) => Some(b.busy_percent_since(&a)),
            _ => None,
        };
        // What else ran on the machine during the load (other jobs skew the figures).
        let other_cpu = machine_cpu.map(|m| {
            (m - gw_cpu.unwrap_or(0.0) - br_cpu.unwrap_or(0.0) - tool_cpu.unwrap_or(0.0)).max(0.0)
        });
        let machine_json = Obj::new()
            .opt_f("cpu_percent", machine_cpu)
            .opt_f("other_processes_cpu_percent", other_cpu)
            .u("cpus", samples.machine.1.map_or(0, |m| m.cpus))
            .finish();
        let (before, after, snmp) = udp;
        let gateway_drops = after.gateway.saturating_sub(before.gateway);
        let mote_drops = after.motes.saturating_sub(before.motes);
        // The gateway process's own sockets, found by pid: what it dropped during the run.
        let gateway_kernel_drops = match (before.gateway_process, after.gateway_process) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };

        let mode = if plan.baseline { "baseline" } else { "gateway" };
        let rate = if plan.rate == 0 {
            "closed loop".to_owned()
        } else {
            format!("{} msg/s", plan.rate)
        };
        let config = Obj::new()
            .s("mode", mode)
            .s(
                "direction",
                match plan.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                },
            )
            .u("motes", u64::from(plan.motes))
            .i("qos", i64::from(qos_number(plan.qos)))
            .i("broker_qos", i64::from(qos_number(plan.broker_qos)))
            .s("topic", &plan.topic.describe())
            .u("rate", plan.rate)
            .opt_u("count", plan.count)
            .f("duration_s", plan.duration.as_secs_f64())
            .u("connect_rate", plan.connect_rate)
            .u("payload_size", plan.payload_size as u64)
            .b("barrier", plan.barrier)
            .b("waves", plan.waves())
            .u("max_sockets", plan.max_sockets as u64)
            .u("threads", plan.threads as u64)
            .s("gateway", &plan.gateway.to_string())
            .s("broker", &plan.broker.to_string())
            .finish();
        let connect = Obj::new()
            .u("motes", u64::from(plan.motes))
            .u("started", outcomes.len() as u64)
            .u("connected", connected)
            .u("ready", ready)
            .u("failed", outcomes.len() as u64 - ready)
            .u("refused", refused)
            .u("attempts", attempts)
            .opt_f("duration_s", connect_span)
            .opt_f("rate_per_s", connect_rate)
            .raw("latency_ms", summary_json(connect_latency.summary()))
            .finish();
        let handshake = if plan.dtls.is_some() {
            Obj::new()
                .u("started", handshake_started)
                .u("completed", handshakes)
                .u("failed", handshake_started - handshakes)
                .opt_f("duration_s", handshake_span)
                .opt_f("rate_per_s", handshake_rate)
                .raw("latency_ms", summary_json(handshake_latency.summary()))
                .finish()
        } else {
            "null".to_owned()
        };
        let end = Obj::new()
            .u("checked", checked)
            .u("alive", alive)
            .u("disconnected", disconnected)
            .u("dropped_by_gateway", dropped)
            .u("swept", swept as u64)
            .raw("errors", errors_json.finish())
            .finish();
        let udp_json = Obj::new()
            .u("gateway_socket_drops", gateway_drops)
            .opt_u("gateway_kernel_drops", gateway_kernel_drops)
            .u("gateway_socket_queue_bytes", after.gateway_queue_bytes)
            .u("mote_socket_drops", mote_drops)
            .u("host_rcvbuf_errors", snmp.rcvbuf_errors)
            .u("host_sndbuf_errors", snmp.sndbuf_errors)
            .u("host_no_ports", snmp.no_ports)
            .finish();
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let json = Obj::new()
            .s("tool", "mqtt-sn bench")
            .s("version", env!("CARGO_PKG_VERSION"))
            .opt_s("label", plan.label.as_deref())
            .u("unix_time", unix_time)
            .s("run_id", &format!("{:08x}", ctx.run_id))
            .raw("config", config)
            .raw("dtls_handshake", handshake)
            .raw("connect", connect)
            .raw("messages", messages.finish())
            .raw("latency_ms", summary_json(latency))
            .raw("end", end)
            .raw("gateway", gateway_json)
            .raw("broker", broker_json)
            .raw("tool_process", tool_json)
            .raw("udp", udp_json)
            .raw("machine", machine_json)
            .f(
                "connect_phase_s",
                secs(time.load_start.saturating_sub(time.connect_start)),
            )
            .f(
                "drain_s",
                secs(time.drain_end.saturating_sub(time.load_end)),
            )
            .finish();

        let topic = plan.topic.describe();
        let mut summary = format!(
            "mqtt-sn bench ({mode}): {} motes, {}, QoS {}, {topic}, {rate}, {}{}\n",
            plan.motes,
            match plan.direction {
                Direction::Up => "uplink",
                Direction::Down => "downlink fan-out",
            },
            qos_number(plan.qos),
            plan.count
                .map_or(String::new(), |c| format!("{c} messages, ")),
            format_args!("at most {:.0} s", plan.duration.as_secs_f64()),
        );
        if plan.dtls.is_some() {
            let _ = writeln!(
                summary,
                "dtls      {handshakes}/{handshake_started} handshakes{}  latency {}",
                match (handshake_span, handshake_rate) {
                    (Some(span), Some(rate)) => format!(" in {span:.3} s ({rate:.0}/s)"),
                    _ => String::new(),
                },
                summary_text(handshake_latency.summary())
            );
        }
        let _ = writeln!(
            summary,
            "connect   {connected}/{} connected{}  latency {}",
            plan.motes,
            match (connect_span, connect_rate) {
                (Some(span), Some(rate)) => format!(" in {span:.3} s ({rate:.0}/s)"),
                _ => String::new(),
            },
            summary_text(connect_latency.summary())
        );
        summary.push_str(&text);
        if plan.gateway_pid.is_some() || !plan.baseline {
            let _ = writeln!(
                summary,
                "gateway   cpu {}  rss {}  udp drops {gateway_drops} (motes' sockets {mote_drops})  \
                 gateway_kernel_drops {}",
                gw_cpu.map_or("-".to_owned(), |c| format!("{c:.0}%")),
                gw_rss.map_or("-".to_owned(), |r| format!("{:.1} MB", mb(r))),
                gateway_kernel_drops.map_or("-".to_owned(), |d| d.to_string()),
            );
        }
        if let Some(cpu) = br_cpu {
            let _ = writeln!(summary, "broker    cpu {cpu:.0}%");
        }
        if let Some(cpu) = tool_cpu {
            let _ = writeln!(summary, "tool      cpu {cpu:.0}%");
        }
        if let (Some(all), Some(other)) = (machine_cpu, other_cpu) {
            let _ = writeln!(
                summary,
                "machine   cpu {all:.0}% during the load, {other:.0}% of it other processes"
            );
        }
        let _ = writeln!(
            summary,
            "end       {alive}/{checked} sessions alive, {disconnected} disconnected{}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(
                    ", errors: {}",
                    errors
                        .iter()
                        .take(3)
                        .map(|(e, n)| format!("{n}× {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );

        Report {
            json,
            summary,
            nothing_connected: plan.qos != QoS::MinusOne && connected == 0,
            gateway: if plan.baseline {
                plan.broker.to_string()
            } else {
                plan.gateway.to_string()
            },
            to_stdout: plan.json,
            output: plan.output.clone(),
            quiet: plan.quiet,
        }
    }
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}
