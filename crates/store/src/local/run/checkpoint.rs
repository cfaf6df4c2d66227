//! Checkpoint slots: a reservation records a `checkpoint_slot_reserved`
//! lifecycle entry and creates `checkpoints/<seq>/`; a commit moves the
//! run state's `checkpointSeq` to a reserved slot.
//!
//! The slots that exist are the slot directories themselves, so a
//! reservation survives a restart with nothing else to recover: the next
//! slot is one past both the state's `checkpointSeq` and the highest slot
//! directory. The directory is created (and its parent fsynced) before
//! the entry is committed; a crash between the two leaves an empty slot
//! that the next reservation passes over.

use super::Run;
use crate::{
    error::{Refused, Result, StoreError},
    local::{
        layout::RunDir,
        objects::{
            safe_dir::{Dir, PathTrouble},
            walk,
        },
    },
    model::{
        AppendPayload, LogLevel, RunStatePatch, RunStateSnapshot, StructuredData,
        WorkerLifecycleEventInput, WorkerLifecycleEventType,
    },
    objects::{ObjectKind, ObjectRef},
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
        let highest = walk::slots(&self.dir)
            .map_err(io)?
            .last()
            .copied()
            .unwrap_or(0);
        let highest = highest.max(inner.state.checkpoint_seq);
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
        let run_dir = Dir::open(self.dir.path()).map_err(io)?;
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
        let mut data = StructuredData::new();
        data.insert("checkpointSeq".into(), slot.into());
        let event = WorkerLifecycleEventInput {
            event_type: WorkerLifecycleEventType::CheckpointSlotReserved,
            level: LogLevel::Info,
            message: format!("checkpoint slot {slot} reserved"),
            created_at: None,
            data,
        };
        self.commit(&mut inner, None, &[AppendPayload::Event(event)], None)?;
        self.sync_written(&mut inner)?;
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
        self.check_open_slot(inner.state.checkpoint_seq, checkpoint_seq)?;
        let patch = RunStatePatch {
            checkpoint_seq: Some(checkpoint_seq),
            ..RunStatePatch::default()
        };
        let mut next = self.patched(&inner, None, patch)?;
        next.last_event_seq = inner.next_seq - 1;
        self.set_state(&mut inner, next)
    }

    /// Refuses a state patch's `checkpoint_seq` that moves the run's
    /// checkpoint, `current`, back (the committed slots would open again)
    /// or to a slot never reserved (its objects could not have been
    /// uploaded). The same value again is no change. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::CheckpointMovedBack`], [`StoreError::SlotNotReserved`].
    pub(crate) fn check_checkpoint_patch(&self, current: u64, checkpoint_seq: u64) -> Result<()> {
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
        self.check_open_slot(current, checkpoint_seq)
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
        if inner.state.status.is_terminal() {
            return Err(StoreError::Terminal {
                key: self.key.clone(),
                status: inner.state.status,
                refused: Refused::Objects,
            });
        }
        if object.kind == ObjectKind::Checkpoint {
            self.check_open_slot(inner.state.checkpoint_seq, object.checkpoint_seq)?;
        }
        place()
    }
}
