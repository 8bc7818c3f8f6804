//! The workspace's binaries, for tests that run them as a user would.
//!
//! Cargo gives a test the path of its own package's binaries only (`CARGO_BIN_EXE_*`). These
//! tests run the gateway and the `mqtt-sn` tool, from two packages, so each binary is built
//! (or found up to date) with the cargo that runs the test, in the same target directory and
//! profile, once per test process.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace's Cargo.toml.
pub fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")
}

/// A `cargo` command in the user's environment: without the variables cargo sets for the
/// running test (`CARGO_PKG_NAME`, `OUT_DIR`, ...). Build scripts track some of them (ring's
/// does), so with them a nested cargo would rebuild instead of finding its work done.
pub fn cargo() -> Command {
    let cargo: OsString = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_CFG_",
            "CARGO_TARGET_TMPDIR",
            "CARGO_PRIMARY_PACKAGE",
            "OUT_DIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// The directory of the running test's profile (`target/debug`), from its own path
/// (`target/debug/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

/// The binary `bin` of workspace package `package`, built with the running test's profile
/// into its target directory (a no-op when it is up to date). Panics, saying why, if it
/// cannot be built.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let profile = profile_dir();
    let target = profile.parent().expect("the target directory");
    let mut build = cargo();
    build
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--manifest-path")
        .arg(workspace_manifest())
        .env("CARGO_TARGET_DIR", target);
    if profile.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build {bin}: {error}"));
    assert!(
        status.success(),
        "building {bin} (-p {package}) failed: {status}"
    );
    let path = profile.join(bin);
    assert!(path.exists(), "no {bin} binary at {}", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}
