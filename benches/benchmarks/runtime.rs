//! Ensembles end to end: `Ensemble::predict` on the fixture's curve and snapshot set.
//!
//! - `dynamic_vs_static`: one point of the curve, computed in the graph from the curve
//!   coefficients on every query (the dynamic session, `static_budget: 0`), against the same
//!   network materialised into a static session.
//! - `members`: an M-member ensemble in one call against M calls of one member each.
//!
//! Every path goes through `Ensemble::predict`, so each side pays the same softmax, mean and
//! entropy over 10 classes (microseconds, far below the network).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use modeconn_runtime::{Ensemble, EnsembleOptions, Prediction, Sampling};
use ndarray::ArrayD;

use super::fixture::{self, Fixture, POINT_T, SNAPSHOT_MEMBERS};
use super::{BATCHES, bench_name, configure};

criterion_group!(benches, dynamic_vs_static, members);

fn open(path: &std::path::Path, static_budget: usize) -> Ensemble {
    let options = EnsembleOptions {
        static_budget,
        ..EnsembleOptions::default()
    };
    Ensemble::open(&Fixture::get().runtime, path, options).expect("opening the bundle")
}

fn predict(ensemble: &Ensemble, input: &ArrayD<f32>, sampling: &Sampling) -> Prediction {
    ensemble
        .predict(input.view(), sampling, false)
        .expect("prediction")
}

/// Panics unless two predictions give the same probabilities (up to float reordering).
fn assert_close(what: &str, a: &Prediction, b: &Prediction) {
    let diff = (&a.probabilities - &b.probabilities)
        .iter()
        .fold(0.0f32, |m, d| m.max(d.abs()));
    assert!(diff < 1e-4, "{what}: probabilities differ by {diff}");
}

/// The dynamic graph at t against `w(t)` materialised.
///
/// The static side is `w(POINT_T)` written as a one-member snapshot set and run with default
/// options, so `Sampling::AllMembers` materialises it (`Bundle::materialize`) into a session
/// with ONNX Runtime's full optimisation (batch norm folded into the convolutions, weights
/// pre-packed). A plain `ort` session on the materialised bytes would be the other choice, but
/// the runtime owns the process's only `ort` environment and does not hand it out; this path
/// costs what a plain session costs plus the same few microseconds of bookkeeping as the
/// dynamic side.
fn dynamic_vs_static(c: &mut Criterion) {
    let f = Fixture::get();
    let dynamic = open(&f.curve, 0);
    let materialised = open(&f.point, EnsembleOptions::default().static_budget);
    let at = Sampling::At(vec![POINT_T]);
    let all = Sampling::AllMembers;
    let inputs: Vec<(usize, ArrayD<f32>)> =
        BATCHES.iter().map(|&b| (b, fixture::input(b))).collect();
    // Before timing: create the static session, and check both sides compute the same network.
    for (batch, x) in &inputs {
        let d = predict(&dynamic, x, &at);
        let s = predict(&materialised, x, &all);
        assert_close(&format!("dynamic vs static, batch {batch}"), &d, &s);
    }
    assert_eq!(
        dynamic.static_members(),
        0,
        "the dynamic side must stay dynamic"
    );
    assert_eq!(
        materialised.static_members(),
        1,
        "the static side must be materialised"
    );

    let provider = dynamic.provider();
    let mut group = c.benchmark_group("dynamic_vs_static");
    configure(&mut group);
    for (batch, x) in &inputs {
        group.throughput(Throughput::Elements(*batch as u64));
        group.bench_with_input(
            BenchmarkId::new(bench_name(provider, "dynamic_t"), batch),
            x,
            |b, x| b.iter(|| black_box(predict(&dynamic, x, &at))),
        );
        group.bench_with_input(
            BenchmarkId::new(bench_name(provider, "static"), batch),
            x,
            |b, x| b.iter(|| black_box(predict(&materialised, x, &all))),
        );
    }
    group.finish();
}

/// An M-member ensemble in one call against M single-member calls, on the same sessions:
///
/// - snapshot set, static sessions: `AllMembers` against `Members([i])` for each i;
/// - curve, dynamic session: `At([t_0 … t_{M-1}])` against `At([t_i])` for each i, the t of a
///   4-point grid, on an ensemble without static budget (an ensemble with one answers `At` from
///   the static sessions of points it has already materialised);
/// - for reference, the same grid as `Grid(4)` on an ensemble with the default budget, which
///   materialises its points into static sessions (no single-member form of a grid exists to set
///   against it).
///
/// Each static member has its own session. With ONNX Runtime's per-session thread pools, the
/// threads of the session that just ran spin while the next one runs, so on a machine with few
/// cores the static ensembles cost more than M runs of one session would.
fn members(c: &mut Criterion) {
    let f = Fixture::get();
    let snapshots = open(&f.snapshots, EnsembleOptions::default().static_budget);
    let curve = open(&f.curve, 0);
    let curve_static = open(&f.curve, EnsembleOptions::default().static_budget);
    let m = SNAPSHOT_MEMBERS;
    let all = Sampling::AllMembers;
    let each: Vec<Sampling> = (0..m).map(|i| Sampling::Members(vec![i])).collect();
    let ts: Vec<f64> = (0..m).map(|i| i as f64 / (m - 1) as f64).collect();
    let at_all = Sampling::At(ts.clone());
    let at_each: Vec<Sampling> = ts.iter().map(|&t| Sampling::At(vec![t])).collect();
    let grid = Sampling::Grid(m);
    let inputs: Vec<(usize, ArrayD<f32>)> =
        BATCHES.iter().map(|&b| (b, fixture::input(b))).collect();
    // Before timing: materialise every static member and check that the ensembles are the
    // mean of their single runs.
    for (batch, x) in &inputs {
        let whole = predict(&snapshots, x, &all);
        let singles: Vec<Prediction> = each.iter().map(|s| predict(&snapshots, x, s)).collect();
        assert_mean(&format!("snapshots, batch {batch}"), &whole, &singles);
        let whole = predict(&curve, x, &at_all);
        let singles: Vec<Prediction> = at_each.iter().map(|s| predict(&curve, x, s)).collect();
        assert_mean(&format!("curve, batch {batch}"), &whole, &singles);
        let materialised = predict(&curve_static, x, &grid);
        assert_close(&format!("curve grid, batch {batch}"), &whole, &materialised);
    }
    assert_eq!(
        snapshots.static_members(),
        m,
        "every snapshot must be materialised"
    );
    assert_eq!(
        curve.static_members(),
        0,
        "`At` on the curve must stay dynamic"
    );
    assert_eq!(
        curve_static.static_members(),
        m,
        "the grid must be materialised"
    );

    let provider = snapshots.provider();
    let name = |what: &str| bench_name(provider, what);
    let mut group = c.benchmark_group("members");
    configure(&mut group);
    for (batch, x) in &inputs {
        group.throughput(Throughput::Elements(*batch as u64));
        group.bench_with_input(
            BenchmarkId::new(name("snapshots_static_ensemble4"), batch),
            x,
            |b, x| b.iter(|| black_box(predict(&snapshots, x, &all))),
        );
        group.bench_with_input(
            BenchmarkId::new(name("snapshots_static_4_singles"), batch),
            x,
            |b, x| {
                b.iter(|| {
                    for s in &each {
                        black_box(predict(&snapshots, x, s));
                    }
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new(name("curve_dynamic_ensemble4"), batch),
            x,
            |b, x| b.iter(|| black_box(predict(&curve, x, &at_all))),
        );
        group.bench_with_input(
            BenchmarkId::new(name("curve_dynamic_4_singles"), batch),
            x,
            |b, x| {
                b.iter(|| {
                    for s in &at_each {
                        black_box(predict(&curve, x, s));
                    }
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new(name("curve_static_grid4"), batch),
            x,
            |b, x| b.iter(|| black_box(predict(&curve_static, x, &grid))),
        );
    }
    group.finish();
}

/// Panics unless `whole` holds the mean of the probabilities of `singles`.
fn assert_mean(what: &str, whole: &Prediction, singles: &[Prediction]) {
    let mut mean = singles[0].probabilities.clone();
    for s in &singles[1..] {
        mean += &s.probabilities;
    }
    let diff = (&whole.probabilities - &(mean / singles.len() as f32))
        .iter()
        .fold(0.0f32, |a, d| a.max(d.abs()));
    assert!(
        diff < 1e-5,
        "{what}: the ensemble is not the mean of its members ({diff})"
    );
}
