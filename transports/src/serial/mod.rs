//! Serial-attached radios: a USB Zigbee/XBee stick, a LoRa modem, a directly attached mote.
//!
//! Two layers: [`framing`], pure I/O-free encoders and decoders that turn the byte stream of a
//! serial port into `(peer address, datagram)` and back; and [`link`], which opens the port,
//! reads and writes through a framing, and reopens the device after it was unplugged.

pub mod framing;
pub mod link;
