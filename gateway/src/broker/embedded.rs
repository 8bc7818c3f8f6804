//! The embedded MQTT broker: rmqtt, with its retainer plugin keeping retained messages in
//! memory, inside the gateway's process.
//!
//! It runs on a thread and a single-threaded tokio runtime of its own, so that stopping it is
//! complete: dropping that runtime cancels every session task rmqtt spawned and closes every
//! socket, which rmqtt itself has no call for. The gateway's broker link connects to it over TCP
//! loopback like to any broker ([`EmbeddedBroker::link_config`]); rmqtt offers no in-process
//! client channel. With `listen = "off"` it listens on an ephemeral `127.0.0.1` port that only
//! the gateway's own link knows.
//!
//! Why rmqtt, and what was measured against rumqttd: `docs/decisions.md`, "Embedded broker".

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use sn_config::{BrokerConfig, EmbeddedBrokerConfig};
use tokio::sync::oneshot;
use tracing::{debug, error};

use super::BrokerLinkConfig;

/// Where the broker listens when local apps may not connect: loopback, a port the OS picks.
const EPHEMERAL_LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// The gateway's own client id on the embedded broker.
const LINK_CLIENT_ID: &str = "mqtt-sn-gateway";
/// Largest MQTT packet the broker accepts (rmqtt's default; far above any MQTT-SN datagram).
const MAX_PACKET: u32 = 1024 * 1024;
/// How long a disconnected persistent session (CleanSession=0) of a local app is kept, and how
/// long a message queued for it waits: the same, so a message lives as long as its session.
const SESSION_EXPIRY: Duration = Duration::from_secs(2 * 60 * 60);
/// The retainer's configuration: in memory, no limit on count, no expiry (`"0s"`; rmqtt's
/// default would expire retained messages with the 5-minute message expiry).
const RETAINER_CONFIG: &str = "storage.type = \"ram\"\n\
     max_retained_messages = 0\n\
     max_payload_size = \"1MB\"\n\
     retained_message_ttl = \"0s\"\n";
/// How long shutdown waits for the broker's tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the embedded broker could not start. The messages name the address and the option.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedBrokerError {
    /// Something else holds the TCP port, most likely another MQTT broker.
    #[error(
        "cannot start the embedded broker on {addr}: address already in use; another MQTT \
         broker (mosquitto?) may be running — point the gateway at it with --broker \
         mqtt://{}, or move the embedded broker with [embedded_broker] listen \
         (another address, or \"off\" for no listener)",
        connect_addr(*addr)
    )]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address cannot be bound for another reason (not an address of this machine, a
    /// privileged port).
    #[error(
        "cannot start the embedded broker on {addr}: {reason}; change [embedded_broker] listen \
         (an address of this machine, like \"127.0.0.1:1883\", or \"off\")"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
    /// The broker's thread or runtime could not be created, or it stopped while starting.
    #[error("cannot start the embedded broker: {reason}")]
    Start {
        /// What failed.
        reason: String,
    },
}

/// A running embedded broker. Stop it with [`EmbeddedBroker::shutdown`]; dropping it stops it
/// too, without waiting.
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// The bound address.
    bound: SocketAddr,
    /// Whether local apps were meant to connect (`listen` not `"off"`).
    public: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts the broker and returns once it listens. A taken port is
    /// [`EmbeddedBrokerError::AddrInUse`].
    pub async fn start(
        config: &EmbeddedBrokerConfig,
    ) -> Result<EmbeddedBroker, EmbeddedBrokerError> {
        let addr = config.listen.unwrap_or(EPHEMERAL_LOOPBACK);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".to_string())
            .spawn(move || serve(addr, ready_tx, stop_rx))
            .map_err(|e| EmbeddedBrokerError::Start {
                reason: format!("cannot create its thread: {e}"),
            })?;
        match ready_rx.await {
            Ok(Ok(bound)) => Ok(EmbeddedBroker {
                bound,
                public: config.listen.is_some(),
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            // The thread ends by itself after reporting the error.
            Ok(Err(error)) => Err(error),
            Err(_) => Err(EmbeddedBrokerError::Start {
                reason: "its thread stopped before the broker listened".to_string(),
            }),
        }
    }

    /// The address local MQTT apps connect to, or `None` with `listen = "off"`.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.public.then_some(self.bound)
    }

    /// The address the gateway's own link connects to: the bound address, with a wildcard IP
    /// (`0.0.0.0`, `::`) replaced by loopback.
    pub fn link_addr(&self) -> SocketAddr {
        connect_addr(self.bound)
    }

    /// The broker link's configuration for this broker: a plain TCP connection on loopback,
    /// CleanSession=1 (the core re-subscribes and replays after every connect), quick
    /// reconnects (the broker is in the same process, so an outage is a brief one).
    pub fn link_config(&self) -> BrokerLinkConfig {
        BrokerLinkConfig {
            options: BrokerConfig {
                client_id: LINK_CLIENT_ID.to_string(),
                clean_session: true,
                connect_timeout: Duration::from_secs(5),
                reconnect_min: Duration::from_millis(50),
                reconnect_max: Duration::from_secs(1),
                // The gateway's status goes to the remote broker only.
                status_topic: None,
                ..BrokerConfig::plain(self.link_addr())
            },
            tls: None,
        }
    }

    /// Stops the broker: closes its listener and every client connection, and waits (at most
    /// a few seconds) for its thread to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                error!("the embedded broker's thread ended abnormally");
            }
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `addr` with a wildcard IP replaced by the loopback address of its family.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The broker thread: its own runtime, the broker on it until `stop`, then the runtime dropped
/// with everything on it.
fn serve(
    addr: SocketAddr,
    ready: oneshot::Sender<Result<SocketAddr, EmbeddedBrokerError>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(EmbeddedBrokerError::Start {
                reason: format!("cannot create its async runtime: {e}"),
            }));
            return;
        }
    };
    runtime.block_on(async move {
        let (server, bound) = match build(addr).await {
            Ok(built) => built,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        if ready.send(Ok(bound)).is_err() {
            return;
        }
        tokio::select! {
            // The listeners loop for ever; `run` returns only if every one of them ended.
            result = server.run() => match result {
                Ok(()) => error!(%bound, "the embedded broker stopped listening"),
                Err(error) => error!(%bound, %error, "the embedded broker failed"),
            },
            _ = stop => debug!(%bound, "embedded broker stopping"),
        }
    });
    // Cancels every connection task rmqtt spawned and closes its sockets.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
}

/// The broker context, its retainer plugin, and the bound listener.
async fn build(addr: SocketAddr) -> Result<(MqttServer, SocketAddr), EmbeddedBrokerError> {
    let scx = ServerContext::new()
        // rmqtt refuses connections while the machine's CPU load is above 90 %; an edge box
        // that is busy must still serve its own motes.
        .busy_check_enable(false)
        .plugins_config_map_add("rmqtt-retainer", RETAINER_CONFIG)
        .build()
        .await;
    // Without the retainer, rmqtt drops the retain flag's message silently.
    rmqtt_retainer::register(&scx, true, false)
        .await
        .map_err(|e| EmbeddedBrokerError::Start {
            reason: format!("its retained-message store did not start: {e}"),
        })?;
    let listener = Builder::new()
        .name("embedded")
        .laddr(addr)
        // A restart must be able to bind again while old connections are in TIME_WAIT; on
        // Linux this does not let two listeners share the port.
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_packet_size(MAX_PACKET)
        .session_expiry_interval(SESSION_EXPIRY)
        .message_expiry_interval(SESSION_EXPIRY)
        .bind()
        .and_then(|listener| listener.tcp())
        .map_err(|error| bind_error(addr, &error))?;
    let bound = listener
        .local_addr()
        .map_err(|error| bind_error(addr, &error))?;
    let server = MqttServer::new(scx).listener_by_id(listener, 1).build();
    Ok((server, bound))
}

fn bind_error(addr: SocketAddr, error: &rmqtt::Error) -> EmbeddedBrokerError {
    let io = error.chain().find_map(|e| e.downcast_ref::<io::Error>());
    match io {
        Some(io) if io.kind() == io::ErrorKind::AddrInUse => {
            EmbeddedBrokerError::AddrInUse { addr }
        }
        Some(io) => EmbeddedBrokerError::Bind {
            addr,
            reason: io.to_string(),
        },
        None => EmbeddedBrokerError::Bind {
            addr,
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_reached_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        assert_eq!(
            connect_addr(v4),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1883)
        );
        let v6: SocketAddr = "[::]:1884".parse().unwrap();
        assert_eq!(
            connect_addr(v6),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 1884)
        );
        let lan: SocketAddr = "192.0.2.7:1883".parse().unwrap();
        assert_eq!(connect_addr(lan), lan);
    }

    #[test]
    fn the_port_taken_message_names_the_port_and_the_option() {
        let addr = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 1883);
        let text = EmbeddedBrokerError::AddrInUse { addr }.to_string();
        assert!(
            text.contains("0.0.0.0:1883: address already in use"),
            "{text}"
        );
        assert!(text.contains("--broker mqtt://127.0.0.1:1883"), "{text}");
        assert!(text.contains("[embedded_broker] listen"), "{text}");
    }
}
