//! A mosquitto with a configuration of the test's own (TLS, passwords, ACLs) on one listener,
//! plus a plain anonymous listener for the test's own clients.

use crate::free_port;
use crate::mosquitto::{binary, log_len, wait_listening, StartFailure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
    /// A broker whose second listener takes only `users` (name, password) and gives each the
    /// rights `acl` (mosquitto's acl_file syntax) states; in a new temp dir named for `name`.
    pub async fn with_logins(name: &str, users: &[(&str, &str)], acl: &str) -> CustomBroker {
        let dir = temp_dir(name);
        for (i, (user, password)) in users.iter().enumerate() {
            // The first call creates the password file.
            let create: &[&str] = if i == 0 { &["-c"] } else { &[] };
            let mut args = vec!["-b"];
            args.extend_from_slice(create);
            args.extend_from_slice(&["passwd", user, password]);
            run(&dir, "mosquitto_passwd", &args);
        }
        if let Err(error) = std::fs::write(dir.join("acl"), acl) {
            panic!("cannot write {}: {error}", dir.join("acl").display());
        }
        CustomBroker::start(
            dir.clone(),
            &format!(
                "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl",
                dir = dir.display()
            ),
        )
        .await
    }

    /// Starts mosquitto in `dir` with `secure_listener`'s lines for the second listener, and
    /// waits until its own log says it listens on both ports (a connect alone would also
    /// succeed against another process on a port). When another process took one of the
    /// chosen ports first, starts again on two new ones.
    pub async fn start(dir: PathBuf, secure_listener: &str) -> CustomBroker {
        let log = dir.join("mosquitto.log");
        let mut last_error = String::new();
        for _ in 0..5 {
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
            let offset = log_len(&log);
            let mut child = Command::new(binary())
                .arg("-c")
                .arg(dir.join("mosquitto.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto not found: install it with `apt-get install mosquitto`");
            match wait_listening(&mut child, &log, offset, &[plain_port, secure_port]).await {
                Ok(()) => {
                    return CustomBroker {
                        child,
                        dir,
                        secure_port,
                        plain_port,
                    }
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    match failure {
                        StartFailure::PortTaken(error) => {
                            println!(
                                "port {plain_port} or {secure_port} was taken by another \
                                 process: new ports"
                            );
                            last_error = error;
                        }
                        StartFailure::Other(error) => panic!("mosquitto did not start: {error}"),
                    }
                }
            }
        }
        panic!(
            "mosquitto did not start: five port pairs in a row were taken; last log:\n{last_error}"
        );
    }
}

impl CustomBroker {
    /// Stops the broker (its clients' connections drop) and starts it again with the same
    /// configuration file, on the same ports, reading its password file afresh; waits until
    /// it listens again.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.dir.join("mosquitto.log");
        let offset = log_len(&log);
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto not found: install it with `apt-get install mosquitto`");
        let ports = [self.plain_port, self.secure_port];
        if let Err(failure) = wait_listening(&mut child, &log, offset, &ports).await {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto did not start again on {ports:?}: {failure:?}");
        }
        self.child = child;
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
