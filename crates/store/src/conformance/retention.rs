//! Retention: only terminal runs, never one in use, gone whole.

use std::time::Duration;

use baa_logging_config::Limits;

use super::{Backend, key, prepare, set_status};
use crate::{
    RunStore, StoreError,
    model::{ChannelSet, RunStatus},
    retention::RetentionPolicy,
    run_store::ReadFrom,
};

/// Every terminal run, whatever its age.
const EVERYTHING: RetentionPolicy = RetentionPolicy {
    max_age: Some(Duration::ZERO),
    max_bytes: None,
};

/// A pass deletes terminal runs only, and keeps one while a reader or a
/// hold is open on it; a dry run deletes nothing; a deleted run is gone
/// from every method, and preparing it again makes a new one.
pub async fn retention_takes_only_terminal_runs_nobody_uses(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "running").await;
    set_status(&store, &key("t", "running"), RunStatus::Running).await;
    prepare(&store, "t", "done").await;
    let done = key("t", "done");
    set_status(&store, &done, RunStatus::Failed).await;
    let hold = store.hold(&done).await.expect("a hold");
    let from = ReadFrom {
        from_seq: 1,
        channels: ChannelSet::ALL,
        history_only: false,
        ..ReadFrom::default()
    };
    let reader = store.open_reader(&done, from).await.expect("a reader");
    let kept = store.collect(EVERYTHING, false).await.expect("a pass");
    assert!(kept.runs.is_empty());
    assert_eq!(kept.kept_open, 1);
    drop(hold);
    drop(reader);

    let would = store.collect(EVERYTHING, true).await.expect("a dry run");
    let ids: Vec<_> = would
        .runs
        .iter()
        .map(|run| run.key.run_id.as_str())
        .collect();
    assert_eq!(ids, ["done"]);
    store
        .get_run(&done)
        .await
        .expect("a dry run deletes nothing");
    let deleted = store.collect(EVERYTHING, false).await.expect("a pass");
    assert_eq!(deleted.runs, would.runs);
    for gone in [
        store.get_run(&done).await.map(drop),
        store.hold(&done).await.map(drop),
        store.writer_cursor(&done, "w").await.map(drop),
        store.open_reader(&done, from).await.map(drop),
    ] {
        assert!(matches!(gone, Err(StoreError::RunNotFound(_))), "{gone:?}");
    }
    store
        .get_run(&key("t", "running"))
        .await
        .expect("a running run is kept");
    prepare(&store, "t", "done").await;
    let fresh = store.get_run(&done).await.expect("a new run");
    assert_eq!(fresh.state.status, RunStatus::Prepared);
    assert_eq!(fresh.summary.total_entries, 1);
}
