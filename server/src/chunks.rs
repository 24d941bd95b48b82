//! A batch's prediction in chunks, so that a request whose deadline has passed, or whose client
//! has gone, stops taking a worker within one chunk instead of running to its end.
//!
//! Shared member sets are split by members (each chunk runs some members on the whole batch),
//! per-sample modes by samples. The chunks' results are put together exactly as
//! [`Ensemble::predict`] would have made them in one call: the mean of the members' probabilities
//! is summed in member order in single precision and divided once, and the entropy and the
//! disagreement are computed from it in the same way, so chunked and whole answers are the same
//! bit for bit. A batch of at most [`CHUNK_WORK`] member-samples runs in one call.

use modeconn_runtime::ensemble::{argmax, disagreement, entropy};
use modeconn_runtime::{Ensemble, Member, Prediction, Sampling};
use ndarray::{Array2, Array3, ArrayViewD, Axis, concatenate};

use crate::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// Member-samples (members times samples; samples in per-sample modes) per chunk.
pub const CHUNK_WORK: usize = 4096;

/// Predicts `input` with `sampling` as [`Ensemble::predict`] does, in chunks of about
/// [`CHUNK_WORK`] member-samples, asking `go_on` before each chunk after the first; `None`
/// when it said to stop. A runtime failure becomes the request's error.
pub fn predict(
    ensemble: &Ensemble,
    input: ArrayViewD<'_, f32>,
    sampling: &Sampling,
    per_member: bool,
    go_on: impl Fn() -> bool,
) -> Result<Option<Prediction>> {
    let batch = input.shape().first().copied().unwrap_or(0);
    if sampling.is_per_sample() {
        if batch <= CHUNK_WORK {
            return run(ensemble, input, sampling, per_member).map(Some);
        }
        return by_samples(ensemble, input, sampling, go_on);
    }
    let members = ensemble
        .members(sampling, &input)
        .map_err(|e| ApiError::runtime(&e))?;
    if members.len().saturating_mul(batch) <= CHUNK_WORK {
        return run(ensemble, input, sampling, per_member).map(Some);
    }
    by_members(ensemble, input, &members, per_member, go_on)
}

/// One call of the runtime.
fn run(
    ensemble: &Ensemble,
    input: ArrayViewD<'_, f32>,
    sampling: &Sampling,
    per_member: bool,
) -> Result<Prediction> {
    ensemble
        .predict(input, sampling, per_member)
        .map_err(|e| ApiError::runtime(&e))
}

/// Per-sample modes: consecutive rows, each chunk with its own points.
fn by_samples(
    ensemble: &Ensemble,
    input: ArrayViewD<'_, f32>,
    sampling: &Sampling,
    go_on: impl Fn() -> bool,
) -> Result<Option<Prediction>> {
    let batch = input.shape()[0];
    let mut parts: Vec<Prediction> = Vec::new();
    for start in (0..batch).step_by(CHUNK_WORK) {
        if start > 0 && !go_on() {
            return Ok(None);
        }
        let rows = input.slice_axis(Axis(0), (start..(start + CHUNK_WORK).min(batch)).into());
        parts.push(run(ensemble, rows, sampling, false)?);
    }
    let probabilities: Vec<_> = parts.iter().map(|p| p.probabilities.view()).collect();
    let entropy: Vec<_> = parts.iter().map(|p| p.entropy.view()).collect();
    let joined = |e: ndarray::ShapeError| ApiError::internal(format!("joining chunks: {e}"));
    Ok(Some(Prediction {
        probabilities: concatenate(Axis(0), &probabilities).map_err(joined)?,
        entropy: concatenate(Axis(0), &entropy).map_err(joined)?,
        members: parts
            .iter()
            .flat_map(|p| p.members.iter().copied())
            .collect(),
        per_sample: true,
        per_member: None,
        disagreement: None,
        provider: ensemble.provider(),
    }))
}

/// Shared member sets: a few members at a time over the whole batch.
fn by_members(
    ensemble: &Ensemble,
    input: ArrayViewD<'_, f32>,
    members: &[Member],
    per_member: bool,
    go_on: impl Fn() -> bool,
) -> Result<Option<Prediction>> {
    let batch = input.shape()[0];
    let classes = ensemble.bundle().metadata().output.classes;
    let step = (CHUNK_WORK / batch).max(1);
    // Made from the first chunk's output, as the runtime does, so a bundle claiming more
    // classes than its graph makes allocates nothing.
    let mut mean: Option<Array2<f32>> = None;
    let mut all: Option<Array3<f32>> = None;
    let mut argmaxes: Vec<Vec<usize>> = Vec::with_capacity(members.len());
    for (c, chunk) in members.chunks(step).enumerate() {
        if c > 0 && !go_on() {
            return Ok(None);
        }
        let part = run(ensemble, input.view(), &only(chunk), true)?;
        let Some(probs) = part.per_member else {
            return Err(ApiError::internal(
                "a chunk came back without its per-member probabilities",
            ));
        };
        for (j, p) in probs.outer_iter().enumerate() {
            match mean.as_mut() {
                Some(m) => *m += &p,
                None => mean = Some(p.to_owned()),
            }
            argmaxes.push(p.rows().into_iter().map(|r| argmax(r.iter())).collect());
            if per_member {
                all.get_or_insert_with(|| Array3::zeros((members.len(), batch, classes)))
                    .index_axis_mut(Axis(0), c * step + j)
                    .assign(&p);
            }
        }
    }
    let Some(mut mean) = mean else {
        return Err(ApiError::internal("a prediction without members"));
    };
    mean /= members.len() as f32;
    Ok(Some(Prediction {
        entropy: entropy(&mean),
        disagreement: Some(disagreement(&mean, &argmaxes)),
        probabilities: mean,
        per_member: all,
        members: members.to_vec(),
        per_sample: false,
        provider: ensemble.provider(),
    }))
}

/// The sampling that selects exactly `members`, in order (all of one kind, as a sampling
/// selects them).
fn only(members: &[Member]) -> Sampling {
    let indices: Option<Vec<usize>> = members
        .iter()
        .map(|m| match m {
            Member::Index(i) => Some(*i),
            Member::T(_) => None,
        })
        .collect();
    indices.map_or_else(
        || {
            Sampling::At(
                members
                    .iter()
                    .map(|m| match m {
                        Member::T(t) => *t,
                        Member::Index(i) => *i as f64,
                    })
                    .collect(),
            )
        },
        Sampling::Members,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_the_members_in_order() {
        assert_eq!(
            only(&[Member::T(0.5), Member::T(0.25)]),
            Sampling::At(vec![0.5, 0.25])
        );
        assert_eq!(
            only(&[Member::Index(2), Member::Index(0)]),
            Sampling::Members(vec![2, 0])
        );
    }

    #[test]
    fn entropy_and_disagreement_follow_the_runtime() {
        let mean = ndarray::array![[0.5f32, 0.5, 0.0], [0.0, 1.0, 0.0]];
        let h = entropy(&mean);
        assert!((h[0] - std::f32::consts::LN_2).abs() < 1e-6 && h[1] == 0.0);
        let d = disagreement(&mean, &[vec![0, 1], vec![1, 1], vec![2, 1]]);
        assert_eq!(d.to_vec(), vec![2.0 / 3.0, 0.0]);
    }
}
