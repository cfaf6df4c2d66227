//! W9 browser page: the run page baa-logd serves, in a headless system
//! chromium driven by Playwright for Python.
//!
//! The browser side is `crates/bench/browser/page_figures.py`, run with the
//! Python of the browser tests' venv (`tests/browser/.venv`, made by
//! `scripts/browser-setup.sh`). It launches chromium, then answers one
//! JSON command a line on stdin with one JSON line on stdout (the script's
//! header lists the commands); [`PageDriver`] is this side of that
//! exchange. No venv, no chromium, or a script that cannot launch the
//! browser: the workload's row says "not available" and the rest of the
//! benchmark goes on.
//!
//! One baa-logd serves three phases:
//!
//! - **open**: a finished run of `lines` stdout lines of `line_bytes`
//!   bytes, one line an entry, written through the client crate's
//!   batching writer in large messages; then `navigations` fresh pages
//!   (new browser contexts) navigate to `/runs/bench/RUN`, each timed from
//!   the start of the navigation until the row of the run's last line is
//!   in the DOM and in the visible part of `#log`. The median is reported.
//! - **heap**: on the last of those pages, the mouse wheel over `#log`
//!   scrolls from the end towards the start, as far as `scroll_secs`
//!   allows; the JS heap after a garbage collection, before and after, the
//!   most DOM nodes under `#log` seen on the way, and how far it got.
//! - **latency**: a live run the page watches in follow mode, written by
//!   one writer at `rate` lines a second for `warmup_secs + secs`; each
//!   line carries its send time (wall clock, microseconds since the epoch,
//!   in `payload`'s line format). A MutationObserver in the page notes when
//!   each line's row first appears; a `FollowRun` of the client crate in
//!   this process, over the same lines, notes when each arrives. Both
//!   latencies go to HDR histograms, the warm-up lines left out.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use baa_logging_client::{
    Client, FollowEvent, FollowOptions, NewRun, RunKey, WriterOptions, pb::RunStatus,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{
    error::{BenchError, Context, Result},
    latency::Latencies,
    payload,
    procfs::PhaseMeter,
    progress::{self, Progress},
    report::{BrowserLiveRow, BrowserPageRow, BrowserScroll, mib},
    samples::Samples,
    systems::{
        Launcher, System, SystemKind,
        grpc::{GrpcSystem, StubsWriter},
    },
};

/// W9's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrowserParams {
    /// Lines in the finished run the page opens.
    pub(crate) lines: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Timed navigations to the finished run.
    pub(crate) navigations: usize,
    /// The most seconds the scroll from the end to the start may take.
    pub(crate) scroll_secs: f64,
    /// Lines per second written into the live run.
    pub(crate) rate: u64,
    /// Seconds of measured writing into the live run.
    pub(crate) secs: f64,
    /// Seconds of writing before, left out of the figures: the page's
    /// event stream and the follower settle.
    pub(crate) warmup_secs: f64,
    /// The Python with Playwright (the browser tests' venv).
    pub(crate) python: PathBuf,
    /// The chromium binary, if one was found.
    pub(crate) chromium: Option<PathBuf>,
    /// The script that drives the page.
    pub(crate) script: PathBuf,
}

/// The task every benchmark run belongs to (as `systems::grpc` names it).
const TASK: &str = "bench";
/// The finished run the page opens.
const BIG_RUN: &str = "w9-page";
/// The live run the page follows.
const LIVE_RUN: &str = "w9-live";
/// How often the live writer sends what is due, as W2's does.
const TICK: Duration = Duration::from_millis(1);
/// How long the page and the follower may take to show the last line
/// after it was sent.
const DRAIN: Duration = Duration::from_secs(20);
/// The most seconds one navigation may take to show the run's tail.
const OPEN_TIMEOUT_SECS: f64 = 120.0;
/// Bytes per append message of the seeding writer (the client caps it at
/// half the server's message limit).
const SEED_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// The browser tests' Python, from the repository this harness was built
/// in.
pub(crate) fn default_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/.venv/bin/python")
}

/// The script that drives the page.
pub(crate) fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/page_figures.py")
}

/// chromium as the browser tests find it: `$BAA_CHROMIUM`, else
/// `chromium`, looked up on `PATH` when it is a bare name.
pub(crate) fn find_chromium() -> Option<PathBuf> {
    let name = std::env::var_os("BAA_CHROMIUM").unwrap_or_else(|| "chromium".into());
    let name = PathBuf::from(name);
    if name.components().count() > 1 {
        return name.is_file().then_some(name);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&name))
        .find(|path| path.is_file())
}

/// Runs W9 on baa-logd.
pub(crate) async fn run(
    launcher: &Launcher,
    params: &BrowserParams,
) -> (Vec<BrowserPageRow>, Vec<BrowserLiveRow>) {
    progress::phase(&format!(
        "W9 browser page · a run of {} lines in chromium, then {} lines/s live",
        params.lines, params.rate
    ));
    if let Err(reason) = available(params) {
        return (vec![empty_page_row(params, reason)], Vec::new());
    }
    let system = match launcher.start(SystemKind::BaaLogd, 16).await {
        Ok(system) => system,
        Err(reason) => return (vec![empty_page_row(params, reason)], Vec::new()),
    };
    let System::Grpc(server) = &system else {
        unreachable!("baa-logd is a gRPC system")
    };
    let url = server.url();
    let rows = match PageDriver::start(params, &url).await {
        Err(Unavailable(reason)) => (vec![empty_page_row(params, reason)], Vec::new()),
        Ok(mut driver) => {
            let page = measure_page(&mut driver, &url, params)
                .await
                .unwrap_or_else(|err| failed_page_row(params, &driver, err));
            let live = match measure_live(&mut driver, server, params).await {
                Ok(rows) => rows,
                Err(err) => vec![BrowserLiveRow::empty(
                    "run page",
                    failed_note(&driver, &err),
                )],
            };
            driver.close().await;
            (vec![page], live)
        }
    };
    if let Err(err) = system.stop().await {
        eprintln!("  stopping baa-logd: {err}");
    }
    rows
}

/// Why W9 cannot run here, if it cannot: no Python, no chromium or no
/// script.
fn available(params: &BrowserParams) -> Result<(), String> {
    if !params.python.is_file() {
        return Err(format!(
            "not available: no Python at {} (run `bash scripts/browser-setup.sh`)",
            params.python.display()
        ));
    }
    if params.chromium.is_none() {
        return Err(
            "not available: no chromium on PATH (run `bash scripts/browser-setup.sh`)".to_owned(),
        );
    }
    if !params.script.is_file() {
        return Err(format!(
            "not available: no script at {}",
            params.script.display()
        ));
    }
    Ok(())
}

/// A page row with no figures.
fn empty_page_row(params: &BrowserParams, note: String) -> BrowserPageRow {
    BrowserPageRow {
        lines: params.lines,
        last_seq: 0,
        seed_secs: 0.0,
        browser: None,
        open_ms: Samples::default(),
        scroll: None,
        note: Some(note),
    }
}

/// A page row for a phase that failed, with the script's last words.
fn failed_page_row(params: &BrowserParams, driver: &PageDriver, err: BenchError) -> BrowserPageRow {
    BrowserPageRow {
        browser: Some(driver.browser.clone()),
        ..empty_page_row(params, failed_note(driver, &err))
    }
}

/// `failed: ERR`, with the end of the script's stderr when there is one.
fn failed_note(driver: &PageDriver, err: &BenchError) -> String {
    let stderr = driver.stderr_tail();
    if stderr.is_empty() {
        format!("failed: {err}")
    } else {
        format!("failed: {err} (script: {stderr})")
    }
}

// === open and heap ===

/// Seeds the finished run, times the navigations, scrolls and weighs.
async fn measure_page(
    driver: &mut PageDriver,
    url: &str,
    params: &BrowserParams,
) -> Result<BrowserPageRow> {
    let seed_start = Instant::now();
    let last_seq = seed(url, params).await?;
    let seed_secs = seed_start.elapsed().as_secs_f64();
    // The run holds its `run_prepared` event and then the lines, one an
    // entry: the first line is the entry after the event.
    let first_line = (last_seq + 1).saturating_sub(params.lines).max(1);
    progress::phase(&format!(
        "  {} navigations to the run, until line {last_seq} is in view",
        params.navigations
    ));
    let opened = driver
        .ask(
            json!({
                "cmd": "open",
                "path": format!("/runs/{TASK}/{BIG_RUN}"),
                "last_line": last_seq.to_string(),
                "navigations": params.navigations,
                "timeout_s": OPEN_TIMEOUT_SECS,
            }),
            Duration::from_secs_f64(OPEN_TIMEOUT_SECS * params.navigations.max(1) as f64 + 30.0),
        )
        .await?;
    let mut open_ms = Samples::default();
    for value in opened["open_ms"].as_array().into_iter().flatten() {
        if let Some(ms) = value.as_f64() {
            open_ms.push(ms);
        }
    }
    progress::phase(&format!(
        "  scrolling from the end to the start (at most {:.0} s)",
        params.scroll_secs
    ));
    let scrolled = driver
        .ask(
            json!({
                "cmd": "scroll",
                "first_line": first_line.to_string(),
                "timeout_s": params.scroll_secs,
            }),
            Duration::from_secs_f64(params.scroll_secs + 60.0),
        )
        .await?;
    let scroll = scroll_figures(&scrolled, first_line, last_seq);
    let errors = page_errors(&opened)
        .into_iter()
        .chain(page_errors(&scrolled))
        .collect::<Vec<_>>();
    let mut notes = Vec::new();
    if !scroll.reached_start {
        notes.push(format!(
            "the scroll reached line {} of {last_seq} in {:.0} s",
            scroll.lowest_line.as_deref().unwrap_or("—"),
            scroll.secs
        ));
    }
    if let Some(error) = errors.first() {
        notes.push(format!("the page logged: {error}"));
    }
    Ok(BrowserPageRow {
        lines: params.lines,
        last_seq,
        seed_secs,
        browser: Some(driver.browser.clone()),
        open_ms,
        scroll: Some(scroll),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// Writes the finished run through the client crate's batching writer,
/// one line an entry, and returns its last seq.
async fn seed(url: &str, params: &BrowserParams) -> Result<u64> {
    let client = Client::connect(url.to_owned())
        .await
        .context("cannot connect the client crate")?;
    let options = WriterOptions {
        writer_id: Some("w9-seed".to_owned()),
        batch_bytes: SEED_BATCH_BYTES,
        buffer_bytes: 8 * SEED_BATCH_BYTES,
        ..WriterOptions::default()
    };
    let writer = client
        .prepare_writer(NewRun::new(TASK, BIG_RUN).step("step", "bench"), options)
        .await
        .context("PrepareRun through the client crate")?;
    writer
        .set_status(RunStatus::Running)
        .await
        .context("marking the run running")?;
    let progress = Progress::start("  seeding".to_owned(), params.lines, "lines");
    let counter = progress.counter();
    let now = wall_micros();
    for index in 0..params.lines {
        writer
            .stdout(payload::line(params.line_bytes, now, index))
            .await
            .context("appending through the client crate")?;
        if index % 4096 == 0 {
            counter.store(index, Ordering::Relaxed);
        }
    }
    counter.store(params.lines, Ordering::Relaxed);
    let finished = writer
        .finish(RunStatus::Completed, Some(0), None)
        .await
        .context("finishing the run")?;
    drop(progress);
    let stored = finished.summary.stdout_chunk_count;
    if stored != params.lines {
        return Err(BenchError::Failed(format!(
            "the run holds {stored} stdout entries, not {}",
            params.lines
        )));
    }
    Ok(finished.summary.last_seq)
}

/// Reads the script's answer to `scroll`: the run's lines are the seqs
/// `first_seq..=last_seq`.
fn scroll_figures(answer: &Value, first_seq: u64, last_seq: u64) -> BrowserScroll {
    let heap = |key: &str| answer[key]["heap_used_bytes"].as_u64().map(mib);
    let lowest_seq = answer["lowest_seq"].as_u64();
    let lines = (last_seq + 1).saturating_sub(first_seq).max(1) as f64;
    BrowserScroll {
        reached_start: answer["reached_start"].as_bool().unwrap_or(false),
        lowest_line: answer["lowest_line"].as_str().map(str::to_owned),
        share: lowest_seq
            .map(|seq| ((last_seq + 1).saturating_sub(seq.max(first_seq)) as f64 / lines).min(1.0)),
        steps: answer["steps"].as_u64().unwrap_or(0),
        secs: answer["secs"].as_f64().unwrap_or(0.0),
        max_log_nodes: answer["max_log_nodes"].as_u64().unwrap_or(0),
        log_nodes: answer["at_start"]["log_nodes"].as_u64(),
        document_nodes: answer["at_start"]["document_nodes"].as_u64(),
        heap_open_mib: heap("at_open"),
        heap_end_mib: heap("at_start"),
    }
}

/// The console errors and uncaught errors an answer reports.
fn page_errors(answer: &Value) -> Vec<String> {
    answer["page_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error.as_str().map(str::to_owned))
        .collect()
}

// === latency ===

/// Follows a live run in the page and with the client crate, both timed.
async fn measure_live(
    driver: &mut PageDriver,
    server: &GrpcSystem,
    params: &BrowserParams,
) -> Result<Vec<BrowserLiveRow>> {
    let url = server.url();
    server
        .prepare_run(server.connect().await?, LIVE_RUN)
        .await?;
    let watched = driver
        .ask(
            json!({
                "cmd": "watch",
                "path": format!("/runs/{TASK}/{LIVE_RUN}"),
                "timeout_s": 30,
            }),
            Duration::from_secs(60),
        )
        .await?;
    let warmup = (params.rate as f64 * params.warmup_secs).round() as u64;
    let measured = (params.rate as f64 * params.secs).round() as u64;
    let total = warmup + measured;
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs_f64(params.warmup_secs + params.secs)
        + DRAIN;
    let client = Client::connect(url.clone())
        .await
        .context("cannot connect the client crate")?;
    let follow = client.follow(RunKey::new(TASK, LIVE_RUN), FollowOptions::default());
    let follower = tokio::spawn(follow_lines(follow, warmup, total, deadline));

    progress::phase(&format!(
        "  live: {total} lines at {} lines/s ({warmup} warm-up), the page and a gRPC follower",
        params.rate
    ));
    let meter = PhaseMeter::start(server.pid());
    let sent_per_sec = write_paced(server, params.rate, total, params.line_bytes).await?;
    let usage = meter.stop();
    let collected = driver
        .ask(
            json!({
                "cmd": "collect",
                "until_index": total.saturating_sub(1),
                "timeout_s": DRAIN.as_secs(),
            }),
            DRAIN + Duration::from_secs(30),
        )
        .await?;
    server.end_run(server.connect().await?, LIVE_RUN).await?;
    let grpc = follower.await.context("the follower task failed")?;

    let mut page = Latencies::new();
    let mut page_lines = 0;
    let mut shown = Vec::new();
    for seen in collected["seen"].as_array().into_iter().flatten() {
        let (Some(index), Some(sent_us), Some(seen_ms)) =
            (seen[0].as_u64(), seen[1].as_u64(), seen[2].as_f64())
        else {
            continue;
        };
        if index < warmup || index >= total {
            continue;
        }
        page.record(((seen_ms * 1000.0) as u64).saturating_sub(sent_us));
        page_lines += 1;
        shown.push(index);
    }
    let follow_note = if watched["follow"].as_bool() == Some(false) {
        Some("the page's follow box was off".to_owned())
    } else {
        None
    };
    let page_note = [
        follow_note,
        page_errors(&collected)
            .first()
            .map(|error| format!("the page logged: {error}")),
        (page_lines < measured).then(|| {
            format!(
                "{page_lines} of {measured} lines ever had a row in the DOM \
                 (at most {} in a row without one)",
                longest_gap(shown, warmup, total)
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let grpc_note = [
        grpc.error.clone(),
        (grpc.lines < measured).then(|| format!("{} of {measured} lines received", grpc.lines)),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let row =
        |who: &'static str, latencies: &Latencies, lines: u64, note: Vec<String>| BrowserLiveRow {
            follower: who,
            rate: params.rate,
            secs: params.secs,
            sent_per_sec,
            lines: measured,
            received: lines,
            latency: (lines > 0).then(|| latencies.summary()),
            server_cpu_secs: Some(usage.cpu_secs),
            log_nodes: (who == "run page")
                .then(|| collected["log_nodes"].as_u64())
                .flatten(),
            note: (!note.is_empty()).then(|| note.join("; ")),
        };
    Ok(vec![
        row("run page", &page, page_lines, page_note),
        row(
            "gRPC follow (client crate)",
            &grpc.latencies,
            grpc.lines,
            grpc_note,
        ),
    ])
}

/// The most consecutive indices in `warmup..total` missing from `shown`:
/// lines skipped together, as a page that stalled for a moment skips them.
fn longest_gap(mut shown: Vec<u64>, warmup: u64, total: u64) -> u64 {
    shown.sort_unstable();
    shown.dedup();
    let mut longest = 0;
    let mut next = warmup;
    for index in shown.into_iter().chain(std::iter::once(total)) {
        longest = longest.max(index.saturating_sub(next));
        next = index + 1;
    }
    longest
}

/// Writes `total` lines at `rate` lines a second into the live run, one
/// append message per tick with what is due, each line stamped with the
/// wall clock as it is sent. Returns the rate held.
async fn write_paced(server: &GrpcSystem, rate: u64, total: u64, line_bytes: usize) -> Result<f64> {
    let mut writer = StubsWriter::open(server.connect().await?, LIVE_RUN, "w9-writer").await?;
    let progress = Progress::start("  live".to_owned(), total, "lines sent");
    let counter = progress.counter();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while sent < total {
        ticker.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if due > sent {
            let now = wall_micros();
            let lines = (sent..due)
                .map(|index| payload::line(line_bytes, now, index))
                .collect();
            writer.send(lines).await?;
            counter.store(due, Ordering::Relaxed);
            sent = due;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let acked = writer.finish().await?;
    if acked != total {
        return Err(BenchError::Failed(format!(
            "{acked} of {total} live lines acknowledged"
        )));
    }
    Ok(total as f64 / secs)
}

/// What the gRPC follower saw.
#[derive(Debug)]
struct FollowedLines {
    /// Append→receive latencies of the measured lines.
    latencies: Latencies,
    /// Measured lines received.
    lines: u64,
    /// Why it stopped early, if it did.
    error: Option<String>,
}

/// Reads the follow until the line with index `total - 1` arrived, the
/// stream ended, or `deadline`; records the latency of every line from
/// index `warmup` on.
async fn follow_lines(
    mut follow: baa_logging_client::Follow,
    warmup: u64,
    total: u64,
    deadline: tokio::time::Instant,
) -> FollowedLines {
    let mut followed = FollowedLines {
        latencies: Latencies::new(),
        lines: 0,
        error: None,
    };
    loop {
        let event = match tokio::time::timeout_at(deadline, follow.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(err))) => {
                followed.error = Some(format!("the follow failed: {err}"));
                break;
            }
            Ok(Some(Ok(event))) => event,
        };
        let FollowEvent::Stdout(chunk) = event else {
            continue;
        };
        let now = wall_micros();
        let Some((sent_at, index)) = payload::parse(chunk.text.as_bytes()) else {
            continue;
        };
        if index >= warmup && index < total {
            followed.latencies.record(now.saturating_sub(sent_at));
            followed.lines += 1;
        }
        if index + 1 >= total {
            break;
        }
    }
    followed
}

/// Microseconds since the Unix epoch: the page compares it with its own
/// wall clock, so the lines of this workload carry it instead of the
/// harness's monotonic clock.
fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

// === impl PageDriver ===

/// Why the page cannot be driven here: the script could not start the
/// browser.
#[derive(Debug)]
struct Unavailable(String);

/// The script, running: commands go to its stdin, answers come from its
/// stdout, one JSON line each.
#[derive(Debug)]
struct PageDriver {
    /// The Python process (killed on drop).
    child: Child,
    /// Its stdin.
    commands: ChildStdin,
    /// Its stdout, a line at a time.
    answers: Lines<BufReader<ChildStdout>>,
    /// Its stderr, kept in a file for a failure's note.
    stderr: tempfile::NamedTempFile,
    /// chromium's version, as Playwright reports it.
    browser: String,
}

impl PageDriver {
    /// Starts the script against the server at `base_url` and waits
    /// (bounded) for the browser to be ready.
    async fn start(params: &BrowserParams, base_url: &str) -> Result<Self, Unavailable> {
        let chromium = params
            .chromium
            .as_deref()
            .ok_or_else(|| Unavailable("not available: no chromium".to_owned()))?;
        let stderr = tempfile::NamedTempFile::new()
            .map_err(|err| Unavailable(format!("not available: no temporary file: {err}")))?;
        let stderr_file = stderr
            .reopen()
            .map_err(|err| Unavailable(format!("not available: {err}")))?;
        let mut child = Command::new(&params.python)
            .arg(&params.script)
            .arg("--base-url")
            .arg(base_url)
            .arg("--chromium")
            .arg(chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                Unavailable(format!(
                    "not available: cannot run {}: {err}",
                    params.python.display()
                ))
            })?;
        let commands = child.stdin.take().expect("stdin is piped");
        let answers = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut driver = Self {
            child,
            commands,
            answers,
            stderr,
            browser: String::new(),
        };
        let ready = match driver.read(Duration::from_secs(60)).await {
            Ok(ready) => ready,
            Err(err) => {
                let tail = driver.stderr_tail();
                return Err(Unavailable(format!("not available: {err} {tail}")));
            }
        };
        if let Some(error) = ready["error"].as_str() {
            return Err(Unavailable(format!("not available: {error}")));
        }
        driver.browser = ready["browser"].as_str().unwrap_or("chromium").to_owned();
        progress::phase(&format!("  chromium {}", driver.browser));
        Ok(driver)
    }

    /// Sends one command and waits up to `timeout` for its answer.
    async fn ask(&mut self, command: Value, timeout: Duration) -> Result<Value> {
        let mut line = command.to_string();
        line.push('\n');
        self.commands
            .write_all(line.as_bytes())
            .await
            .map_err(|err| BenchError::io("cannot write to the page script", err))?;
        self.commands
            .flush()
            .await
            .map_err(|err| BenchError::io("cannot write to the page script", err))?;
        let answer = self.read(timeout).await?;
        if answer["ok"].as_bool() == Some(true) {
            Ok(answer)
        } else {
            Err(BenchError::Failed(format!(
                "{}: {}",
                command["cmd"].as_str().unwrap_or("command"),
                answer["error"].as_str().unwrap_or("no answer")
            )))
        }
    }

    /// Reads one JSON line, waiting up to `timeout`.
    async fn read(&mut self, timeout: Duration) -> Result<Value> {
        let line = tokio::time::timeout(timeout, self.answers.next_line())
            .await
            .map_err(|_| {
                BenchError::Failed(format!("the page script did not answer within {timeout:?}"))
            })?
            .map_err(|err| BenchError::io("cannot read the page script's answer", err))?
            .ok_or_else(|| BenchError::Failed("the page script exited".to_owned()))?;
        serde_json::from_str(&line).context(format!("the page script answered {line:?}"))
    }

    /// The last lines of the script's stderr, on one line.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    }

    /// Closes the script's stdin, so that it closes the browser and exits;
    /// kills it if it does not within a few seconds.
    async fn close(mut self) {
        drop(self.commands);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share scrolled through is the lines from the one reached to the
    /// run's last over all its lines, and whole once the first line (or the
    /// event before it) is reached.
    #[test]
    fn scroll_share_counts_from_the_end() {
        let answer = |lowest: u64, reached: bool| {
            json!({
                "reached_start": reached,
                "lowest_line": lowest.to_string(),
                "lowest_seq": lowest,
                "steps": 3,
                "secs": 1.5,
                "max_log_nodes": 500,
                "at_open": {"heap_used_bytes": 2 * 1024 * 1024},
                "at_start": {"heap_used_bytes": 4 * 1024 * 1024, "log_nodes": 400},
            })
        };
        let half = scroll_figures(&answer(502, false), 2, 1001);
        assert_eq!(half.share, Some(0.5));
        assert_eq!(half.heap_open_mib, Some(2.0));
        assert_eq!(half.heap_end_mib, Some(4.0));
        assert_eq!(half.log_nodes, Some(400));
        let whole = scroll_figures(&answer(1, true), 2, 1001);
        assert_eq!(whole.share, Some(1.0));
        assert!(whole.reached_start);
    }

    /// The longest gap counts missing lines in the measured range only,
    /// at its start and end too.
    #[test]
    fn longest_gap_counts_consecutive_missing_lines() {
        assert_eq!(longest_gap(vec![10, 11, 12, 13], 10, 14), 0);
        assert_eq!(longest_gap(vec![13, 10, 11], 10, 14), 1);
        assert_eq!(longest_gap(vec![10, 14, 15], 10, 16), 3);
        assert_eq!(longest_gap(vec![12], 10, 13), 2);
        assert_eq!(longest_gap(Vec::new(), 10, 13), 3);
    }
}
