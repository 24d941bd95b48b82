//! The HTTP server's life cycle (load, warm up, serve, drain on SIGTERM) and the inference
//! of one request; `routes.rs` maps the Open Inference Protocol v2 and `/metrics` onto it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use modeconn_runtime::{Ensemble, EnsembleOptions, Provider, Runtime, RuntimeOptions, Sampling};
use ndarray::ArrayD;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::audit::{AuditLog, Entry};
use crate::batcher::{BatchLimits, Batcher, Job};
use crate::config::{Limits, Mode, Options};
use crate::conn::Connections;
use crate::metrics::{Metrics, ProviderLabel};
use crate::model::{Query, ServedModel};
use crate::protocol::{self, HEADER_LENGTH, InferResponse};
use crate::receive::{Receiving, read_body};
use crate::{ApiError, Error, Result};
use modeconn_runtime::fs::hex;

/// Label used in metrics for model names that are not served.
pub(crate) const UNKNOWN_MODEL: &str = "_unknown";

/// A loaded server: models, queue, workers, metrics. Build it with [`Server::load`], serve it
/// with [`Server::serve`].
pub struct Server {
    pub(crate) models: HashMap<String, Arc<ServedModel>>,
    /// Model names in the order they were given.
    pub(crate) order: Vec<String>,
    pub(crate) batcher: Batcher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<AuditLog>,
    pub(crate) limits: Limits,
    /// The budget of bytes being received.
    pub(crate) receiving: Receiving,
    /// False once shutdown begins (readiness answers 503).
    pub(crate) ready: AtomicBool,
    pub(crate) provider: Provider,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("models", &self.order)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads every bundle, warms up the members its default modes use, and starts the
    /// workers.
    pub fn load(options: &Options) -> Result<Arc<Server>> {
        options.check()?;
        crate::memory::give_back_large_blocks();
        let mut rt = RuntimeOptions::default()
            .with_device(options.device)
            .with_intra_threads(options.threads)
            .with_busy_wait(options.busy_wait);
        if let Some(lib) = &options.ort_library {
            rt = rt.with_library(lib);
        }
        let runtime = Runtime::new(rt)?;
        let metrics = Arc::new(Metrics::new());
        let mut models = HashMap::new();
        let mut order = Vec::new();
        let mut provider = Provider::Cpu;
        for (name, path) in &options.models {
            let model_err = |source| Error::Model {
                model: name.clone(),
                source,
            };
            let policy = options.config.policy(name)?;
            let ensemble = Ensemble::open(
                &runtime,
                path,
                EnsembleOptions {
                    static_budget: options.static_budget,
                    max_sessions: options.workers,
                },
            )
            .map_err(model_err)?;
            warm_up(
                &ensemble,
                &policy.modes,
                policy.grid,
                policy.randomized_grid,
            )
            .map_err(model_err)?;
            provider = ensemble.provider();
            let digest = crate::model::file_digest(path)?;
            tracing::info!(
                model = name.as_str(),
                path = %path.display(),
                digest = digest.as_str(),
                provider = provider.as_str(),
                static_members = ensemble.static_members(),
                "model loaded"
            );
            metrics
                .provider
                .get_or_create(&ProviderLabel {
                    model: name.clone(),
                    provider: provider.as_str().into(),
                })
                .set(1);
            let modes: Vec<&str> = policy.modes.iter().map(|m| m.as_str()).collect();
            metrics.register_model(name, &modes);
            let model = ServedModel::new(
                name.clone(),
                path.clone(),
                ensemble,
                digest,
                policy,
                options.config.keyed_secret(),
            );
            models.insert(name.clone(), Arc::new(model));
            order.push(name.clone());
        }
        if let Some(reason) = runtime.fallback_reason() {
            tracing::warn!(
                device = %options.device,
                reason,
                "serving on the CPU: the CUDA execution provider could not be used"
            );
        }
        let audit = match options.config.audit() {
            Some((path, key)) => Some(AuditLog::open(path, key)?),
            None => None,
        };
        let batcher = Batcher::start(
            options.workers,
            BatchLimits {
                max_batch: options.max_batch,
                max_delay: options.max_delay,
                capacity: options.queue,
                capacity_bytes: options.queue_bytes,
            },
            Arc::clone(&metrics),
        )
        .map_err(|source| Error::Net {
            context: "cannot start the worker threads".into(),
            source,
        })?;
        let mut limits = options.limits();
        let wanted = limits.max_connections;
        limits.max_connections = crate::conn::within_file_limit(wanted);
        if limits.max_connections < wanted {
            tracing::warn!(
                max_connections = limits.max_connections,
                wanted,
                "fewer connections than asked for: the limit of open files is lower"
            );
        }
        Ok(Arc::new(Server {
            models,
            order,
            batcher,
            metrics,
            audit,
            receiving: Receiving::new(limits.receive_bytes),
            limits,
            ready: AtomicBool::new(true),
            provider,
        }))
    }

    /// Serves on `listener` until `shutdown` completes, then answers every request already
    /// read and refuses the rest with `503` (see the connections' life in `conn.rs`), and
    /// stops the workers.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.serve_with_grpc(listener, None, shutdown).await
    }

    /// [`Server::serve`], and the gRPC service on `grpc` beside it when given: both stop
    /// taking requests when `shutdown` completes, answer what they read, and the workers stop
    /// once both are done.
    pub async fn serve_with_grpc(
        self: Arc<Self>,
        listener: TcpListener,
        grpc: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let grpc = grpc.map(|l| {
            let mut stopped = stopped.clone();
            tokio::spawn(Arc::clone(&self).serve_grpc(l, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let connections = Connections::new(self.limits, Arc::clone(&self.metrics), self.router());
        connections
            .run(
                listener,
                async move {
                    shutdown.await;
                    let _ = stop.send(true);
                },
                || {
                    self.ready.store(false, Ordering::SeqCst);
                    tracing::info!("shutting down: answering the requests already read");
                },
            )
            .await;
        let grpc_result = match grpc {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(Error::Net {
                    context: "the gRPC server stopped".into(),
                    source: std::io::Error::other(e),
                })
            }),
            None => Ok(()),
        };
        // Every connection has closed; let the workers finish and stop.
        let me = Arc::clone(&self);
        let _ = tokio::task::spawn_blocking(move || me.batcher.close()).await;
        grpc_result
    }

    /// The served models' names, in the order given.
    pub fn model_names(&self) -> &[String] {
        &self.order
    }

    pub(crate) fn model(&self, name: &str) -> Result<&Arc<ServedModel>, ApiError> {
        self.models.get(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown model `{name}` (serving: {})",
                self.order.join(", ")
            ))
        })
    }

    pub(crate) async fn infer(
        &self,
        name: &str,
        headers: &HeaderMap,
        body: Body,
        request_id: &str,
        mode_seen: &mut Option<Mode>,
    ) -> Result<Response, ApiError> {
        // One deadline for the whole request: receiving the body, waiting, running.
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        let model = Arc::clone(self.model(name)?);
        if !self.ready.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable(
                "the server is shutting down; retry on another replica",
            ));
        }
        let limit = self.limits.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::too_large(format!(
                "the request body exceeds the limit of {limit} bytes"
            )));
        }
        // The body and the values decoded from it count against the budget of bytes being
        // received, from before the first byte is read until the input tensor is built.
        let length = declared.unwrap_or(limit);
        let mut reservation = self.receiving.reserve(2 * length, deadline).await?;
        let bytes = read_body(body, limit, declared, deadline, self.limits.request_timeout).await?;
        reservation.keep(2 * bytes.len());
        let (json_part, binary) = protocol::split_body(headers, &bytes)?;
        let request = protocol::parse_request(json_part)?;
        let (query, input) = model.decode(request, binary, |values| {
            reservation.hold(bytes.len() + values)
        })?;
        *mode_seen = Some(query.mode);
        drop(bytes);
        drop(reservation);
        let response = self
            .answer(
                &model,
                &query,
                input,
                request_id,
                (deadline, self.limits.request_timeout),
            )
            .await?;
        let (body, header_len) = response.encode();
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        match header_len {
            Some(len) => {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(HEADER_LENGTH, HeaderValue::from(len));
            }
            None => {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
        }
        Ok(r)
    }

    /// What every inference shares once its request is decoded, over HTTP or gRPC: the checks
    /// of its work and answer against the limits, the queue, the deadline, the audit log and
    /// the response.
    pub(crate) async fn answer(
        &self,
        model: &Arc<ServedModel>,
        query: &Query,
        input: ArrayD<f32>,
        request_id: &str,
        (deadline, timeout): (tokio::time::Instant, std::time::Duration),
    ) -> Result<InferResponse, ApiError> {
        let samples = input.shape()[0];
        model.check_work(query, samples, self.limits.max_work)?;
        model.check_response(query, samples, self.limits.max_response_bytes)?;
        // The input moves to the worker; the audit keeps only its fingerprints.
        let fingerprints = self.audit.as_ref().map(|a| a.fingerprints(&input));
        let (tx, rx) = oneshot::channel();
        self.batcher.submit(Job::new(
            Arc::clone(model),
            query.key.clone(),
            query.sampling.clone(),
            input,
            query.wants_per_member(),
            tx,
            deadline.into_std(),
        ))?;
        let answer = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(ApiError::internal("the worker stopped before answering")),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("no answer within {} ms", timeout.as_millis()),
                ));
            }
        };
        if let (Some(audit), Some(fingerprints)) = (&self.audit, &fingerprints) {
            let entry = Entry {
                request_id,
                model: &model.name,
                digest: &model.digest,
                mode: query.mode.as_str(),
                fingerprints,
                members: &answer.members,
            };
            if let Err(e) = audit.record(&entry) {
                tracing::error!(request_id, error = %e, "cannot write the audit log");
                return Err(ApiError::internal("the audit log cannot be written"));
            }
        }
        Ok(model.respond(query, answer, request_id))
    }
}

/// Ready only the members the allowed modes repeat (the ensemble grid, the randomised grid):
/// their sessions are built now, not on the first request.
fn warm_up(
    ensemble: &Ensemble,
    modes: &[Mode],
    grid: usize,
    randomized_grid: usize,
) -> modeconn_runtime::Result<()> {
    let meta = ensemble.bundle().metadata();
    let mut shape: Vec<usize> = meta
        .input
        .shape
        .iter()
        .map(|&d| d.max(1) as usize)
        .collect();
    if let Some(b) = shape.first_mut() {
        *b = 1;
    }
    let x = ArrayD::<f32>::zeros(shape);
    let curve = meta.kind == modeconn_runtime::bundle::Kind::Curve;
    let mut samplings = Vec::new();
    if !curve {
        samplings.push(Sampling::AllMembers);
    } else {
        if modes.contains(&Mode::Ensemble) {
            samplings.push(Sampling::Grid(grid));
        }
        if modes.contains(&Mode::Randomized) || modes.contains(&Mode::Keyed) {
            samplings.push(Sampling::Grid(randomized_grid));
        }
    }
    for s in samplings {
        ensemble.predict(x.view(), &s, false)?;
    }
    Ok(())
}

/// A new request id: 16 random bytes in hex.
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // The id only needs to be unique in practice; fall back to the clock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = nanos.to_le_bytes();
    }
    hex(&b)
}

/// Binds the address, serves until SIGTERM or SIGINT, then drains and returns.
pub async fn run(options: Options) -> Result<()> {
    let server = tokio::task::spawn_blocking({
        let options = options.clone();
        move || Server::load(&options)
    })
    .await
    .map_err(|e| Error::Config(format!("loading the models failed: {e}")))??;
    let listener = listen(options.address).map_err(|source| Error::Net {
        context: format!("cannot listen on {}", options.address),
        source,
    })?;
    let address = listener.local_addr().map_err(|source| Error::Net {
        context: "local address".into(),
        source,
    })?;
    let grpc = match options.grpc_address {
        Some(a) => {
            let l = listen(a).map_err(|source| Error::Net {
                context: format!("cannot listen for gRPC on {a}"),
                source,
            })?;
            let bound = l.local_addr().map_err(|source| Error::Net {
                context: "local address".into(),
                source,
            })?;
            tracing::info!(address = %bound, "listening for gRPC");
            Some(l)
        }
        None => None,
    };
    tracing::info!(
        address = %address,
        models = server.model_names().join(","),
        max_batch = options.max_batch,
        max_delay_ms = options.max_delay.as_millis() as u64,
        queue = options.queue,
        workers = options.workers,
        "listening"
    );
    server
        .serve_with_grpc(listener, grpc, shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Connections the kernel completes and queues for the server to accept. A deep queue holds a
/// burst while the connection limit makes room (the usual default, 128, drops the connections
/// past it, which their clients retry only a second later).
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `address` with a queue of [`LISTEN_BACKLOG`].
fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
