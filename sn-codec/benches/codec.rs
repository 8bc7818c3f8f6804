//! Decode and encode cost of the two packets that dominate gateway traffic: a QoS 1 PUBLISH
//! with a 32-byte payload and a CONNECT. Run with `cargo bench -p sn-codec`; figures go to
//! docs/benchmarks.md.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::BytesMut;
use divan::Bencher;
use sn_codec::v12::{Connect, Packet, Publish, PublishTopic};
use sn_codec::QoS;

fn main() {
    divan::main();
}

const PAYLOAD: [u8; 32] = [0x5A; 32];

fn publish() -> Packet<'static> {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(0x0102),
        msg_id: 0x0304,
        data: &PAYLOAD,
    })
}

fn connect() -> Packet<'static> {
    Packet::Connect(Connect {
        will: true,
        clean_session: true,
        protocol_id: 0x01,
        duration: 60,
        client_id: b"sensor-0042-kitchen",
    })
}

fn bench_decode(bencher: Bencher, packet: Packet<'static>) {
    let bytes = packet.to_vec().unwrap();
    bencher.bench(|| Packet::decode(black_box(&bytes)).unwrap());
}

fn bench_encode(bencher: Bencher, packet: Packet<'static>) {
    let mut buf = BytesMut::with_capacity(256);
    bencher.bench_local(|| {
        buf.clear();
        black_box(&packet).encode(&mut buf).unwrap();
        black_box(&buf);
    });
}

/// Decode then re-encode, the gateway's hot path for a forwarded PUBLISH.
fn bench_round_trip(bencher: Bencher, packet: Packet<'static>) {
    let bytes = packet.to_vec().unwrap();
    let mut buf = BytesMut::with_capacity(256);
    bencher.bench_local(|| {
        buf.clear();
        let decoded = Packet::decode(black_box(&bytes)).unwrap();
        decoded.encode(&mut buf).unwrap();
        black_box(&buf);
    });
}

#[divan::bench]
fn publish_qos1_32b_decode(bencher: Bencher) {
    bench_decode(bencher, publish());
}

#[divan::bench]
fn publish_qos1_32b_encode(bencher: Bencher) {
    bench_encode(bencher, publish());
}

#[divan::bench]
fn publish_qos1_32b_decode_encode(bencher: Bencher) {
    bench_round_trip(bencher, publish());
}

#[divan::bench]
fn connect_decode(bencher: Bencher) {
    bench_decode(bencher, connect());
}

#[divan::bench]
fn connect_encode(bencher: Bencher) {
    bench_encode(bencher, connect());
}

#[divan::bench]
fn connect_decode_encode(bencher: Bencher) {
    bench_round_trip(bencher, connect());
}
