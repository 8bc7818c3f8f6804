//! Transparent mode in the core: each mote has its own broker connection (see
//! [`crate::transparent_api`] for the interface with the runtime).
//!
//! What changes against aggregating mode:
//! - A mote's CONNECT is answered when the broker has answered the mote's own connection;
//!   a refusal becomes the CONNACK return code (credentials, authorization, identifier: 0x03
//!   "not supported"; broker unavailable: 0x01 "congestion").
//! - Its PUBLISH, SUBSCRIBE and UNSUBSCRIBE go on its connection; a QoS 1/2 PUBLISH is
//!   acknowledged to the mote when the broker acknowledged it there. While the connection is
//!   down they are refused with 0x01 (the mote keeps the message); there is no spool per mote.
//! - A broker message on its connection goes to that mote only, and is acknowledged to the
//!   broker when the mote has it (PUBACK, PUBREC, or sent at QoS 0) or when it is stored for
//!   a sleeping or persistent mote: manual acknowledgements, so nothing is lost in between.
//! - Wills are the broker's: given with the connection, published by the broker when the
//!   gateway drops a lost mote's connection without DISCONNECT. A WILLTOPICUPD / WILLMSGUPD
//!   takes effect at the mote's next CONNECT (MQTT 3.1.1 fixes the Will at connection time).
//! - A sleeping mote's connection stays open (the runtime keeps it pinged).
//! - QoS -1 publishes, which have no session, go through the gateway's own connection.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sn_codec::v12::{Packet, ReturnCode};

use super::connection::Ending;
use super::Gateway;
use crate::broker::{BrokerCommand, BrokerEvent, BrokerRoute, DeliveryId, MqttQoS, UplinkPublish};
use crate::events::Event;
use crate::session::{Delivery, MoteLink, SessionIdx};
use crate::transparent_api::{BrokerMode, MoteWill, Refusal};

impl Gateway {
    /// Something happened on the broker connection of the mote with this client id.
    /// Events for a mote without a session or a connection (a late event after it closed)
    /// are ignored.
    pub(super) fn on_mote_event(&mut self, now: Instant, client_id: &str, event: BrokerEvent) {
        let Some(idx) = self.sessions.find(client_id) else {
            return;
        };
        let Some(link) = self.session(idx).map(|s| s.mote_link) else {
            return;
        };
        if link == MoteLink::Closed {
            return;
        }
        match event {
            BrokerEvent::Refused(refusal) => self.on_mote_refused(now, idx, refusal, link),
            BrokerEvent::Connected { session_present } => {
                self.on_mote_connected(now, idx, link, session_present);
            }
            BrokerEvent::Disconnected => {
                if let Some(session) = self.session_mut(idx) {
                    if session.mote_link == MoteLink::Up {
                        session.mote_link = MoteLink::Down;
                    }
                }
            }
            BrokerEvent::PublishAcked { id } => self.on_uplink_acked(now, id),
            BrokerEvent::SubAck { filter, granted } => {
                self.answer_suback(idx, &filter, granted, u64::MAX);
            }
            BrokerEvent::Message {
                topic,
                payload,
                qos,
                retain,
                delivery,
            } => self.on_mote_message(now, idx, topic, payload, qos, retain, delivery),
        }
    }

    /// Whether motes have broker connections of their own.
    pub(crate) fn transparent(&self) -> bool {
        self.config.mode == BrokerMode::Transparent
    }

    /// Whether the mote's own connection is open.
    pub(crate) fn mote_link_up(&self, idx: SessionIdx) -> bool {
        self.session(idx)
            .is_some_and(|s| s.mote_link == MoteLink::Up)
    }

    /// Queues a command for the mote's own connection.
    pub(crate) fn mote_command(&mut self, idx: SessionIdx, command: BrokerCommand) {
        if let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) {
            self.broker_queue
                .push(BrokerRoute::Mote(client_id), command);
        }
    }

    /// Acknowledges a message of the mote's own connection to the broker.
    pub(crate) fn ack_on_mote_link(&mut self, idx: SessionIdx, delivery: DeliveryId) {
        self.mote_command(idx, BrokerCommand::Ack { delivery });
    }

    /// Asks for the mote's own connection with its keep-alive, CleanSession and Will.
    /// `answer`: the mote waits for its CONNACK; `resumed` goes into the Connected event.
    pub(crate) fn open_mote_link(&mut self, idx: SessionIdx, answer: bool, resumed: bool) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.mote_link = MoteLink::Opening { answer, resumed };
        let command = BrokerCommand::Connect {
            // Bound by its entry, or authenticated by its link.
            own_login: session.grant.bound() || session.identity.is_some(),
            keep_alive: session.keep_alive,
            clean_session: session.clean_session,
            will: session.will.as_ref().map(|w| MoteWill {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
            }),
        };
        self.mote_command(idx, command);
    }

    /// The session ends: close its connection so the broker does what MQTT says (discard
    /// the Will after DISCONNECT, publish it after a dropped connection). Returns whether
    /// the broker is to publish a Will.
    pub(crate) fn close_mote_link(
        &mut self,
        idx: SessionIdx,
        ending: Ending,
        handshake: bool,
    ) -> bool {
        let Some(session) = self.session_mut(idx) else {
            return false;
        };
        let link = std::mem::replace(&mut session.mote_link, MoteLink::Closed);
        let has_will = session.will.is_some();
        if link == MoteLink::Closed {
            return false;
        }
        let (graceful, will) = match ending {
            // The runtime has given up on it already.
            Ending::Refused => return false,
            // Dropped without DISCONNECT: the broker publishes the Will, if the connection
            // was ever accepted with one.
            Ending::Lost(_) => (false, has_will && !handshake),
            Ending::Disconnected | Ending::Displaced => (true, false),
        };
        if will {
            self.metrics.wills_published += 1;
        }
        self.mote_command(idx, BrokerCommand::Close { graceful });
        will
    }

    fn on_mote_connected(
        &mut self,
        now: Instant,
        idx: SessionIdx,
        link: MoteLink,
        session_present: bool,
    ) {
        if let Some(session) = self.session_mut(idx) {
            session.mote_link = MoteLink::Up;
        }
        if let MoteLink::Opening {
            answer: true,
            resumed,
        } = link
        {
            self.accept_connect(now, idx, resumed);
        }
        // The broker forgot the mote's subscriptions (a clean connection, or it lost the
        // session): make them again on this connection.
        if !session_present {
            let filters: Vec<(Arc<str>, MqttQoS)> = self
                .session(idx)
                .map(|s| {
                    s.subscriptions
                        .iter()
                        .map(|sub| (sub.filter.clone(), sub.requested))
                        .collect()
                })
                .unwrap_or_default();
            for (filter, qos) in filters {
                self.mote_command(idx, BrokerCommand::Subscribe { filter, qos });
            }
        }
        // What the mote sent on the lost connection and the broker never acknowledged.
        let replays: Vec<UplinkPublish> = self
            .outbox
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.via_mote && p.origin.is_some_and(|(o, _)| o == idx))
            .map(|p| UplinkPublish {
                replay: true,
                ..p.publish.clone()
            })
            .collect();
        for publish in replays {
            self.mote_command(idx, BrokerCommand::Publish(publish));
        }
    }

    fn on_mote_refused(&mut self, now: Instant, idx: SessionIdx, refusal: Refusal, link: MoteLink) {
        let (return_code, reason) = match refusal {
            Refusal::BadCredentials => (
                ReturnCode::NotSupported,
                "broker: bad user name or password",
            ),
            Refusal::NotAuthorized => (ReturnCode::NotSupported, "broker: not authorized"),
            Refusal::IdentifierRejected => (ReturnCode::NotSupported, "broker: client id rejected"),
            Refusal::ServerUnavailable => (ReturnCode::Congestion, "broker unavailable"),
        };
        if let MoteLink::Opening { answer: true, .. } = link {
            self.metrics.connect_refused += 1;
            let addr = self
                .session(idx)
                .and_then(|s| s.addr.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default();
            self.emit(Event::ConnectRefused { addr, reason });
            self.send_to_session(idx, Packet::ConnAck { return_code });
        }
        // A refused first connection leaves nothing behind, whatever its CleanSession flag
        // (a persistent session that existed before is kept, offline).
        if let MoteLink::Opening { resumed: false, .. } = link {
            if let Some(session) = self.session_mut(idx) {
                session.clean_session = true;
            }
        }
        self.end_session(now, idx, Ending::Refused);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_mote_message(
        &mut self,
        now: Instant,
        idx: SessionIdx,
        topic: Arc<str>,
        payload: Bytes,
        qos: MqttQoS,
        retain: bool,
        delivery: Option<DeliveryId>,
    ) {
        let target = self.mote_target(idx, &topic, qos);
        // The mote's name for it: its mountpoint taken off (its filters are under it).
        let named = self.session(idx).and_then(|s| s.grant.unmount(&topic));
        let (Some(target), Some(topic)) = (target, named) else {
            // No subscription of its own matches (it unsubscribed meanwhile): done with.
            if let Some(delivery) = delivery {
                self.ack_on_mote_link(idx, delivery);
            }
            return;
        };
        self.enqueue(
            idx,
            Delivery {
                topic,
                payload,
                qos: target.qos,
                retain,
                route: target.route,
                reregistered: false,
                seq: None,
                upstream_ack: delivery,
                sent_as: None,
            },
        );
        self.pump(now, idx);
    }
}
