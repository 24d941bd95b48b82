//! `modeconn pack` of a model exported by `torch.onnx.export` (`tests/python/torch_case.py`):
//! the packed bundle gives PyTorch's own probabilities; bad exports and names fail clearly.

use std::path::{Path, PathBuf};

use crate::util::*;

fn snaps(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| dir.join(format!("snap{i}.safetensors")))
        .collect()
}

fn pack(dir: &Path, onnx: &str, mode: &[&str], points: &[PathBuf], out: &Path) -> Run {
    let model = dir.join(onnx);
    let mut args: Vec<Arg<'_>> = vec![&"pack", &"--onnx", &model];
    args.extend(mode.iter().map(|s| s as Arg<'_>));
    args.extend(points.iter().map(|p| p as Arg<'_>));
    args.extend([&"--out" as Arg<'_>, &out]);
    modeconn(&args)
}

fn predict(
    bundle: &Path,
    x: &Path,
    selection: &[&str],
    tmp: &Path,
) -> (ndarray::ArrayD<f32>, ndarray::ArrayD<f32>) {
    let (pm, out) = (tmp.join("pm.npy"), tmp.join("p.npy"));
    let mut args: Vec<Arg<'_>> = vec![
        &"predict",
        &bundle,
        &"--input",
        &x,
        &"--per-member",
        &pm,
        &"--out",
        &out,
    ];
    args.extend(selection.iter().map(|s| s as Arg<'_>));
    modeconn(&args).ok();
    (read_f32(&pm), read_f32(&out))
}

fn inspect(bundle: &Path) -> serde_json::Value {
    modeconn(&[&"inspect", &bundle, &"--json"]).ok().json()
}

#[test]
fn packed_snapshots_give_pytorch_probabilities() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("snapshots.safetensors");
    let run = pack(&dir, "model.onnx", &["--snapshots"], &snaps(&dir), &bundle).ok();
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("num_batches_tracked"),
        "pack did not list the skipped tensors\n{}",
        run.transcript()
    );

    let info = inspect(&bundle);
    assert_eq!(field(&info, "kind"), "snapshots", "{info}");
    assert_eq!(number(field(&info, "points")), 3.0, "{info}");

    let x = dir.join("x.npy");
    let ref_members = read_f32(&dir.join("ref_members.npy"));
    let ref_mean = read_f32(&dir.join("ref_mean.npy"));
    for budget in ["1024", "0"] {
        let (pm, mean) = predict(
            &bundle,
            &x,
            &["--members", "all", "--static-budget", budget],
            tmp.path(),
        );
        assert_close(&pm, &ref_members, TOL);
        assert_close(&mean, &ref_mean, TOL);
    }
}

#[test]
fn packed_polychain_gives_pytorch_interpolation() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("chain.safetensors");
    pack(
        &dir,
        "model.onnx",
        &["--curve", "polychain", "--points"],
        &snaps(&dir),
        &bundle,
    )
    .ok();

    let info = inspect(&bundle);
    assert_eq!(field(&info, "kind"), "curve", "{info}");
    assert_eq!(field(&info, "basis"), "polychain", "{info}");
    assert_eq!(number(field(&info, "points")), 3.0, "{info}");
    // One bn_grid point per point file: t_k = k / (K - 1).
    assert_ts(&numbers(field(&info, "bn_grid")), &[0.0, 0.5, 1.0]);

    let x = dir.join("x.npy");
    let ref_chain = read_f32(&dir.join("ref_chain.npy"));
    for budget in ["1024", "0"] {
        let (pm, mean) = predict(
            &bundle,
            &x,
            &["--at", "0.25,0.5,0.8", "--static-budget", budget],
            tmp.path(),
        );
        assert_close(&pm, &ref_chain, TOL);
        assert_close(&mean, &mean0(&ref_chain), TOL);
    }
}

#[test]
fn legacy_export_is_refused_with_the_export_to_use() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("legacy.safetensors");
    let run = pack(&dir, "legacy.onnx", &["--snapshots"], &snaps(&dir), &bundle);
    let line = run.fails_cleanly();
    assert!(
        line.contains("dynamo=True") && line.contains("optimize=False"),
        "the error does not say how to export: {line}"
    );
    assert!(!bundle.exists(), "a failed pack left {}", bundle.display());
}

#[test]
fn unmatched_tensor_name_is_named() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("renamed.safetensors");
    let mut points = snaps(&dir);
    points[1] = dir.join("snap_renamed.safetensors"); // holds head.weight instead of fc.weight
    let run = pack(&dir, "model.onnx", &["--snapshots"], &points, &bundle);
    let line = run.fails_cleanly();
    assert!(
        line.contains("head.weight"),
        "the error does not name the unmatched tensor: {line}"
    );
}

#[test]
fn missing_point_file_is_named() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("missing.safetensors");
    let mut points = snaps(&dir);
    points[2] = tmp.path().join("no-such-snapshot.safetensors");
    let run = pack(&dir, "model.onnx", &["--snapshots"], &points, &bundle);
    let line = run.fails_cleanly();
    assert!(
        line.contains("no-such-snapshot.safetensors"),
        "the error does not name the file: {line}"
    );
}
