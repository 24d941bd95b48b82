//! Tensors that keep their data outside the model: a `TensorProto` with `data_location`
//! `EXTERNAL` or `external_data` entries, wherever one can stand (initializers and sparse
//! initializers of the graph and of every subgraph, tensor attributes of nodes, nodes of
//! functions, training graphs). ONNX Runtime would read such data from a file beside the
//! model, so a bundle, which must be self-contained, refuses them.

use super::model::OnnxModel;
use super::proto::{
    attribute, function, graph as graph_f, model as model_f, sparse_tensor, tensor, training_info,
};
use super::wire::{Field, parse_message};
use crate::Result;

/// How deep graphs may nest in attributes before the walk gives up (an error, not a stack
/// overflow).
const MAX_DEPTH: usize = 64;

/// A tensor that keeps its data outside the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTensor {
    /// Its name (may be empty: attribute tensors need none).
    pub name: String,
    /// The file its `external_data` names (`location`), when it names one.
    pub location: Option<String>,
}

impl OnnxModel {
    /// The first tensor of the model that keeps its data in an external file, if any.
    pub fn first_external_tensor(&self) -> Result<Option<ExternalTensor>> {
        let model = parse_message(&self.bytes, 0, "ModelProto")?;
        for f in &model {
            let found = match f.number {
                model_f::GRAPH => in_graph(f, 0)?,
                model_f::FUNCTIONS => in_nodes(&f.message("FunctionProto")?, function::NODE, 0)?,
                model_f::TRAINING_INFO => {
                    let info = f.message("TrainingInfoProto")?;
                    first(&info, |g| match g.number {
                        training_info::INITIALIZATION | training_info::ALGORITHM => in_graph(g, 0),
                        _ => Ok(None),
                    })?
                }
                _ => None,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// The first of `fields` for which `f` finds something.
fn first(
    fields: &[Field<'_>],
    mut f: impl FnMut(&Field<'_>) -> Result<Option<ExternalTensor>>,
) -> Result<Option<ExternalTensor>> {
    for field in fields {
        if let Some(t) = f(field)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

fn in_graph(graph: &Field<'_>, depth: usize) -> Result<Option<ExternalTensor>> {
    if depth > MAX_DEPTH {
        return Err(crate::Error::onnx(
            "GraphProto",
            format!("subgraphs nest more than {MAX_DEPTH} deep"),
        ));
    }
    let fields = graph.message("GraphProto")?;
    if let Some(t) = first(&fields, |f| match f.number {
        graph_f::INITIALIZER => external(f),
        graph_f::SPARSE_INITIALIZER => in_sparse(f),
        _ => Ok(None),
    })? {
        return Ok(Some(t));
    }
    in_nodes(&fields, graph_f::NODE, depth)
}

/// The nodes among `fields` (field `number`), and their attributes.
fn in_nodes(fields: &[Field<'_>], number: u32, depth: usize) -> Result<Option<ExternalTensor>> {
    first(fields, |n| {
        if n.number != number {
            return Ok(None);
        }
        let node = n.message("NodeProto")?;
        first(&node, |a| {
            if a.number != super::proto::node::ATTRIBUTE {
                return Ok(None);
            }
            let attr = a.message("AttributeProto")?;
            first(&attr, |v| match v.number {
                attribute::T | attribute::TENSORS => external(v),
                attribute::SPARSE_TENSOR | attribute::SPARSE_TENSORS => in_sparse(v),
                attribute::G | attribute::GRAPHS => in_graph(v, depth + 1),
                _ => Ok(None),
            })
        })
    })
}

fn in_sparse(sparse: &Field<'_>) -> Result<Option<ExternalTensor>> {
    let fields = sparse.message("SparseTensorProto")?;
    first(&fields, |f| match f.number {
        sparse_tensor::VALUES | sparse_tensor::INDICES => external(f),
        _ => Ok(None),
    })
}

/// The tensor in `field` when it keeps its data outside the model.
fn external(field: &Field<'_>) -> Result<Option<ExternalTensor>> {
    const WHAT: &str = "TensorProto";
    let fields = field.message(WHAT)?;
    let mut name = String::new();
    let mut location = None;
    let mut outside = false;
    for f in &fields {
        match f.number {
            tensor::NAME => name = f.string(WHAT)?.to_string(),
            tensor::DATA_LOCATION => outside |= f.varint(WHAT)? == tensor::LOCATION_EXTERNAL,
            tensor::EXTERNAL_DATA => {
                outside = true;
                let entry = f.message("StringStringEntryProto")?;
                let key = entry.iter().find(|e| e.number == super::proto::entry::KEY);
                let value = entry
                    .iter()
                    .find(|e| e.number == super::proto::entry::VALUE);
                if let (Some(k), Some(v)) = (key, value)
                    && k.string("StringStringEntryProto")? == "location"
                {
                    location = Some(v.string("StringStringEntryProto")?.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(outside.then_some(ExternalTensor { name, location }))
}
