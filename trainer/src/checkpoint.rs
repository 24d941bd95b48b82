//! Checkpoints: everything a run needs to continue after being killed, written atomically
//! (temporary file, then rename) at the end of every epoch, and the run's bookkeeping around
//! them ([`Run`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::job::{Event, HistoryRow};
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

/// Writes a checkpoint atomically with the workspace's one atomic writer
/// ([`modeconn_runtime::fs::write_atomic`]: a new temporary file beside `path`, synced, then
/// renamed over it), so that a reader (or a resumed run after a kill at any moment) sees the
/// previous checkpoint or the new one, never a part of one.
///
/// libtorch serialises the tensors into memory first; only Rust writes the file. libtorch's
/// own file writer throws from a destructor when a write fails (a full disk), which aborts
/// the process; a failed write here is an error, and the temporary file is removed.
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
    let mut serialised = Vec::new();
    Tensor::save_multi_to_stream(&named, &mut serialised)?;
    modeconn_runtime::fs::write_file_atomic(path, &serialised)?;
    Ok(())
}

/// Copies a checkpoint's tensor `name` into `slot`, the tensor it restores; `None` (no such
/// tensor in the run) is an error that names it.
pub fn restore_tensor(slot: Option<&mut Tensor>, name: &str, value: &Tensor) -> Result<()> {
    let slot =
        slot.ok_or_else(|| Error::Config(format!("checkpoint has unknown tensor `{name}`")))?;
    tch::no_grad(|| slot.f_copy_(value))?;
    Ok(())
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

/// A run's bookkeeping around its checkpoint: the job (a resumed run must be the same job),
/// where the checkpoint lives, the per-epoch history it carries, and the epoch to start from.
#[derive(Debug)]
pub struct Run {
    /// The job as JSON.
    pub job: serde_json::Value,
    /// The checkpoint file.
    pub path: PathBuf,
    /// One row per completed epoch.
    pub history: Vec<HistoryRow>,
    /// Epochs completed before this process started (0 unless resumed).
    pub start: usize,
}

impl Run {
    /// Bookkeeping for a job writing `out`, with its checkpoint at the job's `checkpoint` path
    /// or `OUT.ckpt`.
    pub fn new(job: &impl serde::Serialize, checkpoint: Option<&Path>, out: &Path) -> Result<Self> {
        Ok(Run {
            job: serde_json::to_value(job).map_err(|e| Error::Config(e.to_string()))?,
            path: checkpoint.map_or_else(|| default_path(out), Path::to_path_buf),
            history: Vec::new(),
            start: 0,
        })
    }

    /// When `resume` is set and a checkpoint exists: checks that it belongs to this job, takes
    /// over its history and epoch, announces it through `on_event`, and returns it so the
    /// caller can restore its tensors.
    pub fn resume(
        &mut self,
        resume: bool,
        device: Device,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<Checkpoint>> {
        if !resume {
            return Ok(None);
        }
        let Some(c) = load(&self.path, device)? else {
            return Ok(None);
        };
        if !same_job(&c.state["job"], &self.job) {
            return Err(Error::Config(format!(
                "{} belongs to another job; remove it or drop --resume",
                self.path.display()
            )));
        }
        self.history = serde_json::from_value(c.state["history"].clone()).map_err(|e| {
            Error::Config(format!(
                "{} has a damaged history ({e}); remove it to start afresh",
                self.path.display()
            ))
        })?;
        self.start = c.epoch;
        on_event(&Event::Message {
            text: format!(
                "resuming after epoch {} from {}",
                self.start,
                self.path.display()
            ),
        });
        Ok(Some(c))
    }

    /// Saves a checkpoint after `epoch` epochs: the job, the history, `extra` state fields and
    /// the tensors.
    pub fn save(
        &self,
        epoch: usize,
        extra: serde_json::Value,
        tensors: &[(String, &Tensor)],
    ) -> Result<()> {
        let mut state = serde_json::json!({ "job": self.job, "history": self.history });
        if let (Some(s), serde_json::Value::Object(more)) = (state.as_object_mut(), extra) {
            s.extend(more);
        }
        save(&self.path, epoch, &state, tensors)
    }

    /// Removes the checkpoint once the run's output is written.
    pub fn finish(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Mean wall time of the epochs this process ran, in seconds; of every recorded epoch
    /// when it ran none (the checkpoint held them all).
    ///
    /// The epochs of a process that was killed ran in their own conditions (slowed down,
    /// paused, on a busier machine): mixing them in made a resumed run's figure many times
    /// what its epochs took (8.09 s against 0.3 s).
    pub fn mean_seconds(&self) -> f64 {
        let ran: Vec<f64> = self
            .history
            .iter()
            .filter(|h| h.epoch > self.start)
            .map(|h| h.seconds)
            .collect();
        let seconds: Vec<f64> = if ran.is_empty() {
            self.history.iter().map(|h| h.seconds).collect()
        } else {
            ran
        };
        seconds.iter().sum::<f64>() / seconds.len().max(1) as f64
    }
}

/// The fields of a job that say where it reads its checkpoint from and writes its output to,
/// or whether it resumes: none of them changes what the run computes.
const NOT_IDENTITY: [&str; 3] = ["resume", "checkpoint", "out"];

/// Two jobs are the same run when they differ at most in `resume`, `checkpoint` and `out`:
/// where the checkpoint lives and where the bundle goes do not change the run, so a moved
/// checkpoint may be resumed, and so may a run whose output path was wrong and is corrected.
pub fn same_job(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for key in NOT_IDENTITY {
                o.remove(key);
            }
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(out: &str, checkpoint: &str) -> serde_json::Value {
        serde_json::json!({
            "command": "train", "arch": "mlp", "data": "digits", "epochs": 3, "seed": 1,
            "checkpoint": checkpoint, "resume": true, "out": out,
        })
    }

    #[test]
    fn where_a_job_writes_is_no_part_of_which_job_it_is() {
        let a = job("/typo/x.safetensors", "/runs/a.ckpt");
        assert!(same_job(&a, &job("/out/x.safetensors", "/runs/a.ckpt")));
        assert!(same_job(&a, &job("/out/x.safetensors", "/moved/a.ckpt")));
        let mut other = job("/typo/x.safetensors", "/runs/a.ckpt");
        other["seed"] = serde_json::json!(2);
        assert!(!same_job(&a, &other));
    }

    #[test]
    fn a_run_resumes_with_a_corrected_output_path() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("a temporary folder", e))?;
        let ckpt = dir.path().join("run.ckpt");
        let ckpt_text = ckpt.to_string_lossy().into_owned();
        let typo = Path::new("/no-such-folder/x.safetensors");
        let first = Run::new(&job(&typo.to_string_lossy(), &ckpt_text), Some(&ckpt), typo)?;
        let w = Tensor::f_zeros([2], (tch::Kind::Float, Device::Cpu))?;
        first.save(2, serde_json::json!({}), &[("w".into(), &w)])?;

        let fixed = dir.path().join("x.safetensors");
        let mut again = Run::new(
            &job(&fixed.to_string_lossy(), &ckpt_text),
            Some(&ckpt),
            &fixed,
        )?;
        let resumed = again.resume(true, Device::Cpu, &mut |_| {})?;
        assert!(resumed.is_some(), "the checkpoint was not taken over");
        assert_eq!(again.start, 2);
        Ok(())
    }
}
