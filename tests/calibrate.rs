//! `modeconn calibrate` on the digits, with the real trainer plugin: networks trained without
//! 300 held-out samples are calibrated on those; the NLL there does not rise, the written
//! bundle holds the same tensors byte for byte with only its temperature changed, and its
//! answers are the original members' probabilities raised to `1 / T` and renormalised.

use std::path::{Path, PathBuf};

use modeconn_runtime::Bundle;
use ndarray::{Array2, Axis};
use serde_json::Value;

use crate::trainer_cli::with_real;
use crate::util::*;

/// An MLP curve whose endpoints and bend never saw the 300 samples held out with seed 1.
pub(crate) fn curve() -> PathBuf {
    fixture("calibrate-curve", |dir| {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (a, b, c) = (
            p("a.safetensors"),
            p("b.safetensors"),
            p("curve.safetensors"),
        );
        let common = [
            "--data",
            "digits",
            "--held-out",
            "300",
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            "8",
        ];
        for (out, seed) in [(&a, "1"), (&b, "2")] {
            let mut args = vec!["train", "--arch", "mlp", "--hidden", "64"];
            args.extend(common);
            args.extend(["--seed", seed, "--out", out]);
            with_real(&args).ok();
        }
        // The held-out split is drawn with the job's seed: the curve uses seed 1 too.
        let mut args = vec![
            "curve", "--start", &a, "--end", &b, "--bends", "1", "--out", &c,
        ];
        args.extend(common);
        with_real(&args).ok();
    })
    .join("curve.safetensors")
}

fn calibrate(bundle: &Path, out: &Path, json: &Path, mode: &[&str]) -> Value {
    let mut args: Vec<String> = [
        "calibrate",
        &bundle.to_string_lossy(),
        "--data",
        "digits",
        "--held-out",
        "300",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        &out.to_string_lossy(),
        "--json",
        &json.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(mode.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = with_real(&refs).ok();
    assert!(run.stdout.contains("temperature"), "{}", run.transcript());
    serde_json::from_str(&std::fs::read_to_string(json).expect("the report")).expect("JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn calibration_lowers_the_held_out_nll_and_changes_only_the_temperature() {
    let bundle = curve();
    let tmp = tempdir();
    let out = tmp.path().join("calibrated.safetensors");
    let report = calibrate(
        &bundle,
        &out,
        &tmp.path().join("r.json"),
        &["--mode", "ensemble"],
    );
    let t = f(&report["temperature"]["after"]);
    assert_eq!(f(&report["temperature"]["before"]), 1.0);
    assert!(t > 0.0 && t != 1.0, "{report}");
    let held = &report["held_out"];
    assert_eq!(held["samples"], 300);
    assert!(
        f(&held["after"]["nll"]) <= f(&held["before"]["nll"]),
        "the held-out NLL rose: {held}"
    );
    assert_eq!(report["test"]["samples"], 360);
    for part in ["held_out", "test"] {
        for when in ["before", "after"] {
            let s = &report[part][when];
            for key in ["nll", "ece", "brier", "accuracy"] {
                assert!(s[key].is_number(), "{part} {when} {key}: {s}");
            }
        }
    }

    // The same tensors, byte for byte; the metadata differs in the temperature only.
    let (a, b) = (
        Bundle::open(&bundle).expect("the input"),
        Bundle::open(&out).expect("the output"),
    );
    assert_eq!(a.tensors().len(), b.tensors().len());
    for entry in a.tensors() {
        let other = b.tensor(&entry.name).expect("the same tensor");
        assert_eq!(entry.shape, other.shape, "{}", entry.name);
        let (x, y) = (a.data(entry), b.data(other));
        assert!(
            x.iter()
                .zip(y.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{} changed",
            entry.name
        );
    }
    assert_eq!(a.graph().bytes(), b.graph().bytes());
    let mut meta = b.metadata().clone();
    assert_eq!(meta.temperature, t);
    meta.temperature = a.metadata().temperature;
    assert_eq!(meta.to_map(), a.metadata().to_map());

    // Its answers: each member's probabilities at T = 1 raised to 1 / t, renormalised, averaged.
    let x = tmp.path().join("x.npy");
    let digits = std::env::var("MODECONN_DIGITS").expect("MODECONN_DIGITS (scripts/setup.sh)");
    let code = format!(
        "import numpy as np; np.save({x:?}, np.load({digits:?})['x_test'][:40].astype(np.float32))",
        x = x.to_string_lossy(),
        digits = digits
    );
    let status = std::process::Command::new(python())
        .arg("-c")
        .arg(&code)
        .status()
        .expect("run python");
    assert!(status.success(), "{code}");
    let pm = tmp.path().join("pm.npy");
    let p = tmp.path().join("p.npy");
    modeconn(&[
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--grid",
        &"5",
        &"--per-member",
        &pm,
        &"--device",
        &"cpu",
    ])
    .ok();
    modeconn(&[
        &"predict",
        &out,
        &"--input",
        &x,
        &"--grid",
        &"5",
        &"--out",
        &p,
        &"--device",
        &"cpu",
    ])
    .ok();
    let members = read_f32(&pm);
    let got = read_f32(&p);
    let (m, n, c) = (members.shape()[0], members.shape()[1], members.shape()[2]);
    let mut expected = Array2::<f64>::zeros((n, c));
    for k in 0..m {
        for i in 0..n {
            let row: Vec<f64> = (0..c)
                .map(|j| f64::from(members[[k, i, j]]).powf(1.0 / t))
                .collect();
            let sum: f64 = row.iter().sum();
            for j in 0..c {
                expected[[i, j]] += row[j] / sum / m as f64;
            }
        }
    }
    let worst = expected
        .iter()
        .zip(got.iter())
        .map(|(e, g)| (e - f64::from(*g)).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "calibrated answers differ by {worst}");
    assert_eq!(got.len_of(Axis(0)), 40);
}

#[test]
fn per_sample_modes_fit_the_expected_nll_of_one_drawn_member() {
    let bundle = curve();
    let tmp = tempdir();
    let report = calibrate(
        &bundle,
        &tmp.path().join("c.safetensors"),
        &tmp.path().join("r.json"),
        &["--mode", "randomized", "--randomized-grid", "5"],
    );
    let held = &report["held_out"];
    assert!(
        f(&held["after"]["nll"]) <= f(&held["before"]["nll"]),
        "{held}"
    );
    assert_eq!(report["members"]["grid"], 5);

    // A bundle the flags do not fit, and a folder that cannot be written, are one line each.
    let line = with_real(&[
        "calibrate",
        &bundle.to_string_lossy(),
        "--data",
        "digits",
        "--held-out",
        "300",
        "--mode",
        "at",
        "--members",
        "0",
        "--out",
        &tmp.path().join("x.safetensors").to_string_lossy(),
    ])
    .fails_cleanly();
    assert!(line.contains("--members is for snapshot sets"), "{line}");
    let line = with_real(&[
        "calibrate",
        &bundle.to_string_lossy(),
        "--data",
        "digits",
        "--held-out",
        "300",
        "--mode",
        "ensemble",
        "--out",
        "/no/such/folder/c.safetensors",
    ])
    .fails_cleanly();
    assert!(line.contains("/no/such/folder"), "{line}");
}

#[test]
fn validation_fits_on_the_first_test_samples_and_reports_on_the_rest_with_reliability_bins() {
    let bundle = curve();
    let tmp = tempdir();
    let (out, json) = (
        tmp.path().join("calibrated.safetensors"),
        tmp.path().join("r.json"),
    );
    let (b, o, j) = (
        bundle.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
        json.to_string_lossy().into_owned(),
    );
    let base = [
        "calibrate",
        &b,
        "--data",
        "digits",
        "--device",
        "cpu",
        "--quiet",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--validation",
        "120",
        "--mode",
        "ensemble",
        "--out",
        &o,
        "--json",
        &j,
    ]);
    let run = with_real(&args).ok();
    assert!(
        run.stdout
            .contains("fitted on the first 120 samples of the test split"),
        "{}",
        run.transcript()
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the report")).expect("JSON");
    assert_eq!(report["held_out"]["samples"], 120);
    assert_eq!(report["test"]["samples"], 240);
    assert!(f(&report["held_out"]["after"]["nll"]) <= f(&report["held_out"]["before"]["nll"]));
    // The reliability bins hold every test sample once, and their gaps make the ECE.
    for when in ["before", "after"] {
        let s = &report["test"][when];
        let bins = s["reliability"].as_array().expect("reliability bins");
        assert_eq!(bins.len(), 15);
        let count: f64 = bins.iter().map(|b| f(&b["count"])).sum();
        assert_eq!(count, 240.0);
        let ece: f64 = bins
            .iter()
            .map(|b| f(&b["count"]) / 240.0 * (f(&b["accuracy"]) - f(&b["confidence"])).abs())
            .sum();
        assert!((ece - f(&s["ece"])).abs() < 1e-9, "{when}: {ece} vs {s}");
    }
    // Nothing left to report on is refused; so is fitting on nothing named.
    let mut all = base.to_vec();
    all.extend(["--validation", "360", "--mode", "ensemble", "--out", &o]);
    let message = with_real(&all).fails_cleanly();
    assert!(message.contains("some must be left"), "{message}");
    let mut neither = base.to_vec();
    neither.extend(["--mode", "ensemble", "--out", &o]);
    let run = with_real(&neither);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--held-out") && run.stderr.contains("--validation"));
}
