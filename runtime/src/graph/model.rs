//! Decoding a `ModelProto`: the summary the runtime needs, and the wire-level layout the
//! rewrites work on.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use super::elem;
use super::proto::{
    dimension, graph as graph_f, model as model_f, node as node_f, opset as opset_f, shape,
    sparse_tensor, tensor, tensor_type, type_proto, value_info as value_info_f,
};
use super::wire::{Field, parse_message};
use crate::{Error, Result};

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Fixed(i64),
    /// A named size (`dim_param`), e.g. `"batch"`.
    Symbolic(String),
    /// A dimension with neither a value nor a name.
    Unknown,
}

/// A declared graph input or output (`ValueInfoProto`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Its element type (see [`elem`]); [`elem::UNDEFINED`] when not given or when the value is
    /// not a tensor (a sequence, map or optional).
    pub elem_type: i32,
    /// Its shape; `None` when no shape is given (an empty list is a scalar).
    pub dims: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The shape when every dimension is fixed.
    pub fn fixed_dims(&self) -> Option<Vec<i64>> {
        self.dims
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => Some(*v),
                _ => None,
            })
            .collect()
    }
}

/// A main-graph initializer (`TensorProto`), without its data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InitializerInfo {
    /// The tensor's name.
    pub name: String,
    /// Its element type (see [`elem`]).
    pub data_type: i32,
    /// Its shape (empty for a scalar).
    pub dims: Vec<i64>,
}

/// An ONNX model: its serialized bytes and a summary of its main graph.
///
/// Decoding works on the protobuf wire format directly and reads only what it needs: the IR
/// version, operator set imports, and the main graph's nodes, initializers, inputs, outputs and
/// value-info names. Everything else (functions, subgraphs, metadata, unknown fields) is never
/// interpreted, and the rewrites ([`rewrite_dynamic`](Self::rewrite_dynamic),
/// [`with_tensors`](Self::with_tensors), [`lift_to_inputs`](Self::lift_to_inputs)) copy it
/// byte for byte.
#[derive(Clone, PartialEq)]
pub struct OnnxModel {
    pub(super) bytes: Vec<u8>,
    pub(super) ir_version: i64,
    pub(super) opset: Option<i64>,
    pub(super) inputs: Vec<ValueInfo>,
    pub(super) outputs: Vec<ValueInfo>,
    pub(super) initializers: Vec<InitializerInfo>,
    /// Where the body of each initializer's `TensorProto` lies in `bytes`.
    pub(super) initializer_spans: Vec<Range<usize>>,
    /// Names of the main graph's sparse initializers.
    pub(super) sparse_initializers: Vec<String>,
    pub(super) bn_statistics: Vec<String>,
    /// Every value name the main graph mentions (node inputs and outputs, initializers, graph
    /// inputs, outputs and value infos).
    pub(super) value_names: HashSet<String>,
    /// Every node name of the main graph.
    pub(super) node_names: HashSet<String>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("ir_version", &self.ir_version)
            .field("opset", &self.opset)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("initializers", &self.initializers)
            .finish_non_exhaustive()
    }
}

/// A model's top-level fields and its graph's fields, as read from the wire.
pub(super) struct Layout<'a> {
    /// The `ModelProto` fields in order.
    pub(super) model: Vec<Field<'a>>,
    /// The position of the (single) `graph` field in `model`.
    pub(super) graph_index: usize,
    /// The `GraphProto` fields in order.
    pub(super) graph: Vec<Field<'a>>,
}

/// Reads a model's top level and its graph's top level.
pub(super) fn layout(bytes: &[u8]) -> Result<Layout<'_>> {
    if bytes.is_empty() {
        return Err(Error::onnx("ModelProto", "is empty (0 bytes)"));
    }
    let model = parse_message(bytes, 0, "ModelProto")?;
    let mut graphs = model
        .iter()
        .enumerate()
        .filter(|(_, f)| f.number == model_f::GRAPH);
    let (graph_index, graph_field) = graphs
        .next()
        .ok_or_else(|| Error::onnx("ModelProto", "has no graph (field 7)"))?;
    if let Some((_, second)) = graphs.next() {
        return Err(Error::Onnx {
            part: "ModelProto".into(),
            offset: Some(second.offset),
            reason: "a second graph field (7); merging graphs is not supported".into(),
        });
    }
    let body = graph_field.bytes("ModelProto")?;
    let graph = parse_message(body, graph_field.payload_offset(), "GraphProto")?;
    Ok(Layout {
        model,
        graph_index,
        graph,
    })
}

/// The last value of string field `number` among `fields` ("" when absent), as protobuf reads
/// a singular field that occurs more than once.
fn last_string<'a>(fields: &[Field<'a>], number: u32, what: &str) -> Result<&'a str> {
    let mut value = "";
    for f in fields.iter().filter(|f| f.number == number) {
        value = f.string(what)?;
    }
    Ok(value)
}

/// The name of the `TensorProto` held by a graph field.
pub(super) fn tensor_name<'a>(field: &Field<'a>) -> Result<&'a str> {
    let fields = field.message("TensorProto")?;
    last_string(&fields, tensor::NAME, "TensorProto")
}

/// The name of the `ValueInfoProto` held by a graph field.
pub(super) fn value_info_name<'a>(field: &Field<'a>) -> Result<&'a str> {
    let fields = field.message("ValueInfoProto")?;
    last_string(&fields, value_info_f::NAME, "ValueInfoProto")
}

/// The number of elements of a tensor of shape `dims`; `None` for a negative dimension or
/// overflow.
pub(super) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

fn decode_initializer(field: &Field<'_>) -> Result<(InitializerInfo, Range<usize>)> {
    const WHAT: &str = "TensorProto";
    let body = field.bytes(WHAT)?;
    let start = field.payload_offset();
    let fields = parse_message(body, start, WHAT)?;
    let mut data_type = elem::UNDEFINED;
    let mut dims = Vec::new();
    for f in &fields {
        match f.number {
            tensor::DATA_TYPE => data_type = f.int32(WHAT)?,
            tensor::DIMS => f.repeated_varints(WHAT, &mut dims)?,
            _ => {}
        }
    }
    let info = InitializerInfo {
        name: last_string(&fields, tensor::NAME, WHAT)?.to_string(),
        data_type,
        dims: dims.into_iter().map(|d| d as i64).collect(),
    };
    Ok((info, start..start + body.len()))
}

fn decode_sparse_name(field: &Field<'_>) -> Result<String> {
    let fields = field.message("SparseTensorProto")?;
    let mut name = "";
    for f in fields.iter().filter(|f| f.number == sparse_tensor::VALUES) {
        name = tensor_name(f)?;
    }
    Ok(name.to_string())
}

fn decode_dim(field: &Field<'_>) -> Result<Dim> {
    const WHAT: &str = "TensorShapeProto.Dimension";
    let mut dim = Dim::Unknown;
    // `value` is a oneof: the last member read wins.
    for f in field.message(WHAT)? {
        match f.number {
            dimension::DIM_VALUE => dim = Dim::Fixed(f.int64(WHAT)?),
            dimension::DIM_PARAM => dim = Dim::Symbolic(f.string(WHAT)?.to_string()),
            _ => {}
        }
    }
    Ok(dim)
}

/// Reads one `TypeProto.Tensor` occurrence into `elem_type` and `dims` (merging, as protobuf
/// does when a message field occurs more than once).
fn decode_tensor_type(
    field: &Field<'_>,
    elem_type: &mut i32,
    dims: &mut Option<Vec<Dim>>,
) -> Result<()> {
    const WHAT: &str = "TypeProto.Tensor";
    for f in field.message(WHAT)? {
        match f.number {
            tensor_type::ELEM_TYPE => *elem_type = f.int32(WHAT)?,
            tensor_type::SHAPE => {
                let list = dims.get_or_insert_with(Vec::new);
                for d in f.message("TensorShapeProto")? {
                    if d.number == shape::DIM {
                        list.push(decode_dim(&d)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn decode_value_info(field: &Field<'_>) -> Result<ValueInfo> {
    const WHAT: &str = "ValueInfoProto";
    let fields = field.message(WHAT)?;
    let mut elem_type = elem::UNDEFINED;
    let mut dims = None;
    for ty in fields.iter().filter(|f| f.number == value_info_f::TYPE) {
        for f in ty.message("TypeProto")? {
            if f.number == type_proto::TENSOR_TYPE {
                decode_tensor_type(&f, &mut elem_type, &mut dims)?;
            }
        }
    }
    Ok(ValueInfo {
        name: last_string(&fields, value_info_f::NAME, WHAT)?.to_string(),
        elem_type,
        dims,
    })
}

/// What the summary needs from a node.
struct NodeView<'a> {
    name: &'a str,
    op_type: &'a str,
    domain: &'a str,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
}

fn decode_node<'a>(field: &Field<'a>) -> Result<NodeView<'a>> {
    const WHAT: &str = "NodeProto";
    let fields = field.message(WHAT)?;
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for f in &fields {
        match f.number {
            node_f::INPUT => inputs.push(f.string(WHAT)?),
            node_f::OUTPUT => outputs.push(f.string(WHAT)?),
            _ => {}
        }
    }
    Ok(NodeView {
        name: last_string(&fields, node_f::NAME, WHAT)?,
        op_type: last_string(&fields, node_f::OP_TYPE, WHAT)?,
        domain: last_string(&fields, node_f::DOMAIN, WHAT)?,
        inputs,
        outputs,
    })
}

/// Whether `domain` names the default ONNX operator domain.
fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

impl OnnxModel {
    /// Decodes a serialized `ModelProto`, keeping a copy of its bytes.
    ///
    /// Fails with [`Error::Onnx`] saying what is wrong and at which byte when the bytes are not
    /// a `ModelProto` with exactly one graph: empty input, a truncated or overlong varint, a
    /// length past the end of its message, an invalid tag, a field with the wrong wire type,
    /// invalid UTF-8 in a name, no graph field. Only the parts decoded are checked; the
    /// payloads of functions, attributes, subgraphs and unknown fields are kept uninspected.
    pub fn parse(bytes: &[u8]) -> Result<OnnxModel> {
        const WHAT: &str = "ModelProto";
        let layout = layout(bytes)?;
        let mut ir_version = 0;
        let mut opset = None;
        for f in &layout.model {
            match f.number {
                model_f::IR_VERSION => ir_version = f.int64(WHAT)?,
                model_f::OPSET_IMPORT => {
                    let fields = f.message("OperatorSetIdProto")?;
                    let domain = last_string(&fields, opset_f::DOMAIN, "OperatorSetIdProto")?;
                    let mut version = 0;
                    for v in fields.iter().filter(|v| v.number == opset_f::VERSION) {
                        version = v.int64("OperatorSetIdProto")?;
                    }
                    if is_default_domain(domain) && opset.is_none() {
                        opset = Some(version);
                    }
                }
                _ => {}
            }
        }

        let mut model = OnnxModel {
            bytes: Vec::new(),
            ir_version,
            opset,
            inputs: Vec::new(),
            outputs: Vec::new(),
            initializers: Vec::new(),
            initializer_spans: Vec::new(),
            sparse_initializers: Vec::new(),
            bn_statistics: Vec::new(),
            value_names: HashSet::new(),
            node_names: HashSet::new(),
        };
        for f in &layout.graph {
            match f.number {
                graph_f::NODE => model.add_node(&decode_node(f)?),
                graph_f::INITIALIZER => {
                    let (info, span) = decode_initializer(f)?;
                    model.value_names.insert(info.name.clone());
                    model.initializers.push(info);
                    model.initializer_spans.push(span);
                }
                graph_f::SPARSE_INITIALIZER => {
                    let name = decode_sparse_name(f)?;
                    model.value_names.insert(name.clone());
                    model.sparse_initializers.push(name);
                }
                graph_f::INPUT => {
                    let v = decode_value_info(f)?;
                    model.value_names.insert(v.name.clone());
                    model.inputs.push(v);
                }
                graph_f::OUTPUT => {
                    let v = decode_value_info(f)?;
                    model.value_names.insert(v.name.clone());
                    model.outputs.push(v);
                }
                graph_f::VALUE_INFO => {
                    model.value_names.insert(value_info_name(f)?.to_string());
                }
                _ => {}
            }
        }
        model.bytes = bytes.to_vec();
        Ok(model)
    }

    fn add_node(&mut self, node: &NodeView<'_>) {
        self.node_names.insert(node.name.to_string());
        for v in node.inputs.iter().chain(&node.outputs) {
            if !v.is_empty() {
                self.value_names.insert(v.to_string());
            }
        }
        if node.op_type == "BatchNormalization" && is_default_domain(node.domain) {
            for stat in node.inputs.iter().skip(3).take(2) {
                if !stat.is_empty() && !self.bn_statistics.iter().any(|s| s == stat) {
                    self.bn_statistics.push(stat.to_string());
                }
            }
        }
    }

    /// The serialized model, exactly as given to [`parse`](Self::parse).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `ModelProto.ir_version` (0 when absent).
    pub fn ir_version(&self) -> i64 {
        self.ir_version
    }

    /// The imported version of the default operator domain (`""` or `"ai.onnx"`), if any.
    pub fn opset(&self) -> Option<i64> {
        self.opset
    }

    /// Every declared input of the main graph, in order (initializers included where they are
    /// also declared as inputs).
    pub fn graph_inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// Every declared output of the main graph, in order.
    pub fn graph_outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// The main graph's (dense) initializers, in order.
    pub fn initializers(&self) -> &[InitializerInfo] {
        &self.initializers
    }

    /// The first main-graph initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&InitializerInfo> {
        self.initializers.iter().find(|i| i.name == name)
    }

    /// The first main-graph input called `name`.
    pub fn graph_input(&self, name: &str) -> Option<&ValueInfo> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// Graph inputs that are not also initializers (dense or sparse): what a caller must feed.
    pub fn data_inputs(&self) -> Vec<&ValueInfo> {
        self.inputs
            .iter()
            .filter(|i| {
                self.initializer(&i.name).is_none() && !self.sparse_initializers.contains(&i.name)
            })
            .collect()
    }

    /// Names feeding inputs 3 and 4 (running mean, running variance) of the main graph's
    /// `BatchNormalization` nodes, deduplicated, in node order.
    pub fn batch_norm_statistics(&self) -> Vec<String> {
        self.bn_statistics.clone()
    }

    /// The position of the initializer `name`, or [`Error::MissingTensor`].
    pub(super) fn initializer_index(&self, name: &str) -> Result<usize> {
        self.initializers
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| Error::MissingTensor {
                tensor: name.to_string(),
                reason: "no initializer of that name in the ONNX graph".to_string(),
            })
    }

    /// The values of the `FLOAT` initializer `name`, from `raw_data` or `float_data`.
    ///
    /// Errors: [`Error::MissingTensor`] when there is no such initializer, [`Error::DType`] when
    /// it is not `FLOAT`, [`Error::Onnx`] when its data is external or does not hold the number
    /// of values its shape implies.
    pub fn initializer_f32(&self, name: &str) -> Result<Vec<f32>> {
        const WHAT: &str = "TensorProto";
        let index = self.initializer_index(name)?;
        let info = &self.initializers[index];
        if info.data_type != elem::FLOAT {
            return Err(Error::DType {
                tensor: name.to_string(),
                expected: elem::name(elem::FLOAT).to_string(),
                found: elem::name(info.data_type).to_string(),
            });
        }
        let span = self.initializer_spans[index].clone();
        let start = span.start;
        let fields = parse_message(&self.bytes[span], start, WHAT)?;
        let bad = |detail: String| Error::onnx(format!("initializer `{name}`"), detail);
        let count = element_count(&info.dims)
            .ok_or_else(|| bad(format!("invalid shape {:?}", info.dims)))?;

        let mut raw = None;
        let mut external = false;
        let mut float_bytes = 0usize;
        for f in &fields {
            match f.number {
                tensor::RAW_DATA => raw = Some(f.bytes(WHAT)?),
                tensor::DATA_LOCATION => {
                    external = f.varint(WHAT)? == tensor::LOCATION_EXTERNAL;
                }
                tensor::FLOAT_DATA => float_bytes += f.repeated_fixed32(WHAT)?.len(),
                _ => {}
            }
        }
        if external {
            return Err(bad("its data is stored externally".to_string()));
        }
        let decode = |b: &[u8], out: &mut Vec<f32>| {
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        };
        let mut values = Vec::new();
        if let Some(raw) = raw {
            if raw.len() / 4 != count || raw.len() % 4 != 0 {
                return Err(bad(format!(
                    "raw_data has {} bytes, shape {:?} needs {} floats",
                    raw.len(),
                    info.dims,
                    count
                )));
            }
            values.reserve_exact(count);
            decode(raw, &mut values);
        } else {
            if float_bytes / 4 != count {
                return Err(bad(format!(
                    "float_data has {} values, shape {:?} needs {}",
                    float_bytes / 4,
                    info.dims,
                    count
                )));
            }
            values.reserve_exact(count);
            for f in fields.iter().filter(|f| f.number == tensor::FLOAT_DATA) {
                decode(f.repeated_fixed32(WHAT)?, &mut values);
            }
        }
        Ok(values)
    }
}
