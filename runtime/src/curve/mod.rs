//! Curve mathematics: the coefficient functions of the two bases, the hat basis used for
//! batch-norm statistics, arc length, and t samplers.
//!
//! A curve with `K` control points `P_0 … P_{K-1}` is `w(t) = Σ_k c_k(t) P_k` for `t ∈ [0, 1]`.
//! Coefficients are non-negative, sum to one, and pick out the endpoints exactly at `t = 0`
//! and `t = 1`.

mod length;
mod sampler;

pub use length::{ArcLength, Gram};
pub use sampler::{SeededRng, check_grid_len, check_t, grid, keyed_index, os_index, uniform};

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The family of curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basis {
    /// Bezier curve: `c_k(t) = C(K-1, k) t^k (1-t)^(K-1-k)`.
    Bezier,
    /// Polygonal chain with bends evenly spaced in t: `c_k(t) = max(0, 1 - |t (K-1) - k|)`.
    Polychain,
}

impl Basis {
    /// The name used in bundle metadata and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Bezier => "bezier",
            Basis::Polychain => "polychain",
        }
    }

    /// The `K` coefficients `c_k(t)`. Fails when `t ∉ [0, 1]` or `K < 2`.
    pub fn coefficients(self, points: usize, t: f64) -> Result<Vec<f64>> {
        check_points(points)?;
        let t = check_t(t)?;
        let mut out = vec![0.0; points];
        self.fill_coefficients(t, &mut out);
        Ok(out)
    }

    /// Writes `c_k(t)` into `out` (whose length is K ≥ 2); `t` must already be checked.
    pub(crate) fn fill_coefficients(self, t: f64, out: &mut [f64]) {
        let n = out.len() - 1;
        match self {
            Basis::Bezier => bernstein(n, t, out),
            Basis::Polychain => {
                let x = t * n as f64;
                for (k, c) in out.iter_mut().enumerate() {
                    *c = (1.0 - (x - k as f64).abs()).max(0.0);
                }
            }
        }
    }

    /// The derivatives `c_k'(t)`, so that `w'(t) = Σ_k c_k'(t) P_k`.
    ///
    /// The polygonal chain is not differentiable at its bends; there the derivative of the
    /// segment to the right is returned (to the left at `t = 1`).
    pub fn derivative_coefficients(self, points: usize, t: f64) -> Result<Vec<f64>> {
        check_points(points)?;
        let t = check_t(t)?;
        let mut out = vec![0.0; points];
        self.fill_derivative(t, &mut out);
        Ok(out)
    }

    pub(crate) fn fill_derivative(self, t: f64, out: &mut [f64]) {
        let n = out.len() - 1;
        out.iter_mut().for_each(|c| *c = 0.0);
        match self {
            Basis::Bezier => {
                // d/dt B_{k,n} = n (B_{k-1,n-1} - B_{k,n-1}).
                let mut lower = vec![0.0; n];
                bernstein(n - 1, t, &mut lower);
                for (k, b) in lower.iter().enumerate() {
                    out[k] -= n as f64 * b;
                    out[k + 1] += n as f64 * b;
                }
            }
            Basis::Polychain => {
                let segment = ((t * n as f64).floor() as usize).min(n - 1);
                out[segment] = -(n as f64);
                out[segment + 1] = n as f64;
            }
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Basis {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bezier" => Ok(Basis::Bezier),
            "polychain" => Ok(Basis::Polychain),
            other => Err(Error::UnknownBasis(other.to_string())),
        }
    }
}

fn check_points(points: usize) -> Result<()> {
    if points < 2 {
        return Err(Error::invalid(
            "a curve",
            format!("needs at least 2 control points, got {points}"),
        ));
    }
    Ok(())
}

/// Bernstein polynomials of degree `n` at `t`, into `out[0..=n]`.
fn bernstein(n: usize, t: f64, out: &mut [f64]) {
    let mut binom = 1.0f64;
    for (k, c) in out.iter_mut().enumerate().take(n + 1) {
        if k > 0 {
            binom = binom * (n + 1 - k) as f64 / k as f64;
        }
        *c = binom * t.powi(k as i32) * (1.0 - t).powi((n - k) as i32);
    }
}

/// How one member of a bundle combines the bundle's stacks: weights over the control points
/// (`c_k(t)` for a point of a curve, one-hot for a member of a snapshot set) and, for curves
/// whose batch-norm statistics live on a `bn_grid`, hat weights over that grid. In `f32`, as
/// they are fed to the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficients {
    /// One weight per control point (or member).
    pub points: Vec<f32>,
    /// One weight per `bn_grid` point, when the curve has one.
    pub grid: Option<Vec<f32>>,
}

impl Coefficients {
    /// The point `t` of a curve with `points` control points, and its hat weights over
    /// `bn_grid` when there is one. Fails when `t ∉ [0, 1]` or `points < 2`.
    pub fn on_curve(basis: Basis, points: usize, bn_grid: Option<&[f64]>, t: f64) -> Result<Self> {
        check_points(points)?;
        let t = check_t(t)?;
        let mut c = vec![0.0; points];
        basis.fill_coefficients(t, &mut c);
        let grid = match bn_grid {
            Some(g) => {
                let mut h = vec![0.0; g.len()];
                fill_hat(g, t, &mut h)?;
                Some(h)
            }
            None => None,
        };
        Ok(Coefficients {
            points: to_f32(&c),
            grid: grid.as_deref().map(to_f32),
        })
    }

    /// Member `index` of a set of `members`: one-hot.
    pub fn one_hot(index: usize, members: usize) -> Result<Self> {
        if index >= members {
            return Err(Error::MemberOutOfRange {
                index,
                count: members,
            });
        }
        let mut points = vec![0.0; members];
        points[index] = 1.0;
        Ok(Coefficients { points, grid: None })
    }
}

fn to_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

/// Linear interpolation weights over an increasing grid (the hat basis): at most two adjacent
/// weights are non-zero, they sum to one, and at a grid point the weight is one there.
///
/// This is how batch-norm statistics recomputed on `bn_grid` are carried to any t.
pub fn hat_coefficients(grid: &[f64], t: f64) -> Result<Vec<f64>> {
    let t = check_t(t)?;
    let mut out = vec![0.0; grid.len()];
    fill_hat(grid, t, &mut out)?;
    Ok(out)
}

pub(crate) fn fill_hat(grid: &[f64], t: f64, out: &mut [f64]) -> Result<()> {
    match grid {
        [] => return Err(Error::invalid("an interpolation grid", "is empty")),
        [_] => {
            out[0] = 1.0;
            return Ok(());
        }
        _ => {}
    }
    out.iter_mut().for_each(|c| *c = 0.0);
    // The first grid index whose value is >= t, so grid[hi-1] < t <= grid[hi].
    let hi = grid.partition_point(|&g| g < t).clamp(1, grid.len() - 1);
    let (a, b) = (grid[hi - 1], grid[hi]);
    let w = ((t - a) / (b - a)).clamp(0.0, 1.0);
    out[hi - 1] = 1.0 - w;
    out[hi] = w;
    Ok(())
}

#[cfg(test)]
mod tests;
