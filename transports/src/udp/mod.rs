//! The UDP link: one bound socket, IPv4 or IPv6, with optional broadcast or multicast
//! discovery.
//!
//! All methods take `&self`, so the runtime can hold one `Arc<UdpLink>` and receive in one
//! task while sending from others.

mod batch;
mod discovery;
mod error;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod mmsg;
mod socket;
mod stats;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use sn_config::UdpConfig;
use socket2::SockRef;

pub use batch::RecvBatch;
use discovery::{Discovery, DiscoveryPlan};
pub use error::UdpLinkError;
pub use stats::LinkStats;
use stats::{Counters, KernelCounters};

/// The largest UDP payload there can be (the IPv4/IPv6 length fields are 16 bits). A
/// `max_datagram` above it can never be exceeded, so buffers need not be larger.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// What one UDP link runs with: its `[[udp]]` options as the configuration defines them
/// ([`UdpConfig`], the one place each option, its rules and its default are written), plus
/// the datagram size limit, which is no `[[udp]]` option: the gateway gives the core's
/// `max_packet_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpLinkConfig {
    /// Bind address, discovery address, multicast TTL and loop, socket receive buffer.
    pub options: UdpConfig,
    /// Datagrams longer than this are dropped whole and counted, never truncated.
    pub max_datagram: usize,
}

/// One bound UDP socket carrying MQTT-SN datagrams.
#[derive(Debug)]
pub struct UdpLink {
    socket: tokio::net::UdpSocket,
    name: String,
    max_datagram: usize,
    discovery: Option<Discovery>,
    counters: Counters,
    /// The socket's row in /proc/net/udp*, found at bind; `None` without /proc.
    kernel: Option<KernelCounters>,
}

impl UdpLink {
    /// Creates and binds the socket described by `config`, joining the discovery group if
    /// there is one. Must be called within a tokio runtime.
    ///
    /// The socket gets IPV6_V6ONLY (for IPv6) and asks for a receive buffer (SO_RCVBUF) of
    /// `recv_buffer` bytes. What the kernel granted is
    /// [`socket_recv_buffer`](Self::socket_recv_buffer); when it is less than asked for
    /// (capped by `net.core.rmem_max`), an info line says so. It does not get SO_REUSEADDR,
    /// so a second gateway on the same port fails here with [`UdpLinkError::AddressInUse`]
    /// instead of silently sharing the traffic.
    pub async fn bind(config: UdpLinkConfig) -> Result<UdpLink, UdpLinkError> {
        Self::bind_with_interface(config, None).await
    }

    /// [`bind`](Self::bind), with the IPv4 multicast interface forced; tests use it to keep
    /// multicast on the loopback interface while bound to `0.0.0.0`.
    pub(crate) async fn bind_with_interface(
        config: UdpLinkConfig,
        interface_v4: Option<Ipv4Addr>,
    ) -> Result<UdpLink, UdpLinkError> {
        let UdpLinkConfig {
            options,
            max_datagram,
        } = config;
        let recv_buffer = usize::try_from(options.recv_buffer).unwrap_or(usize::MAX);
        let bind = options.bind;
        let invalid = |reason: String| UdpLinkError::Config { addr: bind, reason };
        if max_datagram == 0 {
            return Err(invalid(
                "max_datagram is 0, which would drop every datagram; give the largest \
                 datagram to accept in bytes"
                    .to_owned(),
            ));
        }
        if options.multicast_ttl > 255 {
            return Err(invalid(format!(
                "multicast_ttl {} is out of range; use 0..=255 (1 = this network only)",
                options.multicast_ttl
            )));
        }
        let plan = options
            .discovery
            .map(|d| DiscoveryPlan::new(bind, d, interface_v4))
            .transpose()?;

        let std_socket = socket::open(
            bind,
            plan,
            options.multicast_ttl,
            options.multicast_loop,
            recv_buffer,
        )?;
        let kernel = KernelCounters::find(&std_socket, bind.is_ipv6());
        let socket =
            tokio::net::UdpSocket::from_std(std_socket).map_err(|error| UdpLinkError::Socket {
                addr: bind,
                step: "register the socket with the tokio runtime",
                error,
            })?;
        // The name shows the real port when the config asked for port 0.
        let local = socket.local_addr().unwrap_or(bind);
        let name = format!("udp:{local}");
        tracing::debug!(link = %name, discovery = ?plan, "UDP link bound");
        if let Ok(granted) = SockRef::from(&socket).recv_buffer_size() {
            if recv_buffer_capped(recv_buffer, granted) {
                tracing::info!(
                    link = %name, requested = recv_buffer, granted,
                    "socket receive buffer smaller than asked for: the kernel caps it at \
                     net.core.rmem_max (sysctl); raise that to absorb larger bursts"
                );
            }
        }
        Ok(UdpLink {
            socket,
            name,
            max_datagram,
            discovery: plan.map(|p| Discovery::new(p, options.multicast_ttl)),
            counters: Counters::default(),
            kernel,
        })
    }

    /// The socket's receive buffer (SO_RCVBUF) as the kernel reports it. Linux reports twice
    /// the size granted (the other half is for its bookkeeping), capped at twice
    /// `net.core.rmem_max`.
    pub fn socket_recv_buffer(&self) -> io::Result<usize> {
        SockRef::from(&self.socket).recv_buffer_size()
    }

    /// Datagrams the kernel dropped for this socket since it was bound, mostly because its
    /// receive buffer was full: the gateway did not read fast enough. These never reach
    /// [`recv`](Self::recv), so [`stats`](Self::stats) cannot count them.
    ///
    /// Read from the socket's row in /proc/net/udp (or udp6) on each call, which costs a read
    /// of the whole table (one line per UDP socket on the host): call it now and then (once a
    /// minute), not per datagram. `None` where /proc is not available. The kernel keeps the
    /// count in 32 bits, so it wraps after 2^32 drops.
    pub fn kernel_drops(&self) -> Option<u64> {
        self.kernel.as_ref()?.drops()
    }

    /// The address the socket is bound to (with the real port if the config said 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The smallest buffer [`recv`](Self::recv) accepts: one byte more than the largest
    /// datagram we keep, so a longer one shows up as too long instead of being cut short.
    pub fn recv_buffer_len(&self) -> usize {
        self.max_datagram.min(MAX_UDP_PAYLOAD) + 1
    }

    /// Allocates a buffer of [`recv_buffer_len`](Self::recv_buffer_len) bytes, to be made
    /// once per receive loop and reused for every datagram.
    pub fn recv_buffer(&self) -> Vec<u8> {
        vec![0; self.recv_buffer_len()]
    }

    /// Waits for the next datagram of at most `max_datagram` bytes and returns its length
    /// (the bytes are at the start of `buf`) and its sender.
    ///
    /// `buf` must be at least [`recv_buffer_len`](Self::recv_buffer_len) long (see
    /// [`recv_buffer`](Self::recv_buffer)); a shorter one is refused with
    /// `InvalidInput`, because the OS truncates silently and an oversize datagram would then
    /// look like a valid one.
    ///
    /// Oversize datagrams are counted, logged at debug level with their sender, and skipped.
    /// Transient errors (an ICMP port unreachable from an earlier send, reported by some
    /// systems on the next receive; an interrupted call) are counted, logged and skipped too;
    /// only an error that means the socket itself is broken is returned.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if buf.len() < self.recv_buffer_len() {
            return Err(self.buffer_too_small("receive buffer", buf.len()));
        }
        loop {
            match self.socket.recv_from(buf).await {
                Ok((len, from)) => {
                    if self.keep_received(len, from) {
                        return Ok((len, from));
                    }
                }
                Err(error) => self.skip_receive_error(error)?,
            }
        }
    }

    /// Counts a received datagram; false (counted and logged as oversize) when it is longer
    /// than `max_datagram` and must be dropped.
    fn keep_received(&self, len: usize, from: SocketAddr) -> bool {
        if len > self.max_datagram {
            self.counters.oversize();
            tracing::debug!(
                link = %self.name, %from, len, max = self.max_datagram,
                "oversize datagram dropped"
            );
            return false;
        }
        self.counters.received(len);
        true
    }

    /// Counts a receive error; Ok (logged, to be skipped) when it concerns one datagram, the
    /// error itself when the socket is broken.
    fn skip_receive_error(&self, error: io::Error) -> io::Result<()> {
        self.counters.receive_error();
        if !is_transient(&error) {
            return Err(error);
        }
        tracing::debug!(link = %self.name, %error, "receive error skipped");
        Ok(())
    }

    /// The refusal of a receive buffer (or slot) too small to tell an oversize datagram.
    fn buffer_too_small(&self, what: &str, len: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: {what} of {len} bytes is too small; it must be at least {} \
                 (max_datagram + 1)",
                self.name,
                self.recv_buffer_len()
            ),
        )
    }

    /// Sends one datagram to `to`. Errors are counted and returned; the link stays usable.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        let result = self.socket.send_to(datagram, to).await;
        self.count_send(result, to)
    }

    /// Sends one datagram to the discovery address; `Ok(false)` when discovery is off.
    ///
    /// `radius` is the MQTT-SN broadcast radius: 0 means "all" (the configured TTL), any
    /// other value caps the multicast TTL / hop limit for this send only. A broadcast is not
    /// capped: routers never forward it, so it already reaches only the local network, and
    /// its TTL is the one unicast replies use, which must not change under them.
    pub async fn send_discovery(&self, datagram: &[u8], radius: u8) -> io::Result<bool> {
        let Some(discovery) = &self.discovery else {
            return Ok(false);
        };
        let to = discovery.plan.target();
        if !discovery.plan.is_multicast() {
            return self.send_to(datagram, to).await.map(|()| true);
        }
        // The hop limit is a socket option, so setting it and sending must not be split by
        // another discovery send: wait until writable, then do both under the lock without
        // awaiting in between.
        let result = loop {
            if let Err(error) = self.socket.writable().await {
                break Err(error);
            }
            let sock = SockRef::from(&self.socket);
            match discovery.with_hops(sock, radius, || self.socket.try_send_to(datagram, to)) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other,
            }
        };
        self.count_send(result, to).map(|()| true)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }

    /// The link's name for logs, e.g. `udp:0.0.0.0:1883`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same link under another name in its logs and warnings: a DTLS link runs on a
    /// `UdpLink` (for its buffer sizing, batched I/O and drop counters) and is called
    /// `dtls:ADDR`, so a warning about its socket names the link the user configured.
    pub fn named(mut self, name: String) -> UdpLink {
        self.name = name;
        self
    }

    fn count_send(&self, result: io::Result<usize>, to: SocketAddr) -> io::Result<()> {
        match result {
            // UDP sends a datagram whole or not at all, so the length is the datagram's.
            Ok(len) => {
                self.counters.sent(len);
                Ok(())
            }
            Err(error) => {
                self.counters.send_error();
                tracing::debug!(link = %self.name, %to, %error, "send failed");
                Err(error)
            }
        }
    }
}

/// Whether the kernel granted less receive buffer than asked for. Linux doubles the request
/// (the second half is bookkeeping) and reports the doubled value; other systems report what
/// was set.
fn recv_buffer_capped(requested: usize, reported: usize) -> bool {
    let expected = if cfg!(target_os = "linux") {
        requested.saturating_mul(2)
    } else {
        requested
    };
    reported < expected
}

/// Errors after which the socket still works. ICMP unreachable messages surface as
/// connection-refused/reset on the next receive (Windows always, Linux with IP_RECVERR or on
/// a connected socket); they concern one earlier send, not this socket. Anything else
/// (a closed descriptor, an invalid argument) will not get better by retrying.
fn is_transient(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | TimedOut
            | Interrupted
            | WouldBlock
    )
}

#[cfg(test)]
mod tests;
