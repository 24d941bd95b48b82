//! `modeconn fge`.

use std::path::PathBuf;

use modeconn_jobs::{FgeJob, Job, defaults};

use super::training::TrainingArgs;
use crate::plugin::{PluginArgs, run_job};
use crate::summary::print_summary;

/// Arguments of `fge`.
#[derive(clap::Args)]
pub struct Args {
    /// The network to start from: a snapshot-set bundle (from `train`, `fge` or `pack`), or
    /// with --onnx a state_dict (safetensors) of that model.
    #[arg(long, value_name = "A.safetensors")]
    init: PathBuf,
    /// The ONNX export whose state_dict --init is.
    #[arg(long, value_name = "MODEL.onnx")]
    onnx: Option<PathBuf>,
    /// The member of --init to use when it is a snapshot set of several (from 0).
    #[arg(long, value_name = "I")]
    init_member: Option<usize>,
    /// Continue the momentum of this training checkpoint [default: INIT.ckpt, which `train`
    /// keeps, when it is there].
    #[arg(long, value_name = "CKPT", conflicts_with = "fresh_momentum")]
    momentum_from: Option<PathBuf>,
    /// Start with fresh momentum rather than the training checkpoint's.
    #[arg(long)]
    fresh_momentum: bool,
    /// Keep each snapshot's running batch-norm statistics from training, as the reference
    /// implementation does [default: recompute them for the snapshot's weights].
    #[arg(long)]
    running_statistics: bool,
    /// Take snapshots at the end of the epochs where epoch % cycle + 1 == cycle / 2, as the
    /// reference implementation does [default: at the iteration where the rate is lowest; the
    /// same point for an even --cycle].
    #[arg(long)]
    snapshot_at_epoch_end: bool,
    /// Cycle length in epochs; a snapshot is taken in the middle of each cycle, where the
    /// learning rate is lowest.
    #[arg(long, value_name = "C")]
    cycle: usize,
    /// Largest learning rate of the cycle.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    lr1: f64,
    /// Smallest learning rate of the cycle, where snapshots are taken.
    #[arg(long, value_name = "Y", allow_negative_numbers = true)]
    lr2: f64,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the snapshot-set bundle.
    #[arg(long, value_name = "FGE.safetensors")]
    out: PathBuf,
    /// Also write the report (the members' and the running ensemble's scores, the schedule
    /// and the snapshot iterations; what `modeconn plot` draws) to this file.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `fge`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::Fge(FgeJob {
        init: args.init,
        onnx: args.onnx,
        init_member: args.init_member,
        momentum_from: args.momentum_from,
        fresh_momentum: args.fresh_momentum,
        running_statistics: args.running_statistics,
        snapshot_at_epoch_end: args.snapshot_at_epoch_end,
        cycle: args.cycle,
        lr1: args.lr1,
        lr2: args.lr2,
        // FGE's rates are `lr1` and `lr2`; the job's `lr` is unused.
        training: args.training.options(defaults::lr()),
        out: args.out,
    });
    let report = run_job(&args.plugin, &job)?;
    if let Some(path) = &args.json {
        super::write_json(path, &report)?;
    }
    print_summary(&report);
    Ok(())
}
