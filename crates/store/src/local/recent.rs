//! The last commits of a run, kept decoded in memory.
//!
//! Every follower of a run reads the same new entries. Without this, each
//! one reads them from the channel files and parses their JSON again, so
//! the server's work grows with followers × entries: with 64 followers of
//! one busy run, parsing was most of the server's time (see
//! docs/benchmarks.md, W2). A commit leaves its entries here, as it has
//! them before they are written as JSON, and a follower whose cursor is
//! within what is kept takes clones from here instead of the files.
//!
//! What is kept is small and short-lived: only while the run has
//! followers, at most [`MAX_COMMITS`] commits and [`MAX_BYTES`] of
//! entries, and only those younger than [`MAX_AGE`] when the next commit
//! comes, so a quiet run holds no more than its last second. A follower that falls further behind reads the files, as before.
//! The files stay the source of truth: only committed entries come here,
//! after they were written, and a commit that is cut back off the files
//! empties this.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::model::{ChannelSet, LogEntry};

/// The most commits kept.
const MAX_COMMITS: usize = 4096;
/// The most entry bytes kept (text and fields, roughly): a second of a
/// busy run, so that a follower that falls behind for a moment, as under
/// load, catches up from memory rather than from the files.
const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Commits older than this go when the next commit comes.
const MAX_AGE: Duration = Duration::from_secs(1);

/// One commit's entries.
#[derive(Debug)]
struct RecentCommit {
    /// The sequence number of its first entry; the others follow by one.
    first_seq: u64,
    /// The entries.
    entries: Arc<[LogEntry]>,
    /// Their size, roughly.
    bytes: usize,
    /// When it was committed.
    at: Instant,
}

impl RecentCommit {
    /// The sequence number of its last entry.
    fn last_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64 - 1
    }
}

/// The last commits of a run, oldest first, without gaps between them.
#[derive(Debug, Default)]
pub(crate) struct RecentCommits {
    /// The commits.
    commits: VecDeque<RecentCommit>,
    /// Their size, roughly.
    bytes: usize,
}

impl RecentCommits {
    /// Keeps a commit's entries, which start at `first_seq`, and lets the
    /// oldest go past the limits.
    pub(crate) fn push(&mut self, first_seq: u64, entries: Vec<LogEntry>, now: Instant) {
        if entries.is_empty() {
            return;
        }
        if self
            .commits
            .back()
            .is_some_and(|last| last.last_seq() + 1 != first_seq)
        {
            // Not contiguous with what is kept (never expected): start over.
            self.clear();
        }
        let bytes = entries.iter().map(entry_bytes).sum();
        self.bytes += bytes;
        self.commits.push_back(RecentCommit {
            first_seq,
            entries: entries.into(),
            bytes,
            at: now,
        });
        while self.commits.len() > 1
            && (self.commits.len() > MAX_COMMITS
                || self.bytes > MAX_BYTES
                || self
                    .commits
                    .front()
                    .is_some_and(|oldest| now.duration_since(oldest.at) > MAX_AGE))
        {
            if let Some(oldest) = self.commits.pop_front() {
                self.bytes -= oldest.bytes;
            }
        }
    }

    /// Forgets everything: a commit was cut back off the files.
    pub(crate) fn clear(&mut self) {
        self.commits.clear();
        self.bytes = 0;
    }

    /// The entries of `channels` from `from` up to `limit`, stopping after
    /// about `max_bytes`, and the last sequence number they cover (entries
    /// of other channels are covered too). `None` when `from` is not kept.
    pub(crate) fn read(
        &self,
        from: u64,
        limit: u64,
        channels: ChannelSet,
        max_bytes: usize,
    ) -> Option<(Vec<LogEntry>, u64)> {
        let oldest = self.commits.front()?;
        if from < oldest.first_seq || from > limit {
            return None;
        }
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut covered = from - 1;
        for commit in &self.commits {
            if commit.last_seq() < from {
                continue;
            }
            let start = (from.max(commit.first_seq) - commit.first_seq) as usize;
            for entry in &commit.entries[start..] {
                let seq = entry.seq();
                if seq > limit {
                    return Some((entries, covered));
                }
                if channels.contains(entry.channel()) {
                    bytes += entry_bytes(entry);
                    entries.push(entry.clone());
                }
                covered = seq;
                if bytes >= max_bytes {
                    return Some((entries, covered));
                }
            }
        }
        (covered >= from).then_some((entries, covered))
    }
}

/// About how many bytes an entry holds.
fn entry_bytes(entry: &LogEntry) -> usize {
    192 + match entry {
        LogEntry::Chunk(chunk) => chunk.text.len(),
        LogEntry::Lifecycle(event) => event.message.len() * 2 + 64 * event.data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamChunkLogEntry, StreamLogChannel, WorkerLogChannel};

    /// A chunk entry with sequence number `seq`.
    fn chunk(seq: u64, channel: StreamLogChannel) -> LogEntry {
        LogEntry::Chunk(StreamChunkLogEntry {
            task_id: "t".to_owned(),
            step_id: "s".to_owned(),
            run_id: "r".to_owned(),
            seq,
            channel,
            created_at: "2026-01-01T00:00:00.000Z".to_owned(),
            text: format!("line {seq}\n"),
        })
    }

    /// Commits of 10 stdout entries each, from `first` on.
    fn filled(first: u64, commits: u64, now: Instant) -> RecentCommits {
        let mut recent = RecentCommits::default();
        for commit in 0..commits {
            let start = first + commit * 10;
            let entries = (start..start + 10)
                .map(|seq| chunk(seq, StreamLogChannel::Stdout))
                .collect();
            recent.push(start, entries, now);
        }
        recent
    }

    fn seqs(entries: &[LogEntry]) -> Vec<u64> {
        entries.iter().map(LogEntry::seq).collect()
    }

    /// Reads return every kept entry from the cursor to the limit, across
    /// commits, and say how far they got.
    #[test]
    fn reads_span_commits_up_to_the_limit() {
        let recent = filled(5, 3, Instant::now());
        let (entries, covered) = recent.read(12, 27, ChannelSet::ALL, usize::MAX).unwrap();
        assert_eq!(seqs(&entries), (12..=27).collect::<Vec<_>>());
        assert_eq!(covered, 27);
        let (entries, covered) = recent.read(5, 34, ChannelSet::ALL, 1).unwrap();
        assert_eq!((seqs(&entries), covered), (vec![5], 5));
    }

    /// A cursor older than what is kept, or past the limit, is not served.
    #[test]
    fn older_cursors_go_to_the_files() {
        let recent = filled(5, 3, Instant::now());
        assert!(recent.read(4, 20, ChannelSet::ALL, usize::MAX).is_none());
        assert!(recent.read(21, 20, ChannelSet::ALL, usize::MAX).is_none());
        assert!(recent.read(35, 40, ChannelSet::ALL, usize::MAX).is_none());
        assert!(
            RecentCommits::default()
                .read(1, 1, ChannelSet::ALL, usize::MAX)
                .is_none()
        );
    }

    /// A channel filter leaves other channels out but still covers them.
    #[test]
    fn filters_cover_the_other_channels() {
        let mut recent = RecentCommits::default();
        let entries = (1..=4)
            .map(|seq| {
                let channel = if seq % 2 == 0 {
                    StreamLogChannel::Stderr
                } else {
                    StreamLogChannel::Stdout
                };
                chunk(seq, channel)
            })
            .collect();
        recent.push(1, entries, Instant::now());
        let stderr = ChannelSet::of(&[WorkerLogChannel::Stderr]);
        let (entries, covered) = recent.read(1, 4, stderr, usize::MAX).unwrap();
        assert_eq!((seqs(&entries), covered), (vec![2, 4], 4));
    }

    /// Old commits go when a new one comes; a gap starts over.
    #[test]
    fn old_commits_and_gaps_are_dropped() {
        let start = Instant::now();
        let mut recent = filled(1, 2, start);
        recent.push(
            21,
            vec![chunk(21, StreamLogChannel::Stdout)],
            start + MAX_AGE + Duration::from_millis(1),
        );
        assert!(recent.read(1, 21, ChannelSet::ALL, usize::MAX).is_none());
        assert_eq!(
            recent.read(21, 21, ChannelSet::ALL, usize::MAX).unwrap().1,
            21
        );
        recent.push(30, vec![chunk(30, StreamLogChannel::Stdout)], start);
        assert!(recent.read(21, 30, ChannelSet::ALL, usize::MAX).is_none());
        assert_eq!(
            recent.read(30, 30, ChannelSet::ALL, usize::MAX).unwrap().1,
            30
        );
    }
}
