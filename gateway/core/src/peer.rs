//! Where datagrams come from and go to.

use std::net::SocketAddr;

/// One running transport instance, numbered by the runtime (`udp:0.0.0.0:1883` might be 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u16);

/// An address on a link. Exhaustive on purpose: the store encodes every variant, and a new
/// one must be a compile error there, not a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A UDP sender or destination.
    Ip(SocketAddr),
    /// A node behind a serial-attached radio.
    Radio(RadioAddr),
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Radio(addr) => write!(f, "{addr}"),
        }
    }
}

/// A node's address on a serial radio link, in the form of the link's framing.
///
/// For Zigbee only the 64-bit address names the node: the 16-bit network address changes
/// when the node rejoins, and a session must not be lost for that. The serial link keeps
/// the latest 16-bit address of each node itself and uses it when sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RadioAddr {
    /// A Zigbee node behind an XBee, by its 64-bit IEEE address.
    XBee(u64),
    /// A node on a COBS-framed link (a LoRa modem in transparent mode), by its 16-bit address.
    Node(u16),
    /// A KISS port (RNode-style devices).
    KissPort(u8),
    /// The one mote attached directly to a raw MQTT-SN serial line.
    Direct,
}

impl std::fmt::Display for RadioAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RadioAddr::XBee(long) => write!(f, "xbee {long:016x}"),
            RadioAddr::Node(node) => write!(f, "node {node:04x}"),
            RadioAddr::KissPort(port) => write!(f, "kiss port {port}"),
            RadioAddr::Direct => f.write_str("serial mote"),
        }
    }
}

/// A sender or receiver of datagrams: an address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The link the datagram travelled on.
    pub link: LinkId,
    /// The address on that link.
    pub addr: PeerAddr,
}

/// Where an MQTT-SN client is reached: a peer, plus the wireless node id when the peer is a
/// forwarder that encapsulates the client's messages (v1.2 §5.5). Sessions are bound to this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    /// The peer datagrams are exchanged with (the forwarder, for encapsulated clients).
    pub peer: Peer,
    /// The wireless node id behind a forwarder; `None` for a client that speaks directly.
    pub node: Option<Box<[u8]>>,
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.peer.addr)?;
        if let Some(node) = &self.node {
            f.write_str(" node ")?;
            for byte in node.iter() {
                write!(f, "{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// Where a datagram from the core should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One peer.
    Unicast(PeerAddr),
    /// The link's discovery (broadcast or multicast) address, for ADVERTISE and GWINFO.
    /// `radius` 0 means every node; 1..=3 limits the hops.
    Discovery {
        /// Broadcast radius from the SEARCHGW being answered, or 0.
        radius: u8,
    },
}

/// A datagram the runtime must send: where it goes and how long it is. Its bytes were written
/// into the caller's buffer by `Gateway::poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// Where on that link.
    pub destination: Destination,
    /// Bytes of the datagram (forwarder encapsulation included) appended to the buffer.
    pub size: usize,
}
