//! From a request to a query and its input batch: the mode, the points, the outputs asked
//! for, the input tensor in JSON or binary, each checked against the bundle and the policy.

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::check_t;
use ndarray::{ArrayD, IxDyn};
use serde_json::{Map, Value};

use super::{AtPoints, Output, Query, ServedModel, listed};
use crate::ApiError;
use crate::config::Mode;
use crate::protocol::{self, InferRequest, bool_param};

impl ServedModel {
    /// Checks a request against the bundle and the policy and turns it into a query and its
    /// input batch. `reserve` is told the bytes the input values will take before they are
    /// parsed, and may refuse them.
    pub fn decode(
        &self,
        request: InferRequest<'_>,
        binary: &[u8],
        reserve: impl FnOnce(usize) -> Result<(), ApiError>,
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
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= usize::MAX / 4)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "input `{}` has shape {:?}: too many values",
                    input.name, input.shape
                ))
            })?;
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
                reserve(protocol::values_bytes(data, count))?;
                protocol::values(data, count).map_err(|e| {
                    ApiError::bad_request(format!(
                        "input `{}` (shape {:?}): {e}",
                        input.name, input.shape
                    ))
                })?
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
                reserve(size)?;
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
}
