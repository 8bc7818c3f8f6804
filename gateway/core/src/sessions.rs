//! The session table: every session the gateway holds, found by slot, by client id and by the
//! address it is bound to, and the timers that supervise them.
//!
//! The table owns the invariant that its two indexes agree with the sessions: a session's
//! address is changed only through [`SessionTable::bind`] and [`SessionTable::unbind`], so an
//! address answers to exactly one session, the one bound to it, and a removed session leaves
//! no index entry behind. It also counts the sessions bound to each source (a session's
//! `bound` address is likewise changed only through `bind`), for `max_sessions_per_address`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::peer::ClientAddr;
use crate::quotas::Source;
use crate::session::{Session, SessionIdx, State};

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// Keep-alive or sleep supervision.
    Silence,
    /// Retransmission of the in-flight message.
    Retry,
}

/// A deadline for one session. Entries are never removed early: when one fires, the session's
/// epoch decides whether it still applies (lazy cancellation keeps every update O(log n)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    idx: SessionIdx,
    epoch: u64,
    kind: TimerKind,
}

/// Sessions in slots, with their indexes and timers.
#[derive(Debug)]
pub(crate) struct SessionTable {
    slots: Vec<Option<Session>>,
    free: Vec<SessionIdx>,
    by_client_id: HashMap<Arc<str>, SessionIdx>,
    by_addr: HashMap<ClientAddr, SessionIdx>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_epoch: u64,
    /// Sessions bound to each source (connected, asleep, or offline and kept).
    per_source: HashMap<Source, usize>,
}

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_client_id: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            next_epoch: 1,
            per_source: HashMap::new(),
        }
    }
}

impl SessionTable {
    /// The session in slot `idx`.
    pub(crate) fn get(&self, idx: SessionIdx) -> Option<&Session> {
        self.slots.get(idx).and_then(Option::as_ref)
    }

    /// The session in slot `idx`, to change. Its address is not to be changed through this
    /// (see [`SessionTable::bind`]).
    pub(crate) fn get_mut(&mut self, idx: SessionIdx) -> Option<&mut Session> {
        self.slots.get_mut(idx).and_then(Option::as_mut)
    }

    /// The slot of the session with this client id.
    pub(crate) fn find(&self, client_id: &str) -> Option<SessionIdx> {
        self.by_client_id.get(client_id).copied()
    }

    /// The slot of the session bound to this address.
    pub(crate) fn at(&self, addr: &ClientAddr) -> Option<SessionIdx> {
        self.by_addr.get(addr).copied()
    }

    /// Every session held.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// Sessions held, in any state.
    pub(crate) fn len(&self) -> usize {
        self.by_client_id.len()
    }

    /// A number never handed out before: a new life of a session, so that late timers and
    /// acknowledgements for an earlier one are told apart.
    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Stores a new session in a free slot, indexed by its client id and, if it has one, its
    /// address. The caller has made sure no session has the client id already.
    pub(crate) fn insert(&mut self, session: Session) -> SessionIdx {
        let client_id = session.client_id.clone();
        let addr = session.addr.clone();
        if let Some(bound) = &session.bound {
            self.count_source(bound, true);
        }
        let idx = match self.free.pop() {
            Some(idx) => {
                if let Some(slot) = self.slots.get_mut(idx) {
                    *slot = Some(session);
                }
                idx
            }
            None => {
                self.slots.push(Some(session));
                self.slots.len() - 1
            }
        };
        self.by_client_id.insert(client_id, idx);
        if let Some(addr) = addr {
            self.by_addr.insert(addr, idx);
        }
        idx
    }

    /// Frees a session's slot and its index entries; returns the session.
    pub(crate) fn remove(&mut self, idx: SessionIdx) -> Option<Session> {
        let session = self.slots.get_mut(idx).and_then(Option::take)?;
        self.by_client_id.remove(&session.client_id);
        if let Some(bound) = &session.bound {
            self.count_source(bound, false);
        }
        if let Some(addr) = &session.addr {
            if self.by_addr.get(addr) == Some(&idx) {
                self.by_addr.remove(addr);
            }
        }
        self.free.push(idx);
        Some(session)
    }

    /// Binds the session to `addr` (where it is reached, and the address it answers to from
    /// now on), unbinding its old address. Returns whether anything changed. The caller has
    /// ended whichever session was bound to `addr` before.
    pub(crate) fn bind(&mut self, idx: SessionIdx, addr: ClientAddr) -> bool {
        let Some(session) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        let old_bound = session.bound.replace(addr.clone());
        if old_bound.as_ref() != Some(&addr) {
            if let Some(old) = &old_bound {
                self.count_source(old, false);
            }
            self.count_source(&addr, true);
        }
        let Some(session) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        if session.addr.as_ref() == Some(&addr) {
            return false;
        }
        if let Some(old) = session.addr.replace(addr.clone()) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert(addr, idx);
        true
    }

    /// Sessions bound to `source` now.
    pub(crate) fn bound_from(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    fn count_source(&mut self, addr: &ClientAddr, add: bool) {
        let source = Source::of(addr);
        if add {
            *self.per_source.entry(source).or_insert(0) += 1;
        } else if let Some(count) = self.per_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Unbinds the session from its address (it went offline); returns the address.
    pub(crate) fn unbind(&mut self, idx: SessionIdx) -> Option<ClientAddr> {
        let addr = self.get_mut(idx)?.addr.take()?;
        self.by_addr.remove(&addr);
        Some(addr)
    }

    /// The session offline longest, to make room at `max_sessions`; with `unlisted_only`,
    /// only among sessions the open policy let in (for a CONNECT that the open policy lets
    /// in, which must not push out a listed mote).
    pub(crate) fn oldest_offline(&self, unlisted_only: bool) -> Option<SessionIdx> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(idx, s)| {
                let s = s.as_ref()?;
                if unlisted_only && s.grant.listed() {
                    return None;
                }
                match s.state {
                    State::Offline { since } => Some((since?, idx)),
                    _ => None,
                }
            })
            .min()
            .map(|(_, idx)| idx)
    }

    /// The session the open policy let in (no `[[mote]]` entry) heard from longest ago, in
    /// any state: what gives way at `max_sessions` to a listed mote.
    pub(crate) fn least_recent_unlisted(&self) -> Option<SessionIdx> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(idx, s)| {
                let s = s.as_ref()?;
                (!s.grant.listed()).then_some((s.last_seen, idx))
            })
            .min()
            .map(|(_, idx)| idx)
    }

    /// Arms a timer for the session's current life.
    pub(crate) fn arm(&mut self, idx: SessionIdx, at: Instant, kind: TimerKind) {
        if let Some(epoch) = self.get(idx).map(|s| s.epoch) {
            self.timers.push(Reverse(Timer {
                at,
                idx,
                epoch,
                kind,
            }));
        }
    }

    /// The earliest timer, live or not (a stale one fires early and is skipped: harmless).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| t.at)
    }

    /// The next timer due at `now` that still belongs to its session's current life.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(SessionIdx, TimerKind)> {
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                return None;
            }
            self.timers.pop();
            if self.get(timer.idx).is_some_and(|s| s.epoch == timer.epoch) {
                return Some((timer.idx, timer.kind));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::peer::{LinkId, Peer, PeerAddr};

    fn addr(port: u16) -> ClientAddr {
        ClientAddr {
            peer: Peer {
                link: LinkId(0),
                addr: PeerAddr::Ip(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            },
            node: None,
        }
    }

    fn session(table: &mut SessionTable, id: &str, now: Instant) -> Session {
        let epoch = table.next_epoch();
        let grant = crate::policy::Policy::new(&crate::policy::PolicyConfig::default(), false)
            .grant_for(id, None)
            .unwrap();
        Session::new(Arc::from(id), now, epoch, grant)
    }

    #[test]
    fn an_address_answers_only_to_the_session_bound_to_it() {
        let now = Instant::now();
        let mut table = SessionTable::default();
        let a = session(&mut table, "a", now);
        let a = table.insert(a);
        let b = session(&mut table, "b", now);
        let b = table.insert(b);
        assert!(table.bind(a, addr(1)));
        assert!(!table.bind(a, addr(1)), "binding again changes nothing");
        assert!(table.bind(b, addr(2)));
        assert_eq!(table.at(&addr(1)), Some(a));
        // Moving `a` frees its old address.
        assert!(table.bind(a, addr(3)));
        assert_eq!(table.at(&addr(1)), None);
        assert_eq!(table.at(&addr(3)), Some(a));
        assert_eq!(table.unbind(a), Some(addr(3)));
        assert_eq!(table.at(&addr(3)), None);
        assert_eq!(table.get(a).unwrap().addr, None);
        assert_eq!(table.at(&addr(2)), Some(b));
    }

    #[test]
    fn a_removed_session_leaves_no_index_and_its_slot_is_reused() {
        let now = Instant::now();
        let mut table = SessionTable::default();
        let a = session(&mut table, "a", now);
        let a = table.insert(a);
        table.bind(a, addr(1));
        assert_eq!(table.len(), 1);
        let removed = table.remove(a).unwrap();
        assert_eq!(&*removed.client_id, "a");
        assert_eq!(table.len(), 0);
        assert_eq!(table.find("a"), None);
        assert_eq!(table.at(&addr(1)), None);
        assert!(table.remove(a).is_none());
        let b = session(&mut table, "b", now);
        assert_eq!(table.insert(b), a, "the free slot is reused");
        assert_eq!(table.find("b"), Some(a));
    }

    #[test]
    fn timers_of_an_earlier_life_do_not_fire() {
        let now = Instant::now();
        let mut table = SessionTable::default();
        let a = session(&mut table, "a", now);
        let a = table.insert(a);
        table.arm(a, now + Duration::from_secs(2), TimerKind::Retry);
        table.arm(a, now + Duration::from_secs(1), TimerKind::Silence);
        assert_eq!(table.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(table.pop_due(now), None, "nothing is due yet");
        assert_eq!(
            table.pop_due(now + Duration::from_secs(1)),
            Some((a, TimerKind::Silence))
        );
        // A new life: the retry timer armed before belongs to the old one.
        let epoch = table.next_epoch();
        table.get_mut(a).unwrap().epoch = epoch;
        assert_eq!(table.pop_due(now + Duration::from_secs(5)), None);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn the_oldest_offline_session_is_chosen_for_eviction() {
        let now = Instant::now();
        let mut table = SessionTable::default();
        let mut old = session(&mut table, "old", now);
        old.state = State::Offline { since: Some(now) };
        let old = table.insert(old);
        let mut newer = session(&mut table, "newer", now);
        newer.state = State::Offline {
            since: Some(now + Duration::from_secs(1)),
        };
        table.insert(newer);
        let mut active = session(&mut table, "active", now);
        active.state = State::Active;
        let mut connecting = session(&mut table, "connecting", now);
        connecting.state = State::Offline { since: None };
        table.insert(connecting);
        table.insert(active);
        assert_eq!(table.oldest_offline(false), Some(old));
        table.remove(old);
        assert_eq!(table.oldest_offline(false), table.find("newer"));
    }
}
