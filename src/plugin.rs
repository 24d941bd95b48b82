//! The trainer plugin (`libmodeconn_trainer.so`) as the CLI uses it: a thin layer over
//! [`modeconn_jobs::plugin`], which finds, loads and calls it. The CLI never links libtorch:
//! the plugin does, and it is only loaded when a training command runs.
//!
//! Where the plugin is looked for, first match wins:
//! 1. `--trainer PATH`;
//! 2. the environment variable `MODECONN_TRAINER`;
//! 3. beside the `modeconn` executable. `cargo build -p modeconn-trainer` puts it in
//!    `target/<profile>/`, next to the `modeconn` that `cargo build` writes there.
//!
//! A path given by the flag or the variable must exist: a stale setting is an error, never a
//! silent fall back to another plugin.

use std::io::IsTerminal;
use std::path::PathBuf;

use modeconn_jobs::{Job, Report, TrainerPlugin};

use crate::progress::ProgressView;

/// Which trainer plugin runs the job, and how much it shows.
#[derive(clap::Args)]
pub struct PluginArgs {
    /// The trainer plugin, libmodeconn_trainer.so (default: MODECONN_TRAINER, then beside
    /// this executable).
    #[arg(long, value_name = "PATH")]
    pub trainer: Option<PathBuf>,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Finds and loads the plugin (checking its ABI version first) and runs `job`, drawing
/// progress unless told not to or stderr is not a terminal. Returns the report of a successful
/// run; an error report is an error carrying its message.
///
/// The library stays loaded until the process ends: libtorch does not support being unloaded
/// (its thread pools outlive `dlclose`).
pub fn run_job(plugin: &PluginArgs, job: &Job) -> anyhow::Result<Report> {
    let path = TrainerPlugin::locate(plugin.trainer.as_deref(), &[])?;
    let trainer = TrainerPlugin::load(&path)?;
    let mut view = ProgressView::new(!plugin.quiet && std::io::stderr().is_terminal());
    let result = trainer.run(job, &mut |event| view.event(event));
    view.finish();
    Ok(result?)
}
