//! Building ONNX models in code: for tests, benchmarks and the trainer's architecture export.
//!
//! ```
//! use modeconn_runtime::graph::build::{Attr, DimSpec, ModelBuilder};
//! use modeconn_runtime::graph::{OnnxModel, elem};
//!
//! # fn main() -> modeconn_runtime::Result<()> {
//! let mut b = ModelBuilder::new("tiny", 17);
//! b.input("x", elem::FLOAT, &[DimSpec::from("batch"), 4.into()])
//!     .initializer_f32("w", &[4, 2], &[0.5; 8])
//!     .node("MatMul", &["x", "w"], &["y"], &[])
//!     .node("Softmax", &["y"], &["p"], &[Attr::int("axis", -1)])
//!     .output("p", elem::FLOAT, &["batch".into(), 2.into()]);
//! let model = OnnxModel::parse(&b.build())?;
//! assert_eq!(model.opset(), Some(17));
//! assert_eq!(model.data_inputs()[0].name, "x");
//! # Ok(())
//! # }
//! ```
//!
//! The builder writes what it is told and checks nothing (data lengths, names, graph validity);
//! check the result with the ONNX checker where that matters.

use super::elem;
use super::encode;
use super::proto::{graph as graph_f, model as model_f, opset as opset_f};
pub use super::spec::{Attr, DimSpec};
use super::wire::{put_bytes_field, put_int64_field, put_message_field};

/// The IR version [`ModelBuilder`] writes unless told otherwise. ONNX Runtime 1.31 reads models
/// up to IR version 11; ONNX 1.23's own default (14) is too new for it.
pub const DEFAULT_IR_VERSION: i64 = 8;

#[derive(Debug, Clone, PartialEq)]
struct ValueSpec {
    name: String,
    elem_type: i32,
    dims: Vec<DimSpec>,
}

#[derive(Debug, Clone, PartialEq)]
struct TensorSpec {
    name: String,
    data_type: i32,
    dims: Vec<i64>,
    raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
struct NodeSpec {
    name: String,
    op_type: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<Attr>,
}

/// Builds an ONNX `ModelProto` with one graph, in the default operator domain.
///
/// Methods that add to the graph take `&mut self` and return it, so calls chain; [`build`]
/// serializes. Nodes get unique names `"{op_type}_{index}"`. Repeated fields are written in the
/// order they were added.
///
/// [`build`]: ModelBuilder::build
#[derive(Debug, Clone, PartialEq)]
pub struct ModelBuilder {
    graph_name: String,
    ir_version: i64,
    opsets: Vec<(String, i64)>,
    producer: Option<(String, String)>,
    doc_string: Option<String>,
    metadata: Vec<(String, String)>,
    nodes: Vec<NodeSpec>,
    initializers: Vec<TensorSpec>,
    inputs: Vec<ValueSpec>,
    outputs: Vec<ValueSpec>,
    value_infos: Vec<ValueSpec>,
}

impl ModelBuilder {
    /// A model whose graph is called `graph_name`, importing the default ONNX domain at version
    /// `opset`, with IR version [`DEFAULT_IR_VERSION`].
    pub fn new(graph_name: &str, opset: i64) -> Self {
        ModelBuilder {
            graph_name: graph_name.to_string(),
            ir_version: DEFAULT_IR_VERSION,
            opsets: vec![(String::new(), opset)],
            producer: None,
            doc_string: None,
            metadata: Vec::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            value_infos: Vec::new(),
        }
    }

    /// Sets the IR version written to `ModelProto.ir_version`.
    pub fn ir_version(mut self, v: i64) -> Self {
        self.ir_version = v;
        self
    }

    /// Imports another operator set (e.g. `("com.microsoft", 1)`), after the default domain.
    pub fn opset_import(&mut self, domain: &str, version: i64) -> &mut Self {
        self.opsets.push((domain.to_string(), version));
        self
    }

    /// Declares a graph input: a tensor of `elem_type` (see [`elem`]) with the given shape
    /// (an empty `dims` declares a scalar).
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[DimSpec]) -> &mut Self {
        self.inputs.push(ValueSpec {
            name: name.to_string(),
            elem_type,
            dims: dims.to_vec(),
        });
        self
    }

    /// Declares a graph output, like [`input`](Self::input).
    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[DimSpec]) -> &mut Self {
        self.outputs.push(ValueSpec {
            name: name.to_string(),
            elem_type,
            dims: dims.to_vec(),
        });
        self
    }

    /// Declares the type and shape of an intermediate value (`GraphProto.value_info`).
    pub fn value_info(&mut self, name: &str, elem_type: i32, dims: &[DimSpec]) -> &mut Self {
        self.value_infos.push(ValueSpec {
            name: name.to_string(),
            elem_type,
            dims: dims.to_vec(),
        });
        self
    }

    /// Adds a `FLOAT` initializer stored as little-endian `raw_data`. `data` should hold the
    /// product of `dims` values.
    pub fn initializer_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> &mut Self {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, elem::FLOAT, dims, raw)
    }

    /// Adds an `INT64` initializer stored as little-endian `raw_data`.
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> &mut Self {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, elem::INT64, dims, raw)
    }

    fn push_initializer(
        &mut self,
        name: &str,
        data_type: i32,
        dims: &[i64],
        raw: Vec<u8>,
    ) -> &mut Self {
        self.initializers.push(TensorSpec {
            name: name.to_string(),
            data_type,
            dims: dims.to_vec(),
            raw,
        });
        self
    }

    /// Appends a node of the default domain. An empty string in `inputs` marks an omitted
    /// optional input, as in ONNX.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[Attr],
    ) -> &mut Self {
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeSpec {
            name,
            op_type: op_type.to_string(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: attrs.to_vec(),
        });
        self
    }

    /// Adds a `metadata_props` entry.
    pub fn metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets `producer_name` and `producer_version`.
    pub fn producer(&mut self, name: &str, version: &str) -> &mut Self {
        self.producer = Some((name.to_string(), version.to_string()));
        self
    }

    /// Sets the model's `doc_string`.
    pub fn doc_string(&mut self, doc: &str) -> &mut Self {
        self.doc_string = Some(doc.to_string());
        self
    }

    /// Serializes the model. Fields are written in field-number order, as protobuf does.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_int64_field(&mut out, model_f::IR_VERSION, self.ir_version);
        if let Some((name, version)) = &self.producer {
            put_bytes_field(&mut out, model_f::PRODUCER_NAME, name.as_bytes());
            put_bytes_field(&mut out, model_f::PRODUCER_VERSION, version.as_bytes());
        }
        if let Some(doc) = &self.doc_string {
            put_bytes_field(&mut out, model_f::DOC_STRING, doc.as_bytes());
        }
        put_message_field(&mut out, model_f::GRAPH, |g| self.write_graph(g));
        for (domain, version) in &self.opsets {
            put_message_field(&mut out, model_f::OPSET_IMPORT, |m| {
                put_bytes_field(m, opset_f::DOMAIN, domain.as_bytes());
                put_int64_field(m, opset_f::VERSION, *version);
            });
        }
        for (key, value) in &self.metadata {
            put_message_field(&mut out, model_f::METADATA_PROPS, |m| {
                encode::string_entry(m, key, value)
            });
        }
        out
    }

    fn write_graph(&self, g: &mut Vec<u8>) {
        for n in &self.nodes {
            put_message_field(g, graph_f::NODE, |m| {
                encode::node(m, &n.name, &n.op_type, "", &n.inputs, &n.outputs, &n.attrs)
            });
        }
        put_bytes_field(g, graph_f::NAME, self.graph_name.as_bytes());
        for t in &self.initializers {
            put_message_field(g, graph_f::INITIALIZER, |m| {
                encode::tensor_prefix(m, &t.name, t.data_type, &t.dims, t.raw.len());
                m.extend_from_slice(&t.raw);
            });
        }
        let values = [
            (graph_f::INPUT, &self.inputs),
            (graph_f::OUTPUT, &self.outputs),
            (graph_f::VALUE_INFO, &self.value_infos),
        ];
        for (number, list) in values {
            for v in list {
                put_message_field(g, number, |m| {
                    encode::value_info(m, &v.name, v.elem_type, &v.dims)
                });
            }
        }
    }
}
