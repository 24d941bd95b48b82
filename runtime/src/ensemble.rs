//! Ensembles: a loaded bundle, ready to predict with any sampling of its members.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{Array1, Array2, Array3, ArrayViewD, Axis};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorRef};

use crate::bundle::{Bundle, Kind, Member, Role, TensorEntry};
use crate::curve::{self, ArcLength, SeededRng};
use crate::graph::{Mix, MixVia, StackSource};
use crate::session::{Provider, Runtime, SessionPool, Sources};
use crate::{Error, Result};

/// Graph input carrying the curve coefficients `c_k(t)`, shape `[1, K]`.
pub const COEF_INPUT: &str = "modeconn.coef";
/// Graph input carrying the hat weights over `bn_grid`, shape `[1, G]`.
pub const GRID_COEF_INPUT: &str = "modeconn.grid_coef";
/// Graph input carrying the snapshot member index, an `int64` scalar.
pub const MEMBER_INPUT: &str = "modeconn.member";

/// How to choose the members that answer a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// These t values (curves).
    At(Vec<f64>),
    /// `M ≥ 2` equally spaced t values from 0 to 1 (curves).
    Grid(usize),
    /// `n` t values drawn uniformly from `[0, 1]` with a seeded generator (curves).
    Uniform {
        /// Number of draws.
        n: usize,
        /// Seed of the generator; the same seed gives the same t values.
        seed: u64,
    },
    /// `n` t values drawn uniformly in arc length along the curve (curves).
    ArcUniform {
        /// Number of draws.
        n: usize,
        /// Seed of the generator.
        seed: u64,
    },
    /// Every member of a snapshot set.
    AllMembers,
    /// These members of a snapshot set, in this order.
    Members(Vec<usize>),
    /// One member per sample, drawn uniformly: a grid point of `grid` points for curves or a
    /// member of a snapshot set. Draws come from the OS CSPRNG, or from a seeded generator
    /// when `seed` is given (for tests and reproducible experiments only).
    Randomized {
        /// Grid size R for curves (ignored for snapshot sets).
        grid: usize,
        /// Optional seed replacing the OS CSPRNG.
        seed: Option<u64>,
    },
    /// One member per sample chosen by a keyed hash of the sample's bytes: resubmitting an
    /// input gets the same member, and without the key the member cannot be predicted.
    Keyed {
        /// The secret key.
        key: [u8; 32],
        /// Grid size R for curves (ignored for snapshot sets).
        grid: usize,
    },
}

impl Sampling {
    /// Whether every sample is answered by its own member.
    pub fn is_per_sample(&self) -> bool {
        matches!(self, Sampling::Randomized { .. } | Sampling::Keyed { .. })
    }

    /// Whether the members form a fixed set worth keeping materialised.
    fn is_fixed_set(&self) -> bool {
        !matches!(
            self,
            Sampling::At(_) | Sampling::Uniform { .. } | Sampling::ArcUniform { .. }
        )
    }
}

/// What a prediction returns.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Mean softmax probabilities over the members, `[batch, classes]`.
    pub probabilities: Array2<f32>,
    /// Each member's probabilities, `[members, batch, classes]`, when asked for (not in
    /// per-sample modes).
    pub per_member: Option<Array3<f32>>,
    /// The members used, in order; in per-sample modes, the member of each sample.
    pub members: Vec<Member>,
    /// Whether `members` holds one member per sample.
    pub per_sample: bool,
    /// Entropy (nats) of each sample's mean probabilities.
    pub entropy: Array1<f32>,
    /// Fraction of members whose top class differs from the ensemble's, per sample (shared
    /// member sets only).
    pub disagreement: Option<Array1<f32>>,
    /// The execution provider that ran the members.
    pub provider: Provider,
}

/// Settings of an ensemble.
#[derive(Debug, Clone)]
pub struct EnsembleOptions {
    /// Bytes of weights that may be kept in static (materialised) sessions; `0` disables them.
    pub static_budget: usize,
    /// Sessions per model, i.e. how many threads can run one member at the same time.
    pub max_sessions: usize,
}

impl Default for EnsembleOptions {
    fn default() -> Self {
        EnsembleOptions {
            static_budget: 1 << 30,
            max_sessions: std::thread::available_parallelism().map_or(4, |n| n.get()),
        }
    }
}

/// A loaded bundle, ready to predict. Safe to share across threads (`Arc<Ensemble>`): each call
/// takes a session from a pool.
pub struct Ensemble {
    runtime: Runtime,
    bundle: Bundle,
    options: EnsembleOptions,
    dynamic: SessionPool,
    statics: Mutex<StaticCache>,
    arc: OnceLock<Result<ArcLength, String>>,
}

#[derive(Default)]
struct StaticCache {
    pools: HashMap<MemberKey, Arc<SessionPool>>,
    bytes: usize,
}

/// A member as a hashable key (t by its bit pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MemberKey {
    T(u64),
    Index(usize),
}

impl From<Member> for MemberKey {
    fn from(m: Member) -> Self {
        match m {
            Member::T(t) => MemberKey::T(t.to_bits()),
            Member::Index(i) => MemberKey::Index(i),
        }
    }
}

impl std::fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("bundle", &self.bundle)
            .field("provider", &self.dynamic.provider())
            .finish_non_exhaustive()
    }
}

impl Ensemble {
    /// Opens a bundle file and prepares it to run.
    pub fn open(
        runtime: &Runtime,
        path: impl AsRef<Path>,
        options: EnsembleOptions,
    ) -> Result<Self> {
        Self::new(runtime, Bundle::open(path)?, options)
    }

    /// Prepares a loaded bundle to run: rewrites its graph so that the varying tensors are
    /// computed inside it from a few coefficients per query, and hands the weights to ONNX
    /// Runtime once (the only copy made on the way from the file).
    pub fn new(runtime: &Runtime, bundle: Bundle, options: EnsembleOptions) -> Result<Self> {
        let meta = bundle.metadata();
        let grid_len = meta.bn_grid.as_ref().map_or(0, Vec::len);
        let mut mixes = Vec::with_capacity(bundle.tensors().len());
        let mut sources = Sources::default();
        for entry in bundle.tensors() {
            let stack = format!("modeconn.stack/{}", entry.name);
            let via = match (meta.kind, entry.role) {
                (Kind::Snapshots, _) => MixVia::Gather {
                    index: MEMBER_INPUT.into(),
                    members: meta.points,
                },
                (Kind::Curve, Role::Points) => MixVia::MatMul {
                    coef: COEF_INPUT.into(),
                    points: meta.points,
                },
                (Kind::Curve, Role::Grid) => MixVia::MatMul {
                    coef: GRID_COEF_INPUT.into(),
                    points: grid_len,
                },
            };
            // The stack is the tensor's data as it lies in the bundle ([K, ...] is [K, n] in
            // row-major order). From a file, ONNX Runtime maps it itself: no copy on the CPU.
            // From memory, it is handed over as a value, which ONNX Runtime copies once.
            let source = match file_source(&bundle, entry) {
                Some((folder, source)) => {
                    sources.folder = Some(folder);
                    source
                }
                None => {
                    let shape: Vec<usize> = match via {
                        MixVia::Gather { .. } => entry.shape.clone(),
                        MixVia::MatMul { .. } => vec![entry.slices(), entry.slice_len()],
                    };
                    let data: Box<[f32]> = bundle.data(entry).into_owned().into_boxed_slice();
                    let value: DynValue = Tensor::from_array((shape, data))?.into_dyn();
                    sources.values.push((stack.clone(), Arc::new(value)));
                    StackSource::Supplied
                }
            };
            mixes.push(Mix {
                name: entry.name.clone(),
                shape: entry.slice_shape().to_vec(),
                stack,
                via,
                source,
            });
        }
        if sources.folder.is_some() {
            sources.guard = bundle.guard();
        }
        let model = bundle.graph().rewrite_dynamic(&mixes)?;
        let dynamic = SessionPool::new(runtime, model, sources, options.max_sessions)?;
        Ok(Ensemble {
            runtime: runtime.clone(),
            bundle,
            options,
            dynamic,
            statics: Mutex::new(StaticCache::default()),
            arc: OnceLock::new(),
        })
    }

    /// The bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The execution provider in use.
    pub fn provider(&self) -> Provider {
        self.dynamic.provider()
    }

    /// The arc length table of the curve (computed on first use from the control points).
    pub fn arc_length(&self) -> Result<&ArcLength> {
        let arc = self.arc.get_or_init(|| {
            let basis = self
                .bundle
                .metadata()
                .basis
                .ok_or("a snapshot set is not a curve")?;
            let gram = self.bundle.gram().map_err(|e| e.to_string())?;
            Ok(ArcLength::new(basis, &gram))
        });
        arc.as_ref().map_err(|e| Error::Sampling(e.clone()))
    }

    /// The members a sampling selects for a batch of `batch` samples (one per sample in
    /// per-sample modes).
    pub fn members(&self, sampling: &Sampling, input: &ArrayViewD<'_, f32>) -> Result<Vec<Member>> {
        let kind = self.bundle.metadata().kind;
        let batch = input.shape().first().copied().unwrap_or(0);
        let need_curve = |what: &str| -> Result<()> {
            if kind != Kind::Curve {
                return Err(Error::Sampling(format!(
                    "{what} needs a curve; this bundle is a snapshot set (choose members)"
                )));
            }
            Ok(())
        };
        let count = self.bundle.metadata().points;
        let members: Vec<Member> = match sampling {
            Sampling::At(ts) => {
                need_curve("sampling at t")?;
                ts.iter().map(|&t| Member::T(t)).collect()
            }
            Sampling::Grid(m) => {
                need_curve("a grid of t")?;
                curve::grid(*m)?.into_iter().map(Member::T).collect()
            }
            Sampling::Uniform { n, seed } => {
                need_curve("uniform sampling of t")?;
                curve::uniform(*n, *seed)
                    .into_iter()
                    .map(Member::T)
                    .collect()
            }
            Sampling::ArcUniform { n, seed } => {
                need_curve("sampling uniform in arc length")?;
                let arc = self.arc_length()?;
                curve::uniform(*n, *seed)
                    .into_iter()
                    .map(|u| Member::T(arc.t_at_fraction(u)))
                    .collect()
            }
            Sampling::AllMembers | Sampling::Members(_) if kind == Kind::Curve => {
                return Err(Error::Sampling(
                    "members are for snapshot sets; this bundle is a curve (choose t)".into(),
                ));
            }
            Sampling::AllMembers => (0..count).map(Member::Index).collect(),
            Sampling::Members(list) => list.iter().map(|&i| Member::Index(i)).collect(),
            Sampling::Randomized { grid, seed } => {
                let choices = self.choices(*grid)?;
                let mut rng = seed.map(SeededRng::new);
                (0..batch)
                    .map(|_| match rng.as_mut() {
                        Some(r) => Ok(choices[r.index(choices.len())]),
                        None => curve::os_index(choices.len()).map(|i| choices[i]),
                    })
                    .collect::<Result<_>>()?
            }
            Sampling::Keyed { key, grid } => {
                let choices = self.choices(*grid)?;
                let sample_len: usize = input.shape()[1..].iter().product();
                let flat = input
                    .as_slice()
                    .ok_or_else(|| Error::Input("the input is not contiguous".into()))?;
                flat.chunks(sample_len.max(1))
                    .map(|sample| {
                        let bytes: Vec<u8> = sample.iter().flat_map(|v| v.to_le_bytes()).collect();
                        choices[curve::keyed_index(key, &bytes, choices.len())]
                    })
                    .collect()
            }
        };
        if members.is_empty() {
            return Err(Error::Sampling("no members selected".into()));
        }
        members
            .into_iter()
            .map(|m| self.bundle.check_member(m))
            .collect()
    }

    /// The candidates of per-sample modes: the grid for curves, every member for snapshots.
    fn choices(&self, grid: usize) -> Result<Vec<Member>> {
        Ok(match self.bundle.metadata().kind {
            Kind::Curve => curve::grid(grid)?.into_iter().map(Member::T).collect(),
            Kind::Snapshots => (0..self.bundle.metadata().points)
                .map(Member::Index)
                .collect(),
        })
    }

    /// Checks an input batch against the bundle's input shape.
    fn check_input(&self, input: &ArrayViewD<'_, f32>) -> Result<()> {
        let spec = &self.bundle.metadata().input.shape;
        let shape = input.shape();
        let ok = shape.len() == spec.len()
            && shape[0] >= 1
            && shape[1..]
                .iter()
                .zip(&spec[1..])
                .all(|(&a, &b)| a as i64 == b);
        if !ok {
            let want: Vec<String> = std::iter::once("batch".to_string())
                .chain(spec[1..].iter().map(|d| d.to_string()))
                .collect();
            return Err(Error::Input(format!(
                "shape {shape:?} does not match the bundle's input [{}]",
                want.join(", ")
            )));
        }
        Ok(())
    }

    /// Predicts a batch: mean probabilities over the members `sampling` selects, and with
    /// `per_member` each member's own.
    pub fn predict(
        &self,
        input: ArrayViewD<'_, f32>,
        sampling: &Sampling,
        per_member: bool,
    ) -> Result<Prediction> {
        self.check_input(&input)?;
        let input = input.as_standard_layout();
        let members = self.members(sampling, &input.view())?;
        let batch = input.shape()[0];
        let classes = self.bundle.metadata().output.classes;
        let fixed = sampling.is_fixed_set();
        let mut mean = Array2::<f32>::zeros((batch, classes));
        let per_sample = sampling.is_per_sample();
        if per_sample {
            // Samples that share a member run together, as one batch.
            let mut groups: Vec<(Member, Vec<usize>)> = Vec::new();
            for (i, m) in members.iter().enumerate() {
                match groups.iter_mut().find(|(g, _)| g == m) {
                    Some((_, rows)) => rows.push(i),
                    None => groups.push((*m, vec![i])),
                }
            }
            for (member, rows) in groups {
                let sub = input.select(Axis(0), &rows);
                let probs = self.run_member(member, &sub.view(), fixed)?;
                for (r, &row) in rows.iter().enumerate() {
                    mean.row_mut(row).assign(&probs.row(r));
                }
            }
            let entropy = entropy(&mean);
            return Ok(Prediction {
                probabilities: mean,
                per_member: None,
                members,
                per_sample: true,
                entropy,
                disagreement: None,
                provider: self.provider(),
            });
        }
        let mut all = per_member.then(|| Array3::<f32>::zeros((members.len(), batch, classes)));
        let mut argmaxes: Vec<Vec<usize>> = Vec::with_capacity(members.len());
        for (j, &member) in members.iter().enumerate() {
            let probs = self.run_member(member, &input.view(), fixed)?;
            mean += &probs;
            argmaxes.push(probs.rows().into_iter().map(|r| argmax(r.iter())).collect());
            if let Some(a) = all.as_mut() {
                a.index_axis_mut(Axis(0), j).assign(&probs);
            }
        }
        mean /= members.len() as f32;
        let top: Vec<usize> = mean.rows().into_iter().map(|r| argmax(r.iter())).collect();
        let disagreement = Array1::from_iter((0..batch).map(|i| {
            argmaxes.iter().filter(|a| a[i] != top[i]).count() as f32 / members.len() as f32
        }));
        Ok(Prediction {
            entropy: entropy(&mean),
            probabilities: mean,
            per_member: all,
            members,
            per_sample: false,
            disagreement: Some(disagreement),
            provider: self.provider(),
        })
    }

    /// Softmax probabilities of one member on a batch.
    fn run_member(
        &self,
        member: Member,
        input: &ArrayViewD<'_, f32>,
        fixed: bool,
    ) -> Result<Array2<f32>> {
        let logits = match self.static_pool(member, fixed)? {
            Some(pool) => pool.with_session(|s| self.run_static(s, input))?,
            None => self
                .dynamic
                .with_session(|s| self.run_dynamic(s, member, input))?,
        };
        Ok(softmax(logits, self.bundle.metadata().temperature as f32))
    }

    /// The static session of a member: cached, or materialised now when the set is fixed and
    /// the budget allows; `None` sends the member to the dynamic graph.
    fn static_pool(&self, member: Member, fixed: bool) -> Result<Option<Arc<SessionPool>>> {
        let key = MemberKey::from(member);
        let cost = self.bundle.member_bytes();
        {
            let cache = self.statics.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = cache.pools.get(&key) {
                return Ok(Some(Arc::clone(p)));
            }
            if !fixed || cache.bytes + cost > self.options.static_budget {
                return Ok(None);
            }
        }
        // Built outside the lock: other threads keep running meanwhile. Two threads may build
        // the same member at once; the first to finish is kept.
        let model = self.bundle.materialize(member)?;
        let sources = Sources {
            optimize: true,
            ..Sources::default()
        };
        let pool = Arc::new(SessionPool::new(
            &self.runtime,
            model,
            sources,
            self.options.max_sessions,
        )?);
        let mut cache = self.statics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.pools.get(&key) {
            return Ok(Some(Arc::clone(p)));
        }
        if cache.bytes + cost > self.options.static_budget {
            return Ok(Some(pool));
        }
        cache.bytes += cost;
        cache.pools.insert(key, Arc::clone(&pool));
        Ok(Some(pool))
    }

    /// Number of members currently held in static sessions.
    pub fn static_members(&self) -> usize {
        self.statics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pools
            .len()
    }

    fn run_static(
        &self,
        session: &mut Session,
        input: &ArrayViewD<'_, f32>,
    ) -> Result<Array2<f32>> {
        let meta = self.bundle.metadata();
        let outputs = session.run(
            ort::inputs![meta.input.name.as_str() => TensorRef::from_array_view(input.view())?],
        )?;
        logits_of(&outputs, &meta.output.name, meta.output.classes)
    }

    fn run_dynamic(
        &self,
        session: &mut Session,
        member: Member,
        input: &ArrayViewD<'_, f32>,
    ) -> Result<Array2<f32>> {
        let meta = self.bundle.metadata();
        let data = TensorRef::from_array_view(input.view())?;
        let outputs = match member {
            Member::Index(i) => {
                let index = Tensor::from_array((Vec::<i64>::new(), vec![i as i64]))?;
                session
                    .run(ort::inputs![meta.input.name.as_str() => data, MEMBER_INPUT => index])?
            }
            Member::T(_) => {
                let coef = self.bundle.point_coefficients(member)?;
                let k = coef.len();
                let coef = Tensor::from_array(([1usize, k], coef))?;
                match self.bundle.grid_coefficients(member)? {
                    Some(g) => {
                        let n = g.len();
                        let g = Tensor::from_array(([1usize, n], g))?;
                        session.run(ort::inputs![
                            meta.input.name.as_str() => data,
                            COEF_INPUT => coef,
                            GRID_COEF_INPUT => g
                        ])?
                    }
                    None => session
                        .run(ort::inputs![meta.input.name.as_str() => data, COEF_INPUT => coef])?,
                }
            }
        };
        logits_of(&outputs, &meta.output.name, meta.output.classes)
    }
}

/// The folder and file reference through which ONNX Runtime can map a tensor's data straight
/// from the bundle file.
fn file_source(bundle: &Bundle, entry: &TensorEntry) -> Option<(std::path::PathBuf, StackSource)> {
    let (path, offset) = bundle.file_data(entry)?;
    let path = std::fs::canonicalize(path).ok()?;
    let folder = path.parent()?.to_path_buf();
    let location = path.file_name()?.to_str()?.to_string();
    Some((folder, StackSource::File { location, offset }))
}

fn logits_of(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    classes: usize,
) -> Result<Array2<f32>> {
    let value = outputs
        .get(name)
        .ok_or_else(|| Error::Onnx(format!("the graph produced no output `{name}`")))?;
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if dims.len() != 2 || dims[1] != classes {
        return Err(Error::ShapeMismatch {
            tensor: name.to_string(),
            expected: vec![-1, classes as i64],
            found: shape.iter().copied().collect(),
        });
    }
    Array2::from_shape_vec((dims[0], dims[1]), data.to_vec())
        .map_err(|e| Error::Onnx(e.to_string()))
}

/// Row-wise `softmax(logits / temperature)`, stable for large logits.
fn softmax(mut logits: Array2<f32>, temperature: f32) -> Array2<f32> {
    for mut row in logits.rows_mut() {
        let max = row
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v / temperature));
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v / temperature - max).exp();
            sum += *v;
        }
        row.mapv_inplace(|v| v / sum);
    }
    logits
}

fn entropy(p: &Array2<f32>) -> Array1<f32> {
    Array1::from_iter(p.rows().into_iter().map(|r| {
        -r.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| v * v.ln())
            .sum::<f32>()
    }))
}

/// Index of the largest value (the first one on ties; 0 for an empty row): the predicted class
/// of a row of probabilities.
pub fn argmax<'a>(values: impl Iterator<Item = &'a f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
