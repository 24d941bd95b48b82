//! `modeconn serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use modeconn_server::config::{LimitOverrides, mib};
use modeconn_server::{Config, Options};

/// Arguments of `serve`. Every flag can also be set by the environment variable its help names
/// (`MODECONN_*`); a flag given on the command line wins.
#[derive(clap::Args)]
pub struct Args {
    /// Bundles to serve, each as PATH (named after the file stem) or NAME=PATH.
    #[arg(value_name = "BUNDLE", required_unless_present = "model_dir")]
    bundles: Vec<String>,
    /// Serve every bundle of a model repository: `NAME.safetensors` files, and folders
    /// `NAME/` holding one bundle (in it or in `1/`) and optionally `config.toml` (the keys
    /// of a `[models.NAME]` section); or one bundle file.
    #[arg(
        long,
        alias = "model_dir",
        value_name = "DIR",
        env = "MODECONN_MODEL_DIR"
    )]
    model_dir: Option<PathBuf>,
    /// Serve the one bundle under this name (KServe's `--model_name`; also read from
    /// MODEL_NAME).
    #[arg(
        long,
        alias = "model_name",
        value_name = "NAME",
        env = "MODECONN_MODEL_NAME"
    )]
    model_name: Option<String>,
    /// Address to listen on: the loopback by default, so that nothing is exposed by accident;
    /// `0.0.0.0` in a container (the image sets MODECONN_HOST).
    #[arg(long, default_value = "127.0.0.1", env = "MODECONN_HOST")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the log says which).
    #[arg(
        long,
        alias = "http_port",
        default_value_t = 8000,
        env = "MODECONN_PORT"
    )]
    port: u16,
    /// Also serve the Open Inference Protocol over gRPC on this port, on the same address
    /// (off by default; Triton's clients expect 8001; 0: any free port, logged).
    #[arg(
        long,
        alias = "grpc_port",
        value_name = "PORT",
        env = "MODECONN_GRPC_PORT"
    )]
    grpc_port: Option<u16>,
    /// Server configuration (TOML): allowed modes per model, secrets, audit log, limits.
    #[arg(long, value_name = "TOML", env = "MODECONN_CONFIG")]
    config: Option<PathBuf>,
    /// Samples gathered into one batch at most.
    #[arg(
        long,
        env = "MODECONN_MAX_BATCH",
        value_name = "N",
        default_value_t = 32
    )]
    max_batch: usize,
    /// Milliseconds the first request of a batch waits for others (0: run what is queued as
    /// soon as a worker is free; under load, requests still gather while workers are busy).
    #[arg(
        long,
        env = "MODECONN_MAX_DELAY_MS",
        value_name = "D",
        default_value_t = 0
    )]
    max_delay_ms: u64,
    /// Requests waiting for a worker at most; more are answered 503 with Retry-After.
    #[arg(long, env = "MODECONN_QUEUE", value_name = "N", default_value_t = 256)]
    queue: usize,
    /// MiB of input waiting for a worker at most; more are answered 503 with Retry-After.
    #[arg(
        long,
        env = "MODECONN_QUEUE_MB",
        value_name = "MB",
        default_value_t = 1024
    )]
    queue_mb: usize,
    /// Threads running batches.
    #[arg(long, env = "MODECONN_WORKERS", value_name = "N", default_value_t = 2)]
    workers: usize,
    /// Largest request body in MiB (default: the configuration's `max_body_mb`, else 64).
    #[arg(long, env = "MODECONN_MAX_BODY_MB", value_name = "MB")]
    max_body_mb: Option<usize>,
    /// Milliseconds a request may take before it is answered 504 (default: the
    /// configuration's `request_timeout_ms`, else 30000).
    #[arg(long, env = "MODECONN_TIMEOUT_MS", value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Open connections at most; past it, idle ones are closed to make room, else new ones
    /// get 503 (default: the configuration's `max_connections`, else 1024, fewer if the limit
    /// of open files is lower).
    #[arg(long, env = "MODECONN_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Milliseconds for a request's headers to arrive, from their first byte (default: the
    /// configuration's `header_timeout_ms`, else 10000).
    #[arg(long, env = "MODECONN_HEADER_TIMEOUT_MS", value_name = "MS")]
    header_timeout_ms: Option<u64>,
    /// Milliseconds an idle connection stays open (default: the configuration's
    /// `keep_alive_ms`, else 5000).
    #[arg(long, env = "MODECONN_KEEP_ALIVE_MS", value_name = "MS")]
    keep_alive_ms: Option<u64>,
    /// Member-samples one request may cost (members times samples; samples in per-sample
    /// modes); more is answered 413 (default: the configuration's `max_work`, else 262144).
    #[arg(long, env = "MODECONN_MAX_WORK", value_name = "N")]
    max_work: Option<usize>,
    /// MiB of request bodies being received at once over all connections, each counted twice
    /// its length; more wait (default: the configuration's `receive_mb`, else 512).
    #[arg(long, env = "MODECONN_RECEIVE_MB", value_name = "MB")]
    receive_mb: Option<usize>,
    /// MiB an answer may take, reckoned before it is computed; more is answered 413 (default:
    /// the configuration's `max_response_mb`, else 64).
    #[arg(long, env = "MODECONN_MAX_RESPONSE_MB", value_name = "MB")]
    max_response_mb: Option<usize>,
    #[command(flatten)]
    runtime: super::RuntimeArgs,
}

/// `NAME=PATH` or `PATH` (named after its stem).
fn named(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    if let Some((name, path)) = spec.split_once('=') {
        return Ok((name.to_string(), PathBuf::from(path)));
    }
    let path = PathBuf::from(spec);
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{spec}: cannot name the model after this path; use NAME=PATH"))?
        .to_string();
    Ok((name, path))
}

/// The models to serve and their own policy files: the bundles named, those of the
/// repository, and the one renamed by `--model-name` (or MODEL_NAME).
fn models(args: &Args) -> anyhow::Result<Vec<(String, PathBuf, Option<PathBuf>)>> {
    let mut models = args
        .bundles
        .iter()
        .map(|b| named(b).map(|(n, p)| (n, p, None)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(dir) = &args.model_dir {
        for m in modeconn_server::repository::read(dir)? {
            models.push((m.name, m.bundle, m.config));
        }
    }
    let name = args
        .model_name
        .clone()
        .or_else(|| std::env::var("MODEL_NAME").ok().filter(|n| !n.is_empty()));
    if let Some(name) = name {
        match models.as_mut_slice() {
            [(n, _, _)] => *n = name,
            _ => anyhow::bail!(
                "--model-name {name}: it names one bundle, and {} are served ({}); name each \
                 with NAME=PATH or by its folder",
                models.len(),
                models
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(models)
}

/// Runs `serve` until SIGTERM or SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    let found = models(&args)?;
    let own_policies: Vec<(String, PathBuf)> = found
        .iter()
        .filter_map(|(n, _, c)| c.clone().map(|c| (n.clone(), c)))
        .collect();
    let mut options = Options::new(found.into_iter().map(|(n, p, _)| (n, p)).collect());
    options.address = SocketAddr::new(args.host, args.port);
    options.grpc_address = args.grpc_port.map(|p| SocketAddr::new(args.host, p));
    options.device = args.runtime.device()?;
    options.ort_library = args.runtime.ort_lib.clone();
    options.threads = args.runtime.threads;
    options.max_batch = args.max_batch;
    options.max_delay = Duration::from_millis(args.max_delay_ms);
    options.queue = args.queue;
    options.queue_bytes = args.queue_mb.saturating_mul(1 << 20);
    options.workers = args.workers;
    options.static_budget = args.runtime.static_bytes();
    options.limits = LimitOverrides {
        max_body_bytes: args.max_body_mb.map(mib),
        request_timeout: args.timeout_ms.map(Duration::from_millis),
        max_connections: args.max_connections,
        header_timeout: args.header_timeout_ms.map(Duration::from_millis),
        keep_alive: args.keep_alive_ms.map(Duration::from_millis),
        max_work: args.max_work,
        receive_bytes: args.receive_mb.map(mib),
        max_response_bytes: args.max_response_mb.map(mib),
    };
    if let Some(path) = &args.config {
        options.config = Config::load(path)?;
    }
    for (name, path) in &own_policies {
        options.config.add_model_file(name, path)?;
    }
    options.check()?;
    modeconn_server::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("modeconn-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(modeconn_server::run(options))?;
    Ok(())
}
