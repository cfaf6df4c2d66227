//! One gap-free sequence number per run across its three channels, and
//! exactly-once re-send by writer sequence number.

use baa_logging_config::Limits;

use super::{Backend, chunk, event, key, prepare, read_all, text};
use crate::{
    RunStore, StoreError,
    error::EntryPart,
    model::{ChannelSet, StreamLogChannel, WorkerLogChannel},
    run_store::ReadFrom,
};

/// Two writers appending events, stdout and stderr to one run get one
/// sequence number across the channels, 1 to N with no gap, each
/// writer's items in its own order, and the summary counts each channel.
pub async fn one_gap_free_seq_across_channels(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    for round in 0..5u64 {
        for writer in ["a", "b"] {
            let items = vec![
                event(round * 3 + 1, &format!("{writer} event {round}")),
                chunk(
                    round * 3 + 2,
                    StreamLogChannel::Stdout,
                    &format!("{writer} out {round}"),
                ),
                chunk(
                    round * 3 + 3,
                    StreamLogChannel::Stderr,
                    &format!("{writer} err {round}"),
                ),
            ];
            let outcome = store.append(&run, writer, items).await.expect("an append");
            assert_eq!((outcome.stored, outcome.duplicates), (3, 0));
            assert_eq!(outcome.last_writer_seq, round * 3 + 3);
        }
    }
    let entries = read_all(&store, &run, from(1)).await;
    let seqs: Vec<u64> = entries.iter().map(|entry| entry.seq()).collect();
    assert_eq!(seqs, (1..=31).collect::<Vec<_>>(), "one gap-free seq");
    assert_eq!(text(&entries[0]), "run r prepared");
    for writer in ["a", "b"] {
        let mine: Vec<&str> = entries
            .iter()
            .map(text)
            .filter(|text| text.starts_with(writer))
            .collect();
        let rounds: Vec<String> = (0..5)
            .flat_map(|round| {
                ["event", "out", "err"].map(|kind| format!("{writer} {kind} {round}"))
            })
            .collect();
        assert_eq!(mine, rounds, "writer {writer}'s items in its order");
    }
    let summary = store.get_run(&run).await.expect("the run").summary;
    assert_eq!(
        (
            summary.total_entries,
            summary.last_seq,
            summary.lifecycle_event_count,
            summary.stdout_chunk_count,
            summary.stderr_chunk_count
        ),
        (31, 31, 11, 10, 10)
    );
    let stderr = read_all(
        &store,
        &run,
        ReadFrom {
            channels: ChannelSet::of(&[WorkerLogChannel::Stderr]),
            ..from(1)
        },
    )
    .await;
    assert_eq!(stderr.len(), 10);
    assert!(
        stderr
            .iter()
            .all(|entry| entry.channel() == WorkerLogChannel::Stderr)
    );
}

/// Items a run holds already are skipped, so re-sending from any point
/// stores each item once; a gap or a zero writer sequence number is
/// refused after the items before it were stored, and the cursor says
/// where to re-send from.
pub async fn resending_stores_each_item_once(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let out = |seq| chunk(seq, StreamLogChannel::Stdout, &format!("line {seq}"));
    store
        .append(&run, "w", (1..=5).map(out).collect())
        .await
        .expect("an append");
    let again = store
        .append(&run, "w", (3..=8).map(out).collect())
        .await
        .expect("a re-send");
    assert_eq!(
        (again.stored, again.duplicates, again.last_writer_seq),
        (3, 3, 8)
    );
    let cursor = store.writer_cursor(&run, "w").await.expect("a cursor");
    assert_eq!((cursor.last_writer_seq, cursor.last_seq), (8, 9));
    assert_eq!(
        store
            .writer_cursor(&run, "other")
            .await
            .expect("a cursor")
            .last_writer_seq,
        0
    );

    let gap = store.append(&run, "w", vec![out(9), out(11)]).await;
    assert!(
        matches!(
            gap,
            Err(StoreError::WriterSeqGap {
                expected: 10,
                got: 11,
                ..
            })
        ),
        "{gap:?}"
    );
    let zero = store.append(&run, "w", vec![out(0)]).await;
    assert!(matches!(zero, Err(StoreError::ZeroWriterSeq)), "{zero:?}");
    assert_eq!(
        store
            .writer_cursor(&run, "w")
            .await
            .expect("a cursor")
            .last_writer_seq,
        9
    );

    let texts: Vec<String> = read_all(&store, &run, from(2))
        .await
        .iter()
        .map(|entry| text(entry).to_owned())
        .collect();
    let expected: Vec<String> = (1..=9).map(|seq| format!("line {seq}")).collect();
    assert_eq!(texts, expected, "each item once, in order");
}

/// A text, message or event data over its limit is refused naming the
/// limit, after the items before it were stored; one at the limit is
/// stored.
pub async fn items_over_a_limit_are_refused_after_the_ones_before(backend: &impl Backend) {
    let limits = Limits {
        max_entry_bytes: 100,
        max_data_bytes: 50,
        ..Limits::default()
    };
    let store = backend.open(limits).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let items = vec![
        chunk(1, StreamLogChannel::Stdout, &"x".repeat(100)),
        chunk(2, StreamLogChannel::Stderr, &"x".repeat(101)),
    ];
    let refused = store.append(&run, "w", items).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::TooLarge {
                part: EntryPart::Text,
                writer_seq: 2,
                len: 101,
                max: 100,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store
            .writer_cursor(&run, "w")
            .await
            .expect("a cursor")
            .last_writer_seq,
        1
    );
    let mut big_data = event(2, "data");
    if let crate::model::AppendPayload::Event(event) = &mut big_data.payload {
        event.data.insert("k".into(), "d".repeat(50).into());
    }
    let refused = store.append(&run, "w", vec![big_data]).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::TooLarge {
                part: EntryPart::Data,
                limit: "max_data_bytes",
                ..
            })
        ),
        "{refused:?}"
    );
    let message = store
        .append(&run, "w", vec![event(2, &"m".repeat(101))])
        .await;
    assert!(
        matches!(
            message,
            Err(StoreError::TooLarge {
                part: EntryPart::Message,
                ..
            })
        ),
        "{message:?}"
    );
}

/// A reader of everything from `from_seq` to the current end.
fn from(from_seq: u64) -> ReadFrom {
    ReadFrom {
        from_seq,
        channels: ChannelSet::ALL,
        history_only: true,
        ..ReadFrom::default()
    }
}

/// `run_prepared` is the run's first entry, recorded by the store when it
/// prepares the run; a writer's `run_prepared` is refused, after the items
/// before it were stored.
pub async fn a_writer_cannot_append_run_prepared(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let mut prepared = event(2, "a second run_prepared");
    if let crate::model::AppendPayload::Event(event) = &mut prepared.payload {
        event.event_type = crate::model::WorkerLifecycleEventType::RunPrepared;
    }
    let items = vec![chunk(1, StreamLogChannel::Stdout, "before"), prepared];
    let refused = store.append(&run, "w", items).await;
    assert!(
        matches!(refused, Err(StoreError::ReservedEvent { writer_seq: 2 })),
        "{refused:?}"
    );
    let cursor = store.writer_cursor(&run, "w").await.expect("a cursor");
    assert_eq!((cursor.last_writer_seq, cursor.last_seq), (1, 2));
}
