//! Topic ids: the predefined table shared by all clients, and each session's own table of
//! normal ids (v1.2 §6.5, reference §4.6). Ids are per session, as the spec strongly advises:
//! a stale id from one client can never publish to another client's topic.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::Denied;

/// Predefined topic ids (TopicIdType `01`) from config.
#[derive(Debug, Default)]
pub(crate) struct Predefined {
    by_id: HashMap<u16, Arc<str>>,
}

impl Predefined {
    pub(crate) fn new(entries: &[(u16, String)]) -> Self {
        let mut table = Predefined::default();
        for (id, name) in entries {
            table.by_id.insert(*id, Arc::from(name.as_str()));
        }
        table
    }

    pub(crate) fn name(&self, id: u16) -> Option<&Arc<str>> {
        self.by_id.get(&id)
    }
}

/// One normal topic id of a session.
#[derive(Debug, Clone)]
struct Entry {
    id: u16,
    name: Arc<str>,
    /// The client knows this id: it registered it, got it in a SUBACK, or acknowledged our
    /// REGISTER. Cleared when a CleanSession=0 reconnect may have made the client forget it.
    known: bool,
    /// The policy's answer to publishing on this id, once asked: the broker's topic name
    /// (mountpoint put before it) or the refusal. Kept so that a mote publishing on a
    /// registered id costs one lookup, however many rules it has; forgotten whenever the
    /// session's grant is set again.
    publish: Option<Result<Arc<str>, Denied>>,
}

/// Why a topic could not be given an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

/// A session's normal topic ids. A short list: motes use few topics, and a vector of a few
/// entries is smaller and faster than two hash maps.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    entries: Vec<Entry>,
    /// Next id to try; ids are handed out in increasing order and wrap, so a freed id is not
    /// reused soon and a stale id from the client is caught rather than misrouted.
    next: u16,
    /// The policy's answers for predefined ids and short names this session published to
    /// (normal ids keep theirs in their entry); at most [`MAX_CACHED_OTHER`].
    other: Vec<(OtherTopic, Result<Arc<str>, Denied>)>,
}

/// A topic a PUBLISH names without a registered id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtherTopic {
    Predefined(u16),
    Short([u8; 2]),
}

/// Policy answers kept for predefined ids and short names per session: a mote uses a few; one
/// that cycles through many is answered from the rules each time rather than growing this.
const MAX_CACHED_OTHER: usize = 16;

impl TopicTable {
    pub(crate) fn name(&self, id: u16) -> Option<&Arc<str>> {
        self.entries.iter().find(|e| e.id == id).map(|e| &e.name)
    }

    /// The id of `name` and whether the client knows it.
    pub(crate) fn lookup(&self, name: &str) -> Option<(u16, bool)> {
        self.entries
            .iter()
            .find(|e| &*e.name == name)
            .map(|e| (e.id, e.known))
    }

    /// The id for `name`, assigning one if needed. `known` marks it as known to the client
    /// (set when the client itself registered it or will learn it from this reply).
    pub(crate) fn assign(
        &mut self,
        name: &Arc<str>,
        known: bool,
        max: usize,
    ) -> Result<u16, TableFull> {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.name == *name) {
            entry.known |= known;
            return Ok(entry.id);
        }
        if self.entries.len() >= max.min(usize::from(u16::MAX) - 1) {
            return Err(TableFull);
        }
        let id = loop {
            self.next = match self.next {
                0 | 0xFFFE.. => 1,
                n => n + 1,
            };
            let candidate = self.next;
            if !self.entries.iter().any(|e| e.id == candidate) {
                break candidate;
            }
        };
        self.entries.push(Entry {
            id,
            name: name.clone(),
            known,
            publish: None,
        });
        Ok(id)
    }

    /// Bytes of all names in the table (for `max_state_bytes`).
    pub(crate) fn name_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.name.len()).sum()
    }

    /// The policy's cached answer to publishing on `id`, if it was asked before.
    pub(crate) fn publish_authorization(&self, id: u16) -> Option<&Result<Arc<str>, Denied>> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.publish.as_ref())
    }

    /// Keeps the policy's answer to publishing on `id`.
    pub(crate) fn set_publish_authorization(&mut self, id: u16, answer: Result<Arc<str>, Denied>) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.publish = Some(answer);
        }
    }

    /// Forgets every cached policy answer (the session's grant changed).
    pub(crate) fn forget_authorizations(&mut self) {
        for entry in &mut self.entries {
            entry.publish = None;
        }
        self.other.clear();
    }

    /// The policy's cached answer for a predefined id or short name.
    pub(crate) fn other_authorization(
        &self,
        topic: OtherTopic,
    ) -> Option<&Result<Arc<str>, Denied>> {
        self.other.iter().find(|(t, _)| *t == topic).map(|(_, a)| a)
    }

    /// Keeps the policy's answer for a predefined id or short name, while there is room.
    pub(crate) fn set_other_authorization(
        &mut self,
        topic: OtherTopic,
        answer: Result<Arc<str>, Denied>,
    ) {
        if self.other.len() < MAX_CACHED_OTHER && self.other_authorization(topic).is_none() {
            self.other.push((topic, answer));
        }
    }

    /// The client acknowledged our REGISTER for `id`.
    pub(crate) fn mark_known(&mut self, id: u16) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.known = true;
        }
    }

    /// The client said it does not know `id` (PUBACK 0x02): register it again before use.
    pub(crate) fn mark_unknown(&mut self, id: u16) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.known = false;
        }
    }

    /// After a CleanSession=0 reconnect the client may have lost its ids: re-REGISTER each
    /// before the gateway next publishes on it.
    pub(crate) fn forget_all(&mut self) {
        for entry in &mut self.entries {
            entry.known = false;
        }
    }

    /// Every entry as (id, name, known), for the durable store.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u16, Arc<str>, bool)> + '_ {
        self.entries.iter().map(|e| (e.id, e.name.clone(), e.known))
    }

    /// Puts back a stored entry; ids go on from the highest one restored.
    pub(crate) fn restore(&mut self, id: u16, name: Arc<str>, known: bool) {
        if id == 0 || id == 0xFFFF || self.entries.iter().any(|e| e.id == id || e.name == name) {
            return;
        }
        self.next = self.next.max(id);
        self.entries.push(Entry {
            id,
            name,
            known,
            publish: None,
        });
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.other.clear();
    }
}

/// MQTT topic matching (MQTT 3.1.1 §4.7): `+` matches one level, `#` the rest (including the
/// parent level), and wildcards at the first level do not match topics starting with `$`.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matching_follows_mqtt_rules() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/c"));
        assert!(matches("a/+", "a/b"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "/x"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn ids_skip_reserved_values_and_are_reused_per_name() {
        let mut table = TopicTable::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let id_a = table.assign(&a, true, 10).unwrap();
        assert_eq!(id_a, 1);
        assert_eq!(table.assign(&a, false, 10).unwrap(), id_a);
        table.next = 0xFFFD;
        let id_b = table.assign(&b, false, 10).unwrap();
        assert_eq!(id_b, 0xFFFE);
        let c: Arc<str> = Arc::from("c");
        // Wraps past 0xFFFF and 0x0000, and skips 1 which "a" holds.
        assert_eq!(table.assign(&c, false, 10).unwrap(), 2);
        assert_eq!(table.lookup("b"), Some((0xFFFE, false)));
        table.mark_known(0xFFFE);
        assert_eq!(table.lookup("b"), Some((0xFFFE, true)));
        table.forget_all();
        assert_eq!(table.lookup("a"), Some((1, false)));
        let d: Arc<str> = Arc::from("d");
        assert_eq!(table.assign(&d, true, 3), Err(TableFull));
    }
}
