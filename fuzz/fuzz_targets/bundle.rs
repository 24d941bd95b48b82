//! `cargo +nightly fuzz run bundle`: see `modeconn_fuzz::bundle` (fuzz/src/bundle.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::bundle::run(data));
