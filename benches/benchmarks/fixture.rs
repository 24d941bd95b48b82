//! The model the benches run, built in code: a small CNN classifier with batch norm on
//! `[batch, 3, 32, 32]` inputs, written as a Bezier curve bundle (K = 3 control points, batch-norm
//! statistics on a 5-point `bn_grid`) and as a snapshot set of M = 4 members.
//!
//! ```text
//! input [b,3,32,32]
//!   Conv 3->32 3x3 pad 1 · BatchNormalization · Relu · MaxPool 2      -> [b,32,16,16]
//!   Conv 32->64 3x3 pad 1 · BatchNormalization · Relu · MaxPool 2     -> [b,64,8,8]
//!   Conv 64->128 3x3 pad 1 · BatchNormalization · Relu                -> [b,128,8,8]
//!   GlobalAveragePool · Flatten · Gemm 128->10                        -> logits [b,10]
//! ```
//!
//! Weights are pseudo-random but deterministic (SplitMix64 with fixed seeds), scaled like a
//! He-uniform initialisation so activations stay of order one; batch-norm variances are positive.

use std::path::PathBuf;
use std::sync::OnceLock;

use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::build::{Attr, DimSpec, ModelBuilder};
use modeconn_runtime::graph::elem;
use modeconn_runtime::{Bundle, BundleWriter, Device, Member, Runtime, RuntimeOptions};
use ndarray::{ArrayD, IxDyn};

/// Control points of the curve.
pub const CURVE_POINTS: usize = 3;
/// Members of the snapshot set.
pub const SNAPSHOT_MEMBERS: usize = 4;
/// Points of the curve's `bn_grid`.
pub const BN_GRID: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
/// Classes of the classifier.
pub const CLASSES: usize = 10;
/// Name of the data input.
pub const INPUT: &str = "input";
/// Name of the logits output.
pub const OUTPUT: &str = "logits";

/// Channels of the three convolution blocks (input has 3).
const CHANNELS: [usize; 4] = [3, 32, 64, 128];

/// A deterministic generator (SplitMix64): enough for weights and inputs of a benchmark.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.unit()).collect()
    }
}

/// What a parameter of the network is, which decides how its random values are drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    /// A weight with this fan-in (He-uniform).
    Weight(usize),
    /// A bias or batch-norm shift: small values around 0.
    Shift,
    /// A batch-norm scale: around 1.
    Scale,
    /// A batch-norm running mean: small values around 0.
    Mean,
    /// A batch-norm running variance: positive, around 1.
    Var,
}

/// One tensor of the network.
struct Param {
    name: String,
    dims: Vec<usize>,
    kind: ParamKind,
}

impl Param {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }

    fn is_bn_statistic(&self) -> bool {
        matches!(self.kind, ParamKind::Mean | ParamKind::Var)
    }

    fn draw(&self, rng: &mut SplitMix) -> Vec<f32> {
        let n = self.len();
        match self.kind {
            ParamKind::Weight(fan_in) => {
                let a = (6.0 / fan_in as f32).sqrt();
                rng.uniform(n, -a, a)
            }
            ParamKind::Shift => rng.uniform(n, -0.1, 0.1),
            ParamKind::Scale => rng.uniform(n, 0.8, 1.2),
            ParamKind::Mean => rng.uniform(n, -0.2, 0.2),
            ParamKind::Var => rng.uniform(n, 0.5, 1.5),
        }
    }
}

/// Every tensor of the network, in graph order.
fn params() -> Vec<Param> {
    let mut out = Vec::new();
    for block in 1..=3 {
        let (cin, cout) = (CHANNELS[block - 1], CHANNELS[block]);
        let p = |suffix: &str, dims: Vec<usize>, kind| Param {
            name: format!(
                "{}{block}.{suffix}",
                if suffix == "weight" { "conv" } else { "bn" }
            ),
            dims,
            kind,
        };
        out.push(p(
            "weight",
            vec![cout, cin, 3, 3],
            ParamKind::Weight(cin * 9),
        ));
        out.push(p("scale", vec![cout], ParamKind::Scale));
        out.push(p("bias", vec![cout], ParamKind::Shift));
        out.push(p("running_mean", vec![cout], ParamKind::Mean));
        out.push(p("running_var", vec![cout], ParamKind::Var));
    }
    out.push(Param {
        name: "fc.weight".into(),
        dims: vec![CLASSES, CHANNELS[3]],
        kind: ParamKind::Weight(CHANNELS[3]),
    });
    out.push(Param {
        name: "fc.bias".into(),
        dims: vec![CLASSES],
        kind: ParamKind::Shift,
    });
    out
}

/// The ONNX graph (opset 17), with `values` (one per parameter, in [`params`] order) as
/// initializers.
fn graph(params: &[Param], values: &[Vec<f32>]) -> Vec<u8> {
    let mut b = ModelBuilder::new("bench_cnn", 17);
    b.input(
        INPUT,
        elem::FLOAT,
        &[DimSpec::from("batch"), 3.into(), 32.into(), 32.into()],
    );
    for (p, v) in params.iter().zip(values) {
        let dims: Vec<i64> = p.dims.iter().map(|&d| d as i64).collect();
        b.initializer_f32(&p.name, &dims, v);
    }
    let mut x = INPUT.to_string();
    for block in 1..=3 {
        let conv = format!("conv{block}.out");
        let bn = format!("bn{block}.out");
        let relu = format!("relu{block}.out");
        let weight = format!("conv{block}.weight");
        b.node(
            "Conv",
            &[&x, &weight],
            &[&conv],
            &[
                Attr::ints("kernel_shape", &[3, 3]),
                Attr::ints("pads", &[1, 1, 1, 1]),
            ],
        );
        let [scale, bias, mean, var] =
            ["scale", "bias", "running_mean", "running_var"].map(|s| format!("bn{block}.{s}"));
        b.node(
            "BatchNormalization",
            &[&conv, &scale, &bias, &mean, &var],
            &[&bn],
            &[Attr::float("epsilon", 1e-5)],
        );
        b.node("Relu", &[&bn], &[&relu], &[]);
        x = relu;
        if block < 3 {
            let pool = format!("pool{block}.out");
            b.node(
                "MaxPool",
                &[&x],
                &[&pool],
                &[
                    Attr::ints("kernel_shape", &[2, 2]),
                    Attr::ints("strides", &[2, 2]),
                ],
            );
            x = pool;
        }
    }
    b.node("GlobalAveragePool", &[&x], &["gap.out"], &[]);
    b.node(
        "Flatten",
        &["gap.out"],
        &["flat.out"],
        &[Attr::int("axis", 1)],
    );
    b.node(
        "Gemm",
        &["flat.out", "fc.weight", "fc.bias"],
        &[OUTPUT],
        &[Attr::int("transB", 1)],
    );
    b.output(
        OUTPUT,
        elem::FLOAT,
        &["batch".into(), (CLASSES as i64).into()],
    );
    b.build()
}

fn metadata(kind: Kind, points: usize, params: &[Param]) -> Metadata {
    let curve = kind == Kind::Curve;
    Metadata {
        kind,
        basis: curve.then_some(Basis::Bezier),
        points,
        bn_grid: curve.then(|| BN_GRID.to_vec()),
        grid_tensors: if curve {
            params
                .iter()
                .filter(|p| p.is_bn_statistic())
                .map(|p| p.name.clone())
                .collect()
        } else {
            Vec::new()
        },
        input: InputSpec {
            name: INPUT.into(),
            shape: vec![-1, 3, 32, 32],
        },
        output: OutputSpec {
            name: OUTPUT.into(),
            classes: CLASSES,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: None,
        extra: Default::default(),
    }
}

/// Writes a bundle whose tensor `i` holds `stacks[i]` (slices concatenated along a new leading
/// axis of `slices[i]`).
fn write_bundle(
    path: &std::path::Path,
    meta: Metadata,
    params: &[Param],
    stacks: Vec<(usize, Vec<f32>)>,
    graph_values: &[Vec<f32>],
) {
    let mut w = BundleWriter::new(meta, graph(params, graph_values));
    for (p, (slices, data)) in params.iter().zip(stacks) {
        let shape = std::iter::once(slices)
            .chain(p.dims.iter().copied())
            .collect();
        w = w
            .tensor(p.name.clone(), shape, data)
            .expect("bundle tensor");
    }
    w.write(path).expect("writing the bundle");
}

/// The curve: the endpoints are independent draws and the bend is their midpoint plus noise, as
/// after training a curve; batch-norm statistics get an independent draw per grid point.
fn write_curve(path: &std::path::Path, params: &[Param]) {
    let mut rng = SplitMix::new(0x00c0_ffee);
    let mut stacks = Vec::with_capacity(params.len());
    let mut first = Vec::with_capacity(params.len());
    for p in params {
        let (slices, data) = if p.is_bn_statistic() {
            let data: Vec<f32> = (0..BN_GRID.len()).flat_map(|_| p.draw(&mut rng)).collect();
            (BN_GRID.len(), data)
        } else {
            let start = p.draw(&mut rng);
            let end = p.draw(&mut rng);
            let noise = p.draw(&mut rng);
            let bend: Vec<f32> = start
                .iter()
                .zip(&end)
                .zip(&noise)
                .map(|((a, b), n)| 0.5 * (a + b) + 0.5 * n)
                .collect();
            (CURVE_POINTS, [start, bend, end].concat())
        };
        first.push(data[..p.len()].to_vec());
        stacks.push((slices, data));
    }
    let meta = metadata(Kind::Curve, CURVE_POINTS, params);
    write_bundle(path, meta, params, stacks, &first);
}

/// The snapshot set: every member an independent draw of every tensor (its own statistics).
fn write_snapshots(path: &std::path::Path, params: &[Param]) {
    let mut rng = SplitMix::new(0x5eed_f00d);
    let mut stacks = Vec::with_capacity(params.len());
    let mut first = Vec::with_capacity(params.len());
    for p in params {
        let data: Vec<f32> = (0..SNAPSHOT_MEMBERS)
            .flat_map(|_| p.draw(&mut rng))
            .collect();
        first.push(data[..p.len()].to_vec());
        stacks.push((SNAPSHOT_MEMBERS, data));
    }
    let meta = metadata(Kind::Snapshots, SNAPSHOT_MEMBERS, params);
    write_bundle(path, meta, params, stacks, &first);
}

/// One network of the curve, `w(t)` with its interpolated statistics, written as a snapshot set
/// of one member: the Ensemble then runs it from a static (materialised) session, exactly what
/// `Bundle::materialize(Member::T(t))` gives, through the same prediction path as the curve.
fn write_point(path: &std::path::Path, curve: &Bundle, t: f64, params: &[Param]) {
    let weights = curve.weights_at(Member::T(t)).expect("weights at t");
    let mut stacks = Vec::with_capacity(params.len());
    let mut values = Vec::with_capacity(params.len());
    for p in params {
        let (_, _, data) = weights
            .tensors
            .iter()
            .find(|(name, _, _)| *name == p.name)
            .expect("every parameter varies on the curve");
        stacks.push((1, data.clone()));
        values.push(data.clone());
    }
    let meta = metadata(Kind::Snapshots, 1, params);
    write_bundle(path, meta, params, stacks, &values);
}

/// Bundles on disk and the runtime that runs them.
pub struct Fixture {
    pub runtime: Runtime,
    /// The curve bundle.
    pub curve: PathBuf,
    /// The snapshot set.
    pub snapshots: PathBuf,
    /// `w(POINT_T)` of the curve as a one-member snapshot set.
    pub point: PathBuf,
    _dir: tempfile::TempDir,
}

/// The t at which the dynamic and static paths are compared.
pub const POINT_T: f64 = 0.37;

impl Fixture {
    /// The fixture, built once per process.
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(Fixture::build)
    }

    fn build() -> Fixture {
        let runtime = Runtime::new(RuntimeOptions::default().with_device(Device::Cpu))
            .expect("ONNX Runtime (source the modeconn.env written by scripts/setup.sh)");
        let dir = tempfile::tempdir().expect("temporary directory");
        let params = params();
        let curve = dir.path().join("curve.safetensors");
        let snapshots = dir.path().join("snapshots.safetensors");
        let point = dir.path().join("point.safetensors");
        write_curve(&curve, &params);
        write_snapshots(&snapshots, &params);
        let curve_bundle = Bundle::open(&curve).expect("opening the curve");
        write_point(&point, &curve_bundle, POINT_T, &params);
        Fixture {
            runtime,
            curve,
            snapshots,
            point,
            _dir: dir,
        }
    }
}

/// A deterministic input batch `[batch, 3, 32, 32]`, uniform in `[-1, 1)`.
pub fn input(batch: usize) -> ArrayD<f32> {
    let shape = [batch, 3, 32, 32];
    let n = shape.iter().product();
    let data = SplitMix::new(0x1234_5678 + batch as u64).uniform(n, -1.0, 1.0);
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("input shape")
}
