//! Why a UDP link could not be set up.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// Why [`UdpLink::bind`](super::UdpLink::bind) failed.
///
/// Every message names the address and, where there is one, the fix, so the binary can print
/// it as it is. The OS error is kept in a field rather than returned by `source()`: where it
/// adds information the message already contains it, so printing an error chain would only
/// repeat it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UdpLinkError {
    /// Another socket already holds the port (most likely another gateway).
    #[error(
        "cannot bind UDP {addr}: address already in use; another MQTT-SN gateway may be \
         running, or choose another port with `bind` in [[udp]] / --udp"
    )]
    AddressInUse {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// The OS refused the bind, typically a port below 1024 without the privilege.
    #[error("cannot bind UDP {addr}: permission denied; {hint}", hint = permission_hint(addr))]
    PermissionDenied {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// The bind address is not one of this machine's addresses.
    #[error(
        "cannot bind UDP {addr}: {ip} is not an address of this machine; use 0.0.0.0 or [::] \
         to listen on every interface, or an address shown by `ip addr`, with `bind` in \
         [[udp]] / --udp",
        ip = addr.ip()
    )]
    AddressNotAvailable {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// Any other bind failure.
    #[error("cannot bind UDP {addr}: {error}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// Creating the socket or setting one of its options failed.
    #[error("cannot set up UDP socket for {addr}: {step}: {error}")]
    Socket {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What was being done, e.g. "set IP_MULTICAST_TTL".
        step: &'static str,
        /// What the OS said.
        error: io::Error,
    },
    /// Joining the discovery multicast group failed.
    #[error(
        "cannot join multicast group {group} on interface {interface} for UDP {addr}: {error}; \
         check that the interface exists, is up and has multicast enabled, or change \
         `discovery` in [[udp]]"
    )]
    MulticastJoin {
        /// The link's bind address.
        addr: SocketAddr,
        /// The group that was joined.
        group: IpAddr,
        /// The interface, as text: an IPv4 address or an IPv6 interface index, with a note
        /// when it means "any".
        interface: String,
        /// What the OS said.
        error: io::Error,
    },
    /// The settings contradict each other or cannot work (e.g. an IPv6 discovery address on
    /// an IPv4 link).
    #[error("invalid [[udp]] settings for {addr}: {reason}")]
    Config {
        /// The link's bind address.
        addr: SocketAddr,
        /// What is wrong and what to change.
        reason: String,
    },
}

impl UdpLinkError {
    /// Sorts a failed `bind(2)` into the variant whose message carries the right fix.
    pub(crate) fn from_bind(addr: SocketAddr, error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::AddrInUse => Self::AddressInUse { addr, error },
            io::ErrorKind::PermissionDenied => Self::PermissionDenied { addr, error },
            io::ErrorKind::AddrNotAvailable => Self::AddressNotAvailable { addr, error },
            _ => Self::Bind { addr, error },
        }
    }
}

/// The usual cause of EACCES differs by port: below 1024 it is the privileged-port rule,
/// above it a security policy.
fn permission_hint(addr: &SocketAddr) -> &'static str {
    if addr.port() < 1024 {
        "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability; choose a port \
         of 1024 or above with `bind` in [[udp]] / --udp"
    } else {
        "a security policy (SELinux, AppArmor, a container profile) forbids it; allow the \
         port there or choose another with `bind` in [[udp]] / --udp"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn bind_errors_are_sorted_by_kind_and_name_the_fix() {
        let a = addr("0.0.0.0:1883");
        let e = UdpLinkError::from_bind(a, io::Error::from(io::ErrorKind::AddrInUse));
        assert!(matches!(e, UdpLinkError::AddressInUse { .. }));
        assert_eq!(
            e.to_string(),
            "cannot bind UDP 0.0.0.0:1883: address already in use; another MQTT-SN gateway \
             may be running, or choose another port with `bind` in [[udp]] / --udp"
        );

        let low = addr("0.0.0.0:853");
        let e = UdpLinkError::from_bind(low, io::Error::from(io::ErrorKind::PermissionDenied));
        let text = e.to_string();
        assert!(text.contains("0.0.0.0:853"), "{text}");
        assert!(text.contains("below 1024"), "{text}");
        assert!(text.contains("CAP_NET_BIND_SERVICE"), "{text}");

        let e = UdpLinkError::from_bind(a, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!e.to_string().contains("below 1024"));

        let v6 = addr("[2001:db8::1]:1883");
        let e = UdpLinkError::from_bind(v6, io::Error::from(io::ErrorKind::AddrNotAvailable));
        let text = e.to_string();
        assert!(text.contains("[2001:db8::1]:1883"), "{text}");
        assert!(
            text.contains("2001:db8::1 is not an address of this machine"),
            "{text}"
        );

        let e = UdpLinkError::from_bind(a, io::Error::other("boom"));
        assert_eq!(e.to_string(), "cannot bind UDP 0.0.0.0:1883: boom");
    }
}
