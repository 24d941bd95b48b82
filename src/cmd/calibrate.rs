//! `modeconn calibrate`: the softmax temperature of a serving mode fitted on held-out data.
//!
//! The temperature is the one `modeconn.temperature` means: every member's probabilities are
//! `softmax(logits / T)`, and an ensemble averages them. It is fitted by minimising the NLL
//! of what the mode answers on held-out samples: the ensemble's mean probabilities for
//! `ensemble` and `at`, and for `randomized` and `keyed` the expected NLL of one member drawn
//! from the grid. The samples come from the trainer plugin (a `samples` job, so they are split
//! as training split them); the logits come from the runtime.

use std::path::PathBuf;

use modeconn_jobs::{DataSplit, Job, Report, SamplesJob, defaults};
use modeconn_runtime::ensemble::{CALIBRATION_BINS, brier_score, calibration_error, reliability};
use modeconn_runtime::{Ensemble, EnsembleOptions, Runtime, npy};
use ndarray::{Array2, Array3, ArrayView1, ArrayView3, Axis, Ix1};
use serde_json::{Value, json};

use super::mode::ModeArgs;
use crate::plugin::{PluginArgs, run_job};

/// Arguments of `calibrate`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("fit_on").required(true).args(["held_out", "validation"])))]
pub struct Args {
    /// The bundle: a curve or a snapshot set.
    bundle: PathBuf,
    /// The data: `digits`, an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    #[arg(long, value_name = "D")]
    data: String,
    /// Fit on this many training samples, held out as training holds them out (give the
    /// `--held-out` and `--seed` the bundle was trained with, so that these samples were not
    /// trained on).
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    /// Fit on the first N samples of the test split instead, and report on the rest of it:
    /// for networks trained on every training sample.
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    mode: ModeArgs,
    /// The calibrated bundle: the same tensors, with the fitted temperature.
    #[arg(long, value_name = "CALIBRATED.safetensors")]
    out: PathBuf,
    /// Also write the whole report, one JSON object, to this file.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then beside this executable).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// The smallest and largest temperature searched.
const RANGE: (f64, f64) = (0.01, 100.0);

/// How the members' logits make the mode's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mix {
    /// The mean of the members' probabilities (`ensemble`, `at`).
    Mean,
    /// One member per sample, drawn uniformly (`randomized`, `keyed`): scores are expectations
    /// over the members.
    Draw,
}

/// `log softmax(z / t)` of one row, in double precision.
fn log_softmax(z: ArrayView1<'_, f32>, t: f64) -> Vec<f64> {
    let scaled: Vec<f64> = z.iter().map(|&v| f64::from(v) / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + scaled.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    scaled.iter().map(|v| v - lse).collect()
}

/// The mean NLL of the mode's answers at temperature `t`.
fn nll(logits: &ArrayView3<'_, f32>, labels: &[i64], t: f64, mix: Mix) -> f64 {
    let (m, n, _) = logits.dim();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate().take(n) {
        let y = y as usize;
        let per: Vec<f64> = (0..m)
            .map(|k| {
                let row = logits.index_axis(Axis(0), k);
                let row = row.row(i);
                log_softmax(row, t)[y]
            })
            .collect();
        total -= match mix {
            Mix::Draw => per.iter().sum::<f64>() / m as f64,
            Mix::Mean => {
                let max = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                max + (per.iter().map(|v| (v - max).exp()).sum::<f64>() / m as f64).ln()
            }
        };
    }
    total / n.max(1) as f64
}

/// The temperature in [`RANGE`] that minimises the NLL: the best of a grid even in log t,
/// then a golden-section search between its neighbours.
fn fit(logits: &ArrayView3<'_, f32>, labels: &[i64], mix: Mix) -> f64 {
    let (lo, hi) = (RANGE.0.ln(), RANGE.1.ln());
    let steps = 160;
    let at = |k: usize| lo + (hi - lo) * k as f64 / steps as f64;
    let f = |u: f64| nll(logits, labels, u.exp(), mix);
    let best = (0..=steps)
        .map(|k| (k, f(at(k))))
        .fold(
            (0, f64::INFINITY),
            |b, (k, v)| if v < b.1 { (k, v) } else { b },
        )
        .0;
    let (mut a, mut b) = (at(best.saturating_sub(1)), at((best + 1).min(steps)));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Probabilities `[members, batch, classes]` at temperature `t`.
fn probabilities(logits: &ArrayView3<'_, f32>, t: f64) -> Array3<f32> {
    let mut out = Array3::<f32>::zeros(logits.dim());
    for (mut o, z) in out.outer_iter_mut().zip(logits.outer_iter()) {
        for (mut orow, zrow) in o.rows_mut().into_iter().zip(z.rows()) {
            let lp = log_softmax(zrow, t);
            for (v, l) in orow.iter_mut().zip(lp) {
                *v = l.exp() as f32;
            }
        }
    }
    out
}

/// NLL, ECE, Brier score and accuracy of the mode's answers at temperature `t`.
fn scores(logits: &ArrayView3<'_, f32>, labels: &[i64], t: f64, mix: Mix) -> anyhow::Result<Value> {
    let probs = probabilities(logits, t);
    let one = |p: &Array2<f32>| -> anyhow::Result<[f64; 3]> {
        let correct = p
            .rows()
            .into_iter()
            .zip(labels)
            .filter(|(r, y)| modeconn_runtime::ensemble::argmax(r.iter()) as i64 == **y)
            .count();
        Ok([
            calibration_error(&p.view(), labels, CALIBRATION_BINS)?,
            brier_score(&p.view(), labels)?,
            correct as f64 / labels.len().max(1) as f64,
        ])
    };
    // The reliability diagram: of the mean, or of every draw's answers pooled.
    let bins = match mix {
        Mix::Mean => {
            let mean = probs.mean_axis(Axis(0)).unwrap_or_default();
            reliability(&mean.view(), labels, CALIBRATION_BINS)?
        }
        Mix::Draw => {
            let (m, n, c) = probs.dim();
            let pooled = probs.view().into_shape_with_order((m * n, c))?;
            let repeated: Vec<i64> = (0..m).flat_map(|_| labels.iter().copied()).collect();
            reliability(&pooled, &repeated, CALIBRATION_BINS)?
        }
    };
    let [ece, brier, accuracy] = match mix {
        Mix::Mean => one(&probs.mean_axis(Axis(0)).unwrap_or_default())?,
        Mix::Draw => {
            let mut sum = [0.0; 3];
            for p in probs.outer_iter() {
                let s = one(&p.to_owned())?;
                for (a, b) in sum.iter_mut().zip(s) {
                    *a += b;
                }
            }
            sum.map(|v| v / probs.len_of(Axis(0)).max(1) as f64)
        }
    };
    Ok(
        json!({"nll": nll(logits, labels, t, mix), "ece": ece, "brier": brier,
               "accuracy": accuracy, "reliability": bins}),
    )
}

/// Runs `calibrate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.held_out.unwrap_or(1) >= 1,
        "--held-out must be at least 1"
    );
    anyhow::ensure!(
        args.validation.unwrap_or(1) >= 1,
        "--validation must be at least 1"
    );
    let runtime_device: modeconn_runtime::Device = args.device.parse()?;
    let bundle = super::open_bundle(&args.bundle)?;
    let meta = bundle.metadata().clone();
    let resolved = args.mode.resolve(&args.bundle, meta.kind, meta.points)?;
    let mix = if args.mode.mode.is_per_sample() {
        Mix::Draw
    } else {
        Mix::Mean
    };
    modeconn_runtime::fs::check_writable(&args.out).map_err(|e| {
        super::about(e, &args.out, || {
            format!("cannot write {}", args.out.display())
        })
    })?;

    // The held-out samples and the test split, written by the trainer as it splits them.
    let scratch = super::Scratch::new("calibrate");
    let split = |held_out: Option<usize>,
                 name: &str|
     -> anyhow::Result<(Array2<f32>, Vec<usize>, Vec<i64>)> {
        let job = Job::Samples(SamplesJob {
            data: args.data.clone(),
            split: DataSplit::Test,
            samples: None,
            held_out,
            limit: args.limit,
            seed: args.seed,
            out: scratch.path().join(name),
        });
        let Report::Samples(r) = run_job(&args.plugin, &job)? else {
            anyhow::bail!("the trainer answered a samples job with another report");
        };
        let x = npy::read::<f32>(&r.x)?;
        let shape = x.shape().to_vec();
        let features: usize = shape[1..].iter().product();
        let rows = x.into_shape_with_order((shape[0], features))?;
        let y = npy::read::<i64>(&r.y)?
            .into_dimensionality::<Ix1>()?
            .to_vec();
        Ok((rows, shape, y))
    };
    let (held, test) = match (args.held_out, args.validation) {
        (Some(n), _) => (split(Some(n), "held-out")?, split(None, "test")?),
        (None, v) => {
            let all = split(None, "test")?;
            let n = v.unwrap_or(1);
            let total = all.2.len();
            anyhow::ensure!(
                n < total,
                "--validation {n}: the test split has {total} samples, and some must be left \
                 to report on"
            );
            let part = |range: std::ops::Range<usize>| {
                let rows = all.0.slice(ndarray::s![range.clone(), ..]).to_owned();
                let mut shape = all.1.clone();
                shape[0] = range.len();
                (rows, shape, all.2[range].to_vec())
            };
            (part(0..n), part(n..total))
        }
    };
    let fitted_on = match args.validation {
        Some(n) => format!("the first {n} samples of the test split"),
        None => format!("{} held-out training samples", held.2.len()),
    };

    let mut options = modeconn_runtime::RuntimeOptions::default().with_device(runtime_device);
    if let Some(lib) = &args.ort_lib {
        options = options.with_library(lib);
    }
    let runtime = Runtime::new(options)?;
    let ensemble = Ensemble::new(&runtime, bundle, EnsembleOptions::default())?;
    let logits =
        |(rows, shape, _): &(Array2<f32>, Vec<usize>, Vec<i64>)| -> anyhow::Result<Array3<f32>> {
            let input = rows.clone().into_shape_with_order(ndarray::IxDyn(shape))?;
            Ok(ensemble.logits(input.view(), &resolved.pool)?.1)
        };
    let (held_logits, test_logits) = (logits(&held)?, logits(&test)?);
    let before = meta.temperature;
    let after = fit(&held_logits.view(), &held.2, mix);

    let mut new_meta = meta.clone();
    new_meta.temperature = after;
    ensemble
        .bundle()
        .rewritten(new_meta)?
        .write(&args.out)
        .map_err(|e| {
            super::about(e, &args.out, || {
                format!("cannot write {}", args.out.display())
            })
        })?;

    let part = |l: &Array3<f32>, y: &[i64]| -> anyhow::Result<Value> {
        Ok(json!({
            "samples": y.len(),
            "before": scores(&l.view(), y, before, mix)?,
            "after": scores(&l.view(), y, after, mix)?,
        }))
    };
    let report = json!({
        "command": "calibrate",
        "bundle": args.bundle,
        "out": args.out,
        "mode": args.mode.mode.as_str(),
        "members": resolved.describe,
        "bins": CALIBRATION_BINS,
        "fitted_on": fitted_on,
        "temperature": {"before": before, "after": after},
        "held_out": part(&held_logits, &held.2)?,
        "test": part(&test_logits, &test.2)?,
    });
    if let Some(path) = &args.json {
        super::write_json(path, &report)?;
    }
    super::note_fallback(&runtime);
    println!(
        "temperature {after:.4} (was {before}), fitted on {fitted_on} for mode `{}`",
        args.mode.mode.as_str()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>9}",
        "", "NLL", "ECE", "Brier", "accuracy"
    );
    let held_name = if args.validation.is_some() {
        "validation"
    } else {
        "held-out"
    };
    let test_name = if args.validation.is_some() {
        "test, the rest"
    } else {
        "test"
    };
    for (name, key) in [(held_name, "held_out"), (test_name, "test")] {
        for when in ["before", "after"] {
            let s = &report[key][when];
            let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<22} {:>8.4} {:>8.4} {:>8.4} {:>8.2}%",
                format!("{name}, {when}"),
                f("nll"),
                f("ece"),
                f("brier"),
                100.0 * f("accuracy")
            );
        }
    }
    println!("wrote {}", args.out.display());
    let held_accuracy = report["held_out"]["before"]["accuracy"]
        .as_f64()
        .unwrap_or(0.0);
    if let Some(held_out) = args.held_out
        && (held_accuracy >= 1.0 || after < 2.0 * RANGE.0 || after > RANGE.1 / 2.0)
    {
        eprintln!(
            "note: {}; were the held-out samples trained on? Train with --held-out {} --seed {} \
             and calibrate with the same, so that they were not",
            if held_accuracy >= 1.0 {
                "every held-out sample is classified right, so the fit can only sharpen".to_string()
            } else {
                format!(
                    "the temperature reached the end of the range searched ({} to {})",
                    RANGE.0, RANGE.1
                )
            },
            held_out,
            args.seed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// Every sample's top logit is right, so the NLL falls as t falls: the fit sharpens, to
    /// where the NLL is 0 in double precision (below t = 0.07 for a margin of 2).
    #[test]
    fn sharper_is_better_when_every_answer_is_right() {
        let logits = Array3::from_shape_vec((1, 2, 2), vec![2.0f32, 0.0, 0.0, 2.0]).expect("shape");
        let t = fit(&logits.view(), &[0, 1], Mix::Mean);
        assert!(t < 0.1, "{t}");
        assert!(nll(&logits.view(), &[0, 1], t, Mix::Mean) < 1e-15);
    }

    /// Over-confident logits (right 3 times in 4 at probability near 1) are softened: the fit
    /// is the t where the softmax of the scaled logits gives 3/4 to the top class.
    #[test]
    fn over_confidence_is_softened_to_the_accuracy() {
        let z = 10.0f32;
        let logits =
            Array3::from_shape_vec((1, 4, 2), vec![z, 0.0, z, 0.0, z, 0.0, z, 0.0]).expect("shape");
        let t = fit(&logits.view(), &[0, 0, 0, 1], Mix::Mean);
        // softmax(z / t)[0] = 3/4  <=>  z / t = ln 3.
        let expected = f64::from(z) / 3f64.ln();
        assert!((t - expected).abs() < 1e-4 * expected, "{t} vs {expected}");
        let s = scores(&logits.view(), &[0, 0, 0, 1], t, Mix::Mean).expect("scores");
        assert!(s["ece"].as_f64().expect("ece") < 1e-6, "{s}");
    }

    /// The NLL of a drawn member is the mean of the members' NLLs; that of the mean is lower
    /// (Jensen), and both agree for a single member.
    #[test]
    fn the_two_mixes_score_as_their_modes_answer() {
        let logits = Array3::from_shape_vec((2, 1, 2), vec![1.0f32, 0.0, 0.0, 1.0]).expect("shape");
        let draw = nll(&logits.view(), &[0], 1.0, Mix::Draw);
        let mean = nll(&logits.view(), &[0], 1.0, Mix::Mean);
        let p = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((draw - (-(p.ln()) - (1.0 - p).ln()) / 2.0).abs() < 1e-12);
        assert!((mean - 2f64.ln()).abs() < 1e-12, "{mean}");
        let one = logits.slice(ndarray::s![0..1, .., ..]).to_owned();
        assert!(
            (nll(&one.view(), &[0], 1.0, Mix::Draw) - nll(&one.view(), &[0], 1.0, Mix::Mean)).abs()
                < 1e-12
        );
    }
}
