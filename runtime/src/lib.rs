//! modeconn-runtime: load mode-connected curves and snapshot ensembles from bundles and run them
//! with ONNX Runtime.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod bundle;
pub mod curve;
pub mod ensemble;
pub mod error;
pub mod graph;
pub mod npy;
pub mod session;

mod fsutil;

pub use bundle::{Bundle, BundleWriter, Member};
pub use ensemble::{Ensemble, EnsembleOptions, Prediction, Sampling};
pub use error::{Error, Result};
pub use fsutil::write_file_atomic;
pub use session::{Device, Provider, Runtime, RuntimeOptions};
