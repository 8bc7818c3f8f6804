//! Serial-attached radios: a USB Zigbee/XBee stick, a LoRa modem, a directly attached mote.
//!
//! So far only the [`framing`] layer exists: pure, I/O-free encoders and decoders that turn
//! the byte stream of a serial port into `(peer address, datagram)` and back. The serial
//! link that opens the port, reads, writes and survives replugging will build on it.

pub mod framing;
