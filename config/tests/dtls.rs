//! `[[dtls]]` links and `[[mote]] identity`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{issues, ok, one};
use sn_config::{
    Config, DtlsCertificates, DtlsConfig, DtlsEngineName, LinkId, DEFAULT_DTLS_CIPHER_SUITES,
};

#[test]
fn a_psk_link_with_the_defaults() {
    let c = ok("[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"motes.psk\"\n");
    assert_eq!(c.dtls.len(), 1);
    let link = &c.dtls[0];
    assert_eq!(link.bind, "0.0.0.0:8883".parse().unwrap());
    assert_eq!(link.psk_file, Some(PathBuf::from("motes.psk")));
    assert_eq!(link.certificates, None);
    assert_eq!(link.cipher_suites, DEFAULT_DTLS_CIPHER_SUITES);
    assert_eq!(link.mtu, 1200);
    assert_eq!(link.max_handshakes, 256);
    assert_eq!(link.max_handshakes_per_ip, 8);
    assert_eq!(link.handshake_timeout, Duration::from_secs(10));
    assert_eq!(link.idle_timeout, Duration::from_secs(24 * 3600));
    assert_eq!(link.recv_buffer, 4 << 20, "as a [[udp]] link's");
    assert_eq!(link.name(), "dtls:0.0.0.0:8883");
    assert_eq!(link.engine, None, "the build's default engine");
    assert!(!link.connection_id);
    // The default UDP link stays: a DTLS link runs beside it.
    assert_eq!(c.udp.len(), 1);
    assert!(Config::default().dtls.is_empty());
}

#[test]
fn every_option() {
    let c = ok(
        "[[dtls]]\nbind = \"[::]:8883\"\ncert = \"gw.pem\"\nkey = \"gw.key\"\n\
         ca_file = \"ca.pem\"\ncipher_suites = [\"ECDHE-ECDSA-AES128-CCM8\"]\nmtu = 512\n\
         max_handshakes = 10\nmax_handshakes_per_ip = 2\nhandshake_timeout = \"2s\"\n\
         idle_timeout = \"1h\"\ndiscovery = \"off\"\n\
         recv_buffer = 1048576\n",
    );
    let mut want = DtlsConfig::new("[::]:8883".parse().unwrap());
    want.certificates = Some(DtlsCertificates {
        certificate: "gw.pem".into(),
        private_key: "gw.key".into(),
        client_ca: "ca.pem".into(),
    });
    want.cipher_suites = vec!["ECDHE-ECDSA-AES128-CCM8".into()];
    want.mtu = 512;
    want.max_handshakes = 10;
    want.max_handshakes_per_ip = 2;
    want.handshake_timeout = Duration::from_secs(2);
    want.idle_timeout = Duration::from_secs(3600);
    want.recv_buffer = 1 << 20;
    assert_eq!(c.dtls, [want]);
}

#[test]
fn a_link_needs_keys_or_certificates() {
    one(
        "[[dtls]]\nbind = \"0.0.0.0:8883\"\n",
        1,
        "dtls[0]",
        "needs a way to authenticate motes: psk_file",
    );
    one(
        "[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\ncert = \"c.pem\"\n",
        1,
        "dtls[0]",
        "cert given without key and ca_file",
    );
    one(
        "[[dtls]]\npsk_file = \"k\"\n",
        1,
        "dtls[0].bind",
        "missing; write bind",
    );
}

#[test]
fn wrong_values_are_reported_at_their_line() {
    let base = "[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\n";
    let at = |extra: &str, field: &str, needle: &str| {
        one(&format!("{base}{extra}\n"), 4, field, needle);
    };
    at("mtu = 100", "dtls[0].mtu", "256");
    at("max_handshakes = 0", "dtls[0].max_handshakes", "1");
    at("recv_buffer = 100", "dtls[0].recv_buffer", "4096");
    at(
        "handshake_timeout = \"1ms\"",
        "dtls[0].handshake_timeout",
        "too short",
    );
    at(
        "idle_timeout = \"800h\"",
        "dtls[0].idle_timeout",
        "too long",
    );
    at(
        "cipher_suites = []",
        "dtls[0].cipher_suites",
        "the list is empty",
    );
    at(
        "cipher_suites = [\"PSK-AES128-CCM8:ALL\"]",
        "dtls[0].cipher_suites[0]",
        "not a cipher suite name",
    );
    at(
        "discovery = \"225.1.1.1:1883\"",
        "dtls[0].discovery",
        "DTLS cannot protect",
    );
    at("bnid = 1", "dtls[0].bnid", "did you mean \"bind\"?");
}

#[test]
fn a_dtls_link_needs_its_own_port() {
    one(
        "[[udp]]\nbind = \"0.0.0.0:1883\"\n[[dtls]]\nbind = \"0.0.0.0:1883\"\npsk_file = \"k\"\n",
        4,
        "dtls[0].bind",
        "also the bind address of a [[udp]] link",
    );
    one(
        "[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\n\
         [[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\n",
        5,
        "dtls[1].bind",
        "already the bind address of dtls[0] (line 2)",
    );
    // [[udp]] written after [[dtls]] is still seen.
    one(
        "[[dtls]]\nbind = \"0.0.0.0:1883\"\npsk_file = \"k\"\n[[udp]]\nbind = \"0.0.0.0:1883\"\n",
        2,
        "dtls[0].bind",
        "also the bind address of a [[udp]] link",
    );
}

#[test]
fn dtls_links_are_numbered_after_udp_and_serial() {
    let text = "[[mote]]\nclient_id = \"a\"\nlink = \"dtls:127.0.0.1:8883\"\n\
                [[mote]]\nclient_id = \"b\"\nlink = \"udp:127.0.0.1:1883\"\n\
                [[dtls]]\nbind = \"127.0.0.1:8883\"\npsk_file = \"k\"\n\
                [[udp]]\nbind = \"127.0.0.1:1883\"\n\
                [[serial]]\ndevice = \"/dev/xbee0\"\nframing = \"xbee\"\n";
    let mut c = ok(text);
    let links: Vec<Option<LinkId>> = c.core.policy.motes.iter().map(|m| m.link).collect();
    assert_eq!(links, [Some(LinkId(2)), Some(LinkId(0))]);
    // Replacing the UDP links (the CLI's --udp) renumbers the DTLS link too.
    c.udp
        .push(sn_config::UdpConfig::from_bind("127.0.0.1:1884").unwrap());
    c.resolve_mote_links().unwrap();
    assert_eq!(c.core.policy.motes[0].link, Some(LinkId(3)));
    let issue = one(
        &text.replace(
            "link = \"dtls:127.0.0.1:8883\"",
            "link = \"dtls:127.0.0.1:9999\"",
        ),
        3,
        "mote[0].link",
        "is not a link of this gateway",
    );
    assert!(
        issue.message.ends_with(
            "the links are \"udp:127.0.0.1:1883\", \"serial:/dev/xbee0\", \
             \"dtls:127.0.0.1:8883\""
        ),
        "{}",
        issue.message
    );
}

#[test]
fn a_mote_entry_can_name_an_identity() {
    let c = ok(
        "[[mote]]\nclient_id = \"greenhouse-*\"\nidentity = \"gh-gw\"\n\
                [[dtls]]\nbind = \"127.0.0.1:8883\"\npsk_file = \"k\"\n",
    );
    assert_eq!(c.core.policy.motes[0].identity.as_deref(), Some("gh-gw"));
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    one(
        "[[mote]]\nclient_id = \"a\"\nidentity = \"\"\n",
        3,
        "mote[0].identity",
        "1 to 128 bytes",
    );
}

#[test]
fn an_identity_without_a_dtls_link_is_a_warning() {
    let c = ok("[[mote]]\nclient_id = \"a\"\nidentity = \"a\"\n");
    let warning = c
        .warnings
        .iter()
        .find(|w| w.field == "mote[0].identity")
        .expect("a warning at mote[0].identity");
    assert_eq!(warning.line, Some(3));
    assert!(
        warning.message.contains("this mote can never connect"),
        "{}",
        warning.message
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sn-config-dtls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_checks_the_files_and_resolves_them_against_the_config_folder() {
    let dir = TempDir::new("files");
    let path = dir.0.join("gateway.toml");
    std::fs::write(dir.0.join("motes.psk"), "mote-1:00112233\n").unwrap();
    std::fs::write(dir.0.join("gw.pem"), "x\n").unwrap();
    std::fs::write(
        &path,
        "[[dtls]]\nbind = \"127.0.0.1:8883\"\npsk_file = \"motes.psk\"\ncert = \"gw.pem\"\n\
         key = \"gw.key\"\nca_file = \"ca.pem\"\n",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("{}:5:7: dtls[0].key: ", path.display()))
            && lines[0].contains("does not exist"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{}:6:11: dtls[0].ca_file: ", path.display())),
        "{err}"
    );
    std::fs::write(dir.0.join("gw.key"), "x\n").unwrap();
    std::fs::write(dir.0.join("ca.pem"), "x\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.dtls[0].psk_file, Some(dir.0.join("motes.psk")));
    let certs = c.dtls[0].certificates.clone().unwrap();
    assert_eq!(certs.certificate, dir.0.join("gw.pem"));
    assert_eq!(certs.private_key, dir.0.join("gw.key"));
    assert_eq!(certs.client_ca, dir.0.join("ca.pem"));
}

#[test]
fn a_single_table_is_not_a_link_list() {
    let all = issues("[dtls]\nbind = \"0.0.0.0:8883\"\n");
    assert!(all[0]
        .message
        .contains("write [[dtls]] with double brackets"));
}

#[test]
fn engine_and_connection_id() {
    let c = ok("[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\nengine = \"mbedtls\"\nconnection_id = true\n");
    assert_eq!(c.dtls[0].engine, Some(DtlsEngineName::MbedTls));
    assert!(c.dtls[0].connection_id);
    // Without an engine, the Connection ID asks for the default one (Mbed TLS).
    let c = ok("[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\nconnection_id = true\n");
    assert_eq!(c.dtls[0].engine, None);
    let c = ok("[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\nengine = \"OpenSSL\"\n");
    assert_eq!(c.dtls[0].engine, Some(DtlsEngineName::OpenSsl));
}

#[test]
fn connection_id_with_openssl_is_an_error_that_says_why() {
    one(
        "[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\nengine = \"openssl\"\nconnection_id = true\n",
        5,
        "dtls[0].connection_id",
        "connection_id = true needs engine = \"mbedtls\": libssl (engine = \"openssl\") has no DTLS Connection ID",
    );
    one(
        "[[dtls]]\nbind = \"0.0.0.0:8883\"\npsk_file = \"k\"\nengine = \"wolfssl\"\n",
        4,
        "dtls[0].engine",
        "\"wolfssl\" is not a DTLS engine; write engine = \"mbedtls\"",
    );
}
