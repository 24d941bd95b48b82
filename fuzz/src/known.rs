//! Findings reported and not fixed yet, which the targets step around so that they keep
//! looking for new ones instead of stopping at the first input that reaches an old one. Each
//! has a regression test in `tests/fuzz_regressions.rs`, marked `#[ignore]` until the fix;
//! the fix removes the `ignore` and the check here.

use modeconn_runtime::bundle::Metadata;

/// `a_bundle_claiming_more_points_than_it_holds_fails_cleanly`: `modeconn.points` has no bound
/// when no tensor is indexed by points, and `Bundle::gram` allocates `(points - 1)²` floats
/// (`Gram::zeros`, unchecked), the coefficients of any member `points` floats: a bundle of a
/// few hundred bytes aborts the process.
pub const MAX_POINTS: usize = 1 << 12;

/// `a_bundle_claiming_more_classes_than_its_graph_makes_fails_cleanly`: `classes` has no bound
/// when the graph's output does not fix its size, and `Ensemble::predict` allocates
/// `batch × classes` floats before any member runs.
pub const MAX_CLASSES: usize = 1 << 16;

/// Whether a loaded bundle would reach one of the findings above.
pub fn bundle(meta: &Metadata) -> bool {
    meta.points > MAX_POINTS || meta.output.classes > MAX_CLASSES
}

/// `audit_points_open_to_the_t_sealed`: `audit::unseal` parses the points with serde_json's
/// default float parsing, which is not correctly rounded, so a t may open one ulp away from the
/// one sealed. How many ulps a t may move.
pub const T_ULPS: u64 = 1;
