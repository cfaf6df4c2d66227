//! Clients in other languages: the Python and the Node.js clients of
//! `tests/polyglot/` run the shared scenario against a `baa-logd` process,
//! each with stubs made from `proto/` when it starts. Then the run's files
//! must hold exactly the scenario's data, in the contract's shapes.
//!
//! Their dependencies are installed by `scripts/polyglot-setup.sh`, which
//! the test command runs; without them these tests fail and say so.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::util::{
    contract::{
        RUN_METADATA, RUN_STATE_SNAPSHOT, STREAM_CHUNK_LOG_ENTRY, WORKER_LIFECYCLE_LOG_ENTRY,
        assert_shape,
    },
    json_lines,
    process::ServerProcess,
};

/// How long a client may take; the scenario itself takes about a second.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// `tests/polyglot/`.
fn polyglot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/polyglot")
}

/// Fails with what to do when a client's installed dependencies are missing.
fn require_installed(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run `bash scripts/polyglot-setup.sh`, \
         or the whole test command, `bash scripts/test.sh`",
        path.display()
    );
}

/// Runs `program args… ADDRESS` against a fresh `baa-logd` and asserts that
/// it exits with status 0, showing its output when it does not; then checks
/// the files of the run it wrote.
fn run_scenario(program: &Path, args: &[PathBuf]) {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path());
    let output_dir = tempfile::tempdir().unwrap();
    let output = |name: &str| output_dir.path().join(name);
    let mut child = Command::new(program)
        .args(args)
        .arg(server.addr.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(output("stdout")).unwrap())
        .stderr(std::fs::File::create(output("stderr")).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("{} does not start: {err}", program.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |name: &str| std::fs::read_to_string(output(name)).unwrap();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let report = format!(
        "{} {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        program.display(),
        args.iter()
            .map(|arg| arg.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    match status {
        Some(status) if status.success() => print!("{stdout}"),
        Some(status) => panic!("the client failed ({status}):\n{report}"),
        None => panic!("the client took more than {CLIENT_TIMEOUT:?}:\n{report}"),
    }
    check_files(data_dir.path());
    drop(server);
}

/// Checks that the run's files hold `scenario.json`, in the contract's
/// shapes: what the client sent was stored as it was sent.
fn check_files(data_dir: &Path) {
    let scenario: Value =
        serde_json::from_slice(&std::fs::read(polyglot_dir().join("scenario.json")).unwrap())
            .unwrap();
    let metadata = &scenario["metadata"];
    let run_dir = data_dir
        .join(metadata["taskId"].as_str().unwrap())
        .join(metadata["runId"].as_str().unwrap());
    let read_json = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(run_dir.join(name)).unwrap()).unwrap()
    };

    let meta = read_json("meta.json");
    assert_shape(&RUN_METADATA, &meta, "meta.json");
    let mut expected = metadata.clone();
    expected["layoutVersion"] = json!("local-run-v1");
    assert_eq!(meta, expected);

    let state = read_json("state.json");
    assert_shape(&RUN_STATE_SNAPSHOT, &state, "state.json");
    let finish = &scenario["finish"];
    assert_eq!(
        (&state["status"], &state["exitCode"], &state["summary"]),
        (&json!("completed"), &finish["exitCode"], &finish["summary"])
    );

    // Every stored line, by seq.
    let mut lines = Vec::new();
    for (name, interface) in [
        ("worker.log", &WORKER_LIFECYCLE_LOG_ENTRY),
        ("stdout.log", &STREAM_CHUNK_LOG_ENTRY),
        ("stderr.log", &STREAM_CHUNK_LOG_ENTRY),
    ] {
        for line in json_lines(&run_dir.join(name)) {
            assert_shape(interface, &line, name);
            lines.push(line);
        }
    }
    lines.sort_by_key(|line| line["seq"].as_u64());
    let items = scenario["items"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        items.len() + 1,
        "run_prepared, then each item once"
    );
    assert_eq!(lines[0]["type"], "run_prepared");
    for (seq, (item, line)) in (2..).zip(items.iter().zip(&lines[1..])) {
        assert_eq!(line["seq"], seq);
        let (channel, sent) = item.as_object().unwrap().iter().next().unwrap();
        let channel = if channel == "event" {
            "worker"
        } else {
            channel
        };
        assert_eq!(line["channel"], channel, "seq {seq}");
        for (key, value) in sent.as_object().unwrap() {
            assert_eq!(&line[key], value, "seq {seq}: {key}");
        }
        if channel == "worker" && sent.get("data").is_none() {
            assert_eq!(
                line["data"],
                json!({}),
                "seq {seq}: no data is an empty object"
            );
        }
    }
}

/// The Python client (grpcio, stubs generated by grpcio-tools) passes the
/// shared scenario, and the run's files hold exactly what it sent.
#[test]
fn the_python_client_passes_the_shared_scenario() {
    let dir = polyglot_dir().join("python");
    let python = dir.join(".venv/bin/python");
    require_installed(&python, "the Python client's virtual environment");
    run_scenario(&python, &[dir.join("scenario.py")]);
}

/// The Node.js client (@grpc/grpc-js, stubs loaded by @grpc/proto-loader)
/// passes the shared scenario, and the run's files hold exactly what it
/// sent.
#[test]
fn the_node_client_passes_the_shared_scenario() {
    let dir = polyglot_dir().join("node");
    require_installed(
        &dir.join("node_modules/@grpc/grpc-js/package.json"),
        "the Node.js client's node_modules",
    );
    run_scenario(Path::new("node"), &[dir.join("scenario.mjs")]);
}
