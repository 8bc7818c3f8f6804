//! Property: whatever unauthenticated peers send (CONNECTs from many sources and client ids,
//! subscriptions to everything, sleeps of any length, garbage) and whatever the broker then
//! publishes, the sessions, the bytes queued in memory and the messages in the store, and the
//! names, filters and client ids sessions hold in memory and in the store, stay within the
//! configured caps.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sn_codec::v12::{Connect, Disconnect, Packet, Register, Subscribe, SubscribeTopic};
use sn_codec::QoS;
use sn_core::{BrokerEvent, CoreConfig, MqttQoS, Peer, PeerAddr, StoreOp};

use crate::harness::{Harness, LINK};

const MAX_SESSIONS: usize = 40;
const PER_ADDRESS: usize = 8;
const MAX_TOTAL: usize = 8 * 1024;
const MAX_STATE: usize = 4 * 1024;
const SOURCES: u8 = 12;

#[derive(Debug, Clone)]
enum Op {
    /// A CONNECT (CleanSession=0) from source `src`, port `port`, with client id `id`,
    /// REGISTERs of names `names` bytes long, SUBSCRIBE `#`, then sleep for `sleep` seconds.
    Sleeper {
        src: u8,
        port: u16,
        id: u16,
        sleep: u16,
        names: Vec<usize>,
    },
    /// A broker message of `len` bytes on a topic every sleeper matches.
    Message { len: usize, qos1: bool },
    /// Random bytes from a source.
    Garbage { src: u8, bytes: Vec<u8> },
    /// Time passes.
    Wait { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SOURCES, 1..2000u16, 0..300u16, any::<u16>(), proptest::collection::vec(1..400usize, 0..6))
            .prop_map(|(src, port, id, sleep, names)| Op::Sleeper { src, port, id, sleep, names }),
        4 => (0..900usize, any::<bool>()).prop_map(|(len, qos1)| Op::Message { len, qos1 }),
        1 => (0..SOURCES, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(src, bytes)| Op::Garbage { src, bytes }),
        1 => (0..120u64).prop_map(|secs| Op::Wait { secs }),
    ]
}

fn from(src: u8, port: u16) -> Peer {
    Peer {
        link: LINK,
        addr: PeerAddr::Ip(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, src)),
            port,
        )),
    }
}

/// What the store holds, from the operations written to it.
#[derive(Default)]
struct StoreModel {
    sessions: HashMap<Arc<str>, Option<IpAddr>>,
    /// Per stored session: its client id, topic names and filters, in bytes.
    held: HashMap<Arc<str>, usize>,
    messages: HashMap<(Arc<str>, u64), usize>,
}

impl StoreModel {
    fn apply(&mut self, ops: Vec<StoreOp>) {
        for op in ops {
            match op {
                StoreOp::PutSession(record) => {
                    let ip = record.addr.as_ref().and_then(|a| match a.peer.addr {
                        PeerAddr::Ip(socket) => Some(socket.ip()),
                        PeerAddr::Radio(_) => None,
                    });
                    let held = record.client_id.len()
                        + record
                            .topics
                            .iter()
                            .map(|(_, name, _)| name.len())
                            .sum::<usize>()
                        + record
                            .subscriptions
                            .iter()
                            .map(|s| s.filter.len())
                            .sum::<usize>();
                    self.held.insert(record.client_id.clone(), held);
                    self.sessions.insert(record.client_id.clone(), ip);
                }
                StoreOp::DeleteSession { client_id } => {
                    self.sessions.remove(&client_id);
                    self.held.remove(&client_id);
                    self.messages.retain(|(id, _), _| *id != client_id);
                }
                StoreOp::PutMessage {
                    client_id,
                    seq,
                    message,
                } => {
                    self.messages.insert(
                        (client_id, seq),
                        message.payload.len() + message.topic.len() + 64,
                    );
                }
                StoreOp::DeleteMessage { client_id, seq } => {
                    self.messages.remove(&(client_id, seq));
                }
                StoreOp::PutSpool { .. } | StoreOp::DeleteSpool { .. } => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn unadmitted_input_stays_within_the_caps(ops in proptest::collection::vec(op(), 1..250)) {
        let mut h = Harness::with_config(CoreConfig {
            max_sessions: MAX_SESSIONS,
            max_sessions_per_address: PER_ADDRESS,
            max_queued_bytes_total: MAX_TOTAL,
            max_state_bytes: MAX_STATE,
            max_sleep_duration: Duration::from_secs(600),
            connect_rate: 20,
            ..CoreConfig::default()
        });
        let mut store = StoreModel::default();
        for op in ops {
            match op {
                Op::Sleeper { src, port, id, sleep, names } => {
                    let peer = from(src, port);
                    let id = format!("m{id}");
                    h.send(peer, Packet::Connect(Connect {
                        will: false,
                        clean_session: false,
                        protocol_id: 1,
                        duration: 60,
                        client_id: id.as_bytes(),
                    }));
                    for (i, len) in names.iter().enumerate() {
                        let name = format!("{i}{}", "n".repeat(*len));
                        h.send(peer, Packet::Register(Register {
                            topic_id: 0,
                            msg_id: 10 + i as u16,
                            topic_name: name.as_bytes(),
                        }));
                    }
                    h.send(peer, Packet::Subscribe(Subscribe {
                        dup: false,
                        qos: QoS::AtLeastOnce,
                        msg_id: 1,
                        topic: SubscribeTopic::Name(b"#"),
                    }));
                    h.broker(BrokerEvent::SubAck { filter: "#".into(), granted: Some(MqttQoS::AtLeastOnce) });
                    h.send(peer, Packet::Disconnect(Disconnect { duration: Some(sleep.max(1)) }));
                }
                Op::Message { len, qos1 } => {
                    let qos = if qos1 { MqttQoS::AtLeastOnce } else { MqttQoS::AtMostOnce };
                    h.message("a/b", &vec![7; len], qos, false);
                }
                Op::Garbage { src, bytes } => h.raw(from(src, 1), &bytes),
                Op::Wait { secs } => h.advance(Duration::from_secs(secs)),
            }
            h.transmits();
            h.commands();
            h.events();
            store.apply(h.store_ops());

            prop_assert!(h.gw.session_count() <= MAX_SESSIONS);
            prop_assert!(h.gw.queued_bytes() <= MAX_TOTAL / 2, "open-admitted motes fill at most half");
            prop_assert!(store.sessions.len() <= MAX_SESSIONS);
            let stored_bytes: usize = store.messages.values().sum();
            prop_assert!(stored_bytes <= MAX_TOTAL / 2, "stored {stored_bytes}");
            prop_assert!(h.gw.held_bytes() <= MAX_STATE / 2);
            let stored_held: usize = store.held.values().sum();
            prop_assert!(stored_held <= MAX_STATE / 2, "stored names {stored_held}");
            let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
            for ip in store.sessions.values().flatten() {
                *per_ip.entry(*ip).or_default() += 1;
            }
            prop_assert!(per_ip.values().all(|n| *n <= PER_ADDRESS), "{per_ip:?}");
        }
    }
}
