//! The embedded broker as the remote broker's fallback, started only when it is first needed:
//! the first time the remote broker turns out unreachable (a failed connection attempt or a
//! lost connection). While the remote broker is up from the start, rmqtt never runs, and the
//! gateway's resident memory stays that of the gateway alone (issue 17, docs/benchmarks.md).
//!
//! What a local MQTT app sees before that: the listen address is reserved at start-up (a TCP
//! socket bound to it, not listening), so its port is known from the start (also when
//! configured as port 0), and a connection to it is refused, as to any closed port, until the
//! fallback starts. From then on the embedded broker runs until the gateway stops,
//! also after the remote broker is back: local apps keep their connections and sessions.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use sn_config::EmbeddedBrokerConfig;
use tokio::net::TcpSocket;
use tracing::{info, warn};

use crate::broker::{spawn_link, BrokerLinkHandle, EmbeddedBroker, EmbeddedBrokerError};

use super::{start_fallback_broker, RuntimeError};

/// The fallback broker before it is needed: its listen address, reserved.
pub(super) struct DormantFallback {
    /// The socket holding the listen address (bound, never listening), and that address;
    /// `None` with `listen = "off"`, or when the address was taken at start-up.
    reserved: Option<(TcpSocket, SocketAddr)>,
}

impl DormantFallback {
    /// Reserves `[embedded_broker] listen`. A taken port is a warning, as it is for a running
    /// fallback: the fallback will then run without a listener. Any other bind error (not an
    /// address of this machine, a privileged port) stops the gateway from starting, with the
    /// message the embedded broker itself would give.
    pub(super) fn new(config: &EmbeddedBrokerConfig) -> Result<Self, EmbeddedBrokerError> {
        let Some(addr) = config.listen else {
            return Ok(DormantFallback { reserved: None });
        };
        match reserve(addr) {
            Ok(reserved) => Ok(DormantFallback {
                reserved: Some(reserved),
            }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                warn!(
                    %addr,
                    "fallback: the embedded broker's port is taken, so local apps cannot reach it \
                     while the remote broker is down; set [embedded_broker] listen to a free port \
                     to allow that"
                );
                Ok(DormantFallback { reserved: None })
            }
            Err(e) => Err(EmbeddedBrokerError::Bind {
                addr,
                reason: e.to_string(),
            }),
        }
    }

    /// Where local apps will reach the fallback broker once it runs.
    pub(super) fn listen_addr(&self) -> Option<SocketAddr> {
        self.reserved.as_ref().map(|(_, addr)| *addr)
    }

    /// Starts the embedded broker on the reserved address and the gateway's link to it.
    pub(super) async fn start(self) -> Result<(EmbeddedBroker, BrokerLinkHandle), RuntimeError> {
        let started = Instant::now();
        let listen = self.reserved.map(|(socket, addr)| {
            // Freed just before rmqtt binds it (a socket that never listened leaves no
            // TIME_WAIT behind).
            drop(socket);
            addr
        });
        let embedded = start_fallback_broker(&EmbeddedBrokerConfig { listen }).await?;
        let link = spawn_link(embedded.link_config())?;
        info!(
            took_ms = started.elapsed().as_millis(),
            "fallback: the remote broker is unreachable, embedded MQTT broker started"
        );
        Ok((embedded, link))
    }
}

/// A TCP socket bound to `addr` and not listening: the port is held, connections to it are
/// refused.
fn reserve(addr: SocketAddr) -> io::Result<(TcpSocket, SocketAddr)> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio's `TcpListener::bind` does: without it, a port left in TIME_WAIT by an
    // earlier run would be reported taken.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let bound = socket.local_addr()?;
    Ok((socket, bound))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The reserved port is fixed, and a local app's connection to it is refused until the
    /// fallback starts.
    #[tokio::test]
    async fn a_reserved_port_refuses_connections() {
        let config = EmbeddedBrokerConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        };
        let dormant = DormantFallback::new(&config).unwrap();
        let addr = dormant.listen_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}
