//! The serial link over pty pairs made by socat: COBS frames both ways, resynchronisation
//! after garbage, replug (the pty pair destroyed and re-created under the same path), replug
//! behind a by-id style symlink re-pointed to a new pty, and the start-up errors of a device
//! that is not there.
//!
//! socat is required: without it these tests fail, they do not skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sn_config::{SerialConfig, SerialDevice, SerialFraming};
use sn_transports::serial::framing::cobs::CobsFramer;
use sn_transports::serial::link::{SerialLink, SerialLinkConfig, SerialLinkError};
use sn_transports::serial::ResolveError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

const WAIT: Duration = Duration::from_secs(5);
const MAX_FRAME: usize = 240;
const BAUD: u32 = 115_200;

/// A socat process joining two ptys, reachable at `a` and `b`; killed on drop.
struct PtyPair {
    child: Option<Child>,
    a: PathBuf,
    b: PathBuf,
}

impl PtyPair {
    /// Paths in the system temp folder unique to this process and test; socat creates them
    /// and `stop` removes them.
    fn paths(test: &str) -> (PathBuf, PathBuf) {
        (
            temp_path(&format!("{test}-a")),
            temp_path(&format!("{test}-b")),
        )
    }

    fn start(a: &Path, b: &Path) -> PtyPair {
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    panic!("socat not found: apt-get install socat");
                }
                panic!("cannot start socat: {error}");
            });
        let pair = PtyPair {
            child: Some(child),
            a: a.to_owned(),
            b: b.to_owned(),
        };
        let deadline = Instant::now() + WAIT;
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create {} and {} within {WAIT:?}",
                a.display(),
                b.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pair
    }

    /// Ends socat with SIGTERM (so it removes its links), waits for it, and removes any link
    /// left behind: both ptys are gone afterwards.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&self.a);
        let _ = std::fs::remove_file(&self.b);
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.stop();
    }
}

fn framer() -> CobsFramer {
    CobsFramer::new(MAX_FRAME).unwrap()
}

/// The test's end of the line: a raw serial port with its own decoder.
struct Peer {
    port: SerialStream,
    framer: CobsFramer,
}

impl Peer {
    fn open(path: &Path) -> Peer {
        let port = tokio_serial::new(path.to_string_lossy(), BAUD)
            .open_native_async()
            .unwrap();
        Peer {
            port,
            framer: framer(),
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        timeout(WAIT, async {
            self.port.write_all(bytes).await.unwrap();
            self.port.flush().await.unwrap();
        })
        .await
        .expect("peer write timed out");
    }

    async fn send(&mut self, from: u16, datagram: &[u8]) {
        let mut frame = Vec::new();
        self.framer.encode(from, datagram, &mut frame).unwrap();
        self.write_raw(&frame).await;
    }

    async fn recv(&mut self) -> (u16, Vec<u8>) {
        timeout(WAIT, async {
            let mut buf = [0u8; 256];
            loop {
                if let Some(item) = self.framer.next_datagram() {
                    return item.unwrap();
                }
                let len = self.port.read(&mut buf).await.unwrap();
                assert!(len > 0, "peer port closed");
                self.framer.push(&buf[..len]);
            }
        })
        .await
        .expect("no frame reached the peer in time")
    }
}

fn config(path: &Path) -> SerialLinkConfig {
    SerialLinkConfig::new(options(SerialDevice::path(path)))
}

/// The `[[serial]]` options of a link on `device` with the framing these tests use.
fn options(device: SerialDevice) -> SerialConfig {
    SerialConfig {
        device,
        baud: BAUD,
        framing: SerialFraming::Cobs,
        max_frame: MAX_FRAME,
        discovery: true,
    }
}

async fn link_recv(link: &mut SerialLink<CobsFramer>) -> (u16, Vec<u8>) {
    timeout(WAIT, link.recv())
        .await
        .expect("no datagram reached the link in time")
}

#[tokio::test]
async fn cobs_frames_go_both_ways() {
    let (a, b) = PtyPair::paths("cobs");
    let _pair = PtyPair::start(&a, &b);
    let mut link = SerialLink::open(config(&a), framer()).unwrap();
    let mut peer = Peer::open(&b);

    // A CONNECT-sized datagram with zeros in it, which COBS must stuff.
    let datagram = [
        0x0C, 0x04, 0x04, 0x01, 0x00, 0x3C, b'm', b'o', b't', b'e', 0x00, 0x07,
    ];
    peer.send(0x1234, &datagram).await;
    assert_eq!(link_recv(&mut link).await, (0x1234, datagram.to_vec()));

    link.send(&0x0042, &[0x02, 0x17]).await.unwrap();
    assert_eq!(peer.recv().await, (0x0042, vec![0x02, 0x17]));

    let stats = link.stats();
    assert_eq!((stats.frames_received, stats.frames_sent), (1, 1));
    assert_eq!(stats.framing_errors, 0);
    assert_eq!(stats.disconnects, 0);

    // Too large for one 240-byte frame: refused and counted, nothing written.
    let huge = vec![0x55; MAX_FRAME];
    let error = link.send(&0x0042, &huge).await.unwrap_err();
    assert!(
        matches!(error, SerialLinkError::Refused { .. }),
        "{error:?}"
    );
    assert_eq!(link.stats().oversize_refused, 1);
    assert_eq!(link.stats().frames_sent, 1);
}

#[tokio::test]
async fn garbage_is_dropped_and_counted_and_the_next_frame_arrives() {
    let (a, b) = PtyPair::paths("garbage");
    let _pair = PtyPair::start(&a, &b);
    let mut link = SerialLink::open(config(&a), framer()).unwrap();
    let mut peer = Peer::open(&b);

    peer.write_raw(b"\x00line noise, not a frame\x00\x01\x02\x03")
        .await;
    peer.send(0x0007, &[0x02, 0x16]).await;

    assert_eq!(link_recv(&mut link).await, (0x0007, vec![0x02, 0x16]));
    let stats = link.stats();
    assert!(stats.framing_errors >= 1, "{stats:?}");
    assert_eq!(stats.frames_received, 1);
}

#[tokio::test]
async fn replug_reopens_with_backoff_and_resumes() {
    let (a, b) = PtyPair::paths("replug");
    let mut pair = PtyPair::start(&a, &b);
    let mut link = SerialLink::open(config(&a), framer()).unwrap();
    let mut peer = Peer::open(&b);

    peer.send(1, &[0x02, 0x16]).await;
    assert_eq!(link_recv(&mut link).await, (1, vec![0x02, 0x16]));

    // Unplug: socat ends, both ptys disappear.
    drop(peer);
    pair.stop();
    assert!(!a.exists(), "{} still exists", a.display());

    // Drive the link through the outage: it sees the loss, and its reopen attempts fail.
    let outage = Duration::from_millis(500);
    assert!(
        timeout(outage, link.recv()).await.is_err(),
        "datagram from nowhere"
    );
    assert!(!link.is_connected());
    let during = link.stats();
    assert_eq!(during.disconnects, 1, "{during:?}");
    assert_eq!(during.reopens, 0, "{during:?}");
    // 100 ms, then 200, 400...: two or three attempts in 500 ms; a busy loop would make
    // thousands.
    assert!(
        (1..=5).contains(&during.failed_reopens),
        "expected a few spaced reopen attempts in {outage:?}, got {during:?}"
    );

    // Sending while the device is gone fails at once and is counted.
    let error = timeout(WAIT, link.send(&1, &[0x02, 0x17]))
        .await
        .expect("send blocked while the device was gone")
        .unwrap_err();
    assert!(
        matches!(error, SerialLinkError::Disconnected { .. }),
        "{error:?}"
    );
    assert_eq!(link.stats().send_errors, 1);

    // Plug back in: a new pty pair under the same paths.
    let _pair = PtyPair::start(&a, &b);
    wait_connected(&mut link).await;
    let mut peer = Peer::open(&b);

    peer.send(2, &[0x02, 0x18]).await;
    assert_eq!(link_recv(&mut link).await, (2, vec![0x02, 0x18]));
    link.send(&2, &[0x02, 0x19]).await.unwrap();
    assert_eq!(peer.recv().await, (2, vec![0x02, 0x19]));

    let after = link.stats();
    assert_eq!(after.reopens, 1, "{after:?}");
    assert_eq!(after.disconnects, 1, "{after:?}");
    assert!(
        after.failed_reopens >= 1,
        "no backoff step was taken: {after:?}"
    );
    assert_eq!((after.frames_received, after.frames_sent), (2, 1));
}

/// Waits, driving `recv`, until the link has reopened the device.
async fn wait_connected(link: &mut SerialLink<CobsFramer>) {
    let deadline = Instant::now() + WAIT;
    while !link.is_connected() {
        assert!(
            Instant::now() < deadline,
            "link did not reopen: {:?}",
            link.stats()
        );
        let _ = timeout(Duration::from_millis(50), link.recv()).await;
    }
}

/// `name` in the system temp folder, made unique to this process.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sn-serial-{}-{name}", std::process::id()))
}

/// A path removed (if it exists) when the test ends, whether it passes or fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("new"));
    }
}

/// Points the symlink `link` at `target`, replacing it atomically as udev does.
fn point(link: &Path, target: &Path) {
    let staging = link.with_extension("new");
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(target, &staging).unwrap();
    std::fs::rename(&staging, link).unwrap();
}

#[tokio::test]
async fn a_by_id_symlink_is_followed_to_the_new_device_after_a_replug() {
    let (a1, b1) = PtyPair::paths("by-id-first");
    let (a2, b2) = PtyPair::paths("by-id-second");
    let by_id = temp_path("usb-FTDI_FT231X_USB_UART_A50285BI-if00-port0");
    let _ = std::fs::remove_file(&by_id);
    let _cleanup = RemoveOnDrop(by_id.clone());
    let mut first = PtyPair::start(&a1, &b1);
    point(&by_id, &a1);
    let mut link = SerialLink::open(config(&by_id), framer()).unwrap();
    assert_eq!(link.path(), by_id);
    assert_eq!(link.name(), format!("serial:{}", by_id.display()));
    let mut peer = Peer::open(&b1);
    peer.send(1, &[0x02, 0x16]).await;
    assert_eq!(link_recv(&mut link).await, (1, vec![0x02, 0x16]));

    // The device comes back as another node: the new pair is made while the first still
    // holds its ptys, so the device behind the old name is never the new one.
    let _second = PtyPair::start(&a2, &b2);
    drop(peer);
    first.stop();
    assert!(
        timeout(Duration::from_millis(400), link.recv())
            .await
            .is_err(),
        "datagram from nowhere"
    );
    assert!(!link.is_connected());
    let during = link.stats();
    assert_eq!(during.disconnects, 1, "{during:?}");
    assert!(during.failed_reopens >= 1, "{during:?}");

    // udev re-creates the by-id name for the new node.
    point(&by_id, &a2);
    wait_connected(&mut link).await;
    assert_eq!(link.path(), by_id);
    let mut peer = Peer::open(&b2);
    peer.send(2, &[0x02, 0x18]).await;
    assert_eq!(link_recv(&mut link).await, (2, vec![0x02, 0x18]));
    link.send(&2, &[0x02, 0x19]).await.unwrap();
    assert_eq!(peer.recv().await, (2, vec![0x02, 0x19]));
    assert_eq!(link.stats().reopens, 1);
}

#[tokio::test]
async fn a_usb_identity_that_is_not_present_fails_at_start_up_with_what_was_seen() {
    // No test machine has this VID:PID (0xffff is no vendor's).
    let selector: SerialDevice = "ffff:fffe:NOT-PLUGGED-IN".parse().unwrap();
    let error = SerialLink::open(SerialLinkConfig::new(options(selector)), framer()).unwrap_err();
    assert!(
        matches!(
            &error,
            SerialLinkError::Resolve {
                error: ResolveError::NotFound { .. }
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("no serial device matches usb ffff:fffe serial NOT-PLUGGED-IN; "),
        "{message}"
    );
    assert!(message.contains("`mqtt-sn-gateway ports`"), "{message}");
}

#[tokio::test]
async fn a_missing_path_fails_at_start_up_naming_it() {
    let path = temp_path("absent"); // never created
    let error = SerialLink::open(config(&path), framer()).unwrap_err();
    assert!(matches!(&error, SerialLinkError::Open { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot open serial device {}: ", path.display())),
        "{message}"
    );
}
