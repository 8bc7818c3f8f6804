//! The cases of `tests/dtls_cid.rs` (built with the `dtls-mbedtls` feature).

use std::net::SocketAddr;
use std::time::Instant;

use sn_transports::dtls::{
    DtlsConfig, DtlsEndpoint, DtlsEngine, DtlsError, DtlsEvent, MbedtlsClient, PskTable,
};

const ID: &str = "mote-1";
const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], port))
}

fn endpoint(connection_id: bool) -> DtlsEndpoint {
    let mut psk = PskTable::new();
    psk.insert(ID, KEY.to_vec());
    let config = DtlsConfig {
        engine: DtlsEngine::MbedTls,
        connection_id,
        ..DtlsConfig::default()
    };
    DtlsEndpoint::new(Instant::now(), config, psk).unwrap()
}

fn client(connection_id: bool) -> MbedtlsClient {
    MbedtlsClient::psk(
        ID,
        &KEY,
        &["PSK-AES128-CCM8".to_owned()],
        connection_id,
        1200,
    )
    .unwrap()
}

/// Runs the handshake between `client` (at `from`) and `endpoint` to completion.
fn handshake(endpoint: &mut DtlsEndpoint, client: &mut MbedtlsClient, from: SocketAddr) {
    client.start(Instant::now()).unwrap();
    for _ in 0..20 {
        for datagram in client.take_transmits() {
            endpoint.handle(Instant::now(), from, &datagram);
        }
        while let Some(t) = endpoint.poll_transmit() {
            assert_eq!(t.to, from);
            client.handle(Instant::now(), &t.data).unwrap();
        }
        if client.is_established() && endpoint.connections() == 1 {
            // The client's last flight may still be on its way.
            for datagram in client.take_transmits() {
                endpoint.handle(Instant::now(), from, &datagram);
            }
            return;
        }
    }
    panic!("no handshake: {:?}", endpoint.stats());
}

/// One datagram the client encrypted (not yet delivered).
fn record(client: &mut MbedtlsClient, plaintext: &[u8]) -> Vec<u8> {
    client.send(plaintext).unwrap();
    let mut out = client.take_transmits();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn events(endpoint: &mut DtlsEndpoint) -> Vec<DtlsEvent> {
    std::iter::from_fn(|| endpoint.poll_event()).collect()
}

fn data_from(events: &[DtlsEvent]) -> Vec<(SocketAddr, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            DtlsEvent::Datagram { from, data, .. } => Some((*from, data.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn with_a_connection_id_the_session_follows_its_peer_to_a_new_address() {
    let mut endpoint = endpoint(true);
    let mut client = client(true);
    let (a, b) = (addr(40000), addr(40001));
    handshake(&mut endpoint, &mut client, a);
    assert!(client.connection_id_negotiated());
    events(&mut endpoint);

    let first = record(&mut client, b"from a");
    assert_eq!(first[0], 25, "a CID record (tls12_cid)");
    endpoint.handle(Instant::now(), a, &first);
    assert_eq!(data_from(&events(&mut endpoint)), [(a, b"from a".to_vec())]);

    // The NAT rebinds: the next record comes from port 40001.
    let second = record(&mut client, b"from b");
    endpoint.handle(Instant::now(), b, &second);
    let seen = events(&mut endpoint);
    assert!(
        matches!(&seen[0], DtlsEvent::Moved { from, to, identity } if *from == a && *to == b && &**identity == ID),
        "{seen:?}"
    );
    assert_eq!(data_from(&seen), [(b, b"from b".to_vec())]);
    assert_eq!(endpoint.stats().cid_moves, 1);
    assert_eq!(endpoint.identity(b).map(|i| &**i), Some(ID));
    assert!(endpoint.identity(a).is_none());

    // Answers go to the new address, and the client reads them: no new handshake.
    endpoint.send(b, b"to b").unwrap();
    let t = endpoint.poll_transmit().unwrap();
    assert_eq!(t.to, b);
    client.handle(Instant::now(), &t.data).unwrap();
    assert_eq!(client.take_received(), [b"to b".to_vec()]);
    assert_eq!(endpoint.stats().handshakes_completed, 1);
}

#[test]
fn replayed_older_or_forged_records_from_a_third_address_move_nothing() {
    let mut endpoint = endpoint(true);
    let mut client = client(true);
    let (a, b, c) = (addr(40010), addr(40011), addr(40012));
    handshake(&mut endpoint, &mut client, a);
    events(&mut endpoint);

    let older = record(&mut client, b"older");
    let newer = record(&mut client, b"newer");
    endpoint.handle(Instant::now(), b, &newer);
    assert_eq!(endpoint.stats().cid_moves, 1);
    events(&mut endpoint);

    // A copy of a record already received, from a third address: a replay.
    endpoint.handle(Instant::now(), c, &newer);
    // A record not seen before but older than the newest: authentic, yet no move.
    endpoint.handle(Instant::now(), c, &older);
    // Forged records with the session's CID and a sequence number ahead of any seen: one a
    // tampered copy, one garbage after the header. Only authentication stops these.
    let mut forged = newer.clone();
    forged[5..11].copy_from_slice(&[0, 0, 0, 0, 0x7f, 0xff]);
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    endpoint.handle(Instant::now(), c, &forged);
    let mut garbage = forged[..19].to_vec();
    garbage.extend_from_slice(&[0, 32]);
    garbage.extend_from_slice(&[0x41; 32]);
    endpoint.handle(Instant::now(), c, &garbage);

    assert_eq!(endpoint.stats().cid_moves, 1);
    assert_eq!(endpoint.stats().cid_moves_refused, 4);
    assert!(data_from(&events(&mut endpoint)).is_empty());
    assert!(endpoint.identity(c).is_none());
    assert_eq!(endpoint.identity(b).map(|i| &**i), Some(ID));

    // The session is unharmed: the older record still arrives from where the peer is.
    endpoint.handle(Instant::now(), b, &older);
    assert_eq!(data_from(&events(&mut endpoint)), [(b, b"older".to_vec())]);
}

#[test]
fn only_application_data_moves_a_session_not_an_alert() {
    let mut endpoint = endpoint(true);
    let mut client = client(true);
    let (a, b) = (addr(40030), addr(40031));
    handshake(&mut endpoint, &mut client, a);
    events(&mut endpoint);

    // close_notify travels in a type-25 record that authenticates and is the newest: it is
    // still no reason to move (RFC 9146 §6 moves on application data). It closes the
    // session where it is.
    client.close();
    let alert = client.take_transmits();
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0][0], 25);
    endpoint.handle(Instant::now(), b, &alert[0]);
    let seen = events(&mut endpoint);
    assert!(
        seen.iter().all(|e| !matches!(e, DtlsEvent::Moved { .. })),
        "{seen:?}"
    );
    assert!(
        matches!(&seen[..], [DtlsEvent::Closed { from, .. }] if *from == a),
        "{seen:?}"
    );
    assert_eq!(endpoint.stats().cid_moves, 0);
    assert_eq!(endpoint.stats().cid_moves_refused, 1);
    assert_eq!(endpoint.connections(), 0);
}

#[test]
fn without_a_connection_id_a_new_address_is_a_stranger() {
    let mut endpoint = endpoint(false);
    let mut client = client(true);
    let (a, b) = (addr(40020), addr(40021));
    handshake(&mut endpoint, &mut client, a);
    assert!(!client.connection_id_negotiated());
    events(&mut endpoint);

    let moved = record(&mut client, b"from b");
    assert_eq!(moved[0], 23, "plain application data without a CID");
    endpoint.handle(Instant::now(), b, &moved);
    assert!(data_from(&events(&mut endpoint)).is_empty());
    assert_eq!(endpoint.stats().cid_moves, 0);
    assert_eq!(endpoint.stats().garbage, 1);
    assert!(endpoint.identity(b).is_none());
}

#[test]
fn a_connection_id_on_the_openssl_engine_is_refused_with_the_fix() {
    let config = DtlsConfig {
        engine: DtlsEngine::OpenSsl,
        connection_id: true,
        ..DtlsConfig::default()
    };
    match DtlsEndpoint::new(Instant::now(), config, PskTable::new()) {
        Err(DtlsError::Unsupported(text)) => assert!(text.contains("mbedtls"), "{text}"),
        other => panic!("{other:?}"),
    }
}
