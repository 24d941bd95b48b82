//! Tests of the architectures: sizes, errors, forward modes, ONNX validity, and conformance of
//! the runtime's bundles with the trainer's own forward pass.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use modeconn_runtime::bundle::Kind as BundleKind;
use modeconn_runtime::{
    BundleWriter, Device as OrtDevice, Ensemble, EnsembleOptions, Runtime, RuntimeOptions, Sampling,
};
use tch::{Device, Kind, Tensor};

use super::*;
use crate::Error;

fn cifar(name: &str) -> Net {
    by_name(
        name,
        &ArchOptions::default(),
        &[3, 32, 32],
        10,
        &Normalization::default(),
    )
    .unwrap()
}

fn net(name: &str, options: &ArchOptions, input: &[i64], classes: i64) -> Net {
    let norm = Normalization {
        mean: (0..input[0]).map(|c| 0.4 + 0.05 * c as f32).collect(),
        std: (0..input[0]).map(|c| 0.2 + 0.03 * c as f32).collect(),
    };
    by_name(name, options, input, classes, &norm).unwrap()
}

fn rand(shape: &[i64]) -> Tensor {
    Tensor::f_rand(shape, (Kind::Float, Device::Cpu)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.f_sub(b)
        .unwrap()
        .f_abs()
        .unwrap()
        .f_max()
        .unwrap()
        .double_value(&[])
}

/// Runs a few training-mode batches so that running statistics are not the initial 0 and 1.
fn warm_statistics(net: &Net, params: &Params, batches: usize, batch: i64) {
    let _guard = tch::no_grad_guard();
    let mut shape = vec![batch];
    shape.extend(&net.input);
    for _ in 0..batches {
        // Scaled and shifted, so that statistics move well away from 0 and 1.
        let x = rand(&shape).f_mul_scalar(3.0).unwrap();
        let _ = forward(net, params, &x, Mode::Train).unwrap();
    }
}

#[test]
fn parameter_counts_match_the_reference_models() {
    // Counts of the reference PyTorch models (Garipov et al.'s code) for CIFAR-10, computed
    // with torch 2.11 as sum(p.numel() for p in model.parameters()).
    for (name, count) in [
        ("preresnet8", 77_850),
        ("preresnet20", 272_282),
        ("preresnet56", 590_426),
        ("preresnet110", 1_146_842),
        ("preresnet164", 1_703_258),
        ("wrn10x1", 78_186),
        ("wrn16x4", 2_751_146),
        ("wrn28x10", 36_489_290),
        ("vgg16", 15_245_130),
        ("vgg16bn", 15_253_578),
        ("convfc", 2_422_634),
    ] {
        assert_eq!(cifar(name).parameter_count(), count, "{name}");
    }
    // MLP on 8x8 digits: 64*256+256 + 256*256+256 + 256*10+10.
    let mlp = net("mlp", &ArchOptions::default(), &[1, 8, 8], 10);
    assert_eq!(mlp.parameter_count(), 85_002);
    let small = ArchOptions {
        hidden: vec![32],
        ..ArchOptions::default()
    };
    assert_eq!(
        net("mlp", &small, &[64], 3).parameter_count(),
        64 * 32 + 32 + 32 * 3 + 3
    );
    // ConvFC on 28x28 MNIST: 28 -> 13 -> 6 -> 2, so the first linear layer takes 128*2*2.
    let convfc = net("convfc", &ArchOptions::default(), &[1, 28, 28], 10);
    assert_eq!(convfc.parameter_count(), 1_781_034);
    assert_eq!(convfc.param("fc_part.0.weight").unwrap().shape, [1000, 512]);
    // PreResNet-20 for CIFAR-100 differs only in the last layer.
    let p100 = by_name(
        "preresnet20",
        &ArchOptions::default(),
        &[3, 32, 32],
        100,
        &Normalization::default(),
    )
    .unwrap();
    assert_eq!(p100.parameter_count(), 278_132);
}

#[test]
fn names_follow_pytorch_modules() {
    let p = cifar("preresnet56");
    let names: Vec<&str> = p.params.iter().map(|p| p.name.as_str()).take(19).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "layer1.0.bn1.weight",
            "layer1.0.bn1.bias",
            "layer1.0.bn1.running_mean",
            "layer1.0.bn1.running_var",
            "layer1.0.conv1.weight",
            "layer1.0.bn2.weight",
            "layer1.0.bn2.bias",
            "layer1.0.bn2.running_mean",
            "layer1.0.bn2.running_var",
            "layer1.0.conv2.weight",
            "layer1.0.bn3.weight",
            "layer1.0.bn3.bias",
            "layer1.0.bn3.running_mean",
            "layer1.0.bn3.running_var",
            "layer1.0.conv3.weight",
            "layer1.0.downsample.0.weight",
            "layer1.1.bn1.weight",
            "layer1.1.bn1.bias",
        ]
    );
    assert_eq!(p.param("fc.weight").unwrap().shape, [10, 256]);
    assert_eq!(
        p.param("bn.running_var").unwrap().kind,
        ParamKind::RunningVar
    );
    let w = cifar("wrn28x10");
    assert_eq!(
        w.param("layer1.0.shortcut.0.weight").unwrap().shape,
        [160, 16, 1, 1]
    );
    assert!(w.param("layer1.1.shortcut.0.weight").is_none());
    assert_eq!(w.param("layer3.3.conv2.bias").unwrap().shape, [640]);
    assert_eq!(w.param("linear.weight").unwrap().shape, [10, 640]);
    let v = cifar("vgg16bn");
    assert_eq!(v.param("features.0.weight").unwrap().shape, [64, 3, 3, 3]);
    assert_eq!(v.param("features.1.running_mean").unwrap().shape, [64]);
    assert_eq!(v.param("features.3.weight").unwrap().shape, [64, 64, 3, 3]);
    assert_eq!(
        v.param("features.40.weight").unwrap().shape,
        [512, 512, 3, 3]
    );
    assert_eq!(v.param("features.41.running_var").unwrap().shape, [512]);
    assert_eq!(v.param("classifier.6.weight").unwrap().shape, [10, 512]);
    let v = cifar("vgg16");
    assert_eq!(
        v.param("features.28.weight").unwrap().shape,
        [512, 512, 3, 3]
    );
    assert!(!v.has_batch_norm());
    for n in [&p, &w, &v] {
        assert!(matches!(n.nodes[0].op, Op::Normalize { .. }), "{}", n.arch);
    }
}

#[test]
fn invalid_names_options_and_inputs_are_clear_errors() {
    let opts = ArchOptions::default();
    let id = Normalization::default();
    let err = |name: &str, input: &[i64], opts: &ArchOptions, norm: &Normalization| match by_name(
        name, opts, input, 10, norm,
    ) {
        Err(Error::Arch(msg)) => msg,
        other => panic!("{name} {input:?}: expected an architecture error, got {other:?}"),
    };
    for name in [
        "preresnet21",
        "preresnet44",
        "preresnet2",
        "preresnet",
        "preresnet-8",
        "wrn27x10",
        "wrn28x0",
        "wrn28",
        "wrnx10",
        "resnet18",
        "VGG 16",
        "",
    ] {
        let msg = err(name, &[3, 32, 32], &opts, &id);
        assert!(msg.contains(name), "{msg}");
    }
    assert!(err("preresnet21", &[3, 32, 32], &opts, &id).contains("6n+2"));
    assert!(err("resnet18", &[3, 32, 32], &opts, &id).contains("preresnet{depth}"));
    assert!(err("vgg16", &[3, 28, 28], &opts, &id).contains("32x32"));
    assert!(err("vgg16bn", &[1, 8, 8], &opts, &id).contains("32x32"));
    assert!(err("convfc", &[1, 8, 8], &opts, &id).contains("15x15"));
    assert!(err("preresnet20", &[3, 32], &opts, &id).contains("[channels, height, width]"));
    assert!(err("mlp", &[0, 8], &opts, &id).contains("positive"));
    let zero_hidden = ArchOptions {
        hidden: vec![16, 0],
        ..ArchOptions::default()
    };
    assert!(err("mlp", &[64], &zero_hidden, &id).contains("hidden"));
    let dropout = ArchOptions {
        dropout: Some(0.5),
        ..ArchOptions::default()
    };
    assert!(err("preresnet20", &[3, 32, 32], &dropout, &id).contains("no dropout"));
    let bad = ArchOptions {
        dropout: Some(1.0),
        ..ArchOptions::default()
    };
    assert!(err("wrn28x10", &[3, 32, 32], &bad, &id).contains("[0, 1)"));
    let two = Normalization {
        mean: vec![0.5, 0.5],
        std: vec![0.5, 0.5],
    };
    assert!(err("preresnet20", &[3, 32, 32], &opts, &two).contains("3 input channels"));
    let zero_std = Normalization {
        mean: vec![0.5],
        std: vec![0.0],
    };
    assert!(err("preresnet20", &[3, 32, 32], &opts, &zero_std).contains("positive"));
    // Small inputs work where the architecture allows them.
    for (name, input) in [
        ("preresnet20", [1, 8, 8]),
        ("wrn16x2", [1, 8, 8]),
        ("convfc", [1, 15, 15]),
        ("vgg16", [3, 32, 48]),
    ] {
        by_name(name, &opts, &input, 10, &id).unwrap();
    }
    let v = by_name("vgg16", &opts, &[3, 64, 96], 10, &id).unwrap();
    assert_eq!(
        v.param("classifier.1.weight").unwrap().shape,
        [512, 512 * 2 * 3]
    );
}

#[test]
fn dropout_defaults_follow_the_reference_code() {
    let dropouts = |n: &Net| -> Vec<f64> {
        n.nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Dropout { p, .. } => Some(p),
                _ => None,
            })
            .collect()
    };
    assert_eq!(dropouts(&cifar("vgg16")), [0.5, 0.5]);
    assert!(dropouts(&cifar("wrn16x2")).is_empty());
    let opts = ArchOptions {
        dropout: Some(0.3),
        ..ArchOptions::default()
    };
    let w = by_name(
        "wrn16x2",
        &opts,
        &[3, 32, 32],
        10,
        &Normalization::default(),
    )
    .unwrap();
    assert_eq!(dropouts(&w), [0.3; 6]);
    let opts = ArchOptions {
        dropout: Some(0.0),
        ..ArchOptions::default()
    };
    let v = by_name(
        "vgg16bn",
        &opts,
        &[3, 32, 32],
        10,
        &Normalization::default(),
    )
    .unwrap();
    assert!(dropouts(&v).is_empty());
}

#[test]
fn init_is_deterministic_and_scaled() {
    let n = net("preresnet8", &ArchOptions::default(), &[3, 8, 8], 10);
    let a = init(&n, 7, Device::Cpu).unwrap();
    let b = init(&n, 7, Device::Cpu).unwrap();
    let c = init(&n, 8, Device::Cpu).unwrap();
    check_params(&n, &a).unwrap();
    assert_eq!(a.len(), n.params.len());
    for (name, t) in &a {
        assert_eq!(t.f_kind().unwrap(), Kind::Float);
        assert!(!t.requires_grad());
        assert_eq!(max_abs_diff(t, &b[name]), 0.0, "{name}");
    }
    assert!(max_abs_diff(&a["conv1.weight"], &c["conv1.weight"]) > 0.0);
    // He normal for convolutions: std sqrt(2 / fan_in), fan_in = 64*3*3 for layer3's conv2.
    let w = &a["layer3.0.conv2.weight"];
    let std = w.f_std(true).unwrap().double_value(&[]);
    let want = (2.0f64 / (64.0 * 9.0)).sqrt();
    assert!((std / want - 1.0).abs() < 0.05, "std {std} vs {want}");
    let mean = w.f_mean(None::<Kind>).unwrap().double_value(&[]);
    assert!(mean.abs() < 0.05 * want, "mean {mean}");
    // Linear: uniform in ±1/sqrt(fan_in).
    let bound = 1.0 / 64f64.sqrt();
    for name in ["fc.weight", "fc.bias"] {
        let t = &a[name];
        let max = t.f_abs().unwrap().f_max().unwrap().double_value(&[]);
        assert!(max <= bound && max > 0.5 * bound, "{name}: {max}");
    }
    let ones = |name: &str, v: f64| {
        let t = &a[name];
        let d = t.f_sub_scalar(v).unwrap().f_abs().unwrap().f_max().unwrap();
        assert_eq!(d.double_value(&[]), 0.0, "{name}");
    };
    ones("bn.weight", 1.0);
    ones("bn.bias", 0.0);
    ones("bn.running_mean", 0.0);
    ones("bn.running_var", 1.0);
    // Convolution biases start at 0.
    let v = net("convfc", &ArchOptions::default(), &[1, 16, 16], 10);
    let p = init(&v, 1, Device::Cpu).unwrap();
    let b = p["conv_part.3.bias"]
        .f_abs()
        .unwrap()
        .f_sum(Kind::Float)
        .unwrap();
    assert_eq!(b.double_value(&[]), 0.0);
    assert!(
        p["fc_part.0.bias"]
            .f_abs()
            .unwrap()
            .f_max()
            .unwrap()
            .double_value(&[])
            > 0.0
    );
}

#[test]
fn host_round_trip_keeps_values() {
    let n = net("wrn10x1", &ArchOptions::default(), &[3, 8, 8], 5);
    let p = init(&n, 3, Device::Cpu).unwrap();
    let host = to_host(&p).unwrap();
    assert_eq!(host["conv1.weight"].0, [16, 3, 3, 3]);
    assert_eq!(host["conv1.weight"].1.len(), 16 * 27);
    let q = from_host(&host, Device::Cpu).unwrap();
    for (name, t) in &p {
        assert_eq!(max_abs_diff(t, &q[name]), 0.0, "{name}");
    }
    let mut broken = host.clone();
    broken.get_mut("conv1.weight").unwrap().0 = vec![16, 3, 3, 4];
    assert!(matches!(
        from_host(&broken, Device::Cpu),
        Err(Error::Arch(_))
    ));
    let mut missing = q;
    missing.remove("bn1.running_var");
    let msg = check_params(&n, &missing).unwrap_err().to_string();
    assert!(msg.contains("bn1.running_var"), "{msg}");
}

#[test]
fn forward_gives_logits_for_every_architecture() {
    let small = ArchOptions {
        hidden: vec![16, 8],
        dropout: None,
    };
    for (name, input, batch) in [
        ("mlp", vec![1, 8, 8], 3),
        ("convfc", vec![1, 16, 16], 3),
        ("preresnet8", vec![3, 8, 8], 3),
        ("preresnet47", vec![3, 8, 8], 2),
        ("wrn10x1", vec![3, 8, 8], 3),
        ("vgg16", vec![3, 32, 32], 2),
        ("vgg16bn", vec![3, 32, 32], 2),
    ] {
        let n = net(name, &small, &input, 7);
        let p = init(&n, 0, Device::Cpu).unwrap();
        let mut shape = vec![batch];
        shape.extend(&input);
        let x = rand(&shape);
        let _guard = tch::no_grad_guard();
        for mode in [Mode::Train, Mode::Eval, Mode::Statistics { momentum: 0.5 }] {
            let y = forward(&n, &p, &x, mode).unwrap();
            assert_eq!(y.size(), [batch, 7], "{name} {mode:?}");
            let finite = y.f_isfinite().unwrap().f_all().unwrap().int64_value(&[]);
            assert_eq!(finite, 1, "{name} {mode:?}");
        }
        let wrong = rand(&[batch, 5]);
        assert!(matches!(
            forward(&n, &p, &wrong, Mode::Eval),
            Err(Error::Data(_))
        ));
    }
}

#[test]
fn train_updates_running_statistics_and_eval_does_not() {
    let opts = ArchOptions {
        dropout: Some(0.5),
        ..ArchOptions::default()
    };
    let n = net("wrn10x1", &opts, &[3, 8, 8], 4);
    let p = init(&n, 5, Device::Cpu).unwrap();
    let before = to_host(&p).unwrap();
    let x = rand(&[4, 3, 8, 8]).f_mul_scalar(2.0).unwrap();
    let _guard = tch::no_grad_guard();
    let e1 = forward(&n, &p, &x, Mode::Eval).unwrap();
    let e2 = forward(&n, &p, &x, Mode::Eval).unwrap();
    assert_eq!(max_abs_diff(&e1, &e2), 0.0, "eval is deterministic");
    assert_eq!(to_host(&p).unwrap(), before, "eval changes nothing");
    let _ = forward(&n, &p, &x, Mode::Train).unwrap();
    let after = to_host(&p).unwrap();
    for param in &n.params {
        let changed = after[&param.name] != before[&param.name];
        assert_eq!(changed, param.kind.is_statistic(), "{}", param.name);
    }
    // Momentum 0.1 on the first layer: its input (normalised input through conv1) does not
    // depend on batch norm, so the update can be checked directly.
    let y = {
        let mean = Tensor::f_from_slice(&[0.4f32, 0.45, 0.5])
            .unwrap()
            .f_reshape([1, 3, 1, 1])
            .unwrap();
        let std = Tensor::f_from_slice(&[0.2f32, 0.23, 0.26])
            .unwrap()
            .f_reshape([1, 3, 1, 1])
            .unwrap();
        let xn = x.f_sub(&mean).unwrap().f_div(&std).unwrap();
        xn.f_conv2d(
            &p["conv1.weight"],
            Some(&p["conv1.bias"]),
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        )
        .unwrap()
    };
    let batch_mean = y
        .f_mean_dim([0i64, 2, 3].as_slice(), false, None::<Kind>)
        .unwrap();
    let rm = &p["layer1.0.bn1.running_mean"];
    let want = batch_mean.f_mul_scalar(0.1).unwrap();
    assert!(max_abs_diff(rm, &want) < 1e-5);
    // Dropout is active in training only.
    let t1 = forward(&n, &p, &x, Mode::Train).unwrap();
    let t2 = forward(&n, &p, &x, Mode::Train).unwrap();
    assert!(max_abs_diff(&t1, &t2) > 0.0);
    let s1 = {
        let q = from_host(&before, Device::Cpu).unwrap();
        forward(&n, &q, &x, Mode::Statistics { momentum: 1.0 }).unwrap()
    };
    let s2 = {
        let q = from_host(&before, Device::Cpu).unwrap();
        forward(&n, &q, &x, Mode::Statistics { momentum: 1.0 }).unwrap()
    };
    assert_eq!(max_abs_diff(&s1, &s2), 0.0, "no dropout in statistics mode");
}

#[test]
fn statistics_mode_averages_batch_statistics() {
    let n = net("preresnet8", &ArchOptions::default(), &[3, 8, 8], 4);
    let p0 = to_host(&init(&n, 11, Device::Cpu).unwrap()).unwrap();
    let batches: Vec<Tensor> = (0..4)
        .map(|i| {
            rand(&[3 + i, 3, 8, 8])
                .f_mul_scalar(1.0 + i as f64)
                .unwrap()
        })
        .collect();
    let _guard = tch::no_grad_guard();
    // Each batch's own statistics: momentum 1 replaces the running values.
    let per_batch: Vec<HostParams> = batches
        .iter()
        .map(|x| {
            let q = from_host(&p0, Device::Cpu).unwrap();
            let _ = forward(&n, &q, x, Mode::Statistics { momentum: 1.0 }).unwrap();
            to_host(&q).unwrap()
        })
        .collect();
    let q = from_host(&p0, Device::Cpu).unwrap();
    for (i, x) in batches.iter().enumerate() {
        let momentum = 1.0 / (i as f64 + 1.0);
        let _ = forward(&n, &q, x, Mode::Statistics { momentum }).unwrap();
    }
    let cumulative = to_host(&q).unwrap();
    let mut checked = 0;
    for name in n.statistics() {
        let got = &cumulative[name].1;
        for (j, g) in got.iter().enumerate() {
            let mean: f32 =
                per_batch.iter().map(|h| h[name].1[j]).sum::<f32>() / per_batch.len() as f32;
            assert!(
                (g - mean).abs() <= 1e-4 * (1.0 + mean.abs()),
                "{name}[{j}]: {g} vs {mean}"
            );
            checked += 1;
        }
    }
    assert!(checked > 100);
    // Trained parameters are untouched.
    assert_eq!(cumulative["conv1.weight"], p0["conv1.weight"]);
}

#[test]
fn forward_works_with_computed_parameters() {
    // w = (a + b) / 2 with a, b leaves that require grad: gradients reach both.
    let n = net("preresnet8", &ArchOptions::default(), &[3, 8, 8], 4);
    let a = init(&n, 1, Device::Cpu).unwrap();
    let b = init(&n, 2, Device::Cpu).unwrap();
    let mut leaves = Vec::new();
    let mut mid = Params::new();
    for param in &n.params {
        if param.kind.is_statistic() {
            mid.insert(param.name.clone(), a[&param.name].f_detach().unwrap());
            continue;
        }
        let la = a[&param.name].f_detach().unwrap().set_requires_grad(true);
        let lb = b[&param.name].f_detach().unwrap().set_requires_grad(true);
        let w = la.f_add(&lb).unwrap().f_mul_scalar(0.5).unwrap();
        mid.insert(param.name.clone(), w);
        leaves.push((la, lb));
    }
    let x = rand(&[4, 3, 8, 8]);
    let y = forward(&n, &mid, &x, Mode::Train).unwrap();
    let loss = y.cross_entropy_for_logits(&Tensor::f_from_slice(&[0i64, 1, 2, 3]).unwrap());
    loss.backward();
    for (la, lb) in &leaves {
        let ga = la.grad();
        let gb = lb.grad();
        assert!(ga.defined() && gb.defined());
        assert_eq!(max_abs_diff(&ga, &gb), 0.0);
    }
    let g = leaves[0]
        .0
        .grad()
        .f_abs()
        .unwrap()
        .f_sum(Kind::Float)
        .unwrap();
    assert!(g.double_value(&[]) > 0.0);
}

/// Runs the ONNX checker (with full shape inference) on model files; fails with a clear
/// message when `MODECONN_PYTHON` is not set.
fn onnx_check(paths: &[&Path]) {
    let python = std::env::var("MODECONN_PYTHON").unwrap_or_else(|_| {
        panic!(
            "MODECONN_PYTHON is not set: source ~/.cache/modeconn/py-*/modeconn.env (written by \
             scripts/setup.sh) to name a Python with the `onnx` package"
        )
    });
    let script = "import sys, onnx\nfor p in sys.argv[1:]:\n    m = onnx.load(p)\n    \
                  onnx.checker.check_model(m, full_check=True)\n    print('ok', p)\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "onnx.checker rejected a graph:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn onnx_graphs_pass_the_checker() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, input) in [
        ("mlp", vec![1, 8, 8]),
        ("mlp", vec![64]),
        ("convfc", vec![3, 32, 32]),
        ("vgg16", vec![3, 32, 32]),
        ("vgg16bn", vec![3, 32, 32]),
        ("preresnet20", vec![3, 32, 32]),
        ("preresnet47", vec![3, 32, 32]),
        ("wrn16x2", vec![3, 32, 32]),
    ] {
        let opts = ArchOptions {
            dropout: name.starts_with("wrn").then_some(0.3),
            ..ArchOptions::default()
        };
        let n = net(name, &opts, &input, 10);
        let bytes = to_onnx(&n).unwrap();
        let model = modeconn_runtime::graph::OnnxModel::parse(&bytes).unwrap();
        assert_eq!(model.opset(), Some(OPSET));
        assert_eq!(model.data_inputs().len(), n.params.len() + 1);
        assert_eq!(model.data_inputs()[0].name, INPUT);
        assert_eq!(model.graph_outputs()[0].name, OUTPUT);
        let path = dir.path().join(format!("{name}{}.onnx", input.len()));
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    onnx_check(&refs);
}

#[test]
fn bundle_metadata_describes_the_network() {
    let n = cifar("preresnet8");
    let m = bundle_metadata(
        &n,
        BundleKind::Curve,
        Some(modeconn_runtime::curve::Basis::Bezier),
        3,
        Some(vec![0.0, 0.5, 1.0]),
    );
    assert_eq!(m.input.name, "input");
    assert_eq!(m.input.shape, [-1, 3, 32, 32]);
    assert_eq!(m.output.name, "logits");
    assert_eq!(m.output.classes, 10);
    assert_eq!(m.grid_tensors.len(), n.statistics().count());
    assert!(m.grid_tensors.contains(&"bn.running_mean".to_string()));
    assert_eq!(m.provenance.as_ref().unwrap()["arch"], "preresnet8");
    let s = bundle_metadata(&cifar("vgg16"), BundleKind::Snapshots, None, 2, None);
    assert!(s.bn_grid.is_none() && s.grid_tensors.is_empty() && s.basis.is_none());
}

/// Writes a raw `.npy` (format 1.0, little-endian f32, C order) holding `t`.
fn write_npy(path: &Path, t: &Tensor) {
    let shape = t.size();
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for v in tensor_data(t).unwrap() {
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

/// A network with the operations the architectures do not use: average pooling and batch norm
/// over features (`[N, C]`).
fn other_ops_net() -> Net {
    let mut b = NetBuilder::new("custom", &[2, 6, 6], 6);
    let x = b.input();
    let x = b.normalize(&x, &[0.5, 0.25], &[0.5, 2.0]);
    let x = b.conv("conv", &x, 2, 4, 3, 2, 1, true);
    let x = b.avg_pool(&x, 2, 1);
    let x = b.flatten(&x);
    let x = b.linear("fc1", &x, 4 * 2 * 2, 8);
    let x = b.batch_norm("bn", &x, 8);
    let x = b.relu(&x);
    b.linear("fc2", &x, 8, 6);
    let n = b.finish();
    infer_shapes(&n).unwrap();
    n
}

/// Single-network conformance: a one-member snapshot bundle run by the runtime gives the
/// trainer's evaluation-mode probabilities.
#[test]
fn runtime_matches_trainer_forward_for_every_architecture() {
    let runtime = Runtime::new(RuntimeOptions::default().with_device(OrtDevice::Cpu)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let small = ArchOptions {
        hidden: vec![32, 16],
        dropout: None,
    };
    let wrn_dropout = ArchOptions {
        dropout: Some(0.3),
        ..ArchOptions::default()
    };
    let mut nets: Vec<(Net, i64)> = [
        ("mlp", &small, vec![1, 8, 8], 5),
        ("convfc", &small, vec![3, 16, 16], 3),
        ("preresnet8", &small, vec![3, 8, 8], 4),
        ("preresnet47", &small, vec![3, 8, 8], 3),
        ("wrn10x1", &wrn_dropout, vec![3, 8, 8], 4),
        ("vgg16", &small, vec![3, 32, 32], 2),
        ("vgg16bn", &small, vec![3, 32, 32], 2),
    ]
    .into_iter()
    .map(|(name, opts, input, batch)| (net(name, opts, &input, 6), batch))
    .collect();
    nets.push((other_ops_net(), 4));
    for (n, batch) in nets {
        let name = n.arch.as_str();
        let input = n.input.clone();
        let p = init(&n, 42, Device::Cpu).unwrap();
        warm_statistics(&n, &p, 2, 4);
        if n.has_batch_norm() {
            let rv = &p[n.statistics().nth(1).unwrap()];
            let off = rv
                .f_sub_scalar(1.0)
                .unwrap()
                .f_abs()
                .unwrap()
                .f_max()
                .unwrap();
            assert!(
                off.double_value(&[]) > 1e-3,
                "{name}: statistics did not move"
            );
        }
        let meta = bundle_metadata(&n, BundleKind::Snapshots, None, 1, None);
        let graph = to_onnx(&n).unwrap();
        let mut writer = BundleWriter::new(meta, graph);
        for (pname, (shape, data)) in to_host(&p).unwrap() {
            let shape: Vec<usize> = std::iter::once(1)
                .chain(shape.iter().map(|&d| d as usize))
                .collect();
            writer = writer.tensor(pname, shape, data).unwrap();
        }
        let path = dir.path().join(format!("{name}.safetensors"));
        writer.write(&path).unwrap();

        let mut shape = vec![batch];
        shape.extend(&input);
        let x = rand(&shape).f_mul_scalar(2.0).unwrap();
        let want = {
            let _guard = tch::no_grad_guard();
            forward(&n, &p, &x, Mode::Eval)
                .unwrap()
                .f_softmax(-1, Kind::Float)
                .unwrap()
        };
        let want = tensor_data(&want).unwrap();
        let npy = dir.path().join(format!("{name}.npy"));
        write_npy(&npy, &x);
        let input_array = modeconn_runtime::npy::read::<f32>(&npy).unwrap();
        let ensemble = Ensemble::open(&runtime, &path, EnsembleOptions::default()).unwrap();
        let got = ensemble
            .predict(input_array.view(), &Sampling::AllMembers, false)
            .unwrap();
        assert_eq!(got.probabilities.shape(), [batch as usize, 6]);
        let got: Vec<f32> = got.probabilities.iter().copied().collect();
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-4, "{name}: runtime and trainer differ by {diff}");
    }
}
