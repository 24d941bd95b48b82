//! `cargo +nightly fuzz run audit`: see `modeconn_fuzz::audit` (fuzz/src/audit.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::audit::run(data));
