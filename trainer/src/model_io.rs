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

/// Where a written network came from, for its bundle's metadata and provenance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The trainer's architecture it is (`None` for an imported network).
    pub spec: Option<&'a ModelSpec>,
    /// The bundle it was read from, whose class names, temperature and preprocessing the
    /// written bundle keeps.
    pub base: Option<&'a Metadata>,
}

fn metadata(
    net: &Net,
    kind: Kind,
    basis: Option<Basis>,
    points: usize,
    origin: Origin<'_>,
) -> Metadata {
    let mut shape = vec![-1];
    shape.extend(&net.input);
    let base = origin.base;
    Metadata {
        kind,
        basis,
        points,
        bn_grid: None,
        grid_tensors: Vec::new(),
        input: InputSpec {
            name: net.input_name().to_string(),
            shape,
        },
        output: OutputSpec {
            name: net.output_name().to_string(),
            classes: net.classes as usize,
        },
        temperature: base.map_or(1.0, |b| b.temperature),
        preprocess: base.and_then(|b| b.preprocess.clone()),
        labels: base.and_then(|b| b.labels.clone()),
        provenance: None,
        extra: Default::default(),
    }
}

fn provenance(origin: Origin<'_>, extra: serde_json::Value) -> serde_json::Value {
    let mut p = match origin.spec {
        Some(spec) => serde_json::json!({ "model": spec }),
        None => serde_json::json!({ "network": arch::import::ARCH }),
    };
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
    origin: Origin<'_>,
    members: &[Params],
    extra: serde_json::Value,
) -> Result<()> {
    let mut meta = metadata(net, Kind::Snapshots, None, members.len(), origin);
    meta.provenance = Some(provenance(origin, extra));
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
    origin: Origin<'_>,
    curve: &CurveData<'_>,
    extra: serde_json::Value,
) -> Result<()> {
    let CurveData {
        basis,
        points,
        grid,
        stats,
    } = *curve;
    let mut meta = metadata(net, Kind::Curve, Some(basis), points.len(), origin);
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
    meta.provenance = Some(provenance(origin, extra));
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

/// A bundle with the network it holds.
#[derive(Debug)]
pub struct Loaded {
    /// The bundle.
    pub bundle: Bundle,
    /// The trainer's architecture, from the provenance of a bundle the trainer wrote for one;
    /// `None` when the network was imported from the bundle's graph.
    pub spec: Option<ModelSpec>,
    /// The network.
    pub net: Net,
}

impl Loaded {
    /// Where a network written from this one comes from.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            spec: self.spec.as_ref(),
            base: Some(self.bundle.metadata()),
        }
    }
}

/// Opens any bundle and rebuilds its network: from the architecture in its provenance when
/// the trainer wrote it for one of its own, otherwise by importing the bundle's graph (a
/// bundle from `pack`, or one the trainer wrote for an imported network).
pub fn load(path: &Path) -> Result<Loaded> {
    let bundle = Bundle::open(path)?;
    from_bundle(bundle, &path.display().to_string())
}

/// [`load`] for a bundle already open; `what` names it in messages.
pub fn from_bundle(bundle: Bundle, what: &str) -> Result<Loaded> {
    let spec: Option<ModelSpec> = bundle
        .metadata()
        .provenance
        .as_ref()
        .and_then(|p| p.get("model"))
        .and_then(|m| serde_json::from_value(m.clone()).ok());
    let Some(spec) = spec else {
        let params = arch::import::bundle_params(
            bundle.graph(),
            bundle.tensors().iter().map(|e| {
                let shape = e.slice_shape().iter().map(|&d| d as i64).collect();
                (e.name.clone(), shape)
            }),
        );
        let net = arch::import::import(bundle.graph(), &params).map_err(|e| match e {
            Error::Arch(reason) => Error::Arch(format!("{what}: {reason}")),
            other => other,
        })?;
        return Ok(Loaded {
            bundle,
            spec: None,
            net,
        });
    };
    let net = spec.net()?;
    for p in &net.params {
        let entry = bundle
            .tensor(&p.name)
            .ok_or_else(|| Error::Config(format!("{what}: no tensor `{}`", p.name)))?;
        let shape: Vec<i64> = entry.slice_shape().iter().map(|&d| d as i64).collect();
        if shape != p.shape {
            return Err(Error::Config(format!(
                "{what}: tensor `{}` has shape {shape:?}, the architecture wants {:?}",
                p.name, p.shape
            )));
        }
    }
    Ok(Loaded {
        bundle,
        spec: Some(spec),
        net,
    })
}

/// One network to start from: member `member` of a snapshot-set bundle at `path`, or, with
/// `onnx`, the state_dict at `path` of that graph (its tensors matched by name, as `modeconn
/// pack` matches them). `role` names it in messages (`--start`, `--init`).
///
/// A curve bundle is refused (a curve is not one network), and so is a snapshot set of several
/// members without `member`.
pub fn endpoint(
    path: &Path,
    onnx: Option<&Path>,
    member: Option<usize>,
    role: &str,
) -> Result<(Loaded, usize)> {
    let loaded = match onnx {
        Some(graph) => {
            let bytes = std::fs::read(graph).map_err(|e| {
                Error::Config(format!("{role}: cannot read {}: {e}", graph.display()))
            })?;
            let (writer, _) = modeconn_runtime::bundle::pack(
                &bytes,
                std::slice::from_ref(&path.to_path_buf()),
                modeconn_runtime::bundle::PackLayout::Snapshots,
                &modeconn_runtime::bundle::PackOptions::default(),
            )
            .map_err(|e| {
                // The runtime's message names the file when the file is at fault.
                let text = e.to_string();
                if text.contains(&*path.to_string_lossy()) {
                    Error::Config(format!("{role}: {text}"))
                } else {
                    Error::Config(format!(
                        "{role} {} (a state_dict of {}): {text}",
                        path.display(),
                        graph.display()
                    ))
                }
            })?;
            let bundle = Bundle::from_bytes(writer.to_bytes()?)?;
            from_bundle(bundle, &format!("{role} {}", path.display()))?
        }
        None => load(path)?,
    };
    let meta = loaded.bundle.metadata();
    if meta.kind == Kind::Curve {
        return Err(Error::Config(format!(
            "{role} {} is a curve of {} control points, not one network; write one point with \
             `modeconn unpack --at T` and pack it, or pass a snapshot set",
            path.display(),
            meta.points
        )));
    }
    let k = match (member, meta.points) {
        (Some(k), n) if k < n => k,
        (Some(k), n) => {
            return Err(Error::Config(format!(
                "{role} {} has {n} members; member {k} does not exist (members count from 0)",
                path.display()
            )));
        }
        (None, 1) => 0,
        (None, n) => {
            return Err(Error::Config(format!(
                "{role} {} is a snapshot set of {n} members; say which one with {role}-member I",
                path.display()
            )));
        }
    };
    Ok((loaded, k))
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

/// The control points of a curve bundle: every trained parameter (not the batch-norm
/// statistics) at each point.
pub fn control_points(loaded: &Loaded, device: Device) -> Result<Vec<Params>> {
    let trained: Vec<&str> = loaded
        .net
        .params
        .iter()
        .filter(|p| !p.kind.is_statistic())
        .map(|p| p.name.as_str())
        .collect();
    (0..loaded.bundle.metadata().points)
        .map(|k| slices(loaded, trained.iter().copied(), k, device))
        .collect()
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
