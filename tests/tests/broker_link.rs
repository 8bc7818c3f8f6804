//! The broker link against the hazards it was designed for, and its security options:
//! - replay when the broker reports no session (rumqttc's own queue is dropped then);
//! - a connection that stays up but acknowledges nothing (the watchdog replaces it);
//! - TLS with a CA file and a client certificate, and user name / password, against a real
//!   mosquitto configured to require them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sn_tests::custom_broker::{run, temp_dir, CustomBroker};
use sn_tests::{wait_until, Gateway, GatewayBuilder, Mosquitto, Mote, MqttClient, QoS, Topic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Motes publishing at once, so that several messages are in flight at each restart.
const MOTES: usize = 20;
const PER_MOTE: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_survives_a_broker_that_reports_no_session() {
    let mut broker = Mosquitto::running().await;
    let mut builder = GatewayBuilder::new(broker.port());
    // CleanSession=1: every reconnect gets session_present=0, the case where rumqttc drops
    // its queued QoS 1 publishes. Only the core's replay can save them.
    builder.config_mut().broker.as_mut().unwrap().clean_session = true;
    let gateway = builder.start().await;
    let mut collector = MqttClient::connect_with(broker.port(), "nosession-collector", false).await;
    assert_eq!(collector.subscribe("nosession/+", 1).await, 1);

    let acked = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for m in 0..MOTES {
        let acked = acked.clone();
        let addr = gateway.addr();
        publishers.push(tokio::spawn(async move {
            let mut mote = Mote::connected(addr, &format!("nosession-{m}")).await;
            mote.op_timeout = Duration::from_secs(30);
            let id = mote.register(&format!("nosession/{m}")).await;
            for seq in 0..PER_MOTE {
                mote.publish_reliably(
                    Topic::Normal(id),
                    QoS::AtLeastOnce,
                    false,
                    seq.to_string().as_bytes(),
                )
                .await;
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    let total = MOTES * PER_MOTE;
    for restart_at in [total * 3 / 10, total * 6 / 10] {
        wait_until("publishes to progress", Duration::from_secs(30), || {
            acked.load(Ordering::SeqCst) >= restart_at
        })
        .await;
        broker.stop().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        broker.start().await;
    }
    for publisher in publishers {
        tokio::time::timeout(Duration::from_secs(60), publisher)
            .await
            .expect("every mote finished within 60 s")
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < total {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(message) = collector.try_recv(left).await else {
            break;
        };
        let mote: usize = message
            .topic
            .trim_start_matches("nosession/")
            .parse()
            .unwrap();
        let seq: usize = message.text().parse().unwrap();
        seen.insert((mote, seq));
    }
    let lost = total - seen.len();
    println!(
        "broker without session, restarted twice: {} of {total} distinct messages arrived",
        seen.len()
    );
    assert_eq!(lost, 0, "{lost} acknowledged QoS 1 messages lost");
}

/// A fake broker: accepts connections, answers CONNECT and PINGREQ, swallows everything
/// else. The connection looks alive (pings are answered) but no PUBLISH is ever
/// acknowledged: what a wedged client or broker looks like from the gateway. Counts the
/// PUBLISHes it swallowed in `swallowed`.
async fn black_hole(listener: TcpListener, swallowed: Arc<AtomicUsize>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let swallowed = swallowed.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Split complete MQTT packets: type byte, remaining length (varint), body.
                loop {
                    let mut len = 0usize;
                    let mut shift = 0;
                    let mut i = 1;
                    let complete = loop {
                        let Some(&b) = buf.get(i) else { break None };
                        len |= usize::from(b & 0x7F) << shift;
                        shift += 7;
                        i += 1;
                        if b & 0x80 == 0 {
                            break Some(i + len);
                        }
                    };
                    let Some(end) = complete.filter(|&end| end <= buf.len()) else {
                        break;
                    };
                    let kind = buf[0] >> 4;
                    buf.drain(..end);
                    if kind == 3 {
                        swallowed.fetch_add(1, Ordering::SeqCst);
                    }
                    let reply: &[u8] = match kind {
                        1 => &[0x20, 0x02, 0x00, 0x00],
                        12 => &[0xD0, 0x00],
                        _ => &[],
                    };
                    if !reply.is_empty() && stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_acknowledges_nothing_is_replaced() {
    // Port P: first the black hole, then the real broker.
    // Bound to port 0: the port is never free for another process to take.
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let swallowed = Arc::new(AtomicUsize::new(0));
    let hole = tokio::spawn(black_hole(listener, swallowed.clone()));
    let mut builder = GatewayBuilder::new(port);
    // The watchdog gives up after 2 × keep-alive (at least 10 s).
    builder.config_mut().broker.as_mut().unwrap().keep_alive = Duration::from_secs(5);
    let gateway = builder.start().await;

    let mut mote = Mote::connected(gateway.addr(), "wedged-mote").await;
    mote.op_timeout = Duration::from_secs(40);
    let id = mote.register("wedged/t").await;
    let publisher = tokio::spawn(async move {
        mote.publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"made it")
            .await;
        mote
    });
    // Let the publish disappear into the hole, then put a real broker on the port.
    wait_until(
        "the gateway's PUBLISH to reach the black hole",
        Duration::from_secs(30),
        || swallowed.load(Ordering::SeqCst) >= 1,
    )
    .await;
    hole.abort();
    let _ = hole.await;
    let mut broker = Mosquitto::on_port(port);
    let mut collector = None;
    for _ in 0..50 {
        if broker.try_start_now().await {
            collector = Some(MqttClient::connect(port, "wedged-collector").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut collector = collector.expect("mosquitto started on the freed port");
    assert_eq!(collector.subscribe("wedged/t", 1).await, 1);
    let started = tokio::time::Instant::now();
    let message = collector
        .try_recv(Duration::from_secs(30))
        .await
        .expect("the stalled publish was replayed on a new connection");
    assert_eq!(message.text(), "made it");
    let _mote = tokio::time::timeout(Duration::from_secs(30), publisher)
        .await
        .expect("the mote got its PUBACK")
        .unwrap();
    println!(
        "stalled publish delivered {:?} after the real broker came up",
        started.elapsed()
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certificates(dir: &Path) {
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // rustls accepts only X.509 v3 certificates, which extensions make openssl produce.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let steps: &[&[&str]] = &[
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=sn-tests CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=gateway",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    ];
    for args in steps {
        run(dir, "openssl", args);
    }
}

/// mosquitto whose TLS listener uses the certificates `make_certificates` left in `dir`,
/// requires a client certificate signed by its CA, and takes the certificate's CN as the
/// user name.
async fn tls_broker(dir: &Path) -> CustomBroker {
    CustomBroker::start(
        dir.to_path_buf(),
        &format!(
            "allow_anonymous true\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n\
             require_certificate true\nuse_identity_as_username true",
            d = dir.display()
        ),
    )
    .await
}

/// A gateway for `broker`'s TLS listener that trusts `ca.crt` in `dir` and presents the
/// client certificate `cert` with its key `key` (file names in `dir`).
fn tls_gateway(broker: &CustomBroker, dir: &Path, cert: &str, key: &str) -> GatewayBuilder {
    let mut builder = GatewayBuilder::new(broker.secure_port);
    let b = builder.config_mut().broker.as_mut().unwrap();
    b.tls = true;
    b.ca_file = Some(dir.join("ca.crt"));
    b.client_cert = Some(dir.join(cert));
    b.client_key = Some(dir.join(key));
    builder
}

/// Publishes one QoS 1 message through `gateway` and checks it reaches `collector`.
async fn one_message_through(gateway: &Gateway, collector: &mut MqttClient, topic: &str) {
    let mut mote = Mote::connected(gateway.addr(), "secure-mote").await;
    let id = mote.register(topic).await;
    mote.publish_reliably(Topic::Normal(id), QoS::AtLeastOnce, false, b"secret")
        .await;
    let message = collector
        .try_recv(Duration::from_secs(10))
        .await
        .expect("the message arrived");
    assert_eq!(
        (message.topic.as_str(), message.text().as_str()),
        (topic, "secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let dir = temp_dir("tls");
    make_certificates(&dir);
    let broker = tls_broker(&dir).await;
    let mut collector = MqttClient::subscribed(broker.plain_port, "tls-collector", "tls/t").await;

    let gateway = tls_gateway(&broker, &dir, "client.crt", "client.key")
        .start()
        .await;
    one_message_through(&gateway, &mut collector, "tls/t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_client_certificate_is_used_at_the_next_connection_without_a_restart() {
    let dir = temp_dir("tls-renew");
    make_certificates(&dir);
    // A certificate the broker does not trust (self-signed) is the one in place at start.
    run(
        &dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "live.key",
            "-out",
            "live.crt",
            "-subj",
            "/CN=stale",
            "-days",
            "2",
        ],
    );
    let broker = tls_broker(&dir).await;
    let mut collector =
        MqttClient::subscribed(broker.plain_port, "renew-collector", "tls/renewed").await;

    let mut builder = tls_gateway(&broker, &dir, "live.crt", "live.key");
    {
        let b = builder.config_mut().broker.as_mut().unwrap();
        b.reconnect_min = Duration::from_millis(100);
        b.reconnect_max = Duration::from_millis(300);
    }
    let gateway = builder.start().await;
    // Refused with the stale certificate; the renewed one, put in place of the files, is
    // read at the next attempt: the gateway connects without a restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::copy(dir.join("client.key"), dir.join("live.key")).unwrap();
    std::fs::copy(dir.join("client.crt"), dir.join("live.crt")).unwrap();
    one_message_through(&gateway, &mut collector, "tls/renewed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password() {
    let dir = temp_dir("auth");
    run(
        &dir,
        "mosquitto_passwd",
        &["-b", "-c", "passwd", "gateway", "s3cret"],
    );
    let broker = CustomBroker::start(
        dir.clone(),
        &format!(
            "allow_anonymous false\npassword_file {}/passwd",
            dir.display()
        ),
    )
    .await;
    let mut collector = MqttClient::subscribed(broker.plain_port, "auth-collector", "auth/t").await;

    // Wrong password: the broker refuses, the gateway keeps retrying, motes get congestion.
    let mut wrong = GatewayBuilder::new(broker.secure_port);
    // Without a spool, so that "the broker refuses us" shows at the motes as congestion (with
    // one, their messages would wait in the spool).
    wrong.config_mut().core.spool.enabled = false;
    {
        let b = wrong.config_mut().broker.as_mut().unwrap();
        b.username = Some("gateway".into());
        b.password = Some("wrong".into());
    }
    let refused = wrong.start().await;
    let mut mote = Mote::new(refused.addr(), "refused-mote").await;
    let code = mote
        .connect_with(&sn_tests::ConnectOptions::default())
        .await;
    assert_eq!(code, sn_tests::ReturnCode::Congestion);
    refused.shutdown().await;

    let mut right = GatewayBuilder::new(broker.secure_port);
    {
        let b = right.config_mut().broker.as_mut().unwrap();
        b.username = Some("gateway".into());
        b.password = Some("s3cret".into());
    }
    let gateway = right.start().await;
    one_message_through(&gateway, &mut collector, "auth/t").await;
}
