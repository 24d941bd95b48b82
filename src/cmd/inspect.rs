//! `modeconn inspect`.

use std::path::PathBuf;

use modeconn_runtime::bundle::{Kind, Role};
use modeconn_runtime::curve::ArcLength;
use serde_json::json;

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle file.
    bundle: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `inspect`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bundle = super::open_bundle(&args.bundle)?;
    let meta = bundle.metadata();
    let varying: usize = bundle.tensors().iter().map(|t| t.slice_len()).sum();
    let grid_count = bundle
        .tensors()
        .iter()
        .filter(|t| t.role == Role::Grid)
        .count();
    let length = match meta.basis {
        Some(basis) if meta.kind == Kind::Curve => {
            let arc = ArcLength::new(basis, &bundle.gram()?);
            Some((arc.total(), arc.segment(), arc.ratio()))
        }
        _ => None,
    };
    let report = json!({
        "path": args.bundle.display().to_string(),
        "file_size": bundle.file_size(),
        "format": 1,
        "kind": meta.kind.as_str(),
        "basis": meta.basis.map(|b| b.as_str()),
        "points": meta.points,
        "bn_grid": meta.bn_grid,
        "grid_tensors": meta.grid_tensors,
        "input": {"name": meta.input.name, "shape": meta.input.shape},
        "output": {"name": meta.output.name, "classes": meta.output.classes},
        "classes": meta.output.classes,
        "temperature": meta.temperature,
        "labels": meta.labels,
        "tensors": bundle.tensors().len(),
        "grid_tensor_count": grid_count,
        "parameters": bundle.parameter_count(),
        "varying_parameters": varying,
        "opset": bundle.graph().opset(),
        "length": length.map(|(l, s, r)| json!({"arc": l, "segment": s, "ratio": r})),
        "provenance": meta.provenance,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "bundle      {} ({} bytes)",
        args.bundle.display(),
        bundle.file_size()
    );
    match meta.basis {
        Some(b) => println!(
            "kind        {} ({b}, {} control points)",
            meta.kind, meta.points
        ),
        None => println!("kind        {} ({} members)", meta.kind, meta.points),
    }
    if let Some(g) = &meta.bn_grid {
        let shown: Vec<String> = g.iter().map(|t| format!("{t:.3}")).collect();
        println!("bn grid     {} points: {}", g.len(), shown.join(" "));
        println!("grid tensors {}", meta.grid_tensors.join(", "));
    }
    println!("input       {} {:?}", meta.input.name, meta.input.shape);
    println!(
        "output      {} ({} classes)",
        meta.output.name, meta.output.classes
    );
    if meta.temperature != 1.0 {
        println!("temperature {}", meta.temperature);
    }
    println!(
        "tensors     {} varying ({} on the bn grid)",
        bundle.tensors().len(),
        grid_count
    );
    println!(
        "parameters  {} per network, {} of them varying",
        bundle.parameter_count(),
        varying
    );
    if let Some((arc, segment, ratio)) = length {
        match ratio {
            Some(r) => println!("length      {arc:.4} (segment {segment:.4}, ratio {r:.4})"),
            None => println!("length      {arc:.4} (the endpoints coincide)"),
        }
    }
    Ok(())
}
