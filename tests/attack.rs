//! `modeconn attack` on the digits, with the real trainer plugin and ONNX Runtime: the attacks
//! are real (PGD breaks a fixed point), the budgets hold, eps 0 is the clean accuracy, the
//! saved inputs give the reported figures again through `predict`, the trainer differentiates
//! the same networks the runtime runs (batch-norm statistics interpolated on the grid
//! included), and EOT-PGD against the randomised mode is at least as strong as a transfer from
//! one fixed point.

use std::path::{Path, PathBuf};

use ndarray::Axis;
use serde_json::Value;

use crate::trainer_cli::with_real;
use crate::util::*;

/// An MLP curve (one bend) and an FGE set on the digits, and a PreResNet-8 curve whose
/// batch-norm statistics live on a grid of 5.
fn models() -> PathBuf {
    fixture("attack-models", |dir| {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (a, b, c, f) = (
            p("a.safetensors"),
            p("b.safetensors"),
            p("curve.safetensors"),
            p("fge.safetensors"),
        );
        let common = ["--data", "digits", "--device", "cpu", "--quiet"];
        for (out, seed) in [(&a, "1"), (&b, "2")] {
            let mut args = vec!["train", "--arch", "mlp", "--hidden", "64", "--epochs", "10"];
            args.extend(common);
            args.extend(["--seed", seed, "--out", out]);
            with_real(&args).ok();
        }
        let mut args = vec![
            "curve", "--start", &a, "--end", &b, "--bends", "1", "--epochs", "10", "--out", &c,
        ];
        args.extend(common);
        with_real(&args).ok();
        let mut args = vec![
            "fge", "--init", &a, "--epochs", "4", "--cycle", "2", "--lr1", "0.02", "--lr2",
            "0.002", "--out", &f,
        ];
        args.extend(common);
        with_real(&args).ok();

        let (pa, pb, pc) = (
            p("pa.safetensors"),
            p("pb.safetensors"),
            p("pc.safetensors"),
        );
        let small = ["--limit", "512", "--epochs", "2"];
        for (out, seed) in [(&pa, "1"), (&pb, "2")] {
            let mut args = vec!["train", "--arch", "preresnet8"];
            args.extend(common);
            args.extend(small);
            args.extend(["--seed", seed, "--out", out]);
            with_real(&args).ok();
        }
        let mut args = vec![
            "curve",
            "--start",
            &pa,
            "--end",
            &pb,
            "--bends",
            "1",
            "--bn-grid",
            "5",
            "--out",
            &pc,
        ];
        args.extend(common);
        args.extend(small);
        with_real(&args).ok();
    })
}

/// Runs `attack` on `bundle` with `args`, saving the inputs in `dir`, and returns its report.
fn attack(bundle: &Path, dir: &Path, args: &[&str]) -> Value {
    let report = dir.join("report.json");
    let adv = dir.join("adv");
    let mut all: Vec<String> = vec![
        "attack".into(),
        bundle.to_string_lossy().into_owned(),
        "--data".into(),
        "digits".into(),
        "--device".into(),
        "cpu".into(),
        "--quiet".into(),
        "--save-adv".into(),
        adv.to_string_lossy().into_owned(),
        "--json".into(),
        report.to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let run = with_real(&refs).ok();
    assert!(
        run.stdout.contains("robust accuracy"),
        "{}",
        run.transcript()
    );
    serde_json::from_str(&std::fs::read_to_string(&report).expect("the report is written"))
        .expect("the report is JSON")
}

fn results<'a>(report: &'a Value, attack: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["attack"] == attack)
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn eps_zero_is_the_clean_accuracy_and_accuracy_falls_with_eps() {
    let dir = models();
    let tmp = tempdir();
    for (bundle, mode) in [("curve.safetensors", "at"), ("fge.safetensors", "ensemble")] {
        let out = tmp.path().join(mode);
        let report = attack(
            &dir.join(bundle),
            &out,
            &[
                "--mode",
                mode,
                "--attack",
                "fgsm,pgd,spsa,square",
                "--eps",
                "0,0.05,0.1,0.2",
                "--square-queries",
                "100",
            ],
        );
        let clean = f(&report["clean"]["accuracy"]);
        assert!(clean > 0.8, "{mode}: clean accuracy {clean}");
        for attack in ["fgsm", "pgd", "spsa", "square"] {
            let rows = results(&report, attack);
            assert_eq!(rows.len(), 4, "{attack}");
            assert_eq!(f(&rows[0]["eps"]), 0.0);
            assert_eq!(f(&rows[0]["accuracy"]), clean, "{mode} {attack} at eps 0");
            for pair in rows.windows(2) {
                let (weak, strong) = (pair[0], pair[1]);
                assert!(
                    f(&strong["accuracy"]) <= f(&weak["interval"][1]),
                    "{mode} {attack}: accuracy rose from {} at eps {} to {} at eps {}",
                    weak["accuracy"],
                    weak["eps"],
                    strong["accuracy"],
                    strong["eps"]
                );
            }
        }
        let worst = report["worst_case"].as_array().expect("worst case");
        assert_eq!(worst.len(), 4);
        for (w, eps) in worst.iter().zip([0.0, 0.05, 0.1, 0.2]) {
            assert_eq!(f(&w["eps"]), eps);
            let at_eps = report["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter(|r| f(&r["eps"]) == eps)
                .map(|r| f(&r["accuracy"]))
                .fold(1.0, f64::min);
            assert!(
                f(&w["accuracy"]) <= at_eps,
                "the worst case is below every attack"
            );
        }
    }
}

#[test]
fn pgd_breaks_a_fixed_point_within_its_budget() {
    let dir = models();
    let tmp = tempdir();
    let report = attack(
        &dir.join("curve.safetensors"),
        tmp.path(),
        &[
            "--mode", "at", "--t", "0", "--attack", "pgd", "--eps", "0.3",
        ],
    );
    let pgd = results(&report, "pgd")[0];
    assert!(
        f(&pgd["accuracy"]) < 0.10,
        "PGD at eps 0.3 left {}",
        pgd["accuracy"]
    );
    let adv_dir = tmp.path().join("adv");
    let clean = read_f32(&adv_dir.join("clean.npy"));
    let adv = read_f32(&adv_dir.join(pgd["file"].as_str().expect("file")));
    assert_eq!(clean.shape(), adv.shape());
    let worst = adv
        .iter()
        .zip(clean.iter())
        .map(|(a, c)| (a - c).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 0.3 + 1e-6, "L∞ perturbation {worst}");
    assert!(worst > 0.25, "PGD used {worst} of its budget 0.3");
    assert!(
        adv.iter().all(|&v| (0.0..=1.0).contains(&v)),
        "outside the clip range"
    );

    // L2: every sample's perturbation within its ball.
    let report = attack(
        &dir.join("curve.safetensors"),
        &tmp.path().join("l2"),
        &[
            "--mode", "at", "--attack", "pgd,spsa", "--norm", "l2", "--eps", "1.5",
        ],
    );
    for row in report["results"].as_array().expect("results") {
        assert!(f(&row["max_norm"]) <= 1.5 + 1e-4, "{row}");
        let adv = read_f32(
            &tmp.path()
                .join("l2/adv")
                .join(row["file"].as_str().expect("file")),
        );
        for (a, c) in adv.axis_iter(Axis(0)).zip(clean.axis_iter(Axis(0))) {
            let n = a
                .iter()
                .zip(c.iter())
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt();
            assert!(n <= 1.5 + 1e-4, "L2 perturbation {n}");
        }
        assert!(adv.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
}

/// `predict` on the saved inputs gives the reported accuracy: exactly for a fixed point and
/// an ensemble, within the interval for the randomised mode.
#[test]
fn saved_inputs_give_the_reported_accuracy_through_predict() {
    let dir = models();
    let tmp = tempdir();
    let bundle = dir.join("curve.safetensors");
    let cases: [(&str, &[&str], &[&str]); 3] = [
        ("at", &["--t", "0.5"], &["--at", "0.5"]),
        ("ensemble", &["--grid", "5"], &["--grid", "5"]),
        ("randomized", &[], &["--randomized"]),
    ];
    for (mode, attack_flags, predict_flags) in cases {
        let out = tmp.path().join(mode);
        let mut args = vec!["--mode", mode, "--attack", "pgd", "--eps", "0.1"];
        args.extend(attack_flags);
        let report = attack(&bundle, &out, &args);
        let row = results(&report, "pgd")[0];
        let file = out.join("adv").join(row["file"].as_str().expect("file"));
        let labels = out.join("adv/labels.npy");
        let mut args: Vec<Arg<'_>> = vec![
            &"predict",
            &bundle,
            &"--input",
            &file,
            &"--labels",
            &labels,
            &"--device",
            &"cpu",
            &"--json",
        ];
        args.extend(predict_flags.iter().map(|a| a as Arg<'_>));
        let predicted = f(&modeconn(&args).ok().json()["accuracy"]);
        let reported = f(&row["accuracy"]);
        if mode == "randomized" {
            let [lo, hi] = [f(&row["interval"][0]), f(&row["interval"][1])];
            assert!(
                (lo..=hi).contains(&predicted),
                "randomized: predict says {predicted}, the report {reported} [{lo}, {hi}]"
            );
        } else {
            assert_eq!(predicted, reported, "{mode}");
        }
        // The labels are int64 and the clean inputs the digits' test split.
        assert_eq!(read_i64(&labels).len(), 360);
    }
}

/// The trainer's network at t, with the bundle's statistics interpolated between grid points,
/// is the runtime's: on the clean inputs and on its own adversarial inputs, the accuracy the
/// attacker measures is the one the runtime answers.
#[test]
fn the_trainer_attacks_the_network_the_runtime_runs() {
    let dir = models();
    let tmp = tempdir();
    let report = attack(
        &dir.join("pc.safetensors"),
        tmp.path(),
        &[
            "--mode", "at", "--t", "0.3", "--attack", "fgsm,pgd", "--eps", "0,0.05",
        ],
    );
    for row in report["results"].as_array().expect("results") {
        let (trainer, runtime) = (f(&row["attacker_model_accuracy"]), f(&row["accuracy"]));
        assert!(
            (trainer - runtime).abs() <= 1.0 / 360.0 + 1e-9,
            "{row}: the trainer measures {trainer}, the runtime {runtime}"
        );
    }
}

#[test]
fn eot_pgd_against_the_randomised_mode_beats_a_transfer_from_one_point() {
    let dir = models();
    let tmp = tempdir();
    let report = attack(
        &dir.join("curve.safetensors"),
        tmp.path(),
        &[
            "--mode",
            "randomized",
            "--attack",
            "eot-pgd,transfer",
            "--source-t",
            "0.5",
            "--eps",
            "0.1",
            "--resubmissions",
            "5",
        ],
    );
    let eot = results(&report, "eot-pgd")[0];
    let transfer = results(&report, "transfer")[0];
    assert!(
        f(&eot["accuracy"]) <= f(&transfer["interval"][1]),
        "EOT-PGD left {} robust, the transfer {} {}",
        eot["accuracy"],
        transfer["accuracy"],
        transfer["interval"]
    );
    assert_eq!(eot["submissions"], 5);
    assert!(eot["majority_vote_accuracy"].is_number());
    assert_eq!(report["settings"]["source"]["t"], "0.5");

    // Keyed mode with a fresh key: the same input always meets the same point, so one
    // submission says it all.
    let keyed = attack(
        &dir.join("curve.safetensors"),
        &tmp.path().join("keyed"),
        &["--mode", "keyed", "--attack", "pgd", "--eps", "0.1"],
    );
    assert_eq!(keyed["results"][0]["submissions"], 1);
    assert_eq!(keyed["settings"]["key"], "fresh, unknown to the attacker");
}

#[test]
fn bad_attack_flags_are_one_line_errors() {
    let dir = models();
    let curve = dir.join("curve.safetensors");
    let fge = dir.join("fge.safetensors");
    let cases: [(&Path, &[&str], &str); 6] = [
        (
            &curve,
            &[
                "--mode", "at", "--attack", "square", "--norm", "l2", "--eps", "1",
            ],
            "linf only",
        ),
        (
            &curve,
            &[
                "--mode",
                "at",
                "--members",
                "0",
                "--attack",
                "pgd",
                "--eps",
                "0.1",
            ],
            "--members is for snapshot sets",
        ),
        (
            &fge,
            &[
                "--mode", "at", "--t", "0", "--attack", "pgd", "--eps", "0.1",
            ],
            "--t and --grid are for curves",
        ),
        (
            &curve,
            &["--mode", "at", "--attack", "pgd", "--eps", "-0.1"],
            "not negative",
        ),
        (
            &curve,
            &[
                "--mode",
                "randomized",
                "--t",
                "0",
                "--attack",
                "pgd",
                "--eps",
                "0.1",
            ],
            "draws its own members",
        ),
        (
            &curve,
            &[
                "--mode", "at", "--attack", "pgd", "--eps", "0.1", "--clip", "1,0",
            ],
            "LO < HI",
        ),
    ];
    for (bundle, args, expected) in cases {
        let mut all: Vec<&str> = vec![
            "attack",
            bundle.to_str().expect("path"),
            "--data",
            "digits",
            "--device",
            "cpu",
        ];
        all.extend(args);
        let line = with_real(&all).fails_cleanly();
        assert!(line.contains(expected), "{args:?}: {}", line);
    }
    // An input range the data leaves: the trainer names it.
    let line = with_real(&[
        "attack",
        curve.to_str().expect("path"),
        "--data",
        "digits",
        "--device",
        "cpu",
        "--mode",
        "at",
        "--attack",
        "pgd",
        "--eps",
        "0.1",
        "--clip",
        "0.2,0.8",
    ])
    .fails_cleanly();
    assert!(line.contains("outside the clip range"), "{}", line);
}
