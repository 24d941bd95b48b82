//! Writes the seed corpora, `fuzz/corpus/<target>/`, from what the tests write and build:
//! bundles, ONNX models and `.npy` files made in code as the runtime's tests make them, the
//! requests of `tests/serve.rs`, the jobs, events and reports of the jobs crate's tests, and
//! audit lines sealed by a real `AuditLog`; with `--fixtures DIR` (the tests' fixture folder,
//! `target/tmp/modeconn-fixtures` after `cargo test`) also the bundles, models and arrays
//! that `tests/python/` writes.
//!
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds -- [--fixtures DIR]`
//! (with the env of `scripts/setup.sh`); the seeds are committed, so this is rerun only to
//! change them.

use std::fs;
use std::path::{Path, PathBuf};

use modeconn_fuzz::models::{self, values};
use modeconn_fuzz::{audit, server};
use modeconn_jobs::{EpochScores, Event, Phase};
use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::build::{Attr, DimSpec, ModelBuilder};
use modeconn_runtime::graph::elem;
use modeconn_runtime::npy;
use modeconn_runtime::{Bundle, Member};
use modeconn_server::audit::{AuditLog, Entry};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let mut args = std::env::args().skip(1);
    let mut fixtures = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fixtures" => fixtures = args.next().map(PathBuf::from),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = Seeds { root };
    bundles(&seeds)?;
    onnx(&seeds)?;
    npy_files(&seeds)?;
    requests(&seeds)?;
    jobs(&seeds)?;
    audit_lines(&seeds)?;
    if let Some(dir) = fixtures {
        from_fixtures(&seeds, &dir)?;
    }
    Ok(())
}

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> Result {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

fn bundles(s: &Seeds) -> Result {
    s.put(
        "bundle",
        "linear-bezier3.safetensors",
        models::linear_curve(Basis::Bezier, 3)?,
    )?;
    s.put(
        "bundle",
        "linear-polychain4.safetensors",
        models::linear_curve(Basis::Polychain, 4)?,
    )?;
    s.put(
        "bundle",
        "bn-grid3.safetensors",
        models::batch_norm_curve(3)?,
    )?;
    s.put(
        "bundle",
        "cnn-snapshots2.safetensors",
        models::cnn_shaped_bundle(Kind::Snapshots, 2, true)?,
    )?;
    s.put(
        "bundle",
        "no-tensors.safetensors",
        models::fixed_curve(2, false)?,
    )?;
    // Room for longer numbers (see `edit_header`): points, and classes where the graph does
    // not fix them.
    let roomy = models::edit_header(
        &models::fixed_curve(2, true)?,
        &[
            (
                r#""modeconn.points":"2""#,
                r#""modeconn.points":"2            ""#,
            ),
            (r#"\"classes\":3"#, r#"\"classes\":3            "#),
        ],
    )
    .ok_or("the header edits apply")?;
    Bundle::from_bytes(roomy.clone())?;
    s.put("bundle", "no-tensors-roomy-numbers.safetensors", roomy)?;
    Ok(())
}

/// The graph tests' small model (`runtime/src/graph/tests.rs`, `small_builder`): Conv,
/// BatchNormalization, Relu, GlobalAveragePool, Flatten, Gemm and a scalar Mul, with
/// `conv.weight` both an initializer and an input and `bn.running_var` an input only.
fn small_model() -> Vec<u8> {
    const CONV_W: [i64; 4] = [2, 3, 3, 3];
    let fixed = |dims: &[i64]| dims.iter().map(|&d| DimSpec::Fixed(d)).collect::<Vec<_>>();
    let mut b = ModelBuilder::new("small", 17);
    b.producer("modeconn-tests", "0.1")
        .doc_string("a small test model")
        .metadata("modeconn.test", "yes")
        .input(
            "input",
            elem::FLOAT,
            &["N".into(), 3.into(), 5.into(), 5.into()],
        )
        .input("conv.weight", elem::FLOAT, &fixed(&CONV_W))
        .input("bn.running_var", elem::FLOAT, &[2.into()])
        .initializer_f32("conv.weight", &CONV_W, &values(54, 1))
        .initializer_f32("conv.bias", &[2], &values(2, 2))
        .initializer_f32("bn.weight", &[2], &values(2, 3))
        .initializer_f32("bn.bias", &[2], &values(2, 4))
        .initializer_f32("bn.running_mean", &[2], &values(2, 5))
        .initializer_f32("fc.weight", &[3, 2], &values(6, 6))
        .initializer_f32("fc.bias", &[3], &values(3, 7))
        .initializer_f32("scale", &[], &[1.5])
        .initializer_i64("shape", &[2], &[1, -1])
        .node(
            "Conv",
            &["input", "conv.weight", "conv.bias"],
            &["c"],
            &[
                Attr::ints("pads", &[1, 1, 1, 1]),
                Attr::ints("kernel_shape", &[3, 3]),
                Attr::string("auto_pad", "NOTSET"),
            ],
        )
        .node(
            "BatchNormalization",
            &[
                "c",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
            ],
            &["b"],
            &[Attr::float("epsilon", 1e-5)],
        )
        .node("Relu", &["b"], &["r"], &[])
        .node("GlobalAveragePool", &["r"], &["g"], &[])
        .node("Flatten", &["g"], &["f"], &[Attr::int("axis", 1)])
        .node(
            "Gemm",
            &["f", "fc.weight", "fc.bias"],
            &["z"],
            &[Attr::int("transB", 1)],
        )
        .node("Mul", &["z", "scale"], &["logits"], &[])
        .output("logits", elem::FLOAT, &["N".into(), 3.into()])
        .value_info(
            "c",
            elem::FLOAT,
            &["N".into(), 2.into(), 5.into(), 5.into()],
        );
    b.build()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The small model with the extras of the graph tests' decorated model that sit at the
/// model's level: an unknown length-delimited field, a function, a varint with a padded
/// (non-canonical) tag and value, and a group.
fn decorated_model() -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1000, b"opaque bytes");
    out.extend(small_model());
    let mut function = Vec::new();
    bytes_field(&mut function, 1, b"my_function");
    bytes_field(&mut function, 10, b"custom.domain");
    bytes_field(&mut function, 4, b"x");
    bytes_field(&mut out, 25, &function);
    out.extend_from_slice(&[0xb8, 0xbe, 0x00, 0x85, 0x00]);
    varint(&mut out, 1001 << 3 | 3);
    varint(&mut out, 1 << 3);
    varint(&mut out, 7);
    varint(&mut out, 1001 << 3 | 4);
    out
}

fn onnx(s: &Seeds) -> Result {
    s.put("onnx", "small.onnx", small_model())?;
    s.put("onnx", "decorated.onnx", decorated_model())?;
    s.put("onnx", "cnn-shaped.onnx", models::cnn_shaped_graph(false))?;
    let bn = Bundle::from_bytes(models::batch_norm_curve(3)?)?;
    s.put("onnx", "bn-curve-graph.onnx", bn.graph().bytes())?;
    s.put(
        "onnx",
        "bn-curve-member.onnx",
        bn.materialize(Member::T(0.3))?,
    )?;
    Ok(())
}

fn npy_files(s: &Seeds) -> Result {
    let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.5f32, -2.0, 3.25, 0.0, 1e-7, 7.0])?;
    s.put("npy", "f32-2x3.npy", npy::encode(&a.view()))?;
    let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![3i64, -1, 9])?;
    s.put("npy", "i64-3.npy", npy::encode(&b.view()))?;
    let scalar = ArrayD::from_shape_vec(IxDyn(&[]), vec![0.5f32])?;
    s.put("npy", "f32-scalar.npy", npy::encode(&scalar.view()))?;
    let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 4]));
    s.put("npy", "f32-0x4.npy", npy::encode(&empty.view()))?;
    // Version 2 (a 4-byte header length), double quotes and a native-order descr.
    let header = "{\"descr\": \"=f4\", \"fortran_order\": False, \"shape\": (2, 2)}\n";
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
    v2.extend_from_slice(header.as_bytes());
    v2.extend((0..4).flat_map(|i| (i as f32).to_le_bytes()));
    s.put("npy", "f32-v2-double-quotes.npy", v2)?;
    Ok(())
}

fn requests(s: &Seeds) -> Result {
    let x: Vec<f32> = values(192, 11);
    let zeros = vec![0.0f32; 192];
    let tensor = |shape: Value, data: &[f32]| json!({"name": "input", "shape": shape, "datatype": "FP32", "data": data});
    let json_request = |params: Value, outputs: &[&str]| {
        let mut body = json!({"id": "req-1", "inputs": [tensor(json!([1, 3, 8, 8]), &x)], "parameters": params});
        if !outputs.is_empty() {
            body["outputs"] = outputs.iter().map(|o| json!({ "name": o })).collect();
        }
        serde_json::to_vec(&body).expect("JSON")
    };
    let all = [
        "probabilities",
        "class",
        "entropy",
        "per_member",
        "disagreement",
        "point",
    ];
    let curve = 0u8;
    let snapshots = server::SNAPSHOTS;
    let put = |name: &str, flags: u8, body: &[u8]| {
        s.put("server", name, server::input(flags, None, body))
    };
    put("ensemble.json", curve, &json_request(json!({}), &all))?;
    put(
        "at-t.json",
        curve,
        &json_request(
            json!({"mode": "at", "t": [0.25, 0.75]}),
            &["point", "per_member"],
        ),
    )?;
    put(
        "at-t-string.json",
        curve,
        &json_request(json!({"mode": "at", "t": "0.1, 0.9"}), &[]),
    )?;
    put(
        "randomized.json",
        curve,
        &json_request(json!({"mode": "randomized"}), &["point", "class"]),
    )?;
    put(
        "keyed.json",
        curve,
        &json_request(json!({"mode": "keyed"}), &["point"]),
    )?;
    put(
        "members.json",
        snapshots,
        &json_request(json!({"mode": "at", "members": [0, 2]}), &all),
    )?;
    put(
        "members-string.json",
        snapshots,
        &json_request(json!({"mode": "at", "members": "1,2"}), &[]),
    )?;
    put(
        "restricted-keyed.json",
        server::RESTRICTED,
        &json_request(json!({"mode": "keyed"}), &[]),
    )?;
    // Nested data, a batch of two.
    let nested: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
        .map(|_| {
            (0..3)
                .map(|c| {
                    (0..8)
                        .map(|r| x[c * 64 + r * 8..c * 64 + r * 8 + 8].to_vec())
                        .collect()
                })
                .collect()
        })
        .collect();
    let body = json!({"inputs": [{"name": "input", "shape": [2, 3, 8, 8], "datatype": "FP32", "data": nested}]});
    put("nested.json", curve, &serde_json::to_vec(&body)?)?;
    // The binary extension both ways (tests/serve.rs, infer_binary).
    let head = json!({
        "inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 768}}],
        "parameters": {"binary_data_output": true},
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}, {"name": "class"}],
    });
    let mut body = serde_json::to_vec(&head)?;
    let len = body.len() as u16;
    body.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    s.put(
        "server",
        "binary.bin",
        server::input(curve, Some(len), &body),
    )?;
    s.put(
        "server",
        "binary-snapshots.bin",
        server::input(snapshots, Some(len), &body),
    )?;
    // The refusals of tests/serve.rs.
    let refusals: Vec<(&str, Value)> = vec![
        (
            "wrong-shape",
            json!({"inputs": [tensor(json!([1, 3, 8, 7]), &zeros[..168])]}),
        ),
        (
            "too-few-values",
            json!({"inputs": [tensor(json!([1, 3, 8, 8]), &zeros[..10])]}),
        ),
        (
            "dtype",
            json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "INT64", "data": zeros}]}),
        ),
        (
            "input-name",
            json!({"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros}]}),
        ),
        (
            "unknown-mode",
            json!({"inputs": [tensor(json!([1, 3, 8, 8]), &zeros)], "parameters": {"mode": "sideways"}}),
        ),
        (
            "t-out-of-range",
            json!({"inputs": [tensor(json!([1, 3, 8, 8]), &zeros)], "parameters": {"mode": "at", "t": [1.5]}}),
        ),
        (
            "unknown-output",
            json!({"inputs": [tensor(json!([1, 3, 8, 8]), &zeros)], "outputs": [{"name": "logits"}]}),
        ),
    ];
    for (name, body) in refusals {
        put(&format!("{name}.json"), curve, &serde_json::to_vec(&body)?)?;
    }
    put("malformed.json", curve, b"{\"inputs\": [")?;
    Ok(())
}

fn jobs(s: &Seeds) -> Result {
    const TRAIN: &str = r#""command":"train","arch":"mlp","data":"digits","out":"x""#;
    let texts = [
        format!(r#"{{{TRAIN},"epochs":3,"hidden":[8],"lr":1}}"#),
        format!(r#"{{{TRAIN},"epochs":"three"}}"#),
        format!(r#"{{{TRAIN},"epochs":3,"device":"tpu"}}"#),
        r#"{"command":"curve","start":"a","end":"b","bends":1,"data":"digits","epochs":1,"out":"c"}"#.into(),
        r#"{"command":"curve","start":"a","end":"b","basis":"polychain","data":"digits","epochs":1,"out":"c"}"#.into(),
        r#"{"command":"fge","init":"a","cycle":2,"lr1":0.05,"lr2":0.001,"data":"digits","epochs":2,"out":"f"}"#.into(),
        r#"{"command":"eval","bundle":"b","data":"digits"}"#.into(),
        r#"{"command":"eval","bundle":"b","data":"digits","points":"many"}"#.into(),
        r#"{"command": "train", "arch": "mlp", "data": "digits", "epochs": 3, "out": "a.safetensors"}"#.into(),
        r#"{"ok": true, "command": "fge", "members": 1, "cycle_iterations": 2, "member_test_accuracy": [1.0], "member_test_nll": [0.1], "ensemble_test_accuracy": 1.0, "ensemble_test_nll": 0.1, "out": "f", "device": "cpu", "epochs": 2, "seconds_per_epoch": 0.1}"#.into(),
        r#"{"ok": false, "error": "no-such-net"}"#.into(),
    ];
    for (i, text) in texts.iter().enumerate() {
        s.put("jobs", &format!("job-{i}.json"), text)?;
    }
    let events = [
        Event::Begin {
            phase: Phase::Curve,
            total: 3,
        },
        Event::Step {
            phase: Phase::Train,
            done: 1,
            total: 4,
            loss: Some(0.5),
            accuracy: Some(0.75),
            lr: Some(0.05),
        },
        Event::Epoch {
            epoch: 1,
            epochs: 3,
            scores: EpochScores {
                train_loss: 0.7,
                train_accuracy: 0.6,
                test_nll: Some(0.8),
                test_accuracy: None,
            },
            seconds: 1.25,
        },
        Event::Message {
            text: "hello".into(),
        },
    ];
    for (i, e) in events.iter().enumerate() {
        s.put("jobs", &format!("event-{i}.json"), serde_json::to_vec(e)?)?;
    }
    Ok(())
}

fn audit_lines(s: &Seeds) -> Result {
    let dir = std::env::temp_dir().join(format!("modeconn-seeds-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open(&path, &audit::KEY)?;
    let input = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0])?;
    let entries: [(&str, &str, &[Member]); 3] = [
        ("r1", "keyed", &[Member::T(0.25), Member::T(0.75)]),
        (
            "0190a4f2-7d3e-7c41-9a7e-2b1f6c3d8e90",
            "at",
            &[Member::Index(0), Member::Index(2)],
        ),
        ("", "ensemble", &[]),
    ];
    for (id, mode, members) in entries {
        log.record(&Entry {
            request_id: id,
            model: "m",
            digest: "sha256:00",
            mode,
            fingerprints: &log.fingerprints(&input),
            members,
        })?;
    }
    let text = fs::read_to_string(&path)?;
    fs::remove_dir_all(&dir)?;
    s.put("audit", "log.jsonl", &text)?;
    for (i, line) in text.lines().enumerate() {
        s.put("audit", &format!("line-{i}.jsonl"), line)?;
    }
    // Inputs of the round trip: a request id, then four bytes a point.
    let mut named = b"req-7\n".to_vec();
    for v in [0u32, 1, 0x8000_0000, 41, u32::MAX - 1] {
        named.extend_from_slice(&v.to_le_bytes());
    }
    s.put("audit", "seal-points.bin", named)?;
    Ok(())
}

/// The fixtures of `tests/python/` (bundles, member models, PyTorch exports, arrays).
fn from_fixtures(s: &Seeds, dir: &Path) -> Result {
    let copy = |target: &str, from: &str, to: &str| -> Result {
        let path = dir.join(from);
        match fs::read(&path) {
            Ok(bytes) => s.put(target, to, bytes),
            Err(e) => Err(format!("{}: {e}", path.display()).into()),
        }
    };
    for case in ["bezier3", "polychain4", "snapshots3", "temperature2"] {
        copy(
            "bundle",
            &format!("{case}/bundle.safetensors"),
            &format!("py-{case}.safetensors"),
        )?;
    }
    copy(
        "onnx",
        "snapshots3/member0.onnx",
        "py-snapshots3-member0.onnx",
    )?;
    copy("onnx", "torch/model.onnx", "py-torch-model.onnx")?;
    copy("onnx", "torch/legacy.onnx", "py-torch-legacy.onnx")?;
    copy("npy", "bezier3/x.npy", "py-x.npy")?;
    copy("npy", "bezier3/y.npy", "py-y.npy")?;
    copy("npy", "bezier3/ref.npy", "py-ref.npy")?;
    Ok(())
}
