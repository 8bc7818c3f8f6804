//! Per-mote presence on the broker (`[presence] topic`): a retained message on the mote's
//! topic each time its state changes (connected, asleep, awake, lost, disconnected), so that
//! Home Assistant or Node-RED can show whether a device is there. Sent like a Will: held
//! until the broker acknowledges it, replayed after a reconnect, spooled during an outage.

use std::sync::Arc;

use bytes::Bytes;
use sn_codec::validate;

use super::Gateway;
use crate::broker::{BrokerCommand, MqttQoS, PublishId, UplinkPublish};
use crate::session::SessionIdx;

/// What a presence message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Connected,
    Asleep,
    Awake,
    Lost,
    Disconnected,
}

impl Presence {
    fn payload(self) -> &'static [u8] {
        match self {
            Presence::Connected => b"connected",
            Presence::Asleep => b"asleep",
            Presence::Awake => b"awake",
            Presence::Lost => b"lost",
            Presence::Disconnected => b"disconnected",
        }
    }
}

impl Gateway {
    /// Publishes the session's new presence, if `[presence] topic` is set. A client id that
    /// would not make a valid topic (it holds `+` or `#`) gets none.
    pub(crate) fn presence(&mut self, idx: SessionIdx, presence: Presence) {
        let Some(template) = self.config.presence_topic.as_deref() else {
            return;
        };
        let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) else {
            return;
        };
        let topic = template.replace("%c", &client_id);
        if validate::topic_name(topic.as_bytes(), validate::MQTT_MAX_TOPIC_LEN).is_err() {
            return;
        }
        let topic: Arc<str> = topic.into();
        let id = self.publish_from_gateway(UplinkPublish {
            id: None,
            topic: topic.clone(),
            payload: Bytes::from_static(presence.payload()),
            qos: MqttQoS::AtLeastOnce,
            retain: true,
            replay: false,
        });
        // Retained: only the latest state matters. One still waiting for the broker is
        // superseded, so a mote that comes and goes during an outage holds one message, not
        // one per change.
        if let Some(id) = id {
            if let Some(old) = self.presence_pending.insert(topic, id) {
                self.unspool(old);
                self.outbox.remove(old);
            }
        }
    }

    /// The session is gone: forget which presence message of its was the latest (the message
    /// itself still goes out).
    pub(crate) fn forget_presence(&mut self, client_id: &str) {
        if let Some(template) = self.config.presence_topic.as_deref() {
            let topic = template.replace("%c", client_id);
            self.presence_pending.remove(topic.as_str());
        }
    }

    /// Publishes a message of the gateway's own (a Will, a presence): QoS 1/2 ones are held
    /// until the broker acknowledges them and replayed after a reconnect (spooled while the
    /// broker is unreachable); while it is, the fallback broker gets a copy.
    /// Returns the id it is held under, for QoS 1/2.
    pub(crate) fn publish_from_gateway(&mut self, mut publish: UplinkPublish) -> Option<PublishId> {
        let id = (publish.qos != MqttQoS::AtMostOnce).then(|| self.next_publish_id());
        publish.id = id;
        if let Some(id) = id {
            self.outbox.insert(publish.clone(), None, false);
            if self.spooling() {
                // Kept in memory either way; spooled, it also survives a restart.
                self.spool(id);
            }
        }
        if self.broker_up {
            self.command(BrokerCommand::Publish(publish));
        } else {
            self.mirror_to_fallback(&publish);
            if id.is_none() && !self.fallback_active() {
                self.metrics.publish_broker_down += 1;
            }
        }
        id
    }
}
