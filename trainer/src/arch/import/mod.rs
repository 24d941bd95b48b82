//! ONNX graphs into the network description: a user's own classifier, exported from PyTorch
//! (`torch.onnx.export(model.eval(), args, path, dynamo=True, optimize=False)` with a dynamic
//! batch dimension), becomes a [`Net`] that libtorch trains, and its bundles keep the user's
//! graph and tensor names.
//!
//! The parameters are the graph's named weights: the `FLOAT` initializers, or, in a bundle's
//! graph, the graph inputs the bundle's tensors feed. Each operation of the graph is read once
//! (`ops::parse`, which refuses what it does not support with one line naming the node) and
//! run with ONNX's semantics in libtorch ([`exec::run`]), shape arithmetic included, so a
//! dynamic batch dimension stays dynamic.

mod exec;
mod ops;

use std::collections::{BTreeMap, HashMap, HashSet};

use modeconn_runtime::graph::{Dim, GraphNode, OnnxModel, elem};

pub use exec::{Inputs, run};
pub use ops::{Binary, ConvAttrs, OnnxOp, Padding, PoolAttrs, Reduction, Unary, describe, kind_of};

use super::ir::{INPUT, Net, Node, Op, Param, ParamKind};
use super::params::Params;
use crate::{Error, Result};

/// The name an imported network carries (`Net::arch`), in messages and provenance.
pub const ARCH: &str = "onnx";

/// One operation of an imported graph, with the values it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The operation.
    pub op: OnnxOp,
    /// Value names by input position; an empty name is an optional input left out.
    pub inputs: Vec<String>,
    /// The node it came from, for messages (`Conv node "conv1"`).
    pub node: String,
}

/// The user's graph an imported network came from: what its bundles hold, with every
/// parameter a graph input (as `modeconn pack` writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The graph, parameters lifted to inputs.
    pub graph: OnnxModel,
    /// The name of its data input.
    pub input: String,
    /// The name of its output.
    pub output: String,
}

/// Imports `graph`. `params` names the values that are parameters or batch-norm statistics,
/// with their shapes: the graph's `FLOAT` initializers of those names, or graph inputs (then
/// fed by a bundle). Every other initializer is a constant. With `params` empty, every
/// `FLOAT` initializer is a parameter.
///
/// The graph must have one data input whose first dimension is the batch, left dynamic, and
/// one output `[batch, classes]`. Fails with one line naming what is wrong: an unsupported
/// operator or attribute and its node, a fixed batch size, a value read but never defined.
pub fn import(graph: &OnnxModel, params: &[(String, Vec<i64>)]) -> Result<Net> {
    let params: Vec<(String, Vec<i64>)> = if params.is_empty() {
        graph
            .initializers()
            .iter()
            .filter(|i| i.data_type == elem::FLOAT)
            .map(|i| (i.name.clone(), i.dims.clone()))
            .collect()
    } else {
        params.to_vec()
    };
    let param_names: HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in &params {
        let is_initializer = graph.initializer(name).is_some();
        if !is_initializer && graph.graph_input(name).is_none() {
            return Err(Error::Arch(format!(
                "the ONNX graph has no initializer or input `{name}`"
            )));
        }
        if let Some(i) = graph.initializer(name)
            && i.data_type != elem::FLOAT
        {
            return Err(Error::Arch(format!(
                "parameter `{name}` is {} in the ONNX graph, not FLOAT",
                elem::name(i.data_type)
            )));
        }
    }

    let data_inputs: Vec<_> = graph
        .graph_inputs()
        .iter()
        .filter(|i| graph.initializer(&i.name).is_none() && !param_names.contains(i.name.as_str()))
        .collect();
    let data = match data_inputs.as_slice() {
        [one] => *one,
        [] => return Err(Error::Arch("the ONNX graph has no data input".into())),
        more => {
            return Err(Error::Arch(format!(
                "the ONNX graph has {} data inputs ({}); the trainer takes classifiers of one input",
                more.len(),
                more.iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let input = sample_shape(&data.name, data.elem_type, data.dims.as_deref())?;
    let output = match graph.graph_outputs() {
        [one] => one,
        outs => {
            return Err(Error::Arch(format!(
                "the ONNX graph has {} outputs; the trainer takes classifiers with one output \
                 of logits",
                outs.len()
            )));
        }
    };
    let classes = match output.dims.as_deref() {
        Some([_, Dim::Fixed(c)]) if *c > 0 => *c,
        _ => {
            return Err(Error::Arch(format!(
                "the ONNX graph's output `{}` is not declared as [batch, classes] with a fixed \
                 number of classes",
                output.name
            )));
        }
    };
    if data.name != INPUT && graph_mentions(graph, INPUT) {
        return Err(Error::Arch(format!(
            "the ONNX graph has a value named `{INPUT}` that is not its data input; rename it"
        )));
    }

    let nodes = graph.nodes()?;
    let mut used: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    used.insert(output.name.as_str());
    let opset = graph.opset().unwrap_or(1);
    let rename = |v: &str| -> String {
        if v == data.name {
            INPUT.to_string()
        } else {
            v.to_string()
        }
    };

    // Sequences are only split pieces read back one at a time: each `SequenceAt` of a
    // `SplitToSequence` becomes one operation on the split tensor.
    let mut sequences: HashMap<&str, &GraphNode> = HashMap::new();
    for node in &nodes {
        if node.op_type == "SplitToSequence"
            && node.is_standard()
            && let Some(out) = node.outputs.first()
        {
            sequences.insert(out.as_str(), node);
        }
    }
    for node in &nodes {
        let reads_sequence = node
            .inputs
            .iter()
            .any(|v| sequences.contains_key(v.as_str()));
        if reads_sequence && !(node.op_type == "SequenceAt" && node.is_standard()) {
            return Err(ops::unsupported(
                node,
                "reading a sequence other than with SequenceAt",
                "split with torch.split or torch.chunk and use the pieces directly",
            ));
        }
    }

    let mut net_nodes = Vec::new();
    // Initializers that are not parameters are constants, defined before everything else.
    for init in graph.initializers() {
        if !param_names.contains(init.name.as_str()) && used.contains(init.name.as_str()) {
            net_nodes.push(Node {
                op: Op::Onnx(Box::new(Imported {
                    op: OnnxOp::Constant(graph.initializer_value(&init.name)?),
                    inputs: Vec::new(),
                    node: format!("initializer `{}`", init.name),
                })),
                output: init.name.clone(),
            });
        }
    }
    for node in &nodes {
        if sequences.contains_key(node.outputs.first().map_or("", String::as_str)) {
            continue;
        }
        if let Some(split) = node.inputs.first().and_then(|s| sequences.get(s.as_str())) {
            let axis = match split.attribute("axis") {
                Some(modeconn_runtime::graph::AttrValue::Int(a)) => *a,
                _ => 0,
            };
            let keepdims = !matches!(
                split.attribute("keepdims"),
                Some(modeconn_runtime::graph::AttrValue::Int(0))
            );
            let at = |i: usize| split.inputs.get(i).map_or(String::new(), |v| rename(v));
            let position = node.inputs.get(1).map_or(String::new(), |v| rename(v));
            net_nodes.push(Node {
                op: Op::Onnx(Box::new(Imported {
                    op: OnnxOp::SplitAt { axis, keepdims },
                    inputs: vec![at(0), at(1), position],
                    node: describe(node),
                })),
                output: node.outputs.first().cloned().unwrap_or_default(),
            });
            continue;
        }
        let parsed = ops::parse(node, opset, &|v| used.contains(v))?;
        let inputs: Vec<String> = node.inputs.iter().map(|v| rename(v)).collect();
        for (op, out) in parsed.into_iter().zip(&node.outputs) {
            if out.is_empty() {
                continue;
            }
            net_nodes.push(Node {
                op: Op::Onnx(Box::new(Imported {
                    op,
                    inputs: inputs.clone(),
                    node: describe(node),
                })),
                output: out.clone(),
            });
        }
    }
    let out_name = rename(&output.name);
    if net_nodes.last().map(|n| n.output.as_str()) != Some(out_name.as_str()) {
        net_nodes.push(Node {
            op: Op::Onnx(Box::new(Imported {
                op: OnnxOp::Identity,
                inputs: vec![out_name.clone()],
                node: format!("graph output `{}`", output.name),
            })),
            output: format!("{}.output", output.name),
        });
    }
    check_defined(&net_nodes, &param_names)?;

    let kinds = param_kinds(&nodes);
    let shapes: HashMap<&str, &[i64]> = params
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let fan_in = |name: &str, rule: FanIn<'_>| -> i64 {
        let of = |shape: &[i64], rows: bool| {
            if rows {
                shape.first().copied().unwrap_or(1)
            } else {
                shape.iter().skip(1).product::<i64>()
            }
            .max(1)
        };
        match rule {
            FanIn::Rows => of(shapes.get(name).copied().unwrap_or(&[]), true),
            FanIn::Rest => of(shapes.get(name).copied().unwrap_or(&[]), false),
            // A bias takes the fan-in of its weight, as PyTorch initialises it.
            FanIn::Of(weight, rows) => of(shapes.get(weight).copied().unwrap_or(&[]), rows),
        }
    };
    let net_params = params
        .iter()
        .map(|(name, shape)| {
            let (kind, rule) = kinds
                .get(name.as_str())
                .copied()
                .unwrap_or((default_kind(shape), FanIn::Rest));
            Param {
                name: name.clone(),
                shape: shape.clone(),
                kind,
                fan_in: fan_in(name, rule),
            }
        })
        .collect();

    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let lifted = OnnxModel::parse(&graph.lift_to_inputs(&names)?)?;
    Ok(Net {
        arch: ARCH.to_string(),
        input,
        classes,
        params: net_params,
        nodes: net_nodes,
        source: Some(std::sync::Arc::new(Source {
            graph: lifted,
            input: data.name.clone(),
            output: output.name.clone(),
        })),
    })
}

/// One sample's shape from the data input's declaration: `[batch, ...]` with the batch
/// dynamic and every other dimension fixed.
fn sample_shape(name: &str, elem_type: i32, dims: Option<&[Dim]>) -> Result<Vec<i64>> {
    if elem_type != elem::FLOAT {
        return Err(Error::Arch(format!(
            "the ONNX graph's input `{name}` is {}, not FLOAT",
            elem::name(elem_type)
        )));
    }
    let dims = dims.ok_or_else(|| {
        Error::Arch(format!(
            "the ONNX graph's input `{name}` has no declared shape"
        ))
    })?;
    match dims.first() {
        Some(Dim::Symbolic(_) | Dim::Unknown) => {}
        Some(Dim::Fixed(n)) => {
            return Err(Error::Arch(format!(
                "the ONNX graph's input `{name}` has a fixed batch size of {n}; export with \
                 `dynamic_shapes` (e.g. dynamic_shapes={{\"x\": {{0: torch.export.Dim(\"batch\")}}}})"
            )));
        }
        None => {
            return Err(Error::Arch(format!(
                "the ONNX graph's input `{name}` is a scalar, not a batch"
            )));
        }
    }
    dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) if *v > 0 => Ok(*v),
            other => Err(Error::Arch(format!(
                "the ONNX graph's input `{name}` has a dimension {other:?} after the batch; \
                 the trainer needs every sample dimension fixed"
            ))),
        })
        .collect()
}

fn graph_mentions(graph: &OnnxModel, name: &str) -> bool {
    graph.initializer(name).is_some()
        || graph.graph_input(name).is_some()
        || graph.nodes().is_ok_and(|nodes| {
            nodes
                .iter()
                .any(|n| n.outputs.iter().chain(&n.inputs).any(|v| v == name))
        })
}

/// Every value read is the input, a parameter or defined by an earlier node.
fn check_defined(nodes: &[Node], params: &HashSet<&str>) -> Result<()> {
    let mut defined: HashSet<&str> = params.iter().copied().collect();
    defined.insert(INPUT);
    for node in nodes {
        if let Op::Onnx(imp) = &node.op
            && let Some(missing) = imp
                .inputs
                .iter()
                .find(|v| !v.is_empty() && !defined.contains(v.as_str()))
        {
            return Err(Error::Arch(format!(
                "{} reads `{missing}`, which no earlier node, initializer or input defines \
                 (the graph is not in topological order, or the value comes from a subgraph)",
                imp.node
            )));
        }
        defined.insert(node.output.as_str());
    }
    Ok(())
}

fn default_kind(shape: &[i64]) -> ParamKind {
    if shape.len() >= 2 {
        ParamKind::Weight
    } else {
        ParamKind::Bias
    }
}

/// Where a parameter's fan-in comes from.
#[derive(Debug, Clone, Copy)]
enum FanIn<'a> {
    /// Its first dimension (a `MatMul` right-hand side, an untransposed `Gemm` B).
    Rows,
    /// The product of its other dimensions (convolution and `[out, in]` linear weights).
    Rest,
    /// That of this weight (a bias), by its rows or not.
    Of(&'a str, bool),
}

/// What each parameter is, from where the graph uses it, and where its fan-in comes from.
fn param_kinds(nodes: &[GraphNode]) -> HashMap<&str, (ParamKind, FanIn<'_>)> {
    let mut kinds = HashMap::new();
    for node in nodes {
        let at = |i: usize| {
            node.inputs
                .get(i)
                .map(String::as_str)
                .filter(|s| !s.is_empty())
        };
        match node.op_type.as_str() {
            "BatchNormalization" => {
                let roles = [
                    ParamKind::BnWeight,
                    ParamKind::BnBias,
                    ParamKind::RunningMean,
                    ParamKind::RunningVar,
                ];
                for (i, kind) in roles.into_iter().enumerate() {
                    if let Some(v) = at(i + 1) {
                        kinds.insert(v, (kind, FanIn::Rest));
                    }
                }
            }
            "LayerNormalization" => {
                if let Some(v) = at(1) {
                    kinds.insert(v, (ParamKind::BnWeight, FanIn::Rest));
                }
                if let Some(v) = at(2) {
                    kinds.insert(v, (ParamKind::BnBias, FanIn::Rest));
                }
            }
            "Conv" | "ConvTranspose" | "Gemm" => {
                let rows = node.op_type == "Gemm"
                    && !matches!(
                        node.attribute("transB"),
                        Some(modeconn_runtime::graph::AttrValue::Int(1))
                    );
                if let Some(w) = at(1) {
                    kinds.insert(
                        w,
                        (
                            ParamKind::Weight,
                            if rows { FanIn::Rows } else { FanIn::Rest },
                        ),
                    );
                    if let Some(b) = at(2) {
                        kinds.insert(b, (ParamKind::Bias, FanIn::Of(w, rows)));
                    }
                }
            }
            "MatMul" => {
                if let Some(v) = at(1) {
                    kinds.insert(v, (ParamKind::Weight, FanIn::Rows));
                }
            }
            _ => {}
        }
    }
    kinds
}

/// The parameters of a bundle's graph: its tensors that the graph takes as inputs, with the
/// shape of one slice (control point or member).
pub fn bundle_params(
    graph: &OnnxModel,
    tensors: impl IntoIterator<Item = (String, Vec<i64>)>,
) -> Vec<(String, Vec<i64>)> {
    let order: BTreeMap<String, Vec<i64>> = tensors.into_iter().collect();
    graph
        .graph_inputs()
        .iter()
        .filter_map(|i| order.get(&i.name).map(|s| (i.name.clone(), s.clone())))
        .collect()
}

/// The values of `net`'s parameters held in `graph`'s initializers (an ONNX file as exported,
/// its weights inside), as `f32` tensors on `device`.
pub fn initializer_params(graph: &OnnxModel, net: &Net, device: tch::Device) -> Result<Params> {
    net.params
        .iter()
        .map(|p| {
            let values = graph.initializer_f32(&p.name)?;
            let t = tch::Tensor::f_from_slice(&values)?
                .f_reshape(p.shape.as_slice())?
                .f_to_device(device)?;
            Ok((p.name.clone(), t))
        })
        .collect()
}
