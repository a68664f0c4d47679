//! `cargo +nightly fuzz run amazon`: see `stocksync::fuzzing::amazon` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::amazon(data));
