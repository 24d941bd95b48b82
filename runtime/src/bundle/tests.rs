use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use super::*;
use crate::ErrorCode;
use crate::curve::Basis;
use crate::graph::build::{Attr, DimSpec, ModelBuilder};
use crate::graph::elem;

const K: usize = 3;
const G: usize = 4;

/// x[batch, 3] -> Gemm(fc) -> BatchNormalization(bn) -> logits[batch, 4]; `fc.weight` is only a
/// graph input, everything else an initializer.
fn graph() -> Vec<u8> {
    let mut b = ModelBuilder::new("tiny", 17);
    b.input("x", elem::FLOAT, &[DimSpec::from("batch"), 3.into()])
        .input("fc.weight", elem::FLOAT, &[4.into(), 3.into()])
        .initializer_f32("fc.bias", &[4], &[0.0; 4])
        .initializer_f32("bn.weight", &[4], &[1.0; 4])
        .initializer_f32("bn.bias", &[4], &[0.0; 4])
        .initializer_f32("bn.running_mean", &[4], &[0.0; 4])
        .initializer_f32("bn.running_var", &[4], &[1.0; 4])
        .node(
            "Gemm",
            &["x", "fc.weight", "fc.bias"],
            &["h"],
            &[Attr::int("transB", 1)],
        )
        .node(
            "BatchNormalization",
            &[
                "h",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
            ],
            &["logits"],
            &[],
        )
        .output("logits", elem::FLOAT, &["batch".into(), 4.into()]);
    b.build()
}

fn curve_meta() -> Metadata {
    Metadata {
        kind: Kind::Curve,
        basis: Some(Basis::Bezier),
        points: K,
        bn_grid: Some(vec![0.0, 0.25, 0.7, 1.0]),
        grid_tensors: vec!["bn.running_mean".into(), "bn.running_var".into()],
        input: InputSpec {
            name: "x".into(),
            shape: vec![-1, 3],
        },
        output: OutputSpec {
            name: "logits".into(),
            classes: 4,
        },
        temperature: 1.5,
        preprocess: None,
        labels: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        provenance: Some(serde_json::json!({"arch": "tiny"})),
        extra: [("vendor.note".to_string(), "kept".to_string())].into(),
    }
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| seed + i as f32 * 0.25).collect()
}

fn curve_writer(graph: &[u8]) -> BundleWriter<'_> {
    BundleWriter::new(curve_meta(), graph)
        .tensor("fc.weight", vec![K, 4, 3], values(K * 12, 1.0))
        .unwrap()
        .tensor("fc.bias", vec![K, 4], values(K * 4, -1.0))
        .unwrap()
        .tensor("bn.weight", vec![K, 4], values(K * 4, 0.5))
        .unwrap()
        .tensor("bn.running_mean", vec![G, 4], values(G * 4, 0.0))
        .unwrap()
        .tensor("bn.running_var", vec![G, 4], values(G * 4, 1.0))
        .unwrap()
}

/// A safetensors file written without any of the bundle writer's checks.
fn raw_file(meta: HashMap<String, String>, tensors: &[RawTensor]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}

fn f32_bytes(n: usize) -> Vec<u8> {
    values(n, 0.0)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A tensor as written by `raw_file`: name, dtype, shape, little-endian bytes.
type RawTensor = (&'static str, Dtype, Vec<usize>, Vec<u8>);

/// A valid curve bundle's pieces, to be broken one at a time.
fn pieces(graph: &[u8]) -> (HashMap<String, String>, Vec<RawTensor>) {
    let meta = curve_meta().to_map();
    let tensors = vec![
        (
            "modeconn.graph",
            Dtype::U8,
            vec![graph.len()],
            graph.to_vec(),
        ),
        ("fc.weight", Dtype::F32, vec![K, 4, 3], f32_bytes(K * 12)),
        ("bn.running_mean", Dtype::F32, vec![G, 4], f32_bytes(G * 4)),
        ("bn.running_var", Dtype::F32, vec![G, 4], f32_bytes(G * 4)),
    ];
    (meta, tensors)
}

fn open_err(bytes: Vec<u8>) -> Error {
    Bundle::from_bytes(bytes).unwrap_err()
}

#[test]
fn round_trip_through_a_file() {
    let g = graph();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve.safetensors");
    curve_writer(&g).write(&path).unwrap();
    let b = Bundle::open(&path).unwrap();
    assert_eq!(b.metadata(), &curve_meta());
    assert_eq!(b.path(), Some(path.as_path()));
    assert_eq!(
        b.file_size() as u64,
        std::fs::metadata(&path).unwrap().len()
    );
    assert_eq!(b.tensors().len(), 5);
    let w = b.tensor("fc.weight").unwrap();
    assert_eq!(w.role, Role::Points);
    assert_eq!(w.slice_shape(), &[4, 3]);
    assert_eq!(b.data(w).as_ref(), values(K * 12, 1.0).as_slice());
    assert_eq!(
        b.slice(w, 2).unwrap().as_ref(),
        &values(K * 12, 1.0)[24..36]
    );
    assert!(
        matches!(b.data(w), Cow::Borrowed(_)),
        "aligned data is not copied"
    );
    assert!(b.slice(w, 3).is_err());
    assert_eq!(b.tensor("bn.running_var").unwrap().role, Role::Grid);
    // 12 + 4 + 4 varying + bn.bias (4) and the statistics as fixed initializers? No: the
    // statistics vary on the grid, so only bn.bias is fixed.
    assert_eq!(b.parameter_count(), 12 + 4 + 4 + 4 + 4 + 4);
    assert_eq!(b.graph().bytes(), g.as_slice());
}

#[test]
fn in_memory_bytes_equal_the_file() {
    let g = graph();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.safetensors");
    let w = curve_writer(&g);
    w.write(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes().unwrap());
}

#[test]
fn a_snapshot_set_round_trips() {
    let g = graph();
    let mut meta = curve_meta();
    meta.kind = Kind::Snapshots;
    meta.basis = None;
    meta.points = 2;
    meta.bn_grid = None;
    meta.grid_tensors.clear();
    let bytes = BundleWriter::new(meta.clone(), g.as_slice())
        .tensor("fc.weight", vec![2, 4, 3], values(24, 0.0))
        .unwrap()
        .tensor("bn.running_var", vec![2, 4], values(8, 1.0))
        .unwrap()
        .to_bytes()
        .unwrap();
    let b = Bundle::from_bytes(bytes).unwrap();
    assert_eq!(b.metadata(), &meta);
    assert!(b.tensors().iter().all(|t| t.role == Role::Points));
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let g = graph();
    let err = BundleWriter::new(curve_meta(), g.as_slice())
        .tensor("fc.weight", vec![2, 4, 3], values(24, 0.0))
        .unwrap()
        .to_bytes()
        .unwrap_err();
    assert!(
        matches!(err, Error::LeadingAxis { ref tensor, expected: 3, found: 2, .. } if tensor == "fc.weight"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.safetensors");
    assert!(
        BundleWriter::new(curve_meta(), g.as_slice())
            .tensor("fc.weight", vec![2, 4, 3], values(24, 0.0))
            .unwrap()
            .write(&path)
            .is_err()
    );
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file left"
    );
    assert!(
        BundleWriter::new(curve_meta(), g.as_slice())
            .tensor("a", vec![2], vec![1.0])
            .is_err()
    );
}

#[test]
fn the_writer_refuses_metadata_the_loader_refuses() {
    let g = graph();
    /// A change to valid metadata that makes it invalid.
    type Edit = fn(&mut Metadata);
    let cases: Vec<(&str, Edit)> = vec![
        ("two labels", |m| {
            m.labels = Some(vec!["a".into(), "b".into()])
        }),
        ("temperature 0", |m| m.temperature = 0.0),
        ("temperature -1", |m| m.temperature = -1.0),
        ("temperature NaN", |m| m.temperature = f64::NAN),
        ("temperature inf", |m| m.temperature = f64::INFINITY),
        ("temperature 1e-40", |m| m.temperature = 1e-40),
        ("input without -1", |m| m.input.shape = vec![2, 3]),
        ("bn grid from 0.1", |m| {
            m.bn_grid = Some(vec![0.1, 0.25, 0.7, 1.0])
        }),
        ("zero classes", |m| m.output.classes = 0),
    ];
    for (what, edit) in cases {
        let mut meta = curve_meta();
        edit(&mut meta);
        let mut writer = BundleWriter::new(meta.clone(), g.as_slice());
        for (name, shape) in [
            ("fc.weight", vec![K, 4, 3]),
            ("bn.running_mean", vec![G, 4]),
            ("bn.running_var", vec![G, 4]),
        ] {
            let n = shape.iter().product();
            writer = writer.tensor(name, shape, values(n, 1.0)).unwrap();
        }
        let written = writer.to_bytes().expect_err(what);
        // The loader says the same of the same metadata, in the same words.
        let (_, tensors) = pieces(&g);
        let loaded = open_err(raw_file(meta.to_map(), &tensors));
        assert_eq!(written.to_string(), loaded.to_string(), "{what}");
        assert_eq!(written.code(), loaded.code(), "{what}");
    }
}

#[test]
fn a_graph_whose_batch_is_fixed_is_refused_by_writer_and_loader() {
    for (input, output) in [(2, "batch"), (0, "")] {
        let mut b = ModelBuilder::new("fixed", 17);
        let x: DimSpec = if input > 0 {
            input.into()
        } else {
            "batch".into()
        };
        let y: DimSpec = if output.is_empty() {
            2.into()
        } else {
            output.into()
        };
        b.input("x", elem::FLOAT, &[x, 3.into()])
            .input("fc.weight", elem::FLOAT, &[4.into(), 3.into()])
            .node(
                "Gemm",
                &["x", "fc.weight"],
                &["logits"],
                &[Attr::int("transB", 1)],
            )
            .output("logits", elem::FLOAT, &[y, 4.into()]);
        let g = b.build();
        let mut meta = curve_meta();
        meta.bn_grid = None;
        meta.grid_tensors.clear();
        let err = BundleWriter::new(meta.clone(), g.as_slice())
            .tensor("fc.weight", vec![K, 4, 3], values(K * 12, 1.0))
            .unwrap()
            .to_bytes()
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Onnx { .. }), "{text}");
        assert!(
            text.contains("fixed batch size of 2") && text.contains("dynamic_shapes"),
            "{text}"
        );
        let tensors: Vec<RawTensor> = vec![
            ("modeconn.graph", Dtype::U8, vec![g.len()], g.clone()),
            ("fc.weight", Dtype::F32, vec![K, 4, 3], f32_bytes(K * 12)),
        ];
        assert_eq!(
            open_err(raw_file(meta.to_map(), &tensors)).to_string(),
            text
        );
    }
}

#[test]
fn paths_that_are_no_bundle_files_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Bundle::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                what: "a folder",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("{} is a folder, not a bundle file", dir.path().display())
    );
    assert_eq!(err.code(), ErrorCode::Io);

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "a few words of text, not a bundle\n").unwrap();
    let err = Bundle::open(&text).unwrap_err();
    let declared = u64::from_le_bytes(*b"a few wo");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a bundle: its first 8 bytes give a header of {declared} bytes, more than \
             the file's 34",
            text.display()
        )
    );
    assert_eq!(err.code(), ErrorCode::Header);
    let err = open_err(std::fs::read(&text).unwrap());
    assert!(matches!(err, Error::Header { .. }), "{err}");

    #[cfg(unix)]
    {
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opening it would wait for a writer: it is refused before.
            let err = Bundle::open(&fifo).unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("is a named pipe, not a bundle file"),
                "{err}"
            );
        }
    }

    let missing = dir.path().join("absent.safetensors");
    let err = Bundle::open(&missing).unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).map(|s| s.to_string()),
        None,
        "the OS error is in the message, not chained again: {err}"
    );
    assert_eq!(err.to_string().matches("os error").count(), 1, "{err}");
}

#[test]
fn truncated_files_are_named_as_such() {
    let g = graph();
    let bytes = curve_writer(&g).to_bytes().unwrap();
    for cut in [0, 4, 20, bytes.len() / 2, bytes.len() - 1] {
        let err = open_err(bytes[..cut].to_vec());
        assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
    }
}

#[test]
fn a_bad_header_is_reported() {
    let mut bytes = 16u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{not json at all");
    assert!(matches!(open_err(bytes), Error::Header { .. }));
    let mut bytes = 2u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    // A valid header without metadata: the first missing key is reported.
    assert!(matches!(open_err(bytes), Error::Metadata { ref key, .. } if key == keys::FORMAT));
}

#[test]
fn a_wrong_leading_axis_names_the_tensor() {
    let g = graph();
    let (meta, mut t) = pieces(&g);
    t[2] = ("bn.running_mean", Dtype::F32, vec![K, 4], f32_bytes(K * 4));
    let err = open_err(raw_file(meta, &t));
    assert!(
        matches!(err, Error::LeadingAxis { ref tensor, expected: G, found: K, what: "bn_grid points" } if tensor == "bn.running_mean"),
        "{err}"
    );
}

#[test]
fn a_tensor_without_a_graph_input_is_named() {
    let g = graph();
    let (meta, mut t) = pieces(&g);
    t.push(("ghost.weight", Dtype::F32, vec![K, 2], f32_bytes(K * 2)));
    let err = open_err(raw_file(meta, &t));
    assert!(
        matches!(err, Error::MissingGraphInput { ref tensor } if tensor == "ghost.weight"),
        "{err}"
    );
}

#[test]
fn a_shape_mismatch_names_the_tensor() {
    let g = graph();
    let (meta, mut t) = pieces(&g);
    t[1] = ("fc.weight", Dtype::F32, vec![K, 3, 4], f32_bytes(K * 12));
    let err = open_err(raw_file(meta.clone(), &t));
    assert!(
        matches!(err, Error::ShapeMismatch { ref tensor, .. } if tensor == "fc.weight"),
        "{err}"
    );
    // Against an initializer too.
    let (_, mut t) = pieces(&g);
    t.push(("fc.bias", Dtype::F32, vec![K, 5], f32_bytes(K * 5)));
    let err = open_err(raw_file(meta, &t));
    assert!(
        matches!(err, Error::ShapeMismatch { ref tensor, .. } if tensor == "fc.bias"),
        "{err}"
    );
}

#[test]
fn unknown_kind_and_basis_are_reported() {
    let g = graph();
    let (mut meta, t) = pieces(&g);
    meta.insert(keys::KIND.into(), "ensemble".into());
    assert!(matches!(open_err(raw_file(meta, &t)), Error::UnknownKind(k) if k == "ensemble"));
    let (mut meta, t) = pieces(&g);
    meta.insert(keys::BASIS.into(), "spline".into());
    assert!(matches!(open_err(raw_file(meta, &t)), Error::UnknownBasis(b) if b == "spline"));
    let (mut meta, t) = pieces(&g);
    meta.insert(keys::FORMAT.into(), "2".into());
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::Metadata { key, .. } if key == keys::FORMAT)
    );
}

#[test]
fn nan_in_the_bn_grid_is_reported() {
    let g = graph();
    for text in [
        "[0, NaN, 0.7, 1]",
        "[0, 0.25, null, 1]",
        "[0, Infinity, 0.7, 1]",
    ] {
        let (mut meta, t) = pieces(&g);
        meta.insert(keys::BN_GRID.into(), text.into());
        let err = open_err(raw_file(meta, &t));
        assert!(
            matches!(err, Error::NotFinite { ref what, .. } if what == keys::BN_GRID),
            "{text}: {err}"
        );
    }
    for text in ["[0, 0.7, 0.25, 1]", "[0.1, 0.5, 0.7, 1]", "[0, 1]x", "[0]"] {
        let (mut meta, t) = pieces(&g);
        meta.insert(keys::BN_GRID.into(), text.into());
        let err = open_err(raw_file(meta, &t));
        assert!(
            matches!(err, Error::Metadata { ref key, .. } if key == keys::BN_GRID),
            "{text}: {err}"
        );
    }
}

#[test]
fn metadata_that_disagrees_with_the_graph_is_reported() {
    let g = graph();
    let (mut meta, t) = pieces(&g);
    meta.insert(
        keys::INPUT.into(),
        r#"{"name": "image", "shape": [-1, 3]}"#.into(),
    );
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::Metadata { key, .. } if key == keys::INPUT)
    );
    let (mut meta, t) = pieces(&g);
    meta.insert(
        keys::INPUT.into(),
        r#"{"name": "x", "shape": [-1, 5]}"#.into(),
    );
    let err = open_err(raw_file(meta, &t));
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let (mut meta, t) = pieces(&g);
    meta.insert(
        keys::OUTPUT.into(),
        r#"{"name": "logits", "classes": 10}"#.into(),
    );
    meta.remove(keys::LABELS);
    let err = open_err(raw_file(meta, &t));
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let (mut meta, t) = pieces(&g);
    meta.insert(
        keys::OUTPUT.into(),
        r#"{"name": "probs", "classes": 4}"#.into(),
    );
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::Metadata { key, .. } if key == keys::OUTPUT)
    );
    let (mut meta, t) = pieces(&g);
    meta.insert(keys::POINTS.into(), "three".into());
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::Metadata { key, .. } if key == keys::POINTS)
    );
    let (mut meta, t) = pieces(&g);
    meta.insert(keys::TEMPERATURE.into(), "-1".into());
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::Metadata { key, .. } if key == keys::TEMPERATURE)
    );
}

#[test]
fn other_broken_tensors_are_reported() {
    let g = graph();
    // A grid tensor that is listed but absent.
    let (meta, mut t) = pieces(&g);
    t.remove(3);
    let err = open_err(raw_file(meta, &t));
    assert!(
        matches!(err, Error::MissingTensor { ref tensor, .. } if tensor == "bn.running_var"),
        "{err}"
    );
    // A tensor stored as F64.
    let (meta, mut t) = pieces(&g);
    t.push(("fc.bias", Dtype::F64, vec![K, 4], vec![0u8; K * 4 * 8]));
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::DType { tensor, .. } if tensor == "fc.bias")
    );
    // No graph at all, and a graph that is not ONNX.
    let (meta, mut t) = pieces(&g);
    t.remove(0);
    assert!(
        matches!(open_err(raw_file(meta, &t)), Error::MissingTensor { tensor, .. } if tensor == keys::GRAPH_TENSOR)
    );
    let (meta, mut t) = pieces(&g);
    t[0] = ("modeconn.graph", Dtype::U8, vec![5], vec![0xff; 5]);
    assert!(matches!(open_err(raw_file(meta, &t)), Error::Onnx { .. }));
    // fc.weight is a graph input: without its tensor nothing would feed it.
    let (meta, mut t) = pieces(&g);
    t.remove(1);
    assert!(
        matches!(open_err(raw_file(meta, &t)), ref e @ Error::Onnx { .. } if e.to_string().contains("fc.weight"))
    );
}

#[test]
fn the_gram_matrix_covers_point_tensors_only() {
    let g = graph();
    let b = Bundle::from_bytes(curve_writer(&g).to_bytes().unwrap()).unwrap();
    let gram = b.gram().unwrap();
    // ||P_2 - P_0||² over fc.weight (12), fc.bias (4), bn.weight (4): each element of slice 2
    // exceeds slice 0 by (2 * n) * 0.25 where n is the slice length.
    let expected: f64 = [12.0f64, 4.0, 4.0]
        .iter()
        .map(|n| n * (0.5 * n).powi(2))
        .sum();
    assert!((gram.endpoint_distance().powi(2) - expected).abs() < 1e-6);
}

#[test]
fn the_guard_notices_a_replaced_file() {
    let g = graph();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve.safetensors");
    curve_writer(&g).write(&path).unwrap();
    let b = Bundle::open(&path).unwrap();
    let guard = &b.file().expect("a bundle from a file has a file").guard;
    guard.check().unwrap();
    // Writers replace bundles by renaming a new file over the old one.
    curve_writer(&g).write(&path).unwrap();
    let err = guard.check().unwrap_err();
    assert!(err.to_string().contains("replaced"), "{err}");
    // The open bundle still reads its own (mapped) data.
    assert_eq!(b.data(b.tensor("fc.bias").unwrap()).len(), K * 4);
    assert!(
        Bundle::from_bytes(std::fs::read(&path).unwrap())
            .unwrap()
            .file()
            .is_none()
    );
}

#[test]
fn a_graph_whose_data_lies_in_another_file_is_refused() {
    // ONNX Runtime read `sibling.bin` from the bundle's folder: a bundle must carry its data.
    use crate::graph::{Mix, MixVia, OnnxModel, StackSource};
    let external = OnnxModel::parse(&graph())
        .unwrap()
        .rewrite_dynamic(&[Mix {
            name: "fc.bias".into(),
            shape: vec![4],
            stack: "fc.bias.stack".into(),
            via: MixVia::Gather {
                index: "modeconn.member".into(),
                members: 1,
            },
            source: StackSource::File {
                location: "sibling.bin".into(),
                offset: 0,
            },
        }])
        .unwrap();
    let (meta, mut t) = pieces(&external);
    t[0].2 = vec![external.len()];
    let err = open_err(raw_file(meta, &t));
    let text = err.to_string();
    assert!(matches!(err, Error::Onnx { .. }), "{text}");
    assert!(
        text.contains("fc.bias.stack")
            && text.contains("`sibling.bin`")
            && text.contains("external"),
        "{text}"
    );
    // And nothing of the kind is written either.
    let err = BundleWriter::new(curve_meta(), &external)
        .tensor("fc.weight", vec![K, 4, 3], values(K * 12, 1.0))
        .unwrap()
        .to_bytes()
        .unwrap_err();
    assert!(err.to_string().contains("sibling.bin"), "{err}");
}

#[test]
fn point_counts_are_bounded_before_anything_is_sized_by_them() {
    let mut map = curve_meta().to_map();
    for (kind, basis, top) in [
        ("curve", Some("bezier"), MAX_CURVE_POINTS),
        ("snapshots", None, MAX_SNAPSHOTS),
    ] {
        map.insert(keys::KIND.into(), kind.into());
        match basis {
            Some(b) => map.insert(keys::BASIS.into(), b.into()),
            None => {
                for key in [keys::BASIS, keys::BN_GRID, keys::GRID_TENSORS] {
                    map.remove(key);
                }
                None
            }
        };
        map.insert(keys::POINTS.into(), top.to_string());
        let at_top = Metadata::from_map(&map).map(|m| m.points);
        assert_eq!(at_top.as_ref().ok(), Some(&top), "{at_top:?}");
        for points in [top + 1, 1 << 40] {
            map.insert(keys::POINTS.into(), points.to_string());
            let e = Metadata::from_map(&map).expect_err("past the bound");
            let text = e.to_string();
            assert!(
                matches!(&e, Error::Metadata { key, .. } if key == keys::POINTS),
                "{text}"
            );
            assert!(text.contains(&top.to_string()), "{text}");
        }
    }
}
