//! Finding, loading and calling the trainer plugin (`libmodeconn_trainer.so`), the `cdylib` of
//! the `modeconn-trainer` crate. This crate never links libtorch: the plugin does, and it is
//! only loaded when a training job runs. The CLI and the C API both use this module.
//!
//! Where the plugin is looked for, first match wins (see [`TrainerPlugin::locate`]):
//! 1. an explicit path (the CLI's `--trainer PATH`, the C API's `plugin` argument);
//! 2. the environment variable [`ENV_VAR`] (`MODECONN_TRAINER`);
//! 3. the caller's extra folders, in order (the C API passes the folder of `libmodeconn.so`);
//! 4. beside the running executable. `cargo build -p modeconn-trainer` puts it in
//!    `target/<profile>/`, next to the `modeconn` that `cargo build` writes there.
//!
//! A path given explicitly or by the variable must exist: a stale setting is an error, never a
//! silent fall back to another plugin.
//!
//! The ABI (implemented by `trainer/src/plugin.rs`), in C:
//!
//! ```c
//! typedef void (*modeconn_trainer_progress)(const char *event_json, void *user);
//! uint32_t modeconn_trainer_abi_version(void);
//! char *modeconn_trainer_run(const char *job_json, modeconn_trainer_progress progress,
//!                            void *user);
//! void modeconn_trainer_free_string(char *s);
//! ```
//!
//! `modeconn_trainer_abi_version()` is resolved first and must return [`ABI_VERSION`]; then
//! `modeconn_trainer_run` takes a [`Job`] as JSON, calls `progress` with each [`Event`] as JSON
//! on the calling thread, and returns a report that `modeconn_trainer_free_string` releases:
//! a [`Report`] (with `"ok": true`) or `{"ok": false, "error": "<one line>"}`.

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result, Searched};
use crate::{ABI_VERSION, Event, Job, Report};

/// The environment variable naming the plugin.
pub const ENV_VAR: &str = "MODECONN_TRAINER";

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type ProgressFn = unsafe extern "C" fn(event_json: *const c_char, user: *mut c_void);
type RunFn = unsafe extern "C" fn(
    job_json: *const c_char,
    progress: Option<ProgressFn>,
    user: *mut c_void,
) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(s: *mut c_char);

/// The file name of the plugin on this platform, e.g. `libmodeconn_trainer.so`.
pub fn library_name() -> String {
    format!(
        "{}modeconn_trainer{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A loaded trainer plugin.
///
/// The library stays loaded until the process ends: libtorch does not support being unloaded
/// (its thread pools outlive `dlclose`).
#[derive(Debug)]
pub struct TrainerPlugin {
    path: PathBuf,
    run: RunFn,
    free: FreeFn,
}

impl TrainerPlugin {
    /// Finds the plugin: `explicit`, then [`ENV_VAR`], then each of `extra_dirs`, then beside
    /// the executable.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] when `explicit` or the variable names a file that does not exist, or
    /// when no folder searched holds the plugin.
    pub fn locate(explicit: Option<&Path>, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
        let missing = |searched| Err(Error::Missing { searched });
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            return missing(Searched::Explicit(p.to_path_buf()));
        }
        if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            return missing(Searched::Variable(p));
        }
        let exe = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        let mut searched: Vec<PathBuf> = Vec::new();
        for dir in extra_dirs.iter().cloned().chain(exe) {
            let p = dir.join(library_name());
            if p.is_file() {
                return Ok(p);
            }
            if !searched.contains(&p) {
                searched.push(p);
            }
        }
        missing(Searched::Folders(searched))
    }

    /// Loads the plugin at `path`, checking its ABI version before resolving anything else.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the file does not load (with a hint when libtorch is what is
    /// missing), [`Error::NotAPlugin`] when it is not a trainer plugin,
    /// [`Error::AbiMismatch`] when it speaks another ABI version, [`Error::MissingSymbol`]
    /// when it lacks one of the ABI's functions.
    pub fn load(path: &Path) -> Result<TrainerPlugin> {
        // `dlopen` searches the library path for a name without a slash, so make it absolute.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        // SAFETY: loading runs the library's initialisers; the plugin is a Rust `cdylib` whose
        // initialisers (libtorch's included) have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| Error::load(&path, &error_chain(&e)))?;
        // SAFETY: the symbol, when present, has the signature of the trainer's ABI, which is
        // what the version check that follows establishes for the other two.
        let version: AbiVersionFn = unsafe {
            *lib.get::<AbiVersionFn>(c"modeconn_trainer_abi_version")
                .map_err(|_| Error::NotAPlugin { path: path.clone() })?
        };
        // SAFETY: takes nothing and cannot fail (the ABI's contract).
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(Error::AbiMismatch { path, found });
        }
        let missing = |symbol: &'static str, e: libloading::Error| Error::MissingSymbol {
            path: path.clone(),
            symbol,
            detail: error_chain(&e),
        };
        // SAFETY: a plugin of this ABI version exports both with these signatures.
        let (run, free) = unsafe {
            let run = *lib
                .get::<RunFn>(c"modeconn_trainer_run")
                .map_err(|e| missing("modeconn_trainer_run", e))?;
            let free = *lib
                .get::<FreeFn>(c"modeconn_trainer_free_string")
                .map_err(|e| missing("modeconn_trainer_free_string", e))?;
            (run, free)
        };
        // Keep the library, and so the function pointers, for the rest of the process.
        std::mem::forget(lib);
        Ok(TrainerPlugin { path, run, free })
    }

    /// The absolute path the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a job, calling `on_event` with each progress event on the calling thread, and
    /// returns the report of a successful run. Events the plugin sends that are not an
    /// [`Event`] of this version are dropped.
    ///
    /// A panic in `on_event` is caught and the event dropped: nothing unwinds into the plugin.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJob`] when the job cannot be written as JSON (a path that is not
    /// UTF-8); [`Error::Failed`] when the trainer refused the job or failed (the error carries
    /// its message); [`Error::BadReport`] when the plugin returns no report, one that is not
    /// JSON, or one that is not a report of this job's command.
    pub fn run(&self, job: &Job, on_event: &mut dyn FnMut(&Event)) -> Result<Report> {
        let text = serde_json::to_string(job).map_err(|e| Error::InvalidJob {
            message: format!("the job cannot be written as JSON: {e}"),
        })?;
        // JSON escapes NUL, so this cannot fail.
        let text = CString::new(text).map_err(|_| Error::InvalidJob {
            message: "the job contains a NUL character".into(),
        })?;
        let mut on_text = |text: &str| {
            if let Ok(event) = serde_json::from_str::<Event>(text) {
                on_event(&event);
            }
        };
        let report = self.call(&text, &mut on_text)?;
        self.report(&report, job.command())
    }

    /// Calls `modeconn_trainer_run` and returns the report's text.
    fn call(&self, job: &CStr, on_event: &mut dyn FnMut(&str)) -> Result<String> {
        let mut sink = Sink { on_event };
        // SAFETY: `job` is a C string and `sink` a `Sink` that both outlive the call, as the
        // ABI asks; `progress` has the callback's signature.
        let report = unsafe {
            (self.run)(
                job.as_ptr(),
                Some(progress),
                (&raw mut sink).cast::<c_void>(),
            )
        };
        if report.is_null() {
            return Err(self.bad_report("no report".into()));
        }
        // SAFETY: the plugin returns a NUL-terminated string it owns until we release it.
        let text = unsafe { CStr::from_ptr(report) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by this plugin's `run`, released once.
        unsafe { (self.free)(report) };
        Ok(text)
    }

    /// The report of `command` in `text`, or the error it reports.
    fn report(&self, text: &str, command: &str) -> Result<Report> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| self.bad_report(format!("a report that is not JSON: {e}")))?;
        if value.get("ok") != Some(&Value::Bool(true)) {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the trainer failed without a message");
            return Err(Error::Failed {
                message: message.to_string(),
            });
        }
        let report: Report = serde_json::from_value(value)
            .map_err(|e| self.bad_report(format!("a report this modeconn cannot read: {e}")))?;
        if report.command() != command {
            return Err(self.bad_report(format!(
                "a report of {} for a {command} job",
                report.command()
            )));
        }
        Ok(report)
    }

    fn bad_report(&self, what: String) -> Error {
        Error::BadReport {
            path: self.path.clone(),
            what,
        }
    }
}

/// What the progress callback reaches through its `user` pointer.
struct Sink<'a> {
    on_event: &'a mut dyn FnMut(&str),
}

/// The progress callback given to the plugin: hands the event's text to the [`Sink`]. Nothing
/// unwinds into the plugin.
unsafe extern "C" fn progress(event_json: *const c_char, user: *mut c_void) {
    if event_json.is_null() || user.is_null() {
        return;
    }
    // A panic while drawing progress must not unwind through the plugin's frames; it is
    // dropped, and the run goes on.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user` is the `Sink` given to `run`, alive and not otherwise borrowed
        // during the call; `event_json` is a C string valid during the call (the ABI).
        let sink = unsafe { &mut *user.cast::<Sink<'_>>() };
        let text = unsafe { CStr::from_ptr(event_json) }.to_string_lossy();
        (sink.on_event)(&text);
    }));
}

/// An error and its causes on one line (libloading puts `dlerror`'s text in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn a_missing_explicit_path_is_unavailable() {
        let missing = Path::new("/nonexistent/libmodeconn_trainer.so");
        let Err(e) = TrainerPlugin::locate(Some(missing), &[]) else {
            panic!("a missing plugin was found");
        };
        assert_eq!(e.code(), ErrorCode::TrainerUnavailable);
        let text = e.to_string();
        assert!(text.starts_with("the trainer plugin is missing"), "{text}");
        assert!(
            text.contains("/nonexistent/libmodeconn_trainer.so"),
            "{text}"
        );
        assert!(
            text.contains("cargo build --release -p modeconn-trainer"),
            "{text}"
        );
    }

    #[test]
    fn an_existing_explicit_path_wins() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join(library_name());
        std::fs::write(&file, "x").expect("write a file");
        let found = TrainerPlugin::locate(Some(&file), &[]).expect("found");
        assert_eq!(found, file);
    }

    #[test]
    fn a_file_that_is_no_library_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join(library_name());
        std::fs::write(&file, "not a library").expect("write a file");
        let Err(e) = TrainerPlugin::load(&file) else {
            panic!("a text file loaded");
        };
        assert_eq!(e.code(), ErrorCode::TrainerUnavailable);
        assert!(
            e.to_string().starts_with("cannot load the trainer plugin"),
            "{e}"
        );
    }

    #[test]
    fn a_library_that_is_no_plugin_is_refused() {
        // libc is loaded in every process and has no `modeconn_trainer_abi_version`.
        let Ok(Err(e)) = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(TrainerPlugin::load)
            .ok_or(())
        else {
            return;
        };
        assert!(matches!(e, Error::NotAPlugin { .. }), "{e}");
        assert_eq!(e.code(), ErrorCode::TrainerUnavailable);
    }

    /// A plugin value for the report checks (its functions are never called).
    fn unused_plugin() -> TrainerPlugin {
        unsafe extern "C" fn run(
            _: *const c_char,
            _: Option<ProgressFn>,
            _: *mut c_void,
        ) -> *mut c_char {
            std::ptr::null_mut()
        }
        unsafe extern "C" fn free(_: *mut c_char) {}
        TrainerPlugin {
            path: "/p.so".into(),
            run,
            free,
        }
    }

    #[test]
    fn reports_are_read_and_checked() {
        let plugin = unused_plugin();
        let e = plugin.report(r#"{"ok": false, "error": "no-such-net"}"#, "train");
        assert!(matches!(e, Err(Error::Failed { ref message }) if message == "no-such-net"));
        let e = plugin.report("{", "train").err().map(|e| e.code());
        assert_eq!(e, Some(ErrorCode::TrainerFailed));
        let fge = r#"{"ok": true, "command": "fge", "members": 1, "cycle_iterations": 2,
            "member_test_accuracy": [1.0], "member_test_nll": [0.1],
            "ensemble_test_accuracy": 1.0, "ensemble_test_nll": 0.1, "out": "f",
            "device": "cpu", "epochs": 2, "seconds_per_epoch": 0.1}"#;
        assert_eq!(
            plugin.report(fge, "fge").ok().map(|r| r.command()),
            Some("fge")
        );
        let e = plugin.report(fge, "train").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the trainer plugin /p.so returned a report of fge for a train job")
        );
        let e = plugin.call(c"{}", &mut |_| {}).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the trainer plugin /p.so returned no report")
        );
    }
}
