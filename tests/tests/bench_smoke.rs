//! CI smoke run of `mqtt-sn bench`, so the load tool cannot rot: a private mosquitto on a free
//! loopback port, the real gateway binary in front of it, and a few seconds of QoS 1 load from
//! 10 simulated motes. The JSON report must show messages flowing with nothing lost.
//!
//! Network safety: everything stays on 127.0.0.0/8. Without mosquitto installed the test fails
//! (it never passes silently).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sn_codec::v12::{Connect, Disconnect, Packet, ReturnCode};
use sn_tests::Mosquitto;

/// The `mqtt-sn` tool (built by the running cargo if needed).
fn tool_binary() -> PathBuf {
    sn_tests::binaries::workspace_binary("mqtt-sn-tools", "mqtt-sn")
}

/// The gateway binary (built by the running cargo if needed).
fn gateway_binary() -> PathBuf {
    sn_tests::binaries::workspace_binary("mqtt-sn-gateway", "mqtt-sn-gateway")
}

/// How long a 2 s bench run may take before the test calls it hung: generous, so a loaded
/// machine cannot fail it; not a performance claim.
const HANG: Duration = Duration::from_secs(300);

/// A child process killed (and reaped) when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp directory removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap().port()
}

/// A mosquitto of the test's own on a free loopback port: `sn_tests::Mosquitto` proves the
/// broker on the port is its child (its log says it listens there) and retries only when the
/// port was taken meanwhile.
fn start_mosquitto() -> Mosquitto {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to start mosquitto")
        .block_on(Mosquitto::running())
}

/// Waits until the gateway accepts a CONNECT (it is bound and its broker link is up), then
/// ends that probe session.
fn wait_for_gateway(gateway: SocketAddr, child: &mut Running) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.connect(gateway).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let connect = Packet::Connect(Connect {
        will: false,
        clean_session: true,
        protocol_id: 1,
        duration: 10,
        client_id: b"bench-smoke-probe",
    })
    .to_vec()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the gateway exited at start: {status}");
        }
        let _ = socket.send(&connect);
        if let Ok(n) = socket.recv(&mut buf) {
            if let Ok(Packet::ConnAck {
                return_code: ReturnCode::Accepted,
            }) = Packet::decode(&buf[..n])
            {
                let bye = Packet::Disconnect(Disconnect { duration: None })
                    .to_vec()
                    .unwrap();
                let _ = socket.send(&bye);
                return;
            }
        }
    }
    panic!("the gateway at {gateway} did not accept a CONNECT within 10 s");
}

/// The JSON report of one real smoke run, shared by the tests that read it: the first to
/// ask runs it (the others wait for it).
fn smoke_report() -> &'static str {
    static REPORT: OnceLock<String> = OnceLock::new();
    REPORT.get_or_init(run_smoke_bench)
}

/// Runs mosquitto, the gateway and 2 s of `mqtt-sn bench` (QoS 1, 10 motes) and returns the
/// report file it wrote; fails when any of them fails.
fn run_smoke_bench() -> String {
    let temp =
        TempDir(std::env::temp_dir().join(format!("mqtt-sn-bench-smoke-{}", std::process::id())));
    std::fs::create_dir_all(&temp.0).unwrap();
    let dir = temp.0.clone();
    // Dropped in reverse order: the bench, the gateway and mosquitto end before the directory
    // goes.
    let mosquitto = start_mosquitto();
    let broker_port = mosquitto.port();
    let udp_port = free_udp_port();
    let gateway_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port));
    let mut gateway = Running(
        Command::new(gateway_binary())
            .args([
                "--broker",
                &format!("mqtt://127.0.0.1:{broker_port}"),
                "--udp",
                &gateway_addr.to_string(),
                "--log-level",
                "warn",
            ])
            // Its state file (mqtt-sn-gateway.redb) goes to the temp directory.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run the gateway"),
    );
    wait_for_gateway(gateway_addr, &mut gateway);

    let report_file = dir.join("report.json");
    let mut bench = Running(
        Command::new(tool_binary())
            .args([
                "bench",
                "--gateway",
                &gateway_addr.to_string(),
                "--broker",
                &format!("mqtt://127.0.0.1:{broker_port}"),
                "--motes",
                "10",
                "--qos",
                "1",
                "--duration",
                "2s",
                "--gateway-pid",
                &gateway.0.id().to_string(),
                "--quiet",
                "--output",
            ])
            .arg(&report_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mqtt-sn bench"),
    );
    // Only a hang detector: how long the run takes is for the benchmarks (docs/benchmarks.md),
    // not for a test on a loaded CI machine.
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = bench.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mqtt-sn bench (a 2 s run) did not end within {HANG:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = bench.0.stderr.take() {
        use std::io::Read as _;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "mqtt-sn bench failed ({status}):\n{stderr}"
    );

    std::fs::read_to_string(&report_file).expect("the JSON report file")
}

#[test]
fn bench_smoke_qos1_ten_motes() {
    let text = smoke_report();
    let report = Json::parse(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"));
    let num = |path: &str| -> f64 {
        report
            .get(path)
            .and_then(Json::as_f64)
            .unwrap_or_else(|| panic!("no number at {path} in {text}"))
    };
    assert_eq!(num("connect.connected"), 10.0, "{text}");
    assert!(num("messages.sent") > 0.0, "{text}");
    assert_eq!(
        num("messages.delivered"),
        num("messages.acknowledged"),
        "{text}"
    );
    assert_eq!(num("messages.lost"), 0.0, "{text}");
    assert!(num("messages.delivered_per_s") > 0.0, "{text}");
    assert!(num("latency_ms.p99") > 0.0, "{text}");
    assert!(num("gateway.rss_mb") > 0.0, "{text}");
    assert_eq!(num("end.alive"), 10.0, "{text}");
}

/// Just enough JSON for the report: objects, arrays, strings, numbers, booleans, null.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    /// Members in the order written (the report's key order is part of what is checked).
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value()?;
        parser.skip_ws();
        if parser.at != parser.bytes.len() {
            return Err(format!("trailing data at {}", parser.at));
        }
        Ok(value)
    }

    /// `a.b.c` through nested objects.
    fn get(&self, path: &str) -> Option<&Json> {
        path.split('.').try_fold(self, |node, key| match node {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        })
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", byte as char, self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut map = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Object(map));
                }
                loop {
                    self.skip_ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    map.push((key, self.value()?));
                    self.skip_ws();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(map));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.at)),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.skip_ws();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.at)),
                    }
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(_) => {
                let start = self.at;
                while self.at < self.bytes.len()
                    && matches!(
                        self.bytes[self.at],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.at += 1;
                }
                std::str::from_utf8(&self.bytes[start..self.at])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Json::Number)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
            None => Err("unexpected end".to_owned()),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at {}", self.at))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err("unterminated string".to_owned());
            };
            self.at += 1;
            match byte {
                b'"' => return Ok(out),
                b'\\' => {
                    let escaped = self.bytes.get(self.at).copied();
                    self.at += 1;
                    match escaped {
                        Some(b'n') => out.push('\n'),
                        Some(b't') => out.push('\t'),
                        Some(b'r') => out.push('\r'),
                        Some(b'u') => {
                            let hex = std::str::from_utf8(&self.bytes[self.at..self.at + 4])
                                .map_err(|e| e.to_string())?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            self.at += 4;
                        }
                        Some(other) => out.push(other as char),
                        None => return Err("unterminated escape".to_owned()),
                    }
                }
                _ => {
                    // Copy a run of plain bytes at once, keeping UTF-8 intact.
                    let start = self.at - 1;
                    while self.at < self.bytes.len() && !matches!(self.bytes[self.at], b'"' | b'\\')
                    {
                        self.at += 1;
                    }
                    out.push_str(
                        std::str::from_utf8(&self.bytes[start..self.at])
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
        }
    }
}

/// Writes `json` back the way the bench report writes it: compact, members in order, numbers
/// in Rust's shortest form, strings escaped as `output::json_string` does.
fn write_back(json: &Json, out: &mut String) {
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_back(item, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_back(&Json::String(key.clone()), out);
                out.push(':');
                write_back(value, out);
            }
            out.push('}');
        }
    }
}

#[test]
fn the_json_reader_reads_what_the_report_writes() {
    // A report a real bench run wrote: read, then written back, it is the same text, so the
    // reader lost or changed nothing (every key, number, string, null and nesting level).
    let text = smoke_report();
    let report = Json::parse(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"));
    let mut again = String::new();
    write_back(&report, &mut again);
    assert_eq!(again, text.trim_end(), "read back differently");
    assert!(
        matches!(report, Json::Object(ref m) if m.len() > 5),
        "{text}"
    );

    // What a report may hold but this run's did not: escapes, exponents, truncation.
    let json =
        Json::parse(r#"{"a":{"b":[1,2.5,-3e2],"c":"x\"y\u0041"},"d":null,"e":true}"#).unwrap();
    assert_eq!(json.get("a.c"), Some(&Json::String("x\"yA".to_owned())));
    assert_eq!(json.get("d"), Some(&Json::Null));
    assert_eq!(
        json.get("a.b"),
        Some(&Json::Array(vec![
            Json::Number(1.0),
            Json::Number(2.5),
            Json::Number(-300.0)
        ]))
    );
    assert!(Json::parse("{").is_err());
}
