//! Training from C: runs a job through the trainer plugin (`libmodeconn_trainer.so`).
//!
//! The plugin is found, loaded and called by [`modeconn_jobs::plugin`], as the CLI does, plus
//! the folder of this library: the explicit path, then `MODECONN_TRAINER`, then beside
//! `libmodeconn.so` (when the library is loaded as a shared object), then beside the
//! executable. A path given explicitly or by the variable must exist. The job is the same JSON
//! the CLI sends (`modeconn_jobs::Job`), checked here before the plugin runs it.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};

use modeconn_jobs::{Job, TrainerPlugin};

use crate::{Failure, c_str, modeconn_status, write_out};

impl From<modeconn_jobs::Error> for Failure {
    fn from(e: modeconn_jobs::Error) -> Self {
        Failure::new(e.code(), e.to_string())
    }
}

/// The progress callback of modeconn_train: called with one event (a NUL-terminated JSON
/// object tagged by "event", owned by the library and valid only during the call) and the
/// user pointer given to modeconn_train. It runs on the thread that called modeconn_train,
/// before that call returns, and must not unwind (no C++ exception). Calls it makes into this
/// library do not change the last error modeconn_train reports.
pub type modeconn_progress_fn =
    Option<unsafe extern "C" fn(event_json: *const c_char, user: *mut c_void)>;

/// The folder of the shared object this function lives in (`libmodeconn.so`), or of the
/// executable when the library is linked statically.
fn own_folder() -> Option<PathBuf> {
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = own_folder as *const c_void;
    // SAFETY: `dladdr` only reads its first argument's value and writes `info`.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated path owned by the loader, valid while the object is loaded.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let path = std::path::absolute(name).ok()?;
    path.parent().map(Path::to_path_buf)
}

/// Runs a training job (train, curve, fge or eval) through the trainer plugin.
///
/// plugin: path of libmodeconn_trainer.so, or NULL to search MODECONN_TRAINER, then the
/// folder of libmodeconn.so, then the folder of the executable. Borrowed.
///
/// job_json: the job as a NUL-terminated JSON object tagged by "command", the same the CLI's
/// training commands send (docs/c-api.md lists the fields). Borrowed during the call.
///
/// progress: NULL, or called with each progress event (see modeconn_progress_fn) on the
/// calling thread while the job runs; user is passed to it unchanged.
///
/// report: receives the report (a NUL-terminated JSON object with "ok": true and the
/// metrics), owned by the caller, to be released with modeconn_string_free. Written only on
/// success.
///
/// The job is checked before the plugin is looked for, so a bad job is answered without
/// libtorch.
///
/// Statuses: OK; NULL_ARGUMENT; UTF8; INVALID_JOB (the job is not JSON or not a valid job;
/// the message names the field); TRAINER_UNAVAILABLE (plugin not found, not loadable, not a
/// plugin, or another ABI version); TRAINER_FAILED (the trainer refused the job or failed: the
/// message is the trainer's error); PANIC.
///
/// Thread-safe (jobs on several threads compete for libtorch's threads and devices). The
/// plugin stays loaded for the rest of the process.
///
/// Pointers: plugin and job_json are NULL or NUL-terminated; progress is NULL or a function
/// safe to call with user; report is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_train(
    plugin: *const c_char,
    job_json: *const c_char,
    progress: modeconn_progress_fn,
    user: *mut c_void,
    report: *mut *mut c_char,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(report, "report");
        // SAFETY: NULL or NUL-terminated (this function's contract).
        let text = unsafe { c_str(job_json, "job_json") }?;
        let explicit = if plugin.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated (this function's contract).
            Some(PathBuf::from(unsafe { c_str(plugin, "plugin") }?))
        };
        // The job first: a bad one is answered without loading libtorch.
        let job = Job::from_json(text)?;
        let extra: Vec<PathBuf> = own_folder().into_iter().collect();
        let path = TrainerPlugin::locate(explicit.as_deref(), &extra)?;
        let trainer = TrainerPlugin::load(&path)?;
        let mut on_event = |event: &modeconn_jobs::Event| {
            let Some(f) = progress else {
                return;
            };
            let Ok(event) = serde_json::to_string(event).map(CString::new) else {
                return;
            };
            if let Ok(event) = event {
                // SAFETY: `event` is a C string alive during the call; `progress` and `user`
                // are the caller's, called as `modeconn_progress_fn` documents.
                unsafe { f(event.as_ptr(), user) };
            }
        };
        let done = trainer.run(&job, &mut on_event)?;
        // A callback that called into this library left its own last error behind; the
        // outcome of this call is what it reports.
        crate::status::clear_last_error();
        let text = serde_json::to_string(&done).map_err(|e| {
            Failure::new(::modeconn_jobs::ErrorCode::TrainerFailed, format!("the report cannot be written: {e}"))
        })?;
        let out = CString::new(text).map_err(|_| {
            Failure::new(::modeconn_jobs::ErrorCode::TrainerFailed, "the report contains a NUL")
        })?;
        // SAFETY: checked non-NULL; valid for writes (this function's contract).
        unsafe { write_out(report, out.into_raw()) };
        Ok(())
    }
}

/// Releases a string returned by this library (the report of modeconn_train). NULL does
/// nothing. Always returns OK. Any thread may release it.
///
/// Pointers: s is NULL or a string returned by this library and not yet released; it must not
/// be used afterwards. Never pass it to free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_string_free(s: *mut c_char) -> modeconn_status {
    ffi_boundary! {
        if !s.is_null() {
            // SAFETY: made by `CString::into_raw` in this library, released once (contract).
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    }
}
