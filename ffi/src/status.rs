//! The statuses of the C API and the thread's last error.
//!
//! [`modeconn_status`] is the one table: its numbers, C names and documentation. The numbers
//! of the runtime's errors are those of `modeconn_runtime::ErrorCode` and of the trainer
//! plugin's those of `modeconn_jobs::ErrorCode`, so an error becomes a status by its number;
//! the names come from the variants (strum), and a test checks that every code of both crates
//! has the status of the same number and name.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::sync::OnceLock;

/// The result of every fallible function of the C API. MODECONN_STATUS_OK (0) is success; on
/// any other status modeconn_last_error_message() says what went wrong.
///
/// Numbers 2 to 99 are the runtime's error codes, 100 and above belong to the C API and the
/// trainer plugin. Numbers are never reused: a retired status keeps its number reserved (50 and
/// 51, the trainer's before version 0.2, are now 110 and 111). New statuses may be added, so
/// treat an unknown number as a failure.
#[repr(u32)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum modeconn_status {
    /// Success.
    Ok = 0,
    /// An error that this version of the C API does not name.
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
    /// A sampling that cannot be honoured for this bundle (t for a snapshot set, members of a
    /// curve, nothing selected).
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
    /// An output buffer is smaller than the result; modeconn_ensemble_output_sizes says how
    /// much room each output needs.
    BufferTooSmall = 101,
    /// A handle is not a live handle of its type (e.g. it was already freed).
    InvalidHandle = 102,
    /// An internal error: a Rust panic caught at the boundary. Please report it.
    Panic = 103,
    /// A string argument is not valid UTF-8.
    Utf8 = 104,
    /// The trainer plugin was not found, could not be loaded, or speaks another ABI version.
    TrainerUnavailable = 110,
    /// The trainer ran the job and reported a failure.
    TrainerFailed = 111,
    /// The job is not valid JSON or not a valid job (an unknown command or field, a value of
    /// the wrong type).
    InvalidJob = 112,
}

impl modeconn_status {
    /// The status of this number, or [`modeconn_status::Unknown`].
    fn of_number(number: u32) -> Self {
        Self::from_repr(number).unwrap_or(Self::Unknown)
    }
}

impl From<::modeconn_runtime::ErrorCode> for modeconn_status {
    fn from(code: ::modeconn_runtime::ErrorCode) -> Self {
        Self::of_number(code.number())
    }
}

impl From<::modeconn_jobs::ErrorCode> for modeconn_status {
    fn from(code: ::modeconn_jobs::ErrorCode) -> Self {
        Self::of_number(code as u32)
    }
}

/// The C names of the statuses, NUL-terminated, built once from the variants.
fn names() -> &'static [(u32, CString)] {
    static NAMES: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        <modeconn_status as strum::IntoEnumIterator>::iter()
            .filter_map(|s| {
                let name: &'static str = s.into();
                let c = CString::new(format!("MODECONN_STATUS_{name}")).ok()?;
                Some((s as u32, c))
            })
            .collect()
    })
}

thread_local! {
    /// The message of the calling thread's last error (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the message of a failure for [`modeconn_last_error_message`].
pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot be represented in a C string: replace them.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|cell| {
        if let Ok(mut last) = cell.try_borrow_mut() {
            *last = text;
        }
    });
}

/// Clears the calling thread's last error (at the start of every call).
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|cell| {
        if let Ok(mut last) = cell.try_borrow_mut()
            && !last.as_bytes().is_empty()
        {
            *last = CString::default();
        }
    });
}

/// The message of the calling thread's last failed call, or an empty string when the last
/// call succeeded (or none was made).
///
/// Returns a NUL-terminated UTF-8 string owned by the library, valid until the next call of
/// any other modeconn_ function on the same thread; copy it to keep it. Never NULL, never to
/// be freed. Calling it does not change the last error. Each thread has its own.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_last_error_message() -> *const c_char {
    ffi_value! {
        c"".as_ptr(),
        LAST_ERROR
            .try_with(|cell| match cell.try_borrow() {
                Ok(s) => s.as_ptr(),
                Err(_) => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    }
}

/// The name of a status, e.g. "MODECONN_STATUS_NULL_ARGUMENT"; "MODECONN_STATUS_UNKNOWN" for
/// a number that is not a status.
///
/// Returns a static NUL-terminated string (never NULL, never to be freed). Cannot fail; safe
/// from any thread; does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_status_name(status: u32) -> *const c_char {
    ffi_value! {
        c"MODECONN_STATUS_UNKNOWN".as_ptr(),
        names()
            .iter()
            .find(|(n, _)| *n == status)
            .map_or(c"MODECONN_STATUS_UNKNOWN".as_ptr(), |(_, name)| name.as_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    fn name(status: u32) -> String {
        // SAFETY: the function returns a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(modeconn_status_name(status)) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_runtime_code_is_the_status_of_its_number_and_name() {
        for code in ::modeconn_runtime::ErrorCode::iter() {
            let status = modeconn_status::from(code);
            assert_eq!(status as u32, code.number(), "{code:?}");
            assert_eq!(
                name(status as u32),
                format!("MODECONN_STATUS_{}", code.name())
            );
        }
    }

    #[test]
    fn every_trainer_code_is_the_status_of_its_number_and_name() {
        use ::modeconn_jobs::ErrorCode as J;
        for (code, expected) in [
            (J::TrainerUnavailable, "MODECONN_STATUS_TRAINER_UNAVAILABLE"),
            (J::TrainerFailed, "MODECONN_STATUS_TRAINER_FAILED"),
            (J::InvalidJob, "MODECONN_STATUS_INVALID_JOB"),
        ] {
            let status = modeconn_status::from(code);
            assert_eq!(status as u32, code as u32, "{code:?}");
            assert_eq!(name(status as u32), expected);
        }
    }

    #[test]
    fn names_are_the_c_names() {
        assert_eq!(name(0), "MODECONN_STATUS_OK");
        assert_eq!(name(30), "MODECONN_STATUS_T_OUT_OF_RANGE");
        assert_eq!(name(101), "MODECONN_STATUS_BUFFER_TOO_SMALL");
        assert_eq!(name(104), "MODECONN_STATUS_UTF8");
        assert_eq!(name(9999), "MODECONN_STATUS_UNKNOWN");
        assert_eq!(name(50), "MODECONN_STATUS_UNKNOWN", "50 is retired");
        assert_eq!(names().len(), modeconn_status::iter().count());
    }
}
