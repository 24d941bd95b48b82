//! Running a [`Job`]: the one entry point the plugin ABI, the CLI and Rust callers share.

use crate::Result;
use crate::job::{Event, Job, Report};

/// Runs a job, reporting progress through `on_event`, and returns its report.
pub fn run(job: &Job, on_event: &mut dyn FnMut(&Event)) -> Result<Report> {
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
    })
}
