//! End-to-end tests of the `modeconn` command line with the real ONNX Runtime, against
//! references computed independently in Python (`tests/python`: onnxruntime, PyTorch).
//!
//! Needs the environment of `scripts/setup.sh` (`source` the env file it prints): the tests run
//! its Python (`MODECONN_PYTHON`) to build fixtures and references, and `modeconn` loads ONNX
//! Runtime from `ORT_DYLIB_PATH`. Set `MODECONN_TEST_TOL` to change the comparison tolerance and
//! `MODECONN_TEST_BIN` to test another `modeconn` executable than the one Cargo builds.

mod predictors;
mod util;

mod attack;
mod calibrate;
mod cli;
mod concurrency;
mod deploy;
mod fuzz_regressions;
mod gpu;
mod hostile;
mod materialize;
mod own_model;
mod pack;
mod plane;
mod plot;
mod reference;
mod references;
mod refusals;
mod runtime_api;
mod serve;
mod soak;
mod trainer_cli;

/// The prediction cases through `modeconn predict`.
mod predict {
    use crate::predictors::cli as predictor;
    include!("predict.rs");
}

/// The same prediction cases through the C ABI (`include/modeconn.h`).
mod predict_c_abi {
    use crate::predictors::c_abi as predictor;
    include!("predict.rs");
}
