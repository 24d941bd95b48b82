//! `modeconn unpack`.

use std::path::PathBuf;

use anyhow::Context;
use modeconn_runtime::bundle::Member;

use super::{about, open_bundle};

/// Arguments of `unpack`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["at", "member"])))]
pub struct Args {
    /// The bundle.
    bundle: PathBuf,
    /// The point of a curve, t in [0, 1].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    at: Option<f64>,
    /// The member of a snapshot set (from 0).
    #[arg(long, value_name = "I")]
    member: Option<usize>,
    /// Where to write the state_dict (safetensors; load it with safetensors.torch.load_file
    /// and model.load_state_dict).
    #[arg(long, value_name = "STATE.safetensors")]
    out: PathBuf,
}

/// Runs `unpack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = open_bundle(&args.bundle)?;
    let member = match (args.at, args.member) {
        (Some(t), _) => Member::T(t),
        (_, Some(i)) => Member::Index(i),
        (None, None) => anyhow::bail!("give --at T (a curve) or --member I (a snapshot set)"),
    };
    let bytes = bundle
        .state_dict(member)
        .with_context(|| format!("cannot unpack {member} of {}", args.bundle.display()))?;
    modeconn_runtime::write_file_atomic(&args.out, &bytes).map_err(|e| {
        about(e, &args.out, || {
            format!("cannot write {}", args.out.display())
        })
    })?;
    println!(
        "wrote {}: {member} of {}",
        args.out.display(),
        args.bundle.display()
    );
    Ok(())
}
