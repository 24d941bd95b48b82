//! The trainer plugin (`libmodeconn_trainer.so`) as the CLI uses it: a thin layer over
//! [`modeconn_runtime::plugin`], which finds, loads and calls it. The CLI never links
//! libtorch: the plugin does, and it is only loaded when a training command runs.
//!
//! Where the plugin is looked for, first match wins:
//! 1. `--trainer PATH`;
//! 2. the environment variable `MODECONN_TRAINER`;
//! 3. beside the `modeconn` executable. `cargo build -p modeconn-trainer` puts it in
//!    `target/<profile>/`, next to the `modeconn` that `cargo build` writes there.
//!
//! A path given by the flag or the variable must exist: a stale setting is an error, never a
//! silent fall back to another plugin.

use std::path::Path;

use anyhow::Context;
use modeconn_runtime::plugin::TrainerPlugin;
use serde_json::Value;

/// A loaded trainer plugin.
pub struct Trainer {
    plugin: TrainerPlugin,
}

impl Trainer {
    /// Finds (`--trainer`, `MODECONN_TRAINER`, beside the executable) and loads the plugin,
    /// checking its ABI version first.
    ///
    /// The library stays loaded until the process ends: libtorch does not support being
    /// unloaded (its thread pools outlive `dlclose`).
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Trainer> {
        let path = TrainerPlugin::locate(explicit, &[])?;
        let plugin = TrainerPlugin::load(&path)?;
        Ok(Trainer { plugin })
    }

    /// Runs a job, calling `on_event` with each progress event, and returns the report of a
    /// successful run; an error report becomes an error carrying its message. Events that are
    /// not JSON are dropped.
    pub fn run(&self, job: &Value, on_event: &mut dyn FnMut(&Value)) -> anyhow::Result<Value> {
        let mut on_text = |text: &str| {
            if let Ok(event) = serde_json::from_str::<Value>(text) {
                on_event(&event);
            }
        };
        let report = self.plugin.run(&job.to_string(), &mut on_text)?;
        serde_json::from_str(&report).with_context(|| {
            format!(
                "the trainer plugin {} returned a report that is not JSON",
                self.plugin.path().display()
            )
        })
    }
}
