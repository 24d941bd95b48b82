//! Writing bundles.

use std::borrow::Cow;
use std::path::Path;

use std::collections::BTreeMap;
use std::io::Write;

use super::meta::{Metadata, keys};
use super::validate::{self, RawTensor};
use crate::{Error, Result};

/// Collects the pieces of a bundle and writes it as one safetensors file.
///
/// Everything is checked with the same rules as [`Bundle::open`](super::Bundle::open) before a
/// byte is written, and the file is written atomically (temporary file, sync, rename), so a
/// crash never leaves a half-written bundle in place of a good one.
#[derive(Debug, Clone)]
pub struct BundleWriter<'a> {
    meta: Metadata,
    graph: Cow<'a, [u8]>,
    tensors: Vec<(String, Vec<usize>, Cow<'a, [f32]>)>,
}

impl<'a> BundleWriter<'a> {
    /// Starts a bundle with this metadata and serialized ONNX model.
    pub fn new(meta: Metadata, graph: impl Into<Cow<'a, [u8]>>) -> Self {
        BundleWriter {
            meta,
            graph: graph.into(),
            tensors: Vec::new(),
        }
    }

    /// Adds a varying tensor: `shape` includes the leading axis (points, members or bn grid
    /// points) and `data` is row-major.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        data: impl Into<Cow<'a, [f32]>>,
    ) -> Result<Self> {
        let name = name.into();
        let data = data.into();
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::invalid(
                format!("tensor `{name}`"),
                format!("has {} values, but shape {shape:?} holds {n}", data.len()),
            ));
        }
        if name == keys::GRAPH_TENSOR || self.tensors.iter().any(|(t, _, _)| *t == name) {
            return Err(Error::invalid(format!("tensor `{name}`"), "is given twice"));
        }
        self.tensors.push((name, shape, data));
        Ok(self)
    }

    /// Checks the pieces with the reader's rules: never write what cannot be read.
    fn check(&self) -> Result<()> {
        Self::declared(
            &self.meta,
            &self.graph,
            self.tensors
                .iter()
                .map(|(name, shape, _)| (name.as_str(), shape.as_slice())),
        )
    }

    /// Checks a bundle of this metadata, serialized ONNX model and varying tensors (names and
    /// full shapes; no data is needed) with the very function the loader runs
    /// (`validate::bundle`), on the metadata as it will be stored. `pack` asks
    /// this before it converts any weight.
    pub(crate) fn declared<'n>(
        meta: &Metadata,
        graph: &[u8],
        tensors: impl IntoIterator<Item = (&'n str, &'n [usize])>,
    ) -> Result<()> {
        let raw = tensors
            .into_iter()
            .map(|(name, shape)| RawTensor {
                name: name.to_string(),
                dtype: "F32".into(),
                is_f32: true,
                shape: shape.to_vec(),
                range: (0, 0),
            })
            .collect();
        validate::bundle(&meta.to_map(), || Ok(graph), raw).map(|_| ())
    }

    /// The safetensors header (length prefix included) and the data blocks in file order.
    ///
    /// The layout is deterministic, so the same bundle always gives the same bytes: metadata
    /// keys and tensor entries are sorted by name, `f32` tensors come first in name order (so
    /// their data stays 4-byte aligned in the file) and the graph bytes last, and the header is
    /// padded with spaces to a multiple of 8 bytes.
    fn layout(&self) -> Result<(Vec<u8>, Vec<&[u8]>)> {
        let mut order: Vec<usize> = (0..self.tensors.len()).collect();
        order.sort_by(|&a, &b| self.tensors[a].0.cmp(&self.tensors[b].0));
        let mut header = serde_json::Map::new();
        let meta: BTreeMap<String, String> = self.meta.to_map().into_iter().collect();
        header.insert("__metadata__".into(), serde_json::json!(meta));
        let mut blocks: Vec<&[u8]> = Vec::with_capacity(order.len() + 1);
        let mut offset = 0usize;
        let mut entry = |name: &str, dtype: &str, shape: &[usize], bytes: usize| {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
        };
        for &i in &order {
            let (name, shape, data) = &self.tensors[i];
            let bytes = le_bytes(data);
            entry(name, "F32", shape, bytes.len());
            blocks.push(bytes);
        }
        entry(
            keys::GRAPH_TENSOR,
            "U8",
            &[self.graph.len()],
            self.graph.len(),
        );
        blocks.push(&self.graph);
        let mut json =
            serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| Error::Header {
                detail: e.to_string(),
            })?;
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut head = Vec::with_capacity(8 + json.len());
        head.extend_from_slice(&(json.len() as u64).to_le_bytes());
        head.extend_from_slice(&json);
        Ok((head, blocks))
    }

    /// Serializes the bundle into memory, after checking it.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.check()?;
        let (head, blocks) = self.layout()?;
        let total = head.len() + blocks.iter().map(|b| b.len()).sum::<usize>();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&head);
        for b in blocks {
            out.extend_from_slice(b);
        }
        Ok(out)
    }

    /// Checks the bundle and writes it to `path` atomically, streaming the tensors from where
    /// they are (no second copy of the weights in memory).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        self.check()?;
        let (head, blocks) = self.layout()?;
        crate::fs::write_atomic(path.as_ref(), |f| {
            f.write_all(&head)?;
            for b in blocks {
                f.write_all(b)?;
            }
            Ok(())
        })
    }
}

impl super::Bundle {
    /// A writer of this bundle with other metadata: the same graph, and every tensor's data
    /// borrowed as it is, so the written file holds the same tensors byte for byte (e.g. a
    /// bundle whose temperature was fitted).
    pub fn rewritten(&self, meta: Metadata) -> Result<BundleWriter<'_>> {
        let mut writer = BundleWriter::new(meta, self.graph().bytes());
        for entry in self.tensors() {
            writer = writer.tensor(entry.name.clone(), entry.shape.clone(), self.data(entry))?;
        }
        Ok(writer)
    }
}

/// The little-endian bytes of `f32` data: a view on little-endian machines.
fn le_bytes(data: &[f32]) -> &[u8] {
    #[cfg(not(target_endian = "little"))]
    compile_error!("bundles are little-endian; big-endian targets are not supported");
    // SAFETY: any initialized memory may be viewed as bytes; the length covers exactly the
    // slice, and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}
