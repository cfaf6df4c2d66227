//! Reading JSON Lines files: whole lines only, by byte offset, and finding
//! where a sequence number starts in a channel file without reading all of
//! it.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Seek, SeekFrom},
};

use serde::Deserialize;

/// The only field recovery and seeking need from a stored entry.
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// The sequence number of one stored line, if it is a valid entry line.
pub(crate) fn line_seq(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<SeqOnly>(line)
        .ok()
        .map(|entry| entry.seq)
}

/// Calls `visit(line, end_offset)` for each complete line (ending with
/// `\n`, which is not passed) of `file` from `offset`, until `visit` returns
/// false or the file ends. A last line without `\n` is torn and not passed.
pub(crate) fn scan_lines(
    file: &mut File,
    offset: u64,
    mut visit: impl FnMut(&[u8], u64) -> bool,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut end = offset;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        end += read as u64;
        if !visit(&line[..line.len() - 1], end) {
            return Ok(());
        }
    }
}

/// Returns an offset in `file` (of length `len`) at which a line starts and
/// before which every line has a sequence number below `target`: where a
/// reader from `target` can start. It reads `O(log len)` small pieces.
pub(crate) fn seek_seq(file: &mut File, len: u64, target: u64) -> io::Result<u64> {
    seek_by(file, len, target, line_seq)
}

/// [`seek_seq`] over lines whose number `key` reads: an offset at which a
/// line starts and before which every line's key is below `target`.
pub(crate) fn seek_by(
    file: &mut File,
    len: u64,
    target: u64,
    key: fn(&[u8]) -> Option<u64>,
) -> io::Result<u64> {
    const LINEAR: u64 = 16 * 1024;
    // Invariant: `lo` is a line start and every line before it is below
    // `target`; every line starting at or after `hi` is at or above it (or
    // `hi` is the end).
    let (mut lo, mut hi) = (0u64, len);
    let mut buf = Vec::new();
    while hi - lo > LINEAR {
        let mid = lo + (hi - lo) / 2;
        // The first line starting after `mid`.
        match line_after(file, mid, hi, &mut buf, key)? {
            Some((_, end, seq)) if seq < target => lo = end,
            Some((start, _, _)) => hi = start,
            None => hi = mid,
        }
    }
    Ok(lo)
}

/// The first complete line that starts after `from` and before `until`:
/// its start, its end (after `\n`) and its key.
fn line_after(
    file: &mut File,
    from: u64,
    until: u64,
    buf: &mut Vec<u8>,
    key: fn(&[u8]) -> Option<u64>,
) -> io::Result<Option<(u64, u64, u64)>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(64 * 1024, &*file);
    buf.clear();
    let skipped = reader.read_until(b'\n', buf)? as u64;
    let start = from + skipped;
    if start >= until || buf.last() != Some(&b'\n') {
        return Ok(None);
    }
    buf.clear();
    let read = reader.read_until(b'\n', buf)? as u64;
    if buf.last() != Some(&b'\n') {
        return Ok(None);
    }
    Ok(key(&buf[..buf.len() - 1]).map(|seq| (start, start + read, seq)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Seeking lands at or before the line of the target and never after it.
    #[test]
    fn seek_finds_a_start_at_or_before_the_target() {
        let mut file = tempfile::tempfile().unwrap();
        let mut starts = Vec::new();
        let mut len = 0u64;
        for seq in (1..20_000u64).step_by(3) {
            let line = format!(
                "{{\"seq\":{seq},\"text\":\"{}\"}}\n",
                "x".repeat((seq % 50) as usize)
            );
            starts.push((seq, len));
            file.write_all(line.as_bytes()).unwrap();
            len += line.len() as u64;
        }
        for target in [1, 2, 3, 4, 5000, 5001, 12_345, 19_999, 30_000] {
            let offset = seek_seq(&mut file, len, target).unwrap();
            let first_at_or_above = starts
                .iter()
                .find(|(seq, _)| *seq >= target)
                .map_or(len, |(_, start)| *start);
            assert!(offset <= first_at_or_above, "target {target}");
            assert!(
                first_at_or_above - offset <= 32 * 1024,
                "target {target} too far back"
            );
            assert!(offset == 0 || starts.iter().any(|(_, start)| *start == offset));
        }
    }
}
