//! The simulation in CI (about a minute in a debug build on 2 cores): fixed seeds (among
//! them those that found bugs, so each fix stays proven in the whole system), random ones
//! (printed, with the command that replays a failure), and determinism: the same seed twice
//! gives the same run.
#![allow(clippy::panic)]

use std::time::Duration;

use sim::{run_seed, Summary};

const MOTES: usize = 20;
const HOURS: Duration = Duration::from_secs(12 * 3600);

fn check(seed: u64) -> Summary {
    match run_seed(seed, MOTES, HOURS) {
        Ok(summary) => {
            println!("{}", summary.line());
            summary
        }
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn fixed_seeds_run_clean() {
    // The seeds the simulation found bugs with (see docs/testing.md), and a few more.
    for seed in [1, 8, 15, 32, 53, 104, 144, 161, 165] {
        check(seed);
    }
}

#[test]
fn random_seeds_run_clean() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut rng = sim::rng::Rng::new(u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(7));
    for _ in 0..10 {
        let seed = rng.next_u64();
        println!("random seed {seed}");
        check(seed);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = check(42);
    let b = check(42);
    assert_eq!(
        (
            a.events,
            a.datagrams,
            a.stats.uplink_acked,
            a.stats.mote_received,
            a.stats.owed
        ),
        (
            b.events,
            b.datagrams,
            b.stats.uplink_acked,
            b.stats.mote_received,
            b.stats.owed
        ),
        "the same seed must give the same run"
    );
    assert!(
        a.stats.uplink_acked > 0 && a.stats.owed > 0 && a.stats.mote_received > 0,
        "a run that does nothing proves nothing: {}",
        a.line()
    );
}
