//! What Linux tells about a process and about UDP sockets: CPU time and memory of the gateway
//! (and optionally the broker) from /proc/PID/stat and /proc/PID/status, receive-queue drops
//! from /proc/net/udp (by port, and by the sockets a process holds), and the open-file limit
//! from /proc/self/limits.

use std::io;
use std::time::Instant;

/// Clock ticks per second of the utime/stime fields (USER_HZ). Linux fixes it at 100 on every
/// architecture the gateway targets; reading it needs sysconf(_SC_CLK_TCK), i.e. libc.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    /// When it was read.
    pub(crate) at: Instant,
    /// User + system CPU time so far, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// Resident set size, KiB (VmRSS).
    pub(crate) rss_kib: u64,
    /// Peak resident set size since the process started, KiB (VmHWM).
    pub(crate) hwm_kib: u64,
}

impl ProcSample {
    /// Reads /proc/PID/stat and /proc/PID/status.
    pub(crate) fn read(pid: u32) -> io::Result<ProcSample> {
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let cpu_ticks = parse_cpu_ticks(&stat).ok_or_else(|| bad("stat", pid))?;
        let rss_kib = status_kib(&status, "VmRSS:").ok_or_else(|| bad("status", pid))?;
        let hwm_kib = status_kib(&status, "VmHWM:").unwrap_or(rss_kib);
        Ok(ProcSample {
            at,
            cpu_ticks,
            rss_kib,
            hwm_kib,
        })
    }

    /// CPU use between `earlier` and `self`, in percent of one core (200 % = two cores busy).
    pub(crate) fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        let ticks = self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64;
        ticks / TICKS_PER_SECOND / wall * 100.0
    }
}

fn bad(file: &str, pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected format of /proc/{pid}/{file}"),
    )
}

/// utime + stime: fields 14 and 15 of /proc/PID/stat. The command name (field 2) is in
/// parentheses and may contain spaces, so counting starts after the last ')'.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   1234 kB` line of /proc/PID/status.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy and total time of all CPUs so far, in clock ticks, from the first line of /proc/stat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineSample {
    /// Ticks not idle (iowait counts as idle).
    pub(crate) busy: u64,
    /// All ticks.
    pub(crate) total: u64,
    /// Number of CPUs (cpuN lines).
    pub(crate) cpus: u64,
}

impl MachineSample {
    /// Reads /proc/stat.
    pub(crate) fn read() -> Option<MachineSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let fields: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let cpus = lines
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count() as u64;
        Some(MachineSample {
            busy: total.saturating_sub(idle),
            total,
            cpus: cpus.max(1),
        })
    }

    /// CPU use of the whole machine between `earlier` and `self`, in percent of one core
    /// (200 % = both cores of a 2-core machine busy).
    pub(crate) fn busy_percent_since(&self, earlier: &MachineSample) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy);
        busy as f64 / total as f64 * 100.0 * self.cpus as f64
    }
}

/// The host's UDP counters from /proc/net/snmp (every socket, both directions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UdpCounters {
    /// Datagrams dropped because a receive buffer was full.
    pub(crate) rcvbuf_errors: u64,
    /// Datagrams not sent because a send buffer was full.
    pub(crate) sndbuf_errors: u64,
    /// Datagrams to a port nobody listens on.
    pub(crate) no_ports: u64,
    /// Other receive errors (includes the buffer drops).
    pub(crate) in_errors: u64,
}

impl UdpCounters {
    /// Reads the `Udp:` lines of /proc/net/snmp (a header line, then a value line).
    pub(crate) fn read() -> UdpCounters {
        let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
            return UdpCounters::default();
        };
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            return UdpCounters::default();
        };
        let field = |name: &str| -> u64 {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        UdpCounters {
            rcvbuf_errors: field("RcvbufErrors"),
            sndbuf_errors: field("SndbufErrors"),
            no_ports: field("NoPorts"),
            in_errors: field("InErrors"),
        }
    }

    /// The increase from `earlier` to `self`.
    pub(crate) fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
            no_ports: self.no_ports.saturating_sub(earlier.no_ports),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
        }
    }
}

/// Receive-side drop counters of the UDP sockets on this host (network namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UdpDrops {
    /// Datagrams dropped by the socket bound to the gateway's port (full receive buffer).
    pub(crate) gateway: u64,
    /// Bytes waiting in the gateway socket's receive queue when read.
    pub(crate) gateway_queue_bytes: u64,
    /// Drops of the sockets bound to the motes' port (the tool's motes).
    pub(crate) motes: u64,
    /// Drops of every UDP socket the gateway process holds (found by pid, whatever their
    /// ports); `None` without a pid or when its /proc entries cannot be read.
    pub(crate) gateway_process: Option<u64>,
}

/// Sums the `drops` column of /proc/net/udp and /proc/net/udp6 for the socket on
/// `gateway_port` and for the sockets on `mote_port` (0: none), and for the sockets of
/// process `gateway_pid`. Missing files count as zero (e.g. IPv6 disabled).
pub(crate) fn udp_drops(gateway_port: u16, mote_port: u16, gateway_pid: Option<u32>) -> UdpDrops {
    let mut drops = UdpDrops {
        gateway_process: gateway_pid.and_then(process_udp_drops),
        ..UdpDrops::default()
    };
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let Some(row) = parse_udp_row(line) else {
                continue;
            };
            if row.port == gateway_port {
                drops.gateway += row.drops;
                drops.gateway_queue_bytes += row.rx_queue;
            } else if mote_port != 0 && row.port == mote_port {
                drops.motes += row.drops;
            }
        }
    }
    drops
}

/// The datagrams the kernel dropped at the UDP sockets process `pid` holds, since each was
/// created: the `drops` column of the rows of /proc/PID/net/udp and udp6 (the process's
/// network namespace) whose inode is one of the process's sockets (/proc/PID/fd/* links
/// reading `socket:[INODE]`). `None` when the process's descriptors or both tables cannot be
/// read (no such process, another user's process, no /proc).
pub(crate) fn process_udp_drops(pid: u32) -> Option<u64> {
    let sockets: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            parse_socket_inode(target.to_str()?)
        })
        .collect();
    let mut drops = 0;
    let mut read_any = false;
    for file in ["udp", "udp6"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        read_any = true;
        drops += table
            .lines()
            .skip(1)
            .filter_map(parse_udp_row)
            .filter(|row| sockets.contains(&row.inode))
            .map(|row| row.drops)
            .sum::<u64>();
    }
    read_any.then_some(drops)
}

/// `socket:[12345]` → 12345.
fn parse_socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The columns of one /proc/net/udp row that matter here.
struct UdpRow {
    port: u16,
    rx_queue: u64,
    inode: u64,
    drops: u64,
}

/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
/// ref pointer drops`, addresses as HEXIP:HEXPORT.
fn parse_udp_row(line: &str) -> Option<UdpRow> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let queues = fields.nth(2)?;
    let rx_queue = u64::from_str_radix(queues.rsplit(':').next()?, 16).ok()?;
    // After tx_queue:rx_queue: tr:tm->when, retrnsmt, uid, timeout, inode.
    let inode = fields.nth(4)?.parse().ok()?;
    let drops = fields.last()?.parse().ok()?;
    Some(UdpRow {
        port,
        rx_queue,
        inode,
        drops,
    })
}

/// The soft limit on open files of this process, from /proc/self/limits.
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let stat = "1234 (mqtt sn) gw) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn status_and_udp_rows() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        let row = "  123: 0100007F:4A05 00000000:0000 07 00000000:00000300 00:00000000 00000000     0        0 9999 2 0000000000000000 17";
        let parsed = parse_udp_row(row);
        assert!(parsed.is_some_and(|r| r.port == 0x4A05
            && r.rx_queue == 0x300
            && r.inode == 9999
            && r.drops == 17));
        assert_eq!(parse_socket_inode("socket:[9999]"), Some(9999));
        assert_eq!(parse_socket_inode("anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn reads_its_own_udp_sockets() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0");
        assert!(socket.is_ok());
        assert_eq!(process_udp_drops(std::process::id()), Some(0));
        assert_eq!(process_udp_drops(u32::MAX), None);
    }

    /// The `Udp:` value of `name` in /proc/net/snmp, read here independently of `read()`.
    fn snmp_udp(name: &str) -> u64 {
        let snmp = std::fs::read_to_string("/proc/net/snmp");
        assert!(snmp.is_ok(), "/proc/net/snmp: {snmp:?}");
        let snmp = snmp.unwrap_or_default();
        let mut rows = snmp
            .lines()
            .filter(|l| l.starts_with("Udp: "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>());
        let (names, values) = (
            rows.next().unwrap_or_default(),
            rows.next().unwrap_or_default(),
        );
        let column = names.iter().position(|n| *n == name);
        assert!(column.is_some(), "no {name} in {names:?}");
        let value = column
            .and_then(|c| values.get(c))
            .and_then(|v| v.parse().ok());
        assert!(value.is_some(), "{name}: {values:?}");
        value.unwrap_or_default()
    }

    #[test]
    fn reads_the_udp_counters() {
        // A port that was just free: datagrams sent to it reach no socket, which the kernel
        // counts in NoPorts (host-wide, so other traffic may add more, never less).
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr());
        assert!(closed.is_ok(), "{closed:?}");
        let Ok(closed) = closed else { return };
        let sender = std::net::UdpSocket::bind("127.0.0.1:0");
        assert!(sender.is_ok(), "{sender:?}");
        let Ok(sender) = sender else { return };
        const SENT: u64 = 5;

        let before = UdpCounters::read();
        // The same counters read here independently, between the two read()s.
        let names = ["NoPorts", "RcvbufErrors", "SndbufErrors", "InErrors"];
        let raw: Vec<u64> = names.iter().map(|n| snmp_udp(n)).collect();
        for _ in 0..SENT {
            // A send may report the ICMP "port unreachable" of the previous datagram; it
            // still went out (the count is checked below).
            let _ = sender.send_to(b"nobody listens", closed);
        }
        // Loopback delivery happens within send_to: the counter has moved by now.
        let after = UdpCounters::read();

        // Monotone counters: each read() field brackets the raw value read between them, so
        // every field comes from its own column.
        let fields = |c: &UdpCounters| [c.no_ports, c.rcvbuf_errors, c.sndbuf_errors, c.in_errors];
        for ((name, raw), (b, a)) in names
            .iter()
            .zip(&raw)
            .zip(fields(&before).into_iter().zip(fields(&after)))
        {
            assert!(b <= *raw && *raw <= a, "{name}: {b} <= {raw} <= {a}");
        }
        // The datagrams to the closed port show in the difference.
        let moved = after.since(&before);
        assert!(moved.no_ports >= SENT, "{moved:?}");
        assert_eq!(before.since(&after).no_ports, 0, "since() saturates");
    }

    #[test]
    fn reads_the_machine() {
        let a = MachineSample::read();
        assert!(a.is_some_and(|a| a.total > 0 && a.cpus >= 1));
    }

    #[test]
    fn reads_itself() {
        let sample = ProcSample::read(std::process::id());
        assert!(sample.is_ok_and(|s| s.rss_kib > 0));
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
