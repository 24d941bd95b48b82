//! The routes of the Open Inference Protocol v2 and `/metrics`, and their handlers: thin
//! adapters from HTTP to [`Server`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::ApiError;
use crate::app::{Server, UNKNOWN_MODEL, request_id};
use crate::config::Mode;
use crate::metrics::{Metrics, ModelMode};
use crate::protocol::json_response;

impl Server {
    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v2", get(server_metadata))
            .route("/v2/health/live", get(live))
            .route("/v2/health/ready", get(ready))
            .route("/v2/models/{name}", get(model_metadata))
            .route("/v2/models/{name}/ready", get(model_ready))
            .route("/v2/models/{name}/infer", post(infer))
            .route(
                "/v2/models/{name}/versions/{version}",
                get(model_metadata_v),
            )
            .route(
                "/v2/models/{name}/versions/{version}/ready",
                get(model_ready_v),
            )
            .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
            .route("/v2/repository/index", post(repository_index))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(Arc::clone(self))
    }
}

type Shared = State<Arc<Server>>;

async fn live() -> Response {
    json_response(StatusCode::OK, &json!({ "live": true }))
}

async fn ready(State(s): Shared) -> Response {
    let ready = s.ready.load(Ordering::SeqCst);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({ "ready": ready }))
}

async fn server_metadata(State(s): Shared) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "modeconn",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data", "modeconn_modes"],
            "models": s.order,
            "provider": s.provider.as_str(),
        }),
    )
}

/// The largest body `POST /v2/repository/index` reads: its only field is `ready`.
const INDEX_BODY_BYTES: usize = 4096;

/// Triton's repository index: every served model, its version and state. A body of
/// `{"ready": true}` asks for the ready ones only.
async fn repository_index(State(s): Shared, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, INDEX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::bad_request(format!(
                "the repository index takes a body of at most {INDEX_BODY_BYTES} bytes \
                 (`{{\"ready\": true}}`)"
            ))
            .into_response();
        }
    };
    let only_ready = if bytes.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(o)) => match o.get("ready") {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(other) => {
                    return ApiError::bad_request(format!(
                        "`ready` must be true or false, not {other}"
                    ))
                    .into_response();
                }
            },
            _ => {
                return ApiError::bad_request(
                    "the repository index takes a JSON object, `{\"ready\": true}` or `{}`",
                )
                .into_response();
            }
        }
    };
    let ready = s.ready.load(Ordering::SeqCst);
    let index: Vec<serde_json::Value> = s
        .order
        .iter()
        .filter(|_| ready || !only_ready)
        .map(|name| {
            json!({
                "name": name,
                "version": "1",
                "state": if ready { "READY" } else { "UNAVAILABLE" },
                "reason": if ready { "" } else { "the server is shutting down" },
            })
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::Value::Array(index))
}

fn check_version(version: &str) -> Result<(), ApiError> {
    if version == "1" {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "version `{version}` does not exist (each model has version 1)"
        )))
    }
}

async fn model_metadata(State(s): Shared, UrlPath(name): UrlPath<String>) -> Response {
    match s.model(&name) {
        Ok(m) => json_response(StatusCode::OK, &m.metadata()),
        Err(e) => e.into_response(),
    }
}

async fn model_metadata_v(
    state: Shared,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> Response {
    match check_version(&version) {
        Ok(()) => model_metadata(state, UrlPath(name)).await,
        Err(e) => e.into_response(),
    }
}

async fn model_ready(State(s): Shared, UrlPath(name): UrlPath<String>) -> Response {
    match s.model(&name) {
        Ok(_) => {
            let ready = s.ready.load(Ordering::SeqCst);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &json!({ "name": name, "ready": ready }))
        }
        Err(e) => e.into_response(),
    }
}

async fn model_ready_v(
    state: Shared,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> Response {
    match check_version(&version) {
        Ok(()) => model_ready(state, UrlPath(name)).await,
        Err(e) => e.into_response(),
    }
}

/// Counts the request as in flight while it lives (also when the client leaves and the
/// handler is dropped).
pub(crate) struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    /// Counts one more request in flight.
    pub(crate) fn new(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn infer(
    State(s): Shared,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let _guard = InFlight::new(&s.metrics);
    let id = request_id();
    let mut mode = None;
    let result = s.infer(&name, &headers, body, &id, &mut mode).await;
    s.observe(&name, &id, mode, started, result.as_ref().err(), "http");
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

impl Server {
    /// Counts and logs an inference request once it is answered, over either protocol:
    /// `error` is what it was refused with, if it was.
    pub(crate) fn observe(
        &self,
        name: &str,
        id: &str,
        mode: Option<Mode>,
        started: Instant,
        error: Option<&ApiError>,
        protocol: &str,
    ) {
        let label = if self.models.contains_key(name) {
            name
        } else {
            UNKNOWN_MODEL
        };
        let mode_name = mode.map_or("-", Mode::as_str);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match error {
            None => {
                self.metrics
                    .requests
                    .get_or_create(&ModelMode {
                        model: label.into(),
                        mode: mode_name.into(),
                    })
                    .inc();
                tracing::info!(
                    request_id = id,
                    model = label,
                    mode = mode_name,
                    status = 200,
                    protocol,
                    ms,
                    "inference"
                );
            }
            Some(e) => {
                self.metrics.failure(label, e.status.as_u16());
                tracing::warn!(
                    request_id = id,
                    model = label,
                    mode = mode_name,
                    status = e.status.as_u16(),
                    protocol,
                    error = e.message.as_str(),
                    ms,
                    "inference failed"
                );
            }
        }
    }
}

async fn infer_v(
    state: Shared,
    UrlPath((name, version)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match check_version(&version) {
        Ok(()) => infer(state, UrlPath(name), headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(s): Shared, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        s.metrics.encode_as(format),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint (see GET /v2 and /v2/models/{name})").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint (inference is POST .../infer, the rest is GET)",
    )
    .into_response()
}
