//! What a hostile user tried on the command line, and what must happen instead of a crash or a
//! wrong answer: one line on stderr naming the problem, a non-zero exit, nothing overwritten.

use std::path::Path;

use crate::util::*;

/// `predict BUNDLE --input X` plus `extra`, expected to fail cleanly; returns the error line.
fn predict_fails(bundle: &Path, x: &Path, extra: &[&str]) -> String {
    let mut args: Vec<Arg<'_>> = vec![&"predict", &bundle, &"--input", &x];
    args.extend(extra.iter().map(|s| s as Arg<'_>));
    modeconn(&args).fails_cleanly()
}

#[test]
fn sample_counts_are_bounded_not_allocated() {
    let dir = curve_fixture(&BEZIER3);
    let (bundle, x) = (dir.join("bundle.safetensors"), dir.join("x.npy"));
    // 10^11 aborted on a failed allocation; 2^61 panicked with "capacity overflow".
    for count in ["100000000000", "2305843009213693952"] {
        for flag in ["--grid", "--uniform", "--arc-uniform"] {
            let line = predict_fails(&bundle, &x, &[flag, count]);
            assert!(
                line.contains(count) && line.contains("65536"),
                "{flag} {count}: {line}"
            );
        }
        let line = predict_fails(&bundle, &x, &["--randomized", "--randomized-grid", count]);
        assert!(
            line.contains(count) && line.contains("65536"),
            "--randomized-grid: {line}"
        );
    }
}

/// Copies the bundle `src` to `dst` with its safetensors header text changed by `edit` (padded
/// with spaces to keep the data aligned).
fn with_header(src: &Path, dst: &Path, edit: impl FnOnce(String) -> String) {
    let bytes = std::fs::read(src).expect("read the bundle");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let text = String::from_utf8(bytes[8..8 + len].to_vec()).expect("a UTF-8 header");
    let mut text = edit(text);
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(dst, out).expect("write the bundle");
}

/// Sets metadata `key` to `value` (a JSON string literal's contents) in a header's text.
fn set_metadata(text: String, key: &str, value: &str) -> String {
    let mut header: serde_json::Value = serde_json::from_str(&text).expect("JSON header");
    header["__metadata__"][key] = serde_json::Value::String(value.into());
    header.to_string()
}

#[test]
fn a_temperature_that_is_zero_in_single_precision_is_refused() {
    // 1e-40 passed "positive and finite" but is 0 as f32: every probability was NaN.
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let bundle = tmp.path().join("cold.safetensors");
    with_header(&dir.join("bundle.safetensors"), &bundle, |t| {
        set_metadata(t, "modeconn.temperature", "1e-40")
    });
    let line = predict_fails(&bundle, &dir.join("x.npy"), &["--at", "0.5"]);
    assert!(
        line.contains("modeconn.temperature") && line.contains("single precision"),
        "{line}"
    );
}

#[test]
fn non_finite_inputs_are_refused() {
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let mut x = read_f32(&dir.join("x.npy"));
    for (name, bad) in [
        ("nan", f32::NAN),
        ("inf", f32::INFINITY),
        ("-inf", f32::NEG_INFINITY),
    ] {
        x[[2, 1, 3, 3]] = bad;
        let path = tmp.path().join(format!("{name}.npy"));
        write_f32(&path, &x);
        let line = predict_fails(&dir.join("bundle.safetensors"), &path, &["--grid", "3"]);
        assert!(line.contains("non-finite"), "{name}: {line}");
    }
}

#[test]
fn a_header_key_given_twice_is_refused() {
    // The last of two keys won: a bundle could say one thing here and another elsewhere.
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let bundle = tmp.path().join("twice.safetensors");
    with_header(&dir.join("bundle.safetensors"), &bundle, |t| {
        t.replacen(
            "\"__metadata__\":{",
            "\"__metadata__\":{\"modeconn.kind\":\"snapshots\",",
            1,
        )
    });
    let text = std::fs::read(&bundle).expect("read");
    assert!(
        String::from_utf8_lossy(&text)
            .matches("modeconn.kind")
            .count()
            == 2,
        "the test did not plant a second key"
    );
    let line = predict_fails(&bundle, &dir.join("x.npy"), &["--at", "0.5"]);
    assert!(line.contains("`modeconn.kind` is given twice"), "{line}");
}

#[test]
fn error_messages_cut_long_values() {
    // A 10 MB metadata value came back whole, on one line.
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let bundle = tmp.path().join("long.safetensors");
    let long = "x".repeat(10 << 20);
    with_header(&dir.join("bundle.safetensors"), &bundle, |t| {
        set_metadata(t, "modeconn.kind", &long)
    });
    let line = predict_fails(&bundle, &dir.join("x.npy"), &["--at", "0.5"]);
    assert!(line.len() < 1000, "a {} byte error line", line.len());
    assert!(
        line.contains(&format!("({} bytes in all)", long.len())),
        "{line}"
    );
}

#[test]
fn only_regular_files_are_replaced_by_outputs() {
    // `predict --out /dev/full` replaced the device with an ordinary file. A named pipe stands
    // in for the device here (replacing /dev/full would break the machine running the test).
    let dir = curve_fixture(&BEZIER3);
    let tmp = tempdir();
    let fifo = tmp.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let line = predict_fails(
        &dir.join("bundle.safetensors"),
        &dir.join("x.npy"),
        &["--at", "0.5", "--out", fifo.to_str().expect("UTF-8")],
    );
    assert!(line.contains("not a regular file"), "{line}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("stat")
            .file_type()
            .is_fifo()
    );
}
