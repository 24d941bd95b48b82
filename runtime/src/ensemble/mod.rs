//! Ensembles: a loaded bundle, ready to predict with any sampling of its members.
//!
//! One query's path: [`Ensemble::predict`] checks the input, [`sampling::select`] picks the
//! members, their [`Coefficients`] are computed once each (which checks them), and every
//! member runs on a static session (`statics.rs`) or on the dynamic graph fed with its
//! coefficients; `output.rs` turns logits into probabilities, entropy and disagreement.

mod output;
pub mod sampling;
mod statics;

pub use output::{
    CALIBRATION_BINS, ReliabilityBin, argmax, brier_score, calibration_error, disagreement,
    entropy, reliability,
};
pub use sampling::{MAX_MEMBERS, Sampling, member_count};

use std::path::Path;
use std::sync::{Arc, OnceLock};

use ndarray::{Array1, Array2, Array3, ArrayViewD, Axis, CowArray, IxDyn};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorRef};

use crate::bundle::{Bundle, Kind, Member, Role};
use crate::curve::{ArcLength, Coefficients};
use crate::graph::{Mix, MixVia, StackSource};
use crate::session::{Provider, Runtime, SessionPool, Sources};
use crate::{Error, Result};
use statics::StaticCache;

/// The most floats of per-member probabilities one query may ask for (1 GiB).
pub const MAX_PER_MEMBER_FLOATS: usize = 1 << 28;

/// The number of floats of per-member probabilities, `members * batch * classes`, or
/// [`Error::TooLarge`] past [`MAX_PER_MEMBER_FLOATS`].
pub fn per_member_floats(members: usize, batch: usize, classes: usize) -> Result<usize> {
    let floats = members
        .checked_mul(batch)
        .and_then(|n| n.checked_mul(classes))
        .unwrap_or(usize::MAX);
    if floats > MAX_PER_MEMBER_FLOATS {
        return Err(Error::TooLarge {
            what: "per-member probabilities (floats)",
            size: floats,
            limit: MAX_PER_MEMBER_FLOATS,
        });
    }
    Ok(floats)
}

/// Graph input carrying the curve coefficients `c_k(t)`, shape `[1, K]`.
pub const COEF_INPUT: &str = "modeconn.coef";
/// Graph input carrying the hat weights over `bn_grid`, shape `[1, G]`.
pub const GRID_COEF_INPUT: &str = "modeconn.grid_coef";
/// Graph input carrying the snapshot member index, an `int64` scalar.
pub const MEMBER_INPUT: &str = "modeconn.member";

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
    max_sessions: usize,
    dynamic: SessionPool,
    statics: StaticCache,
    arc: OnceLock<ArcLength>,
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
            let source = match (bundle.file(), bundle.file_offset(entry)) {
                (Some(file), Some(offset)) => {
                    sources.folder = Some(file.folder.clone());
                    sources.guard = Some(file.guard.clone());
                    StackSource::File {
                        location: file.name.clone(),
                        offset,
                    }
                }
                _ => {
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
        let model = bundle.graph().rewrite_dynamic(&mixes)?;
        let dynamic = SessionPool::new(runtime, model, sources, options.max_sessions)?;
        let statics = StaticCache::new(options.static_budget, bundle.member_bytes());
        Ok(Ensemble {
            runtime: runtime.clone(),
            bundle,
            max_sessions: options.max_sessions,
            dynamic,
            statics,
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
        if let Some(arc) = self.arc.get() {
            return Ok(arc);
        }
        let meta = self.bundle.metadata();
        let basis = meta.basis.ok_or(Error::KindMismatch {
            asked: "an arc length",
            kind: meta.kind,
        })?;
        let arc = ArcLength::new(basis, &self.bundle.gram()?);
        Ok(self.arc.get_or_init(|| arc))
    }

    /// The number of members `sampling` selects for a batch of `batch` samples (one per
    /// sample in per-sample modes): the length of [`Prediction::members`].
    pub fn member_count(&self, sampling: &Sampling, batch: usize) -> Result<usize> {
        member_count(self.bundle.members(), sampling, batch)
    }

    /// The members a sampling selects for a batch (one per sample in per-sample modes).
    pub fn members(&self, sampling: &Sampling, input: &ArrayViewD<'_, f32>) -> Result<Vec<Member>> {
        sampling::select(self.bundle.members(), sampling, input, || self.arc_length())
    }

    /// Checks an input batch against the bundle's input shape.
    fn check_input(&self, input: &ArrayViewD<'_, f32>) -> Result<()> {
        let spec = &self.bundle.metadata().input.shape;
        let shape = input.shape();
        let fits = shape.len() == spec.len()
            && shape[0] >= 1
            && shape[1..]
                .iter()
                .zip(&spec[1..])
                .all(|(&a, &b)| a as i64 == b);
        if !fits {
            return Err(Error::InputShape {
                found: shape.to_vec(),
                expected: spec.clone(),
            });
        }
        // NaN or infinite inputs make NaN probabilities that look like an answer.
        if let Some(index) = input.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: "the input".into(),
                index,
            });
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
        let input: CowArray<'_, f32, IxDyn> = input.as_standard_layout();
        let members = self.members(sampling, &input.view())?;
        let fixed = sampling.is_fixed_set();
        if sampling.is_per_sample() {
            return self.predict_per_sample(&input.view(), members, fixed);
        }
        let coefficients = self.coefficients(&members)?;
        let batch = input.shape()[0];
        let classes = self.bundle.metadata().output.classes;
        if per_member {
            per_member_floats(members.len(), batch, classes)?;
        }
        // The sums are made from the first member's output, whose shape the session has
        // checked, so a bundle claiming more classes than its graph makes allocates nothing.
        let mut mean: Option<Array2<f32>> = None;
        let mut all: Option<Array3<f32>> = None;
        let mut argmaxes: Vec<Vec<usize>> = Vec::with_capacity(members.len());
        for (j, (&member, coef)) in members.iter().zip(&coefficients).enumerate() {
            let probs = self.run_member(member, coef, &input.view(), fixed)?;
            argmaxes.push(probs.rows().into_iter().map(|r| argmax(r.iter())).collect());
            if per_member {
                all.get_or_insert_with(|| Array3::zeros((members.len(), batch, classes)))
                    .index_axis_mut(Axis(0), j)
                    .assign(&probs);
            }
            match mean.as_mut() {
                Some(m) => *m += &probs,
                None => mean = Some(probs),
            }
        }
        let mut mean = mean.ok_or(Error::NoMembers)?;
        mean /= members.len() as f32;
        Ok(Prediction {
            entropy: output::entropy(&mean),
            disagreement: Some(output::disagreement(&mean, &argmaxes)),
            probabilities: mean,
            per_member: all,
            members,
            per_sample: false,
            provider: self.provider(),
        })
    }

    /// Per-sample modes: the samples that share a member run together, as one batch.
    fn predict_per_sample(
        &self,
        input: &ArrayViewD<'_, f32>,
        members: Vec<Member>,
        fixed: bool,
    ) -> Result<Prediction> {
        let mut groups: Vec<(Member, Vec<usize>)> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            match groups.iter_mut().find(|(g, _)| g == m) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((*m, vec![i])),
            }
        }
        let coefficients = groups
            .iter()
            .map(|(m, _)| self.bundle.members().coefficients(*m))
            .collect::<Result<Vec<_>>>()?;
        let classes = self.bundle.metadata().output.classes;
        // Allocated once a member has run (its output's shape checked), as in `predict`.
        let mut probabilities: Option<Array2<f32>> = None;
        for ((member, rows), coef) in groups.iter().zip(&coefficients) {
            let sub = input.select(Axis(0), rows);
            let probs = self.run_member(*member, coef, &sub.view(), fixed)?;
            let all = probabilities.get_or_insert_with(|| Array2::zeros((members.len(), classes)));
            for (r, &row) in rows.iter().enumerate() {
                all.row_mut(row).assign(&probs.row(r));
            }
        }
        let probabilities = probabilities.ok_or(Error::NoMembers)?;
        Ok(Prediction {
            entropy: output::entropy(&probabilities),
            probabilities,
            per_member: None,
            members,
            per_sample: true,
            disagreement: None,
            provider: self.provider(),
        })
    }

    /// Every member's coefficients, before any of them runs: a member that does not exist
    /// fails the query at once.
    fn coefficients(&self, members: &[Member]) -> Result<Vec<Coefficients>> {
        members
            .iter()
            .map(|&m| self.bundle.members().coefficients(m))
            .collect()
    }

    /// The logits of each member a shared sampling selects (not a per-sample one), `[members,
    /// batch, classes]`, before the bundle's temperature: what fitting a temperature needs.
    pub fn logits(
        &self,
        input: ArrayViewD<'_, f32>,
        sampling: &Sampling,
    ) -> Result<(Vec<Member>, Array3<f32>)> {
        if sampling.is_per_sample() {
            return Err(Error::invalid(
                "logits",
                "are for a shared set of members, not one member per sample",
            ));
        }
        self.check_input(&input)?;
        let input: CowArray<'_, f32, IxDyn> = input.as_standard_layout();
        let members = self.members(sampling, &input.view())?;
        let coefficients = self.coefficients(&members)?;
        let batch = input.shape()[0];
        let classes = self.bundle.metadata().output.classes;
        per_member_floats(members.len(), batch, classes)?;
        let mut all = Array3::zeros((members.len(), batch, classes));
        for (j, (&member, coef)) in members.iter().zip(&coefficients).enumerate() {
            let logits =
                self.member_logits(member, coef, &input.view(), sampling.is_fixed_set())?;
            if logits.dim() != (batch, classes) {
                return Err(Error::ShapeMismatch {
                    tensor: self.bundle.metadata().output.name.clone(),
                    expected: vec![batch as i64, classes as i64],
                    found: vec![logits.nrows() as i64, logits.ncols() as i64],
                });
            }
            if let Some(index) = logits.iter().position(|v| !v.is_finite()) {
                return Err(Error::NotFinite {
                    what: format!("the logits of {member}"),
                    index,
                });
            }
            all.index_axis_mut(Axis(0), j).assign(&logits);
        }
        Ok((members, all))
    }

    /// The logits of one member on a batch: on its static session when it has one (or gets
    /// one now), else on the dynamic graph fed with its coefficients.
    fn member_logits(
        &self,
        member: Member,
        coefficients: &Coefficients,
        input: &ArrayViewD<'_, f32>,
        fixed: bool,
    ) -> Result<Array2<f32>> {
        let build = || {
            let model = self.bundle.materialize_with(coefficients)?;
            let sources = Sources {
                optimize: true,
                ..Sources::default()
            };
            SessionPool::new(&self.runtime, model, sources, self.max_sessions)
        };
        match self.statics.get_or_build(member, fixed, build)? {
            Some(pool) => pool.with_session(|s| self.run_static(s, input)),
            None => self
                .dynamic
                .with_session(|s| self.run_dynamic(s, member, coefficients, input)),
        }
    }

    /// Softmax probabilities of one member on a batch, with the bundle's temperature.
    fn run_member(
        &self,
        member: Member,
        coefficients: &Coefficients,
        input: &ArrayViewD<'_, f32>,
        fixed: bool,
    ) -> Result<Array2<f32>> {
        let logits = self.member_logits(member, coefficients, input, fixed)?;
        let temperature = self.bundle.metadata().temperature as f32;
        let probabilities = output::softmax(logits, temperature);
        // Logits that overflow (or a graph that makes NaN) must not pass as an answer.
        if let Some(index) = probabilities.iter().position(|p| !p.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("the probabilities of {member}"),
                index,
            });
        }
        Ok(probabilities)
    }

    /// Number of members currently held in static sessions.
    pub fn static_members(&self) -> usize {
        self.statics.len()
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
        output::logits_of(&outputs, &meta.output.name, meta.output.classes)
    }

    fn run_dynamic(
        &self,
        session: &mut Session,
        member: Member,
        coefficients: &Coefficients,
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
                let k = coefficients.points.len();
                let coef = Tensor::from_array(([1usize, k], coefficients.points.clone()))?;
                match &coefficients.grid {
                    Some(g) => {
                        let g = Tensor::from_array(([1usize, g.len()], g.clone()))?;
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
        output::logits_of(&outputs, &meta.output.name, meta.output.classes)
    }
}
