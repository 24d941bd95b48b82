//! The C ABI of the modeconn runtime: `libmodeconn.so`, `libmodeconn.a` and
//! `include/modeconn.h` (generated from this crate by cbindgen; see `docs/c-api.md`), with
//! `include/modeconn.hpp`, a header-only C++17 wrapper over it.
//!
//! One module per C object, named after its prefix: [`runtime`] (`modeconn_runtime_*`),
//! [`ensemble`] (`modeconn_ensemble_open`, properties and metadata), [`predict`] (the input,
//! sampling and outputs of `modeconn_ensemble_predict`), [`member`] (`modeconn_member`,
//! materialising one), [`trainer`] (`modeconn_train`), [`status`] (statuses, the last error).
//!
//! Conventions (`STYLE.md` section 3): opaque handles with matching `_new`/`_free`; every
//! fallible function returns a [`modeconn_status`]; the message of the last error of each
//! thread through [`modeconn_last_error_message`]; outputs written only on success; every
//! pointer and length checked; no panic crosses the boundary: fallible functions run inside
//! `ffi_boundary!`, the others inside `ffi_value!`, both a `catch_unwind`.
//!
//! Handles are tokens: a live handle's address is registered with the object it stands for
//! (behind an `Arc`), and every call looks it up first. A freed handle is therefore answered
//! with `MODECONN_STATUS_INVALID_HANDLE` without being dereferenced (until its address is
//! reused by a new handle), and freeing a handle while other threads still use it lets their
//! calls finish.
//!
//! The doc comments of the `extern "C"` items are the header's comments, so they are written
//! for C programmers: plain text, no Rust markup; the contract on pointers is stated in each
//! function's "Pointers" paragraph rather than a rustdoc `# Safety` section.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
// The C names (`modeconn_status`, `modeconn_runtime`, ...) are the API.
#![allow(non_camel_case_types)]
// See the crate documentation: the safety contract is in each function's "Pointers" paragraph.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Wraps the body of an `extern "C"` function returning [`modeconn_status`]: clears the
/// thread's last error, catches any panic (answered with `MODECONN_STATUS_PANIC`) and turns
/// the body's `Result<(), Failure>` into a status, recording the message of a failure.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        crate::boundary(move || -> crate::FfiResult { $($body)* })
    };
}

/// Wraps the body of an `extern "C"` function that returns a value rather than a status:
/// a panic is caught and answered with `$fallback`.
macro_rules! ffi_value {
    ($fallback:expr, $($body:tt)*) => {
        crate::guard_value($fallback, move || { $($body)* })
    };
}

/// Checks that a pointer argument is not NULL, answering `MODECONN_STATUS_NULL_ARGUMENT`.
macro_rules! not_null {
    ($ptr:expr, $name:literal) => {
        if $ptr.is_null() {
            return Err(crate::Failure::new(
                crate::ApiStatus::NullArgument,
                concat!("argument `", $name, "` is NULL"),
            ));
        }
    };
}

pub mod ensemble;
mod handle;
pub mod member;
pub mod predict;
pub mod runtime;
pub mod status;
pub mod trainer;

pub use ensemble::*;
pub use member::*;
pub use predict::*;
pub use runtime::*;
pub use status::*;
pub use trainer::*;

/// What a failed call reports: its status and a message for the thread's last error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: modeconn_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: impl Into<modeconn_status>, message: impl Into<String>) -> Self {
        Failure {
            status: status.into(),
            message: message.into(),
        }
    }

    /// A failure of status `INVALID_ARGUMENT`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(::modeconn_runtime::ErrorCode::InvalidArgument, message)
    }
}

impl From<::modeconn_runtime::Error> for Failure {
    fn from(e: ::modeconn_runtime::Error) -> Self {
        Failure::new(e.code(), e.to_string())
    }
}

/// Result of the body of an `extern "C"` function.
pub(crate) type FfiResult = Result<(), Failure>;

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
    status::clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => modeconn_status::OK,
        Ok(Err(failure)) => {
            status::set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            status::set_last_error(&format!(
                "internal error (a panic was caught at the C boundary): {}",
                panic_message(payload.as_ref())
            ));
            ApiStatus::Panic.into()
        }
    }
}

/// Runs the body of an `extern "C"` function that returns a value: a panic is answered with
/// `fallback`. The thread's last error is left alone.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Borrows a NUL-terminated UTF-8 argument.
///
/// # Safety
///
/// `ptr` must be NULL or point to a NUL-terminated string valid during the call.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            ApiStatus::NullArgument,
            format!("argument `{name}` is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| {
        Failure::new(
            ApiStatus::Utf8,
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
            ApiStatus::NullArgument,
            format!("argument `{name}` is NULL but its length is {len}"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!(
            "argument `{name}` is not aligned"
        )));
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

/// The library's version as a string, e.g. "0.2.0".
///
/// Returns a static NUL-terminated string owned by the library (never NULL, never to be
/// freed). Cannot fail; safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_version() -> *const c_char {
    ffi_value! {
        c"unknown".as_ptr(),
        static VERSION: &CStr =
            match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
                Ok(v) => v,
                Err(_) => c"unknown",
            };
        VERSION.as_ptr()
    }
}

/// The library's version as major * 10000 + minor * 100 + patch, to compare with the header's
/// MODECONN_ABI_VERSION: a program built against a header of another major version (or, while
/// the major version is 0, another minor version) must not use this library. Version 0.2
/// brought the C ABI version 2 (one predict call, typed enums, metadata accessors).
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
