//! One `operation` event per CTAP request a device answers: what the event log
//! (`serve --event-log FILE`, JSON lines) records of every operation of every device — time,
//! device, lane, command, RP ID, credential ID, result and latency. Never a secret: the RP ID
//! and the credential ID are public values, nothing else of the request or answer is kept.

use std::time::Instant;

use authenticator_core::cbor::{self, Key, Members};
use authenticator_core::command;
use fidelio_ctaphid::RequestKind;
use serde_json::{Map, Value as Json, json};

use crate::ctap_log;
use crate::virtual_auth::encode_b64;

/// A request seen starting.
#[derive(Debug)]
pub struct Started {
    at: Instant,
    kind: RequestKind,
    command: u8,
    lane: Option<&'static str>,
    rp_id: Option<String>,
}

impl Started {
    /// Notes a request starting (`payload`: the CBOR command and parameters, or the APDU).
    pub fn new(kind: RequestKind, payload: &[u8], lane: Option<&'static str>) -> Self {
        let (command, rp_id) = match kind {
            RequestKind::Cbor => {
                let command = payload.first().copied().unwrap_or(0);
                (
                    command,
                    payload.get(1..).and_then(|rest| rp_id_of(command, rest)),
                )
            }
            RequestKind::Msg => (payload.get(1).copied().unwrap_or(0), None),
        };
        Self {
            at: Instant::now(),
            kind,
            command,
            lane,
            rp_id,
        }
    }

    /// The event's fields for the answer `response`.
    pub fn finish(self, response: &[u8]) -> Map<String, Json> {
        let latency = self.at.elapsed().as_secs_f64() * 1000.0;
        let mut fields = Map::new();
        fields.insert("lane".into(), json!(self.lane));
        match self.kind {
            RequestKind::Cbor => {
                let status = response.first().copied().unwrap_or(0xFF);
                fields.insert("protocol".into(), json!("ctap2"));
                fields.insert(
                    "command".into(),
                    json!(ctap_log::command_name(self.command)),
                );
                fields.insert("result".into(), json!(ctap_log::status_name(status)));
                fields.insert("status".into(), json!(status));
                if status == 0
                    && let Some(id) = response
                        .get(1..)
                        .and_then(|body| credential_id_of(self.command, body))
                {
                    fields.insert("credentialId".into(), json!(encode_b64(&id)));
                }
            }
            RequestKind::Msg => {
                let status = match response {
                    [.., high, low] => u16::from_be_bytes([*high, *low]),
                    _ => 0,
                };
                fields.insert("protocol".into(), json!("u2f"));
                fields.insert(
                    "command".into(),
                    json!(ctap_log::u2f_instruction_name(self.command)),
                );
                fields.insert("result".into(), json!(ctap_log::u2f_status_name(status)));
                fields.insert("status".into(), json!(status));
            }
        }
        fields.insert("rpId".into(), json!(self.rp_id));
        fields.insert("latencyMs".into(), json!((latency * 100.0).round() / 100.0));
        fields
    }
}

/// The RP ID of a makeCredential or getAssertion request.
fn rp_id_of(command: u8, parameters: &[u8]) -> Option<String> {
    if !matches!(command, command::MAKE_CREDENTIAL | command::GET_ASSERTION) {
        return None;
    }
    let decoded = cbor::decode(parameters).ok()?;
    rp_id_in(command, &Members::of(&decoded).ok()?)
}

/// The RP ID in a makeCredential (`rp.id`) or getAssertion (`rpId`) request's parameters.
pub(crate) fn rp_id_in(command: u8, members: &Members<'_>) -> Option<String> {
    let rp_id = match command {
        command::MAKE_CREDENTIAL => Members::of(members.get(Key::Int(2))?)
            .ok()?
            .get(Key::Text("id"))?,
        command::GET_ASSERTION => members.get(Key::Int(1))?,
        _ => return None,
    };
    Some(cbor::as_text(rp_id).ok()?.to_owned())
}

/// The credential ID of a makeCredential answer (in its attested credential data) or of a
/// getAssertion / getNextAssertion answer (its credential descriptor).
fn credential_id_of(command: u8, body: &[u8]) -> Option<Vec<u8>> {
    let decoded = cbor::decode(body).ok()?;
    let members = Members::of(&decoded).ok()?;
    match command {
        command::MAKE_CREDENTIAL => {
            let auth_data = cbor::as_bytes(members.get(Key::Int(2))?).ok()?;
            // rpIdHash (32) ‖ flags ‖ counter (4) ‖ AAGUID (16) ‖ L (2) ‖ credential ID.
            let length = auth_data.get(53..55)?;
            let length = usize::from(u16::from_be_bytes([*length.first()?, *length.get(1)?]));
            Some(auth_data.get(55..55usize.checked_add(length)?)?.to_vec())
        }
        command::GET_ASSERTION | command::GET_NEXT_ASSERTION => {
            let descriptor = Members::of(members.get(Key::Int(1))?).ok()?;
            Some(
                cbor::as_bytes(descriptor.get(Key::Text("id"))?)
                    .ok()?
                    .to_vec(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_payloads_give_no_ids_and_no_panic() {
        for payload in [
            &[][..],
            &[0x01],
            &[0x01, 0xA1],
            &[0x02, 0xFF, 0xFF],
            &[0x01, 0xA1, 0x02, 0xA1, 0x62, b'i', b'd', 0x01],
        ] {
            let started = Started::new(RequestKind::Cbor, payload, Some("udp"));
            let fields = started.finish(payload);
            assert!(fields.get("credentialId").is_none());
        }
        let fields = Started::new(RequestKind::Msg, &[0, 2], None).finish(&[0x69, 0x85]);
        assert_eq!(fields.get("protocol"), Some(&json!("u2f")));
        assert_eq!(fields.get("status"), Some(&json!(0x6985)));
    }

    #[test]
    fn a_get_assertion_names_its_rp_and_credential() {
        // getAssertion {1: "example.com", 2: h'00…'}
        let mut request = vec![0x02, 0xA2, 0x01, 0x6B];
        request.extend_from_slice(b"example.com");
        request.extend_from_slice(&[0x02, 0x41, 0x00]);
        // {1: {"id": h'0102', "type": "public-key"}}
        let mut response = vec![0x00, 0xA1, 0x01, 0xA2, 0x62, b'i', b'd', 0x42, 1, 2, 0x64];
        response.extend_from_slice(b"type");
        response.push(0x6A);
        response.extend_from_slice(b"public-key");
        let fields = Started::new(RequestKind::Cbor, &request, Some("gateway")).finish(&response);
        assert_eq!(fields.get("rpId"), Some(&json!("example.com")));
        assert_eq!(fields.get("credentialId"), Some(&json!("AQI")));
        assert_eq!(fields.get("result"), Some(&json!("CTAP2_OK")));
        assert_eq!(
            fields.get("command"),
            Some(&json!("authenticatorGetAssertion"))
        );
        assert_eq!(fields.get("lane"), Some(&json!("gateway")));
    }
}
