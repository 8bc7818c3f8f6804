//! `mqtt-sn-gateway ports`: the serial ports of this machine, and which `[[serial]]` link of
//! the configuration would take each, so a user can tell which dongle is which and copy a
//! stable identity into the file.

use std::fmt::Write as _;

use sn_config::{SerialConfig, SerialDevice};
use sn_transports::serial::{DeviceLookup, PortInfo, PortKind};

/// The report: one block per port (path, kind, VID:PID, serial number, product, by-id
/// names, the link that would take it), then the configured links that match no port. A
/// link named by a path that `exists` but is no port of the list (a built-in UART the
/// system lists as no USB adapter, a pty, a udev symlink) is reported as there: the gateway
/// opens it. Only a path that does not exist, or a USB identity no adapter has, is missing.
pub fn report(
    ports: &[PortInfo],
    links: &[SerialConfig],
    exists: impl Fn(&std::path::Path) -> bool,
) -> String {
    let mut out = String::new();
    if ports.is_empty() {
        out.push_str(
            "no serial ports found; plug the radio in, then check `dmesg | tail` for the \
             device it became (a missing driver shows there)\n",
        );
    }
    for port in ports {
        let _ = writeln!(out, "{}", port.path.display());
        match &port.kind {
            PortKind::Usb(usb) => {
                let _ = writeln!(out, "  usb            {:04x}:{:04x}", usb.vid, usb.pid);
                let _ = writeln!(
                    out,
                    "  serial number  {}",
                    usb.serial_number.as_deref().unwrap_or("(none reported)")
                );
                if let Some(manufacturer) = &usb.manufacturer {
                    let _ = writeln!(out, "  manufacturer   {manufacturer}");
                }
                if let Some(product) = &usb.product {
                    let _ = writeln!(out, "  product        {product}");
                }
            }
            other => {
                let _ = writeln!(out, "  kind           {other}");
            }
        }
        for name in &port.by_id {
            let _ = writeln!(out, "  by-id          {}", name.display());
        }
        let takers: Vec<String> = links
            .iter()
            .enumerate()
            .filter(|(_, link)| link.device.matches(port))
            .map(|(index, link)| format!("serial[{index}] ({}, {})", link.device, link.framing))
            .collect();
        if takers.is_empty() {
            let _ = writeln!(out, "  taken by       no configured link");
            if let PortKind::Usb(usb) = &port.kind {
                let mut hint = format!("usb = \"{:04x}:{:04x}\"", usb.vid, usb.pid);
                if let Some(serial) = &usb.serial_number {
                    let _ = write!(hint, ", serial_number = \"{serial}\"");
                }
                let _ = writeln!(out, "  to use it      {hint}");
            }
        } else {
            let _ = writeln!(out, "  taken by       {}", takers.join(", "));
        }
    }
    for (index, link) in links.iter().enumerate() {
        if ports.iter().any(|port| link.device.matches(port)) {
            continue;
        }
        match &link.device {
            SerialDevice::Path(path) if exists(path) => {
                let _ = writeln!(
                    out,
                    "serial[{index}] ({}, {}): {} exists, not a USB serial adapter (e.g. a \
                     built-in UART or a pty); the gateway opens it",
                    link.device,
                    link.framing,
                    path.display()
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "serial[{index}] ({}, {}): no such port plugged in now",
                    link.device, link.framing
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use sn_config::SerialFraming;
    use sn_transports::serial::UsbInfo;

    use super::*;

    fn ftdi(path: &str, serial: &str) -> PortInfo {
        PortInfo {
            path: PathBuf::from(path),
            kind: PortKind::Usb(UsbInfo {
                vid: 0x0403,
                pid: 0x6015,
                serial_number: Some(serial.into()),
                manufacturer: Some("FTDI".into()),
                product: Some("FT231X USB UART".into()),
            }),
            by_id: vec![PathBuf::from(format!(
                "/dev/serial/by-id/usb-FTDI_FT231X_USB_UART_{serial}-if00-port0"
            ))],
        }
    }

    fn link(device: SerialDevice, framing: SerialFraming) -> SerialConfig {
        SerialConfig {
            device,
            baud: 9600,
            framing,
            max_frame: framing.default_max_frame(),
            discovery: true,
        }
    }

    #[test]
    fn names_the_link_that_takes_each_port_and_how_to_take_the_others() {
        let ports = [
            ftdi("/dev/ttyUSB0", "D30DABCD"),
            ftdi("/dev/ttyUSB1", "A50285BI"),
        ];
        let links = [
            link(
                SerialDevice::Usb {
                    vid: 0x0403,
                    pid: 0x6015,
                    serial_number: Some("D30DABCD".into()),
                },
                SerialFraming::XBee,
            ),
            link(SerialDevice::path("/dev/lora0"), SerialFraming::Cobs),
        ];
        let text = report(&ports, &links, |_| false);
        assert!(
            text.contains("/dev/ttyUSB0\n  usb            0403:6015\n  serial number  D30DABCD\n"),
            "{text}"
        );
        assert!(
            text.contains("  product        FT231X USB UART\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  by-id          /dev/serial/by-id/usb-FTDI_FT231X_USB_UART_D30DABCD-if00-port0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  taken by       serial[0] (usb 0403:6015 serial D30DABCD, xbee)\n"),
            "{text}"
        );
        assert!(text.contains("/dev/ttyUSB1\n"), "{text}");
        assert!(text.contains("  taken by       no configured link\n  to use it      usb = \"0403:6015\", serial_number = \"A50285BI\"\n"), "{text}");
        assert!(
            text.contains("serial[1] (/dev/lora0, cobs): no such port plugged in now\n"),
            "{text}"
        );
    }

    #[test]
    fn a_path_link_takes_its_port_by_by_id_name() {
        let ports = [ftdi("/dev/ttyUSB0", "D30DABCD")];
        let links = [link(
            SerialDevice::path("/dev/serial/by-id/usb-FTDI_FT231X_USB_UART_D30DABCD-if00-port0"),
            SerialFraming::XBee,
        )];
        let text = report(&ports, &links, |_| false);
        assert!(text.contains("taken by       serial[0]"), "{text}");
        assert!(!text.contains("no such port"), "{text}");
    }

    #[test]
    fn a_path_that_exists_but_is_no_usb_adapter_is_there_and_only_a_missing_one_is_missing() {
        let links = [
            link(SerialDevice::path("/dev/ttyAMA0"), SerialFraming::Kiss),
            link(SerialDevice::path("/dev/ttyUSB7"), SerialFraming::Cobs),
        ];
        let text = report(&[], &links, |p| p == std::path::Path::new("/dev/ttyAMA0"));
        assert!(
            text.contains(
                "serial[0] (/dev/ttyAMA0, kiss): /dev/ttyAMA0 exists, not a USB serial adapter \
                 (e.g. a built-in UART or a pty); the gateway opens it\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("serial[1] (/dev/ttyUSB7, cobs): no such port plugged in now\n"),
            "{text}"
        );
    }

    #[test]
    fn no_ports_says_what_to_check() {
        let text = report(&[], &[], |_| false);
        assert!(text.starts_with("no serial ports found"), "{text}");
    }
}
