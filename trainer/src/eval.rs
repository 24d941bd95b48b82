//! Evaluation along a curve (per-t train loss and error, test NLL and error, their min, max,
//! mean and length-weighted integral, the length ratio, the straight segment as a baseline,
//! the ensemble of the grid points) or over a snapshot set (each member and the running
//! ensemble).

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::{self as rcurve, ArcLength, Basis};
use tch::Tensor;

use crate::bn;
use crate::curve::{Points, point_at};
use crate::data::{Data, DataOptions};
use crate::device;
use crate::fit::{self, Scores};
use crate::job::{EvalJob, Event};
use crate::model_io::{self, Loaded};
use crate::{Error, Result};

/// Scores of one network on both splits, plus its test probabilities.
struct PointScores {
    train: Scores,
    test: Scores,
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
    let train = fit::evaluate(
        &loaded.net,
        params,
        data,
        &data.train,
        job.batch_size,
        device,
    )?;
    let probs = fit::probabilities(
        &loaded.net,
        params,
        data,
        &data.test,
        job.batch_size,
        device,
    )?;
    let test = fit::score_probabilities(&probs, &data.test.y)?;
    Ok(PointScores { train, test, probs })
}

fn row(t: Option<f64>, index: Option<usize>, s: &PointScores) -> serde_json::Value {
    let mut v = serde_json::json!({
        "train_loss": s.train.loss, "train_error": 1.0 - s.train.accuracy,
        "test_nll": s.test.loss, "test_error": 1.0 - s.test.accuracy,
    });
    if let Some(t) = t {
        v["t"] = serde_json::json!(t);
    }
    if let Some(i) = index {
        v["member"] = serde_json::json!(i);
    }
    v
}

/// Min, max, mean and the length-weighted integral (trapezoid rule with the distances between
/// neighbouring points as weights, divided by the total length) of each metric.
fn summary(rows: &[serde_json::Value], distances: &[f64]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for metric in ["train_loss", "train_error", "test_nll", "test_error"] {
        let v: Vec<f64> = rows.iter().filter_map(|r| r[metric].as_f64()).collect();
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
        out.insert(
            metric.into(),
            serde_json::json!({"min": min, "max": max, "mean": mean, "integral": integral}),
        );
    }
    serde_json::Value::Object(out)
}

/// What every evaluation of a run shares.
struct Context<'a> {
    loaded: &'a Loaded,
    data: &'a Data,
    job: &'a EvalJob,
    device: tch::Device,
}

/// Evaluates `points` (control points of trained parameters) with `basis` at `ts`; `gram`
/// gives the distances between neighbouring points.
fn along(
    cx: &Context<'_>,
    curve: (&Points, Basis, &rcurve::Gram),
    ts: &[f64],
    phase: &str,
    on_event: &mut dyn FnMut(&Event),
) -> Result<serde_json::Value> {
    let Context {
        loaded,
        data,
        job,
        device,
    } = *cx;
    let (points, basis, gram) = curve;
    let k = points.len();
    on_event(&Event::Begin {
        phase: phase.into(),
        total: ts.len(),
    });
    let mut rows = Vec::with_capacity(ts.len());
    let mut sum: Option<Tensor> = None;
    let mut distances = Vec::with_capacity(ts.len());
    let mut previous: Option<Vec<f64>> = None;
    for (i, &t) in ts.iter().enumerate() {
        let c = basis.coefficients(k, t)?;
        let mut params = tch::no_grad(|| point_at(points, &c))?;
        // Statistics for this t, recomputed on the training data.
        for p in loaded.net.params.iter().filter(|p| p.kind.is_statistic()) {
            params.insert(
                p.name.clone(),
                Tensor::f_zeros(&p.shape, (tch::Kind::Float, device))?,
            );
        }
        let s = score_point(loaded, &mut params, data, job, device, true)?;
        if let Some(prev) = &previous {
            let diff: Vec<f64> = c.iter().zip(prev).map(|(a, b)| a - b).collect();
            distances.push(gram.norm(&diff));
        }
        previous = Some(c);
        rows.push(row(Some(t), None, &s));
        sum = Some(match sum {
            None => s.probs,
            Some(acc) => acc.f_add(&s.probs)?,
        });
        on_event(&Event::Step {
            phase: phase.into(),
            done: i + 1,
            total: ts.len(),
            loss: Some(s.test.loss),
            accuracy: Some(s.test.accuracy),
            lr: None,
        });
    }
    on_event(&Event::End {
        phase: phase.into(),
    });
    let ensemble = match sum {
        Some(s) => fit::score_probabilities(&s.f_div_scalar(ts.len() as f64)?, &data.test.y)?,
        None => Scores::default(),
    };
    Ok(serde_json::json!({
        "points": rows,
        "summary": summary(&rows, &distances),
        "ensemble": {"members": ts.len(), "test_nll": ensemble.loss, "test_error": 1.0 - ensemble.accuracy},
    }))
}

/// Evaluates the bundle of `job`.
pub fn eval(job: &EvalJob, on_event: &mut dyn FnMut(&Event)) -> Result<serde_json::Value> {
    if job.points < 2 {
        return Err(Error::Config("`points` must be at least 2".into()));
    }
    if job.batch_size == 0 {
        return Err(Error::Config("`batch_size` must be at least 1".into()));
    }
    let device = device::select(&job.device)?;
    let loaded = model_io::load(&job.bundle)?;
    let data = crate::data::load(
        &job.data,
        &DataOptions {
            held_out: job.held_out,
            seed: job.seed,
            augment: Some(false),
            limit: job.limit,
        },
    )?;
    if data.input != loaded.spec.input || data.classes != loaded.spec.classes {
        return Err(Error::Config(format!(
            "the data ({:?}, {} classes) does not fit the bundle's network ({:?}, {} classes)",
            data.input, data.classes, loaded.spec.input, loaded.spec.classes
        )));
    }
    let meta = loaded.bundle.metadata().clone();
    let mut report = serde_json::json!({
        "ok": true, "command": "eval", "bundle": job.bundle, "kind": meta.kind.as_str(),
        "device": device::name(device),
    });
    match meta.kind {
        Kind::Curve => {
            let basis = meta
                .basis
                .ok_or_else(|| Error::Config("curve bundle without a basis".into()))?;
            let names: Vec<&str> = loaded
                .net
                .params
                .iter()
                .filter(|p| !p.kind.is_statistic())
                .map(|p| p.name.as_str())
                .collect();
            let points: Points = (0..meta.points)
                .map(|k| model_io::slices(&loaded, names.iter().copied(), k, device))
                .collect::<Result<_>>()?;
            let gram = loaded.bundle.gram()?;
            let arc = ArcLength::new(basis, &gram);
            let ts = rcurve::grid(job.points)?;
            let cx = Context {
                loaded: &loaded,
                data: &data,
                job,
                device,
            };
            let curve = along(&cx, (&points, basis, &gram), &ts, "eval", on_event)?;
            report["basis"] = serde_json::json!(basis.as_str());
            report["control_points"] = serde_json::json!(meta.points);
            report["length"] = serde_json::json!(arc.total());
            report["segment_length"] = serde_json::json!(arc.segment());
            report["length_ratio"] = serde_json::json!(arc.ratio());
            report["curve"] = curve;
            if job.segment {
                let ends: Points = vec![
                    points[0].shallow_copy()?,
                    points[meta.points - 1].shallow_copy()?,
                ];
                // The segment's Gram matrix is its squared length, the curve's endpoint distance.
                let seg_gram = rcurve::Gram::from_matrix(2, vec![arc.segment().powi(2)])?;
                report["segment"] = along(
                    &cx,
                    (&ends, Basis::Polychain, &seg_gram),
                    &ts,
                    "segment",
                    on_event,
                )?;
            }
        }
        Kind::Snapshots => {
            on_event(&Event::Begin {
                phase: "eval".into(),
                total: meta.points,
            });
            let mut rows = Vec::new();
            let mut running = Vec::new();
            let mut sum: Option<Tensor> = None;
            for m in 0..meta.points {
                let mut params = model_io::member(&loaded, m, device)?;
                let s = score_point(&loaded, &mut params, &data, job, device, false)?;
                rows.push(row(None, Some(m), &s));
                let acc = match sum {
                    None => s.probs.shallow_clone(),
                    Some(a) => a.f_add(&s.probs)?,
                };
                let e = fit::score_probabilities(&acc.f_div_scalar((m + 1) as f64)?, &data.test.y)?;
                running.push(serde_json::json!({"members": m + 1, "test_nll": e.loss, "test_error": 1.0 - e.accuracy}));
                sum = Some(acc);
                on_event(&Event::Step {
                    phase: "eval".into(),
                    done: m + 1,
                    total: meta.points,
                    loss: Some(s.test.loss),
                    accuracy: Some(s.test.accuracy),
                    lr: None,
                });
            }
            on_event(&Event::End {
                phase: "eval".into(),
            });
            report["members"] = serde_json::json!(rows);
            report["running_ensemble"] = serde_json::json!(running);
            report["ensemble"] = running.last().cloned().unwrap_or_default();
        }
    }
    Ok(report)
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
