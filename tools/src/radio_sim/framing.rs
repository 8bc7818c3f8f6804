//! Which radio the simulator plays, and the radio addresses it gives its motes.

use std::fmt;
use std::str::FromStr;

use sn_transports::serial::framing::kiss::KissPort;
use sn_transports::serial::framing::xbee::XBeeAddress;

/// The 64-bit address of the first simulated XBee mote; mote `n` has this plus `n`. The
/// prefix 0013A200 is Digi's, so the addresses look like real ones in logs.
pub const XBEE_FIRST_LONG: u64 = 0x0013_A200_0000_0001;
/// The 16-bit network address of the first simulated XBee mote; mote `n` has this plus `n`.
pub const XBEE_FIRST_SHORT: u16 = 0x0001;
/// The node address of the first simulated COBS mote; mote `n` has this plus `n`.
pub const COBS_FIRST_NODE: u16 = 1;
/// The KISS port the simulated mote is on: 0, the port of an RNode's one radio and the only
/// one the gateway takes data frames from (docs/radios/rnode-kiss.md).
pub const KISS_PORT: u8 = 0;

/// The most motes an XBee simulation can address: 16-bit addresses 0x0001 to 0xFFFB
/// (0xFFFC to 0xFFFF are broadcast and "unknown" addresses).
const XBEE_CAPACITY: usize = 0xFFFB;
/// The most motes a COBS simulation can address: nodes 1 to 0xFFFE (0xFFFF is broadcast).
const COBS_CAPACITY: usize = 0xFFFE;
/// The most motes on a simulated KISS device: one, on port 0. KISS has no addresses (every
/// LoRa packet reaches every listener), so like raw the line carries one mote; several motes
/// on one channel would need MQTT-SN forwarder encapsulation.
const KISS_CAPACITY: usize = 1;
/// The default bound of the mote table where the framing allows more.
const DEFAULT_MAX_MOTES: usize = 1024;

/// The radio the simulator plays: the framing on its serial line, as named in the
/// gateway's `[[serial]]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RadioFraming {
    /// An XBee Zigbee module in API mode 2 (escaped): `xbee`.
    XBee,
    /// An XBee Zigbee module in API mode 1 (unescaped): `xbee-api1`.
    XBeeApi1,
    /// A LoRa modem in transparent mode carrying COBS + CRC-16 frames with a 16-bit node
    /// address: `cobs`, also accepted as `lora`.
    Cobs,
    /// A KISS LoRa device (RNode): `kiss`. One mote, on port 0 like an RNode's radio: what
    /// the gateway sends on port 0 (replies and broadcasts alike) reaches it; the last new
    /// sender takes the line over, as with raw.
    Kiss,
    /// One mote wired to the line, raw MQTT-SN: `raw`.
    Raw,
}

impl RadioFraming {
    /// The names [`from_name`](Self::from_name) accepts, for messages.
    pub const NAMES: &'static str = "xbee, xbee-api1, lora (or cobs), kiss, raw";

    /// Parses a framing name: the gateway configuration's names (`xbee`, `xbee-api2`,
    /// `xbee-api1`, `cobs`, `lora`, `kiss`, `raw`).
    pub fn from_name(name: &str) -> Option<RadioFraming> {
        Some(match name.trim() {
            "xbee" | "xbee-api2" => RadioFraming::XBee,
            "xbee-api1" => RadioFraming::XBeeApi1,
            "cobs" | "lora" => RadioFraming::Cobs,
            "kiss" => RadioFraming::Kiss,
            "raw" => RadioFraming::Raw,
            _ => return None,
        })
    }

    /// The name to write as `framing` in the gateway's `[[serial]]` section.
    pub fn name(self) -> &'static str {
        match self {
            RadioFraming::XBee => "xbee",
            RadioFraming::XBeeApi1 => "xbee-api1",
            RadioFraming::Cobs => "cobs",
            RadioFraming::Kiss => "kiss",
            RadioFraming::Raw => "raw",
        }
    }

    /// The name with what it stands for, e.g. `xbee (API mode 2)`, for messages.
    pub fn description(self) -> &'static str {
        match self {
            RadioFraming::XBee => "xbee (API mode 2)",
            RadioFraming::XBeeApi1 => "xbee-api1 (API mode 1)",
            RadioFraming::Cobs => "cobs (alias lora: COBS + CRC-16, 16-bit node addresses)",
            RadioFraming::Kiss => "kiss (one mote, on port 0)",
            RadioFraming::Raw => "raw (one mote on the line)",
        }
    }

    /// The `max_frame` the gateway uses when its configuration does not set one, so that
    /// both ends agree by default: XBee 98, COBS 240, KISS 254, raw 1024.
    pub fn default_max_frame(self) -> usize {
        match self {
            RadioFraming::XBee | RadioFraming::XBeeApi1 => 98,
            RadioFraming::Cobs => 240,
            RadioFraming::Kiss => 254,
            RadioFraming::Raw => 1024,
        }
    }

    /// The most motes this framing can tell apart: XBee 65 531, COBS 65 534, KISS 1, raw 1.
    pub fn mote_capacity(self) -> usize {
        match self {
            RadioFraming::XBee | RadioFraming::XBeeApi1 => XBEE_CAPACITY,
            RadioFraming::Cobs => COBS_CAPACITY,
            RadioFraming::Kiss => KISS_CAPACITY,
            RadioFraming::Raw => 1,
        }
    }

    /// The default bound of the mote table: 1024, or the framing's capacity if smaller.
    pub fn default_max_motes(self) -> usize {
        self.mote_capacity().min(DEFAULT_MAX_MOTES)
    }

    /// The radio address of mote `index` (0 for the first mote to send), or `None` past
    /// [`mote_capacity`](Self::mote_capacity).
    ///
    /// XBee: 64-bit `0x0013A20000000001 + index`, 16-bit `0x0001 + index`; COBS: node
    /// `1 + index`; KISS: port 0; raw: the line itself.
    pub fn mote_address(self, index: usize) -> Option<RadioAddress> {
        if index >= self.mote_capacity() {
            return None;
        }
        Some(match self {
            RadioFraming::XBee | RadioFraming::XBeeApi1 => {
                let long = XBEE_FIRST_LONG.checked_add(u64::try_from(index).ok()?)?;
                let short = XBEE_FIRST_SHORT.checked_add(u16::try_from(index).ok()?)?;
                RadioAddress::XBee(XBeeAddress::new(long, short))
            }
            RadioFraming::Cobs => {
                RadioAddress::Node(COBS_FIRST_NODE.checked_add(u16::try_from(index).ok()?)?)
            }
            RadioFraming::Kiss => RadioAddress::Kiss(KissPort::new(KISS_PORT)?),
            RadioFraming::Raw => RadioAddress::Raw,
        })
    }
}

impl fmt::Display for RadioFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A framing name that is not one of [`RadioFraming::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing '{0}'; use one of {names}", names = RadioFraming::NAMES)]
pub struct UnknownFraming(pub String);

impl FromStr for RadioFraming {
    type Err = UnknownFraming;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RadioFraming::from_name(s).ok_or_else(|| UnknownFraming(s.to_owned()))
    }
}

/// A simulated mote's address on the radio, in the form the gateway's framer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RadioAddress {
    /// XBee: the 64-bit and 16-bit address (`SerialLink<XBeeFramer>` peers).
    XBee(XBeeAddress),
    /// COBS: the 16-bit node address (`SerialLink<CobsFramer>` peers).
    Node(u16),
    /// KISS: the port (`SerialLink<KissFramer>` peers), 0 for the simulated mote.
    Kiss(KissPort),
    /// Raw: no address, one mote per line (`SerialLink<RawFramer>` peers are `()`).
    Raw,
}

impl fmt::Display for RadioAddress {
    /// `0013a20000000001/0001`, `node 1`, `kiss port 0`, `raw line`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RadioAddress::XBee(address) => write!(f, "{address}"),
            RadioAddress::Node(node) => write!(f, "node {node}"),
            RadioAddress::Kiss(port) => write!(f, "kiss port {}", port.get()),
            RadioAddress::Raw => f.write_str("raw line"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for framing in [
            RadioFraming::XBee,
            RadioFraming::XBeeApi1,
            RadioFraming::Cobs,
            RadioFraming::Kiss,
            RadioFraming::Raw,
        ] {
            assert_eq!(framing.name().parse::<RadioFraming>(), Ok(framing));
        }
        assert_eq!(RadioFraming::from_name("lora"), Some(RadioFraming::Cobs));
        assert_eq!(
            RadioFraming::from_name("xbee-api2"),
            Some(RadioFraming::XBee)
        );
        let error = "zigbee".parse::<RadioFraming>().unwrap_err();
        assert!(error.to_string().contains("xbee-api1"), "{error}");
    }

    #[test]
    fn addresses_follow_the_order_of_first_contact() {
        assert_eq!(
            RadioFraming::XBee.mote_address(0),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_0001,
                1
            )))
        );
        assert_eq!(
            RadioFraming::XBeeApi1.mote_address(2),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_0003,
                3
            )))
        );
        assert_eq!(
            RadioFraming::XBee.mote_address(XBEE_CAPACITY - 1),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_FFFB,
                0xFFFB
            )))
        );
        assert_eq!(RadioFraming::XBee.mote_address(XBEE_CAPACITY), None);
        assert_eq!(
            RadioFraming::Cobs.mote_address(0),
            Some(RadioAddress::Node(1))
        );
        assert_eq!(
            RadioFraming::Cobs.mote_address(COBS_CAPACITY - 1),
            Some(RadioAddress::Node(0xFFFE))
        );
        assert_eq!(RadioFraming::Cobs.mote_address(COBS_CAPACITY), None);
        assert_eq!(
            RadioFraming::Kiss.mote_address(0),
            Some(RadioAddress::Kiss(KissPort::ZERO))
        );
        assert_eq!(RadioFraming::Kiss.mote_address(1), None);
        assert_eq!(RadioFraming::Kiss.default_max_motes(), 1);
        assert_eq!(RadioFraming::Raw.mote_address(0), Some(RadioAddress::Raw));
        assert_eq!(RadioFraming::Raw.mote_address(1), None);
        assert_eq!(RadioFraming::Raw.default_max_motes(), 1);
        assert_eq!(RadioFraming::XBee.default_max_motes(), 1024);
    }
}
