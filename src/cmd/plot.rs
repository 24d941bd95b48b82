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
    let format = Format::of(&args.out, "--out")?;
    let path = &args.report;
    let text = std::fs::read_to_string(path)
        .map_err(|e| super::about(e, path, || format!("cannot read {}", path.display())))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a JSON file ({e}); plot draws the --json reports of modeconn",
            path.display()
        )
    })?;
    let kind = draw(
        &report,
        &path.display().to_string(),
        &Drawing {
            metric: args.metric.as_deref(),
            out: &args.out,
            format,
            size: (args.width, args.height),
            title: args.title,
        },
    )?;
    println!("wrote {} ({kind})", args.out.display());
    Ok(())
}

/// How to draw a report: what `plot` is asked, and what `plane --plot` asks.
pub struct Drawing<'a> {
    /// The metric (the kind's default when `None`).
    pub metric: Option<&'a str>,
    /// The picture's path.
    pub out: &'a std::path::Path,
    /// Its format (from the path's extension).
    pub format: Format,
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// The title (the kind's when `None`).
    pub title: Option<String>,
}

/// Draws `report` (its source named `what` in messages) and writes the picture atomically;
/// returns what was drawn, in words.
pub fn draw(report: &serde_json::Value, what: &str, d: &Drawing<'_>) -> anyhow::Result<String> {
    let (mut picture, kind) = plot::read::picture(report, d.metric, what)?;
    if let Some(title) = &d.title {
        *picture.title_mut() = title.clone();
    }
    let bytes = plot::render(&picture, d.format, d.size.0, d.size.1)?;
    modeconn_runtime::write_file_atomic(d.out, &bytes)
        .map_err(|e| super::about(e, d.out, || format!("cannot write {}", d.out.display())))?;
    Ok(kind.to_string())
}
