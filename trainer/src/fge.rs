//! Fast Geometric Ensembling: from a trained network, SGD with a cyclic learning rate; a
//! snapshot at the lowest rate of every cycle, with its own batch-norm statistics. Only the
//! members are written, as a snapshot set.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::arch::{self, Mode, Params};
use crate::bn;
use crate::checkpoint::Run;
use crate::device;
use crate::fit;
use crate::job::{Event, FgeJob};
use crate::model_io;
use crate::optim::{Sgd, cyclic_lr, is_snapshot_step};
use crate::train::epoch_seed;
use crate::{Error, Result};

/// Runs FGE as `job` says and writes the snapshot set.
pub fn fge(job: &FgeJob, on_event: &mut dyn FnMut(&Event)) -> Result<serde_json::Value> {
    let t = &job.training;
    fit::check_options(t)?;
    if job.cycle == 0 {
        return Err(Error::Config("`cycle` must be at least 1 epoch".into()));
    }
    if !(job.lr1.is_finite() && job.lr2.is_finite() && job.lr1 > job.lr2 && job.lr2 > 0.0) {
        return Err(Error::Config(format!(
            "`lr1` ({}) must be larger than `lr2` ({}), and both positive",
            job.lr1, job.lr2
        )));
    }
    let device = device::select(&t.device)?;
    let init = model_io::load(&job.init)?;
    let data = fit::load_data(t)?;
    if data.input != init.spec.input || data.classes != init.spec.classes {
        return Err(Error::Config(format!(
            "the data ({:?}, {} classes) does not fit the network ({:?}, {} classes)",
            data.input, data.classes, init.spec.input, init.spec.classes
        )));
    }
    let net = init.net.clone();
    let mut params = model_io::member(&init, 0, device)?;
    let trainable = fit::trained_names(&net);
    let steps = data.train_steps(t.batch_size);
    let c = (job.cycle * steps).div_ceil(2) * 2;
    let mut sgd = Sgd::new(t.momentum, t.wd);
    let mut members: Vec<Params> = Vec::new();
    let mut run = Run::new(job, t.checkpoint.as_deref(), &job.out)?;
    if let Some(ck) = run.resume(t.resume, device, on_event)? {
        {
            let count = ck.state["members"].as_u64().unwrap_or(0) as usize;
            members = (0..count).map(|_| BTreeMap::new()).collect();
            let mut rest = BTreeMap::new();
            for (name, value) in ck.tensors {
                if let Some((i, n)) = name.strip_prefix("member").and_then(|m| m.split_once('/')) {
                    let i: usize = i
                        .parse()
                        .map_err(|_| Error::Config(format!("bad checkpoint tensor `{name}`")))?;
                    if let Some(slot) = members.get_mut(i) {
                        slot.insert(n.to_string(), value);
                        continue;
                    }
                }
                rest.insert(name, value);
            }
            crate::train::restore(&mut params, &mut sgd, rest)?;
        }
    }
    let start = run.start;
    fit::track_gradients(&mut params, &trainable)?;
    on_event(&Event::Begin {
        phase: "fge".into(),
        total: t.epochs,
    });
    for epoch in start..t.epochs {
        tch::manual_seed(
            (t.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as i64),
        );
        let mut i = epoch * steps;
        let mut snapshots: Vec<Params> = Vec::new();
        let (scores, seconds) = fit::timed(|| {
            let plan = fit::EpochPlan {
                phase: "fge",
                data: &data,
                batch_size: t.batch_size,
                seed: epoch_seed(t.seed, epoch),
                device,
                lr: cyclic_lr(job.lr1, job.lr2, epoch * steps + 1, c),
                epoch: epoch + 1,
            };
            fit::epoch(plan, on_event, |x, y| {
                i += 1;
                let lr = cyclic_lr(job.lr1, job.lr2, i, c);
                let logits = arch::forward(&net, &params, x, Mode::Train)?;
                let loss = fit::cross_entropy(&logits, y)?;
                loss.f_backward()?;
                sgd.step(params.iter_mut().filter(|(n, _)| trainable.contains(n)), lr)?;
                if is_snapshot_step(i, c) {
                    let copy = params
                        .iter()
                        .map(|(n, p)| Ok((n.clone(), fit::deep_copy(p)?)))
                        .collect::<Result<Params>>()?;
                    snapshots.push(copy);
                }
                Ok((loss, logits))
            })
        })?;
        for mut snap in snapshots {
            bn::recompute(&net, &mut snap, &data, 256, device)?;
            members.push(snap);
            on_event(&Event::Message {
                text: format!("snapshot {} taken in epoch {}", members.len(), epoch + 1),
            });
        }
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
            "epoch": epoch + 1, "train_loss": scores.loss, "train_accuracy": scores.accuracy,
            "seconds": seconds, "members": members.len(),
        }));
        let mut tensors: Vec<(String, &Tensor)> = params
            .iter()
            .map(|(n, p)| (format!("param/{n}"), p))
            .collect();
        tensors.extend(
            sgd.buffers()
                .iter()
                .map(|(n, b)| (format!("momentum/{n}"), b)),
        );
        for (m, member) in members.iter().enumerate() {
            tensors.extend(member.iter().map(|(n, p)| (format!("member{m}/{n}"), p)));
        }
        run.save(
            epoch + 1,
            serde_json::json!({ "members": members.len() }),
            &tensors,
        )?;
    }
    on_event(&Event::End {
        phase: "fge".into(),
    });
    if members.is_empty() {
        return Err(Error::Config(format!(
            "no snapshot was taken: {} epochs are shorter than half a cycle of {} epochs",
            t.epochs, job.cycle
        )));
    }
    // Each member and the ensemble on the test split.
    let mut per_member = Vec::new();
    let mut sum: Option<Tensor> = None;
    for m in &members {
        let p = fit::probabilities(&net, m, &data, &data.test, 256, device)?;
        per_member.push(fit::score_probabilities(&p, &data.test.y)?);
        sum = Some(match sum {
            None => p,
            Some(s) => s.f_add(&p)?,
        });
    }
    let ensemble = match sum {
        Some(s) => fit::score_probabilities(&s.f_div_scalar(members.len() as f64)?, &data.test.y)?,
        None => fit::Scores::default(),
    };
    model_io::write_snapshots(
        &job.out,
        &net,
        &init.spec,
        &members,
        serde_json::json!({ "command": "fge", "job": run.job, "history": run.history,
            "init": crate::curve::file_sha256(&job.init)? }),
    )?;
    run.finish();
    Ok(serde_json::json!({
        "ok": true, "command": "fge", "out": job.out, "members": members.len(),
        "cycle_iterations": c, "device": device::name(device),
        "member_test_accuracy": per_member.iter().map(|s| s.accuracy).collect::<Vec<_>>(),
        "member_test_nll": per_member.iter().map(|s| s.loss).collect::<Vec<_>>(),
        "ensemble_test_accuracy": ensemble.accuracy, "ensemble_test_nll": ensemble.loss,
        "seconds_per_epoch": run.mean_seconds(),
    }))
}
