//! Tests of the loaders and batches on small files written in each format.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::*;

/// The pixel byte the CIFAR writers put at sample `i`, channel `c`, row `y`, column `x`.
fn pixel(i: usize, c: usize, y: usize, x: usize) -> u8 {
    ((i * 31 + c * 7 + y * 3 + x * 5) % 256) as u8
}

/// A CIFAR record: label bytes then 3x32x32 pixels of sample `i`.
fn cifar_record(labels: &[u8], i: usize) -> Vec<u8> {
    let mut record = labels.to_vec();
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                record.push(pixel(i, c, y, x));
            }
        }
    }
    record
}

/// Writes a CIFAR-10 folder: 5 training batches of 2 samples (ids 0..10), a test batch of 3
/// (ids 100..103). Labels: `id % 10`.
fn write_cifar10(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for b in 0..5 {
        let mut bytes = Vec::new();
        for k in 0..2 {
            let i = 2 * b + k;
            bytes.extend(cifar_record(&[(i % 10) as u8], i));
        }
        std::fs::write(dir.join(format!("data_batch_{}.bin", b + 1)), bytes).unwrap();
    }
    let mut bytes = Vec::new();
    for i in 100..103 {
        bytes.extend(cifar_record(&[(i % 10) as u8], i));
    }
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
}

/// Writes an IDX file.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// MNIST pixel of sample `i` at row `y`, column `x` (5x6 images).
fn mnist_pixel(i: usize, y: usize, x: usize) -> u8 {
    ((i * 17 + y * 6 + x) * 3 % 256) as u8
}

/// Writes an MNIST folder of 5x6 images: 7 training samples, 4 test samples, labels `i % 10`.
fn write_mnist(dir: &Path, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (images, labels, n, first) in [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 7, 0),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 4, 50),
    ] {
        let mut pixels = Vec::new();
        let mut ys = Vec::new();
        for i in first..first + n {
            for y in 0..5 {
                for x in 0..6 {
                    pixels.push(mnist_pixel(i, y, x));
                }
            }
            ys.push((i % 10) as u8);
        }
        let image_bytes = idx(2051, &[n as u32, 5, 6], &pixels);
        let label_bytes = idx(2049, &[n as u32], &ys);
        let write = |name: &str, bytes: Vec<u8>| {
            if gz {
                std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        };
        write(images, image_bytes);
        write(labels, label_bytes);
    }
}

/// Writes an `.npz` of the given arrays.
fn write_npz(path: &Path, arrays: &[(&str, &Tensor)]) {
    Tensor::write_npz(arrays, path).unwrap();
}

/// Flat data whose first feature is the sample's id: `n` training samples with ids `0..n`, 5
/// test samples with ids 1000.., 3 features, labels `id % 3`.
fn write_flat(path: &Path, n: i64) {
    let ids = Tensor::arange(n, (Kind::Float, Device::Cpu));
    let x_train = Tensor::stack(&[&ids, &(&ids * 0.5), &(&ids * -1.0)], 1);
    let y_train = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
    let test_ids = Tensor::arange_start(1000, 1005, (Kind::Float, Device::Cpu));
    let x_test = Tensor::stack(&[&test_ids, &test_ids, &test_ids], 1);
    let y_test = Tensor::from_slice(&[0_i64, 1, 2, 0, 1]);
    write_npz(
        path,
        &[
            ("x_train", &x_train),
            ("y_train", &y_train),
            ("x_test", &x_test),
            ("y_test", &y_test),
        ],
    );
}

/// Image data for batch tests: `n` 3x8x8 images whose pixels are all positive, labels `i % 4`.
fn write_images(path: &Path, n: i64) {
    let x = Tensor::rand([n, 3, 8, 8], (Kind::Float, Device::Cpu)) + 0.1;
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
    write_npz(
        path,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x.narrow(0, 0, 3)),
            ("y_test", &y.narrow(0, 0, 3)),
        ],
    );
}

fn load_path(path: &Path, options: &DataOptions) -> Result<Data> {
    load(path.to_str().unwrap(), options)
}

fn data_message(result: Result<Data>) -> String {
    match result {
        Err(Error::Data(message)) => message,
        Err(other) => panic!("expected a data error, got {other}"),
        Ok(data) => panic!("expected a data error, got {data:?}"),
    }
}

fn value(t: &Tensor, index: &[i64]) -> f64 {
    t.double_value(index)
}

fn labels(t: &Tensor) -> Vec<i64> {
    Vec::try_from(t).unwrap()
}

/// First feature (the id) of each sample of a flat split.
fn ids(x: &Tensor) -> Vec<i64> {
    let ids: Vec<f32> = Vec::try_from(&x.select(1, 0)).unwrap();
    ids.into_iter().map(|v| v as i64).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn cifar10_folder_reads_shapes_pixels_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    let data = load_path(dir.path(), &DataOptions::default()).unwrap();
    assert_eq!(data.name, "cifar10");
    assert_eq!(data.input, vec![3, 32, 32]);
    assert_eq!(data.classes, 10);
    assert!(data.augment);
    assert_eq!(data.train.x.size(), vec![10, 3, 32, 32]);
    assert_eq!(data.train.x.kind(), Kind::Float);
    assert_eq!(data.test.x.size(), vec![3, 3, 32, 32]);
    assert_eq!(labels(&data.train.y), (0..10).collect::<Vec<_>>());
    assert_eq!(labels(&data.test.y), vec![0, 1, 2]);
    for (i, c, y, x) in [(0, 0, 0, 0), (7, 2, 31, 5), (9, 1, 4, 30)] {
        let expected = f64::from(pixel(i, c, y, x)) / 255.0;
        let got = value(&data.train.x, &[i as i64, c as i64, y as i64, x as i64]);
        assert!(close(got, expected), "{got} vs {expected}");
    }
    let got = value(&data.test.x, &[2, 1, 3, 4]);
    assert!(close(got, f64::from(pixel(102, 1, 3, 4)) / 255.0));
    assert_eq!(data.mean.len(), 3);
    assert_eq!(data.std.len(), 3);
}

#[test]
fn cifar10_is_found_in_its_subfolder() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(&dir.path().join("cifar-10-batches-bin"));
    let data = load_path(dir.path(), &DataOptions::default()).unwrap();
    assert_eq!(data.train.len(), 10);
    assert_eq!(data.test.len(), 3);
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar-100-binary");
    std::fs::create_dir_all(&root).unwrap();
    let mut train = Vec::new();
    for i in 0..4 {
        train.extend(cifar_record(&[19, 90 + i as u8], i));
    }
    std::fs::write(root.join("train.bin"), train).unwrap();
    std::fs::write(root.join("test.bin"), cifar_record(&[3, 42], 50)).unwrap();
    let data = load_path(dir.path(), &DataOptions::default()).unwrap();
    assert_eq!(data.name, "cifar100");
    assert_eq!(data.classes, 100);
    assert_eq!(labels(&data.train.y), vec![90, 91, 92, 93]);
    assert_eq!(labels(&data.test.y), vec![42]);
    assert_eq!(data.input, vec![3, 32, 32]);
    let got = value(&data.train.x, &[3, 2, 10, 11]);
    assert!(close(got, f64::from(pixel(3, 2, 10, 11)) / 255.0));
}

#[test]
fn mnist_folders_read_plain_and_gzipped() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), gz);
        let data = load_path(dir.path(), &DataOptions::default()).unwrap();
        assert_eq!(data.name, "mnist");
        assert_eq!(data.input, vec![1, 5, 6]);
        assert_eq!(data.classes, 10);
        assert!(!data.augment);
        assert_eq!(data.train.x.size(), vec![7, 1, 5, 6]);
        assert_eq!(data.test.x.size(), vec![4, 1, 5, 6]);
        assert_eq!(labels(&data.train.y), (0..7).collect::<Vec<_>>());
        assert_eq!(labels(&data.test.y), vec![0, 1, 2, 3]);
        let got = value(&data.train.x, &[6, 0, 4, 5]);
        assert!(close(got, f64::from(mnist_pixel(6, 4, 5)) / 255.0));
        let got = value(&data.test.x, &[1, 0, 2, 3]);
        assert!(close(got, f64::from(mnist_pixel(51, 2, 3)) / 255.0));
        assert_eq!((data.mean.len(), data.std.len()), (1, 1));
    }
}

#[test]
fn npz_uint8_nhwc_is_scaled_and_transposed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.npz");
    let values: Vec<u8> = (0..4 * 6 * 7 * 3).map(|v| (v % 251) as u8).collect();
    let x = Tensor::from_slice(&values).view([4, 6, 7, 3]);
    let y = Tensor::from_slice(&[0_u8, 1, 2, 1]);
    write_npz(
        &path,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x.narrow(0, 0, 2)),
            ("y_test", &Tensor::from_slice(&[4_i32, 0])),
        ],
    );
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.name, "tiny");
    assert_eq!(data.input, vec![3, 6, 7]);
    assert_eq!(data.classes, 5);
    assert_eq!(data.train.x.size(), vec![4, 3, 6, 7]);
    assert_eq!(data.train.y.kind(), Kind::Int64);
    assert_eq!(labels(&data.test.y), vec![4, 0]);
    // NHWC element (n=2, h=5, w=1, c=2) becomes NCHW (2, 2, 5, 1).
    let raw = values[((2 * 6 + 5) * 7 + 1) * 3 + 2];
    let got = value(&data.train.x, &[2, 2, 5, 1]);
    assert!(close(got, f64::from(raw) / 255.0));
    assert!(!data.augment);
}

#[test]
fn npz_float_nchw_and_nhw_are_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("float.npz");
    let x = Tensor::arange(2 * 2 * 3 * 3, (Kind::Float, Device::Cpu)).view([2, 2, 3, 3]) * 2.0;
    let y = Tensor::from_slice(&[0_i64, 1]);
    write_npz(
        &path,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x),
            ("y_test", &y),
        ],
    );
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.input, vec![2, 3, 3]);
    assert_eq!(data.classes, 2);
    assert_eq!(value(&data.train.x, &[1, 1, 2, 2]), 70.0);

    // [N, H, W] float64 gets a channel axis.
    let path = dir.path().join("gray.npz");
    let x = Tensor::ones([3, 6, 6], (Kind::Double, Device::Cpu)) * 0.25;
    let y = Tensor::from_slice(&[0_i64, 1, 1]);
    write_npz(
        &path,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x),
            ("y_test", &y),
        ],
    );
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.input, vec![1, 6, 6]);
    assert_eq!(data.train.x.kind(), Kind::Float);
    assert_eq!(value(&data.test.x, &[2, 0, 5, 5]), 0.25);
    // A constant channel gets std 1, not 0.
    assert_eq!(data.std, vec![1.0]);
}

#[test]
fn npz_flat_inputs_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 10);
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.input, vec![3]);
    assert_eq!(data.classes, 3);
    assert_eq!(data.train.x.size(), vec![10, 3]);
    // One mean and std over all training values: ids 0..10 times 1, 0.5 and -1.
    let all: Vec<f64> = (0..10)
        .flat_map(|i| [f64::from(i), 0.5 * f64::from(i), -f64::from(i)])
        .collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
    assert_eq!(data.mean.len(), 1);
    assert!((f64::from(data.mean[0]) - mean).abs() < 1e-5);
    assert!((f64::from(data.std[0]) - var.sqrt()).abs() < 1e-5);
}

#[test]
fn per_channel_statistics_are_computed_on_the_training_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.npz");
    // Channel 0 holds 0 and 1 (mean 0.5, std 0.5); channel 1 holds 3 (mean 3, std 1 fallback).
    let x = Tensor::cat(
        &[
            Tensor::zeros([1, 1, 5, 5], (Kind::Float, Device::Cpu)),
            Tensor::ones([1, 1, 5, 5], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    let x = Tensor::cat(
        &[
            x,
            Tensor::full([2, 1, 5, 5], 3.0, (Kind::Float, Device::Cpu)),
        ],
        1,
    );
    let y = Tensor::from_slice(&[0_i64, 1]);
    let x_test = Tensor::full([1, 2, 5, 5], 100.0, (Kind::Float, Device::Cpu));
    write_npz(
        &path,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x_test),
            ("y_test", &Tensor::from_slice(&[1_i64])),
        ],
    );
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.mean, vec![0.5, 3.0]);
    assert_eq!(data.std, vec![0.5, 1.0]);
}

#[test]
fn held_out_split_is_disjoint_seeded_and_replaces_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 20);
    let options = DataOptions {
        held_out: Some(6),
        seed: 7,
        ..DataOptions::default()
    };
    let data = load_path(&path, &options).unwrap();
    assert_eq!(data.train.len(), 14);
    assert_eq!(data.test.len(), 6);
    let train = ids(&data.train.x);
    let held = ids(&data.test.x);
    assert!(
        held.iter().all(|i| *i < 20),
        "the real test set is not used"
    );
    let mut all: Vec<i64> = train.iter().chain(&held).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "disjoint and complete");
    // Labels travel with their samples.
    assert_eq!(
        labels(&data.test.y),
        held.iter().map(|i| i % 3).collect::<Vec<_>>()
    );
    // The same seed holds out the same samples; another seed others.
    let again = load_path(&path, &options).unwrap();
    assert_eq!(ids(&again.test.x), held);
    let other = load_path(
        &path,
        &DataOptions {
            seed: 8,
            ..options.clone()
        },
    )
    .unwrap();
    assert_ne!(ids(&other.test.x), held);
    // Statistics come from the remaining training samples.
    let mean = train.iter().map(|&i| 0.5 * i as f64 / 3.0).sum::<f64>() / train.len() as f64;
    assert!((f64::from(data.mean[0]) - mean).abs() < 1e-5);
}

#[test]
fn limit_keeps_the_first_training_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 20);
    let data = load_path(
        &path,
        &DataOptions {
            limit: Some(5),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ids(&data.train.x), vec![0, 1, 2, 3, 4]);
    assert_eq!(data.test.len(), 5);
    // A limit above the size keeps everything; with a held-out split the limit comes first.
    let data = load_path(
        &path,
        &DataOptions {
            limit: Some(500),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert_eq!(data.train.len(), 20);
    let data = load_path(
        &path,
        &DataOptions {
            limit: Some(8),
            held_out: Some(3),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert_eq!((data.train.len(), data.test.len()), (5, 3));
    assert!(ids(&data.test.x).iter().all(|&i| i < 8));
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 4);
    for options in [
        DataOptions {
            held_out: Some(4),
            ..DataOptions::default()
        },
        DataOptions {
            held_out: Some(0),
            ..DataOptions::default()
        },
        DataOptions {
            limit: Some(0),
            ..DataOptions::default()
        },
        DataOptions {
            augment: Some(true),
            ..DataOptions::default()
        },
    ] {
        let message = data_message(load_path(&path, &options));
        assert!(!message.is_empty());
    }
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert!(matches!(
        data.train_batches(0, 1, Device::Cpu),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        data.eval_batches(&data.test, 0, Device::Cpu),
        Err(Error::Config(_))
    ));
}

/// All batches' ids and labels, checking each batch's shapes.
fn collect(batches: Batches, width: i64) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let mut sizes = Vec::new();
    let mut all_ids = Vec::new();
    let mut all_labels = Vec::new();
    for batch in batches {
        let (x, y) = batch.unwrap();
        assert_eq!(x.size()[1], width);
        assert_eq!(x.size()[0], y.size()[0]);
        sizes.push(y.size()[0]);
        all_ids.extend(ids(&x));
        all_labels.extend(labels(&y));
    }
    (sizes, all_ids, all_labels)
}

#[test]
fn train_batches_are_seeded_shuffles_keeping_the_last_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 23);
    let data = load_path(&path, &DataOptions::default()).unwrap();
    let batches = data.train_batches(5, 11, Device::Cpu).unwrap();
    assert_eq!(batches.len(), 5);
    assert_eq!(batches.samples(), 23);
    let (sizes, order, ys) = collect(batches, 3);
    assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..23).collect::<Vec<_>>(), "a permutation");
    assert_ne!(order, sorted, "shuffled");
    assert_eq!(ys, order.iter().map(|i| i % 3).collect::<Vec<_>>());
    let (_, same, _) = collect(data.train_batches(5, 11, Device::Cpu).unwrap(), 3);
    assert_eq!(same, order, "deterministic for a seed");
    let (_, other, _) = collect(data.train_batches(5, 12, Device::Cpu).unwrap(), 3);
    assert_ne!(other, order, "different for another seed");
}

#[test]
fn eval_batches_are_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.npz");
    write_flat(&path, 23);
    let data = load_path(&path, &DataOptions::default()).unwrap();
    let (sizes, order, ys) = collect(data.eval_batches(&data.train, 10, Device::Cpu).unwrap(), 3);
    assert_eq!(sizes, vec![10, 10, 3]);
    assert_eq!(order, (0..23).collect::<Vec<_>>());
    assert_eq!(ys, (0..23).map(|i| i % 3).collect::<Vec<_>>());
    let (sizes, order, _) = collect(data.eval_batches(&data.test, 2, Device::Cpu).unwrap(), 3);
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(order, (1000..1005).collect::<Vec<_>>());
}

/// Whether `out` ([C, H, W]) is `image` padded with zeros, cropped at some offset and maybe
/// flipped.
fn is_crop_of(out: &Tensor, image: &Tensor) -> bool {
    let size = image.size();
    let (h, w) = (size[1], size[2]);
    let padded = image.constant_pad_nd([CROP_PADDING; 4]);
    for dy in 0..=2 * CROP_PADDING {
        for dx in 0..=2 * CROP_PADDING {
            let crop = padded.narrow(1, dy, h).narrow(2, dx, w);
            if crop.equal(out) || crop.flip([2]).equal(out) {
                return true;
            }
        }
    }
    false
}

#[test]
fn augmentation_crops_and_flips_pixels_but_keeps_shapes_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.npz");
    write_images(&path, 12);
    let plain = load_path(&path, &DataOptions::default()).unwrap();
    assert!(!plain.augment);
    let augmented = load_path(
        &path,
        &DataOptions {
            augment: Some(true),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert!(augmented.augment);
    let mut changed = 0;
    let plain_batches = plain.train_batches(5, 3, Device::Cpu).unwrap();
    let augmented_batches = augmented.train_batches(5, 3, Device::Cpu).unwrap();
    for (a, b) in plain_batches.zip(augmented_batches) {
        let ((xa, ya), (xb, yb)) = (a.unwrap(), b.unwrap());
        assert_eq!(xa.size(), xb.size());
        assert_eq!(labels(&ya), labels(&yb), "same order, same labels");
        for i in 0..xa.size()[0] {
            let (ia, ib) = (xa.get(i), xb.get(i));
            assert!(
                is_crop_of(&ib, &ia),
                "sample {i} is a crop/flip of its image"
            );
            if !ia.equal(&ib) {
                changed += 1;
            }
        }
    }
    assert!(changed >= 9, "most samples change ({changed} of 12)");
    // Deterministic for a seed, different for another.
    let first: Vec<Tensor> = augmented
        .train_batches(12, 5, Device::Cpu)
        .unwrap()
        .map(|b| b.unwrap().0)
        .collect();
    let again: Vec<Tensor> = augmented
        .train_batches(12, 5, Device::Cpu)
        .unwrap()
        .map(|b| b.unwrap().0)
        .collect();
    let other: Vec<Tensor> = augmented
        .train_batches(12, 6, Device::Cpu)
        .unwrap()
        .map(|b| b.unwrap().0)
        .collect();
    assert!(first[0].equal(&again[0]));
    assert!(!first[0].equal(&other[0]));
    // Evaluation batches are never augmented.
    let (x, _) = augmented
        .eval_batches(&augmented.train, 12, Device::Cpu)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(x.equal(&augmented.train.x));
}

#[test]
fn cifar_augmentation_keeps_32x32() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    let data = load_path(dir.path(), &DataOptions::default()).unwrap();
    let (x, y) = data
        .train_batches(4, 0, Device::Cpu)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(x.size(), vec![4, 3, 32, 32]);
    assert_eq!(y.size(), vec![4]);
    let data = load_path(
        dir.path(),
        &DataOptions {
            augment: Some(false),
            ..DataOptions::default()
        },
    )
    .unwrap();
    assert!(!data.augment);
}

#[test]
fn truncated_cifar_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    let file = dir.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&file, bytes).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("data_batch_3.bin"), "{message}");
    assert!(message.contains("truncated record"), "{message}");
}

#[test]
fn cifar_errors_name_missing_files_and_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    std::fs::remove_file(dir.path().join("data_batch_5.bin")).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("data_batch_5.bin"), "{message}");
    assert!(message.contains("missing"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    std::fs::write(dir.path().join("test_batch.bin"), cifar_record(&[10], 0)).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("test_batch.bin"), "{message}");
    assert!(message.contains("label 10"), "{message}");
}

#[test]
fn bad_mnist_magic_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    let file = dir.path().join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3] = 0x03; // 2051, an image magic, in a label file
    std::fs::write(&file, bytes).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("t10k-labels-idx1-ubyte"), "{message}");
    assert!(message.contains("bad magic number 2051"), "{message}");
    assert!(message.contains("2049"), "{message}");
}

#[test]
fn mnist_count_mismatch_truncation_and_missing_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), true);
    let labels = idx(2049, &[6], &[0, 1, 2, 3, 4, 5]);
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("7 images but"), "{message}");
    assert!(message.contains("6 labels"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    let file = dir.path().join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&file, bytes).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert!(message.contains("truncated"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("t10k-images-idx3-ubyte"), "{message}");
}

#[test]
fn npz_missing_key_and_length_mismatch_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nokey.npz");
    let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0_i64, 1, 0, 1]);
    write_npz(&path, &[("x_train", &x), ("y_train", &y), ("x_test", &x)]);
    let message = data_message(load_path(&path, &DataOptions::default()));
    assert!(message.contains("nokey.npz"), "{message}");
    assert!(message.contains("missing key `y_test`"), "{message}");

    let path = dir.path().join("mismatch.npz");
    let short = Tensor::from_slice(&[0_i64, 1, 0]);
    write_npz(
        &path,
        &[
            ("x_train", &x),
            ("y_train", &short),
            ("x_test", &x),
            ("y_test", &y),
        ],
    );
    let message = data_message(load_path(&path, &DataOptions::default()));
    assert!(message.contains("mismatch.npz"), "{message}");
    assert!(message.contains("length mismatch"), "{message}");
    assert!(message.contains("4 samples"), "{message}");
}

#[test]
fn npz_content_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0_i64, 1, 0, 1]);
    type Case = (&'static str, Vec<(&'static str, Tensor)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "shapes.npz",
            vec![("x_test", Tensor::zeros([4, 5], (Kind::Float, Device::Cpu)))],
            "shape",
        ),
        (
            "negative.npz",
            vec![("y_test", Tensor::from_slice(&[0_i64, -1, 0, 1]))],
            "labels must lie in",
        ),
        (
            "float_labels.npz",
            vec![("y_train", Tensor::zeros([4], (Kind::Float, Device::Cpu)))],
            "integer class labels",
        ),
        (
            "one_class.npz",
            vec![
                ("y_train", Tensor::zeros([4], (Kind::Int64, Device::Cpu))),
                ("y_test", Tensor::zeros([4], (Kind::Int64, Device::Cpu))),
            ],
            "at least two classes",
        ),
        (
            "nan.npz",
            vec![(
                "x_train",
                Tensor::full([4, 3], f64::NAN, (Kind::Float, Device::Cpu)),
            )],
            "NaN",
        ),
        (
            "int_inputs.npz",
            vec![("x_train", Tensor::zeros([4, 3], (Kind::Int64, Device::Cpu)))],
            "expected uint8, float32 or float64",
        ),
    ];
    for (name, replace, expected) in cases {
        let mut arrays: Vec<(&str, Tensor)> = vec![
            ("x_train", x.shallow_clone()),
            ("y_train", y.shallow_clone()),
            ("x_test", x.shallow_clone()),
            ("y_test", y.shallow_clone()),
        ];
        for (key, tensor) in replace {
            for entry in arrays.iter_mut() {
                if entry.0 == key {
                    entry.1 = tensor.shallow_clone();
                }
            }
        }
        let path = dir.path().join(name);
        Tensor::write_npz(&arrays, &path).unwrap();
        let message = data_message(load_path(&path, &DataOptions::default()));
        assert!(message.contains(name), "{message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    // Not a zip file at all.
    let path = dir.path().join("garbage.npz");
    std::fs::write(&path, b"not a zip archive").unwrap();
    let message = data_message(load_path(&path, &DataOptions::default()));
    assert!(message.contains("garbage.npz"), "{message}");
}

#[test]
fn unknown_folders_and_paths_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.txt"), "hello").unwrap();
    let message = data_message(load_path(dir.path(), &DataOptions::default()));
    assert!(message.contains("no data set found"), "{message}");
    for looked_for in [
        "data_batch_1.bin",
        "test_batch.bin",
        "train.bin",
        "train-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        assert!(message.contains(looked_for), "{message}");
    }
    let message = data_message(load_path(
        &dir.path().join("absent"),
        &DataOptions::default(),
    ));
    assert!(message.contains("no such file or folder"), "{message}");
    let message = data_message(load_path(
        &dir.path().join("readme.txt"),
        &DataOptions::default(),
    ));
    assert!(message.contains("not an .npz file"), "{message}");
}

/// The environment variable, or a failure saying how to set it.
fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!("{var} is not set: run scripts/setup.sh and source the modeconn.env it prints"),
    }
}

#[test]
fn digits_loads_from_the_setup() {
    let path = env_path("MODECONN_DIGITS");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    let data = load("digits", &DataOptions::default()).unwrap();
    assert_eq!(data.name, "digits");
    assert_eq!((data.train.len(), data.test.len()), (1437, 360));
    assert_eq!(data.classes, 10);
    assert_eq!(data.input, vec![1, 8, 8]);
    assert!(!data.augment);
    let min = data.train.x.min().double_value(&[]);
    let max = data.train.x.max().double_value(&[]);
    assert!(min >= 0.0 && max <= 1.0 && max > 0.5);
    assert!(data.std[0] > 0.1 && data.mean[0] > 0.1 && data.mean[0] < 0.9);
    let batches = data.train_batches(128, 0, Device::Cpu).unwrap();
    assert_eq!(batches.len(), 12);
}

#[test]
fn compressed_npz_written_by_numpy_loads() {
    let python = env_path("MODECONN_PYTHON");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numpy.npz");
    let script = "import sys, numpy as np\n\
        x = (np.arange(5 * 9 * 9 * 3) % 256).astype(np.uint8).reshape(5, 9, 9, 3)\n\
        np.savez_compressed(sys.argv[1], x_train=x, y_train=np.array([0, 1, 2, 1, 0], np.int32),\n\
        x_test=x[:2], y_test=np.array([2, 2], np.uint8))\n";
    let status = std::process::Command::new(python)
        .args(["-c", script, path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let data = load_path(&path, &DataOptions::default()).unwrap();
    assert_eq!(data.input, vec![3, 9, 9]);
    assert_eq!(data.classes, 3);
    assert_eq!(labels(&data.test.y), vec![2, 2]);
    let raw = ((4 * 9 + 8) * 9 + 7) * 3 + 1;
    let got = value(&data.train.x, &[4, 1, 8, 7]);
    assert!(close(got, f64::from((raw % 256) as u8) / 255.0));
}
