//! What the trainer's commands share: the data and device flags (`train`, `curve`, `fge`,
//! `eval`) and the training options (`train`, `curve`, `fge`). Defaults are the trainer's own
//! (`modeconn_jobs::defaults`), so `--help` shows what the trainer uses.

use std::path::PathBuf;

use modeconn_jobs::{Device, TrainingOptions, defaults};

/// The data a trainer command reads, and where it runs.
#[derive(clap::Args)]
pub struct DataArgs {
    /// The data: `digits` (embedded), an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    #[arg(long, value_name = "D")]
    pub data: String,
    /// cpu, cuda (the first GPU), cuda:N (GPU N) or auto (the first GPU when there is one).
    #[arg(long, default_value_t = defaults::device())]
    pub device: Device,
    /// Take this many training samples as the test split (for model selection; evaluate a
    /// bundle with the split it was trained with).
    #[arg(long, value_name = "N")]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Options every training command shares.
#[derive(clap::Args)]
pub struct TrainingArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Number of epochs.
    #[arg(long, value_name = "N")]
    epochs: usize,
    /// Weight decay, the L2 penalty wd/2 ||w||^2.
    #[arg(long, default_value_t = defaults::wd(), allow_negative_numbers = true)]
    wd: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = defaults::momentum(), allow_negative_numbers = true)]
    momentum: f64,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value_t = defaults::batch_size())]
    batch_size: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Augment the training data (default: as the data set prescribes).
    #[arg(long, overrides_with = "no_augment")]
    augment: bool,
    /// Do not augment the training data.
    #[arg(long, overrides_with = "augment")]
    no_augment: bool,
    /// Checkpoint file, written after every epoch [default: the output path with `.ckpt`
    /// appended]; `train` keeps its last one, whose momentum `fge` continues.
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint if there is one.
    #[arg(long)]
    resume: bool,
}

impl TrainingArgs {
    /// The training options of a job with initial learning rate `lr`.
    pub fn options(self, lr: f64) -> TrainingOptions {
        let augment = match (self.augment, self.no_augment) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        TrainingOptions {
            data: self.data.data,
            epochs: self.epochs,
            lr,
            wd: self.wd,
            momentum: self.momentum,
            batch_size: self.batch_size,
            seed: self.seed,
            device: self.data.device,
            held_out: self.data.held_out,
            limit: self.data.limit,
            augment,
            checkpoint: self.checkpoint,
            resume: self.resume,
        }
    }
}
