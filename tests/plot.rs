//! `modeconn plot` on reports of each kind it draws, written here as the commands write them
//! (the trainer's reports by serialising `modeconn_jobs`' own types, so they cannot drift):
//! PNGs that decode at the size asked and are not blank, SVGs that carry their labels, and the
//! refusals (an unknown extension, metric or command, a missing file, a file that is not JSON).
//! No trainer plugin and no ONNX Runtime are needed.
//!
//! Set `MODECONN_PLOT_KEEP=DIR` to keep the pictures and their reports there, to look at them.

use std::collections::HashSet;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use modeconn_jobs::{
    Along, Basis, CurveEvaluation, Device, EnsembleScores, EvalReport, Evaluation, FgeReport,
    FgeSchedule, PlanePoint, PlaneReport, PointRow, Report, SnapshotsEvaluation, Stats, Summary,
    Trained,
};
use serde_json::{Value, json};

use crate::util::*;

// ---------------------------------------------------------------------------------------------
// Reports

fn stats(v: &[f64]) -> Stats {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    Stats {
        min,
        max,
        mean,
        integral: mean,
    }
}

fn along(points: Vec<PointRow>) -> Along {
    let of = |f: fn(&PointRow) -> f64| stats(&points.iter().map(f).collect::<Vec<_>>());
    let summary = Summary {
        train_loss: of(|p| p.train_loss),
        train_error: of(|p| p.train_error),
        test_nll: of(|p| p.test_nll),
        test_error: of(|p| p.test_error),
    };
    let ensemble = EnsembleScores {
        members: points.len(),
        test_nll: summary.test_nll.min * 0.9,
        test_error: summary.test_error.min * 0.9,
        test_ece: 0.01,
    };
    Along {
        points,
        summary,
        ensemble,
    }
}

/// A point at `t` whose test error is `error`, its other metrics following it.
fn row(t: Option<f64>, member: Option<usize>, error: f64, loss: f64) -> PointRow {
    PointRow {
        t,
        member,
        train_loss: loss,
        train_error: (error - 0.05).max(0.0) * 1.05,
        test_nll: 0.2 + loss * 0.95,
        test_error: error,
        test_ece: 0.01 + 0.05 * error,
    }
}

/// A Bezier curve whose test error dips to a low plateau between its endpoints (6.9% and
/// 7.3%), and the segment between them, whose barrier reaches 80% in the middle.
fn eval_curve(length_ratio: Option<f64>) -> Value {
    let ts: Vec<f64> = (0..=30).map(|k| f64::from(k) / 30.0).collect();
    let ends = |t: f64| 0.069 + 0.004 * t;
    let curve = ts
        .iter()
        .map(|&t| {
            let plateau = 0.007 * (PI * t).sin().powf(0.5);
            let e = ends(t) - plateau;
            row(Some(t), None, e, 0.012 + 0.004 * (2.0 * PI * t).sin().abs())
        })
        .collect();
    let segment = ts
        .iter()
        .map(|&t| {
            let bump = (-((t - 0.5) / 0.16).powi(2)).exp();
            let e = ends(t) + (0.80 - ends(0.5)) * bump;
            row(Some(t), None, e, 0.012 + 2.2 * bump)
        })
        .collect();
    let report = Report::Eval(EvalReport {
        bundle: "curve.safetensors".into(),
        device: Device::Cpu,
        evaluation: Evaluation::Curve(CurveEvaluation {
            basis: Basis::Bezier,
            control_points: 3,
            length: 12.3,
            segment_length: 10.0,
            length_ratio,
            curve: along(curve),
            segment: Some(along(segment)),
        }),
    });
    serde_json::to_value(report).expect("a report")
}

/// Eight snapshots near 7.5% test error, and their running ensemble falling to about 5.9%.
fn eval_snapshots() -> Value {
    let n = 8;
    let members: Vec<PointRow> = (0..n)
        .map(|i| {
            let e = 0.075 + 0.004 * (1.7 * i as f64).sin();
            row(None, Some(i), e, 0.02 + 0.003 * (i as f64).cos())
        })
        .collect();
    let running: Vec<EnsembleScores> = (1..=n)
        .map(|k| {
            let e = 0.059 + 0.016 / (k as f64).powf(1.3);
            EnsembleScores {
                members: k,
                test_nll: 0.19 + 0.08 / k as f64,
                test_error: e,
                test_ece: 0.01 + 0.02 / k as f64,
            }
        })
        .collect();
    let report = Report::Eval(EvalReport {
        bundle: "fge.safetensors".into(),
        device: Device::Cpu,
        evaluation: Evaluation::Snapshots(SnapshotsEvaluation {
            ensemble: running[n - 1],
            members,
            running_ensemble: running,
        }),
    });
    serde_json::to_value(report).expect("a report")
}

/// The plane of a curve from (0, 0) to (10, 0) bent through the control point (5, 3): a
/// valley of low loss along the curve, a ridge across the straight segment.
fn plane_report() -> Value {
    let (nx, ny) = (25, 21);
    let x: Vec<f64> = (0..nx)
        .map(|i| -2.0 + 14.0 * i as f64 / (nx - 1) as f64)
        .collect();
    let y: Vec<f64> = (0..ny)
        .map(|j| -1.5 + 5.5 * j as f64 / (ny - 1) as f64)
        .collect();
    let bezier = |t: f64| {
        let (a, b) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t));
        (b * 5.0 + t * t * 10.0, b * 3.0 + 0.0 * a)
    };
    let curve: Vec<PlanePoint> = (0..=40)
        .map(|k| {
            let t = f64::from(k) / 40.0;
            let (px, py) = bezier(t);
            PlanePoint {
                label: None,
                t: Some(t),
                x: px,
                y: py,
                off_plane: 0.0,
            }
        })
        .collect();
    // Distance to the curve, and how far along it the nearest point is.
    let nearest = |px: f64, py: f64| {
        (0..=400)
            .map(|k| {
                let t = f64::from(k) / 400.0;
                let (cx, cy) = bezier(t);
                (((px - cx).powi(2) + (py - cy).powi(2)).sqrt(), t)
            })
            .fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a })
    };
    let grid = |f: &dyn Fn(f64, f64) -> f64| -> Vec<Vec<f64>> {
        y.iter()
            .map(|&py| x.iter().map(|&px| f(px, py)).collect())
            .collect()
    };
    // The networks sit in narrow basins; the valley between them is shallow.
    let basin = |px: f64, py: f64| {
        [(0.0, 0.0), (10.0, 0.0)]
            .iter()
            .map(|&(ax, ay): &(f64, f64)| (-((px - ax).powi(2) + (py - ay).powi(2)) / 0.5).exp())
            .sum::<f64>()
    };
    let nll = |px: f64, py: f64| {
        let (d, _) = nearest(px, py);
        let valley = 0.03 + 0.02 * (1.0 - basin(px, py)).max(0.0);
        valley + 2.2 * (1.0 - (-(d * d) / 1.2).exp())
    };
    let error = |px: f64, py: f64| {
        let (d, _) = nearest(px, py);
        (0.9 * (1.0 - (-(d * d) / 1.5).exp()) + 0.004 * (1.0 - basin(px, py)).max(0.0)).max(0.0)
    };
    let wd = 5e-4;
    let train_loss = grid(&|px, py| nll(px, py) + wd / 2.0 * (400.0 + px * px + py * py));
    let anchors = [("start", 0.0, 0.0), ("end", 10.0, 0.0), ("bend", 5.0, 3.0)]
        .iter()
        .map(|&(l, ax, ay)| PlanePoint {
            label: Some(l.to_string()),
            t: None,
            x: ax,
            y: ay,
            off_plane: 0.0,
        })
        .collect();
    let report = Report::Plane(PlaneReport {
        bundles: vec!["curve.safetensors".into()],
        device: Device::Cpu,
        u_norm: 10.0,
        v_norm: 3.0,
        wd,
        train_loss,
        train_nll: grid(&nll),
        // A training error of exactly 0 at the networks: the colour map's floor.
        train_error: grid(&|px, py| {
            if basin(px, py) > 0.99 {
                0.0
            } else {
                error(px, py)
            }
        }),
        test_nll: grid(&|px, py| nll(px, py) + 0.2),
        test_error: grid(&|px, py| error(px, py) + 0.06),
        x,
        y,
        anchors,
        curve,
        resumed: 0,
    });
    serde_json::to_value(report).expect("a report")
}

/// Eight FGE snapshots, one in the middle of each 2-epoch cycle.
fn fge_report(schedule: bool) -> Value {
    let (members, per_epoch, cycle) = (8, 100, 200);
    let accuracy: Vec<f64> = (0..members)
        .map(|i| 0.925 + 0.004 * (1.3 * i as f64).sin())
        .collect();
    let running: Vec<f64> = (1..=members)
        .map(|k| 0.943 - 0.018 / (k as f64).powf(1.2))
        .collect();
    let report = Report::Fge(FgeReport {
        members,
        cycle_iterations: cycle,
        member_test_nll: accuracy.iter().map(|a| 2.5 * (1.0 - a)).collect(),
        member_test_accuracy: accuracy.clone(),
        ensemble_test_accuracy: running[members - 1],
        ensemble_test_nll: 0.17,
        running_ensemble_test_nll: running.iter().map(|a| 2.3 * (1.0 - a)).collect(),
        running_ensemble_test_accuracy: running,
        schedule: schedule.then(|| FgeSchedule {
            lr1: 0.05,
            lr2: 0.0005,
            iterations_per_epoch: per_epoch,
            iterations: members * cycle,
            snapshot_iterations: (0..members).map(|k| k * cycle + cycle / 2).collect(),
        }),
        momentum_from: None,
        run: Trained {
            out: "fge.safetensors".into(),
            device: Device::Cpu,
            epochs: 16,
            seconds_per_epoch: 1.0,
        },
    });
    serde_json::to_value(report).expect("a report")
}

/// A Wilson-like interval of `p` over 1000 samples.
fn interval(p: f64) -> Value {
    let half = 1.96 * (p * (1.0 - p) / 1000.0).sqrt() + 0.002;
    json!([(p - half).max(0.0), (p + half).min(1.0)])
}

/// Three attacks on the randomised mode at four L∞ budgets, as `attack --json` writes them.
fn attack_report() -> Value {
    let eps: [f64; 4] = [0.02, 0.05, 0.1, 0.2];
    let attacks: [(&str, f64); 3] = [("pgd", 0.62), ("eot-pgd", 0.5), ("spsa", 0.78)];
    let mut results = Vec::new();
    for (name, strength) in attacks {
        for &e in &eps {
            let acc: f64 = 0.97 * (-e / 0.2 / strength * 1.6).exp();
            let vote = (acc + 0.04).min(0.97);
            results.push(json!({
                "attack": name, "norm": "linf", "eps": e, "samples": 1000,
                "accuracy": acc, "interval": interval(acc), "submissions": 3,
                "majority_vote_accuracy": vote, "majority_vote_interval": interval(vote),
                "max_norm": e, "seconds": 1.5,
            }));
        }
    }
    let worst: Vec<Value> = eps
        .iter()
        .map(|&e| {
            let acc = 0.97 * (-e / 0.2 / 0.5 * 1.6).exp() - 0.01;
            json!({"eps": e, "accuracy": acc, "interval": interval(acc),
                   "attacks": ["pgd", "eot-pgd", "spsa"]})
        })
        .collect();
    json!({
        "command": "attack",
        "settings": {"bundle": "curve.safetensors", "data": "digits", "mode": "randomized",
                     "norm": "linf", "eps": eps, "attacks": ["pgd", "eot-pgd", "spsa"]},
        "samples": 1000,
        "trainer_device": "cpu",
        "clean": {"accuracy": 0.97, "interval": interval(0.97), "submissions": 1,
                  "majority_vote_accuracy": 0.975, "majority_vote_interval": interval(0.975)},
        "results": results,
        "worst_case": worst,
    })
}

/// 15 bins of confidence: over-confident before (accuracy below confidence at the top), near
/// the diagonal after; the lowest bins empty (10 classes: the top probability is over 0.1).
fn reliability(sharpness: f64) -> Vec<Value> {
    (0..15)
        .map(|b| {
            let (lower, upper) = (b as f64 / 15.0, (b + 1) as f64 / 15.0);
            if b < 2 {
                return json!({"lower": lower, "upper": upper, "count": 0,
                              "confidence": 0.0, "accuracy": 0.0});
            }
            let confidence = (lower + upper) / 2.0;
            let count = (3.0 * (12.0 * confidence).exp()) as u64;
            let accuracy =
                (confidence - sharpness * confidence * (1.0 - confidence)).clamp(0.0, 1.0);
            json!({"lower": lower, "upper": upper, "count": count,
                   "confidence": confidence, "accuracy": accuracy})
        })
        .collect()
}

fn calibrate_report() -> Value {
    let part = |samples: usize| {
        json!({
            "samples": samples,
            "before": {"nll": 0.205, "ece": 0.041, "brier": 0.07, "accuracy": 0.952,
                       "reliability": reliability(0.45)},
            "after": {"nll": 0.169, "ece": 0.012, "brier": 0.066, "accuracy": 0.952,
                      "reliability": reliability(0.06)},
        })
    };
    json!({
        "command": "calibrate",
        "bundle": "curve.safetensors",
        "out": "calibrated.safetensors",
        "mode": "ensemble",
        "members": "5 points",
        "bins": 15,
        "temperature": {"before": 1.0, "after": 1.37},
        "held_out": part(300),
        "test": part(1797),
    })
}

fn train_report() -> Value {
    json!({"ok": true, "command": "train", "arch": "mlp", "out": "a.safetensors",
           "device": "cpu", "epochs": 3, "seconds_per_epoch": 0.5, "train_loss": 0.5,
           "train_accuracy": 0.75, "test_nll": 0.25, "test_accuracy": 1.0})
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn write_report(dir: &Path, name: &str, report: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(report).expect("JSON")).expect("write");
    keep(&path);
    path
}

/// Keeps a picture (or report) in `MODECONN_PLOT_KEEP`, when it is set.
fn keep(picture: &Path) {
    if let Some(dir) = std::env::var_os("MODECONN_PLOT_KEEP").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("the folder to keep pictures in");
        let name = picture.file_name().expect("a file name");
        std::fs::copy(picture, dir.join(name)).expect("copy the picture");
    }
}

/// `modeconn plot REPORT --out OUT EXTRA...`, which must succeed and say what it wrote.
fn plot(report: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<Arg<'_>> = vec![&"plot", &report, &"--out", &out];
    args.extend(extra.iter().map(|a| a as Arg<'_>));
    let run = modeconn(&args).ok();
    assert!(
        run.stdout
            .starts_with(&format!("wrote {} (", out.display())),
        "{}",
        run.transcript()
    );
    keep(out);
    run
}

/// `modeconn plot REPORT --out OUT EXTRA...`, which must fail with one line; returns it.
fn refused(report: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args: Vec<Arg<'_>> = vec![&"plot", &report, &"--out", &out];
    args.extend(extra.iter().map(|a| a as Arg<'_>));
    let line = modeconn(&args).fails_cleanly();
    assert!(!out.exists(), "a refused plot wrote {}", out.display());
    line
}

/// A PNG's width, height and its distinct colours, with the share of pixels that are not
/// white.
fn png_facts(path: &Path) -> (u32, u32, usize, f64) {
    let bytes = std::fs::read(path).expect("the PNG");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| &p[..3])
        .collect();
    let colours: HashSet<&[u8]> = pixels.iter().copied().collect();
    let coloured = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
    (
        info.width,
        info.height,
        colours.len(),
        coloured as f64 / pixels.len() as f64,
    )
}

/// Checks a PNG of `width` x `height` with at least `colours` colours and some ink.
#[track_caller]
fn assert_png(path: &Path, width: u32, height: u32, colours: usize) {
    let (w, h, n, ink) = png_facts(path);
    assert_eq!((w, h), (width, height), "{}", path.display());
    assert!(
        n >= colours,
        "{}: {n} colours, expected {colours}",
        path.display()
    );
    assert!(
        ink > 0.02,
        "{}: only {ink} of the pixels are drawn",
        path.display()
    );
}

/// Checks that an SVG holds each of `texts` in a `<text>` element.
#[track_caller]
fn assert_svg(path: &Path, texts: &[&str]) {
    let svg = std::fs::read_to_string(path).expect("the SVG");
    assert!(svg.starts_with("<svg"), "{}: not an SVG", path.display());
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{}: not closed",
        path.display()
    );
    for text in texts {
        assert!(
            svg.contains(&format!(">{text}<")) || svg.contains(&format!(">\n{text}\n</text>")),
            "{}: no text `{text}`",
            path.display()
        );
    }
}

/// Draws `report` to PNG and SVG and checks both.
fn both(name: &str, report: &Value, extra: &[&str], colours: usize, texts: &[&str]) {
    let tmp = tempdir();
    let path = write_report(tmp.path(), &format!("{name}.json"), report);
    let png = tmp.path().join(format!("{name}.png"));
    plot(&path, &png, extra);
    assert_png(&png, 800, 600, colours);
    let svg = tmp.path().join(format!("{name}.svg"));
    plot(&path, &svg, extra);
    assert_svg(&svg, texts);
}

// ---------------------------------------------------------------------------------------------
// Each kind

#[test]
fn a_curve_and_its_segment_are_drawn_against_t() {
    both(
        "eval-curve",
        &eval_curve(Some(1.23)),
        &[],
        8,
        &[
            "t (position along the curve)",
            "test error (%)",
            "test error along the curve, length ratio 1.23",
            "curve (bezier, 3 points)",
            "segment",
        ],
    );
    // Any metric of the rows; losses in nats; no length ratio for coincident endpoints.
    both(
        "eval-curve-train-loss",
        &eval_curve(None),
        &["--metric", "train_loss"],
        8,
        &["train loss (nats)", "train loss along the curve"],
    );
}

#[test]
fn snapshots_are_drawn_with_their_running_ensemble() {
    both(
        "eval-snapshots",
        &eval_snapshots(),
        &[],
        6,
        &["members", "test error (%)", "member", "running ensemble"],
    );
    both(
        "eval-snapshots-nll",
        &eval_snapshots(),
        &["--metric", "test_nll"],
        6,
        &["test NLL (nats)", "running ensemble"],
    );
}

#[test]
fn a_plane_is_drawn_as_filled_contours_on_a_log_scale() {
    both(
        "plane",
        &plane_report(),
        &[],
        40,
        &[
            "u (weight-space distance)",
            "v (weight-space distance)",
            "train loss (nats)",
            "start",
            "bend",
            "end",
        ],
    );
    // Errors in percent, with zeros at the networks.
    both(
        "plane-train-error",
        &plane_report(),
        &["--metric", "train_error"],
        40,
        &["train error (%)"],
    );
}

#[test]
fn an_fge_run_is_drawn_with_its_schedule() {
    both(
        "fge",
        &fge_report(true),
        &[],
        6,
        &[
            "learning rate",
            "iteration",
            "test error (%)",
            "snapshot",
            "member",
            "running ensemble",
            "FGE, cycle 200 iterations (2 epochs)",
        ],
    );
}

#[test]
fn an_attack_is_drawn_against_eps() {
    both(
        "attack",
        &attack_report(),
        &[],
        8,
        &[
            "eps (L∞)",
            "robust accuracy (%)",
            "robust accuracy, mode randomized",
            "pgd",
            "eot-pgd",
            "spsa",
            "worst case",
        ],
    );
    both(
        "attack-vote",
        &attack_report(),
        &["--metric", "majority_vote_accuracy"],
        8,
        &["robust accuracy of the majority vote (%)"],
    );
}

#[test]
fn a_calibration_is_drawn_as_reliability_diagrams() {
    both(
        "calibrate",
        &calibrate_report(),
        &[],
        8,
        &[
            "confidence",
            "accuracy",
            "perfect calibration",
            "test split, mode ensemble: T 1.00 → 1.37, ECE 4.1% → 1.2%",
            "before: T 1.00, ECE 4.1%",
            "after: T 1.37, ECE 1.2%",
        ],
    );
    both(
        "calibrate-held-out",
        &calibrate_report(),
        &["--metric", "held_out"],
        8,
        &["held-out samples, mode ensemble: T 1.00 → 1.37, ECE 4.1% → 1.2%"],
    );
}

#[test]
fn size_and_title_are_as_asked() {
    let tmp = tempdir();
    let path = write_report(tmp.path(), "plane.json", &plane_report());
    let png = tmp.path().join("small.PNG");
    plot(&path, &png, &["--width", "640", "--height", "480"]);
    assert_png(&png, 640, 480, 40);
    let png = tmp.path().join("large.png");
    plot(&path, &png, &["--width", "1600", "--height", "1200"]);
    assert_png(&png, 1600, 1200, 40);
    let svg = tmp.path().join("titled.svg");
    plot(&path, &svg, &["--title", "the valley"]);
    assert_svg(&svg, &["the valley"]);
    // A picture already there is replaced.
    let run = plot(&path, &svg, &["--title", "again"]);
    assert!(
        run.stdout.contains("(plane, train loss)"),
        "{}",
        run.transcript()
    );
    assert_svg(&svg, &["again"]);
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn what_cannot_be_drawn_is_refused_in_one_line() {
    let tmp = tempdir();
    let dir = tmp.path();
    let curve = write_report(dir, "curve.json", &eval_curve(Some(1.1)));
    let png = dir.join("out.png");

    let line = refused(&curve, &dir.join("out.jpg"), &[]);
    assert!(
        line.contains("out.jpg") && line.contains(".png or .svg"),
        "{line}"
    );

    let line = refused(&curve, &png, &["--metric", "accuracy"]);
    assert!(line.contains("`accuracy`"), "{line}");
    for name in [
        "test_error",
        "train_loss",
        "train_error",
        "test_nll",
        "test_ece",
    ] {
        assert!(line.contains(name), "the metrics are not listed: {line}");
    }
    let plane = write_report(dir, "plane.json", &plane_report());
    let line = refused(&plane, &png, &["--metric", "test_ece"]);
    assert!(
        line.contains("train_nll") && line.contains("test_error"),
        "{line}"
    );

    let train = write_report(dir, "train.json", &train_report());
    let line = refused(&train, &png, &[]);
    assert!(
        line.contains("`train`") && line.contains("calibrate"),
        "{line}"
    );

    let missing = dir.join("missing.json");
    let line = refused(&missing, &png, &[]);
    assert!(
        line.contains("missing.json") && line.contains("No such file"),
        "{line}"
    );

    let not_json = dir.join("bundle.safetensors");
    std::fs::write(&not_json, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").expect("write");
    let line = refused(&not_json, &png, &[]);
    assert!(
        line.contains("bundle.safetensors") && line.contains("not a JSON file"),
        "{line}"
    );

    let no_command = write_report(dir, "plain.json", &json!({"x": [1, 2]}));
    let line = refused(&no_command, &png, &[]);
    assert!(line.contains("\"command\""), "{line}");

    let old = write_report(dir, "old-fge.json", &fge_report(false));
    let line = refused(&old, &png, &[]);
    assert!(line.contains("no schedule"), "{line}");

    let mut broken = plane_report();
    broken["train_loss"][3] = json!([1.0]);
    let broken = write_report(dir, "broken-plane.json", &broken);
    let line = refused(&broken, &png, &[]);
    assert!(
        line.contains("train_loss") && line.contains("grid"),
        "{line}"
    );
}
