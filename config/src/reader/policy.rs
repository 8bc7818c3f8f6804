//! Reading `[policy]` and `[[mote]]`, resolving what a `[[mote]]` entry leaves to `[policy]`
//! and the link each entry names, and the warnings about a policy that leaves the gateway open.
//!
//! A `[[mote]]` entry takes `[policy]`'s topic rules when it states none, and names its link by
//! a `[[udp]]` bind address or a `[[serial]]` device, both of which may come later in the file:
//! the entries are read first and completed once the whole file is read.

use std::ops::Range;

use sn_core::{
    check_mountpoint, check_topic_rule, AddrPattern, Admission, LinkId, MoteEntry, PolicyConfig,
};
use toml::de::{DeTable, DeValue};

use super::credentials::Entry as CredentialsEntry;
use super::{join, set, Reader, Value};
use crate::values::parse_socket_addr;
use crate::{BrokerMode, Config, DtlsConfig, SerialConfig, SerialDevice, UdpConfig};

/// Longest identity a `[[mote]]` may name, in bytes: a DTLS link authenticates none longer
/// (libssl's bound on a PSK identity).
const MAX_IDENTITY_LEN: usize = 128;

/// The options of `[policy]`.
pub(crate) const POLICY_KEYS: [&str; 6] = [
    "admission",
    "publish",
    "subscribe",
    "mountpoint",
    "qos_minus_one_publish",
    "qos_minus_one_from",
];
/// The options of each `[[mote]]`.
pub(crate) const MOTE_KEYS: [&str; 8] = [
    "client_id",
    "address",
    "link",
    "identity",
    "roaming",
    "publish",
    "subscribe",
    "mountpoint",
];

/// The names `[policy] admission` accepts, for messages.
const ADMISSION_NAMES: &str = "\"open\" or \"listed\"";

/// Where `[policy]`'s settings are, for the checks made once the whole file is read.
#[derive(Default)]
pub(super) struct PolicySpans {
    /// The `admission` key.
    admission: Option<Range<usize>>,
    /// Each `qos_minus_one_publish` element that is `"#"`, with its field path.
    minus_one_everything: Vec<(Range<usize>, String)>,
}

/// One `[[mote]]` as read: what it says, and what it leaves to `[policy]` (`None`).
pub(super) struct MoteRead {
    /// Its field path, `mote[N]`.
    field: String,
    client_id: String,
    /// The `client_id` value.
    client_id_span: Range<usize>,
    /// The link's name as written, and the value's span.
    link: Option<(String, Range<usize>)>,
    /// The identity a DTLS link must have authenticated, and the value's span.
    identity: Option<(String, Range<usize>)>,
    addresses: Vec<AddrPattern>,
    /// The value and the `roaming` key's span.
    roaming: Option<(bool, Range<usize>)>,
    publish: Option<Vec<String>>,
    subscribe: Option<Vec<String>>,
    /// `Some(None)`: `mountpoint = ""`, none even when `[policy]` has one.
    mountpoint: Option<Option<String>>,
}

impl MoteRead {
    /// Whether the entry ties its motes to a link, addresses or an authenticated identity
    /// (as `MoteEntry::is_bound`).
    fn is_bound(&self) -> bool {
        self.link.is_some() || !self.addresses.is_empty() || self.identity.is_some()
    }
}

impl Reader<'_> {
    /// `[policy]` into `config.core.policy` (its `motes` come from `[[mote]]`).
    pub(super) fn policy(&mut self, table: &DeTable<'_>, policy: &mut PolicyConfig) -> PolicySpans {
        let mut spans = PolicySpans::default();
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join("policy", name);
            match name {
                "admission" => {
                    spans.admission = Some(key.span());
                    if let Some(text) = self.string(v, &f, ADMISSION_NAMES) {
                        match text.trim() {
                            "open" => policy.admission = Admission::Open,
                            "listed" => policy.admission = Admission::Listed,
                            _ => self.issue(
                                v.span(),
                                &f,
                                format!("{text:?} is not an admission; use {ADMISSION_NAMES}"),
                            ),
                        }
                    }
                }
                "publish" => set(&mut policy.rules.publish, self.topic_rules(v, &f)),
                "subscribe" => set(&mut policy.rules.subscribe, self.topic_rules(v, &f)),
                "mountpoint" => set(&mut policy.rules.mountpoint, self.mountpoint(v, &f)),
                "qos_minus_one_publish" => {
                    let Some(rules) = self.minus_one_rules(v, &f) else {
                        continue;
                    };
                    if let DeValue::Array(items) = v.get_ref() {
                        spans.minus_one_everything = items
                            .iter()
                            .enumerate()
                            .filter(|(_, item)| {
                                matches!(item.get_ref(), DeValue::String(s) if s.trim() == "#")
                            })
                            .map(|(i, item)| (item.span(), format!("{f}[{i}]")))
                            .collect();
                    }
                    policy.minus_one.publish = Some(rules);
                }
                "qos_minus_one_from" => {
                    set(&mut policy.minus_one.from, self.addresses(v, &f, false));
                }
                _ => self.unknown_key(key, "policy", "policy"),
            }
        }
        spans
    }

    /// `[[mote]]`: the entries in file order, without what they leave to `[policy]`.
    pub(super) fn motes(&mut self, value: &Value<'_>) -> Vec<MoteRead> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.issue(
                    value.span(),
                    "mote",
                    "write [[mote]] with double brackets: each [[mote]] section is one mote, or \
                     one client id pattern",
                );
                return Vec::new();
            }
            _ => {
                let message = format!(
                    "expected one or more [[mote]] sections, found {}",
                    self.describe(value)
                );
                self.issue(value.span(), "mote", message);
                return Vec::new();
            }
        };
        let mut motes = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("mote[{index}]");
            let DeValue::Table(table) = item.get_ref() else {
                let message = format!(
                    "expected a [[mote]] section or a table like {{ client_id = \"mote-1\", \
                     address = \"192.168.1.20\" }}, found {}",
                    self.describe(item)
                );
                self.issue(item.span(), &field, message);
                continue;
            };
            if let Some(mote) = self.mote(table, item, field) {
                motes.push(mote);
            }
        }
        motes
    }

    /// One `[[mote]]`; `None` without a usable client id (the issues are recorded).
    fn mote(&mut self, table: &DeTable<'_>, item: &Value<'_>, path: String) -> Option<MoteRead> {
        let mut client_id: Option<(String, Range<usize>)> = None;
        let mut broken = false;
        let mut mote = MoteRead {
            field: String::new(),
            client_id: String::new(),
            client_id_span: 0..0,
            link: None,
            identity: None,
            addresses: Vec::new(),
            roaming: None,
            publish: None,
            subscribe: None,
            mountpoint: None,
        };
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join(&path, name);
            match name {
                "client_id" => match self.client_id_value(
                    v,
                    &f,
                    "write the client id the mote sends in its CONNECT, or a pattern with * \
                     like \"greenhouse-*\"",
                ) {
                    Some(id) => client_id = Some(id),
                    None => broken = true,
                },
                "address" => set(&mut mote.addresses, self.addresses(v, &f, true)),
                "identity" => {
                    let expected = "the identity a [[dtls]] link authenticates: a PSK identity \
                                    or a client certificate's CN, like \"mote-1\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        if text.is_empty() || text.len() > MAX_IDENTITY_LEN {
                            self.issue(
                                v.span(),
                                &f,
                                format!(
                                    "an identity is 1 to {MAX_IDENTITY_LEN} bytes; write {expected}"
                                ),
                            );
                        } else {
                            mote.identity = Some((text.to_string(), v.span()));
                        }
                    }
                }
                "link" => {
                    let expected = "a link like \"udp:0.0.0.0:1883\", \"dtls:0.0.0.0:8883\" or \
                                    \"serial:/dev/ttyUSB0\"";
                    if let Some(text) = self.string(v, &f, expected) {
                        match parse_link(text) {
                            Ok(_) => mote.link = Some((text.trim().to_string(), v.span())),
                            Err(message) => self.issue(v.span(), &f, message),
                        }
                    }
                }
                "roaming" => {
                    if let Some(roaming) = self.boolean(v, &f) {
                        mote.roaming = Some((roaming, key.span()));
                    }
                }
                "publish" => mote.publish = self.topic_rules(v, &f),
                "subscribe" => mote.subscribe = self.topic_rules(v, &f),
                "mountpoint" => mote.mountpoint = self.mountpoint(v, &f),
                _ => self.unknown_key(key, &path, "mote"),
            }
        }
        let Some((id, span)) = client_id else {
            if !broken {
                self.issue(
                    item.span(),
                    &join(&path, "client_id"),
                    "missing; write client_id = \"...\", the client id the mote sends in its \
                     CONNECT, or a pattern with * like \"greenhouse-*\"",
                );
            }
            return None;
        };
        mote.field = path;
        mote.client_id = id;
        mote.client_id_span = span;
        Some(mote)
    }

    /// A list of topic rules (`publish`, `subscribe`); `None` if any is wrong (each one that
    /// is wrong is reported at its element).
    fn topic_rules(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<String>> {
        self.rule_list(value, field, check_topic_rule)
    }

    /// `qos_minus_one_publish`: topic rules without `%c`.
    fn minus_one_rules(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<String>> {
        self.rule_list(value, field, |rule| {
            check_topic_rule(rule)?;
            if rule.contains("%c") {
                return Err(format!(
                    "{rule:?} names %c, but a QoS -1 PUBLISH has no client id (it comes \
                     without a connection); write the topics themselves"
                ));
            }
            Ok(())
        })
    }

    fn rule_list(
        &mut self,
        value: &Value<'_>,
        field: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        let example = "[\"sensors/#\", \"%c/cmd/+\"]";
        let items = self.list(
            value,
            field,
            &format!("a list of topic rules like {example}"),
        )?;
        let mut rules = Vec::new();
        let mut broken = false;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let Some(rule) = self.string(item, &f, "a topic rule in double quotes") else {
                broken = true;
                continue;
            };
            match check(rule) {
                Ok(()) => rules.push(rule.to_string()),
                Err(message) => {
                    self.issue(item.span(), &f, message);
                    broken = true;
                }
            }
        }
        (!broken).then_some(rules)
    }

    /// A mountpoint; `""` is none.
    fn mountpoint(&mut self, value: &Value<'_>, field: &str) -> Option<Option<String>> {
        let text = self.string(value, field, "a topic prefix like \"site-1/%c/\"")?;
        if text.is_empty() {
            return Some(None);
        }
        match check_mountpoint(text) {
            Ok(()) => Some(Some(text.to_string())),
            Err(message) => {
                self.issue(value.span(), field, message);
                None
            }
        }
    }

    /// Address patterns: a list, or (`one_allowed`) a single one.
    fn addresses(
        &mut self,
        value: &Value<'_>,
        field: &str,
        one_allowed: bool,
    ) -> Option<Vec<AddrPattern>> {
        let example = "[\"192.168.1.0/24\", \"xbee:0013a20041a7b3c1\"]";
        if one_allowed {
            if let DeValue::String(text) = value.get_ref() {
                return match AddrPattern::parse(text) {
                    Ok(pattern) => Some(vec![pattern]),
                    Err(message) => {
                        self.issue(value.span(), field, message);
                        None
                    }
                };
            }
        }
        let expected = if one_allowed {
            format!("an address like \"192.168.1.20\", or a list like {example}")
        } else {
            format!("a list of addresses like {example}")
        };
        let items = self.list(value, field, &expected)?;
        let mut patterns = Vec::new();
        let mut broken = false;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let parsed = self
                .string(item, &f, "an address in double quotes")
                .map(AddrPattern::parse);
            match parsed {
                Some(Ok(pattern)) => patterns.push(pattern),
                Some(Err(message)) => {
                    self.issue(item.span(), &f, message);
                    broken = true;
                }
                None => broken = true,
            }
        }
        (!broken).then_some(patterns)
    }

    /// The elements of a list value, or `None` (reported) when it is not a list.
    fn list<'a, 'i>(
        &mut self,
        value: &'a Value<'i>,
        field: &str,
        expected: &str,
    ) -> Option<&'a [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            DeValue::String(text) => {
                let message = format!(
                    "expected {expected}, found the text {text:?}; write it in brackets: \
                     [{text:?}]"
                );
                self.issue(value.span(), field, message);
                None
            }
            _ => {
                let message = format!("expected {expected}, found {}", self.describe(value));
                self.issue(value.span(), field, message);
                None
            }
        }
    }

    /// Completes the `[[mote]]` entries once everything is read (the rules they leave to
    /// `[policy]`, their links) and checks the policy as a whole: entries that can never
    /// decide, and settings that leave the gateway open.
    pub(super) fn finish_policy(
        &mut self,
        config: &mut Config,
        spans: &PolicySpans,
        motes: &[MoteRead],
        credentials: &[CredentialsEntry],
        doc: &DeTable<'_>,
    ) {
        let defaults = config.core.policy.rules.clone();
        let mut entries = Vec::new();
        for mote in motes {
            let mut entry = MoteEntry::new(mote.client_id.clone());
            entry.addresses.clone_from(&mote.addresses);
            entry.roaming = mote.roaming.as_ref().map(|(roaming, _)| *roaming);
            entry.identity = mote.identity.as_ref().map(|(identity, _)| identity.clone());
            if let Some((_, span)) = mote.identity.as_ref().filter(|_| config.dtls.is_empty()) {
                self.warning(
                    span.clone(),
                    &join(&mote.field, "identity"),
                    "this mote can never connect: only a [[dtls]] link authenticates an \
                     identity, and the gateway has none; add a [[dtls]] link, or remove identity",
                );
            }
            entry.rules.publish = mote.publish.clone().unwrap_or(defaults.publish.clone());
            entry.rules.subscribe = mote.subscribe.clone().unwrap_or(defaults.subscribe.clone());
            entry.rules.mountpoint = mote
                .mountpoint
                .clone()
                .unwrap_or(defaults.mountpoint.clone());
            if let Some((name, span)) = &mote.link {
                match link_index(name, &config.udp, &config.serial, &config.dtls) {
                    Ok(index) => entry.link = Some(link_id(index)),
                    Err(message) => self.issue(span.clone(), &join(&mote.field, "link"), message),
                }
            }
            entries.push(entry);
        }
        config.core.policy.motes = entries;
        config.mote_links = motes
            .iter()
            .map(|m| m.link.as_ref().map(|(name, _)| name.clone()))
            .collect();

        self.check_shadowed(motes);
        let open = config.core.policy.admission == Admission::Open;
        if open {
            if let Some(broker) = doc.get("broker").filter(|_| config.broker.is_some()) {
                let (span, field) = match &spans.admission {
                    Some(span) => (span.clone(), "policy.admission"),
                    None => (broker.span(), "broker"),
                };
                if let Some(message) = config.open_admission_warning() {
                    self.warning(span, field, message);
                }
            }
        } else if config.core.qos_minus_one {
            for (span, field) in &spans.minus_one_everything {
                self.warning(
                    span.clone(),
                    field,
                    "\"#\" lets any device in radio or network range publish QoS -1 messages \
                     to every topic (but those beginning with '$') without connecting, while \
                     admission = \"listed\" keeps unlisted motes from connecting at all; list \
                     the topics your QoS -1 sensors publish to, and restrict where they come \
                     from with qos_minus_one_from (docs/security.md)",
                );
            }
        }
        self.check_roaming(config, motes, doc);
        let transparent = config.broker.is_some() && config.core.mode == BrokerMode::Transparent;
        if transparent {
            self.check_credentials_bound(motes, credentials);
        }
    }

    /// `[[mote]]` entries that can never decide: the first entry whose client id pattern
    /// matches a mote decides, so a later one with the same id, or one an earlier `*`
    /// pattern covers, is dead.
    fn check_shadowed(&mut self, motes: &[MoteRead]) {
        for (index, mote) in motes.iter().enumerate() {
            let earlier = motes.get(..index).unwrap_or(&[]);
            let exact_twin = (!mote.client_id.contains('*'))
                .then(|| earlier.iter().find(|e| e.client_id == mote.client_id))
                .flatten();
            let message = if let Some(first) = exact_twin {
                let (line, _) = self.position(first.client_id_span.start);
                format!(
                    "the client id {:?} already has a [[mote]] entry on line {line} ({}); the \
                     first entry that matches a client id decides, so this one is never used; \
                     merge the two",
                    mote.client_id, first.field
                )
            } else if let Some(first) = earlier.iter().find(|e| {
                e.client_id.contains('*') && id_pattern_covers(&e.client_id, &mote.client_id)
            }) {
                let (line, _) = self.position(first.client_id_span.start);
                let what = if mote.client_id.contains('*') {
                    format!("every client id {:?} matches", mote.client_id)
                } else {
                    format!("the client id {:?}", mote.client_id)
                };
                format!(
                    "{what} is already matched by {:?} on line {line} ({}); the first entry \
                     that matches a client id decides, so this one is never used; move it \
                     above {}",
                    first.client_id, first.field, first.field
                )
            } else {
                continue;
            };
            self.warning(
                mote.client_id_span.clone(),
                &join(&mote.field, "client_id"),
                message,
            );
        }
    }

    /// Roaming without an address range: a session that may move follows whoever names its
    /// client id (under open admission any client id, from anywhere).
    fn check_roaming(&mut self, config: &Config, motes: &[MoteRead], doc: &DeTable<'_>) {
        let open = config.core.policy.admission == Admission::Open;
        let risk = "anyone who knows (or guesses) a client id can take over that mote's session \
                    from another address and receive what is queued for it";
        if config.core.roaming && open {
            let key = match doc.get("gateway").map(|v| v.get_ref()) {
                Some(DeValue::Table(table)) => table.get_key_value("roaming").map(|(k, _)| k),
                _ => None,
            };
            if let Some(key) = key {
                let message = format!(
                    "roaming = true with [policy] admission = \"open\": {risk}. Bind the motes \
                     that need roaming with [[mote]] entries (address, with roaming = true) and \
                     leave roaming off here, or set admission = \"listed\" (docs/security.md)"
                );
                self.warning(key.span(), "gateway.roaming", message);
            }
        }
        for mote in motes {
            let Some((true, span)) = &mote.roaming else {
                continue;
            };
            if mote.addresses.is_empty() {
                let message = format!(
                    "roaming = true without address: {risk}; give the entry the addresses (a \
                     network like \"10.0.0.0/8\") the mote roams within (docs/security.md)"
                );
                self.warning(span.clone(), &join(&mote.field, "roaming"), message);
            }
        }
    }

    /// In transparent mode the core lends a `[[credentials]]` login only to a mote admitted by
    /// a `[[mote]]` entry that binds it to a link or addresses; otherwise anyone naming the
    /// client id would connect to the broker with its login.
    fn check_credentials_bound(&mut self, motes: &[MoteRead], credentials: &[CredentialsEntry]) {
        for entry in credentials {
            let id = &entry.config.client_id;
            let decides = motes.iter().find(|m| id_pattern_matches(&m.client_id, id));
            let (why, fix) = match decides {
                Some(mote) if mote.is_bound() => continue,
                Some(mote) => {
                    let (line, _) = self.position(mote.client_id_span.start);
                    (
                        format!(
                            "the [[mote]] entry that decides for {id:?} ({} on line {line}) has \
                             no address or link",
                            mote.field
                        ),
                        format!(
                            "Give {} an address or link, or put a [[mote]] entry for {id:?} \
                             with its address or link above it",
                            mote.field
                        ),
                    )
                }
                None => (
                    format!("no [[mote]] entry names {id:?}"),
                    format!("Add a [[mote]] entry with client_id = {id:?} and its address or link"),
                ),
            };
            let message = format!(
                "this login is not used: {why}, and a [[credentials]] login is only lent to a \
                 mote admitted by a [[mote]] entry that binds it to an address or link (else \
                 anyone naming the client id would log in with it); the mote connects with the \
                 [broker] login. {fix}"
            );
            self.warning(
                entry.client_id.clone(),
                &join(&entry.field, "client_id"),
                message,
            );
        }
    }
}

impl Config {
    /// The warning for a gateway whose admission is open while a remote broker is configured
    /// (`None` when admission is listed): what anyone in range may do, and how to close it.
    /// [`Config::parse`] puts it in [`Config::warnings`] for a file with `[broker]`; the
    /// gateway adds it for `--broker`.
    pub fn open_admission_warning(&self) -> Option<String> {
        let policy = &self.core.policy;
        if policy.admission != Admission::Open {
            return None;
        }
        let rules = &policy.rules;
        let everything = rules.publish.iter().any(|r| r == "#")
            && rules.subscribe.iter().any(|r| r == "#")
            && rules.mountpoint.is_none();
        let reach = if everything {
            "publish to and subscribe to every topic the gateway's broker account may use \
             (except those beginning with '$')"
                .to_string()
        } else {
            "publish to and subscribe to whatever [policy] publish and subscribe allow, with \
             the gateway's broker account"
                .to_string()
        };
        Some(format!(
            "[policy] admission = \"open\" with a remote broker: any device in radio or network \
             range can connect with any client id and {reach}. To close it, set [policy] \
             admission = \"listed\" and add a [[mote]] entry (client id and address or link) \
             for each device, or narrow [policy] publish and subscribe and set a mountpoint; \
             see docs/security.md"
        ))
    }

    /// Sets the link of each `[[mote]]` entry (`core.policy.motes[i].link`) from its name in
    /// [`Config::mote_links`], against the current `udp`, `serial` and `dtls` lists: links are
    /// numbered as the gateway starts them, `[[udp]]` first, then `[[serial]]`, then
    /// `[[dtls]]`, in order.
    /// [`Config::parse`] does this; call it again after replacing those lists (the CLI's
    /// `--udp`). On an error every entry's link is still set where it could be, and the error
    /// names each entry whose link is not a link of this gateway, and the links there are.
    pub fn resolve_mote_links(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        let motes = self.core.policy.motes.iter_mut();
        for (index, (entry, name)) in motes.zip(&self.mote_links).enumerate() {
            entry.link = None;
            let Some(name) = name else { continue };
            match link_index(name, &self.udp, &self.serial, &self.dtls) {
                Ok(link) => entry.link = Some(link_id(link)),
                Err(message) => problems.push(format!("mote[{index}].link: {message}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// The link id of the link at `index` of the gateway's list (as the runtime numbers them).
fn link_id(index: usize) -> LinkId {
    LinkId(u16::try_from(index).unwrap_or(u16::MAX))
}

/// A link as a `[[mote]]` names it.
enum LinkName {
    Udp(std::net::SocketAddr),
    Serial(SerialDevice),
    Dtls(std::net::SocketAddr),
}

/// Reads `"udp:<bind address>"`, `"dtls:<bind address>"` or `"serial:<device>"`; the error
/// says what is expected.
fn parse_link(text: &str) -> Result<LinkName, String> {
    let text = text.trim();
    if let Some(bind) = text.strip_prefix("dtls:") {
        return parse_socket_addr(bind)
            .map(LinkName::Dtls)
            .map_err(|e| format!("{text:?}: after \"dtls:\" comes a [[dtls]] bind address: {e}"));
    }
    if let Some(bind) = text.strip_prefix("udp:") {
        return parse_socket_addr(bind)
            .map(LinkName::Udp)
            .map_err(|e| format!("{text:?}: after \"udp:\" comes a [[udp]] bind address: {e}"));
    }
    if let Some(device) = text.strip_prefix("serial:") {
        return device
            .trim()
            .parse::<SerialDevice>()
            .map(LinkName::Serial)
            .map_err(|e| {
                format!(
                    "{text:?}: after \"serial:\" comes a [[serial]] device path, or its usb \
                     \"VID:PID\" (with \":SERIAL\" when it has a serial_number): {e}"
                )
            });
    }
    Err(format!(
        "{text:?} is not a link; write \"udp:\" and a [[udp]] bind address, like \
         \"udp:0.0.0.0:1883\", \"dtls:\" and a [[dtls]] bind address, like \
         \"dtls:0.0.0.0:8883\", or \"serial:\" and a [[serial]] device, like \
         \"serial:/dev/ttyUSB0\""
    ))
}

/// The index of the link `name` names among the gateway's links: UDP links first, then serial
/// links, then DTLS links, in order. The error lists the links there are.
fn link_index(
    name: &str,
    udp: &[UdpConfig],
    serial: &[SerialConfig],
    dtls: &[DtlsConfig],
) -> Result<usize, String> {
    let found: Vec<usize> = match parse_link(name)? {
        LinkName::Udp(bind) => udp
            .iter()
            .enumerate()
            .filter(|(_, link)| link.bind == bind)
            .map(|(i, _)| i)
            .collect(),
        LinkName::Serial(device) => serial
            .iter()
            .enumerate()
            .filter(|(_, link)| link.device == device)
            .map(|(i, _)| udp.len() + i)
            .collect(),
        LinkName::Dtls(bind) => dtls
            .iter()
            .enumerate()
            .filter(|(_, link)| link.bind == bind)
            .map(|(i, _)| udp.len() + serial.len() + i)
            .collect(),
    };
    match found.as_slice() {
        [index] => Ok(*index),
        [] => {
            let names: Vec<String> = udp
                .iter()
                .map(|link| format!("\"udp:{}\"", link.bind))
                .chain(
                    serial
                        .iter()
                        .map(|link| format!("\"{}\"", serial_link_name(link))),
                )
                .chain(dtls.iter().map(|link| format!("\"{}\"", link.name())))
                .collect();
            let known = if names.is_empty() {
                "the gateway has no link".to_string()
            } else {
                format!("the links are {}", names.join(", "))
            };
            Err(format!("{name:?} is not a link of this gateway; {known}"))
        }
        // Only binds to port 0 may repeat (each gets its own free port).
        _ => Err(format!(
            "{name:?} names {} links (a bind to port 0 picks a free port for each); give the \
             mote's link a fixed port",
            found.len()
        )),
    }
}

/// How a `[[mote]]` names a serial link: `serial:/dev/ttyUSB0`, `serial:0403:6015:SERIAL`.
fn serial_link_name(link: &SerialConfig) -> String {
    match &link.device {
        SerialDevice::Path(path) => format!("serial:{}", path.display()),
        SerialDevice::Usb {
            vid,
            pid,
            serial_number,
        } => match serial_number {
            Some(serial) => format!("serial:{vid:04x}:{pid:04x}:{serial}"),
            None => format!("serial:{vid:04x}:{pid:04x}"),
        },
    }
}

/// Whether the client id pattern `pattern` (`*` for any run of characters) matches `id`, as
/// the core matches them.
fn id_pattern_matches(pattern: &str, id: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == id;
    };
    let Some(mut rest) = id.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether every client id `later` matches is matched by `earlier`. Matching `later`'s text
/// (its `*`s taken as characters) is enough: `earlier`'s literal parts hold no `*`, so each
/// lies within a literal part of `later`, and `earlier`'s `*`s absorb whatever `later`'s `*`s
/// stand for.
fn id_pattern_covers(earlier: &str, later: &str) -> bool {
    id_pattern_matches(earlier, later)
}

#[cfg(test)]
mod tests {
    use super::{id_pattern_covers, id_pattern_matches};

    #[test]
    fn client_id_patterns_match_as_the_core_does() {
        assert!(id_pattern_matches("mote-1", "mote-1"));
        assert!(!id_pattern_matches("mote-1", "mote-12"));
        assert!(id_pattern_matches("*", ""));
        assert!(id_pattern_matches("gh-*", "gh-"));
        assert!(id_pattern_matches("gh-*-t", "gh-7-t"));
        assert!(!id_pattern_matches("ab*ba", "aba"));
        assert!(id_pattern_matches("a*b*c", "abc"));
        assert!(!id_pattern_matches("a*b*c", "acb"));
    }

    #[test]
    fn a_pattern_covers_another_only_when_it_matches_all_it_matches() {
        assert!(id_pattern_covers("*", "gh-*"));
        assert!(id_pattern_covers("gh-*", "gh-1*"));
        assert!(id_pattern_covers("a*c", "a*b*c"));
        assert!(!id_pattern_covers("gh-1*", "gh-*"));
        assert!(!id_pattern_covers("*x", "*x*"));
    }
}
