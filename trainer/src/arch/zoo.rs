//! The architectures, each written once as a [`Net`] following the reference code of Garipov et
//! al. (2018), with parameter names as PyTorch modules would give them.
//!
//! | name | network |
//! |---|---|
//! | `mlp` | flatten, `Linear`+ReLU per hidden size ([`ArchOptions::hidden`]), `Linear` |
//! | `convfc` | 3 × (conv 5x5 pad 2, ReLU, max pool 3/2) with 32/64/128 channels, `Linear` 1000, 1000, classes |
//! | `vgg16`, `vgg16bn` | VGG-16 (conv 3x3 [+BN] + ReLU, max pool 2/2 after each block), classifier Dropout-Linear(512)-ReLU-Dropout-Linear(512)-ReLU-Linear |
//! | `preresnet{depth}` | pre-activation ResNet: basic blocks with `n = (depth-2)/6` per stage below depth 44, bottleneck blocks with `n = (depth-2)/9` from 44 on |
//! | `wrn{depth}x{width}` | wide pre-activation ResNet with `n = (depth-4)/6` wide basic blocks per stage |
//!
//! Every network starts with the data set's per-channel normalisation, so bundles take raw
//! inputs.

use super::builder::NetBuilder;
use super::ir::Net;
use super::resnet::{Branch, ResNet, resnet};
use super::shape::infer_shapes;
use crate::{Error, Result};

/// What the architectures can be told besides their name.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchOptions {
    /// Hidden layer widths of `mlp` (default `[256, 256]`).
    pub hidden: Vec<i64>,
    /// Dropout probability of the `wrn` blocks and the `vgg` classifier. `None` takes each
    /// architecture's default from the reference code: 0.5 for `vgg16`/`vgg16bn` (PyTorch's
    /// `nn.Dropout()`), 0 for `wrn` (no dropout). Other architectures have no dropout and
    /// reject a value other than `None` or `Some(0.0)`.
    pub dropout: Option<f64>,
}

impl Default for ArchOptions {
    fn default() -> Self {
        ArchOptions {
            hidden: vec![256, 256],
            dropout: None,
        }
    }
}

/// The data set's per-input-channel normalisation `(x - mean) / std`, the first operation of
/// every network. A single value applies to every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Per-channel mean (one value, or one per input channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (one value, or one per input channel), positive.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Normalisation that changes nothing (mean 0, standard deviation 1).
    pub fn identity() -> Self {
        Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    /// Per-channel values spread over `channels` channels, checked.
    fn per_channel(&self, channels: i64) -> Result<(Vec<f32>, Vec<f32>)> {
        let spread = |v: &[f32], what: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; channels as usize]),
                n if n as i64 == channels => Ok(v.to_vec()),
                n => Err(Error::Arch(format!(
                    "normalisation has {n} {what} values for {channels} input channels \
                     (give one, or one per channel)"
                ))),
            }
        };
        let mean = spread(&self.mean, "mean")?;
        let std = spread(&self.std, "std")?;
        if !mean.iter().all(|m| m.is_finite()) || !std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(Error::Arch(
                "normalisation needs finite means and positive, finite standard deviations"
                    .to_string(),
            ));
        }
        Ok((mean, std))
    }
}

impl Default for Normalization {
    fn default() -> Self {
        Self::identity()
    }
}

/// What `by_name` accepts, for error messages and help texts.
pub const ARCHITECTURES: &str = "mlp, convfc, vgg16, vgg16bn, preresnet{depth} (depth 6n+2 \
     below 44, e.g. preresnet20; 9n+2 from 44 on, e.g. preresnet164), wrn{depth}x{width} \
     (depth 6n+4, e.g. wrn28x10)";

/// A parsed architecture name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Mlp,
    ConvFc,
    Vgg16 { bn: bool },
    PreResNet { blocks: i64, bottleneck: bool },
    Wrn { blocks: i64, width: i64 },
}

fn parse(name: &str) -> Result<Family> {
    let unknown = || {
        Error::Arch(format!(
            "unknown architecture `{name}`; known: {ARCHITECTURES}"
        ))
    };
    let number = |s: &str| -> Result<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unknown());
        }
        s.parse::<i64>().map_err(|_| unknown())
    };
    match name {
        "mlp" => return Ok(Family::Mlp),
        "convfc" => return Ok(Family::ConvFc),
        "vgg16" => return Ok(Family::Vgg16 { bn: false }),
        "vgg16bn" => return Ok(Family::Vgg16 { bn: true }),
        _ => {}
    }
    if let Some(depth) = name.strip_prefix("preresnet") {
        let depth = number(depth)?;
        let (bottleneck, per, min) = if depth >= 44 {
            (true, 9, 47)
        } else {
            (false, 6, 8)
        };
        if depth < min || (depth - 2) % per != 0 {
            return Err(Error::Arch(format!(
                "`{name}`: a pre-activation ResNet has depth 6n+2 below 44 (8, 14, 20, 26, 32, \
                 38: basic blocks) or 9n+2 from 44 on (47, 56, ..., 110, 164: bottleneck \
                 blocks), not {depth}"
            )));
        }
        return Ok(Family::PreResNet {
            blocks: (depth - 2) / per,
            bottleneck,
        });
    }
    if let Some(rest) = name.strip_prefix("wrn") {
        let (depth, width) = rest.split_once('x').ok_or_else(unknown)?;
        let (depth, width) = (number(depth)?, number(width)?);
        if depth < 10 || (depth - 4) % 6 != 0 || width < 1 {
            return Err(Error::Arch(format!(
                "`{name}`: a wide ResNet has depth 6n+4 (10, 16, 22, 28, ...) and width at \
                 least 1, e.g. wrn28x10"
            )));
        }
        return Ok(Family::Wrn {
            blocks: (depth - 4) / 6,
            width,
        });
    }
    Err(unknown())
}

/// Builds the architecture called `name` (lower case, see [`ARCHITECTURES`]) for samples of
/// shape `input` (e.g. `[3, 32, 32]`; convolutional networks need `[channels, height, width]`)
/// and `classes` classes, starting with `normalize`.
///
/// Fails with [`Error::Arch`] for unknown names, invalid depths (e.g. `preresnet21`), invalid
/// options, and inputs too small for the architecture (VGG needs at least 32x32, `convfc` at
/// least 15x15).
pub fn by_name(
    name: &str,
    options: &ArchOptions,
    input: &[i64],
    classes: i64,
    normalize: &Normalization,
) -> Result<Net> {
    let family = parse(name)?;
    if input.is_empty() || input.iter().any(|&d| d < 1) {
        return Err(Error::Arch(format!(
            "`{name}`: input shape {input:?} must have positive sizes"
        )));
    }
    if classes < 1 {
        return Err(Error::Arch(format!(
            "`{name}`: needs at least one class, got {classes}"
        )));
    }
    let dropout = match (family, options.dropout) {
        (_, Some(p)) if !(0.0..1.0).contains(&p) => {
            return Err(Error::Arch(format!(
                "`{name}`: dropout must be in [0, 1), got {p}"
            )));
        }
        (Family::Vgg16 { .. }, p) => p.unwrap_or(0.5),
        (Family::Wrn { .. }, p) => p.unwrap_or(0.0),
        (_, None) => 0.0,
        (_, Some(0.0)) => 0.0,
        (_, Some(p)) => {
            return Err(Error::Arch(format!(
                "`{name}` has no dropout (asked for {p}); only vgg and wrn do"
            )));
        }
    };
    let convolutional = family != Family::Mlp;
    if convolutional && input.len() != 3 {
        return Err(Error::Arch(format!(
            "`{name}` takes images [channels, height, width], got input shape {input:?}"
        )));
    }
    let (mean, std) = normalize.per_channel(input[0])?;
    let mut b = NetBuilder::new(name, input, classes);
    let x = b.input();
    let x = b.normalize(&x, &mean, &std);
    match family {
        Family::Mlp => mlp(&mut b, x, input, &options.hidden, classes)?,
        Family::ConvFc => convfc(&mut b, x, input, classes)?,
        Family::Vgg16 { bn } => vgg16(&mut b, x, input, bn, dropout, classes)?,
        Family::PreResNet { blocks, bottleneck } => {
            let branch = if bottleneck {
                Branch::Bottleneck
            } else {
                Branch::Basic
            };
            let net = ResNet {
                blocks,
                width: 1,
                branch,
            };
            resnet(&mut b, &x, input[0], classes, net);
        }
        Family::Wrn { blocks, width } => {
            let branch = Branch::Wide { dropout };
            let net = ResNet {
                blocks,
                width,
                branch,
            };
            resnet(&mut b, &x, input[0], classes, net);
        }
    }
    let net = b.finish();
    infer_shapes(&net)?;
    Ok(net)
}

fn mlp(b: &mut NetBuilder, x: String, input: &[i64], hidden: &[i64], classes: i64) -> Result<()> {
    if let Some(h) = hidden.iter().find(|&&h| h < 1) {
        return Err(Error::Arch(format!(
            "`mlp`: hidden sizes must be positive, got {h}"
        )));
    }
    let mut x = b.flatten(&x);
    let mut width: i64 = input.iter().product();
    for (i, &h) in hidden.iter().enumerate() {
        x = b.linear(&format!("fc{}", i + 1), &x, width, h);
        x = b.relu(&x);
        width = h;
    }
    b.linear(&format!("fc{}", hidden.len() + 1), &x, width, classes);
    Ok(())
}

/// The output size of a `kernel`/`stride` window without padding, if the input is large enough.
fn window(size: i64, kernel: i64, stride: i64) -> Option<i64> {
    (size >= kernel).then(|| (size - kernel) / stride + 1)
}

fn convfc(b: &mut NetBuilder, x: String, input: &[i64], classes: i64) -> Result<()> {
    let too_small = || {
        Error::Arch(format!(
            "`convfc` needs images of at least 15x15 (three 3x3/2 max poolings), got input \
             shape {input:?}"
        ))
    };
    let mut x = x;
    let (mut channels, mut h, mut w) = (input[0], input[1], input[2]);
    for (i, out) in [32, 64, 128].into_iter().enumerate() {
        x = b.conv(
            &format!("conv_part.{}", 3 * i),
            &x,
            channels,
            out,
            5,
            1,
            2,
            true,
        );
        x = b.relu(&x);
        x = b.max_pool(&x, 3, 2);
        channels = out;
        h = window(h, 3, 2).ok_or_else(too_small)?;
        w = window(w, 3, 2).ok_or_else(too_small)?;
    }
    x = b.flatten(&x);
    x = b.linear("fc_part.0", &x, channels * h * w, 1000);
    x = b.relu(&x);
    x = b.linear("fc_part.2", &x, 1000, 1000);
    x = b.relu(&x);
    b.linear("fc_part.4", &x, 1000, classes);
    Ok(())
}

/// VGG-16's convolution widths per block; each block ends with a 2x2 max pooling.
const VGG16: [&[i64]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

fn vgg16(
    b: &mut NetBuilder,
    x: String,
    input: &[i64],
    bn: bool,
    dropout: f64,
    classes: i64,
) -> Result<()> {
    if input[1] < 32 || input[2] < 32 {
        return Err(Error::Arch(format!(
            "`vgg16{}` needs images of at least 32x32 (five 2x2 max poolings), got input \
             shape {input:?}",
            if bn { "bn" } else { "" }
        )));
    }
    // Module indices as in a torchvision-style `features` Sequential: every conv, batch norm,
    // ReLU and pooling takes one index.
    let mut index = 0;
    let mut x = x;
    let mut channels = input[0];
    for block in VGG16 {
        for &out in block {
            x = b.conv(
                &format!("features.{index}"),
                &x,
                channels,
                out,
                3,
                1,
                1,
                true,
            );
            index += 1;
            if bn {
                x = b.batch_norm(&format!("features.{index}"), &x, out);
                index += 1;
            }
            x = b.relu(&x);
            index += 1;
            channels = out;
        }
        x = b.max_pool(&x, 2, 2);
        index += 1;
    }
    let flat = channels * (input[1] / 32) * (input[2] / 32);
    x = b.flatten(&x);
    if dropout > 0.0 {
        x = b.dropout(&x, dropout);
    }
    x = b.linear("classifier.1", &x, flat, 512);
    x = b.relu(&x);
    if dropout > 0.0 {
        x = b.dropout(&x, dropout);
    }
    x = b.linear("classifier.4", &x, 512, 512);
    x = b.relu(&x);
    b.linear("classifier.6", &x, 512, classes);
    Ok(())
}
