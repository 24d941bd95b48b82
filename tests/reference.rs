//! `scripts/convert_reference.py`: a curve checkpoint in the layout of dnn-mode-connectivity
//! (`tests/python/reference_case.py` writes one for a small residual CNN) converts in one step,
//! the `modeconn pack` command it prints makes a bundle, and that bundle predicts what the curve
//! itself computes in PyTorch; checkpoints that do not fit the base model are refused, naming
//! the tensor.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{ArrayD, IxDyn};

use crate::util::*;

/// Rows of the inputs the tests write.
const ROWS: usize = 4;

/// The converter under test.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join("convert_reference.py")
}

/// A Python command with `tests/python` on the path, so that `--model reference_case:base_model`
/// and `import reference_case` resolve.
fn python_command() -> Command {
    let mut cmd = Command::new(python());
    cmd.env("PYTHONPATH", python_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CUDA_VISIBLE_DEVICES", "");
    cmd
}

/// `python scripts/convert_reference.py CHECKPOINT --model reference_case:base_model ...`.
fn convert(checkpoint: &Path, out: &Path, curve: &str) -> Run {
    convert_with(checkpoint, out, curve, "base_model", &[])
}

/// The same with the factory `reference_case:<factory>` and more arguments.
fn convert_with(checkpoint: &Path, out: &Path, curve: &str, factory: &str, more: &[&str]) -> Run {
    let model = format!("reference_case:{factory}");
    let mut cmd = python_command();
    cmd.arg(script())
        .arg(checkpoint)
        .args(["--model", &model])
        .args(["--model-args", r#"{"classes": 5}"#])
        .args(["--input-shape", "3,8,8", "--out"])
        .arg(out)
        .args(["--curve", curve])
        .args(more);
    run_command(
        cmd,
        format!(
            "convert_reference.py {} --model {model} --out {} --curve {curve} {}",
            checkpoint.display(),
            out.display(),
            more.join(" ")
        ),
    )
}

/// Inputs `[ROWS, 3, 8, 8]`, deterministic and of order one.
fn write_inputs(path: &Path) {
    let x = ArrayD::from_shape_fn(IxDyn(&[ROWS, 3, 8, 8]), |i| {
        let n = (i[0] * 193 + i[1] * 64 + i[2] * 8 + i[3]) as f32;
        (n * 0.731).sin() * 1.5 + 0.1 * (n * 0.057).cos()
    });
    write_f32(path, &x);
}

/// The folder of a case: x.npy, and what `reference_case.py` writes for `curve` at `ts`.
fn case(curve: &str, ts: &[f64]) -> PathBuf {
    fixture(&format!("reference-{curve}"), |dir| {
        let x = dir.join("x.npy");
        write_inputs(&x);
        let ts = ts_arg(ts);
        run_python(
            "reference_case.py",
            &[&dir, &"--curve", &curve, &"--x", &x, &"--ts", &ts],
        );
    })
}

/// The `modeconn pack` command the converter printed, as arguments of `modeconn`.
#[track_caller]
fn printed_pack_command(run: &Run) -> Vec<String> {
    let line = run
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("modeconn pack "))
        .unwrap_or_else(|| panic!("no `modeconn pack` command printed\n{}", run.transcript()));
    line.split_whitespace().skip(1).map(String::from).collect()
}

/// Largest |a - b| over two arrays of the same shape.
fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

/// t values of the Bezier cases: the ends, off and on the middle.
const BEZIER_TS: [f64; 4] = [0.0, 0.3, 0.5, 1.0];

/// One conversion: a checkpoint of `reference_case.py`, the base model's factory and the
/// converter's arguments, and what to compare.
struct Convert<'a> {
    curve: &'a str,
    checkpoint: &'a str,
    factory: &'a str,
    more: &'a [&'a str],
    /// t values of `predict --at`, compared with the curve's own forward.
    ts: &'a [f64],
    /// (t, k): compared with the base model loaded with point k as well.
    knots: &'a [(f64, usize)],
    /// Whether the base model has a layer its forward never uses (so pack needs
    /// `--allow-unmatched`).
    unused: bool,
}

const DEFAULT: Convert<'static> = Convert {
    curve: "bezier",
    checkpoint: "checkpoint.pt",
    factory: "base_model",
    more: &[],
    ts: &BEZIER_TS,
    knots: &[(0.0, 0), (1.0, 2)],
    unused: false,
};

/// Converts, packs with the printed command, and compares `predict --at ts` with the curve's own
/// forward in PyTorch, and the points `knots` with the base model loaded with point k.
fn converts_packs_and_predicts(c: Convert<'_>) {
    let Convert {
        curve,
        checkpoint,
        factory,
        more,
        ts,
        knots,
        unused,
    } = c;
    let dir = case(curve, ts);
    let tmp = tempdir();
    let out = tmp.path().join("converted");
    let run = convert_with(&dir.join(checkpoint), &out, curve, factory, more).ok();
    assert_eq!(
        run.stdout.contains("never uses"),
        unused,
        "whether the converter reports unused tensors\n{}",
        run.transcript()
    );
    assert!(
        !unused || run.stdout.contains("spare.weight"),
        "the converter does not name the unused tensors\n{}",
        run.transcript()
    );
    assert!(
        run.stdout
            .contains("modeconn bn curve.safetensors --data DATA --bn-grid 21"),
        "the converter does not say to recompute the batch-norm statistics\n{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("coeff_layer."),
        "the converter does not list the ignored curve buffers\n{}",
        run.transcript()
    );
    for k in 0..3 {
        assert!(out.join(format!("point_{k}.safetensors")).is_file());
    }
    assert!(!out.join("point_3.safetensors").exists());

    let pack = printed_pack_command(&run);
    let expected_points: Vec<String> = (0..3)
        .map(|k| {
            out.join(format!("point_{k}.safetensors"))
                .display()
                .to_string()
        })
        .collect();
    let model = out.join("model.onnx").display().to_string();
    let mut expected = vec!["pack", "--onnx", &model, "--curve", curve, "--points"];
    expected.extend(expected_points.iter().map(String::as_str));
    if unused {
        expected.push("--allow-unmatched");
    }
    expected.extend(["--out", "curve.safetensors"]);
    assert_eq!(pack, expected, "the printed pack command");
    let args: Vec<Arg<'_>> = pack.iter().map(|a| a as Arg<'_>).collect();
    modeconn_with(&args, |c| {
        c.current_dir(tmp.path());
    })
    .ok();
    let bundle = tmp.path().join("curve.safetensors");

    let info = modeconn(&[&"inspect", &bundle, &"--json"]).ok().json();
    assert_eq!(field(&info, "kind"), "curve", "{info}");
    assert_eq!(field(&info, "basis"), curve, "{info}");
    assert_eq!(number(field(&info, "points")), 3.0, "{info}");

    let x = dir.join("x.npy");
    let ref_t = read_f32(&dir.join("ref_t.npy"));
    let ref_points = read_f32(&dir.join("ref_points.npy"));
    let at = ts_arg(ts);
    for budget in ["1024", "0"] {
        let pm = tmp.path().join(format!("pm-{budget}.npy"));
        modeconn(&[
            &"predict",
            &bundle,
            &"--input",
            &x,
            &"--at",
            &at,
            &"--per-member",
            &pm,
            &"--static-budget",
            &budget,
        ])
        .ok();
        let pm = read_f32(&pm);
        for (i, t) in ts.iter().enumerate() {
            let got = select(&pm, &[i]);
            let want = select(&ref_t, &[i]);
            eprintln!(
                "{curve}, static budget {budget}: t = {t}: max |bundle - CurveNet| = {:.3e}",
                max_abs_diff(&got, &want)
            );
            assert_close(&got, &want, TOL);
        }
        for &(t, k) in knots {
            let got = select(&pm, &[index_of(ts, t)]);
            let want = select(&ref_points, &[k]);
            eprintln!(
                "{curve}, static budget {budget}: t = {t}: max |bundle - base with point {k}| = {:.3e}",
                max_abs_diff(&got, &want)
            );
            assert_close(&got, &want, TOL);
        }
    }
}

#[test]
fn bezier_checkpoint_converts_and_predicts_the_curve() {
    converts_packs_and_predicts(DEFAULT);
}

#[test]
fn polychain_checkpoint_converts_and_predicts_the_curve() {
    converts_packs_and_predicts(Convert {
        curve: "polychain",
        ts: &[0.0, 0.25, 0.5, 1.0],
        knots: &[(0.0, 0), (0.5, 1), (1.0, 2)],
        ..DEFAULT
    });
}

/// A base model whose layers are named differently (`features.0` for the curve's `conv1`) but
/// registered in the same order, as the reference's own base classes are.
#[test]
fn match_order_converts_a_base_model_named_differently() {
    converts_packs_and_predicts(Convert {
        factory: "renamed_base",
        more: &["--match", "order"],
        ..DEFAULT
    });
}

/// A layer that neither network runs is not in the export; the printed command leaves it out.
#[test]
fn layer_the_network_never_uses_is_left_out_of_the_bundle() {
    converts_packs_and_predicts(Convert {
        checkpoint: "spare.pt",
        factory: "spare_base",
        unused: true,
        ..DEFAULT
    });
}

#[test]
fn other_names_without_match_order_or_another_order_are_refused() {
    let dir = case("bezier", &BEZIER_TS);
    let tmp = tempdir();
    let checkpoint = dir.join("checkpoint.pt");
    let out = tmp.path().join("renamed");
    let line = convert_with(&checkpoint, &out, "bezier", "renamed_base", &[]).fails_cleanly();
    assert!(
        line.contains("net.conv1.weight_0") && line.contains("--match order"),
        "the error does not name the tensor and suggest --match order: {line}"
    );
    let out = tmp.path().join("misordered");
    let run = convert_with(
        &checkpoint,
        &out,
        "bezier",
        "misordered_base",
        &["--match", "order"],
    );
    let line = run.fails_cleanly();
    // The classifier comes first in that base model: four tensors later bn1's running mean
    // lines up with a weight.
    assert!(
        line.contains("net.bn1.running_mean") && line.contains("order"),
        "the error does not name where the orders part: {line}"
    );
    assert!(!out.join("model.onnx").exists());
}

#[test]
fn convert_is_importable_and_writes_what_the_cli_writes() {
    let dir = case("bezier", &BEZIER_TS);
    let tmp = tempdir();
    let (cli, module) = (tmp.path().join("cli"), tmp.path().join("module"));
    convert(&dir.join("checkpoint.pt"), &cli, "bezier").ok();
    // The loaded dict rather than a path, and an example input of one row.
    let code = r#"
import sys, torch
sys.path.insert(0, sys.argv[1])
import convert_reference, reference_case
checkpoint = torch.load(sys.argv[2], map_location="cpu", weights_only=True)
info = convert_reference.convert(checkpoint, reference_case.base_model(), torch.zeros(1, 3, 8, 8),
                                 sys.argv[3], "bezier")
assert info.points == 3, info
print(info.pack_command)
"#;
    let mut cmd = python_command();
    cmd.args(["-c", code])
        .arg(script().parent().expect("scripts/"))
        .arg(dir.join("checkpoint.pt"))
        .arg(&module);
    let run = run_command(cmd, "python -c 'convert_reference.convert(...)'".into()).ok();
    assert!(
        run.stdout.trim().starts_with("modeconn pack --onnx"),
        "{}",
        run.transcript()
    );
    for k in 0..3 {
        let name = format!("point_{k}.safetensors");
        let (a, b) = (
            std::fs::read(cli.join(&name)).expect("the CLI's point file"),
            std::fs::read(module.join(&name)).expect("the module's point file"),
        );
        assert!(a == b, "{name} differs between the CLI and convert()");
    }
    // The export from a one-row example keeps the batch dynamic: four rows predict.
    let bundle = tmp.path().join("curve.safetensors");
    let model = module.join("model.onnx");
    let points: Vec<PathBuf> = (0..3)
        .map(|k| module.join(format!("point_{k}.safetensors")))
        .collect();
    modeconn(&[
        &"pack",
        &"--onnx",
        &model,
        &"--curve",
        &"bezier",
        &"--points",
        &points[0],
        &points[1],
        &points[2],
        &"--out",
        &bundle,
    ])
    .ok();
    let pm = tmp.path().join("pm.npy");
    let x = dir.join("x.npy");
    modeconn(&[
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--at",
        &"1",
        &"--per-member",
        &pm,
    ])
    .ok();
    let got = read_f32(&pm);
    let want = select(&read_f32(&dir.join("ref_points.npy")), &[2]);
    assert_close(&got, &want, TOL);
}

#[test]
fn checkpoint_that_does_not_fit_is_refused_naming_the_tensor() {
    let dir = case("bezier", &BEZIER_TS);
    let tmp = tempdir();
    for (file, tensor) in [
        ("missing.pt", "net.conv2.weight_1"),
        ("extra.pt", "net.head.weight_0"),
    ] {
        let out = tmp.path().join(file);
        let run = convert(&dir.join(file), &out, "bezier");
        let line = run.fails_cleanly();
        assert!(
            line.contains(tensor),
            "{file}: the error does not name {tensor}: {line}"
        );
        assert!(
            !out.join("model.onnx").exists() && !out.join("point_0.safetensors").exists(),
            "{file}: a refused checkpoint left files in {}",
            out.display()
        );
    }
}
