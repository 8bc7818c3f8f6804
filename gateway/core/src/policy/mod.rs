//! The security policy: who may connect and from where (admission), which topics each mote
//! may publish and subscribe to (authorization), and the mountpoint that confines a mote's
//! topics. Checked at CONNECT, wake-up, REGISTER, PUBLISH (QoS -1 included) and SUBSCRIBE,
//! before anything reaches a broker.

use std::sync::Arc;

use crate::peer::ClientAddr;

mod address;
mod pattern;
mod settings;

pub use address::AddrPattern;
pub use settings::{Admission, MinusOneRules, MoteEntry, PolicyConfig, TopicRules};

use pattern::{IdPattern, TopicPattern};

/// Why the policy refused something; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Admission is `listed` and no `[[mote]]` entry names the client id.
    NotListed,
    /// The mote's entry binds it to another link.
    WrongLink,
    /// The mote's entry binds it to other addresses.
    WrongAddress,
    /// The mountpoint names `%c` and the client id holds `/`, `+` or `#`.
    UnusableClientId,
    /// A PUBLISH (or Will) to a topic no publish rule allows.
    Publish,
    /// A SUBSCRIBE to a filter no subscribe rule covers.
    Subscribe,
    /// A REGISTER of a topic the mote may neither publish nor subscribe to.
    Register,
    /// A topic or filter beginning with `$`, which only a rule naming it allows.
    DollarTopic,
    /// A QoS -1 PUBLISH to a topic `qos_minus_one_publish` does not allow.
    MinusOneTopic,
    /// A QoS -1 PUBLISH from an address `qos_minus_one_from` does not list.
    MinusOneAddress,
    /// The link authenticated the peer as an identity that does not speak for this client
    /// id (by default an identity speaks for the client id equal to it).
    IdentityMismatch,
    /// The client id's entry names an identity, and the peer was not authenticated (a plain
    /// UDP or serial link).
    NotAuthenticated,
}

impl Denied {
    /// The reason in words, for logs and the CONNECT refusal event.
    pub fn as_str(&self) -> &'static str {
        match self {
            Denied::NotListed => "client id not listed ([policy] admission = \"listed\")",
            Denied::WrongLink => "client id bound to another link",
            Denied::WrongAddress => "client id bound to other addresses",
            Denied::UnusableClientId => {
                "client id holds '/', '+' or '#' and the mountpoint names %c"
            }
            Denied::Publish => "topic not allowed to publish",
            Denied::Subscribe => "filter not allowed to subscribe",
            Denied::Register => "topic neither publishable nor subscribable",
            Denied::DollarTopic => "topics beginning with '$' are not allowed",
            Denied::MinusOneTopic => "QoS -1 topic not allowed",
            Denied::MinusOneAddress => "QoS -1 not allowed from this address",
            Denied::IdentityMismatch => {
                "the authenticated identity does not speak for this client id"
            }
            Denied::NotAuthenticated => {
                "this client id must connect over an authenticated (DTLS) link"
            }
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admitted mote may do, with its client id already put into the rules.
#[derive(Debug)]
pub(crate) struct Grant {
    /// Admitted by a `[[mote]]` entry (not only by the open policy).
    listed: bool,
    /// Its entry ties it to a link or addresses: a broker login for this client id may be
    /// used for it (transparent mode).
    bound: bool,
    roaming: bool,
    publish: Vec<TopicPattern>,
    subscribe: Vec<TopicPattern>,
    mountpoint: Option<Arc<str>>,
}

impl Grant {
    /// Admitted by a `[[mote]]` entry, not only by the open policy.
    pub(crate) fn listed(&self) -> bool {
        self.listed
    }

    /// Admitted by an entry that binds it to a link or addresses.
    pub(crate) fn bound(&self) -> bool {
        self.bound
    }

    /// May move to another address its entry allows.
    pub(crate) fn roaming(&self) -> bool {
        self.roaming
    }

    /// Whether the mote may publish to `topic` (as it names it, before the mountpoint).
    pub(crate) fn may_publish(&self, topic: &str) -> Result<(), Denied> {
        if self.publish.iter().any(|rule| rule.matches(topic)) {
            return Ok(());
        }
        Err(if topic.starts_with('$') {
            Denied::DollarTopic
        } else {
            Denied::Publish
        })
    }

    /// Whether the mote may subscribe to `filter` (as it names it, before the mountpoint).
    pub(crate) fn may_subscribe(&self, filter: &str) -> Result<(), Denied> {
        if self.subscribe.iter().any(|rule| rule.covers(filter)) {
            return Ok(());
        }
        Err(if filter.starts_with('$') {
            Denied::DollarTopic
        } else {
            Denied::Subscribe
        })
    }

    /// Whether the mote may register `name`: it must be able to publish to it or subscribe
    /// to it.
    pub(crate) fn may_register(&self, name: &str) -> Result<(), Denied> {
        match (self.may_publish(name), self.may_subscribe(name)) {
            (Ok(()), _) | (_, Ok(())) => Ok(()),
            (Err(Denied::DollarTopic), _) => Err(Denied::DollarTopic),
            _ => Err(Denied::Register),
        }
    }

    /// The broker's name for a topic or filter the mote named.
    pub(crate) fn mount(&self, name: Arc<str>) -> Arc<str> {
        match &self.mountpoint {
            Some(prefix) => Arc::from(format!("{prefix}{name}")),
            None => name,
        }
    }

    /// The mote's name for a broker topic, `None` when it lies outside the mountpoint.
    pub(crate) fn unmount(&self, topic: &Arc<str>) -> Option<Arc<str>> {
        match &self.mountpoint {
            Some(prefix) => topic.strip_prefix(&**prefix).map(Arc::from),
            None => Some(topic.clone()),
        }
    }
}

/// One `[[mote]]` entry, compiled.
#[derive(Debug)]
struct Entry {
    id: IdPattern,
    config: MoteEntry,
    roaming: bool,
    /// The grant every mote of this entry shares when its rules do not name `%c`.
    shared: Option<Arc<Grant>>,
}

/// The compiled policy; see the module docs.
#[derive(Debug)]
pub(crate) struct Policy {
    admission: Admission,
    rules: TopicRules,
    /// The grant of open-admitted motes when the rules do not name `%c`.
    open_shared: Option<Arc<Grant>>,
    default_roaming: bool,
    entries: Vec<Entry>,
    minus_one_publish: Vec<TopicPattern>,
    minus_one_from: Vec<AddrPattern>,
}

impl Policy {
    /// Compiles `config`. `roaming` is `[gateway] roaming`, the default of every entry. Rules
    /// that do not parse are skipped (the config crate refuses them before this).
    pub(crate) fn new(config: &PolicyConfig, roaming: bool) -> Self {
        let entries = config
            .motes
            .iter()
            .map(|entry| {
                let roaming = entry.roaming.unwrap_or(roaming);
                Entry {
                    id: IdPattern::new(&entry.client_id),
                    shared: (!names_client(&entry.rules)).then(|| {
                        Arc::new(grant(&entry.rules, "", true, entry.is_bound(), roaming))
                    }),
                    config: entry.clone(),
                    roaming,
                }
            })
            .collect();
        let minus_one_rules = match (&config.minus_one.publish, config.admission) {
            (Some(rules), _) => rules.clone(),
            (None, Admission::Open) => config.rules.publish.clone(),
            (None, Admission::Listed) => Vec::new(),
        };
        Policy {
            admission: config.admission,
            open_shared: (!names_client(&config.rules))
                .then(|| Arc::new(grant(&config.rules, "", false, false, roaming))),
            rules: config.rules.clone(),
            default_roaming: roaming,
            entries,
            minus_one_publish: minus_one_rules
                .iter()
                .filter(|rule| !rule.contains("%c"))
                .filter_map(|rule| TopicPattern::compile(rule, ""))
                .collect(),
            minus_one_from: config.minus_one.from.clone(),
        }
    }

    /// Whether `client_id` may connect from `addr`, and what it may then do.
    ///
    /// `identity` is what the link authenticated (a DTLS PSK identity or certificate name),
    /// `None` on links without authentication. An authenticated peer speaks for one client id:
    /// the one the `[[mote]]` entry naming its identity allows, else the identity itself. An
    /// entry that names an identity admits only a peer authenticated as it.
    pub(crate) fn admit(
        &self,
        client_id: &str,
        addr: &ClientAddr,
        identity: Option<&str>,
    ) -> Result<Arc<Grant>, Denied> {
        let entry = self.entry_for(client_id, identity);
        if let Some(identity) = identity {
            let speaks_for = match entry.filter(|e| e.config.identity.as_deref() == Some(identity))
            {
                Some(entry) => entry.id.matches(client_id),
                None => identity == client_id,
            };
            if !speaks_for {
                return Err(Denied::IdentityMismatch);
            }
        }
        if let Some(entry) = entry {
            match (&entry.config.identity, identity) {
                (Some(_), None) => return Err(Denied::NotAuthenticated),
                (Some(required), Some(identity)) if required != identity => {
                    return Err(Denied::IdentityMismatch)
                }
                _ => {}
            }
            if entry.config.link.is_some_and(|link| link != addr.peer.link) {
                return Err(Denied::WrongLink);
            }
            let addresses = &entry.config.addresses;
            if !addresses.is_empty() && !addresses.iter().any(|a| a.matches(&addr.peer.addr)) {
                return Err(Denied::WrongAddress);
            }
        }
        self.grant_for(client_id, identity)
    }

    /// The entry that decides for `client_id`: the one naming `identity`, if the peer was
    /// authenticated as one an entry names, else the first whose client id pattern matches.
    fn entry_for(&self, client_id: &str, identity: Option<&str>) -> Option<&Entry> {
        identity
            .and_then(|identity| {
                self.entries
                    .iter()
                    .find(|e| e.config.identity.as_deref() == Some(identity))
            })
            .or_else(|| self.entries.iter().find(|e| e.id.matches(client_id)))
    }

    /// The grant of `client_id` (authenticated as `identity`, if it was) wherever it
    /// connects from: for a session restored from the store (its address was checked when it
    /// connected), or `Err` when the policy no longer admits it.
    pub(crate) fn grant_for(
        &self,
        client_id: &str,
        identity: Option<&str>,
    ) -> Result<Arc<Grant>, Denied> {
        let entry = self.entry_for(client_id, identity);
        let (rules, listed, bound, roaming, shared) = match entry {
            Some(entry) => (
                &entry.config.rules,
                true,
                entry.config.is_bound(),
                entry.roaming,
                &entry.shared,
            ),
            None if self.admission == Admission::Open => (
                &self.rules,
                false,
                false,
                self.default_roaming,
                &self.open_shared,
            ),
            None => return Err(Denied::NotListed),
        };
        if let Some(shared) = shared {
            return Ok(shared.clone());
        }
        let mountpoint_names_client = rules
            .mountpoint
            .as_deref()
            .is_some_and(|m| m.contains("%c"));
        if mountpoint_names_client && (client_id.contains(['/', '+', '#']) || client_id.is_empty())
        {
            return Err(Denied::UnusableClientId);
        }
        Ok(Arc::new(grant(rules, client_id, listed, bound, roaming)))
    }

    /// Whether a QoS -1 PUBLISH to `topic` from `addr`, which has no session, is allowed.
    pub(crate) fn minus_one(&self, addr: &ClientAddr, topic: &str) -> Result<(), Denied> {
        self.minus_one_from_allowed(addr)?;
        if self
            .minus_one_publish
            .iter()
            .any(|rule| rule.matches(topic))
        {
            return Ok(());
        }
        Err(if topic.starts_with('$') {
            Denied::DollarTopic
        } else {
            Denied::MinusOneTopic
        })
    }

    /// Whether QoS -1 PUBLISHes are taken from `addr` at all (`qos_minus_one_from`).
    pub(crate) fn minus_one_from_allowed(&self, addr: &ClientAddr) -> Result<(), Denied> {
        if self.minus_one_from.is_empty()
            || self
                .minus_one_from
                .iter()
                .any(|a| a.matches(&addr.peer.addr))
        {
            Ok(())
        } else {
            Err(Denied::MinusOneAddress)
        }
    }
}

/// Whether the rules name `%c` (then each mote needs its own compiled grant).
fn names_client(rules: &TopicRules) -> bool {
    rules
        .publish
        .iter()
        .chain(&rules.subscribe)
        .chain(rules.mountpoint.as_ref())
        .any(|text| text.contains("%c"))
}

fn grant(rules: &TopicRules, client_id: &str, listed: bool, bound: bool, roaming: bool) -> Grant {
    let compile = |list: &[String]| {
        list.iter()
            .filter_map(|rule| TopicPattern::compile(rule, client_id))
            .collect()
    };
    Grant {
        listed,
        bound,
        roaming,
        publish: compile(&rules.publish),
        subscribe: compile(&rules.subscribe),
        // Always ending with '/', so that one mote's mountpoint is never a prefix of
        // another's (the config refuses one without it; this holds for any caller).
        mountpoint: rules
            .mountpoint
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| {
                let mut mounted = m.replace("%c", client_id);
                if !mounted.ends_with('/') {
                    mounted.push('/');
                }
                Arc::from(mounted)
            }),
    }
}

/// Checks a topic rule as the config crate reads it; the error says what is wrong.
pub fn check_topic_rule(rule: &str) -> Result<(), String> {
    TopicPattern::check(rule)
}

/// Checks a mountpoint: no wildcards, not beginning with `$`, ending with `/`; the error says
/// what is wrong.
pub fn check_mountpoint(mountpoint: &str) -> Result<(), String> {
    if mountpoint.contains(['+', '#']) {
        return Err(format!(
            "{mountpoint:?}: a mountpoint cannot hold '+' or '#'"
        ));
    }
    if mountpoint.starts_with('$') {
        return Err(format!(
            "{mountpoint:?}: a mountpoint cannot begin with '$'"
        ));
    }
    if !mountpoint.is_empty() && !mountpoint.ends_with('/') {
        return Err(format!(
            "{mountpoint:?}: a mountpoint must end with '/' (\"{mountpoint}/\"): without it \
             \"site/m-1\" would be a prefix of \"site/m-10/...\", and a mote's \"#\" would \
             become an invalid filter"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
