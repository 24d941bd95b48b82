//! The contract's one error type, and the statuses of the C API its errors map to.

use std::fmt;
use std::path::{Path, PathBuf};

use strum::{EnumIter, EnumMessage, IntoStaticStr};

use crate::ABI_VERSION;
use crate::plugin::ENV_VAR;

/// Result with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, numbered as the C API's `modeconn_status`
/// (`MODECONN_STATUS_TRAINER_UNAVAILABLE` is 110, and so on). Numbers are never reused.
#[non_exhaustive]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, IntoStaticStr, EnumMessage)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The trainer plugin was not found, could not be loaded, is not a trainer plugin, or
    /// speaks another ABI version.
    TrainerUnavailable = 110,
    /// The trainer ran the job and reported a failure, or answered with no usable report.
    TrainerFailed = 111,
    /// The job JSON does not parse or has invalid fields.
    InvalidJob = 112,
}

/// How to get the plugin, for error messages.
const HOW_TO_GET: &str = "build it with `cargo build --release -p modeconn-trainer` (needs \
    libtorch: source the env file printed by scripts/setup.sh), which writes it beside \
    `modeconn` in target/release/, or pass --trainer PATH or set MODECONN_TRAINER";

/// Where the trainer plugin was looked for when it was not found.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Searched {
    /// The explicit path (`--trainer PATH`, the C API's `plugin` argument), which does not
    /// exist.
    Explicit(PathBuf),
    /// The path in `MODECONN_TRAINER`, which does not exist.
    Variable(PathBuf),
    /// These files, in order (the caller's extra folders, then beside the executable); empty
    /// when no folder was known.
    Folders(Vec<PathBuf>),
}

impl fmt::Display for Searched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Searched::Explicit(p) => write!(f, "--trainer {} does not exist", p.display()),
            Searched::Variable(p) => {
                write!(f, "{ENV_VAR} is {}, which does not exist", p.display())
            }
            Searched::Folders(files) if files.is_empty() => write!(
                f,
                "not given by --trainer, {ENV_VAR} is unset, and the folder of this \
                 executable is unknown"
            ),
            Searched::Folders(files) => {
                let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "not given by --trainer, {ENV_VAR} is unset, and there is no {}",
                    list.join(" or ")
                )
            }
        }
    }
}

/// Everything that can go wrong between a caller and the trainer plugin.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No plugin where it was looked for.
    #[error("the trainer plugin is missing: {searched}; training commands need it: {HOW_TO_GET}")]
    Missing {
        /// Where it was looked for.
        searched: Searched,
    },
    /// The plugin file exists but the dynamic loader refused it.
    #[error("cannot load the trainer plugin {}: {}", .path.display(), load_hint(.detail))]
    Load {
        /// The file.
        path: PathBuf,
        /// What the loader said, on one line.
        detail: String,
    },
    /// The library loaded but is not a trainer plugin.
    #[error(
        "{} is not a modeconn trainer plugin (it has no modeconn_trainer_abi_version)",
        .path.display()
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The plugin speaks another version of the ABI than [`ABI_VERSION`].
    #[error(
        "the trainer plugin {} speaks ABI version {found} but this modeconn needs version \
         {ABI_VERSION}: rebuild the plugin from the same sources as modeconn \
         (`cargo build --release -p modeconn-trainer`)",
        .path.display()
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The version it speaks.
        found: u32,
    },
    /// A function of the ABI is missing from the plugin.
    #[error("{} has no {symbol}: {detail}", .path.display())]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The function.
        symbol: &'static str,
        /// What the loader said.
        detail: String,
    },
    /// The plugin answered with something that is not a report of the job it was given.
    #[error("the trainer plugin {} returned {what}", .path.display())]
    BadReport {
        /// The plugin.
        path: PathBuf,
        /// What was wrong with the answer.
        what: String,
    },
    /// The trainer refused the job or failed while running it.
    #[error("{message}")]
    Failed {
        /// The trainer's message, on one line.
        message: String,
    },
    /// A job that does not parse or has fields of the wrong type, named with its path.
    #[error("invalid job: {message}")]
    InvalidJob {
        /// What is wrong, e.g. `epochs: invalid type: string "three", expected usize`.
        message: String,
    },
    /// A name (device, basis, phase) that is not one of its values.
    #[error("`{value}` is not a valid {what}: expected one of {}", .expected.join(", "))]
    UnknownName {
        /// What the name names, e.g. `device`.
        what: &'static str,
        /// The name given.
        value: String,
        /// The names known.
        expected: &'static [&'static str],
    },
}

impl Error {
    /// The kind of failure, numbered as the C API's status for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Missing { .. }
            | Error::Load { .. }
            | Error::NotAPlugin { .. }
            | Error::AbiMismatch { .. }
            | Error::MissingSymbol { .. } => ErrorCode::TrainerUnavailable,
            Error::BadReport { .. } | Error::Failed { .. } => ErrorCode::TrainerFailed,
            Error::InvalidJob { .. } | Error::UnknownName { .. } => ErrorCode::InvalidJob,
        }
    }

    /// The error for a plugin that exists but does not load; `detail` is what the loader
    /// said, folded onto one line.
    pub(crate) fn load(path: &Path, detail: &str) -> Error {
        Error::Load {
            path: path.to_path_buf(),
            detail: detail.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// The loader's message, with a hint when libtorch is what is missing.
fn load_hint(detail: &str) -> String {
    if detail.contains("libtorch") || detail.contains("libc10") {
        format!(
            "libtorch was not found ({detail}); LD_LIBRARY_PATH must include the torch/lib \
             folder of the Python environment holding torch (the env file printed by \
             scripts/setup.sh sets it)"
        )
    } else {
        detail.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libtorch_hint_names_ld_library_path() {
        let e = Error::load(
            Path::new("/p.so"),
            "libtorch_cpu.so: cannot open\n shared object",
        );
        let text = e.to_string();
        assert!(text.contains("LD_LIBRARY_PATH"), "{text}");
        assert!(text.contains("cannot open shared object"), "{text}");
        let e = Error::load(Path::new("/p.so"), "invalid ELF header");
        assert!(!e.to_string().contains("LD_LIBRARY_PATH"), "{e}");
        assert_eq!(e.code(), ErrorCode::TrainerUnavailable);
    }

    #[test]
    fn codes_are_the_c_statuses() {
        assert_eq!(ErrorCode::TrainerUnavailable as u32, 110);
        assert_eq!(ErrorCode::TrainerFailed as u32, 111);
        assert_eq!(ErrorCode::InvalidJob as u32, 112);
        let failed = Error::Failed {
            message: "no".into(),
        };
        assert_eq!(failed.code(), ErrorCode::TrainerFailed);
        let invalid = Error::InvalidJob {
            message: "epochs: bad".into(),
        };
        assert_eq!(invalid.code(), ErrorCode::InvalidJob);
        assert_eq!(invalid.to_string(), "invalid job: epochs: bad");
    }

    #[test]
    fn searches_say_where_they_looked() {
        let e = Error::Missing {
            searched: Searched::Folders(vec!["/a/p.so".into(), "/b/p.so".into()]),
        };
        let text = e.to_string();
        assert!(text.starts_with("the trainer plugin is missing"), "{text}");
        assert!(text.contains("/a/p.so or /b/p.so"), "{text}");
        assert!(
            text.contains("cargo build --release -p modeconn-trainer"),
            "{text}"
        );
        let none = Searched::Folders(Vec::new()).to_string();
        assert!(none.contains("unknown"), "{none}");
    }
}
