//! The network description every architecture is written in once: named parameters and a list
//! of operations over named values. The same description runs in libtorch
//! ([`super::forward`]) and becomes the ONNX graph of bundles ([`super::onnx`]); the parameter
//! names are the ONNX tensor names.

use super::import::{Imported, Source};

/// What a parameter is, which decides its initialisation and how curves treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Convolution or linear weight (He/Kaiming initialisation, weight decay).
    Weight,
    /// Convolution or linear bias.
    Bias,
    /// Batch-norm scale (initialised to 1).
    BnWeight,
    /// Batch-norm shift (initialised to 0).
    BnBias,
    /// Batch-norm running mean: a statistic, not trained; recomputed along curves.
    RunningMean,
    /// Batch-norm running variance: a statistic, not trained; recomputed along curves.
    RunningVar,
}

impl ParamKind {
    /// Whether this is a batch-norm running statistic rather than a trained parameter.
    pub fn is_statistic(self) -> bool {
        matches!(self, ParamKind::RunningMean | ParamKind::RunningVar)
    }
}

/// A named tensor of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name (also the ONNX tensor name), e.g. `layer1.0.conv1.weight`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// What it is.
    pub kind: ParamKind,
    /// Fan-in for the initialisation of weights (elements feeding one output).
    pub fan_in: i64,
}

/// One operation. Inputs and outputs are value names; `input` is the network input.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `(x - mean[c]) / std[c]` per channel (axis 1): the data set's normalisation, part of the
    /// network so that bundles take raw inputs.
    Normalize {
        /// Input value.
        x: String,
        /// Per-channel mean.
        mean: Vec<f32>,
        /// Per-channel standard deviation.
        std: Vec<f32>,
    },
    /// 2-D convolution with square kernel, stride and padding; `bias` may be absent.
    Conv {
        /// Input value.
        x: String,
        /// Weight parameter `[out, in, k, k]`.
        weight: String,
        /// Optional bias parameter `[out]`.
        bias: Option<String>,
        /// Stride.
        stride: i64,
        /// Zero padding on each side.
        padding: i64,
    },
    /// Batch normalisation over channels (axis 1) of a 2-D or 4-D value.
    BatchNorm {
        /// Input value.
        x: String,
        /// Parameter name prefix: `{prefix}.weight`, `.bias`, `.running_mean`, `.running_var`.
        prefix: String,
        /// Epsilon.
        eps: f64,
    },
    /// Rectified linear unit.
    Relu {
        /// Input value.
        x: String,
    },
    /// Max pooling with square kernel and stride.
    MaxPool {
        /// Input value.
        x: String,
        /// Kernel size.
        kernel: i64,
        /// Stride.
        stride: i64,
    },
    /// Average pooling with square kernel and stride (no padding).
    AvgPool {
        /// Input value.
        x: String,
        /// Kernel size.
        kernel: i64,
        /// Stride.
        stride: i64,
    },
    /// Mean over the spatial axes, keeping `[N, C, 1, 1]`.
    GlobalAvgPool {
        /// Input value.
        x: String,
    },
    /// Flattens everything after the batch axis.
    Flatten {
        /// Input value.
        x: String,
    },
    /// `x Wᵀ + b` with weight `[out, in]` and bias `[out]`.
    Linear {
        /// Input value.
        x: String,
        /// Weight parameter.
        weight: String,
        /// Bias parameter.
        bias: String,
    },
    /// Elementwise sum (residual connections).
    Add {
        /// First input.
        a: String,
        /// Second input.
        b: String,
    },
    /// Dropout with probability `p` in training; the identity in evaluation and in ONNX.
    Dropout {
        /// Input value.
        x: String,
        /// Drop probability.
        p: f64,
    },
    /// An operation of an imported ONNX graph, run with ONNX's semantics
    /// ([`super::import`]).
    Onnx(Box<Imported>),
}

/// One step of the network: an operation and the value it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// The name of the value it produces.
    pub output: String,
}

/// A whole network: input shape, parameters in a fixed order, operations in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    /// The architecture's name, e.g. `preresnet20`.
    pub arch: String,
    /// Shape of one input sample, e.g. `[3, 32, 32]`.
    pub input: Vec<i64>,
    /// Number of classes.
    pub classes: i64,
    /// Every parameter and running statistic, in a fixed order.
    pub params: Vec<Param>,
    /// Operations in execution order; the last one's output is the logits.
    pub nodes: Vec<Node>,
    /// For a network imported from ONNX, the user's graph, which its bundles keep; `None` for
    /// the trainer's own architectures, whose graph [`super::to_onnx`] writes.
    pub source: Option<std::sync::Arc<Source>>,
}

/// The name of the network input value.
pub const INPUT: &str = "input";

impl Net {
    /// The name of the value holding the logits.
    pub fn output(&self) -> &str {
        self.nodes.last().map_or(INPUT, |n| n.output.as_str())
    }

    /// The name of the data input in the network's ONNX graph: the user's name for an
    /// imported network, [`INPUT`] otherwise.
    pub fn input_name(&self) -> &str {
        self.source.as_ref().map_or(INPUT, |s| s.input.as_str())
    }

    /// The name of the logits in the network's ONNX graph: the user's name for an imported
    /// network, [`super::OUTPUT`] otherwise.
    pub fn output_name(&self) -> &str {
        self.source
            .as_ref()
            .map_or(super::OUTPUT, |s| s.output.as_str())
    }

    /// The parameter of this name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether the network has batch normalisation.
    pub fn has_batch_norm(&self) -> bool {
        self.params.iter().any(|p| p.kind.is_statistic())
    }

    /// The number of trained parameters (every element of every parameter that is not a
    /// batch-norm running statistic), as PyTorch's `sum(p.numel() for p in parameters())`.
    pub fn parameter_count(&self) -> i64 {
        self.params
            .iter()
            .filter(|p| !p.kind.is_statistic())
            .map(|p| p.shape.iter().product::<i64>())
            .sum()
    }

    /// The names of the batch-norm running statistics, in parameter order.
    pub fn statistics(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(|p| p.kind.is_statistic())
            .map(|p| p.name.as_str())
    }
}
