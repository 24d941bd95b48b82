//! From an answer to the response: the outputs asked for, in JSON or binary, and the
//! parameters the policy lets the client see.

use modeconn_runtime::Member;
use modeconn_runtime::bundle::Kind;
use modeconn_runtime::ensemble::argmax;
use serde_json::Map;

use super::{Answer, Output, Query, ServedModel};
use crate::ApiError;
use crate::protocol::{Data, Datatype, InferResponse, OutputTensor, frame_bytes};

impl ServedModel {
    /// Refuses with `413` a query whose response could take more than `max_bytes` for a batch
    /// of `samples`, before anything runs.
    pub fn check_response(
        &self,
        query: &Query,
        samples: usize,
        max_bytes: usize,
    ) -> Result<(), ApiError> {
        let classes = self.ensemble.bundle().metadata().output.classes;
        let members = self
            .ensemble
            .member_count(&query.sampling, samples)
            .map_err(|e| ApiError::runtime(&e))?;
        let point = match self.kind() {
            Kind::Curve => Datatype::Fp64,
            Kind::Snapshots => Datatype::Int64,
        };
        let mut bytes = frame_bytes(&self.name, query.client_id.as_deref(), query.outputs.len());
        for &(kind, binary) in &query.outputs {
            let (count, datatype) = match kind {
                Output::Probabilities => (samples.saturating_mul(classes), Datatype::Fp32),
                Output::Class => (samples, Datatype::Int64),
                Output::Entropy | Output::Disagreement => (samples, Datatype::Fp32),
                Output::PerMember => (
                    members.saturating_mul(samples).saturating_mul(classes),
                    Datatype::Fp32,
                ),
                Output::Point => (members, point),
            };
            bytes = bytes.saturating_add(count.saturating_mul(datatype.value_bytes(binary)));
        }
        if bytes > max_bytes {
            return Err(ApiError::too_large(format!(
                "the answer could take {bytes} bytes, over the server's limit of {max_bytes} \
                 (max_response_mb): ask for fewer samples, points or outputs, or for binary \
                 outputs"
            )));
        }
        Ok(())
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
            fixed_width: query.mode.is_per_sample(),
        }
    }
}
