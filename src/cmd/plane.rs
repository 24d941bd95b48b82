//! `modeconn plane`.

use std::path::{Path, PathBuf};

use modeconn_jobs::{Job, PlaneJob, PlaneReport, Report, defaults};

use super::training::DataArgs;
use crate::plugin::{PluginArgs, run_job};

/// Arguments of `plane`.
#[derive(clap::Args)]
pub struct Args {
    /// A curve bundle (the plane through its endpoints and its bend), or three bundles of one
    /// network each (the plane through them, the first as the origin).
    #[arg(value_name = "CURVE | A B C", num_args = 1..=3, required = true)]
    bundles: Vec<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Points along each axis of the grid (the grid has N*N, each a pass over both splits).
    #[arg(long, value_name = "N", default_value_t = defaults::plane_grid())]
    grid: usize,
    /// How far the grid reaches beyond the points, as a fraction of their extent.
    #[arg(long, value_name = "M", default_value_t = defaults::plane_margin())]
    margin: f64,
    /// Points of the t grid of a curve's projection.
    #[arg(long, value_name = "N", default_value_t = defaults::points())]
    curve_points: usize,
    /// Weight decay of the L2 term in the training loss, wd/2 ||w||^2 (use the value the
    /// networks were trained with).
    #[arg(long, default_value_t = defaults::wd())]
    wd: f64,
    /// Mini-batch size.
    #[arg(long, value_name = "N", default_value_t = defaults::eval_batch_size())]
    batch_size: usize,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = defaults::seed())]
    seed: u64,
    /// Write the report (grid, basis, coordinates of the points and the curve, the values) to
    /// this file; the points found so far are kept beside it in `REPORT.json.partial` until
    /// it is written.
    #[arg(long, value_name = "REPORT.json")]
    json: Option<PathBuf>,
    /// Also draw the train loss of the plane (`modeconn plot` draws the other metrics from the
    /// report).
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
    /// Continue from `REPORT.json.partial`, the points an interrupted run of this same plane
    /// found.
    #[arg(long, requires = "json")]
    resume: bool,
    #[command(flatten)]
    plugin: PluginArgs,
}

/// Where the points found so far are kept: beside the report.
fn state_path(json: &Path) -> PathBuf {
    let mut name = json.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Runs `plane`.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.bundles.len() != 2,
        "give one curve bundle, or three bundles of one network each (two span no plane)"
    );
    let state = args.json.as_deref().map(state_path);
    // A picture that cannot be written is refused before the grid is evaluated.
    let picture = match &args.plot {
        Some(path) => {
            let format = crate::plot::Format::of(path, "--plot")?;
            modeconn_runtime::fs::check_writable(path).map_err(|e| {
                super::about(e, path, || format!("cannot write {}", path.display()))
            })?;
            Some((path.clone(), format))
        }
        None => None,
    };
    if let Some(path) = &args.json {
        modeconn_runtime::fs::check_writable(path)
            .map_err(|e| super::about(e, path, || format!("cannot write {}", path.display())))?;
    }
    let job = Job::Plane(PlaneJob {
        bundles: args.bundles,
        data: args.data.data,
        grid: args.grid,
        margin: args.margin,
        curve_points: args.curve_points,
        wd: args.wd,
        batch_size: args.batch_size,
        device: args.data.device,
        held_out: args.data.held_out,
        limit: args.data.limit,
        seed: args.seed,
        state: state.clone(),
        resume: args.resume,
    });
    let report = run_job(&args.plugin, &job)?;
    let Report::Plane(plane) = &report else {
        anyhow::bail!("the trainer answered a plane job with another report");
    };
    if let Some(path) = &args.json {
        super::write_json(path, &report)?;
        if let Some(state) = &state {
            // The report holds every point now; what was kept for a resumption is not needed.
            let _ = std::fs::remove_file(state);
        }
    }
    print!("{}", text(plane));
    if let Some((path, format)) = &picture {
        let kind = super::plot::draw(
            &serde_json::to_value(&report)?,
            "the plane",
            &super::plot::Drawing {
                metric: None,
                out: path,
                format: *format,
                size: (800, 600),
                title: None,
            },
        )?;
        println!("wrote {} ({kind})", path.display());
    }
    Ok(())
}

/// The report as a person reads it: the basis, where the points lie, and each metric's range
/// over the grid and its value at the grid node nearest each point.
fn text(r: &PlaneReport) -> String {
    let mut out = format!(
        "plane: |u| {:.4}, |v| {:.4}; grid {}x{} over x [{:.3}, {:.3}], y [{:.3}, {:.3}]",
        r.u_norm,
        r.v_norm,
        r.x.len(),
        r.y.len(),
        r.x.first().copied().unwrap_or(0.0),
        r.x.last().copied().unwrap_or(0.0),
        r.y.first().copied().unwrap_or(0.0),
        r.y.last().copied().unwrap_or(0.0),
    );
    if r.resumed > 0 {
        out.push_str(&format!(" ({} points resumed)", r.resumed));
    }
    out.push('\n');
    let nearest = |axis: &[f64], v: f64| {
        (0..axis.len())
            .min_by(|&a, &b| (axis[a] - v).abs().total_cmp(&(axis[b] - v).abs()))
            .unwrap_or(0)
    };
    let metrics: [(&str, &Vec<Vec<f64>>, bool); 4] = [
        ("train loss", &r.train_loss, false),
        ("train error", &r.train_error, true),
        ("test NLL", &r.test_nll, false),
        ("test error", &r.test_error, true),
    ];
    let show = |v: f64, pct: bool| {
        if pct {
            format!("{:.2}%", 100.0 * v)
        } else {
            format!("{v:.4}")
        }
    };
    out.push_str(&format!("{:<10} {:>9} {:>9}", "", "x", "y"));
    for (name, _, _) in &metrics {
        out.push_str(&format!(" {name:>12}"));
    }
    out.push('\n');
    for p in &r.anchors {
        let (i, j) = (nearest(&r.x, p.x), nearest(&r.y, p.y));
        let label = p.label.as_deref().unwrap_or("");
        out.push_str(&format!("{label:<10} {:>9.3} {:>9.3}", p.x, p.y));
        for (_, grid, pct) in &metrics {
            let v = grid.get(j).and_then(|row| row.get(i)).copied();
            out.push_str(&format!(" {:>12}", v.map_or("-".into(), |v| show(v, *pct))));
        }
        out.push('\n');
    }
    for (name, grid, pct) in &metrics {
        let (lo, hi) = grid
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        out.push_str(&format!(
            "{name:<12} over the grid: {} to {}\n",
            show(lo, *pct),
            show(hi, *pct)
        ));
    }
    out.push_str("(values of each point: at the grid node nearest it)\n");
    out
}
