//! Running seeds: one run with its panic caught (a panic in the core is a failure of that
//! seed, reported with the command that replays it), and the replay command itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::config::SimConfig;
use crate::world::{Summary, World};

/// How a run ended badly.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What broke (an oracle finding or a panic message).
    pub what: String,
    /// The one command that replays it.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} FAILED: {}\n  replay: {}",
            self.seed, self.what, self.replay
        )
    }
}

/// The command that replays a run of `motes` motes for `duration` from `seed`.
pub fn replay_command(seed: u64, motes: usize, duration: Duration) -> String {
    format!(
        "cargo run -p sim --release -- --seed {seed} --motes {motes} --minutes {}",
        duration.as_secs() / 60
    )
}

/// Runs one seed; `progress` is called about every simulated hour.
pub fn run(cfg: SimConfig, progress: impl FnMut(&World)) -> Result<Summary, Failure> {
    let (seed, motes, duration) = (cfg.seed, cfg.motes, cfg.duration);
    let replay = replay_command(seed, motes, duration);
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut world = World::new(cfg);
        world.run(progress)
    }));
    match outcome {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(what)) => Err(Failure { seed, what, replay }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            Err(Failure {
                seed,
                what: format!("panic: {message}"),
                replay,
            })
        }
    }
}

/// Runs the seed of `SimConfig::from_seed(seed, motes, duration)`.
pub fn run_seed(seed: u64, motes: usize, duration: Duration) -> Result<Summary, Failure> {
    run(SimConfig::from_seed(seed, motes, duration), |_| {})
}

impl Summary {
    /// One line for a log.
    pub fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "seed {} ok: {} motes, {:.1} h simulated ({:.0} mote-hours), {} events, {} datagrams at the gateway, {} uplink acked, {} at the broker, {} received by motes, {} owed, {} crashes, store {} writes / {} refused",
            self.seed,
            self.motes,
            self.simulated.as_secs_f64() / 3600.0,
            self.mote_hours(),
            self.events,
            self.datagrams,
            s.uplink_acked,
            s.remote_accepted,
            s.mote_received,
            s.owed,
            s.crashes,
            self.store_writes.0,
            self.store_writes.1
        )
    }

    /// Simulated mote-hours.
    pub fn mote_hours(&self) -> f64 {
        self.simulated.as_secs_f64() / 3600.0 * self.motes as f64
    }
}
