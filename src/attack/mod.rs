//! Measuring a serving mode against attacks: the defence as the runtime answers it, its
//! accuracy on clean and adversarial inputs (with resubmissions in randomised mode), intervals,
//! and the score-based black-box attacks ([`blackbox`]) that only query it.

pub mod blackbox;

use modeconn_jobs::Norm;
use modeconn_runtime::ensemble::argmax;
use modeconn_runtime::{Ensemble, Sampling};
use ndarray::{Array2, ArrayView2, Axis, IxDyn};

/// Rows sent to the runtime in one call at most.
const QUERY_ROWS: usize = 4096;

/// A serving mode of one bundle, answering as `predict` and `serve` do.
pub struct Defence<'a> {
    /// The ensemble.
    pub ensemble: &'a Ensemble,
    /// Its sampling: the mode.
    pub sampling: Sampling,
    /// One input's shape, without the batch axis.
    pub input_shape: Vec<usize>,
}

impl Defence<'_> {
    /// Whether the same input always gets the same answer (every mode but `randomized`).
    pub fn deterministic(&self) -> bool {
        !matches!(self.sampling, Sampling::Randomized { .. })
    }

    /// The defence's mean probabilities for rows of flattened inputs, `[rows, classes]`. In
    /// randomised mode every call draws afresh, as the server does per query.
    pub fn query(&self, rows: &ArrayView2<'_, f32>) -> anyhow::Result<Array2<f32>> {
        let mut parts: Vec<Array2<f32>> = Vec::new();
        for chunk in rows.axis_chunks_iter(Axis(0), QUERY_ROWS) {
            let mut shape = vec![chunk.nrows()];
            shape.extend(&self.input_shape);
            let input = chunk
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))?;
            let p = self.ensemble.predict(input.view(), &self.sampling, false)?;
            parts.push(p.probabilities);
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        Ok(ndarray::concatenate(Axis(0), &views)?)
    }

    /// The top class the defence gives each row.
    pub fn classify(&self, rows: &ArrayView2<'_, f32>) -> anyhow::Result<Vec<usize>> {
        let p = self.query(rows)?;
        Ok(p.axis_iter(Axis(0)).map(|r| argmax(r.iter())).collect())
    }
}

/// How the defence did on a set of inputs.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whether the first answer to each sample was right.
    pub first: Vec<bool>,
    /// Right answers over all submissions, per sample.
    pub right: Vec<usize>,
    /// Submissions of each sample.
    pub submissions: usize,
    /// Whether the most frequent answer over the submissions was right (ties go to the
    /// smallest class).
    pub vote: Vec<bool>,
}

impl Outcome {
    /// The fraction of right answers over every submission: the accuracy of fresh draws.
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.right.iter().sum();
        total as f64 / (self.right.len() * self.submissions).max(1) as f64
    }

    /// The fraction of samples whose majority vote is right.
    pub fn vote_accuracy(&self) -> f64 {
        fraction(&self.vote)
    }
}

/// The fraction of `true`.
pub fn fraction(v: &[bool]) -> f64 {
    v.iter().filter(|&&b| b).count() as f64 / v.len().max(1) as f64
}

/// Submits every row `submissions` times (once for a deterministic defence, whose answers
/// cannot change) and counts the right answers.
pub fn evaluate(
    defence: &Defence<'_>,
    rows: &ArrayView2<'_, f32>,
    labels: &[i64],
    submissions: usize,
    classes: usize,
) -> anyhow::Result<Outcome> {
    let submissions = if defence.deterministic() {
        1
    } else {
        submissions.max(1)
    };
    let n = rows.nrows();
    let mut votes = vec![vec![0usize; classes]; n];
    let mut first = vec![false; n];
    let mut right = vec![0usize; n];
    for s in 0..submissions {
        let top = defence.classify(rows)?;
        for (i, &c) in top.iter().enumerate() {
            let ok = c as i64 == labels[i];
            if s == 0 {
                first[i] = ok;
            }
            right[i] += usize::from(ok);
            if let Some(v) = votes[i].get_mut(c) {
                *v += 1;
            }
        }
    }
    let vote = votes
        .iter()
        .zip(labels)
        .map(|(v, &y)| {
            let best =
                v.iter().enumerate().fold(
                    (0usize, 0usize),
                    |b, (c, &k)| if k > b.1 { (c, k) } else { b },
                );
            best.0 as i64 == y
        })
        .collect();
    Ok(Outcome {
        first,
        right,
        submissions,
        vote,
    })
}

/// The Wilson score interval at 95% for a fraction `p` of successes in `n` trials.
pub fn wilson(p: f64, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    // At p = 0 (p = 1) the bound is 0 (1) exactly; the formula leaves a rounding error there.
    let lo = if p <= 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if p >= 1.0 {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    [lo, hi]
}

/// Clips every value of a row to `[lo, hi]`.
pub fn clip_row(row: &mut [f32], clip: [f32; 2]) {
    for v in row {
        *v = v.clamp(clip[0], clip[1]);
    }
}

/// Moves `row` into the ball of radius `eps` around `clean`.
pub fn project_row(row: &mut [f32], clean: &[f32], norm: Norm, eps: f32) {
    match norm {
        Norm::Linf => {
            for (v, &c) in row.iter_mut().zip(clean) {
                *v = v.clamp(c - eps, c + eps);
            }
        }
        Norm::L2 => {
            let len = row
                .iter()
                .zip(clean)
                .map(|(v, c)| (v - c) * (v - c))
                .sum::<f32>()
                .sqrt();
            if len > eps {
                let scale = eps / len;
                for (v, &c) in row.iter_mut().zip(clean) {
                    *v = c + (*v - c) * scale;
                }
            }
        }
    }
}

/// The largest norm of a perturbation over the rows.
pub fn max_norm(adv: &ArrayView2<'_, f32>, clean: &ArrayView2<'_, f32>, norm: Norm) -> f64 {
    adv.axis_iter(Axis(0))
        .zip(clean.axis_iter(Axis(0)))
        .map(|(a, c)| {
            let d = a.iter().zip(c.iter()).map(|(x, y)| f64::from(x - y).abs());
            match norm {
                Norm::Linf => d.fold(0.0, f64::max),
                Norm::L2 => d.map(|v| v * v).sum::<f64>().sqrt(),
            }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_hold_the_estimate_and_narrow_with_n() {
        let [lo, hi] = wilson(0.5, 100);
        assert!(
            (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
            "{lo} {hi}"
        );
        let [lo0, hi0] = wilson(0.0, 50);
        assert_eq!(lo0, 0.0);
        assert!(hi0 > 0.05 && hi0 < 0.1, "{hi0}");
        let wide = wilson(0.9, 20);
        let narrow = wilson(0.9, 2000);
        assert!(wide[1] - wide[0] > narrow[1] - narrow[0]);
    }

    #[test]
    fn projection_keeps_the_ball() {
        let clean = [0.5f32, 0.5, 0.5];
        let mut row = [0.9f32, 0.1, 0.5];
        project_row(&mut row, &clean, Norm::Linf, 0.1);
        assert_eq!(row, [0.6, 0.4, 0.5]);
        let mut row = [1.5f32, 0.5, 0.5];
        project_row(&mut row, &clean, Norm::L2, 0.5);
        assert!((row[0] - 1.0).abs() < 1e-6);
    }
}
