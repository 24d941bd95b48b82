//! What cannot be used is refused before any work is done, with one line that names the path or
//! flag at fault and what to do: a graph exported with a fixed batch, metadata the loader would
//! refuse, an output folder the trainer cannot write to, folders and other files passed as
//! bundles. Each cause is said once, and no C++ backtrace reaches the user. Also: `pack` places
//! batch-norm statistics of their own files on a grid finer than the control points.

use std::path::{Path, PathBuf};

use crate::trainer_cli::{modeconn_env, real_plugin};
use crate::util::*;

fn snaps(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| dir.join(format!("snap{i}.safetensors")))
        .collect()
}

/// `modeconn pack --onnx DIR/ONNX` with `args`, writing `out`.
fn pack(dir: &Path, onnx: &str, args: &[Arg<'_>], out: &Path) -> Run {
    let model = dir.join(onnx);
    let mut all: Vec<Arg<'_>> = vec![&"pack", &"--onnx", &model];
    all.extend_from_slice(args);
    all.extend([&"--out" as Arg<'_>, &out]);
    modeconn(&all)
}

/// Asserts that a message says each thing once: the operating system's text, and `path`.
#[track_caller]
fn said_once(line: &str, path: &Path) {
    let path = path.to_string_lossy();
    assert_eq!(
        line.matches(&*path).count(),
        1,
        "the path is not named exactly once: {line}"
    );
    assert!(
        line.matches("(os error").count() <= 1,
        "the operating system's text is given more than once: {line}"
    );
    assert!(
        !line.contains(" at path "),
        "a temporary file is named: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// pack

#[test]
fn a_graph_exported_with_a_fixed_batch_is_refused_at_pack_time() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("static.safetensors");
    let mut args: Vec<Arg<'_>> = vec![&"--snapshots"];
    let points = snaps(&dir);
    args.extend(points.iter().map(|p| p as Arg<'_>));
    let line = pack(&dir, "static.onnx", &args, &bundle).fails_cleanly();
    assert!(
        line.contains("batch") && line.contains("dynamic_shapes"),
        "the error does not say to export a dynamic batch: {line}"
    );
    assert!(!bundle.exists(), "a bundle was written");
}

#[test]
fn pack_refuses_labels_and_temperatures_the_loader_would_refuse() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("bad.safetensors");
    let snap = dir.join("snap0.safetensors");
    let cases: &[(&str, &str, &[&str])] = &[
        ("--labels", "a,b", &["--labels", "2", "5 classes"]),
        ("--temperature", "0", &["--temperature", "`0`"]),
        ("--temperature", "-1", &["--temperature", "`-1`"]),
        ("--temperature", "nan", &["--temperature"]),
        ("--temperature", "inf", &["--temperature"]),
        ("--temperature", "1e-40", &["--temperature"]),
    ];
    for (flag, value, names) in cases {
        let args: Vec<Arg<'_>> = vec![&"--snapshots", &snap, flag, value];
        let line = pack(&dir, "model.onnx", &args, &bundle).fails_cleanly();
        for n in *names {
            assert!(
                line.contains(n),
                "{flag} {value}: `{n}` is not named: {line}"
            );
        }
        assert!(!bundle.exists(), "{flag} {value}: a bundle was written");
    }
    // What the loader accepts, pack writes.
    let args: Vec<Arg<'_>> = vec![
        &"--snapshots",
        &snap,
        &"--labels",
        &"a,b,c,d,e",
        &"--temperature",
        &"2",
    ];
    pack(&dir, "model.onnx", &args, &bundle).ok();
    let info = modeconn(&[&"inspect", &bundle, &"--json"]).ok().json();
    assert_eq!(number(field(&info, "temperature")), 2.0, "{info}");
}

#[test]
fn pack_places_batch_norm_statistics_of_their_own_files_on_a_finer_grid() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("chain-bn.safetensors");
    let points = snaps(&dir);
    let stats: Vec<PathBuf> = (0..5)
        .map(|i| dir.join(format!("bn{i}.safetensors")))
        .collect();
    let mut args: Vec<Arg<'_>> = vec![&"--curve", &"polychain", &"--points"];
    args.extend(points.iter().map(|p| p as Arg<'_>));
    args.push(&"--bn-stats");
    args.extend(stats.iter().map(|p| p as Arg<'_>));
    args.extend([&"--bn-grid" as Arg<'_>, &"0,0.25,0.5,0.75,1"]);
    let run = pack(&dir, "model.onnx", &args, &bundle).ok();
    assert!(
        run.stdout.contains("5 files"),
        "pack does not say where the statistics come from\n{}",
        run.transcript()
    );

    let info = modeconn(&[&"inspect", &bundle, &"--json"]).ok().json();
    assert_eq!(number(field(&info, "points")), 3.0, "{info}");
    assert_ts(
        &numbers(field(&info, "bn_grid")),
        &[0.0, 0.25, 0.5, 0.75, 1.0],
    );

    // On a grid point (0.25) and between two (0.6), against PyTorch with those statistics.
    let x = dir.join("x.npy");
    let reference = read_f32(&dir.join("ref_bn.npy"));
    for budget in ["1024", "0"] {
        let (pm, out) = (tmp.path().join("pm.npy"), tmp.path().join("p.npy"));
        modeconn(&[
            &"predict",
            &bundle,
            &"--input",
            &x,
            &"--at",
            &"0.25,0.6",
            &"--static-budget",
            &budget,
            &"--per-member",
            &pm,
            &"--out",
            &out,
        ])
        .ok();
        assert_close(&read_f32(&pm), &reference, TOL);
    }
    // The statistics at the knots (what pack stores without --bn-stats) give other answers.
    let knots = read_f32(&dir.join("ref_chain.npy"));
    let (a, b) = (&select(&reference, &[0]), &select(&knots, &[0]));
    let diff = a
        .iter()
        .zip(b.iter())
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff > 1e-3,
        "the fixture cannot tell the grid's statistics from the knots'"
    );
}

#[test]
fn pack_refuses_a_batch_norm_grid_that_does_not_fit_its_files() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let bundle = tmp.path().join("bad-grid.safetensors");
    let points = snaps(&dir);
    let stats: Vec<PathBuf> = (0..5)
        .map(|i| dir.join(format!("bn{i}.safetensors")))
        .collect();
    let cases: &[(&str, &str)] = &[
        ("0,0.5,1", "3 t values for 5"),
        ("0,0.5,0.25,0.75,1", "increasing"),
        ("0.1,0.25,0.5,0.75,1", "0"),
        ("0,0.25,0.5,0.75,0.9", "1"),
        ("0,0.25,x,0.75,1", "x"),
    ];
    for (grid, says) in cases {
        let mut args: Vec<Arg<'_>> = vec![&"--curve", &"polychain", &"--points"];
        args.extend(points.iter().map(|p| p as Arg<'_>));
        args.push(&"--bn-stats");
        args.extend(stats.iter().map(|p| p as Arg<'_>));
        args.extend([&"--bn-grid" as Arg<'_>, grid]);
        let line = pack(&dir, "model.onnx", &args, &bundle).fails_cleanly();
        assert!(
            line.contains("--bn-grid") && line.contains(says),
            "--bn-grid {grid}: {line}"
        );
        assert!(!bundle.exists(), "--bn-grid {grid}: a bundle was written");
    }
    // Statistics on a grid are for curves; a snapshot set keeps each member's own.
    let mut args: Vec<Arg<'_>> = vec![&"--snapshots"];
    args.extend(points.iter().map(|p| p as Arg<'_>));
    args.extend([&"--bn-stats" as Arg<'_>, &stats[0], &stats[4]]);
    args.extend([&"--bn-grid" as Arg<'_>, &"0,1"]);
    let line = pack(&dir, "model.onnx", &args, &bundle).fails_cleanly();
    assert!(line.contains("--bn-stats"), "{line}");
    // A statistics file that lacks a statistic of the graph is named.
    let empty = tmp.path().join("empty.safetensors");
    std::fs::write(&empty, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").expect("write");
    let mut args: Vec<Arg<'_>> = vec![&"--curve", &"polychain", &"--points"];
    args.extend(points.iter().map(|p| p as Arg<'_>));
    args.extend([&"--bn-stats" as Arg<'_>, &stats[0], &empty, &stats[4]]);
    args.extend([&"--bn-grid" as Arg<'_>, &"0,0.5,1"]);
    let line = pack(&dir, "model.onnx", &args, &bundle).fails_cleanly();
    assert!(
        line.contains("empty.safetensors") && line.contains("running_mean"),
        "{line}"
    );
    assert!(!bundle.exists(), "a bundle was written");
}

#[test]
fn pack_says_once_that_the_output_folder_is_missing() {
    let dir = torch_fixture();
    let tmp = tempdir();
    let out = tmp.path().join("no-such-folder").join("x.safetensors");
    let snap = dir.join("snap0.safetensors");
    let line = pack(&dir, "model.onnx", &[&"--snapshots", &snap], &out).fails_cleanly();
    said_once(&line, &out);
    assert!(line.contains("No such file or directory"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Paths that are not bundles

/// Every command that opens a bundle, on `path`; returns each command's error line.
fn open_everywhere(path: &Path, x: &Path) -> Vec<(String, String)> {
    let serve_spec = format!("m={}", path.display());
    let runs = [
        ("inspect", modeconn(&[&"inspect", &path])),
        (
            "predict",
            modeconn(&[&"predict", &path, &"--input", &x, &"--at", &"0.5"]),
        ),
        (
            "serve",
            modeconn(&[&"serve", &serve_spec, &"--port", &"0", &"--device", &"cpu"]),
        ),
    ];
    runs.into_iter()
        .map(|(what, run)| (what.to_string(), run.fails_cleanly()))
        .collect()
}

#[test]
fn a_folder_passed_as_a_bundle_is_named_as_a_folder() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    for (what, line) in open_everywhere(tmp.path(), &dir.join("x.npy")) {
        assert!(
            line.contains(&format!(
                "{} is a folder, not a bundle file",
                tmp.path().display()
            )),
            "{what}: {line}"
        );
        said_once(&line, tmp.path());
        assert!(!line.contains("os error"), "{what}: {line}");
    }
}

#[test]
fn a_file_that_is_not_a_bundle_says_why_in_plain_words() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let text = tmp.path().join("notes.txt");
    let body: String = (1..=100).map(|i| format!("{i}\n")).collect();
    std::fs::write(&text, &body).expect("write a text file");
    let declared = u64::from_le_bytes(body.as_bytes()[..8].try_into().expect("8 bytes"));
    for (what, line) in open_everywhere(&text, &dir.join("x.npy")) {
        let expected = format!(
            "{} is not a bundle: its first 8 bytes give a header of {declared} bytes, more than \
             the file's {}",
            text.display(),
            body.len()
        );
        assert!(line.contains(&expected), "{what}: {line}");
        said_once(&line, &text);
    }
}

#[test]
fn a_missing_bundle_is_said_once() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let missing = tmp.path().join("absent.safetensors");
    for (what, line) in open_everywhere(&missing, &dir.join("x.npy")) {
        said_once(&line, &missing);
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{what}: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The trainer

/// `modeconn train` of a small MLP on 64 digits with the real plugin, plus `extra`.
fn train(epochs: &str, extra: &[Arg<'_>]) -> Run {
    let plugin = real_plugin();
    let mut args: Vec<Arg<'_>> = vec![
        &"train",
        &"--arch",
        &"mlp",
        &"--hidden",
        &"8",
        &"--data",
        &"digits",
        &"--limit",
        &"64",
        &"--batch-size",
        &"32",
        &"--device",
        &"cpu",
        &"--epochs",
        &epochs,
        &"--quiet",
        &"--trainer",
        &plugin,
    ];
    args.extend_from_slice(extra);
    modeconn_env(&args, &[])
}

#[test]
fn the_trainer_refuses_an_output_it_cannot_write_before_the_first_epoch() {
    let tmp = tempdir();
    let ckpt = tmp.path().join("run.ckpt");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").expect("write a file");
    for out in [
        tmp.path().join("no-such-folder").join("x.safetensors"),
        file.join("x.safetensors"),
        tmp.path().to_path_buf(),
    ] {
        let line = train("20", &[&"--checkpoint", &ckpt, &"--out", &out]).fails_cleanly();
        assert!(line.contains(&*out.to_string_lossy()), "{line}");
        said_once(&line, &out);
        assert!(
            !ckpt.exists(),
            "{}: epochs ran before the output was found unwritable: {line}",
            out.display()
        );
    }
    // A checkpoint that cannot be written is refused as early.
    let out = tmp.path().join("x.safetensors");
    let bad = tmp.path().join("no-such-folder").join("run.ckpt");
    let line = train("20", &[&"--checkpoint", &bad, &"--out", &out]).fails_cleanly();
    assert!(line.contains(&*bad.to_string_lossy()), "{line}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read the folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "a-file")
        .collect();
    assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
}

#[test]
fn the_trainer_errors_carry_no_cpp_backtrace() {
    let tmp = tempdir();
    let out = tmp.path().join("no-such-folder").join("x.safetensors");
    let line = train("1", &[&"--out", &out]).fails_cleanly();
    assert!(
        !line.contains("Exception raised from") && !line.contains("frame #"),
        "{line}"
    );
    said_once(&line, &out);
}
