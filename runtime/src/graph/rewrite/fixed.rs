//! Fixed weights baked into a model, and initializers turned into graph inputs.

use std::collections::{HashMap, HashSet};

use super::super::elem;
use super::super::encode;
use super::super::model::{OnnxModel, element_count, layout, tensor_name, value_info_name};
use super::super::proto::graph as graph_f;
use super::super::spec::DimSpec;
use super::super::wire::put_len_prefix;
use super::{Chunk, assemble, check_target, graph_field, rebuild_graph};
use crate::{Error, Result};

/// A tensor to bake into a model as a `FLOAT` initializer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamedTensor<'a> {
    /// The name of the initializer or graph input it replaces.
    pub name: &'a str,
    /// Its shape.
    pub dims: &'a [i64],
    /// Its values, row-major; `product(dims)` of them.
    pub data: &'a [f32],
}

impl OnnxModel {
    /// Bakes tensors into the model as `FLOAT` initializers with `raw_data`, for a standalone
    /// model with fixed weights.
    ///
    /// Each tensor replaces the initializer of its name in place (a later duplicate of that
    /// initializer is dropped), or is appended after the last initializer when there is none;
    /// a graph input of its name is removed. The float data is written straight into the
    /// output. Every other byte of the model is kept. An empty `tensors` returns the bytes
    /// unchanged.
    ///
    /// Errors: [`Error::MissingGraphInput`] when the graph has neither an initializer nor an
    /// input of a tensor's name; [`Error::InvalidArgument`] when a name is empty or repeated, a
    /// dimension is negative or `data.len()` is not the product of `dims`; [`Error::DType`] or
    /// [`Error::ShapeMismatch`] when the existing initializer or input is not `FLOAT` or is
    /// declared with another shape.
    pub fn with_tensors(&self, tensors: &[NamedTensor<'_>]) -> Result<Vec<u8>> {
        if tensors.is_empty() {
            return Ok(self.bytes.clone());
        }
        let mut by_name: HashMap<&str, &NamedTensor<'_>> = HashMap::new();
        for t in tensors {
            if t.name.is_empty() {
                return Err(Error::invalid("a tensor", "has an empty name"));
            }
            if by_name.insert(t.name, t).is_some() {
                return Err(Error::invalid(
                    format!("tensor `{}`", t.name),
                    "is given twice",
                ));
            }
            let count = element_count(t.dims).ok_or_else(|| {
                Error::invalid(
                    format!("tensor `{}`", t.name),
                    format!("has an invalid shape {:?}", t.dims),
                )
            })?;
            if t.data.len() != count {
                return Err(Error::invalid(
                    format!("tensor `{}`", t.name),
                    format!(
                        "has {} values for shape {:?}, which needs {count}",
                        t.data.len(),
                        t.dims
                    ),
                ));
            }
            check_target(self, t.name, t.dims)?;
        }

        let layout = layout(&self.bytes)?;
        let mut placed = HashSet::new();
        let appended = tensors
            .iter()
            .filter(|t| self.initializer(t.name).is_none())
            .flat_map(|t| initializer_chunks(t))
            .collect();
        let graph = rebuild_graph(
            &layout.graph,
            |f, out| match f.number {
                graph_f::INITIALIZER => {
                    let name = tensor_name(f)?;
                    match by_name.get(name) {
                        None => Ok(true),
                        Some(t) => {
                            if placed.insert(name) {
                                out.extend(initializer_chunks(t));
                            }
                            Ok(false)
                        }
                    }
                }
                graph_f::INPUT => Ok(!by_name.contains_key(value_info_name(f)?)),
                _ => Ok(true),
            },
            appended,
            Vec::new(),
        )?;
        Ok(assemble(&layout, &graph))
    }
}

impl OnnxModel {
    /// Turns `FLOAT` initializers of the main graph into graph inputs, so that their values
    /// come from outside the model (a bundle stores them once, stacked, instead of twice).
    ///
    /// For each name that is a `FLOAT` initializer, every initializer field of that name is
    /// removed and, unless the graph already declares an input of that name, an input is
    /// declared with the initializer's element type and its dimensions as fixed sizes (a scalar
    /// gets an empty shape). New inputs follow the last existing input, in the order of
    /// `names`. A name that is a graph input and not an initializer is left alone, and a name
    /// given twice counts once, so lifting a lifted model returns its bytes unchanged. Every
    /// other byte of the model is kept; when nothing is lifted the bytes are returned as they
    /// are.
    ///
    /// Errors: [`Error::MissingGraphInput`] when the graph has neither an initializer nor an
    /// input of a name; [`Error::DType`] when the initializer is not `FLOAT`; [`Error::Onnx`]
    /// when it has a negative dimension.
    pub fn lift_to_inputs(&self, names: &[&str]) -> Result<Vec<u8>> {
        let mut lifted: HashSet<&str> = HashSet::new();
        let mut new_inputs = Vec::new();
        for &name in names {
            let Some(init) = self.initializer(name) else {
                if self.graph_input(name).is_none() {
                    return Err(Error::MissingGraphInput {
                        tensor: name.to_string(),
                    });
                }
                continue;
            };
            if init.data_type != elem::FLOAT {
                return Err(Error::DType {
                    tensor: name.to_string(),
                    expected: elem::name(elem::FLOAT).to_string(),
                    found: elem::name(init.data_type).to_string(),
                });
            }
            if element_count(&init.dims).is_none() {
                return Err(Error::onnx(
                    format!("initializer `{name}`"),
                    format!("has an invalid shape {:?}", init.dims),
                ));
            }
            if !lifted.insert(name) || self.graph_input(name).is_some() {
                continue;
            }
            let dims: Vec<DimSpec> = init.dims.iter().map(|&d| DimSpec::Fixed(d)).collect();
            new_inputs.extend(graph_field(graph_f::INPUT, |m| {
                encode::value_info(m, name, init.data_type, &dims)
            }));
        }
        if lifted.is_empty() {
            return Ok(self.bytes.clone());
        }
        let layout = layout(&self.bytes)?;
        let graph = rebuild_graph(
            &layout.graph,
            |f, _| match f.number {
                graph_f::INITIALIZER => Ok(!lifted.contains(tensor_name(f)?)),
                _ => Ok(true),
            },
            Vec::new(),
            vec![Chunk::Owned(new_inputs)],
        )?;
        Ok(assemble(&layout, &graph))
    }
}

/// A graph `initializer` field holding `t` as `raw_data`: the encoded header, then the data
/// itself (written later, straight into the output).
fn initializer_chunks<'a>(t: &NamedTensor<'a>) -> [Chunk<'a>; 2] {
    let raw_len = 4 * t.data.len();
    let mut prefix = Vec::new();
    encode::tensor_prefix(&mut prefix, t.name, elem::FLOAT, t.dims, raw_len);
    let mut header = Vec::with_capacity(prefix.len() + 12);
    put_len_prefix(&mut header, graph_f::INITIALIZER, prefix.len() + raw_len);
    header.extend_from_slice(&prefix);
    [Chunk::Owned(header), Chunk::F32(t.data)]
}
