//! `modeconn plot`: a picture of a report that `eval`, `plane`, `fge`, `attack` or
//! `calibrate` wrote with `--json`, as PNG or SVG.

use std::path::PathBuf;

use crate::plot::{self, Format};

/// Arguments of `plot`.
#[derive(clap::Args)]
pub struct Args {
    /// The report: the `--json` file of `eval`, `plane`, `fge`, `attack` or `calibrate`.
    report: PathBuf,
    /// The picture, `.png` or `.svg` (the extension says which).
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    out: PathBuf,
    /// What to draw. eval: test_error (default), train_loss, train_error, test_nll, test_ece;
    /// plane: train_loss (default), train_nll, train_error, test_nll, test_error; fge:
    /// test_error (default), test_nll; attack: accuracy (default), majority_vote_accuracy;
    /// calibrate: the split, test (default) or held_out.
    #[arg(long, value_name = "M")]
    metric: Option<String>,
    /// Width of the picture in pixels.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(200..=10000))]
    width: u32,
    /// Height of the picture in pixels.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(150..=10000))]
    height: u32,
    /// The title (default: one that says what is drawn).
    #[arg(long, value_name = "T")]
    title: Option<String>,
}

/// Runs `plot`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let format = Format::of(&args.out)?;
    let path = &args.report;
    let text = std::fs::read_to_string(path)
        .map_err(|e| super::about(e, path, || format!("cannot read {}", path.display())))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a JSON file ({e}); plot draws the --json reports of modeconn",
            path.display()
        )
    })?;
    let what = path.display().to_string();
    let (mut picture, kind) = plot::read::picture(&report, args.metric.as_deref(), &what)?;
    if let Some(title) = args.title {
        *picture.title_mut() = title;
    }
    let bytes = plot::render(&picture, format, args.width, args.height)?;
    modeconn_runtime::write_file_atomic(&args.out, &bytes).map_err(|e| {
        super::about(e, &args.out, || {
            format!("cannot write {}", args.out.display())
        })
    })?;
    println!("wrote {} ({kind})", args.out.display());
    Ok(())
}
