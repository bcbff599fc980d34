//! What a ceremony resolves with: the `PublicKeyCredential` a page would get, as the JSON its
//! `toJSON()` produces — `RegistrationResponseJSON` and `AuthenticationResponseJSON`
//! (WebAuthn L3 §5.1) — with every buffer base64url-encoded without padding.

use serde_json::{Map, Value as Json, json};

use crate::options::b64;

/// The result of `navigator.credentials.create()`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationResponse {
    /// The credential ID (`id`, `rawId`).
    pub credential_id: Vec<u8>,
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.attestationObject` (after the client's attestation conveyance rules).
    pub attestation_object: Vec<u8>,
    /// `response.getAuthenticatorData()`.
    pub authenticator_data: Vec<u8>,
    /// `response.getTransports()`: unique, lexicographically sorted.
    pub transports: Vec<String>,
    /// `response.getPublicKey()`: DER SubjectPublicKeyInfo, when the algorithm is one a user
    /// agent must understand.
    pub public_key: Option<Vec<u8>>,
    /// `response.getPublicKeyAlgorithm()`.
    pub public_key_algorithm: i64,
    /// `authenticatorAttachment`: `"platform"` or `"cross-platform"`.
    pub authenticator_attachment: Option<String>,
    /// `getClientExtensionResults()`.
    pub client_extension_results: Map<String, Json>,
}

impl RegistrationResponse {
    /// `RegistrationResponseJSON`.
    pub fn to_json(&self) -> Json {
        let id = b64(&self.credential_id);
        let mut response = json!({
            "clientDataJSON": b64(&self.client_data_json),
            "authenticatorData": b64(&self.authenticator_data),
            "transports": self.transports,
            "publicKeyAlgorithm": self.public_key_algorithm,
            "attestationObject": b64(&self.attestation_object),
        });
        if let (Some(key), Some(object)) = (&self.public_key, response.as_object_mut()) {
            object.insert("publicKey".into(), Json::String(b64(key)));
        }
        let mut out = json!({
            "id": id,
            "rawId": id,
            "response": response,
            "clientExtensionResults": self.client_extension_results,
            "type": "public-key",
        });
        if let (Some(attachment), Some(object)) =
            (&self.authenticator_attachment, out.as_object_mut())
        {
            object.insert(
                "authenticatorAttachment".into(),
                Json::String(attachment.clone()),
            );
        }
        out
    }
}

/// The result of `navigator.credentials.get()`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticationResponse {
    /// The credential ID (`id`, `rawId`).
    pub credential_id: Vec<u8>,
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.authenticatorData`.
    pub authenticator_data: Vec<u8>,
    /// `response.signature`.
    pub signature: Vec<u8>,
    /// `response.userHandle`.
    pub user_handle: Option<Vec<u8>>,
    /// `authenticatorAttachment`.
    pub authenticator_attachment: Option<String>,
    /// `getClientExtensionResults()`.
    pub client_extension_results: Map<String, Json>,
}

impl AuthenticationResponse {
    /// `AuthenticationResponseJSON`.
    pub fn to_json(&self) -> Json {
        let id = b64(&self.credential_id);
        let mut response = json!({
            "clientDataJSON": b64(&self.client_data_json),
            "authenticatorData": b64(&self.authenticator_data),
            "signature": b64(&self.signature),
        });
        if let (Some(handle), Some(object)) = (&self.user_handle, response.as_object_mut()) {
            object.insert("userHandle".into(), Json::String(b64(handle)));
        }
        let mut out = json!({
            "id": id,
            "rawId": id,
            "response": response,
            "clientExtensionResults": self.client_extension_results,
            "type": "public-key",
        });
        if let (Some(attachment), Some(object)) =
            (&self.authenticator_attachment, out.as_object_mut())
        {
            object.insert(
                "authenticatorAttachment".into(),
                Json::String(attachment.clone()),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_json_shape() {
        let response = RegistrationResponse {
            credential_id: vec![1, 2, 3],
            client_data_json: b"{}".to_vec(),
            attestation_object: vec![0xa0],
            authenticator_data: vec![0; 37],
            transports: vec!["usb".into()],
            public_key: None,
            public_key_algorithm: -8,
            authenticator_attachment: Some("cross-platform".into()),
            client_extension_results: Map::new(),
        };
        let json = response.to_json();
        assert_eq!(json["id"], "AQID");
        assert_eq!(json["rawId"], "AQID");
        assert_eq!(json["type"], "public-key");
        assert_eq!(json["authenticatorAttachment"], "cross-platform");
        assert_eq!(json["response"]["clientDataJSON"], "e30");
        assert_eq!(json["response"]["transports"], serde_json::json!(["usb"]));
        assert_eq!(json["response"]["publicKeyAlgorithm"], -8);
        assert!(json["response"].get("publicKey").is_none());
        assert_eq!(json["clientExtensionResults"], serde_json::json!({}));
    }

    #[test]
    fn authentication_json_omits_a_missing_user_handle() {
        let response = AuthenticationResponse {
            credential_id: vec![1],
            client_data_json: vec![],
            authenticator_data: vec![],
            signature: vec![2],
            user_handle: None,
            authenticator_attachment: None,
            client_extension_results: Map::new(),
        };
        let json = response.to_json();
        assert!(json["response"].get("userHandle").is_none());
        assert!(json.get("authenticatorAttachment").is_none());
        assert_eq!(json["response"]["signature"], "Ag");
    }
}
