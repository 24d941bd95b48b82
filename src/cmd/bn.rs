//! `modeconn bn`.

use std::path::PathBuf;

use modeconn_jobs::{BnJob, Job, defaults};

use super::training::DataArgs;
use crate::plugin::{PluginArgs, run_job};
use crate::summary::print_summary;

/// Arguments of `bn`.
#[derive(clap::Args)]
pub struct Args {
    /// The curve bundle (from `curve`, `pack` or a converted checkpoint).
    bundle: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Points of the t grid where the statistics are recomputed.
    #[arg(long, value_name = "G", default_value_t = defaults::bn_grid())]
    bn_grid: usize,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value_t = defaults::eval_batch_size())]
    batch_size: usize,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Where to write the bundle with the new statistics.
    #[arg(long, value_name = "CURVE.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `bn`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::Bn(BnJob {
        bundle: args.bundle,
        data: args.data.data,
        bn_grid: args.bn_grid,
        batch_size: args.batch_size,
        device: args.data.device,
        held_out: args.data.held_out,
        limit: args.data.limit,
        seed: args.seed,
        out: args.out,
    });
    print_summary(&run_job(&args.plugin, &job)?);
    Ok(())
}
