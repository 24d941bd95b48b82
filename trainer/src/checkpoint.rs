//! Checkpoints: everything a run needs to continue after being killed, written atomically
//! (temporary file, then rename) at the end of every epoch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::{Error, Result};

/// Name of the tensor holding the JSON state inside a checkpoint file.
const STATE: &str = "__modeconn_state__";

/// A checkpoint: the run's state as JSON and its tensors by name.
#[derive(Debug)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: usize,
    /// The job that wrote it (a resumed run must be the same job) and anything else to carry.
    pub state: serde_json::Value,
    /// Parameters, momentum buffers and the like.
    pub tensors: BTreeMap<String, Tensor>,
}

/// The default checkpoint path for an output file: `OUT.ckpt`.
pub fn default_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

/// The prefix of the temporary files of `path`: a writer adds its process id.
fn temporary_prefix(path: &Path) -> std::ffi::OsString {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp-");
    tmp
}

/// Writes a checkpoint atomically: to `PATH.tmp-PID`, flushed to disk, then renamed over
/// `path`, so that a reader (or a resumed run after a kill at any moment) sees the previous
/// checkpoint or the new one, never a part of one. Temporary files that killed writers left
/// behind are removed.
pub fn save(
    path: &Path,
    epoch: usize,
    state: &serde_json::Value,
    tensors: &[(String, &Tensor)],
) -> Result<()> {
    remove_stale_temporaries(path);
    let state = serde_json::json!({ "epoch": epoch, "state": state });
    let bytes = state.to_string().into_bytes();
    let state_tensor = Tensor::f_from_slice(&bytes)?;
    let mut named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    named.push((STATE, &state_tensor));
    let mut tmp = temporary_prefix(path);
    tmp.push(std::process::id().to_string());
    let tmp = PathBuf::from(tmp);
    let result = Tensor::save_multi(&named, &tmp)
        .map_err(Error::from)
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        sync_folder(path);
    }
    result
}

/// Makes a rename in the folder of `path` durable (best effort; Unix only).
fn sync_folder(path: &Path) {
    #[cfg(unix)]
    {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(f) = std::fs::File::open(folder) {
            let _ = f.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Removes `PATH.tmp-PID` files whose writer is no longer running (it was killed while
/// writing). Only where running processes can be told (Linux, through `/proc` of this PID
/// namespace); other files are left alone. Two runs writing one checkpoint at once are a
/// mistake of their own, which this does not try to untangle.
fn remove_stale_temporaries(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Some(prefix) = path
            .file_name()
            .map(|n| temporary_prefix(Path::new(n)))
            .and_then(|p| p.into_string().ok())
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix.as_str()))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// Reads a checkpoint, or `None` when there is none at `path`. A file that is not a whole
/// checkpoint (damaged, truncated, something else) is an error that names it, never a panic.
pub fn load(path: &Path, device: Device) -> Result<Option<Checkpoint>> {
    if !path.exists() {
        return Ok(None);
    }
    let damaged = |why: String| {
        Error::Config(format!(
            "{} is not a usable checkpoint ({why}); remove it to start afresh",
            path.display()
        ))
    };
    let mut tensors: BTreeMap<String, Tensor> = Tensor::load_multi_with_device(path, device)
        .map_err(|e| damaged(first_line(&e.to_string())))?
        .into_iter()
        .collect();
    let state = tensors
        .remove(STATE)
        .ok_or_else(|| damaged("it holds no modeconn state".into()))?;
    let bytes = Vec::<u8>::try_from(&state.f_to_device(Device::Cpu)?)
        .map_err(|e| damaged(format!("unreadable state: {}", first_line(&e.to_string()))))?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| damaged(format!("damaged state: {e}")))?;
    let epoch = json
        .get("epoch")
        .and_then(serde_json::Value::as_u64)
        .and_then(|e| usize::try_from(e).ok())
        .ok_or_else(|| damaged("it has no epoch".into()))?;
    Ok(Some(Checkpoint {
        epoch,
        state: json.get("state").cloned().unwrap_or_default(),
        tensors,
    }))
}

/// The first line of a (libtorch) message, which may carry a C++ backtrace after it.
fn first_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}
