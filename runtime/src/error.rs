//! The runtime's one error type.

use std::path::PathBuf;

/// Result with the runtime's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading bundles, rewriting graphs and running ensembles.
///
/// Variants carry the name of the tensor, key or path at fault so a message can say exactly what
/// is wrong. [`Error::code`] maps each variant to a stable number for the C ABI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read, mapped or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file ends before the data its header promises.
    #[error("truncated bundle: {detail}")]
    Truncated {
        /// What was expected and what was there.
        detail: String,
    },
    /// The safetensors header is not valid (length, JSON, offsets, dtypes).
    #[error("bad bundle header: {detail}")]
    Header {
        /// What is wrong with it.
        detail: String,
    },
    /// A metadata key is missing or its value is not what the format requires.
    #[error("bundle metadata `{key}`: {reason}")]
    Metadata {
        /// The `__metadata__` key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// `modeconn.kind` names a kind this version does not know.
    #[error("unknown bundle kind `{0}` (expected `curve` or `snapshots`)")]
    UnknownKind(String),
    /// `modeconn.basis` names a basis this version does not know.
    #[error("unknown curve basis `{0}` (expected `bezier` or `polychain`)")]
    UnknownBasis(String),
    /// A required tensor is absent.
    #[error("tensor `{tensor}` is missing: {reason}")]
    MissingTensor {
        /// The tensor name.
        tensor: String,
        /// Why it was expected.
        reason: String,
    },
    /// A varying tensor's leading axis does not have the length the metadata gives.
    #[error("tensor `{tensor}`: leading axis is {found}, expected {expected} ({what})")]
    LeadingAxis {
        /// The tensor name.
        tensor: String,
        /// The length the metadata implies.
        expected: usize,
        /// The length in the file.
        found: usize,
        /// Which count it must equal (points, members or bn grid points).
        what: &'static str,
    },
    /// A varying tensor has no graph input or initializer of the same name.
    #[error("tensor `{tensor}` has no graph input or initializer of that name in the ONNX graph")]
    MissingGraphInput {
        /// The tensor name.
        tensor: String,
    },
    /// Two shapes that must agree do not.
    #[error("tensor `{tensor}`: shape {found:?} does not match {expected:?}")]
    ShapeMismatch {
        /// The tensor (or graph input) name.
        tensor: String,
        /// The shape required.
        expected: Vec<i64>,
        /// The shape found.
        found: Vec<i64>,
    },
    /// A tensor has an element type other than the one required.
    #[error("tensor `{tensor}`: element type {found}, expected {expected}")]
    DType {
        /// The tensor name.
        tensor: String,
        /// The type required.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("`{what}` holds a non-finite value at position {index}")]
    NotFinite {
        /// The key or tensor name.
        what: String,
        /// The position of the first such value.
        index: usize,
    },
    /// A curve parameter t lies outside `[0, 1]` (or is NaN).
    #[error("t = {t} is outside [0, 1]")]
    TOutOfRange {
        /// The value given.
        t: f64,
    },
    /// A snapshot member index is not below the number of members.
    #[error("member {index} is out of range: the bundle has {count} members")]
    MemberOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of members.
        count: usize,
    },
    /// A sampling request that cannot be honoured for this bundle or these arguments.
    #[error("sampling: {0}")]
    Sampling(String),
    /// The input batch does not match the bundle's input specification.
    #[error("input: {0}")]
    Input(String),
    /// The ONNX model could not be decoded or does not have the structure required.
    #[error("ONNX model: {0}")]
    Onnx(String),
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime library not found: {detail}")]
    OrtLibrary {
        /// The places searched and what failed.
        detail: String,
    },
    /// A device was asked for that cannot be used here.
    #[error("device `{device}` is not available: {reason}")]
    Device {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// ONNX Runtime reported an error.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// An argument is invalid on its own (zero counts, empty lists and the like).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The trainer plugin could not be found or loaded, is not a trainer plugin, or speaks
    /// another ABI version ([`crate::plugin`]).
    #[error("{detail}")]
    TrainerUnavailable {
        /// What is wrong and how to get the plugin.
        detail: String,
    },
    /// The trainer plugin ran the job and it failed or was refused: the trainer's message, or
    /// why its report could not be read.
    #[error("{0}")]
    TrainerFailed(String),
}

impl Error {
    /// A stable number for this kind of error, used as the status code of the C ABI.
    ///
    /// Numbers are never reused: a retired variant keeps its number reserved.
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidArgument(_) => 2,
            Error::Io { .. } => 10,
            Error::Truncated { .. } => 11,
            Error::Header { .. } => 12,
            Error::Metadata { .. } => 13,
            Error::UnknownKind(_) => 14,
            Error::UnknownBasis(_) => 15,
            Error::MissingTensor { .. } => 16,
            Error::LeadingAxis { .. } => 17,
            Error::MissingGraphInput { .. } => 18,
            Error::ShapeMismatch { .. } => 19,
            Error::DType { .. } => 20,
            Error::NotFinite { .. } => 21,
            Error::Onnx(_) => 22,
            Error::TOutOfRange { .. } => 30,
            Error::MemberOutOfRange { .. } => 31,
            Error::Sampling(_) => 32,
            Error::Input(_) => 33,
            Error::OrtLibrary { .. } => 40,
            Error::Device { .. } => 41,
            Error::Ort(_) => 42,
            Error::TrainerUnavailable { .. } => 50,
            Error::TrainerFailed(_) => 51,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl<R> From<ort::Error<R>> for Error {
    fn from(e: ort::Error<R>) -> Self {
        Error::Ort(e.message().to_string())
    }
}
