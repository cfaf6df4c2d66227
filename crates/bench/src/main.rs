//! `baa-bench`: the benchmark harness of baa-logging.
//!
//! It starts `baa-logd` (the release build of this workspace) as a process
//! of its own on loopback, over a fresh data directory for every measured
//! phase, drives it over gRPC with the generated stubs, and does the same
//! workloads against NATS JetStream and Redis Streams (started by
//! `scripts/peers.sh`), a no-op gRPC server (the transport ceiling, this
//! binary's `noop-server` subcommand) and plain buffered files (the disk
//! ceiling). It prints a Markdown report on stdout, progress on stderr, and
//! writes the same results as JSON.
//!
//! # Layout
//!
//! - `args`: the flags, one per workload parameter, and `--smoke`.
//! - `workloads`: W1 throughput, W2 fan-out, W3 many runs, W4 restart,
//!   W5 slow followers, W6 tail, W7 search, W8 exec overhead, W9 the run
//!   page in a headless chromium (driven by `browser/page_figures.py`),
//!   W10 objects.
//! - `systems`: every system behind one interface (writers, followers).
//! - `noop`: the transport ceiling's server.
//! - `print_lines`: the command W8 runs, bare and under `baa-log exec`.
//! - `process`, `procfs`: server processes and their CPU time and memory.
//! - `pin`: `--pin`, the servers and the harness on cores of their own.
//! - `payload`, `latency`, `samples`, `progress`, `report`: lines with
//!   send times, histograms, medians of repeated timings, progress on
//!   stderr, the Markdown and JSON results.

mod args;
mod charts;
mod error;
mod latency;
mod noop;
mod payload;
mod pin;
mod print_lines;
mod process;
mod procfs;
mod progress;
mod report;
mod samples;
mod systems;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

use crate::{
    args::{BenchArgs, Cli, Command, Workload},
    error::{BenchError, Result},
    process::Programs,
    report::{Machine, Report},
    systems::{Launcher, Peers, SystemKind},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::NoopServer {
            listen,
            relay_capacity,
        }) => block_on(noop::serve(listen, relay_capacity)),
        // The command W8 times: no runtime to start, nothing but the writes.
        Some(Command::PrintLines {
            lines,
            line_bytes,
            write_per_line,
            timing,
        }) => print_lines::print(lines, line_bytes, write_per_line, timing.as_deref()),
        None => block_on(bench(cli.bench)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baa-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `future` on a new multi-threaded runtime.
fn block_on(future: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| BenchError::io("cannot start the runtime", err))?
        .block_on(future)
}

/// Runs the chosen workloads and reports.
async fn bench(mut args: BenchArgs) -> Result<()> {
    args.apply_smoke();
    if args.line_bytes < payload::MIN_LINE_BYTES {
        return Err(BenchError::Failed(format!(
            "--line-bytes must be at least {}",
            payload::MIN_LINE_BYTES
        )));
    }
    // W3 holds tens of thousands of sockets; the default soft limit of
    // 1024 descriptors would stop it at a few hundred runs.
    raise_nofile_limit();
    payload::now_micros();
    let programs = Programs::find(args.server_bin.clone())?;
    let peers = if args.no_peers {
        Peers::none("left out (--no-peers)")
    } else {
        Peers::load(&args.peers_dir)
    };
    let pinning = match args.pin {
        true => {
            let pinning = pin::Pinning::split()?;
            pinning.pin_harness()?;
            progress::phase(&format!("pinned: {}", pinning.describe()));
            Some(pinning)
        }
        false => None,
    };
    let launcher = Launcher {
        programs,
        nats_server: args.nats_server_bin.clone(),
        peers,
        pinning: pinning.clone(),
    };
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::read(),
        parameters: parameters(&args),
        w1: Vec::new(),
        w2: Vec::new(),
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
    };
    use SystemKind::{
        BaaLogd, BaaLogdClient, BaaLogdJs1, BaaLogdJs3, BaaLogdJs3Sync, BaaLogdSync, DiskCeiling,
        Nats, NatsJs3Sync, NatsSync, Redis, RedisAlways, TransportCeiling,
    };
    let chosen = |all: &[SystemKind]| -> Vec<SystemKind> {
        all.iter()
            .copied()
            .filter(|kind| args.systems.contains(kind))
            .collect()
    };
    if args.workloads.contains(&Workload::W1) {
        let systems = chosen(&[
            BaaLogd,
            BaaLogdClient,
            Nats,
            Redis,
            TransportCeiling,
            DiskCeiling,
            BaaLogdSync,
            NatsSync,
            RedisAlways,
            BaaLogdJs1,
            BaaLogdJs3,
            BaaLogdJs3Sync,
            NatsJs3Sync,
        ]);
        report.w1 = workloads::throughput::run(&launcher, &args.throughput(), &systems).await;
    }
    if args.workloads.contains(&Workload::W2) {
        let systems = chosen(&[
            BaaLogd,
            Nats,
            Redis,
            TransportCeiling,
            BaaLogdSync,
            BaaLogdJs1,
            BaaLogdJs3,
            BaaLogdJs3Sync,
            NatsJs3Sync,
        ]);
        report.w2 = workloads::fan_out::run(&launcher, &args.fan_out(), &systems).await;
    }
    if args.workloads.contains(&Workload::W3) {
        let systems = chosen(&[BaaLogd, Nats, Redis, TransportCeiling, BaaLogdSync]);
        report.w3 = workloads::many_runs::run(&launcher, &args.many_runs(), &systems).await;
    }
    if args.workloads.contains(&Workload::W4) && args.systems.contains(&BaaLogd) {
        report.w4 = workloads::restart::run(&launcher.programs.baa_logd, &args.restart()).await;
    }
    if args.workloads.contains(&Workload::W5) && args.systems.contains(&BaaLogd) {
        report.w5 = workloads::slow_followers::run(&launcher, &args.slow_followers()).await;
    }
    if args.workloads.contains(&Workload::W6) && args.systems.contains(&BaaLogd) {
        report.w6 = workloads::tail::run(&launcher, &args.tail()).await;
    }
    if args.workloads.contains(&Workload::W7) && args.systems.contains(&BaaLogd) {
        let rows = workloads::search::run(&launcher.programs.baa_logd, &args.search()).await;
        report.w7_scan = rows.scan;
        report.w7_writes = rows.writes;
    }
    if args.workloads.contains(&Workload::W8) && args.systems.contains(&BaaLogd) {
        report.w8 = workloads::exec_overhead::run(
            &launcher.programs,
            args.cli_bin.clone(),
            &args.exec_overhead(),
        )
        .await;
    }
    if args.workloads.contains(&Workload::W9) && args.systems.contains(&BaaLogd) {
        (report.w9_page, report.w9_live) =
            workloads::browser::run(&launcher, &args.browser()).await;
    }
    if args.workloads.contains(&Workload::W10) {
        let systems = chosen(&[BaaLogd, BaaLogdJs3Sync]);
        report.w10 =
            workloads::objects::run(&launcher, args.cli_bin.clone(), &args.objects(), &systems)
                .await;
    }
    report.conclude();
    print!("{}", report.to_markdown());
    if let Some(parent) = args.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    std::fs::write(&args.json, json)
        .map_err(|err| BenchError::io(format!("cannot write {}", args.json.display()), err))?;
    eprintln!("results written to {}", args.json.display());
    for chart in charts::write(&report, &args.charts)? {
        eprintln!("chart written to {}", chart.display());
    }
    let wrong = report.wrong_answers();
    if !wrong.is_empty() {
        return Err(BenchError::Failed(format!(
            "wrong answers void the figures: {}",
            wrong.join("; ")
        )));
    }
    Ok(())
}

/// Raises the open-file limit as far as it goes, for this process and the
/// servers it starts (they inherit it). As root that is the kernel's
/// `nr_open`, past the hard limit: baa-logd holds a few descriptors per
/// open run and follower, and W3 opens tens of thousands.
fn raise_nofile_limit() {
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(ceiling) = ceiling
        && rlimit::Resource::NOFILE.set(ceiling, ceiling).is_ok()
    {
        return;
    }
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open-file limit: {err}");
    }
}

/// The parameters of every workload, for the JSON file.
fn parameters(args: &BenchArgs) -> serde_json::Value {
    serde_json::json!({
        "smoke": args.smoke,
        "pin": args.pin,
        "w1": args.throughput(),
        "w2": args.fan_out(),
        "w3": args.many_runs(),
        "w4": args.restart(),
        "w5": args.slow_followers(),
        "w6": args.tail(),
        "w7": args.search(),
        "w8": args.exec_overhead(),
        "w9": args.browser(),
        "w10": args.objects(),
    })
}
