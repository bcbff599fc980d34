//! `--log-ctap`: every request and response decoded for a human — command names, status names,
//! CBOR in diagnostic notation (RFC 8949 §8) with member names, secrets redacted.

use std::fmt::Write as _;

use authenticator_core::cbor::{self, Value};

/// The CTAP2 command's name.
pub fn command_name(command: u8) -> &'static str {
    match command {
        0x01 => "authenticatorMakeCredential",
        0x02 => "authenticatorGetAssertion",
        0x04 => "authenticatorGetInfo",
        0x06 => "authenticatorClientPIN",
        0x07 => "authenticatorReset",
        0x08 => "authenticatorGetNextAssertion",
        0x09 => "authenticatorBioEnrollment",
        0x0A => "authenticatorCredentialManagement",
        0x0B => "authenticatorSelection",
        0x0C => "authenticatorLargeBlobs",
        0x0D => "authenticatorConfig",
        0x40 => "authenticatorBioEnrollment (preview)",
        0x41 => "authenticatorCredentialManagement (preview)",
        _ => "unknown command",
    }
}

/// The status byte's name.
pub fn status_name(status: u8) -> &'static str {
    match status {
        0x00 => "CTAP2_OK",
        0x01 => "CTAP1_ERR_INVALID_COMMAND",
        0x02 => "CTAP1_ERR_INVALID_PARAMETER",
        0x03 => "CTAP1_ERR_INVALID_LENGTH",
        0x04 => "CTAP1_ERR_INVALID_SEQ",
        0x11 => "CTAP2_ERR_CBOR_UNEXPECTED_TYPE",
        0x12 => "CTAP2_ERR_INVALID_CBOR",
        0x14 => "CTAP2_ERR_MISSING_PARAMETER",
        0x15 => "CTAP2_ERR_LIMIT_EXCEEDED",
        0x18 => "CTAP2_ERR_LARGE_BLOB_STORAGE_FULL",
        0x19 => "CTAP2_ERR_CREDENTIAL_EXCLUDED",
        0x26 => "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
        0x27 => "CTAP2_ERR_OPERATION_DENIED",
        0x28 => "CTAP2_ERR_KEY_STORE_FULL",
        0x2B => "CTAP2_ERR_UNSUPPORTED_OPTION",
        0x2C => "CTAP2_ERR_INVALID_OPTION",
        0x2D => "CTAP2_ERR_KEEPALIVE_CANCEL",
        0x2E => "CTAP2_ERR_NO_CREDENTIALS",
        0x2F => "CTAP2_ERR_USER_ACTION_TIMEOUT",
        0x30 => "CTAP2_ERR_NOT_ALLOWED",
        0x31 => "CTAP2_ERR_PIN_INVALID",
        0x32 => "CTAP2_ERR_PIN_BLOCKED",
        0x33 => "CTAP2_ERR_PIN_AUTH_INVALID",
        0x34 => "CTAP2_ERR_PIN_AUTH_BLOCKED",
        0x35 => "CTAP2_ERR_PIN_NOT_SET",
        0x36 => "CTAP2_ERR_PUAT_REQUIRED",
        0x37 => "CTAP2_ERR_PIN_POLICY_VIOLATION",
        0x39 => "CTAP2_ERR_REQUEST_TOO_LARGE",
        0x3D => "CTAP2_ERR_INTEGRITY_FAILURE",
        0x3E => "CTAP2_ERR_INVALID_SUBCOMMAND",
        0x3F => "CTAP2_ERR_UV_INVALID",
        0x40 => "CTAP2_ERR_UNAUTHORIZED_PERMISSION",
        0x7F => "CTAP1_ERR_OTHER",
        _ => "(status)",
    }
}

/// Member names of a command's request map.
fn request_member(command: u8, key: i64) -> Option<&'static str> {
    Some(match (command, key) {
        (0x01, 1) => "clientDataHash",
        (0x01, 2) => "rp",
        (0x01, 3) => "user",
        (0x01, 4) => "pubKeyCredParams",
        (0x01, 5) => "excludeList",
        (0x01, 6) => "extensions",
        (0x01, 7) => "options",
        (0x01, 8) => "pinUvAuthParam",
        (0x01, 9) => "pinUvAuthProtocol",
        (0x01, 10) => "enterpriseAttestation",
        (0x01, 11) => "attestationFormatsPreference",
        (0x02, 1) => "rpId",
        (0x02, 2) => "clientDataHash",
        (0x02, 3) => "allowList",
        (0x02, 4) => "extensions",
        (0x02, 5) => "options",
        (0x02, 6) => "pinUvAuthParam",
        (0x02, 7) => "pinUvAuthProtocol",
        (0x06, 1) => "pinUvAuthProtocol",
        (0x06, 2) => "subCommand",
        (0x06, 3) => "keyAgreement",
        (0x06, 4) => "pinUvAuthParam",
        (0x06, 5) => "newPinEnc",
        (0x06, 6) => "pinHashEnc",
        (0x06, 9) => "permissions",
        (0x06, 10) => "rpId",
        (0x0A | 0x41, 1) => "subCommand",
        (0x0A | 0x41, 2) => "subCommandParams",
        (0x0A | 0x41, 3) => "pinUvAuthProtocol",
        (0x0A | 0x41, 4) => "pinUvAuthParam",
        (0x0C, 1) => "get",
        (0x0C, 2) => "set",
        (0x0C, 3) => "offset",
        (0x0C, 4) => "length",
        (0x0C, 5) => "pinUvAuthParam",
        (0x0C, 6) => "pinUvAuthProtocol",
        (0x0D, 1) => "subCommand",
        (0x0D, 2) => "subCommandParams",
        (0x0D, 3) => "pinUvAuthProtocol",
        (0x0D, 4) => "pinUvAuthParam",
        _ => return None,
    })
}

/// Member names of a command's response map.
fn response_member(command: u8, key: i64) -> Option<&'static str> {
    Some(match (command, key) {
        (0x01, 1) => "fmt",
        (0x01, 2) => "authData",
        (0x01, 3) => "attStmt",
        (0x01, 4) => "epAtt",
        (0x01, 5) => "largeBlobKey",
        (0x02 | 0x08, 1) => "credential",
        (0x02 | 0x08, 2) => "authData",
        (0x02 | 0x08, 3) => "signature",
        (0x02 | 0x08, 4) => "user",
        (0x02 | 0x08, 5) => "numberOfCredentials",
        (0x02 | 0x08, 6) => "userSelected",
        (0x02 | 0x08, 7) => "largeBlobKey",
        (0x04, 1) => "versions",
        (0x04, 2) => "extensions",
        (0x04, 3) => "aaguid",
        (0x04, 4) => "options",
        (0x04, 5) => "maxMsgSize",
        (0x04, 6) => "pinUvAuthProtocols",
        (0x04, 7) => "maxCredentialCountInList",
        (0x04, 8) => "maxCredentialIdLength",
        (0x04, 9) => "transports",
        (0x04, 10) => "algorithms",
        (0x04, 11) => "maxSerializedLargeBlobArray",
        (0x04, 14) => "firmwareVersion",
        (0x04, 16) => "maxRPIDsForSetMinPINLength",
        (0x04, 0x14) => "remainingDiscoverableCredentials",
        (0x06, 1) => "keyAgreement",
        (0x06, 2) => "pinUvAuthToken",
        (0x06, 3) => "pinRetries",
        (0x0A | 0x41, 1) => "existingResidentCredentialsCount",
        (0x0A | 0x41, 2) => "maxPossibleRemainingResidentCredentialsCount",
        (0x0A | 0x41, 3) => "rp",
        (0x0A | 0x41, 4) => "rpIDHash",
        (0x0A | 0x41, 5) => "totalRPs",
        (0x0A | 0x41, 6) => "user",
        (0x0A | 0x41, 7) => "credentialID",
        (0x0A | 0x41, 8) => "publicKey",
        (0x0A | 0x41, 9) => "totalCredentials",
        (0x0A | 0x41, 10) => "credProtect",
        (0x0A | 0x41, 11) => "largeBlobKey",
        (0x0C, 1) => "config",
        _ => return None,
    })
}

/// Members whose values are secret (or let an observer derive one) and are never logged.
fn is_secret(name: &str) -> bool {
    matches!(
        name,
        "newPinEnc" | "pinHashEnc" | "pinUvAuthToken" | "largeBlobKey"
    )
}

/// One request, decoded: `authenticatorGetAssertion {rpId: "example.com", …}`.
pub fn describe_request(request: &[u8]) -> String {
    let Some((&command, body)) = request.split_first() else {
        return "(empty request)".into();
    };
    let mut out = format!("{} (0x{command:02X})", command_name(command));
    if !body.is_empty() {
        out.push(' ');
        describe_body(&mut out, body, |key| request_member(command, key));
    }
    out
}

/// One response, decoded, for the command it answers.
pub fn describe_response(command: u8, response: &[u8]) -> String {
    let Some((&status, body)) = response.split_first() else {
        return "(empty response)".into();
    };
    let mut out = format!("{} (0x{status:02X})", status_name(status));
    if !body.is_empty() {
        out.push(' ');
        describe_body(&mut out, body, |key| response_member(command, key));
    }
    out
}

/// The name of a U2F instruction (INS).
pub fn u2f_instruction_name(ins: u8) -> &'static str {
    match ins {
        0x01 => "U2F_REGISTER",
        0x02 => "U2F_AUTHENTICATE",
        0x03 => "U2F_VERSION",
        _ => "unknown U2F instruction",
    }
}

/// The name of a U2F / ISO 7816-4 status word.
pub fn u2f_status_name(status: u16) -> &'static str {
    match status {
        0x9000 => "SW_NO_ERROR",
        0x6985 => "SW_CONDITIONS_NOT_SATISFIED",
        0x6A80 => "SW_WRONG_DATA",
        0x6700 => "SW_WRONG_LENGTH",
        0x6E00 => "SW_CLA_NOT_SUPPORTED",
        0x6D00 => "SW_INS_NOT_SUPPORTED",
        0x6F00 => "SW_UNKNOWN",
        _ => "(status word)",
    }
}

/// One U2F request (the APDU of a CTAPHID_MSG), decoded:
/// `U2F_AUTHENTICATE (0x02) check-only {challenge: h'…', application: h'…', keyHandle: h'…'}`.
pub fn describe_u2f_request(apdu: &[u8]) -> String {
    use authenticator_core::u2f::{Apdu, control};
    let Ok(parsed) = Apdu::parse(apdu) else {
        return format!("<malformed APDU: {} bytes>", apdu.len());
    };
    let mut out = format!(
        "{} (0x{:02X})",
        u2f_instruction_name(parsed.ins),
        parsed.ins
    );
    if parsed.cla != 0 {
        let _ = write!(out, " CLA 0x{:02X}", parsed.cla);
    }
    let data = parsed.data;
    match (parsed.ins, data.split_at_checked(32)) {
        (0x01, Some((challenge, application))) => {
            let _ = write!(
                out,
                " {{challenge: h'{}', application: h'{}'}}",
                hex::encode(challenge),
                hex::encode(application)
            );
        }
        (0x02, Some((challenge, rest))) => {
            let mode = match parsed.p1 {
                control::CHECK_ONLY => "check-only".to_owned(),
                control::ENFORCE_USER_PRESENCE_AND_SIGN => {
                    "enforce-user-presence-and-sign".to_owned()
                }
                control::DONT_ENFORCE_USER_PRESENCE_AND_SIGN => {
                    "dont-enforce-user-presence-and-sign".to_owned()
                }
                other => format!("control 0x{other:02X}"),
            };
            let (application, key_handle) = rest.split_at_checked(32).unwrap_or((rest, &[]));
            let _ = write!(
                out,
                " {mode} {{challenge: h'{}', application: h'{}', keyHandle: h'{}'}}",
                hex::encode(challenge),
                hex::encode(application),
                hex::encode(key_handle.get(1..).unwrap_or_default())
            );
        }
        _ if !data.is_empty() => {
            let _ = write!(out, " <{} data bytes>", data.len());
        }
        _ => {}
    }
    out
}

/// One U2F response: the status word's name and how many data bytes came with it.
pub fn describe_u2f_response(response: &[u8]) -> String {
    let Some((data, &[sw1, sw2])) = response.split_last_chunk::<2>() else {
        return "(response without a status word)".into();
    };
    let status = u16::from_be_bytes([sw1, sw2]);
    let mut out = format!("{} (0x{status:04X})", u2f_status_name(status));
    if !data.is_empty() {
        let _ = write!(out, " <{} data bytes>", data.len());
    }
    out
}

fn describe_body(out: &mut String, body: &[u8], names: impl Fn(i64) -> Option<&'static str>) {
    match cbor::decode(body) {
        Ok(Value::Map(entries)) => {
            out.push('{');
            for (index, (key, value)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                let name = cbor::as_int(key).ok().and_then(&names);
                match name {
                    Some(name) => {
                        let _ = write!(out, "{name}({})", diagnostic_string(key));
                    }
                    None => diagnostic(out, key),
                }
                out.push_str(": ");
                if name.is_some_and(is_secret) {
                    out.push_str("<redacted>");
                } else {
                    diagnostic(out, value);
                }
            }
            out.push('}');
        }
        Ok(other) => diagnostic(out, &other),
        Err(_) => {
            let _ = write!(out, "<not CBOR: {} bytes>", body.len());
        }
    }
}

fn diagnostic_string(value: &Value) -> String {
    let mut out = String::new();
    diagnostic(&mut out, value);
    out
}

/// RFC 8949 diagnostic notation.
pub fn diagnostic(out: &mut String, value: &Value) {
    match value {
        Value::Integer(i) => {
            let _ = write!(out, "{}", i128::from(*i));
        }
        Value::Bytes(bytes) => {
            let _ = write!(out, "h'{}'", hex::encode(bytes));
        }
        Value::Text(text) => {
            let _ = write!(out, "{}", serde_json::Value::String(text.clone()));
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Tag(tag, inner) => {
            let _ = write!(out, "{tag}(");
            diagnostic(out, inner);
            out.push(')');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                diagnostic(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                diagnostic(out, key);
                out.push_str(": ");
                diagnostic(out, item);
            }
            out.push('}');
        }
        _ => out.push_str("undefined"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_read_like_the_spec() {
        let request = [
            0x02, 0xA2, 0x01, 0x63, b'a', b'.', b'b', 0x02, 0x42, 0xAB, 0xCD,
        ];
        assert_eq!(
            describe_request(&request),
            "authenticatorGetAssertion (0x02) {rpId(1): \"a.b\", clientDataHash(2): h'abcd'}"
        );
        assert_eq!(
            describe_response(0x02, &[0x2E]),
            "CTAP2_ERR_NO_CREDENTIALS (0x2E)"
        );
        assert_eq!(describe_request(&[0x04]), "authenticatorGetInfo (0x04)");
    }

    #[test]
    fn u2f_messages_read_like_the_spec() {
        let mut authenticate = vec![0x00, 0x02, 0x07, 0x00, 0x00, 0x00, 0x43];
        authenticate.extend([0x11; 32]);
        authenticate.extend([0x22; 32]);
        authenticate.extend([0x02, 0xAB, 0xCD]);
        let text = describe_u2f_request(&authenticate);
        assert!(
            text.starts_with("U2F_AUTHENTICATE (0x02) check-only {challenge: h'1111"),
            "{text}"
        );
        assert!(text.ends_with("keyHandle: h'abcd'}"), "{text}");
        assert_eq!(
            describe_u2f_request(&[0x00, 0x03, 0x00, 0x00]),
            "U2F_VERSION (0x03)"
        );
        assert_eq!(
            describe_u2f_request(&[0x00, 0x03]),
            "<malformed APDU: 2 bytes>"
        );
        assert_eq!(
            describe_u2f_response(b"U2F_V2\x90\x00"),
            "SW_NO_ERROR (0x9000) <6 data bytes>"
        );
        assert_eq!(
            describe_u2f_response(&[0x69, 0x85]),
            "SW_CONDITIONS_NOT_SATISFIED (0x6985)"
        );
        assert_eq!(
            describe_u2f_response(&[0x90]),
            "(response without a status word)"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        // clientPIN response {2: pinUvAuthToken}
        let response = [0x00, 0xA1, 0x02, 0x42, 0x12, 0x34];
        let text = describe_response(0x06, &response);
        assert!(text.contains("pinUvAuthToken(2): <redacted>"), "{text}");
        assert!(!text.contains("1234"));
        // credentialManagement (and its preview) {11: largeBlobKey}
        for command in [0x0A, 0x41] {
            let response = [0x00, 0xA1, 0x0B, 0x42, 0x12, 0x34];
            let text = describe_response(command, &response);
            assert!(text.contains("largeBlobKey(11): <redacted>"), "{text}");
            assert!(!text.contains("1234"));
        }
    }

    #[test]
    fn garbage_is_described_not_fatal() {
        assert_eq!(
            describe_request(&[0x01, 0xFF]),
            "authenticatorMakeCredential (0x01) <not CBOR: 1 bytes>"
        );
    }
}
