//! Feeds arbitrary bytes to the COBS + CRC-16 decoder (max_frame 240, or 64 with the
//! option bit).
//!
//! Checks, beyond "never panics": chunking does not change the result; the counters match
//! the items; every decoded datagram that fits re-encodes and decodes, alone, to the same
//! address and datagram, and one that does not fit is refused as too large.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sn_transports::serial::framing::cobs::CobsFramer;
use sn_transports::serial::framing::FrameError;

fuzz_target!(|data: &[u8]| {
    let Some((small, chunk, stream)) = common::split(data) else {
        return;
    };
    let max_frame = if small { 64 } else { 240 };
    let new = || CobsFramer::new(max_frame).expect("valid max_frame");

    let mut chunked = new();
    let items = common::decode_chunked(
        &mut chunked,
        stream,
        chunk,
        CobsFramer::push,
        CobsFramer::next_datagram,
    );
    let mut whole = new();
    whole.push(stream);
    let again: Vec<_> = std::iter::from_fn(|| whole.next_datagram()).collect();
    assert_eq!(items, again, "chunking changed the result");
    assert_eq!(
        chunked.stats(),
        whole.stats(),
        "chunking changed the counters"
    );

    let stats = chunked.stats();
    let errors = items.iter().filter(|i| i.is_err()).count() as u64;
    assert_eq!(stats.frames_ok, items.len() as u64 - errors);
    assert_eq!(
        stats.bad_checksum + stats.oversize + stats.malformed,
        errors
    );

    for (address, datagram) in items.iter().flatten() {
        assert!(datagram.len() + 4 < max_frame);
        let encoder = new();
        let mut bytes = Vec::new();
        match encoder.encode(*address, datagram, &mut bytes) {
            Ok(()) => {
                assert!(bytes.len() <= max_frame);
                let mut decoder = new();
                decoder.push(&bytes);
                assert_eq!(
                    decoder.next_datagram(),
                    Some(Ok((*address, datagram.clone())))
                );
                assert_eq!(decoder.next_datagram(), None);
            }
            Err(FrameError::DatagramTooLarge { len, max }) => {
                // The decoder accepts a frame without the leading delimiter, so a datagram
                // up to a byte or two over max_datagram can arrive.
                assert_eq!(len, datagram.len());
                assert_eq!(max, encoder.max_datagram());
                assert!(len > max);
            }
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
});
