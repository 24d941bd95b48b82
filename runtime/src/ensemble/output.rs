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

/// Bins of [`calibration_error`] by default: 15, as in Guo et al. (2017).
pub const CALIBRATION_BINS: usize = 15;

/// One bin of confidence of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    /// The bin holds confidences in `(lower, upper]` (the first also holds 0).
    pub lower: f64,
    /// Its upper end.
    pub upper: f64,
    /// Samples whose confidence falls in it.
    pub count: usize,
    /// Their mean confidence (the top probability); 0 when the bin is empty.
    pub confidence: f64,
    /// The fraction of them predicted right; 0 when the bin is empty.
    pub accuracy: f64,
}

/// The reliability diagram of probabilities `[batch, classes]` against labels: the samples
/// put in `bins` equal bins of confidence (the top probability, bin `b` holding
/// `(b / bins, (b + 1) / bins]`), with each bin's count, mean confidence and accuracy.
///
/// Fails when the labels do not match the rows, a label is not a class, or `bins` is 0.
pub fn reliability(
    probs: &ndarray::ArrayView2<'_, f32>,
    labels: &[i64],
    bins: usize,
) -> Result<Vec<ReliabilityBin>> {
    check_labels(probs, labels)?;
    if bins == 0 {
        return Err(Error::invalid(
            "a calibration error",
            "needs at least one bin",
        ));
    }
    let mut count = vec![0usize; bins];
    let mut confidence = vec![0.0f64; bins];
    let mut correct = vec![0usize; bins];
    for (row, &y) in probs.rows().into_iter().zip(labels) {
        let top = argmax(row.iter());
        let conf = f64::from(row[top]).clamp(0.0, 1.0);
        let b = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        confidence[b] += conf;
        correct[b] += usize::from(top as i64 == y);
    }
    Ok((0..bins)
        .map(|b| {
            let k = count[b].max(1) as f64;
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                confidence: confidence[b] / k,
                accuracy: correct[b] as f64 / k,
            }
        })
        .collect())
}

/// The expected calibration error of probabilities `[batch, classes]` against labels: the
/// gaps between each [`reliability`] bin's accuracy and its mean confidence, averaged with
/// the bins' shares of the samples as weights.
///
/// Fails when the labels do not match the rows, a label is not a class, or `bins` is 0.
pub fn calibration_error(
    probs: &ndarray::ArrayView2<'_, f32>,
    labels: &[i64],
    bins: usize,
) -> Result<f64> {
    let n = labels.len().max(1) as f64;
    Ok(reliability(probs, labels, bins)?
        .iter()
        .map(|b| (b.count as f64 / n) * (b.accuracy - b.confidence).abs())
        .sum())
}

/// The Brier score: the mean over samples of `Σ_c (p_c − [c = y])²`.
///
/// Fails when the labels do not match the rows or a label is not a class.
pub fn brier_score(probs: &ndarray::ArrayView2<'_, f32>, labels: &[i64]) -> Result<f64> {
    check_labels(probs, labels)?;
    let total: f64 = probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &y)| {
            row.iter()
                .enumerate()
                .map(|(c, &p)| {
                    let d = f64::from(p) - f64::from(u8::from(c as i64 == y));
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    Ok(total / labels.len().max(1) as f64)
}

fn check_labels(probs: &ndarray::ArrayView2<'_, f32>, labels: &[i64]) -> Result<()> {
    if labels.len() != probs.nrows() {
        return Err(Error::invalid(
            format!("{} labels", labels.len()),
            format!("do not match a batch of {}", probs.nrows()),
        ));
    }
    let classes = probs.ncols() as i64;
    if let Some(&y) = labels.iter().find(|&&y| !(0..classes).contains(&y)) {
        return Err(Error::invalid(
            format!("label {y}"),
            format!("is not one of the {classes} classes"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn calibration_error_weighs_each_bins_gap() {
        // Two samples at confidence 0.9 (one right), one at 0.6 (right), with 10 bins:
        // bin (0.8, 0.9] has accuracy 0.5 against 0.9, bin (0.5, 0.6] accuracy 1 against 0.6.
        let p = array![[0.9f32, 0.1], [0.9, 0.1], [0.4, 0.6]];
        let ece = calibration_error(&p.view(), &[0, 1, 1], 10).expect("ece");
        let expected = (2.0 / 3.0) * (0.5f64 - 0.9).abs() + (1.0 / 3.0) * (1.0f64 - 0.6).abs();
        assert!((ece - expected).abs() < 1e-6, "{ece} vs {expected}");
        // Perfectly confident and right: no gap.
        let sure = array![[1.0f32, 0.0], [0.0, 1.0]];
        assert_eq!(
            calibration_error(&sure.view(), &[0, 1], 15).expect("ece"),
            0.0
        );
    }

    #[test]
    fn reliability_bins_hold_each_sample_once_with_its_confidence_and_accuracy() {
        let p = array![[0.9f32, 0.1], [0.9, 0.1], [0.35, 0.65]];
        let bins = reliability(&p.view(), &[0, 1, 1], 10).expect("bins");
        assert_eq!(bins.len(), 10);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 3);
        // (0.8, 0.9]: two samples, one right; (0.6, 0.7]: one, right; the rest empty.
        let (high, mid) = (bins[8], bins[6]);
        assert!((high.lower - 0.8).abs() < 1e-12 && (high.upper - 0.9).abs() < 1e-12);
        assert_eq!((high.count, high.accuracy), (2, 0.5));
        assert!((high.confidence - 0.9).abs() < 1e-6);
        assert_eq!((mid.count, mid.accuracy), (1, 1.0));
        assert!((mid.confidence - 0.65).abs() < 1e-6);
        assert!(
            bins.iter()
                .filter(|b| b.count == 0)
                .all(|b| b.confidence == 0.0 && b.accuracy == 0.0)
        );
    }

    #[test]
    fn brier_score_is_the_mean_squared_distance_to_the_label() {
        let p = array![[0.75f32, 0.25], [0.5, 0.5]];
        let b = brier_score(&p.view(), &[0, 1]).expect("brier");
        assert!((b - (2.0 * 0.0625 + 2.0 * 0.25) / 2.0).abs() < 1e-9, "{b}");
    }

    #[test]
    fn labels_that_do_not_fit_are_refused() {
        let p = array![[0.5f32, 0.5]];
        assert!(brier_score(&p.view(), &[0, 1]).is_err());
        assert!(calibration_error(&p.view(), &[2], 15).is_err());
        assert!(calibration_error(&p.view(), &[0], 0).is_err());
    }
}
