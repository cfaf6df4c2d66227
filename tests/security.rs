//! Who may do what: bearer tokens with scopes, TLS with a certificate that
//! reloads, mutual TLS, and the refusal to listen openly beyond loopback.
//! Each against a real server with real certificates made for the test.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use baa_logd::{Security, ServerConfig, security::Tls, security::TokenSet};
use baa_logging::pb;
use baa_logging_client::{Client, ConnectOptions, FollowOptions, NewRun, RunKey, WriterOptions};
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::Code;

use crate::util::TestServer;

/// A CA and the certificates it signed, as PEM files in a directory.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    /// Makes a CA named `name`, a server certificate for 127.0.0.1 and
    /// localhost, and a client certificate, under `dir/name`.
    fn new(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, file: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            let cert_path = dir.join(format!("{file}.pem"));
            let key_path = dir.join(format!("{file}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let (server_cert, server_key) =
            leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
        let (client_cert, client_key) = leaf(vec!["worker-1".into()], "client");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Self {
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

/// A token file with a reader, a writer and an admin.
fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        r#"
        [[tokens]]
        name = "reader"
        scopes = ["read"]
        secret = "reader-token-0123456789"

        [[tokens]]
        name = "writer"
        scopes = ["write"]
        secret = "writer-token-0123456789"

        [[tokens]]
        name = "operator"
        scopes = ["admin"]
        secret = "admin-token-0123456789"
        "#,
    )
    .unwrap();
    path
}

/// A server with `security`, over `dir`.
async fn server_with(dir: &Path, security: Security) -> TestServer {
    TestServer::start_with(
        dir,
        ServerConfig {
            security,
            ..ServerConfig::default()
        },
    )
    .await
}

/// A client of `server` with `options` applied to its address.
async fn client(
    server: &TestServer,
    scheme: &str,
    options: impl FnOnce(ConnectOptions) -> ConnectOptions,
) -> Result<Client, baa_logging_client::ClientError> {
    let options = options(ConnectOptions::new(format!("{scheme}://{}", server.addr)));
    Ok(Client::from_stub(options.connect().await?))
}

/// Without a token calls are `UNAUTHENTICATED`; a token without the scope
/// a call needs is `PERMISSION_DENIED`; with the right scope (or admin)
/// they go through; health needs no token.
#[tokio::test]
async fn tokens_and_scopes_decide_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Arc::new(TokenSet::load(&token_file(dir.path())).unwrap());
    let data = dir.path().join("data");
    let server = server_with(
        &data,
        Security {
            tokens: Some(tokens),
            ..Security::default()
        },
    )
    .await;

    let anonymous = client(&server, "http", |o| o).await.unwrap();
    let err = anonymous
        .prepare_run(NewRun::new("t", "r"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("`write` scope"), "{err}");
    let wrong = client(&server, "http", |o| o.token("not-a-known-token"))
        .await
        .unwrap();
    let err = wrong.server_info().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
    assert!(
        !err.to_string().contains("not-a-known-token"),
        "the token is never echoed"
    );

    let reader = client(&server, "http", |o| o.token("reader-token-0123456789"))
        .await
        .unwrap();
    let writer = client(&server, "http", |o| o.token("writer-token-0123456789"))
        .await
        .unwrap();
    let admin = client(&server, "http", |o| o.token("admin-token-0123456789"))
        .await
        .unwrap();
    let err = reader.prepare_run(NewRun::new("t", "r")).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(
        err.to_string()
            .contains("token `reader` lacks the `write` scope"),
        "{err}"
    );

    let handle = writer
        .prepare_writer(NewRun::new("t", "r"), WriterOptions::default())
        .await
        .unwrap();
    handle.stdout("hello\n").await.unwrap();
    handle
        .finish(pb::RunStatus::Completed, Some(0), None)
        .await
        .unwrap();
    let err = writer.get_run(&RunKey::new("t", "r")).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");

    let events: Vec<_> = reader
        .follow(RunKey::new("t", "r"), FollowOptions::default())
        .collect()
        .await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    assert_eq!(
        events.len(),
        3,
        "state, run_prepared and the line: {events:?}"
    );
    admin.get_run(&RunKey::new("t", "r")).await.unwrap();
    admin.prepare_run(NewRun::new("t", "r2")).await.unwrap();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    server.stop().await;
}

/// With TLS, a client that trusts the CA works; one that trusts only the
/// system's roots, or speaks plain HTTP/2, does not get through; after
/// the certificate files are replaced and reloaded, new connections get
/// the new certificate.
#[tokio::test]
async fn tls_serves_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new(dir.path(), "first");
    let live_cert = dir.path().join("live.pem");
    let live_key = dir.path().join("live.key");
    std::fs::copy(&first.server_cert, &live_cert).unwrap();
    std::fs::copy(&first.server_key, &live_key).unwrap();
    let tls = Tls::load(&live_cert, &live_key, None).unwrap();
    let server = server_with(
        &dir.path().join("data"),
        Security {
            tls: Some(tls.clone()),
            ..Security::default()
        },
    )
    .await;

    let trusted = client(&server, "https", |o| o.ca_file(&first.ca))
        .await
        .unwrap();
    trusted.prepare_run(NewRun::new("t", "r")).await.unwrap();
    let plain = client(&server, "http", |o| o).await;
    let refused = match plain {
        Err(_) => true,
        Ok(plain) => plain.server_info().await.is_err(),
    };
    assert!(refused, "plain HTTP/2 is not served");
    let system_roots = client(&server, "https", |o| o).await;
    let refused = match system_roots {
        Err(_) => true,
        Ok(client) => client.server_info().await.is_err(),
    };
    assert!(refused, "the test CA is not a system root");

    let second = Pki::new(dir.path(), "second");
    std::fs::copy(&second.server_cert, &live_cert).unwrap();
    std::fs::copy(&second.server_key, &live_key).unwrap();
    tls.reload();
    let renewed = client(&server, "https", |o| o.ca_file(&second.ca))
        .await
        .unwrap();
    renewed.get_run(&RunKey::new("t", "r")).await.unwrap();
    let stale = client(&server, "https", |o| o.ca_file(&first.ca)).await;
    let refused = match stale {
        Err(_) => true,
        Ok(client) => client.server_info().await.is_err(),
    };
    assert!(refused, "the old CA no longer verifies the new certificate");
    server.stop().await;
}

/// With a client CA, only clients that present a certificate it signed get
/// through.
#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "pki");
    let other = Pki::new(dir.path(), "other");
    let tls = Tls::load(&pki.server_cert, &pki.server_key, Some(&pki.ca)).unwrap();
    let server = server_with(
        &dir.path().join("data"),
        Security {
            tls: Some(tls),
            ..Security::default()
        },
    )
    .await;
    let with_cert = client(&server, "https", |o| {
        o.ca_file(&pki.ca)
            .client_identity(&pki.client_cert, &pki.client_key)
    })
    .await
    .unwrap();
    with_cert.server_info().await.unwrap();
    for (name, result) in [
        (
            "no client certificate",
            client(&server, "https", |o| o.ca_file(&pki.ca)).await,
        ),
        (
            "a certificate of another CA",
            client(&server, "https", |o| {
                o.ca_file(&pki.ca)
                    .client_identity(&other.client_cert, &other.client_key)
            })
            .await,
        ),
    ] {
        let refused = match result {
            Err(_) => true,
            Ok(client) => client.server_info().await.is_err(),
        };
        assert!(refused, "{name} must be refused");
    }
    server.stop().await;
}

/// `baa-logd` without access control refuses a non-loopback listen
/// address and says why, also with TLS alone (it hides the traffic but
/// lets anyone in); `--insecure` lets it start; `--print-config` shows
/// file, environment and flags in that order of precedence.
#[test]
fn open_listening_beyond_loopback_needs_insecure_and_config_layers() {
    let binary = crate::util::process::server_binary();
    let dir = tempfile::tempdir().unwrap();
    // Starts the server on every interface with `args` and expects a
    // refusal: its stderr.
    let refused = |args: &[&std::ffi::OsStr], data_dir: &std::path::Path| {
        let output = std::process::Command::new(binary)
            .args(["--listen", "0.0.0.0:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("BAA_LOGD_INSECURE")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused(&[], dir.path());
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure"), "{stderr}");
    let pki = Pki::new(dir.path(), "open");
    let stderr = refused(
        &[
            "--tls-cert".as_ref(),
            pki.server_cert.as_os_str(),
            "--tls-key".as_ref(),
            pki.server_key.as_os_str(),
        ],
        &dir.path().join("tls-only"),
    );
    assert!(
        stderr.contains("without tokens or client certificates"),
        "{stderr}"
    );

    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:7001\"\ndata_dir = \"/srv/from-file\"\n[limits]\nmax_entry_bytes = 1000\nmax_data_bytes = 2000\n",
    )
    .unwrap();
    let printed = std::process::Command::new(binary)
        .args(["--print-config", "--config"])
        .arg(&config)
        .args(["--max-data-bytes", "3000"])
        .env("BAA_LOGD_DATA_DIR", "/srv/from-env")
        .env("BAA_LOGD_MAX_DATA_BYTES", "2500")
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&printed.stdout)).unwrap();
    assert_eq!(
        printed["listen"].as_str(),
        Some("127.0.0.1:7001"),
        "from the file"
    );
    assert_eq!(
        printed["data_dir"].as_str(),
        Some("/srv/from-env"),
        "env beats the file"
    );
    assert_eq!(
        printed["limits"]["max_entry_bytes"].as_integer(),
        Some(1000)
    );
    assert_eq!(
        printed["limits"]["max_data_bytes"].as_integer(),
        Some(3000),
        "flags beat env"
    );
    assert_eq!(
        printed["limits"]["max_message_bytes"].as_integer(),
        Some(4 * 1024 * 1024)
    );

    let bad = std::process::Command::new(binary)
        .args(["--print-config", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[limits]\nmax_entry_byte = 5\n").unwrap();
    let bad = std::process::Command::new(binary)
        .args(["--print-config", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max_entry_byte"));

    let mut insecure = crate::util::process::ServerProcess::start_with_args(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--insecure"],
    );
    assert_ne!(insecure.addr.port(), 0);
    insecure.stop_now();
}

/// `baa-log health`, the container images' health check, gets `SERVING`
/// from a server that requires tokens without giving one, and goes through
/// TLS with `--ca-file` like every subcommand; a server whose certificate
/// it cannot verify is a one-line failure with exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baa_log_health_needs_no_token_and_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "pki");
    let tokens = Arc::new(TokenSet::load(&token_file(dir.path())).unwrap());
    let tls = Tls::load(&pki.server_cert, &pki.server_key, None).unwrap();
    let server = server_with(
        &dir.path().join("data"),
        Security {
            tls: Some(tls),
            tokens: Some(tokens),
        },
    )
    .await;
    let health = |ca_file: Option<&Path>| {
        let mut command = tokio::process::Command::new(crate::util::process::cli_binary());
        command
            .args(["health", "--server", &format!("https://{}", server.addr)])
            .env_remove("BAA_LOG_TOKEN")
            .env_remove("BAA_LOG_CA_FILE")
            .env_remove("BAA_LOG_CLIENT_CERT")
            .env_remove("BAA_LOG_CLIENT_KEY");
        if let Some(ca_file) = ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        command.output()
    };

    let serving = health(Some(&pki.ca)).await.unwrap();
    assert_eq!(serving.status.code(), Some(0), "{serving:?}");
    assert_eq!(String::from_utf8_lossy(&serving.stdout), "SERVING\n");

    let untrusted = health(None).await.unwrap();
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("baa-log: "), "{stderr}");
    server.stop().await;
}

/// A token limited to tasks (`tasks = ["nightly", "release-*"]`) works on
/// those tasks only: every call on another task, a listing of all tasks
/// and a retention pass (which spans every task) are PERMISSION_DENIED,
/// naming the token and its tasks.
#[tokio::test]
async fn tokens_limited_to_tasks_touch_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limited.toml");
    std::fs::write(
        &file,
        r#"
        [[tokens]]
        name = "root"
        scopes = ["admin"]
        secret = "root-secret-0123456"
        [[tokens]]
        name = "ci"
        scopes = ["write", "read"]
        secret = "ci-secret-01234567"
        tasks = ["nightly", "release-*"]
        [[tokens]]
        name = "ops"
        scopes = ["admin"]
        secret = "ops-secret-01234567"
        tasks = ["nightly"]
        "#,
    )
    .unwrap();
    let tokens = Arc::new(TokenSet::load(&file).unwrap());
    let server = server_with(
        &dir.path().join("data"),
        Security {
            tokens: Some(tokens),
            ..Security::default()
        },
    )
    .await;
    let root = client(&server, "http", |o| o.token("root-secret-0123456"))
        .await
        .unwrap();
    root.prepare_run(NewRun::new("other", "r")).await.unwrap();
    let ci = client(&server, "http", |o| o.token("ci-secret-01234567"))
        .await
        .unwrap();
    ci.prepare_run(NewRun::new("nightly", "r")).await.unwrap();
    ci.prepare_run(NewRun::new("release-2.1", "r"))
        .await
        .unwrap();
    let writer = ci
        .writer(RunKey::new("release-2.1", "r"), WriterOptions::default())
        .await
        .unwrap();
    writer.stdout("allowed\n").await.unwrap();
    writer.flush().await.unwrap();
    ci.get_run(&RunKey::new("nightly", "r")).await.unwrap();

    let denied = |result: Result<(), baa_logging_client::ClientError>, what: &str| {
        let err = result.expect_err(what);
        assert_eq!(err.code(), Some(Code::PermissionDenied), "{what}: {err}");
        err.to_string()
    };
    let message = denied(
        ci.prepare_run(NewRun::new("other", "r2")).await.map(drop),
        "prepare on another task",
    );
    assert!(
        message
            .contains("token `ci` may not touch task `other`: it is limited to nightly, release-*"),
        "{message}"
    );
    denied(
        ci.get_run(&RunKey::new("other", "r")).await.map(drop),
        "get",
    );
    let mut stub = ci.stub();
    let other = || pb::AppendOpen {
        worker_lease_ms: 0,
        task_id: "other".into(),
        run_id: "r".into(),
        writer_id: "w".into(),
    };
    let append = stub
        .append_logs(futures::stream::iter([pb::AppendLogsRequest {
            open: Some(other()),
            items: Vec::new(),
            mask_values: Vec::new(),
        }]))
        .await;
    assert_eq!(append.unwrap_err().code(), Code::PermissionDenied, "append");
    let cursor = stub
        .get_writer_cursor(pb::GetWriterCursorRequest {
            task_id: "other".into(),
            run_id: "r".into(),
            writer_id: "w".into(),
        })
        .await;
    assert_eq!(cursor.unwrap_err().code(), Code::PermissionDenied, "cursor");
    let follow = stub
        .follow_run(pb::FollowRunRequest {
            task_id: "other".into(),
            run_id: "r".into(),
            from_seq: 1,
            channels: Vec::new(),
            history_only: true,
            ..Default::default()
        })
        .await;
    assert_eq!(follow.unwrap_err().code(), Code::PermissionDenied, "follow");
    let all = denied(
        ci.list_runs(Default::default()).await.map(drop),
        "a listing of every task",
    );
    assert!(all.contains("ListRuns must name a task_id"), "{all}");
    let nightly = ci
        .list_runs(baa_logging_client::RunFilter {
            task_id: Some("nightly".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(nightly.runs.len(), 1);

    // A search of every task finds only what the token may read; one of
    // another task is refused.
    let root_writer = root
        .writer(RunKey::new("other", "r"), WriterOptions::default())
        .await
        .unwrap();
    root_writer.stdout("allowed\n").await.unwrap();
    root_writer.flush().await.unwrap();
    let search = |task_id: &str| pb::SearchRunsRequest {
        pattern: "allowed".into(),
        task_id: task_id.into(),
        ..Default::default()
    };
    let mut everywhere = root.search(search(""), None).await.unwrap();
    let mut found = Vec::new();
    while let Some(response) = everywhere.message().await.unwrap() {
        found.extend(response.matches.into_iter().map(|m| m.task_id));
    }
    found.sort();
    assert_eq!(found, ["other", "release-2.1"], "root reads every task");
    let mut limited = ci.search(search(""), None).await.unwrap();
    let mut found = Vec::new();
    while let Some(response) = limited.message().await.unwrap() {
        found.extend(response.matches.into_iter().map(|m| m.task_id));
    }
    assert_eq!(found, ["release-2.1"], "ci reads only its tasks");
    let refused = ci.search(search("other"), None).await.map(drop);
    denied(refused, "a search of another task");
    drop(root_writer);

    let ops = client(&server, "http", |o| o.token("ops-secret-01234567"))
        .await
        .unwrap();
    let collect = denied(
        ops.collect_runs(Default::default()).await.map(drop),
        "a retention pass",
    );
    assert!(
        collect.contains("CollectRuns spans every task"),
        "{collect}"
    );
    drop((root, ci, ops, writer));
    server.stop().await;
}

/// A server whose certificate is a self-signed CA certificate (what a
/// plain `openssl req -x509` makes): `baa-log` says in words what is
/// wrong and what to do, instead of `CaUsedAsEndEntity`.
#[tokio::test]
async fn a_ca_certificate_as_the_server_s_own_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("self.pem"), dir.path().join("self.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = Tls::load(&cert_path, &key_path, None).unwrap();
    let server = server_with(
        &dir.path().join("data"),
        Security {
            tls: Some(tls),
            ..Security::default()
        },
    )
    .await;
    let output = tokio::process::Command::new(crate::util::process::cli_binary())
        .args(["--server", &server.addr.to_string(), "--ca-file"])
        .arg(&cert_path)
        .arg("runs")
        .env_remove("BAA_LOG_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the server's certificate is a CA certificate")
            && stderr.contains("make a CA, then a server certificate signed by it"),
        "{stderr}"
    );
    server.stop().await;
}
