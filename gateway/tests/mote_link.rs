//! Transparent mode's per-mote broker connections ([`TransparentLinks`]) against a real
//! mosquitto, without the core: logins (password file, per-mote and shared, client
//! certificates), refusals, Wills, QoS bookkeeping, manual acknowledgements, keep-alive,
//! reconnection, and a connect storm.
//!
//! What mosquitto 2.0 really answers, found here: a wrong password gets CONNACK 0x05 "not
//! authorized" (not 0x04 "bad user name or password"), so it arrives as
//! `Refused(NotAuthorized)`; the core maps both to the same MQTT-SN return code. A QoS 1
//! PUBLISH outside the client's ACL is acknowledged (PUBACK) and dropped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_sn_gateway::broker::{BrokerLinkConfig, TlsFiles, TransparentSettings};
use mqtt_sn_gateway::core::{
    BrokerCommand, BrokerEvent, MoteWill, MqttQoS, PublishId, Refusal, UplinkPublish,
};
use mqtt_sn_gateway::runtime::TransparentLinks;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use sn_config::{BrokerConfig, CredentialsConfig};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mote-link-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `program` (mosquitto_passwd or openssl) in `dir`; fails saying which Debian package
/// to install when it is missing.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let package = match program {
        "mosquitto_passwd" => "mosquitto",
        other => other,
    };
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("{program} not found ({e}): install it with `apt-get install {package}`")
        });
    assert!(status.success(), "{program} {args:?} failed");
}

/// A mosquitto of one test: its own port, config and log in a temp directory.
struct Broker {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    settings: String,
}

/// How a mosquitto start ended.
enum Started {
    /// Our child runs and its own log says it listens on the port.
    Running,
    /// Its log says the port is taken (another process bound it after `free_port` let go).
    PortTaken,
}

impl Broker {
    /// Starts mosquitto on a free port with `settings` added to its listener. `dir` holds
    /// any files the settings name. A port taken between `free_port` and mosquitto's bind is
    /// replaced by another one (mosquitto's log says so); any other failure fails the test.
    async fn start(dir: PathBuf, settings: &str) -> Broker {
        let mut broker = Broker {
            child: None,
            dir,
            port: 0,
            settings: settings.to_string(),
        };
        for _ in 0..5 {
            broker.port = free_port();
            broker.write_config();
            if let Started::Running = broker.spawn().await {
                return broker;
            }
        }
        panic!(
            "5 free ports in a row were taken before mosquitto bound them; log:\n{}",
            broker.log()
        );
    }

    /// An anonymous broker.
    async fn anonymous(name: &str) -> Broker {
        Broker::start(temp_dir(name), "allow_anonymous true").await
    }

    fn write_config(&self) {
        let config = format!(
            "per_listener_settings true\n\
             listener {port} 127.0.0.1\n\
             {settings}\n\
             user root\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type all\n",
            port = self.port,
            settings = self.settings,
            dir = self.dir.display()
        );
        std::fs::write(self.dir.join("mosquitto.conf"), config).unwrap();
    }

    /// Starts mosquitto again on the same port (the links under test are configured with
    /// it), after [`Broker::kill`].
    async fn restart(&mut self) {
        match self.spawn().await {
            Started::Running => {}
            Started::PortTaken => panic!(
                "port {} was taken while mosquitto was down; log:\n{}",
                self.port,
                self.log()
            ),
        }
    }

    /// Runs mosquitto and waits until this child, still running, has logged that it opened
    /// the port and runs; a TCP connect alone would also pass for another process on it.
    async fn spawn(&mut self) -> Started {
        let bin = std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
        // mosquitto appends to its log: only what this run writes counts.
        let skip = self.log().len();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin} ({e}): install it with `apt-get install mosquitto`")
            });
        self.child = Some(child);
        let opened = format!("Opening ipv4 listen socket on port {}.", self.port);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let log = self.log();
            let this_run = log.get(skip..).unwrap_or_default();
            let exited = self
                .child
                .as_mut()
                .map(|child| child.try_wait().unwrap())
                .and_then(|status| status);
            if let Some(status) = exited {
                self.child = None;
                if this_run.contains("Error: Address already in use") {
                    return Started::PortTaken;
                }
                panic!("mosquitto exited ({status}); log:\n{log}");
            }
            if this_run.contains(&opened)
                && this_run.contains(" running\n")
                && tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                    .await
                    .is_ok()
            {
                return Started::Running;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not start within {WAIT:?}; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until mosquitto's log holds `text`.
    async fn wait_for_log(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.log().contains(text) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {text:?} in mosquitto's log within {WAIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Settings for a plain broker on `port`, with fast reconnects.
fn settings(port: u16, credentials: Vec<CredentialsConfig>) -> TransparentSettings {
    TransparentSettings {
        broker: BrokerLinkConfig {
            options: BrokerConfig {
                client_id: "gateway".into(),
                clean_session: true,
                connect_timeout: Duration::from_secs(3),
                reconnect_min: Duration::from_millis(50),
                reconnect_max: Duration::from_millis(500),
                client_id_prefix: String::new(),
                max_connecting: 100,
                ..BrokerConfig::plain(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            },
            tls: None,
        },
        credentials,
    }
}

fn login(client_id: &str, username: &str, password: &str) -> CredentialsConfig {
    CredentialsConfig {
        username: Some(username.into()),
        password: Some(password.into()),
        ..CredentialsConfig::new(client_id)
    }
}

fn connect(keep_alive: u64, clean_session: bool, will: Option<MoteWill>) -> BrokerCommand {
    BrokerCommand::Connect {
        keep_alive: Duration::from_secs(keep_alive),
        clean_session,
        will,
        // As for a mote the policy bound to its address: its [[credentials]] login is used.
        own_login: true,
    }
}

fn will(topic: &str, payload: &str) -> Option<MoteWill> {
    Some(MoteWill {
        topic: topic.into(),
        payload: Bytes::from(payload.to_string()),
        qos: MqttQoS::AtLeastOnce,
        retain: false,
    })
}

fn publish(id: u64, topic: &str, payload: &str, qos: MqttQoS) -> BrokerCommand {
    BrokerCommand::Publish(UplinkPublish {
        id: (qos != MqttQoS::AtMostOnce).then_some(PublishId(id)),
        topic: topic.into(),
        payload: Bytes::from(payload.to_string()),
        qos,
        retain: false,
        replay: false,
    })
}

fn id(text: &str) -> Arc<str> {
    Arc::from(text)
}

/// The next event, within [`WAIT`].
async fn next(links: &mut TransparentLinks) -> (Arc<str>, BrokerEvent) {
    tokio::time::timeout(WAIT, links.recv())
        .await
        .expect("an event in time")
        .expect("the links are running")
}

/// Asserts that no event comes for `quiet`.
async fn none_for(links: &mut TransparentLinks, quiet: Duration) {
    if let Ok(event) = tokio::time::timeout(quiet, links.recv()).await {
        panic!("unexpected event {event:?}");
    }
}

const CONNECTED: BrokerEvent = BrokerEvent::Connected {
    session_present: false,
};

/// A plain MQTT client that collects what arrives on its subscription.
struct Observer {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl Observer {
    async fn start(port: u16, client_id: &str, filter: &str, login: Option<(&str, &str)>) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        if let Some((user, pass)) = login {
            options.set_credentials(user, pass);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (suback_tx, mut suback) = mpsc::unbounded_channel();
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.clone()));
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = suback_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(WAIT, suback.recv())
            .await
            .expect("SUBACK in time");
        Observer { client, messages }
    }

    async fn next(&mut self) -> (String, Bytes) {
        tokio::time::timeout(WAIT, self.messages.recv())
            .await
            .expect("a message in time")
            .expect("the observer runs")
    }

    async fn none_for(&mut self, quiet: Duration) {
        if let Ok(message) = tokio::time::timeout(quiet, self.messages.recv()).await {
            panic!("unexpected message {message:?}");
        }
    }
}

/// A broker with a password file (users m1, m2, shared) and an ACL: each user writes only
/// under `motes/<client id>/`, reads `down/#`.
async fn broker_with_logins() -> Broker {
    let dir = temp_dir("auth");
    run(
        &dir,
        "mosquitto_passwd",
        &["-b", "-c", "passwd", "m1", "p1"],
    );
    run(&dir, "mosquitto_passwd", &["-b", "passwd", "m2", "p2"]);
    run(&dir, "mosquitto_passwd", &["-b", "passwd", "shared", "sp"]);
    run(
        &dir,
        "mosquitto_passwd",
        &["-b", "passwd", "observer", "op"],
    );
    std::fs::write(
        dir.join("acl"),
        "user observer\ntopic readwrite #\n\npattern write motes/%c/#\npattern read down/#\n",
    )
    .unwrap();
    let settings = format!(
        "allow_anonymous false\npassword_file {d}/passwd\nacl_file {d}/acl",
        d = dir.display()
    );
    Broker::start(dir, &settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_credentials_connect_with_the_prefixed_client_id() {
    let broker = broker_with_logins().await;
    let mut s = settings(broker.port, vec![login("m1", "m1", "p1")]);
    s.broker.options.client_id_prefix = "gw7-".into();
    let mut links = TransparentLinks::start(&s).unwrap();
    links.send(id("m1"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m1"), CONNECTED));
    assert_eq!(links.len(), 1);
    // mosquitto logs the client id, CleanSession, keep-alive and user it saw.
    let log = broker.log();
    assert!(log.contains("as gw7-m1 (p2, c1, k60, u'm1')"), "{log}");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_without_an_entry_uses_the_shared_login() {
    let broker = broker_with_logins().await;
    let mut s = settings(broker.port, vec![login("m1", "m1", "p1")]);
    s.broker.options.username = Some("shared".into());
    s.broker.options.password = Some("sp".into());
    let mut links = TransparentLinks::start(&s).unwrap();
    links.send(id("other"), connect(2, false, None));
    assert_eq!(next(&mut links).await, (id("other"), CONNECTED));
    // Keep-alive raised to the 5 s minimum; CleanSession 0 carried over.
    let log = broker.log();
    assert!(log.contains("as other (p2, c0, k5, u'shared')"), "{log}");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_the_link_ends() {
    let broker = broker_with_logins().await;
    let mut links = TransparentLinks::start(&settings(
        broker.port,
        vec![login("m1", "m1", "wrong"), login("m2", "nobody", "x")],
    ))
    .unwrap();
    links.send(id("m1"), connect(60, true, None));
    // mosquitto 2 answers 0x05 "not authorized" for a wrong password.
    assert_eq!(
        next(&mut links).await,
        (id("m1"), BrokerEvent::Refused(Refusal::NotAuthorized))
    );
    links.send(id("m2"), connect(60, true, None));
    assert_eq!(
        next(&mut links).await,
        (id("m2"), BrokerEvent::Refused(Refusal::NotAuthorized))
    );
    // The links gave up: no retry, nothing more, commands for them are dropped.
    assert!(links.is_empty());
    links.send(
        id("m1"),
        publish(1, "motes/m1/t", "x", MqttQoS::AtLeastOnce),
    );
    none_for(&mut links, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_server_unavailable() {
    let port = free_port();
    let mut links = TransparentLinks::start(&settings(port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(
        next(&mut links).await,
        (id("m"), BrokerEvent::Refused(Refusal::ServerUnavailable))
    );
    assert!(links.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_client_id_is_identifier_rejected() {
    let broker = Broker::start(
        temp_dir("id"),
        "allow_anonymous true\nallow_zero_length_clientid false",
    )
    .await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    // MQTT 3.1.1: an empty client id needs CleanSession 1, or the broker rejects it (0x02);
    // the link answers so itself (rumqttc would panic on building such a CONNECT).
    links.send(id(""), connect(60, false, None));
    assert_eq!(
        next(&mut links).await,
        (id(""), BrokerEvent::Refused(Refusal::IdentifierRejected))
    );
    // With CleanSession the empty id is the broker's to accept or not; this one rejects it.
    links.send(id(""), connect(60, true, None));
    assert_eq!(
        next(&mut links).await,
        (id(""), BrokerEvent::Refused(Refusal::IdentifierRejected))
    );
}

/// A scripted broker: answers the n-th connection's CONNECT with CONNACK `codes[n]`; an
/// accepted connection is dropped after 200 ms unless it is the last one.
async fn scripted_broker(codes: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let last = codes.len() - 1;
        for (n, code) in codes.into_iter().enumerate() {
            let (mut stream, _) = listener.accept().await.unwrap();
            // The CONNECT: fixed header, remaining length, body.
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte[0], 0x10, "CONNECT");
            let (mut length, mut shift) = (0usize, 0);
            loop {
                stream.read_exact(&mut byte).await.unwrap();
                length |= usize::from(byte[0] & 0x7f) << shift;
                shift += 7;
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).await.unwrap();
            stream.write_all(&[0x20, 0x02, 0x00, code]).await.unwrap();
            if code == 0 && n == last {
                // Held open (PINGREQs unanswered are fine within the test's time).
                tokio::time::sleep(Duration::from_secs(60)).await;
            } else if code == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connack_refusal_maps_to_its_kind() {
    for (code, refusal) in [
        (2, Refusal::IdentifierRejected),
        (3, Refusal::ServerUnavailable),
        (4, Refusal::BadCredentials),
        (5, Refusal::NotAuthorized),
    ] {
        let port = scripted_broker(vec![code]).await;
        let mut links = TransparentLinks::start(&settings(port, Vec::new())).unwrap();
        links.send(id("m"), connect(60, true, None));
        assert_eq!(
            next(&mut links).await,
            (id("m"), BrokerEvent::Refused(refusal)),
            "CONNACK {code}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_loss_an_unavailable_broker_is_retried_a_refusal_is_final() {
    // Accepted, lost, "server unavailable" (retried), accepted again.
    let port = scripted_broker(vec![0, 3, 0]).await;
    let mut links = TransparentLinks::start(&settings(port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    assert_eq!(next(&mut links).await, (id("m"), BrokerEvent::Disconnected));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));

    // Accepted, lost, "not authorized": the link gives up.
    let port = scripted_broker(vec![0, 5]).await;
    let mut links = TransparentLinks::start(&settings(port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    assert_eq!(next(&mut links).await, (id("m"), BrokerEvent::Disconnected));
    assert_eq!(
        next(&mut links).await,
        (id("m"), BrokerEvent::Refused(Refusal::NotAuthorized))
    );
    assert!(links.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_will_is_published_after_an_abrupt_close_only() {
    let broker = Broker::anonymous("will").await;
    let mut observer = Observer::start(broker.port, "observer", "wills/#", None).await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    links.send(id("lost"), connect(60, true, will("wills/lost", "gone")));
    links.send(id("clean"), connect(60, true, will("wills/clean", "gone")));
    let mut connected = vec![next(&mut links).await, next(&mut links).await];
    connected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        connected,
        vec![(id("clean"), CONNECTED), (id("lost"), CONNECTED)]
    );

    links.send(id("clean"), BrokerCommand::Close { graceful: true });
    // Once mosquitto has handled the clean close (its log says so), any Will of it is queued
    // to the observer before the Will of a close that comes after; so the next message
    // must be the lost one's Will. No silence window decides this.
    broker.wait_for_log("Client clean disconnected.").await;
    links.send(id("lost"), BrokerCommand::Close { graceful: false });
    let (topic, payload) = observer.next().await;
    assert_eq!((topic.as_str(), &payload[..]), ("wills/lost", &b"gone"[..]));
    observer.none_for(Duration::from_millis(500)).await;
    // No events for closed links.
    none_for(&mut links, Duration::from_millis(200)).await;
    assert!(links.is_empty());
    drop(observer.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_acked_with_the_core_ids() {
    let broker = broker_with_logins().await;
    let mut observer =
        Observer::start(broker.port, "observer", "motes/#", Some(("observer", "op"))).await;
    let mut links =
        TransparentLinks::start(&settings(broker.port, vec![login("m1", "m1", "p1")])).unwrap();
    links.send(id("m1"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m1"), CONNECTED));

    links.send(
        id("m1"),
        publish(7, "motes/m1/a", "one", MqttQoS::AtLeastOnce),
    );
    assert_eq!(
        next(&mut links).await,
        (id("m1"), BrokerEvent::PublishAcked { id: PublishId(7) })
    );
    assert_eq!(observer.next().await.0, "motes/m1/a");
    links.send(
        id("m1"),
        publish(8, "motes/m1/b", "two", MqttQoS::ExactlyOnce),
    );
    assert_eq!(
        next(&mut links).await,
        (id("m1"), BrokerEvent::PublishAcked { id: PublishId(8) })
    );
    assert_eq!(observer.next().await.0, "motes/m1/b");

    // Outside its ACL: mosquitto acknowledges and drops it.
    links.send(
        id("m1"),
        publish(9, "motes/m2/x", "no", MqttQoS::AtLeastOnce),
    );
    assert_eq!(
        next(&mut links).await,
        (id("m1"), BrokerEvent::PublishAcked { id: PublishId(9) })
    );
    // A fence: mosquitto handles m1's publishes in order, so a delivered 9 would reach the
    // observer before 10.
    links.send(
        id("m1"),
        publish(10, "motes/m1/fence", "yes", MqttQoS::AtLeastOnce),
    );
    assert_eq!(
        next(&mut links).await,
        (id("m1"), BrokerEvent::PublishAcked { id: PublishId(10) })
    );
    assert_eq!(observer.next().await.0, "motes/m1/fence");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_qos2_publishes_through_the_small_packet_id_space() {
    let broker = Broker::anonymous("qos2").await;
    let mut observer = Observer::start(broker.port, "observer", "q/#", None).await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    // 100 publishes, alternating QoS 2 and 1, through 16 packet ids: every one acked once,
    // every one delivered (none taken for a duplicate of an id in release).
    for n in 0..100u64 {
        let qos = if n % 2 == 0 {
            MqttQoS::ExactlyOnce
        } else {
            MqttQoS::AtLeastOnce
        };
        links.send(id("m"), publish(n, &format!("q/{n}"), "x", qos));
    }
    let mut acked = Vec::new();
    for _ in 0..100 {
        match next(&mut links).await {
            (_, BrokerEvent::PublishAcked { id }) => acked.push(id.0),
            other => panic!("unexpected {other:?}"),
        }
    }
    acked.sort_unstable();
    assert_eq!(acked, (0..100).collect::<Vec<_>>());
    let mut received = Vec::new();
    for _ in 0..100 {
        received.push(observer.next().await.0);
    }
    received.sort();
    received.dedup();
    assert_eq!(received.len(), 100);
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_acked_upstream_only_after_ack() {
    // One message in flight per client: the second comes only after the first is acked.
    let broker = Broker::start(
        temp_dir("acks"),
        "allow_anonymous true\nmax_inflight_messages 1",
    )
    .await;
    let observer = Observer::start(broker.port, "sender", "unused", None).await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    links.send(
        id("m"),
        BrokerCommand::Subscribe {
            filter: "down/m".into(),
            qos: MqttQoS::AtLeastOnce,
        },
    );
    assert_eq!(
        next(&mut links).await,
        (
            id("m"),
            BrokerEvent::SubAck {
                filter: "down/m".into(),
                granted: Some(MqttQoS::AtLeastOnce),
            }
        )
    );
    for text in ["first", "second"] {
        observer
            .client
            .publish("down/m", QoS::AtLeastOnce, false, text)
            .await
            .unwrap();
    }
    let delivery = match next(&mut links).await {
        (
            _,
            BrokerEvent::Message {
                topic,
                payload,
                qos: MqttQoS::AtLeastOnce,
                delivery: Some(delivery),
                ..
            },
        ) => {
            assert_eq!((&*topic, &payload[..]), ("down/m", &b"first"[..]));
            delivery
        }
        other => panic!("unexpected {other:?}"),
    };
    // Not acknowledged yet: the broker holds the second one back. Once it has both (its
    // log), nothing may come for a while, and its log shows it sent only the first.
    let deadline = tokio::time::Instant::now() + WAIT;
    while broker
        .log()
        .matches("Received PUBLISH from sender ")
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", broker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    none_for(&mut links, Duration::from_millis(800)).await;
    let log = broker.log();
    assert_eq!(log.matches("Sending PUBLISH to m ").count(), 1, "{log}");
    links.send(id("m"), BrokerCommand::Ack { delivery });
    match next(&mut links).await {
        (
            _,
            BrokerEvent::Message {
                payload,
                delivery: Some(second),
                ..
            },
        ) => {
            assert_eq!(&payload[..], b"second");
            assert_ne!(second, delivery);
        }
        other => panic!("unexpected {other:?}"),
    }
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_motes_connection_is_kept_pinged() {
    let broker = Broker::anonymous("ping").await;
    let mut observer = Observer::start(broker.port, "observer", "wills/#", None).await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    // Keep-alive 5 s: mosquitto drops a client silent for 7.5 s and publishes its Will.
    links.send(id("sleepy"), connect(5, true, will("wills/sleepy", "gone")));
    assert_eq!(next(&mut links).await, (id("sleepy"), CONNECTED));
    none_for(&mut links, Duration::from_secs(12)).await;
    observer.none_for(Duration::from_millis(10)).await;
    let log = broker.log();
    assert!(log.contains("Received PINGREQ from sleepy"), "{log}");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reported_and_opened_again() {
    let mut broker = Broker::anonymous("outage").await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, None));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    broker.kill();
    assert_eq!(next(&mut links).await, (id("m"), BrokerEvent::Disconnected));
    // Meanwhile commands go nowhere (the core replays after Connected). The command is in
    // the link's queue before the broker is back, so no new connection can exist yet when
    // the link takes it: no wait is needed for that.
    links.send(id("m"), publish(1, "t", "x", MqttQoS::AtLeastOnce));
    broker.restart().await;
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    links.send(id("m"), publish(2, "t", "x", MqttQoS::AtLeastOnce));
    // Publish 1 would be acknowledged (and logged by mosquitto) before publish 2.
    assert_eq!(
        next(&mut links).await,
        (id("m"), BrokerEvent::PublishAcked { id: PublishId(2) })
    );
    let log = broker.log();
    assert_eq!(log.matches("Received PUBLISH from m ").count(), 1, "{log}");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connect_replaces_the_old_connection_cleanly() {
    let broker = Broker::anonymous("replace").await;
    let mut observer = Observer::start(broker.port, "observer", "wills/#", None).await;
    let mut links = TransparentLinks::start(&settings(broker.port, Vec::new())).unwrap();
    links.send(id("m"), connect(60, true, will("wills/m", "old")));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    links.send(id("m"), connect(60, true, will("wills/m", "new")));
    assert_eq!(next(&mut links).await, (id("m"), CONNECTED));
    // The old connection said DISCONNECT first: no Will, no takeover, no stale event.
    none_for(&mut links, Duration::from_millis(500)).await;
    observer.none_for(Duration::from_millis(10)).await;
    assert!(
        !broker.log().contains("already connected"),
        "{}",
        broker.log()
    );
    assert_eq!(links.len(), 1);
    // The new one carries the new Will.
    links.send(id("m"), BrokerCommand::Close { graceful: false });
    let (_, payload) = observer.next().await;
    assert_eq!(&payload[..], b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_mote_and_shared_client_certificates() {
    let dir = temp_dir("tls");
    make_certificates(&dir, &["shared", "door-7"]);
    let d = dir.display().to_string();
    let broker = Broker::start(
        dir.clone(),
        &format!(
            "allow_anonymous true\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n\
             keyfile {d}/server.key\nrequire_certificate true\nuse_identity_as_username true"
        ),
    )
    .await;
    let mut s = settings(broker.port, Vec::new());
    s.broker.tls = Some(TlsFiles {
        ca_file: dir.join("ca.crt"),
        client_auth: Some((dir.join("shared.crt"), dir.join("shared.key"))),
    });
    s.credentials = vec![CredentialsConfig {
        client_cert: Some(dir.join("door-7.crt")),
        client_key: Some(dir.join("door-7.key")),
        ..CredentialsConfig::new("door-7")
    }];
    let mut links = TransparentLinks::start(&s).unwrap();
    links.send(id("door-7"), connect(60, true, None));
    links.send(id("other"), connect(60, true, None));
    let mut connected = vec![next(&mut links).await, next(&mut links).await];
    connected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        connected,
        vec![(id("door-7"), CONNECTED), (id("other"), CONNECTED)]
    );
    // The certificate's CN is the user name mosquitto saw.
    let log = broker.log();
    assert!(log.contains("as door-7 (p2, c1, k60, u'door-7')"), "{log}");
    assert!(log.contains("as other (p2, c1, k60, u'shared')"), "{log}");
    links.shutdown().await;
}

#[tokio::test]
async fn missing_tls_files_are_reported_at_start() {
    let mut s = settings(1883, Vec::new());
    s.broker.tls = Some(TlsFiles {
        ca_file: PathBuf::from("/nonexistent/ca.crt"),
        client_auth: None,
    });
    let error = TransparentLinks::start(&s).unwrap_err().to_string();
    assert!(
        error.starts_with("cannot read CA file /nonexistent/ca.crt: ")
            && error.ends_with("; check broker.ca_file in the config"),
        "{error}"
    );

    let dir = temp_dir("tls-missing");
    make_certificates(&dir, &[]);
    s.broker.tls = Some(TlsFiles {
        ca_file: dir.join("ca.crt"),
        client_auth: None,
    });
    s.credentials = vec![CredentialsConfig {
        client_cert: Some(dir.join("m.crt")),
        client_key: Some(dir.join("m.key")),
        ..CredentialsConfig::new("m")
    }];
    let error = TransparentLinks::start(&s).unwrap_err().to_string();
    assert!(
        error.contains("m.crt")
            && error.contains("check client_cert of the [[credentials]] for \"m\" in the config"),
        "{error}"
    );
    // A certificate file that holds no certificate.
    std::fs::write(dir.join("m.crt"), "not a certificate\n").unwrap();
    let error = TransparentLinks::start(&s).unwrap_err().to_string();
    assert!(
        error.contains("holds no certificate in PEM form"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The soft limit of open files of this process, raised to the hard limit when lower than
/// `needed` (with `prlimit`, which needs no privilege for that).
fn ensure_open_files(needed: u64) {
    let soft = || -> Option<(u64, u64)> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut numbers = line.split_whitespace().skip(3);
        let soft = numbers.next()?.parse().unwrap_or(u64::MAX);
        let hard = numbers.next()?.parse().unwrap_or(u64::MAX);
        Some((soft, hard))
    };
    let Some((current, hard)) = soft() else {
        return;
    };
    if current >= needed {
        return;
    }
    let _ = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status();
    let now = soft().map_or(0, |(soft, _)| soft);
    assert!(
        now >= needed,
        "this test opens {needed} files but may open {now}: raise the limit, e.g. `ulimit -n 4096`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_connects_with_max_connecting_100() {
    const MOTES: usize = 1000;
    ensure_open_files(2 * MOTES as u64 + 200);
    let broker = Broker::anonymous("storm").await;
    let mut s = settings(broker.port, Vec::new());
    s.broker.options.max_connecting = 100;
    s.broker.options.connect_timeout = Duration::from_secs(10);
    let mut links = TransparentLinks::start(&s).unwrap();
    let started = std::time::Instant::now();
    for n in 0..MOTES {
        links.send(id(&format!("storm-{n}")), connect(60, true, None));
    }
    let mut connected = std::collections::HashSet::new();
    while connected.len() < MOTES {
        let (client_id, event) = tokio::time::timeout(Duration::from_secs(60), links.recv())
            .await
            .expect("all motes connect in time")
            .unwrap();
        assert_eq!(event, CONNECTED, "{client_id}");
        assert!(connected.insert(client_id));
    }
    eprintln!("{MOTES} motes connected in {:?}", started.elapsed());
    assert_eq!(links.len(), MOTES);
    links.shutdown().await;
}

/// A CA, a server certificate for 127.0.0.1 and one client certificate per name (CN = name,
/// files NAME.crt and NAME.key), made with openssl.
fn make_certificates(dir: &Path, clients: &[&str]) {
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // rustls accepts only X.509 v3 certificates, which extensions make openssl produce.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let mut steps: Vec<Vec<String>> = vec![
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=mote-link-CA"
            .split(' ')
            .map(String::from)
            .collect(),
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1"
            .split(' ')
            .map(String::from)
            .collect(),
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext"
            .split(' ')
            .map(String::from)
            .collect(),
    ];
    for name in clients {
        steps.push(
            format!(
                "req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}"
            )
            .split(' ')
            .map(String::from)
            .collect(),
        );
        steps.push(
            format!(
                "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile client.ext"
            )
            .split(' ')
            .map(String::from)
            .collect(),
        );
    }
    for args in steps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(dir, "openssl", &args);
    }
}
