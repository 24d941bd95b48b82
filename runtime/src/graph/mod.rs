//! ONNX models: decoding, building, and the rewrites the runtime needs.
//!
//! Everything here works on the protocol-buffer wire format directly (no generated code): a
//! message is a list of fields in their original order, and a rewrite re-emits every field it
//! does not touch byte for byte, so functions, metadata, doc strings, subgraphs and fields this
//! module has never heard of survive unchanged.
//!
//! - [`OnnxModel`] decodes what the runtime needs (inputs, outputs, initializers, opset,
//!   batch-norm statistics) and performs the rewrites:
//!   [`rewrite_dynamic`](OnnxModel::rewrite_dynamic) (varying tensors computed in the graph from
//!   stacks, see [`Mix`]), [`with_tensors`](OnnxModel::with_tensors) (fixed weights baked in)
//!   and [`lift_to_inputs`](OnnxModel::lift_to_inputs) (initializers turned into graph inputs).
//! - [`OnnxModel::nodes`] and [`OnnxModel::initializer_value`] decode the nodes with their
//!   attributes and the values of tensors, for interpreters of the graph (the trainer's import).
//! - [`build::ModelBuilder`] writes models in code.

pub mod build;
pub mod elem;
mod encode;
mod external;
mod model;
mod nodes;
mod proto;
mod rewrite;
mod spec;
mod wire;

#[cfg(test)]
mod tests;

pub use external::ExternalTensor;
pub use model::{Dim, InitializerInfo, OnnxModel, ValueInfo};
pub use nodes::{AttrValue, Attribute, GraphNode, TensorData, TensorValue};
pub use rewrite::{Mix, MixVia, NamedTensor, STACK_LOCATION, StackSource};
