//! Small models and bundles written in code: the models the server target serves, and seeds
//! of the corpora (`examples/seeds.rs`). Their shapes are those of the tests' CNN fixtures
//! (`tests/python/cnn_case.py`: input `input`, `[batch, 3, 8, 8]`, 5 classes), so the requests
//! of `tests/serve.rs` fit them as they are.

use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::build::ModelBuilder;
use modeconn_runtime::graph::elem;
use modeconn_runtime::{BundleWriter, Result};

/// Input features of the CNN-shaped models (3 × 8 × 8).
pub const FEATURES: usize = 192;
/// Classes of the CNN-shaped models.
pub const CLASSES: usize = 5;

/// Deterministic small values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn metadata(kind: Kind, points: usize, input: (&str, Vec<i64>), classes: usize) -> Metadata {
    Metadata {
        kind,
        basis: (kind == Kind::Curve).then_some(Basis::Bezier),
        points,
        bn_grid: None,
        grid_tensors: vec![],
        input: InputSpec {
            name: input.0.into(),
            shape: input.1,
        },
        output: OutputSpec {
            name: "logits".into(),
            classes,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: None,
        extra: Default::default(),
    }
}

/// `Flatten(input) · w + b`: input `[batch, 3, 8, 8]`, `w` `[192, 5]` (varying: an
/// initializer, or a graph input only when `w_as_input`), `b` `[5]` fixed.
pub fn cnn_shaped_graph(w_as_input: bool) -> Vec<u8> {
    let mut g = ModelBuilder::new("fuzz", 17);
    g.input(
        "input",
        elem::FLOAT,
        &["batch".into(), 3.into(), 8.into(), 8.into()],
    );
    if w_as_input {
        g.input(
            "w",
            elem::FLOAT,
            &[(FEATURES as i64).into(), (CLASSES as i64).into()],
        );
    } else {
        g.initializer_f32(
            "w",
            &[FEATURES as i64, CLASSES as i64],
            &values(FEATURES * CLASSES, 1),
        );
    }
    g.initializer_f32("b", &[CLASSES as i64], &values(CLASSES, 2))
        .node(
            "Flatten",
            &["input"],
            &["f"],
            &[modeconn_runtime::graph::build::Attr::int("axis", 1)],
        )
        .node("MatMul", &["f", "w"], &["z"], &[])
        .node("Add", &["z", "b"], &["logits"], &[])
        .output(
            "logits",
            elem::FLOAT,
            &["batch".into(), (CLASSES as i64).into()],
        );
    g.build()
}

/// A bundle of the CNN-shaped model: a Bezier curve of `points` control points, or a snapshot
/// set of `points` members.
pub fn cnn_shaped_bundle(kind: Kind, points: usize, w_as_input: bool) -> Result<Vec<u8>> {
    let meta = metadata(kind, points, ("input", vec![-1, 3, 8, 8]), CLASSES);
    let n = points * FEATURES * CLASSES;
    BundleWriter::new(meta, cnn_shaped_graph(w_as_input))
        .tensor("w", vec![points, FEATURES, CLASSES], values(n, 3))?
        .to_bytes()
}

/// The linear classifier of the runtime crate's documentation: `x[batch, 2] · w[2, 3]`, `w`
/// a graph input following a curve of `points` control points in `basis`.
pub fn linear_curve(basis: Basis, points: usize) -> Result<Vec<u8>> {
    let mut g = ModelBuilder::new("linear", 17);
    g.input("x", elem::FLOAT, &["batch".into(), 2.into()])
        .input("w", elem::FLOAT, &[2.into(), 3.into()])
        .node("MatMul", &["x", "w"], &["logits"], &[])
        .output("logits", elem::FLOAT, &["batch".into(), 3.into()]);
    let mut meta = metadata(Kind::Curve, points, ("x", vec![-1, 2]), 3);
    meta.basis = Some(basis);
    BundleWriter::new(meta, g.build())
        .tensor("w", vec![points, 2, 3], values(points * 6, 4))?
        .to_bytes()
}

/// A curve with batch normalisation: `BatchNormalization(x[batch, 2]) · w[2, 3]`, whose
/// running mean and variance live on a `bn_grid` of `grid` points (grid tensors) while `w`
/// follows a polygonal chain of 3 points; the BN scale and bias are fixed initializers.
pub fn batch_norm_curve(grid: usize) -> Result<Vec<u8>> {
    let mut g = ModelBuilder::new("bn", 17);
    g.input("x", elem::FLOAT, &["batch".into(), 2.into()])
        .initializer_f32("scale", &[2], &[1.0, 0.5])
        .initializer_f32("bias", &[2], &[0.0, 0.25])
        .initializer_f32("mean", &[2], &[0.0, 0.0])
        .initializer_f32("var", &[2], &[1.0, 1.0])
        .initializer_f32("w", &[2, 3], &values(6, 5))
        .node(
            "BatchNormalization",
            &["x", "scale", "bias", "mean", "var"],
            &["n"],
            &[modeconn_runtime::graph::build::Attr::float("epsilon", 1e-5)],
        )
        .node("MatMul", &["n", "w"], &["logits"], &[])
        .output("logits", elem::FLOAT, &["batch".into(), 3.into()]);
    let mut meta = metadata(Kind::Curve, 3, ("x", vec![-1, 2]), 3);
    meta.basis = Some(Basis::Polychain);
    meta.bn_grid = Some((0..grid).map(|i| i as f64 / (grid - 1) as f64).collect());
    meta.grid_tensors = vec!["mean".into(), "var".into()];
    meta.temperature = 2.0;
    meta.labels = Some(vec!["a".into(), "b".into(), "c".into()]);
    let var: Vec<f32> = values(grid * 2, 6).iter().map(|v| v.abs() + 0.5).collect();
    BundleWriter::new(meta, g.build())
        .tensor("w", vec![3, 2, 3], values(18, 7))?
        .tensor("mean", vec![grid, 2], values(grid * 2, 8))?
        .tensor("var", vec![grid, 2], var)?
        .to_bytes()
}

/// A curve of `points` control points with no varying tensor: the linear classifier with `w`
/// a fixed initializer. Valid, if of little use: every point is the same network. With
/// `symbolic_classes` the graph declares its output `[batch, classes]` without a size.
pub fn fixed_curve(points: usize, symbolic_classes: bool) -> Result<Vec<u8>> {
    let classes = if symbolic_classes {
        "classes".into()
    } else {
        3.into()
    };
    let mut g = ModelBuilder::new("fixed", 17);
    g.input("x", elem::FLOAT, &["batch".into(), 2.into()])
        .initializer_f32("w", &[2, 3], &values(6, 9))
        .node("MatMul", &["x", "w"], &["logits"], &[])
        .output("logits", elem::FLOAT, &["batch".into(), classes]);
    BundleWriter::new(
        metadata(Kind::Curve, points, ("x", vec![-1, 2]), 3),
        g.build(),
    )
    .to_bytes()
}

/// `bundle` with its safetensors header rewritten by `edits` (each replaces the first
/// occurrence of a text in the header's JSON) and padded again to a multiple of 8 bytes.
///
/// The seeds use it to give numbers room: `"modeconn.points":"2        "` parses as 2 (the
/// value is trimmed) and lets the fuzzer write longer numbers over the spaces without
/// changing the header's length, which mutations cannot keep consistent.
pub fn edit_header(bundle: &[u8], edits: &[(&str, &str)]) -> Option<Vec<u8>> {
    let len = usize::try_from(u64::from_le_bytes(bundle.get(..8)?.try_into().ok()?)).ok()?;
    let mut json = std::str::from_utf8(bundle.get(8..8 + len)?)
        .ok()?
        .trim_end()
        .to_string();
    for (from, to) in edits {
        let at = json.find(from)?;
        json.replace_range(at..at + from.len(), to);
    }
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(&bundle[8 + len..]);
    Some(out)
}
