//! Connection lifecycle (v1.2 §6.2–6.4, §6.11–6.14; reference §4.2–4.5, §4.11–4.14): CONNECT
//! and the Will handshake, Will updates, PINGREQ, DISCONNECT, sleep, and losing a client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sn_codec::v12::{Connect, Disconnect, Packet, ReturnCode, WillTopic};
use sn_codec::validate;

use super::presence::Presence;
use super::{Gateway, TimerKind};
use crate::broker::{MqttQoS, UplinkPublish};
use crate::events::{Event, LostReason};
use crate::peer::ClientAddr;
use crate::quotas::Source;
use crate::session::{InFlight, Inbound, Outgoing, PublishStage, Session, SessionIdx, State, Will};

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client sent DISCONNECT: no Will.
    Disconnected,
    /// The client was lost: publish its Will.
    Lost(LostReason),
    /// Another client took over its address: no Will, the client is simply gone from there.
    Displaced,
    /// Transparent mode: the broker refused the mote's own connection.
    Refused,
}

impl Gateway {
    pub(crate) fn on_connect(
        &mut self,
        now: Instant,
        addr: ClientAddr,
        identity: Option<&Arc<str>>,
        connect: Connect<'_>,
    ) {
        let refuse =
            |gw: &mut Gateway, addr: &ClientAddr, code: ReturnCode, reason: &'static str| {
                gw.metrics.connect_refused += 1;
                gw.emit(Event::ConnectRefused {
                    addr: addr.to_string(),
                    reason,
                });
                gw.send(addr, Packet::ConnAck { return_code: code });
            };
        if connect.version().is_none() {
            return refuse(
                self,
                &addr,
                ReturnCode::NotSupported,
                "unsupported ProtocolId",
            );
        }
        // An empty client id with CleanSession=1 gets one assigned, as an MQTT 3.1.1 server
        // does (cc.mqttsn's client apps send none unless told): the session lives only as long
        // as the connection, so nobody needs to know its name. With CleanSession=0 there would
        // be no way to come back to it: refused, as MQTT 3.1.1 refuses it.
        let assigned;
        let client_id = if connect.client_id.is_empty() {
            if !connect.clean_session {
                return refuse(
                    self,
                    &addr,
                    ReturnCode::NotSupported,
                    "empty client id with CleanSession=0",
                );
            }
            assigned = self.assign_client_id();
            &*assigned
        } else {
            match validate::client_id(connect.client_id, self.config.max_client_id_len) {
                Ok(id) => id,
                Err(_) => {
                    return refuse(self, &addr, ReturnCode::NotSupported, "invalid client id")
                }
            }
        };
        let grant = match self.policy.admit(client_id, &addr, identity.map(|i| &**i)) {
            Ok(grant) => grant,
            Err(reason) => {
                self.deny(&addr, Some(Arc::from(client_id)), reason, None);
                return refuse(self, &addr, ReturnCode::NotSupported, reason.as_str());
            }
        };
        // Before anything is looked up or held for it: a source sending CONNECTs faster than
        // connect_rate gets congestion (it may try again later). A mote whose entry binds it
        // to where it speaks from is not held to its source's quotas: others sharing that
        // source (a forwarder, a NAT) must not lock it out.
        if !grant.bound() && !self.connects.allow(now, Source::of(&addr)) {
            self.metrics.connect_rate_limited += 1;
            return refuse(
                self,
                &addr,
                ReturnCode::Congestion,
                "too many CONNECTs from this address (connect_rate)",
            );
        }
        // A new connection waits for a broker (the remote one, or the fallback): its
        // SUBSCRIBEs need a grant. Motes already connected are served through an outage (the
        // spool holds their messages).
        // In transparent mode the mote's own connection decides (the broker's answer
        // becomes the CONNACK).
        if !self.upstream_up() && !self.transparent() {
            return refuse(self, &addr, ReturnCode::Congestion, "broker link is down");
        }
        let existing = self.sessions.find(client_id);

        // A CONNECT repeated while its Will handshake runs changes nothing: ask again for
        // what is missing (reference §4.2).
        if let Some(idx) = existing {
            let repeat = self.session(idx).is_some_and(|s| {
                matches!(s.state, State::Handshake { .. })
                    && s.addr.as_ref() == Some(&addr)
                    && connect.will
            });
            if repeat {
                return self.resend_in_flight(now, idx);
            }
        }

        // A session answers only to the address it is bound to, unless roaming is allowed:
        // anyone else naming its client id would take its session and queued messages.
        if let Some(idx) = existing {
            if !self.may_move(idx, &addr, grant.roaming(), identity) {
                self.refuse_takeover(idx, &addr);
                return refuse(
                    self,
                    &addr,
                    ReturnCode::NotSupported,
                    "client id bound to another address (roaming is off)",
                );
            }
        }

        // One source holds at most max_sessions_per_address sessions: a session that stays
        // where it is bound takes no new place.
        let source = Source::of(&addr);
        let stays = existing
            .and_then(|idx| self.session(idx))
            .and_then(|s| s.bound.as_ref())
            .is_some_and(|bound| Source::of(bound) == source);
        if !stays
            && !grant.bound()
            && self.sessions.bound_from(source) >= self.config.max_sessions_per_address
        {
            self.metrics.sessions_per_address_refused += 1;
            return refuse(
                self,
                &addr,
                ReturnCode::Congestion,
                "max_sessions_per_address reached",
            );
        }

        // Whoever was at this address before is gone from it.
        if let Some(other) = self.sessions.at(&addr) {
            if Some(other) != existing {
                self.end_session(now, other, Ending::Displaced);
            }
        }

        let idx = match existing {
            Some(idx) => idx,
            None => {
                if self.sessions.len() >= self.config.max_sessions
                    && !self.make_room(now, grant.listed())
                {
                    return refuse(self, &addr, ReturnCode::Congestion, "max_sessions reached");
                }
                if !self.state_room_for(grant.listed(), client_id.len()) {
                    return refuse(
                        self,
                        &addr,
                        ReturnCode::Congestion,
                        "max_state_bytes reached",
                    );
                }
                let epoch = self.next_epoch();
                let session = Session::new(Arc::from(client_id), now, epoch, grant.clone());
                self.insert_session(session)
            }
        };
        if let Some(session) = self.session_mut(idx) {
            session.grant = grant.clone();
            session.identity = identity.cloned();
            session.topics.forget_authorizations();
        }
        self.meter_session(idx);
        let resumed = existing.is_some() && !connect.clean_session;
        self.rebind(idx, addr);
        let epoch = self.next_epoch();
        // The message in flight goes back to the queue first, so that a clean session
        // discards it with the rest of the old one's (it must not reach the new session).
        if let Some(session) = self.session_mut(idx) {
            session.abandon_in_flight();
        }
        if connect.clean_session {
            self.clear_session_state(idx);
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.epoch = epoch;
        // A resumed session keeps the client's QoS 1/2 exchange (MQTT keeps it in the
        // session state): a PUBLISH the client resends with DUP after reconnecting, or a
        // CONNECT repeated by the radio mid-exchange, must not be forwarded twice. The
        // broker's acknowledgement of one being forwarded goes to this life of the session.
        if !resumed {
            session.inbound = Inbound::Idle { last: None };
        }
        let forwarding = match session.inbound {
            Inbound::Forwarding { id, .. } => Some(id),
            _ => None,
        };
        session.clean_session = connect.clean_session;
        session.keep_alive = Duration::from_secs(u64::from(connect.duration));
        // A CleanSession=0 CONNECT can make a session durable that was not: what it has
        // queued is stored now, in queue order, before anything that arrives later gets a
        // later sequence number (the restore order).
        self.persist_queue(idx);
        if let Some(id) = forwarding {
            self.outbox.retag_origin(id, (idx, epoch));
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.last_seen = now;
        match &mut session.state {
            // Not to be evicted while its connection is being opened (transparent mode).
            State::Offline { since } => *since = None,
            // A WILLTOPIC of an earlier attempt is forgotten.
            State::Handshake { will } => *will = None,
            _ => {}
        }
        if !connect.clean_session {
            // The client may have forgotten the ids of its earlier connection (§4.7).
            session.topics.forget_all();
        }
        if connect.will {
            session.state = State::Handshake { will: None };
            self.start_in_flight(now, idx, Outgoing::WillTopicReq);
        } else {
            self.complete_connect(now, idx, resumed);
        }
        self.arm_silence(idx);
    }

    /// The mote's CONNECT (and Will handshake) is complete: accept it, or in transparent
    /// mode first open its own broker connection and answer when the broker has.
    fn complete_connect(&mut self, now: Instant, idx: SessionIdx, resumed: bool) {
        if self.transparent() {
            return self.open_mote_link(idx, true, resumed);
        }
        self.accept_connect(now, idx, resumed);
    }

    /// CONNACK 0x00, and whatever waited for the client starts flowing.
    pub(crate) fn accept_connect(&mut self, now: Instant, idx: SessionIdx, resumed: bool) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.state = State::Active;
        let event = Event::Connected {
            client_id: session.client_id.clone(),
            addr: session
                .addr
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            clean_session: session.clean_session,
            keep_alive: u16::try_from(session.keep_alive.as_secs()).unwrap_or(u16::MAX),
            resumed,
        };
        self.send_to_session(
            idx,
            Packet::ConnAck {
                return_code: ReturnCode::Accepted,
            },
        );
        self.presence(idx, Presence::Connected);
        self.emit(event);
        self.persist(idx);
        self.pump(now, idx);
    }

    pub(crate) fn on_willtopic(
        &mut self,
        now: Instant,
        idx: SessionIdx,
        will: Option<WillTopic<'_>>,
    ) {
        let Some(session) = self.session(idx) else {
            return;
        };
        match session.in_flight.as_ref().map(|f| &f.what) {
            Some(Outgoing::WillTopicReq) => {}
            // Our WILLMSGREQ was lost and the client repeats WILLTOPIC: ask again.
            Some(Outgoing::WillMsgReq) => return self.resend_in_flight(now, idx),
            _ => {
                self.metrics.unexpected_packet += 1;
                return;
            }
        }
        let Some(will) = will else {
            // Empty WILLTOPIC: no Will; CONNACK without WILLMSGREQ (reference §4.2).
            if let Some(session) = self.session_mut(idx) {
                session.will = None;
                session.in_flight = None;
            }
            return self.complete_connect(now, idx, false);
        };
        let Some(will) = self.parse_will(&will) else {
            return self.refuse_handshake(now, idx);
        };
        let Some(will) = self.authorize_will(idx, will) else {
            return self.refuse_handshake(now, idx);
        };
        if let Some(session) = self.session_mut(idx) {
            if let State::Handshake { will: pending } = &mut session.state {
                *pending = Some(will);
            }
            session.in_flight = None;
        }
        self.start_in_flight(now, idx, Outgoing::WillMsgReq);
    }

    pub(crate) fn on_willmsg(&mut self, now: Instant, idx: SessionIdx, msg: &[u8]) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let expecting = matches!(
            session.in_flight.as_ref().map(|f| &f.what),
            Some(Outgoing::WillMsgReq)
        );
        let pending = match &mut session.state {
            State::Handshake { will } => will.take(),
            _ => None,
        };
        let Some(mut will) = pending.filter(|_| expecting) else {
            self.metrics.unexpected_packet += 1;
            return;
        };
        will.payload = Bytes::copy_from_slice(msg);
        let size = will.topic.len() + will.payload.len();
        session.in_flight = None;
        if !self.state_room(idx, size) {
            return self.refuse_handshake_with(now, idx, ReturnCode::Congestion);
        }
        if let Some(session) = self.session_mut(idx) {
            session.will = Some(will);
        }
        self.reaccount(idx);
        self.complete_connect(now, idx, false);
    }

    /// A Will topic the broker will accept, or `None`.
    fn parse_will(&self, will: &WillTopic<'_>) -> Option<Will> {
        let topic = validate::topic_name(will.topic, validate::MQTT_MAX_TOPIC_LEN).ok()?;
        if will.qos == sn_codec::QoS::MinusOne {
            return None;
        }
        Some(Will {
            topic: Arc::from(topic),
            payload: Bytes::new(),
            qos: MqttQoS::from_sn(will.qos),
            retain: will.retain,
        })
    }

    /// A client id for a mote that sent none: `auto-` and a number, one no session holds.
    fn assign_client_id(&mut self) -> String {
        loop {
            self.assigned_ids += 1;
            let id = format!("auto-{}", self.assigned_ids);
            if self.sessions.find(&id).is_none() {
                return id;
            }
        }
    }

    /// A Will to a topic the mote may publish to, under its mountpoint; `None` (the refusal
    /// counted and reported) when the policy does not allow it.
    fn authorize_will(&mut self, idx: SessionIdx, will: Will) -> Option<Will> {
        let grant = self.session(idx)?.grant.clone();
        if let Err(reason) = grant.may_publish(&will.topic) {
            self.deny_session(idx, reason, Some(will.topic));
            return None;
        }
        Some(Will {
            topic: grant.mount(will.topic.clone()),
            ..will
        })
    }

    /// A Will the gateway cannot publish: CONNACK 0x03 and the connection attempt ends.
    fn refuse_handshake(&mut self, now: Instant, idx: SessionIdx) {
        self.refuse_handshake_with(now, idx, ReturnCode::NotSupported);
    }

    /// Ends the connection attempt with CONNACK `return_code`.
    fn refuse_handshake_with(&mut self, now: Instant, idx: SessionIdx, return_code: ReturnCode) {
        self.metrics.connect_refused += 1;
        self.send_to_session(idx, Packet::ConnAck { return_code });
        self.end_session(now, idx, Ending::Disconnected);
    }

    pub(crate) fn on_willtopicupd(&mut self, idx: SessionIdx, will: Option<WillTopic<'_>>) {
        let parsed = will
            .as_ref()
            .map(|w| self.parse_will(w).and_then(|w| self.authorize_will(idx, w)));
        if let Some(Some(new)) = &parsed {
            if !self.state_room(idx, new.topic.len()) {
                let return_code = ReturnCode::Congestion;
                self.send_to_session(idx, Packet::WillTopicResp { return_code });
                return;
            }
        }
        let return_code = match (parsed, self.session_mut(idx)) {
            (_, None) => return,
            // Empty WILLTOPICUPD deletes the whole Will (§6.4).
            (None, Some(session)) => {
                session.will = None;
                ReturnCode::Accepted
            }
            (Some(None), Some(_)) => ReturnCode::NotSupported,
            (Some(Some(new)), Some(session)) => {
                let payload = session.will.take().map(|w| w.payload).unwrap_or_default();
                session.will = Some(Will { payload, ..new });
                ReturnCode::Accepted
            }
        };
        self.reaccount(idx);
        self.persist(idx);
        self.send_to_session(idx, Packet::WillTopicResp { return_code });
    }

    pub(crate) fn on_willmsgupd(&mut self, idx: SessionIdx, msg: &[u8]) {
        if !self.state_room(idx, msg.len()) {
            let return_code = ReturnCode::Congestion;
            self.send_to_session(idx, Packet::WillMsgResp { return_code });
            return;
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        // A Will message without a Will topic cannot be published: refuse, as EMQX does.
        let return_code = match &mut session.will {
            Some(will) => {
                will.payload = Bytes::copy_from_slice(msg);
                ReturnCode::Accepted
            }
            None => ReturnCode::NotSupported,
        };
        self.reaccount(idx);
        self.persist(idx);
        self.send_to_session(idx, Packet::WillMsgResp { return_code });
    }

    pub(crate) fn on_pingreq(&mut self, now: Instant, idx: SessionIdx, client_id: &[u8]) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        match session.state {
            State::Asleep { duration } => {
                // A PINGREQ naming another client is not for this session (EMQX ignores it).
                if !client_id.is_empty() && client_id != session.client_id.as_bytes() {
                    self.metrics.unexpected_packet += 1;
                    return;
                }
                session.state = State::Awake { duration };
                let event = Event::Awake {
                    client_id: session.client_id.clone(),
                    queued: session.queue.len(),
                };
                self.emit(event);
                self.presence(idx, Presence::Awake);
                self.pump(now, idx);
            }
            // Still delivering what was queued: PINGRESP comes when that is done.
            State::Awake { .. } => {}
            _ => {
                self.send_to_session(idx, Packet::PingResp);
            }
        }
    }

    /// An awake client has received everything: PINGRESP, and back to sleep (§6.14).
    pub(crate) fn finish_wake(&mut self, now: Instant, idx: SessionIdx) {
        if let Some(session) = self.session_mut(idx) {
            if let State::Awake { duration } = session.state {
                session.state = State::Asleep { duration };
            }
            session.last_seen = now;
        }
        self.send_to_session(idx, Packet::PingResp);
        self.presence(idx, Presence::Asleep);
        self.arm_silence(idx);
    }

    pub(crate) fn on_disconnect(&mut self, now: Instant, idx: SessionIdx, disconnect: Disconnect) {
        let Some(duration) = disconnect.sleep_duration() else {
            self.send_to_session(idx, Packet::Disconnect(Disconnect { duration: None }));
            return self.end_session(now, idx, Ending::Disconnected);
        };
        // From active, asleep or awake alike: (back) to sleep with the new duration (§4.13),
        // held to max_sleep_duration: how long a sleeper's session and queue are kept is the
        // gateway's to bound, not the mote's.
        let asked = Duration::from_secs(u64::from(duration.get()));
        let capped = asked > self.config.max_sleep_duration;
        let session_duration = asked.min(self.config.max_sleep_duration);
        if capped {
            self.metrics.sleep_capped += 1;
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.state = State::Asleep {
            duration: session_duration,
        };
        session.last_seen = now;
        session.abandon_in_flight();
        let client_id = session.client_id.clone();
        self.send_to_session(idx, Packet::Disconnect(Disconnect { duration: None }));
        self.presence(idx, Presence::Asleep);
        self.emit(Event::Asleep {
            client_id,
            duration: u16::try_from(session_duration.as_secs()).unwrap_or(u16::MAX),
        });
        // Asleep, the session and what waits for it must survive a restart.
        self.persist_queue(idx);
        self.arm_silence(idx);
    }

    /// The keep-alive or sleep supervision fired: lost if still silent, else re-armed.
    pub(crate) fn on_silence_timer(&mut self, now: Instant, idx: SessionIdx) {
        let Some(session) = self.session(idx) else {
            return;
        };
        let Some(deadline) = session.silence_deadline() else {
            return;
        };
        if deadline > now {
            return self.arm(idx, deadline, TimerKind::Silence);
        }
        let reason = match session.state {
            State::Asleep { .. } | State::Awake { .. } => LostReason::SleepExpired,
            State::Handshake { .. } => LostReason::HandshakeTimeout,
            _ => LostReason::KeepAliveExpired,
        };
        self.lose(now, idx, reason);
    }

    /// The client is lost: tell it (so it reconnects if it is still there), publish its Will.
    pub(crate) fn lose(&mut self, now: Instant, idx: SessionIdx, reason: LostReason) {
        self.send_to_session(idx, Packet::Disconnect(Disconnect { duration: None }));
        self.end_session(now, idx, Ending::Lost(reason));
    }

    /// Ends the client's connection: the Will if lost, then the session is dropped
    /// (CleanSession=1) or kept offline (CleanSession=0).
    pub(crate) fn end_session(&mut self, now: Instant, idx: SessionIdx, ending: Ending) {
        let handshake = self
            .session(idx)
            .is_some_and(|s| matches!(s.state, State::Handshake { .. }));
        let mut will_published = false;
        if self.transparent() {
            will_published = self.close_mote_link(idx, ending, handshake);
        }
        if let Ending::Lost(reason) = ending {
            // A client lost mid-handshake never completed its connection: no Will. In
            // transparent mode the broker publishes it (the connection is dropped).
            let will = if handshake || self.transparent() {
                None
            } else {
                self.session_mut(idx).and_then(|s| s.will.take())
            };
            if let Some(will) = will {
                self.publish_will(will);
                will_published = true;
            }
            self.metrics.sessions_lost += 1;
            if !handshake {
                self.presence(idx, Presence::Lost);
            }
            if let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) {
                self.emit(Event::Lost {
                    client_id,
                    reason,
                    will_published,
                });
            }
        } else if ending == Ending::Disconnected {
            if !handshake {
                self.presence(idx, Presence::Disconnected);
            }
            if let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) {
                self.emit(Event::Disconnected { client_id });
            }
        }
        let epoch = self.next_epoch();
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.abandon_in_flight();
        session.inbound = Inbound::Idle { last: None };
        session.state = State::Offline { since: Some(now) };
        session.epoch = epoch;
        // QoS 0 is not kept for a client that is gone (MQTT keeps only QoS 1/2 for offline
        // sessions).
        let dropped = session.queue.retain(|d| d.qos != MqttQoS::AtMostOnce);
        let clean = session.clean_session;
        let client_id = session.client_id.clone();
        for delivery in &dropped {
            self.forget_delivery(&client_id, delivery);
        }
        self.sessions.unbind(idx);
        if clean {
            self.clear_session_state(idx);
            self.remove_session(idx);
        } else {
            self.persist(idx);
        }
    }

    fn publish_will(&mut self, will: Will) {
        self.metrics.wills_published += 1;
        let _held = self.publish_from_gateway(UplinkPublish {
            id: None,
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            replay: false,
        });
    }

    /// Drops everything CleanSession=1 drops: subscriptions (upstream too), topic ids, the
    /// Will and queued messages (§6.3).
    pub(crate) fn clear_session_state(&mut self, idx: SessionIdx) {
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        let filters: Vec<Arc<str>> = session.subscriptions.drain(..).map(|s| s.filter).collect();
        session.topics.clear();
        session.will = None;
        session.release_pending = None;
        let dropped = session.queue.drain();
        session.refused_topics.clear();
        let client_id = session.client_id.clone();
        for delivery in &dropped {
            self.forget_delivery(&client_id, delivery);
        }
        for filter in filters {
            self.release_filter(idx, &filter);
        }
        self.reaccount(idx);
        self.persist(idx);
    }

    /// Binds the session to `addr`, keeping it across a change of address (NAT rebinding,
    /// NB-IoT): the session is the client id's, not the address's.
    pub(crate) fn rebind(&mut self, idx: SessionIdx, addr: ClientAddr) {
        if self.sessions.bind(idx, addr) {
            self.persist(idx);
        }
    }

    /// A sleeping client's PINGREQ from an address the gateway does not know: find it by its
    /// client id and move it there.
    pub(crate) fn rebind_sleeper(
        &mut self,
        client_id: &[u8],
        addr: &ClientAddr,
        identity: Option<&Arc<str>>,
    ) -> Option<SessionIdx> {
        let client_id = std::str::from_utf8(client_id).ok()?;
        let idx = self.sessions.find(client_id)?;
        let asleep = self.session(idx).is_some_and(|s| s.state.sleeping());
        if !asleep {
            return None;
        }
        let roaming = self.session(idx).map(|s| s.grant.roaming())?;
        if !self.may_move(idx, addr, roaming, identity) {
            self.refuse_takeover(idx, addr);
            return None;
        }
        // Roaming moves it only to where its entry allows (a link, addresses).
        if let Err(reason) = self.policy.admit(client_id, addr, identity.map(|i| &**i)) {
            self.deny(addr, Some(Arc::from(client_id)), reason, None);
            return None;
        }
        if let Some(other) = self.sessions.at(addr) {
            if other != idx {
                return None;
            }
        }
        self.rebind(idx, addr.clone());
        Some(idx)
    }

    /// Whether the session may answer to `addr` (where a peer authenticated as `identity`, if
    /// any, speaks from). A session opened by an authenticated identity answers to that
    /// identity wherever it is, and to nothing else. Otherwise: the address it is bound to,
    /// any address with `roaming` (the mote's, from the policy), or any while it is bound to
    /// none (never connected).
    fn may_move(
        &self,
        idx: SessionIdx,
        addr: &ClientAddr,
        roaming: bool,
        identity: Option<&Arc<str>>,
    ) -> bool {
        if let Some(owner) = self.session(idx).and_then(|s| s.identity.as_ref()) {
            return identity == Some(owner);
        }
        roaming
            || self
                .session(idx)
                .is_none_or(|s| s.bound.as_ref().is_none_or(|bound| bound == addr))
    }

    /// Counts and reports an attempt to take session `idx` from `addr`.
    fn refuse_takeover(&mut self, idx: SessionIdx, addr: &ClientAddr) {
        self.metrics.takeover_refused += 1;
        if let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) {
            self.emit(Event::TakeoverRefused {
                client_id,
                addr: addr.to_string(),
            });
        }
    }

    /// At max_sessions, the session offline longest makes room; for a listed mote, if none
    /// is offline, the session the open policy let in that was heard from longest ago (an
    /// admitted mote never gives way to one that is not). False when nothing may go.
    fn make_room(&mut self, now: Instant, listed: bool) -> bool {
        let victim = if listed {
            self.sessions
                .oldest_offline(true)
                .or_else(|| self.sessions.least_recent_unlisted())
                .or_else(|| self.sessions.oldest_offline(false))
        } else {
            self.sessions.oldest_offline(true)
        };
        let Some(idx) = victim else {
            return false;
        };
        if self.session(idx).is_some_and(|s| s.addr.is_some()) {
            // Still connected: it is told, and its connection ends (no Will: it did nothing
            // wrong); its session goes below with the offline ones'.
            self.send_to_session(idx, Packet::Disconnect(Disconnect { duration: None }));
            self.end_session(now, idx, Ending::Displaced);
        }
        self.metrics.sessions_evicted += 1;
        self.clear_session_state(idx);
        self.remove_session(idx);
        true
    }

    /// Sends a message that expects a reply and starts its retransmission clock.
    pub(crate) fn start_in_flight(&mut self, now: Instant, idx: SessionIdx, what: Outgoing) {
        let deadline = now + self.config.retry_interval;
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        if session.reserve_msg_ids() {
            // Stored before this MsgId leaves (the store gate holds the datagram).
            self.persist(idx);
        }
        let Some(session) = self.session_mut(idx) else {
            return;
        };
        session.in_flight = Some(InFlight {
            what,
            sends: 1,
            deadline,
        });
        self.transmit_in_flight(idx, false);
        self.arm(idx, deadline, TimerKind::Retry);
    }

    /// Sends the in-flight message again now (a duplicate request from the client shows our
    /// message was lost), restarting its clock without using up a retry.
    pub(crate) fn resend_in_flight(&mut self, now: Instant, idx: SessionIdx) {
        let deadline = now + self.config.retry_interval;
        let Some(in_flight) = self.session_mut(idx).and_then(|s| s.in_flight.as_mut()) else {
            return;
        };
        in_flight.deadline = deadline;
        self.transmit_in_flight(idx, true);
        self.arm(idx, deadline, TimerKind::Retry);
    }

    /// The retransmission clock fired (v1.2 §6.13): resend, or give up and lose the client.
    pub(crate) fn on_retry_timer(&mut self, now: Instant, idx: SessionIdx) {
        let max_retries = self.config.max_retries;
        let deadline = now + self.config.retry_interval;
        let Some(in_flight) = self.session_mut(idx).and_then(|s| s.in_flight.as_mut()) else {
            return;
        };
        if in_flight.deadline > now {
            return;
        }
        if in_flight.sends > max_retries {
            let handshake = matches!(
                in_flight.what,
                Outgoing::WillTopicReq | Outgoing::WillMsgReq
            );
            let reason = if handshake {
                LostReason::HandshakeTimeout
            } else {
                LostReason::RetriesExhausted
            };
            return self.lose(now, idx, reason);
        }
        in_flight.sends += 1;
        in_flight.deadline = deadline;
        self.metrics.retransmissions += 1;
        self.transmit_in_flight(idx, true);
        self.arm(idx, deadline, TimerKind::Retry);
    }
}

impl Session {
    /// The QoS 1/2 PUBLISH in flight to the client that [`Session::abandon_in_flight`] would
    /// put back in the queue: (1, its payload bytes), or (0, 0).
    pub(crate) fn in_flight_publish(&self) -> (usize, usize) {
        match &self.in_flight {
            Some(InFlight {
                what: Outgoing::Publish {
                    delivery, stage, ..
                },
                ..
            }) if *stage != PublishStage::Released => (1, delivery.payload.len()),
            _ => (0, 0),
        }
    }

    /// Drops the outstanding gateway message; a QoS 1/2 PUBLISH goes back to the front of the
    /// queue so it is delivered on the next connection or wake-up. One the client already
    /// acknowledged with PUBREC is not sent again: it has it, exactly once.
    pub(crate) fn abandon_in_flight(&mut self) {
        if let Some(InFlight {
            what:
                Outgoing::Publish {
                    mut delivery,
                    stage,
                    msg_id,
                    topic_id,
                },
            ..
        }) = self.in_flight.take()
        {
            if stage == PublishStage::Released {
                self.release_pending = Some(Outgoing::Publish {
                    delivery,
                    topic_id,
                    msg_id,
                    stage,
                });
            } else {
                delivery.sent_as = Some(msg_id);
                self.queue.push_front(delivery);
            }
        }
    }
}
