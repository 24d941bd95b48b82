//! `modeconn pack`.

use std::path::PathBuf;

use anyhow::Context;
use modeconn_runtime::bundle::{PackLayout, PackOptions, pack};
use modeconn_runtime::curve::Basis;

/// Arguments of `pack`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("layout").required(true).args(["snapshots", "curve"])))]
pub struct Args {
    /// The ONNX classifier (from torch.onnx.export with dynamo=True, optimize=False).
    #[arg(long, value_name = "MODEL.onnx")]
    onnx: PathBuf,
    /// Weight files of the members of a snapshot set.
    #[arg(long, num_args = 1.., value_name = "A.safetensors")]
    snapshots: Vec<PathBuf>,
    /// Make a curve of this basis from --points.
    #[arg(long, value_name = "bezier|polychain", requires = "points")]
    curve: Option<String>,
    /// Control points of the curve: start, bends, end.
    #[arg(long, num_args = 2.., value_name = "P.safetensors")]
    points: Vec<PathBuf>,
    /// Softmax temperature to record in the bundle.
    #[arg(long)]
    temperature: Option<f64>,
    /// Class names, comma-separated.
    #[arg(long, value_name = "A,B,...")]
    labels: Option<String>,
    /// Accept float tensors of the weight files that the graph does not use.
    #[arg(long)]
    allow_unmatched: bool,
    /// Where to write the bundle.
    #[arg(long, value_name = "BUNDLE.safetensors")]
    out: PathBuf,
}

/// Runs `pack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let onnx = std::fs::read(&args.onnx)
        .with_context(|| format!("cannot read {}", args.onnx.display()))?;
    let (layout, files) = match &args.curve {
        Some(basis) => (PackLayout::Curve(basis.parse::<Basis>()?), &args.points),
        None => (PackLayout::Snapshots, &args.snapshots),
    };
    let options = PackOptions {
        temperature: args.temperature,
        labels: args
            .labels
            .as_deref()
            .map(|l| l.split(',').map(|s| s.trim().to_string()).collect()),
        allow_unmatched: args.allow_unmatched,
    };
    let (writer, report) = pack(&onnx, files, layout, &options)
        .with_context(|| format!("cannot pack {}", args.onnx.display()))?;
    writer.write(&args.out)?;
    println!(
        "wrote {}: {} varying tensors from {} files{}",
        args.out.display(),
        report.matched.len(),
        files.len(),
        if report.grid_tensors.is_empty() {
            String::new()
        } else {
            format!(
                " ({} batch-norm statistics on the knots)",
                report.grid_tensors.len()
            )
        }
    );
    if !report.skipped.is_empty() {
        println!("skipped (not float): {}", report.skipped.join(", "));
    }
    if !report.unmatched.is_empty() {
        println!(
            "not in the graph (ignored): {}",
            report.unmatched.join(", ")
        );
    }
    if !report.fixed.is_empty() {
        println!(
            "fixed (graph initializers not in the files): {}",
            report.fixed.join(", ")
        );
    }
    Ok(())
}
