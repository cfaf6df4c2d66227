//! Server info, health, reflection and graceful shutdown.

use std::time::Duration;

use baa_logging::pb;
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::util::{TestServer, entry_seq, follow_request, open, prepare, stdout, writer_cursor};

/// GetServerInfo serves the contract's two constants and the limits.
#[tokio::test]
async fn server_info_serves_the_layout_constants() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let info = server
        .client()
        .await
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.runs_directory_name, "runs");
    assert_eq!(info.run_layout_version, "local-run-v1");
    assert_eq!(info.max_message_bytes, 4 * 1024 * 1024);
    server.stop().await;
}

/// The standard health service says SERVING for the server and for the
/// logging service; reflection lists the logging service.
#[tokio::test]
async fn health_and_reflection_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "baa.logging.v1.LoggingService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<_> = list
        .service
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    assert!(
        names.contains(&"baa.logging.v1.LoggingService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await;
}

/// On shutdown an open follow stream ends with UNAVAILABLE and the cursor
/// to resume from, an open append stream has what it sent stored and ends
/// with UNAVAILABLE, and the server stops instead of waiting for them.
#[tokio::test]
async fn shutdown_ends_open_streams_and_keeps_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;

    let mut follower = server.client().await;
    let mut follow = follower
        .follow_run(follow_request("t", "r", 1, false))
        .await
        .unwrap()
        .into_inner();
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!(first.entries.iter().map(entry_seq).collect::<Vec<_>>(), [1]);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(open(
        "t",
        "r",
        "w",
        vec![stdout(1, "kept 1"), stdout(2, "kept 2")],
    ))
    .await
    .unwrap();
    let mut writer = server.client().await;
    let append = tokio::spawn(async move {
        writer
            .append_logs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Wait until the items are stored, while the stream stays open.
    let mut probe = server.client().await;
    for _ in 0..500 {
        let cursor = writer_cursor(&mut probe, "t", "r", "w").await;
        if cursor.last_writer_seq == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let follow_live = follow.next().await.unwrap().unwrap();
    assert_eq!(follow_live.entries.len(), 2);

    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown does not hang");
    let end = follow.next().await.unwrap().unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    assert!(
        end.message().contains("resume with from_seq 4"),
        "{}",
        end.message()
    );
    let appended = append.await.unwrap().unwrap_err();
    assert_eq!(appended.code(), Code::Unavailable);
    drop(tx);
    let lines = crate::util::json_lines(&dir.path().join("t/r/stdout.log"));
    assert_eq!(lines.len(), 2);
}

/// A stream the server does not end itself (a health Watch) does not hold
/// shutdown open: after a short grace the server stops anyway.
#[tokio::test]
async fn an_open_health_watch_does_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the server stops despite the open watch");
}
