//! The one error type of the harness: anything that stops a measurement,
//! with a message that says which step failed.

/// Why a measurement (or the whole run) could not go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// A step failed; the message names it and the cause.
    #[error("{0}")]
    Failed(String),
    /// The system under test answered a request wrongly (a tail that is
    /// not the last entries, a search that missed matches): the figure
    /// measured with it is worthless, and the run fails.
    #[error("wrong answer: {0}")]
    WrongAnswer(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl BenchError {
    /// A failed step, from anything that displays.
    pub(crate) fn failed(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> Self {
        Self::Failed(format!("{what}: {cause}"))
    }

    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The harness's result type.
pub(crate) type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Adds the step that failed to any error.
pub(crate) trait Context<T> {
    /// Turns the error into a [`BenchError`] naming `what` was being done.
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|err| BenchError::failed(what, err))
    }
}
