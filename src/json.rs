//! Structured data between its two forms: JSON (`serde_json`), as the
//! contracts and the stored files hold it, and `google.protobuf.Struct`, as
//! it travels on the wire.
//!
//! JSON has one kind of number and Protobuf's `Value` carries it as a
//! double, so numbers go through `f64` both ways. Integral numbers within
//! JavaScript's safe range (±2^53) come back as JSON integers, as a
//! JavaScript program would write them; NaN and the infinities, which JSON
//! cannot carry, are refused.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Value as Json};

/// The largest integer a double holds exactly, as JavaScript's
/// `Number.MAX_SAFE_INTEGER + 1`.
const SAFE_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Why a Protobuf value has no JSON form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StructError {
    /// A number JSON cannot carry (NaN or an infinity).
    #[error("the number {0} cannot be carried by JSON")]
    NotFinite(f64),
    /// A `Value` with no kind set.
    #[error("a value has no kind set")]
    NoKind,
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn to_struct(object: &Map<String, Json>) -> Struct {
    Struct {
        fields: object
            .iter()
            .map(|(key, value)| (key.clone(), to_value(value)))
            .collect(),
    }
}

/// A JSON value as a `google.protobuf.Value`.
pub fn to_value(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(value) => Kind::BoolValue(*value),
        // serde_json's numbers are always finite and convert to f64.
        Json::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        Json::String(value) => Kind::StringValue(value.clone()),
        Json::Array(values) => Kind::ListValue(ListValue {
            values: values.iter().map(to_value).collect(),
        }),
        Json::Object(object) => Kind::StructValue(to_struct(object)),
    };
    Value { kind: Some(kind) }
}

/// A `google.protobuf.Struct` as a JSON object.
///
/// # Errors
///
/// A value somewhere inside has no JSON form (see [`StructError`]).
pub fn from_struct(value: Struct) -> Result<Map<String, Json>, StructError> {
    value
        .fields
        .into_iter()
        .map(|(key, value)| Ok((key, from_value(value)?)))
        .collect()
}

/// A `google.protobuf.Value` as JSON.
///
/// # Errors
///
/// The value, or one inside it, has no JSON form (see [`StructError`]).
pub fn from_value(value: Value) -> Result<Json, StructError> {
    Ok(match value.kind.ok_or(StructError::NoKind)? {
        Kind::NullValue(_) => Json::Null,
        Kind::BoolValue(value) => value.into(),
        Kind::StringValue(value) => value.into(),
        Kind::NumberValue(number) => {
            if !number.is_finite() {
                return Err(StructError::NotFinite(number));
            }
            if number.fract() == 0.0 && number.abs() < SAFE_INTEGER_LIMIT {
                (number as i64).into()
            } else {
                number.into()
            }
        }
        Kind::StructValue(value) => Json::Object(from_struct(value)?),
        Kind::ListValue(list) => Json::Array(
            list.values
                .into_iter()
                .map(from_value)
                .collect::<Result<_, _>>()?,
        ),
    })
}
