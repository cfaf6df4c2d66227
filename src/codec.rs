//! The gRPC codec of the generated stubs: prost's, with the buffer each
//! call starts with set once for the process.
//!
//! tonic gives every call a buffer of 8 KiB to decode what it receives and
//! one to encode what it sends, allocated when the call starts and kept
//! for its life. A server with 10,000 live runs (an Append stream and a
//! follower each) held 160 MiB in those buffers alone, for lines of a
//! hundred bytes. A buffer grows to the largest message it carries, so a
//! small starting size costs large messages a few early reallocations
//! and nothing after.

use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The default of [`buffer_bytes`]: 1 KiB.
pub const DEFAULT_BUFFER_BYTES: usize = 1024;

/// tonic's own: a call's encoder hands its bytes to HTTP/2 once this many
/// are waiting (or its source has nothing more ready).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// The buffer size calls start with, process-wide.
static BUFFER_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_BUFFER_BYTES);

/// Sets the buffer that calls started from now on begin with, to encode
/// and to decode their messages; each grows to the largest message it
/// carries. The server sets it from `limits.codec_buffer_bytes`.
pub fn set_buffer_bytes(bytes: usize) {
    BUFFER_BYTES.store(bytes, Ordering::Relaxed);
}

/// The buffer calls begin with (see [`set_buffer_bytes`]).
pub fn buffer_bytes() -> usize {
    BUFFER_BYTES.load(Ordering::Relaxed)
}

/// The codec of every generated stub: prost's encoding, with buffers of
/// [`buffer_bytes`] to start with.
#[derive(Debug, Clone, Copy)]
pub struct TunedCodec<T, U> {
    /// The message types.
    _types: std::marker::PhantomData<fn(T) -> U>,
}

impl<T, U> Default for TunedCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: std::marker::PhantomData,
        }
    }
}

impl<T, U> Codec for TunedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}

/// The buffer settings of a call starting now.
fn settings() -> BufferSettings {
    BufferSettings::new(buffer_bytes(), YIELD_THRESHOLD)
}
