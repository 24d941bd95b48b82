//! modeconn-trainer: trains endpoints, fits curves between them, runs Fast Geometric
//! Ensembling, recomputes batch-norm statistics along curves, evaluates along curves, writes
//! bundles the runtime loads, and makes adversarial inputs from its networks' gradients. Built on libtorch through `tch`.
#![warn(clippy::unwrap_used)]

pub mod arch;
pub mod attack;
pub mod bn;
pub mod checkpoint;
pub mod curve;
pub mod data;
pub mod device;
pub mod doctor;
pub mod epochs;
pub mod error;
pub mod eval;
pub mod fge;
pub mod fit;
pub mod model_io;
pub mod optim;
pub mod plane;
pub mod plugin;
pub mod run;
pub mod samples;
pub mod train;

pub use error::{Error, Result};
/// The jobs, events and reports of the trainer's contract (`modeconn-jobs`).
pub use modeconn_jobs as job;
