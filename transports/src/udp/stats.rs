//! Counters of what a link did, kept lock-free so the hot path never waits on them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a link's counters since it was bound.
///
/// Each field is read on its own, so a snapshot taken while traffic flows may be a few
/// datagrams apart between fields; that is fine for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Datagrams handed to the caller by `recv` (oversize ones are not included).
    pub datagrams_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Datagrams the OS accepted for sending, discovery ones included.
    pub datagrams_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams longer than `max_datagram`, dropped whole.
    pub oversize_dropped: u64,
    /// Sends the OS refused.
    pub send_errors: u64,
    /// Receive errors, transient (skipped) and fatal (returned) alike.
    pub receive_errors: u64,
}

/// The live counters behind [`LinkStats`].
///
/// `Relaxed` ordering everywhere: each counter is independent and nothing is synchronised
/// through them, so there is no reason to pay for fences on every datagram.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    oversize_dropped: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
}

/// usize -> u64 never truncates on the platforms we build for; saturate rather than cast so
/// the conversion cannot wrap even in theory.
fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Counters {
    pub(crate) fn received(&self, len: usize) {
        self.datagrams_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(as_u64(len), Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, len: usize) {
        self.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(as_u64(len), Ordering::Relaxed);
    }

    pub(crate) fn oversize(&self) {
        self.oversize_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn receive_error(&self) {
        self.receive_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkStats {
        LinkStats {
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            oversize_dropped: self.oversize_dropped.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
        }
    }
}

/// Where the kernel counts this socket's drops: its row in /proc/net/udp or /proc/net/udp6,
/// found by the socket's inode.
///
/// The `drops` column counts every datagram the kernel discarded for the socket after it
/// arrived: mostly a full receive buffer (the application did not read fast enough), also bad
/// checksums. Nothing the link's own counters can see, since those datagrams never reach
/// `recv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelCounters {
    inode: u64,
    ipv6: bool,
}

/// The socket tables of this process's network namespace.
const PROC_UDP: &str = "/proc/self/net/udp";
const PROC_UDP6: &str = "/proc/self/net/udp6";

impl KernelCounters {
    /// Finds the socket's inode through /proc/self/fd (a link reading `socket:[INODE]`);
    /// `None` where there is no /proc.
    #[cfg(unix)]
    pub(crate) fn find(socket: &impl std::os::fd::AsRawFd, ipv6: bool) -> Option<Self> {
        let fd = socket.as_raw_fd();
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let inode = parse_socket_inode(target.to_str()?)?;
        Some(KernelCounters { inode, ipv6 })
    }

    /// Without /proc there is nothing to read.
    #[cfg(not(unix))]
    pub(crate) fn find<T>(_socket: &T, _ipv6: bool) -> Option<Self> {
        None
    }

    /// Datagrams the kernel has dropped for the socket since it was created; `None` when the
    /// tables cannot be read or no longer list the socket.
    ///
    /// Reads the table of the socket's family first (an IPv6 socket is listed in udp6) and
    /// falls back to the other. Each call reads the whole table (one line per UDP socket on
    /// the host), so call it now and then, not per datagram.
    pub(crate) fn drops(&self) -> Option<u64> {
        let files = if self.ipv6 {
            [PROC_UDP6, PROC_UDP]
        } else {
            [PROC_UDP, PROC_UDP6]
        };
        files.iter().find_map(|file| {
            let table = std::fs::read_to_string(file).ok()?;
            drops_of(&table, self.inode)
        })
    }
}

/// `socket:[12345]` → 12345.
pub(crate) fn parse_socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `drops` column of the row for `inode` in a /proc/net/udp table. The columns are
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
/// ref pointer drops`.
pub(crate) fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let row_inode: u64 = fields.nth(9)?.parse().ok()?;
        if row_inode != inode {
            return None;
        }
        // After the inode: ref, pointer, drops.
        fields.nth(2)?.parse().ok()
    })
}
