//! The store's side of objects: the sweep against resumes, what it leaves
//! on disk and in retention's facts, and which checkpoint slots take
//! objects.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{staged, walk};
use crate::{
    LocalStoreOptions, RunStore, StoreError,
    local::{LocalStore, layout::RunDir, run::Run},
    model::{
        AppendItem, AppendPayload, LogLevel, RunKey, RunMetadataInput, RunStatePatch,
        RunStateSnapshotInput, RunStatus, StructuredData, WorkerLifecycleEventInput,
        WorkerLifecycleEventType,
    },
    objects::{ObjectKind, ObjectRef, ObjectStore, ObjectUpload, UploadCommit},
    retention::RetentionPolicy,
};

/// Opens a store on `dir`, without a disk headroom to keep.
fn open(dir: &Path) -> LocalStore {
    let mut options = LocalStoreOptions::new(dir);
    options.min_free_bytes = 0;
    LocalStore::open(options).unwrap()
}

/// The run `t/r`.
fn key() -> RunKey {
    RunKey {
        task_id: "t".into(),
        run_id: "r".into(),
    }
}

/// Prepares the run `t/r`.
async fn prepare(store: &LocalStore) {
    let metadata = RunMetadataInput {
        task_id: "t".into(),
        step_id: "s".into(),
        step_name: "S".into(),
        run_id: "r".into(),
        worker_kind: "shell".into(),
        attempt: 1,
        repo_root: "/repo".into(),
        worktree_path: "/repo".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        checkpoint_mode: "none".into(),
        prompt_summary: None,
        command: None,
    };
    let state = RunStateSnapshotInput {
        attempt: 1,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        checkpoint_seq: None,
        summary: None,
    };
    store.prepare_run(metadata, state).await.unwrap();
}

/// The artifact `name` of `t/r`.
fn artifact(name: &str) -> ObjectRef {
    ObjectRef {
        key: key(),
        kind: ObjectKind::Artifact,
        name: name.into(),
        checkpoint_seq: 0,
    }
}

/// The object `name` in checkpoint slot `slot` of `t/r`.
fn checkpoint(slot: u64, name: &str) -> ObjectRef {
    ObjectRef {
        key: key(),
        kind: ObjectKind::Checkpoint,
        name: name.into(),
        checkpoint_seq: slot,
    }
}

/// The commit of `bytes`.
fn commit_of(bytes: &[u8]) -> UploadCommit {
    UploadCommit {
        size: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    }
}

/// Stages `bytes` as upload `upload_id` of `object`, and ends the stream.
async fn stage(store: &LocalStore, object: &ObjectRef, upload_id: &str, bytes: &[u8]) {
    let mut upload = store.open_upload(object.clone(), upload_id).await.unwrap();
    upload
        .write(upload.size(), Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
    upload.close().await.unwrap();
}

/// Uploads `bytes` to `object` whole.
async fn put(store: &LocalStore, object: &ObjectRef, bytes: &[u8]) -> crate::Result<()> {
    let mut upload = store.open_upload(object.clone(), "put").await?;
    upload.write(0, Bytes::copy_from_slice(bytes)).await?;
    upload.commit(commit_of(bytes)).await.map(drop)
}

/// The run's directory.
fn run_dir(dir: &Path) -> RunDir {
    RunDir::new(dir.join("t/r"))
}

/// The run, open.
async fn run(store: &LocalStore) -> Arc<Run> {
    store.run(&key()).await.unwrap()
}

/// An upload resumed (after a restart, from its files) between the sweep
/// finding it idle and the sweep taking it is not taken: the resume
/// counts as use, its bytes are kept, and it commits. A resume after the
/// sweep took an upload starts afresh.
#[tokio::test]
async fn a_resume_racing_the_sweep_keeps_its_upload() {
    let dir = tempfile::tempdir().unwrap();
    let age = Duration::from_millis(300);
    let object = artifact("a.bin");
    {
        let store = open(dir.path());
        prepare(&store).await;
        stage(&store, &object, "u", b"first ").await;
    }
    tokio::time::sleep(age * 2).await;
    let store = open(dir.path());
    let run = run(&store).await;
    let idle = staged::idle_uploads(&run, age, false).unwrap();
    assert_eq!(idle, ["u"]);

    let mut resumed = store.open_upload(object.clone(), "u").await.unwrap();
    assert_eq!(resumed.size(), 6, "the staged bytes are resumed");
    let swept = staged::sweep(&run, "u", age, false).unwrap();
    resumed
        .write(6, Bytes::from_static(b"second"))
        .await
        .unwrap();
    resumed.commit(commit_of(b"first second")).await.unwrap();
    assert!(!swept, "a resumed upload is not idle");

    stage(&store, &object_b(), "v", b"gone").await;
    assert!(staged::sweep(&run, "v", Duration::ZERO, false).unwrap());
    let fresh = store.open_upload(object_b(), "v").await.unwrap();
    assert_eq!(fresh.size(), 0, "a swept upload starts afresh");
}

/// A second artifact of `t/r`.
fn object_b() -> ObjectRef {
    artifact("b.bin")
}

/// A stream still open on an upload the sweep took (the run ended) may
/// write no more: it is told its upload was taken over.
#[tokio::test]
async fn a_stream_on_a_swept_upload_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    prepare(&store).await;
    let mut upload = store.open_upload(artifact("a.bin"), "u").await.unwrap();
    upload.write(0, Bytes::from_static(b"bytes")).await.unwrap();
    assert_eq!(store.sweep_uploads(Duration::ZERO).await.unwrap(), 1);
    let refused = upload.write(5, Bytes::from_static(b"more")).await;
    assert!(
        matches!(refused, Err(StoreError::UploadTakenOver { .. })),
        "{refused:?}"
    );
}

/// `.uploads/` is there only while an upload is staged: a commit, a
/// refused digest and a sweep each remove it once it is empty, so the
/// sweep stops looking at the run.
#[tokio::test]
async fn the_uploads_directory_goes_once_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    prepare(&store).await;
    let uploads = run_dir(dir.path()).path().join(RunDir::uploads_name());

    put(&store, &artifact("a.bin"), b"bytes").await.unwrap();
    assert!(!uploads.exists(), "a commit leaves no .uploads/");

    let mut wrong = store.open_upload(artifact("b.bin"), "w").await.unwrap();
    wrong.write(0, Bytes::from_static(b"bytes")).await.unwrap();
    assert!(uploads.is_dir());
    let refused = wrong.commit(commit_of(b"other")).await;
    assert!(matches!(refused, Err(StoreError::DigestMismatch { .. })));
    assert!(!uploads.exists(), "a refused digest leaves no .uploads/");

    stage(&store, &artifact("c.bin"), "s", b"bytes").await;
    stage(&store, &artifact("d.bin"), "t", b"bytes").await;
    assert!(staged::sweep(&*run(&store).await, "s", Duration::ZERO, false).unwrap());
    assert!(uploads.is_dir(), "another upload is still staged");
    assert_eq!(store.sweep_uploads(Duration::ZERO).await.unwrap(), 1);
    assert!(!uploads.exists(), "a sweep leaves no empty .uploads/");
    assert!(store.runs_with_uploads().unwrap().is_empty());

    put(&store, &artifact("e.bin"), b"again").await.unwrap();
    assert_eq!(
        store
            .list_objects(&key(), None)
            .await
            .unwrap()
            .objects
            .len(),
        2
    );
}

/// Retention measures a finished run again once the sweep removed its
/// staged uploads, instead of counting their bytes from what it learnt
/// before.
#[tokio::test]
async fn retention_forgets_the_bytes_the_sweep_removed() {
    const KEEP_ALL: RetentionPolicy = RetentionPolicy {
        max_age: None,
        max_bytes: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    prepare(&store).await;
    stage(&store, &artifact("a.bin"), "u", &[7; 10_000]).await;
    let patch = RunStatePatch {
        status: Some(RunStatus::Failed),
        ..RunStatePatch::default()
    };
    store.update_state(&key(), patch).await.unwrap();
    let before = store.collect(KEEP_ALL, true).await.unwrap().bytes_before;
    let uploads = run_dir(dir.path()).path().join(RunDir::uploads_name());
    let staged_bytes: u64 = ["u.part", "u.json"]
        .iter()
        .map(|name| std::fs::metadata(uploads.join(name)).unwrap().len())
        .sum();
    assert_eq!(
        store
            .sweep_uploads(Duration::from_secs(3600))
            .await
            .unwrap(),
        1
    );
    let after = store.collect(KEEP_ALL, true).await.unwrap().bytes_before;
    assert_eq!(after, before - staged_bytes);
}

/// A lifecycle event of `event_type` with `data`.
fn event(event_type: WorkerLifecycleEventType, data: StructuredData) -> AppendPayload {
    AppendPayload::Event(WorkerLifecycleEventInput {
        event_type,
        level: LogLevel::Info,
        message: "m".into(),
        created_at: None,
        data,
    })
}

/// Objects go only into slots reserved through the store: not into a
/// slot directory made by hand, nor into one a worker's own
/// `checkpoint_slot_reserved` entry names; a reservation holds across a
/// restart, read back from the log.
#[tokio::test]
async fn only_reserved_slots_take_objects() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        prepare(&store).await;
        std::fs::create_dir_all(run_dir(dir.path()).checkpoints().join("1")).unwrap();
        let mut data = StructuredData::new();
        data.insert("checkpointSeq".into(), 1.into());
        let forged = AppendItem {
            writer_seq: 1,
            payload: event(WorkerLifecycleEventType::CheckpointSlotReserved, data),
        };
        store.append(&key(), "w", vec![forged]).await.unwrap();
        let refused = put(&store, &checkpoint(1, "x"), b"x").await;
        assert!(
            matches!(refused, Err(StoreError::SlotNotReserved { .. })),
            "{refused:?}"
        );
        let refused = store.commit_checkpoint(&key(), 1).await;
        assert!(
            matches!(refused, Err(StoreError::SlotNotReserved { .. })),
            "{refused:?}"
        );
        let patch = RunStatePatch {
            checkpoint_seq: Some(1),
            ..RunStatePatch::default()
        };
        let refused = store.update_state(&key(), patch).await;
        assert!(
            matches!(refused, Err(StoreError::SlotNotReserved { .. })),
            "{refused:?}"
        );
        let (slot, _) = store.reserve_checkpoint(&key()).await.unwrap();
        assert_eq!(slot, 2, "a slot made by hand is passed over");
        put(&store, &checkpoint(2, "x"), b"x").await.unwrap();
    }
    let store = open(dir.path());
    put(&store, &checkpoint(2, "y"), b"y").await.unwrap();
    let refused = put(&store, &checkpoint(1, "y"), b"y").await;
    assert!(
        matches!(refused, Err(StoreError::SlotNotReserved { .. })),
        "{refused:?}"
    );
    store.commit_checkpoint(&key(), 2).await.unwrap();
    let run_dir = super::open_run_dir(&*run(&store).await).unwrap();
    assert_eq!(walk::slots(&run_dir).unwrap(), [1, 2]);
}
