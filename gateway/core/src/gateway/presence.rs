//! Per-mote presence on the broker (`[presence] topic`): a retained message on the mote's
//! topic each time its state changes (connected, asleep, awake, lost, disconnected), so that
//! Home Assistant or Node-RED can show whether a device is there. Sent like a Will: held
//! until the broker acknowledges it, replayed after a reconnect, spooled during an outage.

use bytes::Bytes;
use sn_codec::validate;

use super::Gateway;
use crate::broker::{BrokerCommand, MqttQoS, UplinkPublish};
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
        self.publish_from_gateway(UplinkPublish {
            id: None,
            topic: topic.into(),
            payload: Bytes::from_static(presence.payload()),
            qos: MqttQoS::AtLeastOnce,
            retain: true,
            replay: false,
        });
    }

    /// Publishes a message of the gateway's own (a Will, a presence): QoS 1/2 ones are held
    /// until the broker acknowledges them and replayed after a reconnect (spooled while the
    /// broker is unreachable); while it is, the fallback broker gets a copy.
    pub(crate) fn publish_from_gateway(&mut self, mut publish: UplinkPublish) {
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
    }
}
