//! Batch-norm statistics recomputed for given weights: one pass over the training data in
//! order, without gradients or dropout, averaging the batch statistics cumulatively (weighted
//! by batch size).

use tch::{Device, Kind, Tensor};

use crate::Result;
use crate::arch::{self, Mode, Net, Params};
use crate::data::Data;

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
