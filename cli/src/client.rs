//! `fidelio client`: talk to an authenticator over CTAPHID — a `fidelio serve` daemon (or
//! another simulator) over UDP, or a USB security key through hidraw — as a WebAuthn client
//! would: getInfo, registration, authentication, reset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use authenticator_core::StatusCode;
use authenticator_core::cbor::{self, Value};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use fidelio_client::{
    CtapHidClient, DeviceAddress, DeviceInfo, Keepalive, KeepaliveAction, Transport,
};
use rand_core::Rng;
use serde_json::{Map, Value as Json, json};
use sha2::Digest;

use crate::ceremony::{self, CtapError, Party, b64};
use crate::demo::Alg;

/// Where `fidelio serve` listens by default.
pub const DEFAULT_DEVICE: &str = "udp:127.0.0.1:8111";

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The authenticator: udp:HOST:PORT (a `fidelio serve` daemon or another CTAPHID
    /// simulator) or hid:PATH (a USB key's hidraw node; needs a build with `--features hidapi`).
    #[arg(long, global = true, env = "FIDELIO_DEVICE", default_value = DEFAULT_DEVICE)]
    device: DeviceAddress,
    /// Print one JSON object on standard output instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds a request may take, waiting for a touch included.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Show what the authenticator is and can do (CTAPHID INIT and authenticatorGetInfo).
    Info,
    /// Register a credential, as navigator.credentials.create() does.
    Register(RegisterArgs),
    /// Sign in, as navigator.credentials.get() does, and check the signature when the
    /// credential's public key is given.
    Login(LoginArgs),
    /// Reset the authenticator: DELETES EVERY CREDENTIAL on it (authenticatorReset).
    Reset {
        /// Confirm: every credential on the authenticator is deleted, for good.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
struct RegisterArgs {
    /// Relying party ID.
    #[arg(long)]
    rp_id: String,
    /// Origin of the page; defaults to https://<rp-id>.
    #[arg(long)]
    origin: Option<String>,
    /// Account name (the user handle is derived from it, so registering the same name again
    /// replaces a discoverable credential).
    #[arg(long, default_value = "alice@example.com")]
    user: String,
    /// Make a discoverable (resident) credential.
    #[arg(long)]
    resident: bool,
    /// Algorithm the RP prefers (the other one is offered second).
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// Relying party ID.
    #[arg(long)]
    rp_id: String,
    /// Origin of the page; defaults to https://<rp-id>.
    #[arg(long)]
    origin: Option<String>,
    /// The credential to sign in with (base64url, as `register` prints it). Empty or absent:
    /// let the authenticator discover a resident credential for the RP.
    #[arg(long)]
    credential_id: Option<String>,
    /// The credential's public key (base64url COSE_Key, as `register` prints it): the
    /// signature is checked with it.
    #[arg(long)]
    public_key: Option<String>,
}

/// Runs `fidelio client …`.
pub fn run(args: &ClientArgs) -> Result<()> {
    match &args.command {
        ClientCommand::Info => info(args),
        ClientCommand::Register(register_args) => register(args, register_args),
        ClientCommand::Login(login_args) => login(args, login_args),
        ClientCommand::Reset { yes } => reset(args, *yes),
    }
}

/// An initialised CTAPHID client, telling the user on stderr when the device waits for a touch.
fn connect(args: &ClientArgs) -> Result<(CtapHidClient<Box<dyn Transport>>, DeviceInfo)> {
    let transport = args.device.open()?;
    let mut client = CtapHidClient::new(transport);
    client.set_timeout(Duration::from_secs(args.timeout));
    let told = Arc::new(AtomicBool::new(false));
    client.on_keepalive(move |status| {
        if status == Keepalive::UpNeeded && !told.swap(true, Ordering::Relaxed) {
            eprintln!("fidelio: touch the authenticator (or answer its prompt) to go on…");
        }
        KeepaliveAction::Continue
    });
    let info = client
        .init()
        .with_context(|| format!("cannot open a CTAPHID channel to {}", args.device))?;
    if !info.cbor() {
        bail!("{} does not speak CTAP2 (no CBOR capability)", args.device);
    }
    Ok((client, info))
}

fn print_json(value: &Json) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// info

/// The members of authenticatorGetInfo (CTAP 2.1 §6.4 and CTAP 2.2): key, JSON name, label.
const GET_INFO_MEMBERS: &[(u64, &str, &str)] = &[
    (0x01, "versions", "versions"),
    (0x02, "extensions", "extensions"),
    (0x03, "aaguid", "AAGUID"),
    (0x04, "options", "options"),
    (0x05, "max_msg_size", "max message size"),
    (0x06, "pin_uv_auth_protocols", "PIN/UV auth protocols"),
    (
        0x07,
        "max_credential_count_in_list",
        "max credentials in a list",
    ),
    (0x08, "max_credential_id_length", "max credential ID length"),
    (0x09, "transports", "transports"),
    (0x0A, "algorithms", "algorithms"),
    (
        0x0B,
        "max_serialized_large_blob_array",
        "max large-blob array",
    ),
    (0x0C, "force_pin_change", "force PIN change"),
    (0x0D, "min_pin_length", "min PIN length"),
    (0x0E, "firmware_version", "firmware version"),
    (0x0F, "max_cred_blob_length", "max credBlob length"),
    (
        0x10,
        "max_rp_ids_for_set_min_pin_length",
        "max RP IDs for setMinPINLength",
    ),
    (
        0x11,
        "preferred_platform_uv_attempts",
        "preferred platform UV attempts",
    ),
    (0x12, "uv_modality", "UV modality"),
    (0x13, "certifications", "certifications"),
    (
        0x14,
        "remaining_discoverable_credentials",
        "remaining discoverable credentials",
    ),
    (
        0x15,
        "vendor_prototype_config_commands",
        "vendor prototype config commands",
    ),
];

fn info(args: &ClientArgs) -> Result<()> {
    let (mut client, hid) = connect(args)?;
    let response = ceremony::command(&mut client, authenticator_core::command::GET_INFO, None)
        .context("authenticatorGetInfo")?
        .ok_or_else(|| anyhow!("authenticatorGetInfo answered no body"))?;
    let Value::Map(entries) = &response else {
        bail!("authenticatorGetInfo did not answer a map")
    };

    let mut members = Map::new();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut unknown = Map::new();
    for (key, value) in entries {
        let number = cbor::as_int(key).ok().and_then(|k| u64::try_from(k).ok());
        let known = number.and_then(|n| GET_INFO_MEMBERS.iter().find(|(k, _, _)| *k == n));
        match known {
            Some((key, name, label)) => {
                let (json, text) = describe_member(*key, value);
                members.insert((*name).to_owned(), json);
                lines.push(((*label).to_owned(), text));
            }
            None => {
                let name = number.map_or_else(|| format!("{key:?}"), |n| format!("0x{n:02X}"));
                unknown.insert(name.clone(), cbor_to_json(value));
                lines.push((format!("member {name}"), cbor_to_json(value).to_string()));
            }
        }
    }

    let ctaphid = json!({
        "channel": format!("{:08x}", hid.channel),
        "protocol_version": hid.protocol_version,
        "device_version": version(&hid),
        "capabilities": hid.capability_names(),
    });
    if args.json {
        let mut output = Map::new();
        output.insert("device".into(), Json::String(args.device.to_string()));
        output.insert("ctaphid".into(), ctaphid);
        output.extend(members);
        if !unknown.is_empty() {
            output.insert("other".into(), Json::Object(unknown));
        }
        return print_json(&Json::Object(output));
    }
    println!("Authenticator at {}", args.device);
    let ctaphid_line = format!(
        "protocol {}, device version {}, capabilities {}, channel {:08x}",
        hid.protocol_version,
        version(&hid),
        hid.capability_names().join(" "),
        hid.channel
    );
    let width = lines
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!("  {:width$}  {ctaphid_line}", "CTAPHID");
    for (label, text) in lines {
        println!("  {label:width$}  {text}");
    }
    Ok(())
}

fn version(info: &DeviceInfo) -> String {
    let (major, minor, build) = info.device_version;
    format!("{major}.{minor}.{build}")
}

/// One getInfo member as JSON and as text.
fn describe_member(key: u64, value: &Value) -> (Json, String) {
    let json = cbor_to_json(value);
    match key {
        0x03 => match cbor::as_bytes(value)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        {
            Some(aaguid) => {
                let uuid = uuid(&aaguid);
                (Json::String(uuid.clone()), uuid)
            }
            None => (json.clone(), json.to_string()),
        },
        0x04 => {
            let text = match value {
                Value::Map(options) => options
                    .iter()
                    .map(|(name, on)| {
                        let name = cbor::as_text(name).unwrap_or("?");
                        match on {
                            Value::Bool(on) => format!("{name}={on}"),
                            other => format!("{name}={}", cbor_to_json(other)),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => json.to_string(),
            };
            (json, text)
        }
        0x05 | 0x08 | 0x0B | 0x0F => (json.clone(), format!("{json} bytes")),
        0x0A => {
            let algorithms: Vec<Json> = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        let mut entry = cbor_to_json(item);
                        let alg = entry.get("alg").and_then(Json::as_i64);
                        if let (Some(object), Some(alg)) = (entry.as_object_mut(), alg) {
                            object.insert("name".into(), Json::String(alg_name(alg).to_owned()));
                        }
                        entry
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let text = algorithms
                .iter()
                .map(|entry| {
                    let alg = entry.get("alg").and_then(Json::as_i64);
                    match alg {
                        Some(alg) => format!("{} ({alg})", alg_name(alg)),
                        None => entry.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            (Json::Array(algorithms), text)
        }
        _ => {
            let text = match &json {
                Json::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (json, text)
        }
    }
}

/// The AAGUID as a UUID string (8-4-4-4-12 hex digits).
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

fn alg_name(alg: i64) -> &'static str {
    match alg {
        -7 => "ES256",
        -8 => "EdDSA",
        -35 => "ES384",
        -36 => "ES512",
        -257 => "RS256",
        -47 => "ES256K",
        _ => "unknown",
    }
}

/// CBOR as JSON: byte strings as hex, map keys as strings.
fn cbor_to_json(value: &Value) -> Json {
    match value {
        Value::Integer(n) => {
            let n = i128::from(*n);
            i64::try_from(n)
                .map(Json::from)
                .or_else(|_| u64::try_from(n).map(Json::from))
                .unwrap_or_else(|_| Json::String(n.to_string()))
        }
        Value::Bytes(bytes) => Json::String(hex::encode(bytes)),
        Value::Float(f) => json!(f),
        Value::Text(text) => Json::String(text.clone()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::Tag(_, inner) => cbor_to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(cbor_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| {
                    let key = match cbor_to_json(key) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, cbor_to_json(value))
                })
                .collect(),
        ),
        _ => Json::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// register and login

fn party(rp_id: &str, origin: Option<&str>, user: &str) -> Party {
    Party {
        rp_id: rp_id.to_owned(),
        origin: origin.map_or_else(|| format!("https://{rp_id}"), str::to_owned),
        user_id: sha256(user.as_bytes())
            .get(..16)
            .unwrap_or_default()
            .to_vec(),
        user_name: user.to_owned(),
    }
}

fn challenge() -> [u8; 32] {
    let mut challenge = [0u8; 32];
    fidelio_host::OsRng.fill_bytes(&mut challenge);
    challenge
}

fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

fn flag_names(flags: u8) -> Vec<&'static str> {
    use authenticator_core::authenticator::flags as f;
    [
        (f::UP, "UP"),
        (f::UV, "UV"),
        (f::BE, "BE"),
        (f::BS, "BS"),
        (f::AT, "AT"),
        (f::ED, "ED"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

fn decode_b64url(what: &str, text: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|e| anyhow!("{what} is not base64url: {e}"))
}

/// Explains the CTAP errors a user can do something about.
fn hint(error: anyhow::Error, rp_id: &str) -> anyhow::Error {
    let Some(code) = error.downcast_ref::<CtapError>().and_then(|e| e.code()) else {
        return error;
    };
    let advice = match code {
        StatusCode::NoCredentials => format!(
            "no credential for {rp_id} on this authenticator (register one first; without \
             --credential-id only discoverable credentials, made with --resident, are found)"
        ),
        StatusCode::OperationDenied => {
            "the user (or the daemon's --presence policy) refused".into()
        }
        StatusCode::UserActionTimeout => "nobody touched the authenticator in time".into(),
        StatusCode::KeepaliveCancel => "the request was cancelled".into(),
        StatusCode::UnsupportedAlgorithm => "the authenticator supports neither algorithm".into(),
        _ => return error,
    };
    error.context(advice)
}

/// Checks a packed self-attestation (signed with the credential's own key). `None`: not this
/// kind of attestation (none, or with a certificate chain), so not checked here.
fn verify_self_attestation(
    registration: &ceremony::Registration,
    public_key: &Value,
) -> Result<Option<bool>> {
    if registration.format != "packed" {
        return Ok(None);
    }
    let Value::Map(statement) = &registration.statement else {
        bail!("attStmt is not a map")
    };
    let member = |name: &str| {
        statement
            .iter()
            .find(|(key, _)| cbor::as_text(key).ok() == Some(name))
            .map(|(_, value)| value)
    };
    if member("x5c").is_some() {
        return Ok(None);
    }
    let signature = member("sig")
        .and_then(|sig| cbor::as_bytes(sig).ok())
        .ok_or_else(|| anyhow!("packed attStmt without sig"))?;
    let mut signed = registration.auth_data.clone();
    signed.extend_from_slice(&sha256(&registration.client_data_json));
    ceremony::verify_signature(public_key, &signed, signature)
        .context("the self-attestation signature does not verify")?;
    Ok(Some(true))
}

fn register(args: &ClientArgs, register: &RegisterArgs) -> Result<()> {
    let (mut client, _) = connect(args)?;
    let party = party(&register.rp_id, register.origin.as_deref(), &register.user);
    let algorithms = match register.alg {
        Alg::Es256 => [-7, -8],
        Alg::Eddsa => [-8, -7],
    };
    let challenge = challenge();
    let registration = ceremony::register(
        &mut client,
        &party,
        &challenge,
        &algorithms,
        register.resident,
    )
    .map_err(|e| hint(e, &party.rp_id))?;
    let parsed = ceremony::ParsedAuthData::parse(&registration.auth_data)?;
    let public_key = parsed
        .public_key
        .clone()
        .ok_or_else(|| anyhow!("the registration carried no public key"))?;
    let attestation_verified = verify_self_attestation(&registration, &public_key)?;
    let public_key_b64 = b64(&cbor::to_vec(&public_key));
    let credential_b64 = b64(&registration.credential_id);

    if args.json {
        return print_json(&json!({
            "device": args.device.to_string(),
            "rp": {"id": party.rp_id, "origin": party.origin},
            "user": {"name": party.user_name, "id": b64(&party.user_id)},
            "challenge": b64(&challenge),
            "credential_id": credential_b64,
            "resident": register.resident,
            "algorithm": registration.algorithm,
            "algorithm_name": alg_name(registration.algorithm),
            "format": registration.format,
            "attestation_verified": attestation_verified,
            "public_key": public_key_b64,
            "flags": flag_names(parsed.flags),
            "sign_count": parsed.sign_count,
            "response": registration.json,
        }));
    }
    println!(
        "Registered a credential for {} at {} ({})",
        party.user_name, party.rp_id, party.origin
    );
    println!("  device        {}", args.device);
    println!(
        "  credential    {credential_b64} ({} bytes, {})",
        registration.credential_id.len(),
        if register.resident {
            "discoverable"
        } else {
            "non-discoverable"
        }
    );
    println!(
        "  algorithm     {} (COSE {})",
        alg_name(registration.algorithm),
        registration.algorithm
    );
    let attestation = match attestation_verified {
        Some(_) => "self, signature verified",
        None if registration.format == "none" => "no statement",
        None => "certificate chain, not checked here",
    };
    println!("  attestation   {} ({attestation})", registration.format);
    println!(
        "  flags         {}  counter {}",
        flag_names(parsed.flags).join(" "),
        parsed.sign_count
    );
    println!("  public key    {public_key_b64}");
    println!();
    println!("Sign in with it:");
    let credential = if register.resident {
        String::new()
    } else {
        format!(" --credential-id {credential_b64}")
    };
    println!(
        "  fidelio client login --device {} --rp-id {}{credential} --public-key {public_key_b64}",
        args.device, party.rp_id
    );
    Ok(())
}

fn login(args: &ClientArgs, login: &LoginArgs) -> Result<()> {
    let allow_list = match login.credential_id.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(id) => vec![decode_b64url("--credential-id", id)?],
    };
    let public_key = match &login.public_key {
        Some(text) => {
            let bytes = decode_b64url("--public-key", text)?;
            Some(cbor::decode(&bytes).map_err(|e| anyhow!("--public-key is not a COSE key: {e}"))?)
        }
        None => None,
    };
    let (mut client, _) = connect(args)?;
    let party = party(&login.rp_id, login.origin.as_deref(), "");
    let challenge = challenge();
    let assertion = ceremony::authenticate(&mut client, &party, &challenge, &allow_list)
        .map_err(|e| hint(e, &party.rp_id))?;
    let parsed = ceremony::ParsedAuthData::parse(&assertion.auth_data)?;
    let rp_id_hash_matches =
        assertion.auth_data.get(..32) == Some(&sha256(party.rp_id.as_bytes())[..]);
    if !rp_id_hash_matches {
        bail!("the assertion is for another RP ID (rpIdHash differs)");
    }
    let signature_verified = match &public_key {
        Some(key) => {
            let mut signed = assertion.auth_data.clone();
            signed.extend_from_slice(&sha256(&assertion.client_data_json));
            ceremony::verify_signature(key, &signed, &assertion.signature)
                .context("the assertion signature does not verify with --public-key")?;
            Some(true)
        }
        None => None,
    };
    let credential_b64 = b64(&assertion.credential_id);
    let user_handle = assertion.user_handle.as_deref().map(b64);

    if args.json {
        return print_json(&json!({
            "device": args.device.to_string(),
            "rp": {"id": party.rp_id, "origin": party.origin},
            "challenge": b64(&challenge),
            "discoverable": allow_list.is_empty(),
            "credential_id": credential_b64,
            "user_handle": user_handle,
            "flags": flag_names(parsed.flags),
            "sign_count": parsed.sign_count,
            "signature_verified": signature_verified,
            "response": assertion.json,
        }));
    }
    println!(
        "Signed in at {} ({}){}",
        party.rp_id,
        party.origin,
        if allow_list.is_empty() {
            " with a discovered credential"
        } else {
            ""
        }
    );
    println!("  device        {}", args.device);
    println!("  credential    {credential_b64}");
    if let Some(handle) = &user_handle {
        println!("  user handle   {handle}");
    }
    println!(
        "  flags         {}  counter {}",
        flag_names(parsed.flags).join(" "),
        parsed.sign_count
    );
    match signature_verified {
        Some(_) => println!("  signature     verified with the given public key"),
        None => println!(
            "  signature     not checked (pass --public-key, printed by `register`, to check it)"
        ),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// reset

fn reset(args: &ClientArgs, yes: bool) -> Result<()> {
    if !yes {
        bail!(
            "authenticatorReset deletes every credential on the authenticator at {} and cannot \
             be undone; run again with --yes to go ahead",
            args.device
        );
    }
    eprintln!(
        "fidelio: warning: resetting the authenticator at {}: every credential on it is deleted",
        args.device
    );
    let (mut client, _) = connect(args)?;
    let outcome = ceremony::command(&mut client, authenticator_core::command::RESET, None);
    if let Err(error) = outcome {
        let advice = match error.downcast_ref::<CtapError>().and_then(|e| e.code()) {
            Some(StatusCode::NotAllowed) => Some(
                "authenticators accept a reset only within 10 s of power-up: replug the key (or \
                 restart `fidelio serve`, or start it with --reset-anytime) and reset at once",
            ),
            Some(StatusCode::OperationDenied) => Some("the user refused the reset"),
            Some(StatusCode::UserActionTimeout) => Some("nobody touched the authenticator in time"),
            _ => None,
        };
        let error = error.context("authenticatorReset");
        return Err(match advice {
            Some(advice) => error.context(advice),
            None => error,
        });
    }
    if args.json {
        return print_json(&json!({"device": args.device.to_string(), "reset": true}));
    }
    println!("Reset {}: every credential is gone.", args.device);
    Ok(())
}
