//! systemd's service notifications (sd_notify(3)): `READY=1` once the gateway serves,
//! `STATUS=` lines for `systemctl status`, `WATCHDOG=1` pings, `STOPPING=1`.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract-namespace name written with a leading `@`). It is
//! a few lines, so it is written here rather than taken from a crate. Outside systemd (no
//! `$NOTIFY_SOCKET`) there is no [`Notifier`] and nothing is sent.

use std::time::Duration;

/// Sends notifications to the service manager. Sending never blocks: a notification the
/// manager has no room for is dropped (the next one says the same or more).
#[derive(Debug)]
pub struct Notifier {
    #[cfg(unix)]
    socket: std::os::unix::net::UnixDatagram,
}

/// Why `$NOTIFY_SOCKET` could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use NOTIFY_SOCKET={socket}: {source}")]
pub struct NotifyError {
    /// The variable's value.
    pub socket: String,
    /// What the OS said.
    pub source: std::io::Error,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, or `None` when it is not set (or empty): the
    /// gateway was not started by systemd with `Type=notify`.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(socket) if !socket.is_empty() => Notifier::connect(&socket).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `socket`: a filesystem path, or `@name` for the abstract
    /// namespace (Linux).
    pub fn connect(socket: &std::ffi::OsStr) -> Result<Notifier, NotifyError> {
        let error = |source| NotifyError {
            socket: socket.to_string_lossy().into_owned(),
            source,
        };
        connect(socket).map_err(error)
    }

    /// Sends `state`: one or more `KEY=VALUE` lines, like `"READY=1\nSTATUS=serving"`.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            self.socket.send(state.as_bytes()).map(|_| ())
        }
        #[cfg(not(unix))]
        {
            let _ = state;
            Ok(())
        }
    }
}

#[cfg(unix)]
fn connect(socket: &std::ffi::OsStr) -> std::io::Result<Notifier> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;

    let unbound = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => connect_abstract(&unbound, name)?,
        None => unbound.connect(std::path::Path::new(socket))?,
    }
    // A service manager that is slow to read must not stall the gateway's loop.
    unbound.set_nonblocking(true)?;
    Ok(Notifier { socket: unbound })
}

#[cfg(target_os = "linux")]
fn connect_abstract(socket: &std::os::unix::net::UnixDatagram, name: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.connect_addr(&addr)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn connect_abstract(_: &std::os::unix::net::UnixDatagram, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

#[cfg(not(unix))]
fn connect(_: &std::ffi::OsStr) -> std::io::Result<Notifier> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "service notifications need unix sockets",
    ))
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (systemd's `WatchdogSec=`), as
/// sd_watchdog_enabled(3) advises, so one late ping is not yet a failure. `None` when no
/// watchdog is set, or when `$WATCHDOG_PID` names another process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_of(&usec, pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from the variables' values and this process's id.
fn watchdog_interval_of(usec: &str, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec.trim().parse().ok().filter(|&us| us > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// A manager's socket in a temp folder of its own; removed on drop.
    struct Manager {
        dir: std::path::PathBuf,
        socket: std::os::unix::net::UnixDatagram,
    }

    impl Manager {
        fn new(name: &str) -> Manager {
            let dir = std::env::temp_dir().join(format!("sd-notify-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let socket = std::os::unix::net::UnixDatagram::bind(dir.join("notify")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Manager { dir, socket }
        }

        fn next(&self) -> String {
            let mut buf = [0u8; 512];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn each_notification_is_one_datagram_on_the_socket() {
        let manager = Manager::new("path");
        let notifier = Notifier::connect(manager.dir.join("notify").as_os_str()).unwrap();
        notifier.notify("READY=1\nSTATUS=serving 0 motes").unwrap();
        notifier.notify("WATCHDOG=1").unwrap();
        assert_eq!(manager.next(), "READY=1\nSTATUS=serving 0 motes");
        assert_eq!(manager.next(), "WATCHDOG=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        notifier.notify("STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let error = Notifier::connect(std::ffi::OsStr::new("/nonexistent/notify")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot use NOTIFY_SOCKET=/nonexistent/notify: "),
            "{error}"
        );
    }

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_for_this_process_only() {
        assert_eq!(
            watchdog_interval_of("30000000", None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_of("30000000", Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval_of("30000000", Some("8"), 7), None);
        assert_eq!(watchdog_interval_of("0", None, 7), None);
        assert_eq!(watchdog_interval_of("soon", None, 7), None);
    }
}
