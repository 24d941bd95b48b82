//! Encoders for the few ONNX messages this module writes (shared by the builder and the
//! rewrites). Each writes the body of a message; the caller wraps it in a field.

use super::proto::{attribute, dimension, entry, node as node_f, shape, tensor, tensor_type};
use super::proto::{type_proto, value_info as value_info_f};
use super::spec::{Attr, DimSpec};
use super::wire::{
    put_bytes_field, put_float_field, put_int64_field, put_len_prefix, put_message_field,
    put_varint_field,
};

/// A `ValueInfoProto` of a tensor with a shape (written even when `dims` is empty: a scalar).
pub(crate) fn value_info(out: &mut Vec<u8>, name: &str, elem_type: i32, dims: &[DimSpec]) {
    put_bytes_field(out, value_info_f::NAME, name.as_bytes());
    put_message_field(out, value_info_f::TYPE, |ty| {
        put_message_field(ty, type_proto::TENSOR_TYPE, |t| {
            put_int64_field(t, tensor_type::ELEM_TYPE, i64::from(elem_type));
            put_message_field(t, tensor_type::SHAPE, |s| {
                for d in dims {
                    put_message_field(s, shape::DIM, |dim| match d {
                        DimSpec::Fixed(v) => put_int64_field(dim, dimension::DIM_VALUE, *v),
                        DimSpec::Symbolic(p) => {
                            put_bytes_field(dim, dimension::DIM_PARAM, p.as_bytes())
                        }
                    });
                }
            });
        });
    });
}

/// A `NodeProto`. `domain` is left out when empty (the default ONNX domain).
pub(crate) fn node<I: AsRef<str>, O: AsRef<str>>(
    out: &mut Vec<u8>,
    name: &str,
    op_type: &str,
    domain: &str,
    inputs: &[I],
    outputs: &[O],
    attrs: &[Attr],
) {
    for i in inputs {
        put_bytes_field(out, node_f::INPUT, i.as_ref().as_bytes());
    }
    for o in outputs {
        put_bytes_field(out, node_f::OUTPUT, o.as_ref().as_bytes());
    }
    put_bytes_field(out, node_f::NAME, name.as_bytes());
    put_bytes_field(out, node_f::OP_TYPE, op_type.as_bytes());
    for a in attrs {
        put_message_field(out, node_f::ATTRIBUTE, |m| self::attribute(m, a));
    }
    if !domain.is_empty() {
        put_bytes_field(out, node_f::DOMAIN, domain.as_bytes());
    }
}

/// An `AttributeProto`: name, value, then type.
pub(crate) fn attribute(out: &mut Vec<u8>, attr: &Attr) {
    put_bytes_field(out, attribute::NAME, attr.name().as_bytes());
    let kind = match attr {
        Attr::Float(_, v) => {
            put_float_field(out, attribute::F, *v);
            attribute::kind::FLOAT
        }
        Attr::Int(_, v) => {
            put_int64_field(out, attribute::I, *v);
            attribute::kind::INT
        }
        Attr::String(_, v) => {
            put_bytes_field(out, attribute::S, v.as_bytes());
            attribute::kind::STRING
        }
        Attr::Floats(_, vs) => {
            for v in vs {
                put_float_field(out, attribute::FLOATS, *v);
            }
            attribute::kind::FLOATS
        }
        Attr::Ints(_, vs) => {
            for v in vs {
                put_int64_field(out, attribute::INTS, *v);
            }
            attribute::kind::INTS
        }
    };
    put_int64_field(out, attribute::TYPE, kind);
}

/// A `StringStringEntryProto` (metadata props, external data entries).
pub(crate) fn string_entry(out: &mut Vec<u8>, key: &str, value: &str) {
    put_bytes_field(out, entry::KEY, key.as_bytes());
    put_bytes_field(out, entry::VALUE, value.as_bytes());
}

/// The start of a `TensorProto` whose `raw_data` (of `raw_len` bytes) is written next by the
/// caller: dims, data type, name, then the tag and length of `raw_data`.
pub(crate) fn tensor_prefix(
    out: &mut Vec<u8>,
    name: &str,
    data_type: i32,
    dims: &[i64],
    raw_len: usize,
) {
    for d in dims {
        put_int64_field(out, tensor::DIMS, *d);
    }
    put_int64_field(out, tensor::DATA_TYPE, i64::from(data_type));
    put_bytes_field(out, tensor::NAME, name.as_bytes());
    put_len_prefix(out, tensor::RAW_DATA, raw_len);
}

/// A `TensorProto` that holds no data and marks it external (`data_location = EXTERNAL`) with
/// the given `external_data` entries.
pub(crate) fn external_tensor(
    out: &mut Vec<u8>,
    name: &str,
    data_type: i32,
    dims: &[i64],
    external: &[(&str, &str)],
) {
    for d in dims {
        put_int64_field(out, tensor::DIMS, *d);
    }
    put_int64_field(out, tensor::DATA_TYPE, i64::from(data_type));
    put_bytes_field(out, tensor::NAME, name.as_bytes());
    for (k, v) in external {
        put_message_field(out, tensor::EXTERNAL_DATA, |m| string_entry(m, k, v));
    }
    put_varint_field(out, tensor::DATA_LOCATION, tensor::LOCATION_EXTERNAL);
}
