//! Following a run from its files: a three-way merge of the channel files
//! by sequence number, up to what the run's doorbell says is committed.
//!
//! Every entry up to the committed sequence number is complete in its
//! file before the doorbell rings, so when a channel file has no further
//! complete line, that channel has nothing more up to that number, and the
//! merge can go on with the others. A channel file is read no further than
//! its committed length, so the lines of a commit that is being written,
//! or that failed half-way and is being cut off, are never even read.
//! Between two reads a reader holds its position and no buffer (see
//! `ChannelReader::park`): a slow follower costs the server no more memory
//! than a fast one, and falls behind onto the disk. Reads run on the
//! blocking pool, at most `READ_CONCURRENCY` at once.

use std::sync::Arc;

use tokio::sync::watch;

use super::{
    channel_reader::{ChannelReader, Merged, merge, open_channels},
    concurrency::blocking_read,
    range,
    retention::LocalHold,
    run::{Run, RunSignal},
};
use crate::{
    error::{Result, StoreError},
    model::{ChannelSet, LogEntry, ReadBatch, RunStateSnapshot},
    run_store::{ReadFrom, RunReader},
};

/// A reader of one run's entries: from memory while it keeps up with the
/// run's last commits (see `recent`), from the channel files otherwise.
#[derive(Debug)]
pub struct LocalReader {
    /// The run.
    run: Arc<Run>,
    /// The doorbell.
    signal: watch::Receiver<RunSignal>,
    /// The channels it returns.
    selected: ChannelSet,
    /// Whole commits from memory come shared (see `share_commits`).
    share: bool,
    /// One reader per selected channel; `None` while a read is under way.
    channels: Option<Vec<ChannelReader>>,
    /// The channel readers are behind `next_seq` or gone (entries came
    /// from memory), or hold read-ahead of a cut commit: reopen them at
    /// `next_seq` before the next file read.
    reposition: bool,
    /// The next sequence number to return.
    next_seq: u64,
    /// The last sequence number to return, when the range is bounded (a
    /// history-only reader's is what was committed when it opened).
    until: Option<u64>,
    /// The state version last returned; 0 before the first read.
    state_version: u64,
    /// The epoch the read-ahead buffers belong to.
    epoch: u64,
    /// A damaged commit found right after the entries last returned: the
    /// next read reports it (see `channel_reader`).
    damaged: Option<(u64, u64)>,
    /// Keeps the run from retention while the reader lives.
    _hold: LocalHold,
}

impl LocalReader {
    /// Opens a reader of `run` from `from`, which `hold` keeps from
    /// retention.
    pub(crate) fn open(run: Arc<Run>, hold: LocalHold, from: ReadFrom) -> Result<Self> {
        let signal = run.subscribe();
        let current = *signal.borrow();
        let range = range::resolve(&run, &from, current.committed_seq)?;
        // The channel files are opened by the first read that needs them:
        // a follower that keeps up reads from memory, and holds no
        // descriptor at all (10,000 idle followers would otherwise hold
        // six each).
        Ok(Self {
            run,
            signal,
            selected: from.channels,
            share: false,
            channels: Some(Vec::new()),
            reposition: true,
            next_seq: range.from_seq,
            until: range.to_seq,
            state_version: 0,
            epoch: current.epoch,
            damaged: None,
            _hold: hold,
        })
    }
}

/// What one read is about: where the reader stands against the doorbell.
#[derive(Debug, Clone, Copy)]
struct ReadPlan {
    /// The doorbell as the read found it.
    signal: RunSignal,
    /// The first sequence number to return.
    from: u64,
    /// The last sequence number this read may return.
    limit: u64,
    /// No entry follows once the reader is caught up to `limit`.
    finished: bool,
}

impl ReadPlan {
    /// A batch of `entries` that got to `covered`, or to `limit` when
    /// `caught_up`.
    fn batch(
        &self,
        entries: Vec<LogEntry>,
        next_seq: u64,
        state: Option<RunStateSnapshot>,
        caught_up: bool,
    ) -> ReadBatch {
        ReadBatch {
            entries,
            shared: Vec::new(),
            next_seq,
            committed_seq: self.signal.committed_seq,
            state,
            caught_up,
            finished: caught_up && self.finished,
        }
    }
}

impl RunReader for LocalReader {
    async fn read(&mut self, max_bytes: usize) -> Result<ReadBatch> {
        if let Some(range) = self.damaged.take() {
            return Err(self.data_loss(range));
        }
        let plan = self.plan();
        let state = (plan.signal.state_version != self.state_version).then(|| {
            self.state_version = plan.signal.state_version;
            self.run.state()
        });
        if plan.from > plan.limit {
            return Ok(plan.batch(Vec::new(), plan.from, state, true));
        }
        if let Some(recent) =
            self.run
                .recent_entries(plan.from, plan.limit, self.selected, max_bytes, self.share)
        {
            // The channel readers are behind now; they are reopened at the
            // cursor if the follower ever needs the files again. Until then
            // they hold neither buffers nor descriptors.
            self.reposition = true;
            self.channels = Some(Vec::new());
            self.next_seq = recent.covered + 1;
            let caught_up = recent.covered >= plan.limit;
            let mut batch = plan.batch(recent.entries, self.next_seq, state, caught_up);
            batch.shared = recent.shared;
            return Ok(batch);
        }
        let Merged {
            entries,
            caught_up,
            damaged,
        } = self.read_files(&plan, max_bytes).await?;
        if let Some((first_seq, last_seq)) = damaged {
            // Reading on skips the damaged commit.
            self.next_seq = last_seq + 1;
            self.reposition = true;
            if entries.is_empty() {
                return Err(self.data_loss((first_seq, last_seq)));
            }
            self.damaged = Some((first_seq, last_seq));
            return Ok(plan.batch(entries, first_seq, state, false));
        }
        if caught_up {
            self.next_seq = self.next_seq.max(plan.limit + 1);
        } else if let Some(last) = entries.last() {
            self.next_seq = last.seq() + 1;
        }
        Ok(plan.batch(entries, self.next_seq, state, caught_up))
    }

    fn share_commits(&mut self) {
        self.share = true;
    }

    async fn changed(&mut self) {
        if self.signal.changed().await.is_err() {
            // The run is gone from memory; nothing will ring again.
            std::future::pending::<()>().await;
        }
    }
}

impl LocalReader {
    /// The error for a damaged commit.
    fn data_loss(&self, (first_seq, last_seq): (u64, u64)) -> StoreError {
        StoreError::DataLoss {
            key: self.run.key.clone(),
            first_seq,
            last_seq,
        }
    }

    /// Takes the doorbell's news: where this read starts and ends, and
    /// whether read-ahead must be dropped.
    fn plan(&mut self) -> ReadPlan {
        let signal = *self.signal.borrow_and_update();
        if signal.epoch != self.epoch {
            // A commit was cut off the files: what was read ahead may be gone.
            self.reposition = true;
            self.epoch = signal.epoch;
        }
        let limit = self.until.map_or(signal.committed_seq, |until| {
            until.min(signal.committed_seq)
        });
        ReadPlan {
            signal,
            from: self.next_seq,
            limit,
            // The range ends at `until`: reached, or started past it.
            finished: signal.terminal
                || self
                    .until
                    .is_some_and(|until| limit >= until || self.next_seq > until),
        }
    }

    /// Merges the channel files from `plan.from` to `plan.limit`, on the
    /// blocking pool, reopening them first when they are out of place.
    async fn read_files(&mut self, plan: &ReadPlan, max_bytes: usize) -> Result<Merged> {
        let mut channels = self.channels.take().expect("reads do not overlap");
        let reopen = std::mem::take(&mut self.reposition).then(|| self.run.clone());
        let (selected, from, limit) = (self.selected, plan.from, plan.limit);
        let lens = plan.signal.committed_lens;
        let read = blocking_read(move || {
            if let Some(run) = reopen {
                match open_channels(&run, selected, from) {
                    Ok(reopened) => channels = reopened,
                    Err(err) => return Ok((channels, Err(err), true)),
                }
            }
            for channel in &mut channels {
                channel.readable_len = lens[channel.channel];
            }
            let merged = merge(&mut channels, from, limit, max_bytes);
            // A follower may wait long before it reads again, caught up or
            // not read by its client: it keeps no read buffer meanwhile.
            // Here, not after the await: the result waits for the stream
            // to be polled again, which may be never.
            for channel in &mut channels {
                channel.park();
            }
            Ok((channels, merged, false))
        })
        .await;
        let (channels, merged, failed_reopen) = match read {
            Ok(read) => read,
            Err(err) => {
                // The task died with the readers: reopen them next time.
                self.channels = Some(Vec::new());
                self.reposition = true;
                return Err(err);
            }
        };
        self.reposition |= failed_reopen;
        self.channels = Some(channels);
        merged
    }
}
