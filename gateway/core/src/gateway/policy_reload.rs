//! Replacing the policy while motes are connected (a `SIGHUP` with a changed `[policy]` or
//! `[[mote]]` list).
//!
//! New checks (CONNECT, wake-up, REGISTER, PUBLISH, SUBSCRIBE, QoS -1) use the new rules at
//! once. Every session held is then checked again, as if it connected now from where it is
//! bound:
//! - one the new policy no longer admits (not listed any more, bound to another link,
//!   address or identity) is ended: a connected mote gets a DISCONNECT, no Will goes out (it
//!   did nothing wrong), and its session, subscriptions and queued messages are dropped, as
//!   at a restart with that policy ([`Metrics::policy_revoked`]);
//! - one whose mountpoint changed is ended the same way: its topic ids, subscriptions and
//!   queued messages name topics under the old mountpoint, and the mote's next CONNECT
//!   starts it again under the new one;
//! - an admitted one takes the new grant: its subscriptions the new rules no longer cover
//!   are dropped here and upstream ([`Metrics::subscriptions_revoked`]; MQTT-SN has no way
//!   to tell the mote, which gets nothing more on them), its Will is dropped if its topic
//!   is no longer allowed, and the answers cached per topic id are forgotten so its next
//!   PUBLISH is checked against the new rules.

use std::sync::Arc;
use std::time::Instant;

use sn_codec::v12::{Disconnect, Packet};

use super::connection::Ending;
use super::presence::Presence;
use super::Gateway;
use crate::events::Event;
use crate::policy::{Denied, Policy, PolicyConfig};
use crate::session::SessionIdx;

/// What [`Gateway::set_policy`] did to the sessions held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyChange {
    /// Sessions checked against the new policy.
    pub sessions: usize,
    /// Sessions ended because the new policy no longer admits them (or moved their
    /// mountpoint); connected ones were sent a DISCONNECT.
    pub revoked: usize,
    /// Subscriptions dropped because the new rules no longer cover them.
    pub subscriptions_revoked: usize,
    /// Wills dropped because the new rules no longer allow their topic.
    pub wills_revoked: usize,
}

/// Why a held session does not survive a new policy.
enum Verdict {
    /// Still admitted: the new grant applies.
    Keep,
    /// Ended, for this reason.
    Revoke(Revoked),
}

/// Why a session was ended by a new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The new policy no longer admits the mote (from where it is bound).
    Denied(Denied),
    /// The mote's mountpoint changed: what its session holds names the old one.
    MountpointChanged,
}

impl Revoked {
    /// The reason in words, for the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Revoked::Denied(denied) => denied.as_str(),
            Revoked::MountpointChanged => {
                "its mountpoint changed (it starts again under the new one when it reconnects)"
            }
        }
    }
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Gateway {
    /// Replaces `[policy]` and the `[[mote]]` list; see the module docs for what happens to
    /// the motes already connected. `[gateway] roaming` (the entries' default) stays as it
    /// was configured at start.
    pub fn set_policy(&mut self, now: Instant, config: PolicyConfig) -> PolicyChange {
        self.policy = Policy::new(&config, self.config.roaming);
        self.config.policy = config;
        let mut change = PolicyChange::default();
        let client_ids: Vec<Arc<str>> = self.sessions.iter().map(|s| s.client_id.clone()).collect();
        for client_id in client_ids {
            let Some(idx) = self.sessions.find(&client_id) else {
                continue;
            };
            change.sessions += 1;
            match self.recheck(idx) {
                Verdict::Keep => {
                    let (subs, will) = self.apply_grant(idx);
                    change.subscriptions_revoked += subs;
                    change.wills_revoked += will;
                }
                Verdict::Revoke(reason) => {
                    change.revoked += 1;
                    self.revoke(now, idx, reason);
                }
            }
        }
        change
    }

    /// Whether session `idx` is still admitted, from where it is (or was last) bound, as the
    /// identity that opened it; the new grant is put in place when it is.
    fn recheck(&mut self, idx: SessionIdx) -> Verdict {
        let Some(session) = self.session(idx) else {
            return Verdict::Keep;
        };
        let identity = session.identity.as_deref();
        let admitted = match session.addr.as_ref().or(session.bound.as_ref()) {
            Some(addr) => self.policy.admit(&session.client_id, addr, identity),
            // Never bound (restored, or a handshake not yet bound): only the client id and
            // identity can be checked.
            None => self.policy.grant_for(&session.client_id, identity),
        };
        let grant = match admitted {
            Ok(grant) => grant,
            Err(denied) => return Verdict::Revoke(Revoked::Denied(denied)),
        };
        let old_mount = session.grant.mount(Arc::from(""));
        if grant.mount(Arc::from("")) != old_mount {
            return Verdict::Revoke(Revoked::MountpointChanged);
        }
        if let Some(session) = self.session_mut(idx) {
            session.grant = grant;
        }
        Verdict::Keep
    }

    /// The new grant is in place: drops the subscriptions and the Will it no longer allows,
    /// forgets the cached PUBLISH answers, and moves the session's bytes to the share its
    /// admission now gives it. Returns the subscriptions and Wills dropped.
    fn apply_grant(&mut self, idx: SessionIdx) -> (usize, usize) {
        let Some(session) = self.session_mut(idx) else {
            return (0, 0);
        };
        let grant = session.grant.clone();
        session.topics.forget_authorizations();
        let allowed = |filter: &Arc<str>| {
            grant
                .unmount(filter)
                .is_some_and(|named| grant.may_subscribe(&named).is_ok())
        };
        let (kept, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut session.subscriptions)
            .into_iter()
            .partition(|sub| allowed(&sub.filter));
        session.subscriptions = kept;
        let will_dropped = session.will.as_ref().is_some_and(|will| {
            grant
                .unmount(&will.topic)
                .is_none_or(|named| grant.may_publish(&named).is_err())
        });
        if will_dropped {
            session.will = None;
        }
        for sub in &dropped {
            self.release_filter(idx, &sub.filter);
        }
        self.metrics.subscriptions_revoked += u64::try_from(dropped.len()).unwrap_or(u64::MAX);
        self.meter_session(idx);
        if !dropped.is_empty() || will_dropped {
            self.persist(idx);
        }
        (dropped.len(), usize::from(will_dropped))
    }

    /// Ends session `idx` for good: DISCONNECT if the mote is connected, no Will, and its
    /// state goes (it would be refused, or started afresh, at its next CONNECT anyway).
    fn revoke(&mut self, now: Instant, idx: SessionIdx, reason: Revoked) {
        self.metrics.policy_revoked += 1;
        let Some((client_id, addr, connected)) = self.session(idx).map(|s| {
            (
                s.client_id.clone(),
                s.addr.as_ref().map(ToString::to_string),
                s.addr.is_some(),
            )
        }) else {
            return;
        };
        if connected {
            // Its retained presence must not go on saying "connected".
            let handshake = self
                .session(idx)
                .is_some_and(|s| matches!(s.state, crate::session::State::Handshake { .. }));
            if !handshake {
                self.presence(idx, Presence::Disconnected);
            }
            self.send_to_session(idx, Packet::Disconnect(Disconnect { duration: None }));
            self.end_session(now, idx, Ending::Displaced);
        }
        self.emit(Event::Revoked {
            client_id,
            addr,
            reason,
        });
        self.clear_session_state(idx);
        self.remove_session(idx);
    }
}
