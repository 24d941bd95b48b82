//! A served model: a loaded bundle, its policy, and the translation of a request into a
//! query the batcher can run (everything is checked here, before queueing).

use std::path::{Path, PathBuf};

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::check_t;
use modeconn_runtime::ensemble::argmax;
use modeconn_runtime::{Ensemble, Member, Sampling};
use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use serde_json::{Map, Value, json};

use crate::config::{Mode, Policy};
use crate::protocol::{Data, InferRequest, InferResponse, OutputTensor, bool_param};
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
                    },
                )
            }
        })
    }

    /// Checks a request against the bundle and the policy and turns it into a query and its
    /// input batch.
    pub fn decode(
        &self,
        request: InferRequest,
        binary: &[u8],
    ) -> Result<(Query, ArrayD<f32>), ApiError> {
        let meta = self.ensemble.bundle().metadata();
        let params = request.parameters.as_ref();
        // Mode.
        let mode = match params.and_then(|p| p.get("mode")) {
            None | Some(Value::Null) => self.policy.default_mode,
            Some(Value::String(s)) => Mode::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown mode `{s}` (expected ensemble, at, randomized or keyed)"
                ))
            })?,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "parameter `mode` must be a string, not {other}"
                )));
            }
        };
        if !self.policy.modes.contains(&mode) {
            return Err(ApiError::forbidden(format!(
                "mode `{}` is not allowed for model `{}` (allowed: {})",
                mode.as_str(),
                self.name,
                self.policy
                    .modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let at = self.at_points(mode, params)?;
        let (key, sampling) = self.sampling(mode, at)?;

        // Input.
        let [input] = request.inputs.as_slice() else {
            return Err(ApiError::bad_request(format!(
                "the model takes one input, `{}`; the request has {}",
                meta.input.name,
                request.inputs.len()
            )));
        };
        if input.name != meta.input.name {
            return Err(ApiError::bad_request(format!(
                "unknown input `{}`: the model's input is `{}`",
                input.name, meta.input.name
            )));
        }
        if input.datatype != "FP32" {
            return Err(ApiError::bad_request(format!(
                "input `{}` has datatype {}; the model takes FP32",
                input.name, input.datatype
            )));
        }
        let spec = &meta.input.shape;
        let shape_ok = input.shape.len() == spec.len()
            && input.shape.first().is_some_and(|&b| b >= 1)
            && input.shape[1..] == spec[1..];
        if !shape_ok {
            return Err(ApiError::bad_request(format!(
                "input `{}` has shape {:?}; the model takes {:?} (batch of at least 1)",
                input.name,
                input.shape,
                self.input_shape()
            )));
        }
        let shape: Vec<usize> = input.shape.iter().map(|&d| d as usize).collect();
        let count: usize = shape.iter().product();
        let binary_size = match input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ApiError::bad_request("`binary_data_size` must be a non-negative integer")
            })? as usize),
        };
        let values: Vec<f32> = match (&input.data, binary_size) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "input `{}` has both `data` and `binary_data_size`",
                    input.name
                )));
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input `{}` has no `data` and no `binary_data_size`",
                    input.name
                )));
            }
            (Some(data), None) => {
                if data.len() != count {
                    return Err(ApiError::bad_request(format!(
                        "input `{}` has {} values; shape {:?} needs {count}",
                        input.name,
                        data.len(),
                        input.shape
                    )));
                }
                data.iter().map(|&v| v as f32).collect()
            }
            (None, Some(size)) => {
                if size != count * 4 {
                    return Err(ApiError::bad_request(format!(
                        "input `{}`: binary_data_size is {size} bytes; shape {:?} in FP32 needs {}",
                        input.name,
                        input.shape,
                        count * 4
                    )));
                }
                if binary.len() != size {
                    return Err(ApiError::bad_request(format!(
                        "the body has {} bytes of binary data; the inputs declare {size}",
                        binary.len()
                    )));
                }
                binary
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        };
        if binary_size.is_none() && !binary.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the body has {} bytes of binary data that no input declares",
                binary.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ApiError::bad_request(format!(
                "input `{}` holds NaN or infinite values (or values beyond the FP32 range)",
                input.name
            )));
        }
        let input = ArrayD::from_shape_vec(IxDyn(&shape), values)
            .map_err(|e| ApiError::bad_request(format!("input: {e}")))?;

        // Outputs.
        let all_binary = bool_param(params, "binary_data_output")?;
        let outputs = match &request.outputs {
            None => vec![(Output::Probabilities, all_binary)],
            Some(list) if list.is_empty() => vec![(Output::Probabilities, all_binary)],
            Some(list) => {
                let mut outs = Vec::with_capacity(list.len());
                for o in list {
                    let kind = Output::ALL
                        .into_iter()
                        .find(|k| k.name() == o.name)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "unknown output `{}` (expected probabilities, class, entropy, \
                                 per_member, disagreement or point)",
                                o.name
                            ))
                        })?;
                    let binary = match o.parameters.as_ref().and_then(|p| p.get("binary_data")) {
                        None | Some(Value::Null) => all_binary,
                        Some(_) => bool_param(o.parameters.as_ref(), "binary_data")?,
                    };
                    outs.push((kind, binary));
                }
                outs
            }
        };
        for (o, _) in &outputs {
            match o {
                Output::PerMember | Output::Disagreement if mode.is_per_sample() => {
                    return Err(ApiError::bad_request(format!(
                        "output `{}` is not available in mode `{}`: each sample has its own point",
                        o.name(),
                        mode.as_str()
                    )));
                }
                Output::Point if mode.is_per_sample() && !self.policy.return_point => {
                    return Err(ApiError::forbidden(format!(
                        "output `point` is not returned in mode `{}` for model `{}` (the \
                         server configuration keeps it secret)",
                        mode.as_str(),
                        self.name
                    )));
                }
                _ => {}
            }
        }
        let query = Query {
            mode,
            key,
            sampling,
            outputs,
            client_id: request.id,
        };
        Ok((query, input))
    }

    /// `parameters.t` / `parameters.members` for mode `at`.
    fn at_points(
        &self,
        mode: Mode,
        params: Option<&Map<String, Value>>,
    ) -> Result<Option<AtPoints>, ApiError> {
        let t = params.and_then(|p| p.get("t")).filter(|v| !v.is_null());
        let members = params
            .and_then(|p| p.get("members"))
            .filter(|v| !v.is_null());
        if mode != Mode::At {
            if t.is_some() || members.is_some() {
                return Err(ApiError::bad_request(format!(
                    "parameters `t` and `members` are for mode `at`; this request's mode is `{}`",
                    mode.as_str()
                )));
            }
            return Ok(None);
        }
        match (self.kind(), t, members) {
            (Kind::Curve, Some(v), None) => {
                let list = listed(v);
                if list.is_empty() || list.len() > 1024 {
                    return Err(ApiError::bad_request(
                        "parameter `t` needs 1 to 1024 values",
                    ));
                }
                let ts = list
                    .iter()
                    .map(|x| {
                        x.as_f64()
                            .ok_or_else(|| {
                                ApiError::bad_request(format!("parameter `t`: {x} is not a number"))
                            })
                            .and_then(|t| {
                                check_t(t).map_err(|e| ApiError::bad_request(e.to_string()))
                            })
                    })
                    .collect::<Result<Vec<f64>, ApiError>>()?;
                Ok(Some(AtPoints::T(ts)))
            }
            (Kind::Snapshots, None, Some(v @ (Value::Array(_) | Value::String(_)))) => {
                let a = listed(v);
                let n = self.ensemble.bundle().metadata().points;
                if a.is_empty() || a.len() > 1024 {
                    return Err(ApiError::bad_request(
                        "parameter `members` needs 1 to 1024 indices",
                    ));
                }
                let m = a
                    .iter()
                    .map(|x| match x.as_u64() {
                        Some(i) if (i as usize) < n => Ok(i as usize),
                        _ => Err(ApiError::bad_request(format!(
                            "parameter `members`: {x} is not a member index (0 to {})",
                            n - 1
                        ))),
                    })
                    .collect::<Result<Vec<usize>, ApiError>>()?;
                Ok(Some(AtPoints::Members(m)))
            }
            (Kind::Curve, _, Some(_)) => Err(ApiError::bad_request(
                "this model is a curve: give `t`, not `members`",
            )),
            (Kind::Snapshots, Some(_), _) => Err(ApiError::bad_request(
                "this model is a snapshot set: give `members`, not `t`",
            )),
            (Kind::Snapshots, None, Some(other)) => Err(ApiError::bad_request(format!(
                "parameter `members` must be a list of indices, not {other}"
            ))),
            (_, None, None) => Ok(None),
        }
    }

    /// The response to a query from its answer.
    pub fn respond(&self, query: &Query, answer: Answer, request_id: &str) -> InferResponse {
        let mut parameters = Map::new();
        parameters.insert("mode".into(), query.mode.as_str().into());
        parameters.insert("request_id".into(), request_id.into());
        if !query.mode.is_per_sample() {
            parameters.insert("members".into(), answer.members.len().into());
        }
        let batch = answer.probabilities.nrows();
        let outputs = query
            .outputs
            .iter()
            .map(|&(kind, binary)| {
                let (shape, data) = match kind {
                    Output::Probabilities => (
                        answer.probabilities.shape().to_vec(),
                        Data::F32(answer.probabilities.iter().copied().collect()),
                    ),
                    Output::Class => (
                        vec![batch],
                        Data::I64(
                            answer
                                .probabilities
                                .rows()
                                .into_iter()
                                .map(|r| argmax(r.iter()) as i64)
                                .collect(),
                        ),
                    ),
                    Output::Entropy => (vec![batch], Data::F32(answer.entropy.to_vec())),
                    Output::PerMember => match &answer.per_member {
                        Some(a) => (a.shape().to_vec(), Data::F32(a.iter().copied().collect())),
                        None => (vec![0, batch, 0], Data::F32(vec![])),
                    },
                    Output::Disagreement => (
                        vec![batch],
                        Data::F32(
                            answer
                                .disagreement
                                .as_ref()
                                .map(|d| d.to_vec())
                                .unwrap_or_default(),
                        ),
                    ),
                    Output::Point => {
                        let n = answer.members.len();
                        let data = match self.kind() {
                            Kind::Curve => Data::F64(
                                answer
                                    .members
                                    .iter()
                                    .map(|m| match m {
                                        Member::T(t) => *t,
                                        Member::Index(i) => *i as f64,
                                    })
                                    .collect(),
                            ),
                            Kind::Snapshots => Data::I64(
                                answer
                                    .members
                                    .iter()
                                    .map(|m| match m {
                                        Member::Index(i) => *i as i64,
                                        Member::T(t) => *t as i64,
                                    })
                                    .collect(),
                            ),
                        };
                        (vec![n], data)
                    }
                };
                OutputTensor {
                    name: kind.name(),
                    shape,
                    data,
                    binary,
                }
            })
            .collect();
        InferResponse {
            model_name: self.name.clone(),
            id: query.client_id.clone(),
            parameters,
            outputs,
        }
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
