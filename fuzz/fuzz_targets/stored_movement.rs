//! `cargo +nightly fuzz run stored_movement`: see `stocksync::fuzzing::stored_movement` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::stored_movement(data));
