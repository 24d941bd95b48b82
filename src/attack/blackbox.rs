//! Score-based black-box attacks: they see only what the defence answers (its mean
//! probabilities), through the same runtime call a server makes, so they work on every bundle
//! and are what an attacker of the HTTP endpoint can do.
//!
//! Both minimise the margin `log p_y - max_{j != y} log p_j` of each sample, which is negative
//! once the defence misclassifies it. Against a deterministic defence (`at`, `ensemble`,
//! `keyed`) a sample stops being attacked once the defence misclassifies it; against
//! `randomized`, whose answers vary from query to query, every sample is attacked for the whole
//! budget.

use modeconn_jobs::Norm;
use modeconn_runtime::curve::SeededRng;
use ndarray::{Array2, ArrayView2, Axis};

use super::{Defence, clip_row, project_row};

/// The margin of each row of `probs` for its label.
pub fn margins(probs: &ArrayView2<'_, f32>, labels: &[i64]) -> Vec<f64> {
    probs
        .axis_iter(Axis(0))
        .zip(labels)
        .map(|(row, &y)| {
            let y = y as usize;
            let own = f64::from(row[y]).max(1e-30).ln();
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y)
                .map(|(_, &p)| f64::from(p))
                .fold(0.0f64, f64::max)
                .max(1e-30)
                .ln();
            own - other
        })
        .collect()
}

/// Settings of SPSA.
#[derive(Debug, Clone, Copy)]
pub struct SpsaSettings {
    /// The norm of the budget.
    pub norm: Norm,
    /// The budget.
    pub eps: f32,
    /// Iterations.
    pub steps: usize,
    /// Step size of each iteration.
    pub step_size: f32,
    /// Pairs of perturbations `x ± δ v` per iteration and sample.
    pub pairs: usize,
    /// The finite-difference radius δ.
    pub delta: f32,
    /// The range of valid input values.
    pub clip: [f32; 2],
}

/// What a black-box attack made: the inputs and the queries it sent per sample (mean).
pub struct Made {
    /// The adversarial inputs, `[samples, features]`.
    pub inputs: Array2<f32>,
    /// Queries sent to the defence per sample, on average.
    pub queries_per_sample: f64,
}

/// Rows of this many floats at most go to the defence in one query.
const QUERY_FLOATS: usize = 1 << 23;

/// SPSA (Uesato et al. 2018): the gradient of the margin estimated from `pairs` Rademacher
/// directions per iteration by finite differences, followed by its sign (L∞) or direction
/// (L2), then projected onto the budget and the clip range.
pub fn spsa(
    defence: &Defence<'_>,
    clean: &ArrayView2<'_, f32>,
    labels: &[i64],
    s: SpsaSettings,
    rng: &mut SeededRng,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Made> {
    let (n, d) = clean.dim();
    let mut x = clean.to_owned();
    let mut active = vec![true; n];
    let mut queries = 0usize;
    let per_sample_rows = 2 * s.pairs;
    let group = (QUERY_FLOATS / (per_sample_rows * d).max(1)).max(1);
    for step in 0..s.steps {
        let live: Vec<usize> = (0..n).filter(|&i| active[i]).collect();
        if live.is_empty() {
            break;
        }
        for chunk in live.chunks(group) {
            let mut batch = Array2::<f32>::zeros((chunk.len() * per_sample_rows, d));
            let mut signs = Vec::with_capacity(chunk.len() * s.pairs);
            for (c, &i) in chunk.iter().enumerate() {
                for j in 0..s.pairs {
                    let v = rademacher(d, rng);
                    let base = (c * s.pairs + j) * 2;
                    for (sign, row) in [(1.0f32, base), (-1.0, base + 1)] {
                        let mut r = batch.row_mut(row);
                        for k in 0..d {
                            r[k] = x[[i, k]] + sign * s.delta * v[k];
                        }
                        clip_row(r.as_slice_mut().unwrap_or(&mut []), s.clip);
                    }
                    signs.push(v);
                }
            }
            let probs = defence.query(&batch.view())?;
            queries += batch.nrows();
            let ys: Vec<i64> = chunk
                .iter()
                .flat_map(|&i| std::iter::repeat_n(labels[i], per_sample_rows))
                .collect();
            let m = margins(&probs.view(), &ys);
            for (c, &i) in chunk.iter().enumerate() {
                let mut g = vec![0.0f32; d];
                for j in 0..s.pairs {
                    let base = (c * s.pairs + j) * 2;
                    let slope = ((m[base] - m[base + 1]) / (2.0 * f64::from(s.delta))) as f32;
                    for (gk, vk) in g.iter_mut().zip(&signs[c * s.pairs + j]) {
                        *gk += slope * vk / s.pairs as f32;
                    }
                }
                // Descend the margin.
                let step_dir = direction(&g, s.norm);
                let mut row = x.row_mut(i);
                for k in 0..d {
                    row[k] -= s.step_size * step_dir[k];
                }
                let row = row.as_slice_mut().unwrap_or(&mut []);
                project_row(row, clean.row(i).as_slice().unwrap_or(&[]), s.norm, s.eps);
                clip_row(row, s.clip);
            }
        }
        if defence.deterministic() {
            let rows: Vec<usize> = live.clone();
            let sub = x.select(Axis(0), &rows);
            let probs = defence.query(&sub.view())?;
            queries += rows.len();
            let ys: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
            for (&i, m) in rows.iter().zip(margins(&probs.view(), &ys)) {
                if m < 0.0 {
                    active[i] = false;
                }
            }
        }
        progress(step + 1, s.steps);
    }
    Ok(Made {
        inputs: x,
        queries_per_sample: queries as f64 / n as f64,
    })
}

/// `d` independent signs ±1.
fn rademacher(d: usize, rng: &mut SeededRng) -> Vec<f32> {
    let mut out = Vec::with_capacity(d);
    while out.len() < d {
        let bits = rng.index(1 << 32);
        for b in 0..32 {
            if out.len() == d {
                break;
            }
            out.push(if (bits >> b) & 1 == 1 { 1.0 } else { -1.0 });
        }
    }
    out
}

/// The sign of `g` (L∞) or `g` normalised (L2).
fn direction(g: &[f32], norm: Norm) -> Vec<f32> {
    match norm {
        Norm::Linf => g
            .iter()
            .map(|&v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect(),
        Norm::L2 => {
            let len = g.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            g.iter().map(|v| v / len).collect()
        }
    }
}

/// Settings of the Square attack.
#[derive(Debug, Clone, Copy)]
pub struct SquareSettings {
    /// The L∞ budget.
    pub eps: f32,
    /// Iterations (one query per sample each).
    pub iterations: usize,
    /// The initial fraction of a channel's pixels that one square covers.
    pub p_init: f64,
    /// The range of valid input values.
    pub clip: [f32; 2],
    /// One input's `[channels, height, width]`.
    pub image: [usize; 3],
}

/// The fraction of pixels a square covers at iteration `it` of `iterations`: `p_init`, halved
/// at the iterations the Square attack's schedule names for a budget of 10 000 (10, 50, 200,
/// 500, 1000, 2000, 4000, 6000 and 8000), scaled to `iterations`.
fn square_fraction(p_init: f64, it: usize, iterations: usize) -> f64 {
    let it = (it as f64 * 10_000.0 / iterations.max(1) as f64) as usize;
    let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        .iter()
        .filter(|&&at| it > at)
        .count();
    p_init / f64::from(1u32 << halvings)
}

/// The Square attack (Andriushchenko et al. 2020), L∞: from vertical stripes of ±eps, each
/// iteration proposes, per sample, a random square whose channels each get a new ±eps, and
/// keeps it when the defence's margin falls.
pub fn square(
    defence: &Defence<'_>,
    clean: &ArrayView2<'_, f32>,
    labels: &[i64],
    s: SquareSettings,
    rng: &mut SeededRng,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Made> {
    let (n, d) = clean.dim();
    let [ch, h, w] = s.image;
    anyhow::ensure!(
        ch * h * w == d,
        "square: an input of {d} values is not [{ch}, {h}, {w}]"
    );
    let at = |c: usize, r: usize, col: usize| (c * h + r) * w + col;
    let mut x = clean.to_owned();
    for i in 0..n {
        for c in 0..ch {
            for col in 0..w {
                let sign = if rng.index(2) == 1 { 1.0 } else { -1.0 };
                for r in 0..h {
                    let k = at(c, r, col);
                    x[[i, k]] = clean[[i, k]] + sign * s.eps;
                }
            }
        }
        clip_row(x.row_mut(i).as_slice_mut().unwrap_or(&mut []), s.clip);
    }
    let mut queries = n;
    let mut margin = margins(&defence.query(&x.view())?.view(), labels);
    for it in 1..=s.iterations {
        let live: Vec<usize> = (0..n)
            .filter(|&i| !defence.deterministic() || margin[i] >= 0.0)
            .collect();
        if live.is_empty() {
            break;
        }
        let p = square_fraction(s.p_init, it, s.iterations);
        let side = ((p * (h * w) as f64).sqrt().round() as usize).clamp(1, h.min(w));
        let mut candidates = x.select(Axis(0), &live);
        for (row, &i) in live.iter().enumerate() {
            let r0 = rng.index(h - side + 1);
            let c0 = rng.index(w - side + 1);
            for c in 0..ch {
                let sign = if rng.index(2) == 1 { 1.0 } else { -1.0 };
                for r in r0..r0 + side {
                    for col in c0..c0 + side {
                        let k = at(c, r, col);
                        candidates[[row, k]] =
                            (clean[[i, k]] + sign * s.eps).clamp(s.clip[0], s.clip[1]);
                    }
                }
            }
        }
        let ys: Vec<i64> = live.iter().map(|&i| labels[i]).collect();
        let proposed = margins(&defence.query(&candidates.view())?.view(), &ys);
        queries += live.len();
        for ((row, &i), m) in live.iter().enumerate().zip(proposed) {
            if m < margin[i] {
                margin[i] = m;
                x.row_mut(i).assign(&candidates.row(row));
            }
        }
        progress(it, s.iterations);
    }
    Ok(Made {
        inputs: x,
        queries_per_sample: queries as f64 / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_negative_exactly_when_the_label_is_not_on_top() {
        let p = ndarray::array![[0.7f32, 0.2, 0.1], [0.3, 0.6, 0.1]];
        let m = margins(&p.view(), &[0, 0]);
        assert!((m[0] - (0.7f64 / 0.2).ln()).abs() < 1e-6);
        assert!(m[1] < 0.0);
    }

    #[test]
    fn the_square_schedule_halves_at_its_iterations() {
        assert_eq!(square_fraction(0.8, 1, 10_000), 0.8);
        assert_eq!(square_fraction(0.8, 11, 10_000), 0.4);
        assert_eq!(square_fraction(0.8, 9_000, 10_000), 0.8 / 512.0);
        // Scaled to a budget of 100: iteration 1 is 100 of 10 000, past the first two.
        assert_eq!(square_fraction(0.8, 1, 100), 0.2);
    }

    #[test]
    fn rademacher_signs_are_balanced() {
        let mut rng = SeededRng::new(5);
        let v = rademacher(10_000, &mut rng);
        let plus = v.iter().filter(|&&s| s > 0.0).count();
        assert!((4_700..5_300).contains(&plus), "{plus}");
        assert!(v.iter().all(|&s| s == 1.0 || s == -1.0));
    }
}
