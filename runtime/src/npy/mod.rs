//! Reading and writing NumPy `.npy` files (format versions 1–3), for `f32` and `i64` arrays.
//!
//! The command line takes inputs and writes probabilities in this format. Only little-endian,
//! C-ordered arrays of the two element types the runtime uses are accepted; anything else is
//! answered with an error that names the file and what it holds.

use std::fs;
use std::io::Write;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::{Error, Result};
use literal::Literal;

mod literal;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An element type that can be stored in a `.npy` file.
pub trait NpyElement: Copy + Default + 'static {
    /// The NumPy `descr` string (`<f4`, `<i8`).
    const DESCR: &'static str;
    /// A readable name for messages (`float32`, `int64`).
    const NAME: &'static str;
    /// Decodes one element from little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of this element.
    fn put_le(self, out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    const NAME: &'static str = "float32";
    fn from_le(bytes: &[u8]) -> Self {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    const NAME: &'static str = "int64";
    fn from_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        i64::from_le_bytes(b)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn bad(path: &Path, detail: impl Into<String>) -> Error {
    Error::Npy {
        path: path.to_path_buf(),
        reason: detail.into(),
    }
}

/// Reads a `.npy` file holding an array of `T`.
///
/// Fails with a message naming the file when it is not a `.npy` file, is truncated, holds
/// another element type (e.g. `float64` where `float32` is wanted) or is Fortran-ordered.
pub fn read<T: NpyElement>(path: impl AsRef<Path>) -> Result<ArrayD<T>> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

/// Reads the bytes of a `.npy` file holding an array of `T`; `name` stands for the file in
/// messages. The same checks as [`read`].
pub fn from_bytes<T: NpyElement>(name: impl AsRef<Path>, bytes: &[u8]) -> Result<ArrayD<T>> {
    decode(name.as_ref(), bytes)
}

fn decode<T: NpyElement>(path: &Path, bytes: &[u8]) -> Result<ArrayD<T>> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(path, "not a NumPy .npy file (no \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated .npy header"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
            (n, 12)
        }
        v => return Err(bad(path, format!("unsupported .npy format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(path, "truncated .npy header"))?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| bad(path, "the .npy header is not text"))?;
    let header = parse_header(text).map_err(|d| bad(path, d))?;
    if header.descr != T::DESCR {
        return Err(bad(
            path,
            format!(
                "holds dtype '{}', expected {} ('{}')",
                header.descr,
                T::NAME,
                T::DESCR
            ),
        ));
    }
    if header.fortran_order {
        return Err(bad(
            path,
            "is Fortran-ordered; save it C-ordered (np.ascontiguousarray)",
        ));
    }
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, "shape is too large"))?;
    let size = std::mem::size_of::<T>();
    let data = &bytes[end..];
    let needed = count
        .checked_mul(size)
        .ok_or_else(|| bad(path, "shape is too large"))?;
    if data.len() < needed {
        return Err(bad(
            path,
            format!(
                "truncated: shape {:?} needs {needed} bytes of data, the file has {}",
                header.shape,
                data.len()
            ),
        ));
    }
    let values: Vec<T> = data[..needed].chunks_exact(size).map(T::from_le).collect();
    ArrayD::from_shape_vec(IxDyn(&header.shape), values)
        .map_err(|e| bad(path, format!("inconsistent shape: {e}")))
}

/// Parses the Python-literal dictionary of a `.npy` header: exactly the keys `descr`,
/// `fortran_order` and `shape`, each once, as NumPy itself requires.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let Literal::Dict(entries) = literal::parse(text)? else {
        return Err("the .npy header is not a dictionary".into());
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let Literal::Str(key) = key else {
            return Err(format!("the .npy header has a key that is {}", key.kind()));
        };
        match (key.as_str(), value) {
            ("descr", Literal::Str(d)) => descr = Some(d),
            ("fortran_order", Literal::Bool(f)) => fortran_order = Some(f),
            ("shape", Literal::Tuple(dims)) => {
                let dims = dims
                    .iter()
                    .map(|d| match d {
                        Literal::Int(n) => usize::try_from(*n)
                            .map_err(|_| format!("dimension {n} in the .npy shape is not a size")),
                        other => Err(format!("a dimension of the .npy shape is {}", other.kind())),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                shape = Some(dims);
            }
            ("descr" | "fortran_order" | "shape", other) => {
                return Err(format!("'{key}' in the .npy header is {}", other.kind()));
            }
            (other, _) => return Err(format!("the .npy header has an unknown key '{other}'")),
        }
    }
    let descr = descr.ok_or("the .npy header has no 'descr'")?;
    let descr = match descr.as_str() {
        // Native and byte-order-irrelevant spellings of the same types.
        "|f4" | "=f4" => "<f4".to_string(),
        "|i8" | "=i8" => "<i8".to_string(),
        _ => descr,
    };
    Ok(Header {
        descr,
        fortran_order: fortran_order.ok_or("the .npy header has no 'fortran_order'")?,
        shape: shape.ok_or("the .npy header has no 'shape'")?,
    })
}

/// Encodes an array as the bytes of a version-1 `.npy` file.
pub fn encode<T: NpyElement>(array: &ArrayViewD<'_, T>) -> Vec<u8> {
    let shape = match array.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        T::DESCR
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + array.len() * std::mem::size_of::<T>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in array.iter() {
        v.put_le(&mut out);
    }
    out
}

/// Writes an array as a `.npy` file, atomically: the data goes to a temporary file in the same
/// folder, which is then renamed over `path`.
pub fn write<T: NpyElement>(path: impl AsRef<Path>, array: &ArrayViewD<'_, T>) -> Result<()> {
    crate::fs::write_atomic(path.as_ref(), |f| f.write_all(&encode(array)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn round_trip_f32_and_i64() {
        let dir = tempfile::tempdir().unwrap();
        let a = array![[1.5f32, -2.0, 3.25], [0.0, 1e-7, 7.0]].into_dyn();
        let p = dir.path().join("a.npy");
        write(&p, &a.view()).unwrap();
        assert_eq!(read::<f32>(&p).unwrap(), a);
        let b = array![3i64, -1, 9].into_dyn();
        let q = dir.path().join("b.npy");
        write(&q, &b.view()).unwrap();
        assert_eq!(read::<i64>(&q).unwrap(), b);
        let bytes = std::fs::read(&q).unwrap();
        let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(header_end % 64, 0);
    }

    #[test]
    fn wrong_dtype_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write(&p, &array![1i64, 2].into_dyn().view()).unwrap();
        let err = read::<f32>(&p).unwrap_err().to_string();
        assert!(err.contains("'<i8'") && err.contains("float32"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_files_fail() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let bytes = encode(&a.view());
        let p = Path::new("x.npy");
        for cut in [0, 5, 9, 20, bytes.len() - 1] {
            assert!(decode::<f32>(p, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode::<f32>(p, b"hello world, not numpy").is_err());
    }

    #[test]
    fn parses_numpy_spellings() {
        let h =
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }").unwrap();
        assert_eq!(h.shape, vec![2, 3]);
        let h = parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
        let h = parse_header("{'descr': '<f4', 'fortran_order': True, 'shape': (4,), }").unwrap();
        assert!(h.fortran_order);
    }

    /// A `.npy` file with this header text and `n` float32 values.
    fn file_with_header(header: &str, n: usize) -> Vec<u8> {
        let mut text = header.to_string();
        let unpadded = 10 + text.len() + 1;
        text.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        text.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, 4 * n));
        bytes
    }

    #[test]
    fn a_multibyte_character_where_a_quote_belongs_is_an_error_not_a_panic() {
        let bytes = file_with_header(
            "{'descr': é<f4', 'fortran_order': False, 'shape': (4,), }",
            4,
        );
        let err = decode::<f32>(Path::new("x.npy"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.npy"), "{err}");
    }

    #[test]
    fn a_key_given_twice_is_refused_rather_than_read_either_way() {
        // Key search read batch 1 from the first 'shape'; NumPy keeps the last (4).
        let bytes = file_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (4,), }",
            4,
        );
        let err = decode::<f32>(Path::new("x.npy"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'shape' is given twice"), "{err}");
    }

    #[test]
    fn headers_numpy_refuses_are_refused() {
        for header in [
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (4,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [4]}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} trailing",
            "['descr', '<f4']",
        ] {
            let bytes = file_with_header(header, 4);
            assert!(
                decode::<f32>(Path::new("x.npy"), &bytes).is_err(),
                "{header}"
            );
        }
        let bytes = file_with_header(
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 2)}",
            4,
        );
        let a = decode::<f32>(Path::new("x.npy"), &bytes).expect("double quotes are Python too");
        assert_eq!(a.shape(), &[2, 2]);
    }
}
