//! Reading part of a run: the last entries, a range of sequence numbers, a
//! window of commit times, over gRPC and with `baa-log`.

use std::{
    io::{Seek, SeekFrom, Write},
    time::{Duration, SystemTime},
};

use baa_logging::pb;
use tokio::process::Command;
use tonic::Code;

use crate::util::{
    TestServer, append, entry_seq, entry_text, follow_request, follow_to_end, json_lines, more,
    open, prepare, set_status, stderr, stdout,
};

/// Writes `commits` commits of `per_commit` entries to `t/r` from writer
/// `w`: stdout entries, every fifth one on stderr, texts `line N\n`.
async fn fill(server: &TestServer, commits: u64, per_commit: u64) {
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let mut messages = Vec::new();
    for commit in 0..commits {
        let items = (0..per_commit)
            .map(|index| {
                let n = commit * per_commit + index + 1;
                let text = format!("line {n}\n");
                match n % 5 {
                    0 => stderr(n, &text),
                    _ => stdout(n, &text),
                }
            })
            .collect();
        messages.push(match commit {
            0 => open("t", "r", "w", items),
            _ => more(items),
        });
    }
    append(&mut client, messages).await.unwrap();
}

/// A request for `t/r`'s stored entries with `change` applied.
fn request(change: impl FnOnce(&mut pb::FollowRunRequest)) -> pb::FollowRunRequest {
    let mut request = follow_request("t", "r", 1, true);
    change(&mut request);
    request
}

/// Flips a byte of the first stdout commit of `t/r`, so that a reader
/// that reads the run from its start meets `DATA_LOSS`.
fn damage_the_start(server: &TestServer) {
    let path = server.data_dir.join("t/r/stdout.log");
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(20)).unwrap();
    file.write_all(b"#").unwrap();
}

/// A tail is the last N entries of the selected channels, found from the
/// journal's end: with the run's start damaged, a full read fails but a
/// tail is served whole. It counts per channel filter, within `to_seq`,
/// and 0 sends nothing stored.
#[tokio::test]
async fn a_tail_is_served_from_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // seq 1 is `run_prepared`; entry n is seq n + 1.
    fill(&server, 200, 50).await;
    let mut client = server.client().await;
    let last = 10_001;

    let tail = follow_to_end(&mut client, request(|r| r.tail = Some(100))).await;
    assert!(tail.end.is_none(), "{:?}", tail.end);
    assert_eq!(tail.seqs(), (last - 99..=last).collect::<Vec<_>>());

    // Only stderr: every fifth entry, so seqs n + 1 with n % 5 == 0.
    let stderr_tail = follow_to_end(
        &mut client,
        request(|r| {
            r.tail = Some(7);
            r.channels = vec![pb::WorkerLogChannel::Stderr as i32];
        }),
    )
    .await;
    let expected: Vec<u64> = (9966..=10_000u64)
        .filter(|n| n % 5 == 0)
        .map(|n| n + 1)
        .collect();
    assert_eq!(stderr_tail.seqs(), expected);

    // Within a bound: the last 3 entries up to seq 5000, which is inside a
    // commit.
    let bounded = follow_to_end(
        &mut client,
        request(|r| {
            r.tail = Some(3);
            r.to_seq = 5000;
        }),
    )
    .await;
    assert_eq!(bounded.seqs(), vec![4998, 4999, 5000]);

    let none = follow_to_end(&mut client, request(|r| r.tail = Some(0))).await;
    assert!(none.seqs().is_empty());

    damage_the_start(&server);
    let full = follow_to_end(&mut client, request(|_| {})).await;
    assert_eq!(
        full.end.as_ref().map(tonic::Status::code),
        Some(Code::DataLoss),
        "a full read meets the damage"
    );
    let tail = follow_to_end(&mut client, request(|r| r.tail = Some(100))).await;
    assert!(tail.end.is_none(), "a tail never reads the start");
    assert_eq!(tail.seqs().len(), 100);
    let texts: Vec<&str> = tail.entries.iter().filter_map(entry_text).collect();
    assert_eq!(texts.last(), Some(&"line 10000\n"));
}

/// `to_seq` bounds a live follow: it waits for entries up to it, then ends,
/// though the run goes on.
#[tokio::test]
async fn to_seq_ends_a_live_follow() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    fill(&server, 1, 10).await;
    let mut client = server.client().await;
    let follow = tokio::spawn({
        let mut client = server.client().await;
        async move {
            let mut request = follow_request("t", "r", 5, false);
            request.to_seq = 15;
            follow_to_end(&mut client, request).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let items = (11..=30).map(|n| stdout(n, "more\n")).collect();
    append(&mut client, vec![open("t", "r", "w", items)])
        .await
        .unwrap();
    let followed = tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the follow ends at to_seq")
        .unwrap();
    assert!(followed.end.is_none(), "{:?}", followed.end);
    assert_eq!(followed.seqs(), (5..=15).collect::<Vec<_>>());
}

/// Three batches committed at known times apart: `since` and `until`
/// select by commit time, each alone and together; the journal holds the
/// times. A run whose journal has no times is selected by `createdAt`.
#[tokio::test]
async fn since_and_until_select_by_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let mut marks = Vec::new();
    for batch in 0..3u64 {
        let items = (1..=4)
            .map(|index| {
                let n = batch * 4 + index;
                stdout(n, &format!("batch {batch} item {n}\n"))
            })
            .collect();
        let message = open("t", "r", "w", items);
        append(&mut client, vec![message]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        marks.push(SystemTime::now());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let at = |time: SystemTime| Some(prost_types::Timestamp::from(time));
    // The second batch alone: committed after the first mark, before the
    // second.
    let second_batch = || {
        request(|r| {
            r.since = at(marks[0]);
            r.until = at(marks[1]);
        })
    };
    let since = follow_to_end(&mut client, request(|r| r.since = at(marks[0]))).await;
    assert_eq!(since.seqs(), (6..=13).collect::<Vec<_>>());
    let until = follow_to_end(&mut client, request(|r| r.until = at(marks[1]))).await;
    assert_eq!(until.seqs(), (1..=9).collect::<Vec<_>>());
    let window = follow_to_end(&mut client, second_batch()).await;
    assert_eq!(window.seqs(), (6..=9).collect::<Vec<_>>());
    let tail = follow_to_end(
        &mut client,
        request(|r| {
            r.until = at(marks[1]);
            r.tail = Some(2);
        }),
    )
    .await;
    assert_eq!(tail.seqs(), vec![8, 9]);
    let records = json_lines(&dir.path().join("t/r/journal.jsonl"));
    let times: Vec<u64> = records
        .iter()
        .map(|record| record["time"].as_u64().expect("a commit time"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");

    // Bad times are refused.
    let bad = client
        .follow_run(request(|r| {
            r.since = Some(prost_types::Timestamp {
                seconds: -5,
                nanos: 0,
            })
        }))
        .await;
    let status = bad.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("since"), "{status:?}");

    // The same run as an older server wrote it: no commit times (and so
    // no checksums, which cover them). Selected by `createdAt`.
    server.stop().await;
    let journal = dir.path().join("t/r/journal.jsonl");
    let legacy: String = json_lines(&journal)
        .into_iter()
        .map(|mut record| {
            let object = record.as_object_mut().unwrap();
            for field in ["time", "check", "lens", "crc"] {
                object.remove(field);
            }
            format!("{record}\n")
        })
        .collect();
    std::fs::write(&journal, legacy).unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let window = follow_to_end(&mut client, second_batch()).await;
    assert!(window.end.is_none(), "{:?}", window.end);
    assert_eq!(window.seqs(), (6..=9).collect::<Vec<_>>());

    // A search of such a run reads it through its entries, the window
    // included.
    let mut search = client
        .search_runs(pb::SearchRunsRequest {
            pattern: "item".into(),
            since: at(marks[0]),
            until: at(marks[1]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut found = Vec::new();
    while let Some(response) = search.message().await.unwrap() {
        found.extend(response.matches.into_iter().map(|m| m.text));
    }
    let expected: Vec<String> = (5..=8).map(|n| format!("batch 1 item {n}")).collect();
    assert_eq!(found, expected);
}

/// `baa-log cat --tail N` prints the last N lines even when chunks hold
/// several; `follow -n N` prints the last N, then new lines, and ends with
/// the run; `--from-seq/--to-seq` and `--since` bound the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let items = (1..=20)
        .map(|n| stdout(n, &format!("a{n}\nb{n}\n")))
        .collect();
    append(&mut client, vec![open("t", "r", "w", items)])
        .await
        .unwrap();
    let baa_log = |args: &[&str]| {
        let mut command = Command::new(crate::util::process::cli_binary());
        command
            .args(args)
            .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
            .env_remove("BAA_LOG_TOKEN")
            .kill_on_drop(true);
        command
    };
    let output = baa_log(&["cat", "t/r", "--tail", "3"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "b19\na20\nb20\n");

    let output = baa_log(&["cat", "t/r", "--from-seq", "3", "--to-seq", "4"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "a2\nb2\na3\nb3\n");

    let output = baa_log(&["cat", "t/r", "--since", "1h", "-n", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "b20\n");
    let output = baa_log(&["cat", "t/r", "--since", "yesterday"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("10m"));

    let follow = baa_log(&["follow", "t/r", "-n", "2", "--channel", "stdout"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(
        &mut client,
        vec![open("t", "r", "w", vec![stdout(21, "live\n")])],
    )
    .await
    .unwrap();
    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), follow.wait_with_output())
        .await
        .expect("follow ends with the run")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let output_lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('»')).collect();
    assert_eq!(output_lines, ["a20", "b20", "live"], "{text}");
    assert!(text.trim_end().ends_with("run is completed"), "{text}");
    let seqs: Vec<u64> = follow_to_end(&mut client, follow_request("t", "r", 1, true))
        .await
        .entries
        .iter()
        .map(entry_seq)
        .collect();
    assert_eq!(seqs.len(), 22);
}
