//! A sample of the cuts of `a_file_cut_inside_an_earlier_commit…`, end to
//! end: the run written by a `baa-logd` process with and without `--sync`
//! and killed, a channel file cut, and a new process over the copy
//! answering over gRPC.

use std::{collections::BTreeMap, fs};

use baa_logging::pb;
use tonic::Code;

use super::{commit_offsets, copy_dir};
use crate::util::{
    append, entry_seq, entry_text, follow_request, follow_to_end, open, prepare,
    process::ServerProcess, stderr, stdout, writer_cursor,
};

/// A client of the server at `url`.
async fn connect_to(url: &str) -> baa_logging_client::LoggingClient {
    baa_logging_client::connect(url.to_owned())
        .await
        .expect("connects")
}

/// Writer item `n`: `line n`, on stdout when odd and stderr when even.
fn item(n: u64) -> pb::AppendItem {
    let text = format!("line {n}");
    if n % 2 == 1 {
        stdout(n, &text)
    } else {
        stderr(n, &text)
    }
}

/// Follows the run from 1 to its end, reading on after each `DATA_LOSS`
/// from the `from_seq` its message gives: the entries served (seq, text)
/// and the ranges reported.
async fn read_through(url: &str) -> (BTreeMap<u64, String>, Vec<String>) {
    let mut client = connect_to(url).await;
    let (mut served, mut reported) = (BTreeMap::new(), Vec::new());
    let mut from_seq = 1;
    for _ in 0..20 {
        let followed = follow_to_end(&mut client, follow_request("t", "r", from_seq, true)).await;
        for entry in &followed.entries {
            let text = entry_text(entry).unwrap_or("").to_owned();
            assert!(
                served.insert(entry_seq(entry), text).is_none(),
                "seq {} served twice",
                entry_seq(entry)
            );
        }
        let Some(end) = followed.end else {
            return (served, reported);
        };
        assert_eq!(end.code(), Code::DataLoss, "{end:?}");
        from_seq = end
            .message()
            .split("from_seq ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("no from_seq in {:?}", end.message()));
        reported.push(end.message().to_owned());
    }
    panic!("the follow never ended");
}

/// For each of a few cuts inside the last two commits of stdout and
/// stderr, with and without `--sync`: the restarted server opens the run,
/// serves only original lines, never a `seq` twice, reports what it lost,
/// and its writer cursor makes a re-send store each missing item once.
#[tokio::test]
async fn cuts_against_a_real_server_with_and_without_sync() {
    for sync in [false, true] {
        let args: &[&str] = if sync {
            &["--listen", "127.0.0.1:0", "--sync"]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let pristine = tempfile::tempdir().unwrap();
        let server = ServerProcess::start_with_args(pristine.path(), args);
        let mut client = connect_to(&server.url()).await;
        prepare(&mut client, "t", "r").await;
        for commit in 0..3u64 {
            let items = (1..=4).map(|n| item(commit * 4 + n)).collect();
            append(&mut client, vec![open("t", "r", "w", items)])
                .await
                .unwrap();
        }
        drop(client);
        server.kill();
        let (original, _) = read_through_copy(pristine.path(), args).await;
        assert_eq!(original.len(), 13);
        let offsets = commit_offsets(&pristine.path().join("t/r/journal.jsonl"));
        for (file, channel) in [("stdout.log", 1), ("stderr.log", 2)] {
            let len = fs::metadata(pristine.path().join("t/r").join(file))
                .unwrap()
                .len();
            let (second, last) = (offsets[2][channel], offsets[3][channel]);
            for cut in [second + 1, (second + last) / 2, last, last + 1, len - 1] {
                let case = format!("sync {sync}, {file} cut at {cut}");
                let dir = tempfile::tempdir().unwrap();
                copy_dir(pristine.path(), dir.path());
                fs::OpenOptions::new()
                    .write(true)
                    .open(dir.path().join("t/r").join(file))
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                let server = ServerProcess::start_with_args(dir.path(), args);
                let (served, _) = read_through(&server.url()).await;
                for (seq, text) in &served {
                    assert_eq!(Some(text), original.get(seq), "{case}: seq {seq}");
                }
                assert!(served.len() < 13, "{case}: nothing lost");
                let mut client = connect_to(&server.url()).await;
                let cursor = writer_cursor(&mut client, "t", "r", "w").await;
                let kept = served.len() as u64 - 1;
                assert_eq!(cursor.last_writer_seq, kept, "{case}");
                let resend = (1..=12).map(item).collect();
                let outcome = append(&mut client, vec![open("t", "r", "w", resend)])
                    .await
                    .unwrap();
                assert_eq!(outcome.stored_count, 12 - kept, "{case}");
                let (after, _) = read_through(&server.url()).await;
                for (seq, text) in &after {
                    if let Some(before) = served.get(seq).or(original.get(seq)) {
                        assert_eq!(text, before, "{case}: seq {seq} names another line");
                    }
                }
                let mut lines: Vec<&String> = after.values().collect();
                lines.sort();
                lines.dedup();
                assert_eq!(lines.len(), 13, "{case}: every line once");
                drop(client);
                server.kill();
            }
        }
    }
}

/// What a server over a copy of `dir` serves, read through.
async fn read_through_copy(
    dir: &std::path::Path,
    args: &[&str],
) -> (BTreeMap<u64, String>, Vec<String>) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let server = ServerProcess::start_with_args(copy.path(), args);
    let read = read_through(&server.url()).await;
    server.kill();
    read
}
