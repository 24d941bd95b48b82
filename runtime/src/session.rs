//! ONNX Runtime: loading the library, choosing the device, and pools of sessions.
//!
//! The library is loaded with `ort::init_from` from an explicit path, then `ORT_DYLIB_PATH`,
//! then beside the executable; a missing library is an error, never a panic. ONNX Runtime
//! allows one environment per process, so every [`Runtime`] shares it; the first one fixes the
//! library.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::DynValue;

use crate::fs::FileGuard;
use crate::{Error, Result};

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU execution provider.
    Cpu,
    /// The CUDA execution provider on the GPU of this index (`cuda` is `cuda:0`); an error if
    /// it cannot be used.
    Cuda(u32),
    /// CUDA on GPU 0 when it can be used, the CPU otherwise (see
    /// [`Runtime::fallback_reason`]).
    #[default]
    Auto,
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let unknown = || {
            Error::invalid(
                format!("device `{s}`"),
                "is unknown (expected cpu, cuda, cuda:N or auto)",
            )
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "auto" => Ok(Device::Auto),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(Device::Cuda).map_err(|_| unknown())
                }
                _ => Err(unknown()),
            },
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// ONNX Runtime's CUDA execution provider.
    Cuda,
}

impl Provider {
    /// `"cpu"` or `"cuda"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to set up ONNX Runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Path of `libonnxruntime`; when `None`, `ORT_DYLIB_PATH`, then the executable's folder.
    pub library: Option<PathBuf>,
    /// The device to run on.
    pub device: Device,
    /// Threads for operators (`0`: ONNX Runtime's default, one per core). Every session of the
    /// process shares one pool of them, so the first runtime created fixes the number.
    pub intra_threads: usize,
    /// Whether idle operator threads spin waiting for work (`None`: ONNX Runtime's default,
    /// which spins). Spinning shortens each run a little but burns cores that a process
    /// doing other work beside inference (an HTTP server) needs. Fixed by the first runtime.
    pub busy_wait: Option<bool>,
}

impl RuntimeOptions {
    /// Sets the library path.
    pub fn with_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.library = Some(path.into());
        self
    }

    /// Sets the device.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets the number of operator threads (see [`RuntimeOptions::intra_threads`]).
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    /// Sets whether idle operator threads spin (see [`RuntimeOptions::busy_wait`]).
    pub fn with_busy_wait(mut self, spin: bool) -> Self {
        self.busy_wait = Some(spin);
        self
    }
}

/// A handle on ONNX Runtime with a chosen device. Cheap to clone; safe to share across threads.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    env: Environment,
    library: PathBuf,
    device: Device,
    /// Why `auto` fell back to the CPU, once it has.
    fallback: OnceLock<String>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.inner.library)
            .field("device", &self.inner.device)
            .finish()
    }
}

/// The process-wide library and environment: loaded once, by the first runtime.
static GLOBAL: OnceLock<std::result::Result<(Environment, PathBuf), String>> = OnceLock::new();
static GLOBAL_INIT: Mutex<()> = Mutex::new(());

/// The file names ONNX Runtime's shared library goes by beside an executable.
const LIBRARY_NAMES: &[&str] = &[
    "libonnxruntime.so",
    "libonnxruntime.dylib",
    "onnxruntime.dll",
];

fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(Error::OrtLibrary {
            detail: format!("{} does not exist", p.display()),
        });
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::OrtLibrary {
            detail: format!("ORT_DYLIB_PATH is {}, which does not exist", p.display()),
        });
    }
    tried.push("ORT_DYLIB_PATH (unset)".to_string());
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for name in LIBRARY_NAMES {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        // Versioned names, e.g. libonnxruntime.so.1.31.1.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                })
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
        tried.push(format!("{} (no libonnxruntime there)", dir.display()));
    }
    Err(Error::OrtLibrary {
        detail: format!(
            "searched {}; pass the library's path or set ORT_DYLIB_PATH",
            tried.join(", ")
        ),
    })
}

fn global(
    explicit: Option<&Path>,
    intra_threads: usize,
    busy_wait: Option<bool>,
) -> Result<(Environment, PathBuf)> {
    let _guard = GLOBAL_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(state) = GLOBAL.get() {
        let (env, loaded) = state
            .clone()
            .map_err(|detail| Error::OrtLibrary { detail })?;
        if let Some(p) = explicit {
            let same = std::fs::canonicalize(p).ok() == std::fs::canonicalize(&loaded).ok();
            if !same {
                return Err(Error::OrtLibrary {
                    detail: format!(
                        "ONNX Runtime is already loaded from {} in this process; {} cannot be loaded too",
                        loaded.display(),
                        p.display()
                    ),
                });
            }
        }
        return Ok((env, loaded));
    }
    // A library that cannot be found is not remembered: a later call may name a good one.
    let path = find_library(explicit)?;
    // One pool of operator threads for every session: with a pool per session, the idle
    // threads of the member that just ran keep spinning while the next member runs, which made
    // ensembles of static members up to twice as slow as the sum of their runs.
    let pool = || -> ort::Result<ort::environment::GlobalThreadPoolOptions> {
        let mut options = ort::environment::GlobalThreadPoolOptions::default();
        if intra_threads > 0 {
            options = options.with_intra_threads(intra_threads)?;
        }
        if let Some(spin) = busy_wait {
            options = options.with_spin_control(spin)?;
        }
        Ok(options)
    };
    let state = ort::init_from(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|b| {
            let pool = pool().map_err(|e| format!("thread pool options: {e}"))?;
            // No telemetry: ONNX Runtime would otherwise keep a device id and an event database
            // under the user's cache folder (~/.cache/Microsoft/DeveloperTools), a write outside
            // what a server is given (a container's read-only root).
            b.with_name("modeconn")
                .with_telemetry(false)
                .with_global_thread_pool(pool)
                .build()
                .map_err(|e| format!("creating the environment: {e}"))
        })
        .map(|env| (env, path));
    let state = GLOBAL.get_or_init(|| state);
    state.clone().map_err(|detail| Error::OrtLibrary { detail })
}

impl Runtime {
    /// Loads ONNX Runtime (once per process) and prepares to run on `options.device`.
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let (env, library) = global(
            options.library.as_deref(),
            options.intra_threads,
            options.busy_wait,
        )?;
        if matches!(options.device, Device::Cuda(_)) && !cuda_compiled_in() {
            return Err(Error::Device {
                device: options.device.to_string(),
                reason: format!(
                    "the ONNX Runtime at {} was built without the CUDA execution provider \
                     (install onnxruntime-gpu and point ORT_DYLIB_PATH at its library)",
                    library.display()
                ),
            });
        }
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                env,
                library,
                device: options.device,
                fallback: OnceLock::new(),
            }),
        })
    }

    /// Why device `auto` runs on the CPU although the loaded ONNX Runtime has the CUDA
    /// execution provider (a missing driver, a library that does not load, no GPU); `None`
    /// while it has not fallen back. Set by the first session that fell back, for the caller
    /// to say so once.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.inner.fallback.get().map(String::as_str)
    }

    /// The ONNX Runtime library in use.
    pub fn library(&self) -> &Path {
        &self.inner.library
    }

    /// The device asked for.
    pub fn device(&self) -> Device {
        self.inner.device
    }

    /// Creates one session for a serialized model whose external initializers are given as
    /// shared values (they are not copied, and several sessions may share them).
    pub(crate) fn session(&self, model: &[u8], sources: &Sources) -> Result<(Session, Provider)> {
        let mut builder = self.builder(sources)?;
        let provider = match self.inner.device {
            Device::Cpu => Provider::Cpu,
            Device::Cuda(index) => {
                builder = with_cuda(builder, index).map_err(|message| Error::Device {
                    device: self.inner.device.to_string(),
                    reason: cuda_reason(&message),
                })?;
                Provider::Cuda
            }
            // Once auto has fallen back, it stays on the CPU: loading the CUDA provider again
            // for every session would only fail again, slowly.
            Device::Auto if cuda_compiled_in() && self.inner.fallback.get().is_none() => {
                match with_cuda(builder, 0) {
                    Ok(b) => {
                        builder = b;
                        Provider::Cuda
                    }
                    Err(message) => {
                        let _ = self.inner.fallback.set(cuda_reason(&message));
                        builder = self.builder(sources)?;
                        Provider::Cpu
                    }
                }
            }
            Device::Auto => Provider::Cpu,
        };
        match builder.commit_from_memory(model) {
            Ok(session) => Ok((session, provider)),
            Err(e) if provider == Provider::Cpu => Err(e.into()),
            // A GPU that the provider loaded for but cannot use (an index past the last GPU, a
            // driver too old) fails here, when the session is made.
            Err(e) if self.inner.device == Device::Auto => {
                let _ = self.inner.fallback.set(cuda_reason(e.message()));
                let session = self.builder(sources)?.commit_from_memory(model)?;
                Ok((session, Provider::Cpu))
            }
            Err(e) => Err(Error::Device {
                device: self.inner.device.to_string(),
                reason: cuda_reason(e.message()),
            }),
        }
    }

    /// Makes a session of `model` with the CUDA execution provider on GPU 0, or says why it
    /// cannot (`modeconn doctor`).
    pub(crate) fn try_cuda(&self, model: &[u8]) -> std::result::Result<(), String> {
        let builder = self
            .builder(&Sources::default())
            .map_err(|e| e.to_string())?;
        let mut builder = with_cuda(builder, 0)?;
        builder
            .commit_from_memory(model)
            .map(drop)
            .map_err(|e| e.message().to_string())
    }

    fn builder(&self, sources: &Sources) -> Result<SessionBuilder> {
        let level = if sources.optimize {
            GraphOptimizationLevel::All
        } else {
            GraphOptimizationLevel::Level1
        };
        let mut b = Session::builder(&self.inner.env)?.with_optimization_level(level)?;
        if !sources.optimize {
            // The stacks of control points are only ever read one row combination at a time;
            // pre-packing them for matrix products would copy every weight again.
            b = b.with_config_entry("session.disable_prepacking", "1")?;
        }
        if let Some(folder) = &sources.folder {
            b = b.with_config_entry(
                "session.model_external_initializers_file_folder_path",
                folder.to_string_lossy(),
            )?;
        }
        for (name, value) in &sources.values {
            b = b.with_external_initializer(name, Arc::clone(value))?;
        }
        Ok(b)
    }
}

/// Where a model's external initializers come from, and how to optimise it.
#[derive(Default)]
pub(crate) struct Sources {
    /// Values handed to ONNX Runtime (it copies them once).
    pub values: Vec<(String, Arc<DynValue>)>,
    /// The folder against which external-data file names in the model are resolved.
    pub folder: Option<PathBuf>,
    /// A file the model's external data lives in, which must not change under us.
    pub guard: Option<FileGuard>,
    /// Full graph optimisation (static models) or the light one (the dynamic graph).
    pub optimize: bool,
}

fn cuda_compiled_in() -> bool {
    ep::CUDA::is_available().unwrap_or(false)
}

/// The builder with the CUDA execution provider on GPU `index`, or ONNX Runtime's message
/// saying why it cannot have it.
fn with_cuda(builder: SessionBuilder, index: u32) -> std::result::Result<SessionBuilder, String> {
    let index = i32::try_from(index).map_err(|_| format!("there is no GPU {index}"))?;
    builder
        .with_execution_providers([ep::CUDA::default()
            .with_device_id(index)
            .build()
            .error_on_failure()])
        .map_err(|e| e.message().to_string())
}

/// ONNX Runtime's message about the CUDA execution provider, led by what matters to the person
/// reading it: the first shared library that could not be loaded (and whether it is the NVIDIA
/// driver, which no package of the environment provides), or else the message itself.
pub(crate) fn cuda_reason(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // ONNX Runtime leads with where in its sources the error arose: keep what it says.
    let line = match line.rsplit_once("] : ") {
        Some((_, said)) => said
            .split_once(" : ")
            .and_then(|(_, rest)| rest.split_once(" : ").map(|(_, m)| m.to_string()))
            .unwrap_or_else(|| said.to_string()),
        None => line,
    };
    // dlopen's words: "<library>: cannot open shared object file: No such file or directory".
    let missing = line
        .split(": cannot open shared object file")
        .next()
        .and_then(|head| {
            (head.len() < line.len())
                .then(|| head.rsplit([' ', ':']).find(|w| !w.is_empty()))
                .flatten()
        });
    match missing {
        Some(lib) if lib.starts_with("libcuda.so") => format!(
            "the NVIDIA driver ({lib}) is not installed or not on the library path; the CUDA \
             execution provider needs it ({line})"
        ),
        Some(lib) => format!(
            "the CUDA execution provider could not load {lib} (the env file of scripts/setup.sh \
             puts the CUDA libraries of the Python environment on LD_LIBRARY_PATH) ({line})"
        ),
        None => line,
    }
}

/// Sessions of one model, shared by threads: `ort` runs take `&mut Session`, so concurrency
/// comes from several sessions (up to `max`), created on demand and reused.
pub(crate) struct SessionPool {
    runtime: Runtime,
    model: Vec<u8>,
    sources: Sources,
    provider: Provider,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    total: usize,
}

impl SessionPool {
    /// Creates the pool and its first session (so errors in the model show up here).
    pub(crate) fn new(
        runtime: &Runtime,
        model: Vec<u8>,
        sources: Sources,
        max: usize,
    ) -> Result<Self> {
        let (first, provider) = runtime.session(&model, &sources)?;
        Ok(SessionPool {
            runtime: runtime.clone(),
            model,
            sources,
            provider,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: vec![first],
                total: 1,
            }),
            freed: Condvar::new(),
        })
    }

    pub(crate) fn provider(&self) -> Provider {
        self.provider
    }

    /// Runs `f` with a session of the pool, waiting for one when `max` are busy.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> Result<R>) -> Result<R> {
        let mut session = self.take()?;
        let result = f(&mut session);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.idle.push(session);
        drop(state);
        self.freed.notify_one();
        result
    }

    fn take(&self) -> Result<Session> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = state.idle.pop() {
                return Ok(s);
            }
            if state.total < self.max {
                state.total += 1;
                drop(state);
                let made = match &self.sources.guard {
                    Some(g) => g.check(),
                    None => Ok(()),
                }
                .and_then(|()| self.runtime.session(&self.model, &self.sources));
                return match made {
                    Ok((s, _)) => Ok(s),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).total -= 1;
                        Err(e)
                    }
                };
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_and_print_alike() {
        for (text, device) in [
            ("cpu", Device::Cpu),
            ("auto", Device::Auto),
            ("cuda", Device::Cuda(0)),
            ("cuda:0", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(text.parse::<Device>().ok(), Some(device), "{text}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        for bad in [
            "gpu",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:1:2",
            "CUDA",
            "cuda:99999999999",
        ] {
            let e = bad.parse::<Device>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_reason_names_the_library_that_did_not_load() {
        let driver = cuda_reason(
            "Failed to load library libonnxruntime_providers_cuda.so with error: libcuda.so.1: \
             cannot open shared object file: No such file or directory",
        );
        assert!(
            driver.starts_with("the NVIDIA driver (libcuda.so.1)"),
            "{driver}"
        );
        let cublas = cuda_reason(
            "Failed to load library /x/libonnxruntime_providers_cuda.so with error: \
             libcublasLt.so.13: cannot open shared object file: No such file or directory",
        );
        assert!(
            cublas.contains("could not load libcublasLt.so.13"),
            "{cublas}"
        );
        assert_eq!(
            cuda_reason("CUDA failure 100:\n no CUDA-capable device"),
            "CUDA failure 100: no CUDA-capable device"
        );
    }
}
