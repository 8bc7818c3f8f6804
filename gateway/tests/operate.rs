//! Running the real `mqtt-sn-gateway` binary as a service would: its logs on a pipe (no colour
//! codes; JSON lines that parse), a level that is not one refused, SIGHUP reloading the
//! configuration without a restart, SIGTERM and SIGINT stopping with the final stats,
//! sd_notify to a socket of the test's own, `check-config` cases, a state file another
//! gateway holds, and the completion scripts and man page for packages.
//!
//! Each gateway runs in a temp directory of its own, with MQTT-SN on a free loopback port and
//! its embedded broker closed to apps (`listen = "off"`), so nothing needs a fixed port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GATEWAY: &str = env!("CARGO_BIN_EXE_mqtt-sn-gateway");

/// How long anything the gateway should do may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// A directory of this test's own in the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("operate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration with MQTT-SN on `127.0.0.1:port`, the embedded broker closed to apps, and
/// `extra` appended (more sections).
fn config_text(port: u16, extra: &str) -> String {
    format!(
        "[[udp]]\nbind = \"127.0.0.1:{port}\"\ndiscovery = \"off\"\n\
         [embedded_broker]\nlisten = \"off\"\n{extra}"
    )
}

/// A running gateway whose stderr (where it logs) is a pipe the test reads; killed on drop.
struct Gateway {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the binary with `args` in `dir`, stderr piped, without RUST_LOG, NO_COLOR or
    /// NOTIFY_SOCKET from the test's environment, and with `env` set.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut command = Command::new(GATEWAY);
        command
            .current_dir(dir)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        // Read as it comes, so a full pipe never blocks the gateway.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Gateway { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has a line containing every one of `needles`, after the first
    /// `skip` bytes; returns the log's length after that line. Fails if the gateway exits
    /// or `WAIT` passes first.
    fn wait_for(&mut self, skip: usize, needles: &[&str]) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            let rest = log.get(skip..).unwrap_or("");
            let mut offset = skip;
            for line in rest.split_inclusive('\n') {
                offset += line.len();
                if line.ends_with('\n') && needles.iter().all(|n| line.contains(n)) {
                    return offset;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the gateway exited ({status}) before logging {needles:?}; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} within {WAIT:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -{name} \"$1\""), "sh"])
            .arg(self.child.id().to_string())
            .status()
            .expect("sh not found: install dash (or any POSIX sh)");
        assert!(sent.success(), "kill -{name} failed: {sent}");
    }

    /// Waits for the gateway to exit; fails after `WAIT`. The whole log is read by then.
    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread drains what is left in the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not stop; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects a mote with `client_id` (CleanSession, keep-alive 60 s) over UDP and returns
/// once the gateway accepted it. CONNECT is written by hand, from MQTT-SN v1.2 §5.4.4:
/// length, type 0x04, flags (0x04: CleanSession), protocol id 0x01, duration, client id.
/// Until the gateway's link to its embedded broker is up it answers CONNACK 0x01, so the
/// CONNECT is repeated.
fn connect_mote(port: u16, client_id: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    // The gateway answers every CONNECT at once: a long wait before sending it again keeps
    // a slow answer from being taken for a lost one (two acceptances would count twice).
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut connect = vec![0, 0x04, 0x04, 0x01, 0x00, 60];
    connect.extend_from_slice(client_id.as_bytes());
    connect[0] = u8::try_from(connect.len()).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        socket.send(&connect).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = socket.recv(&mut buf) {
            // CONNACK: 03 05 <return code>.
            if buf[..n] == [0x03, 0x05, 0x00] {
                return socket;
            }
        }
        assert!(Instant::now() < deadline, "{client_id} was not accepted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn piped_text_logs_have_no_colour_codes_and_sigterm_logs_the_final_stats() {
    let dir = TempDir::new("text");
    let config = dir.file("gateway.toml", &config_text(free_udp_port(), ""));
    let mut gateway = Gateway::start(&dir.0, &["--config", config.to_str().unwrap()], &[]);
    gateway.wait_for(0, &["listening for MQTT-SN"]);
    gateway.signal("TERM");
    let (status, log) = gateway.wait_exit();
    assert!(status.success(), "{status}; log:\n{log}");
    // tracing-subscriber colours by default, terminal or not.
    assert!(!log.contains('\u{1b}'), "escape codes on a pipe:\n{log:?}");
    let stop = log.find("SIGTERM: stopping").expect(&log);
    let last = log.find("final stats").expect(&log);
    assert!(stop < last, "{log}");
    assert!(log[last..].contains("received=0"), "{log}");
}

#[test]
fn json_log_lines_parse_and_sigint_stops_with_the_final_stats() {
    let dir = TempDir::new("json");
    let config = dir.file("gateway.toml", &config_text(free_udp_port(), ""));
    let mut gateway = Gateway::start(
        &dir.0,
        &["--config", config.to_str().unwrap(), "--log-format", "json"],
        &[],
    );
    gateway.wait_for(0, &["listening for MQTT-SN"]);
    gateway.signal("INT");
    let (status, log) = gateway.wait_exit();
    assert!(status.success(), "{status}; log:\n{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}"))
        })
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "no {key} in {line}");
        }
    }
    let message = |text: &str| {
        lines
            .iter()
            .find(|l| l["message"] == text)
            .unwrap_or_else(|| panic!("no {text:?} line in:\n{log}"))
    };
    // The event's fields are members of the object, beside the message.
    let listening = message("listening for MQTT-SN");
    assert_eq!(listening["level"], "INFO");
    assert!(listening["link"].is_string(), "{listening}");
    assert_eq!(message("SIGINT: stopping")["level"], "INFO");
    assert_eq!(message("final stats")["received"], 0);
    // The format can be the file's too.
    let config = dir.file(
        "file.toml",
        &config_text(free_udp_port(), "[log]\nformat = \"json\"\n"),
    );
    let mut gateway = Gateway::start(&dir.0, &["--config", config.to_str().unwrap()], &[]);
    gateway.wait_for(0, &["{\"timestamp\":", "listening for MQTT-SN"]);
}

/// Runs the binary with `args` and `env` to its end (failing after `WAIT`, so a gateway that
/// started instead of refusing fails the test rather than hanging it).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut gateway = Gateway::start(dir, args, env);
    let (status, stderr) = gateway.wait_exit();
    (status.code(), stderr)
}

#[test]
fn a_level_that_is_not_a_level_is_refused_at_start_and_by_check_config() {
    let dir = TempDir::new("level");
    let good = dir.file("good.toml", &config_text(free_udp_port(), ""));
    let good = good.to_str().unwrap();
    // Before: accepted, and then nothing at all was logged.
    let (code, stderr) = run(&dir.0, &["--config", good, "--log-level", "verbose"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --log-level verbose: \"verbose\" is not a log level"),
        "{stderr}"
    );
    let (code, stderr) = run(&dir.0, &["--config", good], &[("RUST_LOG", "verbose")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: RUST_LOG=verbose: \"verbose\" is not a log level"),
        "{stderr}"
    );
    let (code, stderr) = run(
        &dir.0,
        &["--config", good, "--log-level", "mqtt_sn_gateway=verbose"],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("\"verbose\" in \"mqtt_sn_gateway=verbose\" is not a log level"));

    let bad = dir.file("bad.toml", "[log]\nlevel = \"verbose\"\n");
    let output = Command::new(GATEWAY)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}:2:9: log.level: \"verbose\" is not a log level",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_the_level_and_the_stats_interval_and_names_what_needs_a_restart() {
    let dir = TempDir::new("hup");
    let port = free_udp_port();
    let write = |log: &str, extra: &str| {
        dir.file(
            "gateway.toml",
            &config_text(port, &format!("{extra}[log]\n{log}\n")),
        )
    };
    let config = write("level = \"info\"\nstats_interval = \"0\"", "");
    let mut gateway = Gateway::start(&dir.0, &["--config", config.to_str().unwrap()], &[]);
    let mut at = gateway.wait_for(0, &["listening for MQTT-SN"]);
    // At info a mote's connection is not logged on its own line (it is counted).
    let _a = connect_mote(port, "hup-a");

    // SIGHUP with the level at debug and stats every second: the gateway keeps running, and
    // logs at debug.
    write("level = \"debug\"\nstats_interval = \"1s\"", "");
    gateway.signal("HUP");
    at = gateway.wait_for(at, &["SIGHUP: log level changed", "old=info", "new=debug"]);
    at = gateway.wait_for(at, &["SIGHUP: configuration reloaded"]);
    let _b = connect_mote(port, "hup-b");
    at = gateway.wait_for(at, &["client connected", "hup-b"]);
    let log = gateway.log();
    assert!(
        !log.contains("hup-a"),
        "a connection logged at info:\n{log}"
    );
    // Stats were off; now they come every second, with the summary of both connections.
    at = gateway.wait_for(
        at,
        &["2 motes connected, 0 disconnected, 0 lost since the last summary"],
    );
    at = gateway.wait_for(at, &[" stats ", "sessions=2"]);

    // A file that no longer parses is reported; the running configuration stays.
    write("level = \"verbose\"", "");
    gateway.signal("HUP");
    at = gateway.wait_for(at, &["configuration not reloaded"]);
    at = gateway.wait_for(at, &["log.level: \"verbose\" is not a log level"]);
    assert!(gateway.running());

    // What cannot change while running is named.
    write(
        "level = \"debug\"\nstats_interval = \"1s\"",
        "[gateway]\nmax_sessions = 5\n",
    );
    gateway.signal("HUP");
    at = gateway.wait_for(
        at,
        &["take effect only at the next restart: [gateway] max_sessions"],
    );
    assert!(gateway.running());
    gateway.signal("TERM");
    let (status, log) = gateway.wait_exit();
    assert!(status.success(), "{status}; log:\n{log}");
    assert!(log[at..].contains("final stats"), "{log}");
}

#[test]
fn sd_notify_ready_status_watchdog_and_stopping() {
    let dir = TempDir::new("notify");
    let socket_path = dir.0.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = dir.file(
        "gateway.toml",
        &config_text(free_udp_port(), "[log]\nstats_interval = \"1s\"\n"),
    );
    let mut gateway = Gateway::start(
        &dir.0,
        &["--config", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            // Pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut received: Vec<String> = Vec::new();
    let mut next = |gateway: &mut Gateway, what: &str| -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut buf = [0u8; 1024];
            if let Ok(n) = manager.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                received.push(text.clone());
                if text.contains(what) {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} within {WAIT:?}; got {received:?}; log:\n{}",
                gateway.log()
            );
        }
    };
    let ready = next(&mut gateway, "READY=1");
    assert!(ready.contains("\nSTATUS=0 sessions"), "{ready:?}");
    // READY comes once the link is bound: the gateway logs that before it notifies, though
    // the thread reading its stderr may pick the line up a moment after READY arrives.
    gateway.wait_for(0, &["listening for MQTT-SN"]);
    next(&mut gateway, "WATCHDOG=1");
    next(&mut gateway, "WATCHDOG=1");
    let status = next(&mut gateway, "STATUS=");
    assert!(
        status.starts_with("STATUS=0 sessions; 0 messages forwarded"),
        "{status:?}"
    );
    gateway.signal("TERM");
    next(&mut gateway, "STOPPING=1");
    let (exit, log) = gateway.wait_exit();
    assert!(exit.success(), "{log}");
}

#[test]
fn check_config_takes_the_file_as_an_argument_or_with_dash_c() {
    let dir = TempDir::new("check");
    let file = dir.file("g.toml", &config_text(free_udp_port(), ""));
    let file = file.to_str().unwrap();
    for args in [
        vec!["check-config", file],
        vec!["check-config", "-c", file],
        vec!["-c", file, "check-config"],
        vec!["check-config", "--config", file, file],
    ] {
        let output = Command::new(GATEWAY).args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.starts_with(&format!("{file}: OK")),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let other = dir.file("other.toml", "");
    let output = Command::new(GATEWAY)
        .args(["check-config", "-c", file, other.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("two files"), "{stderr}");
    let output = Command::new(GATEWAY).arg("check-config").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("check-config FILE"), "{stderr}");
}

#[test]
fn check_config_warns_about_an_embedded_broker_open_to_the_network() {
    let dir = TempDir::new("open");
    let file = dir.file("g.toml", "[embedded_broker]\nlisten = \"0.0.0.0:1883\"\n");
    let output = Command::new(GATEWAY)
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "warning: {}:2:1: embedded_broker.listen: the embedded broker listens on \
             0.0.0.0:1883, beyond this host, and it has no logins",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_missing_tls_or_password_file_is_found_by_check_config_and_before_binding() {
    let dir = TempDir::new("files");
    let port = free_udp_port();
    let file = dir.file(
        "g.toml",
        &format!(
            "{}[broker]\nurl = \"mqtts://127.0.0.1:1\"\nusername = \"u\"\n\
             password_file = \"secret\"\nca_file = \"ca.pem\"\n[policy]\nadmission = \"listed\"\n",
            config_text(port, "")
        ),
    );
    let secret = dir.0.join("secret");
    let ca = dir.0.join("ca.pem");
    let expected = [
        format!(
            "{}:9:17: broker.password_file: {} does not exist",
            file.display(),
            secret.display()
        ),
        format!(
            "{}:10:11: broker.ca_file: {} does not exist",
            file.display(),
            ca.display()
        ),
    ];
    let output = Command::new(GATEWAY)
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(expected.as_str()),
            "{line}\nnot {expected}"
        );
    }
    // The gateway stops before it binds its port.
    let (code, stderr) = run(&dir.0, &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&expected[1]), "{stderr}");
    assert!(!stderr.contains("listening for MQTT-SN"), "{stderr}");
}

#[test]
fn a_second_gateway_on_the_same_state_file_is_told_another_one_holds_it() {
    let dir = TempDir::new("store");
    let store = "[store]\npath = \"shared.redb\"\n";
    let first = dir.file("first.toml", &config_text(free_udp_port(), store));
    let second = dir.file("second.toml", &config_text(free_udp_port(), store));
    let mut gateway = Gateway::start(&dir.0, &["--config", first.to_str().unwrap()], &[]);
    gateway.wait_for(0, &["listening for MQTT-SN"]);
    let (code, stderr) = run(&dir.0, &["--config", second.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the state store {} is in use by another process (another mqtt-sn-gateway",
            dir.0.join("shared.redb").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("writable"), "{stderr}");
    assert!(gateway.running());
}

#[test]
fn completions_and_the_man_page_are_printed_for_packages() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef mqtt-sn-gateway"),
        ("fish", "complete -c mqtt-sn-gateway"),
    ] {
        let output = Command::new(GATEWAY)
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shell}");
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("check-config"), "{shell}:\n{script}");
        assert!(script.contains("log-format"), "{shell}:\n{script}");
    }
    let output = Command::new(GATEWAY).arg("manpage").output().unwrap();
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(page.contains(".TH mqtt-sn-gateway 1"), "{page}");
    assert!(page.contains("check\\-config"), "{page}");
    // For packagers, not in the everyday help.
    let output = Command::new(GATEWAY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        !help.contains("manpage") && !help.contains("completions"),
        "{help}"
    );
}
