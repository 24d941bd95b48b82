//! modeconn-server: serve modeconn bundles over HTTP with the KServe / Triton Open Inference
//! Protocol v2 (JSON and the binary tensor extension).
//!
//! Each request chooses how its answer is made (`parameters.mode`): the model's ensemble, points
//! the client names, a random point per sample (from the operating system's CSPRNG) or a point
//! derived from a keyed hash of each sample (the same input always gets the same answer). A TOML
//! [`Config`] decides which modes each model allows and whether the point used is ever
//! returned. Requests for the same model and members are batched dynamically; the queue is
//! bounded; `/metrics` speaks Prometheus; an optional audit log records sealed points.
//!
//! Everything a client can make the server hold is bounded ([`Limits`]): connections in number
//! and in time (idle, headers), the bytes being received over all connections, the work and the
//! answer of each request (both refused before anything runs), and the compute of a request by
//! its deadline (large batches run in chunks that stop once nobody waits). On shutdown every
//! request already read is answered and the rest refused with `503`.
//!
//! ```no_run
//! use modeconn_server::{Config, Options};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = Options::new(vec![("digits".into(), "curve.safetensors".into())]);
//! options.config = Config::load("server.toml".as_ref())?;
//! tokio::runtime::Runtime::new()?.block_on(modeconn_server::run(options))?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod app;
pub mod audit;
pub mod batcher;
mod chunks;
pub mod config;
mod conn;
pub mod error;
pub mod grpc;
mod memory;
pub mod metrics;
pub mod model;
pub mod protocol;
mod receive;
pub mod repository;
mod routes;

pub use app::{Server, run, shutdown_signal};
pub use config::{Config, Limits, Mode, Options, Policy};
pub use error::{ApiError, Error, Result};

/// Logs as JSON lines on standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}
