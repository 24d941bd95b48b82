//! The C API from C and C++: the header is what the Rust code declares, and programs in
//! `tests/c/` and `examples/c/`, compiled with the system's gcc and g++ against
//! `include/modeconn.h` (and the C++17 wrapper `include/modeconn.hpp`) and both
//! `libmodeconn.so` and `libmodeconn.a`, predict what the Rust API predicts, read the metadata
//! the Rust API reads, answer misuse with statuses (C) or `modeconn::Error` (C++), share an
//! ensemble between threads, train through a plugin, and run clean under AddressSanitizer,
//! LeakSanitizer and UndefinedBehaviorSanitizer, and under valgrind.
//!
//! Needs the environment of `scripts/setup.sh` (`ORT_DYLIB_PATH`). The header is regenerated
//! with `MODECONN_UPDATE_HEADER=1 cargo test -p modeconn-ffi --test c_api header`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec, Preprocess};
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::{build::ModelBuilder, elem};
use modeconn_runtime::{BundleWriter, Ensemble, EnsembleOptions, Member, Sampling};
use modeconn_runtime::{Provider, Runtime, RuntimeOptions};
use ndarray::{ArrayD, IxDyn};

const BATCH: usize = 5;
const FEATURES: usize = 4;
const HIDDEN: usize = 6;
const CLASSES: usize = 3;

/// Tolerance of the comparisons with the Rust API (`MODECONN_FFI_TOL` overrides it). The same
/// library computes both, so the results are normally identical.
fn tol() -> f32 {
    std::env::var("MODECONN_FFI_TOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1e-6)
}

// ---------------------------------------------------------------------------------------------
// Paths

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ffi/ has a parent")
        .to_path_buf()
}

/// `target/<profile>`: the test binary lives in `target/<profile>/deps`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A scratch folder for this test process, `target/<profile>/ffi-c-tests/<pid>`. The folders
/// of earlier runs, whose processes are gone, are removed first: each holds some 40 programs of
/// up to 45 MB, so keeping them filled the disk run after run.
fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = target_dir().join("ffi-c-tests");
        remove_stale_scratch(&root);
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

/// Removes the folders of `root` named after a process that no longer runs (no `/proc/<pid>`);
/// those of a concurrent test process stay.
fn remove_stale_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            // Best effort: a folder that cannot be removed only takes space.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The libmodeconn of this test build. `cargo test` rebuilds the library in
/// `target/<profile>/deps` but copies it to `target/<profile>` only on `cargo build`, so the
/// copies there may be older than the code under test.
fn library(file: &str) -> PathBuf {
    target_dir().join("deps").join(file)
}

/// A new folder `name` in the scratch folder, for a program's outputs.
fn out_dir(name: &str) -> PathBuf {
    let dir = work().join(name);
    std::fs::create_dir_all(&dir).expect("output folder");
    dir
}

// ---------------------------------------------------------------------------------------------
// Compiling

#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Shared,
    Static,
}

/// How a test program is built: linked against which library, with the sanitizers or plain
/// (valgrind cannot run a sanitized program), and the C++ standard of C++ sources.
#[derive(Clone, Copy, Debug)]
struct Build {
    link: Link,
    sanitize: bool,
    cpp: &'static str,
}

impl Build {
    /// AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer, C++17.
    fn sanitized(link: Link) -> Self {
        Build {
            link,
            sanitize: true,
            cpp: "c++17",
        }
    }

    /// No sanitizers, for valgrind.
    fn plain(link: Link) -> Self {
        Build {
            sanitize: false,
            ..Build::sanitized(link)
        }
    }

    /// C++ sources compiled as `std` (e.g. "c++20").
    fn cpp(self, std: &'static str) -> Self {
        Build { cpp: std, ..self }
    }
}

/// A compiled test program.
struct Program {
    exe: PathBuf,
    sanitized: bool,
}

impl Program {
    /// A command running the program; a sanitized one stops at the first error of any
    /// sanitizer, fails on any leak at exit, and prints stack traces. LeakSanitizer needs no
    /// suppressions: what ONNX Runtime, libtorch and the Rust runtime keep for the life of the
    /// process stays reachable, and LeakSanitizer reports only unreachable blocks.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        if self.sanitized {
            cmd.env("ASAN_OPTIONS", "detect_leaks=1")
                .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
        }
        cmd
    }
}

/// Compiles C (`.c`) or C++ (`.cpp`) sources into an executable linked against libmodeconn.
fn compile(name: &str, sources: &[&str], build: Build) -> Program {
    let cpp = sources.iter().any(|s| s.ends_with(".cpp"));
    let std = if cpp { build.cpp } else { "c11" };
    let out = work().join(
        format!(
            "{name}-{:?}-{std}{}",
            build.link,
            if build.sanitize { "-san" } else { "" }
        )
        .to_lowercase()
        .replace('+', "x"),
    );
    let mut cmd = Command::new(if cpp { "g++" } else { "gcc" });
    cmd.arg(format!("-std={std}"))
        .args([
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-g",
            "-pthread",
        ])
        .arg("-I")
        .arg(repo().join("include"))
        .arg("-I")
        .arg(repo().join("tests/c"));
    if build.sanitize {
        cmd.args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]);
    }
    for s in sources {
        cmd.arg(repo().join(s));
    }
    cmd.arg("-o").arg(&out);
    match build.link {
        Link::Shared => {
            let so = library("libmodeconn.so");
            let dir = so.parent().expect("deps/").display().to_string();
            cmd.arg(&so).arg(format!("-Wl,-rpath,{dir}"));
        }
        Link::Static => {
            cmd.arg(library("libmodeconn.a"))
                .args(["-lpthread", "-ldl", "-lm", "-lgcc_s"]);
        }
    }
    cmd.arg("-lm");
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {sources:?} ({build:?}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Program {
        exe: out,
        sanitized: build.sanitize,
    }
}

/// The builds most programs are tested in: both libraries, sanitized.
const LINKS: [Link; 2] = [Link::Shared, Link::Static];

/// Runs a program, panicking with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("run the program");
    let text = format!(
        "{cmd:?} ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    // A sanitizer that reports without stopping the program is still a failure.
    for report in [
        "ERROR: AddressSanitizer",
        "ERROR: LeakSanitizer",
        ": runtime error: ",
    ] {
        assert!(!text.contains(report), "{report}\n{text}");
    }
    println!("{text}");
    output
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
    curve: PathBuf,
    snapshots: PathBuf,
    corrupt: PathBuf,
    /// A snapshot set with every optional metadata key: labels, a temperature, preprocessing
    /// and provenance.
    labeled: PathBuf,
    input: PathBuf,
    x: Vec<f32>,
}

fn graph() -> Vec<u8> {
    let mut g = ModelBuilder::new("mlp", 17);
    g.input(
        "x",
        elem::FLOAT,
        &["batch".into(), (FEATURES as i64).into()],
    )
    .input(
        "w1",
        elem::FLOAT,
        &[(FEATURES as i64).into(), (HIDDEN as i64).into()],
    )
    .input(
        "w2",
        elem::FLOAT,
        &[(HIDDEN as i64).into(), (CLASSES as i64).into()],
    )
    .node("MatMul", &["x", "w1"], &["h"], &[])
    .node("Relu", &["h"], &["r"], &[])
    .node("MatMul", &["r", "w2"], &["logits"], &[])
    .output(
        "logits",
        elem::FLOAT,
        &["batch".into(), (CLASSES as i64).into()],
    );
    g.build()
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    // A small deterministic generator (xorshift) in [-1, 1).
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The metadata of a bundle of the fixture's network without the optional keys.
fn metadata(kind: Kind, points: usize) -> Metadata {
    Metadata {
        kind,
        basis: (kind == Kind::Curve).then_some(Basis::Bezier),
        points,
        bn_grid: None,
        grid_tensors: vec![],
        input: InputSpec {
            name: "x".into(),
            shape: vec![-1, FEATURES as i64],
        },
        output: OutputSpec {
            name: "logits".into(),
            classes: CLASSES,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: None,
        extra: Default::default(),
    }
}

fn bundle(meta: Metadata, path: &Path) {
    let points = meta.points;
    let w1: Vec<f32> = values(points * FEATURES * HIDDEN, points as u32 + 1)
        .into_iter()
        .map(|v| v * 2.0)
        .collect();
    let w2: Vec<f32> = values(points * HIDDEN * CLASSES, points as u32 + 17)
        .into_iter()
        .map(|v| v * 2.0)
        .collect();
    BundleWriter::new(meta, graph())
        .tensor("w1", vec![points, FEATURES, HIDDEN], w1)
        .expect("w1")
        .tensor("w2", vec![points, HIDDEN, CLASSES], w2)
        .expect("w2")
        .write(path)
        .expect("write the bundle");
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = out_dir("fixtures");
        let curve = dir.join("curve.safetensors");
        let snapshots = dir.join("snapshots.safetensors");
        bundle(metadata(Kind::Curve, 3), &curve);
        bundle(metadata(Kind::Snapshots, 3), &snapshots);
        let labeled = dir.join("labeled.safetensors");
        bundle(
            Metadata {
                temperature: 2.5,
                // Values that decimal text only rounds to: they must come back exactly.
                preprocess: Some(Preprocess {
                    mean: vec![0.1, -1.0 / 3.0, 0.25, 2.0],
                    std: vec![1.0, 2.0 / 3.0, 0.5, 1e-3],
                }),
                labels: Some(vec!["cat".into(), "dog".into(), "śnieg".into()]),
                provenance: Some(serde_json::json!({
                    "arch": "mlp",
                    "hidden": [HIDDEN],
                    "metrics": {"test_error": 0.125},
                    "note": "a tab\tand \"quotes\"",
                })),
                ..metadata(Kind::Snapshots, 3)
            },
            &labeled,
        );
        let corrupt = dir.join("corrupt.safetensors");
        let mut bytes = std::fs::read(&curve).expect("read the curve");
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&corrupt, bytes).expect("write the corrupt bundle");
        let x = values(BATCH * FEATURES, 99);
        let input = dir.join("input.f32");
        let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input, raw).expect("write the input");
        Fixture {
            curve,
            snapshots,
            corrupt,
            labeled,
            input,
            x,
        }
    })
}

fn runtime() -> &'static Runtime {
    static R: OnceLock<Runtime> = OnceLock::new();
    R.get_or_init(|| {
        Runtime::new(RuntimeOptions::default().with_intra_threads(1))
            .expect("ONNX Runtime (source the env file printed by scripts/setup.sh)")
    })
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let tol = tol();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: C gave {g}, Rust {w}");
    }
}

/// A case of `tests/c/predict.c` and `tests/c/hpp_predict.cpp`: NAME.prob, and the outputs
/// `per` (NAME.per), `members` (NAME.members), `entropy` (NAME.ent) and `disagreement`
/// (NAME.dis) it asks for. Cases on the curve or the snapshot set; `grid5_nostatic*` and
/// `all_one_*` come from ensembles opened with other options (no static sessions; one session
/// per model), and must match the Rust API with the default options all the same.
struct Case {
    name: &'static str,
    on_curve: bool,
    sampling: Sampling,
    per: bool,
    members: bool,
    entropy: bool,
    disagreement: bool,
}

fn cases() -> Vec<Case> {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let randomized = |grid, seed| Sampling::Randomized {
        grid,
        seed: Some(seed),
    };
    // Every output of a shared sampling; the outputs of a per-sample one; only some.
    let every = |name, on_curve, sampling| Case {
        name,
        on_curve,
        sampling,
        per: true,
        members: true,
        entropy: true,
        disagreement: true,
    };
    let per_sample = |name, on_curve, sampling| Case {
        per: false,
        disagreement: false,
        ..every(name, on_curve, sampling)
    };
    let only = |name, on_curve, sampling, entropy: bool| Case {
        per: false,
        members: false,
        entropy,
        disagreement: !entropy,
        ..every(name, on_curve, sampling)
    };
    vec![
        every("at", true, Sampling::At(vec![0.0, 0.3, 1.0])),
        every("grid5", true, Sampling::Grid(5)),
        every("uniform", true, Sampling::Uniform { n: 4, seed: 7 }),
        Case {
            per: false,
            ..every("arc", true, Sampling::ArcUniform { n: 4, seed: 9 })
        },
        per_sample("randomized", true, randomized(5, 11)),
        per_sample(
            "keyed",
            true,
            Sampling::Keyed {
                key,
                grid: 5,
                quantum: None,
            },
        ),
        every("all", false, Sampling::AllMembers),
        every("members", false, Sampling::Members(vec![2, 0])),
        per_sample("snap_randomized", false, randomized(0, 3)),
        per_sample(
            "snap_keyed",
            false,
            Sampling::Keyed {
                key,
                grid: 0,
                quantum: None,
            },
        ),
        only("grid5_ent", true, Sampling::Grid(5), true),
        every("grid5_nostatic", true, Sampling::Grid(5)),
        only("grid5_nostatic_ent", true, Sampling::Grid(5), true),
        only("randomized_ent", true, randomized(5, 11), true),
        only("all_ent", false, Sampling::AllMembers, true),
        only("all_one_ent", false, Sampling::AllMembers, true),
        only("all_one_dis", false, Sampling::AllMembers, false),
    ]
}

fn case_names() -> Vec<&'static str> {
    cases().iter().map(|c| c.name).collect()
}

/// Compares what a program wrote in `dir` for the cases `names` with the Rust API: the
/// probabilities, per-member probabilities, `Prediction::entropy` and
/// `Prediction::disagreement`, and with `with_members` the members.
fn check_against_rust(dir: &Path, names: &[&str], with_members: bool) {
    let f = fixture();
    let curve = Ensemble::open(runtime(), &f.curve, EnsembleOptions::default()).expect("curve");
    let snaps =
        Ensemble::open(runtime(), &f.snapshots, EnsembleOptions::default()).expect("snapshots");
    let x = ArrayD::from_shape_vec(IxDyn(&[BATCH, FEATURES]), f.x.clone()).expect("input");
    let file = |name: &str, suffix: &str| dir.join(format!("{name}.{suffix}"));
    let mut disagreeing = 0;
    for case in cases() {
        let name = case.name;
        if !names.contains(&name) {
            continue;
        }
        let e = if case.on_curve { &curve } else { &snaps };
        let p = e
            .predict(x.view(), &case.sampling, case.per)
            .expect("Rust predict");
        let want: Vec<f32> = p.probabilities.iter().copied().collect();
        assert_close(name, &read_f32(&file(name, "prob")), &want);
        if case.per {
            let all: Vec<f32> = p.per_member.expect("per member").iter().copied().collect();
            assert_close(name, &read_f32(&file(name, "per")), &all);
        }
        if case.entropy {
            let entropy: Vec<f32> = p.entropy.iter().copied().collect();
            assert_eq!(entropy.len(), BATCH);
            assert!(
                entropy.iter().any(|&h| h > 0.0),
                "{name}: entropy {entropy:?}"
            );
            assert_close(name, &read_f32(&file(name, "ent")), &entropy);
        }
        if case.disagreement {
            let d: Vec<f32> = p
                .disagreement
                .as_ref()
                .expect("disagreement of a shared sampling")
                .iter()
                .copied()
                .collect();
            assert_eq!(d.len(), BATCH);
            disagreeing += d.iter().filter(|&&v| v > 0.0).count();
            assert_close(name, &read_f32(&file(name, "dis")), &d);
        } else {
            assert!(
                !file(name, "dis").exists(),
                "{name}: disagreement written where not asked for"
            );
        }
        if with_members && case.members {
            let members: Vec<f64> = p
                .members
                .iter()
                .map(|m| match *m {
                    Member::T(t) => t,
                    Member::Index(i) => i as f64,
                })
                .collect();
            assert_eq!(read_f64(&file(name, "members")), members, "{name}: members");
        }
    }
    // The fixture's members do not all agree: the comparison sees non-zero values.
    if names.iter().any(|n| ["grid5", "all"].contains(n)) {
        assert!(disagreeing > 0, "no sample with members that disagree");
    }
}

/// The options an ensemble is opened with change nothing in its predictions: `grid5_nostatic`
/// (no static sessions) equals `grid5` bit for bit.
fn check_options_do_not_matter(dir: &Path) {
    for suffix in ["prob", "per", "ent", "dis"] {
        assert_eq!(
            read_f32(&dir.join(format!("grid5_nostatic.{suffix}"))),
            read_f32(&dir.join(format!("grid5.{suffix}"))),
            "grid5_nostatic.{suffix} differs from grid5"
        );
    }
}

/// Compares what a program wrote in `dir` for `grid5` and `all` with `modeconn predict` (the
/// CLI built with the workspace) on the same input.
fn check_against_cli(dir: &Path) {
    let f = fixture();
    let cli = target_dir().join("modeconn");
    assert!(
        cli.exists(),
        "{} is missing: run `cargo build --workspace` first",
        cli.display()
    );
    let x = ArrayD::from_shape_vec(IxDyn(&[BATCH, FEATURES]), f.x.clone()).expect("input");
    let x_npy = dir.join("x.npy");
    modeconn_runtime::npy::write(&x_npy, &x.view()).expect("write x.npy");
    for (name, bundle, sampling) in [
        ("grid5", &f.curve, ["--grid", "5"]),
        ("all", &f.snapshots, ["--members", "all"]),
    ] {
        let p = dir.join(format!("{name}-cli.npy"));
        run_ok(
            Command::new(&cli)
                .arg("predict")
                .arg(bundle)
                .arg("--input")
                .arg(&x_npy)
                .args(sampling)
                .arg("--out")
                .arg(&p),
        );
        let want: Vec<f32> = modeconn_runtime::npy::read::<f32>(&p)
            .expect("read the CLI's output")
            .iter()
            .copied()
            .collect();
        assert_close(name, &read_f32(&dir.join(format!("{name}.prob"))), &want);
    }
}

/// The bundles whose metadata `tests/c/metadata.c` and `tests/c/hpp_predict.cpp` write.
fn metadata_bundles() -> [(&'static str, &'static Path); 3] {
    let f = fixture();
    [
        ("curve", f.curve.as_path()),
        ("snapshots", f.snapshots.as_path()),
        ("labeled", f.labeled.as_path()),
    ]
}

/// Compares each NAME.meta a program wrote in `dir` (`write_metadata` in `tests/c/common.h`)
/// with `Ensemble::bundle().metadata()` and the ensemble's properties in the Rust API, the
/// static members with those of a Rust ensemble around the same prediction.
fn check_metadata(dir: &Path) {
    for (name, path) in metadata_bundles() {
        let text = std::fs::read_to_string(dir.join(format!("{name}.meta")))
            .unwrap_or_else(|e| panic!("{name}.meta: {e}"));
        let lines: Vec<(&str, &str)> = text
            .lines()
            .map(|l| l.split_once(' ').unwrap_or((l, "")))
            .collect();
        let get = |key: &str| -> &str {
            lines
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("{name}.meta has no {key}:\n{text}"))
                .1
        };
        let numbers = |key: &str| -> Vec<f64> {
            get(key)
                .split_whitespace()
                .map(|v| v.parse().expect("a number"))
                .collect()
        };

        let e = Ensemble::open(runtime(), path, EnsembleOptions::default()).expect("open");
        let static_before = e.static_members();
        let zeros = ArrayD::zeros(IxDyn(&[1, FEATURES]));
        let m = e.bundle().metadata().clone();
        let sampling = match m.kind {
            Kind::Curve => Sampling::Grid(3),
            Kind::Snapshots => Sampling::AllMembers,
        };
        e.predict(zeros.view(), &sampling, false).expect("predict");

        let kind = match m.kind {
            Kind::Curve => 0,
            Kind::Snapshots => 1,
        };
        let basis = match m.basis {
            None => 0,
            Some(Basis::Bezier) => 1,
            Some(Basis::Polychain) => 2,
        };
        let provider = match e.provider() {
            Provider::Cpu => 0,
            Provider::Cuda => 1,
        };
        assert_eq!(get("kind"), kind.to_string(), "{name}: kind");
        assert_eq!(get("basis"), basis.to_string(), "{name}: basis");
        assert_eq!(get("provider"), provider.to_string(), "{name}: provider");
        assert_eq!(get("points"), m.points.to_string(), "{name}: points");
        assert_eq!(
            get("classes"),
            m.output.classes.to_string(),
            "{name}: classes"
        );
        assert_eq!(
            numbers("temperature"),
            [m.temperature],
            "{name}: temperature"
        );
        assert_eq!(get("input_name"), m.input.name, "{name}: input name");
        assert_eq!(get("output_name"), m.output.name, "{name}: output name");
        let shape: Vec<i64> = get("shape")
            .split_whitespace()
            .map(|v| v.parse().expect("an axis"))
            .collect();
        assert_eq!(shape, m.input.shape, "{name}: input shape");
        let labels: Vec<&str> = lines
            .iter()
            .filter(|(k, _)| *k == "label")
            .map(|(_, v)| *v)
            .collect();
        let want_labels = m.labels.clone().unwrap_or_default();
        assert_eq!(
            get("labels"),
            want_labels.len().to_string(),
            "{name}: labels"
        );
        assert_eq!(labels, want_labels, "{name}: labels");
        match &m.provenance {
            None => assert!(
                lines.iter().any(|(k, _)| *k == "provenance-absent"),
                "{name}: provenance where the bundle records none"
            ),
            Some(want) => {
                let got: serde_json::Value =
                    serde_json::from_str(get("provenance")).expect("provenance is JSON");
                assert_eq!(&got, want, "{name}: provenance");
            }
        }
        let (mean, std) = m
            .preprocess
            .as_ref()
            .map_or((vec![], vec![]), |p| (p.mean.clone(), p.std.clone()));
        assert_eq!(get("channels"), mean.len().to_string(), "{name}: channels");
        assert_eq!(numbers("mean"), mean, "{name}: mean");
        assert_eq!(numbers("std"), std, "{name}: std");
        assert_eq!(
            get("static_before"),
            static_before.to_string(),
            "{name}: static members before"
        );
        assert_eq!(
            get("static_after"),
            e.static_members().to_string(),
            "{name}: static members after"
        );
    }
    // The fixture exercises every optional key.
    let labeled = std::fs::read_to_string(dir.join("labeled.meta")).expect("labeled.meta");
    assert!(labeled.contains("label śnieg\n") && labeled.contains("channels 4\n"));
}

fn predict_args(cmd: &mut Command, out: &Path) {
    let f = fixture();
    cmd.arg(&f.curve)
        .arg(&f.snapshots)
        .arg(&f.input)
        .arg(BATCH.to_string())
        .arg(out);
}

// ---------------------------------------------------------------------------------------------
// Tests

mod header {
    use super::*;

    fn generate() -> String {
        let crate_dir = env!("CARGO_MANIFEST_DIR");
        let mut config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml"))
            .expect("ffi/cbindgen.toml");
        // modeconn_status is generated from the three lists of codes (ffi/src/status.rs), not
        // from a Rust enum of its own.
        let after = config.after_includes.take().unwrap_or_default();
        config.after_includes = Some(format!("{after}{}", modeconn::status::c_declaration()));
        let bindings = cbindgen::Builder::new()
            .with_crate(crate_dir)
            .with_config(config)
            .generate()
            .expect("cbindgen generates the header");
        let mut out = Vec::new();
        bindings.write(&mut out);
        String::from_utf8(out).expect("UTF-8 header")
    }

    #[test]
    fn header_is_up_to_date() {
        let path = repo().join("include/modeconn.h");
        let generated = generate();
        if std::env::var_os("MODECONN_UPDATE_HEADER").is_some() {
            std::fs::write(&path, &generated).expect("write include/modeconn.h");
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == generated,
            "include/modeconn.h differs from what ffi/src declares: regenerate it with \
             `MODECONN_UPDATE_HEADER=1 cargo test -p modeconn-ffi --test c_api header`"
        );
    }

    #[test]
    fn header_version_matches_cargo() {
        let text = std::fs::read_to_string(repo().join("include/modeconn.h")).expect("header");
        for (name, value) in [
            ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
            ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
            ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
        ] {
            let line = format!("#define MODECONN_VERSION_{name} {value}\n");
            assert!(text.contains(&line), "the header lacks `{}`", line.trim());
        }
        let version = unsafe { std::ffi::CStr::from_ptr(modeconn::modeconn_version()) };
        assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
        let abi: u32 = env!("CARGO_PKG_VERSION_MAJOR")
            .parse::<u32>()
            .expect("major")
            * 10000
            + env!("CARGO_PKG_VERSION_MINOR")
                .parse::<u32>()
                .expect("minor")
                * 100
            + env!("CARGO_PKG_VERSION_PATCH")
                .parse::<u32>()
                .expect("patch");
        assert_eq!(modeconn::modeconn_abi_version(), abi);
    }

    #[test]
    fn header_compiles_alone_in_c_and_cpp() {
        for (compiler, std, src) in [
            ("gcc", "-std=c11", "tests/c/header_only.c"),
            ("gcc", "-std=c99", "tests/c/header_only.c"),
            ("g++", "-std=c++11", "tests/c/header_only.cpp"),
            ("g++", "-std=c++17", "tests/c/header_only.cpp"),
            // The C++ wrapper needs C++17; with C++20 it adds the std::span overload.
            ("g++", "-std=c++17", "tests/c/header_only_hpp.cpp"),
            ("g++", "-std=c++20", "tests/c/header_only_hpp.cpp"),
        ] {
            let stem = Path::new(src)
                .file_stem()
                .expect("a file name")
                .to_string_lossy();
            let out = work().join(format!("{stem}{std}.o"));
            let output = Command::new(compiler)
                .arg(std)
                .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c"])
                .arg("-I")
                .arg(repo().join("include"))
                .arg(repo().join(src))
                .arg("-o")
                .arg(&out)
                .output()
                .expect("run the compiler");
            assert!(
                output.status.success(),
                "{compiler} {std} {src}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn predict_c(link: Link) {
    let program = compile("predict", &["tests/c/predict.c"], Build::sanitized(link));
    let out = out_dir(&format!("predict-c-{link:?}"));
    let mut cmd = program.command();
    predict_args(&mut cmd, &out);
    let output = run_ok(&mut cmd);
    check_descriptions(&String::from_utf8_lossy(&output.stdout));
    check_against_rust(&out, &case_names(), true);
    check_options_do_not_matter(&out);
    check_against_cli(&out);
}

/// The properties predict.c and hpp_predict.cpp print.
fn check_descriptions(stdout: &str) {
    for line in [
        "curve kind=0 basis=1 points=3 classes=3 provider=0 shape=-1,4",
        "snapshots kind=1 basis=0 points=3 classes=3 provider=0 shape=-1,4",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
}

/// The scratch folders of finished runs go; this run's, and any of a process still running
/// (here the parent of this one), stay.
#[test]
fn scratch_folders_of_finished_runs_are_removed() {
    let root = tempfile::tempdir().expect("temporary folder");
    // Above the kernel's largest pid_max (2^22), so no process has it.
    let gone = root.path().join("4294967");
    let own = root.path().join(std::process::id().to_string());
    let parent = root
        .path()
        .join(std::os::unix::process::parent_id().to_string());
    let other = root.path().join("not-a-pid");
    for dir in [&gone, &own, &parent, &other] {
        std::fs::create_dir_all(dir.join("sub")).expect("create a scratch folder");
    }
    remove_stale_scratch(root.path());
    assert!(
        !gone.exists(),
        "the folder of a finished run is still there"
    );
    for dir in [&own, &parent, &other] {
        assert!(dir.exists(), "{} was removed", dir.display());
    }
}

#[test]
fn c_shared_predicts_like_rust() {
    predict_c(Link::Shared);
}

#[test]
fn c_static_predicts_like_rust() {
    predict_c(Link::Static);
}

fn predict_cpp(link: Link) {
    let program = compile(
        "predict_cpp",
        &["tests/c/predict.cpp"],
        Build::sanitized(link),
    );
    let out = out_dir(&format!("predict-cpp-{link:?}"));
    let mut cmd = program.command();
    predict_args(&mut cmd, &out);
    run_ok(&mut cmd);
    check_against_rust(&out, &["grid5", "all"], false);
}

#[test]
fn cpp_shared_predicts_like_rust() {
    predict_cpp(Link::Shared);
}

#[test]
fn cpp_static_predicts_like_rust() {
    predict_cpp(Link::Static);
}

#[test]
fn c_metadata_matches_rust() {
    for link in LINKS {
        let program = compile("metadata", &["tests/c/metadata.c"], Build::sanitized(link));
        let out = out_dir(&format!("metadata-{link:?}"));
        let mut cmd = program.command();
        cmd.arg(&out);
        for (name, path) in metadata_bundles() {
            cmd.arg(format!("{name}={}", path.display()));
        }
        run_ok(&mut cmd);
        check_metadata(&out);
    }
}

/// `tests/c/hpp_predict.cpp` through `include/modeconn.hpp`: every case of predict.c against
/// the Rust API and the CLI, every metadata accessor against the Rust API.
fn predict_hpp(build: Build) {
    let program = compile("hpp_predict", &["tests/c/hpp_predict.cpp"], build);
    let out = out_dir(&format!("predict-hpp-{:?}-{}", build.link, build.cpp));
    let mut cmd = program.command();
    predict_args(&mut cmd, &out);
    cmd.arg(&fixture().labeled);
    let output = run_ok(&mut cmd);
    check_descriptions(&String::from_utf8_lossy(&output.stdout));
    check_against_rust(&out, &case_names(), true);
    check_options_do_not_matter(&out);
    check_metadata(&out);
    check_against_cli(&out);
}

#[test]
fn hpp_shared_predicts_like_rust() {
    predict_hpp(Build::sanitized(Link::Shared));
}

#[test]
fn hpp_static_predicts_like_rust() {
    predict_hpp(Build::sanitized(Link::Static));
}

/// C++20: the std::span overload of predict.
#[test]
fn hpp_cpp20_predicts_like_rust() {
    predict_hpp(Build::sanitized(Link::Shared).cpp("c++20"));
}

/// Runs a misuse program (`tests/c/misuse.c`, `tests/c/hpp_misuse.cpp`) with its arguments:
/// CURVE SNAPSHOTS CORRUPT MISSING OUTDIR LABELED.
fn misuse(name: &str, source: &str) {
    let f = fixture();
    for link in LINKS {
        let program = compile(name, &[source], Build::sanitized(link));
        run_ok(
            program
                .command()
                .arg(&f.curve)
                .arg(&f.snapshots)
                .arg(&f.corrupt)
                .arg(work().join("missing.safetensors"))
                .arg(out_dir(&format!("{name}-{link:?}")))
                .arg(&f.labeled),
        );
    }
}

#[test]
fn misuse_is_a_status_and_a_message() {
    misuse("misuse", "tests/c/misuse.c");
}

#[test]
fn hpp_misuse_throws_errors() {
    misuse("hpp_misuse", "tests/c/hpp_misuse.cpp");
}

#[test]
fn missing_onnx_runtime_is_a_status() {
    for link in LINKS {
        let program = compile("no_ort", &["tests/c/no_ort.c"], Build::sanitized(link));
        run_ok(
            program
                .command()
                .env_remove("ORT_DYLIB_PATH")
                .arg("/nonexistent/libonnxruntime.so"),
        );
    }
}

#[test]
fn threads_share_one_ensemble() {
    for link in LINKS {
        let program = compile("threads", &["tests/c/threads.c"], Build::sanitized(link));
        run_ok(program.command().arg(&fixture().curve));
    }
}

#[test]
fn training_through_the_plugin() {
    // The real trainer plugin, built with the workspace (`cargo build --workspace`, which
    // scripts/test.sh runs first); libtorch comes from LD_LIBRARY_PATH (the env file sets it).
    let plugin = target_dir().join("libmodeconn_trainer.so");
    assert!(
        plugin.exists(),
        "{} is missing: run `cargo build -p modeconn-trainer` first",
        plugin.display()
    );
    for link in LINKS {
        for (name, source) in [
            ("train", "tests/c/train.c"),
            ("hpp_train", "tests/c/hpp_train.cpp"),
        ] {
            let program = compile(name, &[source], Build::sanitized(link));
            let out = tempfile::tempdir().expect("a temporary folder");
            // libmodeconn.so is a shared object but not a trainer plugin.
            run_ok(
                program
                    .command()
                    .env("MODECONN_TRAINER", &plugin)
                    .arg(&plugin)
                    .arg(library("libmodeconn.so"))
                    .arg(out.path()),
            );
        }
    }
}

#[test]
fn example_runs() {
    let f = fixture();
    for link in LINKS {
        // The C example and its C++ twin print the same thing.
        let mut printed = Vec::new();
        for (name, source) in [
            ("example", "examples/c/predict.c"),
            ("example_cpp", "examples/c/predict.cpp"),
        ] {
            let program = compile(name, &[source], Build::sanitized(link));
            let output = run_ok(
                program
                    .command()
                    .arg(&f.curve)
                    .arg(&f.input)
                    .arg(BATCH.to_string())
                    .arg("5"),
            );
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            assert_eq!(text.lines().count(), BATCH, "{text}");
            assert!(text.lines().all(|l| l.contains(" entropy=")), "{text}");
            // With labels, the class is named.
            let output = run_ok(
                program
                    .command()
                    .arg(&f.labeled)
                    .arg(&f.input)
                    .arg(BATCH.to_string()),
            );
            let labeled = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                labeled
                    .lines()
                    .all(|l| ["cat", "dog", "śnieg"].iter().any(|w| l.ends_with(w))),
                "{labeled}"
            );
            printed.push((text, labeled));
        }
        assert_eq!(printed[0], printed[1], "the C and C++ examples differ");
    }
}

/// `valgrind --leak-check=full` on the example (open, predict, close) and on the misuse
/// program: no definite leak, no invalid access. ONNX Runtime's own "still reachable" and
/// "possibly lost" blocks (thread pools, the environment kept for the process) are not counted.
#[test]
fn valgrind_is_clean() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "valgrind is required for this test (apt-get install valgrind)"
    );
    let f = fixture();
    let example = compile(
        "example",
        &["examples/c/predict.c"],
        Build::plain(Link::Shared),
    );
    let misuse = compile("misuse", &["tests/c/misuse.c"], Build::plain(Link::Shared));
    let out = out_dir("misuse-vg");
    let valgrind = |exe: &Program, args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=1",
            "--num-callers=30",
        ])
        .arg(format!(
            "--suppressions={}",
            repo().join("tests/c/valgrind.supp").display()
        ))
        .arg(&exe.exe);
        for a in args {
            cmd.arg(a);
        }
        let output = run_ok(&mut cmd);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
        stderr
    };
    let batch = BATCH.to_string();
    valgrind(&example, &[&f.curve, &f.input, &batch, &"3"]);
    valgrind(
        &misuse,
        &[
            &f.curve,
            &f.snapshots,
            &f.corrupt,
            &work().join("missing.safetensors"),
            &out,
            &f.labeled,
        ],
    );
}
