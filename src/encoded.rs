//! [`EncodedFollowRunResponse`]: a `FollowRunResponse` as the server sends
//! it, made of encoded pieces that may be shared between followers.
//!
//! Protobuf merges two encoded messages written one after the other: a
//! repeated field's values append, a singular field's later value wins.
//! So the encoded entries of several commits, each encoded once for every
//! follower, followed by a follower's own state and cursor, are together
//! one `FollowRunResponse`, which clients decode as the generated
//! [`pb::FollowRunResponse`](crate::pb::FollowRunResponse).

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut, Bytes},
    encoding::{
        DecodeContext, WireType, bytes, encode_key, encode_varint, fixed32, fixed64, skip_field,
        uint64,
    },
};

/// A `FollowRunResponse` as encoded pieces, written one after the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedFollowRunResponse {
    /// The pieces: each the encoding of some of the response's fields.
    parts: Vec<Bytes>,
    /// Their bytes, in all.
    len: usize,
}

impl EncodedFollowRunResponse {
    /// Appends the fields of an encoded message (a `FollowRunResponse`'s,
    /// or some of them): `bytes` may be shared with other responses.
    pub fn push_encoded(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.parts.push(bytes);
        }
    }

    /// Appends the fields of `message`, encoded here.
    pub fn push_message(&mut self, message: &impl Message) {
        self.push_encoded(message.encode_to_vec().into());
    }
}

impl Message for EncodedFollowRunResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for part in &self.parts {
            buf.put_slice(part);
        }
    }

    /// Keeps each field as it was encoded (groups, which proto3 has not,
    /// are skipped).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut field = Vec::new();
        encode_key(tag, wire_type, &mut field);
        match wire_type {
            WireType::Varint => {
                let mut value = 0;
                uint64::merge(wire_type, &mut value, buf, ctx)?;
                encode_varint(value, &mut field);
            }
            WireType::SixtyFourBit => {
                let mut value = 0;
                fixed64::merge(wire_type, &mut value, buf, ctx)?;
                field.put_u64_le(value);
            }
            WireType::ThirtyTwoBit => {
                let mut value = 0;
                fixed32::merge(wire_type, &mut value, buf, ctx)?;
                field.put_u32_le(value);
            }
            WireType::LengthDelimited => {
                let mut value = Bytes::new();
                bytes::merge(wire_type, &mut value, buf, ctx)?;
                encode_varint(value.len() as u64, &mut field);
                field.extend_from_slice(&value);
            }
            WireType::StartGroup | WireType::EndGroup => {
                return skip_field(wire_type, tag, buf, ctx);
            }
        }
        self.push_encoded(field.into());
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.parts.clear();
        self.len = 0;
    }
}
