//! A small builder for [`Net`]s: each method adds the parameters and the node of one layer and
//! returns the name of the value it produces.

use super::ir::{INPUT, Net, Node, Op, Param, ParamKind};

/// Builds a [`Net`] layer by layer.
#[derive(Debug, Clone)]
pub struct NetBuilder {
    net: Net,
    counter: usize,
}

impl NetBuilder {
    /// Starts a network with this input sample shape and class count.
    pub fn new(arch: &str, input: &[i64], classes: i64) -> Self {
        NetBuilder {
            net: Net {
                arch: arch.to_string(),
                input: input.to_vec(),
                classes,
                params: Vec::new(),
                nodes: Vec::new(),
                source: None,
            },
            counter: 0,
        }
    }

    /// The network input value.
    pub fn input(&self) -> String {
        INPUT.to_string()
    }

    fn param(&mut self, name: String, shape: Vec<i64>, kind: ParamKind, fan_in: i64) -> String {
        self.net.params.push(Param {
            name: name.clone(),
            shape,
            kind,
            fan_in,
        });
        name
    }

    fn node(&mut self, op: Op) -> String {
        self.counter += 1;
        let output = format!("v{}", self.counter);
        self.net.nodes.push(Node {
            op,
            output: output.clone(),
        });
        output
    }

    /// Per-channel normalisation of `x` (the first layer of every architecture).
    pub fn normalize(&mut self, x: &str, mean: &[f32], std: &[f32]) -> String {
        self.node(Op::Normalize {
            x: x.to_string(),
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// `Conv` named `name` (`{name}.weight`, `{name}.bias` when `bias`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: &str,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> String {
        let fan_in = in_channels * kernel * kernel;
        let weight = self.param(
            format!("{name}.weight"),
            vec![out_channels, in_channels, kernel, kernel],
            ParamKind::Weight,
            fan_in,
        );
        let bias = bias.then(|| {
            self.param(
                format!("{name}.bias"),
                vec![out_channels],
                ParamKind::Bias,
                fan_in,
            )
        });
        self.node(Op::Conv {
            x: x.to_string(),
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// `BatchNorm` named `name` over `channels` channels.
    pub fn batch_norm(&mut self, name: &str, x: &str, channels: i64) -> String {
        for (suffix, kind) in [
            ("weight", ParamKind::BnWeight),
            ("bias", ParamKind::BnBias),
            ("running_mean", ParamKind::RunningMean),
            ("running_var", ParamKind::RunningVar),
        ] {
            self.param(format!("{name}.{suffix}"), vec![channels], kind, channels);
        }
        self.node(Op::BatchNorm {
            x: x.to_string(),
            prefix: name.to_string(),
            eps: 1e-5,
        })
    }

    /// `Linear` named `name`.
    pub fn linear(&mut self, name: &str, x: &str, inputs: i64, outputs: i64) -> String {
        let weight = self.param(
            format!("{name}.weight"),
            vec![outputs, inputs],
            ParamKind::Weight,
            inputs,
        );
        let bias = self.param(
            format!("{name}.bias"),
            vec![outputs],
            ParamKind::Bias,
            inputs,
        );
        self.node(Op::Linear {
            x: x.to_string(),
            weight,
            bias,
        })
    }

    /// Rectified linear unit.
    pub fn relu(&mut self, x: &str) -> String {
        self.node(Op::Relu { x: x.to_string() })
    }

    /// Max pooling.
    pub fn max_pool(&mut self, x: &str, kernel: i64, stride: i64) -> String {
        self.node(Op::MaxPool {
            x: x.to_string(),
            kernel,
            stride,
        })
    }

    /// Average pooling.
    pub fn avg_pool(&mut self, x: &str, kernel: i64, stride: i64) -> String {
        self.node(Op::AvgPool {
            x: x.to_string(),
            kernel,
            stride,
        })
    }

    /// Global average pooling.
    pub fn global_avg_pool(&mut self, x: &str) -> String {
        self.node(Op::GlobalAvgPool { x: x.to_string() })
    }

    /// Flattening after the batch axis.
    pub fn flatten(&mut self, x: &str) -> String {
        self.node(Op::Flatten { x: x.to_string() })
    }

    /// Elementwise sum.
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node(Op::Add {
            a: a.to_string(),
            b: b.to_string(),
        })
    }

    /// Dropout (training only).
    pub fn dropout(&mut self, x: &str, p: f64) -> String {
        self.node(Op::Dropout {
            x: x.to_string(),
            p,
        })
    }

    /// The finished network; the last value added is the logits.
    pub fn finish(self) -> Net {
        self.net
    }
}
