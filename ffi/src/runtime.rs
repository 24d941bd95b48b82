//! The runtime handle: ONNX Runtime loaded, with a device.

use std::ffi::c_char;

use ::modeconn_runtime::{Device, Runtime, RuntimeOptions};

use crate::handle::Registry;
use crate::{Failure, c_str, write_out};

/// A handle on ONNX Runtime with a chosen device (opaque). Create it with
/// modeconn_runtime_new, release it with modeconn_runtime_free.
pub struct modeconn_runtime {
    _token: u8,
}

pub(crate) static RUNTIMES: Registry<Runtime> = Registry::new("runtime");

/// Where to run (the device argument of modeconn_runtime_new).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
pub enum modeconn_device {
    /// ONNX Runtime's CPU execution provider.
    Cpu = 0,
    /// The CUDA execution provider on the GPU the gpu argument names; MODECONN_STATUS_DEVICE
    /// when it cannot be used.
    Cuda = 1,
    /// CUDA on the first GPU when it can be used, the CPU otherwise (see
    /// modeconn_ensemble_provider).
    Auto = 2,
}

impl modeconn_device {
    /// The runtime's device, with GPU `gpu` for CUDA.
    fn on(self, gpu: u32) -> Device {
        match self {
            modeconn_device::Cpu => Device::Cpu,
            modeconn_device::Cuda => Device::Cuda(gpu),
            modeconn_device::Auto => Device::Auto,
        }
    }
}

/// Loads ONNX Runtime (once per process) and creates a runtime handle running on device.
///
/// ort_library: path of libonnxruntime.so, or NULL to use the ORT_DYLIB_PATH environment
/// variable, then the folder of the executable. Borrowed during the call. ONNX Runtime is
/// loaded only once per process: the library of the first successful call is used by all
/// later ones.
///
/// device: a modeconn_device value (MODECONN_DEVICE_CPU, MODECONN_DEVICE_CUDA or
/// MODECONN_DEVICE_AUTO), passed as its number.
///
/// gpu: with MODECONN_DEVICE_CUDA, the index of the GPU to run on (0 is the first); ignored
/// otherwise. An index past the last GPU is MODECONN_STATUS_DEVICE when the first session is
/// made (modeconn_ensemble_open).
///
/// threads: operator threads (0: ONNX Runtime's default, one per core); the first runtime of
/// the process fixes it for all.
///
/// out: receives the new handle, owned by the caller, to be released with
/// modeconn_runtime_free. Written only on success.
///
/// Statuses: OK; NULL_ARGUMENT (out); UTF8 (ort_library); INVALID_ARGUMENT (an unknown
/// device); ORT_LIBRARY (ONNX Runtime not found or not loadable); DEVICE (CUDA asked for and
/// unavailable); ORT; PANIC.
///
/// Thread-safe.
///
/// Pointers: ort_library is NULL or a NUL-terminated string; out is NULL or valid for writing
/// one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_runtime_new(
    ort_library: *const c_char,
    device: u32,
    gpu: u32,
    threads: usize,
    out: *mut *mut modeconn_runtime,
) -> crate::modeconn_status {
    ffi_boundary! {
        not_null!(out, "out");
        let device = modeconn_device::from_repr(device).ok_or_else(|| {
            Failure::invalid(format!(
                "device {device} is not a modeconn_device (MODECONN_DEVICE_CPU {}, \
                 MODECONN_DEVICE_CUDA {}, MODECONN_DEVICE_AUTO {})",
                modeconn_device::Cpu as u32,
                modeconn_device::Cuda as u32,
                modeconn_device::Auto as u32,
            ))
        })?;
        let mut options = RuntimeOptions::default()
            .with_device(device.on(gpu))
            .with_intra_threads(threads);
        if !ort_library.is_null() {
            // SAFETY: non-NULL and NUL-terminated (this function's contract).
            let path = unsafe { c_str(ort_library, "ort_library") }?;
            options = options.with_library(path);
        }
        let runtime = Runtime::new(options)?;
        let token = Box::into_raw(Box::new(modeconn_runtime { _token: 0 }));
        RUNTIMES.insert(token, runtime);
        // SAFETY: checked non-NULL above; valid for writes (this function's contract).
        unsafe { write_out(out, token) };
        Ok(())
    }
}

/// Releases a runtime handle. NULL does nothing (OK).
///
/// Ensembles opened with it stay usable: they keep what they need. Statuses: OK;
/// INVALID_HANDLE when runtime is not a live handle (e.g. freed twice; nothing is done).
/// Thread-safe; calls in flight on other threads with this handle finish normally.
///
/// Pointers: runtime is NULL or a handle returned by modeconn_runtime_new; it must not be used
/// after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_runtime_free(
    runtime: *mut modeconn_runtime,
) -> crate::modeconn_status {
    ffi_boundary! {
        if runtime.is_null() {
            return Ok(());
        }
        match RUNTIMES.remove(runtime) {
            Some(_) => {
                // SAFETY: a live handle is a box made by `modeconn_runtime_new`, released once
                // (it has just left the registry).
                drop(unsafe { Box::from_raw(runtime) });
                Ok(())
            }
            None => Err(RUNTIMES.invalid()),
        }
    }
}
