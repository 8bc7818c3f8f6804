//! The cases of `tests/dtls.rs`, run once per engine (`super::ENGINE`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use sn_config::DtlsConfig;
use sn_tests::{Gateway, GatewayBuilder, Mosquitto, MqttClient};
use tokio::sync::mpsc;

use super::ENGINE;
use crate::dtls_tools::{make_pki, require_mbedtls, require_openssl, TempDir};

const ID: &str = "dtls-mote-1";
const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// tools

/// Writes the PSK file (mode 600, so the gateway has nothing to warn about).
fn write_psk(dir: &TempDir, lines: &str) -> PathBuf {
    let path = dir.path("motes.psk");
    std::fs::write(&path, lines).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// A link on a free loopback port, on the engine under test.
fn link() -> DtlsConfig {
    let mut link = DtlsConfig::new("127.0.0.1:0".parse().unwrap());
    link.engine = Some(ENGINE);
    link
}

fn psk_link(psk_file: PathBuf) -> DtlsConfig {
    let mut link = link();
    link.psk_file = Some(psk_file);
    link
}

async fn dtls_gateway(broker: &Mosquitto, link: DtlsConfig) -> Gateway {
    GatewayBuilder::new(broker.port()).dtls(link).start().await
}

/// A mosquitto, and a gateway on it whose link lists the one mote `ID` (its PSK file in
/// `dir`), with what `tune` changes in the link first.
async fn one_mote_gateway(
    dir: &TempDir,
    tune: impl FnOnce(&mut DtlsConfig),
) -> (Mosquitto, Gateway) {
    let broker = Mosquitto::running().await;
    let mut link = psk_link(write_psk(dir, &format!("{ID}:{KEY}\n")));
    tune(&mut link);
    let gateway = dtls_gateway(&broker, link).await;
    (broker, gateway)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    sn_tests::wait_until(what, WAIT, &mut check).await;
}

/// Waits until the gateway has completed `count` DTLS handshakes in all.
async fn wait_for_handshakes(gateway: &Gateway, what: &str, count: u64) {
    wait_for(what, || {
        gateway.dtls_stats().endpoint.handshakes_completed >= count
    })
    .await;
}

/// A mosquitto client subscribed to `filter` at QoS 1.
async fn subscriber(broker: &Mosquitto, client_id: &str, filter: &str) -> MqttClient {
    let mut subscriber = MqttClient::connect(broker.port(), client_id).await;
    subscriber.subscribe(filter, 1).await;
    subscriber
}

// ---------------------------------------------------------------------------------------------
// a child process whose output is read on a thread

/// A DTLS client process: what it writes to stdout arrives on `output`.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Client {
    fn spawn(mut command: Command) -> Client {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, output) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        // Drained so the child never blocks on a full pipe; shown when a test fails.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(&mut stderr).lines();
            while let Some(Ok(line)) = lines.next() {
                eprintln!("[client stderr] {line}");
            }
        });
        Client {
            child,
            stdin,
            output,
            seen: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the output contains `needle` (from where the last wait left off), and
    /// returns everything up to and including it.
    async fn expect(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = self.seen.windows(needle.len()).position(|w| w == needle) {
                let rest = self.seen.split_off(at + needle.len());
                return std::mem::replace(&mut self.seen, rest);
            }
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(chunk)) => self.seen.extend_from_slice(&chunk),
                _ => panic!(
                    "the client never wrote {:?} (as text {:?}); it wrote {:?}",
                    needle,
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Waits for a line of the script starting with `prefix` and returns the line; the
    /// lines before it are skipped.
    async fn line(&mut self, prefix: &str) -> String {
        loop {
            let line = self.expect(b"\n").await;
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// python-mbedtls, speaking MQTT-SN itself

/// An MQTT-SN v1.2 client over python-mbedtls DTLS with a PSK. Its argument is a JSON object:
/// host, port, identity, key (hex), client_id, scenario, and what the scenario needs. It
/// prints one line per step.
const MBEDTLS_MOTE: &str = r#"
import json, os, socket, struct, sys
from mbedtls.tls import ClientContext, DTLSConfiguration, DTLSVersion

a = json.loads(sys.argv[1])
print("start", flush=True)
conf = DTLSConfiguration(
    pre_shared_key=(a["identity"], bytes.fromhex(a["key"])),
    ciphers=["TLS-PSK-WITH-AES-128-CCM-8"],
    validate_certificates=False,
    lowest_supported_version=DTLSVersion.DTLSv1_2,
    highest_supported_version=DTLSVersion.DTLSv1_2,
)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(10)
tls = ClientContext(conf).wrap_socket(sock, server_hostname=None)
tls.connect((a["host"], a["port"]))
try:
    tls.do_handshake()
except Exception as e:
    print("handshake failed", type(e).__name__, flush=True)
    sys.exit(0)
print("handshake done", flush=True)

def packet(kind, body):
    return bytes([len(body) + 2, kind]) + body

def recv():
    d = tls.recv(2048)
    return d[1], d[2:]

def expect(kind):
    while True:
        t, b = recv()
        if t == kind:
            return b
        print("unexpected", hex(t), flush=True)

def connect(will=None):
    flags = 0x04 | (0x08 if will else 0)
    tls.send(packet(0x04, bytes([flags, 1]) + struct.pack(">H", 60) + a["client_id"].encode()))
    while True:
        t, b = recv()
        if t == 0x06:
            tls.send(packet(0x07, bytes([0x20]) + will[0].encode()))
        elif t == 0x08:
            tls.send(packet(0x09, will[1].encode()))
        elif t == 0x05:
            print("connack", b[0], flush=True)
            return b[0]

def disconnect(duration=None):
    body = b"" if duration is None else struct.pack(">H", duration)
    tls.send(packet(0x18, body))
    expect(0x18)

scenario = a["scenario"]
if scenario == "will":
    connect(will=(a["will_topic"], a["will_message"]))
    # Gone without a word: no DISCONNECT, no close_notify.
    print("vanishing", flush=True)
    os._exit(0)
if connect() != 0:
    sys.exit(0)
if scenario == "publish":
    tls.send(packet(0x0A, struct.pack(">HH", 0, 1) + a["topic"].encode()))
    b = expect(0x0B)
    topic_id = b[0:2]
    print("regack", b[4], flush=True)
    tls.send(packet(0x0C, bytes([0x20]) + topic_id + struct.pack(">H", 2) + a["payload"].encode()))
    b = expect(0x0D)
    print("puback", b[4], flush=True)
    disconnect()
elif scenario == "sleep":
    tls.send(packet(0x12, bytes([0x20]) + struct.pack(">H", 1) + a["topic"].encode()))
    b = expect(0x13)
    print("suback", b[5], flush=True)
    disconnect(60)
    print("asleep", flush=True)
    sys.stdin.readline()
    # Awake on the same DTLS connection: PINGREQ with the client id.
    tls.send(packet(0x16, a["client_id"].encode()))
    while True:
        t, b = recv()
        if t == 0x0C:
            print("publish", b[5:].decode(), flush=True)
            if b[0] & 0x60 == 0x20:
                tls.send(packet(0x0D, b[1:5] + b"\x00"))
        elif t == 0x0A:
            tls.send(packet(0x0B, b[0:4] + b"\x00"))
        elif t == 0x17:
            print("pingresp", flush=True)
            break
    disconnect()
print("done", flush=True)
try:
    tls.unwrap()
except Exception:
    pass
"#;

fn mbedtls_mote(dir: &TempDir, gateway: &Gateway, args: Args) -> Client {
    let script = dir.path("mote.py");
    std::fs::write(&script, MBEDTLS_MOTE).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg(args.json(gateway.dtls_addr().port()))
        .env("PYTHONUNBUFFERED", "1");
    Client::spawn(command)
}

/// What the python mote is told; written as JSON by hand (no serde in this crate).
struct Args<'a> {
    identity: &'a str,
    key: &'a str,
    client_id: &'a str,
    scenario: &'a str,
    extra: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    /// The mote `ID`, with its own key and its identity as client id, playing `scenario`.
    fn mote(scenario: &'a str, extra: Vec<(&'a str, &'a str)>) -> Self {
        Args {
            identity: ID,
            key: KEY,
            client_id: ID,
            scenario,
            extra,
        }
    }

    fn json(&self, port: u16) -> String {
        let mut fields = vec![
            ("host".to_string(), "\"127.0.0.1\"".to_string()),
            ("port".to_string(), port.to_string()),
        ];
        for (name, value) in [
            ("identity", self.identity),
            ("key", self.key),
            ("client_id", self.client_id),
            ("scenario", self.scenario),
        ]
        .into_iter()
        .chain(self.extra.iter().copied())
        {
            fields.push((name.to_string(), format!("{value:?}")));
        }
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    }
}

/// The `publish` scenario's three answers, each accepted: CONNACK, REGACK, PUBACK.
async fn expect_publish_accepted(mote: &mut Client) {
    assert_eq!(mote.line("connack").await, "connack 0");
    assert_eq!(mote.line("regack").await, "regack 0");
    assert_eq!(mote.line("puback").await, "puback 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mbedtls_psk_mote_publishes_qos1_to_a_mosquitto_subscriber() {
    require_mbedtls();
    let dir = TempDir::new("publish");
    let (broker, gateway) = one_mote_gateway(&dir, |_| {}).await;
    let mut subscriber = subscriber(&broker, "dtls-sub", "dtls/#").await;

    let extra = vec![("topic", "dtls/temperature"), ("payload", "21.5 over dtls")];
    let mut mote = mbedtls_mote(&dir, &gateway, Args::mote("publish", extra));
    expect_publish_accepted(&mut mote).await;
    let message = subscriber
        .recv_on("dtls/temperature", Duration::from_secs(10))
        .await;
    assert_eq!(message.text(), "21.5 over dtls");
    mote.line("done").await;
    let stats = gateway.dtls_stats();
    assert_eq!(stats.endpoint.handshakes_completed, 1, "{stats:?}");
    assert_eq!(stats.not_connected, 0, "{stats:?}");
}

/// The `[[dtls]]` socket asks for `recv_buffer` as a `[[udp]]` link does (the kernel's own
/// default, about 208 KiB, overflowed when 10 000 motes sent at once), and still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dtls_socket_gets_the_configured_receive_buffer() {
    require_mbedtls();
    let dir = TempDir::new("rcvbuf");
    // Below the kernel's default and any rmem_max, so the kernel grants it as it is.
    let (_broker, gateway) = one_mote_gateway(&dir, |link| link.recv_buffer = 64 << 10).await;
    let reported = gateway.dtls_recv_buffer();
    if cfg!(target_os = "linux") {
        // Linux reports twice what it granted (the other half is its bookkeeping).
        assert_eq!(reported, 2 * (64 << 10), "SO_RCVBUF of the DTLS socket");
    } else {
        assert_eq!(reported, 64 << 10, "SO_RCVBUF of the DTLS socket");
    }
    let extra = vec![("topic", "dtls/rcvbuf"), ("payload", "x")];
    let mut mote = mbedtls_mote(&dir, &gateway, Args::mote("publish", extra));
    expect_publish_accepted(&mut mote).await;
    mote.line("done").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_other_than_the_identity_gets_connack_0x03() {
    require_mbedtls();
    let dir = TempDir::new("mismatch");
    let (_broker, gateway) = one_mote_gateway(&dir, |_| {}).await;
    let args = Args {
        client_id: "someone-else",
        ..Args::mote("publish", vec![("topic", "dtls/x"), ("payload", "x")])
    };
    let mut mote = mbedtls_mote(&dir, &gateway, args);
    mote.line("handshake done").await;
    assert_eq!(mote.line("connack").await, "connack 3");
    // The handshake succeeded: it is the client id the identity may not use.
    assert_eq!(gateway.dtls_stats().endpoint.handshakes_completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_gets_no_session_and_is_counted() {
    require_mbedtls();
    let dir = TempDir::new("wrongkey");
    let (_broker, gateway) = one_mote_gateway(&dir, |link| {
        link.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let args = Args {
        key: "ffffffffffffffffffffffffffffffff",
        ..Args::mote("publish", vec![("topic", "dtls/x"), ("payload", "x")])
    };
    let _mote = mbedtls_mote(&dir, &gateway, args);
    // The client's Finished fails to decrypt: libssl drops it without a word and the
    // handshake times out, Mbed TLS fails it at once; either way, since it named a known
    // identity, it is counted as a wrong key.
    wait_for("the wrong key counted", || {
        gateway.dtls_stats().endpoint.psk_mismatch >= 1
    })
    .await;
    let stats = gateway.dtls_stats();
    assert_eq!(stats.endpoint.handshakes_completed, 0, "{stats:?}");
    assert_eq!(stats.connections, 0, "{stats:?}");
    assert_eq!(gateway.metrics().datagrams_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_mote_wakes_on_the_same_dtls_session() {
    require_mbedtls();
    let dir = TempDir::new("sleep");
    let (broker, gateway) = one_mote_gateway(&dir, |_| {}).await;
    let mut publisher = MqttClient::connect(broker.port(), "dtls-publisher").await;
    let extra = vec![("topic", "dtls/cmd")];
    let mut mote = mbedtls_mote(&dir, &gateway, Args::mote("sleep", extra));
    assert_eq!(mote.line("connack").await, "connack 0");
    assert_eq!(mote.line("suback").await, "suback 0");
    mote.line("asleep").await;
    publisher
        .publish("dtls/cmd", b"open the vent", 1, false)
        .await;
    // Time for mosquitto to pass it to the gateway, which queues it for the sleeper (the core
    // counts nothing for a message it only queues; a late one would arrive while awake, and
    // the assertions below would still hold).
    tokio::time::sleep(Duration::from_secs(1)).await;
    mote.write(b"wake\n");
    assert_eq!(mote.line("publish").await, "publish open the vent");
    mote.line("pingresp").await;
    mote.line("done").await;
    let stats = gateway.dtls_stats();
    assert_eq!(
        stats.endpoint.handshakes_completed, 1,
        "one handshake for the whole sleep cycle: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_that_goes_silent_is_lost_and_its_will_published() {
    require_mbedtls();
    let dir = TempDir::new("will");
    let (broker, gateway) = one_mote_gateway(&dir, |link| {
        link.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let mut subscriber = subscriber(&broker, "dtls-will-sub", "dtls/will/#").await;
    let extra = vec![
        ("will_topic", "dtls/will/dtls-mote-1"),
        ("will_message", "mote gone"),
    ];
    let mut mote = mbedtls_mote(&dir, &gateway, Args::mote("will", extra));
    assert_eq!(mote.line("connack").await, "connack 0");
    mote.line("vanishing").await;
    // Silent past the idle timeout (its keep-alive of 60 s is far off): the DTLS link
    // reports the connection lost, and the core ends the session as lost.
    let will = subscriber
        .recv_on("dtls/will/dtls-mote-1", Duration::from_secs(10))
        .await;
    assert_eq!(will.text(), "mote gone");
    assert_eq!(gateway.dtls_stats().endpoint.idle_timeouts, 1);
}

// ---------------------------------------------------------------------------------------------
// openssl s_client, fed MQTT-SN bytes

/// s_client reads its stdin as bytes to send, never as commands, and stays up at its end.
const QUIET: &[&str] = &["-quiet", "-ign_eof"];

/// `openssl s_client -dtls1_2` to the gateway's DTLS link: `input` says how it treats its
/// stdin, `auth` how it authenticates.
fn s_client(gateway: &Gateway, input: &[&str], auth: &[&str]) -> Client {
    let connect = format!("127.0.0.1:{}", gateway.dtls_addr().port());
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-dtls1_2", "-connect", &connect, "-mtu", "1200"])
        .args(input)
        .args(auth);
    Client::spawn(command)
}

/// s_client's options for the PSK `KEY` under `identity`.
fn psk_auth(identity: &str) -> [&str; 6] {
    [
        "-psk",
        KEY,
        "-psk_identity",
        identity,
        "-cipher",
        "PSK-AES128-CCM8",
    ]
}

/// An MQTT-SN packet of the one-byte length form: length, `kind`, `body`.
fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0, kind];
    p.extend_from_slice(body);
    p[0] = u8::try_from(p.len()).unwrap();
    p
}

/// MQTT-SN CONNECT (clean session, keep-alive 60 s) for `client_id`, with the Will flag if
/// `will`.
fn connect_packet(client_id: &str, will: bool) -> Vec<u8> {
    let flags = if will { 0x0C } else { 0x04 };
    packet(
        0x04,
        &[&[flags, 0x01, 0, 60], client_id.as_bytes()].concat(),
    )
}

/// A QoS 1 PUBLISH to the short topic `ab` with message id 1.
fn short_publish(topic: [u8; 2], payload: &[u8]) -> Vec<u8> {
    packet(0x0C, &[&[0x22, topic[0], topic[1], 0, 1], payload].concat())
}

/// CONNACK, accepted.
const CONNACK_ACCEPTED: &[u8] = &[3, 0x05, 0x00];
/// PUBACK, accepted, of `short_publish(*b"sc", ..)`.
const PUBACK_SC: &[u8] = &[7, 0x0D, b's', b'c', 0, 1, 0x00];

/// CONNECT, CONNACK 0x00, a QoS 1 PUBLISH on a short topic, PUBACK 0x00, and the message
/// at a mosquitto subscriber.
async fn s_client_publishes(gateway: &Gateway, broker: &Mosquitto, client: &mut Client, id: &str) {
    let mut subscriber = subscriber(broker, "s-client-sub", "sc").await;
    wait_for_handshakes(gateway, "the handshake", 1).await;
    // Each write reaches s_client as one read, and so leaves as one DTLS record.
    client.write(&connect_packet(id, false));
    client.expect(CONNACK_ACCEPTED).await;
    client.write(&short_publish(*b"sc", b"from s_client"));
    client.expect(PUBACK_SC).await;
    let message = subscriber.recv_on("sc", Duration::from_secs(10)).await;
    assert_eq!(message.text(), "from s_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_client_with_a_psk_connects_and_publishes() {
    require_openssl();
    let dir = TempDir::new("sclient-psk");
    let (broker, gateway) = one_mote_gateway(&dir, |_| {}).await;
    let mut client = s_client(&gateway, QUIET, &psk_auth(ID));
    s_client_publishes(&gateway, &broker, &mut client, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_client_with_a_certificate_connects_and_publishes() {
    require_openssl();
    let broker = Mosquitto::running().await;
    let dir = TempDir::new("sclient-cert");
    make_pki(&dir.0);
    let mut link = link();
    link.certificates = Some(sn_config::DtlsCertificates {
        certificate: dir.path("server.pem"),
        private_key: dir.path("server.key"),
        client_ca: dir.path("ca.pem"),
    });
    let gateway = dtls_gateway(&broker, link).await;
    let cert = dir.path("mote-42.pem");
    let key = dir.path("mote-42.key");
    let ca = dir.path("ca.pem");
    let mut client = s_client(
        &gateway,
        QUIET,
        &[
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-cipher",
            "ECDHE-ECDSA-AES128-CCM8",
        ],
    );
    // The certificate's CN is the identity, and so the client id it may use.
    s_client_publishes(&gateway, &broker, &mut client, "mote-42").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_psk_file_admits_a_new_mote_and_keeps_the_connected_one() {
    require_openssl();
    let broker = Mosquitto::running().await;
    let dir = TempDir::new("reload");
    let psk = write_psk(&dir, &format!("{ID}:{KEY}\n"));
    let gateway = dtls_gateway(&broker, psk_link(psk.clone())).await;
    let mut first = s_client(&gateway, QUIET, &psk_auth(ID));
    s_client_publishes(&gateway, &broker, &mut first, ID).await;

    std::fs::write(&psk, format!("{ID}:{KEY}\nnew-mote:{KEY}\n")).unwrap();
    gateway.reload_psk_files();
    let mut second = s_client(&gateway, QUIET, &psk_auth("new-mote"));
    wait_for_handshakes(&gateway, "the new mote's handshake", 2).await;
    second.write(&connect_packet("new-mote", false));
    second.expect(CONNACK_ACCEPTED).await;
    // The first mote's DTLS session and MQTT-SN session survived the reload.
    first.write(&short_publish(*b"sc", b"still here"));
    first.expect(PUBACK_SC).await;
    assert_eq!(gateway.dtls_stats().connections, 2);
}

/// An s_client mote that CONNECTs with a Will on `topic` ("mote gone"). Without `-quiet`
/// (which implies `-ign_eof`), it sends close_notify when its stdin closes; `-nocommands`
/// keeps it from reading a `Q` or `R` in the bytes as a command.
async fn s_client_will_mote(gateway: &Gateway, identity: &str, topic: &str) -> Client {
    let mut client = s_client(gateway, &["-nocommands"], &psk_auth(identity));
    let before = gateway.dtls_stats().endpoint.handshakes_completed;
    wait_for_handshakes(gateway, "the handshake", before + 1).await;
    client.write(&connect_packet(identity, true));
    client.expect(&[2, 0x06]).await;
    client.write(&packet(0x07, &[&[0x20], topic.as_bytes()].concat()));
    client.expect(&[2, 0x08]).await;
    client.write(&packet(0x09, b"mote gone"));
    client.expect(CONNACK_ACCEPTED).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_notify_without_disconnect_is_a_lost_mote_and_after_disconnect_is_not() {
    require_openssl();
    let broker = Mosquitto::running().await;
    let dir = TempDir::new("close");
    let psk = write_psk(&dir, &format!("{ID}:{KEY}\nclean-mote:{KEY}\n"));
    let gateway = dtls_gateway(&broker, psk_link(psk)).await;
    let mut subscriber = subscriber(&broker, "dtls-close-sub", "dtls/close/#").await;

    // A clean DISCONNECT, then close_notify: no Will.
    let mut clean = s_client_will_mote(&gateway, "clean-mote", "dtls/close/clean").await;
    clean.write(&[2, 0x18]);
    clean.expect(&[2, 0x18]).await;
    drop(clean.stdin.take());
    wait_for("the first close_notify", || {
        gateway.dtls_stats().endpoint.closed == 1
    })
    .await;

    // close_notify without a DISCONNECT: the mote is lost at once (its keep-alive of 60 s and
    // the link's idle timeout are far off), and its Will goes out.
    let mut gone = s_client_will_mote(&gateway, ID, "dtls/close/gone").await;
    drop(gone.stdin.take());
    let will = subscriber.recv_within(Duration::from_secs(5)).await;
    assert_eq!(
        will.topic, "dtls/close/gone",
        "the clean mote's Will went out"
    );
    assert_eq!(will.text(), "mote gone");
    let stats = gateway.dtls_stats().endpoint;
    assert_eq!((stats.closed, stats.idle_timeouts), (2, 0));
}
