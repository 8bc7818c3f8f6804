//! The radio's end of the serial line, for every framing: frames the datagrams motes send
//! for the gateway, and decodes what the gateway writes into datagrams for motes.
//!
//! COBS, KISS and raw framing are the same in both directions, so their framers serve as
//! they are; XBee frames differ by direction (see [`xbee_radio`](super::xbee_radio)).

use sn_config::SerialFraming;
use sn_transports::serial::framing::cobs::{self, CobsFramer};
use sn_transports::serial::framing::kiss::KissFramer;
use sn_transports::serial::framing::raw::RawFramer;
use sn_transports::serial::framing::xbee::{ApiMode, DeliveryStatus, XBeeAddress};
use sn_transports::serial::framing::{FrameError, Framer, Received};

use super::framing::RadioAddress;
use super::xbee_radio::{FromHost, XBeeRadio};

/// Where the gateway sent a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    /// To every mote (XBee 64-bit 0xFFFF, COBS node 0xFFFF). KISS has no broadcast address
    /// of its own: its port 0 carries replies and broadcasts alike to the line's one mote.
    Broadcast,
    /// To one radio address, which may be no mote's.
    Unicast(RadioAddress),
}

/// A datagram the gateway asked the radio to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Downlink {
    /// Where to.
    pub(super) to: Destination,
    /// The MQTT-SN datagram.
    pub(super) datagram: Vec<u8>,
    /// XBee: the frame id, 0 when the gateway wants no transmit status. Always 0 elsewhere.
    pub(super) frame_id: u8,
}

/// What the radio makes of a frame from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FromGateway {
    /// A datagram to send.
    Downlink(Downlink),
    /// A valid frame a radio does not take from its host; the reason is for the log.
    Unexpected(&'static str),
}

/// The radio's encoder and decoder, one variant per framing.
#[derive(Debug)]
pub(super) enum RadioCodec {
    /// XBee API mode 1 or 2.
    XBee(XBeeRadio),
    /// COBS + CRC-16.
    Cobs(CobsFramer),
    /// KISS.
    Kiss(KissFramer),
    /// Raw MQTT-SN.
    Raw(RawFramer),
}

impl RadioCodec {
    /// The codec of `framing` with the framer's `max_frame`, or the framer's refusal of it.
    pub(super) fn new(framing: SerialFraming, max_frame: usize) -> Result<Self, FrameError> {
        Ok(match framing {
            SerialFraming::XBee => RadioCodec::XBee(XBeeRadio::new(ApiMode::Escaped, max_frame)?),
            SerialFraming::XBeeApi1 => {
                RadioCodec::XBee(XBeeRadio::new(ApiMode::Unescaped, max_frame)?)
            }
            SerialFraming::Cobs => RadioCodec::Cobs(CobsFramer::new(max_frame)?),
            SerialFraming::Kiss => RadioCodec::Kiss(KissFramer::new(max_frame)?),
            SerialFraming::Raw => RadioCodec::Raw(RawFramer::new(max_frame)?),
        })
    }

    /// Appends bytes the gateway wrote; call [`next`](Self::next) until `None`.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        match self {
            RadioCodec::XBee(radio) => radio.push(bytes),
            RadioCodec::Cobs(framer) => Framer::push(framer, bytes),
            RadioCodec::Kiss(framer) => Framer::push(framer, bytes),
            RadioCodec::Raw(framer) => Framer::push(framer, bytes),
        }
    }

    /// The next frame from the gateway, an error for a damaged one, or `None` when the bytes
    /// pushed hold no further complete frame.
    pub(super) fn next(&mut self) -> Option<Result<FromGateway, FrameError>> {
        let downlink = |to, datagram| {
            FromGateway::Downlink(Downlink {
                to,
                datagram,
                frame_id: 0,
            })
        };
        Some(match self {
            RadioCodec::XBee(radio) => radio.next()?.map(|item| match item {
                FromHost::Transmit(request) => FromGateway::Downlink(Downlink {
                    to: if request.destination.long == XBeeAddress::BROADCAST.long {
                        Destination::Broadcast
                    } else {
                        Destination::Unicast(RadioAddress::XBee(request.destination))
                    },
                    datagram: request.data,
                    frame_id: request.frame_id,
                }),
                FromHost::Unexpected(what) => FromGateway::Unexpected(what),
            }),
            RadioCodec::Cobs(framer) => framer.next_datagram()?.map(|(node, datagram)| {
                let to = if node == cobs::BROADCAST {
                    Destination::Broadcast
                } else {
                    Destination::Unicast(RadioAddress::Node(node))
                };
                downlink(to, datagram)
            }),
            RadioCodec::Kiss(framer) => framer.next_event()?.map(|item| match item {
                // Port 0 reaches the line's one mote, whether the gateway meant a reply or a
                // broadcast; another port reaches nobody.
                Received::Datagram {
                    from: port,
                    datagram,
                } => downlink(Destination::Unicast(RadioAddress::Kiss(port)), datagram),
                Received::TransmitStatus(_) => {
                    FromGateway::Unexpected("transmit status on a KISS line")
                }
            }),
            RadioCodec::Raw(framer) => framer
                .next_datagram()?
                .map(|datagram| downlink(Destination::Unicast(RadioAddress::Raw), datagram)),
        })
    }

    /// Appends the frame that hands the gateway `datagram` from the mote at `from`, or
    /// refuses it (too large for one frame, an address of another framing) and leaves `out`
    /// as it was.
    pub(super) fn encode_uplink(
        &self,
        from: &RadioAddress,
        datagram: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        match (self, from) {
            (RadioCodec::XBee(radio), RadioAddress::XBee(source)) => {
                radio.receive_packet(*source, datagram, out)
            }
            (RadioCodec::Cobs(framer), RadioAddress::Node(node)) => {
                framer.encode(*node, datagram, out)
            }
            (RadioCodec::Kiss(framer), RadioAddress::Kiss(port)) => {
                framer.encode(*port, datagram, out)
            }
            (RadioCodec::Raw(framer), _) => framer.encode(datagram, out),
            _ => Err(FrameError::Unencodable {
                reason: "the mote's address belongs to another framing",
            }),
        }
    }

    /// Whether the radio answers transmit requests with a transmit status (XBee).
    pub(super) fn reports_delivery(&self) -> bool {
        matches!(self, RadioCodec::XBee(_))
    }

    /// XBee: appends the 0x8B frame for transmit request `frame_id`, sent to `to` (`None`
    /// for a broadcast or an unknown destination). Other framings append nothing.
    pub(super) fn encode_status(
        &self,
        frame_id: u8,
        to: Option<&RadioAddress>,
        delivery: DeliveryStatus,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let RadioCodec::XBee(radio) = self else {
            return Ok(());
        };
        let to = match to {
            Some(RadioAddress::XBee(address)) => Some(*address),
            _ => None,
        };
        radio.transmit_status(frame_id, to, delivery, out)
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

    use sn_transports::serial::framing::kiss::KissPort;
    use sn_transports::serial::framing::xbee::XBeeFramer;

    use super::*;

    /// A PINGREQ: the smallest MQTT-SN packet.
    const PING: [u8; 2] = [0x02, 0x16];

    /// Encodes with the gateway's framer, decodes with the codec.
    fn from_gateway<F: Framer>(
        gateway: &F,
        codec: &mut RadioCodec,
        to: &F::Address,
        frame_id: u8,
    ) -> Vec<Result<FromGateway, FrameError>> {
        let mut line = Vec::new();
        gateway
            .encode_tracked(to, &PING, frame_id, &mut line)
            .unwrap();
        codec.push(&line);
        std::iter::from_fn(|| codec.next()).collect()
    }

    /// Encodes with the codec, decodes with the gateway's framer.
    fn to_gateway<F: Framer>(
        gateway: &mut F,
        codec: &RadioCodec,
        from: &RadioAddress,
    ) -> Vec<Result<Received<F::Address>, FrameError>> {
        let mut line = Vec::new();
        codec.encode_uplink(from, &PING, &mut line).unwrap();
        gateway.push(&line);
        std::iter::from_fn(|| gateway.next_event()).collect()
    }

    fn downlink(to: Destination, frame_id: u8) -> Vec<Result<FromGateway, FrameError>> {
        vec![Ok(FromGateway::Downlink(Downlink {
            to,
            datagram: PING.to_vec(),
            frame_id,
        }))]
    }

    #[test]
    fn xbee_both_ways() {
        let mut codec = RadioCodec::new(SerialFraming::XBee, 98).unwrap();
        let mut gateway = XBeeFramer::new(ApiMode::Escaped, 98).unwrap();
        let mote = XBeeAddress::new(0x0013_A200_0000_0001, 1);
        assert_eq!(
            to_gateway(&mut gateway, &codec, &RadioAddress::XBee(mote)),
            [Ok(Received::Datagram {
                from: mote,
                datagram: PING.to_vec()
            })]
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &mote, 7),
            downlink(Destination::Unicast(RadioAddress::XBee(mote)), 7)
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &XBeeAddress::BROADCAST, 0),
            downlink(Destination::Broadcast, 0)
        );
        assert!(codec.reports_delivery());
    }

    #[test]
    fn cobs_kiss_and_raw_both_ways() {
        let mut codec = RadioCodec::new(SerialFraming::Cobs, 240).unwrap();
        let mut gateway = CobsFramer::new(240).unwrap();
        assert_eq!(
            to_gateway(&mut gateway, &codec, &RadioAddress::Node(3)),
            [Ok(Received::Datagram {
                from: 3,
                datagram: PING.to_vec()
            })]
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &3, 0),
            downlink(Destination::Unicast(RadioAddress::Node(3)), 0)
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &gateway.broadcast_address(), 0),
            downlink(Destination::Broadcast, 0)
        );
        assert!(!codec.reports_delivery());

        let mut codec = RadioCodec::new(SerialFraming::Kiss, 254).unwrap();
        // As the runtime sets it up for an RNode: data frames on port 0 only.
        let mut gateway = KissFramer::new(254).unwrap().with_ports(0x0001);
        let port = KissPort::ZERO;
        assert_eq!(
            to_gateway(&mut gateway, &codec, &RadioAddress::Kiss(port)),
            [Ok(Received::Datagram {
                from: port,
                datagram: PING.to_vec()
            })]
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &port, 0),
            downlink(Destination::Unicast(RadioAddress::Kiss(port)), 0)
        );
        // The gateway's broadcast address is port 0 as well: the same one mote.
        assert_eq!(gateway.broadcast_address(), port);
        let other = KissPort::new(2).unwrap();
        assert_eq!(
            from_gateway(&gateway, &mut codec, &other, 0),
            downlink(Destination::Unicast(RadioAddress::Kiss(other)), 0)
        );

        let mut codec = RadioCodec::new(SerialFraming::Raw, 1024).unwrap();
        let mut gateway = RawFramer::new(1024).unwrap();
        assert_eq!(
            to_gateway(&mut gateway, &codec, &RadioAddress::Raw),
            [Ok(Received::Datagram {
                from: (),
                datagram: PING.to_vec()
            })]
        );
        assert_eq!(
            from_gateway(&gateway, &mut codec, &(), 0),
            downlink(Destination::Unicast(RadioAddress::Raw), 0)
        );
    }

    #[test]
    fn refusals_leave_the_output_alone() {
        let codec = RadioCodec::new(SerialFraming::XBee, 16).unwrap();
        let mut out = vec![1];
        let mote = RadioAddress::XBee(XBeeAddress::new(1, 1));
        assert!(codec.encode_uplink(&mote, &[0; 5], &mut out).is_err());
        assert!(codec
            .encode_uplink(&RadioAddress::Node(1), &PING, &mut out)
            .is_err());
        assert_eq!(out, [1]);
        assert!(matches!(
            RadioCodec::new(SerialFraming::Cobs, 3),
            Err(FrameError::InvalidMaxFrame { .. })
        ));
    }
}
