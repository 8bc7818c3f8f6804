//! `[[serial]]`: devices by path or USB identity, framings, limits, and the messages for
//! mistakes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;

use common::{issues, ok};
use sn_config::{SerialConfig, SerialDevice, SerialFraming};

#[test]
fn no_serial_link_by_default() {
    assert!(ok("").serial.is_empty());
}

#[test]
fn a_device_path_with_defaults() {
    let c = ok("[[serial]]\ndevice = \"/dev/xbee0\"\nframing = \"xbee\"\n");
    assert_eq!(
        c.serial,
        vec![SerialConfig {
            device: SerialDevice::Path(PathBuf::from("/dev/xbee0")),
            baud: 9600,
            framing: SerialFraming::XBee,
            max_frame: 98,
            discovery: true,
        }]
    );
    // UDP links are unaffected.
    assert_eq!(c.udp.len(), 1);
}

#[test]
fn a_usb_identity_with_serial_number_and_every_option() {
    let c = ok(r#"
[[serial]]
usb = "10C4:ea60"
serial_number = " 0001 "
baud = 115200
framing = "kiss"
max_frame = 64
discovery = false
"#);
    assert_eq!(
        c.serial[0],
        SerialConfig {
            device: SerialDevice::Usb {
                vid: 0x10c4,
                pid: 0xea60,
                serial_number: Some("0001".into()),
            },
            baud: 115_200,
            framing: SerialFraming::Kiss,
            max_frame: 64,
            discovery: false,
        }
    );
    assert_eq!(c.serial[0].device.to_string(), "usb 10c4:ea60 serial 0001");
}

#[test]
fn every_framing_name_and_its_default_size() {
    for (name, framing, max) in [
        ("xbee", SerialFraming::XBee, 98),
        ("xbee-api1", SerialFraming::XBeeApi1, 98),
        ("cobs", SerialFraming::Cobs, 240),
        ("lora", SerialFraming::Cobs, 240),
        ("kiss", SerialFraming::Kiss, 254),
        ("raw", SerialFraming::Raw, 1024),
    ] {
        let c = ok(&format!(
            "[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"{name}\"\n"
        ));
        assert_eq!(c.serial[0].framing, framing, "{name}");
        assert_eq!(c.serial[0].max_frame, max, "{name}");
    }
}

#[test]
fn several_links() {
    let c = ok(r#"
[[serial]]
device = "/dev/xbee0"
framing = "xbee"
[[serial]]
usb = "1a86:7523"
framing = "lora"
"#);
    assert_eq!(c.serial.len(), 2);
}

#[test]
fn missing_device_says_how_to_name_one() {
    let all = issues("[[serial]]\nframing = \"xbee\"\n");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].field, "serial[0].device");
    assert!(
        all[0].message.contains("device = \"/dev/ttyUSB0\""),
        "{}",
        all[0].message
    );
    assert!(
        all[0].message.contains("mqtt-sn-gateway ports"),
        "{}",
        all[0].message
    );
}

#[test]
fn missing_framing_lists_the_framings() {
    let all = issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\n");
    assert_eq!(all[0].field, "serial[0].framing");
    assert!(all[0].message.contains("\"xbee\""), "{}", all[0].message);
    assert!(
        all[0].message.contains("docs/radios/"),
        "{}",
        all[0].message
    );
}

#[test]
fn unknown_framing_names_the_choices() {
    let all = issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"zigbee\"\n");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].field, "serial[0].framing");
    assert_eq!(all[0].line, Some(3));
    assert!(all[0]
        .message
        .starts_with("\"zigbee\" is not a framing; use \"xbee\""));
}

#[test]
fn both_device_and_usb_is_refused() {
    let all =
        issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\nusb = \"0403:6015\"\nframing = \"xbee\"\n");
    assert_eq!(all.len(), 1);
    assert!(
        all[0].message.contains("both device and usb"),
        "{}",
        all[0].message
    );
}

#[test]
fn bad_usb_ids_show_the_form() {
    for bad in ["0403", "0403:", "xyz:6015", "12345:1", "0403:6015:ABC"] {
        let all = issues(&format!(
            "[[serial]]\nusb = \"{bad}\"\nframing = \"xbee\"\n"
        ));
        assert_eq!(all.len(), 1, "{bad}: {all:?}");
        assert_eq!(all[0].field, "serial[0].usb");
        assert!(all[0].message.contains("\"VID:PID\""), "{}", all[0].message);
    }
}

#[test]
fn serial_number_without_usb_is_refused() {
    let all = issues(
        "[[serial]]\ndevice = \"/dev/ttyUSB0\"\nserial_number = \"A1\"\nframing = \"xbee\"\n",
    );
    assert_eq!(all[0].field, "serial[0].serial_number");
}

#[test]
fn max_frame_below_the_framing_header_is_refused() {
    let all = issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"xbee\"\nmax_frame = 10\n");
    assert_eq!(all[0].field, "serial[0].max_frame");
    assert!(all[0].message.contains("at least 16"), "{}", all[0].message);
    let all =
        issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"raw\"\nmax_frame = 70000\n");
    assert!(
        all[0].message.contains("out of range"),
        "{}",
        all[0].message
    );
}

#[test]
fn the_same_device_twice_is_refused() {
    let all = issues(
        "[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"xbee\"\n\
         [[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"cobs\"\n",
    );
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].field, "serial[1]");
    assert!(
        all[0].message.contains("serial[0] (line"),
        "{}",
        all[0].message
    );
}

#[test]
fn single_brackets_are_explained() {
    let all = issues("[serial]\ndevice = \"/dev/ttyUSB0\"\nframing = \"xbee\"\n");
    assert!(all[0].message.contains("[[serial]] with double brackets"));
}

#[test]
fn unknown_option_suggests_the_right_one() {
    let all = issues("[[serial]]\ndevice = \"/dev/ttyUSB0\"\nframing = \"xbee\"\nbauds = 9600\n");
    assert_eq!(all[0].field, "serial[0].bauds");
    assert!(
        all[0].message.contains("did you mean \"baud\"?"),
        "{}",
        all[0].message
    );
}
