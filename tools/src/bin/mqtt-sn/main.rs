//! `mqtt-sn`: a command-line MQTT-SN v1.2 client over UDP, to try the gateway by hand and to
//! drive it from black-box tests. `mqtt-sn pub` publishes, `mqtt-sn sub` prints what arrives,
//! `mqtt-sn bench` load-tests a gateway with many simulated motes, `mqtt-sn radio-sim` plays a
//! USB radio dongle on a pty for the gateway's serial link. See docs/mqtt-sn-client.md,
//! docs/benchmarks.md and docs/radios/xbee.md.

mod bench;
mod cli;
mod common;
mod describe;
mod dtls;
mod error;
mod output;
mod publish;
mod radio_sim;
mod session;
mod subscribe;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// Logs go to stderr so that stdout carries only messages. RUST_LOG wins over `-v` when set.
fn init_logging(verbose: u8) {
    let from_flag = match verbose {
        0 => "warn",
        1 => "warn,mqtt_sn=debug",
        _ => "warn,mqtt_sn=trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(from_flag));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let command = match cli.command {
        // The bench runs on a runtime of its own (--threads).
        Command::Bench(args) => return bench::main(*args),
        // The simulator too: it runs until a signal, with its own exit codes.
        Command::RadioSim(args) => return radio_sim::main(args),
        other => other,
    };
    // One task at a time is all a single client needs.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-sn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Pub(args) => publish::run(args).await,
            Command::Sub(args) => subscribe::run(args).await,
            Command::Bench(_) | Command::RadioSim(_) => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqtt-sn: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
