//! Prometheus metrics, served as text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a model and a mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelMode {
    /// Model name.
    pub model: String,
    /// Mode name.
    pub mode: String,
}

/// Labels naming a model and an HTTP status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelStatus {
    /// Model name (`_unknown` for names that are not served, so clients cannot grow the label
    /// set).
    pub model: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels naming a model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    /// Model name.
    pub model: String,
}

/// Labels naming why the server closed a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `keep_alive`, `header_timeout`, `evicted`, `shutdown` or `stalled`.
    pub reason: String,
}

/// Labels naming a model and its execution provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// Model name.
    pub model: String,
    /// `cpu` or `cuda`.
    pub provider: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Answered inference requests.
    pub requests: Family<ModelMode, Counter>,
    /// Inference requests answered with an error.
    pub failures: Family<ModelStatus, Counter>,
    /// Requests dropped because the client left or the deadline passed: before they ran, or
    /// between the chunks of their work.
    pub abandoned: Family<ModelLabel, Counter>,
    /// Seconds from queueing to the start of the batch.
    pub queue_seconds: Histograms<ModelLabel>,
    /// Seconds a batch ran.
    pub compute_seconds: Histograms<ModelLabel>,
    /// Samples per batch.
    pub batch_samples: Histograms<ModelLabel>,
    /// Requests per batch.
    pub batch_requests: Histograms<ModelLabel>,
    /// Requests waiting for a worker.
    pub queue_depth: Gauge,
    /// Inference requests being handled.
    pub in_flight: Gauge,
    /// 1 for the execution provider each model runs on.
    pub provider: Family<ProviderLabel, Gauge>,
    /// Open client connections.
    pub connections: Gauge,
    /// Connections refused past the connection limit (answered `503`, or closed unread).
    pub connections_refused: Counter,
    /// Connections the server closed, by reason.
    pub connections_closed: Family<ReasonLabel, Counter>,
}

fn seconds() -> Histogram {
    // 100 us to about 52 s.
    Histogram::new(exponential_buckets(1e-4, 2.0, 20))
}

fn counts() -> Histogram {
    // 1 to 4096.
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let requests = Family::<ModelMode, Counter>::default();
        let failures = Family::<ModelStatus, Counter>::default();
        let abandoned = Family::<ModelLabel, Counter>::default();
        let queue_seconds: Histograms<ModelLabel> = Family::new_with_constructor(seconds);
        let compute_seconds: Histograms<ModelLabel> = Family::new_with_constructor(seconds);
        let batch_samples: Histograms<ModelLabel> = Family::new_with_constructor(counts);
        let batch_requests: Histograms<ModelLabel> = Family::new_with_constructor(counts);
        let queue_depth = Gauge::default();
        let in_flight = Gauge::default();
        let provider = Family::<ProviderLabel, Gauge>::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        let mut r = Registry::with_prefix("modeconn");
        r.register(
            "requests",
            "Inference requests answered, per model and mode",
            requests.clone(),
        );
        r.register(
            "request_failures",
            "Inference requests answered with an error, per model and HTTP status",
            failures.clone(),
        );
        r.register(
            "abandoned",
            "Requests dropped, unrun or between chunks, because the client disconnected or the \
             deadline passed",
            abandoned.clone(),
        );
        r.register(
            "queue_seconds",
            "Time from queueing a request to the start of its batch",
            queue_seconds.clone(),
        );
        r.register(
            "compute_seconds",
            "Time a batch ran",
            compute_seconds.clone(),
        );
        r.register("batch_samples", "Samples per batch", batch_samples.clone());
        r.register(
            "batch_requests",
            "Requests per batch",
            batch_requests.clone(),
        );
        r.register(
            "queue_depth",
            "Requests waiting for a worker",
            queue_depth.clone(),
        );
        r.register(
            "in_flight_requests",
            "Inference requests being handled",
            in_flight.clone(),
        );
        r.register(
            "provider",
            "1 for the execution provider each model runs on",
            provider.clone(),
        );
        r.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused past the connection limit",
            connections_refused.clone(),
        );
        r.register(
            "connections_closed",
            "Connections the server closed: idle past the keep-alive time, headers not received \
             in time, evicted to make room, at shutdown, or stalled writing an answer",
            connections_closed.clone(),
        );
        Metrics {
            registry: r,
            requests,
            failures,
            abandoned,
            queue_seconds,
            compute_seconds,
            batch_samples,
            batch_requests,
            queue_depth,
            in_flight,
            provider,
            connections,
            connections_refused,
            connections_closed,
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a failed request.
    pub fn failure(&self, model: &str, code: u16) {
        self.failures
            .get_or_create(&ModelStatus {
                model: model.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a connection the server closed.
    pub fn closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The label of a model.
    pub fn model(name: &str) -> ModelLabel {
        ModelLabel {
            model: name.to_string(),
        }
    }
}
