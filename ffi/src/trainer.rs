//! Training from C: runs a job through the trainer plugin (`libmodeconn_trainer.so`).
//!
//! The plugin is found as the CLI finds it (`src/plugin.rs`), plus the folder of this library:
//! the explicit path, then `MODECONN_TRAINER`, then beside `libmodeconn.so` (when the library
//! is loaded as a shared object), then beside the executable. A path given explicitly or by the
//! variable must exist. The logic is replicated from `src/plugin.rs` (the CLI crate is a binary
//! this crate cannot depend on); the plugin's ABI is `trainer/src/plugin.rs`.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Failure, c_str, modeconn_status, write_out};

/// The version of the trainer plugin's C ABI this library speaks.
const TRAINER_ABI_VERSION: u32 = 1;

/// The environment variable naming the plugin.
const ENV_VAR: &str = "MODECONN_TRAINER";

const HOW_TO_GET: &str = "build it with `cargo build --release -p modeconn-trainer` (needs \
    libtorch: source the env file printed by scripts/setup.sh), which writes it into \
    target/release/ beside libmodeconn.so, or pass its path or set MODECONN_TRAINER";

/// The progress callback of `modeconn_train`: called with one event (a NUL-terminated JSON
/// object tagged by `"event"`, owned by the plugin and valid only during the call) and the
/// `user` pointer given to `modeconn_train`. It runs on the thread that called
/// `modeconn_train`, before that call returns, and must not unwind (no C++ exception).
pub type modeconn_progress_fn =
    Option<unsafe extern "C" fn(event_json: *const c_char, user: *mut c_void)>;

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type RunFn = unsafe extern "C" fn(
    job_json: *const c_char,
    progress: modeconn_progress_fn,
    user: *mut c_void,
) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(s: *mut c_char);

fn unavailable(message: String) -> Failure {
    Failure::new(modeconn_status::TrainerUnavailable, message)
}

fn library_name() -> String {
    format!(
        "{}modeconn_trainer{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

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

/// Finds the plugin: `explicit`, `MODECONN_TRAINER`, beside this library, beside the
/// executable.
fn locate(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(unavailable(format!(
            "the trainer plugin is missing: {} does not exist; {HOW_TO_GET}",
            p.display()
        )));
    }
    if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(unavailable(format!(
            "the trainer plugin is missing: {ENV_VAR} is {}, which does not exist; {HOW_TO_GET}",
            p.display()
        )));
    }
    let mut searched = Vec::new();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    for dir in [own_folder(), exe].into_iter().flatten() {
        let p = dir.join(library_name());
        if p.is_file() {
            return Ok(p);
        }
        if !searched.contains(&p) {
            searched.push(p);
        }
    }
    let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    Err(unavailable(format!(
        "the trainer plugin is missing: no path given, {ENV_VAR} is unset, and it is not at {}; \
         {HOW_TO_GET}",
        if list.is_empty() {
            "the library's or executable's folder".to_string()
        } else {
            list.join(" or ")
        }
    )))
}

/// Loads the plugin and resolves its functions, checking the ABI version first. The library
/// stays loaded until the process ends (libtorch cannot be unloaded).
fn load(path: &Path) -> Result<(RunFn, FreeFn), Failure> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // SAFETY: loading runs the library's initialisers, which for the trainer plugin have no
    // preconditions; another library is refused below before any of its code is called.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        unavailable(format!(
            "cannot load the trainer plugin {}: {e}",
            path.display()
        ))
    })?;
    // SAFETY: the symbol, when present, has the ABI's signature.
    let version: AbiVersionFn = unsafe {
        *lib.get::<AbiVersionFn>(c"modeconn_trainer_abi_version")
            .map_err(|_| {
                unavailable(format!(
                    "{} is not a modeconn trainer plugin (it has no modeconn_trainer_abi_version)",
                    path.display()
                ))
            })?
    };
    // SAFETY: takes nothing and cannot fail (the ABI's contract).
    let found = unsafe { version() };
    if found != TRAINER_ABI_VERSION {
        return Err(unavailable(format!(
            "the trainer plugin {} speaks ABI version {found} but this library needs version \
             {TRAINER_ABI_VERSION}: rebuild the plugin from the same sources",
            path.display()
        )));
    }
    // SAFETY: a plugin of this ABI version exports both with these signatures.
    let fns = unsafe {
        let run = lib.get::<RunFn>(c"modeconn_trainer_run").map(|s| *s);
        let free = lib
            .get::<FreeFn>(c"modeconn_trainer_free_string")
            .map(|s| *s);
        match (run, free) {
            (Ok(run), Ok(free)) => (run, free),
            _ => {
                return Err(unavailable(format!(
                    "{} lacks modeconn_trainer_run or modeconn_trainer_free_string",
                    path.display()
                )));
            }
        }
    };
    std::mem::forget(lib);
    Ok(fns)
}

/// Runs a training job (train, curve, fge or eval) through the trainer plugin.
///
/// - `plugin`: path of `libmodeconn_trainer.so`, or NULL to search `MODECONN_TRAINER`, then
///   the folder of `libmodeconn.so`, then the folder of the executable. Borrowed.
/// - `job_json`: the job as a NUL-terminated JSON object (see `docs/` and the CLI's training
///   commands). Borrowed during the call.
/// - `progress`: NULL, or called with each progress event (see `modeconn_progress_fn`) on the
///   calling thread while the job runs; `user` is passed to it unchanged.
/// - `report`: receives the report (a NUL-terminated JSON object with `"ok": true` and the
///   metrics), owned by the caller, to be released with `modeconn_string_free`. Written only
///   on success.
///
/// Statuses: `OK`; `NULL_ARGUMENT`; `UTF8`; `TRAINER_UNAVAILABLE` (plugin not found, not
/// loadable, not a plugin, or another ABI version); `TRAINER_FAILED` (the job was refused or
/// failed: the message is the trainer's error); `PANIC`.
///
/// Thread-safe (jobs on several threads compete for libtorch's threads and devices). The
/// plugin stays loaded for the rest of the process.
///
/// # Safety
///
/// `plugin` must be NULL or NUL-terminated; `job_json` NULL or NUL-terminated; `progress`
/// NULL or a function safe to call with `user`; `report` NULL or valid for writing a pointer.
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
        let job = unsafe { c_str(job_json, "job_json") }?;
        let explicit = if plugin.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated (this function's contract).
            Some(PathBuf::from(unsafe { c_str(plugin, "plugin") }?))
        };
        let path = locate(explicit.as_deref())?;
        let (run, free) = load(&path)?;
        let job = CString::new(job).map_err(|_| {
            Failure::new(modeconn_status::InvalidArgument, "job_json contains a NUL")
        })?;
        // SAFETY: `job` is a C string alive during the call; `progress` and `user` are the
        // caller's, passed on as the plugin's ABI expects.
        let raw = unsafe { run(job.as_ptr(), progress, user) };
        if raw.is_null() {
            return Err(Failure::new(
                modeconn_status::TrainerFailed,
                format!("the trainer plugin {} returned no report", path.display()),
            ));
        }
        // SAFETY: a NUL-terminated string owned by the plugin until released just below.
        let text = unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned();
        // SAFETY: returned by this plugin's `run`, released once.
        unsafe { free(raw) };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::new(
                modeconn_status::TrainerFailed,
                format!("the trainer plugin {} returned a report that is not JSON: {e}", path.display()),
            )
        })?;
        if value.get("ok") != Some(&Value::Bool(true)) {
            let error = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the trainer failed without a message");
            return Err(Failure::new(modeconn_status::TrainerFailed, error));
        }
        let out = CString::new(text).map_err(|_| {
            Failure::new(modeconn_status::TrainerFailed, "the report contains a NUL")
        })?;
        // SAFETY: checked non-NULL; valid for writes (this function's contract).
        unsafe { write_out(report, out.into_raw()) };
        Ok(())
    }
}

/// Releases a string returned by this library (the report of `modeconn_train`). NULL does
/// nothing. Always returns `OK`. Any thread may release it.
///
/// # Safety
///
/// `s` must be NULL or a string returned by this library and not yet released; it must not be
/// used afterwards. Never pass it to `free`.
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
