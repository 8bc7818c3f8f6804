//! Motes behind a serial radio, end to end: the gateway's `[[serial]]` link opens the radio
//! simulator's pty by a symlink (as a user names `/dev/serial/by-id/...`), the motes are
//! MQTT-SN clients on the simulator's UDP side, and the broker is a real mosquitto. Every
//! gateway keeps the builder's UDP link too, so each test also runs several links into one
//! core.
//!
//! What the gateway cannot be asked directly (its core metrics) is read from the simulator's
//! side of the line: its counters say what the gateway wrote on the serial device.
//!
//! Network safety: everything stays on loopback (127.0.0.1); the serial lines are ptys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mqtt_sn_tools::radio_sim::{RadioSim, RadioSimConfig, NETWORK_ACK_FAILURE};
use sn_config::{SerialConfig, SerialDevice, SerialFraming};
use sn_tests::{
    wait_until, Gateway, Mosquitto, Mote, MqttClient, Packet, QoS, ReturnCode, SubTopic, Topic,
    XorShift, WAIT,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A scratch directory for the simulators' symlinks, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sn-tests-serial-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mosquitto, one simulated radio per framing asked for (each with its symlink), and a
/// gateway with its UDP link plus one `[[serial]]` link per radio, on the symlink.
struct Bench {
    // Dropped in this order: the gateway first, so that it does not see its devices vanish.
    gateway: Gateway,
    radios: Vec<RadioSim>,
    broker: Mosquitto,
    _scratch: Scratch,
}

impl Bench {
    async fn start(name: &str, framings: &[SerialFraming]) -> Bench {
        let broker = Mosquitto::running().await;
        let scratch = Scratch::new(name);
        let mut builder = Gateway::builder(broker.port());
        let mut radios = Vec::new();
        for (n, &framing) in framings.iter().enumerate() {
            let link = scratch.path(&format!("radio{n}"));
            let sim = RadioSim::start(RadioSimConfig::new(framing).with_link(&link))
                .await
                .unwrap();
            assert_eq!(sim.serial_path(), link);
            builder.config_mut().serial.push(SerialConfig {
                device: SerialDevice::Path(link),
                // A pty ignores the rate.
                baud: 115_200,
                framing,
                max_frame: sim.max_frame(),
                discovery: false,
            });
            radios.push(sim);
        }
        let gateway = builder.start().await;
        Bench {
            gateway,
            radios,
            broker,
            _scratch: scratch,
        }
    }

    fn port(&self) -> u16 {
        self.broker.port()
    }

    fn radio(&self) -> &RadioSim {
        &self.radios[0]
    }
}

/// A mote behind `sim`: it only knows the simulator's UDP address, so everything it gets
/// crossed the serial line (the mote ignores datagrams from any other address).
async fn radio_mote(sim: &RadioSim, client_id: &str) -> Mote {
    let mut mote = Mote::new(sim.udp_addr(), client_id).await;
    mote.connect().await;
    mote
}

/// Up and down through one radio: the mote publishes QoS 1 (an MQTT subscriber gets it)
/// and receives at QoS 1 what is published on mosquitto to its subscription. Returns the
/// mote, still connected.
async fn round_trip(port: u16, sim: &RadioSim, name: &str) -> Mote {
    let up = format!("radio/{name}/up");
    let down = format!("radio/{name}/down");
    let mut sub = MqttClient::connect(port, &format!("{name}-sub")).await;
    assert_eq!(sub.subscribe(&up, 1).await, 1);
    let mut publisher = MqttClient::connect(port, &format!("{name}-pub")).await;

    let mut mote = radio_mote(sim, &format!("{name}-mote")).await;
    let id = mote.register(&up).await;
    let payload = format!("21.5 over {name}");
    mote.publish_reliably(
        Topic::Normal(id),
        QoS::AtLeastOnce,
        false,
        payload.as_bytes(),
    )
    .await;
    let message = sub.recv_on(&up, WAIT).await;
    assert_eq!(message.text(), payload, "{name}");
    assert_eq!(message.qos, 1, "{name}: forwarded at the mote's QoS");

    let ack = mote
        .subscribe(SubTopic::name(&down), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted, "{name}");
    let command = format!("valve open via {name}");
    publisher.publish(&down, command.as_bytes(), 1, false).await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, command.as_bytes(), "{name}");
    assert_eq!(got.topic, Topic::Normal(ack.topic_id), "{name}");
    assert_eq!(got.qos, QoS::AtLeastOnce, "{name}");

    // It went over the line both ways: CONNECT, REGISTER, PUBLISH, SUBSCRIBE up, and the
    // mote's PUBACK on its way; CONNACK, REGACK, PUBACK, SUBACK, PUBLISH down.
    wait_until("the mote's PUBACK to cross the line", WAIT, || {
        sim.stats().frames_to_gateway >= 5
    })
    .await;
    let stats = sim.stats();
    assert!(stats.frames_from_gateway >= 5, "{name}: {stats:?}");
    assert_eq!(stats.framing_errors, 0, "{name}: {stats:?}");
    mote
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_behind_an_xbee_in_api_mode_2_publishes_and_receives() {
    let bench = Bench::start("xbee", &[SerialFraming::XBee]).await;
    round_trip(bench.port(), bench.radio(), "xbee").await;
    let stats = bench.radio().stats();
    // The gateway asks an XBee for a transmit status for each unicast, and got one.
    assert!(stats.statuses >= 5, "{stats:?}");
    assert_eq!(stats.failed_deliveries + stats.unknown_destinations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_behind_a_lora_modem_with_cobs_framing_publishes_and_receives() {
    let lora = SerialFraming::from_name("lora").unwrap();
    let bench = Bench::start("lora", &[lora]).await;
    round_trip(bench.port(), bench.radio(), "lora").await;
    // COBS has no transmit statuses.
    assert_eq!(bench.radio().stats().statuses, 0);
}

/// Two radios of other framings on one gateway at once (and its UDP link): each carries its
/// mote both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xbee_api_mode_1_and_a_raw_line_side_by_side() {
    let bench = Bench::start("api1-raw", &[SerialFraming::XBeeApi1, SerialFraming::Raw]).await;
    round_trip(bench.port(), &bench.radios[0], "xbee-api1").await;
    round_trip(bench.port(), &bench.radios[1], "raw").await;
    assert!(bench.radios[0].stats().statuses >= 5);
    assert_eq!(bench.radios[1].stats().statuses, 0);
}

/// KISS, as an RNode speaks it: the mote's frames are data frames on port 0, the only port
/// the gateway takes data from; replies and broadcasts go back on port 0. A frame on another
/// port (an RNode report whose command byte has a low nibble of 0) is not taken for a mote's
/// datagram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mote_behind_a_kiss_rnode_on_port_0_publishes_receives_and_hears_broadcasts() {
    let bench = Bench::start("kiss", &[SerialFraming::Kiss]).await;
    let sim = bench.radio();
    // KISS carries one mote: the same one goes on.
    let mut mote = round_trip(bench.port(), sim, "kiss").await;

    // SEARCHGW is answered with a GWINFO broadcast on the link it came from: port 0 too.
    mote.search_gw(1).await;
    let gw_id = mote
        .expect("GWINFO", |p| match p {
            Packet::GwInfo(info) => Some(info.gw_id),
            _ => None,
        })
        .await;
    assert_eq!(gw_id, bench.gateway.config().core.gw_id);

    // An RNode-style report on port 4 (command byte 0x40) holding a PINGREQ. Were it taken as
    // a datagram, the gateway would answer the stranger on port 4 with a DISCONNECT, which
    // reaches no mote and is counted by the simulator. Frames are handled in line order, so
    // once the mote's two pings are answered, such an answer would have been counted.
    sim.inject_garbage(&[0xC0, 0x40, 0x02, 0x16, 0xC0])
        .await
        .unwrap();
    mote.ping().await;
    mote.ping().await;
    let stats = sim.stats();
    assert_eq!(stats.unknown_destinations, 0, "{stats:?}");
    assert_eq!(stats.framing_errors, 0, "{stats:?}");
}

/// The dongle is pulled out and plugged back in (a new pty, the same symlink) while a mote
/// publishes 200 QoS 1 messages one after another: every one reaches mosquitto (duplicates
/// allowed), the mote never reconnects, and the gateway's session (its topic id, its
/// subscription) is still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replugging_the_dongle_mid_stream_loses_no_qos_1_message() {
    const COUNT: usize = 200;
    const REPLUG_AFTER: usize = 50;
    let bench = Bench::start("replug", &[SerialFraming::XBee]).await;
    let sim = bench.radio();
    let link = sim.link().unwrap().to_path_buf();
    let mut sub = MqttClient::connect(bench.port(), "replug-sub").await;
    sub.subscribe("replug/#", 1).await;
    let mut publisher = MqttClient::connect(bench.port(), "replug-pub").await;

    let mut mote = radio_mote(sim, "replug-mote").await;
    let id = mote.register("replug/seq").await;
    let ack = mote
        .subscribe(SubTopic::name("replug/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);

    let published = AtomicUsize::new(0);
    let (start_replug, replug_now) = oneshot::channel::<()>();
    let publishing = async {
        let mut start_replug = Some(start_replug);
        for n in 0..COUNT {
            if n == REPLUG_AFTER {
                let _ = start_replug.take().unwrap().send(());
            }
            mote.publish_reliably(
                Topic::Normal(id),
                QoS::AtLeastOnce,
                false,
                format!("{n}").as_bytes(),
            )
            .await;
            published.store(n + 1, Ordering::SeqCst);
        }
    };
    let replugging = async {
        replug_now.await.unwrap();
        let device = sim.replug(Duration::from_millis(500)).await.unwrap();
        (device, published.load(Ordering::SeqCst))
    };
    let started = Instant::now();
    let ((), (new_device, published_when_back)) = tokio::join!(publishing, replugging);
    let elapsed = started.elapsed();

    // The replug happened mid-stream, and the symlink followed the new device.
    assert!(
        published_when_back < COUNT,
        "all {COUNT} were acknowledged before the dongle was back: not mid-stream"
    );
    // (The new pty may get the number the old one had: the link names it either way.)
    assert_eq!(std::fs::read_link(&link).unwrap(), new_device);
    assert_eq!(sim.stats().unplugs, 1);

    let mut missing: BTreeSet<usize> = (0..COUNT).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = sub.try_recv(left).await else {
            panic!(
                "{} of {COUNT} messages never reached mosquitto: {missing:?}",
                missing.len()
            );
        };
        if message.topic == "replug/seq" {
            missing.remove(&message.text().parse::<usize>().unwrap());
        }
    }

    // The session survived: its subscription delivers, and the mote was never told to
    // reconnect.
    publisher
        .publish("replug/cmd", b"after the replug", 1, false)
        .await;
    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"after the replug");
    assert_eq!(got.topic, Topic::Normal(ack.topic_id));
    mote.ping().await;
    let disconnects = mote
        .drain_inbox()
        .into_iter()
        .filter(|d| matches!(Packet::decode(d), Ok(Packet::Disconnect(_))))
        .count();
    assert_eq!(disconnects, 0, "the gateway told the mote to reconnect");
    eprintln!(
        "replug: {COUNT} QoS 1 messages in {elapsed:?}, {published_when_back} acknowledged when \
         the dongle was back; radio stats {:?}",
        sim.stats()
    );
}

/// Noise and broken frames on the line between messages: the gateway's framer finds the next
/// frame, so the message right after the garbage arrives, on its first transmission (the
/// mote does not retransmit in this test).
async fn garbage_between_messages(framing: SerialFraming, name: &str, partials: &[&[u8]]) {
    let bench = Bench::start(name, &[framing]).await;
    let sim = bench.radio();
    let topic = format!("garbage/{name}");
    let mut sub = MqttClient::connect(bench.port(), &format!("{name}-sub")).await;
    sub.subscribe(&topic, 1).await;
    let mut mote = radio_mote(sim, &format!("{name}-mote")).await;
    let id = mote.register(&topic).await;
    mote.publish_reliably(
        Topic::Normal(id),
        QoS::AtLeastOnce,
        false,
        b"before garbage",
    )
    .await;
    assert_eq!(sub.recv_on(&topic, WAIT).await.text(), "before garbage");
    // One transmission per message: a frame lost to the garbage would fail the test rather
    // than be recovered by a retransmission.
    mote.retry_interval = Duration::from_secs(20);
    mote.op_timeout = Duration::from_secs(20);

    let mut rng = XorShift::new(0x5EED_0006);
    let mut injected = 0;
    for round in 0..8 {
        let len = 1 + usize::try_from(rng.below(96)).unwrap();
        let mut garbage = rng.bytes(len);
        garbage.extend_from_slice(partials[round % partials.len()]);
        injected += garbage.len();
        sim.inject_garbage(&garbage).await.unwrap();
        let payload = format!("after garbage {round}");
        let code = mote
            .publish(
                Topic::Normal(id),
                QoS::AtLeastOnce,
                false,
                payload.as_bytes(),
            )
            .await;
        assert_eq!(code, ReturnCode::Accepted, "round {round}");
        assert_eq!(sub.recv_on(&topic, WAIT).await.text(), payload);
    }
    let stats = sim.stats();
    assert_eq!(stats.garbage_bytes, injected as u64);
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_an_xbee_line_the_link_resynchronises() {
    garbage_between_messages(
        SerialFraming::XBee,
        "xbee-garbage",
        &[
            // A receive packet cut short, as after a module reset.
            b"\x7E\x00\x20\x90\x00\x13\xA2\x00",
            // A complete frame with a wrong checksum.
            b"\x7E\x00\x0E\x90\x00\x13\xA2\x00\x00\x00\x00\x09\x00\x09\x01\x02\x16\x00",
            // A length beyond max_frame, then an escape left hanging.
            b"\x7E\x7F\xFF\x90\x7D",
            // A stray escape right after a start delimiter.
            b"\x7E\x7D",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_lora_cobs_line_the_link_resynchronises() {
    garbage_between_messages(
        SerialFraming::Cobs,
        "lora-garbage",
        &[
            // A frame cut short (no closing zero).
            b"\x00\x05\x01\x02\x03",
            // A whole frame with a wrong CRC.
            b"\x00\x07\x00\x01\x02\x16\xAB\xCD\x00",
            // COBS code bytes pointing past the end.
            b"\xFF\xFF\x10",
        ],
    )
    .await;
}

/// The XBee reports a unicast undelivered (0x8B with a failure status): the gateway keeps the
/// message and its retry timer sends it again, which reaches the mote once the radio delivers
/// again.
///
/// The gateway counts such reports (`metrics().link_undelivered`); the test checks the count,
/// that the failure status was sent on the line, and that the retransmission (DUP) arrives
/// after delivery is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xbee_delivery_failure_is_reported_and_the_message_is_retried() {
    let bench = Bench::start("undelivered", &[SerialFraming::XBee]).await;
    let sim = bench.radio();
    let mut publisher = MqttClient::connect(bench.port(), "undelivered-pub").await;
    let mut mote = radio_mote(sim, "undelivered-mote").await;
    let ack = mote
        .subscribe(SubTopic::name("undelivered/cmd"), QoS::AtLeastOnce)
        .await;
    assert_eq!(ack.return_code, ReturnCode::Accepted);
    let address = sim.motes()[0].address;
    let before = sim.stats();
    assert_eq!(before.failed_deliveries, 0);

    sim.fail_delivery(address, NETWORK_ACK_FAILURE)
        .await
        .unwrap();
    publisher
        .publish("undelivered/cmd", b"lost once", 1, false)
        .await;
    wait_until("the radio to fail a delivery", WAIT, || {
        sim.stats().failed_deliveries >= 1
    })
    .await;
    let failed = sim.stats();
    // The failure was reported to the gateway as a transmit status, and counted there.
    assert!(failed.statuses > before.statuses, "{failed:?}");
    wait_until(
        "the gateway to count the undelivered datagram",
        WAIT,
        || bench.gateway.metrics().link_undelivered >= 1,
    )
    .await;
    sim.restore_delivery(address).await.unwrap();

    let got = mote.recv_publish().await;
    assert_eq!(got.data, b"lost once");
    assert!(got.dup, "a retransmission by the gateway");
    assert_eq!(got.topic, Topic::Normal(ack.topic_id));
    // And the mote's session is unharmed.
    mote.ping().await;
}

/// A mote on the gateway's UDP link and a mote behind the radio talk to each other through
/// mosquitto: two links feeding one core, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_mote_and_a_radio_mote_exchange_messages_through_the_broker() {
    let bench = Bench::start("two-links", &[SerialFraming::XBee]).await;
    let sim = bench.radio();
    let mut udp = Mote::connected(bench.gateway.addr(), "two-links-udp").await;
    let mut radio = radio_mote(sim, "two-links-radio").await;
    let to_radio = radio
        .subscribe(SubTopic::name("chat/to-radio"), QoS::AtLeastOnce)
        .await;
    let to_udp = udp
        .subscribe(SubTopic::name("chat/to-udp"), QoS::AtLeastOnce)
        .await;
    assert_eq!(to_radio.return_code, ReturnCode::Accepted);
    assert_eq!(to_udp.return_code, ReturnCode::Accepted);

    let id = udp.register("chat/to-radio").await;
    udp.publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"hello radio")
        .await;
    let got = radio.recv_publish().await;
    assert_eq!(got.data, b"hello radio");
    assert_eq!(got.topic_name.as_deref(), Some("chat/to-radio"));

    let id = radio.register("chat/to-udp").await;
    radio
        .publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"hello udp")
        .await;
    let got = udp.recv_publish().await;
    assert_eq!(got.data, b"hello udp");
    assert_eq!(got.topic_name.as_deref(), Some("chat/to-udp"));

    // The radio mote's traffic crossed the serial line; the UDP mote's did not.
    let motes = sim.motes();
    assert_eq!(motes.len(), 1);
    assert_eq!(motes[0].udp, radio.local_addr());
}
