//! Pieces of request parsing shared by makeCredential and getAssertion.

use alloc::vec::Vec;

use crate::cbor::{self, Key, Members, Value};
use crate::status::StatusCode;

/// A PublicKeyCredentialDescriptor from an allowList or excludeList. Descriptors whose `type`
/// is not "public-key" are dropped while parsing, as CTAP says to ignore them.
#[derive(Debug, Clone)]
pub(crate) struct Descriptor<'a> {
    pub id: &'a [u8],
}

/// Parses an allowList/excludeList: an array of maps each with `type` (text) and `id` (bytes).
pub(crate) fn credential_list<'a>(
    value: &'a Value,
    max_len: usize,
) -> Result<Vec<Descriptor<'a>>, StatusCode> {
    let items = cbor::as_array(value)?;
    if items.len() > max_len {
        return Err(StatusCode::RequestTooLarge);
    }
    let mut list = Vec::with_capacity(items.len());
    for item in items {
        let members = Members::of(item)?;
        let kind = cbor::as_text(members.required(Key::Text("type"))?)?;
        let id = cbor::as_bytes(members.required(Key::Text("id"))?)?;
        if let Some(transports) = members.get(Key::Text("transports")) {
            cbor::as_array(transports)?;
        }
        if kind == "public-key" {
            list.push(Descriptor { id });
        }
    }
    Ok(list)
}

/// The `options` map: each known key must be a boolean; unknown keys are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub rk: Option<bool>,
    pub up: Option<bool>,
    pub uv: Option<bool>,
}

pub(crate) fn options(value: Option<&Value>) -> Result<Options, StatusCode> {
    let Some(value) = value else {
        return Ok(Options::default());
    };
    let members = Members::of(value)?;
    let read = |name| members.get(Key::Text(name)).map(cbor::as_bool).transpose();
    Ok(Options {
        rk: read("rk")?,
        up: read("up")?,
        uv: read("uv")?,
    })
}

/// The `extensions` map, checked to be a map with text keys.
pub(crate) fn extensions(value: Option<&Value>) -> Result<Option<Members<'_>>, StatusCode> {
    value
        .map(|value| {
            let members = Members::of(value)?;
            if let Value::Map(entries) = value
                && entries.iter().any(|(k, _)| !matches!(k, Value::Text(_)))
            {
                return Err(StatusCode::CborUnexpectedType);
            }
            Ok(members)
        })
        .transpose()
}

/// The `pinUvAuthParam` and `pinUvAuthProtocol` members of makeCredential and getAssertion,
/// type-checked (bytes and an integer); the PIN/UV steps themselves are in
/// [`Authenticator::pin_uv_auth_precheck`](crate::Authenticator) and
/// `verify_pin_uv_auth_param`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PinUvAuthInput<'a> {
    /// `pinUvAuthParam`; an empty one is the "pick an authenticator" probe.
    pub param: Option<&'a [u8]>,
    /// `pinUvAuthProtocol`.
    pub protocol: Option<i64>,
}

pub(crate) fn pin_uv_auth<'a>(
    param: Option<&'a Value>,
    protocol: Option<&'a Value>,
) -> Result<PinUvAuthInput<'a>, StatusCode> {
    Ok(PinUvAuthInput {
        param: param.map(cbor::as_bytes).transpose()?,
        protocol: protocol.map(cbor::as_int).transpose()?,
    })
}

/// Truncates text to at most 64 bytes at a character boundary, as CTAP allows authenticators
/// to store `name` and `displayName`.
pub(crate) fn truncate_64(text: &str) -> alloc::string::String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    alloc::string::String::from(text.get(..end).unwrap_or_default())
}
