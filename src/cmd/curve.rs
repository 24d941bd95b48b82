//! `modeconn curve`.

use std::path::PathBuf;

use modeconn_jobs::{Basis, CurveJob, Job, defaults};

use super::training::TrainingArgs;
use crate::plugin::{PluginArgs, run_job};
use crate::summary::print_summary;

/// Arguments of `curve`.
#[derive(clap::Args)]
pub struct Args {
    /// The start endpoint: a snapshot-set bundle (from `train`, `fge` or `pack`), or with
    /// --onnx a state_dict (safetensors) of that model.
    #[arg(long, value_name = "A.safetensors")]
    start: PathBuf,
    /// The end endpoint, as --start.
    #[arg(long, value_name = "B.safetensors")]
    end: PathBuf,
    /// The ONNX export whose state_dicts --start and --end are.
    #[arg(long, value_name = "MODEL.onnx")]
    onnx: Option<PathBuf>,
    /// The member of --start to use when it is a snapshot set of several (from 0).
    #[arg(long, value_name = "I")]
    start_member: Option<usize>,
    /// The member of --end to use when it is a snapshot set of several (from 0).
    #[arg(long, value_name = "I")]
    end_member: Option<usize>,
    /// The curve's basis: bezier or polychain.
    #[arg(long, default_value_t = defaults::basis())]
    basis: Basis,
    /// Interior control points: 1 bend means 3 control points.
    #[arg(long, value_name = "N", default_value_t = defaults::bends())]
    bends: usize,
    /// Train the start point too (it stays fixed by default).
    #[arg(long)]
    train_start: bool,
    /// Train the end point too.
    #[arg(long)]
    train_end: bool,
    /// Points of the t grid where batch-norm statistics are recomputed.
    #[arg(long, value_name = "G", default_value_t = defaults::bn_grid())]
    bn_grid: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = defaults::lr(), allow_negative_numbers = true)]
    lr: f64,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the curve bundle.
    #[arg(long, value_name = "CURVE.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `curve`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::Curve(CurveJob {
        start: args.start,
        end: args.end,
        onnx: args.onnx,
        start_member: args.start_member,
        end_member: args.end_member,
        basis: args.basis,
        bends: args.bends,
        train_start: args.train_start,
        train_end: args.train_end,
        bn_grid: args.bn_grid,
        training: args.training.options(args.lr),
        out: args.out,
    });
    print_summary(&run_job(&args.plugin, &job)?);
    Ok(())
}
