//! How a state patch changes a run's state: which transitions are
//! allowed, and what a terminal status sets. Every backend applies patches
//! here, under its own lock or compare-and-set.

use crate::{
    error::{Refused, Result, StoreError},
    model::{RunKey, RunStatePatch, RunStateSnapshot, RunStatus},
    time::{normalize_iso, now_iso},
};

/// The state `patch` makes of `current_state`, checked: a run failed only
/// by its worker lease (`lease_lapsed`) and a terminal run take no patch,
/// the status only moves forward, and `check_checkpoint` approves a new
/// checkpoint. `last_event_seq` is left for the caller.
pub(crate) fn patched(
    key: &RunKey,
    current_state: &RunStateSnapshot,
    lease_lapsed: bool,
    writer_id: Option<&str>,
    patch: RunStatePatch,
    check_checkpoint: impl FnOnce(u64) -> Result<()>,
) -> Result<RunStateSnapshot> {
    let current = current_state.status;
    if lease_lapsed {
        return Err(StoreError::LeaseLapsed {
            key: key.clone(),
            writer_id: writer_id.map(str::to_owned),
            refused: Refused::StateChange,
        });
    }
    if current.is_terminal() {
        return Err(StoreError::Terminal {
            key: key.clone(),
            status: current,
            refused: Refused::StateChange,
        });
    }
    let mut next = current_state.clone();
    if let Some(status) = patch.status {
        if !current.can_move_to(status) {
            return Err(StoreError::BadTransition {
                key: key.clone(),
                from: current,
                to: status,
            });
        }
        next.status = status;
    }
    if let Some(checkpoint_seq) = patch.checkpoint_seq {
        check_checkpoint(checkpoint_seq)?;
        next.checkpoint_seq = checkpoint_seq;
    }
    if let Some(summary) = patch.summary {
        next.summary = Some(summary);
    }
    if let Some(exit_code) = patch.exit_code {
        next.exit_code = Some(exit_code);
    }
    let now = now_iso();
    if next.status.is_terminal() {
        next.finished_at = Some(match patch.finished_at {
            Some(finished_at) => normalize_iso("patch.finished_at", &finished_at)?,
            None => now.clone(),
        });
    } else if patch.finished_at.is_some() {
        return Err(StoreError::FinishedAtWithoutTerminalStatus);
    }
    next.updated_at = now;
    Ok(next)
}

/// The final status that `writer_id`, back after its run failed only
/// because its worker lease expired, sets with `patch`: a terminal status
/// and nothing else (see [`crate::lease`]).
pub(crate) fn settled_status(
    key: &RunKey,
    writer_id: &str,
    patch: &RunStatePatch,
) -> Result<RunStatus> {
    match patch.status {
        Some(status) if status.is_terminal() => Ok(status),
        Some(status) => Err(StoreError::BadTransition {
            key: key.clone(),
            from: RunStatus::Failed,
            to: status,
        }),
        None => Err(StoreError::LeaseLapsed {
            key: key.clone(),
            writer_id: Some(writer_id.to_owned()),
            refused: Refused::StateChange,
        }),
    }
}

/// When a run that `patch` finishes finished: the patch's time, checked,
/// or `now`.
pub(crate) fn finished_at(patch: &RunStatePatch, now: &str) -> Result<String> {
    match &patch.finished_at {
        Some(finished_at) => normalize_iso("patch.finished_at", finished_at),
        None => Ok(now.to_owned()),
    }
}
