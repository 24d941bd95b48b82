//! What modeconn's fuzz targets do with an input, one module per target (`fuzz_targets/*.rs`
//! only call [`bundle::run`], [`onnx::run`], ...), so that the properties each checks read in
//! one place; the ONNX Runtime they share; and the small models the server target serves and
//! the seed corpora start from ([`models`], `examples/seeds.rs`).
//!
//! The properties, for every target: an input that parses either works (predicts, rewrites,
//! round-trips) or fails with an error; nothing panics or aborts; nothing allocates more than
//! the input and the documented limits justify (scripts/fuzz.sh runs libFuzzer with
//! `-malloc_limit_mb` and `-rss_limit_mb`). A panic (an `assert!` here included) is a finding.

use std::sync::OnceLock;

use modeconn_runtime::{Runtime, RuntimeOptions};

pub mod audit;
pub mod bundle;
pub mod jobs;
pub mod known;
pub mod models;
pub mod npy;
pub mod onnx;
pub mod server;

/// The most floats a target hands to ONNX Runtime at once (4 MB): inputs whose declared
/// shapes or tensors are larger are parsed and checked but not run, so the fuzzers measure
/// modeconn's allocations rather than ONNX Runtime's.
pub const MAX_RUN_FLOATS: usize = 1 << 20;

/// The ONNX Runtime of the process (from `ORT_DYLIB_PATH`), made on first use with one
/// operator thread.
///
/// # Panics
///
/// When ONNX Runtime cannot be loaded: the fuzz targets need it (source the env file that
/// `scripts/setup.sh` prints).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeOptions::default().with_intra_threads(1)).unwrap_or_else(|e| {
            panic!("ONNX Runtime cannot be loaded (source the env file of scripts/setup.sh): {e}")
        })
    })
}

/// The product of `dims`, or `None` when it overflows.
pub fn product(dims: impl IntoIterator<Item = usize>) -> Option<usize> {
    dims.into_iter().try_fold(1usize, |a, d| a.checked_mul(d))
}
