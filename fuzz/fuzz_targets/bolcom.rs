//! `cargo +nightly fuzz run bolcom`: see `stocksync::fuzzing::bolcom` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::bolcom(data));
