//! A forwarder (v1.2 §5.5) on real UDP: motes talk plain MQTT-SN to a "radio" socket per
//! wireless node; the forwarder wraps each datagram in a 0xFE frame with that node's id and
//! relays it to the gateway from its one forwarder socket. Frames from the gateway are
//! unwrapped and handed to the mote of the node id they carry, and every one is logged, so a
//! test can check that replies are wrapped with the right node id.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use sn_codec::v12::{Forwarded, Frame};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the forwarder saw from the gateway, shared with the test.
#[derive(Debug, Default, Clone)]
pub struct ForwarderLog {
    /// Frames from the gateway: (node id, inner message type byte). The node id is `None` for
    /// a datagram that was not a 0xFE frame.
    pub from_gateway: Vec<(Option<Vec<u8>>, u8)>,
    /// Frames for a node id the forwarder does not serve.
    pub unknown_node: usize,
}

/// A forwarder relaying for a fixed set of node ids.
#[derive(Debug)]
pub struct Forwarder {
    radios: Vec<(Vec<u8>, SocketAddr)>,
    addr: SocketAddr,
    log: Arc<Mutex<ForwarderLog>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts a forwarder for `nodes` relaying to the gateway at `gateway`.
    pub async fn start(gateway: SocketAddr, nodes: &[&[u8]]) -> Forwarder {
        let socket = Arc::new(
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind the forwarder socket"),
        );
        let addr = socket.local_addr().expect("forwarder address");
        let mut radios = Vec::new();
        let mut tasks = Vec::new();
        let motes: Arc<Mutex<Vec<Option<SocketAddr>>>> =
            Arc::new(Mutex::new(vec![None; nodes.len()]));
        let log = Arc::new(Mutex::new(ForwarderLog::default()));
        let mut radio_sockets = Vec::new();
        for (index, node) in nodes.iter().enumerate() {
            let radio = Arc::new(
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .await
                    .expect("bind a radio socket"),
            );
            radios.push((node.to_vec(), radio.local_addr().expect("radio address")));
            radio_sockets.push(radio.clone());
            // Mote → gateway: wrap with this node's id.
            let node = node.to_vec();
            let socket = socket.clone();
            let motes = motes.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((len, from)) = radio.recv_from(&mut buf).await else {
                        return;
                    };
                    if let Some(slot) = motes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(index)
                    {
                        *slot = Some(from);
                    }
                    let inner = buf.get(..len).unwrap_or_default();
                    let Ok(packet) = sn_codec::v12::Packet::decode(inner) else {
                        continue;
                    };
                    let frame = Frame::Forwarded(Forwarded {
                        radius: 0,
                        node_id: &node,
                        packet,
                    });
                    let Ok(bytes) = frame.to_vec() else { continue };
                    let _ = socket.send_to(&bytes, gateway).await;
                }
            }));
        }
        // Gateway → motes: unwrap, route by node id, log.
        let nodes_owned: Vec<Vec<u8>> = nodes.iter().map(|n| n.to_vec()).collect();
        let log_task = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((len, _)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let datagram = buf.get(..len).unwrap_or_default();
                let (node, msg_type, inner) = match Frame::decode(datagram) {
                    Ok(Frame::Forwarded(f)) => {
                        let header = usize::from(*datagram.first().unwrap_or(&0));
                        (
                            Some(f.node_id.to_vec()),
                            f.packet.msg_type().to_u8(),
                            datagram.get(header..).unwrap_or_default(),
                        )
                    }
                    Ok(Frame::Packet(p)) => (None, p.msg_type().to_u8(), datagram),
                    Err(_) => (None, 0xFF, datagram),
                };
                let target = node
                    .as_ref()
                    .and_then(|n| nodes_owned.iter().position(|known| known == n));
                {
                    let mut log = log_task.lock().unwrap_or_else(PoisonError::into_inner);
                    log.from_gateway.push((node.clone(), msg_type));
                    if node.is_some() && target.is_none() {
                        log.unknown_node += 1;
                    }
                }
                let Some(index) = target else { continue };
                let mote = motes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(index)
                    .copied()
                    .flatten();
                if let (Some(mote), Some(radio)) = (mote, radio_sockets.get(index)) {
                    let _ = radio.send_to(inner, mote).await;
                }
            }
        }));
        Forwarder {
            radios,
            addr,
            log,
            tasks,
        }
    }

    /// The address a mote behind `node` sends to (instead of the gateway's).
    pub fn radio_addr(&self, node: &[u8]) -> SocketAddr {
        self.radios
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, addr)| *addr)
            .expect("a node this forwarder serves")
    }

    /// The forwarder's own address, which the gateway sees.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it received from the gateway so far.
    pub fn log(&self) -> ForwarderLog {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
