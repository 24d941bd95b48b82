//! Parity with the reference implementation (dnn-mode-connectivity) where modeconn follows it
//! (docs/fidelity.md): the learning-rate schedule of its train.py, the initialisation of its
//! models, what PreResNet's projection shortcut reads, what the curve's L2 term covers, and
//! FGE continuing the momentum of the training checkpoint as its fge.py does.

use modeconn_runtime::Bundle;
use modeconn_trainer::arch::{ArchOptions, Net, Normalization, Op, ParamKind, by_name, init};
use modeconn_trainer::job::{Job, TrainJob, TrainingOptions};
use tch::Device;

/// The reference's `learning_rate_schedule(base_lr, epoch, total_epochs)`, for its epochs
/// 1, ..., E, written out here rather than taken from the trainer.
fn reference(base: f64, epoch: usize, total: usize) -> f64 {
    let alpha = epoch as f64 / total as f64;
    let factor = if alpha <= 0.5 {
        1.0
    } else if alpha <= 0.9 {
        1.0 - (alpha - 0.5) / 0.4 * 0.99
    } else {
        0.01
    };
    factor * base
}

#[test]
fn each_epochs_rate_is_the_reference_schedules() {
    for epochs in [10usize, 7] {
        let dir = tempfile::tempdir().expect("temporary folder");
        let out = dir.path().join("a.safetensors");
        let job = train_job(&out, epochs, 1);
        modeconn_trainer::run::run(&job, &mut |_| {}).expect("train");
        let bundle = Bundle::open(&out).expect("bundle");
        let history = bundle.metadata().provenance.as_ref().expect("provenance")["history"].clone();
        let rates: Vec<f64> = history
            .as_array()
            .expect("history rows")
            .iter()
            .map(|row| row["lr"].as_f64().expect("lr"))
            .collect();
        let expected: Vec<f64> = (1..=epochs).map(|e| reference(0.05, e, epochs)).collect();
        assert_eq!(rates.len(), epochs);
        for (e, (got, want)) in rates.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() < 1e-12,
                "E = {epochs}, epoch {}: {got} vs {want}",
                e + 1
            );
        }
    }
}

fn net(name: &str) -> Net {
    let norm = Normalization {
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    by_name(name, &ArchOptions::default(), &[3, 32, 32], 10, &norm).expect("architecture")
}

/// Standard deviation of a tensor's values.
fn std(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[test]
fn convolutions_start_as_the_reference_models_start() {
    for (name, layer) in [
        ("convfc", "conv_part.0.weight"),
        ("vgg16", "layer_blocks.1.0.weight"),
        ("preresnet20", "layer2.0.conv1.weight"),
        ("wrn16x2", "layer2.0.conv1.weight"),
    ] {
        let n = net(name);
        let p = n
            .param(layer)
            .or_else(|| {
                n.params
                    .iter()
                    .find(|p| p.kind == ParamKind::Weight && p.shape.len() == 4)
            })
            .unwrap_or_else(|| panic!("{name}: no convolution weight"));
        let params = init(&n, 3, Device::Cpu).expect("init");
        let values = Vec::<f32>::try_from(&params[&p.name].reshape([-1])).expect("values");
        let (c_out, c_in, k) = (p.shape[0] as f64, p.shape[1] as f64, p.shape[2] as f64);
        // The reference: normal(0, sqrt(2 / (k·k·C_out))); WRN is left to PyTorch's default,
        // uniform in ±1/sqrt(C_in·k·k), whose deviation is that bound over sqrt(3).
        let expected = if name.starts_with("wrn") {
            1.0 / (c_in * k * k).sqrt() / 3f64.sqrt()
        } else {
            (2.0 / (k * k * c_out)).sqrt()
        };
        let got = std(&values);
        assert!(
            (got / expected - 1.0).abs() < 0.05,
            "{name} {}: standard deviation {got:.5}, the reference's {expected:.5}",
            p.name
        );
        if name.starts_with("wrn") {
            let bound = 1.0 / (c_in * k * k).sqrt();
            assert!(values.iter().all(|&v| f64::from(v).abs() <= bound));
        }
    }
}

#[test]
fn preresnets_projection_reads_the_blocks_raw_input() {
    let n = net("preresnet20");
    let producer = |value: &str| {
        n.nodes
            .iter()
            .find(|node| node.output == value)
            .map(|node| &node.op)
    };
    let mut projections = 0;
    for node in &n.nodes {
        if let Op::Conv { x, weight, .. } = &node.op
            && weight.contains("downsample")
        {
            projections += 1;
            // The block's input is the previous block's sum, not its batch norm and ReLU.
            assert!(
                matches!(producer(x), Some(Op::Add { .. })),
                "{weight} reads `{x}`, made by {:?}",
                producer(x)
            );
        }
    }
    assert_eq!(
        projections, 2,
        "PreResNet-20 projects at the start of stages 2 and 3"
    );
}

#[test]
fn the_curves_l2_term_covers_every_trained_parameter() {
    let n = net("preresnet20");
    let covered = modeconn_trainer::curve::regularized(&n);
    for p in &n.params {
        assert_eq!(
            covered.contains(&p.name),
            !p.kind.is_statistic(),
            "{} ({:?})",
            p.name,
            p.kind
        );
    }
    assert!(covered.iter().any(|c| c == "layer1.0.bn1.weight"));
}

fn train_job(out: &std::path::Path, epochs: usize, seed: u64) -> Job {
    Job::Train(TrainJob {
        arch: Some("mlp".into()),
        onnx: None,
        init: None,
        hidden: Some(vec![8]),
        training: options(epochs, seed),
        out: out.to_path_buf(),
    })
}

fn options(epochs: usize, seed: u64) -> TrainingOptions {
    TrainingOptions {
        data: "digits".into(),
        epochs,
        lr: 0.05,
        wd: 5e-4,
        momentum: 0.9,
        batch_size: 64,
        seed,
        device: modeconn_trainer::job::Device::Cpu,
        held_out: None,
        limit: Some(128),
        augment: None,
        checkpoint: None,
        resume: false,
    }
}

fn fge_job(init: &std::path::Path, out: &std::path::Path, fresh: bool) -> Job {
    Job::Fge(modeconn_trainer::job::FgeJob {
        init: init.to_path_buf(),
        onnx: None,
        init_member: None,
        momentum_from: None,
        fresh_momentum: fresh,
        running_statistics: false,
        snapshot_at_epoch_end: false,
        cycle: 2,
        lr1: 0.05,
        lr2: 0.005,
        training: options(1, 1),
        out: out.to_path_buf(),
    })
}

#[test]
fn fge_continues_the_momentum_of_the_training_checkpoint() {
    use modeconn_trainer::job::Report;
    let dir = tempfile::tempdir().expect("temporary folder");
    let a = dir.path().join("a.safetensors");
    modeconn_trainer::run::run(&train_job(&a, 2, 1), &mut |_| {}).expect("train");
    // `train` keeps its last checkpoint, with the momentum.
    let ckpt = modeconn_trainer::checkpoint::default_path(&a);
    let saved = modeconn_trainer::checkpoint::load(&ckpt, Device::Cpu)
        .expect("load")
        .expect("train keeps its checkpoint");
    assert!(saved.tensors.keys().any(|k| k.starts_with("momentum/")));

    let run = |out: &str, fresh: bool| {
        let out = dir.path().join(out);
        match modeconn_trainer::run::run(&fge_job(&a, &out, fresh), &mut |_| {}).expect("fge") {
            Report::Fge(r) => (r, Bundle::open(&out).expect("bundle")),
            other => panic!("{other:?}"),
        }
    };
    let (continued, with_momentum) = run("continued.safetensors", false);
    assert_eq!(continued.momentum_from.as_deref(), Some(ckpt.as_path()));
    let (fresh, without) = run("fresh.safetensors", true);
    assert_eq!(fresh.momentum_from, None);
    // The first steps differ by the carried momentum, so the members do.
    let name = &with_momentum.tensors()[0].name;
    let (x, y) = (
        with_momentum.data(with_momentum.tensor(name).expect("tensor")),
        without.data(without.tensor(name).expect("tensor")),
    );
    assert_ne!(x, y, "continued and fresh momentum gave the same member");

    // A checkpoint of another network beside the bundle is refused, not used.
    let b = dir.path().join("b.safetensors");
    modeconn_trainer::run::run(&train_job(&b, 2, 2), &mut |_| {}).expect("train b");
    std::fs::copy(modeconn_trainer::checkpoint::default_path(&b), &ckpt).expect("copy");
    let err = modeconn_trainer::run::run(
        &fge_job(&a, &dir.path().join("x.safetensors"), false),
        &mut |_| {},
    )
    .expect_err("a foreign checkpoint");
    assert!(
        err.to_string()
            .contains("is not the training checkpoint of"),
        "{err}"
    );
}

#[test]
fn fge_keeps_the_running_statistics_when_asked() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let a = dir.path().join("a.safetensors");
    let mut job = train_job(&a, 1, 1);
    if let Job::Train(t) = &mut job {
        t.arch = Some("preresnet8".into());
        t.hidden = None;
    }
    modeconn_trainer::run::run(&job, &mut |_| {}).expect("train");
    let run = |out: &str, running: bool| {
        let out = dir.path().join(out);
        let mut job = fge_job(&a, &out, true);
        if let Job::Fge(f) = &mut job {
            f.running_statistics = running;
        }
        modeconn_trainer::run::run(&job, &mut |_| {}).expect("fge");
        Bundle::open(&out).expect("bundle")
    };
    let (recomputed, running) = (run("r.safetensors", false), run("k.safetensors", true));
    let values = |b: &Bundle, name: &str| b.data(b.tensor(name).expect("tensor")).to_vec();
    // The same weights (the same seed and steps), other statistics.
    assert_eq!(
        values(&recomputed, "conv1.weight"),
        values(&running, "conv1.weight")
    );
    assert_ne!(
        values(&recomputed, "layer1.0.bn1.running_mean"),
        values(&running, "layer1.0.bn1.running_mean")
    );
}

#[test]
fn fge_takes_the_references_snapshots_when_asked() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let a = dir.path().join("a.safetensors");
    modeconn_trainer::run::run(&train_job(&a, 1, 1), &mut |_| {}).expect("train");
    let run = |out: &str, cycle: usize, epoch_end: bool| {
        let out = dir.path().join(out);
        let mut job = fge_job(&a, &out, true);
        if let Job::Fge(f) = &mut job {
            f.cycle = cycle;
            f.training.epochs = 3;
            f.snapshot_at_epoch_end = epoch_end;
        }
        modeconn_trainer::run::run(&job, &mut |_| {}).expect("fge");
        let b = Bundle::open(&out).expect("bundle");
        let name = b.tensors()[0].name.clone();
        (
            b.metadata().points,
            b.data(b.tensor(&name).expect("tensor")).to_vec(),
        )
    };
    // An even cycle: the end of epoch cycle/2 is the lowest rate, the same snapshots.
    assert_eq!(
        run("p2.safetensors", 2, false),
        run("r2.safetensors", 2, true)
    );
    // An odd cycle: the reference's snapshot comes half an epoch before the lowest rate.
    let (paper, reference) = (
        run("p3.safetensors", 3, false),
        run("r3.safetensors", 3, true),
    );
    assert_eq!((paper.0, reference.0), (1, 1));
    assert_ne!(paper.1, reference.1);
}
