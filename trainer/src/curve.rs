//! Fitting a curve between two trained networks: control points per parameter, endpoints
//! fixed unless asked otherwise, bends initialised on the segment, one `t ~ U(0, 1)` per
//! mini-batch, and `wd/2 · ||w(t)||²` on the sampled point. Batch-norm statistics are then
//! recomputed on a grid of t. Works by parameter name for every architecture.

use std::collections::BTreeMap;

use modeconn_runtime::curve::{self as rcurve, Basis, SeededRng};
use tch::Tensor;

use crate::arch::{self, Mode, Net, ParamKind, Params};
use crate::bn;
use crate::checkpoint::Run;
use crate::device;
use crate::fit::{self, Scores};
use crate::job::{CurveJob, Event};
use crate::model_io::{self, Loaded};
use crate::optim::{Sgd, reference_lr};
use crate::train::epoch_seed;
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
    let (a, b) = (&start.spec, &end.spec);
    if a.arch != b.arch || a.hidden != b.hidden || a.input != b.input || a.classes != b.classes {
        return Err(Error::Config(format!(
            "the endpoints are different networks: {} {:?} on {:?} vs {} {:?} on {:?}",
            a.arch, a.hidden, a.input, b.arch, b.hidden, b.input
        )));
    }
    Ok(())
}

/// Fits the curve of `job` and writes it.
pub fn fit_curve(job: &CurveJob, on_event: &mut dyn FnMut(&Event)) -> Result<serde_json::Value> {
    let t = &job.training;
    fit::check_options(t)?;
    let basis: Basis = job.basis.parse().map_err(|_| {
        Error::Config(format!(
            "`basis` is `{}`: expected bezier or polychain",
            job.basis
        ))
    })?;
    if job.bn_grid < 2 {
        return Err(Error::Config("`bn_grid` must be at least 2".into()));
    }
    let k = job.bends + 2;
    let device = device::select(&t.device)?;
    let start = model_io::load(&job.start)?;
    let end = model_io::load(&job.end)?;
    check_endpoints(&start, &end)?;
    let data = fit::load_data(t)?;
    if data.input != start.spec.input || data.classes != start.spec.classes {
        return Err(Error::Config(format!(
            "the data ({:?}, {} classes) does not fit the endpoints ({:?}, {} classes)",
            data.input, data.classes, start.spec.input, start.spec.classes
        )));
    }
    let net = start.net.clone();
    let names = fit::trained_names(&net);
    let p0 = model_io::member(&start, 0, device)?;
    let pk = model_io::member(&end, 0, device)?;
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
    let free = |j: usize| {
        (j > 0 && j + 1 < k) || (j == 0 && job.train_start) || (j + 1 == k && job.train_end)
    };
    // Statistics used by batch norm while training (batch statistics drive the forward pass;
    // these are recomputed on the grid afterwards).
    let stats = statistics_of(&net, &p0);
    let mut sgd = Sgd::new(t.momentum, 0.0);
    let mut run = Run::new(job, t.checkpoint.as_deref(), &job.out)?;
    if let Some(c) = run.resume(t.resume, device, on_event)? {
        {
            let mut buffers = BTreeMap::new();
            for (name, value) in c.tensors {
                if let Some(m) = name.strip_prefix("momentum/") {
                    buffers.insert(m.to_string(), value);
                } else if let Some((j, n)) = name.split_once('/') {
                    let j: usize = j
                        .parse()
                        .map_err(|_| Error::Config(format!("bad checkpoint tensor `{name}`")))?;
                    let slot = points
                        .get_mut(j)
                        .and_then(|p| p.get_mut(n))
                        .ok_or_else(|| {
                            Error::Config(format!("checkpoint has unknown tensor `{name}`"))
                        })?;
                    tch::no_grad(|| slot.f_copy_(&value))?;
                }
            }
            sgd.set_buffers(buffers);
        }
    }
    for (j, point) in points.iter_mut().enumerate() {
        if free(j) {
            for p in point.values_mut() {
                let _ = p.f_requires_grad_(true)?;
            }
        }
    }
    let regularized: Vec<String> = net
        .params
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::Weight | ParamKind::Bias))
        .map(|p| p.name.clone())
        .collect();

    on_event(&Event::Begin {
        phase: "curve".into(),
        total: t.epochs,
    });
    let mut last = Scores::default();
    for epoch in run.start..t.epochs {
        let lr = reference_lr(t.lr, epoch, t.epochs);
        tch::manual_seed(
            (t.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as i64),
        );
        let mut rng = SeededRng::new(epoch_seed(t.seed ^ 0x5eed_c0de, epoch));
        let (scores, seconds) = fit::timed(|| {
            let plan = fit::EpochPlan {
                phase: "curve",
                data: &data,
                batch_size: t.batch_size,
                seed: epoch_seed(t.seed, epoch),
                device,
                lr,
                epoch: epoch + 1,
            };
            fit::epoch(plan, on_event, |x, y| {
                let s = rng.unit();
                let c = basis.coefficients(k, s)?;
                let mut w = point_at(&points, &c)?;
                let mut l2: Option<Tensor> = None;
                for name in &regularized {
                    let sq = w[name].f_square()?.f_sum(tch::Kind::Float)?;
                    l2 = Some(match l2 {
                        None => sq,
                        Some(a) => a.f_add(&sq)?,
                    });
                }
                for (n, s) in &stats {
                    w.insert(n.clone(), s.shallow_clone());
                }
                let logits = arch::forward(&net, &w, x, Mode::Train)?;
                let nll = fit::cross_entropy(&logits, y)?;
                let loss = match &l2 {
                    Some(l2) => nll.f_add(&l2.f_mul_scalar(t.wd / 2.0)?)?,
                    None => nll.shallow_clone(),
                };
                loss.f_backward()?;
                let mut named: Vec<(String, &mut Tensor)> = Vec::new();
                for (j, point) in points.iter_mut().enumerate() {
                    if free(j) {
                        for (n, p) in point.iter_mut() {
                            named.push((format!("{j}/{n}"), p));
                        }
                    }
                }
                let keys: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
                sgd.step(keys.iter().zip(named.into_iter().map(|(_, p)| p)), lr)?;
                Ok((nll, logits))
            })
        })?;
        on_event(&Event::Epoch {
            epoch: epoch + 1,
            epochs: t.epochs,
            train_loss: scores.loss,
            train_accuracy: scores.accuracy,
            test_loss: None,
            test_accuracy: None,
            seconds,
        });
        run.history.push(serde_json::json!({
            "epoch": epoch + 1, "lr": lr, "train_loss": scores.loss,
            "train_accuracy": scores.accuracy, "seconds": seconds,
        }));
        last = scores;
        let mut tensors: Vec<(String, &Tensor)> = Vec::new();
        for (j, point) in points.iter().enumerate() {
            for (n, p) in point {
                tensors.push((format!("{j}/{n}"), p));
            }
        }
        tensors.extend(
            sgd.buffers()
                .iter()
                .map(|(n, b)| (format!("momentum/{n}"), b)),
        );
        run.save(epoch + 1, serde_json::json!({}), &tensors)?;
    }
    on_event(&Event::End {
        phase: "curve".into(),
    });

    // Batch-norm statistics on the grid.
    let grid = rcurve::grid(job.bn_grid)?;
    let mut grid_stats: Vec<Params> = Vec::new();
    if net.has_batch_norm() {
        on_event(&Event::Begin {
            phase: "bn".into(),
            total: grid.len(),
        });
        for (i, &s) in grid.iter().enumerate() {
            let c = basis.coefficients(k, s)?;
            let mut w = tch::no_grad(|| point_at(&points, &c))?;
            bn::recompute(&net, &mut w, &data, 256, device)?;
            grid_stats.push(statistics_of(&net, &w));
            on_event(&Event::Step {
                phase: "bn".into(),
                done: i + 1,
                total: grid.len(),
                loss: None,
                accuracy: None,
                lr: None,
            });
        }
        on_event(&Event::End { phase: "bn".into() });
    }
    let detached: Points = points
        .iter()
        .map(|p| {
            p.iter()
                .map(|(n, t)| Ok((n.clone(), t.f_detach()?)))
                .collect::<Result<Params>>()
        })
        .collect::<Result<_>>()?;
    let hashes = serde_json::json!({
        "start": file_sha256(&job.start)?, "end": file_sha256(&job.end)?,
    });
    model_io::write_curve(
        &job.out,
        &net,
        &start.spec,
        &model_io::CurveData {
            basis,
            points: &detached,
            grid: &grid,
            stats: &grid_stats,
        },
        serde_json::json!({ "command": "curve", "job": run.job, "endpoints": hashes, "history": run.history }),
    )?;
    run.finish();
    Ok(serde_json::json!({
        "ok": true, "command": "curve", "out": job.out, "basis": basis.as_str(), "points": k,
        "bn_grid": if net.has_batch_norm() { job.bn_grid } else { 0 },
        "device": device::name(device), "epochs": t.epochs,
        "train_loss": last.loss, "train_accuracy": last.accuracy,
        "seconds_per_epoch": run.mean_seconds(),
    }))
}

/// SHA-256 of a file, hex.
pub(crate) fn file_sha256(path: &std::path::Path) -> Result<String> {
    Ok(modeconn_runtime::fs::sha256_file(path)?)
}
