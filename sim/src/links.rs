//! The broker connections: connecting (or being refused), commands and events travelling in
//! order over a connection that can drop, slow acknowledgements, and what each broker does
//! with what it is sent. The link plays the runtime's MQTT client (gateway/src/broker).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sn_core::{BrokerCommand, BrokerEvent, BrokerRoute, MqttQoS};

use crate::broker::{message_event, Outgoing};
use crate::schedule::{Ev, Which};
use crate::world::{uid, DeliveryInfo, World};

fn route(which: Which) -> BrokerRoute {
    match which {
        Which::Remote => BrokerRoute::Remote,
        Which::Fallback => BrokerRoute::Fallback,
    }
}

impl World {
    fn broker(&mut self, which: Which) -> &mut crate::broker::Broker {
        match which {
            Which::Remote => &mut self.remote,
            Which::Fallback => &mut self.fallback,
        }
    }

    /// A connection attempt in `after`, unless one is scheduled.
    pub(crate) fn schedule_attempt(&mut self, which: Which, after: Duration) {
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        if link.attempt_pending {
            return;
        }
        link.attempt_pending = true;
        let at = self.clock.now() + after;
        self.schedule.push(at, Ev::LinkAttempt(which));
    }

    pub(crate) fn link_attempt(&mut self, which: Which) {
        let now = self.clock.now();
        if let Some(link) = self.links.get_mut(&which) {
            link.attempt_pending = false;
        }
        if self.gw.is_none() {
            return;
        }
        let refused = which == Which::Remote && now < self.refuse_until;
        let broker = self.broker(which);
        if broker.connected {
            return;
        }
        if !broker.up || refused {
            let after = self.rng.secs(1, 5);
            self.schedule_attempt(which, after);
            return;
        }
        let (present, resend) = self.broker(which).connect();
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        link.gen += 1;
        link.to_gw_at = now;
        link.to_broker_at = now;
        if !present {
            // A new session: the link's receiver state goes with the old one.
            link.qos2_passed.clear();
            link.qos2_acked.clear();
        }
        self.send_to_gateway(
            which,
            BrokerEvent::Connected {
                session_present: present,
            },
        );
        for (delivery, message) in resend {
            self.deliver(which, Some(delivery), &message);
        }
    }

    /// The connection drops (broker side, network, or the broker going down).
    pub(crate) fn drop_connection(&mut self, which: Which) {
        self.broker(which).disconnect();
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        link.gen += 1;
        if link.gw_up && self.gw.is_some() {
            let gen = link.gen;
            let at = self.clock.now() + Duration::from_millis(1);
            self.schedule
                .push(at, Ev::FromBroker(which, gen, BrokerEvent::Disconnected));
        }
        let after = self.rng.secs(1, 5);
        self.schedule_attempt(which, after);
    }

    /// Schedules an event for the gateway on the current connection, in order.
    fn send_to_gateway(&mut self, which: Which, event: BrokerEvent) {
        let now = self.clock.now();
        let slow = which == Which::Remote && now < self.slow_until;
        let delay = if slow {
            self.rng
                .between(Duration::from_millis(500), Duration::from_secs(20))
        } else {
            self.rng
                .between(Duration::from_millis(1), Duration::from_millis(30))
        };
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        let at = (now + delay).max(link.to_gw_at);
        link.to_gw_at = at;
        let gen = link.gen;
        self.schedule.push(at, Ev::FromBroker(which, gen, event));
    }

    /// A command from the core leaves on the current connection.
    pub(crate) fn send_to_broker(&mut self, which: Which, command: BrokerCommand) {
        let now = self.clock.now();
        let delay = self
            .rng
            .between(Duration::from_millis(1), Duration::from_millis(30));
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        let at = (now + delay).max(link.to_broker_at);
        link.to_broker_at = at;
        let gen = link.gen;
        self.schedule.push(at, Ev::ToBroker(which, gen, command));
    }

    pub(crate) fn arrive_at_broker(&mut self, which: Which, gen: u64, command: BrokerCommand) {
        let live = self.links.get(&which).is_some_and(|l| l.gen == gen);
        if !live || !self.broker(which).connected {
            return;
        }
        let outcome = self.broker(which).command(command);
        if let Some(accepted) = outcome.accepted {
            if which == Which::Remote {
                if let Some(uid) = uid(&accepted.payload) {
                    self.oracle.remote_accepted(uid, accepted.qos, gen);
                }
            }
            self.broker_publish(which, &accepted.topic, &accepted.payload, accepted.qos);
        }
        for event in outcome.events {
            self.send_to_gateway(which, event);
        }
    }

    /// A message is published on a broker; the gateway's session gets it if it subscribes.
    pub(crate) fn broker_publish(
        &mut self,
        which: Which,
        topic: &Arc<str>,
        payload: &Bytes,
        qos: MqttQoS,
    ) {
        if let Some(uid) = uid(payload) {
            let tick = self.oracle.tick;
            self.published.entry((which, uid)).or_insert(tick);
        }
        if let Some((delivery, message)) = self.broker(which).publish(topic, payload, qos) {
            self.deliver(which, delivery, &message);
        }
    }

    /// Sends a message to the gateway: a new delivery, or a resend of one in flight.
    fn deliver(&mut self, which: Which, delivery: Option<u64>, message: &Outgoing) {
        if let Some(uid) = uid(&message.payload) {
            let fresh = match delivery {
                Some(d) => !self.deliveries.contains_key(&(which, d)),
                None => true,
            };
            if fresh {
                if let Some(d) = delivery {
                    let tick = self
                        .published
                        .get(&(which, uid))
                        .copied()
                        .unwrap_or(self.oracle.tick);
                    self.deliveries.insert(
                        (which, d),
                        DeliveryInfo {
                            uid,
                            topic: message.topic.clone(),
                            qos: message.qos,
                            tick,
                        },
                    );
                }
            }
        }
        self.send_to_gateway(which, message_event(delivery, message));
    }

    pub(crate) fn arrive_from_broker(&mut self, which: Which, gen: u64, event: BrokerEvent) {
        let now = self.clock.now();
        let Some(link) = self.links.get_mut(&which) else {
            return;
        };
        if link.gen != gen || self.gw.is_none() {
            return;
        }
        match &event {
            BrokerEvent::Connected { .. } => link.gw_up = true,
            BrokerEvent::Disconnected => {
                if !link.gw_up {
                    return;
                }
                link.gw_up = false;
            }
            BrokerEvent::Message {
                qos: MqttQoS::ExactlyOnce,
                delivery: Some(delivery),
                ..
            } => {
                let d = delivery.0;
                if !link.qos2_passed.insert(d) {
                    // A resend of a QoS 2 message the core has: never handed over twice;
                    // acknowledged again if the core already acknowledged it.
                    if link.qos2_acked.contains(&d) {
                        self.send_to_broker(
                            which,
                            BrokerCommand::Ack {
                                delivery: *delivery,
                            },
                        );
                    }
                    return;
                }
            }
            _ => {}
        }
        // Each message the core is handed is a delivery it may pass on once (a QoS 1 resend
        // is handed over again; a QoS 2 one is not, above).
        if let BrokerEvent::Message { payload, .. } = &event {
            if let Some(uid) = uid(payload) {
                self.oracle.broker_delivered(uid);
            }
        }
        if let Some(gw) = self.gw.as_mut() {
            gw.handle_broker(now, route(which), event);
        }
        self.gw_turn();
    }
}
