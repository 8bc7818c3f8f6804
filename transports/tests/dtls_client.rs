//! The sans-I/O DTLS client (`DtlsClient`) against the gateway's endpoint (`DtlsEndpoint`),
//! wired to each other in memory with a hand on every datagram (to lose some), and against a
//! DTLS server this project did not write: `openssl s_server -dtls1_2`.
//!
//! The `openssl` command (for the throwaway PKI and s_server) is required: without it the
//! tests fail, naming the package.

#![cfg(feature = "dtls")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sn_transports::dtls::{
    CertificateFiles, ClientCredentials, ClientEvent, ClientFailure, ClientPsk, DtlsClient,
    DtlsClientConfig, DtlsClientContext, DtlsClientError, DtlsConfig, DtlsEndpoint, DtlsEngine,
    DtlsEvent, PskTable,
};

mod dtls_tools;
use dtls_tools::{make_pki, require_openssl, TempDir};

const ID: &str = "mote-1";
const KEY: &str = "000102030405060708090a0b0c0d0e0f";

fn key_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn psk_client(key: &str) -> DtlsClientConfig {
    DtlsClientConfig::new(ClientCredentials::Psk(ClientPsk {
        identity: ID.into(),
        key: key_bytes(key),
    }))
}

fn cert_client(dir: &Path, ca: &str) -> DtlsClientConfig {
    let mut config = DtlsClientConfig::new(ClientCredentials::Certificate {
        certificate: dir.join("mote-42.pem"),
        private_key: dir.join("mote-42.key"),
    });
    config.ca_file = Some(dir.join(ca));
    config
}

fn cert_server(dir: &Path) -> DtlsConfig {
    DtlsConfig {
        certificates: Some(CertificateFiles {
            certificate: dir.join("server.pem"),
            private_key: dir.join("server.key"),
            client_ca: dir.join("ca.pem"),
        }),
        ..DtlsConfig::default()
    }
}

fn psk_table() -> PskTable {
    PskTable::parse(&format!("{ID}:{KEY}\n")).unwrap()
}

/// A client and an endpoint passing datagrams in memory; `lose` decides, per datagram
/// (numbered from 0 in each direction, `true` for client → server), whether it is lost.
struct Pair {
    client: DtlsClient,
    server: DtlsEndpoint,
    from: SocketAddr,
    sent: [usize; 2],
    client_events: Vec<ClientEvent>,
    server_events: Vec<DtlsEvent>,
}

impl Pair {
    fn new(client: &DtlsClientConfig, server: DtlsConfig, psk: PskTable) -> Pair {
        let now = Instant::now();
        let context = DtlsClientContext::new(client).unwrap();
        Pair {
            client: context.connect(now).unwrap(),
            server: DtlsEndpoint::new(now, server, psk).unwrap(),
            from: "127.0.0.1:40000".parse().unwrap(),
            sent: [0, 0],
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Moves datagrams and fires timers until `done` or `limit` passes.
    fn run(
        &mut self,
        limit: Duration,
        lose: impl Fn(bool, usize) -> bool,
        done: impl Fn(&Pair) -> bool,
    ) {
        let until = Instant::now() + limit;
        while !done(self) && Instant::now() < until {
            let now = Instant::now();
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
            while let Some(d) = self.client.poll_transmit() {
                let n = self.sent[0];
                self.sent[0] += 1;
                if !lose(true, n) {
                    self.server.handle(Instant::now(), self.from, &d);
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                let n = self.sent[1];
                self.sent[1] += 1;
                if !lose(false, n) {
                    self.client.handle(Instant::now(), &t.data);
                }
            }
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs (nothing lost) until the client fails, for at most 10 s.
    fn run_until_failure(&mut self) {
        self.run(
            Duration::from_secs(10),
            |_, _| false,
            |p| p.failure().is_some(),
        );
    }

    fn connected(&self) -> bool {
        self.client.is_established()
            && self
                .server_events
                .iter()
                .any(|e| matches!(e, DtlsEvent::Connected { .. }))
    }

    fn failure(&self) -> Option<ClientFailure> {
        self.client_events.iter().find_map(|e| match e {
            ClientEvent::Failed(f) => Some(f.clone()),
            _ => None,
        })
    }

    /// Sends a datagram each way and checks both arrive decrypted.
    fn exchange(&mut self) {
        self.client.send(b"up").unwrap();
        self.run(
            Duration::from_secs(5),
            |_, _| false,
            |p| {
                p.server_events
                    .iter()
                    .any(|e| matches!(e, DtlsEvent::Datagram { data, .. } if data == b"up"))
            },
        );
        let from = self.from;
        self.server.send(from, b"down").unwrap();
        self.run(
            Duration::from_secs(5),
            |_, _| false,
            |p| {
                p.client_events
                    .contains(&ClientEvent::Datagram(b"down".to_vec()))
            },
        );
        assert!(self
            .client_events
            .contains(&ClientEvent::Datagram(b"down".to_vec())));
    }
}

#[test]
fn psk_client_handshakes_with_the_endpoint_and_exchanges_datagrams() {
    let mut pair = Pair::new(&psk_client(KEY), DtlsConfig::default(), psk_table());
    pair.run(Duration::from_secs(10), |_, _| false, Pair::connected);
    assert!(
        pair.connected(),
        "{:?} {:?}",
        pair.client_events,
        pair.server_events
    );
    assert!(pair
        .server_events
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { identity, .. } if &**identity == ID)));
    assert!(matches!(
        &pair.client_events[0],
        ClientEvent::Connected { cipher } if cipher.starts_with("PSK-")
    ));
    // The cookie exchange happened (the first ClientHello got a HelloVerifyRequest).
    assert_eq!(pair.server.stats().hello_verify_sent, 1);
    pair.exchange();
    pair.client.close();
    pair.run(
        Duration::from_secs(5),
        |_, _| false,
        |p| {
            p.server_events
                .iter()
                .any(|e| matches!(e, DtlsEvent::Closed { .. }))
        },
    );
    assert_eq!(pair.server.stats().closed, 1);
}

#[test]
fn lost_flights_are_retransmitted_by_the_client() {
    // Lose the first ClientHello and the client's first Finished flight (its 3rd datagram:
    // ClientHello, ClientHello with cookie, then ClientKeyExchange+CCS+Finished).
    let mut pair = Pair::new(&psk_client(KEY), DtlsConfig::default(), psk_table());
    let started = Instant::now();
    pair.run(
        Duration::from_secs(15),
        |up, n| up && (n == 0 || n == 2),
        Pair::connected,
    );
    assert!(
        pair.connected(),
        "{:?} {:?}",
        pair.client_events,
        pair.server_events
    );
    // libssl's first retransmission timer is 1 s: two losses cost about two seconds.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(
        pair.sent[0] >= 5,
        "client sent only {} datagrams",
        pair.sent[0]
    );
    pair.exchange();
}

#[test]
fn a_wrong_psk_times_out_as_answered_and_unanswered_as_such() {
    let mut wrong = psk_client("ffffffffffffffffffffffffffffffff");
    wrong.handshake_timeout = Duration::from_secs(3);
    // libssl drops the Finished it cannot authenticate without a word: the client times out,
    // knowing the gateway answered.
    let openssl = DtlsConfig {
        engine: DtlsEngine::OpenSsl,
        ..DtlsConfig::default()
    };
    let mut pair = Pair::new(&wrong, openssl, psk_table());
    pair.run_until_failure();
    assert_eq!(
        pair.failure(),
        Some(ClientFailure::HandshakeTimeout { answered: true })
    );
    assert!(pair.failure().unwrap().to_string().contains("wrong key"));
    assert!(pair.client.send(b"x").is_err());

    // The default engine (Mbed TLS, when built in) answers it with a bad_record_mac alert.
    if DtlsConfig::default().engine == DtlsEngine::MbedTls {
        let mut pair = Pair::new(&wrong, DtlsConfig::default(), psk_table());
        pair.run_until_failure();
        let failure = pair.failure();
        assert!(
            matches!(failure, Some(ClientFailure::KeyRefused(_))),
            "{failure:?}"
        );
        assert!(failure.unwrap().to_string().contains("wrong key"));
    }

    // Nobody answering is told apart.
    let mut alone = psk_client(KEY);
    alone.handshake_timeout = Duration::from_secs(2);
    let mut pair = Pair::new(&alone, DtlsConfig::default(), psk_table());
    pair.run(
        Duration::from_secs(10),
        |up, _| up,
        |p| p.failure().is_some(),
    );
    assert_eq!(
        pair.failure(),
        Some(ClientFailure::HandshakeTimeout { answered: false })
    );
}

#[test]
fn an_unknown_identity_fails_with_the_gateways_alert() {
    let mut pair = Pair::new(&psk_client(KEY), DtlsConfig::default(), PskTable::new());
    pair.run_until_failure();
    match pair.failure() {
        Some(ClientFailure::Handshake(why)) => assert!(why.contains("psk"), "{why}"),
        other => panic!("expected a handshake failure, got {other:?}"),
    }
}

#[test]
fn certificate_client_verifies_the_gateway_and_is_identified_by_its_cn() {
    require_openssl();
    let dir = TempDir::new("client-cert");
    make_pki(&dir.0);
    let mut config = cert_client(&dir.0, "ca.pem");
    config.server_name = Some("localhost".into());
    let mut pair = Pair::new(&config, cert_server(&dir.0), PskTable::new());
    pair.run(Duration::from_secs(10), |_, _| false, Pair::connected);
    assert!(
        pair.connected(),
        "{:?} {:?}",
        pair.client_events,
        pair.server_events
    );
    assert!(pair
        .server_events
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { identity, .. } if &**identity == "mote-42")));
    assert!(matches!(
        &pair.client_events[0],
        ClientEvent::Connected { cipher } if cipher.starts_with("ECDHE-ECDSA-")
    ));
    pair.exchange();
}

#[test]
fn a_gateway_certificate_from_another_ca_or_for_another_name_is_refused() {
    require_openssl();
    let dir = TempDir::new("client-untrusted");
    make_pki(&dir.0);
    // The rogue self-signed certificate as the only trusted CA: the gateway's does not chain.
    let mut pair = Pair::new(
        &cert_client(&dir.0, "rogue.pem"),
        cert_server(&dir.0),
        PskTable::new(),
    );
    pair.run_until_failure();
    assert!(
        matches!(pair.failure(), Some(ClientFailure::BadServerCertificate(_))),
        "{:?}",
        pair.failure()
    );
    // The right CA, but the certificate names `localhost`, not this.
    let mut config = cert_client(&dir.0, "ca.pem");
    config.server_name = Some("gateway.example".into());
    let mut pair = Pair::new(&config, cert_server(&dir.0), PskTable::new());
    pair.run_until_failure();
    assert!(
        matches!(pair.failure(), Some(ClientFailure::BadServerCertificate(_))),
        "{:?}",
        pair.failure()
    );
}

#[test]
fn a_certificate_without_a_ca_file_is_refused_up_front() {
    require_openssl();
    let dir = TempDir::new("client-noca");
    make_pki(&dir.0);
    let mut config = cert_client(&dir.0, "ca.pem");
    config.ca_file = None;
    assert!(matches!(
        DtlsClientContext::new(&config),
        Err(DtlsClientError::NoCaFile)
    ));
}

/// `openssl s_server -dtls1_2` with a PSK: the client's handshake completes and what it
/// sends is printed by s_server.
#[test]
fn psk_client_interoperates_with_openssl_s_server() {
    require_openssl();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Killed(
        Command::new("openssl")
            .args(["s_server", "-dtls1_2", "-accept"])
            .arg(port.to_string())
            .args([
                "-psk_identity",
                ID,
                "-psk",
                KEY,
                "-nocert",
                "-cipher",
                "PSK-AES128-CCM8",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = server.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // s_server prints ACCEPT once it listens.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let line = rx.recv_timeout(until.saturating_duration_since(Instant::now()));
        match line {
            Ok(l) if l.contains("ACCEPT") => break,
            Ok(_) => {}
            Err(e) => panic!("s_server did not start: {e}"),
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let context = DtlsClientContext::new(&psk_client(KEY)).unwrap();
    let mut client = context.connect(Instant::now()).unwrap();
    let mut buf = vec![0u8; 65536];
    let until = Instant::now() + Duration::from_secs(15);
    let mut sent = false;
    let mut printed = false;
    while Instant::now() < until && !printed {
        while let Some(d) = client.poll_transmit() {
            socket.send(&d).unwrap();
        }
        if let Ok(n) = socket.recv(&mut buf) {
            client.handle(Instant::now(), &buf[..n]);
        }
        client.handle_timeout(Instant::now());
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Failed(f) = event {
                panic!("handshake with s_server failed: {f}");
            }
        }
        if client.is_established() && !sent {
            client.send(b"hello from sn-transports\n").unwrap();
            sent = true;
        }
        while let Ok(line) = rx.try_recv() {
            printed |= line.contains("hello from sn-transports");
        }
    }
    assert!(sent, "the handshake with s_server did not complete");
    assert!(printed, "s_server did not print what the client sent");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same client on Mbed TLS (`ClientEngine::MbedTls`, what `mqtt-sn bench --dtls-engine
/// mbedtls` uses): it handshakes with both gateway engines through a lost ClientHello,
/// exchanges datagrams both ways, sees the gateway's close_notify as `Closed`, and fails
/// with a wrong key.
#[cfg(feature = "dtls-mbedtls")]
#[test]
fn the_mbedtls_client_engine_connects_exchanges_is_closed_and_fails_a_wrong_key() {
    use sn_transports::dtls::ClientEngine;
    let mbedtls = |key: &str| {
        let mut config = psk_client(key);
        config.engine = ClientEngine::MbedTls;
        config.handshake_timeout = Duration::from_secs(5);
        config
    };
    for engine in [DtlsEngine::MbedTls, DtlsEngine::OpenSsl] {
        let server = DtlsConfig {
            engine,
            ..DtlsConfig::default()
        };
        let mut pair = Pair::new(&mbedtls(KEY), server, psk_table());
        pair.run(
            Duration::from_secs(10),
            |up, n| up && n == 0,
            Pair::connected,
        );
        assert!(
            pair.connected(),
            "{engine:?}: {:?} {:?}",
            pair.client_events,
            pair.server_events
        );
        assert!(pair.sent[0] >= 4, "the lost ClientHello was not sent again");
        assert_eq!(
            pair.client_events[0],
            ClientEvent::Connected {
                cipher: "PSK-AES128-CCM8".into()
            }
        );
        pair.exchange();
        let from = pair.from;
        pair.server.close(from);
        pair.run(
            Duration::from_secs(5),
            |_, _| false,
            |p| p.client_events.contains(&ClientEvent::Closed),
        );
        assert!(
            pair.client_events.contains(&ClientEvent::Closed),
            "{engine:?}"
        );
        assert!(pair.client.is_ended());
        assert!(pair.client.send(b"x").is_err());
    }

    let mut pair = Pair::new(
        &mbedtls("ffffffffffffffffffffffffffffffff"),
        DtlsConfig::default(),
        psk_table(),
    );
    pair.run_until_failure();
    assert!(
        matches!(pair.failure(), Some(ClientFailure::Handshake(_))),
        "{:?}",
        pair.failure()
    );
    assert!(!pair
        .server_events
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { .. })));
}
