//! Progress events: what the trainer reports while a job runs (a JSON object tagged by
//! `"event"` on the wire).

use serde::{Deserialize, Serialize};

named_enum! {
    /// A phase of a job, as events name it.
    Phase ("phase") {
        /// Training an endpoint (`train`).
        Train = "train",
        /// Fitting a curve (`curve`).
        Curve = "curve",
        /// Fast Geometric Ensembling (`fge`).
        Fge = "fge",
        /// Recomputing batch-norm statistics on the grid of a curve.
        Bn = "bn",
        /// Evaluating along a curve or over a snapshot set.
        Eval = "eval",
        /// Evaluating the straight segment between a curve's endpoints.
        Segment = "segment",
        /// Making adversarial inputs; a step is one mini-batch of one craft.
        Attack = "attack",
        /// Evaluating the grid of a plane; a step is one grid point.
        Plane = "plane",
    }
}

impl Phase {
    /// Whether the phase trains over epochs (`train`, `curve`, `fge`): its steps count the
    /// mini-batches of an epoch.
    pub fn trains(self) -> bool {
        matches!(self, Phase::Train | Phase::Curve | Phase::Fge)
    }
}

/// The scores of an epoch: on the training data during the epoch, and on the test split after
/// it when the command evaluates it. Accuracies are fractions in `[0, 1]`; losses are mean
/// negative log-likelihoods in nats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochScores {
    /// Mean training loss over the epoch's mini-batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch's mini-batches.
    pub train_accuracy: f64,
    /// Test NLL, when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_nll: Option<f64>,
    /// Test accuracy, when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

/// A progress event.
///
/// What the counts count depends on the phase:
///
/// - Training phases (`train`, `curve`, `fge`): [`Event::Begin`]'s `total` is the number of
///   epochs of the run, while [`Event::Step`]'s `done` and `total` count the mini-batches
///   within the current epoch (`done` restarts at 1 every epoch; [`Event::Epoch`] says which
///   epoch ended). A resumed run still announces every epoch of the run in `total`; its first
///   [`Event::Epoch`] is the first epoch after the checkpoint.
/// - `bn`: one step per point of the batch-norm grid; `eval` and `segment`: one step per point
///   of the t grid (curves) or per member (snapshot sets). `Begin.total` and `Step.total`
///   agree.
///
/// Accuracies (`accuracy`, `train_accuracy`, `test_accuracy`) are fractions in `[0, 1]`, not
/// percentages; losses are mean negative log-likelihoods in nats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase begins.
    Begin {
        /// The phase.
        phase: Phase,
        /// For training phases the number of epochs of the run; for the others the number of
        /// steps to come.
        total: usize,
    },
    /// One step of the phase is done: in training phases a mini-batch of the current epoch.
    Step {
        /// The phase.
        phase: Phase,
        /// Steps done so far (1-based); in training phases, mini-batches of the current epoch.
        done: usize,
        /// Steps in the phase; in training phases, mini-batches per epoch (not the epochs of
        /// `Begin.total`).
        total: usize,
        /// Training phases: mean training loss of the epoch so far; `eval` and `segment`: the
        /// test NLL at the point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        /// Training phases: training accuracy of the epoch so far; `eval` and `segment`: the
        /// test accuracy at the point. A fraction in `[0, 1]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
        /// Current learning rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
    },
    /// An epoch ended.
    Epoch {
        /// The epoch (1-based).
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Its scores: `train_loss`, `train_accuracy`, and `test_nll`, `test_accuracy` when
        /// evaluated.
        #[serde(flatten)]
        scores: EpochScores,
        /// Wall time of the epoch in seconds.
        seconds: f64,
    },
    /// A line for people.
    Message {
        /// The text.
        text: String,
    },
    /// The phase ended.
    End {
        /// The phase.
        phase: Phase,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_wire_form_is_flat_and_tagged() {
        let epoch = Event::Epoch {
            epoch: 2,
            epochs: 5,
            scores: EpochScores {
                train_loss: 0.25,
                train_accuracy: 0.5,
                test_nll: Some(0.75),
                test_accuracy: None,
            },
            seconds: 1.5,
        };
        let wire = json!({"event": "epoch", "epoch": 2, "epochs": 5, "train_loss": 0.25,
                          "train_accuracy": 0.5, "test_nll": 0.75, "seconds": 1.5});
        assert_eq!(serde_json::to_value(&epoch).ok(), Some(wire.clone()));
        assert_eq!(serde_json::from_value::<Event>(wire).ok(), Some(epoch));

        let step = json!({"event": "step", "phase": "segment", "done": 1, "total": 2});
        let parsed: Option<Event> = serde_json::from_value(step.clone()).ok();
        assert_eq!(
            parsed,
            Some(Event::Step {
                phase: Phase::Segment,
                done: 1,
                total: 2,
                loss: None,
                accuracy: None,
                lr: None
            })
        );
        assert_eq!(serde_json::to_value(parsed).ok(), Some(step));
        let unknown = json!({"event": "begin", "phase": "dance", "total": 1});
        assert!(serde_json::from_value::<Event>(unknown).is_err());
    }

    #[test]
    fn training_phases_are_told() {
        assert!(Phase::Fge.trains() && !Phase::Bn.trains());
        assert_eq!(Phase::Segment.to_string(), "segment");
    }
}
