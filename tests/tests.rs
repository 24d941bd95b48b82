//! End-to-end tests of the `modeconn` command line with the real ONNX Runtime, against
//! references computed independently in Python (`tests/python`: onnxruntime, PyTorch).
//!
//! Needs the environment of `scripts/setup.sh` (`source` the env file it prints): the tests run
//! its Python (`MODECONN_PYTHON`) to build fixtures and references, and `modeconn` loads ONNX
//! Runtime from `ORT_DYLIB_PATH`. Set `MODECONN_TEST_TOL` to change the comparison tolerance and
//! `MODECONN_TEST_BIN` to test another `modeconn` executable than the one Cargo builds.

mod util;

mod cli;
mod concurrency;
mod materialize;
mod pack;
mod predict;
mod runtime_api;
mod serve;
mod trainer_cli;
