//! Feeds arbitrary bytes to the XBee API decoder (mode 2 or 1 from the first byte).
//!
//! Checks, beyond "never panics": chunking does not change the result; the counters match
//! the items; every decoded frame re-encodes and decodes, alone, to the same frame.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sn_transports::serial::framing::xbee::{ApiMode, XBeeFramer};
use sn_transports::serial::framing::FrameError;

const MAX_FRAME: usize = 128;

fuzz_target!(|data: &[u8]| {
    let Some((api1, chunk, stream)) = common::split(data) else {
        return;
    };
    let mode = if api1 {
        ApiMode::Unescaped
    } else {
        ApiMode::Escaped
    };
    let new = || XBeeFramer::new(mode, MAX_FRAME).expect("valid max_frame");

    let mut chunked = new();
    let items = common::decode_chunked(
        &mut chunked,
        stream,
        chunk,
        XBeeFramer::push,
        XBeeFramer::next_frame,
    );
    let mut whole = new();
    whole.push(stream);
    let again: Vec<_> = std::iter::from_fn(|| whole.next_frame()).collect();
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

    for item in &items {
        match item {
            Ok(frame) => {
                let mut bytes = Vec::new();
                new()
                    .encode_frame(frame, &mut bytes)
                    .expect("a decoded frame must re-encode");
                let mut decoder = new();
                decoder.push(&bytes);
                assert_eq!(decoder.next_frame(), Some(Ok(frame.clone())));
                assert_eq!(decoder.next_frame(), None);
            }
            Err(FrameError::FrameTooLong { at_least, max }) => {
                assert!(*at_least > *max);
            }
            Err(_) => {}
        }
    }
});
