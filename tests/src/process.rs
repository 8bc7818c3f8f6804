//! The real gateway binary as a child process, for tests that need what only a process has:
//! its own resident memory, its state file, its log as an operator sees it, a kill -9.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The gateway binary (built by the running cargo if needed).
pub fn gateway_binary() -> PathBuf {
    crate::binaries::workspace_binary("mqtt-sn-gateway", "mqtt-sn-gateway")
}

/// The gateway binary running with a config file in a temp directory of its own; killed, and
/// the directory removed, on drop.
pub struct GatewayProcess {
    /// The gateway process.
    pub child: Child,
    /// Its working directory: config file, log, state file.
    pub dir: PathBuf,
    /// Its MQTT-SN UDP address.
    pub addr: std::net::SocketAddr,
}

impl GatewayProcess {
    /// Starts the binary in `dir` (its working directory) with `config`, the `[[udp]]` link
    /// added here on a free loopback port, and waits until it listens. A port taken between
    /// being found free and bound makes the gateway exit with "address already in use": it
    /// starts again on another.
    pub fn start(dir: PathBuf, config: &str) -> GatewayProcess {
        let log_path = dir.join("gateway.log");
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        for _ in 0..5 {
            let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|s| s.local_addr())
                .expect("a free loopback UDP port")
                .port();
            std::fs::write(
                dir.join("gateway.toml"),
                format!("{config}\n[[udp]]\nbind = \"127.0.0.1:{port}\"\ndiscovery = \"off\"\n"),
            )
            .expect("write the gateway's config file");
            let log = std::fs::File::create(&log_path).expect("create the gateway's log file");
            let mut child = Command::new(gateway_binary())
                .current_dir(&dir)
                .args(["--config", "gateway.toml"])
                .env_remove("RUST_LOG")
                // Plain text: the log is read below (it has colour codes otherwise).
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("share the log file"))
                .stderr(log)
                .spawn()
                .expect("start the gateway binary");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let text = read_log();
                if let Some(status) = child.try_wait().expect("wait for the gateway") {
                    assert!(
                        text.contains("address already in use"),
                        "the gateway exited at start ({status}); log:\n{text}"
                    );
                    break;
                }
                if text.contains("listening for MQTT-SN") {
                    return GatewayProcess {
                        child,
                        dir,
                        addr: (Ipv4Addr::LOCALHOST, port).into(),
                    };
                }
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the gateway did not start within 20 s; log:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("the gateway found five UDP ports in a row taken");
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// A `kB` field of the process's /proc status (VmRSS: resident now; VmHWM: peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the gateway's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the gateway's /proc status"))
    }

    /// Resets the process's peak resident set (VmHWM) to its current one (Linux 4.0+).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("reset the gateway's VmHWM via /proc/<pid>/clear_refs");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The kernel's drop counter of the UDP socket bound to 127.0.0.1:`port` (/proc/net/udp,
/// last column): datagrams that arrived while its receive buffer was full.
pub fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
    let local = format!("0100007F:{port:04X}");
    let line = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .unwrap_or_else(|| panic!("no UDP socket on 127.0.0.1:{port} in /proc/net/udp"));
    line.split_whitespace()
        .nth(12)
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in /proc/net/udp line {line:?}"))
}
