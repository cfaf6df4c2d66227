//! The system's `grep`, as the yardstick for a search: `grep -F -c -h` for
//! a literal over a list of files, in the C locale (byte matching, as a
//! user after speed would run it), its per-file counts summed.
//!
//! The files go on the command line, a few thousand per process so the
//! argument list stays far below the kernel's limit; a data set of more
//! runs takes a few processes one after the other, timed together.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use crate::error::{BenchError, Context, Result};

/// Files per `grep` process.
const FILES_PER_PROCESS: usize = 4096;

/// What one `grep` over the files counted.
#[derive(Debug, Clone, Copy)]
pub(super) struct GrepCount {
    /// Lines that hold the literal, over all files.
    pub(super) lines: u64,
    /// From the first spawn to the last exit.
    pub(super) secs: f64,
}

/// Counts the lines of `files` that hold `literal`.
pub(super) async fn count(literal: &str, files: &[PathBuf]) -> Result<GrepCount> {
    let literal = literal.to_owned();
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || count_blocking(&literal, &files))
        .await
        .context("a grep task failed")?
}

/// [`count`]; blocking.
fn count_blocking(literal: &str, files: &[PathBuf]) -> Result<GrepCount> {
    let start = Instant::now();
    let mut lines = 0u64;
    for group in files.chunks(FILES_PER_PROCESS) {
        let output = Command::new("grep")
            .env("LC_ALL", "C")
            .args(["-F", "-c", "-h", "-e", literal, "--"])
            .args(group)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|err| BenchError::io("cannot run grep", err))?;
        // 0: some line matched; 1: none did; anything else is an error.
        if !matches!(output.status.code(), Some(0 | 1)) {
            return Err(BenchError::Failed(format!(
                "grep failed: {}",
                output.status
            )));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            lines += line
                .trim()
                .parse::<u64>()
                .context(format!("grep printed {line:?} instead of a count"))?;
        }
    }
    Ok(GrepCount {
        lines,
        secs: start.elapsed().as_secs_f64(),
    })
}
