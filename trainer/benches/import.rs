//! What running an imported graph costs against the trainer's own description of the same
//! network: PreResNet-20 written as ONNX (`to_onnx`) and imported again, one training step
//! (forward, loss, backward) on a batch of 32 CIFAR-shaped samples, and one forward pass in
//! evaluation. `cargo bench -p modeconn-trainer --bench import`; compare the pairs' times.

use criterion::{Criterion, criterion_group, criterion_main};
use modeconn_runtime::graph::OnnxModel;
use modeconn_trainer::arch::{
    ArchOptions, Mode, Net, Normalization, Params, by_name, forward, import, init, to_onnx,
};
use tch::{Device, Kind, Tensor};

fn networks() -> (Net, Net) {
    let norm = Normalization {
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
    };
    let zoo = by_name(
        "preresnet20",
        &ArchOptions::default(),
        &[3, 32, 32],
        10,
        &norm,
    )
    .expect("architecture");
    let graph = OnnxModel::parse(&to_onnx(&zoo).expect("graph")).expect("parse");
    let shapes: Vec<(String, Vec<i64>)> = zoo
        .params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    let imported = import::import(&graph, &shapes).expect("import");
    (zoo, imported)
}

fn params(net: &Net) -> Params {
    let mut params = init(net, 1, Device::Cpu).expect("init");
    for (name, t) in params.iter_mut() {
        if !net.param(name).is_some_and(|p| p.kind.is_statistic()) {
            *t = t.set_requires_grad(true);
        }
    }
    params
}

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let (zoo, imported) = networks();
    let x = Tensor::rand([32, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::zeros([32], (Kind::Int64, Device::Cpu));
    let mut group = c.benchmark_group("preresnet20 batch 32");
    group.sample_size(20);
    for (label, net) in [("own", &zoo), ("imported", &imported)] {
        let p = params(net);
        group.bench_function(format!("train step, {label}"), |b| {
            b.iter(|| {
                let logits = forward(net, &p, &x, Mode::Train).expect("forward");
                let loss = logits.cross_entropy_for_logits(&y);
                loss.backward();
            })
        });
        group.bench_function(format!("eval forward, {label}"), |b| {
            b.iter(|| tch::no_grad(|| forward(net, &p, &x, Mode::Eval).expect("forward")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
