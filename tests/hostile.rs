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
