//! `modeconn train`.

use std::path::PathBuf;

use modeconn_jobs::{Job, TrainJob, defaults};

use super::training::TrainingArgs;
use crate::plugin::{PluginArgs, run_job};
use crate::summary::print_summary;

/// Arguments of `train`.
#[derive(clap::Args)]
pub struct Args {
    /// Architecture, e.g. `preresnet20`, `vgg16`, `mlp`.
    #[arg(long, required_unless_present = "onnx", conflicts_with = "onnx")]
    arch: Option<String>,
    /// Train your own classifier instead: an ONNX export of it (torch.onnx.export with
    /// dynamo=True, optimize=False and a dynamic batch dimension).
    #[arg(long, value_name = "MODEL.onnx")]
    onnx: Option<PathBuf>,
    /// Start from this state_dict (safetensors) of the --onnx model rather than from a seeded
    /// initialisation.
    #[arg(long, value_name = "STATE.safetensors", requires = "onnx")]
    init: Option<PathBuf>,
    /// Hidden layer sizes of `mlp`, e.g. `256,128`.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    hidden: Option<Vec<i64>>,
    /// Initial learning rate.
    #[arg(long, default_value_t = defaults::lr(), allow_negative_numbers = true)]
    lr: f64,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the bundle (a snapshot set of one member).
    #[arg(long, value_name = "END.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let job = Job::Train(TrainJob {
        arch: args.arch,
        onnx: args.onnx,
        init: args.init,
        hidden: args.hidden,
        training: args.training.options(args.lr),
        out: args.out,
    });
    print_summary(&run_job(&args.plugin, &job)?);
    Ok(())
}
