//! Batch-norm statistics recomputed for given weights: one pass over the training data in
//! order, without gradients or dropout, averaging the batch statistics cumulatively (weighted
//! by batch size).

use modeconn_runtime::bundle::Kind as BundleKind;
use modeconn_runtime::curve as rcurve;
use tch::{Device, Kind, Tensor};

use crate::arch::{self, Mode, Net, Params};
use crate::data::Data;
use crate::job::{BnJob, BnReport, Event};
use crate::{Error, Result, device, fit, model_io};

/// Replaces the running statistics in `params` by those of the training data under the
/// trained parameters in `params`. Networks without batch norm are left as they are.
pub fn recompute(
    net: &Net,
    params: &mut Params,
    data: &Data,
    batch_size: usize,
    device: Device,
) -> Result<()> {
    if !net.has_batch_norm() {
        return Ok(());
    }
    let _guard = tch::no_grad_guard();
    for p in net.params.iter().filter(|p| p.kind.is_statistic()) {
        let fresh = match p.kind {
            arch::ParamKind::RunningVar => Tensor::f_ones(&p.shape, (Kind::Float, device))?,
            _ => Tensor::f_zeros(&p.shape, (Kind::Float, device))?,
        };
        params.insert(p.name.clone(), fresh);
    }
    let mut seen = 0.0f64;
    for batch in data.eval_batches(&data.train, batch_size, device)? {
        let (x, _) = batch?;
        // Momentum b / (seen + b) makes the running value the mean of the batch statistics
        // weighted by batch size, so a partial last batch counts for what it holds.
        let b = x.size().first().copied().unwrap_or(0) as f64;
        seen += b;
        let momentum = b / seen;
        let _ = arch::forward(net, params, &x, Mode::Statistics { momentum })?;
    }
    Ok(())
}

/// Recomputes the batch-norm statistics of the curve bundle of `job` on a grid of t and
/// writes the bundle again with them: its graph, control points, class names and temperature
/// as they were.
pub fn bn(job: &BnJob, on_event: &mut dyn FnMut(&Event)) -> Result<BnReport> {
    if job.bn_grid < 2 {
        return Err(Error::Config("`bn_grid` must be at least 2".into()));
    }
    if job.batch_size == 0 {
        return Err(Error::Config("`batch_size` must be at least 1".into()));
    }
    let device = device::select(job.device)?;
    let loaded = model_io::load(&job.bundle)?;
    let meta = loaded.bundle.metadata();
    let what = job.bundle.display();
    let basis = match (meta.kind, meta.basis) {
        (BundleKind::Curve, Some(basis)) => basis,
        _ => {
            return Err(Error::Config(format!(
                "{what} is a snapshot set: its members keep their own statistics (`bn` \
                 recomputes those of curves)"
            )));
        }
    };
    if !loaded.net.has_batch_norm() {
        return Err(Error::Config(format!(
            "{what} has no batch normalisation: there are no statistics to recompute"
        )));
    }
    let data = fit::load_eval_data(&job.data, job.held_out, job.seed, job.limit)?;
    fit::check_fits(&data, &loaded.net, "the bundle's network")?;
    let points = model_io::control_points(&loaded, device)?;
    let grid = rcurve::grid(job.bn_grid)?;
    let stats = crate::curve::grid_statistics(
        &loaded.net,
        (&points, basis),
        &grid,
        (&data, job.batch_size),
        device,
        on_event,
    )?;
    let before = meta.provenance.clone().unwrap_or_default();
    model_io::write_curve(
        &job.out,
        &loaded.net,
        loaded.origin(),
        &model_io::CurveData {
            basis,
            points: &points,
            grid: &grid,
            stats: &stats,
        },
        serde_json::json!({
            "command": "bn",
            "job": job,
            "from": modeconn_runtime::fs::sha256_file(&job.bundle)?,
            "before": before,
        }),
    )?;
    Ok(BnReport {
        bundle: job.bundle.clone(),
        out: job.out.clone(),
        device: device::reported(device),
        grid,
        statistics: loaded.net.statistics().count(),
    })
}
