//! The fallback broker: while the remote broker is unreachable, the gateway serves its motes
//! from a second, local broker (the embedded one), so that motes and local apps keep seeing
//! each other's messages. The spool still holds every accepted uplink message for the remote
//! broker; the local broker only gets copies.
//!
//! Rules:
//! - The remote broker always wins: while it is up, nothing is subscribed on the local one
//!   and nothing is published there.
//! - When the remote broker goes down and the local link is up (or comes up while the remote
//!   is down), every upstream filter is subscribed on the local broker, new CONNECTs and
//!   SUBSCRIBEs are accepted, and uplink publishes go to the spool (acknowledged from there)
//!   and, as copies without acknowledgement tracking, to the local broker.
//! - When the remote broker comes back, the core replays what is unacknowledged and
//!   resubscribes there (as after any reconnect), and unsubscribes every filter from the
//!   local broker: service has switched back.
//! - Messages from the local broker reach motes like the remote broker's; their delivery ids
//!   are moved into their own range ([`FALLBACK_DELIVERY`]) so that an acknowledgement goes
//!   back to the broker that sent the message.

use std::time::Instant;

use super::Gateway;
use crate::broker::{BrokerCommand, BrokerEvent, DeliveryId, UplinkPublish};

/// Delivery ids of messages from the fallback broker have this bit set in the core.
pub(crate) const FALLBACK_DELIVERY: u64 = 1 << 63;

impl Gateway {
    /// Something happened on the fallback (local) broker link.
    pub(super) fn on_fallback_event(&mut self, now: Instant, event: BrokerEvent) {
        match event {
            BrokerEvent::Connected { .. } => {
                self.fallback_up = true;
                if !self.broker_up {
                    self.switch_to_fallback(now);
                }
            }
            BrokerEvent::Disconnected => {
                self.fallback_up = false;
                if !self.broker_up {
                    self.next_advertise = None;
                }
            }
            // Copies are published without ids: there is nothing to acknowledge. The link to
            // the embedded broker never gives up, so it never refuses.
            BrokerEvent::PublishAcked { .. } | BrokerEvent::Refused(_) => {}
            BrokerEvent::SubAck { filter, granted } => {
                // A late answer after switching back belongs to no one.
                if self.fallback_active() {
                    self.on_broker_suback(now, &filter, granted);
                }
            }
            BrokerEvent::Message {
                topic,
                payload,
                qos,
                retain,
                delivery,
            } => {
                let delivery = delivery.map(|d| DeliveryId(d.0 | FALLBACK_DELIVERY));
                self.on_broker_message(now, topic, payload, qos, retain, delivery);
            }
        }
    }

    /// Whether motes are being served by the fallback broker now.
    pub fn fallback_active(&self) -> bool {
        !self.broker_up && self.fallback_up
    }

    /// Whether some broker serves the motes: the remote one, or the fallback.
    pub(crate) fn upstream_up(&self) -> bool {
        self.broker_up || self.fallback_up
    }

    /// A subscription change for whichever broker serves the motes now; dropped when none
    /// does (every filter is sent again when one comes up).
    pub(crate) fn upstream_command(&mut self, command: BrokerCommand) {
        if self.broker_up {
            self.command(command);
        } else if self.fallback_up {
            self.fallback_command(command);
        }
    }

    /// Acknowledges a broker message to the broker that sent it.
    pub(crate) fn ack_delivery(&mut self, delivery: DeliveryId) {
        if delivery.0 & FALLBACK_DELIVERY != 0 {
            let delivery = DeliveryId(delivery.0 & !FALLBACK_DELIVERY);
            self.fallback_command(BrokerCommand::Ack { delivery });
        } else {
            self.command(BrokerCommand::Ack { delivery });
        }
    }

    /// While the fallback serves: a copy of an uplink message for the local broker and its
    /// subscribers (motes and local apps). The remote broker gets the original from the spool.
    pub(crate) fn mirror_to_fallback(&mut self, publish: &UplinkPublish) {
        if !self.fallback_active() {
            return;
        }
        self.metrics.fallback_published += 1;
        self.fallback_command(BrokerCommand::Publish(UplinkPublish {
            id: None,
            replay: false,
            ..publish.clone()
        }));
    }

    /// The remote broker is down and the local one up: subscribe everything there and tell
    /// the motes the gateway still serves.
    pub(crate) fn switch_to_fallback(&mut self, now: Instant) {
        self.metrics.fallback_switches += 1;
        for command in self.resubscribe_commands() {
            self.fallback_command(command);
        }
        self.start_advertising(now);
    }

    /// The remote broker is back: the fallback broker keeps no subscription of the gateway.
    pub(crate) fn switch_back_from_fallback(&mut self) {
        if !self.fallback_up {
            return;
        }
        for filter in self.upstream_filters() {
            self.fallback_command(BrokerCommand::Unsubscribe { filter });
        }
    }
}
