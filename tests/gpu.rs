//! The GPU paths as a machine without a GPU sees them, with the environment of
//! scripts/setup.sh (ONNX Runtime with the CUDA execution provider, the CUDA libraries of
//! torch's wheels, no driver): `doctor` says what runs where, `--device cuda` fails with one
//! line that names the missing driver, `auto` falls back and says why, a GPU index past the
//! last one is a clear error. On a machine where CUDA works, the no-driver cases are skipped
//! (and say so): scripts/gpu-check.sh covers that side.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// The trainer plugin built beside the `modeconn` under test.
fn plugin() -> PathBuf {
    Path::new(BIN).parent().expect("a folder").join(format!(
        "{}modeconn_trainer{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// `doctor --json` with the plugin beside the executable.
fn doctor() -> Value {
    let plugin = plugin();
    modeconn(&[&"doctor", &"--json", &"--trainer", &plugin])
        .ok()
        .json()
}

/// Whether CUDA works here; when it does, says the no-driver cases are skipped.
fn cuda_works(report: &Value, case: &str) -> bool {
    let works = report["onnxruntime"]["cuda"]["loads"] == true;
    if works {
        eprintln!("{case}: CUDA works on this machine; the no-driver case does not apply");
    }
    works
}

#[test]
fn doctor_reports_what_runs_where() {
    let report = doctor();
    let ort = &report["onnxruntime"];
    let providers: Vec<&str> = ort["providers"]
        .as_array()
        .unwrap_or_else(|| panic!("no providers: {report}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(providers.contains(&"CPUExecutionProvider"), "{report}");
    assert_eq!(ort["version"], "1.31.1", "{report}");
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        // scripts/setup.sh installs onnxruntime-gpu here.
        assert!(providers.contains(&"CUDAExecutionProvider"), "{report}");
        assert_eq!(ort["cuda"]["built_in"], true, "{report}");
    }
    let trainer = &report["trainer"];
    assert_eq!(
        trainer["abi_version"],
        modeconn_jobs::ABI_VERSION,
        "{report}"
    );
    assert!(
        trainer["libtorch"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.11.0")),
        "{report}"
    );
    assert!(trainer["libtorch"]["path"].is_string(), "{report}");
    if !cuda_works(&report, "doctor") && ort["cuda"]["built_in"] == true {
        // Loadable up to the driver: the first library missing is libcuda.so.1.
        assert_eq!(ort["cuda"]["missing_library"], "libcuda.so.1", "{report}");
        assert_eq!(report["cuda_ready"], false, "{report}");
        assert!(
            trainer["devices"].as_array().is_some_and(Vec::is_empty),
            "{report}"
        );
    }
}

#[test]
fn doctor_require_cuda_fails_without_a_driver() {
    if cuda_works(&doctor(), "require") {
        return;
    }
    let plugin = plugin();
    let line = modeconn(&[&"doctor", &"--require", &"cuda", &"--trainer", &plugin]).fails_cleanly();
    assert!(line.contains("CUDA is not ready"), "{line}");
    assert!(
        line.contains("libcuda.so.1") || line.contains("CUDA execution provider"),
        "{line}"
    );
}

#[test]
fn device_cuda_names_the_missing_driver_and_auto_falls_back_saying_why() {
    if cuda_works(&doctor(), "device") {
        return;
    }
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    let predict = |device: &str| {
        modeconn(&[
            &"predict",
            &bundle,
            &"--input",
            &x,
            &"--at",
            &"0.5",
            &"--device",
            &device,
            &"--json",
        ])
    };
    for device in ["cuda", "cuda:0"] {
        let line = predict(device).fails_cleanly();
        assert!(
            line.contains("cuda:0") && line.contains("libcuda.so.1"),
            "{device}: {line}"
        );
        assert!(line.contains("NVIDIA driver"), "{device}: {line}");
    }
    let line = predict("cuda:7").fails_cleanly();
    assert!(line.contains("`cuda:7`"), "{line}");
    let run = predict("auto").ok();
    assert_eq!(run.json()["provider"], "cpu", "{}", run.transcript());
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("note:"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", run.transcript());
    assert!(
        notes[0].contains("runs on the CPU") && notes[0].contains("libcuda.so.1"),
        "{}",
        notes[0]
    );
}

#[test]
fn a_gpu_the_trainer_does_not_have_is_a_clear_error() {
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let plugin = plugin();
    let train = |device: &str| {
        modeconn(&[
            &"train",
            &"--arch",
            &"mlp",
            &"--data",
            &"digits",
            &"--epochs",
            &"1",
            &"--device",
            &device,
            &"--out",
            &out,
            &"--trainer",
            &plugin,
        ])
    };
    let line = train("cuda:7").fails_cleanly();
    assert!(line.contains("device `cuda:7` is not available"), "{line}");
    // An unknown device is clap's error (a usage line follows it), naming what is valid.
    let run = train("gpu");
    assert_eq!(run.status.code(), Some(2), "{}", run.transcript());
    assert!(run.stderr.contains("cuda:N"), "{}", run.transcript());
    assert!(!out.exists());
}

#[test]
fn the_gpu_check_runs_through_on_the_cpu() {
    // scripts/gpu-check.sh --device cpu --quick: every step of the GPU check, on the CPU,
    // with the binaries under test; the figures that compare a GPU with the CPU are left out.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = Path::new(BIN).parent().expect("a folder");
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/gpu-check.sh"))
        .args(["--device", "cpu", "--quick"])
        .env("MODECONN_GPU_CHECK_BIN", bin)
        .output()
        .expect("run scripts/gpu-check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "gpu-check failed:\n{stderr}\n{stdout}"
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}"));
    assert_eq!(report["device"], "cpu");
    assert!(
        report["doctor"]["onnxruntime"]["providers"].is_array(),
        "{report}"
    );
    let trainer = &report["trainer"];
    for key in [
        "train_seconds_per_epoch",
        "curve_seconds_per_epoch",
        "curve_over_train",
    ] {
        assert!(
            trainer[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report}"
        );
    }
    let reproduced = &report["bundles_reproduced"];
    assert_eq!(reproduced["agree"], true, "{report}");
    assert_eq!(
        reproduced["curve"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    assert!(
        reproduced["fge"].as_array().is_some_and(|m| !m.is_empty()),
        "{report}"
    );
    let runtime = &report["runtime"];
    for section in ["dynamic_vs_static", "ensemble_vs_singles"] {
        for batch in ["batch_1", "batch_128"] {
            let ratio = runtime[section][batch]["ratio"].as_f64();
            assert!(
                ratio.is_some_and(|r| r > 0.0),
                "{section} {batch}: {report}"
            );
        }
    }
    assert!(
        runtime.get("cuda_vs_cpu_max_abs").is_none(),
        "a CPU run compares no GPU"
    );
    assert!(
        report["serve"]["ratio"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
}

#[test]
fn the_server_on_auto_says_once_why_it_serves_on_the_cpu() {
    let report = doctor();
    if cuda_works(&report, "serve") || report["onnxruntime"]["cuda"]["built_in"] != true {
        return;
    }
    let (_dir, mut server) = crate::serve::serve_curve("", &[&"--device", &"auto"]);
    let log = server.log();
    server.terminate();
    let warnings: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("serving on the CPU"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert_eq!(warnings[0]["level"], "WARN", "{log}");
    assert_eq!(warnings[0]["fields"]["device"], "auto", "{log}");
    let reason = warnings[0]["fields"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("libcuda.so.1"), "{log}");
    assert!(
        log.contains(r#""provider":"cpu""#),
        "the model should load on the CPU: {log}"
    );
}

#[test]
fn the_gpu_check_runs_from_the_parts_gpu_pack_writes() {
    // What a machine without Rust gets (DEVICE.md): scripts/gpu-pack.sh packs the binaries
    // under test and ONNX Runtime's three libraries into parts of at most 45 MiB, one folder
    // each; `gpu-check.sh --parts` joins, checks and unpacks them and runs from what it
    // unpacked. Level 0 keeps the test quick; the machine's one is 9.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = Path::new(BIN).parent().expect("a folder");
    let tmp = tempdir();
    let prefix = tmp.path().join("gpu");
    let script = |name: &str, args: &[&dyn AsRef<std::ffi::OsStr>]| {
        std::process::Command::new("bash")
            .arg(repo.join("scripts").join(name))
            .args(args.iter().map(|a| a.as_ref()))
            .output()
            .expect("run the script")
    };
    let packed = script(
        "gpu-pack.sh",
        &[&"--bin", &bin, &"--prefix", &prefix, &"--level", &"0"],
    );
    let said = String::from_utf8_lossy(&packed.stdout);
    assert!(
        packed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let folders: Vec<PathBuf> = (1..)
        .map(|i| tmp.path().join(format!("gpu{i}")))
        .take_while(|f| f.is_dir())
        .collect();
    assert!(folders.len() >= 2, "{said}");
    for folder in &folders {
        for part in std::fs::read_dir(folder).expect("a part folder") {
            let part = part.expect("an entry").path();
            let size = std::fs::metadata(&part).expect("a file").len();
            assert!(size <= 45 << 20, "{}: {size} bytes", part.display());
        }
    }
    let manifest = std::fs::read_to_string(folders[0].join("manifest")).expect("the manifest");
    assert!(
        manifest.contains(&format!("parts {}", folders.len())),
        "{manifest}"
    );

    let check = || {
        script(
            "gpu-check.sh",
            &[&"--parts", &prefix, &"--device", &"cpu", &"--quick"],
        )
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    // The unpacked ONNX Runtime and trainer ran, not the environment's.
    for path in [
        &report["doctor"]["onnxruntime"]["library"],
        &report["doctor"]["trainer"]["plugin"],
    ] {
        let path = path.as_str().unwrap_or_default();
        assert!(path.contains("/pack/"), "{path}: {report}");
    }
    assert_eq!(report["bundles_reproduced"]["agree"], true, "{report}");

    // A part that did not arrive is named.
    let last = folders.last().expect("a folder");
    std::fs::rename(last, tmp.path().join("away")).expect("move a part away");
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("part {0} of {0} is missing", folders.len())),
        "{stderr}"
    );
}
