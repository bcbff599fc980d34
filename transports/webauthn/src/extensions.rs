//! Client extension inputs (WebAuthn L3 §9–§10, CTAP 2.1 §12), read from the page's
//! `extensions` JSON, and the pieces of their processing that create and get share.
//!
//! | extension | registration | authentication | CTAP |
//! |---|---|---|---|
//! | `credProps` | output `{rk}` = the requireResidentKey sent | — | none (client only) |
//! | `credentialProtectionPolicy` + `enforceCredentialProtectionPolicy` | `credProtect: 1/2/3`; enforced policy above optional on an authenticator without credProtect → `NotAllowedError` | — | `credProtect` |
//! | `credBlob` / `getCredBlob` | bytes → output `credBlob: bool` | `true` → output `getCredBlob: bytes` | `credBlob` |
//! | `minPinLength` | `true` → the authenticator adds `minPinLength` to authenticator data (RPs on its list only); no client output | — | `minPinLength` |
//! | `prf` | `hmac-secret: true` (+ `hmac-secret-mc` salts for `eval`) → `{enabled, results?}`; `evalByCredential` → `NotSupportedError` | `eval` / `evalByCredential` → hmac-secret salts → `{results?}` | `hmac-secret`, `hmac-secret-mc` |
//! | `largeBlob` | `support` → `largeBlobKey: true` → `{supported}`; `read`/`write` → `NotSupportedError` | `read` → `{blob?}`, `write` → `{written}` via authenticatorLargeBlobs | `largeBlobKey` |
//!
//! Extensions this client does not know (`appid`, `appidExclude`, `hmacCreateSecret`…) are
//! ignored, as §5.1.3 step 12 ignores unsupported ones: no input reaches the authenticator
//! and no output appears. A known extension with an input of the wrong JSON type is a
//! `TypeError`, a buffer that is not base64url an `EncodingError`.
//!
//! **prf over hmac-secret.** The salt for an input is SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input).
//! The PRF exposed is hmac-secret's *with-UV* one, so a ceremony with `prf` inputs asks for
//! user verification whenever the authenticator can perform it; results computed without UV
//! (the authenticator has no PIN and no built-in UV) would come from the other PRF and are not
//! returned — the output then lacks `results`, as the spec allows ("may not be available").

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::error::{ErrorName, WebAuthnError};
use crate::options::{CredentialDescriptor, from_b64};

/// The salt hmac-secret gets for a PRF input: SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input).
pub fn prf_salt(input: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"WebAuthn PRF");
    hash.update([0x00]);
    hash.update(input);
    hash.finalize().into()
}

/// `AuthenticationExtensionsPRFValues`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrfValues {
    /// `first`.
    pub first: Vec<u8>,
    /// `second`.
    pub second: Option<Vec<u8>>,
}

impl PrfValues {
    /// salt1, or salt1 ‖ salt2.
    pub fn salts(&self) -> Vec<u8> {
        let mut salts = prf_salt(&self.first).to_vec();
        if let Some(second) = &self.second {
            salts.extend_from_slice(&prf_salt(second));
        }
        salts
    }

    fn parse(json: &Json, what: &str) -> Result<Self, WebAuthnError> {
        let object = json
            .as_object()
            .ok_or_else(|| WebAuthnError::type_error(format!("{what} is not a dictionary")))?;
        let first = object
            .get("first")
            .ok_or_else(|| WebAuthnError::type_error(format!("{what}.first is required")))?;
        let first = from_b64(
            text(first, &format!("{what}.first"))?,
            &format!("{what}.first"),
        )?;
        let second = match object.get("second") {
            None | Some(Json::Null) => None,
            Some(value) => Some(from_b64(
                text(value, &format!("{what}.second"))?,
                &format!("{what}.second"),
            )?),
        };
        Ok(Self { first, second })
    }
}

/// The `credProtect` levels (CTAP 2.1 §12.1) by WebAuthn name.
fn cred_protect_level(policy: &str) -> Option<u8> {
    match policy {
        "userVerificationOptional" => Some(1),
        "userVerificationOptionalWithCredentialIDList" => Some(2),
        "userVerificationRequired" => Some(3),
        _ => None,
    }
}

fn text<'a>(value: &'a Json, what: &str) -> Result<&'a str, WebAuthnError> {
    value
        .as_str()
        .ok_or_else(|| WebAuthnError::type_error(format!("{what} must be a string")))
}

fn boolean(value: &Json, what: &str) -> Result<bool, WebAuthnError> {
    value
        .as_bool()
        .ok_or_else(|| WebAuthnError::type_error(format!("{what} must be a boolean")))
}

fn dictionary<'a>(value: &'a Json, what: &str) -> Result<&'a Map<String, Json>, WebAuthnError> {
    value
        .as_object()
        .ok_or_else(|| WebAuthnError::type_error(format!("{what} must be a dictionary")))
}

/// Registration extension inputs this client processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateExtensions {
    /// `credProps: true`.
    pub cred_props: bool,
    /// `credentialProtectionPolicy` as a credProtect level, with
    /// `enforceCredentialProtectionPolicy`.
    pub cred_protect: Option<(u8, bool)>,
    /// `credBlob`.
    pub cred_blob: Option<Vec<u8>>,
    /// `minPinLength: true`.
    pub min_pin_length: bool,
    /// `prf`, with its `eval` if any.
    pub prf: Option<Option<PrfValues>>,
    /// `largeBlob`, `true` when `support` is `"required"`.
    pub large_blob: Option<bool>,
}

impl CreateExtensions {
    /// Reads the inputs; the errors are the ones §10 and CTAP §12 prescribe.
    pub fn parse(extensions: &Map<String, Json>) -> Result<Self, WebAuthnError> {
        let mut out = Self::default();
        if let Some(value) = extensions.get("credProps") {
            out.cred_props = boolean(value, "credProps")?;
        }
        if let Some(value) = extensions.get("credentialProtectionPolicy") {
            let policy = text(value, "credentialProtectionPolicy")?;
            let enforce = match extensions.get("enforceCredentialProtectionPolicy") {
                Some(value) => boolean(value, "enforceCredentialProtectionPolicy")?,
                None => false,
            };
            out.cred_protect = cred_protect_level(policy).map(|level| (level, enforce));
        }
        if let Some(value) = extensions.get("credBlob") {
            out.cred_blob = Some(from_b64(text(value, "credBlob")?, "credBlob")?);
        }
        if let Some(value) = extensions.get("minPinLength") {
            out.min_pin_length = boolean(value, "minPinLength")?;
        }
        if let Some(value) = extensions.get("prf") {
            let prf = dictionary(value, "prf")?;
            if prf.get("evalByCredential").is_some_and(|v| !v.is_null()) {
                return Err(WebAuthnError::not_supported(
                    "prf.evalByCredential is not allowed when creating a credential",
                ));
            }
            let eval = match prf.get("eval") {
                None | Some(Json::Null) => None,
                Some(eval) => Some(PrfValues::parse(eval, "prf.eval")?),
            };
            out.prf = Some(eval);
        }
        if let Some(value) = extensions.get("largeBlob") {
            let large_blob = dictionary(value, "largeBlob")?;
            if large_blob.contains_key("read") || large_blob.contains_key("write") {
                return Err(WebAuthnError::not_supported(
                    "largeBlob.read and largeBlob.write are only valid when getting an assertion",
                ));
            }
            let support = match large_blob.get("support") {
                Some(value) => Some(text(value, "largeBlob.support")?),
                None => None,
            };
            out.large_blob = Some(support == Some("required"));
        }
        Ok(out)
    }
}

/// What `largeBlob` asks of an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LargeBlobRequest {
    /// `read: true`.
    Read,
    /// `write`.
    Write(Vec<u8>),
}

/// `prf` at authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrfInputs {
    /// `eval`.
    pub eval: Option<PrfValues>,
    /// `evalByCredential`, keys decoded: credential ID → values.
    pub by_credential: Vec<(Vec<u8>, PrfValues)>,
}

/// Authentication extension inputs this client processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetExtensions {
    /// `getCredBlob: true`.
    pub get_cred_blob: bool,
    /// `prf`.
    pub prf: Option<PrfInputs>,
    /// `largeBlob`.
    pub large_blob: Option<LargeBlobRequest>,
}

impl GetExtensions {
    /// Reads the inputs against the request's `allowCredentials`.
    pub fn parse(
        extensions: &Map<String, Json>,
        allow_credentials: &[CredentialDescriptor],
    ) -> Result<Self, WebAuthnError> {
        let mut out = Self::default();
        if let Some(value) = extensions.get("getCredBlob") {
            out.get_cred_blob = boolean(value, "getCredBlob")?;
        }
        if let Some(value) = extensions.get("prf") {
            let prf = dictionary(value, "prf")?;
            let eval = match prf.get("eval") {
                None | Some(Json::Null) => None,
                Some(eval) => Some(PrfValues::parse(eval, "prf.eval")?),
            };
            let mut by_credential = Vec::new();
            match prf.get("evalByCredential") {
                None | Some(Json::Null) => {}
                Some(value) => {
                    let record = dictionary(value, "prf.evalByCredential")?;
                    if !record.is_empty() && allow_credentials.is_empty() {
                        return Err(WebAuthnError::not_supported(
                            "prf.evalByCredential needs a non-empty allowCredentials",
                        ));
                    }
                    for (key, values) in record {
                        let syntax = || {
                            WebAuthnError::new(
                                ErrorName::SyntaxError,
                                format!(
                                    "prf.evalByCredential key {key:?} is not the base64url ID \
                                     of a credential in allowCredentials"
                                ),
                            )
                        };
                        if key.is_empty() {
                            return Err(syntax());
                        }
                        let id = from_b64(key, "prf.evalByCredential key").map_err(|_| syntax())?;
                        if !allow_credentials.iter().any(|c| c.id == id) {
                            return Err(syntax());
                        }
                        let values =
                            PrfValues::parse(values, &format!("prf.evalByCredential[{key:?}]"))?;
                        by_credential.push((id, values));
                    }
                }
            }
            out.prf = Some(PrfInputs {
                eval,
                by_credential,
            });
        }
        if let Some(value) = extensions.get("largeBlob") {
            let large_blob = dictionary(value, "largeBlob")?;
            if large_blob.contains_key("support") {
                return Err(WebAuthnError::not_supported(
                    "largeBlob.support is only valid when creating a credential",
                ));
            }
            let read = match large_blob.get("read") {
                Some(value) => Some(boolean(value, "largeBlob.read")?),
                None => None,
            };
            let write = match large_blob.get("write") {
                Some(value) => Some(from_b64(
                    text(value, "largeBlob.write")?,
                    "largeBlob.write",
                )?),
                None => None,
            };
            out.large_blob = match (read, write) {
                (Some(_), Some(_)) => {
                    return Err(WebAuthnError::not_supported(
                        "largeBlob.read and largeBlob.write cannot be used together",
                    ));
                }
                (_, Some(blob)) => {
                    if allow_credentials.len() != 1 {
                        return Err(WebAuthnError::not_supported(
                            "largeBlob.write needs exactly one credential in allowCredentials",
                        ));
                    }
                    Some(LargeBlobRequest::Write(blob))
                }
                (Some(true), None) => Some(LargeBlobRequest::Read),
                _ => None,
            };
        }
        Ok(out)
    }

    /// The PRF input for the credential that will sign: its `evalByCredential` entry, else
    /// `eval`.
    pub fn prf_values_for(&self, credential_id: Option<&[u8]>) -> Option<&PrfValues> {
        let PrfInputs {
            eval,
            by_credential,
        } = self.prf.as_ref()?;
        credential_id
            .and_then(|id| {
                by_credential
                    .iter()
                    .find(|(candidate, _)| candidate == id)
                    .map(|(_, values)| values)
            })
            .or(eval.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Json) -> Map<String, Json> {
        value.as_object().unwrap().clone()
    }

    fn allow(ids: &[&[u8]]) -> Vec<CredentialDescriptor> {
        ids.iter()
            .map(|id| CredentialDescriptor {
                kind: "public-key".into(),
                id: id.to_vec(),
                transports: vec![],
            })
            .collect()
    }

    #[test]
    fn the_specs_prf_salt_and_example_inputs() {
        // WebAuthn L3 test vectors: salt1 for prf_eval_first = seed ‖ 0x02.
        let mut input = b"WebAuthn PRF test vectors".to_vec();
        input.push(0x02);
        assert_eq!(
            hex::encode(prf_salt(&input)),
            "527413ebb48293772df30f031c5ac4650c7de14bf9498671ae163447b6a772b3"
        );
        // The WebAuthn-API example's credential ID.
        let id = hex::decode("7b4d9e67d94fa7451d905e2f1913b8f8dc658560642f51429ac99bd6d4df4721")
            .unwrap();
        let parsed = GetExtensions::parse(
            &map(json!({"prf": {
                "eval": {"first": "AQIDBA", "second": "BQYHCA"},
                "evalByCredential": {"e02eZ9lPp0UdkF4vGRO4-NxlhWBkL1FCmsmb1tTfRyE": {"first": "CQoLDA"}},
            }})),
            &allow(&[&id, b"other"]),
        )
        .unwrap();
        assert_eq!(
            parsed.prf_values_for(Some(&id)).unwrap().first,
            vec![9, 10, 11, 12]
        );
        let fallback = parsed.prf_values_for(Some(b"other")).unwrap();
        assert_eq!(fallback.first, vec![1, 2, 3, 4]);
        assert_eq!(fallback.salts().len(), 64);
    }

    #[test]
    fn prf_input_errors() {
        let name = |json: Json, allowed: &[&[u8]]| {
            GetExtensions::parse(&map(json), &allow(allowed))
                .err()
                .map(|e| e.name)
        };
        let by = |key: &str| json!({"prf": {"evalByCredential": {key: {"first": "AA"}}}});
        assert_eq!(name(by("AQ"), &[]), Some(ErrorName::NotSupportedError));
        assert_eq!(name(by(""), &[b"\x01"]), Some(ErrorName::SyntaxError));
        assert_eq!(name(by("!!"), &[b"\x01"]), Some(ErrorName::SyntaxError));
        assert_eq!(name(by("Ag"), &[b"\x01"]), Some(ErrorName::SyntaxError));
        assert_eq!(name(by("AQ"), &[b"\x01"]), None);
        assert_eq!(
            name(json!({"prf": {"eval": {}}}), &[]),
            Some(ErrorName::TypeError)
        );
        assert_eq!(
            name(json!({"prf": {"eval": {"first": "*"}}}), &[]),
            Some(ErrorName::EncodingError)
        );
        assert_eq!(
            CreateExtensions::parse(&map(json!({"prf": {"evalByCredential": {}}})))
                .err()
                .map(|e| e.name),
            Some(ErrorName::NotSupportedError)
        );
    }

    #[test]
    fn large_blob_input_rules() {
        let create = |json: Json| CreateExtensions::parse(&map(json)).map(|e| e.large_blob);
        assert_eq!(
            create(json!({"largeBlob": {"support": "required"}})),
            Ok(Some(true))
        );
        assert_eq!(
            create(json!({"largeBlob": {"support": "preferred"}})),
            Ok(Some(false))
        );
        assert_eq!(create(json!({"largeBlob": {}})), Ok(Some(false)));
        assert_eq!(
            create(json!({"largeBlob": {"read": true}})).map_err(|e| e.name),
            Err(ErrorName::NotSupportedError)
        );
        let get = |json: Json, allowed: &[&[u8]]| {
            GetExtensions::parse(&map(json), &allow(allowed))
                .map(|e| e.large_blob)
                .map_err(|e| e.name)
        };
        assert_eq!(
            get(json!({"largeBlob": {"read": true}}), &[]),
            Ok(Some(LargeBlobRequest::Read))
        );
        assert_eq!(get(json!({"largeBlob": {"read": false}}), &[]), Ok(None));
        assert_eq!(
            get(json!({"largeBlob": {"write": "AQID"}}), &[b"x"]),
            Ok(Some(LargeBlobRequest::Write(vec![1, 2, 3])))
        );
        assert_eq!(
            get(json!({"largeBlob": {"write": "AQID"}}), &[b"x", b"y"]),
            Err(ErrorName::NotSupportedError)
        );
        assert_eq!(
            get(
                json!({"largeBlob": {"write": "AQID", "read": true}}),
                &[b"x"]
            ),
            Err(ErrorName::NotSupportedError)
        );
        assert_eq!(
            get(json!({"largeBlob": {"support": "required"}}), &[]),
            Err(ErrorName::NotSupportedError)
        );
    }

    #[test]
    fn registration_inputs() {
        let parsed = CreateExtensions::parse(&map(json!({
            "credProps": true,
            "credentialProtectionPolicy": "userVerificationRequired",
            "enforceCredentialProtectionPolicy": true,
            "credBlob": "AQID",
            "minPinLength": true,
            "appidExclude": "https://example.com/appid.json",
        })))
        .unwrap();
        assert!(parsed.cred_props && parsed.min_pin_length);
        assert_eq!(parsed.cred_protect, Some((3, true)));
        assert_eq!(parsed.cred_blob, Some(vec![1, 2, 3]));
        // An unknown policy is ignored, as an unknown enum value is.
        let unknown =
            CreateExtensions::parse(&map(json!({"credentialProtectionPolicy": "never"}))).unwrap();
        assert_eq!(unknown.cred_protect, None);
        for bad in [
            json!({"credProps": "yes"}),
            json!({"credentialProtectionPolicy": 3}),
            json!({"credBlob": 5}),
            json!({"prf": true}),
            json!({"largeBlob": "required"}),
        ] {
            assert_eq!(
                CreateExtensions::parse(&map(bad.clone()))
                    .err()
                    .map(|e| e.name),
                Some(ErrorName::TypeError),
                "{bad}"
            );
        }
    }
}
