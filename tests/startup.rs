//! Starting `baa-logd`: one server per data directory, a SIGHUP right
//! after start, and token files that cannot work, each as an operator
//! meets them.

use std::{process::Command, time::Duration};

use baa_logging::pb;
use baa_logging_client::connect;

use crate::util::process::{ServerProcess, server_binary};

/// Runs `baa-logd` over `data_dir` with `args` until it exits.
fn run_to_exit(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("baa-logd runs")
}

/// A second server on a data directory in use exits with code 2, naming
/// the directory and the pid that holds it, and touches nothing: the
/// first server's staging area is left alone and it goes on serving.
#[tokio::test]
async fn a_second_server_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServerProcess::start(dir.path());
    let in_flight = dir.path().join(".staging/in-flight");
    std::fs::create_dir_all(&in_flight).unwrap();

    let second = run_to_exit(dir.path(), &[]);
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    assert!(
        stderr.contains(&format!(
            "the data directory {} is in use by another baa-logd (pid {})",
            canonical.display(),
            first.pid()
        )),
        "{stderr}"
    );
    assert!(
        in_flight.is_dir(),
        "the refused server touched the directory"
    );
    let mut client = connect(first.url()).await.unwrap();
    client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .expect("the first server still serves");
}

/// A SIGHUP the moment the server says it listens (without TLS, where
/// there is nothing to reload) neither ends nor disturbs it.
#[tokio::test]
async fn a_sighup_right_after_start_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = connect(server.url()).await.unwrap();
    client
        .get_server_info(pb::GetServerInfoRequest {})
        .await
        .expect("the server survived the SIGHUP");
    drop(client);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// A token file that cannot work stops the server with exit code 2, like
/// every configuration error, saying why; it never starts half-secured.
#[test]
fn a_token_file_that_cannot_work_exits_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        r#"
        [[tokens]]
        name = "ci"
        scopes = ["write"]
        secret = "first-secret-01234"
        [[tokens]]
        name = "ci"
        scopes = ["admin"]
        secret = "other-secret-01234"
        "#,
    )
    .unwrap();
    let tokens = tokens.to_string_lossy().into_owned();
    let twice = run_to_exit(&dir.path().join("runs"), &["--token-file", &tokens]);
    assert_eq!(twice.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(stderr.contains("token `ci` is listed twice"), "{stderr}");

    let missing = dir
        .path()
        .join("missing.toml")
        .to_string_lossy()
        .into_owned();
    let absent = run_to_exit(&dir.path().join("runs"), &["--token-file", &missing]);
    assert_eq!(absent.status.code(), Some(2));
}

/// With its log going to a pipe (journald, a file), the server writes no
/// colour codes, whatever the terminal it was started from.
#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8(output.stderr).unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in {log:?}");
}
