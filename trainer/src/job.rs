//! Jobs, progress events and reports: the trainer's interface to the CLI, the C API and the
//! plugin ABI. A job arrives as JSON, progress leaves as JSON events, a report as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Options every training command shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingOptions {
    /// The data: `digits`, an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    pub data: String,
    /// Number of epochs.
    pub epochs: usize,
    /// Initial learning rate.
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Weight decay (L2 penalty `wd/2 · ||w||²`).
    #[serde(default = "defaults::wd")]
    pub wd: f64,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// Mini-batch size.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Seed of every random choice (initialisation, shuffles, augmentation, t draws).
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    #[serde(default = "defaults::device")]
    pub device: String,
    /// Take this many training samples as the test split (model selection).
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Override the data set's default augmentation.
    #[serde(default)]
    pub augment: Option<bool>,
    /// Checkpoint file (default: the output path with `.ckpt` appended).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint if there is one.
    #[serde(default)]
    pub resume: bool,
}

/// Train one network from scratch: writes a one-member snapshot bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// Architecture name, e.g. `preresnet20`, `mlp`.
    pub arch: String,
    /// Hidden sizes for `mlp`.
    #[serde(default)]
    pub hidden: Option<Vec<i64>>,
    /// Shared training options.
    #[serde(flatten)]
    pub training: TrainingOptions,
    /// Where to write the bundle.
    pub out: PathBuf,
}

/// Fit a curve between two trained endpoints: writes a curve bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurveJob {
    /// The start endpoint (a bundle written by `train`).
    pub start: PathBuf,
    /// The end endpoint.
    pub end: PathBuf,
    /// `bezier` or `polychain`.
    #[serde(default = "defaults::basis")]
    pub basis: String,
    /// Interior control points (1 bend means 3 control points).
    #[serde(default = "defaults::bends")]
    pub bends: usize,
    /// Train the start point too.
    #[serde(default)]
    pub train_start: bool,
    /// Train the end point too.
    #[serde(default)]
    pub train_end: bool,
    /// Points of the batch-norm statistics grid.
    #[serde(default = "defaults::bn_grid")]
    pub bn_grid: usize,
    /// Shared training options.
    #[serde(flatten)]
    pub training: TrainingOptions,
    /// Where to write the bundle.
    pub out: PathBuf,
}

/// Fast Geometric Ensembling from a trained network: writes a snapshot-set bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FgeJob {
    /// The network to start from (a bundle written by `train`).
    pub init: PathBuf,
    /// Cycle length in epochs (the cycle in iterations is this times the steps per epoch,
    /// rounded up to an even number).
    pub cycle: usize,
    /// Largest learning rate of the cycle.
    pub lr1: f64,
    /// Smallest learning rate, where snapshots are taken.
    pub lr2: f64,
    /// Shared training options (`lr` is unused).
    #[serde(flatten)]
    pub training: TrainingOptions,
    /// Where to write the bundle.
    pub out: PathBuf,
}

/// Evaluate a bundle along its curve (or over its members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalJob {
    /// The bundle.
    pub bundle: PathBuf,
    /// The data.
    pub data: String,
    /// Points of the t grid for curves.
    #[serde(default = "defaults::points")]
    pub points: usize,
    /// Also evaluate the straight segment between the endpoints.
    #[serde(default)]
    pub segment: bool,
    /// Mini-batch size.
    #[serde(default = "defaults::eval_batch_size")]
    pub batch_size: usize,
    /// `cpu`, `cuda` or `auto`.
    #[serde(default = "defaults::device")]
    pub device: String,
    /// Take this many training samples as the test split.
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed for the held-out split.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
}

/// A job: what to do, tagged by `"command"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Job {
    /// Train an endpoint.
    Train(TrainJob),
    /// Fit a curve.
    Curve(CurveJob),
    /// Run FGE.
    Fge(FgeJob),
    /// Evaluate a bundle.
    Eval(EvalJob),
}

impl Job {
    /// Parses a job from JSON, with a message that names the field at fault.
    pub fn from_json(text: &str) -> crate::Result<Job> {
        serde_json::from_str(text).map_err(|e| crate::Error::Config(e.to_string()))
    }
}

/// A progress event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase begins (`train`, `curve`, `fge`, `bn`, `eval`): `total` steps to come.
    Begin {
        /// The phase.
        phase: String,
        /// How many steps it has.
        total: usize,
    },
    /// One step of the phase is done.
    Step {
        /// The phase.
        phase: String,
        /// Steps done so far (1-based).
        done: usize,
        /// Steps in the phase.
        total: usize,
        /// Mean training loss of the step (or of the epoch so far).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        /// Training accuracy so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
        /// Current learning rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
    },
    /// An epoch ended.
    Epoch {
        /// The epoch (1-based).
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Mean training loss.
        train_loss: f64,
        /// Training accuracy.
        train_accuracy: f64,
        /// Test NLL, when evaluated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_loss: Option<f64>,
        /// Test accuracy, when evaluated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_accuracy: Option<f64>,
        /// Wall time of the epoch in seconds.
        seconds: f64,
    },
    /// A line for people.
    Message {
        /// The text.
        text: String,
    },
    /// The phase ended.
    End {
        /// The phase.
        phase: String,
    },
}

/// The version of the plugin's C ABI; the loader refuses a plugin of another version.
pub const ABI_VERSION: u32 = 1;

mod defaults {
    pub fn lr() -> f64 {
        0.05
    }
    pub fn wd() -> f64 {
        5e-4
    }
    pub fn momentum() -> f64 {
        0.9
    }
    pub fn batch_size() -> usize {
        128
    }
    pub fn eval_batch_size() -> usize {
        256
    }
    pub fn seed() -> u64 {
        1
    }
    pub fn device() -> String {
        "auto".into()
    }
    pub fn basis() -> String {
        "bezier".into()
    }
    pub fn bends() -> usize {
        1
    }
    pub fn bn_grid() -> usize {
        21
    }
    pub fn points() -> usize {
        61
    }
}
