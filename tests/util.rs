//! Helpers shared by the end-to-end tests: running `modeconn` and the Python fixture scripts of
//! `tests/python`, fixtures made once per test run, `.npy` files and comparisons.
//!
//! The Python scripts need the environment of `scripts/setup.sh`: `MODECONN_PYTHON` (and, for
//! `modeconn` itself, `ORT_DYLIB_PATH`). Tests never skip silently when it is missing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayD, Axis, Dimension, IxDyn};
use serde_json::Value;

/// One argument of a command: anything that converts to an `OsStr` (`&str`, `String`, `PathBuf`).
pub type Arg<'a> = &'a dyn AsRef<OsStr>;

/// Arguments of a command.
pub type Args<'a> = &'a [Arg<'a>];

/// The `modeconn` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_modeconn");

/// The program run as `modeconn`: `MODECONN_TEST_BIN` when set (e.g. an installed build),
/// otherwise the binary Cargo built for these tests.
pub fn bin() -> PathBuf {
    match std::env::var_os("MODECONN_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(BIN),
    }
}

/// Tolerance of the comparisons against references computed independently in float64.
pub const TOL: f64 = 1e-5;

/// t values at which the curve fixtures write references: on and off knots and grid points.
pub const TS: [f64; 7] = [0.0, 0.1, 0.25, 0.37, 0.5, 0.63, 1.0];

/// Rows of `x.npy` in the fixtures of `cnn_case.py`, and their classes.
pub const BATCH: usize = 7;
pub const CLASSES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Processes

/// What a finished command left behind.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics, showing the command's output, unless it exited successfully.
    #[track_caller]
    pub fn ok(self) -> Self {
        if !self.status.success() {
            let mut hint = String::new();
            if std::env::var_os("ORT_DYLIB_PATH").is_none() {
                hint.push_str(
                    "\n(ORT_DYLIB_PATH is not set: source the env file printed by scripts/setup.sh)",
                );
            }
            panic!(
                "{} failed ({}){hint}\n{}",
                self.what,
                self.status,
                self.transcript()
            );
        }
        self
    }

    /// Panics unless the command failed cleanly: a non-zero exit, exactly one line on stderr,
    /// no panic. Returns that line.
    #[track_caller]
    pub fn fails_cleanly(&self) -> String {
        assert!(
            !self.status.success(),
            "{} succeeded but should have failed\n{}",
            self.what,
            self.transcript()
        );
        assert!(
            self.status.code().is_some(),
            "{} was killed by a signal ({})\n{}",
            self.what,
            self.status,
            self.transcript()
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "{} panicked\n{}",
            self.what,
            self.transcript()
        );
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected exactly one line on stderr, got {}\n{}",
            self.what,
            lines.len(),
            self.transcript()
        );
        assert!(
            !lines[0].trim().is_empty(),
            "{}: empty error line",
            self.what
        );
        lines[0].to_string()
    }

    /// stdout parsed as one JSON object.
    #[track_caller]
    pub fn json(&self) -> Value {
        let v: Value = serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON value ({e})\n{}",
                self.what,
                self.transcript()
            )
        });
        assert!(
            v.is_object(),
            "{}: stdout is JSON but not an object: {v}",
            self.what
        );
        v
    }

    pub fn transcript(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

fn describe(program: &str, args: Args<'_>) -> String {
    let mut s = program.to_string();
    for a in args {
        let _ = write!(s, " {}", a.as_ref().to_string_lossy());
    }
    s
}

/// Runs `cmd` to the end and keeps what it printed; `what` names it in failures.
pub fn run_command(mut cmd: Command, what: String) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    Run {
        what,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `modeconn` with the test process's environment.
pub fn modeconn(args: Args<'_>) -> Run {
    modeconn_with(args, |_| {})
}

/// Runs `modeconn` after `adjust` changed the command (environment, working folder).
pub fn modeconn_with(args: Args<'_>, adjust: impl FnOnce(&mut Command)) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args.iter().map(|a| a.as_ref()));
    adjust(&mut cmd);
    run_command(cmd, describe("modeconn", args))
}

/// The Python interpreter of the set-up environment.
pub fn python() -> PathBuf {
    match std::env::var_os("MODECONN_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "MODECONN_PYTHON is not set: source the env file printed by scripts/setup.sh \
             (these tests need its Python with onnxruntime, onnx and torch)"
        ),
    }
}

/// The folder of the Python fixture scripts.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
}

/// Runs `tests/python/<script>` and panics with its output unless it succeeds.
pub fn run_python(script: &str, args: Args<'_>) -> Run {
    let path = python_dir().join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&path)
        .args(args.iter().map(|a| a.as_ref()))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CUDA_VISIBLE_DEVICES", "");
    run_command(cmd, describe(&format!("python {script}"), args)).ok()
}

/// Runs an ONNX model with the Python onnxruntime on `x` and returns softmax(logits / T).
pub fn run_onnx(model: &Path, x: &Path, temperature: Option<f64>) -> ArrayD<f32> {
    let dir = tempdir();
    let out = dir.path().join("p.npy");
    match temperature {
        None => run_python("run_onnx.py", &[&model, &x, &out]),
        Some(t) => run_python(
            "run_onnx.py",
            &[&model, &x, &out, &"--temperature", &t.to_string()],
        ),
    };
    read_f32(&out)
}

// ---------------------------------------------------------------------------------------------
// Folders and fixtures

/// A fresh temporary folder, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("modeconn-test-")
        .tempdir()
        .expect("cannot create a temporary folder")
}

/// A fixture folder made once per test run by `make` (under Cargo's target tmp folder, emptied
/// first); concurrent callers wait for the first one. A panic in `make` leaves the fixture unmade,
/// so the next caller tries again and reports the same failure.
pub fn fixture(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    static CELLS: Mutex<BTreeMap<String, Arc<OnceLock<PathBuf>>>> = Mutex::new(BTreeMap::new());
    let cell = CELLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("modeconn-fixtures")
            .join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot empty {}: {e}", dir.display()));
        }
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        make(&dir);
        dir
    })
    .clone()
}

/// How a curve fixture is made by `cnn_case.py`.
#[derive(Debug, Clone, Copy)]
pub struct CurveCase {
    pub name: &'static str,
    pub basis: &'static str,
    pub points: usize,
    /// `--grid G` (uniform bn_grid) or `--grid-values` when `grid_values` is set.
    pub grid: usize,
    pub grid_values: Option<&'static str>,
    pub temperature: Option<f64>,
    pub seed: u64,
    /// t values of `ref.npy`.
    pub at: &'static [f64],
}

pub const BEZIER3: CurveCase = CurveCase {
    name: "bezier3",
    basis: "bezier",
    points: 3,
    grid: 5,
    grid_values: None,
    temperature: None,
    seed: 1,
    at: &TS,
};

pub const POLYCHAIN4: CurveCase = CurveCase {
    name: "polychain4",
    basis: "polychain",
    points: 4,
    grid: 5,
    grid_values: None,
    temperature: None,
    seed: 2,
    at: &TS,
};

/// A Bezier curve whose bn_grid is not uniform: 0.5 and 0.63 fall between 0.45 and 0.8.
pub const BEZIER4_NONUNIFORM: CurveCase = CurveCase {
    name: "bezier4-nonuniform",
    basis: "bezier",
    points: 4,
    grid: 0,
    grid_values: Some("0,0.3,0.45,0.8,1"),
    temperature: None,
    seed: 3,
    at: &TS,
};

/// A curve whose bundle says `modeconn.temperature` = 2.
pub const TEMPERATURE2: CurveCase = CurveCase {
    name: "temperature2",
    basis: "polychain",
    points: 3,
    grid: 3,
    grid_values: None,
    temperature: Some(2.0),
    seed: 4,
    at: &[0.3, 0.7],
};

/// Comma-separated t values as the command line takes them.
pub fn ts_arg(ts: &[f64]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The folder of a curve fixture: bundle.safetensors, x.npy, y.npy, ref.npy ([len(at), B, 5]).
pub fn curve_fixture(case: &CurveCase) -> PathBuf {
    fixture(case.name, |dir| {
        let at = ts_arg(case.at);
        let points = case.points.to_string();
        let seed = case.seed.to_string();
        let mut args: Vec<String> = vec![];
        match case.grid_values {
            Some(g) => args.extend(["--grid-values".into(), g.into()]),
            None => args.extend(["--grid".into(), case.grid.to_string()]),
        }
        if let Some(t) = case.temperature {
            args.extend(["--temperature".into(), t.to_string()]);
        }
        let mut all: Vec<Arg<'_>> = vec![
            &"--out",
            &dir,
            &"--kind",
            &"curve",
            &"--basis",
            &case.basis,
            &"--points",
            &points,
            &"--at",
            &at,
            &"--seed",
            &seed,
        ];
        all.extend(args.iter().map(|a| a as Arg<'_>));
        run_python("cnn_case.py", &all);
    })
}

/// Members of the snapshot fixture.
pub const SNAPSHOT_MEMBERS: usize = 3;

/// The folder of the snapshot-set fixture (M = 3): bundle.safetensors, x.npy, y.npy,
/// ref.npy ([3, B, 5]), member{0,1,2}.onnx.
pub fn snapshots_fixture() -> PathBuf {
    fixture("snapshots3", |dir| {
        let m = SNAPSHOT_MEMBERS.to_string();
        run_python(
            "cnn_case.py",
            &[
                &"--out",
                &dir,
                &"--kind",
                &"snapshots",
                &"--members",
                &m,
                &"--seed",
                &"5",
            ],
        );
    })
}

/// The folder written by `torch_case.py` (snapshots, exports and PyTorch's own probabilities).
pub fn torch_fixture() -> PathBuf {
    fixture("torch", |dir| {
        run_python("torch_case.py", &[&dir]);
    })
}

// ---------------------------------------------------------------------------------------------
// Arrays

/// Reads a float32 `.npy` file, panicking with the file's name on failure.
#[track_caller]
pub fn read_f32(path: &Path) -> ArrayD<f32> {
    modeconn_runtime::npy::read::<f32>(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Reads an int64 `.npy` file, panicking with the file's name on failure.
#[track_caller]
pub fn read_i64(path: &Path) -> ArrayD<i64> {
    modeconn_runtime::npy::read::<i64>(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes a float32 `.npy` file.
#[track_caller]
pub fn write_f32(path: &Path, array: &ArrayD<f32>) {
    modeconn_runtime::npy::write(path, &array.view())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Writes a float64 `.npy` file (version 1, C order) by hand: the runtime's writer has no f64.
pub fn write_f64_npy(path: &Path, shape: &[usize], data: &[f64]) {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The tolerance to use: `MODECONN_TEST_TOL` when set, otherwise `default`.
pub fn tolerance(default: f64) -> f64 {
    match std::env::var("MODECONN_TEST_TOL") {
        Ok(s) => s
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("MODECONN_TEST_TOL={s:?} is not a number")),
        Err(_) => default,
    }
}

/// Asserts equal shapes and `|a - b| <= tol` elementwise (tol overridable by
/// `MODECONN_TEST_TOL`); the message names the worst element.
#[track_caller]
pub fn assert_close(actual: &ArrayD<f32>, expected: &ArrayD<f32>, tol: f64) {
    let tol = tolerance(tol);
    assert_eq!(
        actual.shape(),
        expected.shape(),
        "shapes differ: actual {:?}, expected {:?}",
        actual.shape(),
        expected.shape()
    );
    let mut worst: Option<(f64, IxDyn)> = None;
    for ((idx, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        let d = if a.is_nan() || e.is_nan() {
            f64::INFINITY
        } else {
            (f64::from(a) - f64::from(e)).abs()
        };
        if worst.as_ref().is_none_or(|(w, _)| d > *w) {
            worst = Some((d, idx));
        }
    }
    if let Some((d, at)) = worst {
        assert!(
            d <= tol,
            "arrays differ by {d:.3e} > {tol:.1e} at {:?}: actual {}, expected {}",
            at.slice(),
            actual[&at],
            expected[&at]
        );
    }
}

/// The slices `indices` of `array` along axis 0, in that order.
pub fn select(array: &ArrayD<f32>, indices: &[usize]) -> ArrayD<f32> {
    array.select(Axis(0), indices)
}

/// The mean over axis 0.
pub fn mean0(array: &ArrayD<f32>) -> ArrayD<f32> {
    array.mean_axis(Axis(0)).expect("mean over an empty axis")
}

/// Index of `t` in `ts`.
#[track_caller]
pub fn index_of(ts: &[f64], t: f64) -> usize {
    ts.iter()
        .position(|&s| s == t)
        .unwrap_or_else(|| panic!("t = {t} is not among the reference t values {ts:?}"))
}

/// Accuracy and mean negative log-likelihood of probabilities `[batch, classes]` for labels.
pub fn accuracy_nll(probs: &ArrayD<f32>, labels: &ArrayD<i64>) -> (f64, f64) {
    let probs = probs
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("probabilities are [batch, classes]");
    let n = probs.nrows();
    assert_eq!(labels.len(), n, "one label per row");
    let (mut correct, mut nll) = (0usize, 0f64);
    for (row, &y) in probs.rows().into_iter().zip(labels.iter()) {
        let y = usize::try_from(y).expect("labels are non-negative");
        let argmax = row
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                if p > best.1 { (i, p) } else { best }
            })
            .0;
        correct += usize::from(argmax == y);
        nll -= f64::from(row[y]).ln();
    }
    (correct as f64 / n as f64, nll / n as f64)
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A field of a JSON object, panicking with the whole object when absent.
#[track_caller]
pub fn field<'a>(json: &'a Value, key: &str) -> &'a Value {
    json.get(key)
        .unwrap_or_else(|| panic!("the JSON has no `{key}`: {json}"))
}

/// The first of several dotted paths (`input.shape`) present in a JSON object.
#[track_caller]
pub fn field_any<'a>(json: &'a Value, paths: &[&str]) -> &'a Value {
    for path in paths {
        let mut v = Some(json);
        for part in path.split('.') {
            v = v.and_then(|v| v.get(part));
        }
        if let Some(v) = v {
            return v;
        }
    }
    panic!("the JSON has none of {paths:?}: {json}")
}

/// A JSON number, or a string holding one.
#[track_caller]
pub fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("a finite number"),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("expected a number, got {v}")),
        _ => panic!("expected a number, got {v}"),
    }
}

/// A JSON array of numbers.
#[track_caller]
pub fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(number)
        .collect()
}

/// Asserts that two lists of t values agree to 1e-6 (t may pass through `f32`).
#[track_caller]
pub fn assert_ts(actual: &[f64], expected: &[f64]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "t values {actual:?}, expected {expected:?}"
    );
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= 1e-6,
            "t values {actual:?}, expected {expected:?}"
        );
    }
}

/// Removes every occurrence of the given paths from a message, so that a check for a number in
/// it is not fooled by digits in a temporary folder's name.
pub fn without_paths(message: &str, paths: &[&Path]) -> String {
    let mut m = message.to_string();
    for p in paths {
        m = m.replace(&*p.to_string_lossy(), "<path>");
    }
    m
}

/// ONNX Runtime on the CPU, for tests that use the runtime's Rust API directly.
pub fn cpu_runtime() -> modeconn_runtime::Runtime {
    modeconn_runtime::Runtime::new(
        modeconn_runtime::RuntimeOptions::default().with_device(modeconn_runtime::Device::Cpu),
    )
    .expect("ONNX Runtime must load (source the env file printed by scripts/setup.sh)")
}
