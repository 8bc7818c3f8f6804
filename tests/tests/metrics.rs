//! The metrics endpoint of the real binary: `/metrics` after a known exchange shows exact
//! counter values, and `/readyz` follows the broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use sn_tests::custom_broker::temp_dir;
use sn_tests::process::{socket_drops, GatewayProcess};
use sn_tests::{Mosquitto, Mote, MqttClient, QoS, ReturnCode, Topic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path`: (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes until `name` has `value` (the snapshot is taken once a second), then returns the
/// whole exposition.
async fn scrape_until(addr: SocketAddr, name: &str, value: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        if sample(&body, name) == Some(value) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {value}; last scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_exchange_and_readiness_follows_the_broker() {
    let mut broker = Mosquitto::running().await;
    let metrics_addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let gateway = GatewayProcess::start(
        temp_dir("metrics"),
        &format!(
            "[broker]\nurl = \"mqtt://127.0.0.1:{}\"\nfallback = \"off\"\nstatus_topic = \"\"\n\
             [metrics]\nlisten = \"{metrics_addr}\"\n",
            broker.port()
        ),
    );
    let mut watcher = MqttClient::connect(broker.port(), "metrics-watcher").await;
    assert_eq!(watcher.subscribe("m/#", 1).await, 1);

    // Ready once the broker link is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(metrics_addr, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(metrics_addr, "/healthz").await.0, 200);

    // The known exchange: one mote, one REGISTER, three QoS 1 PUBLISHes.
    let mut mote = Mote::connected(gateway.addr, "counted").await;
    let topic = mote.register("m/t").await;
    for i in 0..3u8 {
        let code = mote
            .publish(Topic::Normal(topic), QoS::AtLeastOnce, false, &[i])
            .await;
        assert_eq!(code, ReturnCode::Accepted);
        watcher.recv_within(Duration::from_secs(5)).await;
    }
    let body = scrape_until(metrics_addr, "mqttsn_publish_forwarded_total", 3).await;
    for (name, value) in [
        ("mqttsn_publish_ack_seconds_count", 3),
        ("mqttsn_sessions{state=\"active\"}", 1),
        ("mqttsn_sessions{state=\"asleep\"}", 0),
        ("mqttsn_connect_refused_total", 0),
        ("mqttsn_denied_total", 0),
        ("mqttsn_broker_connected", 1),
        ("mqttsn_pending_uplink", 0),
    ] {
        assert_eq!(sample(&body, name), Some(value), "{name} in\n{body}");
    }
    let link = format!(
        "mqttsn_link_datagrams_received_total{{link=\"udp:{}\"}}",
        gateway.addr
    );
    assert!(
        sample(&body, &link).is_some_and(|n| n >= 5),
        "{link} in\n{body}"
    );

    // The broker goes away (no fallback): not ready, and the gauge says why.
    broker.stop().await;
    scrape_until(metrics_addr, "mqttsn_broker_connected", 0).await;
    let (code, body) = get(metrics_addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no broker serves the motes"), "{body}");
    assert_eq!(get(metrics_addr, "/healthz").await.0, 200, "still alive");
    drop(gateway);
}

/// socat joining two ptys; killed on drop.
struct Socat(std::process::Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A serial link's own counters reach `/metrics` with its link label: bytes that are no KISS
/// frame, written to the other end of the pty the gateway's link opened (socat standing in
/// for the radio), are counted as garbage bytes of that link. (Before, the runtime showed no
/// serial counter but its queue drops.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_links_counters_are_in_metrics_with_its_label() {
    let dir = temp_dir("metrics-serial");
    let (radio, line) = (dir.join("radio"), dir.join("line"));
    let _socat = Socat(
        std::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", radio.display()))
            .arg(format!("pty,raw,echo=0,link={}", line.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("socat not found ({e}): apt-get install socat")),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(radio.exists() && line.exists()) {
        assert!(std::time::Instant::now() < deadline, "socat made no ptys");
        std::thread::sleep(Duration::from_millis(10));
    }
    let metrics_addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let _gateway = GatewayProcess::start(
        temp_dir("metrics-serial-gw"),
        &format!(
            "[[serial]]\ndevice = \"{}\"\nframing = \"kiss\"\n\
             [embedded_broker]\nlisten = \"off\"\n[metrics]\nlisten = \"{metrics_addr}\"\n",
            radio.display()
        ),
    );
    let link = format!("{{link=\"serial:{}\"}}", radio.display());
    // Scraped before the bytes: the serial families are there, at 0.
    scrape_until(
        metrics_addr,
        &format!("mqttsn_serial_garbage_bytes_total{link}"),
        0,
    )
    .await;
    // The gateway opened the device when it started: what is written now reaches its link.
    let mut other_end = std::fs::OpenOptions::new().write(true).open(&line).unwrap();
    std::io::Write::write_all(&mut other_end, b"xyz").unwrap();
    let body = scrape_until(
        metrics_addr,
        &format!("mqttsn_serial_garbage_bytes_total{link}"),
        3,
    )
    .await;
    for family in [
        "mqttsn_serial_frames_ok_total",
        "mqttsn_serial_bad_checksum_total",
        "mqttsn_serial_xbee_undelivered_total",
        "mqttsn_link_framing_errors_total",
        "mqttsn_link_reopens_total",
    ] {
        assert_eq!(
            sample(&body, &format!("{family}{link}")),
            Some(0),
            "{family}:\n{body}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` (`-STOP`, `-CONT`) to the process `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A DTLS link's kernel receive-queue drops reach `/metrics` in the family the UDP links'
/// are in, with the DTLS link's label: the gateway is stopped (SIGSTOP) while datagrams
/// flood its `[[dtls]]` socket, whose receive buffer is the smallest allowed, so the kernel
/// drops most of them; once it runs again, `/metrics` shows exactly the count /proc/net/udp
/// has for that socket. (Before, only the stats line counted them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtls_links_kernel_drops_are_in_metrics() {
    let dir = temp_dir("metrics-dtls");
    let psk = dir.join("motes.psk");
    std::fs::write(&psk, "mote-1:00112233445566778899aabbccddeeff\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let metrics_addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = GatewayProcess::start(
        temp_dir("metrics-dtls-gw"),
        &format!(
            "[[dtls]]\nbind = \"127.0.0.1:{port}\"\npsk_file = \"{}\"\nrecv_buffer = 4096\n\
             [embedded_broker]\nlisten = \"off\"\n[metrics]\nlisten = \"{metrics_addr}\"\n",
            psk.display()
        ),
    );
    let family = format!("mqttsn_link_kernel_dropped_total{{link=\"dtls:127.0.0.1:{port}\"}}");
    // Scraped before the flood: the DTLS link is in the family, at 0.
    scrape_until(metrics_addr, &family, 0).await;

    let pid = gateway.child.id();
    signal(pid, "-STOP");
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u32 {
        // Garbage to DTLS (not a ClientHello): the gateway counts and drops what it reads.
        let _ = flood.send_to(&i.to_be_bytes().repeat(50), ("127.0.0.1", port));
    }
    let dropped = socket_drops(port);
    signal(pid, "-CONT");
    assert!(
        dropped > 0,
        "500 datagrams into a 4 KiB buffer of a stopped process: none dropped?"
    );
    let body = scrape_until(metrics_addr, &family, dropped).await;
    // The UDP link's own socket dropped nothing: the count is the DTLS link's alone.
    assert_eq!(
        sample(
            &body,
            &format!(
                "mqttsn_link_kernel_dropped_total{{link=\"udp:{}\"}}",
                gateway.addr
            )
        ),
        Some(0),
        "{body}"
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}
