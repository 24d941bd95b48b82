//! Architectures, each written once as a [`Net`] and run both in libtorch ([`forward()`]) and
//! as the ONNX graph of bundles ([`to_onnx`]), and users' own networks imported from ONNX
//! ([`import`]). Parameter names are the ONNX tensor names, so curves and snapshot sets work by
//! name for every architecture.

mod builder;
mod forward;
pub mod import;
mod ir;
mod onnx;
mod params;
mod resnet;
mod shape;
mod zoo;

pub use builder::NetBuilder;
pub use forward::{Mode, TRAIN_MOMENTUM, forward};
pub use ir::{INPUT, Net, Node, Op, Param, ParamKind};
pub use onnx::{OPSET, OUTPUT, bundle_metadata, to_onnx};
pub use params::{HostParams, Params, check_params, from_host, init, tensor_data, to_host};
pub use shape::infer_shapes;
pub use zoo::{ARCHITECTURES, ArchOptions, Normalization, by_name};

#[cfg(test)]
mod tests;
