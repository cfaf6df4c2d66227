//! Masking on the server: values a writer registers on its append stream
//! (`AppendLogsRequest.mask_values`) and the server-wide rules are masked
//! in everything stored, for writers that do not mask themselves; the
//! values never reach the disk.

use std::{path::Path, time::Duration};

use baa_logd::{ServerConfig, Settings};
use baa_logging::pb;
use baa_logging_client::LoggingClient;
use prost_types::{Struct, Value, value::Kind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::util::{
    TestServer, append, assert_status, event, follow_request, follow_to_end,
    metrics::{scrape, start_with_metrics},
    more, open, prepare, stderr, stdout, writer_cursor,
};

/// The value the tests register.
const SECRET: &str = "hunter2-correct-horse";

/// An opening message that registers `values`.
fn open_masking(
    run: &str,
    writer: &str,
    values: &[&str],
    items: Vec<pb::AppendItem>,
) -> pb::AppendLogsRequest {
    pb::AppendLogsRequest {
        mask_values: values.iter().map(|value| (*value).to_owned()).collect(),
        ..open("t", run, writer, items)
    }
}

/// An append stream whose messages the test sends one by one: the sender,
/// and the call, which ends with the reply once the sender is dropped.
fn append_call(
    client: &LoggingClient,
) -> (
    mpsc::Sender<pb::AppendLogsRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::AppendLogsResponse>, tonic::Status>>,
) {
    let (requests, queue) = mpsc::channel(4);
    let mut client = client.clone();
    let call = tokio::spawn(async move { client.append_logs(ReceiverStream::new(queue)).await });
    (requests, call)
}

/// Every file under `dir`, read as bytes, holds no `needle`.
fn assert_not_on_disk(dir: &Path, needle: &str) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            assert_not_on_disk(&path, needle);
        } else {
            let bytes = std::fs::read(&path).expect("readable file");
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{} holds the value",
                path.display()
            );
        }
    }
}

/// The texts a reader sees of what the writers sent to a run: chunk
/// texts, event messages and data, in order (the server's own
/// `run_prepared` entry left out).
async fn texts(client: &mut LoggingClient, run: &str) -> Vec<String> {
    let followed = follow_to_end(client, follow_request("t", run, 0, true)).await;
    let prepared = i32::from(pb::WorkerLifecycleEventType::RunPrepared);
    followed
        .entries
        .iter()
        .filter_map(|entry| match entry.entry.as_ref().expect("entry set") {
            pb::log_entry::Entry::Chunk(chunk) => Some(chunk.text.clone()),
            pb::log_entry::Entry::Lifecycle(event) if event.r#type == prepared => None,
            pb::log_entry::Entry::Lifecycle(event) => {
                Some(format!("{} {:?}", event.message, event.data))
            }
        })
        .collect()
}

/// A value registered in the opening message is masked in the same
/// message's stdout, stderr, event message and event data, and in a later
/// state summary; the masks are counted and the value is nowhere on disk.
#[tokio::test]
async fn a_registered_value_is_masked_in_everything_a_reader_sees() {
    let dir = tempfile::tempdir().unwrap();
    let (server, metrics_addr) = start_with_metrics(dir.path(), ServerConfig::default()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let data = Struct {
        fields: [(
            "token".to_owned(),
            Value {
                kind: Some(Kind::StringValue(format!("Bearer {SECRET}"))),
            },
        )]
        .into_iter()
        .collect(),
    };
    let items = vec![
        stdout(1, &format!("login {SECRET} ok\n")),
        stderr(2, &format!("warning: {SECRET}\n")),
        event(
            3,
            pb::WorkerLifecycleEventType::WorkerStarted,
            &format!("started with {SECRET}"),
            Some(data),
        ),
    ];
    let response = append(&mut client, vec![open_masking("r", "w", &[SECRET], items)])
        .await
        .expect("stored");
    assert_eq!(response.stored_count, 3);
    let state = client
        .update_run_state(pb::UpdateRunStateRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            writer_id: String::new(),
            patch: Some(pb::RunStatePatch {
                summary: Some(format!("failed: {SECRET}")),
                ..Default::default()
            }),
        })
        .await
        .expect("state")
        .into_inner()
        .state
        .expect("state");
    assert_eq!(state.summary.as_deref(), Some("failed: [MASKED]"));

    let texts = texts(&mut client, "r").await;
    assert_eq!(texts[0], "login [MASKED] ok\n");
    assert_eq!(texts[1], "warning: [MASKED]\n");
    assert!(
        texts[2].starts_with("started with [MASKED] "),
        "{}",
        texts[2]
    );
    assert!(texts[2].contains("Bearer [MASKED]"), "{}", texts[2]);
    assert!(texts.iter().all(|text| !text.contains(SECRET)));
    let masked = scrape(metrics_addr)
        .await
        .value("baa_logd_masked_occurrences_total");
    assert!(masked >= 5.0, "{masked} masks counted");
    server.stop().await;
    assert_not_on_disk(dir.path(), SECRET);
}

/// A value writer A registered is masked in what writer B writes to the
/// same run, B registering nothing, after A's stream closed.
#[tokio::test]
async fn a_value_registered_by_one_writer_is_masked_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    append(
        &mut client,
        vec![open_masking("r", "a", &[SECRET], Vec::new())],
    )
    .await
    .expect("registered");
    append(
        &mut client,
        vec![open(
            "t",
            "r",
            "b",
            vec![stdout(1, &format!("b sees {SECRET}\n"))],
        )],
    )
    .await
    .expect("stored");

    assert_eq!(texts(&mut client, "r").await, ["b sees [MASKED]\n"]);
    server.stop().await;
    assert_not_on_disk(dir.path(), SECRET);
}

/// A held tail never makes the next chunk too large: before a chunk of
/// the entry limit, the tail stays in its own entry, and both are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_tail_never_pushes_a_chunk_past_the_entry_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let full = "x".repeat(baa_logging::config::limits::DEFAULT_MAX_ENTRY_BYTES);
    let response = append(
        &mut client,
        vec![open_masking(
            "r",
            "w",
            &[SECRET],
            vec![stdout(1, "key=hun"), stdout(2, &full)],
        )],
    )
    .await
    .expect("both stored");
    assert_eq!(response.stored_count, 2);
    let texts = texts(&mut client, "r").await;
    assert_eq!(texts[0], "key=hun");
    assert_eq!(texts[1].len(), full.len());
    server.stop().await;
}

/// A writer that reconnects goes on being masked: the values belong to
/// the run, not to the stream that registered them, so a second stream of
/// the same writer that registers nothing is masked with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_outlive_the_stream_that_registered_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    append(
        &mut client,
        vec![open_masking(
            "r",
            "w",
            &[SECRET],
            vec![stdout(1, "first\n")],
        )],
    )
    .await
    .expect("registered");
    append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            vec![stdout(2, &format!("again {SECRET}\n"))],
        )],
    )
    .await
    .expect("stored");

    assert_eq!(
        texts(&mut client, "r").await,
        ["first\n", "again [MASKED]\n"]
    );
    server.stop().await;
    assert_not_on_disk(dir.path(), SECRET);
}

/// A value split across two chunks sent in two messages is masked: the
/// held start moves into the second entry, the entry count and the
/// concatenated text are what whole-text masking gives.
#[tokio::test]
async fn a_value_split_across_two_messages_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let (head, tail) = SECRET.split_at(9);
    let (requests, call) = append_call(&client);
    requests
        .send(open_masking(
            "r",
            "w",
            &[SECRET],
            vec![stdout(1, &format!("key={head}"))],
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    requests
        .send(more(vec![stdout(2, &format!("{tail} done\n"))]))
        .await
        .unwrap();
    drop(requests);
    let response = call.await.unwrap().expect("stored").into_inner();
    assert_eq!(response.stored_count, 2);

    let texts = texts(&mut client, "r").await;
    assert_eq!(texts.len(), 2);
    assert_eq!(texts.concat(), "key=[MASKED] done\n");
    server.stop().await;
    assert_not_on_disk(dir.path(), SECRET);
}

/// A chain of chunks that each hand the start of their text to the next
/// waits whole: no chunk of it is stored (nor in the writer's cursor)
/// before the chunk that ends it, so a writer that re-sends from its
/// cursor never re-sends a chunk whose start the server moved into a
/// chunk it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_held_chunks_waits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let (requests, call) = append_call(&client);
    requests
        .send(open_masking(
            "r",
            "w",
            &[SECRET],
            vec![stdout(1, "before\n"), stdout(2, "key=hun")],
        ))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while writer_cursor(&mut client, "t", "r", "w")
        .await
        .last_writer_seq
        < 1
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The chunk that takes the held start and holds a longer one: the
    // first chunk of the chain is decided, but waits with it.
    requests
        .send(more(vec![stdout(3, "ter2-co")]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cursor = writer_cursor(&mut client, "t", "r", "w").await;
    assert_eq!(cursor.last_writer_seq, 1, "the chain waits whole");
    requests
        .send(more(vec![stdout(4, "rrect-horse done\n")]))
        .await
        .unwrap();
    drop(requests);
    call.await.unwrap().expect("stored");
    let texts = texts(&mut client, "r").await;
    assert_eq!(texts.len(), 4);
    assert_eq!(texts.concat(), "before\nkey=[MASKED] done\n", "{texts:?}");
    server.stop().await;
    assert_not_on_disk(dir.path(), SECRET);
}

/// A chunk that ends in what may be the start of a value is stored as it
/// is once the hold-back time passed without a next chunk, while its
/// stream stays open.
#[tokio::test]
async fn a_held_chunk_is_stored_after_the_hold_back_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.masking.hold_back = Duration::from_millis(100);
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let (requests, call) = append_call(&client);
    requests
        .send(open_masking(
            "r",
            "w",
            &[SECRET],
            vec![stdout(1, "prompt> hunter2")],
        ))
        .await
        .unwrap();
    let mut stored = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = writer_cursor(&mut client, "t", "r", "w")
            .await
            .last_writer_seq;
        if stored == 1 {
            break;
        }
    }
    assert_eq!(stored, 1, "the held chunk was stored after its hold-back");
    drop(requests);
    call.await.unwrap().expect("stored");
    assert_eq!(texts(&mut client, "r").await, ["prompt> hunter2"]);
    server.stop().await;
}

/// A GitHub token is masked by the built-in rules without registration,
/// also in the metadata given to `PrepareRun`.
#[tokio::test]
async fn a_github_token_is_masked_without_registration() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let token = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    let mut metadata = crate::util::metadata("t", "r");
    metadata.command = Some(format!("git push https://{token}@example.com"));
    let prepared = client
        .prepare_run(crate::util::prepare_request(metadata))
        .await
        .expect("prepared")
        .into_inner();
    let command = prepared.metadata.and_then(|metadata| metadata.command);
    assert_eq!(
        command.as_deref(),
        Some("git push https://[MASKED]@example.com")
    );
    append(
        &mut client,
        vec![open(
            "t",
            "r",
            "w",
            vec![stdout(1, &format!("token {token}\n"))],
        )],
    )
    .await
    .expect("stored");

    assert_eq!(texts(&mut client, "r").await, ["token [MASKED]\n"]);
    server.stop().await;
    assert_not_on_disk(dir.path(), &token);
}

/// A value under 8 bytes fails the stream with INVALID_ARGUMENT whose
/// message gives the length and never the value; nothing of its message
/// is stored.
#[tokio::test]
async fn a_short_value_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    prepare(&mut client, "t", "r").await;
    let short = "pw-1234";
    let result = append(
        &mut client,
        vec![open_masking(
            "r",
            "w",
            &["", short],
            vec![stdout(1, &format!("{short}\n"))],
        )],
    )
    .await;
    let status = result.expect_err("refused");
    assert!(!status.message().contains(short), "{}", status.message());
    assert_status(Err::<(), _>(status), Code::InvalidArgument, "7 bytes");
    assert_eq!(
        writer_cursor(&mut client, "t", "r", "w")
            .await
            .last_writer_seq,
        0
    );
    server.stop().await;
    assert_not_on_disk(dir.path(), short);
}

/// A configured rule whose pattern is not a regular expression stops the
/// server at start, naming the rule.
#[test]
fn an_invalid_rule_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baa-logd.toml");
    std::fs::write(
        &file,
        "[[masking.rules]]\nname = \"internal-key\"\npattern = \"ik_[a-z\"\n",
    )
    .unwrap();
    let err = Settings::load(
        Some(&file),
        std::collections::BTreeMap::<String, String>::new(),
    )
    .expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("masking.rules"), "{message}");
    assert!(message.contains("internal-key"), "{message}");
}
