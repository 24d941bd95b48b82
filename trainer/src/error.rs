//! The trainer's one error type.

use std::path::PathBuf;

/// Result with the trainer's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while training, evaluating and writing bundles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libtorch reported an error. Its message is shown without the C++ backtrace libtorch
    /// appends to it (`Exception raised from ...`, `frame #0: ...`), which is for libtorch's
    /// developers, not for the user; the error is not given as `source()`, whose text would
    /// carry the backtrace again.
    #[error("libtorch: {}", torch_message(.0))]
    Tch(tch::TchError),
    /// The runtime (bundles, graphs) reported an error.
    #[error(transparent)]
    Runtime(#[from] modeconn_runtime::Error),
    /// A file could not be read or written. The operating system's text is part of the
    /// message, so it is not also given as `source()` (a caller printing the chain would say
    /// it twice).
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A data set is missing, malformed or does not fit the architecture.
    #[error("data: {0}")]
    Data(String),
    /// An architecture name or option is not known or not valid.
    #[error("architecture: {0}")]
    Arch(String),
    /// A job or option is invalid (unknown field, bad number, missing path...).
    #[error("invalid job: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, step {step}: lower the learning rate")]
    NonFiniteLoss {
        /// The value seen.
        value: f64,
        /// The epoch (1-based).
        epoch: usize,
        /// The step within the epoch (1-based).
        step: usize,
    },
    /// A requested device cannot be used.
    #[error("device `{device}` is not available: {reason}")]
    Device {
        /// The device asked for, as the job spells it.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Tch(e)
    }
}

/// What libtorch said, without its C++ backtrace: the text before `Exception raised from`
/// (which starts the backtrace, on its own line or at the end of the message's line) and
/// before the first `frame #` line, on one line. tch's `Internal torch error: ` prefix is
/// dropped too: the message says `libtorch: ` already.
fn torch_message(e: &tch::TchError) -> String {
    let text = match e {
        tch::TchError::Torch(message) => message.clone(),
        other => other.to_string(),
    };
    let head = text
        .split("Exception raised from")
        .next()
        .unwrap_or_default();
    let lines: Vec<&str> = head
        .lines()
        .take_while(|l| !l.trim_start().starts_with("frame #"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "an error without a message".to_string()
    } else {
        lines.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_errors_keep_their_message_and_drop_the_cpp_backtrace() {
        let a = tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let b = tch::Tensor::zeros([4, 5], (tch::Kind::Float, tch::Device::Cpu));
        let e = match a.f_matmul(&b) {
            Err(e) => Error::from(e),
            Ok(_) => panic!("libtorch multiplied a 2x3 by a 4x5 matrix"),
        };
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("2x3 and 4x5"), "{text}");
        assert!(
            !text.contains("Exception raised from") && !text.contains("frame #"),
            "{text}"
        );
    }

    #[test]
    fn the_backtrace_is_cut_wherever_libtorch_puts_it() {
        let raw = "shapes cannot be multiplied (2x3 and 4x5)\nException raised from meta at \
                   /pytorch/aten/src/ATen/native/LinearAlgebra.cpp:193 (most recent call \
                   first):\nframe #0: c10::Error::Error(c10::SourceLocation, std::string) + \
                   0x9d (0x7f in libc10.so)\nframe #1: ...";
        let e = Error::from(tch::TchError::Torch(raw.to_string()));
        assert_eq!(
            e.to_string(),
            "libtorch: shapes cannot be multiplied (2x3 and 4x5)"
        );
        let e = Error::from(tch::TchError::Torch(
            "/x.ckpt: open file failed because of errno 2 on fopen: No such file or directory, \
             file path: /x.ckpt Exception raised from RAIIFile at ../caffe2/serialize/file_adapter.cc:30 \
             (most recent call first):"
                .to_string(),
        ));
        assert_eq!(
            e.to_string(),
            "libtorch: /x.ckpt: open file failed because of errno 2 on fopen: No such file or \
             directory, file path: /x.ckpt"
        );
        let e = Error::from(tch::TchError::Shape("bad".into()));
        assert_eq!(e.to_string(), "libtorch: invalid shape: bad");
    }
}
