//! Bundles: one `.safetensors` file holding a curve's control points or a snapshot set, the ONNX
//! graph, and metadata (format version 1, see `docs/bundle-format.md`).
//!
//! [`Bundle::open`] memory-maps the file and checks every rule of the format, answering a broken
//! file with an error that names the tensor or key at fault. [`BundleWriter`] writes bundles
//! atomically.

mod header;
mod member;
mod meta;
mod pack;
mod unpack;
mod validate;
mod write;

pub use member::{Member, MemberWeights, Members};
pub use meta::{
    FORMAT_VERSION, InputSpec, Kind, MAX_CURVE_POINTS, MAX_SNAPSHOTS, Metadata, OutputSpec,
    Preprocess, keys,
};
pub use pack::{BnStats, PackLayout, PackOptions, PackReport, pack};
pub use write::BundleWriter;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};

use crate::curve::Gram;
use crate::fs::FileGuard;
use crate::graph::OnnxModel;
use crate::{Error, Result};

/// How a tensor of the bundle varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One slice per control point (curves) or member (snapshot sets).
    Points,
    /// One slice per `bn_grid` point (batch-norm statistics of curves).
    Grid,
}

/// A varying tensor of a bundle: where its data lies and how it varies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The ONNX name of the tensor.
    pub name: String,
    /// The full shape, leading axis first (points, members or grid points).
    pub shape: Vec<usize>,
    /// How the leading axis is indexed.
    pub role: Role,
    /// Byte range of the data within the file.
    range: (usize, usize),
}

impl TensorEntry {
    /// The shape of one slice: what the network sees.
    pub fn slice_shape(&self) -> &[usize] {
        &self.shape[1..]
    }

    /// The number of elements in one slice.
    pub fn slice_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The number of slices (length of the leading axis).
    pub fn slices(&self) -> usize {
        self.shape[0]
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A loaded, checked bundle.
pub struct Bundle {
    path: Option<PathBuf>,
    file: Option<BundleFile>,
    storage: Storage,
    meta: Metadata,
    members: Members,
    graph: OnnxModel,
    tensors: Vec<TensorEntry>,
}

/// The file a bundle was opened from, as ONNX Runtime reaches it to map the stacks itself:
/// the folder external data is resolved against, the file's name in it, and the guard that
/// refuses new sessions once the file was replaced.
#[derive(Debug, Clone)]
pub(crate) struct BundleFile {
    /// The canonical folder of the file.
    pub folder: PathBuf,
    /// The file's name in that folder.
    pub name: String,
    /// Tells whether the file at the path is still the one opened.
    pub guard: FileGuard,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .field("tensors", &self.tensors)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// Opens a bundle file: memory-maps it and checks it.
    ///
    /// The mapping is read-only; the weights are copied at most once more, into ONNX Runtime.
    /// Replacing the file while it is open is safe when writers rename a new file into place
    /// (as [`BundleWriter`] does); truncating it in place is not.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // A folder would fail to map with an obscure "No such device", and opening a named
        // pipe would wait for a writer: anything but a regular file is refused first.
        let kind = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .file_type();
        if !kind.is_file() {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
                what: crate::fs::describe(&kind),
            });
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and private to this process. Undefined behaviour could
        // only follow from another process truncating or rewriting the file in place while it is
        // mapped, which the format's writers never do (they write a new file and rename it).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let guard = FileGuard::new(path, &file)?;
        let mut bundle = Self::load(Storage::Mapped(map), Some(path.to_path_buf()))?;
        // ONNX Runtime resolves the stacks' file name against a folder: both are fixed here,
        // once. A path that cannot be put that way (not UTF-8) is read through memory instead.
        bundle.file = std::fs::canonicalize(path).ok().and_then(|canonical| {
            Some(BundleFile {
                folder: canonical.parent()?.to_path_buf(),
                name: canonical.file_name()?.to_str()?.to_string(),
                guard,
            })
        });
        Ok(bundle)
    }

    /// Reads a bundle from bytes in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::load(Storage::Owned(bytes), None)
    }

    fn load(storage: Storage, path: Option<PathBuf>) -> Result<Self> {
        if let Some(declared) = header::beyond_the_end(&storage) {
            return Err(match path {
                Some(path) => Error::NotABundle {
                    path,
                    declared,
                    size: storage.len(),
                },
                None => Error::Header {
                    detail: format!(
                        "the first 8 bytes give a header of {declared} bytes, more than the \
                         {} bytes given: this is not a bundle",
                        storage.len()
                    ),
                },
            });
        }
        if let Some(json) = header::text(&storage) {
            header::unique_keys(json).map_err(|detail| Error::Header { detail })?;
        }
        let (header_len, st_meta) = SafeTensors::read_metadata(&storage).map_err(header_error)?;
        let data_start = 8 + header_len;
        let empty = HashMap::new();
        let map = st_meta.metadata().as_ref().unwrap_or(&empty);
        let infos = st_meta.tensors();
        let mut raw: Vec<validate::RawTensor> = infos
            .iter()
            .filter(|(name, _)| name.as_str() != keys::GRAPH_TENSOR)
            .map(|(name, info)| validate::RawTensor {
                name: name.clone(),
                dtype: format!("{:?}", info.dtype),
                is_f32: info.dtype == Dtype::F32,
                shape: info.shape.clone(),
                range: (
                    data_start + info.data_offsets.0,
                    data_start + info.data_offsets.1,
                ),
            })
            .collect();
        raw.sort_by_key(|t| t.range);
        let graph_bytes = || {
            let info = infos
                .get(keys::GRAPH_TENSOR)
                .ok_or_else(|| Error::MissingTensor {
                    tensor: keys::GRAPH_TENSOR.to_string(),
                    reason: "every bundle carries its ONNX graph".to_string(),
                })?;
            if info.dtype != Dtype::U8 || info.shape.len() != 1 {
                return Err(Error::DType {
                    tensor: keys::GRAPH_TENSOR.to_string(),
                    expected: "U8 of rank 1 (serialized ONNX ModelProto)".to_string(),
                    found: format!("{:?} of shape {:?}", info.dtype, info.shape),
                });
            }
            let (a, b) = info.data_offsets;
            Ok(&storage[data_start + a..data_start + b])
        };
        // The very rules the writer applies before it writes (`BundleWriter::check`).
        let (meta, graph, tensors) = validate::bundle(map, graph_bytes, raw)?;
        Ok(Bundle {
            path,
            file: None,
            storage,
            members: Members::of(&meta),
            meta,
            graph,
            tensors,
        })
    }

    /// Where the bundle was read from, when it came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file the bundle was opened from, as ONNX Runtime reaches it.
    pub(crate) fn file(&self) -> Option<&BundleFile> {
        self.file.as_ref()
    }

    /// Where the data of a tensor starts in the bundle's file, when it was opened from one and
    /// the data is aligned for `f32`: ONNX Runtime can then map it itself.
    pub(crate) fn file_offset(&self, entry: &TensorEntry) -> Option<u64> {
        self.file.as_ref()?;
        entry
            .range
            .0
            .is_multiple_of(4)
            .then_some(entry.range.0 as u64)
    }

    /// The size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.storage.len()
    }

    /// The checked metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The ONNX graph.
    pub fn graph(&self) -> &OnnxModel {
        &self.graph
    }

    /// Every varying tensor, in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The tensor of this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The whole data of a tensor as `f32`, borrowed from the file when it is suitably aligned
    /// (always for files written by this crate), copied otherwise.
    pub fn data(&self, entry: &TensorEntry) -> Cow<'_, [f32]> {
        as_f32(&self.storage[entry.range.0..entry.range.1])
    }

    /// Slice `k` of a tensor's leading axis (control point, member or grid point).
    pub fn slice(&self, entry: &TensorEntry, k: usize) -> Result<Cow<'_, [f32]>> {
        if k >= entry.slices() {
            return Err(Error::invalid(
                format!("slice {k} of tensor `{}`", entry.name),
                format!("does not exist: it has {} slices", entry.slices()),
            ));
        }
        let n = entry.slice_len() * 4;
        let start = entry.range.0 + k * n;
        Ok(as_f32(&self.storage[start..start + n]))
    }

    /// The number of parameters of one network: the elements of one slice of every varying
    /// tensor plus every float initializer of the graph that does not vary.
    pub fn parameter_count(&self) -> usize {
        let varying: usize = self.tensors.iter().map(TensorEntry::slice_len).sum();
        let fixed: usize = self
            .graph
            .initializers()
            .iter()
            .filter(|i| i.data_type == crate::graph::elem::FLOAT && self.tensor(&i.name).is_none())
            .map(|i| i.dims.iter().product::<i64>().max(0) as usize)
            .sum();
        varying + fixed
    }

    /// The Gram matrix of the differences between control points (or members) over every
    /// tensor indexed by points, from which arc lengths follow (see [`crate::curve::ArcLength`]).
    pub fn gram(&self) -> Result<Gram> {
        let mut gram = Gram::zeros(self.meta.points);
        for entry in self.tensors.iter().filter(|t| t.role == Role::Points) {
            let slices = (0..entry.slices())
                .map(|k| self.slice(entry, k))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&[f32]> = slices.iter().map(|s| s.as_ref()).collect();
            gram.accumulate(&refs)?;
        }
        Ok(gram)
    }
}

/// Reinterprets little-endian bytes as `f32`, without copying when they are aligned.
fn as_f32(bytes: &[u8]) -> Cow<'_, [f32]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid f32, and `align_to` only returns a middle part
        // that is correctly aligned.
        let (head, body, tail) = unsafe { bytes.align_to::<f32>() };
        if head.is_empty() && tail.is_empty() {
            return Cow::Borrowed(body);
        }
    }
    Cow::Owned(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn header_error(e: SafeTensorError) -> Error {
    use SafeTensorError as E;
    match e {
        E::HeaderTooSmall => Error::Truncated {
            detail: "the file is shorter than the 8-byte header length".into(),
        },
        E::InvalidHeaderLength => Error::Truncated {
            detail: "the file ends inside the header".into(),
        },
        E::MetadataIncompleteBuffer => Error::Truncated {
            detail: "the data section does not have the length the header promises".into(),
        },
        E::InvalidOffset(name) => Error::Header {
            detail: format!("tensor `{name}` has data offsets that do not fit the data section"),
        },
        other => Error::Header {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
