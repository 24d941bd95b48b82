//! Choosing the libtorch device.
//!
//! The linker's `--as-needed` drops `libtorch_cuda.so` from binaries that name no CUDA symbol
//! directly, and without it libtorch reports no CUDA device. Before asking for CUDA the trainer
//! therefore loads the library itself (once per process, for the life of the process).

use std::sync::OnceLock;

use tch::Device;

use crate::{Error, Result, job};

/// Loads `libtorch_cuda.so` if it can be found; whether it could.
pub(crate) fn load_torch_cuda() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        // SAFETY: loading libtorch's own CUDA library runs its static initialisers, which only
        // register CUDA kernels and hooks with the libtorch already loaded in this process.
        let lib = unsafe { libloading::Library::new("libtorch_cuda.so") };
        match lib {
            Ok(lib) => {
                // Kept for the life of the process: libtorch holds pointers into it.
                std::mem::forget(lib);
                true
            }
            Err(_) => false,
        }
    })
}

/// Whether a CUDA device can be used.
pub fn cuda_available() -> bool {
    load_torch_cuda() && tch::Cuda::is_available()
}

/// The device for `cpu`, `cuda:N` (an error when there is no such GPU) or `auto` (the first
/// GPU when CUDA is available).
pub fn select(device: job::Device) -> Result<Device> {
    match device {
        job::Device::Cpu => Ok(Device::Cpu),
        job::Device::Auto if cuda_available() => Ok(Device::Cuda(0)),
        job::Device::Auto => Ok(Device::Cpu),
        job::Device::Cuda(_) if !cuda_available() => Err(Error::Device {
            device: device.to_string(),
            reason: "no CUDA device, or libtorch_cuda.so could not be loaded (is torch/lib on \
                     LD_LIBRARY_PATH?)"
                .into(),
        }),
        job::Device::Cuda(index) => {
            let count = tch::Cuda::device_count();
            if i64::from(index) >= count {
                return Err(Error::Device {
                    device: device.to_string(),
                    reason: format!(
                        "libtorch sees {count} CUDA device{} (0 to {})",
                        if count == 1 { "" } else { "s" },
                        count - 1
                    ),
                });
            }
            Ok(Device::Cuda(index as usize))
        }
    }
}

/// The device for reports: `cpu` or `cuda:N`.
pub fn reported(device: Device) -> job::Device {
    match device {
        Device::Cuda(i) => job::Device::Cuda(u32::try_from(i).unwrap_or(u32::MAX)),
        _ => job::Device::Cpu,
    }
}
