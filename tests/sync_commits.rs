//! `--sync` (the store's `sync_commits`) under many writers: commits are
//! fsynced in groups, so that the writers of a run that commit at the
//! same time share one fsync, and still every acknowledged line is stored
//! once, in a gap-free sequence, and served to followers.

use std::{collections::HashMap, time::Duration};

use baa_logd::ServerConfig;
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use baa_logging_store::LocalStoreOptions;
use futures::StreamExt;

use crate::util::{
    TestServer, entry_seq, entry_text, follow_request, follow_to_end,
    metrics::{scrape, start_with_store_metrics},
    more, open, prepare, set_status, stdout,
};

/// Streams each writer opens, one after the other.
const STREAMS: u64 = 2;
/// One-line Append messages per stream.
const LINES: u64 = 40;

/// The line `writer` sends as its `writer_seq`.
fn line(writer: &str, writer_seq: u64) -> String {
    format!("{writer} line {writer_seq}\n")
}

/// Starts a server whose store syncs its commits, with metrics.
async fn synced_server(dir: &std::path::Path) -> (TestServer, std::net::SocketAddr) {
    let options = LocalStoreOptions {
        sync_commits: true,
        ..LocalStoreOptions::new(dir)
    };
    start_with_store_metrics(options, ServerConfig::default()).await
}

/// Writes [`STREAMS`] streams of [`LINES`] one-line messages as `writer`,
/// a millisecond apart (as a worker printing line by line does), and
/// checks that each stream is acknowledged whole.
async fn write_lines(mut client: LoggingClient, run: String, writer: String) {
    for stream in 0..STREAMS {
        let first = stream * LINES + 1;
        let messages: Vec<pb::AppendLogsRequest> = (first..first + LINES)
            .map(|seq| {
                let item = vec![stdout(seq, &line(&writer, seq))];
                if seq == first {
                    open("t", &run, &writer, item)
                } else {
                    more(item)
                }
            })
            .collect();
        let paced = futures::stream::iter(messages).then(|message| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            message
        });
        let response = client
            .append_logs(paced)
            .await
            .unwrap_or_else(|status| panic!("{writer} on {run}: {status:?}"))
            .into_inner();
        assert_eq!(
            response.last_writer_seq,
            first + LINES - 1,
            "{writer} on {run}"
        );
    }
}

/// Checks what `run` holds once its writers are done: every line of every
/// writer once, in a gap-free sequence from 1, to a follower that was
/// there all along (`live`) and to one that comes after.
async fn check_run(client: &mut LoggingClient, run: &str, writers: usize, live: &[pb::LogEntry]) {
    let after = follow_to_end(client, follow_request("t", run, 1, true)).await;
    assert!(after.end.is_none(), "{:?}", after.end);
    let seqs = after.seqs();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{run}");
    assert_eq!(
        live.iter().map(entry_seq).collect::<Vec<_>>(),
        seqs,
        "the live follower of {run} saw what was stored"
    );
    let mut stored: HashMap<&str, u64> = HashMap::new();
    for text in after.entries.iter().filter_map(entry_text) {
        *stored.entry(text).or_default() += 1;
    }
    let lines = STREAMS * LINES;
    for writer in 0..writers {
        for writer_seq in 1..=lines {
            let text = line(&format!("w{writer}"), writer_seq);
            assert_eq!(stored.get(text.as_str()), Some(&1), "{run}: {text:?}");
        }
    }
    assert_eq!(stored.len() as u64, writers as u64 * lines, "{run}");
}

/// `writers` writers on each of `runs`, all at once, each followed live;
/// then the runs are checked and the fsyncs counted against the commits.
async fn many_writers(runs: usize, writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (server, metrics_addr) = synced_server(dir.path()).await;
    let mut client = server.client().await;
    let names: Vec<String> = (0..runs).map(|run| format!("r{run}")).collect();
    let mut followers = Vec::new();
    for name in &names {
        prepare(&mut client, "t", name).await;
        set_status(&mut client, "t", name, pb::RunStatus::Running)
            .await
            .expect("running");
        let mut follower = server.client().await;
        let request = follow_request("t", name, 1, false);
        followers.push(tokio::spawn(async move {
            follow_to_end(&mut follower, request).await
        }));
    }
    let mut tasks = Vec::new();
    for name in &names {
        for writer in 0..writers {
            let client = server.client().await;
            tasks.push(tokio::spawn(write_lines(
                client,
                name.clone(),
                format!("w{writer}"),
            )));
        }
    }
    for task in tasks {
        task.await.expect("writer");
    }
    for (name, follower) in names.iter().zip(followers) {
        set_status(&mut client, "t", name, pb::RunStatus::Completed)
            .await
            .expect("completed");
        let live = follower.await.expect("follower");
        assert!(live.end.is_none(), "{:?}", live.end);
        check_run(&mut client, name, writers, &live.entries).await;
    }

    let metrics = scrape(metrics_addr).await;
    let commits = metrics.value(r#"baa_logd_disk_write_duration_seconds_count{write="commit"}"#);
    let syncs = metrics.value("baa_logd_store_syncs_total");
    let synced = metrics.value("baa_logd_store_synced_commits_total");
    assert_eq!(synced, commits, "every commit was synced, once");
    assert!(
        syncs > 0.0 && syncs < commits,
        "{syncs} fsyncs for {commits} commits: writers that commit together share one"
    );
    assert_eq!(
        metrics.value(r#"baa_logd_disk_write_duration_seconds_count{write="sync"}"#),
        syncs
    );
    server.stop().await;
}

/// Sixteen writers on one run, each sending one line per message: all are
/// acknowledged, every line is stored once, and they took fewer fsyncs
/// than commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_on_one_run_share_fsyncs() {
    many_writers(1, 16).await;
}

/// Four runs with four writers each: each run's writers share its fsyncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_several_runs_share_each_runs_fsyncs() {
    many_writers(4, 4).await;
}

/// With `--sync`, a writer's cursor (which waits for the run's sync)
/// counts every acknowledged line, and a new server over the same
/// directory finds them all.
#[tokio::test]
async fn what_was_acknowledged_is_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = synced_server(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .expect("running");
    write_lines(server.client().await, "r".to_owned(), "w0".to_owned()).await;
    let cursor = crate::util::writer_cursor(&mut client, "t", "r", "w0").await;
    assert_eq!(cursor.last_writer_seq, STREAMS * LINES);
    server.stop().await;

    let (server, _) = synced_server(dir.path()).await;
    let mut client = server.client().await;
    let cursor = crate::util::writer_cursor(&mut client, "t", "r", "w0").await;
    assert_eq!(cursor.last_writer_seq, STREAMS * LINES);
    set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .expect("completed");
    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(
        followed.entries.iter().filter_map(entry_text).count() as u64,
        STREAMS * LINES
    );
    server.stop().await;
}
