//! `[[serial]]`: serial-attached radios (a USB XBee stick, a LoRa modem) and directly attached
//! motes.

use std::fmt;
use std::path::PathBuf;

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

/// How the device of a serial link is found, at start-up and again after a replug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialDevice {
    /// A device path, e.g. `/dev/ttyUSB0`, a udev `SYMLINK` like `/dev/xbee0`, or a
    /// `/dev/serial/by-id/...` name (stable across replugs).
    Path(PathBuf),
    /// A USB adapter by vendor and product id, plus its serial number when several alike are
    /// plugged in; found wherever it appears (`/dev/ttyUSB0`, then `/dev/ttyUSB1`...).
    Usb {
        /// USB vendor id.
        vid: u16,
        /// USB product id.
        pid: u16,
        /// The adapter's USB serial number, if given.
        serial_number: Option<String>,
    },
}

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
