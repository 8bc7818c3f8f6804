//! Durable state: what the core asks the store to keep, and a gateway rebuilt from it. A
//! fake store applies the operations exactly as the real one must (in order, per batch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sn_codec::v12::{Disconnect, Packet, PubAck, ReturnCode, Subscribe, SubscribeTopic};
use sn_codec::QoS;
use sn_core::{
    BrokerCommand, BrokerEvent, CoreConfig, Gateway, MqttQoS, Peer, Restored, SessionRecord,
    SessionState, SpooledPublish, StoreOp, StoredMessage, StoredState,
};

use crate::harness::{peer, Harness};

/// An in-memory stand-in for the redb store.
#[derive(Default)]
pub struct FakeStore {
    sessions: HashMap<Arc<str>, SessionRecord>,
    messages: BTreeMap<(Arc<str>, u64), StoredMessage>,
    pub spool: BTreeMap<u64, SpooledPublish>,
}

impl FakeStore {
    /// Applies what the harness wrote since the last call.
    pub fn apply(&mut self, h: &mut Harness) {
        for op in h.store_ops() {
            match op {
                StoreOp::PutSession(record) => {
                    self.sessions.insert(record.client_id.clone(), record);
                }
                StoreOp::DeleteSession { client_id } => {
                    self.sessions.remove(&client_id);
                    self.messages.retain(|(c, _), _| *c != client_id);
                }
                StoreOp::PutMessage {
                    client_id,
                    seq,
                    message,
                } => {
                    self.messages.insert((client_id, seq), message);
                }
                StoreOp::DeleteMessage { client_id, seq } => {
                    self.messages.remove(&(client_id, seq));
                }
                StoreOp::PutSpool { id, message } => {
                    self.spool.insert(id, message);
                }
                StoreOp::DeleteSpool { id } => {
                    self.spool.remove(&id);
                }
            }
        }
    }

    pub fn restored(&self) -> Restored {
        Restored {
            sessions: self.sessions.values().cloned().collect(),
            messages: self
                .messages
                .iter()
                .map(|((c, seq), m)| (c.clone(), *seq, m.clone()))
                .collect(),
            spool: self.spool.iter().map(|(id, m)| (*id, m.clone())).collect(),
        }
    }
}

/// Subscribes `m` to `filter` at QoS 1 and completes the broker side.
fn subscribe(h: &mut Harness, m: Peer, filter: &str) -> u16 {
    h.send(
        m,
        Packet::Subscribe(Subscribe {
            dup: false,
            qos: QoS::AtLeastOnce,
            msg_id: 1,
            topic: SubscribeTopic::Name(filter.as_bytes()),
        }),
    );
    h.commands();
    h.broker(BrokerEvent::SubAck {
        filter: filter.into(),
        granted: Some(MqttQoS::AtLeastOnce),
    });
    let sent = h.sent_to(m);
    match Packet::decode(&sent[0]).unwrap() {
        Packet::SubAck(s) => s.topic_id,
        other => panic!("{other:?}"),
    }
}

/// A gateway rebuilt from `store`, its broker link up.
pub fn restart(h: &Harness, store: &FakeStore) -> Harness {
    let mut gw = Gateway::new(CoreConfig::default());
    gw.restore(h.now, store.restored());
    let mut h2 = Harness::from_gateway(gw, h.now);
    h2.broker(BrokerEvent::Connected {
        session_present: false,
    });
    h2
}

#[test]
fn an_active_clean_client_writes_nothing() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "c", true, 60);
    subscribe(&mut h, m, "t");
    h.message("t", b"x", MqttQoS::AtLeastOnce, false);
    assert!(h.store_ops().is_empty());
    store.apply(&mut h);
    assert!(store.sessions.is_empty());
}

#[test]
fn a_sleeping_client_and_its_messages_survive_a_restart() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "s", true, 60);
    let id = subscribe(&mut h, m, "cmd/s");
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(300),
        }),
    );
    h.transmits();
    for i in 0..3u8 {
        h.message("cmd/s", &[b'0' + i], MqttQoS::AtLeastOnce, false);
    }
    store.apply(&mut h);
    let record = &store.sessions["s"];
    assert_eq!(record.state, StoredState::Asleep);
    assert_eq!(record.sleep, 300);
    assert_eq!(record.subscriptions.len(), 1);
    assert_eq!(store.messages.len(), 3);

    // The gateway restarts; the client is still asleep and knows nothing of it.
    let mut h2 = restart(&h, &store);
    // Its subscription goes back upstream.
    assert_eq!(
        h2.commands(),
        vec![BrokerCommand::Subscribe {
            filter: "cmd/s".into(),
            qos: MqttQoS::AtLeastOnce
        }]
    );
    h2.transmits();
    assert_eq!(h2.gw.session_info("s").unwrap().state, SessionState::Asleep);
    // Wakes: the three messages, in order, with the topic id from before.
    h2.send(m, Packet::PingReq { client_id: b"s" });
    for expected in [b"0", b"1", b"2"] {
        let sent = h2.sent_to(m);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let Packet::Publish(p) = Packet::decode(&sent[0]).unwrap() else {
            panic!("{sent:?}")
        };
        assert_eq!(
            (p.data, p.topic),
            (&expected[..], sn_codec::v12::PublishTopic::Normal(id))
        );
        h2.send(
            m,
            Packet::PubAck(PubAck {
                topic_id: id,
                msg_id: p.msg_id,
                return_code: ReturnCode::Accepted,
            }),
        );
    }
    h2.expect(m, &[Packet::PingResp]);
    // Delivered: gone from the store.
    store.apply(&mut h2);
    assert!(store.messages.is_empty());
    assert_eq!(store.sessions["s"].state, StoredState::Asleep);
}

#[test]
fn an_offline_session_stays_bound_to_its_address_across_a_restart() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let (m, thief) = (peer(1000), peer(6666));
    h.connect(m, "p", false, 60);
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    h.sent_to(m);
    store.apply(&mut h);
    let mut h2 = restart(&h, &store);
    h2.drain();
    h2.send(
        thief,
        Packet::Connect(sn_codec::v12::Connect {
            will: false,
            clean_session: false,
            protocol_id: 1,
            duration: 60,
            client_id: b"p",
        }),
    );
    h2.expect(
        thief,
        &[Packet::ConnAck {
            return_code: ReturnCode::NotSupported,
        }],
    );
    h2.connect(m, "p", false, 60);
}

#[test]
fn a_persistent_session_keeps_subscriptions_and_qos1_messages_while_offline() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "p", false, 60);
    subscribe(&mut h, m, "news/#");
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    h.transmits();
    h.message("news/a", b"kept", MqttQoS::AtLeastOnce, false);
    h.message("news/a", b"qos0", MqttQoS::AtMostOnce, false);
    store.apply(&mut h);
    assert_eq!(store.sessions["p"].state, StoredState::Offline);
    assert_eq!(
        store.messages.len(),
        1,
        "QoS 0 is not kept for an offline client"
    );

    let mut h2 = restart(&h, &store);
    h2.drain();
    h2.connect_expecting_more(m, "p", false, 60);
    // CONNACK, then REGISTER for the wildcard's concrete topic, then (after REGACK) the message.
    let sent = h2.sent_to(m);
    let Packet::Register(reg) = Packet::decode(&sent[0]).unwrap() else {
        panic!("{sent:?}")
    };
    assert_eq!(reg.topic_name, b"news/a");
}

#[test]
fn a_clean_disconnect_of_a_sleeper_deletes_its_record() {
    let mut h = Harness::new();
    let mut store = FakeStore::default();
    let m = peer(1000);
    h.connect(m, "z", true, 60);
    subscribe(&mut h, m, "t");
    h.send(m, Packet::Disconnect(Disconnect { duration: Some(60) }));
    h.transmits();
    h.message("t", b"1", MqttQoS::AtLeastOnce, false);
    store.apply(&mut h);
    assert_eq!(store.sessions.len(), 1);
    // Wakes with CONNECT clean: the old session is over.
    h.connect_expecting_more(m, "z", true, 60);
    h.send(m, Packet::Disconnect(Disconnect { duration: None }));
    store.apply(&mut h);
    assert!(store.sessions.is_empty());
    assert!(store.messages.is_empty());
}

#[test]
fn a_broker_message_for_a_sleeper_is_acknowledged_upstream_in_the_turn_that_stores_it() {
    let mut h = Harness::new();
    let m = peer(1000);
    h.connect(m, "s", true, 60);
    subscribe(&mut h, m, "cmd/s");
    h.send(
        m,
        Packet::Disconnect(Disconnect {
            duration: Some(300),
        }),
    );
    h.transmits();
    h.broker(BrokerEvent::Message {
        topic: "cmd/s".into(),
        payload: bytes::Bytes::from_static(b"on"),
        qos: MqttQoS::AtLeastOnce,
        retain: false,
        delivery: Some(sn_core::DeliveryId(7)),
    });
    // The upstream acknowledgement waits for the write that holds the message: the core
    // hands it out only once the batch with the message is reported written.
    let batch = h.gw.poll_store().expect("the message is stored");
    assert!(
        batch
            .ops
            .iter()
            .any(|op| matches!(op, StoreOp::PutMessage { client_id, .. } if &**client_id == "s")),
        "{batch:?}"
    );
    assert_eq!(h.commands(), vec![], "no acknowledgement before the write");
    assert_eq!(h.gw.unwritten_batches(), 1);
    h.gw.handle_stored(batch.id);
    assert_eq!(
        h.commands(),
        vec![BrokerCommand::Ack {
            delivery: sn_core::DeliveryId(7)
        }]
    );
    assert_eq!(h.gw.session_info("s").unwrap().queued, 1);
}
