//! Fault injection: a device that misbehaves on purpose, for the next N operations or until
//! told otherwise, exactly as a real (faulty) authenticator would — so that clients and
//! relying parties can be tested against denied presence, failed UV, error statuses, bogus
//! signatures, wrong flags, rolled-back counters, unexpected attestation, slow answers and a
//! lossy HID link (`docs/control-api.md`, "Fault injection").
//!
//! ```text
//!  control API ── POST …/faults ──▶ FaultSet (per device, in its PresenceSignals)
//!  device loop, at each request ── FaultSet::plan(command) ──▶ RequestPlan
//!     status override (the core does not run) · delay · presence/UV outcome (PresenceSignals)
//!     · core hooks (flags, signature, counter) · attestation swapped in Config
//!     · outgoing reports dropped/delayed
//!  device loop, at the answer ── FaultSet::settle(plan, outcome) ──▶ counts, faultInjected events
//! ```
//!
//! **Counting.** A fault counts an operation only when it took effect: a status override,
//! a delay and HID faults whenever they apply; a presence fault when the request asked the user
//! at all; a UV fault when built-in UV was attempted; signature, flags, counter and attestation
//! faults when the operation succeeded (so something was signed). `count` operations, then the
//! fault is gone; without `count` it stays until removed. Several faults of one kind that apply
//! to the same request: the oldest wins, the others wait.
//!
//! The JSON (camelCase), one fault or `{"faults": [...]}`:
//!
//! | fault | what a client sees |
//! |---|---|
//! | `{"type": "presence", "outcome": "deny"}` | `CTAP2_ERR_OPERATION_DENIED` (0x27); U2F `SW_CONDITIONS_NOT_SATISFIED` (0x6985) |
//! | `{"type": "presence", "outcome": "timeout", "ms": 200}` | after `ms` (default: the presence timeout), `CTAP2_ERR_USER_ACTION_TIMEOUT` (0x2F), KEEPALIVE UPNEEDED meanwhile; U2F 0x6985 |
//! | `{"type": "uv", "outcome": "fail"}` | built-in UV fails: `CTAP2_ERR_UV_INVALID` (0x3F), one `uvRetries` spent (`CTAP2_ERR_UV_BLOCKED` at the last) |
//! | `{"type": "status", "command": "getAssertion", "status": "CTAP2_ERR_PIN_BLOCKED"}` | that status byte, the command not run |
//! | `{"type": "signature"}` | a well-formed signature that does not verify |
//! | `{"type": "flags", "up": false, "uv": true}` | those UP/UV bits in authData, signed consistently |
//! | `{"type": "delay", "ms": 500}` | the answer `ms` later, KEEPALIVE PROCESSING meanwhile |
//! | `{"type": "counter", "rollback": 5}` | signCount 5 lower than it would be (saturating) |
//! | `{"type": "attestation", "mode": "none" \| "self" \| "batch" \| "untrusted"}` | makeCredential's attestation swapped |
//! | `{"type": "hid", "dropReports": 1}` / `{"type": "hid", "delayMs": 300}` | the request's first N outgoing reports lost / every report `delayMs` late |
//!
//! Every fault also takes `"command"` (a name such as `"getAssertion"` or a CTAP command
//! byte) and `"count"` (1 or more).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authenticator_core::{
    AttestationMode, Authenticator, BatchAttestation, FlagsOverride, Hooks, Platform, StatusCode,
};
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use crate::presence::{PresenceFault, PresenceFaults, PresenceFaultsFired, PresenceSignals};

/// The most faults one device holds at a time.
pub const MAX_FAULTS: usize = 64;

/// The longest delay a fault may ask for (presence timeout, answer delay), in ms.
const MAX_DELAY_MS: u32 = 600_000;

/// The longest per-report HID delay, in ms.
const MAX_REPORT_DELAY_MS: u32 = 60_000;

// ---------------------------------------------------------------------------------------------
// Commands.

/// A request's command, as faults name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// A CTAP2 command (CTAPHID_CBOR), by its command byte.
    Ctap(u8),
    /// A CTAP1/U2F command (CTAPHID_MSG), by its instruction byte.
    U2f(u8),
}

/// The names faults accept (case-insensitive, `authenticator` prefix optional).
const COMMAND_NAMES: [(&str, Command); 14] = [
    ("makeCredential", Command::Ctap(0x01)),
    ("getAssertion", Command::Ctap(0x02)),
    ("getInfo", Command::Ctap(0x04)),
    ("clientPin", Command::Ctap(0x06)),
    ("reset", Command::Ctap(0x07)),
    ("getNextAssertion", Command::Ctap(0x08)),
    ("credentialManagement", Command::Ctap(0x0A)),
    ("selection", Command::Ctap(0x0B)),
    ("largeBlobs", Command::Ctap(0x0C)),
    ("config", Command::Ctap(0x0D)),
    ("credentialManagementPreview", Command::Ctap(0x41)),
    ("u2fRegister", Command::U2f(0x01)),
    ("u2fAuthenticate", Command::U2f(0x02)),
    ("u2fVersion", Command::U2f(0x03)),
];

const MAKE_CREDENTIAL: Command = Command::Ctap(0x01);
const GET_ASSERTION: Command = Command::Ctap(0x02);
const GET_NEXT_ASSERTION: Command = Command::Ctap(0x08);
const U2F_REGISTER: Command = Command::U2f(0x01);
const U2F_AUTHENTICATE: Command = Command::U2f(0x02);

impl Command {
    /// A command given by name or CTAP command byte.
    pub fn from_json(value: &Json) -> Result<Command, String> {
        match value {
            Json::String(name) => {
                let lower = name.to_ascii_lowercase();
                let bare = lower.strip_prefix("authenticator").unwrap_or(&lower);
                COMMAND_NAMES
                    .iter()
                    .find(|(known, _)| known.to_ascii_lowercase() == bare)
                    .map(|(_, command)| *command)
                    .ok_or_else(|| {
                        format!(
                            "unknown command {name:?} (use a CTAP command byte or one of: {})",
                            COMMAND_NAMES
                                .iter()
                                .map(|(known, _)| *known)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            }
            Json::Number(number) => number
                .as_u64()
                .and_then(|byte| u8::try_from(byte).ok())
                .map(Command::Ctap)
                .ok_or_else(|| "\"command\" must be a CTAP command byte (0 to 255)".to_owned()),
            _ => Err("\"command\" must be a command name or a CTAP command byte".to_owned()),
        }
    }

    /// Its name (`"getAssertion"`), or `"0x42"` / `"u2f 0x42"` for an unnamed byte.
    pub fn name(self) -> String {
        match COMMAND_NAMES.iter().find(|(_, known)| *known == self) {
            Some((name, _)) => (*name).to_owned(),
            None => match self {
                Command::Ctap(byte) => format!("0x{byte:02x}"),
                Command::U2f(byte) => format!("u2f 0x{byte:02x}"),
            },
        }
    }

    /// Whether a fault restricted to `self` applies to a request for `request`
    /// (credentialManagement also covers its preview command).
    fn covers(self, request: Command) -> bool {
        self == request || (self == Command::Ctap(0x0A) && request == Command::Ctap(0x41))
    }
}

// ---------------------------------------------------------------------------------------------
// The fault model.

/// The attestation a fault gives makeCredential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationChoice {
    /// Format `none`.
    None,
    /// `packed` self attestation.
    SelfAttestation,
    /// `packed` with the daemon's configured batch key and chain.
    Batch,
    /// `packed` with a batch key and chain made in memory for this fault, under a CA nobody
    /// trusts.
    Untrusted,
}

impl AttestationChoice {
    fn name(self) -> &'static str {
        match self {
            AttestationChoice::None => "none",
            AttestationChoice::SelfAttestation => "self",
            AttestationChoice::Batch => "batch",
            AttestationChoice::Untrusted => "untrusted",
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Presence (and built-in UV) questions are declined or time out.
    Presence(PresenceFault),
    /// Built-in user verification does not recognise the user.
    Uv,
    /// The command answers this status byte without running.
    Status(u8),
    /// Signatures are well-formed but do not verify.
    Signature,
    /// UP/UV in authData forced (and signed).
    Flags(FlagsOverride),
    /// The answer comes this many ms later.
    Delay(u32),
    /// The reported counter is this much lower.
    Counter(u32),
    /// makeCredential's attestation.
    Attestation(AttestationChoice),
    /// CTAPHID: the request's first `drop_reports` outgoing reports are lost, and/or each is
    /// sent `delay_ms` late.
    Hid {
        /// Reports to drop.
        drop_reports: Option<u32>,
        /// Delay of each report, in ms.
        delay_ms: Option<u32>,
    },
}

impl FaultKind {
    /// The `type` member.
    pub fn type_name(self) -> &'static str {
        match self {
            FaultKind::Presence(_) => "presence",
            FaultKind::Uv => "uv",
            FaultKind::Status(_) => "status",
            FaultKind::Signature => "signature",
            FaultKind::Flags(_) => "flags",
            FaultKind::Delay(_) => "delay",
            FaultKind::Counter(_) => "counter",
            FaultKind::Attestation(_) => "attestation",
            FaultKind::Hid { .. } => "hid",
        }
    }

    /// The commands a fault of this kind may be restricted to (`None`: any).
    fn possible_commands(self) -> Option<&'static [Command]> {
        match self {
            FaultKind::Presence(_)
            | FaultKind::Uv
            | FaultKind::Status(_)
            | FaultKind::Delay(_)
            | FaultKind::Hid { .. } => None,
            FaultKind::Signature => Some(&[
                MAKE_CREDENTIAL,
                GET_ASSERTION,
                GET_NEXT_ASSERTION,
                U2F_REGISTER,
                U2F_AUTHENTICATE,
            ]),
            FaultKind::Flags(_) | FaultKind::Counter(_) => Some(&[
                MAKE_CREDENTIAL,
                GET_ASSERTION,
                GET_NEXT_ASSERTION,
                U2F_AUTHENTICATE,
            ]),
            FaultKind::Attestation(_) => Some(&[MAKE_CREDENTIAL, U2F_REGISTER]),
        }
    }

    /// Whether a fault of this kind without `command` applies to a request.
    fn applies_by_default(self, request: Command) -> bool {
        match self {
            // A status byte is a CTAP2 answer.
            FaultKind::Status(_) => matches!(request, Command::Ctap(_)),
            // makeCredential's attestation; U2F_REGISTER only when asked for by name.
            FaultKind::Attestation(_) => request == MAKE_CREDENTIAL,
            kind => kind
                .possible_commands()
                .is_none_or(|commands| commands.contains(&request)),
        }
    }

    /// When a fault that applies to a request counts it.
    fn condition(self) -> Condition {
        match self {
            FaultKind::Presence(_) => Condition::PresenceAsked,
            FaultKind::Uv => Condition::UvAttempted,
            FaultKind::Status(_) | FaultKind::Delay(_) | FaultKind::Hid { .. } => Condition::Always,
            FaultKind::Signature
            | FaultKind::Flags(_)
            | FaultKind::Counter(_)
            | FaultKind::Attestation(_) => Condition::Succeeded,
        }
    }

    /// The kind's own members, as JSON.
    fn describe(self, into: &mut Map<String, Json>) {
        match self {
            FaultKind::Presence(PresenceFault::Deny) => {
                into.insert("outcome".into(), json!("deny"));
            }
            FaultKind::Presence(PresenceFault::Timeout { ms }) => {
                into.insert("outcome".into(), json!("timeout"));
                if let Some(ms) = ms {
                    into.insert("ms".into(), json!(ms));
                }
            }
            FaultKind::Uv => {
                into.insert("outcome".into(), json!("fail"));
            }
            FaultKind::Status(byte) => {
                let shown = StatusCode::from_byte(byte)
                    .map_or_else(|| json!(byte), |status| json!(status.name()));
                into.insert("status".into(), shown);
                into.insert("statusCode".into(), json!(byte));
            }
            FaultKind::Signature => {}
            FaultKind::Flags(flags) => {
                if let Some(up) = flags.up {
                    into.insert("up".into(), json!(up));
                }
                if let Some(uv) = flags.uv {
                    into.insert("uv".into(), json!(uv));
                }
            }
            FaultKind::Delay(ms) => {
                into.insert("ms".into(), json!(ms));
            }
            FaultKind::Counter(rollback) => {
                into.insert("rollback".into(), json!(rollback));
            }
            FaultKind::Attestation(choice) => {
                into.insert("mode".into(), json!(choice.name()));
            }
            FaultKind::Hid {
                drop_reports,
                delay_ms,
            } => {
                if let Some(drop_reports) = drop_reports {
                    into.insert("dropReports".into(), json!(drop_reports));
                }
                if let Some(delay_ms) = delay_ms {
                    into.insert("delayMs".into(), json!(delay_ms));
                }
            }
        }
    }
}

/// A fault as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// What it does.
    pub kind: FaultKind,
    /// Only requests for this command (`None`: the kind's default commands).
    pub command: Option<Command>,
    /// How many operations it affects (`None`: until removed).
    pub count: Option<u32>,
}

/// What the control API asks of a device's faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultCommand {
    /// Add faults (all or none); answers their IDs.
    Add(Vec<FaultSpec>),
    /// The active faults.
    List,
    /// Remove one fault by its ID.
    Remove(u64),
    /// Remove every fault.
    Clear,
}

// ---------------------------------------------------------------------------------------------
// JSON in.

/// A JSON object's members, read strictly: `null` is absent, unknown members are errors.
struct Members<'a> {
    object: &'a Map<String, Json>,
    what: &'a str,
}

impl<'a> Members<'a> {
    fn get(&self, name: &str) -> Option<&'a Json> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .object
            .keys()
            .find(|key| !allowed.contains(&key.as_str()))
        {
            Some(key) => Err(format!(
                "unknown member {key:?} for a {} fault (members: {})",
                self.what,
                allowed.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!("\"{name}\" must be a string")),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(format!("\"{name}\" must be a boolean")),
        }
    }

    /// An integer in `min..=max`.
    fn int(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| format!("\"{name}\" must be an integer from {min} to {max}")),
        }
    }

    fn required<T>(&self, name: &str, value: Option<T>) -> Result<T, String> {
        value.ok_or_else(|| format!("a {} fault needs \"{name}\"", self.what))
    }
}

/// A status given by its CTAP name (`"CTAP2_ERR_PIN_BLOCKED"`) or byte (`50`, `"0x32"`).
fn status_from_json(value: &Json) -> Result<u8, String> {
    let bad = || {
        "\"status\" must be a CTAP status name (such as \"CTAP2_ERR_PIN_BLOCKED\") or a byte \
         (0 to 255)"
            .to_owned()
    };
    match value {
        Json::Number(number) => number
            .as_u64()
            .and_then(|byte| u8::try_from(byte).ok())
            .ok_or_else(bad),
        Json::String(text) => {
            if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                return u8::from_str_radix(hex, 16).map_err(|_| bad());
            }
            StatusCode::ALL
                .iter()
                .find(|status| status.name().eq_ignore_ascii_case(text))
                .map(|status| status.to_byte())
                .ok_or_else(|| format!("unknown CTAP status {text:?}"))
        }
        _ => Err(bad()),
    }
}

/// Reads one fault.
pub fn parse_fault(value: &Json) -> Result<FaultSpec, String> {
    let object = value
        .as_object()
        .ok_or_else(|| "a fault must be a JSON object".to_owned())?;
    let type_name = match object.get("type") {
        Some(Json::String(name)) => name.as_str(),
        Some(_) => return Err("\"type\" must be a string".to_owned()),
        None => return Err("a fault needs \"type\"".to_owned()),
    };
    let members = Members {
        object,
        what: type_name,
    };
    const COMMON: [&str; 3] = ["type", "command", "count"];
    let with_common =
        |own: &[&'static str]| -> Vec<&'static str> { COMMON.iter().chain(own).copied().collect() };
    let kind = match type_name {
        "presence" => {
            members.only(&with_common(&["outcome", "ms"]))?;
            let outcome = members.str("outcome")?;
            let ms = members.int("ms", 0, MAX_DELAY_MS)?;
            match members.required("outcome", outcome)? {
                "deny" if ms.is_none() => FaultKind::Presence(PresenceFault::Deny),
                "deny" => return Err("\"ms\" goes with outcome \"timeout\" only".to_owned()),
                "timeout" => FaultKind::Presence(PresenceFault::Timeout { ms }),
                other => {
                    return Err(format!(
                        "unknown presence outcome {other:?} (use \"deny\" or \"timeout\")"
                    ));
                }
            }
        }
        "uv" => {
            members.only(&with_common(&["outcome"]))?;
            match members.str("outcome")? {
                None | Some("fail") => FaultKind::Uv,
                Some(other) => return Err(format!("unknown uv outcome {other:?} (use \"fail\")")),
            }
        }
        "status" => {
            members.only(&with_common(&["status"]))?;
            let status = members.required("status", members.get("status"))?;
            FaultKind::Status(status_from_json(status)?)
        }
        "signature" => {
            members.only(&with_common(&[]))?;
            FaultKind::Signature
        }
        "flags" => {
            members.only(&with_common(&["up", "uv"]))?;
            let flags = FlagsOverride {
                up: members.bool("up")?,
                uv: members.bool("uv")?,
            };
            if flags.up.is_none() && flags.uv.is_none() {
                return Err("a flags fault needs \"up\" and/or \"uv\"".to_owned());
            }
            FaultKind::Flags(flags)
        }
        "delay" => {
            members.only(&with_common(&["ms"]))?;
            let ms = members.int("ms", 1, MAX_DELAY_MS)?;
            FaultKind::Delay(members.required("ms", ms)?)
        }
        "counter" => {
            members.only(&with_common(&["rollback"]))?;
            let rollback = members.int("rollback", 1, u32::MAX)?;
            FaultKind::Counter(members.required("rollback", rollback)?)
        }
        "attestation" => {
            members.only(&with_common(&["mode"]))?;
            let mode = members.str("mode")?;
            FaultKind::Attestation(match members.required("mode", mode)? {
                "none" => AttestationChoice::None,
                "self" => AttestationChoice::SelfAttestation,
                "batch" => AttestationChoice::Batch,
                "untrusted" => AttestationChoice::Untrusted,
                other => {
                    return Err(format!(
                        "unknown attestation mode {other:?} (use none, self, batch or untrusted)"
                    ));
                }
            })
        }
        "hid" => {
            members.only(&with_common(&["dropReports", "delayMs"]))?;
            let drop_reports = members.int("dropReports", 1, u32::MAX)?;
            let delay_ms = members.int("delayMs", 1, MAX_REPORT_DELAY_MS)?;
            if drop_reports.is_none() && delay_ms.is_none() {
                return Err("a hid fault needs \"dropReports\" and/or \"delayMs\"".to_owned());
            }
            FaultKind::Hid {
                drop_reports,
                delay_ms,
            }
        }
        other => {
            return Err(format!(
                "unknown fault type {other:?} (presence, uv, status, signature, flags, delay, \
                 counter, attestation, hid)"
            ));
        }
    };
    let command = members.get("command").map(Command::from_json).transpose()?;
    if let Some(command) = command {
        if matches!(kind, FaultKind::Status(_)) && matches!(command, Command::U2f(_)) {
            return Err("a status fault answers a CTAP2 command, not a U2F one".to_owned());
        }
        if let Some(possible) = kind.possible_commands()
            && !possible.iter().any(|known| known.covers(command))
        {
            return Err(format!(
                "a {type_name} fault cannot apply to {} (only to {})",
                command.name(),
                possible
                    .iter()
                    .map(|known| known.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let count = members.int("count", 1, u32::MAX)?;
    Ok(FaultSpec {
        kind,
        command,
        count,
    })
}

/// Reads a request body: one fault, or `{"faults": [...]}` (1 to [`MAX_FAULTS`]).
pub fn parse_faults(value: &Json) -> Result<Vec<FaultSpec>, String> {
    let object = value
        .as_object()
        .ok_or_else(|| "the body must be a fault or {\"faults\": [...]}".to_owned())?;
    let Some(list) = object.get("faults") else {
        return parse_fault(value).map(|fault| vec![fault]);
    };
    if object.len() != 1 {
        return Err("{\"faults\": [...]} takes no other member".to_owned());
    }
    let items = list
        .as_array()
        .ok_or_else(|| "\"faults\" must be an array".to_owned())?;
    if items.is_empty() || items.len() > MAX_FAULTS {
        return Err(format!("\"faults\" must hold 1 to {MAX_FAULTS} faults"));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_fault(item).map_err(|why| format!("faults[{index}]: {why}")))
        .collect()
}

/// A fault ID from a path.
pub fn parse_fault_id(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("{text:?} is not a fault ID (a number)"))
}

// ---------------------------------------------------------------------------------------------
// The device's faults.

/// When a fault that applies counts the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Whenever it applies.
    Always,
    /// When the request asked the user.
    PresenceAsked,
    /// When built-in UV was attempted.
    UvAttempted,
    /// When the operation succeeded.
    Succeeded,
}

/// An active fault.
#[derive(Debug, Clone)]
struct Fault {
    id: u64,
    spec: FaultSpec,
    /// Operations left (`None`: until removed).
    remaining: Option<u32>,
    /// Operations affected so far.
    fired: u64,
    /// An attestation fault's mode, resolved when it was added.
    attestation: Option<AttestationMode>,
}

impl Fault {
    fn applies(&self, request: Command) -> bool {
        match self.spec.command {
            Some(command) => command.covers(request),
            None => self.spec.kind.applies_by_default(request),
        }
    }

    fn to_json(&self) -> Json {
        let mut object = Map::new();
        object.insert("faultId".into(), json!(self.id));
        object.insert("type".into(), json!(self.spec.kind.type_name()));
        self.spec.kind.describe(&mut object);
        if let Some(command) = self.spec.command {
            object.insert("command".into(), json!(command.name()));
        }
        object.insert("count".into(), json!(self.spec.count));
        object.insert("remaining".into(), json!(self.remaining));
        object.insert("fired".into(), json!(self.fired));
        Json::Object(object)
    }
}

/// What the faults make of one request; built by [`FaultSet::plan`] at its start.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    /// The request's command.
    pub command: Command,
    /// Answer this status byte without running the command.
    pub status: Option<u8>,
    /// Answer this much later.
    pub delay: Option<Duration>,
    /// Presence and built-in UV outcomes ([`PresenceSignals::set_request_faults`]).
    pub presence: PresenceFaults,
    /// The core's test-fault hooks for the request.
    pub hooks: Hooks,
    /// The attestation to use instead of the configured one.
    pub attestation: Option<AttestationMode>,
    /// Outgoing reports of the request to drop.
    pub drop_reports: u32,
    /// Delay of each outgoing report of the request.
    pub report_delay: Option<Duration>,
    /// The faults that apply, with when each counts.
    applied: Vec<(u64, Condition)>,
}

impl RequestPlan {
    /// No fault.
    pub fn none(command: Command) -> Self {
        Self {
            command,
            status: None,
            delay: None,
            presence: PresenceFaults::default(),
            hooks: Hooks::default(),
            attestation: None,
            drop_reports: 0,
            report_delay: None,
            applied: Vec::new(),
        }
    }

    /// Whether any fault applies.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }
}

/// How a planned request went, for [`FaultSet::settle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Which presence faults took effect.
    pub presence: PresenceFaultsFired,
    /// The answer was a success (CTAP2_OK, or SW_NO_ERROR for U2F).
    pub succeeded: bool,
}

/// A fault that affected a request: what its `faultInjected` event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The fault.
    pub fault_id: u64,
    /// Its type.
    pub fault_type: &'static str,
    /// The request's command.
    pub command: Command,
    /// Operations it has left (`None`: until removed; 0: gone now).
    pub remaining: Option<u32>,
}

impl Fired {
    /// The event's members (besides those every event has).
    pub fn event_fields(&self, lane: Option<&str>) -> Map<String, Json> {
        let mut fields = Map::new();
        fields.insert("source".into(), json!("ctap"));
        if let Some(lane) = lane {
            fields.insert("lane".into(), json!(lane));
        }
        fields.insert("faultId".into(), json!(self.fault_id));
        fields.insert("faultType".into(), json!(self.fault_type));
        fields.insert("command".into(), json!(self.command.name()));
        fields.insert("remaining".into(), json!(self.remaining));
        fields
    }
}

/// One device's injected faults.
#[derive(Debug, Default)]
pub struct FaultSet {
    faults: Vec<Fault>,
    last_id: u64,
}

impl FaultSet {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is no fault.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Adds a fault (its attestation mode resolved by the caller); returns its ID, or `None`
    /// when [`MAX_FAULTS`] are active.
    fn add(&mut self, spec: FaultSpec, attestation: Option<AttestationMode>) -> Option<u64> {
        if self.faults.len() >= MAX_FAULTS {
            return None;
        }
        self.last_id = self.last_id.saturating_add(1);
        self.faults.push(Fault {
            id: self.last_id,
            spec,
            remaining: spec.count,
            fired: 0,
            attestation,
        });
        Some(self.last_id)
    }

    /// The active faults, oldest first, with what is left of each.
    pub fn list(&self) -> Vec<Json> {
        self.faults.iter().map(Fault::to_json).collect()
    }

    /// Removes a fault; what it was.
    pub fn remove(&mut self, id: u64) -> Option<Json> {
        let index = self.faults.iter().position(|fault| fault.id == id)?;
        Some(self.faults.remove(index).to_json())
    }

    /// Removes every fault; how many there were.
    pub fn clear(&mut self) -> usize {
        let count = self.faults.len();
        self.faults.clear();
        count
    }

    /// The faults that apply to a request for `command`, oldest first.
    fn applying(&self, command: Command) -> impl Iterator<Item = &Fault> {
        self.faults
            .iter()
            .filter(move |fault| fault.applies(command))
    }

    /// What the faults do to a request for `command` (counts are settled at its end).
    pub fn plan(&self, command: Command) -> RequestPlan {
        let mut plan = RequestPlan::none(command);
        if self.faults.is_empty() {
            return plan;
        }
        // What happens around the command, whether or not it runs.
        for fault in self.applying(command) {
            let taken = match fault.spec.kind {
                FaultKind::Status(status) if plan.status.is_none() => {
                    plan.status = Some(status);
                    true
                }
                FaultKind::Delay(ms) if plan.delay.is_none() => {
                    plan.delay = Some(Duration::from_millis(u64::from(ms)));
                    true
                }
                FaultKind::Hid {
                    drop_reports,
                    delay_ms,
                } => {
                    let mut taken = false;
                    if let Some(count) = drop_reports
                        && plan.drop_reports == 0
                    {
                        plan.drop_reports = count;
                        taken = true;
                    }
                    if let Some(ms) = delay_ms
                        && plan.report_delay.is_none()
                    {
                        plan.report_delay = Some(Duration::from_millis(u64::from(ms)));
                        taken = true;
                    }
                    taken
                }
                _ => false,
            };
            if taken {
                plan.applied.push((fault.id, Condition::Always));
            }
        }
        // A status override answers without the core: nothing of it can go wrong too.
        if plan.status.is_some() {
            return plan;
        }
        for fault in self.applying(command) {
            let taken = match fault.spec.kind {
                FaultKind::Presence(outcome) if plan.presence.presence.is_none() => {
                    plan.presence.presence = Some(outcome);
                    true
                }
                FaultKind::Uv if !plan.presence.uv_fails => {
                    plan.presence.uv_fails = true;
                    true
                }
                FaultKind::Signature if !plan.hooks.corrupt_signature => {
                    plan.hooks.corrupt_signature = true;
                    true
                }
                FaultKind::Flags(flags) if plan.hooks.flags.is_none() => {
                    plan.hooks.flags = Some(flags);
                    true
                }
                FaultKind::Counter(rollback) if plan.hooks.counter_rollback == 0 => {
                    plan.hooks.counter_rollback = rollback;
                    true
                }
                FaultKind::Attestation(_) if plan.attestation.is_none() => {
                    plan.attestation = fault.attestation.clone();
                    plan.attestation.is_some()
                }
                _ => false,
            };
            if taken {
                plan.applied.push((fault.id, fault.spec.kind.condition()));
            }
        }
        plan
    }

    /// Counts the request against the faults that took effect (removing those used up) and
    /// says which they were.
    pub fn settle(&mut self, plan: &RequestPlan, outcome: Outcome) -> Vec<Fired> {
        let mut fired = Vec::new();
        for (id, condition) in &plan.applied {
            let took_effect = match condition {
                Condition::Always => true,
                Condition::PresenceAsked => outcome.presence.presence,
                Condition::UvAttempted => outcome.presence.uv,
                Condition::Succeeded => outcome.succeeded,
            };
            if !took_effect {
                continue;
            }
            let Some(index) = self.faults.iter().position(|fault| fault.id == *id) else {
                continue;
            };
            let Some(fault) = self.faults.get_mut(index) else {
                continue;
            };
            fault.fired = fault.fired.saturating_add(1);
            fault.remaining = fault.remaining.map(|left| left.saturating_sub(1));
            fired.push(Fired {
                fault_id: fault.id,
                fault_type: fault.spec.kind.type_name(),
                command: plan.command,
                remaining: fault.remaining,
            });
            if fault.remaining == Some(0) {
                self.faults.remove(index);
            }
        }
        fired
    }
}

// ---------------------------------------------------------------------------------------------
// The control API's side (run by the device loop, on the idle authenticator).

fn answer(status: u16, body: Json) -> Json {
    json!({"status": status, "body": body})
}

fn failure(status: u16, name: &str, message: impl Into<String>) -> Json {
    answer(
        status,
        json!({"error": {"name": name, "message": message.into()}}),
    )
}

/// Runs a fault command for a device; the answer is `{"status", "body"}` as the control API's
/// other commands answer.
pub fn execute<P: Platform>(
    command: FaultCommand,
    authenticator: &mut Authenticator<P>,
    signals: &PresenceSignals,
) -> Json {
    match command {
        FaultCommand::Add(specs) => add(specs, authenticator, signals),
        FaultCommand::List => {
            let faults = signals.with_faults(|set| set.list());
            answer(200, json!({"ok": {"faults": faults}}))
        }
        FaultCommand::Remove(id) => match signals.with_faults(|set| set.remove(id)) {
            Some(removed) => answer(200, json!({ "ok": removed })),
            None => failure(404, "NotFound", format!("no fault {id}")),
        },
        FaultCommand::Clear => {
            let removed = signals.with_faults(FaultSet::clear);
            answer(200, json!({"ok": {"removed": removed}}))
        }
    }
}

fn add<P: Platform>(
    specs: Vec<FaultSpec>,
    authenticator: &mut Authenticator<P>,
    signals: &PresenceSignals,
) -> Json {
    let active = signals.with_faults(|set| set.faults.len());
    if active.saturating_add(specs.len()) > MAX_FAULTS {
        return failure(
            409,
            "TooManyFaults",
            format!("a device holds at most {MAX_FAULTS} faults ({active} active)"),
        );
    }
    // Every attestation is resolved before anything is added: all or nothing.
    let mut resolved = Vec::with_capacity(specs.len());
    for spec in specs {
        let attestation = match spec.kind {
            FaultKind::Attestation(choice) => match attestation_for(choice, authenticator, signals)
            {
                Ok(mode) => Some(mode),
                Err(refusal) => return refusal,
            },
            _ => None,
        };
        resolved.push((spec, attestation));
    }
    let ids: Vec<u64> = signals.with_faults(|set| {
        resolved
            .into_iter()
            .filter_map(|(spec, attestation)| set.add(spec, attestation))
            .collect()
    });
    tracing::info!("control API: fault(s) {ids:?} injected");
    answer(200, json!({"ok": {"faultIds": ids}}))
}

/// The attestation mode an attestation fault uses.
fn attestation_for<P: Platform>(
    choice: AttestationChoice,
    authenticator: &mut Authenticator<P>,
    signals: &PresenceSignals,
) -> Result<AttestationMode, Json> {
    match choice {
        AttestationChoice::None => Ok(AttestationMode::None),
        AttestationChoice::SelfAttestation => Ok(AttestationMode::SelfAttestation),
        AttestationChoice::Batch => {
            match (&authenticator.config().attestation, signals.daemon_batch()) {
                (AttestationMode::Batch(batch), _) => Ok(AttestationMode::Batch(batch.clone())),
                // A device added later: the key the daemon was started with.
                (_, Some(batch)) => Ok(AttestationMode::Batch(batch)),
                _ => Err(failure(
                    409,
                    "Unsupported",
                    "this daemon has no batch attestation key (start it with --attestation \
                 batch:DIR); use mode \"untrusted\" for a throwaway one",
                )),
            }
        }
        AttestationChoice::Untrusted => {
            let aaguid = authenticator.config().aaguid;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0);
            let mut options =
                fidelio_attestation::GenerateOptions::new(aaguid, now.saturating_sub(86_400));
            options.ca_common_name = "Fidelio Untrusted Fault-Injection CA".to_owned();
            options.batch_common_name = "Fidelio Untrusted Batch Attestation".to_owned();
            let provisioned =
                fidelio_attestation::generate(&options, authenticator.platform_mut().rng())
                    .map_err(|error| {
                        failure(
                            500,
                            "Internal",
                            format!("no attestation could be made: {error}"),
                        )
                    })?;
            Ok(AttestationMode::Batch(BatchAttestation {
                private_key: Zeroizing::new(*provisioned.batch_key()),
                certificates: provisioned.attestation_chain(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Json) -> Result<FaultSpec, String> {
        parse_fault(&value)
    }

    #[test]
    fn every_fault_type_parses() {
        assert_eq!(
            spec(json!({"type": "presence", "outcome": "deny"})),
            Ok(FaultSpec {
                kind: FaultKind::Presence(PresenceFault::Deny),
                command: None,
                count: None
            })
        );
        assert_eq!(
            spec(json!({"type": "presence", "outcome": "timeout", "ms": 200, "count": 1}))
                .map(|s| (s.kind, s.count)),
            Ok((
                FaultKind::Presence(PresenceFault::Timeout { ms: Some(200) }),
                Some(1)
            ))
        );
        assert_eq!(
            spec(json!({"type": "uv", "outcome": "fail"})).map(|s| s.kind),
            Ok(FaultKind::Uv)
        );
        assert_eq!(
            spec(json!({"type": "status", "command": "getAssertion",
                        "status": "CTAP2_ERR_PIN_BLOCKED"}))
            .map(|s| (s.kind, s.command)),
            Ok((FaultKind::Status(0x32), Some(Command::Ctap(2))))
        );
        assert_eq!(
            spec(json!({"type": "status", "command": 2, "status": 0x32})).map(|s| s.kind),
            Ok(FaultKind::Status(0x32))
        );
        assert_eq!(
            spec(json!({"type": "status", "status": "0xF2"})).map(|s| s.kind),
            Ok(FaultKind::Status(0xF2))
        );
        assert_eq!(
            spec(json!({"type": "status", "status": "ctap2_err_uv_invalid",
                        "command": "authenticatorClientPIN"}))
            .map(|s| (s.kind, s.command)),
            Ok((FaultKind::Status(0x3F), Some(Command::Ctap(6))))
        );
        assert_eq!(
            spec(json!({"type": "signature", "command": "u2fAuthenticate"})).map(|s| s.command),
            Ok(Some(Command::U2f(2)))
        );
        assert_eq!(
            spec(json!({"type": "flags", "up": false, "uv": true})).map(|s| s.kind),
            Ok(FaultKind::Flags(FlagsOverride {
                up: Some(false),
                uv: Some(true)
            }))
        );
        assert_eq!(
            spec(json!({"type": "delay", "ms": 500})).map(|s| s.kind),
            Ok(FaultKind::Delay(500))
        );
        assert_eq!(
            spec(json!({"type": "counter", "rollback": 5})).map(|s| s.kind),
            Ok(FaultKind::Counter(5))
        );
        for (mode, choice) in [
            ("none", AttestationChoice::None),
            ("self", AttestationChoice::SelfAttestation),
            ("batch", AttestationChoice::Batch),
            ("untrusted", AttestationChoice::Untrusted),
        ] {
            assert_eq!(
                spec(json!({"type": "attestation", "mode": mode})).map(|s| s.kind),
                Ok(FaultKind::Attestation(choice))
            );
        }
        assert_eq!(
            spec(json!({"type": "hid", "dropReports": 2})).map(|s| s.kind),
            Ok(FaultKind::Hid {
                drop_reports: Some(2),
                delay_ms: None
            })
        );
        assert_eq!(
            spec(json!({"type": "hid", "delayMs": 50, "count": 3})).map(|s| (s.kind, s.count)),
            Ok((
                FaultKind::Hid {
                    drop_reports: None,
                    delay_ms: Some(50)
                },
                Some(3)
            ))
        );
    }

    #[test]
    fn hostile_json_is_refused_with_a_reason() {
        let refused = [
            json!(null),
            json!([]),
            json!("presence"),
            json!({}),
            json!({"type": 7}),
            json!({"type": "meteor"}),
            json!({"type": "presence"}),
            json!({"type": "presence", "outcome": "maybe"}),
            json!({"type": "presence", "outcome": "deny", "ms": 5}),
            json!({"type": "presence", "outcome": "timeout", "ms": -1}),
            json!({"type": "presence", "outcome": "timeout", "ms": 1e3}),
            json!({"type": "presence", "outcome": "timeout", "ms": 4_000_000_000u64}),
            json!({"type": "uv", "outcome": "succeed"}),
            json!({"type": "status"}),
            json!({"type": "status", "status": "CTAP2_ERR_NOPE"}),
            json!({"type": "status", "status": 256}),
            json!({"type": "status", "status": "0xZZ"}),
            json!({"type": "status", "status": [1]}),
            json!({"type": "status", "status": 1, "command": "u2fRegister"}),
            json!({"type": "status", "status": 1, "command": "makeCredentials"}),
            json!({"type": "status", "status": 1, "command": 300}),
            json!({"type": "status", "status": 1, "command": true}),
            json!({"type": "signature", "command": "getInfo"}),
            json!({"type": "signature", "extra": 1}),
            json!({"type": "flags"}),
            json!({"type": "flags", "up": "no"}),
            json!({"type": "flags", "up": true, "command": "u2fRegister"}),
            json!({"type": "delay"}),
            json!({"type": "delay", "ms": 0}),
            json!({"type": "delay", "ms": 600_001}),
            json!({"type": "counter", "rollback": 0}),
            json!({"type": "attestation"}),
            json!({"type": "attestation", "mode": "enterprise"}),
            json!({"type": "attestation", "mode": "none", "command": "getAssertion"}),
            json!({"type": "hid"}),
            json!({"type": "hid", "dropReports": 0}),
            json!({"type": "hid", "delayMs": 60_001}),
            json!({"type": "signature", "count": 0}),
            json!({"type": "signature", "count": -3}),
            json!({"type": "signature", "count": "1"}),
        ];
        for value in refused {
            let result = parse_faults(&value);
            assert!(
                result.as_ref().is_err_and(|why| !why.is_empty()),
                "{value} → {result:?}"
            );
        }
        for value in [
            json!({"faults": []}),
            json!({"faults": {}}),
            json!({"faults": [{"type": "signature"}], "type": "signature"}),
            json!({"faults": [{"type": "signature"}, {"type": "nope"}]}),
            json!({"faults": vec![json!({"type": "signature"}); MAX_FAULTS + 1]}),
        ] {
            assert!(parse_faults(&value).is_err(), "{value}");
        }
        // null members are absent.
        assert!(parse_faults(&json!({"type": "signature", "count": null})).is_ok());
        assert_eq!(
            parse_faults(&json!({"faults": [{"type": "signature"}, {"type": "uv"}]}))
                .map(|list| list.len()),
            Ok(2)
        );
        assert!(parse_fault_id("12").is_ok());
        assert!(parse_fault_id("-1").is_err() && parse_fault_id("x").is_err());
    }

    fn add(set: &mut FaultSet, value: Json) -> u64 {
        let spec = parse_fault(&value).unwrap_or_else(|why| unreachable!("{why}"));
        set.add(spec, None).unwrap_or_default()
    }

    const SUCCESS: Outcome = Outcome {
        presence: PresenceFaultsFired {
            presence: false,
            uv: false,
        },
        succeeded: true,
    };

    #[test]
    fn counts_go_down_and_used_up_faults_go() {
        let mut set = FaultSet::new();
        let once = add(&mut set, json!({"type": "signature", "count": 1}));
        let twice = add(&mut set, json!({"type": "delay", "ms": 5, "count": 2}));
        let forever = add(&mut set, json!({"type": "counter", "rollback": 3}));

        let plan = set.plan(GET_ASSERTION);
        assert!(plan.hooks.corrupt_signature);
        assert_eq!(plan.hooks.counter_rollback, 3);
        assert_eq!(plan.delay, Some(Duration::from_millis(5)));
        let fired = set.settle(&plan, SUCCESS);
        let ids: Vec<(u64, Option<u32>)> =
            fired.iter().map(|f| (f.fault_id, f.remaining)).collect();
        assert_eq!(
            ids,
            vec![(twice, Some(1)), (once, Some(0)), (forever, None)]
        );
        assert_eq!(set.faults.len(), 2, "the count-1 fault is gone");

        // getInfo: only the delay applies (signature and counter are for signing commands).
        let plan = set.plan(Command::Ctap(0x04));
        assert_eq!(plan.hooks, Hooks::default());
        assert_eq!(set.settle(&plan, SUCCESS).len(), 1);
        assert_eq!(set.faults.len(), 1);
        assert!(set.plan(Command::Ctap(0x04)).is_empty());

        // Until cleared: never runs out.
        for _ in 0..5 {
            let plan = set.plan(U2F_AUTHENTICATE);
            assert_eq!(set.settle(&plan, SUCCESS).len(), 1);
        }
        assert_eq!(
            set.list().first().map(|f| f["fired"].clone()),
            Some(json!(6))
        );
        assert_eq!(set.clear(), 1);
        assert!(set.is_empty());
    }

    #[test]
    fn conditional_faults_count_only_when_they_took_effect() {
        let mut set = FaultSet::new();
        let presence = add(
            &mut set,
            json!({"type": "presence", "outcome": "deny", "count": 1}),
        );
        let uv = add(&mut set, json!({"type": "uv", "count": 1}));
        let flags = add(&mut set, json!({"type": "flags", "up": false, "count": 1}));
        // A clientPIN request that asked nobody and a getAssertion that failed: nothing used.
        let plan = set.plan(Command::Ctap(0x06));
        assert_eq!(plan.presence.presence, Some(PresenceFault::Deny));
        assert!(plan.presence.uv_fails);
        assert!(set.settle(&plan, Outcome::default()).is_empty());
        let plan = set.plan(GET_ASSERTION);
        assert!(plan.hooks.flags.is_some());
        assert!(set.settle(&plan, Outcome::default()).is_empty());
        assert_eq!(set.faults.len(), 3);
        // The user was asked (and refused): the presence fault is used up, the rest stay.
        let plan = set.plan(GET_ASSERTION);
        let outcome = Outcome {
            presence: PresenceFaultsFired {
                presence: true,
                uv: false,
            },
            succeeded: false,
        };
        let fired: Vec<u64> = set
            .settle(&plan, outcome)
            .iter()
            .map(|f| f.fault_id)
            .collect();
        assert_eq!(fired, vec![presence]);
        let plan = set.plan(MAKE_CREDENTIAL);
        let fired: Vec<u64> = set
            .settle(
                &plan,
                Outcome {
                    presence: PresenceFaultsFired {
                        presence: false,
                        uv: true,
                    },
                    succeeded: true,
                },
            )
            .iter()
            .map(|f| f.fault_id)
            .collect();
        assert_eq!(fired, vec![uv, flags]);
        assert!(set.is_empty());
    }

    #[test]
    fn a_status_override_keeps_the_core_out_and_commands_filter() {
        let mut set = FaultSet::new();
        add(
            &mut set,
            json!({"type": "status", "command": "getAssertion", "status": 0x32}),
        );
        add(&mut set, json!({"type": "signature"}));
        add(
            &mut set,
            json!({"type": "hid", "dropReports": 1, "count": 1}),
        );
        let plan = set.plan(GET_ASSERTION);
        assert_eq!(plan.status, Some(0x32));
        assert!(!plan.hooks.corrupt_signature, "no core, no signature");
        assert_eq!(plan.drop_reports, 1);
        let plan = set.plan(MAKE_CREDENTIAL);
        assert_eq!(plan.status, None);
        assert!(plan.hooks.corrupt_signature);
        // Status faults without a command apply to CTAP2 commands only.
        let mut set = FaultSet::new();
        add(&mut set, json!({"type": "status", "status": 0x7F}));
        assert_eq!(set.plan(Command::Ctap(0x04)).status, Some(0x7F));
        assert_eq!(set.plan(U2F_AUTHENTICATE).status, None);
        // credentialManagement covers its preview command; the oldest fault of a kind wins.
        let mut set = FaultSet::new();
        add(
            &mut set,
            json!({"type": "status", "command": "credentialManagement", "status": 1}),
        );
        add(&mut set, json!({"type": "status", "status": 2}));
        assert_eq!(set.plan(Command::Ctap(0x41)).status, Some(1));
        assert_eq!(set.plan(Command::Ctap(0x0A)).status, Some(1));
        assert_eq!(set.plan(Command::Ctap(0x04)).status, Some(2));
        // Attestation: makeCredential by default, U2F_REGISTER when named.
        let mut set = FaultSet::new();
        let spec = parse_fault(&json!({"type": "attestation", "mode": "none"}));
        let id = spec
            .ok()
            .and_then(|spec| set.add(spec, Some(AttestationMode::None)));
        assert!(id.is_some());
        assert!(set.plan(MAKE_CREDENTIAL).attestation.is_some());
        assert!(set.plan(U2F_REGISTER).attestation.is_none());
    }

    #[test]
    fn removal_by_id_and_capacity() {
        let mut set = FaultSet::new();
        let first = add(&mut set, json!({"type": "signature"}));
        let second = add(&mut set, json!({"type": "uv"}));
        assert_ne!(first, second);
        assert_eq!(
            set.remove(first).map(|fault| fault["type"].clone()),
            Some(json!("signature"))
        );
        assert!(set.remove(first).is_none());
        assert_eq!(set.list().len(), 1);
        for _ in 1..MAX_FAULTS {
            add(&mut set, json!({"type": "signature"}));
        }
        let spec = parse_fault(&json!({"type": "signature"}));
        assert!(spec.is_ok_and(|spec| set.add(spec, None).is_none()));
        // IDs are never reused.
        set.clear();
        assert!(add(&mut set, json!({"type": "signature"})) > second);
    }

    #[test]
    fn command_names_round_trip() {
        for (name, command) in COMMAND_NAMES {
            assert_eq!(Command::from_json(&json!(name)), Ok(command));
            assert_eq!(command.name(), name);
        }
        assert_eq!(Command::Ctap(0x42).name(), "0x42");
        assert_eq!(
            Command::from_json(&json!("AUTHENTICATORGETASSERTION")),
            Ok(GET_ASSERTION)
        );
    }
}
