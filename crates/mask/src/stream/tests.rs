//! Tests of stream masking.
