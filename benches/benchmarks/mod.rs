pub(crate) mod fixture;
pub(crate) mod runtime;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};
use modeconn_runtime::Provider;

/// Batch sizes every bench runs at: one query, and a batch that keeps the cores busy.
pub(crate) const BATCHES: [usize; 2] = [1, 64];

/// Names a bench after the execution provider that runs it (`cpu_…`, `cuda_…`).
///
/// No explicit device sync is needed before timing stops: `Ensemble::predict` returns host
/// arrays, so the outputs have been copied back from the device by then.
pub(crate) fn bench_name(provider: Provider, name: &str) -> String {
    format!("{provider}_{name}")
}

/// Keeps a group short: the machine that runs these is small and shared. Flat sampling runs the
/// same number of iterations per sample, so slow benches (tens of milliseconds per iteration)
/// do not need the 55 × iterations linear sampling asks for.
pub(crate) fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}
