//! The store's descriptor cache (`limits.max_open_files`): many runs
//! written and followed at once through a server that may keep only a few
//! of their files open lose nothing, and the `baa-logd` process never
//! holds more files open for appending than the cache allows (plus those
//! of the few commits under way).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use baa_logging::pb;
use baa_logging_client::connect;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::util::{
    entry_text, follow_request, follow_to_end, more, open, prepare, process::ServerProcess,
    set_status, stderr, stdout,
};

/// Runs written and followed at once.
const RUNS: usize = 30;
/// Messages each writer sends on its one Append stream, each a commit.
const MESSAGES: u64 = 15;
/// The server's `--max-open-files`.
const MAX_OPEN_FILES: usize = 6;
/// Files that commits under way may hold on top of the cache: a commit
/// holds at most four (journal and three channels); a few run at once on
/// the blocking pool.
const IN_FLIGHT: usize = 4 * 4;

/// The files under `data` that `pid` holds open for appending (the runs'
/// journals and channel files), from `/proc/<pid>/fd` and the flags in
/// `/proc/<pid>/fdinfo`.
fn appending_fds(pid: u32, data: &Path) -> usize {
    const O_APPEND: u32 = 0o2000;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(data))
        })
        .filter(|entry| {
            let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            std::fs::read_to_string(info).is_ok_and(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("flags:"))
                    .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
                    .is_some_and(|flags| flags & O_APPEND != 0)
            })
        })
        .count()
}

/// Writes `RUNS` runs at once, each from its own Append stream, while each
/// is followed; returns the most appending files the server held while
/// they were written and once they were done.
async fn write_and_follow(server: &ServerProcess, data: &Path) -> (usize, usize) {
    let pid = server.pid();
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most, data) = (done.clone(), most.clone(), data.to_path_buf());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(appending_fds(pid, &data), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut client = connect(server.url()).await.unwrap();
    for index in 0..RUNS {
        prepare(&mut client, "t", &format!("r{index}")).await;
    }
    let followers: Vec<_> = (0..RUNS)
        .map(|index| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let run = format!("r{index}");
                follow_to_end(&mut client, follow_request("t", &run, 1, false)).await
            })
        })
        .collect();
    let writers: Vec<_> = (0..RUNS)
        .map(|index| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let run = format!("r{index}");
                let (tx, rx) = mpsc::channel(4);
                let call = tokio::spawn({
                    let mut client = client.clone();
                    async move { client.append_logs(ReceiverStream::new(rx)).await }
                });
                for message in 0..MESSAGES {
                    // Two channels a commit: the journal and two channel
                    // files for each run that writes.
                    let seq = message * 2 + 1;
                    let items = vec![
                        stdout(seq, &format!("{run} out {message}\n")),
                        stderr(seq + 1, &format!("{run} err {message}\n")),
                    ];
                    let request = match message {
                        0 => open("t", &run, "w", items),
                        _ => more(items),
                    };
                    tx.send(request).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                drop(tx);
                let response = call.await.unwrap().expect("the append succeeds");
                assert_eq!(response.into_inner().last_writer_seq, MESSAGES * 2);
                for status in [pb::RunStatus::Running, pb::RunStatus::Completed] {
                    set_status(&mut client, "t", &run, status).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    for (index, follower) in followers.into_iter().enumerate() {
        let followed = follower.await.unwrap();
        assert!(followed.end.is_none(), "r{index}: {:?}", followed.end);
        // The lines, in order, among the store's own lifecycle entries.
        let lines: Vec<&str> = followed.entries.iter().filter_map(entry_text).collect();
        let expected: Vec<String> = (0..MESSAGES)
            .flat_map(|message| {
                [
                    format!("r{index} out {message}\n"),
                    format!("r{index} err {message}\n"),
                ]
            })
            .collect();
        assert_eq!(lines, expected, "r{index} delivered every line once");
        let seqs = followed.seqs();
        let consecutive: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, consecutive, "r{index}: no entry lost");
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (most.load(Ordering::Relaxed), appending_fds(pid, data))
}

/// With `--max-open-files 6`, 30 runs written (two channels each) and
/// followed at once deliver every entry, and the server holds at most 6
/// files open for appending once the commits are done, and only the few
/// of the commits under way on top while they are written (without the
/// bound, 90).
#[tokio::test]
async fn a_small_descriptor_cache_bounds_open_files_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let max = MAX_OPEN_FILES.to_string();
    let server = ServerProcess::start_with_args(
        &data,
        &["--listen", "127.0.0.1:0", "--max-open-files", &max],
    );
    let data = std::fs::canonicalize(&data).unwrap();
    let (during, after) = write_and_follow(&server, &data).await;
    assert!(
        after <= MAX_OPEN_FILES,
        "{after} files open after the writes"
    );
    assert!(
        during <= MAX_OPEN_FILES + IN_FLIGHT,
        "{during} files open while writing"
    );
}

/// The same with `--sync`: a file the cache closes while its commits are
/// not yet synced stays open until the group sync that covers them has
/// synced it (so while writing, the files of every commit waiting for its
/// sync come on top of the bound), nothing is lost, and once the commits
/// are synced the bound holds.
#[tokio::test]
async fn the_descriptor_cache_bounds_open_files_with_sync() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let max = MAX_OPEN_FILES.to_string();
    let server = ServerProcess::start_with_args(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--sync",
            "--max-open-files",
            &max,
        ],
    );
    let data = std::fs::canonicalize(&data).unwrap();
    let (_, after) = write_and_follow(&server, &data).await;
    assert!(
        after <= MAX_OPEN_FILES,
        "{after} files open after the writes"
    );
}
