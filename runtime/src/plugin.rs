//! Finding, loading and calling the trainer plugin (`libmodeconn_trainer.so`), the `cdylib` of
//! the `modeconn-trainer` crate. This crate never links libtorch: the plugin does, and it is
//! only loaded when a training job runs. The CLI and the C ABI both use this module.
//!
//! Where the plugin is looked for, first match wins (see [`TrainerPlugin::locate`]):
//! 1. an explicit path (the CLI's `--trainer PATH`, the C ABI's `plugin` argument);
//! 2. the environment variable [`ENV_VAR`] (`MODECONN_TRAINER`);
//! 3. the caller's extra folders, in order (the C ABI passes the folder of `libmodeconn.so`);
//! 4. beside the running executable. `cargo build -p modeconn-trainer` puts it in
//!    `target/<profile>/`, next to the `modeconn` that `cargo build` writes there.
//!
//! A path given explicitly or by the variable must exist: a stale setting is an error, never a
//! silent fall back to another plugin.
//!
//! The ABI (see `trainer/src/plugin.rs`): `modeconn_trainer_abi_version()` is resolved first
//! and must return [`ABI_VERSION`]; then `modeconn_trainer_run(job_json, progress, user)`
//! returns a report that `modeconn_trainer_free_string` releases.

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The version of the trainer's C ABI this crate speaks (`job::ABI_VERSION` in the trainer).
pub const ABI_VERSION: u32 = 1;

/// The environment variable naming the plugin.
pub const ENV_VAR: &str = "MODECONN_TRAINER";

/// How to get the plugin, for error messages.
const HOW_TO_GET: &str = "build it with `cargo build --release -p modeconn-trainer` (needs \
    libtorch: source the env file printed by scripts/setup.sh), which writes it beside \
    `modeconn` in target/release/, or pass --trainer PATH or set MODECONN_TRAINER";

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

fn unavailable(detail: String) -> Error {
    Error::TrainerUnavailable { detail }
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
    /// [`Error::TrainerUnavailable`] when `explicit` or the variable names a file that does not
    /// exist, or when no folder searched holds the plugin.
    pub fn locate(explicit: Option<&Path>, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            return Err(unavailable(format!(
                "the trainer plugin is missing: --trainer {} does not exist; training commands \
                 need it: {HOW_TO_GET}",
                p.display()
            )));
        }
        if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            return Err(unavailable(format!(
                "the trainer plugin is missing: {ENV_VAR} is {}, which does not exist; training \
                 commands need it: {HOW_TO_GET}",
                p.display()
            )));
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
        if searched.is_empty() {
            return Err(unavailable(format!(
                "the trainer plugin is missing: not given by --trainer, {ENV_VAR} is unset, and \
                 the folder of this executable is unknown; training commands need it: \
                 {HOW_TO_GET}"
            )));
        }
        let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
        Err(unavailable(format!(
            "the trainer plugin is missing: not given by --trainer, {ENV_VAR} is unset, and \
             there is no {}; training commands need it: {HOW_TO_GET}",
            list.join(" or ")
        )))
    }

    /// Loads the plugin at `path`, checking its ABI version before resolving anything else.
    ///
    /// # Errors
    ///
    /// [`Error::TrainerUnavailable`] when the file does not load (with a hint when libtorch is
    /// what is missing), is not a trainer plugin, speaks another ABI version or lacks one of
    /// the ABI's functions.
    pub fn load(path: &Path) -> Result<TrainerPlugin> {
        // `dlopen` searches the library path for a name without a slash, so make it absolute.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        // SAFETY: loading runs the library's initialisers; the plugin is a Rust `cdylib` whose
        // initialisers (libtorch's included) have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| load_error(&path, &error_chain(&e)))?;
        // SAFETY: the symbol, when present, has the signature of the trainer's ABI, which is
        // what the version check that follows establishes for the other two.
        let version: AbiVersionFn = unsafe {
            *lib.get::<AbiVersionFn>(c"modeconn_trainer_abi_version")
                .map_err(|_| {
                    unavailable(format!(
                        "{} is not a modeconn trainer plugin (it has no \
                         modeconn_trainer_abi_version)",
                        path.display()
                    ))
                })?
        };
        // SAFETY: takes nothing and cannot fail (the ABI's contract).
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(unavailable(format!(
                "the trainer plugin {} speaks ABI version {found} but this modeconn needs \
                 version {ABI_VERSION}: rebuild the plugin from the same sources as modeconn \
                 (`cargo build --release -p modeconn-trainer`)",
                path.display()
            )));
        }
        let missing = |name: &str, e: libloading::Error| {
            unavailable(format!(
                "{} has no {name}: {}",
                path.display(),
                error_chain(&e)
            ))
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

    /// Runs a job (a JSON object), calling `on_event` with each progress event (a JSON object
    /// tagged by `"event"`) on the calling thread, and returns the report of a successful run
    /// as JSON text.
    ///
    /// A panic in `on_event` is caught and the event dropped: nothing unwinds into the plugin.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `job_json` contains a NUL character;
    /// [`Error::TrainerFailed`] when the plugin returns no report, a report that is not JSON,
    /// or an error report (the error carries the report's message).
    pub fn run(&self, job_json: &str, on_event: &mut dyn FnMut(&str)) -> Result<String> {
        let job = CString::new(job_json)
            .map_err(|_| Error::InvalidArgument("the job contains a NUL character".into()))?;
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
            return Err(Error::TrainerFailed(format!(
                "the trainer plugin {} returned no report",
                self.path.display()
            )));
        }
        // SAFETY: the plugin returns a NUL-terminated string it owns until we release it.
        let text = unsafe { CStr::from_ptr(report) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by this plugin's `run`, released once.
        unsafe { (self.free)(report) };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::TrainerFailed(format!(
                "the trainer plugin {} returned a report that is not JSON: {e}",
                self.path.display()
            ))
        })?;
        match value.get("ok") {
            Some(Value::Bool(true)) => Ok(text),
            _ => {
                let error = value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the trainer failed without a message");
                Err(Error::TrainerFailed(error.to_string()))
            }
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

/// The error for a plugin that exists but does not load, with a hint when libtorch is what is
/// missing.
fn load_error(path: &Path, detail: &str) -> Error {
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.contains("libtorch") || detail.contains("libc10") {
        unavailable(format!(
            "cannot load the trainer plugin {}: libtorch was not found ({detail}); \
             LD_LIBRARY_PATH must include the torch/lib folder of the Python environment \
             holding torch (the env file printed by scripts/setup.sh sets it)",
            path.display()
        ))
    } else {
        unavailable(format!(
            "cannot load the trainer plugin {}: {detail}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_path_is_unavailable() {
        let missing = Path::new("/nonexistent/libmodeconn_trainer.so");
        let Err(e) = TrainerPlugin::locate(Some(missing), &[]) else {
            panic!("a missing plugin was found");
        };
        assert_eq!(e.code(), 50);
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
        assert_eq!(e.code(), 50);
        assert!(
            e.to_string().starts_with("cannot load the trainer plugin"),
            "{e}"
        );
    }

    #[test]
    fn the_libtorch_hint_names_ld_library_path() {
        let e = load_error(
            Path::new("/p.so"),
            "libtorch_cpu.so: cannot open shared object",
        );
        assert!(e.to_string().contains("LD_LIBRARY_PATH"), "{e}");
        let e = load_error(Path::new("/p.so"), "invalid ELF header");
        assert!(!e.to_string().contains("LD_LIBRARY_PATH"), "{e}");
    }
}
