//! What the loaded ONNX Runtime offers, for `modeconn doctor`: its library, version and
//! execution providers, and whether the CUDA execution provider actually loads (and if not,
//! the first library it could not load).

use std::ffi::{CStr, c_char, c_int};
use std::path::PathBuf;

use serde::Serialize;

use crate::graph::build::ModelBuilder;
use crate::graph::elem;
use crate::session::{Runtime, cuda_reason};

/// What the loaded ONNX Runtime offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrtReport {
    /// The shared library in use.
    pub library: PathBuf,
    /// Its version, e.g. `1.31.1` (from its build information).
    pub version: Option<String>,
    /// Its build information as it gives it.
    pub build_info: String,
    /// The execution providers it was built with, e.g. `CUDAExecutionProvider`.
    pub providers: Vec<String>,
    /// Whether the CUDA execution provider works here.
    pub cuda: CudaReport,
}

/// Whether the CUDA execution provider works on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaReport {
    /// The library was built with it (`onnxruntime-gpu`).
    pub built_in: bool,
    /// A session on GPU 0 could be made with it.
    pub loads: bool,
    /// Why not, led by the first library that could not be loaded.
    pub reason: Option<String>,
    /// That library, when one could not be loaded (`libcuda.so.1` is the NVIDIA driver).
    pub missing_library: Option<String>,
}

impl Runtime {
    /// What the loaded ONNX Runtime offers, trying the CUDA execution provider on GPU 0 with a
    /// one-node model.
    pub fn report(&self) -> OrtReport {
        let build_info = ort::info().to_string();
        // The release branch when the build says it, else the version in the library's file
        // name (`libonnxruntime.so.1.31.1`).
        let version = build_info
            .split([',', ' '])
            .find_map(|w| w.strip_prefix("git-branch=rel-"))
            .map(str::to_string)
            .or_else(|| {
                let name = self.library().file_name()?.to_str()?;
                let v = name.split_once(".so.")?.1;
                v.starts_with(|c: char| c.is_ascii_digit())
                    .then(|| v.to_string())
            });
        let providers = available_providers();
        let built_in = providers.iter().any(|p| p == "CUDAExecutionProvider");
        let cuda = if built_in {
            match self.try_cuda(&probe_model()) {
                Ok(()) => CudaReport {
                    built_in,
                    loads: true,
                    reason: None,
                    missing_library: None,
                },
                Err(message) => CudaReport {
                    built_in,
                    loads: false,
                    missing_library: missing_library(&message),
                    reason: Some(cuda_reason(&message)),
                },
            }
        } else {
            CudaReport {
                built_in,
                loads: false,
                reason: Some(format!(
                    "the ONNX Runtime at {} was built without the CUDA execution provider \
                     (install onnxruntime-gpu)",
                    self.library().display()
                )),
                missing_library: None,
            }
        };
        OrtReport {
            library: self.library().to_path_buf(),
            version,
            build_info,
            providers,
            cuda,
        }
    }
}

/// A model of one Identity node, to make a session with.
fn probe_model() -> Vec<u8> {
    let mut b = ModelBuilder::new("modeconn-doctor", 13);
    b.input("x", elem::FLOAT, &[1.into()])
        .node("Identity", &["x"], &["y"], &[])
        .output("y", elem::FLOAT, &[1.into()]);
    b.build()
}

/// The first library that could not be loaded, as dlopen names it in `message`.
fn missing_library(message: &str) -> Option<String> {
    let head = message.split(": cannot open shared object file").next()?;
    (head.len() < message.len())
        .then(|| head.rsplit([' ', ':']).find(|w| !w.is_empty()))
        .flatten()
        .map(str::to_string)
}

/// The execution providers the loaded ONNX Runtime was built with.
fn available_providers() -> Vec<String> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: the function writes an array of `count` C strings that we release below, and
    // the status it returns (NULL on success) is released too.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut count) };
    if !status.0.is_null() {
        // SAFETY: a status returned by the API, released once.
        unsafe { (api.ReleaseStatus)(status.0) };
        return Vec::new();
    }
    if list.is_null() {
        return Vec::new();
    }
    let names = (0..usize::try_from(count).unwrap_or(0))
        .filter_map(|i| {
            // SAFETY: `i < count` entries, each a NUL-terminated string owned by the list.
            let p = unsafe { *list.add(i) };
            (!p.is_null()).then(|| {
                // SAFETY: non-NULL and NUL-terminated (the API's contract).
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            })
        })
        .collect();
    // SAFETY: the list the API returned, with its length, released once.
    let status = unsafe { (api.ReleaseAvailableProviders)(list, count) };
    if !status.0.is_null() {
        // SAFETY: as above.
        unsafe { (api.ReleaseStatus)(status.0) };
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_library_is_read_from_dlopen_words() {
        assert_eq!(
            missing_library(
                "Failed to load library x.so with error: libcuda.so.1: cannot open shared \
                 object file: No such file or directory"
            )
            .as_deref(),
            Some("libcuda.so.1")
        );
        assert_eq!(missing_library("CUDA failure 100"), None);
    }
}
