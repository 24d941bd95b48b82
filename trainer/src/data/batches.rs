//! Mini-batches: seeded shuffles and augmentation for training, in order for evaluation.

use tch::{Device, Tensor};

use super::rng::{self, SplitMix64};
use super::{CROP_PADDING, Data, Split};
use crate::{Error, Result};

/// An iterator over the mini-batches `(x, y)` of a split, each moved to a device.
///
/// The data stay on the CPU; each batch is gathered there and then moved. The last batch may
/// be smaller than the batch size. Made by [`Data::train_batches`] and [`Data::eval_batches`].
pub struct Batches {
    x: Tensor,
    y: Tensor,
    /// Sample order for training batches; `None` keeps the split's order.
    order: Option<Tensor>,
    batch_size: i64,
    next: i64,
    n: i64,
    device: Device,
    /// The augmentation's generator, when training batches are augmented.
    augment: Option<SplitMix64>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("samples", &self.n)
            .field("batch_size", &self.batch_size)
            .field("next", &self.next)
            .field("shuffled", &self.order.is_some())
            .field("augmented", &self.augment.is_some())
            .field("device", &self.device)
            .finish()
    }
}

/// The batch size as an `i64`, refusing 0.
fn batch_size(batch_size: usize) -> Result<i64> {
    if batch_size == 0 {
        return Err(Error::Config("the batch size must be at least 1".into()));
    }
    i64::try_from(batch_size)
        .map_err(|_| Error::Config(format!("batch size {batch_size} is too large")))
}

impl Data {
    /// The number of training batches of an epoch (the last one may be partial).
    pub fn train_steps(&self, batch_size: usize) -> usize {
        self.train.len().div_ceil(batch_size.max(1))
    }

    /// The training split in mini-batches of `batch_size`, in an order drawn from `epoch_seed`
    /// (the same seed gives the same batches), augmented when [`Data::augment`] is set: each
    /// image is padded with [`CROP_PADDING`] zeros on every side, cropped back to its size at a
    /// random offset and flipped horizontally with probability ½, all drawn from `epoch_seed`.
    /// The last, partial batch is kept.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `batch_size` is 0.
    pub fn train_batches(
        &self,
        batch_size: usize,
        epoch_seed: u64,
        device: Device,
    ) -> Result<Batches> {
        let batch_size = self::batch_size(batch_size)?;
        let n = self.train.len();
        let order = rng::shuffle(n, &mut SplitMix64::new(epoch_seed, rng::STREAM_ORDER));
        let augment = (self.augment && self.train.x.dim() == 4)
            .then(|| SplitMix64::new(epoch_seed, rng::STREAM_AUGMENT));
        Ok(Batches {
            x: self.train.x.shallow_clone(),
            y: self.train.y.shallow_clone(),
            order: Some(Tensor::f_from_slice(&order)?),
            batch_size,
            next: 0,
            n: n as i64,
            device,
            augment,
        })
    }

    /// `split` (usually [`Data::test`] or [`Data::train`]) in mini-batches of `batch_size`, in
    /// order and without augmentation. The last, partial batch is kept.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `batch_size` is 0.
    pub fn eval_batches(
        &self,
        split: &Split,
        batch_size: usize,
        device: Device,
    ) -> Result<Batches> {
        let batch_size = self::batch_size(batch_size)?;
        Ok(Batches {
            x: split.x.shallow_clone(),
            y: split.y.shallow_clone(),
            order: None,
            batch_size,
            next: 0,
            n: split.len() as i64,
            device,
            augment: None,
        })
    }
}

impl Batches {
    /// The number of samples the batches cover.
    pub fn samples(&self) -> usize {
        self.n as usize
    }

    /// Gathers the batch starting at `start` with `len` samples.
    fn batch(&mut self, start: i64, len: i64) -> Result<(Tensor, Tensor)> {
        let (x, y) = match &self.order {
            Some(order) => {
                let index = order.f_narrow(0, start, len)?;
                (
                    self.x.f_index_select(0, &index)?,
                    self.y.f_index_select(0, &index)?,
                )
            }
            None => (
                self.x.f_narrow(0, start, len)?.f_contiguous()?,
                self.y.f_narrow(0, start, len)?.f_contiguous()?,
            ),
        };
        let x = match &mut self.augment {
            Some(rng) => crop_and_flip(&x, rng)?,
            None => x,
        };
        Ok((x.f_to_device(self.device)?, y.f_to_device(self.device)?))
    }
}

/// Pads `[B, C, H, W]` images (on the CPU) with [`CROP_PADDING`] zeros on every side, crops
/// each back to `H x W` at an offset drawn from `rng` and flips it horizontally with
/// probability ½. Done on the host, so that a seed gives the same pixels on every device.
fn crop_and_flip(x: &Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
    let size = x.size();
    let &[b, c, h, w] = size.as_slice() else {
        return Err(Error::Data(format!(
            "augmentation needs a batch of images [B, C, H, W], not {size:?}"
        )));
    };
    let (b, c, h, w) = (b as usize, c as usize, h as usize, w as usize);
    let p = CROP_PADDING as usize;
    let span = (2 * p + 1) as u64;
    let numel = b * c * h * w;
    let mut input = vec![0.0_f32; numel];
    x.f_copy_data(&mut input, numel)?;
    let mut output = vec![0.0_f32; numel];
    let plane = h * w;
    for sample in 0..b {
        // Offsets into the padded image; source row/column = offset + i - p.
        let dy = rng.below(span) as usize;
        let dx = rng.below(span) as usize;
        let flip = rng.next_u64() >> 63 == 1;
        for channel in 0..c {
            let base = (sample * c + channel) * plane;
            let (src, dst) = (&input[base..base + plane], &mut output[base..base + plane]);
            for i in 0..h {
                let Some(row) = (dy + i).checked_sub(p).filter(|&r| r < h) else {
                    continue;
                };
                for j in 0..w {
                    let k = if flip { w - 1 - j } else { j };
                    if let Some(col) = (dx + k).checked_sub(p).filter(|&q| q < w) {
                        dst[i * w + j] = src[row * w + col];
                    }
                }
            }
        }
    }
    Ok(Tensor::f_from_slice(&output)?.f_view(size.as_slice())?)
}

impl Iterator for Batches {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.n {
            return None;
        }
        let start = self.next;
        let len = self.batch_size.min(self.n - start);
        self.next = start + len;
        Some(self.batch(start, len))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.n - self.next).max(0) as u64;
        let batches = left.div_ceil(self.batch_size as u64) as usize;
        (batches, Some(batches))
    }
}

impl ExactSizeIterator for Batches {}
