//! `modeconn unseal`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

/// Arguments of `unseal`.
#[derive(clap::Args)]
pub struct Args {
    /// The audit log (JSON lines) written by `modeconn serve`.
    log: PathBuf,
    /// The server's `audit_key`: a file holding 64 hex digits.
    #[arg(long, value_name = "PATH")]
    key_file: PathBuf,
}

/// Prints each audit line with its points opened (`points`) in place of `sealed_points`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.key_file)
        .with_context(|| format!("cannot read {}", args.key_file.display()))?;
    let key = modeconn_server::config::parse_hex32(text.trim())
        .with_context(|| format!("{}: the key must be 64 hex digits", args.key_file.display()))?;
    let file = std::fs::File::open(&args.log)
        .with_context(|| format!("cannot open {}", args.log.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let at = || format!("{} line {}", args.log.display(), n + 1);
        let line = line.with_context(at)?;
        if line.trim().is_empty() {
            continue;
        }
        let mut entry: Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not JSON", at()))?;
        let id = entry["request_id"].as_str().unwrap_or_default().to_string();
        let sealed = entry["sealed_points"]
            .as_str()
            .with_context(|| format!("{}: no sealed_points", at()))?;
        let points = modeconn_server::audit::unseal(&key, &id, sealed)
            .with_context(|| format!("{}: the points do not open with this key", at()))?;
        if let Some(map) = entry.as_object_mut() {
            map.remove("sealed_points");
            map.insert("points".into(), points);
        }
        writeln!(out, "{entry}")?;
    }
    Ok(())
}
