//! Credential exchange: the device's credentials to and from interchange files, with no I/O.
//!
//! Three formats (`docs/credential-exchange.md` describes each):
//!
//! | [`Format`] | what | keys |
//! |---|---|---|
//! | [`Cxf`](Format::Cxf) | FIDO Credential Exchange Format 1.0: a CXF header, one account, one item per credential holding a `passkey`; Fidelio's own state in the item extension [`FIDELIO_EXTENSION`] (not in [strict](ExportOptions::strict) mode) | PKCS#8, base64url |
//! | [`WebDriver`](Format::WebDriver) | W3C WebDriver "Credential Parameters" / CDP `WebAuthn.Credential`: a JSON array (import also takes one object or `{"credentials": [...]}`) | PKCS#8, base64url or standard base64 ([`Base64Flavor`]) |
//! | [`Playwright`](Format::Playwright) | Playwright's `VirtualCredential` (`context.credentials.get()`, 1.61+) and storage state with `credentials` (`storageState({credentials: true})`, 1.62+) | PKCS#8 + SPKI, base64url |
//!
//! ```text
//!   device ── export_credentials() ──▶ [ExchangeCredential] ── export() ──▶ JSON text
//!   JSON text ── import() (detect()) ──▶ [ExchangeCredential] + warnings ──▶ import_credential()
//! ```
//!
//! Every input byte is treated as hostile: sizes are capped ([`MAX_TEXT_BYTES`],
//! [`MAX_CREDENTIALS`], …), every field is checked, and errors name the item and the field. A
//! credential whose key is of an algorithm the device cannot hold (RSA, P-384…) is skipped with
//! a warning; anything malformed fails the import.
//!
//! **Secrets.** Exports hold private keys. [`Export::json`] is zeroized on drop, keys decoded on
//! import live in the core's zeroizing [`PrivateKey`], and the JSON trees parsed on the way have
//! their strings wiped before they are freed. This is best effort: the CXF crate keeps bytes in
//! plain `Vec`s and serde's intermediate buffers are not wiped.

mod cxf;
mod playwright;
mod webdriver;

#[cfg(test)]
mod tests;

use std::fmt;

use authenticator_core::credential::{Algorithm, PrivateKey};
use authenticator_core::credential_io::{
    MAX_CREDENTIAL_ID_LENGTH, MAX_RP_ID_LENGTH, MAX_USER_HANDLE_LENGTH, PortableCredential,
    private_key_from_pkcs8,
};
use authenticator_core::extensions::MAX_CRED_BLOB_LENGTH;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value as Json};
use zeroize::{Zeroize, Zeroizing};

pub use cxf::{FIDELIO_EXTENSION, FidelioExtension};

/// The largest text [`import`] and [`detect`] read (64 MiB).
pub const MAX_TEXT_BYTES: usize = 64 << 20;
/// The most credentials one import or export holds.
pub const MAX_CREDENTIALS: usize = 100_000;
/// The largest large blob accepted (uncompressed, 1 MiB; a device's whole large-blob array is
/// far smaller).
pub const MAX_LARGE_BLOB: usize = 1 << 20;
/// The longest user name or display name accepted (the device keeps 64 bytes of each).
pub const MAX_NAME_BYTES: usize = 4096;

/// The default exporter RP ID and display name written into CXF headers.
pub const DEFAULT_EXPORTER: &str = "Fidelio";

/// One credential as it is exchanged: the core's portable credential, its large blob (the
/// plaintext a WebAuthn client reads with the `largeBlob` extension) and when it was made.
#[derive(Clone)]
pub struct ExchangeCredential {
    /// The credential with its private key.
    pub credential: PortableCredential,
    /// Its large blob, if it has one.
    pub large_blob: Option<Vec<u8>>,
    /// When it was created, in Unix milliseconds, if known.
    pub created_ms: Option<u64>,
}

impl ExchangeCredential {
    /// A credential with no large blob and no creation time.
    pub fn new(credential: PortableCredential) -> Self {
        Self {
            credential,
            large_blob: None,
            created_ms: None,
        }
    }
}

impl fmt::Debug for ExchangeCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // PortableCredential's Debug never shows the key nor the largeBlobKey.
        f.debug_struct("ExchangeCredential")
            .field("credential", &self.credential)
            .field(
                "large_blob",
                &self
                    .large_blob
                    .as_ref()
                    .map(|blob| format!("<{} bytes>", blob.len())),
            )
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// An interchange format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// FIDO Credential Exchange Format 1.0 (JSON).
    Cxf,
    /// W3C WebDriver "Credential Parameters" / CDP `WebAuthn.Credential`.
    WebDriver,
    /// Playwright's saved `VirtualCredential`s.
    Playwright,
}

impl Format {
    /// The format's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cxf => "cxf",
            Format::WebDriver => "webdriver",
            Format::Playwright => "playwright",
        }
    }

    /// The format with this name (`cxf`, `webdriver` or `cdp`, `playwright`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "cxf" => Some(Format::Cxf),
            "webdriver" | "cdp" => Some(Format::WebDriver),
            "playwright" => Some(Format::Playwright),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How binary fields are written in a WebDriver export (imports accept both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Base64Flavor {
    /// base64url without padding, as WebDriver writes binary values.
    #[default]
    Url,
    /// Standard base64 with padding, CDP's `binary` type: the output goes to
    /// `WebAuthn.addCredential` as it is.
    Standard,
}

/// The JSON a Playwright export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaywrightShape {
    /// A storage state, `{"cookies": [], "origins": [], "credentials": [...]}`: give it to
    /// `browser.newContext({storageState})` (Playwright 1.62+), which seeds the credentials and
    /// installs the virtual authenticator.
    #[default]
    StorageState,
    /// An array of `VirtualCredential`s, as `context.credentials.get()` answers (1.61+): seed
    /// each with `context.credentials.create(c.rpId, c)`.
    List,
}

/// What [`export`] writes.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The format.
    pub format: Format,
    /// CXF only: plain CXF as the standard has it — no Fidelio extension, and no passkey whose
    /// signature counter is not zero (CXF forbids exporting those), nor non-discoverable
    /// credentials; each one left out is named in a warning.
    pub strict: bool,
    /// WebDriver only: how binary fields are written.
    pub base64: Base64Flavor,
    /// CXF only: the exporter's RP ID (default `Fidelio`).
    pub exporter_rp_id: String,
    /// CXF only: the exporter's display name (default `Fidelio`).
    pub exporter_display_name: String,
    /// CXF only: when the export was made, in Unix seconds ([`ExportOptions::new`]: now).
    pub timestamp: u64,
    /// Playwright only: the shape of the JSON.
    pub playwright: PlaywrightShape,
}

impl ExportOptions {
    /// The defaults for this format, stamped with the current time.
    pub fn new(format: Format) -> Self {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        Self {
            format,
            strict: false,
            base64: Base64Flavor::Url,
            exporter_rp_id: DEFAULT_EXPORTER.to_owned(),
            exporter_display_name: DEFAULT_EXPORTER.to_owned(),
            timestamp,
            playwright: PlaywrightShape::StorageState,
        }
    }
}

/// An export: the JSON text (a secret: it holds private keys; zeroized on drop).
pub struct Export {
    /// The JSON text.
    pub json: Zeroizing<String>,
    /// What was left out or lost on the way, one line each.
    pub warnings: Vec<String>,
    /// How many credentials the text holds.
    pub count: usize,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field(
                "json",
                &format_args!("<{} bytes, redacted>", self.json.len()),
            )
            .field("warnings", &self.warnings)
            .field("count", &self.count)
            .finish()
    }
}

/// What an import found.
pub struct Import {
    /// The format the text was read as.
    pub format: Format,
    /// The credentials, in the order of the text.
    pub credentials: Vec<ExchangeCredential>,
    /// What was skipped or defaulted, one line each.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Import")
            .field("format", &self.format)
            .field("credentials", &self.credentials)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// The values an import gives what its format does not carry.
///
/// * **CXF** without Fidelio's extension (any other exporter, or strict mode): all five; the
///   counter is 0, as CXF requires of importers. A passkey without a user handle is imported
///   non-discoverable whatever `discoverable` says.
/// * **WebDriver**: `backup_eligible` and `backup_state` when `backupEligibility` /
///   `backupState` are absent, `cred_protect` when `credProtect` is, and `hmac_secret`
///   (`isResidentCredential` is required).
/// * **Playwright**: `cred_protect` and `hmac_secret`. Its authenticator seeds every credential
///   as discoverable and never sets BE or BS, so credentials from it are discoverable (when they
///   have a user handle) with BE and BS off — what the RP saw — whatever the defaults say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportDefaults {
    /// Discoverable.
    pub discoverable: bool,
    /// BE: a passkey from a credential manager is a synced one.
    pub backup_eligible: bool,
    /// BS.
    pub backup_state: bool,
    /// credProtect level (1–3).
    pub cred_protect: u8,
    /// Whether hmac-secret (PRF) answers (with this device's values).
    pub hmac_secret: bool,
}

impl Default for ImportDefaults {
    /// A synced passkey: discoverable, BE and BS set, credProtect 1, hmac-secret on.
    fn default() -> Self {
        Self {
            discoverable: true,
            backup_eligible: true,
            backup_state: true,
            cred_protect: 1,
            hmac_secret: true,
        }
    }
}

/// Why an import or export failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The input is larger than the caps allow.
    TooLarge(String),
    /// The text is not JSON.
    Syntax(String),
    /// The JSON is none of the formats.
    UnknownFormat,
    /// A value is not acceptable; the text names the item and the field.
    Invalid(String),
    /// The export could not be written.
    Export(String),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::TooLarge(why) => write!(f, "too large: {why}"),
            ExchangeError::Syntax(why) => write!(f, "not JSON: {why}"),
            ExchangeError::UnknownFormat => f.write_str(
                "not a credential file this knows: expected a CXF document, a WebDriver/CDP \
                 credential list or Playwright credentials",
            ),
            ExchangeError::Invalid(why) => f.write_str(why),
            ExchangeError::Export(why) => write!(f, "export failed: {why}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Writes these credentials in the format `options` names.
pub fn export(
    credentials: &[ExchangeCredential],
    options: &ExportOptions,
) -> Result<Export, ExchangeError> {
    if credentials.len() > MAX_CREDENTIALS {
        return Err(ExchangeError::TooLarge(format!(
            "{} credentials (at most {MAX_CREDENTIALS})",
            credentials.len()
        )));
    }
    match options.format {
        Format::Cxf => cxf::export(credentials, options),
        Format::WebDriver => webdriver::export(credentials, options),
        Format::Playwright => playwright::export(credentials, options),
    }
}

/// The format this text is in, judged by its shape; `None` if it is not JSON or none of them.
pub fn detect(text: &str) -> Option<Format> {
    let tree = parse(text).ok()?;
    detect_value(&tree.0)
}

/// Reads credentials from a text in any of the formats ([`detect`] picks it).
pub fn import(text: &str, defaults: &ImportDefaults) -> Result<Import, ExchangeError> {
    let tree = parse(text)?;
    let format = detect_value(&tree.0).ok_or(ExchangeError::UnknownFormat)?;
    import_value(&tree.0, format, defaults)
}

/// Reads credentials from a text in this format.
pub fn import_as(
    text: &str,
    format: Format,
    defaults: &ImportDefaults,
) -> Result<Import, ExchangeError> {
    let tree = parse(text)?;
    import_value(&tree.0, format, defaults)
}

fn import_value(
    value: &Json,
    format: Format,
    defaults: &ImportDefaults,
) -> Result<Import, ExchangeError> {
    if !(1..=3).contains(&defaults.cred_protect) {
        return Err(ExchangeError::Invalid(
            "the import defaults' credProtect must be 1, 2 or 3".to_owned(),
        ));
    }
    let mut warnings = Vec::new();
    let credentials = match format {
        Format::Cxf => cxf::import(value, defaults, &mut warnings)?,
        Format::WebDriver => webdriver::import(value, defaults, &mut warnings)?,
        Format::Playwright => playwright::import(value, defaults, &mut warnings)?,
    };
    Ok(Import {
        format,
        credentials,
        warnings,
    })
}

fn detect_value(value: &Json) -> Option<Format> {
    /// What one credential object looks like.
    fn item(value: &Json) -> Option<Format> {
        let object = value.as_object()?;
        if object.contains_key("credentialId") {
            Some(Format::WebDriver)
        } else if object.contains_key("id") && object.contains_key("privateKey") {
            Some(Format::Playwright)
        } else {
            None
        }
    }
    fn list(items: &[Json], empty: Format) -> Option<Format> {
        match items.first() {
            None => Some(empty),
            Some(first) => item(first),
        }
    }
    match value {
        Json::Array(items) => list(items, Format::WebDriver),
        Json::Object(object) => {
            if object.contains_key("accounts") && object.contains_key("version") {
                // A CXF header.
                Some(Format::Cxf)
            } else if object.contains_key("items") && object.contains_key("collections") {
                // A bare CXF account (Apple's ASImportableAccount JSON).
                Some(Format::Cxf)
            } else if object.contains_key("cookies") || object.contains_key("origins") {
                // A Playwright storage state.
                Some(Format::Playwright)
            } else if let Some(Json::Array(items)) = object.get("credentials") {
                list(items, Format::WebDriver)
            } else {
                item(value)
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing, wiping.

/// A parsed JSON tree whose strings are wiped when it is dropped (they may hold keys).
struct Scrubbed(Json);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        scrub(&mut self.0);
    }
}

/// Zeroizes every string (and object key) of a tree. Depth is bounded by serde_json's
/// recursion limit (128), so the recursion is too.
fn scrub(value: &mut Json) {
    match value {
        Json::String(text) => text.zeroize(),
        Json::Array(items) => items.iter_mut().for_each(scrub),
        Json::Object(object) => {
            let taken = std::mem::take(object);
            for (mut key, mut member) in taken {
                key.zeroize();
                scrub(&mut member);
            }
        }
        Json::Null | Json::Bool(_) | Json::Number(_) => {}
    }
}

fn parse(text: &str) -> Result<Scrubbed, ExchangeError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ExchangeError::TooLarge(format!(
            "{} bytes of text (at most {MAX_TEXT_BYTES})",
            text.len()
        )));
    }
    serde_json::from_str(text)
        .map(Scrubbed)
        .map_err(|error| ExchangeError::Syntax(short(&error)))
}

// ---------------------------------------------------------------------------------------------
// base64, names.

/// base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url without padding (zeroized on drop), for keys.
fn b64url_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

fn encode(bytes: &[u8], flavor: Base64Flavor) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    match flavor {
        Base64Flavor::Url => URL_SAFE_NO_PAD.encode_string(bytes, &mut out),
        Base64Flavor::Standard => STANDARD.encode_string(bytes, &mut out),
    }
    out
}

/// base64url or standard base64, padded or not (CDP writes standard base64, WebDriver and
/// Playwright base64url). `None` if it is neither.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    let mut mapped = Zeroizing::new(trimmed.as_bytes().to_vec());
    for byte in mapped.iter_mut() {
        *byte = match *byte {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        };
    }
    URL_SAFE_NO_PAD.decode(mapped.as_slice()).ok()
}

/// A string from hostile input, fit for a message: quoted, escaped, cut to 64 characters.
fn quoted(text: &str) -> String {
    let mut shown: String = text.chars().take(64).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// An error of a parser, fit for a message: serde's quote the offending value, which may be
/// long (or a secret put in the wrong place), so they are cut to 200 characters.
fn short(error: &dyn fmt::Display) -> String {
    let text = error.to_string();
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// Names a credential in a warning: RP ID, user name, the start of its ID.
fn describe(credential: &PortableCredential) -> String {
    let mut id = b64url(
        credential
            .credential_id
            .get(..16)
            .unwrap_or(&credential.credential_id),
    );
    if credential.credential_id.len() > 16 {
        id.push('…');
    }
    let user = credential
        .user
        .name
        .as_deref()
        .map(quoted)
        .unwrap_or_else(|| "(no user name)".to_owned());
    format!("{} {user} credential {id}", quoted(&credential.rp_id))
}

// ---------------------------------------------------------------------------------------------
// JSON fields.

/// A JSON object's members, read with the type each must have; `null` is absent. Errors name
/// `path.member`.
struct Fields<'a> {
    object: &'a Map<String, Json>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Json, path: &'a str) -> Result<Self, ExchangeError> {
        value
            .as_object()
            .map(|object| Fields { object, path })
            .ok_or_else(|| invalid(path, "must be a JSON object"))
    }

    fn get(&self, name: &str) -> Option<&'a Json> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn error(&self, name: &str, why: &str) -> ExchangeError {
        invalid(&format!("{}.{name}", self.path), why)
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, ExchangeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.error(name, "must be a string")),
        }
    }

    fn required_str(&self, name: &str) -> Result<&'a str, ExchangeError> {
        self.str(name)?
            .ok_or_else(|| self.error(name, "is required"))
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ExchangeError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.error(name, "must be true or false")),
        }
    }

    fn u32(&self, name: &str) -> Result<Option<u32>, ExchangeError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.error(name, "must be an integer from 0 to 4294967295")),
        }
    }

    /// A base64 (url or standard) member, decoded.
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, ExchangeError> {
        match self.str(name)? {
            None => Ok(None),
            Some(text) => decode_b64(text)
                .map(Some)
                .ok_or_else(|| self.error(name, "is not base64url nor base64")),
        }
    }

    fn required_bytes(&self, name: &str) -> Result<Vec<u8>, ExchangeError> {
        self.bytes(name)?
            .ok_or_else(|| self.error(name, "is required"))
    }
}

fn invalid(path: &str, why: &str) -> ExchangeError {
    ExchangeError::Invalid(format!("{path}: {why}"))
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// What a PKCS#8 private key is.
enum KeyRead {
    /// A key this device can hold.
    Key(PrivateKey),
    /// A well-formed key of an algorithm it cannot: the algorithm's name.
    Unsupported(String),
}

/// `id-ecPublicKey` (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `id-Ed25519` (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The name of a key algorithm (and curve) this device does not hold.
fn unsupported_algorithm(oid: &[u8], parameters: &[u8]) -> String {
    let curve = || match der_element(parameters) {
        Some((0x06, [0x2b, 0x81, 0x04, 0x00, 0x22], _)) => "P-384",
        Some((0x06, [0x2b, 0x81, 0x04, 0x00, 0x23], _)) => "P-521",
        Some((0x06, [0x2b, 0x81, 0x04, 0x00, 0x0a], _)) => "secp256k1",
        Some((0x06, [0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07], _)) => {
            "brainpoolP256r1"
        }
        _ => "another curve",
    };
    match oid {
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] => "RSA".to_owned(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "RSA-PSS".to_owned(),
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => "DSA".to_owned(),
        [0x2b, 0x65, 0x71] => "Ed448".to_owned(),
        [0x2b, 0x65, 0x6e] => "X25519".to_owned(),
        [0x2b, 0x65, 0x6f] => "X448".to_owned(),
        OID_EC_PUBLIC_KEY => format!("ECDSA {}", curve()),
        other => format!("an unknown algorithm (OID bytes {})", hex::encode(other)),
    }
}

/// Reads a PKCS#8 private key: a P-256 or Ed25519 key, or the name of the algorithm of a
/// well-formed key of another kind; anything else is an error (the text says why).
fn read_pkcs8(der: &[u8]) -> Result<KeyRead, &'static str> {
    const MALFORMED: &str = "is not a PKCS#8 private key";
    // PrivateKeyInfo ::= SEQUENCE { version INTEGER, privateKeyAlgorithm AlgorithmIdentifier,
    // privateKey OCTET STRING, ... }
    let (0x30, body, _) = der_element(der).ok_or(MALFORMED)? else {
        return Err(MALFORMED);
    };
    let (0x02, _, body) = der_element(body).ok_or(MALFORMED)? else {
        return Err(MALFORMED);
    };
    let (0x30, algorithm, _) = der_element(body).ok_or(MALFORMED)? else {
        return Err(MALFORMED);
    };
    let (0x06, oid, parameters) = der_element(algorithm).ok_or(MALFORMED)? else {
        return Err(MALFORMED);
    };
    let supported = oid == OID_ED25519
        || (oid == OID_EC_PUBLIC_KEY
            && matches!(der_element(parameters), Some((0x06, OID_P256, _))));
    if !supported {
        return Ok(KeyRead::Unsupported(unsupported_algorithm(oid, parameters)));
    }
    private_key_from_pkcs8(der).map(KeyRead::Key).map_err(|_| {
        "is not a valid PKCS#8 P-256 or Ed25519 private key (malformed, or its public key does \
         not match)"
    })
}

/// One DER element: (tag, contents, the rest); lengths up to four bytes long.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes.iter().try_fold(0usize, |n, &byte| {
            n.checked_mul(256)?.checked_add(usize::from(byte))
        })?
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ... }`: the
/// SPKI prefix of an uncompressed P-256 point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// `SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits) ... }`.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The key's public key as SubjectPublicKeyInfo DER (what Node's `export({format: 'der', type:
/// 'spki'})` writes): 91 bytes for P-256 (uncompressed point), 44 for Ed25519.
pub fn public_key_spki(key: &PrivateKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(91);
    match key.algorithm() {
        Algorithm::Es256 => {
            der.extend_from_slice(&P256_SPKI_PREFIX);
            der.extend_from_slice(&key.p256_public_point().unwrap_or([0; 65]));
        }
        Algorithm::EdDsa => {
            der.extend_from_slice(&ED25519_SPKI_PREFIX);
            der.extend_from_slice(&ed25519_public(key).unwrap_or([0; 32]));
        }
    }
    der
}

/// An Ed25519 key's public key: the COSE key's `x` (label -2).
fn ed25519_public(key: &PrivateKey) -> Option<[u8; 32]> {
    let authenticator_core::cbor::Value::Map(entries) = key.public_cose_key() else {
        return None;
    };
    entries.iter().find_map(|(label, value)| {
        if label.as_integer().map(i128::from) != Some(-2) {
            return None;
        }
        <[u8; 32]>::try_from(value.as_bytes()?.as_slice()).ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The checks the device makes on import, made early so that errors name the item, plus the
/// caps on what it does not check.
fn check(exchange: &ExchangeCredential, path: &str) -> Result<(), ExchangeError> {
    let credential = &exchange.credential;
    let error = |field: &str, why: &str| invalid(&format!("{path}.{field}"), why);
    if credential.credential_id.is_empty()
        || credential.credential_id.len() > MAX_CREDENTIAL_ID_LENGTH
    {
        return Err(error("credentialId", "must be 1 to 1023 bytes"));
    }
    if credential.rp_id.is_empty() || credential.rp_id.len() > MAX_RP_ID_LENGTH {
        return Err(error("rpId", "must be 1 to 253 bytes"));
    }
    if credential.user.id.len() > MAX_USER_HANDLE_LENGTH {
        return Err(error("userHandle", "must be at most 64 bytes"));
    }
    if credential.discoverable && credential.user.id.is_empty() {
        return Err(error(
            "userHandle",
            "is required for a discoverable credential",
        ));
    }
    if !(1..=3).contains(&credential.cred_protect) {
        return Err(error("credProtect", "must be 1, 2 or 3"));
    }
    for (field, name) in [
        ("userName", &credential.user.name),
        ("userDisplayName", &credential.user.display_name),
    ] {
        if name
            .as_ref()
            .is_some_and(|name| name.len() > MAX_NAME_BYTES)
        {
            return Err(error(field, "must be at most 4096 bytes"));
        }
    }
    if let Some(blob) = &credential.cred_blob {
        if blob.len() > MAX_CRED_BLOB_LENGTH {
            return Err(error("credBlob", "must be at most 32 bytes"));
        }
        if !credential.discoverable {
            return Err(error(
                "credBlob",
                "only a discoverable credential keeps a credBlob",
            ));
        }
    }
    if let Some(blob) = &exchange.large_blob
        && blob.len() > MAX_LARGE_BLOB
    {
        return Err(error("largeBlob", "must be at most 1 MiB"));
    }
    Ok(())
}

/// Counts credentials as an import finds them, failing past [`MAX_CREDENTIALS`].
fn count_one(count: &mut usize) -> Result<(), ExchangeError> {
    *count = count.saturating_add(1);
    if *count > MAX_CREDENTIALS {
        return Err(ExchangeError::TooLarge(format!(
            "more than {MAX_CREDENTIALS} credentials"
        )));
    }
    Ok(())
}

/// Serializes into a buffer sized up front (so that no copy of the secrets is left behind by
/// reallocation), zeroized on drop.
fn to_json<T: serde::Serialize>(
    value: &T,
    capacity: usize,
) -> Result<Zeroizing<String>, ExchangeError> {
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer_pretty(&mut *buffer, value)
        .map_err(|error| ExchangeError::Export(short(&error)))?;
    let bytes = std::mem::take(&mut *buffer);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(error) => {
            let mut bytes = error.into_bytes();
            bytes.zeroize();
            Err(ExchangeError::Export("the JSON was not UTF-8".to_owned()))
        }
    }
}

/// A generous guess of the JSON one credential takes, pretty-printed: its binary fields in
/// base64 (the large blob counted three times: CXF writes it compressed and again in the
/// extension) and its strings escaped at worst.
fn estimate(exchange: &ExchangeCredential) -> usize {
    let credential = &exchange.credential;
    let names = credential.user.name.as_ref().map_or(0, String::len)
        + credential.user.display_name.as_ref().map_or(0, String::len)
        + credential.rp_id.len();
    let binary = credential.credential_id.len()
        + credential.user.id.len()
        + 138
        + 91
        + credential.cred_blob.as_ref().map_or(0, Vec::len) * 2
        + exchange
            .large_blob
            .as_ref()
            .map_or(0, Vec::len)
            .saturating_mul(3);
    binary
        .saturating_mul(2)
        .saturating_add(names.saturating_mul(12))
        .saturating_add(2048)
}

/// Reads each credential object of a list (`prefix`: where the list is, for error paths;
/// `"credential"`: a single object), at most [`MAX_CREDENTIALS`]; items `read` skips (with a
/// warning) are left out.
pub(crate) fn read_each<'a>(
    items: Vec<&'a Json>,
    prefix: &str,
    mut read: impl FnMut(&'a Json, &str) -> Result<Option<ExchangeCredential>, ExchangeError>,
) -> Result<Vec<ExchangeCredential>, ExchangeError> {
    if items.len() > MAX_CREDENTIALS {
        return Err(ExchangeError::TooLarge(format!(
            "{} credentials (at most {MAX_CREDENTIALS})",
            items.len()
        )));
    }
    let single = prefix == "credential";
    let mut found = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let path = if single {
            prefix.to_owned()
        } else {
            format!("{prefix}[{index}]")
        };
        if let Some(exchange) = read(item, &path)? {
            found.push(exchange);
        }
    }
    Ok(found)
}
