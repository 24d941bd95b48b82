//! Running a [`Job`]: the one entry point the plugin ABI, the CLI and Rust callers share.

use crate::Result;
use crate::job::{Event, Job};

/// Runs a job, reporting progress through `on_event`, and returns its report (a JSON object
/// with `"ok": true`, the command, the output path and the metrics).
pub fn run(job: &Job, on_event: &mut dyn FnMut(&Event)) -> Result<serde_json::Value> {
    match job {
        Job::Train(j) => crate::train::train(j, on_event),
        Job::Curve(j) => crate::curve::fit_curve(j, on_event),
        Job::Fge(j) => crate::fge::fge(j, on_event),
        Job::Eval(j) => crate::eval::eval(j, on_event),
    }
}
