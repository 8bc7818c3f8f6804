//! Serial-attached radios: a USB Zigbee/XBee stick, a LoRa modem, a directly attached mote.
//!
//! Three parts: [`framing`], pure I/O-free encoders and decoders that turn the byte stream of a
//! serial port into `(peer address, datagram)` and back; [`link`], which opens the port,
//! reads and writes through a framing, and finds the device again after it was unplugged;
//! and [`ports`], which lists the serial ports present and picks a device by a stable
//! identity (a `/dev/serial/by-id` name, or USB VID:PID and serial number).

pub mod framing;
pub mod link;
pub mod ports;

pub use ports::{
    list_ports, DeviceLookup, ListPortsError, PortInfo, PortKind, ResolveError, UsbInfo,
};
