//! Every rule of the format on a bundle's metadata, its tensors and its ONNX graph, in one
//! place: the loader ([`Bundle::open`](super::Bundle::open), `from_bytes`) and the writer
//! ([`BundleWriter`](super::BundleWriter)) both run [`bundle`], so no writer can produce a
//! bundle the loader refuses.

use std::collections::{HashMap, HashSet};

use super::meta::{Kind, Metadata, keys};
use super::{Role, TensorEntry};
use crate::graph::{Dim, OnnxModel, elem};
use crate::{Error, Result};

/// What the safetensors header says about one tensor, before checking.
pub(crate) struct RawTensor {
    pub name: String,
    pub dtype: String,
    pub is_f32: bool,
    pub shape: Vec<usize>,
    pub range: (usize, usize),
}

/// Checks a bundle against every rule of format version 1: the metadata map key by key
/// ([`Metadata::from_map`]), then the graph (`graph` gives its serialized bytes, or the error
/// of a file whose graph tensor is missing or of the wrong type) and the tensors against the
/// metadata and each other ([`check`]). Returns the metadata, the parsed graph and the
/// varying tensors with their roles.
///
/// The loader gives the map, graph and tensor declarations it read from a file; the writer
/// gives those it is about to write.
pub(crate) fn bundle<'g>(
    map: &HashMap<String, String>,
    graph: impl FnOnce() -> Result<&'g [u8]>,
    raw: Vec<RawTensor>,
) -> Result<(Metadata, OnnxModel, Vec<TensorEntry>)> {
    let meta = Metadata::from_map(map)?;
    let graph = OnnxModel::parse(graph()?)?;
    let tensors = check(&meta, &graph, raw)?;
    Ok((meta, graph, tensors))
}

/// Checks every rule of format version 1 that involves more than one key and returns the
/// varying tensors with their roles.
fn check(meta: &Metadata, graph: &OnnxModel, raw: Vec<RawTensor>) -> Result<Vec<TensorEntry>> {
    check_graph(meta, graph)?;
    let grid_names: HashSet<&str> = meta.grid_tensors.iter().map(String::as_str).collect();
    let grid_len = meta.bn_grid.as_ref().map_or(0, Vec::len);
    let mut entries = Vec::with_capacity(raw.len());
    for t in raw {
        if !t.is_f32 {
            return Err(Error::DType {
                tensor: t.name,
                expected: "F32".into(),
                found: t.dtype,
            });
        }
        let role = if grid_names.contains(t.name.as_str()) {
            Role::Grid
        } else {
            Role::Points
        };
        let (expected, what) = match (role, meta.kind) {
            (Role::Grid, _) => (grid_len, "bn_grid points"),
            (Role::Points, Kind::Curve) => (meta.points, "control points"),
            (Role::Points, Kind::Snapshots) => (meta.points, "members"),
        };
        let found = t.shape.first().copied().unwrap_or(0);
        if t.shape.is_empty() || found != expected {
            return Err(Error::LeadingAxis {
                tensor: t.name,
                expected,
                found,
                what,
            });
        }
        check_against_graph(graph, &t.name, &t.shape[1..])?;
        entries.push(TensorEntry {
            name: t.name,
            shape: t.shape,
            role,
            range: t.range,
        });
    }
    for name in &meta.grid_tensors {
        if !entries.iter().any(|e| &e.name == name) {
            return Err(Error::MissingTensor {
                tensor: name.clone(),
                reason: format!("it is listed in `{}`", keys::GRID_TENSORS),
            });
        }
    }
    // Every input the graph needs must be fed: the data input or a tensor of the bundle.
    for input in graph.data_inputs() {
        if input.name != meta.input.name && !entries.iter().any(|e| e.name == input.name) {
            return Err(Error::onnx(
                format!("graph input `{}`", input.name),
                format!(
                    "would never be fed: it is neither `{}` nor a tensor of the bundle",
                    keys::INPUT
                ),
            ));
        }
    }
    Ok(entries)
}

fn check_graph(meta: &Metadata, graph: &OnnxModel) -> Result<()> {
    // ONNX Runtime would read external data from a file beside the bundle: a bundle must
    // carry all its data (the runtime's own stacks are added after this check).
    if let Some(t) = graph.first_external_tensor()? {
        let name = if t.name.is_empty() {
            "a tensor".to_string()
        } else {
            format!("tensor `{}`", t.name)
        };
        let file = t.location.map_or_else(String::new, |l| format!(" (`{l}`)"));
        return Err(Error::onnx(
            name,
            format!(
                "keeps its data in an external file{file}; a bundle must carry all its data \
                 (save the model with its data inside, e.g. onnx.save_model(..., \
                 save_as_external_data=False))"
            ),
        ));
    }
    match graph.opset() {
        Some(v) if v >= 13 => {}
        Some(v) => {
            return Err(Error::onnx(
                format!("opset {v}"),
                "is too old: bundles need opset 13 or newer",
            ));
        }
        None => {
            return Err(Error::onnx("the model", "imports no default-domain opset"));
        }
    }
    let input = graph
        .data_inputs()
        .into_iter()
        .find(|i| i.name == meta.input.name)
        .ok_or_else(|| Error::Metadata {
            key: keys::INPUT.into(),
            reason: format!(
                "the graph has no data input named `{}` (its inputs: {})",
                meta.input.name,
                names(graph.data_inputs().iter().map(|i| i.name.as_str()))
            ),
        })?;
    if input.elem_type != elem::FLOAT {
        return Err(Error::DType {
            tensor: input.name.clone(),
            expected: "float32".into(),
            found: format!("ONNX element type {}", input.elem_type),
        });
    }
    if let Some(dims) = &input.dims {
        fixed_batch(&format!("graph input `{}`", input.name), dims)?;
        let agrees = dims.len() == meta.input.shape.len()
            && dims
                .iter()
                .zip(&meta.input.shape)
                .skip(1)
                .all(|(d, &s)| !matches!(d, Dim::Fixed(v) if *v != s));
        if !agrees {
            return Err(Error::ShapeMismatch {
                tensor: format!("{} (graph input vs {})", input.name, keys::INPUT),
                expected: dims_i64(dims),
                found: meta.input.shape.clone(),
            });
        }
    }
    let output = graph
        .graph_outputs()
        .iter()
        .find(|o| o.name == meta.output.name)
        .ok_or_else(|| Error::Metadata {
            key: keys::OUTPUT.into(),
            reason: format!(
                "the graph has no output named `{}` (its outputs: {})",
                meta.output.name,
                names(graph.graph_outputs().iter().map(|o| o.name.as_str()))
            ),
        })?;
    if let Some(dims) = &output.dims {
        fixed_batch(&format!("graph output `{}`", output.name), dims)?;
        let classes = meta.output.classes as i64;
        let fits = dims.len() == 2 && !matches!(dims[1], Dim::Fixed(c) if c != classes);
        if !fits {
            return Err(Error::ShapeMismatch {
                tensor: format!("{} (graph output vs {})", output.name, keys::OUTPUT),
                expected: vec![-1, classes],
                found: dims_i64(dims),
            });
        }
    }
    Ok(())
}

/// How to export a batch axis that stays free, for messages.
pub(crate) const DYNAMIC_BATCH_HINT: &str = "export it with a dynamic batch axis, e.g. \
     torch.onnx.export(model, (x,), path, dynamo=True, optimize=False, \
     dynamic_shapes={\"x\": {0: torch.export.Dim(\"batch\")}}), where \"x\" is the name of \
     forward's argument";

/// The batch axis (the first) of the graph's data input and of its output must be free:
/// `modeconn.input` says `-1`, and every caller sends batches of any size. A graph exported
/// without dynamic shapes fixes it at the size it was traced with, and ONNX Runtime refuses
/// every other.
fn fixed_batch(part: &str, dims: &[Dim]) -> Result<()> {
    match dims.first() {
        Some(Dim::Fixed(n)) => Err(Error::onnx(
            part,
            format!(
                "has a fixed batch size of {n}, so it could run no other batch size; \
                 {DYNAMIC_BATCH_HINT}"
            ),
        )),
        _ => Ok(()),
    }
}

/// A varying tensor must be an initializer or graph input of the same name, with the slice
/// shape.
fn check_against_graph(graph: &OnnxModel, name: &str, slice: &[usize]) -> Result<()> {
    let found: Vec<i64> = slice.iter().map(|&d| d as i64).collect();
    if let Some(init) = graph.initializer(name) {
        if init.data_type != elem::FLOAT {
            return Err(Error::DType {
                tensor: name.into(),
                expected: "float32 (graph initializer)".into(),
                found: format!("ONNX element type {}", init.data_type),
            });
        }
        if init.dims != found {
            return Err(Error::ShapeMismatch {
                tensor: name.into(),
                expected: init.dims.clone(),
                found,
            });
        }
        return Ok(());
    }
    let input = graph
        .graph_input(name)
        .ok_or_else(|| Error::MissingGraphInput {
            tensor: name.into(),
        })?;
    if input.elem_type != elem::FLOAT {
        return Err(Error::DType {
            tensor: name.into(),
            expected: "float32 (graph input)".into(),
            found: format!("ONNX element type {}", input.elem_type),
        });
    }
    if let Some(dims) = &input.dims {
        let agrees = dims.len() == slice.len()
            && dims
                .iter()
                .zip(&found)
                .all(|(d, &s)| !matches!(d, Dim::Fixed(v) if *v != s));
        if !agrees {
            return Err(Error::ShapeMismatch {
                tensor: name.into(),
                expected: dims_i64(dims),
                found,
            });
        }
    }
    Ok(())
}

fn dims_i64(dims: &[Dim]) -> Vec<i64> {
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(v) => *v,
            _ => -1,
        })
        .collect()
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = it.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
