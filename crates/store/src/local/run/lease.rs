//! A run's worker lease, as the store keeps it: the expiry that fails a
//! running run, and the writer that comes back after it.
//!
//! The lease-failed mark lives in the journal, on the commit of the
//! expiry's lifecycle entry ([`LeaseMark::Expired`]): that commit and the
//! mark are one write, `state.json` keeps the contract's fields alone, and
//! recovery rebuilds the [`LeaseLapse`] from the records like every other
//! counter. The run is *lease-failed* while its status is `failed` and the
//! lapse is set. Then, and only then, a writer that had appended to the
//! run before (a writer cursor above 0) may:
//!
//! - append: the first late commit is preceded by a
//!   `worker_execution_deferred` entry ([`LeaseMark::Returned`]);
//! - set the final status once (`completed`, `failed` or `blocked`): a
//!   `step_*` entry ([`LeaseMark::Settled`]) ends the lapse, and the new
//!   state replaces the lease failure.
//!
//! Everyone else is refused with [`StoreError::LeaseLapsed`]. The run stays
//! terminal all along: followers that were live when the lease expired
//! have ended, and later ones read the whole story in `seq` order.

use super::{Run, RunInner};
use crate::{
    error::Result,
    lease::{LeaseExpiry, returned_event, settled_event},
    local::{
        fsio::write_json_atomic,
        journal::{LeaseLapse, LeaseMark},
        layout::RunDir,
    },
    model::{AppendPayload, RunStatePatch, RunStateSnapshot, RunStatus},
    time::now_iso,
    transition::{finished_at, settled_status},
};

/// The summary of a run whose expiry entry was stored but whose failed
/// state was not (a crash between the two writes), as recovery sets it.
const ROLLED_FORWARD_SUMMARY: &str = "worker lost: no writer for the worker lease";

impl Run {
    /// Fails the run, if it is still `running`, because its worker lease
    /// expired: stores the expiry's lifecycle entry, then the state.
    /// Returns the new state; `None` when the run is not running (it
    /// finished meanwhile, or never started), and nothing changed.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// A broken run, or a failed write. When the entry was stored and the
    /// state was not, a later call stores only the state.
    pub(crate) fn expire_lease(&self, expiry: &LeaseExpiry) -> Result<Option<RunStateSnapshot>> {
        let mut inner = self.inner();
        if inner.state.status != RunStatus::Running {
            return Ok(None);
        }
        inner.writable(&self.key, true)?;
        if inner.lease_lapse.is_none() {
            let event = vec![AppendPayload::Event(expiry.event())];
            self.commit(&mut inner, None, event, Some(LeaseMark::Expired))?;
        }
        let now = now_iso();
        let next = RunStateSnapshot {
            status: RunStatus::Failed,
            summary: Some(expiry.summary()),
            finished_at: Some(now.clone()),
            updated_at: now,
            last_event_seq: inner.next_seq - 1,
            ..inner.state.clone()
        };
        self.set_state(&mut inner, next).map(Some)
    }

    /// Stores the `worker_execution_deferred` entry before the first entry
    /// a writer delivers late; nothing when one is stored already.
    pub(super) fn note_return(&self, inner: &mut RunInner, writer_id: &str) -> Result<()> {
        if inner.lease_lapse.is_some_and(|lapse| lapse.returned) {
            return Ok(());
        }
        let event = vec![AppendPayload::Event(returned_event(
            writer_id,
            inner.next_seq + 1,
        ))];
        self.commit(inner, None, event, Some(LeaseMark::Returned))
    }

    /// Sets the final status that `writer_id`, back after the lease
    /// expired, asks for: stores the `step_*` entry that ends the lapse,
    /// then the state, which replaces the lease failure (its summary and
    /// exit code are the patch's).
    pub(super) fn settle(
        &self,
        inner: &mut RunInner,
        writer_id: &str,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        let status = settled_status(&self.key, writer_id, &patch)?;
        if let Some(checkpoint_seq) = patch.checkpoint_seq {
            self.check_checkpoint_patch(inner, checkpoint_seq)?;
        }
        let now = now_iso();
        let finished_at = finished_at(&patch, &now)?;
        let late_entries = inner.lease_lapse.map_or(0, |lapse| lapse.late_entries);
        let event = vec![AppendPayload::Event(settled_event(
            writer_id,
            status,
            late_entries,
            patch.exit_code,
        ))];
        self.commit(inner, None, event, Some(LeaseMark::Settled))?;
        let next = RunStateSnapshot {
            status,
            summary: patch.summary,
            exit_code: patch.exit_code,
            checkpoint_seq: patch.checkpoint_seq.unwrap_or(inner.state.checkpoint_seq),
            finished_at: Some(finished_at),
            updated_at: now,
            last_event_seq: inner.next_seq - 1,
            ..inner.state.clone()
        };
        self.set_state(inner, next)
    }
}

impl RunInner {
    /// Whether the run is failed only because its worker lease expired.
    pub(super) fn lease_lapsed(&self) -> bool {
        self.state.status == RunStatus::Failed && self.lease_lapse.is_some()
    }

    /// Whether `writer_id` may deliver late and set the final status: the
    /// run is lease-failed and the writer had appended to it.
    pub(super) fn late_writer(&self, writer_id: &str) -> bool {
        self.lease_lapsed() && self.writer_seq(writer_id) > 0
    }
}

/// Completes, on load, an expiry whose entry the journal holds while
/// `state.json` still says `running` (a crash between the two writes):
/// the run is failed as the entry says. Blocking.
///
/// # Errors
///
/// A failed write of `state.json`.
pub(super) fn roll_forward(
    dir: &RunDir,
    state: &mut RunStateSnapshot,
    lapse: Option<LeaseLapse>,
) -> Result<()> {
    if lapse.is_none() || state.status != RunStatus::Running {
        return Ok(());
    }
    let now = now_iso();
    state.status = RunStatus::Failed;
    state.summary = Some(ROLLED_FORWARD_SUMMARY.to_owned());
    state.finished_at = Some(now.clone());
    state.updated_at = now;
    tracing::warn!(dir = %dir.path().display(), "a worker lease expiry was stored without its state; the run is failed now");
    write_json_atomic(&dir.state(), state)
}
