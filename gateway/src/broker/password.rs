//! Password files, read at every connection to the broker: a password changed in its file
//! (and announced with SIGHUP, which checks the file) takes effect at the next (re)connection,
//! without dropping the connection that works now.

use std::path::Path;

use tracing::warn;

/// A password file's content, without the trailing newline an editor adds.
pub(crate) fn read_password(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

/// The password a new connection logs in with: the content of `password_file` now, when one
/// is configured, else `known` (the inline password). A file that cannot be read now (being
/// rewritten, removed by mistake) leaves `known`, the content read before, with a warning
/// naming the option to fix.
pub(crate) fn current(
    password_file: Option<&Path>,
    known: Option<&String>,
    option: &str,
) -> Option<String> {
    let Some(path) = password_file else {
        return known.cloned();
    };
    match read_password(path) {
        Ok(password) => Some(password),
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read {option} again: connecting with the password read before; fix the file");
            known.cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_is_read_at_each_call_and_a_missing_one_keeps_the_known_password() {
        let dir = std::env::temp_dir().join(format!("sn-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.pass");
        std::fs::write(&path, "first\n").unwrap();
        let known = "first".to_string();
        assert_eq!(
            current(Some(&path), Some(&known), "broker.password_file").as_deref(),
            Some("first")
        );
        std::fs::write(&path, "second\r\n").unwrap();
        assert_eq!(
            current(Some(&path), Some(&known), "broker.password_file").as_deref(),
            Some("second")
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            current(Some(&path), Some(&known), "broker.password_file").as_deref(),
            Some("first")
        );
        assert_eq!(current(None, Some(&known), "x").as_deref(), Some("first"));
        assert_eq!(current(None, None, "x"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
