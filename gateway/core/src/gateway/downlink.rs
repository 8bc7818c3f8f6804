//! Broker → client (v1.2 §6.6, §6.10, §6.14; reference §4.7, §4.8, §4.14): a broker message is
//! queued for every subscribed client, then delivered one exchange at a time, with a REGISTER
//! first when the client does not know the topic's id, and retransmitted until acknowledged.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sn_codec::v12::{Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode};

use super::Gateway;
use crate::broker::{DeliveryId, MqttQoS};
use crate::config::QueueOverflow;
use crate::events::Event;
use crate::session::{Delivery, DeliveryQueue, Outgoing, PublishStage, Route, SessionIdx, State};

impl Gateway {
    pub(crate) fn on_broker_message(
        &mut self,
        now: Instant,
        topic: Arc<str>,
        payload: Bytes,
        qos: MqttQoS,
        retain: bool,
        delivery: Option<DeliveryId>,
    ) {
        for target in self.targets(&topic, qos, retain) {
            // The mote's name for it: its mountpoint taken off (its filters are under it).
            let Some(named) = self
                .session(target.idx)
                .and_then(|s| s.grant.unmount(&topic))
            else {
                continue;
            };
            self.enqueue(
                target.idx,
                Delivery {
                    topic: named,
                    payload: payload.clone(),
                    qos: target.qos,
                    retain,
                    route: target.route,
                    reregistered: false,
                    seq: None,
                    upstream_ack: None,
                    sent_as: None,
                },
            );
            self.pump(now, target.idx);
        }
        // Every subscribed client's queue holds it now: the gateway has it.
        if let Some(delivery) = delivery {
            self.ack_delivery(delivery);
        }
    }

    /// Queues a message for a client within its limits (max_queued_per_session messages,
    /// max_queued_bytes_per_session payload bytes). QoS 0 messages give way first; then the
    /// oldest message or the arriving one, by queue_overflow. Every drop is counted, per
    /// session and in total, and reported once per overflow episode.
    pub(crate) fn enqueue(&mut self, idx: SessionIdx, delivery: Delivery) {
        let max_len = self.config.max_queued_per_session;
        let max_bytes = self.config.max_queued_bytes_per_session;
        let max_total = self.config.max_queued_bytes_total;
        let policy = self.config.queue_overflow;
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        if (matches!(session.state, State::Offline { .. }) && delivery.qos == MqttQoS::AtMostOnce)
            || session.refused_topics.contains(&delivery.topic)
        {
            // Not for this client: done with, as far as the broker goes.
            if let Some(ack) = delivery.upstream_ack {
                self.ack_on_mote_link(idx, ack);
            }
            return;
        }
        let mut dropped = 0u64;
        let mut victims = Vec::new();
        // The message in flight to the client waits for it too: it goes back to the front
        // of the queue if the exchange is abandoned (the client sleeps, disconnects or is
        // lost), so it counts against the limits, or the queue would then hold one more
        // than they allow.
        let (held_len, held_bytes) = session.in_flight_publish();
        let full = |q: &DeliveryQueue, incoming: usize| {
            q.len() + held_len + 1 > max_len || q.bytes() + held_bytes + incoming > max_bytes
        };
        let incoming = delivery.payload.len();
        // All queues together stay within max_queued_bytes_total (sessions the open policy
        // let in within half of it): at that limit the arriving message is the one dropped.
        let over_total = session
            .queue
            .meter()
            .is_some_and(|meter| !meter.fits(delivery.cost(), max_total));
        let mut accept = incoming <= max_bytes && max_len > 0 && !over_total;
        // Which limit this is, for the report.
        let (setting, limit) = if over_total {
            let open = !session.grant.listed();
            (
                "max_queued_bytes_total",
                if open { max_total / 2 } else { max_total },
            )
        } else if session.queue.len() + held_len >= max_len {
            ("max_queued_per_session", max_len)
        } else {
            ("max_queued_bytes_per_session", max_bytes)
        };
        while accept && full(&session.queue, incoming) {
            let qos0 = session
                .queue
                .iter()
                .position(|d| d.qos == MqttQoS::AtMostOnce);
            let victim = match (qos0, policy) {
                (Some(index), _) => Some(index),
                // The arriving QoS 0 message is the cheapest loss.
                (None, _) if delivery.qos == MqttQoS::AtMostOnce => None,
                // The oldest not yet sent: a message already sent (its exchange abandoned
                // when the client slept, reconnected or was lost, so it waits at the front
                // to go again with its MsgId and DUP) may still reach the client, from the
                // radio or the store gate. Dropping it and sending the next ones would let
                // that copy arrive after them, out of order; it keeps its place as the
                // message in flight does. With nothing else queued, the arriving one goes.
                (None, QueueOverflow::DropOldest) => {
                    session.queue.iter().position(|d| d.sent_as.is_none())
                }
                (None, QueueOverflow::DropNew) => None,
            };
            match victim.and_then(|index| session.queue.remove(index)) {
                Some(victim) => victims.push(victim),
                None => accept = false,
            }
        }
        dropped += victims.len() as u64;
        if !accept {
            dropped += 1;
        }
        for victim in &victims {
            self.forget(idx, victim);
        }
        if accept {
            let mut delivery = delivery;
            self.persist_delivery(idx, &mut delivery);
            // Stored for a sleeping (or persistent) mote: the gateway holds it durably now.
            if delivery.seq.is_some() {
                if let Some(ack) = delivery.upstream_ack.take() {
                    self.ack_on_mote_link(idx, ack);
                }
            }
            if let Some(session) = self.session_mut(idx) {
                session.queue.push_back(delivery);
            }
        } else if let Some(ack) = delivery.upstream_ack {
            // Dropped at the limit (counted below): done with, as far as the broker goes.
            self.ack_on_mote_link(idx, ack);
        }
        if dropped == 0 {
            return;
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.dropped += dropped;
        let first = !session.queue_full_reported;
        session.queue_full_reported = true;
        let client_id = session.client_id.clone();
        if over_total {
            self.metrics.dropped_queue_total += dropped;
        } else {
            self.metrics.dropped_queue_full += dropped;
        }
        if first {
            self.emit(Event::QueueFull {
                client_id,
                setting,
                limit,
            });
        }
    }

    /// Sends what the client can take now: QoS 0 messages straight away, up to the next
    /// message that needs an exchange (REGISTER or QoS 1/2 PUBLISH), which then waits.
    pub(crate) fn pump(&mut self, now: Instant, idx: SessionIdx) {
        let max = self.config.max_topics_per_session;
        let max_state = self.config.max_state_bytes;
        loop {
            let Some(session) = self.session_mut(idx) else {
                return;
            };
            if !session.reachable() || session.in_flight.is_some() {
                return;
            }
            if let Some(release) = session.release_pending.take() {
                return self.start_in_flight(now, idx, release);
            }
            let Some(front) = session.queue.front() else {
                session.queue_full_reported = false;
                if matches!(session.state, State::Awake { .. }) {
                    self.finish_wake(now, idx);
                }
                return;
            };
            let topic = match front.route {
                Route::Predefined(id) => PublishTopic::Predefined(id),
                Route::Short(name) => PublishTopic::Short(name),
                Route::Normal => match session.topics.lookup(&front.topic) {
                    Some((id, true)) => PublishTopic::Normal(id),
                    found => {
                        let name = front.topic.clone();
                        // A new name must fit in max_state_bytes too.
                        let room = session
                            .held
                            .meter()
                            .is_none_or(|m| m.fits(name.len(), max_state));
                        let id = match found {
                            Some((id, false)) => Some(id),
                            _ if room => {
                                let id = session.topics.assign(&name, false, max).ok();
                                let held = session.held_bytes();
                                session.held.set(held);
                                id
                            }
                            _ => None,
                        };
                        let Some(topic_id) = id else {
                            // No id left for this client (its table, or max_state_bytes, is
                            // full): it cannot receive this topic.
                            if let Some(gone) = session.queue.pop_front() {
                                self.forget(idx, &gone);
                            }
                            if !room {
                                self.metrics.state_full += 1;
                            }
                            self.metrics.delivery_refused += 1;
                            continue;
                        };
                        let register = Packet::Register(Register {
                            topic_id,
                            msg_id: 1,
                            topic_name: name.as_bytes(),
                        });
                        if !self.fits(idx, &register) {
                            // A name too long for the client's link: this delivery cannot be
                            // made (v1.2 §6.10); the rest of the queue goes on.
                            if let Some(gone) =
                                self.session_mut(idx).and_then(|s| s.queue.pop_front())
                            {
                                self.forget(idx, &gone);
                            }
                            self.metrics.dropped_too_big_for_client += 1;
                            continue;
                        }
                        // A new id is part of the session's durable state.
                        self.persist(idx);
                        let Some(session) = self.session_mut(idx) else {
                            return;
                        };
                        let msg_id = session.next_msg_id();
                        return self.start_in_flight(
                            now,
                            idx,
                            Outgoing::Register { topic_id, msg_id },
                        );
                    }
                },
            };
            let Some(delivery) = session.queue.pop_front() else {
                return;
            };
            let topic_id = super::uplink::topic_field(&topic);
            if delivery.qos == MqttQoS::AtMostOnce {
                let sent = self.send_to_session(
                    idx,
                    Packet::Publish(Publish {
                        dup: false,
                        qos: sn_codec::QoS::AtMostOnce,
                        retain: delivery.retain,
                        topic,
                        msg_id: 0,
                        data: &delivery.payload,
                    }),
                );
                if sent {
                    self.metrics.delivered += 1;
                }
                self.forget(idx, &delivery);
                continue;
            }
            // A resend of an abandoned exchange keeps its MsgId (and goes with DUP).
            let msg_id = match delivery.sent_as {
                Some(msg_id) => msg_id,
                None => session.next_msg_id(),
            };
            let stage = PublishStage::Published;
            // Too big for the client's link: dropped (v1.2 §6.10) and counted.
            let publish = Packet::Publish(Publish {
                dup: false,
                qos: delivery.qos.to_sn(),
                retain: delivery.retain,
                topic,
                msg_id: 1,
                data: &delivery.payload,
            });
            if !self.fits(idx, &publish) {
                self.metrics.dropped_too_big_for_client += 1;
                self.forget(idx, &delivery);
                continue;
            }
            self.metrics.delivered += 1;
            return self.start_in_flight(
                now,
                idx,
                Outgoing::Publish {
                    delivery,
                    topic_id,
                    msg_id,
                    stage,
                },
            );
        }
    }

    /// A queued delivery is done with (delivered or dropped): out of the store too, and in
    /// transparent mode acknowledged to the broker.
    fn forget(&mut self, idx: SessionIdx, delivery: &Delivery) {
        if let Some(ack) = delivery.upstream_ack {
            self.ack_on_mote_link(idx, ack);
        }
        if delivery.seq.is_some() {
            if let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) {
                self.forget_delivery(&client_id, delivery);
            }
        }
    }

    /// Whether `packet` fits in max_packet_size on the way to this client, forwarder
    /// encapsulation included.
    fn fits(&self, idx: SessionIdx, packet: &Packet<'_>) -> bool {
        let encapsulation = self
            .session(idx)
            .and_then(|s| s.addr.as_ref())
            .and_then(|a| a.node.as_ref())
            .map_or(0, |node| 3 + node.len());
        packet.encoded_len() + encapsulation <= self.config.max_packet_size
    }

    /// (Re)sends the in-flight message; `retransmission` sets DUP on a PUBLISH.
    pub(crate) fn transmit_in_flight(&mut self, idx: SessionIdx, retransmission: bool) {
        let Some(session) = self.session(idx) else {
            return;
        };
        let Some(in_flight) = &session.in_flight else {
            return;
        };
        let what = in_flight.what.clone();
        let name = match &what {
            Outgoing::Register { topic_id, .. } => session.topics.name(*topic_id).cloned(),
            _ => None,
        };
        let packet = match &what {
            Outgoing::WillTopicReq => Packet::WillTopicReq,
            Outgoing::WillMsgReq => Packet::WillMsgReq,
            Outgoing::Register { topic_id, msg_id } => {
                let Some(name) = &name else { return };
                return {
                    self.send_to_session(
                        idx,
                        Packet::Register(Register {
                            topic_id: *topic_id,
                            msg_id: *msg_id,
                            topic_name: name.as_bytes(),
                        }),
                    );
                };
            }
            Outgoing::Publish {
                delivery,
                topic_id,
                msg_id,
                stage,
            } => {
                if *stage == PublishStage::Released {
                    Packet::PubRel { msg_id: *msg_id }
                } else {
                    let topic = match delivery.route {
                        Route::Predefined(id) => PublishTopic::Predefined(id),
                        Route::Short(name) => PublishTopic::Short(name),
                        Route::Normal => PublishTopic::Normal(*topic_id),
                    };
                    return {
                        self.send_to_session(
                            idx,
                            Packet::Publish(Publish {
                                dup: retransmission || delivery.sent_as == Some(*msg_id),
                                qos: delivery.qos.to_sn(),
                                retain: delivery.retain,
                                topic,
                                msg_id: *msg_id,
                                data: &delivery.payload,
                            }),
                        );
                    };
                }
            }
        };
        self.send_to_session(idx, packet);
    }

    pub(crate) fn on_regack(&mut self, now: Instant, idx: SessionIdx, regack: RegAck) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let matches = matches!(
            session.in_flight.as_ref().map(|f| &f.what),
            Some(Outgoing::Register { topic_id, msg_id })
                if *msg_id == regack.msg_id && *topic_id == regack.topic_id
        );
        if !matches {
            self.metrics.unexpected_packet += 1;
            return;
        }
        session.in_flight = None;
        if regack.return_code.is_accepted() {
            session.topics.mark_known(regack.topic_id);
        } else {
            // The client refuses this topic name: drop what waits for it and never offer it
            // again in this session (an unsubscribe for that name only, reference §4.7).
            if let Some(name) = session.topics.name(regack.topic_id).cloned() {
                let dropped = session.queue.retain(|d| d.topic != name);
                session.refused_topics.push(name);
                let held = session.held_bytes();
                session.held.set(held);
                self.metrics.delivery_refused += dropped.len() as u64;
                for delivery in &dropped {
                    self.forget(idx, delivery);
                }
            }
        }
        self.persist(idx);
        self.pump(now, idx);
    }

    pub(crate) fn on_puback(&mut self, now: Instant, idx: SessionIdx, puback: PubAck) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let in_flight = session.in_flight.take();
        let (delivery, topic_id, msg_id) = match in_flight {
            // An error PUBACK ends a QoS 2 exchange too (v1.2 §6.7).
            Some(crate::session::InFlight {
                what:
                    Outgoing::Publish {
                        delivery,
                        topic_id,
                        msg_id,
                        stage: PublishStage::Published,
                    },
                ..
            }) if msg_id == puback.msg_id => (delivery, topic_id, msg_id),
            other => {
                session.in_flight = other;
                // An error PUBACK for a QoS 0 PUBLISH: the client has forgotten the id.
                if puback.return_code == ReturnCode::InvalidTopicId {
                    session.topics.mark_unknown(puback.topic_id);
                } else {
                    self.metrics.unexpected_packet += 1;
                }
                return;
            }
        };
        match puback.return_code {
            ReturnCode::Accepted => self.forget(idx, &delivery),
            // The client lost the id: register it again and resend, once.
            ReturnCode::InvalidTopicId
                if delivery.route == Route::Normal && !delivery.reregistered =>
            {
                session.topics.mark_unknown(topic_id);
                session.queue.push_front(Delivery {
                    reregistered: true,
                    // Sent again with its MsgId and DUP: the refusal answers one copy, and a
                    // retransmission sent before it arrived may have reached the client
                    // after it learnt the id (from a SUBACK the radio delivered late) and
                    // been taken. A client holding that QoS 2 MsgId then sees a repeat, not
                    // a new message to deliver twice; one that refused every copy sees a
                    // message it does not hold, and takes it once.
                    sent_as: Some(msg_id),
                    ..delivery
                });
            }
            _ => {
                self.metrics.delivery_refused += 1;
                self.forget(idx, &delivery);
            }
        }
        self.pump(now, idx);
    }

    pub(crate) fn on_pubrec(&mut self, now: Instant, idx: SessionIdx, msg_id: u16) {
        let deadline = now + self.config.retry_interval;
        let Some(in_flight) = self.session_mut(idx).and_then(|s| s.in_flight.as_mut()) else {
            return;
        };
        match &mut in_flight.what {
            Outgoing::Publish {
                msg_id: m,
                stage,
                delivery,
                ..
            } if *m == msg_id && delivery.qos == MqttQoS::ExactlyOnce => {
                // First PUBREC, or a repeat because our PUBREL was lost: (re)send PUBREL.
                // The client holds the message now: it is never sent again, so the store
                // can let it go.
                if *stage == PublishStage::Published {
                    // Acknowledged upstream once, here (transparent mode).
                    let delivery = Delivery {
                        upstream_ack: delivery.upstream_ack.take(),
                        ..delivery.clone()
                    };
                    *stage = PublishStage::Released;
                    in_flight.sends = 1;
                    in_flight.deadline = deadline;
                    self.forget(idx, &delivery);
                } else {
                    in_flight.sends = 1;
                    in_flight.deadline = deadline;
                }
            }
            _ => {
                self.metrics.unexpected_packet += 1;
                return;
            }
        }
        self.transmit_in_flight(idx, false);
        self.arm(idx, deadline, super::TimerKind::Retry);
    }

    pub(crate) fn on_pubcomp(&mut self, now: Instant, idx: SessionIdx, msg_id: u16) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let done = matches!(
            session.in_flight.as_ref().map(|f| &f.what),
            Some(Outgoing::Publish { msg_id: m, stage: PublishStage::Released, .. }) if *m == msg_id
        );
        if !done {
            self.metrics.unexpected_packet += 1;
            return;
        }
        session.in_flight = None;
        self.pump(now, idx);
    }
}
