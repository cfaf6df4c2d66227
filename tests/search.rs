//! `SearchRuns` and `baa-log grep`: matches across runs with their
//! context, patterns, caps, damage, deadlines and cancellation.

use std::time::Duration;

use baa_logd::ServerConfig;
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use tokio::process::Command;
use tonic::Code;

use crate::util::{
    TestServer, append, metadata_at, more, open, prepare_request, set_status, stderr, stdout,
};

/// Prepares `task/run`, created at `created_at`; returns a client.
async fn prepared(server: &TestServer, task: &str, run: &str, created_at: &str) -> LoggingClient {
    let mut client = server.client().await;
    client
        .prepare_run(prepare_request(metadata_at(task, run, created_at)))
        .await
        .unwrap();
    client
}

/// Prepares `task/run`, created at `created_at`, and writes `items`.
async fn run_with(
    server: &TestServer,
    task: &str,
    run: &str,
    created_at: &str,
    items: Vec<pb::AppendItem>,
) {
    let mut client = prepared(server, task, run, created_at).await;
    append(&mut client, vec![open(task, run, "w", items)])
        .await
        .unwrap();
}

/// Everything a search returns, until it ends.
#[derive(Debug, Default)]
struct Searched {
    matches: Vec<pb::SearchMatch>,
    skipped: Vec<pb::SearchSkipped>,
    last: pb::SearchRunsResponse,
    end: Option<tonic::Status>,
}

/// Runs a search to its end.
async fn search(server: &TestServer, request: pb::SearchRunsRequest) -> Searched {
    search_with(server, tonic::Request::new(request)).await
}

/// Runs a search, as given, to its end.
async fn search_with(
    server: &TestServer,
    request: tonic::Request<pb::SearchRunsRequest>,
) -> Searched {
    let mut client = server.client().await;
    let mut searched = Searched::default();
    let mut stream = match client.search_runs(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            searched.end = Some(status);
            return searched;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(mut response)) => {
                searched.matches.append(&mut response.matches);
                searched.skipped.append(&mut response.skipped);
                searched.last = response;
            }
            Ok(None) => return searched,
            Err(status) => {
                searched.end = Some(status);
                return searched;
            }
        }
    }
}

/// A request for `pattern` over every run.
fn request(pattern: &str) -> pb::SearchRunsRequest {
    pb::SearchRunsRequest {
        pattern: pattern.into(),
        ..Default::default()
    }
}

/// Matches across runs, newest run first, each with its run, seq, channel,
/// spans and context from its own channel; a line written in two chunks
/// matches whole; a task filter, a channel filter, case and literals.
#[tokio::test]
async fn finds_lines_across_runs_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    run_with(
        &server,
        "build",
        "old",
        "2026-01-01T00:00:00.000Z",
        vec![
            stdout(1, "compiling\nerror: old failure\n"),
            stdout(2, "done\n"),
        ],
    )
    .await;
    run_with(
        &server,
        "build",
        "new",
        "2026-01-02T00:00:00.000Z",
        vec![
            stdout(1, "one\ntwo\nthe err"),
            stderr(2, "warning: noise\n"),
            stdout(3, "or is here\nafter 1\nafter 2\n"),
            stderr(4, "Error: shouting\n"),
        ],
    )
    .await;
    run_with(
        &server,
        "deploy",
        "d1",
        "2026-01-03T00:00:00.000Z",
        vec![stdout(1, "deploy ok\n")],
    )
    .await;

    let found = search(
        &server,
        pb::SearchRunsRequest {
            before_context: 1,
            after_context: 1,
            ..request("error")
        },
    )
    .await;
    assert!(found.end.is_none(), "{:?}", found.end);
    let summary: Vec<(String, u64, &str)> = found
        .matches
        .iter()
        .map(|m| {
            (
                format!("{}/{}", m.task_id, m.run_id),
                m.seq,
                m.text.as_str(),
            )
        })
        .collect();
    // seq 1 of each run is `run_prepared`.
    assert_eq!(
        summary,
        [
            ("build/new".to_owned(), 2, "the error is here"),
            ("build/old".to_owned(), 2, "error: old failure"),
        ]
    );
    let joined = &found.matches[0];
    assert_eq!(joined.channel, pb::WorkerLogChannel::Stdout as i32);
    assert_eq!(joined.spans, [pb::SearchSpan { start: 4, end: 9 }]);
    let lines = |lines: &[pb::SearchLine]| {
        lines
            .iter()
            .map(|line| (line.seq, line.text.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&joined.before), [(2, "two".to_owned())]);
    assert_eq!(lines(&joined.after), [(4, "after 1".to_owned())]);
    assert_eq!(
        lines(&found.matches[1].before),
        [(2, "compiling".to_owned())]
    );
    assert_eq!(lines(&found.matches[1].after), [(3, "done".to_owned())]);
    assert_eq!(found.last.runs_searched, 3);
    assert!(found.last.bytes_scanned > 0);

    let folded = search(
        &server,
        pb::SearchRunsRequest {
            ignore_case: true,
            task_id: "build".into(),
            run_id: "new".into(),
            channels: vec![pb::WorkerLogChannel::Stderr as i32],
            ..request("ERROR")
        },
    )
    .await;
    let texts: Vec<&str> = folded.matches.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["Error: shouting"]);

    let regex = search(&server, request(r"^after \d$")).await;
    assert_eq!(regex.matches.len(), 2);
    let literal = search(
        &server,
        pb::SearchRunsRequest {
            literal: true,
            ..request("after \\d")
        },
    )
    .await;
    assert!(literal.matches.is_empty());

    // Lifecycle events are searched in their rendered line.
    let events = search(
        &server,
        pb::SearchRunsRequest {
            task_id: "deploy".into(),
            ..request("run_prepared")
        },
    )
    .await;
    assert_eq!(events.matches.len(), 1);
    assert_eq!(
        events.matches[0].channel,
        pb::WorkerLogChannel::Worker as i32
    );
}

/// Bad requests are refused with the field they got wrong; a named run
/// that does not exist is `NOT_FOUND`; the cap stops the search and says
/// so.
#[tokio::test]
async fn refuses_bad_requests_and_stops_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let items = (1..=50).map(|n| stdout(n, &format!("hit {n}\n"))).collect();
    run_with(&server, "t", "r", "2026-01-01T00:00:00.000Z", items).await;
    let refused = |searched: Searched, code: Code, needle: &str| {
        let status = searched.end.expect("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    };
    refused(
        search(&server, request("(")).await,
        Code::InvalidArgument,
        "pattern",
    );
    refused(
        search(&server, request("")).await,
        Code::InvalidArgument,
        "empty",
    );
    refused(
        search(
            &server,
            pb::SearchRunsRequest {
                run_id: "r".into(),
                ..request("hit")
            },
        )
        .await,
        Code::InvalidArgument,
        "task_id",
    );
    refused(
        search(
            &server,
            pb::SearchRunsRequest {
                before_context: 101,
                ..request("hit")
            },
        )
        .await,
        Code::InvalidArgument,
        "before_context",
    );
    refused(
        search(
            &server,
            pb::SearchRunsRequest {
                task_id: "t".into(),
                run_id: "missing".into(),
                ..request("hit")
            },
        )
        .await,
        Code::NotFound,
        "missing",
    );
    let capped = search(
        &server,
        pb::SearchRunsRequest {
            max_matches: 7,
            ..request("hit")
        },
    )
    .await;
    assert!(capped.end.is_none());
    assert_eq!(capped.matches.len(), 7);
    assert!(capped.last.limit_reached);
    let texts: Vec<&str> = capped.matches.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hit 1", "hit 2", "hit 3", "hit 4", "hit 5", "hit 6", "hit 7"
        ]
    );
}

/// A commit whose bytes were altered is reported as skipped and none of
/// its lines is matched; the commits around it are searched.
#[tokio::test]
async fn damaged_commits_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = prepared(&server, "t", "r", "2026-01-01T00:00:00.000Z").await;
    for n in 1..=3u64 {
        append(
            &mut client,
            vec![open(
                "t",
                "r",
                "w",
                vec![stdout(n, &format!("needle {n}\n"))],
            )],
        )
        .await
        .unwrap();
    }
    // Alter the second commit's line: `needle 2` becomes `needle X`.
    let path = dir.path().join("t/r/stdout.log");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("needle 2", "needle X")).unwrap();
    let found = search(&server, request("needle")).await;
    assert!(found.end.is_none(), "{:?}", found.end);
    let texts: Vec<&str> = found.matches.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["needle 1", "needle 3"]);
    assert_eq!(
        found
            .skipped
            .iter()
            .map(|s| (s.first_seq, s.last_seq))
            .collect::<Vec<_>>(),
        [(3, 3)]
    );
}

/// Under a low search rate a search of a large run is paced: the call's
/// deadline ends it with `DEADLINE_EXCEEDED` after the matches found, and
/// it scanned no more than the rate allowed. A search the caller drops
/// lets go of its run, which retention can then delete.
#[tokio::test]
async fn deadlines_pace_and_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.limits.search_rate = 256 * 1024;
    let server = TestServer::start_with(dir.path(), config).await;
    let line = "x".repeat(1000);
    // 160 matches in 8 MB: the cap never ends the search first.
    let items = (1..=8000u64)
        .map(|n| match n % 50 {
            0 => stdout(n, &format!("needle {n} {line}\n")),
            _ => stdout(n, &format!("{n} {line}\n")),
        })
        .collect();
    let mut client = prepared(&server, "t", "r", "2026-01-01T00:00:00.000Z").await;
    let mut items: Vec<pb::AppendItem> = items;
    let messages: Vec<pb::AppendLogsRequest> = items
        .chunks_mut(1000)
        .enumerate()
        .map(|(index, chunk)| match index {
            0 => open("t", "r", "w", chunk.to_vec()),
            _ => more(chunk.to_vec()),
        })
        .collect();
    append(&mut client, messages).await.unwrap();

    let mut timed = tonic::Request::new(request("needle"));
    timed.set_timeout(Duration::from_millis(1500));
    let found = search_with(&server, timed).await;
    let status = found.end.expect("ended by the deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("ran out of time"), "{status:?}");
    assert!(!found.matches.is_empty(), "the matches found were sent");
    // The burst (one second's worth), 1.5 s at the rate, and one step.
    let allowed = 256 * 1024 + 384 * 1024 + 1024 * 1024;
    assert!(
        found.last.bytes_scanned <= allowed,
        "scanned {} bytes",
        found.last.bytes_scanned
    );

    // One caller runs at most four searches at once.
    let mut open_searches = Vec::new();
    for _ in 0..4 {
        let stream = client
            .search_runs(request("needle"))
            .await
            .expect("within the cap")
            .into_inner();
        open_searches.push(stream);
    }
    let refused = client.search_runs(request("needle")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("(4)"), "{refused:?}");
    drop(open_searches);

    set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "r", pb::RunStatus::Completed)
        .await
        .unwrap();
    let stream = client
        .search_runs(request("needle"))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let collect = |dry_run| pb::CollectRunsRequest {
        dry_run,
        max_age: Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
        max_bytes: None,
    };
    let kept = client
        .collect_runs(collect(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.kept_open_count, 1, "a search holds its run");
    drop(stream);
    let mut deleted = 0;
    for _ in 0..100 {
        let pass = client
            .collect_runs(collect(false))
            .await
            .unwrap()
            .into_inner();
        deleted += pass.runs.len();
        if deleted == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deleted, 1, "the dropped search let go of its run");
}

/// `baa-log grep` prints `task/run:seq: line`, context with `-` and `--`
/// between groups, JSON with --json, and exits 0 on a match, 1 on none,
/// 2 on an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baa_log_grep_prints_like_grep() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    run_with(
        &server,
        "t",
        "r",
        "2026-01-01T00:00:00.000Z",
        vec![
            stdout(1, "a\nmatch one\nb\n"),
            stdout(2, "c\nd\ne\nmatch two\n"),
        ],
    )
    .await;
    let grep = |args: &[&str]| {
        let mut command = Command::new(crate::util::process::cli_binary());
        command
            .arg("grep")
            .args(args)
            .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
            .env_remove("BAA_LOG_TOKEN");
        command
    };
    let output = grep(&["match", "t/r"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "t/r:2: match one\nt/r:3: match two\n"
    );
    let output = grep(&["-C", "1", "match", "--task", "t"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "t/r-2- a\nt/r:2: match one\nt/r-2- b\n--\nt/r-3- e\nt/r:3: match two\n"
    );
    let output = grep(&["--json", "two"]).output().await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["text"], "match two");
    assert_eq!(value["seq"], 3);
    assert_eq!(value["channel"], "stdout");
    let output = grep(&["nothing-like-this"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let output = grep(&["(unclosed"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pattern"),
        "{output:?}"
    );
}
