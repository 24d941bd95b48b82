//! Tests of the wire layer, decoding, the rewrites and the builder; one test checks the
//! rewrites (lifting included) with the real ONNX checker and ONNX Runtime through Python.

use std::collections::HashSet;

use super::build::{Attr, DimSpec, ModelBuilder};
use super::model::layout;
use super::wire::{
    Field, Value, VarintError, WireType, parse_message, put_bytes_field, put_float_field,
    put_int64_field, put_message_field, put_tag, put_varint, put_varint_field, read_varint,
    varint_len,
};
use super::{Dim, Mix, MixVia, NamedTensor, OnnxModel, STACK_LOCATION, StackSource, elem, encode};
use crate::Error;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A float in [-1, 1).
    fn float(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.float()).collect()
    }
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).floats(n)
}

fn fixed(dims: &[i64]) -> Vec<DimSpec> {
    dims.iter().map(|&d| DimSpec::Fixed(d)).collect()
}

const CONV_W: [i64; 4] = [2, 3, 3, 3];

/// Conv + BatchNormalization + Relu + GlobalAveragePool + Flatten + Gemm + Mul(scalar), with
/// `conv.weight` both an initializer and a graph input, and `bn.running_var` a graph input only.
fn small_builder() -> ModelBuilder {
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
    b
}

fn small_model() -> Vec<u8> {
    small_builder().build()
}

fn parse(bytes: &[u8]) -> OnnxModel {
    OnnxModel::parse(bytes).expect("model parses")
}

fn fields(bytes: &[u8]) -> Vec<Field<'_>> {
    parse_message(bytes, 0, "test").expect("message parses")
}

fn graph_fields(bytes: &[u8]) -> Vec<Field<'_>> {
    layout(bytes).expect("layout").graph
}

fn sub(field: &Field<'_>) -> Vec<(u32, Vec<u8>)> {
    let Value::Len(b) = field.value else {
        panic!("field {} is not length-delimited", field.number)
    };
    fields(b)
        .iter()
        .map(|f| (f.number, f.raw.to_vec()))
        .collect()
}

/// The string fields `number` of a length-delimited field's message.
fn strings(field: &Field<'_>, number: u32) -> Vec<String> {
    let Value::Len(b) = field.value else {
        panic!("field {} is not length-delimited", field.number)
    };
    fields(b)
        .iter()
        .filter(|f| f.number == number)
        .map(|f| f.string("test").expect("utf-8").to_string())
        .collect()
}

fn before_graph_first(model: &[u8]) -> &[u8] {
    graph_fields(model)[0].raw
}

fn one_string(field: &Field<'_>, number: u32) -> String {
    strings(field, number).pop().unwrap_or_default()
}

/// Name of a node (3), tensor (8) or value info (1) held by a graph field.
fn graph_item_name(field: &Field<'_>) -> String {
    match field.number {
        1 => one_string(field, 3),
        5 => one_string(field, 8),
        11..=13 => one_string(field, 1),
        _ => String::new(),
    }
}

/// Inserts `graph_extra` after the graph's first field, and puts `front` and `back` around the
/// model's other fields.
fn inject(model: &[u8], front: &[u8], back: &[u8], graph_extra: &[u8]) -> Vec<u8> {
    let l = layout(model).expect("layout");
    let mut graph = Vec::new();
    for (i, f) in l.graph.iter().enumerate() {
        graph.extend_from_slice(f.raw);
        if i == 0 {
            graph.extend_from_slice(graph_extra);
        }
    }
    let mut out = front.to_vec();
    for (i, f) in l.model.iter().enumerate() {
        if i == l.graph_index {
            put_bytes_field(&mut out, 7, &graph);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    out.extend_from_slice(back);
    out
}

/// A model with hand-made extras the rewrites must keep: unknown fields (one with a
/// non-canonical tag, one group), a function, graph doc string, graph metadata, fixed-width
/// unknown fields, and a node with a subgraph attribute.
fn decorated_model() -> Vec<u8> {
    let mut front = Vec::new();
    put_bytes_field(&mut front, 1000, b"opaque bytes");
    let mut back = Vec::new();
    put_message_field(&mut back, 25, |m| {
        put_bytes_field(m, 1, b"my_function");
        put_bytes_field(m, 10, b"custom.domain");
        put_bytes_field(m, 4, b"x");
    });
    // Field 999, varint 5, with a padded (non-canonical) tag and value.
    back.extend_from_slice(&[0xb8, 0xbe, 0x00, 0x85, 0x00]);
    // Field 1001 as a group holding field 1 = 7.
    put_tag(&mut back, 1001, WireType::StartGroup);
    put_varint_field(&mut back, 1, 7);
    put_tag(&mut back, 1001, WireType::EndGroup);

    let mut graph = Vec::new();
    put_varint_field(&mut graph, 777, 42);
    put_bytes_field(&mut graph, 10, b"graph documentation");
    put_tag(&mut graph, 778, WireType::Fixed64);
    graph.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    put_tag(&mut graph, 779, WireType::Fixed32);
    graph.extend_from_slice(&0x0a0b_0c0du32.to_le_bytes());
    put_message_field(&mut graph, 16, |m| {
        encode::string_entry(m, "graph.key", "graph.value")
    });
    // A node with a GRAPH attribute (type 5, g = 6) whose subgraph has a node of its own.
    put_message_field(&mut graph, 1, |n| {
        put_bytes_field(n, 1, b"cond");
        put_bytes_field(n, 2, b"if_out");
        put_bytes_field(n, 3, b"an_if");
        put_bytes_field(n, 4, b"If");
        put_message_field(n, 5, |a| {
            put_bytes_field(a, 1, b"then_branch");
            put_message_field(a, 6, |g| {
                put_message_field(g, 1, |sn| {
                    encode::node(sn, "inner", "Identity", "", &["scale"], &["inner_out"], &[]);
                });
                put_bytes_field(g, 2, b"sub");
            });
            put_int64_field(a, 20, 5);
        });
    });
    inject(&small_model(), &front, &back, &graph)
}

/// The standard mixes of the small model: two MatMul mixes sharing `coef` (one a scalar), two
/// Gather mixes sharing `member`.
fn mixes(points: usize, members: usize) -> Vec<Mix> {
    let matmul = |name: &str, shape: &[usize]| Mix {
        name: name.to_string(),
        shape: shape.to_vec(),
        stack: format!("{name}.stack"),
        via: MixVia::MatMul {
            coef: "coef".to_string(),
            points,
        },
        source: StackSource::Supplied,
    };
    let gather = |name: &str| Mix {
        name: name.to_string(),
        shape: vec![2],
        stack: format!("{name}.stack"),
        via: MixVia::Gather {
            index: "member".to_string(),
            members,
        },
        source: StackSource::Supplied,
    };
    vec![
        matmul("conv.weight", &[2, 3, 3, 3]),
        matmul("scale", &[]),
        gather("bn.running_mean"),
        gather("bn.running_var"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Wire format

#[test]
fn varints_decode_including_edge_cases() {
    let cases: &[(&[u8], u64, usize)] = &[
        (&[0x00], 0, 1),
        (&[0x01], 1, 1),
        (&[0x7f], 127, 1),
        (&[0x80, 0x01], 128, 2),
        (&[0xac, 0x02], 300, 2),
        (&[0x80, 0x00], 0, 2), // non-canonical, accepted
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            u64::MAX,
            10,
        ),
        (&[0x05, 0xff], 5, 1), // stops at the first byte without continuation
    ];
    for &(bytes, value, len) in cases {
        let mut pos = 0;
        assert_eq!(read_varint(bytes, &mut pos), Ok(value), "{bytes:x?}");
        assert_eq!(pos, len, "{bytes:x?}");
    }
    let bad: &[(&[u8], VarintError)] = &[
        (&[], VarintError::Truncated),
        (&[0x80], VarintError::Truncated),
        (&[0xff, 0xff, 0xff], VarintError::Truncated),
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            VarintError::Overflow,
        ),
        (&[0xff; 11], VarintError::Overflow),
    ];
    for &(bytes, err) in bad {
        let mut pos = 0;
        assert_eq!(read_varint(bytes, &mut pos), Err(err), "{bytes:x?}");
        assert_eq!(pos, 0, "position must not move on error");
    }
}

#[test]
fn varints_round_trip_with_exact_lengths() {
    let mut probes = vec![
        0u64,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
    ];
    probes.extend((0..64).map(|s| 1u64 << s));
    probes.extend((1..64).map(|s| (1u64 << s) - 1));
    for v in probes {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "{v}");
        let mut pos = 0;
        assert_eq!(read_varint(&out, &mut pos), Ok(v));
        assert_eq!(pos, out.len());
    }
    // Negative int64 values take ten bytes, and read back.
    let mut out = Vec::new();
    put_int64_field(&mut out, 1, -1);
    assert_eq!(out.len(), 11);
    assert_eq!(fields(&out)[0].int64("t").expect("int64"), -1);
}

#[test]
fn messages_keep_every_field_verbatim() {
    let mut buf = Vec::new();
    put_varint_field(&mut buf, 1, 150);
    put_bytes_field(&mut buf, 2, b"hi");
    put_tag(&mut buf, 3, WireType::Fixed64);
    buf.extend_from_slice(&7u64.to_le_bytes());
    put_float_field(&mut buf, 4, 2.5);
    put_tag(&mut buf, 5, WireType::StartGroup);
    put_tag(&mut buf, 6, WireType::StartGroup);
    put_varint_field(&mut buf, 1, 1);
    put_tag(&mut buf, 6, WireType::EndGroup);
    put_bytes_field(&mut buf, 2, b"in group");
    put_tag(&mut buf, 5, WireType::EndGroup);
    buf.extend_from_slice(&[0x88, 0x80, 0x00, 0x81, 0x00]); // field 1 = 1, padded tag and value
    let f = fields(&buf);
    assert_eq!(f.len(), 6);
    assert_eq!(f[0].value, Value::Varint(150));
    assert_eq!(f[1].value, Value::Len(b"hi"));
    assert_eq!(f[2].value, Value::Fixed64(7));
    assert_eq!(f[3].value, Value::Fixed32(2.5f32.to_bits()));
    assert!(matches!(f[4].value, Value::Group(_)));
    assert_eq!((f[5].number, f[5].value), (1, Value::Varint(1)));
    assert_eq!(f[5].raw, &[0x88, 0x80, 0x00, 0x81, 0x00]);
    let joined: Vec<u8> = f.iter().flat_map(|f| f.raw.iter().copied()).collect();
    assert_eq!(joined, buf, "raw spans tile the message exactly");
    assert_eq!(f[1].offset, 3);
    assert_eq!(f[1].payload_offset(), 5);
    // Wrong wire type for a typed accessor.
    assert!(f[1].varint("t").is_err());
    assert!(f[0].bytes("t").is_err());
}

#[test]
fn malformed_messages_are_errors_that_say_where() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x0a, 0x05, 0x61], "needs 5 bytes"), // length past the end
        (&[0x0a], "ends inside a varint"),      // missing length
        (&[0x08], "ends inside a varint"),      // missing varint value
        (&[0x00, 0x01], "invalid field number 0"), // field 0
        (&[0x0e, 0x01], "invalid wire type 6"), // wire type 6
        (&[0x0f, 0x01], "invalid wire type 7"), // wire type 7
        (&[0x0c], "without a start"),           // end group without a start
        (&[0x0b, 0x08, 0x01], "never closed"),  // unclosed group
        (&[0x0b, 0x14], "inside group 1"),      // end of group 2 inside group 1
        (&[0x09, 0x01, 0x02], "needs 8 bytes"), // short fixed64
        (&[0x0d, 0x01], "needs 4 bytes"),       // short fixed32
        (
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            "longer than 64",
        ),
        (
            &[0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00],
            "invalid field number",
        ), // beyond 2^29 - 1
    ];
    for &(bytes, expected) in cases {
        let err = parse_message(bytes, 100, "Probe").expect_err("malformed");
        let msg = err.to_string();
        assert!(matches!(err, Error::Onnx { .. }), "{msg}");
        assert!(msg.contains(expected), "{bytes:x?}: {msg}");
        assert!(msg.contains("Probe at byte 10"), "{msg}");
    }
}

#[test]
fn packed_and_unpacked_repeated_fields_read_alike() {
    let mut buf = Vec::new();
    put_varint_field(&mut buf, 1, 3);
    let mut packed = Vec::new();
    put_varint(&mut packed, 4);
    put_varint(&mut packed, 300);
    put_bytes_field(&mut buf, 1, &packed);
    let mut out = Vec::new();
    for f in fields(&buf) {
        f.repeated_varints("t", &mut out).expect("varints");
    }
    assert_eq!(out, [3, 4, 300]);
    // A packed run cut inside a varint.
    let mut bad = Vec::new();
    put_bytes_field(&mut bad, 1, &[0x80]);
    assert!(fields(&bad)[0].repeated_varints("t", &mut out).is_err());
    // Packed fixed32 must be a multiple of 4 bytes.
    let mut bad = Vec::new();
    put_bytes_field(&mut bad, 4, &[0, 0, 0]);
    assert!(fields(&bad)[0].repeated_fixed32("t").is_err());
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[test]
fn parse_reads_the_builders_model() {
    let m = parse(&small_model());
    assert_eq!(m.ir_version(), 8);
    assert_eq!(m.opset(), Some(17));
    let names = |v: &[super::ValueInfo]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(m.graph_inputs()),
        ["input", "conv.weight", "bn.running_var"]
    );
    assert_eq!(names(m.graph_outputs()), ["logits"]);
    let input = m.graph_input("input").expect("input");
    assert_eq!(input.elem_type, elem::FLOAT);
    assert_eq!(
        input.dims,
        Some(vec![
            Dim::Symbolic("N".into()),
            Dim::Fixed(3),
            Dim::Fixed(5),
            Dim::Fixed(5)
        ])
    );
    assert_eq!(input.fixed_dims(), None);
    assert_eq!(
        m.graph_input("conv.weight").and_then(|i| i.fixed_dims()),
        Some(CONV_W.to_vec())
    );
    let data: Vec<_> = m.data_inputs().iter().map(|i| i.name.clone()).collect();
    assert_eq!(data, ["input", "bn.running_var"]);
    let inits: Vec<_> = m.initializers().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        inits,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "fc.weight",
            "fc.bias",
            "scale"
        ]
    );
    let fc = m.initializer("fc.weight").expect("fc.weight");
    assert_eq!(
        (fc.data_type, fc.dims.as_slice()),
        (elem::FLOAT, &[3i64, 2][..])
    );
    assert_eq!(m.initializer("scale").map(|s| s.dims.len()), Some(0));
    assert_eq!(
        m.batch_norm_statistics(),
        ["bn.running_mean", "bn.running_var"]
    );
    assert_eq!(
        m.initializer_f32("conv.weight").expect("floats"),
        values(54, 1)
    );
    assert_eq!(m.initializer_f32("scale").expect("floats"), [1.5]);
    assert!(m.initializer("nope").is_none() && m.graph_input("nope").is_none());
    assert_eq!(m.bytes(), small_model().as_slice());
    assert!(format!("{m:?}").contains("bytes"));
}

#[test]
fn batch_norm_statistics_are_deduplicated_in_node_order() {
    let mut b = ModelBuilder::new("bn", 13).ir_version(7);
    b.input("x", elem::FLOAT, &fixed(&[1, 2, 1, 1]))
        .node(
            "BatchNormalization",
            &["x", "s", "b", "m2", "v2"],
            &["y"],
            &[],
        )
        .node(
            "BatchNormalization",
            &["y", "s", "b", "m1", "v1"],
            &["z"],
            &[],
        )
        .node(
            "BatchNormalization",
            &["z", "s", "b", "m2", "v1"],
            &["w"],
            &[],
        )
        .node("BatchNormalization", &["w", "s", "b", "", ""], &["u"], &[])
        .node("Add", &["u", "u", "m9", "v9"], &["o"], &[]);
    let m = parse(&b.build());
    assert_eq!(m.ir_version(), 7);
    assert_eq!(m.opset(), Some(13));
    assert_eq!(m.batch_norm_statistics(), ["m2", "v2", "m1", "v1"]);
}

#[test]
fn opset_is_the_default_domains_and_fields_may_come_in_any_form() {
    let mut b = ModelBuilder::new("g", 11);
    b.opset_import("com.microsoft", 1)
        .opset_import("ai.onnx", 99);
    let m = parse(&b.build());
    assert_eq!(m.opset(), Some(11));

    // Only a custom domain.
    let mut bytes = Vec::new();
    put_message_field(&mut bytes, 8, |o| {
        put_bytes_field(o, 1, b"custom");
        put_int64_field(o, 2, 3);
    });
    put_message_field(&mut bytes, 7, |g| put_bytes_field(g, 2, b"empty"));
    let m = parse(&bytes);
    assert_eq!(m.opset(), None);
    assert_eq!(m.ir_version(), 0);
    assert!(m.graph_inputs().is_empty() && m.initializers().is_empty());

    // A "ai.onnx" import counts as the default domain.
    let mut bytes = Vec::new();
    put_message_field(&mut bytes, 7, |_| {});
    put_message_field(&mut bytes, 8, |o| {
        put_bytes_field(o, 1, b"ai.onnx");
        put_int64_field(o, 2, 18);
    });
    assert_eq!(parse(&bytes).opset(), Some(18));
}

/// A TensorProto body written by hand.
fn hand_tensor(
    name: &str,
    data_type: i64,
    dims: &[u64],
    packed_dims: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    if packed_dims {
        let mut p = Vec::new();
        for &d in dims {
            put_varint(&mut p, d);
        }
        put_bytes_field(&mut t, 1, &p);
    } else {
        for &d in dims {
            put_varint_field(&mut t, 1, d);
        }
    }
    put_int64_field(&mut t, 2, data_type);
    t.extend_from_slice(data);
    put_bytes_field(&mut t, 8, name.as_bytes());
    t
}

#[test]
fn initializers_read_from_float_data_packed_or_not_and_with_packed_dims() {
    let floats = [1.0f32, -2.0, 3.5, 4.25, 0.0, 6.0];
    let mut packed = Vec::new();
    let le: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    put_bytes_field(&mut packed, 4, &le);
    let mut unpacked = Vec::new();
    for f in floats {
        put_float_field(&mut unpacked, 4, f);
    }
    let mut mixed = Vec::new();
    put_bytes_field(&mut mixed, 4, &le[..8]);
    for f in &floats[2..] {
        put_float_field(&mut mixed, 4, *f);
    }
    let mut raw = Vec::new();
    put_bytes_field(&mut raw, 9, &le);
    let mut short = Vec::new();
    put_bytes_field(&mut short, 9, &le[..20]);
    let mut ints = Vec::new();
    put_bytes_field(&mut ints, 9, &[0; 48]);
    let mut external = Vec::new();
    put_varint_field(&mut external, 14, 1);

    let mut graph = Vec::new();
    let tensors = [
        ("packed", 1, true, &packed),
        ("unpacked", 1, false, &unpacked),
        ("mixed", 1, true, &mixed),
        ("raw", 1, false, &raw),
        ("short", 1, false, &short),
        ("ints", 7, false, &ints),
        ("external", 1, false, &external),
    ];
    for (name, ty, packed_dims, data) in tensors {
        let t = hand_tensor(name, ty, &[2, 3], packed_dims, data);
        put_bytes_field(&mut graph, 5, &t);
    }
    let m = parse(&inject(&small_model(), &[], &[], &graph));
    for name in ["packed", "unpacked", "mixed", "raw"] {
        assert_eq!(
            m.initializer(name).map(|i| i.dims.clone()),
            Some(vec![2, 3]),
            "{name}"
        );
        assert_eq!(m.initializer_f32(name).expect(name), floats, "{name}");
    }
    let err = m.initializer_f32("short").expect_err("short").to_string();
    assert!(err.contains("short") && err.contains("20 bytes"), "{err}");
    let err = m.initializer_f32("ints").expect_err("ints");
    assert!(
        matches!(&err, Error::DType { tensor, .. } if tensor == "ints"),
        "{err}"
    );
    let err = m
        .initializer_f32("external")
        .expect_err("external")
        .to_string();
    assert!(
        err.contains("external") && err.contains("externally"),
        "{err}"
    );
    let err = m.initializer_f32("missing").expect_err("missing");
    assert!(matches!(&err, Error::MissingTensor { tensor, .. } if tensor == "missing"));
}

#[test]
fn value_infos_without_shape_or_of_other_types_decode() {
    let mut graph = Vec::new();
    // No type at all.
    put_message_field(&mut graph, 11, |v| put_bytes_field(v, 1, b"untyped"));
    // A tensor type without a shape.
    put_message_field(&mut graph, 11, |v| {
        put_bytes_field(v, 1, b"shapeless");
        put_message_field(v, 2, |t| {
            put_message_field(t, 1, |tt| put_int64_field(tt, 1, 7))
        });
    });
    // A sequence type (field 4 of TypeProto).
    put_message_field(&mut graph, 11, |v| {
        put_bytes_field(v, 1, b"sequence");
        put_message_field(v, 2, |t| put_message_field(t, 4, |_| {}));
    });
    // A dimension with neither value nor name, and one with both (the last wins).
    put_message_field(&mut graph, 11, |v| {
        put_bytes_field(v, 1, b"odd_dims");
        put_message_field(v, 2, |t| {
            put_message_field(t, 1, |tt| {
                put_int64_field(tt, 1, 1);
                put_message_field(tt, 2, |s| {
                    put_message_field(s, 1, |_| {});
                    put_message_field(s, 1, |d| {
                        put_int64_field(d, 1, 4);
                        put_bytes_field(d, 2, b"later");
                    });
                });
            });
        });
    });
    let m = parse(&inject(&small_model(), &[], &[], &graph));
    let get = |n: &str| m.graph_input(n).expect(n).clone();
    assert_eq!(
        (get("untyped").elem_type, get("untyped").dims),
        (elem::UNDEFINED, None)
    );
    assert_eq!(
        (get("shapeless").elem_type, get("shapeless").dims),
        (elem::INT64, None)
    );
    assert_eq!(
        (get("sequence").elem_type, get("sequence").dims),
        (elem::UNDEFINED, None)
    );
    assert_eq!(
        get("odd_dims").dims,
        Some(vec![Dim::Unknown, Dim::Symbolic("later".into())])
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed models

#[test]
fn malformed_models_are_errors() {
    let good = small_model();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty"),
        ("bad varint", vec![0xff; 11], "longer than 64"),
        (
            "length beyond buffer",
            vec![0x3a, 0x05, 0x00],
            "needs 5 bytes",
        ),
        ("no graph", vec![0x08, 0x08], "no graph"),
        (
            "graph as varint",
            vec![0x38, 0x01],
            "expected length-delimited",
        ),
        ("two graphs", vec![0x3a, 0x00, 0x3a, 0x00], "second graph"),
        (
            "graph holds garbage",
            vec![0x3a, 0x02, 0xff, 0xff],
            "GraphProto",
        ),
        (
            "ir_version as bytes",
            vec![0x0a, 0x00, 0x3a, 0x00],
            "expected varint",
        ),
        ("truncated", good[..good.len() / 2].to_vec(), "ModelProto"),
        ("text", b"this is not a model at all".to_vec(), "ModelProto"),
    ];
    for (what, bytes, expected) in cases {
        let err = OnnxModel::parse(&bytes).expect_err(what);
        assert!(matches!(err, Error::Onnx { .. }), "{what}: {err}");
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    // A node name that is not UTF-8.
    let mut graph = Vec::new();
    put_message_field(&mut graph, 1, |n| put_bytes_field(n, 3, &[0xff, 0xfe]));
    let err = OnnxModel::parse(&inject(&good, &[], &[], &graph)).expect_err("utf-8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

/// Runs everything a decoded model offers; must never panic.
fn exercise(bytes: &[u8]) {
    let Ok(m) = OnnxModel::parse(bytes) else {
        return;
    };
    let _ = (
        m.ir_version(),
        m.opset(),
        m.graph_outputs(),
        m.data_inputs(),
    );
    let _ = m.batch_norm_statistics();
    for i in m.initializers() {
        let _ = m.initializer_f32(&i.name);
    }
    if let Ok(out) = m.rewrite_dynamic(&mixes(3, 2)) {
        OnnxModel::parse(&out).expect("a rewrite parses");
    }
    let data = values(54, 9);
    let tensors = [NamedTensor {
        name: "conv.weight",
        dims: &CONV_W,
        data: &data,
    }];
    if let Ok(out) = m.with_tensors(&tensors) {
        OnnxModel::parse(&out).expect("a rewrite parses");
    }
}

#[test]
fn truncations_and_corruptions_never_panic() {
    let good = decorated_model();
    let graph_end = {
        let l = layout(&good).expect("layout");
        let g = &l.model[l.graph_index];
        g.offset + g.raw.len()
    };
    for cut in 0..good.len() {
        let r = OnnxModel::parse(&good[..cut]);
        if cut < graph_end {
            assert!(
                r.is_err(),
                "a model cut at {cut} (graph ends at {graph_end}) parsed"
            );
        }
        exercise(&good[..cut]);
    }
    for i in 0..good.len() {
        for mask in [0x01u8, 0x40, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            exercise(&bad);
        }
    }
    let mut rng = Rng(0x5eed);
    for _ in 0..3000 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() % bad.len() as u64) as usize;
            bad[i] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(3) {
            let cut = (rng.next() % bad.len() as u64) as usize;
            bad.truncate(cut);
        }
        exercise(&bad);
    }
    for len in [1usize, 2, 3, 7, 16, 100, 1000] {
        for _ in 0..200 {
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&garbage);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rewrite_dynamic

/// Decodes a graph field's TensorProto: (dims, data_type, raw_data, external entries, location).
#[allow(clippy::type_complexity)]
fn tensor_parts(field: &Field<'_>) -> (Vec<i64>, i64, Option<Vec<u8>>, Vec<(String, String)>, u64) {
    let Value::Len(b) = field.value else {
        panic!("not a tensor")
    };
    let mut dims = Vec::new();
    let mut ty = 0;
    let mut raw = None;
    let mut external = Vec::new();
    let mut location = 0;
    for f in fields(b) {
        match f.number {
            1 => {
                let mut d = Vec::new();
                f.repeated_varints("t", &mut d).expect("dims");
                dims.extend(d.into_iter().map(|v| v as i64));
            }
            2 => ty = f.int64("t").expect("type"),
            9 => raw = Some(f.bytes("t").expect("raw").to_vec()),
            13 => external.push((one_string(&f, 1), one_string(&f, 2))),
            14 => location = f.varint("t").expect("location"),
            _ => {}
        }
    }
    (dims, ty, raw, external, location)
}

#[test]
fn rewrite_dynamic_mixes_and_keeps_everything_else() {
    let original = decorated_model();
    let model = parse(&original);
    let out = model.rewrite_dynamic(&mixes(3, 2)).expect("rewrite");
    let rewritten = parse(&out);

    // Inputs: removed conv.weight and bn.running_var; coef and member added once, at the end.
    let names: Vec<_> = rewritten
        .graph_inputs()
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["input", "coef", "member"]);
    let coef = rewritten.graph_input("coef").expect("coef");
    assert_eq!(coef.elem_type, elem::FLOAT);
    assert_eq!(coef.dims, Some(vec![Dim::Fixed(1), Dim::Fixed(3)]));
    let member = rewritten.graph_input("member").expect("member");
    assert_eq!(
        (member.elem_type, member.dims.clone()),
        (elem::INT64, Some(vec![]))
    );

    // Initializers: mixed ones removed, stacks and shapes appended after the last one.
    let inits: Vec<_> = rewritten
        .initializers()
        .iter()
        .map(|i| (i.name.as_str(), i.dims.clone()))
        .collect();
    assert_eq!(
        inits,
        [
            ("conv.bias", vec![2]),
            ("bn.weight", vec![2]),
            ("bn.bias", vec![2]),
            ("fc.weight", vec![3, 2]),
            ("fc.bias", vec![3]),
            ("conv.weight.stack", vec![3, 54]),
            ("conv.weight/modeconn.shape", vec![4]),
            ("scale.stack", vec![3, 1]),
            ("scale/modeconn.shape", vec![0]),
            ("bn.running_mean.stack", vec![2, 2]),
            ("bn.running_var.stack", vec![2, 2]),
        ]
    );
    let graph = graph_fields(&out);
    let by_name = |name: &str| {
        *graph
            .iter()
            .find(|f| f.number == 5 && graph_item_name(f) == name)
            .expect(name)
    };
    let (dims, ty, raw, external, location) = tensor_parts(&by_name("conv.weight.stack"));
    assert_eq!((dims, ty, raw, location), (vec![3, 54], 1, None, 1));
    let entries = |e: &[(&str, &str)]| {
        e.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        external,
        entries(&[
            ("location", STACK_LOCATION),
            ("offset", "0"),
            ("length", "648")
        ])
    );
    let (_, _, _, external, _) = tensor_parts(&by_name("bn.running_var.stack"));
    assert_eq!(external[2], ("length".to_string(), "16".to_string()));
    let (dims, ty, raw, _, location) = tensor_parts(&by_name("conv.weight/modeconn.shape"));
    let le: Vec<u8> = [2i64, 3, 3, 3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!((dims, ty, raw, location), (vec![4], 7, Some(le), 0));
    let (dims, _, raw, _, _) = tensor_parts(&by_name("scale/modeconn.shape"));
    assert_eq!((dims, raw), (vec![0], Some(vec![])));
    let err = rewritten
        .initializer_f32("conv.weight.stack")
        .expect_err("external");
    assert!(err.to_string().contains("externally"), "{err}");

    // New nodes come first, in mix order.
    let nodes: Vec<_> = graph.iter().filter(|f| f.number == 1).collect();
    let node = |i: usize| {
        (
            one_string(nodes[i], 4),
            strings(nodes[i], 1),
            strings(nodes[i], 2),
            one_string(nodes[i], 3),
        )
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        node(0),
        (
            "MatMul".into(),
            s(&["coef", "conv.weight.stack"]),
            s(&["conv.weight/modeconn.mixed"]),
            "modeconn/mix/conv.weight".into()
        )
    );
    assert_eq!(
        node(1),
        (
            "Reshape".into(),
            s(&["conv.weight/modeconn.mixed", "conv.weight/modeconn.shape"]),
            s(&["conv.weight"]),
            "modeconn/mix/conv.weight/reshape".into()
        )
    );
    assert_eq!(node(2).0, "MatMul");
    assert_eq!(node(3).2, s(&["scale"]));
    assert_eq!(
        node(4),
        (
            "Gather".into(),
            s(&["bn.running_mean.stack", "member"]),
            s(&["bn.running_mean"]),
            "modeconn/mix/bn.running_mean".into()
        )
    );
    assert_eq!(node(5).1, s(&["bn.running_var.stack", "member"]));
    let Value::Len(gather_body) = nodes[4].value else {
        panic!("node")
    };
    let attr_field = fields(gather_body)
        .into_iter()
        .find(|f| f.number == 5)
        .expect("Gather has an attribute");
    let attr = attr_field.message("AttributeProto").expect("attribute");
    let attr: Vec<_> = attr.iter().map(|f| (f.number, f.value)).collect();
    assert_eq!(
        attr,
        [
            (1, Value::Len(b"axis")),
            (3, Value::Varint(0)),
            (20, Value::Varint(2))
        ]
    );
    for f in &graph[..6] {
        assert!(
            f.number == 1 && graph_item_name(f).starts_with("modeconn/mix/"),
            "new nodes lead"
        );
    }
    assert_eq!(
        graph[6].raw,
        before_graph_first(&original),
        "then the original first node"
    );
    assert_eq!(one_string(nodes[6], 4), "Conv");
    assert_eq!(
        rewritten.batch_norm_statistics(),
        model.batch_norm_statistics()
    );

    // Every other field is byte-identical and in order, at both levels.
    let before = layout(&original).expect("layout");
    let after = layout(&out).expect("layout");
    let others = |l: &super::model::Layout<'_>| {
        l.model
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != l.graph_index)
            .map(|(_, f)| f.raw.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&before), others(&after));
    assert_eq!(others(&after).len(), before.model.len() - 1);
    let removed: HashSet<(u32, String)> = [
        (5, "conv.weight"),
        (11, "conv.weight"),
        (5, "bn.running_mean"),
        (11, "bn.running_var"),
        (5, "scale"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect();
    let kept: Vec<_> = before
        .graph
        .iter()
        .filter(|f| !removed.contains(&(f.number, graph_item_name(f))))
        .map(|f| f.raw)
        .collect();
    let new_names: HashSet<String> = [
        "conv.weight.stack",
        "conv.weight/modeconn.shape",
        "scale.stack",
        "scale/modeconn.shape",
        "bn.running_mean.stack",
        "bn.running_var.stack",
        "coef",
        "member",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let unchanged: Vec<_> = after
        .graph
        .iter()
        .filter(|f| {
            let name = graph_item_name(f);
            !(f.number == 1 && name.starts_with("modeconn/mix/")
                || matches!(f.number, 5 | 11) && new_names.contains(&name))
        })
        .map(|f| f.raw)
        .collect();
    assert_eq!(kept, unchanged);
    assert_eq!(
        after.graph.len(),
        before.graph.len() - removed.len() + 6 + new_names.len()
    );
    // Spot-check that the exotic fields are really there.
    for needle in [
        &b"graph documentation"[..],
        b"my_function",
        b"opaque bytes",
        b"sub",
        &[0xb8, 0xbe, 0x00, 0x85, 0x00],
    ] {
        assert!(
            out.windows(needle.len()).any(|w| w == needle),
            "{needle:x?} lost"
        );
    }
}

#[test]
fn rewrite_dynamic_with_nothing_to_do_returns_the_bytes() {
    let original = decorated_model();
    let model = parse(&original);
    assert_eq!(model.rewrite_dynamic(&[]).expect("no-op"), original);
    assert_eq!(model.with_tensors(&[]).expect("no-op"), original);
}

#[test]
fn rewrite_dynamic_rejects_bad_mixes() {
    let model = parse(&small_model());
    let mut m = mixes(3, 2);
    m[0].name = "no.such.tensor".into();
    m[0].shape = vec![1];
    let err = model.rewrite_dynamic(&m).expect_err("missing");
    assert!(
        matches!(&err, Error::MissingGraphInput { tensor } if tensor == "no.such.tensor"),
        "{err}"
    );

    let mut m = mixes(3, 2);
    m[0].shape = vec![2, 3, 9];
    let err = model.rewrite_dynamic(&m).expect_err("shape");
    assert!(
        matches!(&err, Error::ShapeMismatch { tensor, .. } if tensor == "conv.weight"),
        "{err}"
    );

    let mut m = mixes(3, 2);
    m[3].shape = vec![5];
    let err = model.rewrite_dynamic(&m).expect_err("input shape");
    assert!(
        matches!(&err, Error::ShapeMismatch { tensor, expected, .. } if tensor == "bn.running_var" && expected == &[2]),
        "{err}"
    );

    let invalid = |m: Vec<Mix>, needle: &str| {
        let err = model.rewrite_dynamic(&m).expect_err(needle);
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    };
    let mut m = mixes(3, 2);
    m[1] = m[0].clone();
    invalid(m, "mixed twice");
    let mut m = mixes(3, 2);
    m[2].stack = "input".into();
    invalid(m, "`input`");
    let mut m = mixes(3, 2);
    m[1].stack = m[0].stack.clone();
    invalid(m, "conv.weight.stack");
    let mut m = mixes(3, 2);
    m[1].via = MixVia::MatMul {
        coef: "coef".into(),
        points: 4,
    };
    invalid(m, "3 and 4 points");
    let mut m = mixes(3, 2);
    m[2].via = MixVia::Gather {
        index: "coef".into(),
        members: 2,
    };
    invalid(m, "index input `coef`");
    invalid(mixes(0, 2), "0 points");
    invalid(mixes(3, 0), "0 members");

    // Not FLOAT.
    let mut b = small_builder();
    b.initializer_i64("steps", &[2], &[1, 2]);
    let model = parse(&b.build());
    let m = vec![Mix {
        name: "steps".into(),
        shape: vec![2],
        stack: "steps.stack".into(),
        via: MixVia::Gather {
            index: "i".into(),
            members: 2,
        },
        source: StackSource::Supplied,
    }];
    let err = model.rewrite_dynamic(&m).expect_err("dtype");
    assert!(
        matches!(&err, Error::DType { tensor, .. } if tensor == "steps"),
        "{err}"
    );
}

#[test]
fn rewrite_dynamic_without_initializers_appends_and_names_nodes_uniquely() {
    let mut b = ModelBuilder::new("g", 17);
    b.input("x", elem::FLOAT, &fixed(&[1, 4]))
        .input("w", elem::FLOAT, &[4.into(), "k".into()])
        .node("MatMul", &["x", "w"], &["y"], &[])
        .output("y", elem::FLOAT, &fixed(&[1, 2]));
    // A node already called like the one the rewrite wants.
    let mut extra = Vec::new();
    put_message_field(&mut extra, 1, |n| {
        encode::node(n, "modeconn/mix/w", "Identity", "", &["y"], &["y2"], &[]);
    });
    let bytes = inject(&b.build(), &[], &[], &extra);
    let model = parse(&bytes);
    let mix = Mix {
        name: "w".into(),
        shape: vec![4, 2],
        stack: "w.stack".into(),
        via: MixVia::MatMul {
            coef: "c".into(),
            points: 2,
        },
        source: StackSource::Supplied,
    };
    assert_eq!(mix.stack_dims().expect("dims"), [2, 8]);
    let out = model.rewrite_dynamic(&[mix]).expect("rewrite");
    let m = parse(&out);
    let inits: Vec<_> = m.initializers().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inits, ["w.stack", "w/modeconn.shape"]);
    let inputs: Vec<_> = m.graph_inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["x", "c"]);
    let node_names: Vec<_> = graph_fields(&out)
        .iter()
        .filter(|f| f.number == 1)
        .map(graph_item_name)
        .collect();
    assert_eq!(
        node_names,
        [
            "modeconn/mix/w#1",
            "modeconn/mix/w/reshape",
            "MatMul_0",
            "modeconn/mix/w"
        ]
    );
    // The input replaces the removed one's place; with no initializer before, the new ones
    // follow the last original field.
    let graph = graph_fields(&out);
    let numbers: Vec<_> = graph.iter().map(|f| f.number).collect();
    assert_eq!(numbers, [1, 1, 1, 1, 2, 11, 11, 12, 5, 5]);
}

// ---------------------------------------------------------------------------------------------
// with_tensors

#[test]
fn with_tensors_replaces_in_place_and_removes_inputs() {
    let original = decorated_model();
    let model = parse(&original);
    let conv = values(54, 11);
    let var = [0.5f32, 2.0];
    let out = model
        .with_tensors(&[
            NamedTensor {
                name: "conv.weight",
                dims: &CONV_W,
                data: &conv,
            },
            NamedTensor {
                name: "bn.running_var",
                dims: &[2],
                data: &var,
            },
        ])
        .expect("with_tensors");
    let m = parse(&out);
    let inits: Vec<_> = m.initializers().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        inits,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "fc.weight",
            "fc.bias",
            "scale",
            "bn.running_var"
        ]
    );
    assert_eq!(m.initializer_f32("conv.weight").expect("conv"), conv);
    assert_eq!(m.initializer_f32("bn.running_var").expect("var"), var);
    assert_eq!(m.initializer_f32("fc.weight").expect("fc"), values(6, 6));
    let inputs: Vec<_> = m.graph_inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["input"]);
    assert_eq!(m.data_inputs().len(), 1);

    // The new tensor fields are exactly dims, data_type, name, raw_data.
    let graph = graph_fields(&out);
    let conv_field = graph
        .iter()
        .find(|f| f.number == 5 && graph_item_name(f) == "conv.weight")
        .expect("conv");
    let numbers: Vec<_> = sub(conv_field).iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 1, 1, 1, 2, 8, 9]);

    let before = layout(&original).expect("layout");
    let after = layout(&out).expect("layout");
    let changed = |f: &Field<'_>| {
        matches!(
            (f.number, graph_item_name(f).as_str()),
            (5 | 11, "conv.weight") | (5 | 11, "bn.running_var")
        )
    };
    let kept = |l: &super::model::Layout<'_>| {
        l.graph
            .iter()
            .filter(|f| !changed(f))
            .map(|f| f.raw.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&before), kept(&after));
    let position = |l: &super::model::Layout<'_>, n: &str| {
        l.graph
            .iter()
            .position(|f| f.number == 5 && graph_item_name(f) == n)
    };
    assert_eq!(
        position(&before, "conv.weight"),
        position(&after, "conv.weight"),
        "replaced in place"
    );
    let model_others = |l: &super::model::Layout<'_>| {
        l.model
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != l.graph_index)
            .map(|(_, f)| f.raw.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(model_others(&before), model_others(&after));
}

#[test]
fn with_tensors_rejects_bad_tensors() {
    let model = parse(&small_model());
    let data = values(54, 1);
    let check = |t: NamedTensor<'_>, ok: fn(&Error) -> bool| {
        let err = model.with_tensors(&[t]).expect_err("invalid");
        assert!(ok(&err), "{err}");
    };
    check(
        NamedTensor {
            name: "conv.weight",
            dims: &CONV_W,
            data: &data[..53],
        },
        |e| matches!(e, ref e @ Error::InvalidArgument { .. } if e.to_string().contains("53 values")),
    );
    check(
        NamedTensor {
            name: "conv.weight",
            dims: &[-2, 27],
            data: &data,
        },
        |e| matches!(e, ref e @ Error::InvalidArgument { .. } if e.to_string().contains("invalid shape")),
    );
    check(
        NamedTensor {
            name: "ghost",
            dims: &[54],
            data: &data,
        },
        |e| matches!(e, Error::MissingGraphInput { tensor } if tensor == "ghost"),
    );
    check(
        NamedTensor {
            name: "conv.weight",
            dims: &[54],
            data: &data,
        },
        |e| matches!(e, Error::ShapeMismatch { tensor, .. } if tensor == "conv.weight"),
    );
    let t = NamedTensor {
        name: "scale",
        dims: &[],
        data: &data[..1],
    };
    let err = model.with_tensors(&[t, t]).expect_err("twice");
    assert!(
        matches!(&err, ref e @ Error::InvalidArgument { .. } if e.to_string().contains("twice")),
        "{err}"
    );
    // A scalar replaced by a scalar is fine.
    let out = model.with_tensors(&[t]).expect("scalar");
    assert_eq!(
        parse(&out).initializer_f32("scale").expect("scale"),
        [data[0]]
    );
}

// ---------------------------------------------------------------------------------------------
// Lifting initializers to graph inputs

/// What `lift_to_inputs` is asked for in the tests: an initializer that is also an input, two
/// initializers only (one a scalar), an input only, and an initializer only.
const LIFTED: [&str; 5] = [
    "conv.weight",
    "fc.weight",
    "scale",
    "bn.running_var",
    "bn.running_mean",
];

/// The graph fields of a layout as `(number, name, raw bytes)`.
fn named_fields(l: &super::model::Layout<'_>) -> Vec<(u32, String, Vec<u8>)> {
    l.graph
        .iter()
        .map(|f| (f.number, graph_item_name(f), f.raw.to_vec()))
        .collect()
}

#[test]
fn lift_to_inputs_declares_inputs_and_keeps_everything_else() {
    let original = decorated_model();
    let model = parse(&original);
    let out = model.lift_to_inputs(&LIFTED).expect("lift");
    let lifted = parse(&out);

    // Inputs: the existing ones unchanged, then one per lifted initializer that was not an
    // input yet, in the order asked, with FLOAT and the initializer's fixed dims.
    let inputs: Vec<_> = lifted
        .graph_inputs()
        .iter()
        .map(|i| (i.name.as_str(), i.elem_type, i.dims.clone()))
        .collect();
    let fixed_dims = |d: &[i64]| Some(d.iter().map(|&v| Dim::Fixed(v)).collect::<Vec<_>>());
    assert_eq!(
        inputs,
        [
            (
                "input",
                elem::FLOAT,
                Some(vec![
                    Dim::Symbolic("N".into()),
                    Dim::Fixed(3),
                    Dim::Fixed(5),
                    Dim::Fixed(5)
                ])
            ),
            ("conv.weight", elem::FLOAT, fixed_dims(&CONV_W)),
            ("bn.running_var", elem::FLOAT, fixed_dims(&[2])),
            ("fc.weight", elem::FLOAT, fixed_dims(&[3, 2])),
            ("scale", elem::FLOAT, Some(vec![])),
            ("bn.running_mean", elem::FLOAT, fixed_dims(&[2])),
        ]
    );
    let inits: Vec<_> = lifted
        .initializers()
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(inits, ["conv.bias", "bn.weight", "bn.bias", "fc.bias"]);
    let mut data: Vec<_> = lifted
        .data_inputs()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    data.sort();
    let mut want: Vec<_> = std::iter::once("input")
        .chain(LIFTED)
        .map(String::from)
        .collect();
    want.sort();
    assert_eq!(data, want, "every lifted tensor must now be fed");
    assert_eq!(lifted.outputs, model.outputs);
    assert_eq!(lifted.opset(), model.opset());
    assert_eq!(lifted.ir_version(), model.ir_version());
    assert_eq!(
        lifted.batch_norm_statistics(),
        model.batch_norm_statistics()
    );

    // The new input fields are exactly what the encoder writes for a value info.
    let after = layout(&out).expect("layout");
    let before = layout(&original).expect("layout");
    let encoded = |name: &str, dims: &[i64]| {
        let mut field = Vec::new();
        put_message_field(&mut field, 11, |m| {
            encode::value_info(m, name, elem::FLOAT, &fixed(dims))
        });
        field
    };
    let new_fields = [
        encoded("fc.weight", &[3, 2]),
        encoded("scale", &[]),
        encoded("bn.running_mean", &[2]),
    ];

    // They follow the last original input directly; every other graph field is the original,
    // byte for byte and in order, less the removed initializers.
    let last_input = before
        .graph
        .iter()
        .rposition(|f| f.number == 11)
        .expect("inputs");
    let removed = |number: u32, name: &str| {
        number == 5 && ["conv.weight", "fc.weight", "scale", "bn.running_mean"].contains(&name)
    };
    let mut expected = Vec::new();
    for (i, (number, name, raw)) in named_fields(&before).into_iter().enumerate() {
        if !removed(number, &name) {
            expected.push(raw);
        }
        if i == last_input {
            expected.extend(new_fields.iter().cloned());
        }
    }
    let got: Vec<_> = after.graph.iter().map(|f| f.raw.to_vec()).collect();
    assert_eq!(got, expected);

    // The model's own fields other than the graph are untouched.
    let others = |l: &super::model::Layout<'_>| {
        l.model
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != l.graph_index)
            .map(|(_, f)| f.raw.to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&before), others(&after));
    assert_eq!(before.graph_index, after.graph_index);
    let removed_bytes: usize = before
        .graph
        .iter()
        .filter(|f| removed(f.number, &graph_item_name(f)))
        .map(|f| f.raw.len())
        .sum();
    assert!(removed_bytes > 4 * (54 + 6 + 1 + 2));
    let added: usize = new_fields.iter().map(Vec::len).sum();
    let graph_len =
        |l: &super::model::Layout<'_>| l.graph.iter().map(|f| f.raw.len()).sum::<usize>();
    assert_eq!(
        graph_len(&after),
        graph_len(&before) - removed_bytes + added
    );

    // The lifted model goes through the runtime's rewrites like the original.
    let dynamic = lifted.rewrite_dynamic(&mixes(3, 2)).expect("dynamic");
    let names: Vec<_> = parse(&dynamic)
        .data_inputs()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(names, ["input", "fc.weight", "coef", "member"]);
    let fc = values(6, 6);
    let baked = lifted
        .with_tensors(&[NamedTensor {
            name: "fc.weight",
            dims: &[3, 2],
            data: &fc,
        }])
        .expect("with_tensors");
    let baked = parse(&baked);
    assert_eq!(baked.initializer_f32("fc.weight").expect("fc"), fc);
    assert!(baked.graph_input("fc.weight").is_none());
}

#[test]
fn lift_to_inputs_is_idempotent() {
    let original = decorated_model();
    let model = parse(&original);
    let once = model.lift_to_inputs(&LIFTED).expect("lift");
    let twice = parse(&once).lift_to_inputs(&LIFTED).expect("lift again");
    assert_eq!(once, twice, "lifting a lifted model changes nothing");

    // A name given twice counts once, and lifting in steps gives what lifting at once gives.
    let doubled: Vec<&str> = LIFTED.iter().chain(LIFTED.iter()).copied().collect();
    assert_eq!(model.lift_to_inputs(&doubled).expect("doubled"), once);
    let first = model.lift_to_inputs(&LIFTED[..2]).expect("first step");
    let second = parse(&first)
        .lift_to_inputs(&LIFTED[2..])
        .expect("second step");
    assert_eq!(second, once);

    // Nothing to lift: the bytes come back as they are.
    assert_eq!(model.lift_to_inputs(&[]).expect("empty"), original);
    assert_eq!(
        model
            .lift_to_inputs(&["bn.running_var"])
            .expect("input only"),
        original
    );
}

#[test]
fn lift_to_inputs_removes_duplicates_and_appends_inputs_when_there_are_none() {
    // No graph inputs at all, and the initializer `w` twice.
    let mut b = ModelBuilder::new("no_inputs", 13);
    b.initializer_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
        .initializer_f32("w", &[2, 2], &[5.0, 6.0, 7.0, 8.0])
        .initializer_f32("b", &[2], &[0.5, 0.5])
        .node("Add", &["w", "b"], &["y"], &[])
        .output("y", elem::FLOAT, &fixed(&[2, 2]));
    let original = b.build();
    let out = parse(&original).lift_to_inputs(&["w"]).expect("lift");
    let m = parse(&out);
    let inits: Vec<_> = m.initializers().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inits, ["b"]);
    let inputs: Vec<_> = m
        .graph_inputs()
        .iter()
        .map(|i| (i.name.as_str(), i.fixed_dims()))
        .collect();
    assert_eq!(inputs, [("w", Some(vec![2, 2]))]);
    let graph = graph_fields(&out);
    assert_eq!(
        graph.last().map(|f| f.number),
        Some(11),
        "appended at the end"
    );
}

#[test]
fn lift_to_inputs_rejects_bad_names() {
    let mut b = small_builder();
    b.initializer_i64("shape", &[2], &[1, -1]);
    let model = parse(&b.build());
    let err = model
        .lift_to_inputs(&["fc.weight", "ghost"])
        .expect_err("missing");
    assert!(
        matches!(&err, Error::MissingGraphInput { tensor } if tensor == "ghost"),
        "{err}"
    );
    let err = model.lift_to_inputs(&[""]).expect_err("empty name");
    assert!(
        matches!(&err, Error::MissingGraphInput { tensor } if tensor.is_empty()),
        "{err}"
    );
    let err = model.lift_to_inputs(&["shape"]).expect_err("int64");
    assert!(
        matches!(&err, Error::DType { tensor, found, .. } if tensor == "shape" && found == "INT64"),
        "{err}"
    );

    // An initializer with a negative dimension is refused, not declared.
    let mut tensor = Vec::new();
    put_message_field(&mut tensor, 5, |t| {
        put_int64_field(t, 1, -3);
        put_int64_field(t, 2, i64::from(elem::FLOAT));
        put_bytes_field(t, 8, b"broken");
    });
    let broken = inject(&small_model(), &[], &[], &tensor);
    let err = parse(&broken)
        .lift_to_inputs(&["broken"])
        .expect_err("negative");
    assert!(
        matches!(&err, ref e @ Error::Onnx { .. } if e.to_string().contains("broken") && e.to_string().contains("-3")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real ONNX checker and ONNX Runtime

const CHECK_SCRIPT: &str = r#"
import json, os, sys
import numpy as np
import onnx
import onnxruntime as ort

d = sys.argv[1]
os.chdir(d)
man = json.load(open("manifest.json"))
models = {
    f: open(f, "rb").read()
    for f in ["original.onnx", "dynamic.onnx", "static.onnx", "lifted.onnx"]
}

# The checker insists that an external data file exists (it does not read it): give it an empty
# one, only while checking.
open("modeconn.stack", "wb").close()
for f in models:
    onnx.checker.check_model(onnx.load(f, load_external_data=False), full_check=True)
os.remove("modeconn.stack")

x = np.array(man["input"], dtype=np.float32).reshape(man["input_shape"])
cpu = ["CPUExecutionProvider"]
static = ort.InferenceSession(models["static.onnx"], providers=cpu)
assert [i.name for i in static.get_inputs()] == ["input"], static.get_inputs()
out_static = static.run(None, {"input": x})[0]

so = ort.SessionOptions()
names, tensors = [], []
for name, spec in man["stacks"].items():
    a = np.fromfile(spec["file"], dtype="<f4").reshape(spec["dims"])
    names.append(name)
    tensors.append(ort.OrtValue.ortvalue_from_numpy(a))
so.add_external_initializers(names, tensors)
dynamic = ort.InferenceSession(models["dynamic.onnx"], so, providers=cpu)
assert sorted(i.name for i in dynamic.get_inputs()) == ["coef", "input", "member"], dynamic.get_inputs()
feeds = {
    "input": x,
    "coef": np.array(man["coef"], dtype=np.float32).reshape(1, -1),
    "member": np.array(man["member"], dtype=np.int64),
}
out_dynamic = dynamic.run(None, feeds)[0]

assert out_static.shape == out_dynamic.shape == (x.shape[0], 3), (out_static.shape, out_dynamic.shape)
assert float(np.abs(out_static).max()) > 1e-3, "degenerate outputs"
err = float(np.abs(out_static - out_dynamic).max())
assert err <= 1e-5, f"outputs differ by {err}"

# The static model with its weights lifted to inputs computes the same when they are fed.
lifted = ort.InferenceSession(models["lifted.onnx"], providers=cpu)
feeds = {"input": x}
for name, spec in man["lifted"].items():
    feeds[name] = np.array(spec["data"], dtype=np.float32).reshape(spec["dims"])
assert sorted(i.name for i in lifted.get_inputs()) == sorted(feeds), lifted.get_inputs()
out_lifted = lifted.run(None, feeds)[0]
lift_err = float(np.abs(out_static - out_lifted).max())
assert lift_err <= 1e-5, f"lifted outputs differ by {lift_err}"
print("MODECONN-OK", err, lift_err)
"#;

#[test]
fn onnx_checker_and_onnxruntime_accept_the_rewrites() {
    let python = std::env::var("MODECONN_PYTHON").unwrap_or_else(|_| {
        panic!(
            "MODECONN_PYTHON is not set: run `source ~/.cache/modeconn/py-*/modeconn.env` (written \
             by scripts/setup.sh) so this test can run the ONNX checker and ONNX Runtime"
        )
    });
    let (points, members) = (3usize, 2usize);
    let coef = [0.2f32, 0.5, 0.3];
    let member = 1usize;
    let mut rng = Rng(42);
    let conv_points: Vec<Vec<f32>> = (0..points).map(|_| rng.floats(54)).collect();
    let scale_points: Vec<f32> = (0..points).map(|k| 1.0 + k as f32 * 0.5).collect();
    let mean_members: Vec<Vec<f32>> = (0..members).map(|_| rng.floats(2)).collect();
    let var_members: Vec<Vec<f32>> = (0..members)
        .map(|_| rng.floats(2).iter().map(|v| v.abs() + 0.5).collect())
        .collect();

    let original = small_model();
    let model = parse(&original);
    let dynamic = model
        .rewrite_dynamic(&mixes(points, members))
        .expect("dynamic");

    let mix = |pts: &[&[f32]]| -> Vec<f32> {
        (0..pts[0].len())
            .map(|i| pts.iter().zip(coef).map(|(p, c)| c * p[i]).sum())
            .collect()
    };
    let conv_refs: Vec<&[f32]> = conv_points.iter().map(Vec::as_slice).collect();
    let conv = mix(&conv_refs);
    let scale_refs: Vec<&[f32]> = scale_points.iter().map(std::slice::from_ref).collect();
    let scale = mix(&scale_refs);
    let static_model = model
        .with_tensors(&[
            NamedTensor {
                name: "conv.weight",
                dims: &CONV_W,
                data: &conv,
            },
            NamedTensor {
                name: "scale",
                dims: &[],
                data: &scale,
            },
            NamedTensor {
                name: "bn.running_mean",
                dims: &[2],
                data: &mean_members[member],
            },
            NamedTensor {
                name: "bn.running_var",
                dims: &[2],
                data: &var_members[member],
            },
        ])
        .expect("static");

    let static_parsed = parse(&static_model);
    let lifted = static_parsed.lift_to_inputs(&LIFTED).expect("lifted");
    let mut lifted_feeds = serde_json::Map::new();
    for name in LIFTED {
        let dims = &static_parsed.initializer(name).expect("initializer").dims;
        let data = static_parsed.initializer_f32(name).expect("floats");
        lifted_feeds.insert(
            name.to_string(),
            serde_json::json!({ "dims": dims, "data": data }),
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let write =
        |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).expect("write");
    write("original.onnx", &original);
    write("dynamic.onnx", &dynamic);
    write("static.onnx", &static_model);
    write("lifted.onnx", &lifted);
    let stack_data: [Vec<f32>; 4] = [
        conv_points.concat(),
        scale_points.clone(),
        mean_members.concat(),
        var_members.concat(),
    ];
    let mut stacks = serde_json::Map::new();
    for (m, data) in mixes(points, members).iter().zip(&stack_data) {
        let file = format!("{}.bin", m.stack);
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&file, &bytes);
        stacks.insert(
            m.stack.clone(),
            serde_json::json!({ "file": file, "dims": m.stack_dims().expect("dims") }),
        );
    }
    let input = Rng(7).floats(2 * 3 * 5 * 5);
    let manifest = serde_json::json!({
        "input": input,
        "input_shape": [2, 3, 5, 5],
        "coef": coef,
        "member": member,
        "stacks": stacks,
        "lifted": lifted_feeds,
    });
    write("manifest.json", manifest.to_string().as_bytes());
    write("check.py", CHECK_SCRIPT.as_bytes());

    let output = std::process::Command::new(&python)
        .arg(dir.path().join("check.py"))
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("MODECONN-OK"),
        "python check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn a_file_source_names_the_file_and_offset() {
    let mut b = ModelBuilder::new("g", 17);
    b.input("x", elem::FLOAT, &fixed(&[1, 4]))
        .initializer_f32("w", &[4, 2], &[0.5; 8])
        .node("MatMul", &["x", "w"], &["y"], &[])
        .output("y", elem::FLOAT, &fixed(&[1, 2]));
    let model = parse(&b.build());
    let mix = Mix {
        name: "w".into(),
        shape: vec![4, 2],
        stack: "w.stack".into(),
        via: MixVia::MatMul {
            coef: "c".into(),
            points: 3,
        },
        source: StackSource::File {
            location: "curve.safetensors".into(),
            offset: 1004,
        },
    };
    let out = model.rewrite_dynamic(&[mix]).expect("rewrite");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("curve.safetensors"),
        "the location is written"
    );
    assert!(
        text.contains("1004") && text.contains("96"),
        "offset and length are written"
    );
    assert!(!text.contains(STACK_LOCATION), "no placeholder location");
    let m = parse(&out);
    assert_eq!(m.initializer("w.stack").expect("stack").dims, [3, 8]);
}
