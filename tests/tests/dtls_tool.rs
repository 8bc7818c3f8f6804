//! The `mqtt-sn` tool over DTLS, end to end: the real gateway binary with a `[[dtls]]` link
//! (PSK and certificates), a real mosquitto behind it, and the real tool as a user runs it:
//! `pub` with a PSK and with a client certificate reaches a mosquitto subscriber at QoS 1,
//! `sub` receives what is published to mosquitto, a wrong key fails clearly, and `bench
//! --dtls` runs motes each with its own DTLS session and loses nothing.
//!
//! Needs mosquitto and the `openssl` command (the throwaway PKI): a missing one fails the
//! test with what to install. Network safety: everything stays on 127.0.0.0/8.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sn_tests::process::GatewayProcess;
use sn_tests::{Mosquitto, Mote, MqttClient};

#[path = "../../transports/tests/dtls_tools/mod.rs"]
mod dtls_tools;
use dtls_tools::{make_pki, require_openssl, TempDir};

/// The identity and key of the PSK mote.
const ID: &str = "tool-mote";
const KEY: &str = "000102030405060708090a0b0c0d0e0f";
/// Bench motes with keys of their own in the PSK file: `bench-0` ... `bench-{n-1}`.
const BENCH_MOTES: usize = 5;
const WAIT: Duration = Duration::from_secs(20);

/// The `mqtt-sn` tool (built by the running cargo if needed).
fn tool_binary() -> PathBuf {
    sn_tests::binaries::workspace_binary("mqtt-sn-tools", "mqtt-sn")
}

/// A gateway with a `[[dtls]]` link taking PSKs and certificates, in front of a mosquitto of
/// its own; the PKI and PSK file in `pki`.
struct Setup {
    broker: Mosquitto,
    gateway: GatewayProcess,
    pki: TempDir,
    dtls: String,
}

impl Setup {
    async fn start(tag: &str) -> Setup {
        require_openssl();
        tool_binary();
        let pki = TempDir::new(&format!("tool-{tag}"));
        make_pki(&pki.0);
        let mut lines = format!("{ID}:{KEY}\n");
        for i in 0..BENCH_MOTES {
            lines.push_str(&format!("bench-{i}:{:032x}\n", 0x1000 + i));
        }
        let psk = pki.path("motes.psk");
        std::fs::write(&psk, lines).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let broker = Mosquitto::running().await;
        let port = sn_tests::free_port();
        let dir =
            std::env::temp_dir().join(format!("sn-dtls-tool-gw-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = |name: &str| pki.path(name).display().to_string();
        let config = format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{broker}\"\nfallback = \"off\"\n\
             [log]\nlevel = \"info,mqtt_sn_gateway=debug\"\n\
             [[dtls]]\nbind = \"127.0.0.1:{port}\"\npsk_file = \"{psk}\"\n\
             cert = \"{cert}\"\nkey = \"{key}\"\nca_file = \"{ca}\"\n",
            broker = broker.port(),
            psk = psk.display(),
            cert = p("server.pem"),
            key = p("server.key"),
            ca = p("ca.pem"),
        );
        let gateway = GatewayProcess::start(dir, &config);
        // The broker link is up once a plain-UDP mote is accepted (CONNACK 0x01 until then).
        let mut probe = Mote::new(gateway.addr, "dtls-tool-probe").await;
        probe.connect().await;
        Setup {
            broker,
            gateway,
            pki,
            dtls: format!("127.0.0.1:{port}"),
        }
    }

    fn file(&self, name: &str) -> String {
        self.pki.path(name).display().to_string()
    }

    /// The tool with `args` against the DTLS link; its output once it exits.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(tool_binary())
            .args(args)
            .args(["--gateway", &self.dtls])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    async fn subscriber(&self, filter: &str) -> MqttClient {
        let mut client = MqttClient::connect(self.broker.port(), "dtls-tool-watch").await;
        client.subscribe(filter, 1).await;
        client
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `pub` with `credentials` publishes one QoS 1 message that the mosquitto subscriber gets.
async fn publish_reaches_mosquitto(setup: &Setup, topic: &str, credentials: &[&str]) {
    let mut watch = setup.subscriber(topic).await;
    let mut args = vec!["pub", "--dtls", "-t", topic, "-m", "sealed", "-q", "1"];
    args.extend_from_slice(credentials);
    let out = setup.run(&args);
    assert!(
        out.status.success(),
        "{}\ngateway log:\n{}",
        text(&out),
        setup.gateway.log()
    );
    let message = watch.recv_on(topic, WAIT).await;
    assert_eq!(message.payload, b"sealed");
    assert_eq!(message.qos, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_over_dtls_with_a_psk_reaches_a_mosquitto_subscriber() {
    let setup = Setup::start("psk").await;
    publish_reaches_mosquitto(
        &setup,
        "dtls/psk",
        &["--psk-identity", ID, "--psk-key", KEY],
    )
    .await;
    // The same from the PSK file, its line picked by the client id.
    let file = setup.file("motes.psk");
    publish_reaches_mosquitto(
        &setup,
        "dtls/pskfile",
        &["--psk-file", &file, "--client-id", "bench-3"],
    )
    .await;
    // And on the tool's Mbed TLS client.
    publish_reaches_mosquitto(
        &setup,
        "dtls/mbedtls",
        &[
            "--psk-identity",
            ID,
            "--psk-key",
            KEY,
            "--dtls-engine",
            "mbedtls",
        ],
    )
    .await;
    // After DISCONNECT the tool closed its DTLS connection (close_notify): the gateway ended
    // all three cleanly, none as lost.
    let gateway = &setup.gateway;
    sn_tests::wait_until("the three DTLS connections closed", WAIT, || {
        gateway.log().matches("DTLS connection closed").count() == 3
    })
    .await;
    let log = gateway.log();
    assert!(
        log.contains("identity=tool-mote") && log.contains("identity=bench-3"),
        "{log}"
    );
    assert!(!log.contains("DTLS connection lost"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_over_dtls_with_a_client_certificate_reaches_a_mosquitto_subscriber() {
    let setup = Setup::start("cert").await;
    let (cert, key, ca) = (
        setup.file("mote-42.pem"),
        setup.file("mote-42.key"),
        setup.file("ca.pem"),
    );
    // The client id defaults to the certificate's CN, `mote-42`: the identity the gateway
    // binds to it.
    publish_reaches_mosquitto(
        &setup,
        "dtls/cert",
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "--ca",
            &ca,
            "--server-name",
            "localhost",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_over_dtls_receives_what_is_published_to_mosquitto() {
    let setup = Setup::start("sub").await;
    let mut sub = Command::new(tool_binary())
        .args(["sub", "--dtls", "--psk-identity", ID, "--psk-key", KEY])
        .args(["--gateway", &setup.dtls, "-t", "dtls/down", "-q", "1"])
        .args(["-c", "1", "--timeout", "30s"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut publisher = MqttClient::connect(setup.broker.port(), "dtls-tool-pub").await;
    // Published until the subscription is in place and the tool exits with its one message.
    let deadline = std::time::Instant::now() + WAIT;
    while sub.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "mqtt-sn sub never got the message; gateway log:\n{}",
            setup.gateway.log()
        );
        publisher
            .publish("dtls/down", b"to the mote", 1, false)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dtls/down to the mote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_fails_with_a_clear_error_and_a_non_zero_exit() {
    let setup = Setup::start("wrong").await;
    let out = setup.run(&[
        "pub",
        "--dtls",
        "--psk-identity",
        ID,
        "--psk-key",
        "ffffffffffffffffffffffffffffffff",
        "--handshake-timeout",
        "3s",
        "-t",
        "dtls/wrong",
        "-m",
        "x",
        "-q",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DTLS with") && stderr.contains("wrong key"),
        "{}",
        text(&out)
    );
    // An identity the gateway does not know: its alert, not a timeout.
    let out = setup.run(&[
        "pub",
        "--dtls",
        "--psk-identity",
        "nobody",
        "--psk-key",
        KEY,
        "-t",
        "dtls/wrong",
        "-m",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown psk identity"),
        "{}",
        text(&out)
    );
    // A gateway certificate from a CA we do not trust.
    let (cert, key, rogue) = (
        setup.file("mote-42.pem"),
        setup.file("mote-42.key"),
        setup.file("rogue.pem"),
    );
    let out = setup.run(&[
        "pub",
        "--dtls",
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &rogue,
        "-t",
        "dtls/wrong",
        "-m",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate did not verify"),
        "{}",
        text(&out)
    );
}

/// Runs the tool with `args` (no gateway needed) and checks it exits with `code` and says
/// `says` on stderr.
fn refused(args: &[&str], code: i32, says: &str) {
    let out = Command::new(tool_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(says),
        "{}",
        text(&out)
    );
}

#[test]
fn dtls_without_credentials_is_a_clear_error() {
    refused(
        &["pub", "--dtls", "-t", "a", "-m", "x"],
        1,
        "--dtls needs credentials",
    );
    // A certificate without the CA to check the gateway with: clap names the missing option.
    refused(
        &[
            "pub", "--dtls", "--cert", "c.pem", "--key", "k.pem", "-t", "a", "-m", "x",
        ],
        2,
        "--ca <FILE>",
    );
    // The Mbed TLS client speaks PSK only: a certificate with it is refused up front.
    refused(
        &[
            "pub",
            "--dtls",
            "--dtls-engine",
            "mbedtls",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--ca",
            "ca.pem",
            "-t",
            "a",
            "-m",
            "x",
        ],
        1,
        "--dtls-engine mbedtls speaks PSK only",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_over_dtls_runs_each_mote_on_its_own_session_with_nothing_lost() {
    let setup = Setup::start("bench").await;
    bench_loses_nothing(&setup, "openssl").await;
}

/// The bench's motes on the tool's other DTLS library (`--dtls-engine mbedtls`, what the
/// DTLS benchmarks of docs/benchmarks.md run): the same sessions, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_over_dtls_on_mbedtls_motes_loses_nothing() {
    let setup = Setup::start("bench-mbedtls").await;
    bench_loses_nothing(&setup, "mbedtls").await;
}

/// Runs `bench --dtls` with `BENCH_MOTES` PSK motes on `engine` for 2 s and checks every mote
/// handshook, connected and stayed alive, and nothing acknowledged was lost.
async fn bench_loses_nothing(setup: &Setup, engine: &'static str) {
    let report = setup.pki.path("report.json");
    let file = setup.file("motes.psk");
    let out = tokio::task::spawn_blocking({
        let tool = tool_binary();
        let dtls = setup.dtls.clone();
        let broker = format!("mqtt://127.0.0.1:{}", setup.broker.port());
        let report = report.clone();
        move || {
            Command::new(tool)
                .args(["bench", "--gateway", &dtls, "--broker", &broker])
                .args(["--dtls", "--psk-file", &file, "--dtls-engine", engine])
                .args(["--motes", &BENCH_MOTES.to_string(), "-q", "1"])
                .args(["--duration", "2s", "--quiet", "--output"])
                .arg(&report)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        setup.gateway.log()
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let num = |path: &str| -> u64 {
        path.split('.')
            .fold(&json, |node, key| &node[key])
            .as_u64()
            .unwrap_or_else(|| panic!("no number at {path} in {json}"))
    };
    let n = BENCH_MOTES as u64;
    assert_eq!(num("dtls_handshake.completed"), n, "{json}");
    assert_eq!(num("dtls_handshake.failed"), 0, "{json}");
    assert!(
        json["dtls_handshake"]["rate_per_s"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    assert_eq!(num("connect.connected"), n, "{json}");
    assert!(num("messages.sent") > 0, "{json}");
    assert_eq!(num("messages.lost"), 0, "{json}");
    assert_eq!(
        num("messages.delivered"),
        num("messages.acknowledged"),
        "{json}"
    );
    assert_eq!(num("end.alive"), n, "{json}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("dtls      {n}/{n} handshakes")),
        "{summary}"
    );
}
