//! authenticatorClientPIN and the PIN/UV auth steps of makeCredential and getAssertion, with
//! every status code CTAP 2.1 gives them.
//!
//! The platform side of PIN/UV auth protocols one and two (`common/pin.rs`) is written from the
//! spec — ECDH on P-256, SHA-256 or HKDF (by hand, over HMAC), AES-256-CBC (by hand, over the
//! AES block cipher) and HMAC-SHA-256 — sharing nothing with `src/pin`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::Value;
use authenticator_core::pin::SUPPORTED_PERMISSIONS;
use authenticator_core::platform::{
    BuiltInUv, PresenceKind, PresenceOutcome, PresencePurpose, Store, Write,
};
use authenticator_core::storage::PinRecord;
use authenticator_core::{Config, StatusCode};
use common::pin::*;
use common::*;

const ES256: i64 = -7;
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;
const RP: &str = "example.com";

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

// The platform's side of PIN/UV auth protocols one and two, and the clientPIN requests, are
// in `common/pin.rs` (shared with the large-blob, authenticatorConfig and other tests).

fn pin_retries(device: &mut Device) -> (u64, bool) {
    let (code, body) = client_pin(device, vec![entry(1, uint(2)), entry(2, uint(1))]);
    assert_eq!(code, 0);
    let body = body.unwrap();
    let retries = match member(&body, 3) {
        Some(Value::Integer(n)) => u64::try_from(*n).unwrap(),
        other => panic!("pinRetries {other:?}"),
    };
    let power_cycle = match member(&body, 4) {
        Some(Value::Bool(b)) => *b,
        other => panic!("powerCycleState {other:?}"),
    };
    (retries, power_cycle)
}

fn uv_retries(device: &mut Device) -> Result<u64, u8> {
    let (code, body) = client_pin(device, vec![entry(2, uint(7))]);
    if code != 0 {
        return Err(code);
    }
    match member(&body.unwrap(), 5) {
        Some(Value::Integer(n)) => Ok(u64::try_from(*n).unwrap()),
        other => panic!("uvRetries {other:?}"),
    }
}

fn info(device: &mut Device) -> Value {
    send(device, &[0x04]).1.unwrap()
}

fn option(device: &mut Device, name: &str) -> Option<Value> {
    text_member(member(&info(device), 4).unwrap(), name).cloned()
}

/// makeCredential members with a pinUvAuthParam over clientDataHash(1).
fn mc_with_token(
    protocol: u8,
    token: &[u8],
    rp_id: &str,
    user: &[u8],
    rk: bool,
) -> Vec<(Value, Value)> {
    let mut params = with(
        with(
            make_credential_params(rp_id, user, &[ES256]),
            8,
            bytes(&authenticate(protocol, token, &client_data_hash(1))),
        ),
        9,
        uint(protocol.into()),
    );
    if rk {
        params = with(params, 7, tmap(&[("rk", Value::Bool(true))]));
    }
    params
}

/// getAssertion members with a pinUvAuthParam over clientDataHash(2).
fn ga_with_token(protocol: u8, token: &[u8], rp_id: &str, allow: &[&[u8]]) -> Vec<(Value, Value)> {
    with(
        with(
            get_assertion_params(rp_id, allow),
            6,
            bytes(&authenticate(protocol, token, &client_data_hash(2))),
        ),
        7,
        uint(protocol.into()),
    )
}

fn silent(params: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    with(params, 5, tmap(&[("up", Value::Bool(false))]))
}

fn pin_device() -> Device {
    let mut device = emulator();
    assert_eq!(set_pin(&mut device, 2, b"1234"), 0);
    device
}

fn presence_calls(device: &Device) -> Vec<(PresenceKind, PresencePurpose)> {
    device
        .platform()
        .presence
        .calls
        .iter()
        .map(|c| (c.kind, c.purpose))
        .collect()
}

fn edit_pin_record(device: &mut Device, edit: impl FnOnce(&mut PinRecord)) {
    let store = &mut device.platform_mut().store;
    let mut record = match store.get(b"m/pin").unwrap() {
        Some(bytes) => PinRecord::from_bytes(&bytes).unwrap(),
        None => PinRecord::default(),
    };
    edit(&mut record);
    let bytes = record.to_bytes();
    store.commit(&[Write::Put(b"m/pin", &bytes)]).unwrap();
}

// ------------------------------------------------------------------ getInfo and framing

#[test]
fn get_info_reports_pin_state() {
    let mut device = emulator();
    assert_eq!(option(&mut device, "clientPin"), Some(Value::Bool(false)));
    assert_eq!(
        option(&mut device, "pinUvAuthToken"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        option(&mut device, "makeCredUvNotRqd"),
        Some(Value::Bool(true))
    );
    assert_ne!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    let info = info(&mut device);
    assert_eq!(member(&info, 6), Some(&Value::Array(vec![int(2), int(1)])));
    assert_eq!(member(&info, 0x0C), Some(&Value::Bool(false)));
    assert_eq!(member(&info, 0x0D), Some(&int(4)));
    let versions = member(&info, 1).unwrap();
    assert!(matches!(versions, Value::Array(v) if v.contains(&text("FIDO_2_1"))));

    assert_eq!(set_pin(&mut device, 1, b"1234"), 0);
    assert_eq!(option(&mut device, "clientPin"), Some(Value::Bool(true)));

    edit_pin_record(&mut device, |r| {
        r.force_pin_change = true;
        r.min_pin_length = 6;
    });
    let info = self::info(&mut device);
    assert_eq!(member(&info, 0x0C), Some(&Value::Bool(true)));
    assert_eq!(member(&info, 0x0D), Some(&int(6)));
}

#[test]
fn malformed_client_pin_requests() {
    let mut device = emulator();
    assert_eq!(
        send(&mut device, &[0x06]).0,
        status(StatusCode::MissingParameter)
    );
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        (
            "no subCommand",
            vec![entry(1, uint(2))],
            StatusCode::MissingParameter,
        ),
        (
            "subCommand text",
            vec![entry(1, uint(2)), entry(2, text("x"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "subCommand negative",
            vec![entry(1, uint(2)), entry(2, int(-1))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "unknown subCommand 0x08",
            vec![entry(1, uint(2)), entry(2, uint(8))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "unknown subCommand 0x0A",
            vec![entry(1, uint(2)), entry(2, uint(10))],
            StatusCode::InvalidSubcommand,
        ),
        (
            "protocol text",
            vec![entry(1, text("2")), entry(2, uint(2))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "keyAgreement not a map",
            vec![entry(1, uint(2)), entry(2, uint(3)), entry(3, bytes(&[4]))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "newPinEnc text",
            vec![entry(1, uint(2)), entry(2, uint(3)), entry(5, text("x"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "permissions negative",
            vec![entry(1, uint(2)), entry(2, uint(9)), entry(9, int(-1))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "rpId bytes",
            vec![entry(1, uint(2)), entry(2, uint(9)), entry(10, bytes(b"x"))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "getKeyAgreement without protocol",
            vec![entry(2, uint(2))],
            StatusCode::MissingParameter,
        ),
        (
            "getKeyAgreement with protocol 3",
            vec![entry(1, uint(3)), entry(2, uint(2))],
            StatusCode::InvalidParameter,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            client_pin(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // getPINRetries needs no protocol.
    let (code, body) = client_pin(&mut device, vec![entry(2, uint(1))]);
    assert_eq!(code, 0);
    assert_eq!(
        body.unwrap(),
        Value::Map(vec![(int(3), int(8)), (int(4), Value::Bool(false))])
    );
    assert!(device.platform().presence.calls.is_empty());
}

#[test]
fn key_agreement_key_per_protocol_and_power_cycle() {
    let mut device = emulator();
    for protocol in [1, 2] {
        let key = authenticator_key(&mut device, protocol);
        let Value::Map(entries) = &key else { panic!() };
        let keys: Vec<&Value> = entries.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [&int(1), &int(3), &int(-1), &int(-2), &int(-3)],
            "canonical"
        );
        assert_eq!(member(&key, 1), Some(&int(2)), "EC2");
        assert_eq!(member(&key, 3), Some(&int(-25)), "ECDH-ES+HKDF-256");
        assert_eq!(member(&key, -1), Some(&int(1)), "P-256");
        assert_eq!(authenticator_key(&mut device, protocol), key, "stable");
    }
    let one = authenticator_key(&mut device, 1);
    let two = authenticator_key(&mut device, 2);
    assert_ne!(one, two, "one key per protocol");
    device.power_cycle();
    assert_ne!(authenticator_key(&mut device, 1), one);
    assert_ne!(authenticator_key(&mut device, 2), two);
}

// ------------------------------------------------------------------ setPIN

#[test]
fn set_pin_with_either_protocol() {
    for protocol in [1, 2] {
        let mut device = emulator();
        assert_eq!(
            set_pin(&mut device, protocol, b"1234"),
            0,
            "protocol {protocol}"
        );
        assert_eq!(pin_retries(&mut device), (8, false));
        // Only LEFT(SHA-256(PIN), 16) is kept.
        let record =
            PinRecord::from_bytes(&device.platform().store.get(b"m/pin").unwrap().unwrap())
                .unwrap();
        assert_eq!(record.pin_hash.unwrap().to_vec(), pin_hash(b"1234"));
        assert_eq!(record.pin_code_points, 4);
        // A second setPIN is refused: changePIN changes it.
        assert_eq!(
            set_pin(&mut device, protocol, b"5678"),
            status(StatusCode::PinAuthInvalid)
        );
        // Both protocols get a token with it.
        for other in [1, 2] {
            assert!(token(&mut device, other, b"1234", Some(MC), Some(RP)).is_ok());
        }
    }
}

#[test]
fn set_pin_errors() {
    let mut device = emulator();
    let mut s = session(&mut device, 2);
    let good = set_pin_params(&mut s, &padded(b"1234"));
    for (name, missing) in [
        ("keyAgreement", 3),
        ("pinUvAuthParam", 4),
        ("newPinEnc", 5),
        ("protocol", 1),
    ] {
        assert_eq!(
            client_pin(&mut device, without(good.clone(), missing)).0,
            status(StatusCode::MissingParameter),
            "{name}"
        );
    }
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 1, uint(3))).0,
        status(StatusCode::InvalidParameter),
        "unsupported protocol"
    );
    // A platform key that is not on the curve.
    let mut off_curve = s.key_agreement.clone();
    if let Value::Map(entries) = &mut off_curve {
        entries[4].1 = bytes(&[7; 32]);
    }
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 3, off_curve)).0,
        status(StatusCode::InvalidParameter),
        "keyAgreement off the curve"
    );
    let wrong_kty = Value::Map(vec![(int(1), int(1))]);
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 3, wrong_kty)).0,
        status(StatusCode::InvalidParameter),
        "keyAgreement not EC2"
    );
    // A MAC that does not match newPinEnc.
    let mut bad_auth = bytes_of(&good[3].1);
    bad_auth[0] ^= 1;
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 4, bytes(&bad_auth))).0,
        status(StatusCode::PinAuthInvalid)
    );
    // The shared secret of the other protocol.
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 1, uint(1))).0,
        status(StatusCode::PinAuthInvalid)
    );

    // paddedNewPin must be exactly 64 bytes.
    for len in [48, 80] {
        let mut pin = b"1234".to_vec();
        pin.resize(len, 0);
        let params = set_pin_params(&mut s, &pin);
        assert_eq!(
            client_pin(&mut device, params).0,
            status(StatusCode::InvalidParameter),
            "padded to {len}"
        );
    }
    // newPinEnc that is not whole blocks (protocol two: IV + 40 bytes).
    let ragged = s.encrypt(&[0; 48])[..56].to_vec();
    let params = vec![
        entry(1, uint(2)),
        entry(2, uint(3)),
        entry(3, s.key_agreement.clone()),
        entry(4, bytes(&s.authenticate(&ragged))),
        entry(5, bytes(&ragged)),
    ];
    assert_eq!(
        client_pin(&mut device, params).0,
        status(StatusCode::PinAuthInvalid),
        "newPinEnc does not decrypt"
    );

    // The PIN rules: 4–63 code points of UTF-8.
    let policy = StatusCode::PinPolicyViolation;
    let too_long_64 = vec![b'7'; 64];
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        ("empty", padded(b""), status(policy)),
        ("three digits", padded(b"123"), status(policy)),
        (
            "three two-byte code points",
            padded("ééé".as_bytes()),
            status(policy),
        ),
        ("64 bytes", too_long_64, status(policy)),
        (
            "invalid UTF-8",
            padded(&[0xFF, 0xFE, 0xFD, 0xFC]),
            status(policy),
        ),
    ];
    for (name, pin, expected) in cases {
        let params = set_pin_params(&mut s, &pin);
        assert_eq!(client_pin(&mut device, params).0, expected, "{name}");
    }
    assert_eq!(option(&mut device, "clientPin"), Some(Value::Bool(false)));
    // 63 bytes of UTF-8 is the longest; four code points in eight bytes are enough.
    let mut longest = emulator();
    assert_eq!(set_pin(&mut longest, 1, &[b'9'; 63]), 0);
    assert!(token(&mut longest, 1, &[b'9'; 63], Some(GA), Some(RP)).is_ok());
    let mut accents = emulator();
    assert_eq!(set_pin(&mut accents, 2, "éééé".as_bytes()), 0);
    assert!(token(&mut accents, 2, "éééé".as_bytes(), None, None).is_ok());
    // minPINLength is enforced as stored.
    let mut longer = emulator();
    edit_pin_record(&mut longer, |r| r.min_pin_length = 6);
    assert_eq!(set_pin(&mut longer, 2, b"12345"), status(policy));
    assert_eq!(set_pin(&mut longer, 2, b"123456"), 0);
}

// ------------------------------------------------------------------ changePIN

#[test]
fn change_pin_with_either_protocol() {
    for protocol in [1, 2] {
        let mut device = pin_device();
        let old_token = token(&mut device, protocol, b"1234", Some(MC | GA), Some(RP)).unwrap();
        assert_eq!(change_pin(&mut device, protocol, b"1234", b"abcdef"), 0);
        // The old PIN is gone, the new one works, and every earlier token died.
        assert_eq!(
            token(&mut device, protocol, b"1234", Some(MC), Some(RP)),
            Err(status(StatusCode::PinInvalid))
        );
        assert_eq!(
            send(
                &mut device,
                &request(1, mc_with_token(protocol, &old_token, RP, b"u", false))
            )
            .0,
            status(StatusCode::PinAuthInvalid)
        );
        assert!(token(&mut device, protocol, b"abcdef", Some(MC), Some(RP)).is_ok());
        assert_eq!(pin_retries(&mut device), (8, false));
    }
}

#[test]
fn change_pin_errors() {
    let mut fresh = emulator();
    assert_eq!(
        change_pin(&mut fresh, 2, b"1234", b"5678"),
        status(StatusCode::PinNotSet)
    );

    let mut device = pin_device();
    let mut s = session(&mut device, 2);
    let good = change_pin_params(&mut s, b"1234", b"5678");
    for missing in [1, 3, 4, 5, 6] {
        assert_eq!(
            client_pin(&mut device, without(good.clone(), missing)).0,
            status(StatusCode::MissingParameter),
            "member {missing}"
        );
    }
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 1, uint(7))).0,
        status(StatusCode::InvalidParameter)
    );
    // The MAC covers newPinEnc ‖ pinHashEnc; a bad one costs no retry.
    let mut bad = bytes_of(&good[3].1);
    bad[31] ^= 1;
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 4, bytes(&bad))).0,
        status(StatusCode::PinAuthInvalid)
    );
    assert_eq!(pin_retries(&mut device), (8, false));

    // The current PIN wrong: a retry is spent.
    assert_eq!(
        change_pin(&mut device, 2, b"0000", b"5678"),
        status(StatusCode::PinInvalid)
    );
    assert_eq!(pin_retries(&mut device), (7, false));
    // The right current PIN but a new one that breaks the rules: the retries are restored and
    // the PIN is unchanged.
    assert_eq!(
        change_pin(&mut device, 2, b"1234", b"12"),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(pin_retries(&mut device), (8, false));
    assert!(token(&mut device, 2, b"1234", Some(MC), Some(RP)).is_ok());
}

// ------------------------------------------------------------------ wrong PINs

#[test]
fn three_wrong_pins_block_until_power_cycle() {
    for protocol in [1, 2] {
        let mut device = pin_device();
        for (attempt, expected) in [
            (1, StatusCode::PinInvalid),
            (2, StatusCode::PinInvalid),
            (3, StatusCode::PinAuthBlocked),
        ] {
            assert_eq!(
                token(&mut device, protocol, b"4321", Some(MC), Some(RP)),
                Err(status(expected)),
                "attempt {attempt}"
            );
        }
        assert_eq!(pin_retries(&mut device), (5, true));
        // Even the right PIN waits for the power cycle, and costs nothing.
        assert_eq!(
            token(&mut device, protocol, b"1234", Some(MC), Some(RP)),
            Err(status(StatusCode::PinAuthBlocked))
        );
        assert_eq!(
            change_pin(&mut device, protocol, b"1234", b"5678"),
            status(StatusCode::PinAuthBlocked)
        );
        assert_eq!(pin_retries(&mut device), (5, true));
        device.power_cycle();
        assert_eq!(pin_retries(&mut device), (5, false));
        assert!(token(&mut device, protocol, b"1234", Some(MC), Some(RP)).is_ok());
        assert_eq!(pin_retries(&mut device), (8, false));
    }
}

#[test]
fn a_right_pin_resets_the_consecutive_count() {
    let mut device = pin_device();
    for _ in 0..2 {
        assert!(token(&mut device, 2, b"0000", None, None).is_err());
    }
    assert!(token(&mut device, 2, b"1234", None, None).is_ok());
    for _ in 0..2 {
        assert_eq!(
            token(&mut device, 2, b"0000", None, None),
            Err(status(StatusCode::PinInvalid))
        );
    }
    assert_eq!(pin_retries(&mut device), (6, false));
}

#[test]
fn a_wrong_pin_regenerates_the_key_agreement_key() {
    let mut device = pin_device();
    let before = authenticator_key(&mut device, 2);
    let other_protocol = authenticator_key(&mut device, 1);
    let mut stale = session(&mut device, 2);
    assert!(token(&mut device, 2, b"0000", None, None).is_err());
    assert_ne!(authenticator_key(&mut device, 2), before);
    assert_eq!(
        authenticator_key(&mut device, 1),
        other_protocol,
        "only that protocol's"
    );
    // A secret agreed with the old key no longer decrypts: the right PIN reads as wrong.
    let params = token_params(&mut stale, b"1234", Some(MC), Some(RP));
    assert_eq!(
        client_pin(&mut device, params).0,
        status(StatusCode::PinInvalid)
    );
}

#[test]
fn eight_wrong_pins_block_the_pin_until_reset() {
    let mut device = pin_device();
    let mut retries = 8;
    for round in 0..3 {
        let attempts = if round < 2 { 3 } else { 2 };
        for attempt in 1..=attempts {
            retries -= 1;
            let expected = if retries == 0 {
                StatusCode::PinBlocked
            } else if attempt == 3 {
                StatusCode::PinAuthBlocked
            } else {
                StatusCode::PinInvalid
            };
            assert_eq!(
                token(&mut device, 1, b"9999", Some(GA), Some(RP)),
                Err(status(expected)),
                "round {round} attempt {attempt}"
            );
            assert_eq!(pin_retries(&mut device).0, retries);
        }
        device.power_cycle();
    }
    // Blocked for good: the right PIN, changePIN, getPinToken all answer PIN_BLOCKED.
    let blocked = Err(status(StatusCode::PinBlocked));
    assert_eq!(token(&mut device, 2, b"1234", Some(GA), Some(RP)), blocked);
    assert_eq!(token(&mut device, 1, b"1234", None, None), blocked);
    assert_eq!(
        change_pin(&mut device, 2, b"1234", b"5678"),
        status(StatusCode::PinBlocked)
    );
    assert_eq!(pin_retries(&mut device), (0, false));
    // The retries live in the store: a "reboot" on the same platform keeps the block.
    let platform = std::mem::replace(&mut device, emulator()).into_platform();
    let mut rebooted = authenticator_core::Authenticator::new(platform, device.config().clone());
    assert_eq!(pin_retries(&mut rebooted), (0, false));
    // Only a reset clears it.
    assert_eq!(send(&mut rebooted, &[0x07]).0, 0);
    assert_eq!(option(&mut rebooted, "clientPin"), Some(Value::Bool(false)));
    assert_eq!(pin_retries(&mut rebooted), (8, false));
    assert_eq!(set_pin(&mut rebooted, 2, b"2468"), 0);
}

// ------------------------------------------------------------------ getting tokens

#[test]
fn get_pin_token_legacy() {
    let mut fresh = emulator();
    assert_eq!(
        token(&mut fresh, 2, b"1234", None, None),
        Err(status(StatusCode::PinNotSet))
    );
    let mut device = pin_device();
    let mut s = session(&mut device, 1);
    let good = token_params(&mut s, b"1234", None, None);
    for missing in [1, 3, 6] {
        assert_eq!(
            client_pin(&mut device, without(good.clone(), missing)).0,
            status(StatusCode::MissingParameter),
            "member {missing}"
        );
    }
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 9, uint(MC))).0,
        status(StatusCode::InvalidParameter),
        "permissions"
    );
    assert_eq!(
        client_pin(&mut device, with(good.clone(), 10, text(RP))).0,
        status(StatusCode::InvalidParameter),
        "rpId"
    );
    assert_eq!(pin_retries(&mut device), (8, false), "no PIN was tried");
    // Default permissions mc and ga, no RP until the first use binds one.
    for protocol in [1, 2] {
        let token = token(&mut device, protocol, b"1234", None, None).unwrap();
        let registered = register(
            &mut device,
            mc_with_token(protocol, &token, "first.example", b"u", false),
        );
        let id = registered.credential_id.clone();
        let token = self::token(&mut device, protocol, b"1234", None, None).unwrap();
        let params = silent(ga_with_token(protocol, &token, "first.example", &[&id]));
        assert_eq!(send(&mut device, &request(2, params)).0, 0);
        let params = silent(ga_with_token(protocol, &token, RP, &[]));
        assert_eq!(
            send(&mut device, &request(2, params)).0,
            status(StatusCode::PinAuthInvalid),
            "bound to first.example by its first use"
        );
    }
}

#[test]
fn with_permissions_errors() {
    let mut device = pin_device();
    let mut s = session(&mut device, 2);
    let good = token_params(&mut s, b"1234", Some(MC), Some(RP));
    assert_eq!(
        client_pin(&mut device, without(good.clone(), 9)).0,
        status(StatusCode::MissingParameter)
    );
    for missing in [1, 3, 6] {
        assert_eq!(
            client_pin(&mut device, without(good.clone(), missing)).0,
            status(StatusCode::MissingParameter),
            "member {missing}"
        );
    }
    let cases = [
        (
            "protocol 0",
            with(good.clone(), 1, uint(0)),
            StatusCode::InvalidParameter,
        ),
        (
            "permissions 0",
            with(good.clone(), 9, uint(0)),
            StatusCode::InvalidParameter,
        ),
        (
            "mc without rpId",
            without(good.clone(), 10),
            StatusCode::InvalidParameter,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            client_pin(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // Permissions whose command does not exist (yet) are refused; `be` always is (no
    // bioEnroll). Commands add theirs to SUPPORTED_PERMISSIONS as they land.
    assert_eq!(u64::from(SUPPORTED_PERMISSIONS) & BE, 0);
    for (name, bit) in [("cm", CM), ("be", BE), ("lbw", LBW), ("acfg", ACFG)] {
        if u64::from(SUPPORTED_PERMISSIONS) & bit != 0 {
            continue;
        }
        assert_eq!(
            client_pin(&mut device, with(good.clone(), 9, uint(bit | MC))).0,
            status(StatusCode::UnauthorizedPermission),
            "{name}"
        );
    }
    assert_eq!(pin_retries(&mut device), (8, false), "no PIN was tried");
    // Undefined permission bits are ignored: a token with none of the defined ones.
    let token = token(&mut device, 2, b"1234", Some(0x40), None).unwrap();
    assert_eq!(
        send(
            &mut device,
            &request(1, mc_with_token(2, &token, RP, b"u", false))
        )
        .0,
        status(StatusCode::PinAuthInvalid)
    );
}

#[test]
fn token_permissions_and_rp_binding() {
    let mut device = pin_device();
    let registered = register(&mut device, make_credential_params(RP, b"u", &[ES256]));
    let id = registered.credential_id.clone();
    // ga only: makeCredential refuses it, getAssertion takes it.
    let ga = token(&mut device, 2, b"1234", Some(GA), Some(RP)).unwrap();
    assert_eq!(
        send(
            &mut device,
            &request(1, mc_with_token(2, &ga, RP, b"u2", false))
        )
        .0,
        status(StatusCode::PinAuthInvalid)
    );
    let (code, body) = send(&mut device, &request(2, ga_with_token(2, &ga, RP, &[&id])));
    assert_eq!(code, 0);
    let ad = check_assertion(&body.unwrap(), &registered.public_key, &client_data_hash(2));
    assert_eq!(ad.flags, UP | UV);
    // mc for example.com: not for another RP.
    let mc = token(&mut device, 1, b"1234", Some(MC), Some(RP)).unwrap();
    assert_eq!(
        send(
            &mut device,
            &request(1, mc_with_token(1, &mc, "other.example", b"u", false))
        )
        .0,
        status(StatusCode::PinAuthInvalid)
    );
    // A token's MAC under the other protocol's token value does not verify.
    let params = with(mc_with_token(1, &mc, RP, b"u", false), 9, uint(2));
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::PinAuthInvalid)
    );
    let made = register(&mut device, mc_with_token(1, &mc, RP, b"u", false));
    assert_eq!(made.auth_data.flags, UP | UV | AT);
}

#[test]
fn make_credential_and_get_assertion_with_a_token() {
    for protocol in [1, 2] {
        let mut device = pin_device();
        let token = token(&mut device, protocol, b"1234", Some(MC | GA), Some(RP)).unwrap();
        device.platform_mut().presence.calls.clear();
        let registered = register(
            &mut device,
            mc_with_token(protocol, &token, RP, b"u1", true),
        );
        assert_eq!(
            registered.auth_data.flags,
            UP | UV | AT,
            "UV from the token"
        );
        assert_eq!(
            presence_calls(&device),
            [(PresenceKind::UserPresence, PresencePurpose::MakeCredential)],
            "a PIN token proves no presence"
        );
        // The ceremony used up the token's verification and mc/ga permissions.
        let (code, _) = send(
            &mut device,
            &request(2, ga_with_token(protocol, &token, RP, &[])),
        );
        assert_eq!(code, status(StatusCode::PinAuthInvalid));

        // A fresh ga token: discovery with UV returns the names.
        let token = self::token(&mut device, protocol, b"1234", Some(GA), Some(RP)).unwrap();
        let (code, body) = send(
            &mut device,
            &request(2, ga_with_token(protocol, &token, RP, &[])),
        );
        assert_eq!(code, 0);
        let body = body.unwrap();
        let ad = check_assertion(&body, &registered.public_key, &client_data_hash(2));
        assert_eq!(ad.flags, UP | UV);
        assert_eq!(
            text_member(member(&body, 4).unwrap(), "name"),
            Some(&text("alice@example.com"))
        );
    }
}

#[test]
fn silent_assertions_keep_the_token() {
    let mut device = pin_device();
    let registered = register(&mut device, make_credential_params(RP, b"u", &[ES256]));
    let token = token(&mut device, 2, b"1234", Some(MC | GA), Some(RP)).unwrap();
    device.platform_mut().presence.calls.clear();
    // up=false (a platform pre-flighting an excludeList): UV without UP, nobody asked, and the
    // token stays usable for the makeCredential that follows.
    for _ in 0..2 {
        let params = silent(ga_with_token(2, &token, RP, &[&registered.credential_id]));
        let (code, body) = send(&mut device, &request(2, params));
        assert_eq!(code, 0);
        let ad = check_assertion(&body.unwrap(), &registered.public_key, &client_data_hash(2));
        assert_eq!(ad.flags, UV);
    }
    assert!(device.platform().presence.calls.is_empty());
    register(&mut device, mc_with_token(2, &token, RP, b"u2", false));
}

#[test]
fn cred_protect_three_is_visible_with_a_token() {
    let mut device = pin_device();
    let token = token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    let params = with(
        mc_with_token(2, &token, RP, b"u", true),
        6,
        tmap(&[("credProtect", int(3))]),
    );
    let registered = register(&mut device, params);
    let id = registered.credential_id.clone();
    for allow in [vec![], vec![id.as_slice()]] {
        assert_eq!(
            send(&mut device, &request(2, get_assertion_params(RP, &allow))).0,
            status(StatusCode::NoCredentials)
        );
        let token = self::token(&mut device, 1, b"1234", Some(GA), Some(RP)).unwrap();
        let (code, body) = send(
            &mut device,
            &request(2, ga_with_token(1, &token, RP, &allow)),
        );
        assert_eq!(code, 0);
        check_assertion(&body.unwrap(), &registered.public_key, &client_data_hash(2));
    }
    // The excludeList sees it too, with UV.
    let token = self::token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    let params = with(
        mc_with_token(2, &token, RP, b"u9", false),
        5,
        Value::Array(vec![tmap(&[
            ("id", Value::Bytes(id)),
            ("type", text("public-key")),
        ])]),
    );
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::CredentialExcluded)
    );
}

#[test]
fn tokens_expire() {
    let mut device = pin_device();
    let registered = register(&mut device, make_credential_params(RP, b"u", &[ES256]));
    let id = registered.credential_id.clone();
    let clock = |device: &mut Device, ms| device.platform().clock.advance(ms);
    // Unused for more than 30 s.
    let token = token(&mut device, 2, b"1234", Some(GA), Some(RP)).unwrap();
    clock(&mut device, 30_001);
    let ga = |device: &mut Device, token: &[u8]| {
        send(
            device,
            &request(2, silent(ga_with_token(2, token, RP, &[&id]))),
        )
        .0
    };
    assert_eq!(ga(&mut device, &token), status(StatusCode::PinAuthInvalid));
    // Each use restarts the 30 s, for at most ten minutes.
    let token = self::token(&mut device, 2, b"1234", Some(GA), Some(RP)).unwrap();
    clock(&mut device, 30_000);
    assert_eq!(ga(&mut device, &token), 0);
    for _ in 0..18 {
        clock(&mut device, 30_000);
        assert_eq!(ga(&mut device, &token), 0);
    }
    clock(&mut device, 30_000); // 600 000 ms after issuance: still valid
    assert_eq!(ga(&mut device, &token), 0);
    clock(&mut device, 1);
    assert_eq!(ga(&mut device, &token), status(StatusCode::PinAuthInvalid));
}

#[test]
fn power_cycle_and_new_tokens_invalidate_tokens() {
    let mut device = pin_device();
    let token = token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    device.power_cycle();
    assert_eq!(
        send(
            &mut device,
            &request(1, mc_with_token(2, &token, RP, b"u", false))
        )
        .0,
        status(StatusCode::PinAuthInvalid)
    );
    let first = self::token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    let second = self::token(&mut device, 1, b"1234", Some(MC), Some(RP)).unwrap();
    assert_ne!(first, second);
    assert_eq!(
        send(
            &mut device,
            &request(1, mc_with_token(2, &first, RP, b"u", false))
        )
        .0,
        status(StatusCode::PinAuthInvalid),
        "a new token replaces the old one"
    );
    register(&mut device, mc_with_token(1, &second, RP, b"u", false));
}

// ------------------------------------------------------------------ the pinUvAuth steps

#[test]
fn zero_length_pin_uv_auth_param_is_a_selection_probe() {
    let probe_mc = with(
        with(make_credential_params(RP, b"u", &[ES256]), 8, bytes(&[])),
        9,
        uint(1),
    );
    let probe_ga = with(get_assertion_params(RP, &[]), 6, bytes(&[]));
    for (command, params) in [(1u8, probe_mc), (2, probe_ga)] {
        let purpose = if command == 1 {
            PresencePurpose::MakeCredential
        } else {
            PresencePurpose::GetAssertion
        };
        let mut device = emulator();
        let probe = request(command, params.clone());
        assert_eq!(send(&mut device, &probe).0, status(StatusCode::PinNotSet));
        assert_eq!(
            presence_calls(&device),
            [(PresenceKind::UserPresence, purpose)]
        );
        for (outcome, expected) in [
            (PresenceOutcome::Denied, StatusCode::OperationDenied),
            (PresenceOutcome::TimedOut, StatusCode::OperationDenied),
            (PresenceOutcome::Cancelled, StatusCode::KeepaliveCancel),
        ] {
            device.platform_mut().presence.push(outcome);
            assert_eq!(send(&mut device, &probe).0, status(expected), "{outcome:?}");
        }
        assert_eq!(set_pin(&mut device, 2, b"1234"), 0);
        assert_eq!(send(&mut device, &probe).0, status(StatusCode::PinInvalid));
        assert_eq!(pin_retries(&mut device), (8, false), "no PIN was tried");
    }
}

#[test]
fn pin_uv_auth_protocol_checks() {
    let mut device = pin_device();
    let param = bytes(&[0x55; 32]);
    let mc = make_credential_params(RP, b"u", &[ES256]);
    let ga = get_assertion_params(RP, &[]);
    let cases = [
        (
            1u8,
            with(mc.clone(), 8, param.clone()),
            StatusCode::MissingParameter,
        ),
        (
            1,
            with(with(mc.clone(), 8, param.clone()), 9, uint(3)),
            StatusCode::InvalidParameter,
        ),
        (
            1,
            with(with(mc.clone(), 8, param.clone()), 9, int(-1)),
            StatusCode::InvalidParameter,
        ),
        (
            1,
            with(with(mc.clone(), 8, text("x")), 9, uint(2)),
            StatusCode::CborUnexpectedType,
        ),
        (
            1,
            with(with(mc.clone(), 8, param.clone()), 9, uint(2)),
            StatusCode::PinAuthInvalid,
        ),
        (
            2,
            with(ga.clone(), 6, param.clone()),
            StatusCode::MissingParameter,
        ),
        (
            2,
            with(with(ga.clone(), 6, param.clone()), 7, uint(0)),
            StatusCode::InvalidParameter,
        ),
        (
            2,
            with(with(ga.clone(), 6, param.clone()), 7, uint(1)),
            StatusCode::PinAuthInvalid,
        ),
    ];
    for (index, (command, params, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            send(&mut device, &request(command, params)).0,
            status(expected),
            "case {index}"
        );
    }
    assert!(device.platform().presence.calls.is_empty());
    // A pinUvAuthParam where no PIN (and no built-in UV) protects anything.
    let mut fresh = emulator();
    let params = with(with(mc, 8, param), 9, uint(2));
    assert_eq!(
        send(&mut fresh, &request(1, params)).0,
        status(StatusCode::PinNotSet)
    );
}

#[test]
fn puat_required_for_discoverable_credentials_once_a_pin_is_set() {
    let mut device = pin_device();
    device.platform_mut().presence.calls.clear();
    let rk = with(
        make_credential_params(RP, b"u", &[ES256]),
        7,
        tmap(&[("rk", Value::Bool(true))]),
    );
    assert_eq!(
        send(&mut device, &request(1, rk)).0,
        status(StatusCode::PuatRequired)
    );
    assert!(
        device.platform().presence.calls.is_empty(),
        "refused before asking"
    );
    // makeCredUvNotRqd: a non-discoverable credential needs no token, and has no UV.
    let plain = register(&mut device, make_credential_params(RP, b"u", &[ES256]));
    assert_eq!(plain.auth_data.flags, UP | AT);
    // getAssertion without a token works too, without UV.
    let (code, body) = send(
        &mut device,
        &request(2, get_assertion_params(RP, &[&plain.credential_id])),
    );
    assert_eq!(code, 0);
    let ad = check_assertion(&body.unwrap(), &plain.public_key, &client_data_hash(2));
    assert_eq!(ad.flags, UP);
}

#[test]
fn uv_option_without_built_in_uv_and_next_to_a_token() {
    let mut device = pin_device();
    let uv = with(
        make_credential_params(RP, b"u", &[ES256]),
        7,
        tmap(&[("uv", Value::Bool(true))]),
    );
    assert_eq!(
        send(&mut device, &request(1, uv)).0,
        status(StatusCode::InvalidOption),
        "a PIN is not a built-in method"
    );
    // Next to a pinUvAuthParam the uv option is ignored.
    let token = token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    let params = with(
        mc_with_token(2, &token, RP, b"u", true),
        7,
        tmap(&[("rk", Value::Bool(true)), ("uv", Value::Bool(true))]),
    );
    let made = register(&mut device, params);
    assert_eq!(made.auth_data.flags, UP | UV | AT);
}

// ------------------------------------------------------------------ built-in UV

fn uv_device(state: BuiltInUv) -> Device {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = state;
    device
}

#[test]
fn built_in_uv_token() {
    let mut device = uv_device(BuiltInUv::Configured);
    assert_eq!(uv_retries(&mut device), Ok(8));
    let token = uv_token(&mut device, 2, MC | GA, Some(RP)).unwrap();
    assert_eq!(
        presence_calls(&device),
        [(
            PresenceKind::UserVerification,
            PresencePurpose::GetPinUvAuthToken
        )]
    );
    assert_eq!(
        device.platform().presence.calls[0].rp_id.as_deref(),
        Some(RP)
    );
    // Built-in UV proved presence: the makeCredential within 30 s needs no touch.
    let made = register(&mut device, mc_with_token(2, &token, RP, b"u", true));
    assert_eq!(made.auth_data.flags, UP | UV | AT);
    assert_eq!(presence_calls(&device).len(), 1);
    // Used up.
    assert_eq!(
        send(&mut device, &request(2, ga_with_token(2, &token, RP, &[]))).0,
        status(StatusCode::PinAuthInvalid)
    );
    // After 30 s the cached presence is gone, the token (used since) is not.
    let token = uv_token(&mut device, 1, GA, Some(RP)).unwrap();
    device.platform().clock.advance(20_000);
    let params = silent(ga_with_token(1, &token, RP, &[]));
    assert_eq!(send(&mut device, &request(2, params)).0, 0);
    device.platform().clock.advance(11_000);
    device.platform_mut().presence.calls.clear();
    let (code, body) = send(&mut device, &request(2, ga_with_token(1, &token, RP, &[])));
    assert_eq!(code, 0);
    let ad = parse_auth_data(&bytes_of(member(&body.unwrap(), 2).unwrap()));
    assert_eq!(ad.flags, UP | UV);
    assert_eq!(
        presence_calls(&device),
        [(PresenceKind::UserPresence, PresencePurpose::GetAssertion)]
    );
}

#[test]
fn built_in_uv_token_errors() {
    // No built-in method: the subcommands do not exist.
    let mut none = uv_device(BuiltInUv::Unsupported);
    assert_eq!(
        uv_token(&mut none, 2, MC, Some(RP)),
        Err(status(StatusCode::InvalidSubcommand))
    );
    assert_eq!(
        uv_retries(&mut none),
        Err(status(StatusCode::InvalidSubcommand))
    );
    // A method with nothing enrolled.
    let mut unenrolled = uv_device(BuiltInUv::NotConfigured);
    assert_eq!(
        uv_token(&mut unenrolled, 2, MC, Some(RP)),
        Err(status(StatusCode::NotAllowed))
    );
    assert_eq!(uv_retries(&mut unenrolled), Ok(8));

    let mut device = uv_device(BuiltInUv::Configured);
    let s = session(&mut device, 2);
    let good = vec![
        entry(1, uint(2)),
        entry(2, uint(6)),
        entry(3, s.key_agreement.clone()),
        entry(9, uint(MC)),
        entry(10, text(RP)),
    ];
    let cases = [
        (
            "no keyAgreement",
            without(good.clone(), 3),
            StatusCode::MissingParameter,
        ),
        (
            "no permissions",
            without(good.clone(), 9),
            StatusCode::MissingParameter,
        ),
        (
            "no protocol",
            without(good.clone(), 1),
            StatusCode::MissingParameter,
        ),
        (
            "protocol 9",
            with(good.clone(), 1, uint(9)),
            StatusCode::InvalidParameter,
        ),
        (
            "permissions 0",
            with(good.clone(), 9, uint(0)),
            StatusCode::InvalidParameter,
        ),
        (
            "be",
            with(good.clone(), 9, uint(BE)),
            StatusCode::UnauthorizedPermission,
        ),
        (
            "mc without rpId",
            without(good.clone(), 10),
            StatusCode::InvalidParameter,
        ),
        (
            "keyAgreement off the curve",
            with(
                good.clone(),
                3,
                Value::Map(vec![
                    (int(1), int(2)),
                    (int(-1), int(1)),
                    (int(-2), bytes(&[1; 32])),
                    (int(-3), bytes(&[2; 32])),
                ]),
            ),
            StatusCode::InvalidParameter,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            client_pin(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    assert!(device.platform().presence.calls.is_empty());
    for (outcome, expected) in [
        (PresenceOutcome::Denied, StatusCode::OperationDenied),
        (PresenceOutcome::TimedOut, StatusCode::UserActionTimeout),
        (PresenceOutcome::Cancelled, StatusCode::KeepaliveCancel),
    ] {
        device.platform_mut().presence.push(outcome);
        assert_eq!(
            uv_token(&mut device, 2, MC, Some(RP)),
            Err(status(expected)),
            "{outcome:?}"
        );
    }
    assert_eq!(uv_retries(&mut device), Ok(8), "only a failed match counts");
}

#[test]
fn uv_retries_count_down_to_blocked() {
    let mut device = uv_device(BuiltInUv::Configured);
    // Two failures, then a match restores the count.
    for expected in [7, 6] {
        device
            .platform_mut()
            .presence
            .push(PresenceOutcome::VerificationFailed);
        assert_eq!(
            uv_token(&mut device, 2, GA, Some(RP)),
            Err(status(StatusCode::UvInvalid))
        );
        assert_eq!(uv_retries(&mut device), Ok(expected));
    }
    assert!(uv_token(&mut device, 2, GA, Some(RP)).is_ok());
    assert_eq!(uv_retries(&mut device), Ok(8));
    // makeCredential's uv option counts down the same retries.
    let uv = with(
        make_credential_params(RP, b"u", &[ES256]),
        7,
        tmap(&[("uv", Value::Bool(true))]),
    );
    for left in (0..8).rev() {
        device
            .platform_mut()
            .presence
            .push(PresenceOutcome::VerificationFailed);
        let expected = if left == 0 {
            StatusCode::UvBlocked
        } else {
            StatusCode::UvInvalid
        };
        assert_eq!(
            send(&mut device, &request(1, uv.clone())).0,
            status(expected)
        );
        assert_eq!(uv_retries(&mut device), Ok(left));
    }
    // Blocked: nobody is asked any more, not even after a power cycle.
    device.power_cycle();
    device.platform_mut().presence.calls.clear();
    assert_eq!(
        uv_token(&mut device, 2, GA, Some(RP)),
        Err(status(StatusCode::UvBlocked))
    );
    assert_eq!(
        send(&mut device, &request(1, uv)).0,
        status(StatusCode::UvBlocked)
    );
    assert!(device.platform().presence.calls.is_empty());
    // The platform falls back to the PIN.
    assert_eq!(set_pin(&mut device, 2, b"1234"), 0);
    let token = token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    register(&mut device, mc_with_token(2, &token, RP, b"u", true));
}

// ------------------------------------------------------------------ forcePINChange, alwaysUv

#[test]
fn force_pin_change() {
    let mut device = pin_device();
    edit_pin_record(&mut device, |r| r.force_pin_change = true);
    // The PIN is right (the retries are restored), but no token until it changes.
    assert!(token(&mut device, 2, b"0000", None, None).is_err());
    assert_eq!(
        token(&mut device, 2, b"1234", None, None),
        Err(status(StatusCode::PinInvalid)),
        "getPinToken"
    );
    assert_eq!(
        token(&mut device, 1, b"1234", Some(MC), Some(RP)),
        Err(status(StatusCode::PinPolicyViolation)),
        "getPinUvAuthTokenUsingPinWithPermissions"
    );
    assert_eq!(pin_retries(&mut device), (8, false));
    // Changing it to itself changes nothing.
    assert_eq!(
        change_pin(&mut device, 2, b"1234", b"1234"),
        status(StatusCode::PinPolicyViolation)
    );
    assert_eq!(change_pin(&mut device, 2, b"1234", b"8642"), 0);
    assert_eq!(member(&info(&mut device), 0x0C), Some(&Value::Bool(false)));
    assert!(token(&mut device, 2, b"8642", Some(MC), Some(RP)).is_ok());
    // Without the flag, the same PIN again is fine.
    assert_eq!(change_pin(&mut device, 1, b"8642", b"8642"), 0);
}

#[test]
fn always_uv() {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.always_uv = true;
    let mut device = device(config);
    assert_eq!(option(&mut device, "alwaysUv"), Some(Value::Bool(true)));
    assert_eq!(
        option(&mut device, "makeCredUvNotRqd"),
        Some(Value::Bool(false))
    );
    let plain = make_credential_params(RP, b"u", &[ES256]);
    // Nothing to verify the user with yet.
    assert_eq!(
        send(&mut device, &request(1, plain.clone())).0,
        status(StatusCode::PinNotSet)
    );
    assert_eq!(set_pin(&mut device, 2, b"1234"), 0);
    assert_eq!(
        send(&mut device, &request(1, plain.clone())).0,
        status(StatusCode::PuatRequired)
    );
    let token = token(&mut device, 2, b"1234", Some(MC | GA), Some(RP)).unwrap();
    let id = register(&mut device, mc_with_token(2, &token, RP, b"u", false)).credential_id;
    assert_eq!(
        send(&mut device, &request(2, get_assertion_params(RP, &[&id]))).0,
        status(StatusCode::PuatRequired)
    );
    // A silent assertion (no presence) is not covered by alwaysUv.
    assert_eq!(
        send(
            &mut device,
            &request(2, silent(get_assertion_params(RP, &[&id])))
        )
        .0,
        0
    );
    // With built-in UV enrolled, the authenticator verifies by itself.
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    device.platform_mut().presence.calls.clear();
    let made = register(&mut device, plain);
    assert_eq!(made.auth_data.flags, UP | UV | AT);
    assert_eq!(
        presence_calls(&device),
        [(
            PresenceKind::UserVerification,
            PresencePurpose::MakeCredential
        )]
    );
}

#[test]
fn debug_output_shows_no_pin_secrets() {
    let mut device = pin_device();
    let token = token(&mut device, 2, b"1234", Some(MC), Some(RP)).unwrap();
    let shown = format!("{:?}", device);
    assert!(shown.contains("PinState"));
    assert!(!shown.contains(&format!("{token:?}")), "token value");
    let record = format!(
        "{:?}",
        PinRecord::from_bytes(&device.platform().store.get(b"m/pin").unwrap().unwrap()).unwrap()
    );
    assert!(
        !record.contains(&format!("{:?}", pin_hash(b"1234"))),
        "{record}"
    );
}
