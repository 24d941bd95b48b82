//! `modeconn plane` through the real trainer plugin: the report it writes (and the state it
//! keeps only until then), the table it prints, and what it refuses before any work.

use serde_json::Value;

// The MLP curve of the calibration tests serves here too.
use crate::calibrate::curve;
use crate::trainer_cli::with_real;
use crate::util::*;

#[test]
fn plane_writes_its_report_prints_the_points_and_leaves_no_state() {
    let curve = curve().to_string_lossy().into_owned();
    let dir = tempdir();
    let json = dir.path().join("plane.json");
    let json_arg = json.to_string_lossy().into_owned();
    let run = with_real(&[
        "plane", &curve, "--data", "digits", "--device", "cpu", "--grid", "4", "--json", &json_arg,
    ])
    .ok();
    let text = run.stdout.clone();
    for needed in [
        "start",
        "end",
        "bend",
        "train loss",
        "test error",
        "grid 4x4",
    ] {
        assert!(text.contains(needed), "the table lacks `{needed}`:\n{text}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the report is written"))
            .expect("the report is JSON");
    assert_eq!(report["command"], "plane");
    for metric in [
        "train_loss",
        "train_nll",
        "train_error",
        "test_nll",
        "test_error",
    ] {
        let rows = report[metric].as_array().expect("a grid");
        assert_eq!(rows.len(), 4, "{metric}");
        assert!(
            rows.iter()
                .all(|r| r.as_array().is_some_and(|r| r.len() == 4))
        );
    }
    assert_eq!(report["x"].as_array().map(Vec::len), Some(4));
    assert!(report["curve"].as_array().is_some_and(|c| c.len() > 2));
    let partial = dir.path().join("plane.json.partial");
    assert!(
        !partial.exists(),
        "the state is left beside the finished report"
    );
}

#[test]
fn plane_refuses_two_bundles_and_resume_without_a_report() {
    let curve = curve().to_string_lossy().into_owned();
    let two = with_real(&["plane", &curve, &curve, "--data", "digits"]).fails_cleanly();
    assert!(two.contains("two span no plane"), "{two}");
    let jpg =
        with_real(&["plane", &curve, "--data", "digits", "--plot", "plane.jpg"]).fails_cleanly();
    assert!(
        jpg.contains("--plot plane.jpg") && jpg.contains(".png or .svg"),
        "{jpg}"
    );
    // A usage error, with clap's usage lines.
    let resume = with_real(&["plane", &curve, "--data", "digits", "--resume"]);
    assert!(!resume.status.success(), "{}", resume.transcript());
    assert!(
        resume
            .stderr
            .contains("required arguments were not provided")
            && resume.stderr.contains("--json"),
        "{}",
        resume.transcript()
    );
}
