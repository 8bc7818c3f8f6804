//! The gauges a metrics endpoint reads: sessions by state, what waits, which broker serves.

use sn_core::{BrokerEvent, CoreConfig, Gauges, MqttQoS};

use crate::harness::{peer, Harness};

#[test]
fn gauges_count_sessions_by_state_and_what_waits_for_them() {
    let mut h = Harness::with_config(CoreConfig::default());
    h.connect(peer(1), "active", true, 60);
    h.sleeper(peer(2), "asleep");
    for _ in 0..3 {
        h.message("t", &[0; 10], MqttQoS::AtLeastOnce, false);
    }
    let gauges = h.gw.gauges();
    assert_eq!(
        (
            gauges.sessions_active,
            gauges.sessions_asleep,
            gauges.sessions_offline
        ),
        (1, 1, 0)
    );
    // Three messages of 10 bytes on "t", 64 bytes of bookkeeping each.
    assert_eq!((gauges.queued_messages, gauges.queued_bytes), (3, 3 * 75));
    assert_eq!(
        gauges.held_bytes,
        "active".len() + "asleep".len() + "t".len() * 2
    );
    assert!(gauges.broker_connected && !gauges.fallback_active);
    h.broker(BrokerEvent::Disconnected);
    assert!(!h.gw.gauges().broker_connected);
    assert_ne!(h.gw.gauges(), Gauges::default());
}
