//! `[embedded_broker]`: the default, an address, "off", and wrong values with their line and
//! field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;

use common::{ok, one};
use sn_config::{Config, EmbeddedBrokerConfig, DEFAULT_EMBEDDED_LISTEN};

#[test]
fn by_default_it_listens_on_loopback_1883() {
    assert_eq!(DEFAULT_EMBEDDED_LISTEN, "127.0.0.1:1883".parse().unwrap());
    assert_eq!(
        Config::default().embedded_broker,
        EmbeddedBrokerConfig {
            listen: Some(DEFAULT_EMBEDDED_LISTEN)
        }
    );
    assert_eq!(ok("[embedded_broker]\n"), Config::default());
}

#[test]
fn listen_takes_an_address_or_off() {
    let listen = |text: &str| {
        ok(&format!("[embedded_broker]\nlisten = {text}\n"))
            .embedded_broker
            .listen
    };
    assert_eq!(
        listen("\"0.0.0.0:1884\""),
        Some("0.0.0.0:1884".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        listen("\"[::1]:1883\""),
        Some("[::1]:1883".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        listen("\"127.0.0.1:0\""),
        Some("127.0.0.1:0".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(listen("\"off\""), None);
    assert_eq!(listen("\"OFF\""), None);
}

#[test]
fn wrong_values_name_the_line_and_field() {
    one(
        "[embedded_broker]\nlisten = \"127.0.0.1\"\n",
        2,
        "embedded_broker.listen",
        "has no port; write it with one, like \"127.0.0.1:1883\"",
    );
    one(
        "[embedded_broker]\nlisten = \"localhost:1883\"\n",
        2,
        "embedded_broker.listen",
        "is not an IP address",
    );
    one(
        "[embedded_broker]\nlisten = 1883\n",
        2,
        "embedded_broker.listen",
        "or \"off\"",
    );
    one(
        "\n[embedded_broker]\nlisen = \"127.0.0.1:1883\"\n",
        3,
        "embedded_broker.lisen",
        "did you mean \"listen\"?",
    );
    one(
        "[embeded_broker]\n",
        1,
        "embeded_broker",
        "did you mean [embedded_broker]?",
    );
}

#[test]
fn listening_beyond_loopback_is_a_warning_when_the_broker_runs() {
    // No [broker]: the embedded broker serves, and it has no logins.
    let config = ok("[embedded_broker]\nlisten = \"0.0.0.0:1883\"\n");
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.field, "embedded_broker.listen");
    assert_eq!(warning.line, Some(2));
    assert!(
        warning.message.contains("0.0.0.0:1883, beyond this host")
            && warning.message.contains("no logins"),
        "{warning}"
    );
    // As the fallback it runs too.
    let fallback = ok(
        "[broker]\nurl = \"mqtt://h\"\n[policy]\nadmission = \"listed\"\n\
                       [embedded_broker]\nlisten = \"192.0.2.1:1883\"\n",
    );
    assert_eq!(fallback.warnings.len(), 1, "{:#?}", fallback.warnings);
    assert_eq!(fallback.warnings[0].line, Some(6));
    // Loopback, "off", or a broker without fallback: no warning.
    for quiet in [
        "[embedded_broker]\nlisten = \"127.0.0.1:1883\"\n",
        "[embedded_broker]\nlisten = \"[::1]:1883\"\n",
        "[embedded_broker]\nlisten = \"off\"\n",
        "[broker]\nurl = \"mqtt://h\"\nfallback = \"off\"\n[policy]\nadmission = \"listed\"\n\
         [embedded_broker]\nlisten = \"0.0.0.0:1883\"\n",
    ] {
        assert!(ok(quiet).warnings.is_empty(), "{quiet}");
    }
}
