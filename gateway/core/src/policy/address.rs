//! Peer address patterns of the policy: an IP address or network for UDP links, a node address
//! for serial radios.

use std::net::IpAddr;

use crate::peer::{PeerAddr, RadioAddr};

/// Where a mote may connect from. Written in the config as `"192.168.1.20"`,
/// `"192.168.1.0/24"`, `"fd00::/8"`, `"xbee:0013a20041a7b3c1"`, `"node:00a1"`, `"kiss:1"` or
/// `"serial"` (the one mote on a raw serial line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrPattern {
    /// A UDP peer whose IP is in `net`/`prefix` (an exact address has the full prefix; any
    /// port).
    Ip {
        /// The network address.
        net: IpAddr,
        /// Leading bits that must match: 0 to 32 (IPv4) or 128 (IPv6).
        prefix: u8,
    },
    /// A Zigbee node by its 64-bit address.
    XBee(u64),
    /// A node on a COBS-framed radio link.
    Node(u16),
    /// A KISS port.
    KissPort(u8),
    /// The mote on a raw MQTT-SN serial line.
    Serial,
}

impl AddrPattern {
    /// Reads the config form; the error says what was expected.
    pub fn parse(text: &str) -> Result<AddrPattern, String> {
        let text = text.trim();
        if text == "serial" {
            return Ok(AddrPattern::Serial);
        }
        if let Some(hex) = text.strip_prefix("xbee:") {
            return parse_hex(hex, 16).map(AddrPattern::XBee).ok_or_else(|| {
                format!(
                    "{text:?}: an XBee address is 16 hex digits, like \"xbee:0013a20041a7b3c1\""
                )
            });
        }
        if let Some(hex) = text.strip_prefix("node:") {
            return parse_hex(hex, 4)
                .and_then(|n| u16::try_from(n).ok())
                .map(AddrPattern::Node)
                .ok_or_else(|| {
                    format!("{text:?}: a node address is 1 to 4 hex digits, like \"node:00a1\"")
                });
        }
        if let Some(port) = text.strip_prefix("kiss:") {
            return port
                .parse::<u8>()
                .ok()
                .filter(|p| *p < 16)
                .map(AddrPattern::KissPort)
                .ok_or_else(|| format!("{text:?}: a KISS port is 0 to 15, like \"kiss:0\""));
        }
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (text, None),
        };
        let Ok(net) = ip.parse::<IpAddr>() else {
            return Err(format!(
                "{text:?} is not an address: expected an IP address or network (\"192.168.1.20\", \
                 \"10.0.0.0/8\", \"fd00::/8\"), \"xbee:<16 hex digits>\", \"node:<hex>\", \
                 \"kiss:<port>\" or \"serial\""
            ));
        };
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => match bits.parse::<u8>() {
                Ok(bits) if bits <= max => bits,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        if masked(net, prefix) != net {
            return Err(format!(
                "{text:?}: host bits are set after the /{prefix}; the network is {}/{prefix}",
                masked(net, prefix)
            ));
        }
        Ok(AddrPattern::Ip { net, prefix })
    }

    /// Whether a datagram from `addr` is from where this pattern allows. An IPv4 network also
    /// matches the IPv4-mapped IPv6 form a dual-stack socket reports.
    pub fn matches(&self, addr: &PeerAddr) -> bool {
        match (self, addr) {
            (AddrPattern::Ip { net, prefix }, PeerAddr::Ip(socket)) => {
                let ip = match socket.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                ip.is_ipv4() == net.is_ipv4() && masked(ip, *prefix) == *net
            }
            (AddrPattern::XBee(a), PeerAddr::Radio(RadioAddr::XBee(b))) => a == b,
            (AddrPattern::Node(a), PeerAddr::Radio(RadioAddr::Node(b))) => a == b,
            (AddrPattern::KissPort(a), PeerAddr::Radio(RadioAddr::KissPort(b))) => a == b,
            (AddrPattern::Serial, PeerAddr::Radio(RadioAddr::Direct)) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddrPattern::Ip { net, prefix } if *prefix == if net.is_ipv4() { 32 } else { 128 } => {
                write!(f, "{net}")
            }
            AddrPattern::Ip { net, prefix } => write!(f, "{net}/{prefix}"),
            AddrPattern::XBee(long) => write!(f, "xbee:{long:016x}"),
            AddrPattern::Node(node) => write!(f, "node:{node:04x}"),
            AddrPattern::KissPort(port) => write!(f, "kiss:{port}"),
            AddrPattern::Serial => f.write_str("serial"),
        }
    }
}

fn parse_hex(hex: &str, max_digits: usize) -> Option<u64> {
    if hex.is_empty() || hex.len() > max_digits {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// `ip` with all but its first `prefix` bits cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::SocketAddr;

    fn ip(text: &str) -> PeerAddr {
        PeerAddr::Ip(text.parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn networks_and_addresses_match_by_prefix() {
        let net = AddrPattern::parse("192.168.1.0/24").unwrap();
        assert!(net.matches(&ip("192.168.1.77:5000")));
        assert!(!net.matches(&ip("192.168.2.1:5000")));
        assert!(net.matches(&ip("[::ffff:192.168.1.9]:1")));
        let host = AddrPattern::parse("10.0.0.5").unwrap();
        assert!(host.matches(&ip("10.0.0.5:1")));
        assert!(!host.matches(&ip("10.0.0.6:1")));
        let any4 = AddrPattern::parse("0.0.0.0/0").unwrap();
        assert!(any4.matches(&ip("8.8.8.8:53")));
        assert!(!any4.matches(&ip("[2001:db8::1]:53")));
        let v6 = AddrPattern::parse("fd00::/8").unwrap();
        assert!(v6.matches(&ip("[fd12::1]:9")));
        assert!(!v6.matches(&ip("[fe80::1]:9")));
        assert!(!net.matches(&PeerAddr::Radio(RadioAddr::Node(1))));
    }

    #[test]
    fn radio_addresses_match_exactly() {
        let xbee = AddrPattern::parse("xbee:0013a20041a7b3c1").unwrap();
        assert!(xbee.matches(&PeerAddr::Radio(RadioAddr::XBee(0x0013_a200_41a7_b3c1))));
        assert!(!xbee.matches(&PeerAddr::Radio(RadioAddr::XBee(1))));
        assert!(AddrPattern::parse("node:a1")
            .unwrap()
            .matches(&PeerAddr::Radio(RadioAddr::Node(0xa1))));
        assert!(AddrPattern::parse("kiss:3")
            .unwrap()
            .matches(&PeerAddr::Radio(RadioAddr::KissPort(3))));
        assert!(AddrPattern::parse("serial")
            .unwrap()
            .matches(&PeerAddr::Radio(RadioAddr::Direct)));
        assert!(!AddrPattern::parse("serial")
            .unwrap()
            .matches(&ip("1.2.3.4:5")));
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        for bad in [
            "192.168.1.0/33",
            "192.168.1.1/24",
            "xbee:12345678901234567",
            "node:10000",
            "kiss:16",
            "host.example",
            "",
        ] {
            assert!(AddrPattern::parse(bad).is_err(), "{bad}");
        }
        let error = AddrPattern::parse("192.168.1.1/24").unwrap_err();
        assert!(error.contains("192.168.1.0/24"), "{error}");
        for good in [
            "192.168.1.0/24",
            "10.0.0.5",
            "xbee:0013a20041a7b3c1",
            "node:00a1",
            "kiss:1",
            "serial",
            "fd00::/8",
        ] {
            assert_eq!(AddrPattern::parse(good).unwrap().to_string(), good);
        }
    }
}
