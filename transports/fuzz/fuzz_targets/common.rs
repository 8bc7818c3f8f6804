//! What every framing target does with its input.
//!
//! The first input byte picks the chunk size (1..=128, from bits 1-7) and one option (bit
//! 0, e.g. the XBee API mode); the rest is pushed into the decoder in chunks of that size,
//! draining after each push as the link will. The whole input is also decoded in one push:
//! chunking must not change what comes out, nor the counters.

/// Splits the fuzzer's input into (option bit, chunk size, stream).
pub fn split(data: &[u8]) -> Option<(bool, usize, &[u8])> {
    let (&config, stream) = data.split_first()?;
    Some((config & 1 == 1, usize::from(config >> 1) + 1, stream))
}

/// Decodes `stream` with `next` after pushing it in `chunk`-sized pieces.
pub fn decode_chunked<F, T>(
    framer: &mut F,
    stream: &[u8],
    chunk: usize,
    push: fn(&mut F, &[u8]),
    next: fn(&mut F) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        push(framer, piece);
        while let Some(item) = next(framer) {
            out.push(item);
        }
    }
    out
}
