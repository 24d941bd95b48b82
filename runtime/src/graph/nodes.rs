//! The main graph's nodes with their attributes, and the values of tensors (initializers and
//! tensor attributes such as `Constant`'s): what an interpreter of the graph needs, which the
//! summary in [`OnnxModel::parse`] does not decode.

use super::OnnxModel;
use super::elem;
use super::model::{element_count, layout};
use super::proto::{attribute as attr_f, graph as graph_f, node as node_f, tensor};
use super::wire::{Field, parse_message};
use crate::{Error, Result};

/// A node of the main graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    /// The node's name (may be empty).
    pub name: String,
    /// The operator, e.g. `Conv`.
    pub op_type: String,
    /// The operator's domain; empty (or `ai.onnx`) for the standard operators.
    pub domain: String,
    /// Input value names; an empty name is an optional input left out.
    pub inputs: Vec<String>,
    /// Output value names; an empty name is an optional output left out.
    pub outputs: Vec<String>,
    /// Attributes in their order in the file.
    pub attributes: Vec<Attribute>,
}

impl GraphNode {
    /// The attribute of this name.
    pub fn attribute(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// Whether the operator belongs to the standard ONNX domain.
    pub fn is_standard(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }
}

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: AttrValue,
}

/// The value of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `f`.
    Float(f32),
    /// `i`.
    Int(i64),
    /// `s` (bytes, usually UTF-8).
    String(Vec<u8>),
    /// `t`.
    Tensor(TensorValue),
    /// `floats`.
    Floats(Vec<f32>),
    /// `ints`.
    Ints(Vec<i64>),
    /// `strings`.
    Strings(Vec<Vec<u8>>),
    /// A kind this module does not decode (graphs, sparse tensors, types), with its
    /// `AttributeProto.AttributeType` number.
    Other(i64),
}

/// A tensor's shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorValue {
    /// Its shape (empty for a scalar).
    pub dims: Vec<i64>,
    /// Its values, row-major.
    pub data: TensorData,
}

/// The values of a tensor, by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `FLOAT`.
    Float(Vec<f32>),
    /// `DOUBLE`.
    Double(Vec<f64>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `INT32`, `INT16`, `INT8` and `UINT8`, widened.
    Int32(Vec<i32>),
    /// `BOOL`.
    Bool(Vec<bool>),
}

impl TensorData {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Float(v) => v.len(),
            TensorData::Double(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `AttributeProto.AttributeType` numbers of the kinds decoded here.
mod kind {
    pub(super) const FLOAT: i64 = 1;
    pub(super) const INT: i64 = 2;
    pub(super) const STRING: i64 = 3;
    pub(super) const TENSOR: i64 = 4;
    pub(super) const FLOATS: i64 = 6;
    pub(super) const INTS: i64 = 7;
    pub(super) const STRINGS: i64 = 8;
}

/// `AttributeProto.strings`, `ref_attr_name` and `TensorProto`'s typed data fields, which the
/// summary never reads.
const ATTR_STRINGS: u32 = 9;
const ATTR_REF_NAME: u32 = 21;
const INT32_DATA: u32 = 5;
const INT64_DATA: u32 = 7;
const DOUBLE_DATA: u32 = 10;

impl OnnxModel {
    /// Every node of the main graph, in file order, with its attributes decoded.
    ///
    /// Fails with [`Error::Onnx`] on a malformed node or attribute (wrong wire types, invalid
    /// UTF-8 in a name, a tensor attribute whose data does not fit its shape).
    pub fn nodes(&self) -> Result<Vec<GraphNode>> {
        let layout = layout(&self.bytes)?;
        layout
            .graph
            .iter()
            .filter(|f| f.number == graph_f::NODE)
            .map(decode_node)
            .collect()
    }

    /// The shape and values of the initializer `name`, whatever its element type among those
    /// [`TensorData`] holds.
    ///
    /// Errors: [`Error::MissingTensor`] when there is no such initializer, [`Error::Onnx`] when
    /// its data is external, of another type, or does not fit its shape.
    pub fn initializer_value(&self, name: &str) -> Result<TensorValue> {
        let index = self.initializer_index(name)?;
        let span = self.initializer_spans[index].clone();
        let start = span.start;
        let fields = parse_message(&self.bytes[span], start, "TensorProto")?;
        decode_tensor(&fields, &format!("initializer `{name}`"))
    }
}

fn decode_node(field: &Field<'_>) -> Result<GraphNode> {
    const WHAT: &str = "NodeProto";
    let fields = field.message(WHAT)?;
    let mut node = GraphNode {
        name: String::new(),
        op_type: String::new(),
        domain: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        attributes: Vec::new(),
    };
    for f in &fields {
        match f.number {
            node_f::INPUT => node.inputs.push(f.string(WHAT)?.to_string()),
            node_f::OUTPUT => node.outputs.push(f.string(WHAT)?.to_string()),
            node_f::NAME => node.name = f.string(WHAT)?.to_string(),
            node_f::OP_TYPE => node.op_type = f.string(WHAT)?.to_string(),
            node_f::DOMAIN => node.domain = f.string(WHAT)?.to_string(),
            node_f::ATTRIBUTE => {
                if let Some(a) = decode_attribute(f, &node.op_type)? {
                    node.attributes.push(a);
                }
            }
            _ => {}
        }
    }
    Ok(node)
}

/// One attribute; `None` for a reference to a function's attribute (`ref_attr_name`), which has
/// no value of its own.
fn decode_attribute(field: &Field<'_>, op_type: &str) -> Result<Option<Attribute>> {
    const WHAT: &str = "AttributeProto";
    let fields = field.message(WHAT)?;
    let mut name = String::new();
    let mut declared = None;
    let (mut f32v, mut i64v, mut s, mut t) = (None, None, None, None);
    let (mut floats, mut ints, mut strings) = (Vec::new(), Vec::new(), Vec::new());
    let mut raw_ints = Vec::new();
    for f in &fields {
        match f.number {
            attr_f::NAME => name = f.string(WHAT)?.to_string(),
            attr_f::TYPE => declared = Some(f.int64(WHAT)?),
            attr_f::F => match f.repeated_fixed32(WHAT)? {
                [a, b, c, d] => f32v = Some(f32::from_le_bytes([*a, *b, *c, *d])),
                _ => return Err(Error::onnx(WHAT, "field f is not one float")),
            },
            attr_f::I => i64v = Some(f.int64(WHAT)?),
            attr_f::S => s = Some(f.bytes(WHAT)?.to_vec()),
            attr_f::T => t = Some(f.message(WHAT)?),
            attr_f::FLOATS => floats.extend(floats_of(f.repeated_fixed32(WHAT)?)),
            attr_f::INTS => f.repeated_varints(WHAT, &mut raw_ints)?,
            ATTR_STRINGS => strings.push(f.bytes(WHAT)?.to_vec()),
            ATTR_REF_NAME => return Ok(None),
            _ => {}
        }
    }
    ints.extend(raw_ints.into_iter().map(|v| v as i64));
    let part = || format!("attribute `{name}` of a {op_type} node");
    // Files from old writers leave `type` out; infer it from the field that is set.
    let kind = declared.unwrap_or(match () {
        () if t.is_some() => kind::TENSOR,
        () if f32v.is_some() => kind::FLOAT,
        () if i64v.is_some() => kind::INT,
        () if s.is_some() => kind::STRING,
        () if !floats.is_empty() => kind::FLOATS,
        () if !ints.is_empty() => kind::INTS,
        () if !strings.is_empty() => kind::STRINGS,
        () => 0,
    });
    let value = match kind {
        kind::FLOAT => AttrValue::Float(f32v.unwrap_or(0.0)),
        kind::INT => AttrValue::Int(i64v.unwrap_or(0)),
        kind::STRING => AttrValue::String(s.unwrap_or_default()),
        kind::TENSOR => match t {
            Some(fields) => AttrValue::Tensor(decode_tensor(&fields, &part())?),
            None => {
                return Err(Error::onnx(
                    part(),
                    "is a tensor attribute without a tensor",
                ));
            }
        },
        kind::FLOATS => AttrValue::Floats(floats),
        kind::INTS => AttrValue::Ints(ints),
        kind::STRINGS => AttrValue::Strings(strings),
        other => AttrValue::Other(other),
    };
    Ok(Some(Attribute { name, value }))
}

fn floats_of(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Decodes a `TensorProto` from its fields: `raw_data` or the typed data field of its type.
fn decode_tensor(fields: &[Field<'_>], part: &str) -> Result<TensorValue> {
    const WHAT: &str = "TensorProto";
    let bad = |detail: String| Error::onnx(part.to_string(), detail);
    let mut dims = Vec::new();
    let mut data_type = elem::UNDEFINED;
    let mut raw = None;
    let mut external = false;
    let mut varints = Vec::new();
    let mut fixed32 = Vec::new();
    let mut doubles = Vec::new();
    for f in fields {
        match f.number {
            tensor::DIMS => {
                let mut d = Vec::new();
                f.repeated_varints(WHAT, &mut d)?;
                dims.extend(d.into_iter().map(|v| v as i64));
            }
            tensor::DATA_TYPE => data_type = f.int32(WHAT)?,
            tensor::RAW_DATA => raw = Some(f.bytes(WHAT)?),
            tensor::DATA_LOCATION => external = f.varint(WHAT)? == tensor::LOCATION_EXTERNAL,
            tensor::FLOAT_DATA => fixed32.extend_from_slice(f.repeated_fixed32(WHAT)?),
            INT32_DATA | INT64_DATA => f.repeated_varints(WHAT, &mut varints)?,
            DOUBLE_DATA => match f.bytes(WHAT) {
                Ok(b) if b.len() % 8 == 0 => doubles.extend(
                    b.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
                ),
                _ => return Err(bad("double_data is not packed 8-byte values".into())),
            },
            _ => {}
        }
    }
    if external {
        return Err(bad("its data is stored externally".into()));
    }
    let count = element_count(&dims).ok_or_else(|| bad(format!("invalid shape {dims:?}")))?;
    let width = match data_type {
        elem::FLOAT | elem::INT32 => 4,
        elem::DOUBLE | elem::INT64 => 8,
        elem::INT16 => 2,
        elem::INT8 | elem::UINT8 | elem::BOOL => 1,
        other => {
            return Err(bad(format!(
                "element type {} is not supported here",
                elem::name(other)
            )));
        }
    };
    let data = if let Some(raw) = raw {
        if raw.len() != count.saturating_mul(width) {
            return Err(bad(format!(
                "raw_data has {} bytes, shape {dims:?} of {} needs {}",
                raw.len(),
                elem::name(data_type),
                count.saturating_mul(width)
            )));
        }
        let words = raw.chunks_exact(width);
        match data_type {
            elem::FLOAT => TensorData::Float(floats_of(raw).collect()),
            elem::DOUBLE => TensorData::Double(
                words
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            elem::INT64 => TensorData::Int64(
                words
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            elem::INT32 => TensorData::Int32(
                words
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                    .collect(),
            ),
            elem::INT16 => TensorData::Int32(
                words
                    .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            elem::INT8 => TensorData::Int32(raw.iter().map(|&b| i32::from(b as i8)).collect()),
            elem::UINT8 => TensorData::Int32(raw.iter().map(|&b| i32::from(b)).collect()),
            _ => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        }
    } else {
        let data = match data_type {
            elem::FLOAT => TensorData::Float(floats_of(&fixed32).collect()),
            elem::DOUBLE => TensorData::Double(doubles),
            elem::INT64 => TensorData::Int64(varints.iter().map(|&v| v as i64).collect()),
            elem::BOOL => TensorData::Bool(varints.iter().map(|&v| v != 0).collect()),
            elem::INT16 => TensorData::Int32(varints.iter().map(|&v| v as i16 as i32).collect()),
            elem::INT8 => TensorData::Int32(varints.iter().map(|&v| v as i8 as i32).collect()),
            elem::UINT8 => TensorData::Int32(varints.iter().map(|&v| v as u8 as i32).collect()),
            _ => TensorData::Int32(varints.iter().map(|&v| v as i32).collect()),
        };
        if data.len() != count {
            return Err(bad(format!(
                "holds {} values, shape {dims:?} needs {count}",
                data.len()
            )));
        }
        data
    };
    Ok(TensorValue { dims, data })
}
