//! Each validation rule: the exact field path, the line, and the gist of the message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{issues, ok, one};

// ---- [gateway] ----

#[test]
fn gw_id_range_and_type() {
    assert_eq!(ok("[gateway]\ngw_id = 0").core.gw_id, 0);
    assert_eq!(ok("[gateway]\ngw_id = 255").core.gw_id, 255);
    assert_eq!(ok("[gateway]\ngw_id = 0xff").core.gw_id, 255);
    let i = one(
        "[gateway]\ngw_id = 256",
        2,
        "gateway.gw_id",
        "256 is out of range",
    );
    assert_eq!(i.column, Some(9));
    assert!(i.message.contains("from 0 to 255"));
    one("[gateway]\ngw_id = -1", 2, "gateway.gw_id", "out of range");
    one(
        "[gateway]\n\ngw_id = \"7\"",
        3,
        "gateway.gw_id",
        "remove the quotes",
    );
    one(
        "[gateway]\ngw_id = 1.5",
        2,
        "gateway.gw_id",
        "expected a whole number",
    );
}

#[test]
fn advertise_interval() {
    let g = |t: &str| ok(&format!("[gateway]\nadvertise_interval = {t}")).core;
    assert_eq!(g("\"0\"").advertise_interval, Duration::ZERO);
    assert_eq!(g("\"0s\"").advertise_interval, Duration::ZERO);
    assert_eq!(g("0").advertise_interval, Duration::ZERO);
    assert_eq!(
        g("\"65535s\"").advertise_interval,
        Duration::from_secs(65535)
    );
    assert_eq!(g("\"1s\"").advertise_interval, Duration::from_secs(1));
    let f = "gateway.advertise_interval";
    one(
        "[gateway]\nadvertise_interval = \"65536s\"",
        2,
        f,
        "too long; use at most \"65535s\"",
    );
    one("[gateway]\nadvertise_interval = \"19h\"", 2, f, "too long");
    one(
        "[gateway]\nadvertise_interval = \"1500ms\"",
        2,
        f,
        "not a whole number of seconds",
    );
    one(
        "[gateway]\nadvertise_interval = \"1.5s\"",
        2,
        f,
        "write \"1s\" or \"2s\"",
    );
    one(
        "[gateway]\nadvertise_interval = \"500ms\"",
        2,
        f,
        "write \"1s\"",
    );
    one("[gateway]\nadvertise_interval = 900", 2, f, "no unit");
}

#[test]
fn retry_interval() {
    let f = "gateway.retry_interval";
    assert_eq!(
        ok("[gateway]\nretry_interval = \"1h\"").core.retry_interval,
        Duration::from_secs(3600)
    );
    assert_eq!(
        ok("[gateway]\nretry_interval = \"1500ms\"")
            .core
            .retry_interval,
        Duration::from_millis(1500)
    );
    one(
        "[gateway]\nretry_interval = \"999ms\"",
        2,
        f,
        "too short; use at least \"1s\"",
    );
    one("[gateway]\nretry_interval = \"0\"", 2, f, "too short");
    one(
        "[gateway]\nretry_interval = \"61m\"",
        2,
        f,
        "too long; use at most \"1h\"",
    );
    one(
        "[gateway]\nretry_interval = \"10x\"",
        2,
        f,
        "\"10x\" is not a duration",
    );
    one(
        "[gateway]\nretry_interval = true",
        2,
        f,
        "expected a duration in quotes",
    );
}

#[test]
fn counters_and_limits() {
    let cases: &[(&str, &str, &str)] = &[
        ("max_retries", "21", "from 0 to 20"),
        ("max_sessions", "0", "from 1 to 4294967295"),
        ("max_sessions", "4294967296", "out of range"),
        ("max_topics_per_session", "0", "from 1 to 65533"),
        ("max_topics_per_session", "65534", "from 1 to 65533"),
        ("max_queued_per_session", "0", "from 1 to"),
        ("max_queued_bytes_per_session", "0", "from 1 to"),
        ("max_pending_qos0", "0", "from 1 to"),
        ("queue_overflow", "\"drop-everything\"", "is not a policy"),
        ("max_packet_size", "15", "from 16 to 65535"),
        ("max_packet_size", "65536", "from 16 to 65535"),
        ("max_client_id_len", "0", "from 1 to 65535"),
        ("max_client_id_len", "65536", "from 1 to 65535"),
    ];
    for (key, value, needle) in cases {
        let text = format!("# comment\n[gateway]\n{key} = {value}\n");
        one(&text, 3, &format!("gateway.{key}"), needle);
    }
    let g =
        ok("[gateway]\nmax_retries = 20\nmax_packet_size = 65535\nmax_sessions = 4294967295").core;
    assert_eq!(
        (g.max_retries, g.max_packet_size, g.max_sessions),
        (20, 65535, u32::MAX as usize)
    );
}

#[test]
fn booleans() {
    one(
        "[gateway]\nqos_minus_one = \"false\"",
        2,
        "gateway.qos_minus_one",
        "remove the quotes",
    );
    one(
        "[gateway]\nqos_minus_one = 1",
        2,
        "gateway.qos_minus_one",
        "expected true or false",
    );
    one(
        "[[udp]]\nmulticast_loop = \"yes\"",
        2,
        "udp[0].multicast_loop",
        "true or false",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\nclean_session = 0",
        3,
        "broker.clean_session",
        "true or false",
    );
}

// ---- [[udp]] ----

#[test]
fn udp_bind() {
    let f = "udp[0].bind";
    one(
        "[[udp]]\nbind = \"0.0.0.0\"",
        2,
        f,
        "has no port; write it with one, like \"0.0.0.0:1883\"",
    );
    one("[[udp]]\nbind = \"::\"", 2, f, "like \"[::]:1883\"");
    one("[[udp]]\nbind = \"[::]\"", 2, f, "has no port");
    one(
        "[[udp]]\nbind = \"::1:1883\"",
        2,
        f,
        "like \"[::1:1883]:1883\"",
    );
    one(
        "[[udp]]\nbind = \"localhost:1883\"",
        2,
        f,
        "not an IP address",
    );
    one("[[udp]]\nbind = \"0.0.0.0:99999\"", 2, f, "port");
    one("[[udp]]\nbind = 1883", 2, f, "put it in double quotes");
    assert_eq!(ok("[[udp]]\nbind = \"127.0.0.1:0\"").udp[0].bind.port(), 0);
}

#[test]
fn udp_discovery() {
    let u = |t: &str| ok(&format!("[[udp]]\n{t}")).udp.into_iter().next().unwrap();
    assert_eq!(
        u("bind = \"[::]:1883\"").discovery,
        Some("[ff02::1]:1883".parse().unwrap())
    );
    assert_eq!(
        u("bind = \"0.0.0.0:2000\"").discovery,
        Some("225.1.1.1:1883".parse().unwrap())
    );
    assert_eq!(u("discovery = \"off\"").discovery, None);
    assert_eq!(
        u("discovery = \"192.168.1.255:1883\"").discovery,
        Some("192.168.1.255:1883".parse().unwrap())
    );
    assert_eq!(
        u("bind = \"[::]:1\"\ndiscovery = \"[ff05::1]:1883\"").discovery,
        Some("[ff05::1]:1883".parse().unwrap())
    );
    let f = "udp[0].discovery";
    one(
        "[[udp]]\ndiscovery = \"[ff02::1]:1883\"",
        2,
        f,
        "is IPv6 but bind \"0.0.0.0:1883\" is IPv4",
    );
    one(
        "[[udp]]\nbind = \"[::]:1883\"\ndiscovery = \"225.1.1.1:1883\"",
        3,
        f,
        "is IPv4 but bind",
    );
    one(
        "[[udp]]\ndiscovery = \"192.168.1.10:1883\"",
        2,
        f,
        "is neither a multicast group",
    );
    one(
        "[[udp]]\nbind = \"[::]:1\"\ndiscovery = \"[fe80::1]:1883\"",
        3,
        f,
        "not an IPv6 multicast",
    );
    one("[[udp]]\ndiscovery = \"225.1.1.1:0\"", 2, f, "port 0");
    one("[[udp]]\ndiscovery = \"225.1.1.1\"", 2, f, "has no port");
    one("[[udp]]\ndiscovery = false", 2, f, "or \"off\"");
    // A wrong bind reports only the bind, not a family mismatch.
    one(
        "[[udp]]\nbind = \"nope\"\ndiscovery = \"[ff02::1]:1883\"",
        2,
        "udp[0].bind",
        "",
    );
}

#[test]
fn udp_ttl_and_shape() {
    one(
        "[[udp]]\nmulticast_ttl = 256",
        2,
        "udp[0].multicast_ttl",
        "from 0 to 255",
    );
    one(
        "[[udp]]\nmulticast_ttl = -1",
        2,
        "udp[0].multicast_ttl",
        "from 0 to 255",
    );
    one(
        "[udp]\nbind = \"0.0.0.0:1\"",
        1,
        "udp",
        "write [[udp]] with double brackets",
    );
    one("udp = [1]", 1, "udp[0]", "expected a [[udp]] section");
    one("udp = 1", 1, "udp", "[[udp]]");
}

#[test]
fn udp_links_are_numbered_and_binds_are_unique() {
    let text = "[[udp]]\nbind = \"0.0.0.0:1883\"\n\n[[udp]]\nbind = \"0.0.0.0:1884\"\nmulticast_ttl = 300\n\n[[udp]]\nbind = \"0.0.0.0:1883\"\n";
    let all = issues(text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        (all[0].field.as_str(), all[0].line),
        ("udp[1].multicast_ttl", Some(6))
    );
    assert_eq!(
        (all[1].field.as_str(), all[1].line),
        ("udp[2].bind", Some(9))
    );
    assert!(all[1]
        .message
        .contains("already the bind address of udp[0] (line 2)"));
    // Two links without bind both use the default address.
    one(
        "[[udp]]\n[[udp]]\n",
        2,
        "udp[1].bind",
        "already the bind address of udp[0]",
    );
    // Port 0 (any free port) may repeat.
    assert_eq!(
        ok("[[udp]]\nbind = \"127.0.0.1:0\"\n[[udp]]\nbind = \"127.0.0.1:0\"")
            .udp
            .len(),
        2
    );
}

// ---- [broker] ----

#[test]
fn broker_url_is_required() {
    one(
        "[log]\n\n[broker]\nclient_id = \"x\"",
        3,
        "broker.url",
        "missing",
    );
    one("broker = {}", 1, "broker.url", "missing");
    assert_eq!(ok("").broker, None);
}

#[test]
fn broker_url_errors_point_at_the_url() {
    let f = "broker.url";
    one(
        "[broker]\nurl = \"http://h\"",
        2,
        f,
        "use mqtt:// (plain) or mqtts:// (TLS)",
    );
    one("[broker]\nurl = \"mqtt://h/x\"", 2, f, "has a path");
    one("[broker]\nurl = \"mqtt://\"", 2, f, "has no host");
    one("[broker]\nurl = \"localhost\"", 2, f, "has no scheme");
    one("[broker]\nurl = 1883", 2, f, "expected a URL");
}

#[test]
fn broker_client_id() {
    one(
        "[broker]\nurl = \"mqtt://h\"\nclient_id = \"\"",
        3,
        "broker.client_id",
        "empty",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\nclient_id = \"a\\u0000b\"",
        3,
        "broker.client_id",
        "NUL",
    );
    let long = "x".repeat(65536);
    one(
        &format!("[broker]\nurl = \"mqtt://h\"\nclient_id = \"{long}\""),
        3,
        "broker.client_id",
        "65535",
    );
    let b = ok(&format!(
        "[broker]\nurl = \"mqtt://h\"\nclient_id = \"{}\"",
        "x".repeat(65535)
    ));
    assert_eq!(b.broker.unwrap().client_id.len(), 65535);
}

#[test]
fn tls_options_need_mqtts() {
    for key in ["ca_file", "client_cert", "client_key"] {
        let text = format!("[broker]\nurl = \"mqtt://h\"\n{key} = \"x.pem\"\n");
        let all = issues(&text);
        let issue = all
            .iter()
            .find(|i| i.message.contains("TLS option"))
            .unwrap();
        assert_eq!(issue.field, format!("broker.{key}"));
        assert_eq!(issue.line, Some(3));
        assert!(issue.message.contains("use an mqtts:// url"));
    }
    let b = ok("[broker]\nurl = \"mqtts://h\"\nca_file = \"ca.pem\"")
        .broker
        .unwrap();
    assert_eq!(b.ca_file, Some("ca.pem".into()));
}

#[test]
fn client_cert_and_key_come_together() {
    one(
        "[broker]\nurl = \"mqtts://h\"\nclient_cert = \"c.pem\"",
        3,
        "broker.client_cert",
        "needs client_key",
    );
    one(
        "[broker]\nurl = \"mqtts://h\"\n\nclient_key = \"k.pem\"",
        4,
        "broker.client_key",
        "needs client_cert",
    );
    one(
        "[broker]\nurl = \"mqtts://h\"\nca_file = \"\"",
        3,
        "broker.ca_file",
        "the path is empty",
    );
}

#[test]
fn password_rules() {
    one(
        "[broker]\nurl = \"mqtt://h\"\nusername = \"u\"\npassword = \"p\"\npassword_file = \"f\"",
        5,
        "broker.password_file",
        "either password or password_file, not both",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\npassword = \"p\"",
        3,
        "broker.password",
        "needs a user name",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\npassword_file = \"p\"",
        3,
        "broker.password_file",
        "needs a user name",
    );
    one(
        "[broker]\nurl = \"mqtt://:p@h\"",
        2,
        "broker.url",
        "needs a user name",
    );
    // An empty string means "not set".
    let b = ok("[broker]\nurl = \"mqtt://h\"\nusername = \"\"\npassword = \"\"")
        .broker
        .unwrap();
    assert_eq!((b.username, b.password), (None, None));
}

#[test]
fn url_user_info_fills_absent_options_only() {
    let b = ok("[broker]\nurl = \"mqtt://u:p@h\"").broker.unwrap();
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("u"), Some("p"))
    );
    let b = ok("[broker]\nurl = \"mqtt://u:p@h\"\nusername = \"v\"\npassword = \"q\"")
        .broker
        .unwrap();
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("v"), Some("q"))
    );
    // password_file replaces the URL's password.
    let b = ok("[broker]\nurl = \"mqtt://u:p@h\"\npassword_file = \"pw\"")
        .broker
        .unwrap();
    assert_eq!((b.username.as_deref(), b.password), (Some("u"), None));
    assert_eq!(b.password_file, Some("pw".into()));
    // A user from the URL satisfies a password option.
    let b = ok("[broker]\nurl = \"mqtt://u@h\"\npassword = \"p\"")
        .broker
        .unwrap();
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("u"), Some("p"))
    );
}

#[test]
fn broker_durations() {
    let b = |t: &str| format!("[broker]\nurl = \"mqtt://h\"\n{t}");
    one(
        &b("keep_alive = \"4s\""),
        3,
        "broker.keep_alive",
        "too short; use at least \"5s\"",
    );
    one(
        &b("keep_alive = \"65536s\""),
        3,
        "broker.keep_alive",
        "use at most \"65535s\"",
    );
    one(
        &b("keep_alive = \"5500ms\""),
        3,
        "broker.keep_alive",
        "whole number of seconds",
    );
    one(
        &b("connect_timeout = \"50ms\""),
        3,
        "broker.connect_timeout",
        "at least \"100ms\"",
    );
    one(
        &b("reconnect_min = \"0\""),
        3,
        "broker.reconnect_min",
        "too short",
    );
    one(
        &b("reconnect_max = \"2h\""),
        3,
        "broker.reconnect_max",
        "at most \"1h\"",
    );
    assert_eq!(
        ok(&b("keep_alive = \"65535s\"")).broker.unwrap().keep_alive,
        Duration::from_secs(65535)
    );
}

#[test]
fn reconnect_min_must_not_exceed_max() {
    let b = |t: &str| format!("[broker]\nurl = \"mqtt://h\"\n{t}");
    one(
        &b("reconnect_max = \"10s\"\nreconnect_min = \"1m\""),
        4,
        "broker.reconnect_min",
        "reconnect_min (\"1m\") is longer than reconnect_max (\"10s\")",
    );
    // Only the max written: the default min (500ms) is compared with it.
    one(
        &b("reconnect_max = \"100ms\""),
        3,
        "broker.reconnect_max",
        "longer than reconnect_max",
    );
    let broker = ok(&b("reconnect_min = \"5s\"\nreconnect_max = \"5s\""))
        .broker
        .unwrap();
    assert_eq!(broker.reconnect_min, broker.reconnect_max);
}

#[test]
fn max_inflight() {
    let b = |t: &str| format!("[broker]\nurl = \"mqtt://h\"\n{t}");
    one(
        &b("max_inflight = 0"),
        3,
        "broker.max_inflight",
        "from 1 to 65535",
    );
    one(
        &b("max_inflight = 65536"),
        3,
        "broker.max_inflight",
        "from 1 to 65535",
    );
    one(
        &b("max_inflight_qos2 = 0"),
        3,
        "broker.max_inflight_qos2",
        "from 1 to 65535",
    );
    one(
        &b("max_inflight_qos2 = 65536"),
        3,
        "broker.max_inflight_qos2",
        "from 1 to 65535",
    );
}

// ---- [log] ----

#[test]
fn log_level() {
    assert_eq!(ok("[log]\nlevel = \"debug\"").log.level, "debug");
    assert_eq!(
        ok("[log]\nlevel = \"mqtt_sn_gateway=trace,warn\"")
            .log
            .level,
        "mqtt_sn_gateway=trace,warn"
    );
    one(
        "[log]\nlevel = \"infoo\"",
        2,
        "log.level",
        "did you mean \"info\"",
    );
    one(
        "[log]\nlevel = \"warning\"",
        2,
        "log.level",
        "did you mean \"warn\"",
    );
    one(
        "[log]\nlevel = \"a=loud\"",
        2,
        "log.level",
        "\"loud\" in \"a=loud\" is not a log level",
    );
    one("[log]\nlevel = \"\"", 2, "log.level", "empty");
    one(
        "[log]\nlevel = 3",
        2,
        "log.level",
        "expected a level in double quotes",
    );
}

// ---- unknown keys and sections ----

#[test]
fn unknown_key_suggests_the_close_one() {
    let i = one(
        "[gateway]\nretry_intervall = \"10s\"",
        2,
        "gateway.retry_intervall",
        "did you mean \"retry_interval\"?",
    );
    assert_eq!(i.column, Some(1));
    assert!(i
        .message
        .contains("The options of [gateway] are: gw_id, advertise_interval"));
    one(
        "[broker]\nurl = \"mqtt://h\"\nkeepalive = \"30s\"",
        3,
        "broker.keepalive",
        "did you mean \"keep_alive\"?",
    );
    one(
        "[[udp]]\nbnid = \"0.0.0.0:1\"",
        2,
        "udp[0].bnid",
        "did you mean \"bind\"?",
    );
    one(
        "[log]\nlevl = \"info\"",
        2,
        "log.levl",
        "did you mean \"level\"?",
    );
    let far = one(
        "[gateway]\ncolour = 1",
        2,
        "gateway.colour",
        "unknown option; the options of [gateway] are:",
    );
    assert!(!far.message.contains("did you mean"));
}

#[test]
fn unknown_key_that_belongs_elsewhere() {
    one(
        "[gateway]\nlevel = \"info\"",
        2,
        "gateway.level",
        "\"level\" belongs in [log]",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\nbind = \"x\"",
        3,
        "broker.bind",
        "belongs in [[udp]]",
    );
    one(
        "gw_id = 1\n[gateway]\n",
        1,
        "gw_id",
        "is an option of [gateway]; move it below a [gateway] header",
    );
}

#[test]
fn unknown_section() {
    one(
        "[gatway]\ngw_id = 1",
        1,
        "gatway",
        "did you mean [gateway]?",
    );
    one("[[udps]]\n", 1, "udps", "did you mean [[udp]]?");
    one(
        "[statistics]\n",
        1,
        "statistics",
        "unknown section; the sections are",
    );
    one("gateway = 5", 1, "gateway", "expected a section");
}

// ---- several problems at once ----

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let text = r#"[gateway]
gw_id = 300
retry_interval = "10x"
max_retries = 50
colour = "blue"

[predefined_topics]
0 = "a"

[[udp]]
bind = "nope"

[broker]
url = "mqtt://h"
ca_file = "ca.pem"

[log]
level = "a=loud"
"#;
    let all = issues(text);
    let got: Vec<(usize, &str)> = all
        .iter()
        .map(|i| (i.line.unwrap(), i.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "gateway.gw_id"),
            (3, "gateway.retry_interval"),
            (4, "gateway.max_retries"),
            (5, "gateway.colour"),
            (8, "predefined_topics.0"),
            (11, "udp[0].bind"),
            (15, "broker.ca_file"),
            (18, "log.level"),
        ]
    );
    let err = sn_config::Config::parse(text, "g.toml").unwrap_err();
    assert_eq!(err.to_string().lines().count(), 8);
}

// ---- TOML syntax ----

#[test]
fn syntax_errors_name_the_field_and_hint_at_the_fix() {
    one(
        "[log]\nlevel = info",
        2,
        "log.level",
        "text must be in double quotes: write \"info\"",
    );
    one(
        "[[udp]]\nbind = 0.0.0.0:1883",
        2,
        "udp[0].bind",
        "write \"0.0.0.0:1883\"",
    );
    one(
        "[gateway]\nqos_minus_one = True",
        2,
        "gateway.qos_minus_one",
        "lower case",
    );
    one(
        "[gateway]\ngw_id = 1\ngw_id = 2",
        3,
        "gateway.gw_id",
        "set twice",
    );
    one(
        "[gateway]\ngw_id = 1\n[gateway]\n",
        3,
        "gateway",
        "appears twice",
    );
    one(
        "[gateway]\nretry_interval = \"10s\nmax_retries = 1",
        2,
        "gateway.retry_interval",
        "no closing quote",
    );
    let i = one("[gateway]\nfoo = = 3", 2, "gateway.foo", "invalid TOML");
    assert_eq!(i.column, Some(7));
}

#[test]
fn syntax_errors_on_several_lines_are_all_reported() {
    let all = issues("[gateway]\ngw_id = = 1\n[log]\nlevel = info\n");
    let got: Vec<_> = all.iter().map(|i| (i.line, i.field.as_str())).collect();
    assert_eq!(
        got,
        vec![(Some(2), "gateway.gw_id"), (Some(4), "log.level")]
    );
}

#[test]
fn no_input_panics() {
    // A few hostile inputs; none may panic, and each is either valid or an error.
    let inputs = [
        "\u{feff}",
        "\u{feff}[gateway]\ngw_id = \"x\"",
        "[",
        "[[",
        "]]",
        "=",
        "\"",
        "[gateway]\ngw_id = 99999999999999999999999999999999999999999",
        "[gateway]\nretry_interval = \"99999999999999999999999h\"",
        "[gateway]\nretry_interval = \"1.99999999999999999999999999s\"",
        "[predefined_topics]\n0x = \"a\"\n\"\" = \"b\"\n0xFFFFFFFFFFFFFFFFFFFFFFFF = \"c\"",
        "[broker]\nurl = \"mqtt://[\"",
        "[broker]\nurl = \"mqtt://[::1\"",
        "[broker]\nurl = \"mqtt://h:\"",
        "[broker]\nurl = \"mqtt://%\"",
        "[broker]\nurl = \"mqtt://é\"",
        "[log]\nlevel = \"[{]}=\"",
        "a.b.c.d = 1\n[a.b]\n",
        "udp = [[], {}, 1]",
        "[[udp]]\n[udp.x]\n",
        "x = 1979-05-27T07:32:00Z",
    ];
    for input in inputs {
        let _ = sn_config::Config::parse(input, "fuzz.toml");
    }
}

#[test]
fn broker_fallback_is_embedded_by_default_and_can_be_turned_off() {
    let c = ok("[broker]\nurl = \"mqtt://h\"\n");
    assert_eq!(c.broker.unwrap().fallback, sn_config::Fallback::Embedded);
    let c = ok("[broker]\nurl = \"mqtt://h\"\nfallback = \"off\"\n");
    assert_eq!(c.broker.unwrap().fallback, sn_config::Fallback::Off);
    one(
        "[broker]\nurl = \"mqtt://h\"\nfallback = \"local\"\n",
        3,
        "broker.fallback",
        "\"local\" is not a fallback; use \"embedded\" or \"off\"",
    );
}

// ---- settings without effect: warnings, the file stays valid ----

/// Appended to a file with a `[broker]`, so that the warning about open admission (see
/// tests/policy.rs) stays out of the tests of the other warnings.
const LISTED: &str = "[policy]\nadmission = \"listed\"\n";

#[test]
fn a_spool_with_the_store_off_is_a_warning_saying_why_and_how_to_fix_it() {
    let c = ok("[store]\nenabled = false\n\n[spool]\nmax_bytes = 4096\nenabled = true\n");
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!(
        (w.line, w.column, w.field.as_str()),
        (Some(6), Some(1), "spool.enabled")
    );
    assert!(
        w.message.starts_with(
            "ignored: the spool is kept in the store file and [store] enabled = false \
             (line 2), so there is no spool;"
        ),
        "{}",
        w.message
    );
    assert!(
        w.message
            .contains("Set [store] enabled = true to spool, or [spool] enabled = false"),
        "{}",
        w.message
    );
    // In transparent mode a store would not give a spool either: the fix says so.
    let c = ok(&format!(
        "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\n\
         [store]\nenabled = false\n[spool]\nenabled = true\n{LISTED}"
    ));
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert!(
        c.warnings[0]
            .message
            .ends_with("Set [spool] enabled = false: in transparent mode there is no spool at all"),
        "{}",
        c.warnings[0].message
    );
    // Another [spool] option, enabled left at its default (true): the section is named.
    let c = ok("[spool]\nqos0 = true\n[store]\nenabled = false\n");
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert_eq!(c.warnings[0].field, "spool");
    assert_eq!(c.warnings[0].line, Some(1));
    // No warning when the spool is off or when the store is on. (Without a [spool] section
    // the default spool is on, and the store off is a warning of its own:
    // the_store_off_with_the_default_spool_is_a_warning.)
    assert!(ok("[store]\nenabled = false\n[spool]\nenabled = false\n")
        .warnings
        .is_empty());
    assert!(ok("[spool]\nenabled = true\n").warnings.is_empty());
    assert!(ok("").warnings.is_empty());
}

#[test]
fn a_fallback_in_transparent_mode_is_a_warning_saying_why_and_how_to_fix_it() {
    for value in ["embedded", "off"] {
        let c = ok(&format!(
            "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\nfallback = \"{value}\"\n{LISTED}"
        ));
        assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
        let w = &c.warnings[0];
        assert_eq!(
            (w.line, w.column, w.field.as_str()),
            (Some(4), Some(1), "broker.fallback")
        );
        assert!(
            w.message.starts_with(
                "ignored: mode = \"transparent\" (line 3) gives each mote its own connection"
            ),
            "{}",
            w.message
        );
        assert!(
            w.message
                .contains("Remove fallback, or set mode = \"aggregating\""),
            "{}",
            w.message
        );
    }
    // Aggregating mode uses it; transparent mode without it has nothing to warn about.
    assert!(ok(&format!(
        "[broker]\nurl = \"mqtt://h\"\nfallback = \"embedded\"\n{LISTED}"
    ))
    .warnings
    .is_empty());
    assert!(ok(&format!(
        "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\n{LISTED}"
    ))
    .warnings
    .is_empty());
}

#[test]
fn warnings_come_in_file_order_and_errors_still_win() {
    let c = ok(&format!(
        "[broker]\nurl = \"mqtt://h\"\nfallback = \"off\"\nmode = \"transparent\"\n\
         [spool]\nenabled = true\n[store]\nenabled = false\n{LISTED}"
    ));
    let fields: Vec<&str> = c.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(fields, ["broker.fallback", "spool.enabled"]);
    // An invalid file reports its errors only.
    one(
        "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\nfallback = \"embedded\"\n\
         [store]\nenabled = 3\n",
        6,
        "store.enabled",
        "",
    );
}

// ---- [log] format, stats_interval, and levels that are not levels ----

#[test]
fn a_bare_word_that_is_not_a_level_is_refused() {
    // EnvFilter would read "verbose" as a target and log nothing at all.
    one(
        "[log]\nlevel = \"verbose\"",
        2,
        "log.level",
        "\"verbose\" is not a log level",
    );
    one(
        "[log]\nlevel = \"mqtt_sn_gateway=debug,verbose\"",
        2,
        "log.level",
        "\"verbose\" is not a log level",
    );
    assert_eq!(
        ok("[log]\nlevel = \"mqtt_sn_gateway=debug,rmqtt=info,warn\"")
            .log
            .level,
        "mqtt_sn_gateway=debug,rmqtt=info,warn"
    );
    assert!(sn_config::check_log_level("verbose").is_err());
    assert!(sn_config::LogConfig::from_level("verbose").is_err());
    assert!(sn_config::LogConfig::from_level("debug").is_ok());
}

#[test]
fn log_format_and_stats_interval() {
    use sn_config::LogFormat;
    assert_eq!(ok("[log]\nformat = \"json\"").log.format, LogFormat::Json);
    assert_eq!(ok("[log]\nformat = \"text\"").log.format, LogFormat::Text);
    one(
        "[log]\nformat = \"xml\"",
        2,
        "log.format",
        "use \"text\" or \"json\"",
    );
    assert_eq!(
        ok("[log]\nstats_interval = \"1m\"").log.stats_interval,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        ok("[log]\nstats_interval = \"0\"").log.stats_interval,
        std::time::Duration::ZERO
    );
    one(
        "[log]\nstats_interval = \"500ms\"",
        2,
        "log.stats_interval",
        "too short",
    );
}

#[test]
fn the_store_off_with_the_default_spool_is_a_warning() {
    // The spool is on by default and lives in the store: turning the store off turns it off.
    let config = ok("[store]\nenabled = false\n");
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(
        (warning.field.as_str(), warning.line),
        ("store.enabled", Some(2))
    );
    assert!(
        warning.message.contains("no spool") && warning.message.contains("[spool] enabled = false"),
        "{warning}"
    );
    // Saying so silences it.
    assert!(ok("[store]\nenabled = false\n[spool]\nenabled = false\n")
        .warnings
        .is_empty());
}

#[test]
fn the_metrics_endpoint_is_off_by_default_and_warned_beyond_loopback() {
    assert_eq!(sn_config::Config::default().metrics.listen, None);
    let c = ok("[metrics]\nlisten = \"127.0.0.1:9090\"\n");
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert!(c.warnings.is_empty());
    let c = ok("[metrics]\nlisten = \"0.0.0.0:9090\"\n");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].message.contains("has no login"));
    assert_eq!(ok("[metrics]\nlisten = \"off\"\n").metrics.listen, None);
    one(
        "[metrics]\nlisten = \"nowhere\"\n",
        2,
        "metrics.listen",
        "nowhere",
    );
}
