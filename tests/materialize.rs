//! `modeconn materialize`: the standalone ONNX model, run by the Python onnxruntime
//! (`tests/python/run_onnx.py`), equals `modeconn predict` at the same point through the dynamic
//! rewritten graph, and the independent reference.

use std::path::Path;

use crate::util::*;

/// `predict` with `selection` (`--at T` or `--members I`) through the dynamic rewritten graph
/// (`--static-budget 0`), probabilities [batch, classes].
fn predict(dir: &Path, selection: &[&str]) -> ndarray::ArrayD<f32> {
    let tmp = tempdir();
    let out = tmp.path().join("p.npy");
    let bundle = dir.join("bundle.safetensors");
    let x = dir.join("x.npy");
    let mut args: Vec<Arg<'_>> = vec![
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--out",
        &out,
        &"--static-budget",
        &"0",
    ];
    args.extend(selection.iter().map(|s| s as Arg<'_>));
    modeconn(&args).ok();
    read_f32(&out)
}

/// `materialize` with `selection`, then the model run by onnxruntime with temperature `t`.
fn materialize_and_run(
    dir: &Path,
    selection: &[&str],
    temperature: Option<f64>,
) -> ndarray::ArrayD<f32> {
    let tmp = tempdir();
    let model = tmp.path().join("model.onnx");
    let bundle = dir.join("bundle.safetensors");
    let mut args: Vec<Arg<'_>> = vec![&"materialize", &bundle];
    args.extend(selection.iter().map(|s| s as Arg<'_>));
    args.extend([&"--out" as Arg<'_>, &model]);
    modeconn(&args).ok();
    assert!(model.is_file(), "materialize wrote no {}", model.display());
    run_onnx(&model, &dir.join("x.npy"), temperature)
}

fn curve_at(case: &CurveCase, t: f64) {
    let dir = curve_fixture(case);
    let t_arg = t.to_string();
    let materialized = materialize_and_run(&dir, &["--at", &t_arg], case.temperature);
    let dynamic = predict(&dir, &["--at", &t_arg]);
    assert_close(&materialized, &dynamic, TOL);
    let reference = read_f32(&dir.join("ref.npy"));
    let expected = reference
        .index_axis(ndarray::Axis(0), index_of(case.at, t))
        .to_owned();
    assert_close(&materialized, &expected, TOL);
}

#[test]
fn bezier_at_037_equals_predict() {
    curve_at(&BEZIER3, 0.37);
}

#[test]
fn polychain_at_037_equals_predict() {
    curve_at(&POLYCHAIN4, 0.37);
}

#[test]
fn nonuniform_bn_grid_at_063_equals_predict() {
    curve_at(&BEZIER4_NONUNIFORM, 0.63);
}

/// The materialised model outputs logits: the bundle's temperature is applied by the caller.
#[test]
fn materialized_model_outputs_logits_not_tempered_probabilities() {
    curve_at(&TEMPERATURE2, 0.7);
}

#[test]
fn snapshot_member_equals_predict_and_static_model() {
    let dir = snapshots_fixture();
    let materialized = materialize_and_run(&dir, &["--member", "1"], None);
    assert_close(&materialized, &predict(&dir, &["--members", "1"]), TOL);
    let reference = read_f32(&dir.join("ref.npy"));
    assert_close(
        &materialized,
        &reference.index_axis(ndarray::Axis(0), 1).to_owned(),
        TOL,
    );
    let static_model = run_onnx(&dir.join("member1.onnx"), &dir.join("x.npy"), None);
    assert_close(&materialized, &static_model, TOL);
}
