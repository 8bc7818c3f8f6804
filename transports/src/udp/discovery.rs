//! Where ADVERTISE/GWINFO go, and how far: the discovery address and the per-send hop limit.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Mutex, PoisonError};

use socket2::SockRef;

use super::UdpLinkError;

/// What a configured discovery address asks of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscoveryPlan {
    /// An IPv4 address that is not multicast. Without interface masks a directed broadcast
    /// (192.168.1.255) cannot be told from a unicast address, so any such address gets
    /// SO_BROADCAST; on a unicast destination the option has no effect.
    BroadcastV4(SocketAddrV4),
    /// An IPv4 group, joined on `interface` (`0.0.0.0` lets the routing table choose).
    MulticastV4 {
        group: SocketAddrV4,
        interface: Ipv4Addr,
    },
    /// An IPv6 group, joined on the interface index in the address's scope id (0 = any).
    MulticastV6 { group: SocketAddrV6, interface: u32 },
    /// IPv6 has no broadcast; a unicast discovery address is simply sent to.
    UnicastV6(SocketAddrV6),
}

impl DiscoveryPlan {
    /// Checks `discovery` against the bind address and decides what to set up.
    ///
    /// `interface_v4` is the IPv4 interface for the group, when one is forced; otherwise it is
    /// the bind address when that is a specific address (so ADVERTISE leaves through the
    /// interface the user bound to) and `0.0.0.0` when bound to every interface.
    pub(crate) fn new(
        bind: SocketAddr,
        discovery: SocketAddr,
        interface_v4: Option<Ipv4Addr>,
    ) -> Result<Self, UdpLinkError> {
        let invalid = |reason: String| UdpLinkError::Config { addr: bind, reason };
        if discovery.port() == 0 {
            return Err(invalid(format!(
                "discovery address {discovery} has port 0; give the port motes search on, \
                 usually the same as the `bind` port"
            )));
        }
        if discovery.ip().is_unspecified() {
            return Err(invalid(format!(
                "discovery address {discovery} is unspecified; use a broadcast or multicast \
                 address"
            )));
        }
        match (bind, discovery) {
            (SocketAddr::V4(bind4), SocketAddr::V4(d)) if d.ip().is_multicast() => {
                let interface = interface_v4.unwrap_or(*bind4.ip());
                Ok(Self::MulticastV4 {
                    group: d,
                    interface,
                })
            }
            (SocketAddr::V4(_), SocketAddr::V4(d)) => Ok(Self::BroadcastV4(d)),
            (SocketAddr::V6(_), SocketAddr::V6(d)) if d.ip().is_multicast() => {
                Ok(Self::MulticastV6 {
                    group: d,
                    interface: d.scope_id(),
                })
            }
            (SocketAddr::V6(_), SocketAddr::V6(d)) => Ok(Self::UnicastV6(d)),
            (SocketAddr::V4(_), SocketAddr::V6(_)) | (SocketAddr::V6(_), SocketAddr::V4(_)) => {
                Err(invalid(format!(
                    "discovery address {discovery} and bind address {bind} are of different \
                     IP versions; an IPv4 link needs an IPv4 discovery address and an IPv6 \
                     link an IPv6 one (configure a second [[udp]] section for the other)"
                )))
            }
        }
    }

    /// The address discovery datagrams are sent to.
    pub(crate) fn target(&self) -> SocketAddr {
        match *self {
            Self::BroadcastV4(a) | Self::MulticastV4 { group: a, .. } => SocketAddr::V4(a),
            Self::MulticastV6 { group: a, .. } | Self::UnicastV6(a) => SocketAddr::V6(a),
        }
    }

    /// Only multicast has a hop limit we can set per send without touching unicast replies.
    pub(crate) fn is_multicast(&self) -> bool {
        matches!(self, Self::MulticastV4 { .. } | Self::MulticastV6 { .. })
    }
}

/// The TTL / hop limit for one discovery send.
///
/// MQTT-SN hands the SEARCHGW/GWINFO radius to the network layer: 0 means "everywhere" (the
/// configured value), 1..=255 caps the configured value. A cap never raises it, so a TTL of
/// 0 (host-only) stays host-only whatever the radius.
pub(crate) fn effective_hops(configured: u32, radius: u8) -> u32 {
    if radius == 0 {
        configured
    } else {
        configured.min(u32::from(radius))
    }
}

/// The link's discovery state: where to send and the hop limit currently set on the socket.
#[derive(Debug)]
pub(crate) struct Discovery {
    pub(crate) plan: DiscoveryPlan,
    pub(crate) configured_hops: u32,
    /// The multicast TTL / hop limit the socket has now. Setting the option and sending must
    /// happen together, or two discovery sends with different radii could each go out with
    /// the other's limit; this lock makes the pair atomic. It is a std mutex held only across
    /// two non-blocking system calls, never across an `.await`, and unicast traffic never
    /// takes it.
    current_hops: Mutex<u32>,
}

impl Discovery {
    pub(crate) fn new(plan: DiscoveryPlan, configured_hops: u32) -> Self {
        Self {
            plan,
            configured_hops,
            current_hops: Mutex::new(configured_hops),
        }
    }

    /// Sets the hop limit for `radius` (if it differs from what is set) and runs `send` while
    /// still holding the lock, so the datagram leaves with that limit.
    pub(crate) fn with_hops<T>(
        &self,
        socket: SockRef<'_>,
        radius: u8,
        send: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let wanted = effective_hops(self.configured_hops, radius);
        // A panic while holding the lock cannot leave the u32 half-written; the value is at
        // worst stale, and the next send re-sets the option if it differs.
        let mut current = self
            .current_hops
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != wanted {
            match self.plan {
                DiscoveryPlan::MulticastV4 { .. } => socket.set_multicast_ttl_v4(wanted)?,
                DiscoveryPlan::MulticastV6 { .. } => socket.set_multicast_hops_v6(wanted)?,
                DiscoveryPlan::BroadcastV4(_) | DiscoveryPlan::UnicastV6(_) => {}
            }
            *current = wanted;
        }
        send()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn radius_zero_uses_configured_and_others_cap_it() {
        assert_eq!(effective_hops(8, 0), 8);
        assert_eq!(effective_hops(8, 1), 1);
        assert_eq!(effective_hops(8, 2), 2);
        assert_eq!(effective_hops(8, 3), 3);
        assert_eq!(effective_hops(2, 3), 2, "a cap never raises the TTL");
        assert_eq!(effective_hops(0, 1), 0, "host-only stays host-only");
        assert_eq!(effective_hops(255, 255), 255);
    }

    #[test]
    fn plans_follow_the_address_kind() {
        let any4: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        let lo4: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let any6: SocketAddr = "[::]:1883".parse().unwrap();

        let p = DiscoveryPlan::new(any4, "255.255.255.255:1883".parse().unwrap(), None).unwrap();
        assert!(matches!(p, DiscoveryPlan::BroadcastV4(_)));
        assert!(!p.is_multicast());

        let p = DiscoveryPlan::new(any4, "239.1.2.3:1883".parse().unwrap(), None).unwrap();
        assert_eq!(
            p,
            DiscoveryPlan::MulticastV4 {
                group: "239.1.2.3:1883".parse().unwrap(),
                interface: Ipv4Addr::UNSPECIFIED
            }
        );
        let p = DiscoveryPlan::new(lo4, "239.1.2.3:1883".parse().unwrap(), None).unwrap();
        assert!(
            matches!(p, DiscoveryPlan::MulticastV4 { interface, .. } if interface == Ipv4Addr::LOCALHOST)
        );

        let group6 = SocketAddrV6::new("ff02::1".parse().unwrap(), 1883, 0, 3);
        let p = DiscoveryPlan::new(any6, SocketAddr::V6(group6), None).unwrap();
        assert_eq!(
            p,
            DiscoveryPlan::MulticastV6 {
                group: group6,
                interface: 3
            }
        );
        assert_eq!(p.target(), SocketAddr::V6(group6));

        let p = DiscoveryPlan::new(any6, "[::1]:1883".parse().unwrap(), None).unwrap();
        assert!(matches!(p, DiscoveryPlan::UnicastV6(_)));
    }

    #[test]
    fn bad_discovery_addresses_are_refused_with_the_fix() {
        let any4: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        let any6: SocketAddr = "[::]:1883".parse().unwrap();
        let e = DiscoveryPlan::new(any4, "[ff02::1]:1883".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("different IP versions"), "{e}");
        let e = DiscoveryPlan::new(any6, "239.1.2.3:1883".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("different IP versions"), "{e}");
        let e = DiscoveryPlan::new(any4, "239.1.2.3:0".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("port 0"), "{e}");
        let e = DiscoveryPlan::new(any4, "0.0.0.0:1883".parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("unspecified"), "{e}");
    }
}
