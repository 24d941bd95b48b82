//! The C ABI of the modeconn runtime: `libmodeconn.so`, `libmodeconn.a` and
//! `include/modeconn.h` (generated from this crate by cbindgen; see `docs/c-api.md`).
//!
//! Conventions (`STYLE.md` section 3): one `modeconn_` prefix; opaque handles with matching
//! `_new`/`_free`; every fallible function returns a [`modeconn_status`]; the message of the
//! last error of each thread through [`modeconn_last_error_message`]; outputs written only on
//! success; every pointer and length checked; no panic crosses the boundary
//! (the `ffi_boundary!` macro, a `catch_unwind` around every body).
//!
//! Handles are tokens: a live handle's address is registered with the object it stands for
//! (behind an `Arc`), and every call looks it up first. A freed handle is therefore answered
//! with [`modeconn_status::InvalidHandle`] without being dereferenced (until its address is
//! reused by a new handle), and freeing a handle while other threads still use it lets their
//! calls finish.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
// The C names (`modeconn_status`, `modeconn_runtime`, ...) are the API.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Wraps the body of an `extern "C"` function returning [`modeconn_status`]: clears the
/// thread's last error, catches any panic (answered with [`modeconn_status::Panic`]) and turns
/// the body's `Result<(), Failure>` into a status, recording the message of a failure.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        crate::boundary(move || -> crate::FfiResult { $($body)* })
    };
}

/// Checks that a pointer argument is not NULL, answering [`modeconn_status::NullArgument`].
macro_rules! not_null {
    ($ptr:expr, $name:literal) => {
        if $ptr.is_null() {
            return Err(crate::Failure::new(
                crate::modeconn_status::NullArgument,
                concat!("argument `", $name, "` is NULL"),
            ));
        }
    };
}

mod ensemble;
mod handle;
mod runtime;
mod status;
mod trainer;

pub use ensemble::*;
pub use runtime::*;
pub use status::modeconn_status;
pub use trainer::*;

/// What a failed call reports: its status and a message for the thread's last error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: modeconn_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: modeconn_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<::modeconn_runtime::Error> for Failure {
    fn from(e: ::modeconn_runtime::Error) -> Self {
        Failure::new(modeconn_status::from_code(e.code()), e.to_string())
    }
}

/// Result of the body of an `extern "C"` function.
pub(crate) type FfiResult = Result<(), Failure>;

thread_local! {
    /// The message of the calling thread's last error (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the message of a failure for [`modeconn_last_error_message`].
pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot be represented in a C string: replace them.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
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

/// Turns a panic payload into text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs the body of an `extern "C"` function: clears the thread's last error, catches any
/// panic, and turns the body's `Result<(), Failure>` into a [`modeconn_status`], recording the
/// message of a failure.
pub(crate) fn boundary(body: impl FnOnce() -> FfiResult) -> modeconn_status {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => modeconn_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error (a panic was caught at the C boundary): {}",
                panic_message(payload.as_ref())
            ));
            modeconn_status::Panic
        }
    }
}

/// Borrows a NUL-terminated UTF-8 argument.
///
/// # Safety
///
/// `ptr` must be non-NULL and point to a NUL-terminated string valid during the call.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            modeconn_status::NullArgument,
            format!("argument `{name}` is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| {
        Failure::new(
            modeconn_status::Utf8,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// Borrows a caller's array of `len` items; NULL is accepted only with `len == 0`.
///
/// # Safety
///
/// When non-NULL, `ptr` must point to `len` initialised items valid during the call.
pub(crate) unsafe fn slice_in<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> Result<&'a [T], Failure> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::new(
            modeconn_status::NullArgument,
            format!("argument `{name}` is NULL but its length is {len}"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(Failure::new(
            modeconn_status::InvalidArgument,
            format!("argument `{name}` is not aligned"),
        ));
    }
    // SAFETY: non-NULL, aligned, `len` items (the caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes `value` through an out-parameter already checked to be non-NULL.
///
/// # Safety
///
/// `ptr` must be non-NULL and valid for writes.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: the caller's contract.
    unsafe { ptr.write(value) }
}

/// The library's version as a string, e.g. `"0.1.0"`.
///
/// Returns a static NUL-terminated string owned by the library (never NULL, never to be
/// freed). Cannot fail; safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The library's version as `major * 10000 + minor * 100 + patch`, to compare with the
/// header's `MODECONN_ABI_VERSION`: a program built against a header of another major version
/// (or, while the major version is 0, another minor version) must not use this library.
///
/// Cannot fail; safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_abi_version() -> u32 {
    const fn parse(s: &str) -> u32 {
        let b = s.as_bytes();
        let mut n = 0u32;
        let mut i = 0;
        while i < b.len() {
            n = n * 10 + (b[i] - b'0') as u32;
            i += 1;
        }
        n
    }
    const ABI: u32 = parse(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + parse(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + parse(env!("CARGO_PKG_VERSION_PATCH"));
    ABI
}

/// The message of the calling thread's last failed call, or an empty string when the last
/// call succeeded (or none was made).
///
/// Returns a NUL-terminated UTF-8 string owned by the library, valid until the next call of
/// any other `modeconn_` function on the same thread; copy it to keep it. Never NULL, never to
/// be freed. Calling it does not change the last error. Each thread has its own.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_last_error_message() -> *const c_char {
    // Cannot panic: `with` only fails during thread teardown, handled by `try_with`.
    LAST_ERROR
        .try_with(|cell| match cell.try_borrow() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// The name of a status, e.g. `"MODECONN_STATUS_NULL_ARGUMENT"`; `"MODECONN_STATUS_UNKNOWN"`
/// for a number that is not a status.
///
/// Returns a static NUL-terminated string (never NULL, never to be freed). Cannot fail; safe
/// from any thread; does not change the last error.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_status_name(status: u32) -> *const c_char {
    status::name(status).as_ptr()
}
