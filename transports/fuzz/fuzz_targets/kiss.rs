//! Feeds arbitrary bytes to the KISS decoder (all ports, or port 0 only with the option
//! bit; max_frame 256).
//!
//! Checks, beyond "never panics": chunking does not change the result; the counters match
//! the items; every decoded datagram re-encodes and decodes, alone, to the same port and
//! datagram.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sn_transports::serial::framing::kiss::KissFramer;

const MAX_FRAME: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((port0_only, chunk, stream)) = common::split(data) else {
        return;
    };
    let ports = if port0_only { 0x0001 } else { 0xFFFF };
    let new = || {
        KissFramer::new(MAX_FRAME)
            .expect("valid max_frame")
            .with_ports(ports)
    };

    let mut chunked = new();
    let items = common::decode_chunked(
        &mut chunked,
        stream,
        chunk,
        KissFramer::push,
        KissFramer::next_datagram,
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
    assert_eq!(stats.bad_checksum, 0, "KISS has no checksum");

    for (port, datagram) in items.iter().flatten() {
        assert!(ports & (1 << port.get()) != 0);
        let mut bytes = Vec::new();
        new()
            .encode(*port, datagram, &mut bytes)
            .expect("a decoded datagram must re-encode");
        let mut decoder = new();
        decoder.push(&bytes);
        assert_eq!(decoder.next_datagram(), Some(Ok((*port, datagram.clone()))));
        assert_eq!(decoder.next_datagram(), None);
    }
});
