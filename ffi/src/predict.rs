//! Predictions: the input batch, the sampling of members, the output buffers, and the one
//! call that fills them.

use ::modeconn_runtime::{Ensemble, Sampling};
use ndarray::{ArrayViewD, IxDyn};

use crate::ensemble::{ENSEMBLES, modeconn_ensemble};
use crate::member::modeconn_member;
use crate::{ApiStatus, Failure, FfiResult, modeconn_status, slice_in, write_out};

/// How a modeconn_sampling chooses the members that answer a query (its mode field).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
pub enum modeconn_sampling_mode {
    /// Curves: the ts_len values of ts.
    At = 0,
    /// Curves: count >= 2 equally spaced t values from 0 to 1.
    Grid = 1,
    /// Curves: count t values drawn uniformly in [0, 1] from a generator seeded with seed.
    Uniform = 2,
    /// Curves: count t values drawn uniformly in arc length, seeded with seed.
    ArcUniform = 3,
    /// Snapshot sets: every member.
    AllMembers = 4,
    /// Snapshot sets: the members_len members of members, in order.
    Members = 5,
    /// One member per sample drawn uniformly (a point of a grid of count points for curves,
    /// a member for snapshot sets), from the operating system's CSPRNG, or seeded with seed
    /// when seeded is non-zero (tests and reproducible experiments only).
    Randomized = 6,
    /// One member per sample chosen by a keyed hash of the sample's bytes with the 32-byte
    /// key (grid of count points for curves).
    Keyed = 7,
}

/// How to choose the members of a prediction. Zero-initialise it and set mode and the fields
/// the mode uses; the others are ignored. The pointers are borrowed during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct modeconn_sampling {
    /// A modeconn_sampling_mode value.
    pub mode: u32,
    /// Non-zero: use seed in MODECONN_SAMPLING_MODE_RANDOMIZED.
    pub seeded: u32,
    /// M (grid), N (uniform, arc-uniform), or the grid size R (randomised, keyed; curves).
    pub count: usize,
    /// Seed of UNIFORM, ARC_UNIFORM, and of RANDOMIZED when seeded is non-zero.
    pub seed: u64,
    /// The t values of AT (ts_len of them).
    pub ts: *const f64,
    /// Number of values in ts.
    pub ts_len: usize,
    /// The member indices of MEMBERS (members_len of them).
    pub members: *const usize,
    /// Number of values in members.
    pub members_len: usize,
    /// The 32-byte key of KEYED.
    pub key: *const u8,
    /// KEYED: 0 hashes the input values themselves (with -0.0 read as +0.0); a positive value
    /// rounds each input value to the nearest multiple of it first, so that changes well below
    /// it meet the same member.
    pub quantum: f64,
}

/// An input batch: batch samples of the bundle's input shape (modeconn_ensemble_input_shape)
/// in row-major order. Borrowed during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct modeconn_input {
    /// The values, len floats.
    pub data: *const f32,
    /// Number of floats in data: batch times the product of the input shape after the batch
    /// axis.
    pub len: usize,
    /// Number of samples (at least 1).
    pub batch: usize,
}

/// Where modeconn_ensemble_predict writes its results: one buffer per output and its capacity
/// in elements. probabilities is required; every other buffer may be NULL (with capacity 0),
/// and that output is then not computed or not written. modeconn_ensemble_output_sizes gives
/// the size of each.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct modeconn_outputs {
    /// Mean probabilities over the members, row-major [batch, classes].
    pub probabilities: *mut f32,
    /// Capacity of probabilities, in floats.
    pub probabilities_len: usize,
    /// Each member's probabilities, [members, batch, classes]. Not available in the
    /// per-sample modes RANDOMIZED and KEYED (MODECONN_STATUS_SAMPLING if asked for there).
    pub per_member: *mut f32,
    /// Capacity of per_member, in floats.
    pub per_member_len: usize,
    /// The members used, in order; one per sample in the per-sample modes.
    pub members: *mut modeconn_member,
    /// Capacity of members.
    pub members_len: usize,
    /// Predictive entropy of each sample: the entropy, in nats, of its mean probabilities
    /// (-sum_c p_c ln p_c; 0 for a one-hot row, at most ln(classes)); batch floats.
    pub entropy: *mut f32,
    /// Capacity of entropy, in floats.
    pub entropy_len: usize,
    /// Disagreement of each sample: the fraction of members whose most probable class differs
    /// from the ensemble's; batch floats. Not available in the per-sample modes
    /// (MODECONN_STATUS_SAMPLING if asked for there).
    pub disagreement: *mut f32,
    /// Capacity of disagreement, in floats.
    pub disagreement_len: usize,
}

/// The number of elements each output of modeconn_ensemble_predict needs
/// (modeconn_ensemble_output_sizes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct modeconn_output_sizes {
    /// Floats of probabilities: batch * classes.
    pub probabilities: usize,
    /// Floats of per_member: members * batch * classes; 0 in the per-sample modes.
    pub per_member: usize,
    /// modeconn_member values of members: the members a shared sampling selects, or batch in
    /// the per-sample modes.
    pub members: usize,
    /// Floats of entropy: batch.
    pub entropy: usize,
    /// Floats of disagreement: batch; 0 in the per-sample modes.
    pub disagreement: usize,
}

/// Reads a C sampling description.
///
/// # Safety
///
/// `s` must point to a `modeconn_sampling` whose pointers that its mode uses are valid for
/// their lengths (`key`: 32 bytes).
unsafe fn sampling(s: *const modeconn_sampling) -> Result<Sampling, Failure> {
    // SAFETY: non-NULL and valid (the caller's contract); every field accepts any bits.
    let s = unsafe { s.read() };
    use modeconn_sampling_mode as M;
    let mode = M::from_repr(s.mode).ok_or_else(|| {
        Failure::invalid(format!(
            "sampling.mode {} is not a modeconn_sampling_mode (MODECONN_SAMPLING_MODE_AT {} to \
             MODECONN_SAMPLING_MODE_KEYED {})",
            s.mode,
            M::At as u32,
            M::Keyed as u32
        ))
    })?;
    Ok(match mode {
        M::At => {
            // SAFETY: `ts_len` values (the caller's contract).
            let ts = unsafe { slice_in(s.ts, s.ts_len, "sampling.ts") }?;
            Sampling::At(ts.to_vec())
        }
        M::Grid => Sampling::Grid(s.count),
        M::Uniform => Sampling::Uniform {
            n: s.count,
            seed: s.seed,
        },
        M::ArcUniform => Sampling::ArcUniform {
            n: s.count,
            seed: s.seed,
        },
        M::AllMembers => Sampling::AllMembers,
        M::Members => {
            // SAFETY: `members_len` values (the caller's contract).
            let m = unsafe { slice_in(s.members, s.members_len, "sampling.members") }?;
            Sampling::Members(m.to_vec())
        }
        M::Randomized => Sampling::Randomized {
            grid: s.count,
            seed: (s.seeded != 0).then_some(s.seed),
        },
        M::Keyed => {
            not_null!(s.key, "sampling.key");
            // SAFETY: 32 readable bytes (the caller's contract).
            let key = unsafe { slice_in(s.key, 32, "sampling.key") }?;
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Sampling::Keyed {
                key: k,
                grid: s.count,
                quantum: (s.quantum != 0.0).then_some(s.quantum as f32),
            }
        }
    })
}

/// The size of each output for `batch` samples, with overflow answered as an input error.
fn sizes(
    ensemble: &Ensemble,
    sampling: &Sampling,
    batch: usize,
) -> Result<modeconn_output_sizes, Failure> {
    let too_large = || {
        Failure::new(
            ::modeconn_runtime::ErrorCode::Input,
            format!("batch {batch} is too large: the outputs would not fit in memory"),
        )
    };
    let classes = ensemble.bundle().metadata().output.classes;
    let members = ensemble.member_count(sampling, batch)?;
    let probabilities = batch.checked_mul(classes).ok_or_else(too_large)?;
    let shared = !sampling.is_per_sample();
    let per_member = if shared {
        probabilities.checked_mul(members).ok_or_else(too_large)?
    } else {
        0
    };
    Ok(modeconn_output_sizes {
        probabilities,
        per_member,
        members,
        entropy: batch,
        disagreement: if shared { batch } else { 0 },
    })
}

/// The size of each output of modeconn_ensemble_predict for batch samples and this sampling:
/// see modeconn_output_sizes. The sampling is checked as modeconn_ensemble_predict checks it
/// before any work (mode, the kind of bundle it needs, counts), but not the t values or member
/// indices it lists.
///
/// Statuses: OK; NULL_ARGUMENT (sampling, out); INVALID_HANDLE; INVALID_ARGUMENT (an unknown
/// mode, a grid of fewer than 2 points); SAMPLING (a mode that does not fit the bundle's kind,
/// nothing selected); INPUT (a batch whose outputs would overflow); PANIC. Thread-safe.
///
/// Pointers: sampling is NULL or points to a modeconn_sampling whose pointers are valid for
/// their lengths; out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_output_sizes(
    ensemble: *const modeconn_ensemble,
    sampling: *const modeconn_sampling,
    batch: usize,
    out: *mut modeconn_output_sizes,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(sampling, "sampling");
        not_null!(out, "out");
        let h = ENSEMBLES.get(ensemble)?;
        // SAFETY: non-NULL; valid (this function's contract).
        let s = unsafe { self::sampling(sampling) }?;
        let sizes = sizes(&h.ensemble, &s, batch)?;
        // SAFETY: non-NULL; valid for writes (this function's contract).
        unsafe { write_out(out, sizes) };
        Ok(())
    }
}

/// Checks that a buffer asked for holds `need` elements.
fn room(ptr_is_null: bool, len: usize, need: usize, name: &str) -> FfiResult {
    if !ptr_is_null && len < need {
        return Err(Failure::new(
            ApiStatus::BufferTooSmall,
            format!("outputs.{name} holds {len} values, the result needs {need}"),
        ));
    }
    Ok(())
}

/// Copies `values` into a caller's buffer when it is not NULL.
///
/// # Safety
///
/// `ptr` must be NULL or valid for writing `values.len()` items.
unsafe fn copy_out<T: Copy>(ptr: *mut T, values: impl ExactSizeIterator<Item = T>) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the caller's contract.
    let out = unsafe { std::slice::from_raw_parts_mut(ptr, values.len()) };
    for (o, v) in out.iter_mut().zip(values) {
        *o = v;
    }
}

/// Predicts a batch: the mean softmax probabilities over the members sampling selects, and
/// the other outputs asked for.
///
/// input: the batch (see modeconn_input); its len must be batch times the product of the
/// input shape after the batch axis, else INPUT.
///
/// sampling: how to choose the members (see modeconn_sampling).
///
/// outputs: the buffers to fill (see modeconn_outputs); probabilities is required.
/// modeconn_ensemble_output_sizes gives the sizes needed.
///
/// Every argument and buffer is checked before any work: a buffer that is too small returns
/// BUFFER_TOO_SMALL and nothing is written. Outputs are written only on success; on failure
/// the buffers are left untouched.
///
/// Statuses: OK; NULL_ARGUMENT; INVALID_HANDLE; BUFFER_TOO_SMALL; INPUT (wrong len, a batch of
/// 0); INVALID_ARGUMENT (unknown mode, a grid of fewer than 2 points); T_OUT_OF_RANGE;
/// MEMBER_OUT_OF_RANGE; SAMPLING (a mode that does not fit the bundle's kind, nothing
/// selected, per_member or disagreement asked for in a per-sample mode); NOT_FINITE; ORT;
/// PANIC.
///
/// Thread-safe: several threads may predict with one ensemble at once.
///
/// Pointers: input, sampling and outputs are NULL or point to their structs, whose non-NULL
/// pointers are valid for their lengths (reads for the input and sampling, writes for the
/// outputs); the output buffers must not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_predict(
    ensemble: *const modeconn_ensemble,
    input: *const modeconn_input,
    sampling: *const modeconn_sampling,
    outputs: *const modeconn_outputs,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(input, "input");
        not_null!(sampling, "sampling");
        not_null!(outputs, "outputs");
        // SAFETY: non-NULL and valid (this function's contract); every field takes any bits.
        let (input, o) = unsafe { (input.read(), outputs.read()) };
        not_null!(input.data, "input.data");
        not_null!(o.probabilities, "outputs.probabilities");
        let h = ENSEMBLES.get(ensemble)?;
        let e = &h.ensemble;
        // SAFETY: non-NULL; valid (this function's contract).
        let s = unsafe { self::sampling(sampling) }?;
        let meta = e.bundle().metadata();
        if input.batch == 0 {
            return Err(Failure::new(::modeconn_runtime::ErrorCode::Input, "input.batch is 0"));
        }
        let mut shape: Vec<usize> = vec![input.batch];
        shape.extend(meta.input.shape[1..].iter().map(|&d| usize::try_from(d).unwrap_or(0)));
        let expected = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                Failure::new(::modeconn_runtime::ErrorCode::Input, format!("batch {} is too large", input.batch))
            })?;
        if input.len != expected {
            return Err(Failure::new(
                ::modeconn_runtime::ErrorCode::Input,
                format!(
                    "input.len is {}; {} samples of shape {:?} need {expected} floats",
                    input.len,
                    input.batch,
                    &meta.input.shape[1..]
                ),
            ));
        }
        let need = sizes(e, &s, input.batch)?;
        if s.is_per_sample() && !(o.per_member.is_null() && o.disagreement.is_null()) {
            return Err(Failure::new(
                ::modeconn_runtime::ErrorCode::Sampling,
                "per-member probabilities and disagreement are not available in per-sample \
                 modes (RANDOMIZED, KEYED): set outputs.per_member and outputs.disagreement to \
                 NULL",
            ));
        }
        room(false, o.probabilities_len, need.probabilities, "probabilities")?;
        room(o.per_member.is_null(), o.per_member_len, need.per_member, "per_member")?;
        room(o.members.is_null(), o.members_len, need.members, "members")?;
        room(o.entropy.is_null(), o.entropy_len, need.entropy, "entropy")?;
        room(o.disagreement.is_null(), o.disagreement_len, need.disagreement, "disagreement")?;
        // SAFETY: non-NULL, `input.len` floats (this function's contract).
        let data = unsafe { slice_in(input.data, input.len, "input.data") }?;
        let view = ArrayViewD::from_shape(IxDyn(&shape), data)
            .map_err(|err| Failure::new(::modeconn_runtime::ErrorCode::Input, err.to_string()))?;
        let p = e.predict(view, &s, !o.per_member.is_null())?;
        // The runtime's results have the sizes checked above; check again before writing.
        let per_member = p.per_member.as_ref().map_or(0, |a| a.len());
        if p.probabilities.len() != need.probabilities
            || p.members.len() != need.members
            || p.entropy.len() != need.entropy
            || (!o.per_member.is_null() && per_member != need.per_member)
        {
            return Err(Failure::new(
                ApiStatus::Panic,
                "internal error: the prediction does not have the expected size",
            ));
        }
        // SAFETY: each non-NULL buffer holds at least the sizes checked above (this function's
        // contract).
        unsafe {
            copy_out(o.probabilities, p.probabilities.iter().copied());
            if let Some(all) = &p.per_member {
                copy_out(o.per_member, all.iter().copied());
            }
            copy_out(o.members, p.members.iter().map(|&m| modeconn_member::from(m)));
            copy_out(o.entropy, p.entropy.iter().copied());
            if let Some(d) = &p.disagreement {
                copy_out(o.disagreement, d.iter().copied());
            }
        }
        Ok(())
    }
}
