//! Disk trouble, for real: a small tmpfs, mounted by the test, fills up or
//! turns read-only under a running server.
//!
//! These tests mount a file system, so they need root (as CI has). Where
//! mounting is not permitted they print why on stderr and return early,
//! passing without having checked anything.
//!
//! tmpfs is used rather than a loop-mounted ext4 image because it shows
//! the harder case: a `write` that does not fit is cut short (part of it
//! lands in the file) before the next one fails with ENOSPC, where ext4
//! refuses the whole `write` at once.

use std::{path::Path, time::Duration};

use baa_logd::{Metrics, ServerConfig};
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use baa_logging_store::{LocalStore, LocalStoreOptions};
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};

use crate::util::{
    TestServer, append,
    disk::{SmallDisk, fill_up, free, page_size},
    entry_seq, entry_text, follow_request, follow_to_end, json_lines,
    metrics::{scrape, start_metrics},
    open, prepare, set_status, stdout,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The writer of these tests; a long id makes every journal record longer
/// than the room the journal test leaves in the journal's last page.
const WRITER: &str = "writer-of-the-disk-trouble-tests";

/// How long the health may take to change: the probe runs every 2s.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// With the data directory's disk full, appends fail with
/// RESOURCE_EXHAUSTED naming the full disk (whether the journal record or
/// a channel file's lines were cut short), health says NOT_SERVING, every
/// acknowledged entry is intact in the files and served without a torn
/// line, and once space is freed health says SERVING and appends work.
#[tokio::test]
async fn a_full_disk_refuses_appends_keeps_what_was_stored_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::tmpfs(&dir.path().join("disk"), 4 * MIB) else {
        return;
    };
    let data_dir = disk.path().join("runs");
    let filler = disk.path().join("filler");
    let (server, metrics_addr) = start(&data_dir).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "full").await;
    let run_dir = data_dir.join("t").join("full");
    let (journal, stdout_log) = (run_dir.join("journal.jsonl"), run_dir.join("stdout.log"));
    let mut health = watch_health(&server).await;
    expect_health(&mut health, ServingStatus::Serving).await;
    // A live follower from the start: it must see every acknowledged entry
    // once, in order, and nothing else.
    let live = {
        let mut client = server.client().await;
        tokio::spawn(async move {
            follow_to_end(&mut client, follow_request("t", "full", 1, false)).await
        })
    };
    let mut writer = Writer::default();

    // Leave about 1 MiB, then append 64 KiB commits until one does not fit:
    // its stdout lines are cut short by the disk, then undone.
    fill_up(&filler);
    free(&filler, MIB);
    let started = Instant::now();
    let refused = loop {
        let texts: Vec<String> = (1..=4)
            .map(|n| format!("{n} {}", "x".repeat(16 * KIB as usize)))
            .collect();
        if let Err(status) = writer.append(&mut client, texts).await {
            break status;
        }
        assert!(writer.acked < 1000, "the disk never filled up");
    };
    assert_disk_full(&refused);
    let not_serving = expect_health(&mut health, ServingStatus::NotServing).await;
    assert_eq!(
        check_health(&server, baa_logd::health::LIVENESS).await,
        ServingStatus::Serving,
        "liveness stays SERVING while the disk is full"
    );
    eprintln!(
        "disk full after {} items in {:?}: {} {:?}; health NOT_SERVING {:?} later",
        writer.acked,
        started.elapsed(),
        refused.code(),
        refused.message(),
        not_serving
    );

    // A journal record that does not fit: leave the journal's last page
    // too short for one, then fill the disk to the last byte.
    let page = page_size();
    free(&filler, 64 * KIB);
    loop {
        let room = page - file_len(&journal) % page;
        if room < 100 || room == page {
            break;
        }
        writer
            .append(&mut client, vec!["small".to_owned()])
            .await
            .expect("appends while there is room");
    }
    fill_up(&filler);
    let before = (file_len(&journal), file_len(&stdout_log));
    eprintln!(
        "room left in the last page: journal.jsonl {} bytes, stdout.log {} bytes",
        page - before.0 % page,
        page - before.1 % page
    );
    let refused = writer
        .append(
            &mut client,
            vec!["no room for its journal record".to_owned()],
        )
        .await
        .expect_err("the disk is full");
    assert_disk_full(&refused);
    assert_eq!((file_len(&journal), file_len(&stdout_log)), before);

    // Lines that do not fit: one free page takes the journal record, and
    // the stdout lines are cut short at the end of stdout.log's last page.
    free(&filler, page);
    let refused = writer
        .append(&mut client, vec!["y".repeat(3 * page as usize)])
        .await
        .expect_err("the disk is full");
    assert_disk_full(&refused);
    assert_eq!((file_len(&journal), file_len(&stdout_log)), before);
    assert_eq!(
        writer.cursor(&mut client).await,
        writer.acked,
        "the refused items are not stored"
    );

    // What was acknowledged is intact: in the files, with no torn line...
    writer.check_files(&run_dir);
    // ...and as served.
    let history = follow_to_end(&mut client, follow_request("t", "full", 1, true)).await;
    assert!(history.end.is_none(), "{:?}", history.end);
    writer.check_served(&history.entries);

    // Room again: health turns SERVING and appends work.
    std::fs::remove_file(&filler).unwrap();
    let serving = expect_health(&mut health, ServingStatus::Serving).await;
    eprintln!("health SERVING {serving:?} after the filler was removed");
    writer
        .append(&mut client, vec!["after the disk was freed".to_owned()])
        .await
        .expect("appends once there is room");
    set_status(&mut client, "t", "full", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "full", pb::RunStatus::Completed)
        .await
        .unwrap();
    let live = live.await.unwrap();
    assert!(live.end.is_none(), "{:?}", live.end);
    writer.check_served(&live.entries);
    writer.check_files(&run_dir);

    let metrics = scrape(metrics_addr).await;
    let errors =
        metrics.value(r#"baa_logd_disk_write_errors_total{write="commit",error="disk_full"}"#);
    assert!(errors >= 3.0, "{errors} failed commits counted");
    assert_eq!(metrics.value("baa_logd_store_writable"), 1.0);
    let refused_calls = metrics.value(
        r#"baa_logd_grpc_requests_total{service="baa.logging.v1.LoggingService",method="AppendLogs",code="RESOURCE_EXHAUSTED"}"#,
    );
    assert!(
        refused_calls >= 3.0,
        "{refused_calls} refused appends counted"
    );

    drop(health);
    server.stop().await;
}

/// With the data directory's file system read-only, appends fail with
/// UNAVAILABLE naming it and health says NOT_SERVING; once it is writable
/// again health says SERVING and appends work.
#[tokio::test]
async fn a_read_only_data_dir_refuses_appends_until_it_is_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::tmpfs(&dir.path().join("disk"), 4 * MIB) else {
        return;
    };
    let data_dir = disk.path().join("runs");
    let (server, _) = start(&data_dir).await;
    let mut client = server.client().await;
    // A prepared run holds no file open for writing, so the file system
    // can be remounted read-only under it.
    prepare(&mut client, "t", "ro").await;
    let mut health = watch_health(&server).await;
    expect_health(&mut health, ServingStatus::Serving).await;

    disk.remount(true);
    let refused = append(
        &mut client,
        vec![open("t", "ro", WRITER, vec![stdout(1, "refused")])],
    )
    .await
    .expect_err("the file system is read-only");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("read-only"), "{refused:?}");
    expect_health(&mut health, ServingStatus::NotServing).await;

    disk.remount(false);
    expect_health(&mut health, ServingStatus::Serving).await;
    let stored = append(
        &mut client,
        vec![open("t", "ro", WRITER, vec![stdout(1, "stored")])],
    )
    .await
    .expect("appends once the file system is writable");
    assert_eq!(stored.last_writer_seq, 1);
    let history = follow_to_end(&mut client, follow_request("t", "ro", 1, true)).await;
    let texts: Vec<_> = history.entries.iter().filter_map(entry_text).collect();
    assert_eq!(texts, ["stored"]);

    drop(health);
    server.stop().await;
}

/// A server that starts on a full disk says NOT_SERVING before any write
/// has failed, serves what is stored, and says SERVING once room is made.
#[tokio::test]
async fn a_server_started_on_a_full_disk_is_not_serving_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::tmpfs(&dir.path().join("disk"), 4 * MIB) else {
        return;
    };
    let data_dir = disk.path().join("runs");
    let (server, _) = start(&data_dir).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "before").await;
    drop(client);
    server.stop().await;

    let filler = disk.path().join("filler");
    fill_up(&filler);
    let (server, _) = start(&data_dir).await;
    assert_eq!(check_health(&server, "").await, ServingStatus::NotServing);
    let mut client = server.client().await;
    let history = follow_to_end(&mut client, follow_request("t", "before", 1, true)).await;
    assert_eq!(history.entries.len(), 1, "what is stored is served");

    free(&filler, 2 * MIB);
    let mut health = watch_health(&server).await;
    expect_health(&mut health, ServingStatus::Serving).await;
    drop((health, client));
    server.stop().await;
}

/// Starts a server over `data_dir` with metrics, whose store counts as
/// writable again with 512 KiB free.
async fn start(data_dir: &Path) -> (TestServer, std::net::SocketAddr) {
    let metrics = Metrics::new();
    let store = LocalStore::open(LocalStoreOptions {
        min_free_bytes: 512 * KIB,
        observer: Some(metrics.store_observer()),
        ..LocalStoreOptions::new(data_dir)
    })
    .expect("store opens");
    let metrics_addr = start_metrics(metrics.clone()).await;
    let config = ServerConfig {
        metrics: Some(metrics),
        ..ServerConfig::default()
    };
    (
        TestServer::start_with_store(data_dir, store, config).await,
        metrics_addr,
    )
}

/// Watches the health of the whole server (`""`).
async fn watch_health(server: &TestServer) -> Streaming<HealthCheckResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .watch(HealthCheckRequest { service: "".into() })
        .await
        .unwrap()
        .into_inner()
}

/// The health of `service` now.
async fn check_health(server: &TestServer, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Waits until the health is `want`; returns how long that took.
async fn expect_health(
    health: &mut Streaming<HealthCheckResponse>,
    want: ServingStatus,
) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(HEALTH_TIMEOUT, async {
        loop {
            let update = health.message().await.unwrap().expect("health is watched");
            if update.status() == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("health did not turn {want:?} in {HEALTH_TIMEOUT:?}"));
    started.elapsed()
}

/// Asserts a call was refused because the disk is full.
fn assert_disk_full(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("disk is full"), "{status:?}");
}

/// The length of a file.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// One writer of stdout lines, and what the server acknowledged.
#[derive(Debug, Default)]
struct Writer {
    /// The text of every item sent, by writer sequence number - 1.
    sent: Vec<String>,
    /// The last writer sequence number acknowledged.
    acked: u64,
}

impl Writer {
    /// Appends `texts` in one message (so in one commit), after what was
    /// acknowledged.
    async fn append(
        &mut self,
        client: &mut LoggingClient,
        texts: Vec<String>,
    ) -> Result<(), Status> {
        self.sent.truncate(self.acked as usize);
        let items = texts
            .iter()
            .enumerate()
            .map(|(n, text)| stdout(self.acked + 1 + n as u64, text))
            .collect();
        let response = append(client, vec![open("t", "full", WRITER, items)]).await?;
        self.sent.extend(texts);
        self.acked = response.last_writer_seq;
        assert_eq!(self.acked as usize, self.sent.len());
        Ok(())
    }

    /// What the run holds from this writer.
    async fn cursor(&self, client: &mut LoggingClient) -> u64 {
        client
            .get_writer_cursor(pb::GetWriterCursorRequest {
                task_id: "t".into(),
                run_id: "full".into(),
                writer_id: WRITER.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .last_writer_seq
    }

    /// The acknowledged items are the stdout entries served, after the
    /// `run_prepared` entry: sequence numbers 2.., texts as sent.
    fn check_served(&self, entries: &[pb::LogEntry]) {
        let seqs: Vec<u64> = entries.iter().map(entry_seq).collect();
        let expected: Vec<u64> = (1..=self.acked + 1).collect();
        assert_eq!(seqs, expected, "served without a gap or a repeat");
        let texts: Vec<&str> = entries.iter().filter_map(entry_text).collect();
        assert_eq!(texts, self.acked_texts(), "served as sent");
    }

    /// The files hold the acknowledged items, every line whole, and the
    /// journal accounts for all of them.
    fn check_files(&self, run_dir: &Path) {
        let lines = json_lines(&run_dir.join("stdout.log"));
        let texts: Vec<&str> = lines
            .iter()
            .map(|line| line["text"].as_str().expect("a text"))
            .collect();
        assert_eq!(texts, self.acked_texts(), "stored as sent");
        for (line, seq) in lines.iter().zip(2..) {
            assert_eq!(line["seq"], seq);
        }
        let journal = json_lines(&run_dir.join("journal.jsonl"));
        let last = journal.last().expect("a journal record");
        assert_eq!(last["lastSeq"], self.acked + 1);
    }

    /// The texts acknowledged, in order.
    fn acked_texts(&self) -> Vec<&str> {
        self.sent[..self.acked as usize]
            .iter()
            .map(String::as_str)
            .collect()
    }
}
