//! A private mosquitto per test: its own port, config file, persistence database and log, all
//! in a temp directory that is removed when the test ends.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long mosquitto may take to accept connections after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long mosquitto may take to exit after SIGTERM (it saves its database first).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1: bound to port 0, read, released. Another process could take
/// it before it is used; [`Mosquitto::running`] retries with a new port when that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The mosquitto binary: `$MOSQUITTO`, else the usual install locations, else `$PATH`.
/// Panics when there is none: a test must never pass silently without a broker.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(path);
    }
    let mut candidates = vec![
        PathBuf::from("/usr/sbin/mosquitto"),
        PathBuf::from("/usr/local/sbin/mosquitto"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("mosquitto")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("mosquitto not found: install it with `apt-get install mosquitto`")
        })
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "sn-tests-mosquitto-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the mosquitto temp dir");
    dir
}

/// A mosquitto broker owned by one test.
///
/// Listens on `127.0.0.1:PORT` only, anonymous access, with persistence in its temp directory
/// so that a graceful restart ([`Mosquitto::stop`] then [`Mosquitto::start`]) keeps persistent
/// sessions, their subscriptions and the QoS 1/2 messages queued for them. Dropping it kills
/// the process and removes the directory.
#[derive(Debug)]
pub struct Mosquitto {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// A broker with its port chosen and its config written, not started yet (for tests where
    /// the broker is down when the gateway starts).
    pub fn new() -> Mosquitto {
        Mosquitto::with_port(free_port())
    }

    fn with_port(port: u16) -> Mosquitto {
        let bin = binary();
        assert!(
            bin.is_file(),
            "mosquitto not found at {}: install it with `apt-get install mosquitto`",
            bin.display()
        );
        let dir = temp_dir();
        let config = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 100000\n\
             # Only has an effect when run as root: stay root to keep access to the temp dir.\n\
             user root\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("write mosquitto.conf");
        Mosquitto {
            port,
            dir,
            child: None,
        }
    }

    /// A broker for a given port, not started yet (for a test that frees the port first).
    pub fn on_port(port: u16) -> Mosquitto {
        Mosquitto::with_port(port)
    }

    /// Starts the broker if its port is free; false if it could not start (the test may retry
    /// while another listener lets go of the port).
    pub async fn try_start_now(&mut self) -> bool {
        self.try_start().await.is_ok()
    }

    /// A running broker on a free port. Retries with another port if the chosen one was taken
    /// in the meantime.
    pub async fn running() -> Mosquitto {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut broker = Mosquitto::new();
            match broker.try_start().await {
                Ok(()) => return broker,
                Err(error) => last_error = error,
            }
        }
        panic!("mosquitto did not start: {last_error}");
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The temp directory holding the config, the database and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mosquitto's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts the broker on its port (again, after [`Mosquitto::stop`]) and waits until it
    /// accepts TCP connections.
    pub async fn start(&mut self) {
        if let Err(error) = self.try_start().await {
            panic!("mosquitto did not start on port {}: {error}", self.port);
        }
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "mosquitto is already running");
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run mosquitto: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("mosquitto exited ({status}); log:\n{}", self.log()));
            }
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not accepting connections after {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop: SIGTERM, then waits for the process to exit (mosquitto saves its
    /// persistence database on the way out). Kills it if it does not exit in time.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let exited = tokio::task::spawn_blocking(move || {
            let signalled = Command::new("kill")
                .args(["-TERM", &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            while signalled && std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            false
        })
        .await
        .expect("the stop task");
        assert!(
            exited,
            "mosquitto did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it"
        );
    }
}

impl Default for Mosquitto {
    fn default() -> Self {
        Mosquitto::new()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
