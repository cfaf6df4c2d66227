//! Checkpoint slots: a reservation records a `checkpoint_slot_reserved`
//! lifecycle entry and creates `checkpoints/<seq>/`; a commit moves the
//! run state's `checkpointSeq` to a reserved slot.
//!
//! A slot is reserved once its entry is committed: the run keeps the
//! reserved slots in memory, read back from its log when it is opened
//! (see `slots`), and objects go into a reserved slot only, never into a
//! slot directory that someone made by hand. The next slot is one past
//! the state's `checkpointSeq`, the highest reserved slot and the highest
//! slot directory. The directory is created (and its parent fsynced)
//! before the entry is committed; a crash between the two leaves an empty
//! slot, never reserved, that the next reservation passes over.

use std::{fs, io};

use super::{Run, RunInner};
use crate::{
    error::{Refused, Result, StoreError},
    local::{
        layout::RunDir,
        objects::{
            safe_dir::{Dir, PathTrouble},
            walk,
        },
    },
    model::{AppendPayload, RunStatePatch, RunStateSnapshot},
    objects::{ObjectKind, ObjectRef, slot_reserved_event},
};

impl Run {
    /// Reserves the next checkpoint slot; returns it and the `seq` of its
    /// `checkpoint_slot_reserved` entry. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::Terminal`] for a terminal run; a failed write.
    pub(crate) fn reserve_checkpoint(&self) -> Result<(u64, u64)> {
        let mut inner = self.inner();
        if inner.state.status.is_terminal() {
            return Err(StoreError::Terminal {
                key: self.key.clone(),
                status: inner.state.status,
                refused: Refused::Objects,
            });
        }
        inner.writable(&self.key, true)?;
        let io = |err| StoreError::io(format!("cannot reserve a checkpoint of {}", self.key), err);
        let run_dir = Dir::open(self.dir.path()).map_err(io)?;
        let highest = walk::slots(&run_dir)
            .map_err(io)?
            .last()
            .copied()
            .unwrap_or(0);
        let highest = highest
            .max(inner.state.checkpoint_seq)
            .max(inner.reserved_slots.last().copied().unwrap_or(0));
        // A slot directory made by hand can be named `u64::MAX`.
        let slot = highest
            .checked_add(1)
            .ok_or_else(|| StoreError::SlotsExhausted {
                key: self.key.clone(),
                highest,
            })?;
        // By descriptor: a `checkpoints` swapped for a link is refused.
        let unsafe_path = |trouble| match trouble {
            PathTrouble::Unsafe(problem) => StoreError::UnsafePath {
                object: format!("{}: checkpoints", self.key),
                problem,
            },
            PathTrouble::Io(err) => io(err),
        };
        let checkpoints = run_dir
            .descend_creating([RunDir::checkpoints_name()])
            .map_err(unsafe_path)?;
        let (_, created) = checkpoints
            .child_or_create(&slot.to_string())
            .map_err(unsafe_path)?;
        if !created {
            return Err(io(std::io::ErrorKind::AlreadyExists.into()));
        }
        checkpoints.sync().map_err(io)?;
        let event = slot_reserved_event(slot);
        self.commit(&mut inner, None, vec![AppendPayload::Event(event)], None)?;
        self.sync_written(&mut inner)?;
        inner.reserved_slots.insert(slot);
        Ok((slot, inner.next_seq - 1))
    }

    /// Makes the reserved slot `checkpoint_seq` the run's checkpoint; the
    /// slot that is the run's checkpoint already is success again.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::SlotNotReserved`], [`StoreError::CheckpointClosed`],
    /// the errors of a state change; a failed write.
    pub(crate) fn commit_checkpoint(&self, checkpoint_seq: u64) -> Result<RunStateSnapshot> {
        let mut inner = self.inner();
        if checkpoint_seq > 0 && checkpoint_seq == inner.state.checkpoint_seq {
            // Committed already: a commit retried after its answer was
            // lost gets the state it made.
            return Ok(inner.state.clone());
        }
        if inner.state.status.is_terminal() {
            return Err(StoreError::Terminal {
                key: self.key.clone(),
                status: inner.state.status,
                refused: Refused::Objects,
            });
        }
        self.check_open_slot(&inner, checkpoint_seq)?;
        let patch = RunStatePatch {
            checkpoint_seq: Some(checkpoint_seq),
            ..RunStatePatch::default()
        };
        let mut next = self.patched(&inner, None, patch)?;
        next.last_event_seq = inner.next_seq - 1;
        self.set_state(&mut inner, next)
    }

    /// Refuses a state patch's `checkpoint_seq` that moves the run's
    /// checkpoint back (the committed slots would open again) or to a
    /// slot never reserved (its objects could not have been uploaded).
    /// The same value again is no change. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::CheckpointMovedBack`], [`StoreError::SlotNotReserved`].
    pub(super) fn check_checkpoint_patch(
        &self,
        inner: &RunInner,
        checkpoint_seq: u64,
    ) -> Result<()> {
        let current = inner.state.checkpoint_seq;
        if checkpoint_seq == current {
            return Ok(());
        }
        if checkpoint_seq < current {
            return Err(StoreError::CheckpointMovedBack {
                key: self.key.clone(),
                checkpoint_seq,
                current,
            });
        }
        self.check_open_slot(inner, checkpoint_seq)
    }

    /// Runs `place`, which puts `object` in place, while the run's state
    /// cannot change, once it allows the object: the run is not terminal,
    /// and a checkpoint's slot is reserved and past the run's checkpoint.
    /// Blocking; `place` must not take the run's locks.
    ///
    /// # Errors
    ///
    /// [`StoreError::Terminal`], [`StoreError::SlotNotReserved`],
    /// [`StoreError::CheckpointClosed`], or what `place` returns.
    pub(crate) fn placing_object<T>(
        &self,
        object: &ObjectRef,
        place: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let inner = self.inner();
        self.objects_allowed(&inner, object)?;
        place()
    }

    /// Refuses objects for a terminal run, and, for a checkpoint object, a
    /// slot that is not reserved or is closed. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::Terminal`], [`StoreError::SlotNotReserved`],
    /// [`StoreError::CheckpointClosed`].
    pub(crate) fn check_objects_allowed(&self, object: &ObjectRef) -> Result<()> {
        self.objects_allowed(&self.inner(), object)
    }

    /// [`Self::check_objects_allowed`], with the run's state held.
    fn objects_allowed(&self, inner: &RunInner, object: &ObjectRef) -> Result<()> {
        if inner.state.status.is_terminal() {
            return Err(StoreError::Terminal {
                key: self.key.clone(),
                status: inner.state.status,
                refused: Refused::Objects,
            });
        }
        if object.kind == ObjectKind::Checkpoint {
            self.check_open_slot(inner, object.checkpoint_seq)?;
        }
        Ok(())
    }

    /// Refuses a checkpoint slot that is at or before the run's checkpoint,
    /// that the store never reserved (a slot directory made by hand), or
    /// whose directory is gone or not a directory.
    fn check_open_slot(&self, inner: &RunInner, checkpoint_seq: u64) -> Result<()> {
        let current = inner.state.checkpoint_seq;
        if checkpoint_seq <= current {
            return Err(StoreError::CheckpointClosed {
                key: self.key.clone(),
                checkpoint_seq,
                current,
            });
        }
        let not_reserved = || StoreError::SlotNotReserved {
            key: self.key.clone(),
            checkpoint_seq,
        };
        if !inner.reserved_slots.contains(&checkpoint_seq) {
            return Err(not_reserved());
        }
        let slot = self.dir.checkpoints().join(checkpoint_seq.to_string());
        match fs::symlink_metadata(&slot) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::UnsafePath {
                object: format!("{}: checkpoints/{checkpoint_seq}", self.key),
                problem: "the slot is not a directory".to_owned(),
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(not_reserved()),
            Err(err) => Err(StoreError::io(
                format!("cannot read {}", slot.display()),
                err,
            )),
        }
    }
}
