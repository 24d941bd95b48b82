//! CIFAR-10 and CIFAR-100 in their binary versions.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, records of one label byte and 3,072 pixel bytes (red, green, blue planes of
//! 32x32, row by row). CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, records of a
//! coarse label byte, a fine label byte and the same 3,072 pixel bytes; the fine label (100
//! classes) is used.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::{Raw, Split, data_error};
use crate::{Error, Result};

const SIDE: i64 = 32;
const PIXELS: usize = 3 * 32 * 32;
const TRAIN10: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST10: &str = "test_batch.bin";
const SUBFOLDER10: &str = "cifar-10-batches-bin";
const TRAIN100: &str = "train.bin";
const TEST100: &str = "test.bin";
const SUBFOLDER100: &str = "cifar-100-binary";

/// What [`find_cifar10`] looks for, for messages.
pub(super) const CIFAR10_LOOKED_FOR: &str =
    "data_batch_1.bin … data_batch_5.bin and test_batch.bin, also under cifar-10-batches-bin/";
/// What [`find_cifar100`] looks for, for messages.
pub(super) const CIFAR100_LOOKED_FOR: &str = "train.bin and test.bin, also under cifar-100-binary/";

/// The folder holding CIFAR-10 batches: `dir` or its `cifar-10-batches-bin/` subfolder.
pub(super) fn find_cifar10(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(SUBFOLDER10)]
        .into_iter()
        .find(|d| TRAIN10.iter().chain([&TEST10]).any(|f| d.join(f).is_file()))
}

/// The folder holding CIFAR-100 files: `dir` or its `cifar-100-binary/` subfolder.
pub(super) fn find_cifar100(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(SUBFOLDER100)]
        .into_iter()
        .find(|d| d.join(TRAIN100).is_file() && d.join(TEST100).is_file())
}

/// Reads a whole file, failing with a message naming it when it is missing.
fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    if !path.is_file() {
        return Err(data_error(
            path.display(),
            format!("missing ({what} needs this file)"),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Splits the records of one file into labels (the byte at `label_at`) and pixels.
fn parse(
    path: &Path,
    bytes: &[u8],
    label_bytes: usize,
    label_at: usize,
    classes: u8,
    labels: &mut Vec<i64>,
    pixels: &mut Vec<u8>,
) -> Result<()> {
    let record = label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(data_error(path.display(), "empty file: no records"));
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(data_error(
            path.display(),
            format!(
                "truncated record: {} bytes is not a whole number of {record}-byte records \
                 (record {} has only {} bytes)",
                bytes.len(),
                bytes.len() / record + 1,
                bytes.len() % record
            ),
        ));
    }
    labels.reserve(bytes.len() / record);
    pixels.reserve(bytes.len() / record * PIXELS);
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_at];
        if label >= classes {
            return Err(data_error(
                path.display(),
                format!(
                    "record {} has label {label}; expected 0 to {}",
                    i + 1,
                    classes - 1
                ),
            ));
        }
        labels.push(i64::from(label));
        pixels.extend_from_slice(&chunk[label_bytes..]);
    }
    Ok(())
}

/// Reads files of records into a split scaled to `[0, 1]`.
fn read_split(
    files: &[PathBuf],
    label_bytes: usize,
    label_at: usize,
    classes: u8,
    what: &str,
) -> Result<Split> {
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for file in files {
        let bytes = read(file, what)?;
        parse(
            file,
            &bytes,
            label_bytes,
            label_at,
            classes,
            &mut labels,
            &mut pixels,
        )?;
    }
    let n = labels.len() as i64;
    let mut x = Tensor::f_from_slice(&pixels)?
        .f_view([n, 3, SIDE, SIDE])?
        .f_to_kind(Kind::Float)?;
    let _ = x.f_div_scalar_(255.0)?;
    Ok(Split {
        x,
        y: Tensor::f_from_slice(&labels)?,
    })
}

/// Reads CIFAR-10 from the folder holding its batches.
pub(super) fn load_cifar10(root: &Path) -> Result<Raw> {
    let train: Vec<PathBuf> = TRAIN10.iter().map(|f| root.join(f)).collect();
    Ok(Raw {
        name: "cifar10".into(),
        train: read_split(&train, 1, 0, 10, "CIFAR-10")?,
        test: read_split(&[root.join(TEST10)], 1, 0, 10, "CIFAR-10")?,
        classes: Some(10),
        min_classes: 10,
        augment: true,
        origin: root.display().to_string(),
    })
}

/// Reads CIFAR-100 (fine labels) from the folder holding `train.bin` and `test.bin`.
pub(super) fn load_cifar100(root: &Path) -> Result<Raw> {
    Ok(Raw {
        name: "cifar100".into(),
        train: read_split(&[root.join(TRAIN100)], 2, 1, 100, "CIFAR-100")?,
        test: read_split(&[root.join(TEST100)], 2, 1, 100, "CIFAR-100")?,
        classes: Some(100),
        min_classes: 100,
        augment: true,
        origin: root.display().to_string(),
    })
}
