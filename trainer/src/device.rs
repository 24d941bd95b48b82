//! Choosing the libtorch device.
//!
//! The linker's `--as-needed` drops `libtorch_cuda.so` from binaries that name no CUDA symbol
//! directly, and without it libtorch reports no CUDA device. Before asking for CUDA the trainer
//! therefore loads the library itself (once per process, for the life of the process).

use std::sync::OnceLock;

use tch::Device;

use crate::{Error, Result};

/// Loads `libtorch_cuda.so` if it can be found; whether it could.
fn load_torch_cuda() -> bool {
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

/// The device for `cpu`, `cuda` (an error when there is none) or `auto` (CUDA when available).
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if cuda_available() => Ok(Device::Cuda(0)),
        "cuda" => Err(Error::Device(
            "cuda: no CUDA device, or libtorch_cuda.so could not be loaded (is torch/lib on \
             LD_LIBRARY_PATH?)"
                .into(),
        )),
        "auto" if cuda_available() => Ok(Device::Cuda(0)),
        "auto" => Ok(Device::Cpu),
        other => Err(Error::Config(format!(
            "device `{other}`: expected cpu, cuda or auto"
        ))),
    }
}

/// The name of a device for reports.
pub fn name(device: Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        _ => "cuda",
    }
}
