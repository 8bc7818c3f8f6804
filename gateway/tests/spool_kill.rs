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

/// How long a signalled process may take to end before the test calls it hung.
const EXIT_WAIT: Duration = Duration::from_secs(30);

struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap()
    }

    /// SIGKILL (std's `Child::kill`, no external tool), then reaps it.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("SIGKILL the child");
            child.wait().expect("reap the killed child");
        }
    }

    /// SIGTERM with the shell's `kill` builtin (no procps needed), then waits for the exit.
    fn terminate(&mut self) {
        if let Some(mut child) = self.0.take() {
            let sent = Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
                .status()
                .expect("sh not found: install dash (or any POSIX sh)");
            assert!(sent.success(), "kill -TERM {} failed: {sent}", child.id());
            let deadline = Instant::now() + EXIT_WAIT;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "pid {} did not end within {EXIT_WAIT:?} of SIGTERM",
                        child.id()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The exit status if it has ended.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|child| child.try_wait().unwrap())
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

/// How a child's start ended.
enum Started {
    /// It runs and its own log says it bound its port.
    Running(Proc),
    /// Its log says the port is taken: another process bound it after it was found free.
    PortTaken,
}

/// Waits until `child` is running and its log file `log` says `ready` (only what was
/// written after byte `skip` counts), or it exits; `taken` in the log of an exited child
/// means its port was taken. Anything else fails the test with the log.
fn wait_started(mut child: Proc, log: &Path, skip: usize, ready: &str, taken: &str) -> Started {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let this_run = text.get(skip..).unwrap_or_default();
        if let Some(status) = child.exited() {
            if this_run.contains(taken) {
                return Started::PortTaken;
            }
            panic!("{} exited at start ({status}):\n{this_run}", log.display());
        }
        if this_run.contains(ready) {
            return Started::Running(child);
        }
        assert!(
            Instant::now() < deadline,
            "no {ready:?} in {} within 20 s:\n{this_run}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// mosquitto on a port found free, in `dir`; another port when that one was taken before
/// mosquitto bound it.
fn mosquitto_on_free_port(dir: &Path) -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_tcp_port();
        if let Started::Running(broker) = start_mosquitto(dir, port) {
            return (broker, port);
        }
    }
    panic!("5 free ports in a row were taken before mosquitto bound them");
}

/// mosquitto again on `port` (the gateway's config names it), after it was stopped.
fn mosquitto(dir: &Path, port: u16) -> Proc {
    match start_mosquitto(dir, port) {
        Started::Running(broker) => broker,
        Started::PortTaken => panic!("port {port} was taken while mosquitto was down"),
    }
}

fn start_mosquitto(dir: &Path, port: u16) -> Started {
    let conf = dir.join("mosquitto.conf");
    let log = dir.join("mosquitto.log");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nuser root\nlog_dest file {log}\n",
            dir = dir.display(),
            log = log.display()
        ),
    )
    .unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    // mosquitto appends to its log: only this run's lines count.
    let skip = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto not found: install it with `apt-get install mosquitto`");
    // "Opening ipv4 listen socket on port P." comes before the bind; " running" after it.
    wait_started(
        Proc(Some(child)),
        &log,
        skip,
        " running\n",
        "Error: Address already in use",
    )
}

/// The gateway with its config in `dir` (broker on `broker_port`), MQTT-SN on a UDP port
/// found free, another one when that was taken before the gateway bound it; returns it and
/// the port. `max_file_kib`: see [`gateway_with_file_limit`].
fn start_gateway(dir: &Path, broker_port: u16, max_file_kib: Option<u64>) -> (Proc, u16) {
    for _ in 0..5 {
        let udp_port = free_udp_port();
        let config = write_config(dir, udp_port, broker_port);
        let log = dir.join("gateway.log");
        let skip = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let child = gateway_with_file_limit(&config, max_file_kib, &log);
        match wait_started(
            child,
            &log,
            skip,
            "listening for MQTT-SN",
            "address already in use",
        ) {
            Started::Running(gateway) => return (gateway, udp_port),
            Started::PortTaken => {}
        }
    }
    panic!("5 free UDP ports in a row were taken before the gateway bound them");
}

/// The gateway, optionally with its files capped at `max_file_kib` KiB (`ulimit -f`): a write
/// beyond that fails with EFBIG, as on a full disk. SIGXFSZ is ignored (an ignored signal
/// stays ignored across exec), so the write fails instead of killing the process. Its output
/// is appended to `log`.
fn gateway_with_file_limit(config: &Path, max_file_kib: Option<u64>, log: &Path) -> Proc {
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
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = command
        .arg("--config")
        .arg(config)
        .arg("--log-level")
        .arg("info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
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

impl Mote {
    /// Points the mote at a gateway restarted on `udp_port`.
    fn retarget(&mut self, udp_port: u16) {
        self.gateway = SocketAddr::from(([127, 0, 0, 1], udp_port));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acknowledged_before_a_kill_9_reaches_the_broker_after_restart() {
    let dir = temp_dir();

    // A persistent subscriber on the broker, then the broker goes down.
    let (mut broker, broker_port) = mosquitto_on_free_port(&dir);
    let options = persistent_subscriber(broker_port, "kill-collector").await;

    let (mut gw, udp_port) = start_gateway(&dir, broker_port, None);
    let mut mote = mote(udp_port, UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let topic = mote.connect("kill/t").await;
    broker.terminate();

    // Into the spool, one at a time; then kill -9 with the gateway idle (every PUBACK in).
    let mut acknowledged = BTreeSet::new();
    for seq in 0..100u16 {
        let code = mote
            .publish(topic, seq + 1, format!("{seq}").as_bytes())
            .await;
        if code == ReturnCode::Accepted {
            acknowledged.insert(seq);
        }
    }
    gw.kill_9();
    assert_eq!(acknowledged.len(), 100, "the spool accepted everything");

    // Same store, new process, and the broker returns; the mote reconnects and goes on.
    let (_gw, udp_port) = start_gateway(&dir, broker_port, None);
    mote.retarget(udp_port);
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

/// The kill -9 lands while PUBACKs are still coming: the mote keeps `WINDOW` QoS 1 publishes
/// waiting for their PUBACK at all times, and the gateway is killed the moment the 200th
/// PUBACK arrives, with the next ones just sent. Every message acknowledged before the kill
/// (PUBACKs already on their way count) reaches the broker after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_pubacks_are_flowing_loses_nothing_acknowledged() {
    const WINDOW: usize = 32;
    const KILL_AT: usize = 200;
    const MAX: u16 = 5000;
    let dir = temp_dir();
    let (mut broker, broker_port) = mosquitto_on_free_port(&dir);
    let options = persistent_subscriber(broker_port, "flow-collector").await;
    let (mut gw, udp_port) = start_gateway(&dir, broker_port, None);
    let mote = mote(udp_port, UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let topic = mote.connect("kill/t").await;
    broker.terminate();

    let send = |seq: u16| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: PublishTopic::Normal(topic),
            msg_id: seq + 1,
            data: format!("{seq}").as_bytes(),
        })
        .to_vec()
        .unwrap()
    };
    // A PUBACK for one of ours: its sequence number and whether it accepted the message.
    let puback = |bytes: &[u8]| match Packet::decode(bytes) {
        Ok(Packet::PubAck(PubAck {
            msg_id,
            return_code,
            ..
        })) => Some((msg_id - 1, return_code == ReturnCode::Accepted)),
        _ => None,
    };
    let mut acknowledged = BTreeSet::new();
    let mut waiting = BTreeSet::new();
    let mut next_seq = 0u16;
    let mut buf = [0u8; 1024];
    loop {
        while waiting.len() < WINDOW {
            assert!(next_seq < MAX, "{KILL_AT} PUBACKs never came");
            mote.socket
                .send_to(&send(next_seq), mote.gateway)
                .await
                .unwrap();
            waiting.insert(next_seq);
            next_seq += 1;
        }
        if acknowledged.len() >= KILL_AT {
            gw.kill_9();
            break;
        }
        let (len, _) =
            tokio::time::timeout(Duration::from_secs(20), mote.socket.recv_from(&mut buf))
                .await
                .expect("a PUBACK within 20 s")
                .unwrap();
        if let Some((seq, accepted)) = puback(&buf[..len]) {
            assert!(accepted, "PUBACK for {seq} refused the message");
            if waiting.remove(&seq) {
                acknowledged.insert(seq);
            }
        }
    }
    // PUBACKs the gateway sent before it died are acknowledgements too: all are in the
    // socket's buffer by now (loopback delivers within the send).
    while let Ok((len, _)) = mote.socket.try_recv_from(&mut buf) {
        if let Some((seq, true)) = puback(&buf[..len]) {
            if waiting.remove(&seq) {
                acknowledged.insert(seq);
            }
        }
    }
    assert!(
        !waiting.is_empty(),
        "the kill came after every PUBACK ({} acknowledged): the gateway was idle",
        acknowledged.len()
    );

    let (_gw, _) = start_gateway(&dir, broker_port, None);
    let _broker = mosquitto(&dir, broker_port);
    let arrived = collect(options, &acknowledged).await;
    let lost: Vec<&u16> = acknowledged.difference(&arrived).collect();
    println!(
        "kill -9 while PUBACKs flow: {} sent, {} acknowledged, {} unanswered at the kill, {} arrived, lost {lost:?}",
        next_seq,
        acknowledged.len(),
        waiting.len(),
        arrived.len()
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
    let (mut broker, broker_port) = mosquitto_on_free_port(&dir);
    let options = persistent_subscriber(broker_port, "full-collector").await;

    // A first run creates the store at its first size; the second may grow it by 64 KiB only.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut first, udp_port) = start_gateway(&dir, broker_port, None);
    let mut mote = mote(udp_port, socket);
    mote.connect("kill/t").await;
    first.terminate();
    let size_kib = std::fs::metadata(dir.join("state.redb")).unwrap().len() / 1024;
    let (mut gw, udp_port) = start_gateway(&dir, broker_port, Some(size_kib + 64));
    mote.retarget(udp_port);
    let topic = mote.connect("kill/t").await;
    broker.terminate();

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
    gw.kill_9();

    let (_gw, _) = start_gateway(&dir, broker_port, None);
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
