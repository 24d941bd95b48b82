//! Inputs the fuzz targets of `fuzz/` found, or made by hand from what they found, kept in
//! `fuzz/regressions/<target>/` and replayed through the API (or the command) the target
//! exercises.
//!
//! A test marked `#[ignore]` is a finding that is reported and not fixed yet: it fails until the
//! fix, which removes the `ignore` and the matching check of `fuzz/src/known.rs` (the targets
//! step around known findings so that they keep looking for new ones). Run them with
//! `cargo test --test tests fuzz_regressions -- --ignored`.

use std::path::{Path, PathBuf};

use modeconn_runtime::{Ensemble, EnsembleOptions, Member};
use modeconn_server::audit::{self, AuditLog, Entry};
use modeconn_server::model::ServedModel;
use modeconn_server::{Mode, Policy, protocol};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

use crate::util::*;

/// The key the `audit` target seals and opens with (`fuzz/src/audit.rs`).
const AUDIT_KEY: [u8; 32] = [7; 32];

fn regression(target: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target)
        .join(name)
}

fn read(target: &str, name: &str) -> Vec<u8> {
    let path = regression(target, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `server`: a batch of 10^17 samples of `[3, 8, 8]`. `ServedModel::decode` multiplied the
/// dimensions unchecked, which panicked where overflow checks are on (tests, fuzzing) and
/// wrapped where they are off; it is refused with 400 since the decoding counts with
/// `checked_mul` (fixed on main while the fuzzer ran, found again by hand).
#[test]
fn a_batch_whose_size_overflows_is_refused() {
    let input = read("server", "batch-overflows-count.bin");
    // The target's input: a flags byte (0: the curve, every mode, no header length), the body.
    let (&flags, body) = input.split_first().expect("a flags byte");
    assert_eq!(flags, 0);
    let dir = curve_fixture(&BEZIER3);
    let path = dir.join("bundle.safetensors");
    let ensemble = Ensemble::open(&cpu_runtime(), &path, EnsembleOptions::default())
        .expect("the fixture loads");
    let policy = Policy {
        modes: Mode::ALL.to_vec(),
        default_mode: Mode::Ensemble,
        return_point: true,
        grid: 5,
        randomized_grid: 11,
        keyed_quantum: None,
    };
    let model = ServedModel::new("m".into(), path, ensemble, "sha256:00".into(), policy, None);
    let request = protocol::parse_request(body).expect("the request parses");
    assert_eq!(request.inputs[0].shape, [100_000_000_000_000_000, 3, 8, 8]);
    let e = model
        .decode(request, &[], |_| Ok(()))
        .expect_err("10^17 samples are refused");
    assert_eq!(e.status.as_u16(), 400, "{}", e.message);
    assert!(e.message.contains("too many values"), "{}", e.message);
}

/// An all-zeros `[1, 2]` input for the bundles made from the `no-tensors` seed.
fn zeros_1x2(dir: &Path) -> PathBuf {
    let x = dir.join("x.npy");
    write_f32(&x, &ArrayD::zeros(IxDyn(&[1, 2])));
    x
}

/// `bundle` (made by hand, `fuzz/regressions/bundle/make.py`): bundles of 458 and 434 bytes
/// claiming 2^40 control points or members, with no tensor indexed by them, so nothing bounds
/// `modeconn.points`. `inspect` aborted allocating the Gram matrix, `(points - 1)²` floats
/// (`Gram::zeros`, whose product also overflows); a member's coefficients, `points` floats,
/// aborted `predict` (`Coefficients::on_curve`, `Coefficients::one_hot`). `modeconn.points` is
/// bounded since (1,024 control points, 65,536 members).
#[test]
fn a_bundle_claiming_more_points_than_it_holds_fails_cleanly() {
    let dir = tempdir();
    let x = zeros_1x2(dir.path());
    let curve = regression("bundle", "points-2e40.safetensors");
    let snapshots = regression("bundle", "snapshots-2e40.safetensors");
    modeconn(&[&"inspect", &curve]).fails_cleanly();
    modeconn(&[&"predict", &curve, &"--input", &x, &"--at", &"0.5"]).fails_cleanly();
    modeconn(&[&"predict", &snapshots, &"--input", &x, &"--members", &"0"]).fails_cleanly();
}

/// `bundle` (made by hand, `fuzz/regressions/bundle/make.py`): a bundle of 473 bytes claiming
/// 10^12 classes, its graph's output `[batch, classes]` without a size, so nothing contradicts
/// it before a member runs. `Ensemble::predict` aborted allocating the mean probabilities,
/// `batch × classes` floats, before the first member's logits (which have 3) could say so; the
/// sums are made from the first member's output since.
#[test]
fn a_bundle_claiming_more_classes_than_its_graph_makes_fails_cleanly() {
    let dir = tempdir();
    let x = zeros_1x2(dir.path());
    let bundle = regression("bundle", "classes-1e12.safetensors");
    modeconn(&[&"predict", &bundle, &"--input", &x, &"--at", &"0.5"]).fails_cleanly();
}

/// `audit`: request id "" and one point, t from the bytes `2377`. The t sealed came back one
/// ulp lower (0.21568603497728986 as 0.21568603497728983): the audit line holds the shortest
/// decimal that reads back exactly, but `unseal` read it with serde_json's default float
/// parsing, which is not correctly rounded (one in ten full-width doubles came back one ulp
/// off); serde_json's `float_roundtrip` is on since.
#[test]
fn audit_points_open_to_the_t_sealed() {
    let input = read("audit", "t-one-ulp-off.bin");
    // The target's input: a request id (empty), a newline, then four bytes a point; an even
    // little-endian u32 is a t.
    assert_eq!(input[0], b'\n');
    let v = u32::from_le_bytes(input[1..5].try_into().expect("four bytes"));
    assert_eq!(v & 1, 0);
    let t = f64::from(v >> 1) / f64::from(u32::MAX >> 1);
    let dir = tempdir();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, &AUDIT_KEY).expect("the log opens");
    log.record(&Entry {
        request_id: "",
        model: "m",
        digest: "sha256:00",
        mode: "keyed",
        fingerprints: &[],
        members: &[Member::T(t)],
    })
    .expect("the line is written");
    let text = std::fs::read_to_string(&path).expect("the line reads back");
    let line: Value = serde_json::from_str(text.trim()).expect("JSON");
    let sealed = line["sealed_points"].as_str().expect("sealed points");
    let opened = audit::unseal(&AUDIT_KEY, "", sealed).expect("the seal opens");
    let back = opened[0]["t"].as_f64().expect("a t");
    assert_eq!(back.to_bits(), t.to_bits(), "sealed {t:?}, opened {back:?}");
}

/// `audit`: an audit line whose sealed points have `+8` where the log wrote `08`. It opened:
/// `unseal` read each pair of characters with `u8::from_str_radix`, which takes a leading `+`,
/// so the same seal had several spellings; only hex digits are read since.
#[test]
fn a_seal_with_a_plus_sign_does_not_open() {
    let line: Value =
        serde_json::from_slice(&read("audit", "plus-sign-in-seal.jsonl")).expect("JSON");
    let id = line["request_id"].as_str().expect("a request id");
    let sealed = line["sealed_points"].as_str().expect("sealed points");
    assert!(sealed.contains('+'), "{sealed}");
    // As the log wrote it, the seal opens: only the spelling differs.
    let written = sealed.replace('+', "0");
    assert!(audit::unseal(&AUDIT_KEY, id, &written).is_some());
    assert!(
        audit::unseal(&AUDIT_KEY, id, sealed).is_none(),
        "{sealed} opened"
    );
}
