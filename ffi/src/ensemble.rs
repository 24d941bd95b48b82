//! The ensemble handle: a loaded bundle, its properties, predictions and materialised members.

use std::ffi::c_char;

use ::modeconn_runtime::bundle::Kind;
use ::modeconn_runtime::curve::Basis;
use ::modeconn_runtime::{Ensemble, EnsembleOptions, Member, Provider, Sampling};
use ndarray::{ArrayViewD, IxDyn};

use crate::handle::Registry;
use crate::runtime::{RUNTIMES, modeconn_runtime};
use crate::{Failure, FfiResult, c_str, modeconn_status, slice_in, write_out};

/// A loaded bundle ready to predict (opaque). Create it with `modeconn_ensemble_open` or
/// `modeconn_ensemble_open_with`, release it with `modeconn_ensemble_free`. Safe to use from
/// several threads at once.
pub struct modeconn_ensemble {
    _token: u8,
}

static ENSEMBLES: Registry<Ensemble> = Registry::new("ensemble");

/// The kind of a bundle (`modeconn_ensemble_kind`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_kind {
    /// A curve: members are points `w(t)`, `t` in [0, 1].
    Curve = 0,
    /// A snapshot set: members are numbered from 0.
    Snapshots = 1,
}

/// The basis of a curve (`modeconn_ensemble_basis`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_basis {
    /// Not a curve (a snapshot set).
    None = 0,
    /// Bezier curve.
    Bezier = 1,
    /// Polygonal chain.
    Polychain = 2,
}

/// The execution provider that runs an ensemble (`modeconn_ensemble_provider`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_provider {
    /// ONNX Runtime's CPU execution provider.
    Cpu = 0,
    /// The CUDA execution provider.
    Cuda = 1,
}

/// How a `modeconn_sampling` chooses the members that answer a query (its `mode` field).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_sampling_mode {
    /// Curves: the `ts_len` values of `ts`.
    At = 0,
    /// Curves: `count >= 2` equally spaced t values from 0 to 1.
    Grid = 1,
    /// Curves: `count` t values drawn uniformly in [0, 1] from a generator seeded with `seed`.
    Uniform = 2,
    /// Curves: `count` t values drawn uniformly in arc length, seeded with `seed`.
    ArcUniform = 3,
    /// Snapshot sets: every member.
    AllMembers = 4,
    /// Snapshot sets: the `members_len` members of `members`, in order.
    Members = 5,
    /// One member per sample drawn uniformly (a point of a grid of `count` points for curves,
    /// a member for snapshot sets), from the OS CSPRNG, or seeded with `seed` when `seeded`
    /// is non-zero (tests and reproducible experiments only).
    Randomized = 6,
    /// One member per sample chosen by a keyed hash of the sample's bytes with the 32-byte
    /// `key` (grid of `count` points for curves).
    Keyed = 7,
}

/// How to choose the members of a prediction. Zero-initialise it and set the fields the mode
/// uses; the others are ignored. The pointers are borrowed during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct modeconn_sampling {
    /// A `modeconn_sampling_mode` value.
    pub mode: u32,
    /// Non-zero: use `seed` in `MODECONN_SAMPLING_MODE_RANDOMIZED`.
    pub seeded: u32,
    /// M (grid), N (uniform, arc-uniform), or the grid size R (randomised, keyed; curves).
    pub count: usize,
    /// Seed of `UNIFORM`, `ARC_UNIFORM`, and of `RANDOMIZED` when `seeded` is non-zero.
    pub seed: u64,
    /// The t values of `AT` (`ts_len` of them).
    pub ts: *const f64,
    /// Number of values in `ts`.
    pub ts_len: usize,
    /// The member indices of `MEMBERS` (`members_len` of them).
    pub members: *const usize,
    /// Number of values in `members`.
    pub members_len: usize,
    /// The 32-byte key of `KEYED`.
    pub key: *const u8,
}

/// Whether a `modeconn_member` is a point of a curve or a member of a snapshot set.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_member_kind {
    /// The point `w(t)` of a curve (`t` holds t).
    T = 0,
    /// Member `index` of a snapshot set.
    Index = 1,
}

/// One network of an ensemble: a point of a curve or a member of a snapshot set.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct modeconn_member {
    /// A `modeconn_member_kind` value.
    pub kind: u32,
    /// t, for `MODECONN_MEMBER_KIND_T`.
    pub t: f64,
    /// The index, for `MODECONN_MEMBER_KIND_INDEX`.
    pub index: usize,
}

impl From<Member> for modeconn_member {
    fn from(m: Member) -> Self {
        match m {
            Member::T(t) => modeconn_member {
                kind: modeconn_member_kind::T as u32,
                t,
                index: 0,
            },
            Member::Index(index) => modeconn_member {
                kind: modeconn_member_kind::Index as u32,
                t: 0.0,
                index,
            },
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(modeconn_status::InvalidArgument, message)
}

/// Reads a C sampling description.
///
/// # Safety
///
/// The pointers of `s` that its mode uses must be valid for their lengths (`key`: 32 bytes).
unsafe fn sampling(s: &modeconn_sampling) -> Result<Sampling, Failure> {
    Ok(match s.mode {
        0 => {
            // SAFETY: `ts_len` values (the caller's contract).
            let ts = unsafe { slice_in(s.ts, s.ts_len, "sampling.ts") }?;
            Sampling::At(ts.to_vec())
        }
        1 => Sampling::Grid(s.count),
        2 => Sampling::Uniform {
            n: s.count,
            seed: s.seed,
        },
        3 => Sampling::ArcUniform {
            n: s.count,
            seed: s.seed,
        },
        4 => Sampling::AllMembers,
        5 => {
            // SAFETY: `members_len` values (the caller's contract).
            let m = unsafe { slice_in(s.members, s.members_len, "sampling.members") }?;
            Sampling::Members(m.to_vec())
        }
        6 => Sampling::Randomized {
            grid: s.count,
            seed: (s.seeded != 0).then_some(s.seed),
        },
        7 => {
            not_null!(s.key, "sampling.key");
            // SAFETY: 32 readable bytes (the caller's contract).
            let key = unsafe { slice_in(s.key, 32, "sampling.key") }?;
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Sampling::Keyed {
                key: k,
                grid: s.count,
            }
        }
        other => {
            return Err(invalid(format!(
                "sampling.mode {other} is not a modeconn_sampling_mode (0 to 7)"
            )));
        }
    })
}

/// The number of members a sampling selects for `batch` samples.
fn member_count(ensemble: &Ensemble, sampling: &Sampling, batch: usize) -> usize {
    match sampling {
        Sampling::At(ts) => ts.len(),
        Sampling::Grid(m) => *m,
        Sampling::Uniform { n, .. } | Sampling::ArcUniform { n, .. } => *n,
        Sampling::AllMembers => ensemble.bundle().metadata().points,
        Sampling::Members(m) => m.len(),
        Sampling::Randomized { .. } | Sampling::Keyed { .. } => batch,
    }
}

/// Numbers of values one sample's input holds (the product of the input shape after batch).
fn sample_len(ensemble: &Ensemble) -> usize {
    ensemble.bundle().metadata().input.shape[1..]
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .product()
}

/// Opens a bundle file and prepares it to run on `runtime`.
///
/// - `runtime`: a live runtime handle (borrowed; it may be freed afterwards, the ensemble
///   keeps what it needs).
/// - `path`: the bundle's path, NUL-terminated UTF-8, borrowed during the call.
/// - `out`: receives the new handle, owned by the caller, to be released with
///   `modeconn_ensemble_free`. Written only on success.
///
/// Statuses: `OK`; `NULL_ARGUMENT`; `INVALID_HANDLE`; `UTF8`; `IO` (missing or unreadable
/// file); a bundle error (`TRUNCATED`, `HEADER`, `METADATA`, `UNKNOWN_KIND`, `UNKNOWN_BASIS`,
/// `MISSING_TENSOR`, `LEADING_AXIS`, `MISSING_GRAPH_INPUT`, `SHAPE_MISMATCH`, `DTYPE`,
/// `NOT_FINITE`, `ONNX`); `ORT`; `PANIC`.
///
/// Thread-safe.
///
/// # Safety
///
/// `path` must be NULL or NUL-terminated; `out` NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_open(
    runtime: *const modeconn_runtime,
    path: *const c_char,
    out: *mut *mut modeconn_ensemble,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(out, "out");
        let runtime = RUNTIMES.get(runtime)?;
        // SAFETY: NULL or NUL-terminated (this function's contract).
        let path = unsafe { c_str(path, "path") }?;
        open(&runtime, path, EnsembleOptions::default(), out)
    }
}

/// Opens a bundle, registers the ensemble and writes its handle to `out` (checked non-NULL).
fn open(
    runtime: &::modeconn_runtime::Runtime,
    path: &str,
    options: EnsembleOptions,
    out: *mut *mut modeconn_ensemble,
) -> Result<(), Failure> {
    let ensemble = Ensemble::open(runtime, path, options)?;
    let token = Box::into_raw(Box::new(modeconn_ensemble { _token: 0 }));
    ENSEMBLES.insert(token, ensemble);
    // SAFETY: checked non-NULL by the caller; valid for writes (its contract).
    unsafe { write_out(out, token) };
    Ok(())
}

/// Opens a bundle file like `modeconn_ensemble_open`, with the ensemble's options.
///
/// - `runtime`, `path`, `out`: as for `modeconn_ensemble_open`.
/// - `static_budget_bytes`: bytes of weights that may be kept in static (materialised)
///   sessions, which run a frequently used member faster; 0 disables them (every member then
///   runs in the shared dynamic session). `modeconn_ensemble_open` uses 1 GiB. The predictions
///   are the same whatever the budget.
/// - `max_sessions`: ONNX Runtime sessions per model, i.e. how many threads can run one member
///   at the same time; 0 chooses the default (the number of CPUs available).
///
/// Statuses: those of `modeconn_ensemble_open`. Thread-safe.
///
/// # Safety
///
/// `path` must be NULL or NUL-terminated; `out` NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_open_with(
    runtime: *const modeconn_runtime,
    path: *const c_char,
    static_budget_bytes: usize,
    max_sessions: usize,
    out: *mut *mut modeconn_ensemble,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(out, "out");
        let runtime = RUNTIMES.get(runtime)?;
        // SAFETY: NULL or NUL-terminated (this function's contract).
        let path = unsafe { c_str(path, "path") }?;
        let mut options = EnsembleOptions {
            static_budget: static_budget_bytes,
            ..EnsembleOptions::default()
        };
        if max_sessions != 0 {
            options.max_sessions = max_sessions;
        }
        open(&runtime, path, options, out)
    }
}

/// Releases an ensemble handle. NULL does nothing (`OK`).
///
/// Statuses: `OK`; `INVALID_HANDLE` when `ensemble` is not a live handle (e.g. freed twice;
/// nothing is done). Thread-safe: predictions in flight on other threads with this handle
/// finish normally, and the ensemble is released after the last of them.
///
/// # Safety
///
/// `ensemble` must be NULL or a handle returned by `modeconn_ensemble_open` or
/// `modeconn_ensemble_open_with`; it must not be used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_free(
    ensemble: *mut modeconn_ensemble,
) -> modeconn_status {
    ffi_boundary! {
        if ensemble.is_null() {
            return Ok(());
        }
        match ENSEMBLES.remove(ensemble) {
            Some(_) => {
                // SAFETY: a live handle is a box made by `modeconn_ensemble_open`, released
                // once (it has just left the registry).
                drop(unsafe { Box::from_raw(ensemble) });
                Ok(())
            }
            None => Err(ENSEMBLES.invalid()),
        }
    }
}

/// Implements the simple queries: look the handle up, check `out`, write `f(ensemble)`.
macro_rules! query {
    ($ensemble:expr, $out:expr, $f:expr) => {
        ffi_boundary! {
            not_null!($out, "out");
            let e = ENSEMBLES.get($ensemble)?;
            let value = $f(&*e)?;
            // SAFETY: checked non-NULL; valid for writes (the function's contract).
            unsafe { write_out($out, value) };
            Ok(())
        }
    };
}

/// Writes the bundle's kind (a `modeconn_kind` value) to `out`.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`. Thread-safe.
///
/// # Safety
///
/// `out` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_kind(
    ensemble: *const modeconn_ensemble,
    out: *mut u32,
) -> modeconn_status {
    query!(ensemble, out, |e: &Ensemble| -> Result<u32, Failure> {
        Ok(match e.bundle().metadata().kind {
            Kind::Curve => modeconn_kind::Curve as u32,
            Kind::Snapshots => modeconn_kind::Snapshots as u32,
        })
    })
}

/// Writes the curve's basis (a `modeconn_basis` value; `MODECONN_BASIS_NONE` for snapshot
/// sets) to `out`.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`. Thread-safe.
///
/// # Safety
///
/// `out` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_basis(
    ensemble: *const modeconn_ensemble,
    out: *mut u32,
) -> modeconn_status {
    query!(ensemble, out, |e: &Ensemble| -> Result<u32, Failure> {
        Ok(match e.bundle().metadata().basis {
            Some(Basis::Bezier) => modeconn_basis::Bezier as u32,
            Some(Basis::Polychain) => modeconn_basis::Polychain as u32,
            None => modeconn_basis::None as u32,
        })
    })
}

/// Writes the number of points to `out`: control points K of a curve, members M of a snapshot
/// set.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`. Thread-safe.
///
/// # Safety
///
/// `out` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_points(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |e: &Ensemble| -> Result<usize, Failure> {
        Ok(e.bundle().metadata().points)
    })
}

/// Writes the number of classes (the width of each row of probabilities) to `out`.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`. Thread-safe.
///
/// # Safety
///
/// `out` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_classes(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |e: &Ensemble| -> Result<usize, Failure> {
        Ok(e.bundle().metadata().output.classes)
    })
}

/// Writes the execution provider that runs the ensemble (a `modeconn_provider` value) to
/// `out`: with device `AUTO`, this says whether CUDA is in use.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`. Thread-safe.
///
/// # Safety
///
/// `out` must be NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_provider(
    ensemble: *const modeconn_ensemble,
    out: *mut u32,
) -> modeconn_status {
    query!(ensemble, out, |e: &Ensemble| -> Result<u32, Failure> {
        Ok(match e.provider() {
            Provider::Cuda => modeconn_provider::Cuda as u32,
            Provider::Cpu => modeconn_provider::Cpu as u32,
        })
    })
}

/// The bundle's input shape, batch axis first as -1 (e.g. `{-1, 3, 32, 32}`).
///
/// Size query: `rank` (required) receives the number of axes. `shape` may be NULL with
/// `shape_len` 0 to ask for the rank only (`OK`). Otherwise `shape` must hold `shape_len >=
/// rank` values and receives the shape; when `shape_len < rank` the call returns
/// `BUFFER_TOO_SMALL`, writes only `rank`, and leaves `shape` untouched.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_HANDLE`, `BUFFER_TOO_SMALL`. Thread-safe.
///
/// # Safety
///
/// `shape` must be NULL or valid for writing `shape_len` values; `rank` NULL or valid for
/// writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_input_shape(
    ensemble: *const modeconn_ensemble,
    shape: *mut i64,
    shape_len: usize,
    rank: *mut usize,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(rank, "rank");
        let e = ENSEMBLES.get(ensemble)?;
        let spec = &e.bundle().metadata().input.shape;
        // SAFETY: checked non-NULL; valid for writes (this function's contract).
        unsafe { write_out(rank, spec.len()) };
        if shape.is_null() && shape_len == 0 {
            return Ok(());
        }
        not_null!(shape, "shape");
        if shape_len < spec.len() {
            return Err(Failure::new(
                modeconn_status::BufferTooSmall,
                format!("shape holds {shape_len} values, the input has {} axes", spec.len()),
            ));
        }
        // SAFETY: `shape_len >= spec.len()` writable values (this function's contract).
        let out = unsafe { std::slice::from_raw_parts_mut(shape, spec.len()) };
        out[0] = -1;
        out[1..].copy_from_slice(&spec[1..]);
        Ok(())
    }
}

/// The sizes of the outputs of `modeconn_ensemble_predict` for `batch` samples: the number of
/// floats of `probabilities` (`batch * classes`), of `per_member` (`members * batch * classes`,
/// 0 in the per-sample modes `RANDOMIZED` and `KEYED`, which have no per-member
/// probabilities), and the number of `modeconn_member` of `members` (the members a shared
/// sampling selects, or `batch` in per-sample modes). The `entropy` output of
/// `modeconn_ensemble_predict_entropy` always holds `batch` floats.
///
/// Each out-pointer may be NULL (that size is not written). The sampling is not otherwise
/// checked here: `modeconn_ensemble_predict` does that.
///
/// Statuses: `OK`, `NULL_ARGUMENT` (`sampling`), `INVALID_HANDLE`, `INVALID_ARGUMENT` (an
/// unknown mode), `PANIC`. Thread-safe.
///
/// # Safety
///
/// `sampling` must be NULL or point to a `modeconn_sampling` whose pointers are valid for
/// their lengths; each out-pointer NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_predict_sizes(
    ensemble: *const modeconn_ensemble,
    sampling: *const modeconn_sampling,
    batch: usize,
    probabilities_len: *mut usize,
    per_member_len: *mut usize,
    members_len: *mut usize,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(sampling, "sampling");
        let e = ENSEMBLES.get(ensemble)?;
        // SAFETY: non-NULL; valid (this function's contract).
        let s = unsafe { self::sampling(&*sampling) }?;
        let classes = e.bundle().metadata().output.classes;
        let members = member_count(&e, &s, batch);
        let per_member = if s.is_per_sample() { 0 } else { members * batch * classes };
        // SAFETY: each is NULL or writable (this function's contract).
        unsafe {
            if !probabilities_len.is_null() {
                write_out(probabilities_len, batch * classes);
            }
            if !per_member_len.is_null() {
                write_out(per_member_len, per_member);
            }
            if !members_len.is_null() {
                write_out(members_len, members);
            }
        }
        Ok(())
    }
}

/// Predicts a batch: the mean softmax probabilities over the members `sampling` selects.
///
/// - `input`: `input_len` floats, `batch` samples of the bundle's input shape in row-major
///   order (`input_len` must be `batch` times the product of the shape after the batch axis,
///   else `INPUT`). Borrowed during the call.
/// - `sampling`: how to choose the members (see `modeconn_sampling`). Borrowed.
/// - `probabilities`: receives `batch * classes` floats, row-major `[batch, classes]`;
///   `probabilities_len` is its capacity in floats.
/// - `per_member`: NULL, or receives each member's probabilities, `[members, batch, classes]`
///   (`per_member_len` floats of capacity). Not available in the per-sample modes (`SAMPLING`
///   if asked for there).
/// - `members`: NULL, or receives the members used, in order (one per sample in per-sample
///   modes); `members_len` is its capacity.
///
/// `modeconn_ensemble_predict_sizes` gives the sizes needed. Buffers are checked before any
/// work: one that is too small returns `BUFFER_TOO_SMALL` and nothing is written. Outputs are
/// written only on success; on failure the buffers are left untouched.
///
/// Statuses: `OK`; `NULL_ARGUMENT`; `INVALID_HANDLE`; `BUFFER_TOO_SMALL`; `INPUT` (wrong
/// `input_len`, zero batch); `INVALID_ARGUMENT` (unknown mode, zero counts, empty lists);
/// `T_OUT_OF_RANGE`; `MEMBER_OUT_OF_RANGE`; `SAMPLING` (a mode that does not fit the bundle's
/// kind); `NOT_FINITE`; `ORT`; `PANIC`.
///
/// Thread-safe: several threads may predict with one ensemble at once.
///
/// # Safety
///
/// Every non-NULL pointer must be valid for its length (reads for `input`, writes for the
/// outputs), and the buffers must not overlap.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn modeconn_ensemble_predict(
    ensemble: *const modeconn_ensemble,
    input: *const f32,
    input_len: usize,
    batch: usize,
    sampling: *const modeconn_sampling,
    probabilities: *mut f32,
    probabilities_len: usize,
    per_member: *mut f32,
    per_member_len: usize,
    members: *mut modeconn_member,
    members_len: usize,
) -> modeconn_status {
    ffi_boundary! {
        let inputs = Inputs { input, input_len, batch, sampling };
        let outputs = Outputs {
            probabilities,
            probabilities_len,
            per_member,
            per_member_len,
            members,
            members_len,
            entropy: std::ptr::null_mut(),
            entropy_len: 0,
        };
        // SAFETY: this function's contract is `predict`'s.
        unsafe { predict(ensemble, inputs, outputs) }
    }
}

/// Predicts a batch like `modeconn_ensemble_predict` and writes the predictive entropy of each
/// sample: the entropy, in nats, of the sample's mean probabilities (`-sum_c p_c ln p_c`; 0 for
/// a one-hot row, at most `ln(classes)`).
///
/// - `input`, `input_len`, `batch`, `sampling`, `probabilities`, `probabilities_len`: as for
///   `modeconn_ensemble_predict`.
/// - `entropy`: receives `batch` floats, one per sample in order; `entropy_len` is its
///   capacity in floats (at least `batch`). Required (not NULL).
///
/// Buffers are checked before any work: one that is too small returns `BUFFER_TOO_SMALL` and
/// nothing is written. Outputs are written only on success; on failure the buffers are left
/// untouched.
///
/// Statuses: those of `modeconn_ensemble_predict`. Thread-safe.
///
/// # Safety
///
/// Every non-NULL pointer must be valid for its length (reads for `input`, writes for the
/// outputs), and the buffers must not overlap.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn modeconn_ensemble_predict_entropy(
    ensemble: *const modeconn_ensemble,
    input: *const f32,
    input_len: usize,
    batch: usize,
    sampling: *const modeconn_sampling,
    probabilities: *mut f32,
    probabilities_len: usize,
    entropy: *mut f32,
    entropy_len: usize,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(entropy, "entropy");
        let inputs = Inputs { input, input_len, batch, sampling };
        let outputs = Outputs {
            probabilities,
            probabilities_len,
            per_member: std::ptr::null_mut(),
            per_member_len: 0,
            members: std::ptr::null_mut(),
            members_len: 0,
            entropy,
            entropy_len,
        };
        // SAFETY: this function's contract is `predict`'s.
        unsafe { predict(ensemble, inputs, outputs) }
    }
}

/// The inputs of a prediction (arguments of `modeconn_ensemble_predict`).
struct Inputs {
    input: *const f32,
    input_len: usize,
    batch: usize,
    sampling: *const modeconn_sampling,
}

/// The output buffers of a prediction: NULL for those not asked for (`probabilities` is
/// required).
struct Outputs {
    probabilities: *mut f32,
    probabilities_len: usize,
    per_member: *mut f32,
    per_member_len: usize,
    members: *mut modeconn_member,
    members_len: usize,
    entropy: *mut f32,
    entropy_len: usize,
}

/// The body of the prediction functions: checks every argument and buffer, predicts, and
/// writes the outputs asked for (only on success).
///
/// # Safety
///
/// Every non-NULL pointer must be valid for its length (reads for the inputs, writes for the
/// outputs), and the buffers must not overlap.
unsafe fn predict(ensemble: *const modeconn_ensemble, i: Inputs, o: Outputs) -> FfiResult {
    let Inputs {
        input,
        input_len,
        batch,
        sampling,
    } = i;
    let Outputs {
        probabilities,
        probabilities_len,
        per_member,
        per_member_len,
        members,
        members_len,
        entropy,
        entropy_len,
    } = o;
    not_null!(input, "input");
    not_null!(sampling, "sampling");
    not_null!(probabilities, "probabilities");
    let e = ENSEMBLES.get(ensemble)?;
    // SAFETY: non-NULL; valid (this function's contract).
    let s = unsafe { self::sampling(&*sampling) }?;
    let meta = e.bundle().metadata();
    let classes = meta.output.classes;
    let per_sample = sample_len(&e);
    if batch == 0 {
        return Err(Failure::new(modeconn_status::Input, "batch is 0"));
    }
    let expected = batch.checked_mul(per_sample).ok_or_else(|| {
        Failure::new(
            modeconn_status::Input,
            format!("batch {batch} is too large"),
        )
    })?;
    if input_len != expected {
        return Err(Failure::new(
            modeconn_status::Input,
            format!(
                "input holds {input_len} floats; {batch} samples of shape {:?} need {expected}",
                &meta.input.shape[1..]
            ),
        ));
    }
    let count = member_count(&e, &s, batch);
    let need = |len: usize, need: usize, name: &str| -> Result<(), Failure> {
        if len < need {
            return Err(Failure::new(
                modeconn_status::BufferTooSmall,
                format!("{name} holds {len} values, the result needs {need}"),
            ));
        }
        Ok(())
    };
    need(probabilities_len, batch * classes, "probabilities")?;
    if !per_member.is_null() {
        if s.is_per_sample() {
            return Err(Failure::new(
                modeconn_status::Sampling,
                "per-member probabilities are not available in per-sample modes \
                     (RANDOMIZED, KEYED): pass per_member = NULL",
            ));
        }
        need(per_member_len, count * batch * classes, "per_member")?;
    }
    if !members.is_null() {
        need(members_len, count, "members")?;
    }
    if !entropy.is_null() {
        need(entropy_len, batch, "entropy")?;
    }
    // SAFETY: non-NULL, `input_len` floats (this function's contract).
    let data = unsafe { slice_in(input, input_len, "input") }?;
    let mut shape: Vec<usize> = vec![batch];
    shape.extend(
        meta.input.shape[1..]
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0)),
    );
    let view = ArrayViewD::from_shape(IxDyn(&shape), data)
        .map_err(|err| Failure::new(modeconn_status::Input, err.to_string()))?;
    let p = e.predict(view, &s, !per_member.is_null())?;
    // The runtime's results have the sizes checked above; check again before writing.
    if p.probabilities.len() != batch * classes
        || p.members.len() > count
        || p.entropy.len() != batch
    {
        return Err(Failure::new(
            modeconn_status::Panic,
            "internal error: the prediction does not have the expected size",
        ));
    }
    // SAFETY: each buffer is valid for the lengths checked above (this function's
    // contract).
    unsafe {
        let out = std::slice::from_raw_parts_mut(probabilities, batch * classes);
        for (o, v) in out.iter_mut().zip(p.probabilities.iter()) {
            *o = *v;
        }
        if let (false, Some(all)) = (per_member.is_null(), p.per_member.as_ref()) {
            let n = all.len().min(per_member_len);
            let out = std::slice::from_raw_parts_mut(per_member, n);
            for (o, v) in out.iter_mut().zip(all.iter()) {
                *o = *v;
            }
        }
        if !members.is_null() {
            let out = std::slice::from_raw_parts_mut(members, p.members.len());
            for (o, m) in out.iter_mut().zip(p.members.iter()) {
                *o = (*m).into();
            }
        }
        if !entropy.is_null() {
            let out = std::slice::from_raw_parts_mut(entropy, batch);
            for (o, v) in out.iter_mut().zip(p.entropy.iter()) {
                *o = *v;
            }
        }
    }
    Ok(())
}

/// Writes a standalone ONNX model of one member (the bundle's graph with every varying tensor
/// fixed to its value there, runnable by any ONNX Runtime) to the file `path`, replacing it
/// atomically.
///
/// - `member`: for curves `{MODECONN_MEMBER_KIND_T, t, 0}`, for snapshot sets
///   `{MODECONN_MEMBER_KIND_INDEX, 0, index}`. Borrowed.
/// - `path`: NUL-terminated UTF-8, borrowed.
///
/// Statuses: `OK`; `NULL_ARGUMENT`; `INVALID_HANDLE`; `UTF8`; `INVALID_ARGUMENT` (unknown
/// member kind); `T_OUT_OF_RANGE`; `MEMBER_OUT_OF_RANGE`; `SAMPLING` (t for a snapshot set or
/// an index for a curve); `IO`; `ONNX`; `PANIC`. Thread-safe.
///
/// # Safety
///
/// `member` must be NULL or point to a `modeconn_member`; `path` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_materialize(
    ensemble: *const modeconn_ensemble,
    member: *const modeconn_member,
    path: *const c_char,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(member, "member");
        let e = ENSEMBLES.get(ensemble)?;
        // SAFETY: non-NULL and valid (this function's contract).
        let m = unsafe { *member };
        // SAFETY: NULL or NUL-terminated (this function's contract).
        let path = unsafe { c_str(path, "path") }?;
        let member = match m.kind {
            0 => Member::T(m.t),
            1 => Member::Index(m.index),
            other => {
                return Err(invalid(format!(
                    "member.kind {other} is not a modeconn_member_kind (0 t, 1 index)"
                )));
            }
        };
        let model = e.bundle().materialize(member)?;
        ::modeconn_runtime::write_file_atomic(std::path::Path::new(path), &model)?;
        Ok(())
    }
}
