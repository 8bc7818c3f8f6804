//! Virtual time: a real `Instant` taken once as the origin, plus an offset the simulation
//! moves forward event by event. Nothing ever sleeps; a day of simulated time costs only the
//! events in it.

use std::time::{Duration, Instant};

/// The simulation's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    offset: Duration,
}

impl Clock {
    /// A clock at simulated time zero.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// Now.
    pub fn now(&self) -> Instant {
        self.origin + self.offset
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// Moves to `at`; never backwards (the core requires a monotonic clock).
    pub fn advance_to(&mut self, at: Instant) {
        if at > self.now() {
            self.offset = at - self.origin;
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
