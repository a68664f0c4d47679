//! `cargo +nightly fuzz run woocommerce`: see `stocksync::fuzzing::woocommerce` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::woocommerce(data));
