//! The AES block cipher of the Mbed TLS engine on the CPU's AES instructions (AES-NI).
//!
//! mbedtls-rs-sys builds Mbed TLS as portable C (no assembly, no AES-NI) and routes every AES
//! block through a hook that falls back to that portable code. Every DTLS record of the CCM
//! and GCM suites costs several AES blocks (CCM-8: one per 16 bytes twice over, plus three),
//! and in the portable code each block is a table walk of ten rounds: profiled under the QoS 1
//! benchmark, it was the largest single item of the gateway's CPU over DTLS. This hook does
//! the same block encryption with `AESENC`, a round per instruction, when the CPU has it
//! (checked at run time); otherwise the hook is not installed and nothing changes.
//!
//! Only what the suites use is accelerated: encryption with 128- and 256-bit keys (CCM, GCM
//! and CTR only ever encrypt blocks). Decryption keys and 192-bit keys are handed to Mbed TLS's
//! own code (`SoftAesState`), so the hook is complete whatever calls it.
//!
//! The state lives in the work area Mbed TLS reserves in each AES context, and Mbed TLS copies
//! contexts byte for byte: it is plain data (round keys, no pointer), as the hook's contract
//! requires.

#![allow(unsafe_code)]

use mbedtls_rs_sys as m;
use mbedtls_rs_sys::hook::aes::{AesBlock, MbedtlsAes, SoftAesState};
use mbedtls_rs_sys::hook::{WorkArea, WorkAreaMemory};
use mbedtls_rs_sys::MbedtlsError;

/// The hook to install, when this CPU has the AES instructions; `None` leaves Mbed TLS's own.
pub(super) fn hook() -> Option<&'static (dyn MbedtlsAes + Send + Sync)> {
    if ni::available() {
        Some(&AES_NI)
    } else {
        None
    }
}

/// The AES hook (stateless: each context's state is in its work area).
struct AesNi;

static AES_NI: AesNi = AesNi;

/// One AES context's state.
enum State {
    /// Initialised, no key yet.
    Unkeyed,
    /// An encryption key, expanded for the AES instructions.
    Ni(ni::Keys),
    /// A decryption key, or a 192-bit key: Mbed TLS's own code.
    Soft(SoftAesState),
}

fn bad_input() -> MbedtlsError {
    MbedtlsError::new(m::MBEDTLS_ERR_AES_BAD_INPUT_DATA)
}

/// The state in `memory`, which `init` wrote.
fn state(memory: &mut WorkAreaMemory) -> &mut State {
    // SAFETY: `State` has an alignment of 16 at most (its widest member is a 16-byte vector)
    // and fits the 512-byte work area (the crate panics rather than overflow it); Mbed TLS
    // calls `init` on every context before any other AES call on it, and `init` writes a
    // `State` there, which every later call keeps initialised (Mbed TLS's byte copies of a
    // context copy plain data: `State` holds no pointer and nothing to drop).
    unsafe { memory.cast_mut::<State>() }
}

impl MbedtlsAes for AesNi {
    fn init(&self, memory: &mut WorkAreaMemory) {
        // SAFETY: as in `state`, for the size and alignment; the work area holds nothing yet
        // (or what `free` wiped), so nothing is overwritten without being dropped.
        unsafe { memory.cast_mut_maybe::<State>() }.write(State::Unkeyed);
    }

    fn free(&self, memory: &mut WorkAreaMemory) {
        // Plain data: wiping the work area frees the state and erases the key.
        memory.fill(0);
    }

    fn set_enc_key(&self, memory: &mut WorkAreaMemory, key: &[u8]) -> Result<(), MbedtlsError> {
        *state(memory) = match ni::Keys::expand(key) {
            Some(keys) => State::Ni(keys),
            None => State::Soft(SoftAesState::new_enc(key)?),
        };
        Ok(())
    }

    fn set_dec_key(&self, memory: &mut WorkAreaMemory, key: &[u8]) -> Result<(), MbedtlsError> {
        *state(memory) = State::Soft(SoftAesState::new_dec(key)?);
        Ok(())
    }

    fn encrypt(
        &self,
        memory: &mut WorkAreaMemory,
        block: &mut AesBlock,
    ) -> Result<(), MbedtlsError> {
        match state(memory) {
            State::Ni(keys) => {
                keys.encrypt(block);
                Ok(())
            }
            State::Soft(soft) => soft.encrypt(block),
            State::Unkeyed => Err(bad_input()),
        }
    }

    fn decrypt(
        &self,
        memory: &mut WorkAreaMemory,
        block: &mut AesBlock,
    ) -> Result<(), MbedtlsError> {
        match state(memory) {
            State::Soft(soft) => soft.decrypt(block),
            // An encryption key cannot decrypt (as in Mbed TLS's own code).
            State::Ni(_) | State::Unkeyed => Err(bad_input()),
        }
    }
}

/// The AES instructions of x86-64.
#[cfg(target_arch = "x86_64")]
mod ni {
    use std::arch::x86_64::{
        __m128i, _mm_aesenc_si128, _mm_aesenclast_si128, _mm_aeskeygenassist_si128,
        _mm_loadu_si128, _mm_setzero_si128, _mm_shuffle_epi32, _mm_slli_si128, _mm_storeu_si128,
        _mm_xor_si128,
    };

    /// Whether this CPU has the AES instructions (and SSE2, which every x86-64 has).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sse2")
    }

    /// Expanded encryption round keys: `rounds + 1` of them are used.
    #[derive(Clone, Copy)]
    pub(super) struct Keys {
        keys: [__m128i; 15],
        rounds: usize,
    }

    impl Keys {
        /// Expands a 128- or 256-bit key; `None` for other lengths, or a CPU without the
        /// instructions (the hook is installed only with them; this keeps the function safe
        /// to call anyway).
        pub(super) fn expand(key: &[u8]) -> Option<Keys> {
            if !available() {
                return None;
            }
            match key.len() {
                // SAFETY: the CPU has AES and SSE2 (checked above); the key is 16 bytes.
                16 => Some(unsafe { expand128(key) }),
                // SAFETY: as above; the key is 32 bytes.
                32 => Some(unsafe { expand256(key) }),
                _ => None,
            }
        }

        /// Encrypts one block in place.
        pub(super) fn encrypt(&self, block: &mut [u8; 16]) {
            // SAFETY: a `Keys` exists only if `expand` found the instructions on this CPU.
            unsafe { encrypt(self, block) }
        }
    }

    /// One step of the 128-bit key schedule (FIPS-197 §5.2): `assist` is
    /// `AESKEYGENASSIST` of the previous round key.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn step128(mut key: __m128i, assist: __m128i) -> __m128i {
        let assist = _mm_shuffle_epi32::<0xff>(assist);
        let mut shifted = _mm_slli_si128::<4>(key);
        key = _mm_xor_si128(key, shifted);
        shifted = _mm_slli_si128::<4>(shifted);
        key = _mm_xor_si128(key, shifted);
        shifted = _mm_slli_si128::<4>(shifted);
        key = _mm_xor_si128(key, shifted);
        _mm_xor_si128(key, assist)
    }

    /// The odd step of the 256-bit key schedule: the second half-key from the first.
    #[inline]
    #[target_feature(enable = "aes,sse2")]
    fn step256_odd(first: __m128i, mut second: __m128i) -> __m128i {
        let assist = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(first));
        let mut shifted = _mm_slli_si128::<4>(second);
        second = _mm_xor_si128(second, shifted);
        shifted = _mm_slli_si128::<4>(shifted);
        second = _mm_xor_si128(second, shifted);
        shifted = _mm_slli_si128::<4>(shifted);
        second = _mm_xor_si128(second, shifted);
        _mm_xor_si128(second, assist)
    }

    /// # Safety
    /// The CPU must have AES and SSE2; `key` must be 16 bytes long.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand128(key: &[u8]) -> Keys {
        let mut keys = [_mm_setzero_si128(); 15];
        // SAFETY: `key` holds 16 bytes (the caller's contract); the load is unaligned.
        let mut k = unsafe { _mm_loadu_si128(key.as_ptr().cast()) };
        keys[0] = k;
        macro_rules! round {
            ($i:literal, $rcon:literal) => {
                k = step128(k, _mm_aeskeygenassist_si128::<$rcon>(k));
                keys[$i] = k;
            };
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(7, 0x40);
        round!(8, 0x80);
        round!(9, 0x1b);
        round!(10, 0x36);
        Keys { keys, rounds: 10 }
    }

    /// # Safety
    /// The CPU must have AES and SSE2; `key` must be 32 bytes long.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand256(key: &[u8]) -> Keys {
        let mut keys = [_mm_setzero_si128(); 15];
        // SAFETY: `key` holds 32 bytes (the caller's contract): two unaligned 16-byte loads.
        let (mut a, mut b) = unsafe {
            (
                _mm_loadu_si128(key.as_ptr().cast()),
                _mm_loadu_si128(key.as_ptr().add(16).cast()),
            )
        };
        keys[0] = a;
        keys[1] = b;
        macro_rules! round {
            ($i:literal, $rcon:literal) => {
                a = step128(a, _mm_aeskeygenassist_si128::<$rcon>(b));
                keys[$i] = a;
                b = step256_odd(a, b);
                keys[$i + 1] = b;
            };
        }
        round!(2, 0x01);
        round!(4, 0x02);
        round!(6, 0x04);
        round!(8, 0x08);
        round!(10, 0x10);
        round!(12, 0x20);
        keys[14] = step128(a, _mm_aeskeygenassist_si128::<0x40>(b));
        Keys { keys, rounds: 14 }
    }

    /// # Safety
    /// The CPU must have AES and SSE2.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn encrypt(keys: &Keys, block: &mut [u8; 16]) {
        let rounds = keys.rounds.min(14);
        // SAFETY: `block` is 16 bytes; the load and the store are unaligned.
        let mut state = unsafe { _mm_loadu_si128(block.as_ptr().cast()) };
        state = _mm_xor_si128(state, keys.keys[0]);
        for key in keys.keys.iter().take(rounds).skip(1) {
            state = _mm_aesenc_si128(state, *key);
        }
        let last = keys.keys.get(rounds).copied().unwrap_or(keys.keys[14]);
        state = _mm_aesenclast_si128(state, last);
        // SAFETY: as above.
        unsafe { _mm_storeu_si128(block.as_mut_ptr().cast(), state) };
    }
}

/// Elsewhere: no instructions, the hook is never installed.
#[cfg(not(target_arch = "x86_64"))]
mod ni {
    pub(super) fn available() -> bool {
        false
    }

    /// Never made.
    #[derive(Clone, Copy)]
    pub(super) enum Keys {}

    impl Keys {
        pub(super) fn expand(_key: &[u8]) -> Option<Keys> {
            None
        }

        pub(super) fn encrypt(&self, _block: &mut [u8; 16]) {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Encrypts `plain` with `key` through the hook as Mbed TLS calls it.
    fn through_hook(key: &[u8], plain: &[u8]) -> [u8; 16] {
        let mut area = [0u8; 512];
        AES_NI.init(&mut area);
        AES_NI.set_enc_key(&mut area, key).unwrap();
        let mut block: [u8; 16] = plain.try_into().unwrap();
        AES_NI.encrypt(&mut area, &mut block).unwrap();
        AES_NI.free(&mut area);
        block
    }

    /// The FIPS-197 appendix C examples, 128, 192 (Mbed TLS's own code) and 256 bits.
    #[test]
    fn encrypts_the_fips_197_examples() {
        let plain = hex("00112233445566778899aabbccddeeff");
        for (key, cipher) in [
            (
                "000102030405060708090a0b0c0d0e0f",
                "69c4e0d86a7b0430d8cdb78070b4c55a",
            ),
            (
                "000102030405060708090a0b0c0d0e0f1011121314151617",
                "dda97ca4864cdfe06eaf70a0ec0d7191",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "8ea2b7ca516745bfeafc49904b496089",
            ),
        ] {
            assert_eq!(
                through_hook(&hex(key), &plain).to_vec(),
                hex(cipher),
                "key {key}"
            );
        }
    }

    /// The instructions and Mbed TLS's own code agree on many keys and blocks.
    #[test]
    fn agrees_with_mbed_tls_own_aes() {
        if !ni::available() {
            eprintln!("no AES instructions on this CPU: only the fallback is tested");
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        };
        for round in 0..200 {
            let len = if round % 2 == 0 { 16 } else { 32 };
            let key: Vec<u8> = (0..len / 8).flat_map(|_| next()).collect();
            let plain: Vec<u8> = (0..2).flat_map(|_| next()).collect();
            let mut soft = SoftAesState::new_enc(&key).unwrap();
            let mut expected: [u8; 16] = plain.clone().try_into().unwrap();
            soft.encrypt(&mut expected).unwrap();
            assert_eq!(through_hook(&key, &plain), expected, "key {key:02x?}");
        }
    }

    /// A decryption key goes to Mbed TLS's own code and undoes the encryption.
    #[test]
    fn decrypts_with_mbed_tls_own_aes() {
        let key = hex("000102030405060708090a0b0c0d0e0f");
        let mut area = [0u8; 512];
        AES_NI.init(&mut area);
        AES_NI.set_dec_key(&mut area, &key).unwrap();
        let mut block: [u8; 16] = hex("69c4e0d86a7b0430d8cdb78070b4c55a").try_into().unwrap();
        AES_NI.decrypt(&mut area, &mut block).unwrap();
        assert_eq!(block.to_vec(), hex("00112233445566778899aabbccddeeff"));
        // An unkeyed context refuses, as Mbed TLS's own does.
        AES_NI.init(&mut area);
        assert!(AES_NI.encrypt(&mut area, &mut block).is_err());
    }
}
