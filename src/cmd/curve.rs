//! `modeconn curve`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::train::{PluginArgs, TrainingArgs, insert, path_text, print_summary, run_job};

/// Arguments of `curve`.
#[derive(clap::Args)]
pub struct Args {
    /// The start endpoint (a bundle written by `train`).
    #[arg(long, value_name = "A.safetensors")]
    start: PathBuf,
    /// The end endpoint.
    #[arg(long, value_name = "B.safetensors")]
    end: PathBuf,
    /// The curve's basis.
    #[arg(long, value_parser = ["bezier", "polychain"])]
    basis: String,
    /// Interior control points: 1 bend means 3 control points [trainer default: 1].
    #[arg(long, value_name = "N")]
    bends: Option<usize>,
    /// Train the start point too (it stays fixed by default).
    #[arg(long)]
    train_start: bool,
    /// Train the end point too.
    #[arg(long)]
    train_end: bool,
    /// Points of the t grid where batch-norm statistics are recomputed [trainer default: 21].
    #[arg(long, value_name = "G")]
    bn_grid: Option<usize>,
    /// Initial learning rate [trainer default: 0.05].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the curve bundle.
    #[arg(long, value_name = "CURVE.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `curve`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = Map::new();
    job.insert("command".into(), json!("curve"));
    job.insert("start".into(), json!(path_text(&args.start)?));
    job.insert("end".into(), json!(path_text(&args.end)?));
    job.insert("basis".into(), json!(args.basis));
    insert(&mut job, "bends", args.bends);
    if args.train_start {
        job.insert("train_start".into(), json!(true));
    }
    if args.train_end {
        job.insert("train_end".into(), json!(true));
    }
    insert(&mut job, "bn_grid", args.bn_grid);
    insert(&mut job, "lr", args.lr);
    args.training.insert_into(&mut job)?;
    job.insert("out".into(), json!(path_text(&args.out)?));
    let report = run_job(&args.plugin, &Value::Object(job))?;
    print_summary(&report);
    Ok(())
}
