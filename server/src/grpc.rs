//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`,
//! `proto/grpc_predict_v2.proto`): health, metadata and inference, as over HTTP.
//!
//! An inference request is turned into the request the HTTP side parses (its values as binary
//! tensor data, its parameters as JSON values) and decoded by the same code; from there on it
//! shares the queue, the batcher, the limits, the audit log and the metrics with HTTP
//! (`Server::answer`). Errors keep their HTTP status in the metrics and map to gRPC codes:
//! `400` is `INVALID_ARGUMENT`, `403` `PERMISSION_DENIED`, `404` `NOT_FOUND`, `413` and an
//! overloaded `503` (a full queue) `RESOURCE_EXHAUSTED`, another `503` (shutting down)
//! `UNAVAILABLE`, `504` `DEADLINE_EXCEEDED`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

use crate::ApiError;
use crate::app::{Server, request_id};
use crate::protocol::{Data, InferRequest, InputTensor, RequestedOutput};
use crate::routes::InFlight;

/// The messages and service generated from `proto/grpc_predict_v2.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::infer_parameter::ParameterChoice;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::{InferParameter, InferTensorContents};

/// The gRPC code of an error the HTTP side answers with `e.status`.
pub fn code(e: &ApiError) -> Code {
    match e.status.as_u16() {
        400 | 422 => Code::InvalidArgument,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        413 => Code::ResourceExhausted,
        503 if e.overloaded => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

fn status(e: &ApiError) -> Status {
    Status::new(code(e), e.message.clone())
}

/// The parameter as the JSON value the HTTP side reads.
fn json_of(p: &InferParameter) -> Value {
    match &p.parameter_choice {
        None => Value::Null,
        Some(ParameterChoice::BoolParam(b)) => Value::Bool(*b),
        Some(ParameterChoice::Int64Param(i)) => Value::from(*i),
        Some(ParameterChoice::Uint64Param(u)) => Value::from(*u),
        Some(ParameterChoice::DoubleParam(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(ParameterChoice::StringParam(s)) => Value::String(s.clone()),
    }
}

/// A JSON value of a response's parameters as a gRPC parameter (lists as their JSON text).
fn parameter_of(v: &Value) -> InferParameter {
    let choice = match v {
        Value::Bool(b) => ParameterChoice::BoolParam(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ParameterChoice::Int64Param(i),
            (None, Some(u), _) => ParameterChoice::Uint64Param(u),
            (_, _, f) => ParameterChoice::DoubleParam(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => ParameterChoice::StringParam(s.clone()),
        other => ParameterChoice::StringParam(other.to_string()),
    };
    InferParameter {
        parameter_choice: Some(choice),
    }
}

fn json_map(params: &HashMap<String, InferParameter>) -> Option<Map<String, Value>> {
    (!params.is_empty()).then(|| {
        params
            .iter()
            .map(|(k, v)| (k.clone(), json_of(v)))
            .collect()
    })
}

/// The deadline a client asked for in `grpc-timeout` (`<digits><unit>`, unit one of `H M S m u
/// n`), if it sent one that parses.
fn client_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The version asked for: empty (the server's choice) or `1`, the only one.
fn check_version(version: &str) -> Result<(), Status> {
    if version.is_empty() || version == "1" {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "version `{version}` does not exist (each model has version 1)"
        )))
    }
}

/// The service, over the server it answers for.
#[derive(Clone)]
pub struct Service {
    server: Arc<Server>,
}

impl Service {
    /// Runs one inference: decodes it as the HTTP side does, then answers it through the
    /// shared path. `raw` says whether the values came, and go back, as raw bytes.
    async fn infer(
        &self,
        request: proto::ModelInferRequest,
        timeout: Duration,
        id: &str,
        mode_seen: &mut Option<crate::config::Mode>,
    ) -> Result<proto::ModelInferResponse, ApiError> {
        let s = &self.server;
        let deadline = tokio::time::Instant::now() + timeout;
        let model = Arc::clone(s.model(&request.model_name)?);
        if !request.model_version.is_empty() && request.model_version != "1" {
            return Err(ApiError::not_found(format!(
                "version `{}` does not exist (each model has version 1)",
                request.model_version
            )));
        }
        if !s.ready.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable(
                "the server is shutting down; retry on another replica",
            ));
        }
        // The message is decoded already; its bytes count against the budget of what is
        // being received until the input tensor is built, as an HTTP body's do.
        let size = prost::Message::encoded_len(&request);
        let mut reservation = s.receiving.reserve(2 * size, deadline).await?;
        let raw = !request.raw_input_contents.is_empty();
        if raw && request.raw_input_contents.len() != request.inputs.len() {
            return Err(ApiError::bad_request(format!(
                "{} inputs but {} raw_input_contents: give one for each input, in order",
                request.inputs.len(),
                request.raw_input_contents.len()
            )));
        }
        let mut binary = Vec::new();
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for (i, input) in request.inputs.iter().enumerate() {
            let start = binary.len();
            match (raw, &input.contents) {
                (true, Some(_)) => {
                    return Err(ApiError::bad_request(format!(
                        "input `{}` has contents, and raw_input_contents are given: use one",
                        input.name
                    )));
                }
                (true, None) => binary.extend_from_slice(&request.raw_input_contents[i]),
                (false, Some(c)) => {
                    if c.fp32_contents.is_empty() && input.datatype == "FP32" {
                        let other = [
                            ("bool_contents", c.bool_contents.len()),
                            ("int_contents", c.int_contents.len()),
                            ("int64_contents", c.int64_contents.len()),
                            ("uint_contents", c.uint_contents.len()),
                            ("uint64_contents", c.uint64_contents.len()),
                            ("fp64_contents", c.fp64_contents.len()),
                            ("bytes_contents", c.bytes_contents.len()),
                        ]
                        .into_iter()
                        .find(|(_, n)| *n > 0);
                        if let Some((field, _)) = other {
                            return Err(ApiError::bad_request(format!(
                                "input `{}` is FP32 but its values are in `{field}`; FP32 \
                                 values go in `fp32_contents`",
                                input.name
                            )));
                        }
                    }
                    binary.extend(c.fp32_contents.iter().flat_map(|v| v.to_le_bytes()));
                }
                (false, None) => {
                    return Err(ApiError::bad_request(format!(
                        "input `{}` has no contents, and no raw_input_contents are given",
                        input.name
                    )));
                }
            }
            let mut parameters = json_map(&input.parameters).unwrap_or_default();
            parameters.insert("binary_data_size".into(), (binary.len() - start).into());
            inputs.push(InputTensor {
                name: input.name.clone(),
                shape: input.shape.clone(),
                datatype: input.datatype.clone(),
                parameters: Some(parameters),
                data: None,
            });
        }
        let outputs = (!request.outputs.is_empty()).then(|| {
            request
                .outputs
                .iter()
                .map(|o| {
                    let mut parameters = json_map(&o.parameters).unwrap_or_default();
                    parameters.insert("binary_data".into(), raw.into());
                    RequestedOutput {
                        name: o.name.clone(),
                        parameters: Some(parameters),
                    }
                })
                .collect()
        });
        let mut parameters = json_map(&request.parameters);
        if raw && request.outputs.is_empty() {
            // The default outputs, raw like the inputs.
            parameters
                .get_or_insert_with(Map::new)
                .insert("binary_data_output".into(), true.into());
        }
        let parsed = InferRequest {
            id: (!request.id.is_empty()).then(|| request.id.clone()),
            parameters,
            inputs,
            outputs,
        };
        let (query, input) =
            model.decode(parsed, &binary, |values| reservation.hold(size + values))?;
        *mode_seen = Some(query.mode);
        drop(binary);
        drop(request);
        drop(reservation);
        let answer = s
            .answer(&model, &query, input, id, (deadline, timeout))
            .await?;

        let mut response = proto::ModelInferResponse {
            model_name: answer.model_name.clone(),
            model_version: "1".into(),
            id: answer.id.clone().unwrap_or_default(),
            parameters: answer
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), parameter_of(v)))
                .collect(),
            outputs: Vec::with_capacity(answer.outputs.len()),
            raw_output_contents: Vec::new(),
        };
        for out in answer.outputs {
            if raw {
                response.raw_output_contents.push(out.data.bytes());
            }
            let (datatype, contents) = match out.data {
                Data::F32(v) => (
                    "FP32",
                    InferTensorContents {
                        fp32_contents: v,
                        ..Default::default()
                    },
                ),
                Data::F64(v) => (
                    "FP64",
                    InferTensorContents {
                        fp64_contents: v,
                        ..Default::default()
                    },
                ),
                Data::I64(v) => (
                    "INT64",
                    InferTensorContents {
                        int64_contents: v,
                        ..Default::default()
                    },
                ),
            };
            response.outputs.push(InferOutputTensor {
                name: out.name.into(),
                datatype: datatype.into(),
                shape: out.shape.iter().map(|&d| d as i64).collect(),
                parameters: HashMap::new(),
                contents: (!raw).then_some(contents),
            });
        }
        Ok(response)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.server.ready.load(Ordering::SeqCst),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        check_version(&r.version)?;
        self.server.model(&r.name).map_err(|e| status(&e))?;
        Ok(Response::new(proto::ModelReadyResponse {
            ready: self.server.ready.load(Ordering::SeqCst),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: "modeconn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["modeconn_modes".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        check_version(&r.version)?;
        let model = self.server.model(&r.name).map_err(|e| status(&e))?;
        let meta = model.metadata();
        let tensors = |key: &str| -> Vec<TensorMetadata> {
            meta[key]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|t| TensorMetadata {
                            name: t["name"].as_str().unwrap_or_default().into(),
                            datatype: t["datatype"].as_str().unwrap_or_default().into(),
                            shape: t["shape"]
                                .as_array()
                                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Response::new(proto::ModelMetadataResponse {
            name: model.name.clone(),
            versions: vec!["1".into()],
            platform: "modeconn".into(),
            inputs: tensors("inputs"),
            outputs: tensors("outputs"),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let started = Instant::now();
        let s = &self.server;
        let _guard = InFlight::new(&s.metrics);
        let id = request_id();
        let timeout = client_timeout(request.metadata()).map_or(s.limits.request_timeout, |t| {
            t.min(s.limits.request_timeout)
        });
        let request = request.into_inner();
        let name = request.model_name.clone();
        let mut mode = None;
        let result = self.infer(request, timeout, &id, &mut mode).await;
        s.observe(&name, &id, mode, started, result.as_ref().err(), "grpc");
        let mut response = Response::new(result.map_err(|e| status(&e))?);
        if let Ok(v) = id.parse() {
            response.metadata_mut().insert("x-request-id", v);
        }
        Ok(response)
    }
}

impl Server {
    /// Serves the gRPC service on `listener` until `shutdown` completes, then lets the calls
    /// in progress finish. Messages are bounded by the limits of HTTP bodies and answers.
    pub async fn serve_grpc(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> crate::Result<()> {
        let limits = self.limits;
        let service = GrpcInferenceServiceServer::new(Service {
            server: Arc::clone(&self),
        })
        .max_decoding_message_size(limits.max_body_bytes)
        .max_encoding_message_size(limits.max_response_bytes.saturating_add(1 << 20));
        // The builder's `tcp_nodelay` applies only to listeners it binds itself: the accepted
        // connections of this one get it here. Without it, a response's last small frame waits
        // for the client's delayed ACK (about 40 ms a call).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.keep_alive))
            .http2_keepalive_timeout(Some(limits.header_timeout))
            .max_concurrent_streams(Some(256))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| crate::Error::Net {
                context: "the gRPC server failed".into(),
                source: std::io::Error::other(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn errors_map_to_the_codes_clients_expect() {
        let e = |status: u16| ApiError::new(StatusCode::from_u16(status).expect("a status"), "x");
        assert_eq!(code(&e(400)), Code::InvalidArgument);
        assert_eq!(code(&e(403)), Code::PermissionDenied);
        assert_eq!(code(&e(404)), Code::NotFound);
        assert_eq!(code(&e(413)), Code::ResourceExhausted);
        assert_eq!(code(&ApiError::overloaded("full")), Code::ResourceExhausted);
        assert_eq!(code(&ApiError::unavailable("stopping")), Code::Unavailable);
        assert_eq!(code(&e(504)), Code::DeadlineExceeded);
        assert_eq!(code(&e(500)), Code::Internal);
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let t = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().expect("ascii"));
            client_timeout(&m)
        };
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(t("5x"), None);
        assert_eq!(t("S"), None);
    }

    #[test]
    fn parameters_cross_between_protobuf_and_json() {
        let p = |c| InferParameter {
            parameter_choice: Some(c),
        };
        assert_eq!(json_of(&p(ParameterChoice::StringParam("at".into()))), "at");
        assert_eq!(json_of(&p(ParameterChoice::DoubleParam(0.25))), 0.25);
        assert_eq!(json_of(&p(ParameterChoice::Int64Param(-3))), -3);
        assert_eq!(json_of(&p(ParameterChoice::Uint64Param(3))), 3);
        assert_eq!(json_of(&p(ParameterChoice::BoolParam(true))), true);
        assert_eq!(
            parameter_of(&serde_json::json!([0.5, 1.0])),
            p(ParameterChoice::StringParam("[0.5,1.0]".into()))
        );
        assert_eq!(
            parameter_of(&serde_json::json!(2)),
            p(ParameterChoice::Int64Param(2))
        );
    }
}
