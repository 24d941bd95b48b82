//! Samplings and member selection: which members answer a query, and how many there are.
//!
//! [`member_count`] and [`select`] share their rules, so a caller that sizes its buffers with
//! the first (the C ABI) gets exactly as many members from the second.

use ndarray::ArrayViewD;

use crate::bundle::{Kind, Member, Members};
use crate::curve::{self, ArcLength, SeededRng};
use crate::{Error, Result};

/// How to choose the members that answer a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// These t values (curves).
    At(Vec<f64>),
    /// `M ≥ 2` equally spaced t values from 0 to 1 (curves).
    Grid(usize),
    /// `n` t values drawn uniformly from `[0, 1]` with a seeded generator (curves).
    Uniform {
        /// Number of draws.
        n: usize,
        /// Seed of the generator; the same seed gives the same t values.
        seed: u64,
    },
    /// `n` t values drawn uniformly in arc length along the curve (curves).
    ArcUniform {
        /// Number of draws.
        n: usize,
        /// Seed of the generator.
        seed: u64,
    },
    /// Every member of a snapshot set.
    AllMembers,
    /// These members of a snapshot set, in this order.
    Members(Vec<usize>),
    /// One member per sample, drawn uniformly: a grid point of `grid` points for curves or a
    /// member of a snapshot set. Draws come from the OS CSPRNG, or from a seeded generator
    /// when `seed` is given (for tests and reproducible experiments only).
    Randomized {
        /// Grid size R for curves (ignored for snapshot sets).
        grid: usize,
        /// Optional seed replacing the OS CSPRNG.
        seed: Option<u64>,
    },
    /// One member per sample chosen by a keyed hash of the sample's values: resubmitting an
    /// input gets the same member, and without the key the member cannot be predicted.
    ///
    /// The hash reads a canonical form of the values, so that inputs that are equal as numbers
    /// meet the same member: `-0.0` is `+0.0` (non-finite inputs are refused before). With a
    /// `quantum`, each value is first rounded to the nearest multiple of it, so that changes
    /// well below the quantum (those that do not cross a rounding boundary) meet the same
    /// member too.
    Keyed {
        /// The secret key.
        key: [u8; 32],
        /// Grid size R for curves (ignored for snapshot sets).
        grid: usize,
        /// Round each value to a multiple of this (positive, finite) before hashing; `None`
        /// hashes the values themselves.
        quantum: Option<f32>,
    },
}

impl Sampling {
    /// Whether every sample is answered by its own member.
    pub fn is_per_sample(&self) -> bool {
        matches!(self, Sampling::Randomized { .. } | Sampling::Keyed { .. })
    }

    /// Whether the members form a fixed set worth keeping materialised.
    pub(crate) fn is_fixed_set(&self) -> bool {
        !matches!(
            self,
            Sampling::At(_) | Sampling::Uniform { .. } | Sampling::ArcUniform { .. }
        )
    }

    /// What the sampling asks for, for messages about the kind of bundle it needs.
    fn asked(&self) -> &'static str {
        match self {
            Sampling::At(_) => "sampling at t",
            Sampling::Grid(_) => "a grid of t",
            Sampling::Uniform { .. } => "uniform sampling of t",
            Sampling::ArcUniform { .. } => "sampling uniform in arc length",
            Sampling::AllMembers | Sampling::Members(_) => "members",
            Sampling::Randomized { .. } => "randomised sampling",
            Sampling::Keyed { .. } => "keyed sampling",
        }
    }
}

/// The most members one query may select: listed t values or members, grid points, draws,
/// and the grid of the per-sample modes. Each member costs a run of the network (and the grid
/// of a per-sample mode its coefficients); a query asking for more is a mistake or an attack,
/// not an ensemble, and is answered with [`Error::TooLarge`] before anything is allocated.
pub const MAX_MEMBERS: usize = 1 << 16;

/// Fails with [`Error::TooLarge`] when `n` is more than [`MAX_MEMBERS`].
fn bounded(what: &'static str, n: usize) -> Result<usize> {
    if n > MAX_MEMBERS {
        return Err(Error::TooLarge {
            what,
            size: n,
            limit: MAX_MEMBERS,
        });
    }
    Ok(n)
}

/// Checks that `sampling` fits the kind of bundle `members` describes.
fn check_kind(members: &Members, sampling: &Sampling) -> Result<()> {
    let wants = match sampling {
        Sampling::At(_)
        | Sampling::Grid(_)
        | Sampling::Uniform { .. }
        | Sampling::ArcUniform { .. } => Some(Kind::Curve),
        Sampling::AllMembers | Sampling::Members(_) => Some(Kind::Snapshots),
        Sampling::Randomized { .. } | Sampling::Keyed { .. } => None,
    };
    match wants {
        Some(kind) if kind != members.kind() => Err(Error::KindMismatch {
            asked: sampling.asked(),
            kind: members.kind(),
        }),
        _ => Ok(()),
    }
}

/// The number of members `sampling` selects from a bundle with these `members` for a batch of
/// `batch` samples (one per sample in per-sample modes): what [`select`] returns.
///
/// Fails as [`select`] does on a sampling that does not fit the bundle's kind, a grid of
/// fewer than two points, or one that selects nothing.
pub fn member_count(members: &Members, sampling: &Sampling, batch: usize) -> Result<usize> {
    check_kind(members, sampling)?;
    let count = match sampling {
        Sampling::At(ts) => bounded("a list of t", ts.len())?,
        Sampling::Grid(m) => grid_len(bounded("a grid", *m)?)?,
        Sampling::Uniform { n, .. } | Sampling::ArcUniform { n, .. } => {
            bounded("a number of draws", *n)?
        }
        Sampling::AllMembers => members.points(),
        Sampling::Members(list) => bounded("a list of members", list.len())?,
        Sampling::Randomized { grid, .. } | Sampling::Keyed { grid, .. } => {
            choice_count(members, *grid)?;
            batch
        }
    };
    if count == 0 {
        return Err(Error::NoMembers);
    }
    Ok(count)
}

/// `m` if a grid of `m` points can be made.
fn grid_len(m: usize) -> Result<usize> {
    curve::check_grid_len(m)?;
    Ok(m)
}

/// The number of candidates of per-sample modes: `grid` points of a curve, every member of a
/// snapshot set.
fn choice_count(members: &Members, grid: usize) -> Result<usize> {
    match members.kind() {
        Kind::Curve => grid_len(bounded("a grid", grid)?),
        Kind::Snapshots => Ok(members.points()),
    }
}

/// The candidates of per-sample modes.
fn choices(members: &Members, grid: usize) -> Result<Vec<Member>> {
    Ok(match members.kind() {
        Kind::Curve => curve::grid(grid)?.into_iter().map(Member::T).collect(),
        Kind::Snapshots => (0..members.points()).map(Member::Index).collect(),
    })
}

/// Checks a keyed sampling's quantum: positive and finite, or none.
fn check_quantum(quantum: Option<f32>) -> Result<Option<f32>> {
    match quantum {
        Some(q) if !(q.is_finite() && q > 0.0) => Err(Error::invalid(
            "the quantum of keyed sampling",
            format!("is {q}; it must be a positive number"),
        )),
        q => Ok(q),
    }
}

/// The bytes a keyed hash reads for one sample: each value as its `f32` bits with `-0.0` read
/// as `+0.0`, or, with a quantum, as the nearest whole number of quanta (an `i64`, saturated).
pub fn canonical_bytes(values: impl Iterator<Item = f32>, quantum: Option<f32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.size_hint().0 * 8);
    for v in values {
        match quantum {
            None => {
                // `-0.0 + 0.0` is `+0.0`; every other value is unchanged.
                out.extend_from_slice(&(v + 0.0).to_le_bytes());
            }
            Some(q) => {
                // `as` saturates, and a rounded -0 is the integer 0.
                let steps = (f64::from(v) / f64::from(q)).round() as i64;
                out.extend_from_slice(&steps.to_le_bytes());
            }
        }
    }
    out
}

/// The members `sampling` selects for `input` (`[batch, ...]`), in order: the shared members
/// of the batch, or one per sample in per-sample modes. `arc` gives the curve's arc length
/// table, asked for only by [`Sampling::ArcUniform`].
///
/// The members are not checked against the bundle here: their coefficients are, once, before
/// any of them runs.
pub fn select<'a>(
    members: &Members,
    sampling: &Sampling,
    input: &ArrayViewD<'_, f32>,
    arc: impl FnOnce() -> Result<&'a ArcLength>,
) -> Result<Vec<Member>> {
    let batch = input.shape().first().copied().unwrap_or(0);
    let count = member_count(members, sampling, batch)?;
    let selected: Vec<Member> = match sampling {
        Sampling::At(ts) => ts.iter().map(|&t| Member::T(t)).collect(),
        Sampling::Grid(m) => curve::grid(*m)?.into_iter().map(Member::T).collect(),
        Sampling::Uniform { n, seed } => curve::uniform(*n, *seed)
            .into_iter()
            .map(Member::T)
            .collect(),
        Sampling::ArcUniform { n, seed } => {
            let arc = arc()?;
            curve::uniform(*n, *seed)
                .into_iter()
                .map(|u| Member::T(arc.t_at_fraction(u)))
                .collect()
        }
        Sampling::AllMembers => (0..members.points()).map(Member::Index).collect(),
        Sampling::Members(list) => list.iter().map(|&i| Member::Index(i)).collect(),
        Sampling::Randomized { grid, seed } => {
            let choices = choices(members, *grid)?;
            let mut rng = seed.map(SeededRng::new);
            (0..batch)
                .map(|_| match rng.as_mut() {
                    Some(r) => Ok(choices[r.index(choices.len())]),
                    None => curve::os_index(choices.len()).map(|i| choices[i]),
                })
                .collect::<Result<_>>()?
        }
        Sampling::Keyed { key, grid, quantum } => {
            let choices = choices(members, *grid)?;
            let quantum = check_quantum(*quantum)?;
            input
                .outer_iter()
                .map(|sample| {
                    let bytes = canonical_bytes(sample.iter().copied(), quantum);
                    choices[curve::keyed_index(key, &bytes, choices.len())]
                })
                .collect()
        }
    };
    debug_assert_eq!(selected.len(), count);
    Ok(selected)
}
