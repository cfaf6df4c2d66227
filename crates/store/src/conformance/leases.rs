//! Worker leases: an expiry fails a running run once, with its entry, and
//! a writer that had appended to the run may come back, deliver late and
//! set the final status once; nobody else may.

use std::time::Duration;

use super::{Backend, chunk, key, prepare, read_all, set_status, text};
use crate::{
    Limits, RunStore,
    error::{Refused, StoreError},
    lease::{LEASE_EXPIRED_REASON, LeaseExpiry, WORKER_RETURNED_REASON},
    model::{LogEntry, RunStatePatch, RunStatus, StreamLogChannel, WorkerLifecycleEventType},
    run_store::ReadFrom,
};

/// A one-second lease, last held by writer `w`.
fn expiry() -> LeaseExpiry {
    LeaseExpiry {
        lease: Duration::from_secs(1),
        last_writer: Some("w".into()),
    }
}

/// The lifecycle events of `entries`: their type and `reason`.
fn events(entries: &[LogEntry]) -> Vec<(WorkerLifecycleEventType, String)> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            LogEntry::Lifecycle(event) => Some((
                event.event_type,
                event.data.get("reason").map_or(String::new(), |reason| {
                    reason.as_str().unwrap_or_default().to_owned()
                }),
            )),
            LogEntry::Chunk(_) => None,
        })
        .collect()
}

/// An expired lease fails a `running` run with one `step_failed` entry
/// and the lease's summary, once; a `prepared` or finished run is left as
/// it is.
pub async fn an_expired_lease_fails_a_running_run_once(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "prepared").await;
    let prepared = key("t", "prepared");
    let left = store.expire_lease(&prepared, expiry()).await;
    assert!(
        matches!(left, Ok(None)),
        "a prepared run has no lease: {left:?}"
    );
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    set_status(&store, &run, RunStatus::Running).await;
    let failed = store
        .expire_lease(&run, expiry())
        .await
        .expect("the expiry")
        .expect("a running run fails");
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(failed.finished_at.is_some());
    assert_eq!(failed.summary, Some(expiry().summary()));
    let again = store.expire_lease(&run, expiry()).await;
    assert!(matches!(again, Ok(None)), "{again:?}");
    let entries = read_all(&store, &run, ReadFrom::default()).await;
    let expired: Vec<_> = events(&entries)
        .into_iter()
        .filter(|(_, reason)| reason == LEASE_EXPIRED_REASON)
        .collect();
    assert_eq!(
        expired,
        [(
            WorkerLifecycleEventType::StepFailed,
            LEASE_EXPIRED_REASON.to_owned()
        )]
    );
    let view = store.get_run(&run).await.expect("the run");
    assert_eq!(view.state.last_event_seq, view.summary.last_seq);
    prepare(&store, "t", "done").await;
    let done = key("t", "done");
    set_status(&store, &done, RunStatus::Running).await;
    set_status(&store, &done, RunStatus::Completed).await;
    let finished = store.expire_lease(&done, expiry()).await;
    assert!(matches!(finished, Ok(None)), "{finished:?}");
    assert_eq!(
        store.get_run(&done).await.expect("the run").state.status,
        RunStatus::Completed
    );
}

/// After its lease expired, a writer that had appended to the run may
/// append more (after a `worker_execution_deferred` entry) and set the
/// final status once; a new writer, a request naming no writer and a
/// second final status are refused.
pub async fn a_returning_writer_delivers_late_and_finishes_once(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    set_status(&store, &run, RunStatus::Running).await;
    let before = vec![chunk(1, StreamLogChannel::Stdout, "one\n")];
    store.append(&run, "w", before).await.expect("an append");
    store
        .expire_lease(&run, expiry())
        .await
        .expect("the expiry");
    let stranger = store
        .append(&run, "x", vec![chunk(1, StreamLogChannel::Stdout, "no\n")])
        .await;
    assert!(
        matches!(
            stranger,
            Err(StoreError::LeaseLapsed {
                refused: Refused::Entries,
                ..
            })
        ),
        "{stranger:?}"
    );
    let late = vec![
        chunk(2, StreamLogChannel::Stdout, "two\n"),
        chunk(3, StreamLogChannel::Stderr, "three\n"),
    ];
    let outcome = store.append(&run, "w", late).await.expect("a late append");
    assert_eq!((outcome.stored, outcome.last_writer_seq), (2, 3));
    let more = vec![chunk(4, StreamLogChannel::Stdout, "four\n")];
    store.append(&run, "w", more).await.expect("a late append");
    let completed = RunStatePatch {
        status: Some(RunStatus::Completed),
        exit_code: Some(0),
        ..RunStatePatch::default()
    };
    let unnamed = store.update_state(&run, completed.clone()).await;
    assert!(
        matches!(
            unnamed,
            Err(StoreError::LeaseLapsed {
                writer_id: None,
                ..
            })
        ),
        "{unnamed:?}"
    );
    let other = store.update_state_by(&run, "x", completed.clone()).await;
    assert!(
        matches!(other, Err(StoreError::LeaseLapsed { .. })),
        "{other:?}"
    );
    let state = store
        .update_state_by(&run, "w", completed.clone())
        .await
        .expect("the final status");
    assert_eq!(
        (state.status, state.exit_code, state.summary.as_deref()),
        (RunStatus::Completed, Some(0), None)
    );
    let second = store
        .update_state_by(
            &run,
            "w",
            RunStatePatch {
                status: Some(RunStatus::Failed),
                ..RunStatePatch::default()
            },
        )
        .await;
    assert!(
        matches!(
            second,
            Err(StoreError::Terminal {
                refused: Refused::StateChange,
                ..
            })
        ),
        "{second:?}"
    );
    let after = store
        .append(&run, "w", vec![chunk(5, StreamLogChannel::Stdout, "no\n")])
        .await;
    assert!(
        matches!(after, Err(StoreError::Terminal { .. })),
        "{after:?}"
    );
    let entries = read_all(&store, &run, ReadFrom::default()).await;
    let seqs: Vec<u64> = entries.iter().map(LogEntry::seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let story: Vec<_> = events(&entries).into_iter().skip(1).collect();
    assert_eq!(
        story,
        [
            (
                WorkerLifecycleEventType::StepFailed,
                LEASE_EXPIRED_REASON.to_owned()
            ),
            (
                WorkerLifecycleEventType::WorkerExecutionDeferred,
                WORKER_RETURNED_REASON.to_owned()
            ),
            (
                WorkerLifecycleEventType::StepCompleted,
                WORKER_RETURNED_REASON.to_owned()
            ),
        ]
    );
    let texts: Vec<&str> = entries.iter().map(text).collect();
    let late_from = texts
        .iter()
        .position(|text| text.starts_with("worker returned"))
        .expect("the return entry");
    assert_eq!(
        texts[late_from + 1..late_from + 4],
        ["two\n", "three\n", "four\n"]
    );
    let LogEntry::Lifecycle(settled) = entries.last().expect("entries") else {
        panic!("the last entry is the final status's");
    };
    assert_eq!(settled.data["lateEntries"], 3);
    let view = store.get_run(&run).await.expect("the run");
    assert_eq!(view.state.last_event_seq, view.summary.last_seq);
}
