//! The standard `process_*` metrics of the server process, read at each
//! scrape from the kernel: CPU time, memory, open and allowed file
//! descriptors, and the start time. On a system without `/proc` the
//! figures that need it are left out.

use std::fs;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// Reads the process's figures at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// When the process started, in seconds since the Unix epoch; it never
    /// changes, so it is read once.
    start_time: Option<f64>,
}

impl ProcessCollector {
    /// A collector for this process.
    pub(super) fn new() -> Self {
        Self {
            start_time: start_time(),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
            let seconds = |time: nix::sys::time::TimeVal| {
                time.tv_sec() as f64 + time.tv_usec() as f64 / 1_000_000.0
            };
            let cpu = ConstCounter::new(seconds(usage.user_time()) + seconds(usage.system_time()));
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some((resident, virtual_size)) = memory() {
            let gauge = ConstGauge::new(resident as i64);
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                gauge.metric_type(),
            )?)?;
            let gauge = ConstGauge::new(virtual_size as i64);
            gauge.encode(encoder.encode_descriptor(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Ok(fds) = fs::read_dir("/proc/self/fd") {
            let gauge = ConstGauge::new(fds.count() as i64);
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let gauge = ConstGauge::new(i64::try_from(soft).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(start_time) = self.start_time {
            let gauge = ConstGauge::new(start_time);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Resident and virtual memory in bytes, from `/proc/self/status`.
fn memory() -> Option<(u64, u64)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .map(|value| value * 1024)
    };
    Some((kib("VmRSS:")?, kib("VmSize:")?))
}

/// The process's start time in seconds since the Unix epoch: the boot time
/// from `/proc/stat` plus the start in clock ticks from `/proc/self/stat`.
fn start_time() -> Option<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let boot: f64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count the fields
    // after it. The start time is field 22 of the line, the 20th after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let started: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(boot + started / ticks as f64)
}
