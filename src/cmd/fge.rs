//! `modeconn fge`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::train::{PluginArgs, TrainingArgs, path_text, print_summary, run_job};

/// Arguments of `fge`.
#[derive(clap::Args)]
pub struct Args {
    /// The network to start from (a bundle written by `train`).
    #[arg(long, value_name = "A.safetensors")]
    init: PathBuf,
    /// Cycle length in epochs; a snapshot is taken in the middle of each cycle, where the
    /// learning rate is lowest.
    #[arg(long, value_name = "C")]
    cycle: usize,
    /// Largest learning rate of the cycle.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    lr1: f64,
    /// Smallest learning rate of the cycle, where snapshots are taken.
    #[arg(long, value_name = "Y", allow_negative_numbers = true)]
    lr2: f64,
    #[command(flatten)]
    training: TrainingArgs,
    /// Where to write the snapshot-set bundle.
    #[arg(long, value_name = "FGE.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `fge`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = Map::new();
    job.insert("command".into(), json!("fge"));
    job.insert("init".into(), json!(path_text(&args.init)?));
    job.insert("cycle".into(), json!(args.cycle));
    job.insert("lr1".into(), json!(args.lr1));
    job.insert("lr2".into(), json!(args.lr2));
    args.training.insert_into(&mut job)?;
    job.insert("out".into(), json!(path_text(&args.out)?));
    let report = run_job(&args.plugin, &Value::Object(job))?;
    print_summary(&report);
    Ok(())
}
