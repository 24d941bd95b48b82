//! Fast Geometric Ensembling: from a trained network, SGD with a cyclic learning rate; a
//! snapshot at the lowest rate of every cycle, with its own batch-norm statistics. Only the
//! members are written, as a snapshot set.

use std::collections::BTreeMap;

use tch::{Device, Tensor};

use crate::arch::{Net, Params};
use crate::bn;
use crate::checkpoint::{self, Checkpoint};
use crate::data::Data;
use crate::device;
use crate::epochs::{self, EpochEnd, Epochs, Trainee};
use crate::fit::{self, MeanProbabilities, Pass};
use crate::job::{Event, FgeJob, FgeReport, FgeSchedule, Phase};
use crate::model_io;
use crate::optim::{cyclic_lr, is_snapshot_step};
use crate::train::Network;
use crate::{Error, Result};

/// Runs FGE as `job` says and writes the snapshot set.
pub fn fge(job: &FgeJob, on_event: &mut dyn FnMut(&Event)) -> Result<FgeReport> {
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
    let device = device::select(t.device)?;
    let (init, member) =
        model_io::endpoint(&job.init, job.onnx.as_deref(), job.init_member, "--init")?;
    let data = fit::load_data(t)?;
    fit::check_fits(&data, &init.net, "the network")?;
    let net = init.net.clone();
    let params = model_io::member(&init, member, device)?;
    let steps = data.train_steps(t.batch_size);
    let mut network = Network::new(&net, params, t);
    let momentum_from = match start_momentum(job, &network, device)? {
        Some((path, buffers)) => {
            network.continue_momentum(buffers);
            Some(path)
        }
        None => None,
    };
    let mut ensembling = Ensembling {
        network,
        net: &net,
        data: &data,
        device,
        job,
        steps,
        cycle: (job.cycle * steps).div_ceil(2) * 2,
        iteration: 0,
        snapshots: Vec::new(),
        members: Vec::new(),
    };
    let epochs = Epochs {
        phase: Phase::Fge,
        training: t,
        data: &data,
        device,
        out: &job.out,
    };
    let finished = epochs::drive(epochs, job, &mut ensembling, on_event)?;
    let members = &ensembling.members;
    if members.is_empty() {
        return Err(Error::Config(format!(
            "no snapshot was taken: {} epochs are shorter than half a cycle of {} epochs",
            t.epochs, job.cycle
        )));
    }
    // Each member and the ensemble on the test split.
    let mut per_member = Vec::new();
    let mut running = Vec::new();
    let mut mean = MeanProbabilities::default();
    let test = Pass::test(&data, 256, device);
    for m in members {
        let p = test.probabilities(&net, m)?;
        per_member.push(fit::score_probabilities(&p, &data.test.y)?);
        mean.add(&p)?;
        running.push(mean.scores(&data.test.y)?);
    }
    let ensemble = mean.scores(&data.test.y)?;
    let schedule = FgeSchedule {
        lr1: job.lr1,
        lr2: job.lr2,
        iterations_per_epoch: steps,
        iterations: t.epochs * steps,
        snapshot_iterations: snapshot_iterations(job, steps, ensembling.cycle),
    };
    let run = &finished.run;
    model_io::write_snapshots(
        &job.out,
        &net,
        init.origin(),
        members,
        serde_json::json!({ "command": "fge", "job": run.job, "history": run.history,
            "init": modeconn_runtime::fs::sha256_file(&job.init)? }),
    )?;
    run.finish();
    Ok(FgeReport {
        members: members.len(),
        cycle_iterations: ensembling.cycle,
        member_test_accuracy: per_member.iter().map(|s| s.accuracy).collect(),
        member_test_nll: per_member.iter().map(|s| s.loss).collect(),
        ensemble_test_accuracy: ensemble.accuracy,
        ensemble_test_nll: ensemble.loss,
        running_ensemble_test_accuracy: running.iter().map(|s| s.accuracy).collect(),
        running_ensemble_test_nll: running.iter().map(|s| s.loss).collect(),
        schedule: Some(schedule),
        momentum_from,
        run: finished.trained(&job.out),
    })
}

/// The momentum FGE starts with: that of the training checkpoint of `job.momentum_from`, or
/// of `INIT.ckpt` (which `train` keeps) when there is one; none with `fresh_momentum`. The
/// checkpoint must hold exactly the parameters FGE starts from, so that its momentum belongs
/// to them.
/// The iterations (1-based, over the whole run) after which the run's rule takes snapshots:
/// where the cycle's rate is lowest, or at the end of the epochs the reference's rule names.
/// A resumed run took its earlier members at the same iterations, so this holds for it too.
fn snapshot_iterations(job: &FgeJob, steps: usize, cycle: usize) -> Vec<usize> {
    let epochs = job.training.epochs;
    if job.snapshot_at_epoch_end {
        (0..epochs)
            .filter(|e| e % job.cycle + 1 == job.cycle / 2)
            .map(|e| (e + 1) * steps)
            .collect()
    } else {
        (1..=epochs * steps)
            .filter(|&i| is_snapshot_step(i, cycle))
            .collect()
    }
}

fn start_momentum(
    job: &FgeJob,
    network: &Network,
    device: Device,
) -> Result<Option<(std::path::PathBuf, BTreeMap<String, Tensor>)>> {
    if job.fresh_momentum {
        return Ok(None);
    }
    let path = match (&job.momentum_from, &job.onnx) {
        (Some(p), _) => p.clone(),
        (None, None) => checkpoint::default_path(&job.init),
        // A state_dict has no training checkpoint beside it.
        (None, Some(_)) => return Ok(None),
    };
    let Some(c) = checkpoint::load(&path, device)? else {
        return match job.momentum_from {
            Some(_) => Err(Error::Config(format!(
                "--momentum-from {}: no such checkpoint",
                path.display()
            ))),
            None => Ok(None),
        };
    };
    let foreign = |why: &str| {
        Error::Config(format!(
            "{} is not the training checkpoint of {} ({why}); pass --fresh-momentum, or \
             --momentum-from the checkpoint of the run that wrote it",
            path.display(),
            job.init.display()
        ))
    };
    let mut buffers = BTreeMap::new();
    for name in network.trainable() {
        let saved = c
            .tensors
            .get(&format!("{}{name}", crate::train::PARAM))
            .ok_or_else(|| foreign(&format!("it has no parameter `{name}`")))?;
        let same = network
            .params
            .get(name)
            .is_some_and(|p| p.size() == saved.size() && p.equal(saved));
        if !same {
            return Err(foreign(&format!("its `{name}` differs")));
        }
        let momentum = c
            .tensors
            .get(&format!("{}{name}", crate::optim::MOMENTUM))
            .ok_or_else(|| foreign(&format!("it has no momentum for `{name}`")))?;
        buffers.insert(name.clone(), momentum.shallow_clone());
    }
    Ok(Some((path, buffers)))
}

/// A network under FGE, and the members it left so far.
struct Ensembling<'a> {
    network: Network,
    net: &'a Net,
    data: &'a Data,
    device: Device,
    job: &'a FgeJob,
    /// Mini-batches per epoch.
    steps: usize,
    /// The cycle in iterations (even).
    cycle: usize,
    /// The last iteration run (1-based over the whole run).
    iteration: usize,
    /// Snapshots of the current epoch, whose statistics are not recomputed yet.
    snapshots: Vec<Params>,
    members: Vec<Params>,
}

/// The prefix of the members' names in checkpoints: `member{index}/NAME`.
const MEMBER: &str = "member";

impl Ensembling<'_> {
    /// Keeps a copy of the current weights as a snapshot of this epoch.
    fn take_snapshot(&mut self) -> Result<()> {
        let copy = self
            .network
            .params
            .iter()
            .map(|(n, p)| Ok((n.clone(), fit::deep_copy(p)?)))
            .collect::<Result<Params>>()?;
        self.snapshots.push(copy);
        Ok(())
    }
}

impl Trainee for Ensembling<'_> {
    fn lr(&self, epoch: usize) -> f64 {
        cyclic_lr(
            self.job.lr1,
            self.job.lr2,
            epoch * self.steps + 1,
            self.cycle,
        )
    }

    fn lr_in_history(&self) -> bool {
        false
    }

    fn resume(&mut self, checkpoint: Option<Checkpoint>) -> Result<()> {
        if let Some(c) = checkpoint {
            let count = c.state["members"].as_u64().unwrap_or(0) as usize;
            self.members = (0..count).map(|_| BTreeMap::new()).collect();
            let mut rest = BTreeMap::new();
            for (name, value) in c.tensors {
                if let Some((i, n)) = name.strip_prefix(MEMBER).and_then(|m| m.split_once('/')) {
                    let i: usize = i
                        .parse()
                        .map_err(|_| Error::Config(format!("bad checkpoint tensor `{name}`")))?;
                    if let Some(slot) = self.members.get_mut(i) {
                        slot.insert(n.to_string(), value);
                        continue;
                    }
                }
                rest.insert(name, value);
            }
            self.network.restore(rest)?;
        }
        self.network.track_gradients()
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.iteration = epoch * self.steps;
        self.snapshots.clear();
        Ok(())
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, _: f64) -> Result<(Tensor, Tensor)> {
        self.iteration += 1;
        let (i, c) = (self.iteration, self.cycle);
        let out = self
            .network
            .step(self.net, x, y, cyclic_lr(self.job.lr1, self.job.lr2, i, c))?;
        if !self.job.snapshot_at_epoch_end && is_snapshot_step(i, c) {
            self.take_snapshot()?;
        }
        Ok(out)
    }

    fn end_epoch(&mut self, epoch: usize, on_event: &mut dyn FnMut(&Event)) -> Result<EpochEnd> {
        // The reference's rule: after the epochs where `epoch % cycle + 1 == cycle / 2`.
        let cycle = self.job.cycle;
        if self.job.snapshot_at_epoch_end && epoch % cycle + 1 == cycle / 2 {
            self.take_snapshot()?;
        }
        for mut snap in std::mem::take(&mut self.snapshots) {
            // The paper's FGE gives each snapshot its own statistics; the reference's fge.py
            // keeps the running ones of training (`running_statistics`).
            if !self.job.running_statistics {
                bn::recompute(self.net, &mut snap, self.data, 256, self.device)?;
            }
            self.members.push(snap);
            on_event(&Event::Message {
                text: format!(
                    "snapshot {} taken in epoch {}",
                    self.members.len(),
                    epoch + 1
                ),
            });
        }
        Ok(EpochEnd {
            test: None,
            members: Some(self.members.len()),
        })
    }

    fn checkpoint(&self) -> (serde_json::Value, Vec<(String, &Tensor)>) {
        let mut tensors = self.network.tensors();
        for (m, member) in self.members.iter().enumerate() {
            tensors.extend(member.iter().map(|(n, p)| (format!("{MEMBER}{m}/{n}"), p)));
        }
        let state = serde_json::json!({ "members": self.members.len() });
        (state, tensors)
    }
}
