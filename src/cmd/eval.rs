//! `modeconn eval`.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Map, Value, json};

use super::train::{PluginArgs, insert, path_text, print_summary, run_job};

/// Arguments of `eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a curve, or a snapshot set.
    bundle: PathBuf,
    /// The data: `digits` (embedded), an `.npz` file, or a CIFAR-10/100 or MNIST folder.
    #[arg(long, value_name = "D")]
    data: String,
    /// Points of the t grid along a curve [trainer default: 61].
    #[arg(long, value_name = "N")]
    points: Option<usize>,
    /// Also evaluate the straight segment between the curve's endpoints.
    #[arg(long)]
    segment: bool,
    /// Mini-batch size [trainer default: 256].
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// cpu, cuda or auto [trainer default: auto, CUDA when available].
    #[arg(long)]
    device: Option<String>,
    /// Take this many training samples as the test split (as the bundle was trained with).
    #[arg(long, value_name = "N")]
    held_out: Option<usize>,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Seed of the held-out split [trainer default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the whole report, one JSON object, to this file.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Runs `eval`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut job = Map::new();
    job.insert("command".into(), json!("eval"));
    job.insert("bundle".into(), json!(path_text(&args.bundle)?));
    job.insert("data".into(), json!(args.data));
    insert(&mut job, "points", args.points);
    if args.segment {
        job.insert("segment".into(), json!(true));
    }
    insert(&mut job, "batch_size", args.batch_size);
    insert(&mut job, "device", args.device.as_deref());
    insert(&mut job, "held_out", args.held_out);
    insert(&mut job, "limit", args.limit);
    insert(&mut job, "seed", args.seed);
    let report = run_job(&args.plugin, &Value::Object(job))?;
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        modeconn_runtime::write_file_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_summary(&report);
    Ok(())
}
