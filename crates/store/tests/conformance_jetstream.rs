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
    JetStreamOptions, JetStreamStore, Limits, ObjectReader, ObjectStore, ObjectUpload, ReadFrom,
    RetentionPolicy, RunReader, RunStore, StoreError,
    conformance::{self, Backend},
    model::{
        AppendItem, AppendPayload, LogEntry, RunKey, RunMetadataInput, RunStatePatch,
        RunStateSnapshotInput, RunStatus, StreamChunkInput, StreamLogChannel,
    },
    objects::{ObjectKind, ObjectLimits, ObjectRef, UploadCommit},
};
use base64::Engine;
use nats_cluster::NatsCluster;
use sha2::{Digest, Sha256};

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

/// Runs each named check on a fresh stream, saying which one runs: those
/// of the conformance suite, or after `own:` those of this file.
macro_rules! run_checks {
    ($cluster:expr, own: $($check:ident),* $(,)?) => {
        $(
            eprintln!("check: {}", stringify!($check));
            $check(&JetStream::new($cluster)).await;
        )*
    };
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
    // This backend's own checks, most of them through two nodes.
    run_checks!(
        &cluster,
        own: a_run_prepared_again_is_written_with_its_new_metadata,
        the_later_stream_of_an_upload_takes_it_over,
        uploads_through_two_nodes_count_against_one_limit,
        the_sweep_keeps_a_committed_objects_chunks,
        an_import_is_not_swept_under_it,
        a_run_read_through_one_node_is_kept_by_the_others,
        a_reader_of_a_run_purged_under_it_ends,
        live_readers_of_a_run_share_one_consumer,
        a_dropped_reader_leaves_no_consumer,
        a_commit_under_way_holds_its_upload,
    );
}

/// An upload whose key says a commit is under way (its record may be
/// going in) is not taken over by another stream until the commit's
/// grace has passed: the stream is told to try again, and then resumes.
async fn a_commit_under_way_holds_its_upload(backend: &JetStream) {
    let data = vec![5u8; 2000];
    let (_, b, object, _upload) = staged(backend, "held.bin", &data).await;
    // The key as a commit leaves it just before it puts its record in,
    // `ago` seconds ago.
    let uploads = jetstream_of(backend)
        .await
        .get_key_value(format!("{}_UPLOADS", backend.stream))
        .await
        .expect("the uploads bucket");
    let mark_committing = async |ago: i64| {
        let entry = uploads
            .entry("nightly.r.u")
            .await
            .expect("a read")
            .expect("the upload's key");
        let mut staging: serde_json::Value =
            serde_json::from_slice(&entry.value).expect("a staging");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock")
            .as_secs() as i64;
        staging["state"] = "committing".into();
        staging["openedAt"] = (now - ago).into();
        let value = serde_json::to_vec(&staging).expect("json");
        uploads
            .put("nightly.r.u", value.into())
            .await
            .expect("a write");
    };
    mark_committing(0).await;
    let refused = b.open_upload(object.clone(), "u").await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable { context, .. }) if context.contains("being committed")),
        "a commit under way holds its upload: {:?}",
        refused.map(|upload| upload.size())
    );
    // A commit that stopped long enough ago is taken over.
    mark_committing(60).await;
    let resumed = b.open_upload(object.clone(), "u").await.expect("resumes");
    assert_eq!(resumed.size(), 2000);
    let info = resumed.commit(commit_of(&data)).await.expect("committed");
    assert_eq!(info.size, 2000);
}

/// Readers of one run through one node that have caught up share one
/// consumer on the NATS servers; each still reads every line once, in
/// order, including one that fell behind and one that joined late.
async fn live_readers_of_a_run_share_one_consumer(backend: &JetStream) {
    let (a, b) = two_nodes(backend).await;
    let key = running(&a).await;
    let js = jetstream_of(backend).await;
    let mut stream = js.get_stream(&backend.stream).await.expect("the stream");
    let mut written = Vec::new();
    let mut write = async |n: u64| {
        let text = format!("line {n}");
        a.append(&key, "w", vec![line(n, &text)])
            .await
            .expect("an append");
        written.push(text);
    };
    for n in 1..=20 {
        write(n).await;
    }
    let (mut readers, mut lines) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let mut reader = b
            .open_reader(&key, ReadFrom::default())
            .await
            .expect("a reader");
        let mut read = Vec::new();
        loop {
            let batch = reader.read(1 << 20).await.expect("a read");
            read.extend(batch.entries.into_iter().filter_map(text_of));
            if batch.caught_up {
                break;
            }
        }
        readers.push(reader);
        lines.push(read);
    }
    // Each live reader takes a record through its own consumer, then
    // joins the feed.
    write(21).await;
    // Replaced consumers go in at most 30 s (an ordered consumer the
    // client recreated, on a busy machine, idles out on the servers).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let consumers = stream
            .info()
            .await
            .expect("the stream's state")
            .state
            .consumer_count;
        if consumers == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumers} consumers for 8 live readers of one run"
        );
        // Readers are read, so that each gets its record and joins.
        for (reader, lines) in readers.iter_mut().zip(&mut lines) {
            read_ready(reader, lines).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reader 0 is not read while more than the feed holds for it goes
    // by: it falls back to a consumer of its own, and loses nothing. A
    // ninth reader opens half way, reads the history, and joins.
    for n in 22..=400 {
        write(n).await;
        for (reader, lines) in readers.iter_mut().zip(&mut lines).skip(1) {
            read_ready(reader, lines).await;
        }
        if n == 200 {
            let late = b.open_reader(&key, ReadFrom::default()).await;
            readers.push(late.expect("a reader"));
            lines.push(Vec::new());
        }
    }
    // Reader 0 catches up and joins again: one consumer again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        for (reader, lines) in readers.iter_mut().zip(&mut lines) {
            read_ready(reader, lines).await;
        }
        let consumers = stream
            .info()
            .await
            .expect("the stream's state")
            .state
            .consumer_count;
        if consumers == 1 && lines.iter().all(|lines| lines.len() == 400) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumers} consumers once every reader caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(&a, &key, RunStatus::Completed).await;
    let all = readers.iter_mut().zip(&mut lines);
    for (reader, lines) in all {
        let read_all = async {
            loop {
                let batch = reader.read(1 << 20).await.expect("a read");
                lines.extend(batch.entries.into_iter().filter_map(text_of));
                if batch.finished {
                    break;
                }
                reader.changed().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read_all)
            .await
            .expect("the reader reads to the end");
        let first_wrong = lines.iter().zip(&written).position(|(a, b)| a != b);
        assert!(
            lines.len() == written.len() && first_wrong.is_none(),
            "every line once, in order: {} lines of {}, first wrong at {first_wrong:?}",
            lines.len(),
            written.len()
        );
    }
}

/// A reader dropped while it reads the history through a consumer of its
/// own deletes that consumer, rather than leave it to idle out on the
/// servers for 30 s.
async fn a_dropped_reader_leaves_no_consumer(backend: &JetStream) {
    let (a, b) = two_nodes(backend).await;
    let key = running(&a).await;
    for n in 1..=100 {
        a.append(&key, "w", vec![line(n, "a line")])
            .await
            .expect("an append");
    }
    let mut stream = jetstream_of(backend)
        .await
        .get_stream(&backend.stream)
        .await
        .expect("the stream");
    for _ in 0..4 {
        let mut reader = b
            .open_reader(&key, ReadFrom::default())
            .await
            .expect("a reader");
        let batch = reader.read(4 << 10).await.expect("a read");
        assert!(
            !batch.entries.is_empty() && !batch.caught_up,
            "part of the history"
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let consumers = stream
            .info()
            .await
            .expect("the stream's state")
            .state
            .consumer_count;
        if consumers == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumers} consumers of dropped readers after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads what `reader` has now into `lines`, without waiting.
async fn read_ready(reader: &mut impl RunReader, lines: &mut Vec<String>) {
    loop {
        let ready = tokio::time::timeout(Duration::from_millis(1), reader.changed()).await;
        let batch = reader.read(1 << 20).await.expect("a read");
        let got = !batch.entries.is_empty();
        lines.extend(batch.entries.into_iter().filter_map(text_of));
        if ready.is_err() && !got {
            return;
        }
    }
}

/// The text of a stdout line.
fn text_of(entry: LogEntry) -> Option<String> {
    match entry {
        LogEntry::Chunk(chunk) => Some(chunk.text),
        LogEntry::Lifecycle(_) => None,
    }
}

/// A reader that opened on a finished run whose records then go (as when
/// retention on another node finishes just after the reader read the
/// run's tip) ends with `RunNotFound`, rather than wait for records that
/// will not come; and it does not read the run prepared again over it.
async fn a_reader_of_a_run_purged_under_it_ends(backend: &JetStream) {
    let (a, b) = two_nodes(backend).await;
    let js = jetstream_of(backend).await;
    let stream = js.get_stream(&backend.stream).await.expect("the stream");
    let subject = format!("{}.run.nightly.r", backend.stream);
    let from = ReadFrom {
        history_only: true,
        ..ReadFrom::default()
    };
    for prepared_again in [false, true] {
        let key = running(&a).await;
        // More records than a reader's consumer fetches ahead of it.
        for n in 1..=700 {
            a.append(&key, "w", vec![line(n, "a line")])
                .await
                .expect("an append");
        }
        set(&a, &key, RunStatus::Completed).await;
        let mut reader = b.open_reader(&key, from).await.expect("a reader");
        stream
            .purge()
            .filter(&subject)
            .await
            .expect("the run's records go");
        if prepared_again {
            a.prepare_run(metadata("again"), initial_state())
                .await
                .expect("prepared again");
        }
        let read_all = async {
            loop {
                if reader.read(64 << 10).await?.finished {
                    return Ok(());
                }
                // A read that has nothing to wait for returns at once:
                // the timeout below still gets its turn.
                tokio::task::yield_now().await;
            }
        };
        let outcome = tokio::time::timeout(Duration::from_secs(20), read_all)
            .await
            .expect("the reader ends");
        assert!(
            matches!(outcome, Err(StoreError::RunNotFound(_))),
            "the reader ends as its run is gone (prepared again: {prepared_again}): {outcome:?}"
        );
        stream
            .purge()
            .filter(&subject)
            .await
            .expect("a clean slate");
    }
}

/// Retention on one node keeps a finished run that another node has a
/// reader open on, and deletes it once that reader is gone.
async fn a_run_read_through_one_node_is_kept_by_the_others(backend: &JetStream) {
    let (a, b) = two_nodes_with(backend, ObjectLimits::default()).await;
    let key = running(&a).await;
    set(&a, &key, RunStatus::Completed).await;
    let everything = RetentionPolicy {
        max_age: Some(Duration::ZERO),
        max_bytes: None,
    };
    let from = ReadFrom {
        history_only: true,
        ..ReadFrom::default()
    };
    let reader = b.open_reader(&key, from).await.expect("a reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pass = a.collect(everything, false).await.expect("a pass");
        assert!(pass.runs.is_empty(), "a run read through b was deleted");
        if pass.kept_open == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's use never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.get_run(&key).await.expect("the run is there");
    drop(reader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pass = a.collect(everything, false).await.expect("a pass");
        if pass.runs.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        b.get_run(&key).await,
        Err(StoreError::RunNotFound(_))
    ));
    // Nothing of the run is left in the stream, not even its `Deleted`
    // record.
    let mut stream = jetstream_of(backend)
        .await
        .get_stream(&backend.stream)
        .await
        .expect("the run stream");
    let info = stream.info().await.expect("the stream's state");
    assert_eq!(info.state.messages, 0, "the stream holds nothing");
    // The ids take a new run, which both nodes read.
    a.prepare_run(metadata("again"), initial_state())
        .await
        .expect("prepared again");
    let run = b
        .get_run(&key)
        .await
        .expect("the new run is read through b");
    assert_eq!(run.metadata.step_id, "again");
}

/// Two nodes, the run `nightly/r` running, and the upload `u` of its
/// artifact `name` opened through the first node, holding `data`.
async fn staged(
    backend: &JetStream,
    name: &str,
    data: &[u8],
) -> (JetStreamStore, JetStreamStore, ObjectRef, impl ObjectUpload) {
    let (a, b) = two_nodes_with(backend, ObjectLimits::default()).await;
    let key = running(&a).await;
    let object = artifact(&key, name);
    let mut upload = a.open_upload(object.clone(), "u").await.expect("opens");
    upload
        .write(0, data.to_vec().into())
        .await
        .expect("a write");
    (a, b, object, upload)
}

/// A JetStream context on the backend's cluster.
async fn jetstream_of(backend: &JetStream) -> async_nats::jetstream::Context {
    let addresses: Vec<async_nats::ServerAddr> = backend
        .urls
        .iter()
        .map(|url| url.parse().expect("a server address"))
        .collect();
    let client = async_nats::connect(addresses).await.expect("connects");
    async_nats::jetstream::new(client)
}

/// A finished run imported with its objects while another node sweeps
/// uploads over and over: the copies being staged are not the sweep's,
/// and the object arrives whole.
async fn an_import_is_not_swept_under_it(backend: &JetStream) {
    let dir = tempfile::tempdir().expect("a directory");
    let local = baa_logging_store::LocalStore::open(baa_logging_store::LocalStoreOptions::new(
        dir.path().join("runs"),
    ))
    .expect("a local store");
    let key = running(&local).await;
    let data: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i * 7 + i / 4099) as u8)
        .collect();
    let object = artifact(&key, "big.bin");
    let mut upload = local.open_upload(object.clone(), "u").await.expect("opens");
    upload.write(0, data.clone().into()).await.expect("a write");
    upload.commit(commit_of(&data)).await.expect("committed");
    set(&local, &key, RunStatus::Completed).await;
    let view = local.get_run(&key).await.expect("the run");
    let entries = history(&local, &key).await;

    let (a, b) = two_nodes_with(backend, ObjectLimits::default()).await;
    let sweeping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sweeper = tokio::spawn({
        let sweeping = sweeping.clone();
        async move {
            let mut swept = 0;
            while sweeping.load(std::sync::atomic::Ordering::Relaxed) {
                swept += b
                    .sweep_uploads(Duration::from_secs(3600))
                    .await
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            swept
        }
    });
    let imported = a
        .import_run(view.metadata, view.state, Vec::new(), entries, &local)
        .await;
    sweeping.store(false, std::sync::atomic::Ordering::Relaxed);
    // The sweep may drop the key of a copy whose record is in (the key
    // alone); never the copy's chunks.
    let swept = sweeper.await.expect("the sweeper");
    assert!(imported.is_ok(), "{imported:?}");
    assert!(swept <= 1, "{swept} swept");
    let (info, mut reader) = a.open_object(object).await.expect("it opens");
    assert_eq!(info.size, data.len() as u64);
    let back = reader.read_at(0, data.len()).await.expect("the bytes");
    assert!(back[..] == data[..]);
}

/// Two stores on one stream with these object limits.
async fn two_nodes_with(
    backend: &JetStream,
    objects: ObjectLimits,
) -> (JetStreamStore, JetStreamStore) {
    let open = || {
        JetStreamStore::open(JetStreamOptions {
            stream: backend.stream.clone(),
            objects,
            connect_timeout: Duration::from_secs(30),
            ..JetStreamOptions::new(backend.urls.clone())
        })
    };
    (
        open().await.expect("the store opens"),
        open().await.expect("the store opens"),
    )
}

/// Prepares `nightly/r` through `store` and moves it to running.
async fn running(store: &impl RunStore) -> RunKey {
    store
        .prepare_run(metadata("one"), initial_state())
        .await
        .expect("prepared");
    let key = RunKey {
        task_id: "nightly".into(),
        run_id: "r".into(),
    };
    set(store, &key, RunStatus::Running).await;
    key
}

/// Moves a run to `status`.
async fn set(store: &impl RunStore, key: &RunKey, status: RunStatus) {
    let patch = RunStatePatch {
        status: Some(status),
        ..RunStatePatch::default()
    };
    store.update_state(key, patch).await.expect("a status");
}

/// The state a test run starts in.
fn initial_state() -> RunStateSnapshotInput {
    RunStateSnapshotInput {
        attempt: 1,
        started_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_seq: None,
        summary: None,
    }
}

/// An artifact of `key`.
fn artifact(key: &RunKey, name: &str) -> ObjectRef {
    ObjectRef {
        key: key.clone(),
        kind: ObjectKind::Artifact,
        name: name.into(),
        checkpoint_seq: 0,
    }
}

/// What a commit of `data` says.
fn commit_of(data: &[u8]) -> UploadCommit {
    UploadCommit {
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
    }
}

/// A stream that opens an upload through one node takes it over from an
/// earlier stream through another: the earlier one may write no more, and
/// once the upload is committed, no stream writes to it.
async fn the_later_stream_of_an_upload_takes_it_over(backend: &JetStream) {
    let (a, b) = two_nodes_with(backend, ObjectLimits::default()).await;
    let key = running(&a).await;
    let object = artifact(&key, "out.bin");
    let mut earlier = a.open_upload(object.clone(), "u").await.expect("opens");
    earlier
        .write(0, vec![1; 1000].into())
        .await
        .expect("a write");
    let mut later = b.open_upload(object.clone(), "u").await.expect("resumes");
    assert_eq!(later.size(), 1000);
    assert!(matches!(
        earlier.write(1000, vec![2; 10].into()).await,
        Err(StoreError::UploadTakenOver { .. })
    ));
    later
        .write(1000, vec![3; 500].into())
        .await
        .expect("a write");
    let third = a.open_upload(object.clone(), "u").await.expect("resumes");
    let mut data = vec![1; 1000];
    data.extend([3; 500]);
    let info = third.commit(commit_of(&data)).await.expect("committed");
    assert_eq!(info.size, 1500);
    assert!(matches!(
        later.write(1500, vec![4; 10].into()).await,
        Err(StoreError::UploadTakenOver { .. })
    ));
    let (_, mut reader) = b.open_object(object).await.expect("it opens");
    assert!(reader.read_at(0, 1500).await.expect("a read")[..] == data[..]);
}

/// Two uploads of one run, each through its own node, are held to the
/// run's `max_run_objects_bytes` together.
async fn uploads_through_two_nodes_count_against_one_limit(backend: &JetStream) {
    let limits = ObjectLimits {
        max_run_objects_bytes: 1000,
        ..ObjectLimits::default()
    };
    let (a, b) = two_nodes_with(backend, limits).await;
    let key = running(&a).await;
    let mut first = a
        .open_upload(artifact(&key, "one"), "u1")
        .await
        .expect("opens");
    let mut second = b
        .open_upload(artifact(&key, "two"), "u2")
        .await
        .expect("opens");
    first.write(0, vec![1; 800].into()).await.expect("a write");
    assert!(matches!(
        second.write(0, vec![2; 800].into()).await,
        Err(StoreError::ObjectTooLarge {
            limit: "max_run_objects_bytes",
            ..
        })
    ));
    second
        .write(0, vec![2; 200].into())
        .await
        .expect("what fits");
}

/// A commit that stopped after its record, before it dropped its
/// upload's key: the sweep drops the key and keeps the object's bytes,
/// and the upload's status says the object is complete.
async fn the_sweep_keeps_a_committed_objects_chunks(backend: &JetStream) {
    let data = vec![7u8; 300_000];
    let (a, _, object, upload) = staged(backend, "kept.bin", &data).await;
    upload.commit(commit_of(&data)).await.expect("committed");

    // The key as a commit that stopped leaves it.
    let js = jetstream_of(backend).await;
    let objects = js
        .get_stream(format!("OBJ_{}_OBJECTS", backend.stream))
        .await
        .expect("the bucket");
    let meta_subject = format!(
        "$O.{}_OBJECTS.M.{}",
        backend.stream,
        base64::engine::general_purpose::URL_SAFE.encode("nightly/r/artifacts/kept.bin")
    );
    let meta = objects
        .get_last_raw_message_by_subject(&meta_subject)
        .await
        .expect("the meta message");
    let nuid = serde_json::from_slice::<serde_json::Value>(&meta.payload).expect("JSON")["nuid"]
        .as_str()
        .expect("a nuid")
        .to_owned();
    let runs = js.get_stream(&backend.stream).await.expect("the stream");
    let origin = runs
        .raw_message_builder()
        .sequence(1)
        .next_by_subject(format!("{}.run.nightly.r", backend.stream))
        .send()
        .await
        .expect("the prepared record")
        .sequence;
    let uploads = js
        .get_key_value(format!("{}_UPLOADS", backend.stream))
        .await
        .expect("the uploads bucket");
    let left = serde_json::json!({
        "kind": "artifact", "checkpointSeq": 0, "name": "kept.bin", "nuid": nuid,
        "origin": origin, "openedAt": 0, "state": "committing",
    });
    uploads
        .put("nightly.r.u", left.to_string().into())
        .await
        .expect("a key");

    let status = a
        .upload_status(object.clone(), "u")
        .await
        .expect("a status");
    assert_eq!(status.committed_size, 0);
    assert_eq!(status.complete.map(|info| info.size), Some(300_000));
    set(&a, &object.key, RunStatus::Completed).await;
    assert_eq!(a.sweep_uploads(Duration::ZERO).await.expect("a sweep"), 1);
    assert!(
        uploads.get("nightly.r.u").await.expect("a read").is_none(),
        "the key is gone"
    );
    let (_, mut reader) = a.open_object(object).await.expect("it opens");
    assert!(
        reader
            .read_at(0, 300_000)
            .await
            .expect("the bytes are kept")[..]
            == data[..]
    );
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
    let steps: Vec<_> = history(&b, &key)
        .await
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

/// The entries a run holds now (the first MiB of them).
async fn history(store: &impl RunStore, key: &RunKey) -> Vec<LogEntry> {
    let from = ReadFrom {
        history_only: true,
        ..ReadFrom::default()
    };
    let mut reader = store.open_reader(key, from).await.expect("a reader");
    reader.read(1 << 20).await.expect("a read").entries
}
