//! Runs a set of WebAuthn ceremonies through the client against in-process authenticators and
//! prints them as JSON, for a relying-party library we did not write to verify
//! (`tests/test_rp_verification.py`, py_webauthn):
//!
//! ```text
//! [{"name": …, "rp_id": …, "origin": …, "top_origin": …, "require_user_verification": …,
//!   "registration": {"challenge": b64url, "response": RegistrationResponseJSON},
//!   "authentication": {"challenge": b64url, "response": AuthenticationResponseJSON}}, …]
//! ```
//!
//! Deterministic: fixed seeds for the authenticators, the client and the challenges.

use std::process::ExitCode;

use authenticator_core::platform::BuiltInUv;
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config};
use fidelio_webauthn::{AbortSignal, Caller, Client, ClientConfig, KnownPin, WebAuthnError, b64};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One ceremony to run.
struct Case {
    name: &'static str,
    config: Config,
    built_in_uv: bool,
    pin: Option<&'static str>,
    origin: &'static str,
    top_origin: Option<&'static str>,
    rp_id: Option<&'static str>,
    /// Members merged into the creation options.
    create: Value,
    /// Members merged into the request options.
    get: Value,
    /// Whether get() names the credential in allowCredentials.
    allow_list: bool,
    require_user_verification: bool,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            config: Config::security_key(),
            built_in_uv: false,
            pin: None,
            origin: "https://example.com",
            top_origin: None,
            rp_id: Some("example.com"),
            create: json!({}),
            get: json!({}),
            allow_list: true,
            require_user_verification: false,
        }
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            create: json!({"attestation": "direct"}),
            ..Case::new("es256-packed-self")
        },
        Case {
            create: json!({
                "pubKeyCredParams": [{"type": "public-key", "alg": -8}],
                "authenticatorSelection": {"residentKey": "required"},
            }),
            allow_list: false,
            ..Case::new("eddsa-discoverable-none")
        },
        Case {
            pin: Some("4321"),
            create: json!({
                "attestation": "direct",
                "authenticatorSelection": {"userVerification": "required", "residentKey": "preferred"},
            }),
            get: json!({"userVerification": "required"}),
            allow_list: false,
            require_user_verification: true,
            ..Case::new("pin-user-verification")
        },
        Case {
            origin: "https://login.example.com:8443",
            ..Case::new("subdomain-origin")
        },
        Case {
            origin: "http://localhost:8080",
            rp_id: None,
            ..Case::new("localhost")
        },
        Case {
            origin: "https://auth.example.com",
            top_origin: Some("https://shop.example"),
            rp_id: Some("auth.example.com"),
            ..Case::new("cross-origin-iframe")
        },
        Case {
            config: Config::synced_passkey(),
            create: json!({"authenticatorSelection": {"residentKey": "required"}}),
            allow_list: false,
            ..Case::new("synced-passkey")
        },
        Case {
            config: Config::platform(),
            built_in_uv: true,
            create: json!({
                "attestation": "direct",
                "authenticatorSelection": {"authenticatorAttachment": "platform", "userVerification": "required", "residentKey": "required"},
            }),
            get: json!({"userVerification": "required"}),
            allow_list: false,
            require_user_verification: true,
            ..Case::new("platform-built-in-uv")
        },
        Case {
            pin: Some("4321"),
            create: json!({
                "attestation": "direct",
                "authenticatorSelection": {"residentKey": "required"},
                "extensions": {
                    "credProps": true,
                    "credentialProtectionPolicy": "userVerificationOptionalWithCredentialIDList",
                    "credBlob": "YmxvYg",
                    "minPinLength": true,
                    "prf": {"eval": {"first": "AQID"}},
                    "largeBlob": {"support": "preferred"},
                },
            }),
            get: json!({"extensions": {"getCredBlob": true, "prf": {"eval": {"first": "AQID"}}}}),
            require_user_verification: true,
            ..Case::new("extensions")
        },
    ]
}

fn merge(target: &mut Value, extra: &Value) {
    if let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
}

fn run(case: &Case, seed: u64) -> Result<Value, WebAuthnError> {
    let mut config = case.config.clone();
    config.reset_window_ms = None;
    let mut platform = TestPlatform::new(seed);
    if case.built_in_uv {
        platform.presence.built_in_uv = BuiltInUv::Configured;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed.wrapping_add(1000));
    let mut client = Client::new(
        Authenticator::new(platform, config),
        ChaCha20Rng::seed_from_u64(seed.wrapping_add(2000)),
        ClientConfig::default(),
    );
    if let Some(pin) = case.pin {
        fidelio_webauthn::block_on(fidelio_webauthn::pin::set_pin(
            client.ctap_mut(),
            fidelio_webauthn::pin::Protocol::Two,
            pin,
            &mut rng,
        ))
        .map_err(|e| WebAuthnError::not_allowed(e.to_string()))?;
    }
    let mut caller = Caller::new(case.origin)?;
    if let Some(top) = case.top_origin {
        caller = caller.cross_origin(top)?;
    }
    // A user who types the PIN (if any) once per ceremony.
    let user = || KnownPin::new(case.pin.unwrap_or(""));

    let mut challenge = [0u8; 32];
    rng.fill_bytes(&mut challenge);
    let mut options = json!({
        "rp": {"name": "Example"},
        "user": {"id": b64(case.name.as_bytes()), "name": "alice@example.com", "displayName": "Alice"},
        "challenge": b64(&challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    });
    if let (Some(rp_id), Some(rp)) = (
        case.rp_id,
        options.get_mut("rp").and_then(Value::as_object_mut),
    ) {
        rp.insert("id".into(), json!(rp_id));
    }
    merge(&mut options, &case.create);
    let registration =
        client.create_blocking(&caller, &options, &mut user(), &AbortSignal::new())?;

    let mut get_challenge = [0u8; 32];
    rng.fill_bytes(&mut get_challenge);
    let mut request = json!({"challenge": b64(&get_challenge)});
    if let (Some(rp_id), Some(object)) = (case.rp_id, request.as_object_mut()) {
        object.insert("rpId".into(), json!(rp_id));
    }
    if case.allow_list
        && let Some(object) = request.as_object_mut()
    {
        object.insert(
            "allowCredentials".into(),
            json!([{"type": "public-key", "id": b64(&registration.credential_id)}]),
        );
    }
    merge(&mut request, &case.get);
    let assertion = client.get_blocking(&caller, &request, &mut user(), &AbortSignal::new())?;

    let rp_id = case.rp_id.map_or_else(
        || {
            caller
                .origin()
                .tuple()
                .map(|t| t.host().to_string())
                .unwrap_or_default()
        },
        str::to_owned,
    );
    Ok(json!({
        "name": case.name,
        "rp_id": rp_id,
        "origin": case.origin,
        "top_origin": case.top_origin,
        "require_user_verification": case.require_user_verification,
        "registration": {"challenge": b64(&challenge), "response": registration.to_json()},
        "authentication": {"challenge": b64(&get_challenge), "response": assertion.to_json()},
    }))
}

fn main() -> ExitCode {
    let mut out = Vec::new();
    for (index, case) in cases().iter().enumerate() {
        match run(case, u64::try_from(index).unwrap_or(0) + 1) {
            Ok(value) => out.push(value),
            Err(error) => {
                eprintln!("{}: {error}", case.name);
                return ExitCode::FAILURE;
            }
        }
    }
    match serde_json::to_string_pretty(&out) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
