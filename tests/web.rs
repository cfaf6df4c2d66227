//! The run page's HTTP side, over real HTTP against a real server: the
//! JSON API beside gRPC on one port, pages of entries, the event stream
//! and its resumption, the raw download against `baa-log cat`, sessions
//! with tokens, and the page's own port. The page itself is tested in a
//! browser by `tests/browser/`.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use baa_logd::{PageOptions, Security, ServerConfig, security::TokenSet};
use baa_logging::pb;
use futures::StreamExt;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::util::{
    TestServer, append, event, open, prepare, process::cli_binary, set_status, stderr, stdout,
};

/// A plain HTTP client; no cookie store, so that each test says which
/// cookie it sends.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `path` of `server`, as JSON, with its status.
async fn get_json(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = http()
        .get(format!("http://{}{path}", server.addr))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Prepares `task/run` (its `run_prepared` event is entry 1) and appends
/// `lines` stdout lines, `line 1` ... as entries 2 ...
async fn run_with_lines(server: &TestServer, task: &str, run: &str, lines: u64) {
    let mut client = server.client().await;
    prepare(&mut client, task, run).await;
    let items = (1..=lines)
        .map(|n| stdout(n, &format!("line {n}\n")))
        .collect();
    append(&mut client, vec![open(task, run, "w", items)])
        .await
        .unwrap();
}

/// The sequence numbers of a JSON list of entries.
fn seqs(entries: &Value) -> Vec<u64> {
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["seq"].as_u64().expect("seq"))
        .collect()
}

/// One port answers gRPC and the page's API; every response carries the
/// security headers, and errors are JSON with the gRPC code's name.
#[tokio::test]
async fn the_page_api_shares_the_grpc_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    run_with_lines(&server, "build", "r1", 3).await;

    let (status, runs) = get_json(&server, "/api/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs["runs"][0]["taskId"], "build");
    assert_eq!(runs["runs"][0]["runId"], "r1");
    assert_eq!(runs["runs"][0]["state"]["status"], "prepared");
    assert_eq!(runs["runs"][0]["summary"]["lastSeq"], 4);

    let (status, run) = get_json(&server, "/api/runs/build/r1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["stepId"], runs["runs"][0]["stepId"]);

    let response = http()
        .get(format!("http://{}/api/runs/build/r1", server.addr))
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    let (status, missing) = get_json(&server, "/api/runs/build/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["code"], "NOT_FOUND");
    let (status, bad) = get_json(&server, "/api/runs/build/a%2F..%2Fb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["code"], "INVALID_ARGUMENT");
    let (status, bad) = get_json(&server, "/api/runs?status=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("sleeping"), "{bad}");

    let response = http()
        .get(format!("http://{}/no/such/page", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
    );

    // gRPC goes on working on the same port.
    let mut client = server.client().await;
    let listed = client
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    server.stop().await;
}

/// `/entries` gives pages from the start, a tail, and the entries before a
/// point, with `more` and `nextSeq` to go on.
#[tokio::test]
async fn entries_come_in_pages_from_either_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    run_with_lines(&server, "build", "r1", 50).await;
    let path = "/api/runs/build/r1/entries";

    let (_, tail) = get_json(&server, &format!("{path}?tail=10")).await;
    assert_eq!(seqs(&tail["entries"]), (42..=51).collect::<Vec<_>>());
    assert_eq!(tail["nextSeq"], 52);
    assert_eq!(tail["more"], false);
    assert_eq!(tail["state"]["status"], "prepared");
    assert_eq!(tail["entries"][0]["text"], "line 41\n");
    let (_, whole) = get_json(&server, &format!("{path}?from_seq=1")).await;
    assert_eq!(whole["entries"][0]["channel"], "worker");
    assert_eq!(whole["entries"][0]["type"], "run_prepared");
    assert_eq!(tail["entries"][0]["channel"], "stdout");

    let (_, first) = get_json(&server, &format!("{path}?from_seq=1&limit=20")).await;
    assert_eq!(seqs(&first["entries"]), (1..=20).collect::<Vec<_>>());
    assert_eq!(first["more"], true);
    assert_eq!(first["nextSeq"], 21);

    let (_, before) = get_json(&server, &format!("{path}?to_seq=30&tail=5")).await;
    assert_eq!(seqs(&before["entries"]), (26..=30).collect::<Vec<_>>());

    let (status, bad) = get_json(&server, &format!("{path}?tail=lots")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("tail"), "{bad}");
    server.stop().await;
}

/// One server-sent event: its name, id and data.
#[derive(Debug, Default)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

/// Reads events from a `text/event-stream` response until `until` says
/// stop, or the stream ends.
async fn read_events(response: reqwest::Response, until: impl Fn(&Sse) -> bool) -> Vec<Sse> {
    let mut body = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), body.next()).await {
        buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Sse::default();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.event = name.to_owned();
                } else if let Some(id) = line.strip_prefix("id: ") {
                    event.id = Some(id.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                }
            }
            if event.event.is_empty() {
                continue;
            }
            let stop = until(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
    }
    events
}

/// The entries' sequence numbers in `entries` events.
fn event_seqs(events: &[Sse]) -> Vec<u64> {
    events
        .iter()
        .filter(|event| event.event == "entries")
        .flat_map(|event| {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            seqs(&data["entries"])
        })
        .collect()
}

/// A browser that reconnects with `Last-Event-ID` goes on at the next
/// entry, with no gap and no repeat; the stream sends the state first and
/// says `end` once the run is finished and everything was sent.
#[tokio::test]
async fn the_event_stream_resumes_after_its_last_event_id_and_ends_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    run_with_lines(&server, "build", "r1", 5).await;
    let url = format!("http://{}/api/runs/build/r1/follow", server.addr);

    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let first = read_events(response, |event| event.event == "entries").await;
    assert_eq!(first[0].event, "state", "the state comes first");
    assert_eq!(event_seqs(&first), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(first.last().unwrap().id.as_deref(), Some("6"));

    // More entries while the browser is away, then the run ends.
    let mut client = server.client().await;
    append(
        &mut client,
        vec![open(
            "build",
            "r1",
            "w",
            vec![stdout(6, "six\n"), stderr(7, "seven\n")],
        )],
    )
    .await
    .unwrap();
    set_status(&mut client, "build", "r1", pb::RunStatus::Running)
        .await
        .unwrap();
    set_status(&mut client, "build", "r1", pb::RunStatus::Completed)
        .await
        .unwrap();

    let resumed = http()
        .get(&url)
        .header("last-event-id", "6")
        .send()
        .await
        .unwrap();
    let events = read_events(resumed, |event| event.event == "end").await;
    let seqs = event_seqs(&events);
    assert_eq!(seqs.first(), Some(&7), "{events:?}");
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    let end = events.last().unwrap();
    assert_eq!(end.event, "end", "{events:?}");
    let end: Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end["nextSeq"], seqs.last().unwrap() + 1);

    // from_seq does the same for a page that reconnects by itself.
    let from = http()
        .get(format!("{url}?from_seq=8"))
        .send()
        .await
        .unwrap();
    let events = read_events(from, |event| event.event == "end").await;
    assert_eq!(event_seqs(&events).first(), Some(&8));

    let bad = http()
        .get(&url)
        .header("last-event-id", "five")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

/// The raw download is byte for byte what `baa-log cat` prints, for the
/// default channels and for the worker channel, and is named for saving.
#[tokio::test]
async fn the_raw_download_is_what_cat_prints() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "build", "r1").await;
    append(
        &mut client,
        vec![open(
            "build",
            "r1",
            "w",
            vec![
                event(
                    1,
                    pb::WorkerLifecycleEventType::WorkerStarted,
                    "started",
                    None,
                ),
                stdout(2, "\u{1b}[31mred\u{1b}[0m and <b>bold</b>\npartial "),
                stderr(3, "an error\n"),
                stdout(4, "line ends\r\nprogress 50%\rprogress 100%\n"),
                stdout(5, "no newline at the end"),
            ],
        )],
    )
    .await
    .unwrap();

    let address = format!("http://{}", server.addr);
    let cat = move |channel: Option<&str>| {
        let mut command = Command::new(cli_binary());
        command.args(["--server", &address, "cat", "build/r1"]);
        if let Some(channel) = channel {
            command.args(["--channel", channel]);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        output.stdout
    };
    let raw = |query: &'static str| {
        let url = format!("http://{}/runs/build/r1/raw{query}", server.addr);
        async move { http().get(url).send().await.unwrap() }
    };

    let response = raw("").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let disposition = response.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"build-r1.log\""),
        "{disposition}"
    );
    let body = response.bytes().await.unwrap();
    let expected = tokio::task::spawn_blocking({
        let cat = cat.clone();
        move || cat(None)
    })
    .await
    .unwrap();
    assert_eq!(body.as_ref(), expected.as_slice());
    assert!(String::from_utf8_lossy(&body).contains("<b>bold</b>"));

    let worker = raw("?channel=worker").await.bytes().await.unwrap();
    let expected = tokio::task::spawn_blocking(move || cat(Some("worker")))
        .await
        .unwrap();
    assert_eq!(worker.as_ref(), expected.as_slice());
    assert!(String::from_utf8_lossy(&worker).contains("started"));

    let from = raw("?from_seq=5").await.text().await.unwrap();
    assert_eq!(
        from,
        "line ends\r\nprogress 50%\rprogress 100%\nno newline at the end"
    );
    server.stop().await;
}

/// A token file with a reader, a reader of `nightly` only, and a writer.
fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        r#"
        [[tokens]]
        name = "reader"
        scopes = ["read"]
        secret = "reader-token-0123456789"

        [[tokens]]
        name = "nightly-reader"
        scopes = ["read"]
        secret = "nightly-token-0123456789"
        tasks = ["nightly"]

        [[tokens]]
        name = "writer"
        scopes = ["write", "read"]
        secret = "writer-token-0123456789"

        [[tokens]]
        name = "pusher"
        scopes = ["write"]
        secret = "pusher-token-0123456789"
        "#,
    )
    .unwrap();
    path
}

/// POSTs a sign-in with `token`; returns the response.
async fn sign_in(server: &TestServer, token: &str) -> reqwest::Response {
    http()
        .post(format!("http://{}/api/session", server.addr))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
}

/// GET `path` with `cookie`.
async fn get_with_cookie(server: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    http()
        .get(format!("http://{}{path}", server.addr))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

/// With tokens, nothing but the session routes answers without a session;
/// a read token signs in for an HttpOnly, SameSite=Strict cookie that
/// works for the API and plain links, within the token's task limit; a
/// token without `read`, a foreign origin or a forged cookie get nothing.
#[tokio::test]
async fn with_tokens_the_page_reads_only_through_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Arc::new(TokenSet::load(&token_file(dir.path())).unwrap());
    let data = dir.path().join("data");
    let server = TestServer::start_with(
        &data,
        ServerConfig {
            security: Security {
                tokens: Some(tokens),
                tls: None,
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let writer = baa_logging_client::ConnectOptions::new(format!("http://{}", server.addr))
        .token("writer-token-0123456789")
        .connect()
        .await
        .unwrap();
    let mut writer = writer;
    for task in ["nightly", "release"] {
        prepare(&mut writer, task, "r1").await;
        append(
            &mut writer,
            vec![open(
                task,
                "r1",
                "w",
                vec![stdout(1, &format!("{task} out\n"))],
            )],
        )
        .await
        .unwrap();
    }

    let (status, body) = get_json(&server, "/api/runs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "UNAUTHENTICATED");
    let raw = http()
        .get(format!("http://{}/runs/nightly/r1/raw", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNAUTHORIZED);
    let (status, session) = get_json(&server, "/api/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["required"], true);
    assert_eq!(session["signedIn"], false);

    assert_eq!(sign_in(&server, "not-a-token-at-all").await.status(), 401);
    assert_eq!(
        sign_in(&server, "pusher-token-0123456789").await.status(),
        403
    );
    let foreign = http()
        .post(format!("http://{}/api/session", server.addr))
        .header(header::ORIGIN, "https://elsewhere.example")
        .json(&json!({"token": "reader-token-0123456789"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(!foreign.headers().contains_key(header::SET_COOKIE));

    // Over HTTP/2 the host is the URI's authority: a same-origin sign-in works.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let over_h2 = h2
        .post(format!("http://{}/api/session", server.addr))
        .header(header::ORIGIN, format!("http://{}", server.addr))
        .json(&json!({"token": "reader-token-0123456789"}))
        .send()
        .await
        .unwrap();
    assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(over_h2.status(), StatusCode::NO_CONTENT);

    let signed = sign_in(&server, "reader-token-0123456789").await;
    assert_eq!(signed.status(), StatusCode::NO_CONTENT);
    let set_cookie = signed.headers()[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(set_cookie.contains(part), "{set_cookie} lacks {part}");
    }
    assert!(
        !set_cookie.contains("reader-token"),
        "the token is not in the cookie"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let listed: Value = get_with_cookie(&server, "/api/runs", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 2);
    let raw = get_with_cookie(&server, "/runs/release/r1/raw", &cookie).await;
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.text().await.unwrap(), "release out\n");
    let session: Value = get_with_cookie(&server, "/api/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(session["signedIn"], true);
    assert_eq!(session["token"], "reader");

    // A forged or altered cookie is refused.
    let (name, value) = cookie.split_once('=').unwrap();
    let (payload, mac) = value.split_once('.').unwrap();
    let altered = format!("{name}={payload}x.{mac}");
    let refused = get_with_cookie(&server, "/api/runs", &altered).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // A token limited to `nightly` sees only its task, and is refused others.
    let limited = sign_in(&server, "nightly-token-0123456789").await;
    let limited = limited.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let listed: Value = get_with_cookie(&server, "/api/runs", &limited)
        .await
        .json()
        .await
        .unwrap();
    let tasks: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, vec!["nightly"]);
    let other = get_with_cookie(&server, "/api/runs/release/r1/entries", &limited).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let other = get_with_cookie(&server, "/runs/release/r1/raw", &limited).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let own = get_with_cookie(&server, "/api/runs/nightly/r1/entries", &limited).await;
    assert_eq!(own.status(), StatusCode::OK);

    // Scripts may send the bearer token instead.
    let bearer = http()
        .get(format!("http://{}/api/runs", server.addr))
        .bearer_auth("reader-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);

    let signed_out = http()
        .delete(format!("http://{}/api/session", server.addr))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let removal = signed_out.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(removal.contains("Max-Age=0"), "{removal}");
    server.stop().await;
}

/// The page may have a port of its own, leaving the gRPC port to gRPC, or
/// be turned off.
#[tokio::test]
async fn the_page_has_a_port_of_its_own_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        baa_logging_store::LocalStore::open(baa_logging_store::LocalStoreOptions::new(dir.path()))
            .unwrap(),
    );
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, page_addr) = (grpc.local_addr().unwrap(), page.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(baa_logd::run_with_page_listener(
        grpc,
        Some(page),
        store,
        ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let on = |addr: std::net::SocketAddr| async move {
        http()
            .get(format!("http://{addr}/api/runs"))
            .send()
            .await
            .map(|response| response.status())
    };
    assert_eq!(on(page_addr).await.unwrap(), StatusCode::OK);
    // The gRPC port is left to gRPC: it does not even speak HTTP/1.1.
    assert!(on(grpc_addr).await.is_err());
    let _ = stop.send(());
    serving.await.unwrap().unwrap();

    let off = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        off.path(),
        ServerConfig {
            page: None,
            ..ServerConfig::default()
        },
    )
    .await;
    // Without the page, the port speaks HTTP/2 only.
    let response = http()
        .get(format!("http://{}/api/runs", server.addr))
        .send()
        .await;
    assert!(response.is_err(), "{response:?}");
    server.stop().await;
}

/// Once the port speaks HTTP/1.1 for the page, a browser still cannot call
/// a gRPC method: what is not the page must be gRPC over HTTP/2. A plain
/// `POST` (which any web site may send cross-site) gets 415 and creates
/// nothing, over HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn browsers_cannot_call_the_grpc_methods() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let prepare = pb::PrepareRunRequest::default();
    let body = prost::Message::encode_to_vec(&prepare);
    let method = format!(
        "http://{}/baa.logging.v1.LoggingService/CollectRuns",
        server.addr
    );
    for client in [
        http(),
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
    ] {
        let response = client
            .post(&method)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(response.headers().get("grpc-status").is_none());
    }
    // Over HTTP/1.1, even the gRPC content type is refused.
    let response = http()
        .post(&method)
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = http()
        .get(format!("http://{}/robots.txt", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // gRPC itself is untouched.
    let mut client = server.client().await;
    client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .unwrap();
    server.stop().await;
}

/// An HTTP/1.1 client that never finishes its request head is closed after
/// the handshake deadline; without the page, HTTP/1.1 is closed at once.
#[tokio::test]
async fn a_silent_http1_client_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let limits = baa_logging::Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig {
            limits: limits.clone(),
            ..ServerConfig::default()
        },
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buffer))
        .await
        .expect("closed well within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.stop().await;

    let off = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        off.path(),
        ServerConfig {
            page: None,
            limits,
            ..ServerConfig::default()
        },
    )
    .await;
    let response = http()
        .get(format!("http://{}/api/runs", server.addr))
        .send()
        .await;
    assert!(response.is_err(), "HTTP/1.1 without the page: {response:?}");
    server.stop().await;
}

/// Without tokens the page answers only at an IP address, `localhost`, or
/// a name it was told: a site that rebinds its own name to 127.0.0.1
/// reads nothing. Last-Event-ID past the last sequence number is refused.
#[tokio::test]
async fn without_tokens_the_page_answers_only_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig {
            page: Some(PageOptions {
                allowed_hosts: vec!["logs.internal".into()],
                ..PageOptions::default()
            }),
            ..ServerConfig::default()
        },
    )
    .await;
    run_with_lines(&server, "build", "r1", 1).await;
    let with_host = |host: &'static str| {
        let url = format!("http://{}/api/runs", server.addr);
        async move {
            http()
                .get(url)
                .header(header::HOST, host)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        with_host("attacker.example:50051").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(with_host("localhost:50051").await, StatusCode::OK);
    assert_eq!(with_host("127.0.0.1").await, StatusCode::OK);
    assert_eq!(with_host("[::1]:50051").await, StatusCode::OK);
    assert_eq!(with_host("LOGS.internal:8080").await, StatusCode::OK);

    let overflow = http()
        .get(format!("http://{}/api/runs/build/r1/follow", server.addr))
        .header("last-event-id", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(overflow.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

/// A tail of large entries keeps its last entries (fewer of them), never a
/// cut from its end; `continues` tells a page whose first chunk goes on
/// with a line begun before it.
#[tokio::test]
async fn a_tail_of_large_entries_keeps_its_end_and_pages_say_where_lines_continue() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "build", "r1").await;
    let big = "x".repeat(100 * 1024);
    let mut items: Vec<_> = (1..=60)
        .map(|n| stdout(n, &format!("{big}{n}\n")))
        .collect();
    items.push(stdout(61, "begun "));
    items.push(stderr(62, "an error\n"));
    items.push(stdout(63, "and ended\n"));
    for batch in items.chunks(2) {
        append(&mut client, vec![open("build", "r1", "w", batch.to_vec())])
            .await
            .unwrap();
    }
    let (_, run) = get_json(&server, "/api/runs/build/r1").await;
    let last = run["summary"]["lastSeq"].as_u64().unwrap();
    let path = "/api/runs/build/r1/entries";
    let (_, tail) = get_json(&server, &format!("{path}?tail=50")).await;
    let seqs = self::seqs(&tail["entries"]);
    assert!(
        seqs.len() < 50,
        "4 MiB holds fewer than 50 entries of 100 KiB"
    );
    assert_eq!(seqs.last(), Some(&last), "the tail ends with the run");
    assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1));
    assert_eq!(tail["more"], false);
    let (_, before) = get_json(&server, &format!("{path}?to_seq={}&tail=50", seqs[0] - 1)).await;
    assert_eq!(
        self::seqs(&before["entries"]).last(),
        Some(&(seqs[0] - 1)),
        "the page before ends where the tail begins"
    );

    // Entry `last - 1` is stderr; stdout's line begun in `last - 2` goes on in `last`.
    let (_, page) = get_json(&server, &format!("{path}?from_seq={}", last - 1)).await;
    assert_eq!(page["continues"]["stdout"], true, "{page}");
    assert_eq!(page["continues"]["stderr"], false);
    let (_, page) = get_json(&server, &format!("{path}?from_seq={}", last - 2)).await;
    assert_eq!(page["continues"]["stdout"], false);
    server.stop().await;
}

/// Without tokens the page's own port is refused beyond loopback, as the
/// gRPC address is: client certificates do not reach its plain HTTP.
#[test]
fn the_page_port_beyond_loopback_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(crate::util::process::server_binary())
        .args(["--listen", "127.0.0.1:0", "--web-listen", "0.0.0.0:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve the run page on 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
}

/// The page lists a run's objects with their digests and serves each as
/// a download of its exact bytes; a name that leaves the run is refused.
#[tokio::test]
async fn the_page_lists_and_downloads_objects() {
    use baa_logging_client::{ObjectName, RunKey, TransferOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let typed = server.typed_client().await;
    let key = RunKey::new("t", "r");
    let local = dir.path().join("report é.bin");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &bytes).unwrap();
    let options = TransferOptions::default();
    typed
        .upload_file(
            &key,
            &ObjectName::artifact("reports/report é.bin"),
            &local,
            &options,
        )
        .await
        .unwrap();
    let slot = typed.reserve_checkpoint(&key).await.unwrap();
    typed
        .upload_file(
            &key,
            &ObjectName::checkpoint(slot, "state.bin"),
            &local,
            &options,
        )
        .await
        .unwrap();

    let (status, listing) = get_json(&server, "/api/runs/t/r/objects").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let objects = listing["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2, "{listing}");
    assert_eq!(objects[0]["name"], "reports/report é.bin");
    assert_eq!(objects[0]["size"], 100_000);
    assert_eq!(objects[1]["kind"], "checkpoint");
    assert_eq!(objects[1]["checkpointSeq"], slot);

    for path in [
        "/runs/t/r/objects/artifact/reports/report%20%C3%A9.bin".to_owned(),
        format!("/runs/t/r/objects/checkpoint/{slot}/state.bin"),
    ] {
        let response = http()
            .get(format!("http://{}{path}", server.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(
            response.headers()[header::CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .starts_with("attachment;")
        );
        assert!(response.bytes().await.unwrap() == bytes, "{path}");
    }
    let escape = http()
        .get(format!(
            "http://{}/runs/t/r/objects/artifact/..%2F..%2Fmeta.json",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(escape.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}
