//! Packing a bundle from an ONNX classifier and weight files saved with safetensors (for
//! example PyTorch `state_dict`s), matching tensors by name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use super::meta::{InputSpec, Kind, Metadata, OutputSpec, check_bn_grid, keys};
use super::write::BundleWriter;
use crate::curve::Basis;
use crate::graph::{Dim, OnnxModel, elem};
use crate::{Error, Result};

/// What the weight files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackLayout {
    /// Independent networks forming a snapshot set.
    Snapshots,
    /// Control points of a curve, in order start, bends, end.
    Curve(Basis),
}

/// How each name fared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Tensors of the files that vary in the bundle.
    pub matched: Vec<String>,
    /// Batch-norm statistics among them, placed on the bn grid (curves).
    pub grid_tensors: Vec<String>,
    /// Float initializers of the graph with no tensor in the files: they stay fixed.
    pub fixed: Vec<String>,
    /// Tensors of the files with no initializer or input of that name in the graph.
    pub unmatched: Vec<String>,
    /// Non-float tensors of the files (e.g. `num_batches_tracked`), left out.
    pub skipped: Vec<String>,
}

/// Options of [`pack`].
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Softmax temperature to record (default 1).
    pub temperature: Option<f64>,
    /// Class names to record.
    pub labels: Option<Vec<String>>,
    /// Accept tensors in the files that the graph does not use (listed in the report).
    pub allow_unmatched: bool,
    /// Batch-norm statistics of a curve from files of their own, on a grid of their own
    /// (e.g. finer than the control points); without it, each point file's statistics are
    /// placed at its knot.
    pub bn_stats: Option<BnStats>,
}

/// Batch-norm statistics of a curve taken from files of their own: file `i` holds the
/// statistics at `t = grid[i]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BnStats {
    /// Strictly increasing t values from 0 to 1, one per file: the bundle's `bn_grid`.
    pub grid: Vec<f64>,
    /// Safetensors files, each holding every batch-norm statistic of the graph (the running
    /// means and variances that feed its `BatchNormalization` nodes, by name) at its t; their
    /// other tensors are not used, and neither are the statistics in the point files.
    pub files: Vec<PathBuf>,
}

const EXPORT_HINT: &str = "export the model with torch.onnx.export(model, args, path, dynamo=True, \
     optimize=False): the legacy exporter and the optimizer fold batch norm into convolutions \
     and rename tensors, so they no longer match the state_dict";

struct Source {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// Reads a float tensor of a safetensors file as `f32`.
fn read_f32(st: &SafeTensors<'_>, name: &str, path: &Path) -> Result<Vec<f32>> {
    let view = st.tensor(name).map_err(|e| Error::Header {
        detail: format!("{}: {e}", path.display()),
    })?;
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect(),
        other => {
            return Err(Error::DType {
                tensor: name.into(),
                expected: "a float type".into(),
                found: format!("{other:?}"),
            });
        }
    })
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: f * 2^-24. Shift the leading one into the implicit-bit position.
            let mut f = f;
            let mut shift = 0;
            while f & 0x400 == 0 {
                f <<= 1;
                shift += 1;
            }
            sign | ((127 - 14 - shift) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16)
}

/// Reads and parses weight files.
fn read_sources(files: &[PathBuf]) -> Result<Vec<Source>> {
    files
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map(|bytes| Source {
                    path: p.clone(),
                    bytes,
                })
                .map_err(|e| Error::io(p, e))
        })
        .collect()
}

fn parse_sources<'s>(sources: &'s [Source]) -> Result<Vec<SafeTensors<'s>>> {
    sources
        .iter()
        .map(|s| {
            SafeTensors::deserialize(&s.bytes).map_err(|e| Error::Header {
                detail: format!("{}: {e}", s.path.display()),
            })
        })
        .collect()
}

/// The shape of tensor `name` in every file, which must be the same; `missing` says why a
/// file without it is wrong.
fn common_shape(
    name: &str,
    parsed: &[SafeTensors<'_>],
    sources: &[Source],
    missing: &dyn Fn(&Source) -> Error,
) -> Result<Vec<usize>> {
    let mut shape: Option<Vec<usize>> = None;
    for (st, src) in parsed.iter().zip(sources) {
        let found = st
            .tensor(name)
            .map(|v| v.shape().to_vec())
            .map_err(|_| missing(src))?;
        match &shape {
            None => shape = Some(found),
            Some(first) if *first != found => {
                return Err(Error::ShapeMismatch {
                    tensor: format!("{name} in {}", src.path.display()),
                    expected: first.iter().map(|&d| d as i64).collect(),
                    found: found.iter().map(|&d| d as i64).collect(),
                });
            }
            Some(_) => {}
        }
    }
    shape.ok_or_else(|| Error::invalid("the weight files", "are none"))
}

/// Tensor `name` of every file as `f32`, stacked in file order.
fn stack(
    name: &str,
    parsed: &[SafeTensors<'_>],
    sources: &[Source],
    len: usize,
) -> Result<Vec<f32>> {
    let mut data = Vec::with_capacity(len);
    for (st, src) in parsed.iter().zip(sources) {
        data.extend(read_f32(st, name, &src.path)?);
    }
    Ok(data)
}

/// Builds a bundle from an ONNX model and K weight files. Returns the writer (write it with
/// [`BundleWriter::write`]) and a report of how every name was matched.
///
/// Float tensors of the files are matched to initializers or graph inputs of the same name;
/// each matched tensor is stored once, stacked over the files, and the graph written into the
/// bundle has those initializers lifted to graph inputs ([`OnnxModel::lift_to_inputs`]), so
/// no weight is stored twice. For curves, batch-norm statistics are placed on the knots
/// `t_k = k / (K-1)` as the bundle's `bn_grid`, or, with [`PackOptions::bn_stats`], taken from
/// files of their own on a grid of their own.
///
/// Everything the bundle's metadata and graph must satisfy is checked with the loader's own
/// rules (those [`BundleWriter`] applies) once the names and shapes are known, before any
/// weight is converted or stacked: a graph whose batch axis is fixed, labels that do not fit
/// the classes or a temperature that is not a positive single-precision number are refused
/// here.
pub fn pack(
    onnx: &[u8],
    files: &[PathBuf],
    layout: PackLayout,
    options: &PackOptions,
) -> Result<(BundleWriter<'static>, PackReport)> {
    let graph = OnnxModel::parse(onnx)?;
    let min = if matches!(layout, PackLayout::Curve(_)) {
        2
    } else {
        1
    };
    if files.len() < min {
        return Err(Error::invalid(
            "the weight files",
            format!("are {}: at least {min} are needed", files.len()),
        ));
    }
    if let Some(stats) = &options.bn_stats {
        if layout == PackLayout::Snapshots {
            return Err(Error::invalid(
                "batch-norm statistics on a grid",
                "are for curves: a snapshot set keeps each member's own statistics",
            ));
        }
        if stats.grid.len() != stats.files.len() {
            return Err(Error::Metadata {
                key: keys::BN_GRID.into(),
                reason: format!(
                    "{} t values for {} batch-norm statistics files: give one t per file",
                    stats.grid.len(),
                    stats.files.len()
                ),
            });
        }
        // The loader's rule for the grid, before a file is read.
        let grid: Vec<Option<f64>> = stats.grid.iter().copied().map(Some).collect();
        check_bn_grid(&grid)?;
    }
    let sources = read_sources(files)?;
    let parsed = parse_sources(&sources)?;

    // Names and kinds come from the first file; every other file must hold the same.
    let first = &parsed[0];
    let mut names: Vec<String> = first.names().into_iter().map(str::to_string).collect();
    names.sort();
    for (st, src) in parsed.iter().zip(&sources).skip(1) {
        let mut other: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        other.sort();
        if other != names {
            let a: BTreeSet<&String> = names.iter().collect();
            let b: BTreeSet<&String> = other.iter().collect();
            let diff: Vec<&&String> = a.symmetric_difference(&b).take(5).collect();
            return Err(Error::invalid(
                src.path.display().to_string(),
                format!(
                    "does not hold the same tensors as {} (e.g. {diff:?})",
                    sources[0].path.display()
                ),
            ));
        }
    }

    let mut report = PackReport::default();
    for name in &names {
        let dtype = first
            .tensor(name)
            .map(|v| v.dtype())
            .map_err(|e| Error::Header {
                detail: e.to_string(),
            })?;
        if !is_float(dtype) {
            report.skipped.push(name.clone());
        } else if graph.initializer(name).is_some() || graph.graph_input(name).is_some() {
            report.matched.push(name.clone());
        } else {
            report.unmatched.push(name.clone());
        }
    }
    if report.matched.is_empty() {
        let sample: Vec<&str> = graph
            .initializers()
            .iter()
            .take(3)
            .map(|i| i.name.as_str())
            .collect();
        return Err(Error::invalid(
            format!("the tensors of {}", sources[0].path.display()),
            format!(
                "match no initializer or input of the ONNX graph (the graph's initializers \
                 are named like {sample:?}); {EXPORT_HINT}"
            ),
        ));
    }
    if !report.unmatched.is_empty() && !options.allow_unmatched {
        return Err(Error::invalid(
            format!(
                "{} float tensors of the weight files",
                report.unmatched.len()
            ),
            format!(
                "have no initializer or input in the graph: {}; {EXPORT_HINT} (or accept them \
                 with allow-unmatched)",
                report.unmatched.join(", ")
            ),
        ));
    }

    let k = files.len();
    let stats: BTreeSet<String> = graph.batch_norm_statistics().into_iter().collect();
    // The statistics on their own grid: every batch-norm statistic of the graph, from the
    // statistics files, whatever the point files hold of them.
    let own_grid = match &options.bn_stats {
        None => None,
        Some(b) => {
            let grid: Vec<String> = stats
                .iter()
                .filter(|n| graph.initializer(n).is_some() || graph.graph_input(n).is_some())
                .cloned()
                .collect();
            if grid.is_empty() {
                return Err(Error::invalid(
                    "batch-norm statistics files",
                    "are given, but the graph has no batch-norm statistics (running mean and \
                     variance of a BatchNormalization) to place on a grid",
                ));
            }
            for name in &grid {
                if !report.matched.contains(name) {
                    report.matched.push(name.clone());
                }
            }
            report.matched.sort();
            Some((b, grid))
        }
    };
    report.fixed = graph
        .initializers()
        .iter()
        .filter(|i| i.data_type == elem::FLOAT && !report.matched.contains(&i.name))
        .map(|i| i.name.clone())
        .collect();

    let (input, output) = io_specs(&graph, &report.matched)?;
    let (kind, basis, grid_tensors, bn_grid) = match (layout, &own_grid) {
        (PackLayout::Snapshots, _) => (Kind::Snapshots, None, Vec::new(), None),
        (PackLayout::Curve(b), Some((stats_files, grid))) => (
            Kind::Curve,
            Some(b),
            grid.clone(),
            Some(stats_files.grid.clone()),
        ),
        (PackLayout::Curve(b), None) => {
            let grid: Vec<String> = report
                .matched
                .iter()
                .filter(|n| stats.contains(*n))
                .cloned()
                .collect();
            // Each file's statistics belong to its own knot t_k = k / (K-1).
            let knots =
                (!grid.is_empty()).then(|| (0..k).map(|i| i as f64 / (k - 1) as f64).collect());
            (Kind::Curve, Some(b), grid, knots)
        }
    };
    report.grid_tensors = grid_tensors.clone();
    let mut packed_from = serde_json::json!({
        "packed_from": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    if let Some((b, _)) = &own_grid {
        packed_from["bn_stats_from"] = serde_json::json!(
            b.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        );
    }
    let meta = Metadata {
        kind,
        basis,
        points: k,
        bn_grid,
        grid_tensors,
        input,
        output,
        temperature: options.temperature.unwrap_or(1.0),
        preprocess: None,
        labels: options.labels.clone(),
        provenance: Some(packed_from),
        extra: Default::default(),
    };

    // The bundle holds every matched tensor, stacked: the graph keeps only their declarations
    // (as graph inputs), not the first network's copy of the weights.
    let matched: Vec<&str> = report.matched.iter().map(String::as_str).collect();
    let lifted = graph.lift_to_inputs(&matched)?;

    // Every tensor's full shape, from the files that hold it (points or statistics files).
    let stat_sources = match &own_grid {
        Some((b, _)) => read_sources(&b.files)?,
        None => Vec::new(),
    };
    let stat_parsed = parse_sources(&stat_sources)?;
    let mut plan: Vec<(String, Vec<usize>, bool)> = Vec::with_capacity(report.matched.len());
    for name in &report.matched {
        let on_own_grid = own_grid.as_ref().is_some_and(|(_, g)| g.contains(name));
        let (shape, count) = if on_own_grid {
            let missing = |src: &Source| Error::MissingTensor {
                tensor: name.clone(),
                reason: format!(
                    "{} holds no such tensor: each batch-norm statistics file holds every \
                     running mean and variance of the graph",
                    src.path.display()
                ),
            };
            (
                common_shape(name, &stat_parsed, &stat_sources, &missing)?,
                stat_sources.len(),
            )
        } else {
            let missing = |src: &Source| Error::MissingTensor {
                tensor: name.clone(),
                reason: format!("{} holds no such tensor", src.path.display()),
            };
            (common_shape(name, &parsed, &sources, &missing)?, k)
        };
        let mut full = vec![count];
        full.extend(shape);
        plan.push((name.clone(), full, on_own_grid));
    }
    // The loader's rules, on what is about to be stacked: nothing is converted before they
    // hold.
    BundleWriter::declared(
        &meta,
        &lifted,
        plan.iter().map(|(n, s, _)| (n.as_str(), s.as_slice())),
    )?;

    let mut writer = BundleWriter::new(meta, lifted);
    for (name, full, on_own_grid) in plan {
        let len = full.iter().product();
        let data = if on_own_grid {
            stack(&name, &stat_parsed, &stat_sources, len)?
        } else {
            stack(&name, &parsed, &sources, len)?
        };
        writer = writer.tensor(name, full, data)?;
    }
    Ok((writer, report))
}

/// The input to feed (the one data input the weights do not cover) and the logits output.
fn io_specs(graph: &OnnxModel, matched: &[String]) -> Result<(InputSpec, OutputSpec)> {
    let inputs: Vec<_> = graph
        .data_inputs()
        .into_iter()
        .filter(|i| !matched.contains(&i.name))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::onnx("the graph", "has no data input left to feed"));
        }
        many => {
            return Err(Error::onnx(
                "the graph",
                format!(
                    "has several data inputs ({}); a classifier bundle takes one",
                    many.iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    let dims = input
        .dims
        .as_ref()
        .ok_or_else(|| Error::onnx(format!("graph input `{}`", input.name), "declares no shape"))?;
    let mut shape = vec![-1i64];
    for (i, d) in dims.iter().enumerate().skip(1) {
        match d {
            Dim::Fixed(v) if *v > 0 => shape.push(*v),
            _ => {
                return Err(Error::onnx(
                    format!("graph input `{}`", input.name),
                    format!("has a free dimension at axis {i}; only the batch axis may be free"),
                ));
            }
        }
    }
    if dims.is_empty() {
        return Err(Error::onnx(
            format!("graph input `{}`", input.name),
            "is a scalar",
        ));
    }
    let output = graph
        .graph_outputs()
        .first()
        .ok_or_else(|| Error::onnx("the graph", "has no output"))?;
    let classes = match output.dims.as_deref() {
        Some([_, Dim::Fixed(c)]) if *c > 0 => *c as usize,
        _ => {
            return Err(Error::onnx(
                format!("graph output `{}`", output.name),
                "is not declared as [batch, classes] with a fixed class count",
            ));
        }
    };
    Ok((
        InputSpec {
            name: input.name.clone(),
            shape,
        },
        OutputSpec {
            name: output.name.clone(),
            classes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }
}
