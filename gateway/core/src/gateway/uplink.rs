//! Client → broker (v1.2 §6.5–6.8; reference §4.6–4.9): REGISTER, PUBLISH at QoS -1/0/1/2,
//! PUBREL, and the broker's acknowledgements. A client's QoS 1/2 PUBLISH is acknowledged to it
//! only once the broker holds it, and whatever the broker has not acknowledged is sent again
//! after every reconnect.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sn_codec::v12::{Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode};
use sn_codec::validate;
use tracing::trace;

use super::Gateway;
use crate::broker::{BrokerCommand, MqttQoS, PublishId, UplinkPublish};
use crate::peer::ClientAddr;
use crate::policy::Denied;
use crate::session::{Inbound, SessionIdx, State};
use crate::topics::OtherTopic;

/// The TopicId field of a PUBLISH (and of the PUBACK that answers it) for this topic.
pub(crate) fn topic_field(topic: &PublishTopic<'_>) -> u16 {
    match *topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => u16::from_be_bytes(name),
        PublishTopic::LongName(_) => 0,
    }
}

impl Gateway {
    /// The topic name a PUBLISH addresses, or the return code that refuses it.
    fn resolve_topic(
        &self,
        idx: Option<SessionIdx>,
        topic: &PublishTopic<'_>,
    ) -> Result<Arc<str>, ReturnCode> {
        match *topic {
            PublishTopic::Normal(id) => idx
                .and_then(|idx| self.session(idx))
                .and_then(|s| s.topics.name(id))
                .cloned()
                .ok_or(ReturnCode::InvalidTopicId),
            PublishTopic::Predefined(id) => self
                .predefined
                .name(id)
                .cloned()
                .ok_or(ReturnCode::InvalidTopicId),
            PublishTopic::Short(name) => validate::short_topic_name(&name)
                .map(Arc::from)
                .map_err(|_| ReturnCode::NotSupported),
            PublishTopic::LongName(name) => {
                validate::topic_name(name, validate::MQTT_MAX_TOPIC_LEN)
                    .map(Arc::from)
                    .map_err(|_| ReturnCode::NotSupported)
            }
        }
    }

    /// The broker's name for a topic the session publishes to (`name`, as the mote names
    /// it), or why the policy refuses it. Answers for registered ids are kept in the topic
    /// table, so the rules are evaluated once per id, not once per message.
    fn authorize_publish(
        &mut self,
        idx: SessionIdx,
        topic: &PublishTopic<'_>,
        name: &Arc<str>,
    ) -> Result<Arc<str>, Denied> {
        let Some(session) = self.session_mut(idx) else {
            return Err(Denied::Publish);
        };
        let other = match *topic {
            PublishTopic::Normal(id) => {
                if let Some(answer) = session.topics.publish_authorization(id) {
                    return answer.clone();
                }
                None
            }
            PublishTopic::Predefined(id) => Some(OtherTopic::Predefined(id)),
            PublishTopic::Short(name) => Some(OtherTopic::Short(name)),
            PublishTopic::LongName(_) => None,
        };
        if let Some(answer) = other.and_then(|o| session.topics.other_authorization(o)) {
            return answer.clone();
        }
        let grant = session.grant.clone();
        let answer = grant.may_publish(name).map(|()| grant.mount(name.clone()));
        match (*topic, other) {
            (PublishTopic::Normal(id), _) => {
                session.topics.set_publish_authorization(id, answer.clone());
            }
            (_, Some(other)) => session
                .topics
                .set_other_authorization(other, answer.clone()),
            _ => {}
        }
        answer
    }

    pub(crate) fn on_register(&mut self, idx: SessionIdx, register: Register<'_>) {
        let max = self.config.max_topics_per_session;
        let name: Option<Arc<str>> =
            validate::topic_name(register.topic_name, validate::MQTT_MAX_TOPIC_LEN)
                .ok()
                .map(Arc::from);
        // A name the mote may neither publish to nor subscribe to gets no id.
        let denied = name.as_ref().and_then(|name| {
            let grant = self.session(idx)?.grant.clone();
            grant.may_register(name).err()
        });
        if let (Some(reason), Some(name)) = (denied, &name) {
            self.deny_session(idx, reason, Some(name.clone()));
        }
        // A new name must fit in max_state_bytes; congestion says "try later".
        let new_name = name.as_ref().filter(|_| denied.is_none()).filter(|name| {
            self.session(idx)
                .is_some_and(|s| s.topics.lookup(name).is_none())
        });
        if let Some(new_name) = new_name {
            if !self.state_room(idx, new_name.len()) {
                self.send_to_session(
                    idx,
                    Packet::RegAck(RegAck {
                        topic_id: 0,
                        msg_id: register.msg_id,
                        return_code: ReturnCode::Congestion,
                    }),
                );
                return;
            }
        }
        let assigned = name
            .filter(|_| denied.is_none())
            .and_then(|name| self.session_mut(idx)?.topics.assign(&name, true, max).ok());
        let (topic_id, return_code) = match assigned {
            Some(id) => {
                self.reaccount(idx);
                self.persist(idx);
                (id, ReturnCode::Accepted)
            }
            // A wildcard or malformed name, or the table is full: a retry would not help.
            None => (0, ReturnCode::NotSupported),
        };
        self.send_to_session(
            idx,
            Packet::RegAck(RegAck {
                topic_id,
                msg_id: register.msg_id,
                return_code,
            }),
        );
    }

    /// QoS -1: no connection needed, never acknowledged (v1.2 §6.8).
    pub(crate) fn on_publish_minus_one(&mut self, addr: &ClientAddr, publish: Publish<'_>) {
        if !self.config.qos_minus_one {
            self.metrics.publish_minus_one_disabled += 1;
            return;
        }
        let idx = self.sessions.at(addr);
        let Ok(name) = self.resolve_topic(idx, &publish.topic) else {
            self.metrics.publish_rejected += 1;
            return;
        };
        // A connected mote's QoS -1 goes by its own rules and mountpoint; a peer without a
        // session by the [policy] QoS -1 rules. Either way only from qos_minus_one_from.
        let allowed = self
            .policy
            .minus_one_from_allowed(addr)
            .and_then(|()| match idx {
                Some(idx) => self.authorize_publish(idx, &publish.topic, &name),
                None => self.policy.minus_one(addr, &name).map(|()| name.clone()),
            });
        let topic = match allowed {
            Ok(topic) => topic,
            Err(reason) => {
                let client_id = idx
                    .and_then(|idx| self.session(idx))
                    .map(|s| s.client_id.clone());
                return self.deny(addr, client_id, reason, Some(name));
            }
        };
        // QoS -1 has no session: in transparent mode too, the gateway's own connection.
        self.forward_qos0(None, topic, publish.data, publish.retain);
    }

    fn forward_qos0(
        &mut self,
        from: Option<SessionIdx>,
        topic: Arc<str>,
        data: &[u8],
        retain: bool,
    ) {
        let publish = UplinkPublish {
            id: None,
            topic,
            payload: Bytes::copy_from_slice(data),
            qos: MqttQoS::AtMostOnce,
            retain,
            replay: false,
        };
        if let Some(idx) = from.filter(|_| self.transparent()) {
            if self.mote_link_up(idx) {
                self.metrics.publish_forwarded += 1;
                self.mote_command(idx, BrokerCommand::Publish(publish));
            } else {
                self.metrics.publish_broker_down += 1;
            }
            return;
        }
        if self.broker_up {
            if self.qos0_backlog_has_room() {
                self.metrics.publish_forwarded += 1;
                self.command(BrokerCommand::Publish(publish));
            }
            return;
        }
        if self.spooling() && self.config.spool.qos0 {
            let id = self.next_publish_id();
            self.outbox.insert(
                UplinkPublish {
                    id: Some(id),
                    ..publish.clone()
                },
                None,
                false,
            );
            if self.spool(id) {
                self.mirror_to_fallback(&publish);
                return;
            }
            self.outbox.remove(id);
        }
        if self.fallback_active() {
            self.mirror_to_fallback(&publish);
            return;
        }
        self.metrics.publish_broker_down += 1;
        self.metrics.qos0_dropped_broker_down += 1;
        trace!(topic = %publish.topic, "dropped QoS 0: broker link down");
    }

    pub(crate) fn on_publish(&mut self, now: Instant, idx: SessionIdx, publish: Publish<'_>) {
        let topic_id = topic_field(&publish.topic);
        let puback = |gw: &mut Gateway, return_code| {
            gw.send_to_session(
                idx,
                Packet::PubAck(PubAck {
                    topic_id,
                    msg_id: publish.msg_id,
                    return_code,
                }),
            );
        };
        let name = match self.resolve_topic(Some(idx), &publish.topic) {
            Ok(topic) => topic,
            Err(return_code) => {
                // Answered at every QoS, as the spec allows, so a QoS 0 client learns that
                // its id is stale (reference §7).
                self.metrics.publish_rejected += 1;
                return puback(self, return_code);
            }
        };
        let qos = MqttQoS::from_sn(publish.qos);
        let topic = match self.authorize_publish(idx, &publish.topic, &name) {
            Ok(topic) => topic,
            Err(reason) => {
                self.deny_session(idx, reason, Some(name));
                // Refused at QoS 1/2 with PUBACK 0x03; at QoS 0 dropped (counted).
                if qos != MqttQoS::AtMostOnce {
                    puback(self, ReturnCode::NotSupported);
                }
                return;
            }
        };
        if qos == MqttQoS::AtMostOnce {
            return self.forward_qos0(Some(idx), topic, publish.data, publish.retain);
        }
        if publish.msg_id == 0 {
            self.metrics.publish_rejected += 1;
            return puback(self, ReturnCode::NotSupported);
        }
        let Some((inbound, epoch)) = self.session(idx).map(|s| (s.inbound, s.epoch)) else {
            return;
        };
        match inbound {
            // Already with the broker: it is acknowledged when the broker acknowledges.
            Inbound::Forwarding { msg_id, .. } if msg_id == publish.msg_id => {
                self.metrics.publish_duplicate += 1;
                return;
            }
            // QoS 2 already held: repeat PUBREC, never forward twice.
            Inbound::AwaitPubRel { msg_id } if msg_id == publish.msg_id => {
                self.metrics.publish_duplicate += 1;
                self.send_to_session(idx, Packet::PubRec { msg_id });
                return;
            }
            Inbound::Idle {
                last: Some((msg_id, _)),
            } if msg_id == publish.msg_id && publish.dup => {
                self.metrics.publish_duplicate += 1;
                return match qos {
                    MqttQoS::ExactlyOnce => {
                        self.send_to_session(idx, Packet::PubRec { msg_id });
                    }
                    _ => puback(self, ReturnCode::Accepted),
                };
            }
            // One exchange at a time per client (v1.2 §6.6).
            Inbound::Forwarding { .. } => {
                self.metrics.publish_rejected += 1;
                return puback(self, ReturnCode::Congestion);
            }
            _ => {}
        }
        // Transparent mode: the mote's own connection carries it, or nothing does (there is
        // no spool per mote connection; the mote keeps the message and retries).
        let via_mote = self.transparent();
        let mote_up = via_mote && self.mote_link_up(idx);
        if (via_mote && !mote_up) || (!via_mote && !self.broker_up && !self.spooling()) {
            // Nothing can hold it: congestion, never a silent drop.
            self.metrics.publish_broker_down += 1;
            return puback(self, ReturnCode::Congestion);
        }
        let id = self.next_publish_id();
        let uplink = UplinkPublish {
            id: Some(id),
            topic,
            payload: Bytes::copy_from_slice(publish.data),
            qos,
            retain: publish.retain,
            replay: false,
        };
        self.outbox
            .insert(uplink.clone(), Some((idx, epoch)), via_mote);
        if let Some(session) = self.session_mut(idx) {
            session.inbound = Inbound::Forwarding {
                msg_id: publish.msg_id,
                topic_id,
                qos,
                id,
                since: now,
            };
        }
        if mote_up {
            self.metrics.publish_forwarded += 1;
            self.mote_command(idx, BrokerCommand::Publish(uplink));
            return;
        }
        if self.broker_up {
            self.metrics.publish_forwarded += 1;
            self.command(BrokerCommand::Publish(uplink));
            return;
        }
        // The broker is unreachable: the spool holds it, which completes the exchange (the
        // store is written before the acknowledgement leaves). The fallback broker, if it
        // serves, gets a copy for the motes and local apps.
        if self.spool(id) {
            if let Some(pending) = self.outbox.get(id) {
                let copy = pending.publish.clone();
                self.mirror_to_fallback(&copy);
            }
            if let Some(origin) = self.outbox.take_origin(id) {
                self.complete_inbound(now, origin, id);
            }
            return;
        }
        self.outbox.remove(id);
        if let Some(session) = self.session_mut(idx) {
            session.inbound = Inbound::Idle { last: None };
        }
        self.metrics.publish_broker_down += 1;
        puback(self, ReturnCode::Congestion);
    }

    pub(crate) fn on_pubrel(&mut self, idx: SessionIdx, msg_id: u16) {
        if let Some(session) = self.session_mut(idx) {
            if session.inbound == (Inbound::AwaitPubRel { msg_id }) {
                session.inbound = Inbound::Idle {
                    last: Some((msg_id, 0)),
                };
            }
        }
        // PUBCOMP even for an unknown MsgId: the exchange is over either way.
        self.send_to_session(idx, Packet::PubComp { msg_id });
    }

    /// The broker holds an uplink publish: out of the spool, and acknowledged to the client
    /// that sent it if it still waits.
    pub(crate) fn on_uplink_acked(&mut self, now: Instant, id: PublishId) {
        self.unspool(id);
        let Some(pending) = self.outbox.remove(id) else {
            return;
        };
        if let Some(origin) = pending.origin {
            self.complete_inbound(now, origin, id);
        }
    }

    /// The next hop (broker or spool) holds uplink `id`: the client's exchange completes
    /// (PUBACK for QoS 1, PUBREC for QoS 2), if it is still the one waiting.
    fn complete_inbound(&mut self, now: Instant, (idx, epoch): (SessionIdx, u64), id: PublishId) {
        let Some(session) = self.session_mut(idx).filter(|s| s.epoch == epoch) else {
            return;
        };
        let Inbound::Forwarding {
            msg_id,
            topic_id,
            qos,
            id: waiting,
            since,
        } = session.inbound
        else {
            return;
        };
        if waiting != id {
            return;
        }
        self.metrics
            .publish_ack_latency
            .record(now.saturating_duration_since(since));
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        // A client that went to sleep meanwhile has its radio off: the exchange is complete
        // here, and a retransmission after it wakes is answered from `inbound`.
        let asleep = matches!(session.state, State::Asleep { .. });
        let packet = if qos == MqttQoS::ExactlyOnce {
            session.inbound = Inbound::AwaitPubRel { msg_id };
            Packet::PubRec { msg_id }
        } else {
            session.inbound = Inbound::Idle {
                last: Some((msg_id, topic_id)),
            };
            Packet::PubAck(PubAck {
                topic_id,
                msg_id,
                return_code: ReturnCode::Accepted,
            })
        };
        if !asleep {
            self.send_to_session(idx, packet);
        }
    }

    /// The broker connection is up: subscriptions first, then every unacknowledged publish
    /// in the order it was accepted, then an ADVERTISE so waiting clients find the gateway.
    pub(crate) fn on_broker_connected(&mut self, now: Instant, session_present: bool) {
        self.broker_up = true;
        if !session_present {
            self.broker_queue.drop_remote_acks();
        }
        self.switch_back_from_fallback();
        self.resubscribe_all();
        let replays: Vec<UplinkPublish> = self
            .outbox
            .iter()
            .map(|(_, p)| p)
            .filter(|p| !p.via_mote)
            .map(|p| UplinkPublish {
                replay: true,
                ..p.publish.clone()
            })
            .collect();
        self.metrics.replayed += replays.len() as u64;
        for mut publish in replays {
            // A spooled QoS 0 message gets no acknowledgement: handing it to the link is all
            // there is, so it leaves the spool now.
            if publish.qos == MqttQoS::AtMostOnce {
                if let Some(id) = publish.id.take() {
                    self.unspool(id);
                    self.outbox.remove(id);
                }
            }
            self.command(BrokerCommand::Publish(publish));
        }
        self.start_advertising(now);
    }

    /// The broker link is down: what was on its way to the broker goes into the spool, and
    /// the clients waiting for it get their acknowledgement from there.
    pub(crate) fn on_broker_disconnected(&mut self, now: Instant) {
        self.broker_up = false;
        // Commands the link had no room for yet belong to the lost connection, as do those
        // it still held (it drops them): what matters is sent again after `Connected`.
        self.drop_broker_commands();
        self.next_advertise = None;
        if self.fallback_up {
            self.switch_to_fallback(now);
        }
        if !self.config.spool.enabled {
            return;
        }
        let waiting: Vec<PublishId> = self
            .outbox
            .iter()
            .filter(|(_, p)| !p.spooled() && !p.via_mote)
            .map(|(id, _)| id)
            .collect();
        for id in waiting {
            if self.spool(id) {
                if let Some(origin) = self.outbox.take_origin(id) {
                    self.complete_inbound(now, origin, id);
                }
            }
        }
    }
}
