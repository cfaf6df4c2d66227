//! Objects: uploads that appear whole and verified or not at all, resume
//! from what the store holds, and never replace other bytes; checkpoint
//! slots reserved, then committed, only forward; downloads by range.

use std::time::Duration;

use baa_logging_config::Limits;
use sha2::{Digest, Sha256};

use super::{Backend, key, prepare, read_all, set_status, text};
use crate::{
    ObjectReader, ObjectStore, ObjectUpload, RunStore, StoreError,
    model::{LogEntry, RunKey, RunStatePatch, RunStatus, WorkerLifecycleEventType},
    objects::{ObjectKind, ObjectRef, UploadCommit},
    run_store::ReadFrom,
};

/// An artifact of `key`.
fn artifact(key: &RunKey, name: &str) -> ObjectRef {
    ObjectRef {
        key: key.clone(),
        kind: ObjectKind::Artifact,
        name: name.into(),
        checkpoint_seq: 0,
    }
}

/// A checkpoint object of `key` in `slot`.
fn checkpoint(key: &RunKey, slot: u64, name: &str) -> ObjectRef {
    ObjectRef {
        key: key.clone(),
        kind: ObjectKind::Checkpoint,
        name: name.into(),
        checkpoint_seq: slot,
    }
}

/// `len` bytes that differ from one offset to the next, from `seed`.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed) * 7 + (i as u64 >> 9)) as u8)
        .collect()
}

/// What a commit of `data` says.
fn commit_of(data: &[u8]) -> UploadCommit {
    UploadCommit {
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
    }
}

/// Uploads `data` as `object` in writes of `piece` bytes, and commits it.
async fn upload<S: RunStore>(
    store: &S,
    object: &ObjectRef,
    upload_id: &str,
    data: &[u8],
    piece: usize,
) -> Result<crate::objects::ObjectInfo, StoreError> {
    let mut upload = store.open_upload(object.clone(), upload_id).await?;
    let mut at = upload.size() as usize;
    while at < data.len() {
        let end = (at + piece).min(data.len());
        upload
            .write(at as u64, bytes::Bytes::copy_from_slice(&data[at..end]))
            .await?;
        at = end;
    }
    upload.commit(commit_of(data)).await
}

/// The whole of `object`, read in pieces of `piece` bytes.
async fn download<S: RunStore>(store: &S, object: &ObjectRef, piece: usize) -> Vec<u8> {
    let (info, mut reader) = store.open_object(object.clone()).await.expect("it opens");
    let mut data = Vec::new();
    while (data.len() as u64) < info.size {
        let want = piece.min((info.size - data.len() as u64) as usize);
        let got = reader
            .read_at(data.len() as u64, want)
            .await
            .expect("a read");
        assert_eq!(got.len(), want);
        data.extend_from_slice(&got);
    }
    data
}

/// Objects of 0 bytes, 1 byte and a few MiB, written in pieces of odd
/// sizes, come back whole, are listed by kind and name with their size
/// and digest, and read by any range.
pub async fn objects_round_trip_by_any_range(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let large = bytes(3 * 1024 * 1024 + 12_345, 1);
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("one", vec![42]),
        ("dir/large.bin", large.clone()),
    ];
    for (index, (name, data)) in cases.iter().enumerate() {
        let info = upload(
            &store,
            &artifact(&run, name),
            &format!("up{index}"),
            data,
            700_001,
        )
        .await
        .expect("the upload commits");
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.sha256, commit_of(data).sha256);
    }
    for (name, data) in &cases {
        for piece in [1 << 20, 333_333] {
            assert!(
                download(&store, &artifact(&run, name), piece).await == *data,
                "{name} read in pieces of {piece} differs"
            );
        }
    }
    // Ranges read in any order, across the places where writes met.
    let (_, mut reader) = store
        .open_object(artifact(&run, "dir/large.bin"))
        .await
        .expect("it opens");
    for (offset, want) in [
        (2_900_000u64, 200_000usize),
        (0, 10),
        (700_000, 3),
        (large.len() as u64 - 1, 1),
        (1_048_570, 600_000),
    ] {
        let got = reader.read_at(offset, want).await.expect("a range");
        let at = offset as usize;
        assert!(got[..] == large[at..at + want], "range {offset}+{want}");
    }
    assert!(
        reader.read_at(large.len() as u64 - 1, 2).await.is_err(),
        "a read past the end fails"
    );
    let listing = store.list_objects(&run, None).await.expect("a listing");
    let names: Vec<_> = listing.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["dir/large.bin", "empty", "one"]);
    assert_eq!(listing.total_bytes, large.len() as u64 + 1);
    let checkpoints = store
        .list_objects(&run, Some(ObjectKind::Checkpoint))
        .await
        .expect("a listing");
    assert!(checkpoints.objects.is_empty());
    assert!(matches!(
        store.open_object(artifact(&run, "missing")).await,
        Err(StoreError::ObjectNotFound(_))
    ));
}

/// An upload that stops is resumed, by its id, from the size the store
/// gives; writes at another offset and an id of another object are
/// refused, and nothing appears before the commit.
pub async fn an_upload_resumes_from_what_the_store_holds(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let object = artifact(&run, "report.html");
    let data = bytes(1_500_000, 2);
    let mut first = store
        .open_upload(object.clone(), "u1")
        .await
        .expect("opens");
    first
        .write(0, data[..900_000].to_vec().into())
        .await
        .expect("a write");
    assert!(matches!(
        first.write(5, data[..10].to_vec().into()).await,
        Err(StoreError::UploadOffset {
            expected: 900_000,
            got: 5,
            ..
        })
    ));
    assert_eq!(first.close().await.expect("closes"), 900_000);
    let status = store
        .upload_status(object.clone(), "u1")
        .await
        .expect("a status");
    assert_eq!(status.committed_size, 900_000);
    assert!(status.complete.is_none() && status.existing.is_none());
    assert!(matches!(
        store.open_object(object.clone()).await,
        Err(StoreError::ObjectNotFound(_))
    ));
    assert!(matches!(
        store
            .open_upload(artifact(&run, "other"), "u1")
            .await
            .map(drop),
        Err(StoreError::UploadConflict { .. })
    ));
    let info = upload(&store, &object, "u1", &data, 256 * 1024)
        .await
        .expect("the resumed upload commits");
    assert_eq!(info.sha256, commit_of(&data).sha256);
    assert!(download(&store, &object, 1 << 20).await == data);
    let status = store.upload_status(object, "u1").await.expect("a status");
    assert_eq!(status.committed_size, 0);
    assert_eq!(status.complete.map(|info| info.size), Some(1_500_000));
}

/// A commit with the wrong digest drops the staged bytes and nothing
/// appears; a name holds its bytes: the same bytes again are success,
/// other bytes are refused, and the status tells before a byte is sent.
pub async fn a_name_keeps_the_bytes_it_was_committed_with(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    let object = artifact(&run, "out.txt");
    let data = bytes(100_000, 3);
    let mut wrong = store
        .open_upload(object.clone(), "u1")
        .await
        .expect("opens");
    wrong.write(0, data.clone().into()).await.expect("a write");
    let mut bad = commit_of(&data);
    bad.sha256[0] ^= 1;
    assert!(matches!(
        wrong.commit(bad).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    let status = store
        .upload_status(object.clone(), "u1")
        .await
        .expect("a status");
    assert_eq!(status.committed_size, 0, "the bytes were dropped");
    assert!(status.existing.is_none());
    let mut short = store
        .open_upload(object.clone(), "u1")
        .await
        .expect("opens");
    short
        .write(0, data[..10].to_vec().into())
        .await
        .expect("a write");
    assert!(matches!(
        short.commit(commit_of(&data)).await,
        Err(StoreError::UploadSizeMismatch {
            held: 10,
            size: 100_000,
            ..
        })
    ));

    upload(&store, &object, "u2", &data, 64 * 1024)
        .await
        .expect("the upload commits");
    upload(&store, &object, "u3", &data, 64 * 1024)
        .await
        .expect("the same bytes again are success");
    let other = bytes(100_000, 4);
    assert!(matches!(
        upload(&store, &object, "u4", &other, 64 * 1024).await,
        Err(StoreError::ObjectExists(_))
    ));
    let status = store
        .upload_status(object.clone(), "u5")
        .await
        .expect("a status");
    assert_eq!(
        status.existing.map(|info| info.sha256),
        Some(commit_of(&data).sha256)
    );
    assert!(download(&store, &object, 1 << 20).await == data);
    let listing = store.list_objects(&run, None).await.expect("a listing");
    assert_eq!(listing.objects.len(), 1);
}

/// Slots are reserved one after another, each with its lifecycle entry;
/// a checkpoint object goes only into a reserved slot past the run's
/// checkpoint; committing a slot moves `checkpoint_seq` forward only, and
/// again is success; a terminal run takes no object and no slot.
pub async fn checkpoint_slots_are_reserved_then_committed_forward(backend: &impl Backend) {
    let store = backend.open(Limits::default()).await;
    prepare(&store, "t", "r").await;
    let run = key("t", "r");
    set_status(&store, &run, RunStatus::Running).await;
    let (slot, seq) = store.reserve_checkpoint(&run).await.expect("a slot");
    assert_eq!(slot, 1);
    let entries = read_all(&store, &run, ReadFrom::default()).await;
    let reserved = entries.iter().find(|entry| entry.seq() == seq);
    assert!(
        matches!(reserved, Some(LogEntry::Lifecycle(event))
            if event.event_type == WorkerLifecycleEventType::CheckpointSlotReserved),
        "{:?}",
        reserved.map(text)
    );
    assert!(matches!(
        store
            .open_upload(checkpoint(&run, 2, "state"), "c0")
            .await
            .map(drop),
        Err(StoreError::SlotNotReserved {
            checkpoint_seq: 2,
            ..
        })
    ));
    let data = bytes(70_000, 5);
    upload(
        &store,
        &checkpoint(&run, 1, "state/model.bin"),
        "c1",
        &data,
        50_000,
    )
    .await
    .expect("a checkpoint object commits");
    assert!(matches!(
        store.commit_checkpoint(&run, 2).await,
        Err(StoreError::SlotNotReserved { .. })
    ));
    let state = store.commit_checkpoint(&run, 1).await.expect("committed");
    assert_eq!(state.checkpoint_seq, 1);
    let again = store.commit_checkpoint(&run, 1).await.expect("again");
    assert_eq!(again.checkpoint_seq, 1);
    assert!(matches!(
        store
            .open_upload(checkpoint(&run, 1, "late"), "c2")
            .await
            .map(drop),
        Err(StoreError::CheckpointClosed {
            checkpoint_seq: 1,
            current: 1,
            ..
        })
    ));
    let (second, _) = store.reserve_checkpoint(&run).await.expect("a slot");
    assert_eq!(second, 2);
    let back = RunStatePatch {
        checkpoint_seq: Some(0),
        ..RunStatePatch::default()
    };
    assert!(matches!(
        store.update_state(&run, back).await,
        Err(StoreError::CheckpointMovedBack { .. })
    ));
    let listing = store
        .list_objects(&run, Some(ObjectKind::Checkpoint))
        .await
        .expect("a listing");
    assert_eq!(listing.objects.len(), 1);
    assert_eq!(listing.objects[0].checkpoint_seq, 1);
    assert_eq!(listing.objects[0].name, "state/model.bin");
    assert!(download(&store, &checkpoint(&run, 1, "state/model.bin"), 1 << 20).await == data);

    // An upload open when the run ends cannot commit, and nothing more
    // opens.
    let object = artifact(&run, "late.log");
    let mut open = store
        .open_upload(object.clone(), "u1")
        .await
        .expect("opens");
    open.write(0, vec![1, 2, 3].into()).await.expect("a write");
    set_status(&store, &run, RunStatus::Completed).await;
    assert!(matches!(
        open.commit(commit_of(&[1, 2, 3])).await,
        Err(StoreError::Terminal { .. })
    ));
    for refused in [
        store.open_upload(artifact(&run, "x"), "u2").await.map(drop),
        store.reserve_checkpoint(&run).await.map(drop),
        store.commit_checkpoint(&run, 2).await.map(drop),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Terminal { .. })),
            "{refused:?}"
        );
    }
    // The sweep takes the staged uploads of a run that ended.
    assert!(
        store
            .sweep_uploads(Duration::from_secs(3600))
            .await
            .expect("a sweep")
            >= 1
    );
    let status = store.upload_status(object, "u1").await.expect("a status");
    assert_eq!(status.committed_size, 0);
}
