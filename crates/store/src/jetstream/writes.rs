//! The writes of a run on JetStream: preparing it, appending, changing
//! its state, a worker lease expiring and its writer coming back, and
//! deleting it. Each one builds the next record from the run's tip under
//! the same rules as the local store (`crate::admit`,
//! `crate::transition`), and publishes it by compare-and-set; when
//! another node's record came first, it reads the new tip and builds
//! again. Items a writer already stored are skipped by their writer
//! sequence numbers each time, so a re-send through any node stores each
//! item once.

use super::{
    Known, Shared,
    chain::{Published, Tip, TipCell},
    record::{Lapse, NewRecord, RecordKind, RunHead, WriterMark},
};
use crate::{
    admit::admit,
    error::{Refused, Result, StoreError},
    ids::check_id,
    lease::{LeaseExpiry, returned_event, settled_event},
    local::{
        encode::encode_entries,
        journal::commit_time,
        prepare::{new_run, run_prepared},
        run::commit_size,
    },
    model::{
        AppendItem, AppendOutcome, AppendPayload, CommitEntry, PreparedRun, RunKey, RunMetadata,
        RunMetadataInput, RunStatePatch, RunStateSnapshot, RunStateSnapshotInput, RunStatus,
        WriterCursor,
    },
    time::now_iso,
    transition::{finished_at, patched, settled_status},
};

/// What a write builds from a tip.
pub(crate) enum Plan<T> {
    /// Nothing to publish: the answer.
    Done(T),
    /// Publish this record; once stored, answer with this.
    Publish(Box<NewRecord>, T),
}

impl Shared {
    /// The tip of an existing run, read when `slot` has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], and those of reading.
    pub(crate) async fn current<'a>(
        &self,
        key: &RunKey,
        slot: &'a mut Option<Tip>,
    ) -> Result<&'a Tip> {
        if slot.is_none() {
            *slot = self.chains.tip(key).await?;
        }
        match slot {
            Some(tip) if tip.exists() => Ok(tip),
            _ => Err(StoreError::RunNotFound(key.clone())),
        }
    }

    /// Builds with `plan` from the run's tip and its metadata, and
    /// publishes, until a record is stored or `plan` has nothing to
    /// publish.
    ///
    /// A refusal counts only when it comes from the stream's current tip:
    /// one that this node had kept is read again first, since another
    /// node may have changed the run (deleted it, prepared it again).
    pub(crate) async fn write<T>(
        &self,
        key: &RunKey,
        cell: &TipCell,
        mut plan: impl FnMut(&Tip, &RunMetadata) -> Result<Plan<T>>,
    ) -> Result<T> {
        let mut slot = cell.lock().await;
        let mut fresh = slot.is_none();
        loop {
            let planned = match self.current(key, &mut slot).await {
                // The metadata of the run the tip is of: another node may
                // have deleted it and prepared it again since.
                Ok(tip) => match self.metadata_at(key, tip).await {
                    Ok(metadata) => plan(tip, &metadata),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            let (record, answer) = match planned {
                Err(_) if !fresh => {
                    *slot = None;
                    fresh = true;
                    continue;
                }
                Err(err) => return Err(err),
                Ok(Plan::Done(_)) if !fresh => {
                    // Nothing to do, by a kept tip: by the current one?
                    *slot = None;
                    fresh = true;
                    continue;
                }
                Ok(Plan::Done(answer)) => return Ok(answer),
                Ok(Plan::Publish(record, answer)) => (*record, answer),
            };
            if self.store_record(key, &mut slot, record).await? {
                return Ok(answer);
            }
            // Lost to another record: the tip is read again.
            fresh = true;
        }
    }

    /// Publishes `record` after the tip in `slot`, and makes it the tip;
    /// false when another record came first (the slot is then emptied, to
    /// be read again).
    pub(crate) async fn store_record(
        &self,
        key: &RunKey,
        slot: &mut Option<Tip>,
        record: NewRecord,
    ) -> Result<bool> {
        let expected = slot.as_ref().map_or(0, |tip| tip.stream_seq);
        match self.chains.publish(key, expected, &record).await {
            Ok(Published::Stored(stream_seq)) => {
                *slot = Some(Tip {
                    stream_seq,
                    head: record.head,
                });
                Ok(true)
            }
            Ok(Published::Conflict) => {
                *slot = None;
                Ok(false)
            }
            Err(err) => {
                // Whether it was stored is unknown: read the tip again.
                *slot = None;
                Err(err)
            }
        }
    }

    /// Creates a run, or returns it when it exists with the same metadata.
    pub(crate) async fn prepare_run(
        &self,
        input: RunMetadataInput,
        state: RunStateSnapshotInput,
    ) -> Result<PreparedRun> {
        check_id("metadata.task_id", &input.task_id)?;
        check_id("metadata.run_id", &input.run_id)?;
        check_id("metadata.step_id", &input.step_id)?;
        let (metadata, initial) = new_run(input, state)?;
        let key = metadata.key();
        let cell = self.cell(&key);
        let mut slot = cell.lock().await;
        // Read again: another node may have deleted or prepared the run.
        *slot = None;
        loop {
            if slot.is_none() {
                *slot = self.chains.tip(&key).await?;
            }
            if let Some(tip) = slot.as_ref().filter(|tip| tip.exists()) {
                let existing = self.chains.metadata(&key, tip).await?;
                if existing != metadata {
                    return Err(StoreError::MetadataMismatch(key));
                }
                // The index may have missed the run, if the node that
                // prepared it died before writing it.
                self.index
                    .put(&key, &existing, &tip.head.run, tip.stream_seq)
                    .await;
                let run = self.view(&key, existing, &tip.head.run);
                return Ok(PreparedRun {
                    run,
                    created: false,
                    entries: Vec::new(),
                });
            }
            if let Some(deleted) = slot.as_ref().filter(|tip| !tip.exists()) {
                // A run of these ids was deleted: what a pass that stopped
                // part way left of it goes first, while its records still
                // name its objects.
                self.finish_deletion(&key, deleted).await?;
            }
            let (record, entries) = prepared_record(&key, &metadata, &initial);
            if self.store_record(&key, &mut slot, record).await? {
                let tip = slot.as_ref().expect("stored");
                self.index
                    .put(&key, &metadata, &tip.head.run, tip.stream_seq)
                    .await;
                return Ok(PreparedRun {
                    run: self.view(&key, metadata, &tip.head.run),
                    created: true,
                    entries,
                });
            }
        }
    }

    /// Appends a writer's items (see [`crate::RunStore::append`]).
    pub(crate) async fn append(
        &self,
        key: &RunKey,
        writer_id: &str,
        items: Vec<AppendItem>,
    ) -> Result<AppendOutcome> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        check_id("writer_id", writer_id)?;
        let cell = self.cell(key);
        let mut slot = cell.lock().await;
        let mut pending = items;
        let mut stored = 0u64;
        // As in `write`: a refusal by a tip this node kept is checked
        // against the stream's current one first.
        let mut fresh = slot.is_none();
        loop {
            let checked = match self.current(key, &mut slot).await {
                Ok(tip) => admits(&tip.head.run, key, writer_id),
                Err(err) => Err(err),
            };
            let late = match checked {
                Err(_) if !fresh => {
                    *slot = None;
                    fresh = true;
                    continue;
                }
                checked => checked?,
            };
            let tip = slot.as_ref().expect("the tip was read above");
            let metadata = match self.metadata_at(key, tip).await {
                Ok(metadata) => metadata,
                Err(_) if !fresh => {
                    *slot = None;
                    fresh = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let head = &tip.head.run;
            let next_writer_seq = head.writer_seq(writer_id) + 1;
            let admitted = admit(
                key,
                &self.limits,
                writer_id,
                next_writer_seq,
                pending.clone(),
            );
            if admitted.payloads.is_empty() {
                if !fresh {
                    // Nothing to publish, decided on a kept tip: items
                    // judged stored already must be so in the run as it
                    // is now (prepared again elsewhere, it holds none).
                    *slot = None;
                    fresh = true;
                    continue;
                }
                let outcome = AppendOutcome {
                    stored,
                    duplicates: admitted.duplicates,
                    last_writer_seq: head.writer_seq(writer_id),
                    summary: head.summary(),
                };
                return match admitted.refused {
                    Some(err) => Err(err),
                    None => Ok(outcome),
                };
            }
            fresh = true;
            if late && !head.lease_lapse.is_some_and(|lapse| lapse.returned) {
                let record = lapse_record(&metadata, tip, LapseStep::Returned(writer_id));
                self.store_record(key, &mut slot, record).await?;
                continue;
            }
            let mut payloads = admitted.payloads;
            let take = commit_size(&payloads).min(self.max_commit_entries(&payloads));
            payloads.truncate(take);
            let last_writer_seq = next_writer_seq + take as u64 - 1;
            let record = entries_record(
                &metadata,
                tip,
                Some(WriterMark {
                    id: writer_id.to_owned(),
                    last_writer_seq,
                }),
                payloads,
            );
            if self.store_record(key, &mut slot, record).await? {
                // What this call stored is no duplicate when it reads the
                // items again for the next commit.
                stored += take as u64;
                pending
                    .retain(|item| !(next_writer_seq..=last_writer_seq).contains(&item.writer_seq));
            }
        }
    }

    /// What the run holds from one writer, read from its last record.
    pub(crate) async fn writer_cursor(
        &self,
        key: &RunKey,
        writer_id: &str,
    ) -> Result<WriterCursor> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        check_id("writer_id", writer_id)?;
        let cell = self.cell(key);
        let mut slot = cell.lock().await;
        // Always read again: another node may have stored more.
        *slot = None;
        let tip = self.current(key, &mut slot).await?;
        Ok(WriterCursor {
            last_writer_seq: tip.head.run.writer_seq(writer_id),
            last_seq: tip.head.run.next_seq - 1,
        })
    }

    /// Applies a state patch, from `writer_id` when one is named.
    pub(crate) async fn update_state(
        &self,
        key: &RunKey,
        writer_id: Option<&str>,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        let cell = self.cell(key);
        let state = self
            .write(key, &cell, |tip, metadata| {
                let head = &tip.head.run;
                importing(head, key)?;
                if let Some(writer_id) = writer_id.filter(|id| head.late_writer(id)) {
                    let record = settle(key, metadata, tip, writer_id, patch.clone())?;
                    let state = record.head.run.state.clone();
                    return Ok(Plan::Publish(Box::new(record), state));
                }
                let mut next = patched(
                    key,
                    &head.state,
                    head.lease_lapsed(),
                    writer_id,
                    patch.clone(),
                    |checkpoint_seq| check_checkpoint(key, head, checkpoint_seq),
                )?;
                next.last_event_seq = head.next_seq - 1;
                let record = state_record(tip, next.clone());
                Ok(Plan::Publish(Box::new(record), next))
            })
            .await?;
        self.reindex(key, &cell).await;
        if state.status.is_terminal() {
            // A finished run takes few writes: what this node keeps of it
            // goes, and is read again if needed.
            self.forget(key);
        }
        Ok(state)
    }

    /// Fails a running run whose worker lease expired: one record with the
    /// lifecycle entry and the new state, so that it happens whole, once.
    pub(crate) async fn expire_lease(
        &self,
        key: &RunKey,
        expiry: LeaseExpiry,
    ) -> Result<Option<RunStateSnapshot>> {
        let cell = self.cell(key);
        // Decided on the run as it is now, not as this node last saw it.
        *cell.lock().await = None;
        let state = self
            .write(key, &cell, |tip, metadata| {
                if tip.head.run.state.status != RunStatus::Running || tip.head.run.importing {
                    return Ok(Plan::Done(None));
                }
                let record = lapse_record(metadata, tip, LapseStep::Expired(&expiry));
                let state = record.head.run.state.clone();
                Ok(Plan::Publish(Box::new(record), Some(state)))
            })
            .await?;
        if state.is_some() {
            self.reindex(key, &cell).await;
        }
        Ok(state)
    }

    /// Marks a run deleted, if it is terminal and nothing changed it since
    /// `expected` (the tip retention decided on): a `Deleted` record.
    /// Returns the record's stream sequence; `None` when the run moved on
    /// meanwhile.
    pub(crate) async fn mark_deleted(&self, key: &RunKey, expected: &Tip) -> Result<Option<u64>> {
        let cell = self.cell(key);
        let mut slot = cell.lock().await;
        *slot = Some(expected.clone());
        let head = &expected.head;
        let mut run = next_run(expected);
        run.writers.clear();
        let record = NewRecord::new(
            RecordKind::Deleted,
            run.next_seq,
            commit_time(head.time),
            None,
            run,
        );
        match self.store_record(key, &mut slot, record).await? {
            true => Ok(slot.as_ref().map(|tip| tip.stream_seq)),
            false => Ok(None),
        }
    }

    /// Writes the index entry of the run from its tip, read again.
    pub(crate) async fn reindex(&self, key: &RunKey, cell: &TipCell) {
        let tip = cell.lock().await.clone();
        if let Some(tip) = tip.filter(Tip::exists)
            && let Ok(metadata) = self.chains.metadata(key, &tip).await
        {
            self.index
                .put(key, &metadata, &tip.head.run, tip.stream_seq)
                .await;
        }
    }

    /// The metadata of the run whose tip is `tip`.
    pub(crate) async fn metadata_at(&self, key: &RunKey, tip: &Tip) -> Result<RunMetadata> {
        match self.known_metadata(key) {
            Some(known) if known.origin == tip.origin() => Ok(known.metadata),
            _ => Ok(self.read_metadata(key, tip).await?.metadata),
        }
    }

    /// Reads the metadata of the run whose tip is `tip`, and remembers it.
    async fn read_metadata(&self, key: &RunKey, tip: &Tip) -> Result<Known> {
        let known = Known {
            origin: tip.origin(),
            metadata: self.chains.metadata(key, tip).await?,
        };
        self.remember_metadata(key, &known);
        Ok(known)
    }

    /// The most entries of `payloads` one message may carry, within the
    /// engine's largest message.
    fn max_commit_entries(&self, payloads: &[AppendPayload]) -> usize {
        let mut bytes = 4096usize;
        for (index, payload) in payloads.iter().enumerate() {
            bytes += 512
                + match payload {
                    AppendPayload::Event(event) => event.message.len() * 3 + 256 * event.data.len(),
                    AppendPayload::Chunk(_, chunk) => chunk.text.len() * 2,
                };
            if bytes > self.max_payload && index > 0 {
                return index;
            }
        }
        payloads.len()
    }
}

/// Checks that the run takes entries from `writer_id`; true when they are
/// delivered late, after the run's worker lease expired.
fn admits(head: &RunHead, key: &RunKey, writer_id: &str) -> Result<bool> {
    importing(head, key)?;
    if head.late_writer(writer_id) {
        return Ok(true);
    }
    if head.lease_lapsed() {
        return Err(StoreError::LeaseLapsed {
            key: key.clone(),
            writer_id: Some(writer_id.to_owned()),
            refused: Refused::Entries,
        });
    }
    if head.state.status.is_terminal() {
        return Err(StoreError::Terminal {
            key: key.clone(),
            status: head.state.status,
            refused: Refused::Entries,
        });
    }
    Ok(false)
}

/// Refuses writes to a run whose import is not finished.
pub(crate) fn importing(head: &RunHead, key: &RunKey) -> Result<()> {
    match head.importing {
        true => Err(StoreError::Unavailable {
            context: format!("run `{key}` is being imported"),
            cause: "it takes writes once `baa-logd import` has copied it whole; run the import \
                    again if it stopped"
                .to_owned(),
        }),
        false => Ok(()),
    }
}

/// A checkpoint patch may only move forward, to a reserved slot.
fn check_checkpoint(key: &RunKey, head: &RunHead, checkpoint_seq: u64) -> Result<()> {
    let current = head.state.checkpoint_seq;
    if checkpoint_seq == current {
        return Ok(());
    }
    if checkpoint_seq < current {
        return Err(StoreError::CheckpointMovedBack {
            key: key.clone(),
            checkpoint_seq,
            current,
        });
    }
    check_reserved(key, head, checkpoint_seq)
}

/// Refuses a checkpoint slot the run never reserved.
pub(crate) fn check_reserved(key: &RunKey, head: &RunHead, checkpoint_seq: u64) -> Result<()> {
    match head.reserved_slots.contains(&checkpoint_seq) {
        true => Ok(()),
        false => Err(StoreError::SlotNotReserved {
            key: key.clone(),
            checkpoint_seq,
        }),
    }
}

/// The first record of a run, and its `run_prepared` entry.
fn prepared_record(
    key: &RunKey,
    metadata: &RunMetadata,
    initial: &RunStateSnapshot,
) -> (NewRecord, Vec<crate::model::WorkerLifecycleLogEntry>) {
    let mut encoded = encode_entries(metadata, 1, vec![run_prepared(key, metadata)], &now_iso());
    let entries = std::mem::take(&mut encoded.entries)
        .into_iter()
        .filter_map(|entry| match entry {
            CommitEntry::Lifecycle(entry) => Some(*entry),
            CommitEntry::Chunk(..) => None,
        })
        .collect();
    let run = RunHead {
        state: initial.clone(),
        next_seq: 2,
        counts: encoded.counts,
        writers: Default::default(),
        lease_lapse: None,
        reserved_slots: Default::default(),
        origin: 0,
        bytes: encoded.bytes.values().map(|bytes| bytes.len() as u64).sum(),
        importing: false,
        objects: Default::default(),
    };
    let mut record = NewRecord::new(RecordKind::Prepared, 1, commit_time(0), Some(encoded), run);
    record.head.metadata = Some(metadata.clone());
    (record, entries)
}

/// The run after `tip`, for the record that follows it: its origin is
/// the `Prepared` record's stream sequence, and its last object record
/// is `tip` when `tip` committed one.
pub(crate) fn next_run(tip: &Tip) -> RunHead {
    let mut run = tip.head.run.clone();
    if tip.head.kind == RecordKind::Prepared {
        run.origin = tip.stream_seq;
    }
    if tip.head.object.is_some() {
        run.objects.last = tip.stream_seq;
    }
    run
}

/// A record of entries after `head`, from `writer` when one is named.
pub(crate) fn entries_record(
    metadata: &RunMetadata,
    tip: &Tip,
    writer: Option<WriterMark>,
    payloads: Vec<AppendPayload>,
) -> NewRecord {
    let head = &tip.head;
    let first_seq = head.run.next_seq;
    let encoded = encode_entries(metadata, first_seq, payloads, &now_iso());
    let mut run = next_run(tip);
    let len = encoded.counts.total();
    run.counts.add(&encoded.counts);
    run.bytes += encoded
        .bytes
        .values()
        .map(|bytes| bytes.len() as u64)
        .sum::<u64>();
    run.next_seq = first_seq + len;
    run.state.last_event_seq = run.next_seq - 1;
    if let Some(writer) = &writer {
        run.writers
            .insert(writer.id.clone(), writer.last_writer_seq);
        if let Some(lapse) = &mut run.lease_lapse {
            lapse.late_entries += len;
        }
    }
    let mut record = NewRecord::new(
        RecordKind::Commit,
        first_seq,
        commit_time(head.time),
        Some(encoded),
        run,
    );
    record.head.writer = writer;
    record
}

/// A record that only changes the state.
pub(crate) fn state_record(tip: &Tip, state: RunStateSnapshot) -> NewRecord {
    let mut run = next_run(tip);
    // Slots at or before the checkpoint are closed: the head keeps only
    // those that may still take objects.
    run.reserved_slots
        .retain(|slot| *slot > state.checkpoint_seq);
    run.state = state;
    NewRecord::new(
        RecordKind::Commit,
        run.next_seq,
        commit_time(tip.head.time),
        None,
        run,
    )
}

/// A step of a worker lease's story.
enum LapseStep<'a> {
    /// The lease expired: the entry and the failed state.
    Expired(&'a LeaseExpiry),
    /// A writer came back and delivers late.
    Returned(&'a str),
}

/// The record of a lease step after `head`.
fn lapse_record(metadata: &RunMetadata, tip: &Tip, step: LapseStep<'_>) -> NewRecord {
    let head = &tip.head;
    match step {
        LapseStep::Expired(expiry) => {
            let already = head.run.lease_lapse.is_some();
            let events = match already {
                true => Vec::new(),
                false => vec![AppendPayload::Event(expiry.event())],
            };
            let mut record = entries_record(metadata, tip, None, events);
            let now = now_iso();
            let run = &mut record.head.run;
            run.lease_lapse = Some(Lapse::default());
            run.state = RunStateSnapshot {
                status: RunStatus::Failed,
                summary: Some(expiry.summary()),
                finished_at: Some(now.clone()),
                updated_at: now,
                last_event_seq: run.next_seq - 1,
                ..run.state.clone()
            };
            record
        }
        LapseStep::Returned(writer_id) => {
            let event = returned_event(writer_id, head.run.next_seq + 1);
            let mut record = entries_record(metadata, tip, None, vec![AppendPayload::Event(event)]);
            if let Some(lapse) = &mut record.head.run.lease_lapse {
                lapse.returned = true;
            }
            record
        }
    }
}

/// The record of a returning writer's final status: its entry, and the
/// state that replaces the lease failure.
fn settle(
    key: &RunKey,
    metadata: &RunMetadata,
    tip: &Tip,
    writer_id: &str,
    patch: RunStatePatch,
) -> Result<NewRecord> {
    let head = &tip.head;
    let status = settled_status(key, writer_id, &patch)?;
    if let Some(checkpoint_seq) = patch.checkpoint_seq {
        check_checkpoint(key, &head.run, checkpoint_seq)?;
    }
    let now = now_iso();
    let finished_at = finished_at(&patch, &now)?;
    let late_entries = head.run.lease_lapse.map_or(0, |lapse| lapse.late_entries);
    let event = settled_event(writer_id, status, late_entries, patch.exit_code);
    let mut record = entries_record(metadata, tip, None, vec![AppendPayload::Event(event)]);
    let run = &mut record.head.run;
    run.lease_lapse = None;
    run.state = RunStateSnapshot {
        status,
        summary: patch.summary,
        exit_code: patch.exit_code,
        checkpoint_seq: patch.checkpoint_seq.unwrap_or(run.state.checkpoint_seq),
        finished_at: Some(finished_at),
        updated_at: now,
        last_event_seq: run.next_seq - 1,
        ..run.state.clone()
    };
    Ok(record)
}
