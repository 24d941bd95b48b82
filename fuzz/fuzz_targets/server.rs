//! `cargo +nightly fuzz run server`: see `modeconn_fuzz::server` (fuzz/src/server.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::server::run(data));
