//! Feeds arbitrary datagrams to the v1.2 decoder.
//!
//! Checks, beyond "never panics": whatever decodes re-encodes, the re-encoded bytes decode to
//! the same frame, and re-encoding never grows the datagram (the only changes allowed are
//! normalisations: the 3-byte length form on a short packet, ignored flag and Ctrl bits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sn_codec::v12::{Frame, Packet};

fuzz_target!(|data: &[u8]| {
    let plain = Packet::decode(data);
    match Frame::decode(data) {
        Ok(frame) => {
            if let Frame::Packet(packet) = frame {
                assert_eq!(plain, Ok(packet), "Frame and Packet decode disagree");
            }
            let bytes = frame.to_vec().expect("a decoded frame must re-encode");
            assert_eq!(bytes.len(), frame.encoded_len(), "encoded_len disagrees with encode");
            assert!(bytes.len() <= data.len(), "re-encoding grew the datagram");
            let again = Frame::decode(&bytes).expect("a re-encoded frame must decode");
            assert_eq!(frame, again, "decode -> encode -> decode changed the frame");
        }
        Err(_) => {
            if let Ok(packet) = plain {
                panic!("Packet::decode accepted what Frame::decode refused: {packet:?}");
            }
        }
    }
});
