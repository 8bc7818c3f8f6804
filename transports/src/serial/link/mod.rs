//! The serial link: one serial device (a USB radio dongle, a directly attached mote) carrying
//! MQTT-SN datagrams in one of the [`framing`](super::framing)s, surviving replugs.
//!
//! The device is opened by path at a baud rate, 8 data bits, no parity, one stop bit, no flow
//! control. Bytes read go through the framer; [`SerialLink::recv`] hands out the decoded
//! datagrams and drops (and counts) damaged frames. [`SerialLink::send`] encodes one datagram
//! and writes the frame.
//!
//! # Replug
//!
//! When a read returns end of file or an I/O error (EIO, ENXIO, ENODEV: the dongle was pulled
//! out or the pty's other side went away), the link logs it once at warn level, closes the
//! device and reopens the same path with exponential backoff (by default 100 ms, doubling up
//! to 5 s), then resumes; the caller of `recv` just sees the next datagram later. While the
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

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

pub use error::SerialLinkError;
pub use stats::SerialLinkStats;

use super::framing::{FrameError, Framer, Received};

/// Bytes asked for per read; the framer buffers partial frames, so this only sets how many
/// reads a burst takes.
const READ_CHUNK: usize = 1024;

/// The shortest wait between reopen attempts, whatever the configuration says, so that a
/// zero in it cannot turn an outage into a busy loop.
const MIN_REOPEN_WAIT: Duration = Duration::from_millis(10);

/// What one serial link is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLinkConfig {
    /// The device, e.g. `/dev/ttyUSB0` or a `/dev/serial/by-id/...` name. Reopened by the
    /// same path after a replug.
    pub path: PathBuf,
    /// Line speed in bits per second (8N1, no flow control).
    pub baud_rate: u32,
    /// The first wait before reopening a device that went away (at least 10 ms).
    pub reopen_initial: Duration,
    /// The longest wait between reopen attempts; the wait doubles up to it (at least
    /// `reopen_initial`).
    pub reopen_max: Duration,
    /// How long `send` waits for the device to take one frame before giving up.
    pub write_timeout: Duration,
}

impl SerialLinkConfig {
    /// A configuration for `path` at `baud_rate` with the default timings: reopen after
    /// 100 ms doubling up to 5 s, write timeout 1 s.
    pub fn new(path: impl Into<PathBuf>, baud_rate: u32) -> Self {
        SerialLinkConfig {
            path: path.into(),
            baud_rate,
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
    /// A device that cannot be opened now is an error (a wrong path should be seen at
    /// start-up); only a device that goes away later is waited for.
    pub fn open(config: SerialLinkConfig, framer: F) -> Result<Self, SerialLinkError> {
        let port = open_port(&config).map_err(|error| SerialLinkError::Open {
            path: config.path.clone(),
            error,
        })?;
        let name = format!("serial:{}", config.path.display());
        tracing::debug!(link = %name, baud = config.baud_rate, "serial link opened");
        Ok(SerialLink {
            backoff: Backoff::new(config.reopen_initial, config.reopen_max),
            config,
            name,
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
        self.write_buf.clear();
        if let Err(error) = self.framer.encode(to, datagram, &mut self.write_buf) {
            if matches!(error, FrameError::DatagramTooLarge { .. }) {
                SerialLinkStats::bump(&mut self.stats.oversize_refused);
            } else {
                SerialLinkStats::bump(&mut self.stats.send_errors);
            }
            return Err(SerialLinkError::Refused {
                path: self.config.path.clone(),
                error,
            });
        }
        let Some(port) = self.port.as_mut() else {
            SerialLinkStats::bump(&mut self.stats.send_errors);
            return Err(SerialLinkError::Disconnected {
                path: self.config.path.clone(),
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
                    path: self.config.path.clone(),
                    error,
                }
            }
            Err(_elapsed) => SerialLinkError::WriteTimedOut {
                path: self.config.path.clone(),
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

    /// The device path from the configuration.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// The link's name for logs, e.g. `serial:/dev/ttyUSB0`.
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
            path = %self.config.path.display(),
            %cause,
            "serial device gone; closed, reopening with backoff"
        );
    }

    /// Waits for the next scheduled attempt and tries to reopen, until it works. The
    /// schedule lives in `self`, so dropping this future and calling again resumes it.
    async fn reopen(&mut self) {
        loop {
            tokio::time::sleep_until(self.backoff.due()).await;
            match open_port(&self.config) {
                Ok(port) => {
                    self.port = Some(port);
                    SerialLinkStats::bump(&mut self.stats.reopens);
                    tracing::info!(
                        link = %self.name,
                        path = %self.config.path.display(),
                        "serial device reopened"
                    );
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

/// Opens and configures the device: 8N1, no flow control.
fn open_port(config: &SerialLinkConfig) -> tokio_serial::Result<SerialStream> {
    tokio_serial::new(config.path.to_string_lossy(), config.baud_rate)
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
}
