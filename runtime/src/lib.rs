//! modeconn-runtime: load mode-connected curves and snapshot ensembles from bundles and run them
//! with ONNX Runtime.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod error;
pub mod graph;

pub use error::{Error, Result};
