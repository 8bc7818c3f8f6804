//! `mqtt-sn-gateway ports` and `check-config` with serial links, run as a user would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::path::PathBuf;
use std::process::Command;

const GATEWAY: &str = env!("CARGO_BIN_EXE_mqtt-sn-gateway");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ports-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ports_lists_the_machine_and_names_configured_links_that_match_nothing() {
    let dir = temp_dir("list");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[[serial]]\nusb = \"ffff:fffe\"\nserial_number = \"NOPE\"\nframing = \"xbee\"\n\
         [[serial]]\ndevice = \"/dev/does-not-exist-radio\"\nframing = \"cobs\"\n",
    )
    .unwrap();
    let output = Command::new(GATEWAY)
        .args(["ports", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("serial[0] (usb ffff:fffe serial NOPE, xbee): no such port plugged in now"),
        "{stdout}"
    );
    assert!(
        stdout.contains("serial[1] (/dev/does-not-exist-radio, cobs): no such port plugged in now"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A configured device that exists but is no USB adapter (here a pty from socat, as a
/// built-in UART like /dev/ttyAMA0 would be) is reported as there, not as unplugged: the
/// gateway opens it.
#[test]
fn a_configured_pty_is_reported_as_there_not_as_unplugged() {
    let dir = temp_dir("pty");
    let (a, b) = (dir.join("radio-a"), dir.join("radio-b"));
    let mut socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("socat not found ({e}): apt-get install socat"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !a.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socat made no pty at {}",
            a.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[serial]]\ndevice = \"{}\"\nframing = \"kiss\"\n\
             [[serial]]\ndevice = \"{}\"\nframing = \"cobs\"\n",
            a.display(),
            dir.join("no-such-radio").display()
        ),
    )
    .unwrap();
    let output = Command::new(GATEWAY)
        .args(["ports", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = socat.kill();
    let _ = socat.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let pty = format!(
        "serial[0] ({path}, kiss): {path} exists, not a USB serial adapter (e.g. a built-in \
         UART or a pty); the gateway opens it",
        path = a.display()
    );
    assert!(stdout.contains(&pty), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "serial[1] ({}, cobs): no such port plugged in now",
            dir.join("no-such-radio").display()
        )),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ports_without_a_config_says_how_to_see_the_links() {
    let output = Command::new(GATEWAY).arg("ports").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("pass --config FILE to see which [[serial]] link takes each port"),
        "{stdout}"
    );
}

#[test]
fn check_config_shows_serial_links_and_a_gateway_with_a_missing_device_fails_at_start() {
    let dir = temp_dir("check");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "udp = []\n[[serial]]\ndevice = \"/dev/does-not-exist-radio\"\nframing = \"lora\"\nbaud = 115200\n",
    )
    .unwrap();
    let output = Command::new(GATEWAY)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("serial /dev/does-not-exist-radio (cobs, 115200 baud, max_frame 240)"),
        "{stdout}"
    );

    // Starting it: the device is not there, and the error says which and what to check.
    std::fs::write(
        &config,
        "udp = []\n[[serial]]\ndevice = \"/dev/does-not-exist-radio\"\nframing = \"lora\"\n\
         [store]\nenabled = false\n[embedded_broker]\nlisten = \"off\"\n",
    )
    .unwrap();
    let output = Command::new(GATEWAY)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/does-not-exist-radio"), "{stderr}");
    assert!(stderr.contains("ls /dev/serial/by-id"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
