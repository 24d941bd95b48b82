//! Networks in and out of bundles: what a trained network is (its [`ModelSpec`], kept in the
//! bundle's provenance so the trainer can rebuild the [`Net`]) and its tensors.

use std::collections::BTreeMap;
use std::path::Path;

use modeconn_runtime::bundle::{Bundle, BundleWriter, InputSpec, Kind, Metadata, OutputSpec};
use modeconn_runtime::curve::Basis;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind as DType, Tensor};

use crate::arch::{self, ArchOptions, Net, Normalization, Params};
use crate::{Error, Result};

/// Everything needed to rebuild a network's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Architecture name.
    pub arch: String,
    /// Hidden sizes (`mlp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<i64>>,
    /// One sample's shape.
    pub input: Vec<i64>,
    /// Number of classes.
    pub classes: i64,
    /// Per-channel mean of the input normalisation built into the network.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of that normalisation.
    pub std: Vec<f32>,
}

impl ModelSpec {
    /// The network this spec describes.
    pub fn net(&self) -> Result<Net> {
        let mut options = ArchOptions::default();
        if let Some(h) = &self.hidden {
            options.hidden = h.clone();
        }
        arch::by_name(
            &self.arch,
            &options,
            &self.input,
            self.classes,
            &Normalization {
                mean: self.mean.clone(),
                std: self.std.clone(),
            },
        )
    }
}

/// A tensor's values on the host, row-major.
pub fn host(t: &Tensor) -> Result<Vec<f32>> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(DType::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    Ok(Vec::<f32>::try_from(&t)?)
}

/// A tensor of this shape from host values.
pub fn tensor(values: &[f32], shape: &[i64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(values)?
        .f_reshape(shape)?
        .f_to_device(device)?)
}

fn metadata(net: &Net, kind: Kind, basis: Option<Basis>, points: usize) -> Metadata {
    let mut shape = vec![-1];
    shape.extend(&net.input);
    Metadata {
        kind,
        basis,
        points,
        bn_grid: None,
        grid_tensors: Vec::new(),
        input: InputSpec {
            name: arch::INPUT.to_string(),
            shape,
        },
        output: OutputSpec {
            name: "logits".into(),
            classes: net.classes as usize,
        },
        temperature: 1.0,
        preprocess: None,
        labels: None,
        provenance: None,
        extra: Default::default(),
    }
}

fn provenance(spec: &ModelSpec, extra: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({ "model": spec });
    if let (Some(obj), serde_json::Value::Object(more)) = (p.as_object_mut(), extra) {
        obj.extend(more);
    }
    p
}

/// Stacks each parameter over `members` (all holding every parameter of `net`) as
/// `[M, ...shape]` and writes a snapshot-set bundle.
pub fn write_snapshots(
    path: &Path,
    net: &Net,
    spec: &ModelSpec,
    members: &[Params],
    extra: serde_json::Value,
) -> Result<()> {
    let mut meta = metadata(net, Kind::Snapshots, None, members.len());
    meta.provenance = Some(provenance(spec, extra));
    let mut writer = BundleWriter::new(meta, arch::to_onnx(net)?);
    for p in &net.params {
        let mut data = Vec::new();
        for m in members {
            let t = m
                .get(&p.name)
                .ok_or_else(|| Error::Arch(format!("member has no tensor `{}`", p.name)))?;
            data.extend(host(t)?);
        }
        let mut shape = vec![members.len()];
        shape.extend(p.shape.iter().map(|&d| d as usize));
        writer = writer.tensor(p.name.clone(), shape, data)?;
    }
    writer.write(path)?;
    Ok(())
}

/// What a curve bundle holds besides the network.
#[derive(Debug, Clone, Copy)]
pub struct CurveData<'a> {
    /// The basis.
    pub basis: Basis,
    /// `points[k]` holds every trained parameter at control point k.
    pub points: &'a [Params],
    /// The t values where statistics were recomputed.
    pub grid: &'a [f64],
    /// `stats[g]` holds the running statistics at `grid[g]` (empty without batch norm).
    pub stats: &'a [Params],
}

/// Writes a curve bundle: control points of every trained parameter and, for networks with
/// batch norm, the running statistics recomputed on the grid.
pub fn write_curve(
    path: &Path,
    net: &Net,
    spec: &ModelSpec,
    curve: &CurveData<'_>,
    extra: serde_json::Value,
) -> Result<()> {
    let CurveData {
        basis,
        points,
        grid,
        stats,
    } = *curve;
    let mut meta = metadata(net, Kind::Curve, Some(basis), points.len());
    let statistic_names: Vec<String> = net
        .params
        .iter()
        .filter(|p| p.kind.is_statistic())
        .map(|p| p.name.clone())
        .collect();
    if !statistic_names.is_empty() {
        meta.bn_grid = Some(grid.to_vec());
        meta.grid_tensors = statistic_names;
    }
    meta.provenance = Some(provenance(spec, extra));
    let mut writer = BundleWriter::new(meta, arch::to_onnx(net)?);
    for p in &net.params {
        let sources = if p.kind.is_statistic() { stats } else { points };
        let mut data = Vec::new();
        for s in sources {
            let t = s
                .get(&p.name)
                .ok_or_else(|| Error::Arch(format!("curve point has no tensor `{}`", p.name)))?;
            data.extend(host(t)?);
        }
        let mut shape = vec![sources.len()];
        shape.extend(p.shape.iter().map(|&d| d as usize));
        writer = writer.tensor(p.name.clone(), shape, data)?;
    }
    writer.write(path)?;
    Ok(())
}

/// A bundle written by the trainer, with the network it holds.
#[derive(Debug)]
pub struct Loaded {
    /// The bundle.
    pub bundle: Bundle,
    /// The spec from its provenance.
    pub spec: ModelSpec,
    /// The network.
    pub net: Net,
}

/// Opens a bundle the trainer wrote and rebuilds its network.
pub fn load(path: &Path) -> Result<Loaded> {
    let bundle = Bundle::open(path)?;
    let spec: ModelSpec = bundle
        .metadata()
        .provenance
        .as_ref()
        .and_then(|p| p.get("model"))
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "{} was not written by the trainer (its provenance has no model spec)",
                path.display()
            ))
        })?;
    let net = spec.net()?;
    for p in &net.params {
        let entry = bundle
            .tensor(&p.name)
            .ok_or_else(|| Error::Config(format!("{}: no tensor `{}`", path.display(), p.name)))?;
        let shape: Vec<i64> = entry.slice_shape().iter().map(|&d| d as i64).collect();
        if shape != p.shape {
            return Err(Error::Config(format!(
                "{}: tensor `{}` has shape {shape:?}, the architecture wants {:?}",
                path.display(),
                p.name,
                p.shape
            )));
        }
    }
    Ok(Loaded { bundle, spec, net })
}

/// Slice `k` of every tensor of `names` (control point, member or grid point) as tensors.
pub fn slices<'a>(
    loaded: &Loaded,
    names: impl IntoIterator<Item = &'a str>,
    k: usize,
    device: Device,
) -> Result<Params> {
    let mut out = BTreeMap::new();
    for name in names {
        let entry = loaded
            .bundle
            .tensor(name)
            .ok_or_else(|| Error::Config(format!("bundle has no tensor `{name}`")))?;
        let shape: Vec<i64> = entry.slice_shape().iter().map(|&d| d as i64).collect();
        let values = loaded.bundle.slice(entry, k)?;
        out.insert(name.to_string(), tensor(&values, &shape, device)?);
    }
    Ok(out)
}

/// Member `k` of a snapshot set (every parameter and statistic).
pub fn member(loaded: &Loaded, k: usize, device: Device) -> Result<Params> {
    slices(
        loaded,
        loaded.net.params.iter().map(|p| p.name.as_str()),
        k,
        device,
    )
}
