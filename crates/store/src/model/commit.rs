//! One commit's entries as followers share them: kept compact (the
//! writer's strings, moved, not copied), with the run's ids once, and a
//! slot where a reader's own form of the whole commit (the server's
//! encoded Protobuf) is made once for every follower.

use std::{
    any::Any,
    fmt,
    sync::{Arc, OnceLock},
};

use super::{
    ChannelSet, LocalRunLogContext, LogEntry, PerChannel, StreamChunkLogEntry, StreamLogChannel,
    WorkerLifecycleLogEntry, WorkerLogChannel,
};

/// One entry of a commit, in the form it came in.
#[derive(Debug)]
pub(crate) enum CommitEntry {
    /// A chunk: its channel, its time when the writer set one, its text.
    Chunk(StreamLogChannel, Option<String>, String),
    /// A lifecycle event, as stored.
    Lifecycle(Box<WorkerLifecycleLogEntry>),
}

/// A commit's entries, in sequence order and without gaps, shared by the
/// followers that read them from memory.
pub struct CommitEntries {
    /// The run's ids, which every entry carries.
    pub(crate) ids: Arc<LocalRunLogContext>,
    /// The sequence number of the first entry.
    pub(crate) first_seq: u64,
    /// The time of every chunk whose writer set none.
    pub(crate) now: String,
    /// The entries.
    pub(crate) entries: Vec<CommitEntry>,
    /// Entries per channel.
    pub(crate) counts: PerChannel<u64>,
    /// A reader's own form of the whole commit, made once.
    pub(crate) cache: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for CommitEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitEntries")
            .field("first_seq", &self.first_seq)
            .field("len", &self.entries.len())
            .field("cached", &self.cache.get().is_some())
            .finish_non_exhaustive()
    }
}

impl PartialEq for CommitEntries {
    fn eq(&self, other: &Self) -> bool {
        self.first_seq == other.first_seq && self.to_entries() == other.to_entries()
    }
}

impl CommitEntries {
    /// The sequence number of the first entry.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The sequence number of the last entry.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64 - 1
    }

    /// How many entries the commit holds (never none).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the commit holds no entry (never true).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every entry is of a channel of `channels`.
    pub fn within(&self, channels: ChannelSet) -> bool {
        WorkerLogChannel::ALL
            .into_iter()
            .all(|channel| self.counts[channel] == 0 || channels.contains(channel))
    }

    /// The entry at `index`, as readers return it.
    pub(crate) fn entry(&self, index: usize) -> LogEntry {
        match &self.entries[index] {
            CommitEntry::Chunk(channel, created_at, text) => LogEntry::Chunk(StreamChunkLogEntry {
                task_id: self.ids.task_id.clone(),
                step_id: self.ids.step_id.clone(),
                run_id: self.ids.run_id.clone(),
                seq: self.first_seq + index as u64,
                channel: *channel,
                created_at: created_at.as_ref().unwrap_or(&self.now).clone(),
                text: text.clone(),
            }),
            CommitEntry::Lifecycle(event) => LogEntry::Lifecycle((**event).clone()),
        }
    }

    /// The channel of the entry at `index`.
    pub(crate) fn channel(&self, index: usize) -> WorkerLogChannel {
        match &self.entries[index] {
            CommitEntry::Chunk(channel, ..) => (*channel).into(),
            CommitEntry::Lifecycle(_) => WorkerLogChannel::Worker,
        }
    }

    /// About how many bytes the entry at `index` holds.
    pub(crate) fn entry_bytes(&self, index: usize) -> usize {
        192 + match &self.entries[index] {
            CommitEntry::Chunk(_, _, text) => text.len(),
            CommitEntry::Lifecycle(event) => event.message.len() * 2 + 64 * event.data.len(),
        }
    }

    /// Every entry, as readers return them.
    pub fn to_entries(&self) -> Vec<LogEntry> {
        (0..self.entries.len())
            .map(|index| self.entry(index))
            .collect()
    }

    /// The reader's own form of the whole commit, made by `make` by the
    /// first reader that asks and shared by the others. `None` when
    /// another form of another type took the slot first.
    pub fn cached<T: Any + Send + Sync>(&self, make: impl FnOnce(&Self) -> T) -> Option<&T> {
        self.cache
            .get_or_init(|| Box::new(make(self)))
            .downcast_ref::<T>()
    }
}
