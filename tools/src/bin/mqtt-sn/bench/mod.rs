//! `mqtt-sn bench`: a load generator for the gateway. It drives N simulated motes over UDP
//! from one process (each with its own loopback source address), counts on the broker side
//! what arrived, and reports throughput, end-to-end latency, losses by sequence number,
//! connect rate and latency, and the gateway's CPU and memory. See docs/benchmarks.md.
//!
//! A run has phases, driven from here: setup of the broker side, connect (at --connect-rate),
//! load (for --duration or --count), drain (late acks and deliveries), hold (sessions kept
//! while memory is sampled), finish (PINGREQ check and DISCONNECT). Every phase is bounded.

mod baseline;
mod broker;
mod mote;
mod options;
mod payload;
mod procfs;
mod report;
mod stats;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;

pub(crate) use options::BenchArgs;
use options::{Direction, Plan};
use payload::{Stamp, BROKER};
use report::{Report, Samples};
use stats::{Histogram, SeqSet};

/// How often the orchestrator re-checks the counters while waiting for a phase to end.
const POLL: Duration = Duration::from_millis(5);

/// Runs `mqtt-sn bench` on its own runtime and prints the report. Exit codes: 0 when the run
/// completed, 1 when it could not run (broker unreachable, no mote connected), 2 for bad
/// options.
pub(crate) fn main(args: BenchArgs) -> ExitCode {
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("mqtt-sn bench: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(plan.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mqtt-sn bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(plan));
    // Tasks still polling their sockets (a mote waiting on a dead gateway) end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(report) => match report.emit() {
            Ok(()) if report.nothing_connected() => {
                eprintln!(
                    "mqtt-sn bench: no mote connected; is the gateway running at {}?",
                    report.gateway()
                );
                ExitCode::FAILURE
            }
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mqtt-sn bench: cannot write the report: {e}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("mqtt-sn bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Nanoseconds since the tool started: the one clock for send stamps and receipts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// Now, in nanoseconds since the start.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` after the start, for tokio timers.
    pub(crate) fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(ns))
    }
}

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Motes connect and set up.
    Connect = 0,
    /// Messages flow.
    Load = 1,
    /// No new messages; outstanding ones may still complete.
    Drain = 2,
    /// Motes check and end their sessions.
    Finish = 3,
    /// Over.
    Done = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Connect,
            1 => Phase::Load,
            2 => Phase::Drain,
            3 => Phase::Finish,
            _ => Phase::Done,
        }
    }

    /// For the progress line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Load => "load",
            Phase::Drain => "drain",
            Phase::Finish => "finish",
            Phase::Done => "done",
        }
    }
}

/// The phase every task follows, and when phases began.
#[derive(Debug)]
pub(crate) struct Control {
    phase: AtomicU8,
    changed: Notify,
    connect_start_ns: AtomicU64,
    load_start_ns: AtomicU64,
}

impl Control {
    fn new() -> Control {
        Control {
            phase: AtomicU8::new(Phase::Connect as u8),
            changed: Notify::new(),
            connect_start_ns: AtomicU64::new(0),
            load_start_ns: AtomicU64::new(0),
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(SeqCst))
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, SeqCst);
        self.changed.notify_waiters();
    }

    /// Returns once the run is at `phase` or later.
    pub(crate) async fn reached(&self, phase: Phase) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.phase() >= phase {
                return;
            }
            notified.await;
        }
    }

    /// When the connect phase began, ns on the run clock.
    pub(crate) fn connect_start_ns(&self) -> u64 {
        self.connect_start_ns.load(SeqCst)
    }

    /// When the load phase began, ns on the run clock.
    pub(crate) fn load_start_ns(&self) -> u64 {
        self.load_start_ns.load(SeqCst)
    }
}

/// Counters every task bumps, read by the progress line and the phase logic.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Motes with a CONNACK.
    pub(crate) connected: AtomicU64,
    /// DTLS handshakes completed.
    pub(crate) handshakes: AtomicU64,
    /// Motes set up (connected, registered or subscribed).
    pub(crate) ready: AtomicU64,
    /// Motes that could not be set up.
    pub(crate) failed: AtomicU64,
    /// Motes whose load is over (or that failed).
    pub(crate) motes_done: AtomicU64,
    /// PUBLISHes sent by motes.
    pub(crate) sent: AtomicU64,
    /// Of those, acknowledged (QoS 1/2).
    pub(crate) acked: AtomicU64,
    /// Messages the gateway took: acknowledged (QoS 1/2) or sent (QoS 0/-1).
    pub(crate) accepted: AtomicU64,
    /// New messages at the receiving side.
    pub(crate) delivered: AtomicU64,
    /// Messages received again.
    pub(crate) duplicates: AtomicU64,
    /// When the last new message arrived, ns on the run clock.
    pub(crate) last_delivery_ns: AtomicU64,
    /// Downlink: messages published by the broker-side publisher.
    pub(crate) published: AtomicU64,
    /// Downlink: whether the publisher is done publishing.
    pub(crate) publishing_done: AtomicU64,
    /// Largest gateway RSS sampled, KiB.
    pub(crate) gateway_rss_max_kib: AtomicU64,
    /// Largest broker RSS sampled, KiB.
    pub(crate) broker_rss_max_kib: AtomicU64,
}

/// What every task of a run shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The checked options.
    pub(crate) plan: Plan,
    /// The run clock.
    pub(crate) clock: Clock,
    /// Phases.
    pub(crate) control: Control,
    /// Counters.
    pub(crate) live: Live,
    /// Identifies this run's messages.
    pub(crate) run_id: u32,
    /// The UDP port of every mote address.
    pub(crate) mote_port: u16,
    /// Downlink latency, broker publish → mote receipt, from every mote.
    pub(crate) downlink_latency: Mutex<Histogram>,
}

impl Ctx {
    /// Waits for mote `id`'s turn to connect: `id / --connect-rate` after the connect phase
    /// began (at once without a rate).
    pub(crate) async fn wait_connect_slot(&self, id: u32) {
        let Some(offset) = u64::from(id)
            .saturating_mul(1_000_000_000)
            .checked_div(self.plan.connect_rate)
        else {
            return;
        };
        let at = self.control.connect_start_ns().saturating_add(offset);
        tokio::time::sleep_until(self.clock.instant(at)).await;
    }
}

/// What one mote (or baseline client) did.
#[derive(Debug, Default)]
pub(crate) struct MoteOutcome {
    /// Its id.
    pub(crate) id: u32,
    /// DTLS handshake started (ClientHello), ns on the run clock.
    pub(crate) handshake_started_ns: Option<u64>,
    /// DTLS handshake completed, ns on the run clock.
    pub(crate) handshake_done_ns: Option<u64>,
    /// First CONNECT sent, ns on the run clock.
    pub(crate) connect_started_ns: Option<u64>,
    /// CONNACK (accepted) received.
    pub(crate) connected_ns: Option<u64>,
    /// CONNECTs sent.
    pub(crate) connect_attempts: u32,
    /// CONNACKs with a refusal.
    pub(crate) refused: u32,
    /// Connected and registered or subscribed.
    pub(crate) setup_done: bool,
    /// Its load is over and counted in `Live::motes_done`.
    pub(crate) load_done: bool,
    /// PUBLISHes sent (the next sequence number).
    pub(crate) sent: u32,
    /// Sequence numbers acknowledged (QoS 1/2).
    pub(crate) acked: SeqSet,
    /// PUBACKs with a refusal.
    pub(crate) rejected: u64,
    /// PUBLISHes given up after N_retry.
    pub(crate) unacked: u64,
    /// Requests sent again.
    pub(crate) retransmits: u64,
    /// Sends the kernel refused (full local buffer, port unreachable): datagrams that never
    /// left, though counted as sent.
    pub(crate) send_failures: u64,
    /// Downlink: sequence numbers received.
    pub(crate) received: SeqSet,
    /// Downlink: messages received again.
    pub(crate) duplicates: u64,
    /// Messages not from this run.
    pub(crate) foreign: u64,
    /// Datagrams that did not decode.
    pub(crate) malformed: u64,
    /// The gateway sent DISCONNECT.
    pub(crate) dropped_by_gateway: bool,
    /// Why it stopped early.
    pub(crate) error: Option<String>,
    /// Its socket was closed after the load (waves, or QoS -1); the sweep finishes it.
    pub(crate) released: bool,
    /// PINGRESP at the end (None: not checked).
    pub(crate) alive_at_end: Option<bool>,
    /// DISCONNECT answered at the end.
    pub(crate) disconnected: bool,
}

impl MoteOutcome {
    /// Makes sure a mote that ended early is counted as failed and done.
    pub(crate) fn settle(&mut self, ctx: &Ctx) {
        if !self.setup_done {
            ctx.live.failed.fetch_add(1, Relaxed);
        }
        if !self.load_done {
            self.load_done = true;
            ctx.live.motes_done.fetch_add(1, Relaxed);
        }
    }

    /// Counts a message from the broker-side publisher: new or duplicate, and its latency.
    pub(crate) fn record_downlink(&mut self, ctx: &Ctx, stamp: Option<Stamp>) {
        let Some(stamp) = stamp.filter(|s| s.run == ctx.run_id && s.mote == BROKER) else {
            self.foreign += 1;
            return;
        };
        match self.received.insert(stamp.seq) {
            Some(true) => {
                let now = ctx.clock.now_ns();
                let latency = now.saturating_sub(stamp.sent_ns);
                ctx.live.delivered.fetch_add(1, Relaxed);
                ctx.live.last_delivery_ns.fetch_max(now, Relaxed);
                if let Ok(mut h) = ctx.downlink_latency.lock() {
                    h.record(latency);
                }
            }
            Some(false) => {
                self.duplicates += 1;
                ctx.live.duplicates.fetch_add(1, Relaxed);
            }
            None => self.foreign += 1,
        }
    }
}

/// A run id that differs between runs: time and pid mixed.
fn run_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    (mixed ^ (mixed >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32
}

/// Spawns the motes (or baseline clients), at most `max_sockets` alive at once; stops
/// spawning once the load is over.
async fn spawn_all(ctx: Arc<Ctx>) -> Vec<JoinHandle<MoteOutcome>> {
    let permits = Arc::new(Semaphore::new(ctx.plan.max_sockets));
    let mut handles = Vec::with_capacity(ctx.plan.motes as usize);
    for id in 0..ctx.plan.motes {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if ctx.control.phase() >= Phase::Drain {
            break;
        }
        let task = if ctx.plan.baseline {
            tokio::spawn(baseline::run(ctx.clone(), id, permit))
        } else {
            tokio::spawn(mote::run(ctx.clone(), id, permit))
        };
        handles.push(task);
    }
    handles
}

/// Waits until `done()` holds or `deadline` (ns on the run clock) passes.
async fn wait_until(ctx: &Ctx, deadline_ns: u64, mut done: impl FnMut() -> bool) {
    while !done() && ctx.clock.now_ns() < deadline_ns {
        tokio::time::sleep(POLL).await;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The broker side of a run.
enum BrokerSide {
    Subscriber {
        task: JoinHandle<broker::SubscriberResult>,
        stop: oneshot::Sender<()>,
    },
    Publisher {
        task: JoinHandle<broker::PublisherResult>,
    },
}

async fn run(plan: Plan) -> Result<Report, String> {
    let mote_port = if plan.baseline {
        0
    } else {
        mote::pick_port().map_err(|e| format!("cannot bind a mote address (127.1.0.0): {e}"))?
    };
    let ctx = Arc::new(Ctx {
        plan,
        clock: Clock::new(),
        control: Control::new(),
        live: Live::default(),
        run_id: run_id(),
        mote_port,
        downlink_latency: Mutex::new(Histogram::default()),
    });
    let plan = &ctx.plan;
    let gateway_port = plan.gateway.port();
    let udp_before = procfs::udp_drops(gateway_port, mote_port, plan.gateway_pid);
    let snmp_before = procfs::UdpCounters::read();

    // The broker side first, so that nothing the motes send is missed.
    let (ready_tx, ready_rx) = oneshot::channel();
    let side = match plan.direction {
        Direction::Up => {
            let (stop, stop_rx) = oneshot::channel();
            let task = tokio::spawn(broker::subscriber(ctx.clone(), ready_tx, stop_rx));
            BrokerSide::Subscriber { task, stop }
        }
        Direction::Down => {
            let task = tokio::spawn(broker::publisher(ctx.clone(), ready_tx));
            BrokerSide::Publisher { task }
        }
    };
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("broker {}: {e}", plan.broker)),
        Err(_) => return Err(format!("broker {}: the client task ended", plan.broker)),
    }

    let mut samples = Samples::start(&ctx);
    let sampler = tokio::spawn(report::sample_loop(ctx.clone()));

    // Connect.
    let connect_start = ctx.clock.now_ns();
    ctx.control.connect_start_ns.store(connect_start, SeqCst);
    let spawner = tokio::spawn(spawn_all(ctx.clone()));
    let motes = u64::from(plan.motes);
    if plan.barrier {
        let live = &ctx.live;
        wait_until(&ctx, connect_start + nanos(plan.connect_timeout), || {
            live.ready.load(Relaxed) + live.failed.load(Relaxed) >= motes
        })
        .await;
    }

    // Load.
    let load_start = ctx.clock.now_ns();
    ctx.control.load_start_ns.store(load_start, SeqCst);
    samples.load_started(&ctx);
    ctx.control.set(Phase::Load);
    let load_deadline = load_start + nanos(plan.duration);
    {
        let live = &ctx.live;
        match plan.direction {
            Direction::Up => {
                wait_until(&ctx, load_deadline, || {
                    live.motes_done.load(Relaxed) >= motes
                })
                .await
            }
            Direction::Down => {
                wait_until(
                    &ctx,
                    load_deadline + nanos(Duration::from_millis(100)),
                    || live.publishing_done.load(Relaxed) > 0,
                )
                .await
            }
        }
    }
    let load_end = ctx.clock.now_ns();
    samples.load_ended(&ctx);
    ctx.control.set(Phase::Drain);

    // Drain: the motes finish their exchanges, the last messages arrive.
    {
        let live = &ctx.live;
        let drain_deadline = load_end + nanos(plan.drain);
        match plan.direction {
            Direction::Up => {
                wait_until(&ctx, drain_deadline, || {
                    live.motes_done.load(Relaxed) >= motes
                        && live.delivered.load(Relaxed) >= live.accepted.load(Relaxed)
                })
                .await
            }
            Direction::Down => {
                wait_until(&ctx, drain_deadline, || {
                    live.publishing_done.load(Relaxed) > 0
                        && live.delivered.load(Relaxed)
                            >= live.published.load(Relaxed) * live.ready.load(Relaxed)
                })
                .await
            }
        }
    }
    let drain_end = ctx.clock.now_ns();

    // Hold: every session still open while memory is sampled.
    if !plan.hold.is_zero() {
        tokio::time::sleep(plan.hold).await;
    }
    samples.held(&ctx);
    let udp_after = procfs::udp_drops(gateway_port, mote_port, plan.gateway_pid);
    let snmp = procfs::UdpCounters::read().since(&snmp_before);

    // Finish.
    ctx.control.set(Phase::Finish);
    let handles = spawner
        .await
        .map_err(|e| format!("the mote spawner failed: {e}"))?;
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => return Err(format!("a mote task failed: {e}")),
        }
    }
    let sweep = sweep_released(&ctx, &mut outcomes).await;
    let (subscriber, publisher) = match side {
        BrokerSide::Subscriber { task, stop } => {
            let _ = stop.send(());
            let result = task
                .await
                .map_err(|e| format!("the subscriber failed: {e}"))?;
            (Some(result), None)
        }
        BrokerSide::Publisher { task } => {
            let result = task
                .await
                .map_err(|e| format!("the publisher failed: {e}"))?;
            (None, Some(result))
        }
    };
    ctx.control.set(Phase::Done);
    let _ = sampler.await;
    Ok(Report::build(
        &ctx,
        report::Timeline {
            connect_start,
            load_start,
            load_end,
            drain_end,
        },
        outcomes,
        subscriber,
        publisher,
        samples,
        (udp_before, udp_after, snmp),
        sweep,
    ))
}

/// Rebinds the address of every mote that released its socket, checks its session with
/// PINGREQ and ends it with DISCONNECT; at most `max_sockets` at once.
async fn sweep_released(ctx: &Arc<Ctx>, outcomes: &mut [MoteOutcome]) -> usize {
    let permits = Arc::new(Semaphore::new(ctx.plan.max_sockets));
    let mut tasks = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if !outcome.released {
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let task = tokio::spawn(mote::sweep(ctx.clone(), outcome.id, permit));
        tasks.push((index, task));
    }
    let swept = tasks.len();
    for (index, task) in tasks {
        let result = task.await.unwrap_or_else(|e| Err(e.to_string()));
        if let Some(outcome) = outcomes.get_mut(index) {
            match result {
                Ok((alive, disconnected)) => {
                    outcome.alive_at_end = Some(alive);
                    outcome.disconnected = disconnected;
                }
                Err(e) => {
                    outcome.alive_at_end = Some(false);
                    outcome.error.get_or_insert(e);
                }
            }
        }
    }
    swept
}
