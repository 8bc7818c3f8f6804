//! The simulated MQTT broker: an MQTT-level model of one broker as the gateway's connection
//! sees it. It holds the gateway's session (subscriptions, QoS 1/2 messages sent and not
//! acknowledged, messages queued while the gateway is away), answers the core's
//! [`BrokerCommand`]s, and delivers whatever is published on it (by cloud applications or by
//! the gateway itself) to the gateway's subscriptions. Used for the remote broker (which can
//! restart with or without the session) and for the fallback broker (in memory, reborn with
//! the gateway).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use sn_core::{BrokerCommand, BrokerEvent, DeliveryId, MqttQoS, PublishId};

/// A message the broker took from a publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Topic.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: MqttQoS,
    /// The core's id (gateway publishes at QoS 1/2).
    pub id: Option<PublishId>,
}

/// A message sent (or to be sent) to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// The QoS it is delivered with: the lower of the publisher's and the subscription's.
    pub qos: MqttQoS,
}

/// The gateway's session on the broker.
#[derive(Debug, Default)]
struct Session {
    subscriptions: BTreeMap<Arc<str>, MqttQoS>,
    /// Sent at QoS 1/2 and not acknowledged, by delivery id (sent again on a reconnect).
    in_flight: BTreeMap<u64, Outgoing>,
    /// QoS 1/2 messages kept while the gateway is not connected.
    queued: VecDeque<Outgoing>,
}

/// What a command made the broker do.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events for the gateway's connection, in order.
    pub events: Vec<BrokerEvent>,
    /// A message the broker accepted from the gateway (to log and to deliver to subscribers).
    pub accepted: Option<Accepted>,
}

/// One broker.
#[derive(Debug, Default)]
pub struct Broker {
    /// The process runs.
    pub up: bool,
    /// The gateway is connected.
    pub connected: bool,
    session: Option<Session>,
    next_delivery: u64,
    /// QoS 2 publish ids received on the current connection (MQTT's packet-id duplicate
    /// detection; a new connection may give a replay a new packet id, see `BrokerEvent`).
    qos2_seen: HashSet<PublishId>,
}

/// Whether an MQTT topic filter matches a topic name.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Broker {
    /// A running broker with no session for the gateway.
    pub fn new() -> Self {
        Broker {
            up: true,
            ..Broker::default()
        }
    }

    /// The gateway connects (with CleanSession=0): whether its session was kept, and what
    /// the broker sends at once (unacknowledged messages again, then what was queued).
    pub fn connect(&mut self) -> (bool, Vec<(u64, Outgoing)>) {
        self.connected = true;
        self.qos2_seen.clear();
        let present = self.session.is_some();
        let session = self.session.get_or_insert_with(Session::default);
        let mut out: Vec<(u64, Outgoing)> = session
            .in_flight
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        while let Some(message) = session.queued.pop_front() {
            self.next_delivery += 1;
            session
                .in_flight
                .insert(self.next_delivery, message.clone());
            out.push((self.next_delivery, message));
        }
        (present, out)
    }

    /// The gateway's connection is gone; its session stays.
    pub fn disconnect(&mut self) {
        self.connected = false;
        self.qos2_seen.clear();
    }

    /// The broker restarts: down now, its session for the gateway kept or lost.
    pub fn go_down(&mut self, keep_session: bool) {
        self.up = false;
        self.disconnect();
        if !keep_session {
            self.session = None;
        }
    }

    /// A message in flight to the gateway, by its delivery id.
    pub fn in_flight(&self, delivery: u64) -> Option<&Outgoing> {
        self.session.as_ref()?.in_flight.get(&delivery)
    }

    /// A command from the gateway arrives.
    pub fn command(&mut self, command: BrokerCommand) -> Outcome {
        let mut outcome = Outcome::default();
        match command {
            BrokerCommand::Publish(publish) => {
                let fresh = match (publish.qos, publish.id) {
                    (MqttQoS::ExactlyOnce, Some(id)) => self.qos2_seen.insert(id),
                    _ => true,
                };
                if fresh {
                    outcome.accepted = Some(Accepted {
                        topic: publish.topic,
                        payload: publish.payload,
                        qos: publish.qos,
                        id: publish.id,
                    });
                }
                if let (Some(id), true) = (publish.id, publish.qos != MqttQoS::AtMostOnce) {
                    outcome.events.push(BrokerEvent::PublishAcked { id });
                }
            }
            BrokerCommand::Subscribe { filter, qos } => {
                if let Some(session) = self.session.as_mut() {
                    session.subscriptions.insert(filter.clone(), qos);
                }
                outcome.events.push(BrokerEvent::SubAck {
                    filter,
                    granted: Some(qos),
                });
            }
            BrokerCommand::Unsubscribe { filter } => {
                if let Some(session) = self.session.as_mut() {
                    session.subscriptions.remove(&filter);
                }
            }
            BrokerCommand::Ack { delivery } => {
                if let Some(session) = self.session.as_mut() {
                    session.in_flight.remove(&delivery.0);
                }
            }
            // Transparent mode's commands: not simulated (aggregating mode only).
            BrokerCommand::Connect { .. } | BrokerCommand::Close { .. } => {}
        }
        outcome
    }

    /// A message is published on the broker: what goes to the gateway now (with its
    /// delivery id at QoS 1/2), if its session subscribes to the topic. While the gateway is
    /// away, QoS 1/2 messages are queued in its session and QoS 0 ones dropped.
    pub fn publish(
        &mut self,
        topic: &Arc<str>,
        payload: &Bytes,
        qos: MqttQoS,
    ) -> Option<(Option<u64>, Outgoing)> {
        let session = self.session.as_mut()?;
        let granted = session
            .subscriptions
            .iter()
            .filter(|(filter, _)| matches(filter, topic))
            .map(|(_, q)| *q)
            .max()?;
        let message = Outgoing {
            topic: topic.clone(),
            payload: payload.clone(),
            qos: qos.min(granted),
        };
        if !self.connected {
            if message.qos != MqttQoS::AtMostOnce {
                session.queued.push_back(message);
            }
            return None;
        }
        if message.qos == MqttQoS::AtMostOnce {
            return Some((None, message));
        }
        self.next_delivery += 1;
        session
            .in_flight
            .insert(self.next_delivery, message.clone());
        Some((Some(self.next_delivery), message))
    }
}

/// The event that carries `message` to the gateway.
pub fn message_event(delivery: Option<u64>, message: &Outgoing) -> BrokerEvent {
    BrokerEvent::Message {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: message.qos,
        retain: false,
        delivery: delivery.map(DeliveryId),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/c"));
    }
}
