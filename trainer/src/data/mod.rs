//! Data sets: CIFAR-10/100 binary folders, MNIST IDX folders, `.npz` files and `digits`.
//!
//! [`load`] reads a data set into CPU tensors ([`Data`]), validates it, applies the
//! [`DataOptions`] (a training-sample limit, a held-out split) and computes the per-channel
//! normalisation statistics on the training split. The statistics are not applied to the tensors:
//! they are handed to the architecture, whose first layer normalises its input, so that exported
//! models take raw inputs. [`Data::train_batches`] and [`Data::eval_batches`] cut the splits into
//! mini-batches on a device; training batches are shuffled and, for CIFAR, augmented (random
//! crop with zero padding of 4 and horizontal flip), all from a seed.
//!
//! | `spec`                | format                                                                 |
//! |-----------------------|------------------------------------------------------------------------|
//! | `digits`              | scikit-learn's 8x8 digits, the `.npz` at `$MODECONN_DIGITS`            |
//! | `path/to/file.npz`    | `x_train`, `y_train`, `x_test`, `y_test`                               |
//! | a CIFAR-10 folder     | `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`              |
//! | a CIFAR-100 folder    | `train.bin`, `test.bin` (fine labels)                                  |
//! | an MNIST folder       | `train-images-idx3-ubyte` … `t10k-labels-idx1-ubyte`, optionally `.gz` |

mod batches;
mod cifar;
mod mnist;
mod npz;
mod rng;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use tch::{Kind, Tensor};

pub use batches::Batches;

use crate::{Error, Result};

/// Zero padding, in pixels on each side, of the random-crop augmentation.
pub const CROP_PADDING: i64 = 4;

/// One split of a data set: inputs and labels, on the CPU.
pub struct Split {
    /// Inputs, `f32` of shape `[N, ...input]`; 8-bit sources are scaled to `[0, 1]`, floating
    /// point sources are kept as they are.
    pub x: Tensor,
    /// Labels, `i64` of shape `[N]`, in `[0, classes)`.
    pub y: Tensor,
}

impl Split {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.y
            .size()
            .first()
            .map_or(0, |&n| usize::try_from(n).unwrap_or(0))
    }

    /// Whether the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the samples at `index` (an `i64` tensor of positions), in that order.
    fn select(&self, index: &Tensor) -> Result<Split> {
        Ok(Split {
            x: self.x.f_index_select(0, index)?,
            y: self.y.f_index_select(0, index)?,
        })
    }
}

impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("x", &self.x.size())
            .field("y", &self.y.size())
            .finish()
    }
}

/// A loaded data set, on the CPU.
pub struct Data {
    /// A short name: `cifar10`, `cifar100`, `mnist`, `digits`, or the file stem of an `.npz`.
    pub name: String,
    /// The training split (after [`DataOptions::limit`] and [`DataOptions::held_out`]).
    pub train: Split,
    /// The test split, or the held-out part of the training data with
    /// [`DataOptions::held_out`].
    pub test: Split,
    /// One sample's shape, e.g. `[3, 32, 32]`, or `[D]` for flat inputs.
    pub input: Vec<i64>,
    /// The number of classes: 10 for CIFAR-10, 100 for CIFAR-100, at least 10 for MNIST folders,
    /// the largest label plus one over both splits for `.npz` files.
    pub classes: i64,
    /// Mean per input channel (axis 1) over the training split; one value for flat inputs.
    pub mean: Vec<f32>,
    /// Standard deviation (population) per input channel over the training split; one value for
    /// flat inputs. A constant channel gets 1 so that normalising never divides by zero.
    pub std: Vec<f32>,
    /// Whether training batches are augmented (random crop with zero padding of
    /// [`CROP_PADDING`] and horizontal flip): on for CIFAR by default.
    pub augment: bool,
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data")
            .field("name", &self.name)
            .field("train", &self.train)
            .field("test", &self.test)
            .field("input", &self.input)
            .field("classes", &self.classes)
            .field("mean", &self.mean)
            .field("std", &self.std)
            .field("augment", &self.augment)
            .finish()
    }
}

/// How to load a data set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataOptions {
    /// Take this many training samples (after a shuffle seeded by [`DataOptions::seed`]) as the
    /// test split, and drop the real test split: for model selection without touching the test
    /// set. Applied after [`DataOptions::limit`]; must leave at least one training sample.
    pub held_out: Option<usize>,
    /// Seed of the held-out shuffle.
    pub seed: u64,
    /// Turn augmentation on or off (default: on for CIFAR, off otherwise). Augmentation needs
    /// image inputs `[C, H, W]`.
    pub augment: Option<bool>,
    /// Use only the first this many training samples (fast experiments and tests). The test
    /// split is not limited.
    pub limit: Option<usize>,
}

/// What a format reader returns, before validation and options.
struct Raw {
    name: String,
    train: Split,
    test: Split,
    /// Fixed by the format (CIFAR), or `None` to take the largest label plus one.
    classes: Option<i64>,
    /// At least this many classes when `classes` is `None`.
    min_classes: i64,
    augment: bool,
    /// Where the data came from, for messages.
    origin: String,
}

/// A data error naming where the data came from.
fn data_error(origin: impl fmt::Display, detail: impl fmt::Display) -> Error {
    Error::Data(format!("{origin}: {detail}"))
}

/// Loads a data set: `digits`, a path to an `.npz` file, or a CIFAR-10, CIFAR-100 or MNIST
/// folder (detected from the files present).
///
/// # Errors
///
/// [`Error::Data`] when the data set cannot be found or is malformed (the message names the file
/// and what is wrong), or when the options do not fit it; [`Error::Io`] when a file cannot be
/// read.
pub fn load(spec: &str, options: &DataOptions) -> Result<Data> {
    let raw = if spec == "digits" {
        npz::load_digits()?
    } else {
        let path = Path::new(spec);
        if path.is_dir() {
            load_folder(path)?
        } else if path.is_file() {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
            {
                npz::load_npz(path, None)?
            } else {
                return Err(data_error(
                    path.display(),
                    "not an .npz file; expected `digits`, an .npz file or a CIFAR-10, CIFAR-100 \
                     or MNIST folder",
                ));
            }
        } else {
            return Err(data_error(
                path.display(),
                "no such file or folder; expected `digits`, an .npz file or a CIFAR-10, \
                 CIFAR-100 or MNIST folder",
            ));
        }
    };
    finish(raw, options)
}

/// Detects the format of a folder from the files present and reads it.
fn load_folder(dir: &Path) -> Result<Raw> {
    if let Some(root) = cifar::find_cifar10(dir) {
        return cifar::load_cifar10(&root);
    }
    if let Some(root) = cifar::find_cifar100(dir) {
        return cifar::load_cifar100(&root);
    }
    if mnist::is_mnist(dir) {
        return mnist::load_mnist(dir);
    }
    Err(data_error(
        dir.display(),
        format!(
            "no data set found in this folder; looked for CIFAR-10 binary ({}), CIFAR-100 binary \
             ({}) and MNIST IDX ({})",
            cifar::CIFAR10_LOOKED_FOR,
            cifar::CIFAR100_LOOKED_FOR,
            mnist::LOOKED_FOR
        ),
    ))
}

/// The shape of a tensor with the first (sample) axis left out.
fn sample_shape(x: &Tensor) -> Vec<i64> {
    x.size().get(1..).map(<[i64]>::to_vec).unwrap_or_default()
}

/// Checks one split: kinds, matching lengths, at least one sample, finite inputs.
fn check_split(origin: &str, which: &str, split: &Split) -> Result<()> {
    let xs = split.x.size();
    let ys = split.y.size();
    if split.x.kind() != Kind::Float || split.y.kind() != Kind::Int64 {
        return Err(data_error(
            origin,
            format!(
                "internal: {which} split holds {:?} inputs and {:?} labels",
                split.x.kind(),
                split.y.kind()
            ),
        ));
    }
    if ys.len() != 1 {
        return Err(data_error(
            origin,
            format!("{which} labels have shape {ys:?}; expected one label per sample"),
        ));
    }
    if xs.len() < 2 {
        return Err(data_error(
            origin,
            format!("{which} inputs have shape {xs:?}; expected [N, ...]"),
        ));
    }
    if xs[0] != ys[0] {
        return Err(data_error(
            origin,
            format!("{which} split has {} inputs but {} labels", xs[0], ys[0]),
        ));
    }
    if xs[0] == 0 {
        return Err(data_error(origin, format!("{which} split has no samples")));
    }
    if !all_finite(&split.x)? {
        return Err(data_error(
            origin,
            format!("{which} inputs hold NaN or infinite values"),
        ));
    }
    Ok(())
}

/// Smallest and largest label of a split.
fn label_range(split: &Split) -> Result<(i64, i64)> {
    Ok((
        split.y.f_min()?.f_int64_value(&[])?,
        split.y.f_max()?.f_int64_value(&[])?,
    ))
}

/// Validates a raw data set, applies the options and computes the statistics.
fn finish(raw: Raw, options: &DataOptions) -> Result<Data> {
    let origin = raw.origin.as_str();
    check_split(origin, "training", &raw.train)?;
    check_split(origin, "test", &raw.test)?;
    let input = sample_shape(&raw.train.x);
    let test_input = sample_shape(&raw.test.x);
    if input != test_input {
        return Err(data_error(
            origin,
            format!("training samples have shape {input:?} but test samples {test_input:?}"),
        ));
    }
    let (train_min, train_max) = label_range(&raw.train)?;
    let (test_min, test_max) = label_range(&raw.test)?;
    let (min, max) = (train_min.min(test_min), train_max.max(test_max));
    let classes = match raw.classes {
        Some(classes) => classes,
        None => (max + 1).max(raw.min_classes),
    };
    if min < 0 || max >= classes {
        return Err(data_error(
            origin,
            format!("labels must lie in [0, {classes}); found labels from {min} to {max}"),
        ));
    }
    if classes < 2 {
        return Err(data_error(
            origin,
            format!("all labels are {max}: a classifier needs at least two classes"),
        ));
    }

    let augment = options.augment.unwrap_or(raw.augment);
    if augment && input.len() != 3 {
        return Err(data_error(
            origin,
            format!(
                "augmentation (random crop and flip) needs image samples [C, H, W], not \
                 {input:?}"
            ),
        ));
    }

    let mut train = raw.train;
    let mut test = raw.test;
    if let Some(limit) = options.limit {
        if limit == 0 {
            return Err(Error::Data("the training limit must be at least 1".into()));
        }
        if limit < train.len() {
            let n = i64::try_from(limit)
                .map_err(|_| Error::Data(format!("training limit {limit} is too large")))?;
            train = Split {
                x: train.x.f_narrow(0, 0, n)?,
                y: train.y.f_narrow(0, 0, n)?,
            };
        }
    }
    if let Some(held_out) = options.held_out {
        let n = train.len();
        if held_out == 0 || held_out >= n {
            return Err(data_error(
                origin,
                format!(
                    "cannot hold out {held_out} of {n} training samples: hold out at least 1 \
                     and leave at least 1 for training"
                ),
            ));
        }
        let mut order = rng::permutation(n, options.seed);
        let (held, kept) = order.split_at_mut(held_out);
        held.sort_unstable();
        kept.sort_unstable();
        let held = Tensor::f_from_slice(held)?;
        let kept = Tensor::f_from_slice(kept)?;
        test = train.select(&held)?;
        train = train.select(&kept)?;
    }
    let (mean, std) = statistics(&train.x)?;
    Ok(Data {
        name: raw.name,
        train,
        test,
        input,
        classes,
        mean,
        std,
        augment,
    })
}

/// Calls `f` on the values of `x` (`f32`, on the CPU) in chunks of whole samples, about a
/// million values at a time, so that large data sets are walked without a full copy.
fn for_each_chunk(x: &Tensor, mut f: impl FnMut(&[f32])) -> Result<()> {
    let n = x.size().first().copied().unwrap_or(0);
    let per_sample = sample_shape(x).iter().product::<i64>().max(1);
    let step = ((1 << 20) / per_sample).max(1);
    let mut buffer = Vec::new();
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        let chunk = x.f_narrow(0, start, len)?;
        let numel = (len * per_sample) as usize;
        buffer.resize(numel, 0.0_f32);
        chunk.f_copy_data(&mut buffer, numel)?;
        f(&buffer);
        start += len;
    }
    Ok(())
}

/// Whether every value of `x` is finite.
fn all_finite(x: &Tensor) -> Result<bool> {
    let mut finite = true;
    for_each_chunk(x, |values| finite &= values.iter().all(|v| v.is_finite()))?;
    Ok(finite)
}

/// Mean and population standard deviation per channel (axis 1) of `[N, C, ...]` inputs, or one
/// value each over everything for flat `[N, D]` inputs. Accumulated in `f64`, shifted by each
/// channel's first value for accuracy.
fn statistics(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let shape = sample_shape(x);
    let per_sample = shape.iter().product::<i64>().max(1) as usize;
    let channels = if shape.len() > 1 {
        shape[0].max(1) as usize
    } else {
        1
    };
    let plane = per_sample / channels;
    let mut shift: Option<Vec<f64>> = None;
    let mut sum = vec![0.0_f64; channels];
    let mut squares = vec![0.0_f64; channels];
    let mut count = 0_usize;
    for_each_chunk(x, |values| {
        let shift = shift.get_or_insert_with(|| {
            (0..channels)
                .map(|c| values.get(c * plane).map_or(0.0, |&v| f64::from(v)))
                .collect()
        });
        for sample in values.chunks_exact(per_sample) {
            for (c, channel) in sample.chunks_exact(plane).enumerate() {
                let (mut s, mut q) = (0.0_f64, 0.0_f64);
                for &v in channel {
                    let d = f64::from(v) - shift[c];
                    s += d;
                    q += d * d;
                }
                sum[c] += s;
                squares[c] += q;
            }
            count += plane;
        }
    })?;
    let shift = shift.unwrap_or_else(|| vec![0.0; channels]);
    let count = count.max(1) as f64;
    let mut mean = Vec::with_capacity(channels);
    let mut std = Vec::with_capacity(channels);
    for c in 0..channels {
        let m = sum[c] / count;
        let var = (squares[c] / count - m * m).max(0.0);
        mean.push((shift[c] + m) as f32);
        let s = var.sqrt();
        std.push(if s > 1e-12 { s as f32 } else { 1.0 });
    }
    Ok((mean, std))
}
