//! Shape inference over a [`Net`]: the shape of every value for one sample (no batch axis),
//! checking that each operation fits its inputs and parameters. Architectures use it to reject
//! inputs that are too small for them with a clear message.

use std::collections::HashMap;

use super::ir::{INPUT, Net, Op};
use crate::{Error, Result};

/// The shape of every value of `net` for one sample (without the batch axis), keyed by value
/// name (`input` included). Fails with [`Error::Arch`] when an operation does not fit: a
/// feature map smaller than a kernel, parameter shapes that disagree with their inputs, an
/// undefined value, or logits that are not `[classes]`.
pub fn infer_shapes(net: &Net) -> Result<HashMap<String, Vec<i64>>> {
    let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
    if net.input.is_empty() || net.input.iter().any(|&d| d < 1) {
        return Err(arch_err(
            net,
            format!("input shape {:?} must have positive sizes", net.input),
        ));
    }
    shapes.insert(INPUT.to_string(), net.input.clone());
    for node in &net.nodes {
        let out = infer_op(net, &shapes, &node.op)
            .map_err(|reason| arch_err(net, format!("at value `{}`: {reason}", node.output)))?;
        if shapes.insert(node.output.clone(), out).is_some() {
            return Err(arch_err(
                net,
                format!("value `{}` is defined twice", node.output),
            ));
        }
    }
    let logits = shapes
        .get(net.output())
        .ok_or_else(|| arch_err(net, "the network has no operations".to_string()))?;
    if logits.as_slice() != [net.classes] {
        return Err(arch_err(
            net,
            format!(
                "the output has shape {logits:?} per sample, expected [{}]",
                net.classes
            ),
        ));
    }
    Ok(shapes)
}

fn arch_err(net: &Net, reason: String) -> Error {
    Error::Arch(format!(
        "`{}` with input {:?}: {reason}",
        net.arch, net.input
    ))
}

fn infer_op(
    net: &Net,
    shapes: &HashMap<String, Vec<i64>>,
    op: &Op,
) -> std::result::Result<Vec<i64>, String> {
    let value = |name: &str| {
        shapes
            .get(name)
            .cloned()
            .ok_or_else(|| format!("value `{name}` is used before it is defined"))
    };
    let param = |name: &str| {
        net.param(name)
            .map(|p| p.shape.clone())
            .ok_or_else(|| format!("parameter `{name}` is not declared"))
    };
    match op {
        Op::Normalize { x, mean, std } => {
            let s = value(x)?;
            if mean.len() as i64 != s[0] || std.len() as i64 != s[0] {
                return Err(format!(
                    "normalisation has {} means and {} standard deviations for {} channels",
                    mean.len(),
                    std.len(),
                    s[0]
                ));
            }
            Ok(s)
        }
        Op::Conv {
            x,
            weight,
            bias,
            stride,
            padding,
        } => {
            let s = value(x)?;
            let w = param(weight)?;
            if s.len() != 3 {
                return Err(format!(
                    "a convolution needs [channels, height, width], got {s:?}"
                ));
            }
            if w.len() != 4 || w[1] != s[0] || w[2] != w[3] {
                return Err(format!(
                    "weight `{weight}` of shape {w:?} does not fit an input of shape {s:?}"
                ));
            }
            if let Some(b) = bias
                && param(b)? != [w[0]]
            {
                return Err(format!("bias `{b}` must have shape [{}]", w[0]));
            }
            let k = w[2];
            let (h, wd) = (s[1] + 2 * padding, s[2] + 2 * padding);
            if h < k || wd < k || *stride < 1 {
                return Err(format!(
                    "the input is too small: a {k}x{k} convolution gets a {}x{} feature map \
                     (padding {padding})",
                    s[1], s[2]
                ));
            }
            Ok(vec![w[0], (h - k) / stride + 1, (wd - k) / stride + 1])
        }
        Op::BatchNorm { x, prefix, .. } => {
            let s = value(x)?;
            for suffix in ["weight", "bias", "running_mean", "running_var"] {
                let name = format!("{prefix}.{suffix}");
                if param(&name)? != [s[0]] {
                    return Err(format!("`{name}` must have shape [{}]", s[0]));
                }
            }
            Ok(s)
        }
        Op::Relu { x } | Op::Dropout { x, .. } => value(x),
        Op::MaxPool { x, kernel, stride } | Op::AvgPool { x, kernel, stride } => {
            let s = value(x)?;
            if s.len() != 3 {
                return Err(format!(
                    "pooling needs [channels, height, width], got {s:?}"
                ));
            }
            if s[1] < *kernel || s[2] < *kernel || *stride < 1 {
                return Err(format!(
                    "the input is too small: a {kernel}x{kernel} pooling gets a {}x{} feature map",
                    s[1], s[2]
                ));
            }
            Ok(vec![
                s[0],
                (s[1] - kernel) / stride + 1,
                (s[2] - kernel) / stride + 1,
            ])
        }
        Op::GlobalAvgPool { x } => {
            let s = value(x)?;
            if s.len() != 3 {
                return Err(format!(
                    "global pooling needs [channels, height, width], got {s:?}"
                ));
            }
            Ok(vec![s[0], 1, 1])
        }
        Op::Flatten { x } => Ok(vec![value(x)?.iter().product()]),
        Op::Linear { x, weight, bias } => {
            let s = value(x)?;
            let w = param(weight)?;
            if s.len() != 1 || w.len() != 2 || w[1] != s[0] {
                return Err(format!(
                    "weight `{weight}` of shape {w:?} does not fit an input of shape {s:?}"
                ));
            }
            if param(bias)? != [w[0]] {
                return Err(format!("bias `{bias}` must have shape [{}]", w[0]));
            }
            Ok(vec![w[0]])
        }
        Op::Add { a, b } => {
            let (sa, sb) = (value(a)?, value(b)?);
            if sa != sb {
                return Err(format!("adding shapes {sa:?} and {sb:?}"));
            }
            Ok(sa)
        }
        Op::Onnx(imp) => Err(format!(
            "{} is imported from ONNX; imported networks are checked by running them",
            imp.node
        )),
    }
}
