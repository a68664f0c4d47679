//! `cargo +nightly fuzz run config`: see `stocksync::fuzzing::config` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::config(data));
