//! Black-box tests of the `mqtt-sn` client tool: the real binary against a fake gateway that
//! lives in the test (a UDP socket on 127.0.0.1 that decodes with sn_codec and answers per a
//! script). Every packet the tool sends is checked, field by field or byte by byte.
//!
//! Network safety: everything stays on loopback (127.0.0.1 and ::1).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sn_codec::v12::{
    Connect, Disconnect, Packet, PubAck, Publish, PublishTopic, RegAck, Register, ReturnCode,
    SubAck, Subscribe, SubscribeTopic, WillTopic,
};
use sn_codec::QoS;

const BIN: &str = env!("CARGO_BIN_EXE_mqtt-sn");

/// How long the fake gateway waits for the tool's next packet before failing the test.
const PACKET_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The fake gateway

struct FakeGateway {
    socket: UdpSocket,
    client: Option<SocketAddr>,
}

impl FakeGateway {
    fn new() -> Self {
        Self::bind("127.0.0.1:0").unwrap()
    }

    fn bind(addr: &str) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        Ok(FakeGateway {
            socket,
            client: None,
        })
    }

    /// The `--gateway` argument that reaches this fake.
    fn addr(&self) -> String {
        self.socket.local_addr().unwrap().to_string()
    }

    /// The next datagram from the tool, or `None` after `wait`.
    fn try_recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65_535];
        match self.socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                self.client = Some(from);
                buf.truncate(len);
                Some(buf)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("fake gateway recv: {e}"),
        }
    }

    /// The next datagram from the tool; fails the test if none comes.
    fn recv(&mut self) -> Vec<u8> {
        self.try_recv(PACKET_WAIT)
            .expect("the tool sent nothing within 5s")
    }

    /// Sends a packet to the tool (at the address it last sent from).
    fn send(&self, packet: Packet<'_>) {
        let to = self.client.expect("the tool has not sent anything yet");
        self.socket.send_to(&packet.to_vec().unwrap(), to).unwrap();
    }

    /// Receives the CONNECT and accepts it; returns the raw CONNECT.
    fn accept_connect(&mut self) -> Vec<u8> {
        let bytes = self.recv();
        assert!(
            matches!(Packet::decode(&bytes), Ok(Packet::Connect(_))),
            "expected CONNECT, got {:?}",
            Packet::decode(&bytes)
        );
        self.send(Packet::ConnAck {
            return_code: ReturnCode::Accepted,
        });
        bytes
    }

    /// Receives the DISCONNECT and answers it.
    fn accept_disconnect(&mut self) {
        let bytes = self.recv();
        assert_eq!(
            decode(&bytes),
            Packet::Disconnect(Disconnect { duration: None }),
            "expected DISCONNECT"
        );
        self.send(Packet::Disconnect(Disconnect { duration: None }));
    }

    /// Receives a SUBSCRIBE and grants it; returns its topic (owned) and requested QoS.
    fn accept_subscribe(&mut self, granted: QoS, topic_id: u16) -> (Vec<u8>, QoS) {
        let bytes = self.recv();
        let Packet::Subscribe(s) = decode(&bytes) else {
            panic!("expected SUBSCRIBE, got {:?}", decode(&bytes));
        };
        assert!(!s.dup);
        assert_ne!(s.msg_id, 0);
        let topic = match s.topic {
            SubscribeTopic::Name(name) => name.to_vec(),
            SubscribeTopic::Predefined(id) => id.to_be_bytes().to_vec(),
            SubscribeTopic::Short(short) => short.to_vec(),
        };
        self.send(Packet::SubAck(SubAck {
            qos: granted,
            topic_id,
            msg_id: s.msg_id,
            return_code: ReturnCode::Accepted,
        }));
        (topic, s.qos)
    }

    /// Asserts that the tool sends nothing more for `wait`.
    fn assert_silent(&mut self, wait: Duration) {
        if let Some(bytes) = self.try_recv(wait) {
            panic!("unexpected packet {:?}", Packet::decode(&bytes));
        }
    }
}

fn decode(bytes: &[u8]) -> Packet<'_> {
    Packet::decode(bytes)
        .unwrap_or_else(|e| panic!("the tool sent an invalid packet {bytes:02x?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Running the tool

struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: JoinHandle<String>,
    started: Instant,
}

struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    elapsed: Duration,
}

fn start(args: &[&str]) -> Running {
    start_with_stdin(args, None)
}

fn start_with_stdin(args: &[&str], stdin: Option<&str>) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
        // Dropping the pipe closes it: end of input.
    }
    // Both pipes are drained by threads so the tool can never block on a full pipe.
    let (tx, stdout) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running {
        child,
        stdout,
        stderr,
        started: Instant::now(),
    }
}

impl Running {
    /// The next line on stdout, as soon as the tool prints it.
    fn line(&self) -> String {
        self.stdout
            .recv_timeout(PACKET_WAIT)
            .expect("no line on stdout within 5s")
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the tool to exit (at most `limit`, else kills it and fails).
    fn finish(mut self, limit: Duration) -> Finished {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the tool did not exit within {limit:?}; stderr: {}",
                    self.stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        let stderr = self.stderr.join().unwrap();
        let mut stdout = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(200)) {
            stdout.push(line);
        }
        Finished {
            status,
            stdout,
            stderr,
            elapsed,
        }
    }
}

impl Finished {
    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "exit {:?}, stderr: {}",
            self.status,
            self.stderr
        );
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "stderr: {}", self.stderr);
    }
}

const LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// pub

#[test]
fn pub_qos0_connects_registers_publishes_and_disconnects() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-t",
        "sensors/temp",
        "-m",
        "21.5",
        "--client-id",
        "t-q0",
        "--keep-alive",
        "30",
        "--timeout",
        "3s",
    ]);
    let connect = gw.accept_connect();
    // Flags 0x04 = CleanSession only, protocol 1, keep-alive 30 s, client id "t-q0".
    assert_eq!(
        connect,
        [0x0A, 0x04, 0x04, 0x01, 0x00, 30, b't', b'-', b'q', b'0']
    );

    let bytes = gw.recv();
    let Packet::Register(r) = decode(&bytes) else {
        panic!("expected REGISTER, got {:?}", decode(&bytes));
    };
    assert_eq!(r.topic_id, 0);
    assert_ne!(r.msg_id, 0);
    assert_eq!(r.topic_name, b"sensors/temp");
    gw.send(Packet::RegAck(RegAck {
        topic_id: 7,
        msg_id: r.msg_id,
        return_code: ReturnCode::Accepted,
    }));

    let bytes = gw.recv();
    assert_eq!(
        decode(&bytes),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: PublishTopic::Normal(7),
            msg_id: 0,
            data: b"21.5",
        })
    );
    gw.accept_disconnect();
    let done = run.finish(LIMIT);
    done.assert_success();
    assert!(done.stdout.is_empty());
}

#[test]
fn pub_qos1_publishes_count_messages_one_in_flight() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-t",
        "a/b",
        "-m",
        "v{n}",
        "-q",
        "1",
        "--count",
        "3",
        "--retain",
        "--clean-session",
        "false",
        "--client-id",
        "c1",
        "--retry",
        "2s",
    ]);
    let connect = gw.accept_connect();
    let Packet::Connect(c) = decode(&connect) else {
        unreachable!()
    };
    assert_eq!(
        c,
        Connect {
            will: false,
            clean_session: false,
            protocol_id: 1,
            duration: 60,
            client_id: b"c1",
        }
    );
    let bytes = gw.recv();
    let Packet::Register(r) = decode(&bytes) else {
        panic!("expected REGISTER, got {:?}", decode(&bytes));
    };
    gw.send(Packet::RegAck(RegAck {
        topic_id: 0x0102,
        msg_id: r.msg_id,
        return_code: ReturnCode::Accepted,
    }));

    let mut ids = Vec::new();
    for n in 0..3 {
        let bytes = gw.recv();
        let Packet::Publish(p) = decode(&bytes) else {
            panic!("expected PUBLISH, got {:?}", decode(&bytes));
        };
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert!(p.retain);
        assert!(!p.dup);
        assert_eq!(p.topic, PublishTopic::Normal(0x0102));
        assert_eq!(p.data, format!("v{n}").as_bytes());
        assert_ne!(p.msg_id, 0);
        assert!(!ids.contains(&p.msg_id), "MsgId reused");
        ids.push(p.msg_id);
        // One in flight: nothing more until this one is acknowledged.
        gw.assert_silent(Duration::from_millis(150));
        gw.send(Packet::PubAck(PubAck {
            topic_id: 0x0102,
            msg_id: p.msg_id,
            return_code: ReturnCode::Accepted,
        }));
    }
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn pub_qos2_sends_pubrel_after_pubrec_and_resends_it() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "--predefined",
        "9",
        "-m",
        "x",
        "-q",
        "2",
        "--retry",
        "200ms",
        "--timeout",
        "3s",
    ]);
    gw.accept_connect();
    let bytes = gw.recv();
    let Packet::Publish(p) = decode(&bytes) else {
        panic!("expected PUBLISH, got {:?}", decode(&bytes));
    };
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(p.topic, PublishTopic::Predefined(9));
    let m = p.msg_id;
    assert_ne!(m, 0);
    gw.send(Packet::PubRec { msg_id: m });
    assert_eq!(decode(&gw.recv()), Packet::PubRel { msg_id: m });
    // Pretend that PUBREL was lost: the tool must send it again after --retry.
    assert_eq!(decode(&gw.recv()), Packet::PubRel { msg_id: m });
    gw.send(Packet::PubComp { msg_id: m });
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn pub_qos_minus1_short_topic_sends_only_the_publish() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-q",
        "-1",
        "--short",
        "ab",
        "-m",
        "x",
    ]);
    // Reference §4.9: `08 0C 62 61 62 00 00 78`.
    assert_eq!(gw.recv(), [0x08, 0x0C, 0x62, 0x61, 0x62, 0x00, 0x00, 0x78]);
    run.finish(LIMIT).assert_success();
    gw.assert_silent(Duration::from_millis(200));
}

#[test]
fn pub_qos_minus1_predefined_id() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-q",
        "-1",
        "--predefined",
        "5",
        "-m",
        "hi",
        "--retain",
    ]);
    assert_eq!(
        decode(&gw.recv()),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::MinusOne,
            retain: true,
            topic: PublishTopic::Predefined(5),
            msg_id: 0,
            data: b"hi",
        })
    );
    run.finish(LIMIT).assert_success();
    gw.assert_silent(Duration::from_millis(200));
}

#[test]
fn pub_qos_minus1_long_topic_name() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-q",
        "-1",
        "-t",
        "a/b",
        "-m",
        "x",
    ]);
    // Reference §4.9: `0B 0C 60 00 03 00 00 61 2F 62 78` = "a/b", data "x".
    assert_eq!(
        gw.recv(),
        [0x0B, 0x0C, 0x60, 0x00, 0x03, 0x00, 0x00, 0x61, 0x2F, 0x62, 0x78]
    );
    run.finish(LIMIT).assert_success();
    gw.assert_silent(Duration::from_millis(200));
}

#[test]
fn pub_retransmits_publish_with_dup_when_unanswered() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "-m",
        "again",
        "-q",
        "1",
        "--retry",
        "200ms",
        "--retries",
        "3",
        "--timeout",
        "3s",
    ]);
    gw.accept_connect();
    let first = gw.recv();
    let Packet::Publish(p1) = decode(&first) else {
        panic!("expected PUBLISH, got {:?}", decode(&first));
    };
    assert!(!p1.dup);
    // Ignored: the tool must resend with DUP=1 and the same MsgId.
    let second = gw.recv();
    let Packet::Publish(p2) = decode(&second) else {
        panic!("expected PUBLISH, got {:?}", decode(&second));
    };
    assert_eq!(p2, Publish { dup: true, ..p1 });
    gw.send(Packet::PubAck(PubAck {
        topic_id: u16::from_be_bytes(*b"ab"),
        msg_id: p2.msg_id,
        return_code: ReturnCode::Accepted,
    }));
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn pub_connack_congestion_is_a_clear_error() {
    let mut gw = FakeGateway::new();
    let run = start(&["pub", "--gateway", &gw.addr(), "-t", "a", "-m", "x"]);
    assert!(matches!(decode(&gw.recv()), Packet::Connect(_)));
    gw.send(Packet::ConnAck {
        return_code: ReturnCode::Congestion,
    });
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.stderr
            .contains("gateway refused CONNECT: congestion (0x01)"),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_puback_invalid_topic_id_is_a_clear_error() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "--predefined",
        "77",
        "-m",
        "x",
        "-q",
        "1",
    ]);
    gw.accept_connect();
    let bytes = gw.recv();
    let Packet::Publish(p) = decode(&bytes) else {
        panic!("expected PUBLISH, got {:?}", decode(&bytes));
    };
    gw.send(Packet::PubAck(PubAck {
        topic_id: 77,
        msg_id: p.msg_id,
        return_code: ReturnCode::InvalidTopicId,
    }));
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.stderr.contains("invalid topic id (0x02)"),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_regack_refusal_is_a_clear_error() {
    let mut gw = FakeGateway::new();
    let run = start(&["pub", "--gateway", &gw.addr(), "-t", "a/b", "-m", "x"]);
    gw.accept_connect();
    let bytes = gw.recv();
    let Packet::Register(r) = decode(&bytes) else {
        panic!("expected REGISTER, got {:?}", decode(&bytes));
    };
    gw.send(Packet::RegAck(RegAck {
        topic_id: 0,
        msg_id: r.msg_id,
        return_code: ReturnCode::NotSupported,
    }));
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.stderr
            .contains("gateway refused REGISTER of 'a/b': not supported (0x03)"),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_without_an_answering_gateway_gives_up_within_the_timeout() {
    // A bound socket that never answers: the tool resends CONNECT, then gives up.
    let mut gw = FakeGateway::new();
    let addr = gw.addr();
    let run = start(&[
        "pub",
        "--gateway",
        &addr,
        "-t",
        "a",
        "-m",
        "x",
        "--timeout",
        "1s",
        "--retry",
        "300ms",
    ]);
    let mut connects = 0;
    while let Some(bytes) = gw.try_recv(Duration::from_millis(1500)) {
        assert!(matches!(decode(&bytes), Packet::Connect(_)));
        connects += 1;
    }
    assert!(
        connects >= 2,
        "CONNECT was not retransmitted ({connects} sent)"
    );
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.elapsed < Duration::from_secs(3),
        "took {:?}",
        done.elapsed
    );
    assert!(
        done.stderr.contains(&format!(
            "no CONNACK from {addr} within 1s: is the gateway running?"
        )),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_to_a_closed_port_gives_up_within_the_timeout() {
    // Nothing listens: the kernel answers ICMP port unreachable, which must not end the run
    // early with an obscure error nor make it hang.
    let addr = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let done = start(&[
        "pub",
        "--gateway",
        &addr,
        "-t",
        "a",
        "-m",
        "x",
        "--timeout",
        "800ms",
        "--retry",
        "200ms",
    ])
    .finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.elapsed < Duration::from_secs(3),
        "took {:?}",
        done.elapsed
    );
    assert!(
        done.stderr.contains("is the gateway running?"),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_will_handshake_sends_willtopic_and_willmsg() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "-m",
        "x",
        "--client-id",
        "w",
        "--will-topic",
        "w/t",
        "--will-message",
        "bye",
        "--will-qos",
        "1",
        "--will-retain",
    ]);
    // Flags 0x0C = Will + CleanSession.
    assert_eq!(gw.recv(), [0x07, 0x04, 0x0C, 0x01, 0x00, 0x3C, b'w']);
    gw.send(Packet::WillTopicReq);
    // Reference §2: `06 07 30 77 2F 74` = Will QoS 1 + retain, topic "w/t".
    assert_eq!(gw.recv(), [0x06, 0x07, 0x30, 0x77, 0x2F, 0x74]);
    assert_eq!(
        decode(&[0x06, 0x07, 0x30, 0x77, 0x2F, 0x74]),
        Packet::WillTopic(Some(WillTopic {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: b"w/t",
        }))
    );
    gw.send(Packet::WillMsgReq);
    assert_eq!(decode(&gw.recv()), Packet::WillMsg { msg: b"bye" });
    gw.send(Packet::ConnAck {
        return_code: ReturnCode::Accepted,
    });
    let bytes = gw.recv();
    assert!(matches!(
        decode(&bytes),
        Packet::Publish(Publish {
            topic: PublishTopic::Short([b'a', b'b']),
            ..
        })
    ));
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn pub_stdin_lines_publishes_each_line() {
    let mut gw = FakeGateway::new();
    let run = start_with_stdin(
        &[
            "pub",
            "--gateway",
            &gw.addr(),
            "--short",
            "ab",
            "--stdin-lines",
        ],
        Some("one\ntwo\n"),
    );
    gw.accept_connect();
    for expected in [&b"one"[..], b"two"] {
        let bytes = gw.recv();
        let Packet::Publish(p) = decode(&bytes) else {
            panic!("expected PUBLISH, got {:?}", decode(&bytes));
        };
        assert_eq!(p.data, expected);
    }
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn pub_reaches_an_ipv6_gateway() {
    let Ok(mut gw) = FakeGateway::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let run = start(&[
        "pub",
        "--gateway",
        &gw.addr(),
        "-q",
        "-1",
        "--short",
        "ab",
        "-m",
        "6",
    ]);
    assert!(gw.addr().starts_with("[::1]:"));
    assert!(matches!(decode(&gw.recv()), Packet::Publish(_)));
    run.finish(LIMIT).assert_success();
}

// ---------------------------------------------------------------------------------------------
// sub

#[test]
fn sub_answers_register_and_qos1_publish_and_prints_topic_and_payload() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "-t",
        "sensors/#",
        "-q",
        "1",
        "--count",
        "1",
        "--timeout",
        "5s",
        "--client-id",
        "s1",
    ]);
    let connect = gw.accept_connect();
    assert_eq!(
        decode(&connect),
        Packet::Connect(Connect {
            will: false,
            clean_session: true,
            protocol_id: 1,
            duration: 60,
            client_id: b"s1",
        })
    );
    let (topic, qos) = gw.accept_subscribe(QoS::AtLeastOnce, 0);
    assert_eq!(topic, b"sensors/#");
    assert_eq!(qos, QoS::AtLeastOnce);

    gw.send(Packet::Register(Register {
        topic_id: 9,
        msg_id: 1,
        topic_name: b"sensors/temp",
    }));
    assert_eq!(
        decode(&gw.recv()),
        Packet::RegAck(RegAck {
            topic_id: 9,
            msg_id: 1,
            return_code: ReturnCode::Accepted,
        })
    );
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(9),
        msg_id: 2,
        data: b"21.5",
    }));
    assert_eq!(
        decode(&gw.recv()),
        Packet::PubAck(PubAck {
            topic_id: 9,
            msg_id: 2,
            return_code: ReturnCode::Accepted,
        })
    );
    assert_eq!(run.line(), "sensors/temp 21.5");
    gw.accept_disconnect();
    let done = run.finish(LIMIT);
    done.assert_success();
    assert!(done.stderr.contains("granted QoS 1"), "{}", done.stderr);
}

#[test]
fn sub_qos2_receive_flow_delivers_once() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "-t",
        "t/q2",
        "-q",
        "2",
        "--count",
        "2",
        "--timeout",
        "5s",
    ]);
    gw.accept_connect();
    // A plain name: the SUBACK's topic id is used without a REGISTER.
    gw.accept_subscribe(QoS::ExactlyOnce, 4);
    let publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: PublishTopic::Normal(4),
        msg_id: 5,
        data: b"a",
    };
    gw.send(Packet::Publish(publish));
    assert_eq!(decode(&gw.recv()), Packet::PubRec { msg_id: 5 });
    // The gateway missed the PUBREC and resends: acknowledge again, do not print again.
    gw.send(Packet::Publish(Publish {
        dup: true,
        ..publish
    }));
    assert_eq!(decode(&gw.recv()), Packet::PubRec { msg_id: 5 });
    gw.send(Packet::PubRel { msg_id: 5 });
    assert_eq!(decode(&gw.recv()), Packet::PubComp { msg_id: 5 });
    gw.send(Packet::Publish(Publish {
        qos: QoS::AtMostOnce,
        msg_id: 0,
        data: b"b",
        ..publish
    }));
    assert_eq!(run.line(), "t/q2 a");
    assert_eq!(run.line(), "t/q2 b");
    gw.accept_disconnect();
    let done = run.finish(LIMIT);
    done.assert_success();
    assert!(done.stdout.is_empty(), "extra lines: {:?}", done.stdout);
}

#[test]
fn sub_timeout_before_count_exits_2_with_how_many_arrived() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--count",
        "3",
        "--timeout",
        "1s",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Short(*b"ab"),
        msg_id: 0,
        data: b"only one",
    }));
    assert_eq!(run.line(), "ab only one");
    gw.accept_disconnect();
    let done = run.finish(LIMIT);
    done.assert_code(2);
    assert!(done.stderr.contains("received 1 of 3"), "{}", done.stderr);
    assert!(
        done.elapsed < Duration::from_secs(3),
        "took {:?}",
        done.elapsed
    );
}

#[test]
fn sub_timeout_without_count_ends_cleanly() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--timeout",
        "500ms",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_json_format() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--count",
        "1",
        "--format",
        "json",
    ]);
    gw.accept_connect();
    let (topic, _) = gw.accept_subscribe(QoS::AtMostOnce, 0);
    assert_eq!(topic, b"ab");
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: PublishTopic::Short(*b"ab"),
        msg_id: 0,
        data: b"x\"y",
    }));
    assert_eq!(
        run.line(),
        r#"{"topic":"ab","payload":"x\"y","qos":0,"retain":true,"dup":false}"#
    );
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_predefined_topic_prints_its_id_and_hex_format() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--predefined",
        "5",
        "--count",
        "1",
    ]);
    gw.accept_connect();
    let (topic, _) = gw.accept_subscribe(QoS::AtMostOnce, 5);
    assert_eq!(topic, 5u16.to_be_bytes());
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Predefined(5),
        msg_id: 0,
        data: b"hi",
    };
    gw.send(Packet::Publish(publish));
    assert_eq!(run.line(), "predefined:5 hi");
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();

    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--predefined",
        "5",
        "--count",
        "1",
        "--format",
        "hex",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 5);
    gw.send(Packet::Publish(Publish {
        data: &[0x00, 0xAB],
        ..publish
    }));
    assert_eq!(run.line(), "00ab");
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_text_format_names_a_predefined_id_when_told() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--predefined",
        "5=room/temp",
        "--count",
        "1",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 5);
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Predefined(5),
        msg_id: 0,
        data: b"20",
    }));
    assert_eq!(run.line(), "room/temp 20");
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_rejects_publish_on_unknown_topic_id_with_puback_0x02() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "-t",
        "a/b",
        "-q",
        "1",
        "--count",
        "1",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtLeastOnce, 3);
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: PublishTopic::Normal(99),
        msg_id: 7,
        data: b"lost",
    };
    gw.send(Packet::Publish(publish));
    assert_eq!(
        decode(&gw.recv()),
        Packet::PubAck(PubAck {
            topic_id: 99,
            msg_id: 7,
            return_code: ReturnCode::InvalidTopicId,
        })
    );
    gw.send(Packet::Publish(Publish {
        topic: PublishTopic::Normal(3),
        msg_id: 8,
        data: b"ok",
        ..publish
    }));
    assert_eq!(
        decode(&gw.recv()),
        Packet::PubAck(PubAck {
            topic_id: 3,
            msg_id: 8,
            return_code: ReturnCode::Accepted,
        })
    );
    assert_eq!(run.line(), "a/b ok");
    gw.accept_disconnect();
    let done = run.finish(LIMIT);
    done.assert_success();
    assert!(done.stdout.is_empty(), "extra lines: {:?}", done.stdout);
}

#[test]
fn sub_ignores_garbage_datagrams() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--count",
        "1",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    let to = gw.client.unwrap();
    for junk in [
        &[][..],
        &[0x00],
        &[0x05, 0x0C],
        &[0xFF; 300],
        &[0x03, 0xFE, 0x00],
    ] {
        gw.socket.send_to(junk, to).unwrap();
    }
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Short(*b"ab"),
        msg_id: 0,
        data: b"still here",
    }));
    assert_eq!(run.line(), "ab still here");
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_answers_pingreq_and_pings_every_keep_alive() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--keep-alive",
        "1",
        "--timeout",
        "2500ms",
        "--retry",
        "500ms",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    gw.send(Packet::PingReq { client_id: &[] });
    assert_eq!(decode(&gw.recv()), Packet::PingResp);
    let mut pings = 0;
    loop {
        let bytes = gw.recv();
        match decode(&bytes) {
            Packet::PingReq { client_id } => {
                assert!(client_id.is_empty());
                pings += 1;
                gw.send(Packet::PingResp);
            }
            Packet::Disconnect(_) => {
                gw.send(Packet::Disconnect(Disconnect { duration: None }));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 1, "no PINGREQ with a 1 s keep-alive");
    run.finish(LIMIT).assert_success();
}

#[test]
fn sub_declares_the_gateway_lost_without_pingresp() {
    let mut gw = FakeGateway::new();
    let run = start(&[
        "sub",
        "--gateway",
        &gw.addr(),
        "--short",
        "ab",
        "--keep-alive",
        "1",
        "--retry",
        "200ms",
        "--retries",
        "2",
    ]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    let mut pings = 0;
    while let Some(bytes) = gw.try_recv(Duration::from_millis(2500)) {
        assert_eq!(decode(&bytes), Packet::PingReq { client_id: &[] });
        pings += 1;
    }
    assert!(pings >= 2, "PINGREQ was not retransmitted ({pings} sent)");
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(done.stderr.contains("gateway lost"), "{}", done.stderr);
}

#[test]
fn sub_exits_non_zero_when_the_gateway_disconnects() {
    let mut gw = FakeGateway::new();
    let run = start(&["sub", "--gateway", &gw.addr(), "--short", "ab"]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    gw.send(Packet::Disconnect(Disconnect { duration: None }));
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(done.stderr.contains("sent DISCONNECT"), "{}", done.stderr);
}

#[test]
fn sub_ctrl_c_disconnects_and_exits_0() {
    let mut gw = FakeGateway::new();
    let run = start(&["sub", "--gateway", &gw.addr(), "--short", "ab"]);
    gw.accept_connect();
    gw.accept_subscribe(QoS::AtMostOnce, 0);
    gw.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Short(*b"ab"),
        msg_id: 0,
        data: b"before ^C",
    }));
    assert_eq!(run.line(), "ab before ^C");
    run.interrupt();
    gw.accept_disconnect();
    run.finish(LIMIT).assert_success();
}

#[test]
fn suback_refusal_is_a_clear_error() {
    let mut gw = FakeGateway::new();
    let run = start(&["sub", "--gateway", &gw.addr(), "--predefined", "42"]);
    gw.accept_connect();
    let bytes = gw.recv();
    let Packet::Subscribe(s) = decode(&bytes) else {
        panic!("expected SUBSCRIBE, got {:?}", decode(&bytes));
    };
    assert_eq!(
        s,
        Subscribe {
            dup: false,
            qos: QoS::AtMostOnce,
            msg_id: s.msg_id,
            topic: SubscribeTopic::Predefined(42),
        }
    );
    gw.send(Packet::SubAck(SubAck {
        qos: QoS::AtMostOnce,
        topic_id: 42,
        msg_id: s.msg_id,
        return_code: ReturnCode::InvalidTopicId,
    }));
    let done = run.finish(LIMIT);
    done.assert_code(1);
    assert!(
        done.stderr
            .contains("gateway refused SUBSCRIBE: invalid topic id (0x02)"),
        "{}",
        done.stderr
    );
}

#[test]
fn help_opens_with_what_the_tool_does() {
    for flag in ["-h", "--help"] {
        let output = Command::new(BIN).arg(flag).output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        // Not the package's description, which is about its insides.
        assert!(
            help.starts_with("Act as an MQTT-SN v1.2 client (a \"mote\") over UDP"),
            "{help}"
        );
        assert!(!help.contains("sans-I/O"), "{help}");
    }
}
