//! A [`Net`] as the ONNX graph of bundles, and the metadata that goes with it.

use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
use modeconn_runtime::curve::Basis;
use modeconn_runtime::graph::build::{Attr, DimSpec, ModelBuilder};
use modeconn_runtime::graph::elem;

use super::ir::{INPUT, Net, Op};
use super::shape::infer_shapes;
use crate::{Error, Result};

/// The ONNX opset the graphs import.
pub const OPSET: i64 = 17;

/// The name of the graph output holding the logits.
pub const OUTPUT: &str = "logits";

/// The symbolic name of the batch axis.
const BATCH: &str = "batch";

/// The network as a serialized ONNX `ModelProto` (opset [`OPSET`], IR version 8).
///
/// The graph input `input` is `FLOAT [batch, ...net.input]` and the output `logits` is
/// `FLOAT [batch, classes]`. Every parameter and running statistic is a graph input of its
/// name and shape, with no initializer: its values come from bundles. Normalisation becomes
/// `Sub`/`Div` by initializers of shape `[1, C, 1, 1]`, dropout the identity, batch norm
/// `BatchNormalization` in inference mode.
///
/// A network imported from ONNX gives back the user's graph, its parameters graph inputs.
pub fn to_onnx(net: &Net) -> Result<Vec<u8>> {
    if let Some(source) = &net.source {
        return Ok(source.graph.bytes().to_vec());
    }
    infer_shapes(net)?;
    let output = net.output().to_string();
    let rename = |v: &str| -> String {
        if v == output {
            OUTPUT.to_string()
        } else {
            v.to_string()
        }
    };
    let mut b = ModelBuilder::new(&net.arch, OPSET);
    b.producer("modeconn-trainer", env!("CARGO_PKG_VERSION"));
    let input_dims: Vec<DimSpec> = std::iter::once(DimSpec::from(BATCH))
        .chain(net.input.iter().map(|&d| DimSpec::Fixed(d)))
        .collect();
    b.input(INPUT, elem::FLOAT, &input_dims);
    for p in &net.params {
        let dims: Vec<DimSpec> = p.shape.iter().map(|&d| DimSpec::Fixed(d)).collect();
        b.input(&p.name, elem::FLOAT, &dims);
    }
    for node in &net.nodes {
        let y = rename(&node.output);
        match &node.op {
            Op::Normalize { x, mean, std } => {
                let mut shape = vec![1i64; net.input.len() + 1];
                if shape.len() > 1 {
                    shape[1] = mean.len() as i64;
                }
                let mean_name = format!("normalize_{}.mean", node.output);
                let std_name = format!("normalize_{}.std", node.output);
                let centred = format!("{}.centred", node.output);
                b.initializer_f32(&mean_name, &shape, mean)
                    .initializer_f32(&std_name, &shape, std)
                    .node("Sub", &[&rename(x), &mean_name], &[&centred], &[])
                    .node("Div", &[&centred, &std_name], &[&y], &[]);
            }
            Op::Conv {
                x,
                weight,
                bias,
                stride,
                padding,
            } => {
                let k = net
                    .param(weight)
                    .and_then(|p| p.shape.get(2).copied())
                    .ok_or_else(|| {
                        Error::Arch(format!("`{}`: no convolution weight `{weight}`", net.arch))
                    })?;
                let mut inputs = vec![rename(x), weight.clone()];
                inputs.extend(bias.iter().cloned());
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                b.node(
                    "Conv",
                    &inputs,
                    &[&y],
                    &[
                        Attr::ints("kernel_shape", &[k, k]),
                        Attr::ints("pads", &[*padding; 4]),
                        Attr::ints("strides", &[*stride, *stride]),
                        Attr::ints("dilations", &[1, 1]),
                        Attr::int("group", 1),
                    ],
                );
            }
            Op::BatchNorm { x, prefix, eps } => {
                let names = ["weight", "bias", "running_mean", "running_var"]
                    .map(|s| format!("{prefix}.{s}"));
                b.node(
                    "BatchNormalization",
                    &[&rename(x), &names[0], &names[1], &names[2], &names[3]],
                    &[&y],
                    &[Attr::float("epsilon", *eps as f32)],
                );
            }
            Op::Relu { x } => {
                b.node("Relu", &[&rename(x)], &[&y], &[]);
            }
            Op::MaxPool { x, kernel, stride } | Op::AvgPool { x, kernel, stride } => {
                let op = if matches!(node.op, Op::MaxPool { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                b.node(
                    op,
                    &[&rename(x)],
                    &[&y],
                    &[
                        Attr::ints("kernel_shape", &[*kernel, *kernel]),
                        Attr::ints("strides", &[*stride, *stride]),
                        Attr::ints("pads", &[0; 4]),
                    ],
                );
            }
            Op::GlobalAvgPool { x } => {
                b.node("GlobalAveragePool", &[&rename(x)], &[&y], &[]);
            }
            Op::Flatten { x } => {
                b.node("Flatten", &[&rename(x)], &[&y], &[Attr::int("axis", 1)]);
            }
            Op::Linear { x, weight, bias } => {
                b.node(
                    "Gemm",
                    &[&rename(x), weight, bias],
                    &[&y],
                    &[Attr::int("transB", 1)],
                );
            }
            Op::Add { a, b: other } => {
                b.node("Add", &[&rename(a), &rename(other)], &[&y], &[]);
            }
            Op::Dropout { x, .. } => {
                b.node("Identity", &[&rename(x)], &[&y], &[]);
            }
            Op::Onnx(imp) => {
                return Err(Error::Arch(format!(
                    "`{}`: {} belongs to an imported graph, which is kept as it is",
                    net.arch, imp.node
                )));
            }
        }
    }
    b.output(
        OUTPUT,
        elem::FLOAT,
        &[DimSpec::from(BATCH), DimSpec::Fixed(net.classes)],
    );
    Ok(b.build())
}

/// Bundle metadata for `net`: input `input` of shape `[-1, ...net.input]`, output `logits`
/// with `net.classes` classes, provenance `{"arch": net.arch}`.
///
/// `bn_grid` is kept only for curves of networks with batch norm, and then every running
/// statistic is a grid tensor; otherwise running statistics vary like the other tensors (one
/// slice per control point or member). `basis` is kept only for curves.
pub fn bundle_metadata(
    net: &Net,
    kind: Kind,
    basis: Option<Basis>,
    points: usize,
    bn_grid: Option<Vec<f64>>,
) -> Metadata {
    let curve = kind == Kind::Curve;
    let bn_grid = bn_grid.filter(|_| curve && net.has_batch_norm());
    let grid_tensors = if bn_grid.is_some() {
        net.statistics().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    Metadata {
        kind,
        basis: basis.filter(|_| curve),
        points,
        bn_grid,
        grid_tensors,
        input: InputSpec {
            name: net.input_name().to_string(),
            shape: std::iter::once(-1)
                .chain(net.input.iter().copied())
                .collect(),
        },
        output: OutputSpec {
            name: net.output_name().to_string(),
            classes: net.classes.max(0) as usize,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: Some(serde_json::json!({ "arch": net.arch })),
        extra: Default::default(),
    }
}
