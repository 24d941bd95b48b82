//! Parameter values of a [`Net`]: initialisation, and moving them to and from plain host data
//! (what bundles store).

use std::collections::{BTreeMap, HashSet};

use tch::{Device, Kind, Tensor};

use super::ir::{Net, Op, ParamKind};
use crate::{Error, Result};

/// The values of a network's parameters and running statistics, by name. Trained parameters
/// may be any tensors (leaves, or computed from others such as a curve's `w(t)`); running
/// statistics are plain tensors without gradient, updated in place by
/// [`forward`](super::forward()) in training and statistics modes.
pub type Params = BTreeMap<String, Tensor>;

/// Parameters as plain host data: shape and row-major `f32` values, by name.
pub type HostParams = BTreeMap<String, (Vec<i64>, Vec<f32>)>;

/// Initial values for every parameter of `net`, as `f32` tensors on `device`, as the reference
/// code (dnn-mode-connectivity) initialises its models:
///
/// - convolution weights of `convfc`, `vgg16`, `vgg16bn` and `preresnet*`: normal with standard
///   deviation `sqrt(2 / (k·k·C_out))` (the reference's explicit initialisation, by fan-out),
///   their biases 0;
/// - convolutions of `wrn*` (which the reference leaves to PyTorch), linear layers everywhere,
///   and every weight and bias of an imported network: PyTorch's default, uniform in
///   `±1/sqrt(fan_in)`;
/// - batch-norm (and layer-norm) weight 1, bias 0, running mean 0, running variance 1.
///
/// The values depend only on `seed` and the network: they are drawn on the host from the
/// crate's own generator (not libtorch's global one), so they are the same on every device,
/// in every thread and whatever else uses libtorch's generator at the same time.
pub fn init(net: &Net, seed: i64, device: Device) -> Result<Params> {
    // The reference initialises its convolutions itself except in WRN; users' networks get
    // what a fresh PyTorch module has.
    let reference_convs = !(net.arch.starts_with("wrn") || net.source.is_some());
    let conv_biases: HashSet<&str> = net
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv { bias: Some(b), .. } => Some(b.as_str()),
            _ => None,
        })
        .collect();
    let mut rng = SplitMix64::new(seed as u64);
    let mut params = Params::new();
    for p in &net.params {
        let n = p.shape.iter().product::<i64>().max(0) as usize;
        let fan_in = p.fan_in.max(1) as f64;
        let uniform = |rng: &mut SplitMix64| -> Vec<f32> {
            let bound = 1.0 / fan_in.sqrt();
            (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect()
        };
        let data: Vec<f32> = match p.kind {
            ParamKind::Weight if p.shape.len() == 4 && reference_convs => {
                let fan_out = (p.shape[0] * p.shape[2] * p.shape[3]).max(1) as f64;
                let std = (2.0 / fan_out).sqrt();
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            }
            ParamKind::Bias if reference_convs && conv_biases.contains(p.name.as_str()) => {
                vec![0.0; n]
            }
            ParamKind::Weight | ParamKind::Bias => uniform(&mut rng),
            ParamKind::BnWeight | ParamKind::RunningVar => vec![1.0; n],
            ParamKind::BnBias | ParamKind::RunningMean => vec![0.0; n],
        };
        let t = Tensor::f_from_slice(&data)?
            .f_reshape(p.shape.as_slice())?
            .f_to(device)?;
        params.insert(p.name.clone(), t);
    }
    Ok(params)
}

/// Checks that `params` holds every parameter of `net` with its shape, as `f32`.
pub fn check_params(net: &Net, params: &Params) -> Result<()> {
    for p in &net.params {
        let t = params.get(&p.name).ok_or_else(|| {
            Error::Arch(format!("`{}`: parameter `{}` is missing", net.arch, p.name))
        })?;
        if t.size() != p.shape {
            return Err(Error::Arch(format!(
                "`{}`: parameter `{}` has shape {:?}, expected {:?}",
                net.arch,
                p.name,
                t.size(),
                p.shape
            )));
        }
        let kind = t.f_kind()?;
        if kind != Kind::Float {
            return Err(Error::Arch(format!(
                "`{}`: parameter `{}` is {kind:?}, expected Float",
                net.arch, p.name
            )));
        }
    }
    Ok(())
}

/// A copy of every tensor as host data (`f32`, row-major), detached from any graph.
pub fn to_host(params: &Params) -> Result<HostParams> {
    params
        .iter()
        .map(|(name, t)| Ok((name.clone(), (t.size(), tensor_data(t)?))))
        .collect()
}

/// The values of one tensor as `f32` on the host, row-major (detached from any graph).
pub fn tensor_data(t: &Tensor) -> Result<Vec<f32>> {
    let host = t
        .f_detach()?
        .f_to(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    let n = host.numel();
    let mut data = vec![0f32; n];
    host.f_copy_data(&mut data, n)?;
    Ok(data)
}

/// Tensors on `device` from host data, checking that each value count fits its shape.
pub fn from_host(host: &HostParams, device: Device) -> Result<Params> {
    host.iter()
        .map(|(name, (shape, data))| {
            let n = shape.iter().product::<i64>();
            if shape.iter().any(|&d| d < 0) || n as usize != data.len() {
                return Err(Error::Arch(format!(
                    "parameter `{name}`: shape {shape:?} does not hold {} values",
                    data.len()
                )));
            }
            let t = Tensor::f_from_slice(data)?
                .f_reshape(shape.as_slice())?
                .f_to(device)?;
            Ok((name.clone(), t))
        })
        .collect()
}

/// SplitMix64 (Steele, Lea and Flood 2014): a small, fast generator whose output depends only
/// on the seed.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
    spare: Option<f64>,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, both values of each pair used).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * self.uniform();
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}
