//! The plugin's C ABI: what the `modeconn` CLI and the C API call after loading this crate's
//! `cdylib` (`libmodeconn_trainer.so`) with `libloading`.
//!
//! Three symbols, all `extern "C"`, in the order a loader uses them:
//!
//! 1. [`modeconn_trainer_abi_version`]: resolve it first and refuse the plugin unless it returns
//!    the version the loader was written for ([`ABI_VERSION`], defined by `modeconn-jobs`,
//!    whose loader `modeconn_jobs::plugin` the CLI and the C API use).
//! 2. [`modeconn_trainer_run`]: a job as JSON in (see [`crate::job::Job`]), progress events as
//!    JSON through a callback (see [`crate::job::Event`]), a report as JSON out.
//! 3. [`modeconn_trainer_free_string`]: gives a report back to the plugin, which allocated it.
//!
//! Strings are NUL-terminated UTF-8. The report is a JSON object that always has a boolean
//! `"ok"`: on success it is the [`crate::job::Report`] that [`crate::run::run`] returned
//! (`"ok": true`, the command, the output path, the metrics); on any failure it is
//! `{"ok": false, "error": "<one line>"}`.
//! No Rust panic crosses the boundary: one is caught and reported like any other error.
//!
//! In C:
//!
//! ```c
//! typedef void (*modeconn_trainer_progress)(const char *event_json, void *user);
//! uint32_t modeconn_trainer_abi_version(void);
//! char *modeconn_trainer_run(const char *job_json, modeconn_trainer_progress progress,
//!                            void *user);
//! void modeconn_trainer_free_string(char *s);
//! ```

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value, json};

use modeconn_jobs::{ABI_VERSION, Event, Job};

/// The progress callback: called with one event (a JSON object tagged by `"event"`) and the
/// `user` pointer given to [`modeconn_trainer_run`].
///
/// `event_json` is a NUL-terminated UTF-8 string owned by the plugin and valid only during the
/// call; copy it to keep it. The callback runs on the thread that called
/// [`modeconn_trainer_run`], before that call returns. It must not unwind (no C++ exception, no
/// Rust panic) and must not call [`modeconn_trainer_free_string`] on `event_json`.
pub type ProgressCallback = unsafe extern "C" fn(event_json: *const c_char, user: *mut c_void);

/// The version of this plugin's C ABI, [`ABI_VERSION`].
///
/// A loader resolves this symbol first and refuses the plugin when the number differs from the
/// one it was built for. Takes nothing, cannot fail, may be called from any thread at any time.
#[unsafe(no_mangle)]
pub extern "C" fn modeconn_trainer_abi_version() -> u32 {
    ABI_VERSION
}

/// Runs one job and returns its report.
///
/// - `job_json`: a NUL-terminated UTF-8 string holding one job (a JSON object tagged by
///   `"command"`: `train`, `curve`, `fge` or `eval`; unknown fields are refused). Borrowed: the
///   caller keeps ownership and it only needs to stay valid until this call returns. NULL is
///   accepted and answered with an error report.
/// - `progress`: called with each progress event while the job runs (see [`ProgressCallback`]);
///   NULL means no progress.
/// - `user`: passed unchanged to `progress`, never read by the plugin; may be NULL.
///
/// Returns the report: a NUL-terminated UTF-8 JSON object allocated by the plugin, which the
/// caller owns and must release with [`modeconn_trainer_free_string`] (never with `free`). It
/// has `"ok": true` and the metrics on success, and `{"ok": false, "error": "<one line>"}` on
/// any failure: a NULL or non-UTF-8 job, JSON that is not a valid job, a job the trainer
/// refuses or fails on, even a panic inside the trainer. The function does not return NULL:
/// the only way it could is running out of memory, which aborts the process as Rust does
/// everywhere; a careful caller may still treat NULL as an error without a message.
///
/// Threading: the call is synchronous and may be made from any thread; callbacks happen on the
/// calling thread. Jobs that run at the same time on different threads share libtorch's thread
/// pools and devices, so they are allowed but compete for them.
///
/// # Safety
///
/// `job_json` must be NULL or point to a NUL-terminated string that stays valid and unchanged
/// during the call. `progress`, when not NULL, must be a function with the signature of
/// [`ProgressCallback`] that is safe to call with `user` during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_trainer_run(
    job_json: *const c_char,
    progress: Option<ProgressCallback>,
    user: *mut c_void,
) -> *mut c_char {
    let report = guarded(|| {
        // SAFETY: `job_json` is NULL or a valid C string (this function's contract).
        let text = unsafe { job_text(job_json) }?;
        run_text(text, progress, user)
    });
    into_c_string(&report)
}

/// Releases a string returned by [`modeconn_trainer_run`]. NULL does nothing.
///
/// # Safety
///
/// `s` must be NULL or a pointer returned by [`modeconn_trainer_run`] of this same plugin that
/// was not released before; it must not be used afterwards. Any thread may release it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_trainer_free_string(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // Dropping a `CString` cannot panic, so nothing can unwind out of here.
    // SAFETY: `s` came from `CString::into_raw` in `into_c_string` and is released once
    // (this function's contract).
    drop(unsafe { CString::from_raw(s) });
}

/// Runs `body`, turning its result, its error or its panic into a report.
fn guarded(body: impl FnOnce() -> Result<Value, String>) -> Value {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(report)) => success_report(report),
        Ok(Err(message)) => error_report(&message),
        Err(payload) => error_report(&format!(
            "the trainer panicked: {}",
            panic_message(payload.as_ref())
        )),
    }
}

/// Reads the job text, answering NULL and non-UTF-8 input with a message.
///
/// # Safety
///
/// `job_json` must be NULL or a valid NUL-terminated string.
unsafe fn job_text<'a>(job_json: *const c_char) -> Result<&'a str, String> {
    if job_json.is_null() {
        return Err("invalid job: the job is NULL (expected a JSON object as a C string)".into());
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(job_json) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "invalid job: the job is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })
}

/// Parses and runs a job, sending each event to `progress`.
fn run_text(
    text: &str,
    progress: Option<ProgressCallback>,
    user: *mut c_void,
) -> Result<Value, String> {
    let job = Job::from_json(text).map_err(|e| e.to_string())?;
    let mut on_event = |event: &Event| {
        let Some(callback) = progress else {
            return;
        };
        // Events serialise to JSON without fail, and JSON escapes NUL, so both conversions
        // succeed; an event that could not be sent is dropped rather than failing the job.
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        let Ok(text) = CString::new(text) else {
            return;
        };
        // SAFETY: `callback` and `user` are valid during the run (caller's contract); `text`
        // outlives the call.
        unsafe { callback(text.as_ptr(), user) };
    };
    let report = crate::run::run(&job, &mut on_event).map_err(|e| e.to_string())?;
    serde_json::to_value(&report).map_err(|e| format!("the report cannot be serialised: {e}"))
}

/// The report of a successful run: the object `run` returned, with `"ok": true` unless it says
/// otherwise; anything but an object is put under `"report"`.
fn success_report(report: Value) -> Value {
    match report {
        Value::Object(mut map) => {
            map.entry("ok").or_insert(Value::Bool(true));
            Value::Object(map)
        }
        other => {
            let mut map = Map::new();
            map.insert("ok".into(), Value::Bool(true));
            map.insert("report".into(), other);
            Value::Object(map)
        }
    }
}

/// The report of a failure: `{"ok": false, "error": message}`, the message on one line.
fn error_report(message: &str) -> Value {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = if line.is_empty() {
        "the trainer failed without a message".to_string()
    } else {
        line
    };
    json!({ "ok": false, "error": line })
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "no message"
    }
}

/// Serialises a report into a C string owned by the caller.
fn into_c_string(report: &Value) -> *mut c_char {
    // Serialising a `Value` cannot fail and JSON escapes NUL, so the fallback is never used;
    // it keeps the promise of a valid report anyway.
    let text = serde_json::to_string(report)
        .ok()
        .and_then(|t| CString::new(t).ok())
        .unwrap_or_else(|| {
            CString::from(c"{\"ok\":false,\"error\":\"the report could not be serialised\"}")
        });
    text.into_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reports_are_one_line() {
        let report = error_report("first\nsecond\r\n  third");
        assert_eq!(report["error"], "first second third");
        assert_eq!(report["ok"], false);
        assert_eq!(
            error_report(" \n")["error"],
            "the trainer failed without a message"
        );
    }

    #[test]
    fn success_reports_say_ok() {
        assert_eq!(success_report(json!({"a": 1}))["ok"], true);
        assert_eq!(success_report(json!({"ok": true, "a": 1}))["a"], 1);
        let wrapped = success_report(json!([1, 2]));
        assert_eq!(wrapped["ok"], true);
        assert_eq!(wrapped["report"], json!([1, 2]));
    }

    #[test]
    fn panics_become_error_reports() {
        let report = guarded(|| panic!("boom\nat line 2"));
        assert_eq!(report["ok"], false);
        assert_eq!(report["error"], "the trainer panicked: boom at line 2");
        assert_eq!(guarded(|| Err("bad".into()))["error"], "bad");
        assert_eq!(guarded(|| Ok(json!({})))["ok"], true);
    }

    #[test]
    fn panic_payloads_are_read() {
        let payload: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_message(payload.as_ref()), "static");
        let payload: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(payload.as_ref()), "owned");
        let payload: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(payload.as_ref()), "no message");
    }
}
