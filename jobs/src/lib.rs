//! modeconn-jobs: the contract between the callers of the trainer (the `modeconn` CLI, the C
//! API) and the trainer plugin (`libmodeconn_trainer.so`, the `cdylib` of `modeconn-trainer`).
//!
//! Everything both sides must agree on is here, once, with no libtorch and no ONNX Runtime:
//!
//! - [`job`]: what to do ([`Job`]: train, curve, fge, eval, bn, attack, samples, plane), with the defaults of every
//!   optional field in [`defaults`], which the CLI's flags show as theirs;
//! - [`event`]: the progress the trainer reports while it runs ([`Event`]);
//! - [`report`]: what a finished job reports ([`Report`]), and the per-epoch [`HistoryRow`]
//!   that checkpoints and bundle provenance keep;
//! - [`plugin`]: finding, loading and calling the plugin ([`TrainerPlugin`]), which speaks
//!   version [`ABI_VERSION`] of the ABI;
//! - [`error`]: the one [`Error`], whose [`Error::code`] is the C API's status.
//!
//! On the wire (the plugin's C ABI) a job is a JSON object tagged by `"command"`, each event a
//! JSON object tagged by `"event"`, and the report a JSON object with `"ok"`.
//!
//! ```
//! use modeconn_jobs::{Device, Job, defaults};
//!
//! let job = Job::from_json(
//!     r#"{"command": "train", "arch": "mlp", "data": "digits", "epochs": 3, "out": "a.safetensors"}"#,
//! )?;
//! let Job::Train(train) = &job else {
//!     unreachable!("the command is train");
//! };
//! assert_eq!(train.training.lr, defaults::lr());
//! assert_eq!(train.training.device, Device::Auto);
//!
//! // Errors name the field at fault.
//! let error = Job::from_json(r#"{"command": "eval", "bundle": "b", "data": "digits", "points": "many"}"#)
//!     .unwrap_err();
//! assert!(error.to_string().starts_with("invalid job: points: invalid type"));
//! # Ok::<(), modeconn_jobs::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

/// Defines a fieldless enum whose values have one name each, on the wire (serde) and on the
/// command line (`FromStr`, `Display`).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// The names of every value, in order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name of the value, as JSON and the command line spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> crate::Result<Self> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(crate::Error::UnknownName {
                        what: $what,
                        value: s.to_string(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

pub mod error;
pub mod event;
pub mod job;
mod locate;
pub mod plugin;
pub mod report;

pub use error::{Error, ErrorCode, Result, Searched};
pub use event::{EpochScores, Event, Phase};
pub use job::{
    AttackJob, Basis, BnJob, Craft, CurveJob, DataSplit, Device, DoctorJob, EvalJob, FgeJob,
    GradientAttack, Job, Norm, PlaneJob, SamplesJob, Target, TrainJob, TrainingOptions, defaults,
};
pub use plugin::TrainerPlugin;
pub use report::{
    Along, AttackReport, BnReport, Crafted, CurveEvaluation, CurveReport, DoctorReport,
    EnsembleScores, EvalReport, Evaluation, FgeReport, FgeSchedule, Gpu, HistoryRow, Libtorch,
    PlanePoint, PlaneReport, PointRow, Report, SamplesReport, Scores, SnapshotsEvaluation, Stats,
    Summary, TrainReport, Trained,
};

/// The FGE cycle: at iteration `i` (1-based) of a cycle of `c` iterations,
/// `s = ((i-1) mod c + 1) / c`, and the rate falls linearly from `lr1` to `lr2` over the first
/// half of the cycle and rises back over the second.
pub fn fge_lr(lr1: f64, lr2: f64, i: usize, c: usize) -> f64 {
    let c = c.max(1);
    let s = ((i.max(1) - 1) % c + 1) as f64 / c as f64;
    if s <= 0.5 {
        (1.0 - 2.0 * s) * lr1 + 2.0 * s * lr2
    } else {
        (2.0 - 2.0 * s) * lr2 + (2.0 * s - 1.0) * lr1
    }
}

/// The version of the plugin's C ABI: the plugin returns it from
/// `modeconn_trainer_abi_version()`, and the loader refuses a plugin of another version.
///
/// Version 2: the epoch event says `test_nll` (was `test_loss`), as history rows and reports do.
/// Version 3: jobs on users' ONNX graphs (`onnx`, `init`, `start_member`, `end_member`,
/// `init_member`; `arch` optional), the `bn` job and report, and FGE continuing a training
/// checkpoint's momentum (`momentum_from`, `fresh_momentum`; the report's `momentum_from`).
/// Version 4: the `attack` job and report (adversarial inputs from the trainer's gradients), and
/// the `samples` job and report (a split written as `.npy`).
/// Version 5: the `plane` job and report, and the FGE report's schedule and running ensemble.
pub const ABI_VERSION: u32 = 5;
