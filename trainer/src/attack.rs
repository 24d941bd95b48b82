//! Adversarial inputs from the gradients of a bundle's networks (`attack` jobs): FGSM and PGD
//! (L∞ or L2, random starts, restarts) against a fixed point, an ensemble of points, or the
//! draws of a randomised defence (Expectation over Transformation).
//!
//! The attacked networks are what the runtime runs: each member's weights are combined from
//! the bundle exactly as the runtime combines them ([`modeconn_runtime::Bundle::weights_at`]:
//! the control points with the curve's coefficients, the batch-norm statistics interpolated on
//! `bn_grid`), evaluated with those statistics (no recomputation, no dropout), and their
//! probabilities are `softmax(logits / T)` with the bundle's temperature. Where the defence is
//! measured is not here: the caller evaluates the inputs written here through the runtime, as
//! a server would answer them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use modeconn_runtime::curve::SeededRng;
use modeconn_runtime::{Member, bundle::Kind};
use tch::{Device, Kind as DType, Tensor};

use crate::arch::{self, Mode, Net, Params};
use crate::device;
use crate::fit;
use crate::job::{
    AttackJob, AttackReport, Craft, Crafted, DataSplit, Event, GradientAttack, Norm, Phase, Target,
};
use crate::model_io::{self, Loaded};
use crate::samples;
use crate::{Error, Result};

/// The file of the clean inputs in an attack's folder.
pub const CLEAN_FILE: &str = "clean.npy";
/// The file of the labels in an attack's folder.
pub const LABELS_FILE: &str = "labels.npy";

/// A small number that keeps a direction's normalisation finite where the gradient is zero.
const TINY: f64 = 1e-12;

/// The networks an attack differentiates, as a [`Target`] names them.
pub struct Model<'a> {
    net: &'a Net,
    members: Vec<Params>,
    temperature: f64,
    draws: Option<usize>,
}

impl<'a> Model<'a> {
    /// The members `target` names of `loaded`, on `device`.
    pub fn new(loaded: &'a Loaded, target: &Target, device: Device) -> Result<Self> {
        let meta = loaded.bundle.metadata();
        let wanted: Vec<Member> = match (meta.kind, target.t.is_empty(), target.members.is_empty())
        {
            (Kind::Curve, false, true) => target.t.iter().map(|&t| Member::T(t)).collect(),
            (Kind::Snapshots, true, false) => {
                target.members.iter().map(|&i| Member::Index(i)).collect()
            }
            (Kind::Curve, _, _) => {
                return Err(Error::Config(
                    "the target is a curve: name its points with `t` (and no `members`)".into(),
                ));
            }
            (Kind::Snapshots, _, _) => {
                return Err(Error::Config(
                    "the target is a snapshot set: name its members with `members` (and no `t`)"
                        .into(),
                ));
            }
        };
        if target.draws == Some(0) {
            return Err(Error::Config("`draws` must be at least 1".into()));
        }
        let members = wanted
            .iter()
            .map(|&m| params_at(loaded, m, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_params(
            &loaded.net,
            members,
            meta.temperature,
            target.draws,
        ))
    }

    /// A model of these members' parameters (every parameter and statistic of `net`).
    pub fn from_params(
        net: &'a Net,
        members: Vec<Params>,
        temperature: f64,
        draws: Option<usize>,
    ) -> Self {
        Model {
            net,
            members,
            temperature,
            draws,
        }
    }

    /// Log-probabilities `[batch, classes]` of member `k`.
    fn log_probabilities(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        let logits = arch::forward(self.net, &self.members[k], x, Mode::Eval)?;
        let kind = logits.kind();
        Ok(logits
            .f_div_scalar(self.temperature)?
            .f_log_softmax(-1, kind)?)
    }

    /// The log of the members' mean probabilities, `[batch, classes]`.
    fn ensemble_log_probabilities(&self, x: &Tensor) -> Result<Tensor> {
        let all = self
            .members
            .iter()
            .enumerate()
            .map(|(k, _)| self.log_probabilities(k, x))
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::f_stack(&all, 0)?;
        Ok(stacked
            .f_logsumexp([0i64].as_slice(), false)?
            .f_sub_scalar((self.members.len() as f64).ln())?)
    }

    /// The loss whose gradient a step follows, per sample: the cross-entropy of the mean
    /// probabilities, or with draws the mean cross-entropy of `draws` members drawn from `rng`.
    fn step_loss(&self, x: &Tensor, y: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
        match self.draws {
            None => nll(&self.ensemble_log_probabilities(x)?, y),
            Some(s) => {
                let mut total: Option<Tensor> = None;
                for _ in 0..s {
                    let k = rng.index(self.members.len());
                    let loss = nll(&self.log_probabilities(k, x)?, y)?;
                    total = Some(match total {
                        None => loss,
                        Some(t) => t.f_add(&loss)?,
                    });
                }
                let total = total.ok_or_else(|| Error::Config("no draws".into()))?;
                Ok(total.f_div_scalar(s as f64)?)
            }
        }
    }

    /// What a restart is judged by, per sample, without gradients: the step loss with every
    /// member instead of draws (its expectation over the draws).
    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| match self.draws {
            None => nll(&self.ensemble_log_probabilities(x)?, y),
            Some(_) => {
                let mut total = Tensor::f_zeros([x.size()[0]], (x.kind(), x.device()))?;
                for k in 0..self.members.len() {
                    total = total.f_add(&nll(&self.log_probabilities(k, x)?, y)?)?;
                }
                Ok(total.f_div_scalar(self.members.len() as f64)?)
            }
        })
    }

    /// Correctly classified samples of a batch: by the mean probabilities, or with draws the
    /// mean over the members of each one's correct samples (the expected count under a draw).
    fn correct(&self, x: &Tensor, y: &Tensor) -> Result<f64> {
        tch::no_grad(|| {
            let hits = |logp: &Tensor| -> Result<f64> {
                let top = logp.f_argmax(-1, false)?;
                Ok(top
                    .f_eq_tensor(y)?
                    .f_sum(DType::Float)?
                    .f_double_value(&[])?)
            };
            match self.draws {
                None => hits(&self.ensemble_log_probabilities(x)?),
                Some(_) => {
                    let mut sum = 0.0;
                    for k in 0..self.members.len() {
                        sum += hits(&self.log_probabilities(k, x)?)?;
                    }
                    Ok(sum / self.members.len() as f64)
                }
            }
        })
    }

    /// The gradient of the summed step loss with respect to the inputs `x`.
    pub fn input_gradient(&self, x: &Tensor, y: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
        let x = x.f_detach()?.set_requires_grad(true);
        let loss = self.step_loss(&x, y, rng)?.f_sum(DType::Float)?;
        let mut grads = Tensor::f_run_backward(&[&loss], &[&x], false, false)?;
        grads
            .pop()
            .ok_or_else(|| Error::Config("no gradient for the inputs".into()))
    }

    /// The summed step loss (without gradients), for checks.
    pub fn loss(&self, x: &Tensor, y: &Tensor, rng: &mut SeededRng) -> Result<f64> {
        tch::no_grad(|| {
            Ok(self
                .step_loss(x, y, rng)?
                .f_sum(DType::Double)?
                .f_double_value(&[])?)
        })
    }
}

/// Negative log-likelihood per sample.
fn nll(logp: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(logp
        .f_gather(1, &y.f_unsqueeze(1)?, false)?
        .f_squeeze_dim(1)?
        .f_neg()?)
}

/// Every parameter and statistic of `loaded`'s network at `member`, combined as the runtime
/// combines them.
fn params_at(loaded: &Loaded, member: Member, device: Device) -> Result<Params> {
    let weights = loaded.bundle.weights_at(member)?;
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, shape, values) in &weights.tensors {
        by_name.insert(name.clone(), model_io::tensor(values, shape, device)?);
    }
    let mut params = Params::new();
    for p in &loaded.net.params {
        let t = by_name.remove(&p.name).ok_or_else(|| {
            Error::Config(format!(
                "the bundle has no tensor `{}`{}",
                p.name,
                if p.kind.is_statistic() {
                    "; recompute the curve's batch-norm statistics with `modeconn bn`"
                } else {
                    ""
                }
            ))
        })?;
        params.insert(p.name.clone(), t);
    }
    Ok(params)
}

/// Per-sample norms of `d` (`[batch, ...]`), shaped `[batch, 1, ...]` to broadcast.
fn norms(d: &Tensor, norm: Norm) -> Result<Tensor> {
    let flat = d.f_flatten(1, -1)?;
    let n = match norm {
        Norm::Linf => flat.f_abs()?.f_amax([1i64].as_slice(), false)?,
        Norm::L2 => flat
            .f_square()?
            .f_sum_dim_intlist([1i64].as_slice(), false, flat.kind())?
            .f_sqrt()?,
    };
    let mut shape = vec![d.size()[0]];
    shape.extend(std::iter::repeat_n(1, d.dim() - 1));
    Ok(n.f_reshape(shape.as_slice())?)
}

/// A step of length `alpha` along `g`: its sign (L∞) or its direction (L2).
fn ascent(g: &Tensor, norm: Norm, alpha: f64) -> Result<Tensor> {
    Ok(match norm {
        Norm::Linf => g.f_sign()?.f_mul_scalar(alpha)?,
        Norm::L2 => g
            .f_div(&norms(g, norm)?.f_clamp_min(TINY)?)?
            .f_mul_scalar(alpha)?,
    })
}

/// `x` moved into the ball of radius `eps` around `clean`, then into `[lo, hi]`.
fn project(x: &Tensor, clean: &Tensor, norm: Norm, eps: f64, clip: [f64; 2]) -> Result<Tensor> {
    let d = x.f_sub(clean)?;
    let d = match norm {
        Norm::Linf => d.f_clamp(-eps, eps)?,
        Norm::L2 => {
            let n = norms(&d, norm)?;
            let scale = n
                .f_clamp_min(TINY)?
                .f_reciprocal()?
                .f_mul_scalar(eps)?
                .f_clamp_max(1.0)?;
            d.f_mul(&scale)?
        }
    };
    Ok(clean.f_add(&d)?.f_clamp(clip[0], clip[1])?)
}

/// A uniformly random start in the ball (L∞), or a random direction at a uniformly random
/// radius (L2), from the libtorch generator.
fn random_start(clean: &Tensor, norm: Norm, eps: f64, clip: [f64; 2]) -> Result<Tensor> {
    let d = match norm {
        Norm::Linf => clean
            .f_rand_like()?
            .f_mul_scalar(2.0 * eps)?
            .f_sub_scalar(eps)?,
        Norm::L2 => {
            let g = clean.f_randn_like()?;
            let radius = norms(&g, norm)?.f_rand_like()?.f_mul_scalar(eps)?;
            g.f_div(&norms(&g, norm)?.f_clamp_min(TINY)?)?
                .f_mul(&radius)?
        }
    };
    project(&clean.f_add(&d)?, clean, norm, eps, clip)
}

/// The adversarial inputs of `craft` for one batch.
pub fn craft_batch(
    model: &Model<'_>,
    craft: &Craft,
    clean: &Tensor,
    y: &Tensor,
    clip: [f64; 2],
    rng: &mut SeededRng,
) -> Result<Tensor> {
    if craft.eps == 0.0 {
        return Ok(clean.f_detach_copy()?);
    }
    let (steps, alpha, restarts, start) = match craft.attack {
        GradientAttack::Fgsm => (1, craft.eps, 1, false),
        GradientAttack::Pgd => (
            craft.steps,
            craft
                .step_size
                .unwrap_or(2.5 * craft.eps / craft.steps as f64),
            craft.restarts,
            true,
        ),
    };
    let mut best: Option<(Tensor, Tensor)> = None;
    for _ in 0..restarts {
        let mut x = if start {
            random_start(clean, craft.norm, craft.eps, clip)?
        } else {
            clean.f_detach_copy()?
        };
        for _ in 0..steps {
            let g = model.input_gradient(&x, y, rng)?;
            let moved = tch::no_grad(|| {
                x.f_add(&ascent(&g, craft.norm, alpha)?)
                    .map_err(Error::from)
            })?;
            x = tch::no_grad(|| project(&moved, clean, craft.norm, craft.eps, clip))?;
        }
        let objective = model.objective(&x, y)?;
        best = Some(match best {
            None => (x, objective),
            Some((bx, bo)) => tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                let better = objective.f_gt_tensor(&bo)?;
                let mut shape = vec![x.size()[0]];
                shape.extend(std::iter::repeat_n(1, x.dim() - 1));
                let mask = better.f_reshape(shape.as_slice())?;
                Ok((x.f_where_self(&mask, &bx)?, objective.f_maximum(&bo)?))
            })?,
        });
    }
    let (x, _) = best.ok_or_else(|| Error::Config("`restarts` must be at least 1".into()))?;
    Ok(x)
}

/// Checks a job before anything is loaded.
fn check(job: &AttackJob) -> Result<()> {
    if job.batch_size == 0 {
        return Err(Error::Config("`batch_size` must be at least 1".into()));
    }
    let [lo, hi] = job.clip;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(Error::Config(format!(
            "`clip` must be two finite values, the first below the second, not [{lo}, {hi}]"
        )));
    }
    for c in &job.crafts {
        let what = format!("craft `{}`", c.file);
        let plain = Path::new(&c.file)
            .file_name()
            .is_some_and(|n| n == c.file.as_str());
        if !plain || !c.file.ends_with(".npy") || c.file == CLEAN_FILE || c.file == LABELS_FILE {
            return Err(Error::Config(format!(
                "{what}: `file` must be a plain file name ending in .npy, other than {CLEAN_FILE} \
                 and {LABELS_FILE}"
            )));
        }
        if !(c.eps.is_finite() && c.eps >= 0.0) {
            return Err(Error::Config(format!(
                "{what}: `eps` must be finite and not negative, not {}",
                c.eps
            )));
        }
        if c.attack == GradientAttack::Pgd {
            if c.steps == 0 || c.restarts == 0 {
                return Err(Error::Config(format!(
                    "{what}: `steps` and `restarts` must be at least 1"
                )));
            }
            if let Some(a) = c.step_size
                && !(a.is_finite() && a > 0.0)
            {
                return Err(Error::Config(format!(
                    "{what}: `step_size` must be finite and positive, not {a}"
                )));
            }
        }
    }
    let mut files: Vec<&str> = job.crafts.iter().map(|c| c.file.as_str()).collect();
    files.sort_unstable();
    if let Some(w) = files.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Config(format!(
            "two crafts write the same file `{}`",
            w[0]
        )));
    }
    Ok(())
}

/// Runs an `attack` job.
pub fn attack(job: &AttackJob, on_event: &mut dyn FnMut(&Event)) -> Result<AttackReport> {
    check(job)?;
    let device = device::select(job.device)?;
    let data = fit::load_eval_data(&job.data, job.held_out, job.seed, job.limit)?;
    let mut loaded: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut open = |path: &Path| -> Result<()> {
        if !loaded.contains_key(path) {
            let l = model_io::load(path)?;
            fit::check_fits(&data, &l.net, &format!("the network of {}", path.display()))?;
            loaded.insert(path.to_path_buf(), l);
        }
        Ok(())
    };
    open(&job.bundle)?;
    for c in &job.crafts {
        open(c.target.bundle.as_deref().unwrap_or(&job.bundle))?;
    }
    let split = match job.split {
        DataSplit::Test => &data.test,
        DataSplit::Train => &data.train,
    };
    let (x, y) = samples::first(split, job.samples)?;
    let (lo, hi) = (
        x.f_min()?.f_double_value(&[])?,
        x.f_max()?.f_double_value(&[])?,
    );
    if lo < job.clip[0] || hi > job.clip[1] {
        return Err(Error::Config(format!(
            "the inputs' values lie in [{lo}, {hi}], outside the clip range [{}, {}]; give the \
             range of valid inputs",
            job.clip[0], job.clip[1]
        )));
    }
    std::fs::create_dir_all(&job.out).map_err(|e| Error::Io {
        path: job.out.clone(),
        error: e,
    })?;
    let clean_path = job.out.join(CLEAN_FILE);
    let labels_path = job.out.join(LABELS_FILE);
    samples::write_inputs(&clean_path, &x)?;
    samples::write_labels(&labels_path, &y)?;

    let n = y.size()[0];
    let batch = i64::try_from(job.batch_size).unwrap_or(i64::MAX);
    let batches = usize::try_from((n + batch - 1) / batch).unwrap_or(usize::MAX);
    let total = batches * job.crafts.len();
    if total > 0 {
        on_event(&Event::Begin {
            phase: Phase::Attack,
            total,
        });
    }
    let mut crafted = Vec::with_capacity(job.crafts.len());
    let mut done = 0;
    for (i, c) in job.crafts.iter().enumerate() {
        let started = std::time::Instant::now();
        let source = &loaded[c.target.bundle.as_deref().unwrap_or(&job.bundle)];
        let model = Model::new(source, &c.target, device).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("craft `{}`: {m}", c.file)),
            other => other,
        })?;
        let seed = job.seed.wrapping_add(i as u64);
        tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
        let mut rng = SeededRng::new(seed);
        let mut parts = Vec::with_capacity(batches);
        let mut correct = 0.0;
        let mut max_norm: f64 = 0.0;
        for b in 0..batches {
            let start = b as i64 * batch;
            let len = batch.min(n - start);
            let xb = x.f_narrow(0, start, len)?.f_to_device(device)?;
            let yb = y.f_narrow(0, start, len)?.f_to_device(device)?;
            let adv = craft_batch(&model, c, &xb, &yb, job.clip, &mut rng)?;
            correct += model.correct(&adv, &yb)?;
            let d = tch::no_grad(|| norms(&adv.f_sub(&xb)?, c.norm))?;
            max_norm = max_norm.max(d.f_max()?.f_double_value(&[])?);
            parts.push(adv.f_detach()?.f_to_device(Device::Cpu)?);
            done += 1;
            on_event(&Event::Step {
                phase: Phase::Attack,
                done,
                total,
                loss: None,
                accuracy: Some(correct / (start + len) as f64),
                lr: None,
            });
        }
        let adv = Tensor::f_cat(&parts, 0)?;
        let path = job.out.join(&c.file);
        samples::write_inputs(&path, &adv)?;
        crafted.push(Crafted {
            file: path,
            target_accuracy: correct / n as f64,
            max_norm,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if total > 0 {
        on_event(&Event::End {
            phase: Phase::Attack,
        });
    }
    Ok(AttackReport {
        device: device::reported(device),
        samples: usize::try_from(n).unwrap_or(0),
        input_shape: data.input.iter().map(|&d| d as usize).collect(),
        clean: clean_path,
        labels: labels_path,
        crafted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{ArchOptions, Normalization, by_name};

    fn model_net() -> (Net, Params) {
        let net = by_name(
            "mlp",
            &ArchOptions {
                hidden: vec![12],
                ..ArchOptions::default()
            },
            &[1, 4, 4],
            3,
            &Normalization::identity(),
        )
        .expect("an mlp");
        let params = arch::init(&net, 7, Device::Cpu).expect("initial parameters");
        (net, params)
    }

    fn inputs() -> (Tensor, Tensor) {
        tch::manual_seed(3);
        let x = Tensor::rand([5, 1, 4, 4], (DType::Double, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 1, 0]);
        (x.to_kind(DType::Float), y)
    }

    /// Central differences of the summed loss in float64 agree with the input gradient: for
    /// one network, and for the ensemble of two (its loss is the cross-entropy of the mean).
    #[test]
    fn input_gradients_match_finite_differences() {
        let (net, a) = model_net();
        let b = arch::init(&net, 8, Device::Cpu).expect("initial parameters");
        let to_double = |p: &Params| -> Params {
            p.iter()
                .map(|(k, v)| (k.clone(), v.to_kind(DType::Double)))
                .collect()
        };
        let (x, y) = inputs();
        let x = x.to_kind(DType::Double);
        for members in [vec![to_double(&a)], vec![to_double(&a), to_double(&b)]] {
            let model = Model::from_params(&net, members, 1.5, None);
            let mut rng = SeededRng::new(1);
            let g = model.input_gradient(&x, &y, &mut rng).expect("a gradient");
            let h = 1e-6;
            let flat = x.view([-1]);
            let mut worst: f64 = 0.0;
            for i in [0i64, 7, 19, 33, 50, 79] {
                let bump = |s: f64| {
                    let e = Tensor::zeros_like(&flat);
                    let _ = e.narrow(0, i, 1).fill_(s);
                    (&flat + e).view(x.size().as_slice())
                };
                let up = model.loss(&bump(h), &y, &mut rng).expect("loss");
                let down = model.loss(&bump(-h), &y, &mut rng).expect("loss");
                let numeric = (up - down) / (2.0 * h);
                let analytic = g.view([-1]).double_value(&[i]);
                worst = worst.max((numeric - analytic).abs() / analytic.abs().max(1e-3));
            }
            assert!(worst < 1e-5, "relative error {worst}");
        }
    }

    /// PGD's inputs stay in the budget's ball and in the clip range, for both norms, and
    /// raise the loss above that of the clean inputs.
    #[test]
    fn pgd_stays_in_the_ball_and_the_clip_range() {
        let (net, a) = model_net();
        let model = Model::from_params(&net, vec![a], 1.0, None);
        let (x, y) = inputs();
        let mut rng = SeededRng::new(1);
        let clean_loss = model.loss(&x, &y, &mut rng).expect("loss");
        for (norm, eps) in [(Norm::Linf, 0.1), (Norm::L2, 0.5)] {
            let craft = Craft {
                file: "a.npy".into(),
                target: Target {
                    bundle: None,
                    t: vec![],
                    members: vec![0],
                    draws: None,
                },
                attack: GradientAttack::Pgd,
                norm,
                eps,
                steps: 10,
                step_size: None,
                restarts: 2,
            };
            let adv = craft_batch(&model, &craft, &x, &y, [0.0, 1.0], &mut rng).expect("pgd");
            let d = norms(&(&adv - &x), norm).expect("norms");
            assert!(d.max().double_value(&[]) <= eps + 1e-6, "{norm}");
            assert!(adv.min().double_value(&[]) >= 0.0 && adv.max().double_value(&[]) <= 1.0);
            let adv_loss = model.loss(&adv, &y, &mut rng).expect("loss");
            assert!(adv_loss > clean_loss, "{norm}: {adv_loss} <= {clean_loss}");
        }
    }
}
