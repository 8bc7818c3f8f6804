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
/// it before it is used; [`Mosquitto::running`] retries with a new port when that happens
/// (mosquitto logs "Address already in use" and exits), and a test that starts a
/// [`Mosquitto::new`] later uses [`Mosquitto::start_unless_port_taken`] to do the same.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Why a spawned mosquitto did not come up.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// Another process holds one of its ports: mosquitto logged "Address already in use".
    PortTaken(String),
    /// Anything else (with the log).
    Other(String),
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::PortTaken(log) => write!(f, "port already in use; log:\n{log}"),
            StartFailure::Other(log) => f.write_str(log),
        }
    }
}

/// The length of a log file, 0 when there is none yet.
pub(crate) fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
}

/// Waits until `child`, a mosquitto logging to `log` (which was `offset` bytes long when the
/// child was spawned), proves that it is the one listening on every port in `ports`: its own
/// log lines say it opened a listen socket on each port and is running (mosquitto logs
/// "running" only after every listener is bound, and exits when a bind fails), the process
/// is still alive after that, and each port accepts a TCP connection. A TCP connect alone
/// proves nothing: another process on the port would accept it too.
pub(crate) async fn wait_listening(
    child: &mut Child,
    log: &Path,
    offset: usize,
    ports: &[u16],
) -> Result<(), StartFailure> {
    let ours = || {
        std::fs::read(log)
            .ok()
            .and_then(|bytes| {
                bytes
                    .get(offset..)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = ours();
            return Err(if text.contains("Address already in use") {
                StartFailure::PortTaken(text)
            } else {
                StartFailure::Other(format!("mosquitto exited ({status}); log:\n{text}"))
            });
        }
        let text = ours();
        let opened = ports
            .iter()
            .all(|port| text.contains(&format!("Opening ipv4 listen socket on port {port}.")));
        if opened && text.contains(" running") {
            // Logged "running" and still alive: the binds succeeded, so the ports are its own.
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartFailure::Other(format!(
                    "mosquitto exited ({status}) right after starting; log:\n{text}"
                )));
            }
            for &port in ports {
                if let Err(e) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
                    return Err(StartFailure::Other(format!(
                        "mosquitto says it listens on port {port}, but a connect fails ({e}); \
                         log:\n{text}"
                    )));
                }
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartFailure::Other(format!(
                "mosquitto did not log listening on {ports:?} and running within \
                 {START_TIMEOUT:?}; log:\n{text}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The mosquitto binary: `$MOSQUITTO`, else the usual install locations, else `$PATH`.
/// Panics when there is none: a test must never pass silently without a broker.
pub(crate) fn binary() -> PathBuf {
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

    /// Starts the broker if its port is free; false if another process still holds the port
    /// (the test may retry while another listener lets go of it). Any other failure fails the
    /// test.
    pub async fn try_start_now(&mut self) -> bool {
        self.start_unless_port_taken().await
    }

    /// A running broker on a free port. Retries with another port if the chosen one was taken
    /// in the meantime.
    /// Only a port taken by another process makes it try another port; any other failure
    /// fails the test.
    pub async fn running() -> Mosquitto {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut broker = Mosquitto::new();
            match broker.try_start().await {
                Ok(()) => return broker,
                Err(StartFailure::PortTaken(error)) => last_error = error,
                Err(StartFailure::Other(error)) => panic!("mosquitto did not start: {error}"),
            }
        }
        panic!("mosquitto did not start: five ports in a row were taken; last: {last_error}");
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

    /// Starts the broker on its port (again, after [`Mosquitto::stop`]) and waits until it is
    /// listening there (its own log says so, and the port accepts connections).
    pub async fn start(&mut self) {
        if let Err(failure) = self.try_start().await {
            panic!("mosquitto did not start on port {}: {failure}", self.port);
        }
    }

    /// Starts the broker on its port and waits until it is listening: true once it is, false
    /// when another process holds the port (the caller retries with a new broker on another
    /// port); fails the test for any other failure.
    pub async fn start_unless_port_taken(&mut self) -> bool {
        match self.try_start().await {
            Ok(()) => true,
            Err(StartFailure::PortTaken(_)) => false,
            Err(StartFailure::Other(error)) => {
                panic!("mosquitto did not start on port {}: {error}", self.port)
            }
        }
    }

    async fn try_start(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "mosquitto is already running");
        let log = self.dir.join("mosquitto.log");
        let offset = log_len(&log);
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartFailure::Other(format!("cannot run mosquitto: {e}")))?;
        match wait_listening(&mut child, &log, offset, &[self.port]).await {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(failure) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(failure)
            }
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
