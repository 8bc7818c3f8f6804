//! The core stays sans-I/O because its package cannot reach an async runtime, an MQTT client,
//! the embedded broker, the store or serial I/O: this checks the resolved dependency tree, so
//! adding one of them (directly or through another crate) fails here.
#![allow(clippy::panic)]

use std::process::Command;

/// Crates that do I/O or own a clock and must never be under the core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "rumqttc",
    "rmqtt",
    "redb",
    "serialport",
    "tokio-serial",
    "mio",
];

#[test]
fn the_core_depends_on_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "sn-core",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{cargo} tree`: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`cargo tree -p sn-core` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(names.contains(&"sn-codec"), "unexpected tree:\n{stdout}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|c| names.contains(c)).collect();
    assert!(found.is_empty(), "sn-core depends on {found:?}:\n{stdout}");
}
