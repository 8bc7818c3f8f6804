//! Upstream subscriptions in aggregating mode: the gateway holds one subscription per filter at
//! the broker, shared by every session that asked for it.
//!
//! [`Upstream`] owns three invariants: a filter is held exactly as long as it has a subscriber
//! (the last one out removes it, and the caller is told to UNSUBSCRIBE upstream); the wildcard
//! list names exactly the wildcard filters held (exact filters are found by hash); and a
//! filter's SUBACK count never passes the count of SUBSCRIBEs sent for it. It also keeps the
//! routing rule for retained messages: the broker sends the retained messages a SUBSCRIBE
//! brings right after its SUBACK, so a Retain=1 message goes only to the subscribers of the
//! most recently acknowledged filter that subscribed at that SUBSCRIBE (see [`Matched`]).

use std::collections::HashMap;
use std::sync::Arc;

use sn_codec::validate;

use crate::broker::{BrokerCommand, MqttQoS};
use crate::session::SessionIdx;
use crate::topics;

/// One upstream subscription.
#[derive(Debug, Default)]
struct Filter {
    /// Sessions subscribed to it.
    subscribers: Vec<SessionIdx>,
    /// Upstream SUBSCRIBEs sent for it so far; each new client subscription sends one, so the
    /// broker sends its retained messages again for that client (MQTT 3.1.1 §3.8.4).
    sent: u64,
    /// SUBACKs received for it so far (they arrive in order on one connection).
    acked: u64,
    /// The QoS asked upstream: the highest any subscriber asked for.
    qos: Option<MqttQoS>,
}

impl Filter {
    /// Adds `idx` to the subscribers (once) and raises the upstream QoS to `qos` if it is
    /// higher; returns the QoS to ask upstream.
    fn add(&mut self, idx: SessionIdx, qos: MqttQoS) -> MqttQoS {
        if !self.subscribers.contains(&idx) {
            self.subscribers.push(idx);
        }
        let upstream = self.qos.map_or(qos, |q| q.max(qos));
        self.qos = Some(upstream);
        upstream
    }
}

/// All upstream subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Upstream {
    /// Every filter held, by its text.
    filters: HashMap<Arc<str>, Filter>,
    /// The filter of the most recently acknowledged SUBSCRIBE. The broker sends the retained
    /// messages a SUBSCRIBE brings right after its SUBACK, so every Retain=1 message belongs
    /// to this filter's latest subscribers, and to nobody else.
    last_acked: Option<Arc<str>>,
    /// Filters with wildcards, matched one by one; exact filters are found by hash.
    wildcards: Vec<Arc<str>>,
}

/// The broker acknowledged a SUBSCRIBE of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubAcked {
    /// The SUBSCRIBEs of this filter acknowledged so far: every client subscription made at a
    /// generation up to this one has its answer.
    pub(crate) acked: u64,
    /// The filter's subscribers, the ones that may be waiting for this answer.
    pub(crate) waiting: Vec<SessionIdx>,
}

/// One held filter that a broker message matches, and who gets the message through it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matched<'a> {
    /// The filter, as held.
    pub(crate) filter: &'a Arc<str>,
    /// The sessions subscribed to it.
    pub(crate) subscribers: &'a [SessionIdx],
    /// For a retained message: the only generation of client subscription it is for (the
    /// latest acknowledged SUBSCRIBE's); `None` for a live message, which is for everyone.
    only_generation: Option<u64>,
}

impl Matched<'_> {
    /// Whether a subscriber's subscription to this filter, made at upstream SUBSCRIBE
    /// `generation`, gets the message.
    pub(crate) fn wants(&self, generation: u64) -> bool {
        self.only_generation.is_none_or(|g| g == generation)
    }
}

impl Upstream {
    /// Session `idx` subscribes to `filter` at `requested`: it becomes a subscriber and one
    /// more SUBSCRIBE goes upstream (so the broker sends the retained messages again, for it).
    /// Returns that SUBSCRIBE's generation and the QoS to ask, the highest any subscriber
    /// asked for.
    pub(crate) fn subscribe(
        &mut self,
        filter: &Arc<str>,
        idx: SessionIdx,
        requested: MqttQoS,
    ) -> (u64, MqttQoS) {
        let entry = self.hold(filter);
        let qos = entry.add(idx, requested);
        entry.sent += 1;
        (entry.sent, qos)
    }

    /// Re-creates a subscription restored after a restart, without sending anything: every
    /// filter is subscribed upstream when the broker link comes up
    /// ([`resubscribe`](Self::resubscribe)).
    pub(crate) fn restore(&mut self, filter: &Arc<str>, idx: SessionIdx, qos: MqttQoS) {
        self.hold(filter).add(idx, qos);
    }

    /// The broker acknowledged a SUBSCRIBE of `filter` (SUBACKs come in order): counts it and
    /// makes `filter` the one retained messages are for. `None` for a filter not held.
    pub(crate) fn suback(&mut self, filter: &str) -> Option<SubAcked> {
        let key = self.filters.get_key_value(filter)?.0.clone();
        let entry = self.filters.get_mut(filter)?;
        entry.acked = (entry.acked + 1).min(entry.sent);
        let acked = SubAcked {
            acked: entry.acked,
            waiting: entry.subscribers.clone(),
        };
        self.last_acked = Some(key);
        Some(acked)
    }

    /// Session `idx` no longer uses `filter`. Returns the filter when that was its last
    /// subscriber: it is no longer held, and an UNSUBSCRIBE goes upstream.
    pub(crate) fn unsubscribe(&mut self, filter: &str, idx: SessionIdx) -> Option<Arc<str>> {
        let entry = self.filters.get_mut(filter)?;
        entry.subscribers.retain(|&s| s != idx);
        if !entry.subscribers.is_empty() {
            return None;
        }
        let (filter, _) = self.filters.remove_entry(filter)?;
        self.wildcards.retain(|w| *w != filter);
        Some(filter)
    }

    /// Every filter held, in sorted order: the same state gives the same commands in the
    /// same order in every process (a hash map's order differs from run to run), so that a
    /// simulated run replays exactly from its seed. Called on broker switches only.
    pub(crate) fn filters(&self) -> Vec<Arc<str>> {
        let mut filters: Vec<Arc<str>> = self.filters.keys().cloned().collect();
        filters.sort();
        filters
    }

    /// After a (re)connect: a SUBSCRIBE of every filter, whether or not the broker kept the
    /// session. SUBACKs lost with the old connection will never come, so they count as
    /// received; the new SUBSCRIBEs are a generation of their own that no client subscription
    /// belongs to, so their retained copies go to nobody.
    pub(crate) fn resubscribe(&mut self) -> Vec<BrokerCommand> {
        let mut commands = Vec::with_capacity(self.filters.len());
        self.last_acked = None;
        for (filter, entry) in &mut self.filters {
            entry.acked = entry.sent;
            entry.sent += 1;
            if let Some(qos) = entry.qos {
                commands.push(BrokerCommand::Subscribe {
                    filter: filter.clone(),
                    qos,
                });
            }
        }
        // In sorted order, as `filters` (a reconnect's cost, not a message's).
        commands.sort_by(|a, b| match (a, b) {
            (
                BrokerCommand::Subscribe { filter: a, .. },
                BrokerCommand::Subscribe { filter: b, .. },
            ) => a.cmp(b),
            _ => std::cmp::Ordering::Equal,
        });
        commands
    }

    /// The held filters a broker message on `topic` matches: the exact one by hash, then the
    /// wildcards one by one. A retained message matches only the most recently acknowledged
    /// filter, and only its subscribers of that SUBSCRIBE ([`Matched::wants`]).
    pub(crate) fn matching<'a>(
        &'a self,
        topic: &'a str,
        retain: bool,
    ) -> impl Iterator<Item = Matched<'a>> + 'a {
        let exact = self
            .filters
            .get_key_value(topic)
            .filter(|(f, _)| !validate::is_wildcard(f));
        let wildcard = self
            .wildcards
            .iter()
            .filter(move |f| topics::matches(f, topic))
            .filter_map(|f| self.filters.get_key_value(f));
        exact
            .into_iter()
            .chain(wildcard)
            .filter(move |(filter, _)| !retain || self.last_acked.as_ref() == Some(*filter))
            .map(move |(filter, entry)| Matched {
                filter,
                subscribers: &entry.subscribers,
                only_generation: retain.then_some(entry.acked),
            })
    }

    /// The entry of `filter`, created (and listed as a wildcard if it is one) when not held.
    fn hold(&mut self, filter: &Arc<str>) -> &mut Filter {
        let entry = self.filters.entry(filter.clone()).or_default();
        if entry.subscribers.is_empty() && validate::is_wildcard(filter) {
            self.wildcards.push(filter.clone());
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    const Q0: MqttQoS = MqttQoS::AtMostOnce;
    const Q1: MqttQoS = MqttQoS::AtLeastOnce;
    const Q2: MqttQoS = MqttQoS::ExactlyOnce;

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    /// (filter, subscribers) of each match, sorted by filter.
    fn matched(up: &Upstream, topic: &str, retain: bool) -> Vec<(String, Vec<SessionIdx>)> {
        let mut found: Vec<(String, Vec<SessionIdx>)> = up
            .matching(topic, retain)
            .map(|m| (m.filter.to_string(), m.subscribers.to_vec()))
            .collect();
        found.sort();
        found
    }

    fn subscribes(commands: &[BrokerCommand]) -> Vec<(String, MqttQoS)> {
        let mut found: Vec<(String, MqttQoS)> = commands
            .iter()
            .map(|c| match c {
                BrokerCommand::Subscribe { filter, qos } => (filter.to_string(), *qos),
                other => panic!("not a SUBSCRIBE: {other:?}"),
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_second_subscriber_asking_more_raises_the_upstream_qos_and_never_lowers_it() {
        let mut up = Upstream::default();
        let f = name("a/b");
        assert_eq!(up.subscribe(&f, 1, Q0), (1, Q0));
        assert_eq!(up.subscribe(&f, 2, Q2), (2, Q2));
        // A third asking less keeps the highest.
        assert_eq!(up.subscribe(&f, 3, Q1), (3, Q2));
        // A restored one asking less too.
        up.restore(&f, 4, Q0);
        assert_eq!(subscribes(&up.resubscribe()), vec![("a/b".into(), Q2)]);
    }

    #[test]
    fn a_subscriber_is_counted_once_however_often_it_subscribes() {
        let mut up = Upstream::default();
        let f = name("a/b");
        assert_eq!(up.subscribe(&f, 1, Q1), (1, Q1));
        // A repeated SUBSCRIBE is a new generation (the retained messages again) but the same
        // subscriber.
        assert_eq!(up.subscribe(&f, 1, Q1), (2, Q1));
        assert_eq!(matched(&up, "a/b", false), vec![("a/b".into(), vec![1])]);
    }

    #[test]
    fn subacks_are_counted_per_filter_and_never_pass_the_subscribes_sent() {
        let mut up = Upstream::default();
        let f = name("a/b");
        let g = name("c/+");
        up.subscribe(&f, 1, Q1);
        up.subscribe(&f, 2, Q1);
        up.subscribe(&g, 1, Q0);
        let first = up.suback("a/b").unwrap();
        assert_eq!(first.acked, 1);
        assert_eq!(first.waiting, vec![1, 2]);
        assert_eq!(up.suback("c/+").unwrap().acked, 1);
        assert_eq!(up.suback("a/b").unwrap().acked, 2);
        // A SUBACK nobody asked for (a duplicate) counts nothing more.
        assert_eq!(up.suback("a/b").unwrap().acked, 2);
        // None for a filter not held.
        assert_eq!(up.suback("x"), None);
    }

    #[test]
    fn a_retained_message_goes_only_to_the_latest_acknowledged_filters_new_subscribers() {
        let mut up = Upstream::default();
        let exact = name("a/b");
        let wild = name("a/#");
        assert_eq!(up.subscribe(&exact, 1, Q1).0, 1);
        assert_eq!(up.subscribe(&wild, 2, Q1).0, 1);
        // Live messages go to every matching filter whatever was acknowledged.
        let live: Vec<_> = up.matching("a/b", false).collect();
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|m| m.wants(0) && m.wants(7)));
        // No SUBACK yet: a retained message is for nobody.
        assert_eq!(up.matching("a/b", true).count(), 0);

        up.suback("a/b").unwrap();
        assert_eq!(matched(&up, "a/b", true), vec![("a/b".into(), vec![1])]);
        up.suback("a/#").unwrap();
        assert_eq!(matched(&up, "a/b", true), vec![("a/#".into(), vec![2])]);

        // A second subscriber of a/#: its SUBSCRIBE's retained copies are for it alone.
        assert_eq!(up.subscribe(&wild, 3, Q1).0, 2);
        up.suback("a/#").unwrap();
        let retained: Vec<_> = up.matching("a/b", true).collect();
        assert_eq!(retained.len(), 1);
        assert!(retained[0].wants(2), "the new subscription gets it");
        assert!(!retained[0].wants(1), "the older one had it already");
    }

    #[test]
    fn wildcards_are_matched_one_by_one_and_exact_filters_by_name() {
        let mut up = Upstream::default();
        for (i, f) in ["a/b", "a/+", "a/#", "+/b", "#", "x/y", "a/b/c"]
            .into_iter()
            .enumerate()
        {
            up.subscribe(&name(f), i, Q0);
        }
        let names = |topic| -> Vec<String> {
            matched(&up, topic, false)
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert_eq!(names("a/b"), vec!["#", "+/b", "a/#", "a/+", "a/b"]);
        assert_eq!(names("a/b/c"), vec!["#", "a/#", "a/b/c"]);
        assert_eq!(names("a"), vec!["#", "a/#"]);
        assert_eq!(names("z/q"), vec!["#"]);
        // Wildcards at the first level do not match `$` topics.
        assert_eq!(names("$SYS/b"), Vec::<String>::new());
        // A topic that spells a wildcard filter is not an exact match of it.
        assert_eq!(names("a/+"), vec!["#", "a/#", "a/+"]);
    }

    #[test]
    fn the_last_subscriber_out_removes_the_filter_and_unsubscribes_upstream() {
        let mut up = Upstream::default();
        let f = name("a/+");
        up.subscribe(&f, 1, Q1);
        up.subscribe(&f, 2, Q1);
        assert_eq!(up.unsubscribe("a/+", 1), None, "still used by 2");
        assert_eq!(matched(&up, "a/x", false), vec![("a/+".into(), vec![2])]);
        // Someone who never subscribed changes nothing.
        assert_eq!(up.unsubscribe("a/+", 9), None);
        assert_eq!(up.unsubscribe("a/+", 2).as_deref(), Some("a/+"));
        assert!(up.filters().is_empty());
        assert_eq!(up.matching("a/x", false).count(), 0, "no wildcard left");
        assert_eq!(up.unsubscribe("a/+", 2), None, "not held any more");
        assert!(up.resubscribe().is_empty());

        // Held again: listed as a wildcard once, and matched once.
        up.subscribe(&f, 3, Q0);
        assert_eq!(matched(&up, "a/x", false), vec![("a/+".into(), vec![3])]);
    }

    #[test]
    fn a_reconnect_resubscribes_every_filter_as_a_generation_of_its_own() {
        let mut up = Upstream::default();
        let f = name("a/b");
        let g = name("c/#");
        // Subscribed, its SUBACK lost with the connection.
        assert_eq!(up.subscribe(&f, 1, Q1).0, 1);
        // Restored after a restart: held, nothing sent yet.
        up.restore(&g, 2, Q2);
        // Acknowledged before the connection went: its retained messages were for session 4.
        up.subscribe(&name("x/y"), 4, Q0);
        up.suback("x/y").unwrap();
        assert_eq!(up.matching("x/y", true).count(), 1);
        let mut filters: Vec<String> = up.filters().iter().map(|f| f.to_string()).collect();
        filters.sort();
        assert_eq!(filters, vec!["a/b", "c/#", "x/y"]);

        assert_eq!(
            subscribes(&up.resubscribe()),
            vec![("a/b".into(), Q1), ("c/#".into(), Q2), ("x/y".into(), Q0)]
        );
        // The retained copies the resubscriptions bring go to no client.
        assert_eq!(up.matching("x/y", true).count(), 0);
        assert_eq!(up.matching("a/b", true).count(), 0);
        // The lost SUBACK counts as received: the next one answers the resubscription.
        let acked = up.suback("a/b").unwrap();
        assert_eq!(acked.acked, 2, "the resubscription's own generation");
        assert!(!up.matching("a/b", true).any(|m| m.wants(1)));
        // A new subscriber after the resubscription is answered by the SUBACK after it.
        assert_eq!(up.subscribe(&g, 3, Q0), (2, Q2));
        assert_eq!(up.suback("c/#").unwrap().acked, 1);
        assert_eq!(up.suback("c/#").unwrap().acked, 2);
    }
}
