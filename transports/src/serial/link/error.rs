//! Why a serial link could not be opened or a datagram not sent.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use sn_config::SerialDevice;

use crate::serial::framing::FrameError;
use crate::serial::ports::ResolveError;

/// Why [`SerialLink::open`](super::SerialLink::open) or
/// [`SerialLink::send`](super::SerialLink::send) failed.
///
/// Every message names the device (its path, and the configured selector when that is not the
/// path), so the binary can print it as it is. A failed send leaves the link usable: the
/// caller counts the error and carries on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerialLinkError {
    /// The configured device was not found among the serial ports present: no port or
    /// several match the USB identity, or the ports could not be listed. The message names
    /// the selector and the ports seen.
    #[error("{error}")]
    Resolve {
        /// What the lookup found.
        error: ResolveError,
    },
    /// The device could not be opened or configured (8N1, no flow control, the baud rate).
    #[error(
        "cannot open serial device {device}: {error}; check that the device is plugged in, \
         that the path is right (ls /dev/serial/by-id) and that this user may open it (group \
         dialout)",
        device = opened(device, path)
    )]
    Open {
        /// The configured selector.
        device: SerialDevice,
        /// The device path it resolved to.
        path: PathBuf,
        /// What the serial library said.
        error: tokio_serial::Error,
    },
    /// The framing refused the datagram (too large for one frame, or not representable); it
    /// was not sent. A too-large datagram is counted in
    /// [`SerialLinkStats::oversize_refused`](super::SerialLinkStats::oversize_refused).
    #[error("serial {path}: {error}", path = path.display())]
    Refused {
        /// The device path.
        path: PathBuf,
        /// What the framing said.
        error: FrameError,
    },
    /// The device is gone (unplugged) and not reopened yet; the datagram was not sent. The
    /// link keeps trying to reopen it while [`recv`](super::SerialLink::recv) is driven.
    #[error(
        "serial device {path} is gone; datagram not sent, reopening with backoff",
        path = path.display()
    )]
    Disconnected {
        /// The device path.
        path: PathBuf,
    },
    /// Writing to the device failed. When the error means the device went away, the link
    /// has closed it and reopens it with backoff.
    #[error("cannot write to serial device {path}: {error}", path = path.display())]
    Write {
        /// The device path.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The device did not take the frame within the write timeout (flow stalled, radio
    /// buffer full); part of the frame may have been written, which the peer's decoder drops.
    #[error(
        "serial device {path} took no frame for {timeout:?}; datagram not sent",
        path = path.display()
    )]
    WriteTimedOut {
        /// The device path.
        path: PathBuf,
        /// The configured write timeout.
        timeout: Duration,
    },
}

/// The path, followed by the selector in parentheses when the selector is not that path:
/// `/dev/ttyUSB1 (usb 0403:6015 serial A50285BI)`.
fn opened(device: &SerialDevice, path: &std::path::Path) -> String {
    match device {
        SerialDevice::Path(configured) if configured == path => path.display().to_string(),
        _ => format!("{} ({device})", path.display()),
    }
}
