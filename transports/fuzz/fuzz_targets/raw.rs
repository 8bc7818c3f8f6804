//! Feeds arbitrary bytes to the raw MQTT-SN decoder (max_frame 1024, or 64 with the option
//! bit).
//!
//! Checks, beyond "never panics": chunking does not change the result; the counters match
//! the items; every decoded packet has a length field matching its length, re-encodes
//! unchanged and decodes, alone, to itself.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sn_transports::serial::framing::raw::RawFramer;

fuzz_target!(|data: &[u8]| {
    let Some((small, chunk, stream)) = common::split(data) else {
        return;
    };
    let max_frame = if small { 64 } else { 1024 };
    let new = || RawFramer::new(max_frame).expect("valid max_frame");

    let mut chunked = new();
    let items = common::decode_chunked(
        &mut chunked,
        stream,
        chunk,
        RawFramer::push,
        RawFramer::next_datagram,
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
    assert_eq!(stats.oversize, errors);

    for packet in items.iter().flatten() {
        assert!(packet.len() <= max_frame);
        let mut bytes = Vec::new();
        new()
            .encode(packet, &mut bytes)
            .expect("a decoded packet must re-encode");
        assert_eq!(&bytes, packet);
        let mut decoder = new();
        decoder.push(&bytes);
        assert_eq!(decoder.next_datagram(), Some(Ok(packet.clone())));
        assert_eq!(decoder.next_datagram(), None);
    }
});
