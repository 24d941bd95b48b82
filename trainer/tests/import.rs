//! The ONNX import: torchvision's classification models and networks written in PyTorch here,
//! exported as the README says, run by libtorch after import equal ONNX Runtime on the same
//! graph; what cannot be imported is refused with one line naming it.

use std::path::Path;
use std::process::Command;

use modeconn_runtime::graph::OnnxModel;
use modeconn_runtime::graph::build::{DimSpec, ModelBuilder};
use modeconn_runtime::graph::elem;
use modeconn_trainer::arch::{Mode, forward, import};
use tch::{Device, Tensor};

fn python() -> String {
    std::env::var("MODECONN_PYTHON").unwrap_or_else(|_| {
        panic!(
            "MODECONN_PYTHON is not set: source ~/.cache/modeconn/py-*/modeconn.env (written by \
             scripts/setup.sh)"
        )
    })
}

/// Exports the cases with the Python helper into `dir`.
fn export(dir: &Path, cases: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/import_cases.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(dir)
        .args(cases)
        .output()
        .expect("run the Python helper");
    assert!(
        out.status.success(),
        "import_cases.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn npy(path: &Path) -> (Vec<i64>, Vec<f32>) {
    let a = modeconn_runtime::npy::read::<f32>(path).expect("read .npy");
    let shape = a.shape().iter().map(|&d| d as i64).collect();
    (shape, a.iter().copied().collect())
}

/// Imports `dir/name.onnx`, runs it in libtorch on the saved input and returns the largest
/// difference from ONNX Runtime's output and the largest magnitude of that output.
fn compare(dir: &Path, name: &str) -> (f64, f64) {
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).expect("the exported graph");
    let graph = OnnxModel::parse(&bytes).expect("parse the graph");
    let net = import::import(&graph, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let params = import::initializer_params(&graph, &net, Device::Cpu).expect("initializers");
    let (xs, xv) = npy(&dir.join(format!("{name}.x.npy")));
    let (ys, yv) = npy(&dir.join(format!("{name}.y.npy")));
    let x = Tensor::from_slice(&xv).reshape(xs.as_slice());
    let y = tch::no_grad(|| forward(&net, &params, &x, Mode::Eval))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(y.size(), ys, "{name}: output shape");
    assert_eq!(net.classes, ys[1], "{name}: classes");
    let got = Vec::<f32>::try_from(&y.reshape([-1])).expect("logits");
    let diff = got
        .iter()
        .zip(&yv)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let scale = yv.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
    (diff, scale)
}

#[test]
fn imported_networks_run_in_libtorch_as_onnx_runtime_runs_them() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let cases = [
        "resnet18",
        "vgg11_bn",
        "mobilenet_v2",
        "densenet121",
        "efficientnet_b0",
        "gadgets",
        "mixer",
    ];
    export(dir.path(), &cases);
    for name in cases {
        let (diff, scale) = compare(dir.path(), name);
        eprintln!("{name}: max |libtorch - onnxruntime| = {diff:.3e} (outputs up to {scale:.3})");
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{name}: libtorch and ONNX Runtime differ by {diff:e} (outputs up to {scale})"
        );
    }
}

/// A one-node classifier graph of `op` on input `x` `[batch, 4]`.
fn tiny(op: &str, batch: DimSpec) -> OnnxModel {
    let mut b = ModelBuilder::new("tiny", 17);
    b.input("x", elem::FLOAT, &[batch, DimSpec::Fixed(4)]);
    b.initializer_f32("w", &[3, 4], &[0.5; 12]);
    b.node(
        "Gemm",
        &["x", "w"],
        &["h"],
        &[modeconn_runtime::graph::build::Attr::int("transB", 1)],
    );
    b.node(op, &["h"], &["y"], &[]);
    b.output(
        "y",
        elem::FLOAT,
        &[DimSpec::from("batch"), DimSpec::Fixed(3)],
    );
    OnnxModel::parse(&b.build()).expect("parse the graph")
}

#[test]
fn what_cannot_be_imported_is_one_line_naming_it() {
    let err = import::import(&tiny("Einsum", DimSpec::from("batch")), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the operator `Einsum`") && err.contains("(Einsum node `"),
        "{err}"
    );
    assert!(err.contains("dynamo=True, optimize=False"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let err = import::import(&tiny("Relu", DimSpec::Fixed(1)), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fixed batch size of 1") && err.contains("dynamic_shapes"),
        "{err}"
    );

    // The supported graph imports, and its parameter is the initializer.
    let net = import::import(&tiny("Relu", DimSpec::from("batch")), &[]).expect("import");
    assert_eq!(net.params.len(), 1);
    assert_eq!(net.params[0].name, "w");
    assert_eq!((net.input.as_slice(), net.classes), ([4].as_slice(), 3));
}

/// The trainer's own architectures, written as ONNX and imported again, compute what they
/// computed: the same logits in evaluation, and in training (without dropout, which the graphs
/// leave out) the same logits, gradients and running statistics.
#[test]
fn the_trainers_own_graphs_import_to_the_same_network() {
    use modeconn_trainer::arch::{ArchOptions, Normalization, by_name, init, to_onnx};
    for (name, input) in [
        ("mlp", vec![1, 8, 8]),
        ("convfc", vec![3, 16, 16]),
        ("vgg16bn", vec![3, 32, 32]),
        ("preresnet20", vec![3, 16, 16]),
        ("wrn16x2", vec![3, 16, 16]),
    ] {
        let norm = Normalization {
            mean: (0..input[0]).map(|c| 0.4 + 0.05 * c as f32).collect(),
            std: (0..input[0]).map(|c| 0.2 + 0.03 * c as f32).collect(),
        };
        let zoo = by_name(name, &ArchOptions::default(), &input, 10, &norm).expect("architecture");
        let graph = OnnxModel::parse(&to_onnx(&zoo).expect("graph")).expect("parse");
        let shapes: Vec<(String, Vec<i64>)> = zoo
            .params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let imported = import::import(&graph, &shapes).expect("import");
        assert_eq!(imported.input, zoo.input, "{name}");
        let kinds = |n: &modeconn_trainer::arch::Net| -> Vec<_> {
            n.params.iter().map(|p| (p.name.clone(), p.kind)).collect()
        };
        assert_eq!(kinds(&imported), kinds(&zoo), "{name}: parameter kinds");

        let run = |net: &modeconn_trainer::arch::Net, mode: Mode| {
            let mut params = init(&zoo, 7, Device::Cpu).expect("init");
            for (n, t) in params.iter_mut() {
                if !zoo.param(n).is_some_and(|p| p.kind.is_statistic()) {
                    *t = t.set_requires_grad(true);
                }
            }
            tch::manual_seed(3);
            let mut shape = vec![4i64];
            shape.extend(&input);
            let x = Tensor::rand(shape.as_slice(), (tch::Kind::Float, Device::Cpu));
            let y = forward(net, &params, &x, mode).expect("forward");
            let loss = y.square().mean(tch::Kind::Float);
            loss.backward();
            let grads: Vec<Tensor> = params
                .values()
                .map(|t| {
                    if t.requires_grad() {
                        t.grad()
                    } else {
                        t.detach().copy()
                    }
                })
                .collect();
            (y.detach(), grads)
        };
        // Dropout is exported as the identity, so training is compared where there is none.
        let dropout = zoo
            .nodes
            .iter()
            .any(|n| matches!(n.op, modeconn_trainer::arch::Op::Dropout { p, .. } if p > 0.0));
        let modes: &[Mode] = if dropout {
            &[Mode::Eval]
        } else {
            &[Mode::Eval, Mode::Train]
        };
        for &mode in modes {
            let (ya, ga) = run(&zoo, mode);
            let (yb, gb) = run(&imported, mode);
            let d = (ya - yb).abs().max().double_value(&[]);
            assert!(d <= 1e-6, "{name} {mode:?}: logits differ by {d}");
            for (a, b) in ga.iter().zip(&gb) {
                let d = (a - b).abs().max().double_value(&[]);
                assert!(
                    d <= 1e-5,
                    "{name} {mode:?}: gradients or statistics differ by {d}"
                );
            }
        }
    }
}

/// `Split`, which PyTorch's exporter writes as `SplitToSequence`: by sizes given as an input,
/// and into equal pieces by its outputs' count.
#[test]
fn split_gives_its_pieces() {
    use modeconn_runtime::graph::build::Attr;
    let mut b = ModelBuilder::new("split", 18);
    b.input(
        "x",
        elem::FLOAT,
        &[DimSpec::from("batch"), DimSpec::Fixed(4)],
    );
    b.initializer_i64("sizes", &[2], &[1, 3]);
    b.node(
        "Split",
        &["x", "sizes"],
        &["a", "b"],
        &[Attr::int("axis", 1)],
    );
    b.node(
        "Split",
        &["x"],
        &["c", "d"],
        &[Attr::int("axis", -1), Attr::int("num_outputs", 2)],
    );
    b.node(
        "Concat",
        &["b", "a", "d", "c"],
        &["y"],
        &[Attr::int("axis", 1)],
    );
    b.output(
        "y",
        elem::FLOAT,
        &[DimSpec::from("batch"), DimSpec::Fixed(8)],
    );
    let graph = OnnxModel::parse(&b.build()).expect("parse the graph");
    let net = import::import(&graph, &[]).expect("import");
    assert!(net.params.is_empty());
    let x = Tensor::from_slice(&[0f32, 1., 2., 3., 10., 11., 12., 13.]).reshape([2, 4]);
    let y = forward(&net, &Default::default(), &x, Mode::Eval).expect("forward");
    let got = Vec::<f32>::try_from(&y.reshape([-1])).expect("values");
    assert_eq!(
        got,
        [
            1., 2., 3., 0., 2., 3., 0., 1., 11., 12., 13., 10., 12., 13., 10., 11.
        ]
    );
}

/// Shapes an operator cannot take are errors naming the node, never a panic.
#[test]
fn shapes_an_operator_cannot_take_are_errors() {
    let mut b = ModelBuilder::new("bad_conv", 18);
    b.input(
        "x",
        elem::FLOAT,
        &[DimSpec::from("batch"), DimSpec::Fixed(4)],
    );
    b.initializer_f32("w", &[4], &[1.0; 4]);
    b.node("Conv", &["x", "w"], &["y"], &[]);
    b.output(
        "y",
        elem::FLOAT,
        &[DimSpec::from("batch"), DimSpec::Fixed(4)],
    );
    let graph = OnnxModel::parse(&b.build()).expect("parse the graph");
    let net = import::import(&graph, &[]).expect("import");
    let params = import::initializer_params(&graph, &net, Device::Cpu).expect("initializers");
    let x = Tensor::zeros([2, 4], (tch::Kind::Float, Device::Cpu));
    let err = forward(&net, &params, &x, Mode::Eval).expect_err("a 1-D convolution weight");
    let text = err.to_string();
    assert!(
        text.contains("Conv node") && text.contains("rank 1"),
        "{text}"
    );
}
