//! Tests of whole-text and JSON masking.
