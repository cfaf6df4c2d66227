//! The command line: every workload's parameters as flags, with defaults
//! sized for a 2-core machine, and `--smoke` for a run of a few seconds
//! that only proves the harness works.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    payload::{LineShape, Plant},
    systems::SystemKind,
    workloads::{
        browser::{self, BrowserParams},
        exec_overhead::ExecOverheadParams,
        fan_out::FanOutParams,
        many_runs::ManyRunsParams,
        objects::ObjectsParams,
        restart::RestartParams,
        search::{LITERAL, SearchParams},
        slow_followers::SlowFollowersParams,
        tail::TailParams,
        throughput::ThroughputParams,
    },
};

/// Benchmarks baa-logd against NATS JetStream, Redis Streams and the
/// transport and disk ceilings, in one run on one machine, and prints a
/// Markdown report (stdout) and a JSON file. Start the peers first with
/// `scripts/peers.sh start`; a peer that is not running gets a row that
/// says so.
#[derive(Debug, Parser)]
#[command(name = "baa-bench", version)]
pub(crate) struct Cli {
    /// A helper server instead of the benchmark.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// The benchmark's flags.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
}

/// Helper processes the harness starts itself.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serves the transport ceiling: a LoggingService that stores nothing.
    NoopServer {
        /// The address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Append messages each run's relay keeps for lagging followers.
        #[arg(long, default_value_t = 4096)]
        relay_capacity: usize,
    },
    /// Prints numbered lines to stdout as fast as it can: the command W8
    /// runs, bare and under `baa-log exec`.
    #[command(hide = true)]
    PrintLines {
        /// Lines to print.
        #[arg(long)]
        lines: u64,
        /// Bytes per line, newline included.
        #[arg(long)]
        line_bytes: usize,
        /// One write per line instead of blocks of about 64 KiB.
        #[arg(long)]
        write_per_line: bool,
        /// A file to write the monotonic clock to, before the first write
        /// and after the last: W8 sets it to learn the command's own time,
        /// which under `baa-log exec` is not exec's.
        #[arg(long, env = crate::print_lines::TIMING_ENV)]
        timing: Option<PathBuf>,
    },
}

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Throughput.
    W1,
    /// Fan-out latency.
    W2,
    /// Many runs.
    W3,
    /// Restart.
    W4,
    /// Slow followers.
    W5,
    /// Tail of a large run.
    W6,
    /// Search.
    W7,
    /// What `baa-log exec` adds to a command.
    W8,
    /// The run page in a headless chromium.
    W9,
    /// A large artifact uploaded and downloaded, against dd.
    W10,
}

/// The benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Which workloads to run.
    #[arg(long, value_delimiter = ',', default_values = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9", "w10"])]
    pub(crate) workloads: Vec<Workload>,
    /// Which systems to measure, where a workload applies to them.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = [
            "baa-logd", "nats", "redis", "transport", "disk", "baa-logd-client",
            "baa-logd-sync", "nats-sync", "redis-always",
        ]
    )]
    pub(crate) systems: Vec<SystemKind>,
    /// Tiny sizes and a few seconds in all: checks that the harness works,
    /// measures nothing worth keeping. Overrides the sizes below.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// The baa-logd binary; by default it is built with cargo, in the
    /// harness's own profile.
    #[arg(long, env = "BAA_BENCH_SERVER_BIN")]
    pub(crate) server_bin: Option<PathBuf>,
    /// The baa-log binary (W8); by default it is built with cargo, in the
    /// harness's own profile.
    #[arg(long, env = "BAA_BENCH_CLI_BIN")]
    pub(crate) cli_bin: Option<PathBuf>,
    /// Where `scripts/peers.sh` keeps the peers' addresses and pids.
    #[arg(
        long,
        env = "BAA_BENCH_PEERS_DIR",
        default_value = "/tmp/baa-bench-peers"
    )]
    pub(crate) peers_dir: PathBuf,
    /// The nats-server of the NATS clusters the harness starts itself
    /// (the `baa-logd-js*` and `nats-js3-sync` systems); by default the
    /// pinned one `scripts/install-nats-server.sh` installs.
    #[arg(long, env = "BAA_NATS_SERVER")]
    pub(crate) nats_server_bin: Option<PathBuf>,
    /// Leave the peers out even when they run.
    #[arg(long)]
    pub(crate) no_peers: bool,
    /// W1–W3: put the server measured on the first half of the cores and
    /// the harness on the rest, for steadier figures (see `pin`).
    #[arg(long)]
    pub(crate) pin: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/baa-bench.json")]
    pub(crate) json: PathBuf,
    /// Where to write the SVG charts.
    #[arg(long, default_value = "target/baa-bench-charts")]
    pub(crate) charts: PathBuf,

    /// Bytes per line, newline included (every workload).
    #[arg(long, default_value_t = 120)]
    pub(crate) line_bytes: usize,

    /// W1: concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub(crate) w1_writers: usize,
    /// W1: lines each writer sends.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) w1_lines: u64,
    /// W1: lines each writer sends to a durable system (one that syncs
    /// before it acknowledges), where each costs far more.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) w1_durable_lines: u64,
    /// W1: lines each writer sends in the variant with one line per Append
    /// message (per Redis command, per NATS publish).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) w1_small_lines: u64,
    /// W1 and W4: lines per batch (an AppendLogs message, a Redis pipeline).
    #[arg(long, default_value_t = 256)]
    pub(crate) batch_lines: usize,

    /// W2: lines per second the writer sends.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) w2_rate: u64,
    /// W2: seconds the writer writes.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) w2_secs: f64,
    /// W2: the numbers of followers, one phase each.
    #[arg(long, value_delimiter = ',', default_values_t = [4, 64])]
    pub(crate) w2_followers: Vec<usize>,

    /// W3: runs, each with an open append stream and a follower. 10,000,
    /// as the issue asks: baa-logd keeps at most `max_open_files` of the
    /// runs' files open (half its descriptor limit), so the runs fit
    /// under a hard limit of 20,000 open files per process.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) w3_runs: usize,
    /// W3: seconds of steady state measured.
    #[arg(long, default_value_t = 10)]
    pub(crate) w3_secs: u64,
    /// W3: seconds of steady state before measuring.
    #[arg(long, default_value_t = 3)]
    pub(crate) w3_warmup_secs: u64,
    /// W3: runs whose streams share one client connection.
    #[arg(long, default_value_t = 100)]
    pub(crate) w3_runs_per_connection: usize,

    /// W4: runs in the data directory.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) w4_runs: usize,
    /// W4: entries over all runs.
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) w4_entries: u64,
    /// W4: the share of the entries in the one large run that is followed.
    #[arg(long, default_value_t = 0.2)]
    pub(crate) w4_large_share: f64,
    /// W4: restart only with the page cache warm, not also with it
    /// dropped (which needs root).
    #[arg(long)]
    pub(crate) w4_warm_only: bool,
    /// W5: followers that never read, on one connection.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) w5_followers: usize,
    /// W5: the size of the run they follow, MiB.
    #[arg(long, default_value_t = 100)]
    pub(crate) w5_run_mib: u64,

    /// W6: entries in the one run (written by `--w1-writers` writers).
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) w6_entries: u64,
    /// W6: the entries the tail asks for.
    #[arg(long, default_value_t = 100)]
    pub(crate) w6_tail: u64,
    /// W6: timed history follows of the whole run.
    #[arg(long, default_value_t = 3)]
    pub(crate) w6_full_repeats: usize,
    /// W6: timed history follows of the tail.
    #[arg(long, default_value_t = 5)]
    pub(crate) w6_tail_repeats: usize,

    /// W7: one line in this many carries the searched literal (over the
    /// W4 data set: `--w4-runs`, `--w4-entries`, `--w4-large-share`).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) w7_every: u64,
    /// W7: timed searches and greps, each, after one untimed of each.
    #[arg(long, default_value_t = 3)]
    pub(crate) w7_repeats: usize,
    /// W7: rounds of W1 without and with a search (W1 swings between
    /// phases on a shared machine: the median of many paired rounds).
    #[arg(long, default_value_t = 11)]
    pub(crate) w7_rounds: usize,
    /// W7: seconds the search runs before W1 starts beside it (past the
    /// first second, which a new search may scan at full speed).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) w7_lead_secs: f64,

    /// W8: lines the command prints as large writes.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) w8_lines: u64,
    /// W8: lines the command prints with one write each (0 leaves the
    /// write-per-line rows out).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) w8_line_writes: u64,
    /// W8: bytes per line the command prints, newline included.
    #[arg(long, default_value_t = 80)]
    pub(crate) w8_line_bytes: usize,
    /// W8: rounds, each the command bare and under `baa-log exec`, on a
    /// pipe and on a terminal.
    #[arg(long, default_value_t = 5)]
    pub(crate) w8_rounds: usize,

    /// W9: lines in the finished run the page opens, one an entry.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) w9_lines: u64,
    /// W9: bytes per line, newline included.
    #[arg(long, default_value_t = 80)]
    pub(crate) w9_line_bytes: usize,
    /// W9: timed navigations to the finished run (the median is shown).
    #[arg(long, default_value_t = 5)]
    pub(crate) w9_navigations: usize,
    /// W9: the most seconds the scroll from the run's end to its start
    /// may take; how far it got is reported.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) w9_scroll_secs: f64,
    /// W9: lines per second written into the live run.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) w9_rate: u64,
    /// W9: seconds of measured writing into the live run.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) w9_secs: f64,
    /// W9: seconds of writing into the live run before the measured ones.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) w9_warmup_secs: f64,
    /// W9: the Python with Playwright; by default the browser tests' venv
    /// (`tests/browser/.venv`, made by `scripts/browser-setup.sh`).
    #[arg(long, env = "BAA_BENCH_PYTHON")]
    pub(crate) w9_python: Option<PathBuf>,
    /// W10: the artifact's size, MiB.
    #[arg(long, default_value_t = 1024)]
    pub(crate) w10_mib: u64,
    /// W10: timed rounds, each dd, an upload and a download of the
    /// artifact (after one untimed round).
    #[arg(long, default_value_t = 5)]
    pub(crate) w10_rounds: usize,
}

impl BenchArgs {
    /// The sizes `--smoke` uses instead of the flags.
    pub(crate) fn apply_smoke(&mut self) {
        if !self.smoke {
            return;
        }
        self.w1_writers = 2;
        self.w1_lines = 2_000;
        self.w1_durable_lines = 1_000;
        self.w1_small_lines = 200;
        self.w2_rate = 1_000;
        self.w2_secs = 1.0;
        self.w2_followers = vec![2];
        self.w3_runs = 20;
        self.w3_secs = 1;
        self.w3_warmup_secs = 1;
        self.w3_runs_per_connection = 10;
        self.w4_runs = 5;
        self.w4_entries = 5_000;
        self.w4_warm_only = true;
        self.w5_followers = 20;
        self.w5_run_mib = 2;
        self.w6_entries = 5_000;
        self.w7_every = 100;
        self.w7_rounds = 1;
        self.w7_lead_secs = 0.2;
        self.w8_lines = 20_000;
        self.w8_line_writes = 2_000;
        self.w8_rounds = 1;
        self.w9_lines = 20_000;
        self.w9_navigations = 2;
        self.w9_scroll_secs = 10.0;
        self.w9_secs = 2.0;
        self.w9_warmup_secs = 0.5;
        self.w10_mib = 16;
        self.w10_rounds = 1;
    }

    /// W1's parameters.
    pub(crate) fn throughput(&self) -> ThroughputParams {
        ThroughputParams {
            writers: self.w1_writers,
            lines: self.w1_lines,
            durable_lines: self.w1_durable_lines,
            small_lines: self.w1_small_lines,
            line_bytes: self.line_bytes,
            batch_lines: self.batch_lines,
        }
    }

    /// W2's parameters.
    pub(crate) fn fan_out(&self) -> FanOutParams {
        FanOutParams {
            rate: self.w2_rate,
            secs: self.w2_secs,
            followers: self.w2_followers.clone(),
            line_bytes: self.line_bytes,
        }
    }

    /// W3's parameters.
    pub(crate) fn many_runs(&self) -> ManyRunsParams {
        ManyRunsParams {
            runs: self.w3_runs,
            secs: self.w3_secs,
            warmup_secs: self.w3_warmup_secs,
            runs_per_connection: self.w3_runs_per_connection,
            line_bytes: self.line_bytes,
        }
    }

    /// W5's parameters.
    pub(crate) fn slow_followers(&self) -> SlowFollowersParams {
        SlowFollowersParams {
            followers: self.w5_followers,
            run_mib: self.w5_run_mib,
            line_bytes: self.line_bytes,
            batch_lines: self.batch_lines,
        }
    }

    /// W6's parameters.
    pub(crate) fn tail(&self) -> TailParams {
        TailParams {
            entries: self.w6_entries,
            writers: self.w1_writers,
            shape: self.lines(None),
            tail: self.w6_tail,
            full_repeats: self.w6_full_repeats,
            tail_repeats: self.w6_tail_repeats,
        }
    }

    /// W7's parameters: W4's data set with a literal planted, and W1.
    pub(crate) fn search(&self) -> SearchParams {
        let mut data_set = self.restart().data_set();
        data_set.shape = self.lines(Some(Plant {
            literal: LITERAL,
            every: self.w7_every,
        }));
        SearchParams {
            data_set,
            repeats: self.w7_repeats,
            rounds: self.w7_rounds,
            lead_secs: self.w7_lead_secs,
            w1: self.throughput(),
        }
    }

    /// W8's parameters.
    pub(crate) fn exec_overhead(&self) -> ExecOverheadParams {
        ExecOverheadParams {
            lines: self.w8_lines,
            line_writes: self.w8_line_writes,
            line_bytes: self.w8_line_bytes,
            rounds: self.w8_rounds,
        }
    }

    /// W9's parameters.
    pub(crate) fn browser(&self) -> BrowserParams {
        BrowserParams {
            lines: self.w9_lines,
            line_bytes: self.w9_line_bytes,
            navigations: self.w9_navigations,
            scroll_secs: self.w9_scroll_secs,
            rate: self.w9_rate,
            secs: self.w9_secs,
            warmup_secs: self.w9_warmup_secs,
            python: self
                .w9_python
                .clone()
                .unwrap_or_else(browser::default_python),
            chromium: browser::find_chromium(),
            script: browser::default_script(),
        }
    }

    /// W10's parameters.
    pub(crate) fn objects(&self) -> ObjectsParams {
        ObjectsParams {
            mib: self.w10_mib,
            rounds: self.w10_rounds,
        }
    }

    /// The lines batch writers send, carrying `plant` if any.
    fn lines(&self, plant: Option<Plant>) -> LineShape {
        LineShape {
            bytes: self.line_bytes,
            per_batch: self.batch_lines,
            plant,
        }
    }

    /// W4's parameters.
    pub(crate) fn restart(&self) -> RestartParams {
        RestartParams {
            runs: self.w4_runs,
            entries: self.w4_entries,
            large_share: self.w4_large_share,
            writers: self.w1_writers,
            line_bytes: self.line_bytes,
            batch_lines: self.batch_lines,
            cold: !self.w4_warm_only,
        }
    }
}
