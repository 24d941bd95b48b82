//! Arc length of a curve from the Gram matrix of its control points.
//!
//! Every quantity the runtime needs (segment length, `||w'(t)||`, `||w(t) - w(s)||`) is a norm
//! of a combination `Σ a_k P_k` whose coefficients sum to zero. Such a combination equals
//! `Σ_{k≥1} a_k (P_k - P_0)`, so its squared norm is `aᵀ G a` with `G` the Gram matrix of the
//! differences `P_k - P_0`. `G` is computed once in one pass over the weights (K-1 by K-1
//! entries, in `f64`, without the cancellation a Gram matrix of the points themselves would
//! suffer), after which lengths cost `O(K²)` per evaluation whatever the size of the network.

use super::Basis;
use crate::{Error, Result};

/// The Gram matrix of the differences `P_k - P_0`, `k = 1 … K-1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    points: usize,
    /// Row-major `(K-1) × (K-1)`.
    entries: Vec<f64>,
}

impl Gram {
    /// An all-zero Gram matrix for `points` control points, to be filled with
    /// [`Gram::accumulate`].
    pub fn zeros(points: usize) -> Self {
        let m = points.saturating_sub(1);
        Gram {
            points,
            entries: vec![0.0; m * m],
        }
    }

    /// A Gram matrix given directly: `entries` is the row-major `(K-1) × (K-1)` matrix of inner
    /// products `<P_i - P_0, P_j - P_0>`, `i, j = 1 … K-1`.
    pub fn from_matrix(points: usize, entries: Vec<f64>) -> Result<Self> {
        let m = points.saturating_sub(1);
        if points < 2 || entries.len() != m * m {
            return Err(Error::invalid(
                format!("a Gram matrix for {points} points"),
                format!("has {} entries, got {}", m * m, entries.len()),
            ));
        }
        Ok(Gram { points, entries })
    }

    /// Adds the contribution of one tensor, given as its `K` control-point slices (all of the
    /// same length).
    pub fn accumulate(&mut self, slices: &[&[f32]]) -> Result<()> {
        if slices.len() != self.points {
            return Err(Error::invalid(
                "the control-point slices",
                format!("are {}, expected {}", slices.len(), self.points),
            ));
        }
        let n = slices[0].len();
        if slices.iter().any(|s| s.len() != n) {
            return Err(Error::invalid(
                "the control-point slices",
                "differ in length",
            ));
        }
        let m = self.points - 1;
        for i in 0..m {
            for j in i..m {
                let (pi, pj, p0) = (slices[i + 1], slices[j + 1], slices[0]);
                let mut acc = 0.0f64;
                for x in 0..n {
                    let a = f64::from(pi[x]) - f64::from(p0[x]);
                    let b = f64::from(pj[x]) - f64::from(p0[x]);
                    acc += a * b;
                }
                self.entries[i * m + j] += acc;
                if i != j {
                    self.entries[j * m + i] += acc;
                }
            }
        }
        Ok(())
    }

    /// The number of control points K.
    pub fn points(&self) -> usize {
        self.points
    }

    /// `||Σ_k a_k P_k||` for coefficients `a` (length K) that sum to zero.
    pub fn norm(&self, a: &[f64]) -> f64 {
        let m = self.points - 1;
        let mut q = 0.0;
        for i in 0..m {
            for j in 0..m {
                q += a[i + 1] * self.entries[i * m + j] * a[j + 1];
            }
        }
        q.max(0.0).sqrt()
    }

    /// `||P_{K-1} - P_0||`, the length of the straight segment between the endpoints.
    pub fn endpoint_distance(&self) -> f64 {
        let m = self.points - 1;
        self.entries[(m - 1) * m + (m - 1)].max(0.0).sqrt()
    }
}

/// Arc length along a curve, tabulated so that t can be drawn uniformly in arc length.
#[derive(Debug, Clone)]
pub struct ArcLength {
    /// The t grid of the table.
    ts: Vec<f64>,
    /// Cumulative length at each grid point; starts at 0.
    cumulative: Vec<f64>,
    segment: f64,
}

/// Panels of the composite Gauss–Legendre rule used for Bezier curves.
const PANELS: usize = 512;
/// Nodes and weights of 5-point Gauss–Legendre on [-1, 1].
const GL_NODES: [f64; 5] = [
    -0.906_179_845_938_664,
    -0.538_469_310_105_683,
    0.0,
    0.538_469_310_105_683,
    0.906_179_845_938_664,
];
const GL_WEIGHTS: [f64; 5] = [
    0.236_926_885_056_189,
    0.478_628_670_499_366,
    0.568_888_888_888_889,
    0.478_628_670_499_366,
    0.236_926_885_056_189,
];

impl ArcLength {
    /// Tabulates `L(t) = ∫_0^t ||w'(s)|| ds` for a curve of this basis and Gram matrix.
    ///
    /// For the polygonal chain the length is exact (a sum of segment lengths); for Bezier
    /// curves it is a composite 5-point Gauss–Legendre rule over 512 panels, far below the
    /// precision of `f32` weights for any smooth curve.
    pub fn new(basis: Basis, gram: &Gram) -> Self {
        let k = gram.points();
        let mut d = vec![0.0; k];
        let speed = |t: f64, d: &mut [f64]| {
            basis.fill_derivative(t, d);
            gram.norm(d)
        };
        let panels = match basis {
            Basis::Polychain => k - 1,
            Basis::Bezier => PANELS,
        };
        let mut ts = Vec::with_capacity(panels + 1);
        let mut cumulative = Vec::with_capacity(panels + 1);
        ts.push(0.0);
        cumulative.push(0.0);
        let h = 1.0 / panels as f64;
        let mut total = 0.0;
        for p in 0..panels {
            let (a, b) = (p as f64 * h, (p + 1) as f64 * h);
            let piece = match basis {
                // The speed is constant on a segment: evaluate at its midpoint.
                Basis::Polychain => h * speed(0.5 * (a + b), &mut d),
                Basis::Bezier => {
                    let mut s = 0.0;
                    for (x, w) in GL_NODES.iter().zip(GL_WEIGHTS) {
                        s += w * speed(0.5 * (a + b) + 0.5 * h * x, &mut d);
                    }
                    0.5 * h * s
                }
            };
            total += piece;
            ts.push(b);
            cumulative.push(total);
        }
        ArcLength {
            ts,
            cumulative,
            segment: gram.endpoint_distance(),
        }
    }

    /// The arc length `L` of the whole curve.
    pub fn total(&self) -> f64 {
        self.cumulative.last().copied().unwrap_or(0.0)
    }

    /// The distance between the endpoints, `||w(1) - w(0)||`.
    pub fn segment(&self) -> f64 {
        self.segment
    }

    /// `L / ||w(1) - w(0)||`: 1 for a straight segment, larger the more the curve bends.
    /// `None` when the endpoints coincide.
    pub fn ratio(&self) -> Option<f64> {
        (self.segment > 0.0).then(|| self.total() / self.segment)
    }

    /// The t at which a fraction `u ∈ [0, 1]` of the arc length has been covered; mapping
    /// uniform `u` through it draws t uniformly in arc length. A curve of zero length maps `u`
    /// to itself.
    pub fn t_at_fraction(&self, u: f64) -> f64 {
        let total = self.total();
        if total <= 0.0 {
            return u.clamp(0.0, 1.0);
        }
        let target = u.clamp(0.0, 1.0) * total;
        let i = self
            .cumulative
            .partition_point(|&c| c < target)
            .clamp(1, self.cumulative.len() - 1);
        let (c0, c1) = (self.cumulative[i - 1], self.cumulative[i]);
        let (t0, t1) = (self.ts[i - 1], self.ts[i]);
        if c1 <= c0 {
            return t0;
        }
        t0 + (t1 - t0) * (target - c0) / (c1 - c0)
    }
}
