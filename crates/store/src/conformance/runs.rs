//! Runs: preparing them, listing them, and their state's one way forward.

use baa_logging_config::Limits;

use super::{Backend, chunk, key, metadata, prepare, prepare_at, set_status};
use crate::{
    RunStore, StoreError,
    error::Refused,
    model::{RunQuery, RunStatePatch, RunStateSnapshotInput, RunStatus, StreamLogChannel},
};

/// Preparing a run again with the same metadata returns it without
/// creating it; with other metadata it is refused; the new run holds
/// its `run_prepared` event as seq 1.
pub async fn prepare_is_idempotent(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    let state = || RunStateSnapshotInput {
        attempt: 1,
        started_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_seq: None,
        summary: None,
    };
    let created_at = "2026-01-02T03:04:05.000Z";
    let first = store
        .prepare_run(metadata("t", "r", created_at), state())
        .await
        .expect("prepared");
    assert!(first.created);
    assert_eq!(first.entries.len(), 1);
    assert_eq!(first.entries[0].seq, 1);
    assert_eq!(first.run.state.status, RunStatus::Prepared);
    let again = store
        .prepare_run(metadata("t", "r", created_at), state())
        .await
        .expect("prepared again");
    assert!(!again.created && again.entries.is_empty());
    assert_eq!(again.run.metadata, first.run.metadata);
    let mut other = metadata("t", "r", created_at);
    other.step_name = "Other".into();
    let refused = store.prepare_run(other, state()).await;
    assert!(
        matches!(refused, Err(StoreError::MetadataMismatch(_))),
        "{refused:?}"
    );
    let missing = store.get_run(&key("t", "nope")).await;
    assert!(
        matches!(missing, Err(StoreError::RunNotFound(_))),
        "{missing:?}"
    );
}

/// Ids that would escape or hide in the store are refused, by every
/// method, before anything is stored.
pub async fn bad_ids_are_refused_before_anything_is_stored(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    for bad in ["", "..", ".hidden", "a/b", "a\\b", "a\0b"] {
        let refused = store.get_run(&key(bad, "r")).await;
        assert!(
            matches!(refused, Err(StoreError::InvalidId { .. })),
            "{bad:?}: {refused:?}"
        );
        let refused = store.get_run(&key("t", bad)).await;
        assert!(
            matches!(refused, Err(StoreError::InvalidId { .. })),
            "{bad:?}: {refused:?}"
        );
        let items = vec![chunk(1, StreamLogChannel::Stdout, "x")];
        let refused = store.append(&key("t", "r"), bad, items).await;
        assert!(
            matches!(refused, Err(StoreError::InvalidId { .. })),
            "{bad:?}: {refused:?}"
        );
    }
    assert_eq!(
        store
            .get_run(&key("t", "r"))
            .await
            .expect("the run")
            .summary
            .total_entries,
        1
    );
}

/// Runs are listed newest first, filtered by task and status, in pages
/// that together hold each run once.
pub async fn runs_are_listed_newest_first_by_page(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    for (task, run, day) in [
        ("a", "r1", 1),
        ("b", "r2", 2),
        ("a", "r3", 3),
        ("a", "r4", 4),
    ] {
        prepare_at(&store, task, run, &format!("2026-01-0{day}T00:00:00.000Z")).await;
    }
    set_status(&store, &key("a", "r3"), RunStatus::Failed).await;
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_runs(RunQuery {
                page_size: 3,
                page_token: token.take(),
                ..RunQuery::default()
            })
            .await
            .expect("a page");
        assert!(page.runs.len() <= 3);
        seen.extend(page.runs.into_iter().map(|run| run.metadata.run_id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["r4", "r3", "r2", "r1"]);
    let task_a = store
        .list_runs(RunQuery {
            task_id: Some("a".into()),
            page_size: 10,
            ..RunQuery::default()
        })
        .await
        .expect("a page");
    let ids: Vec<_> = task_a
        .runs
        .iter()
        .map(|run| run.metadata.run_id.as_str())
        .collect();
    assert_eq!(ids, ["r4", "r3", "r1"]);
    let failed = store
        .list_runs(RunQuery {
            statuses: vec![RunStatus::Failed],
            page_size: 10,
            ..RunQuery::default()
        })
        .await
        .expect("a page");
    assert_eq!(failed.runs.len(), 1);
    assert_eq!(failed.runs[0].metadata.run_id, "r3");
    let bad = store
        .list_runs(RunQuery {
            page_size: 10,
            page_token: Some("zz".into()),
            ..RunQuery::default()
        })
        .await;
    assert!(
        matches!(bad, Err(StoreError::InvalidPageToken { .. })),
        "{bad:?}"
    );
}

/// A run moves `prepared → running → completed | failed | blocked` and
/// never back; a terminal run takes neither state changes nor entries,
/// and `finished_at` is only taken with a terminal status.
pub async fn state_moves_only_forward(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let to = |status| RunStatePatch {
        status: Some(status),
        ..RunStatePatch::default()
    };
    let early = store.update_state(&run, to(RunStatus::Completed)).await;
    assert!(
        matches!(
            early,
            Err(StoreError::BadTransition {
                from: RunStatus::Prepared,
                to: RunStatus::Completed,
                ..
            })
        ),
        "{early:?}"
    );
    let finished_early = store
        .update_state(
            &run,
            RunStatePatch {
                finished_at: Some("2026-01-02T03:04:05.000Z".into()),
                ..to(RunStatus::Running)
            },
        )
        .await;
    assert!(
        matches!(
            finished_early,
            Err(StoreError::FinishedAtWithoutTerminalStatus)
        ),
        "{finished_early:?}"
    );
    let running = store
        .update_state(&run, to(RunStatus::Running))
        .await
        .expect("running");
    assert_eq!(running.status, RunStatus::Running);
    assert!(running.finished_at.is_none());
    let done = store
        .update_state(
            &run,
            RunStatePatch {
                exit_code: Some(0),
                ..to(RunStatus::Completed)
            },
        )
        .await
        .expect("completed");
    assert!(done.finished_at.is_some());
    assert_eq!(done.exit_code, Some(0));
    let after = store.update_state(&run, to(RunStatus::Failed)).await;
    assert!(
        matches!(
            after,
            Err(StoreError::Terminal {
                refused: Refused::StateChange,
                ..
            })
        ),
        "{after:?}"
    );
    let items = vec![chunk(1, StreamLogChannel::Stdout, "late")];
    let late = store.append(&run, "w", items).await;
    assert!(
        matches!(
            late,
            Err(StoreError::Terminal {
                refused: Refused::Entries,
                ..
            })
        ),
        "{late:?}"
    );
    let state = store.get_run(&run).await.expect("the run").state;
    assert_eq!(
        (state.status, state.last_event_seq),
        (RunStatus::Completed, 1)
    );
}
