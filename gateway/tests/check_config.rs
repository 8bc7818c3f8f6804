//! `mqtt-sn-gateway check-config` and the gateway's start, run as a user would, on a file
//! whose settings are valid but ignored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GATEWAY: &str = env!("CARGO_BIN_EXE_mqtt-sn-gateway");

/// A directory of this test's own in the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("check-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A closed TCP port on loopback: the broker the gateway cannot reach.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Valid, with a fallback in transparent mode (line 5) and a spool with the store off
/// (line 7; `[store] enabled = false` on line 12). Admission is listed (line 14), so the
/// warning about an open gateway with a remote broker (config/tests/policy.rs) stays out.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nmode = \"transparent\"\n\
             client_id_prefix = \"t/\"\nfallback = \"embedded\"\n[spool]\nenabled = true\n\
             [[udp]]\nbind = \"127.0.0.1:0\"\ndiscovery = \"off\"\n[store]\nenabled = false\n\
             [policy]\nadmission = \"listed\"\n",
            closed_port()
        ),
    )
    .unwrap();
    path
}

const FALLBACK: &str = ":5:1: broker.fallback: ignored: mode = \"transparent\" (line 3)";
const SPOOL: &str = ":7:1: spool.enabled: ignored: the spool is kept in the store file and \
                     [store] enabled = false (line 12)";

#[test]
fn check_config_warns_about_ignored_settings_and_how_to_fix_them() {
    let dir = TempDir::new("warn");
    let config = write_config(&dir.0);
    let output = Command::new(GATEWAY)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Valid: the file is accepted, the warnings are on stderr.
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{}: OK", config.display())),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let prefix = format!("warning: {}", config.display());
    assert!(
        lines[0].starts_with(&format!("{prefix}{FALLBACK}")),
        "{stderr}"
    );
    assert!(
        lines[0].contains("Remove fallback, or set mode = \"aggregating\""),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{prefix}{SPOOL}")),
        "{stderr}"
    );
    assert!(
        // Transparent mode: turning the store on would not give a spool.
        lines[1].contains("Set [spool] enabled = false: in transparent mode there is no spool"),
        "{stderr}"
    );
}

#[test]
fn the_gateway_logs_the_same_warnings_when_it_starts() {
    let dir = TempDir::new("start");
    let config = write_config(&dir.0);
    let log_path = dir.0.join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(GATEWAY)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if (text.contains(FALLBACK) && text.contains(SPOOL)) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    let at = |needle: &str| {
        warnings
            .iter()
            .position(|l| l.contains(&format!("{}{needle}", config.display())))
    };
    assert!(at(FALLBACK).is_some(), "{text}");
    assert!(at(SPOOL).is_some(), "{text}");
    assert!(at(FALLBACK) < at(SPOOL), "{text}");
}
