//! What the DTLS tests of sn-transports and of the gateway (tests/tests/dtls.rs, which
//! includes this file) share: the tools they need, temporary directories, and a throwaway PKI
//! made with the openssl CLI, as docs/dtls.md makes one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Fails the test, naming the package, when the `openssl` command is missing.
pub(crate) fn require_openssl() {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the `openssl` command is missing: install the Debian package `openssl` \
         (apt-get install openssl)"
    );
}

/// Fails the test, naming the package, when python-mbedtls is missing.
pub(crate) fn require_mbedtls() {
    let ok = Command::new("python3")
        .args(["-c", "import mbedtls"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 cannot `import mbedtls`: install it with `pip install python-mbedtls` \
         (python3 and python3-pip from Debian)"
    );
}

/// A directory of the test's own, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// A new empty directory named for `tag`.
    pub(crate) fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("sn-dtls-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    /// A file in it.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the openssl CLI in `dir`; fails the test with its stderr when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway P-256 CA, a server certificate, a client `mote-42` signed by the CA, and a
/// self-signed `rogue` the CA never saw.
pub(crate) fn make_pki(dir: &Path) {
    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ];
    let key = |name: &str| {
        let mut a = ec.to_vec();
        let file = format!("{name}.key");
        a.push(&file);
        openssl(dir, &a);
    };
    key("ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:mote-42.example\n",
    )
    .unwrap();
    for (name, ext) in [("server", "server.ext"), ("mote-42", "client.ext")] {
        key(name);
        let csr = format!("{name}.csr");
        let keyf = format!("{name}.key");
        let pem = format!("{name}.pem");
        let subj = format!("/CN={name}");
        openssl(
            dir,
            &["req", "-new", "-key", &keyf, "-subj", &subj, "-out", &csr],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                ext,
                "-out",
                &pem,
            ],
        );
    }
    // Signed by the CA, but expired yesterday (notAfter before notBefore): refused on the
    // date alone.
    key("expired");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "expired.key",
            "-subj",
            "/CN=expired",
            "-out",
            "expired.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "expired.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "-1",
            "-sha256",
            "-extfile",
            "client.ext",
            "-out",
            "expired.pem",
        ],
    );
    key("rogue");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "rogue.key",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=rogue",
            "-out",
            "rogue.pem",
        ],
    );
}
