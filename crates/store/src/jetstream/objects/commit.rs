//! The records of a run's chain that concern objects: an object
//! committed, a checkpoint slot reserved, a slot made the checkpoint. Each
//! is built from the run's tip and published by compare-and-set, like the
//! run's other writes, so a run that ended or a slot that closed on
//! another node refuses it.

use super::{catalog::last_object_record, objects_allowed, open_slot};
use crate::{
    error::{Refused, Result, StoreError},
    jetstream::{
        Shared,
        chain::Tip,
        record::{NewRecord, ObjectMark, RecordKind},
        writes::{Plan, entries_record, importing, next_run, state_record},
    },
    local::journal::commit_time,
    model::{AppendPayload, RunKey, RunStatePatch, RunStateSnapshot},
    objects::{ObjectKind, ObjectRef, slot_reserved_event},
    transition::patched,
};

/// What committing an object came to.
#[derive(Debug)]
pub(crate) enum Placed {
    /// Its record is in.
    New,
    /// The run has an object of that name with the same bytes already.
    Already(ObjectMark),
}

impl Shared {
    /// Publishes the record that commits `object` as `mark` describes it:
    /// once it is in, the object exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::ObjectExists`] when the name holds other bytes; the
    /// refusals of a terminal run or a closed slot;
    /// [`StoreError::ObjectTooLarge`] past the run's bytes.
    pub(crate) async fn commit_object(
        &self,
        object: &ObjectRef,
        mark: &ObjectMark,
    ) -> Result<Placed> {
        let key = &object.key;
        let cell = self.cell(key);
        let mut slot = cell.lock().await;
        // Decided on the run as it is now, not as this node last saw it.
        *slot = None;
        loop {
            let tip = self.current(key, &mut slot).await?.clone();
            if let Some(existing) = self.find_mark(&tip, object).await? {
                if existing.sha256 == mark.sha256 && existing.size == mark.size {
                    return Ok(Placed::Already(existing));
                }
                return Err(StoreError::ObjectExists(object.to_string()));
            }
            objects_allowed(&tip, object)?;
            let limits = self.objects.limits;
            let bytes = tip.head.run.objects.bytes + mark.size;
            if bytes > limits.max_run_objects_bytes {
                return Err(StoreError::ObjectTooLarge {
                    what: format!("the objects of run `{key}`"),
                    size: bytes,
                    limit: "max_run_objects_bytes",
                    max: limits.max_run_objects_bytes,
                });
            }
            let mut run = next_run(&tip);
            run.objects.count += 1;
            run.objects.bytes = bytes;
            let mut record = NewRecord::new(
                RecordKind::Commit,
                run.next_seq,
                commit_time(tip.head.time),
                None,
                run,
            );
            record.head.object = Some(mark.clone());
            if self.store_record(key, &mut slot, record).await? {
                drop(slot);
                self.reindex(key, &cell).await;
                return Ok(Placed::New);
            }
        }
    }

    /// Reserves the run's next checkpoint slot: a record with its
    /// `checkpoint_slot_reserved` entry. Returns the slot and the entry's
    /// `seq`.
    pub(crate) async fn reserve_checkpoint(&self, key: &RunKey) -> Result<(u64, u64)> {
        let cell = self.cell(key);
        *cell.lock().await = None;
        self.write(key, &cell, |tip, metadata| {
            let head = &tip.head.run;
            refuse_terminal(key, tip)?;
            importing(head, key)?;
            let highest = head
                .state
                .checkpoint_seq
                .max(head.reserved_slots.last().copied().unwrap_or(0));
            let slot = highest
                .checked_add(1)
                .ok_or_else(|| StoreError::SlotsExhausted {
                    key: key.clone(),
                    highest,
                })?;
            let event = slot_reserved_event(slot);
            let mut record = entries_record(metadata, tip, None, vec![AppendPayload::Event(event)]);
            record.head.run.reserved_slots.insert(slot);
            let seq = record.head.first_seq;
            Ok(Plan::Publish(Box::new(record), (slot, seq)))
        })
        .await
    }

    /// Makes the reserved slot `checkpoint_seq` the run's checkpoint; the
    /// slot that is the checkpoint already is success again.
    pub(crate) async fn commit_checkpoint(
        &self,
        key: &RunKey,
        checkpoint_seq: u64,
    ) -> Result<RunStateSnapshot> {
        let cell = self.cell(key);
        *cell.lock().await = None;
        let state = self
            .write(key, &cell, |tip, _| {
                let head = &tip.head.run;
                if checkpoint_seq > 0 && checkpoint_seq == head.state.checkpoint_seq {
                    return Ok(Plan::Done(head.state.clone()));
                }
                refuse_terminal(key, tip)?;
                importing(head, key)?;
                open_slot(key, tip, checkpoint_seq)?;
                let patch = RunStatePatch {
                    checkpoint_seq: Some(checkpoint_seq),
                    ..RunStatePatch::default()
                };
                let mut next = patched(key, &head.state, head.lease_lapsed(), None, patch, |_| {
                    Ok(())
                })?;
                next.last_event_seq = head.next_seq - 1;
                let record = state_record(tip, next.clone());
                Ok(Plan::Publish(Box::new(record), next))
            })
            .await?;
        self.reindex(key, &cell).await;
        Ok(state)
    }
}

/// Refuses objects and slots for a terminal run.
fn refuse_terminal(key: &RunKey, tip: &Tip) -> Result<()> {
    let status = tip.head.run.state.status;
    match status.is_terminal() {
        true => Err(StoreError::Terminal {
            key: key.clone(),
            status,
            refused: Refused::Objects,
        }),
        false => Ok(()),
    }
}

impl Shared {
    /// Removes the objects and staged uploads of a run that retention
    /// deletes, whose tip (its `Deleted` record, or the one before) is
    /// `tip`: their chunks and meta messages, while the records that
    /// name them are still there to be read. Records purged already mean
    /// their objects went before them.
    pub(crate) async fn drop_objects(&self, key: &RunKey, tip: &Tip) -> Result<()> {
        if last_object_record(tip) != 0 {
            let marks = match self.objects_at(key, tip).await {
                Ok(marks) => marks,
                Err(StoreError::RunNotFound(_)) => Vec::new(),
                Err(err) => return Err(err),
            };
            for mark in marks {
                let object = ObjectRef {
                    key: key.clone(),
                    kind: mark.kind,
                    name: mark.name.clone(),
                    checkpoint_seq: match mark.kind {
                        ObjectKind::Artifact => 0,
                        ObjectKind::Checkpoint => mark.checkpoint_seq,
                    },
                };
                self.objects.purge_meta(&object, &mark.nuid).await?;
                self.objects.purge_chunks(&mark.nuid).await?;
            }
        }
        self.objects.drop_stagings(key, tip.origin()).await?;
        self.forget_objects(key);
        Ok(())
    }
}
