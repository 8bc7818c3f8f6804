//! The real `mqtt-sn-gateway` binary with no broker configured: it starts its embedded broker,
//! an MQTT client on that broker receives what the `mqtt-sn` tool publishes through the
//! gateway, SIGTERM stops it cleanly; and a taken port stops it at start with a message that
//! names the port and the option.
//!
//! Each run gets a temp directory as its working directory (the gateway writes its state file
//! there) and free loopback ports, so nothing needs port 1883. Network safety: loopback only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// The gateway binary (built by the running cargo if needed).
fn gateway_binary() -> PathBuf {
    sn_tests::binaries::workspace_binary("mqtt-sn-gateway", "mqtt-sn-gateway")
}

/// The `mqtt-sn` tool (built by the running cargo if needed).
fn tool_binary() -> PathBuf {
    sn_tests::binaries::workspace_binary("mqtt-sn-tools", "mqtt-sn")
}

/// A temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("zero-config-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway process, killed on drop if still running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the gateway in `dir` with `[embedded_broker] listen = listen` and MQTT-SN on
/// `127.0.0.1:udp_port`; its output goes to `dir/gateway.log`.
fn spawn_gateway(dir: &Path, listen: SocketAddr, udp_port: u16) -> Running {
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[embedded_broker]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let child = Command::new(gateway_binary())
        .current_dir(dir)
        .args(["--config", "gateway.toml", "--udp"])
        .arg(format!("127.0.0.1:{udp_port}"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Running(child)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
}

/// Starts a gateway with `spawn` on loopback ports found free, and waits until its log says
/// both its embedded broker and its MQTT-SN link listen. A port can be taken by another
/// process between being found free and the gateway binding it: the gateway then stops
/// with "address already in use", and it is started again on other ports. Any other exit,
/// or no start within `deadline`, fails the test. Returns it, the TCP and the UDP port.
fn start_on_free_ports(
    dir: &Path,
    deadline: Duration,
    spawn: impl Fn(&Path, SocketAddr, u16) -> Running,
) -> (Running, u16, u16) {
    for _ in 0..5 {
        let tcp_port = free_tcp_port();
        let udp_port = free_udp_port();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port));
        let mut gateway = spawn(dir, listen, udp_port);
        let until = Instant::now() + deadline;
        loop {
            let text = log(dir);
            if let Some(status) = gateway.0.try_wait().unwrap() {
                assert!(
                    text.contains("address already in use"),
                    "the gateway exited at start ({status}); log:\n{text}"
                );
                break;
            }
            if text.contains("embedded MQTT broker listening for local apps")
                && text.contains("listening for MQTT-SN")
            {
                return (gateway, tcp_port, udp_port);
            }
            assert!(
                Instant::now() < until,
                "the gateway did not start within {deadline:?}; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("5 pairs of free ports in a row were taken before the gateway bound them");
}

/// SIGTERM with the shell's `kill` builtin (no procps needed); fails if it was not sent.
fn sigterm(child: &Child) {
    let sent = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
        .status()
        .expect("sh not found: install dash (or any POSIX sh)");
    assert!(sent.success(), "kill -TERM {} failed: {sent}", child.id());
}

/// Waits for `gateway` to exit after SIGTERM; fails after 20 s.
fn wait_exit(gateway: &mut Running) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An MQTT client on `port`, subscribed to `filter` at QoS 1, retrying the connection while
/// the gateway starts. Returns the event loop for reading messages.
async fn subscriber(port: u16, filter: &str, dir: &Path) -> (AsyncClient, rumqttc::EventLoop) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut options = MqttOptions::new("zero-config-app", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let subscribed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        if subscribed == Ok(true) {
            return (client, eventloop);
        }
        assert!(
            Instant::now() < deadline,
            "no embedded broker on port {port} within 20 s; gateway log:\n{}",
            log(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `mqtt-sn pub`, retried while the gateway's link to its embedded broker comes up (CONNACK
/// 0x01 until then).
fn publish(udp_port: u16, topic: &str, message: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output: Output = Command::new(tool_binary())
            .args(["pub", "--gateway"])
            .arg(format!("127.0.0.1:{udp_port}"))
            .args(["-t", topic, "-m", message, "-q", "1", "--retry", "1s"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mqtt-sn pub kept failing: {}\ngateway log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_without_a_broker_serves_motes_through_its_embedded_broker() {
    // Built (or found) before anything starts, so no connection waits on cargo.
    tool_binary();
    let dir = TempDir::new("serves");
    let (mut gateway, tcp_port, udp_port) =
        start_on_free_ports(&dir.0, Duration::from_secs(20), spawn_gateway);
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port));

    let (_client, mut eventloop) = subscriber(tcp_port, "sensors/#", &dir.0).await;
    let dir_path = dir.0.clone();
    tokio::task::spawn_blocking(move || publish(udp_port, "sensors/binary", "42", &dir_path))
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message on the embedded broker; log:\n{}", log(&dir.0)));
    assert_eq!(message.topic, "sensors/binary");
    assert_eq!(&message.payload[..], b"42");
    assert_eq!(message.qos, QoS::AtLeastOnce);

    // SIGTERM: a clean stop, exit status 0, the port free again.
    sigterm(&gateway.0);
    let status = wait_exit(&mut gateway);
    let text = log(&dir.0);
    assert!(status.success(), "exit status {status}; log:\n{text}");
    assert!(
        text.contains("embedded MQTT broker listening for local apps"),
        "{text}"
    );
    assert!(
        dir.0.join("mqtt-sn-gateway.redb").exists(),
        "state file in the working directory"
    );
    assert!(
        TcpListener::bind(listen).is_ok(),
        "port {tcp_port} still held after exit"
    );
}

/// `mosquitto_sub`, as a user would run it next to the gateway; the test fails with what to
/// install when it is missing.
fn mosquitto_sub(port: u16, filter: &str) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
        .args(["-q", "1", "-C", "1", "-v", "-W", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run mosquitto_sub ({error}): install it with \
                 `apt-get install mosquitto-clients`"
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_on_the_embedded_broker_receives_a_motes_publish() {
    // Built (or found) before anything starts, so no connection waits on cargo.
    tool_binary();
    let dir = TempDir::new("mosquitto-sub");
    let (_gateway, tcp_port, udp_port) =
        start_on_free_ports(&dir.0, Duration::from_secs(20), spawn_gateway);
    // The embedded broker is up once an MQTT client can subscribe.
    drop(subscriber(tcp_port, "probe/#", &dir.0).await);

    let dir_path = dir.0.clone();
    let output = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sub = mosquitto_sub(tcp_port, "sensors/#");
        loop {
            // Published until mosquitto_sub has one: it may not have subscribed yet.
            publish(udp_port, "sensors/kitchen", "21.5", &dir_path);
            std::thread::sleep(Duration::from_millis(300));
            if let Some(status) = sub.try_wait().unwrap() {
                let output = sub.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "mosquitto_sub failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub received nothing within 30 s; gateway log:\n{}",
                log(&dir_path)
            );
        }
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "sensors/kitchen 21.5"
    );
}

#[test]
fn the_binary_refuses_to_start_on_a_taken_port_and_says_how_to_fix_it() {
    let dir = TempDir::new("taken");
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken = holder.local_addr().unwrap();
    let mut gateway = spawn_gateway(&dir.0, taken, free_udp_port());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway kept running although {taken} is taken; log:\n{}",
            log(&dir.0)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = log(&dir.0);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "error: cannot start the embedded broker on {taken}: address already in use"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("--broker mqtt://{taken}")), "{text}");
    assert!(text.contains("[embedded_broker] listen"), "{text}");
}

/// The README's run command with a config file, `cargo run --release -p mqtt-sn-gateway --
/// --config gateway.toml`, run through cargo as a user would, in debug: the profile plays
/// no part in which binary cargo picks, and a release build of the whole dependency tree
/// would cost CI minutes. Cargo's own build of the binary, which `cargo test` has just made,
/// is reused.
fn spawn_readme_command(dir: &Path, listen: SocketAddr, udp_port: u16) -> Running {
    let readme = include_str!("../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -p mqtt-sn-gateway -- --config "))
        .expect("the README's run command with --config");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "cargo",
            "run",
            "--release",
            "-p",
            "mqtt-sn-gateway",
            "--",
            "--config",
            "gateway.toml"
        ]
    );
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[embedded_broker]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();
    let workspace = sn_tests::binaries::workspace_manifest();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    // Run from the gateway's working directory (its state file goes there), the checkout
    // named by --manifest-path, in the user's environment (see `binaries::cargo`).
    let mut command = sn_tests::binaries::cargo();
    let child = command
        .current_dir(dir)
        .args(["run", "--manifest-path"])
        .arg(workspace)
        .args(words[3..].iter().filter(|w| **w != "--release"))
        .arg("--udp")
        .arg(format!("127.0.0.1:{udp_port}"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cargo");
    Running(child)
}

#[test]
fn the_readme_run_command_picks_the_gateway_binary() {
    // `cargo run --release -p mqtt-sn-gateway` (README) needs the package to name its
    // default binary, should it ever build a second one (it did, the `mqtt-sn` tool).
    let manifest = include_str!("../../gateway/Cargo.toml");
    assert!(
        manifest.contains("default-run = \"mqtt-sn-gateway\""),
        "gateway/Cargo.toml lacks default-run"
    );
    let readme = include_str!("../../README.md");
    assert!(readme.contains("cargo run --release -p mqtt-sn-gateway\n"));

    // And the command itself works: cargo picks the gateway, which serves with its embedded
    // broker and stops cleanly on SIGTERM (cargo runs the binary in its own place, so the
    // signal reaches the gateway). Minutes are allowed in case cargo has to build.
    let dir = TempDir::new("readme");
    let (mut gateway, _tcp_port, _udp_port) =
        start_on_free_ports(&dir.0, Duration::from_secs(600), spawn_readme_command);
    let text = log(&dir.0);
    assert!(
        text.contains("/mqtt-sn-gateway --config gateway.toml --udp "),
        "cargo ran something else:\n{text}"
    );
    sigterm(&gateway.0);
    let status = wait_exit(&mut gateway);
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        log(&dir.0)
    );
    assert!(
        dir.0.join("mqtt-sn-gateway.redb").exists(),
        "state file in the working directory"
    );
}
