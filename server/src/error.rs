//! Errors: [`Error`] for starting a server, [`ApiError`] for one request.

use std::path::PathBuf;

use axum::http::StatusCode;

/// Why a server could not be configured or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The configuration is not valid.
    #[error("configuration: {0}")]
    Config(String),
    /// A bundle could not be loaded or warmed up.
    #[error("model `{model}`: {source}")]
    Model {
        /// The model's name.
        model: String,
        /// What the runtime said.
        source: modeconn_runtime::Error,
    },
    /// ONNX Runtime could not be started.
    #[error(transparent)]
    Runtime(#[from] modeconn_runtime::Error),
    /// The address could not be bound or the server failed.
    #[error("{context}: {source}")]
    Net {
        /// What was being done.
        context: String,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request that cannot be answered: an HTTP status and a message for the client, sent as
/// `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, in one line.
    pub message: String,
    /// Whether the server is overloaded (a full queue, too much being received): a `503`
    /// that gRPC calls `RESOURCE_EXHAUSTED`, where other `503`s (shutting down) are
    /// `UNAVAILABLE`.
    pub overloaded: bool,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            overloaded: false,
        }
    }

    /// `503 Service Unavailable` because the server is overloaded: retry later.
    pub fn overloaded(message: impl Into<String>) -> Self {
        ApiError {
            overloaded: true,
            ..Self::unavailable(message)
        }
    }

    /// `400 Bad Request`: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `403 Forbidden`: the configuration does not allow what was asked.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `503 Service Unavailable`: try again later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// `500 Internal Server Error`: the runtime failed on a valid request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// `413 Content Too Large`: the request asks for more than a limit allows.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The status of a runtime failure: `400` for the request's fault, `413` for a request
    /// over one of the runtime's bounds, `500` for ours.
    pub fn runtime(e: &modeconn_runtime::Error) -> Self {
        use modeconn_runtime::ErrorCode as C;
        if matches!(e, modeconn_runtime::Error::TooLarge { .. }) {
            return Self::too_large(e.to_string());
        }
        match e.code() {
            C::Input | C::Sampling | C::TOutOfRange | C::MemberOutOfRange => {
                Self::bad_request(e.to_string())
            }
            _ => Self::internal(e.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}
