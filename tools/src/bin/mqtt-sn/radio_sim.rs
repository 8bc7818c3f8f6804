//! `mqtt-sn radio-sim`: a simulated USB radio dongle on a pty, whose motes are MQTT-SN
//! clients on UDP, so the gateway's serial link can be tried without hardware. The library
//! side is `mqtt_sn_tools::radio_sim`; this is its command line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mqtt_sn_tools::radio_sim::{
    parse_framing as framing_by_name, RadioSim, RadioSimConfig, RadioSimEvent, SerialFraming,
    SimulatedRadio as _,
};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long the dongle stays out on SIGUSR1.
const REPLUG_DOWNTIME: Duration = Duration::from_secs(1);

/// `mqtt-sn radio-sim`.
#[derive(Debug, Args)]
pub(crate) struct RadioSimArgs {
    /// The radio to play, as the gateway's `framing`: xbee (API mode 2), xbee-api1, lora
    /// (COBS + CRC-16, also called cobs), kiss or raw.
    #[arg(long, value_name = "FRAMING", value_parser = parse_framing)]
    pub(crate) framing: SerialFraming,

    /// Keep a symlink here to the current pty (e.g. /tmp/radio0) and give the gateway this
    /// path: it stays the same when the simulated dongle is replugged. Removed on exit.
    #[arg(long, value_name = "PATH")]
    pub(crate) link: Option<PathBuf>,

    /// Where the motes send MQTT-SN; every source address becomes one mote. Port 0 picks a
    /// free port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub(crate) udp: SocketAddr,

    /// The framing's size limit, as the gateway's `max_frame` counts it [default: the
    /// gateway's default: xbee 98, lora 240, kiss 254, raw 1024].
    #[arg(long, value_name = "N")]
    pub(crate) max_frame: Option<usize>,

    /// The most motes at once; when full, the mote heard from least recently is forgotten
    /// [default: 1024; kiss and raw 1].
    #[arg(long, value_name = "N")]
    pub(crate) max_motes: Option<usize>,
}

/// Parses `--framing`.
fn parse_framing(s: &str) -> Result<SerialFraming, String> {
    framing_by_name(s).map_err(|error| format!("{error}"))
}

/// Runs `mqtt-sn radio-sim` until Ctrl-C or SIGTERM; SIGUSR1 replugs the simulated dongle
/// (out for a second, then back on a new pty). Exit codes: 0 after a signal, 1 when the
/// simulator could not start.
pub(crate) fn main(args: RadioSimArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mqtt-sn radio-sim: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mqtt-sn radio-sim: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RadioSimArgs) -> Result<(), String> {
    let mut config = RadioSimConfig::new(args.framing).with_udp(args.udp);
    if let Some(max_frame) = args.max_frame {
        config = config.with_max_frame(max_frame);
    }
    if let Some(max_motes) = args.max_motes {
        config = config.with_max_motes(max_motes);
    }
    if let Some(link) = args.link {
        config = config.with_link(link);
    }
    let mut sim = RadioSim::start(config)
        .await
        .map_err(|error| error.to_string())?;
    let link = sim
        .link()
        .map(|link| format!(" (link {})", link.display()))
        .unwrap_or_default();
    say(&format!(
        "serial device {}{link}, framing {}, max_frame {}",
        sim.device().display(),
        sim.framing().description(),
        sim.max_frame()
    ));
    say(&format!("motes send MQTT-SN to {}", sim.udp_addr()));
    let stop = stop_signal();
    tokio::pin!(stop);
    // Without SIGUSR1 (cannot happen on Linux) the simulator runs on, without replugs.
    let mut replug = signal(SignalKind::user_defined1()).ok();
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = next_signal(&mut replug) => {
                if let Err(error) = sim.replug(REPLUG_DOWNTIME).await {
                    say(&format!("replug failed: {error}"));
                }
            }
            event = sim.next_event() => match event {
                Some(event) => report(&event),
                None => break,
            },
        }
    }
    let stats = sim.stats();
    sim.shutdown().await;
    say(&format!(
        "stopped: {} datagram(s) to the gateway, {} from it, {} dropped",
        stats.frames_to_gateway, stats.frames_from_gateway, stats.dropped
    ));
    Ok(())
}

/// Prints one event as one line.
fn report(event: &RadioSimEvent) {
    match event {
        RadioSimEvent::MoteJoined(mote) => say(&format!(
            "new mote {} is radio address {}",
            mote.udp, mote.address
        )),
        RadioSimEvent::MoteForgotten(mote) => say(&format!(
            "mote {} forgotten (table full); radio address {} goes to the next new mote",
            mote.udp, mote.address
        )),
        RadioSimEvent::Unplugged { device } => {
            say(&format!("dongle unplugged: {}", device.display()));
        }
        RadioSimEvent::Plugged { device } => {
            say(&format!("dongle plugged in: {}", device.display()));
        }
        // Events added later are shown in the log only.
        _ => {}
    }
}

/// One line on stdout, flushed, so a script or test reading it sees each at once. A closed
/// stdout does not stop the simulator.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "radio-sim: {line}");
    let _ = out.flush();
}

/// Completes at the next delivery of `signal`, never if there is none.
async fn next_signal(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. A signal that cannot be listened for is left
/// out rather than taken as received.
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
