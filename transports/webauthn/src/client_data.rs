//! CollectedClientData and its JSON-compatible serialization (WebAuthn L3 §5.8.1,
//! §5.8.1.1): the bytes whose SHA-256 the authenticator signs.
//!
//! The serialization is fixed, so that verifiers may compare prefixes instead of parsing JSON:
//! `{"type":…,"challenge":…,"origin":…,"crossOrigin":true|false` — `crossOrigin` always
//! present — then `,"topOrigin":…` only for a cross-origin caller, then `}`. Every string goes
//! through CCDToString: `"` and `\` are backslash-escaped, code points below U+0020 (and
//! nothing else) become `\u` with four lower-case hex digits, and everything else is copied as
//! UTF-8. That is not what a general JSON serializer does (`serde_json` writes `\n`, `\t`…),
//! hence this module.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The ceremony a client data belongs to (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyType {
    /// `webauthn.create`.
    Create,
    /// `webauthn.get`.
    Get,
}

impl CeremonyType {
    /// The `type` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "webauthn.create",
            Self::Get => "webauthn.get",
        }
    }
}

/// The members of CollectedClientData this client produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedClientData<'a> {
    /// `type`.
    pub kind: CeremonyType,
    /// The challenge's bytes (serialized as base64url without padding).
    pub challenge: &'a [u8],
    /// The serialized caller origin.
    pub origin: &'a str,
    /// Whether the caller is not same-origin with its ancestors (`crossOrigin`). A known
    /// `top_origin` makes it true as well.
    pub cross_origin: bool,
    /// The serialized top-level origin of a cross-origin caller (`topOrigin`), when known.
    pub top_origin: Option<&'a str>,
}

impl CollectedClientData<'_> {
    /// The JSON-compatible serialization of client data (§5.8.1.1).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.origin.len());
        out.extend_from_slice(b"{\"type\":");
        ccd_to_string(self.kind.as_str(), &mut out);
        out.extend_from_slice(b",\"challenge\":");
        ccd_to_string(&URL_SAFE_NO_PAD.encode(self.challenge), &mut out);
        out.extend_from_slice(b",\"origin\":");
        ccd_to_string(self.origin, &mut out);
        out.extend_from_slice(b",\"crossOrigin\":");
        match (self.cross_origin, self.top_origin) {
            (false, None) => out.extend_from_slice(b"false"),
            (true, None) => out.extend_from_slice(b"true"),
            (_, Some(top_origin)) => {
                out.extend_from_slice(b"true,\"topOrigin\":");
                ccd_to_string(top_origin, &mut out);
            }
        }
        out.push(b'}');
        out
    }
}

/// The hash of the serialized client data: SHA-256 of its bytes.
pub fn client_data_hash(client_data_json: &[u8]) -> [u8; 32] {
    Sha256::digest(client_data_json).into()
}

/// CCDToString (§5.8.1.1): a JSON string literal with the spec's minimal escaping.
pub fn ccd_to_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut buffer = [0u8; 4];
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap_or("<not UTF-8>")
    }

    #[test]
    fn same_origin_bytes_are_exact() {
        let data = CollectedClientData {
            kind: CeremonyType::Create,
            challenge: &[0xfb, 0xff, 0x00, 0x01],
            origin: "https://example.com",
            cross_origin: false,
            top_origin: None,
        };
        // base64url, no padding: 0xfbff0001 is "-_8AAQ".
        assert_eq!(
            text(&data.to_json_bytes()),
            r#"{"type":"webauthn.create","challenge":"-_8AAQ","origin":"https://example.com","crossOrigin":false}"#
        );
    }

    #[test]
    fn cross_origin_bytes_carry_top_origin_last() {
        let data = CollectedClientData {
            kind: CeremonyType::Get,
            challenge: b"abc",
            origin: "https://idp.example",
            cross_origin: true,
            top_origin: Some("https://rp.example:8443"),
        };
        assert_eq!(
            text(&data.to_json_bytes()),
            r#"{"type":"webauthn.get","challenge":"YWJj","origin":"https://idp.example","crossOrigin":true,"topOrigin":"https://rp.example:8443"}"#
        );
        // The top-level origin unknown (a proxying client): crossOrigin alone.
        let unknown_top = CollectedClientData {
            top_origin: None,
            ..data
        };
        assert_eq!(
            text(&unknown_top.to_json_bytes()),
            r#"{"type":"webauthn.get","challenge":"YWJj","origin":"https://idp.example","crossOrigin":true}"#
        );
    }

    #[test]
    fn ccd_to_string_escapes_only_what_the_spec_says() {
        let escaped = |s: &str| {
            let mut out = Vec::new();
            ccd_to_string(s, &mut out);
            out
        };
        assert_eq!(escaped("plain"), b"\"plain\"");
        assert_eq!(escaped("a\"b\\c"), b"\"a\\\"b\\\\c\"");
        // Control characters as \u with lower-case hex — never \n or \t.
        assert_eq!(escaped("\n\t\u{1f}\0"), b"\"\\u000a\\u0009\\u001f\\u0000\"");
        // U+0020, U+007F, '/', non-ASCII and astral code points are copied as UTF-8.
        assert_eq!(escaped(" /\u{7f}"), b"\" /\x7f\"");
        assert_eq!(escaped("é€😀"), "\"é€😀\"".as_bytes());
        assert_eq!(escaped("\u{2028}"), "\"\u{2028}\"".as_bytes());
    }

    #[test]
    fn the_serialization_is_json_a_parser_agrees_with() {
        let data = CollectedClientData {
            kind: CeremonyType::Get,
            challenge: &[7; 32],
            origin: "https://we\"ird\\\n.example",
            cross_origin: true,
            top_origin: Some("https://top.example"),
        };
        let bytes = data.to_json_bytes();
        let parsed: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(parsed["origin"], "https://we\"ird\\\n.example");
        assert_eq!(parsed["crossOrigin"], true);
        assert_eq!(parsed["topOrigin"], "https://top.example");
        assert_eq!(
            client_data_hash(&bytes).to_vec(),
            Sha256::digest(&bytes).to_vec()
        );
    }
}
