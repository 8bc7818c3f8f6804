//! SIGHUP puts a changed policy in force in the running gateway (issue 16): the real binary
//! with its TOML file, real UDP motes, a real mosquitto. A rule added reaches a connected mote
//! without it reconnecting; a mote the new policy no longer lists is disconnected and refused
//! while another stays connected; a broken file leaves the policy in force as it was. A
//! changed broker password file is used at the next reconnection, without dropping the
//! connection that works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::{Duration, Instant};

use sn_codec::v12::Register;
use sn_tests::custom_broker::{run, temp_dir, CustomBroker};
use sn_tests::process::GatewayProcess;
use sn_tests::{Mosquitto, Mote, MqttClient, Packet, QoS, ReturnCode, Topic};

/// A's rules in the first file: publish and subscribe under a/ only.
const ONLY_A: &str = "publish = [\"a/#\"]\nsubscribe = [\"a/#\"]\n";
/// A's rules in the second file: b/ too.
const A_AND_B: &str = "publish = [\"a/#\", \"b/#\"]\nsubscribe = [\"a/#\"]\n";

/// The gateway's file with `policy` (the `[policy]` and `[[mote]]` sections) and the same
/// broker, log and UDP link as the running one (so that nothing else changed).
fn write_config(gateway: &GatewayProcess, broker: u16, policy: &str) {
    let text = format!(
        "{}\n[[udp]]\nbind = \"127.0.0.1:{}\"\ndiscovery = \"off\"\n",
        base(broker, policy),
        gateway.addr.port()
    );
    std::fs::write(gateway.dir.join("gateway.toml"), text).unwrap();
}

fn base(broker: u16, policy: &str) -> String {
    format!(
        "[broker]\nurl = \"mqtt://127.0.0.1:{broker}\"\nfallback = \"off\"\n\
         [log]\nlevel = \"info\"\n{policy}"
    )
}

/// A listed policy: A with `a_rules` (unless `None`: not listed), B with the default rules.
fn listed(a_rules: Option<&str>) -> String {
    let a = a_rules.map_or(String::new(), |rules| {
        format!("[[mote]]\nclient_id = \"reload-a\"\n{rules}")
    });
    format!("[policy]\nadmission = \"listed\"\n{a}[[mote]]\nclient_id = \"reload-b\"\n")
}

fn hangup(gateway: &GatewayProcess) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &gateway.child.id().to_string()])
        .status()
        .expect("kill not found: install procps");
    assert!(sent.success(), "kill -HUP failed: {sent}");
}

/// Waits until the log, after its first `skip` bytes, has a line holding every needle;
/// returns the log's length after that line.
fn wait_for(gateway: &GatewayProcess, skip: usize, needles: &[&str]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = gateway.log();
        let mut offset = skip;
        for line in log.get(skip..).unwrap_or("").split_inclusive('\n') {
            offset += line.len();
            if line.ends_with('\n') && needles.iter().all(|n| line.contains(n)) {
                return offset;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} within 20 s; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A REGISTER of `name`: the topic id, or the refusal.
async fn register(mote: &mut Mote, name: &str) -> Result<u16, ReturnCode> {
    let msg_id = mote.next_msg_id();
    mote.send(Packet::Register(Register {
        topic_id: 0,
        msg_id,
        topic_name: name.as_bytes(),
    }))
    .await;
    let ack = mote
        .expect("REGACK", |p| match p {
            Packet::RegAck(ack) if ack.msg_id == msg_id => Some(*ack),
            _ => None,
        })
        .await;
    match ack.return_code {
        ReturnCode::Accepted => Ok(ack.topic_id),
        refused => Err(refused),
    }
}

/// Checks that the next message on `topic` at `collector` (within 10 s) carries `payload`.
async fn assert_received(collector: &mut MqttClient, topic: &str, payload: &[u8]) {
    assert_eq!(
        collector
            .recv_on(topic, Duration::from_secs(10))
            .await
            .payload,
        payload
    );
}

/// `mote` publishes `payload` at QoS 1 on `topic` (registered as `id`): the gateway accepts it
/// (`what` says which publish failed if not) and `watcher` receives it.
async fn publish_accepted(
    mote: &mut Mote,
    watcher: &mut MqttClient,
    (id, topic): (u16, &str),
    payload: &[u8],
    what: &str,
) {
    assert_eq!(
        mote.publish(Topic::Normal(id), QoS::AtLeastOnce, false, payload)
            .await,
        ReturnCode::Accepted,
        "{what}"
    );
    assert_received(watcher, topic, payload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_policy_for_connected_motes_without_dropping_the_others() {
    let broker = Mosquitto::running().await;
    let port = broker.port();
    let gateway = GatewayProcess::start(
        temp_dir("reload-policy"),
        &base(port, &listed(Some(ONLY_A))),
    );
    let mut watcher = MqttClient::subscribed(port, "reload-watcher", "#").await;
    let mut a = Mote::new(gateway.addr, "reload-a").await;
    a.connect().await;
    let mut b = Mote::new(gateway.addr, "reload-b").await;
    b.connect().await;

    // The first policy: A reaches a/ but not b/.
    let a_x = register(&mut a, "a/x").await.unwrap();
    let first = "A's publish to a/x under the first policy";
    publish_accepted(&mut a, &mut watcher, (a_x, "a/x"), b"1", first).await;
    assert_eq!(
        register(&mut a, "b/x").await,
        Err(ReturnCode::NotSupported),
        "b/x under the first policy"
    );

    // SIGHUP with b/ allowed to A: the same connection may now publish there.
    write_config(&gateway, port, &listed(Some(A_AND_B)));
    hangup(&gateway);
    let mut at = wait_for(
        &gateway,
        0,
        &[
            "SIGHUP: policy reloaded: 2 mote entries, admission=listed",
            "0 no longer admitted",
        ],
    );
    let b_x = register(&mut a, "b/x").await.expect("b/x after the reload");
    let reloaded = "A's publish to b/x after the reload";
    publish_accepted(&mut a, &mut watcher, (b_x, "b/x"), b"2", reloaded).await;

    // A file that does not parse: the error says how to fix it, the policy stays.
    write_config(
        &gateway,
        port,
        "[policy]\nadmission = \"sometimes\"\n[[mote]]\nclient_id = \"reload-b\"\n",
    );
    hangup(&gateway);
    at = wait_for(
        &gateway,
        at,
        &["configuration not reloaded", "check-config"],
    );
    at = wait_for(&gateway, at, &["admission"]);
    let kept = "the policy in force after a broken file";
    publish_accepted(&mut a, &mut watcher, (b_x, "b/x"), b"3", kept).await;

    // SIGHUP with A no longer listed: it is told (DISCONNECT) and refused when it comes
    // back (CONNACK 0x03); B stays connected throughout.
    write_config(&gateway, port, &listed(None));
    hangup(&gateway);
    let disconnect = a
        .try_expect(Duration::from_secs(10), |p| {
            matches!(p, Packet::Disconnect(_)).then_some(())
        })
        .await;
    assert!(
        disconnect.is_some(),
        "A got no DISCONNECT; log:\n{}",
        gateway.log()
    );
    at = wait_for(
        &gateway,
        at,
        &[
            "SIGHUP: policy reloaded: 1 mote entries, admission=listed",
            "1 no longer admitted",
        ],
    );
    // The revocation is logged with the mote and the reason.
    wait_for(
        &gateway,
        at,
        &[
            "no longer admits this session",
            "reload-a",
            "client id not listed",
        ],
    );
    assert_eq!(
        a.connect_with(&sn_tests::ConnectOptions::default()).await,
        ReturnCode::NotSupported,
        "A's reconnect"
    );
    // B did not reconnect: its session and topic id are the ones from before.
    let b_y = register(&mut b, "b/y").await.unwrap();
    let stayed = "B's publish with the topic id from before";
    publish_accepted(&mut b, &mut watcher, (b_y, "b/y"), b"4", stayed).await;
    b.ping().await;
    assert!(
        b.try_expect(Duration::from_millis(300), |p| matches!(
            p,
            Packet::Disconnect(_)
        )
        .then_some(()))
            .await
            .is_none(),
        "B was disconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_broker_password_file_is_used_at_the_next_reconnection() {
    let broker_dir = temp_dir("reload-pass-broker");
    run(
        &broker_dir,
        "mosquitto_passwd",
        &["-b", "-c", "passwd", "gateway", "old-secret"],
    );
    let mut broker = CustomBroker::start(
        broker_dir.clone(),
        &format!(
            "allow_anonymous false\npassword_file {}/passwd",
            broker_dir.display()
        ),
    )
    .await;
    let dir = temp_dir("reload-pass");
    std::fs::write(dir.join("broker.pass"), "old-secret\n").unwrap();
    let gateway = GatewayProcess::start(
        dir,
        &format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"gateway\"\n\
             password_file = \"broker.pass\"\nfallback = \"off\"\n\
             reconnect_min = \"100ms\"\nreconnect_max = \"500ms\"\n[log]\nlevel = \"info\"\n",
            broker.secure_port
        ),
    );
    let mut at = wait_for(&gateway, 0, &["connected to broker"]);
    let mut collector = MqttClient::subscribed(broker.plain_port, "pass-collector", "pass/#").await;
    let mut mote = Mote::new(gateway.addr, "pass-mote").await;
    mote.connect().await;
    let topic = register(&mut mote, "pass/t").await.unwrap();
    mote.publish_reliably(Topic::Normal(topic), QoS::AtLeastOnce, false, b"old")
        .await;
    assert_received(&mut collector, "pass/t", b"old").await;

    // The password changes at both ends: mosquitto's file (read when it starts again) and
    // the gateway's (read at its next connection; SIGHUP checks it and says so).
    run(
        &broker.dir,
        "mosquitto_passwd",
        &["-b", "passwd", "gateway", "new-secret"],
    );
    std::fs::write(gateway.dir.join("broker.pass"), "new-secret\n").unwrap();
    hangup(&gateway);
    at = wait_for(
        &gateway,
        at,
        &[
            "SIGHUP: broker.password_file read",
            "from the next connection",
        ],
    );
    // The connection up now stays up.
    mote.publish_reliably(Topic::Normal(topic), QoS::AtLeastOnce, false, b"kept")
        .await;
    assert_received(&mut collector, "pass/t", b"kept").await;
    assert!(
        !gateway.log()[at..].contains("broker connection lost"),
        "the reload dropped the broker connection:\n{}",
        gateway.log()
    );

    // mosquitto starts again with the new password only: the gateway gets back in with it.
    broker.restart().await;
    wait_for(&gateway, at, &["broker connection lost"]);
    wait_for(&gateway, at, &["connected to broker"]);
    let mut collector =
        MqttClient::subscribed(broker.plain_port, "pass-collector-2", "pass/#").await;
    mote.publish_reliably(Topic::Normal(topic), QoS::AtLeastOnce, false, b"new")
        .await;
    assert_received(&mut collector, "pass/t", b"new").await;
}
