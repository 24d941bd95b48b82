//! modeconn-runtime: load mode-connected curves and snapshot ensembles from bundles and run
//! them with ONNX Runtime.
//!
//! A [`Bundle`] is one `.safetensors` file holding a curve's control points (or a set of
//! snapshots), the network as an ONNX graph, and metadata (`docs/bundle-format.md`). An
//! [`Ensemble`] rewrites the graph once so that the weights of any member, `w(t) = Σ c_k(t) P_k`
//! for curves or one snapshot for sets, are computed inside ONNX Runtime from a few coefficients
//! per query; members asked for repeatedly are materialised into static sessions. Predictions
//! average the members' softmax probabilities.
//!
//! ```
//! use modeconn_runtime::bundle::{InputSpec, Kind, Metadata, OutputSpec};
//! use modeconn_runtime::curve::Basis;
//! use modeconn_runtime::graph::{build::ModelBuilder, elem};
//! use modeconn_runtime::{Bundle, BundleWriter, Ensemble, EnsembleOptions, Member};
//! use modeconn_runtime::{Runtime, RuntimeOptions, Sampling};
//!
//! # fn main() -> modeconn_runtime::Result<()> {
//! // A linear classifier x[batch, 2] · w[2, 3] whose weights follow a Bezier curve with 3
//! // control points.
//! let mut graph = ModelBuilder::new("linear", 17);
//! graph
//!     .input("x", elem::FLOAT, &["batch".into(), 2.into()])
//!     .input("w", elem::FLOAT, &[2.into(), 3.into()])
//!     .node("MatMul", &["x", "w"], &["logits"], &[])
//!     .output("logits", elem::FLOAT, &["batch".into(), 3.into()]);
//! let meta = Metadata {
//!     kind: Kind::Curve,
//!     basis: Some(Basis::Bezier),
//!     points: 3,
//!     bn_grid: None,
//!     grid_tensors: vec![],
//!     input: InputSpec { name: "x".into(), shape: vec![-1, 2] },
//!     output: OutputSpec { name: "logits".into(), classes: 3 },
//!     temperature: 1.0,
//!     preprocess: None,
//!     labels: None,
//!     provenance: None,
//!     extra: Default::default(),
//! };
//! let points: Vec<f32> = (0..18).map(|i| i as f32 / 10.0).collect();
//! let bytes = BundleWriter::new(meta, graph.build())
//!     .tensor("w", vec![3, 2, 3], points)?
//!     .to_bytes()?;
//! let bundle = Bundle::from_bytes(bytes)?;
//! assert_eq!(bundle.weights_at(Member::T(0.0))?.tensors[0].2, (0..6).map(|i| i as f32 / 10.0).collect::<Vec<_>>());
//!
//! // ONNX Runtime comes from ORT_DYLIB_PATH (see scripts/setup.sh).
//! let runtime = Runtime::new(RuntimeOptions::default())?;
//! let ensemble = Ensemble::new(&runtime, bundle, EnsembleOptions::default())?;
//! let x = ndarray::array![[1.0f32, 0.5], [0.0, -1.0]].into_dyn();
//! let p = ensemble.predict(x.view(), &Sampling::Grid(5), true)?;
//! assert_eq!(p.probabilities.shape(), &[2, 3]);
//! assert_eq!(p.per_member.as_ref().map(|a| a.shape().to_vec()), Some(vec![5, 2, 3]));
//! assert!((p.probabilities.row(0).sum() - 1.0).abs() < 1e-5);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod bundle;
pub mod curve;
pub mod doctor;
pub mod ensemble;
pub mod error;
pub mod fs;
pub mod graph;
pub mod npy;
pub mod session;

pub use bundle::{Bundle, BundleWriter, Member};
pub use ensemble::{Ensemble, EnsembleOptions, Prediction, Sampling};
pub use error::{Error, ErrorCode, Result};
pub use fs::write_file_atomic;
pub use session::{Device, Provider, Runtime, RuntimeOptions};
