//! The rewrites the runtime needs: varying tensors computed inside the graph
//! ([`OnnxModel::rewrite_dynamic`], in `dynamic.rs`), fixed weights baked in
//! ([`OnnxModel::with_tensors`]) and initializers turned into graph inputs
//! ([`OnnxModel::lift_to_inputs`]), both in `fixed.rs`.
//!
//! All work on the wire: the model's and the graph's fields are re-emitted verbatim, in order,
//! except the ones a rewrite removes; new fields are inserted beside their kin (nodes first,
//! initializers after the last initializer, inputs after the last input). This file holds what
//! they share: the pieces of output and how a graph is reassembled from them, and the checks
//! of the tensor a rewrite replaces.

mod dynamic;
mod fixed;

pub use dynamic::{Mix, MixVia, STACK_LOCATION, StackSource};
pub use fixed::NamedTensor;

use super::elem;
use super::model::{Dim, Layout, OnnxModel};
use super::proto::{graph as graph_f, model as model_f};
use super::wire::{Field, put_len_prefix, put_message_field, tag_len, varint_len};
use crate::{Error, Result};

/// A piece of output: borrowed from the input model, freshly encoded, or float data written
/// straight into the output.
enum Chunk<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    F32(&'a [f32]),
}

/// The new graph body, as a list of pieces whose total length is known before writing.
#[derive(Default)]
struct Chunks<'a>(Vec<Chunk<'a>>);

impl<'a> Chunks<'a> {
    fn push(&mut self, chunk: Chunk<'a>) {
        self.0.push(chunk);
    }

    fn extend(&mut self, chunks: impl IntoIterator<Item = Chunk<'a>>) {
        self.0.extend(chunks);
    }

    fn len(&self) -> usize {
        self.0
            .iter()
            .map(|c| match c {
                Chunk::Borrowed(b) => b.len(),
                Chunk::Owned(b) => b.len(),
                Chunk::F32(d) => 4 * d.len(),
            })
            .sum()
    }

    fn write(&self, out: &mut Vec<u8>) {
        for c in &self.0 {
            match c {
                Chunk::Borrowed(b) => out.extend_from_slice(b),
                Chunk::Owned(b) => out.extend_from_slice(b),
                Chunk::F32(d) => {
                    for v in *d {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// The model with its graph field replaced by `graph`; every other field verbatim. The output
/// is allocated once, at its final size.
fn assemble(layout: &Layout<'_>, graph: &Chunks<'_>) -> Vec<u8> {
    let graph_len = graph.len();
    let graph_field_len = tag_len(model_f::GRAPH) + varint_len(graph_len as u64) + graph_len;
    let total: usize = layout
        .model
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == layout.graph_index {
                graph_field_len
            } else {
                f.raw.len()
            }
        })
        .sum();
    let mut out = Vec::with_capacity(total);
    for (i, f) in layout.model.iter().enumerate() {
        if i == layout.graph_index {
            put_len_prefix(&mut out, model_f::GRAPH, graph_len);
            graph.write(&mut out);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    out
}

/// Copies the graph's fields in order, keeping those for which `keep` says `true` (`keep` may
/// also push replacement chunks in place of a field it drops), and inserts `new_initializers`
/// after the last initializer field and `new_inputs` after the last input field (at the end
/// when there is none).
fn rebuild_graph<'a>(
    fields: &[Field<'a>],
    mut keep: impl FnMut(&Field<'a>, &mut Chunks<'a>) -> Result<bool>,
    new_initializers: Vec<Chunk<'a>>,
    new_inputs: Vec<Chunk<'a>>,
) -> Result<Chunks<'a>> {
    let last_init = fields
        .iter()
        .rposition(|f| f.number == graph_f::INITIALIZER);
    let last_input = fields.iter().rposition(|f| f.number == graph_f::INPUT);
    let mut new_initializers = Some(new_initializers);
    let mut new_inputs = Some(new_inputs);
    let mut out = Chunks::default();
    for (i, f) in fields.iter().enumerate() {
        if keep(f, &mut out)? {
            out.push(Chunk::Borrowed(f.raw));
        }
        if Some(i) == last_init {
            out.extend(new_initializers.take().into_iter().flatten());
        }
        if Some(i) == last_input {
            out.extend(new_inputs.take().into_iter().flatten());
        }
    }
    out.extend(new_initializers.into_iter().flatten());
    out.extend(new_inputs.into_iter().flatten());
    Ok(out)
}

/// Checks that the graph has an initializer or input called `name` that can hold a `FLOAT`
/// tensor of shape `dims`.
fn check_target(model: &OnnxModel, name: &str, dims: &[i64]) -> Result<()> {
    let init = model.initializer(name);
    let input = model.graph_input(name);
    if init.is_none() && input.is_none() {
        return Err(Error::MissingGraphInput {
            tensor: name.to_string(),
        });
    }
    let dtype = |found: i32| Error::DType {
        tensor: name.to_string(),
        expected: elem::name(elem::FLOAT).to_string(),
        found: elem::name(found).to_string(),
    };
    if let Some(init) = init {
        if init.data_type != elem::FLOAT {
            return Err(dtype(init.data_type));
        }
        if init.dims != dims {
            return Err(Error::ShapeMismatch {
                tensor: name.to_string(),
                expected: init.dims.clone(),
                found: dims.to_vec(),
            });
        }
    }
    if let Some(input) = input {
        if input.elem_type != elem::FLOAT && input.elem_type != elem::UNDEFINED {
            return Err(dtype(input.elem_type));
        }
        if let Some(declared) = &input.dims {
            let agrees = declared.len() == dims.len()
                && declared.iter().zip(dims).all(|(d, &n)| match d {
                    Dim::Fixed(v) => *v == n,
                    Dim::Symbolic(_) | Dim::Unknown => true,
                });
            if !agrees {
                return Err(Error::ShapeMismatch {
                    tensor: name.to_string(),
                    expected: declared
                        .iter()
                        .map(|d| if let Dim::Fixed(v) = d { *v } else { -1 })
                        .collect(),
                    found: dims.to_vec(),
                });
            }
        }
    }
    Ok(())
}

fn to_i64(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(what, format!("has a size {v} too large")))
}

/// A graph field holding an encoded message.
fn graph_field(number: u32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    put_message_field(&mut out, number, body);
    out
}
