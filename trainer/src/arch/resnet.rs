//! The pre-activation ResNets of the zoo (`preresnet{depth}`, `wrn{depth}x{width}`), built by
//! one function: a stem convolution, three stages of residual blocks and a classifier. The
//! families differ only in their blocks' main branch and in the conventions of the reference
//! code (names, biases, what the shortcut reads), which [`Branch`] holds.

use super::builder::NetBuilder;

/// The main branch of a family's residual blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Branch {
    /// PreResNet below depth 44: 3x3 (the block's stride), 3x3.
    Basic,
    /// PreResNet from depth 44: 1x1, 3x3 (the block's stride), 1x1 to four times the planes.
    Bottleneck,
    /// Wide ResNet: 3x3, dropout, 3x3 (the block's stride); convolutions with biases.
    Wide {
        /// Dropout probability between the convolutions (none at 0).
        dropout: f64,
    },
}

impl Branch {
    /// Channels out of a block per plane of its stage.
    fn expansion(self) -> i64 {
        if self == Branch::Bottleneck { 4 } else { 1 }
    }

    /// Whether the family follows the WRN reference code rather than PreResNet's.
    fn wide(self) -> bool {
        matches!(self, Branch::Wide { .. })
    }
}

/// A pre-activation ResNet.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResNet {
    /// Blocks per stage.
    pub blocks: i64,
    /// Planes per stage are 16, 32 and 64 times this.
    pub width: i64,
    /// The blocks' main branch.
    pub branch: Branch,
}

/// One residual block, as its main branch sees it.
struct Block {
    /// Its name, `layer{stage}.{i}`.
    prefix: String,
    /// Channels in.
    in_channels: i64,
    /// Channels of the stage.
    planes: i64,
    /// Channels out.
    out_channels: i64,
    /// Its stride: the stage's in the first block, 1 in the others.
    stride: i64,
}

/// Builds `net` on `x` (`in_channels` channels) for `classes` classes, with parameter names
/// and registration order as the reference code's PyTorch modules have them.
///
/// The stem is a 3x3 convolution to 16 channels (`conv1`). Then three stages, with 16, 32 and
/// 64 times `width` planes, strides 1, 2 and 2, and `blocks` blocks each. A block is batch norm
/// and ReLU of its input (`{prefix}.bn1`), the main branch on that, and the shortcut added to
/// it: the input itself, or where the shape changes a 1x1 projection of the block's raw input
/// (`downsample.0` in PreResNet, `shortcut.0` in WRN; both reference models read `x`, not the
/// pre-activated input). The shortcut
/// comes after the main branch, as PyTorch registers it. Last, batch norm and ReLU (`bn`, WRN
/// `bn1`), global average pooling and the classifier (`fc`, WRN `linear`).
pub(super) fn resnet(b: &mut NetBuilder, x: &str, in_channels: i64, classes: i64, net: ResNet) {
    let wide = net.branch.wide();
    let mut x = b.conv("conv1", x, in_channels, 16, 3, 1, 1, wide);
    let mut in_channels = 16;
    let w = net.width;
    for (stage, planes, stride) in [(1, 16 * w, 1), (2, 32 * w, 2), (3, 64 * w, 2)] {
        for i in 0..net.blocks {
            let block = Block {
                prefix: format!("layer{stage}.{i}"),
                in_channels,
                planes,
                out_channels: planes * net.branch.expansion(),
                stride: if i == 0 { stride } else { 1 },
            };
            let p = &block.prefix;
            let pre = b.batch_norm(&format!("{p}.bn1"), &x, in_channels);
            let pre = b.relu(&pre);
            let out = main_branch(b, &block, &pre, net.branch);
            let residual = if block.stride != 1 || in_channels != block.out_channels {
                // Both reference models project the block's raw input, not its pre-activation.
                let name = if wide { "shortcut.0" } else { "downsample.0" };
                let (out_channels, stride) = (block.out_channels, block.stride);
                let name = format!("{p}.{name}");
                b.conv(&name, &x, in_channels, out_channels, 1, stride, 0, wide)
            } else {
                x.clone()
            };
            x = b.add(&out, &residual);
            in_channels = block.out_channels;
        }
    }
    let (bn, linear) = if wide {
        ("bn1", "linear")
    } else {
        ("bn", "fc")
    };
    let x = b.batch_norm(bn, &x, in_channels);
    let x = b.relu(&x);
    let x = b.global_avg_pool(&x);
    let x = b.flatten(&x);
    b.linear(linear, &x, in_channels, classes);
}

/// The main branch of `block` on its pre-activated input `pre`.
fn main_branch(b: &mut NetBuilder, block: &Block, pre: &str, branch: Branch) -> String {
    let (p, planes, s) = (&block.prefix, block.planes, block.stride);
    let name = |layer: &str| format!("{p}.{layer}");
    let (kernel, stride, padding) = match branch {
        Branch::Basic => (3, s, 1),
        Branch::Bottleneck => (1, 1, 0),
        Branch::Wide { .. } => (3, 1, 1),
    };
    let bias = branch.wide();
    let conv1 = name("conv1");
    let mut y = b.conv(
        &conv1,
        pre,
        block.in_channels,
        planes,
        kernel,
        stride,
        padding,
        bias,
    );
    if let Branch::Wide { dropout } = branch
        && dropout > 0.0
    {
        y = b.dropout(&y, dropout);
    }
    let y = b.batch_norm(&name("bn2"), &y, planes);
    let y = b.relu(&y);
    match branch {
        Branch::Basic => b.conv(&name("conv2"), &y, planes, planes, 3, 1, 1, false),
        Branch::Wide { .. } => b.conv(&name("conv2"), &y, planes, planes, 3, s, 1, true),
        Branch::Bottleneck => {
            let y = b.conv(&name("conv2"), &y, planes, planes, 3, s, 1, false);
            let y = b.batch_norm(&name("bn3"), &y, planes);
            let y = b.relu(&y);
            b.conv(
                &name("conv3"),
                &y,
                planes,
                block.out_channels,
                1,
                1,
                0,
                false,
            )
        }
    }
}
