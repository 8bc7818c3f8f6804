//! Unit tests that need the link's insides: the transient-error rule and multicast set-up
//! on the loopback interface (the public `bind` would join on the default interface when
//! bound to 0.0.0.0, which must not happen in tests: it would send IGMP to the LAN).
//!
//! Network safety: everything here stays on loopback. Multicast uses IP_MULTICAST_IF
//! 127.0.0.1 / the loopback interface index, TTL 0 and loop on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6, UdpSocket as StdUdpSocket};
use std::time::Duration;

use super::*;

const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 11);
const WAIT: Duration = Duration::from_secs(5);

fn config(bind: SocketAddr, discovery: Option<SocketAddr>, ttl: u32) -> UdpLinkConfig {
    UdpLinkConfig {
        options: UdpConfig {
            bind,
            discovery,
            multicast_ttl: ttl,
            multicast_loop: true,
            ..UdpConfig::default()
        },
        max_datagram: 512,
    }
}

#[test]
fn transient_errors_are_the_per_datagram_ones() {
    use io::ErrorKind::*;
    for kind in [
        ConnectionRefused,
        ConnectionReset,
        HostUnreachable,
        Interrupted,
    ] {
        assert!(is_transient(&io::Error::from(kind)), "{kind:?}");
    }
    for kind in [InvalidInput, PermissionDenied, Other, Unsupported] {
        assert!(!is_transient(&io::Error::from(kind)), "{kind:?}");
    }
}

/// Binds `0.0.0.0:P` with the group at the same port P, joined on loopback only. The port is
/// found by binding and releasing it; retried if someone takes it in between.
async fn multicast_link_on_loopback() -> UdpLink {
    for _ in 0..10 {
        let port = StdUdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = config(
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            Some(SocketAddr::from((GROUP_V4, port))),
            0,
        );
        match UdpLink::bind_with_interface(cfg, Some(Ipv4Addr::LOCALHOST)).await {
            Ok(link) => return link,
            Err(UdpLinkError::AddressInUse { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free port for the multicast test");
}

#[tokio::test]
async fn searchgw_sent_to_the_group_is_received_and_advertise_goes_to_the_group() {
    let link = multicast_link_on_loopback().await;
    let port = link.local_addr().unwrap().port();
    let sock = SockRef::from(&link.socket);
    assert_eq!(sock.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
    assert_eq!(sock.multicast_ttl_v4().unwrap(), 0);
    assert!(sock.multicast_loop_v4().unwrap());

    // A mote searching: sends SEARCHGW to the group, on loopback, TTL 0.
    let mote = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    mote.set_multicast_ttl_v4(0).unwrap();
    SockRef::from(&mote)
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .unwrap();
    let searchgw = [0x03, 0x01, 0x00];
    mote.send_to(&searchgw, (GROUP_V4, port)).unwrap();

    let mut buf = link.recv_buffer();
    let (len, from) = tokio::time::timeout(WAIT, link.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], &searchgw);
    assert_eq!(from, mote.local_addr().unwrap());

    // The gateway answers to the group; with loop on, its own membership receives it.
    let gwinfo = [0x03, 0x02, 0x07];
    assert!(link.send_discovery(&gwinfo, 1).await.unwrap());
    let (len, from) = tokio::time::timeout(WAIT, link.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], &gwinfo);
    assert_eq!(from.port(), port);
    assert_eq!(link.stats().datagrams_sent, 1);
}

#[tokio::test]
async fn radius_caps_the_multicast_ttl_for_one_send() {
    // TTL 3 is configured but nothing is sent with it: only the option is checked.
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let link = UdpLink::bind(config(bind, Some(SocketAddr::from((GROUP_V4, 9))), 3))
        .await
        .unwrap();
    let discovery = link.discovery.as_ref().unwrap();
    let ttl = || SockRef::from(&link.socket).multicast_ttl_v4().unwrap();
    assert_eq!(ttl(), 3);
    let observed = |radius| {
        discovery
            .with_hops(SockRef::from(&link.socket), radius, || Ok(ttl()))
            .unwrap()
    };
    assert_eq!(observed(1), 1);
    assert_eq!(observed(2), 2);
    assert_eq!(observed(0), 3, "radius 0 restores the configured TTL");
    assert_eq!(
        observed(7),
        3,
        "a radius above the configured TTL does not raise it"
    );
}

#[tokio::test]
async fn a_real_discovery_send_with_a_radius_keeps_ttl_zero() {
    let listener = StdUdpSocket::bind("0.0.0.0:0").unwrap();
    listener
        .join_multicast_v4(&GROUP_V4, &Ipv4Addr::LOCALHOST)
        .unwrap();
    listener.set_read_timeout(Some(WAIT)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let link = UdpLink::bind(config(bind, Some(SocketAddr::from((GROUP_V4, port))), 0))
        .await
        .unwrap();
    assert!(link.send_discovery(b"adv", 3).await.unwrap());
    assert_eq!(SockRef::from(&link.socket).multicast_ttl_v4().unwrap(), 0);
    let mut buf = [0u8; 16];
    let (len, from) = listener.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"adv");
    assert_eq!(from, link.local_addr().unwrap());
}

fn loopback_index() -> Option<u32> {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn ipv6_group_is_joined_on_the_scope_interface_with_the_configured_hops() {
    // Only where the loopback interface index is known: scope 0 would join on the default
    // interface and announce the membership (MLD) on the LAN.
    let Some(lo) = loopback_index() else {
        eprintln!("skipped: no /sys/class/net/lo/ifindex");
        return;
    };
    // ff11::/16: interface-local scope, never leaves the interface.
    let group = SocketAddrV6::new("ff11::4d51:5454".parse().unwrap(), 1883, 0, lo);
    let bind: SocketAddr = "[::1]:0".parse().unwrap();
    let link = UdpLink::bind(config(bind, Some(SocketAddr::V6(group)), 0))
        .await
        .unwrap();
    let sock = SockRef::from(&link.socket);
    assert_eq!(sock.multicast_if_v6().unwrap(), lo);
    assert_eq!(sock.multicast_hops_v6().unwrap(), 0);
    assert!(sock.multicast_loop_v6().unwrap());
    assert!(sock.only_v6().unwrap());

    // Linux has no multicast route on `lo` unless one is added, so the send usually fails
    // with ENETUNREACH; either way it is counted and the link keeps working.
    match link.send_discovery(b"adv", 2).await {
        Ok(sent) => {
            assert!(sent);
            assert_eq!(link.stats().datagrams_sent, 1);
        }
        Err(_) => assert_eq!(link.stats().send_errors, 1),
    }
    assert_eq!(sock.multicast_hops_v6().unwrap(), 0);
}

#[tokio::test]
async fn a_failed_join_names_the_group_and_the_interface() {
    // 198.51.100.1 is no local interface, so the kernel refuses the join; nothing is sent.
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let cfg = config(bind, Some(SocketAddr::from((GROUP_V4, 1883))), 0);
    let err = UdpLink::bind_with_interface(cfg, Some(Ipv4Addr::new(198, 51, 100, 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, UdpLinkError::MulticastJoin { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot join multicast group 239.255.77.11 on interface 198.51.100.1 for UDP 127.0.0.1:0"),
        "{text}"
    );
}

/// Whether this system has the /proc tables `kernel_drops` reads; the tests that need them
/// are skipped (and say so) elsewhere, and must pass where they exist.
fn has_proc_udp() -> bool {
    std::path::Path::new("/proc/self/net/udp").exists()
}

#[tokio::test]
async fn a_fresh_socket_has_dropped_nothing() {
    let link = UdpLink::bind(config(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None, 0))
        .await
        .unwrap();
    if !has_proc_udp() {
        assert_eq!(link.kernel_drops(), None);
        eprintln!("skipped: no /proc/self/net/udp");
        return;
    }
    assert_eq!(link.kernel_drops(), Some(0));

    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if let Ok(link6) = UdpLink::bind(config(v6, None, 0)).await {
        assert_eq!(link6.kernel_drops(), Some(0), "IPv6 sockets are in udp6");
    }
}

#[tokio::test]
async fn kernel_drops_count_what_overflowed_the_receive_buffer() {
    // The smallest buffer the kernel allows (it rounds a 4 KiB request up to its minimum):
    // a few datagrams fill it.
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut cfg = config(bind, None, 0);
    cfg.options.recv_buffer = 4096;
    let link = UdpLink::bind(cfg).await.unwrap();
    assert!(link.socket_recv_buffer().unwrap() < 64 * 1024);
    if !has_proc_udp() {
        eprintln!("skipped: no /proc/self/net/udp");
        return;
    }
    assert_eq!(link.kernel_drops(), Some(0));

    // Flood it while nobody reads. On loopback each send delivers (or drops) the datagram
    // before it returns.
    const SENT: u64 = 500;
    let flooder = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let to = link.local_addr().unwrap();
    for _ in 0..SENT {
        flooder.send_to(&[0x55; 200], to).unwrap();
    }
    let dropped = link.kernel_drops().unwrap();
    assert!(dropped > 0, "nothing dropped");

    // Every datagram is either received or counted as dropped.
    let mut buf = link.recv_buffer();
    let mut received = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), link.recv(&mut buf)).await
    {
        received += 1;
    }
    assert_eq!(received, link.stats().datagrams_received);
    assert_eq!(
        received + link.kernel_drops().unwrap(),
        SENT,
        "received {received}, dropped {dropped}"
    );
}

#[test]
fn the_drops_column_of_the_socket_row() {
    let table = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:4A05 00000000:0000 07 00000000:00000300 00:00000000 00000000     0        0 9999 2 0000000000000000 17
  124: 0100007F:4A06 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0
";
    assert_eq!(stats::drops_of(table, 9999), Some(17));
    assert_eq!(stats::drops_of(table, 12345), Some(0));
    assert_eq!(stats::drops_of(table, 1), None);
    assert_eq!(stats::parse_socket_inode("socket:[12345]"), Some(12345));
    assert_eq!(stats::parse_socket_inode("pipe:[12345]"), None);
    assert_eq!(stats::parse_socket_inode("/dev/null"), None);
}

#[test]
fn a_capped_receive_buffer_is_recognised() {
    if cfg!(target_os = "linux") {
        assert!(!recv_buffer_capped(4 << 20, 8 << 20));
        assert!(recv_buffer_capped(4 << 20, 425_984));
    } else {
        assert!(!recv_buffer_capped(4 << 20, 4 << 20));
        assert!(recv_buffer_capped(4 << 20, 212_992));
    }
}

/// The link's socket is never connected, so Linux does not report the ICMP port unreachable
/// that answers a send to a closed port (tests/udp.rs checks that: 0 errors). Here the socket
/// is connected while it sends, as a connected socket is told: the next receive then fails
/// with ECONNREFUSED, which `recv` must count once, skip, and go on to the datagram after it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_reported_icmp_error_is_counted_once_and_skipped() {
    let link = UdpLink::bind(config(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None, 0))
        .await
        .unwrap();
    let closed = {
        let s = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    }; // dropped: the kernel answers a datagram sent there with ICMP port unreachable
    link.socket.connect(closed).await.unwrap();
    link.send_to(b"\x02\x17", closed).await.unwrap();
    // Wait until the error is pending on the socket (epoll reports it as EPOLLERR); only a
    // receive takes it from there.
    let ready = tokio::time::timeout(WAIT, link.socket.ready(tokio::io::Interest::ERROR))
        .await
        .expect("no ICMP error became pending")
        .unwrap();
    assert!(ready.is_error(), "{ready:?}");

    // The peer's datagram can only reach the link once the socket is connected to the peer.
    let peer = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    link.socket
        .connect(peer.local_addr().unwrap())
        .await
        .unwrap();
    peer.send_to(b"\x02\x16", link.local_addr().unwrap())
        .unwrap();
    let mut buf = link.recv_buffer();
    let (len, from) = tokio::time::timeout(WAIT, link.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], b"\x02\x16");
    assert_eq!(from, peer.local_addr().unwrap());
    let stats = link.stats();
    assert_eq!(stats.receive_errors, 1, "{stats:?}");
    assert_eq!(stats.datagrams_received, 1, "{stats:?}");
}
