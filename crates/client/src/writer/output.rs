//! Turning a process's output, a byte stream, into stdout or stderr chunks
//! of a [`RunWriter`]: the two output writers and the decoder under them.
//!
//! This module is a child of the writer: it uses the writer's queue, its
//! entry limit and its chunk stamping, and the writer knows nothing of it
//! but the names it re-exports. The methods that hand out an output writer
//! ([`RunWriter::output_writer`], [`RunWriter::async_output_writer`]) live
//! here for that reason.
//!
//! Output arrives in reads of any size, so a UTF-8 character may be split
//! between two of them; [`Utf8Decoder`] holds the start of such a character
//! back until the rest arrives. Bytes that are not UTF-8 are replaced with
//! U+FFFD and the text around them is kept, so a stray byte costs one
//! character, never a line.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::AsyncWrite;
use tokio_util::sync::PollSemaphore;

use super::{RunWriter, chunk_payload};
use crate::{ClientError, pb};

/// The most input bytes one chunk is made of.
const MAX_CHUNK_INPUT: usize = 64 * 1024;

/// How many input bytes one chunk may take so that its text stays within
/// the server's entry limit, even when every byte becomes a 3-byte
/// replacement character and 3 held-back bytes come first.
fn chunk_input(writer: &RunWriter) -> usize {
    MAX_CHUNK_INPUT
        .min(writer.max_entry_bytes().saturating_sub(9) / 3)
        .max(1)
}

/// Decodes a byte stream as UTF-8 text, piece by piece.
///
/// # Examples
///
/// ```
/// use baa_logging_client::Utf8Decoder;
///
/// let mut decoder = Utf8Decoder::default();
/// let euro = "€".as_bytes();
/// assert_eq!(decoder.decode(&euro[..1]), "");
/// assert_eq!(decoder.decode(&euro[1..]), "€");
/// assert_eq!(decoder.decode(b"a\xffb"), "a\u{fffd}b");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    /// The start of a character whose other bytes have not come yet.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes `bytes`, after what was held back from earlier calls, and
    /// holds back an incomplete character at the end.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut rest = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.pending);
            &joined[..]
        };
        let mut text = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    return text;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            self.pending = after.to_vec();
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

// === impl RunWriter ===

impl RunWriter {
    /// A `std::io::Write` that appends what is written to it as chunks of
    /// `channel`, for code that writes from a plain thread.
    pub fn output_writer(&self, channel: pb::StreamLogChannel) -> OutputWriter {
        OutputWriter::new(self.clone(), channel)
    }

    /// A `tokio::io::AsyncWrite` that appends what is written to it as
    /// chunks of `channel`.
    pub fn async_output_writer(&self, channel: pb::StreamLogChannel) -> AsyncOutputWriter {
        AsyncOutputWriter::new(self.clone(), channel)
    }
}

// === impl OutputWriter ===

/// A `std::io::Write` that appends what is written to it as output chunks
/// of a run, one chunk per write (large writes are split).
///
/// Writes block while the writer's buffer is full, so use it from a plain
/// thread, never from inside an async task; [`AsyncOutputWriter`] is its
/// async twin. [`Write::flush`](io::Write::flush) hands everything to the
/// writer; [`RunWriter::flush`] waits until the server holds it.
///
/// # Examples
///
/// ```no_run
/// # fn example(writer: baa_logging_client::RunWriter) -> std::io::Result<()> {
/// use std::io::Write;
/// use baa_logging_client::pb::StreamLogChannel;
///
/// let mut out = writer.output_writer(StreamLogChannel::Stdout);
/// std::thread::spawn(move || writeln!(out, "from a thread")).join().unwrap()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct OutputWriter {
    /// Where chunks go.
    writer: RunWriter,
    /// Which channel.
    channel: pb::StreamLogChannel,
    /// Holds split characters back.
    decoder: Utf8Decoder,
}

impl OutputWriter {
    /// A writer of `channel` chunks into `writer`.
    fn new(writer: RunWriter, channel: pb::StreamLogChannel) -> Self {
        Self {
            writer,
            channel,
            decoder: Utf8Decoder::default(),
        }
    }

    /// Ends the stream: an incomplete character left over is appended as
    /// U+FFFD.
    ///
    /// # Errors
    ///
    /// The error that stopped the writer.
    pub fn close(mut self) -> io::Result<()> {
        let rest = self.decoder.finish();
        if !rest.is_empty() {
            self.writer
                .send_blocking(chunk_payload(self.channel, rest))
                .map_err(to_io)?;
        }
        Ok(())
    }
}

impl io::Write for OutputWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(chunk_input(&self.writer));
        let text = self.decoder.decode(&buf[..taken]);
        if !text.is_empty() {
            self.writer
                .send_blocking(chunk_payload(self.channel, text))
                .map_err(to_io)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// === impl AsyncOutputWriter ===

/// A `tokio::io::AsyncWrite` that appends what is written to it as output
/// chunks of a run, one chunk per write (large writes are split). Writes
/// wait while the writer's buffer is full, unless the writer is spooled.
/// Shutting it down appends an incomplete character left over as U+FFFD.
///
/// # Examples
///
/// ```no_run
/// # async fn example(writer: baa_logging_client::RunWriter) -> std::io::Result<()> {
/// use baa_logging_client::pb::StreamLogChannel;
/// use tokio::io::AsyncWriteExt;
///
/// let mut err = writer.async_output_writer(StreamLogChannel::Stderr);
/// err.write_all(b"warning: unused variable\n").await?;
/// err.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncOutputWriter {
    /// Where chunks go.
    writer: RunWriter,
    /// The room of the writer's queue, polled for.
    room: PollSemaphore,
    /// Which channel.
    channel: pb::StreamLogChannel,
    /// Holds split characters back.
    decoder: Utf8Decoder,
}

impl AsyncOutputWriter {
    /// A writer of `channel` chunks into `writer`.
    fn new(writer: RunWriter, channel: pb::StreamLogChannel) -> Self {
        Self {
            room: PollSemaphore::new(writer.inbox().room()),
            writer,
            channel,
            decoder: Utf8Decoder::default(),
        }
    }

    /// Waits for room in the queue for a chunk of `input` bytes, which
    /// may become up to three times as many (and a held-back character).
    fn poll_room(&mut self, cx: &mut Context<'_>, input: usize) -> Poll<io::Result<Room>> {
        let inbox = self.writer.inbox();
        let bound = (input * 3 + 64).min(inbox.capacity());
        let bound = u32::try_from(bound).unwrap_or(u32::MAX);
        match ready!(self.room.poll_acquire_many(cx, bound)) {
            Some(permit) => Poll::Ready(Ok(Room(permit))),
            None => Poll::Ready(Err(to_io(self.writer.stopped()))),
        }
    }

    /// Queues `text` with the `room` taken for it; none is queued for
    /// empty text.
    fn send(&self, text: String, room: Room) {
        if !text.is_empty() {
            let payload = chunk_payload(self.channel, text);
            self.writer.inbox().put_with(payload, room.0);
        }
    }
}

/// Room in the writer's queue, taken for one chunk; given back when
/// dropped unused.
#[derive(Debug)]
struct Room(tokio::sync::OwnedSemaphorePermit);

impl AsyncWrite for AsyncOutputWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let taken = buf.len().min(chunk_input(&this.writer));
        if let Some(spool) = this.writer.spool() {
            // A spooled writer never waits.
            let text = this.decoder.decode(&buf[..taken]);
            if !text.is_empty() {
                spool.push_item(chunk_payload(this.channel, text));
            }
            return Poll::Ready(Ok(taken));
        }
        let room = ready!(this.poll_room(cx, taken))?;
        let text = this.decoder.decode(&buf[..taken]);
        this.send(text, room);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.decoder.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(spool) = this.writer.spool() {
            spool.push_item(chunk_payload(this.channel, this.decoder.finish()));
            return Poll::Ready(Ok(()));
        }
        let room = ready!(this.poll_room(cx, 0))?;
        let rest = this.decoder.finish();
        this.send(rest, room);
        Poll::Ready(Ok(()))
    }
}

/// A client error as an I/O error, for the `Write` traits.
fn to_io(err: ClientError) -> io::Error {
    io::Error::other(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting a text into two reads gives the text back.
    #[test]
    fn characters_split_across_reads_are_joined() {
        let text = "aé€😀z".as_bytes();
        for cut in 0..=text.len() {
            let mut decoder = Utf8Decoder::default();
            let mut out = decoder.decode(&text[..cut]);
            out += &decoder.decode(&text[cut..]);
            out += &decoder.finish();
            assert_eq!(out, "aé€😀z", "cut at {cut}");
        }
    }

    /// A 4-byte character fed one byte at a time comes out once, whole.
    #[test]
    fn one_byte_at_a_time() {
        let mut decoder = Utf8Decoder::default();
        let pieces: Vec<String> = "😀".bytes().map(|byte| decoder.decode(&[byte])).collect();
        assert_eq!(pieces, ["", "", "", "😀"]);
    }

    /// Invalid bytes become U+FFFD and the rest of the line is kept.
    #[test]
    fn invalid_bytes_are_replaced_not_dropped() {
        let mut decoder = Utf8Decoder::default();
        assert_eq!(
            decoder.decode(b"ok \xff\xfe then \xc3("),
            "ok \u{fffd}\u{fffd} then \u{fffd}("
        );
        assert_eq!(decoder.decode(b"tail \xe2\x82"), "tail ");
        assert_eq!(decoder.finish(), "\u{fffd}");
        assert_eq!(decoder.decode(b"next"), "next");
    }
}
