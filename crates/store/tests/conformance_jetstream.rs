//! The JetStream store against the conformance suite: every check of
//! `baa_logging_store::conformance`, on a real three-server NATS cluster
//! on loopback, each check on a stream of its own with three replicas.
//!
//! One test runs every check in turn, so that the cluster starts once.

#[path = "../../../tests/util/nats_cluster.rs"]
mod nats_cluster;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use baa_logging_store::{
    JetStreamOptions, JetStreamStore, Limits, ReadFrom, RetentionPolicy, RunReader, RunStore,
    conformance::{self, Backend},
    model::{
        AppendItem, AppendPayload, LogEntry, RunKey, RunMetadataInput, RunStatePatch,
        RunStateSnapshotInput, RunStatus, StreamChunkInput, StreamLogChannel,
    },
};
use nats_cluster::NatsCluster;

/// Streams get names of their own.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

/// A stream of its own on the cluster.
struct JetStream {
    /// The cluster's URLs.
    urls: Vec<String>,
    /// The stream.
    stream: String,
}

impl JetStream {
    fn new(cluster: &NatsCluster) -> Self {
        Self {
            urls: cluster.urls(),
            stream: format!("CONFORMANCE_{}", STREAMS.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl Backend for JetStream {
    type Store = JetStreamStore;

    async fn open(&self, limits: Limits) -> JetStreamStore {
        JetStreamStore::open(JetStreamOptions {
            stream: self.stream.clone(),
            limits,
            connect_timeout: Duration::from_secs(30),
            ..JetStreamOptions::new(self.urls.clone())
        })
        .await
        .expect("the store opens")
    }
}

/// Runs each named check on a fresh stream, saying which one runs.
macro_rules! run_checks {
    ($cluster:expr, $($check:ident),* $(,)?) => {
        $(
            eprintln!("conformance check: {}", stringify!($check));
            conformance::$check(&JetStream::new($cluster)).await;
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_check_on_a_three_server_cluster() {
    let cluster = NatsCluster::start(3);
    run_checks!(
        &cluster,
        one_gap_free_seq_across_channels,
        resending_stores_each_item_once,
        items_over_a_limit_are_refused_after_the_ones_before,
        a_writer_cannot_append_run_prepared,
        reads_from_any_cursor_and_channel,
        follow_goes_live_and_ends_with_the_run,
        reads_tails_and_bounds,
        searches_lines_with_context,
        prepare_is_idempotent,
        bad_ids_are_refused_before_anything_is_stored,
        runs_are_listed_newest_first_by_page,
        state_moves_only_forward,
        retention_takes_only_terminal_runs_nobody_uses,
        an_expired_lease_fails_a_running_run_once,
        a_returning_writer_delivers_late_and_finishes_once,
        objects_round_trip_by_any_range,
        an_upload_resumes_from_what_the_store_holds,
        a_name_keeps_the_bytes_it_was_committed_with,
        checkpoint_slots_are_reserved_then_committed_forward,
    );
    eprintln!("two nodes: a run prepared again is written with its new metadata");
    a_run_prepared_again_is_written_with_its_new_metadata(&JetStream::new(&cluster)).await;
}

/// Two stores on one stream, as two nodes are.
async fn two_nodes(backend: &JetStream) -> (JetStreamStore, JetStreamStore) {
    (
        backend.open(Limits::default()).await,
        backend.open(Limits::default()).await,
    )
}

/// The metadata of a run `nightly/r` of step `step`.
fn metadata(step: &str) -> RunMetadataInput {
    RunMetadataInput {
        task_id: "nightly".into(),
        step_id: step.into(),
        step_name: "Build".into(),
        run_id: "r".into(),
        worker_kind: "shell".into(),
        attempt: 1,
        repo_root: "/repo".into(),
        worktree_path: "/repo".into(),
        created_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_mode: "none".into(),
        prompt_summary: None,
        command: None,
    }
}

/// A node that appended to a run, which another node's retention then
/// deleted and which was prepared again with other metadata, writes the
/// new run's entries with the new run's metadata.
async fn a_run_prepared_again_is_written_with_its_new_metadata(backend: &JetStream) {
    let (a, b) = two_nodes(backend).await;
    let key = RunKey {
        task_id: "nightly".into(),
        run_id: "r".into(),
    };
    let state = || RunStateSnapshotInput {
        attempt: 1,
        started_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_seq: None,
        summary: None,
    };
    a.prepare_run(metadata("one"), state())
        .await
        .expect("prepared");
    a.append(&key, "w", vec![line(1, "first")])
        .await
        .expect("an append");
    for status in [RunStatus::Running, RunStatus::Completed] {
        let patch = RunStatePatch {
            status: Some(status),
            ..RunStatePatch::default()
        };
        a.update_state(&key, patch).await.expect("a status");
    }
    // Node a reads the finished run, and knows its metadata.
    assert_eq!(
        a.get_run(&key).await.expect("the run").metadata.step_id,
        "one"
    );
    let everything = RetentionPolicy {
        max_age: Some(Duration::ZERO),
        max_bytes: None,
    };
    let collected = b.collect(everything, false).await.expect("a pass");
    assert_eq!(collected.runs.len(), 1);
    b.prepare_run(metadata("two"), state())
        .await
        .expect("prepared again");
    a.append(&key, "w", vec![line(1, "second")])
        .await
        .expect("an append");
    let mut reader = b
        .open_reader(
            &key,
            ReadFrom {
                history_only: true,
                ..ReadFrom::default()
            },
        )
        .await
        .expect("a reader");
    let batch = reader.read(1 << 20).await.expect("a read");
    let steps: Vec<_> = batch
        .entries
        .iter()
        .map(|entry| match entry {
            LogEntry::Lifecycle(event) => event.step_id.clone(),
            LogEntry::Chunk(chunk) => chunk.step_id.clone(),
        })
        .collect();
    assert_eq!(steps, ["two", "two"], "run_prepared, then the new line");
}

/// A stdout line.
fn line(writer_seq: u64, text: &str) -> AppendItem {
    AppendItem {
        writer_seq,
        payload: AppendPayload::Chunk(
            StreamLogChannel::Stdout,
            StreamChunkInput {
                text: text.into(),
                created_at: None,
            },
        ),
    }
}
