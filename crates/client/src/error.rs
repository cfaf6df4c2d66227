//! The client's one error type, and which errors are worth retrying.

use tonic::Code;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI.
    #[error("invalid server address `{address}`: {source}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server could not be reached.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address given.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// None of several servers could be reached: each one's
    /// [`ClientError::Connect`], in the order they were tried.
    #[error("cannot connect to any of the servers: {}", describe_all(attempts))]
    Unreachable {
        /// Why each server could not be reached.
        attempts: Vec<ClientError>,
    },
    /// The server answered with an error, or the connection broke.
    #[error("the server answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A value given to the client cannot be sent as it is.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was wrong.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A configured credential cannot be used.
    #[error("invalid {what}: {reason}")]
    Credentials {
        /// Which credential.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A local file of an upload or download could not be read or
    /// written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A downloaded file does not have the SHA-256 the server gave for
    /// its object.
    #[error("{} does not have the object's SHA-256 (expected {expected}, got {got})", path.display())]
    DigestMismatch {
        /// The file.
        path: std::path::PathBuf,
        /// The object's digest, in hex.
        expected: String,
        /// The file's, in hex.
        got: String,
    },
    /// The writer stopped after an earlier error, which it reported then;
    /// nothing more can be appended through it.
    #[error("the writer is closed: {0}")]
    WriterClosed(String),
}

impl ClientError {
    /// A local file's error.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The gRPC status code, when the server (or the transport) gave one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }

    /// True for errors that retrying can cure: the server is away or going
    /// away, or the connection broke. Errors about the request itself (a
    /// bad id, an unknown run, a terminal run, a limit) are never retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Unreachable { .. } => true,
            Self::Status(status) => is_retryable_status(status),
            _ => false,
        }
    }
}

/// Each error with its causes, `; ` between them, for
/// [`ClientError::Unreachable`], whose one message must say why every
/// server failed (a transport error alone reads "transport error").
fn describe_all(errors: &[ClientError]) -> String {
    let mut text = String::new();
    for (index, error) in errors.iter().enumerate() {
        if index > 0 {
            text.push_str("; ");
        }
        text.push_str(&error.to_string());
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
    }
    text
}

/// Whether a status says "try again later" rather than "this is wrong".
///
/// `UNKNOWN` is included because a connection torn down under a stream
/// (the server killed, a proxy restarted) surfaces as `UNKNOWN` with an
/// HTTP/2 error in tonic; the server itself never sends it.
pub(crate) fn is_retryable_status(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::DeadlineExceeded
    )
}

/// Whether a status says the server itself is gone or going (a
/// connection that could not be made or broke, a server shutting down),
/// rather than something about the call: a client with other servers
/// moves to the next one then. `DEADLINE_EXCEEDED` and `ABORTED` are
/// retried on the same server: they speak of the call (an idle stream, a
/// search's time limit, an upload taken over), not of the node.
pub(crate) fn is_server_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}
