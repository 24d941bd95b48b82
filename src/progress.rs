//! Progress bars for the trainer's events, drawn on stderr while a training command runs.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use modeconn_jobs::{EpochScores, Event, Phase};

/// Progress bars for the trainer's events: one per running phase, with loss, accuracy,
/// learning rate and time left; epochs and messages are printed above them. Disabled, it
/// ignores every event.
pub struct ProgressView {
    multi: Option<MultiProgress>,
    bars: Vec<Bar>,
}

/// The bar of a running phase.
struct Bar {
    phase: Phase,
    bar: ProgressBar,
    /// Epochs in the phase: for training phases, `total` of the `begin` event (their steps
    /// count the batches within an epoch), then what `epoch` events say.
    epochs: Option<usize>,
    /// Epochs finished.
    epochs_done: usize,
    /// Whether an `epoch` event came since the last step.
    epoch_seen: bool,
    /// The last step's `done`.
    last_done: usize,
    /// When the first step ended, and steps counted since then (across epochs).
    first_step: Option<Instant>,
    steps_since_first: usize,
}

/// What a step event shows besides its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Shown {
    loss: Option<f64>,
    accuracy: Option<f64>,
    lr: Option<f64>,
}

impl ProgressView {
    /// A view that draws on stderr when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self::with_target(enabled.then(ProgressDrawTarget::stderr))
    }

    /// A view that draws on `target`, or ignores events when there is none.
    fn with_target(target: Option<ProgressDrawTarget>) -> Self {
        ProgressView {
            multi: target.map(MultiProgress::with_draw_target),
            bars: Vec::new(),
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &Event) {
        let Some(multi) = self.multi.clone() else {
            return;
        };
        match *event {
            Event::Begin { phase, total } => self.begin(&multi, phase, total),
            Event::Step {
                phase,
                done,
                total,
                loss,
                accuracy,
                lr,
            } => {
                if !self.bars.iter().any(|b| b.phase == phase) {
                    self.begin(&multi, phase, total);
                }
                if let Some(b) = self.bars.iter_mut().find(|b| b.phase == phase) {
                    let _ = b.step(done, total, Shown { loss, accuracy, lr });
                }
            }
            Event::Epoch {
                epoch,
                epochs,
                ref scores,
                seconds,
            } => {
                let bar = self.bars.last_mut();
                let phase = bar.as_ref().map_or(Phase::Train, |b| b.phase);
                let line = epoch_line(phase, (epoch, epochs), scores, seconds);
                if let Some(b) = bar {
                    b.epochs = Some(epochs);
                    b.epochs_done = epoch;
                    b.epoch_seen = true;
                }
                let _ = multi.println(line);
            }
            Event::Message { ref text } => {
                let _ = multi.println(text);
            }
            Event::End { phase } => {
                if let Some(i) = self.bars.iter().position(|b| b.phase == phase) {
                    let b = self.bars.remove(i);
                    b.bar.finish_and_clear();
                    multi.remove(&b.bar);
                }
            }
        }
    }

    /// Clears what is still drawn.
    pub fn finish(&mut self) {
        for b in self.bars.drain(..) {
            b.bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }

    fn begin(&mut self, multi: &MultiProgress, phase: Phase, total: usize) {
        let style = ProgressStyle::with_template(
            "{prefix:>5.bold} [{bar:20.cyan/blue}] {pos:>4}/{len:<4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(total as u64).with_style(style));
        bar.set_prefix(phase.to_string());
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bars.push(Bar {
            phase,
            bar,
            epochs: (phase.trains() && total > 0).then_some(total),
            epochs_done: 0,
            epoch_seen: false,
            last_done: 0,
            first_step: None,
            steps_since_first: 0,
        });
    }
}

impl Bar {
    /// Takes a step event: updates the bar and returns its message.
    fn step(&mut self, done: usize, total: usize, shown: Shown) -> String {
        let new_steps = if done < self.last_done {
            // A new pass (epoch) over the data began.
            if !self.epoch_seen {
                self.epochs_done += 1;
            }
            done
        } else {
            done - self.last_done
        };
        self.epoch_seen = false;
        self.last_done = done;
        // Time per step, measured from the end of the first step so that setting up does not
        // count; what happens between epochs (evaluation, checkpoints) does.
        match self.first_step {
            None => self.first_step = Some(Instant::now()),
            Some(_) => self.steps_since_first += new_steps,
        }
        let epochs = self.epochs.filter(|&e| e > 0);

        let mut msg = Vec::new();
        if let Some(e) = epochs {
            msg.push(format!("epoch {}/{e}", (self.epochs_done + 1).min(e)));
        }
        if let (Some(first), 1..) = (self.first_step, self.steps_since_first) {
            let per_step = first.elapsed().as_secs_f64() / self.steps_since_first as f64;
            let epochs_left = epochs.map_or(0, |e| e.saturating_sub(self.epochs_done + 1));
            let steps_left = total.saturating_sub(done) + epochs_left * total;
            msg.push(format!("ETA {}", duration(per_step * steps_left as f64)));
        }
        if let Some(loss) = shown.loss {
            msg.push(format!("loss {loss:.4}"));
        }
        if let Some(acc) = shown.accuracy {
            msg.push(format!("acc {:.1}%", acc * 100.0));
        }
        if let Some(lr) = shown.lr {
            msg.push(if lr != 0.0 && lr.abs() < 1e-3 {
                format!("lr {lr:.2e}")
            } else {
                format!("lr {lr:.4}")
            });
        }
        let msg = msg.join("  ");
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(msg.clone());
        msg
    }
}

/// The line printed when epoch `epoch` of `epochs` ends.
fn epoch_line(
    phase: Phase,
    (epoch, epochs): (usize, usize),
    scores: &EpochScores,
    seconds: f64,
) -> String {
    let mut line = format!("{phase} epoch {epoch}/{epochs}");
    line.push_str(&format!("  train loss {:.4}", scores.train_loss));
    line.push_str(&format!(" acc {:.2}%", scores.train_accuracy * 100.0));
    if let Some(v) = scores.test_nll {
        line.push_str(&format!("  test nll {v:.4}"));
    }
    if let Some(v) = scores.test_accuracy {
        line.push_str(&format!(" acc {:.2}%", v * 100.0));
    }
    line.push_str(&format!("  ({})", duration(seconds)));
    line
}

/// Seconds for people: `42s`, `3m05s`, `1h02m`.
fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 if seconds < 10.0 => format!("{seconds:.1}s"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A training step as the tests send it: loss 0.5, accuracy 25%, rate 1e-4.
    fn step(bar: &mut Bar, done: usize, total: usize) -> String {
        let shown = Shown {
            loss: Some(0.5),
            accuracy: Some(0.25),
            lr: Some(0.0001),
        };
        bar.step(done, total, shown)
    }

    /// A view that draws nowhere, with a bar for `phase` begun with `total`.
    fn begun(phase: Phase, total: usize) -> ProgressView {
        let mut view = ProgressView::with_target(Some(ProgressDrawTarget::hidden()));
        view.event(&Event::Begin { phase, total });
        view
    }

    fn scores(train_loss: f64, train_accuracy: f64) -> EpochScores {
        EpochScores {
            train_loss,
            train_accuracy,
            test_nll: None,
            test_accuracy: None,
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(3.21), "3.2s");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(duration(f64::NAN), "?");
    }

    #[test]
    fn steps_show_epoch_loss_accuracy_lr_and_time_left() {
        let mut view = begun(Phase::Train, 3);
        let bar = &mut view.bars[0];
        let first = step(bar, 1, 10);
        assert_eq!(first, "epoch 1/3  loss 0.5000  acc 25.0%  lr 1.00e-4");
        let second = step(bar, 2, 10);
        assert!(second.starts_with("epoch 1/3  ETA "), "{second}");
        // A new pass without an epoch event still counts as the next epoch.
        let next = step(bar, 1, 10);
        assert!(next.starts_with("epoch 2/3  ETA "), "{next}");
        view.event(&Event::Epoch {
            epoch: 2,
            epochs: 3,
            scores: scores(0.1, 0.9),
            seconds: 1.0,
        });
        let third = step(&mut view.bars[0], 1, 10);
        assert!(third.starts_with("epoch 3/3  ETA "), "{third}");
    }

    #[test]
    fn single_pass_phases_have_no_epochs() {
        let mut view = begun(Phase::Bn, 5);
        let msg = view.bars[0].step(1, 5, Shown::default());
        assert_eq!(msg, "");
        let msg = view.bars[0].step(2, 5, Shown::default());
        assert!(msg.starts_with("ETA "), "{msg}");
    }

    #[test]
    fn any_event_sequence_is_taken() {
        // The loader hands on only events that parse; the others never reach the view.
        let wire = [
            json!({"event": "step", "phase": "eval", "done": 1, "total": 2}),
            json!({"event": "message", "text": "hello"}),
            json!({"event": "epoch"}),
            json!({"event": "end", "phase": "never-begun"}),
            json!({"event": "step", "phase": "eval"}),
            json!({"event": 3}),
            json!([1, 2]),
            json!({"event": "begin"}),
            json!({"event": "end", "phase": "eval"}),
        ];
        let mut events: Vec<Event> = wire
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect();
        assert_eq!(events.len(), 3, "{events:?}");
        // An epoch with no bar, and the end of a phase that never began.
        events.push(Event::Epoch {
            epoch: 1,
            epochs: 1,
            scores: scores(0.5, 0.5),
            seconds: 0.5,
        });
        events.push(Event::End {
            phase: Phase::Segment,
        });
        for enabled in [None, Some(ProgressDrawTarget::hidden())] {
            let mut view = ProgressView::with_target(enabled);
            for e in &events {
                view.event(e);
            }
            view.finish();
            assert!(view.bars.is_empty());
        }
    }

    #[test]
    fn epoch_lines_show_what_is_known() {
        let line = epoch_line(Phase::Curve, (2, 5), &scores(0.25, 0.5), 75.0);
        assert_eq!(
            line,
            "curve epoch 2/5  train loss 0.2500 acc 50.00%  (1m15s)"
        );
    }
}
