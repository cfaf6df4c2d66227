//! Masking on ingest, for writers that do not mask themselves (clients in
//! other languages): the values they register on their append streams and
//! the server-wide rules are replaced by [`MASK`](baa_logging_mask::MASK) before the store writes
//! anything.
//!
//! # State
//!
//! [`RunMaskers`] holds one [`Masker`] of registered values per run,
//! shared by every stream of the run, so that a value registered by one
//! writer is masked in what the others write, and one of the server-wide
//! rules for all runs. It lives in memory only: nothing of it is logged, stored
//! or exported. A run's masker is dropped when the run reaches a terminal
//! status, or [`IDLE_KEEP`] after its last stream closed (swept whenever a
//! stream opens), so the map holds at most the runs with a stream open and
//! those that had one lately.
//!
//! # Across chunk boundaries
//!
//! Each stream has an [`Ingest`]: a [`StreamMasker`] per channel and the
//! masked items waiting to be stored, in the writer's order. The stream
//! maskers hold back for registered values only; the rules are applied to
//! each released text whole, so a token split across two chunks is not
//! caught by a rule. Holding back for rules would hold the last word of
//! every chunk that does not end a line, of every run (the rules are on
//! by default), and move it into the next entry: all interactive output
//! would wait for the hold-back time and lose its chunk boundaries, for
//! the sake of tokens that are nearly always printed whole. A writer that
//! registers nothing sees its entries stored as sent, at once.
//!
//! A chunk whose end could still be the start of a registered value is
//! split: what is safe goes
//! into its own entry, the tail is held and moves to the front of the next
//! chunk of that channel, whose entry then holds the whole secret (and its
//! [`MASK`](baa_logging_mask::MASK)). So the entry count and `seq` order stay the writer's, and the
//! concatenated text of a channel is exactly what whole-text masking of
//! everything sent gives; only the cut between two entries moves.
//!
//! While a chunk holds a tail, it and every later item of the stream wait:
//! not stored, not in the writer cursor. The next chunk of the channel,
//! [`Masking::hold_back`](crate::settings::Masking::hold_back) without one,
//! or the end of the stream (closed, failed, idle, shut down) decides: on
//! the two latter the tail is stored in its own entry, masked as far as it
//! matches on its own. An entry whose whole text was a held tail that moved
//! on is stored with empty text.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use baa_logging_mask::{Masker, Rules, SecretError, StreamMasker};
use baa_logging_store::model::{
    AppendItem, AppendPayload, RunKey, RunMetadataInput, StreamLogChannel,
};
use tokio::time::Instant;
use tonic::Status;

use crate::{
    metrics::Metrics,
    sync::{lock, read, write},
};

/// How long a run's registered values are kept after its last stream
/// closed: long enough for a writer to reconnect after a network break
/// without a gap in masking (it still registers its values again).
pub(crate) const IDLE_KEEP: Duration = Duration::from_secs(15 * 60);

// === impl RunMaskers ===

/// The maskers of the runs, shared by the service's handlers.
#[derive(Debug)]
pub(crate) struct RunMaskers {
    /// The server-wide rules, applied to every text after the run's
    /// values, whole (see the module docs for why not across chunks).
    rules: Masker,
    /// How long a chunk holding a tail waits for the next one.
    hold_back: Duration,
    /// Where masked occurrences are counted.
    metrics: Option<Metrics>,
    /// The runs' maskers; a std lock, never held across an await.
    runs: Mutex<HashMap<RunKey, Shared>>,
}

/// One run's masker and who uses it.
#[derive(Debug)]
struct Shared {
    /// The run's values (no rules).
    masker: Arc<RwLock<Masker>>,
    /// Streams of the run open now.
    streams: usize,
    /// When the last stream closed; `None` while one is open.
    idle_since: Option<Instant>,
}

impl RunMaskers {
    /// No runs yet; every run masks with `rules`, and a held tail waits up
    /// to `hold_back`.
    pub(crate) fn new(rules: Rules, hold_back: Duration, metrics: Option<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            rules: Masker::new(rules),
            hold_back,
            metrics,
            runs: Mutex::new(HashMap::new()),
        })
    }

    /// The run's masker for a new stream, made if the run has none; the
    /// guard keeps it while the stream is open. Sweeps idle runs first.
    pub(crate) fn open(self: &Arc<Self>, key: &RunKey) -> RunMasking {
        let now = Instant::now();
        let mut runs = lock(&self.runs);
        runs.retain(|_, shared| {
            shared
                .idle_since
                .is_none_or(|since| now.duration_since(since) < IDLE_KEEP)
        });
        let shared = runs.entry(key.clone()).or_insert_with(|| Shared {
            masker: Arc::new(RwLock::new(Masker::new(Rules::none()))),
            streams: 0,
            idle_since: None,
        });
        shared.streams += 1;
        shared.idle_since = None;
        RunMasking {
            masker: shared.masker.clone(),
            key: key.clone(),
            maskers: self.clone(),
        }
    }

    /// Drops the run's masker, as its run reached a terminal status; open
    /// streams keep theirs until they close.
    pub(crate) fn forget(&self, key: &RunKey) {
        lock(&self.runs).remove(key);
    }

    /// `text` masked with the run's values (if it has a masker) and the
    /// rules, counting what was masked.
    pub(crate) fn mask_for_run(&self, key: &RunKey, text: &mut String) {
        let masker = lock(&self.runs)
            .get(key)
            .map(|shared| shared.masker.clone());
        let mut found = match masker {
            Some(masker) => mask_in_place(&read(&masker), text),
            None => 0,
        };
        found += mask_in_place(&self.rules, text);
        self.count(found);
    }

    /// The fields of a new run's metadata a reader sees, masked with the
    /// rules (no values can be registered before the run exists).
    pub(crate) fn mask_metadata(&self, metadata: &mut RunMetadataInput) {
        let masker = &self.rules;
        let mut found = mask_in_place(masker, &mut metadata.step_name);
        for text in [&mut metadata.command, &mut metadata.prompt_summary]
            .into_iter()
            .flatten()
        {
            found += mask_in_place(masker, text);
        }
        self.count(found);
    }

    /// `text` masked with the rules only, counting what was masked.
    pub(crate) fn mask_with_rules(&self, text: &mut String) {
        let found = mask_in_place(&self.rules, text);
        self.count(found);
    }

    /// Counts masked occurrences in the metrics.
    fn count(&self, found: usize) {
        if let Some(metrics) = &self.metrics {
            if found > 0 {
                metrics.record_masked(found as u64);
            }
        }
    }

    /// A stream of the run closed.
    fn close(&self, key: &RunKey, masker: &Arc<RwLock<Masker>>) {
        let mut runs = lock(&self.runs);
        // The run may have been forgotten and opened again since: only the
        // entry this stream opened counts it.
        if let Some(shared) = runs
            .get_mut(key)
            .filter(|shared| Arc::ptr_eq(&shared.masker, masker))
        {
            shared.streams = shared.streams.saturating_sub(1);
            if shared.streams == 0 {
                shared.idle_since = Some(Instant::now());
            }
        }
    }
}

/// Replaces `text` by its masked form; returns how many masks went in.
fn mask_in_place(masker: &Masker, text: &mut String) -> usize {
    let (masked, found) = masker.mask(text);
    if found > 0 {
        *text = masked.into_owned();
    }
    found
}

// === impl RunMasking ===

/// A stream's hold on its run's masker; closing the stream (dropping this)
/// starts the run's idle time.
#[derive(Debug)]
pub(crate) struct RunMasking {
    /// The run's masker.
    masker: Arc<RwLock<Masker>>,
    /// The run.
    key: RunKey,
    /// Where the run's use count is kept.
    maskers: Arc<RunMaskers>,
}

impl RunMasking {
    /// Registers `values` for every later entry of the run.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a value under the minimum length or over the
    /// maximum; the message gives its index and length, never the value.
    /// Values before it in `values` stay registered.
    pub(crate) fn register(&self, values: &[String]) -> Result<(), Status> {
        if values.iter().all(|value| value.trim().is_empty()) {
            return Ok(());
        }
        let mut masker = write(&self.masker);
        for (index, value) in values.iter().enumerate() {
            // Each value grows the run's automaton, rebuilt for every
            // stream of the run: bounded, as everything a client sends.
            if masker.secrets().len() >= MAX_VALUES_PER_RUN {
                return Err(Status::resource_exhausted(format!(
                    "mask_values[{index}]: the run has {MAX_VALUES_PER_RUN} values registered, \
                     the most a run takes; nothing of this message was stored"
                )));
            }
            masker.add_secret(value).map_err(|err| {
                let reason = match err {
                    SecretError::TooShort { len } => format!(
                        "is {len} bytes long, under the minimum of {} bytes",
                        baa_logging_mask::MIN_SECRET_BYTES
                    ),
                    SecretError::TooLong { len } => format!(
                        "has a line of {len} bytes, over the maximum of {} bytes",
                        baa_logging_mask::MAX_SECRET_BYTES
                    ),
                };
                Status::invalid_argument(format!(
                    "mask_values[{index}] {reason}; nothing of this message was stored"
                ))
            })?;
        }
        Ok(())
    }
}

impl Drop for RunMasking {
    fn drop(&mut self) {
        self.maskers.close(&self.key, &self.masker);
    }
}

/// The most values one run may have registered.
const MAX_VALUES_PER_RUN: usize = 1000;

// === impl Ingest ===

/// One stream's masking: the channels' held tails and the masked items
/// waiting to be stored (see the module docs).
#[derive(Debug)]
pub(crate) struct Ingest {
    /// The run's masker.
    run: RunMasking,
    /// The stdout and stderr streams, by [`channel_index`].
    streams: [StreamMasker; 2],
    /// Per channel, the waiting item whose chunk ended in the held tail
    /// (its index in `pending`) and since when the channel holds.
    open: [Option<(usize, Instant)>; 2],
    /// Per channel, the first item of the chain the held tail belongs to:
    /// each chunk of a chain gave the start of its text to the next, so
    /// the chain is stored in one commit, all of it or none, once its
    /// last chunk holds nothing (a writer that re-sends what was not
    /// stored then re-sends whole chunks).
    chain: [Option<usize>; 2],
    /// Masked items not stored yet, in the writer's order.
    pending: VecDeque<AppendItem>,
    /// About how many bytes `pending` holds.
    bytes: usize,
    /// The largest text of one entry the store takes.
    max_entry_bytes: usize,
    /// The highest writer sequence number that went through the stream
    /// maskers or the store: an item at or below it is a duplicate the
    /// store skips, and must not feed a held tail into the next chunk.
    last_seq: u64,
}

impl Ingest {
    /// Masking for a stream of the run; `last_seq` is the writer's cursor,
    /// `max_entry_bytes` the store's limit on an entry's text.
    pub(crate) fn new(run: RunMasking, last_seq: u64, max_entry_bytes: usize) -> Self {
        Self {
            run,
            streams: [StreamMasker::new(), StreamMasker::new()],
            open: [None, None],
            chain: [None, None],
            pending: VecDeque::new(),
            bytes: 0,
            max_entry_bytes,
            last_seq,
        }
    }

    /// Registers values for this and every later item of the run.
    ///
    /// # Errors
    ///
    /// As [`RunMasking::register`].
    pub(crate) fn register(&self, values: &[String]) -> Result<(), Status> {
        self.run.register(values)
    }

    /// About how many bytes wait.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Masks `item` and queues it behind the others.
    pub(crate) fn take(&mut self, mut item: AppendItem) {
        let duplicate = item.writer_seq <= self.last_seq;
        self.last_seq = self.last_seq.max(item.writer_seq);
        let mut found = 0;
        if let AppendPayload::Chunk(channel, chunk) = &item.payload {
            let index = channel_index(*channel);
            if !duplicate
                && self.streams[index].held_len() + chunk.text.len() > self.max_entry_bytes
            {
                // Joined, the chunk would pass the entry limit and be
                // refused, again at every re-send: the held tail stays
                // in its own entry instead.
                let shared = self.run.masker.clone();
                found += self.release_channel(index, &read(&shared));
            }
        }
        // Borrowed from the fields, not cloned: the run's masker and the
        // rules are shared by many streams, and every clone and drop of
        // their `Arc`s is an atomic write to a contended cache line.
        let masker = read(&self.run.masker);
        let rules = &self.run.maskers.rules;
        match &mut item.payload {
            AppendPayload::Event(event) => {
                found += mask_in_place(&masker, &mut event.message);
                found += mask_in_place(rules, &mut event.message);
                let mut data = serde_json::Value::Object(std::mem::take(&mut event.data));
                found += masker.mask_json(&mut data);
                found += rules.mask_json(&mut data);
                if let serde_json::Value::Object(data) = data {
                    event.data = data;
                }
            }
            AppendPayload::Chunk(_, chunk) if duplicate => {
                found += mask_in_place(&masker, &mut chunk.text);
                found += mask_in_place(rules, &mut chunk.text);
            }
            AppendPayload::Chunk(channel, chunk) => {
                let index = channel_index(*channel);
                let released =
                    self.streams[index].push_owned(&masker, std::mem::take(&mut chunk.text));
                found += released.occurrences;
                chunk.text = released.text;
                found += mask_in_place(rules, &mut chunk.text);
                // The previous open chunk of the channel is decided: its
                // held tail is now at the front of this one, which joins
                // its chain. The hold-back counts from the chain's start.
                let before = self.open[index];
                let holds = self.streams[index].held_len() > 0;
                self.open[index] = holds.then(|| {
                    let since = before.map_or_else(Instant::now, |(_, since)| since);
                    (self.pending.len(), since)
                });
                self.chain[index] = match (holds, before) {
                    (false, _) => None,
                    (true, Some((at, _))) => Some(self.chain[index].unwrap_or(at)),
                    (true, None) => Some(self.pending.len()),
                };
            }
        }
        drop(masker);
        self.run.maskers.count(found);
        self.bytes += item.text_len() + 64;
        self.pending.push_back(item);
    }

    /// When the oldest held tail is due to be released.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let hold_back = self.run.maskers.hold_back;
        self.open
            .iter()
            .flatten()
            .map(|(_, since)| *since + hold_back)
            .min()
    }

    /// Releases the held tails that waited their hold-back time by `now`,
    /// or all of them (when the stream ends), into their own entries.
    pub(crate) fn release(&mut self, now: Option<Instant>) {
        let hold_back = self.run.maskers.hold_back;
        let shared = self.run.masker.clone();
        let masker = read(&shared);
        let mut found = 0;
        for index in 0..2 {
            let due = self.open[index]
                .is_some_and(|(_, since)| now.is_none_or(|now| now >= since + hold_back));
            if due {
                found += self.release_channel(index, &masker);
            }
        }
        drop(masker);
        self.run.maskers.count(found);
    }

    /// Puts the tail channel `index` holds back at the end of the item it
    /// came from, masked as far as it matches on its own, which ends the
    /// chain. Returns how many masks went in.
    fn release_channel(&mut self, index: usize, masker: &Masker) -> usize {
        let Some((at, _)) = self.open[index] else {
            return 0;
        };
        let mut released = self.streams[index].flush(masker);
        let found =
            released.occurrences + mask_in_place(&self.run.maskers.rules, &mut released.text);
        self.bytes += released.text.len();
        if let Some(AppendItem {
            payload: AppendPayload::Chunk(_, chunk),
            ..
        }) = self.pending.get_mut(at)
        {
            chunk.text.push_str(&released.text);
        }
        self.open[index] = None;
        self.chain[index] = None;
        found
    }

    /// Takes the items that can be stored now: those before the first
    /// chain that still holds a tail.
    pub(crate) fn take_ready(&mut self) -> Vec<AppendItem> {
        let ready = self
            .chain
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(self.pending.len());
        let items: Vec<AppendItem> = self.pending.drain(..ready).collect();
        for (at, _) in self.open.iter_mut().flatten() {
            *at -= ready;
        }
        for at in self.chain.iter_mut().flatten() {
            *at -= ready;
        }
        let taken: usize = items.iter().map(|item| item.text_len() + 64).sum();
        self.bytes = self.bytes.saturating_sub(taken);
        items
    }
}

/// The index of a chunk channel in [`Ingest`]'s arrays.
fn channel_index(channel: StreamLogChannel) -> usize {
    match channel {
        StreamLogChannel::Stdout => 0,
        StreamLogChannel::Stderr => 1,
    }
}
