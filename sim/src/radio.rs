//! The simulated radio between the motes and the gateway: each datagram is lost, delivered
//! once or twice, after a random delay; a held-back datagram is overtaken by later ones, so
//! the network reorders. Each direction has its own rates ([`RadioFaults`]).

use std::time::Instant;

use crate::config::RadioFaults;
use crate::rng::Rng;

/// When copies of one datagram arrive: none (lost), one, or two (duplicated); each with
/// whether it is out of the ordinary (a second copy, or held back so later ones overtake it).
pub fn arrivals(rng: &mut Rng, now: Instant, faults: &RadioFaults) -> Vec<(Instant, bool)> {
    let mut out = Vec::with_capacity(2);
    if rng.chance(faults.loss) {
        return out;
    }
    let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
    for copy in 0..copies {
        let mut at = now + rng.between(faults.delay.0, faults.delay.1);
        let late = rng.chance(faults.reorder);
        if late {
            at += rng.between(faults.delay.1, faults.reorder_delay);
        }
        out.push((at, late || copy > 0));
    }
    out
}
