// The prediction cases, included by tests.rs once for each backend of `predictors.rs` (the
// command line and the C ABI), as `predictor`. Each compares a backend's answer with the
// references computed independently by the Python onnxruntime (`tests/python/cnn_case.py`):
// curves on and off knots and bn_grid points, snapshot sets, labels, temperature and the
// sampling modes. Every comparison runs with the default static budget and with budget 0.
// Explicit t values always run in the dynamic rewritten graph; grids and snapshot members run
// in static (materialised) sessions under the default budget and in the dynamic graph (a
// Gather of one member for snapshot sets) under budget 0, so both paths are compared with the
// references.

use crate::predictors::{Query, Select};
use crate::util::*;

/// At t values with per-member probabilities on a curve fixture equals its references.
fn curve_matches_reference(case: &CurveCase, static_budget: Option<usize>) {
    let dir = curve_fixture(case);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let mut q = Query::new(&bundle, &x, Select::At(case.at.to_vec()));
    q.per_member = true;
    q.static_budget = static_budget;
    let a = predictor::predict(&q);
    assert_eq!(a.kind, "curve", "{a:?}");
    assert_eq!(a.batch, BATCH, "{a:?}");
    assert_eq!(a.classes, CLASSES, "{a:?}");
    assert!(!a.provider.is_empty(), "{a:?}");
    assert_ts(a.members.as_deref().unwrap_or_default(), case.at);

    let reference = read_f32(&dir.join("ref.npy"));
    let per_member = a.per_member.expect("per-member probabilities");
    assert_eq!(per_member.shape(), &[case.at.len(), BATCH, CLASSES]);
    assert_close(&per_member, &reference, TOL);
    assert_close(&a.probabilities, &mean0(&reference), TOL);
}

#[test]
fn bezier_k3_matches_reference() {
    curve_matches_reference(&BEZIER3, None);
}

#[test]
fn bezier_k3_matches_reference_dynamic() {
    curve_matches_reference(&BEZIER3, Some(0));
}

#[test]
fn polychain_k4_matches_reference() {
    curve_matches_reference(&POLYCHAIN4, None);
}

#[test]
fn polychain_k4_matches_reference_dynamic() {
    curve_matches_reference(&POLYCHAIN4, Some(0));
}

#[test]
fn nonuniform_bn_grid_matches_reference() {
    curve_matches_reference(&BEZIER4_NONUNIFORM, None);
}

#[test]
fn nonuniform_bn_grid_matches_reference_dynamic() {
    curve_matches_reference(&BEZIER4_NONUNIFORM, Some(0));
}

#[test]
fn temperature_from_metadata_scales_logits() {
    // ref.npy of this fixture is softmax(logits / 2); modeconn takes T from the bundle.
    curve_matches_reference(&TEMPERATURE2, None);
    curve_matches_reference(&TEMPERATURE2, Some(0));
}

/// Members of the snapshot fixture, with per-member probabilities.
fn snapshots_match_reference(select: Select, expected: &[usize], static_budget: usize) {
    let dir = snapshots_fixture();
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let mut q = Query::new(&bundle, &x, select);
    q.per_member = true;
    q.static_budget = Some(static_budget);
    let a = predictor::predict(&q);
    assert_eq!(a.kind, "snapshots", "{a:?}");
    let expected_members: Vec<f64> = expected.iter().map(|&i| i as f64).collect();
    assert_eq!(a.members.as_deref(), Some(&expected_members[..]), "{a:?}");

    let reference = select_members(&read_f32(&dir.join("ref.npy")), expected);
    assert_close(&a.per_member.expect("per member"), &reference, TOL);
    assert_close(&a.probabilities, &mean0(&reference), TOL);
}

/// `select` of the util module, under a name that does not clash with `Select`.
fn select_members(array: &ndarray::ArrayD<f32>, indices: &[usize]) -> ndarray::ArrayD<f32> {
    select(array, indices)
}

#[test]
fn snapshot_members_all_match_static_models() {
    snapshots_match_reference(Select::AllMembers, &[0, 1, 2], 1024);
}

#[test]
fn snapshot_members_all_match_static_models_dynamic() {
    snapshots_match_reference(Select::AllMembers, &[0, 1, 2], 0);
}

#[test]
fn snapshot_member_subset_keeps_the_order_asked_for() {
    snapshots_match_reference(Select::Members(vec![2, 0]), &[2, 0], 1024);
    snapshots_match_reference(Select::Members(vec![2, 0]), &[2, 0], 0);
}

/// With labels, the mean probabilities and, from a backend that scores them, the accuracy and
/// NLL of the mean probabilities.
fn labels_report(dir: &std::path::Path, select: Select, reference: ndarray::ArrayD<f32>) {
    let (bundle, x, y) = (
        dir.join("bundle.safetensors"),
        dir.join("x.npy"),
        dir.join("y.npy"),
    );
    let mut q = Query::new(&bundle, &x, select);
    q.labels = Some(&y);
    let a = predictor::predict(&q);

    let mean = mean0(&reference);
    assert_close(&a.probabilities, &mean, TOL);
    let (accuracy, nll) = accuracy_nll(&mean, &read_i64(&y));
    if let Some((got_accuracy, got_nll)) = a.scores {
        assert!(
            (got_accuracy - accuracy).abs() < 1e-9,
            "accuracy {got_accuracy}, expected {accuracy}: {a:?}"
        );
        assert!(
            (got_nll - nll).abs() <= tolerance(TOL) * nll.max(1.0),
            "nll {got_nll}, expected {nll}: {a:?}"
        );
    }
}

#[test]
fn labels_give_accuracy_and_nll_for_a_curve() {
    let dir = curve_fixture(&BEZIER3);
    labels_report(
        &dir,
        Select::At(TS.to_vec()),
        read_f32(&dir.join("ref.npy")),
    );
}

#[test]
fn labels_give_accuracy_and_nll_for_snapshots() {
    let dir = snapshots_fixture();
    labels_report(&dir, Select::AllMembers, read_f32(&dir.join("ref.npy")));
}

#[test]
fn grid_of_three_uses_zero_half_one() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let reference = read_f32(&dir.join("ref.npy"));
    let expected = select(
        &reference,
        &[index_of(&TS, 0.0), index_of(&TS, 0.5), index_of(&TS, 1.0)],
    );
    for budget in [1024, 0] {
        let mut q = Query::new(&bundle, &x, Select::Grid(3));
        q.per_member = true;
        q.static_budget = Some(budget);
        let a = predictor::predict(&q);
        assert_ts(a.members.as_deref().unwrap_or_default(), &[0.0, 0.5, 1.0]);
        // The path taken: three materialised members under the budget, none without it.
        let statics = if budget == 0 { 0 } else { 3 };
        assert_eq!(a.static_members, statics, "{a:?}");
        assert_close(&a.per_member.expect("per member"), &expected, TOL);
        assert_close(&a.probabilities, &mean0(&expected), TOL);
    }
}

#[test]
fn uniform_draws_are_reproducible_with_a_seed() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let draw = |seed: u64| {
        let mut q = Query::new(&bundle, &x, Select::Uniform { n: 4, seed });
        q.per_member = true;
        let a = predictor::predict(&q);
        (
            a.members.unwrap_or_default(),
            a.per_member.expect("per member"),
            a.probabilities,
        )
    };
    let (ts1, pm1, p1) = draw(7);
    let (ts2, pm2, p2) = draw(7);
    assert_eq!(ts1.len(), 4, "{ts1:?}");
    assert!(
        ts1.iter().all(|t| (0.0..=1.0).contains(t)),
        "t outside [0, 1]: {ts1:?}"
    );
    assert_eq!(ts1, ts2, "the same seed drew different t");
    // Same t, same computation: equal up to ONNX Runtime's thread scheduling.
    assert_close(&pm1, &pm2, 1e-6);
    assert_close(&p1, &p2, 1e-6);
    assert_eq!(pm1.shape(), &[4, BATCH, CLASSES]);
    assert_close(&p1, &mean0(&pm1), TOL);
    let (ts3, _, _) = draw(8);
    assert_ne!(ts1, ts3, "seeds 7 and 8 drew the same t");
}

#[test]
fn randomized_mode_hides_members_and_gives_probabilities() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let a = predictor::predict(&Query::new(&bundle, &x, Select::Randomized { seed: 3 }));
    assert!(
        a.members.is_none(),
        "randomised mode must not report members: {a:?}"
    );
    assert_eq!(a.batch, BATCH, "{a:?}");
    let p = a.probabilities;
    assert_eq!(p.shape(), &[BATCH, CLASSES]);
    assert!(
        p.iter().all(|&v| (0.0..=1.0).contains(&v)),
        "not probabilities: {p}"
    );
    for row in p.rows() {
        let sum: f32 = row.sum();
        assert!((sum - 1.0).abs() < 1e-5, "a row sums to {sum}: {row}");
    }
}

#[test]
fn device_cpu_reports_the_cpu_provider() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let mut q = Query::new(&bundle, &x, Select::At(vec![0.25]));
    q.device = Some("cpu");
    let a = predictor::predict(&q);
    assert!(
        a.provider.contains("cpu"),
        "provider with device cpu: {a:?}"
    );
    let reference = read_f32(&dir.join("ref.npy"));
    assert_close(
        &a.probabilities,
        &select(&reference, &[index_of(&TS, 0.25)]).index_axis_move(ndarray::Axis(0), 0),
        TOL,
    );
}
