//! What the kernel says about a server process: CPU time from
//! `/proc/<pid>/stat`, resident memory from `/proc/<pid>/status`.
//!
//! The CPU time is the process's own `utime + stime`, so the client's work
//! on the same two cores never counts against the server. Peak RSS is the
//! kernel's high-water mark `VmHWM`; a long-lived peer's mark is reset
//! between measurements by writing `5` to `/proc/<pid>/clear_refs`.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times. `USER_HZ` is 100 on
/// every Linux architecture the harness runs on; the kernel keeps it fixed
/// for user space whatever its internal tick is.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcReading {
    /// User plus system CPU time so far, in seconds.
    pub(crate) cpu_secs: f64,
    /// Resident memory now, in bytes.
    pub(crate) rss_bytes: u64,
    /// The highest resident memory since start or the last reset, in bytes.
    pub(crate) peak_rss_bytes: u64,
}

/// Reads the CPU time and memory of `pid`; `None` when the process is gone
/// or `/proc` cannot be read.
pub(crate) fn read(pid: u32) -> Option<ProcReading> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last `)`. The first field there is the state (field 3), so utime
    // (field 14) and stime (field 15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            * 1024
    };
    Some(ProcReading {
        cpu_secs: (utime + stime) / TICKS_PER_SECOND,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    })
}

/// Resets the peak RSS of `pid` to its current RSS. Returns false when the
/// kernel refused (then the peak covers the process's whole life).
pub(crate) fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time and peak memory of a process over one measured phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhaseMeter {
    pid: u32,
    start: ProcReading,
}

impl PhaseMeter {
    /// Starts measuring `pid`: resets its peak and notes its CPU time.
    pub(crate) fn start(pid: u32) -> Self {
        reset_peak(pid);
        Self {
            pid,
            start: read(pid).unwrap_or_default(),
        }
    }

    /// CPU seconds since the start, and the peak RSS in bytes.
    pub(crate) fn stop(&self) -> PhaseUsage {
        let end = read(self.pid).unwrap_or_default();
        PhaseUsage {
            cpu_secs: (end.cpu_secs - self.start.cpu_secs).max(0.0),
            peak_rss_bytes: end.peak_rss_bytes,
        }
    }
}

/// What a process used over a phase.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PhaseUsage {
    /// CPU seconds spent in the phase.
    pub(crate) cpu_secs: f64,
    /// The peak resident memory over the phase, in bytes.
    pub(crate) peak_rss_bytes: u64,
}

/// CPU time and peak memory of the processes of one system over a phase:
/// one server, or every node and NATS server of a cluster, summed.
#[derive(Debug, Clone)]
pub(crate) struct GroupMeter {
    meters: Vec<PhaseMeter>,
}

impl GroupMeter {
    /// Starts measuring each of `pids`; `None` when there are none (a
    /// system that is no process of its own).
    pub(crate) fn start(pids: &[u32]) -> Option<Self> {
        (!pids.is_empty()).then(|| Self {
            meters: pids.iter().copied().map(PhaseMeter::start).collect(),
        })
    }

    /// The CPU seconds of every process since the start, and the sum of
    /// their peak RSS in bytes.
    pub(crate) fn stop(&self) -> PhaseUsage {
        self.meters
            .iter()
            .map(PhaseMeter::stop)
            .fold(PhaseUsage::default(), |sum, usage| PhaseUsage {
                cpu_secs: sum.cpu_secs + usage.cpu_secs,
                peak_rss_bytes: sum.peak_rss_bytes + usage.peak_rss_bytes,
            })
    }
}
