//! Reading a run: from any cursor with any channels, history then live,
//! ending when the run is terminal.

use std::time::Duration;

use baa_logging_config::Limits;

use super::{Backend, chunk, event, key, prepare, read_all, set_status};
use crate::{
    RunStore,
    model::{ChannelSet, RunStatus, StreamLogChannel, WorkerLogChannel},
    run_store::{ReadFrom, RunReader},
};

/// How long a live reader may wait for what was just stored.
const LIVE_WAIT: Duration = Duration::from_secs(10);

/// A history reader opened at any sequence number returns exactly the
/// entries from there to the end, of the selected channels only, in
/// order; one past the end returns nothing and is finished.
pub async fn reads_from_any_cursor_and_channel(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let items = (1..=30)
        .map(|n| match n % 3 {
            0 => event(n, &format!("e{n}")),
            1 => chunk(n, StreamLogChannel::Stdout, &format!("o{n}")),
            _ => chunk(n, StreamLogChannel::Stderr, &format!("x{n}")),
        })
        .collect();
    store.append(&run, "w", items).await.expect("an append");
    let last = 31;
    for from_seq in 1..=last + 1 {
        let all = ChannelSet::ALL;
        let entries = read_all(&store, &run, history(from_seq, all)).await;
        let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq()).collect();
        assert_eq!(
            seqs,
            (from_seq..=last).collect::<Vec<_>>(),
            "from {from_seq}"
        );
        let stdout = ChannelSet::of(&[WorkerLogChannel::Stdout, WorkerLogChannel::Worker]);
        let some = read_all(&store, &run, history(from_seq, stdout)).await;
        assert!(some.iter().all(|entry| stdout.contains(entry.channel())));
        assert!(some.windows(2).all(|pair| pair[0].seq() < pair[1].seq()));
        let expected = entries
            .iter()
            .filter(|entry| stdout.contains(entry.channel()));
        assert_eq!(
            some.len(),
            expected.count(),
            "from {from_seq}, two channels"
        );
    }
    let mut past_end = store
        .open_reader(&run, history(last + 1, ChannelSet::ALL))
        .await
        .expect("a reader");
    let batch = past_end.read(1024).await.expect("a read");
    assert!(batch.entries.is_empty() && batch.caught_up && batch.finished);
    assert_eq!(batch.next_seq, last + 1);
}

/// A live reader returns the history, then what is stored after it
/// opened, woken by `changed`; it reports the state in its first batch
/// and when it changes, and finishes once the run is terminal and it has
/// everything.
pub async fn follow_goes_live_and_ends_with_the_run(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    set_status(&store, &run, RunStatus::Running).await;
    let live = ReadFrom {
        from_seq: 1,
        channels: ChannelSet::ALL,
        history_only: false,
        ..ReadFrom::default()
    };
    let mut reader = store.open_reader(&run, live).await.expect("a reader");
    let first = reader.read(1024 * 1024).await.expect("a read");
    assert_eq!(first.entries.len(), 1, "the history: run_prepared");
    assert_eq!(
        first.state.expect("the state comes first").status,
        RunStatus::Running
    );
    assert!(first.caught_up && !first.finished);

    for n in 1..=3u64 {
        let items = vec![chunk(n, StreamLogChannel::Stdout, &format!("live {n}"))];
        store.append(&run, "w", items).await.expect("an append");
        tokio::time::timeout(LIVE_WAIT, reader.changed())
            .await
            .expect("the reader is woken");
        let batch = reader.read(1024 * 1024).await.expect("a read");
        let seqs: Vec<u64> = batch.entries.iter().map(|entry| entry.seq()).collect();
        assert_eq!(seqs, [n + 1], "exactly the new entry, after run_prepared");
    }
    set_status(&store, &run, RunStatus::Completed).await;
    tokio::time::timeout(LIVE_WAIT, reader.changed())
        .await
        .expect("the reader is woken by the state");
    let last = reader.read(1024 * 1024).await.expect("a read");
    assert!(last.entries.is_empty());
    assert_eq!(
        last.state.expect("the new state").status,
        RunStatus::Completed
    );
    assert!(last.finished, "a terminal run's reader finishes");
}

/// A history reader from `from_seq` of `channels`.
fn history(from_seq: u64, channels: ChannelSet) -> ReadFrom {
    ReadFrom {
        from_seq,
        channels,
        history_only: true,
        ..ReadFrom::default()
    }
}
