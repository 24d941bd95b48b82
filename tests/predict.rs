//! `modeconn predict` against references computed independently by the Python onnxruntime
//! (`tests/python/cnn_case.py`): curves on and off knots and bn_grid points, snapshot sets,
//! labels, temperature and the sampling modes. Every comparison runs with the default
//! `--static-budget` and with `--static-budget 0`. Explicit t values (`--at`) always run in the
//! dynamic rewritten graph; grids and snapshot members run in static (materialised) sessions
//! under the default budget and in the dynamic graph (a Gather of one member for snapshot sets)
//! under budget 0, so both paths are compared with the references.

use crate::util::*;

/// `predict --at TS --per-member --out --json` on a curve fixture equals its references.
fn curve_matches_reference(case: &CurveCase, static_budget: Option<&str>) {
    let dir = curve_fixture(case);
    let tmp = tempdir();
    let (pm, out) = (tmp.path().join("pm.npy"), tmp.path().join("p.npy"));
    let at = ts_arg(case.at);
    let bundle = dir.join("bundle.safetensors");
    let x = dir.join("x.npy");
    let mut args: Vec<Arg<'_>> = vec![
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--at",
        &at,
        &"--per-member",
        &pm,
        &"--out",
        &out,
        &"--json",
    ];
    if let Some(b) = &static_budget {
        args.extend([&"--static-budget" as Arg<'_>, b]);
    }
    let run = modeconn(&args).ok();
    let json = run.json();
    assert_eq!(field(&json, "kind"), "curve", "{json}");
    assert_eq!(number(field(&json, "batch")), BATCH as f64, "{json}");
    assert_eq!(number(field(&json, "classes")), CLASSES as f64, "{json}");
    assert!(field(&json, "provider").is_string(), "{json}");
    assert_ts(&numbers(field(&json, "members")), case.at);

    let reference = read_f32(&dir.join("ref.npy"));
    let per_member = read_f32(&pm);
    assert_eq!(per_member.shape(), &[case.at.len(), BATCH, CLASSES]);
    assert_close(&per_member, &reference, TOL);
    assert_close(&read_f32(&out), &mean0(&reference), TOL);
}

#[test]
fn bezier_k3_matches_reference() {
    curve_matches_reference(&BEZIER3, None);
}

#[test]
fn bezier_k3_matches_reference_dynamic() {
    curve_matches_reference(&BEZIER3, Some("0"));
}

#[test]
fn polychain_k4_matches_reference() {
    curve_matches_reference(&POLYCHAIN4, None);
}

#[test]
fn polychain_k4_matches_reference_dynamic() {
    curve_matches_reference(&POLYCHAIN4, Some("0"));
}

#[test]
fn nonuniform_bn_grid_matches_reference() {
    curve_matches_reference(&BEZIER4_NONUNIFORM, None);
}

#[test]
fn nonuniform_bn_grid_matches_reference_dynamic() {
    curve_matches_reference(&BEZIER4_NONUNIFORM, Some("0"));
}

#[test]
fn temperature_from_metadata_scales_logits() {
    // ref.npy of this fixture is softmax(logits / 2); modeconn takes T from the bundle.
    curve_matches_reference(&TEMPERATURE2, None);
    curve_matches_reference(&TEMPERATURE2, Some("0"));
}

/// `predict --members SPEC --per-member --out --json` on the snapshot fixture.
fn snapshots_match_reference(spec: &str, expected: &[usize], static_budget: &str) {
    let dir = snapshots_fixture();
    let tmp = tempdir();
    let (pm, out) = (tmp.path().join("pm.npy"), tmp.path().join("p.npy"));
    let run = modeconn(&[
        &"predict",
        &dir.join("bundle.safetensors"),
        &"--input",
        &dir.join("x.npy"),
        &"--members",
        &spec,
        &"--per-member",
        &pm,
        &"--out",
        &out,
        &"--static-budget",
        &static_budget,
        &"--json",
    ])
    .ok();
    let json = run.json();
    assert_eq!(field(&json, "kind"), "snapshots", "{json}");
    let members: Vec<u64> = field(&json, "members")
        .as_array()
        .unwrap_or_else(|| panic!("`members` is not an array: {json}"))
        .iter()
        .map(|v| {
            v.as_u64()
                .unwrap_or_else(|| panic!("member {v} is not an index: {json}"))
        })
        .collect();
    assert_eq!(
        members,
        expected.iter().map(|&i| i as u64).collect::<Vec<_>>(),
        "{json}"
    );

    let reference = select(&read_f32(&dir.join("ref.npy")), expected);
    assert_close(&read_f32(&pm), &reference, TOL);
    assert_close(&read_f32(&out), &mean0(&reference), TOL);
}

#[test]
fn snapshot_members_all_match_static_models() {
    snapshots_match_reference("all", &[0, 1, 2], "1024");
}

#[test]
fn snapshot_members_all_match_static_models_dynamic() {
    snapshots_match_reference("all", &[0, 1, 2], "0");
}

#[test]
fn snapshot_member_subset_keeps_the_order_asked_for() {
    snapshots_match_reference("2,0", &[2, 0], "1024");
    snapshots_match_reference("2,0", &[2, 0], "0");
}

/// `--labels y.npy --json` reports the accuracy and NLL of the mean probabilities.
fn labels_report(dir: &std::path::Path, selection: &[&str], reference: ndarray::ArrayD<f32>) {
    let tmp = tempdir();
    let out = tmp.path().join("p.npy");
    let bundle = dir.join("bundle.safetensors");
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let mut args: Vec<Arg<'_>> = vec![
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--labels",
        &y,
        &"--out",
        &out,
        &"--json",
    ];
    args.extend(selection.iter().map(|s| s as Arg<'_>));
    let json = modeconn(&args).ok().json();

    let mean = mean0(&reference);
    assert_close(&read_f32(&out), &mean, TOL);
    let (accuracy, nll) = accuracy_nll(&mean, &read_i64(&y));
    let got_accuracy = number(field(&json, "accuracy"));
    let got_nll = number(field(&json, "nll"));
    assert!(
        (got_accuracy - accuracy).abs() < 1e-9,
        "accuracy {got_accuracy}, expected {accuracy}: {json}"
    );
    assert!(
        (got_nll - nll).abs() <= tolerance(TOL) * nll.max(1.0),
        "nll {got_nll}, expected {nll}: {json}"
    );
}

#[test]
fn labels_give_accuracy_and_nll_for_a_curve() {
    let dir = curve_fixture(&BEZIER3);
    let at = ts_arg(&TS);
    labels_report(&dir, &["--at", &at], read_f32(&dir.join("ref.npy")));
}

#[test]
fn labels_give_accuracy_and_nll_for_snapshots() {
    let dir = snapshots_fixture();
    labels_report(&dir, &["--members", "all"], read_f32(&dir.join("ref.npy")));
}

#[test]
fn grid_of_three_uses_zero_half_one() {
    let dir = curve_fixture(&BEZIER3);
    let reference = read_f32(&dir.join("ref.npy"));
    let expected = select(
        &reference,
        &[index_of(&TS, 0.0), index_of(&TS, 0.5), index_of(&TS, 1.0)],
    );
    for budget in ["1024", "0"] {
        let tmp = tempdir();
        let (pm, out) = (tmp.path().join("pm.npy"), tmp.path().join("p.npy"));
        let json = modeconn(&[
            &"predict",
            &dir.join("bundle.safetensors"),
            &"--input",
            &dir.join("x.npy"),
            &"--grid",
            &"3",
            &"--per-member",
            &pm,
            &"--out",
            &out,
            &"--static-budget",
            &budget,
            &"--json",
        ])
        .ok()
        .json();
        assert_ts(&numbers(field(&json, "members")), &[0.0, 0.5, 1.0]);
        // The path taken: three materialised members under the budget, none without it.
        let statics = if budget == "0" { 0.0 } else { 3.0 };
        assert_eq!(number(field(&json, "static_members")), statics, "{json}");
        assert_close(&read_f32(&pm), &expected, TOL);
        assert_close(&read_f32(&out), &mean0(&expected), TOL);
    }
}

#[test]
fn uniform_draws_are_reproducible_with_a_seed() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let draw = |seed: &str, tag: &str| {
        let (pm, out) = (
            tmp.path().join(format!("pm{tag}.npy")),
            tmp.path().join(format!("p{tag}.npy")),
        );
        let json = modeconn(&[
            &"predict",
            &dir.join("bundle.safetensors"),
            &"--input",
            &dir.join("x.npy"),
            &"--uniform",
            &"4",
            &"--seed",
            &seed,
            &"--per-member",
            &pm,
            &"--out",
            &out,
            &"--json",
        ])
        .ok()
        .json();
        (
            numbers(field(&json, "members")),
            read_f32(&pm),
            read_f32(&out),
        )
    };
    let (ts1, pm1, p1) = draw("7", "a");
    let (ts2, pm2, p2) = draw("7", "b");
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
    let (ts3, _, _) = draw("8", "c");
    assert_ne!(ts1, ts3, "seeds 7 and 8 drew the same t");
}

#[test]
fn randomized_mode_hides_members_and_gives_probabilities() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let out = tmp.path().join("p.npy");
    let json = modeconn(&[
        &"predict",
        &dir.join("bundle.safetensors"),
        &"--input",
        &dir.join("x.npy"),
        &"--randomized",
        &"--seed",
        &"3",
        &"--out",
        &out,
        &"--json",
    ])
    .ok()
    .json();
    assert!(
        json.get("members").is_none(),
        "randomised mode must not report members: {json}"
    );
    assert_eq!(number(field(&json, "batch")), BATCH as f64, "{json}");
    let p = read_f32(&out);
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
    let tmp = tempdir();
    let out = tmp.path().join("p.npy");
    let json = modeconn(&[
        &"predict",
        &dir.join("bundle.safetensors"),
        &"--input",
        &dir.join("x.npy"),
        &"--at",
        &"0.25",
        &"--device",
        &"cpu",
        &"--out",
        &out,
        &"--json",
    ])
    .ok()
    .json();
    let provider = field(&json, "provider")
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        provider.contains("cpu"),
        "provider with --device cpu: {json}"
    );
    let reference = read_f32(&dir.join("ref.npy"));
    assert_close(
        &read_f32(&out),
        &select(&reference, &[index_of(&TS, 0.25)]).index_axis_move(ndarray::Axis(0), 0),
        TOL,
    );
}

/// The Python references agree with independent computations (knots, static models, PyTorch).
#[test]
fn python_references_are_self_consistent() {
    let torch = torch_fixture();
    run_python("selfcheck.py", &[&"--torch", &torch]);
}
