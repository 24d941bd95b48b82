//! Running imported operations in libtorch, with ONNX's semantics.
//!
//! Values that describe shapes (`Shape`, the integer constants, what is computed from them)
//! stay on the CPU as `int64` tensors and are read on the host where an operation needs sizes;
//! floating-point constants are created on the device of the network's input. When the inputs
//! of an elementwise operation live on different devices, the one on the CPU is moved.

use modeconn_runtime::graph::{TensorData, TensorValue};
use tch::{Device, Kind, Tensor};

use super::ops::{Binary, ConvAttrs, OnnxOp, Padding, PoolAttrs, Reduction, Unary};
use crate::arch::Mode;
use crate::{Error, Result};

/// The inputs of one operation, by position (`None`: left out).
pub struct Inputs<'a> {
    /// What the operation is, for messages (`Conv node "conv1"`).
    pub node: &'a str,
    /// The tensors.
    pub values: Vec<Option<&'a Tensor>>,
}

impl Inputs<'_> {
    fn get(&self, i: usize) -> Result<&Tensor> {
        self.values.get(i).copied().flatten().ok_or_else(|| {
            Error::Arch(format!(
                "{}: input {i} is required but not given",
                self.node
            ))
        })
    }

    fn opt(&self, i: usize) -> Option<&Tensor> {
        self.values.get(i).copied().flatten()
    }

    fn fail(&self, reason: impl std::fmt::Display) -> Error {
        Error::Arch(format!("{}: {reason}", self.node))
    }

    /// The values of input `i` on the host, as integers.
    fn ints(&self, i: usize) -> Result<Vec<i64>> {
        host_ints(self.get(i)?)
    }

    fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>> {
        self.opt(i).map(host_ints).transpose()
    }
}

/// The values of a tensor on the host, as `i64`.
fn host_ints(t: &Tensor) -> Result<Vec<i64>> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Int64)?
        .f_contiguous()?
        .f_view([-1])?;
    Ok(Vec::<i64>::try_from(&t)?)
}

/// The one value of a tensor on the host, as `f64`.
fn host_scalar(t: &Tensor) -> Result<f64> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Double)?
        .f_view([-1])?;
    let v = Vec::<f64>::try_from(&t)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(Error::Arch(format!(
            "expected one value, got {} values",
            v.len()
        ))),
    }
}

/// A tensor from a constant's values: floating point on `device`, everything else on the CPU.
pub fn constant(value: &TensorValue, device: Device) -> Result<Tensor> {
    let t = match &value.data {
        TensorData::Float(v) => Tensor::f_from_slice(v)?.f_to_device(device)?,
        TensorData::Double(v) => Tensor::f_from_slice(v)?.f_to_device(device)?,
        TensorData::Int64(v) => Tensor::f_from_slice(v)?,
        TensorData::Int32(v) => Tensor::f_from_slice(v)?,
        TensorData::Bool(v) => Tensor::f_from_slice(v)?,
    };
    Ok(t.f_reshape(value.dims.as_slice())?)
}

/// Moves the tensor on the CPU to the other's device when they differ.
fn align(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let (da, db) = (a.device(), b.device());
    if da == db {
        Ok((a.shallow_clone(), b.shallow_clone()))
    } else if da == Device::Cpu {
        Ok((a.f_to_device(db)?, b.shallow_clone()))
    } else {
        Ok((a.shallow_clone(), b.f_to_device(da)?))
    }
}

fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

/// An axis in `[0, rank)` from ONNX's `[-rank, rank)`.
fn axis(node: &Inputs<'_>, a: i64, rank: usize) -> Result<i64> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v)
    } else {
        Err(node.fail(format!("axis {a} is out of range for rank {rank}")))
    }
}

/// Runs one operation.
pub fn run(op: &OnnxOp, inputs: &Inputs<'_>, mode: Mode, device: Device) -> Result<Tensor> {
    let x = || inputs.get(0);
    Ok(match op {
        OnnxOp::Constant(value) => constant(value, device)?,
        OnnxOp::Identity => x()?.shallow_clone(),
        OnnxOp::Dropout => {
            let ratio = inputs.opt(1).map(host_scalar).transpose()?.unwrap_or(0.5);
            if mode == Mode::Train && ratio > 0.0 {
                x()?.f_dropout(ratio, true)?
            } else {
                x()?.shallow_clone()
            }
        }
        OnnxOp::Conv(attrs) => conv(inputs, attrs, false)?,
        OnnxOp::ConvTranspose(attrs) => conv(inputs, attrs, true)?,
        OnnxOp::BatchNorm { eps, momentum } => {
            let (training, momentum) = match mode {
                Mode::Train => (true, *momentum),
                Mode::Eval => (false, 0.0),
                Mode::Statistics { momentum } => (true, momentum),
            };
            x()?.f_batch_norm(
                Some(inputs.get(1)?),
                Some(inputs.get(2)?),
                Some(inputs.get(3)?),
                Some(inputs.get(4)?),
                training,
                momentum,
                *eps,
                true,
            )?
        }
        OnnxOp::LayerNorm { axis: a, eps } => {
            let x = x()?;
            let size = x.size();
            let first = axis(inputs, *a, size.len())? as usize;
            x.f_layer_norm(
                &size[first..],
                Some(inputs.get(1)?),
                inputs.opt(2),
                *eps,
                true,
            )?
        }
        OnnxOp::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let mut a = x()?.shallow_clone();
            let mut b = inputs.get(1)?.shallow_clone();
            if *trans_a {
                a = a.f_transpose(0, 1)?;
            }
            if *trans_b {
                b = b.f_transpose(0, 1)?;
            }
            let mut y = a.f_matmul(&b)?;
            if *alpha != 1.0 {
                y = y.f_mul_scalar(*alpha)?;
            }
            if let Some(c) = inputs.opt(2) {
                let c = if *beta == 1.0 {
                    c.shallow_clone()
                } else {
                    c.f_mul_scalar(*beta)?
                };
                y = y.f_add(&c)?;
            }
            y
        }
        OnnxOp::MatMul => {
            let (a, b) = align(x()?, inputs.get(1)?)?;
            a.f_matmul(&b)?
        }
        OnnxOp::Unary(u) => unary(*u, x()?)?,
        OnnxOp::Binary(b) => {
            let mut y = x()?.shallow_clone();
            for i in 1..inputs.values.len() {
                y = binary(*b, &y, inputs.get(i)?)?;
            }
            y
        }
        OnnxOp::LeakyRelu { alpha } => {
            let x = x()?;
            x.f_where_self(&x.f_ge(0.0)?, &x.f_mul_scalar(*alpha)?)?
        }
        OnnxOp::HardSigmoid { alpha, beta } => x()?
            .f_mul_scalar(*alpha)?
            .f_add_scalar(*beta)?
            .f_clamp(0.0, 1.0)?,
        OnnxOp::Gelu { tanh } => x()?.f_gelu(if *tanh { "tanh" } else { "none" })?,
        OnnxOp::Clip => {
            let x = x()?;
            let bound = |i| {
                inputs
                    .opt(i)
                    .map(|b: &Tensor| b.f_to_device(x.device())?.f_to_kind(x.kind()))
                    .transpose()
            };
            let (lo, hi) = (bound(1)?, bound(2)?);
            if lo.is_none() && hi.is_none() {
                x.shallow_clone()
            } else {
                x.f_clamp_tensor(lo, hi)?
            }
        }
        OnnxOp::Softmax { axis: a } => {
            let x = x()?;
            x.f_softmax(axis(inputs, *a, x.dim())?, None::<Kind>)?
        }
        OnnxOp::LogSoftmax { axis: a } => {
            let x = x()?;
            x.f_log_softmax(axis(inputs, *a, x.dim())?, None::<Kind>)?
        }
        OnnxOp::MaxPool(p) => pool(inputs, p, true)?,
        OnnxOp::AveragePool(p) => pool(inputs, p, false)?,
        OnnxOp::GlobalAveragePool | OnnxOp::GlobalMaxPool => {
            let x = x()?;
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            if matches!(op, OnnxOp::GlobalAveragePool) {
                x.f_mean_dim(dims.as_slice(), true, None::<Kind>)?
            } else {
                x.f_amax(dims.as_slice(), true)?
            }
        }
        OnnxOp::Reduce {
            op: r,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => a.clone(),
                None => inputs.opt_ints(1)?.unwrap_or_default(),
            };
            if axes.is_empty() && *noop_with_empty_axes {
                return Ok(x.shallow_clone());
            }
            let axes: Vec<i64> = if axes.is_empty() {
                (0..x.dim() as i64).collect()
            } else {
                axes.iter()
                    .map(|&a| axis(inputs, a, x.dim()))
                    .collect::<Result<_>>()?
            };
            match r {
                Reduction::Mean => x.f_mean_dim(axes.as_slice(), *keepdims, None::<Kind>)?,
                Reduction::Sum => x.f_sum_dim_intlist(axes.as_slice(), *keepdims, None::<Kind>)?,
                Reduction::Max => x.f_amax(axes.as_slice(), *keepdims)?,
                Reduction::Min => x.f_amin(axes.as_slice(), *keepdims)?,
            }
        }
        OnnxOp::Flatten { axis: a } => {
            let x = x()?;
            let size = x.size();
            let a = if *a == size.len() as i64 {
                *a
            } else {
                axis(inputs, *a, size.len())?
            } as usize;
            let outer: i64 = size[..a].iter().product();
            let inner: i64 = size[a..].iter().product();
            x.f_reshape([outer, inner])?
        }
        OnnxOp::Reshape { allowzero } => {
            let x = x()?;
            let size = x.size();
            let mut shape = inputs.ints(1)?;
            if !allowzero {
                for (i, d) in shape.iter_mut().enumerate() {
                    if *d == 0 {
                        *d = *size.get(i).ok_or_else(|| {
                            inputs.fail(format!("a 0 at position {i} has no dimension to copy"))
                        })?;
                    }
                }
            }
            x.f_reshape(shape.as_slice())?
        }
        OnnxOp::Transpose { perm } => {
            let x = x()?;
            let perm = perm
                .clone()
                .unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
            x.f_permute(perm.as_slice())?
        }
        OnnxOp::Concat { axis: a } => {
            let parts: Vec<&Tensor> = inputs.values.iter().flatten().copied().collect();
            let first = parts.first().ok_or_else(|| inputs.fail("no inputs"))?;
            let device = parts
                .iter()
                .map(|t| t.device())
                .find(|d| *d != Device::Cpu)
                .unwrap_or(Device::Cpu);
            let parts = parts
                .iter()
                .map(|t| t.f_to_device(device))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Tensor::f_cat(&parts, axis(inputs, *a, first.dim())?)?
        }
        OnnxOp::Shape { start, end } => {
            let size = x()?.size();
            let r = size.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clampi(*start), clampi(end.unwrap_or(r)));
            let dims = if s < e { &size[s..e] } else { &size[0..0] };
            Tensor::f_from_slice(dims)?
        }
        OnnxOp::Gather { axis: a } => {
            let data = x()?;
            let indices = inputs.get(1)?;
            let size = data.size();
            let a = axis(inputs, *a, size.len())?;
            let n = size[a as usize];
            let flat = indices.f_to_kind(Kind::Int64)?.f_reshape([-1])?;
            // Negative indices count from the end.
            let flat = flat.f_remainder(n)?.f_to_device(data.device())?;
            let picked = data.f_index_select(a, &flat)?;
            let mut shape: Vec<i64> = size[..a as usize].to_vec();
            shape.extend(indices.size());
            shape.extend(&size[a as usize + 1..]);
            picked.f_reshape(shape.as_slice())?
        }
        OnnxOp::GatherNd => {
            let data = x()?;
            let indices = inputs.get(1)?.f_to_kind(Kind::Int64)?;
            let m = *indices
                .size()
                .last()
                .ok_or_else(|| inputs.fail("scalar indices"))?;
            let indices = indices.f_to_device(data.device())?;
            let index: Vec<Option<Tensor>> = (0..m)
                .map(|j| indices.f_select(-1, j).map(Some))
                .collect::<std::result::Result<_, _>>()?;
            data.f_index(&index)?
        }
        OnnxOp::Unsqueeze { axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => a.clone(),
                None => inputs.ints(1)?,
            };
            let rank = x.dim() + axes.len();
            let mut axes = axes
                .iter()
                .map(|&a| axis(inputs, a, rank))
                .collect::<Result<Vec<_>>>()?;
            axes.sort_unstable();
            let mut y = x.shallow_clone();
            for a in axes {
                y = y.f_unsqueeze(a)?;
            }
            y
        }
        OnnxOp::Squeeze { axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => inputs.opt_ints(1)?,
            };
            match axes {
                None => x.f_squeeze()?,
                Some(axes) => {
                    let axes = axes
                        .iter()
                        .map(|&a| axis(inputs, a, x.dim()))
                        .collect::<Result<Vec<_>>>()?;
                    x.f_squeeze_dims(axes.as_slice())?
                }
            }
        }
        OnnxOp::SplitPart {
            axis: a,
            index,
            parts,
            sizes,
        } => {
            let x = x()?;
            let a = axis(inputs, *a, x.dim())?;
            let n = x.size()[a as usize];
            let sizes = match sizes {
                Some(s) => s.clone(),
                None => match inputs.opt_ints(1)? {
                    Some(s) => s,
                    None => {
                        let piece = (n + *parts as i64 - 1) / (*parts as i64).max(1);
                        (0..*parts as i64)
                            .map(|i| (n - i * piece).clamp(0, piece))
                            .collect()
                    }
                },
            };
            if sizes.len() != *parts || sizes.iter().sum::<i64>() != n {
                return Err(inputs.fail(format!(
                    "split sizes {sizes:?} do not divide {n} into {parts} pieces"
                )));
            }
            let start: i64 = sizes[..*index].iter().sum();
            x.f_narrow(a, start, sizes[*index])?
        }
        OnnxOp::SplitAt { axis: a, keepdims } => {
            let x = x()?;
            let a = axis(inputs, *a, x.dim())?;
            let n = x.size()[a as usize];
            let sizes = match inputs.opt_ints(1)? {
                None => vec![1; n as usize],
                Some(s) if inputs.get(1)?.dim() == 0 => {
                    let piece = s[0].max(1);
                    (0..(n + piece - 1) / piece)
                        .map(|i| (n - i * piece).min(piece))
                        .collect()
                }
                Some(s) => s,
            };
            if sizes.iter().sum::<i64>() != n {
                return Err(inputs.fail(format!("split sizes {sizes:?} do not add up to {n}")));
            }
            let count = sizes.len() as i64;
            let p = inputs.ints(2)?.first().copied().unwrap_or(0);
            let p = if p < 0 { p + count } else { p };
            if !(0..count).contains(&p) {
                return Err(inputs.fail(format!("position {p} of a sequence of {count}")));
            }
            let start: i64 = sizes[..p as usize].iter().sum();
            let piece = x.f_narrow(a, start, sizes[p as usize])?;
            if inputs.opt(1).is_none() && !keepdims {
                piece.f_squeeze_dims([a].as_slice())?
            } else {
                piece
            }
        }
        OnnxOp::Slice => slice(inputs)?,
        OnnxOp::Pad { mode } => pad(inputs, mode)?,
        OnnxOp::Cast { to } => x()?.f_to_kind(*to)?,
        OnnxOp::CastLike => {
            let like = inputs.get(1)?;
            x()?.f_to_device(like.device())?.f_to_kind(like.kind())?
        }
        OnnxOp::Expand => {
            let x = x()?;
            let target = inputs.ints(1)?;
            let shape = broadcast(inputs, &x.size(), &target)?;
            x.f_expand(shape.as_slice(), false)?
        }
        OnnxOp::Range => {
            let start = inputs.get(0)?;
            let kind = start.kind();
            let (s, l, d) = (
                host_scalar(start)?,
                host_scalar(inputs.get(1)?)?,
                host_scalar(inputs.get(2)?)?,
            );
            if d == 0.0 {
                return Err(inputs.fail("delta is 0"));
            }
            let count = ((l - s) / d).ceil().max(0.0);
            if count > 1e9 {
                return Err(inputs.fail(format!("a range of {count} values")));
            }
            if is_float(kind) {
                Tensor::f_arange_start_step(s, s + count * d - d / 2.0, d, (kind, start.device()))?
            } else {
                let (s, d) = (s as i64, d as i64);
                Tensor::f_arange_start_step(s, s + count as i64 * d, d, (kind, Device::Cpu))?
            }
        }
        OnnxOp::ConstantOfShape(value) => {
            let shape = inputs.ints(0)?;
            let one = constant(value, device)?;
            one.f_reshape([1])?
                .f_expand(shape.as_slice(), false)?
                .f_contiguous()?
        }
        OnnxOp::Where => {
            let cond = inputs.get(0)?;
            let (a, b) = align(inputs.get(1)?, inputs.get(2)?)?;
            let cond = cond.f_to_device(a.device())?;
            a.f_where_self(&cond, &b)?
        }
    })
}

fn unary(u: Unary, x: &Tensor) -> Result<Tensor> {
    Ok(match u {
        Unary::Relu => x.f_relu()?,
        Unary::Sigmoid => x.f_sigmoid()?,
        Unary::Tanh => x.f_tanh()?,
        Unary::HardSwish => x.f_hardswish()?,
        Unary::Abs => x.f_abs()?,
        Unary::Neg => x.f_neg()?,
        Unary::Floor => x.f_floor()?,
        Unary::Ceil => x.f_ceil()?,
        Unary::Sign => x.f_sign()?,
        Unary::Sqrt => x.f_sqrt()?,
        Unary::Exp => x.f_exp()?,
        Unary::Log => x.f_log()?,
        Unary::Erf => x.f_erf()?,
        Unary::Reciprocal => x.f_reciprocal()?,
        Unary::Softplus => x.f_softplus()?,
        Unary::Not => x.f_logical_not()?,
    })
}

fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = align(a, b)?;
    Ok(match op {
        Binary::Add => a.f_add(&b)?,
        Binary::Sub => a.f_sub(&b)?,
        Binary::Mul => a.f_mul(&b)?,
        Binary::Div if !is_float(a.kind()) && !is_float(b.kind()) => {
            a.f_div_tensor_mode(&b, "trunc")?
        }
        Binary::Div => a.f_div(&b)?,
        Binary::Pow => a.f_pow(&b)?,
        Binary::Max => a.f_maximum(&b)?,
        Binary::Min => a.f_minimum(&b)?,
        Binary::Equal => a.f_eq_tensor(&b)?,
        Binary::Less => a.f_lt_tensor(&b)?,
        Binary::Greater => a.f_gt_tensor(&b)?,
    })
}

/// Numpy broadcasting of two shapes.
fn broadcast(inputs: &Inputs<'_>, a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    let n = a.len().max(b.len());
    let at = |s: &[i64], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(inputs.fail(format!(
                "shapes {a:?} and {b:?} do not broadcast ({x} against {y})"
            ))),
        })
        .collect()
}

/// Pads of every spatial axis as (begin, end) pairs, resolving `SAME_*` against the input.
fn spatial_pads(
    inputs: &Inputs<'_>,
    padding: &Padding,
    input: &[i64],
    kernel: &[i64],
    strides: &[i64],
    dilations: &[i64],
) -> Result<Vec<(i64, i64)>> {
    let n = kernel.len();
    match padding {
        Padding::Explicit(p) if p.is_empty() => Ok(vec![(0, 0); n]),
        Padding::Explicit(p) if p.len() == 2 * n => Ok((0..n).map(|i| (p[i], p[i + n])).collect()),
        Padding::Explicit(p) => Err(inputs.fail(format!(
            "pads {p:?} do not give begin and end for {n} spatial axes"
        ))),
        Padding::Same { upper } => Ok((0..n)
            .map(|i| {
                let s = strides.get(i).copied().unwrap_or(1).max(1);
                let d = dilations.get(i).copied().unwrap_or(1);
                let size = input.get(i).copied().unwrap_or(1);
                let out = (size + s - 1) / s;
                let total = ((out - 1) * s + (kernel[i] - 1) * d + 1 - size).max(0);
                let small = total / 2;
                if *upper {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
    }
}

/// Pads `x`'s spatial axes by `pads` with `value` (libtorch's order: last axis first).
fn pad_spatial(x: &Tensor, pads: &[(i64, i64)], value: f64) -> Result<Tensor> {
    let flat: Vec<i64> = pads.iter().rev().flat_map(|&(b, e)| [b, e]).collect();
    Ok(x.f_pad(flat.as_slice(), "constant", value)?)
}

fn ones_or(v: &[i64], n: usize) -> Vec<i64> {
    if v.is_empty() { vec![1; n] } else { v.to_vec() }
}

fn conv(inputs: &Inputs<'_>, attrs: &ConvAttrs, transposed: bool) -> Result<Tensor> {
    let x = inputs.get(0)?;
    let w = inputs.get(1)?;
    if w.dim() < 3 {
        return Err(inputs.fail(format!(
            "a weight of rank {}; convolutions take [out, in, kernel...]",
            w.dim()
        )));
    }
    let n = w.dim() - 2;
    if x.dim() != n + 2 {
        return Err(inputs.fail(format!(
            "input of rank {} for a weight of rank {}",
            x.dim(),
            w.dim()
        )));
    }
    let strides = ones_or(&attrs.strides, n);
    let dilations = ones_or(&attrs.dilations, n);
    let kernel = &w.size()[2..];
    let pads = spatial_pads(
        inputs,
        &attrs.padding,
        &x.size()[2..],
        kernel,
        &strides,
        &dilations,
    )?;
    let symmetric = pads.iter().all(|(b, e)| b == e);
    let (x, padding) = if symmetric {
        (
            x.shallow_clone(),
            pads.iter().map(|p| p.0).collect::<Vec<_>>(),
        )
    } else if transposed {
        return Err(inputs.fail("ConvTranspose with unequal padding at the two ends"));
    } else {
        (pad_spatial(x, &pads, 0.0)?, vec![0; n])
    };
    let output_padding = if attrs.output_padding.is_empty() {
        vec![0; n]
    } else {
        attrs.output_padding.clone()
    };
    Ok(x.f_convolution(
        w,
        inputs.opt(2),
        strides.as_slice(),
        padding.as_slice(),
        dilations.as_slice(),
        transposed,
        output_padding.as_slice(),
        attrs.group,
    )?)
}

fn pool(inputs: &Inputs<'_>, p: &PoolAttrs, max: bool) -> Result<Tensor> {
    let x = inputs.get(0)?;
    let n = p.kernel.len();
    if x.dim() != n + 2 || !(1..=3).contains(&n) {
        return Err(inputs.fail(format!("a {n}-D kernel on an input of rank {}", x.dim())));
    }
    let strides = ones_or(&p.strides, n);
    let dilations = ones_or(&p.dilations, n);
    let pads = spatial_pads(
        inputs,
        &p.padding,
        &x.size()[2..],
        &p.kernel,
        &strides,
        &dilations,
    )?;
    // libtorch pads both ends by the same amount, at most half the kernel; anything else is
    // padded explicitly first (with -inf for max pooling, zeros when the average counts them).
    let fits = pads
        .iter()
        .zip(&p.kernel)
        .all(|(&(b, e), &k)| b == e && 2 * b <= k);
    let (x, padding) = if fits {
        (
            x.shallow_clone(),
            pads.iter().map(|p| p.0).collect::<Vec<_>>(),
        )
    } else if max {
        (pad_spatial(x, &pads, f64::NEG_INFINITY)?, vec![0; n])
    } else if p.count_include_pad {
        (pad_spatial(x, &pads, 0.0)?, vec![0; n])
    } else {
        return Err(inputs.fail(
            "AveragePool with unequal padding at the two ends that does not count the padding",
        ));
    };
    let (k, s, d, pd) = (
        p.kernel.as_slice(),
        strides.as_slice(),
        dilations.as_slice(),
        padding.as_slice(),
    );
    Ok(match (max, n) {
        (true, 1) => x.f_max_pool1d(k, s, pd, d, p.ceil_mode)?,
        (true, 2) => x.f_max_pool2d(k, s, pd, d, p.ceil_mode)?,
        (true, _) => x.f_max_pool3d(k, s, pd, d, p.ceil_mode)?,
        (false, _) if d.iter().any(|&v| v != 1) => {
            return Err(inputs.fail("AveragePool with dilations"));
        }
        (false, 1) => x.f_avg_pool1d(k, s, pd, p.ceil_mode, p.count_include_pad)?,
        (false, 2) => x.f_avg_pool2d(k, s, pd, p.ceil_mode, p.count_include_pad, None)?,
        (false, _) => x.f_avg_pool3d(k, s, pd, p.ceil_mode, p.count_include_pad, None)?,
    })
}

fn slice(inputs: &Inputs<'_>) -> Result<Tensor> {
    let x = inputs.get(0)?;
    let starts = inputs.ints(1)?;
    let ends = inputs.ints(2)?;
    let rank = x.dim();
    let axes = match inputs.opt_ints(3)? {
        Some(a) => a,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = inputs.opt_ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(inputs.fail("starts, ends, axes and steps differ in length"));
    }
    let mut y = x.shallow_clone();
    for i in 0..starts.len() {
        let a = axis(inputs, axes[i], rank)?;
        let dim = y.size()[a as usize];
        let step = steps[i];
        let fix = |v: i64| if v < 0 { v + dim } else { v };
        if step > 0 {
            let s = fix(starts[i]).clamp(0, dim);
            let e = fix(ends[i]).clamp(0, dim).max(s);
            y = y.f_slice(a, s, e, step)?;
        } else if step < 0 {
            let s = fix(starts[i]).clamp(0, dim - 1);
            let e = fix(ends[i]).clamp(-1, dim - 1);
            let picked: Vec<i64> = (0..).map(|k| s + k * step).take_while(|&v| v > e).collect();
            let index = Tensor::f_from_slice(&picked)?.f_to_device(y.device())?;
            y = y.f_index_select(a, &index)?;
        } else {
            return Err(inputs.fail("a step of 0"));
        }
    }
    Ok(y)
}

fn pad(inputs: &Inputs<'_>, mode: &str) -> Result<Tensor> {
    let x = inputs.get(0)?;
    let rank = x.dim();
    let pads = inputs.ints(1)?;
    let value = inputs.opt(2).map(host_scalar).transpose()?.unwrap_or(0.0);
    let axes = match inputs.opt_ints(3)? {
        Some(a) => a
            .iter()
            .map(|&v| axis(inputs, v, rank).map(|v| v as usize))
            .collect::<Result<Vec<_>>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(inputs.fail(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut per_axis = vec![(0i64, 0i64); rank];
    for (j, &a) in axes.iter().enumerate() {
        per_axis[a] = (pads[j], pads[j + axes.len()]);
    }
    // libtorch takes pairs from the last axis back to the first padded one.
    let first = per_axis
        .iter()
        .position(|&(b, e)| b != 0 || e != 0)
        .unwrap_or(rank);
    if first == rank {
        return Ok(x.shallow_clone());
    }
    let flat: Vec<i64> = per_axis[first..]
        .iter()
        .rev()
        .flat_map(|&(b, e)| [b, e])
        .collect();
    let value = (mode == "constant").then_some(value);
    Ok(x.f_pad(flat.as_slice(), mode, value)?)
}
