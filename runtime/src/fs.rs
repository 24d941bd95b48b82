//! File helpers for the whole workspace: the one atomic writer (bundles, `.npy` outputs,
//! materialised models, reports and the trainer's checkpoints all go through it), the one
//! SHA-256 of a file, and the guard that tells whether a file opened earlier is still the one
//! at its path.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes a file atomically: `fill` writes into a new temporary file in the destination
/// folder, which is flushed, synced and renamed over `path`. On any failure the temporary file
/// is removed and an existing file at `path` is left as it was.
///
/// The temporary file is `.NAME.tmp-PID-RANDOM` beside `path`, created exclusively (it never
/// opens, truncates or follows something planted under its name), and temporary files of
/// `path` whose writer is no longer running (it was killed while writing) are removed first,
/// where running processes can be told (Linux, through `/proc` of this PID namespace).
///
/// Only a regular file is replaced: when `path` is a device, a folder, a symbolic link or
/// anything else, the write is refused before it starts (a rename would replace the node
/// itself). The new file keeps the permissions of the file it replaces; a new file gets
/// `0o666` less the process's umask, as `File::create` gives.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> io::Result<()>,
) -> Result<()> {
    let folder = folder_of(path);
    let prefix = temporary_prefix(path)?;
    let permissions = replaceable(path)?;
    remove_stale_temporaries(folder, &prefix);
    let own_prefix = format!("{prefix}{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&own_prefix).rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(folder)
        .map_err(|e| cannot_create(path, folder, e))?;
    let written = (|| -> io::Result<()> {
        let mut w = BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        if let Some(p) = &permissions {
            tmp.as_file().set_permissions(p.clone())?;
        }
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| Error::io(path, e))?;
    // Again just before the rename: the target may have been replaced meanwhile.
    replaceable(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Make the rename itself durable where the platform allows it.
    if let Ok(d) = File::open(folder) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Checks that [`write_atomic`] could write `path`, without writing it: `path` is nothing yet
/// or a regular file, and a temporary file can be created beside it (one is created and
/// removed, named as the writer names its own). A command that writes its output after long
/// work (training) asks this first, so that a wrong folder fails at once rather than after
/// the work.
///
/// This is a check at one moment: the folder may still disappear or fill up before the
/// write, which then fails as usual.
pub fn check_writable(path: &Path) -> Result<()> {
    let folder = folder_of(path);
    let prefix = temporary_prefix(path)?;
    replaceable(path)?;
    let probe = tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .rand_bytes(8)
        .tempfile_in(folder)
        .map_err(|e| cannot_create(path, folder, e))?;
    probe.close().map_err(|e| Error::io(path, e))
}

/// The error of a temporary file that could not be created in `folder` for `path`: the
/// operating system's reason, without the temporary file's name that `tempfile` appends
/// (` at path "..."`; the user never asked for that file, and `tempfile` keeps the original
/// error private).
fn cannot_create(path: &Path, folder: &Path, e: io::Error) -> Error {
    let text = e.to_string();
    let reason = text.split(" at path \"").next().unwrap_or(&text);
    Error::io(
        path,
        io::Error::new(
            e.kind(),
            format!("cannot create a file in {}: {reason}", folder.display()),
        ),
    )
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]): a reader sees the old file or
/// the new one, never a part.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path.as_ref(), |f| f.write_all(bytes))
}

/// Whether `path` may be replaced: nothing there, or a regular file (whose permissions are
/// returned, for the new file to keep).
fn replaceable(path: &Path) -> Result<Option<fs::Permissions>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m.permissions())),
        Ok(m) => Err(Error::io(
            path,
            io::Error::other(format!(
                "is {}, not a regular file: only regular files are replaced",
                describe(&m.file_type())
            )),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// What a file type is, for messages: `a folder`, `a named pipe`...
pub(crate) fn describe(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "something else"
    }
}

/// The folder a path lies in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `.NAME.tmp-`: the start of the names of `path`'s temporary files (a writer adds its PID
/// and random characters).
fn temporary_prefix(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(path.display().to_string(), "is not a file path"))?;
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
                .map(|rest| rest.split_once('-').map_or(rest, |(pid, _)| pid))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if regular && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            {
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
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;

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

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_at_a_guessable_temporary_name_is_not_followed() {
        // The writer opened `.NAME.tmp-PID` with create + truncate, following symbolic links:
        // whoever guessed the PID had a victim's file overwritten.
        let dir = tempfile::tempdir().expect("a temporary folder");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let path = dir.path().join("out.bin");
        let planted = dir
            .path()
            .join(format!(".out.bin.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("symlink");
        write_file_atomic(&path, b"new").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert!(
            planted.is_symlink(),
            "the planted link was not ours to remove"
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_replaced() {
        // `predict --out /dev/full` replaced the device node with an ordinary file.
        let dir = tempfile::tempdir().expect("a temporary folder");
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().expect("UTF-8")).expect("C path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).expect("symlink");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        for (target, what) in [
            (&fifo, "a named pipe"),
            (&link, "a symbolic link"),
            (&sub, "a folder"),
        ] {
            let err = write_file_atomic(target, b"x")
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains(what) && err.contains("not a regular file"),
                "{err}"
            );
        }
        assert!(
            std::fs::symlink_metadata(&fifo)
                .expect("stat")
                .file_type()
                .is_fifo()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[cfg(unix)]
    unsafe extern "C" {
        #[link_name = "mkfifo"]
        fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions_and_a_new_one_follows_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("kept");
        std::fs::write(&path, b"old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_file_atomic(&path, b"new").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let fresh = dir.path().join("fresh");
        write_file_atomic(&fresh, b"new").expect("write");
        let created = dir.path().join("created");
        std::fs::write(&created, b"x").expect("write");
        let mode_of = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode_of(&fresh),
            mode_of(&created),
            "not what File::create gives"
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

    #[test]
    fn writability_is_checked_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        check_writable(&out).unwrap();
        assert!(!out.exists(), "the check wrote the file");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a probe was left"
        );
        fs::write(&out, b"old").unwrap();
        check_writable(&out).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"old");

        let missing = dir.path().join("no-such-folder").join("x.bin");
        let e = check_writable(&missing).unwrap_err().to_string();
        let write = write_file_atomic(&missing, b"x").unwrap_err().to_string();
        for e in [e, write] {
            assert_eq!(
                e,
                format!(
                    "{}: cannot create a file in {}: No such file or directory (os error 2)",
                    missing.display(),
                    missing.parent().unwrap().display()
                )
            );
        }
        let e = check_writable(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a folder, not a regular file"), "{e}");
        let under_a_file = out.join("x.bin");
        let e = check_writable(&under_a_file).unwrap_err().to_string();
        assert!(
            e.contains("Not a directory") && !e.contains(" at path "),
            "{e}"
        );
    }
}
