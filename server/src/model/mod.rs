//! A served model: a loaded bundle and its policy (this file), the translation of a request
//! into a query the batcher can run (`decode.rs`: everything is checked there, before
//! queueing), and of an answer into a response (`respond.rs`).

mod decode;
mod respond;

use std::path::{Path, PathBuf};

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::{Ensemble, Member, Sampling};
use ndarray::{Array1, Array2, Array3};
use serde_json::{Value, json};

use crate::config::{Mode, Policy};
use crate::{ApiError, Result};

/// Outputs a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Mean probabilities `[batch, classes]` (FP32).
    Probabilities,
    /// Predicted class `[batch]` (INT64).
    Class,
    /// Predictive entropy in nats `[batch]` (FP32).
    Entropy,
    /// Each member's probabilities `[members, batch, classes]` (FP32; shared member sets only).
    PerMember,
    /// Fraction of members disagreeing with the ensemble's class `[batch]` (FP32; shared
    /// member sets only).
    Disagreement,
    /// The points used: t (FP64) for curves, member indices (INT64) for sets; `[members]`, or
    /// `[batch]` in per-sample modes where the configuration allows it.
    Point,
}

impl Output {
    const ALL: [Output; 6] = [
        Output::Probabilities,
        Output::Class,
        Output::Entropy,
        Output::PerMember,
        Output::Disagreement,
        Output::Point,
    ];

    /// The output's tensor name.
    pub fn name(self) -> &'static str {
        match self {
            Output::Probabilities => "probabilities",
            Output::Class => "class",
            Output::Entropy => "entropy",
            Output::PerMember => "per_member",
            Output::Disagreement => "disagreement",
            Output::Point => "point",
        }
    }
}

/// Which requests may run in one batch: the same model and the same members.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BatchKey {
    /// The model's ensemble.
    Ensemble,
    /// These t values (by bit pattern).
    At(Vec<u64>),
    /// These snapshot members.
    Members(Vec<usize>),
    /// Randomised points.
    Randomized,
    /// Keyed points.
    Keyed,
}

/// A checked request, less its input.
#[derive(Debug)]
pub struct Query {
    /// The mode in force.
    pub mode: Mode,
    /// Requests with equal keys may share a batch.
    pub key: BatchKey,
    /// How the runtime chooses members.
    pub sampling: Sampling,
    /// Outputs asked for, each with whether it goes in the binary part.
    pub outputs: Vec<(Output, bool)>,
    /// The client's request id.
    pub client_id: Option<String>,
}

impl Query {
    /// Whether per-member probabilities must be computed.
    pub fn wants_per_member(&self) -> bool {
        self.outputs.iter().any(|(o, _)| *o == Output::PerMember)
    }
}

/// One request's share of a batch's prediction.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Mean probabilities `[batch, classes]`.
    pub probabilities: Array2<f32>,
    /// Entropy per sample.
    pub entropy: Array1<f32>,
    /// Disagreement per sample (shared member sets).
    pub disagreement: Option<Array1<f32>>,
    /// Per-member probabilities `[members, batch, classes]` when asked for.
    pub per_member: Option<Array3<f32>>,
    /// The members used (one per sample in per-sample modes).
    pub members: Vec<Member>,
}

/// A bundle being served.
pub struct ServedModel {
    /// Name in URLs.
    pub name: String,
    /// The bundle file.
    pub path: PathBuf,
    /// The loaded ensemble.
    pub ensemble: Ensemble,
    /// `sha256:` and the hex digest of the bundle file.
    pub digest: String,
    /// What clients may ask for.
    pub policy: Policy,
    keyed_secret: Option<[u8; 32]>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a file, as `sha256:<hex>`.
pub fn file_digest(path: &Path) -> Result<String> {
    Ok(format!(
        "sha256:{}",
        modeconn_runtime::fs::sha256_file(path)?
    ))
}

impl ServedModel {
    /// Wraps a loaded ensemble.
    pub fn new(
        name: String,
        path: PathBuf,
        ensemble: Ensemble,
        digest: String,
        policy: Policy,
        keyed_secret: Option<[u8; 32]>,
    ) -> Self {
        ServedModel {
            name,
            path,
            ensemble,
            digest,
            policy,
            keyed_secret,
        }
    }

    fn kind(&self) -> Kind {
        self.ensemble.bundle().metadata().kind
    }

    /// The input shape with `-1` for the batch axis.
    pub fn input_shape(&self) -> Vec<i64> {
        let mut s = self.ensemble.bundle().metadata().input.shape.clone();
        if let Some(first) = s.first_mut() {
            *first = -1;
        }
        s
    }

    /// The model's metadata document (`GET /v2/models/{name}`).
    pub fn metadata(&self) -> Value {
        let meta = self.ensemble.bundle().metadata();
        let classes = meta.output.classes as i64;
        let members = meta.points as i64;
        let point = match self.kind() {
            Kind::Curve => "FP64",
            Kind::Snapshots => "INT64",
        };
        let p = &self.policy;
        json!({
            "name": self.name,
            "versions": ["1"],
            "platform": "modeconn",
            "inputs": [{
                "name": meta.input.name,
                "datatype": "FP32",
                "shape": self.input_shape(),
            }],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
                {"name": "class", "datatype": "INT64", "shape": [-1]},
                {"name": "entropy", "datatype": "FP32", "shape": [-1]},
                {"name": "per_member", "datatype": "FP32", "shape": [-1, -1, classes]},
                {"name": "disagreement", "datatype": "FP32", "shape": [-1]},
                {"name": "point", "datatype": point, "shape": [-1]},
            ],
            "parameters": {
                "kind": meta.kind.as_str(),
                "points": members,
                "digest": self.digest,
                "modes": p.modes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "default_mode": p.default_mode.as_str(),
                "returns_point": p.return_point,
                "grid": p.grid,
                "randomized_grid": p.randomized_grid,
                "provider": self.ensemble.provider().as_str(),
            },
        })
    }

    /// Refuses with `413` a query whose work, members times samples (samples in per-sample
    /// modes, where each sample has one member), is over `max_work`.
    pub fn check_work(
        &self,
        query: &Query,
        samples: usize,
        max_work: usize,
    ) -> Result<(), ApiError> {
        let members = self
            .ensemble
            .member_count(&query.sampling, samples)
            .map_err(|e| ApiError::runtime(&e))?;
        let (work, how) = if query.sampling.is_per_sample() {
            (samples, format!("{samples} samples, one member each"))
        } else {
            (
                members.saturating_mul(samples),
                format!("{members} members x {samples} samples"),
            )
        };
        if work > max_work {
            return Err(ApiError::too_large(format!(
                "this request costs {work} member-samples ({how}), over the server's limit of \
                 {max_work} (max_work): send fewer samples or points"
            )));
        }
        Ok(())
    }

    /// The sampling a mode uses, with the points of `at` given.
    fn sampling(&self, mode: Mode, at: Option<AtPoints>) -> Result<(BatchKey, Sampling), ApiError> {
        let p = &self.policy;
        Ok(match (mode, at) {
            (Mode::Ensemble, _) => match self.kind() {
                Kind::Curve => (BatchKey::Ensemble, Sampling::Grid(p.grid)),
                Kind::Snapshots => (BatchKey::Ensemble, Sampling::AllMembers),
            },
            (Mode::At, Some(AtPoints::T(ts))) => (
                BatchKey::At(ts.iter().map(|t| t.to_bits()).collect()),
                Sampling::At(ts),
            ),
            (Mode::At, Some(AtPoints::Members(m))) => {
                (BatchKey::Members(m.clone()), Sampling::Members(m))
            }
            (Mode::At, None) => {
                return Err(ApiError::bad_request(match self.kind() {
                    Kind::Curve => {
                        "mode `at` needs parameter `t`: a number or a list of numbers in [0, 1]"
                    }
                    Kind::Snapshots => {
                        "mode `at` needs parameter `members`: a list of member indices"
                    }
                }));
            }
            (Mode::Randomized, _) => (
                BatchKey::Randomized,
                Sampling::Randomized {
                    grid: p.randomized_grid,
                    seed: None,
                },
            ),
            (Mode::Keyed, _) => {
                let key = self
                    .keyed_secret
                    .ok_or_else(|| ApiError::forbidden("keyed mode has no secret configured"))?;
                (
                    BatchKey::Keyed,
                    Sampling::Keyed {
                        key,
                        grid: p.randomized_grid,
                        quantum: p.keyed_quantum,
                    },
                )
            }
        })
    }
}

/// A parameter as a list of values: an array, one number, or a comma-separated string (for
/// clients whose parameters can only be scalars, such as Triton's).
fn listed(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                serde_json::from_str::<Value>(p)
                    .ok()
                    .filter(Value::is_number)
                    .unwrap_or_else(|| Value::String(p.to_string()))
            })
            .collect(),
        other => vec![other.clone()],
    }
}

/// Points named by mode `at`.
#[derive(Debug)]
enum AtPoints {
    T(Vec<f64>),
    Members(Vec<usize>),
}
