//! The runtime's one error type.

use std::path::PathBuf;

use strum::{EnumIter, EnumMessage, IntoStaticStr};

use crate::bundle::Kind;

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
    ///
    /// The operating system's text is part of the message, so it is not also given as
    /// `source()`: a caller that prints an error's chain would otherwise say it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A path given as a bundle that is not a regular file (a folder, a named pipe, a
    /// device): it is refused before it is opened.
    #[error("{} is {what}, not a bundle file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is, e.g. `a folder`.
        what: &'static str,
    },
    /// A file that is not a bundle at all: its first 8 bytes, which in a bundle give the
    /// length of the header that follows, give more than the file holds.
    #[error(
        "{} is not a bundle: its first 8 bytes give a header of {declared} bytes, more than \
         the file's {size}",
        path.display()
    )]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// The header length its first 8 bytes give.
        declared: u64,
        /// The file's length in bytes.
        size: usize,
    },
    /// The file ends before the data its header promises.
    #[error("truncated bundle: {}", Reason(detail))]
    Truncated {
        /// What was expected and what was there.
        detail: String,
    },
    /// The safetensors header is not valid (length, JSON, offsets, dtypes).
    #[error("bad bundle header: {}", Reason(detail))]
    Header {
        /// What is wrong with it.
        detail: String,
    },
    /// A metadata key is missing or its value is not what the format requires.
    #[error("bundle metadata `{}`: {}", Quoted(key), Reason(reason))]
    Metadata {
        /// The `__metadata__` key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// `modeconn.kind` names a kind this version does not know.
    #[error("unknown bundle kind `{}` (expected `curve` or `snapshots`)", Quoted(.0))]
    UnknownKind(String),
    /// `modeconn.basis` names a basis this version does not know.
    #[error("unknown curve basis `{}` (expected `bezier` or `polychain`)", Quoted(.0))]
    UnknownBasis(String),
    /// A required tensor is absent.
    #[error("tensor `{}` is missing: {}", Quoted(tensor), Reason(reason))]
    MissingTensor {
        /// The tensor name.
        tensor: String,
        /// Why it was expected.
        reason: String,
    },
    /// A varying tensor's leading axis does not have the length the metadata gives.
    #[error(
        "tensor `{}`: leading axis is {found}, expected {expected} ({what})",
        Quoted(tensor)
    )]
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
    #[error(
        "tensor `{}` has no graph input or initializer of that name in the ONNX graph",
        Quoted(tensor)
    )]
    MissingGraphInput {
        /// The tensor name.
        tensor: String,
    },
    /// Two shapes that must agree do not.
    #[error(
        "tensor `{}`: shape {found:?} does not match {expected:?}",
        Quoted(tensor)
    )]
    ShapeMismatch {
        /// The tensor (or graph input) name.
        tensor: String,
        /// The shape required.
        expected: Vec<i64>,
        /// The shape found.
        found: Vec<i64>,
    },
    /// A tensor has an element type other than the one required.
    #[error(
        "tensor `{}`: element type {}, expected {expected}",
        Quoted(tensor),
        Quoted(found)
    )]
    DType {
        /// The tensor name.
        tensor: String,
        /// The type required.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("`{}` holds a non-finite value at position {index}", Quoted(what))]
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
    /// A sampling that needs the other kind of bundle: t values of a snapshot set, member
    /// indices of a curve.
    #[error("sampling: {}", kind_mismatch(asked, *kind))]
    KindMismatch {
        /// What was asked for (`sampling at t`, `a grid of t`, `members`...).
        asked: &'static str,
        /// The kind of the bundle.
        kind: Kind,
    },
    /// A sampling that selects no member at all (an empty list of t or of members).
    #[error("sampling: no members selected")]
    NoMembers,
    /// The operating system's random source failed (randomised sampling).
    #[error("sampling: the OS random source failed: {source}")]
    Random {
        /// What `getrandom` said.
        source: getrandom::Error,
    },
    /// An input batch whose shape does not match the bundle's input.
    #[error(
        "input: shape {found:?} does not match the bundle's input [{}]",
        batch_shape(expected)
    )]
    InputShape {
        /// The shape given.
        found: Vec<usize>,
        /// The bundle's input shape, `-1` for the batch axis.
        expected: Vec<i64>,
    },
    /// A `.npy` file that cannot be read as the array asked for.
    #[error("input: {}: {}", path.display(), Reason(reason))]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The ONNX model could not be decoded or does not have the structure required.
    #[error(
        "ONNX model: {}{}: {}",
        Quoted(part),
        offset.map(|o| format!(" at byte {o}")).unwrap_or_default(),
        Reason(reason)
    )]
    Onnx {
        /// The part of the model at fault: a message type (`ModelProto`), a node, an
        /// initializer or graph input by name.
        part: String,
        /// Where in the serialized model, when known.
        offset: Option<usize>,
        /// What is wrong with it.
        reason: String,
    },
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
    #[error("ONNX Runtime: {source}")]
    Ort {
        /// ONNX Runtime's own code for it.
        code: ort::ErrorCode,
        /// ONNX Runtime's error.
        source: ort::Error,
    },
    /// A count or size beyond what one query may ask for (members, grid points, outputs).
    #[error("invalid argument: {what} of {size} is more than the {limit} one query may use")]
    TooLarge {
        /// What was counted, e.g. `a grid`, `per-member probabilities (floats)`.
        what: &'static str,
        /// The size asked for (saturated at `usize::MAX` when it overflowed).
        size: usize,
        /// The largest size allowed.
        limit: usize,
    },
    /// An argument is invalid on its own (zero counts, empty lists and the like).
    #[error("invalid argument: {} {}", Quoted(what), Reason(reason))]
    InvalidArgument {
        /// The argument at fault, e.g. ``a grid``, ``tensor `fc.weight` ``.
        what: String,
        /// What is wrong with it, e.g. `needs at least 2 points, got 1`.
        reason: String,
    },
}

/// The stable number of each kind of error: the status code of the C ABI
/// (`include/modeconn.h`, `modeconn_status`), which is generated from this list.
///
/// Numbers are never reused: a retired code keeps its number reserved (50 and 51, the trainer
/// plugin's, moved to `modeconn_jobs::ErrorCode` as 110 and 111). New codes may be added, so
/// match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, IntoStaticStr, EnumMessage)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// An argument is invalid on its own (zero counts, empty lists, an unknown enum value).
    InvalidArgument = 2,
    /// A file could not be opened, read, mapped or written.
    Io = 10,
    /// The bundle ends before the data its header promises.
    Truncated = 11,
    /// The bundle's safetensors header is not valid.
    Header = 12,
    /// A bundle metadata key is missing or invalid.
    Metadata = 13,
    /// The bundle's kind is unknown.
    UnknownKind = 14,
    /// The bundle's curve basis is unknown.
    UnknownBasis = 15,
    /// A tensor the bundle needs is missing.
    MissingTensor = 16,
    /// A varying tensor's leading axis has the wrong length.
    LeadingAxis = 17,
    /// A varying tensor has no graph input or initializer of its name.
    MissingGraphInput = 18,
    /// Two shapes that must agree do not.
    ShapeMismatch = 19,
    /// A tensor has the wrong element type.
    Dtype = 20,
    /// A value that must be finite is not.
    NotFinite = 21,
    /// The ONNX model cannot be decoded or lacks the structure required.
    Onnx = 22,
    /// A curve parameter t lies outside [0, 1] or is NaN.
    TOutOfRange = 30,
    /// A snapshot member index is not below the number of members.
    MemberOutOfRange = 31,
    /// A sampling that cannot be honoured for this bundle (t for a snapshot set, members of a
    /// curve, nothing selected).
    Sampling = 32,
    /// The input batch does not match the bundle's input (wrong length or shape), or an input
    /// file cannot be read.
    Input = 33,
    /// The ONNX Runtime shared library could not be found or loaded.
    OrtLibrary = 40,
    /// The device asked for cannot be used here.
    Device = 41,
    /// ONNX Runtime reported an error.
    Ort = 42,
}

impl ErrorCode {
    /// The number (the C ABI's status).
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The name in upper snake case, e.g. `T_OUT_OF_RANGE` (the C status is
    /// `MODECONN_STATUS_` and this name).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl Error {
    /// The stable code of this kind of error (the status of the C ABI).
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Error::InvalidArgument { .. } | Error::TooLarge { .. } => C::InvalidArgument,
            Error::Io { .. } | Error::NotAFile { .. } => C::Io,
            Error::NotABundle { .. } => C::Header,
            Error::Truncated { .. } => C::Truncated,
            Error::Header { .. } => C::Header,
            Error::Metadata { .. } => C::Metadata,
            Error::UnknownKind(_) => C::UnknownKind,
            Error::UnknownBasis(_) => C::UnknownBasis,
            Error::MissingTensor { .. } => C::MissingTensor,
            Error::LeadingAxis { .. } => C::LeadingAxis,
            Error::MissingGraphInput { .. } => C::MissingGraphInput,
            Error::ShapeMismatch { .. } => C::ShapeMismatch,
            Error::DType { .. } => C::Dtype,
            Error::NotFinite { .. } => C::NotFinite,
            Error::Onnx { .. } => C::Onnx,
            Error::TOutOfRange { .. } => C::TOutOfRange,
            Error::MemberOutOfRange { .. } => C::MemberOutOfRange,
            Error::KindMismatch { .. } | Error::NoMembers | Error::Random { .. } => C::Sampling,
            Error::InputShape { .. } | Error::Npy { .. } => C::Input,
            Error::OrtLibrary { .. } => C::OrtLibrary,
            Error::Device { .. } => C::Device,
            Error::Ort { .. } => C::Ort,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    /// An [`Error::InvalidArgument`] naming `what`.
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Onnx`] about `part` of the model, at no particular offset.
    pub(crate) fn onnx(part: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Onnx {
            part: part.into(),
            offset: None,
            reason: reason.into(),
        }
    }
}

impl From<ort::Error> for Error {
    fn from(source: ort::Error) -> Self {
        Error::Ort {
            code: source.code(),
            source,
        }
    }
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(e: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        ort::Error::<()>::from(e).into()
    }
}

/// How many bytes of a name or value a message quotes; longer ones are cut.
const QUOTED: usize = 256;
/// How many bytes of a reason (a sentence of ours that may quote a value) a message keeps.
const REASON: usize = 2048;

/// A name or value as a message quotes it: whole, or its first [`QUOTED`] bytes (on a
/// character boundary) and a note of its full length. A bundle's metadata or tensor names can
/// be megabytes long; a message about them stays a line.
struct Quoted<'a>(&'a str);

/// A reason as a message gives it: whole, or its first [`REASON`] bytes and its full length.
struct Reason<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        cut(f, self.0, QUOTED)
    }
}

impl std::fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        cut(f, self.0, REASON)
    }
}

/// Writes `text`, or its first `limit` bytes and a note of its length.
fn cut(f: &mut std::fmt::Formatter<'_>, text: &str, limit: usize) -> std::fmt::Result {
    if text.len() <= limit {
        return f.write_str(text);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    write!(f, "{}... ({} bytes in all)", &text[..end], text.len())
}

/// The message of [`Error::KindMismatch`].
fn kind_mismatch(asked: &str, kind: Kind) -> String {
    match kind {
        Kind::Snapshots => {
            format!("{asked} needs a curve; this bundle is a snapshot set (choose members)")
        }
        Kind::Curve => format!("{asked} are for snapshot sets; this bundle is a curve (choose t)"),
    }
}

/// An input shape as people read it: `batch, 3, 32, 32`.
fn batch_shape(shape: &[i64]) -> String {
    std::iter::once("batch".to_string())
        .chain(shape.iter().skip(1).map(|d| d.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "é".repeat(5_000_000);
        let e = Error::UnknownKind(long.clone());
        let text = e.to_string();
        assert!(text.len() < 400, "{} bytes", text.len());
        assert!(text.contains("(10000000 bytes in all)"), "{text}");
        let short = Error::UnknownKind("ensemble".into()).to_string();
        assert_eq!(
            short,
            "unknown bundle kind `ensemble` (expected `curve` or `snapshots`)"
        );
        let e = Error::Metadata {
            key: "modeconn.points".into(),
            reason: format!("`{long}` is not a positive integer"),
        };
        assert!(e.to_string().len() < 2200, "{} bytes", e.to_string().len());
    }
}
