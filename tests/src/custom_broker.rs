//! A mosquitto with a configuration of the test's own (TLS, passwords, ACLs) on one listener,
//! plus a plain anonymous listener for the test's own clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// A mosquitto with a custom configuration (TLS, passwords), plus a plain anonymous listener
/// for the test's own subscriber.
pub struct CustomBroker {
    child: Child,
    /// Its temp directory (config, log, and whatever the test put there).
    pub dir: PathBuf,
    /// The listener with the test's own settings.
    pub secure_port: u16,
    /// An anonymous listener for the test's own clients.
    pub plain_port: u16,
}

impl CustomBroker {
    /// Starts mosquitto in `dir` with `secure_listener`'s lines for the second listener.
    pub async fn start(dir: PathBuf, secure_listener: &str) -> CustomBroker {
        let secure_port = free_port();
        let plain_port = free_port();
        let config = format!(
            "per_listener_settings true\n\
             listener {plain_port} 127.0.0.1\n\
             allow_anonymous true\n\
             listener {secure_port} 127.0.0.1\n\
             {secure_listener}\n\
             user root\n\
             log_dest file {dir}/mosquitto.log\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("write mosquitto.conf");
        let child = Command::new(
            std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into()),
        )
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto not found: install it with `apt-get install mosquitto`");
        let broker = CustomBroker {
            child,
            dir,
            secure_port,
            plain_port,
        };
        for _ in 0..200 {
            let plain = tokio::net::TcpStream::connect(("127.0.0.1", plain_port))
                .await
                .is_ok();
            let secure = tokio::net::TcpStream::connect(("127.0.0.1", secure_port))
                .await
                .is_ok();
            if plain && secure {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "mosquitto did not start; log:\n{}",
            std::fs::read_to_string(broker.dir.join("mosquitto.log")).unwrap_or_default()
        );
    }
}

impl Drop for CustomBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh temp directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sn-tests-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// Runs a helper program (mosquitto_passwd, openssl) in `dir`; fails the test with what to
/// install when it is missing.
pub fn run(dir: &Path, program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("{program} not found ({e}): install it with `apt-get install {program}`")
        });
    assert!(status.success(), "{program} {args:?} failed");
}
