//! Users' own PyTorch models through every trainer command: a classifier of the digits with
//! batch norm, a residual `Add` and a `Concat` (tests/python/own_model.py), trained in PyTorch
//! and exported as the README says, is connected by a curve, run through FGE, trained from
//! scratch and from its state_dict, its packed curve gets its statistics recomputed, and a
//! point written back as a state_dict loads into the PyTorch model and predicts as modeconn
//! does. Bundles of the wrong kind are refused before any work.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::trainer_cli::with_real;
use crate::util::*;

/// The PyTorch side, made once: `model.onnx`, the endpoints `a.safetensors` and
/// `b.safetensors`, the test inputs `x.npy` and labels `y.npy`, PyTorch's errors `torch.json`.
fn own() -> PathBuf {
    fixture("own-model", |dir| {
        run_python("own_model.py", &[&"train", &dir]);
    })
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

const SMALL: [&str; 4] = ["--data", "digits", "--device", "cpu"];

fn json_file(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_curve_connects_a_users_own_pytorch_endpoints() {
    let own = own();
    let tmp = tempdir();
    let (onnx, a, b) = (
        path(&own, "model.onnx"),
        path(&own, "a.safetensors"),
        path(&own, "b.safetensors"),
    );
    let (x, curve, report) = (
        path(&own, "x.npy"),
        path(tmp.path(), "curve.safetensors"),
        path(tmp.path(), "report.json"),
    );
    // The endpoints as `pack` makes them, as a user serving them would have.
    let (pa, pb) = (
        path(tmp.path(), "a-packed.safetensors"),
        path(tmp.path(), "b-packed.safetensors"),
    );
    for (state, bundle) in [(&a, &pa), (&b, &pb)] {
        modeconn(&[
            &"pack",
            &"--onnx",
            &onnx,
            &"--snapshots",
            state,
            &"--out",
            bundle,
        ])
        .ok();
    }
    let mut args = vec![
        "curve",
        "--start",
        &pa,
        "--end",
        &pb,
        "--epochs",
        "10",
        "--bn-grid",
        "11",
    ];
    args.extend(SMALL);
    args.extend(["--out", &curve]);
    with_real(&args).ok();

    // The bundle keeps the user's graph and names.
    let inspect = modeconn(&[&"inspect", &curve, &"--json"]).ok().json();
    assert_eq!(inspect["input"]["name"], "x", "{inspect}");
    assert_eq!(inspect["output"]["name"], "linear", "{inspect}");
    let grid: Vec<&str> = inspect["grid_tensors"]
        .as_array()
        .expect("grid tensors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(grid.contains(&"bn2.running_var"), "{grid:?}");

    // t = 0 is the start endpoint: its trained tensors are PyTorch's, bit for bit.
    let start = path(tmp.path(), "start.safetensors");
    modeconn(&[&"unpack", &curve, &"--at", &"0", &"--out", &start]).ok();
    let same = run_python("own_model.py", &[&"same", &start, &a]);
    assert!(same.stdout.contains("same"), "{}", same.transcript());

    // Along the curve the error stays low; along the segment it does not.
    let mut args = vec![
        "eval",
        &curve,
        "--segment",
        "--points",
        "5",
        "--json",
        &report,
    ];
    args.extend(SMALL);
    with_real(&args).ok();
    let r = json_file(&report);
    let max = |path: &str| {
        r.pointer(path)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{path} in {r}"))
    };
    let (on_curve, on_segment) = (
        max("/curve/summary/test_error/max"),
        max("/segment/summary/test_error/max"),
    );
    let torch = json_file(&path(&own, "torch.json"));
    let torch_a = torch["a"].as_f64().expect("PyTorch's error");
    let at0 = r["curve"]["points"][0]["test_error"].as_f64().expect("t=0");
    eprintln!(
        "test error: PyTorch a {torch_a:.4}, curve t=0 {at0:.4}, curve max {on_curve:.4}, \
         segment max {on_segment:.4}"
    );
    assert!(
        (at0 - torch_a).abs() <= 0.01,
        "t=0 {at0} vs PyTorch {torch_a}"
    );
    assert!(on_curve < 0.1, "the curve's worst error {on_curve}");
    assert!(
        on_segment > on_curve + 0.15,
        "the segment ({on_segment}) should be far worse than the curve ({on_curve})"
    );

    // A point written back as a state_dict loads into the user's model and predicts what
    // modeconn predicts there.
    let (mid, p_torch, p_mc) = (
        path(tmp.path(), "mid.safetensors"),
        path(tmp.path(), "p_torch.npy"),
        path(tmp.path(), "p_mc.npy"),
    );
    modeconn(&[&"unpack", &curve, &"--at", &"0.5", &"--out", &mid]).ok();
    let loaded = run_python("own_model.py", &[&"run", &mid, &x, &p_torch]);
    assert!(
        loaded
            .stdout
            .contains(r#"{"missing": [], "unexpected": []}"#),
        "{}",
        loaded.transcript()
    );
    modeconn(&[
        &"predict",
        &curve,
        &"--at",
        &"0.5",
        &"--input",
        &x,
        &"--out",
        &p_mc,
        &"--device",
        &"cpu",
    ])
    .ok();
    assert_close(
        &read_f32(Path::new(&p_mc)),
        &read_f32(Path::new(&p_torch)),
        1e-5,
    );
}

#[test]
fn fge_and_train_take_a_users_own_model() {
    let own = own();
    let tmp = tempdir();
    let (onnx, a) = (path(&own, "model.onnx"), path(&own, "a.safetensors"));
    let (fge, packed, scratch, resumed) = (
        path(tmp.path(), "fge.safetensors"),
        path(tmp.path(), "a-packed.safetensors"),
        path(tmp.path(), "scratch.safetensors"),
        path(tmp.path(), "init.safetensors"),
    );
    // FGE from the state_dict, and from the bundle `pack` makes of it.
    let mut args = vec![
        "fge", "--onnx", &onnx, "--init", &a, "--cycle", "2", "--lr1", "0.02", "--lr2", "0.001",
        "--epochs", "2",
    ];
    args.extend(SMALL);
    args.extend(["--out", &fge]);
    let run = with_real(&args).ok();
    assert!(run.stdout.contains("members"), "{}", run.transcript());
    modeconn(&[
        &"pack",
        &"--onnx",
        &onnx,
        &"--snapshots",
        &a,
        &"--out",
        &packed,
    ])
    .ok();
    // `eval` takes the bundle `pack` wrote: PyTorch's endpoint, scored as PyTorch scores it.
    let report = path(tmp.path(), "packed.json");
    let mut args = vec!["eval", &packed, "--json", &report];
    args.extend(SMALL);
    with_real(&args).ok();
    let r = json_file(&report);
    let error = r["members"][0]["test_error"]
        .as_f64()
        .unwrap_or_else(|| panic!("no member error in {r}"));
    let torch = json_file(&path(&own, "torch.json"));
    let torch_a = torch["a"].as_f64().expect("PyTorch's error");
    assert!(
        (error - torch_a).abs() < 1e-6,
        "eval {error} vs PyTorch {torch_a}"
    );
    let mut args = vec![
        "fge", "--init", &packed, "--cycle", "2", "--lr1", "0.02", "--lr2", "0.001", "--epochs",
        "2",
    ];
    args.extend(SMALL);
    args.extend(["--out", &fge]);
    with_real(&args).ok();
    let inspect = modeconn(&[&"inspect", &fge, &"--json"]).ok().json();
    assert_eq!(inspect["kind"], "snapshots", "{inspect}");
    assert_eq!(inspect["input"]["name"], "x", "{inspect}");

    // A curve straight from the state_dicts, with the graph beside them.
    let curve = path(tmp.path(), "curve.safetensors");
    let b = path(&own, "b.safetensors");
    let mut args = vec![
        "curve",
        "--onnx",
        &onnx,
        "--start",
        &a,
        "--end",
        &b,
        "--epochs",
        "1",
        "--bn-grid",
        "3",
    ];
    args.extend(SMALL);
    args.extend(["--out", &curve]);
    with_real(&args).ok();
    let inspect = modeconn(&[&"inspect", &curve, &"--json"]).ok().json();
    assert_eq!(
        (inspect["kind"].as_str(), inspect["points"].as_u64()),
        (Some("curve"), Some(3))
    );

    // From scratch (a seeded initialisation) the user's architecture learns the digits.
    let mut args = vec!["train", "--onnx", &onnx, "--epochs", "8", "--lr", "0.05"];
    args.extend(SMALL);
    args.extend(["--out", &scratch]);
    let accuracy = test_accuracy(&with_real(&args).ok());
    assert!(
        accuracy > 0.9,
        "trained from scratch: test accuracy {accuracy}"
    );

    // From the state_dict: one epoch at a small rate keeps what PyTorch learnt.
    let mut args = vec![
        "train", "--onnx", &onnx, "--init", &a, "--epochs", "1", "--lr", "0.001",
    ];
    args.extend(SMALL);
    args.extend(["--out", &resumed]);
    let accuracy = test_accuracy(&with_real(&args).ok());
    assert!(
        accuracy > 0.97,
        "from PyTorch's state_dict: test accuracy {accuracy}"
    );
}

/// The test accuracy a training command's summary prints.
fn test_accuracy(run: &Run) -> f64 {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("test_accuracy"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no test accuracy\n{}", run.transcript()))
}

#[test]
fn bn_recomputes_the_statistics_of_a_packed_curve() {
    let own = own();
    let tmp = tempdir();
    let (onnx, a, b, x) = (
        path(&own, "model.onnx"),
        path(&own, "a.safetensors"),
        path(&own, "b.safetensors"),
        path(&own, "x.npy"),
    );
    let (packed, fresh) = (
        path(tmp.path(), "packed.safetensors"),
        path(tmp.path(), "fresh.safetensors"),
    );
    modeconn(&[
        &"pack",
        &"--onnx",
        &onnx,
        &"--curve",
        &"polychain",
        &"--points",
        &a,
        &b,
        &"--out",
        &packed,
    ])
    .ok();
    let mut args = vec!["bn", &packed, "--bn-grid", "5"];
    args.extend(SMALL);
    args.extend(["--out", &fresh]);
    let run = with_real(&args).ok();
    assert!(run.stdout.contains("statistics"), "{}", run.transcript());
    let inspect = modeconn(&[&"inspect", &fresh, &"--json"]).ok().json();
    assert_eq!(
        inspect["bn_grid"].as_array().map(Vec::len),
        Some(5),
        "{inspect}"
    );
    // At the ends the recomputed statistics are close to PyTorch's running averages: the
    // endpoint's predictions keep their classes.
    let (p_old, p_new) = (path(tmp.path(), "old.npy"), path(tmp.path(), "new.npy"));
    for (bundle, out) in [(&packed, &p_old), (&fresh, &p_new)] {
        modeconn(&[
            &"predict",
            bundle,
            &"--at",
            &"0",
            &"--input",
            &x,
            &"--out",
            out,
            &"--device",
            &"cpu",
        ])
        .ok();
    }
    let (old, new) = (read_f32(Path::new(&p_old)), read_f32(Path::new(&p_new)));
    let argmax = |p: &ndarray::ArrayD<f32>| -> Vec<usize> {
        p.outer_iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                    )
                    .0
            })
            .collect()
    };
    let (o, n) = (argmax(&old), argmax(&new));
    let agree = o.iter().zip(&n).filter(|(a, b)| a == b).count() as f64 / o.len() as f64;
    assert!(
        agree > 0.97,
        "t=0 before and after bn agree on {agree} of the classes"
    );
    assert_ne!(old, new, "the statistics at t=0 were recomputed");
}

#[test]
fn bundles_of_the_wrong_kind_are_refused_before_any_work() {
    let own = own();
    let tmp = tempdir();
    let (onnx, a, b) = (
        path(&own, "model.onnx"),
        path(&own, "a.safetensors"),
        path(&own, "b.safetensors"),
    );
    let (set, curve, out) = (
        path(tmp.path(), "set.safetensors"),
        path(tmp.path(), "curve.safetensors"),
        path(tmp.path(), "out.safetensors"),
    );
    modeconn(&[
        &"pack",
        &"--onnx",
        &onnx,
        &"--snapshots",
        &a,
        &b,
        &a,
        &b,
        &"--out",
        &set,
    ])
    .ok();
    modeconn(&[
        &"pack",
        &"--onnx",
        &onnx,
        &"--curve",
        &"bezier",
        &"--points",
        &a,
        &b,
        &b,
        &"--out",
        &curve,
    ])
    .ok();
    let packed_a = path(tmp.path(), "a.bundle.safetensors");
    modeconn(&[
        &"pack",
        &"--onnx",
        &onnx,
        &"--snapshots",
        &a,
        &"--out",
        &packed_a,
    ])
    .ok();

    let mut args = vec![
        "curve", "--start", &packed_a, "--end", &set, "--epochs", "1",
    ];
    args.extend(SMALL);
    args.extend(["--out", &out]);
    let line = with_real(&args).fails_cleanly();
    assert!(
        line.contains("snapshot set of 4 members") && line.contains("--end-member"),
        "{line}"
    );
    let mut args = vec![
        "fge", "--init", &curve, "--cycle", "2", "--lr1", "0.02", "--lr2", "0.001", "--epochs", "1",
    ];
    args.extend(SMALL);
    args.extend(["--out", &out]);
    let line = with_real(&args).fails_cleanly();
    assert!(
        line.contains("is a curve of 3 control points, not one network"),
        "{line}"
    );
    let mut args = vec!["bn", &set];
    args.extend(SMALL);
    args.extend(["--out", &out]);
    let line = with_real(&args).fails_cleanly();
    assert!(line.contains("is a snapshot set"), "{line}");
    assert!(!Path::new(&out).exists(), "nothing was written");

    // `unpack` takes a t of a curve and a member of a set, each in range.
    let line = modeconn(&[&"unpack", &curve, &"--at", &"2", &"--out", &out]).fails_cleanly();
    assert!(line.contains("t = 2 is outside [0, 1]"), "{line}");
    let line = modeconn(&[&"unpack", &curve, &"--member", &"0", &"--out", &out]).fails_cleanly();
    assert!(line.contains("this bundle is a curve"), "{line}");
    let missing = "/nonexistent-folder/state.safetensors";
    let line = modeconn(&[&"unpack", &set, &"--member", &"3", &"--out", &missing]).fails_cleanly();
    assert_eq!(line.matches(missing).count(), 1, "{line}");
    assert!(!Path::new(&out).exists(), "nothing was written");
}
