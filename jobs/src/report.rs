//! Reports: what a finished job tells its caller, and the per-epoch history rows that
//! checkpoints and bundle provenance keep.
//!
//! On the wire a report is a JSON object with `"ok": true` and its `"command"`, its fields
//! beside them (nested objects where the fields below say so); a failure is
//! `{"ok": false, "error": "..."}` instead (see [`crate::plugin`]). Accuracies are fractions in
//! `[0, 1]`, errors `1 - accuracy`, losses and NLLs mean negative log-likelihoods in nats.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::EpochScores;
use crate::job::{Basis, Device};

/// One completed epoch, as checkpoints and the provenance of the bundle record it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// The epoch (1-based).
    pub epoch: usize,
    /// The epoch's learning rate, for commands with one rate per epoch (`train`, `curve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Its scores (`train_loss`, `train_accuracy`, and `test_nll`, `test_accuracy` when
    /// evaluated).
    #[serde(flatten)]
    pub scores: EpochScores,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// Ensemble members collected so far (`fge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<usize>,
}

/// What every training report says (`train`, `curve`, `fge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// The bundle written.
    pub out: PathBuf,
    /// Where it ran: `cpu` or `cuda`.
    pub device: Device,
    /// Epochs of the run.
    pub epochs: usize,
    /// Mean wall time of the epochs the reporting process ran: a resumed run counts the
    /// epochs after its checkpoint (the history keeps every epoch's own time), and a run whose
    /// checkpoint held every epoch counts those.
    pub seconds_per_epoch: f64,
}

/// Loss and accuracy of one network on both splits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Training loss (during the last epoch, or of the finished network when nothing was left
    /// to train).
    pub train_loss: f64,
    /// Training accuracy, likewise.
    pub train_accuracy: f64,
    /// Test NLL of the finished network.
    pub test_nll: f64,
    /// Test accuracy of the finished network.
    pub test_accuracy: f64,
}

/// The report of `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The architecture.
    pub arch: String,
    /// The bundle, the device, the epochs and their time.
    #[serde(flatten)]
    pub run: Trained,
    /// The scores of the network written.
    #[serde(flatten)]
    pub scores: Scores,
}

/// The report of `curve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveReport {
    /// The basis.
    pub basis: Basis,
    /// Control points, endpoints included.
    pub points: usize,
    /// Points of the batch-norm grid (0 for networks without batch norm).
    pub bn_grid: usize,
    /// The bundle, the device, the epochs and their time.
    #[serde(flatten)]
    pub run: Trained,
    /// Mean training loss of the last epoch run (0 when nothing was left to train).
    pub train_loss: f64,
    /// Training accuracy of the last epoch run.
    pub train_accuracy: f64,
}

/// The report of `fge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FgeReport {
    /// Members (snapshots) written.
    pub members: usize,
    /// The cycle in iterations (mini-batches), even.
    pub cycle_iterations: usize,
    /// Test accuracy of each member.
    pub member_test_accuracy: Vec<f64>,
    /// Test NLL of each member.
    pub member_test_nll: Vec<f64>,
    /// Test accuracy of the ensemble (mean of the members' probabilities).
    pub ensemble_test_accuracy: f64,
    /// Test NLL of the ensemble.
    pub ensemble_test_nll: f64,
    /// The ensemble of the first 1, 2, ... members: its test accuracy.
    #[serde(default)]
    pub running_ensemble_test_accuracy: Vec<f64>,
    /// The ensemble of the first 1, 2, ... members: its test NLL.
    #[serde(default)]
    pub running_ensemble_test_nll: Vec<f64>,
    /// The schedule the run followed, and where it took each snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<FgeSchedule>,
    /// The training checkpoint whose momentum the run continued (none: fresh momentum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_from: Option<PathBuf>,
    /// The bundle, the device, the epochs and their time.
    #[serde(flatten)]
    pub run: Trained,
}

/// The cyclical schedule of an FGE run: the rate at iteration `i` (1-based, counted over the
/// whole run) is [`crate::fge_lr`]`(lr1, lr2, i, cycle_iterations)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FgeSchedule {
    /// The largest rate of a cycle.
    pub lr1: f64,
    /// The smallest rate, in the middle of a cycle.
    pub lr2: f64,
    /// Iterations (mini-batches) of one epoch.
    pub iterations_per_epoch: usize,
    /// Iterations of the run.
    pub iterations: usize,
    /// The iteration after which each member's snapshot was taken, in order.
    pub snapshot_iterations: Vec<usize>,
}

/// The scores of one network evaluated: a point of a curve, or a member of a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointRow {
    /// Where on the curve (curves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<f64>,
    /// Which member (snapshot sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<usize>,
    /// Training loss (NLL).
    pub train_loss: f64,
    /// Training error.
    pub train_error: f64,
    /// Test NLL.
    pub test_nll: f64,
    /// Test error.
    pub test_error: f64,
    /// Expected calibration error on the test split (15 bins of confidence).
    #[serde(default)]
    pub test_ece: f64,
}

/// Statistics of one metric over the points of a curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean over the points.
    pub mean: f64,
    /// Length-weighted mean: the trapezoid rule weighted by the distances between neighbouring
    /// points, divided by the length (the mean when the length is 0).
    pub integral: f64,
}

/// [`Stats`] of each metric of a [`PointRow`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Of the training loss.
    pub train_loss: Stats,
    /// Of the training error.
    pub train_error: Stats,
    /// Of the test NLL.
    pub test_nll: Stats,
    /// Of the test error.
    pub test_error: Stats,
}

/// The scores of an ensemble (mean of the members' probabilities) on the test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleScores {
    /// Members in the ensemble.
    pub members: usize,
    /// Test NLL.
    pub test_nll: f64,
    /// Test error.
    pub test_error: f64,
    /// Expected calibration error on the test split (15 bins of confidence).
    #[serde(default)]
    pub test_ece: f64,
}

/// An evaluation along a curve (or the segment): each point of the t grid, their summary and
/// their ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Along {
    /// One row per point of the grid, in order of t.
    pub points: Vec<PointRow>,
    /// The metrics over the points.
    pub summary: Summary,
    /// The ensemble of the grid's points.
    pub ensemble: EnsembleScores,
}

/// The evaluation of a curve bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveEvaluation {
    /// The basis.
    pub basis: Basis,
    /// Control points, endpoints included.
    pub control_points: usize,
    /// Arc length of the curve in weight space.
    pub length: f64,
    /// Distance between the endpoints.
    pub segment_length: f64,
    /// `length / segment_length`; `null` when the endpoints coincide.
    pub length_ratio: Option<f64>,
    /// Along the curve.
    pub curve: Along,
    /// Along the straight segment between the endpoints, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Along>,
}

/// The evaluation of a snapshot-set bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotsEvaluation {
    /// One row per member, in order.
    pub members: Vec<PointRow>,
    /// The ensemble of the first 1, 2, ... members.
    pub running_ensemble: Vec<EnsembleScores>,
    /// The ensemble of all members.
    pub ensemble: EnsembleScores,
}

/// What an evaluation found, by the bundle's kind (`"kind"` on the wire).
// One report per job: its size does not matter, and boxing would only make building and
// matching reports clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evaluation {
    /// A curve bundle.
    Curve(CurveEvaluation),
    /// A snapshot-set bundle.
    Snapshots(SnapshotsEvaluation),
}

/// The report of `eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The bundle evaluated.
    pub bundle: PathBuf,
    /// Where it ran: `cpu` or `cuda`.
    pub device: Device,
    /// The bundle's kind and what was found.
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// The report of `bn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnReport {
    /// The curve bundle read.
    pub bundle: PathBuf,
    /// The bundle written.
    pub out: PathBuf,
    /// Where it ran: `cpu` or `cuda`.
    pub device: Device,
    /// The t of the grid, where the statistics were recomputed.
    pub grid: Vec<f64>,
    /// How many statistics tensors (running means and variances) each grid point holds.
    pub statistics: usize,
}

/// What the trainer runs on: the report of `doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorReport {
    /// The libtorch the plugin runs on.
    pub libtorch: Libtorch,
    /// Whether libtorch's CUDA library (`libtorch_cuda.so`) loads.
    pub cuda_library_loads: bool,
    /// Whether libtorch can use CUDA (its library loads and sees a device).
    pub cuda_available: bool,
    /// The CUDA devices libtorch sees, by index.
    pub devices: Vec<Gpu>,
    /// Why there are none, when there are none (no driver, no device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_devices: Option<String>,
}

/// The libtorch a plugin runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Libtorch {
    /// Its version (e.g. `2.11.0+cu130`), when it can be told.
    pub version: Option<String>,
    /// The folder of its libraries.
    pub path: Option<PathBuf>,
    /// The CUDA runtime version it was built with (e.g. 13000), 0 without CUDA.
    pub cuda_runtime: i64,
    /// The cuDNN version it was built with, 0 without.
    pub cudnn: i64,
}

/// A CUDA device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// Its index (`cuda:N`).
    pub index: u32,
    /// Its name, e.g. `NVIDIA H200`.
    pub name: String,
    /// Its memory in bytes.
    pub memory_bytes: u64,
    /// Its compute capability, e.g. `9.0`.
    pub compute_capability: String,
}

/// One set of adversarial inputs made by an `attack` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crafted {
    /// The file written.
    pub file: PathBuf,
    /// Accuracy of the attacked model (the target) on these inputs, as the attacker measures
    /// it: for a target with draws, the mean over all its points of each point's accuracy.
    pub target_accuracy: f64,
    /// The largest norm of a perturbation made, in the craft's norm.
    pub max_norm: f64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The report of `attack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// Where it ran: `cpu` or `cuda`.
    pub device: Device,
    /// The samples attacked.
    pub samples: usize,
    /// The shape of one input.
    pub input_shape: Vec<usize>,
    /// The clean inputs, float32 `[samples, ...input_shape]`.
    pub clean: PathBuf,
    /// Their labels, int64 `[samples]`.
    pub labels: PathBuf,
    /// The adversarial inputs, one entry per craft of the job, in order.
    pub crafted: Vec<Crafted>,
}

/// The report of `samples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplesReport {
    /// The samples written.
    pub samples: usize,
    /// The shape of one input.
    pub input_shape: Vec<usize>,
    /// The classes of the data set.
    pub classes: usize,
    /// The inputs, float32 `[samples, ...input_shape]`.
    pub x: PathBuf,
    /// Their labels, int64 `[samples]`.
    pub y: PathBuf,
}

/// One of the three weight vectors of a plane, or a point of a curve's projection, in the
/// plane's coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanePoint {
    /// What it is: `start`, `bend`, `end` (or `bend K` of several), or the bundle's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where on the curve (projections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<f64>,
    /// Along `u`, in units of weight-space distance.
    pub x: f64,
    /// Along `v`, likewise.
    pub y: f64,
    /// Distance from the plane (0 for the three vectors that span it).
    pub off_plane: f64,
}

/// The report of `plane`. Grids are rows of `y`: `train_loss[j][i]` is at `(x[i], y[j])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaneReport {
    /// The bundles: one curve, or the three networks.
    pub bundles: Vec<PathBuf>,
    /// Where it ran: `cpu` or `cuda`.
    pub device: Device,
    /// `|w2 - w1|`: the length of `u` before it was normalised.
    pub u_norm: f64,
    /// The length of `v` (the part of `w3 - w1` orthogonal to `u`) before it was normalised.
    pub v_norm: f64,
    /// The weight of the L2 term in `train_loss`.
    pub wd: f64,
    /// The grid's coordinates along `u`.
    pub x: Vec<f64>,
    /// The grid's coordinates along `v`.
    pub y: Vec<f64>,
    /// The three vectors that span the plane (and a curve's other bends, projected).
    pub anchors: Vec<PlanePoint>,
    /// The curve projected onto the plane (empty for three networks).
    pub curve: Vec<PlanePoint>,
    /// Training loss: the NLL plus the L2 term `wd / 2 * |w|^2`.
    pub train_loss: Vec<Vec<f64>>,
    /// Training NLL.
    pub train_nll: Vec<Vec<f64>>,
    /// Training error.
    pub train_error: Vec<Vec<f64>>,
    /// Test NLL.
    pub test_nll: Vec<Vec<f64>>,
    /// Test error.
    pub test_error: Vec<Vec<f64>>,
    /// Grid points taken from the state of an earlier run rather than evaluated.
    pub resumed: usize,
}

/// The report of a finished job, by its command (`"command"` on the wire).
///
/// It serialises as the plugin's success report: with `"ok": true` beside the command and the
/// fields. Parsing ignores `"ok"`.
// One report per job (see `Evaluation`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Report {
    /// Of `train`.
    Train(TrainReport),
    /// Of `curve`.
    Curve(CurveReport),
    /// Of `fge`.
    Fge(FgeReport),
    /// Of `eval`.
    Eval(EvalReport),
    /// Of `bn`.
    Bn(BnReport),
    /// Of `doctor`.
    Doctor(DoctorReport),
    /// Of `attack`.
    Attack(AttackReport),
    /// Of `samples`.
    Samples(SamplesReport),
    /// Of `plane`.
    Plane(PlaneReport),
}

impl Report {
    /// The command, as the report's `"command"` tag (and its job's) says it.
    pub fn command(&self) -> &'static str {
        match self {
            Report::Train(_) => "train",
            Report::Curve(_) => "curve",
            Report::Fge(_) => "fge",
            Report::Eval(_) => "eval",
            Report::Bn(_) => "bn",
            Report::Doctor(_) => "doctor",
            Report::Attack(_) => "attack",
            Report::Samples(_) => "samples",
            Report::Plane(_) => "plane",
        }
    }

    /// The bundle a training job wrote (`None` for `eval`).
    pub fn out(&self) -> Option<&Path> {
        match self {
            Report::Train(r) => Some(&r.run.out),
            Report::Curve(r) => Some(&r.run.out),
            Report::Fge(r) => Some(&r.run.out),
            Report::Bn(r) => Some(&r.out),
            Report::Eval(_)
            | Report::Doctor(_)
            | Report::Attack(_)
            | Report::Samples(_)
            | Report::Plane(_) => None,
        }
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The report borrowed, tagged as [`Report`] is.
        #[derive(Serialize)]
        #[serde(tag = "command", rename_all = "snake_case")]
        enum Tagged<'a> {
            Train(&'a TrainReport),
            Curve(&'a CurveReport),
            Fge(&'a FgeReport),
            Eval(&'a EvalReport),
            Bn(&'a BnReport),
            Doctor(&'a DoctorReport),
            Attack(&'a AttackReport),
            Samples(&'a SamplesReport),
            Plane(&'a PlaneReport),
        }
        /// The success report of the wire.
        #[derive(Serialize)]
        struct Success<'a> {
            ok: bool,
            #[serde(flatten)]
            report: Tagged<'a>,
        }
        let report = match self {
            Report::Train(r) => Tagged::Train(r),
            Report::Curve(r) => Tagged::Curve(r),
            Report::Fge(r) => Tagged::Fge(r),
            Report::Eval(r) => Tagged::Eval(r),
            Report::Bn(r) => Tagged::Bn(r),
            Report::Doctor(r) => Tagged::Doctor(r),
            Report::Attack(r) => Tagged::Attack(r),
            Report::Samples(r) => Tagged::Samples(r),
            Report::Plane(r) => Tagged::Plane(r),
        };
        Success { ok: true, report }.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trained() -> Trained {
        Trained {
            out: "a.safetensors".into(),
            device: Device::Cpu,
            epochs: 3,
            seconds_per_epoch: 0.5,
        }
    }

    #[test]
    fn reports_are_flat_objects_that_say_ok() {
        let report = Report::Train(TrainReport {
            arch: "mlp".into(),
            run: trained(),
            scores: Scores {
                train_loss: 0.5,
                train_accuracy: 0.75,
                test_nll: 0.25,
                test_accuracy: 1.0,
            },
        });
        let wire = json!({"ok": true, "command": "train", "arch": "mlp", "out": "a.safetensors",
            "device": "cpu", "epochs": 3, "seconds_per_epoch": 0.5, "train_loss": 0.5,
            "train_accuracy": 0.75, "test_nll": 0.25, "test_accuracy": 1.0});
        assert_eq!(serde_json::to_value(&report).ok(), Some(wire.clone()));
        assert_eq!(
            serde_json::from_value::<Report>(wire).ok(),
            Some(report.clone())
        );
        assert_eq!(report.command(), "train");
        assert_eq!(report.out(), Some(Path::new("a.safetensors")));
    }

    #[test]
    fn eval_reports_keep_their_nesting() {
        let row = PointRow {
            t: None,
            member: Some(0),
            train_loss: 0.1,
            train_error: 0.0,
            test_nll: 0.2,
            test_error: 0.5,
            test_ece: 0.25,
        };
        let ensemble = EnsembleScores {
            members: 1,
            test_nll: 0.2,
            test_error: 0.5,
            test_ece: 0.25,
        };
        let report = Report::Eval(EvalReport {
            bundle: "f.safetensors".into(),
            device: Device::Cuda(0),
            evaluation: Evaluation::Snapshots(SnapshotsEvaluation {
                members: vec![row],
                running_ensemble: vec![ensemble],
                ensemble,
            }),
        });
        let v = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(v["ok"], true);
        assert_eq!(v["kind"], "snapshots");
        assert_eq!(v["members"][0]["member"], 0);
        assert!(v["members"][0].get("t").is_none(), "{v}");
        assert_eq!(v["ensemble"]["test_nll"], 0.2);
        assert_eq!(v["running_ensemble"][0]["members"], 1);
        assert_eq!(serde_json::from_value::<Report>(v).ok(), Some(report));
    }

    #[test]
    fn history_rows_leave_out_what_a_command_has_not() {
        let row = HistoryRow {
            epoch: 1,
            lr: None,
            scores: EpochScores {
                train_loss: 0.5,
                train_accuracy: 0.25,
                test_nll: None,
                test_accuracy: None,
            },
            seconds: 2.0,
            members: Some(3),
        };
        let wire = json!({"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.25,
                          "seconds": 2.0, "members": 3});
        assert_eq!(serde_json::to_value(row).ok(), Some(wire.clone()));
        assert_eq!(serde_json::from_value::<HistoryRow>(wire).ok(), Some(row));
    }
}
