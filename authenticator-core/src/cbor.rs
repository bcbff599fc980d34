//! CBOR in and out: hostile-input decoding with CTAP status codes, and CTAP2 canonical encoding.
//!
//! Requests are decoded into a [`Value`] tree with a small nesting limit, then read through the
//! accessors here, which turn every problem into the status code CTAP 2.1 names for it:
//! malformed CBOR is `CTAP2_ERR_INVALID_CBOR`, a required member that is absent is
//! `CTAP2_ERR_MISSING_PARAMETER`, and a member of the wrong CBOR type is
//! `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
//!
//! Responses are built with [`map`], which orders keys the CTAP2 canonical way (shorter encoded
//! keys first, then bytewise), so nested maps are canonical by construction.

use alloc::string::String;
use alloc::vec::Vec;

pub use ciborium::Value;

use crate::status::StatusCode;

/// Deepest nesting accepted in a request. CTAP's deepest structure (an extension holding a COSE
/// key inside the request map) needs five; the limit keeps recursion bounded on small stacks.
const MAX_DEPTH: usize = 8;

/// Decodes exactly one CBOR item; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value, StatusCode> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|_| StatusCode::InvalidCbor)?;
    if !reader.is_empty() || has_tag(&value) {
        return Err(StatusCode::InvalidCbor);
    }
    Ok(value)
}

/// Whether a tag appears anywhere in the value. No CTAP message uses tags, so tagged input is
/// refused. (The decoder itself turns bignum tags 2 and 3 that fit 64 bits into plain
/// integers, which re-encode stably.)
fn has_tag(value: &Value) -> bool {
    match value {
        Value::Tag(..) => true,
        Value::Array(items) => items.iter().any(has_tag),
        Value::Map(entries) => entries.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
        _ => false,
    }
}

/// Encodes a value; maps must already be canonical (build them with [`map`]).
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every Value we build is encodable.
    let _ = ciborium::ser::into_writer(value, out);
}

/// Encodes a value into a fresh buffer.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

/// A map whose entries are sorted in CTAP2 canonical order.
pub fn map(mut entries: Vec<(Value, Value)>) -> Value {
    entries.sort_by_cached_key(|(key, _)| {
        let bytes = to_vec(key);
        (bytes.len(), bytes)
    });
    Value::Map(entries)
}

/// An integer value.
pub fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

/// A text value.
pub fn text(s: &str) -> Value {
    Value::Text(String::from(s))
}

/// A byte-string value.
pub fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// Reads a member of a request or a map; the helpers below give each type its status codes.
#[derive(Debug, Clone, Copy)]
pub struct Members<'a> {
    entries: &'a [(Value, Value)],
}

/// The key of a map member: CTAP commands use integers, WebAuthn structures use text.
#[derive(Debug, Clone, Copy)]
pub enum Key<'k> {
    /// An unsigned integer key.
    Int(u64),
    /// A text key.
    Text(&'k str),
}

impl<'a> Members<'a> {
    /// Views `value` as a map; anything else is `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`. Duplicate keys
    /// are `CTAP2_ERR_INVALID_CBOR`.
    pub fn of(value: &'a Value) -> Result<Self, StatusCode> {
        let Value::Map(entries) = value else {
            return Err(StatusCode::CborUnexpectedType);
        };
        for (index, (key, _)) in entries.iter().enumerate() {
            if entries
                .iter()
                .skip(index + 1)
                .any(|(other, _)| other == key)
            {
                return Err(StatusCode::InvalidCbor);
            }
        }
        Ok(Self { entries })
    }

    /// The member with this key, if present.
    pub fn get(&self, key: Key<'_>) -> Option<&'a Value> {
        self.entries.iter().find_map(|(k, v)| match (key, k) {
            (Key::Int(want), Value::Integer(have)) => {
                (u64::try_from(*have).ok() == Some(want)).then_some(v)
            }
            (Key::Text(want), Value::Text(have)) => (have == want).then_some(v),
            _ => None,
        })
    }

    /// A required member.
    pub fn required(&self, key: Key<'_>) -> Result<&'a Value, StatusCode> {
        self.get(key).ok_or(StatusCode::MissingParameter)
    }
}

/// The bytes of a byte string, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
pub fn as_bytes(value: &Value) -> Result<&[u8], StatusCode> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

/// The text of a text string, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
pub fn as_text(value: &Value) -> Result<&str, StatusCode> {
    match value {
        Value::Text(t) => Ok(t),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

/// A boolean, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
pub fn as_bool(value: &Value) -> Result<bool, StatusCode> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

/// An integer that fits an `i64`, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
pub fn as_int(value: &Value) -> Result<i64, StatusCode> {
    match value {
        Value::Integer(i) => i64::try_from(*i).map_err(|_| StatusCode::CborUnexpectedType),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

/// The items of an array, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
pub fn as_array(value: &Value) -> Result<&[Value], StatusCode> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn canonical_order_puts_short_keys_first() {
        let value = map(vec![
            (int(-3), int(0)),
            (int(3), int(0)),
            (int(-1), int(0)),
            (int(1), int(0)),
            (text("sig"), int(0)),
            (text("alg"), int(0)),
        ]);
        let keys: Vec<Value> = match value {
            Value::Map(entries) => entries.into_iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        };
        assert_eq!(
            keys,
            vec![int(1), int(3), int(-1), int(-3), text("alg"), text("sig")]
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_invalid_cbor() {
        assert_eq!(decode(&[0xA0, 0x00]), Err(StatusCode::InvalidCbor));
        assert_eq!(decode(&[0x5F]), Err(StatusCode::InvalidCbor));
        assert_eq!(decode(&[]), Err(StatusCode::InvalidCbor));
    }

    #[test]
    fn tags_are_refused() {
        // 6(h''), a tag nested in an array, a tag inside a bignum tag.
        assert_eq!(decode(&[0xC6, 0x40]), Err(StatusCode::InvalidCbor));
        assert_eq!(decode(&[0x81, 0xC1, 0x00]), Err(StatusCode::InvalidCbor));
        assert!(decode(&[0xC3, 0xC3, 0x40]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep: Vec<u8> = core::iter::repeat_n(0x81u8, 64).chain([0x00]).collect();
        assert_eq!(decode(&deep), Err(StatusCode::InvalidCbor));
    }

    #[test]
    fn duplicate_keys_are_invalid() {
        let value = decode(&[0xA2, 0x01, 0x00, 0x01, 0x00]).unwrap_or(Value::Null);
        assert_eq!(Members::of(&value).err(), Some(StatusCode::InvalidCbor));
    }
}
