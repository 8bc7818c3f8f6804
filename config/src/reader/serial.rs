//! Reading `[[serial]]` sections.

use toml::de::{DeTable, DeValue};

use super::{join, set, Kind, Reader, Value};
use crate::serial::{SerialConfig, SerialDevice, SerialFraming, DEFAULT_BAUD};

/// The options of each `[[serial]]`.
pub(crate) const SERIAL_KEYS: [&str; 7] = [
    "device",
    "usb",
    "serial_number",
    "baud",
    "framing",
    "max_frame",
    "discovery",
];

impl Reader<'_> {
    pub(super) fn serial_links(&mut self, value: &Value<'_>) -> Vec<SerialConfig> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.issue(
                    value.span(),
                    "serial",
                    "write [[serial]] with double brackets: each [[serial]] section is one \
                     serial link",
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(
                    value,
                    "serial",
                    Kind::Text,
                    "one or more [[serial]] sections",
                );
                return Vec::new();
            }
        };
        let mut links: Vec<SerialConfig> = Vec::new();
        // Devices seen so far: (device, field, line), so one device is not opened twice.
        let mut seen: Vec<(SerialDevice, String, usize)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("serial[{index}]");
            let DeValue::Table(table) = item.get_ref() else {
                let message = format!(
                    "expected a [[serial]] section or a table like {{ device = \"/dev/ttyUSB0\", \
                     framing = \"xbee\" }}, found {}",
                    self.describe(item)
                );
                self.issue(item.span(), &field, message);
                continue;
            };
            let Some(link) = self.serial_link(table, item, &field) else {
                continue;
            };
            let (line, _) = self.position(item.span().start);
            if let Some((_, other, other_line)) = seen.iter().find(|(d, _, _)| *d == link.device) {
                let message = format!(
                    "{} is already the device of {other} (line {other_line}); each device can \
                     carry one link",
                    link.device
                );
                self.issue(item.span(), &field, message);
                continue;
            }
            seen.push((link.device.clone(), field, line));
            links.push(link);
        }
        links
    }

    /// One `[[serial]]`; `None` when it is too broken to use (the issues are recorded).
    fn serial_link(
        &mut self,
        table: &DeTable<'_>,
        item: &Value<'_>,
        path: &str,
    ) -> Option<SerialConfig> {
        let mut device_path = None;
        let mut usb: Option<(u16, u16)> = None;
        let mut serial_number: Option<String> = None;
        let mut baud = DEFAULT_BAUD;
        let mut framing = None;
        let mut max_frame: Option<(usize, std::ops::Range<usize>)> = None;
        let mut discovery = true;
        let mut broken = false;
        for (key, v) in table.iter() {
            let name: &str = key.get_ref();
            let f = join(path, name);
            match name {
                "device" => match self.path(v, &f) {
                    Some(p) => device_path = Some((p, v.span())),
                    None => broken = true,
                },
                "usb" => {
                    let expected = "a USB vendor and product id like \"0403:6015\"";
                    match self.string(v, &f, expected).map(parse_usb_ids) {
                        Some(Ok(ids)) => usb = Some(ids),
                        Some(Err(message)) => {
                            self.issue(v.span(), &f, message);
                            broken = true;
                        }
                        None => broken = true,
                    }
                }
                "serial_number" => {
                    match self.string(v, &f, "the adapter's USB serial number in quotes") {
                        Some(text) if !text.trim().is_empty() => {
                            serial_number = Some(text.trim().to_string());
                        }
                        Some(_) => self.issue(
                            v.span(),
                            &f,
                            "the serial number is empty; write the one `mqtt-sn-gateway ports` \
                             shows, or remove the option",
                        ),
                        None => {}
                    }
                }
                "baud" => set(&mut baud, self.int(v, &f, 50, 4_000_000)),
                "framing" => {
                    let expected = SerialFraming::NAMES;
                    if let Some(text) = self.string(v, &f, expected) {
                        match SerialFraming::from_name(text.trim()) {
                            Some(found) => framing = Some(found),
                            None => {
                                self.issue(
                                    v.span(),
                                    &f,
                                    format!("{text:?} is not a framing; use {expected}"),
                                );
                                broken = true;
                            }
                        }
                    } else {
                        broken = true;
                    }
                }
                "max_frame" => {
                    if let Some(n) = self.int(v, &f, 2u32, 65_535) {
                        max_frame = Some((n as usize, v.span()));
                    }
                }
                "discovery" => set(&mut discovery, self.boolean(v, &f)),
                _ => self.unknown_key(key, path, "serial"),
            }
        }
        let device = match (device_path, usb) {
            (Some(_), Some(_)) => {
                self.issue(
                    item.span(),
                    path,
                    "both device and usb are set; name the device one way: device = \"/dev/...\" \
                     or usb = \"VID:PID\" (with serial_number)",
                );
                return None;
            }
            (None, None) => {
                if !broken {
                    self.issue(
                        item.span(),
                        &join(path, "device"),
                        "missing; write device = \"/dev/ttyUSB0\" (or a /dev/serial/by-id/... \
                         name), or usb = \"VID:PID\"; `mqtt-sn-gateway ports` lists what is \
                         plugged in",
                    );
                }
                return None;
            }
            (Some((p, span)), None) => {
                if serial_number.is_some() {
                    self.issue(
                        span,
                        &join(path, "serial_number"),
                        "serial_number goes with usb = \"VID:PID\", not with device; remove it \
                         or name the adapter by usb",
                    );
                }
                SerialDevice::Path(p)
            }
            (None, Some((vid, pid))) => SerialDevice::Usb {
                vid,
                pid,
                serial_number,
            },
        };
        let Some(framing) = framing else {
            if !broken {
                self.issue(
                    item.span(),
                    &join(path, "framing"),
                    format!(
                        "missing; write framing = one of {} (see docs/radios/ for which radio \
                         uses which)",
                        SerialFraming::NAMES
                    ),
                );
            }
            return None;
        };
        let max_frame = match max_frame {
            Some((n, span)) if n < framing.min_max_frame() => {
                self.issue(
                    span,
                    &join(path, "max_frame"),
                    format!(
                        "{n} is too small for framing \"{framing}\"; use at least {}",
                        framing.min_max_frame()
                    ),
                );
                return None;
            }
            Some((n, _)) => n,
            None => framing.default_max_frame(),
        };
        if broken {
            return None;
        }
        Some(SerialConfig {
            device,
            baud,
            framing,
            max_frame,
            discovery,
        })
    }
}

/// `"0403:6015"` → (0x0403, 0x6015).
fn parse_usb_ids(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "{text:?} is not a USB id pair; write the vendor and product id in hex as \
             \"VID:PID\", like \"0403:6015\" (`mqtt-sn-gateway ports` shows them), and the \
             serial number, if needed, in serial_number"
        )
    };
    let (vid, pid) = text.trim().split_once(':').ok_or_else(bad)?;
    let hex = |s: &str| {
        let s = s.trim();
        if s.is_empty() || s.len() > 4 {
            return None;
        }
        u16::from_str_radix(s, 16).ok()
    };
    match (hex(vid), hex(pid)) {
        (Some(vid), Some(pid)) => Ok((vid, pid)),
        _ => Err(bad()),
    }
}
