//! Creating the OS socket: options that must be set before `bind`, the bind itself, and the
//! discovery setup (broadcast permission, multicast membership, TTL, loop).

use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::discovery::DiscoveryPlan;
use super::UdpLinkError;

/// Creates, configures and binds the socket; returns it in non-blocking mode, ready for
/// tokio. `recv_buffer` is the SO_RCVBUF asked for: a wish, not a requirement (see
/// [`UdpConfig::recv_buffer`](sn_config::UdpConfig::recv_buffer)).
pub(crate) fn open(
    bind: SocketAddr,
    discovery: Option<DiscoveryPlan>,
    multicast_ttl: u32,
    multicast_loop: bool,
    recv_buffer: usize,
) -> Result<std::net::UdpSocket, UdpLinkError> {
    let step = |step: &'static str| {
        move |error: std::io::Error| UdpLinkError::Socket {
            addr: bind,
            step,
            error,
        }
    };

    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(step("create the socket"))?;

    // No SO_REUSEADDR, on purpose. UDP has no TIME_WAIT, so a restarted gateway rebinds its
    // port without it. With it set on both sockets Linux lets a second process bind the same
    // UDP port and silently splits the traffic between them; leaving it off makes a second
    // gateway on the same port fail at start with EADDRINUSE, which we turn into a clear
    // message. The cost: another local program cannot listen on our discovery port beside us.

    if bind.is_ipv6() {
        // IPv6-only, so an IPv4 link on 0.0.0.0:P and an IPv6 link on [::]:P can coexist and
        // each family has exactly one owner (and one set of stats and options).
        socket.set_only_v6(true).map_err(step("set IPV6_V6ONLY"))?;
    }

    match socket.set_recv_buffer_size(recv_buffer) {
        Ok(()) => {}
        // Refusal is not fatal: the link works with the default buffer, only bursts suffer.
        Err(error) => tracing::debug!(%bind, %error, "SO_RCVBUF of {recv_buffer} refused"),
    }
    if let Ok(got) = socket.recv_buffer_size() {
        tracing::debug!(%bind, requested = recv_buffer, granted = got, "receive buffer");
    }

    socket
        .bind(&bind.into())
        .map_err(|error| UdpLinkError::from_bind(bind, error))?;

    if let Some(plan) = discovery {
        set_up_discovery(&socket, bind, plan, multicast_ttl, multicast_loop)?;
    }

    socket
        .set_nonblocking(true)
        .map_err(step("set non-blocking mode"))?;
    Ok(socket.into())
}

fn set_up_discovery(
    socket: &Socket,
    bind: SocketAddr,
    plan: DiscoveryPlan,
    ttl: u32,
    multicast_loop: bool,
) -> Result<(), UdpLinkError> {
    let step = |step: &'static str| {
        move |error: std::io::Error| UdpLinkError::Socket {
            addr: bind,
            step,
            error,
        }
    };
    let target = plan.target();
    if target.port() != bind.port() {
        tracing::warn!(
            %bind, discovery = %target,
            "discovery port differs from the bind port; SEARCHGW sent to the discovery \
             address will not reach this link"
        );
    }
    match plan {
        DiscoveryPlan::BroadcastV4(_) => {
            // Linux refuses a send to a broadcast address (EACCES) without it.
            socket
                .set_broadcast(true)
                .map_err(step("set SO_BROADCAST"))?;
        }
        DiscoveryPlan::MulticastV4 { group, interface } => {
            socket
                .join_multicast_v4(group.ip(), &interface)
                .map_err(|error| UdpLinkError::MulticastJoin {
                    addr: bind,
                    group: IpAddr::V4(*group.ip()),
                    interface: if interface.is_unspecified() {
                        "0.0.0.0 (any, chosen by the routing table)".to_owned()
                    } else {
                        interface.to_string()
                    },
                    error,
                })?;
            if !interface.is_unspecified() {
                socket
                    .set_multicast_if_v4(&interface)
                    .map_err(step("set IP_MULTICAST_IF"))?;
            }
            socket
                .set_multicast_ttl_v4(ttl)
                .map_err(step("set IP_MULTICAST_TTL"))?;
            socket
                .set_multicast_loop_v4(multicast_loop)
                .map_err(step("set IP_MULTICAST_LOOP"))?;
            warn_if_bound_to_unicast(bind);
        }
        DiscoveryPlan::MulticastV6 { group, interface } => {
            socket
                .join_multicast_v6(group.ip(), interface)
                .map_err(|error| UdpLinkError::MulticastJoin {
                    addr: bind,
                    group: IpAddr::V6(*group.ip()),
                    interface: if interface == 0 {
                        "index 0 (any, chosen by the routing table)".to_owned()
                    } else {
                        format!("index {interface}")
                    },
                    error,
                })?;
            if interface != 0 {
                socket
                    .set_multicast_if_v6(interface)
                    .map_err(step("set IPV6_MULTICAST_IF"))?;
            }
            socket
                .set_multicast_hops_v6(ttl)
                .map_err(step("set IPV6_MULTICAST_HOPS"))?;
            socket
                .set_multicast_loop_v6(multicast_loop)
                .map_err(step("set IPV6_MULTICAST_LOOP"))?;
            warn_if_bound_to_unicast(bind);
        }
        DiscoveryPlan::UnicastV6(_) => {}
    }
    Ok(())
}

/// A socket bound to a specific unicast address only receives datagrams addressed to that
/// address, so a SEARCHGW sent to the group never reaches it; ADVERTISE still goes out.
fn warn_if_bound_to_unicast(bind: SocketAddr) {
    if !bind.ip().is_unspecified() {
        tracing::warn!(
            %bind,
            "bound to a specific address: SEARCHGW sent to the multicast group will not be \
             received; bind 0.0.0.0 or [::] to answer it"
        );
    }
}
