//! Why the radio simulator could not start or do what it was asked.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use sn_config::SerialFraming;
use sn_transports::serial::framing::FrameError;

/// Why [`RadioSim::start`](super::RadioSim::start) or a request to a running simulator
/// failed. Each message says what is wrong and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RadioSimError {
    /// `max_frame` is out of the framing's range.
    #[error("max_frame for the {framing} framing: {error}")]
    MaxFrame {
        /// The framing.
        framing: SerialFraming,
        /// The framer's refusal, with the allowed range.
        error: FrameError,
    },
    /// `max_motes` is 0 or more than the framing can address.
    #[error(
        "max_motes {max_motes} is out of range for the {framing} framing; {hint}",
        hint = range_hint(*capacity)
    )]
    MaxMotes {
        /// The framing.
        framing: SerialFraming,
        /// What was asked for.
        max_motes: usize,
        /// The most motes the framing can address.
        capacity: usize,
    },
    /// The UDP socket for the motes could not be bound.
    #[error(
        "cannot bind the motes' UDP socket to {addr}: {error}; choose another address \
         (port 0 picks a free one, e.g. 127.0.0.1:0)"
    )]
    Udp {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// The pseudo-terminal pair (the simulated dongle) could not be opened.
    #[error(
        "cannot open a pseudo-terminal pair: {reason}; check that /dev/ptmx exists and that \
         devpts is mounted on /dev/pts"
    )]
    Pty {
        /// What the OS or the serial library said.
        reason: String,
    },
    /// The link path names no file (it is `/` or ends in `..`).
    #[error("link path {link} names no file; use a path such as /tmp/radio0", link = link.display())]
    LinkNotAFile {
        /// The link path.
        link: PathBuf,
    },
    /// The link path's directory does not exist.
    #[error(
        "cannot create the link {link}: directory {dir} does not exist; create it \
         (mkdir -p {dir}) or choose a link path in an existing directory, e.g. /tmp/radio0",
        link = link.display(),
        dir = dir.display()
    )]
    LinkDirectory {
        /// The link path.
        link: PathBuf,
        /// Its missing directory.
        dir: PathBuf,
    },
    /// Something other than a symlink is at the link path; it is not replaced.
    #[error(
        "{link} exists and is not a symlink; the simulator replaces only symlinks: remove it \
         or choose another link path",
        link = link.display()
    )]
    LinkOccupied {
        /// The link path.
        link: PathBuf,
    },
    /// The symlink could not be created.
    #[error(
        "cannot create the link {link}: {error}; check that this user may write to its \
         directory",
        link = link.display()
    )]
    Link {
        /// The link path.
        link: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// Bytes cannot be written to the line now: the dongle is unplugged, or the gateway does
    /// not read and the line's backlog is full.
    #[error("cannot write to the serial line: {reason}")]
    LineUnavailable {
        /// Which of the two.
        reason: &'static str,
    },
    /// The simulator's task has ended (it was shut down).
    #[error("the radio simulator has stopped")]
    Stopped,
}

/// What to use instead of an out-of-range `max_motes`.
fn range_hint(capacity: usize) -> String {
    if capacity == 1 {
        "it carries one mote: use 1".to_owned()
    } else {
        format!("use 1 to {capacity}")
    }
}
