//! FIDO CXF 1.0 through the `credential-exchange-format` crate.
//!
//! An export is one [`Header`] holding one [`Account`] (ID derived from the exporter's RP ID,
//! empty user name and email) with one [`Item`] per credential: ID `SHA-256(rpId ‖ 0 ‖
//! credentialId)`, title the RP ID, subtitle the user name, `creationAt` in seconds, and one
//! `passkey` credential (credentialId, rpId, username, userDisplayName, userHandle, PKCS#8 key;
//! credBlob and largeBlob — DEFLATE-compressed, as CXF has it — in `fido2Extensions`).
//!
//! What CXF has no field for goes into the item's extension list as [`FidelioExtension`], an
//! object named [`FIDELIO_EXTENSION`]: the crate's `Extension::External` variant, i.e. an
//! extension object whose `name` is not one CXF defines, which other importers ignore. Strict
//! mode leaves it out.

use std::fmt;

use authenticator_core::credential_io::{PortableCredential, private_key_to_pkcs8};
use authenticator_core::storage::User;
use credential_exchange_format::{
    Account, B64Url, Credential, Extension, Fido2Extensions, Fido2LargeBlob, Header, Item,
    PasskeyCredential, Version,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{
    ExchangeCredential, ExchangeError, Export, ExportOptions, ImportDefaults, KeyRead,
    MAX_LARGE_BLOB, b64url, check, count_one, decode_b64, describe, invalid, quoted, read_pkcs8,
    scrub, short, to_json,
};

/// The name of Fidelio's item extension.
pub const FIDELIO_EXTENSION: &str = "dev.fidelio.credential";

/// Fidelio's CXF item extension: the state of a credential CXF has no field for. Every member
/// is optional on import (absent: the import defaults); an export writes all that apply.
///
/// ```json
/// { "name": "dev.fidelio.credential", "signCount": 7, "backupEligible": false,
///   "backupState": false, "credProtect": 2, "discoverable": true, "hmacSecret": true,
///   "credBlob": "…b64url…", "largeBlob": "…b64url, uncompressed…", "created": 1767225600000 }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RawExtension", try_from = "RawExtension")]
pub struct FidelioExtension {
    /// The signature counter.
    pub sign_count: Option<u32>,
    /// BE.
    pub backup_eligible: Option<bool>,
    /// BS.
    pub backup_state: Option<bool>,
    /// credProtect level (1–3).
    pub cred_protect: Option<u8>,
    /// Discoverable.
    pub discoverable: Option<bool>,
    /// hmac-secret (PRF) on.
    pub hmac_secret: Option<bool>,
    /// credBlob.
    pub cred_blob: Option<Vec<u8>>,
    /// The large blob, uncompressed.
    pub large_blob: Option<Vec<u8>>,
    /// Creation time, Unix milliseconds.
    pub created: Option<u64>,
}

impl fmt::Debug for FidelioExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let length = |blob: &Option<Vec<u8>>| blob.as_ref().map(Vec::len);
        f.debug_struct("FidelioExtension")
            .field("sign_count", &self.sign_count)
            .field("backup_eligible", &self.backup_eligible)
            .field("backup_state", &self.backup_state)
            .field("cred_protect", &self.cred_protect)
            .field("discoverable", &self.discoverable)
            .field("hmac_secret", &self.hmac_secret)
            .field("cred_blob_len", &length(&self.cred_blob))
            .field("large_blob_len", &length(&self.large_blob))
            .field("created", &self.created)
            .finish()
    }
}

/// The extension as JSON has it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtension {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sign_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_eligible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_state: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cred_protect: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discoverable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hmac_secret: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cred_blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    large_blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<u64>,
}

impl From<FidelioExtension> for RawExtension {
    fn from(extension: FidelioExtension) -> Self {
        Self {
            name: FIDELIO_EXTENSION.to_owned(),
            sign_count: extension.sign_count,
            backup_eligible: extension.backup_eligible,
            backup_state: extension.backup_state,
            cred_protect: extension.cred_protect,
            discoverable: extension.discoverable,
            hmac_secret: extension.hmac_secret,
            cred_blob: extension.cred_blob.as_deref().map(b64url),
            large_blob: extension.large_blob.as_deref().map(b64url),
            created: extension.created,
        }
    }
}

impl TryFrom<RawExtension> for FidelioExtension {
    type Error = String;

    fn try_from(raw: RawExtension) -> Result<Self, String> {
        if raw.name != FIDELIO_EXTENSION {
            return Err(format!("not the {FIDELIO_EXTENSION} extension"));
        }
        let blob = |text: Option<String>, field: &str| match text {
            None => Ok(None),
            Some(text) => decode_b64(&text)
                .map(Some)
                .ok_or_else(|| format!("{field} is not base64url")),
        };
        Ok(Self {
            sign_count: raw.sign_count,
            backup_eligible: raw.backup_eligible,
            backup_state: raw.backup_state,
            cred_protect: raw.cred_protect,
            discoverable: raw.discoverable,
            hmac_secret: raw.hmac_secret,
            cred_blob: blob(raw.cred_blob, "credBlob")?,
            large_blob: blob(raw.large_blob, "largeBlob")?,
            created: raw.created,
        })
    }
}

impl FidelioExtension {
    /// Everything of this credential CXF lacks.
    pub fn of(exchange: &ExchangeCredential) -> Self {
        let credential = &exchange.credential;
        Self {
            sign_count: Some(credential.sign_count),
            backup_eligible: Some(credential.backup_eligible),
            backup_state: Some(credential.backup_state),
            cred_protect: Some(credential.cred_protect),
            discoverable: Some(credential.discoverable),
            hmac_secret: Some(credential.hmac_secret),
            cred_blob: credential.cred_blob.clone(),
            large_blob: exchange.large_blob.clone(),
            created: exchange.created_ms,
        }
    }
}

type CxfHeader = Header<FidelioExtension>;
type CxfAccount = Account<FidelioExtension>;
type CxfItem = Item<FidelioExtension>;

/// Accounts whose passkeys' keys are wiped when they are dropped (the crate keeps them in plain
/// `Vec`s).
struct Wiped(Vec<CxfAccount>);

impl Drop for Wiped {
    fn drop(&mut self) {
        for account in &mut self.0 {
            for item in &mut account.items {
                for credential in &mut item.credentials {
                    match credential {
                        Credential::Passkey(passkey) => {
                            let key = std::mem::replace(&mut passkey.key, B64Url::from(Vec::new()));
                            let mut bytes: Vec<u8> = key.into();
                            bytes.zeroize();
                        }
                        Credential::Unknown { content, .. } => {
                            let mut object = Json::Object(std::mem::take(content));
                            scrub(&mut object);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Export.

pub(super) fn export(
    credentials: &[ExchangeCredential],
    options: &ExportOptions,
) -> Result<Export, ExchangeError> {
    let mut warnings = Vec::new();
    let mut items = Vec::with_capacity(credentials.len());
    let mut capacity = 4096usize;
    let (mut counted, mut protected, mut hmac) = (0usize, 0usize, 0usize);
    for exchange in credentials {
        let credential = &exchange.credential;
        if options.strict {
            if credential.sign_count != 0 {
                warnings.push(format!(
                    "left out {}: its signature counter is {} (CXF allows exporting only \
                     passkeys whose counter is 0)",
                    describe(credential),
                    credential.sign_count
                ));
                continue;
            }
            if !credential.discoverable {
                warnings.push(format!(
                    "left out {}: it is not discoverable (CXF carries passkeys only)",
                    describe(credential)
                ));
                continue;
            }
            if credential.cred_protect > 1 {
                protected += 1;
            }
        } else if credential.sign_count != 0 {
            counted += 1;
        }
        if credential.hmac_secret {
            hmac += 1;
        }
        capacity = capacity.saturating_add(super::estimate(exchange));
        items.push(item(exchange, options.strict));
    }
    if counted > 0 {
        warnings.push(format!(
            "{counted} credential(s) have a non-zero signature counter, which CXF forbids \
             exporting: this file keeps them (and their counters) for Fidelio; other importers \
             will reset the counters to 0 (strict mode leaves such credentials out)"
        ));
    }
    if protected > 0 {
        warnings.push(format!(
            "{protected} credential(s) have credProtect level 2 or 3, which plain CXF does not \
             carry: an importer gives them its default"
        ));
    }
    if hmac > 0 {
        warnings.push(format!(
            "{hmac} credential(s) answer hmac-secret (PRF) with this device's own secrets, \
             which cannot be exported: PRF outputs will differ after import"
        ));
    }
    let count = items.len();
    let mut account_id = Sha256::new();
    account_id.update(b"Fidelio CXF account\0");
    account_id.update(options.exporter_rp_id.as_bytes());
    let header = CxfHeader {
        version: Version { major: 1, minor: 0 },
        exporter_rp_id: options.exporter_rp_id.clone(),
        exporter_display_name: options.exporter_display_name.clone(),
        timestamp: options.timestamp,
        accounts: Vec::new(),
    };
    let accounts = Wiped(vec![CxfAccount {
        id: B64Url::from(account_id.finalize().get(..16).unwrap_or_default()),
        username: String::new(),
        email: String::new(),
        full_name: None,
        collections: Vec::new(),
        items,
        extensions: None,
    }]);
    // Serialize the header around the accounts without moving them out of their wiping guard.
    let json = to_json(
        &HeaderRef {
            header: &header,
            accounts: &accounts.0,
        },
        capacity,
    )?;
    Ok(Export {
        json,
        warnings,
        count,
    })
}

/// A [`Header`] whose accounts are borrowed.
struct HeaderRef<'a> {
    header: &'a CxfHeader,
    accounts: &'a [CxfAccount],
}

impl Serialize for HeaderRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = serializer.serialize_struct("Header", 5)?;
        out.serialize_field("version", &self.header.version)?;
        out.serialize_field("exporterRpId", &self.header.exporter_rp_id)?;
        out.serialize_field("exporterDisplayName", &self.header.exporter_display_name)?;
        out.serialize_field("timestamp", &self.header.timestamp)?;
        out.serialize_field("accounts", self.accounts)?;
        out.end()
    }
}

/// The item ID: `SHA-256(rpId ‖ 0 ‖ credentialId)` (CXF IDs are at most 64 bytes; credential IDs
/// may be 1023).
fn item_id(credential: &PortableCredential) -> B64Url {
    let mut hash = Sha256::new();
    hash.update(credential.rp_id.as_bytes());
    hash.update([0]);
    hash.update(&credential.credential_id);
    B64Url::from(hash.finalize().as_slice())
}

fn item(exchange: &ExchangeCredential, strict: bool) -> CxfItem {
    let credential = &exchange.credential;
    let large_blob = exchange.large_blob.as_ref().map(|blob| Fido2LargeBlob {
        uncompressed_size: u64::try_from(blob.len()).unwrap_or(u64::MAX),
        data: B64Url::from(miniz_oxide::deflate::compress_to_vec(blob, 6)),
    });
    let cred_blob = credential.cred_blob.as_deref().map(B64Url::from);
    let fido2_extensions =
        (cred_blob.is_some() || large_blob.is_some()).then_some(Fido2Extensions {
            hmac_credentials: None,
            cred_blob,
            large_blob,
            payments: None,
        });
    let key = private_key_to_pkcs8(&credential.private_key);
    let passkey = PasskeyCredential {
        credential_id: B64Url::from(credential.credential_id.as_slice()),
        rp_id: credential.rp_id.clone(),
        username: credential.user.name.clone().unwrap_or_default(),
        user_display_name: credential.user.display_name.clone().unwrap_or_default(),
        user_handle: B64Url::from(credential.user.id.as_slice()),
        key: B64Url::from(key.as_slice()),
        fido2_extensions,
    };
    CxfItem {
        id: item_id(credential),
        creation_at: exchange.created_ms.map(|ms| ms / 1000),
        modified_at: None,
        title: credential.rp_id.clone(),
        subtitle: credential.user.name.clone(),
        favorite: None,
        scope: None,
        credentials: vec![Credential::Passkey(Box::new(passkey))],
        tags: None,
        extensions: (!strict).then(|| vec![Extension::External(FidelioExtension::of(exchange))]),
    }
}

// ---------------------------------------------------------------------------------------------
// Import.

pub(super) fn import(
    value: &Json,
    defaults: &ImportDefaults,
    warnings: &mut Vec<String>,
) -> Result<Vec<ExchangeCredential>, ExchangeError> {
    // A header, or a bare account (Apple's ASImportableAccount JSON).
    let (accounts, pointer) = if value.get("accounts").is_some() {
        let header = CxfHeader::deserialize(value).map_err(|error| locate(value, &error))?;
        let accounts = Wiped(header.accounts);
        if header.version.major != 1 {
            return Err(ExchangeError::Invalid(format!(
                "version: CXF {}.{} is not supported (1.x is)",
                header.version.major, header.version.minor
            )));
        }
        (accounts, "/accounts/")
    } else {
        let account = CxfAccount::deserialize(value)
            .map_err(|error| ExchangeError::Invalid(format!("CXF account: {}", short(&error))))?;
        (Wiped(vec![account]), "")
    };

    let mut found = Vec::new();
    let mut count = 0usize;
    let mut others = 0usize;
    for (a, account) in accounts.0.iter().enumerate() {
        let (account_path, account_pointer) = if pointer.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("accounts[{a}]."), format!("{pointer}{a}"))
        };
        for (i, item) in account.items.iter().enumerate() {
            let path = format!("{account_path}items[{i}]");
            let mut extension = extension_of(item, &path)?;
            let passkeys = item
                .credentials
                .iter()
                .filter(|credential| is_passkey(credential))
                .count();
            if extension.is_some() && passkeys > 1 {
                warnings.push(format!(
                    "{path}: the {FIDELIO_EXTENSION} extension is ignored: the item holds \
                     {passkeys} passkeys"
                ));
                extension = None;
            }
            for (k, credential) in item.credentials.iter().enumerate() {
                let path = format!("{path}.credentials[{k}]");
                match credential {
                    Credential::Passkey(passkey) => {
                        count_one(&mut count)?;
                        if let Some(exchange) = convert(
                            passkey,
                            extension.as_ref(),
                            item.creation_at,
                            defaults,
                            &path,
                            warnings,
                        )? {
                            found.push(exchange);
                        }
                    }
                    Credential::Unknown { ty, .. } if ty == "passkey" => {
                        // The crate falls back to `Unknown` when a passkey does not parse: parse
                        // it again from the tree to say why.
                        let at = format!("{account_pointer}/items/{i}/credentials/{k}");
                        let why = value
                            .pointer(&at)
                            .map(|node| match PasskeyCredential::deserialize(node) {
                                Ok(_) => "malformed".to_owned(),
                                Err(error) => short(&error),
                            })
                            .unwrap_or_else(|| "malformed".to_owned());
                        return Err(invalid(&path, &format!("passkey: {why}")));
                    }
                    _ => others += 1,
                }
            }
        }
    }
    if others > 0 {
        warnings.push(format!(
            "skipped {others} credential(s) that are not passkeys (passwords, notes, cards…): \
             the device holds passkeys only"
        ));
    }
    Ok(found)
}

fn is_passkey(credential: &Credential<FidelioExtension>) -> bool {
    match credential {
        Credential::Passkey(_) => true,
        Credential::Unknown { ty, .. } => ty == "passkey",
        _ => false,
    }
}

/// Names the first item that does not parse, if one does not; else the header.
fn locate(value: &Json, error: &serde_json::Error) -> ExchangeError {
    if let Some(Json::Array(accounts)) = value.get("accounts") {
        for (a, account) in accounts.iter().enumerate() {
            if let Some(Json::Array(items)) = account.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if let Err(error) = CxfItem::deserialize(item) {
                        return ExchangeError::Invalid(format!(
                            "accounts[{a}].items[{i}]: {}",
                            short(&error)
                        ));
                    }
                }
            }
            if let Err(error) = CxfAccount::deserialize(account) {
                return ExchangeError::Invalid(format!("accounts[{a}]: {}", short(&error)));
            }
        }
    }
    ExchangeError::Invalid(format!("CXF header: {}", short(error)))
}

/// The item's Fidelio extension, if it has one; one that does not parse is an error.
fn extension_of(item: &CxfItem, path: &str) -> Result<Option<FidelioExtension>, ExchangeError> {
    let mut found = None;
    for (e, extension) in item.extensions.iter().flatten().enumerate() {
        match extension {
            Extension::External(ours) => {
                if found.is_some() {
                    return Err(invalid(
                        &format!("{path}.extensions[{e}]"),
                        &format!("a second {FIDELIO_EXTENSION} extension"),
                    ));
                }
                found = Some(ours.clone());
            }
            // The crate falls back to `Unknown` when ours does not parse: parse it again to say
            // why.
            Extension::Unknown(value)
                if value.get("name").and_then(Json::as_str) == Some(FIDELIO_EXTENSION) =>
            {
                let why = match FidelioExtension::deserialize(value) {
                    Ok(_) => "malformed".to_owned(),
                    Err(error) => short(&error),
                };
                return Err(invalid(
                    &format!("{path}.extensions[{e}] ({FIDELIO_EXTENSION})"),
                    &why,
                ));
            }
            _ => {}
        }
    }
    Ok(found)
}

/// A CXF large blob, inflated: raw DEFLATE as CTAP compresses large blobs (zlib accepted too).
fn inflate(blob: &Fido2LargeBlob, path: &str) -> Result<Vec<u8>, ExchangeError> {
    let field = format!("{path}.fido2Extensions.largeBlob");
    let size = usize::try_from(blob.uncompressed_size)
        .ok()
        .filter(|&size| size <= MAX_LARGE_BLOB)
        .ok_or_else(|| invalid(&field, "uncompressedSize is more than 1 MiB"))?;
    let data = blob.data.as_ref();
    // (A limit of 0 would refuse even an empty stream.)
    let limit = size.max(1);
    let inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(data, limit)
        .or_else(|_| miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, limit))
        .map_err(|_| {
            invalid(
                &field,
                "data is not DEFLATE data of at most uncompressedSize bytes",
            )
        })?;
    if inflated.len() != size {
        return Err(invalid(
            &field,
            "data does not inflate to uncompressedSize bytes",
        ));
    }
    Ok(inflated)
}

fn convert(
    passkey: &PasskeyCredential,
    extension: Option<&FidelioExtension>,
    creation_at: Option<u64>,
    defaults: &ImportDefaults,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<ExchangeCredential>, ExchangeError> {
    let private_key = match read_pkcs8(passkey.key.as_ref()) {
        Ok(KeyRead::Key(key)) => key,
        Ok(KeyRead::Unsupported(algorithm)) => {
            warnings.push(format!(
                "{path}: skipped the passkey for {}: its key is {algorithm}, which this device \
                 cannot hold (P-256 and Ed25519 only)",
                quoted(&passkey.rp_id)
            ));
            return Ok(None);
        }
        Err(why) => return Err(invalid(&format!("{path}.key"), why)),
    };
    let fido2 = passkey.fido2_extensions.as_ref();
    let cred_blob = fido2
        .and_then(|fido2| fido2.cred_blob.as_ref())
        .map(|blob| blob.as_ref().to_vec());
    let large_blob = fido2
        .and_then(|fido2| fido2.large_blob.as_ref())
        .map(|blob| inflate(blob, path))
        .transpose()?;
    let carries_hmac = fido2.is_some_and(|fido2| fido2.hmac_credentials.is_some());
    let created = creation_at
        .map(|seconds| {
            seconds
                .checked_mul(1000)
                .ok_or_else(|| invalid(&format!("{path}.creationAt"), "is too large"))
        })
        .transpose()?;
    let user_handle: &[u8] = passkey.user_handle.as_ref();
    let name = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let mut exchange = ExchangeCredential {
        credential: PortableCredential {
            credential_id: passkey.credential_id.as_ref().to_vec(),
            rp_id: passkey.rp_id.clone(),
            discoverable: defaults.discoverable,
            private_key,
            user: User {
                id: user_handle.to_vec(),
                name: name(&passkey.username),
                display_name: name(&passkey.user_display_name),
            },
            // CXF: importers set passkeys' counters to zero.
            sign_count: 0,
            backup_eligible: defaults.backup_eligible,
            backup_state: defaults.backup_state,
            cred_protect: defaults.cred_protect,
            hmac_secret: defaults.hmac_secret || carries_hmac,
            cred_blob,
            large_blob_key: None,
            imported: true,
        },
        large_blob,
        created_ms: created,
    };
    match extension {
        Some(ours) => {
            let credential = &mut exchange.credential;
            credential.sign_count = ours.sign_count.unwrap_or(0);
            credential.backup_eligible = ours.backup_eligible.unwrap_or(defaults.backup_eligible);
            credential.backup_state = ours.backup_state.unwrap_or(defaults.backup_state);
            credential.cred_protect = ours.cred_protect.unwrap_or(defaults.cred_protect);
            credential.discoverable = ours.discoverable.unwrap_or(defaults.discoverable);
            credential.hmac_secret = ours.hmac_secret.unwrap_or(credential.hmac_secret);
            if ours.cred_blob.is_some() {
                credential.cred_blob.clone_from(&ours.cred_blob);
            }
            if ours.large_blob.is_some() {
                exchange.large_blob.clone_from(&ours.large_blob);
            }
            if ours.created.is_some() {
                exchange.created_ms = ours.created;
            }
        }
        None => {
            if exchange.credential.discoverable && exchange.credential.user.id.is_empty() {
                warnings.push(format!(
                    "{path}: the passkey for {} has no user handle: imported as \
                     non-discoverable",
                    quoted(&exchange.credential.rp_id)
                ));
                exchange.credential.discoverable = false;
            }
        }
    }
    if carries_hmac {
        warnings.push(format!(
            "{path}: the passkey's hmac-secret (PRF) secrets cannot be carried over: this \
             device answers PRF with its own, so PRF outputs will differ"
        ));
    }
    check(&exchange, path)?;
    Ok(Some(exchange))
}
