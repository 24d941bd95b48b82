//! From a member's logits to what a prediction returns: probabilities, entropy, the predicted
//! class and the members' disagreement.

use ndarray::{Array1, Array2};

use crate::{Error, Result};

/// The logits `[batch, classes]` of a session's output `name`.
pub(super) fn logits_of(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    classes: usize,
) -> Result<Array2<f32>> {
    let value = outputs.get(name).ok_or_else(|| {
        Error::onnx(
            format!("graph output `{name}`"),
            "was not produced by the session",
        )
    })?;
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    match dims.as_slice() {
        &[rows, c] if c == classes => Array2::from_shape_vec((rows, c), data.to_vec())
            .map_err(|e| Error::onnx(format!("graph output `{name}`"), e.to_string())),
        _ => Err(Error::ShapeMismatch {
            tensor: name.to_string(),
            expected: vec![-1, classes as i64],
            found: shape.iter().copied().collect(),
        }),
    }
}

/// Row-wise `softmax(logits / temperature)`, stable for large logits.
pub(super) fn softmax(mut logits: Array2<f32>, temperature: f32) -> Array2<f32> {
    for mut row in logits.rows_mut() {
        let max = row
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v / temperature));
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v / temperature - max).exp();
            sum += *v;
        }
        row.mapv_inplace(|v| v / sum);
    }
    logits
}

/// The entropy (nats) of each row of probabilities, summed in single precision in class order
/// (what [`Prediction::entropy`](super::Prediction::entropy) holds).
pub fn entropy(p: &Array2<f32>) -> Array1<f32> {
    Array1::from_iter(p.rows().into_iter().map(|r| {
        -r.iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| v * v.ln())
            .sum::<f32>()
    }))
}

/// For each sample, the fraction of members whose top class (`argmaxes[member][sample]`)
/// differs from the ensemble's (the argmax of `mean`): what
/// [`Prediction::disagreement`](super::Prediction::disagreement) holds.
pub fn disagreement(mean: &Array2<f32>, argmaxes: &[Vec<usize>]) -> Array1<f32> {
    let members = argmaxes.len().max(1) as f32;
    Array1::from_iter(mean.rows().into_iter().enumerate().map(|(i, row)| {
        let top = argmax(row.iter());
        argmaxes.iter().filter(|a| a[i] != top).count() as f32 / members
    }))
}

/// Index of the largest value (the first one on ties; 0 for an empty row): the predicted class
/// of a row of probabilities.
pub fn argmax<'a>(values: impl Iterator<Item = &'a f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
