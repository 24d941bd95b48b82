//! What the trainer runs on, for `modeconn doctor`: the libtorch loaded (its folder and
//! version), whether its CUDA library loads, and the CUDA devices, with name, memory and
//! compute capability read from the NVIDIA driver.

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};

use crate::device;
use crate::job::{DoctorReport, Gpu, Libtorch};

/// The report of the `doctor` job.
pub fn doctor() -> DoctorReport {
    let cuda_library_loads = device::load_torch_cuda();
    // Whether libtorch uses the CUDA library's hooks: not when something asked for them before
    // the library was loaded (libtorch keeps the first answer), and then asking for CUDA's
    // versions throws.
    let cuda_hooks = cuda_library_loads && tch::utils::has_cudart();
    let cuda_available = cuda_hooks && tch::Cuda::is_available();
    let seen = if cuda_available {
        u32::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    };
    let (devices, no_devices) = match driver_devices() {
        Ok(all) => {
            let mine: Vec<Gpu> = all.into_iter().filter(|g| g.index < seen).collect();
            let why = mine.is_empty().then(|| {
                if cuda_hooks {
                    "libtorch sees no CUDA device".to_string()
                } else if cuda_library_loads {
                    "libtorch_cuda.so was loaded after libtorch had settled on no CUDA in this process".into()
                } else {
                    "libtorch_cuda.so does not load (is torch/lib on LD_LIBRARY_PATH?)".into()
                }
            });
            (mine, why)
        }
        Err(why) => (Vec::new(), Some(why)),
    };
    let path = libtorch_folder();
    DoctorReport {
        libtorch: Libtorch {
            version: path.as_deref().and_then(version_beside),
            path,
            cuda_runtime: if cuda_hooks {
                tch::utils::version_cudart()
            } else {
                0
            },
            cudnn: if cuda_hooks {
                tch::utils::version_cudnn()
            } else {
                0
            },
        },
        cuda_library_loads,
        cuda_available,
        devices,
        no_devices,
    }
}

/// The folder of the `libtorch_cpu` this process has loaded (from `/proc/self/maps`).
fn libtorch_folder() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libtorch_cpu."))
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// libtorch's version, from the files beside its library folder: PyTorch's `version.py`
/// (`__version__ = '2.11.0+cu130'`) or a libtorch archive's `build-version`.
fn version_beside(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        return text.lines().find_map(|l| {
            let v = l
                .strip_prefix("__version__")?
                .trim_start()
                .strip_prefix('=')?
                .trim();
            Some(v.trim_matches(|c| c == '\'' || c == '"').to_string())
        });
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// The CUDA devices the NVIDIA driver (`libcuda.so.1`) knows, or why it cannot be asked.
fn driver_devices() -> Result<Vec<Gpu>, String> {
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type Memory = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    type Attribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    const COMPUTE_MAJOR: c_int = 75;
    const COMPUTE_MINOR: c_int = 76;

    // SAFETY: loading the driver runs its initialisers, which have no preconditions.
    let lib = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| {
        let cause = std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
        format!("the NVIDIA driver (libcuda.so.1) does not load: {e}{cause}")
    })?;
    let missing = |e: libloading::Error| format!("libcuda.so.1 lacks a function: {e}");
    // SAFETY: these are the driver API's functions with these C signatures (cuda.h).
    let (init, count, get, name, memory, attribute) = unsafe {
        (
            *lib.get::<Init>(b"cuInit").map_err(missing)?,
            *lib.get::<Count>(b"cuDeviceGetCount").map_err(missing)?,
            *lib.get::<Get>(b"cuDeviceGet").map_err(missing)?,
            *lib.get::<Name>(b"cuDeviceGetName").map_err(missing)?,
            *lib.get::<Memory>(b"cuDeviceTotalMem_v2").map_err(missing)?,
            *lib.get::<Attribute>(b"cuDeviceGetAttribute")
                .map_err(missing)?,
        )
    };
    // SAFETY: flags 0, as the driver API requires.
    let status = unsafe { init(0) };
    if status != 0 {
        return Err(format!(
            "the NVIDIA driver did not start (cuInit error {status})"
        ));
    }
    let mut n: c_int = 0;
    // SAFETY: writes one int.
    if unsafe { count(&mut n) } != 0 {
        return Err("the NVIDIA driver did not count its devices".into());
    }
    let mut gpus = Vec::new();
    for ordinal in 0..n {
        let mut dev: c_int = 0;
        // SAFETY: writes one device handle for an ordinal below the count.
        if unsafe { get(&mut dev, ordinal) } != 0 {
            continue;
        }
        let mut buf = [0 as c_char; 256];
        let mut bytes: usize = 0;
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: each call writes into the buffer or int given, for a valid device.
        let text = unsafe {
            name(buf.as_mut_ptr(), buf.len() as c_int, dev);
            memory(&mut bytes, dev);
            attribute(&mut major, COMPUTE_MAJOR, dev);
            attribute(&mut minor, COMPUTE_MINOR, dev);
            std::ffi::CStr::from_ptr(buf.as_ptr())
        };
        gpus.push(Gpu {
            index: u32::try_from(ordinal).unwrap_or(0),
            name: text.to_string_lossy().into_owned(),
            memory_bytes: bytes as u64,
            compute_capability: format!("{major}.{minor}"),
        });
    }
    // Kept for the life of the process, as libtorch keeps its own handle on the driver.
    std::mem::forget(lib);
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_pytorchs_files() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let lib = dir.path().join("lib");
        std::fs::create_dir(&lib).expect("mkdir");
        assert_eq!(version_beside(&lib), None);
        std::fs::write(
            dir.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ngit_version = 'x'\n",
        )
        .expect("write");
        assert_eq!(version_beside(&lib).as_deref(), Some("2.11.0+cu130"));
    }

    #[test]
    fn this_process_reports_its_libtorch() {
        // A tensor makes sure libtorch is loaded.
        let _ = tch::Tensor::from_slice(&[1.0f32]);
        let report = doctor();
        let path = report.libtorch.path.expect("libtorch_cpu is mapped");
        assert!(path.join("libtorch_cpu.so").is_file(), "{}", path.display());
        assert!(
            report.libtorch.version.is_some(),
            "no version beside {}",
            path.display()
        );
        if !report.cuda_available {
            assert!(report.devices.is_empty() && report.no_devices.is_some());
        }
    }
}
