//! Masking at the worker: `baa-log exec` masks the values of secret
//! environment variables (and of files of secrets) before anything leaves
//! its process, so the spool, the stored files and every follower see
//! `[MASKED]`, whole, split across writes, and in encoded forms.

use std::{
    path::Path,
    process::{Command, Output},
};

use crate::util::{TestServer, process::cli_binary};

/// The secret the tests mask.
const SECRET: &str = "s3cr3t-Value-4242";

/// A Python program that prints [`SECRET`] (from `$DEPLOY_TOKEN`) whole,
/// split across two writes 50 ms apart, base64-encoded after a prefix,
/// URL-encoded, JSON-escaped, and on stderr.
const PRINTS_SECRET: &str = r#"
import os, sys, time, base64, urllib.parse, json
s = os.environ["DEPLOY_TOKEN"]
print("whole:", s); sys.stdout.flush()
sys.stdout.write("split: " + s[:5]); sys.stdout.flush(); time.sleep(0.05)
sys.stdout.write(s[5:9]); sys.stdout.flush(); time.sleep(0.05)
sys.stdout.write(s[9:] + " end\n"); sys.stdout.flush()
for prefix in ["", "u", "us", "user:"]:
    sys.stdout.write("b64: " + base64.b64encode((prefix + s + "!").encode()).decode() + "\n")
print("url:", urllib.parse.quote("a b/" + s + "&x", safe=""))
print("json:", json.dumps({"k": s + '"q'}))
print("err:", s, file=sys.stderr)
print("plain line")
"#;

/// Runs `baa-log exec` against `server` with `DEPLOY_TOKEN` set to the
/// secret, spooling under `spool`.
fn exec(server: &str, spool: &Path, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .env("BAA_LOG_SERVER", server)
        .env("BAA_LOG_SPOOL_DIR", spool)
        .env("DEPLOY_TOKEN", SECRET)
        .env("SHORT_TOKEN", "abc")
        .env_remove("BAA_LOG_TOKEN")
        .env_remove("BAA_LOG_MASK_ENV")
        // Block-buffered, as the command's comments assume: unbuffered,
        // each `print` is several writes, and on a busy machine the stderr
        // line may be read between two of them.
        .env_remove("PYTHONUNBUFFERED")
        .arg("exec")
        .args(args)
        .output()
        .expect("baa-log runs")
}

/// Every form of the secret a reader could decode, to look for.
fn forms() -> Vec<String> {
    use base64::Engine as _;
    let mut forms = vec![SECRET.to_owned(), SECRET[..9].to_owned()];
    // The part of each base64 alignment that encodes the secret alone.
    for prefix in ["", "u", "us"] {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{SECRET}!"));
        let start = (prefix.len() * 8).div_ceil(6);
        forms.push(encoded[start..start + 12].to_owned());
    }
    forms
}

/// Every file under `dir`, with the forms of the secret it holds.
fn leaks(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for form in forms() {
                if text.contains(&form) {
                    found.push(format!("{} holds {form}", path.display()));
                }
            }
        }
    }
    found
}

/// What a follower reads of the run, `baa-log cat` with every channel.
fn cat(server: &str, run: &str) -> String {
    let output = Command::new(cli_binary())
        .env("BAA_LOG_SERVER", server)
        .args(["cat", run])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A secret in the environment is masked in the run whole, split across
/// three writes, in base64 at each alignment, URL- and JSON-encoded, on
/// stderr and in the run's command line; nothing under the data directory
/// or the spool holds it in any form; a short value is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_masks_secret_environment_values_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let url = format!("http://{}", server.addr);
    let spool = dir.path().join("spool");
    let (url2, spool2) = (url.clone(), spool.clone());
    let output = tokio::task::spawn_blocking(move || {
        exec(
            &url2,
            &spool2,
            &[
                "--task",
                "m",
                "--run",
                "env",
                "--",
                "python3",
                "-c",
                PRINTS_SECRET,
                SECRET,
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not masking $SHORT_TOKEN: its value is shorter than the 8 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("abc"),
        "the short value is not shown: {stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("baa-log") && line.contains(SECRET)),
        "baa-log's own lines never show the value: {stderr}"
    );

    let followed = tokio::task::spawn_blocking(move || cat(&url, "m/env"))
        .await
        .unwrap();
    assert!(followed.contains("whole: [MASKED]\n"), "{followed}");
    assert!(followed.contains("split: [MASKED] end\n"), "{followed}");
    assert!(followed.contains("url: a%20b%2F[MASKED]%26x"), "{followed}");
    assert!(
        followed.contains(r#"json: {"k": "[MASKED]\"q"}"#),
        "{followed}"
    );
    assert!(followed.contains("err: [MASKED]"), "{followed}");
    assert!(followed.contains("plain line\n"), "{followed}");
    assert_eq!(followed.matches("b64: ").count(), 4);
    for line in followed.lines().filter(|line| line.starts_with("b64: ")) {
        assert!(line.contains("[MASKED]"), "{line}");
    }
    for form in forms() {
        assert!(
            !followed.contains(&form),
            "a follower sees {form}: {followed}"
        );
    }
    let leaks = [leaks(&server.data_dir), leaks(&spool)].concat();
    assert!(leaks.is_empty(), "{leaks:?}");
    let meta = std::fs::read_to_string(server.data_dir.join("m/env/meta.json")).unwrap();
    assert!(
        meta.contains("[MASKED]"),
        "the command line is masked: {meta}"
    );
    server.stop().await;
}

/// `exec` with no server (it spools and gives up after 200 ms) of a
/// command that echoes the secret, with `flags` before the run's; returns
/// the spool directory it used, under `dir`.
fn echo_offline(dir: &Path, name: &str, flags: &[&str]) -> std::path::PathBuf {
    let spool = dir.join(name);
    let mut args = flags.to_vec();
    args.extend(["--task", "m", "--run", name, "--delivery-wait", "200ms"]);
    args.extend(["--", "sh", "-c", "echo token=$DEPLOY_TOKEN"]);
    let output = exec("http://127.0.0.1:1", &spool, &args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    spool
}

/// With no server, the spool itself never holds the secret; and
/// --no-default-masks leaves `*_TOKEN` alone unless --mask-env or
/// --mask-file names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_is_masked_and_defaults_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let spool = echo_offline(dir.path(), "offline", &[]);
    assert!(leaks(&spool).is_empty(), "{:?}", leaks(&spool));
    let spooled: Vec<u8> = std::fs::read_dir(spool.join("m"))
        .unwrap()
        .flatten()
        .flat_map(|file| std::fs::read(file.path()).unwrap())
        .collect();
    assert!(
        String::from_utf8_lossy(&spooled).contains("token=[MASKED]"),
        "the spool holds the masked line"
    );

    let unmasked = echo_offline(dir.path(), "plain", &["--no-default-masks"]);
    assert!(!leaks(&unmasked).is_empty(), "not masked without defaults");

    let named = echo_offline(
        dir.path(),
        "named",
        &["--no-default-masks", "--mask-env", "deploy_*"],
    );
    assert!(
        leaks(&named).is_empty(),
        "masked by a pattern, case ignored"
    );

    let file = dir.path().join("secrets.txt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let from_file = echo_offline(
        dir.path(),
        "file",
        &["--no-default-masks", "--mask-file", file.to_str().unwrap()],
    );
    assert!(leaks(&from_file).is_empty(), "masked from the file");
}

/// A writer that is not spooled (--fail-closed) masks in its session:
/// the stored run never holds the secret either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_writer_masks_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let url = format!("http://{}", server.addr);
    let spool = dir.path().join("spool");
    let output = tokio::task::spawn_blocking(move || {
        exec(
            &url,
            &spool,
            &[
                "--fail-closed",
                "--task",
                "m",
                "--run",
                "strict",
                "--",
                "python3",
                "-c",
                PRINTS_SECRET,
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let leaks = leaks(&server.data_dir);
    assert!(leaks.is_empty(), "{leaks:?}");
    let stdout: String = crate::util::json_lines(&server.data_dir.join("m/strict/stdout.log"))
        .iter()
        .filter_map(|entry| entry["text"].as_str().map(str::to_owned))
        .collect();
    assert!(stdout.contains("split: [MASKED] end"), "{stdout}");
    server.stop().await;
}

/// The server masks with exec's values what the run's other writers send:
/// exec registers them on its append stream, and a writer that masks
/// nothing itself (here the raw stubs, as a client in another language)
/// has the secret masked in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_registers_its_values_for_the_runs_other_writers() {
    use crate::util::{append, open, stdout};

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let url = format!("http://{}", server.addr);
    let spool = dir.path().join("spool");
    let go = dir.path().join("go");
    let script = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.02; done",
        go.display()
    );
    let exec = tokio::task::spawn_blocking(move || {
        exec(
            &url,
            &spool,
            &["--task", "m", "--run", "shared", "--", "sh", "-c", &script],
        )
    });
    let mut client = server.client().await;
    let start = std::time::Instant::now();
    // exec's output is stored once its stream, which registers the
    // values, is open.
    let stdout_log = server.data_dir.join("m/shared/stdout.log");
    while !std::fs::read_to_string(&stdout_log).is_ok_and(|text| text.contains("started")) {
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    append(
        &mut client,
        vec![open(
            "m",
            "shared",
            "other",
            vec![stdout(1, &format!("other writer: {SECRET}\n"))],
        )],
    )
    .await
    .expect("stored");
    std::fs::write(&go, "").unwrap();
    let output = exec.await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stored = std::fs::read_to_string(server.data_dir.join("m/shared/stdout.log")).unwrap();
    assert!(stored.contains("other writer: [MASKED]"), "{stored}");
    assert!(
        leaks(&server.data_dir).is_empty(),
        "{:?}",
        leaks(&server.data_dir)
    );
    server.stop().await;
}
