//! Transparent mode: `[broker] mode`, `client_id_prefix`, `max_connecting`, and the
//! `[[credentials]]` of each mote, with the messages for mistakes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use common::{issues, ok, one};
use sn_config::{BrokerConfig, BrokerMode, Config, CredentialsConfig};

const TRANSPARENT: &str = "[broker]\nurl = \"mqtt://h\"\nmode = \"transparent\"\n";
const TRANSPARENT_TLS: &str = "[broker]\nurl = \"mqtts://h\"\nmode = \"transparent\"\n";

#[test]
fn aggregating_is_the_default() {
    let b = BrokerConfig::from_url("mqtt://h").unwrap();
    assert_eq!(b.client_id_prefix, "");
    assert_eq!(b.max_connecting, 100);
    let c = ok("[broker]\nurl = \"mqtt://h\"\n");
    assert_eq!(c.core.mode, BrokerMode::Aggregating);
    assert_eq!(c.broker, Some(b));
    assert!(Config::default().credentials.is_empty());
    assert_eq!(BrokerMode::default(), BrokerMode::Aggregating);
}

#[test]
fn mode_prefix_and_max_connecting() {
    let c = ok(&format!(
        "{TRANSPARENT}client_id_prefix = \"site-7/\"\nmax_connecting = 1\n"
    ));
    assert_eq!(c.core.mode, BrokerMode::Transparent);
    let b = c.broker.unwrap();
    assert_eq!(b.client_id_prefix, "site-7/");
    assert_eq!(b.max_connecting, 1);
    let c = ok("[broker]\nurl = \"mqtt://h\"\nmode = \"aggregating\"\nmax_connecting = 10000\n");
    assert_eq!(c.core.mode, BrokerMode::Aggregating);
    let b = c.broker.unwrap();
    assert_eq!(b.max_connecting, 10000);
    assert_eq!(BrokerMode::Transparent.to_string(), "transparent");
}

#[test]
fn a_wrong_mode_names_the_choices() {
    let issue = one(
        "[broker]\nurl = \"mqtt://h\"\nmode = \"per-client\"\n",
        3,
        "broker.mode",
        "\"per-client\" is not a mode; use \"aggregating\" or \"transparent\"",
    );
    assert_eq!(issue.column, Some(8));
    one(
        "[broker]\nurl = \"mqtt://h\"\nmode = true\n",
        3,
        "broker.mode",
        "expected \"aggregating\" or \"transparent\", found true; put it in double quotes",
    );
}

#[test]
fn max_connecting_is_1_to_10000() {
    for bad in ["0", "10001", "-5"] {
        one(
            &format!("[broker]\nurl = \"mqtt://h\"\nmax_connecting = {bad}\n"),
            3,
            "broker.max_connecting",
            "is out of range; use a whole number from 1 to 10000",
        );
    }
    one(
        "[broker]\nurl = \"mqtt://h\"\nmax_connecting = \"100\"\n",
        3,
        "broker.max_connecting",
        "remove the quotes",
    );
}

#[test]
fn the_prefix_is_an_mqtt_string() {
    one(
        "[broker]\nurl = \"mqtt://h\"\nclient_id_prefix = \"a\\u0000b\"\n",
        3,
        "broker.client_id_prefix",
        "NUL",
    );
    one(
        "[broker]\nurl = \"mqtt://h\"\nclient_id_prefix = 7\n",
        3,
        "broker.client_id_prefix",
        "put it in double quotes",
    );
}

#[test]
fn credentials_with_a_password_a_file_or_a_certificate() {
    let c = ok(&format!(
        "{TRANSPARENT_TLS}username = \"shared\"\npassword = \"s\"\n\
         [[credentials]]\nclient_id = \"m1\"\nusername = \"u1\"\npassword = \"p1\"\n\
         [[credentials]]\nclient_id = \"m2\"\nusername = \"u2\"\npassword_file = \"m2.pass\"\n\
         [[credentials]]\nclient_id = \"m3\"\nclient_cert = \"m3.crt\"\nclient_key = \"m3.key\"\n\
         [[credentials]]\nclient_id = \"m4\"\nusername = \"only-a-name\"\n"
    ));
    assert_eq!(
        c.credentials,
        vec![
            CredentialsConfig {
                username: Some("u1".into()),
                password: Some("p1".into()),
                ..CredentialsConfig::new("m1")
            },
            CredentialsConfig {
                username: Some("u2".into()),
                password_file: Some(PathBuf::from("m2.pass")),
                ..CredentialsConfig::new("m2")
            },
            CredentialsConfig {
                client_cert: Some(PathBuf::from("m3.crt")),
                client_key: Some(PathBuf::from("m3.key")),
                ..CredentialsConfig::new("m3")
            },
            CredentialsConfig {
                username: Some("only-a-name".into()),
                ..CredentialsConfig::new("m4")
            },
        ]
    );
    assert!(c.credentials[0].has_login() && !c.credentials[0].has_certificate());
    assert!(!c.credentials[2].has_login() && c.credentials[2].has_certificate());
    // The shared default stays in [broker].
    assert_eq!(c.broker.unwrap().username.as_deref(), Some("shared"));
}

#[test]
fn credentials_as_an_inline_list() {
    let c = ok(&format!(
        "credentials = [{{ client_id = \"a\", username = \"a\" }}, {{ client_id = \"b\", \
         username = \"b\" }}]\n{TRANSPARENT}"
    ));
    assert_eq!(c.credentials.len(), 2);
    assert_eq!(c.credentials[1].client_id, "b");
}

#[test]
fn the_password_is_not_in_debug_output() {
    let c = ok(&format!(
        "{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\npassword = \"hunter2\"\n"
    ));
    let debug = format!("{:?}", c.credentials);
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}

#[test]
fn credentials_need_transparent_mode() {
    let issue = one(
        "[broker]\nurl = \"mqtt://h\"\n\n[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\n",
        4,
        "credentials[0]",
        "[[credentials]] are only used in transparent mode (one broker connection per mote), \
         but [broker] mode is \"aggregating\" (the default); set mode = \"transparent\" in \
         [broker], or remove the [[credentials]] sections",
    );
    assert_eq!(issue.column, Some(1));
    // Said where the mode is written, whichever section comes first.
    one(
        "[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\n\n[broker]\nurl = \"mqtt://h\"\n\
         mode = \"aggregating\"\n",
        1,
        "credentials[0]",
        "[broker] mode is \"aggregating\" (line 7)",
    );
    one(
        "[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\n",
        1,
        "credentials[0]",
        "there is no [broker] section; add [broker] with url and mode = \"transparent\"",
    );
}

#[test]
fn a_duplicate_client_id_names_the_first_entry() {
    let text = format!(
        "{TRANSPARENT}\n[[credentials]]\nclient_id = \"m\"\nusername = \"a\"\n\n\
         [[credentials]]\nclient_id = \"x\"\nusername = \"x\"\n\n\
         [[credentials]]\nclient_id = \"m\"\nusername = \"b\"\n"
    );
    let issue = one(
        &text,
        14,
        "credentials[2].client_id",
        "the client id \"m\" already has credentials on line 5 (credentials[0]); give each mote \
         one [[credentials]] entry",
    );
    assert_eq!(issue.column, Some(13));
}

#[test]
fn client_id_is_required_and_not_empty() {
    one(
        &format!("{TRANSPARENT}[[credentials]]\nusername = \"u\"\n"),
        4,
        "credentials[0].client_id",
        "missing; write client_id = \"...\", the client id the mote sends in its CONNECT",
    );
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = \"\"\nusername = \"u\"\n"),
        5,
        "credentials[0].client_id",
        "the client id is empty",
    );
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = 12\nusername = \"u\"\n"),
        5,
        "credentials[0].client_id",
        "expected the client id in double quotes, found the number 12; put it in double quotes",
    );
}

#[test]
fn a_client_id_longer_than_the_gateway_accepts() {
    one(
        &format!(
            "[gateway]\nmax_client_id_len = 4\n{TRANSPARENT}[[credentials]]\n\
             client_id = \"mote-1\"\nusername = \"u\"\n"
        ),
        7,
        "credentials[0].client_id",
        "the client id is 6 bytes long, more than [gateway] max_client_id_len (4)",
    );
}

#[test]
fn an_entry_without_credentials() {
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\n"),
        4,
        "credentials[0]",
        "the entry for \"m\" gives no credentials; add username (with password or \
         password_file), or client_cert and client_key; a mote without an entry uses the \
         [broker] ones",
    );
}

#[test]
fn password_rules() {
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\npassword = \"p\"\n"),
        6,
        "credentials[0].password",
        "a password needs a user name",
    );
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\npassword_file = \"f\"\n"),
        6,
        "credentials[0].password_file",
        "a password needs a user name",
    );
    one(
        &format!(
            "{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\n\
             password = \"p\"\npassword_file = \"f\"\n"
        ),
        8,
        "credentials[0].password_file",
        "set either password or password_file, not both",
    );
}

#[test]
fn certificate_rules() {
    one(
        &format!("{TRANSPARENT_TLS}[[credentials]]\nclient_id = \"m\"\nclient_cert = \"c\"\n"),
        6,
        "credentials[0].client_cert",
        "client_cert needs client_key as well",
    );
    one(
        &format!("{TRANSPARENT_TLS}[[credentials]]\nclient_id = \"m\"\nclient_key = \"k\"\n"),
        6,
        "credentials[0].client_key",
        "client_key needs client_cert as well",
    );
    one(
        &format!("{TRANSPARENT_TLS}[[credentials]]\nclient_id = \"m\"\nclient_cert = \"\"\n"),
        6,
        "credentials[0].client_cert",
        "the path is empty",
    );
    let all = issues(&format!(
        "{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\nclient_cert = \"c\"\nclient_key = \"k\"\n"
    ));
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].field, "credentials[0].client_cert");
    assert_eq!(all[0].line, Some(6));
    assert!(
        all[0]
            .message
            .contains("client_cert is a TLS option, but the [broker] url is plain mqtt://"),
        "{}",
        all[0].message
    );
    assert_eq!(all[1].field, "credentials[0].client_key");
}

#[test]
fn unknown_options_and_a_single_bracket() {
    one(
        &format!(
            "{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\npasword = \"p\"\n"
        ),
        7,
        "credentials[0].pasword",
        "unknown option; did you mean \"password\"? The options of [[credentials]] are: \
         client_id, username, password, password_file, client_cert, client_key",
    );
    one(
        &format!("{TRANSPARENT}[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\nfallback = \"off\"\n"),
        7,
        "credentials[0].fallback",
        "unknown option in [[credentials]]; \"fallback\" belongs in [broker]",
    );
    one(
        &format!("{TRANSPARENT}[credentials]\nclient_id = \"m\"\n"),
        4,
        "credentials",
        "write [[credentials]] with double brackets",
    );
    one(
        "[credentail]\n",
        1,
        "credentail",
        "did you mean [[credentials]]?",
    );
}

#[test]
fn load_resolves_the_credentials_paths_against_the_file() {
    let dir = std::env::temp_dir().join(format!("sn-config-{}-credentials", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The files must exist: Config::load checks that they can be read.
    let cert = dir.join("abs/m.crt");
    let key = dir.join("sub/../m.key");
    for file in [dir.join("motes/m.pass"), cert.clone(), dir.join("m.key")] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "x").unwrap();
    }
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let path = dir.join("sub/gateway.toml");
    std::fs::write(
        &path,
        format!(
            "{TRANSPARENT_TLS}[[credentials]]\nclient_id = \"m\"\nusername = \"u\"\n\
             password_file = \"../motes/m.pass\"\nclient_cert = \"{}\"\n\
             client_key = \"../m.key\"\n",
            cert.display()
        ),
    )
    .unwrap();
    let config = Config::load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    let config = config.unwrap();
    let entry = &config.credentials[0];
    assert_eq!(entry.password_file, Some(dir.join("sub/../motes/m.pass")));
    assert_eq!(entry.client_cert, Some(cert));
    assert_eq!(entry.client_key, Some(key));
}
