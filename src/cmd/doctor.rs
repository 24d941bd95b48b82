//! `modeconn doctor`: what runs where. The ONNX Runtime library in use, its version and
//! providers, and whether its CUDA execution provider loads; the trainer plugin, its libtorch,
//! whether libtorch's CUDA library loads, and the CUDA devices it sees.

use std::path::PathBuf;

use anyhow::bail;
use modeconn_jobs::{DoctorJob, DoctorReport, Job, Report, TrainerPlugin};
use modeconn_runtime::doctor::OrtReport;
use modeconn_runtime::{Device, Runtime, RuntimeOptions};
use serde::Serialize;

/// Arguments of `doctor`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 unless this works: `cuda` (ONNX Runtime's CUDA execution provider
    /// and libtorch on a CUDA device).
    #[arg(long, value_name = "WHAT", value_parser = ["cuda"])]
    require: Option<String>,
    /// Path of libonnxruntime (default: ORT_DYLIB_PATH, then beside this executable).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// The trainer plugin (default: MODECONN_TRAINER, then beside this executable).
    #[arg(long, value_name = "PATH")]
    trainer: Option<PathBuf>,
}

/// The whole report: each half, or why it could not be made.
#[derive(Serialize)]
struct Doctor {
    #[serde(serialize_with = "part")]
    onnxruntime: Result<OrtReport, String>,
    #[serde(serialize_with = "part")]
    trainer: Result<Trainer, String>,
    /// Both GPU paths work: ONNX Runtime's CUDA provider loads and libtorch sees a device.
    cuda_ready: bool,
}

/// The trainer plugin and what it runs on.
#[derive(Serialize)]
struct Trainer {
    plugin: PathBuf,
    abi_version: u32,
    #[serde(flatten)]
    report: DoctorReport,
}

/// A half of the report as JSON: what it found, or `{"error": "..."}`.
fn part<T: Serialize, S: serde::Serializer>(
    value: &Result<T, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Failed<'a> {
        error: &'a str,
    }
    match value {
        Ok(v) => v.serialize(s),
        Err(e) => Failed { error: e }.serialize(s),
    }
}

/// Runs `doctor`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let onnxruntime = ort_report(&args).map_err(|e| format!("{e:#}"));
    let trainer = trainer_report(&args).map_err(|e| format!("{e:#}"));
    let cuda_ready = onnxruntime.as_ref().is_ok_and(|o| o.cuda.loads)
        && trainer.as_ref().is_ok_and(|t| !t.report.devices.is_empty());
    let doctor = Doctor {
        onnxruntime,
        trainer,
        cuda_ready,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doctor)?);
    } else {
        print!("{}", text(&doctor));
    }
    if args.require.is_some() && !doctor.cuda_ready {
        bail!("CUDA is not ready: {}", why_not(&doctor));
    }
    Ok(())
}

fn ort_report(args: &Args) -> anyhow::Result<OrtReport> {
    let mut options = RuntimeOptions::default().with_device(Device::Cpu);
    if let Some(lib) = &args.ort_lib {
        options = options.with_library(lib);
    }
    Ok(Runtime::new(options)?.report())
}

fn trainer_report(args: &Args) -> anyhow::Result<Trainer> {
    let path = TrainerPlugin::locate(args.trainer.as_deref(), &[])?;
    let plugin = TrainerPlugin::load(&path)?;
    match plugin.run(&Job::Doctor(DoctorJob {}), &mut |_| {})? {
        Report::Doctor(report) => Ok(Trainer {
            plugin: plugin.path().to_path_buf(),
            abi_version: modeconn_jobs::ABI_VERSION,
            report,
        }),
        other => bail!(
            "the trainer answered a doctor job with a {} report",
            other.command()
        ),
    }
}

/// The first reason the GPU paths do not both work.
fn why_not(d: &Doctor) -> String {
    match (&d.onnxruntime, &d.trainer) {
        (Err(e), _) => format!("ONNX Runtime: {e}"),
        (Ok(o), _) if !o.cuda.loads => format!(
            "ONNX Runtime's CUDA execution provider: {}",
            o.cuda.reason.as_deref().unwrap_or("does not load")
        ),
        (_, Err(e)) => format!("the trainer: {e}"),
        (_, Ok(t)) => format!(
            "libtorch: {}",
            t.report.no_devices.as_deref().unwrap_or("no CUDA device")
        ),
    }
}

/// The report for people.
fn text(d: &Doctor) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<18}{value}\n"));
    match &d.onnxruntime {
        Ok(o) => {
            line(
                "ONNX Runtime",
                format!(
                    "{} at {}",
                    o.version.as_deref().unwrap_or("(version unknown)"),
                    o.library.display()
                ),
            );
            line("  providers", o.providers.join(", "));
            line(
                "  CUDA provider",
                if o.cuda.loads {
                    "loads".into()
                } else {
                    format!(
                        "does not load: {}",
                        o.cuda.reason.as_deref().unwrap_or("unknown")
                    )
                },
            );
        }
        Err(e) => line("ONNX Runtime", format!("not loaded: {e}")),
    }
    match &d.trainer {
        Ok(t) => {
            let r = &t.report;
            line(
                "trainer",
                format!("{} (ABI version {})", t.plugin.display(), t.abi_version),
            );
            line(
                "  libtorch",
                format!(
                    "{} at {}",
                    r.libtorch.version.as_deref().unwrap_or("(version unknown)"),
                    r.libtorch
                        .path
                        .as_ref()
                        .map_or("(unknown)".into(), |p| p.display().to_string())
                ),
            );
            line(
                "  libtorch_cuda",
                if r.cuda_library_loads {
                    format!(
                        "loads (CUDA runtime {}, cuDNN {})",
                        r.libtorch.cuda_runtime, r.libtorch.cudnn
                    )
                } else {
                    "does not load".into()
                },
            );
            if r.devices.is_empty() {
                line(
                    "  CUDA devices",
                    format!("none: {}", r.no_devices.as_deref().unwrap_or("unknown")),
                );
            }
            for g in &r.devices {
                line(
                    &format!("  cuda:{}", g.index),
                    format!(
                        "{}, {:.1} GiB, compute capability {}",
                        g.name,
                        g.memory_bytes as f64 / (1u64 << 30) as f64,
                        g.compute_capability
                    ),
                );
            }
        }
        Err(e) => line("trainer", format!("not loaded: {e}")),
    }
    line("CUDA ready", if d.cuda_ready { "yes" } else { "no" }.into());
    out
}
