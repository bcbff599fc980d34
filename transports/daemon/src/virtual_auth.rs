//! The control API: the daemon's device driven as a virtual authenticator, in the vocabulary of
//! the W3C WebDriver "Virtual Authenticators" extension (WebAuthn L3 §11) and CDP's `WebAuthn`
//! domain, over the browser gateway's loopback HTTP server under `/v1/control/` (same token,
//! same loopback rule; `docs/control-api.md`).
//!
//! ```text
//!  test ── HTTP /v1/control/… (Bearer token) ──▶ gateway server ──▶ ControlApi
//!     ── ControlCommand::Virtual over the device's control queue ──▶ device loop
//!        (runs it between CTAP requests, on the authenticator itself) ── JSON answer ──▶ test
//!  device loop ── CTAP requests that succeeded ──▶ EventLog ◀── GET /v1/control/events?after=N
//! ```
//!
//! * **Authenticators.** A daemon serves one device today, `"default"`: the one every lane
//!   reaches. *Add Virtual Authenticator* claims it: its settings are rebuilt from the ones
//!   `fidelio serve` started with and the options given, and it is wiped (a new authenticator
//!   holds no credentials); a second *add* while it is claimed is `409 Unsupported`. *Remove*
//!   wipes it and restores the start-up settings. The routes carry the authenticator ID so
//!   that a daemon hosting several devices (one control queue each) slots in unchanged.
//! * **Credentials** move in the WebDriver "Credential Parameters" shape (base64url, PKCS#8
//!   private keys) through `authenticator_core::credential_io`; large blobs are entries of the
//!   device's large-blob array, sealed here as a platform would (`fidelio_webauthn::large_blob`).
//!   Private keys are secrets: they are answered to the token holder and never logged.
//! * **Events** — `credentialAdded`, `credentialAsserted`, `credentialUpdated`,
//!   `credentialDeleted` — come from CTAP requests that succeeded (any lane) and from this API's
//!   own changes, numbered from 1, kept in a ring of [`EVENT_CAPACITY`], read by long poll.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authenticator_core::cbor::{self, Key, Members, Value};
use authenticator_core::credential_io::{
    CredentialIoError, PortableCredential, private_key_from_pkcs8, private_key_to_pkcs8,
};
use authenticator_core::platform::{BuiltInUv, Platform, Presence};
use authenticator_core::storage::{LargeBlobKey, User};
use authenticator_core::{Authenticator, Config, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fidelio_ctaphid::RequestKind;
use serde_json::{Map, Value as Json, json};
use tokio::sync::{Notify, mpsc, oneshot};
use zeroize::Zeroizing;

use crate::device::{ControlCommand, ControlRequest, Peer};
use crate::devices::DeviceHost;
use crate::presence::{PresenceMode, PresenceSignals};

/// The ID of the daemon's device.
pub const DEFAULT_AUTHENTICATOR: &str = "default";

/// How many events the log keeps; older ones are dropped (a reader that fell behind sees
/// `dropped` in the answer).
pub const EVENT_CAPACITY: usize = 4096;

/// The most events one answer carries.
const EVENT_BATCH: usize = 500;

/// How long an events request waits for something new by default, and at most.
const EVENT_WAIT_DEFAULT: Duration = Duration::from_secs(25);
const EVENT_WAIT_MAX: Duration = Duration::from_secs(60);

/// The extensions the device supports, by their WebAuthn identifiers (CTAP names are accepted
/// too when an authenticator is added).
const EXTENSIONS: [&str; 7] = [
    "credBlob",
    "credProps",
    "credProtect",
    "hmac-secret",
    "largeBlob",
    "minPinLength",
    "prf",
];
const EXTENSION_ALIASES: [&str; 6] = [
    "credentialProtectionPolicy",
    "enforceCredentialProtectionPolicy",
    "getCredBlob",
    "hmacCreateSecret",
    "hmacGetSecret",
    "largeBlobKey",
];

// ---------------------------------------------------------------------------------------------
// Answers: the device loop replies with `{"status": <HTTP status>, "body": <JSON body>}`.

fn reply(status: u16, body: Json) -> Json {
    json!({"status": status, "body": body})
}

fn ok(value: Json) -> Json {
    reply(200, json!({ "ok": value }))
}

fn failure(status: u16, name: &str, message: impl Into<String>) -> Json {
    reply(
        status,
        json!({"error": {"name": name, "message": message.into()}}),
    )
}

fn invalid(message: impl Into<String>) -> Json {
    failure(400, "InvalidArgument", message)
}

fn internal(status: StatusCode) -> Json {
    failure(
        500,
        "Internal",
        format!("the device's store failed ({status:?})"),
    )
}

fn io_failure(error: CredentialIoError) -> Json {
    match error {
        CredentialIoError::Invalid(why) => invalid(why),
        CredentialIoError::Exists => failure(409, "CredentialExists", error.to_string()),
        CredentialIoError::KeyStoreFull => failure(409, "KeyStoreFull", error.to_string()),
        CredentialIoError::NotFound => failure(404, "NotFound", error.to_string()),
        CredentialIoError::Store(status) => internal(status),
    }
}

/// Splits a device answer into the HTTP status and body.
fn split_answer(answer: Json) -> (u16, Json) {
    let status = answer
        .get("status")
        .and_then(Json::as_u64)
        .and_then(|status| u16::try_from(status).ok())
        .unwrap_or(500);
    let body = answer
        .get("body")
        .cloned()
        .unwrap_or_else(|| json!({"error": {"name": "Internal", "message": "no answer"}}));
    (status, body)
}

// ---------------------------------------------------------------------------------------------
// base64url and JSON fields.

/// base64url without padding, as WebDriver writes binary values.
pub fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url, with or without padding; standard base64 (CDP's `binary`) is accepted too.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    let mapped: String = trimmed
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(mapped).ok()
}

/// A JSON object's members, read with the type each must have; `null` is absent.
struct Fields<'a>(&'a Map<String, Json>);

impl<'a> Fields<'a> {
    fn of(value: &'a Json) -> Result<Self, String> {
        value
            .as_object()
            .map(Fields)
            .ok_or_else(|| "the body must be a JSON object".to_owned())
    }

    fn get(&self, name: &str) -> Option<&'a Json> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(format!("\"{name}\" must be a boolean")),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(value)) => Ok(Some(value)),
            Some(_) => Err(format!("\"{name}\" must be a string")),
        }
    }

    fn u32(&self, name: &str) -> Result<Option<u32>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("\"{name}\" must be an integer from 0 to 4294967295")),
        }
    }

    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self.str(name)? {
            None => Ok(None),
            Some(text) => decode_b64(text)
                .map(Some)
                .ok_or_else(|| format!("\"{name}\" must be base64url")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// WebDriver's authenticator configuration (CDP's `VirtualAuthenticatorOptions` names are
/// accepted too). Absent members take WebDriver's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorOptions {
    /// `ctap2` (CTAP 2.0) or `ctap2_1`; the device always speaks CTAP 2.1 (and U2F).
    pub protocol: String,
    /// `usb`, `nfc`, `ble`, `smart-card`, `hybrid` or `internal` (a platform authenticator).
    pub transport: &'static str,
    /// Discoverable credentials (getInfo `rk`). Default false.
    pub has_resident_key: bool,
    /// Built-in user verification (getInfo `uv`). Default false.
    pub has_user_verification: bool,
    /// Presence tests succeed at once (else they are refused). Default true.
    pub is_user_consenting: bool,
    /// Built-in user verification recognises the user. Default false.
    pub is_user_verified: bool,
    /// Extensions asked for (all must be supported).
    pub extensions: Vec<String>,
    /// BE of new credentials. Default false.
    pub default_backup_eligibility: bool,
    /// BS of new credentials. Default false.
    pub default_backup_state: bool,
}

impl AuthenticatorOptions {
    /// Reads the options; the error is an answer (400 or 409).
    pub fn from_json(value: &Json) -> Result<Self, Json> {
        let fields = Fields::of(value).map_err(invalid)?;
        let protocol = match fields.str("protocol").map_err(invalid)? {
            None | Some("ctap2_1") => "ctap2_1",
            Some("ctap2") => match fields.str("ctap2Version").map_err(invalid)? {
                Some("ctap2_1") => "ctap2_1",
                None | Some("ctap2_0") => "ctap2",
                Some(other) => return Err(invalid(format!("unknown ctap2Version {other:?}"))),
            },
            Some("u2f" | "ctap1/u2f") => {
                return Err(failure(
                    409,
                    "Unsupported",
                    "a U2F-only authenticator is not emulated: the device is a CTAP 2.1 \
                     authenticator that also answers U2F (use protocol ctap2 or ctap2_1)",
                ));
            }
            Some(other) => return Err(invalid(format!("unknown protocol {other:?}"))),
        };
        let transport = match fields.str("transport").map_err(invalid)? {
            None | Some("usb") => "usb",
            Some("nfc") => "nfc",
            Some("ble") => "ble",
            Some("smart-card") => "smart-card",
            Some("hybrid" | "cable") => "hybrid",
            Some("internal") => "internal",
            Some(other) => return Err(invalid(format!("unknown transport {other:?}"))),
        };
        let flag = |name: &str, default: bool| -> Result<bool, Json> {
            Ok(fields.bool(name).map_err(invalid)?.unwrap_or(default))
        };
        let automatic = flag("automaticPresenceSimulation", true)?;
        // CDP's has* switches: every one of these extensions is always there.
        for name in ["hasLargeBlob", "hasCredBlob", "hasMinPinLength", "hasPrf"] {
            fields.bool(name).map_err(invalid)?;
        }
        let extensions = match fields.get("extensions") {
            None => Vec::new(),
            Some(Json::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    let Some(name) = item.as_str() else {
                        return Err(invalid("\"extensions\" must be an array of strings"));
                    };
                    if !EXTENSIONS.contains(&name) && !EXTENSION_ALIASES.contains(&name) {
                        return Err(failure(
                            409,
                            "Unsupported",
                            format!(
                                "extension {name:?} is not supported (supported: {})",
                                EXTENSIONS.join(", ")
                            ),
                        ));
                    }
                    names.push(name.to_owned());
                }
                names
            }
            Some(_) => return Err(invalid("\"extensions\" must be an array of strings")),
        };
        Ok(Self {
            protocol: protocol.to_owned(),
            transport,
            has_resident_key: flag("hasResidentKey", false)?,
            has_user_verification: flag("hasUserVerification", false)?,
            is_user_consenting: flag("isUserConsenting", automatic)?,
            is_user_verified: flag("isUserVerified", false)?,
            extensions,
            default_backup_eligibility: flag("defaultBackupEligibility", false)?,
            default_backup_state: flag("defaultBackupState", false)?,
        })
    }
}

/// WebDriver's credential parameters, as given to *Add Credential*.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialInput {
    credential_id: Vec<u8>,
    discoverable: bool,
    rp_id: String,
    private_key: Zeroizing<Vec<u8>>,
    user_handle: Vec<u8>,
    sign_count: u32,
    large_blob: Option<Vec<u8>>,
    backup_eligibility: Option<bool>,
    backup_state: Option<bool>,
    user_name: Option<String>,
    user_display_name: Option<String>,
    cred_protect: u8,
    /// Whether PRF (hmac-secret) answers for it (Fidelio's field; default true).
    hmac_secret: bool,
    /// Its credBlob (Fidelio's field).
    cred_blob: Option<Vec<u8>>,
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("credential_id", &encode_b64(&self.credential_id))
            .field("discoverable", &self.discoverable)
            .field("rp_id", &self.rp_id)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CredentialInput {
    /// Reads the parameters (shape only: the device checks the values); the error is a 400
    /// answer.
    pub fn from_json(value: &Json) -> Result<Self, Json> {
        let fields = Fields::of(value).map_err(invalid)?;
        let required = |what: Option<Vec<u8>>, name: &str| {
            what.ok_or_else(|| invalid(format!("\"{name}\" is required")))
        };
        let credential_id = required(
            fields.bytes("credentialId").map_err(invalid)?,
            "credentialId",
        )?;
        let private_key = Zeroizing::new(required(
            fields.bytes("privateKey").map_err(invalid)?,
            "privateKey",
        )?);
        let rp_id = fields
            .str("rpId")
            .map_err(invalid)?
            .ok_or_else(|| invalid("\"rpId\" is required"))?
            .to_owned();
        let discoverable = fields
            .bool("isResidentCredential")
            .map_err(invalid)?
            .ok_or_else(|| invalid("\"isResidentCredential\" is required"))?;
        let cred_protect = match fields.u32("credProtect").map_err(invalid)? {
            None => 1,
            Some(level @ 1..=3) => u8::try_from(level).unwrap_or(1),
            Some(_) => return Err(invalid("\"credProtect\" must be 1, 2 or 3")),
        };
        Ok(Self {
            credential_id,
            discoverable,
            rp_id,
            private_key,
            user_handle: fields
                .bytes("userHandle")
                .map_err(invalid)?
                .unwrap_or_default(),
            sign_count: fields.u32("signCount").map_err(invalid)?.unwrap_or(0),
            large_blob: fields.bytes("largeBlob").map_err(invalid)?,
            backup_eligibility: fields.bool("backupEligibility").map_err(invalid)?,
            backup_state: fields.bool("backupState").map_err(invalid)?,
            user_name: fields.str("userName").map_err(invalid)?.map(str::to_owned),
            user_display_name: fields
                .str("userDisplayName")
                .map_err(invalid)?
                .map(str::to_owned),
            cred_protect,
            hmac_secret: fields.bool("hmacSecret").map_err(invalid)?.unwrap_or(true),
            cred_blob: fields.bytes("credBlob").map_err(invalid)?,
        })
    }
}

/// What the control API asks of a device (run by the device loop between CTAP requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualCommand {
    /// The authenticator's properties.
    Describe,
    /// Add Virtual Authenticator: reconfigure and wipe the device.
    Add(AuthenticatorOptions),
    /// Remove Virtual Authenticator: wipe the device and restore its start-up settings.
    Remove,
    /// Add Credential.
    AddCredential(Box<CredentialInput>),
    /// Get Credentials (with private keys).
    GetCredentials,
    /// One credential by its ID (with its private key).
    GetCredential(Vec<u8>),
    /// Remove Credential.
    RemoveCredential(Vec<u8>),
    /// Remove All Credentials.
    RemoveAllCredentials,
    /// Set Credential Properties (backup flags).
    SetCredentialProperties {
        /// The credential.
        credential_id: Vec<u8>,
        /// New BE, if given.
        backup_eligibility: Option<bool>,
        /// New BS, if given.
        backup_state: Option<bool>,
    },
    /// Set User Verified.
    SetUserVerified(bool),
    /// Presence answered with consent (true) or refused (false).
    SetUserConsenting(bool),
    /// Fault injection: add, list, remove or clear the device's faults (`faults.rs`).
    Faults(crate::faults::FaultCommand),
}

// ---------------------------------------------------------------------------------------------
// Events.

/// The device's event log, shared by the device loop (writer) and the HTTP server (readers).
#[derive(Debug)]
pub struct EventLog {
    entries: RefCell<VecDeque<Json>>,
    last: Cell<u64>,
    notify: Notify,
    /// Where every event is also written as one JSON line (`serve --event-log`).
    sink: RefCell<Option<std::io::LineWriter<std::fs::File>>>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            entries: RefCell::new(VecDeque::new()),
            last: Cell::new(0),
            notify: Notify::new(),
            sink: RefCell::new(None),
        }
    }

    /// Also writes every event from now on to `path` as JSON lines (appended; created 0600).
    /// Events hold no secrets: no private key, PIN or large blob is ever in one.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        *self.sink.borrow_mut() = Some(std::io::LineWriter::new(file));
        Ok(())
    }

    /// Appends an event of this type, numbering and timing it; returns its number.
    pub fn push(&self, kind: &str, authenticator: &str, mut fields: Map<String, Json>) -> u64 {
        let seq = self.last.get().saturating_add(1);
        self.last.set(seq);
        fields.insert("seq".into(), json!(seq));
        let event = self.stamp(kind, authenticator, fields);
        self.write_line(&event);
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= EVENT_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(event);
        drop(entries);
        self.notify.notify_waiters();
        seq
    }

    /// Whether events go to a file (`serve --event-log`): what [`record`](Self::record) needs.
    pub fn is_recording(&self) -> bool {
        self.sink.borrow().is_some()
    }

    /// Writes an event to the event log file only, not to the long-poll stream: the
    /// `operation` record of every CTAP request (`operation.rs`), too many to poll for.
    pub fn record(&self, kind: &str, authenticator: &str, fields: Map<String, Json>) {
        if self.sink.borrow().is_some() {
            let event = self.stamp(kind, authenticator, fields);
            self.write_line(&event);
        }
    }

    fn stamp(&self, kind: &str, authenticator: &str, mut fields: Map<String, Json>) -> Json {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        fields.insert("type".into(), json!(kind));
        fields.insert("authenticatorId".into(), json!(authenticator));
        fields.insert("timeMs".into(), json!(time));
        Json::Object(fields)
    }

    fn write_line(&self, event: &Json) {
        let mut sink = self.sink.borrow_mut();
        if let Some(writer) = sink.as_mut() {
            use std::io::Write as _;
            if let Err(error) = writeln!(writer, "{event}") {
                tracing::warn!("the event log cannot be written ({error}); no more lines");
                *sink = None;
            }
        }
    }

    /// The number of the latest event (0: none yet).
    pub fn last(&self) -> u64 {
        self.last.get()
    }

    /// Events numbered above `after` (at most `limit`), and whether some of those were already
    /// dropped from the ring.
    pub fn after(&self, after: u64, limit: usize) -> (Vec<Json>, bool) {
        let entries = self.entries.borrow();
        let oldest = self
            .last
            .get()
            .saturating_sub(u64::try_from(entries.len()).unwrap_or(u64::MAX))
            .saturating_add(1);
        let dropped = after.saturating_add(1) < oldest && after < self.last.get();
        let events = entries
            .iter()
            .filter(|event| event.get("seq").and_then(Json::as_u64) > Some(after))
            .take(limit)
            .cloned()
            .collect();
        (events, dropped)
    }

    /// Waits until an event numbered above `after` exists or `wait` passes.
    pub async fn wait_after(&self, after: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            if self.last.get() > after {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// A credential as the API shows it: WebDriver's credential parameters, plus `algorithm`
/// (COSE), `credProtect` and `imported`. `privateKey` (PKCS#8) and `largeBlob` only
/// `with_secrets`.
fn credential_json(
    credential: &PortableCredential,
    large_blob: Option<&[u8]>,
    with_secrets: bool,
) -> Json {
    let mut object = Map::new();
    object.insert(
        "credentialId".into(),
        json!(encode_b64(&credential.credential_id)),
    );
    object.insert(
        "isResidentCredential".into(),
        json!(credential.discoverable),
    );
    object.insert("rpId".into(), json!(credential.rp_id));
    if with_secrets {
        let pkcs8 = private_key_to_pkcs8(&credential.private_key);
        object.insert("privateKey".into(), json!(encode_b64(&pkcs8)));
    }
    if !credential.user.id.is_empty() {
        object.insert("userHandle".into(), json!(encode_b64(&credential.user.id)));
    }
    object.insert("signCount".into(), json!(credential.sign_count));
    if with_secrets && let Some(blob) = large_blob {
        object.insert("largeBlob".into(), json!(encode_b64(blob)));
    }
    object.insert(
        "backupEligibility".into(),
        json!(credential.backup_eligible),
    );
    object.insert("backupState".into(), json!(credential.backup_state));
    if let Some(name) = &credential.user.name {
        object.insert("userName".into(), json!(name));
    }
    if let Some(name) = &credential.user.display_name {
        object.insert("userDisplayName".into(), json!(name));
    }
    object.insert(
        "algorithm".into(),
        json!(credential.private_key.algorithm().cose()),
    );
    object.insert("credProtect".into(), json!(credential.cred_protect));
    object.insert("hmacSecret".into(), json!(credential.hmac_secret));
    if with_secrets && let Some(blob) = &credential.cred_blob {
        object.insert("credBlob".into(), json!(encode_b64(blob)));
    }
    object.insert("imported".into(), json!(credential.imported));
    Json::Object(object)
}

/// The blob a large-blob array entry holds for this key, if any.
fn large_blob_of(entries: &[Value], key: &LargeBlobKey) -> Option<Vec<u8>> {
    entries
        .iter()
        .find_map(|entry| fidelio_webauthn::large_blob::open_entry(entry, key.expose()))
}

/// What an [`Observation`] of credential management's deleteCredential and
/// updateUserInformation records as its command (not CTAP command bytes: no CTAP command has
/// these numbers).
const OBSERVED_DELETE: u8 = 0xF6;
const OBSERVED_UPDATE: u8 = 0xF7;

/// A CTAP request seen starting, kept until its answer to turn it into an event.
#[derive(Debug)]
pub struct Observation {
    kind: RequestKind,
    command: u8,
    rp_id: Option<String>,
    lane: Option<&'static str>,
    /// credential management's credential, or a U2F key handle.
    subject: Option<Vec<u8>>,
    /// What is about to be deleted (credential management delete, authenticatorReset).
    before: Vec<Json>,
}

// ---------------------------------------------------------------------------------------------
// The device side.

/// A device's virtual-authenticator state, owned by its device loop.
#[derive(Debug)]
pub struct VirtualState {
    id: String,
    events: Rc<EventLog>,
    presence: PresenceMode,
    /// The settings `fidelio serve` started with.
    baseline: Config,
    /// The options of an added authenticator.
    added: Option<AuthenticatorOptions>,
    /// The RP of the latest getAssertion, for the getNextAssertions that follow it.
    last_assertion_rp: Option<String>,
}

impl VirtualState {
    /// The state of device `id`, which started with `baseline` and answers presence by
    /// `presence` unless told otherwise.
    pub fn new(id: String, events: Rc<EventLog>, presence: PresenceMode, baseline: Config) -> Self {
        Self {
            id,
            events,
            presence,
            baseline,
            added: None,
            last_assertion_rp: None,
        }
    }

    fn emit(&self, kind: &str, source: &str, lane: Option<&str>, credential: Json) {
        let mut fields = Map::new();
        fields.insert("source".into(), json!(source));
        if let Some(lane) = lane {
            fields.insert("lane".into(), json!(lane));
        }
        fields.insert("credential".into(), credential);
        self.events.push(kind, &self.id, fields);
    }

    /// Runs a control command on the (idle) authenticator; the answer is
    /// `{"status", "body"}`.
    pub fn execute<P: Platform>(
        &mut self,
        command: VirtualCommand,
        authenticator: &mut Authenticator<P>,
        signals: &PresenceSignals,
    ) -> Json {
        match command {
            VirtualCommand::Describe => ok(self.describe(authenticator, signals)),
            VirtualCommand::Add(options) => self.add(options, authenticator, signals),
            VirtualCommand::Remove => self.remove(authenticator, signals),
            VirtualCommand::AddCredential(input) => self.add_credential(&input, authenticator),
            VirtualCommand::GetCredentials => match authenticator.export_credentials() {
                Ok(credentials) => {
                    let entries = large_blob_entries(authenticator);
                    let listed: Vec<Json> = credentials
                        .iter()
                        .map(|credential| {
                            let blob = credential
                                .large_blob_key
                                .as_ref()
                                .and_then(|key| large_blob_of(&entries, key));
                            credential_json(credential, blob.as_deref(), true)
                        })
                        .collect();
                    ok(Json::Array(listed))
                }
                Err(status) => internal(status),
            },
            VirtualCommand::GetCredential(id) => match authenticator.export_credential(&id, None) {
                Ok(Some(credential)) => {
                    let entries = large_blob_entries(authenticator);
                    let blob = credential
                        .large_blob_key
                        .as_ref()
                        .and_then(|key| large_blob_of(&entries, key));
                    ok(credential_json(&credential, blob.as_deref(), true))
                }
                Ok(None) => failure(404, "NotFound", "no such credential"),
                Err(status) => internal(status),
            },
            VirtualCommand::RemoveCredential(id) => self.remove_credential(&id, authenticator),
            VirtualCommand::RemoveAllCredentials => {
                let before = authenticator.export_credentials().unwrap_or_default();
                match authenticator.delete_all_credentials() {
                    Ok(count) => {
                        for credential in &before {
                            self.emit(
                                "credentialDeleted",
                                "control",
                                None,
                                credential_json(credential, None, false),
                            );
                        }
                        ok(json!({ "removed": count }))
                    }
                    Err(status) => internal(status),
                }
            }
            VirtualCommand::SetCredentialProperties {
                credential_id,
                backup_eligibility,
                backup_state,
            } => match authenticator.set_backup_flags(
                &credential_id,
                backup_eligibility,
                backup_state,
            ) {
                Ok(credential) => {
                    let shown = credential_json(&credential, None, false);
                    self.emit("credentialUpdated", "control", None, shown.clone());
                    ok(shown)
                }
                Err(error) => io_failure(error),
            },
            VirtualCommand::SetUserVerified(verified) => {
                signals.set_user_verified(verified);
                ok(self.describe(authenticator, signals))
            }
            VirtualCommand::SetUserConsenting(consenting) => {
                signals.set_consent(Some(consenting));
                ok(self.describe(authenticator, signals))
            }
            VirtualCommand::Faults(command) => {
                crate::faults::execute(command, authenticator, signals)
            }
        }
    }

    /// The authenticator's properties, in WebDriver's names.
    fn describe<P: Platform>(
        &self,
        authenticator: &mut Authenticator<P>,
        signals: &PresenceSignals,
    ) -> Json {
        let built_in_uv = authenticator.platform_mut().presence().built_in_uv();
        let config = authenticator.config();
        let presence = match (signals.consent(), self.presence) {
            (Some(true), _) | (None, PresenceMode::Auto) => "auto",
            (Some(false), _) | (None, PresenceMode::Deny) => "deny",
            (None, PresenceMode::Prompt) => "prompt",
        };
        json!({
            "authenticatorId": self.id,
            "added": self.added.is_some(),
            "protocol": self.added.as_ref().map_or("ctap2_1", |options| options.protocol.as_str()),
            "transport": config.transports.first().copied().unwrap_or("usb"),
            "hasResidentKey": config.discoverable_credentials,
            "hasUserVerification": built_in_uv == BuiltInUv::Configured,
            "isUserConsenting": presence == "auto",
            "isUserVerified": signals.user_verified(),
            "extensions": EXTENSIONS,
            "defaultBackupEligibility": config.backup_eligible,
            "defaultBackupState": config.backup_state,
            "hasLargeBlob": true,
            "hasCredBlob": true,
            "hasMinPinLength": true,
            "hasPrf": true,
            "presence": presence,
            "aaguid": uuid(&config.aaguid),
        })
    }

    fn add<P: Platform>(
        &mut self,
        options: AuthenticatorOptions,
        authenticator: &mut Authenticator<P>,
        signals: &PresenceSignals,
    ) -> Json {
        if self.added.is_some() {
            return failure(
                409,
                "Unsupported",
                format!(
                    "this daemon hosts one authenticator (\"{}\"), already added: remove it \
                     first, or start another fidelio serve for a second device",
                    self.id
                ),
            );
        }
        let mut config = self.baseline.clone();
        config.transports = vec![options.transport];
        config.platform_device = options.transport == "internal";
        config.discoverable_credentials = options.has_resident_key;
        config.backup_eligible = options.default_backup_eligibility;
        config.backup_state = options.default_backup_state;
        config.keep_non_discoverable = true;
        *authenticator.config_mut() = config;
        if let Err(status) = authenticator.wipe() {
            return internal(status);
        }
        signals.set_consent(Some(options.is_user_consenting));
        signals.set_built_in_uv(Some(if options.has_user_verification {
            BuiltInUv::Configured
        } else {
            BuiltInUv::Unsupported
        }));
        signals.set_user_verified(options.is_user_verified);
        self.added = Some(options);
        self.last_assertion_rp = None;
        tracing::info!(
            "control API: authenticator \"{}\" added (reconfigured and wiped)",
            self.id
        );
        ok(json!({ "authenticatorId": self.id }))
    }

    fn remove<P: Platform>(
        &mut self,
        authenticator: &mut Authenticator<P>,
        signals: &PresenceSignals,
    ) -> Json {
        *authenticator.config_mut() = self.baseline.clone();
        if let Err(status) = authenticator.wipe() {
            return internal(status);
        }
        signals.set_consent(None);
        signals.set_built_in_uv(None);
        signals.set_user_verified(true);
        let was_added = self.added.take().is_some();
        self.last_assertion_rp = None;
        tracing::info!(
            "control API: authenticator \"{}\" removed (wiped, start-up settings restored)",
            self.id
        );
        ok(json!({ "authenticatorId": self.id, "wasAdded": was_added }))
    }

    fn add_credential<P: Platform>(
        &mut self,
        input: &CredentialInput,
        authenticator: &mut Authenticator<P>,
    ) -> Json {
        let private_key = match private_key_from_pkcs8(&input.private_key) {
            Ok(key) => key,
            Err(error) => return io_failure(error),
        };
        let config = authenticator.config();
        let (default_be, default_bs) = (config.backup_eligible, config.backup_state);
        let max_array = config.max_serialized_large_blob_array;
        // A large blob: a new key, and the array with its entry, checked before anything is
        // stored.
        let mut large_blob_key = None;
        let mut new_array = None;
        if let Some(blob) = &input.large_blob {
            if !input.discoverable {
                return invalid(
                    "only a discoverable credential (isResidentCredential) has a largeBlob",
                );
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand_core::Rng::fill_bytes(authenticator.platform_mut().rng(), bytes.as_mut());
            let key = LargeBlobKey::new(*bytes);
            let mut entries = large_blob_entries(authenticator);
            let Some(entry) = fidelio_webauthn::large_blob::seal_entry(
                blob,
                key.expose(),
                authenticator.platform_mut().rng(),
            ) else {
                return invalid("the largeBlob cannot be sealed");
            };
            entries.push(entry);
            let array = fidelio_webauthn::large_blob::serialize_array(&entries);
            if array.len() > max_array {
                return invalid(format!(
                    "the largeBlob does not fit the large-blob array ({} bytes at most)",
                    max_array
                ));
            }
            large_blob_key = Some(key);
            new_array = Some(array);
        }
        let credential = PortableCredential {
            credential_id: input.credential_id.clone(),
            rp_id: input.rp_id.clone(),
            discoverable: input.discoverable,
            private_key,
            user: User {
                id: input.user_handle.clone(),
                name: input.user_name.clone(),
                display_name: input.user_display_name.clone(),
            },
            sign_count: input.sign_count,
            backup_eligible: input.backup_eligibility.unwrap_or(default_be),
            backup_state: input.backup_state.unwrap_or(default_bs),
            cred_protect: input.cred_protect,
            hmac_secret: input.hmac_secret,
            cred_blob: input.cred_blob.clone(),
            large_blob_key,
            imported: true,
        };
        if let Err(error) = authenticator.import_credential(&credential) {
            return io_failure(error);
        }
        if let Some(array) = new_array
            && let Err(error) = authenticator.replace_large_blob_array(&array)
        {
            let _ = authenticator.delete_credential(&credential.credential_id);
            return io_failure(error);
        }
        let shown = match authenticator
            .export_credential(&credential.credential_id, Some(&credential.rp_id))
        {
            Ok(Some(stored)) => credential_json(&stored, None, false),
            _ => credential_json(&credential, None, false),
        };
        self.emit("credentialAdded", "control", None, shown.clone());
        ok(shown)
    }

    fn remove_credential<P: Platform>(
        &mut self,
        id: &[u8],
        authenticator: &mut Authenticator<P>,
    ) -> Json {
        match authenticator.delete_credential(id) {
            Ok(Some(deleted)) => {
                // Its large-blob entry goes too.
                if let Some(key) = &deleted.large_blob_key {
                    let entries = large_blob_entries(authenticator);
                    let kept: Vec<Value> = entries
                        .iter()
                        .filter(|entry| {
                            fidelio_webauthn::large_blob::open_entry(entry, key.expose()).is_none()
                        })
                        .cloned()
                        .collect();
                    if kept.len() != entries.len() {
                        let array = fidelio_webauthn::large_blob::serialize_array(&kept);
                        if let Err(error) = authenticator.replace_large_blob_array(&array) {
                            tracing::warn!("control API: large-blob array not tidied: {error}");
                        }
                    }
                }
                let shown = credential_json(&deleted, None, false);
                self.emit("credentialDeleted", "control", None, shown.clone());
                ok(shown)
            }
            Ok(None) => failure(404, "NotFound", "no such credential"),
            Err(status) => internal(status),
        }
    }

    /// Notes a CTAP request starting (on the idle authenticator, before it runs) when its
    /// success will be an event.
    pub fn observe_request<P: Platform>(
        &mut self,
        authenticator: &mut Authenticator<P>,
        kind: RequestKind,
        payload: &[u8],
        from: Option<Peer>,
    ) -> Option<Observation> {
        let lane = from.map(Peer::lane_name);
        let mut observation = Observation {
            kind,
            command: 0,
            rp_id: None,
            lane,
            subject: None,
            before: Vec::new(),
        };
        if kind == RequestKind::Msg {
            let instruction = *payload.get(1)?;
            let data = apdu_data(payload)?;
            observation.command = instruction;
            match instruction {
                // U2F_REGISTER: the key handle comes with the answer.
                0x01 => {}
                // U2F_AUTHENTICATE: challenge ‖ application ‖ L ‖ key handle.
                0x02 => {
                    let (&length, rest) = data.get(64..)?.split_first()?;
                    observation.subject = Some(rest.get(..usize::from(length))?.to_vec());
                }
                _ => return None,
            }
            return Some(observation);
        }
        let (&command, parameters) = payload.split_first()?;
        observation.command = command;
        let decoded = (!parameters.is_empty())
            .then(|| cbor::decode(parameters).ok())
            .flatten();
        let members = decoded.as_ref().and_then(|value| Members::of(value).ok());
        match command {
            authenticator_core::command::MAKE_CREDENTIAL
            | authenticator_core::command::GET_ASSERTION => {
                observation.rp_id = Some(crate::operation::rp_id_in(command, &members?)?);
            }
            authenticator_core::command::GET_NEXT_ASSERTION => {
                observation.rp_id = self.last_assertion_rp.clone();
            }
            authenticator_core::command::CREDENTIAL_MANAGEMENT
            | authenticator_core::command::CREDENTIAL_MANAGEMENT_PREVIEW => {
                let members = members?;
                let sub = cbor::as_int(members.get(Key::Int(1))?).ok()?;
                if !matches!(sub, 0x06 | 0x07) {
                    return None;
                }
                let params = Members::of(members.get(Key::Int(2))?).ok()?;
                let descriptor = Members::of(params.get(Key::Int(2))?).ok()?;
                let id = cbor::as_bytes(descriptor.get(Key::Text("id"))?)
                    .ok()?
                    .to_vec();
                if sub == 0x06
                    && let Ok(Some(credential)) = authenticator.export_credential(&id, None)
                {
                    observation.before = vec![credential_json(&credential, None, false)];
                }
                observation.subject = Some(id);
                observation.command = if sub == 0x06 {
                    OBSERVED_DELETE
                } else {
                    OBSERVED_UPDATE
                };
            }
            authenticator_core::command::RESET => {
                observation.before = authenticator
                    .export_credentials()
                    .unwrap_or_default()
                    .iter()
                    .map(|credential| credential_json(credential, None, false))
                    .collect();
            }
            _ => return None,
        }
        Some(observation)
    }

    /// Turns a request that succeeded into its event (on the authenticator, idle again).
    pub fn observe_response<P: Platform>(
        &mut self,
        authenticator: &mut Authenticator<P>,
        observation: Observation,
        response: &[u8],
    ) {
        let lane = observation.lane;
        if observation.kind == RequestKind::Msg {
            if !response.ends_with(&[0x90, 0x00]) {
                return;
            }
            match observation.command {
                0x01 => {
                    // 0x05 ‖ public key (65) ‖ L ‖ key handle ‖ …
                    let Some((&length, rest)) = response.get(66..).and_then(<[u8]>::split_first)
                    else {
                        return;
                    };
                    let Some(handle) = rest.get(..usize::from(length)) else {
                        return;
                    };
                    self.emit(
                        "credentialAdded",
                        "ctap",
                        lane,
                        json!({"credentialId": encode_b64(handle), "isResidentCredential": false, "u2f": true}),
                    );
                }
                0x02 => {
                    let count = response
                        .get(1..5)
                        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
                        .map(u32::from_be_bytes);
                    let id = observation.subject.as_deref().unwrap_or_default();
                    self.emit(
                        "credentialAsserted",
                        "ctap",
                        lane,
                        json!({"credentialId": encode_b64(id), "signCount": count, "u2f": true}),
                    );
                }
                _ => {}
            }
            return;
        }
        let Some((&status, body)) = response.split_first() else {
            return;
        };
        if status != 0 {
            return;
        }
        let decoded = (!body.is_empty())
            .then(|| cbor::decode(body).ok())
            .flatten();
        let members = decoded.as_ref().and_then(|value| Members::of(value).ok());
        match observation.command {
            authenticator_core::command::MAKE_CREDENTIAL => {
                let Some(auth_data) = members
                    .as_ref()
                    .and_then(|m| m.get(Key::Int(2)))
                    .and_then(|v| cbor::as_bytes(v).ok())
                else {
                    return;
                };
                // rpIdHash (32) ‖ flags ‖ signCount (4) ‖ AAGUID (16) ‖ L (2) ‖ credentialId
                let Some(length) = auth_data
                    .get(53..55)
                    .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
                    .map(u16::from_be_bytes)
                else {
                    return;
                };
                let Some(id) = auth_data.get(55..55 + usize::from(length)) else {
                    return;
                };
                let rp_id = observation.rp_id.unwrap_or_default();
                let shown = match authenticator.export_credential(id, Some(&rp_id)) {
                    Ok(Some(credential)) => credential_json(&credential, None, false),
                    _ => json!({"credentialId": encode_b64(id), "rpId": rp_id}),
                };
                self.emit("credentialAdded", "ctap", lane, shown);
            }
            authenticator_core::command::GET_ASSERTION
            | authenticator_core::command::GET_NEXT_ASSERTION => {
                let Some(members) = members else { return };
                let id = members
                    .get(Key::Int(1))
                    .and_then(|descriptor| Members::of(descriptor).ok())
                    .and_then(|descriptor| descriptor.get(Key::Text("id")))
                    .and_then(|id| cbor::as_bytes(id).ok())
                    .unwrap_or_default();
                let auth_data = members
                    .get(Key::Int(2))
                    .and_then(|v| cbor::as_bytes(v).ok())
                    .unwrap_or_default();
                let flags = auth_data.get(32).copied().unwrap_or(0);
                let count = auth_data
                    .get(33..37)
                    .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
                    .map(u32::from_be_bytes);
                let user = members
                    .get(Key::Int(4))
                    .and_then(|user| Members::of(user).ok())
                    .and_then(|user| user.get(Key::Text("id")))
                    .and_then(|id| cbor::as_bytes(id).ok());
                if observation.command == authenticator_core::command::GET_ASSERTION {
                    self.last_assertion_rp = observation.rp_id.clone();
                }
                let mut credential = Map::new();
                credential.insert("credentialId".into(), json!(encode_b64(id)));
                if let Some(rp_id) = &observation.rp_id {
                    credential.insert("rpId".into(), json!(rp_id));
                }
                if let Some(user) = user {
                    credential.insert("userHandle".into(), json!(encode_b64(user)));
                }
                credential.insert("signCount".into(), json!(count));
                credential.insert(
                    "flags".into(),
                    json!({
                        "up": flags & 0x01 != 0,
                        "uv": flags & 0x04 != 0,
                        "be": flags & 0x08 != 0,
                        "bs": flags & 0x10 != 0,
                    }),
                );
                self.emit("credentialAsserted", "ctap", lane, Json::Object(credential));
            }
            OBSERVED_DELETE => {
                let id = observation.subject.unwrap_or_default();
                let shown = observation
                    .before
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| json!({"credentialId": encode_b64(&id)}));
                self.emit("credentialDeleted", "ctap", lane, shown);
            }
            OBSERVED_UPDATE => {
                let id = observation.subject.unwrap_or_default();
                let shown = match authenticator.export_credential(&id, None) {
                    Ok(Some(credential)) => credential_json(&credential, None, false),
                    _ => json!({"credentialId": encode_b64(&id)}),
                };
                self.emit("credentialUpdated", "ctap", lane, shown);
            }
            authenticator_core::command::RESET => {
                for credential in observation.before {
                    self.emit("credentialDeleted", "ctap", lane, credential);
                }
            }
            _ => {}
        }
    }
}

/// The data of a U2F command APDU (short or extended encoding).
fn apdu_data(apdu: &[u8]) -> Option<&[u8]> {
    let body = apdu.get(4..)?;
    match body {
        [] => Some(&[]),
        [0, high, low, rest @ ..] => {
            let length = usize::from(u16::from_be_bytes([*high, *low]));
            rest.get(..length)
        }
        [length, rest @ ..] => rest.get(..usize::from(*length)),
    }
}

/// The entries of the device's large-blob array (none if it cannot be read).
fn large_blob_entries<P: Platform>(authenticator: &mut Authenticator<P>) -> Vec<Value> {
    authenticator
        .large_blob_array()
        .map(|array| fidelio_webauthn::large_blob::parse_array(&array))
        .unwrap_or_default()
}

fn uuid(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

// ---------------------------------------------------------------------------------------------
// The HTTP side.

/// The control API's HTTP endpoints, on the browser gateway's server.
#[derive(Debug)]
pub struct ControlApi {
    host: Rc<DeviceHost>,
}

impl ControlApi {
    /// An API over the devices of `host`.
    pub fn new(host: Rc<DeviceHost>) -> Self {
        Self { host }
    }

    /// The daemon's devices.
    pub fn host(&self) -> &Rc<DeviceHost> {
        &self.host
    }

    /// The event log the API reads (the browser gateway adds its own events to it).
    pub fn events(&self) -> &Rc<EventLog> {
        self.host.events()
    }

    /// Every credential of every device, as `(authenticator ID, credential)` with no private
    /// key or large blob: what an account chooser may show.
    pub async fn accounts(&self) -> Result<Vec<(String, Json)>, (u16, Json)> {
        let mut accounts = Vec::new();
        for (id, device) in self.host.controls() {
            let (status, body) = self.call(&device, VirtualCommand::GetCredentials).await;
            if status != 200 {
                return Err((status, body));
            }
            let listed = body.get("ok").and_then(Json::as_array).cloned();
            for mut credential in listed.unwrap_or_default() {
                if let Some(object) = credential.as_object_mut() {
                    object.remove("privateKey");
                    object.remove("largeBlob");
                }
                accounts.push((id.clone(), credential));
            }
        }
        Ok(accounts)
    }

    async fn call(
        &self,
        device: &mpsc::Sender<ControlRequest>,
        command: VirtualCommand,
    ) -> (u16, Json) {
        let (answer, receive) = oneshot::channel();
        if device
            .send((ControlCommand::Virtual(command), answer))
            .await
            .is_err()
        {
            return split_answer(failure(503, "DeviceStopped", "the device has stopped"));
        }
        match receive.await {
            Ok(answer) => split_answer(answer),
            Err(_) => split_answer(failure(503, "DeviceStopped", "the device has stopped")),
        }
    }

    /// Answers one request: `path` is what follows `/v1/control`, `query` what follows `?`.
    pub async fn handle(&self, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Json) {
        let not_found = || split_answer(failure(404, "NotFound", "no such control endpoint"));
        let Some(path) = path.strip_prefix('/') else {
            return not_found();
        };
        let segments: Vec<&str> = path.split('/').collect();
        let parsed = || -> Result<Json, (u16, Json)> {
            if body.is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_slice(body)
                .map_err(|error| split_answer(invalid(format!("the body is not JSON: {error}"))))
        };
        if let ["devices", rest @ ..] = segments.as_slice() {
            return self.devices_request(method, rest, query, body).await;
        }
        match (method, segments.as_slice()) {
            ("GET", ["events"]) => return self.events_request(query).await,
            ("GET", ["authenticator"]) => {
                let devices = self.host.controls();
                let mut listed = Vec::with_capacity(devices.len());
                for (_, device) in &devices {
                    let (status, body) = self.call(device, VirtualCommand::Describe).await;
                    if status != 200 {
                        return (status, body);
                    }
                    listed.push(body.get("ok").cloned().unwrap_or(Json::Null));
                }
                return (200, json!({ "ok": listed }));
            }
            ("POST", ["authenticator"]) => {
                let value = match parsed() {
                    Ok(value) => value,
                    Err(answer) => return answer,
                };
                let options = match AuthenticatorOptions::from_json(&value) {
                    Ok(options) => options,
                    Err(answer) => return split_answer(answer),
                };
                // The first add claims the default device; later ones start new devices.
                let Some(device) = self.host.control(DEFAULT_AUTHENTICATOR) else {
                    return split_answer(failure(409, "Unsupported", "no device to add"));
                };
                let (status, body) = self
                    .call(&device, VirtualCommand::Add(options.clone()))
                    .await;
                if status != 409 {
                    return (status, body);
                }
                return self.add_device(&value, options).await;
            }
            _ => {}
        }
        let ["authenticator", id, rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        let Some(device) = self.host.control(id) else {
            return split_answer(failure(404, "NotFound", format!("no authenticator {id:?}")));
        };
        let device = &device;
        if method == "DELETE" && rest.is_empty() && *id != DEFAULT_AUTHENTICATOR {
            // WebDriver's Remove Virtual Authenticator: an added device goes away.
            return match self.host.remove(id) {
                Ok(()) => (
                    200,
                    json!({ "ok": { "authenticatorId": id, "wasAdded": true, "removed": true } }),
                ),
                Err(error) => device_failure(error),
            };
        }
        let credential_id = |text: &str| {
            decode_b64(text)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| split_answer(invalid("the credential ID must be base64url")))
        };
        let command = match (method, rest) {
            ("GET", []) => VirtualCommand::Describe,
            ("DELETE", []) => VirtualCommand::Remove,
            ("POST", ["credential"]) => {
                let value = match parsed() {
                    Ok(value) => value,
                    Err(answer) => return answer,
                };
                match CredentialInput::from_json(&value) {
                    Ok(input) => VirtualCommand::AddCredential(Box::new(input)),
                    Err(answer) => return split_answer(answer),
                }
            }
            ("GET", ["credentials"]) => VirtualCommand::GetCredentials,
            ("DELETE", ["credentials"]) => VirtualCommand::RemoveAllCredentials,
            ("GET", ["credentials", credential]) => match credential_id(credential) {
                Ok(id) => VirtualCommand::GetCredential(id),
                Err(answer) => return answer,
            },
            ("DELETE", ["credentials", credential]) => match credential_id(credential) {
                Ok(id) => VirtualCommand::RemoveCredential(id),
                Err(answer) => return answer,
            },
            ("POST", ["credentials", credential, "props"]) => {
                let id = match credential_id(credential) {
                    Ok(id) => id,
                    Err(answer) => return answer,
                };
                let value = match parsed() {
                    Ok(value) => value,
                    Err(answer) => return answer,
                };
                let fields = match Fields::of(&value) {
                    Ok(fields) => fields,
                    Err(message) => return split_answer(invalid(message)),
                };
                match (fields.bool("backupEligibility"), fields.bool("backupState")) {
                    (Ok(backup_eligibility), Ok(backup_state)) => {
                        VirtualCommand::SetCredentialProperties {
                            credential_id: id,
                            backup_eligibility,
                            backup_state,
                        }
                    }
                    (Err(message), _) | (_, Err(message)) => {
                        return split_answer(invalid(message));
                    }
                }
            }
            ("POST", ["uv"]) => match self.flag(parsed(), "isUserVerified") {
                Ok(verified) => VirtualCommand::SetUserVerified(verified),
                Err(answer) => return answer,
            },
            ("POST", ["presence"]) => match self.flag(parsed(), "isUserConsenting") {
                Ok(consenting) => VirtualCommand::SetUserConsenting(consenting),
                Err(answer) => return answer,
            },
            // Fault injection (`faults.rs`, docs/control-api.md).
            ("POST", ["faults"]) => {
                let value = match parsed() {
                    Ok(value) => value,
                    Err(answer) => return answer,
                };
                match crate::faults::parse_faults(&value) {
                    Ok(faults) => VirtualCommand::Faults(crate::faults::FaultCommand::Add(faults)),
                    Err(message) => return split_answer(invalid(message)),
                }
            }
            ("GET", ["faults"]) => VirtualCommand::Faults(crate::faults::FaultCommand::List),
            ("DELETE", ["faults"]) => VirtualCommand::Faults(crate::faults::FaultCommand::Clear),
            ("DELETE", ["faults", fault]) => match crate::faults::parse_fault_id(fault) {
                Ok(id) => VirtualCommand::Faults(crate::faults::FaultCommand::Remove(id)),
                Err(message) => return split_answer(invalid(message)),
            },
            (_, ["faults"] | ["faults", _]) => {
                return split_answer(failure(405, "MethodNotAllowed", "method not allowed"));
            }
            (
                _,
                [] | ["credential"] | ["credentials"] | ["credentials", _] | ["uv"] | ["presence"],
            )
            | (_, ["credentials", _, "props"]) => {
                return split_answer(failure(405, "MethodNotAllowed", "method not allowed"));
            }
            _ => return not_found(),
        };
        self.call(device, command).await
    }

    fn flag(&self, body: Result<Json, (u16, Json)>, name: &str) -> Result<bool, (u16, Json)> {
        let value = body?;
        let fields = Fields::of(&value).map_err(|message| split_answer(invalid(message)))?;
        fields
            .bool(name)
            .map_err(|message| split_answer(invalid(message)))?
            .ok_or_else(|| split_answer(invalid(format!("\"{name}\" (a boolean) is required"))))
    }

    /// `GET /v1/control/events?after=N&timeout=MS`: events numbered above N, waiting up to
    /// MS (default 25 s, at most 60 s) for the first.
    async fn events_request(&self, query: &str) -> (u16, Json) {
        let mut after = 0u64;
        let mut wait = EVENT_WAIT_DEFAULT;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "after" => match value.parse::<u64>() {
                    Ok(n) => after = n,
                    Err(_) => {
                        return split_answer(invalid("after must be an unsigned integer"));
                    }
                },
                "timeout" => match value.parse::<u64>() {
                    Ok(ms) => wait = Duration::from_millis(ms).min(EVENT_WAIT_MAX),
                    Err(_) => {
                        return split_answer(invalid("timeout must be milliseconds"));
                    }
                },
                _ => {}
            }
        }
        self.events().wait_after(after, wait).await;
        let (events, dropped) = self.events().after(after, EVENT_BATCH);
        let next = events
            .last()
            .and_then(|event| event.get("seq"))
            .and_then(Json::as_u64)
            .unwrap_or(after.min(self.events().last()));
        (
            200,
            json!({"ok": {
                "events": events,
                "next": next,
                "last": self.events().last(),
                "dropped": dropped,
            }}),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Devices: `/v1/control/devices…`, Fidelio's own endpoints for the device lifecycle
// (`crate::devices`, docs/devices.md).

/// Reads `udp` from a device request: a loopback address (default `127.0.0.1:0`, any port).
fn udp_address(value: &Json) -> Result<std::net::SocketAddr, String> {
    match value.get("udp") {
        None | Some(Json::Null) => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(Json::String(text)) => text
            .parse()
            .map_err(|_| format!("\"udp\" must be an address like 127.0.0.1:0, not {text:?}")),
        Some(_) => Err("\"udp\" must be a string".into()),
    }
}

fn device_failure((status, message): (u16, String)) -> (u16, Json) {
    let name = match status {
        404 => "NotFound",
        409 => "Conflict",
        400 => "InvalidArgument",
        _ => "Internal",
    };
    split_answer(failure(status, name, message))
}

/// A credential of the control API's listing (with secrets) as the exchange module takes it.
fn exchange_credential(credential: &Json) -> Result<crate::exchange::ExchangeCredential, String> {
    let fields = Fields::of(credential)?;
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        fields
            .bytes(name)?
            .ok_or_else(|| format!("the listing has no {name:?}"))
    };
    let pkcs8 = Zeroizing::new(bytes("privateKey")?);
    let private_key = private_key_from_pkcs8(&pkcs8).map_err(|error| error.to_string())?;
    let portable = PortableCredential {
        credential_id: bytes("credentialId")?,
        rp_id: fields.str("rpId")?.unwrap_or_default().to_owned(),
        discoverable: fields.bool("isResidentCredential")?.unwrap_or(false),
        private_key,
        user: User {
            id: fields.bytes("userHandle")?.unwrap_or_default(),
            name: fields.str("userName")?.map(str::to_owned),
            display_name: fields.str("userDisplayName")?.map(str::to_owned),
        },
        sign_count: fields.u32("signCount")?.unwrap_or(0),
        backup_eligible: fields.bool("backupEligibility")?.unwrap_or(false),
        backup_state: fields.bool("backupState")?.unwrap_or(false),
        cred_protect: fields
            .u32("credProtect")?
            .and_then(|level| u8::try_from(level).ok())
            .unwrap_or(1),
        hmac_secret: fields.bool("hmacSecret")?.unwrap_or(true),
        cred_blob: fields.bytes("credBlob")?,
        large_blob_key: None,
        imported: fields.bool("imported")?.unwrap_or(false),
    };
    Ok(crate::exchange::ExchangeCredential {
        credential: portable,
        large_blob: fields.bytes("largeBlob")?,
        created_ms: None,
    })
}

/// An imported credential as *Add Credential* takes it (WebDriver's shape plus Fidelio's
/// fields). Holds the private key: the caller drops it as soon as it is used.
fn add_credential_json(exchanged: &crate::exchange::ExchangeCredential) -> Json {
    let credential = &exchanged.credential;
    let mut object = Map::new();
    object.insert(
        "credentialId".into(),
        json!(encode_b64(&credential.credential_id)),
    );
    object.insert(
        "isResidentCredential".into(),
        json!(credential.discoverable),
    );
    object.insert("rpId".into(), json!(credential.rp_id));
    let pkcs8 = private_key_to_pkcs8(&credential.private_key);
    object.insert("privateKey".into(), json!(encode_b64(&pkcs8)));
    if !credential.user.id.is_empty() {
        object.insert("userHandle".into(), json!(encode_b64(&credential.user.id)));
    }
    object.insert("signCount".into(), json!(credential.sign_count));
    if let Some(blob) = &exchanged.large_blob {
        object.insert("largeBlob".into(), json!(encode_b64(blob)));
    }
    object.insert(
        "backupEligibility".into(),
        json!(credential.backup_eligible),
    );
    object.insert("backupState".into(), json!(credential.backup_state));
    if let Some(name) = &credential.user.name {
        object.insert("userName".into(), json!(name));
    }
    if let Some(name) = &credential.user.display_name {
        object.insert("userDisplayName".into(), json!(name));
    }
    object.insert("credProtect".into(), json!(credential.cred_protect));
    object.insert("hmacSecret".into(), json!(credential.hmac_secret));
    if let Some(blob) = &credential.cred_blob {
        object.insert("credBlob".into(), json!(encode_b64(blob)));
    }
    Json::Object(object)
}

/// Reads `name=value` from a query string.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

impl ControlApi {
    /// `GET /v1/control/devices/{id}/export?format=cxf|webdriver|cdp|playwright&strict=true`:
    /// `{document, format, count, warnings}` — the document holds private keys.
    async fn export_request(&self, id: &str, query: &str) -> (u16, Json) {
        let name = query_value(query, "format").unwrap_or("cxf");
        let Some(format) = crate::exchange::Format::from_name(name) else {
            return split_answer(invalid(format!(
                "unknown format {name:?} (cxf, webdriver, cdp, playwright)"
            )));
        };
        let mut options = crate::exchange::ExportOptions::new(format);
        options.strict = matches!(query_value(query, "strict"), Some("true" | "1"));
        if name.eq_ignore_ascii_case("cdp") {
            options.base64 = crate::exchange::Base64Flavor::Standard;
        }
        let listed = match self.credentials_of(id).await {
            Ok(listed) => listed,
            Err(answer) => return answer,
        };
        let mut credentials = Vec::with_capacity(listed.len());
        for credential in &listed {
            match exchange_credential(credential) {
                Ok(exchanged) => credentials.push(exchanged),
                Err(message) => return split_answer(failure(500, "Internal", message)),
            }
        }
        drop(listed);
        match crate::exchange::export(&credentials, &options) {
            Ok(export) => {
                let mut fields = Map::new();
                fields.insert("format".into(), json!(format.name()));
                fields.insert("count".into(), json!(export.count));
                self.events().push("credentialsExported", id, fields);
                // CDP's shape is WebDriver's with standard base64: named as asked.
                let label = if name.eq_ignore_ascii_case("cdp") {
                    "cdp"
                } else {
                    format.name()
                };
                (
                    200,
                    json!({ "ok": {
                        "document": export.json.as_str(),
                        "format": label,
                        "count": export.count,
                        "warnings": export.warnings,
                    }}),
                )
            }
            Err(error) => split_answer(invalid(error.to_string())),
        }
    }

    /// `POST /v1/control/devices/{id}/import` `{document, format?}`: `{imported, format,
    /// warnings}`. Credentials already on the device (same RP and ID) are refused one by one
    /// with a warning; the rest are added.
    async fn import_request(&self, id: &str, value: &Json) -> (u16, Json) {
        let Some(device) = self.host.control(id) else {
            return device_failure((404, format!("no device {id:?}")));
        };
        let Some(document) = value.get("document").and_then(Json::as_str) else {
            return split_answer(invalid("\"document\" (the file's text) is required"));
        };
        let defaults = crate::exchange::ImportDefaults::default();
        let imported = match value.get("format").and_then(Json::as_str) {
            None => crate::exchange::import(document, &defaults),
            Some(name) => match crate::exchange::Format::from_name(name) {
                Some(format) => crate::exchange::import_as(document, format, &defaults),
                None => {
                    return split_answer(invalid(format!(
                        "unknown format {name:?} (cxf, webdriver, cdp, playwright)"
                    )));
                }
            },
        };
        let imported = match imported {
            Ok(imported) => imported,
            Err(error) => return split_answer(invalid(error.to_string())),
        };
        let mut warnings = imported.warnings.clone();
        let mut added = 0;
        for exchanged in &imported.credentials {
            let json = add_credential_json(exchanged);
            let input = match CredentialInput::from_json(&json) {
                Ok(input) => input,
                Err(answer) => {
                    let (_, body) = split_answer(answer);
                    warnings.push(format!(
                        "credential {} for {}: {}",
                        encode_b64(&exchanged.credential.credential_id),
                        exchanged.credential.rp_id,
                        body.pointer("/error/message")
                            .and_then(Json::as_str)
                            .unwrap_or("refused")
                    ));
                    continue;
                }
            };
            drop(json);
            let (status, body) = self
                .call(&device, VirtualCommand::AddCredential(Box::new(input)))
                .await;
            if status == 200 {
                added += 1;
            } else {
                warnings.push(format!(
                    "credential {} for {}: {}",
                    encode_b64(&exchanged.credential.credential_id),
                    exchanged.credential.rp_id,
                    body.pointer("/error/message")
                        .and_then(Json::as_str)
                        .unwrap_or("refused")
                ));
            }
        }
        let mut fields = Map::new();
        fields.insert("format".into(), json!(imported.format.name()));
        fields.insert("count".into(), json!(added));
        self.events().push("credentialsImported", id, fields);
        (
            200,
            json!({ "ok": {
                "imported": added,
                "format": imported.format.name(),
                "warnings": warnings,
            }}),
        )
    }
}

impl ControlApi {
    /// WebDriver *Add Virtual Authenticator* once the default device is claimed: a new device
    /// (the request's `profile`, else the default device's settings), then the options.
    async fn add_device(&self, value: &Json, options: AuthenticatorOptions) -> (u16, Json) {
        let id = self.host.next_id();
        let settings = match self.settings_from(value, DEFAULT_AUTHENTICATOR) {
            Ok(settings) => settings,
            Err(answer) => return answer,
        };
        let udp = match udp_address(value) {
            Ok(udp) => udp,
            Err(message) => return split_answer(invalid(message)),
        };
        if let Err(error) = self.host.start(&id, settings, udp).await {
            return device_failure(error);
        }
        let Some(device) = self.host.control(&id) else {
            return split_answer(failure(500, "Internal", "the new device is gone"));
        };
        self.call(&device, VirtualCommand::Add(options)).await
    }

    /// A device's settings from a request: `profile` (else those of `fallback`), then the
    /// overrides.
    fn settings_from(
        &self,
        value: &Json,
        fallback: &str,
    ) -> Result<crate::devices::DeviceSettings, (u16, Json)> {
        let mut settings = match value.get("profile") {
            None | Some(Json::Null) => self.host.settings(fallback).ok_or_else(|| {
                split_answer(failure(404, "NotFound", format!("no device {fallback:?}")))
            })?,
            Some(Json::String(name)) => crate::devices::DeviceSettings {
                profile: name.clone(),
                config: crate::devices::profile_config(name).ok_or_else(|| {
                    split_answer(invalid(format!(
                        "unknown profile {name:?} (profiles: {})",
                        crate::devices::PROFILES
                    )))
                })?,
                built_in_uv: name == "platform",
            },
            Some(_) => return Err(split_answer(invalid("\"profile\" must be a string"))),
        };
        crate::devices::apply_overrides(&mut settings.config, value)
            .map_err(|message| split_answer(invalid(message)))?;
        match value.get("uv") {
            None | Some(Json::Null) => {}
            Some(Json::Bool(uv)) => settings.built_in_uv = *uv,
            Some(_) => {
                return Err(split_answer(invalid(
                    "\"uv\" (built-in user verification) must be a boolean",
                )));
            }
        }
        Ok(settings)
    }

    /// A device as `/v1/control/devices` shows it: the host's view and its properties.
    async fn device_json(&self, id: &str) -> (u16, Json) {
        let (Some(mut described), Some(device)) = (self.host.describe(id), self.host.control(id))
        else {
            return device_failure((404, format!("no device {id:?}")));
        };
        let (status, body) = self.call(&device, VirtualCommand::Describe).await;
        if status != 200 {
            return (status, body);
        }
        if let (Some(object), Some(properties)) = (described.as_object_mut(), body.get("ok")) {
            object.insert("properties".into(), properties.clone());
        }
        (200, json!({ "ok": described }))
    }

    /// Every credential of device `id`, with secrets (WebDriver's shape plus Fidelio's fields).
    async fn credentials_of(&self, id: &str) -> Result<Vec<Json>, (u16, Json)> {
        let device = self
            .host
            .control(id)
            .ok_or_else(|| device_failure((404, format!("no device {id:?}"))))?;
        let (status, body) = self.call(&device, VirtualCommand::GetCredentials).await;
        if status != 200 {
            return Err((status, body));
        }
        Ok(body
            .get("ok")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Adds to device `to` every credential of `from` it lacks (by RP ID and credential ID);
    /// answers how many were copied.
    async fn copy_credentials(&self, from: &str, to: &str) -> Result<usize, (u16, Json)> {
        let source = self.credentials_of(from).await?;
        let present: Vec<(Json, Json)> = self
            .credentials_of(to)
            .await?
            .iter()
            .map(|credential| {
                (
                    credential.get("rpId").cloned().unwrap_or(Json::Null),
                    credential
                        .get("credentialId")
                        .cloned()
                        .unwrap_or(Json::Null),
                )
            })
            .collect();
        let device = self
            .host
            .control(to)
            .ok_or_else(|| device_failure((404, format!("no device {to:?}"))))?;
        let mut copied = 0;
        for credential in &source {
            let key = (
                credential.get("rpId").cloned().unwrap_or(Json::Null),
                credential
                    .get("credentialId")
                    .cloned()
                    .unwrap_or(Json::Null),
            );
            if present.contains(&key) {
                continue;
            }
            let input = CredentialInput::from_json(credential).map_err(split_answer)?;
            let (status, body) = self
                .call(&device, VirtualCommand::AddCredential(Box::new(input)))
                .await;
            if status != 200 {
                return Err((status, body));
            }
            copied += 1;
        }
        Ok(copied)
    }

    /// `/v1/control/devices…` (`segments` after `devices`).
    async fn devices_request(
        &self,
        method: &str,
        segments: &[&str],
        query: &str,
        body: &[u8],
    ) -> (u16, Json) {
        let parsed = || -> Result<Json, (u16, Json)> {
            if body.is_empty() {
                return Ok(json!({}));
            }
            let value: Json = serde_json::from_slice(body)
                .map_err(|error| split_answer(invalid(format!("the body is not JSON: {error}"))))?;
            if value.is_object() {
                Ok(value)
            } else {
                Err(split_answer(invalid("the body must be a JSON object")))
            }
        };
        let value = match parsed() {
            Ok(value) => value,
            Err(answer) => return answer,
        };
        match (method, segments) {
            ("GET", []) => {
                let mut listed = Vec::new();
                for (id, _) in self.host.controls() {
                    let (status, body) = self.device_json(&id).await;
                    if status != 200 {
                        return (status, body);
                    }
                    listed.push(body.get("ok").cloned().unwrap_or(Json::Null));
                }
                (200, json!({ "ok": listed }))
            }
            ("POST", []) => {
                let id = match value.get("id") {
                    None | Some(Json::Null) => self.host.next_id(),
                    Some(Json::String(id)) => id.clone(),
                    Some(_) => return split_answer(invalid("\"id\" must be a string")),
                };
                let settings = match self.settings_from(&value, DEFAULT_AUTHENTICATOR) {
                    Ok(settings) => settings,
                    Err(answer) => return answer,
                };
                let udp = match udp_address(&value) {
                    Ok(udp) => udp,
                    Err(message) => return split_answer(invalid(message)),
                };
                if let Err(error) = self.host.start(&id, settings, udp).await {
                    return device_failure(error);
                }
                self.device_json(&id).await
            }
            ("GET", [id]) => self.device_json(id).await,
            ("DELETE", [id]) => match self.host.remove(id) {
                Ok(()) => (
                    200,
                    json!({ "ok": { "authenticatorId": id, "removed": true } }),
                ),
                Err(error) => device_failure(error),
            },
            ("POST", [id, "clone"]) => {
                let Some(settings) = self.host.settings(id) else {
                    return device_failure((404, format!("no device {id:?}")));
                };
                let new_id = match value.get("id") {
                    None | Some(Json::Null) => self.host.next_id(),
                    Some(Json::String(new_id)) => new_id.clone(),
                    Some(_) => return split_answer(invalid("\"id\" must be a string")),
                };
                let udp = match udp_address(&value) {
                    Ok(udp) => udp,
                    Err(message) => return split_answer(invalid(message)),
                };
                if let Err(error) = self.host.start(&new_id, settings, udp).await {
                    return device_failure(error);
                }
                match self.copy_credentials(id, &new_id).await {
                    Ok(copied) => {
                        let mut fields = Map::new();
                        fields.insert("source".into(), json!(id));
                        fields.insert("credentials".into(), json!(copied));
                        self.events().push("deviceCloned", &new_id, fields);
                        self.device_json(&new_id).await
                    }
                    Err(answer) => {
                        let _ = self.host.remove(&new_id);
                        answer
                    }
                }
            }
            ("POST", [id, "sync"]) => {
                let Some(other) = value.get("with").and_then(Json::as_str) else {
                    return split_answer(invalid("\"with\" (the other device's ID) is required"));
                };
                if other == *id {
                    return split_answer(invalid("a device cannot sync with itself"));
                }
                let to_other = match self.copy_credentials(id, other).await {
                    Ok(copied) => copied,
                    Err(answer) => return answer,
                };
                let to_this = match self.copy_credentials(other, id).await {
                    Ok(copied) => copied,
                    Err(answer) => return answer,
                };
                let mut fields = Map::new();
                fields.insert("with".into(), json!(other));
                fields.insert("copiedTo".into(), json!({ *id: to_this, other: to_other }));
                self.events().push("devicesSynced", id, fields);
                (
                    200,
                    json!({ "ok": { "copied": { *id: to_this, other: to_other } } }),
                )
            }
            ("POST", [id, "plug"]) => {
                let plugged = match value.get("plugged") {
                    Some(Json::Bool(plugged)) => *plugged,
                    _ => return split_answer(invalid("\"plugged\" (a boolean) is required")),
                };
                match self.host.set_plugged(id, plugged) {
                    Some(()) => self.device_json(id).await,
                    None => device_failure((404, format!("no device {id:?}"))),
                }
            }
            ("POST", [id, "prefer"]) => match self.host.prefer(id) {
                Some(()) => self.device_json(id).await,
                None => device_failure((404, format!("no device {id:?}"))),
            },
            ("GET", [id, "export"]) => self.export_request(id, query).await,
            ("POST", [id, "import"]) => self.import_request(id, &value).await,
            ("POST", [id, "reset"]) => {
                let Some(device) = self.host.control(id) else {
                    return device_failure((404, format!("no device {id:?}")));
                };
                let (status, body) = self.call(&device, VirtualCommand::Remove).await;
                if status != 200 {
                    return (status, body);
                }
                self.device_json(id).await
            }
            (
                _,
                []
                | [_]
                | [
                    _,
                    "clone" | "sync" | "plug" | "prefer" | "reset" | "export" | "import",
                ],
            ) => split_answer(failure(405, "MethodNotAllowed", "method not allowed")),
            _ => split_answer(failure(404, "NotFound", "no such control endpoint")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient_on_input_and_strict_on_output() {
        assert_eq!(encode_b64(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode_b64("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_b64("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_b64("not base64!"), None);
        assert_eq!(decode_b64(""), Some(Vec::new()));
    }

    #[test]
    fn authenticator_options_follow_webdriver() {
        let options = AuthenticatorOptions::from_json(&json!({})).ok();
        assert_eq!(
            options,
            Some(AuthenticatorOptions {
                protocol: "ctap2_1".into(),
                transport: "usb",
                has_resident_key: false,
                has_user_verification: false,
                is_user_consenting: true,
                is_user_verified: false,
                extensions: Vec::new(),
                default_backup_eligibility: false,
                default_backup_state: false,
            })
        );
        let cdp = AuthenticatorOptions::from_json(&json!({
            "protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal",
            "hasResidentKey": true, "automaticPresenceSimulation": false, "hasLargeBlob": true,
            "extensions": ["largeBlob", "prf"]
        }))
        .ok();
        assert!(cdp.is_some_and(|o| o.protocol == "ctap2_1"
            && o.transport == "internal"
            && o.has_resident_key
            && !o.is_user_consenting));
        let status = |value: Json| {
            AuthenticatorOptions::from_json(&value)
                .err()
                .map(|answer| split_answer(answer).0)
        };
        assert_eq!(status(json!({"protocol": "u2f"})), Some(409));
        assert_eq!(status(json!({"extensions": ["uvm"]})), Some(409));
        assert_eq!(status(json!({"transport": "carrier-pigeon"})), Some(400));
        assert_eq!(status(json!({"hasResidentKey": "yes"})), Some(400));
        assert_eq!(status(json!([1, 2])), Some(400));
    }

    #[test]
    fn credential_parameters_are_checked_for_shape() {
        let status = |value: Json| {
            CredentialInput::from_json(&value)
                .err()
                .map(|answer| split_answer(answer).0)
        };
        let good = json!({"credentialId": "AQID", "isResidentCredential": true,
            "rpId": "example.com", "privateKey": "AAAA", "userHandle": "dXNlcg", "signCount": 3});
        assert!(CredentialInput::from_json(&good).is_ok());
        for missing in ["credentialId", "isResidentCredential", "rpId", "privateKey"] {
            let mut value = good.clone();
            if let Some(object) = value.as_object_mut() {
                object.remove(missing);
            }
            assert_eq!(status(value), Some(400), "{missing}");
        }
        let mut bad = good.clone();
        bad["signCount"] = json!(-1);
        assert_eq!(status(bad), Some(400));
        let mut bad = good.clone();
        bad["credentialId"] = json!("!!");
        assert_eq!(status(bad), Some(400));
        let mut bad = good;
        bad["credProtect"] = json!(9);
        assert_eq!(status(bad), Some(400));
        // Debug never shows the key.
        let shown = format!(
            "{:?}",
            CredentialInput::from_json(
                &json!({"credentialId": "AQID", "isResidentCredential": false,
                "rpId": "a", "privateKey": "c2VjcmV0"})
            )
        );
        assert!(shown.contains("redacted") && !shown.contains("c2VjcmV0"));
    }

    #[test]
    fn apdu_data_in_both_encodings() {
        assert_eq!(apdu_data(&[0, 2, 3, 0, 2, 9, 9]), Some(&[9, 9][..]));
        assert_eq!(apdu_data(&[0, 2, 3, 0, 0, 0, 1, 7, 0, 0]), Some(&[7][..]));
        assert_eq!(apdu_data(&[0, 2, 3, 0, 5, 1]), None);
        assert_eq!(apdu_data(&[0, 2]), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn events_are_numbered_kept_and_waited_for() {
        let log = EventLog::new();
        assert_eq!(log.after(0, 10).0.len(), 0);
        let started = tokio::time::Instant::now();
        log.wait_after(0, Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        for n in 0..(EVENT_CAPACITY + 5) {
            log.push("credentialAdded", "default", Map::new());
            assert_eq!(log.last(), u64::try_from(n + 1).unwrap_or(0));
        }
        let (events, dropped) = log.after(0, 3);
        assert!(dropped);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["seq"], json!(6));
        assert_eq!(events[0]["type"], json!("credentialAdded"));
        let (events, dropped) = log.after(log.last() - 1, 10);
        assert!(!dropped);
        assert_eq!(events.len(), 1);
        // A waiter wakes when an event arrives.
        let last = log.last();
        let waiter = log.wait_after(last, Duration::from_secs(10));
        let pusher = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            log.push("credentialDeleted", "default", Map::new());
        };
        let started = tokio::time::Instant::now();
        tokio::join!(waiter, pusher);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
