//! `modeconn attack`: a serving mode measured against attacks.
//!
//! The gradient attacks (FGSM, PGD, EOT-PGD, and PGD on a source for transfer) run in the
//! trainer plugin, which differentiates the bundle's networks at the members the attacker
//! targets. The score-based attacks (SPSA, Square) and every evaluation run here, through the
//! runtime, with the sampling of the mode: the defence is exactly what `predict` and `serve`
//! answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use modeconn_jobs::{
    AttackJob, Craft, DataSplit, Device, Event, GradientAttack, Job, Norm, Phase, Report, Target,
    defaults,
};
use modeconn_runtime::bundle::Kind;
use modeconn_runtime::curve::SeededRng;
use modeconn_runtime::{Ensemble, EnsembleOptions, Runtime, Sampling, npy};
use modeconn_server::config::Mode;

use super::mode::ModeArgs;
use ndarray::{Array2, Ix1};
use serde_json::{Value, json};

use crate::attack::blackbox::{self, SpsaSettings, SquareSettings};
use crate::attack::{self, Defence, Outcome, wilson};
use crate::plugin::{PluginArgs, run_job};
use crate::progress::ProgressView;

/// An attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackKind {
    /// One signed-gradient step of the budget's size.
    Fgsm,
    /// Projected gradient descent; against a random mode, one draw of its members per step.
    Pgd,
    /// PGD whose steps average the gradient over --eot-samples draws of the defence's members.
    EotPgd,
    /// PGD on a source model (--source, --source-mode), evaluated on the defence.
    Transfer,
    /// SPSA: gradients estimated from the defence's answers (score-based black box).
    Spsa,
    /// The Square attack: random square updates kept when the defence's margin falls (L∞).
    Square,
}

impl AttackKind {
    fn as_str(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::EotPgd => "eot-pgd",
            AttackKind::Transfer => "transfer",
            AttackKind::Spsa => "spsa",
            AttackKind::Square => "square",
        }
    }

    fn black_box(self) -> bool {
        matches!(self, AttackKind::Spsa | AttackKind::Square)
    }
}

/// The source model of transfer attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceMode {
    /// One point or member (--source-t, --source-members; the first endpoint by default).
    At,
    /// The mean of the listed points or members (a grid of 5 points, or every member, by
    /// default).
    Ensemble,
}

/// Arguments of `attack`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle defended: a curve or a snapshot set.
    bundle: PathBuf,
    /// The data: `digits`, an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    #[arg(long, value_name = "D")]
    data: String,
    /// Attack the first N samples of the split.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// The split attacked: test or train.
    #[arg(long, default_value = "test")]
    split: DataSplit,
    #[command(flatten)]
    mode: ModeArgs,
    /// `keyed`: the server's key, a file of 64 hex digits; without it a fresh key no one knows.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// `keyed`: round each value to a multiple of Q before hashing (the server's
    /// `keyed_quantum`).
    #[arg(long, value_name = "Q")]
    keyed_quantum: Option<f32>,
    /// Attacks, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    attack: Vec<AttackKind>,
    /// The source of `transfer`: a bundle (default: the defended one).
    #[arg(long, value_name = "BUNDLE")]
    source: Option<PathBuf>,
    /// The source model of `transfer`.
    #[arg(long, value_enum, default_value = "at")]
    source_mode: SourceMode,
    /// Points of the source curve for `transfer`.
    #[arg(long, value_name = "T,...")]
    source_t: Option<String>,
    /// Members of the source set for `transfer`.
    #[arg(long, value_name = "I,...")]
    source_members: Option<String>,
    /// The norm of the budget: linf or l2.
    #[arg(long, default_value = "linf")]
    norm: Norm,
    /// Budgets, comma-separated, in input units (0 measures the clean inputs).
    #[arg(
        long,
        value_name = "E,...",
        required = true,
        allow_hyphen_values = true
    )]
    eps: String,
    /// Iterations of PGD, EOT-PGD, transfer and SPSA.
    #[arg(long, value_name = "K", default_value_t = defaults::attack_steps())]
    steps: usize,
    /// Step size of the iterative attacks (default 2.5 eps / steps).
    #[arg(long, value_name = "A")]
    step_size: Option<f64>,
    /// Random restarts of PGD, EOT-PGD and transfer; each sample keeps its strongest.
    #[arg(long, value_name = "R", default_value_t = defaults::restarts())]
    restarts: usize,
    /// Draws of the defence's members averaged per EOT-PGD step.
    #[arg(long, value_name = "S", default_value_t = defaults::eot_samples())]
    eot_samples: usize,
    /// Pairs of directions per SPSA iteration.
    #[arg(long, value_name = "P", default_value_t = 16)]
    spsa_pairs: usize,
    /// The finite-difference radius of SPSA.
    #[arg(long, value_name = "D", default_value_t = 0.01)]
    spsa_delta: f32,
    /// Iterations of Square (one query per sample each).
    #[arg(long, value_name = "N", default_value_t = 500)]
    square_queries: usize,
    /// `randomized`: submit each input this many times; a sample counts as robust by the
    /// accuracy over the submissions, and by their majority vote.
    #[arg(long, value_name = "N", default_value_t = 10)]
    resubmissions: usize,
    /// The range of valid input values.
    #[arg(
        long,
        value_name = "LO,HI",
        default_value = "0,1",
        allow_hyphen_values = true
    )]
    clip: String,
    /// Seed of the attacks' random starts, draws and directions.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Mini-batch size of the gradient attacks.
    #[arg(long, value_name = "N", default_value_t = defaults::eval_batch_size())]
    batch_size: usize,
    /// cpu, cuda, cuda:N or auto, for the trainer and the runtime.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then beside this executable).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Keep the inputs: clean.npy, labels.npy (int64) and one .npy per attack, norm and eps.
    #[arg(long, value_name = "DIR")]
    save_adv: Option<PathBuf>,
    /// Also write the whole report, one JSON object, to this file.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// One row of the table.
struct Row {
    attack: AttackKind,
    eps: f64,
    file: String,
    outcome: Outcome,
    target_accuracy: Option<f64>,
    queries: Option<f64>,
    max_norm: f64,
    seconds: f64,
}

fn file_name(attack: AttackKind, norm: Norm, eps: f64) -> String {
    format!("{}-{}-eps{eps}.npy", attack.as_str(), norm.as_str())
}

/// The members a mode's attacker differentiates, and the defence's sampling.
struct Plan {
    target: Target,
    sampling: Sampling,
    describe: Value,
}

fn plan(args: &Args, kind: Kind, points: usize) -> anyhow::Result<Plan> {
    let r = args.mode.resolve(&args.bundle, kind, points)?;
    let sampling = match r.serving {
        Sampling::Keyed { grid, .. } => Sampling::Keyed {
            key: key(args.key.as_deref())?,
            grid,
            quantum: args.keyed_quantum,
        },
        other => other,
    };
    // Against a per-sample mode, the attacker differentiates one of its points per step.
    let draws = args.mode.mode.is_per_sample().then_some(1);
    Ok(Plan {
        target: Target {
            bundle: None,
            t: r.t,
            members: r.members,
            draws,
        },
        sampling,
        describe: r.describe,
    })
}

/// The key of keyed mode: the server's, or a fresh one from the OS that nobody knows.
fn key(path: Option<&Path>) -> anyhow::Result<[u8; 32]> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the key {}", p.display()))?;
            modeconn_server::config::parse_hex32(text.trim())
                .ok_or_else(|| anyhow::anyhow!("{}: a key is 64 hex digits", p.display()))
        }
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            Ok(k)
        }
    }
}

/// The source model of transfer attacks.
fn source_target(args: &Args, defended: &modeconn_runtime::Bundle) -> anyhow::Result<Target> {
    let opened;
    let meta = match &args.source {
        Some(p) => {
            opened = super::open_bundle(p)?;
            opened.metadata()
        }
        None => defended.metadata(),
    };
    let t = args
        .source_t
        .as_deref()
        .map(|t| super::parse_list::<f64>(t, "t value"))
        .transpose()?;
    let m = args
        .source_members
        .as_deref()
        .map(|t| super::parse_list::<usize>(t, "member index"))
        .transpose()?;
    let (t, members) = match (meta.kind, args.source_mode) {
        (Kind::Curve, SourceMode::At) => (t.unwrap_or_else(|| vec![0.0]), vec![]),
        (Kind::Curve, SourceMode::Ensemble) => (
            t.map_or_else(|| modeconn_runtime::curve::grid(5), Ok)?,
            vec![],
        ),
        (Kind::Snapshots, SourceMode::At) => (vec![], m.unwrap_or_else(|| vec![0])),
        (Kind::Snapshots, SourceMode::Ensemble) => {
            (vec![], m.unwrap_or_else(|| (0..meta.points).collect()))
        }
    };
    if args.source_mode == SourceMode::At {
        anyhow::ensure!(
            t.len() + members.len() == 1,
            "--source-mode at takes one point or member"
        );
    }
    Ok(Target {
        bundle: Some(args.source.clone().unwrap_or_else(|| args.bundle.clone())),
        t,
        members,
        draws: None,
    })
}

fn parse_clip(text: &str) -> anyhow::Result<[f64; 2]> {
    let v = super::parse_list::<f64>(text, "clip bound")?;
    anyhow::ensure!(
        v.len() == 2 && v[0].is_finite() && v[1].is_finite() && v[0] < v[1],
        "--clip takes LO,HI with LO < HI, not `{text}`"
    );
    Ok([v[0], v[1]])
}

/// The inputs as rows `[samples, features]`.
fn rows(path: &Path) -> anyhow::Result<(Array2<f32>, Vec<usize>)> {
    let x = npy::read::<f32>(path)?;
    let shape = x.shape().to_vec();
    let n = shape.first().copied().unwrap_or(0);
    let d: usize = shape.iter().skip(1).product();
    let rows = x
        .into_shape_with_order((n, d))
        .with_context(|| format!("{}: not a batch of inputs", path.display()))?;
    Ok((rows, shape[1..].to_vec()))
}

/// Runs `attack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let eps_list = super::parse_list::<f64>(&args.eps, "eps")?;
    anyhow::ensure!(!eps_list.is_empty(), "--eps names no budget");
    for &e in &eps_list {
        anyhow::ensure!(
            e.is_finite() && e >= 0.0,
            "eps {e} must be finite and not negative"
        );
    }
    let clip = parse_clip(&args.clip)?;
    if args.attack.contains(&AttackKind::Square) && args.norm != Norm::Linf {
        anyhow::bail!("square runs with --norm linf only (the attack's L2 variant is not built)");
    }
    anyhow::ensure!(
        args.resubmissions >= 1,
        "--resubmissions must be at least 1"
    );
    anyhow::ensure!(args.spsa_pairs >= 1, "--spsa-pairs must be at least 1");
    anyhow::ensure!(
        args.spsa_delta.is_finite() && args.spsa_delta > 0.0,
        "--spsa-delta must be positive"
    );
    let trainer_device: Device = args.device.parse()?;
    let runtime_device: modeconn_runtime::Device = args.device.parse()?;
    let bundle = super::open_bundle(&args.bundle)?;
    let meta = bundle.metadata().clone();
    let plan = plan(&args, meta.kind, meta.points)?;

    // The inputs: kept in --save-adv, or in a scratch folder removed at the end.
    let (dir, _scratch) = match &args.save_adv {
        Some(d) => (d.clone(), None),
        None => {
            let scratch = super::Scratch::new("attack");
            (scratch.path().to_path_buf(), Some(scratch))
        }
    };
    // The source of transfer attacks, the same for every eps.
    let source = if args.attack.contains(&AttackKind::Transfer) {
        Some(source_target(&args, &bundle)?)
    } else {
        None
    };
    let mut crafts = Vec::new();
    let mut craft_of: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (a, &attack) in args.attack.iter().enumerate() {
        if attack.black_box() {
            continue;
        }
        for (e, &eps) in eps_list.iter().enumerate() {
            let mut target = plan.target.clone();
            let kind = match attack {
                AttackKind::Fgsm => GradientAttack::Fgsm,
                AttackKind::Pgd => GradientAttack::Pgd,
                AttackKind::EotPgd => {
                    if args.mode.mode.is_per_sample() {
                        target.draws = Some(args.eot_samples);
                    }
                    GradientAttack::Pgd
                }
                AttackKind::Transfer => {
                    target = source.clone().unwrap_or(target);
                    GradientAttack::Pgd
                }
                AttackKind::Spsa | AttackKind::Square => continue,
            };
            craft_of.insert((a, e), crafts.len());
            crafts.push(Craft {
                file: file_name(attack, args.norm, eps),
                target,
                attack: kind,
                norm: args.norm,
                eps,
                steps: args.steps,
                step_size: args.step_size,
                restarts: args.restarts,
            });
        }
    }
    let job = Job::Attack(AttackJob {
        bundle: args.bundle.clone(),
        data: args.data.clone(),
        split: args.split,
        samples: args.limit,
        batch_size: args.batch_size,
        device: trainer_device,
        held_out: None,
        limit: None,
        seed: args.seed,
        clip,
        out: dir.clone(),
        crafts,
    });
    let Report::Attack(made) = run_job(&args.plugin, &job)? else {
        anyhow::bail!("the trainer answered an attack job with another report");
    };

    let mut options = modeconn_runtime::RuntimeOptions::default().with_device(runtime_device);
    if let Some(lib) = &args.ort_lib {
        options = options.with_library(lib);
    }
    let runtime = Runtime::new(options)?;
    let ensemble = Ensemble::new(&runtime, bundle, EnsembleOptions::default())?;
    let (clean, input_shape) = rows(&made.clean)?;
    let labels: Vec<i64> = npy::read::<i64>(&made.labels)?
        .into_dimensionality::<Ix1>()?
        .to_vec();
    let defence = Defence {
        ensemble: &ensemble,
        sampling: plan.sampling.clone(),
        input_shape: input_shape.clone(),
    };
    let classes = meta.output.classes;
    let submissions = args.resubmissions;
    let clean_outcome = attack::evaluate(&defence, &clean.view(), &labels, submissions, classes)?;

    let show = !args.plugin.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut view = ProgressView::new(show);
    let mut table = Vec::new();
    let mut rng = SeededRng::new(args.seed);
    let total = args.attack.len() * eps_list.len();
    view.event(&Event::Begin {
        phase: Phase::Attack,
        total,
    });
    let mut done = 0;
    for (a, &attack) in args.attack.iter().enumerate() {
        for (e, &eps) in eps_list.iter().enumerate() {
            let started = std::time::Instant::now();
            // The trainer's time making the inputs, for the gradient attacks.
            let mut crafting = 0.0;
            let (adv, target_accuracy, queries, file) = if let Some(&c) = craft_of.get(&(a, e)) {
                let c = &made.crafted[c];
                let (adv, _) = rows(&c.file)?;
                crafting = c.seconds;
                (adv, Some(c.target_accuracy), None, c.file.clone())
            } else {
                let steps = args.steps;
                let step_size = args.step_size.unwrap_or(2.5 * eps / steps.max(1) as f64);
                let made_bb = if eps == 0.0 {
                    blackbox::Made {
                        inputs: clean.clone(),
                        queries_per_sample: 0.0,
                    }
                } else if attack == AttackKind::Spsa {
                    blackbox::spsa(
                        &defence,
                        &clean.view(),
                        &labels,
                        SpsaSettings {
                            norm: args.norm,
                            eps: eps as f32,
                            steps,
                            step_size: step_size as f32,
                            pairs: args.spsa_pairs,
                            delta: args.spsa_delta,
                            clip: [clip[0] as f32, clip[1] as f32],
                        },
                        &mut rng,
                        &mut |_, _| {},
                    )?
                } else {
                    blackbox::square(
                        &defence,
                        &clean.view(),
                        &labels,
                        SquareSettings {
                            eps: eps as f32,
                            iterations: args.square_queries,
                            p_init: 0.8,
                            clip: [clip[0] as f32, clip[1] as f32],
                            image: image_shape(&input_shape),
                        },
                        &mut rng,
                        &mut |_, _| {},
                    )?
                };
                let file = dir.join(file_name(attack, args.norm, eps));
                let mut shape = vec![clean.nrows()];
                shape.extend(&input_shape);
                let array = made_bb
                    .inputs
                    .clone()
                    .into_shape_with_order(ndarray::IxDyn(&shape))?;
                npy::write(&file, &array.view()).map_err(|e| {
                    super::about(e, &file, || format!("cannot write {}", file.display()))
                })?;
                (made_bb.inputs, None, Some(made_bb.queries_per_sample), file)
            };
            let outcome = attack::evaluate(&defence, &adv.view(), &labels, submissions, classes)?;
            table.push(Row {
                attack,
                eps,
                file: file
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                max_norm: attack::max_norm(&adv.view(), &clean.view(), args.norm),
                outcome,
                target_accuracy,
                queries,
                seconds: crafting + started.elapsed().as_secs_f64(),
            });
            done += 1;
            view.event(&Event::Step {
                phase: Phase::Attack,
                done,
                total,
                loss: None,
                accuracy: table.last().map(|r| r.outcome.accuracy()),
                lr: None,
            });
        }
    }
    view.event(&Event::End {
        phase: Phase::Attack,
    });
    view.finish();

    let n = labels.len();
    let report = report_json(
        &args,
        &plan,
        &meta,
        &made,
        &clean_outcome,
        &table,
        &eps_list,
        n,
    );
    if let Some(path) = &args.json {
        super::write_json(path, &report)?;
    }
    super::note_fallback(&runtime);
    print_table(&args, &clean_outcome, &table, &report, n);
    Ok(())
}

/// One input's `[channels, height, width]` for Square: images as they are, a 2-D input as one
/// channel, flat inputs as one row.
fn image_shape(shape: &[usize]) -> [usize; 3] {
    match shape {
        [c, h, w] => [*c, *h, *w],
        [h, w] => [1, *h, *w],
        other => [1, 1, other.iter().product()],
    }
}

fn interval_json(p: f64, n: usize) -> Value {
    json!(wilson(p, n))
}

#[allow(clippy::too_many_arguments)]
fn report_json(
    args: &Args,
    plan: &Plan,
    meta: &modeconn_runtime::bundle::Metadata,
    made: &modeconn_jobs::AttackReport,
    clean: &Outcome,
    table: &[Row],
    eps_list: &[f64],
    n: usize,
) -> Value {
    let deterministic = !matches!(plan.sampling, Sampling::Randomized { .. });
    let outcome_json = |o: &Outcome| {
        let mut v = json!({
            "accuracy": o.accuracy(),
            "interval": interval_json(o.accuracy(), n),
            "submissions": o.submissions,
        });
        if !deterministic {
            v["majority_vote_accuracy"] = json!(o.vote_accuracy());
            v["majority_vote_interval"] = interval_json(o.vote_accuracy(), n);
        }
        v
    };
    let rows: Vec<Value> = table
        .iter()
        .map(|r| {
            let mut v = outcome_json(&r.outcome);
            v["attack"] = json!(r.attack.as_str());
            v["norm"] = json!(args.norm.as_str());
            v["eps"] = json!(r.eps);
            v["samples"] = json!(n);
            v["max_norm"] = json!(r.max_norm);
            v["seconds"] = json!(r.seconds);
            if let Some(t) = r.target_accuracy {
                v["attacker_model_accuracy"] = json!(t);
            }
            if let Some(q) = r.queries {
                v["queries_per_sample"] = json!(q);
            }
            if args.save_adv.is_some() {
                v["file"] = json!(r.file);
            }
            v
        })
        .collect();
    let worst: Vec<Value> = eps_list
        .iter()
        .map(|&eps| {
            let at_eps: Vec<&Row> = table.iter().filter(|r| r.eps == eps).collect();
            let robust: Vec<bool> = (0..n)
                .map(|i| at_eps.iter().all(|r| r.outcome.first[i]))
                .collect();
            let acc = attack::fraction(&robust);
            json!({"eps": eps, "accuracy": acc, "interval": interval_json(acc, n),
                   "attacks": at_eps.iter().map(|r| r.attack.as_str()).collect::<Vec<_>>()})
        })
        .collect();
    let mut settings = json!({
        "bundle": args.bundle,
        "data": args.data,
        "split": args.split.as_str(),
        "limit": args.limit,
        "mode": args.mode.mode.as_str(),
        "defence": plan.describe,
        "temperature": meta.temperature,
        "attacks": args.attack.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "norm": args.norm.as_str(),
        "eps": eps_list,
        "steps": args.steps,
        "step_size": args.step_size,
        "restarts": args.restarts,
        "eot_samples": args.eot_samples,
        "spsa_pairs": args.spsa_pairs,
        "spsa_delta": args.spsa_delta,
        "square_queries": args.square_queries,
        "resubmissions": args.resubmissions,
        "clip": parse_clip(&args.clip).ok(),
        "seed": args.seed,
        "key": if args.mode.mode == Mode::Keyed { json!(if args.key.is_some() { "given" } else { "fresh, unknown to the attacker" }) } else { Value::Null },
    });
    if args.attack.contains(&AttackKind::Transfer) {
        settings["source"] = json!({
            "bundle": args.source.clone().unwrap_or_else(|| args.bundle.clone()),
            "mode": match args.source_mode { SourceMode::At => "at", SourceMode::Ensemble => "ensemble" },
            "t": args.source_t, "members": args.source_members,
        });
    }
    let mut report = json!({
        "command": "attack",
        "settings": settings,
        "samples": n,
        "trainer_device": made.device.to_string(),
        "clean": outcome_json(clean),
        "results": rows,
        "worst_case": worst,
    });
    if let Some(dir) = &args.save_adv {
        report["files"] = json!({
            "folder": dir,
            "clean": name_of(&made.clean),
            "labels": name_of(&made.labels),
            "adversarial": table.iter().map(|r| json!({"attack": r.attack.as_str(),
                "norm": args.norm.as_str(), "eps": r.eps, "file": r.file})).collect::<Vec<_>>(),
        });
    }
    report
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn pct(p: f64) -> String {
    format!("{:5.1}%", 100.0 * p)
}

fn print_table(args: &Args, clean: &Outcome, table: &[Row], report: &Value, n: usize) {
    let random = matches!(args.mode.mode, Mode::Randomized);
    let ci = |p: f64| {
        let [lo, hi] = wilson(p, n);
        format!("[{}, {}]", pct(lo).trim(), pct(hi).trim())
    };
    println!(
        "{} mode `{}`, {} samples; robust accuracy (95% interval){}",
        args.bundle.display(),
        args.mode.mode.as_str(),
        n,
        if random {
            format!(
                " over {} fresh draws each, and of their majority vote",
                args.resubmissions
            )
        } else {
            String::new()
        }
    );
    let vote = |o: &Outcome| {
        if random {
            format!("  vote {}", pct(o.vote_accuracy()))
        } else {
            String::new()
        }
    };
    println!(
        "{:10} {:>5} {:>7}  {:>9} {:16}{}",
        "clean",
        "",
        "",
        pct(clean.accuracy()),
        ci(clean.accuracy()),
        vote(clean)
    );
    for r in table {
        println!(
            "{:10} {:>5} {:>7}  {:>9} {:16}{}",
            r.attack.as_str(),
            args.norm.as_str(),
            r.eps,
            pct(r.outcome.accuracy()),
            ci(r.outcome.accuracy()),
            vote(&r.outcome)
        );
    }
    if let Some(worst) = report["worst_case"].as_array() {
        for w in worst {
            let acc = w["accuracy"].as_f64().unwrap_or(0.0);
            println!(
                "{:10} {:>5} {:>7}  {:>9} {:16}",
                "worst case",
                args.norm.as_str(),
                w["eps"].as_f64().unwrap_or(0.0),
                pct(acc),
                ci(acc)
            );
        }
    }
}
