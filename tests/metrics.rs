//! Prometheus metrics: scraped over HTTP after a known workload, from an
//! in-process server and from the `baa-logd` binary.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Command, Stdio},
    sync::Arc,
};

use baa_logd::{Metrics, Security, ServerConfig, security::TokenSet};
use baa_logging::pb;
use futures::StreamExt;
use tonic::Code;

use crate::util::{
    append, follow_request, follow_to_end, json_lines,
    metrics::{http_get, scrape, start_metrics, start_with_metrics},
    open, prepare, process, set_status, stderr, stdout,
};

/// The labels of a LoggingService method and a code.
fn rpc(method: &str, code: &str) -> String {
    format!(r#"{{service="baa.logging.v1.LoggingService",method="{method}",code="{code}"}}"#)
}

/// After a known workload, /metrics shows exactly its figures: entries and
/// bytes appended by channel, calls by method and code, open streams,
/// runs by status and disk writes.
#[tokio::test]
async fn metrics_show_the_figures_of_a_known_workload() {
    let dir = tempfile::tempdir().unwrap();
    let (server, metrics_addr) = start_with_metrics(dir.path(), ServerConfig::default()).await;
    let mut client = server.client().await;

    prepare(&mut client, "t", "done").await;
    prepare(&mut client, "t", "waiting").await;
    append(
        &mut client,
        vec![open(
            "t",
            "done",
            "w",
            vec![
                stdout(1, "one"),
                stderr(2, "two"),
                stdout(3, "three"),
                stderr(4, "four"),
                stdout(5, "five"),
            ],
        )],
    )
    .await
    .unwrap();
    let history = follow_to_end(&mut client, follow_request("t", "done", 1, true)).await;
    assert_eq!(history.entries.len(), 6);
    let missing = client
        .get_run(pb::GetRunRequest {
            task_id: "t".into(),
            run_id: "missing".into(),
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    // A live follower is an open stream until the run ends.
    let mut live = client
        .follow_run(follow_request("t", "done", 1, false))
        .await
        .unwrap()
        .into_inner();
    live.next().await.expect("a first batch").unwrap();
    let during = scrape(metrics_addr).await;
    assert_eq!(
        during.value(r#"baa_logd_open_streams{method="FollowRun"}"#),
        1.0
    );
    assert_eq!(during.value(r#"baa_logd_runs{status="prepared"}"#), 2.0);
    set_status(&mut client, "t", "done", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "t", "done", pb::RunStatus::Completed)
        .await
        .unwrap();
    while let Some(response) = live.next().await {
        response.unwrap();
    }

    let after = scrape(metrics_addr).await;
    let value = |series: &str| after.value(series);
    let run_dir = dir.path().join("t").join("done");
    let file_len = |run: &str, file: &str| {
        std::fs::metadata(dir.path().join("t").join(run).join(file))
            .unwrap()
            .len() as f64
    };
    // Entries and bytes: the two run_prepared entries, then the appended
    // ones; the bytes are what the channel files grew by.
    assert_eq!(
        value(r#"baa_logd_appended_entries_total{channel="worker"}"#),
        2.0
    );
    assert_eq!(
        value(r#"baa_logd_appended_entries_total{channel="stdout"}"#),
        3.0
    );
    assert_eq!(
        value(r#"baa_logd_appended_entries_total{channel="stderr"}"#),
        2.0
    );
    assert_eq!(
        value(r#"baa_logd_appended_bytes_total{channel="worker"}"#),
        file_len("done", "worker.log") + file_len("waiting", "worker.log")
    );
    assert_eq!(
        value(r#"baa_logd_appended_bytes_total{channel="stdout"}"#),
        file_len("done", "stdout.log")
    );
    assert_eq!(
        value(r#"baa_logd_appended_bytes_total{channel="stderr"}"#),
        file_len("done", "stderr.log")
    );
    assert_eq!(json_lines(&run_dir.join("stdout.log")).len(), 3);
    // Calls, by method and code; streams count when they end.
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("PrepareRun", "OK")
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("AppendLogs", "OK")
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("FollowRun", "OK")
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("GetRun", "NOT_FOUND")
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("UpdateRunState", "OK")
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "baa_logd_grpc_request_duration_seconds_count{}",
            rpc("AppendLogs", "OK")
        )),
        1.0
    );
    assert_eq!(value(r#"baa_logd_open_streams{method="FollowRun"}"#), 0.0);
    assert_eq!(value(r#"baa_logd_open_streams{method="AppendLogs"}"#), 0.0);
    // Runs by status, counted at the scrape.
    assert_eq!(value(r#"baa_logd_runs{status="completed"}"#), 1.0);
    assert_eq!(value(r#"baa_logd_runs{status="prepared"}"#), 1.0);
    assert_eq!(value(r#"baa_logd_runs{status="running"}"#), 0.0);
    // Disk writes: two prepares, one commit, two state changes; none failed.
    assert_eq!(
        value(r#"baa_logd_disk_write_duration_seconds_count{write="prepare"}"#),
        2.0
    );
    assert_eq!(
        value(r#"baa_logd_disk_write_duration_seconds_count{write="commit"}"#),
        1.0
    );
    assert_eq!(
        value(r#"baa_logd_disk_write_duration_seconds_count{write="state"}"#),
        2.0
    );
    assert!(
        !after.text.contains("baa_logd_disk_write_errors_total{"),
        "{}",
        after.text
    );
    assert_eq!(value("baa_logd_store_writable"), 1.0);
    // Each batch sent to a follower was behind by nothing or by entries
    // stored after it.
    assert!(value("baa_logd_follow_lag_entries_count") >= 2.0);
    // The process.
    assert!(value("process_open_fds") > 0.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(value("process_start_time_seconds") > 1.0e9);
    assert!(after.get("process_cpu_seconds_total").is_some());

    server.stop().await;
}

/// The endpoint speaks the text exposition format at /metrics and nothing
/// else.
#[tokio::test]
async fn the_metrics_endpoint_serves_text_at_metrics_only() {
    let metrics_addr = start_metrics(Metrics::new()).await;
    let (code, headers, body) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        body.contains("# TYPE baa_logd_appended_entries_total counter"),
        "{body}"
    );
    assert!(
        body.contains(r#"baa_logd_appended_entries_total{channel="stdout"} 0"#),
        "{body}"
    );
    assert!(
        body.contains("# TYPE baa_logd_disk_write_duration_seconds histogram"),
        "{body}"
    );
    let (code, _, _) = http_get(metrics_addr, "/other").await;
    assert_eq!(code, 404);
}

/// Calls refused by the token layer are counted, by their code; calls to
/// paths the server does not serve are counted as `other`.
#[tokio::test]
async fn refused_and_unknown_calls_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"reader\"\nscopes = [\"read\"]\nsecret = \"a-long-enough-reader-secret\"\n",
    )
    .unwrap();
    let security = Security {
        tokens: Some(Arc::new(TokenSet::load(&tokens).unwrap())),
        ..Security::default()
    };
    let config = ServerConfig {
        security,
        ..ServerConfig::default()
    };
    let data_dir = dir.path().join("runs");
    let (server, metrics_addr) = start_with_metrics(&data_dir, config).await;
    let mut client = server.client().await;
    let refused = client.get_server_info(pb::GetServerInfoRequest {}).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let unknown = grpc
        .unary::<pb::GetServerInfoRequest, pb::GetServerInfoResponse, _>(
            tonic::Request::new(pb::GetServerInfoRequest {}),
            tonic::codegen::http::uri::PathAndQuery::from_static("/made.up.Service/Anything"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert!(unknown.is_err());

    let after = scrape(metrics_addr).await;
    assert_eq!(
        after.value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("GetServerInfo", "UNAUTHENTICATED")
        )),
        1.0
    );
    let others: f64 = after
        .text
        .lines()
        .filter(|line| {
            line.starts_with(r#"baa_logd_grpc_requests_total{service="other",method="other""#)
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(others, 1.0, "{}", after.text);
    assert!(!after.text.contains("made.up"), "{}", after.text);

    server.stop().await;
}

/// `baa-logd --metrics-listen 127.0.0.1:0 --log-format json` serves
/// metrics on the address it prints, writes its log as JSON lines, and
/// logs the cause of a call that fails with INTERNAL, with its run.
#[tokio::test]
async fn the_binary_serves_metrics_and_logs_internal_failures_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(process::server_binary())
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baa-logd starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = |prefix: &str| -> SocketAddr {
        let line = lines.next().expect("a line").expect("readable");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .parse()
            .expect("an address")
    };
    let addr = address("listening on ");
    let metrics_addr = address("metrics on ");

    let mut client = baa_logging_client::connect(format!("http://{addr}"))
        .await
        .unwrap();
    prepare(&mut client, "t", "ok").await;
    // A run directory whose meta.json is not JSON: following it fails with
    // INTERNAL. (Altered log lines are DATA_LOSS, not INTERNAL: see
    // tests/integrity.rs.)
    let damaged = dir.path().join("t").join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("meta.json"), "{").unwrap();
    let status = client
        .follow_run(follow_request("t", "damaged", 1, true))
        .await
        .expect_err("the follow fails");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        !status.message().contains(dir.path().to_str().unwrap()),
        "{status:?}"
    );

    let metrics = scrape(metrics_addr).await;
    assert_eq!(
        metrics.value(&format!(
            "baa_logd_grpc_requests_total{}",
            rpc("FollowRun", "INTERNAL")
        )),
        1.0
    );
    assert_eq!(
        metrics.value(r#"baa_logd_appended_entries_total{channel="worker"}"#),
        1.0
    );

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}")))
        .collect();
    let failure = records
        .iter()
        .find(|record| record["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR record in {log}"));
    let cause = failure["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("meta.json"), "{failure}");
    assert_eq!(failure["span"]["run_id"], "damaged", "{failure}");
    assert!(
        records
            .iter()
            .any(|record| record["message"] == "metrics at /metrics"),
        "{log}"
    );
}
