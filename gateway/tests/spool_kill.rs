//! The spool survives `kill -9`: the real gateway binary takes QoS 1 messages into its spool
//! while the broker is down, is killed with SIGKILL mid-stream, starts again from the same
//! store, and every message it had acknowledged to the mote reaches the broker's subscriber.
//! Needs mosquitto (`apt-get install mosquitto`); fails, never skips, without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket as StdUdp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS as MqttQoS};
use sn_codec::v12::{Connect, Packet, PubAck, Publish, PublishTopic, Register, ReturnCode};
use sn_codec::QoS;
use tokio::net::UdpSocket;

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    StdUdp::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spool-kill-{}-{}",
        std::process::id(),
        free_tcp_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Proc(Option<Child>);

impl Proc {
    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mosquitto(dir: &Path, port: u16) -> Proc {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nuser root\n",
            dir.display()
        ),
    )
    .unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto not found: install it with `apt-get install mosquitto`");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(Some(child))
}

fn gateway(config: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_mqtt-sn-gateway"))
        .arg("--config")
        .arg(config)
        .arg("--log-level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary");
    Proc(Some(child))
}

/// A minimal MQTT-SN mote: one request, one awaited answer, resent every 500 ms.
struct Mote {
    socket: UdpSocket,
    gateway: SocketAddr,
}

impl Mote {
    async fn exchange<T>(
        &self,
        request: Packet<'_>,
        mut answer: impl FnMut(&Packet<'_>) -> Option<T>,
    ) -> T {
        let bytes = request.to_vec().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 1024];
        loop {
            assert!(Instant::now() < deadline, "no answer to {request:?}");
            self.socket.send_to(&bytes, self.gateway).await.unwrap();
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((len, _))) =
                tokio::time::timeout_at(until, self.socket.recv_from(&mut buf)).await
            {
                if let Ok(packet) = Packet::decode(&buf[..len]) {
                    if let Some(found) = answer(&packet) {
                        return found;
                    }
                }
            }
        }
    }

    /// CONNECT until accepted, then REGISTER the topic; returns its id.
    async fn connect(&self, topic: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "CONNECT not accepted within 20 s"
            );
            let code = self
                .exchange(
                    Packet::Connect(Connect {
                        will: false,
                        clean_session: true,
                        protocol_id: 1,
                        duration: 600,
                        client_id: b"kill-mote",
                    }),
                    |p| match p {
                        Packet::ConnAck { return_code } => Some(*return_code),
                        _ => None,
                    },
                )
                .await;
            if code == ReturnCode::Accepted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.exchange(
            Packet::Register(Register {
                topic_id: 0,
                msg_id: 1,
                topic_name: topic.as_bytes(),
            }),
            |p| match p {
                Packet::RegAck(r) if r.return_code.is_accepted() => Some(r.topic_id),
                _ => None,
            },
        )
        .await
    }

    async fn publish(&self, topic_id: u16, msg_id: u16, data: &[u8]) -> ReturnCode {
        self.exchange(
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: PublishTopic::Normal(topic_id),
                msg_id,
                data,
            }),
            |p| match p {
                Packet::PubAck(PubAck {
                    msg_id: m,
                    return_code,
                    ..
                }) if *m == msg_id => Some(*return_code),
                _ => None,
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acknowledged_before_a_kill_9_reaches_the_broker_after_restart() {
    let dir = temp_dir();
    let broker_port = free_tcp_port();
    let udp_port = free_udp_port();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nadvertise_interval = \"0\"\n[[udp]]\nbind = \"127.0.0.1:{udp_port}\"\ndiscovery = \"off\"\n\
             [broker]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nreconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\n\
             [store]\npath = \"{}\"\n",
            dir.join("state.redb").display()
        ),
    )
    .unwrap();

    // A persistent subscriber on the broker, then the broker goes down.
    let mut broker = mosquitto(&dir, broker_port);
    let mut options = MqttOptions::new("kill-collector", "127.0.0.1", broker_port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), 100);
        client
            .subscribe("kill/t", MqttQoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Incoming::SubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
    }

    let mut gw = gateway(&config);
    let mote = Mote {
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        gateway: SocketAddr::from(([127, 0, 0, 1], udp_port)),
    };
    let topic = mote.connect("kill/t").await;
    broker.signal("-TERM");

    // Into the spool; then kill -9 half way.
    let mut acknowledged = BTreeSet::new();
    for seq in 0..100u16 {
        let code = mote
            .publish(topic, seq + 1, format!("{seq}").as_bytes())
            .await;
        if code == ReturnCode::Accepted {
            acknowledged.insert(seq);
        }
    }
    gw.signal("-KILL");
    assert_eq!(acknowledged.len(), 100, "the spool accepted everything");

    // Same store, new process, and the broker returns; the mote reconnects and goes on.
    let _gw = gateway(&config);
    let _broker = mosquitto(&dir, broker_port);
    let topic = mote.connect("kill/t").await;
    for seq in 100..200u16 {
        let code = mote
            .publish(topic, seq + 1, format!("{seq}").as_bytes())
            .await;
        if code == ReturnCode::Accepted {
            acknowledged.insert(seq);
        }
    }
    assert_eq!(acknowledged.len(), 200);

    // Everything acknowledged arrives, the spooled half included.
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let mut arrived = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while arrived.len() < acknowledged.len() {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                if let Ok(seq) = std::str::from_utf8(&p.payload).unwrap_or("").parse::<u16>() {
                    arrived.insert(seq);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    drop(client);
    let lost: Vec<&u16> = acknowledged.difference(&arrived).collect();
    println!(
        "kill -9 while spooling: {} acknowledged, {} arrived, lost {:?}",
        acknowledged.len(),
        arrived.len(),
        lost
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
