//! `cargo +nightly fuzz run shopify`: see `stocksync::fuzzing::shopify` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::shopify(data));
