//! The spool survives `kill -9`: the real gateway binary takes QoS 1 messages into its spool
//! while the broker is down, is killed with SIGKILL mid-stream, starts again from the same
//! store, and every message it had acknowledged to the mote reaches the broker's subscriber.
//! The same holds when the disk fills up: what could not be written is not acknowledged.
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
    fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap()
    }

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
    gateway_with_file_limit(config, None)
}

/// The gateway, optionally with its files capped at `max_file_kib` KiB (`ulimit -f`): a write
/// beyond that fails with EFBIG, as on a full disk. SIGXFSZ is ignored (an ignored signal
/// stays ignored across exec), so the write fails instead of killing the process.
fn gateway_with_file_limit(config: &Path, max_file_kib: Option<u64>) -> Proc {
    let bin = env!("CARGO_BIN_EXE_mqtt-sn-gateway");
    let mut command = match max_file_kib {
        None => Command::new(bin),
        Some(kib) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!(
                    "trap '' XFSZ; ulimit -S -f {kib}; exec \"$0\" \"$@\""
                ))
                .arg(bin);
            sh
        }
    };
    let child = command
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
        answer: impl FnMut(&Packet<'_>) -> Option<T>,
    ) -> T {
        let what = format!("{request:?}");
        self.try_exchange(request, answer, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no answer to {what}"))
    }

    /// [`Mote::exchange`], giving up (None) after `within`.
    async fn try_exchange<T>(
        &self,
        request: Packet<'_>,
        mut answer: impl FnMut(&Packet<'_>) -> Option<T>,
        within: Duration,
    ) -> Option<T> {
        let bytes = request.to_vec().unwrap();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 1024];
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            self.socket.send_to(&bytes, self.gateway).await.unwrap();
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((len, _))) =
                tokio::time::timeout_at(until, self.socket.recv_from(&mut buf)).await
            {
                if let Ok(packet) = Packet::decode(&buf[..len]) {
                    if let Some(found) = answer(&packet) {
                        return Some(found);
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
        self.try_publish(topic_id, msg_id, data, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no PUBACK for msg id {msg_id}"))
    }

    /// A QoS 1 PUBLISH, resent until its PUBACK or until `within` has passed (None).
    async fn try_publish(
        &self,
        topic_id: u16,
        msg_id: u16,
        data: &[u8],
        within: Duration,
    ) -> Option<ReturnCode> {
        self.try_exchange(
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
            within,
        )
        .await
    }
}

/// The gateway's config file in `dir`: UDP on `udp_port`, the broker on `broker_port`, the
/// store in `dir/state.redb`.
fn write_config(dir: &Path, udp_port: u16, broker_port: u16) -> PathBuf {
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
    config
}

/// Options of a persistent (CleanSession=0) subscriber, whose subscription to `kill/t` is made
/// here; it then disconnects, and the broker keeps what arrives for it.
async fn persistent_subscriber(broker_port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker_port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
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
    options
}

/// Reconnects the persistent subscriber and collects sequence numbers (the payloads, up to
/// an optional `:` and padding) until
/// every one of `expected` has arrived or 30 s have passed.
async fn collect(options: MqttOptions, expected: &BTreeSet<u16>) -> BTreeSet<u16> {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let mut arrived = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !expected.is_subset(&arrived) {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                let text = std::str::from_utf8(&p.payload).unwrap_or("");
                if let Ok(seq) = text.split(':').next().unwrap_or("").parse::<u16>() {
                    arrived.insert(seq);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    drop(client);
    arrived
}

fn mote(udp_port: u16, socket: UdpSocket) -> Mote {
    Mote {
        socket,
        gateway: SocketAddr::from(([127, 0, 0, 1], udp_port)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acknowledged_before_a_kill_9_reaches_the_broker_after_restart() {
    let dir = temp_dir();
    let broker_port = free_tcp_port();
    let udp_port = free_udp_port();
    let config = write_config(&dir, udp_port, broker_port);

    // A persistent subscriber on the broker, then the broker goes down.
    let mut broker = mosquitto(&dir, broker_port);
    let options = persistent_subscriber(broker_port, "kill-collector").await;

    let mut gw = gateway(&config);
    let mote = mote(udp_port, UdpSocket::bind("127.0.0.1:0").await.unwrap());
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
    let arrived = collect(options, &acknowledged).await;
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

/// The disk fills up while the broker is down: the gateway stops acknowledging (it holds the
/// PUBACKs until the state is written) instead of acknowledging what it could not store. After
/// a kill -9 and a restart with room again, every message it did acknowledge arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_acknowledgements_and_nothing_acknowledged_is_lost() {
    let dir = temp_dir();
    let broker_port = free_tcp_port();
    let udp_port = free_udp_port();
    let config = write_config(&dir, udp_port, broker_port);
    let mut broker = mosquitto(&dir, broker_port);
    let options = persistent_subscriber(broker_port, "full-collector").await;

    // A first run creates the store at its first size; the second may grow it by 64 KiB only.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mote = mote(udp_port, socket);
    let mut first = gateway(&config);
    mote.connect("kill/t").await;
    first.signal("-TERM");
    let size_kib = std::fs::metadata(dir.join("state.redb")).unwrap().len() / 1024;
    let mut gw = gateway_with_file_limit(&config, Some(size_kib + 64));
    let topic = mote.connect("kill/t").await;
    broker.signal("-TERM");

    let mut acknowledged = BTreeSet::new();
    let mut unanswered = None;
    // 700-byte messages: 64 KiB hold fewer than a hundred.
    let payload = |seq: u16| format!("{seq}:{}", "x".repeat(700));
    for seq in 0..500u16 {
        let data = payload(seq);
        match mote
            .try_publish(topic, seq + 1, data.as_bytes(), Duration::from_secs(3))
            .await
        {
            Some(ReturnCode::Accepted) => {
                acknowledged.insert(seq);
            }
            Some(_) => {}
            None => {
                unanswered = Some(seq);
                break;
            }
        }
    }
    // Room on the disk again (the cap lifted, util-linux `prlimit`): the held message is
    // written and acknowledged without a restart.
    if let Some(seq) = unanswered {
        let lifted = Command::new("prlimit")
            .args(["--pid", &gw.pid().to_string(), "--fsize=unlimited:"])
            .status()
            .expect("prlimit not found: install util-linux");
        assert!(lifted.success());
        let data = payload(seq);
        let code = mote
            .try_publish(topic, seq + 1, data.as_bytes(), Duration::from_secs(10))
            .await;
        assert_eq!(
            code,
            Some(ReturnCode::Accepted),
            "not acknowledged once written"
        );
        acknowledged.insert(seq);
    }
    gw.signal("-KILL");

    let _gw = gateway(&config);
    let _broker = mosquitto(&dir, broker_port);
    let arrived = collect(options, &acknowledged).await;
    let lost: Vec<&u16> = acknowledged.difference(&arrived).collect();
    println!(
        "full disk: {} acknowledged, first unanswered {unanswered:?}, {} arrived, lost {lost:?}",
        acknowledged.len(),
        arrived.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(
        unanswered.is_some(),
        "the capped store never stopped the acknowledgements ({} acknowledged)",
        acknowledged.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
