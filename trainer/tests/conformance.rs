//! Conformance of the trainer and the runtime: for every architecture and both bases, the
//! probabilities the runtime computes from a curve bundle at t equal the trainer's own forward
//! pass (libtorch) at `w(t)`, and `w(0)`, `w(1)` read back from the bundle are the endpoints,
//! bit for bit.
//!
//! Each case builds a small network with `arch::by_name`, three control points (endpoints from
//! `arch::init` with two seeds, the bend from a third seed, so it is off the segment; batch-norm
//! scales and shifts and biases get seeded noise so that every trained tensor really varies
//! along the curve), recomputes batch-norm statistics with `bn::recompute` on a grid of t over a
//! small synthetic training set, writes the bundle with `model_io::write_curve` and opens it
//! with `modeconn_runtime::Ensemble`. Then, comparing probabilities (max absolute difference
//! over a batch of 3 random inputs and all classes):
//!
//! - at every grid point the runtime's statistics are the recomputed ones: runtime and trainer
//!   agree to 1e-4;
//! - off the grid the runtime interpolates the statistics linearly between grid points (hat
//!   basis). Fed the same interpolated statistics, the trainer agrees with the runtime to 1e-4
//!   (the graph and the weights conform everywhere). Against the trainer with statistics
//!   recomputed at t (the "truth") the difference is the interpolation error: measured,
//!   printed, and held to a per-architecture bound (see [`Case::off_grid_bound`]). Without
//!   batch norm there is nothing to interpolate, and off-grid is held to 1e-4 as well.
//!
//! The last layer's weights are scaled up (x8) in every control point, so that probabilities
//! are far from uniform and move a lot along the curve (asserted: by more than 500 times the
//! tolerance between grid points): a tolerance on probabilities then really pins the logits.
//!
//! `off_grid_error_shrinks_with_the_grid` shows that the off-grid difference is interpolation
//! error and nothing else: it falls with the grid spacing, 11 to 19 times from 5 to 21 points
//! on preresnet8 (the square of the spacing would give 25).
//!
//! Needs libtorch (`LD_LIBRARY_PATH`) and ONNX Runtime (`ORT_DYLIB_PATH`) from the env file of
//! `scripts/setup.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use modeconn_runtime::bundle::Role;
use modeconn_runtime::curve::{self as rcurve, Basis};
use modeconn_runtime::{Bundle, Ensemble, EnsembleOptions, Member, Runtime, RuntimeOptions};
use modeconn_runtime::{Device as RtDevice, Sampling};
use modeconn_trainer::arch::{self, Mode, Net, ParamKind, Params};
use modeconn_trainer::bn;
use modeconn_trainer::curve::point_at;
use modeconn_trainer::data::{Data, Split};
use modeconn_trainer::model_io::{self, CurveData, ModelSpec};
use tch::{Device, Kind, Tensor};

/// Agreement of runtime and trainer where both use the same weights and statistics: max
/// absolute difference of probabilities. Measured: at most 8.6e-6 (preresnet47), 3.1e-6
/// (vgg16bn), below 1e-6 elsewhere.
const AGREE: f32 = 1e-4;

/// Classes of the synthetic task.
const CLASSES: i64 = 10;

/// Control points: start, one bend, end.
const K: usize = 3;

/// Inputs in the compared batch.
const BATCH: i64 = 3;

/// Off-grid t values: none lies on a grid of 3, 5, 9 or 21 points (steps 1/2, 1/4, 1/8, 1/20),
/// and with 5 points there is one in each cell.
const OFF_GRID: [f64; 4] = [0.13, 0.37, 0.62, 0.88];

/// One architecture under test.
struct Case {
    arch: &'static str,
    hidden: Option<Vec<i64>>,
    input: Vec<i64>,
    /// Synthetic training samples for the batch-norm statistics.
    train: i64,
    /// Batch size of the statistics pass.
    batch: usize,
    /// Points of the batch-norm grid.
    grid: usize,
    /// The off-grid t values checked.
    off_grid: &'static [f64],
    /// Bound on the max absolute probability difference between the runtime (statistics
    /// interpolated on the grid) and the trainer with statistics recomputed at an off-grid t;
    /// [`AGREE`] for networks without batch norm.
    off_grid_bound: f32,
}

/// SplitMix64: deterministic noise for the tests, independent of libtorch's global generator
/// (which the tests, running in parallel threads, would share).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`, as an `f32` tensor of `shape`.
    fn uniform(&mut self, shape: &[i64], lo: f64, hi: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (lo + (hi - lo) * self.next()) as f32)
            .collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    fn labels(&mut self, n: i64) -> Tensor {
        let v: Vec<i64> = (0..n)
            .map(|_| ((self.next() * CLASSES as f64) as i64).min(CLASSES - 1))
            .collect();
        Tensor::from_slice(&v)
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeOptions::default().with_device(RtDevice::Cpu))
            .expect("ONNX Runtime (ORT_DYLIB_PATH, from the env file of scripts/setup.sh)")
    })
}

/// A control point: `arch::init(seed)` for the trained parameters, plus seeded noise on
/// batch-norm scales and shifts and on biases (two fresh initialisations share those: all
/// ones, all zeros), so that every trained tensor varies along the curve, and the last layer's
/// weights scaled by [`CLASSIFIER_SCALE`].
fn control_point(net: &Net, seed: i64) -> Params {
    let init = arch::init(net, seed, Device::Cpu).expect("init");
    let mut noise = Noise(seed as u64 ^ 0xC0FFEE);
    let classifier = classifier_weight(net);
    let mut out = BTreeMap::new();
    for p in net.params.iter().filter(|p| !p.kind.is_statistic()) {
        let t = &init[&p.name];
        let t = match p.kind {
            ParamKind::BnWeight | ParamKind::BnBias | ParamKind::Bias => {
                t + noise.uniform(&p.shape, -0.2, 0.2)
            }
            _ if p.name == classifier => t * CLASSIFIER_SCALE,
            _ => t.shallow_clone(),
        };
        out.insert(p.name.clone(), t.contiguous());
    }
    out
}

/// Scale of the last layer's weights in the control points: fresh networks answer almost
/// uniformly (probabilities near 1/10), which would make a probability tolerance weak; scaled
/// up, the probabilities are far from uniform and move a lot along the curve.
const CLASSIFIER_SCALE: f64 = 8.0;

/// The name of the weight of the last layer (the one that produces the logits).
fn classifier_weight(net: &Net) -> String {
    net.params
        .iter()
        .rev()
        .find(|p| p.kind == ParamKind::Weight)
        .map(|p| p.name.clone())
        .expect("a network with weights")
}

fn shallow(params: &Params) -> Params {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

/// The running statistics of `params`.
fn statistics(net: &Net, params: &Params) -> Params {
    net.params
        .iter()
        .filter(|p| p.kind.is_statistic())
        .map(|p| (p.name.clone(), params[&p.name].shallow_clone()))
        .collect()
}

/// `w(t)` of the curve (trained parameters only), as the trainer computes it.
fn w_at(points: &[Params], basis: Basis, t: f64) -> Params {
    let c = basis.coefficients(points.len(), t).expect("coefficients");
    let points: Vec<Params> = points.iter().map(shallow).collect();
    tch::no_grad(|| point_at(&points, &c)).expect("w(t)")
}

/// `params` with `stats` added (or replaced).
fn with_stats(params: &Params, stats: &Params) -> Params {
    let mut out = shallow(params);
    out.extend(stats.iter().map(|(n, s)| (n.clone(), s.shallow_clone())));
    out
}

/// Linear (hat) interpolation of grid statistics at t, as the runtime does it.
fn interpolated_stats(grid: &[f64], stats: &[Params], t: f64) -> Params {
    let c = rcurve::hat_coefficients(grid, t).expect("hat coefficients");
    let stats: Vec<Params> = stats.iter().map(shallow).collect();
    tch::no_grad(|| point_at(&stats, &c)).expect("interpolated statistics")
}

/// The trainer's probabilities `softmax(forward(net, params, x))` in evaluation mode.
fn trainer_probs(net: &Net, params: &Params, x: &Tensor) -> Vec<f32> {
    let logits = tch::no_grad(|| arch::forward(net, params, x, Mode::Eval)).expect("forward");
    let p = logits.softmax(-1, Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&p).expect("host values")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks that `w(t)` read from the bundle is `points` (trained parameters) and `stats`
/// (statistics) bit for bit, and that the bundle holds nothing else.
fn check_exact(bundle: &Bundle, t: f64, points: &Params, stats: Option<&Params>, what: &str) {
    let weights = bundle.weights_at(Member::T(t)).expect("weights_at");
    for (name, shape, values) in &weights.tensors {
        let expected = match bundle.tensor(name).expect("a tensor entry").role {
            Role::Points => points.get(name),
            Role::Grid => stats.and_then(|s| s.get(name)),
        }
        .unwrap_or_else(|| panic!("{what}: the bundle holds `{name}`, which was not written"));
        assert_eq!(shape, &expected.size(), "{what}: shape of `{name}`");
        let expected = model_io::host(expected).expect("host values");
        assert_eq!(values.len(), expected.len(), "{what}: size of `{name}`");
        if let Some(i) = (0..values.len()).find(|&i| values[i].to_bits() != expected[i].to_bits()) {
            panic!(
                "{what}: `{name}`[{i}] read from the bundle at t={t} is {:e}, written {:e}",
                values[i], expected[i]
            );
        }
    }
    let want = points.len() + stats.map_or(0, BTreeMap::len);
    assert_eq!(
        weights.tensors.len(),
        want,
        "{what}: the bundle holds {} tensors, {want} were written",
        weights.tensors.len()
    );
}

/// A network, its control points, a synthetic training set and a batch to compare on.
struct Setup {
    spec: ModelSpec,
    net: Net,
    points: Vec<Params>,
    data: Data,
    batch: usize,
    x: Tensor,
    /// `x` as `.npy`: read back as the runtime's input (this crate does not depend on `ndarray`
    /// itself).
    x_npy: PathBuf,
    dir: tempfile::TempDir,
}

fn setup(case: &Case) -> Setup {
    let spec = ModelSpec {
        arch: case.arch.into(),
        hidden: case.hidden.clone(),
        input: case.input.clone(),
        classes: CLASSES,
        // A non-trivial input normalisation, part of both the libtorch and the ONNX network.
        mean: vec![0.3],
        std: vec![0.7],
    };
    let net = spec.net().unwrap_or_else(|e| panic!("{}: {e}", case.arch));
    let mut noise = Noise(7);
    let shape: Vec<i64> = std::iter::once(case.train)
        .chain(case.input.iter().copied())
        .collect();
    let mut split = || Split {
        x: noise.uniform(&shape, 0.0, 1.0),
        y: noise.labels(case.train),
    };
    let (train, test) = (split(), split());
    let data = Data {
        name: "synthetic".into(),
        train,
        test,
        input: case.input.clone(),
        classes: CLASSES,
        mean: spec.mean.clone(),
        std: spec.std.clone(),
        augment: false,
    };
    let xshape: Vec<i64> = std::iter::once(BATCH)
        .chain(case.input.iter().copied())
        .collect();
    let x = noise.uniform(&xshape, 0.0, 1.0);
    // Start, bend, end.
    let points: Vec<Params> = [11, 13, 12]
        .iter()
        .map(|&s| control_point(&net, s))
        .collect();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let x_npy = write_npy(&x, dir.path());
    Setup {
        spec,
        net,
        points,
        data,
        batch: case.batch,
        x,
        x_npy,
        dir,
    }
}

fn write_npy(x: &Tensor, dir: &Path) -> PathBuf {
    let path = dir.join("x.npy");
    x.write_npy(&path).expect("write .npy");
    path
}

impl Setup {
    /// `w(t)` with batch-norm statistics recomputed at t on the training data.
    fn recomputed(&self, basis: Basis, t: f64) -> Params {
        let mut w = w_at(&self.points, basis, t);
        bn::recompute(&self.net, &mut w, &self.data, self.batch, Device::Cpu)
            .expect("bn::recompute");
        w
    }
}

/// The worst differences of one basis.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    /// Runtime vs trainer on the grid.
    on_grid: f32,
    /// Runtime vs trainer with the same interpolated statistics, off the grid.
    same_stats: f32,
    /// Runtime vs trainer with statistics recomputed at t, off the grid.
    off_grid: f32,
}

/// Writes the curve of `basis` with a batch-norm grid of `grid` points, checks `w(0)`, `w(1)`
/// and the runtime against the trainer, and returns the differences.
fn measure(s: &Setup, basis: Basis, grid: usize, off_grid: &[f64], bound: f32) -> Measured {
    let what = format!("{} {} (grid {grid})", s.spec.arch, basis.as_str());
    let has_bn = s.net.has_batch_norm();
    let grid = rcurve::grid(grid).expect("grid");
    let stats: Vec<Params> = if has_bn {
        grid.iter()
            .map(|&g| statistics(&s.net, &s.recomputed(basis, g)))
            .collect()
    } else {
        Vec::new()
    };
    let path = s
        .dir
        .path()
        .join(format!("{}-{}.safetensors", basis.as_str(), grid.len()));
    model_io::write_curve(
        &path,
        &s.net,
        model_io::Origin {
            spec: Some(&s.spec),
            base: None,
        },
        &CurveData {
            basis,
            points: &s.points,
            grid: &grid,
            stats: &stats,
        },
        serde_json::json!({ "test": "conformance" }),
    )
    .unwrap_or_else(|e| panic!("{what}: write_curve: {e}"));

    // w(0) and w(1) are the endpoints (and the first and last grid statistics), bit for bit.
    let bundle = Bundle::open(&path).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_eq!(bundle.metadata().points, K);
    assert_eq!(bundle.metadata().basis, Some(basis));
    check_exact(
        &bundle,
        0.0,
        &s.points[0],
        stats.first(),
        &format!("{what} w(0)"),
    );
    check_exact(
        &bundle,
        1.0,
        &s.points[K - 1],
        stats.last(),
        &format!("{what} w(1)"),
    );
    drop(bundle);

    let ensemble = Ensemble::open(runtime(), &path, EnsembleOptions::default())
        .unwrap_or_else(|e| panic!("{what}: Ensemble::open: {e}"));
    let input = modeconn_runtime::npy::read::<f32>(&s.x_npy).expect("read .npy");
    let runtime_probs = |t: f64| -> Vec<f32> {
        let p = ensemble
            .predict(input.view(), &Sampling::At(vec![t]), false)
            .unwrap_or_else(|e| panic!("{what}: predict at t={t}: {e}"));
        assert_eq!(p.probabilities.shape(), &[BATCH as usize, CLASSES as usize]);
        p.probabilities.iter().copied().collect()
    };
    let mut m = Measured::default();

    // On the grid the runtime's statistics are exactly the recomputed ones.
    let mut first: Option<Vec<f32>> = None;
    let mut spread = 0.0f32;
    for (g, &t) in grid.iter().enumerate() {
        let w = w_at(&s.points, basis, t);
        let params = if has_bn { with_stats(&w, &stats[g]) } else { w };
        let rt = runtime_probs(t);
        let d = max_abs_diff(&rt, &trainer_probs(&s.net, &params, &s.x));
        assert!(
            d <= AGREE,
            "{what}: on the grid, t={t}: runtime and trainer differ by {d:e}"
        );
        m.on_grid = m.on_grid.max(d);
        match &first {
            None => first = Some(rt),
            Some(f) => spread = spread.max(max_abs_diff(f, &rt)),
        }
    }
    // The agreement above means something: the probabilities change along the curve by far
    // more than the tolerance (measured: 0.14 (vgg16) to 0.99 (preresnet47)).
    assert!(
        spread > 500.0 * AGREE,
        "{what}: the probabilities hardly change along the curve ({spread:e}); the comparison \
         would not see a wrong w(t)"
    );

    // Off the grid.
    for &t in off_grid {
        let rt = runtime_probs(t);
        if has_bn {
            // The graph conforms: with the same interpolated statistics, the same answer.
            let w = w_at(&s.points, basis, t);
            let params = with_stats(&w, &interpolated_stats(&grid, &stats, t));
            let d = max_abs_diff(&rt, &trainer_probs(&s.net, &params, &s.x));
            assert!(
                d <= AGREE,
                "{what}: t={t}: runtime and trainer with the same interpolated statistics \
                 differ by {d:e}"
            );
            m.same_stats = m.same_stats.max(d);
        }
        let d = max_abs_diff(&rt, &trainer_probs(&s.net, &s.recomputed(basis, t), &s.x));
        assert!(
            d <= bound,
            "{what}: off the grid, t={t}: runtime (statistics interpolated) and trainer \
             (statistics recomputed at t) differ by {d:e}, above the bound {bound:e}"
        );
        m.off_grid = m.off_grid.max(d);
    }
    eprintln!(
        "{what}: |dp| on the grid {:.1e}; off the grid {:.1e} with the same statistics, \
         {:.1e} against statistics recomputed at t; change along the curve {spread:.2}",
        m.on_grid, m.same_stats, m.off_grid
    );
    m
}

fn check(case: &Case) {
    let started = Instant::now();
    let s = setup(case);
    let bound = if s.net.has_batch_norm() {
        case.off_grid_bound
    } else {
        AGREE
    };
    for basis in [Basis::Bezier, Basis::Polychain] {
        measure(&s, basis, case.grid, case.off_grid, bound);
    }
    eprintln!("{}: {:.1} s", case.arch, started.elapsed().as_secs_f64());
}

// Off-grid bounds. The interpolation error depends on the network, on how much the statistics
// bend between grid points, and on the grid. These curves (random networks with a sharpened
// classifier, a bend from a third random initialisation) are the same in every run (seeded;
// `bn::recompute` is deterministic) and probably harder than curves between trained networks.
// Measured with the default grid of 21 points (vgg16bn: 5, to keep its run time down), worst
// over the off-grid t, bezier and polychain; each bound is 2.4 to 3.3 times the worst:
//
// | network      | grid | bezier | polychain | bound |
// |--------------|------|--------|-----------|-------|
// | preresnet8   | 21   | 1.5e-2 | 2.1e-2    | 5e-2  |
// | wrn10x1      | 21   | 1.6e-2 | 1.9e-2    | 5e-2  |
// | preresnet47  | 21   | 2.3e-1 | 3.6e-1    | 0.85  |
// | vgg16bn      | 5    | 1.0e-1 | 1.7e-1    | 0.4   |
//
// preresnet47 (46 batch norms in a row, random weights) is the hard case: its statistics bend
// so sharply that the error falls only about linearly with the spacing (bezier: 0.68, 0.45,
// 0.23, 0.05, 0.065 with 5, 11, 21, 41, 81 points). With 5 points preresnet8 errs by 0.28
// (bezier) and 0.23 (polychain): see `off_grid_error_shrinks_with_the_grid`.

#[test]
fn mlp() {
    check(&Case {
        arch: "mlp",
        hidden: Some(vec![32, 16]),
        input: vec![1, 8, 8],
        train: 32,
        batch: 16,
        grid: 5,
        off_grid: &OFF_GRID,
        off_grid_bound: AGREE,
    });
}

#[test]
fn convfc() {
    check(&Case {
        arch: "convfc",
        hidden: None,
        input: vec![1, 16, 16],
        train: 32,
        batch: 16,
        grid: 5,
        off_grid: &OFF_GRID,
        off_grid_bound: AGREE,
    });
}

/// VGG-16 needs 32x32 images and has 15M parameters whatever the input: few t values.
#[test]
fn vgg16() {
    check(&Case {
        arch: "vgg16",
        hidden: None,
        input: vec![1, 32, 32],
        train: 8,
        batch: 8,
        grid: 3,
        off_grid: &[0.37, 0.88],
        off_grid_bound: AGREE,
    });
}

#[test]
fn vgg16bn() {
    check(&Case {
        arch: "vgg16bn",
        hidden: None,
        input: vec![1, 32, 32],
        train: 8,
        batch: 8,
        grid: 5,
        off_grid: &[0.37, 0.88],
        off_grid_bound: 0.4,
    });
}

/// preresnet8 on 3x8x8 images with a grid of `grid` points.
fn preresnet8_case(grid: usize, off_grid_bound: f32) -> Case {
    Case {
        arch: "preresnet8",
        hidden: None,
        input: vec![3, 8, 8],
        train: 32,
        batch: 16,
        grid,
        off_grid: &OFF_GRID,
        off_grid_bound,
    }
}

#[test]
fn preresnet8() {
    check(&preresnet8_case(21, 5e-2));
}

/// The smallest pre-activation ResNet with bottleneck blocks.
#[test]
fn preresnet47() {
    check(&Case {
        arch: "preresnet47",
        hidden: None,
        input: vec![3, 8, 8],
        train: 32,
        batch: 16,
        grid: 21,
        off_grid: &OFF_GRID,
        off_grid_bound: 0.85,
    });
}

#[test]
fn wrn10x1() {
    check(&Case {
        arch: "wrn10x1",
        hidden: None,
        input: vec![3, 8, 8],
        train: 32,
        batch: 16,
        grid: 21,
        off_grid: &OFF_GRID,
        off_grid_bound: 5e-2,
    });
}

/// Linear interpolation of smooth statistics errs by O(h²) in the grid spacing h: from 5 to 21
/// points (h from 1/4 to 1/20) the error should fall by up to (20/4)² = 25. Measured on
/// preresnet8: 0.28 → 0.015 (bezier, 19x), 0.23 → 0.021 (polychain, 11x; its kink at the bend,
/// t = 1/2, is a grid point of both grids). Asserted: at least 4x, and the 5-point error far
/// above the agreement tolerance, so that the measurement is not noise.
#[test]
fn off_grid_error_shrinks_with_the_grid() {
    let case = preresnet8_case(5, 1.0);
    let s = setup(&case);
    for basis in [Basis::Bezier, Basis::Polychain] {
        let coarse = measure(&s, basis, 5, &OFF_GRID, 1.0).off_grid;
        let fine = measure(&s, basis, 21, &OFF_GRID, 1.0).off_grid;
        eprintln!(
            "preresnet8 {}: off-grid error {coarse:.2e} with 5 points, {fine:.2e} with 21 ({:.1}x)",
            basis.as_str(),
            coarse / fine
        );
        assert!(coarse > 100.0 * AGREE, "{}: {coarse:e}", basis.as_str());
        assert!(
            fine * 4.0 < coarse,
            "{}: a finer grid should shrink the interpolation error: {coarse:e} with 5 points, \
             {fine:e} with 21",
            basis.as_str()
        );
    }
}
