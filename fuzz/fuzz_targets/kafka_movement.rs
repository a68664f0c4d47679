//! `cargo +nightly fuzz run kafka_movement`: see `stocksync::fuzzing::kafka_movement` for the decoders and the
//! properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stocksync::fuzzing::kafka_movement(data));
