//! The one error type of the store. The gRPC layer maps each variant to a
//! status code in one place.

use std::io;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is malformed: a bad id, a missing or unknown value.
    #[error("{0}")]
    InvalidArgument(String),
    /// The run does not exist.
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// The run exists with other metadata.
    #[error("{0}")]
    AlreadyExists(String),
    /// The run's state forbids the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is over a limit; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store is closing.
    #[error("the store is shutting down")]
    ShuttingDown,
    /// A file of the store could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A stored file does not hold what the layout says it must.
    #[error("{0}")]
    Corrupt(String),
}

impl StoreError {
    /// An I/O error with what the store was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
