//! Several threads predicting on one shared `Ensemble` get the same answers as one thread, for
//! the dynamic graph, static sessions and per-sample modes, through the Rust API.

use std::sync::Arc;

use modeconn_runtime::{Ensemble, EnsembleOptions, Prediction, Sampling};

use crate::util::*;

const THREADS: usize = 4;
const ROUNDS: usize = 6;

/// Runs every sampling once on one thread, then `THREADS` threads run them all `ROUNDS` times
/// in different orders on the same ensemble; every answer must equal the single-thread one.
fn same_answers_from_many_threads(
    ensemble: Ensemble,
    samplings: Vec<Sampling>,
    x: &ndarray::ArrayD<f32>,
) {
    let ensemble = Arc::new(ensemble);
    let expected: Vec<Prediction> = samplings
        .iter()
        .map(|s| {
            ensemble
                .predict(x.view(), s, !s.is_per_sample())
                .expect("single-thread predict")
        })
        .collect();
    let samplings = Arc::new(samplings);
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (ensemble, samplings, x) =
                (Arc::clone(&ensemble), Arc::clone(&samplings), x.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..ROUNDS {
                    for k in 0..samplings.len() {
                        // Each thread walks the samplings in its own rotation.
                        let i = (k + thread + round) % samplings.len();
                        let s = &samplings[i];
                        let p = ensemble
                            .predict(x.view(), s, !s.is_per_sample())
                            .expect("threaded predict");
                        got.push((i, p));
                    }
                }
                got
            })
        })
        .collect();
    let mut checked = 0;
    for h in handles {
        for (i, p) in h.join().expect("a predicting thread panicked") {
            let e = &expected[i];
            assert_eq!(p.members, e.members, "sampling {:?}", samplings[i]);
            assert_close(
                &p.probabilities.clone().into_dyn(),
                &e.probabilities.clone().into_dyn(),
                1e-6,
            );
            if let (Some(a), Some(b)) = (&p.per_member, &e.per_member) {
                assert_close(&a.clone().into_dyn(), &b.clone().into_dyn(), 1e-6);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, THREADS * ROUNDS * samplings.len());
}

#[test]
fn threads_share_a_curve_ensemble() {
    let dir = curve_fixture(&BEZIER3);
    let x = read_f32(&dir.join("x.npy"));
    let ensemble = Ensemble::open(
        &cpu_runtime(),
        dir.join("bundle.safetensors"),
        EnsembleOptions::default(),
    )
    .unwrap();
    let samplings = vec![
        Sampling::At(vec![0.1, 0.37]),       // dynamic graph
        Sampling::Grid(3),                   // static sessions
        Sampling::Uniform { n: 2, seed: 9 }, // dynamic graph
        Sampling::Randomized {
            grid: 5,
            seed: Some(3),
        }, // per sample, grouped by member
    ];
    same_answers_from_many_threads(ensemble, samplings, &x);
}

#[test]
fn threads_share_a_snapshot_set() {
    let dir = snapshots_fixture();
    let x = read_f32(&dir.join("x.npy"));
    let rt = cpu_runtime();
    for budget in [0, 1 << 30] {
        let ensemble = Ensemble::open(
            &rt,
            dir.join("bundle.safetensors"),
            EnsembleOptions {
                static_budget: budget,
                max_sessions: 2,
            },
        )
        .unwrap();
        let samplings = vec![
            Sampling::AllMembers,
            Sampling::Members(vec![2, 0]),
            Sampling::Keyed {
                quantum: None,
                key: [7; 32],
                grid: 0,
            },
        ];
        same_answers_from_many_threads(ensemble, samplings, &x);
    }
}
