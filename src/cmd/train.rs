//! `modeconn train`, and what every training command shares: the plugin options, the training
//! options, running a job through the plugin with progress bars, and the summary of a report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::plugin::Trainer;

/// Arguments of `train`.
#[derive(clap::Args)]
pub struct Args {
    /// Architecture, e.g. `preresnet20`, `vgg16`, `mlp`.
    #[arg(long)]
    arch: String,
    /// Hidden layer sizes of `mlp`, e.g. `256,128`.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    hidden: Option<Vec<i64>>,
    /// Initial learning rate [trainer default: 0.05].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the bundle (a snapshot set of one member).
    #[arg(long, value_name = "END.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `train`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = Map::new();
    job.insert("command".into(), json!("train"));
    job.insert("arch".into(), json!(args.arch));
    insert(&mut job, "hidden", args.hidden);
    insert(&mut job, "lr", args.lr);
    args.training.insert_into(&mut job)?;
    job.insert("out".into(), json!(path_text(&args.out)?));
    let report = run_job(&args.plugin, &Value::Object(job))?;
    print_summary(&report);
    Ok(())
}

/// Which trainer plugin runs the job, and how much it shows.
#[derive(clap::Args)]
pub struct PluginArgs {
    /// The trainer plugin, libmodeconn_trainer.so (default: MODECONN_TRAINER, then beside
    /// this executable).
    #[arg(long, value_name = "PATH")]
    pub trainer: Option<PathBuf>,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options every training command shares. Unset options take the trainer's defaults.
#[derive(clap::Args)]
pub struct TrainingArgs {
    /// The data: `digits` (embedded), an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    #[arg(long, value_name = "D")]
    data: String,
    /// Number of epochs.
    #[arg(long, value_name = "N")]
    epochs: usize,
    /// Weight decay, the L2 penalty wd/2 ||w||^2 [trainer default: 5e-4].
    #[arg(long, allow_negative_numbers = true)]
    wd: Option<f64>,
    /// SGD momentum [trainer default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    /// Mini-batch size [trainer default: 128].
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Seed of every random choice [trainer default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda or auto [trainer default: auto, CUDA when available].
    #[arg(long)]
    device: Option<String>,
    /// Take this many training samples as the test split (for model selection).
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Augment the training data (default: as the data set prescribes).
    #[arg(long, overrides_with = "no_augment")]
    augment: bool,
    /// Do not augment the training data.
    #[arg(long, overrides_with = "augment")]
    no_augment: bool,
    /// Checkpoint file, written after every epoch [default: the output path with `.ckpt`
    /// appended].
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint if there is one.
    #[arg(long)]
    resume: bool,
}

impl TrainingArgs {
    /// Adds the options that were given to a job, under the trainer's field names.
    pub fn insert_into(&self, job: &mut Map<String, Value>) -> anyhow::Result<()> {
        job.insert("data".into(), json!(self.data));
        job.insert("epochs".into(), json!(self.epochs));
        insert(job, "wd", self.wd);
        insert(job, "momentum", self.momentum);
        insert(job, "batch_size", self.batch_size);
        insert(job, "seed", self.seed);
        insert(job, "device", self.device.as_deref());
        insert(job, "held_out", self.held_out);
        insert(job, "limit", self.limit);
        let augment = match (self.augment, self.no_augment) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        insert(job, "augment", augment);
        if let Some(p) = &self.checkpoint {
            job.insert("checkpoint".into(), json!(path_text(p)?));
        }
        if self.resume {
            job.insert("resume".into(), json!(true));
        }
        Ok(())
    }
}

/// Adds `key: value` to a job when `value` is set.
pub fn insert<T: Into<Value>>(job: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        job.insert(key.into(), v.into());
    }
}

/// A path as the job's JSON holds it.
pub fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8", path.display()))
}

/// Loads the plugin and runs `job`, drawing progress unless told not to or stderr is not a
/// terminal. Returns the report of a successful run; an error report is an error.
pub fn run_job(plugin: &PluginArgs, job: &Value) -> anyhow::Result<Value> {
    let trainer = Trainer::load(plugin.trainer.as_deref())?;
    let mut view = ProgressView::new(!plugin.quiet && std::io::stderr().is_terminal());
    let result = trainer.run(job, &mut |event| view.event(event));
    view.finish();
    result
}

/// Prints a report for people: where the bundle went, then every number it holds, one per
/// line (long lists and tables are counted, not printed).
pub fn print_summary(report: &Value) {
    if let Some(out) = report.get("out").and_then(Value::as_str) {
        println!("wrote {out}");
    }
    let mut lines = BTreeMap::new();
    if let Some(map) = report.as_object() {
        for (key, value) in map {
            if !matches!(key.as_str(), "ok" | "command" | "out") {
                flatten(key, value, &mut lines);
            }
        }
    }
    let width = lines.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in lines {
        println!("{key:<width$}  {value}");
    }
}

/// The lines of `print_summary` for one value, keys joined with dots.
fn flatten(key: &str, value: &Value, lines: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}.{k}"), v, lines);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_number) && items.len() <= 8 => {
            let shown: Vec<String> = items.iter().map(number).collect();
            lines.insert(key.into(), shown.join(" "));
        }
        Value::Array(items) => {
            lines.insert(key.into(), format!("({} entries)", items.len()));
        }
        Value::Number(_) => {
            lines.insert(key.into(), number(value));
        }
        Value::String(s) => {
            lines.insert(key.into(), s.clone());
        }
        Value::Bool(b) => {
            lines.insert(key.into(), b.to_string());
        }
        Value::Null => {}
    }
}

/// A JSON number for people: integers as they are, others with four decimals.
fn number(v: &Value) -> String {
    match (v.as_i64(), v.as_u64(), v.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) if f != 0.0 && f.abs() < 1e-3 => format!("{f:.3e}"),
        (_, _, Some(f)) => format!("{f:.4}"),
        _ => v.to_string(),
    }
}

/// Progress bars for the trainer's events: one per running phase, with loss, accuracy,
/// learning rate and time left; epochs and messages are printed above them. Disabled, it
/// ignores every event.
pub struct ProgressView {
    multi: Option<MultiProgress>,
    phases: Vec<Phase>,
}

/// A running phase (`train`, `curve`, `fge`, `bn`, `eval`...).
struct Phase {
    name: String,
    bar: ProgressBar,
    /// `total` of the `begin` event: the phase's steps, or its epochs when steps count
    /// batches within an epoch.
    begin_total: usize,
    /// Epochs in the phase, once known.
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

impl ProgressView {
    /// A view that draws on stderr when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self::with_target(enabled.then(ProgressDrawTarget::stderr))
    }

    /// A view that draws on `target`, or ignores events when there is none.
    fn with_target(target: Option<ProgressDrawTarget>) -> Self {
        ProgressView {
            multi: target.map(MultiProgress::with_draw_target),
            phases: Vec::new(),
        }
    }

    /// Shows one event (a JSON object tagged by `"event"`).
    pub fn event(&mut self, event: &Value) {
        let Some(multi) = self.multi.clone() else {
            return;
        };
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("");
        let count = |key: &str| {
            event
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
        };
        match text("event") {
            "begin" => {
                let total = count("total").unwrap_or(0);
                self.begin(&multi, text("phase"), total);
            }
            "step" => {
                let (Some(done), Some(total)) = (count("done"), count("total")) else {
                    return;
                };
                let phase = text("phase");
                if !self.phases.iter().any(|p| p.name == phase) {
                    self.begin(&multi, phase, total);
                }
                if let Some(p) = self.phases.iter_mut().find(|p| p.name == phase) {
                    let _ = p.step(event, done, total);
                }
            }
            "epoch" => {
                let phase = self.phases.last_mut();
                let name = phase.as_ref().map_or("train", |p| p.name.as_str());
                let line = epoch_line(name, event);
                if let Some(p) = phase {
                    p.epochs = count("epochs").or(p.epochs);
                    p.epochs_done = count("epoch").unwrap_or(p.epochs_done + 1);
                    p.epoch_seen = true;
                }
                let _ = multi.println(line);
            }
            "message" => {
                let _ = multi.println(text("text"));
            }
            "end" => {
                let phase = text("phase");
                if let Some(i) = self.phases.iter().position(|p| p.name == phase) {
                    let p = self.phases.remove(i);
                    p.bar.finish_and_clear();
                    multi.remove(&p.bar);
                }
            }
            _ => {}
        }
    }

    /// Clears what is still drawn.
    pub fn finish(&mut self) {
        for p in self.phases.drain(..) {
            p.bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }

    fn begin(&mut self, multi: &MultiProgress, name: &str, total: usize) {
        let style = ProgressStyle::with_template(
            "{prefix:>5.bold} [{bar:20.cyan/blue}] {pos:>4}/{len:<4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(total as u64).with_style(style));
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(500));
        self.phases.push(Phase {
            name: name.to_string(),
            bar,
            begin_total: total,
            epochs: None,
            epochs_done: 0,
            epoch_seen: false,
            last_done: 0,
            first_step: None,
            steps_since_first: 0,
        });
    }
}

impl Phase {
    /// Takes a step event: updates the bar and returns its message.
    fn step(&mut self, event: &Value, done: usize, total: usize) -> String {
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
        // Steps that count batches within an epoch: `begin` counted epochs.
        let epochs = self
            .epochs
            .or((self.begin_total != total).then_some(self.begin_total))
            .filter(|&e| e > 0);

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
        let float = |key: &str| event.get(key).and_then(Value::as_f64);
        if let Some(loss) = float("loss") {
            msg.push(format!("loss {loss:.4}"));
        }
        if let Some(acc) = float("accuracy") {
            msg.push(format!("acc {:.1}%", acc * 100.0));
        }
        if let Some(lr) = float("lr") {
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

/// The line printed when an epoch ends.
fn epoch_line(phase: &str, event: &Value) -> String {
    let float = |key: &str| event.get(key).and_then(Value::as_f64);
    let int = |key: &str| event.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut line = format!("{phase} epoch {}/{}", int("epoch"), int("epochs"));
    if let Some(v) = float("train_loss") {
        line.push_str(&format!("  train loss {v:.4}"));
    }
    if let Some(v) = float("train_accuracy") {
        line.push_str(&format!(" acc {:.2}%", v * 100.0));
    }
    if let Some(v) = float("test_loss") {
        line.push_str(&format!("  test nll {v:.4}"));
    }
    if let Some(v) = float("test_accuracy") {
        line.push_str(&format!(" acc {:.2}%", v * 100.0));
    }
    if let Some(v) = float("seconds") {
        line.push_str(&format!("  ({})", duration(v)));
    }
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

    fn step(done: usize, total: usize) -> Value {
        json!({"event": "step", "phase": "train", "done": done, "total": total,
               "loss": 0.5, "accuracy": 0.25, "lr": 0.0001})
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
    fn numbers_read_well() {
        assert_eq!(number(&json!(3)), "3");
        assert_eq!(number(&json!(0.25)), "0.2500");
        assert_eq!(number(&json!(0.00001)), "1.000e-5");
        assert_eq!(number(&json!(0.0)), "0.0000");
    }

    #[test]
    fn reports_flatten_to_lines() {
        let mut lines = BTreeMap::new();
        let report = json!({"a": {"b": 1, "c": [0.5, 1.0]}, "rows": [{"t": 0}], "s": "x",
                            "n": null, "f": true});
        for (k, v) in report.as_object().expect("an object") {
            flatten(k, v, &mut lines);
        }
        let expected: BTreeMap<String, String> = [
            ("a.b", "1"),
            ("a.c", "0.5000 1.0000"),
            ("rows", "(1 entries)"),
            ("s", "x"),
            ("f", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn steps_show_epoch_loss_accuracy_lr_and_time_left() {
        let mut view = ProgressView::with_target(Some(ProgressDrawTarget::hidden()));
        view.event(&json!({"event": "begin", "phase": "train", "total": 3}));
        let phase = &mut view.phases[0];
        let first = phase.step(&step(1, 10), 1, 10);
        assert_eq!(first, "epoch 1/3  loss 0.5000  acc 25.0%  lr 1.00e-4");
        let second = phase.step(&step(2, 10), 2, 10);
        assert!(second.starts_with("epoch 1/3  ETA "), "{second}");
        // A new pass without an epoch event still counts as the next epoch.
        let next = phase.step(&step(1, 10), 1, 10);
        assert!(next.starts_with("epoch 2/3  ETA "), "{next}");
        view.event(
            &json!({"event": "epoch", "epoch": 2, "epochs": 3, "train_loss": 0.1,
                           "train_accuracy": 0.9, "seconds": 1.0}),
        );
        let third = view.phases[0].step(&step(1, 10), 1, 10);
        assert!(third.starts_with("epoch 3/3  ETA "), "{third}");
    }

    #[test]
    fn single_pass_phases_have_no_epochs() {
        let mut view = ProgressView::with_target(Some(ProgressDrawTarget::hidden()));
        view.event(&json!({"event": "begin", "phase": "bn", "total": 5}));
        let msg = view.phases[0].step(&json!({}), 1, 5);
        assert_eq!(msg, "");
        let msg = view.phases[0].step(&json!({}), 2, 5);
        assert!(msg.starts_with("ETA "), "{msg}");
    }

    #[test]
    fn any_event_sequence_is_taken() {
        let events = [
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
        for enabled in [None, Some(ProgressDrawTarget::hidden())] {
            let mut view = ProgressView::with_target(enabled);
            for e in &events {
                view.event(e);
            }
            view.finish();
            assert!(view.phases.is_empty());
        }
    }

    #[test]
    fn epoch_lines_show_what_is_known() {
        let line = epoch_line(
            "curve",
            &json!({"epoch": 2, "epochs": 5, "train_loss": 0.25, "train_accuracy": 0.5,
                    "seconds": 75.0}),
        );
        assert_eq!(
            line,
            "curve epoch 2/5  train loss 0.2500 acc 50.00%  (1m15s)"
        );
    }
}
