//! `modeconn predict`.

use std::path::PathBuf;

use modeconn_runtime::bundle::Kind;
use modeconn_runtime::ensemble::{CALIBRATION_BINS, brier_score, calibration_error};
use modeconn_runtime::{Ensemble, EnsembleOptions, Member, Runtime, Sampling, npy};
use ndarray::{Array2, Axis, Ix1, Ix2};
use serde_json::json;

/// Arguments of `predict`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("sampling").args(["at", "grid", "uniform", "arc_uniform", "members", "randomized"])))]
pub struct Args {
    /// The bundle file.
    bundle: PathBuf,
    /// Input batch: float32 .npy of the bundle's input shape.
    #[arg(long)]
    input: PathBuf,
    /// Points of the curve, e.g. `0,0.25,0.5`.
    #[arg(long, value_name = "T,T,...")]
    at: Option<String>,
    /// M equally spaced points from 0 to 1 (the default for curves, with M = 5).
    #[arg(long, value_name = "M")]
    grid: Option<usize>,
    /// N points drawn uniformly in t.
    #[arg(long, value_name = "N")]
    uniform: Option<usize>,
    /// N points drawn uniformly in arc length along the curve.
    #[arg(long, value_name = "N")]
    arc_uniform: Option<usize>,
    /// Members of a snapshot set: `all` (the default) or `I,J,...`.
    #[arg(long, value_name = "all|I,J,...")]
    members: Option<String>,
    /// One member per sample, drawn from the OS CSPRNG (or from --seed) over a grid of
    /// --randomized-grid points of a curve, or over the members of a set.
    #[arg(long)]
    randomized: bool,
    /// Grid size for --randomized on a curve.
    #[arg(long, value_name = "R", default_value_t = 21)]
    randomized_grid: usize,
    /// Seed for --uniform, --arc-uniform and --randomized.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    runtime: super::RuntimeArgs,
    /// Write mean probabilities, float32 `[batch, classes]`.
    #[arg(long, value_name = "P.npy")]
    out: Option<PathBuf>,
    /// Write each member's probabilities, float32 `[members, batch, classes]`.
    #[arg(long, value_name = "PM.npy")]
    per_member: Option<PathBuf>,
    /// int64 labels `[batch]`: report accuracy and mean NLL.
    #[arg(long, value_name = "Y.npy")]
    labels: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Also time the prediction: run it N more times after the first (which makes the
    /// sessions) and report the wall time of those runs (`seconds`: median, min, max).
    #[arg(long, value_name = "N", default_value_t = 0)]
    repeat: usize,
}

fn sampling(args: &Args, kind: Kind) -> anyhow::Result<Sampling> {
    let seed = args.seed.unwrap_or(0);
    Ok(if let Some(at) = &args.at {
        Sampling::At(super::parse_list(at, "t value")?)
    } else if let Some(m) = args.grid {
        Sampling::Grid(m)
    } else if let Some(n) = args.uniform {
        Sampling::Uniform { n, seed }
    } else if let Some(n) = args.arc_uniform {
        Sampling::ArcUniform { n, seed }
    } else if let Some(m) = &args.members {
        if m.trim() == "all" {
            Sampling::AllMembers
        } else {
            Sampling::Members(super::parse_list(m, "member index")?)
        }
    } else if args.randomized {
        Sampling::Randomized {
            grid: args.randomized_grid,
            seed: args.seed,
        }
    } else {
        match kind {
            Kind::Curve => Sampling::Grid(5),
            Kind::Snapshots => Sampling::AllMembers,
        }
    })
}

/// Runs `predict`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = super::open_bundle(&args.bundle)?;
    let sampling = sampling(&args, bundle.metadata().kind)?;
    if args.per_member.is_some() && sampling.is_per_sample() {
        anyhow::bail!(
            "--per-member is not available with --randomized: each sample has its own member"
        );
    }
    let input = npy::read::<f32>(&args.input)?;
    let labels = match &args.labels {
        Some(p) => Some(
            npy::read::<i64>(p)?
                .into_dimensionality::<Ix1>()
                .map_err(|_| {
                    anyhow::anyhow!("{}: labels must be a 1-D int64 array", p.display())
                })?,
        ),
        None => None,
    };
    let runtime = Runtime::new(args.runtime.options()?)?;
    let ensemble = Ensemble::new(
        &runtime,
        bundle,
        EnsembleOptions {
            static_budget: args.runtime.static_bytes(),
            ..EnsembleOptions::default()
        },
    )?;
    let started = std::time::Instant::now();
    let prediction = ensemble.predict(input.view(), &sampling, args.per_member.is_some())?;
    let first = started.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let started = std::time::Instant::now();
        ensemble.predict(input.view(), &sampling, args.per_member.is_some())?;
        times.push(started.elapsed().as_secs_f64());
    }
    let probs = &prediction.probabilities;
    if let Some(p) = &args.out {
        npy::write(p, &probs.view().into_dyn())
            .map_err(|e| super::about(e, p, || format!("cannot write {}", p.display())))?;
    }
    if let (Some(p), Some(all)) = (&args.per_member, &prediction.per_member) {
        npy::write(p, &all.view().into_dyn())
            .map_err(|e| super::about(e, p, || format!("cannot write {}", p.display())))?;
    }
    let scores = labels.map(|y| score(probs, y.view())).transpose()?;

    let members: Vec<serde_json::Value> = prediction
        .members
        .iter()
        .map(|m| match m {
            Member::T(t) => json!(t),
            Member::Index(i) => json!(i),
        })
        .collect();
    let mut report = json!({
        "provider": prediction.provider.as_str(),
        "kind": ensemble.bundle().metadata().kind.as_str(),
        "batch": probs.nrows(),
        "classes": probs.ncols(),
        "mean_entropy": prediction.entropy.mean().unwrap_or(0.0),
        "static_members": ensemble.static_members(),
    });
    if let Some(d) = &prediction.disagreement {
        report["mean_disagreement"] = json!(d.mean().unwrap_or(0.0));
    }
    if !prediction.per_sample {
        report["members"] = json!(members);
    }
    if let Some(s) = &scores {
        report["accuracy"] = json!(s.accuracy);
        report["nll"] = json!(s.nll);
        report["ece"] = json!(s.ece);
        report["brier"] = json!(s.brier);
    }
    if !times.is_empty() {
        times.sort_by(f64::total_cmp);
        report["seconds"] = json!({
            "first": first, "repeats": times.len(), "median": times[times.len() / 2],
            "min": times[0], "max": times[times.len() - 1],
        });
    }
    // Said once, and only when the command succeeded: a failure's one line is its error.
    super::note_fallback(&runtime);
    if args.json {
        println!("{report}");
        return Ok(());
    }
    if prediction.per_sample {
        println!(
            "{} samples, one randomised member each, on {}",
            probs.nrows(),
            prediction.provider
        );
    } else {
        let shown: Vec<String> = prediction
            .members
            .iter()
            .map(|m| match m {
                Member::T(t) => format!("{t:.4}"),
                Member::Index(i) => i.to_string(),
            })
            .collect();
        let what = if ensemble.bundle().metadata().kind == Kind::Curve {
            "t"
        } else {
            "members"
        };
        println!(
            "{} members ({what} = {}) on {}",
            shown.len(),
            shown.join(", "),
            prediction.provider
        );
    }
    println!(
        "batch {}, {} classes, mean entropy {:.4}",
        probs.nrows(),
        probs.ncols(),
        prediction.entropy.mean().unwrap_or(0.0)
    );
    if let Some(s) = &scores {
        println!(
            "accuracy {:.4}, mean NLL {:.4}, ECE {:.4} ({CALIBRATION_BINS} bins), Brier {:.4}",
            s.accuracy, s.nll, s.ece, s.brier
        );
    }
    if args.out.is_none() && !args.json {
        let top: Vec<String> = probs
            .axis_iter(Axis(0))
            .take(10)
            .map(|r| {
                let (c, p) = r
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                format!("{c} ({p:.3})")
            })
            .collect();
        println!(
            "top classes: {}{}",
            top.join(", "),
            if probs.nrows() > 10 { ", ..." } else { "" }
        );
    }
    Ok(())
}

/// How probabilities score against labels.
struct Scores {
    accuracy: f64,
    nll: f64,
    ece: f64,
    brier: f64,
}

/// Accuracy, mean negative log-likelihood, expected calibration error and Brier score of
/// probabilities against labels.
fn score(probs: &Array2<f32>, labels: ndarray::ArrayView1<'_, i64>) -> anyhow::Result<Scores> {
    let probs = probs.view().into_dimensionality::<Ix2>()?;
    anyhow::ensure!(
        labels.len() == probs.nrows(),
        "labels hold {} entries for a batch of {}",
        labels.len(),
        probs.nrows()
    );
    let classes = probs.ncols() as i64;
    let mut correct = 0usize;
    let mut nll = 0.0f64;
    for (row, &y) in probs.axis_iter(Axis(0)).zip(labels.iter()) {
        anyhow::ensure!(
            (0..classes).contains(&y),
            "label {y} is outside 0..{classes}"
        );
        let top = row
            .iter()
            .enumerate()
            .fold(
                (0usize, f32::MIN),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        correct += usize::from(top as i64 == y);
        nll -= f64::from(row[y as usize]).max(f64::MIN_POSITIVE).ln();
    }
    let n = probs.nrows() as f64;
    let labels = labels.to_vec();
    Ok(Scores {
        accuracy: correct as f64 / n,
        nll: nll / n,
        ece: calibration_error(&probs, &labels, CALIBRATION_BINS)?,
        brier: brier_score(&probs, &labels)?,
    })
}
