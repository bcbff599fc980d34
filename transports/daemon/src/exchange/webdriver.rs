//! W3C WebDriver "Credential Parameters" / CDP `WebAuthn.Credential`.
//!
//! An export is a JSON array of objects with `credentialId`, `isResidentCredential`, `rpId`,
//! `privateKey` (PKCS#8), `userHandle` (when there is one), `signCount`, `largeBlob` (when there
//! is one), `backupEligibility`, `backupState`, `userName` and `userDisplayName` (when set), and
//! `credProtect` when it is not 1 (Fidelio's control API reads it; others ignore it). Binary
//! values are base64url, or standard base64 for CDP ([`Base64Flavor`](super::Base64Flavor)).
//!
//! An import takes that array, one such object, or `{"credentials": [...]}` (CDP's
//! `WebAuthn.getCredentials` answer), binary values in either alphabet, padded or not; members
//! it does not know (the control API's `algorithm`, `imported`…) are ignored.

use authenticator_core::credential::Algorithm;
use authenticator_core::credential_io::{PortableCredential, private_key_to_pkcs8};
use authenticator_core::storage::User;
use serde::Serialize;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use super::{
    ExchangeCredential, ExchangeError, Export, ExportOptions, Fields, ImportDefaults, KeyRead,
    check, encode, estimate, invalid, quoted, read_each, read_pkcs8, to_json,
};

/// One credential as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    credential_id: &'a str,
    is_resident_credential: bool,
    rp_id: &'a str,
    private_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_handle: Option<&'a str>,
    sign_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    large_blob: Option<&'a str>,
    backup_eligibility: bool,
    backup_state: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cred_protect: Option<u8>,
}

/// A credential's binary values, encoded (zeroized on drop).
struct Encoded {
    credential_id: Zeroizing<String>,
    private_key: Zeroizing<String>,
    user_handle: Option<Zeroizing<String>>,
    large_blob: Option<Zeroizing<String>>,
}

pub(super) fn export(
    credentials: &[ExchangeCredential],
    options: &ExportOptions,
) -> Result<Export, ExchangeError> {
    let flavor = options.base64;
    let mut capacity = 1024usize;
    let encoded: Vec<Encoded> = credentials
        .iter()
        .map(|exchange| {
            capacity = capacity.saturating_add(estimate(exchange));
            let credential = &exchange.credential;
            Encoded {
                credential_id: encode(&credential.credential_id, flavor),
                private_key: encode(&private_key_to_pkcs8(&credential.private_key), flavor),
                user_handle: (!credential.user.id.is_empty())
                    .then(|| encode(&credential.user.id, flavor)),
                large_blob: exchange
                    .large_blob
                    .as_ref()
                    .map(|blob| encode(blob, flavor)),
            }
        })
        .collect();
    let out: Vec<Out<'_>> = credentials
        .iter()
        .zip(&encoded)
        .map(|(exchange, encoded)| {
            let credential = &exchange.credential;
            Out {
                credential_id: &encoded.credential_id,
                is_resident_credential: credential.discoverable,
                rp_id: &credential.rp_id,
                private_key: &encoded.private_key,
                user_handle: encoded.user_handle.as_deref().map(String::as_str),
                sign_count: credential.sign_count,
                large_blob: encoded.large_blob.as_deref().map(String::as_str),
                backup_eligibility: credential.backup_eligible,
                backup_state: credential.backup_state,
                user_name: credential.user.name.as_deref(),
                user_display_name: credential.user.display_name.as_deref(),
                cred_protect: (credential.cred_protect != 1).then_some(credential.cred_protect),
            }
        })
        .collect();
    let json = to_json(&out, capacity)?;

    let mut warnings = Vec::new();
    let count_of = |test: &dyn Fn(&ExchangeCredential) -> bool| {
        credentials.iter().filter(|exchange| test(exchange)).count()
    };
    let ed25519 =
        count_of(&|exchange| exchange.credential.private_key.algorithm() == Algorithm::EdDsa);
    if ed25519 > 0 {
        warnings.push(format!(
            "{ed25519} credential(s) have Ed25519 keys: Fidelio's control API takes them, but \
             some WebDriver/CDP virtual authenticators accept P-256 keys only"
        ));
    }
    let cred_blobs = count_of(&|exchange| exchange.credential.cred_blob.is_some());
    if cred_blobs > 0 {
        warnings.push(format!(
            "{cred_blobs} credential(s) have a credBlob, which this format does not carry"
        ));
    }
    let hmac = count_of(&|exchange| exchange.credential.hmac_secret);
    if hmac > 0 {
        warnings.push(format!(
            "{hmac} credential(s) answer hmac-secret (PRF) with this device's own secrets, \
             which cannot be exported: PRF outputs will differ after import"
        ));
    }
    Ok(Export {
        json,
        warnings,
        count: credentials.len(),
    })
}

pub(super) fn import(
    value: &Json,
    defaults: &ImportDefaults,
    warnings: &mut Vec<String>,
) -> Result<Vec<ExchangeCredential>, ExchangeError> {
    let (items, prefix): (Vec<&Json>, &str) = match value {
        Json::Array(items) => (items.iter().collect(), ""),
        Json::Object(object) => match object.get("credentials") {
            Some(Json::Array(items)) => (items.iter().collect(), "credentials"),
            Some(_) => return Err(invalid("credentials", "must be an array")),
            None => (vec![value], "credential"),
        },
        _ => {
            return Err(ExchangeError::Invalid(
                "a WebDriver credential list must be an array or an object".to_owned(),
            ));
        }
    };
    let found = read_each(items, prefix, |item, path| {
        read(item, path, defaults, warnings)
    })?;
    Ok(found)
}

fn read(
    item: &Json,
    path: &str,
    defaults: &ImportDefaults,
    warnings: &mut Vec<String>,
) -> Result<Option<ExchangeCredential>, ExchangeError> {
    let fields = Fields::of(item, path)?;
    let credential_id = fields.required_bytes("credentialId")?;
    let discoverable = fields
        .bool("isResidentCredential")?
        .ok_or_else(|| fields.error("isResidentCredential", "is required"))?;
    let rp_id = fields.required_str("rpId")?.to_owned();
    let der = Zeroizing::new(fields.required_bytes("privateKey")?);
    let user_handle = fields.bytes("userHandle")?.unwrap_or_default();
    let sign_count = fields.u32("signCount")?.unwrap_or(0);
    let large_blob = fields.bytes("largeBlob")?;
    let backup_eligible = fields
        .bool("backupEligibility")?
        .unwrap_or(defaults.backup_eligible);
    let backup_state = fields.bool("backupState")?.unwrap_or(defaults.backup_state);
    let name = fields.str("userName")?.map(str::to_owned);
    let display_name = fields.str("userDisplayName")?.map(str::to_owned);
    let cred_protect = match fields.u32("credProtect")? {
        None => defaults.cred_protect,
        Some(level @ 1..=3) => u8::try_from(level).unwrap_or(1),
        Some(_) => return Err(fields.error("credProtect", "must be 1, 2 or 3")),
    };
    let private_key = match read_pkcs8(&der) {
        Ok(KeyRead::Key(key)) => key,
        Ok(KeyRead::Unsupported(algorithm)) => {
            warnings.push(format!(
                "{path}: skipped the credential for {}: its key is {algorithm}, which this \
                 device cannot hold (P-256 and Ed25519 only)",
                quoted(&rp_id)
            ));
            return Ok(None);
        }
        Err(why) => return Err(fields.error("privateKey", why)),
    };
    let exchange = ExchangeCredential {
        credential: PortableCredential {
            credential_id,
            rp_id,
            discoverable,
            private_key,
            user: User {
                id: user_handle,
                name,
                display_name,
            },
            sign_count,
            backup_eligible,
            backup_state,
            cred_protect,
            hmac_secret: defaults.hmac_secret,
            cred_blob: None,
            large_blob_key: None,
            imported: true,
        },
        large_blob,
        created_ms: None,
    };
    check(&exchange, path)?;
    Ok(Some(exchange))
}
