//! `cargo +nightly fuzz run npy`: see `modeconn_fuzz::npy` (fuzz/src/npy.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::npy::run(data));
