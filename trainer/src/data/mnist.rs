//! MNIST-style IDX folders (also Fashion-MNIST, KMNIST...).
//!
//! Four files, each optionally gzipped (`.gz`): `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`. Images start
//! with the magic number 2051 and three big-endian `u32` dimensions (count, rows, columns), labels
//! with 2049 and the count; the bytes follow.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tch::{Kind, Tensor};

use super::{Raw, Split, data_error};
use crate::{Error, Result};

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// What [`is_mnist`] looks for, for messages.
pub(super) const LOOKED_FOR: &str = "train-images-idx3-ubyte, train-labels-idx1-ubyte, \
     t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally .gz";

/// The file for `name` in `dir`: plain, or else gzipped.
fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    [plain, gz].into_iter().find(|p| p.is_file())
}

/// Whether `dir` holds MNIST IDX files.
pub(super) fn is_mnist(dir: &Path) -> bool {
    [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
        .iter()
        .any(|name| locate(dir, name).is_some())
}

/// Reads the file for `name` in `dir`, gunzipping `.gz` files.
fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = locate(dir, name).ok_or_else(|| {
        data_error(
            dir.display(),
            format!("MNIST folder lacks {name} (or {name}.gz)"),
        )
    })?;
    let raw = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut bytes = Vec::new();
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut bytes)
            .map_err(|e| data_error(path.display(), format!("not a valid gzip file: {e}")))?;
        Ok((path, bytes))
    } else {
        Ok((path, raw))
    }
}

/// Parses an IDX header: checks the magic number and returns the dimensions and the payload.
fn header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    dims: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let head = 4 * (dims + 1);
    if bytes.len() < head {
        return Err(data_error(
            path.display(),
            format!(
                "truncated IDX header: {} bytes, expected at least {head}",
                bytes.len()
            ),
        ));
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(data_error(
            path.display(),
            format!(
                "bad magic number {found} (0x{found:08x}); expected {magic} for {}",
                if magic == IMAGES_MAGIC {
                    "an IDX image file (unsigned bytes, 3 dimensions)"
                } else {
                    "an IDX label file (unsigned bytes, 1 dimension)"
                }
            ),
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let expected = shape.iter().product::<usize>();
    let data = &bytes[head..];
    if data.len() != expected {
        return Err(data_error(
            path.display(),
            format!(
                "{} the header's dimensions {shape:?} call for {expected} bytes of data, the file \
                 holds {}",
                if data.len() < expected {
                    "truncated:"
                } else {
                    "trailing bytes:"
                },
                data.len()
            ),
        ));
    }
    Ok((shape, data))
}

/// Reads one split (images and labels).
fn read_split(dir: &Path, images: &str, labels: &str) -> Result<Split> {
    let (image_path, image_bytes) = read(dir, images)?;
    let (image_shape, pixels) = header(&image_path, &image_bytes, IMAGES_MAGIC, 3)?;
    let (label_path, label_bytes) = read(dir, labels)?;
    let (label_shape, label_data) = header(&label_path, &label_bytes, LABELS_MAGIC, 1)?;
    if image_shape[0] != label_shape[0] {
        return Err(data_error(
            dir.display(),
            format!(
                "{} holds {} images but {} holds {} labels",
                image_path.display(),
                image_shape[0],
                label_path.display(),
                label_shape[0]
            ),
        ));
    }
    let shape: Vec<i64> = [image_shape[0], 1, image_shape[1], image_shape[2]]
        .iter()
        .map(|&d| d as i64)
        .collect();
    let mut x = Tensor::f_from_slice(pixels)?
        .f_view(shape.as_slice())?
        .f_to_kind(Kind::Float)?;
    let _ = x.f_div_scalar_(255.0)?;
    let y = Tensor::f_from_slice(label_data)?.f_to_kind(Kind::Int64)?;
    Ok(Split { x, y })
}

/// Reads an MNIST IDX folder. The number of classes is the largest label plus one, at least 10.
pub(super) fn load_mnist(dir: &Path) -> Result<Raw> {
    Ok(Raw {
        name: "mnist".into(),
        train: read_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?,
        test: read_split(dir, TEST_IMAGES, TEST_LABELS)?,
        classes: None,
        min_classes: 10,
        augment: false,
        origin: dir.display().to_string(),
    })
}
