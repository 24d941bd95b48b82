//! `cargo +nightly fuzz run jobs`: see `modeconn_fuzz::jobs` (fuzz/src/jobs.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::jobs::run(data));
