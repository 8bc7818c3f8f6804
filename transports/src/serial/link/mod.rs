//! The serial link: one serial device (a USB radio dongle, a directly attached mote) carrying
//! MQTT-SN datagrams in one of the [`framing`](super::framing)s, surviving replugs.
//!
//! The device is chosen by a [`SerialDevice`]: a path (`/dev/ttyUSB0`, or a stable
//! `/dev/serial/by-id/...` name) or a USB identity (VID:PID and serial number), and opened at
//! a baud rate, 8 data bits, no parity, one stop bit, no flow control. Bytes read go through
//! the framer; [`SerialLink::recv`] hands out the decoded datagrams and drops (and counts)
//! damaged frames. [`SerialLink::send`] encodes one datagram and writes the frame.
//!
//! # Replug
//!
//! When a read returns end of file or an I/O error (EIO, ENXIO, ENODEV: the dongle was pulled
//! out or the pty's other side went away), the link logs it once at warn level, closes the
//! device and tries to reopen it with exponential backoff (by default 100 ms, doubling up
//! to 5 s), then resumes; the caller of `recv` just sees the next datagram later. Every
//! attempt resolves the selector again: a path is opened as it is (a by-id symlink that udev
//! re-created is followed to the new device node); a USB identity is looked up among the
//! ports present, so the dongle is found at whatever `/dev/ttyUSBn` it came back as. While the
//! device is gone, `send` fails at once with [`SerialLinkError::Disconnected`]. A frame cut
//! in half by the outage is dropped by the decoder as a framing error.
//!
//! Reopening happens inside `recv`, so the runtime keeps a receive loop running for each
//! link. Both methods take `&mut self`; `recv` is cancel-safe (no byte read is lost and the
//! backoff schedule is kept when its future is dropped), so one task can drive both with
//! `tokio::select!`.

mod error;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sn_config::{SerialConfig, SerialDevice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

pub use error::SerialLinkError;
pub use stats::SerialLinkStats;

use super::framing::{FrameError, Framer, Received};
use super::ports::{list_ports, DeviceLookup, ListPortsError, PortInfo};

/// Bytes asked for per read; the framer buffers partial frames, so this only sets how many
/// reads a burst takes.
const READ_CHUNK: usize = 1024;

/// The shortest wait between reopen attempts, whatever the configuration says, so that a
/// zero in it cannot turn an outage into a busy loop.
const MIN_REOPEN_WAIT: Duration = Duration::from_millis(10);

/// What one serial link runs with: its `[[serial]]` options as the configuration defines them
/// ([`SerialConfig`], the one place each option and its default are written), plus the reopen
/// and write timings, which are no `[[serial]]` options and keep their defaults here.
///
/// The link uses the options' `device` and `baud`; `framing` and `max_frame` are the framer's
/// (the framer given to [`SerialLink::open`] is what frames the line) and `discovery` is the
/// gateway's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLinkConfig {
    /// The `[[serial]]` options. `device` is a path (e.g. `/dev/ttyUSB0` or a
    /// `/dev/serial/by-id/...` name) or a USB identity, resolved again at every reopen after a
    /// replug; `baud` is the line speed in bits per second (8N1, no flow control).
    pub options: SerialConfig,
    /// The first wait before reopening a device that went away (at least 10 ms).
    pub reopen_initial: Duration,
    /// The longest wait between reopen attempts; the wait doubles up to it (at least
    /// `reopen_initial`).
    pub reopen_max: Duration,
    /// How long `send` waits for the device to take one frame before giving up.
    pub write_timeout: Duration,
}

impl SerialLinkConfig {
    /// A configuration for the link `options` describe, with the default timings: reopen
    /// after 100 ms doubling up to 5 s, write timeout 1 s.
    pub fn new(options: SerialConfig) -> Self {
        SerialLinkConfig {
            options,
            reopen_initial: Duration::from_millis(100),
            reopen_max: Duration::from_secs(5),
            write_timeout: Duration::from_secs(1),
        }
    }
}

/// One serial device carrying MQTT-SN datagrams framed by `F`.
#[derive(Debug)]
pub struct SerialLink<F: Framer> {
    config: SerialLinkConfig,
    name: String,
    /// The device node opened last: the one in use, or the one that went away.
    path: PathBuf,
    /// Where a USB identity is looked up.
    ports: PortSource,
    framer: F,
    /// `None` while the device is gone.
    port: Option<SerialStream>,
    backoff: Backoff,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    stats: SerialLinkStats,
}

impl<F: Framer> SerialLink<F> {
    /// Opens the device of `config` with `framer`. Must be called within a tokio runtime.
    ///
    /// A device that cannot be found or opened now is an error (a wrong path or identity
    /// should be seen at start-up: [`SerialLinkError::Resolve`] or
    /// [`SerialLinkError::Open`]); only a device that goes away later is waited for.
    pub fn open(config: SerialLinkConfig, framer: F) -> Result<Self, SerialLinkError> {
        Self::open_with(config, framer, PortSource::System)
    }

    fn open_with(
        config: SerialLinkConfig,
        framer: F,
        ports: PortSource,
    ) -> Result<Self, SerialLinkError> {
        let (path, port) = open_device(&config, &ports)?;
        let name = format!("serial:{}", config.options.device);
        tracing::debug!(
            link = %name,
            path = %path.display(),
            baud = config.options.baud,
            "serial link opened"
        );
        Ok(SerialLink {
            backoff: Backoff::new(config.reopen_initial, config.reopen_max),
            config,
            name,
            path,
            ports,
            framer,
            port: Some(port),
            read_buf: vec![0; READ_CHUNK],
            write_buf: Vec::new(),
            stats: SerialLinkStats::default(),
        })
    }

    /// Waits for the next datagram and returns its sender and bytes.
    ///
    /// Damaged frames are dropped and counted; a device that goes away is reopened with
    /// backoff, so this only returns with a datagram. Transmit statuses (XBee 0x8B) are
    /// discarded; use [`recv_event`](Self::recv_event) to see them. Cancel-safe.
    pub async fn recv(&mut self) -> (F::Address, Vec<u8>) {
        loop {
            match self.recv_event().await {
                Received::Datagram { from, datagram } => return (from, datagram),
                Received::TransmitStatus(status) => {
                    tracing::trace!(link = %self.name, ?status, "transmit status discarded");
                }
            }
        }
    }

    /// Waits for the next datagram or transmit status, like [`recv`](Self::recv) otherwise.
    /// Cancel-safe.
    pub async fn recv_event(&mut self) -> Received<F::Address> {
        loop {
            while let Some(item) = self.framer.next_event() {
                match item {
                    Ok(event) => {
                        SerialLinkStats::bump(&mut self.stats.frames_received);
                        return event;
                    }
                    Err(error) => {
                        SerialLinkStats::bump(&mut self.stats.framing_errors);
                        tracing::debug!(link = %self.name, %error, "frame dropped");
                    }
                }
            }
            let Some(port) = self.port.as_mut() else {
                self.reopen().await;
                continue;
            };
            match port.read(&mut self.read_buf).await {
                Ok(0) => self.lost(&"end of file"),
                Ok(len) => self
                    .framer
                    .push(self.read_buf.get(..len).unwrap_or_default()),
                Err(error) if is_retryable(&error) => {}
                Err(error) => self.lost(&error),
            }
        }
    }

    /// Encodes `datagram` for `to` and writes the frame.
    ///
    /// Fails at once, without waiting for the device, when it is gone
    /// ([`SerialLinkError::Disconnected`]); fails after the write timeout when the device
    /// does not take the frame. Every failure is counted; the link stays usable.
    pub async fn send(&mut self, to: &F::Address, datagram: &[u8]) -> Result<(), SerialLinkError> {
        self.send_tracked(to, datagram, 0).await
    }

    /// Like [`send`](Self::send), asking the radio to report the outcome under `frame_id`
    /// (1..=255; 0 asks for no report) where the framing has delivery reports
    /// ([`Framer::reports_delivery`]); the report comes out of
    /// [`recv_event`](Self::recv_event) as a transmit status.
    pub async fn send_tracked(
        &mut self,
        to: &F::Address,
        datagram: &[u8],
        frame_id: u8,
    ) -> Result<(), SerialLinkError> {
        self.write_buf.clear();
        if let Err(error) = self
            .framer
            .encode_tracked(to, datagram, frame_id, &mut self.write_buf)
        {
            if matches!(error, FrameError::DatagramTooLarge { .. }) {
                SerialLinkStats::bump(&mut self.stats.oversize_refused);
            } else {
                SerialLinkStats::bump(&mut self.stats.send_errors);
            }
            return Err(SerialLinkError::Refused {
                path: self.path.clone(),
                error,
            });
        }
        let Some(port) = self.port.as_mut() else {
            SerialLinkStats::bump(&mut self.stats.send_errors);
            return Err(SerialLinkError::Disconnected {
                path: self.path.clone(),
            });
        };
        let frame = &self.write_buf;
        let write = async {
            port.write_all(frame).await?;
            port.flush().await
        };
        let error = match tokio::time::timeout(self.config.write_timeout, write).await {
            Ok(Ok(())) => {
                SerialLinkStats::bump(&mut self.stats.frames_sent);
                return Ok(());
            }
            Ok(Err(error)) => {
                let gone = !is_retryable(&error);
                let message = error.to_string();
                if gone {
                    self.lost(&message);
                }
                SerialLinkError::Write {
                    path: self.path.clone(),
                    error,
                }
            }
            Err(_elapsed) => SerialLinkError::WriteTimedOut {
                path: self.path.clone(),
                timeout: self.config.write_timeout,
            },
        };
        SerialLinkStats::bump(&mut self.stats.send_errors);
        tracing::debug!(link = %self.name, %error, "send failed");
        Err(error)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SerialLinkStats {
        self.stats
    }

    /// The framer, for its address scheme, limits and own counters.
    pub fn framer(&self) -> &F {
        &self.framer
    }

    /// Whether the device is open (false from the moment it went away until it is reopened).
    pub fn is_connected(&self) -> bool {
        self.port.is_some()
    }

    /// The device path opened last: the one in use while connected, the one that went away
    /// while not. For a USB identity it can change at a replug (`/dev/ttyUSB0` coming back as
    /// `/dev/ttyUSB1`); for a path it is the configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What selects the device, from the configuration.
    pub fn device(&self) -> &SerialDevice {
        &self.config.options.device
    }

    /// The link's name for logs: `serial:` and the selector, e.g. `serial:/dev/ttyUSB0` or
    /// `serial:usb 0403:6015 serial A50285BI`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the device after it went away and schedules the first reopen attempt. Logged
    /// at warn once per outage; the attempts that follow log at debug.
    fn lost(&mut self, cause: &dyn std::fmt::Display) {
        if self.port.take().is_none() {
            return;
        }
        SerialLinkStats::bump(&mut self.stats.disconnects);
        self.backoff.start(Instant::now());
        tracing::warn!(
            link = %self.name,
            path = %self.path.display(),
            %cause,
            "serial device gone; closed, reopening with backoff"
        );
    }

    /// Waits for the next scheduled attempt and tries to reopen, until it works. The
    /// schedule lives in `self`, so dropping this future and calling again resumes it.
    async fn reopen(&mut self) {
        loop {
            tokio::time::sleep_until(self.backoff.due()).await;
            match open_device(&self.config, &self.ports) {
                Ok((path, port)) => {
                    self.port = Some(port);
                    SerialLinkStats::bump(&mut self.stats.reopens);
                    tracing::info!(
                        link = %self.name,
                        path = %path.display(),
                        previous = %self.path.display(),
                        "serial device reopened"
                    );
                    self.path = path;
                    return;
                }
                Err(error) => {
                    SerialLinkStats::bump(&mut self.stats.failed_reopens);
                    self.backoff.failed(Instant::now());
                    tracing::debug!(
                        link = %self.name,
                        %error,
                        retry_in = ?self.backoff.delay,
                        "serial device still absent"
                    );
                }
            }
        }
    }
}

/// Where a USB identity is looked up: the system's ports, or in unit tests a list they
/// change to simulate a replug.
#[derive(Debug, Clone)]
enum PortSource {
    /// [`list_ports`].
    System,
    /// A list the test controls.
    #[cfg(test)]
    Fixed(std::sync::Arc<std::sync::Mutex<Vec<PortInfo>>>),
}

impl PortSource {
    fn list(&self) -> Result<Vec<PortInfo>, ListPortsError> {
        match self {
            PortSource::System => list_ports(),
            #[cfg(test)]
            PortSource::Fixed(ports) => Ok(match ports.lock() {
                Ok(ports) => ports.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            }),
        }
    }
}

/// Resolves the selector to a device path and opens it.
fn open_device(
    config: &SerialLinkConfig,
    ports: &PortSource,
) -> Result<(PathBuf, SerialStream), SerialLinkError> {
    let path = config
        .options
        .device
        .resolve_with(|| ports.list())
        .map_err(|error| SerialLinkError::Resolve { error })?;
    let port = open_port(&path, config.options.baud).map_err(|error| SerialLinkError::Open {
        device: config.options.device.clone(),
        path: path.clone(),
        error,
    })?;
    Ok((path, port))
}

/// Opens and configures the device: 8N1, no flow control.
fn open_port(path: &Path, baud_rate: u32) -> tokio_serial::Result<SerialStream> {
    tokio_serial::new(path.to_string_lossy(), baud_rate)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
}

/// Errors after which the same descriptor is worth trying again. Anything else on a serial
/// device (EIO, ENXIO, ENODEV after an unplug, EBADF, ...) means it is gone or broken, and
/// reopening is the only cure.
fn is_retryable(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
    )
}

/// The reopen schedule: the first attempt `initial` after the loss, then waits doubling up to
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    initial: Duration,
    max: Duration,
    /// The wait before the next attempt.
    delay: Duration,
    /// When the next attempt is due.
    due: Option<Instant>,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(MIN_REOPEN_WAIT);
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            delay: initial,
            due: None,
        }
    }

    /// The device was lost at `now`.
    fn start(&mut self, now: Instant) {
        self.delay = self.initial;
        self.due = Some(now + self.delay);
    }

    /// An attempt at `now` failed: wait twice as long (at most `max`).
    fn failed(&mut self, now: Instant) {
        self.delay = self.delay.saturating_mul(2).min(self.max);
        self.due = Some(now + self.delay);
    }

    /// When to try next; now if nothing was scheduled.
    fn due(&self) -> Instant {
        self.due.unwrap_or_else(Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_restarts_per_outage() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut backoff = Backoff::new(ms(100), ms(5000));
        backoff.start(t0);
        assert_eq!(backoff.due(), t0 + ms(100));
        let mut waits = Vec::new();
        for _ in 0..8 {
            backoff.failed(t0);
            waits.push(backoff.delay);
        }
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms));
        assert_eq!(backoff.due(), t0 + ms(5000));
        backoff.start(t0);
        assert_eq!(backoff.delay, ms(100));
    }

    #[test]
    fn a_zero_wait_is_raised_so_there_is_never_a_busy_loop() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        let t0 = Instant::now();
        backoff.start(t0);
        assert_eq!(backoff.delay, MIN_REOPEN_WAIT);
        backoff.failed(t0);
        assert_eq!(backoff.delay, MIN_REOPEN_WAIT);
    }

    #[test]
    fn only_interrupts_keep_the_descriptor() {
        use std::io::{Error, ErrorKind};
        assert!(is_retryable(&Error::from(ErrorKind::Interrupted)));
        assert!(!is_retryable(&Error::from_raw_os_error(5))); // EIO
        assert!(!is_retryable(&Error::from_raw_os_error(6))); // ENXIO
        assert!(!is_retryable(&Error::from_raw_os_error(19))); // ENODEV
    }

    /// Tests with a USB identity looked up in a list the test controls, over socat ptys.
    mod usb_identity {
        #![allow(
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::panic,
            clippy::indexing_slicing
        )]

        use std::process::{Child, Command, Stdio};
        use std::sync::{Arc, Mutex};

        use tokio::time::timeout;

        use super::super::*;
        use crate::serial::framing::cobs::CobsFramer;
        use crate::serial::ports::{PortKind, ResolveError, UsbInfo};

        const WAIT: Duration = Duration::from_secs(5);
        const BAUD: u32 = 115_200;

        /// A socat process joining two ptys at `a` and `b`; killed (SIGTERM, so it removes
        /// its links) on drop. socat is required: without it the test fails.
        struct PtyPair {
            child: Child,
            a: PathBuf,
            b: PathBuf,
        }

        impl PtyPair {
            fn start(name: &str) -> PtyPair {
                // In the system temp folder, unique to this process and test; removed on drop.
                let base = format!("sn-link-unit-{}-{name}", std::process::id());
                let (a, b) = (
                    std::env::temp_dir().join(format!("{base}-a")),
                    std::env::temp_dir().join(format!("{base}-b")),
                );
                let _ = std::fs::remove_file(&a);
                let _ = std::fs::remove_file(&b);
                let child = Command::new("socat")
                    .arg(format!("pty,raw,echo=0,link={}", a.display()))
                    .arg(format!("pty,raw,echo=0,link={}", b.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|error| {
                        panic!("cannot start socat ({error}): apt-get install socat")
                    });
                let deadline = std::time::Instant::now() + WAIT;
                while !(a.exists() && b.exists()) {
                    assert!(std::time::Instant::now() < deadline, "socat made no ptys");
                    std::thread::sleep(Duration::from_millis(10));
                }
                PtyPair { child, a, b }
            }
        }

        impl Drop for PtyPair {
            fn drop(&mut self) {
                let _ = Command::new("kill")
                    .arg(self.child.id().to_string())
                    .status();
                let deadline = std::time::Instant::now() + WAIT;
                while matches!(self.child.try_wait(), Ok(None)) {
                    if std::time::Instant::now() > deadline {
                        let _ = self.child.kill();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = std::fs::remove_file(&self.a);
                let _ = std::fs::remove_file(&self.b);
            }
        }

        fn dongle(path: &Path, serial: &str) -> PortInfo {
            PortInfo {
                path: path.to_owned(),
                kind: PortKind::Usb(UsbInfo {
                    vid: 0x0403,
                    pid: 0x6015,
                    serial_number: Some(serial.to_owned()),
                    manufacturer: Some("FTDI".to_owned()),
                    product: Some("FT231X USB UART".to_owned()),
                }),
                by_id: Vec::new(),
            }
        }

        fn wanted() -> SerialDevice {
            SerialDevice::Usb {
                vid: 0x0403,
                pid: 0x6015,
                serial_number: Some("A50285BI".to_owned()),
            }
        }

        /// The `[[serial]]` options of a COBS link (the framing these tests use) on `device`.
        fn options(device: SerialDevice) -> SerialConfig {
            SerialConfig {
                device,
                baud: BAUD,
                framing: sn_config::SerialFraming::Cobs,
                max_frame: 240,
                discovery: true,
            }
        }

        async fn peer_send(path: &Path, from: u16, datagram: &[u8]) -> SerialStream {
            let mut port = tokio_serial::new(path.to_string_lossy(), BAUD)
                .open_native_async()
                .unwrap();
            let mut frame = Vec::new();
            CobsFramer::new(240)
                .unwrap()
                .encode(from, datagram, &mut frame)
                .unwrap();
            port.write_all(&frame).await.unwrap();
            port.flush().await.unwrap();
            port
        }

        async fn peer_recv(port: &mut SerialStream) -> (u16, Vec<u8>) {
            let mut framer = CobsFramer::new(240).unwrap();
            timeout(WAIT, async {
                let mut buf = [0u8; 256];
                loop {
                    if let Some(item) = framer.next_datagram() {
                        return item.unwrap();
                    }
                    let len = port.read(&mut buf).await.unwrap();
                    assert!(len > 0, "peer port closed");
                    framer.push(&buf[..len]);
                }
            })
            .await
            .expect("no frame reached the peer in time")
        }

        #[tokio::test]
        async fn a_usb_identity_is_found_again_at_a_new_path_after_a_replug() {
            let first = PtyPair::start("usb-first");
            let ports = Arc::new(Mutex::new(vec![
                dongle(Path::new("/dev/ttyUSB9-not-this-one"), "B00000XY"),
                dongle(&first.a, "A50285BI"),
            ]));
            let config = SerialLinkConfig::new(options(wanted()));
            let framer = CobsFramer::new(240).unwrap();
            let mut link =
                SerialLink::open_with(config, framer, PortSource::Fixed(ports.clone())).unwrap();
            assert_eq!(link.path(), first.a);
            assert_eq!(link.name(), "serial:usb 0403:6015 serial A50285BI");
            assert_eq!(link.device(), &wanted());

            let first_peer = peer_send(&first.b, 1, &[0x02, 0x16]).await;
            let received = timeout(WAIT, link.recv()).await.unwrap();
            assert_eq!(received, (1, vec![0x02, 0x16]));

            // The replacement exists before the first pair goes, so its ptys are other ones:
            // reopening the old path cannot succeed.
            let second = PtyPair::start("usb-second");
            ports.lock().unwrap().clear();
            drop(first_peer);
            drop(first);
            assert!(timeout(Duration::from_millis(400), link.recv())
                .await
                .is_err());
            assert!(!link.is_connected());
            let during = link.stats();
            assert_eq!(during.disconnects, 1, "{during:?}");
            assert!(during.failed_reopens >= 1, "{during:?}");

            // The dongle comes back under another name.
            ports.lock().unwrap().push(dongle(&second.a, "A50285BI"));
            let deadline = Instant::now() + WAIT;
            while !link.is_connected() {
                assert!(
                    Instant::now() < deadline,
                    "not reopened: {:?}",
                    link.stats()
                );
                let _ = timeout(Duration::from_millis(50), link.recv()).await;
            }
            assert_eq!(link.path(), second.a);
            let mut peer = peer_send(&second.b, 2, &[0x02, 0x18]).await;
            let received = timeout(WAIT, link.recv()).await.unwrap();
            assert_eq!(received, (2, vec![0x02, 0x18]));
            link.send(&2, &[0x02, 0x19]).await.unwrap();
            assert_eq!(peer_recv(&mut peer).await, (2, vec![0x02, 0x19]));
            assert_eq!(link.stats().reopens, 1);
        }

        #[tokio::test]
        async fn an_absent_usb_identity_fails_at_start_up_naming_what_was_seen() {
            let ports = Arc::new(Mutex::new(vec![dongle(
                Path::new("/dev/ttyUSB0"),
                "B00000XY",
            )]));
            let config = SerialLinkConfig::new(options(wanted()));
            let error = SerialLink::open_with(
                config,
                CobsFramer::new(240).unwrap(),
                PortSource::Fixed(ports),
            )
            .unwrap_err();
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
                message.starts_with("no serial device matches usb 0403:6015 serial A50285BI; "),
                "{message}"
            );
            assert!(
                message.contains("/dev/ttyUSB0 (usb 0403:6015 serial B00000XY)"),
                "{message}"
            );
            assert!(message.contains("mqtt-sn-gateway ports"), "{message}");
        }

        #[tokio::test]
        async fn an_unopenable_device_names_the_path_and_the_selector() {
            let ports = Arc::new(Mutex::new(vec![dongle(
                Path::new("/nonexistent/ttyUSB4"),
                "A50285BI",
            )]));
            let config = SerialLinkConfig::new(options(wanted()));
            let error = SerialLink::open_with(
                config,
                CobsFramer::new(240).unwrap(),
                PortSource::Fixed(ports),
            )
            .unwrap_err();
            assert!(matches!(&error, SerialLinkError::Open { .. }), "{error:?}");
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "cannot open serial device /nonexistent/ttyUSB4 (usb 0403:6015 serial \
                     A50285BI): "
                ),
                "{message}"
            );

            let error = SerialLink::open(
                SerialLinkConfig::new(options(SerialDevice::path("/nonexistent/ttyUSB4"))),
                CobsFramer::new(240).unwrap(),
            )
            .unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with("cannot open serial device /nonexistent/ttyUSB4: "),
                "{message}"
            );
        }
    }
}
