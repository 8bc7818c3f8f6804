//! The gateway under test, in-process: the real [`Runtime`] on a real UDP socket, with its
//! durable store in a temp directory of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mqtt_sn_gateway::runtime::Runtime;
use mqtt_sn_gateway::settings::Settings;
use sn_config::{BrokerConfig, Config, CoreConfig, UdpConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The configuration of a [`Gateway`] before it starts.
///
/// Defaults, chosen for fast tests: one UDP link on `127.0.0.1:0` with discovery off,
/// T_retry 1 s, N_retry 3, broker `mqtt://127.0.0.1:PORT` with reconnect backoff from 50 ms to
/// 500 ms and a 2 s connect timeout, the state store in a fresh temp directory (removed when
/// the [`Gateway`] is dropped).
#[derive(Debug)]
pub struct GatewayBuilder {
    config: Config,
    store_dir: StoreDir,
}

/// A temp directory for the gateway's state store, removed on drop.
#[derive(Debug)]
struct StoreDir(PathBuf);

impl StoreDir {
    fn new() -> StoreDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sn-tests-gateway-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the gateway store temp dir");
        StoreDir(dir)
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl GatewayBuilder {
    /// A configuration for a gateway forwarding to the broker on `127.0.0.1:broker_port`.
    pub fn new(broker_port: u16) -> Self {
        let mut broker = BrokerConfig::from_url(&format!("mqtt://127.0.0.1:{broker_port}"))
            .expect("a valid broker URL");
        broker.reconnect_min = Duration::from_millis(50);
        broker.reconnect_max = Duration::from_millis(500);
        broker.connect_timeout = Duration::from_secs(2);
        broker.keep_alive = Duration::from_secs(10);
        // The tests of the remote-broker path check what happens without a fallback (new
        // motes refused during an outage); tests/fallback.rs turns it on with `fallback()`.
        broker.fallback = sn_config::Fallback::Off;
        // Many tests count every message a watcher on `#` sees: the gateway's own retained
        // status would be one more. tests/status.rs runs the real binary with it on.
        broker.status_topic = None;
        let config = Config {
            core: CoreConfig {
                retry_interval: Duration::from_secs(1),
                max_retries: 3,
                ..CoreConfig::default()
            },
            udp: vec![UdpConfig {
                bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                discovery: None,
                ..UdpConfig::default()
            }],
            broker: Some(broker),
            ..Config::default()
        };
        let store_dir = StoreDir::new();
        let mut builder = GatewayBuilder { config, store_dir };
        builder.config.store.path = builder.store_dir.0.join("gateway.redb");
        builder
    }

    /// A gateway with no remote broker: the embedded broker serves the motes, listening for
    /// MQTT apps on `127.0.0.1` at a free port ([`Gateway::embedded_broker_addr`]). Otherwise
    /// the defaults of [`GatewayBuilder::new`].
    pub fn embedded() -> Self {
        // The port is a placeholder: the broker section is removed at once.
        let mut builder = GatewayBuilder::new(1883);
        builder.config.broker = None;
        builder.config.embedded_broker.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        builder
    }

    /// Serve the motes from the embedded broker while the remote broker is unreachable (the
    /// product's default), its listener for local apps on a free loopback port
    /// ([`Gateway::embedded_broker_addr`]).
    pub fn fallback(mut self) -> Self {
        if let Some(broker) = &mut self.config.broker {
            broker.fallback = sn_config::Fallback::Embedded;
        }
        self.config.embedded_broker.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        self
    }

    /// The whole configuration, to change anything.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Adds a predefined topic id.
    pub fn predefined(mut self, id: u16, name: &str) -> Self {
        let topics = &mut self.config.core.predefined_topics;
        topics.retain(|(other, _)| *other != id);
        topics.push((id, name.to_string()));
        topics.sort_by_key(|(id, _)| *id);
        self
    }

    /// Sends ADVERTISE and GWINFO to `addr` (a socket the test owns, e.g. `127.0.0.1:PORT`).
    pub fn discovery(mut self, addr: SocketAddr) -> Self {
        for udp in &mut self.config.udp {
            udp.discovery = Some(addr);
        }
        self
    }

    /// Binds the UDP link to `addr` instead of `127.0.0.1:0` (e.g. `[::1]:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        for udp in &mut self.config.udp {
            udp.bind = addr;
        }
        self
    }

    /// The GwId in ADVERTISE and GWINFO.
    pub fn gw_id(mut self, gw_id: u8) -> Self {
        self.config.core.gw_id = gw_id;
        self
    }

    /// The ADVERTISE period (whole seconds; zero turns ADVERTISE off).
    pub fn advertise_interval(mut self, interval: Duration) -> Self {
        self.config.core.advertise_interval = interval;
        self
    }

    /// Adds a DTLS link (`[[dtls]]`); bind it to `127.0.0.1:0` and read the port from
    /// [`Gateway::dtls_addr`].
    pub fn dtls(mut self, link: sn_config::DtlsConfig) -> Self {
        self.config.dtls.push(link);
        self
    }

    /// Starts the runtime on a task of the current tokio runtime.
    pub async fn start(self) -> Gateway {
        let settings = Settings::from_config(&self.config).expect("settings from the config");
        let runtime = Runtime::start(settings)
            .await
            .expect("the gateway runtime starts");
        let addr = *runtime
            .local_addrs()
            .first()
            .expect("the gateway has a UDP link");
        let embedded_addr = runtime.embedded_broker_addr();
        let metrics = runtime.metrics_watch();
        let dtls_addrs = runtime.dtls_addrs();
        let dtls_recv_buffers = runtime.dtls_recv_buffers();
        let dtls_stats = runtime.dtls_stats();
        let psk_reloader = runtime.psk_reloader();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime.run(async {
            let _ = stop.await;
        }));
        Gateway {
            addr,
            embedded_addr,
            metrics,
            dtls_addrs,
            dtls_recv_buffers,
            dtls_stats,
            psk_reloader,
            config: self.config,
            shutdown: Some(shutdown),
            task: Some(task),
            store_dir: Some(self.store_dir),
        }
    }
}

/// A running gateway. Stops when dropped (or with [`Gateway::shutdown`]).
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    embedded_addr: Option<SocketAddr>,
    metrics: tokio::sync::watch::Receiver<mqtt_sn_gateway::core::Metrics>,
    dtls_addrs: Vec<SocketAddr>,
    dtls_recv_buffers: Vec<Option<usize>>,
    dtls_stats: Vec<mqtt_sn_gateway::runtime::DtlsStatsWatch>,
    psk_reloader: mqtt_sn_gateway::runtime::PskReloader,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    store_dir: Option<StoreDir>,
}

impl Gateway {
    /// A gateway with the default test configuration (see [`GatewayBuilder`]).
    pub async fn start(broker_port: u16) -> Gateway {
        GatewayBuilder::new(broker_port).start().await
    }

    /// A gateway that lets sessions move between addresses (`[gateway] roaming = true`), for
    /// the tests of motes behind a NAT that rebinds.
    pub async fn start_roaming(broker_port: u16) -> Gateway {
        let mut builder = GatewayBuilder::new(broker_port);
        builder.config_mut().core.roaming = true;
        builder.start().await
    }

    /// A configuration to adjust before starting.
    pub fn builder(broker_port: u16) -> GatewayBuilder {
        GatewayBuilder::new(broker_port)
    }

    /// The UDP address motes send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the first DTLS link (see [`GatewayBuilder::dtls`]).
    pub fn dtls_addr(&self) -> SocketAddr {
        *self
            .dtls_addrs
            .first()
            .expect("the gateway has a DTLS link")
    }

    /// The first DTLS link's socket receive buffer as the kernel reported it at start
    /// (SO_RCVBUF: twice the granted size on Linux).
    pub fn dtls_recv_buffer(&self) -> usize {
        self.dtls_recv_buffers
            .first()
            .copied()
            .flatten()
            .expect("the gateway has a DTLS link whose SO_RCVBUF can be read")
    }

    /// The counters of the first DTLS link, as its task last published them.
    pub fn dtls_stats(&self) -> mqtt_sn_gateway::runtime::DtlsLinkStats {
        self.dtls_stats
            .first()
            .expect("the gateway has a DTLS link")
            .borrow()
            .clone()
    }

    /// Reads the DTLS links' PSK files again, as a `SIGHUP` does.
    pub fn reload_psk_files(&self) {
        mqtt_sn_gateway::reload::reload_psk_files(&self.psk_reloader);
    }

    /// The TCP address of the embedded broker for MQTT apps, when the gateway runs one with a
    /// listener (see [`GatewayBuilder::embedded`]).
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        self.embedded_addr
    }

    /// The core's counters as of its last turn.
    pub fn metrics(&self) -> mqtt_sn_gateway::core::Metrics {
        self.metrics.borrow().clone()
    }

    /// Waits (at most 10 s) until the counter `name` (read by `counter`) reaches `expected`,
    /// and checks it is exactly that: the counters are published at the end of the gateway's
    /// turn, a moment after the answer a mote may already have.
    pub async fn metric_reaches(
        &self,
        name: &str,
        expected: u64,
        counter: impl Fn(&mqtt_sn_gateway::core::Metrics) -> u64,
    ) {
        crate::wait_until(
            &format!("{name} = {expected}"),
            Duration::from_secs(10),
            || counter(&self.metrics()) >= expected,
        )
        .await;
        assert_eq!(counter(&self.metrics()), expected, "{name}");
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the runtime and waits (at most 5 s) for it to return.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(5), task).await;
            assert!(result.is_ok(), "the gateway did not stop within 5 s");
        }
    }

    /// Stops the runtime and starts a new one with the same configuration, the same state
    /// store and the same UDP address, as a restarted gateway process would.
    pub async fn restart(mut self) -> Gateway {
        self.stop().await;
        let mut config = self.config.clone();
        for udp in &mut config.udp {
            udp.bind = self.addr;
        }
        if let Some(addr) = self.embedded_addr {
            config.embedded_broker.listen = Some(addr);
        }
        let store_dir = self.store_dir.take().expect("the store dir");
        // The stopped runtime has released its port; a new process could bind it at once.
        assert!(
            std::net::UdpSocket::bind(self.addr).is_ok(),
            "the old gateway still holds {} after it stopped",
            self.addr
        );
        GatewayBuilder { config, store_dir }.start().await
    }

    /// Waits until the gateway's broker link is up, by connecting a throwaway client until its
    /// CONNECT is accepted (CONNACK 0x01 means the link is still down) and disconnecting it.
    /// Needed before traffic the gateway cannot hold while the link is down, such as QoS -1.
    pub async fn wait_for_broker(&self) {
        let mut probe = crate::Mote::new(self.addr, "broker-link-probe").await;
        probe.connect().await;
        probe.disconnect().await;
    }

    /// Waits until the gateway knows its broker is down, after the broker was stopped. Until
    /// the link notices, the gateway still forwards, and a QoS 1/2 PUBLISH taken in that
    /// window waits for the broker to come back (without a spool nothing else can hold it),
    /// so a test that wants the refusal must not publish at QoS 1 before this. The probes are
    /// QoS 0 PUBLISHes of `mote` on its registered topic `topic_id` (never spooled with the
    /// default `[spool] qos0 = false`): once the gateway knows, each is counted in
    /// `publish_broker_down`.
    pub async fn wait_until_broker_down(&self, mote: &mut crate::Mote, topic_id: u16) {
        let down = self.metrics().publish_broker_down;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.metrics().publish_broker_down == down {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway did not notice the broker was down within 30 s"
            );
            mote.publish(
                crate::mote::Topic::Normal(topic_id),
                sn_codec::QoS::AtMostOnce,
                false,
                b"probe",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The state store file.
    pub fn store_path(&self) -> PathBuf {
        self.config.store.path.clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
