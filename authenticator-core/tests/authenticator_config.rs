//! authenticatorConfig (0x0D): enableEnterpriseAttestation, toggleAlwaysUv and
//! setMinPINLength with every status code CTAP 2.1 §6.11 gives them, what they change in
//! getInfo, makeCredential and getAssertion, and the minPinLength extension (§12.4).
//! pinUvAuthTokens come from the test-side PIN/UV auth protocols (`common/pin.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::{self, Value};
use authenticator_core::platform::BuiltInUv;
use authenticator_core::{AttestationMode, BatchAttestation, Config, StatusCode};
use common::pin::*;
use common::*;

const CONFIG: u8 = 0x0D;
const ENABLE_EA: u64 = 0x01;
const TOGGLE_ALWAYS_UV: u64 = 0x02;
const SET_MIN_PIN_LENGTH: u64 = 0x03;
const VENDOR_PROTOTYPE: u64 = 0xFF;
const ES256: i64 = -7;
const PIN: &[u8] = b"1234";
const RP: &str = "example.com";

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

fn config_command(device: &mut Device, params: Params) -> (u8, Option<Value>) {
    send(device, &request(CONFIG, params))
}

/// `{1: subCommand, [2: subCommandParams]}`, no pinUvAuthParam.
fn unauthenticated(sub: u64, params: Option<Value>) -> Params {
    let mut members = vec![entry(1, uint(sub))];
    if let Some(params) = params {
        members.push(entry(2, params));
    }
    members
}

/// `{1: subCommand, [2: subCommandParams], 3: protocol, 4: authenticate(token, 32 × 0xff ‖
/// 0x0d ‖ subCommand ‖ subCommandParams)}`.
fn authed(protocol: u8, token: &[u8], sub: u64, params: Option<Value>) -> Params {
    let mut message = vec![0xff; 32];
    message.extend([0x0d, u8::try_from(sub).unwrap()]);
    if let Some(params) = &params {
        message.extend(cbor::to_vec(params));
    }
    let mut members = unauthenticated(sub, params);
    members.push(entry(3, uint(protocol.into())));
    members.push(entry(4, bytes(&authenticate(protocol, token, &message))));
    members
}

fn info(device: &mut Device) -> Value {
    send(device, &[0x04]).1.unwrap()
}

fn option(device: &mut Device, name: &str) -> Option<Value> {
    text_member(member(&info(device), 4).unwrap(), name).cloned()
}

fn pin_device() -> Device {
    let mut device = emulator();
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    device
}

fn acfg(device: &mut Device, protocol: u8) -> Vec<u8> {
    token(device, protocol, PIN, Some(ACFG), None).unwrap()
}

fn min_pin_params(entries: Vec<(Value, Value)>) -> Option<Value> {
    Some(Value::Map(entries))
}

fn rk(params: Params) -> Params {
    with(params, 7, tmap(&[("rk", Value::Bool(true))]))
}

// ------------------------------------------------------------------ getInfo and framing

#[test]
fn get_info_reports_the_config_options() {
    let mut device = emulator();
    for (name, value) in [
        ("authnrCfg", true),
        ("setMinPINLength", true),
        ("alwaysUv", false),
        ("makeCredUvNotRqd", true),
    ] {
        assert_eq!(
            option(&mut device, name),
            Some(Value::Bool(value)),
            "{name}"
        );
    }
    // No enterprise attestation on this device, and acfg needs a PIN (no uvAcfg).
    assert_eq!(option(&mut device, "ep"), None);
    assert_eq!(option(&mut device, "uvAcfg"), None);
    let info = info(&mut device);
    assert_eq!(
        member(&info, 0x10),
        Some(&int(8)),
        "maxRPIDsForSetMinPINLength"
    );
    assert_eq!(
        member(&info, 0x15),
        None,
        "no vendorPrototypeConfigCommands"
    );
    let Some(Value::Array(extensions)) = member(&info, 2) else {
        panic!("extensions");
    };
    assert!(extensions.contains(&text("minPinLength")));
}

#[test]
fn malformed_config_requests() {
    let mut device = emulator();
    assert_eq!(
        send(&mut device, &[CONFIG]).0,
        status(StatusCode::MissingParameter)
    );
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        (
            "no subCommand",
            vec![entry(2, Value::Map(vec![]))],
            StatusCode::MissingParameter,
        ),
        (
            "subCommand text",
            vec![entry(1, text("2"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "subCommand negative",
            vec![entry(1, int(-2))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "subCommandParams not a map",
            vec![
                entry(1, uint(TOGGLE_ALWAYS_UV)),
                entry(2, Value::Array(vec![])),
            ],
            StatusCode::CborUnexpectedType,
        ),
        (
            "pinUvAuthProtocol text",
            vec![entry(1, uint(TOGGLE_ALWAYS_UV)), entry(3, text("2"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "pinUvAuthParam text",
            vec![entry(1, uint(TOGGLE_ALWAYS_UV)), entry(4, text("x"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "vendorPrototype",
            vec![entry(1, uint(VENDOR_PROTOTYPE))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "subCommand 0x04",
            vec![entry(1, uint(4))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "subCommand 0x00",
            vec![entry(1, uint(0))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "subCommand 0x102",
            vec![entry(1, uint(0x102))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "newMinPINLength text",
            unauthenticated(
                SET_MIN_PIN_LENGTH,
                min_pin_params(vec![entry(1, text("6"))]),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "minPinLengthRPIDs not an array",
            unauthenticated(SET_MIN_PIN_LENGTH, min_pin_params(vec![entry(2, text(RP))])),
            StatusCode::CborUnexpectedType,
        ),
        (
            "minPinLengthRPIDs with bytes",
            unauthenticated(
                SET_MIN_PIN_LENGTH,
                min_pin_params(vec![entry(2, Value::Array(vec![bytes(b"x")]))]),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "forceChangePin not a boolean",
            unauthenticated(SET_MIN_PIN_LENGTH, min_pin_params(vec![entry(3, int(1))])),
            StatusCode::CborUnexpectedType,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            config_command(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // None of that changed anything.
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(false)));
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(4)));
}

// ------------------------------------------------------------------ toggleAlwaysUv

#[test]
fn toggle_always_uv_without_a_pin() {
    let mut device = emulator();
    // Some credentials first, made while alwaysUv is off.
    let registered = register(&mut device, make_credential_params(RP, b"alice", &[ES256]));
    let (code, body) = config_command(&mut device, unauthenticated(TOGGLE_ALWAYS_UV, None));
    assert_eq!((code, body), (0, None));
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    assert_eq!(
        option(&mut device, "makeCredUvNotRqd"),
        Some(Value::Bool(false))
    );

    // Now every ceremony with presence needs UV, which this device cannot do yet.
    assert_eq!(
        send(
            &mut device,
            &request(1, make_credential_params(RP, b"bob", &[ES256]))
        )
        .0,
        status(StatusCode::PinNotSet)
    );
    let allow = get_assertion_params(RP, &[&registered.credential_id]);
    assert_eq!(
        send(&mut device, &request(2, allow.clone())).0,
        status(StatusCode::PinNotSet)
    );
    // A silent assertion needs none.
    let silent = with(allow, 5, tmap(&[("up", Value::Bool(false))]));
    assert_eq!(send(&mut device, &request(2, silent)).0, 0);

    // alwaysUv on: turning it off needs a token, so a PIN first.
    assert_eq!(
        config_command(&mut device, unauthenticated(TOGGLE_ALWAYS_UV, None)).0,
        status(StatusCode::PuatRequired)
    );
    // It survives a power cycle.
    device.power_cycle();
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    assert_eq!(set_pin(&mut device, 1, PIN), 0);
    let token = acfg(&mut device, 1);
    assert_eq!(
        config_command(&mut device, authed(1, &token, TOGGLE_ALWAYS_UV, None)).0,
        0
    );
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(false)));
    assert_eq!(
        option(&mut device, "makeCredUvNotRqd"),
        Some(Value::Bool(true))
    );
}

#[test]
fn always_uv_with_a_pin_asks_for_tokens_and_takes_them() {
    let mut device = pin_device();
    let token = acfg(&mut device, 2);
    assert_eq!(
        config_command(&mut device, authed(2, &token, TOGGLE_ALWAYS_UV, None)).0,
        0
    );
    // A non-discoverable credential now needs a token too (makeCredUvNotRqd is off).
    assert_eq!(
        send(
            &mut device,
            &request(1, make_credential_params(RP, b"bob", &[ES256]))
        )
        .0,
        status(StatusCode::PuatRequired)
    );
    let mc = token_for(&mut device, MC | GA);
    let params = with(
        with(
            make_credential_params(RP, b"bob", &[ES256]),
            8,
            bytes(&authenticate(2, &mc, &client_data_hash(1))),
        ),
        9,
        uint(2),
    );
    let registered = register(&mut device, params);
    assert_ne!(registered.auth_data.flags & 0x04, 0, "UV");
    assert_eq!(
        send(
            &mut device,
            &request(2, get_assertion_params(RP, &[&registered.credential_id]))
        )
        .0,
        status(StatusCode::PuatRequired)
    );
}

fn token_for(device: &mut Device, permissions: u64) -> Vec<u8> {
    token(device, 2, PIN, Some(permissions), Some(RP)).unwrap()
}

#[test]
fn config_needs_a_token_with_acfg_once_a_pin_is_set() {
    let mut device = pin_device();
    let token = acfg(&mut device, 2);
    let mut no_param = authed(2, &token, TOGGLE_ALWAYS_UV, None);
    no_param.retain(|(k, _)| *k != int(4));
    let mut no_protocol = authed(2, &token, TOGGLE_ALWAYS_UV, None);
    no_protocol.retain(|(k, _)| *k != int(3));
    let params = min_pin_params(vec![entry(1, uint(6))]);
    // The MAC must cover subCommandParams: one over the subCommand alone fails.
    let mut params_not_covered = authed(2, &token, SET_MIN_PIN_LENGTH, None);
    params_not_covered.push(entry(2, params.clone().unwrap()));
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        ("no pinUvAuthParam", no_param, StatusCode::PuatRequired),
        (
            "no pinUvAuthProtocol",
            no_protocol,
            StatusCode::MissingParameter,
        ),
        (
            "protocol 3",
            with(authed(2, &token, TOGGLE_ALWAYS_UV, None), 3, uint(3)),
            StatusCode::InvalidParameter,
        ),
        (
            "MAC for another subcommand",
            with(
                authed(2, &token, ENABLE_EA, None),
                1,
                uint(TOGGLE_ALWAYS_UV),
            ),
            StatusCode::PinAuthInvalid,
        ),
        (
            "subCommandParams not covered",
            params_not_covered,
            StatusCode::PinAuthInvalid,
        ),
        (
            "a token of the other protocol",
            with(authed(1, &token, TOGGLE_ALWAYS_UV, None), 3, uint(2)),
            StatusCode::PinAuthInvalid,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            config_command(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // A token without acfg.
    let mc_ga = token_for(&mut device, MC | GA);
    assert_eq!(
        config_command(&mut device, authed(2, &mc_ga, TOGGLE_ALWAYS_UV, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
    // getPinToken's default permissions (mc, ga) do not include acfg either.
    let legacy = common::pin::token(&mut device, 2, PIN, None, None).unwrap();
    assert_eq!(
        config_command(&mut device, authed(2, &legacy, TOGGLE_ALWAYS_UV, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(false)));

    // With either protocol and acfg, it works, params included.
    for protocol in [1, 2] {
        let token = acfg(&mut device, protocol);
        let (code, body) = config_command(
            &mut device,
            authed(protocol, &token, TOGGLE_ALWAYS_UV, None),
        );
        assert_eq!((code, body), (0, None));
    }
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(false)));
    let token = acfg(&mut device, 2);
    assert_eq!(
        config_command(&mut device, authed(2, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(6)));
}

#[test]
fn acfg_is_not_granted_through_built_in_uv() {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    assert_eq!(
        uv_token(&mut device, 2, ACFG, None),
        Err(status(StatusCode::UnauthorizedPermission))
    );
    // Built-in UV protects the device: config then needs a (PIN) token.
    assert_eq!(
        config_command(&mut device, unauthenticated(TOGGLE_ALWAYS_UV, None)).0,
        status(StatusCode::PuatRequired)
    );
    // lbw and the rest are still fine through UV.
    assert!(uv_token(&mut device, 2, LBW, None).is_ok());
}

#[test]
fn the_factory_setting_and_reset() {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.always_uv = true;
    let mut device = common::device(config);
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    let token = acfg(&mut device, 2);
    assert_eq!(
        config_command(&mut device, authed(2, &token, TOGGLE_ALWAYS_UV, None)).0,
        0
    );
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(false)));
    // Reset: back to the factory setting, PIN and minPINLength gone too.
    let params = min_pin_params(vec![entry(1, uint(8))]);
    let token = acfg(&mut device, 2);
    assert_eq!(
        config_command(&mut device, authed(2, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    assert_eq!(option(&mut device, "clientPin"), Some(Value::Bool(false)));
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(4)));
}

// ------------------------------------------------------------------ setMinPINLength

#[test]
fn set_min_pin_length_without_a_pin() {
    let mut device = emulator();
    let set = |device: &mut Device, entries| {
        config_command(
            device,
            unauthenticated(SET_MIN_PIN_LENGTH, min_pin_params(entries)),
        )
        .0
    };
    // No parameters at all: nothing changes.
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, None)).0,
        0
    );
    assert_eq!(set(&mut device, vec![]), 0);
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(4)));
    assert_eq!(set(&mut device, vec![entry(1, uint(6))]), 0);
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(6)));
    assert_eq!(member(&info(&mut device), 0x0C), Some(&Value::Bool(false)));
    // Only up; and never past what a PIN can be.
    assert_eq!(
        set(&mut device, vec![entry(1, uint(5))]),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(
        set(&mut device, vec![entry(1, uint(64))]),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(
        set(&mut device, vec![entry(1, uint(u64::MAX))]),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(
        set(&mut device, vec![entry(1, uint(6))]),
        0,
        "the same length is fine"
    );
    // forceChangePin needs a PIN.
    assert_eq!(
        set(&mut device, vec![entry(3, Value::Bool(true))]),
        status(StatusCode::PinNotSet)
    );
    assert_eq!(set(&mut device, vec![entry(3, Value::Bool(false))]), 0);
    // Too many RP IDs.
    let nine = Value::Array((0..9).map(|i| text(&format!("rp{i}.example"))).collect());
    assert_eq!(
        set(&mut device, vec![entry(2, nine)]),
        status(StatusCode::PinPolicyViolation)
    );
    // A refused request changed nothing.
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(6)));

    // The PIN module enforces it: a five-digit PIN is too short now.
    assert_eq!(
        set_pin(&mut device, 2, b"12345"),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(set_pin(&mut device, 2, b"123456"), 0);
    // 63 is the most.
    let token = acfg_with(&mut device, b"123456");
    let params = min_pin_params(vec![entry(1, uint(63))]);
    assert_eq!(
        config_command(&mut device, authed(2, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(member(&info(&mut device), 0x0D), Some(&int(63)));
}

fn acfg_with(device: &mut Device, pin: &[u8]) -> Vec<u8> {
    token(device, 2, pin, Some(ACFG), None).unwrap()
}

#[test]
fn a_longer_minimum_forces_a_pin_change() {
    let mut device = pin_device();
    let token = acfg(&mut device, 2);
    // Four code points meet four: no change forced.
    let params = min_pin_params(vec![entry(1, uint(4))]);
    assert_eq!(
        config_command(&mut device, authed(2, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(member(&info(&mut device), 0x0C), Some(&Value::Bool(false)));
    // Five do not.
    let params = min_pin_params(vec![entry(1, uint(5))]);
    assert_eq!(
        config_command(&mut device, authed(2, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    let info = info(&mut device);
    assert_eq!(member(&info, 0x0C), Some(&Value::Bool(true)));
    assert_eq!(member(&info, 0x0D), Some(&int(5)));
    // No token until the PIN is changed, and to one of at least five.
    assert_eq!(
        common::pin::token(&mut device, 2, PIN, Some(ACFG), None),
        Err(status(StatusCode::PinPolicyViolation))
    );
    assert_eq!(
        change_pin(&mut device, 2, PIN, b"5678"),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(change_pin(&mut device, 2, PIN, b"56789"), 0);
    assert_eq!(
        member(&self::info(&mut device), 0x0C),
        Some(&Value::Bool(false))
    );
    assert!(common::pin::token(&mut device, 2, b"56789", Some(ACFG), None).is_ok());
}

#[test]
fn force_change_pin() {
    let mut device = pin_device();
    let token = acfg(&mut device, 1);
    let params = min_pin_params(vec![entry(3, Value::Bool(true))]);
    assert_eq!(
        config_command(&mut device, authed(1, &token, SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    let info = info(&mut device);
    assert_eq!(member(&info, 0x0C), Some(&Value::Bool(true)));
    assert_eq!(member(&info, 0x0D), Some(&int(4)), "minPINLength unchanged");
    // getPinToken answers PIN_INVALID, the permissions variant PIN_POLICY_VIOLATION.
    assert_eq!(
        common::pin::token(&mut device, 2, PIN, None, None),
        Err(status(StatusCode::PinInvalid))
    );
    assert_eq!(change_pin(&mut device, 2, PIN, b"4321"), 0);
    assert_eq!(
        member(&self::info(&mut device), 0x0C),
        Some(&Value::Bool(false))
    );
}

// ------------------------------------------------------------------ the minPinLength extension

fn min_pin_length_output(
    device: &mut Device,
    rp_id: &str,
    user: &[u8],
    input: Value,
) -> Option<Value> {
    let params = with(
        make_credential_params(rp_id, user, &[ES256]),
        6,
        tmap(&[("minPinLength", input)]),
    );
    let registered = register(device, params);
    registered
        .auth_data
        .extensions
        .as_ref()
        .and_then(|extensions| text_member(extensions, "minPinLength").cloned())
}

#[test]
fn min_pin_length_extension_only_for_listed_rps() {
    let mut device = emulator();
    // Nobody is listed yet.
    assert_eq!(
        min_pin_length_output(&mut device, RP, b"a", Value::Bool(true)),
        None
    );
    let list = Value::Array(vec![text(RP), text("login.example")]);
    let params = min_pin_params(vec![entry(1, uint(6)), entry(2, list)]);
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(
        min_pin_length_output(&mut device, RP, b"b", Value::Bool(true)),
        Some(int(6))
    );
    assert_eq!(
        min_pin_length_output(&mut device, "login.example", b"c", Value::Bool(true)),
        Some(int(6))
    );
    assert_eq!(
        min_pin_length_output(&mut device, "other.example", b"d", Value::Bool(true)),
        None
    );
    // Asked with false: nothing.
    assert_eq!(
        min_pin_length_output(&mut device, RP, b"e", Value::Bool(false)),
        None
    );
    // Not a boolean.
    let params = with(
        make_credential_params(RP, b"f", &[ES256]),
        6,
        tmap(&[("minPinLength", int(1))]),
    );
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::CborUnexpectedType)
    );

    // A new list replaces the old one; leaving it out keeps it.
    let params = min_pin_params(vec![entry(2, Value::Array(vec![text("other.example")]))]);
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(
        min_pin_length_output(&mut device, RP, b"g", Value::Bool(true)),
        None
    );
    let params = min_pin_params(vec![entry(1, uint(7))]);
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    assert_eq!(
        min_pin_length_output(&mut device, "other.example", b"h", Value::Bool(true)),
        Some(int(7))
    );
    // Eight RP IDs are fine; the list survives a power cycle and goes with a reset.
    let eight = Value::Array((0..8).map(|i| text(&format!("rp{i}.example"))).collect());
    let params = min_pin_params(vec![entry(2, eight)]);
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    device.power_cycle();
    assert_eq!(
        min_pin_length_output(&mut device, "rp7.example", b"i", Value::Bool(true)),
        Some(int(7))
    );
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    assert_eq!(
        min_pin_length_output(&mut device, "rp7.example", b"j", Value::Bool(true)),
        None
    );
    // With other extension outputs beside it.
    let params = min_pin_params(vec![entry(2, Value::Array(vec![text(RP)]))]);
    assert_eq!(
        config_command(&mut device, unauthenticated(SET_MIN_PIN_LENGTH, params)).0,
        0
    );
    let params = with(
        make_credential_params(RP, b"k", &[ES256]),
        6,
        tmap(&[("minPinLength", Value::Bool(true)), ("credProtect", int(2))]),
    );
    let registered = register(&mut device, params);
    let extensions = registered.auth_data.extensions.unwrap();
    assert_eq!(text_member(&extensions, "minPinLength"), Some(&int(4)));
    assert_eq!(text_member(&extensions, "credProtect"), Some(&int(2)));
}

// ------------------------------------------------------------------ enterprise attestation

const BATCH_SECRET: [u8; 32] = [0x11; 32];
const BATCH_CERT: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x01];

fn ea_device(batch: bool) -> Device {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.enterprise_attestation = true;
    if batch {
        config.attestation = AttestationMode::Batch(BatchAttestation {
            private_key: zeroize::Zeroizing::new(BATCH_SECRET),
            certificates: vec![BATCH_CERT.to_vec()],
        });
    }
    common::device(config)
}

fn mc_ea(user: &[u8], value: Value) -> Params {
    with(make_credential_params(RP, user, &[ES256]), 0x0A, value)
}

#[test]
fn enterprise_attestation_is_not_offered_by_default() {
    let mut device = emulator();
    assert_eq!(
        config_command(&mut device, unauthenticated(ENABLE_EA, None)).0,
        status(StatusCode::InvalidParameter)
    );
    assert_eq!(option(&mut device, "ep"), None);
    for value in [1, 2, 3] {
        assert_eq!(
            send(&mut device, &request(1, mc_ea(b"a", int(value)))).0,
            status(StatusCode::InvalidParameter)
        );
    }
    assert_eq!(
        send(&mut device, &request(1, mc_ea(b"a", text("2")))).0,
        status(StatusCode::CborUnexpectedType)
    );
    // With a PIN the token is checked first.
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    let token = acfg(&mut device, 2);
    assert_eq!(
        config_command(&mut device, authed(2, &token, ENABLE_EA, None)).0,
        status(StatusCode::InvalidParameter)
    );
    assert_eq!(
        config_command(&mut device, unauthenticated(ENABLE_EA, None)).0,
        status(StatusCode::PuatRequired)
    );
}

#[test]
fn enterprise_attestation_once_enabled() {
    let mut device = ea_device(true);
    assert_eq!(option(&mut device, "ep"), Some(Value::Bool(false)));
    // Disabled: the parameter is refused.
    assert_eq!(
        send(&mut device, &request(1, mc_ea(b"a", int(2)))).0,
        status(StatusCode::InvalidParameter)
    );
    assert_eq!(
        config_command(&mut device, unauthenticated(ENABLE_EA, None)),
        (0, None)
    );
    assert_eq!(option(&mut device, "ep"), Some(Value::Bool(true)));
    // Enabling again is no error; it survives a power cycle.
    assert_eq!(
        config_command(&mut device, unauthenticated(ENABLE_EA, None)).0,
        0
    );
    device.power_cycle();
    assert_eq!(option(&mut device, "ep"), Some(Value::Bool(true)));

    // Platform-managed: the batch attestation, epAtt true.
    let (code, body) = send(&mut device, &request(1, mc_ea(b"a", int(2))));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 4), Some(&Value::Bool(true)));
    let statement = member(&body, 3).unwrap();
    assert_eq!(
        text_member(statement, "x5c"),
        Some(&Value::Array(vec![bytes(&BATCH_CERT)]))
    );
    let batch_key = authenticator_core::credential::PrivateKey::from_secret(
        authenticator_core::credential::Algorithm::Es256,
        &BATCH_SECRET,
    )
    .unwrap();
    let mut message = bytes_of(member(&body, 2).unwrap());
    message.extend(client_data_hash(1));
    verify(
        &batch_key.public_cose_key(),
        &message,
        &bytes_of(text_member(statement, "sig").unwrap()),
    );
    // Canonical member order 1, 2, 3, 4.
    let Value::Map(entries) = &body else { panic!() };
    let keys: Vec<Value> = entries.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![int(1), int(2), int(3), int(4)]);

    // Vendor-facilitated: no vendor list here, so as if absent — batch attestation, no epAtt.
    let (code, body) = send(&mut device, &request(1, mc_ea(b"b", int(1))));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 4), None);
    assert!(text_member(member(&body, 3).unwrap(), "x5c").is_some());
    // Other values.
    for value in [0, 3, -1] {
        assert_eq!(
            send(&mut device, &request(1, mc_ea(b"c", int(value)))).0,
            status(StatusCode::InvalidOption),
            "{value}"
        );
    }
    // Asked for "none": no attestation, so no enterprise attestation either.
    let none = with(mc_ea(b"d", int(2)), 0x0B, Value::Array(vec![text("none")]));
    let (code, body) = send(&mut device, &request(1, none));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 1), Some(&text("none")));
    assert_eq!(member(&body, 4), None);

    // Reset disables it again.
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    assert_eq!(option(&mut device, "ep"), Some(Value::Bool(false)));
    assert_eq!(
        send(&mut device, &request(1, mc_ea(b"e", int(2)))).0,
        status(StatusCode::InvalidParameter)
    );
}

#[test]
fn enterprise_attestation_without_a_batch_key_is_the_ordinary_one() {
    let mut device = ea_device(false);
    assert_eq!(
        config_command(&mut device, unauthenticated(ENABLE_EA, None)).0,
        0
    );
    let (code, body) = send(&mut device, &request(1, mc_ea(b"a", int(2))));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(
        member(&body, 4),
        None,
        "no epAtt without an identifying attestation"
    );
    let statement = member(&body, 3).unwrap();
    assert!(text_member(statement, "x5c").is_none(), "self attestation");
    // And a discoverable one with a largeBlobKey: members 1, 2, 3, 5.
    let params = with(
        rk(mc_ea(b"b", int(2))),
        6,
        tmap(&[("largeBlobKey", Value::Bool(true))]),
    );
    let (code, body) = send(&mut device, &request(1, params));
    assert_eq!(code, 0);
    let Value::Map(entries) = body.unwrap() else {
        panic!()
    };
    let keys: Vec<Value> = entries.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![int(1), int(2), int(3), int(5)]);
}
