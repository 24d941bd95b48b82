//! The subcommands.

pub mod curve;
pub mod eval;
pub mod fge;
pub mod inspect;
pub mod materialize;
pub mod pack;
pub mod predict;
pub mod serve;
pub mod train;
pub mod unseal;

use std::path::Path;

use anyhow::Context;
use modeconn_runtime::Bundle;

/// Opens a bundle, naming the file in the error.
pub fn open_bundle(path: &Path) -> anyhow::Result<Bundle> {
    Bundle::open(path).with_context(|| format!("cannot load bundle {}", path.display()))
}

/// Parses a comma-separated list.
pub fn parse_list<T: std::str::FromStr>(text: &str, what: &str) -> anyhow::Result<Vec<T>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| anyhow::anyhow!("`{s}` is not a valid {what}"))
        })
        .collect()
}
