//! W8 exec overhead: what `baa-log exec` adds to a command that prints as
//! fast as it can.
//!
//! The command is this binary's hidden `print-lines` mode (see
//! `print_lines`): `lines` lines of `line_bytes` bytes in writes of about
//! 64 KiB, and, unless `line_writes` is 0, `line_writes` lines with one
//! write each. Each is timed, from the spawn to the exit and the end of
//! its output, four ways:
//!
//! - on a pipe, bare: the command alone, its stdout drained by the
//!   harness;
//! - on a pipe, under `baa-log exec --task bench-w8 -- COMMAND` against a
//!   baa-logd the harness started, exec's stdout drained by the harness;
//! - on a terminal, bare: stdin, stdout and stderr on a pseudo-terminal
//!   the harness opened, its master drained by the harness in a thread;
//! - on a terminal, under `baa-log exec` in its default mode, so that a
//!   build of exec that behaves differently on a terminal is measured as
//!   it behaves there.
//!
//! A round runs each shape bare and under exec on the pipe, then on the
//! terminal, the bare run first in even rounds and last in odd ones, so
//! that a machine that speeds up or slows down over a round favours
//! neither. Figures are medians over the rounds; the ratio is the median
//! of each round's exec ÷ bare, two runs back to back, which other load
//! on the machine moves less than the ratio of two medians (as W7 does).
//!
//! exec exits once the server has stored everything and the run's final
//! state, so its time is also the time until the run holds everything.
//! It is therefore two things: how much exec slows the command itself,
//! and how long exec takes before the command starts and after it ended.
//! To tell them apart the command writes its own start and end on the
//! system's monotonic clock to a file of a temporary directory, a fresh
//! one for every run, bare or under exec (`print_lines::TIMING_ENV`,
//! which exec passes on with the rest of its environment). The command's
//! own time is then compared bare and under exec, paired as the totals
//! are, and under exec the time from the spawn to the command's start
//! (exec's start) and from the command's end to exec's exit (the
//! delivery) is kept.
//! After every exec, untimed, `check` makes sure of it: the new run ended
//! `completed` and its stdout holds every line. What the harness drained
//! is checked too: every line, on the pipe byte for byte.
//!
//! One baa-logd, over a fresh data directory, serves every round.

mod check;
mod spawn;

use std::{
    collections::HashSet,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;
use tonic::transport::Channel;

use self::spawn::Finished;
pub(crate) use self::spawn::Output;
use crate::{
    error::{BenchError, Context, Result},
    print_lines::{MIN_LINE_BYTES, TIMING_ENV},
    process::{Programs, find_cli},
    procfs, progress,
    report::ExecOverheadRow,
    samples::Samples,
    systems::grpc::{GrpcSystem, connect},
};

/// W8's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExecOverheadParams {
    /// Lines the command prints in writes of about 64 KiB.
    pub(crate) lines: u64,
    /// Lines the command prints with one write each; 0 for none.
    pub(crate) line_writes: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Rounds, each every shape bare and under exec on both outputs.
    pub(crate) rounds: usize,
}

/// How the command writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Blocks of whole lines of about 64 KiB, one write each.
    Large,
    /// One write per line.
    PerLine,
}

impl Writes {
    /// The name in the report.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Large => "64 KiB writes",
            Self::PerLine => "a write per line",
        }
    }
}

/// One shape of the command: how it writes and how many lines.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// How it writes.
    writes: Writes,
    /// Lines it prints.
    lines: u64,
}

/// The programs and the server of the rounds.
#[derive(Debug)]
struct Setup<'a> {
    /// This binary, whose `print-lines` mode is the command.
    bench: PathBuf,
    /// `baa-log`.
    baa_log: PathBuf,
    /// The server's address, for `baa-log --server`.
    url: String,
    /// The server's pid, for its CPU time.
    server_pid: u32,
    /// A connection to it, for the checks.
    channel: Channel,
    /// W8's parameters.
    params: &'a ExecOverheadParams,
    /// Where the command writes its own times, a file per run.
    timings: tempfile::TempDir,
    /// The number of the next run's file in `timings`.
    next_timing: AtomicU64,
}

/// One run of the command, bare or under exec, as the harness saw it and
/// as the command saw itself.
#[derive(Debug)]
struct Timed {
    /// The harness's view: spawn to exit and end of output.
    finished: Finished,
    /// The monotonic clock as the command started writing, seconds.
    command_start: f64,
    /// The monotonic clock after the command's last write, seconds.
    command_end: f64,
}

impl Timed {
    /// The command's own time, first write to last, seconds.
    fn command_secs(&self) -> f64 {
        self.command_end - self.command_start
    }
}

/// Runs W8 against a baa-logd of its own.
pub(crate) async fn run(
    programs: &Programs,
    cli_bin: Option<PathBuf>,
    params: &ExecOverheadParams,
) -> Vec<ExecOverheadRow> {
    progress::phase(&format!(
        "W8 exec overhead · {} lines in 64 KiB writes, {} lines a write each, {} bytes a line, {} rounds",
        params.lines, params.line_writes, params.line_bytes, params.rounds
    ));
    let shapes: Vec<Shape> = [
        Shape {
            writes: Writes::Large,
            lines: params.lines,
        },
        Shape {
            writes: Writes::PerLine,
            lines: params.line_writes,
        },
    ]
    .into_iter()
    .filter(|shape| shape.lines > 0)
    .collect();
    let mut rows: Vec<ExecOverheadRow> = shapes
        .iter()
        .flat_map(|shape| {
            [Output::Pipe, Output::Terminal].map(|output| blank_row(*shape, output, params))
        })
        .collect();
    if let Err(err) = measure(programs, cli_bin, params, &shapes, &mut rows).await {
        for row in &mut rows {
            row.note = Some(format!("failed: {err}"));
            row.wrong_answer = matches!(err, BenchError::WrongAnswer(_)).then(|| err.to_string());
        }
    }
    for row in &mut rows {
        row.ratio = row.paired_ratios.median();
        row.command_ratio = row.paired_command_ratios.median();
    }
    rows
}

/// A row of `shape` on `output`, before any round.
fn blank_row(shape: Shape, output: Output, params: &ExecOverheadParams) -> ExecOverheadRow {
    ExecOverheadRow {
        output: output.label(),
        writes: shape.writes.label(),
        lines: shape.lines,
        line_bytes: params.line_bytes,
        rounds: params.rounds,
        bare_secs: Samples::default(),
        exec_secs: Samples::default(),
        bare_cpu_secs: Samples::default(),
        exec_cpu_secs: Samples::default(),
        server_cpu_secs: Samples::default(),
        paired_ratios: Samples::default(),
        paired_added_ms: Samples::default(),
        ratio: None,
        bare_command_secs: Samples::default(),
        exec_command_secs: Samples::default(),
        paired_command_ratios: Samples::default(),
        command_ratio: None,
        exec_start_ms: Samples::default(),
        delivery_ms: Samples::default(),
        runs_checked: 0,
        note: None,
        wrong_answer: None,
    }
}

/// Starts the server and runs the rounds, filling `rows` (in the order
/// of `shapes`, pipe then terminal) as they go.
async fn measure(
    programs: &Programs,
    cli_bin: Option<PathBuf>,
    params: &ExecOverheadParams,
    shapes: &[Shape],
    rows: &mut [ExecOverheadRow],
) -> Result<()> {
    if params.line_bytes < MIN_LINE_BYTES {
        return Err(BenchError::Failed(format!(
            "--w8-line-bytes must be at least {MIN_LINE_BYTES}"
        )));
    }
    let baa_log = tokio::task::spawn_blocking(move || find_cli(cli_bin))
        .await
        .map_err(|err| BenchError::failed("finding baa-log failed", err))??;
    let server = GrpcSystem::start_baa_logd(&programs.baa_logd, &[]).await?;
    let measured = async {
        let setup = Setup {
            bench: programs.bench.clone(),
            baa_log,
            url: server.url(),
            server_pid: server.pid(),
            channel: connect(&server.url()).await?,
            params,
            timings: tempfile::tempdir().context("cannot create a temporary directory")?,
            next_timing: AtomicU64::new(0),
        };
        let mut seen = check::run_ids(&setup.channel).await?;
        for round in 0..params.rounds {
            let bare_first = round % 2 == 0;
            for (shape, pair) in shapes.iter().zip(rows.chunks_mut(2)) {
                for (output, row) in [Output::Pipe, Output::Terminal].into_iter().zip(pair) {
                    progress::phase(&format!(
                        "  round {}/{}: {} lines, {}, on a {}",
                        round + 1,
                        params.rounds,
                        shape.lines,
                        shape.writes.label(),
                        output.label()
                    ));
                    let (mut bare, mut exec) = (None, None);
                    for under_exec in [!bare_first, bare_first] {
                        if under_exec {
                            let server_before = server_cpu(setup.server_pid)?;
                            let timed = setup.exec(*shape, output, &mut seen).await?;
                            row.server_cpu_secs
                                .push(server_cpu(setup.server_pid)? - server_before);
                            row.exec_cpu_secs.push(timed.finished.cpu_secs);
                            row.exec_secs.push(timed.finished.secs);
                            row.exec_command_secs.push(timed.command_secs());
                            row.exec_start_ms
                                .push((timed.command_start - timed.finished.spawned_at) * 1000.0);
                            row.delivery_ms
                                .push((timed.finished.ended_at - timed.command_end) * 1000.0);
                            row.runs_checked += 1;
                            exec = Some(timed);
                        } else {
                            let timed = setup.bare(*shape, output).await?;
                            row.bare_cpu_secs.push(timed.finished.cpu_secs);
                            row.bare_secs.push(timed.finished.secs);
                            row.bare_command_secs.push(timed.command_secs());
                            bare = Some(timed);
                        }
                    }
                    let (bare, exec) = (bare.expect("a bare run"), exec.expect("an exec run"));
                    row.paired_ratios
                        .push(exec.finished.secs / bare.finished.secs);
                    row.paired_added_ms
                        .push((exec.finished.secs - bare.finished.secs) * 1000.0);
                    row.paired_command_ratios
                        .push(exec.command_secs() / bare.command_secs());
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(err) = server.stop().await {
        eprintln!("  stopping baa-logd: {err}");
    }
    measured
}

/// The CPU seconds the server has used so far.
fn server_cpu(pid: u32) -> Result<f64> {
    procfs::read(pid)
        .map(|reading| reading.cpu_secs)
        .ok_or_else(|| BenchError::Failed(format!("cannot read /proc/{pid}: baa-logd is gone")))
}

impl Setup<'_> {
    /// The command's words: this binary in its `print-lines` mode.
    fn command(&self, shape: Shape) -> Vec<OsString> {
        let mut words: Vec<OsString> = vec![
            self.bench.clone().into(),
            "print-lines".into(),
            "--lines".into(),
            shape.lines.to_string().into(),
            "--line-bytes".into(),
            self.params.line_bytes.to_string().into(),
        ];
        if shape.writes == Writes::PerLine {
            words.push("--write-per-line".into());
        }
        words
    }

    /// A fresh file for the command's own times, and the variable that
    /// names it.
    fn timing_file(&self) -> (PathBuf, Vec<(OsString, OsString)>) {
        let number = self.next_timing.fetch_add(1, Ordering::Relaxed);
        let path = self.timings.path().join(format!("run-{number}"));
        let envs = vec![(TIMING_ENV.into(), path.clone().into())];
        (path, envs)
    }

    /// Runs the command alone on `output`; checks that every line came.
    async fn bare(&self, shape: Shape, output: Output) -> Result<Timed> {
        let mut words = self.command(shape);
        let program = PathBuf::from(words.remove(0));
        let (timing, envs) = self.timing_file();
        let finished = spawn::timed(program, words, envs, output).await?;
        if !finished.status.success() {
            return Err(BenchError::Failed(format!(
                "print-lines {}: {}",
                finished.status,
                finished.stderr.trim()
            )));
        }
        let bytes = shape.lines * self.params.line_bytes as u64;
        let drained = finished.drained;
        if drained.lines != shape.lines || drained.bytes != bytes {
            return Err(BenchError::Failed(format!(
                "the harness read {} lines and {} bytes of print-lines on a {}, not {} and {bytes}",
                drained.lines,
                drained.bytes,
                output.label(),
                shape.lines
            )));
        }
        timed(finished, &timing)
    }

    /// Runs the command under `baa-log exec` on `output`; checks the run
    /// it wrote (adding it to `seen`) and what the harness read.
    async fn exec(
        &self,
        shape: Shape,
        output: Output,
        seen: &mut HashSet<String>,
    ) -> Result<Timed> {
        let mut args: Vec<OsString> = vec![
            "--server".into(),
            self.url.clone().into(),
            "exec".into(),
            "--task".into(),
            check::TASK.into(),
            "--".into(),
        ];
        args.extend(self.command(shape));
        let (timing, envs) = self.timing_file();
        let finished = spawn::timed(self.baa_log.clone(), args, envs, output).await?;
        if !finished.status.success() {
            return Err(BenchError::Failed(format!(
                "baa-log exec {}: {}",
                finished.status,
                finished.stderr.trim()
            )));
        }
        check::new_run(&self.channel, seen, shape.lines, self.params.line_bytes).await?;
        // On a pipe exec's stdout is the command's alone; on a terminal
        // exec's own lines (the run it writes to) come too.
        let drained = finished.drained;
        let short = match output {
            Output::Pipe => {
                drained.lines != shape.lines
                    || drained.bytes != shape.lines * self.params.line_bytes as u64
            }
            Output::Terminal => drained.lines < shape.lines,
        };
        if short {
            return Err(BenchError::WrongAnswer(format!(
                "baa-log exec on a {} passed on {} lines and {} bytes of {} lines of {} bytes",
                output.label(),
                drained.lines,
                drained.bytes,
                shape.lines,
                self.params.line_bytes
            )));
        }
        timed(finished, &timing)
    }
}

/// `finished` with the command's own times, read from `timing`, where it
/// wrote them as it exited. A file missing after a run that succeeded
/// means the command never saw the variable: under exec, that exec did
/// not pass its environment on.
fn timed(finished: Finished, timing: &Path) -> Result<Timed> {
    let text = std::fs::read_to_string(timing).map_err(|err| {
        BenchError::io(
            format!("print-lines left no times in {}", timing.display()),
            err,
        )
    })?;
    let times: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|err| {
            BenchError::failed(
                format!("cannot read the times in {}", timing.display()),
                err,
            )
        })?;
    let [command_start, command_end] = times[..] else {
        return Err(BenchError::Failed(format!(
            "{} holds {} times, not 2",
            timing.display(),
            times.len()
        )));
    };
    Ok(Timed {
        finished,
        command_start,
        command_end,
    })
}
