//! Cost of the durable store's write policy: one redb transaction with an fsync per batch.
//! Run with `cargo bench -p mqtt-sn-gateway --bench store`; figures in docs/benchmarks.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use divan::Bencher;
use mqtt_sn_gateway::core::{MqttQoS, StoreOp, StoredMessage, StoredRoute};
use mqtt_sn_gateway::store::Store;

fn main() {
    divan::main();
}

fn store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("sn-store-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Store::open(&dir.join("state.redb")).unwrap()
}

fn put(seq: u64) -> StoreOp {
    StoreOp::PutMessage {
        client_id: Arc::from("mote-0001"),
        seq,
        message: StoredMessage {
            topic: Arc::from("cmd/mote-0001/led"),
            payload: Bytes::from_static(&[0x5A; 32]),
            qos: MqttQoS::AtLeastOnce,
            retain: false,
            route: StoredRoute::Normal,
        },
    }
}

/// One message stored, one fsync: the cost per broker message for a sleeping mote when
/// messages arrive one at a time.
#[divan::bench(sample_count = 50, sample_size = 1)]
fn one_message_per_commit(bencher: Bencher) {
    let store = store("one");
    let mut seq = 0;
    bencher.bench_local(|| {
        seq += 1;
        store.apply(&[put(seq)]).unwrap();
    });
}

/// 100 messages in one batch (a burst handled in one runtime turn): one fsync for all.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn hundred_messages_per_commit(bencher: Bencher) {
    let store = store("hundred");
    let mut seq = 0;
    bencher.bench_local(|| {
        let ops: Vec<StoreOp> = (0..100)
            .map(|_| {
                seq += 1;
                put(seq)
            })
            .collect();
        store.apply(&ops).unwrap();
    });
}
