//! The command line's contract: bad input ends with one line on stderr that names the problem
//! and a non-zero exit, never a panic; `inspect` reports what a bundle holds.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::util::*;

/// `predict BUNDLE --input X` plus `extra`, expected to fail cleanly; returns the error line.
fn predict_fails(bundle: &Path, x: &Path, extra: &[&str]) -> String {
    let mut args: Vec<Arg<'_>> = vec![&"predict", &bundle, &"--input", &x];
    args.extend(extra.iter().map(|s| s as Arg<'_>));
    modeconn(&args).fails_cleanly()
}

#[test]
fn missing_bundle_is_named() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let missing = tmp.path().join("no-such-bundle.safetensors");
    let line = predict_fails(&missing, &dir.join("x.npy"), &["--at", "0.5"]);
    assert!(
        line.contains(&*missing.to_string_lossy()),
        "the error does not name the path: {line}"
    );
}

#[test]
fn float64_input_is_refused() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let x = tmp.path().join("x64.npy");
    let shape = [BATCH, 3, 8, 8];
    write_f64_npy(&x, &shape, &vec![0.5; shape.iter().product()]);
    let line = predict_fails(&dir.join("bundle.safetensors"), &x, &["--at", "0.5"]);
    assert!(
        line.contains("float32") || line.to_lowercase().contains("dtype"),
        "the error does not name the dtype: {line}"
    );
}

#[test]
fn wrong_input_shape_is_refused() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let x = tmp.path().join("x.npy");
    write_f32(&x, &ArrayD::<f32>::zeros(IxDyn(&[BATCH, 3, 9, 9])));
    let line = predict_fails(&dir.join("bundle.safetensors"), &x, &["--at", "0.5"]);
    assert!(
        line.to_lowercase().contains("shape"),
        "the error does not name the shape: {line}"
    );
}

#[test]
fn t_outside_unit_interval_is_refused() {
    let dir = curve_fixture(&BEZIER3);
    let line = predict_fails(
        &dir.join("bundle.safetensors"),
        &dir.join("x.npy"),
        &["--at", "0.2,1.5"],
    );
    assert!(
        without_paths(&line, &[&dir]).contains("1.5"),
        "the error does not name t: {line}"
    );
}

#[test]
fn member_out_of_range_is_refused() {
    let dir = snapshots_fixture();
    let line = predict_fails(
        &dir.join("bundle.safetensors"),
        &dir.join("x.npy"),
        &["--members", "9"],
    );
    assert!(
        without_paths(&line, &[&dir]).contains('9'),
        "the error does not name the member: {line}"
    );
}

#[test]
fn materialize_refuses_bad_points() {
    let curve = curve_fixture(&BEZIER3);
    let snaps = snapshots_fixture();
    let tmp = tempdir();
    let out = tmp.path().join("m.onnx");
    let line = modeconn(&[
        &"materialize",
        &curve.join("bundle.safetensors"),
        &"--at",
        &"1.5",
        &"--out",
        &out,
    ])
    .fails_cleanly();
    assert!(
        without_paths(&line, &[&curve, tmp.path()]).contains("1.5"),
        "{line}"
    );
    let line = modeconn(&[
        &"materialize",
        &snaps.join("bundle.safetensors"),
        &"--member",
        &"9",
        &"--out",
        &out,
    ])
    .fails_cleanly();
    assert!(
        without_paths(&line, &[&snaps, tmp.path()]).contains('9'),
        "{line}"
    );
    assert!(!out.exists(), "a failed materialize left {}", out.display());
}

#[test]
fn missing_onnx_runtime_library_is_reported() {
    let dir = curve_fixture(&BEZIER3);
    let bundle = dir.join("bundle.safetensors");
    let x = dir.join("x.npy");
    let run = modeconn_with(
        &[
            &"predict",
            &bundle,
            &"--input",
            &x,
            &"--at",
            &"0.5",
            &"--ort-lib",
            &"/nonexistent/libonnxruntime.so",
        ],
        |cmd| {
            cmd.env_remove("ORT_DYLIB_PATH");
        },
    );
    let line = run.fails_cleanly();
    assert!(
        line.contains("ONNX Runtime"),
        "the error does not name ONNX Runtime: {line}"
    );
}

#[test]
fn inspect_json_describes_a_curve() {
    let dir = curve_fixture(&BEZIER3);
    let bundle = dir.join("bundle.safetensors");
    let info = modeconn(&[&"inspect", &bundle, &"--json"]).ok().json();
    assert_eq!(field(&info, "kind"), "curve", "{info}");
    assert_eq!(field(&info, "basis"), "bezier", "{info}");
    assert_eq!(number(field(&info, "points")), 3.0, "{info}");
    assert_ts(
        &numbers(field(&info, "bn_grid")),
        &[0.0, 0.25, 0.5, 0.75, 1.0],
    );
    assert_eq!(
        numbers(field_any(&info, &["input.shape", "input_shape"])),
        vec![-1.0, 3.0, 8.0, 8.0],
        "{info}"
    );
    assert_eq!(
        number(field_any(&info, &["classes", "output.classes"])),
        CLASSES as f64,
        "{info}"
    );

    let text = modeconn(&[&"inspect", &bundle]).ok();
    assert!(
        text.stdout.contains("bezier"),
        "plain inspect does not show the basis\n{}",
        text.transcript()
    );
}

#[test]
fn inspect_missing_bundle_is_named() {
    let tmp = tempdir();
    let missing = tmp.path().join("absent.safetensors");
    let line = modeconn(&[&"inspect", &missing]).fails_cleanly();
    assert!(
        line.contains(&*missing.to_string_lossy()),
        "the error does not name the path: {line}"
    );
}

#[test]
fn cuda_without_the_cuda_provider_is_refused_and_auto_falls_back() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    // The ONNX Runtime of the set-up (PyPI onnxruntime) has no CUDA execution provider.
    let line = predict_fails(&bundle, &x, &["--at", "0.5", "--device", "cuda"]);
    assert!(line.contains("cuda") && line.contains("CUDA"), "{line}");
    let run = modeconn(&[
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--at",
        &"0.5",
        &"--device",
        &"auto",
        &"--json",
    ])
    .ok();
    assert_eq!(field(&run.json(), "provider"), "cpu");
    let line = predict_fails(&bundle, &x, &["--at", "0.5", "--device", "tpu"]);
    assert!(line.contains("tpu"), "{line}");
}

/// With labels, `predict` reports the expected calibration error (15 bins of confidence) and
/// the Brier score of the mean probabilities, computed here from the Python reference.
#[test]
fn labels_give_calibration_error_and_brier_score() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x, y) = (
        dir.join("bundle.safetensors"),
        dir.join("x.npy"),
        dir.join("y.npy"),
    );
    let json = modeconn(&[
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--labels",
        &y,
        &"--at",
        &ts_arg(&TS),
        &"--json",
    ])
    .ok()
    .json();
    let mean = mean0(&read_f32(&dir.join("ref.npy")));
    let labels = read_i64(&y);
    let bins = 15usize;
    let (mut count, mut conf, mut right) = (vec![0f64; bins], vec![0f64; bins], vec![0f64; bins]);
    let mut brier = 0.0;
    for (row, &label) in mean.outer_iter().zip(labels.iter()) {
        let (top, p) = row
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let b = ((f64::from(p) * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1.0;
        conf[b] += f64::from(p);
        right[b] += f64::from(u8::from(top as i64 == label));
        for (c, &q) in row.iter().enumerate() {
            let target = f64::from(u8::from(c as i64 == label));
            brier += (f64::from(q) - target).powi(2);
        }
    }
    let n = labels.len() as f64;
    let ece: f64 = (0..bins)
        .filter(|&b| count[b] > 0.0)
        .map(|b| count[b] / n * (right[b] / count[b] - conf[b] / count[b]).abs())
        .sum();
    let got_ece = json["ece"].as_f64().expect("ece");
    let got_brier = json["brier"].as_f64().expect("brier");
    assert!(
        (got_ece - ece).abs() < 1e-4,
        "ECE {got_ece}, expected {ece}"
    );
    assert!(
        (got_brier - brier / n).abs() < 1e-4,
        "Brier {got_brier}, expected {}",
        brier / n
    );
}
