//! `modeconn eval`.

use std::path::PathBuf;

use modeconn_jobs::{EvalJob, Job, Report, defaults};

use super::training::DataArgs;
use crate::evaltable;
use crate::plugin::{PluginArgs, run_job};

/// Arguments of `eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a curve, or a snapshot set.
    bundle: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Points of the t grid along a curve.
    #[arg(long, value_name = "N", default_value_t = defaults::points())]
    points: usize,
    /// Also evaluate the straight segment between the curve's endpoints.
    #[arg(long)]
    segment: bool,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value_t = defaults::eval_batch_size())]
    batch_size: usize,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Also write the whole report, one JSON object, to this file.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    /// Also write the per-point rows (curve, segment or members) as CSV to this file.
    #[arg(long, value_name = "ROWS.csv")]
    csv: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::Eval(EvalJob {
        bundle: args.bundle,
        data: args.data.data,
        points: args.points,
        segment: args.segment,
        batch_size: args.batch_size,
        device: args.data.device,
        held_out: args.data.held_out,
        limit: args.data.limit,
        seed: args.seed,
    });
    let report = run_job(&args.plugin, &job)?;
    if let Some(path) = &args.json {
        super::write_json(path, &report)?;
    }
    let Report::Eval(evaluation) = &report else {
        anyhow::bail!("the trainer answered an eval job with another report");
    };
    if let Some(path) = &args.csv {
        modeconn_runtime::write_file_atomic(path, evaltable::csv(evaluation).as_bytes())
            .map_err(|e| super::about(e, path, || format!("cannot write {}", path.display())))?;
    }
    print!("{}", evaltable::text(evaluation));
    Ok(())
}
