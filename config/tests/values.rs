//! Broker URLs, UDP bind addresses, log levels and predefined topics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{issues, ok, one, topic};
use sn_config::{BrokerConfig, LogConfig, UdpConfig};

#[track_caller]
fn url(text: &str) -> BrokerConfig {
    BrokerConfig::from_url(text).unwrap()
}

#[track_caller]
fn url_err(text: &str, needle: &str) {
    let err = BrokerConfig::from_url(text).unwrap_err();
    assert!(
        err.contains(needle),
        "{text}: {err:?} does not contain {needle:?}"
    );
}

#[test]
fn broker_url_schemes_and_default_ports() {
    let b = url("mqtt://localhost");
    assert_eq!((b.tls, b.host.as_str(), b.port), (false, "localhost", 1883));
    assert_eq!(b.url, "mqtt://localhost:1883");
    let b = url("mqtts://broker.example.com");
    assert_eq!(
        (b.tls, b.host.as_str(), b.port),
        (true, "broker.example.com", 8883)
    );
    assert_eq!(b.url, "mqtts://broker.example.com:8883");
    let b = url("MQTTS://h:1234/");
    assert_eq!(
        (b.tls, b.port, b.url.as_str()),
        (true, 1234, "mqtts://h:1234")
    );
    let b = url("mqtt://10.0.0.5:1884");
    assert_eq!((b.host.as_str(), b.port), ("10.0.0.5", 1884));
}

#[test]
fn broker_url_other_fields_default() {
    let b = url("mqtt://h");
    assert_eq!(b.client_id, "mqtt-sn-gateway");
    assert_eq!(
        (
            b.username.clone(),
            b.password.clone(),
            b.password_file.clone()
        ),
        (None, None, None)
    );
    assert_eq!(b.keep_alive, Duration::from_secs(30));
    assert!(!b.clean_session);
    assert_eq!(b.connect_timeout, Duration::from_secs(10));
    assert_eq!(b.reconnect_min, Duration::from_millis(500));
    assert_eq!(b.reconnect_max, Duration::from_secs(30));
    assert_eq!(b.max_inflight, 100);
    assert_eq!((b.ca_file, b.client_cert, b.client_key), (None, None, None));
    // The same values come from a [broker] section with only the url.
    assert_eq!(
        ok("[broker]\nurl = \"mqtt://h\"").broker,
        Some(url("mqtt://h"))
    );
}

#[test]
fn broker_url_ipv6() {
    let b = url("mqtt://[::1]:1884");
    assert_eq!((b.host.as_str(), b.port), ("::1", 1884));
    assert_eq!(b.url, "mqtt://[::1]:1884");
    assert_eq!(b.address(), "[::1]:1884");
    let b = url("mqtts://[2001:db8::10]");
    assert_eq!((b.host.as_str(), b.port), ("2001:db8::10", 8883));
    assert_eq!(url("mqtt://example.com:99").address(), "example.com:99");
    url_err("mqtt://::1:1883", "needs brackets");
    url_err("mqtt://[::g]:1883", "is not an IPv6 address");
    url_err("mqtt://[::1", "no closing");
    url_err("mqtt://[::1]x", "only \":PORT\"");
}

#[test]
fn broker_url_userinfo() {
    let b = url("mqtt://alice:secret@h");
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("alice"), Some("secret"))
    );
    assert_eq!(b.url, "mqtt://h:1883");
    let b = url("mqtt://bob@h");
    assert_eq!((b.username.as_deref(), b.password), (Some("bob"), None));
    let b = url("mqtt://u%40x:p%3Aw%2F@h");
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("u@x"), Some("p:w/"))
    );
    let b = url("mqtt://u:p@ss@h");
    assert_eq!(
        (b.username.as_deref(), b.password.as_deref()),
        (Some("u"), Some("p@ss"))
    );
    let b = url("mqtt://u:@h");
    assert_eq!(b.password.as_deref(), Some(""));
    url_err("mqtt://:p@h", "a password needs a user name");
    url_err("mqtt://u:%zz@h", "not followed by two hex digits");
    url_err("mqtt://u:p/w@h", "percent-encode it");
}

#[test]
fn broker_url_errors() {
    url_err("", "empty");
    url_err(
        "localhost:1883",
        "has no scheme; write \"mqtt://localhost:1883\"",
    );
    url_err(
        "http://h",
        "has the scheme \"http\"; use mqtt:// (plain) or mqtts:// (TLS)",
    );
    url_err("tcp://h", "write mqtt:// instead of tcp://");
    url_err("ssl://h", "write mqtts:// instead of ssl://");
    url_err("wss://h", "WebSocket");
    url_err("mqtt://", "has no host");
    url_err("mqtt://:1883", "has no host");
    url_err("mqtt://u@", "has no host");
    url_err("mqtt://h/topic", "has a path (\"/topic\")");
    url_err("mqtt://h/?x=1", "has a path");
    url_err("mqtt://h?x=1", "has a query");
    url_err("mqtt://h#x", "has a fragment");
    url_err("mqtt://h:", "empty port");
    url_err("mqtt://h:0", "out of range");
    url_err("mqtt://h:65536", "out of range");
    url_err("mqtt://h:+1", "not a number");
    url_err("mqtt://h:abc", "not a number");
    url_err("mqtt://999.1.1.1", "is not an IPv4 address");
    url_err("mqtt://bad host", "is not a host name");
    url_err("mqtt://-h", "start or end with '-'");
    url_err("mqtt://a..b", "1 to 63 characters");
    assert_eq!(url("mqtt://my_broker.local.").host, "my_broker.local.");
}

#[test]
fn udp_from_bind() {
    let u = UdpConfig::from_bind("0.0.0.0:10000").unwrap();
    assert_eq!(u.bind, "0.0.0.0:10000".parse().unwrap());
    assert_eq!(u.discovery, Some("225.1.1.1:1883".parse().unwrap()));
    assert_eq!((u.multicast_ttl, u.multicast_loop), (1, false));
    let u = UdpConfig::from_bind("[::]:1883").unwrap();
    assert_eq!(u.discovery, Some("[ff02::1]:1883".parse().unwrap()));
    assert_eq!(
        UdpConfig::from_bind("0.0.0.0:1883").unwrap(),
        UdpConfig::default()
    );
    assert!(UdpConfig::from_bind("0.0.0.0")
        .unwrap_err()
        .contains("has no port"));
    assert!(UdpConfig::from_bind("host:1")
        .unwrap_err()
        .contains("not an IP address"));
}

#[test]
fn log_from_level() {
    assert_eq!(LogConfig::from_level("debug").unwrap().level, "debug");
    assert_eq!(LogConfig::from_level(" warn ").unwrap().level, "warn");
    // A bare word is a level, never a target: "verbose" would log nothing at all.
    assert!(LogConfig::from_level("verbose")
        .unwrap_err()
        .contains("\"verbose\" is not a log level"));
    assert!(LogConfig::from_level("verbose=debug").is_ok());
    assert!(LogConfig::from_level("debg")
        .unwrap_err()
        .contains("did you mean \"debug\""));
}

// ---- [predefined_topics] ----

#[test]
fn predefined_id_forms() {
    let c = ok(r#"
[predefined_topics]
1 = "a"
"2" = "b"
0x0003 = "c"
"0X04" = "d"
0xfffe = "e"
65533 = "f"
007 = "g"
"#);
    // Sorted by id, whatever the order in the file.
    let ids: Vec<u16> = c.core.predefined_topics.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 7, 65533, 0xFFFE]);
    assert_eq!(topic(&c, 3), "c");
}

#[test]
fn predefined_reserved_and_out_of_range_ids() {
    let f = |k: &str| format!("predefined_topics.{k}");
    one(
        "[predefined_topics]\n0 = \"a\"",
        2,
        &f("0"),
        "topic id 0 is reserved",
    );
    one(
        "[predefined_topics]\n0x0000 = \"a\"",
        2,
        &f("0x0000"),
        "reserved",
    );
    one(
        "[predefined_topics]\n0xFFFF = \"a\"",
        2,
        &f("0xFFFF"),
        "reserved",
    );
    one(
        "[predefined_topics]\n65535 = \"a\"",
        2,
        &f("65535"),
        "reserved",
    );
    one(
        "[predefined_topics]\n65536 = \"a\"",
        2,
        &f("65536"),
        "out of range",
    );
    one(
        "[predefined_topics]\n0x10000 = \"a\"",
        2,
        &f("0x10000"),
        "out of range",
    );
    one(
        "[predefined_topics]\ntemp = \"a\"",
        2,
        &f("temp"),
        "\"temp\" is not a topic id",
    );
    one(
        "[predefined_topics]\n\"-1\" = \"a\"",
        2,
        &f("-1"),
        "is not a topic id",
    );
    one(
        "[predefined_topics]\n\"+1\" = \"a\"",
        2,
        "predefined_topics.\"+1\"",
        "is not a topic id",
    );
    one(
        "[predefined_topics]\n0x = \"a\"",
        2,
        &f("0x"),
        "is not a topic id",
    );
    one(
        "[predefined_topics]\n\" 1\" = \"a\"",
        2,
        "predefined_topics.\" 1\"",
        "is not a topic id",
    );
}

#[test]
fn predefined_duplicates() {
    let text = "[predefined_topics]\n16 = \"a\"\n\"0x10\" = \"b\"\n0x0010 = \"c\"\n017 = \"d\"\n17 = \"e\"\n";
    let all = issues(text);
    let got: Vec<_> = all.iter().map(|i| (i.line, i.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(3), "predefined_topics.0x10"),
            (Some(4), "predefined_topics.0x0010"),
            (Some(6), "predefined_topics.17"),
        ]
    );
    assert!(all[0]
        .message
        .contains("topic id 16 is already defined on line 2 (as 16)"));
    assert!(all[2]
        .message
        .contains("already defined on line 5 (as 017)"));
}

#[test]
fn predefined_topic_names() {
    let f = "predefined_topics.1";
    one("[predefined_topics]\n1 = \"\"", 2, f, "empty");
    one("[predefined_topics]\n1 = \"a/+/b\"", 2, f, "wildcard '+'");
    one("[predefined_topics]\n1 = \"a/#\"", 2, f, "wildcard '#'");
    one("[predefined_topics]\n1 = \"a\\u0000b\"", 2, f, "NUL");
    one("[predefined_topics]\n1 = 5", 2, f, "expected a topic name");
    one(
        &format!("[predefined_topics]\n1 = \"{}\"", "x".repeat(65536)),
        2,
        f,
        "65535",
    );
    let c = ok(&format!(
        "[predefined_topics]\n1 = \"{}\"\n2 = \"/\"\n3 = \"ü/$SYS\"",
        "x".repeat(65535)
    ));
    assert_eq!(topic(&c, 1).len(), 65535);
    assert_eq!(topic(&c, 3), "ü/$SYS");
}
