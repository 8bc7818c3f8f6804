//! Unit tests: the PSK file, record classification, and what a peer without state costs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

#[test]
fn psk_file_parses_comments_colons_and_hex() {
    let table = PskTable::parse(
        "# motes\n\nmote-1:000102030405060708090a0b0c0d0e0f\n  urn:dev:7 : AABB  \n",
    )
    .unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table.key("mote-1").unwrap()[15], 0x0f);
    assert_eq!(table.key("urn:dev:7").unwrap(), &[0xaa, 0xbb]);
    assert!(!format!("{table:?}").contains("aabb"));
}

#[test]
fn psk_file_errors_name_the_line() {
    for (text, line) in [
        ("a:00\nnocolon\n", 2),
        ("a:0g\n", 1),
        ("a:000\n", 1),
        (":00\n", 1),
        ("a:\n", 1),
        ("a:00\na:01\n", 2),
    ] {
        match PskTable::parse(text) {
            Err(DtlsError::PskLine { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let long = format!("a:{}\n", "00".repeat(MAX_PSK_LEN + 1));
    assert!(PskTable::parse(&long).is_err());
}

#[cfg(unix)]
#[test]
fn psk_file_readable_by_others_warns() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("sn-dtls-psk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("psk.txt");
    std::fs::write(&path, "mote:00112233\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = PskTable::load(&path).unwrap();
    assert!(loaded.warning.unwrap().contains("chmod 600"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = PskTable::load(&path).unwrap();
    assert!(loaded.warning.is_none());
    assert_eq!(loaded.table.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_hello_is_recognised_by_its_header() {
    let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1];
    assert!(is_client_hello(&hello));
    hello[4] = 1; // epoch 1: an encrypted record
    assert!(!is_client_hello(&hello));
    assert!(!is_client_hello(&[22, 0xfe]));
}

#[test]
fn garbage_from_unknown_peers_costs_no_state() {
    let now = Instant::now();
    let mut endpoint = DtlsEndpoint::new(now, DtlsConfig::default(), PskTable::new()).unwrap();
    let from: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
    for len in [0usize, 1, 13, 14, 100, 1500] {
        endpoint.handle(now, from, &vec![0x16; len]);
        endpoint.handle(now, from, &vec![0xa5; len]);
    }
    assert_eq!(endpoint.stats().garbage, 12);
    assert_eq!(endpoint.connections() + endpoint.handshakes(), 0);
    assert!(endpoint.poll_transmit().is_none());
    assert!(endpoint.poll_event().is_none());
}

#[test]
fn unknown_suite_names_are_an_error() {
    let config = DtlsConfig {
        cipher_suites: vec!["NO-SUCH-SUITE".into()],
        ..DtlsConfig::default()
    };
    assert!(matches!(
        DtlsEndpoint::new(Instant::now(), config, PskTable::new()),
        Err(DtlsError::CipherSuites(..))
    ));
}
