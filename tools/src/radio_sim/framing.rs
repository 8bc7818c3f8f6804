//! Which radio the simulator plays, and the radio addresses it gives its motes.

use std::fmt;

use sn_config::SerialFraming;
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

/// The names [`parse_framing`] accepts, for messages.
pub const FRAMING_NAMES: &str = "xbee, xbee-api1, lora (or cobs), kiss, raw";

/// Parses a framing name: the gateway configuration's names (`xbee`, `xbee-api2`,
/// `xbee-api1`, `cobs`, `lora`, `kiss`, `raw`), surrounding spaces ignored.
pub fn parse_framing(name: &str) -> Result<SerialFraming, UnknownFraming> {
    SerialFraming::from_name(name.trim()).ok_or_else(|| UnknownFraming(name.to_owned()))
}

/// A framing name that is not one of [`FRAMING_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing '{0}'; use one of {names}", names = FRAMING_NAMES)]
pub struct UnknownFraming(pub String);

/// The radio the simulator plays for each framing of the gateway's `[[serial]]`
/// configuration ([`SerialFraming`], whose [`name`](SerialFraming::name) is what to write as
/// `framing` there and whose [`default_max_frame`](SerialFraming::default_max_frame) both
/// ends use by default):
///
/// * `xbee`: an XBee Zigbee module in API mode 2 (escaped); `xbee-api1`: in API mode 1;
/// * `cobs` (also `lora`): a LoRa modem in transparent mode carrying COBS + CRC-16 frames
///   with a 16-bit node address;
/// * `kiss`: a KISS LoRa device (RNode). One mote, on port 0 like an RNode's radio: what the
///   gateway sends on port 0 (replies and broadcasts alike) reaches it; the last new sender
///   takes the line over, as with raw;
/// * `raw`: one mote wired to the line, raw MQTT-SN.
pub trait SimulatedRadio: Copy {
    /// The name with what it stands for, e.g. `xbee (API mode 2)`, for messages.
    fn description(self) -> &'static str;

    /// The most motes this framing can tell apart: XBee 65 531, COBS 65 534, KISS 1, raw 1.
    fn mote_capacity(self) -> usize;

    /// The default bound of the mote table: 1024, or the framing's capacity if smaller.
    fn default_max_motes(self) -> usize;

    /// The radio address of mote `index` (0 for the first mote to send), or `None` past
    /// [`mote_capacity`](Self::mote_capacity).
    ///
    /// XBee: 64-bit `0x0013A20000000001 + index`, 16-bit `0x0001 + index`; COBS: node
    /// `1 + index`; KISS: port 0; raw: the line itself.
    fn mote_address(self, index: usize) -> Option<RadioAddress>;
}

impl SimulatedRadio for SerialFraming {
    fn description(self) -> &'static str {
        match self {
            SerialFraming::XBee => "xbee (API mode 2)",
            SerialFraming::XBeeApi1 => "xbee-api1 (API mode 1)",
            SerialFraming::Cobs => "cobs (alias lora: COBS + CRC-16, 16-bit node addresses)",
            SerialFraming::Kiss => "kiss (one mote, on port 0)",
            SerialFraming::Raw => "raw (one mote on the line)",
        }
    }

    fn mote_capacity(self) -> usize {
        match self {
            SerialFraming::XBee | SerialFraming::XBeeApi1 => XBEE_CAPACITY,
            SerialFraming::Cobs => COBS_CAPACITY,
            SerialFraming::Kiss => KISS_CAPACITY,
            SerialFraming::Raw => 1,
        }
    }

    fn default_max_motes(self) -> usize {
        self.mote_capacity().min(DEFAULT_MAX_MOTES)
    }

    fn mote_address(self, index: usize) -> Option<RadioAddress> {
        if index >= self.mote_capacity() {
            return None;
        }
        Some(match self {
            SerialFraming::XBee | SerialFraming::XBeeApi1 => {
                let long = XBEE_FIRST_LONG.checked_add(u64::try_from(index).ok()?)?;
                let short = XBEE_FIRST_SHORT.checked_add(u16::try_from(index).ok()?)?;
                RadioAddress::XBee(XBeeAddress::new(long, short))
            }
            SerialFraming::Cobs => {
                RadioAddress::Node(COBS_FIRST_NODE.checked_add(u16::try_from(index).ok()?)?)
            }
            SerialFraming::Kiss => RadioAddress::Kiss(KissPort::new(KISS_PORT)?),
            SerialFraming::Raw => RadioAddress::Raw,
        })
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
            SerialFraming::XBee,
            SerialFraming::XBeeApi1,
            SerialFraming::Cobs,
            SerialFraming::Kiss,
            SerialFraming::Raw,
        ] {
            assert_eq!(parse_framing(framing.name()), Ok(framing));
        }
        assert_eq!(SerialFraming::from_name("lora"), Some(SerialFraming::Cobs));
        assert_eq!(
            SerialFraming::from_name("xbee-api2"),
            Some(SerialFraming::XBee)
        );
        let error = parse_framing("zigbee").unwrap_err();
        assert!(error.to_string().contains("xbee-api1"), "{error}");
    }

    #[test]
    fn addresses_follow_the_order_of_first_contact() {
        assert_eq!(
            SerialFraming::XBee.mote_address(0),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_0001,
                1
            )))
        );
        assert_eq!(
            SerialFraming::XBeeApi1.mote_address(2),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_0003,
                3
            )))
        );
        assert_eq!(
            SerialFraming::XBee.mote_address(XBEE_CAPACITY - 1),
            Some(RadioAddress::XBee(XBeeAddress::new(
                0x0013_A200_0000_FFFB,
                0xFFFB
            )))
        );
        assert_eq!(SerialFraming::XBee.mote_address(XBEE_CAPACITY), None);
        assert_eq!(
            SerialFraming::Cobs.mote_address(0),
            Some(RadioAddress::Node(1))
        );
        assert_eq!(
            SerialFraming::Cobs.mote_address(COBS_CAPACITY - 1),
            Some(RadioAddress::Node(0xFFFE))
        );
        assert_eq!(SerialFraming::Cobs.mote_address(COBS_CAPACITY), None);
        assert_eq!(
            SerialFraming::Kiss.mote_address(0),
            Some(RadioAddress::Kiss(KissPort::ZERO))
        );
        assert_eq!(SerialFraming::Kiss.mote_address(1), None);
        assert_eq!(SerialFraming::Kiss.default_max_motes(), 1);
        assert_eq!(SerialFraming::Raw.mote_address(0), Some(RadioAddress::Raw));
        assert_eq!(SerialFraming::Raw.mote_address(1), None);
        assert_eq!(SerialFraming::Raw.default_max_motes(), 1);
        assert_eq!(SerialFraming::XBee.default_max_motes(), 1024);
    }
}
