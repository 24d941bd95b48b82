//! File helpers for the whole workspace: the one atomic writer (bundles, `.npy` outputs,
//! materialised models, reports and the trainer's checkpoints all go through it), the one
//! SHA-256 of a file, and the guard that tells whether a file opened earlier is still the one
//! at its path.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes a file atomically: `fill` writes into a temporary file in the destination folder,
/// which is flushed, synced and renamed over `path`. On any failure the temporary file is
/// removed and an existing file at `path` is left as it was.
pub fn write_atomic(
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

/// Like [`write_atomic`], for writers that want a path (libtorch's `save`): `fill` creates and
/// writes the file at the temporary path it is given.
///
/// The temporary file is `.NAME.tmp-PID` beside `path`. Before writing, temporary files of
/// `path` whose writer is no longer running (it was killed while writing) are removed, where
/// running processes can be told (Linux, through `/proc` of this PID namespace).
pub fn write_atomic_via(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> Result<()> {
    let prefix = temporary_prefix(path)?;
    remove_stale_temporaries(folder_of(path), &prefix);
    let tmp = folder_of(path).join(format!("{prefix}{}", std::process::id()));
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
    if let Ok(d) = File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, sync, rename): a
/// reader sees the old file or the new one, never a part.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path.as_ref(), |f| io::Write::write_all(f, bytes))
}

/// The folder a path lies in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `.NAME.tmp-`: the start of the names of `path`'s temporary files (a writer adds its PID).
fn temporary_prefix(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    Ok(format!(".{}.tmp-", name.to_string_lossy()))
}

/// Removes the temporary files starting with `prefix` in `folder` whose writer has ended. Two
/// processes writing one file at once are a mistake of their own, which this does not try to
/// untangle; files of running processes and of other targets are left alone.
fn remove_stale_temporaries(folder: &Path, prefix: &str) {
    #[cfg(target_os = "linux")]
    {
        let Ok(entries) = fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (folder, prefix);
}

/// The SHA-256 digest of a file's contents, as 64 lowercase hex digits. Reads the file in
/// pieces, so a large bundle is never held in memory at once.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let io = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// What identifies a file's contents: device, inode, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileIdentity {
    #[cfg(unix)]
    dev_ino: (u64, u64),
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileIdentity {
    fn of(file: &File) -> io::Result<Self> {
        let m = file.metadata()?;
        Ok(FileIdentity {
            #[cfg(unix)]
            dev_ino: {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            },
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// Tells whether the file at a path is still the one that was opened (writers replace bundles
/// by renaming a new file into place). Sessions that map the file themselves must not read a
/// different one.
#[derive(Debug, Clone)]
pub(crate) struct FileGuard {
    path: PathBuf,
    identity: FileIdentity,
}

impl FileGuard {
    /// A guard for `file`, opened at `path`.
    pub(crate) fn new(path: &Path, file: &File) -> Result<Self> {
        Ok(FileGuard {
            path: path.to_path_buf(),
            identity: FileIdentity::of(file).map_err(|e| Error::io(path, e))?,
        })
    }

    /// Fails when the file at the path is no longer the one opened.
    pub(crate) fn check(&self) -> Result<()> {
        let now = File::open(&self.path)
            .and_then(|f| FileIdentity::of(&f))
            .map_err(|e| Error::io(&self.path, e))?;
        if now != self.identity {
            return Err(Error::io(
                &self.path,
                io::Error::other(
                    "the bundle file was replaced or changed while open; open it again",
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn sha256_of_a_file_is_the_known_digest() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("digest"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("out.bin");
        write_file_atomic(&path, b"old").expect("first write");
        let failed = write_atomic(&path, |_| Err(io::Error::other("no room")));
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
    }
}
