//! Training one network from scratch (an endpoint): SGD with momentum and weight decay on the
//! reference schedule; writes a one-member snapshot bundle.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::arch::{self, Mode, Params};
use crate::checkpoint::Run;
use crate::device;
use crate::fit::{self, Scores};
use crate::job::{Event, TrainJob};
use crate::model_io::{self, ModelSpec};
use crate::optim::{Sgd, reference_lr};
use crate::{Error, Result};

/// Trains `job.arch` on `job.training.data` and writes the network to `job.out`.
pub fn train(job: &TrainJob, on_event: &mut dyn FnMut(&Event)) -> Result<serde_json::Value> {
    let t = &job.training;
    fit::check_options(t)?;
    let device = device::select(&t.device)?;
    let data = fit::load_data(t)?;
    let spec = ModelSpec {
        arch: job.arch.clone(),
        hidden: job.hidden.clone(),
        input: data.input.clone(),
        classes: data.classes,
        mean: data.mean.clone(),
        std: data.std.clone(),
    };
    let net = spec.net()?;
    tch::manual_seed(t.seed as i64);
    let mut params: Params = arch::init(&net, t.seed as i64, device)?;
    let trainable = fit::trained_names(&net);
    let mut sgd = Sgd::new(t.momentum, t.wd);

    // Resume: the same job continues from the last completed epoch.
    let mut run = Run::new(job, t.checkpoint.as_deref(), &job.out)?;
    if let Some(c) = run.resume(t.resume, device, on_event)? {
        restore(&mut params, &mut sgd, c.tensors)?;
    }
    let start = run.start;
    fit::track_gradients(&mut params, &trainable)?;

    on_event(&Event::Begin {
        phase: "train".into(),
        total: t.epochs,
    });
    let mut last = (Scores::default(), Scores::default());
    for epoch in start..t.epochs {
        let lr = reference_lr(t.lr, epoch, t.epochs);
        // Dropout and any other libtorch randomness restart from a seed per epoch, so a
        // resumed run draws exactly what an uninterrupted one would.
        tch::manual_seed(
            (t.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as i64),
        );
        let (train_scores, seconds) = fit::timed(|| {
            fit::epoch(
                fit::EpochPlan {
                    phase: "train",
                    data: &data,
                    batch_size: t.batch_size,
                    seed: epoch_seed(t.seed, epoch),
                    device,
                    lr,
                    epoch: epoch + 1,
                },
                on_event,
                |x, y| {
                    let logits = arch::forward(&net, &params, x, Mode::Train)?;
                    let loss = fit::cross_entropy(&logits, y)?;
                    loss.f_backward()?;
                    sgd.step(params.iter_mut().filter(|(n, _)| trainable.contains(n)), lr)?;
                    Ok((loss, logits))
                },
            )
        })?;
        let test = fit::evaluate(&net, &params, &data, &data.test, 256, device)?;
        on_event(&Event::Epoch {
            epoch: epoch + 1,
            epochs: t.epochs,
            train_loss: train_scores.loss,
            train_accuracy: train_scores.accuracy,
            test_loss: Some(test.loss),
            test_accuracy: Some(test.accuracy),
            seconds,
        });
        run.history.push(serde_json::json!({
            "epoch": epoch + 1, "lr": lr, "train_loss": train_scores.loss,
            "train_accuracy": train_scores.accuracy, "test_nll": test.loss,
            "test_accuracy": test.accuracy, "seconds": seconds,
        }));
        last = (train_scores, test);
        save_checkpoint(&run, epoch + 1, &params, &sgd)?;
    }
    on_event(&Event::End {
        phase: "train".into(),
    });
    let (train_scores, test) = if start == t.epochs {
        // Everything was done before; score what the checkpoint holds.
        let tr = fit::evaluate(&net, &params, &data, &data.train, 256, device)?;
        let te = fit::evaluate(&net, &params, &data, &data.test, 256, device)?;
        (tr, te)
    } else {
        last
    };
    let metrics = serde_json::json!({
        "train_loss": train_scores.loss, "train_accuracy": train_scores.accuracy,
        "test_nll": test.loss, "test_accuracy": test.accuracy,
    });
    model_io::write_snapshots(
        &job.out,
        &net,
        &spec,
        std::slice::from_ref(&params),
        serde_json::json!({ "command": "train", "job": run.job, "metrics": metrics, "history": run.history }),
    )?;
    run.finish();
    Ok(serde_json::json!({
        "ok": true, "command": "train", "out": job.out, "arch": job.arch,
        "device": device::name(device), "epochs": t.epochs,
        "train_loss": train_scores.loss, "train_accuracy": train_scores.accuracy,
        "test_nll": test.loss, "test_accuracy": test.accuracy,
        "seconds_per_epoch": run.mean_seconds(),
    }))
}

/// The shuffle seed of an epoch.
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64)
}

/// Saves parameters (as `param/NAME`) and momentum buffers (as `momentum/NAME`).
pub(crate) fn save_checkpoint(run: &Run, epoch: usize, params: &Params, sgd: &Sgd) -> Result<()> {
    let mut tensors: Vec<(String, &Tensor)> = params
        .iter()
        .map(|(n, t)| (format!("param/{n}"), t))
        .collect();
    tensors.extend(
        sgd.buffers()
            .iter()
            .map(|(n, t)| (format!("momentum/{n}"), t)),
    );
    run.save(epoch, serde_json::json!({}), &tensors)
}

/// Restores what [`save_checkpoint`] saved.
pub(crate) fn restore(
    params: &mut Params,
    sgd: &mut Sgd,
    tensors: BTreeMap<String, Tensor>,
) -> Result<()> {
    let mut buffers = BTreeMap::new();
    for (name, t) in tensors {
        if let Some(p) = name.strip_prefix("param/") {
            let slot = params
                .get_mut(p)
                .ok_or_else(|| Error::Config(format!("checkpoint has unknown tensor `{p}`")))?;
            tch::no_grad(|| slot.f_copy_(&t))?;
        } else if let Some(m) = name.strip_prefix("momentum/") {
            buffers.insert(m.to_string(), t);
        }
    }
    sgd.set_buffers(buffers);
    Ok(())
}
