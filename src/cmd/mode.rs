//! A serving mode as the commands that measure one take it (`attack`, `calibrate`): the mode
//! and its points or members, resolved against a bundle into the sampling the server answers
//! with and the members whose answers it mixes.

use std::path::Path;

use modeconn_runtime::Sampling;
use modeconn_runtime::bundle::Kind;
use modeconn_server::config::Mode;
use serde_json::{Value, json};

/// Parses a serving mode by the name the server's requests and configuration use.
fn parse_mode(name: &str) -> Result<Mode, String> {
    Mode::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        format!("`{name}` is not a mode (expected {})", names.join(", "))
    })
}

/// The flags that name a serving mode and its members.
#[derive(clap::Args)]
pub struct ModeArgs {
    /// The serving mode, as the server answers it: `ensemble` (the mean of a fixed set of
    /// points), `at` (one point or member), `randomized` (a point drawn per sample and query)
    /// or `keyed` (a point per sample from a keyed hash of its values).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Mode,
    /// Points of the curve: the one point of `at` (default 0), or those of `ensemble`.
    #[arg(long, value_name = "T,...")]
    pub t: Option<String>,
    /// Members of a snapshot set: the one of `at` (default 0), or those of `ensemble` (default
    /// all).
    #[arg(long, value_name = "I,...")]
    pub members: Option<String>,
    /// `ensemble` on a curve: M equally spaced points (default 5, as `predict`).
    #[arg(long, value_name = "M")]
    pub grid: Option<usize>,
    /// `randomized` and `keyed` on a curve: the grid of R points drawn from.
    #[arg(long, value_name = "R", default_value_t = 21)]
    pub randomized_grid: usize,
}

/// A mode resolved against a bundle.
pub struct Resolved {
    /// The sampling the server answers with; for `keyed`, with a key of zeros, which the
    /// caller replaces.
    pub serving: Sampling,
    /// The members whose answers the mode mixes, as a shared sampling: the mode's own for
    /// `ensemble` and `at`, the grid (or every member) drawn from for `randomized` and `keyed`.
    pub pool: Sampling,
    /// The points of `pool` on a curve.
    pub t: Vec<f64>,
    /// The members of `pool` in a snapshot set.
    pub members: Vec<usize>,
    /// What the mode is, for reports.
    pub describe: Value,
}

impl ModeArgs {
    /// The mode on a bundle of `kind` with `points` control points or members (`bundle`
    /// names it in messages).
    pub fn resolve(&self, bundle: &Path, kind: Kind, points: usize) -> anyhow::Result<Resolved> {
        let t = self
            .t
            .as_deref()
            .map(|t| super::parse_list::<f64>(t, "t value"))
            .transpose()?;
        let m = self
            .members
            .as_deref()
            .map(|t| super::parse_list::<usize>(t, "member index"))
            .transpose()?;
        match kind {
            Kind::Curve => anyhow::ensure!(
                m.is_none(),
                "--members is for snapshot sets; {} is a curve: use --t",
                bundle.display()
            ),
            Kind::Snapshots => anyhow::ensure!(
                t.is_none() && self.grid.is_none(),
                "--t and --grid are for curves; {} is a snapshot set: use --members",
                bundle.display()
            ),
        }
        let curve = |t: Vec<f64>, sampling: Sampling| Resolved {
            describe: json!({"t": t}),
            serving: sampling.clone(),
            pool: sampling,
            t,
            members: vec![],
        };
        let set = |m: Vec<usize>, sampling: Sampling| Resolved {
            describe: json!({"members": m}),
            serving: sampling.clone(),
            pool: sampling,
            t: vec![],
            members: m,
        };
        Ok(match (self.mode, kind) {
            (Mode::At, Kind::Curve) => {
                let t = t.unwrap_or_else(|| vec![0.0]);
                anyhow::ensure!(t.len() == 1, "--mode at takes one t, not {}", t.len());
                curve(t.clone(), Sampling::At(t))
            }
            (Mode::At, Kind::Snapshots) => {
                let m = m.unwrap_or_else(|| vec![0]);
                anyhow::ensure!(m.len() == 1, "--mode at takes one member, not {}", m.len());
                set(m.clone(), Sampling::Members(m))
            }
            (Mode::Ensemble, Kind::Curve) => {
                anyhow::ensure!(
                    t.is_none() || self.grid.is_none(),
                    "give --t or --grid, not both"
                );
                // The sampling `predict` makes of the same flags: a grid stays a grid (whose
                // members the runtime may keep materialised), listed points stay listed.
                match t {
                    Some(t) => curve(t.clone(), Sampling::At(t)),
                    None => {
                        let n = self.grid.unwrap_or(5);
                        curve(modeconn_runtime::curve::grid(n)?, Sampling::Grid(n))
                    }
                }
            }
            (Mode::Ensemble, Kind::Snapshots) => match m {
                Some(m) => set(m.clone(), Sampling::Members(m)),
                None => set((0..points).collect(), Sampling::AllMembers),
            },
            (mode, kind) => {
                anyhow::ensure!(
                    t.is_none() && m.is_none() && self.grid.is_none(),
                    "--mode {} draws its own members: --t, --members and --grid do not apply",
                    mode.as_str()
                );
                let serving = if mode == Mode::Randomized {
                    Sampling::Randomized {
                        grid: self.randomized_grid,
                        seed: None,
                    }
                } else {
                    Sampling::Keyed {
                        key: [0; 32],
                        grid: self.randomized_grid,
                        quantum: None,
                    }
                };
                let mut r = match kind {
                    Kind::Curve => curve(
                        modeconn_runtime::curve::grid(self.randomized_grid)?,
                        Sampling::Grid(self.randomized_grid),
                    ),
                    Kind::Snapshots => set((0..points).collect(), Sampling::AllMembers),
                };
                r.describe = match kind {
                    Kind::Curve => json!({"grid": self.randomized_grid}),
                    Kind::Snapshots => json!({"members": points}),
                };
                r.serving = serving;
                r
            }
        })
    }
}
