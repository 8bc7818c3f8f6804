//! The module side of XBee API frames: what a real XBee hands its host (0x90 Receive Packet,
//! 0x8B Transmit Status) and what it takes from it (0x10 Transmit Request).
//!
//! The frames themselves are the gateway framer's ([`XBeeFramer`] decodes every type and
//! encodes any [`Frame`]); this module only picks the fields a simulated module fills in.

use sn_transports::serial::framing::xbee::{
    ApiMode, DeliveryStatus, Frame, ReceivePacket, TransmitRequest, TransmitStatus, XBeeAddress,
    XBeeFramer,
};
use sn_transports::serial::framing::FrameError;

/// Receive options of a 0x90 frame: the packet was acknowledged (a unicast to the module).
const RECEIVE_ACKNOWLEDGED: u8 = 0x01;
/// The 16-bit address a transmit status reports for a broadcast.
const STATUS_SHORT_BROADCAST: u16 = 0xFFFE;
/// The 16-bit address a transmit status reports when the destination was not found.
const STATUS_SHORT_UNKNOWN: u16 = 0xFFFD;
/// Delivery status 0x24: address not found.
pub const ADDRESS_NOT_FOUND: DeliveryStatus = DeliveryStatus(0x24);
/// Delivery status 0x21: network ACK failure, what a module reports when the mote does not
/// answer (asleep too long, out of range). The default for a mote made to fail.
pub const NETWORK_ACK_FAILURE: DeliveryStatus = DeliveryStatus(0x21);

/// What the simulated module makes of a frame from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FromHost {
    /// A transmit request: RF data to send.
    Transmit(TransmitRequest),
    /// A frame a module does not take from its host (0x90, 0x8B): logged and counted.
    Unexpected(&'static str),
}

/// The simulated XBee module's end of the serial line.
#[derive(Debug)]
pub(super) struct XBeeRadio {
    framer: XBeeFramer,
}

impl XBeeRadio {
    /// A module in `mode` whose frames carry at most `max_frame` bytes of frame data.
    pub(super) fn new(mode: ApiMode, max_frame: usize) -> Result<Self, FrameError> {
        Ok(XBeeRadio {
            framer: XBeeFramer::new(mode, max_frame)?,
        })
    }

    /// Appends bytes the host wrote.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The next frame from the host, an error for a damaged one, or `None`. Frame types the
    /// framer does not know (AT commands) are skipped by it.
    pub(super) fn next(&mut self) -> Option<Result<FromHost, FrameError>> {
        Some(self.framer.next_frame()?.map(|frame| match frame {
            Frame::TransmitRequest(request) => FromHost::Transmit(request),
            Frame::Receive(_) => FromHost::Unexpected("receive packet (0x90) from the host"),
            Frame::TransmitStatus(_) => {
                FromHost::Unexpected("transmit status (0x8B) from the host")
            }
        }))
    }

    /// Appends the 0x90 frame that hands the host `data` from `source`.
    pub(super) fn receive_packet(
        &self,
        source: XBeeAddress,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let frame = Frame::Receive(ReceivePacket {
            source,
            options: RECEIVE_ACKNOWLEDGED,
            data: data.to_vec(),
        });
        self.framer.encode_frame(&frame, out)
    }

    /// Appends the 0x8B frame reporting on the transmit request `frame_id`.
    ///
    /// `to` is the mote it went to (`None` for a broadcast or an unknown destination, told
    /// apart by `delivery`).
    pub(super) fn transmit_status(
        &self,
        frame_id: u8,
        to: Option<XBeeAddress>,
        delivery: DeliveryStatus,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let short = match to {
            Some(address) => address.short,
            None if delivery == ADDRESS_NOT_FOUND => STATUS_SHORT_UNKNOWN,
            None => STATUS_SHORT_BROADCAST,
        };
        let frame = Frame::TransmitStatus(TransmitStatus {
            frame_id,
            short,
            retries: 0,
            delivery,
            discovery: 0,
        });
        self.framer.encode_frame(&frame, out)
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

    use sn_transports::serial::framing::{Framer, Received};

    use super::*;

    #[test]
    fn frames_the_gateway_framer_understands() {
        for mode in [ApiMode::Escaped, ApiMode::Unescaped] {
            let radio = XBeeRadio::new(mode, 98).unwrap();
            let mote = XBeeAddress::new(0x0013_A200_0000_0001, 0x0001);
            let mut line = Vec::new();
            radio
                .receive_packet(mote, &[0x03, 0x0C, 0x7E], &mut line)
                .unwrap();
            radio
                .transmit_status(9, Some(mote), DeliveryStatus::SUCCESS, &mut line)
                .unwrap();
            radio
                .transmit_status(10, None, ADDRESS_NOT_FOUND, &mut line)
                .unwrap();
            let mut gateway = XBeeFramer::new(mode, 98).unwrap();
            Framer::push(&mut gateway, &line);
            let got: Vec<_> = std::iter::from_fn(|| gateway.next_event()).collect();
            assert_eq!(
                got,
                [
                    Ok(Received::Datagram {
                        from: mote,
                        datagram: vec![0x03, 0x0C, 0x7E]
                    }),
                    Ok(Received::TransmitStatus(TransmitStatus {
                        frame_id: 9,
                        short: 1,
                        retries: 0,
                        delivery: DeliveryStatus::SUCCESS,
                        discovery: 0
                    })),
                    Ok(Received::TransmitStatus(TransmitStatus {
                        frame_id: 10,
                        short: 0xFFFD,
                        retries: 0,
                        delivery: ADDRESS_NOT_FOUND,
                        discovery: 0
                    })),
                ],
                "{mode:?}"
            );
        }
    }

    #[test]
    fn takes_transmit_requests_and_flags_other_frames() {
        let gateway = XBeeFramer::new(ApiMode::Escaped, 98).unwrap();
        let mote = XBeeAddress::new(0x0013_A200_0000_0001, 0x0001);
        let mut line = Vec::new();
        gateway
            .encode_transmit(5, &mote, 0, 0, &[0x02, 0x17], &mut line)
            .unwrap();
        gateway
            .encode_frame(
                &Frame::Receive(ReceivePacket {
                    source: mote,
                    options: 0,
                    data: vec![2, 0x17],
                }),
                &mut line,
            )
            .unwrap();
        let mut radio = XBeeRadio::new(ApiMode::Escaped, 98).unwrap();
        radio.push(&line);
        let Some(Ok(FromHost::Transmit(request))) = radio.next() else {
            panic!("no transmit request");
        };
        assert_eq!((request.frame_id, request.destination), (5, mote));
        assert_eq!(request.data, [0x02, 0x17]);
        assert!(matches!(radio.next(), Some(Ok(FromHost::Unexpected(_)))));
        assert!(radio.next().is_none());
    }
}
