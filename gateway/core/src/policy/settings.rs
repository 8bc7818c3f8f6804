//! The policy's settings, as the config crate fills them (`[policy]` and `[[mote]]`): who may
//! connect, from where, and which topics each mote may touch.

use super::address::AddrPattern;
use crate::peer::LinkId;

/// `[policy]` and the `[[mote]]` list. `Default` is the zero-config trial: open admission,
/// every topic but those beginning with `$`, no mountpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    /// `[policy] admission`: whether motes without a `[[mote]]` entry may connect.
    pub admission: Admission,
    /// `[policy] publish`, `subscribe`, `mountpoint`: the topic rules of a mote the open
    /// policy lets in, and of a `[[mote]]` entry that does not state its own.
    pub rules: TopicRules,
    /// `[[mote]]`: the listed motes, in file order; the first entry whose client id pattern
    /// matches decides.
    pub motes: Vec<MoteEntry>,
    /// `[policy] qos_minus_one_publish` and `qos_minus_one_from`: QoS -1 PUBLISHes from peers
    /// without a session.
    pub minus_one: MinusOneRules,
}

/// Who may connect (`[policy] admission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// `"open"`: any client id; a `[[mote]]` entry still binds and limits the motes it names.
    #[default]
    Open,
    /// `"listed"`: only client ids a `[[mote]]` entry names; others get CONNACK 0x03.
    Listed,
}

/// Topic rules: MQTT filters (`+`, `#`) in which `%c` stands for the mote's client id, and a
/// mountpoint put before every topic the mote names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRules {
    /// Topics the mote may publish to (also its Will topic).
    pub publish: Vec<String>,
    /// Filters the mote may subscribe to, and everything below them.
    pub subscribe: Vec<String>,
    /// Prefix put before every topic and filter the mote names, taken off on the way down
    /// (`"site-1/%c/"`). `None`: topics go to the broker as the mote names them.
    pub mountpoint: Option<String>,
}

impl Default for TopicRules {
    /// Every topic, except those beginning with `$` (a `#` or `+` at the first level does not
    /// match them): the broker's `$SYS` internals stay out of reach of an open gateway.
    fn default() -> Self {
        TopicRules {
            publish: vec!["#".to_string()],
            subscribe: vec!["#".to_string()],
            mountpoint: None,
        }
    }
}

/// One `[[mote]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoteEntry {
    /// The client id, exactly, or a pattern where `*` stands for any run of characters.
    pub client_id: String,
    /// The link the mote must come from (`None`: any link).
    pub link: Option<LinkId>,
    /// The peer addresses the mote must come from (empty: any address).
    pub addresses: Vec<AddrPattern>,
    /// The identity an authenticated link (DTLS: the PSK identity, or the certificate's CN or
    /// SAN) must have proven for this mote, which then may use the entry's client ids; `None`:
    /// any peer, and an authenticated one only for the client id equal to its identity.
    pub identity: Option<String>,
    /// Whether the mote's session may move to another address its entry allows (NAT
    /// rebinding, NB-IoT). `None`: `[gateway] roaming`.
    pub roaming: Option<bool>,
    /// What it may publish and subscribe to.
    pub rules: TopicRules,
}

impl MoteEntry {
    /// An entry for `client_id` with the default rules and no binding.
    pub fn new(client_id: impl Into<String>) -> Self {
        MoteEntry {
            client_id: client_id.into(),
            link: None,
            addresses: Vec::new(),
            identity: None,
            roaming: None,
            rules: TopicRules::default(),
        }
    }

    /// Whether the entry ties the mote to where it connects from (a link or an address) or
    /// to an authenticated identity.
    pub fn is_bound(&self) -> bool {
        self.link.is_some() || !self.addresses.is_empty() || self.identity.is_some()
    }
}

/// QoS -1 PUBLISHes (no connection, no client id).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MinusOneRules {
    /// Topics a QoS -1 PUBLISH from a peer without a session may go to. `None`: under open
    /// admission the `[policy] publish` rules, under listed admission none.
    pub publish: Option<Vec<String>>,
    /// Peers QoS -1 PUBLISHes are taken from (empty: any).
    pub from: Vec<AddrPattern>,
}
