//! A seeded model test of the journal and recovery: random appends,
//! crash reopens, cuts and bit flips, checked after every round.

use std::fs;

use baa_logging_store::{
    LocalStore, RunStore,
    model::{AppendItem, AppendPayload, LogEntry},
};

use super::{item, key, open, read_all, write_run};

/// Random rounds against a model, seeded and bounded: two writers append
/// from their cursors, the store is closed and reopened as after a crash,
/// a channel file is cut short near its end (a power loss), or a bit is
/// flipped for one read. After every round: no altered entry is served,
/// the served entries and the reported ranges cover every sequence number
/// once, each writer's entries are its items in order, each once, and
/// they are exactly the items its cursor says the run holds.
#[tokio::test]
async fn random_crashes_cuts_and_flips_against_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Some(open(dir.path()));
    write_run(store.as_ref().unwrap()).await;
    let run_dir = dir.path().join("t/r");
    // What each writer sent and had acknowledged: items 1..=sent.
    let mut sent = [12u64, 0];
    let writers = ["w", "v"];
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("BAA_MODEL_ROUNDS", 200) as usize;
    let mut noise = env("BAA_MODEL_SEED", 0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |bound: u64| {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        noise % bound
    };
    for round in 0..rounds {
        let live = store.as_ref().unwrap();
        match next(6) {
            0..=2 => {
                let writer = next(2) as usize;
                let cursor = live.writer_cursor(&key(), writers[writer]).await.unwrap();
                let to = sent[writer].max(cursor.last_writer_seq) + 1 + next(6);
                let items = (cursor.last_writer_seq + 1..=to)
                    .map(|n| writer_item(writers[writer], n))
                    .collect();
                live.append(&key(), writers[writer], items).await.unwrap();
                sent[writer] = to;
            }
            3 | 4 => {
                // Closed as a crash would leave it: nothing flushed.
                drop(store.take());
                if next(2) == 0 {
                    let file = run_dir.join(["stdout.log", "stderr.log"][next(2) as usize]);
                    let len = fs::metadata(&file).unwrap().len();
                    let cut = len.saturating_sub(next(400));
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .unwrap()
                        .set_len(cut)
                        .unwrap();
                }
                store = Some(open(dir.path()));
            }
            _ => {
                let file =
                    run_dir.join(["worker.log", "stdout.log", "stderr.log"][next(3) as usize]);
                let original = fs::read(&file).unwrap();
                if !original.is_empty() {
                    let mut flipped = original.clone();
                    let at = next(original.len() as u64) as usize;
                    flipped[at] ^= 1 << next(8);
                    fs::write(&file, &flipped).unwrap();
                    check_against_model(live, &writers, round, false).await;
                    fs::write(&file, &original).unwrap();
                }
            }
        }
        check_against_model(store.as_ref().unwrap(), &writers, round, true).await;
    }
    // Every writer re-sends from its cursor: then the run holds all it sent.
    let live = store.as_ref().unwrap();
    for (writer, id) in writers.iter().enumerate() {
        let cursor = live.writer_cursor(&key(), id).await.unwrap();
        let items = (cursor.last_writer_seq + 1..=sent[writer])
            .map(|n| writer_item(id, n))
            .collect::<Vec<_>>();
        if !items.is_empty() {
            live.append(&key(), id, items).await.unwrap();
        }
        let held = live
            .writer_cursor(&key(), id)
            .await
            .unwrap()
            .last_writer_seq;
        assert_eq!(held, sent[writer], "{id} holds all it sent");
    }
    check_against_model(live, &writers, rounds, true).await;
}

/// Item `n` of writer `id`: `{id} {n}` (the first writer's are the
/// `out line` items of [`write_run`], which it wrote first).
fn writer_item(id: &str, n: u64) -> AppendItem {
    let mut item = item(n);
    if id != "w" {
        if let AppendPayload::Chunk(_, chunk) = &mut item.payload {
            chunk.text = format!("{id} {n}\n");
        }
    }
    item
}

/// The invariants of [`random_crashes_cuts_and_flips_against_a_model`];
/// `intact` when no byte is flipped, so that each writer's items must all
/// be there (a lost range only ever holds items its cursor re-sends).
async fn check_against_model(store: &LocalStore, writers: &[&str], round: usize, intact: bool) {
    let (served, damage) = read_all(store, 1).await;
    let last_seq = store.get_run(&key()).await.unwrap().summary.last_seq;
    let mut covered: Vec<u64> = served.iter().map(LogEntry::seq).collect();
    for (first, last) in &damage {
        covered.extend(*first..=*last);
    }
    covered.sort_unstable();
    assert_eq!(
        covered,
        (1..=last_seq).collect::<Vec<_>>(),
        "round {round}: {damage:?}"
    );
    for id in writers {
        let expected_text = |n: u64| match *id {
            "w" => format!("out line {n}\n"),
            other => format!("{other} {n}\n"),
        };
        let mine: Vec<u64> = served
            .iter()
            .filter_map(|entry| match entry {
                LogEntry::Chunk(chunk) => {
                    let n = chunk
                        .text
                        .trim_end()
                        .rsplit(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()?;
                    (chunk.text == expected_text(n)).then_some(n)
                }
                LogEntry::Lifecycle(_) => None,
            })
            .collect();
        let chunks_of_mine = served
            .iter()
            .filter(|entry| match entry {
                LogEntry::Chunk(chunk) => match *id {
                    "w" => chunk.text.starts_with("out line "),
                    other => chunk.text.starts_with(&format!("{other} ")),
                },
                LogEntry::Lifecycle(_) => false,
            })
            .count();
        assert_eq!(
            mine.len(),
            chunks_of_mine,
            "round {round}: an altered entry of {id} was served"
        );
        if intact {
            let held = store
                .writer_cursor(&key(), id)
                .await
                .unwrap()
                .last_writer_seq;
            assert_eq!(
                mine,
                (1..=held).collect::<Vec<_>>(),
                "round {round}: {id}'s items"
            );
        } else {
            assert!(
                mine.windows(2).all(|pair| pair[0] < pair[1]),
                "round {round}: {id} order"
            );
        }
    }
}
