//! The epoch loop of every training command (`train`, `curve`, `fge`), written once: resuming
//! from the checkpoint, the per-epoch seeds, the timed epoch of mini-batches with its progress,
//! the epoch event, the history row and the checkpoint after every epoch. A command supplies
//! only what differs, as a [`Trainee`].

use std::path::Path;

use serde::Serialize;
use tch::{Device, Tensor};

use crate::Result;
use crate::checkpoint::{Checkpoint, Run};
use crate::data::Data;
use crate::fit::{self, Scores};
use crate::job::{EpochScores, Event, HistoryRow, Phase, Trained, TrainingOptions};

/// What a training command trains, and how.
pub trait Trainee {
    /// The learning rate of `epoch` (0-based) that progress events show and [`Trainee::step`]
    /// is given.
    fn lr(&self, epoch: usize) -> f64;

    /// Whether history rows record [`Trainee::lr`]: commands whose rate is one per epoch do,
    /// those whose rate changes within an epoch do not.
    fn lr_in_history(&self) -> bool {
        true
    }

    /// Takes over what the checkpoint holds when the run resumes from one, then gets ready to
    /// train (e.g. makes libtorch track the gradients of what is trained).
    fn resume(&mut self, checkpoint: Option<Checkpoint>) -> Result<()>;

    /// Gets ready for `epoch` (0-based), before its first mini-batch.
    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// One mini-batch at learning rate `lr`: forward, backward and update. Returns the batch's
    /// loss and logits.
    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> Result<(Tensor, Tensor)>;

    /// After the mini-batches of `epoch` (0-based), outside its timing: the test scores and
    /// the members collected, for commands that have them.
    fn end_epoch(&mut self, _epoch: usize, _on_event: &mut dyn FnMut(&Event)) -> Result<EpochEnd> {
        Ok(EpochEnd::default())
    }

    /// What the checkpoint after an epoch holds besides the job and the history: extra state
    /// fields (a JSON object) and the tensors.
    fn checkpoint(&self) -> (serde_json::Value, Vec<(String, &Tensor)>);
}

/// What a command found after an epoch's mini-batches.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochEnd {
    /// Scores on the test split.
    pub test: Option<Scores>,
    /// Members collected so far.
    pub members: Option<usize>,
}

/// Where the epochs of a run come from and go.
#[derive(Debug, Clone, Copy)]
pub struct Epochs<'a> {
    /// The phase events name.
    pub phase: Phase,
    /// The training options of the job.
    pub training: &'a TrainingOptions,
    /// The data.
    pub data: &'a Data,
    /// Where the run trains.
    pub device: Device,
    /// The bundle the run writes (the checkpoint's default path derives from it).
    pub out: &'a Path,
}

/// The last epoch run.
#[derive(Debug, Clone, Copy)]
pub struct LastEpoch {
    /// Scores on the training data during the epoch.
    pub train: Scores,
    /// What the command found after it.
    pub end: EpochEnd,
}

/// A run whose epochs are done.
#[derive(Debug)]
pub struct Finished {
    /// Its bookkeeping: the job, the history of every epoch (resumed ones included).
    pub run: Run,
    /// The last epoch this process ran; `None` when the checkpoint held every epoch.
    pub last: Option<LastEpoch>,
    device: Device,
    epochs: usize,
}

impl Finished {
    /// What the report says about the run: the bundle at `out`, the device, the epochs and
    /// their mean time.
    pub fn trained(&self, out: &Path) -> Trained {
        Trained {
            out: out.to_path_buf(),
            device: crate::device::reported(self.device),
            epochs: self.epochs,
            seconds_per_epoch: self.run.mean_seconds(),
        }
    }
}

/// Runs the epochs of `job` that are left: checks and takes over its checkpoint when the job
/// says to resume, then for each epoch reseeds libtorch, runs the trainee over the shuffled
/// mini-batches (timed, with step events), lets it finish the epoch, and reports the epoch,
/// records its history row and saves the checkpoint. The phase's begin and end events frame
/// the epochs.
pub fn drive(
    epochs: Epochs<'_>,
    job: &impl Serialize,
    trainee: &mut impl Trainee,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Finished> {
    let Epochs {
        phase,
        training: t,
        data,
        device,
        out,
    } = epochs;
    let mut run = Run::new(job, t.checkpoint.as_deref(), out)?;
    let checkpoint = run.resume(t.resume, device, on_event)?;
    trainee.resume(checkpoint)?;
    on_event(&Event::Begin {
        phase,
        total: t.epochs,
    });
    let mut last = None;
    for epoch in run.start..t.epochs {
        // Dropout and any other libtorch randomness restart from a seed per epoch, so a
        // resumed run draws exactly what an uninterrupted one would.
        tch::manual_seed(
            (t.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as i64),
        );
        trainee.begin_epoch(epoch)?;
        let lr = trainee.lr(epoch);
        let plan = fit::EpochPlan {
            phase,
            data,
            batch_size: t.batch_size,
            seed: epoch_seed(t.seed, epoch),
            device,
            lr,
            epoch: epoch + 1,
        };
        let (train, seconds) =
            fit::timed(|| fit::epoch(plan, on_event, |x, y| trainee.step(x, y, lr)))?;
        let end = trainee.end_epoch(epoch, on_event)?;
        let scores = EpochScores {
            train_loss: train.loss,
            train_accuracy: train.accuracy,
            test_nll: end.test.map(|s| s.loss),
            test_accuracy: end.test.map(|s| s.accuracy),
        };
        on_event(&Event::Epoch {
            epoch: epoch + 1,
            epochs: t.epochs,
            scores,
            seconds,
        });
        run.history.push(HistoryRow {
            epoch: epoch + 1,
            lr: trainee.lr_in_history().then_some(lr),
            scores,
            seconds,
            members: end.members,
        });
        let (state, tensors) = trainee.checkpoint();
        run.save(epoch + 1, state, &tensors)?;
        last = Some(LastEpoch { train, end });
    }
    on_event(&Event::End { phase });
    Ok(Finished {
        run,
        last,
        device,
        epochs: t.epochs,
    })
}

/// The shuffle seed of an epoch (0-based).
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch as u64)
}
