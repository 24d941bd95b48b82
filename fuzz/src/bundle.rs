//! Target `bundle`: the bundle reader and validator (`Bundle::from_bytes`), what a loaded
//! bundle offers (weights, materialised models, the Gram matrix), and an ensemble made from it
//! predicting one all-zeros sample.
//!
//! Properties: a bundle that loads has the weights of every member it says it has, refuses
//! members it does not have, materialises members into models that parse, and either predicts
//! probabilities (finite, one row summing to one) or fails with an error.

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::graph::OnnxModel;
use modeconn_runtime::{Bundle, Ensemble, EnsembleOptions, Member, Sampling};
use ndarray::{ArrayD, IxDyn};

use crate::{MAX_RUN_FLOATS, product};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(bundle) = Bundle::from_bytes(data.to_vec()) else {
        return;
    };
    let meta = bundle.metadata().clone();
    let _ = bundle.parameter_count();
    let _ = bundle.file_size();
    for entry in bundle.tensors() {
        assert_eq!(
            bundle.data(entry).len(),
            entry.slices() * entry.slice_len(),
            "the data of `{}` has the length its shape says",
            entry.name
        );
    }
    if meta.kind == Kind::Curve {
        let _ = bundle.gram();
    }

    let (inside, outside) = match meta.kind {
        Kind::Curve => (
            vec![Member::T(0.0), Member::T(0.37), Member::T(1.0)],
            vec![
                Member::T(-0.25),
                Member::T(1.5),
                Member::T(f64::NAN),
                Member::Index(0),
            ],
        ),
        Kind::Snapshots => (
            vec![Member::Index(0), Member::Index(meta.points - 1)],
            vec![Member::Index(meta.points), Member::T(0.5)],
        ),
    };
    for member in outside {
        assert!(
            bundle.weights_at(member).is_err(),
            "{member} is not a member of the bundle, yet it has weights"
        );
    }
    for member in inside {
        let weights = bundle
            .weights_at(member)
            .unwrap_or_else(|e| panic!("{member} is a member of the bundle but: {e}"));
        assert_eq!(weights.tensors.len(), bundle.tensors().len());
        let model = bundle
            .materialize(member)
            .unwrap_or_else(|e| panic!("{member} cannot be materialised: {e}"));
        OnnxModel::parse(&model).unwrap_or_else(|e| panic!("{member} materialised: {e}"));
    }

    // What is run: one sample of the declared input shape, when it and the tensors are small.
    let sample: Option<usize> = meta.input.shape[1..]
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<_>>>()
        .and_then(product);
    let tensors: usize = bundle
        .tensors()
        .iter()
        .map(|t| t.slices().saturating_mul(t.slice_len()))
        .fold(0, usize::saturating_add);
    let Some(sample) = sample.filter(|&n| n <= MAX_RUN_FLOATS) else {
        return;
    };
    if tensors > MAX_RUN_FLOATS {
        return;
    }
    let options = EnsembleOptions {
        static_budget: 0,
        max_sessions: 1,
    };
    let Ok(ensemble) = Ensemble::new(crate::runtime(), bundle, options) else {
        return;
    };
    let mut shape = vec![1usize];
    shape.extend(meta.input.shape[1..].iter().map(|&d| d as usize));
    let input = ArrayD::<f32>::zeros(IxDyn(&shape));
    assert_eq!(input.len(), sample);
    let sampling = match meta.kind {
        Kind::Curve => Sampling::At(vec![0.5]),
        Kind::Snapshots => Sampling::AllMembers,
    };
    // Without per-member probabilities (what the server and the CLI ask for by default).
    if let Ok(p) = ensemble.predict(input.view(), &sampling, false) {
        assert_eq!(p.probabilities.shape(), &[1, meta.output.classes]);
    }
    if let Ok(p) = ensemble.predict(input.view(), &sampling, true) {
        assert_eq!(p.probabilities.shape(), &[1, meta.output.classes]);
        assert!(p.probabilities.iter().all(|v| v.is_finite()));
        let sum: f32 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
        let members = ensemble
            .member_count(&sampling, 1)
            .expect("the sampling predicted");
        assert_eq!(p.members.len(), members);
    }
}
