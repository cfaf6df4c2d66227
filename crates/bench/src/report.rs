//! The results of a run: one row type per workload, the ratios of baa-logd
//! to every other system, the targets, and their rendering as a
//! Markdown report (stdout) and a JSON file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{latency::LatencySummary, samples::Samples, systems::SystemKind};

/// Bytes in a MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Turns a byte count into MiB.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// A whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The command line, as given.
    pub(crate) command: String,
    /// What it ran on.
    pub(crate) machine: Machine,
    /// Every workload's parameters, as parsed.
    pub(crate) parameters: serde_json::Value,
    /// W1.
    pub(crate) w1: Vec<ThroughputRow>,
    /// W2.
    pub(crate) w2: Vec<FanOutRow>,
    /// W3.
    pub(crate) w3: Vec<ManyRunsRow>,
    /// W4.
    pub(crate) w4: Vec<RestartRow>,
    /// W5.
    pub(crate) w5: Vec<SlowFollowersRow>,
    /// W6.
    pub(crate) w6: Vec<TailRow>,
    /// W7 (a): a search against grep.
    pub(crate) w7_scan: Vec<SearchScanRow>,
    /// W7 (b): W1 without and with a search.
    pub(crate) w7_writes: Vec<SearchLoadRow>,
    /// W8: a command bare and under `baa-log exec`.
    pub(crate) w8: Vec<ExecOverheadRow>,
    /// W9 (a, b): the run page opening a large run, scrolled through.
    pub(crate) w9_page: Vec<BrowserPageRow>,
    /// W9 (c): a live run on the page and over gRPC.
    pub(crate) w9_live: Vec<BrowserLiveRow>,
    /// W10: a large artifact up and down, against dd.
    pub(crate) w10: Vec<ObjectsRow>,
    /// baa-logd divided by every other system, per workload.
    pub(crate) ratios: Vec<Ratio>,
    /// The targets and whether this run met them.
    pub(crate) targets: Vec<TargetCheck>,
}

/// The machine, as the kernel describes it.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// The CPU model.
    pub(crate) cpu: String,
    /// Logical CPUs the harness may use.
    pub(crate) cpus: usize,
    /// Memory, in MiB.
    pub(crate) memory_mib: u64,
    /// The kernel release.
    pub(crate) kernel: String,
}

impl Machine {
    /// Reads `/proc`.
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            / 1024;
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// W1: one system's throughput in one variant.
#[derive(Debug, Serialize)]
pub(crate) struct ThroughputRow {
    /// `own runs` or `shared run`.
    pub(crate) variant: &'static str,
    /// The system.
    pub(crate) system: SystemKind,
    /// Lines acknowledged.
    pub(crate) entries: u64,
    /// Wall time from the first send to the last acknowledgement.
    pub(crate) secs: f64,
    /// Lines per second.
    pub(crate) entries_per_sec: f64,
    /// Line bytes per second, in MB (10^6).
    pub(crate) mb_per_sec: f64,
    /// Server CPU seconds per million lines.
    pub(crate) cpu_secs_per_million: Option<f64>,
    /// The server's peak RSS over the phase, MiB.
    pub(crate) peak_rss_mib: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W2: one system's fan-out latency with some number of followers.
#[derive(Debug, Serialize)]
pub(crate) struct FanOutRow {
    /// Followers of the one run.
    pub(crate) followers: usize,
    /// The system.
    pub(crate) system: SystemKind,
    /// Append-to-follower latency over every follower and line.
    pub(crate) latency: Option<LatencySummary>,
    /// Lines the writer sent.
    pub(crate) sent: u64,
    /// The rate the writer held, lines per second.
    pub(crate) sent_per_sec: f64,
    /// Whether every follower got every line once, in order.
    pub(crate) complete: Option<bool>,
    /// Lines delivered over all followers.
    pub(crate) delivered: u64,
    /// Server CPU seconds over the phase.
    pub(crate) cpu_secs: Option<f64>,
    /// The harness's own CPU seconds over the phase: the writer and the
    /// followers, which share the machine with the server.
    pub(crate) client_cpu_secs: Option<f64>,
    /// The server's peak RSS over the phase, MiB.
    pub(crate) peak_rss_mib: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W3: one system holding many quiet runs.
#[derive(Debug, Serialize)]
pub(crate) struct ManyRunsRow {
    /// The system.
    pub(crate) system: SystemKind,
    /// Runs, each with a writer and a follower.
    pub(crate) runs: usize,
    /// Streams (writers and followers) that were open when measured.
    pub(crate) streams_open: u64,
    /// Seconds to prepare every run and open every stream.
    pub(crate) setup_secs: f64,
    /// Seconds of steady state measured.
    pub(crate) measured_secs: f64,
    /// Lines delivered to followers while measured.
    pub(crate) delivered: u64,
    /// Append-to-follower latency while measured.
    pub(crate) latency: Option<LatencySummary>,
    /// Server CPU while measured, in percent of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// The server's RSS at the end, MiB.
    pub(crate) rss_mib: Option<f64>,
    /// The server's peak RSS over the phase (setup included), MiB.
    pub(crate) peak_rss_mib: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W4: baa-logd restarting over a full data directory.
#[derive(Debug, Serialize)]
pub(crate) struct RestartRow {
    /// The system.
    pub(crate) system: SystemKind,
    /// Whether the page cache was dropped before the restart.
    pub(crate) cold: bool,
    /// Runs in the data directory.
    pub(crate) runs: usize,
    /// Entries over every run.
    pub(crate) entries: u64,
    /// Entries of the large run followed.
    pub(crate) large_run_entries: u64,
    /// The data directory's size, MiB.
    pub(crate) data_mib: f64,
    /// Seconds it took to fill it.
    pub(crate) fill_secs: f64,
    /// From spawn to the `listening on` line, ms.
    pub(crate) listening_ms: f64,
    /// From spawn to health `SERVING`, ms.
    pub(crate) serving_ms: f64,
    /// From spawn to the follower's first entry, ms.
    pub(crate) first_entry_ms: f64,
    /// From spawn to the follower's last entry, ms.
    pub(crate) last_entry_ms: f64,
    /// Entries of the large run per second, from the follow request to
    /// the last entry.
    pub(crate) follow_entries_per_sec: f64,
    /// The server's CPU seconds over the follow.
    pub(crate) follow_cpu_secs: Option<f64>,
    /// The server's RSS after the follow, MiB.
    pub(crate) rss_mib: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W5: baa-logd's memory with followers that never read.
#[derive(Debug, Serialize)]
pub(crate) struct SlowFollowersRow {
    /// Followers asked for, all on one connection.
    pub(crate) followers: usize,
    /// The followed run's size, MiB.
    pub(crate) run_mib: u64,
    /// Followers whose stream opened.
    pub(crate) opened: usize,
    /// The server's RSS before they opened, MiB.
    pub(crate) baseline_mib: Option<f64>,
    /// The server's steady RSS while they were open, MiB.
    pub(crate) open_mib: Option<f64>,
    /// The server's steady RSS after they were cancelled, MiB.
    pub(crate) after_mib: Option<f64>,
    /// RSS growth while open per follower, KiB.
    pub(crate) per_follower_kib: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W6: a tail of a large run against all of it.
#[derive(Debug, Serialize)]
pub(crate) struct TailRow {
    /// Entries in the run (its last seq).
    pub(crate) entries: u64,
    /// Its channel files, MiB.
    pub(crate) run_mib: f64,
    /// Seconds it took to write.
    pub(crate) fill_secs: f64,
    /// The entries the tail asked for.
    pub(crate) tail: u64,
    /// Each history follow of the whole run, request to last entry, ms.
    pub(crate) full_ms: Samples,
    /// Each history follow of the tail, request to last entry, ms.
    pub(crate) tail_ms: Samples,
    /// Entries a second of the median full follow.
    pub(crate) full_entries_per_sec: Option<f64>,
    /// The tail's median time ÷ the full follow's.
    pub(crate) ratio: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
    /// What baa-logd answered wrongly, if it did; the run then fails.
    pub(crate) wrong_answer: Option<String>,
}

/// W7 (a): `SearchRuns` for a literal against `grep -F -c` over the same
/// channel files.
#[derive(Debug, Serialize)]
pub(crate) struct SearchScanRow {
    /// Which runs: every run of the data set, or its large run.
    pub(crate) scope: &'static str,
    /// Runs searched.
    pub(crate) runs: usize,
    /// Lines over those runs.
    pub(crate) entries: u64,
    /// Channel files grep read.
    pub(crate) files: usize,
    /// Their total size, MiB.
    pub(crate) file_mib: f64,
    /// Lines holding the literal: planted, and found by both.
    pub(crate) matches: u64,
    /// The server's `bytes_scanned` for one search.
    pub(crate) bytes_scanned: u64,
    /// Each timed grep, seconds.
    pub(crate) grep_secs: Samples,
    /// Each timed search, request to end of stream, seconds.
    pub(crate) search_secs: Samples,
    /// The server's CPU seconds over each timed search.
    pub(crate) search_cpu_secs: Samples,
    /// The files' bytes over grep's median time, MB/s.
    pub(crate) grep_mb_per_sec: Option<f64>,
    /// The files' bytes over the search's median time, MB/s.
    pub(crate) search_mb_per_sec: Option<f64>,
    /// `bytes_scanned` over the search's median time, MB/s.
    pub(crate) search_scanned_mb_per_sec: Option<f64>,
    /// The search's rate ÷ grep's, over the same bytes.
    pub(crate) ratio: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
    /// What baa-logd or grep answered wrongly, if either did; the run then
    /// fails.
    pub(crate) wrong_answer: Option<String>,
}

/// W7 (b): W1 on baa-logd without and with a search at the default rate.
#[derive(Debug, Serialize)]
pub(crate) struct SearchLoadRow {
    /// The W1 variant.
    pub(crate) variant: &'static str,
    /// Rounds, each one phase without and one with a search.
    pub(crate) rounds: usize,
    /// W1 entries/s without a search, one per round.
    pub(crate) quiet_entries_per_sec: Samples,
    /// W1 entries/s with a search, one per round.
    pub(crate) search_entries_per_sec: Samples,
    /// Server CPU seconds per million entries without a search.
    pub(crate) quiet_cpu_secs_per_million: Samples,
    /// Server CPU seconds per million entries with a search (its CPU
    /// included).
    pub(crate) search_cpu_secs_per_million: Samples,
    /// The rate the search scanned at around W1, MiB/s.
    pub(crate) search_mib_per_sec: Samples,
    /// Search passes over the run that ended during the phases.
    pub(crate) search_passes: u64,
    /// Each round's entries/s with a search ÷ without.
    pub(crate) paired_ratios: Samples,
    /// The median of `paired_ratios`.
    pub(crate) ratio: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
    /// What baa-logd answered wrongly, if it did; the run then fails.
    pub(crate) wrong_answer: Option<String>,
}

/// W8: a command that prints as fast as it can, bare and under `baa-log
/// exec`, with its output on one kind of file.
#[derive(Debug, Serialize)]
pub(crate) struct ExecOverheadRow {
    /// Where the output went: `pipe` or `terminal`.
    pub(crate) output: &'static str,
    /// How the command wrote its lines.
    pub(crate) writes: &'static str,
    /// Lines it printed.
    pub(crate) lines: u64,
    /// Bytes per line, newline included.
    pub(crate) line_bytes: usize,
    /// Rounds, each one run bare and one under exec, back to back.
    pub(crate) rounds: usize,
    /// Each bare run, spawn to exit and end of output, seconds.
    pub(crate) bare_secs: Samples,
    /// Each run under exec, spawn to exit and end of output, seconds:
    /// also the time until the run held everything.
    pub(crate) exec_secs: Samples,
    /// The command's CPU seconds in each bare run.
    pub(crate) bare_cpu_secs: Samples,
    /// baa-log's and the command's CPU seconds in each run under exec.
    pub(crate) exec_cpu_secs: Samples,
    /// The server's CPU seconds over each run under exec.
    pub(crate) server_cpu_secs: Samples,
    /// Each round's exec ÷ bare time.
    pub(crate) paired_ratios: Samples,
    /// Each round's exec − bare time, ms.
    pub(crate) paired_added_ms: Samples,
    /// The median of `paired_ratios`.
    pub(crate) ratio: Option<f64>,
    /// The command's own time in each bare run, its first write to after
    /// its last, seconds.
    pub(crate) bare_command_secs: Samples,
    /// The command's own time in each run under exec, seconds: what exec
    /// does to the command itself, without exec's start and delivery.
    pub(crate) exec_command_secs: Samples,
    /// Each round's command time under exec ÷ bare.
    pub(crate) paired_command_ratios: Samples,
    /// The median of `paired_command_ratios`.
    pub(crate) command_ratio: Option<f64>,
    /// In each run under exec, from the spawn of exec to the command's
    /// first write, ms: exec's start (connecting, the run's creation) and
    /// the command's own start.
    pub(crate) exec_start_ms: Samples,
    /// In each run under exec, from the command's last write to exec's
    /// exit and the end of its output, ms: what exec still had to pass on
    /// and store, and the run's final state.
    pub(crate) delivery_ms: Samples,
    /// Runs found complete (every line, `completed`) right after exec
    /// exited.
    pub(crate) runs_checked: usize,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
    /// What exec or baa-logd got wrong, if anything; the run then fails.
    pub(crate) wrong_answer: Option<String>,
}

/// W9 (a, b): the run page in a headless chromium, opening a finished
/// run and scrolled through it.
#[derive(Debug, Serialize)]
pub(crate) struct BrowserPageRow {
    /// Lines in the run (one an entry).
    pub(crate) lines: u64,
    /// The run's last seq: the id of its last line.
    pub(crate) last_seq: u64,
    /// Seconds it took to write the run through the client crate.
    pub(crate) seed_secs: f64,
    /// chromium's version, once it started.
    pub(crate) browser: Option<String>,
    /// Each navigation, from its start until the last line was in view, ms.
    pub(crate) open_ms: Samples,
    /// The scroll from the end to the start, and the page's memory.
    pub(crate) scroll: Option<BrowserScroll>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

/// W9 (b): what scrolling a run from its end to its start took, and what
/// the page held.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrowserScroll {
    /// Whether the row of the run's first line came into `#log`.
    pub(crate) reached_start: bool,
    /// The line furthest up whose row was in `#log`.
    pub(crate) lowest_line: Option<String>,
    /// The share of the run scrolled through, 0 to 1.
    pub(crate) share: Option<f64>,
    /// Wheel turns.
    pub(crate) steps: u64,
    /// Seconds from the first turn to the row furthest up.
    pub(crate) secs: f64,
    /// The most DOM nodes under `#log` after any turn: the virtual list's
    /// bound, whatever the run's size.
    pub(crate) max_log_nodes: u64,
    /// DOM nodes under `#log` at the end.
    pub(crate) log_nodes: Option<u64>,
    /// Nodes of the whole document at the end (detached ones not yet
    /// collected included).
    pub(crate) document_nodes: Option<u64>,
    /// Used JS heap after a collection, with the tail loaded, MiB.
    pub(crate) heap_open_mib: Option<f64>,
    /// Used JS heap after a collection, at the end of the scroll, MiB.
    pub(crate) heap_end_mib: Option<f64>,
}

/// W9 (c): append→shown latency of a live run for one kind of follower.
#[derive(Debug, Serialize)]
pub(crate) struct BrowserLiveRow {
    /// `run page` or `gRPC follow (client crate)`.
    pub(crate) follower: &'static str,
    /// Lines per second written.
    pub(crate) rate: u64,
    /// Seconds of measured writing.
    pub(crate) secs: f64,
    /// The rate the writer held, warm-up included.
    pub(crate) sent_per_sec: f64,
    /// Measured lines sent.
    pub(crate) lines: u64,
    /// Measured lines this follower showed or received.
    pub(crate) received: u64,
    /// Append→shown (page) or append→received (gRPC) latency.
    pub(crate) latency: Option<LatencySummary>,
    /// Server CPU seconds while the lines were written.
    pub(crate) server_cpu_secs: Option<f64>,
    /// DOM nodes under `#log` at the end (page only).
    pub(crate) log_nodes: Option<u64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
}

impl BrowserLiveRow {
    /// A row with no figures.
    pub(crate) fn empty(follower: &'static str, note: String) -> Self {
        Self {
            follower,
            rate: 0,
            secs: 0.0,
            sent_per_sec: 0.0,
            lines: 0,
            received: 0,
            latency: None,
            server_cpu_secs: None,
            log_nodes: None,
            note: Some(note),
        }
    }
}

/// W10: one artifact uploaded and downloaded through baa-logd, against
/// `dd conv=fsync` of the same file to the same file system.
#[derive(Debug, Serialize)]
pub(crate) struct ObjectsRow {
    /// The system: baa-logd on local disk, or on a NATS cluster.
    pub(crate) system: SystemKind,
    /// The artifact's size, MiB.
    pub(crate) object_mib: u64,
    /// The file system every copy was written to (`statfs` type).
    pub(crate) filesystem: String,
    /// Rounds, each dd, an upload and a download.
    pub(crate) rounds: usize,
    /// Each dd, seconds.
    pub(crate) dd_secs: Samples,
    /// Each upload, from the first read to the committed object, seconds.
    pub(crate) upload_secs: Samples,
    /// Each download, to the fsynced and checked file, seconds.
    pub(crate) download_secs: Samples,
    /// dd's MiB/s, over the median time.
    pub(crate) dd_mib_per_sec: Option<f64>,
    /// The upload's MiB/s, over the median time.
    pub(crate) upload_mib_per_sec: Option<f64>,
    /// The download's MiB/s, over the median time.
    pub(crate) download_mib_per_sec: Option<f64>,
    /// Upload MiB/s ÷ dd's.
    pub(crate) upload_ratio: Option<f64>,
    /// Download MiB/s ÷ dd's.
    pub(crate) download_ratio: Option<f64>,
    /// Why the row is empty or doubtful.
    pub(crate) note: Option<String>,
    /// What baa-logd got wrong, if anything; the run then fails.
    pub(crate) wrong_answer: Option<String>,
}

/// baa-logd's figure divided by another system's, for one measure.
#[derive(Debug, Serialize)]
pub(crate) struct Ratio {
    /// The workload and variant.
    pub(crate) workload: String,
    /// What is divided, and which way is better.
    pub(crate) measure: &'static str,
    /// The other system.
    pub(crate) versus: SystemKind,
    /// baa-logd ÷ the other; `None` when either is missing.
    pub(crate) ratio: Option<f64>,
}

/// One of the targets.
#[derive(Debug, Serialize)]
pub(crate) struct TargetCheck {
    /// The target, as the issue states it.
    pub(crate) target: String,
    /// What this run measured.
    pub(crate) measured: String,
    /// Met, missed, or not measured in this run.
    pub(crate) met: Option<bool>,
}

impl Report {
    /// Fills in the ratios and the target checks from the rows.
    pub(crate) fn conclude(&mut self) {
        self.ratios = ratios(self);
        self.ratios.extend(jetstream_ratios(self));
        self.targets = targets(self);
        self.targets.extend(jetstream_targets(self));
    }

    /// The wrong answers any workload got: a benchmark of a wrong answer
    /// is worthless, so the run fails when there is one.
    pub(crate) fn wrong_answers(&self) -> Vec<String> {
        let w6 = self.w6.iter().map(|row| &row.wrong_answer);
        let w7_scan = self.w7_scan.iter().map(|row| &row.wrong_answer);
        let w7_writes = self.w7_writes.iter().map(|row| &row.wrong_answer);
        let w8 = self.w8.iter().map(|row| &row.wrong_answer);
        let w10 = self.w10.iter().map(|row| &row.wrong_answer);
        w6.chain(w7_scan)
            .chain(w7_writes)
            .chain(w8)
            .chain(w10)
            .flatten()
            .cloned()
            .collect()
    }

    /// The report as Markdown.
    pub(crate) fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "# baa-bench results\n");
        let _ = writeln!(out, "Command: `{}`\n", self.command);
        let _ = writeln!(
            out,
            "Machine: {} × {}, {} MiB, Linux {}\n",
            m.cpus, m.cpu, m.memory_mib, m.kernel
        );
        if !self.w1.is_empty() {
            let _ = writeln!(out, "## W1 throughput\n");
            let _ = writeln!(
                out,
                "| variant | system | entries/s | MB/s | server CPU s / M entries | peak RSS MiB | note |"
            );
            let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- |");
            for row in &self.w1 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    row.variant,
                    row.system,
                    count(row.entries_per_sec, row.entries > 0),
                    fixed(Some(row.mb_per_sec).filter(|_| row.entries > 0), 1),
                    fixed(row.cpu_secs_per_million, 2),
                    fixed(row.peak_rss_mib, 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w2.is_empty() {
            let _ = writeln!(out, "## W2 fan-out latency\n");
            let _ = writeln!(
                out,
                "| followers | system | p50 ms | p99 ms | max ms | complete | sent lines/s | server CPU s | client CPU s | peak RSS MiB | note |"
            );
            let _ = writeln!(
                out,
                "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w2 {
                let latency = row.latency.filter(|latency| latency.count > 0);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.followers,
                    row.system,
                    fixed(latency.map(|l| l.p50_ms), 2),
                    fixed(latency.map(|l| l.p99_ms), 2),
                    fixed(latency.map(|l| l.max_ms), 2),
                    match row.complete {
                        Some(true) => "100%".to_owned(),
                        Some(false) => "**no**".to_owned(),
                        None => "—".to_owned(),
                    },
                    count(row.sent_per_sec, row.sent > 0),
                    fixed(row.cpu_secs, 2),
                    fixed(row.client_cpu_secs, 2),
                    fixed(row.peak_rss_mib, 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w3.is_empty() {
            let _ = writeln!(out, "## W3 many runs\n");
            let _ = writeln!(
                out,
                "| system | runs | streams | setup s | lines delivered | p99 ms | server CPU % | RSS MiB | peak RSS MiB | note |"
            );
            let _ = writeln!(
                out,
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w3 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.system,
                    row.runs,
                    row.streams_open,
                    fixed(Some(row.setup_secs), 1),
                    row.delivered,
                    fixed(row.latency.filter(|l| l.count > 0).map(|l| l.p99_ms), 2),
                    fixed(row.cpu_percent, 1),
                    fixed(row.rss_mib, 0),
                    fixed(row.peak_rss_mib, 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w4.is_empty() {
            let _ = writeln!(out, "## W4 restart\n");
            let _ = writeln!(
                out,
                "| system | page cache | runs | entries | large run | data MiB | listening ms | SERVING ms | first entry ms | last entry ms | follow entries/s | follow server CPU s | RSS MiB | note |"
            );
            let _ = writeln!(
                out,
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w4 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.system,
                    if row.cold { "dropped" } else { "warm" },
                    row.runs,
                    row.entries,
                    row.large_run_entries,
                    fixed(Some(row.data_mib), 0),
                    fixed(Some(row.listening_ms), 1),
                    fixed(Some(row.serving_ms), 1),
                    fixed(Some(row.first_entry_ms), 1),
                    fixed(Some(row.last_entry_ms), 0),
                    count(row.follow_entries_per_sec, row.large_run_entries > 0),
                    fixed(row.follow_cpu_secs, 2),
                    fixed(row.rss_mib, 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w5.is_empty() {
            let _ = writeln!(out, "## W5 slow followers\n");
            let _ = writeln!(
                out,
                "| followers | run MiB | opened | RSS before MiB | RSS open MiB | RSS after MiB | KiB per follower | note |"
            );
            let _ = writeln!(
                out,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w5 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.followers,
                    row.run_mib,
                    row.opened,
                    fixed(row.baseline_mib, 1),
                    fixed(row.open_mib, 1),
                    fixed(row.after_mib, 1),
                    fixed(row.per_follower_kib, 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w6.is_empty() {
            let _ = writeln!(out, "## W6 tail\n");
            let _ = writeln!(
                out,
                "| entries | run MiB | tail | full follow ms (median) | full entries/s | tail ms (median) | tail ÷ full | note |"
            );
            let _ = writeln!(
                out,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w6 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.entries,
                    fixed(Some(row.run_mib), 0),
                    row.tail,
                    median_of(&row.full_ms, 0),
                    count(
                        row.full_entries_per_sec.unwrap_or(0.0),
                        row.full_entries_per_sec.is_some()
                    ),
                    median_of(&row.tail_ms, 2),
                    row.ratio.map_or_else(|| "—".to_owned(), percent),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w7_scan.is_empty() {
            let _ = writeln!(out, "## W7 search against grep\n");
            let _ = writeln!(
                out,
                "| scope | runs | files MiB | matches | grep s (median) | grep MB/s | search s (median) | search MB/s | scanned MB/s | server CPU s | search ÷ grep | note |"
            );
            let _ = writeln!(
                out,
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w7_scan {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.scope,
                    row.runs,
                    fixed(Some(row.file_mib), 0),
                    row.matches,
                    median_of(&row.grep_secs, 3),
                    fixed(row.grep_mb_per_sec, 0),
                    median_of(&row.search_secs, 3),
                    fixed(row.search_mb_per_sec, 0),
                    fixed(row.search_scanned_mb_per_sec, 0),
                    median_of(&row.search_cpu_secs, 2),
                    row.ratio.map_or_else(|| "—".to_owned(), times),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w7_writes.is_empty() {
            let _ = writeln!(out, "## W7 W1 with a search\n");
            let _ = writeln!(
                out,
                "| variant | rounds | entries/s without | entries/s with | with ÷ without (paired) | CPU s / M without | CPU s / M with | search MiB/s | search passes | note |"
            );
            let _ = writeln!(
                out,
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w7_writes {
                let quiet = row.quiet_entries_per_sec.median();
                let searched = row.search_entries_per_sec.median();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.variant,
                    row.rounds,
                    count(quiet.unwrap_or(0.0), quiet.is_some()),
                    count(searched.unwrap_or(0.0), searched.is_some()),
                    row.ratio.map_or_else(|| "—".to_owned(), times),
                    median_of(&row.quiet_cpu_secs_per_million, 2),
                    median_of(&row.search_cpu_secs_per_million, 2),
                    median_of(&row.search_mib_per_sec, 1),
                    row.search_passes,
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w8.is_empty() {
            let _ = writeln!(out, "## W8 exec overhead\n");
            let _ = writeln!(
                out,
                "| output | writes | lines | rounds | bare s | bare lines/s | exec s | exec lines/s | exec ÷ bare (paired) | added ms (paired) | command s bare | command s exec | command ÷ bare command (paired) | exec start ms | delivery after the command ms | CPU s bare | CPU s exec | server CPU s | runs complete at exit | note |"
            );
            let _ = writeln!(
                out,
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w8 {
                let rate = |samples: &Samples| {
                    let secs = samples.median().filter(|secs| *secs > 0.0);
                    count(row.lines as f64 / secs.unwrap_or(1.0), secs.is_some())
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} of {} | {} |",
                    row.output,
                    row.writes,
                    count(row.lines as f64, true),
                    row.rounds,
                    median_of(&row.bare_secs, 3),
                    rate(&row.bare_secs),
                    median_of(&row.exec_secs, 3),
                    rate(&row.exec_secs),
                    row.ratio.map_or_else(|| "—".to_owned(), times),
                    median_of(&row.paired_added_ms, 0),
                    median_of(&row.bare_command_secs, 3),
                    median_of(&row.exec_command_secs, 3),
                    row.command_ratio.map_or_else(|| "—".to_owned(), times),
                    median_of(&row.exec_start_ms, 0),
                    median_of(&row.delivery_ms, 0),
                    median_of(&row.bare_cpu_secs, 2),
                    median_of(&row.exec_cpu_secs, 2),
                    median_of(&row.server_cpu_secs, 2),
                    row.runs_checked,
                    row.rounds,
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w9_page.is_empty() {
            let _ = writeln!(out, "## W9 browser page\n");
            let _ = writeln!(
                out,
                "| lines | navigations | open ms (median) | open ms (min–max) | scrolled | scroll s | wheel turns | max nodes in #log | nodes in #log after | document nodes after | JS heap MiB, tail | JS heap MiB, after the scroll | note |"
            );
            let _ = writeln!(
                out,
                "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w9_page {
                let scroll = row.scroll.as_ref();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    count(row.lines as f64, true),
                    row.open_ms.len(),
                    median_of(&row.open_ms, 0),
                    row.open_ms
                        .range()
                        .map_or_else(|| "—".to_owned(), |(lo, hi)| format!("{lo:.0}–{hi:.0}")),
                    scroll
                        .and_then(|s| s.share)
                        .map_or_else(|| "—".to_owned(), |share| format!("{:.0}%", share * 100.0)),
                    fixed(scroll.map(|s| s.secs), 1),
                    scroll.map_or_else(|| "—".to_owned(), |s| s.steps.to_string()),
                    scroll.map_or_else(|| "—".to_owned(), |s| s.max_log_nodes.to_string()),
                    fixed(scroll.and_then(|s| s.log_nodes).map(|n| n as f64), 0),
                    fixed(scroll.and_then(|s| s.document_nodes).map(|n| n as f64), 0),
                    fixed(scroll.and_then(|s| s.heap_open_mib), 1),
                    fixed(scroll.and_then(|s| s.heap_end_mib), 1),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.w9_live.is_empty() {
            let _ = writeln!(
                out,
                "## W9 live latency: the page against a gRPC follower\n"
            );
            let _ = writeln!(
                out,
                "| follower | lines/s | lines | shown or received | p50 ms | p99 ms | max ms | sent lines/s | server CPU s | nodes in #log | note |"
            );
            let _ = writeln!(
                out,
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w9_live {
                let latency = row.latency.filter(|latency| latency.count > 0);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.follower,
                    row.rate,
                    row.lines,
                    row.received,
                    fixed(latency.map(|l| l.p50_ms), 2),
                    fixed(latency.map(|l| l.p99_ms), 2),
                    fixed(latency.map(|l| l.max_ms), 2),
                    count(row.sent_per_sec, row.sent_per_sec > 0.0),
                    fixed(row.server_cpu_secs, 2),
                    fixed(row.log_nodes.map(|n| n as f64), 0),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out, "## Ratios: baa-logd ÷ each system\n");
            let _ = writeln!(out, "| workload | measure | versus | ratio |");
            let _ = writeln!(out, "| --- | --- | --- | ---: |");
            for ratio in &self.ratios {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    ratio.workload,
                    ratio.measure,
                    ratio.versus,
                    ratio.ratio.map_or_else(|| "—".to_owned(), times)
                );
            }
            out.push('\n');
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "## Targets\n");
            let _ = writeln!(out, "| target | measured | met |");
            let _ = writeln!(out, "| --- | --- | --- |");
            for check in &self.targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    check.target,
                    check.measured,
                    match check.met {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "not measured",
                    }
                );
            }
        }
        if !self.w10.is_empty() {
            let _ = writeln!(out, "## W10 objects\n");
            let _ = writeln!(
                out,
                "| system | MiB | file system | dd MiB/s | upload MiB/s | download MiB/s | upload ÷ dd | download ÷ dd | note |"
            );
            let _ = writeln!(
                out,
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
            );
            for row in &self.w10 {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.system.label(),
                    row.object_mib,
                    row.filesystem,
                    fixed(row.dd_mib_per_sec, 0),
                    fixed(row.upload_mib_per_sec, 0),
                    fixed(row.download_mib_per_sec, 0),
                    fixed(row.upload_ratio, 2),
                    fixed(row.download_ratio, 2),
                    note(&row.note)
                );
            }
            out.push('\n');
        }
        out
    }
}

/// A whole number with thousands separators, or `—`.
fn count(value: f64, present: bool) -> String {
    if !present {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A ratio: two decimals, four below 0.1.
fn times(ratio: f64) -> String {
    if ratio < 0.1 {
        format!("{ratio:.4}×")
    } else {
        format!("{ratio:.2}×")
    }
}

/// A ratio as a percentage: two decimals, four below 0.1%.
fn percent(ratio: f64) -> String {
    let percent = ratio * 100.0;
    if percent < 0.1 {
        format!("{percent:.4}%")
    } else {
        format!("{percent:.2}%")
    }
}

/// The median of `samples` with `places` decimals, or `—`.
fn median_of(samples: &Samples, places: usize) -> String {
    fixed(samples.median(), places)
}

/// A number with `places` decimals, or `—`.
fn fixed(value: Option<f64>, places: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |value| format!("{value:.places$}"))
}

/// A note cell.
fn note(note: &Option<String>) -> String {
    note.as_deref().unwrap_or("").replace('|', "/")
}

/// baa-logd ÷ every other system, per workload.
fn ratios(report: &Report) -> Vec<Ratio> {
    let mut out = Vec::new();
    for variant in ["own runs", "shared run", "own runs, one line per message"] {
        let rows: Vec<&ThroughputRow> = report
            .w1
            .iter()
            .filter(|row| row.variant == variant)
            .collect();
        let value = |row: &ThroughputRow| (row.entries > 0).then_some(row.entries_per_sec);
        let rate = |system: SystemKind| {
            rows.iter()
                .find(|row| row.system == system)
                .and_then(|row| value(row))
        };
        // baa-logd against the others that acknowledge as early as it
        // does; baa-logd --sync against the durable peers and against
        // baa-logd's own rate.
        if let Some(baa) = rate(SystemKind::BaaLogd) {
            for row in rows
                .iter()
                .filter(|row| !row.system.is_baa_logd() && !row.system.durable())
            {
                out.push(Ratio {
                    workload: format!("W1 {variant}"),
                    measure: "entries/s (higher is better)",
                    versus: row.system,
                    ratio: value(row).map(|other| baa / other),
                });
            }
        }
        if let Some((client, stubs)) =
            rate(SystemKind::BaaLogdClient).zip(rate(SystemKind::BaaLogd))
        {
            out.push(Ratio {
                workload: format!("W1 {variant}, client crate"),
                measure: "baa-logd through RunWriter entries/s (higher is better)",
                versus: SystemKind::BaaLogd,
                ratio: Some(client / stubs),
            });
        }
        if let Some(baa) = rate(SystemKind::BaaLogdSync) {
            for row in rows.iter().filter(|row| {
                row.system == SystemKind::BaaLogd
                    || (row.system.durable() && !row.system.is_baa_logd())
            }) {
                out.push(Ratio {
                    workload: format!("W1 {variant}, durable"),
                    measure: "baa-logd --sync entries/s (higher is better)",
                    versus: row.system,
                    ratio: value(row).map(|other| baa / other),
                });
            }
        }
    }
    let mut follower_counts: Vec<usize> = report.w2.iter().map(|row| row.followers).collect();
    follower_counts.dedup();
    for followers in follower_counts {
        let rows: Vec<&FanOutRow> = report
            .w2
            .iter()
            .filter(|row| row.followers == followers)
            .collect();
        let p99 = |row: &FanOutRow| row.latency.filter(|l| l.count > 0).map(|l| l.p99_ms);
        let Some(baa) = rows
            .iter()
            .find(|row| row.system == SystemKind::BaaLogd)
            .and_then(|row| p99(row))
        else {
            continue;
        };
        for row in rows.iter().filter(|row| !row.system.is_baa_logd()) {
            out.push(Ratio {
                workload: format!("W2 {followers} followers"),
                measure: "p99 latency (lower is better)",
                versus: row.system,
                ratio: p99(row).map(|other| baa / other),
            });
        }
    }
    if let Some(baa) = report
        .w3
        .iter()
        .find(|row| row.system == SystemKind::BaaLogd)
    {
        for row in report.w3.iter().filter(|row| !row.system.is_baa_logd()) {
            out.push(Ratio {
                workload: "W3".to_owned(),
                measure: "server RSS (lower is better)",
                versus: row.system,
                ratio: baa.rss_mib.zip(row.rss_mib).map(|(a, b)| a / b),
            });
            out.push(Ratio {
                workload: "W3".to_owned(),
                measure: "server CPU (lower is better)",
                versus: row.system,
                ratio: baa.cpu_percent.zip(row.cpu_percent).map(|(a, b)| a / b),
            });
        }
    }
    out
}

/// The targets, checked against this run.
fn targets(report: &Report) -> Vec<TargetCheck> {
    let ratio = |workload: &str, versus: SystemKind| {
        report
            .ratios
            .iter()
            .find(|ratio| ratio.workload == workload && ratio.versus == versus)
            .and_then(|ratio| ratio.ratio)
    };
    let mut out = Vec::new();
    if !report.w1.is_empty() {
        for variant in ["own runs", "shared run"] {
            let workload = format!("W1 {variant}");
            for (versus, wanted) in [
                (SystemKind::Nats, 2.0),
                (SystemKind::Redis, 2.0),
                (SystemKind::TransportCeiling, 0.5),
            ] {
                let got = ratio(&workload, versus);
                out.push(TargetCheck {
                    target: format!("{workload}: entries/s ≥ {wanted}× {versus}"),
                    measured: got.map_or_else(|| "—".to_owned(), times),
                    met: got.map(|r| r >= wanted),
                });
            }
        }
    }
    for variant in ["own runs", "shared run"] {
        let workload = format!("W1 {variant}, client crate");
        if let Some(got) = ratio(&workload, SystemKind::BaaLogd) {
            out.push(TargetCheck {
                target: format!("{workload}: RunWriter ≥ 0.9× the raw stubs"),
                measured: times(got),
                met: Some(got >= 0.9),
            });
        }
    }
    for variant in ["own runs", "shared run", "own runs, one line per message"] {
        let workload = format!("W1 {variant}, durable");
        let best_peer = [SystemKind::NatsSync, SystemKind::RedisAlways]
            .into_iter()
            .filter_map(|peer| ratio(&workload, peer).map(|r| (peer, r)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((peer, got)) = best_peer {
            out.push(TargetCheck {
                target: format!("{workload}: baa-logd --sync ≥ 3× the best durable peer"),
                measured: format!("{} ({peer})", times(got)),
                met: Some(got >= 3.0),
            });
        }
        if let Some(got) = ratio(&workload, SystemKind::BaaLogd) {
            out.push(TargetCheck {
                target: format!("{workload}: baa-logd --sync ≥ 0.8× baa-logd"),
                measured: times(got),
                met: Some(got >= 0.8),
            });
        }
    }
    let p99 = |followers: usize, system: SystemKind| {
        report
            .w2
            .iter()
            .find(|row| row.followers == followers && row.system == system)
            .and_then(|row| row.latency.filter(|l| l.count > 0))
            .map(|l| l.p99_ms)
    };
    let counts: Vec<usize> = report.w2.iter().map(|row| row.followers).collect();
    if let Some(&few) = counts.iter().min() {
        let best_peer = [SystemKind::Nats, SystemKind::Redis]
            .into_iter()
            .filter_map(|peer| p99(few, peer).map(|p| (peer, p)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let baa = p99(few, SystemKind::BaaLogd);
        out.push(TargetCheck {
            target: format!("W2 {few} followers: p99 ≤ the best peer's p99"),
            measured: match (baa, best_peer) {
                (Some(baa), Some((peer, theirs))) => {
                    format!("{baa:.2} ms vs {theirs:.2} ms ({peer})")
                }
                (Some(baa), None) => format!("{baa:.2} ms; no peer measured"),
                _ => "—".to_owned(),
            },
            met: baa.zip(best_peer).map(|(baa, (_, theirs))| baa <= theirs),
        });
    }
    if let Some(&many) = counts.iter().max() {
        let baa = p99(many, SystemKind::BaaLogd);
        out.push(TargetCheck {
            target: format!("W2 {many} followers: p99 ≤ 10 ms"),
            measured: baa.map_or_else(|| "—".to_owned(), |p| format!("{p:.2} ms")),
            met: baa.map(|p| p <= 10.0),
        });
    }
    for row in report
        .w2
        .iter()
        .filter(|row| row.system == SystemKind::BaaLogd)
    {
        out.push(TargetCheck {
            target: format!("W2 {} followers: completeness 100%", row.followers),
            measured: match row.complete {
                Some(true) => "100%".to_owned(),
                Some(false) => "incomplete".to_owned(),
                None => "—".to_owned(),
            },
            met: row.complete,
        });
    }
    if let Some(row) = report
        .w3
        .iter()
        .find(|row| row.system == SystemKind::BaaLogd)
    {
        let rss = row.peak_rss_mib;
        out.push(TargetCheck {
            target: format!("W3 {} runs: server RSS ≤ 256 MiB", row.runs),
            measured: rss.map_or_else(|| "—".to_owned(), |r| format!("{r:.0} MiB peak")),
            met: rss.map(|r| r <= 256.0),
        });
    }
    for row in &report.w4 {
        let cache = if row.cold { "cold" } else { "warm" };
        let cache_dropped = !row.cold || row.note.is_none();
        out.push(TargetCheck {
            target: format!("W4 {cache}: SERVING within 1 s"),
            measured: format!("{:.1} ms", row.serving_ms),
            met: (row.serving_ms > 0.0 && cache_dropped).then_some(row.serving_ms <= 1000.0),
        });
        if row.cold {
            out.push(TargetCheck {
                target: format!(
                    "W4 cold: the {}-entry run followed at ≥ 1,000,000 entries/s",
                    row.large_run_entries
                ),
                measured: format!(
                    "{} entries/s",
                    count(row.follow_entries_per_sec, row.large_run_entries > 0)
                ),
                met: (row.follow_entries_per_sec > 0.0 && cache_dropped)
                    .then_some(row.follow_entries_per_sec >= 1_000_000.0),
            });
        }
    }
    if let Some(row) = report.w5.first() {
        let growth = row.baseline_mib.zip(row.open_mib).map(|(b, o)| o - b);
        out.push(TargetCheck {
            target: format!("W5 {} followers: RSS growth ≤ 150 MiB", row.followers),
            measured: growth.map_or_else(|| "—".to_owned(), |g| format!("{g:.1} MiB")),
            met: growth.map(|g| g <= 150.0),
        });
        let left = row.baseline_mib.zip(row.after_mib).map(|(b, a)| a - b);
        out.push(TargetCheck {
            target: "W5: RSS within 50 MiB of the baseline after".to_owned(),
            measured: left.map_or_else(|| "—".to_owned(), |l| format!("{l:.1} MiB")),
            met: left.map(|l| l <= 50.0),
        });
    }
    if let Some(row) = report.w6.first() {
        let medians = row.tail_ms.median().zip(row.full_ms.median());
        out.push(TargetCheck {
            target: format!("W6: tail of {} ≤ 1% of a full history follow", row.tail),
            measured: row.ratio.zip(medians).map_or_else(
                || "—".to_owned(),
                |(ratio, (tail, full))| {
                    format!("{} ({tail:.2} ms vs {full:.0} ms)", percent(ratio))
                },
            ),
            met: row.ratio.map(|ratio| ratio <= 0.01),
        });
    }
    if let Some(row) = report.w7_scan.first() {
        out.push(TargetCheck {
            target: format!("W7 {}: search ≥ 0.5× grep -F bytes/s", row.scope),
            measured: row.ratio.map_or_else(|| "—".to_owned(), times),
            met: row.ratio.map(|ratio| ratio >= 0.5),
        });
    }
    if let Some(row) = report.w7_writes.first() {
        out.push(TargetCheck {
            target: format!("W7: W1 {} with a search ≥ 0.90× without", row.variant),
            measured: row.ratio.map_or_else(|| "—".to_owned(), times),
            met: row.ratio.map(|ratio| ratio >= 0.90),
        });
    }
    // The target is for local disk; the cluster's row is for comparison.
    for row in report
        .w10
        .iter()
        .filter(|row| row.system == SystemKind::BaaLogd)
    {
        for (what, ratio) in [
            ("upload", row.upload_ratio),
            ("download", row.download_ratio),
        ] {
            out.push(TargetCheck {
                target: format!(
                    "W10: a {} MiB {what} ≥ 0.5× dd conv=fsync ({})",
                    row.object_mib, row.filesystem
                ),
                measured: ratio.map_or_else(|| "—".to_owned(), times),
                met: ratio.map(|ratio| ratio >= 0.5),
            });
        }
    }
    out
}

/// baa-logd on JetStream in any configuration.
const JETSTREAM_LOGD: [SystemKind; 3] = [
    SystemKind::BaaLogdJs1,
    SystemKind::BaaLogdJs3,
    SystemKind::BaaLogdJs3Sync,
];

/// The name of the ratio of baa-logd on JetStream as `kind` in W1's
/// `variant` to raw JetStream publishes to the same kind of cluster.
fn jetstream_w1_workload(variant: &str, kind: SystemKind) -> String {
    format!("W1 {variant}, {kind}")
}

/// The name of the ratio of baa-logd on JetStream as `kind` in W2 with
/// `followers` followers to baa-logd on local disk.
fn jetstream_w2_workload(followers: usize, kind: SystemKind) -> String {
    format!("W2 {followers} followers, {kind}")
}

/// baa-logd on JetStream against raw one-line-per-message publishes to a
/// cluster of 3 replicas with `sync_interval: always` (W1), and against
/// baa-logd on local disk (W2 p99).
fn jetstream_ratios(report: &Report) -> Vec<Ratio> {
    let mut out = Vec::new();
    let rate = |variant: &str, system: SystemKind| {
        report
            .w1
            .iter()
            .find(|row| row.variant == variant && row.system == system && row.entries > 0)
            .map(|row| row.entries_per_sec)
    };
    for variant in ["own runs", "shared run", "own runs, one line per message"] {
        let Some(raw) = rate(variant, SystemKind::NatsJs3Sync) else {
            continue;
        };
        for kind in JETSTREAM_LOGD {
            if let Some(baa) = rate(variant, kind) {
                out.push(Ratio {
                    workload: jetstream_w1_workload(variant, kind),
                    measure: "entries/s (higher is better)",
                    versus: SystemKind::NatsJs3Sync,
                    ratio: Some(baa / raw),
                });
            }
        }
    }
    let p99 = |followers: usize, system: SystemKind| {
        report
            .w2
            .iter()
            .find(|row| row.followers == followers && row.system == system)
            .and_then(|row| row.latency.filter(|l| l.count > 0))
            .map(|l| l.p99_ms)
    };
    let mut follower_counts: Vec<usize> = report.w2.iter().map(|row| row.followers).collect();
    follower_counts.dedup();
    for followers in follower_counts {
        let Some(local) = p99(followers, SystemKind::BaaLogd) else {
            continue;
        };
        for kind in JETSTREAM_LOGD {
            if let Some(theirs) = p99(followers, kind) {
                out.push(Ratio {
                    workload: jetstream_w2_workload(followers, kind),
                    measure: "p99 latency (lower is better)",
                    versus: SystemKind::BaaLogd,
                    ratio: Some(theirs / local),
                });
            }
        }
    }
    out
}

/// The JetStream backend's targets: W1 through baa-logd on a 3-replica
/// stream with `sync_interval: always` at least 2× raw one-line publishes
/// to the same cluster, and W2 with 4 followers (on another node) within
/// 5× baa-logd on local disk's p99.
fn jetstream_targets(report: &Report) -> Vec<TargetCheck> {
    let kind = SystemKind::BaaLogdJs3Sync;
    let ratio = |workload: &str| {
        report
            .ratios
            .iter()
            .find(|ratio| ratio.workload == workload)
            .and_then(|ratio| ratio.ratio)
    };
    let mut out = Vec::new();
    let measured_w1 = |system: SystemKind| report.w1.iter().any(|row| row.system == system);
    if measured_w1(kind) || measured_w1(SystemKind::NatsJs3Sync) {
        let got = ratio(&jetstream_w1_workload("own runs", kind));
        out.push(TargetCheck {
            target: "W1 own runs: baa-logd on JetStream (3 servers, R3, sync always) \
                     entries/s ≥ 2× raw one-line publishes to the same kind of cluster"
                .to_owned(),
            measured: got.map_or_else(|| "—".to_owned(), times),
            met: got.map(|r| r >= 2.0),
        });
    }
    if report.w2.iter().any(|row| row.system == kind) {
        let counts: Vec<usize> = report.w2.iter().map(|row| row.followers).collect();
        let followers = if counts.contains(&4) {
            Some(4)
        } else {
            counts.iter().min().copied()
        };
        if let Some(followers) = followers {
            let got = ratio(&jetstream_w2_workload(followers, kind));
            out.push(TargetCheck {
                target: format!(
                    "W2 {followers} followers on another node: baa-logd on JetStream \
                     (3 servers, R3, sync always) p99 ≤ 5× baa-logd on local disk"
                ),
                measured: got.map_or_else(|| "—".to_owned(), times),
                met: got.map(|r| r <= 5.0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with only these W1 and W2 rows.
    fn report(w1: Vec<ThroughputRow>, w2: Vec<FanOutRow>) -> Report {
        Report {
            command: String::new(),
            machine: Machine {
                cpu: String::new(),
                cpus: 2,
                memory_mib: 0,
                kernel: String::new(),
            },
            parameters: serde_json::Value::Null,
            w1,
            w2,
            w3: Vec::new(),
            w4: Vec::new(),
            w5: Vec::new(),
            w6: Vec::new(),
            w7_scan: Vec::new(),
            w7_writes: Vec::new(),
            w8: Vec::new(),
            w9_page: Vec::new(),
            w9_live: Vec::new(),
            w10: Vec::new(),
            ratios: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// A W1 own-runs row of `system` at `rate` entries/s.
    fn own_runs(system: SystemKind, rate: f64) -> ThroughputRow {
        ThroughputRow {
            variant: "own runs",
            system,
            entries: 1_000,
            secs: 1_000.0 / rate,
            entries_per_sec: rate,
            mb_per_sec: 0.0,
            cpu_secs_per_million: None,
            peak_rss_mib: None,
            note: None,
        }
    }

    /// A W2 row of `system` with 4 followers and `p99_ms`.
    fn four_followers(system: SystemKind, p99_ms: f64) -> FanOutRow {
        FanOutRow {
            followers: 4,
            system,
            latency: Some(LatencySummary {
                count: 100,
                p50_ms: p99_ms / 2.0,
                p99_ms,
                max_ms: p99_ms,
            }),
            sent: 100,
            sent_per_sec: 100.0,
            complete: Some(true),
            delivered: 400,
            cpu_secs: None,
            client_cpu_secs: None,
            peak_rss_mib: None,
            note: None,
        }
    }

    /// The JetStream targets' verdicts, in order.
    fn jetstream_verdicts(mut report: Report) -> Vec<(String, Option<bool>)> {
        report.conclude();
        report
            .targets
            .into_iter()
            .filter(|check| {
                check
                    .target
                    .contains("JetStream (3 servers, R3, sync always)")
            })
            .map(|check| (check.measured, check.met))
            .collect()
    }

    /// W1 is met at 2× raw one-line publishes and not below; W2 at 5×
    /// baa-logd on local disk's p99 and not above.
    #[test]
    fn jetstream_targets_compare_against_the_right_rows() {
        let met = report(
            vec![
                own_runs(SystemKind::BaaLogd, 1_000_000.0),
                own_runs(SystemKind::BaaLogdJs3Sync, 100_000.0),
                own_runs(SystemKind::NatsJs3Sync, 50_000.0),
            ],
            vec![
                four_followers(SystemKind::BaaLogd, 2.0),
                four_followers(SystemKind::BaaLogdJs3, 50.0),
                four_followers(SystemKind::BaaLogdJs3Sync, 10.0),
            ],
        );
        assert_eq!(
            jetstream_verdicts(met),
            vec![
                ("2.00×".to_owned(), Some(true)),
                ("5.00×".to_owned(), Some(true)),
            ]
        );
        let missed = report(
            vec![
                own_runs(SystemKind::BaaLogdJs3Sync, 99_000.0),
                own_runs(SystemKind::NatsJs3Sync, 50_000.0),
            ],
            vec![
                four_followers(SystemKind::BaaLogd, 2.0),
                four_followers(SystemKind::BaaLogdJs3Sync, 10.2),
            ],
        );
        assert_eq!(
            jetstream_verdicts(missed)
                .into_iter()
                .map(|(_, met)| met)
                .collect::<Vec<_>>(),
            vec![Some(false), Some(false)]
        );
    }
}
