//! `modeconn pack`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use modeconn_runtime::bundle::{BnStats, PackLayout, PackOptions, keys, pack};
use modeconn_runtime::curve::Basis;

/// Arguments of `pack`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("layout").required(true).args(["snapshots", "curve"])))]
pub struct Args {
    /// The ONNX classifier, from torch.onnx.export(model, (x,), path, dynamo=True,
    /// optimize=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}}): batch norm
    /// unfused, tensors named as in the state_dict, the batch axis free.
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
    /// Batch-norm statistics of the curve from files of their own, one per t of --bn-grid
    /// (e.g. recomputed on a grid finer than the control points); each holds every running
    /// mean and variance of the graph. Default: each point file's statistics at its knot.
    #[arg(long, num_args = 2.., value_name = "S.safetensors", requires = "bn_grid")]
    bn_stats: Vec<PathBuf>,
    /// The t of each --bn-stats file, comma-separated, strictly increasing from 0 to 1.
    #[arg(long, value_name = "0,T1,...,1", requires = "bn_stats")]
    bn_grid: Option<String>,
    /// Softmax temperature to record in the bundle: a positive number.
    #[arg(long, allow_negative_numbers = true)]
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

/// The flag that sets what a metadata error is about, when one does.
fn flag_of(e: &modeconn_runtime::Error) -> Option<&'static str> {
    use modeconn_runtime::Error;
    let key = match e {
        Error::Metadata { key, .. } | Error::NotFinite { what: key, .. } => key.as_str(),
        _ => return None,
    };
    match key {
        keys::LABELS => Some("--labels"),
        keys::TEMPERATURE => Some("--temperature"),
        keys::BN_GRID => Some("--bn-grid"),
        _ => None,
    }
}

/// An error of the runtime's packing or writing `path`, named after the flag at fault when
/// there is one, else after `context` (unless it names `path` itself).
fn explained(
    e: modeconn_runtime::Error,
    path: &Path,
    context: impl FnOnce() -> String,
) -> anyhow::Error {
    match flag_of(&e) {
        Some(flag) => anyhow::Error::new(e).context(flag),
        None => super::about(e, path, context),
    }
}

/// `--bn-grid` as numbers.
fn grid(text: &str) -> anyhow::Result<Vec<f64>> {
    text.split(',')
        .map(str::trim)
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| anyhow::anyhow!("--bn-grid: `{t}` is not a number"))
        })
        .collect()
}

/// Runs `pack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.bn_stats.is_empty() && args.curve.is_none() {
        anyhow::bail!(
            "--bn-stats: batch-norm statistics on a grid are for curves (--curve); a snapshot set \
             keeps each member's own statistics"
        );
    }
    let bn_stats = match &args.bn_grid {
        Some(g) => Some(BnStats {
            grid: grid(g)?,
            files: args.bn_stats.clone(),
        }),
        None => None,
    };
    // Where the bundle goes is checked before anything is read.
    modeconn_runtime::fs::check_writable(&args.out)?;
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
        bn_stats,
    };
    let (writer, report) = pack(&onnx, files, layout, &options).map_err(|e| {
        explained(e, &args.onnx, || {
            format!("cannot pack {}", args.onnx.display())
        })
    })?;
    writer.write(&args.out).map_err(|e| {
        explained(e, &args.out, || {
            format!("cannot write {}", args.out.display())
        })
    })?;
    let statistics = if report.grid_tensors.is_empty() {
        String::new()
    } else if args.bn_stats.is_empty() {
        format!(
            " ({} batch-norm statistics on the knots)",
            report.grid_tensors.len()
        )
    } else {
        format!(
            " ({} batch-norm statistics from {} files, on the grid of --bn-grid)",
            report.grid_tensors.len(),
            args.bn_stats.len()
        )
    };
    println!(
        "wrote {}: {} varying tensors from {} files{statistics}",
        args.out.display(),
        report.matched.len(),
        files.len(),
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
