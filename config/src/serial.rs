//! `[[serial]]`: serial-attached radios (a USB XBee stick, a LoRa modem) and directly attached
//! motes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Line speed used when `baud` is not written: the factory setting of XBee modules and Ebyte
/// E22 modems.
pub const DEFAULT_BAUD: u32 = 9600;

/// `[[serial]]`: one serial link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// Which device: `device = "/dev/..."` or `usb = "VID:PID"` (+ `serial_number`).
    pub device: SerialDevice,
    /// Line speed in bits per second, 8N1. Default 9600.
    pub baud: u32,
    /// How datagrams are delimited and addressed on the line.
    pub framing: SerialFraming,
    /// The framing's size limit (see [`SerialFraming::default_max_frame`] and the radio pages
    /// in docs/radios/ for what it counts per framing).
    pub max_frame: usize,
    /// Whether ADVERTISE and GWINFO are broadcast on this link. Default true.
    pub discovery: bool,
}

/// How the device of a serial link is found, at start-up and again after a replug
/// (`[[serial]] device`, or `usb` with `serial_number`). The one definition: the serial
/// transport opens what this names (sn-transports looks it up among the ports present).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SerialDevice {
    /// A device path, e.g. `/dev/ttyUSB0`, a udev `SYMLINK` like `/dev/xbee0`, or a
    /// `/dev/serial/by-id/...` name (stable across replugs). Opened as it is at every open and
    /// reopen, so a symlink that udev re-creates after a replug is followed to wherever it
    /// points then.
    Path(PathBuf),
    /// A USB adapter by vendor and product id, plus its serial number when several alike are
    /// plugged in; looked up among the ports present at every open and reopen, wherever it
    /// appears (`/dev/ttyUSB0`, then `/dev/ttyUSB1`...).
    Usb {
        /// USB vendor id.
        vid: u16,
        /// USB product id.
        pid: u16,
        /// The adapter's USB serial number; `None` takes any device with this VID:PID, as
        /// long as there is only one.
        serial_number: Option<String>,
    },
}

impl SerialDevice {
    /// The device at `path`.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        SerialDevice::Path(path.into())
    }

    /// Parses a USB identity: `VID:PID` or `VID:PID:SERIAL`, VID and PID in hex as `lsusb`
    /// prints them (`0403:6015`, `0403:6015:A50285BI`). Everything after the second colon
    /// is the serial number.
    pub fn parse_usb(text: &str) -> Result<Self, SelectorParseError> {
        parse_usb(text).map_err(|reason| SelectorParseError {
            input: text.to_owned(),
            reason,
            path_allowed: false,
        })
    }
}

/// `/dev/ttyUSB0`; `usb 0403:6015 serial A50285BI`; `usb 0403:6015`.
impl fmt::Display for SerialDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialDevice::Path(path) => write!(f, "{}", path.display()),
            SerialDevice::Usb {
                vid,
                pid,
                serial_number,
            } => {
                write!(f, "usb {vid:04x}:{pid:04x}")?;
                if let Some(serial) = serial_number {
                    write!(f, " serial {serial}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a device given as one text: text containing a `/` is a path (`/dev/ttyUSB0`,
/// `/dev/serial/by-id/...`), anything else a USB identity as in
/// [`parse_usb`](SerialDevice::parse_usb).
impl FromStr for SerialDevice {
    type Err = SelectorParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.contains('/') {
            return Ok(SerialDevice::Path(PathBuf::from(text)));
        }
        parse_usb(text).map_err(|reason| SelectorParseError {
            input: text.to_owned(),
            reason,
            path_allowed: true,
        })
    }
}

/// Parses `VID:PID[:SERIAL]`, or says what is wrong with it.
fn parse_usb(text: &str) -> Result<SerialDevice, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut parts = text.splitn(3, ':');
    let vid = parts.next().unwrap_or_default();
    let Some(pid) = parts.next() else {
        return Err("there is no colon between VID and PID".to_owned());
    };
    let vid = parse_hex_id("VID", vid)?;
    let pid = parse_hex_id("PID", pid)?;
    let serial_number = match parts.next() {
        None => None,
        Some(serial) if serial.trim().is_empty() => {
            return Err("the serial number after the second colon is empty".to_owned());
        }
        Some(serial) => Some(serial.trim().to_owned()),
    };
    Ok(SerialDevice::Usb {
        vid,
        pid,
        serial_number,
    })
}

/// Parses one to four hex digits.
fn parse_hex_id(what: &str, text: &str) -> Result<u16, String> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "the {what} {digits:?} is not a hex number of 1 to 4 digits"
        ));
    }
    u16::from_str_radix(digits, 16)
        .map_err(|error| format!("the {what} {digits:?} is not a hex number: {error}"))
}

/// A device given as text that is neither a path nor a well-formed USB identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid serial device {input:?}: {reason}; expected {expected}",
    expected = if *path_allowed {
        "a device path (/dev/ttyUSB0, /dev/serial/by-id/...) or a USB identity VID:PID or \
         VID:PID:SERIAL with VID and PID in hex, e.g. 0403:6015 or 0403:6015:A50285BI \
         (`mqtt-sn-gateway ports` lists them)"
    } else {
        "a USB identity VID:PID or VID:PID:SERIAL with VID and PID in hex, e.g. 0403:6015 or \
         0403:6015:A50285BI (`mqtt-sn-gateway ports` lists them)"
    }
)]
pub struct SelectorParseError {
    input: String,
    reason: String,
    path_allowed: bool,
}

impl SelectorParseError {
    /// The text that was refused.
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// The framing of a serial link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialFraming {
    /// XBee API mode 2 (escaped, `AP=2`), for Zigbee: `framing = "xbee"`.
    XBee,
    /// XBee API mode 1 (`AP=1`): `framing = "xbee-api1"`.
    XBeeApi1,
    /// COBS + CRC-16 frames with a 16-bit node address, for LoRa modems in transparent mode
    /// and custom mote firmware: `framing = "cobs"` (or `"lora"`).
    Cobs,
    /// KISS, for RNode-style LoRa devices: `framing = "kiss"`.
    Kiss,
    /// Raw MQTT-SN (the packet's own length field delimits it), one directly attached mote:
    /// `framing = "raw"`.
    Raw,
}

impl SerialFraming {
    /// The names accepted in the configuration, for messages.
    pub const NAMES: &'static str =
        "\"xbee\", \"xbee-api1\", \"cobs\" (alias \"lora\"), \"kiss\" or \"raw\"";

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<SerialFraming> {
        Some(match name {
            "xbee" | "xbee-api2" => SerialFraming::XBee,
            "xbee-api1" => SerialFraming::XBeeApi1,
            "cobs" | "lora" => SerialFraming::Cobs,
            "kiss" => SerialFraming::Kiss,
            "raw" => SerialFraming::Raw,
            _ => return None,
        })
    }

    /// The canonical configuration name.
    pub fn name(self) -> &'static str {
        match self {
            SerialFraming::XBee => "xbee",
            SerialFraming::XBeeApi1 => "xbee-api1",
            SerialFraming::Cobs => "cobs",
            SerialFraming::Kiss => "kiss",
            SerialFraming::Raw => "raw",
        }
    }

    /// `max_frame` when not written: XBee 98 (14 header bytes + `NP` 84 of an XBee S2C),
    /// COBS 240 (an Ebyte E22 sub-packet), KISS 254 (one LoRa packet), raw 1024.
    pub fn default_max_frame(self) -> usize {
        match self {
            SerialFraming::XBee | SerialFraming::XBeeApi1 => 98,
            SerialFraming::Cobs => 240,
            SerialFraming::Kiss => 254,
            SerialFraming::Raw => 1024,
        }
    }

    /// The smallest `max_frame` the framing accepts (its header must fit).
    pub fn min_max_frame(self) -> usize {
        match self {
            SerialFraming::XBee | SerialFraming::XBeeApi1 => 16,
            SerialFraming::Cobs => 9,
            SerialFraming::Kiss | SerialFraming::Raw => 2,
        }
    }
}

impl fmt::Display for SerialFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
