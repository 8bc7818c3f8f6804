//! Faults: each kind recurs at random around its mean interval (from the seed's
//! [`Faults`](crate::config::Faults)); some last a while and then end. None starts in the
//! calm phase.

use std::time::Duration;

use crate::schedule::{Ev, Fault, Which};
use crate::store::Mode;
use crate::world::World;

impl World {
    fn mean(&self, fault: Fault) -> Option<Duration> {
        let f = &self.cfg.faults;
        match fault {
            Fault::BrokerDrop => f.broker_drop,
            Fault::BrokerRestart => f.broker_restart,
            Fault::BrokerRefuse => f.broker_refuse,
            Fault::BrokerSlow => f.broker_slow,
            Fault::FallbackDrop => f.fallback_drop,
            Fault::StoreFail => f.store_fail,
            Fault::StoreSlow => f.store_slow,
            Fault::Crash => f.crash,
        }
    }

    fn schedule_fault(&mut self, fault: Fault) {
        if let Some(mean) = self.mean(fault) {
            let at = self.clock.now() + self.rng.between(mean / 4, mean * 7 / 4);
            self.schedule.push(at, Ev::Fault(fault));
        }
    }

    pub(crate) fn schedule_faults(&mut self) {
        for fault in [
            Fault::BrokerDrop,
            Fault::BrokerRestart,
            Fault::BrokerRefuse,
            Fault::BrokerSlow,
            Fault::FallbackDrop,
            Fault::StoreFail,
            Fault::StoreSlow,
            Fault::Crash,
        ] {
            self.schedule_fault(fault);
        }
    }

    fn end_in(&mut self, fault: Fault, lo: u64, hi: u64) {
        let at = self.clock.now() + self.rng.secs(lo, hi);
        self.schedule.push(at, Ev::FaultEnd(fault));
    }

    pub(crate) fn fault(&mut self, fault: Fault) {
        if self.calm {
            return;
        }
        let now = self.clock.now();
        match fault {
            Fault::BrokerDrop => {
                if self.remote.connected {
                    self.drop_connection(Which::Remote);
                }
            }
            Fault::BrokerRestart => {
                let keep = self.rng.chance(0.5);
                let was_connected = self.remote.connected;
                self.remote.go_down(keep);
                if was_connected {
                    self.remote.connected = true;
                    self.drop_connection(Which::Remote);
                }
                self.end_in(fault, 5, 300);
            }
            Fault::BrokerRefuse => {
                self.refuse_until = now + self.rng.secs(30, 900);
                if self.remote.connected {
                    self.drop_connection(Which::Remote);
                }
            }
            Fault::BrokerSlow => self.slow_until = now + self.rng.secs(30, 600),
            Fault::FallbackDrop => {
                if self.fallback.connected {
                    self.drop_connection(Which::Fallback);
                }
            }
            Fault::StoreFail => {
                self.store.mode = Mode::Failing;
                self.end_in(fault, 5, 300);
            }
            Fault::StoreSlow => {
                self.store.mode = Mode::Slow;
                self.end_in(fault, 30, 600);
            }
            Fault::Crash => self.crash(),
        }
        self.schedule_fault(fault);
    }

    pub(crate) fn fault_end(&mut self, fault: Fault) {
        match fault {
            Fault::BrokerRestart => {
                self.remote.up = true;
                self.schedule_attempt(Which::Remote, Duration::from_millis(500));
            }
            Fault::StoreFail | Fault::StoreSlow => {
                self.store.mode = Mode::Normal;
                self.gw_turn();
            }
            _ => {}
        }
    }
}
