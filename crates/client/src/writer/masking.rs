//! Masking at the worker: a writer's registered secrets are replaced with
//! [`MASK`](baa_logging_mask::MASK) before an item leaves the worker's
//! memory, so neither the spool file nor the network nor any server ever
//! holds them.
//!
//! Output chunks go through a [`StreamMasker`] per channel, so that a
//! secret a program writes in two pieces is caught whole: the tail of a
//! chunk that could be the start of a secret is held back until the next
//! chunk of its channel, a newline, or [`HOLD_BACK`] decides; the
//! writer's other items wait behind it (see [`ItemMasker`]). Lifecycle
//! messages and data, and state summaries, are masked whole.
//!
//! The masking runs where a writer's items are put in order: in the
//! session task of a writer that is not spooled, and under the spool's
//! lock for a spooled one.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use baa_logging_mask::{Added, Masker, Rules, SecretError, Secrets, StreamMasker};

use crate::pb::{self, append_item::Payload};

/// The longest a held-back tail waits for the rest of a secret: long
/// enough for a secret printed in two writes some tens of milliseconds
/// apart, short enough not to be noticed on a terminal's log.
pub(crate) const HOLD_BACK: Duration = Duration::from_millis(300);

/// A writer's secrets, shared by its handles and the place that masks.
#[derive(Debug, Clone)]
pub(crate) struct SharedMasker(Arc<RwLock<Masker>>);

impl SharedMasker {
    /// A masker of `secrets` (no pattern rules: those are the server's).
    pub(crate) fn new(secrets: Secrets) -> Self {
        Self(Arc::new(RwLock::new(Masker::with_secrets(
            secrets,
            Rules::none(),
        ))))
    }

    /// Registers one more value.
    pub(crate) fn add(&self, value: &str) -> Result<Added, SecretError> {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add_secret(value)
    }

    /// `text` with every secret masked.
    pub(crate) fn mask_text(&self, text: &str) -> String {
        let masker = self.0.read().unwrap_or_else(PoisonError::into_inner);
        masker.mask(text).0.into_owned()
    }

    /// The registered values, for the server to mask in the entries of
    /// the run's other writers.
    pub(crate) fn values(&self) -> Vec<String> {
        /// The most values a server takes for a run; more would fail the
        /// stream, and this writer masks its own entries anyway.
        const MAX_SENT: usize = 1000;
        let masker = self.0.read().unwrap_or_else(PoisonError::into_inner);
        masker
            .secrets()
            .values()
            .take(MAX_SENT)
            .map(str::to_owned)
            .collect()
    }

    /// A state change with its summary masked.
    pub(crate) fn mask_patch(&self, mut patch: pb::RunStatePatch) -> pb::RunStatePatch {
        if let Some(summary) = &patch.summary {
            patch.summary = Some(self.mask_text(summary));
        }
        patch
    }
}

/// The masking state of one writer's item stream.
///
/// At most one channel holds a tail back at a time: while one does, the
/// writer's items of the other channel and its events wait behind it, in
/// order, so that nothing written after the held text is released before
/// it. A chunk of the holding channel goes through at once, as it may
/// complete the secret: it joins the held text, ahead of the items that
/// wait (the only case where the channels' order can change).
pub(crate) struct ItemMasker {
    /// The secrets.
    shared: SharedMasker,
    /// Stdout, then stderr: what each holds back, and since when.
    streams: [(StreamMasker, Option<Instant>); 2],
    /// The largest text of one entry the server takes: a held tail is
    /// not joined to a chunk it would push past it.
    max_entry_bytes: usize,
    /// Items that wait behind the held tail, in order.
    waiting: VecDeque<Payload>,
    /// Their text, in bytes.
    waiting_bytes: usize,
}

impl fmt::Debug for ItemMasker {
    // What is held or waits may hold a secret: only sizes are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemMasker")
            .field(
                "held",
                &self
                    .streams
                    .iter()
                    .map(|(s, _)| s.held_len())
                    .collect::<Vec<_>>(),
            )
            .field("waiting", &self.waiting.len())
            .field("waiting_bytes", &self.waiting_bytes)
            .finish_non_exhaustive()
    }
}

impl ItemMasker {
    /// The masking of a writer with `shared` secrets, whose server takes
    /// entries of at most `max_entry_bytes`.
    pub(crate) fn new(shared: SharedMasker, max_entry_bytes: usize) -> Self {
        Self {
            max_entry_bytes,
            shared,
            streams: Default::default(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        }
    }

    /// Takes `payload`; returns what can be appended now, in order: zero,
    /// one or more items.
    pub(crate) fn mask(&mut self, payload: Payload) -> Vec<Payload> {
        let shared = self.shared.clone();
        let masker = shared.0.read().unwrap_or_else(PoisonError::into_inner);
        if masker.is_empty() && self.holding().is_none() && self.waiting.is_empty() {
            return vec![payload];
        }
        let mut out = Vec::new();
        match self.holding() {
            Some(held) if channel_index(&payload) == Some(held) => {
                self.process(payload, &masker, &mut out);
                self.drain(&masker, &mut out);
            }
            Some(_) => {
                self.waiting_bytes += payload_len(&payload);
                self.waiting.push_back(payload);
            }
            None => self.process(payload, &masker, &mut out),
        }
        out
    }

    /// Masks `payloads` in place: what can be appended now, in order.
    /// Without secrets and with nothing held, they are left as they are,
    /// with no copy.
    pub(crate) fn mask_all(&mut self, payloads: &mut Vec<Payload>) {
        let shared = self.shared.clone();
        let masker = shared.0.read().unwrap_or_else(PoisonError::into_inner);
        if masker.is_empty() && self.holding().is_none() && self.waiting.is_empty() {
            return;
        }
        drop(masker);
        let mut out = Vec::with_capacity(payloads.len());
        for payload in payloads.drain(..) {
            out.extend(self.mask(payload));
        }
        *payloads = out;
    }

    /// What has been held longer than [`HOLD_BACK`] at `now`, released,
    /// with what waited behind it, up to an item that starts to hold a
    /// tail of its own (its wait starts now). Also when what waits passes
    /// [`MAX_WAITING_BYTES`]: the hold then ends early rather than grow.
    pub(crate) fn release_due(&mut self, now: Instant) -> Vec<Payload> {
        let due = self.next_due().is_some_and(|due| due <= now);
        let Some(held) = self
            .holding()
            .filter(|_| due || self.waiting_bytes > MAX_WAITING_BYTES)
        else {
            return Vec::new();
        };
        let shared = self.shared.clone();
        let masker = shared.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        self.release(held, &masker, &mut out);
        self.drain(&masker, &mut out);
        out
    }

    /// Everything held and everything waiting, released in order: before
    /// a flush, a state change or the end.
    pub(crate) fn release_all(&mut self) -> Vec<Payload> {
        let shared = self.shared.clone();
        let masker = shared.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        while let Some(held) = self.holding() {
            self.release(held, &masker, &mut out);
            self.drain(&masker, &mut out);
        }
        out
    }

    /// When the held tail is due, if one is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter_map(|(_, since)| *since)
            .min()
            .map(|since| since + HOLD_BACK)
    }

    /// A state change with its summary masked.
    pub(crate) fn mask_patch(&self, patch: pb::RunStatePatch) -> pb::RunStatePatch {
        self.shared.mask_patch(patch)
    }

    /// The channel that holds a tail back, if one does.
    fn holding(&self) -> Option<usize> {
        self.streams
            .iter()
            .position(|(stream, _)| stream.held_len() > 0)
    }

    /// Items that waited, taken in order until one of them holds a tail.
    fn drain(&mut self, masker: &Masker, out: &mut Vec<Payload>) {
        while self.holding().is_none() {
            let Some(payload) = self.waiting.pop_front() else {
                return;
            };
            self.waiting_bytes -= payload_len(&payload);
            self.process(payload, masker, out);
        }
    }

    /// Masks one item into `out`: a chunk through its channel's stream
    /// (which may hold its tail), an event whole.
    fn process(&mut self, payload: Payload, masker: &Masker, out: &mut Vec<Payload>) {
        match payload {
            Payload::Stdout(chunk) => self.push(0, masker, chunk, out),
            Payload::Stderr(chunk) => self.push(1, masker, chunk, out),
            Payload::Event(mut event) => {
                if !masker.is_empty() {
                    event.message = masker.mask(&event.message).0.into_owned();
                    // Data that does not convert cannot be masked, and is
                    // left out rather than sent as it is.
                    let data = event.data.take().and_then(|data| {
                        let mut json =
                            serde_json::Value::Object(baa_logging::json::from_struct(data).ok()?);
                        masker.mask_json(&mut json);
                        match json {
                            serde_json::Value::Object(object) => {
                                Some(baa_logging::json::to_struct(&object))
                            }
                            _ => None,
                        }
                    });
                    event.data = data;
                }
                out.push(Payload::Event(event));
            }
        }
    }

    /// Masks a chunk of channel `index` into `out`, holding back what may
    /// be the start of a secret.
    fn push(
        &mut self,
        index: usize,
        masker: &Masker,
        chunk: pb::StreamChunkInput,
        out: &mut Vec<Payload>,
    ) {
        if self.streams[index].0.held_len() + chunk.text.len() > self.max_entry_bytes {
            // Joined, the chunk would pass the server's limit: the held
            // tail goes out on its own first.
            self.release(index, masker, out);
        }
        let stream = &mut self.streams[index];
        let masked = stream.0.push(masker, &chunk.text);
        stream.1 = match stream.0.held_len() {
            0 => None,
            // The wait counts from the first byte held.
            _ => stream.1.or_else(|| Some(Instant::now())),
        };
        if !masked.text.is_empty() {
            out.push(chunk_of(CHANNELS[index], masked.text, chunk.created_at));
        }
    }

    /// Releases what channel `index` holds into `out`.
    fn release(&mut self, index: usize, masker: &Masker, out: &mut Vec<Payload>) {
        let stream = &mut self.streams[index];
        stream.1 = None;
        let masked = stream.0.flush(masker);
        if !masked.text.is_empty() {
            out.push(super::chunk_payload(CHANNELS[index], masked.text));
        }
    }
}

/// The most bytes of items that wait behind a held tail before the hold
/// ends early: a command that writes much to one channel while the other
/// holds a tail neither waits nor grows memory for long.
const MAX_WAITING_BYTES: usize = 1024 * 1024;

/// The text of an item, in bytes.
fn payload_len(payload: &Payload) -> usize {
    match payload {
        Payload::Stdout(chunk) | Payload::Stderr(chunk) => chunk.text.len(),
        Payload::Event(event) => event.message.len(),
    }
}

/// The output channels, in the order of [`ItemMasker`]'s streams.
const CHANNELS: [pb::StreamLogChannel; 2] =
    [pb::StreamLogChannel::Stdout, pb::StreamLogChannel::Stderr];

/// The stream index of an output chunk; `None` for an event.
fn channel_index(payload: &Payload) -> Option<usize> {
    match payload {
        Payload::Stdout(_) => Some(0),
        Payload::Stderr(_) => Some(1),
        Payload::Event(_) => None,
    }
}

/// A chunk of `channel` with `text`, stamped `created_at`.
fn chunk_of(channel: pb::StreamLogChannel, text: String, created_at: Option<String>) -> Payload {
    let chunk = pb::StreamChunkInput { text, created_at };
    match channel {
        pb::StreamLogChannel::Stderr => Payload::Stderr(chunk),
        _ => Payload::Stdout(chunk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of the tests.
    const SECRET: &str = "s3cr3t-Value-4242";

    /// A masking of [`SECRET`].
    fn masking() -> ItemMasker {
        let mut secrets = Secrets::new();
        secrets.add(SECRET).unwrap();
        ItemMasker::new(SharedMasker::new(secrets), 1024 * 1024)
    }

    /// A chunk of `text` on `channel`.
    fn chunk(channel: usize, text: &str) -> Payload {
        super::super::chunk_payload(CHANNELS[channel], text.to_owned())
    }

    /// Items as `out:` / `err:` / `event:` lines, to compare.
    fn show(items: &[Payload]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Payload::Stdout(chunk) => format!("out:{}", chunk.text),
                Payload::Stderr(chunk) => format!("err:{}", chunk.text),
                Payload::Event(event) => format!("event:{}", event.message),
            })
            .collect()
    }

    /// A secret split across two stdout chunks, with a stderr chunk and an
    /// event written between them: the stderr chunk and the event wait
    /// behind the held tail, nothing of the secret is released, and each
    /// channel's text is whole.
    #[test]
    fn items_of_other_channels_wait_behind_a_held_tail() {
        let mut masking = masking();
        let mut out = masking.mask(chunk(0, "split: s3cr3"));
        out.extend(masking.mask(chunk(1, &format!("err: {SECRET}\n"))));
        out.extend(masking.mask(Payload::Event(pb::WorkerLifecycleEventInput {
            message: format!("event {SECRET}"),
            ..Default::default()
        })));
        assert_eq!(show(&out), ["out:split: "], "the rest waits");
        out.extend(masking.mask(chunk(0, "t-Value-4242 end\n")));
        assert_eq!(
            show(&out),
            [
                "out:split: ",
                "out:[MASKED] end\n",
                "err:err: [MASKED]\n",
                "event:event [MASKED]"
            ]
        );
    }

    /// A held tail that turns out not to be a secret is released as it
    /// is, with what waited, once its time is up or at a flush.
    #[test]
    fn a_held_tail_is_released_in_time() {
        let mut masking = masking();
        let out = masking.mask(chunk(0, "maybe s3cr"));
        assert_eq!(show(&out), ["out:maybe "]);
        assert!(masking.mask(chunk(1, "other\n")).is_empty());
        let due = masking.next_due().expect("a tail is held");
        assert!(
            masking
                .release_due(due - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(show(&masking.release_due(due)), ["out:s3cr", "err:other\n"]);
        assert!(masking.next_due().is_none());
        assert!(masking.mask(chunk(0, "not held\n")).len() == 1);
        masking.mask(chunk(0, "s3c"));
        assert_eq!(show(&masking.release_all()), ["out:s3c"]);
    }

    /// When a held tail's time is up, what waited behind it goes on, and
    /// an item among them that starts a tail of its own holds it for its
    /// own time: a secret split on the other channel is still caught.
    #[test]
    fn a_tail_started_while_waiting_gets_its_own_time() {
        let mut masking = masking();
        assert_eq!(show(&masking.mask(chunk(0, "s3c"))), Vec::<String>::new());
        assert!(masking.mask(chunk(1, "token: s3cr3t-Va")).is_empty());
        let due = masking.next_due().unwrap();
        assert_eq!(show(&masking.release_due(due)), ["out:s3c", "err:token: "]);
        assert!(
            masking.next_due().unwrap() > due,
            "the new tail waits from now"
        );
        assert_eq!(
            show(&masking.mask(chunk(1, "lue-4242\n"))),
            ["err:[MASKED]\n"]
        );
    }

    /// Much written to one channel while the other holds a tail ends the
    /// hold early, rather than wait in memory.
    #[test]
    fn much_waiting_ends_a_hold_early() {
        let mut masking = masking();
        masking.mask(chunk(0, "s3c"));
        let block = "x".repeat(64 * 1024);
        for _ in 0..16 {
            assert!(masking.mask(chunk(1, &block)).is_empty());
        }
        assert!(
            masking.release_due(Instant::now()).is_empty(),
            "1 MiB waits"
        );
        masking.mask(chunk(1, &block));
        let released = masking.release_due(Instant::now());
        assert_eq!(released.len(), 18, "the tail, then everything that waited");
        assert!(format!("{masking:?}").contains("waiting: 0"));
    }

    /// A held tail is not joined to a chunk it would push past the
    /// server's entry limit: it goes out on its own first.
    #[test]
    fn a_held_tail_never_pushes_a_chunk_past_the_limit() {
        let mut secrets = Secrets::new();
        secrets.add(SECRET).unwrap();
        let mut masking = ItemMasker::new(SharedMasker::new(secrets), 16);
        assert!(masking.mask(chunk(0, "s3c")).is_empty());
        assert_eq!(
            show(&masking.mask(chunk(0, "0123456789abcdef"))),
            ["out:s3c", "out:0123456789abcdef"]
        );
    }
}
