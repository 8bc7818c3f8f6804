//! What a serial link did since it was opened.

/// A snapshot of a serial link's counters since it was opened.
///
/// The framer keeps finer counters of its own (checksum errors, garbage bytes, ...); see
/// [`SerialLink::framer`](super::SerialLink::framer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SerialLinkStats {
    /// Frames decoded and handed to the caller (datagrams and transmit statuses).
    pub frames_received: u64,
    /// Frames written to the device whole.
    pub frames_sent: u64,
    /// Received frames the framer dropped (bad checksum, too long, malformed).
    pub framing_errors: u64,
    /// Datagrams refused by `send` for being too large for one frame; never split.
    pub oversize_refused: u64,
    /// Sends that failed for any other reason: device gone, write error, write timeout,
    /// datagram not representable in the framing.
    pub send_errors: u64,
    /// Times the device went away (end of file or an I/O error on it).
    pub disconnects: u64,
    /// Times the device was reopened after going away.
    pub reopens: u64,
    /// Reopen attempts that failed (device still absent); each waited one backoff step.
    pub failed_reopens: u64,
}

impl SerialLinkStats {
    pub(super) fn bump(counter: &mut u64) {
        *counter = counter.saturating_add(1);
    }
}
