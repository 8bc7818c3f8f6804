//! Memory per mote connection in transparent mode: opens mote connections through
//! [`TransparentLinks`] (the runtime's manager, no core) to a local broker in steps (by
//! default 1 000, then up to 10 000), each mote with a Will, one QoS 1 subscription and one
//! QoS 1 publish acknowledged, and reads this process's VmRSS before and after each step.
//!
//! ```sh
//! printf 'listener 18940 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' > /tmp/mosq-scale.conf
//! ulimit -n 65536
//! mosquitto -c /tmp/mosq-scale.conf &
//! cargo run --release -p mqtt-sn-gateway --example transparent_scale -- 18940 1000,10000
//! ```
//!
//! Arguments: the broker's port on 127.0.0.1 (default 1883), the steps as cumulative
//! connection counts (default `1000,10000`). Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_sn_gateway::broker::{BrokerLinkConfig, TransparentSettings};
use mqtt_sn_gateway::core::{
    BrokerCommand, BrokerEvent, MoteWill, MqttQoS, PublishId, UplinkPublish,
};
use mqtt_sn_gateway::runtime::TransparentLinks;
use sn_config::BrokerConfig;

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn open_files_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".to_string())
}

fn mote_id(n: usize) -> Arc<str> {
    Arc::from(format!("scale-{n:05}").as_str())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).map_or(1883, |a| a.parse().expect("a port"));
    let steps: Vec<usize> = args.get(2).map_or(vec![1000, 10_000], |a| {
        a.split(',')
            .map(|n| n.trim().parse().expect("a count"))
            .collect()
    });
    let settings = TransparentSettings {
        broker: BrokerLinkConfig {
            options: BrokerConfig {
                client_id: "transparent-scale".into(),
                clean_session: true,
                connect_timeout: Duration::from_secs(30),
                reconnect_min: Duration::from_millis(500),
                reconnect_max: Duration::from_secs(30),
                client_id_prefix: String::new(),
                max_connecting: 100,
                ..BrokerConfig::plain(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            },
            tls: None,
        },
        credentials: Vec::new(),
    };
    println!(
        "broker 127.0.0.1:{port}, steps {steps:?}, open files limit {}",
        open_files_limit()
    );
    let mut links = TransparentLinks::start(&settings).expect("transparent links");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_kib();
    println!("RSS before any connection: {:.1} MiB", base as f64 / 1024.0);
    let mut opened = 0;
    for target in steps {
        let started = Instant::now();
        for n in opened..target {
            let will = MoteWill {
                topic: format!("scale/{n}/status").into(),
                payload: Bytes::from_static(b"offline"),
                qos: MqttQoS::AtLeastOnce,
                retain: false,
            };
            links.send(
                mote_id(n),
                BrokerCommand::Connect {
                    keep_alive: Duration::from_secs(60),
                    clean_session: true,
                    will: Some(will),
                    own_login: false,
                },
            );
        }
        // Per mote: Connected, then its SUBACK and its PUBACK.
        let mut pending: HashMap<Arc<str>, u8> =
            (opened..target).map(|n| (mote_id(n), 3)).collect();
        let mut connected = 0;
        while !pending.is_empty() {
            let (client_id, event) = tokio::time::timeout(Duration::from_secs(120), links.recv())
                .await
                .unwrap_or_else(|_| panic!("{} motes still waiting after 120 s", pending.len()))
                .expect("links running");
            match &event {
                BrokerEvent::Connected { .. } => {
                    connected += 1;
                    let topic: Arc<str> = format!("scale/{client_id}/down").into();
                    links.send(
                        client_id.clone(),
                        BrokerCommand::Subscribe {
                            filter: topic,
                            qos: MqttQoS::AtLeastOnce,
                        },
                    );
                    links.send(
                        client_id.clone(),
                        BrokerCommand::Publish(UplinkPublish {
                            id: Some(PublishId(1)),
                            topic: format!("scale/{client_id}/up").into(),
                            payload: Bytes::from_static(b"21.5"),
                            qos: MqttQoS::AtLeastOnce,
                            retain: false,
                            replay: false,
                        }),
                    );
                }
                BrokerEvent::SubAck { .. } | BrokerEvent::PublishAcked { .. } => {}
                other => panic!("{client_id}: unexpected {other:?}"),
            }
            let left = pending.get_mut(&client_id).expect("a mote of this step");
            *left -= 1;
            if *left == 0 {
                pending.remove(&client_id);
            }
        }
        let elapsed = started.elapsed();
        opened = target;
        // Let freed buffers settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_kib();
        let grown = rss.saturating_sub(base);
        println!(
            "{target} connections ({connected} new, connected + subscribed + 1 QoS 1 publish in {:.1} s): \
             RSS {:.1} MiB, +{:.1} MiB since start, {:.1} KiB per connection",
            elapsed.as_secs_f64(),
            rss as f64 / 1024.0,
            grown as f64 / 1024.0,
            grown as f64 / target as f64,
        );
        assert_eq!(links.len(), target);
    }
    links.shutdown().await;
}
