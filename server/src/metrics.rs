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

/// Why the server closes connections: every value of `connections_closed`'s `reason`.
pub const CLOSE_REASONS: [&str; 5] = [
    "keep_alive",
    "header_timeout",
    "evicted",
    "shutdown",
    "stalled",
];

/// The formats `GET /metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`): what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus' classic text format 0.0.4 (`text/plain`): counters' `# TYPE` and `# HELP`
    /// lines name the sample (`..._total`), and there is no `# EOF`.
    Classic,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it is the media type of
    /// highest quality that names one of the two, else the classic format (also for no
    /// header, `*/*` and anything else).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best = (Format::Classic, 0.0f64, false);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Classic,
                _ => continue,
            };
            if !best.2 || q > best.1 {
                best = (format, q, true);
            }
        }
        if best.1 <= 0.0 {
            Format::Classic
        } else {
            best.0
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text as Prometheus' classic format 0.0.4: a counter family `x` has samples
/// `x_total`, and the classic format names the family by its sample, so its `# HELP` and
/// `# TYPE` lines say `x_total`; `# UNIT` and `# EOF` have no classic form and are left out.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
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
        for reason in CLOSE_REASONS {
            let _ = connections_closed.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
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

    /// Makes the series of a served model, at 0, so that they are there before anything
    /// happens: its requests in each of its `modes`, what was abandoned, and its histograms.
    pub fn register_model(&self, model: &str, modes: &[&str]) {
        for mode in modes {
            let _ = self.requests.get_or_create(&ModelMode {
                model: model.into(),
                mode: (*mode).into(),
            });
        }
        let label = Self::model(model);
        let _ = self.abandoned.get_or_create(&label);
        for h in [
            &self.queue_seconds,
            &self.compute_seconds,
            &self.batch_samples,
            &self.batch_requests,
        ] {
            let _ = h.get_or_create(&label);
        }
    }

    /// The metrics in OpenMetrics' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Classic => to_classic(&self.encode()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_chooses_the_format() {
        // What Prometheus sends: OpenMetrics first.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        for classic in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain; version=0.0.4, application/openmetrics-text; q=0.3"),
            Some("application/openmetrics-text; q=0"),
            Some("application/json"),
        ] {
            assert_eq!(Format::negotiate(classic), Format::Classic, "{classic:?}");
        }
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; version=1.0.0")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.register_model("curve", &["ensemble", "at"]);
        let classic = m.encode_as(Format::Classic);
        assert!(
            classic.contains("# TYPE modeconn_requests_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# HELP modeconn_abandoned_total Requests dropped"));
        assert!(classic.contains("modeconn_abandoned_total{model=\"curve\"} 0\n"));
        assert!(classic.contains("modeconn_requests_total{model=\"curve\",mode=\"at\"} 0\n"));
        assert!(classic.contains("# TYPE modeconn_queue_depth gauge\n"));
        assert!(!classic.contains("# EOF"));
        for reason in CLOSE_REASONS {
            let line = format!("modeconn_connections_closed_total{{reason=\"{reason}\"}} 0\n");
            assert!(classic.contains(&line), "{line} is missing:\n{classic}");
        }
        // Every sample line of the classic text belongs to the family its `# TYPE` names.
        let mut family = String::new();
        for line in classic.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap_or("").to_string();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(
                    name == family
                        || name
                            .strip_prefix(family.as_str())
                            .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) }),
                    "`{line}` is not of family `{family}`"
                );
            }
        }
        let open = m.encode_as(Format::OpenMetrics);
        assert!(open.contains("# TYPE modeconn_requests counter\n") && open.ends_with("# EOF\n"));
    }
}
