//! Pieces every training command shares: checking options, loading data, running an epoch of
//! SGD with progress events, and evaluating.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::arch::{self, Mode, Net, Params};
use crate::data::{self, Data, DataOptions, Split};
use crate::job::{Event, Phase, TrainingOptions};
use crate::{Error, Result};

/// Checks the numbers of a job before anything runs.
pub fn check_options(t: &TrainingOptions) -> Result<()> {
    let bad = |field: &str, why: &str| Err(Error::Config(format!("`{field}` {why}")));
    if t.epochs == 0 {
        return bad("epochs", "must be at least 1");
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return bad("lr", "must be a positive number");
    }
    if !(t.wd.is_finite() && t.wd >= 0.0) {
        return bad("wd", "must be zero or positive");
    }
    if !(0.0..1.0).contains(&t.momentum) {
        return bad("momentum", "must be in [0, 1)");
    }
    if t.batch_size == 0 {
        return bad("batch_size", "must be at least 1");
    }
    Ok(())
}

/// The names of the trained parameters (everything but batch-norm running statistics).
pub fn trained_names(net: &Net) -> Vec<String> {
    net.params
        .iter()
        .filter(|p| !p.kind.is_statistic())
        .map(|p| p.name.clone())
        .collect()
}

/// Makes libtorch track gradients of the named tensors.
pub fn track_gradients(params: &mut Params, names: &[String]) -> Result<()> {
    for name in names {
        if let Some(p) = params.get_mut(name) {
            let _ = p.f_requires_grad_(true)?;
        }
    }
    Ok(())
}

/// Loads the data of a job.
pub fn load_data(t: &TrainingOptions) -> Result<Data> {
    data::load(
        &t.data,
        &DataOptions {
            held_out: t.held_out,
            seed: t.seed,
            augment: t.augment,
            limit: t.limit,
        },
    )
}

/// The data of an evaluation-like job (`eval`, `bn`): no augmentation, the split the bundle
/// was trained with.
pub fn load_eval_data(
    spec: &str,
    held_out: Option<usize>,
    seed: u64,
    limit: Option<usize>,
) -> Result<Data> {
    data::load(
        spec,
        &DataOptions {
            held_out,
            seed,
            augment: Some(false),
            limit,
        },
    )
}

/// Checks that `data` fits `net` (same sample shape and classes);
/// `network` names that network in the error, e.g. `the endpoints`.
pub fn check_fits(data: &Data, net: &Net, network: &str) -> Result<()> {
    if data.input != net.input || data.classes != net.classes {
        return Err(Error::Config(format!(
            "the data ({:?}, {} classes) does not fit {network} ({:?}, {} classes)",
            data.input, data.classes, net.input, net.classes
        )));
    }
    Ok(())
}

/// Mean loss and accuracy of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Mean negative log-likelihood.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// Accumulates loss and accuracy over batches.
#[derive(Debug, Default)]
pub struct Meter {
    loss: f64,
    correct: f64,
    count: f64,
}

impl Meter {
    /// Adds a batch: its mean loss and its logits against labels.
    pub fn add(&mut self, loss: f64, logits: &Tensor, y: &Tensor) -> Result<()> {
        let n = y.size().first().copied().unwrap_or(0) as f64;
        let correct = logits
            .f_argmax(-1, false)?
            .f_eq_tensor(y)?
            .f_to_kind(Kind::Double)?
            .f_sum(Kind::Double)?
            .f_double_value(&[])?;
        self.loss += loss * n;
        self.correct += correct;
        self.count += n;
        Ok(())
    }

    /// The scores so far.
    pub fn scores(&self) -> Scores {
        if self.count == 0.0 {
            return Scores::default();
        }
        Scores {
            loss: self.loss / self.count,
            accuracy: self.correct / self.count,
        }
    }
}

/// A split to run networks over in evaluation mode (no gradients, no dropout, running
/// statistics): in order, in mini-batches, on a device.
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    /// The data.
    pub data: &'a Data,
    /// The split of `data`.
    pub split: &'a Split,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Where batches go.
    pub device: Device,
}

impl<'a> Pass<'a> {
    /// Over the training split.
    pub fn train(data: &'a Data, batch_size: usize, device: Device) -> Self {
        Pass {
            data,
            split: &data.train,
            batch_size,
            device,
        }
    }

    /// Over the test split.
    pub fn test(data: &'a Data, batch_size: usize, device: Device) -> Self {
        Pass {
            data,
            split: &data.test,
            batch_size,
            device,
        }
    }

    /// Loss and accuracy of `params`.
    pub fn evaluate(&self, net: &Net, params: &Params) -> Result<Scores> {
        let mut meter = Meter::default();
        self.each_batch(net, params, |logits, y| {
            let loss = cross_entropy(logits, y)?.f_double_value(&[])?;
            meter.add(loss, logits, y)
        })?;
        Ok(meter.scores())
    }

    /// Softmax probabilities of `params` `[N, C]`, in the split's order, on the CPU.
    pub fn probabilities(&self, net: &Net, params: &Params) -> Result<Tensor> {
        let mut parts = Vec::new();
        self.each_batch(net, params, |logits, _| {
            let p = logits.f_softmax(-1, Kind::Float)?;
            parts.push(p.f_to_device(Device::Cpu)?);
            Ok(())
        })?;
        Ok(Tensor::f_cat(&parts, 0)?)
    }

    /// Runs `net` with `params` over the split, handing each batch's logits and labels to
    /// `take`.
    fn each_batch(
        &self,
        net: &Net,
        params: &Params,
        mut take: impl FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for batch in self
            .data
            .eval_batches(self.split, self.batch_size, self.device)?
        {
            let (x, y) = batch?;
            let logits = arch::forward(net, params, &x, Mode::Eval)?;
            take(&logits, &y)?;
        }
        Ok(())
    }
}

/// The mean of members' probabilities, built one member at a time.
#[derive(Debug, Default)]
pub struct MeanProbabilities {
    sum: Option<Tensor>,
    members: usize,
}

impl MeanProbabilities {
    /// Adds a member's probabilities `[N, C]`.
    pub fn add(&mut self, p: &Tensor) -> Result<()> {
        self.sum = Some(match self.sum.take() {
            None => p.shallow_clone(),
            Some(s) => s.f_add(p)?,
        });
        self.members += 1;
        Ok(())
    }

    /// Members added so far.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The expected calibration error of the mean against labels (0 before the first member).
    pub fn calibration_error(&self, y: &Tensor) -> Result<f64> {
        match &self.sum {
            Some(s) => calibration_error(&s.f_div_scalar(self.members as f64)?, y),
            None => Ok(0.0),
        }
    }

    /// NLL and accuracy of the mean against labels (zeros before the first member).
    pub fn scores(&self, y: &Tensor) -> Result<Scores> {
        match &self.sum {
            Some(s) => score_probabilities(&s.f_div_scalar(self.members as f64)?, y),
            None => Ok(Scores::default()),
        }
    }
}

/// The expected calibration error (the runtime's, with its 15 bins) of probabilities `[N, C]`
/// against labels.
pub fn calibration_error(p: &Tensor, y: &Tensor) -> Result<f64> {
    let (n, c) = p.size2()?;
    let values = crate::model_io::host(p)?;
    let probs = ndarray::Array2::from_shape_vec((n as usize, c as usize), values)
        .map_err(|e| Error::Config(format!("probabilities: {e}")))?;
    let y = y
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?
        .f_view([-1])?;
    let labels = Vec::<i64>::try_from(&y)?;
    Ok(modeconn_runtime::ensemble::calibration_error(
        &probs.view(),
        &labels,
        modeconn_runtime::ensemble::CALIBRATION_BINS,
    )?)
}

/// NLL and accuracy of probabilities `[N, C]` against labels.
pub fn score_probabilities(p: &Tensor, y: &Tensor) -> Result<Scores> {
    let y = y.f_to_device(p.device())?;
    let picked = p.f_gather(1, &y.f_unsqueeze(1)?, false)?;
    let nll = picked
        .f_clamp_min(1e-12)?
        .f_log()?
        .f_mean(Kind::Double)?
        .f_double_value(&[])?;
    let accuracy = p
        .f_argmax(-1, false)?
        .f_eq_tensor(&y)?
        .f_to_kind(Kind::Double)?
        .f_mean(Kind::Double)?
        .f_double_value(&[])?;
    Ok(Scores {
        loss: -nll,
        accuracy,
    })
}

/// What one epoch of training runs over.
#[derive(Debug, Clone, Copy)]
pub struct EpochPlan<'a> {
    /// The phase named in progress events.
    pub phase: Phase,
    /// The data.
    pub data: &'a Data,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Seed of the epoch's shuffle and augmentation.
    pub seed: u64,
    /// Where batches go.
    pub device: Device,
    /// Learning rate reported in events.
    pub lr: f64,
    /// The epoch, 1-based, for messages.
    pub epoch: usize,
}

/// Runs one epoch of training. `step` gets a batch and returns the batch's loss (already
/// back-propagated and applied) and logits.
pub fn epoch(
    plan: EpochPlan<'_>,
    on_event: &mut dyn FnMut(&Event),
    mut step: impl FnMut(&Tensor, &Tensor) -> Result<(Tensor, Tensor)>,
) -> Result<Scores> {
    let EpochPlan {
        phase,
        data,
        batch_size,
        seed,
        device,
        lr,
        epoch,
    } = plan;
    let total = data.train_steps(batch_size);
    let mut meter = Meter::default();
    for (i, batch) in data.train_batches(batch_size, seed, device)?.enumerate() {
        let done = i + 1;
        let (x, y) = batch?;
        let (loss, logits) = step(&x, &y)?;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss {
                value,
                epoch,
                step: done,
            });
        }
        meter.add(value, &logits.f_detach()?, &y)?;
        let s = meter.scores();
        on_event(&Event::Step {
            phase,
            done,
            total,
            loss: Some(s.loss),
            accuracy: Some(s.accuracy),
            lr: Some(lr),
        });
    }
    Ok(meter.scores())
}

/// Mean cross-entropy of logits `[N, C]` against labels `[N]`.
pub fn cross_entropy(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
        y,
        None::<Tensor>,
        tch::Reduction::Mean,
        -100,
    )?)
}

/// A copy of a tensor's values in new storage, detached from any graph.
pub fn deep_copy(t: &Tensor) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let mut out = t.f_empty_like()?;
    out.f_copy_(t)?;
    Ok(out.f_detach()?)
}

/// Times a closure.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed().as_secs_f64()))
}
