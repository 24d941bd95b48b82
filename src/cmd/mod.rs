//! The subcommands.

pub mod attack;
pub mod bn;
pub mod calibrate;
pub mod curve;
pub mod doctor;
pub mod eval;
pub mod fge;
pub mod health;
pub mod inspect;
pub mod materialize;
pub mod mode;
pub mod pack;
pub mod plane;
pub mod plot;
pub mod predict;
pub mod serve;
pub mod train;
pub mod training;
pub mod unpack;
pub mod unseal;

use std::path::{Path, PathBuf};

use modeconn_runtime::{Bundle, Device, Runtime, RuntimeOptions};

/// How to run ONNX Runtime: shared by the commands that run bundles.
#[derive(clap::Args)]
pub struct RuntimeArgs {
    /// cpu, cuda (the first GPU), cuda:N (GPU N) or auto (the first GPU when CUDA can be
    /// used, else the CPU, saying why).
    #[arg(long, default_value = "auto", env = "MODECONN_DEVICE")]
    pub device: String,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then beside this executable).
    #[arg(long, value_name = "PATH", env = "MODECONN_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Operator threads, shared by every session (0: one per core).
    #[arg(long, default_value_t = 0, env = "MODECONN_THREADS")]
    pub threads: usize,
    /// MiB of weights (per bundle) that may be kept in materialised (static) sessions; 0 always
    /// uses the dynamic graph.
    #[arg(
        long,
        value_name = "MB",
        default_value_t = 1024,
        env = "MODECONN_STATIC_BUDGET"
    )]
    pub static_budget: usize,
}

impl RuntimeArgs {
    /// The device asked for.
    pub fn device(&self) -> anyhow::Result<Device> {
        Ok(self.device.parse::<Device>()?)
    }

    /// Runtime options from these arguments.
    pub fn options(&self) -> anyhow::Result<RuntimeOptions> {
        let mut options = RuntimeOptions::default()
            .with_device(self.device()?)
            .with_intra_threads(self.threads);
        if let Some(lib) = &self.ort_lib {
            options = options.with_library(lib);
        }
        Ok(options)
    }

    /// The static budget in bytes.
    pub fn static_bytes(&self) -> usize {
        self.static_budget.saturating_mul(1 << 20)
    }
}

/// Says once on stderr why device `auto` runs on the CPU although the ONNX Runtime loaded has
/// the CUDA execution provider (a missing driver, a library that does not load).
pub fn note_fallback(runtime: &Runtime) {
    if let Some(reason) = runtime.fallback_reason() {
        eprintln!("note: device auto runs on the CPU: {reason}");
    }
}

/// Opens a bundle, naming the file in the error.
pub fn open_bundle(path: &Path) -> anyhow::Result<Bundle> {
    Bundle::open(path)
        .map_err(|e| about(e, path, || format!("cannot load bundle {}", path.display())))
}

/// `e` after `context`, unless `e` names `path` already: an error about the file itself (it
/// is missing, a folder, not a bundle) says which file it is, and a context naming it again
/// would only repeat it.
pub fn about<E>(e: E, path: &Path, context: impl FnOnce() -> String) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let named = e.to_string().contains(&*path.to_string_lossy());
    let e = anyhow::Error::new(e);
    if named { e } else { e.context(context()) }
}

/// Writes `value` as pretty JSON (one object and a newline) to `path`, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    modeconn_runtime::write_file_atomic(path, text.as_bytes())
        .map_err(|e| about(e, path, || format!("cannot write {}", path.display())))
}

/// A folder under the system's temporary folder, removed with what it holds when dropped: for
/// the files a command passes between the trainer and the runtime and does not keep.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new name for the folder of this `command`; the trainer makes it.
    pub fn new(command: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos());
        Scratch(
            std::env::temp_dir().join(format!("modeconn-{command}-{}-{nanos}", std::process::id())),
        )
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a folder that cannot be removed only takes space in the temporary folder.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses a comma-separated list.
pub fn parse_list<T: std::str::FromStr>(text: &str, what: &str) -> anyhow::Result<Vec<T>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| anyhow::anyhow!("`{s}` is not a valid {what}"))
        })
        .collect()
}
