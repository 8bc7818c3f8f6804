//! QoS 2 from many motes through the aggregating link into a real mosquitto with both
//! programs' default settings (issue 18): mosquitto takes at most 20 incoming QoS 2
//! messages of one client at once (`max_inflight_messages`) and discards one beyond after
//! answering PUBREC, so the gateway must keep fewer outstanding (`max_inflight_qos2`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::Duration;

use sn_tests::{Gateway, Mosquitto, Mote, MqttClient, QoS, Topic};

const MOTES: usize = 50;
const PER_MOTE: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_qos2_message_of_fifty_motes_arrives_once() {
    let broker = Mosquitto::running().await;
    let gateway = Gateway::start(broker.port()).await;
    let mut collector = MqttClient::connect(broker.port(), "q2up-collector").await;
    assert_eq!(collector.subscribe("q2up/+", 2).await, 2);

    let mut publishers = Vec::new();
    for m in 0..MOTES {
        let addr = gateway.addr();
        publishers.push(tokio::spawn(async move {
            let mut mote = Mote::connected(addr, &format!("q2up-{m}")).await;
            mote.op_timeout = Duration::from_secs(30);
            let id = mote.register(&format!("q2up/{m}")).await;
            for seq in 0..PER_MOTE {
                mote.publish_reliably(
                    Topic::Normal(id),
                    QoS::ExactlyOnce,
                    false,
                    seq.to_string().as_bytes(),
                )
                .await;
            }
        }));
    }
    for publisher in publishers {
        tokio::time::timeout(Duration::from_secs(60), publisher)
            .await
            .expect("every mote finished within 60 s")
            .unwrap();
    }
    let total = MOTES * PER_MOTE;
    let mut seen: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Once all arrived, a short wait more shows any duplicate.
        let left = if seen.len() < total {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_millis(500)
        };
        let Some(message) = collector.try_recv(left).await else {
            break;
        };
        let mote: usize = message.topic.trim_start_matches("q2up/").parse().unwrap();
        let seq: usize = message.text().parse().unwrap();
        *seen.entry((mote, seq)).or_default() += 1;
        received += 1;
    }
    let lost = total - seen.len();
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "QoS 2, {MOTES} motes x {PER_MOTE}: {} of {total} distinct messages arrived, \
         {received} received",
        seen.len()
    );
    assert_eq!(
        lost, 0,
        "{lost} of {total} acknowledged QoS 2 messages lost"
    );
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
}
