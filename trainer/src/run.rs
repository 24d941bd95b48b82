//! Running a [`Job`]: the one entry point the plugin ABI, the CLI and Rust callers share.

use std::path::Path;

use crate::Result;
use crate::checkpoint;
use crate::job::{Event, Job, Report, TrainingOptions};

/// Runs a job, reporting progress through `on_event`, and returns its report.
///
/// A training job's output and checkpoint paths are checked first, before its data is loaded
/// or an epoch runs: a folder that does not exist or cannot be written to fails at once, not
/// after the last epoch.
pub fn run(job: &Job, on_event: &mut dyn FnMut(&Event)) -> Result<Report> {
    match job {
        Job::Train(j) => writable(&j.out, &j.training)?,
        Job::Curve(j) => writable(&j.out, &j.training)?,
        Job::Fge(j) => writable(&j.out, &j.training)?,
        Job::Bn(j) => modeconn_runtime::fs::check_writable(&j.out)?,
        Job::Plane(j) => {
            if let Some(state) = &j.state {
                modeconn_runtime::fs::check_writable(state)?;
            }
        }
        Job::Attack(j) => {
            std::fs::create_dir_all(&j.out).map_err(|error| crate::Error::Io {
                path: j.out.clone(),
                error,
            })?;
        }
        _ => {}
    }
    // libtorch asks once which CUDA hooks it has and keeps the answer: its CUDA library must be
    // loaded before the first operation that asks (a seed, a tensor), or CUDA stays unusable
    // in this process.
    crate::device::load_torch_cuda();
    Ok(match job {
        Job::Train(j) => Report::Train(crate::train::train(j, on_event)?),
        Job::Curve(j) => Report::Curve(crate::curve::fit_curve(j, on_event)?),
        Job::Fge(j) => Report::Fge(crate::fge::fge(j, on_event)?),
        Job::Eval(j) => Report::Eval(crate::eval::eval(j, on_event)?),
        Job::Bn(j) => Report::Bn(crate::bn::bn(j, on_event)?),
        Job::Doctor(_) => Report::Doctor(crate::doctor::doctor()),
        Job::Attack(j) => Report::Attack(crate::attack::attack(j, on_event)?),
        Job::Samples(j) => Report::Samples(crate::samples::samples(j)?),
        Job::Plane(j) => Report::Plane(crate::plane::plane(j, on_event)?),
    })
}

/// Checks that the bundle `out` and the run's checkpoint (the job's `checkpoint`, or
/// `OUT.ckpt`) can be written, with the atomic writer's own check (a temporary file is
/// created beside each and removed).
fn writable(out: &Path, training: &TrainingOptions) -> Result<()> {
    modeconn_runtime::fs::check_writable(out)?;
    let ckpt = training
        .checkpoint
        .clone()
        .unwrap_or_else(|| checkpoint::default_path(out));
    modeconn_runtime::fs::check_writable(&ckpt)?;
    Ok(())
}
