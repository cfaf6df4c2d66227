//! Connections as the listener lets them in: a client that never speaks
//! is closed after the handshake deadline, and past `max_connections`
//! new connections are closed at once while the open ones go on.

use std::time::{Duration, Instant};

use baa_logd::ServerConfig;
use baa_logging::{Limits, pb};
use tokio::io::AsyncReadExt;

use crate::util::TestServer;

/// Reads from a raw connection until the server closes it; how long that
/// took, or `None` when it stayed open for `patience`.
async fn closed_within(addr: std::net::SocketAddr, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(patience, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // the server's own settings frame
            Err(_) => return None,
        }
    }
}

/// A socket that never sends the HTTP/2 preface is closed once the
/// handshake deadline passes; clients that speak are served meanwhile.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig {
            limits: Limits {
                handshake_timeout: Duration::from_millis(300),
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let silent = tokio::spawn(closed_within(server.addr, Duration::from_secs(10)));
    let mut client = server.client().await;
    client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .expect("a client that speaks is served");
    let closed = silent.await.unwrap().expect("the silent socket was closed");
    assert!(
        closed >= Duration::from_millis(250),
        "closed too early: {closed:?}"
    );
    drop(client);
    server.stop().await;
}

/// With `max_connections` open, a new connection is closed at once; once
/// one of them goes, a new client is served again.
#[tokio::test]
async fn connections_past_max_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig {
            limits: Limits {
                max_connections: 2,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    for client in [&mut first, &mut second] {
        client
            .get_server_info(pb::GetServerInfoRequest {})
            .await
            .expect("within the cap");
    }
    let refused = closed_within(server.addr, Duration::from_secs(5)).await;
    assert!(refused.is_some(), "a third connection stayed open");
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = server.client().await;
        match again.get_server_info(pb::GetServerInfoRequest {}).await {
            Ok(_) => break,
            Err(status) if Instant::now() < deadline => {
                let _ = status;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("no place freed after a client left: {status:?}"),
        }
    }
    first
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .expect("the first connection was never disturbed");
    drop(first);
    server.stop().await;
}
