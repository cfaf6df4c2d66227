//! The last commits of a run, kept decoded in memory.
//!
//! Every follower of a run reads the same new entries. Without this, each
//! one reads them from the channel files and parses their JSON again, so
//! the server's work grows with followers × entries: with 64 followers of
//! one busy run, parsing was most of the server's time (see
//! docs/benchmarks.md, W2). A commit leaves its entries here, compact (the
//! writers' strings moved in, the run's ids once), as one record shared by
//! `Arc`. A follower whose cursor is within what is kept makes its entries
//! from here instead of the files, or, when it asks for shared commits
//! (the gRPC follow streams do), takes whole commits as the shared record
//! itself, so that the server encodes each commit once for all of them
//! (see `CommitEntries::cached`).
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

use crate::model::{ChannelSet, CommitEntries, LogEntry};

/// The most commits kept.
const MAX_COMMITS: usize = 4096;
/// The most entry bytes kept (text and fields, roughly): a second of a
/// busy run, so that a follower that falls behind for a moment, as under
/// load, catches up from memory rather than from the files.
const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Commits older than this go when the next commit comes.
const MAX_AGE: Duration = Duration::from_secs(1);

/// One commit, shared with the readers that return it whole.
#[derive(Debug)]
struct RecentCommit {
    /// Its entries.
    commit: Arc<CommitEntries>,
    /// Their size, roughly.
    bytes: usize,
    /// When it was committed.
    at: Instant,
}

/// The last commits of a run, oldest first, without gaps between them.
#[derive(Debug, Default)]
pub(crate) struct RecentCommits {
    /// The commits.
    commits: VecDeque<RecentCommit>,
    /// Their size, roughly.
    bytes: usize,
}

/// What a read from memory returns.
#[derive(Debug, Default)]
pub(crate) struct RecentRead {
    /// Entries of the reader's own, in sequence order.
    pub(crate) entries: Vec<LogEntry>,
    /// Whole commits, shared, after `entries`.
    pub(crate) shared: Vec<Arc<CommitEntries>>,
    /// The last sequence number covered (entries of other channels too).
    pub(crate) covered: u64,
}

impl RecentCommits {
    /// Keeps a commit, and lets the oldest go past the limits.
    pub(crate) fn push(&mut self, commit: CommitEntries, now: Instant) {
        if commit.is_empty() {
            return;
        }
        if self
            .commits
            .back()
            .is_some_and(|last| last.commit.last_seq() + 1 != commit.first_seq())
        {
            // Not contiguous with what is kept (never expected): start over.
            self.clear();
        }
        let bytes = (0..commit.len())
            .map(|index| commit.entry_bytes(index))
            .sum();
        self.bytes += bytes;
        self.commits.push_back(RecentCommit {
            commit: Arc::new(commit),
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
    ///
    /// With `share`, a commit that the read takes whole, all of whose
    /// entries are of `channels`, comes as the shared commit rather than
    /// as entries; entries of the reader's own come only before the first
    /// of those, where the read starts within a commit or a commit does
    /// not fit.
    pub(crate) fn read(
        &self,
        from: u64,
        limit: u64,
        channels: ChannelSet,
        max_bytes: usize,
        share: bool,
    ) -> Option<RecentRead> {
        let oldest = self.commits.front()?;
        if from < oldest.commit.first_seq() || from > limit {
            return None;
        }
        let mut read = RecentRead {
            covered: from - 1,
            ..RecentRead::default()
        };
        let mut bytes = 0usize;
        for recent in &self.commits {
            let commit = &recent.commit;
            if commit.last_seq() < from {
                continue;
            }
            let first_seq = commit.first_seq();
            let whole = from <= first_seq && commit.last_seq() <= limit;
            if share && whole && commit.within(channels) {
                if bytes + recent.bytes <= max_bytes {
                    bytes += recent.bytes;
                    read.shared.push(commit.clone());
                    read.covered = commit.last_seq();
                    continue;
                }
                if !read.entries.is_empty() || !read.shared.is_empty() {
                    return Some(read);
                }
            }
            if !read.shared.is_empty() {
                // Entries of its own never follow shared commits.
                return Some(read);
            }
            let start = (from.max(first_seq) - first_seq) as usize;
            for index in start..commit.len() {
                let seq = first_seq + index as u64;
                if seq > limit {
                    return Some(read);
                }
                if channels.contains(commit.channel(index)) {
                    bytes += commit.entry_bytes(index);
                    read.entries.push(commit.entry(index));
                }
                read.covered = seq;
                if bytes >= max_bytes {
                    return Some(read);
                }
            }
        }
        (read.covered >= from).then_some(read)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::model::{
        CommitEntry, LocalRunLogContext, PerChannel, StreamLogChannel, WorkerLogChannel,
    };

    /// A commit of chunks from `first_seq` on, one per channel given.
    fn commit(first_seq: u64, channels: &[StreamLogChannel]) -> CommitEntries {
        let mut counts = PerChannel::default();
        let entries = (first_seq..)
            .zip(channels)
            .map(|(seq, channel)| {
                counts[WorkerLogChannel::from(*channel)] += 1;
                CommitEntry::Chunk(*channel, None, format!("line {seq}\n"))
            })
            .collect();
        CommitEntries {
            ids: Arc::new(LocalRunLogContext {
                task_id: "t".to_owned(),
                step_id: "s".to_owned(),
                run_id: "r".to_owned(),
            }),
            first_seq,
            now: "2026-01-01T00:00:00.000Z".to_owned(),
            entries,
            counts,
            cache: OnceLock::new(),
        }
    }

    /// Commits of 10 stdout entries each, from `first` on.
    fn filled(first: u64, commits: u64, now: Instant) -> RecentCommits {
        let mut recent = RecentCommits::default();
        for index in 0..commits {
            recent.push(
                commit(first + index * 10, &[StreamLogChannel::Stdout; 10]),
                now,
            );
        }
        recent
    }

    /// The sequence numbers of a read, its own entries and then the shared
    /// commits', and how far it got.
    fn seqs(read: RecentRead) -> (Vec<u64>, usize, u64) {
        let mut seqs: Vec<u64> = read.entries.iter().map(LogEntry::seq).collect();
        for commit in &read.shared {
            seqs.extend(commit.to_entries().iter().map(LogEntry::seq));
        }
        (seqs, read.shared.len(), read.covered)
    }

    /// Reads return every kept entry from the cursor to the limit, across
    /// commits, and say how far they got.
    #[test]
    fn reads_span_commits_up_to_the_limit() {
        let recent = filled(5, 3, Instant::now());
        let read = recent.read(12, 27, ChannelSet::ALL, usize::MAX, false);
        assert_eq!(seqs(read.unwrap()), ((12..=27).collect(), 0, 27));
        let read = recent.read(5, 34, ChannelSet::ALL, 1, false);
        assert_eq!(seqs(read.unwrap()), (vec![5], 0, 5));
    }

    /// Shared reads return whole commits as they are kept, after entries
    /// of their own for a cursor within a commit, and stop before a commit
    /// that the limit or the size cuts.
    #[test]
    fn shared_reads_take_whole_commits() {
        let recent = filled(5, 3, Instant::now());
        let read = recent.read(12, 34, ChannelSet::ALL, usize::MAX, true);
        assert_eq!(seqs(read.unwrap()), ((12..=34).collect(), 2, 34));
        let read = recent.read(5, 30, ChannelSet::ALL, usize::MAX, true);
        assert_eq!(seqs(read.unwrap()), ((5..=24).collect(), 2, 24));
        let one_commit = 10 * (192 + "line 10\n".len());
        let read = recent.read(5, 34, ChannelSet::ALL, one_commit, true);
        assert_eq!(seqs(read.unwrap()), ((5..=14).collect(), 1, 14));
        // A commit bigger than the read's size is read entry by entry.
        let read = recent.read(5, 34, ChannelSet::ALL, 1, true);
        assert_eq!(seqs(read.unwrap()), (vec![5], 0, 5));
        // Every reader gets the same commit.
        let first = recent.read(15, 24, ChannelSet::ALL, usize::MAX, true);
        let second = recent.read(15, 24, ChannelSet::ALL, usize::MAX, true);
        assert!(Arc::ptr_eq(
            &first.unwrap().shared[0],
            &second.unwrap().shared[0]
        ));
    }

    /// A cursor older than what is kept, or past the limit, is not served.
    #[test]
    fn older_cursors_go_to_the_files() {
        let recent = filled(5, 3, Instant::now());
        assert!(
            recent
                .read(4, 20, ChannelSet::ALL, usize::MAX, false)
                .is_none()
        );
        assert!(
            recent
                .read(21, 20, ChannelSet::ALL, usize::MAX, true)
                .is_none()
        );
        assert!(
            recent
                .read(35, 40, ChannelSet::ALL, usize::MAX, false)
                .is_none()
        );
        assert!(
            RecentCommits::default()
                .read(1, 1, ChannelSet::ALL, usize::MAX, true)
                .is_none()
        );
    }

    /// A channel filter leaves other channels out but still covers them,
    /// and a commit with entries of other channels is never shared.
    #[test]
    fn filters_cover_the_other_channels() {
        let mut recent = RecentCommits::default();
        let (stdout, stderr) = (StreamLogChannel::Stdout, StreamLogChannel::Stderr);
        recent.push(commit(1, &[stdout, stderr, stdout, stderr]), Instant::now());
        recent.push(commit(5, &[stderr, stderr]), Instant::now());
        let only_stderr = ChannelSet::of(&[WorkerLogChannel::Stderr]);
        for share in [false, true] {
            let read = recent.read(1, 4, only_stderr, usize::MAX, share);
            assert_eq!(seqs(read.unwrap()), (vec![2, 4], 0, 4));
        }
        let read = recent.read(1, 6, only_stderr, usize::MAX, true);
        assert_eq!(seqs(read.unwrap()), (vec![2, 4, 5, 6], 1, 6));
    }

    /// Old commits go when a new one comes; a gap starts over.
    #[test]
    fn old_commits_and_gaps_are_dropped() {
        let start = Instant::now();
        let mut recent = filled(1, 2, start);
        recent.push(
            commit(21, &[StreamLogChannel::Stdout]),
            start + MAX_AGE + Duration::from_millis(1),
        );
        assert!(
            recent
                .read(1, 21, ChannelSet::ALL, usize::MAX, false)
                .is_none()
        );
        let read = recent.read(21, 21, ChannelSet::ALL, usize::MAX, false);
        assert_eq!(read.unwrap().covered, 21);
        recent.push(commit(30, &[StreamLogChannel::Stdout]), start);
        assert!(
            recent
                .read(21, 30, ChannelSet::ALL, usize::MAX, false)
                .is_none()
        );
        let read = recent.read(30, 30, ChannelSet::ALL, usize::MAX, false);
        assert_eq!(read.unwrap().covered, 30);
    }
}
