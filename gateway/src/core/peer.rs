//! Where datagrams come from and go to.

use std::net::SocketAddr;

/// One running transport instance, numbered by the runtime (`udp:0.0.0.0:1883` might be 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u16);

/// An address on a link. Serial radios will add their own address forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A UDP sender or destination.
    Ip(SocketAddr),
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
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

/// A datagram the runtime must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// Where on that link.
    pub destination: Destination,
    /// The encoded datagram, forwarder encapsulation included.
    pub datagram: bytes::Bytes,
}
