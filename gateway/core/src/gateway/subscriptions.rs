//! SUBSCRIBE / UNSUBSCRIBE (v1.2 §6.9, reference §4.10) in aggregating mode: the gateway holds
//! one upstream subscription per filter, shared by every client that asked for it, and answers
//! each client's SUBACK with the QoS the broker granted.

use std::sync::Arc;

use sn_codec::v12::{Packet, ReturnCode, SubAck, Subscribe, SubscribeTopic, Unsubscribe};
use sn_codec::{validate, QoS};

use super::Gateway;
use crate::broker::{BrokerCommand, MqttQoS};
use crate::session::{Route, SessionIdx, SubKind, Subscription};
use crate::topics;
use crate::upstream::SubAcked;

/// A client that gets a broker message, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) idx: SessionIdx,
    pub(crate) qos: MqttQoS,
    pub(crate) route: Route,
}

impl Gateway {
    pub(crate) fn on_subscribe(&mut self, idx: SessionIdx, subscribe: Subscribe<'_>) {
        let msg_id = subscribe.msg_id;
        let requested = match subscribe.qos {
            // QoS -1 means nothing in a SUBSCRIBE: take it as 0.
            QoS::MinusOne => MqttQoS::AtMostOnce,
            qos => MqttQoS::from_sn(qos),
        };
        let suback = |gw: &mut Gateway, topic_id, qos: MqttQoS, return_code| {
            gw.send_to_session(
                idx,
                Packet::SubAck(SubAck {
                    qos: qos.to_sn(),
                    topic_id,
                    msg_id,
                    return_code,
                }),
            );
        };
        // The filter as the mote names it, and how it names it.
        let named = match subscribe.topic {
            SubscribeTopic::Name(name) => {
                match validate::topic_filter(name, validate::MQTT_MAX_TOPIC_LEN) {
                    Ok(filter) if validate::is_wildcard(filter) => {
                        Ok((Arc::from(filter), SubKind::Wildcard))
                    }
                    Ok(filter) => Ok((Arc::from(filter), SubKind::Name)),
                    Err(_) => Err(ReturnCode::NotSupported),
                }
            }
            SubscribeTopic::Predefined(id) => match self.predefined.name(id) {
                Some(name) => Ok((name.clone(), SubKind::Predefined(id))),
                None => Err(ReturnCode::InvalidTopicId),
            },
            // Paho and CC echo the two characters as the topic id.
            SubscribeTopic::Short(name) => match validate::short_topic_name(&name) {
                Ok(text) => Ok((Arc::from(text), SubKind::Short(name))),
                Err(_) => Err(ReturnCode::NotSupported),
            },
        };
        let (named, kind) = match named {
            Ok(found) => found,
            Err(return_code) => return suback(self, 0, MqttQoS::AtMostOnce, return_code),
        };
        // The policy decides before an id is given or anything reaches a broker.
        let Some(grant) = self.session(idx).map(|s| s.grant.clone()) else {
            return;
        };
        if let Err(reason) = grant.may_subscribe(&named) {
            self.deny_session(idx, reason, Some(named));
            return suback(self, 0, MqttQoS::AtMostOnce, ReturnCode::NotSupported);
        }
        // What the subscription adds must fit in max_state_bytes: its filter under the
        // mountpoint (and a topic id's name); congestion says "try later".
        let known = self
            .session(idx)
            .is_some_and(|s| s.subscription(&grant.mount(named.clone())).is_some());
        if !known {
            let extra = named.len() * 2 + grant.mount(Arc::from("")).len();
            if !self.state_room(idx, extra) {
                return suback(self, 0, MqttQoS::AtMostOnce, ReturnCode::Congestion);
            }
        }
        let topic_id = match kind {
            SubKind::Name => {
                let max = self.config.max_topics_per_session;
                let assigned = self
                    .session_mut(idx)
                    .and_then(|s| s.topics.assign(&named, true, max).ok());
                match assigned {
                    Some(id) => id,
                    None => return suback(self, 0, MqttQoS::AtMostOnce, ReturnCode::NotSupported),
                }
            }
            SubKind::Wildcard => 0,
            SubKind::Predefined(id) => id,
            SubKind::Short(name) => u16::from_be_bytes(name),
        };
        // The broker's filter: under the mote's mountpoint.
        let filter = grant.mount(named);
        let up = if self.transparent() {
            self.mote_link_up(idx)
        } else {
            self.upstream_up()
        };
        if !up {
            return suback(self, topic_id, MqttQoS::AtMostOnce, ReturnCode::Congestion);
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        // A retransmitted SUBSCRIBE still waiting for the broker: the SUBACK is on its way.
        if session
            .subscription(&filter)
            .is_some_and(|s| s.awaiting_suback.is_some_and(|(m, _)| m == msg_id))
        {
            return;
        }
        // Subscriptions are bounded like topic ids: a wildcard takes no id, so without this a
        // mote could grow its session (and the upstream table) without end.
        let replacing = session.subscription(&filter).is_some();
        if !replacing && session.subscriptions.len() >= self.config.max_topics_per_session {
            self.metrics.subscribe_refused += 1;
            return suback(
                self,
                topic_id,
                MqttQoS::AtMostOnce,
                ReturnCode::NotSupported,
            );
        }
        let transparent = self.transparent();
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.subscriptions.retain(|s| s.filter != filter);
        if transparent {
            // The mote's own connection: its own upstream subscription, no sharing.
            session.subscriptions.push(Subscription {
                filter: filter.clone(),
                kind,
                requested,
                granted: requested,
                generation: 0,
                awaiting_suback: Some((msg_id, topic_id)),
            });
            self.reaccount(idx);
            self.persist(idx);
            return self.mote_command(
                idx,
                BrokerCommand::Subscribe {
                    filter,
                    qos: requested,
                },
            );
        }
        let (generation, upstream_qos) = self.upstream.subscribe(&filter, idx, requested);
        if let Some(session) = self.session_mut(idx) {
            session.subscriptions.push(Subscription {
                filter: filter.clone(),
                kind,
                requested,
                granted: requested,
                generation,
                awaiting_suback: Some((msg_id, topic_id)),
            });
        }
        self.reaccount(idx);
        self.persist(idx);
        self.upstream_command(BrokerCommand::Subscribe {
            filter,
            qos: upstream_qos,
        });
    }

    /// The broker answered a SUBSCRIBE: answer every client waiting on it.
    pub(crate) fn on_broker_suback(
        &mut self,
        _now: std::time::Instant,
        filter: &str,
        granted: Option<MqttQoS>,
    ) {
        let Some(SubAcked { acked, waiting }) = self.upstream.suback(filter) else {
            return;
        };
        for idx in waiting {
            self.answer_suback(idx, filter, granted, acked);
        }
    }

    /// Answers one client waiting for the broker's answer to its SUBSCRIBE of `filter` (made
    /// at a generation up to `acked`).
    pub(crate) fn answer_suback(
        &mut self,
        idx: SessionIdx,
        filter: &str,
        granted: Option<MqttQoS>,
        acked: u64,
    ) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let Some(sub) = session
            .subscriptions
            .iter_mut()
            .find(|s| &*s.filter == filter && s.generation <= acked)
        else {
            return;
        };
        let Some((msg_id, topic_id)) = sub.awaiting_suback.take() else {
            return;
        };
        // Nothing reaches a sleeping client; its subscription stands (or is gone) all the
        // same.
        let asleep = matches!(session.state, crate::session::State::Asleep { .. });
        let (qos, return_code) = match granted {
            Some(g) => {
                sub.granted = sub.requested.min(g);
                (sub.granted, ReturnCode::Accepted)
            }
            None => (MqttQoS::AtMostOnce, ReturnCode::NotSupported),
        };
        if granted.is_none() {
            session.subscriptions.retain(|s| &*s.filter != filter);
            self.release_filter(idx, filter);
        }
        self.persist(idx);
        if !asleep {
            self.send_to_session(
                idx,
                Packet::SubAck(SubAck {
                    qos: qos.to_sn(),
                    topic_id,
                    msg_id,
                    return_code,
                }),
            );
        }
    }

    pub(crate) fn on_unsubscribe(&mut self, idx: SessionIdx, unsubscribe: Unsubscribe<'_>) {
        let filter: Option<Arc<str>> = match unsubscribe.topic {
            SubscribeTopic::Name(name) => std::str::from_utf8(name).ok().map(Arc::from),
            SubscribeTopic::Predefined(id) => self.predefined.name(id).cloned(),
            SubscribeTopic::Short(name) => std::str::from_utf8(&name).ok().map(Arc::from),
        };
        let grant = self.session(idx).map(|s| s.grant.clone());
        let filter = filter.zip(grant).map(|(filter, grant)| grant.mount(filter));
        if let Some(filter) = filter {
            let removed = self.session_mut(idx).is_some_and(|s| {
                let before = s.subscriptions.len();
                s.subscriptions.retain(|sub| sub.filter != filter);
                s.subscriptions.len() != before
            });
            if removed {
                self.release_filter(idx, &filter);
                self.reaccount(idx);
                self.persist(idx);
            }
        }
        // UNSUBACK has no return code: acknowledge even when nothing matched (§4.10).
        self.send_to_session(
            idx,
            Packet::UnsubAck {
                msg_id: unsubscribe.msg_id,
            },
        );
    }

    /// Re-creates the upstream side of a restored subscription; it is sent to the broker with
    /// all the others when the link comes up.
    pub(crate) fn restore_filter(&mut self, idx: SessionIdx, filter: Arc<str>, qos: MqttQoS) {
        self.upstream.restore(&filter, idx, qos);
    }

    /// The session no longer uses `filter`; the last one out unsubscribes upstream (in
    /// transparent mode, the session's own connection unsubscribes).
    pub(crate) fn release_filter(&mut self, idx: SessionIdx, filter: &str) {
        if self.transparent() {
            let filter: Arc<str> = Arc::from(filter);
            return self.mote_command(idx, BrokerCommand::Unsubscribe { filter });
        }
        if let Some(filter) = self.upstream.unsubscribe(filter, idx) {
            self.upstream_command(BrokerCommand::Unsubscribe { filter });
        }
    }

    /// After a (re)connect: every filter again, whether or not the broker kept the session.
    /// Clients that already had their retained messages do not get them twice: the new
    /// SUBSCRIBEs belong to no client subscription (see [`Subscription::generation`]).
    pub(crate) fn resubscribe_all(&mut self) {
        for command in self.resubscribe_commands() {
            self.command(command);
        }
    }

    /// Every filter subscribed upstream.
    pub(crate) fn upstream_filters(&self) -> Vec<Arc<str>> {
        self.upstream.filters()
    }

    /// The SUBSCRIBEs of [`resubscribe_all`](Self::resubscribe_all), for whichever broker
    /// link is (re)starting to serve.
    pub(crate) fn resubscribe_commands(&mut self) -> Vec<BrokerCommand> {
        self.upstream.resubscribe()
    }

    /// The clients a broker message goes to: each once, at the highest QoS its matching
    /// subscriptions were granted, capped by the message's QoS. A retained message (sent
    /// because of a new subscription) goes only to the subscriptions that caused it.
    pub(crate) fn targets(&self, topic: &str, qos: MqttQoS, retain: bool) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for matched in self.upstream.matching(topic, retain) {
            for &idx in matched.subscribers {
                let Some(sub) = self
                    .session(idx)
                    .and_then(|s| s.subscription(matched.filter))
                else {
                    continue;
                };
                if !matched.wants(sub.generation) {
                    continue;
                }
                merge_target(&mut targets, idx, sub, qos);
            }
        }
        targets
    }

    /// Transparent mode: how a message on a mote's own connection goes to that mote (each
    /// subscription of its own that matches; the broker already chose the connection).
    pub(crate) fn mote_target(&self, idx: SessionIdx, topic: &str, qos: MqttQoS) -> Option<Target> {
        let session = self.session(idx)?;
        let mut targets = Vec::new();
        for sub in &session.subscriptions {
            let matches = if validate::is_wildcard(&sub.filter) {
                topics::matches(&sub.filter, topic)
            } else {
                &*sub.filter == topic
            };
            if matches {
                merge_target(&mut targets, idx, sub, qos);
            }
        }
        targets.pop()
    }
}

/// Adds what `sub` asks for to the targets: a client gets a message once, at the highest QoS
/// its matching subscriptions were granted (capped by the message's), by a route that needs
/// no REGISTER when one of them has one.
fn merge_target(targets: &mut Vec<Target>, idx: SessionIdx, sub: &Subscription, qos: MqttQoS) {
    let route = match sub.kind {
        SubKind::Predefined(id) => Route::Predefined(id),
        SubKind::Short(name) => Route::Short(name),
        SubKind::Name | SubKind::Wildcard => Route::Normal,
    };
    let candidate = Target {
        idx,
        qos: sub.granted.min(qos),
        route,
    };
    match targets.iter_mut().find(|t| t.idx == idx) {
        Some(existing) => {
            // Prefer routes that need no REGISTER, then the higher QoS.
            if candidate.qos > existing.qos
                || (existing.route == Route::Normal && candidate.route != Route::Normal)
            {
                existing.qos = existing.qos.max(candidate.qos);
                existing.route = if candidate.route != Route::Normal {
                    candidate.route
                } else {
                    existing.route
                };
            }
        }
        None => targets.push(candidate),
    }
}
