//! Jobs: what the trainer is asked to do, as the CLI builds them and the plugin receives them
//! (a JSON object tagged by `"command"`), with the defaults of their optional fields.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where the trainer runs: `cpu`, `cuda` (the first GPU), `cuda:N` (GPU N) or `auto`, as JSON
/// and the command line spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The CUDA device of this index (an error when there is none).
    Cuda(u32),
    /// The first CUDA device when there is one, else the CPU.
    Auto,
}

impl Device {
    /// How each value is spelled (`N` stands for a GPU's index).
    pub const NAMES: &'static [&'static str] = &["cpu", "cuda", "cuda:N", "auto"];
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            // The first GPU keeps the name it had before GPUs were numbered.
            Device::Cuda(0) => f.write_str("cuda"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let index = |n: &str| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u32>().ok())
                .flatten()
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "auto" => Ok(Device::Auto),
            other => other
                .strip_prefix("cuda:")
                .and_then(index)
                .map(Device::Cuda)
                .ok_or_else(|| Error::UnknownName {
                    what: "device",
                    value: s.to_string(),
                    expected: Self::NAMES,
                }),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

named_enum! {
    /// The basis of a curve's control points (see the design's mathematics).
    Basis ("basis") {
        /// Bezier: Bernstein polynomials of degree K - 1.
        Bezier = "bezier",
        /// Polygonal chain through the control points, bends evenly spaced in t.
        Polychain = "polychain",
    }
}

/// The defaults of the jobs' optional fields: what the trainer uses when a job leaves a field
/// out, and what the CLI's flags show and send.
pub mod defaults {
    use super::{Basis, Device};

    /// Initial learning rate (`lr`).
    pub const fn lr() -> f64 {
        0.05
    }
    /// Weight decay (`wd`).
    pub const fn wd() -> f64 {
        5e-4
    }
    /// SGD momentum (`momentum`).
    pub const fn momentum() -> f64 {
        0.9
    }
    /// Mini-batch size of training (`batch_size`).
    pub const fn batch_size() -> usize {
        128
    }
    /// Mini-batch size of evaluation (`batch_size` of `eval`).
    pub const fn eval_batch_size() -> usize {
        256
    }
    /// Seed of every random choice (`seed`).
    pub const fn seed() -> u64 {
        1
    }
    /// Device (`device`).
    pub const fn device() -> Device {
        Device::Auto
    }
    /// Basis of a curve (`basis`).
    pub const fn basis() -> Basis {
        Basis::Bezier
    }
    /// Interior control points of a curve (`bends`).
    pub const fn bends() -> usize {
        1
    }
    /// Points of the batch-norm statistics grid (`bn_grid`).
    pub const fn bn_grid() -> usize {
        21
    }
    /// Points of the t grid of an evaluation (`points`).
    pub const fn points() -> usize {
        61
    }
    /// Points along each axis of a plane's grid (`grid` of `plane`).
    pub const fn plane_grid() -> usize {
        21
    }
    /// How far a plane's grid reaches beyond its three points, as a fraction of their extent
    /// along each axis (`margin` of `plane`).
    pub const fn plane_margin() -> f64 {
        0.2
    }
    /// Steps of an iterative attack (`steps`).
    pub const fn attack_steps() -> usize {
        20
    }
    /// Random restarts of PGD (`restarts`).
    pub const fn restarts() -> usize {
        1
    }
    /// The range every input value is clipped to (`clip`).
    pub const fn clip() -> [f64; 2] {
        [0.0, 1.0]
    }
    /// Draws of the defence's randomness averaged per step by EOT-PGD (`draws`).
    pub const fn eot_samples() -> usize {
        10
    }
}

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
    /// Where to run.
    #[serde(default = "defaults::device")]
    pub device: Device,
    /// Take this many training samples as the test split (model selection).
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Override the data set's default augmentation.
    #[serde(default)]
    pub augment: Option<bool>,
    /// Checkpoint file (default: the output path with `.ckpt` appended). `train` keeps its
    /// last one, whose momentum `fge` continues; `curve` and `fge` remove theirs when done.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint if there is one.
    #[serde(default)]
    pub resume: bool,
}

/// Train one network: writes a one-member snapshot bundle. The network is one of the
/// trainer's architectures (`arch`) or a user's ONNX graph (`onnx`), exactly one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// Architecture name, e.g. `preresnet20`, `mlp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// A classifier exported from PyTorch (`torch.onnx.export(..., dynamo=True,
    /// optimize=False)` with a dynamic batch dimension), trained instead of `arch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PathBuf>,
    /// Start from this state_dict (`safetensors`) of the `onnx` graph rather than from a
    /// seeded initialisation; its tensors are matched by name as `modeconn pack` matches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
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
    /// The start endpoint: a snapshot-set bundle (from `train`, `fge` or `pack`), or with
    /// `onnx` a state_dict (`safetensors`) of that graph.
    pub start: PathBuf,
    /// The end endpoint, as `start`.
    pub end: PathBuf,
    /// The graph whose state_dicts `start` and `end` are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PathBuf>,
    /// The member of `start` to use when it is a snapshot set of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_member: Option<usize>,
    /// The member of `end` to use when it is a snapshot set of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_member: Option<usize>,
    /// The basis.
    #[serde(default = "defaults::basis")]
    pub basis: Basis,
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
    /// The network to start from: a snapshot-set bundle (from `train`, `fge` or `pack`), or
    /// with `onnx` a state_dict (`safetensors`) of that graph.
    pub init: PathBuf,
    /// The graph whose state_dict `init` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PathBuf>,
    /// The member of `init` to use when it is a snapshot set of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_member: Option<usize>,
    /// The training checkpoint whose momentum FGE continues, as the reference's fge.py does
    /// (default: `INIT.ckpt`, which `train` keeps, when it is there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_from: Option<PathBuf>,
    /// Start with fresh momentum instead.
    #[serde(default)]
    pub fresh_momentum: bool,
    /// Keep each snapshot's running batch-norm statistics from training, as the reference's
    /// fge.py does, rather than recomputing them for the snapshot's weights.
    #[serde(default)]
    pub running_statistics: bool,
    /// Take the snapshots at the end of the epochs where `epoch % cycle + 1 == cycle / 2`
    /// (epochs from 0), as the reference's fge.py does, rather than at the iteration where the
    /// rate is lowest (the paper's rule). The two are the same point for an even `cycle`.
    #[serde(default)]
    pub snapshot_at_epoch_end: bool,
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
///
/// Its data fields (`data`, `device`, `held_out`, `limit`, `seed`) repeat those of
/// [`TrainingOptions`] on purpose: a job is one flat JSON object that refuses unknown fields,
/// and serde cannot flatten two structs into such an object.
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
    /// Where to run.
    #[serde(default = "defaults::device")]
    pub device: Device,
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

/// Evaluate a plane of weight space: the Cartesian grid in the plane through three weight
/// vectors `w1`, `w2`, `w3`, with `u = w2 - w1` and `v` the part of `w3 - w1` orthogonal to
/// `u`, both normalised (the paper's Figure 1). A grid point `w1 + x u + y v` is a linear
/// combination of the three, and its batch-norm statistics are recomputed on the training
/// data.
///
/// The three vectors are a curve's endpoints and its bend (for several bends, the bend
/// farthest from the segment between the endpoints, and the curve is drawn as its
/// projection), or three bundles of one network each. Its data fields repeat those of
/// [`EvalJob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaneJob {
    /// One curve bundle, or three bundles of one network each (`w1`, `w2`, `w3`).
    pub bundles: Vec<PathBuf>,
    /// The data.
    pub data: String,
    /// Points along each axis: the grid has `grid * grid`.
    #[serde(default = "defaults::plane_grid")]
    pub grid: usize,
    /// How far the grid reaches beyond the three points, as a fraction of their extent along
    /// each axis (the reference's 0.2 on every side).
    #[serde(default = "defaults::plane_margin")]
    pub margin: f64,
    /// Points of the t grid of a curve's projection.
    #[serde(default = "defaults::points")]
    pub curve_points: usize,
    /// The weight of the L2 term of the training loss, `wd / 2 * |w|^2` over the trained
    /// parameters.
    #[serde(default = "defaults::wd")]
    pub wd: f64,
    /// Mini-batch size.
    #[serde(default = "defaults::eval_batch_size")]
    pub batch_size: usize,
    /// Where to run.
    #[serde(default = "defaults::device")]
    pub device: Device,
    /// Take this many training samples as the test split.
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed for the held-out split.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Where the values found so far are kept, written again after each grid point.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// Continue from `state` when it holds points of this same plane (the same bundles, data
    /// and grid); without it, a plane starts afresh.
    #[serde(default)]
    pub resume: bool,
}

/// Recompute the batch-norm statistics of a curve bundle on a grid of t from the training
/// data, and write the bundle again with them (a curve from `pack` or a converted checkpoint
/// has statistics only where its files had them).
///
/// Its data fields repeat those of [`EvalJob`], for the same reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BnJob {
    /// The curve bundle.
    pub bundle: PathBuf,
    /// The data.
    pub data: String,
    /// Points of the t grid of the statistics.
    #[serde(default = "defaults::bn_grid")]
    pub bn_grid: usize,
    /// Mini-batch size.
    #[serde(default = "defaults::eval_batch_size")]
    pub batch_size: usize,
    /// Where to run.
    #[serde(default = "defaults::device")]
    pub device: Device,
    /// Take this many training samples as the test split (they are left out of the
    /// statistics).
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed for the held-out split.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Where to write the bundle.
    pub out: PathBuf,
}

named_enum! {
    /// The norm of a perturbation budget.
    Norm ("norm") {
        /// The largest change of any one value: `max |x' - x| <= eps`.
        Linf = "linf",
        /// The Euclidean length of the change, per sample: `||x' - x||_2 <= eps`.
        L2 = "l2",
    }
}

named_enum! {
    /// A split of a data set.
    DataSplit ("split") {
        /// The test split (or the held-out part of the training samples).
        Test = "test",
        /// The training split.
        Train = "train",
    }
}

named_enum! {
    /// An attack that follows the gradient of the attacked model's loss.
    GradientAttack ("gradient attack") {
        /// One step of the budget's size along the gradient's sign (L∞) or direction (L2),
        /// from the clean input (Goodfellow et al. 2015).
        Fgsm = "fgsm",
        /// Projected gradient descent from a random start in the budget, with restarts (Madry
        /// et al. 2018).
        Pgd = "pgd",
    }
}

/// The model an attack differentiates: points of a curve or members of a snapshot set of one
/// bundle, with the bundle's batch-norm statistics for each point (interpolated on its
/// `bn_grid` as the runtime does) and its temperature.
///
/// With `draws` unset, the model is the ensemble of all of them: its loss is the cross-entropy
/// of their mean probabilities, which is what an ensemble outputs. With `draws = S`, each step
/// draws S of them uniformly (with replacement) and averages the S losses' gradients:
/// Expectation over Transformation against a defence that answers each query with one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The bundle; the job's own when unset.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// Points of a curve.
    #[serde(default)]
    pub t: Vec<f64>,
    /// Members of a snapshot set.
    #[serde(default)]
    pub members: Vec<usize>,
    /// Draw this many of the points per step instead of taking all of them.
    #[serde(default)]
    pub draws: Option<usize>,
}

/// One set of adversarial inputs to make: an attack, a budget and the model it differentiates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Craft {
    /// The file name of the adversarial inputs (`.npy`, float32, the clean inputs' shape) in
    /// the job's `out` folder.
    pub file: String,
    /// The attacked model.
    pub target: Target,
    /// The attack.
    pub attack: GradientAttack,
    /// The norm of the budget.
    pub norm: Norm,
    /// The budget: the largest norm of a perturbation. `0` writes the clean inputs.
    pub eps: f64,
    /// Steps of PGD.
    #[serde(default = "defaults::attack_steps")]
    pub steps: usize,
    /// Step size of PGD; `2.5 eps / steps` when unset.
    #[serde(default)]
    pub step_size: Option<f64>,
    /// Runs of PGD from different random starts; each sample keeps the run with the highest
    /// loss.
    #[serde(default = "defaults::restarts")]
    pub restarts: usize,
}

/// Make adversarial inputs with the gradients of a model (`modeconn attack`): the job writes
/// the samples it attacks (`clean.npy`, float32, and `labels.npy`, int64) and, for each
/// [`Craft`], its adversarial inputs, into the folder `out`. Evaluating them on a defence is the
/// caller's part, through the runtime, as a server would answer them.
///
/// Its data fields repeat those of [`EvalJob`], for the same reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackJob {
    /// The bundle attacked (and each target's unless it names another).
    pub bundle: PathBuf,
    /// The data.
    pub data: String,
    /// The split whose samples are attacked.
    #[serde(default = "default_split")]
    pub split: DataSplit,
    /// Attack only the first N samples of the split.
    #[serde(default)]
    pub samples: Option<usize>,
    /// Mini-batch size.
    #[serde(default = "defaults::eval_batch_size")]
    pub batch_size: usize,
    /// Where to run.
    #[serde(default = "defaults::device")]
    pub device: Device,
    /// Take this many training samples as the test split.
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed of the held-out split, the random starts and the draws.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Every value of an adversarial input is clipped to `[clip[0], clip[1]]`.
    #[serde(default = "defaults::clip")]
    pub clip: [f64; 2],
    /// The folder the inputs are written to (made when missing).
    pub out: PathBuf,
    /// What to make.
    #[serde(default)]
    pub crafts: Vec<Craft>,
}

fn default_split() -> DataSplit {
    DataSplit::Test
}

/// Write the samples of a split as `.npy` files (`x.npy`, float32, and `y.npy`, int64, in the
/// folder `out`), loaded as every other job loads them: for tools that evaluate through the
/// runtime, such as `modeconn calibrate`.
///
/// Its data fields repeat those of [`EvalJob`], for the same reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesJob {
    /// The data.
    pub data: String,
    /// The split written.
    #[serde(default = "default_split")]
    pub split: DataSplit,
    /// Write only the first N samples of the split.
    #[serde(default)]
    pub samples: Option<usize>,
    /// Take this many training samples as the test split.
    #[serde(default)]
    pub held_out: Option<usize>,
    /// Use only the first N training samples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Seed of the held-out split.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// The folder the files are written to (made when missing).
    pub out: PathBuf,
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
    /// Recompute a curve's batch-norm statistics.
    Bn(BnJob),
    /// Say what the trainer runs on: libtorch, its CUDA library, the GPUs (`modeconn doctor`).
    Doctor(DoctorJob),
    /// Make adversarial inputs (`modeconn attack`).
    Attack(AttackJob),
    /// Write the samples of a split (`modeconn calibrate`).
    Samples(SamplesJob),
    /// Evaluate a plane through three weight vectors (`modeconn plane`).
    Plane(PlaneJob),
}

/// Ask the trainer what it runs on. Takes no options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorJob {}

impl Job {
    /// The command, as the job's `"command"` tag (and its report's) says it.
    pub fn command(&self) -> &'static str {
        match self {
            Job::Train(_) => "train",
            Job::Curve(_) => "curve",
            Job::Fge(_) => "fge",
            Job::Eval(_) => "eval",
            Job::Bn(_) => "bn",
            Job::Doctor(_) => "doctor",
            Job::Attack(_) => "attack",
            Job::Samples(_) => "samples",
            Job::Plane(_) => "plane",
        }
    }

    /// Parses a job from JSON, with a message that names the field at fault: its path (e.g.
    /// `epochs: invalid type: string "three", expected usize`, `hidden[1]: ...`), or the field
    /// itself for unknown and missing fields. Malformed JSON is answered with its line and
    /// column.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJob`] with that message.
    pub fn from_json(text: &str) -> Result<Job> {
        let error = match serde_json::from_str::<Job>(text) {
            Ok(job) => return Ok(job),
            Err(e) => e,
        };
        if error.classify() != serde_json::error::Category::Data {
            return Err(Error::InvalidJob {
                message: error.to_string(),
            });
        }
        // The tag (`command`) and `#[serde(flatten)]` make serde buffer the job before the
        // variant's struct sees it, which loses the path to the faulty field. Parse the
        // variant's struct again on its own to find that path.
        let located = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(crate::locate::locate_error);
        Err(Error::InvalidJob {
            message: located.unwrap_or_else(|| error.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a job that must not parse.
    fn error(text: &str) -> String {
        match Job::from_json(text) {
            Ok(job) => panic!("parsed: {job:?}"),
            Err(Error::InvalidJob { message }) => message,
            Err(e) => panic!("not an invalid job: {e}"),
        }
    }

    const TRAIN: &str = r#""command":"train","arch":"mlp","data":"digits","out":"x""#;

    #[test]
    fn type_errors_in_flattened_options_name_the_field() {
        let m = error(&format!(r#"{{{TRAIN},"epochs":"three"}}"#));
        assert_eq!(m, r#"epochs: invalid type: string "three", expected usize"#);
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"lr":"fast"}}"#));
        assert!(m.starts_with("lr: invalid type"), "{m}");
        let m = error(&format!(r#"{{{TRAIN},"epochs":-3}}"#));
        assert!(m.starts_with("epochs: invalid value"), "{m}");
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"limit":1.5}}"#));
        assert!(m.starts_with("limit: invalid type"), "{m}");
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"resume":"yes"}}"#));
        assert!(m.starts_with("resume: invalid type"), "{m}");
    }

    #[test]
    fn type_errors_in_the_jobs_own_fields_name_the_field() {
        let m = error(r#"{"command":"train","arch":3,"data":"digits","epochs":3,"out":"x"}"#);
        assert!(m.starts_with("arch: invalid type: integer `3`"), "{m}");
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"hidden":[8,"a"]}}"#));
        assert!(m.starts_with("hidden[1]: invalid type"), "{m}");
        let m = error(
            r#"{"command":"curve","start":"a","end":"b","bends":"one","data":"digits","epochs":1,"out":"c"}"#,
        );
        assert!(m.starts_with("bends: invalid type"), "{m}");
        let m = error(
            r#"{"command":"curve","start":"a","end":"b","data":"digits","epochs":1.5,"out":"c"}"#,
        );
        assert!(m.starts_with("epochs: invalid type"), "{m}");
        let m = error(
            r#"{"command":"fge","init":"a","cycle":2,"lr1":"big","lr2":0.001,"data":"digits","epochs":2,"out":"f"}"#,
        );
        assert!(m.starts_with("lr1: invalid type"), "{m}");
        let m = error(
            r#"{"command":"fge","init":"a","cycle":2,"lr1":0.05,"lr2":0.001,"data":"digits","epochs":2,"seed":"s","out":"f"}"#,
        );
        assert!(m.starts_with("seed: invalid type"), "{m}");
        let m = error(r#"{"command":"eval","bundle":"b","data":"digits","points":"many"}"#);
        assert!(m.starts_with("points: invalid type"), "{m}");
    }

    #[test]
    fn unknown_missing_and_malformed_are_named() {
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"epoch":4}}"#));
        assert!(m.contains("unknown field `epoch`"), "{m}");
        let m = error(r#"{"command":"eval","bundle":"b","data":"digits","pionts":3}"#);
        assert!(
            m.starts_with("unknown field `pionts`, expected one of"),
            "{m}"
        );
        let m = error(&format!(r#"{{{TRAIN}}}"#));
        assert!(m.contains("missing field `epochs`"), "{m}");
        let m = error(r#"{"command":"train","arch":"mlp","data":"digits","epochs":3}"#);
        assert!(m.contains("missing field `out`"), "{m}");
        let m = error(r#"{"command":"trian","arch":"mlp"}"#);
        assert!(m.contains("unknown variant `trian`"), "{m}");
        let m = error(r#"{"arch":"mlp"}"#);
        assert!(m.contains("missing field `command`"), "{m}");
        let m = error(r#"{"command":"train","arch":"mlp","#);
        assert!(m.contains("line 1"), "{m}");
        let m = error("[1, 2]");
        assert_eq!(
            m,
            "a job is a JSON object tagged by `command`, not an array"
        );
    }

    #[test]
    fn valid_jobs_still_parse() {
        let job = Job::from_json(&format!(r#"{{{TRAIN},"epochs":3,"hidden":[8],"lr":1}}"#))
            .unwrap_or_else(|e| panic!("{e}"));
        let Job::Train(t) = job else {
            panic!("not a train job");
        };
        assert_eq!(t.training.epochs, 3);
        assert_eq!(t.training.lr, 1.0);
        assert_eq!(t.hidden, Some(vec![8]));
        let text = serde_json::to_string(&Job::Train(t.clone())).unwrap_or_default();
        assert_eq!(Job::from_json(&text).ok(), Some(Job::Train(t)));
    }

    #[test]
    fn names_are_checked_and_named() {
        let m = error(&format!(r#"{{{TRAIN},"epochs":3,"device":"tpu"}}"#));
        assert!(m.starts_with("device: `tpu` is not a valid device"), "{m}");
        let m = error(
            r#"{"command":"curve","start":"a","end":"b","basis":"spline","data":"digits","epochs":1,"out":"c"}"#,
        );
        assert!(m.starts_with("basis: unknown variant `spline`"), "{m}");
        for device in [Device::Cpu, Device::Cuda(0), Device::Cuda(3), Device::Auto] {
            assert_eq!(device.to_string().parse::<Device>().ok(), Some(device));
            let wire = serde_json::to_value(device).unwrap_or_default();
            assert_eq!(wire, device.to_string());
        }
        assert_eq!("cuda:0".parse::<Device>().ok(), Some(Device::Cuda(0)));
        assert_eq!(Device::Cuda(3).to_string(), "cuda:3");
        let e = "tpu".parse::<Device>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("`tpu` is not a valid device: expected one of cpu, cuda, cuda:N, auto")
        );
        for bad in ["cuda:", "cuda:-1", "cuda:x", "cuda:99999999999"] {
            assert!(bad.parse::<Device>().is_err(), "{bad}");
        }
        assert_eq!("polychain".parse::<Basis>().ok(), Some(Basis::Polychain));
    }

    #[test]
    fn defaults_fill_what_a_job_leaves_out() {
        let job = Job::from_json(r#"{"command":"eval","bundle":"b","data":"digits"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(job.command(), "eval");
        let Job::Eval(e) = job else {
            panic!("not an eval job");
        };
        assert_eq!(e.points, defaults::points());
        assert_eq!(e.batch_size, defaults::eval_batch_size());
        assert_eq!(e.device, defaults::device());
        assert_eq!(e.seed, defaults::seed());
    }
}
