//! The `__metadata__` of a bundle: parsing and checking each key, and writing them back.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::curve::Basis;
use crate::{Error, Result};

/// Metadata keys of format version 1.
pub mod keys {
    /// Format version, `"1"`.
    pub const FORMAT: &str = "modeconn.format";
    /// `"curve"` or `"snapshots"`.
    pub const KIND: &str = "modeconn.kind";
    /// `"bezier"` or `"polychain"` (curves).
    pub const BASIS: &str = "modeconn.basis";
    /// K (curves) or M (snapshots).
    pub const POINTS: &str = "modeconn.points";
    /// JSON array of t values where batch-norm statistics were recomputed.
    pub const BN_GRID: &str = "modeconn.bn_grid";
    /// JSON array of the tensors that live on `bn_grid`.
    pub const GRID_TENSORS: &str = "modeconn.grid_tensors";
    /// JSON `{"name": ..., "shape": [...]}`.
    pub const INPUT: &str = "modeconn.input";
    /// JSON `{"name": ..., "classes": ...}`.
    pub const OUTPUT: &str = "modeconn.output";
    /// Softmax temperature.
    pub const TEMPERATURE: &str = "modeconn.temperature";
    /// JSON `{"mean": [...], "std": [...]}`.
    pub const PREPROCESS: &str = "modeconn.preprocess";
    /// JSON array of class names.
    pub const LABELS: &str = "modeconn.labels";
    /// Free-form JSON about where the bundle came from.
    pub const PROVENANCE: &str = "modeconn.provenance";
    /// The tensor holding the ONNX graph.
    pub const GRAPH_TENSOR: &str = "modeconn.graph";
}

/// The bundle format version this crate reads and writes.
pub const FORMAT_VERSION: &str = "1";

/// The most control points a curve may have: its Gram matrix has `(K-1)²` entries, and a
/// curve of more points than this is not one of the paper's (they have three).
pub const MAX_CURVE_POINTS: usize = 1 << 10;

/// The most members a snapshot set may have, as many as one query may select
/// ([`MAX_MEMBERS`](crate::ensemble::MAX_MEMBERS)).
pub const MAX_SNAPSHOTS: usize = crate::ensemble::MAX_MEMBERS;

/// What a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Control points of a curve; members are points `w(t)` for `t ∈ [0, 1]`.
    Curve,
    /// A set of networks (e.g. FGE snapshots); members are indices.
    Snapshots,
}

impl Kind {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Curve => "curve",
            Kind::Snapshots => "snapshots",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "curve" => Ok(Kind::Curve),
            "snapshots" => Ok(Kind::Snapshots),
            other => Err(Error::UnknownKind(other.to_string())),
        }
    }
}

/// The network input: graph input name and shape, `-1` for the batch axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The graph input to feed.
    pub name: String,
    /// Its shape; the first axis is the batch and is `-1`.
    pub shape: Vec<i64>,
}

/// The network output: a graph output holding logits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// The graph output holding `[batch, classes]` logits.
    pub name: String,
    /// The number of classes.
    pub classes: usize,
}

/// Per-channel normalisation that callers may apply to raw inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Per-channel mean.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation.
    pub std: Vec<f64>,
}

/// Everything `__metadata__` says about a bundle, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Curve or snapshot set.
    pub kind: Kind,
    /// The curve's basis (curves only).
    pub basis: Option<Basis>,
    /// K control points (curves) or M members (snapshots).
    pub points: usize,
    /// Increasing t values, first 0 and last 1, where batch-norm statistics were recomputed
    /// (curves with batch norm).
    pub bn_grid: Option<Vec<f64>>,
    /// The tensors whose leading axis runs over `bn_grid`.
    pub grid_tensors: Vec<String>,
    /// The network input.
    pub input: InputSpec,
    /// The network output.
    pub output: OutputSpec,
    /// Softmax temperature: probabilities are `softmax(logits / temperature)`.
    pub temperature: f64,
    /// Optional input normalisation.
    pub preprocess: Option<Preprocess>,
    /// Optional class names.
    pub labels: Option<Vec<String>>,
    /// Optional provenance (architecture, training configuration, hashes, metrics).
    pub provenance: Option<serde_json::Value>,
    /// Keys this version does not know, kept as they were.
    pub extra: BTreeMap<String, String>,
}

fn meta_err(key: &str, reason: impl Into<String>) -> Error {
    Error::Metadata {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn json<T: for<'de> Deserialize<'de>>(key: &str, value: &str, what: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| meta_err(key, format!("expected {what}: {e}")))
}

impl Metadata {
    /// Parses and checks the metadata map of a bundle (every key on its own; cross-checks
    /// against tensors and graph are done by the bundle loader).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str| {
            map.get(key)
                .map(String::as_str)
                .ok_or_else(|| meta_err(key, "missing"))
        };
        let format = get(keys::FORMAT)?;
        if format != FORMAT_VERSION {
            return Err(meta_err(
                keys::FORMAT,
                format!("format version `{format}` is not supported (this build reads `1`)"),
            ));
        }
        let kind: Kind = get(keys::KIND)?.parse()?;
        let basis = match (kind, map.get(keys::BASIS)) {
            (Kind::Curve, Some(b)) => Some(b.parse::<Basis>()?),
            (Kind::Curve, None) => {
                return Err(meta_err(keys::BASIS, "missing (required for curves)"));
            }
            (Kind::Snapshots, _) => None,
        };
        let points_text = get(keys::POINTS)?;
        let points: usize = points_text.trim().parse().map_err(|_| {
            meta_err(
                keys::POINTS,
                format!("`{points_text}` is not a positive integer"),
            )
        })?;
        let (min_points, max_points, what) = match kind {
            Kind::Curve => (2, MAX_CURVE_POINTS, "a curve: control points"),
            Kind::Snapshots => (1, MAX_SNAPSHOTS, "a snapshot set: members"),
        };
        // The upper bound is checked before anything is sized by it: a bundle whose tensors
        // are not indexed by points would otherwise size coefficients and Gram matrices by any
        // number at all.
        if !(min_points..=max_points).contains(&points) {
            return Err(meta_err(
                keys::POINTS,
                format!("{what} must number {min_points} to {max_points}, got {points}"),
            ));
        }
        let bn_grid = match map.get(keys::BN_GRID) {
            None => None,
            Some(v) => Some(check_bn_grid(&parse_grid(v)?)?),
        };
        let grid_tensors: Vec<String> = match map.get(keys::GRID_TENSORS) {
            None => Vec::new(),
            Some(v) => json(keys::GRID_TENSORS, v, "a JSON array of tensor names")?,
        };
        if !grid_tensors.is_empty() {
            if kind == Kind::Snapshots {
                return Err(meta_err(
                    keys::GRID_TENSORS,
                    "snapshot sets carry each member's own statistics; grid tensors are for curves",
                ));
            }
            if bn_grid.is_none() {
                return Err(meta_err(
                    keys::BN_GRID,
                    "missing, but grid tensors are listed",
                ));
            }
        }
        let input: InputSpec = json(
            keys::INPUT,
            get(keys::INPUT)?,
            r#"{"name": ..., "shape": [...]}"#,
        )?;
        if input.shape.first() != Some(&-1) {
            return Err(meta_err(
                keys::INPUT,
                format!(
                    "shape {:?} must start with -1 for the batch axis",
                    input.shape
                ),
            ));
        }
        if let Some(d) = input.shape[1..].iter().find(|&&d| d <= 0) {
            return Err(meta_err(
                keys::INPUT,
                format!(
                    "shape {:?} has a non-positive dimension {d} after the batch axis",
                    input.shape
                ),
            ));
        }
        let output: OutputSpec = json(
            keys::OUTPUT,
            get(keys::OUTPUT)?,
            r#"{"name": ..., "classes": N}"#,
        )?;
        if output.classes == 0 {
            return Err(meta_err(keys::OUTPUT, "classes must be at least 1"));
        }
        let temperature = match map.get(keys::TEMPERATURE) {
            None => 1.0,
            // Logits are divided by it in single precision: 1e-40 is positive as f64 but 0 as
            // f32, and every probability would be NaN.
            Some(v) => match v.trim().parse::<f64>() {
                Ok(t) if t > 0.0 && (t as f32).is_normal() => t,
                _ => {
                    return Err(meta_err(
                        keys::TEMPERATURE,
                        format!(
                            "`{v}` is not a positive number in single precision (from {:e} to \
                             {:e})",
                            f32::MIN_POSITIVE,
                            f32::MAX
                        ),
                    ));
                }
            },
        };
        let preprocess: Option<Preprocess> = match map.get(keys::PREPROCESS) {
            None => None,
            Some(v) => {
                let p: Preprocess = json(keys::PREPROCESS, v, r#"{"mean": [...], "std": [...]}"#)?;
                if p.mean.len() != p.std.len() || !p.std.iter().all(|&s| s > 0.0 && s.is_finite()) {
                    return Err(meta_err(
                        keys::PREPROCESS,
                        "mean and std must have one entry per channel and std must be positive",
                    ));
                }
                Some(p)
            }
        };
        let labels: Option<Vec<String>> = match map.get(keys::LABELS) {
            None => None,
            Some(v) => Some(json(keys::LABELS, v, "a JSON array of strings")?),
        };
        if let Some(l) = &labels
            && l.len() != output.classes
        {
            return Err(meta_err(
                keys::LABELS,
                format!("{} names for {} classes", l.len(), output.classes),
            ));
        }
        let provenance = match map.get(keys::PROVENANCE) {
            None => None,
            Some(v) => Some(json(keys::PROVENANCE, v, "JSON")?),
        };
        let known = [
            keys::FORMAT,
            keys::KIND,
            keys::BASIS,
            keys::POINTS,
            keys::BN_GRID,
            keys::GRID_TENSORS,
            keys::INPUT,
            keys::OUTPUT,
            keys::TEMPERATURE,
            keys::PREPROCESS,
            keys::LABELS,
            keys::PROVENANCE,
        ];
        let extra = map
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Metadata {
            kind,
            basis,
            points,
            bn_grid,
            grid_tensors,
            input,
            output,
            temperature,
            preprocess,
            labels,
            provenance,
            extra,
        })
    }

    /// The metadata as the string map stored in the file.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = self.extra.clone().into_iter().collect();
        let mut put = |k: &str, v: String| {
            map.insert(k.to_string(), v);
        };
        put(keys::FORMAT, FORMAT_VERSION.to_string());
        put(keys::KIND, self.kind.as_str().to_string());
        if let Some(b) = self.basis {
            put(keys::BASIS, b.as_str().to_string());
        }
        put(keys::POINTS, self.points.to_string());
        if let Some(g) = &self.bn_grid {
            put(keys::BN_GRID, serde_json::json!(g).to_string());
        }
        if !self.grid_tensors.is_empty() {
            put(
                keys::GRID_TENSORS,
                serde_json::json!(self.grid_tensors).to_string(),
            );
        }
        put(keys::INPUT, serde_json::json!(self.input).to_string());
        put(keys::OUTPUT, serde_json::json!(self.output).to_string());
        if self.temperature != 1.0 {
            put(keys::TEMPERATURE, self.temperature.to_string());
        }
        if let Some(p) = &self.preprocess {
            put(keys::PREPROCESS, serde_json::json!(p).to_string());
        }
        if let Some(l) = &self.labels {
            put(keys::LABELS, serde_json::json!(l).to_string());
        }
        if let Some(p) = &self.provenance {
            put(keys::PROVENANCE, p.to_string());
        }
        map
    }
}

/// Parses the bn grid, reading the non-standard `NaN` and `Infinity` that Python's `json`
/// writes as missing values so that they are reported as non-finite, not as bad JSON.
fn parse_grid(text: &str) -> Result<Vec<Option<f64>>> {
    let what = "a JSON array of numbers";
    match serde_json::from_str::<Vec<Option<f64>>>(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let lenient = text
                .replace("-Infinity", "null")
                .replace("Infinity", "null")
                .replace("NaN", "null");
            serde_json::from_str::<Vec<Option<f64>>>(&lenient)
                .map_err(|_| meta_err(keys::BN_GRID, format!("expected {what}: {first}")))
        }
    }
}

/// Checks a bn grid: at least two finite, strictly increasing values from 0 to 1.
pub(crate) fn check_bn_grid(values: &[Option<f64>]) -> Result<Vec<f64>> {
    let key = keys::BN_GRID;
    let mut grid = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(x) if x.is_finite() => grid.push(*x),
            // JSON has no NaN; Python's json writes `NaN`, which arrives here as a parse error,
            // and `null` (what many writers emit for NaN) arrives as None.
            _ => {
                return Err(Error::NotFinite {
                    what: key.to_string(),
                    index: i,
                });
            }
        }
    }
    if grid.len() < 2 {
        return Err(meta_err(key, "needs at least two points (0 and 1)"));
    }
    if grid[0] != 0.0 || grid[grid.len() - 1] != 1.0 {
        return Err(meta_err(key, "must start at 0 and end at 1"));
    }
    if let Some(i) = grid.windows(2).position(|w| w[1] <= w[0]) {
        return Err(meta_err(
            key,
            format!("must be strictly increasing (positions {i} and {})", i + 1),
        ));
    }
    Ok(grid)
}
