//! `[presence] topic`: each mote's state on the broker as a retained message.

use std::time::Duration;

use sn_codec::v12::{Disconnect, Packet};
use sn_core::{BrokerCommand, CoreConfig, MqttQoS};

use crate::harness::{peer, Harness};

/// The presence messages published since the last call, as (topic, payload).
fn presence(h: &mut Harness) -> Vec<(String, String)> {
    h.commands()
        .into_iter()
        .filter_map(|c| match c {
            BrokerCommand::Publish(p) if p.retain && p.qos == MqttQoS::AtLeastOnce => Some((
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn each_state_change_is_a_retained_message_on_the_motes_topic() {
    let mut h = Harness::with_config(CoreConfig {
        presence_topic: Some("motes/%c/presence".into()),
        ..CoreConfig::default()
    });
    let m = peer(1);
    let at = |state: &str| ("motes/m/presence".to_string(), state.to_string());
    h.connect(m, "m", true, 60);
    assert_eq!(presence(&mut h), vec![at("connected")]);
    h.send(m, Packet::Disconnect(Disconnect { duration: Some(60) }));
    h.transmits();
    assert_eq!(presence(&mut h), vec![at("asleep")]);
    h.send(m, Packet::PingReq { client_id: b"m" });
    h.transmits();
    assert_eq!(presence(&mut h), vec![at("awake"), at("asleep")]);
    // Silent past 1.5 x its sleep: lost.
    h.advance(Duration::from_secs(91));
    h.transmits();
    assert_eq!(presence(&mut h), vec![at("lost")]);
    h.connect(m, "m", true, 60);
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    h.transmits();
    assert_eq!(presence(&mut h), vec![at("connected"), at("disconnected")]);
}

#[test]
fn no_presence_unless_configured() {
    let mut h = Harness::new();
    h.connect(peer(1), "m", true, 60);
    assert!(presence(&mut h).is_empty());
}

/// During an outage a mote that keeps changing state holds one presence message, not one per
/// change: the latest (retained) supersedes the ones still waiting, and that one goes out when
/// the broker returns.
#[test]
fn only_the_latest_presence_waits_for_the_broker() {
    let mut h = Harness::with_config(CoreConfig {
        presence_topic: Some("motes/%c/presence".into()),
        ..CoreConfig::default()
    });
    let m = peer(1);
    h.connect(m, "m", true, 60);
    presence(&mut h);
    h.broker(sn_core::BrokerEvent::Disconnected);
    for _ in 0..10 {
        h.send(m, Packet::Disconnect(Disconnect { duration: Some(60) }));
        h.send(m, Packet::PingReq { client_id: b"m" });
        h.transmits();
    }
    assert_eq!(
        h.gw.pending_uplink(),
        1,
        "one presence message held, not twenty"
    );
    h.broker(sn_core::BrokerEvent::Connected {
        session_present: false,
    });
    assert_eq!(
        presence(&mut h),
        vec![("motes/m/presence".to_string(), "asleep".to_string())]
    );
}
