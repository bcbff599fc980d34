//! The page's options, as JSON: `PublicKeyCredentialCreationOptionsJSON` and
//! `PublicKeyCredentialRequestOptionsJSON` (WebAuthn L3 §5.1.8, §5.1.9) — what
//! `PublicKeyCredential.parseCreationOptionsFromJSON()` and `parseRequestOptionsFromJSON()`
//! accept, buffers as base64url strings.
//!
//! Everything here is hostile input. A missing required member or a member of the wrong JSON
//! type is a `TypeError` (what WebIDL dictionary conversion throws); a buffer that is not
//! base64url is an `EncodingError` (what `parse*OptionsFromJSON` throws). Unknown members are
//! ignored, as WebIDL ignores them. Members whose WebIDL type is `DOMString` but whose values
//! come from an enumeration (`residentKey`, `userVerification`, `attestation`,
//! `authenticatorAttachment`) keep unknown values, which the ceremony then treats as absent
//! (§2.1.1, "enumerations as DOMString types"). Base64url is accepted with or without `=`
//! padding, never with characters outside its alphabet.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::WebAuthnError;

/// base64url without padding, as WebAuthn's JSON writes it.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a base64url string; `what` names the member for the `EncodingError`.
pub fn from_b64(text: &str, what: &str) -> Result<Vec<u8>, WebAuthnError> {
    LENIENT_URL_SAFE
        .decode(text)
        .map_err(|error| WebAuthnError::encoding(format!("{what} is not base64url: {error}")))
}

/// `PublicKeyCredentialRpEntity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpEntity {
    /// `id`, when the page gave one.
    pub id: Option<String>,
    /// `name`.
    pub name: String,
}

/// `PublicKeyCredentialUserEntity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntity {
    /// `id`, the user handle.
    pub id: Vec<u8>,
    /// `name`.
    pub name: String,
    /// `displayName`.
    pub display_name: String,
}

/// `PublicKeyCredentialParameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialParameters {
    /// `type`.
    pub kind: String,
    /// `alg`, a COSE algorithm identifier.
    pub alg: i64,
}

/// `PublicKeyCredentialDescriptor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDescriptor {
    /// `type`.
    pub kind: String,
    /// `id`, the credential ID.
    pub id: Vec<u8>,
    /// `transports`, as given.
    pub transports: Vec<String>,
}

/// `AuthenticatorSelectionCriteria`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorSelection {
    /// `authenticatorAttachment`.
    pub authenticator_attachment: Option<String>,
    /// `residentKey`.
    pub resident_key: Option<String>,
    /// `requireResidentKey` (default false).
    pub require_resident_key: bool,
    /// `userVerification` (default "preferred").
    pub user_verification: String,
}

impl Default for AuthenticatorSelection {
    fn default() -> Self {
        Self {
            authenticator_attachment: None,
            resident_key: None,
            require_resident_key: false,
            user_verification: "preferred".to_owned(),
        }
    }
}

/// `PublicKeyCredentialCreationOptions`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CreationOptions {
    /// `rp`.
    pub rp: RpEntity,
    /// `user`.
    pub user: UserEntity,
    /// `challenge`.
    pub challenge: Vec<u8>,
    /// `pubKeyCredParams`.
    pub pub_key_cred_params: Vec<CredentialParameters>,
    /// `timeout` in milliseconds.
    pub timeout: Option<u32>,
    /// `excludeCredentials`.
    pub exclude_credentials: Vec<CredentialDescriptor>,
    /// `authenticatorSelection`, defaults filled in when absent.
    pub authenticator_selection: Option<AuthenticatorSelection>,
    /// `hints`.
    pub hints: Vec<String>,
    /// `attestation` (default "none").
    pub attestation: String,
    /// `attestationFormats`.
    pub attestation_formats: Vec<String>,
    /// `extensions`, still as JSON: the extensions module reads the ones it knows.
    pub extensions: Map<String, Value>,
}

/// `PublicKeyCredentialRequestOptions`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOptions {
    /// `challenge`.
    pub challenge: Vec<u8>,
    /// `timeout` in milliseconds.
    pub timeout: Option<u32>,
    /// `rpId`.
    pub rp_id: Option<String>,
    /// `allowCredentials`.
    pub allow_credentials: Vec<CredentialDescriptor>,
    /// `userVerification` (default "preferred").
    pub user_verification: String,
    /// `hints`.
    pub hints: Vec<String>,
    /// `extensions`, still as JSON.
    pub extensions: Map<String, Value>,
}

// ------------------------------------------------------------------ JSON shapes

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreationJson {
    rp: RpJson,
    user: UserJson,
    challenge: String,
    pub_key_cred_params: Vec<ParamJson>,
    #[serde(default)]
    timeout: Option<u32>,
    #[serde(default)]
    exclude_credentials: Vec<DescriptorJson>,
    #[serde(default)]
    authenticator_selection: Option<SelectionJson>,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    attestation: Option<String>,
    #[serde(default)]
    attestation_formats: Vec<String>,
    #[serde(default)]
    extensions: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestJson {
    challenge: String,
    #[serde(default)]
    timeout: Option<u32>,
    #[serde(default)]
    rp_id: Option<String>,
    #[serde(default)]
    allow_credentials: Vec<DescriptorJson>,
    #[serde(default)]
    user_verification: Option<String>,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    extensions: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RpJson {
    #[serde(default)]
    id: Option<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserJson {
    id: String,
    name: String,
    display_name: String,
}

#[derive(Deserialize)]
struct ParamJson {
    #[serde(rename = "type")]
    kind: String,
    alg: i64,
}

#[derive(Deserialize)]
struct DescriptorJson {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    transports: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectionJson {
    #[serde(default)]
    authenticator_attachment: Option<String>,
    #[serde(default)]
    resident_key: Option<String>,
    #[serde(default)]
    require_resident_key: Option<bool>,
    #[serde(default)]
    user_verification: Option<String>,
}

fn descriptors(
    list: Vec<DescriptorJson>,
    what: &str,
) -> Result<Vec<CredentialDescriptor>, WebAuthnError> {
    list.into_iter()
        .enumerate()
        .map(|(index, descriptor)| {
            Ok(CredentialDescriptor {
                id: from_b64(&descriptor.id, &format!("{what}[{index}].id"))?,
                kind: descriptor.kind,
                transports: descriptor.transports,
            })
        })
        .collect()
}

fn type_error(kind: &str) -> impl Fn(serde_json::Error) -> WebAuthnError + '_ {
    move |error| WebAuthnError::type_error(format!("invalid {kind}: {error}"))
}

impl CreationOptions {
    /// Decodes `PublicKeyCredentialCreationOptionsJSON`.
    pub fn from_json(json: &Value) -> Result<Self, WebAuthnError> {
        let raw = CreationJson::deserialize(json)
            .map_err(type_error("PublicKeyCredentialCreationOptionsJSON"))?;
        let selection = raw.authenticator_selection.map(|s| AuthenticatorSelection {
            authenticator_attachment: s.authenticator_attachment,
            resident_key: s.resident_key,
            require_resident_key: s.require_resident_key.unwrap_or(false),
            user_verification: s
                .user_verification
                .unwrap_or_else(|| "preferred".to_owned()),
        });
        Ok(Self {
            rp: RpEntity {
                id: raw.rp.id,
                name: raw.rp.name,
            },
            user: UserEntity {
                id: from_b64(&raw.user.id, "user.id")?,
                name: raw.user.name,
                display_name: raw.user.display_name,
            },
            challenge: from_b64(&raw.challenge, "challenge")?,
            pub_key_cred_params: raw
                .pub_key_cred_params
                .into_iter()
                .map(|p| CredentialParameters {
                    kind: p.kind,
                    alg: p.alg,
                })
                .collect(),
            timeout: raw.timeout,
            exclude_credentials: descriptors(raw.exclude_credentials, "excludeCredentials")?,
            authenticator_selection: selection,
            hints: raw.hints,
            attestation: raw.attestation.unwrap_or_else(|| "none".to_owned()),
            attestation_formats: raw.attestation_formats,
            extensions: raw.extensions.unwrap_or_default(),
        })
    }

    /// `authenticatorSelection` with its defaults when the page gave none.
    pub fn selection(&self) -> AuthenticatorSelection {
        self.authenticator_selection.clone().unwrap_or_default()
    }
}

impl RequestOptions {
    /// Decodes `PublicKeyCredentialRequestOptionsJSON`.
    pub fn from_json(json: &Value) -> Result<Self, WebAuthnError> {
        let raw = RequestJson::deserialize(json)
            .map_err(type_error("PublicKeyCredentialRequestOptionsJSON"))?;
        Ok(Self {
            challenge: from_b64(&raw.challenge, "challenge")?,
            timeout: raw.timeout,
            rp_id: raw.rp_id,
            allow_credentials: descriptors(raw.allow_credentials, "allowCredentials")?,
            user_verification: raw
                .user_verification
                .unwrap_or_else(|| "preferred".to_owned()),
            hints: raw.hints,
            extensions: raw.extensions.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorName;
    use serde_json::json;

    fn creation() -> Value {
        json!({
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": "AQID", "name": "alice", "displayName": "Alice"},
            "challenge": "AAECAwQFBgcICQoLDA0ODw",
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        })
    }

    fn error_of(json: &Value) -> Option<ErrorName> {
        CreationOptions::from_json(json).err().map(|e| e.name)
    }

    #[test]
    fn minimal_creation_options_get_their_defaults() {
        let options = CreationOptions::from_json(&creation()).unwrap();
        assert_eq!(options.user.id, vec![1, 2, 3]);
        assert_eq!(options.challenge, (0..16).collect::<Vec<u8>>());
        assert_eq!(options.attestation, "none");
        assert!(options.exclude_credentials.is_empty());
        assert_eq!(options.selection().user_verification, "preferred");
        assert!(!options.selection().require_resident_key);
        assert!(options.extensions.is_empty());
    }

    #[test]
    fn missing_or_mistyped_members_are_type_errors() {
        for member in ["rp", "user", "challenge", "pubKeyCredParams"] {
            let mut json = creation();
            json.as_object_mut().unwrap().remove(member);
            assert_eq!(error_of(&json), Some(ErrorName::TypeError), "{member}");
        }
        for (pointer, value) in [
            ("/challenge", json!(12)),
            ("/rp/name", json!(null)),
            ("/user/displayName", json!(["x"])),
            ("/pubKeyCredParams", json!({"type": "public-key"})),
            ("/timeout", json!(-1)),
            ("/timeout", json!(4_294_967_296u64)),
            ("/timeout", json!("60000")),
            ("/excludeCredentials", json!([{"type": "public-key"}])),
            ("/authenticatorSelection", json!("platform")),
            ("/extensions", json!([])),
        ] {
            let mut json = creation();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                json.as_object_mut().unwrap()
            } else {
                json.pointer_mut(parent).unwrap().as_object_mut().unwrap()
            };
            target.insert(key.to_owned(), value);
            assert_eq!(error_of(&json), Some(ErrorName::TypeError), "{pointer}");
        }
        assert_eq!(
            RequestOptions::from_json(&json!({})).err().map(|e| e.name),
            Some(ErrorName::TypeError)
        );
        assert_eq!(
            RequestOptions::from_json(&json!("challenge"))
                .err()
                .map(|e| e.name),
            Some(ErrorName::TypeError)
        );
    }

    #[test]
    fn bad_base64url_is_an_encoding_error() {
        for (pointer, value) in [
            ("/challenge", "AAEC+/8"),
            ("/challenge", "A"),
            ("/user/id", "a b"),
            ("/user/id", "AQ*D"),
        ] {
            let mut json = creation();
            *json.pointer_mut(pointer).unwrap() = json!(value);
            assert_eq!(error_of(&json), Some(ErrorName::EncodingError), "{value}");
        }
        let mut json = creation();
        json["excludeCredentials"] = json!([{"type": "public-key", "id": "%%"}]);
        assert_eq!(error_of(&json), Some(ErrorName::EncodingError));
    }

    #[test]
    fn base64url_padding_is_optional() {
        assert_eq!(from_b64("AQI", "x").unwrap(), vec![1, 2]);
        assert_eq!(from_b64("AQI=", "x").unwrap(), vec![1, 2]);
        assert_eq!(from_b64("", "x").unwrap(), Vec::<u8>::new());
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn unknown_members_and_enum_values_are_kept_or_ignored() {
        let mut json = creation();
        json["futureMember"] = json!({"x": 1});
        json["authenticatorSelection"] =
            json!({"residentKey": "someday", "userVerification": "sometimes"});
        json["attestation"] = json!("maybe");
        let options = CreationOptions::from_json(&json).unwrap();
        assert_eq!(options.selection().resident_key.as_deref(), Some("someday"));
        assert_eq!(options.attestation, "maybe");
    }

    #[test]
    fn request_options() {
        let options = RequestOptions::from_json(&json!({
            "challenge": "AAAA",
            "rpId": "example.com",
            "allowCredentials": [{"type": "public-key", "id": "AQ", "transports": ["usb"]}],
            "userVerification": "required",
            "timeout": 1000,
        }))
        .unwrap();
        assert_eq!(options.rp_id.as_deref(), Some("example.com"));
        assert_eq!(options.allow_credentials[0].id, vec![1]);
        assert_eq!(options.allow_credentials[0].transports, vec!["usb"]);
        assert_eq!(options.timeout, Some(1000));
        let defaults = RequestOptions::from_json(&json!({"challenge": "AAAA"})).unwrap();
        assert_eq!(defaults.user_verification, "preferred");
        assert_eq!(defaults.rp_id, None);
    }
}
