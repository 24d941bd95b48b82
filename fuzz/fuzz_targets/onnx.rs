//! `cargo +nightly fuzz run onnx`: see `modeconn_fuzz::onnx` (fuzz/src/onnx.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modeconn_fuzz::onnx::run(data));
