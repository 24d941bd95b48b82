//! The status codes of the C API.

use std::ffi::CStr;

/// The result of every fallible function of the C API. `MODECONN_STATUS_OK` (0) is success;
/// on any other status `modeconn_last_error_message()` says what went wrong.
///
/// Numbers 2 to 99 are the runtime's own error codes (`modeconn_runtime::Error::code`), 100 and
/// above belong to the C API. Numbers are never reused: a retired status keeps its number
/// reserved. New statuses may be added, so treat an unknown number as a failure.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_status {
    /// Success.
    Ok = 0,
    /// An error of the runtime that this version of the C API does not name.
    Unknown = 1,
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
    /// A sampling request that cannot be honoured for this bundle.
    Sampling = 32,
    /// The input batch does not match the bundle's input (wrong length or shape).
    Input = 33,
    /// The ONNX Runtime shared library could not be found or loaded.
    OrtLibrary = 40,
    /// The device asked for cannot be used here.
    Device = 41,
    /// ONNX Runtime reported an error.
    Ort = 42,
    /// A pointer argument that must not be NULL is NULL.
    NullArgument = 100,
    /// An output buffer is smaller than the result; the function's documentation says how to
    /// query the size needed.
    BufferTooSmall = 101,
    /// A handle is not a live handle of its type (e.g. it was already freed).
    InvalidHandle = 102,
    /// An internal error: a Rust panic caught at the boundary. Please report it.
    Panic = 103,
    /// A string argument is not valid UTF-8.
    Utf8 = 104,
    /// The trainer plugin was not found, could not be loaded, or speaks another ABI version.
    TrainerUnavailable = 110,
    /// The trainer ran the job and reported a failure (or an invalid job).
    TrainerFailed = 111,
    /// The job JSON does not parse or has invalid fields.
    InvalidJob = 112,
}

/// Every status, in order of number.
const ALL: [modeconn_status; 31] = {
    use modeconn_status as S;
    [
        S::Ok,
        S::Unknown,
        S::InvalidArgument,
        S::Io,
        S::Truncated,
        S::Header,
        S::Metadata,
        S::UnknownKind,
        S::UnknownBasis,
        S::MissingTensor,
        S::LeadingAxis,
        S::MissingGraphInput,
        S::ShapeMismatch,
        S::Dtype,
        S::NotFinite,
        S::Onnx,
        S::TOutOfRange,
        S::MemberOutOfRange,
        S::Sampling,
        S::Input,
        S::OrtLibrary,
        S::Device,
        S::Ort,
        S::NullArgument,
        S::BufferTooSmall,
        S::InvalidHandle,
        S::Panic,
        S::Utf8,
        S::TrainerUnavailable,
        S::TrainerFailed,
        S::InvalidJob,
    ]
};

impl modeconn_status {
    /// The status of a runtime error code ([`modeconn_runtime::Error::code`]): the same
    /// number, or [`modeconn_status::Unknown`] for a code this version does not name.
    pub fn from_code(code: u32) -> Self {
        ALL.iter()
            .copied()
            .find(|s| *s as u32 == code && (2..100).contains(&code))
            .unwrap_or(Self::Unknown)
    }
}

/// The C name of a status number.
pub(crate) fn name(status: u32) -> &'static CStr {
    use modeconn_status as S;
    let Some(s) = ALL.iter().copied().find(|s| *s as u32 == status) else {
        return c"MODECONN_STATUS_UNKNOWN";
    };
    match s {
        S::Ok => c"MODECONN_STATUS_OK",
        S::Unknown => c"MODECONN_STATUS_UNKNOWN",
        S::InvalidArgument => c"MODECONN_STATUS_INVALID_ARGUMENT",
        S::Io => c"MODECONN_STATUS_IO",
        S::Truncated => c"MODECONN_STATUS_TRUNCATED",
        S::Header => c"MODECONN_STATUS_HEADER",
        S::Metadata => c"MODECONN_STATUS_METADATA",
        S::UnknownKind => c"MODECONN_STATUS_UNKNOWN_KIND",
        S::UnknownBasis => c"MODECONN_STATUS_UNKNOWN_BASIS",
        S::MissingTensor => c"MODECONN_STATUS_MISSING_TENSOR",
        S::LeadingAxis => c"MODECONN_STATUS_LEADING_AXIS",
        S::MissingGraphInput => c"MODECONN_STATUS_MISSING_GRAPH_INPUT",
        S::ShapeMismatch => c"MODECONN_STATUS_SHAPE_MISMATCH",
        S::Dtype => c"MODECONN_STATUS_DTYPE",
        S::NotFinite => c"MODECONN_STATUS_NOT_FINITE",
        S::Onnx => c"MODECONN_STATUS_ONNX",
        S::TOutOfRange => c"MODECONN_STATUS_T_OUT_OF_RANGE",
        S::MemberOutOfRange => c"MODECONN_STATUS_MEMBER_OUT_OF_RANGE",
        S::Sampling => c"MODECONN_STATUS_SAMPLING",
        S::Input => c"MODECONN_STATUS_INPUT",
        S::OrtLibrary => c"MODECONN_STATUS_ORT_LIBRARY",
        S::Device => c"MODECONN_STATUS_DEVICE",
        S::Ort => c"MODECONN_STATUS_ORT",
        S::NullArgument => c"MODECONN_STATUS_NULL_ARGUMENT",
        S::BufferTooSmall => c"MODECONN_STATUS_BUFFER_TOO_SMALL",
        S::InvalidHandle => c"MODECONN_STATUS_INVALID_HANDLE",
        S::Panic => c"MODECONN_STATUS_PANIC",
        S::Utf8 => c"MODECONN_STATUS_UTF8",
        S::TrainerUnavailable => c"MODECONN_STATUS_TRAINER_UNAVAILABLE",
        S::TrainerFailed => c"MODECONN_STATUS_TRAINER_FAILED",
        S::InvalidJob => c"MODECONN_STATUS_INVALID_JOB",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::modeconn_runtime::Error;

    #[test]
    fn runtime_codes_map_to_the_same_numbers() {
        let errors = [
            Error::InvalidArgument(String::new()),
            Error::Io {
                path: "x".into(),
                source: std::io::Error::other("x"),
            },
            Error::Truncated {
                detail: String::new(),
            },
            Error::Header {
                detail: String::new(),
            },
            Error::Metadata {
                key: String::new(),
                reason: String::new(),
            },
            Error::UnknownKind(String::new()),
            Error::UnknownBasis(String::new()),
            Error::TOutOfRange { t: 2.0 },
            Error::MemberOutOfRange { index: 3, count: 2 },
            Error::Sampling(String::new()),
            Error::Input(String::new()),
            Error::Onnx(String::new()),
            Error::OrtLibrary {
                detail: String::new(),
            },
            Error::Ort(String::new()),
        ];
        for e in errors {
            assert_eq!(modeconn_status::from_code(e.code()) as u32, e.code(), "{e}");
        }
        for code in 2..100 {
            let s = modeconn_status::from_code(code);
            assert!(s as u32 == code || s == modeconn_status::Unknown);
        }
    }

    #[test]
    fn names_are_the_c_names() {
        assert_eq!(name(0), c"MODECONN_STATUS_OK");
        assert_eq!(name(101), c"MODECONN_STATUS_BUFFER_TOO_SMALL");
        assert_eq!(name(9999), c"MODECONN_STATUS_UNKNOWN");
    }
}
