//! The trainer's one error type.

use std::path::PathBuf;

/// Result with the trainer's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while training, evaluating and writing bundles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// The runtime (bundles, graphs) reported an error.
    #[error(transparent)]
    Runtime(#[from] modeconn_runtime::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A data set is missing, malformed or does not fit the architecture.
    #[error("data: {0}")]
    Data(String),
    /// An architecture name or option is not known or not valid.
    #[error("architecture: {0}")]
    Arch(String),
    /// A job or option is invalid (unknown field, bad number, missing path...).
    #[error("invalid job: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, step {step}: lower the learning rate")]
    NonFiniteLoss {
        /// The value seen.
        value: f64,
        /// The epoch (1-based).
        epoch: usize,
        /// The step within the epoch (1-based).
        step: usize,
    },
    /// A requested device cannot be used.
    #[error("device `{device}` is not available: {reason}")]
    Device {
        /// The device asked for, as the job spells it.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
