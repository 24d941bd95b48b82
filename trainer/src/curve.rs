//! Fitting a curve between two trained networks: control points per parameter, endpoints
//! fixed unless asked otherwise, bends initialised on the segment, one `t ~ U(0, 1)` per
//! mini-batch, and `wd/2 · ||w(t)||²` on the sampled point. Batch-norm statistics are then
//! recomputed on a grid of t. Works by parameter name for every architecture.

use std::collections::BTreeMap;

use modeconn_runtime::curve::{self as rcurve, Basis, SeededRng};
use tch::Tensor;

use crate::arch::{self, Mode, Net, Params};
use crate::bn;
use crate::checkpoint::{self, Checkpoint};
use crate::data::Data;
use crate::device;
use crate::epochs::{self, Epochs, Trainee, epoch_seed};
use crate::fit;
use crate::job::{self, CurveJob, CurveReport, Event, Phase, TrainingOptions};
use crate::model_io::{self, Loaded};
use crate::optim::{Sgd, reference_lr};
use crate::{Error, Result};

/// The control points of a curve: `points[k][name]`.
pub type Points = Vec<Params>;

/// `w(t) = Σ_k c_k P_k` for every parameter in the points (gradients flow to the points).
pub fn point_at(points: &Points, coefficients: &[f64]) -> Result<Params> {
    let mut out = BTreeMap::new();
    let Some(first) = points.first() else {
        return Ok(out);
    };
    for name in first.keys() {
        let mut acc: Option<Tensor> = None;
        for (p, &c) in points.iter().zip(coefficients) {
            if c == 0.0 {
                continue;
            }
            let t = p
                .get(name)
                .ok_or_else(|| Error::Arch(format!("control point without `{name}`")))?
                .f_mul_scalar(c)?;
            acc = Some(match acc {
                None => t,
                Some(a) => a.f_add(&t)?,
            });
        }
        let value = match acc {
            Some(a) => a,
            None => first[name].f_zeros_like()?,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn statistics_of(net: &Net, params: &Params) -> Params {
    net.params
        .iter()
        .filter(|p| p.kind.is_statistic())
        .filter_map(|p| {
            params
                .get(&p.name)
                .map(|t| (p.name.clone(), t.shallow_clone()))
        })
        .collect()
}

fn check_endpoints(start: &Loaded, end: &Loaded) -> Result<()> {
    let different = |why: String| {
        Err(Error::Config(format!(
            "the endpoints are different networks: {why}"
        )))
    };
    match (&start.spec, &end.spec) {
        (Some(a), Some(b)) => {
            if a.arch != b.arch
                || a.hidden != b.hidden
                || a.input != b.input
                || a.classes != b.classes
            {
                return different(format!(
                    "{} {:?} on {:?} vs {} {:?} on {:?}",
                    a.arch, a.hidden, a.input, b.arch, b.hidden, b.input
                ));
            }
        }
        (None, None) => {
            let (a, b) = (&start.net, &end.net);
            if a.input != b.input || a.classes != b.classes {
                return different(format!(
                    "inputs {:?} with {} classes vs {:?} with {}",
                    a.input, a.classes, b.input, b.classes
                ));
            }
            let shapes = |n: &Net| {
                n.params
                    .iter()
                    .map(|p| (p.name.clone(), p.shape.clone()))
                    .collect::<Vec<_>>()
            };
            if shapes(a) != shapes(b) {
                let first = a
                    .params
                    .iter()
                    .map(|p| p.name.as_str())
                    .find(|n| b.param(n).map(|q| &q.shape) != a.param(n).map(|p| &p.shape))
                    .or_else(|| {
                        b.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .find(|n| a.param(n).is_none())
                    })
                    .unwrap_or("?");
                return different(format!("their parameters differ, first at `{first}`"));
            }
            if a.nodes != b.nodes {
                return different("the same parameters in different graphs".to_string());
            }
        }
        _ => {
            return different(format!(
                "one is the trainer's `{}`, the other an imported graph",
                start
                    .spec
                    .as_ref()
                    .or(end.spec.as_ref())
                    .map_or("", |s| s.arch.as_str())
            ));
        }
    }
    Ok(())
}

/// Fits the curve of `job` and writes it.
pub fn fit_curve(job: &CurveJob, on_event: &mut dyn FnMut(&Event)) -> Result<CurveReport> {
    let t = &job.training;
    fit::check_options(t)?;
    if job.bn_grid < 2 {
        return Err(Error::Config("`bn_grid` must be at least 2".into()));
    }
    let basis = match job.basis {
        job::Basis::Bezier => Basis::Bezier,
        job::Basis::Polychain => Basis::Polychain,
    };
    let device = device::select(t.device)?;
    let onnx = job.onnx.as_deref();
    let (start, a) = model_io::endpoint(&job.start, onnx, job.start_member, "--start")?;
    let (end, b) = model_io::endpoint(&job.end, onnx, job.end_member, "--end")?;
    check_endpoints(&start, &end)?;
    let data = fit::load_data(t)?;
    fit::check_fits(&data, &start.net, "the endpoints")?;
    let net = start.net.clone();
    let mut fitting = Fitting::on_segment(
        job,
        &net,
        basis,
        &model_io::member(&start, a, device)?,
        &model_io::member(&end, b, device)?,
    )?;
    let epochs = Epochs {
        phase: Phase::Curve,
        training: t,
        data: &data,
        device,
        out: &job.out,
    };
    let finished = epochs::drive(epochs, job, &mut fitting, on_event)?;
    let points = fitting.detached()?;
    let grid = rcurve::grid(job.bn_grid)?;
    let stats = grid_statistics(
        &net,
        (&points, basis),
        &grid,
        (&data, 256),
        device,
        on_event,
    )?;
    let hashes = serde_json::json!({
        "start": modeconn_runtime::fs::sha256_file(&job.start)?,
        "end": modeconn_runtime::fs::sha256_file(&job.end)?,
    });
    let run = &finished.run;
    model_io::write_curve(
        &job.out,
        &net,
        start.origin(),
        &model_io::CurveData {
            basis,
            points: &points,
            grid: &grid,
            stats: &stats,
        },
        serde_json::json!({ "command": "curve", "job": run.job, "endpoints": hashes, "history": run.history }),
    )?;
    run.finish();
    let last = finished.last.map(|l| l.train).unwrap_or_default();
    Ok(CurveReport {
        basis: job.basis,
        points: points.len(),
        bn_grid: if net.has_batch_norm() { job.bn_grid } else { 0 },
        run: finished.trained(&job.out),
        train_loss: last.loss,
        train_accuracy: last.accuracy,
    })
}

/// The batch-norm statistics of the curve at each point of `grid` (none for networks without
/// batch norm), recomputed on the training data, with a `bn` step per point.
/// The running statistics at each t of `grid` on the curve of `points`, recomputed on the
/// training data of `data` (none for networks without batch norm).
pub(crate) fn grid_statistics(
    net: &Net,
    (points, basis): (&Points, Basis),
    grid: &[f64],
    (data, batch_size): (&Data, usize),
    device: tch::Device,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Vec<Params>> {
    let mut stats = Vec::new();
    if !net.has_batch_norm() {
        return Ok(stats);
    }
    let total = grid.len();
    on_event(&Event::Begin {
        phase: Phase::Bn,
        total,
    });
    for (i, &s) in grid.iter().enumerate() {
        let c = basis.coefficients(points.len(), s)?;
        let mut w = tch::no_grad(|| point_at(points, &c))?;
        bn::recompute(net, &mut w, data, batch_size, device)?;
        stats.push(statistics_of(net, &w));
        on_event(&Event::Step {
            phase: Phase::Bn,
            done: i + 1,
            total,
            loss: None,
            accuracy: None,
            lr: None,
        });
    }
    on_event(&Event::End { phase: Phase::Bn });
    Ok(stats)
}

/// The parameters the curve's L2 term `wd/2 ||w(t)||^2` covers: as in the reference's curve
/// models, every trained parameter, batch-norm scales and shifts included (not the running
/// statistics).
pub fn regularized(net: &Net) -> Vec<String> {
    net.params
        .iter()
        .filter(|p| !p.kind.is_statistic())
        .map(|p| p.name.clone())
        .collect()
}

/// A curve in training: its control points, which of them are trained, and how.
struct Fitting<'a> {
    net: &'a Net,
    training: &'a TrainingOptions,
    basis: Basis,
    points: Points,
    /// Whether each control point is trained.
    free: Vec<bool>,
    /// The running statistics batch norm sees while training (batch statistics drive the
    /// forward pass; the statistics are recomputed on the grid afterwards).
    stats: Params,
    /// The parameters under weight decay.
    regularized: Vec<String>,
    sgd: Sgd,
    /// The t of each mini-batch, reseeded every epoch.
    rng: SeededRng,
}

impl<'a> Fitting<'a> {
    /// The curve of `job` from `p0` to `pk` with its bends evenly spaced on the segment.
    fn on_segment(
        job: &'a CurveJob,
        net: &'a Net,
        basis: Basis,
        p0: &Params,
        pk: &Params,
    ) -> Result<Self> {
        let k = job.bends + 2;
        let names = fit::trained_names(net);
        let mut points: Points = Vec::with_capacity(k);
        for j in 0..k {
            let f = j as f64 / (k - 1) as f64;
            let mut point = BTreeMap::new();
            for name in &names {
                let v = tch::no_grad(|| -> Result<Tensor> {
                    let a = &p0[name];
                    let b = &pk[name];
                    fit::deep_copy(&a.f_add(&b.f_sub(a)?.f_mul_scalar(f)?)?)
                })?;
                point.insert(name.clone(), v);
            }
            points.push(point);
        }
        let free = (0..k)
            .map(|j| {
                (j > 0 && j + 1 < k) || (j == 0 && job.train_start) || (j + 1 == k && job.train_end)
            })
            .collect();
        let regularized = regularized(net);
        Ok(Fitting {
            net,
            training: &job.training,
            basis,
            points,
            free,
            stats: statistics_of(net, p0),
            regularized,
            sgd: Sgd::new(job.training.momentum, 0.0),
            rng: SeededRng::new(0),
        })
    }

    /// The trained control points as checkpoint tensors, `{j}/NAME`.
    fn point_tensors(&self) -> impl Iterator<Item = (String, &Tensor)> {
        self.points
            .iter()
            .enumerate()
            .flat_map(|(j, point)| point.iter().map(move |(n, p)| (format!("{j}/{n}"), p)))
    }

    /// The control points, detached from libtorch's graph.
    fn detached(&self) -> Result<Points> {
        self.points
            .iter()
            .map(|p| {
                p.iter()
                    .map(|(n, t)| Ok((n.clone(), t.f_detach()?)))
                    .collect::<Result<Params>>()
            })
            .collect()
    }
}

impl Trainee for Fitting<'_> {
    fn lr(&self, epoch: usize) -> f64 {
        reference_lr(self.training.lr, epoch, self.training.epochs)
    }

    fn resume(&mut self, checkpoint: Option<Checkpoint>) -> Result<()> {
        if let Some(c) = checkpoint {
            for (name, value) in self.sgd.restore(c.tensors) {
                let (j, n) = name
                    .split_once('/')
                    .ok_or_else(|| Error::Config(format!("bad checkpoint tensor `{name}`")))?;
                let j: usize = j
                    .parse()
                    .map_err(|_| Error::Config(format!("bad checkpoint tensor `{name}`")))?;
                let slot = self.points.get_mut(j).and_then(|p| p.get_mut(n));
                checkpoint::restore_tensor(slot, &name, &value)?;
            }
        }
        for (point, &free) in self.points.iter_mut().zip(&self.free) {
            if free {
                for p in point.values_mut() {
                    let _ = p.f_requires_grad_(true)?;
                }
            }
        }
        Ok(())
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.rng = SeededRng::new(epoch_seed(self.training.seed ^ 0x5eed_c0de, epoch));
        Ok(())
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> Result<(Tensor, Tensor)> {
        let s = self.rng.unit();
        let c = self.basis.coefficients(self.points.len(), s)?;
        let mut w = point_at(&self.points, &c)?;
        let mut l2: Option<Tensor> = None;
        for name in &self.regularized {
            let sq = w[name].f_square()?.f_sum(tch::Kind::Float)?;
            l2 = Some(match l2 {
                None => sq,
                Some(a) => a.f_add(&sq)?,
            });
        }
        for (n, s) in &self.stats {
            w.insert(n.clone(), s.shallow_clone());
        }
        let logits = arch::forward(self.net, &w, x, Mode::Train)?;
        let nll = fit::cross_entropy(&logits, y)?;
        let loss = match &l2 {
            Some(l2) => nll.f_add(&l2.f_mul_scalar(self.training.wd / 2.0)?)?,
            None => nll.shallow_clone(),
        };
        loss.f_backward()?;
        let mut named: Vec<(String, &mut Tensor)> = Vec::new();
        for (j, (point, &free)) in self.points.iter_mut().zip(&self.free).enumerate() {
            if free {
                for (n, p) in point.iter_mut() {
                    named.push((format!("{j}/{n}"), p));
                }
            }
        }
        let keys: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        self.sgd
            .step(keys.iter().zip(named.into_iter().map(|(_, p)| p)), lr)?;
        Ok((nll, logits))
    }

    fn checkpoint(&self) -> (serde_json::Value, Vec<(String, &Tensor)>) {
        let tensors = self
            .point_tensors()
            .chain(self.sgd.checkpoint_tensors())
            .collect();
        (serde_json::json!({}), tensors)
    }
}
