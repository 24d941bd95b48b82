//! The runtime through its Rust API: bundles from memory (weights handed to ONNX Runtime as
//! values) and from files (ONNX Runtime maps the bundle file itself) answer alike, and the
//! sampling modes that need a curve or a set say so.

use modeconn_runtime::{Bundle, Ensemble, EnsembleOptions, Error, Sampling};

use crate::util::*;

#[test]
fn file_and_memory_bundles_predict_alike() {
    let dir = curve_fixture(&POLYCHAIN4);
    let path = dir.join("bundle.safetensors");
    let x = read_f32(&dir.join("x.npy"));
    let rt = cpu_runtime();
    let dynamic = EnsembleOptions {
        static_budget: 0,
        ..EnsembleOptions::default()
    };
    let from_file = Ensemble::open(&rt, &path, dynamic.clone()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let from_memory = Ensemble::new(&rt, Bundle::from_bytes(bytes).unwrap(), dynamic).unwrap();
    let s = Sampling::At(POLYCHAIN4.at.to_vec());
    let a = from_file.predict(x.view(), &s, true).unwrap();
    let b = from_memory.predict(x.view(), &s, true).unwrap();
    let (pa, pb) = (a.per_member.unwrap(), b.per_member.unwrap());
    assert_close(&pa.clone().into_dyn(), &pb.into_dyn(), 1e-7);
    // And both equal the independent reference.
    assert_close(&pa.into_dyn(), &read_f32(&dir.join("ref.npy")), TOL);
}

#[test]
fn arc_length_sampling_draws_points_on_the_curve() {
    let dir = curve_fixture(&BEZIER3);
    let x = read_f32(&dir.join("x.npy"));
    let e = Ensemble::open(
        &cpu_runtime(),
        dir.join("bundle.safetensors"),
        EnsembleOptions::default(),
    )
    .unwrap();
    let arc = e.arc_length().unwrap();
    assert!(arc.ratio().unwrap() >= 1.0);
    let p = e
        .predict(x.view(), &Sampling::ArcUniform { n: 5, seed: 1 }, false)
        .unwrap();
    assert_eq!(p.members.len(), 5);
    let again = e
        .predict(x.view(), &Sampling::ArcUniform { n: 5, seed: 1 }, false)
        .unwrap();
    assert_eq!(p.members, again.members, "seeded draws repeat");
    // Rows are probability vectors.
    for row in p.probabilities.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
    assert!(p.entropy.iter().all(|&h| h >= 0.0));
}

#[test]
fn modes_that_do_not_fit_the_bundle_are_refused() {
    let rt = cpu_runtime();
    let curve = Ensemble::open(
        &rt,
        curve_fixture(&BEZIER3).join("bundle.safetensors"),
        EnsembleOptions::default(),
    )
    .unwrap();
    let set = Ensemble::open(
        &rt,
        snapshots_fixture().join("bundle.safetensors"),
        EnsembleOptions::default(),
    )
    .unwrap();
    let x = read_f32(&snapshots_fixture().join("x.npy"));
    for (e, s) in [
        (&curve, Sampling::AllMembers),
        (&set, Sampling::At(vec![0.5])),
        (&set, Sampling::ArcUniform { n: 2, seed: 0 }),
        (&curve, Sampling::Grid(1)),
        (&curve, Sampling::At(vec![])),
    ] {
        let err = e.predict(x.view(), &s, false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::KindMismatch { .. } | Error::NoMembers | Error::InvalidArgument { .. }
            ),
            "{s:?}: {err}"
        );
    }
    let wrong = ndarray::ArrayD::<f32>::zeros(vec![2, 3, 4, 4]);
    assert!(matches!(
        set.predict(wrong.view(), &Sampling::AllMembers, false),
        Err(Error::InputShape { .. })
    ));
}

#[test]
fn keyed_sampling_reads_values_not_their_spelling() {
    // Flipping 0.0 to -0.0 changed the hashed bytes: 200 such copies of one input reached all
    // 21 points of the grid, and their average came close to the ensemble's.
    let dir = curve_fixture(&BEZIER3);
    let e = Ensemble::open(
        &cpu_runtime(),
        dir.join("bundle.safetensors"),
        EnsembleOptions::default(),
    )
    .unwrap();
    let key = [7u8; 32];
    let keyed = |quantum| Sampling::Keyed {
        key,
        grid: 21,
        quantum,
    };
    // Zeros in every sample, so that there is a sign to flip.
    let mut x = read_f32(&dir.join("x.npy"));
    for (i, v) in x.iter_mut().enumerate() {
        if i % 3 == 0 {
            *v = 0.0;
        }
    }
    let members = |x: &ndarray::ArrayD<f32>, quantum| {
        e.predict(x.view(), &keyed(quantum), false).unwrap().members
    };
    let reference = members(&x, None);
    let mut flipped = x.clone();
    flipped.mapv_inplace(|v| if v == 0.0 { -0.0 } else { v });
    assert_eq!(members(&flipped, None), reference, "-0.0 met another point");

    // One-ulp changes meet other points without a quantum, and the same ones with one.
    let nudged = x.mapv(|v| f32::from_bits(v.to_bits() + 1));
    assert_ne!(
        members(&nudged, None),
        reference,
        "no sample moved: the test is too weak"
    );
    let quantum = Some(1.0 / 64.0);
    let mut snapped = x.clone();
    snapped.mapv_inplace(|v| (v * 64.0).round() / 64.0 + 1.0 / 1024.0);
    let nudged = snapped.mapv(|v| f32::from_bits(v.to_bits() + 1));
    assert_eq!(members(&nudged, quantum), members(&snapped, quantum));
    let err = e.predict(x.view(), &keyed(Some(-1.0)), false).unwrap_err();
    assert!(err.to_string().contains("quantum"), "{err}");
}
