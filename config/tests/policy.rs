//! The security settings: the `[gateway]` quotas, `[policy]`, `[[mote]]` with their links, the
//! messages for mistakes, and the warnings about a gateway left open.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{issues, ok, one};
use sn_config::{
    AddrPattern, Admission, Config, ConfigIssue, LinkId, MinusOneRules, MoteEntry, PolicyConfig,
    TopicRules, UdpConfig,
};

const DOCS: &str = include_str!("../../docs/configuration.md");
const BROKER: &str = "[broker]\nurl = \"mqtt://h\"\n";
const TRANSPARENT: &str = "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\n";

fn addr(text: &str) -> AddrPattern {
    AddrPattern::parse(text).unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The warnings of `text`, which must be valid, whose field is `field`.
fn warnings_at(text: &str, field: &str) -> Vec<ConfigIssue> {
    ok(text)
        .warnings
        .into_iter()
        .filter(|w| w.field == field)
        .collect()
}

/// The one warning of `text` (valid) at `field`, on `line`, whose message contains `needle`.
#[track_caller]
fn warned(text: &str, line: usize, field: &str, needle: &str) -> ConfigIssue {
    let all = ok(text).warnings;
    let found: Vec<&ConfigIssue> = all.iter().filter(|w| w.field == field).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one warning at {field}, got {all:#?}"
    );
    let warning = found[0].clone();
    assert_eq!(warning.line, Some(line), "{warning:#?}");
    assert!(
        warning.message.contains(needle),
        "message {:?} does not contain {needle:?}",
        warning.message
    );
    warning
}

// ---- [gateway] quotas ----

#[test]
fn the_gateway_quotas_and_their_defaults() {
    let c = Config::default().core;
    assert_eq!(c.max_queued_bytes_total, 64 << 20);
    assert_eq!(c.max_state_bytes, 32 << 20);
    assert_eq!(c.max_sleep_duration, Duration::from_secs(12 * 3600));
    assert_eq!(c.max_sessions_per_address, 1000);
    assert_eq!(c.connect_rate, 100);
    let c = ok(
        "[gateway]\nmax_queued_bytes_total = 1\nmax_state_bytes = 1\nmax_sleep_duration = \"1s\"\n\
                max_sessions_per_address = 1\nconnect_rate = 0\n",
    )
    .core;
    assert_eq!(c.max_queued_bytes_total, 1);
    assert_eq!(c.max_state_bytes, 1);
    assert_eq!(c.max_sleep_duration, Duration::from_secs(1));
    assert_eq!(c.max_sessions_per_address, 1);
    assert_eq!(c.connect_rate, 0);
    let c = ok("[gateway]\nmax_queued_bytes_total = 0x100000000\n\
                max_sleep_duration = \"65535s\"\nconnect_rate = 1000000\n")
    .core;
    assert_eq!(c.max_queued_bytes_total, 1 << 32);
    assert_eq!(c.max_sleep_duration, Duration::from_secs(65535));
    assert_eq!(c.connect_rate, 1_000_000);
    assert_eq!(
        ok("[gateway]\nmax_sleep_duration = \"18h\"\n")
            .core
            .max_sleep_duration,
        Duration::from_secs(18 * 3600)
    );
}

#[test]
fn the_gateway_quotas_out_of_range() {
    one(
        "[gateway]\nmax_queued_bytes_total = 0\n",
        2,
        "gateway.max_queued_bytes_total",
        "0 is out of range",
    );
    one(
        "[gateway]\nmax_sessions_per_address = 0\n",
        2,
        "gateway.max_sessions_per_address",
        "0 is out of range",
    );
    one(
        "[gateway]\nconnect_rate = 1000001\n",
        2,
        "gateway.connect_rate",
        "use a whole number from 0 to 1000000",
    );
    one(
        "[gateway]\nmax_sleep_duration = \"0\"\n",
        2,
        "gateway.max_sleep_duration",
        "too short; use at least \"1s\"",
    );
    one(
        "[gateway]\nmax_sleep_duration = \"65536s\"\n",
        2,
        "gateway.max_sleep_duration",
        "too long; use at most \"65535s\"",
    );
    one(
        "[gateway]\nmax_sleep_duration = \"1500ms\"\n",
        2,
        "gateway.max_sleep_duration",
        "not a whole number of seconds",
    );
    one(
        "[gateway]\nmax_sleep_duration = 3600\n",
        2,
        "gateway.max_sleep_duration",
        "has no unit",
    );
}

// ---- [policy] ----

#[test]
fn the_policy_defaults() {
    let c = Config::default();
    assert_eq!(c.core.policy, PolicyConfig::default());
    assert_eq!(c.core.policy.admission, Admission::Open);
    assert_eq!(c.core.policy.rules, TopicRules::default());
    assert_eq!(c.core.policy.minus_one, MinusOneRules::default());
    assert!(c.mote_links.is_empty());
    assert_eq!(ok("[policy]\n"), Config::default());
    assert_eq!(ok("[policy]\nmountpoint = \"\"\n"), Config::default());
}

#[test]
fn every_policy_option() {
    let c = ok(r#"
[policy]
admission = "listed"
publish = ["sensors/%c/#", "$SYS/broker/uptime"]
subscribe = ["sensors/%c/cmd/+", "broadcast/#"]
mountpoint = "site-1/%c/"
qos_minus_one_publish = ["beacons/+"]
qos_minus_one_from = ["192.168.1.0/24", "xbee:0013a20041a7b3c1", "node:00a1", "kiss:3", "serial", "fd00::/8"]
"#);
    assert_eq!(
        c.core.policy,
        PolicyConfig {
            admission: Admission::Listed,
            rules: TopicRules {
                publish: strings(&["sensors/%c/#", "$SYS/broker/uptime"]),
                subscribe: strings(&["sensors/%c/cmd/+", "broadcast/#"]),
                mountpoint: Some("site-1/%c/".to_string()),
            },
            motes: Vec::new(),
            minus_one: MinusOneRules {
                publish: Some(strings(&["beacons/+"])),
                from: [
                    "192.168.1.0/24",
                    "xbee:0013a20041a7b3c1",
                    "node:00a1",
                    "kiss:3",
                    "serial",
                    "fd00::/8",
                ]
                .into_iter()
                .map(addr)
                .collect(),
            },
        }
    );
    // Empty lists allow nothing; an explicit "open" is the default.
    let c = ok("[policy]\nadmission = \"open\"\npublish = []\nqos_minus_one_publish = []\n");
    assert_eq!(c.core.policy.admission, Admission::Open);
    assert!(c.core.policy.rules.publish.is_empty());
    assert_eq!(c.core.policy.minus_one.publish, Some(Vec::new()));
}

#[test]
fn a_wrong_admission_names_the_two_values() {
    one(
        "[policy]\nadmission = \"closed\"\n",
        2,
        "policy.admission",
        "\"closed\" is not an admission; use \"open\" or \"listed\"",
    );
    one(
        "[policy]\nadmission = true\n",
        2,
        "policy.admission",
        "expected \"open\" or \"listed\", found true",
    );
}

#[test]
fn a_wrong_rule_is_reported_at_its_element() {
    let issue = one(
        "[policy]\npublish = [\n  \"sensors/#\",\n  \"sensors/#/temp\",\n]\n",
        4,
        "policy.publish[1]",
        "'#' must be a whole level and the last one",
    );
    assert_eq!(issue.column, Some(3));
    one(
        "[policy]\nsubscribe = [\"a/b+\"]\n",
        2,
        "policy.subscribe[0]",
        "'+' must be a whole level",
    );
    one(
        "[policy]\nsubscribe = [\"\"]\n",
        2,
        "policy.subscribe[0]",
        "cannot be empty",
    );
    one(
        "[policy]\npublish = [\"a\", 7]\n",
        2,
        "policy.publish[1]",
        "expected a topic rule in double quotes, found the number 7",
    );
    // One rule without brackets: the fix is in the message.
    one(
        "[policy]\npublish = \"sensors/#\"\n",
        2,
        "policy.publish",
        "write it in brackets: [\"sensors/#\"]",
    );
    // Every wrong element is reported.
    let all = issues("[policy]\npublish = [\"#/a\", \"ok\", \"b+\"]\n");
    let fields: Vec<&str> = all.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["policy.publish[0]", "policy.publish[2]"]);
}

#[test]
fn a_wrong_mountpoint() {
    one(
        "[policy]\nmountpoint = \"site/+/\"\n",
        2,
        "policy.mountpoint",
        "a mountpoint cannot hold '+' or '#'",
    );
    one(
        "[policy]\nmountpoint = \"$SYS/\"\n",
        2,
        "policy.mountpoint",
        "cannot begin with '$'",
    );
}

#[test]
fn qos_minus_one_rules_cannot_name_the_client_id() {
    one(
        "[policy]\nqos_minus_one_publish = [\"beacons/#\", \"sensors/%c\"]\n",
        2,
        "policy.qos_minus_one_publish[1]",
        "a QoS -1 PUBLISH has no client id",
    );
    one(
        "[policy]\nqos_minus_one_publish = [\"a/#/b\"]\n",
        2,
        "policy.qos_minus_one_publish[0]",
        "'#' must be a whole level",
    );
}

#[test]
fn a_wrong_address_is_reported_at_its_element() {
    one(
        "[policy]\nqos_minus_one_from = [\n  \"10.0.0.0/8\",\n  \"192.168.1.1/24\",\n]\n",
        4,
        "policy.qos_minus_one_from[1]",
        "host bits are set after the /24; the network is 192.168.1.0/24",
    );
    one(
        "[policy]\nqos_minus_one_from = [\"gateway.local\"]\n",
        2,
        "policy.qos_minus_one_from[0]",
        "is not an address",
    );
    // qos_minus_one_from is a list, even of one.
    one(
        "[policy]\nqos_minus_one_from = \"10.0.0.0/8\"\n",
        2,
        "policy.qos_minus_one_from",
        "write it in brackets",
    );
}

#[test]
fn unknown_policy_options_get_suggestions() {
    one(
        "[policy]\nadmision = \"open\"\n",
        2,
        "policy.admision",
        "did you mean \"admission\"? The options of [policy] are: admission, publish, \
         subscribe, mountpoint, qos_minus_one_publish, qos_minus_one_from",
    );
    one(
        "[gateway]\nadmission = \"listed\"\n",
        2,
        "gateway.admission",
        "unknown option in [gateway]; \"admission\" belongs in [policy]",
    );
    one(
        "[policy]\naddress = \"10.0.0.1\"\n",
        2,
        "policy.address",
        "\"address\" belongs in [[mote]]",
    );
    one("[polcy]\n", 1, "polcy", "did you mean [policy]?");
    one("[[motes]]\n", 1, "motes", "did you mean [[mote]]?");
    one(
        "admission = \"listed\"\n",
        1,
        "admission",
        "\"admission\" is an option of [policy]; move it below a [policy] header",
    );
    let all = issues("[nonsense]\n");
    assert!(
        all[0].message.contains(
            "[gateway], [predefined_topics], [policy], [[mote]], [[udp]], [[serial]], [[dtls]], \
             [broker], [[credentials]], [presence], [metrics], [embedded_broker], [spool], [store] \
             and [log]"
        ),
        "{}",
        all[0].message
    );
}

// ---- [[mote]] ----

#[test]
fn a_mote_entry_with_every_option() {
    let c = ok(r#"
[[mote]]
client_id = "greenhouse-*"
address = ["192.168.1.0/24", "10.0.0.7"]
link = "udp:0.0.0.0:1883"
roaming = true
publish = ["greenhouse/%c/#"]
subscribe = ["greenhouse/%c/cmd/#"]
mountpoint = "site-1/"

[[mote]]
client_id = "door-7"
address = "xbee:0013a20041a7b3c1"
roaming = false
"#);
    assert_eq!(
        c.core.policy.motes,
        vec![
            MoteEntry {
                client_id: "greenhouse-*".to_string(),
                link: Some(LinkId(0)),
                addresses: vec![addr("192.168.1.0/24"), addr("10.0.0.7")],
                identity: None,
                roaming: Some(true),
                rules: TopicRules {
                    publish: strings(&["greenhouse/%c/#"]),
                    subscribe: strings(&["greenhouse/%c/cmd/#"]),
                    mountpoint: Some("site-1/".to_string()),
                },
            },
            MoteEntry {
                addresses: vec![addr("xbee:0013a20041a7b3c1")],
                roaming: Some(false),
                ..MoteEntry::new("door-7")
            },
        ]
    );
    assert_eq!(
        c.mote_links,
        vec![Some("udp:0.0.0.0:1883".to_string()), None]
    );
    // An inline list of tables is the same.
    let inline = ok("mote = [{ client_id = \"a\" }, { client_id = \"b\", address = \"kiss:1\" }]");
    assert_eq!(inline.core.policy.motes.len(), 2);
    assert_eq!(inline.core.policy.motes[1].addresses, vec![addr("kiss:1")]);
}

#[test]
fn a_mote_takes_the_policy_rules_it_does_not_state_wherever_the_policy_is() {
    let c = ok(r#"
[[mote]]
client_id = "a"

[[mote]]
client_id = "b"
publish = ["b/#"]
mountpoint = ""

[policy]
publish = ["all/%c/#"]
subscribe = ["cmd/%c/#"]
mountpoint = "site/"
"#);
    let motes = &c.core.policy.motes;
    assert_eq!(
        motes[0].rules,
        TopicRules {
            publish: strings(&["all/%c/#"]),
            subscribe: strings(&["cmd/%c/#"]),
            mountpoint: Some("site/".to_string()),
        }
    );
    assert_eq!(
        motes[1].rules,
        TopicRules {
            publish: strings(&["b/#"]),
            subscribe: strings(&["cmd/%c/#"]),
            mountpoint: None,
        }
    );
    // Without [policy], the defaults.
    assert_eq!(
        ok("[[mote]]\nclient_id = \"a\"\n").core.policy.motes,
        vec![MoteEntry::new("a")]
    );
}

#[test]
fn the_client_id_is_required_and_not_empty() {
    one(
        "[[mote]]\naddress = \"10.0.0.1\"\n",
        1,
        "mote[0].client_id",
        "missing; write client_id = \"...\"",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\n[[mote]]\nclient_id = \"\"\n",
        4,
        "mote[1].client_id",
        "the client id is empty",
    );
    one(
        "[[mote]]\nclient_id = 7\n",
        2,
        "mote[0].client_id",
        "expected the client id in double quotes, found the number 7",
    );
    one(
        "[mote]\nclient_id = \"a\"\n",
        1,
        "mote",
        "write [[mote]] with double brackets",
    );
}

#[test]
fn wrong_values_in_a_mote_entry() {
    one(
        "[[mote]]\nclient_id = \"a\"\naddress = \"192.168.1.1/24\"\n",
        3,
        "mote[0].address",
        "the network is 192.168.1.0/24",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\naddress = [\n  \"10.0.0.1\",\n  \"10.0.0.0/33\",\n]\n",
        5,
        "mote[0].address[1]",
        "the prefix length must be 0 to 32",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\naddress = 10\n",
        3,
        "mote[0].address",
        "an address like \"192.168.1.20\", or a list",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nroaming = \"yes\"\n",
        3,
        "mote[0].roaming",
        "expected true or false",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\npublish = [\"x/#/y\"]\n",
        3,
        "mote[0].publish[0]",
        "'#' must be a whole level",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nmountpoint = \"#\"\n",
        3,
        "mote[0].mountpoint",
        "cannot hold '+' or '#'",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nmountpoint = \"site/%c\"\n",
        3,
        "mote[0].mountpoint",
        "a mountpoint must end with '/' (\"site/%c/\")",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nlink = \"tcp:0.0.0.0:1883\"\n",
        3,
        "mote[0].link",
        "is not a link; write \"udp:\" and a [[udp]] bind address",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nlink = \"udp:0.0.0.0\"\n",
        3,
        "mote[0].link",
        "after \"udp:\" comes a [[udp]] bind address",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nusername = \"u\"\n",
        3,
        "mote[0].username",
        "\"username\" belongs in [broker]",
    );
    one(
        "[[mote]]\nclient_id = \"a\"\nadress = \"10.0.0.1\"\n",
        3,
        "mote[0].adress",
        "did you mean \"address\"? The options of [[mote]] are: client_id, address, link, identity, \
         roaming, publish, subscribe, mountpoint",
    );
}

// ---- links ----

/// Two UDP links and two serial links, with motes naming each, before the links in the file.
const LINKS: &str = r#"
[[mote]]
client_id = "on-serial-1"
link = "serial:0403:6015:A50285BI"

[[mote]]
client_id = "on-udp-1"
link = "udp:[::]:1884"

[[mote]]
client_id = "on-serial-0"
link = "serial:/dev/xbee0"

[[mote]]
client_id = "on-udp-0"
link = "udp:127.0.0.1:1883"

[[mote]]
client_id = "anywhere"

[[serial]]
device = "/dev/xbee0"
framing = "xbee"

[[serial]]
usb = "0403:6015"
serial_number = "A50285BI"
framing = "cobs"

[[udp]]
bind = "127.0.0.1:1883"

[[udp]]
bind = "[::]:1884"
"#;

#[test]
fn links_are_numbered_udp_first_then_serial_in_file_order() {
    let c = ok(LINKS);
    let links: Vec<Option<LinkId>> = c.core.policy.motes.iter().map(|m| m.link).collect();
    assert_eq!(
        links,
        [
            Some(LinkId(3)),
            Some(LinkId(1)),
            Some(LinkId(2)),
            Some(LinkId(0)),
            None
        ]
    );
    // The default UDP link (no [[udp]]) is "udp:0.0.0.0:1883".
    let c = ok("[[mote]]\nclient_id = \"a\"\nlink = \"udp:0.0.0.0:1883\"\n");
    assert_eq!(c.core.policy.motes[0].link, Some(LinkId(0)));
}

#[test]
fn an_unknown_link_lists_the_links_there_are() {
    let text = LINKS.replace("udp:[::]:1884", "udp:[::]:1885");
    let issue = one(
        &text,
        8,
        "mote[1].link",
        "\"udp:[::]:1885\" is not a link of this gateway",
    );
    assert!(
        issue.message.ends_with(
            "the links are \"udp:127.0.0.1:1883\", \"udp:[::]:1884\", \"serial:/dev/xbee0\", \
             \"serial:0403:6015:A50285BI\""
        ),
        "{}",
        issue.message
    );
    one(
        "udp = []\n[[mote]]\nclient_id = \"a\"\nlink = \"serial:/dev/ttyUSB0\"\n",
        4,
        "mote[0].link",
        "the gateway has no link",
    );
    // The USB adapter is named with its serial number when the [[serial]] gives one.
    let text = LINKS.replace("serial:0403:6015:A50285BI", "serial:0403:6015");
    one(&text, 4, "mote[0].link", "is not a link of this gateway");
}

#[test]
fn links_are_resolved_again_after_the_udp_links_are_replaced() {
    let mut c = ok(LINKS);
    // As the CLI's --udp 127.0.0.1:1883: one UDP link, so the serial links move down.
    c.udp = vec![UdpConfig::from_bind("127.0.0.1:1883").unwrap()];
    let error = c.resolve_mote_links().unwrap_err();
    assert!(
        error.starts_with("mote[1].link: \"udp:[::]:1884\" is not a link of this gateway; the links are \"udp:127.0.0.1:1883\", \"serial:/dev/xbee0\""),
        "{error}"
    );
    let links: Vec<Option<LinkId>> = c.core.policy.motes.iter().map(|m| m.link).collect();
    assert_eq!(
        links,
        [
            Some(LinkId(2)),
            None,
            Some(LinkId(1)),
            Some(LinkId(0)),
            None
        ]
    );
    // With the links all there, it succeeds.
    c.udp.push(UdpConfig::from_bind("[::]:1884").unwrap());
    c.resolve_mote_links().unwrap();
    assert_eq!(c, ok(LINKS));
}

#[test]
fn two_links_bound_to_port_0_cannot_be_told_apart() {
    one(
        "[[udp]]\nbind = \"127.0.0.1:0\"\n[[udp]]\nbind = \"127.0.0.1:0\"\n\
         [[mote]]\nclient_id = \"a\"\nlink = \"udp:127.0.0.1:0\"\n",
        7,
        "mote[0].link",
        "names 2 links",
    );
}

// ---- warnings ----

#[test]
fn open_admission_with_a_remote_broker_is_a_warning_that_says_how_to_close_it() {
    let w = warned(BROKER, 1, "broker", "any device in radio or network range");
    for needle in [
        "any client id",
        "every topic the gateway's broker account may use (except those beginning with '$')",
        "admission = \"listed\"",
        "[[mote]]",
        "mountpoint",
        "docs/security.md",
    ] {
        assert!(w.message.contains(needle), "{needle}: {}", w.message);
    }
    assert_eq!(ok(BROKER).warnings.len(), 1);
    // Written explicitly, the warning is at the setting.
    warned(
        &format!("{BROKER}[policy]\nadmission = \"open\"\n"),
        4,
        "policy.admission",
        "docs/security.md",
    );
    // Narrower rules: still anyone may connect, but not to every topic.
    let w = warned(
        &format!("{BROKER}[policy]\npublish = [\"sensors/#\"]\n"),
        1,
        "broker",
        "whatever [policy] publish and subscribe allow",
    );
    assert!(!w.message.contains("every topic"), "{}", w.message);
    // Not with listed admission, and not without a remote broker (the embedded-only trial).
    assert!(ok(&format!("{BROKER}[policy]\nadmission = \"listed\"\n"))
        .warnings
        .is_empty());
    assert!(ok("").warnings.is_empty());
    assert!(ok("[policy]\nadmission = \"open\"\n").warnings.is_empty());
    // The same text, for the gateway's --broker.
    assert_eq!(
        Config::default().open_admission_warning(),
        Some(ok(BROKER).warnings[0].message.clone())
    );
    assert_eq!(
        ok("[policy]\nadmission = \"listed\"\n").open_admission_warning(),
        None
    );
}

#[test]
fn the_sample_warning_in_the_docs_is_real() {
    let c = ok(BROKER);
    let line = format!("warning: gateway.toml:{}", c.warnings[0]);
    assert!(DOCS.contains(&line), "docs/configuration.md lacks:\n{line}");
}

#[test]
fn roaming_without_an_address_range_is_a_warning() {
    warned(
        "[gateway]\nroaming = true\n",
        2,
        "gateway.roaming",
        "anyone who knows (or guesses) a client id can take over that mote's session",
    );
    warned(
        "[[mote]]\nclient_id = \"nb-1\"\nroaming = true\n",
        3,
        "mote[0].roaming",
        "anyone who knows (or guesses) a client id can take over",
    );
    // Not when off, not under listed admission, not for an entry held to its addresses.
    assert!(ok("[gateway]\nroaming = false\n").warnings.is_empty());
    assert!(
        ok("[gateway]\nroaming = true\n[policy]\nadmission = \"listed\"\n")
            .warnings
            .is_empty()
    );
    assert!(
        ok("[[mote]]\nclient_id = \"nb-1\"\nroaming = true\naddress = \"10.0.0.0/8\"\n")
            .warnings
            .is_empty()
    );
    assert!(ok("[[mote]]\nclient_id = \"nb-1\"\nroaming = false\n")
        .warnings
        .is_empty());
    // A listed entry that may roam anywhere is as easy to take over (by anyone who sends
    // its client id): warned under listed admission too.
    warned(
        "[policy]\nadmission = \"listed\"\n[[mote]]\nclient_id = \"nb-1\"\nroaming = true\n",
        5,
        "mote[0].roaming",
        "roaming = true without address",
    );
}

#[test]
fn credentials_without_a_bound_mote_entry_are_a_warning() {
    let creds = "[[credentials]]\nclient_id = \"mote-1\"\nusername = \"u\"\n";
    let listed = "[policy]\nadmission = \"listed\"\n";
    let w = warned(
        &format!("{TRANSPARENT}{creds}{listed}"),
        5,
        "credentials[0].client_id",
        "this login is not used: no [[mote]] entry names \"mote-1\"",
    );
    assert!(
        w.message.contains("connects with the [broker] login"),
        "{}",
        w.message
    );
    // The entry that decides has no binding (a later one that binds never decides).
    warned(
        &format!(
            "{TRANSPARENT}{creds}{listed}[[mote]]\nclient_id = \"mote-*\"\n\
             [[mote]]\nclient_id = \"mote-1\"\naddress = \"10.0.0.1\"\n"
        ),
        5,
        "credentials[0].client_id",
        "the [[mote]] entry that decides for \"mote-1\" (mote[0] on line 10) has no address or link",
    );
    // Bound by an address, a link, or a pattern entry that binds: no warning.
    for binding in [
        "client_id = \"mote-1\"\naddress = \"10.0.0.1\"\n",
        "client_id = \"mote-1\"\nlink = \"udp:0.0.0.0:1883\"\n",
        "client_id = \"mote-*\"\naddress = \"10.0.0.0/8\"\n",
    ] {
        let text = format!("{TRANSPARENT}{creds}{listed}[[mote]]\n{binding}");
        assert!(
            warnings_at(&text, "credentials[0].client_id").is_empty(),
            "{text}"
        );
        assert!(ok(&text).warnings.is_empty(), "{text}");
    }
}

#[test]
fn qos_minus_one_to_everything_under_listed_admission_is_a_warning() {
    let text = "[policy]\nadmission = \"listed\"\nqos_minus_one_publish = [\"beacons/#\", \"#\"]\n";
    warned(
        text,
        3,
        "policy.qos_minus_one_publish[1]",
        "lets any device in radio or network range publish QoS -1 messages to every topic",
    );
    assert_eq!(ok(text).warnings.len(), 1);
    // Not under open admission (the open warning covers it), not with QoS -1 off, not for
    // narrower rules.
    assert!(ok("[policy]\nqos_minus_one_publish = [\"#\"]\n")
        .warnings
        .is_empty());
    assert!(ok(&format!("[gateway]\nqos_minus_one = false\n{text}"))
        .warnings
        .is_empty());
    assert!(
        ok("[policy]\nadmission = \"listed\"\nqos_minus_one_publish = [\"beacons/#\"]\n")
            .warnings
            .is_empty()
    );
}

#[test]
fn a_mote_entry_that_can_never_decide_is_a_warning() {
    warned(
        "[[mote]]\nclient_id = \"m1\"\naddress = \"10.0.0.1\"\n\
         [[mote]]\nclient_id = \"m1\"\naddress = \"10.0.0.2\"\n",
        5,
        "mote[1].client_id",
        "the client id \"m1\" already has a [[mote]] entry on line 2 (mote[0])",
    );
    warned(
        "[[mote]]\nclient_id = \"*\"\n[[mote]]\nclient_id = \"m1\"\n",
        4,
        "mote[1].client_id",
        "the client id \"m1\" is already matched by \"*\" on line 2 (mote[0])",
    );
    warned(
        "[[mote]]\nclient_id = \"gh-*\"\n[[mote]]\nclient_id = \"gh-1*\"\n",
        4,
        "mote[1].client_id",
        "every client id \"gh-1*\" matches is already matched by \"gh-*\"",
    );
    // Different ids, a pattern after the ids it covers, a narrower pattern first: no warning.
    for text in [
        "[[mote]]\nclient_id = \"m1\"\n[[mote]]\nclient_id = \"m2\"\n",
        "[[mote]]\nclient_id = \"m1\"\n[[mote]]\nclient_id = \"*\"\n",
        "[[mote]]\nclient_id = \"gh-1*\"\n[[mote]]\nclient_id = \"gh-*\"\n",
        "[[mote]]\nclient_id = \"gh-*\"\n[[mote]]\nclient_id = \"other\"\n",
    ] {
        assert!(ok(text).warnings.is_empty(), "{text}");
    }
    // Both entries stay in the list: the core's first match decides, as the warning says.
    let c = ok("[[mote]]\nclient_id = \"*\"\n[[mote]]\nclient_id = \"m1\"\n");
    assert_eq!(c.core.policy.motes.len(), 2);
}

#[test]
fn a_closed_gateway_has_no_warning() {
    let c = ok(r#"
[gateway]
roaming = true

[policy]
admission = "listed"
publish = ["sensors/%c/#"]
subscribe = ["sensors/%c/cmd/#"]
mountpoint = "site-1/"
qos_minus_one_publish = ["beacons/+"]
qos_minus_one_from = ["192.168.1.0/24"]

[[mote]]
client_id = "greenhouse-*"
address = "192.168.1.0/24"

[[mote]]
client_id = "door-7"
link = "serial:/dev/xbee0"
address = "xbee:0013a20041a7b3c1"

[[serial]]
device = "/dev/xbee0"
framing = "xbee"

[broker]
url = "mqtts://broker.example.com"
mode = "transparent"

[[credentials]]
client_id = "door-7"
username = "door-7"
password_file = "door-7.pass"
"#);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    assert_eq!(c.core.policy.motes[1].link, Some(LinkId(1)));
}
