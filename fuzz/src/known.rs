//! Findings reported and not fixed yet, which the targets step around so that they keep
//! looking for new ones instead of stopping at the first input that reaches an old one. Each
//! has a regression test in `tests/fuzz_regressions.rs`, marked `#[ignore]` until the fix;
//! the fix removes the `ignore` and the check here.
//!
//! None at present: the three found so far (`modeconn.points` and the output's classes
//! unbounded, `unseal` reading a t one ulp off) are fixed, and their tests run.
