//! `cargo +nightly fuzz run rest_movements`: see `stocksync::fuzzing::rest_movements` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::rest_movements(data));
