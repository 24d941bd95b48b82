//! The ensemble handle: a loaded bundle, its properties and its metadata.

use std::ffi::{CString, c_char};

use ::modeconn_runtime::bundle::Kind;
use ::modeconn_runtime::curve::Basis;
use ::modeconn_runtime::{Ensemble, EnsembleOptions, Provider, Runtime};

use crate::handle::Registry;
use crate::runtime::{RUNTIMES, modeconn_runtime};
use crate::{ApiStatus, Failure, FfiResult, c_str, modeconn_status, write_out};

/// A loaded bundle ready to predict (opaque). Create it with modeconn_ensemble_open or
/// modeconn_ensemble_open_with, release it with modeconn_ensemble_free. Safe to use from
/// several threads at once.
pub struct modeconn_ensemble {
    _token: u8,
}

/// What an ensemble handle stands for: the ensemble, and its metadata as C strings, made once
/// at open so that the accessors can lend them for the life of the handle.
pub(crate) struct EnsembleHandle {
    pub ensemble: Ensemble,
    input_name: CString,
    output_name: CString,
    labels: Vec<CString>,
    provenance: Option<CString>,
}

impl EnsembleHandle {
    fn new(ensemble: Ensemble) -> Self {
        let meta = ensemble.bundle().metadata();
        EnsembleHandle {
            input_name: c_string(&meta.input.name),
            output_name: c_string(&meta.output.name),
            labels: meta.labels.iter().flatten().map(|l| c_string(l)).collect(),
            provenance: meta.provenance.as_ref().map(|p| c_string(&p.to_string())),
            ensemble,
        }
    }
}

/// A C string of `text`; an interior NUL (which C strings cannot hold) is written `\0`.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

pub(crate) static ENSEMBLES: Registry<EnsembleHandle> = Registry::new("ensemble");

/// The kind of a bundle (modeconn_ensemble_kind).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_kind {
    /// A curve: members are points w(t), t in [0, 1].
    Curve = 0,
    /// A snapshot set: members are numbered from 0.
    Snapshots = 1,
}

/// The basis of a curve (modeconn_ensemble_basis).
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

/// The execution provider that runs an ensemble (modeconn_ensemble_provider).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum modeconn_provider {
    /// ONNX Runtime's CPU execution provider.
    Cpu = 0,
    /// The CUDA execution provider.
    Cuda = 1,
}

/// Opens a bundle, registers the ensemble and writes its handle to `out` (checked non-NULL).
fn open(
    runtime: &Runtime,
    path: &str,
    options: EnsembleOptions,
    out: *mut *mut modeconn_ensemble,
) -> FfiResult {
    let ensemble = Ensemble::open(runtime, path, options)?;
    let token = Box::into_raw(Box::new(modeconn_ensemble { _token: 0 }));
    ENSEMBLES.insert(token, EnsembleHandle::new(ensemble));
    // SAFETY: checked non-NULL by the caller; valid for writes (its contract).
    unsafe { write_out(out, token) };
    Ok(())
}

/// Opens a bundle file and prepares it to run on runtime.
///
/// runtime: a live runtime handle (borrowed; it may be freed afterwards, the ensemble keeps
/// what it needs).
///
/// path: the bundle's path, NUL-terminated UTF-8, borrowed during the call.
///
/// out: receives the new handle, owned by the caller, to be released with
/// modeconn_ensemble_free. Written only on success.
///
/// Statuses: OK; NULL_ARGUMENT; INVALID_HANDLE; UTF8; IO (missing or unreadable file); a
/// bundle error (TRUNCATED, HEADER, METADATA, UNKNOWN_KIND, UNKNOWN_BASIS, MISSING_TENSOR,
/// LEADING_AXIS, MISSING_GRAPH_INPUT, SHAPE_MISMATCH, DTYPE, NOT_FINITE, ONNX); ORT; PANIC.
///
/// Thread-safe.
///
/// Pointers: path is NULL or NUL-terminated; out is NULL or valid for writing one pointer.
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

/// Opens a bundle file like modeconn_ensemble_open, with the ensemble's options.
///
/// runtime, path, out: as for modeconn_ensemble_open.
///
/// static_budget_bytes: bytes of weights that may be kept in static (materialised) sessions,
/// which run a frequently used member faster; 0 disables them (every member then runs in the
/// shared dynamic session). modeconn_ensemble_open uses 1 GiB. The predictions are the same
/// whatever the budget.
///
/// max_sessions: ONNX Runtime sessions per model, i.e. how many threads can run one member at
/// the same time; 0 chooses the default (the number of CPUs available).
///
/// Statuses: those of modeconn_ensemble_open. Thread-safe.
///
/// Pointers: path is NULL or NUL-terminated; out is NULL or valid for writing one pointer.
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

/// Releases an ensemble handle. NULL does nothing (OK).
///
/// Statuses: OK; INVALID_HANDLE when ensemble is not a live handle (e.g. freed twice; nothing
/// is done). Thread-safe: predictions in flight on other threads with this handle finish
/// normally, and the ensemble is released after the last of them. The strings its metadata
/// accessors lent are released with it.
///
/// Pointers: ensemble is NULL or a handle returned by modeconn_ensemble_open or
/// modeconn_ensemble_open_with; it must not be used after this call.
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
                // SAFETY: a live handle is a box made by `open`, released once (it has just
                // left the registry).
                drop(unsafe { Box::from_raw(ensemble) });
                Ok(())
            }
            None => Err(ENSEMBLES.invalid()),
        }
    }
}

/// Implements the simple queries: look the handle up, check `out`, write `f(handle)`.
macro_rules! query {
    ($ensemble:expr, $out:expr, $f:expr) => {
        ffi_boundary! {
            not_null!($out, "out");
            let h = ENSEMBLES.get($ensemble)?;
            let value = $f(&*h)?;
            // SAFETY: checked non-NULL; valid for writes (the function's contract).
            unsafe { write_out($out, value) };
            Ok(())
        }
    };
}

/// Writes the bundle's kind to out.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_kind(
    ensemble: *const modeconn_ensemble,
    out: *mut modeconn_kind,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(match h.ensemble.bundle().metadata().kind {
            Kind::Curve => modeconn_kind::Curve,
            Kind::Snapshots => modeconn_kind::Snapshots,
        })
    })
}

/// Writes the curve's basis to out (MODECONN_BASIS_NONE for snapshot sets).
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_basis(
    ensemble: *const modeconn_ensemble,
    out: *mut modeconn_basis,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(match h.ensemble.bundle().metadata().basis {
            Some(Basis::Bezier) => modeconn_basis::Bezier,
            Some(Basis::Polychain) => modeconn_basis::Polychain,
            None => modeconn_basis::None,
        })
    })
}

/// Writes the number of points to out: control points K of a curve, members M of a snapshot
/// set.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_points(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.ensemble.bundle().metadata().points)
    })
}

/// Writes the number of classes (the width of each row of probabilities) to out.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_classes(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.ensemble.bundle().metadata().output.classes)
    })
}

/// Writes the execution provider that runs the ensemble to out: with MODECONN_DEVICE_AUTO,
/// this says whether CUDA is in use.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_provider(
    ensemble: *const modeconn_ensemble,
    out: *mut modeconn_provider,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(match h.ensemble.provider() {
            Provider::Cuda => modeconn_provider::Cuda,
            Provider::Cpu => modeconn_provider::Cpu,
        })
    })
}

/// Writes to out the number of members currently held in static (materialised) sessions: the
/// members of fixed sets (grids, snapshot members, the grid of per-sample modes) that have
/// been asked for, within the static budget.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_static_members(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.ensemble.static_members())
    })
}

/// Writes the softmax temperature T of the bundle to out: probabilities are
/// softmax(logits / T), 1 unless the bundle says otherwise.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_temperature(
    ensemble: *const modeconn_ensemble,
    out: *mut f64,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.ensemble.bundle().metadata().temperature)
    })
}

/// Writes to out the name of the graph input that the input batch feeds (e.g. "input").
///
/// The string is NUL-terminated UTF-8 owned by the ensemble: valid until
/// modeconn_ensemble_free, never to be freed by the caller.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_input_name(
    ensemble: *const modeconn_ensemble,
    out: *mut *const c_char,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.input_name.as_ptr())
    })
}

/// Writes to out the name of the graph output that holds the logits (e.g. "logits"). The
/// string is owned by the ensemble, as for modeconn_ensemble_input_name.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_output_name(
    ensemble: *const modeconn_ensemble,
    out: *mut *const c_char,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.output_name.as_ptr())
    })
}

/// Writes to out the number of class labels the bundle names: 0 when it names none, else the
/// number of classes.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_label_count(
    ensemble: *const modeconn_ensemble,
    out: *mut usize,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.labels.len())
    })
}

/// Writes to out the label of class index. The string is owned by the ensemble, as for
/// modeconn_ensemble_input_name. A NUL character inside a label, which a C string cannot
/// hold, is written as the two characters \0 (as in every string this library lends).
///
/// Statuses: OK; NULL_ARGUMENT; INVALID_HANDLE; INVALID_ARGUMENT when index is not below
/// modeconn_ensemble_label_count (always, for a bundle without labels). Thread-safe.
///
/// Pointers: out is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_label(
    ensemble: *const modeconn_ensemble,
    index: usize,
    out: *mut *const c_char,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        h.labels.get(index).map(|l| l.as_ptr()).ok_or_else(|| {
            Failure::invalid(format!(
                "label {index} does not exist: the bundle names {} labels",
                h.labels.len()
            ))
        })
    })
}

/// Writes to out the bundle's provenance (architecture, training configuration, endpoint
/// hashes, metrics) as JSON text, or NULL when the bundle records none. The string is owned by
/// the ensemble, as for modeconn_ensemble_input_name.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE. Thread-safe.
///
/// Pointers: out is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_provenance(
    ensemble: *const modeconn_ensemble,
    out: *mut *const c_char,
) -> modeconn_status {
    query!(ensemble, out, |h: &EnsembleHandle| -> Result<_, Failure> {
        Ok(h.provenance
            .as_ref()
            .map_or(std::ptr::null(), |p| p.as_ptr()))
    })
}

/// The per-channel normalisation the bundle asks callers to apply to raw inputs,
/// (x - mean[c]) / std[c] for channel c (the axis after the batch).
///
/// channels (required) receives the number of channels, 0 when the bundle asks for none. mean
/// and std may be NULL with capacity 0 to ask for the count only; otherwise each must hold
/// capacity >= channels doubles and receives the values. With capacity < channels the call
/// returns BUFFER_TOO_SMALL, writes only channels, and leaves mean and std untouched.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE, BUFFER_TOO_SMALL. Thread-safe.
///
/// Pointers: mean and std are NULL or valid for writing capacity doubles; channels is NULL or
/// valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_preprocess(
    ensemble: *const modeconn_ensemble,
    mean: *mut f64,
    std: *mut f64,
    capacity: usize,
    channels: *mut usize,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(channels, "channels");
        let count_only = mean.is_null() && std.is_null() && capacity == 0;
        if !count_only {
            not_null!(mean, "mean");
            not_null!(std, "std");
        }
        let h = ENSEMBLES.get(ensemble)?;
        let pre = h.ensemble.bundle().metadata().preprocess.as_ref();
        let (m, s) = pre.map_or((&[][..], &[][..]), |p| (&p.mean[..], &p.std[..]));
        // SAFETY: checked non-NULL; valid for writes (this function's contract).
        unsafe { write_out(channels, m.len()) };
        if count_only {
            return Ok(());
        }
        if capacity < m.len() {
            return Err(Failure::new(
                ApiStatus::BufferTooSmall,
                format!("mean and std hold {capacity} values, the bundle has {} channels", m.len()),
            ));
        }
        // SAFETY: both hold `capacity >= m.len()` writable values (this function's contract).
        unsafe {
            std::slice::from_raw_parts_mut(mean, m.len()).copy_from_slice(m);
            std::slice::from_raw_parts_mut(std, s.len()).copy_from_slice(s);
        }
        Ok(())
    }
}

/// The bundle's input shape, batch axis first as -1 (e.g. {-1, 3, 32, 32}).
///
/// rank (required) receives the number of axes. shape may be NULL with shape_len 0 to ask for
/// the rank only (OK). Otherwise shape must hold shape_len >= rank values and receives the
/// shape; when shape_len < rank the call returns BUFFER_TOO_SMALL, writes only rank, and
/// leaves shape untouched.
///
/// Statuses: OK, NULL_ARGUMENT, INVALID_HANDLE, BUFFER_TOO_SMALL. Thread-safe.
///
/// Pointers: shape is NULL or valid for writing shape_len values; rank is NULL or valid for
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
        let rank_only = shape.is_null() && shape_len == 0;
        if !rank_only {
            not_null!(shape, "shape");
        }
        let h = ENSEMBLES.get(ensemble)?;
        let spec = &h.ensemble.bundle().metadata().input.shape;
        // SAFETY: checked non-NULL; valid for writes (this function's contract).
        unsafe { write_out(rank, spec.len()) };
        if rank_only {
            return Ok(());
        }
        if shape_len < spec.len() {
            return Err(Failure::new(
                ApiStatus::BufferTooSmall,
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
