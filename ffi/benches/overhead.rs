//! Per-call overhead of the C API over the Rust API: one prediction (batch 1, a tiny linear
//! model, one member) through `modeconn_ensemble_predict` and through `Ensemble::predict`.
//!
//! `cargo bench -p modeconn-ffi --bench overhead` (needs `ORT_DYLIB_PATH`).

use std::hint::black_box;

use ::modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
use ::modeconn_runtime::curve::Basis;
use ::modeconn_runtime::graph::{build::ModelBuilder, elem};
use ::modeconn_runtime::{
    BundleWriter, Ensemble, EnsembleOptions, Runtime, RuntimeOptions, Sampling,
};
use criterion::{Criterion, criterion_group, criterion_main};
use modeconn::{
    modeconn_ensemble, modeconn_ensemble_free, modeconn_ensemble_open, modeconn_ensemble_predict,
    modeconn_input, modeconn_outputs, modeconn_runtime, modeconn_runtime_free,
    modeconn_runtime_new, modeconn_sampling, modeconn_sampling_mode, modeconn_status,
};

fn bundle(path: &std::path::Path) {
    let mut g = ModelBuilder::new("linear", 17);
    g.input("x", elem::FLOAT, &["batch".into(), 2.into()])
        .input("w", elem::FLOAT, &[2.into(), 3.into()])
        .node("MatMul", &["x", "w"], &["logits"], &[])
        .output("logits", elem::FLOAT, &["batch".into(), 3.into()]);
    let meta = Metadata {
        kind: Kind::Curve,
        basis: Some(Basis::Bezier),
        points: 3,
        bn_grid: None,
        grid_tensors: vec![],
        input: InputSpec {
            name: "x".into(),
            shape: vec![-1, 2],
        },
        output: OutputSpec {
            name: "logits".into(),
            classes: 3,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: None,
        extra: Default::default(),
    };
    let points: Vec<f32> = (0..18).map(|i| i as f32 / 10.0).collect();
    BundleWriter::new(meta, g.build())
        .tensor("w", vec![3, 2, 3], points)
        .expect("tensor")
        .write(path)
        .expect("write the bundle");
}

fn overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("linear.safetensors");
    bundle(&path);
    let x = [0.5f32, -1.0];

    let runtime = Runtime::new(RuntimeOptions::default().with_intra_threads(1)).expect("ORT");
    let ensemble = Ensemble::open(&runtime, &path, EnsembleOptions::default()).expect("open");
    let input = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 2]), x.to_vec()).expect("x");
    let sampling = Sampling::At(vec![0.5]);

    let mut rt: *mut modeconn_runtime = std::ptr::null_mut();
    let mut ens: *mut modeconn_ensemble = std::ptr::null_mut();
    let cpath = std::ffi::CString::new(path.to_str().expect("UTF-8 path")).expect("C path");
    // SAFETY: valid out-pointers and strings, as the C API asks.
    unsafe {
        assert_eq!(
            modeconn_runtime_new(std::ptr::null(), 0, 0, 1, &mut rt),
            modeconn_status::OK
        );
        assert_eq!(
            modeconn_ensemble_open(rt, cpath.as_ptr(), &mut ens),
            modeconn_status::OK
        );
    }
    let ts = [0.5f64];
    let c_sampling = modeconn_sampling {
        mode: modeconn_sampling_mode::At as u32,
        seeded: 0,
        count: 0,
        seed: 0,
        ts: ts.as_ptr(),
        ts_len: 1,
        members: std::ptr::null(),
        members_len: 0,
        key: std::ptr::null(),
        quantum: 0.0,
    };
    let mut prob = [0f32; 3];
    let c_input = modeconn_input {
        data: x.as_ptr(),
        len: 2,
        batch: 1,
    };

    let mut group = c.benchmark_group("predict_batch1_one_t");
    group.bench_function("rust_api", |b| {
        b.iter(|| black_box(ensemble.predict(black_box(input.view()), &sampling, false)))
    });
    group.bench_function("c_api", |b| {
        b.iter(|| {
            let outputs = modeconn_outputs {
                probabilities: prob.as_mut_ptr(),
                probabilities_len: 3,
                per_member: std::ptr::null_mut(),
                per_member_len: 0,
                members: std::ptr::null_mut(),
                members_len: 0,
                entropy: std::ptr::null_mut(),
                entropy_len: 0,
                disagreement: std::ptr::null_mut(),
                disagreement_len: 0,
            };
            // SAFETY: live handle, buffers of the lengths given.
            let s = unsafe {
                modeconn_ensemble_predict(ens, black_box(&c_input), &c_sampling, &outputs)
            };
            black_box((s, prob))
        })
    });
    group.finish();
    // SAFETY: handles from the calls above, freed once.
    unsafe {
        modeconn_ensemble_free(ens);
        modeconn_runtime_free(rt);
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
