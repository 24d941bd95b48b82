//! The C API from C and C++: the header is what the Rust code declares, and programs in
//! `tests/c/` and `examples/c/`, compiled with the system's gcc and g++ against
//! `include/modeconn.h` and both `libmodeconn.so` and `libmodeconn.a`, predict what the Rust API
//! predicts, answer misuse with statuses, share an ensemble between threads, train through a
//! plugin, and run clean under valgrind.
//!
//! Needs the environment of `scripts/setup.sh` (`ORT_DYLIB_PATH`). The header is regenerated
//! with `MODECONN_UPDATE_HEADER=1 cargo test -p modeconn-ffi --test c_api header`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::{build::ModelBuilder, elem};
use modeconn_runtime::{BundleWriter, Ensemble, EnsembleOptions, Member, Sampling};
use modeconn_runtime::{Runtime, RuntimeOptions};
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

/// A scratch folder for this test process.
fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir()
            .join("ffi-c-tests")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

// ---------------------------------------------------------------------------------------------
// Compiling

#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Shared,
    Static,
}

/// Compiles C (`.c`) or C++ (`.cpp`) sources into an executable linked against libmodeconn.
fn compile(name: &str, sources: &[&str], link: Link) -> PathBuf {
    let cpp = sources.iter().any(|s| s.ends_with(".cpp"));
    let out = work().join(format!("{name}-{link:?}").to_lowercase());
    let target = target_dir();
    let mut cmd = Command::new(if cpp { "g++" } else { "gcc" });
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" })
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
    for s in sources {
        cmd.arg(repo().join(s));
    }
    cmd.arg("-o").arg(&out);
    match link {
        Link::Shared => {
            cmd.arg(target.join("libmodeconn.so"))
                .arg(format!("-Wl,-rpath,{}", target.display()));
        }
        Link::Static => {
            cmd.arg(target.join("libmodeconn.a"))
                .args(["-lpthread", "-ldl", "-lm", "-lgcc_s"]);
        }
    }
    cmd.arg("-lm");
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {sources:?} ({link:?}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

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
    println!("{text}");
    output
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
    curve: PathBuf,
    snapshots: PathBuf,
    corrupt: PathBuf,
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

fn bundle(kind: Kind, points: usize, path: &Path) {
    let meta = Metadata {
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
    };
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
        let dir = work().join("fixtures");
        std::fs::create_dir_all(&dir).expect("fixtures folder");
        let curve = dir.join("curve.safetensors");
        let snapshots = dir.join("snapshots.safetensors");
        bundle(Kind::Curve, 3, &curve);
        bundle(Kind::Snapshots, 3, &snapshots);
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

/// The cases `tests/c/predict.c` writes: name, curve (else snapshots), sampling, per-member.
fn cases() -> Vec<(&'static str, bool, Sampling, bool)> {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    vec![
        ("at", true, Sampling::At(vec![0.0, 0.3, 1.0]), true),
        ("grid5", true, Sampling::Grid(5), true),
        ("uniform", true, Sampling::Uniform { n: 4, seed: 7 }, true),
        ("arc", true, Sampling::ArcUniform { n: 4, seed: 9 }, false),
        (
            "randomized",
            true,
            Sampling::Randomized {
                grid: 5,
                seed: Some(11),
            },
            false,
        ),
        ("keyed", true, Sampling::Keyed { key, grid: 5 }, false),
        ("all", false, Sampling::AllMembers, true),
        ("members", false, Sampling::Members(vec![2, 0]), true),
        (
            "snap_randomized",
            false,
            Sampling::Randomized {
                grid: 0,
                seed: Some(3),
            },
            false,
        ),
        ("snap_keyed", false, Sampling::Keyed { key, grid: 0 }, false),
    ]
}

/// Compares what a program wrote in `dir` for the cases `names` with the Rust API.
fn check_against_rust(dir: &Path, names: &[&str], with_members: bool) {
    let f = fixture();
    let curve = Ensemble::open(runtime(), &f.curve, EnsembleOptions::default()).expect("curve");
    let snaps =
        Ensemble::open(runtime(), &f.snapshots, EnsembleOptions::default()).expect("snapshots");
    let x = ArrayD::from_shape_vec(IxDyn(&[BATCH, FEATURES]), f.x.clone()).expect("input");
    for (name, on_curve, sampling, per) in cases() {
        if !names.contains(&name) {
            continue;
        }
        let e = if on_curve { &curve } else { &snaps };
        let p = e.predict(x.view(), &sampling, per).expect("Rust predict");
        let want: Vec<f32> = p.probabilities.iter().copied().collect();
        assert_close(name, &read_f32(&dir.join(format!("{name}.prob"))), &want);
        if per {
            let all: Vec<f32> = p.per_member.expect("per member").iter().copied().collect();
            assert_close(name, &read_f32(&dir.join(format!("{name}.per"))), &all);
        }
        if with_members {
            let members: Vec<f64> = p
                .members
                .iter()
                .map(|m| match *m {
                    Member::T(t) => t,
                    Member::Index(i) => i as f64,
                })
                .collect();
            assert_eq!(
                read_f64(&dir.join(format!("{name}.members"))),
                members,
                "{name}: members"
            );
        }
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

/// The cases of `tests/c/predict.c` that write entropy (NAME.prob and NAME.ent): name, curve
/// (else snapshots), sampling. `grid5_nostatic*` and `all_one_ent` come from ensembles opened
/// with `modeconn_ensemble_open_with` (no static sessions; one session per model): they must
/// match the Rust API with the default options.
fn entropy_cases() -> Vec<(&'static str, bool, Sampling)> {
    let randomized = Sampling::Randomized {
        grid: 5,
        seed: Some(11),
    };
    vec![
        ("grid5_ent", true, Sampling::Grid(5)),
        ("grid5_nostatic_ent", true, Sampling::Grid(5)),
        ("randomized_ent", true, randomized),
        ("all_ent", false, Sampling::AllMembers),
        ("all_one_ent", false, Sampling::AllMembers),
    ]
}

/// Compares the entropy cases a program wrote in `dir` (and `grid5_nostatic`) with the Rust
/// API's probabilities and `Prediction::entropy`.
fn check_entropy_against_rust(dir: &Path) {
    let f = fixture();
    let curve = Ensemble::open(runtime(), &f.curve, EnsembleOptions::default()).expect("curve");
    let snaps =
        Ensemble::open(runtime(), &f.snapshots, EnsembleOptions::default()).expect("snapshots");
    let x = ArrayD::from_shape_vec(IxDyn(&[BATCH, FEATURES]), f.x.clone()).expect("input");
    for (name, on_curve, sampling) in entropy_cases() {
        let e = if on_curve { &curve } else { &snaps };
        let p = e.predict(x.view(), &sampling, false).expect("Rust predict");
        let want: Vec<f32> = p.probabilities.iter().copied().collect();
        assert_close(name, &read_f32(&dir.join(format!("{name}.prob"))), &want);
        let entropy: Vec<f32> = p.entropy.iter().copied().collect();
        assert_eq!(entropy.len(), BATCH);
        assert!(
            entropy.iter().any(|&h| h > 0.0),
            "{name}: entropy {entropy:?}"
        );
        assert_close(name, &read_f32(&dir.join(format!("{name}.ent"))), &entropy);
    }
    // Without static sessions, the same probabilities as with the default options.
    let p = curve
        .predict(x.view(), &Sampling::Grid(5), true)
        .expect("Rust predict");
    let want: Vec<f32> = p.probabilities.iter().copied().collect();
    let got = read_f32(&dir.join("grid5_nostatic.prob"));
    assert_close("grid5_nostatic", &got, &want);
    assert_eq!(
        got,
        read_f32(&dir.join("grid5.prob")),
        "grid5_nostatic: differs from grid5"
    );
    let all: Vec<f32> = p.per_member.expect("per member").iter().copied().collect();
    assert_close(
        "grid5_nostatic",
        &read_f32(&dir.join("grid5_nostatic.per")),
        &all,
    );
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
        let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml"))
            .expect("ffi/cbindgen.toml");
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
        ] {
            let out = work().join(format!("header_only{std}.o"));
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
    let exe = compile("predict", &["tests/c/predict.c"], link);
    let out = work().join(format!("predict-c-{link:?}"));
    std::fs::create_dir_all(&out).expect("output folder");
    let mut cmd = Command::new(exe);
    predict_args(&mut cmd, &out);
    let output = run_ok(&mut cmd);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("curve kind=0 basis=1 points=3 classes=3 provider=0 shape=-1,4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("snapshots kind=1 basis=0 points=3 classes=3 provider=0 shape=-1,4"),
        "{stdout}"
    );
    let names: Vec<&str> = cases().iter().map(|c| c.0).collect();
    check_against_rust(&out, &names, true);
    check_entropy_against_rust(&out);
    check_against_cli(&out);
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
    let exe = compile("predict_cpp", &["tests/c/predict.cpp"], link);
    let out = work().join(format!("predict-cpp-{link:?}"));
    std::fs::create_dir_all(&out).expect("output folder");
    let mut cmd = Command::new(exe);
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
fn misuse_is_a_status_and_a_message() {
    for link in [Link::Shared, Link::Static] {
        let exe = compile("misuse", &["tests/c/misuse.c"], link);
        let f = fixture();
        let out = work().join(format!("misuse-{link:?}"));
        std::fs::create_dir_all(&out).expect("output folder");
        run_ok(
            Command::new(exe)
                .arg(&f.curve)
                .arg(&f.snapshots)
                .arg(&f.corrupt)
                .arg(work().join("missing.safetensors"))
                .arg(&out),
        );
    }
}

#[test]
fn missing_onnx_runtime_is_a_status() {
    for link in [Link::Shared, Link::Static] {
        let exe = compile("no_ort", &["tests/c/no_ort.c"], link);
        run_ok(
            Command::new(exe)
                .env_remove("ORT_DYLIB_PATH")
                .arg("/nonexistent/libonnxruntime.so"),
        );
    }
}

#[test]
fn threads_share_one_ensemble() {
    for link in [Link::Shared, Link::Static] {
        let exe = compile("threads", &["tests/c/threads.c"], link);
        run_ok(Command::new(exe).arg(&fixture().curve));
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
    for link in [Link::Shared, Link::Static] {
        let exe = compile("train", &["tests/c/train.c"], link);
        let out = tempfile::tempdir().expect("a temporary folder");
        // libmodeconn.so is a shared object but not a trainer plugin.
        run_ok(
            Command::new(exe)
                .env("MODECONN_TRAINER", &plugin)
                .arg(&plugin)
                .arg(target_dir().join("libmodeconn.so"))
                .arg(out.path()),
        );
    }
}

#[test]
fn example_runs() {
    for link in [Link::Shared, Link::Static] {
        let exe = compile("example", &["examples/c/predict.c"], link);
        let f = fixture();
        let output = run_ok(
            Command::new(exe)
                .arg(&f.curve)
                .arg(&f.input)
                .arg(BATCH.to_string())
                .arg("5"),
        );
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.lines().count(), BATCH, "{text}");
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
    let example = compile("example_vg", &["examples/c/predict.c"], Link::Shared);
    let misuse = compile("misuse_vg", &["tests/c/misuse.c"], Link::Shared);
    let out = work().join("misuse-vg");
    std::fs::create_dir_all(&out).expect("output folder");
    let valgrind = |exe: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]| {
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
        .arg(exe);
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
        ],
    );
}
