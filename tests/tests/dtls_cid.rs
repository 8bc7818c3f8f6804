//! The DTLS Connection ID (RFC 9146) end to end: the real runtime with a `[[dtls]]` link on
//! the Mbed TLS engine, a real mosquitto, and a mote on real UDP sockets whose DTLS is the
//! engine's own client role ([`MbedtlsClient`]; python-mbedtls and openssl s_client have no
//! CID). The mote handshakes with a CID, CONNECTs and publishes QoS 1; then its NAT
//! "rebinds": it goes on from a new socket (a new port) with the same DTLS session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sn_config::{DtlsConfig, DtlsEngineName};
use sn_tests::{Gateway, GatewayBuilder, Mosquitto, MqttClient};
use sn_transports::dtls::MbedtlsClient;
use tokio::net::UdpSocket;

#[path = "../../transports/tests/dtls_tools/mod.rs"]
mod dtls_tools;
use dtls_tools::TempDir;

const ID: &str = "cid-mote-1";
const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const WAIT: Duration = Duration::from_secs(10);

fn write_psk(dir: &TempDir) -> PathBuf {
    let path = dir.path("motes.psk");
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, format!("{ID}:{hex}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

async fn gateway(broker: &Mosquitto, dir: &TempDir, connection_id: bool) -> Gateway {
    let mut link = DtlsConfig::new("127.0.0.1:0".parse().unwrap());
    link.engine = Some(DtlsEngineName::MbedTls);
    link.connection_id = connection_id;
    link.psk_file = Some(write_psk(dir));
    GatewayBuilder::new(broker.port()).dtls(link).start().await
}

/// A mote: the engine's DTLS client on a UDP socket it can swap for a new one.
struct Mote {
    dtls: MbedtlsClient,
    socket: UdpSocket,
    gateway: SocketAddr,
}

impl Mote {
    async fn handshake(gateway: SocketAddr) -> Mote {
        let dtls =
            MbedtlsClient::psk(ID, &KEY, &["PSK-AES128-CCM8".to_owned()], true, 1200).unwrap();
        let mut mote = Mote {
            dtls,
            socket: Mote::socket().await,
            gateway,
        };
        mote.dtls.start(Instant::now()).unwrap();
        mote.flush().await;
        let deadline = Instant::now() + WAIT;
        while !mote.dtls.is_established() {
            assert!(Instant::now() < deadline, "no DTLS handshake");
            mote.receive(Duration::from_millis(200)).await;
            mote.dtls.handle_timeout(Instant::now()).unwrap();
            mote.flush().await;
        }
        assert!(
            mote.dtls.connection_id_negotiated(),
            "the gateway gave no CID"
        );
        mote
    }

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// The NAT rebinds: from now on the mote's datagrams leave from another port.
    async fn rebind(&mut self) -> SocketAddr {
        self.socket = Mote::socket().await;
        self.socket.local_addr().unwrap()
    }

    async fn flush(&mut self) {
        for datagram in self.dtls.take_transmits() {
            self.socket.send_to(&datagram, self.gateway).await.unwrap();
        }
    }

    /// Feeds the client what arrives within `wait`.
    async fn receive(&mut self, wait: Duration) {
        let mut buf = vec![0u8; 2048];
        if let Ok(Ok((n, _))) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
            self.dtls.handle(Instant::now(), &buf[..n]).unwrap();
            self.flush().await;
        }
    }

    async fn send(&mut self, packet: &[u8]) {
        self.dtls.send(packet).unwrap();
        self.flush().await;
    }

    /// The encrypted datagram for `packet`, not sent.
    fn seal(&mut self, packet: &[u8]) -> Vec<u8> {
        self.dtls.send(packet).unwrap();
        let mut out = self.dtls.take_transmits();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    /// The next MQTT-SN packet of type `kind` within `wait` (others are skipped).
    async fn expect(&mut self, kind: u8, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            for packet in self.dtls.take_received() {
                if packet.get(1) == Some(&kind) {
                    return Some(packet);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.receive(left.min(Duration::from_millis(100))).await;
        }
    }

    async fn connect(&mut self) {
        let mut p = vec![0, 0x04, 0x04, 0x01, 0, 60];
        p.extend_from_slice(ID.as_bytes());
        p[0] = u8::try_from(p.len()).unwrap();
        // Congestion (0x01) until the gateway's broker connection is up: try again.
        let deadline = Instant::now() + WAIT;
        loop {
            self.send(&p).await;
            let connack = self.expect(0x05, WAIT).await.expect("no CONNACK");
            if connack[2] == 0 {
                return;
            }
            assert_eq!(connack[2], 1, "CONNACK return code");
            assert!(Instant::now() < deadline, "CONNACK congestion for {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// REGISTER `topic`; its topic id.
    async fn register(&mut self, topic: &str) -> [u8; 2] {
        let mut p = vec![0, 0x0A, 0, 0, 0, 1];
        p.extend_from_slice(topic.as_bytes());
        p[0] = u8::try_from(p.len()).unwrap();
        self.send(&p).await;
        let regack = self.expect(0x0B, WAIT).await.expect("no REGACK");
        assert_eq!(regack[6], 0, "REGACK return code");
        [regack[2], regack[3]]
    }
}

/// A QoS 1 PUBLISH to a registered topic id.
fn publish(topic: [u8; 2], msg_id: u16, payload: &str) -> Vec<u8> {
    let mut p = vec![0, 0x0C, 0x20, topic[0], topic[1]];
    p.extend_from_slice(&msg_id.to_be_bytes());
    p.extend_from_slice(payload.as_bytes());
    p[0] = u8::try_from(p.len()).unwrap();
    p
}

/// CONNECT, REGISTER, one QoS 1 PUBLISH that the subscriber receives.
async fn connect_and_publish(mote: &mut Mote, subscriber: &mut MqttClient) -> [u8; 2] {
    mote.connect().await;
    let topic = mote.register("cid/temperature").await;
    mote.send(&publish(topic, 2, "before the rebind")).await;
    let puback = mote.expect(0x0D, WAIT).await.expect("no PUBACK");
    assert_eq!(puback[6], 0, "PUBACK return code");
    let message = subscriber.recv_on("cid/temperature", WAIT).await;
    assert_eq!(message.text(), "before the rebind");
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_whose_nat_rebinds_keeps_its_dtls_and_mqtt_sn_sessions() {
    let broker = Mosquitto::running().await;
    let dir = TempDir::new("cid-rebind");
    let gateway = gateway(&broker, &dir, true).await;
    let mut subscriber = MqttClient::connect(broker.port(), "cid-sub").await;
    subscriber.subscribe("cid/#", 1).await;
    let mut mote = Mote::handshake(gateway.dtls_addr()).await;
    let topic = connect_and_publish(&mut mote, &mut subscriber).await;

    // A new socket, a new port: the same DTLS session, no handshake, no CONNECT.
    let new_addr = mote.rebind().await;
    mote.send(&publish(topic, 3, "after the rebind")).await;
    let puback = mote
        .expect(0x0D, WAIT)
        .await
        .expect("no PUBACK at the new port");
    assert_eq!(puback[6], 0, "PUBACK return code");
    let message = subscriber.recv_on("cid/temperature", WAIT).await;
    assert_eq!(message.text(), "after the rebind");

    let stats = gateway.dtls_stats();
    assert_eq!(stats.endpoint.handshakes_completed, 1, "{stats:?}");
    assert_eq!(stats.endpoint.cid_moves, 1, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
    let metrics = gateway.metrics();
    assert_eq!(metrics.peer_moves, 1, "the session moved: {metrics:?}");
    assert_eq!(metrics.peer_moves_refused, 0, "{metrics:?}");
    assert_eq!(metrics.unknown_peer, 0, "{metrics:?}");

    // A copy of the last record and a forgery with the session's CID, from a third address,
    // move nothing: the mote goes on at its new port.
    let sealed = mote.seal(&publish(topic, 4, "replayed"));
    mote.socket.send_to(&sealed, mote.gateway).await.unwrap();
    let _ = mote.expect(0x0D, WAIT).await.expect("no PUBACK");
    let _ = subscriber.recv_on("cid/temperature", WAIT).await;
    let third = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    third.send_to(&sealed, mote.gateway).await.unwrap();
    let mut forged = sealed.clone();
    forged[5..11].copy_from_slice(&[0, 0, 0, 0, 0x7f, 0xff]);
    let last = forged.len() - 1;
    forged[last] ^= 0x5a;
    third.send_to(&forged, mote.gateway).await.unwrap();
    sn_tests::wait_until("the two records refused", WAIT, || {
        gateway.dtls_stats().endpoint.cid_moves_refused == 2
    })
    .await;
    mote.send(&publish(topic, 5, "still at the new port")).await;
    let puback = mote.expect(0x0D, WAIT).await.expect("no PUBACK");
    assert_eq!(puback[6], 0);
    let message = subscriber.recv_on("cid/temperature", WAIT).await;
    assert_eq!(message.text(), "still at the new port");
    let stats = gateway.dtls_stats();
    assert_eq!(stats.endpoint.cid_moves, 1, "{stats:?}");
    assert_eq!(gateway.metrics().peer_moves, 1);
    let _ = new_addr;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_connection_id_the_rebound_mote_is_dropped() {
    let broker = Mosquitto::running().await;
    let dir = TempDir::new("cid-off");
    let gateway = gateway(&broker, &dir, false).await;
    let mut subscriber = MqttClient::connect(broker.port(), "cid-off-sub").await;
    subscriber.subscribe("cid/#", 1).await;
    // The mote asks for a CID; the gateway does not give one.
    let dtls = MbedtlsClient::psk(ID, &KEY, &["PSK-AES128-CCM8".to_owned()], true, 1200).unwrap();
    let mut mote = Mote {
        dtls,
        socket: Mote::socket().await,
        gateway: gateway.dtls_addr(),
    };
    mote.dtls.start(Instant::now()).unwrap();
    mote.flush().await;
    let deadline = Instant::now() + WAIT;
    while !mote.dtls.is_established() {
        assert!(Instant::now() < deadline, "no DTLS handshake");
        mote.receive(Duration::from_millis(200)).await;
    }
    assert!(!mote.dtls.connection_id_negotiated());
    let topic = connect_and_publish(&mut mote, &mut subscriber).await;

    mote.rebind().await;
    mote.send(&publish(topic, 3, "after the rebind")).await;
    assert!(
        mote.expect(0x0D, Duration::from_secs(2)).await.is_none(),
        "a PUBACK reached the new port without a CID"
    );
    assert!(subscriber
        .try_recv(Duration::from_millis(500))
        .await
        .is_none());
    let stats = gateway.dtls_stats();
    assert_eq!(
        stats.endpoint.garbage, 1,
        "dropped as a stranger's: {stats:?}"
    );
    assert_eq!(stats.endpoint.cid_moves, 0, "{stats:?}");
    assert_eq!(gateway.metrics().peer_moves, 0);
}
