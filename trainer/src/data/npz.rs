//! NumPy `.npz` files holding `x_train`, `y_train`, `x_test` and `y_test`, and the `digits`
//! data set (scikit-learn's 8x8 digits, written by `scripts/setup.sh` as such a file).
//!
//! Inputs may be `uint8` (scaled by 1/255) or floating point (kept as they are, as `f32`);
//! labels any integer type. Input shapes: `[N, H, W]` becomes `[N, 1, H, W]`; `[N, C, H, W]` is
//! kept; `[N, H, W, C]` with `C` 1 or 3 and `H`, `W` above 4 is transposed to `[N, C, H, W]`;
//! `[N, D]` is kept as flat vectors.

use std::path::Path;

use tch::{Kind, Tensor};

use super::{Raw, Split, data_error};
use crate::{Error, Result};

/// The environment variable naming the digits `.npz`.
const DIGITS_VAR: &str = "MODECONN_DIGITS";

/// Reads the `digits` data set from the `.npz` named by `$MODECONN_DIGITS`.
pub(super) fn load_digits() -> Result<Raw> {
    let path = std::env::var_os(DIGITS_VAR)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::Data(format!(
                "the digits data set is not set up: {DIGITS_VAR} is not set; run scripts/setup.sh \
             and source the modeconn.env file it prints"
            ))
        })?;
    let path = Path::new(&path);
    if !path.is_file() {
        return Err(Error::Data(format!(
            "the digits data set is missing: {DIGITS_VAR} names {}, which does not exist; run \
             scripts/setup.sh to write it",
            path.display()
        )));
    }
    load_npz(path, Some("digits"))
}

/// Reads all arrays of an `.npz` file, turning libtorch's errors (and panics on malformed
/// archives) into data errors naming the file.
fn read_arrays(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let read = std::panic::catch_unwind(|| Tensor::read_npz(path));
    match read {
        Ok(Ok(arrays)) => Ok(arrays),
        Ok(Err(e)) => Err(data_error(
            path.display(),
            format!("cannot read as .npz: {e}"),
        )),
        Err(_) => Err(data_error(
            path.display(),
            "cannot read as .npz: malformed zip archive",
        )),
    }
}

/// Takes the array `key` out of `arrays`.
fn take(path: &Path, arrays: &mut Vec<(String, Tensor)>, key: &str) -> Result<Tensor> {
    match arrays.iter().position(|(name, _)| name == key) {
        Some(i) => Ok(arrays.swap_remove(i).1),
        None => {
            let mut found: Vec<&str> = arrays.iter().map(|(name, _)| name.as_str()).collect();
            found.sort_unstable();
            Err(data_error(
                path.display(),
                format!(
                    "missing key `{key}`: an .npz data set holds x_train, y_train, x_test and \
                     y_test (found: {})",
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Converts inputs to `f32` (scaling `uint8` by 1/255) and to `[N, C, H, W]` or `[N, D]`.
fn inputs(path: &Path, key: &str, x: Tensor) -> Result<Tensor> {
    let x = match x.kind() {
        Kind::Uint8 => {
            let mut x = x.f_to_kind(Kind::Float)?;
            let _ = x.f_div_scalar_(255.0)?;
            x
        }
        Kind::Float => x,
        Kind::Double | Kind::Half | Kind::BFloat16 => x.f_to_kind(Kind::Float)?,
        kind => {
            return Err(data_error(
                path.display(),
                format!("`{key}` holds {kind:?} values; expected uint8, float32 or float64"),
            ));
        }
    };
    match x.size().as_slice() {
        &[_, _] => Ok(x),
        &[n, h, w] => Ok(x.f_view([n, 1, h, w])?),
        &[_, h, w, c] if (c == 1 || c == 3) && h > 4 && w > 4 => {
            Ok(x.f_permute([0, 3, 1, 2])?.f_contiguous()?)
        }
        &[_, _, _, _] => Ok(x),
        shape => Err(data_error(
            path.display(),
            format!(
                "`{key}` has shape {shape:?}; expected [N, D], [N, H, W], [N, C, H, W] or \
                 [N, H, W, C]"
            ),
        )),
    }
}

/// Converts labels to `i64` of shape `[N]`.
fn labels(path: &Path, key: &str, y: Tensor) -> Result<Tensor> {
    match y.kind() {
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 => {}
        kind => {
            return Err(data_error(
                path.display(),
                format!("`{key}` holds {kind:?} values; expected integer class labels"),
            ));
        }
    }
    let y = y.f_to_kind(Kind::Int64)?;
    match y.size().as_slice() {
        &[_] => Ok(y),
        &[n, 1] => Ok(y.f_view([n])?),
        shape => Err(data_error(
            path.display(),
            format!("`{key}` has shape {shape:?}; expected [N]"),
        )),
    }
}

/// Reads one split, checking that inputs and labels have the same length.
fn split(path: &Path, arrays: &mut Vec<(String, Tensor)>, which: &str) -> Result<Split> {
    let x_key = format!("x_{which}");
    let y_key = format!("y_{which}");
    let x = inputs(path, &x_key, take(path, arrays, &x_key)?)?;
    let y = labels(path, &y_key, take(path, arrays, &y_key)?)?;
    let (nx, ny) = (x.size()[0], y.size()[0]);
    if nx != ny {
        return Err(data_error(
            path.display(),
            format!("length mismatch: `{x_key}` holds {nx} samples but `{y_key}` {ny} labels"),
        ));
    }
    Ok(Split { x, y })
}

/// Reads an `.npz` data set; `name` defaults to the file stem.
pub(super) fn load_npz(path: &Path, name: Option<&str>) -> Result<Raw> {
    let mut arrays = read_arrays(path)?;
    let train = split(path, &mut arrays, "train")?;
    let test = split(path, &mut arrays, "test")?;
    let name = name.map(str::to_string).unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "npz".to_string(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Raw {
        name,
        train,
        test,
        classes: None,
        min_classes: 0,
        augment: false,
        origin: path.display().to_string(),
    })
}
