//! The training commands and the trainer plugin they load: without the plugin they say what is
//! missing and how to get it while runtime commands keep working; with the real plugin
//! (`cargo build -p modeconn-trainer` first) every flag reaches the trainer, bad jobs are clean
//! errors, and a small train, curve, FGE and eval pipeline writes bundles the runtime loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// The plugin's file name on this platform.
fn plugin_file_name() -> String {
    format!(
        "{}modeconn_trainer{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The real plugin, built beside the `modeconn` these tests run.
pub(crate) fn real_plugin() -> PathBuf {
    let dir = Path::new(BIN)
        .parent()
        .expect("the test binary has a folder");
    let path = dir.join(plugin_file_name());
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p modeconn-trainer` first (the trainer is not a \
         default member of the workspace, so `cargo test` does not build it)",
        path.display()
    );
    path
}

/// Runs `modeconn` with no plugin settings from the test's environment, plus `env`.
pub(crate) fn modeconn_env(args: Args<'_>, env: &[(&str, &dyn AsRef<std::ffi::OsStr>)]) -> Run {
    modeconn_with(args, |cmd| {
        cmd.env_remove("MODECONN_TRAINER")
            .env_remove("FAKE_TRAINER_ABI")
            .env_remove("FAKE_TRAINER_REPORT")
            .env_remove("FAKE_TRAINER_JOB_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
    })
}

const TRAIN_X: &[&str] = &[
    "train",
    "--arch",
    "mlp",
    "--data",
    "digits",
    "--epochs",
    "1",
    "--out",
    "x.safetensors",
];

// ---------------------------------------------------------------------------------------------
// Without the plugin

#[test]
fn a_missing_plugin_is_named_with_how_to_get_it() {
    let tmp = tempdir();
    let missing = tmp.path().join("no-such-plugin.so");
    let args: Vec<Arg<'_>> = TRAIN_X.iter().map(|a| a as Arg<'_>).collect();
    let line = modeconn_env(&args, &[("MODECONN_TRAINER", &missing)]).fails_cleanly();
    for needed in [
        "trainer plugin",
        "MODECONN_TRAINER",
        "cargo build --release -p modeconn-trainer",
        "--trainer",
    ] {
        assert!(line.contains(needed), "the error lacks `{needed}`: {line}");
    }
    assert!(line.contains(&*missing.to_string_lossy()), "{line}");

    let mut args = args;
    args.extend([&"--trainer" as Arg<'_>, &missing]);
    let line = modeconn_env(&args, &[]).fails_cleanly();
    assert!(
        line.contains("--trainer") && line.contains(&*missing.to_string_lossy()),
        "{line}"
    );
}

#[test]
fn every_training_command_needs_the_plugin() {
    let tmp = tempdir();
    let missing = tmp.path().join("no-such-plugin.so");
    let commands: [&[&str]; 4] = [
        TRAIN_X,
        &[
            "curve", "--start", "a", "--end", "b", "--basis", "bezier", "--data", "digits",
            "--epochs", "1", "--out", "c",
        ],
        &[
            "fge", "--init", "a", "--data", "digits", "--cycle", "2", "--lr1", "0.05", "--lr2",
            "0.0005", "--epochs", "2", "--out", "f",
        ],
        &["eval", "b.safetensors", "--data", "digits"],
    ];
    for command in commands {
        let args: Vec<Arg<'_>> = command.iter().map(|a| a as Arg<'_>).collect();
        let line = modeconn_env(&args, &[("MODECONN_TRAINER", &missing)]).fails_cleanly();
        assert!(
            line.contains("trainer plugin is missing"),
            "{}: {line}",
            command[0]
        );
    }
}

#[test]
fn runtime_commands_work_without_the_plugin() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let missing = tmp.path().join("no-such-plugin.so");
    let bundle = dir.join("bundle.safetensors");
    let run = modeconn_env(
        &[&"inspect", &bundle, &"--json"],
        &[("MODECONN_TRAINER", &missing)],
    )
    .ok();
    assert_eq!(run.json()["kind"], "curve");
}

#[cfg(target_os = "linux")]
#[test]
fn the_cli_does_not_link_libtorch() {
    let output = Command::new("ldd").arg(bin()).output().expect("run ldd");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ldd failed: {text}");
    assert!(
        !text.contains("torch") && !text.contains("c10"),
        "modeconn links libtorch:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// A file that is no plugin

#[test]
fn a_file_that_is_no_plugin_is_refused() {
    let tmp = tempdir();
    let text = tmp.path().join("libmodeconn_trainer.so");
    std::fs::write(&text, "not a library").expect("write a file");
    let mut args: Vec<Arg<'_>> = TRAIN_X.iter().map(|a| a as Arg<'_>).collect();
    args.extend([&"--trainer" as Arg<'_>, &text]);
    let line = modeconn_env(&args, &[]).fails_cleanly();
    assert!(line.contains("cannot load the trainer plugin"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// With the real plugin

/// Runs `modeconn` with the real plugin given by `--trainer`.
pub(crate) fn with_real(args: &[&str]) -> Run {
    let plugin = real_plugin();
    let mut all: Vec<Arg<'_>> = args.iter().map(|a| a as Arg<'_>).collect();
    all.extend([&"--trainer" as Arg<'_>, &plugin]);
    modeconn_env(&all, &[])
}

#[test]
fn the_plugin_beside_the_executable_is_found() {
    let beside = bin()
        .parent()
        .expect("the binary has a folder")
        .join(plugin_file_name());
    assert!(
        beside.is_file(),
        "{} is missing: run `cargo build -p modeconn-trainer` first",
        beside.display()
    );
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let run = modeconn_env(
        &[
            &"train",
            &"--arch",
            &"no-such-net",
            &"--data",
            &"digits",
            &"--epochs",
            &"1",
            &"--out",
            &out,
        ],
        &[],
    );
    let line = run.fails_cleanly();
    assert!(!line.contains("plugin is missing"), "{line}");
}

#[test]
fn bad_jobs_through_the_real_plugin_are_clean_errors() {
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let out = out.to_string_lossy().into_owned();
    let missing = tmp.path().join("missing.npz");
    let missing = missing.to_string_lossy().into_owned();
    let base = |arch: &'static str, data: &str, extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--arch", arch, "--data", data, "--epochs", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--limit", "64", "--device", "cpu", "--out", &out].map(String::from));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(&str, Vec<String>, &[&str])> = vec![
        (
            "unknown architecture",
            base("no-such-net", "digits", &[]),
            &["no-such-net"],
        ),
        ("missing data", base("mlp", &missing, &[]), &["missing.npz"]),
        (
            "zero epochs",
            {
                let mut v = base("mlp", "digits", &[]);
                let i = v.iter().position(|a| a == "--epochs").expect("--epochs") + 1;
                v[i] = "0".into();
                v
            },
            &["epoch"],
        ),
        (
            "negative learning rate",
            base("mlp", "digits", &["--lr", "-1"]),
            &["lr", "learning rate"],
        ),
    ];
    for (what, args, names) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = with_real(&args).fails_cleanly();
        assert!(
            !line.contains("plugin"),
            "{what}: the plugin did not run: {line}"
        );
        let lower = line.to_lowercase();
        assert!(
            names.iter().any(|n| lower.contains(n)),
            "{what}: the error names none of {names:?}: {line}"
        );
        assert!(!Path::new(&out).exists(), "{what}: a bundle was written");
    }
}

#[test]
fn the_real_plugin_accepts_every_flag() {
    // Each command with all its options: whatever the outcome, the trainer must have parsed
    // the job, so no error may be about its fields.
    let tmp = tempdir();
    let p = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let (a, c, f, ck) = (
        p("a.safetensors"),
        p("c.safetensors"),
        p("f.safetensors"),
        p("a.ckpt"),
    );
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "train",
            "--arch",
            "mlp",
            "--hidden",
            "8",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--lr",
            "0.05",
            "--wd",
            "0.0005",
            "--momentum",
            "0.9",
            "--batch-size",
            "64",
            "--seed",
            "2",
            "--device",
            "cpu",
            "--held-out",
            "64",
            "--limit",
            "256",
            "--no-augment",
            "--checkpoint",
            &ck,
            "--resume",
            "--out",
            &a,
        ],
        vec![
            "curve",
            "--start",
            &a,
            "--end",
            &a,
            "--basis",
            "polychain",
            "--bends",
            "1",
            "--train-start",
            "--train-end",
            "--bn-grid",
            "3",
            "--lr",
            "0.05",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--limit",
            "128",
            "--device",
            "cpu",
            "--out",
            &c,
        ],
        vec![
            "fge", "--init", &a, "--data", "digits", "--cycle", "2", "--lr1", "0.05", "--lr2",
            "0.001", "--epochs", "1", "--limit", "128", "--device", "cpu", "--out", &f,
        ],
        vec![
            "eval",
            &c,
            "--data",
            "digits",
            "--points",
            "3",
            "--segment",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--held-out",
            "64",
            "--limit",
            "128",
            "--seed",
            "2",
        ],
    ];
    for args in commands {
        let run = with_real(&args);
        if run.status.success() {
            continue;
        }
        let line = run.fails_cleanly();
        for wrong in [
            "unknown field",
            "missing field",
            "invalid type",
            "unknown variant",
        ] {
            assert!(
                !line.contains(wrong),
                "{}: the job did not parse: {line}",
                args[0]
            );
        }
    }
}

#[test]
fn train_curve_fge_and_eval_write_bundles_the_runtime_loads() {
    let tmp = tempdir();
    let p = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let (a, b, c, f, report, csv) = (
        p("a.safetensors"),
        p("b.safetensors"),
        p("c.safetensors"),
        p("f.safetensors"),
        p("report.json"),
        p("rows.csv"),
    );
    let small = [
        "--data",
        "digits",
        "--limit",
        "256",
        "--batch-size",
        "64",
        "--device",
        "cpu",
    ];
    let train = |out: &str, seed: &str| {
        let mut args = vec!["train", "--arch", "mlp", "--hidden", "16", "--epochs", "1"];
        args.extend(small);
        args.extend(["--seed", seed, "--out", out]);
        with_real(&args)
    };
    let run = train(&a, "1").ok();
    assert!(run.stdout.contains("wrote"), "{}", run.transcript());
    train(&b, "2").ok();

    let mut args = vec![
        "curve", "--start", &a, "--end", &b, "--basis", "bezier", "--epochs", "1",
    ];
    args.extend(small);
    args.extend(["--bn-grid", "3", "--out", &c]);
    with_real(&args).ok();

    let mut args = vec![
        "fge", "--init", &a, "--cycle", "2", "--lr1", "0.05", "--lr2", "0.005",
    ];
    args.extend(["--epochs", "2"]);
    args.extend(small);
    args.extend(["--out", &f]);
    with_real(&args).ok();

    for (bundle, kind) in [(&a, "snapshots"), (&c, "curve"), (&f, "snapshots")] {
        let run = modeconn(&[&"inspect", bundle, &"--json"]).ok();
        assert_eq!(run.json()["kind"], kind, "{bundle}");
    }
    let inspect = modeconn(&[&"inspect", &a, &"--json"]).ok().json();
    assert_eq!(inspect["points"], 1, "train writes one member");

    let args = [
        "eval",
        &c,
        "--data",
        "digits",
        "--limit",
        "256",
        "--device",
        "cpu",
        "--points",
        "5",
        "--segment",
        "--json",
        &report,
        "--csv",
        &csv,
    ];
    let run = with_real(&args).ok();
    // The per-t tables of the curve and the segment, and the summary in Table 2's layout.
    assert!(run.stdout.contains("curve:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("segment:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("length ratio"), "{}", run.stdout);
    let rows = std::fs::read_to_string(&csv).expect("the CSV is written");
    assert_eq!(rows.lines().count(), 1 + 5 + 5, "{rows}");
    assert_eq!(
        rows.lines().filter(|l| l.starts_with("segment,")).count(),
        5
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report is written"))
            .expect("the report is JSON");
    assert_eq!(written["ok"], true, "{written}");
    let ece = written["curve"]["ensemble"]["test_ece"]
        .as_f64()
        .expect("the ensemble's ECE");
    assert!((0.0..=1.0).contains(&ece), "{ece}");
    assert!(written["curve"]["points"][0]["test_ece"].is_number());
    let args = [
        "eval", &f, "--data", "digits", "--limit", "256", "--device", "cpu",
    ];
    with_real(&args).ok();
}

#[test]
fn a_full_disk_while_checkpointing_is_an_error_that_leaves_nothing_behind() {
    // libtorch threw from a destructor when its checkpoint write failed: SIGABRT, and a
    // `.ckpt.tmp-PID` file was left. A file size limit stands in for the full disk.
    use std::os::unix::process::CommandExt;
    let tmp = tempdir();
    let out = tmp.path().join("a.safetensors");
    let plugin = real_plugin();
    let args: Vec<Arg<'_>> = vec![
        &"train",
        &"--arch",
        &"mlp",
        &"--hidden",
        &"512,512",
        &"--data",
        &"digits",
        &"--epochs",
        &"1",
        &"--limit",
        &"256",
        &"--device",
        &"cpu",
        &"--out",
        &out,
        &"--trainer",
        &plugin,
    ];
    let run = modeconn_with(&args, |cmd| {
        // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
        unsafe {
            cmd.pre_exec(|| {
                // A checkpoint of this network is about 2.4 MB; allow 1 MiB.
                let limit = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    });
    let line = run.fails_cleanly();
    assert!(
        line.contains("a.safetensors.ckpt") && line.contains("too large"),
        "{line}"
    );
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
