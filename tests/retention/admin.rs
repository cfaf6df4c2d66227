//! Who may ask for a retention pass and how: `CollectRuns` needs a limit
//! and the `admin` scope, and `baa-log gc` as a user runs it.

use std::{process::Output, sync::Arc};

use baa_logd::{Security, ServerConfig, security::TokenSet};
use baa_logging::pb;
use baa_logging_client::ConnectOptions;
use tokio::process::Command;
use tonic::Code;

use super::{LONG_AGO, collect, exists, finished_run, listed, running_run};
use crate::util::{TestServer, assert_status, process::cli_binary};

/// Without a limit from the request or the configuration, and with a
/// negative age, `CollectRuns` refuses and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_runs_refuses_without_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    finished_run(&mut client, "t", "old", Some(LONG_AGO), 0).await;
    let request = pb::CollectRunsRequest::default();
    assert_status(
        client.collect_runs(request).await,
        Code::FailedPrecondition,
        "max_age",
    );
    let request = pb::CollectRunsRequest {
        max_age: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_status(
        client.collect_runs(request).await,
        Code::InvalidArgument,
        "max_age",
    );
    assert!(exists(&mut client, "t", "old").await);
    server.stop().await;
}

/// `CollectRuns` needs the `admin` scope: a `write` token is refused, an
/// `admin` one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_runs_needs_the_admin_scope() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"workers\"\nscopes = [\"write\", \"read\"]\nsecret = \"write-secret-0123456789\"\n\n\
         [[tokens]]\nname = \"ops\"\nscopes = [\"admin\"]\nsecret = \"admin-secret-0123456789\"\n",
    )
    .unwrap();
    let config = ServerConfig {
        security: Security {
            tls: None,
            tokens: Some(Arc::new(TokenSet::load(&tokens).unwrap())),
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(&dir.path().join("runs"), config).await;
    let connect = |token: &str| ConnectOptions::new(format!("http://{}", server.addr)).token(token);
    let mut writer = connect("write-secret-0123456789").connect().await.unwrap();
    let request = pb::CollectRunsRequest {
        dry_run: true,
        max_bytes: Some(0),
        ..Default::default()
    };
    assert_status(
        writer.collect_runs(request).await,
        Code::PermissionDenied,
        "admin",
    );
    let mut admin = connect("admin-secret-0123456789").connect().await.unwrap();
    assert!(
        collect(&mut admin, true, None, Some(0))
            .await
            .runs
            .is_empty()
    );
    server.stop().await;
}

/// Runs `baa-log` with `args` against `server`.
async fn baa_log(server: &TestServer, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .args(args)
        .env("BAA_LOG_SERVER", format!("http://{}", server.addr))
        .env_remove("BAA_LOG_TOKEN")
        .output()
        .await
        .expect("baa-log runs")
}

/// `baa-log gc --dry-run` prints the runs due, oldest first, and says that
/// nothing was deleted, which is true; `baa-log gc` then deletes them; and
/// without any limit it fails, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_dry_run_shows_what_would_go_and_gc_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    finished_run(
        &mut client,
        "nightly",
        "second",
        Some("2020-05-02T00:00:00Z"),
        2048,
    )
    .await;
    finished_run(
        &mut client,
        "nightly",
        "first",
        Some("2020-05-01T00:00:00Z"),
        10,
    )
    .await;
    finished_run(&mut client, "nightly", "today", None, 10).await;
    running_run(&mut client, "nightly", "running", 10).await;

    let output = baa_log(&server, &["gc", "--dry-run", "--max-age", "30d"]).await;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for header in ["TASK", "RUN", "STATUS", "FINISHED", "SIZE", "REASON"] {
        assert!(lines[0].contains(header), "{text}");
    }
    assert!(lines[1].starts_with("nightly  first "), "{text}");
    assert!(lines[1].contains("completed") && lines[1].contains("2020-05-01T00:00:00.000Z"));
    assert!(lines[2].starts_with("nightly  second"), "{text}");
    assert!(
        lines[2].contains("KiB") && lines[2].contains("max_age"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("dry run: 2 runs,") && lines[3].contains("nothing was deleted"),
        "{text}"
    );
    assert!(dir.path().join("nightly/first/meta.json").is_file());
    assert!(dir.path().join("nightly/second/meta.json").is_file());

    let output = baa_log(&server, &["gc", "--max-age", "30d"]).await;
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.lines().last().unwrap().starts_with("deleted 2 runs,"),
        "{text}"
    );
    assert!(!dir.path().join("nightly/first").exists());
    assert!(!dir.path().join("nightly/second").exists());
    assert_eq!(
        listed(&mut client).await,
        ["nightly/running", "nightly/today"]
    );

    let output = baa_log(&server, &["gc", "--dry-run", "--max-age", "30d"]).await;
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("dry run: no run is due; nothing was deleted"),
        "{text}"
    );

    let output = baa_log(&server, &["gc"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("FAILED_PRECONDITION") && stderr.contains("max_age"),
        "{stderr}"
    );
    server.stop().await;
}
