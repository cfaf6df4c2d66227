//! `baa-log`, the command line, as a user runs it: a real binary against a
//! real server, its output checked line by line against the stored files.

use std::{process::Output, time::Duration};

use baa_logging::pb;
use serde_json::Value;
use tokio::process::Command;

use crate::util::{TestServer, json_lines, process::cli_binary};

/// Runs `baa-log` with `args` against `server` and returns what it did.
pub(crate) async fn baa_log(server: &TestServer, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .args(args)
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env(
            "BAA_LOG_SPOOL_DIR",
            std::env::temp_dir().join("baa-log-test-spools"),
        )
        .env_remove("BAA_LOG_TOKEN")
        .output()
        .await
        .expect("baa-log runs")
}

/// The text of a stream of output.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// A run's stored entries from all three files, merged by seq.
pub(crate) fn stored_entries(server: &TestServer, task: &str, run: &str) -> Vec<Value> {
    let dir = server.data_dir.join(task).join(run);
    let mut entries: Vec<Value> = ["worker.log", "stdout.log", "stderr.log"]
        .iter()
        .flat_map(|name| json_lines(&dir.join(name)))
        .collect();
    entries.sort_by_key(|entry| entry["seq"].as_u64());
    entries
}

/// The concatenated texts of a run's entries on one channel.
pub(crate) fn channel_text(entries: &[Value], channel: &str) -> String {
    entries
        .iter()
        .filter(|entry| entry["channel"] == channel)
        .map(|entry| entry["text"].as_str().expect("text"))
        .collect()
}

/// `exec` runs a command that writes to both streams and exits with 3:
/// baa-log exits with 3 and shows the output, the run is `failed`, and
/// both logs are complete and in order between the start and exit events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_logs_a_failing_command_and_exits_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "for i in $(seq 1 200); do echo \"out $i\"; echo \"err $i\" >&2; done; exit 3";
    let output = baa_log(
        &server,
        &[
            "exec", "--task", "t", "--run", "r", "--step", "build", "--", "sh", "-c", script,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let expected_out: String = (1..=200).map(|i| format!("out {i}\n")).collect();
    let expected_err: String = (1..=200).map(|i| format!("err {i}\n")).collect();
    assert_eq!(
        text(&output.stdout),
        expected_out,
        "the terminal shows stdout"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("baa-log: run t/r\n"), "{stderr}");
    assert!(stderr.ends_with(&expected_err), "{stderr}");

    let entries = stored_entries(&server, "t", "r");
    let seqs: Vec<u64> = entries
        .iter()
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    assert_eq!(channel_text(&entries, "stdout"), expected_out);
    assert_eq!(channel_text(&entries, "stderr"), expected_err);
    let types: Vec<&str> = entries
        .iter()
        .filter(|entry| entry["channel"] == "worker")
        .map(|entry| entry["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["run_prepared", "worker_started", "worker_exited"]);
    let exited = entries.last().unwrap();
    assert_eq!(exited["type"], "worker_exited", "exit is the last entry");
    assert_eq!(exited["level"], "error");
    assert_eq!(exited["data"]["exitCode"], 3);
    assert_eq!(entries[1]["type"], "worker_started");

    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t/r/state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "failed");
    assert_eq!(state["exitCode"], 3);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t/r/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["stepId"], "build");
    assert_eq!(meta["command"], format!("sh -c '{script}'"));
    server.stop().await;
}

/// `follow --json` prints one entry a line, each equal to the stored line
/// of the same seq; `cat` prints the output as the program wrote it; and
/// plain `follow` marks lifecycle events and ends with the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_json_and_cat_match_the_stored_run_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "printf 'a\\nb'; printf 'c\\n' >&2; printf ' ünï\\n'; exit 0";
    let output = baa_log(
        &server,
        &[
            "exec", "--task", "t", "--run", "r", "--", "sh", "-c", script,
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let stored = stored_entries(&server, "t", "r");

    let json = baa_log(&server, &["follow", "t/r", "--json"]).await;
    assert!(json.status.success(), "{json:?}");
    let lines: Vec<Value> = text(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines, stored);

    let from = baa_log(
        &server,
        &[
            "follow",
            "t/r",
            "--json",
            "--from",
            "3",
            "--channel",
            "stdout",
        ],
    )
    .await;
    let seqs: Vec<u64> = text(&from.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = stored
        .iter()
        .filter(|entry| entry["channel"] == "stdout" && entry["seq"].as_u64() >= Some(3))
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, expected);

    let cat = baa_log(&server, &["cat", "t/r"]).await;
    assert!(cat.status.success());
    let merged: String = stored
        .iter()
        .filter_map(|entry| entry["text"].as_str())
        .collect();
    assert_eq!(text(&cat.stdout), merged);
    let cat_out = baa_log(&server, &["cat", "t/r", "--channel", "stdout"]).await;
    assert_eq!(text(&cat_out.stdout), channel_text(&stored, "stdout"));

    let plain = baa_log(&server, &["follow", "t/r"]).await;
    let plain = text(&plain.stdout);
    let lines: Vec<&str> = plain.lines().collect();
    assert!(
        lines[0].starts_with("» ") && lines[0].contains("run_prepared"),
        "{plain}"
    );
    assert!(
        lines.iter().any(|line| line.contains("worker_exited")),
        "{plain}"
    );
    assert_eq!(
        lines.last(),
        Some(&"» run is completed (exit code 0)"),
        "{plain}"
    );
    assert!(
        !plain.contains('\u{1b}'),
        "no colour codes in a pipe: {plain:?}"
    );
    server.stop().await;
}

/// `runs` lists runs newest first with their status and entry count, and
/// `show` prints one run, also as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_show_describe_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for (run, code) in [("first", "0"), ("second", "5")] {
        let output = baa_log(
            &server,
            &[
                "exec",
                "--task",
                "t",
                "--run",
                run,
                "--",
                "sh",
                "-c",
                &format!("echo {run}; exit {code}"),
            ],
        )
        .await;
        assert_eq!(output.status.code(), Some(code.parse().unwrap()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let runs = text(&baa_log(&server, &["runs"]).await.stdout);
    let rows: Vec<Vec<&str>> = runs
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["TASK", "RUN", "STEP", "STATUS", "ATTEMPT", "ENTRIES", "AGE"]
    );
    assert_eq!(rows[1][..6], ["t", "second", "main", "failed", "1", "4"]);
    assert_eq!(rows[2][..6], ["t", "first", "main", "completed", "1", "4"]);
    let failed = text(
        &baa_log(&server, &["runs", "--status", "failed"])
            .await
            .stdout,
    );
    assert_eq!(failed.lines().count(), 2, "{failed}");

    let show = text(
        &baa_log(&server, &["show", "t/second", "--json"])
            .await
            .stdout,
    );
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["state"]["status"], "failed");
    assert_eq!(show["state"]["exitCode"], 5);
    assert_eq!(show["summary"]["stdoutChunkCount"], 1);
    assert!(show.get("runDir").is_none(), "{show}");
    let human = text(&baa_log(&server, &["show", "t/first"]).await.stdout);
    assert!(human.contains("status     completed"), "{human}");
    // The server's local paths mean nothing to a remote user: only asked.
    assert!(!human.contains("directory"), "{human}");
    let verbose = text(
        &baa_log(&server, &["show", "t/first", "--verbose"])
            .await
            .stdout,
    );
    let run_dir = server.data_dir.join("t").join("first");
    assert!(
        verbose.contains(&format!("directory  {}", run_dir.display())),
        "{verbose}"
    );
    server.stop().await;
}

/// SIGTERM to `baa-log exec` is passed on to the command, which may clean
/// up; what it printed before and during is kept, and its code is ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_passes_sigterm_on_and_keeps_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let script = "trap 'echo cleaning up; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let child = Command::new(cli_binary())
        .args([
            "exec", "--task", "t", "--run", "r", "--", "sh", "-c", script,
        ])
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let stdout_log = dir.path().join("t/r/stdout.log");
    for _ in 0..500 {
        if std::fs::read_to_string(&stdout_log).is_ok_and(|text| text.contains("ready")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(text(&output.stdout), "ready\ncleaning up\n");
    let entries = stored_entries(&server, "t", "r");
    assert_eq!(channel_text(&entries, "stdout"), "ready\ncleaning up\n");
    assert_eq!(entries.last().unwrap()["data"]["exitCode"], 7);
    server.stop().await;
}

/// Failures are one line that says what failed and what to try, with a
/// non-zero exit code, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cases: [(&[&str], &str); 4] = [
        (&["show", "t/missing"], "not found"),
        (&["follow", "nope"], "TASK/RUN"),
        (
            &["exec", "--task", "bad/task", "--", "true"],
            "invalid task id `bad/task`",
        ),
        (
            &["exec", "--task", "t", "--", "/no/such/program"],
            "cannot start /no/such/program",
        ),
    ];
    for (args, needle) in cases {
        let output = baa_log(&server, args).await;
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let unreachable = Command::new(cli_binary())
        .args(["runs"])
        .env("BAA_LOG_SERVER", "http://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = text(&unreachable.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach baa-logd at http://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("BAA_LOG_SERVER"), "{stderr}");
    server.stop().await;
}

/// `health` asks the standard gRPC health service: a running server is
/// `SERVING` (exit 0) for the whole server and for the `LoggingService`,
/// an unknown service is `SERVICE_UNKNOWN` (exit 1), and an unreachable
/// server is one line on stderr and exit 1, as containers and probes
/// expect of a health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_zero_only_when_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for args in [
        &["health"][..],
        &["health", "--service", "baa.logging.v1.LoggingService"],
    ] {
        let output = baa_log(&server, args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert_eq!(text(&output.stdout), "SERVING\n");
        assert_eq!(text(&output.stderr), "");
    }
    let unknown = baa_log(&server, &["health", "--service", "no.such.Service"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert_eq!(text(&unknown.stdout), "SERVICE_UNKNOWN\n");
    server.stop().await;

    let unreachable = Command::new(cli_binary())
        .args(["health", "--server", "http://127.0.0.1:1"])
        .env_remove("BAA_LOG_SERVER")
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
    assert_eq!(text(&unreachable.stdout), "");
    let stderr = text(&unreachable.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach baa-logd at http://127.0.0.1:1"),
        "{stderr}"
    );
}

/// `--server` takes `host:port` as grpcurl does; `https://` against a
/// plaintext server says in words that the server does not speak TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_addresses_as_people_type_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let bare = baa_log(&server, &["--server", &server.addr.to_string(), "runs"]).await;
    assert!(bare.status.success(), "{}", text(&bare.stderr));
    assert!(
        text(&bare.stdout).starts_with("TASK"),
        "{}",
        text(&bare.stdout)
    );
    let https = format!("https://{}", server.addr);
    let tls = baa_log(&server, &["--server", &https, "runs"]).await;
    assert_eq!(tls.status.code(), Some(1));
    let stderr = text(&tls.stderr);
    assert!(
        stderr.contains("the server there does not speak TLS; use http://HOST:PORT"),
        "{stderr}"
    );
    server.stop().await;
}

/// `--seq` and `--timestamps=utc` put each line's entry number and stored
/// time in front of it, in `cat` and in `follow`, so that a line can be
/// cited; a line continued across chunks is prefixed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_carry_their_seq_and_time_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    crate::util::prepare(&mut client, "t", "r").await;
    crate::util::append(
        &mut client,
        vec![crate::util::open(
            "t",
            "r",
            "w",
            vec![
                crate::util::stdout(1, "one\ntw"),
                crate::util::stdout(2, "o\nthree\n"),
            ],
        )],
    )
    .await
    .unwrap();
    let stored = stored_entries(&server, "t", "r");
    // Stored in `toISOString` form, which is what UTC output shows.
    let time = |seq: u64| -> String {
        let entry = stored.iter().find(|e| e["seq"] == seq).unwrap();
        entry["createdAt"].as_str().unwrap().to_owned()
    };
    let cat = baa_log(&server, &["cat", "t/r", "--seq", "--timestamps=utc"]).await;
    assert!(cat.status.success(), "{cat:?}");
    assert_eq!(
        text(&cat.stdout),
        format!(
            "{}      2 one\n{}      2 two\n{}      3 three\n",
            time(2),
            time(2),
            time(3)
        )
    );
    for status in [
        baa_logging::pb::RunStatus::Running,
        baa_logging::pb::RunStatus::Completed,
    ] {
        crate::util::set_status(&mut client, "t", "r", status)
            .await
            .unwrap();
    }
    let follow = baa_log(&server, &["follow", "t/r", "--seq", "--channel", "stdout"]).await;
    assert!(follow.status.success(), "{follow:?}");
    let follow = text(&follow.stdout);
    assert!(
        follow.starts_with("     2 one\n     2 two\n     3 three\n"),
        "{follow}"
    );
    server.stop().await;
}

/// Prepares `run` of `task`, created at `created_at`, with `text` on its
/// stdout.
async fn prepare_with_output(
    server: &TestServer,
    task: &str,
    run: &str,
    created_at: &str,
    text: &str,
) {
    use crate::util::{append, metadata_at, open, prepare_request, stdout};
    let mut client = server.client().await;
    client
        .prepare_run(prepare_request(metadata_at(task, run, created_at)))
        .await
        .expect("prepare");
    append(
        &mut client,
        vec![open(task, run, "w", vec![stdout(1, text)])],
    )
    .await
    .expect("append");
}

/// `runs --json` prints one run a line, newest first, each the object
/// `show --json` prints for it; the line saying that `--limit` left runs
/// out goes to stderr, and only when it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_json_is_one_run_a_line_and_tells_of_more_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for (run, day) in [("a", 1), ("b", 2), ("c", 3)] {
        let created_at = format!("2026-01-0{day}T00:00:00Z");
        prepare_with_output(&server, "t", run, &created_at, &format!("{run}\n")).await;
    }
    let mut client = server.client().await;
    crate::util::set_status(&mut client, "t", "b", baa_logging::pb::RunStatus::Running)
        .await
        .unwrap();

    let all = baa_log(&server, &["runs", "--json"]).await;
    assert!(all.status.success(), "{all:?}");
    assert_eq!(text(&all.stderr), "", "nothing more to tell");
    let lines: Vec<Value> = text(&all.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|run| run["metadata"]["runId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "b", "a"]);
    let statuses: Vec<&str> = lines
        .iter()
        .map(|run| run["state"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["prepared", "running", "prepared"]);
    for (line, id) in lines.iter().zip(&ids) {
        let show = baa_log(&server, &["show", &format!("t/{id}"), "--json"]).await;
        let show: Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(line, &show, "runs --json and show --json agree on {id}");
        assert_eq!(line["summary"]["stdoutChunkCount"], 1);
        assert!(line.get("runDir").is_none(), "{line}");
    }

    let cut = baa_log(&server, &["runs", "--json", "--limit", "2"]).await;
    assert!(cut.status.success(), "{cut:?}");
    assert_eq!(
        text(&cut.stdout).lines().count(),
        2,
        "{}",
        text(&cut.stdout)
    );
    for line in text(&cut.stdout).lines() {
        serde_json::from_str::<Value>(line).expect("stdout holds only runs");
    }
    let hint = text(&cut.stderr);
    assert_eq!(hint.lines().count(), 1, "{hint}");
    assert!(
        hint.contains("more runs exist") && hint.contains("--limit"),
        "{hint}"
    );

    let table = baa_log(&server, &["runs", "--limit", "2"]).await;
    assert_eq!(
        text(&table.stdout).lines().count(),
        3,
        "a header and two runs"
    );
    assert!(text(&table.stderr).contains("more runs exist"));
    let exact = baa_log(&server, &["runs", "--limit", "3"]).await;
    assert_eq!(text(&exact.stdout).lines().count(), 4);
    assert_eq!(text(&exact.stderr), "", "every run is shown");
    let one_task = baa_log(
        &server,
        &["runs", "--json", "--limit", "1", "--status", "running"],
    )
    .await;
    assert_eq!(text(&one_task.stdout).lines().count(), 1);
    assert_eq!(text(&one_task.stderr), "", "one run is running, and shown");
    server.stop().await;
}

/// `TASK/@latest` names the task's newest run by creation time, not the
/// last one prepared, and `@latest~1` the one before; a place beyond the
/// task's runs fails with one line naming the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_names_a_tasks_runs_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // The newer run is prepared first, and another task has a newer one.
    prepare_with_output(&server, "t", "new", "2026-01-02T00:00:00Z", "new output\n").await;
    prepare_with_output(&server, "t", "old", "2026-01-01T00:00:00Z", "old output\n").await;
    prepare_with_output(&server, "u", "other", "2026-01-03T00:00:00Z", "other\n").await;

    for (name, expected) in [
        ("t/@latest", "new output\n"),
        ("t/@latest~0", "new output\n"),
        ("t/@latest~1", "old output\n"),
        ("u/@latest", "other\n"),
    ] {
        let cat = baa_log(&server, &["cat", name]).await;
        assert!(cat.status.success(), "{name}: {cat:?}");
        assert_eq!(text(&cat.stdout), expected, "{name}");
    }
    let show = baa_log(&server, &["show", "t/@latest~1", "--json"]).await;
    let show: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(show["metadata"]["runId"], "old");
    // `follow` ends with the run.
    let mut client = server.client().await;
    for status in [
        baa_logging::pb::RunStatus::Running,
        baa_logging::pb::RunStatus::Completed,
    ] {
        crate::util::set_status(&mut client, "t", "new", status)
            .await
            .unwrap();
    }
    let follow = baa_log(
        &server,
        &["follow", "t/@latest", "--json", "--channel", "stdout"],
    )
    .await;
    let follow: Value = serde_json::from_slice(&follow.stdout).unwrap();
    assert_eq!(follow["runId"], "new");

    for (args, needles) in [
        (
            &["cat", "t/@latest~5"][..],
            &["task `t`", "only 2 runs"][..],
        ),
        (&["show", "empty/@latest"], &["task `empty`", "no runs"]),
    ] {
        let output = baa_log(&server, args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&output.stdout), "", "{args:?}");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
        }
    }
    // A malformed place is a usage error, not a run id.
    let malformed = baa_log(&server, &["cat", "t/@latest~x"]).await;
    assert_eq!(malformed.status.code(), Some(2), "{malformed:?}");
    assert!(text(&malformed.stderr).contains("TASK/@latest~N"));
    server.stop().await;
}

/// `follow --wait` started before its run exists waits quietly (stderr is
/// not a terminal here), then prints the run once it is prepared, written
/// and completed, and exits 0; so does `--wait` with `@latest` of a task
/// that has no run yet. Without `--wait` a missing run fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_wait_follows_a_run_prepared_later() {
    use crate::util::{append, open, prepare, set_status, stdout};
    use baa_logging::pb::RunStatus;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let missing = baa_log(&server, &["follow", "t/r"]).await;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(text(&missing.stderr).contains("not found"));

    let start = |args: &[&str]| {
        Command::new(cli_binary())
            .args(args)
            .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
            .env_remove("BAA_LOG_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("baa-log starts")
    };
    let mut by_id = start(&["follow", "--wait", "t/r", "--channel", "stdout"]);
    let mut by_place = start(&["follow", "--wait", "u/@latest", "--channel", "stdout"]);
    // Long enough for both to have found nothing and started waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(by_id.try_wait().unwrap().is_none(), "still waiting");
    assert!(by_place.try_wait().unwrap().is_none(), "still waiting");

    let mut client = server.client().await;
    for (task, run) in [("t", "r"), ("u", "first")] {
        prepare(&mut client, task, run).await;
        set_status(&mut client, task, run, RunStatus::Running)
            .await
            .unwrap();
        let line = format!("hello from {task}/{run}\n");
        append(
            &mut client,
            vec![open(task, run, "w", vec![stdout(1, &line)])],
        )
        .await
        .unwrap();
        set_status(&mut client, task, run, RunStatus::Completed)
            .await
            .unwrap();
    }
    for (child, line) in [
        (by_id, "hello from t/r\n"),
        (by_place, "hello from u/first\n"),
    ] {
        let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("the follow ends with the run")
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = text(&output.stdout);
        assert!(stdout.contains(line), "{stdout}");
        assert!(stdout.ends_with("» run is completed\n"), "{stdout}");
        assert_eq!(text(&output.stderr), "", "no waiting line off a terminal");
    }
    server.stop().await;
}

/// `follow --exit-status` exits with the run's outcome: 0 completed, 3
/// failed, 4 blocked; without it a follow of a failed run exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_exit_status_tells_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for (run, status) in [
        ("done", pb::RunStatus::Completed),
        ("broken", pb::RunStatus::Failed),
        ("stuck", pb::RunStatus::Blocked),
    ] {
        crate::util::prepare(&mut client, "t", run).await;
        crate::util::set_status(&mut client, "t", run, pb::RunStatus::Running)
            .await
            .unwrap();
        crate::util::set_status(&mut client, "t", run, status)
            .await
            .unwrap();
    }
    for (run, code) in [("done", 0), ("broken", 3), ("stuck", 4)] {
        let output = baa_log(&server, &["follow", "--exit-status", &format!("t/{run}")]).await;
        assert_eq!(output.status.code(), Some(code), "t/{run}: {output:?}");
    }
    let output = baa_log(&server, &["follow", "t/broken"]).await;
    assert_eq!(output.status.code(), Some(0));
}

/// The run a `baa-log exec` printed as `baa-log: run TASK/RUN ...`, by its
/// run id.
fn printed_run_id(output: &Output) -> String {
    let stderr = text(&output.stderr);
    let line = stderr.lines().next().unwrap_or_default();
    let named = line
        .strip_prefix("baa-log: run t/")
        .unwrap_or_else(|| panic!("no run line: {stderr}"));
    named.split(' ').next().unwrap().to_owned()
}

/// A stored JSON file of run `t/run`.
fn run_file(server: &TestServer, run: &str, name: &str) -> Value {
    let path = server.data_dir.join("t").join(run).join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("the run's file")).unwrap()
}

/// The ids of task `t`'s runs, as `ListRuns` has them, newest first.
async fn run_ids(server: &TestServer) -> Vec<String> {
    let page = server
        .typed_client()
        .await
        .list_runs(baa_logging_client::RunFilter {
            task_id: Some("t".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    page.runs
        .into_iter()
        .map(|run| run.metadata.unwrap().run_id)
        .collect()
}

/// `exec --retry-of t/ID` after a failed attempt 1 runs attempt 2 as
/// `ID.2`: same step, completed, its `worker_started` data naming the
/// earlier run as `retryOf`, and the printed line naming both;
/// `--retry-of t/@latest` then runs `ID.3`. Retrying a run whose next
/// attempt has started is refused, naming the attempt to retry; a next
/// attempt that is only prepared, with the same metadata, is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_retry_of_runs_the_next_attempt_with_a_derived_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let first = baa_log(
        &server,
        &[
            "exec",
            "--task",
            "t",
            "--step",
            "build",
            "--step-name",
            "Build it",
            "--",
            "sh",
            "-c",
            "exit 4",
        ],
    )
    .await;
    assert_eq!(first.status.code(), Some(4), "{first:?}");
    let id = printed_run_id(&first);

    let second = baa_log(
        &server,
        &["exec", "--retry-of", &format!("t/{id}"), "--", "true"],
    )
    .await;
    assert!(second.status.success(), "{second:?}");
    assert_eq!(
        text(&second.stderr).lines().next(),
        Some(format!("baa-log: run t/{id}.2 (attempt 2 of t/{id})").as_str())
    );
    let meta = run_file(&server, &format!("{id}.2"), "meta.json");
    assert_eq!(meta["attempt"], 2);
    assert_eq!(meta["stepId"], "build");
    assert_eq!(meta["stepName"], "Build it");
    let state = run_file(&server, &format!("{id}.2"), "state.json");
    assert_eq!(state["status"], "completed");
    assert_eq!(state["attempt"], 2);
    let started = stored_entries(&server, "t", &format!("{id}.2"))
        .into_iter()
        .find(|entry| entry["type"] == "worker_started")
        .expect("worker_started");
    assert_eq!(started["data"]["retryOf"], format!("t/{id}"));
    assert_eq!(started["data"]["command"][0], "true");

    let third = baa_log(&server, &["exec", "--retry-of", "t/@latest", "--", "true"]).await;
    assert!(third.status.success(), "{third:?}");
    assert_eq!(printed_run_id(&third), format!("{id}.3"));
    assert!(text(&third.stderr).contains(&format!("(attempt 3 of t/{id}.2)")));
    assert_eq!(
        run_file(&server, &format!("{id}.3"), "meta.json")["attempt"],
        3
    );

    // Attempt 2 of the first run has been made: no second attempt 2, and no
    // attempt 4 under a link that skips attempts 2 and 3.
    let again = baa_log(
        &server,
        &[
            "exec",
            "--retry-of",
            &format!("t/{id}"),
            "--",
            "echo",
            "ran",
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(125), "{again:?}");
    assert_eq!(text(&again.stdout), "", "the command did not run");
    let stderr = text(&again.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("attempt 2 of t/{id} exists already"))
            && stderr.contains(&format!("--retry-of t/{id}.2")),
        "{stderr}"
    );
    assert_eq!(run_ids(&server).await.len(), 3);

    // Attempt 4 prepared (as an exec that lost the server after preparing
    // would leave it) is taken again, not refused.
    let cwd = std::env::current_dir().unwrap().display().to_string();
    let prepared = baa_logging_client::NewRun::new("t", format!("{id}.4"))
        .step("build", "Build it")
        .attempt(4)
        .worker_kind("baa-log exec")
        .command("true")
        .paths(&cwd, &cwd);
    server
        .typed_client()
        .await
        .prepare_run(prepared)
        .await
        .unwrap();
    let fourth = baa_log(
        &server,
        &["exec", "--retry-of", &format!("t/{id}.3"), "--", "true"],
    )
    .await;
    assert!(fourth.status.success(), "{fourth:?}");
    assert_eq!(printed_run_id(&fourth), format!("{id}.4"));
    assert_eq!(
        run_file(&server, &format!("{id}.4"), "state.json")["status"],
        "completed"
    );
    assert_eq!(run_ids(&server).await.len(), 4);
    server.stop().await;
}

/// `exec --run ID --attempt 2` where run ID exists (as attempt 1) fails
/// before the run line and before the command, with one line suggesting
/// `--retry-of`, and creates no run; `--attempt 2` without `--run` takes a
/// fresh id as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attempt_on_an_existing_run_suggests_retry_of_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let first = baa_log(
        &server,
        &["exec", "--task", "t", "--run", "r", "--", "false"],
    )
    .await;
    assert_eq!(first.status.code(), Some(1), "{first:?}");

    let refused = baa_log(
        &server,
        &[
            "exec",
            "--task",
            "t",
            "--run",
            "r",
            "--attempt",
            "2",
            "--",
            "echo",
            "ran",
        ],
    )
    .await;
    assert_eq!(
        refused.status.code(),
        Some(125),
        "exec's own failure: {refused:?}"
    );
    assert_eq!(text(&refused.stdout), "", "the command did not run");
    let stderr = text(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.starts_with("baa-log: run "), "{stderr}");
    assert!(
        stderr.contains("cannot use run t/r: it exists already, as attempt 1")
            && stderr.contains("--retry-of t/r"),
        "{stderr}"
    );
    assert_eq!(run_ids(&server).await, ["r"]);
    let state = run_file(&server, "r", "state.json");
    assert_eq!(
        (&state["status"], &state["attempt"]),
        (&"failed".into(), &1.into())
    );

    let fresh = baa_log(
        &server,
        &["exec", "--task", "t", "--attempt", "2", "--", "true"],
    )
    .await;
    assert!(fresh.status.success(), "{fresh:?}");
    let id = printed_run_id(&fresh);
    assert_ne!(id, "r");
    assert_eq!(run_file(&server, &id, "meta.json")["attempt"], 2);
    server.stop().await;
}

/// `runs --task t` lists a step's attempts together, the latest first,
/// steps in the order of their newest run; across tasks and with `--json`
/// the runs keep the server's order, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_a_task_show_a_steps_attempts_together() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for args in [
        &[
            "exec", "--task", "t", "--run", "a", "--step", "lint", "--", "false",
        ][..],
        &[
            "exec", "--task", "t", "--run", "b", "--step", "test", "--", "true",
        ],
        &["exec", "--retry-of", "t/a", "--", "true"],
    ] {
        baa_log(&server, args).await;
        // Creation times a few milliseconds apart order the runs.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let columns = |output: Output| -> Vec<(String, String, String)> {
        text(&output.stdout)
            .lines()
            .skip(1)
            .map(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                (cells[1].into(), cells[2].into(), cells[4].into())
            })
            .collect()
    };
    let row = |run: &str, step: &str, attempt: &str| (run.into(), step.into(), attempt.into());
    assert_eq!(
        columns(baa_log(&server, &["runs", "--task", "t"]).await),
        [
            row("a.2", "lint", "2"),
            row("a", "lint", "1"),
            row("b", "test", "1")
        ]
    );
    assert_eq!(
        columns(baa_log(&server, &["runs"]).await),
        [
            row("a.2", "lint", "2"),
            row("b", "test", "1"),
            row("a", "lint", "1")
        ]
    );
    let json = baa_log(&server, &["runs", "--task", "t", "--json"]).await;
    let ids: Vec<String> = text(&json.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["metadata"]["runId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["a.2", "b", "a"]);
    server.stop().await;
}

/// `baa-log finish` ends a run whose worker is gone: its state says why,
/// a follower that waited ends with the outcome, and a finished run is
/// not finished again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_ends_a_run_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    crate::util::prepare(&mut client, "t", "r").await;
    crate::util::set_status(&mut client, "t", "r", pb::RunStatus::Running)
        .await
        .unwrap();
    let follower = Command::new(cli_binary())
        .args(["follow", "--exit-status", "t/r"])
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env_remove("BAA_LOG_TOKEN")
        .kill_on_drop(true)
        .output();
    let follower = tokio::spawn(follower);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let output = baa_log(
        &server,
        &[
            "finish",
            "t/r",
            "--status",
            "failed",
            "--error",
            "worker lost: its machine died",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "t/r failed\n");
    let run = client
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: "r".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let state = run.state.unwrap();
    assert_eq!(state.status(), pb::RunStatus::Failed);
    assert_eq!(
        state.summary.as_deref(),
        Some("worker lost: its machine died")
    );
    let followed = tokio::time::timeout(Duration::from_secs(20), follower)
        .await
        .expect("the follower ends with the run")
        .unwrap()
        .unwrap();
    assert_eq!(followed.status.code(), Some(3), "{followed:?}");

    let again = baa_log(&server, &["finish", "t/r", "--status", "completed"]).await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("failed"),
        "{again:?}"
    );
    let bad = baa_log(&server, &["finish", "t/r", "--status", "done"]).await;
    assert_eq!(bad.status.code(), Some(2));
}

/// `exec` exits as env and docker run do: 127 for a command not found,
/// 126 for one that cannot be run, 125 for its own failure before the
/// command runs (here, no server with --fail-closed), and the command's
/// own code otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_follow_env_and_docker_run() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = script.display().to_string();
    for (command, code) in [
        (&["/no/such/program"][..], 127),
        (&[script.as_str()][..], 126),
        (&["sh", "-c", "exit 7"][..], 7),
    ] {
        let mut args = vec!["exec", "--task", "t", "--"];
        args.extend_from_slice(command);
        let output = baa_log(&server, &args).await;
        assert_eq!(output.status.code(), Some(code), "{command:?}: {output:?}");
    }
    let marker = dir.path().join("ran");
    let unreachable = Command::new(cli_binary())
        .args(["exec", "--fail-closed", "--task", "t", "--", "touch"])
        .arg(&marker)
        .env("BAA_LOG_SERVER", "http://127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(125), "{unreachable:?}");
    assert!(text(&unreachable.stderr).contains("cannot reach baa-logd"));
    assert!(!marker.exists(), "the command did not run");
}
