//! The stable name of the simulated dongle: a symlink to the current pty slave, like a udev
//! `/dev/serial/by-id/...` link, replaced atomically when the dongle is "replugged".

use std::io;
use std::path::{Path, PathBuf};

use super::error::RadioSimError;

/// The directory `link` lives in (`.` for a bare file name).
fn directory(link: &Path) -> &Path {
    match link.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Checks, before anything is created, that `link` can be made: its directory exists and the
/// path is free or already a symlink (left by an earlier run, to be replaced).
pub(super) fn check(link: &Path) -> Result<(), RadioSimError> {
    if link.file_name().is_none() {
        return Err(RadioSimError::LinkNotAFile {
            link: link.to_path_buf(),
        });
    }
    let dir = directory(link);
    if !dir.is_dir() {
        return Err(RadioSimError::LinkDirectory {
            link: link.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    match std::fs::symlink_metadata(link) {
        Ok(meta) if !meta.file_type().is_symlink() => Err(RadioSimError::LinkOccupied {
            link: link.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// The temporary name the new symlink gets before it is renamed over `link`.
fn temporary(link: &Path) -> PathBuf {
    let name = link
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    directory(link).join(format!(".{name}.radio-sim-{}", std::process::id()))
}

/// Points `link` at `target` in one step: a symlink under a temporary name in the same
/// directory, renamed over `link`, so that whoever opens `link` finds the old device or the
/// new one, never nothing.
pub(super) fn point(link: &Path, target: &Path) -> io::Result<()> {
    let temp = temporary(link);
    // Left over by a run of this process id that was killed; not ours to keep.
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &temp)?;
    std::fs::rename(&temp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Removes `link` if it is a symlink to `target`: one that another program (or another
/// simulator) put there since is left alone.
pub(super) fn remove(link: &Path, target: &Path) {
    match std::fs::read_link(link) {
        Ok(points_to) if points_to == target => {
            if let Err(error) = std::fs::remove_file(link) {
                tracing::warn!(link = %link.display(), %error, "cannot remove the link");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("radio-sim-link-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn points_replaces_and_removes_only_its_own_link() {
        let dir = scratch("own");
        let link = dir.join("radio0");
        check(&link).unwrap();
        point(&link, Path::new("/dev/pts/1000")).unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/dev/pts/1000")
        );
        // An old link is fine and replaced.
        check(&link).unwrap();
        point(&link, Path::new("/dev/pts/1001")).unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/dev/pts/1001")
        );
        assert!(!temporary(&link).exists());
        remove(&link, Path::new("/dev/pts/1000"));
        assert!(std::fs::symlink_metadata(&link).is_ok());
        remove(&link, Path::new("/dev/pts/1001"));
        assert!(std::fs::symlink_metadata(&link).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_missing_directory_and_a_real_file() {
        let dir = scratch("refuse");
        let error = check(&dir.join("nowhere/radio0")).unwrap_err();
        assert!(matches!(error, RadioSimError::LinkDirectory { .. }));
        assert!(error.to_string().contains("mkdir -p"), "{error}");
        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            check(&file),
            Err(RadioSimError::LinkOccupied { .. })
        ));
        assert!(matches!(
            check(Path::new("/")),
            Err(RadioSimError::LinkNotAFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
