//! A model repository: a folder of bundles served together (`modeconn serve --model-dir`).
//!
//! Two layouts are read, and may be mixed:
//! - bundles directly in the folder (`DIR/NAME.safetensors`), each served under its file stem:
//!   KServe's `/mnt/models` holding the file a storage URI named;
//! - one folder per model (`DIR/NAME/`), Triton's layout, holding one bundle, directly or in the
//!   version folder `1/`, and optionally `config.toml`: that model's policy, with the keys of a
//!   `[models.NAME]` section of the server configuration.
//!
//! Hidden entries (names starting with `.`) and files that are not bundles are passed over.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The extension of bundle files.
const BUNDLE_EXTENSION: &str = "safetensors";

/// A model found in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryModel {
    /// Its name: the file stem or the folder's name.
    pub name: String,
    /// Its bundle.
    pub bundle: PathBuf,
    /// Its `config.toml`, when its folder has one.
    pub config: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The entries of a folder that are not hidden, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn is_bundle(path: &Path) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()) == Some(BUNDLE_EXTENSION)
}

fn name_of(path: &Path, stem: bool) -> Result<String> {
    let name = if stem {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: cannot name a model after this path (not UTF-8)",
                path.display()
            ))
        })
}

/// The one bundle of a model's folder: in the folder itself, or in its version folder `1/`.
fn folder_bundle(folder: &Path) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = entries(folder)?
        .into_iter()
        .filter(|p| is_bundle(p))
        .collect();
    let version = folder.join("1");
    if version.is_dir() {
        found.extend(entries(&version)?.into_iter().filter(|p| is_bundle(p)));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::Config(format!(
            "{} holds {} bundles ({}): a model's folder holds one",
            folder.display(),
            found.len(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The models of the repository at `dir` (a folder, or one bundle file), in order of name.
///
/// # Errors
///
/// A folder that cannot be read, a model folder without a bundle or with several, two models
/// of one name, or a repository without any.
pub fn read(dir: &Path) -> Result<Vec<RepositoryModel>> {
    if is_bundle(dir) {
        return Ok(vec![RepositoryModel {
            name: name_of(dir, true)?,
            bundle: dir.to_path_buf(),
            config: None,
        }]);
    }
    if !dir.is_dir() {
        return Err(Error::Config(format!(
            "--model-dir {}: no such folder or bundle",
            dir.display()
        )));
    }
    let mut models: Vec<RepositoryModel> = Vec::new();
    for path in entries(dir)? {
        let model = if is_bundle(&path) {
            RepositoryModel {
                name: name_of(&path, true)?,
                bundle: path,
                config: None,
            }
        } else if path.is_dir() {
            let Some(bundle) = folder_bundle(&path)? else {
                return Err(Error::Config(format!(
                    "{} holds no bundle (`*.{BUNDLE_EXTENSION}`, in it or in `1/`)",
                    path.display()
                )));
            };
            let config = path.join("config.toml");
            RepositoryModel {
                name: name_of(&path, false)?,
                bundle,
                config: config.is_file().then_some(config),
            }
        } else {
            continue;
        };
        if let Some(other) = models.iter().find(|m| m.name == model.name) {
            return Err(Error::Config(format!(
                "{} and {} are both model `{}`",
                other.bundle.display(),
                model.bundle.display(),
                model.name
            )));
        }
        models.push(model);
    }
    if models.is_empty() {
        return Err(Error::Config(format!(
            "--model-dir {} holds no bundles (`NAME.{BUNDLE_EXTENSION}`, or folders `NAME/` \
             with one)",
            dir.display()
        )));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a folder");
        }
        std::fs::write(path, b"").expect("a file");
    }

    #[test]
    fn both_layouts_are_read_with_their_configurations() {
        let dir = tempfile::tempdir().expect("a folder");
        let d = dir.path();
        touch(&d.join("plain.safetensors"));
        touch(&d.join("curve/model.safetensors"));
        touch(&d.join("curve/config.toml"));
        touch(&d.join("fge/1/fge.safetensors"));
        touch(&d.join("README.md"));
        touch(&d.join(".hidden/x.safetensors"));
        let models = read(d).expect("a repository");
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["curve", "fge", "plain"]);
        assert_eq!(models[0].bundle, d.join("curve/model.safetensors"));
        assert_eq!(models[0].config, Some(d.join("curve/config.toml")));
        assert_eq!(models[1].bundle, d.join("fge/1/fge.safetensors"));
        assert_eq!(models[1].config, None);
        // One bundle given as the repository.
        let one = read(&d.join("plain.safetensors")).expect("one bundle");
        assert_eq!(one[0].name, "plain");
    }

    #[test]
    fn broken_repositories_are_refused_by_name() {
        let message = |d: &Path| read(d).err().map(|e| e.to_string()).unwrap_or_default();
        let dir = tempfile::tempdir().expect("a folder");
        let d = dir.path();
        assert!(message(d).contains("holds no bundles"), "{}", message(d));
        assert!(message(&d.join("missing")).contains("no such folder"));
        touch(&d.join("empty/notes.txt"));
        assert!(
            message(d).contains("empty holds no bundle"),
            "{}",
            message(d)
        );
        std::fs::remove_dir_all(d.join("empty")).expect("removed");
        touch(&d.join("two/a.safetensors"));
        touch(&d.join("two/1/b.safetensors"));
        assert!(message(d).contains("holds 2 bundles"), "{}", message(d));
        std::fs::remove_dir_all(d.join("two")).expect("removed");
        touch(&d.join("m.safetensors"));
        touch(&d.join("m/model.safetensors"));
        assert!(message(d).contains("are both model `m`"), "{}", message(d));
    }
}
