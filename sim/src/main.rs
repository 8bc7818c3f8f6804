//! `sim`: runs the deterministic simulation of the gateway core for one seed or many.
//!
//! ```sh
//! cargo run -p sim --release -- --seed 42 --motes 50 --minutes 1440
//! cargo run -p sim --release -- --seeds 200 --motes 20 --minutes 360   # random seeds
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// Deterministic simulation of the MQTT-SN gateway core: lossy radios, broker flaps,
/// failing disks and crashes, with an oracle checking the delivery guarantees.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct Args {
    /// Run this seed (replays a failure exactly).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many seeds (random ones, printed; or from --seed upwards).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Simulated motes.
    #[arg(long, default_value_t = 20)]
    motes: usize,
    /// Simulated minutes of faults per seed (an hour of calm follows).
    #[arg(long, default_value_t = 360)]
    minutes: u64,
    /// Stop after this many wall-clock seconds (the seeds done so far are reported).
    #[arg(long)]
    wall_seconds: Option<u64>,
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    sim::rng::Rng::new(
        u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(std::process::id()),
    )
    .next_u64()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.motes == 0 || args.motes > 16_000_000 {
        eprintln!(
            "sim: --motes must be between 1 and 16000000 (each mote gets a 10.x.y.z address)"
        );
        return ExitCode::from(2);
    }
    let duration = Duration::from_secs(args.minutes * 60);
    let first = args.seed.unwrap_or_else(random_seed);
    let started = Instant::now();
    let (mut ok, mut mote_hours, mut failed) = (0u64, 0.0f64, Vec::new());
    for n in 0..args.seeds {
        if args
            .wall_seconds
            .is_some_and(|w| started.elapsed() > Duration::from_secs(w))
        {
            break;
        }
        let seed = if args.seed.is_some() {
            first.wrapping_add(n)
        } else if n == 0 {
            first
        } else {
            random_seed()
        };
        let t = Instant::now();
        let cfg = sim::SimConfig::from_seed(seed, args.motes, duration);
        let single = args.seeds == 1;
        let result = sim::runner::run(cfg, |world| {
            // One seed: a line per simulated hour; many: a line per seed is enough.
            if single {
                let s = world.summary();
                eprintln!(
                    "  seed {seed}: {:.0} h simulated, {} events",
                    s.simulated.as_secs_f64() / 3600.0,
                    s.events
                );
            }
        });
        match result {
            Ok(summary) => {
                ok += 1;
                mote_hours += summary.mote_hours();
                println!(
                    "{} [{:.1} s wall]",
                    summary.line(),
                    t.elapsed().as_secs_f64()
                );
            }
            Err(failure) => {
                println!("{failure}");
                failed.push(failure);
            }
        }
    }
    println!(
        "{ok} seeds clean, {} failed, {mote_hours:.0} simulated mote-hours in {:.0} s wall",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for failure in &failed {
        println!(
            "FAILED seed {}: replay with: {}",
            failure.seed, failure.replay
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
