//! Artifacts and checkpoints: uploads staged and committed whole by size
//! and SHA-256, resumed after a broken connection or a killed server,
//! downloads from an offset, listings, checkpoint slots, path checks,
//! limits, scopes and retention.

use std::{path::Path, sync::Arc, time::Instant};

use baa_logd::{Security, ServerConfig, security::TokenSet};
use baa_logging::pb;
use baa_logging_client::{
    Client, ConnectOptions, LoggingClient, NewRun, ObjectName, RunKey, TransferOptions,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::util::{
    TestServer, assert_status, json_lines,
    metrics::{scrape, start_with_metrics},
    prepare,
    process::ServerProcess,
};

/// `size` bytes of pseudo-random content written to `path`.
pub(crate) fn random_file(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; size];
    rng.fill(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// A reference to artifact `name` of `task/run`.
pub(crate) fn artifact(task: &str, run: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        task_id: task.into(),
        run_id: run.into(),
        kind: pb::ObjectKind::Artifact.into(),
        name: name.into(),
        checkpoint_seq: 0,
    }
}

/// The messages of an upload of `bytes` from `offset`, in 256 KiB
/// pieces, the first with `open`, the last with the commit of `whole`
/// (when given).
pub(crate) fn upload_messages(
    object: pb::ObjectRef,
    upload_id: &str,
    bytes: &[u8],
    offset: usize,
    commit: Option<(u64, Vec<u8>)>,
) -> Vec<pb::UploadObjectRequest> {
    let mut messages: Vec<pb::UploadObjectRequest> = bytes[offset..]
        .chunks(256 * 1024)
        .scan(offset, |at, chunk| {
            let message = pb::UploadObjectRequest {
                open: None,
                offset: *at as u64,
                data: chunk.to_vec().into(),
                commit: None,
            };
            *at += chunk.len();
            Some(message)
        })
        .collect();
    if messages.is_empty() {
        messages.push(pb::UploadObjectRequest {
            open: None,
            offset: offset as u64,
            data: Default::default(),
            commit: None,
        });
    }
    messages[0].open = Some(pb::UploadOpen {
        object: Some(object),
        upload_id: upload_id.into(),
    });
    if let Some((size, sha256)) = commit {
        messages.last_mut().unwrap().commit = Some(pb::UploadCommit { size, sha256 });
    }
    messages
}

/// Sends an upload stream.
pub(crate) async fn upload(
    client: &mut LoggingClient,
    messages: Vec<pb::UploadObjectRequest>,
) -> Result<pb::UploadObjectResponse, tonic::Status> {
    client
        .upload_object(futures::stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

/// What the server holds of an upload.
pub(crate) async fn status(
    client: &mut LoggingClient,
    object: pb::ObjectRef,
    upload_id: &str,
) -> pb::GetUploadStatusResponse {
    client
        .get_upload_status(pb::GetUploadStatusRequest {
            object: Some(object),
            upload_id: upload_id.into(),
        })
        .await
        .expect("a status")
        .into_inner()
}

/// The files under a directory, recursively, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            found.extend(
                files_under(&entry.path())
                    .into_iter()
                    .map(|inner| format!("{name}/{inner}")),
            );
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

/// Objects of 0 bytes, 1 byte and 200 MiB go up and come back with the
/// same bytes, land in `artifacts/` under their names, and are listed
/// with their sizes and digests; the 200 MiB round trip is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_0_1_and_200_mib_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    let options = TransferOptions::default();
    for (name, size) in [("empty", 0), ("one", 1), ("big/blob.bin", 200 << 20)] {
        let local = dir.path().join(format!("{}.in", name.replace('/', "_")));
        let bytes = random_file(&local, size, size as u64);
        let started = Instant::now();
        let stored = client
            .upload_file(&key, &ObjectName::artifact(name), &local, &options)
            .await
            .unwrap();
        let uploaded = started.elapsed();
        assert_eq!(stored.size, size as u64);
        assert_eq!(stored.sha256, sha256(&bytes));
        let on_disk = server.data_dir.join("t/r/artifacts").join(name);
        assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), size as u64);
        let out = dir.path().join(format!("{}.out", name.replace('/', "_")));
        let started = Instant::now();
        let fetched = client
            .download_file(&key, &ObjectName::artifact(name), &out, &options)
            .await
            .unwrap();
        let downloaded = started.elapsed();
        assert_eq!(fetched.sha256, stored.sha256);
        assert!(std::fs::read(&out).unwrap() == bytes, "{name} differs");
        if size > 1 {
            eprintln!("{name}: {size} bytes up in {uploaded:?}, down in {downloaded:?}");
        }
    }
    let listing = client
        .list_objects(&key, pb::ObjectKind::Unspecified)
        .await
        .unwrap();
    let names: Vec<_> = listing.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["big/blob.bin", "empty", "one"]);
    assert_eq!(listing.total_bytes, (200 << 20) + 1);
    assert!(listing.objects.iter().all(|o| o.sha256.len() == 32));
    server.stop().await;
}

/// A connection cut in the middle of an upload keeps what the server
/// received: `GetUploadStatus` tells the offset, the upload resumes there
/// on a new connection, and the object is the file, byte for byte.
#[tokio::test]
async fn an_upload_cut_off_resumes_from_the_server_offset() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = random_file(&dir.path().join("f"), 3 << 20, 7);
    let object = artifact("t", "r", "f.bin");

    // A connection of its own, cut after 1 MiB was sent.
    let mut doomed = server.client().await;
    let (tx, rx) = mpsc::channel(8);
    let call = tokio::spawn(async move { doomed.upload_object(ReceiverStream::new(rx)).await });
    for message in upload_messages(object.clone(), "up-1", &bytes[..1 << 20], 0, None) {
        tx.send(message).await.unwrap();
    }
    // Until the server holds what was sent, then the connection goes.
    let mut held = 0;
    for _ in 0..200 {
        held = status(&mut client, object.clone(), "up-1")
            .await
            .committed_size;
        if held == 1 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(held, 1 << 20);
    call.abort();
    drop(tx);
    assert!(
        files_under(&server.data_dir.join("t/r/artifacts")).is_empty(),
        "nothing is visible before the commit"
    );

    let offset = status(&mut client, object.clone(), "up-1")
        .await
        .committed_size as usize;
    let commit = Some((bytes.len() as u64, sha256(&bytes)));
    let done = upload(
        &mut client,
        upload_messages(object.clone(), "up-1", &bytes, offset, commit),
    )
    .await
    .unwrap();
    assert!(done.committed);
    let stored = std::fs::read(server.data_dir.join("t/r/artifacts/f.bin")).unwrap();
    assert!(stored == bytes);
    // Committed, the upload is complete; its staging is gone.
    let after = status(&mut client, object, "up-1").await;
    assert!(after.complete);
    assert!(files_under(&server.data_dir.join("t/r/.uploads")).is_empty());
    server.stop().await;
}

/// A commit whose digest is not the bytes' is refused with `DATA_LOSS`;
/// no object appears, and the staged bytes are gone. Sizes that do not
/// match and offsets past the held bytes are refused too.
#[tokio::test]
async fn a_wrong_digest_is_refused_and_nothing_appears() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = vec![7u8; 1000];
    let object = artifact("t", "r", "x");
    let wrong = Some((1000, sha256(b"other")));
    let result = upload(
        &mut client,
        upload_messages(object.clone(), "u", &bytes, 0, wrong),
    )
    .await;
    assert_status(result, Code::DataLoss, "SHA-256");
    assert!(files_under(&server.data_dir.join("t/r/artifacts")).is_empty());
    assert!(files_under(&server.data_dir.join("t/r/.uploads")).is_empty());
    assert_eq!(
        status(&mut client, object.clone(), "u")
            .await
            .committed_size,
        0
    );

    let short = Some((999, sha256(&bytes[..999])));
    let result = upload(
        &mut client,
        upload_messages(object.clone(), "u2", &bytes, 0, short),
    )
    .await;
    assert_status(result, Code::FailedPrecondition, "holds 1000 bytes");
    let mut gap = upload_messages(object.clone(), "u3", &bytes, 0, None);
    gap[0].offset = 10;
    assert_status(upload(&mut client, gap).await, Code::OutOfRange, "offset 0");
    let listing = client
        .list_objects(pb::ListObjectsRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            kind: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listing.objects.is_empty());
    server.stop().await;
}

/// A second upload of other bytes of the same size to a taken name is
/// refused with `ALREADY_EXISTS` and leaves no trace: the listing, the
/// download and the upload status still give the first object's digest,
/// and the client's `upload_file` of the other bytes fails.
#[tokio::test]
async fn a_refused_upload_to_a_taken_name_does_not_change_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let object = artifact("t", "r", "x");
    let first = vec![1u8; 1000];
    let second = vec![2u8; 1000];
    upload(
        &mut client,
        upload_messages(object.clone(), "a", &first, 0, Some((1000, sha256(&first)))),
    )
    .await
    .unwrap();
    let refused = upload(
        &mut client,
        upload_messages(
            object.clone(),
            "b",
            &second,
            0,
            Some((1000, sha256(&second))),
        ),
    )
    .await;
    assert_status(refused, Code::AlreadyExists, "x");
    let listing = client
        .list_objects(pb::ListObjectsRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            kind: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listing.objects.len(), 1);
    assert_eq!(listing.objects[0].sha256, sha256(&first));
    let status_a = status(&mut client, object.clone(), "a").await;
    assert_eq!(status_a.object.unwrap().sha256, sha256(&first));

    let typed = server.typed_client().await;
    let local = dir.path().join("second.bin");
    std::fs::write(&local, &second).unwrap();
    let key = RunKey::new("t", "r");
    let err = typed
        .upload_file(
            &key,
            &ObjectName::artifact("x"),
            &local,
            &TransferOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::AlreadyExists), "{err}");
    let back = dir.path().join("back.bin");
    let info = typed
        .download_file(
            &key,
            &ObjectName::artifact("x"),
            &back,
            &TransferOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.sha256, sha256(&first));
    assert_eq!(std::fs::read(&back).unwrap(), first);
    server.stop().await;
}

/// `upload_file` learns that its name is taken before it sends a byte:
/// a file of other content under that name, of the same size or another,
/// fails with `ALREADY_EXISTS` while the server's count of object bytes
/// received stays at the first upload's and nothing is staged; a file of
/// the same content is success. `GetUploadStatus` names the object in
/// place as `existing` also for an upload that holds staged bytes.
#[tokio::test]
async fn an_upload_to_a_taken_name_fails_before_sending_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (server, metrics_addr) =
        start_with_metrics(&dir.path().join("data"), ServerConfig::default()).await;
    let mut stub = server.client().await;
    prepare(&mut stub, "t", "r").await;
    let client = server.typed_client().await;
    let key = RunKey::new("t", "r");
    let name = ObjectName::artifact("model.bin");
    let options = TransferOptions::default();
    let received = || async {
        scrape(metrics_addr)
            .await
            .value("baa_logd_object_received_bytes_total")
    };
    let first_path = dir.path().join("first.bin");
    let first = random_file(&first_path, 3 << 20, 1);
    client
        .upload_file(&key, &name, &first_path, &options)
        .await
        .unwrap();
    assert_eq!(received().await, first.len() as f64);

    for (file, size, seed) in [
        ("same-size.bin", first.len(), 2),
        ("longer.bin", first.len() + 1, 3),
    ] {
        let path = dir.path().join(file);
        random_file(&path, size, seed);
        let err = client
            .upload_file(&key, &name, &path, &options)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::AlreadyExists), "{err}");
        assert!(err.to_string().contains("was not sent"), "{err}");
    }
    assert_eq!(
        received().await,
        first.len() as f64,
        "the server received bytes for a taken name"
    );
    let staged = files_under(&server.data_dir.join("t/r/.uploads"));
    assert!(staged.is_empty(), "{staged:?}");

    // The same content from another file (another upload id) is the
    // object already there.
    let copy = dir.path().join("copy.bin");
    std::fs::write(&copy, &first).unwrap();
    let stored = client
        .upload_file(&key, &name, &copy, &options)
        .await
        .unwrap();
    assert_eq!(stored.sha256, sha256(&first));
    assert_eq!(received().await, first.len() as f64);

    // An upload that staged bytes before the name was taken is told too.
    let object = artifact("t", "r", "late.bin");
    let partial = upload(
        &mut stub,
        upload_messages(object.clone(), "slow", &[7u8; 1000], 0, None),
    )
    .await
    .unwrap();
    assert!(!partial.committed);
    let winner = [8u8; 2000];
    upload(
        &mut stub,
        upload_messages(
            object.clone(),
            "fast",
            &winner,
            0,
            Some((2000, sha256(&winner))),
        ),
    )
    .await
    .unwrap();
    let slow = status(&mut stub, object, "slow").await;
    assert_eq!(slow.committed_size, 1000);
    assert!(!slow.complete);
    assert_eq!(slow.existing.unwrap().sha256, sha256(&winner));
    server.stop().await;
}

/// Names that would leave the run's directories are refused before they
/// touch the disk; symbolic links planted in the run are never followed,
/// for uploads or downloads, and nothing is written outside the run.
#[tokio::test]
async fn traversal_and_symlinks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = b"payload".to_vec();
    let commit = || Some((bytes.len() as u64, sha256(&bytes)));
    for bad in [
        "../escape",
        "/etc/passwd",
        "a/../../x",
        "a//b",
        "a\\b",
        "x\u{202E}y",
    ] {
        let result = upload(
            &mut client,
            upload_messages(artifact("t", "r", bad), "u", &bytes, 0, commit()),
        )
        .await;
        assert_status(result, Code::InvalidArgument, "object name");
    }
    let bad_id = upload(
        &mut client,
        upload_messages(artifact("t", "r", "ok"), "../id", &bytes, 0, commit()),
    )
    .await;
    assert_status(bad_id, Code::InvalidArgument, "upload_id");

    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "keep").unwrap();
    let artifacts = server.data_dir.join("t/r/artifacts");
    std::os::unix::fs::symlink(&outside, artifacts.join("evil")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), artifacts.join("link")).unwrap();
    let through_dir = upload(
        &mut client,
        upload_messages(artifact("t", "r", "evil/new"), "u1", &bytes, 0, commit()),
    )
    .await;
    assert_status(through_dir, Code::FailedPrecondition, "symbolic link");
    let over_link = upload(
        &mut client,
        upload_messages(artifact("t", "r", "link"), "u2", &bytes, 0, commit()),
    )
    .await;
    assert_status(over_link, Code::AlreadyExists, "exists");
    let mut read = client
        .download_object(pb::DownloadObjectRequest {
            object: Some(artifact("t", "r", "link")),
            offset: 0,
        })
        .await;
    if let Ok(stream) = &mut read {
        let first = stream.get_mut().message().await;
        assert!(first.is_err(), "a link is read: {first:?}");
    }
    assert!(read.is_err(), "a link is served");
    assert_eq!(files_under(&outside), ["secret"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "keep"
    );

    // The whole artifacts directory swapped for a link.
    std::fs::remove_file(artifacts.join("evil")).unwrap();
    std::fs::remove_file(artifacts.join("link")).unwrap();
    std::fs::remove_dir(&artifacts).unwrap();
    std::os::unix::fs::symlink(&outside, &artifacts).unwrap();
    let swapped = upload(
        &mut client,
        upload_messages(artifact("t", "r", "new"), "u3", &bytes, 0, commit()),
    )
    .await;
    assert_status(swapped, Code::FailedPrecondition, "symbolic link");
    assert_eq!(files_under(&outside), ["secret"]);
    server.stop().await;
}

/// A path component past 255 bytes (the file systems' `NAME_MAX`) and the
/// characters that print as nothing or as a plain space are refused with
/// `INVALID_ARGUMENT` naming the rule, before anything is staged; a
/// component of 255 bytes is an object.
#[tokio::test]
async fn long_components_and_hidden_characters_are_invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let commit = Some((1, sha256(b"x")));
    let long = format!("dir/{}", "a".repeat(256));
    let result = upload(
        &mut client,
        upload_messages(artifact("t", "r", &long), "u", b"x", 0, commit.clone()),
    )
    .await;
    assert_status(
        result,
        Code::InvalidArgument,
        "256 bytes, over the limit of 255",
    );
    for hidden in ['\u{2028}', '\u{00A0}', '\u{00AD}', '\u{3164}', '\u{115F}'] {
        let name = format!("report{hidden}.txt");
        let result = upload(
            &mut client,
            upload_messages(artifact("t", "r", &name), "u", b"x", 0, commit.clone()),
        )
        .await;
        assert_status(result, Code::InvalidArgument, "invisible");
    }
    assert!(files_under(&server.data_dir.join("t/r/.uploads")).is_empty());
    let fits = format!("dir/{}", "a".repeat(255));
    let done = upload(
        &mut client,
        upload_messages(artifact("t", "r", &fits), "v", b"x", 0, commit),
    )
    .await
    .unwrap();
    assert!(done.committed);
    server.stop().await;
}

/// A slot directory named after the largest slot number, made by hand,
/// leaves no slot to reserve: `FAILED_PRECONDITION`, not a crash.
#[tokio::test]
async fn no_slot_is_reserved_past_the_largest_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    std::fs::create_dir_all(
        server
            .data_dir
            .join(format!("t/r/checkpoints/{}", u64::MAX)),
    )
    .unwrap();
    let reserve = client
        .reserve_checkpoint(pb::ReserveCheckpointRequest {
            task_id: "t".into(),
            run_id: "r".into(),
        })
        .await;
    assert_status(reserve, Code::FailedPrecondition, "no checkpoint slot left");
    server.stop().await;
}

/// A slot directory made by hand, with no reservation in the run's log,
/// takes no objects and cannot be committed: `FAILED_PRECONDITION`, and
/// nothing is written into it.
#[tokio::test]
async fn a_slot_made_by_hand_is_not_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    std::fs::create_dir_all(server.data_dir.join("t/r/checkpoints/1")).unwrap();
    let local = dir.path().join("state.bin");
    random_file(&local, 1000, 1);
    let refused = client
        .upload_file(
            &key,
            &ObjectName::checkpoint(1, "state.bin"),
            &local,
            &TransferOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");
    let refused = client.commit_checkpoint(&key, 1).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");
    assert!(files_under(&server.data_dir.join("t/r/checkpoints")).is_empty());
    assert_eq!(client.reserve_checkpoint(&key).await.unwrap(), 2);
    server.stop().await;
}

/// A server killed with SIGKILL in the middle of an upload leaves no part
/// of the object visible; once it is back, the upload resumes from the
/// offset it reports and the object is whole.
#[tokio::test]
async fn a_killed_server_leaves_no_partial_object_and_the_upload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    let addr = server.addr;
    let mut client = baa_logging_client::connect(server.url()).await.unwrap();
    prepare(&mut client, "t", "r").await;
    let bytes = random_file(&dir.path().join("f"), 4 << 20, 9);
    let object = artifact("t", "r", "model.ckpt");
    let (tx, rx) = mpsc::channel(8);
    let mut sender = client.clone();
    let call = tokio::spawn(async move { sender.upload_object(ReceiverStream::new(rx)).await });
    for message in upload_messages(object.clone(), "k", &bytes[..2 << 20], 0, None) {
        tx.send(message).await.unwrap();
    }
    for _ in 0..200 {
        if status(&mut client, object.clone(), "k")
            .await
            .committed_size
            == 2 << 20
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill();
    let _ = call.await;
    assert!(files_under(&data.join("t/r/artifacts")).is_empty());

    let server = ServerProcess::start_on(&data, addr);
    let mut client = baa_logging_client::connect(server.url()).await.unwrap();
    let offset = status(&mut client, object.clone(), "k")
        .await
        .committed_size as usize;
    assert_eq!(offset, 2 << 20);
    let commit = Some((bytes.len() as u64, sha256(&bytes)));
    let done = upload(
        &mut client,
        upload_messages(object, "k", &bytes, offset, commit),
    )
    .await
    .unwrap();
    assert!(done.committed);
    assert!(std::fs::read(data.join("t/r/artifacts/model.ckpt")).unwrap() == bytes);
    drop(server);
}

/// The descriptors `pid` holds on staged upload files.
fn staged_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.to_string_lossy().contains("/.uploads/"))
        .count()
}

/// An upload whose stream ended holds no descriptor in the server (20 idle
/// uploads, none open), and resuming one opens its file again: the bytes
/// staged before are kept, and the upload commits.
#[tokio::test]
async fn an_idle_upload_holds_no_descriptor_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    let mut client = baa_logging_client::connect(server.url()).await.unwrap();
    prepare(&mut client, "t", "r").await;
    let bytes = vec![5u8; 3000];
    for index in 0..20 {
        let object = artifact("t", "r", &format!("idle-{index}"));
        let response = upload(
            &mut client,
            upload_messages(object, &format!("u{index}"), &bytes[..1000], 0, None),
        )
        .await
        .unwrap();
        assert_eq!(response.committed_size, 1000);
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while staged_fds(server.pid()) > 0 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(staged_fds(server.pid()), 0, "idle uploads hold descriptors");

    let object = artifact("t", "r", "idle-0");
    let mut messages = upload_messages(object, "u0", &bytes, 1000, Some((3000, sha256(&bytes))));
    messages[0].offset = 1000;
    assert!(upload(&mut client, messages).await.unwrap().committed);
    assert_eq!(
        std::fs::read(data.join("t/r/artifacts/idle-0")).unwrap(),
        bytes
    );
    drop(server);
}

/// A run stages at most `max_run_uploads` unfinished uploads: one more is
/// refused with `RESOURCE_EXHAUSTED` naming the limit, while the staged
/// ones still resume, and a commit makes room again.
#[tokio::test]
async fn a_run_stages_at_most_max_run_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.objects.max_run_uploads = 3;
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = vec![9u8; 100];
    for index in 0..3 {
        let object = artifact("t", "r", &format!("o{index}"));
        upload(
            &mut client,
            upload_messages(object, &format!("u{index}"), &bytes[..50], 0, None),
        )
        .await
        .unwrap();
    }
    let refused = upload(
        &mut client,
        upload_messages(artifact("t", "r", "o3"), "u3", &bytes, 0, None),
    )
    .await;
    assert_status(refused, Code::ResourceExhausted, "max_run_uploads");
    let mut resumed = upload_messages(
        artifact("t", "r", "o0"),
        "u0",
        &bytes,
        50,
        Some((100, sha256(&bytes))),
    );
    resumed[0].offset = 50;
    assert!(upload(&mut client, resumed).await.unwrap().committed);
    let done = upload(
        &mut client,
        upload_messages(
            artifact("t", "r", "o3"),
            "u3",
            &bytes,
            0,
            Some((100, sha256(&bytes))),
        ),
    )
    .await
    .unwrap();
    assert!(done.committed);
    server.stop().await;
}

/// Reserving a checkpoint slot logs `checkpoint_slot_reserved` with its
/// number; objects go into the slot; committing it moves the run state's
/// `checkpointSeq`, and committing it again is success; a committed slot
/// takes no more objects, and a slot never reserved cannot be used.
#[tokio::test]
async fn checkpoints_move_checkpoint_seq_and_log_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    let slot = client.reserve_checkpoint(&key).await.unwrap();
    assert_eq!(slot, 1);
    let local = dir.path().join("state.bin");
    random_file(&local, 10_000, 1);
    let options = TransferOptions::default();
    client
        .upload_file(
            &key,
            &ObjectName::checkpoint(slot, "state.bin"),
            &local,
            &options,
        )
        .await
        .unwrap();
    assert!(
        server
            .data_dir
            .join("t/r/checkpoints/1/state.bin")
            .is_file()
    );
    let state = client.commit_checkpoint(&key, slot).await.unwrap();
    assert_eq!(state.checkpoint_seq, 1);
    let again = client.commit_checkpoint(&key, slot).await.unwrap();
    assert_eq!(
        again, state,
        "a retried commit is success, with the same state"
    );
    let run = client.get_run(&key).await.unwrap();
    assert_eq!(run.state.unwrap().checkpoint_seq, 1);
    let state_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("t/r/state.json")).unwrap())
            .unwrap();
    assert_eq!(state_json["checkpointSeq"], 1);
    let events = json_lines(&server.data_dir.join("t/r/worker.log"));
    let reserved: Vec<_> = events
        .iter()
        .filter(|event| event["type"] == "checkpoint_slot_reserved")
        .collect();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0]["data"]["checkpointSeq"], 1);

    let closed = client
        .upload_file(
            &key,
            &ObjectName::checkpoint(1, "late.bin"),
            &local,
            &options,
        )
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Some(Code::FailedPrecondition), "{closed}");
    let unreserved = client.commit_checkpoint(&key, 5).await.unwrap_err();
    assert_eq!(
        unreserved.code(),
        Some(Code::FailedPrecondition),
        "{unreserved}"
    );
    assert_eq!(client.reserve_checkpoint(&key).await.unwrap(), 2);
    let listing = client
        .list_objects(&key, pb::ObjectKind::Checkpoint)
        .await
        .unwrap();
    assert_eq!(listing.objects.len(), 1);
    assert_eq!(listing.objects[0].checkpoint_seq, 1);
    server.stop().await;
}

/// `UpdateRunState` moves `checkpoint_seq` only forward, to a reserved
/// slot: moving it back (which would reopen committed slots) and naming a
/// slot never reserved are refused with `FAILED_PRECONDITION`, and the
/// state stays; the same value again is no change.
#[tokio::test]
async fn a_state_patch_moves_checkpoint_seq_only_forward_to_a_reserved_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let reserve = pb::ReserveCheckpointRequest {
        task_id: "t".into(),
        run_id: "r".into(),
    };
    for _ in 0..2 {
        client.reserve_checkpoint(reserve.clone()).await.unwrap();
    }
    client
        .commit_checkpoint(pb::CommitCheckpointRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            checkpoint_seq: 1,
        })
        .await
        .unwrap();
    let patch = |checkpoint_seq: u64| pb::UpdateRunStateRequest {
        task_id: "t".into(),
        run_id: "r".into(),
        writer_id: String::new(),
        patch: Some(pb::RunStatePatch {
            checkpoint_seq: Some(checkpoint_seq),
            ..Default::default()
        }),
    };
    assert_status(
        client.update_run_state(patch(0)).await,
        Code::FailedPrecondition,
        "is 1 and cannot move back to 0",
    );
    assert_status(
        client.update_run_state(patch(7)).await,
        Code::FailedPrecondition,
        "slot 7 of run `t/r` is not reserved",
    );
    let run = |client: &mut LoggingClient| {
        let mut client = client.clone();
        async move {
            client
                .get_run(pb::GetRunRequest {
                    task_id: "t".into(),
                    run_id: "r".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .run
                .unwrap()
                .state
                .unwrap()
                .checkpoint_seq
        }
    };
    assert_eq!(run(&mut client).await, 1);
    client.update_run_state(patch(1)).await.unwrap();
    client.update_run_state(patch(2)).await.unwrap();
    assert_eq!(run(&mut client).await, 2);
    let late = upload(
        &mut client,
        upload_messages(
            pb::ObjectRef {
                task_id: "t".into(),
                run_id: "r".into(),
                kind: pb::ObjectKind::Checkpoint.into(),
                name: "late.bin".into(),
                checkpoint_seq: 1,
            },
            "late",
            b"late",
            0,
            Some((4, sha256(b"late"))),
        ),
    )
    .await;
    assert_status(late, Code::FailedPrecondition, "closed");
    server.stop().await;
}

/// A write the server refuses is answered at once, while the client still
/// holds its stream open: not after the next message, which may never
/// come (the server reads the next message while it writes the last).
#[tokio::test]
async fn a_refused_write_is_answered_while_the_stream_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.objects.max_object_bytes = 1000;
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let (tx, rx) = mpsc::channel(4);
    for message in upload_messages(artifact("t", "r", "big"), "a", &[1u8; 1001], 0, None) {
        tx.send(message).await.unwrap();
    }
    // `tx` stays open: the stream neither ends nor sends more.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.upload_object(ReceiverStream::new(rx)),
    )
    .await
    .expect("an answer while the stream is open, not at the idle timeout");
    assert_status(answer, Code::ResourceExhausted, "max_object_bytes (1000)");
    drop(tx);
    server.stop().await;
}

/// A terminal run takes no uploads and no checkpoint slots; a limit is
/// named when an object or a run's objects would pass it.
#[tokio::test]
async fn terminal_runs_and_limits_refuse_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.objects.max_object_bytes = 1000;
    config.objects.max_run_objects_bytes = 1500;
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let big = vec![1u8; 1001];
    let result = upload(
        &mut client,
        upload_messages(artifact("t", "r", "big"), "a", &big, 0, None),
    )
    .await;
    assert_status(result, Code::ResourceExhausted, "max_object_bytes (1000)");
    let fits = vec![2u8; 900];
    let commit = Some((900, sha256(&fits)));
    upload(
        &mut client,
        upload_messages(artifact("t", "r", "one"), "b", &fits, 0, commit.clone()),
    )
    .await
    .unwrap();
    let result = upload(
        &mut client,
        upload_messages(artifact("t", "r", "two"), "c", &fits, 0, commit.clone()),
    )
    .await;
    assert_status(
        result,
        Code::ResourceExhausted,
        "max_run_objects_bytes (1500)",
    );

    crate::util::set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    crate::util::set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    let small = vec![3u8; 10];
    let result = upload(
        &mut client,
        upload_messages(artifact("t", "r", "late"), "d", &small, 0, None),
    )
    .await;
    assert_status(result, Code::FailedPrecondition, "terminal");
    let reserve = client
        .reserve_checkpoint(pb::ReserveCheckpointRequest {
            task_id: "t".into(),
            run_id: "r".into(),
        })
        .await;
    assert_status(reserve, Code::FailedPrecondition, "terminal");
    server.stop().await;
}

/// A server that decodes messages smaller than the client's usual 1 MiB
/// piece gets pieces that fit: `upload_file` asks `GetServerInfo`.
#[tokio::test]
async fn uploads_fit_the_servers_message_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.limits.max_message_bytes = 256 * 1024;
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let local = dir.path().join("a.bin");
    let bytes = random_file(&local, 3 << 20, 5);
    let stored = client
        .upload_file(
            &RunKey::new("t", "r"),
            &ObjectName::artifact("a.bin"),
            &local,
            &TransferOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.sha256, sha256(&bytes));
    server.stop().await;
}

/// An upload that would leave the disk with less than the store's
/// `min_free_bytes` is refused with `RESOURCE_EXHAUSTED` naming it, and
/// no object appears.
#[tokio::test]
async fn uploads_keep_the_stores_disk_headroom() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(&data)
        .output()
        .unwrap();
    let free: u64 = String::from_utf8(df.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let config = ServerConfig::default();
    let options = baa_logging_store::LocalStoreOptions {
        objects: config.objects.limits(),
        // More than the disk has: no upload fits.
        min_free_bytes: free + (1 << 30),
        ..baa_logging_store::LocalStoreOptions::new(&data)
    };
    let store = baa_logging_store::LocalStore::open(options).unwrap();
    let server = TestServer::start_with_store(&data, store, config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = vec![1u8; 1000];
    let result = upload(
        &mut client,
        upload_messages(
            artifact("t", "r", "x"),
            "u",
            &bytes,
            0,
            Some((1000, sha256(&bytes))),
        ),
    )
    .await;
    assert_status(result, Code::ResourceExhausted, "min_free_bytes");
    assert!(files_under(&data.join("t/r/artifacts")).is_empty());
    server.stop().await;
}

/// Retention deletes a run's objects with it, and counts their bytes.
#[tokio::test]
async fn retention_deletes_objects_with_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    let local = dir.path().join("a");
    random_file(&local, 100_000, 3);
    client
        .upload_file(
            &key,
            &ObjectName::artifact("a"),
            &local,
            &TransferOptions::default(),
        )
        .await
        .unwrap();
    let mut stub = server.client().await;
    crate::util::set_status(&mut stub, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    crate::util::set_status(&mut stub, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    let collected = client
        .collect_runs(baa_logging_client::CollectOptions {
            max_age: Some(std::time::Duration::ZERO),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(collected.runs.len(), 1);
    assert!(
        collected.runs[0].bytes >= 100_000,
        "{:?}",
        collected.runs[0]
    );
    assert!(!server.data_dir.join("t/r").exists());
    let gone = client
        .list_objects(&key, pb::ObjectKind::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some(Code::NotFound));
    server.stop().await;
}

/// Uploading needs the `write` scope and downloading the `read` scope;
/// a token limited to some tasks touches only their objects.
#[tokio::test]
async fn scopes_and_task_limits_apply_to_objects() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        r#"
        [[tokens]]
        name = "root"
        scopes = ["admin"]
        secret = "root-secret-0123456"
        [[tokens]]
        name = "reader"
        scopes = ["read"]
        secret = "reader-secret-01234"
        [[tokens]]
        name = "nightly"
        scopes = ["write", "read"]
        secret = "nightly-secret-0123"
        tasks = ["nightly"]
        "#,
    )
    .unwrap();
    let security = Security {
        tokens: Some(Arc::new(TokenSet::load(&file).unwrap())),
        ..Security::default()
    };
    let server = TestServer::start_with(
        &dir.path().join("data"),
        ServerConfig {
            security,
            ..ServerConfig::default()
        },
    )
    .await;
    let connect = |secret: &'static str| {
        let address = format!("http://{}", server.addr);
        async move {
            Client::from_stub(
                ConnectOptions::new(address)
                    .token(secret)
                    .connect()
                    .await
                    .unwrap(),
            )
        }
    };
    let root = connect("root-secret-0123456").await;
    let reader = connect("reader-secret-01234").await;
    let nightly = connect("nightly-secret-0123").await;
    root.prepare_run(NewRun::new("other", "r")).await.unwrap();
    root.prepare_run(NewRun::new("nightly", "r")).await.unwrap();
    let local = dir.path().join("f");
    random_file(&local, 1000, 5);
    let options = TransferOptions::default();
    let name = ObjectName::artifact("f");
    let denied = reader
        .upload_file(&RunKey::new("nightly", "r"), &name, &local, &options)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    nightly
        .upload_file(&RunKey::new("nightly", "r"), &name, &local, &options)
        .await
        .unwrap();
    let other = nightly
        .upload_file(&RunKey::new("other", "r"), &name, &local, &options)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some(Code::PermissionDenied), "{other}");
    reader
        .download_file(
            &RunKey::new("nightly", "r"),
            &name,
            &dir.path().join("out"),
            &options,
        )
        .await
        .unwrap();
    let listed = nightly
        .list_objects(&RunKey::new("other", "r"), pb::ObjectKind::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Some(Code::PermissionDenied), "{listed}");
    server.stop().await;
}

/// A download resumes a partial local file from its length, and the
/// whole file is checked against the object's digest.
#[tokio::test]
async fn a_partial_download_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let client = server.typed_client().await;
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    let local = dir.path().join("f");
    let bytes = random_file(&local, 3_000_000, 11);
    let name = ObjectName::artifact("f");
    let options = TransferOptions::default();
    client
        .upload_file(&key, &name, &local, &options)
        .await
        .unwrap();
    let out = dir.path().join("out");
    std::fs::write(&out, &bytes[..1_234_567]).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        TransferOptions {
            progress: Some(Arc::new(move |done, _| seen.lock().unwrap().push(done))),
            ..TransferOptions::default()
        }
    };
    client
        .download_file(&key, &name, &out, &progress)
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == bytes);
    assert_eq!(seen.lock().unwrap().first(), Some(&1_234_567));
    // A local file that is not the object's start is downloaded again.
    std::fs::write(&out, b"not the object").unwrap();
    client
        .download_file(&key, &name, &out, &options)
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == bytes);
    server.stop().await;
}

/// A download the server's shutdown cuts off ends with `UNAVAILABLE`
/// after the pieces already sent, never with `OK`, even when the client
/// reads slowly and the server's queue is full.
#[tokio::test]
async fn a_download_cut_by_shutdown_ends_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let object = artifact("t", "r", "big");
    let bytes = vec![4u8; 16 << 20];
    let commit = Some((bytes.len() as u64, sha256(&bytes)));
    upload(
        &mut client,
        upload_messages(object.clone(), "u", &bytes, 0, commit),
    )
    .await
    .unwrap();
    let mut stream = client
        .download_object(pb::DownloadObjectRequest {
            object: Some(object),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = stream.message().await.unwrap().unwrap().data.len();
    // The server's queue fills while nothing is read.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::spawn(server.stop());
    let ended = loop {
        match stream.message().await {
            Ok(Some(message)) => received += message.data.len(),
            other => break other,
        }
    };
    assert!(received < bytes.len(), "the whole object came: {received}");
    let err = ended.expect_err("a cut download ends with an error, not OK");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("shutting down"), "{err}");
    stopping.await.unwrap();
}

/// A download cut off by a server that shuts down resumes, once a server
/// is back, from the bytes it received: the progress never goes back, and
/// the file is the object.
#[tokio::test]
async fn a_download_cut_by_shutdown_resumes_from_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    let addr = server.addr;
    let client = Client::from_stub(baa_logging_client::connect(server.url()).await.unwrap());
    client.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let key = RunKey::new("t", "r");
    let local = dir.path().join("object.bin");
    let bytes = random_file(&local, 16 << 20, 11);
    let name = ObjectName::artifact("object.bin");
    client
        .upload_file(&key, &name, &local, &TransferOptions::default())
        .await
        .unwrap();
    let seen: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let options = TransferOptions {
        progress: Some({
            let seen = seen.clone();
            Arc::new(move |done, _| {
                seen.lock().unwrap().push(done);
                // A slow reader, so that the shutdown comes in the middle.
                std::thread::sleep(std::time::Duration::from_millis(20));
            })
        }),
        ..TransferOptions::default()
    };
    let back = dir.path().join("back.bin");
    let download = tokio::spawn({
        let (client, key, name, back) = (client.clone(), key.clone(), name.clone(), back.clone());
        async move { client.download_file(&key, &name, &back, &options).await }
    });
    while seen.lock().unwrap().last().copied().unwrap_or(0) < 2 << 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let at_cut = *seen.lock().unwrap().last().unwrap();
    assert!(at_cut < bytes.len() as u64, "the download ended first");
    let server = ServerProcess::start_on(&data, addr);
    let info = download.await.unwrap().unwrap();
    assert_eq!(info.sha256, sha256(&bytes));
    assert!(std::fs::read(&back).unwrap() == bytes);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "the download started over: {seen:?}"
    );
    drop(server);
}

/// Runs `baa-log` against `server` in `cwd`.
async fn baa_log_in(server: &TestServer, cwd: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(crate::util::process::cli_binary())
        .args(args)
        .current_dir(cwd)
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env("BAA_LOG_SPOOL_DIR", cwd.join("spool"))
        .env_remove("BAA_LOG_TOKEN")
        .output()
        .await
        .expect("baa-log runs")
}

/// `baa-log artifact put/ls/get`, `checkpoint put/get` and `exec
/// --artifacts` move files between the machine and the run, and say so.
#[tokio::test]
async fn the_command_line_puts_gets_and_lists_objects() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let bytes = random_file(&work.join("report.txt"), 50_000, 21);
    std::fs::write(work.join("out/a.xml"), "<a/>").unwrap();
    std::fs::write(work.join("out/b.xml"), "<b/>").unwrap();

    let exec = baa_log_in(
        &server,
        &work,
        &[
            "exec",
            "--task",
            "t",
            "--run",
            "r",
            "--artifacts",
            "out/*.xml",
            "--",
            "true",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(exec.status.success(), "{stderr}");
    assert!(
        stderr.contains("artifact out/a.xml uploaded to t/r"),
        "{stderr}"
    );
    assert!(stderr.contains("2 artifacts uploaded to t/r"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(server.data_dir.join("t/r/artifacts/out/b.xml")).unwrap(),
        "<b/>"
    );
    // The run finished after the uploads: it takes no more.
    let late = baa_log_in(&server, &work, &["artifact", "put", "t/r", "report.txt"]).await;
    assert!(!late.status.success());
    assert!(String::from_utf8_lossy(&late.stderr).contains("terminal"));

    let mut stub = server.client().await;
    prepare(&mut stub, "t", "live").await;
    let put = baa_log_in(
        &server,
        &work,
        &[
            "artifact",
            "put",
            "t/live",
            "report.txt",
            "--as",
            "reports/r.txt",
        ],
    )
    .await;
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let ls = baa_log_in(&server, &work, &["artifact", "ls", "t/live"]).await;
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(listed.contains("reports/r.txt"), "{listed}");
    assert!(listed.contains(&hex_of(&sha256(&bytes))), "{listed}");
    let get = baa_log_in(
        &server,
        &work,
        &[
            "artifact",
            "get",
            "t/live",
            "reports/r.txt",
            "-o",
            "copy.txt",
        ],
    )
    .await;
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(work.join("copy.txt")).unwrap() == bytes);

    let saved = baa_log_in(
        &server,
        &work,
        &["checkpoint", "put", "t/live", "report.txt"],
    )
    .await;
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&saved.stdout).trim(),
        "t/live checkpoint 1"
    );
    let restored = baa_log_in(
        &server,
        &work,
        &[
            "checkpoint",
            "get",
            "t/live",
            "report.txt",
            "-o",
            "restored.txt",
        ],
    )
    .await;
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(std::fs::read(work.join("restored.txt")).unwrap() == bytes);
    server.stop().await;
}

/// Runs `baa-log exec --task t --run RUN ARGS -- sh -c SCRIPT` in `cwd`.
async fn exec_in(
    server: &TestServer,
    cwd: &Path,
    run: &str,
    args: &[&str],
    script: &str,
) -> std::process::Output {
    let mut all = vec!["exec", "--task", "t", "--run", run, "--no-pty"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "sh", "-c", script]);
    baa_log_in(server, cwd, &all).await
}

/// `exec --artifacts` fails a command that succeeded when a file it
/// matched cannot be uploaded (here, one over the server's
/// max_object_bytes): exit code 122, and the run is failed with that code
/// and a summary that says so, while the files that could be uploaded
/// are. A command that failed keeps its own code; `--artifacts-optional`
/// keeps the command's code and status; a bad glob is refused before the
/// command runs.
#[tokio::test]
async fn exec_fails_when_an_artifact_cannot_be_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.objects.max_object_bytes = 1000;
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let client = server.typed_client().await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("small.txt"), "fits").unwrap();
    std::fs::write(work.join("big.bin"), vec![0u8; 2000]).unwrap();
    let artifacts = ["--artifacts", "*.txt", "--artifacts", "big.bin"];
    let state = |run: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_run(&RunKey::new("t", run))
                .await
                .unwrap()
                .state
                .unwrap()
        }
    };

    let strict = exec_in(&server, &work, "strict", &artifacts, "true").await;
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(122), "{stderr}");
    assert!(stderr.contains("max_object_bytes"), "{stderr}");
    assert!(
        stderr.contains("1 artifact could not be uploaded"),
        "{stderr}"
    );
    let finished = state("strict").await;
    assert_eq!(finished.status(), pb::RunStatus::Failed);
    assert_eq!(finished.exit_code, Some(122));
    assert_eq!(
        finished.summary.as_deref(),
        Some("exited with code 0; 1 artifact not uploaded")
    );
    assert_eq!(
        std::fs::read(server.data_dir.join("t/strict/artifacts/small.txt")).unwrap(),
        b"fits"
    );

    let failing = exec_in(&server, &work, "failing", &artifacts, "exit 3").await;
    assert_eq!(
        failing.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&failing.stderr)
    );
    let finished = state("failing").await;
    assert_eq!(finished.status(), pb::RunStatus::Failed);
    assert_eq!(finished.exit_code, Some(3));

    let mut optional = artifacts.to_vec();
    optional.push("--artifacts-optional");
    let lenient = exec_in(&server, &work, "lenient", &optional, "true").await;
    assert_eq!(
        lenient.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lenient.stderr)
    );
    let finished = state("lenient").await;
    assert_eq!(finished.status(), pb::RunStatus::Completed);
    assert_eq!(finished.exit_code, Some(0));
    assert!(
        finished
            .summary
            .unwrap()
            .contains("1 artifact not uploaded"),
        "the summary tells"
    );

    let bad = exec_in(&server, &work, "bad", &["--artifacts", "["], "touch ran").await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a glob"));
    assert!(!work.join("ran").exists(), "the command ran");
    server.stop().await;
}

/// Bytes in hex.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A stream that resumes an upload takes it over: the older stream's next
/// write is refused with `ABORTED`, and the newer one commits.
#[tokio::test]
async fn a_resumed_upload_takes_over_from_the_older_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let bytes = vec![5u8; 600_000];
    let object = artifact("t", "r", "x");
    let (tx, rx) = mpsc::channel(8);
    let mut old = server.client().await;
    let call = tokio::spawn(async move { old.upload_object(ReceiverStream::new(rx)).await });
    let mut messages = upload_messages(object.clone(), "same", &bytes, 0, None).into_iter();
    tx.send(messages.next().unwrap()).await.unwrap();
    while status(&mut client, object.clone(), "same")
        .await
        .committed_size
        == 0
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let offset = status(&mut client, object.clone(), "same")
        .await
        .committed_size as usize;
    let commit = Some((bytes.len() as u64, sha256(&bytes)));
    let newer = upload(
        &mut client,
        upload_messages(object.clone(), "same", &bytes, offset, commit),
    )
    .await
    .unwrap();
    assert!(newer.committed);
    tx.send(messages.next().unwrap()).await.unwrap();
    drop(tx);
    let older = call.await.unwrap();
    assert_status(older, Code::Aborted, "resumed by another stream");
    server.stop().await;
}

/// An upload nothing writes to is dropped after `upload_abandon_after`,
/// with its staged bytes.
#[tokio::test]
async fn abandoned_uploads_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.objects.upload_abandon_after = std::time::Duration::from_millis(500);
    let server = TestServer::start_with(&dir.path().join("data"), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let object = artifact("t", "r", "x");
    let part = vec![1u8; 1000];
    let staged = upload(
        &mut client,
        upload_messages(object.clone(), "gone", &part, 0, None),
    )
    .await
    .unwrap();
    assert_eq!(staged.committed_size, 1000);
    assert!(!staged.committed);
    let uploads = server.data_dir.join("t/r/.uploads");
    assert_eq!(files_under(&uploads), ["gone.json", "gone.part"]);
    for _ in 0..100 {
        if files_under(&uploads).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(files_under(&uploads).is_empty());
    assert_eq!(status(&mut client, object, "gone").await.committed_size, 0);
    server.stop().await;
}
