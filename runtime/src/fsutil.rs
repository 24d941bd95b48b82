//! Small file-system helpers shared by the writers.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes a file atomically: `fill` writes into a temporary file in the destination folder, which
/// is flushed, synced and renamed over `path`. On any failure the temporary file is removed and
/// an existing file at `path` is left as it was.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    write_atomic_via(path, |tmp| {
        let mut w = BufWriter::new(File::create(tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
}

/// Like [`write_atomic`], for writers that want a path: `fill` creates and writes the file at
/// the temporary path it is given.
pub(crate) fn write_atomic_via(
    path: &Path,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = (|| -> io::Result<()> {
        fill(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Make the rename itself durable where the platform allows it.
    if let Ok(d) = File::open(parent(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    Ok(parent(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, sync, rename): a
/// reader sees the old file or the new one, never a part.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path.as_ref(), |f| std::io::Write::write_all(f, bytes))
}
