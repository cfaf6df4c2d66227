//! The command W8 runs: `baa-bench print-lines`, a program that prints
//! numbered lines to stdout as fast as it can and exits.
//!
//! It is this binary in a hidden mode, as the transport ceiling is (see
//! `noop`), so the command W8 times starts in about a millisecond and
//! spends its time writing: an interpreter's start-up would hide what
//! `baa-log exec` adds. Two shapes of writes:
//!
//! - large writes: whole lines gathered into blocks of about 64 KiB, each
//!   one `write(2)`, as a program with a buffered stdout does (C stdio on a
//!   pipe, Rust's `BufWriter`);
//! - a write per line: one `write(2)` per line, as a line-buffered stdout
//!   does (C stdio on a terminal, `python -u`, most loggers).
//!
//! Every line is `line_bytes` long, newline included, and starts with its
//! index, so a reader can count lines and bytes and know what to expect.
//!
//! When [`TIMING_ENV`] names a file, the command writes there, at exit,
//! the system's monotonic clock (`CLOCK_MONOTONIC`, one clock for every
//! process) as it started writing and after its last write and flush. W8
//! sets it for every run, bare and under `baa-log exec` (which passes its
//! environment on to the command), and so learns how long the command
//! itself took, apart from what exec does before it starts and after it
//! ends.

use std::{
    io::{self, Write},
    path::Path,
};

use nix::time::{ClockId, clock_gettime};

use crate::error::{BenchError, Context, Result};

/// The variable naming the file the command writes its own times to.
pub(crate) const TIMING_ENV: &str = "BAA_BENCH_PRINT_TIMING";

/// The size a block of lines grows to before it is written, in the
/// large-writes shape.
const BLOCK_BYTES: usize = 64 * 1024;

/// The shortest line: a ten-digit index, a space and the newline.
pub(crate) const MIN_LINE_BYTES: usize = 12;

/// Prints `lines` lines of `line_bytes` bytes each (newline included) to
/// stdout, in blocks of about 64 KiB, or with one write per line when
/// `write_per_line` is set; then, when `timing` names a file, writes the
/// monotonic clock before the first write and after the last there.
pub(crate) fn print(
    lines: u64,
    line_bytes: usize,
    write_per_line: bool,
    timing: Option<&Path>,
) -> Result<()> {
    if line_bytes < MIN_LINE_BYTES {
        return Err(BenchError::Failed(format!(
            "--line-bytes must be at least {MIN_LINE_BYTES}"
        )));
    }
    let start = monotonic_secs()?;
    write_lines(lines, line_bytes, write_per_line)?;
    let end = monotonic_secs()?;
    match timing {
        Some(path) => std::fs::write(path, format!("{start:.9} {end:.9}\n"))
            .map_err(|err| BenchError::io(format!("cannot write {}", path.display()), err)),
        None => Ok(()),
    }
}

/// The system's monotonic clock, seconds: the same clock in every
/// process, so that the harness can set this command's times beside its
/// own.
pub(crate) fn monotonic_secs() -> Result<f64> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).context("clock_gettime failed")?;
    Ok(now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9)
}

/// The writes of [`print`].
fn write_lines(lines: u64, line_bytes: usize, write_per_line: bool) -> Result<()> {
    // Stdout is line-buffered in Rust: a write that ends with a newline
    // goes out at once, in one `write(2)` when nothing is held back. Every
    // write below ends with one, so each is one system call (or a few, when
    // a pipe takes part of it).
    let mut out = io::stdout().lock();
    let mut line = template(line_bytes);
    let block_lines = if write_per_line {
        1
    } else {
        (BLOCK_BYTES / line_bytes).max(1)
    };
    let mut block = Vec::with_capacity(block_lines * line_bytes);
    let mut index = 0u64;
    while index < lines {
        block.clear();
        let end = lines.min(index + block_lines as u64);
        for i in index..end {
            stamp(&mut line, i);
            block.extend_from_slice(&line);
        }
        index = end;
        out.write_all(&block)
            .map_err(|err| BenchError::io("cannot write to stdout", err))?;
    }
    out.flush()
        .map_err(|err| BenchError::io("cannot write to stdout", err))
}

/// A line of `bytes` bytes: room for the index, then letters, then the
/// newline.
fn template(bytes: usize) -> Vec<u8> {
    let mut line: Vec<u8> = (0..bytes)
        .map(|i| b'a' + (i.saturating_sub(11) % 26) as u8)
        .collect();
    line[10] = b' ';
    line[bytes - 1] = b'\n';
    line
}

/// Writes `index` as ten digits at the start of `line`.
fn stamp(line: &mut [u8], mut index: u64) {
    for digit in line[..10].iter_mut().rev() {
        *digit = b'0' + (index % 10) as u8;
        index /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line has the length asked for, its index in ten digits first and
    /// one newline, at the end.
    #[test]
    fn lines_have_their_index_and_length() {
        let mut line = template(80);
        stamp(&mut line, 1_234);
        assert_eq!(line.len(), 80);
        assert!(line.starts_with(b"0000001234 abc"));
        assert_eq!(line.iter().filter(|byte| **byte == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
    }
}
