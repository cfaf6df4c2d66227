//! `--pin`: the servers on some cores, the harness on the others.
//!
//! On a small machine the server and the harness's writers take turns on
//! the same cores, and the figures swing with the scheduler. Pinned, each
//! side has cores of its own: the first half of the harness's allowed
//! cores (rounded up) go to the server measured, the rest to the harness.
//! Every thread a process has is pinned; the threads it starts later
//! inherit the affinity of the thread that starts them.

use std::fs;

use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    unistd::Pid,
};

use crate::error::{BenchError, Result};

/// Which cores each side gets.
#[derive(Debug, Clone)]
pub(crate) struct Pinning {
    /// The server's cores.
    server: Vec<usize>,
    /// The harness's cores.
    harness: Vec<usize>,
}

impl Pinning {
    /// Splits the cores this process may run on. Needs two at least.
    pub(crate) fn split() -> Result<Self> {
        let allowed = sched_getaffinity(Pid::from_raw(0))
            .map_err(|err| BenchError::Failed(format!("--pin: cannot read the affinity: {err}")))?;
        let cores: Vec<usize> = (0..CpuSet::count())
            .filter(|core| allowed.is_set(*core).unwrap_or(false))
            .collect();
        if cores.len() < 2 {
            return Err(BenchError::Failed(format!(
                "--pin needs two cores at least; this process may run on {}",
                cores.len()
            )));
        }
        let half = cores.len().div_ceil(2);
        Ok(Self {
            server: cores[..half].to_vec(),
            harness: cores[half..].to_vec(),
        })
    }

    /// Pins every thread of the harness to its cores.
    pub(crate) fn pin_harness(&self) -> Result<()> {
        pin_threads(std::process::id(), &self.harness)
    }

    /// Pins every thread of server process `pid` to the server's cores.
    pub(crate) fn pin_server(&self, pid: u32) -> Result<()> {
        pin_threads(pid, &self.server)
    }

    /// Says which cores each side has, for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "server on cores {:?}, harness on cores {:?}",
            self.server, self.harness
        )
    }
}

/// Pins every thread of `pid` to `cores`.
fn pin_threads(pid: u32, cores: &[usize]) -> Result<()> {
    let mut set = CpuSet::new();
    for core in cores {
        set.set(*core)
            .map_err(|err| BenchError::Failed(format!("--pin: core {core}: {err}")))?;
    }
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|err| BenchError::io(format!("--pin: cannot list the threads of {pid}"), err))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        // A thread that ended meanwhile is no error.
        if let Err(err) = sched_setaffinity(Pid::from_raw(tid), &set)
            && err != nix::errno::Errno::ESRCH
        {
            return Err(BenchError::Failed(format!(
                "--pin: cannot pin thread {tid} of {pid}: {err}"
            )));
        }
    }
    Ok(())
}
