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

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    epoch: usize,
    state: &serde_json::Value,
    tensors: &[(String, &Tensor)],
) -> Result<()> {
    let state = serde_json::json!({ "epoch": epoch, "state": state });
    let bytes = state.to_string().into_bytes();
    let state_tensor = Tensor::f_from_slice(&bytes)?;
    let mut named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    named.push((STATE, &state_tensor));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
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
    }
    result
}

/// Reads a checkpoint, or `None` when there is none at `path`.
pub fn load(path: &Path, device: Device) -> Result<Option<Checkpoint>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut tensors: BTreeMap<String, Tensor> = Tensor::load_multi_with_device(path, device)?
        .into_iter()
        .collect();
    let state = tensors
        .remove(STATE)
        .ok_or_else(|| Error::Config(format!("{} is not a modeconn checkpoint", path.display())))?;
    let bytes = Vec::<u8>::try_from(&state.f_to_device(Device::Cpu)?)?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("{}: damaged checkpoint state: {e}", path.display())))?;
    let epoch = json
        .get("epoch")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::Config(format!("{}: checkpoint has no epoch", path.display())))?
        as usize;
    Ok(Some(Checkpoint {
        epoch,
        state: json.get("state").cloned().unwrap_or_default(),
        tensors,
    }))
}
