//! Evaluation along a curve (per-t train loss and error, test NLL and error, their min, max,
//! mean and length-weighted integral, the length ratio, the straight segment as a baseline,
//! the ensemble of the grid points) or over a snapshot set (each member and the running
//! ensemble).

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::{self as rcurve, ArcLength, Basis};
use tch::Tensor;

use crate::bn;
use crate::curve::{Points, point_at};
use crate::data::Data;
use crate::device;
use crate::fit::{self, MeanProbabilities, Pass, Scores};
use crate::job::{
    self, Along, CurveEvaluation, EnsembleScores, EvalJob, EvalReport, Evaluation, Event, Phase,
    PointRow, SnapshotsEvaluation, Stats, Summary,
};
use crate::model_io::{self, Loaded};
use crate::{Error, Result};

/// Scores of one network on both splits, plus its test probabilities.
struct PointScores {
    train: Scores,
    test: Scores,
    test_ece: f64,
    probs: Tensor,
}

fn score_point(
    loaded: &Loaded,
    params: &mut crate::arch::Params,
    data: &Data,
    job: &EvalJob,
    device: tch::Device,
    recompute: bool,
) -> Result<PointScores> {
    if recompute {
        bn::recompute(&loaded.net, params, data, job.batch_size, device)?;
    }
    let train = Pass::train(data, job.batch_size, device).evaluate(&loaded.net, params)?;
    let probs = Pass::test(data, job.batch_size, device).probabilities(&loaded.net, params)?;
    let test = fit::score_probabilities(&probs, &data.test.y)?;
    let test_ece = fit::calibration_error(&probs, &data.test.y)?;
    Ok(PointScores {
        train,
        test,
        test_ece,
        probs,
    })
}

/// The row of a point of a curve (`t`) or a member of a set (`member`).
fn row(t: Option<f64>, member: Option<usize>, s: &PointScores) -> PointRow {
    PointRow {
        t,
        member,
        train_loss: s.train.loss,
        train_error: 1.0 - s.train.accuracy,
        test_nll: s.test.loss,
        test_error: 1.0 - s.test.accuracy,
        test_ece: s.test_ece,
    }
}

/// The scores of the ensemble of the members in `mean`, as a report says them.
fn ensemble_scores(mean: &MeanProbabilities, y: &Tensor) -> Result<EnsembleScores> {
    let s = mean.scores(y)?;
    Ok(EnsembleScores {
        members: mean.members(),
        test_nll: s.loss,
        test_error: 1.0 - s.accuracy,
        test_ece: mean.calibration_error(y)?,
    })
}

/// Min, max, mean and the length-weighted integral (trapezoid rule with the distances between
/// neighbouring points as weights, divided by the total length) of one metric.
fn stats(v: &[f64], distances: &[f64]) -> Stats {
    let (min, max) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let total: f64 = distances.iter().sum();
    let integral = if total > 0.0 {
        v.windows(2)
            .zip(distances)
            .map(|(w, d)| 0.5 * (w[0] + w[1]) * d)
            .sum::<f64>()
            / total
    } else {
        mean
    };
    Stats {
        min,
        max,
        mean,
        integral,
    }
}

/// [`stats`] of each metric of the rows.
fn summary(rows: &[PointRow], distances: &[f64]) -> Summary {
    let of = |metric: fn(&PointRow) -> f64| {
        let v: Vec<f64> = rows.iter().map(metric).collect();
        stats(&v, distances)
    };
    Summary {
        train_loss: of(|r| r.train_loss),
        train_error: of(|r| r.train_error),
        test_nll: of(|r| r.test_nll),
        test_error: of(|r| r.test_error),
    }
}

/// What every evaluation of a run shares.
struct Context<'a> {
    loaded: &'a Loaded,
    data: &'a Data,
    job: &'a EvalJob,
    device: tch::Device,
}

/// Scores `total` networks in order as `phase`: `score(i)` scores the i-th. Reports a step
/// with its test scores after each, between the phase's begin and end events.
fn each_point(
    phase: Phase,
    total: usize,
    on_event: &mut dyn FnMut(&Event),
    mut score: impl FnMut(usize) -> Result<PointScores>,
) -> Result<Vec<PointScores>> {
    on_event(&Event::Begin { phase, total });
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let s = score(i)?;
        on_event(&Event::Step {
            phase,
            done: i + 1,
            total,
            loss: Some(s.test.loss),
            accuracy: Some(s.test.accuracy),
            lr: None,
        });
        out.push(s);
    }
    on_event(&Event::End { phase });
    Ok(out)
}

/// Evaluates `points` (control points of trained parameters) with `basis` at `ts`; `gram`
/// gives the distances between neighbouring points.
fn along(
    cx: &Context<'_>,
    curve: (&Points, Basis, &rcurve::Gram),
    ts: &[f64],
    phase: Phase,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Along> {
    let Context {
        loaded,
        data,
        job,
        device,
    } = *cx;
    let (points, basis, gram) = curve;
    let mut coefficients = Vec::with_capacity(ts.len());
    let mut mean = MeanProbabilities::default();
    let scores = each_point(phase, ts.len(), on_event, |i| {
        let c = basis.coefficients(points.len(), ts[i])?;
        let mut params = tch::no_grad(|| point_at(points, &c))?;
        // Statistics for this t, recomputed on the training data.
        for p in loaded.net.params.iter().filter(|p| p.kind.is_statistic()) {
            params.insert(
                p.name.clone(),
                Tensor::f_zeros(&p.shape, (tch::Kind::Float, device))?,
            );
        }
        let s = score_point(loaded, &mut params, data, job, device, true)?;
        mean.add(&s.probs)?;
        coefficients.push(c);
        Ok(s)
    })?;
    let distances: Vec<f64> = coefficients
        .windows(2)
        .map(|w| {
            let diff: Vec<f64> = w[1].iter().zip(&w[0]).map(|(a, b)| a - b).collect();
            gram.norm(&diff)
        })
        .collect();
    let rows: Vec<PointRow> = scores
        .iter()
        .zip(ts)
        .map(|(s, &t)| row(Some(t), None, s))
        .collect();
    Ok(Along {
        summary: summary(&rows, &distances),
        points: rows,
        ensemble: ensemble_scores(&mean, &data.test.y)?,
    })
}

/// Evaluates the curve of a curve bundle (and the segment between its ends when asked).
fn curve(cx: &Context<'_>, on_event: &mut dyn FnMut(&Event)) -> Result<CurveEvaluation> {
    let meta = cx.loaded.bundle.metadata();
    let basis = meta
        .basis
        .ok_or_else(|| Error::Config("curve bundle without a basis".into()))?;
    let points: Points = model_io::control_points(cx.loaded, cx.device)?;
    let gram = cx.loaded.bundle.gram()?;
    let arc = ArcLength::new(basis, &gram);
    let ts = rcurve::grid(cx.job.points)?;
    let curve = along(cx, (&points, basis, &gram), &ts, Phase::Eval, on_event)?;
    let segment = if cx.job.segment {
        let ends: Points = vec![
            points[0].shallow_copy()?,
            points[meta.points - 1].shallow_copy()?,
        ];
        // The segment's Gram matrix is its squared length, the curve's endpoint distance.
        let seg_gram = rcurve::Gram::from_matrix(2, vec![arc.segment().powi(2)])?;
        let seg = (&ends, Basis::Polychain, &seg_gram);
        Some(along(cx, seg, &ts, Phase::Segment, on_event)?)
    } else {
        None
    };
    Ok(CurveEvaluation {
        basis: match basis {
            Basis::Bezier => job::Basis::Bezier,
            Basis::Polychain => job::Basis::Polychain,
        },
        control_points: meta.points,
        length: arc.total(),
        segment_length: arc.segment(),
        length_ratio: arc.ratio(),
        curve,
        segment,
    })
}

/// Evaluates each member of a snapshot set, and the ensembles of the first 1, 2, ... members.
fn snapshots(cx: &Context<'_>, on_event: &mut dyn FnMut(&Event)) -> Result<SnapshotsEvaluation> {
    let count = cx.loaded.bundle.metadata().points;
    let mut mean = MeanProbabilities::default();
    let mut running = Vec::with_capacity(count);
    let scores = each_point(Phase::Eval, count, on_event, |m| {
        let mut params = model_io::member(cx.loaded, m, cx.device)?;
        let s = score_point(cx.loaded, &mut params, cx.data, cx.job, cx.device, false)?;
        mean.add(&s.probs)?;
        running.push(ensemble_scores(&mean, &cx.data.test.y)?);
        Ok(s)
    })?;
    let ensemble = *running
        .last()
        .ok_or_else(|| Error::Config("the snapshot set has no members".into()))?;
    Ok(SnapshotsEvaluation {
        members: scores
            .iter()
            .enumerate()
            .map(|(m, s)| row(None, Some(m), s))
            .collect(),
        running_ensemble: running,
        ensemble,
    })
}

/// Evaluates the bundle of `job`.
pub fn eval(job: &EvalJob, on_event: &mut dyn FnMut(&Event)) -> Result<EvalReport> {
    if job.points < 2 {
        return Err(Error::Config("`points` must be at least 2".into()));
    }
    if job.batch_size == 0 {
        return Err(Error::Config("`batch_size` must be at least 1".into()));
    }
    let device = device::select(job.device)?;
    let loaded = model_io::load(&job.bundle)?;
    let data = fit::load_eval_data(&job.data, job.held_out, job.seed, job.limit)?;
    fit::check_fits(&data, &loaded.net, "the bundle's network")?;
    let cx = Context {
        loaded: &loaded,
        data: &data,
        job,
        device,
    };
    let evaluation = match loaded.bundle.metadata().kind {
        Kind::Curve => Evaluation::Curve(curve(&cx, on_event)?),
        Kind::Snapshots => Evaluation::Snapshots(snapshots(&cx, on_event)?),
    };
    Ok(EvalReport {
        bundle: job.bundle.clone(),
        device: device::reported(device),
        evaluation,
    })
}

/// Shallow copies of a parameter map (the tensors share storage).
trait ShallowCopy {
    fn shallow_copy(&self) -> Result<crate::arch::Params>;
}

impl ShallowCopy for crate::arch::Params {
    fn shallow_copy(&self) -> Result<crate::arch::Params> {
        Ok(self
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect())
    }
}
