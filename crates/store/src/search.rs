//! Searching a run's output for a pattern, line by line, with context.
//!
//! A *line* is what a program wrote between two newlines: the text of a
//! channel's consecutive chunks is joined, so a line written in two
//! chunks is matched whole, and is reported with the `seq` of the chunk
//! it starts in. A lifecycle event is one line, its `renderedLine`.
//! Context lines come from the same channel, as `grep` takes them from
//! the same file.
//!
//! [`LineScanner`] does this over entries, whatever store they come from.
//! A backend feeds it parsed entries; one that can look at its stored
//! bytes first (the local store) tells it which entries it may skip
//! unparsed, see [`LineScanner::may_skip`] and [`Pattern::raw_prefilter`].

use std::{collections::VecDeque, time::SystemTime};

use regex::{Regex, RegexBuilder};

use crate::{
    error::{Result, StoreError},
    model::{ChannelSet, LogEntry, PerChannel, WorkerLogChannel},
    run_store::{ReadFrom, RunReader, RunSearcher},
};

/// The longest pattern taken, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// The most context lines taken on either side of a match.
pub const MAX_CONTEXT_LINES: usize = 100;

/// The longest line matched, in bytes: a longer one (a progress bar
/// redrawn with `\r` for hours, a minified document) is matched and sent
/// in pieces of this size, so that a search holds a bounded amount.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The most match spans given for one line.
pub const MAX_SPANS: usize = 64;

/// A compiled search pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Matches a line's text.
    regex: Regex,
    /// Finds every line that may match in stored JSON bytes, when the
    /// pattern is a literal whose JSON form is itself.
    raw: Option<regex::bytes::Regex>,
}

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// Empty.
    #[error("the pattern is empty")]
    Empty,
    /// Too long.
    #[error("the pattern is longer than {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    /// Not a regular expression.
    #[error("the pattern is not a valid regular expression: {0}")]
    Invalid(String),
}

impl Pattern {
    /// Compiles `pattern`: a regular expression (the `regex` crate's
    /// syntax), or a literal string when `literal`.
    ///
    /// # Errors
    ///
    /// An empty or overlong pattern, or an invalid regular expression.
    pub fn new(pattern: &str, literal: bool, ignore_case: bool) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(PatternError::TooLong);
        }
        let escaped;
        let source = match literal {
            true => {
                escaped = regex::escape(pattern);
                &escaped
            }
            false => pattern,
        };
        let regex = RegexBuilder::new(source)
            .case_insensitive(ignore_case)
            .size_limit(8 * 1024 * 1024)
            .build()
            .map_err(|err| PatternError::Invalid(err.to_string()))?;
        // A pattern without regular-expression syntax is a literal too.
        let is_literal = literal || regex::escape(pattern) == pattern;
        // JSON writes every character of such a literal as itself, so the
        // literal appears in a stored line's bytes wherever it appears in
        // its text (and maybe elsewhere: a candidate is checked parsed).
        let raw = (is_literal && !pattern.chars().any(json_escapes))
            .then(|| {
                regex::bytes::RegexBuilder::new(&regex::escape(pattern))
                    .case_insensitive(ignore_case)
                    .build()
                    .ok()
            })
            .flatten();
        Ok(Self { regex, raw })
    }

    /// The byte ranges where the pattern matches `line`, or `None` when
    /// it does not match.
    /// An empty match (`x*`, `\b`) makes the line match with no span;
    /// at most [`MAX_SPANS`] are given.
    pub fn spans(&self, line: &str) -> Option<Vec<(usize, usize)>> {
        let mut found = self.regex.find_iter(line).peekable();
        found.peek()?;
        Some(
            found
                .filter(|found| !found.is_empty())
                .take(MAX_SPANS)
                .map(|found| (found.start(), found.end()))
                .collect(),
        )
    }

    /// A pattern over stored JSON bytes that finds every entry whose text
    /// may match, when there is one: then an entry without a find cannot
    /// hold a matching line of its own.
    pub fn raw_prefilter(&self) -> Option<&regex::bytes::Regex> {
        self.raw.as_ref()
    }
}

/// The largest char boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    (0..=at)
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(0)
}

/// Whether JSON writes `c` as an escape sequence (as `serde_json` does).
fn json_escapes(c: char) -> bool {
    c == '"' || c == '\\' || c < ' '
}

/// What to search for, and where in a run.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The pattern.
    pub pattern: Pattern,
    /// The channels searched.
    pub channels: ChannelSet,
    /// Only entries committed at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries committed at or before this time.
    pub until: Option<SystemTime>,
    /// Lines of context before each match.
    pub before: usize,
    /// Lines of context after each match.
    pub after: usize,
}

/// A line next to a match: the `seq` it starts in, and its text.
pub type ContextLine = (u64, String);

/// A line that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The `seq` of the entry the line starts in.
    pub seq: u64,
    /// Its channel.
    pub channel: WorkerLogChannel,
    /// That entry's `createdAt`.
    pub created_at: String,
    /// The line, without its newline.
    pub text: String,
    /// Where the pattern matched, in bytes of `text`.
    pub spans: Vec<(usize, usize)>,
    /// Lines before it, oldest first.
    pub before: Vec<ContextLine>,
    /// Lines after it.
    pub after: Vec<ContextLine>,
    /// Its lines follow the previous match's of its channel with none
    /// between: the two form one group.
    pub joined: bool,
}

/// What one step of a search found.
#[derive(Debug, Default)]
pub struct SearchBatch {
    /// Matching lines whose context is complete.
    pub hits: Vec<SearchHit>,
    /// Ranges of damaged or lost entries that were not searched: first
    /// and last `seq`.
    pub skipped: Vec<(u64, u64)>,
    /// Bytes of stored entries this step scanned.
    pub scanned_bytes: u64,
    /// What the step cost beyond those bytes, for pacing: bytes' worth of
    /// bookkeeping (journal records read, say).
    pub overhead_bytes: u64,
    /// The run is searched to its end (or its range's).
    pub done: bool,
}

/// A line that matched, waiting for its lines after.
#[derive(Debug)]
struct Open {
    /// The hit.
    hit: SearchHit,
    /// How many lines after it are still to come.
    wanted: usize,
}

/// One channel's lines as they come.
#[derive(Debug, Default)]
struct ChannelLines {
    /// The start of a line whose newline has not come yet: the `seq` and
    /// `createdAt` of the entry it starts in, and its text so far.
    partial: Option<(u64, String, String)>,
    /// The last lines, for context before a match.
    recent: VecDeque<ContextLine>,
    /// Matches still taking lines after them.
    open: Vec<Open>,
    /// Lines since the last line a match took (as itself or as context);
    /// `None` before the first match.
    since_taken: Option<usize>,
}

/// Splits a channel's entries into lines and matches them: the part of a
/// search every store shares.
#[derive(Debug)]
pub struct LineScanner {
    /// What is searched for.
    query: SearchQuery,
    /// Per channel.
    channels: PerChannel<ChannelLines>,
    /// Complete hits, not yet taken.
    done: Vec<SearchHit>,
    /// Matches found so far.
    matches: usize,
    /// No more matches are wanted.
    max_matches: usize,
}

impl LineScanner {
    /// A scanner for `query` that stops matching after `max_matches`.
    pub fn new(query: SearchQuery, max_matches: usize) -> Self {
        Self {
            query,
            channels: PerChannel::default(),
            done: Vec::new(),
            matches: 0,
            max_matches,
        }
    }

    /// The query.
    pub fn query(&self) -> &SearchQuery {
        &self.query
    }

    /// Whether it found as many matches as wanted.
    pub fn is_full(&self) -> bool {
        self.matches >= self.max_matches
    }

    /// Whether it found as many matches as wanted and took every line
    /// they wait for: scanning further changes nothing.
    pub fn is_finished(&self) -> bool {
        self.is_full()
            && self
                .channels
                .values()
                .all(|channel| channel.open.is_empty())
    }

    /// Whether an entry of `channel` that holds no match and ends with a
    /// newline may be skipped without being fed: it changes nothing when
    /// no line of that channel is partial, no match waits for lines after
    /// it, and no lines before a match are kept.
    pub fn may_skip(&self, channel: WorkerLogChannel) -> bool {
        let lines = &self.channels[channel];
        self.query.before == 0 && lines.partial.is_none() && lines.open.is_empty()
    }

    /// Takes a chunk of `channel`'s text.
    pub fn chunk(&mut self, channel: WorkerLogChannel, seq: u64, created_at: &str, text: &str) {
        let mut rest = text;
        while let Some(newline) = rest.find('\n') {
            let (piece, after) = (&rest[..newline], &rest[newline + 1..]);
            rest = after;
            let (line_seq, line_created, line) = match self.channels[channel].partial.take() {
                Some((start, created, mut line)) => {
                    line.push_str(piece);
                    (start, created, line)
                }
                None => (seq, created_at.to_owned(), piece.to_owned()),
            };
            self.long_line(channel, line_seq, &line_created, line);
        }
        if !rest.is_empty() {
            match &mut self.channels[channel].partial {
                Some((_, _, line)) => line.push_str(rest),
                partial => *partial = Some((seq, created_at.to_owned(), rest.to_owned())),
            }
            // A line without end is matched a piece at a time.
            let long = self.channels[channel]
                .partial
                .as_ref()
                .is_some_and(|(_, _, line)| line.len() > MAX_LINE_BYTES);
            if long {
                let (start, created, mut line) = self.channels[channel]
                    .partial
                    .take()
                    .expect("a partial line");
                let cut = floor_char_boundary(&line, line.len() - line.len() % MAX_LINE_BYTES);
                let tail = line.split_off(cut);
                self.long_line(channel, start, &created, line);
                if !tail.is_empty() {
                    self.channels[channel].partial = Some((seq, created_at.to_owned(), tail));
                }
            }
        }
    }

    /// Matches a line, in pieces of at most [`MAX_LINE_BYTES`].
    fn long_line(&mut self, channel: WorkerLogChannel, seq: u64, created_at: &str, line: String) {
        if line.len() <= MAX_LINE_BYTES {
            return self.line(channel, seq, created_at, line);
        }
        let mut rest = line.as_str();
        while !rest.is_empty() {
            // A boundary within 4 bytes of the limit: never 0.
            let cut = floor_char_boundary(rest, MAX_LINE_BYTES);
            let (piece, after) = rest.split_at(cut);
            self.line(channel, seq, created_at, piece.to_owned());
            rest = after;
        }
    }

    /// Tells the scanner that an entry of `channel` was skipped unparsed
    /// (see [`LineScanner::may_skip`]): lines went by without a match.
    pub fn skipped(&mut self, channel: WorkerLogChannel) {
        let lines = &mut self.channels[channel];
        lines.since_taken = lines.since_taken.map(|since| since.saturating_add(1));
    }

    /// Takes a lifecycle event: one line.
    pub fn event(&mut self, seq: u64, created_at: &str, rendered_line: &str) {
        self.line(
            WorkerLogChannel::Worker,
            seq,
            created_at,
            rendered_line.to_owned(),
        );
    }

    /// Ends the scan: a last line without its newline is a line, and
    /// matches waiting for lines after them take what they have.
    pub fn finish(&mut self) {
        for channel in WorkerLogChannel::ALL {
            if let Some((seq, created, line)) = self.channels[channel].partial.take() {
                self.line(channel, seq, &created, line);
            }
            let open = std::mem::take(&mut self.channels[channel].open);
            self.done.extend(open.into_iter().map(|open| open.hit));
        }
    }

    /// Takes the complete hits found so far, in `seq` order: a hit waits
    /// while a match before it still takes lines after it.
    pub fn take_hits(&mut self) -> Vec<SearchHit> {
        // A partial line may still match, at the seq it started in.
        let waiting = self
            .channels
            .values()
            .flat_map(|channel| {
                let partial = channel.partial.as_ref().map(|(seq, _, _)| *seq);
                channel.open.iter().map(|open| open.hit.seq).chain(partial)
            })
            .min();
        self.done.sort_by_key(|hit| hit.seq);
        let ready = match waiting {
            Some(seq) => self.done.partition_point(|hit| hit.seq < seq),
            None => self.done.len(),
        };
        self.done.drain(..ready).collect()
    }

    /// Takes a matching line: it starts a hit, or goes on with the group
    /// of hits that still take lines after them.
    fn matched(
        &mut self,
        channel: WorkerLogChannel,
        seq: u64,
        created_at: &str,
        text: &str,
        spans: Vec<(usize, usize)>,
    ) {
        let (before, after) = (self.query.before, self.query.after);
        let lines = &mut self.channels[channel];
        self.matches += 1;
        let (context, joined) = match lines.open.is_empty() {
            true => {
                let fresh = lines
                    .since_taken
                    .map_or(before, |since| since.min(before))
                    .min(lines.recent.len());
                let context = lines
                    .recent
                    .iter()
                    .skip(lines.recent.len() - fresh)
                    .cloned()
                    .collect();
                let joined = lines.since_taken.is_some_and(|since| since <= before);
                (context, joined)
            }
            false => {
                self.done.extend(lines.open.drain(..).map(|open| open.hit));
                (Vec::new(), true)
            }
        };
        lines.since_taken = Some(0);
        let hit = SearchHit {
            seq,
            channel,
            created_at: created_at.to_owned(),
            text: text.to_owned(),
            spans,
            before: context,
            after: Vec::new(),
            joined,
        };
        match after {
            0 => self.done.push(hit),
            wanted => lines.open.push(Open { hit, wanted }),
        }
    }

    /// Takes a line that does not match: context after the open hits of
    /// its channel, if any.
    fn unmatched(&mut self, channel: WorkerLogChannel, seq: u64, text: &str) {
        let lines = &mut self.channels[channel];
        lines.since_taken = match lines.open.is_empty() {
            true => lines.since_taken.map(|since| since.saturating_add(1)),
            false => Some(0),
        };
        let mut index = 0;
        while index < lines.open.len() {
            let open = &mut lines.open[index];
            open.hit.after.push((seq, text.to_owned()));
            open.wanted -= 1;
            if open.wanted == 0 {
                self.done.push(lines.open.remove(index).hit);
            } else {
                index += 1;
            }
        }
    }

    /// Matches one complete line. A match while earlier ones still take
    /// lines after them continues their group: they end there, and it
    /// repeats none of their lines; its context before never repeats a
    /// line already taken either.
    fn line(&mut self, channel: WorkerLogChannel, seq: u64, created_at: &str, text: String) {
        let spans = match self.matches < self.max_matches {
            true => self.query.pattern.spans(&text),
            false => None,
        };
        match spans {
            Some(spans) => self.matched(channel, seq, created_at, &text, spans),
            None => self.unmatched(channel, seq, &text),
        }
        let before = self.query.before;
        if before > 0 {
            let lines = &mut self.channels[channel];
            if lines.recent.len() == before {
                lines.recent.pop_front();
            }
            lines.recent.push_back((seq, text));
        }
    }
}

impl LineScanner {
    /// Takes a stored entry.
    pub fn entry(&mut self, entry: &LogEntry) {
        match entry {
            LogEntry::Lifecycle(event) => {
                self.event(event.seq, &event.created_at, &event.rendered_line);
            }
            LogEntry::Chunk(chunk) => {
                self.chunk(entry.channel(), chunk.seq, &chunk.created_at, &chunk.text);
            }
        }
    }

    /// Where a history reader for this scan reads.
    pub fn read_from(&self) -> ReadFrom {
        ReadFrom {
            channels: self.query.channels,
            history_only: true,
            since: self.query.since,
            until: self.query.until,
            ..ReadFrom::default()
        }
    }
}

/// A search over a history reader's entries: what any backend can do.
#[derive(Debug)]
pub struct ReaderSearch<R> {
    /// The reader, opened with [`LineScanner::read_from`].
    reader: R,
    /// The scan.
    scanner: LineScanner,
}

impl<R: RunReader> ReaderSearch<R> {
    /// A search over `reader`'s entries.
    pub fn new(reader: R, scanner: LineScanner) -> Self {
        Self { reader, scanner }
    }
}

impl<R: RunReader> RunSearcher for ReaderSearch<R> {
    async fn next(&mut self, max_bytes: usize) -> Result<SearchBatch> {
        let mut batch = SearchBatch::default();
        match self.reader.read(max_bytes).await {
            Ok(read) => {
                for entry in &read.entries {
                    batch.scanned_bytes += entry_bytes(entry);
                    self.scanner.entry(entry);
                }
                batch.done = read.finished || self.scanner.is_finished();
            }
            // The reader goes on after a damaged commit.
            Err(StoreError::DataLoss {
                first_seq,
                last_seq,
                ..
            }) => batch.skipped.push((first_seq, last_seq)),
            Err(err) => return Err(err),
        }
        if batch.done {
            self.scanner.finish();
        }
        batch.hits = self.scanner.take_hits();
        Ok(batch)
    }
}

/// About how many bytes an entry takes in storage, for pacing.
fn entry_bytes(entry: &LogEntry) -> u64 {
    let text = match entry {
        LogEntry::Lifecycle(event) => event.rendered_line.len() + event.message.len(),
        LogEntry::Chunk(chunk) => chunk.text.len(),
    };
    text as u64 + 120
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pattern: &str, before: usize, after: usize) -> SearchQuery {
        SearchQuery {
            pattern: Pattern::new(pattern, false, false).unwrap(),
            channels: ChannelSet::ALL,
            since: None,
            until: None,
            before,
            after,
        }
    }

    /// A line written across chunks matches whole and is reported at the
    /// chunk it starts in, with context from its own channel only.
    #[test]
    fn lines_are_joined_across_chunks() {
        use WorkerLogChannel::{Stderr, Stdout};
        let mut scanner = LineScanner::new(query("needle", 1, 1), 10);
        scanner.chunk(Stdout, 1, "t1", "one\nnee");
        scanner.chunk(Stderr, 2, "t2", "noise\n");
        scanner.chunk(Stdout, 3, "t3", "dle here\nthree\n");
        scanner.finish();
        let hits = scanner.take_hits();
        assert_eq!(hits.len(), 1);
        let hit = &hits[0];
        assert_eq!(
            (hit.seq, hit.channel, hit.text.as_str()),
            (1, Stdout, "needle here")
        );
        assert_eq!(hit.created_at, "t1");
        assert_eq!(hit.spans, vec![(0, 6)]);
        assert_eq!(hit.before, vec![(1, "one".to_owned())]);
        assert_eq!(hit.after, vec![(3, "three".to_owned())]);
    }

    /// Matches close together form one group: a match inside another's
    /// lines after ends them and goes on, and context never repeats a line.
    #[test]
    fn close_matches_join_into_one_group() {
        let mut scanner = LineScanner::new(query("M", 1, 1), 10);
        scanner.chunk(WorkerLogChannel::Stdout, 1, "t", "a\nM1\nM2\nb\nc\nd\nM3\n");
        scanner.finish();
        let hits = scanner.take_hits();
        let shape: Vec<(&str, usize, usize, bool)> = hits
            .iter()
            .map(|hit| {
                (
                    hit.text.as_str(),
                    hit.before.len(),
                    hit.after.len(),
                    hit.joined,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [("M1", 1, 0, false), ("M2", 0, 1, true), ("M3", 1, 0, false)]
        );
        assert_eq!(hits[2].before, vec![(1, "d".to_owned())]);
    }

    /// A line longer than the most matched is matched in pieces, whether
    /// it comes whole or without end; skipped lines part groups; hits come
    /// out in `seq` order, after those before them complete.
    #[test]
    fn long_lines_skipped_lines_and_order() {
        use WorkerLogChannel::{Stderr, Stdout};
        let mut scanner = LineScanner::new(query("needle", 0, 0), 10);
        let long = format!("{}needle", "x".repeat(3 * MAX_LINE_BYTES));
        scanner.chunk(Stdout, 1, "t", &long);
        scanner.chunk(Stdout, 2, "t", &long);
        let hits = scanner.take_hits();
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|hit| hit.text.len() <= MAX_LINE_BYTES));
        assert!(scanner.channels[Stdout].partial.as_ref().unwrap().2.len() <= MAX_LINE_BYTES);

        let mut scanner = LineScanner::new(query("M", 0, 1), 10);
        scanner.chunk(Stdout, 1, "t", "M1\nx\n");
        scanner.skipped(Stdout);
        scanner.chunk(Stdout, 3, "t", "M2\n");
        scanner.finish();
        let joined: Vec<bool> = scanner.take_hits().iter().map(|hit| hit.joined).collect();
        assert_eq!(joined, [false, false], "a skipped line lies between");

        let mut scanner = LineScanner::new(query("E", 0, 1), 10);
        scanner.chunk(Stderr, 5, "t", "E5\n");
        scanner.chunk(Stdout, 6, "t", "E6\n");
        scanner.chunk(Stdout, 7, "t", "after\n");
        assert!(scanner.take_hits().is_empty(), "seq 5 still takes a line");
        scanner.finish();
        let seqs: Vec<u64> = scanner.take_hits().iter().map(|hit| hit.seq).collect();
        assert_eq!(seqs, [5, 6]);
    }

    /// Matching stops at the cap, and a last line without a newline counts.
    #[test]
    fn stops_at_the_cap_and_keeps_a_last_open_line() {
        let mut scanner = LineScanner::new(query("x", 0, 0), 2);
        scanner.chunk(WorkerLogChannel::Stdout, 1, "t", "x1\nx2\nx3\n");
        assert!(scanner.is_finished());
        assert_eq!(scanner.take_hits().len(), 2);
        let mut scanner = LineScanner::new(query("end", 0, 0), 5);
        scanner.chunk(WorkerLogChannel::Stdout, 1, "t", "a\nthe end");
        assert!(scanner.take_hits().is_empty());
        scanner.finish();
        assert_eq!(scanner.take_hits()[0].text, "the end");
    }

    /// Plain words are literals with a prefilter; patterns with syntax or
    /// characters JSON escapes have none; bad patterns are refused.
    #[test]
    fn patterns_compile() {
        assert!(Pattern::new("error", false, false).unwrap().raw.is_some());
        assert!(Pattern::new("a.b", true, true).unwrap().raw.is_some());
        assert!(
            Pattern::new("err(or)?", false, false)
                .unwrap()
                .raw
                .is_none()
        );
        assert!(
            Pattern::new("say \"hi\"", true, false)
                .unwrap()
                .raw
                .is_none()
        );
        assert!(Pattern::new("(", false, false).is_err());
        assert!(Pattern::new("", true, false).is_err());
        let folded = Pattern::new("ERROR", true, true).unwrap();
        assert_eq!(folded.spans("an error"), Some(vec![(3, 8)]));
        let empty = Pattern::new("x*", false, false).unwrap();
        assert_eq!(
            empty.spans("abc"),
            Some(Vec::new()),
            "matches, with no span"
        );
    }
}
