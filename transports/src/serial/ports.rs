//! Serial port discovery and stable device identity.
//!
//! The kernel numbers USB serial devices in plug order, so `/dev/ttyUSB0` today may be
//! `/dev/ttyUSB1` after a reboot or a replug. A serial link is therefore configured with a
//! [`SerialDevice`] (defined in sn-config, looked up here with [`DeviceLookup`]):
//!
//! - a path: `/dev/ttyUSB0`, or better one of the `/dev/serial/by-id/...` names that udev
//!   derives from the device's USB identity and re-creates on every replug. The path is opened
//!   as it is each time, so a re-created symlink is followed;
//! - a USB identity: vendor and product id (VID:PID, as `lsusb` prints them) and, to tell two
//!   identical dongles apart, the serial number. It is looked up among the ports present at
//!   every open and reopen, wherever the device turned up.
//!
//! [`list_ports`] lists the serial ports present with their USB identity and by-id names; it
//! backs `mqtt-sn-gateway ports`. Ports are found through sysfs (`/sys/class/tty`), without
//! libudev.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sn_config::SerialDevice;

/// Where udev keeps the stable names of serial devices, each a symlink to the device node.
pub const BY_ID_DIR: &str = "/dev/serial/by-id";

/// The sysfs directory the port enumeration reads; without it enumeration is impossible.
const SYS_TTY_DIR: &str = "/sys/class/tty";

/// One serial port present on the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The device node, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// How the port is attached, with the USB identity for USB ports.
    pub kind: PortKind,
    /// The `/dev/serial/by-id/*` symlinks that resolve to this port, sorted; empty when it
    /// has none.
    pub by_id: Vec<PathBuf>,
}

impl PortInfo {
    /// The USB identity, for a USB port.
    pub fn usb(&self) -> Option<&UsbInfo> {
        match &self.kind {
            PortKind::Usb(usb) => Some(usb),
            _ => None,
        }
    }
}

/// `/dev/ttyUSB0 (usb 0403:6015 serial A50285BI)`.
impl fmt::Display for PortInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.kind)
    }
}

/// How a serial port is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortKind {
    /// A USB device (a radio dongle, a USB-serial adapter, a board's USB CDC port).
    Usb(UsbInfo),
    /// A PCI serial card.
    Pci,
    /// A Bluetooth RFCOMM port.
    Bluetooth,
    /// Anything else: a UART on the board, a legacy ttyS port.
    Unknown,
}

/// `usb 0403:6015 serial A50285BI`, `pci`, `bluetooth`, `other`.
impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortKind::Usb(usb) => write!(f, "usb {usb}"),
            PortKind::Pci => f.write_str("pci"),
            PortKind::Bluetooth => f.write_str("bluetooth"),
            PortKind::Unknown => f.write_str("other"),
        }
    }
}

/// The identity of a USB serial device, as its descriptors report it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsbInfo {
    /// Vendor id, e.g. 0x0403 (FTDI).
    pub vid: u16,
    /// Product id, e.g. 0x6015 (FT231X).
    pub pid: u16,
    /// The serial number, when the device has one.
    pub serial_number: Option<String>,
    /// The manufacturer string, when the device has one.
    pub manufacturer: Option<String>,
    /// The product string, when the device has one.
    pub product: Option<String>,
}

impl UsbInfo {
    /// The identity in the form [`SerialDevice::parse_usb`] takes: `0403:6015:A50285BI`, or
    /// `0403:6015` without a serial number.
    pub fn identity(&self) -> String {
        match &self.serial_number {
            Some(serial) => format!("{:04x}:{:04x}:{serial}", self.vid, self.pid),
            None => format!("{:04x}:{:04x}", self.vid, self.pid),
        }
    }

    /// A selector for exactly this device: VID, PID and serial number when it has one.
    pub fn selector(&self) -> SerialDevice {
        SerialDevice::Usb {
            vid: self.vid,
            pid: self.pid,
            serial_number: self.serial_number.clone(),
        }
    }
}

/// `0403:6015 serial A50285BI`, or `0403:6015` without a serial number.
impl fmt::Display for UsbInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vid, self.pid)?;
        if let Some(serial) = &self.serial_number {
            write!(f, " serial {serial}")?;
        }
        Ok(())
    }
}

/// Why the serial ports could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListPortsError {
    /// The sysfs directory the enumeration reads is missing or unreadable.
    #[error(
        "cannot list serial ports: {dir} is not readable ({error}); is sysfs mounted?",
        dir = dir.display()
    )]
    NoSysfs {
        /// The directory, `/sys/class/tty`.
        dir: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The enumeration failed.
    #[error("cannot list serial ports: {error}")]
    Enumerate {
        /// What the serial library said.
        error: tokio_serial::Error,
    },
}

/// The serial ports present, sorted by path, each with its `/dev/serial/by-id` names.
///
/// Ports are found through sysfs; a system without `/sys/class/tty` is an error, not a panic.
pub fn list_ports() -> Result<Vec<PortInfo>, ListPortsError> {
    list_ports_with_by_id(Path::new(BY_ID_DIR))
}

/// Like [`list_ports`], with the by-id names taken from `by_id_dir` instead of
/// [`BY_ID_DIR`].
pub fn list_ports_with_by_id(by_id_dir: &Path) -> Result<Vec<PortInfo>, ListPortsError> {
    // serialport's sysfs enumeration panics when it cannot read this directory.
    if let Err(error) = std::fs::read_dir(SYS_TTY_DIR) {
        return Err(ListPortsError::NoSysfs {
            dir: PathBuf::from(SYS_TTY_DIR),
            error,
        });
    }
    let found =
        tokio_serial::available_ports().map_err(|error| ListPortsError::Enumerate { error })?;
    Ok(ports_from(found, by_id_dir))
}

/// What the serial library found, converted, sorted by path, each path once, with its by-id
/// names from `by_id_dir`.
fn ports_from(found: Vec<tokio_serial::SerialPortInfo>, by_id_dir: &Path) -> Vec<PortInfo> {
    let mut ports: Vec<PortInfo> = found.into_iter().map(port_info).collect();
    ports.sort_by(|a, b| a.path.cmp(&b.path));
    ports.dedup_by(|a, b| a.path == b.path);
    set_by_id_names(&mut ports, by_id_dir);
    ports
}

/// Sets each port's [`by_id`](PortInfo::by_id) to the entries of `by_id_dir` that resolve
/// to it (compared after canonicalising both). Dangling entries are skipped; a missing
/// directory (udev removes it when no USB serial device is plugged in) gives no names.
pub fn set_by_id_names(ports: &mut [PortInfo], by_id_dir: &Path) {
    let links = by_id_links(by_id_dir);
    for port in ports {
        let target = port
            .path
            .canonicalize()
            .unwrap_or_else(|_| port.path.clone());
        port.by_id = links
            .iter()
            .filter(|(_, resolved)| *resolved == target)
            .map(|(link, _)| link.clone())
            .collect();
    }
}

/// The entries of `dir` with what each resolves to, sorted by name.
fn by_id_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::debug!(dir = %dir.display(), %error, "cannot read by-id names");
            }
            return Vec::new();
        }
    };
    let mut links: Vec<(PathBuf, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let link = entry.path();
            let resolved = link.canonicalize().ok()?;
            Some((link, resolved))
        })
        .collect();
    links.sort();
    links
}

/// Converts the serial library's description.
fn port_info(port: tokio_serial::SerialPortInfo) -> PortInfo {
    let kind = match port.port_type {
        tokio_serial::SerialPortType::UsbPort(usb) => PortKind::Usb(UsbInfo {
            vid: usb.vid,
            pid: usb.pid,
            serial_number: usb.serial_number,
            manufacturer: usb.manufacturer,
            product: usb.product,
        }),
        tokio_serial::SerialPortType::PciPort => PortKind::Pci,
        tokio_serial::SerialPortType::BluetoothPort => PortKind::Bluetooth,
        tokio_serial::SerialPortType::Unknown => PortKind::Unknown,
    };
    PortInfo {
        path: PathBuf::from(port.port_name),
        kind,
        by_id: Vec::new(),
    }
}

/// Finding the device a [`SerialDevice`] (the configured `[[serial]]` device, defined in
/// sn-config) names among the serial ports present.
pub trait DeviceLookup {
    /// Whether this device is `port`.
    ///
    /// A path takes the port when it is the port's path or one of its by-id names, or when
    /// both resolve to the same device node. A USB identity takes a USB port with the same
    /// VID and PID, and the same serial number when the selector names one.
    fn matches(&self, port: &PortInfo) -> bool;

    /// The path to open among `ports`.
    ///
    /// A path is returned as it is, without looking at `ports` (it is opened as given, so
    /// a by-id symlink is followed at open time). A USB identity must match exactly one
    /// port: none or several is an error that lists what was seen.
    fn resolve(&self, ports: &[PortInfo]) -> Result<PathBuf, ResolveError>;

    /// The path to open now: a path as it is, a USB identity looked up with
    /// [`list_ports`].
    fn locate(&self) -> Result<PathBuf, ResolveError>;

    /// Like [`locate`](Self::locate) with the ports listed by `list`, called only for a USB
    /// identity.
    fn resolve_with(
        &self,
        list: impl FnOnce() -> Result<Vec<PortInfo>, ListPortsError>,
    ) -> Result<PathBuf, ResolveError>;
}

impl DeviceLookup for SerialDevice {
    fn matches(&self, port: &PortInfo) -> bool {
        match self {
            SerialDevice::Path(path) => {
                *path == port.path
                    || port.by_id.iter().any(|link| link == path)
                    || match (path.canonicalize(), port.path.canonicalize()) {
                        (Ok(wanted), Ok(present)) => wanted == present,
                        _ => false,
                    }
            }
            SerialDevice::Usb {
                vid,
                pid,
                serial_number,
            } => port.usb().is_some_and(|usb| {
                usb.vid == *vid
                    && usb.pid == *pid
                    && serial_number
                        .as_ref()
                        .is_none_or(|wanted| usb.serial_number.as_ref() == Some(wanted))
            }),
        }
    }

    fn resolve(&self, ports: &[PortInfo]) -> Result<PathBuf, ResolveError> {
        if let SerialDevice::Path(path) = self {
            return Ok(path.clone());
        }
        let mut matching = ports.iter().filter(|port| self.matches(port));
        match (matching.next(), matching.next()) {
            (Some(port), None) => Ok(port.path.clone()),
            (None, _) => Err(ResolveError::NotFound {
                selector: self.clone(),
                seen: ports.to_vec(),
            }),
            (Some(_), Some(_)) => Err(ResolveError::Ambiguous {
                selector: self.clone(),
                matching: ports
                    .iter()
                    .filter(|port| self.matches(port))
                    .cloned()
                    .collect(),
            }),
        }
    }

    fn locate(&self) -> Result<PathBuf, ResolveError> {
        self.resolve_with(list_ports)
    }

    fn resolve_with(
        &self,
        list: impl FnOnce() -> Result<Vec<PortInfo>, ListPortsError>,
    ) -> Result<PathBuf, ResolveError> {
        if let SerialDevice::Path(path) = self {
            return Ok(path.clone());
        }
        let ports = list().map_err(|error| ResolveError::ListFailed {
            selector: self.clone(),
            error,
        })?;
        self.resolve(&ports)
    }
}

/// Why a [`SerialDevice`] found no device to open.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResolveError {
    /// No port matches the USB identity.
    NotFound {
        /// The selector looked for.
        selector: SerialDevice,
        /// Every serial port present.
        seen: Vec<PortInfo>,
    },
    /// Several ports match the USB identity.
    Ambiguous {
        /// The selector looked for.
        selector: SerialDevice,
        /// The ports that match, two or more.
        matching: Vec<PortInfo>,
    },
    /// The ports could not be listed.
    ListFailed {
        /// The selector looked for.
        selector: SerialDevice,
        /// Why listing failed.
        error: ListPortsError,
    },
}

impl ResolveError {
    /// The selector that found no device.
    pub fn selector(&self) -> &SerialDevice {
        match self {
            ResolveError::NotFound { selector, .. }
            | ResolveError::Ambiguous { selector, .. }
            | ResolveError::ListFailed { selector, .. } => selector,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound { selector, seen } => {
                write!(f, "no serial device matches {selector}; ")?;
                let usb: Vec<&PortInfo> = seen.iter().filter(|port| port.usb().is_some()).collect();
                if usb.is_empty() {
                    f.write_str("no USB serial ports are present (is the dongle plugged in?)")?;
                } else {
                    f.write_str("USB serial ports present: ")?;
                    write_list(f, &usb)?;
                }
                let others = seen.len() - usb.len();
                if others > 0 {
                    write!(f, " (and {others} serial ports without a USB identity)")?;
                }
                f.write_str(
                    "; run `mqtt-sn-gateway ports` to see each port's VID:PID and serial number",
                )
            }
            ResolveError::Ambiguous { selector, matching } => {
                write!(
                    f,
                    "{selector} is ambiguous: {} serial ports match: ",
                    matching.len()
                )?;
                write_list(f, &matching.iter().collect::<Vec<_>>())?;
                let has_serial = matches!(
                    selector,
                    SerialDevice::Usb {
                        serial_number: Some(_),
                        ..
                    }
                );
                if has_serial {
                    f.write_str(
                        "; they share the serial number, so configure the device by path \
                         (/dev/serial/by-path/...) instead",
                    )
                } else {
                    f.write_str(
                        "; add the serial number (VID:PID:SERIAL) to pick one, see \
                         `mqtt-sn-gateway ports`",
                    )
                }
            }
            ResolveError::ListFailed { selector, error } => {
                write!(f, "cannot look for serial device {selector}: {error}")
            }
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::ListFailed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Writes `/dev/ttyUSB0 (usb 0403:6015 serial A), /dev/ttyUSB1 (...)`.
fn write_list(f: &mut fmt::Formatter<'_>, ports: &[&PortInfo]) -> fmt::Result {
    for (index, port) in ports.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{port}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    fn usb(path: &str, vid: u16, pid: u16, serial: Option<&str>) -> PortInfo {
        PortInfo {
            path: PathBuf::from(path),
            kind: PortKind::Usb(UsbInfo {
                vid,
                pid,
                serial_number: serial.map(str::to_owned),
                manufacturer: Some("FTDI".to_owned()),
                product: Some("FT231X USB UART".to_owned()),
            }),
            by_id: Vec::new(),
        }
    }

    fn other(path: &str, kind: PortKind) -> PortInfo {
        PortInfo {
            path: PathBuf::from(path),
            kind,
            by_id: Vec::new(),
        }
    }

    fn selector(vid: u16, pid: u16, serial: Option<&str>) -> SerialDevice {
        SerialDevice::Usb {
            vid,
            pid,
            serial_number: serial.map(str::to_owned),
        }
    }

    #[test]
    fn usb_identities_parse_in_lsusb_form_with_an_optional_serial_number() {
        assert_eq!(
            SerialDevice::parse_usb("0403:6015").unwrap(),
            selector(0x0403, 0x6015, None)
        );
        assert_eq!(
            SerialDevice::parse_usb("0403:6015:A50285BI").unwrap(),
            selector(0x0403, 0x6015, Some("A50285BI"))
        );
        assert_eq!(
            SerialDevice::parse_usb(" 10C4:ea60 ").unwrap(),
            selector(0x10c4, 0xea60, None)
        );
        // Everything after the second colon is the serial number.
        assert_eq!(
            SerialDevice::parse_usb("1a86:7523:ab:cd").unwrap(),
            selector(0x1a86, 0x7523, Some("ab:cd"))
        );
        assert_eq!(
            "0403:6015:A50285BI".parse::<SerialDevice>().unwrap(),
            selector(0x0403, 0x6015, Some("A50285BI"))
        );
    }

    #[test]
    fn text_with_a_slash_parses_as_a_path() {
        assert_eq!(
            "/dev/ttyUSB0".parse::<SerialDevice>().unwrap(),
            SerialDevice::path("/dev/ttyUSB0")
        );
        let by_id = "/dev/serial/by-id/usb-FTDI_FT231X_USB_UART_A50285BI-if00-port0";
        assert_eq!(
            by_id.parse::<SerialDevice>().unwrap(),
            SerialDevice::Path(PathBuf::from(by_id))
        );
        // parse_usb takes no paths.
        assert!(SerialDevice::parse_usb("/dev/ttyUSB0").is_err());
    }

    #[test]
    fn malformed_identities_are_refused_with_the_expected_form_named() {
        let cases = [
            ("", "it is empty"),
            ("0403", "there is no colon between VID and PID"),
            ("ttyUSB0", "there is no colon between VID and PID"),
            (
                "04g3:6015",
                "the VID \"04g3\" is not a hex number of 1 to 4 digits",
            ),
            (
                "0403:60150",
                "the PID \"60150\" is not a hex number of 1 to 4 digits",
            ),
            (":6015", "the VID \"\" is not a hex number of 1 to 4 digits"),
            (
                "0403:+615",
                "the PID \"+615\" is not a hex number of 1 to 4 digits",
            ),
            (
                "0403:6015:",
                "the serial number after the second colon is empty",
            ),
        ];
        for (input, reason) in cases {
            let error = SerialDevice::parse_usb(input).unwrap_err();
            assert_eq!(error.input(), input);
            let message = error.to_string();
            assert!(message.contains(reason), "{input:?}: {message}");
            assert!(
                message.contains("VID:PID or VID:PID:SERIAL") && message.contains("0403:6015"),
                "{input:?}: {message}"
            );
            assert!(!message.contains("device path"), "{input:?}: {message}");
        }
        let message = "ttyUSB0".parse::<SerialDevice>().unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid serial device \"ttyUSB0\": there is no colon between VID and PID; expected \
             a device path (/dev/ttyUSB0, /dev/serial/by-id/...) or a USB identity VID:PID or \
             VID:PID:SERIAL with VID and PID in hex, e.g. 0403:6015 or 0403:6015:A50285BI \
             (`mqtt-sn-gateway ports` lists them)"
        );
    }

    #[test]
    fn selectors_display_as_path_or_usb_identity() {
        assert_eq!(
            SerialDevice::path("/dev/ttyUSB0").to_string(),
            "/dev/ttyUSB0"
        );
        assert_eq!(
            selector(0x0403, 0x6015, Some("A50285BI")).to_string(),
            "usb 0403:6015 serial A50285BI"
        );
        assert_eq!(selector(0x10c4, 0xea60, None).to_string(), "usb 10c4:ea60");
        let port = usb("/dev/ttyUSB1", 0x0403, 0x6015, Some("A50285BI"));
        assert_eq!(
            port.to_string(),
            "/dev/ttyUSB1 (usb 0403:6015 serial A50285BI)"
        );
        assert_eq!(port.usb().unwrap().identity(), "0403:6015:A50285BI");
        assert_eq!(
            port.usb().unwrap().selector(),
            selector(0x0403, 0x6015, Some("A50285BI"))
        );
        assert_eq!(
            other("/dev/ttyS0", PortKind::Pci).to_string(),
            "/dev/ttyS0 (pci)"
        );
        // The identity round-trips through the parser.
        let identity = usb("/dev/ttyUSB0", 0x1a86, 0x7523, None)
            .usb()
            .unwrap()
            .identity();
        assert_eq!(identity, "1a86:7523");
        assert_eq!(
            SerialDevice::parse_usb(&identity).unwrap(),
            selector(0x1a86, 0x7523, None)
        );
    }

    #[test]
    fn usb_selectors_match_vid_pid_and_the_serial_number_when_given() {
        let port = usb("/dev/ttyUSB0", 0x0403, 0x6015, Some("A50285BI"));
        let bare = usb("/dev/ttyUSB1", 0x0403, 0x6015, None);
        assert!(selector(0x0403, 0x6015, None).matches(&port));
        assert!(selector(0x0403, 0x6015, None).matches(&bare));
        assert!(selector(0x0403, 0x6015, Some("A50285BI")).matches(&port));
        assert!(!selector(0x0403, 0x6015, Some("A50285BI")).matches(&bare));
        assert!(!selector(0x0403, 0x6015, Some("a50285bi")).matches(&port));
        assert!(!selector(0x0403, 0x6001, None).matches(&port));
        assert!(!selector(0x0404, 0x6015, None).matches(&port));
        assert!(!selector(0x0403, 0x6015, None).matches(&other("/dev/ttyS0", PortKind::Pci)));
    }

    #[test]
    fn path_selectors_match_the_port_path_or_a_by_id_name() {
        let mut port = usb("/dev/ttyUSB0", 0x0403, 0x6015, Some("A50285BI"));
        let by_id = PathBuf::from("/dev/serial/by-id/usb-FTDI_A50285BI-if00-port0");
        port.by_id.push(by_id.clone());
        assert!(SerialDevice::path("/dev/ttyUSB0").matches(&port));
        assert!(SerialDevice::Path(by_id).matches(&port));
        assert!(!SerialDevice::path("/dev/ttyUSB1").matches(&port));
        assert!(!SerialDevice::path("/dev/serial/by-id/usb-other").matches(&port));
    }

    #[test]
    fn path_selectors_match_through_symlinks() {
        let dir = TempDir::new("path-match");
        let node = dir.file("ttyUSB7");
        let link = dir.path().join("by-path-link");
        std::os::unix::fs::symlink(&node, &link).unwrap();
        let port = other(node.to_str().unwrap(), PortKind::Unknown);
        // Not the port path and not a listed by-id name, but the same device node.
        assert!(SerialDevice::Path(link).matches(&port));
        let unrelated = dir.file("ttyUSB8");
        assert!(!SerialDevice::Path(unrelated).matches(&port));
    }

    #[test]
    fn resolve_takes_the_one_matching_port() {
        let ports = [
            other("/dev/ttyS0", PortKind::Unknown),
            usb("/dev/ttyUSB0", 0x10c4, 0xea60, Some("0001")),
            usb("/dev/ttyUSB3", 0x0403, 0x6015, Some("A50285BI")),
        ];
        assert_eq!(
            selector(0x0403, 0x6015, None).resolve(&ports).unwrap(),
            PathBuf::from("/dev/ttyUSB3")
        );
        assert_eq!(
            selector(0x0403, 0x6015, Some("A50285BI"))
                .resolve(&ports)
                .unwrap(),
            PathBuf::from("/dev/ttyUSB3")
        );
        // A path is taken as it is, present or not.
        assert_eq!(
            SerialDevice::path("/dev/ttyACM9").resolve(&[]).unwrap(),
            PathBuf::from("/dev/ttyACM9")
        );
    }

    #[test]
    fn resolve_without_a_match_lists_what_was_seen_and_where_to_look() {
        let wanted = selector(0x0403, 0x6015, Some("A50285BI"));
        let ports = [
            other("/dev/ttyS0", PortKind::Unknown),
            other("/dev/ttyS1", PortKind::Pci),
            usb("/dev/ttyUSB0", 0x10c4, 0xea60, Some("0001")),
            usb("/dev/ttyUSB1", 0x0403, 0x6015, Some("B00000XY")),
        ];
        let error = wanted.resolve(&ports).unwrap_err();
        assert!(
            matches!(&error, ResolveError::NotFound { seen, .. } if seen.len() == 4),
            "{error:?}"
        );
        assert_eq!(error.selector(), &wanted);
        assert_eq!(
            error.to_string(),
            "no serial device matches usb 0403:6015 serial A50285BI; USB serial ports present: \
             /dev/ttyUSB0 (usb 10c4:ea60 serial 0001), /dev/ttyUSB1 (usb 0403:6015 serial \
             B00000XY) (and 2 serial ports without a USB identity); run `mqtt-sn-gateway ports` \
             to see each port's VID:PID and serial number"
        );

        let error = wanted.resolve(&[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no serial device matches usb 0403:6015 serial A50285BI; no USB serial ports are \
             present (is the dongle plugged in?); run `mqtt-sn-gateway ports` to see each \
             port's VID:PID and serial number"
        );
    }

    #[test]
    fn resolve_with_several_matches_asks_for_the_serial_number() {
        let ports = [
            usb("/dev/ttyUSB0", 0x0403, 0x6015, Some("A50285BI")),
            usb("/dev/ttyUSB1", 0x10c4, 0xea60, None),
            usb("/dev/ttyUSB2", 0x0403, 0x6015, Some("B00000XY")),
        ];
        let error = selector(0x0403, 0x6015, None).resolve(&ports).unwrap_err();
        assert!(
            matches!(&error, ResolveError::Ambiguous { matching, .. } if matching.len() == 2),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "usb 0403:6015 is ambiguous: 2 serial ports match: /dev/ttyUSB0 (usb 0403:6015 \
             serial A50285BI), /dev/ttyUSB2 (usb 0403:6015 serial B00000XY); add the serial \
             number (VID:PID:SERIAL) to pick one, see `mqtt-sn-gateway ports`"
        );

        // Cheap clones sharing one serial number: only a path can tell them apart.
        let twins = [
            usb("/dev/ttyUSB0", 0x1a86, 0x7523, Some("0000")),
            usb("/dev/ttyUSB1", 0x1a86, 0x7523, Some("0000")),
        ];
        let message = selector(0x1a86, 0x7523, Some("0000"))
            .resolve(&twins)
            .unwrap_err()
            .to_string();
        assert!(message.contains("share the serial number"), "{message}");
        assert!(message.contains("/dev/ttyUSB1"), "{message}");
    }

    #[test]
    fn resolve_with_lists_only_for_a_usb_identity() {
        let path = SerialDevice::path("/dev/ttyUSB0")
            .resolve_with(|| panic!("a path needs no listing"))
            .unwrap();
        assert_eq!(path, PathBuf::from("/dev/ttyUSB0"));
        let wanted = selector(0x0403, 0x6015, None);
        let error = wanted
            .resolve_with(|| {
                Err(ListPortsError::NoSysfs {
                    dir: PathBuf::from(SYS_TTY_DIR),
                    error: io::Error::from(io::ErrorKind::NotFound),
                })
            })
            .unwrap_err();
        assert!(
            matches!(error, ResolveError::ListFailed { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "cannot look for serial device usb 0403:6015: cannot list serial ports: \
                 /sys/class/tty is not readable"
            ),
            "{message}"
        );
    }

    #[test]
    fn by_id_names_are_attached_to_the_ports_they_resolve_to() {
        let dir = TempDir::new("by-id");
        let usb0 = dir.file("ttyUSB0");
        let usb1 = dir.file("ttyUSB1");
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        // Relative, as udev makes them, and absolute.
        let a = by_id.join("usb-FTDI_FT231X_USB_UART_A50285BI-if00-port0");
        std::os::unix::fs::symlink("../ttyUSB0", &a).unwrap();
        let b = by_id.join("usb-1a86_USB_Serial-if00-port0");
        std::os::unix::fs::symlink(&usb1, &b).unwrap();
        let c = by_id.join("usb-FTDI_second_name_for_ttyUSB0");
        std::os::unix::fs::symlink(&usb0, &c).unwrap();
        // Dangling: the device it named is gone.
        std::os::unix::fs::symlink("../ttyUSB9", by_id.join("usb-gone-if00-port0")).unwrap();

        let mut ports = vec![
            other(usb0.to_str().unwrap(), PortKind::Unknown),
            other(usb1.to_str().unwrap(), PortKind::Unknown),
            other("/dev/nonexistent-tty", PortKind::Unknown),
        ];
        ports[2].by_id.push(PathBuf::from("stale"));
        set_by_id_names(&mut ports, &by_id);
        assert_eq!(ports[0].by_id, vec![a.clone(), c]);
        assert_eq!(ports[1].by_id, vec![b]);
        assert!(ports[2].by_id.is_empty(), "{:?}", ports[2]);
        // The by-id name selects the port it points to.
        assert!(SerialDevice::Path(a).matches(&ports[0]));

        // No by-id directory: no names, no error.
        set_by_id_names(&mut ports, &dir.path().join("missing"));
        assert!(ports.iter().all(|port| port.by_id.is_empty()));
    }

    #[test]
    fn by_id_names_resolve_to_ptys() {
        let dir = TempDir::new("by-id-pty");
        // /dev/ptmx is a real character device on every Linux system with ptys.
        let link = dir.path().join("usb-Fake_Dongle-if00-port0");
        std::os::unix::fs::symlink("/dev/ptmx", &link).unwrap();
        let mut ports = vec![other("/dev/ptmx", PortKind::Unknown)];
        set_by_id_names(&mut ports, dir.path());
        assert_eq!(ports[0].by_id, vec![link]);
    }

    #[test]
    fn found_ports_are_converted_sorted_deduplicated_and_given_their_by_id_names() {
        use tokio_serial::{SerialPortInfo, SerialPortType, UsbPortInfo};
        // Stand-ins for the device nodes, and a by-id folder pointing at two of them.
        let dir = TempDir::new("ports-from");
        let usb1 = dir.file("ttyUSB1");
        let acm0 = dir.file("ttyACM0");
        let s0 = dir.file("ttyS0");
        let rfcomm = dir.file("rfcomm0");
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        let ftdi = by_id.join("usb-FTDI_FT231X_USB_UART_A50285BI-if00-port0");
        std::os::unix::fs::symlink("../ttyUSB1", &ftdi).unwrap();
        let acm = by_id.join("usb-Arduino_Uno_85736323-if00");
        std::os::unix::fs::symlink(&acm0, &acm).unwrap();
        let found = |path: &Path, port_type| SerialPortInfo {
            port_name: path.to_str().unwrap().to_owned(),
            port_type,
        };
        let ftdi_usb = UsbPortInfo {
            vid: 0x0403,
            pid: 0x6015,
            serial_number: Some("A50285BI".to_owned()),
            manufacturer: Some("FTDI".to_owned()),
            product: Some("FT231X USB UART".to_owned()),
        };
        let arduino_usb = UsbPortInfo {
            vid: 0x2341,
            pid: 0x0043,
            serial_number: None,
            manufacturer: None,
            product: None,
        };
        // Out of order, and ttyUSB1 twice (as the library can report it).
        let ports = ports_from(
            vec![
                found(&usb1, SerialPortType::UsbPort(ftdi_usb.clone())),
                found(&s0, SerialPortType::PciPort),
                found(&rfcomm, SerialPortType::BluetoothPort),
                found(&acm0, SerialPortType::UsbPort(arduino_usb)),
                found(&usb1, SerialPortType::UsbPort(ftdi_usb)),
            ],
            &by_id,
        );
        let ftdi_info = UsbInfo {
            vid: 0x0403,
            pid: 0x6015,
            serial_number: Some("A50285BI".to_owned()),
            manufacturer: Some("FTDI".to_owned()),
            product: Some("FT231X USB UART".to_owned()),
        };
        let arduino_info = UsbInfo {
            vid: 0x2341,
            pid: 0x0043,
            serial_number: None,
            manufacturer: None,
            product: None,
        };
        let expected = vec![
            PortInfo {
                path: rfcomm,
                kind: PortKind::Bluetooth,
                by_id: vec![],
            },
            PortInfo {
                path: acm0,
                kind: PortKind::Usb(arduino_info),
                by_id: vec![acm],
            },
            PortInfo {
                path: s0,
                kind: PortKind::Pci,
                by_id: vec![],
            },
            PortInfo {
                path: usb1,
                kind: PortKind::Usb(ftdi_info),
                by_id: vec![ftdi.clone()],
            },
        ];
        assert_eq!(ports, expected);
        assert_eq!(
            ports[3].to_string(),
            format!(
                "{} (usb 0403:6015 serial A50285BI)",
                ports[3].path.display()
            )
        );
        // What `mqtt-sn-gateway ports` offers as a selector finds the same port back.
        let selector = ports[3].usb().unwrap().selector();
        assert_eq!(selector.resolve(&ports).unwrap(), ports[3].path);
        assert!(SerialDevice::Path(ftdi).matches(&ports[3]));
    }

    /// The machine's own ports: often none (a VM, a CI runner), so this shows only that
    /// listing works here; what the listing makes of ports is the test above.
    #[test]
    fn ports_of_this_machine_are_listed_sorted_without_error() {
        assert!(Path::new(SYS_TTY_DIR).is_dir(), "no sysfs on this machine");
        let ports = list_ports().unwrap();
        assert!(
            ports.windows(2).all(|pair| pair[0].path < pair[1].path),
            "{ports:?}"
        );
        for port in &ports {
            assert!(port.path.starts_with("/dev"), "{port:?}");
            for link in &port.by_id {
                assert!(link.starts_with(BY_ID_DIR), "{port:?}");
            }
        }
    }

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!("sn-ports-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        /// Creates an empty file standing in for a device node.
        fn file(&self, name: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, b"").unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
