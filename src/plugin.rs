//! Finding, loading and calling the trainer plugin (`libmodeconn_trainer.so`), the `cdylib` of
//! the `modeconn-trainer` crate. The CLI never links libtorch: the plugin does, and it is only
//! loaded when a training command runs.
//!
//! Where the plugin is looked for, first match wins:
//! 1. `--trainer PATH`;
//! 2. the environment variable `MODECONN_TRAINER`;
//! 3. beside the `modeconn` executable. `cargo build -p modeconn-trainer` puts it in
//!    `target/<profile>/`, next to the `modeconn` that `cargo build` writes there.
//!
//! A path given by the flag or the variable must exist: a stale setting is an error, never a
//! silent fall back to another plugin.
//!
//! The ABI (see `trainer/src/plugin.rs`): `modeconn_trainer_abi_version()` is resolved first
//! and must return [`ABI_VERSION`]; then `modeconn_trainer_run(job_json, progress, user)`
//! returns a report that `modeconn_trainer_free_string` releases.

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// The version of the trainer's C ABI this CLI speaks (`job::ABI_VERSION` in the trainer).
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

/// Finds the plugin: `explicit`, then `MODECONN_TRAINER`, then beside the executable.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!(
            "the trainer plugin is missing: --trainer {} does not exist; training commands \
             need it: {HOW_TO_GET}",
            p.display()
        );
    }
    if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "the trainer plugin is missing: {ENV_VAR} is {}, which does not exist; training \
             commands need it: {HOW_TO_GET}",
            p.display()
        );
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(library_name())));
    match beside {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => bail!(
            "the trainer plugin is missing: not given by --trainer, {ENV_VAR} is unset, and \
             there is no {}; training commands need it: {HOW_TO_GET}",
            p.display()
        ),
        None => bail!(
            "the trainer plugin is missing: not given by --trainer, {ENV_VAR} is unset, and \
             the folder of this executable is unknown; training commands need it: {HOW_TO_GET}"
        ),
    }
}

/// A loaded trainer plugin.
pub struct Trainer {
    path: PathBuf,
    run: RunFn,
    free: FreeFn,
}

impl Trainer {
    /// Finds (see [`locate`]) and loads the plugin, checking its ABI version first.
    ///
    /// The library stays loaded until the process ends: libtorch does not support being
    /// unloaded (its thread pools outlive `dlclose`).
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Trainer> {
        // `dlopen` searches the library path for a name without a slash, so make it absolute.
        let found = locate(explicit)?;
        let path = std::path::absolute(&found).unwrap_or(found);
        // SAFETY: loading runs the library's initialisers; the plugin is a Rust `cdylib` whose
        // initialisers (libtorch's included) have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| load_error(&path, &error_chain(&e)))?;
        // SAFETY: the symbol, when present, has the signature of the trainer's ABI, which is
        // what the version check that follows establishes for the other two.
        let version: AbiVersionFn = unsafe {
            *lib.get::<AbiVersionFn>(c"modeconn_trainer_abi_version")
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{} is not a modeconn trainer plugin (it has no \
                         modeconn_trainer_abi_version)",
                        path.display()
                    )
                })?
        };
        // SAFETY: takes nothing and cannot fail (the ABI's contract).
        let found = unsafe { version() };
        if found != ABI_VERSION {
            bail!(
                "the trainer plugin {} speaks ABI version {found} but this modeconn needs \
                 version {ABI_VERSION}: rebuild the plugin from the same sources as modeconn \
                 (`cargo build --release -p modeconn-trainer`)",
                path.display()
            );
        }
        // SAFETY: a plugin of this ABI version exports both with these signatures.
        let (run, free) = unsafe {
            let run = *lib
                .get::<RunFn>(c"modeconn_trainer_run")
                .with_context(|| format!("{} has no modeconn_trainer_run", path.display()))?;
            let free = *lib
                .get::<FreeFn>(c"modeconn_trainer_free_string")
                .with_context(|| {
                    format!("{} has no modeconn_trainer_free_string", path.display())
                })?;
            (run, free)
        };
        // Keep the library, and so the function pointers, for the rest of the process.
        std::mem::forget(lib);
        Ok(Trainer { path, run, free })
    }

    /// Runs a job, calling `on_event` with each progress event, and returns the report of a
    /// successful run; an error report becomes an error carrying its message.
    pub fn run(&self, job: &Value, on_event: &mut dyn FnMut(&Value)) -> anyhow::Result<Value> {
        let job = CString::new(job.to_string()).context("the job contains a NUL character")?;
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
            bail!(
                "the trainer plugin {} returned no report",
                self.path.display()
            );
        }
        // SAFETY: the plugin returns a NUL-terminated string it owns until we release it.
        let text = unsafe { CStr::from_ptr(report) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by this plugin's `run`, released once.
        unsafe { (self.free)(report) };
        let report: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "the trainer plugin {} returned a report that is not JSON",
                self.path.display()
            )
        })?;
        match report.get("ok") {
            Some(Value::Bool(true)) => Ok(report),
            _ => {
                let error = report
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the trainer failed without a message");
                bail!("{error}")
            }
        }
    }
}

/// What the progress callback reaches through its `user` pointer.
struct Sink<'a> {
    on_event: &'a mut dyn FnMut(&Value),
}

/// The progress callback given to the plugin: parses the event and hands it to the [`Sink`].
/// Events that are not JSON are dropped; nothing unwinds into the plugin.
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
        if let Ok(event) = serde_json::from_str::<Value>(&text) {
            (sink.on_event)(&event);
        }
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
fn load_error(path: &Path, detail: &str) -> anyhow::Error {
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.contains("libtorch") || detail.contains("libc10") {
        anyhow::anyhow!(
            "cannot load the trainer plugin {}: libtorch was not found ({detail}); \
             LD_LIBRARY_PATH must include the torch/lib folder of the Python environment \
             holding torch (the env file printed by scripts/setup.sh sets it)",
            path.display()
        )
    } else {
        anyhow::anyhow!(
            "cannot load the trainer plugin {}: {detail}",
            path.display()
        )
    }
}
