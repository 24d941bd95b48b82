//! `modeconn materialize`.

use std::path::PathBuf;

use modeconn_runtime::Member;

/// Arguments of `materialize`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["at", "member"])))]
pub struct Args {
    /// The bundle file.
    bundle: PathBuf,
    /// The point of a curve, t in [0, 1].
    #[arg(long)]
    at: Option<f64>,
    /// The member of a snapshot set.
    #[arg(long)]
    member: Option<usize>,
    /// Where to write the ONNX model.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `materialize`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = super::open_bundle(&args.bundle)?;
    let member = match (args.at, args.member) {
        (Some(t), _) => Member::T(t),
        (None, Some(i)) => Member::Index(i),
        (None, None) => anyhow::bail!("give --at or --member"),
    };
    let model = bundle.materialize(member)?;
    modeconn_runtime::write_file_atomic(&args.out, &model).map_err(|e| {
        super::about(e, &args.out, || {
            format!("cannot write {}", args.out.display())
        })
    })?;
    eprintln!(
        "wrote {} ({member}, {} bytes)",
        args.out.display(),
        model.len()
    );
    Ok(())
}
