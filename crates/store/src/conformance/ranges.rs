//! Reading part of a run, and searching it: what every backend returns
//! for a tail, sequence and time bounds, and a search with context.

use std::time::{Duration, SystemTime};

use baa_logging_config::Limits;

use super::{Backend, chunk, key, prepare, read_all};
use crate::{
    RunSearcher, RunStore,
    model::{ChannelSet, LogEntry, RunStatePatch, RunStatus, StreamLogChannel, WorkerLogChannel},
    run_store::ReadFrom,
    search::{LineScanner, Pattern, SearchHit, SearchQuery},
};

/// A tail counts the selected channels' entries back from the end (or
/// from `to_seq`); `to_seq` and time bounds narrow the range; commit
/// times order the commits as they were made.
pub async fn reads_tails_and_bounds(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    // seq n + 1 is item n; odd items on stdout, even ones on stderr.
    let mut marks = Vec::new();
    for commit in 0..3u64 {
        let items = (1..=10)
            .map(|index| {
                let n = commit * 10 + index;
                let channel = match n % 2 {
                    0 => StreamLogChannel::Stderr,
                    _ => StreamLogChannel::Stdout,
                };
                chunk(n, channel, &format!("item {n}\n"))
            })
            .collect();
        store.append(&run, "w", items).await.expect("an append");
        tokio::time::sleep(Duration::from_millis(20)).await;
        marks.push(SystemTime::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A state change stores no entry, and comes last in time: bounds by
    // time still find the entries.
    let running = RunStatePatch {
        status: Some(RunStatus::Running),
        ..RunStatePatch::default()
    };
    store
        .update_state(&run, running)
        .await
        .expect("the run starts");
    let seqs = |entries: Vec<LogEntry>| entries.iter().map(LogEntry::seq).collect::<Vec<_>>();
    let history = ReadFrom {
        history_only: true,
        ..ReadFrom::default()
    };
    let tail = read_all(
        &store,
        &run,
        ReadFrom {
            tail: Some(4),
            ..history
        },
    )
    .await;
    assert_eq!(seqs(tail), [28, 29, 30, 31], "the last four entries");
    let stderr = ChannelSet::of(&[WorkerLogChannel::Stderr]);
    let stderr_tail = ReadFrom {
        tail: Some(3),
        channels: stderr,
        ..history
    };
    assert_eq!(
        seqs(read_all(&store, &run, stderr_tail).await),
        [27, 29, 31],
        "the last three of stderr"
    );
    let bounded = ReadFrom {
        tail: Some(2),
        to_seq: Some(15),
        ..history
    };
    assert_eq!(seqs(read_all(&store, &run, bounded).await), [14, 15]);
    let none = ReadFrom {
        tail: Some(0),
        ..history
    };
    assert!(read_all(&store, &run, none).await.is_empty());
    let window = ReadFrom {
        since: Some(marks[0]),
        until: Some(marks[1]),
        ..history
    };
    assert_eq!(
        seqs(read_all(&store, &run, window).await),
        (12..=21).collect::<Vec<_>>(),
        "the second commit alone"
    );
    let after = ReadFrom {
        since: Some(marks[2]),
        ..history
    };
    assert!(read_all(&store, &run, after).await.is_empty());
}

/// A search matches lines across chunks, with context from the same
/// channel, and stops at its cap.
pub async fn searches_lines_with_context(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let items = vec![
        chunk(1, StreamLogChannel::Stdout, "alpha\nneed"),
        chunk(2, StreamLogChannel::Stderr, "noise needle\n"),
        chunk(3, StreamLogChannel::Stdout, "le found\nomega\n"),
    ];
    store.append(&run, "w", items).await.expect("an append");
    let query = |channels| SearchQuery {
        pattern: Pattern::new("needle", true, false).expect("a pattern"),
        channels,
        since: None,
        until: None,
        before: 1,
        after: 1,
    };
    let hits = search(&store, query(ChannelSet::ALL), 10).await;
    let found: Vec<(u64, &str)> = hits
        .iter()
        .map(|hit| (hit.seq, hit.text.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.contains(&(2, "needle found")), "{found:?}");
    assert!(found.contains(&(3, "noise needle")), "{found:?}");
    let joined = hits
        .iter()
        .find(|hit| hit.seq == 2)
        .expect("the joined line");
    assert_eq!(joined.before, [(2, "alpha".to_owned())]);
    assert_eq!(joined.after, [(4, "omega".to_owned())]);
    let stdout = ChannelSet::of(&[WorkerLogChannel::Stdout]);
    assert_eq!(search(&store, query(stdout), 10).await.len(), 1);
    assert_eq!(search(&store, query(ChannelSet::ALL), 1).await.len(), 1);
}

/// Every complete hit of a search of `t/r`.
async fn search<S: RunStore>(store: &S, query: SearchQuery, max: usize) -> Vec<SearchHit> {
    let mut searcher = store
        .search(&key("t", "r"), LineScanner::new(query, max))
        .await
        .expect("a search");
    let mut hits = Vec::new();
    for _ in 0..10_000 {
        let batch = searcher.next(1024 * 1024).await.expect("a step");
        hits.extend(batch.hits);
        if batch.done {
            return hits;
        }
    }
    panic!("the search never ended");
}
