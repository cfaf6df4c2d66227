//! Who uses a run, for retention: streams enter and leave, and retention
//! retires a run only while it is terminal and nobody uses it.

use super::Run;
use crate::{
    error::{Result, StoreError},
    local::concurrency::lock,
};

/// Who uses a run, and whether retention took it.
#[derive(Debug, Default)]
pub(super) struct RunLife {
    /// Streams open on the run (readers and append streams), each holding
    /// a [`crate::LocalHold`].
    users: usize,
    /// Retention took the run: its directory is gone or going, and it must
    /// look as if it never existed.
    deleted: bool,
}

/// Why retention cannot take a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The run is not terminal.
    NotTerminal,
    /// A stream is open on it.
    InUse,
    /// Retention took it already.
    Deleted,
}

impl Run {
    /// Counts one more user, unless retention took the run.
    pub(crate) fn enter(&self) -> Result<()> {
        let mut life = lock(&self.life);
        if life.deleted {
            return Err(StoreError::RunNotFound(self.key.clone()));
        }
        life.users += 1;
        Ok(())
    }

    /// Counts one user less.
    pub(crate) fn leave(&self) {
        let mut life = lock(&self.life);
        life.users = life.users.saturating_sub(1);
    }

    /// Whether a stream is open on the run.
    pub(crate) fn in_use(&self) -> bool {
        lock(&self.life).users > 0
    }

    /// Whether retention took the run.
    pub(crate) fn is_deleted(&self) -> bool {
        lock(&self.life).deleted
    }

    /// Marks the run deleted, when it is terminal and no stream is open on
    /// it, and closes its files. From here on no stream can open on it.
    pub(crate) fn retire(&self) -> Result<(), Busy> {
        let inner = self.inner();
        if !inner.state.status.is_terminal() {
            return Err(Busy::NotTerminal);
        }
        let mut life = lock(&self.life);
        if life.deleted {
            return Err(Busy::Deleted);
        }
        if life.users > 0 {
            return Err(Busy::InUse);
        }
        life.deleted = true;
        self.files.forget();
        Ok(())
    }

    /// Undoes [`Run::retire`], when the directory could not be removed.
    pub(crate) fn unretire(&self) {
        lock(&self.life).deleted = false;
    }
}
