//! Damaged files, the way real disks and power cuts damage them: no
//! altered line is ever served, damage is reported as `DATA_LOSS` naming
//! the commit, the rest of the run stays readable and writable, and a
//! file cut short inside an earlier commit costs only the commits after
//! the cut.
//!
//! The loops here are bounded (a small run, every byte of it); the store
//! is used in-process where a server start per case would be too slow.

use std::{collections::BTreeMap, fs, path::Path};

use baa_logging::pb;
use baa_logging_store::{
    LocalStore, LocalStoreOptions, ReadFrom, RunReader, RunStore, StoreError,
    model::{
        AppendItem, AppendPayload, ChannelSet, LogEntry, RunKey, RunMetadataInput,
        RunStateSnapshotInput, StreamChunkInput, StreamLogChannel,
    },
};
use tonic::Code;

use crate::util::{TestServer, follow_request, follow_to_end};

mod model;
mod server_cuts;

/// The run every test writes: three commits of stdout and stderr lines.
fn key() -> RunKey {
    RunKey {
        task_id: "t".into(),
        run_id: "r".into(),
    }
}

/// Opens the store in `dir`.
fn open(dir: &Path) -> LocalStore {
    LocalStore::open(LocalStoreOptions::new(dir)).expect("the store opens")
}

/// Writes the run: `run_prepared`, then three commits (writer seqs 1–4,
/// 5–8, 9–12), alternating stdout and stderr.
async fn write_run(store: &LocalStore) {
    write_run_prepared_only(store).await;
    for commit in 0..3u64 {
        let items = (1..=4).map(|n| item(commit * 4 + n)).collect::<Vec<_>>();
        store.append(&key(), "w", items).await.unwrap();
    }
}

/// Prepares the run: its journal holds `run_prepared` only.
async fn write_run_prepared_only(store: &LocalStore) {
    let metadata = RunMetadataInput {
        task_id: "t".into(),
        step_id: "s".into(),
        step_name: "S".into(),
        run_id: "r".into(),
        worker_kind: "shell".into(),
        attempt: 1,
        repo_root: "/repo".into(),
        worktree_path: "/repo".into(),
        created_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_mode: "none".into(),
        prompt_summary: None,
        command: None,
    };
    let state = RunStateSnapshotInput {
        attempt: 1,
        started_at: "2026-01-02T03:04:05.000Z".into(),
        checkpoint_seq: None,
        summary: None,
    };
    store.prepare_run(metadata, state).await.unwrap();
}

/// A data directory holding the run of [`write_run`], its store closed.
async fn written_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_run(&open(dir.path())).await;
    dir
}

/// Alters `out line 5` into `out mine 5` in place in the run's stdout
/// file: bytes of the second data commit (seq 6 to 9) that still parse.
fn alter_line_5(dir: &Path) {
    alter_line(dir, 5);
}

/// Alters `out line n` (n odd: on stdout) into `out mine n` in place.
fn alter_line(dir: &Path, n: u64) {
    let stdout = dir.join("t/r/stdout.log");
    let mut bytes = fs::read(&stdout).unwrap();
    let at = String::from_utf8(bytes.clone())
        .unwrap()
        .find(&format!("out line {n}\\n"))
        .unwrap();
    bytes[at + 4] = b'm';
    fs::write(&stdout, &bytes).unwrap();
}

/// Writer item `n`: `out line n` on stdout (odd) or stderr (even).
fn item(n: u64) -> AppendItem {
    let channel = if n % 2 == 1 {
        StreamLogChannel::Stdout
    } else {
        StreamLogChannel::Stderr
    };
    AppendItem {
        writer_seq: n,
        payload: AppendPayload::Chunk(
            channel,
            StreamChunkInput {
                text: format!("out line {n}\n"),
                created_at: Some("2026-01-02T03:04:06.000Z".into()),
            },
        ),
    }
}

/// What a history read from `from_seq` returns: the entries it served, and
/// the damage it reported (first and last `seq`), reading on after each.
async fn read_all(store: &LocalStore, from_seq: u64) -> (Vec<LogEntry>, Vec<(u64, u64)>) {
    let from = ReadFrom {
        from_seq,
        channels: ChannelSet::ALL,
        history_only: true,
        ..ReadFrom::default()
    };
    let mut reader = store.open_reader(&key(), from).await.unwrap();
    let (mut entries, mut damage) = (Vec::new(), Vec::new());
    for _ in 0..1_000_000 {
        match reader.read(16 * 1024).await {
            Ok(batch) => {
                entries.extend(batch.entries);
                if batch.finished {
                    return (entries, damage);
                }
            }
            Err(StoreError::DataLoss {
                first_seq,
                last_seq,
                ..
            }) => damage.push((first_seq, last_seq)),
            Err(err) => panic!("a read failed: {err}"),
        }
    }
    panic!("the reader never finished");
}

/// The commits of the run, as `seq` ranges: run_prepared, then three of
/// four entries each.
const COMMITS: [(u64, u64); 4] = [(1, 1), (2, 5), (6, 9), (10, 13)];

/// A flipped bit anywhere in a channel file or zeroed bytes inside a
/// commit: no altered entry is ever served, every entry that is not
/// served lies in a commit reported as damaged, and everything else is
/// served; the run still takes appends.
#[tokio::test]
async fn altered_bytes_are_reported_by_commit_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_run(&store).await;
    let (pristine, none) = read_all(&store, 1).await;
    assert!(none.is_empty());
    let by_seq: BTreeMap<u64, LogEntry> = pristine.iter().map(|e| (e.seq(), e.clone())).collect();
    let run_dir = dir.path().join("t/r");
    let mut cases = 0;
    for file in ["worker.log", "stdout.log", "stderr.log"] {
        let path = run_dir.join(file);
        let original = fs::read(&path).unwrap();
        let flips = (0..original.len()).map(|at| (at, 1usize));
        let zeroed = (0..original.len()).step_by(7).map(|at| (at, 5usize));
        for (at, width) in flips.chain(zeroed) {
            let mut damaged = original.clone();
            for byte in &mut damaged[at..(at + width).min(original.len())] {
                *byte = if width == 1 { *byte ^ 0x04 } else { 0 };
            }
            if damaged == original {
                continue;
            }
            fs::write(&path, &damaged).unwrap();
            let (served, reported) = read_all(&store, 1).await;
            fs::write(&path, &original).unwrap();
            cases += 1;
            for entry in &served {
                assert_eq!(
                    Some(entry),
                    by_seq.get(&entry.seq()),
                    "{file} byte {at}: an altered entry was served"
                );
            }
            assert!(
                !reported.is_empty(),
                "{file} byte {at}: the damage went unreported"
            );
            for seq in by_seq.keys() {
                let was_served = served.iter().any(|entry| entry.seq() == *seq);
                let in_damage = reported
                    .iter()
                    .any(|(first, last)| (first..=last).contains(&seq));
                assert!(
                    was_served != in_damage,
                    "{file} byte {at}: seq {seq} served {was_served}, reported {in_damage}"
                );
            }
            for range in &reported {
                assert!(
                    COMMITS.contains(range),
                    "{file} byte {at}: {range:?} is no commit"
                );
            }
        }
    }
    assert!(cases > 1000, "{cases} cases");
    let items = vec![item(13)];
    store
        .append(&key(), "w", items)
        .await
        .expect("the run takes appends");
}

/// Through the server, a damaged commit ends the follow with DATA_LOSS
/// naming the run and the range and saying where to read on, and a
/// follow from there gets the rest.
#[tokio::test]
async fn a_follower_gets_data_loss_and_reads_on_after_it() {
    let dir = written_run().await;
    alter_line_5(dir.path());

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let followed = follow_to_end(&mut client, follow_request("t", "r", 1, true)).await;
    assert_eq!(followed.seqs(), [1, 2, 3, 4, 5]);
    let end = followed.end.expect("the follow ends with an error");
    assert_eq!(end.code(), Code::DataLoss, "{end:?}");
    assert!(
        end.message()
            .contains("entries 6 to 9 of run `t/r` were damaged or lost")
            && end.message().contains("from_seq 10"),
        "{end:?}"
    );
    let rest = follow_to_end(&mut client, follow_request("t", "r", 10, true)).await;
    assert_eq!(rest.seqs(), [10, 11, 12, 13]);
    assert!(rest.end.is_none(), "{:?}", rest.end);
    let cursor = client
        .get_writer_cursor(pb::GetWriterCursorRequest {
            task_id: "t".into(),
            run_id: "r".into(),
            writer_id: "w".into(),
        })
        .await
        .expect("the writer's cursor is still served")
        .into_inner();
    assert_eq!(cursor.last_writer_seq, 12);
    drop(client);
    server.stop().await;
}

/// A channel file cut short at any byte inside the last two commits (what
/// a power loss leaves when one file was written back and another was
/// not): the run opens, serves exactly the commits every file covers and
/// reports the rest as lost, its writer's cursor says so, a re-send from
/// there stores each item once, and no sequence number a reader may have
/// been served before the loss names another line after it.
#[tokio::test]
async fn a_file_cut_inside_an_earlier_commit_keeps_the_commits_every_file_covers() {
    let pristine = written_run().await;
    let offsets = commit_offsets(&pristine.path().join("t/r/journal.jsonl"));
    let pristine_entries: BTreeMap<u64, LogEntry> = {
        let store = open(pristine.path());
        let (entries, _) = read_all(&store, 1).await;
        entries
            .into_iter()
            .map(|entry| (entry.seq(), entry))
            .collect()
    };
    let mut cases = 0;
    for file in ["stdout.log", "stderr.log"] {
        let channel = if file == "stdout.log" { 1 } else { 2 };
        let len = fs::metadata(pristine.path().join("t/r").join(file))
            .unwrap()
            .len();
        // From where the second commit starts in this file to its end.
        for cut in offsets[1][channel]..len {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), dir.path());
            let path = dir.path().join("t/r").join(file);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let store = open(dir.path());
            // The commits whose bytes in this file end at or before the cut.
            let kept = (1..4)
                .take_while(|commit| {
                    offsets.get(commit + 1).map_or(len, |next| next[channel]) <= cut
                })
                .count();
            let kept_seq = COMMITS[kept].1;
            let view = store.get_run(&key()).await.expect("the run opens");
            let (served, damage) = read_all(&store, 1).await;
            let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
            if kept + 1 < COMMITS.len() - 1 {
                // An earlier commit cut: the commits after it were finished
                // (a later record proves it), so their numbers stay given.
                assert_eq!(
                    view.summary.last_seq, 13,
                    "{file} cut at {cut}: numbers go on"
                );
                assert_eq!(view.summary.total_entries, kept_seq, "{file} cut at {cut}");
                assert_eq!(
                    damage,
                    [(kept_seq + 1, 13)],
                    "{file} cut at {cut}: reported lost"
                );
                assert_eq!(
                    seqs,
                    (1..=kept_seq).collect::<Vec<_>>(),
                    "{file} cut at {cut}"
                );
            } else {
                // The last commit cut, as a crash in the middle of it
                // leaves it: its complete, gap-free prefix is kept.
                assert!(damage.is_empty(), "{file} cut at {cut}: {damage:?}");
                let last = view.summary.last_seq;
                assert!(
                    (kept_seq..=13).contains(&last),
                    "{file} cut at {cut}: {last}"
                );
                assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "{file} cut at {cut}");
            }
            let kept = served
                .iter()
                .filter(|entry| matches!(entry, LogEntry::Chunk(_)))
                .count();
            let cursor = store.writer_cursor(&key(), "w").await.unwrap();
            assert_eq!(cursor.last_writer_seq, kept as u64, "{file} cut at {cut}");
            let resend = (1..=12).map(item).collect();
            let outcome = store.append(&key(), "w", resend).await.unwrap();
            assert_eq!(outcome.stored, 12 - kept as u64, "{file} cut at {cut}");
            let (served, _) = read_all(&store, 1).await;
            for entry in served.iter().filter(|entry| entry.seq() <= 13) {
                assert_eq!(
                    Some(entry),
                    pristine_entries.get(&entry.seq()),
                    "{file} cut at {cut}: seq {} names another line",
                    entry.seq()
                );
            }
            let texts: Vec<&str> = served
                .iter()
                .filter_map(|entry| match entry {
                    LogEntry::Chunk(chunk) => Some(chunk.text.as_str()),
                    LogEntry::Lifecycle(_) => None,
                })
                .collect();
            let expected: Vec<String> = (1..=12).map(|n| format!("out line {n}\n")).collect();
            assert_eq!(
                texts, expected,
                "{file} cut at {cut}: each item once, in order"
            );
            cases += 1;
        }
    }
    assert!(cases > 100, "{cases} cases");
}

/// The bytes of the files `names` of the run directory `run_dir`.
fn read_files(run_dir: &Path, names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|name| fs::read(run_dir.join(name)).unwrap())
        .collect()
}

/// Where each commit starts in each channel file, from the journal.
fn commit_offsets(journal: &Path) -> Vec<[u64; 3]> {
    fs::read_to_string(journal)
        .unwrap()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let offsets = record["offsets"].as_array().unwrap();
            [0, 1, 2].map(|channel| offsets[channel].as_u64().unwrap())
        })
        .collect()
}

/// Copies a directory tree, but the store's own dot files.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `baa-logd verify` reads every commit back offline: a clean data
/// directory exits 0; one with an altered line prints the run and the
/// damaged range and exits 1, for all runs and for the run named.
#[test]
fn verify_reports_damaged_ranges_and_exits_1() {
    let dir = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(written_run());
    let verify = |target: Option<&str>| {
        let mut command = std::process::Command::new(crate::util::process::server_binary());
        command.arg("verify").arg("--data-dir").arg(dir.path());
        command.args(target);
        let output = command.output().expect("baa-logd verify runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, clean) = verify(None);
    assert_eq!(code, Some(0), "{clean}");
    assert!(
        clean.contains("t/r: 13 entries intact\n1 runs checked, 0 with damage"),
        "{clean}"
    );

    alter_line_5(dir.path());
    for target in [None, Some("t"), Some("t/r")] {
        let (code, report) = verify(target);
        assert_eq!(code, Some(1), "{target:?}: {report}");
        assert!(
            report.contains(
                "t/r: 9 entries intact; damaged or lost: 6-9\n1 runs checked, 1 with damage"
            ),
            "{target:?}: {report}"
        );
    }
}

/// The scrub finds a damaged commit on its own, at its pace, and counts it
/// in `baa_logd_scrub_damaged_commits_total`.
#[tokio::test]
async fn the_scrub_counts_damaged_commits() {
    let dir = written_run().await;
    alter_line_5(dir.path());

    let metrics = baa_logd::Metrics::new();
    let metrics_addr = crate::util::metrics::start_metrics(metrics.clone()).await;
    let config = baa_logd::ServerConfig {
        scrub: baa_logd::settings::Scrub {
            period: std::time::Duration::from_millis(100),
            read_rate: 1024 * 1024,
        },
        metrics: Some(metrics),
        ..baa_logd::ServerConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let scrape = crate::util::metrics::scrape(metrics_addr).await;
        if scrape.value("baa_logd_scrub_damaged_commits_total") >= 1.0 {
            assert!(scrape.value("baa_logd_scrub_checked_runs_total") >= 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scrub found nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

/// Journal records damaged before the journal's end (a flipped bit in
/// one, a zeroed 4 KiB block across two): the run opens, the commits of
/// the damaged records are reported as damaged and never served, the
/// intact commits around them are served, the channel files are not
/// touched, the journal keeps its length, the writer's cursor comes from
/// the last intact record, the run takes appends, and the same holds after
/// another restart.
#[tokio::test]
async fn damaged_records_inside_the_journal_cost_only_their_commits() {
    // The journal lines: run_prepared, then the commits 2–5, 6–9, 10–13.
    type Damage = fn(&mut Vec<u8>, &[usize]);
    let flip_second: Damage = |bytes, starts| bytes[starts[1] + 5] ^= 0x01;
    let zero_second_and_third: Damage = |bytes, starts| {
        let end = (starts[1] + 4096).min(starts[3] - 1);
        bytes[starts[1]..end].fill(0);
    };
    for (case, damage, lost) in [
        ("a flipped bit", flip_second, vec![(2, 5)]),
        ("a zeroed block", zero_second_and_third, vec![(2, 9)]),
    ] {
        let dir = written_run().await;
        let run_dir = dir.path().join("t/r");
        let journal = run_dir.join("journal.jsonl");
        let mut bytes = fs::read(&journal).unwrap();
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, byte)| **byte == b'\n')
                    .map(|(at, _)| at + 1),
            )
            .collect();
        damage(&mut bytes, &starts);
        fs::write(&journal, &bytes).unwrap();
        let logs = || read_files(&run_dir, &["worker.log", "stdout.log", "stderr.log"]);
        let before = logs();
        for restart in 0..2 {
            let store = open(dir.path());
            let (served, reported) = read_all(&store, 1).await;
            let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
            let lost_last = lost.last().unwrap().1;
            let expected: Vec<u64> = std::iter::once(1).chain(lost_last + 1..=13).collect();
            assert_eq!(seqs, expected, "{case}, restart {restart}");
            assert_eq!(reported, lost, "{case}, restart {restart}");
            assert!(before == logs(), "{case}: the channel files changed");
            assert_eq!(
                fs::metadata(&journal).unwrap().len(),
                bytes.len() as u64,
                "{case}: the journal changed length"
            );
            let cursor = store.writer_cursor(&key(), "w").await.unwrap();
            assert_eq!(cursor.last_writer_seq, 12, "{case}");
            if restart == 1 {
                let outcome = store.append(&key(), "w", vec![item(13)]).await.unwrap();
                assert_eq!(outcome.stored, 1, "{case}");
                let (served, _) = read_all(&store, 14).await;
                assert_eq!(served.iter().map(LogEntry::seq).collect::<Vec<_>>(), [14]);
            }
        }
    }
}

/// A journal zeroed whole (no record reads back): the run opens, every
/// entry in the channel files is served, and since no one can tell what
/// the writer had sent, its appends are refused with a clear error rather
/// than stored twice, also after another restart. A run that held only
/// its own first entry has no writer to lose and takes appends.
#[tokio::test]
async fn a_zeroed_journal_keeps_the_entries_and_refuses_writers() {
    let dir = written_run().await;
    let journal = dir.path().join("t/r/journal.jsonl");
    let len = fs::metadata(&journal).unwrap().len() as usize;
    fs::write(&journal, vec![0u8; len]).unwrap();
    for restart in 0..2 {
        let store = open(dir.path());
        let (served, damage) = read_all(&store, 1).await;
        let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
        assert_eq!(seqs, (1..=13).collect::<Vec<_>>(), "restart {restart}");
        assert!(damage.is_empty(), "{damage:?}");
        let refused = store.append(&key(), "w", vec![item(13)]).await;
        assert!(
            matches!(refused, Err(StoreError::WritersLost { .. })),
            "restart {restart}: {refused:?}"
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("takes no more appends"),
        );
    }

    let fresh = tempfile::tempdir().unwrap();
    let store = open(fresh.path());
    write_run_prepared_only(&store).await;
    drop(store);
    let journal = fresh.path().join("t/r/journal.jsonl");
    let len = fs::metadata(&journal).unwrap().len() as usize;
    fs::write(&journal, vec![0u8; len]).unwrap();
    let store = open(fresh.path());
    let outcome = store.append(&key(), "w", vec![item(1)]).await.unwrap();
    assert_eq!(outcome.stored, 1);
}

/// A run whose first records were written before checksums existed and
/// whose later ones carry them (a store upgraded under a run): the old
/// commits are read unchecked, from any `seq`, and the commits after them
/// are still checked, so an altered line there is reported, not served.
#[tokio::test]
async fn commits_after_records_without_checksums_are_still_checked() {
    let dir = written_run().await;
    let journal = dir.path().join("t/r/journal.jsonl");
    let lines: Vec<String> = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            if index < 2 {
                // run_prepared and the commit of seqs 2 to 5, as written
                // before checksums.
                for field in ["lens", "crc", "check"] {
                    record.as_object_mut().unwrap().remove(field);
                }
            }
            record.to_string()
        })
        .collect();
    fs::write(&journal, lines.join("\n") + "\n").unwrap();
    alter_line(dir.path(), 11);
    let store = open(dir.path());
    let (served, damage) = read_all(&store, 1).await;
    let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(damage, [(10, 13)]);
    let (served, _) = read_all(&store, 4).await;
    let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
    assert_eq!(seqs, (4..=9).collect::<Vec<_>>());
}

/// The last complete journal record altered (alone, or with a torn line
/// after it): its commit may have been served, so the run opens with the
/// commit's numbers, found in the channel files, reported as lost and not
/// given again; the writer re-sends its items once, under new numbers.
#[tokio::test]
async fn damaged_records_at_the_journal_end_keep_their_numbers() {
    for torn_after in [false, true] {
        let dir = written_run().await;
        let journal = dir.path().join("t/r/journal.jsonl");
        let mut bytes = fs::read(&journal).unwrap();
        let last_start = bytes[..bytes.len() - 1]
            .iter()
            .rposition(|byte| *byte == b'\n')
            .unwrap()
            + 1;
        bytes[last_start + 5] ^= 0x01;
        if torn_after {
            bytes.extend_from_slice(b"{\"firstSeq\":14,\"la");
        }
        fs::write(&journal, &bytes).unwrap();
        let store = open(dir.path());
        let (served, damage) = read_all(&store, 1).await;
        let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
        assert_eq!(
            seqs,
            (1..=9).collect::<Vec<_>>(),
            "torn after: {torn_after}"
        );
        assert_eq!(damage, [(10, 13)], "torn after: {torn_after}");
        let cursor = store.writer_cursor(&key(), "w").await.unwrap();
        assert_eq!(cursor.last_writer_seq, 8);
        let outcome = store
            .append(&key(), "w", (1..=12).map(item).collect())
            .await
            .unwrap();
        assert_eq!(outcome.stored, 4);
        let (served, _) = read_all(&store, 10).await;
        let seqs: Vec<u64> = served.iter().map(LogEntry::seq).collect();
        assert_eq!(seqs, [14, 15, 16, 17], "torn after: {torn_after}");
    }
}

/// Damage that recovery cannot bound refuses the run and changes nothing:
/// a lost journal with a channel file damaged before its end.
#[tokio::test]
async fn damage_recovery_cannot_bound_changes_nothing() {
    type Damage = fn(&Path);
    let lost_journal_and_zeroed_stdout: Damage = |run_dir| {
        let journal = run_dir.join("journal.jsonl");
        let len = fs::metadata(&journal).unwrap().len() as usize;
        fs::write(&journal, vec![0u8; len]).unwrap();
        let stdout = run_dir.join("stdout.log");
        let mut bytes = fs::read(&stdout).unwrap();
        bytes[10..30].fill(0);
        fs::write(&stdout, &bytes).unwrap();
    };
    for (case, damage) in [(
        "a lost journal and a zeroed stdout",
        lost_journal_and_zeroed_stdout,
    )] {
        let dir = written_run().await;
        let run_dir = dir.path().join("t/r");
        damage(&run_dir);
        let files = || {
            read_files(
                &run_dir,
                &["journal.jsonl", "worker.log", "stdout.log", "stderr.log"],
            )
        };
        let before = files();
        let store = open(dir.path());
        let refused = store.get_run(&key()).await;
        assert!(
            matches!(refused, Err(StoreError::Damaged { .. })),
            "{case}: {refused:?}"
        );
        assert!(before == files(), "{case}: recovery changed the files");
    }
}
