//! The ONNX operations the import understands, read from a node with their attributes checked,
//! so that an unsupported operator or attribute is refused when a graph is imported, never
//! met half-way through training.

use modeconn_runtime::graph::{AttrValue, GraphNode, TensorValue, elem};
use tch::Kind;

use crate::{Error, Result};

/// How a convolution or pooling places its padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Padding {
    /// Explicit `pads`: begins of every spatial axis, then ends.
    Explicit(Vec<i64>),
    /// `SAME_UPPER` (extra padding at the end) or `SAME_LOWER` (at the beginning): the output
    /// has `ceil(input / stride)` positions.
    Same {
        /// Whether the odd element goes to the end.
        upper: bool,
    },
}

/// Attributes of `Conv` and `ConvTranspose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAttrs {
    /// Strides per spatial axis (empty: 1 everywhere).
    pub strides: Vec<i64>,
    /// Dilations per spatial axis (empty: 1 everywhere).
    pub dilations: Vec<i64>,
    /// Padding.
    pub padding: Padding,
    /// Groups.
    pub group: i64,
    /// Extra output size of a transposed convolution per spatial axis.
    pub output_padding: Vec<i64>,
}

/// Attributes of `MaxPool` and `AveragePool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAttrs {
    /// Kernel size per spatial axis.
    pub kernel: Vec<i64>,
    /// Strides (empty: 1 everywhere).
    pub strides: Vec<i64>,
    /// Dilations (empty: 1 everywhere; `MaxPool` only).
    pub dilations: Vec<i64>,
    /// Padding.
    pub padding: Padding,
    /// Output sizes rounded up rather than down.
    pub ceil_mode: bool,
    /// Padded positions count in the average (`AveragePool` only).
    pub count_include_pad: bool,
}

/// Elementwise operations of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    /// `Relu`.
    Relu,
    /// `Sigmoid`.
    Sigmoid,
    /// `Tanh`.
    Tanh,
    /// `HardSwish`.
    HardSwish,
    /// `Abs`.
    Abs,
    /// `Neg`.
    Neg,
    /// `Floor`.
    Floor,
    /// `Ceil`.
    Ceil,
    /// `Sign`.
    Sign,
    /// `Sqrt`.
    Sqrt,
    /// `Exp`.
    Exp,
    /// `Log`.
    Log,
    /// `Erf`.
    Erf,
    /// `Reciprocal`.
    Reciprocal,
    /// `Softplus`.
    Softplus,
    /// `Not`.
    Not,
}

/// Elementwise operations of two or more inputs, with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `Add` (also `Sum` over several inputs).
    Add,
    /// `Sub`.
    Sub,
    /// `Mul`.
    Mul,
    /// `Div` (integer inputs divide with truncation, as ONNX says).
    Div,
    /// `Pow`.
    Pow,
    /// `Max`.
    Max,
    /// `Min`.
    Min,
    /// `Equal`.
    Equal,
    /// `Less`.
    Less,
    /// `Greater`.
    Greater,
}

/// Reductions over axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// `ReduceMean`.
    Mean,
    /// `ReduceSum`.
    Sum,
    /// `ReduceMax`.
    Max,
    /// `ReduceMin`.
    Min,
}

/// One imported operation. Its inputs are the node's inputs, in the node's order (an empty
/// name is an optional input left out).
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxOp {
    /// A constant tensor (`Constant`, or an initializer that is not a parameter).
    Constant(TensorValue),
    /// `Identity`, and `Dropout` outside training.
    Identity,
    /// `Dropout`: active in training only, with the ratio of its second input (0.5 without).
    Dropout,
    /// `Conv`.
    Conv(ConvAttrs),
    /// `ConvTranspose`.
    ConvTranspose(ConvAttrs),
    /// `BatchNormalization` (inference form); `momentum` is PyTorch's (1 - ONNX's).
    BatchNorm {
        /// Epsilon.
        eps: f64,
        /// Weight of a new batch in the running statistics.
        momentum: f64,
    },
    /// `LayerNormalization` over the axes from `axis` on.
    LayerNorm {
        /// The first normalised axis.
        axis: i64,
        /// Epsilon.
        eps: f64,
    },
    /// `Gemm`: `alpha · op(A) op(B) + beta · C`.
    Gemm {
        /// `alpha`.
        alpha: f64,
        /// `beta`.
        beta: f64,
        /// `transA`.
        trans_a: bool,
        /// `transB`.
        trans_b: bool,
    },
    /// `MatMul`.
    MatMul,
    /// An elementwise operation of one input.
    Unary(Unary),
    /// An elementwise operation of two inputs (or more, folded left to right).
    Binary(Binary),
    /// `LeakyRelu`.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f64,
    },
    /// `HardSigmoid`: `clamp(alpha x + beta, 0, 1)`.
    HardSigmoid {
        /// `alpha`.
        alpha: f64,
        /// `beta`.
        beta: f64,
    },
    /// `Gelu`.
    Gelu {
        /// The tanh approximation rather than the exact form.
        tanh: bool,
    },
    /// `Clip` with optional minimum and maximum inputs.
    Clip,
    /// `Softmax` over one axis.
    Softmax {
        /// The axis.
        axis: i64,
    },
    /// `LogSoftmax` over one axis.
    LogSoftmax {
        /// The axis.
        axis: i64,
    },
    /// `MaxPool`.
    MaxPool(PoolAttrs),
    /// `AveragePool`.
    AveragePool(PoolAttrs),
    /// `GlobalAveragePool`.
    GlobalAveragePool,
    /// `GlobalMaxPool`.
    GlobalMaxPool,
    /// A reduction; the axes come from the attribute (`axes`) or from the second input.
    Reduce {
        /// Which reduction.
        op: Reduction,
        /// Axes given as an attribute (older operator sets).
        axes: Option<Vec<i64>>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
        /// No axes means the identity rather than every axis.
        noop_with_empty_axes: bool,
    },
    /// `Flatten` to two dimensions at `axis`.
    Flatten {
        /// The axis.
        axis: i64,
    },
    /// `Reshape` to the shape of the second input.
    Reshape {
        /// A 0 in the shape is a size of 0 rather than "copy this dimension".
        allowzero: bool,
    },
    /// `Transpose`.
    Transpose {
        /// The permutation (none: reverse the axes).
        perm: Option<Vec<i64>>,
    },
    /// `Concat`.
    Concat {
        /// The axis.
        axis: i64,
    },
    /// `Shape`, optionally a range of the dimensions.
    Shape {
        /// First dimension.
        start: i64,
        /// End (exclusive), none: to the last.
        end: Option<i64>,
    },
    /// `Gather` along an axis.
    Gather {
        /// The axis.
        axis: i64,
    },
    /// `GatherND` (no batch dimensions).
    GatherNd,
    /// `Unsqueeze`; the axes come from the attribute or the second input.
    Unsqueeze {
        /// Axes given as an attribute (older operator sets).
        axes: Option<Vec<i64>>,
    },
    /// `Squeeze`; the axes come from the attribute or the second input (none: every axis of
    /// size 1).
    Squeeze {
        /// Axes given as an attribute (older operator sets).
        axes: Option<Vec<i64>>,
    },
    /// Output `index` of a `Split` into `parts` pieces.
    SplitPart {
        /// The axis.
        axis: i64,
        /// Which piece.
        index: usize,
        /// How many pieces the node makes.
        parts: usize,
        /// Sizes given as an attribute (older operator sets); otherwise the second input, or
        /// equal pieces.
        sizes: Option<Vec<i64>>,
    },
    /// `SequenceAt` of a `SplitToSequence`: inputs the split tensor, the split (optional) and
    /// the position.
    SplitAt {
        /// The axis.
        axis: i64,
        /// Keep the split axis when the pieces are single elements (no split given).
        keepdims: bool,
    },
    /// `Slice` with starts, ends, axes and steps as inputs.
    Slice,
    /// `Pad` with pads, constant value and axes as inputs.
    Pad {
        /// `constant`, `reflect`, `edge` or `wrap`, as libtorch names them.
        mode: &'static str,
    },
    /// `Cast`.
    Cast {
        /// The element type.
        to: Kind,
    },
    /// `CastLike`: the first input in the element type (and on the device) of the second.
    CastLike,
    /// `Expand` (broadcast) to the shape of the second input.
    Expand,
    /// `Range(start, limit, delta)`.
    Range,
    /// `ConstantOfShape`: a tensor of the second input's shape filled with this one-element
    /// value.
    ConstantOfShape(TensorValue),
    /// `Where(condition, x, y)`.
    Where,
}

/// The libtorch element type of an ONNX one.
pub fn kind_of(elem_type: i32) -> Option<Kind> {
    Some(match elem_type {
        elem::FLOAT => Kind::Float,
        elem::DOUBLE => Kind::Double,
        elem::FLOAT16 => Kind::Half,
        elem::BFLOAT16 => Kind::BFloat16,
        elem::INT64 => Kind::Int64,
        elem::INT32 => Kind::Int,
        elem::INT16 => Kind::Int16,
        elem::INT8 => Kind::Int8,
        elem::UINT8 => Kind::Uint8,
        elem::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// What a node is, for messages: `Conv node "conv1"`.
pub fn describe(node: &GraphNode) -> String {
    let name = if node.name.is_empty() {
        node.outputs.first().map_or("", String::as_str)
    } else {
        node.name.as_str()
    };
    format!("{} node `{name}`", node.op_type)
}

/// An unsupported operator or attribute: one line naming the node and what to do.
pub fn unsupported(node: &GraphNode, what: &str, hint: &str) -> Error {
    Error::Arch(format!(
        "the ONNX import does not support {what} ({}); {hint}",
        describe(node)
    ))
}

const EXPORT_HINT: &str = "export with torch.onnx.export(model.eval(), args, path, dynamo=True, \
     optimize=False), or rewrite that layer with the operators docs/architectures.md lists";

struct Attrs<'a> {
    node: &'a GraphNode,
}

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttrValue> {
        self.node.attribute(name)
    }

    fn wrong(&self, name: &str, expected: &str) -> Error {
        Error::Arch(format!(
            "{}: attribute `{name}` is not {expected}",
            describe(self.node)
        ))
    }

    fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(_) => Err(self.wrong(name, "an integer")),
        }
    }

    fn float(&self, name: &str, default: f64) -> Result<f64> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(f64::from(*v)),
            Some(_) => Err(self.wrong(name, "a float")),
        }
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.wrong(name, "a list of integers")),
        }
    }

    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(AttrValue::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    fn padding(&self) -> Result<Padding> {
        let auto = self.string("auto_pad", "NOTSET")?;
        match auto.as_str() {
            "NOTSET" | "" => Ok(Padding::Explicit(self.ints("pads")?.unwrap_or_default())),
            "VALID" => Ok(Padding::Explicit(Vec::new())),
            "SAME_UPPER" => Ok(Padding::Same { upper: true }),
            "SAME_LOWER" => Ok(Padding::Same { upper: false }),
            other => Err(unsupported(
                self.node,
                &format!("auto_pad `{other}`"),
                EXPORT_HINT,
            )),
        }
    }

    fn conv(&self, transposed: bool) -> Result<ConvAttrs> {
        if transposed && self.get("output_shape").is_some() {
            return Err(unsupported(
                self.node,
                "ConvTranspose with `output_shape`",
                "give the padding instead (PyTorch's exporter does)",
            ));
        }
        Ok(ConvAttrs {
            strides: self.ints("strides")?.unwrap_or_default(),
            dilations: self.ints("dilations")?.unwrap_or_default(),
            padding: self.padding()?,
            group: self.int("group", 1)?,
            output_padding: self.ints("output_padding")?.unwrap_or_default(),
        })
    }

    fn pool(&self) -> Result<PoolAttrs> {
        let kernel = self
            .ints("kernel_shape")?
            .ok_or_else(|| self.wrong("kernel_shape", "given"))?;
        if self.int("storage_order", 0)? != 0 {
            return Err(unsupported(self.node, "storage_order 1", EXPORT_HINT));
        }
        Ok(PoolAttrs {
            kernel,
            strides: self.ints("strides")?.unwrap_or_default(),
            dilations: self.ints("dilations")?.unwrap_or_default(),
            padding: self.padding()?,
            ceil_mode: self.int("ceil_mode", 0)? != 0,
            count_include_pad: self.int("count_include_pad", 0)? != 0,
        })
    }

    fn constant(&self) -> Result<TensorValue> {
        use modeconn_runtime::graph::TensorData;
        let (name, attr) = self
            .node
            .attributes
            .first()
            .map(|a| (a.name.as_str(), &a.value))
            .ok_or_else(|| Error::Arch(format!("{} has no value", describe(self.node))))?;
        let scalar = |data| TensorValue {
            dims: Vec::new(),
            data,
        };
        let list = |n: usize, data| TensorValue {
            dims: vec![n as i64],
            data,
        };
        Ok(match (name, attr) {
            ("value", AttrValue::Tensor(t)) => t.clone(),
            ("value_float", AttrValue::Float(v)) => scalar(TensorData::Float(vec![*v])),
            ("value_int", AttrValue::Int(v)) => scalar(TensorData::Int64(vec![*v])),
            ("value_floats", AttrValue::Floats(v)) => list(v.len(), TensorData::Float(v.clone())),
            ("value_ints", AttrValue::Ints(v)) => list(v.len(), TensorData::Int64(v.clone())),
            (other, _) => {
                return Err(unsupported(
                    self.node,
                    &format!("a Constant given by `{other}`"),
                    EXPORT_HINT,
                ));
            }
        })
    }
}

/// The operations of one node: one per output that is used (`Split` has several, every other
/// supported operator one). `used(name)` says whether a value is read anywhere.
///
/// Fails with one line naming the node when its operator, domain or an attribute is not
/// supported, or when it has an output the import cannot compute and the graph reads.
pub fn parse(node: &GraphNode, opset: i64, used: &dyn Fn(&str) -> bool) -> Result<Vec<OnnxOp>> {
    if !node.is_standard() {
        return Err(unsupported(
            node,
            &format!("operators of domain `{}`", node.domain),
            "such operators come from optimised or custom exports; export with \
             torch.onnx.export(..., dynamo=True, optimize=False)",
        ));
    }
    let a = Attrs { node };
    // Only the first output of these operators can be computed; the others (a dropout mask,
    // pooling indices, saved statistics) must be unused.
    if node.op_type != "Split"
        && let Some(extra) = node
            .outputs
            .iter()
            .skip(1)
            .find(|o| !o.is_empty() && used(o))
    {
        return Err(unsupported(
            node,
            &format!("reading its output `{extra}`"),
            "export in eval mode (model.eval()), where only the first output is produced",
        ));
    }
    let op = match node.op_type.as_str() {
        "Constant" => OnnxOp::Constant(a.constant()?),
        "Identity" => OnnxOp::Identity,
        "Dropout" => OnnxOp::Dropout,
        "Conv" => OnnxOp::Conv(a.conv(false)?),
        "ConvTranspose" => OnnxOp::ConvTranspose(a.conv(true)?),
        "BatchNormalization" => {
            if a.int("training_mode", 0)? != 0 {
                return Err(unsupported(
                    node,
                    "BatchNormalization in training mode",
                    "export the model in eval mode (model.eval())",
                ));
            }
            let m = a.float("momentum", 0.9)?;
            OnnxOp::BatchNorm {
                eps: a.float("epsilon", 1e-5)?,
                momentum: if m > 0.0 && m < 1.0 {
                    1.0 - m
                } else {
                    super::super::TRAIN_MOMENTUM
                },
            }
        }
        "LayerNormalization" => OnnxOp::LayerNorm {
            axis: a.int("axis", -1)?,
            eps: a.float("epsilon", 1e-5)?,
        },
        "Gemm" => OnnxOp::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
        },
        "MatMul" => OnnxOp::MatMul,
        "Relu" => OnnxOp::Unary(Unary::Relu),
        "Sigmoid" => OnnxOp::Unary(Unary::Sigmoid),
        "Tanh" => OnnxOp::Unary(Unary::Tanh),
        "HardSwish" => OnnxOp::Unary(Unary::HardSwish),
        "Abs" => OnnxOp::Unary(Unary::Abs),
        "Neg" => OnnxOp::Unary(Unary::Neg),
        "Floor" => OnnxOp::Unary(Unary::Floor),
        "Ceil" => OnnxOp::Unary(Unary::Ceil),
        "Sign" => OnnxOp::Unary(Unary::Sign),
        "Sqrt" => OnnxOp::Unary(Unary::Sqrt),
        "Exp" => OnnxOp::Unary(Unary::Exp),
        "Log" => OnnxOp::Unary(Unary::Log),
        "Erf" => OnnxOp::Unary(Unary::Erf),
        "Reciprocal" => OnnxOp::Unary(Unary::Reciprocal),
        "Softplus" => OnnxOp::Unary(Unary::Softplus),
        "Not" => OnnxOp::Unary(Unary::Not),
        "Add" | "Sum" => OnnxOp::Binary(Binary::Add),
        "Sub" => OnnxOp::Binary(Binary::Sub),
        "Mul" => OnnxOp::Binary(Binary::Mul),
        "Div" => OnnxOp::Binary(Binary::Div),
        "Pow" => OnnxOp::Binary(Binary::Pow),
        "Max" => OnnxOp::Binary(Binary::Max),
        "Min" => OnnxOp::Binary(Binary::Min),
        "Equal" => OnnxOp::Binary(Binary::Equal),
        "Less" => OnnxOp::Binary(Binary::Less),
        "Greater" => OnnxOp::Binary(Binary::Greater),
        "LeakyRelu" => OnnxOp::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        },
        "HardSigmoid" => OnnxOp::HardSigmoid {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        },
        "Gelu" => match a.string("approximate", "none")?.as_str() {
            "none" => OnnxOp::Gelu { tanh: false },
            "tanh" => OnnxOp::Gelu { tanh: true },
            other => {
                return Err(unsupported(
                    node,
                    &format!("Gelu approximation `{other}`"),
                    EXPORT_HINT,
                ));
            }
        },
        "Clip" => {
            if a.get("min").is_some() || a.get("max").is_some() {
                return Err(unsupported(
                    node,
                    "Clip with attribute bounds (operator set 10 or older)",
                    "export with operator set 13 or later (dynamo=True does)",
                ));
            }
            OnnxOp::Clip
        }
        "Softmax" | "LogSoftmax" => {
            if opset < 13 {
                return Err(unsupported(
                    node,
                    &format!("{} of operator set {opset}", node.op_type),
                    "export with operator set 13 or later (dynamo=True does)",
                ));
            }
            let axis = a.int("axis", -1)?;
            if node.op_type == "Softmax" {
                OnnxOp::Softmax { axis }
            } else {
                OnnxOp::LogSoftmax { axis }
            }
        }
        "MaxPool" => OnnxOp::MaxPool(a.pool()?),
        "AveragePool" => OnnxOp::AveragePool(a.pool()?),
        "GlobalAveragePool" => OnnxOp::GlobalAveragePool,
        "GlobalMaxPool" => OnnxOp::GlobalMaxPool,
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => OnnxOp::Reduce {
            op: match node.op_type.as_str() {
                "ReduceMean" => Reduction::Mean,
                "ReduceSum" => Reduction::Sum,
                "ReduceMax" => Reduction::Max,
                _ => Reduction::Min,
            },
            axes: a.ints("axes")?,
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        },
        "Flatten" => OnnxOp::Flatten {
            axis: a.int("axis", 1)?,
        },
        "Reshape" => OnnxOp::Reshape {
            allowzero: a.int("allowzero", 0)? != 0,
        },
        "Transpose" => OnnxOp::Transpose {
            perm: a.ints("perm")?,
        },
        "Concat" => OnnxOp::Concat {
            axis: a.int("axis", 0)?,
        },
        "Shape" => OnnxOp::Shape {
            start: a.int("start", 0)?,
            end: match a.get("end") {
                None => None,
                Some(_) => Some(a.int("end", 0)?),
            },
        },
        "Gather" => OnnxOp::Gather {
            axis: a.int("axis", 0)?,
        },
        "GatherND" => {
            if a.int("batch_dims", 0)? != 0 {
                return Err(unsupported(node, "GatherND with batch_dims", EXPORT_HINT));
            }
            OnnxOp::GatherNd
        }
        "Unsqueeze" => OnnxOp::Unsqueeze {
            axes: a.ints("axes")?,
        },
        "Squeeze" => OnnxOp::Squeeze {
            axes: a.ints("axes")?,
        },
        "Split" => {
            let axis = a.int("axis", 0)?;
            let sizes = a.ints("split")?;
            let parts = node.outputs.len();
            return Ok((0..parts)
                .map(|index| OnnxOp::SplitPart {
                    axis,
                    index,
                    parts,
                    sizes: sizes.clone(),
                })
                .collect());
        }
        "Slice" => {
            if a.get("starts").is_some() {
                return Err(unsupported(
                    node,
                    "Slice with attribute bounds (operator set 9 or older)",
                    "export with operator set 13 or later (dynamo=True does)",
                ));
            }
            OnnxOp::Slice
        }
        "Pad" => {
            if a.get("pads").is_some() {
                return Err(unsupported(
                    node,
                    "Pad with attribute pads (operator set 10 or older)",
                    "export with operator set 13 or later (dynamo=True does)",
                ));
            }
            OnnxOp::Pad {
                mode: match a.string("mode", "constant")?.as_str() {
                    "constant" => "constant",
                    "reflect" => "reflect",
                    "edge" => "replicate",
                    "wrap" => "circular",
                    other => {
                        return Err(unsupported(
                            node,
                            &format!("Pad mode `{other}`"),
                            EXPORT_HINT,
                        ));
                    }
                },
            }
        }
        "Cast" => {
            let to = a.int("to", 0)?;
            OnnxOp::Cast {
                to: i32::try_from(to).ok().and_then(kind_of).ok_or_else(|| {
                    unsupported(
                        node,
                        &format!("casting to element type {}", elem::name(to as i32)),
                        EXPORT_HINT,
                    )
                })?,
            }
        }
        "CastLike" => OnnxOp::CastLike,
        "Expand" => OnnxOp::Expand,
        "Range" => OnnxOp::Range,
        "ConstantOfShape" => OnnxOp::ConstantOfShape(match a.get("value") {
            Some(AttrValue::Tensor(t)) if t.data.len() == 1 => t.clone(),
            Some(_) => return Err(a.wrong("value", "a one-element tensor")),
            None => TensorValue {
                dims: vec![1],
                data: modeconn_runtime::graph::TensorData::Float(vec![0.0]),
            },
        }),
        "Where" => OnnxOp::Where,
        "If" | "Loop" | "Scan" => {
            return Err(unsupported(
                node,
                "control flow",
                "export a graph without data-dependent branches or loops (torch.cond and \
                 Python control flow on tensor values make them)",
            ));
        }
        other => {
            return Err(unsupported(
                node,
                &format!("the operator `{other}`"),
                EXPORT_HINT,
            ));
        }
    };
    Ok(vec![op])
}
