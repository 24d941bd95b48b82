//! Running a [`Net`] in libtorch.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::import;
use super::ir::{INPUT, Net, Op};
use super::params::Params;
use crate::{Error, Result};

/// The batch-norm momentum of training mode (PyTorch's default).
pub const TRAIN_MOMENTUM: f64 = 0.1;

/// How batch normalisation and dropout behave in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Training: batch norm normalises with batch statistics and updates the running
    /// statistics in place with momentum [`TRAIN_MOMENTUM`]; dropout is active.
    Train,
    /// Evaluation: batch norm uses the running statistics; no dropout.
    Eval,
    /// Recomputing statistics: batch norm normalises with batch statistics and updates the
    /// running statistics in place with `momentum` (`running = (1 - m) running + m batch`,
    /// the variance unbiased); no dropout. Momentum `1/(i+1)` on batch `i` (from 0) leaves the
    /// average of the batch statistics.
    Statistics {
        /// Weight of the new batch's statistics.
        momentum: f64,
    },
}

/// The logits `[batch, classes]` of `net` for the batch `x` (`[batch, ...net.input]`) with
/// parameter values `params`.
///
/// Every tensor of `params` may be a leaf or computed from others (e.g. a point `w(t)` of a
/// curve): gradients flow to whatever they were computed from. In [`Mode::Train`] and
/// [`Mode::Statistics`] the running statistics in `params` are updated in place (they must be
/// plain tensors without gradient); run under `tch::no_grad` when no gradient is wanted.
pub fn forward(net: &Net, params: &Params, x: &Tensor, mode: Mode) -> Result<Tensor> {
    let size = x.size();
    if size.len() != net.input.len() + 1 || size[1..] != net.input[..] {
        return Err(Error::Data(format!(
            "a batch of shape {size:?} does not fit `{}`, which takes [batch, {}]",
            net.arch,
            net.input
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // The last node reading each value: values are dropped after it, so intermediate
    // activations do not outlive their use (autograd keeps what it needs).
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (i, node) in net.nodes.iter().enumerate() {
        for v in inputs(&node.op) {
            last_use.insert(v, i);
        }
    }
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    values.insert(INPUT, x.shallow_clone());
    for (i, node) in net.nodes.iter().enumerate() {
        let y = run_op(net, params, &values, &node.op, (mode, x.device()))?;
        for v in inputs(&node.op) {
            if last_use.get(v) == Some(&i) && v != net.output() {
                values.remove(v);
            }
        }
        values.insert(node.output.as_str(), y);
    }
    values
        .remove(net.output())
        .ok_or_else(|| Error::Arch(format!("`{}` has no operations", net.arch)))
}

/// The values an operation reads.
fn inputs(op: &Op) -> Vec<&str> {
    match op {
        Op::Normalize { x, .. }
        | Op::Conv { x, .. }
        | Op::BatchNorm { x, .. }
        | Op::Relu { x }
        | Op::MaxPool { x, .. }
        | Op::AvgPool { x, .. }
        | Op::GlobalAvgPool { x }
        | Op::Flatten { x }
        | Op::Linear { x, .. }
        | Op::Dropout { x, .. } => vec![x.as_str()],
        Op::Add { a, b } => vec![a.as_str(), b.as_str()],
        Op::Onnx(imp) => imp
            .inputs
            .iter()
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .collect(),
    }
}

fn param<'a>(net: &Net, params: &'a Params, name: &str) -> Result<&'a Tensor> {
    params
        .get(name)
        .ok_or_else(|| Error::Arch(format!("`{}`: no value for parameter `{name}`", net.arch)))
}

fn run_op(
    net: &Net,
    params: &Params,
    values: &HashMap<&str, Tensor>,
    op: &Op,
    (mode, device): (Mode, tch::Device),
) -> Result<Tensor> {
    let value = |name: &str| {
        values.get(name).ok_or_else(|| {
            Error::Arch(format!(
                "`{}`: value `{name}` is used before it is defined",
                net.arch
            ))
        })
    };
    let y = match op {
        Op::Normalize { x, mean, std } => {
            let x = value(x)?;
            let mut shape = vec![1i64; x.dim()];
            if shape.len() > 1 {
                shape[1] = mean.len() as i64;
            }
            let device = x.device();
            let mean = Tensor::f_from_slice(mean)?
                .f_reshape(shape.as_slice())?
                .f_to(device)?
                .f_to_kind(x.f_kind()?)?;
            let std = Tensor::f_from_slice(std)?
                .f_reshape(shape.as_slice())?
                .f_to(device)?
                .f_to_kind(x.f_kind()?)?;
            x.f_sub(&mean)?.f_div(&std)?
        }
        Op::Conv {
            x,
            weight,
            bias,
            stride,
            padding,
        } => {
            let bias = bias.as_deref().map(|b| param(net, params, b)).transpose()?;
            value(x)?.f_conv2d(
                param(net, params, weight)?,
                bias,
                [*stride, *stride],
                [*padding, *padding],
                [1, 1],
                1,
            )?
        }
        Op::BatchNorm { x, prefix, eps } => {
            let get = |suffix: &str| param(net, params, &format!("{prefix}.{suffix}"));
            let (training, momentum) = match mode {
                Mode::Train => (true, TRAIN_MOMENTUM),
                Mode::Eval => (false, 0.0),
                Mode::Statistics { momentum } => (true, momentum),
            };
            value(x)?.f_batch_norm(
                Some(get("weight")?),
                Some(get("bias")?),
                Some(get("running_mean")?),
                Some(get("running_var")?),
                training,
                momentum,
                *eps,
                true,
            )?
        }
        Op::Relu { x } => value(x)?.f_relu()?,
        Op::MaxPool { x, kernel, stride } => value(x)?.f_max_pool2d(
            [*kernel, *kernel],
            [*stride, *stride],
            [0, 0],
            [1, 1],
            false,
        )?,
        Op::AvgPool { x, kernel, stride } => value(x)?.f_avg_pool2d(
            [*kernel, *kernel],
            [*stride, *stride],
            [0, 0],
            false,
            true,
            None,
        )?,
        Op::GlobalAvgPool { x } => {
            value(x)?.f_mean_dim([2i64, 3].as_slice(), true, None::<Kind>)?
        }
        Op::Flatten { x } => value(x)?.f_flatten(1, -1)?,
        Op::Linear { x, weight, bias } => {
            value(x)?.f_linear(param(net, params, weight)?, Some(param(net, params, bias)?))?
        }
        Op::Add { a, b } => value(a)?.f_add(value(b)?)?,
        Op::Dropout { x, p } => {
            let x = value(x)?;
            if mode == Mode::Train && *p > 0.0 {
                x.f_dropout(*p, true)?
            } else {
                x.shallow_clone()
            }
        }
        Op::Onnx(imp) => {
            let values = imp
                .inputs
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        Ok(None)
                    } else if let Some(t) = values.get(v.as_str()) {
                        Ok(Some(t))
                    } else {
                        param(net, params, v).map(Some)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let inputs = import::Inputs {
                node: &imp.node,
                values,
            };
            import::run(&imp.op, &inputs, mode, device)?
        }
    };
    Ok(y)
}
