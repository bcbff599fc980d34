//! Every command on the deterministic double, including its error cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::Value;
use authenticator_core::platform::{BuiltInUv, PresenceKind, PresenceOutcome, Store};
use authenticator_core::{Config, CounterMode, StatusCode, block_on};
use common::*;

const ES256: i64 = -7;
const EDDSA: i64 = -8;

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

// ---------------------------------------------------------------- framing and dispatch

#[test]
fn empty_unknown_and_malformed_requests() {
    let mut device = emulator();
    assert_eq!(send(&mut device, &[]).0, status(StatusCode::InvalidLength));
    assert_eq!(
        send(&mut device, &[0x55]).0,
        status(StatusCode::InvalidCommand)
    );
    assert_eq!(
        send(&mut device, &[0x01, 0xA1]).0,
        status(StatusCode::InvalidCbor)
    );
    assert_eq!(
        send(&mut device, &[0x01, 0xA0, 0x00]).0,
        status(StatusCode::InvalidCbor)
    );
    // A request that is not a map.
    assert_eq!(
        send(&mut device, &[0x01, 0x80]).0,
        status(StatusCode::CborUnexpectedType)
    );
    // makeCredential with no parameters at all.
    assert_eq!(
        send(&mut device, &[0x01]).0,
        status(StatusCode::MissingParameter)
    );
}

#[test]
fn oversized_requests_are_refused() {
    let mut device = emulator();
    let mut big = vec![0x04];
    big.resize(7610, 0);
    assert_eq!(
        send(&mut device, &big).0,
        status(StatusCode::RequestTooLarge)
    );
}

// ---------------------------------------------------------------- getInfo

#[test]
fn get_info_reports_what_is_implemented() {
    let mut device = emulator();
    let (code, body) = send(&mut device, &[0x04]);
    assert_eq!(code, 0);
    let info = body.unwrap();
    assert_eq!(
        member(&info, 1),
        Some(&Value::Array(vec![
            text("U2F_V2"),
            text("FIDO_2_0"),
            text("FIDO_2_1")
        ]))
    );
    assert_eq!(
        member(&info, 3),
        Some(&Value::Bytes(Config::security_key().aaguid.to_vec()))
    );
    let options = member(&info, 4).unwrap();
    assert_eq!(text_member(options, "rk"), Some(&Value::Bool(true)));
    assert_eq!(text_member(options, "up"), Some(&Value::Bool(true)));
    assert_eq!(text_member(options, "plat"), Some(&Value::Bool(false)));
    assert_eq!(
        text_member(options, "uv"),
        None,
        "no built-in UV, so no uv option"
    );
    // PIN/UV auth: supported, no PIN yet; tokens; non-discoverable credentials without UV.
    assert_eq!(text_member(options, "clientPin"), Some(&Value::Bool(false)));
    assert_eq!(
        text_member(options, "pinUvAuthToken"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        text_member(options, "makeCredUvNotRqd"),
        Some(&Value::Bool(true))
    );
    // No built-in method to enroll, and PIN tokens carry mc/ga.
    for absent in ["bioEnroll", "noMcGaPermissionsWithClientPin"] {
        assert_eq!(text_member(options, absent), None, "{absent}");
    }
    assert_ne!(
        text_member(options, "alwaysUv"),
        Some(&Value::Bool(true)),
        "alwaysUv is off by default"
    );
    assert_eq!(
        member(&info, 6),
        Some(&Value::Array(vec![int(2), int(1)])),
        "pinUvAuthProtocols, two preferred"
    );
    assert_eq!(
        member(&info, 0x0C),
        Some(&Value::Bool(false)),
        "forcePINChange"
    );
    assert_eq!(member(&info, 0x0D), Some(&int(4)), "minPINLength");
    assert_eq!(member(&info, 5), Some(&int(7609)));
    assert_eq!(member(&info, 8), Some(&int(64)));
    assert_eq!(member(&info, 0x14), Some(&int(100)));
    let algs = member(&info, 0x0A).unwrap();
    assert_eq!(
        algs,
        &Value::Array(vec![
            tmap(&[("alg", int(ES256)), ("type", text("public-key"))]),
            tmap(&[("alg", int(EDDSA)), ("type", text("public-key"))]),
        ])
    );
}

#[test]
fn get_info_uv_option_follows_built_in_uv() {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::NotConfigured;
    let info = send(&mut device, &[0x04]).1.unwrap();
    assert_eq!(
        text_member(member(&info, 4).unwrap(), "uv"),
        Some(&Value::Bool(false))
    );
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let info = send(&mut device, &[0x04]).1.unwrap();
    assert_eq!(
        text_member(member(&info, 4).unwrap(), "uv"),
        Some(&Value::Bool(true))
    );
}

#[test]
fn get_info_is_canonical_cbor() {
    let mut device = emulator();
    let response = block_on(device.process(&[0x04]));
    let value = authenticator_core::cbor::decode(&response[1..]).unwrap();
    // Re-encoding through the canonical builder gives the same bytes.
    let Value::Map(entries) = value.clone() else {
        panic!()
    };
    let canonical = authenticator_core::cbor::to_vec(&authenticator_core::cbor::map(entries));
    assert_eq!(canonical, response[1..]);
}

// ---------------------------------------------------------------- makeCredential

#[test]
fn make_credential_es256_packed_self() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[ES256]),
    );
    let ad = &registered.auth_data;
    assert_eq!(
        ad.rp_id_hash,
        authenticator_core::authenticator::rp_id_hash("example.com")
    );
    assert_eq!(ad.flags, 0x41, "UP and AT only");
    assert_eq!(ad.sign_count, 1, "global counter advanced");
    assert_eq!(ad.aaguid, Some(Config::security_key().aaguid));
    assert_eq!(registered.credential_id.len(), 64);
    assert_eq!(member(&registered.public_key, 3), Some(&int(ES256)));
    // Non-discoverable: nothing stored but the master key and the counter.
    assert_eq!(device.platform().store.len(), 2);
}

#[test]
fn algorithm_follows_the_rps_order() {
    let mut device = emulator();
    let first = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[EDDSA, ES256]),
    );
    assert_eq!(member(&first.public_key, 3), Some(&int(EDDSA)));
    let second = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[-257, ES256, EDDSA]),
    );
    assert_eq!(member(&second.public_key, 3), Some(&int(ES256)));
}

#[test]
fn unsupported_algorithms_and_types() {
    let mut device = emulator();
    let params = make_credential_params("example.com", b"u1", &[-257, -35]);
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::UnsupportedAlgorithm)
    );
    // An entry of another type is skipped, even with a known algorithm.
    let params = with(
        make_credential_params("example.com", b"u1", &[]),
        4,
        Value::Array(vec![tmap(&[
            ("alg", int(ES256)),
            ("type", text("password")),
        ])]),
    );
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::UnsupportedAlgorithm)
    );
    // Disabled algorithms are not chosen.
    device.config_mut().algorithms.eddsa = false;
    let params = make_credential_params("example.com", b"u1", &[EDDSA]);
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::UnsupportedAlgorithm)
    );
}

#[test]
fn make_credential_missing_and_mistyped_parameters() {
    let mut device = emulator();
    let base = || make_credential_params("example.com", b"u1", &[ES256]);
    let missing = StatusCode::MissingParameter;
    let mistyped = StatusCode::CborUnexpectedType;
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        ("no clientDataHash", without(base(), 1), missing),
        ("no rp", without(base(), 2), missing),
        ("no user", without(base(), 3), missing),
        ("no pubKeyCredParams", without(base(), 4), missing),
        ("clientDataHash text", with(base(), 1, text("x")), mistyped),
        (
            "rp not a map",
            with(base(), 2, text("example.com")),
            mistyped,
        ),
        (
            "rp without id",
            with(base(), 2, tmap(&[("name", text("x"))])),
            missing,
        ),
        (
            "rp id bytes",
            with(base(), 2, tmap(&[("id", Value::Bytes(vec![1]))])),
            mistyped,
        ),
        (
            "user id text",
            with(base(), 3, tmap(&[("id", text("u1"))])),
            mistyped,
        ),
        (
            "user without id",
            with(base(), 3, tmap(&[("name", text("a"))])),
            missing,
        ),
        (
            "user name int",
            with(
                base(),
                3,
                tmap(&[("id", Value::Bytes(vec![1])), ("name", int(1))]),
            ),
            mistyped,
        ),
        ("params not array", with(base(), 4, tmap(&[])), mistyped),
        (
            "param without alg",
            with(
                base(),
                4,
                Value::Array(vec![tmap(&[("type", text("public-key"))])]),
            ),
            missing,
        ),
        (
            "param alg text",
            with(
                base(),
                4,
                Value::Array(vec![tmap(&[
                    ("alg", text("ES256")),
                    ("type", text("public-key")),
                ])]),
            ),
            mistyped,
        ),
        ("excludeList not array", with(base(), 5, int(1)), mistyped),
        (
            "exclude descriptor without id",
            with(
                base(),
                5,
                Value::Array(vec![tmap(&[("type", text("public-key"))])]),
            ),
            missing,
        ),
        ("extensions not map", with(base(), 6, int(1)), mistyped),
        ("options not map", with(base(), 7, int(1)), mistyped),
        (
            "option rk not bool",
            with(base(), 7, tmap(&[("rk", int(1))])),
            mistyped,
        ),
        (
            "pinUvAuthParam without protocol",
            with(base(), 8, Value::Bytes(vec![0; 16])),
            missing,
        ),
        (
            "pinUvAuthProtocol text",
            with(base(), 9, text("2")),
            mistyped,
        ),
    ];
    for (name, params, expected) in cases {
        let (code, _) = send(&mut device, &request(1, params));
        assert_eq!(code, status(expected), "{name}");
    }
    // Nothing asked the user for presence on any malformed request.
    assert!(device.platform().presence.calls.is_empty());
}

#[test]
fn user_id_length_is_checked() {
    let mut device = emulator();
    for (len, expected) in [
        (0, StatusCode::InvalidLength),
        (65, StatusCode::InvalidLength),
    ] {
        let params = make_credential_params("example.com", &vec![1; len], &[ES256]);
        assert_eq!(
            send(&mut device, &request(1, params)).0,
            status(expected),
            "len {len}"
        );
    }
    register(
        &mut device,
        make_credential_params("example.com", &[1; 64], &[ES256]),
    );
}

#[test]
fn make_credential_options() {
    let mut device = emulator();
    let base = || make_credential_params("example.com", b"u1", &[ES256]);
    // up=false is invalid for makeCredential; up=true is redundant and fine.
    let up_false = with(base(), 7, tmap(&[("up", Value::Bool(false))]));
    assert_eq!(
        send(&mut device, &request(1, up_false)).0,
        status(StatusCode::InvalidOption)
    );
    register(
        &mut device,
        with(base(), 7, tmap(&[("up", Value::Bool(true))])),
    );
    // uv=true without a configured built-in method.
    let uv = with(base(), 7, tmap(&[("uv", Value::Bool(true))]));
    assert_eq!(
        send(&mut device, &request(1, uv.clone())).0,
        status(StatusCode::InvalidOption)
    );
    device.platform_mut().presence.built_in_uv = BuiltInUv::NotConfigured;
    assert_eq!(
        send(&mut device, &request(1, uv.clone())).0,
        status(StatusCode::InvalidOption)
    );
    // With built-in UV configured: one verification request, UV and UP set.
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    device.platform_mut().presence.calls.clear();
    let registered = register(&mut device, uv);
    assert_eq!(registered.auth_data.flags & 0x05, 0x05);
    let calls = &device.platform().presence.calls;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind, PresenceKind::UserVerification);
    assert_eq!(calls[0].rp_id.as_deref(), Some("example.com"));
    // Unknown options are ignored.
    register(
        &mut device,
        with(base(), 7, tmap(&[("future", Value::Bool(true))])),
    );
    // Enterprise attestation is not enabled.
    assert_eq!(
        send(&mut device, &request(1, with(base(), 10, int(1)))).0,
        status(StatusCode::InvalidParameter)
    );
}

#[test]
fn presence_outcomes_map_to_status_codes() {
    let mut device = emulator();
    let params = make_credential_params("example.com", b"u1", &[ES256]);
    for (outcome, expected) in [
        (PresenceOutcome::Denied, StatusCode::OperationDenied),
        (PresenceOutcome::TimedOut, StatusCode::UserActionTimeout),
        (PresenceOutcome::Cancelled, StatusCode::KeepaliveCancel),
    ] {
        device.platform_mut().presence.push(outcome);
        assert_eq!(
            send(&mut device, &request(1, params.clone())).0,
            status(expected),
            "{outcome:?}"
        );
    }
    // A failed built-in verification.
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    device
        .platform_mut()
        .presence
        .push(PresenceOutcome::VerificationFailed);
    let uv = with(params, 7, tmap(&[("uv", Value::Bool(true))]));
    assert_eq!(
        send(&mut device, &request(1, uv)).0,
        status(StatusCode::UvInvalid)
    );
    // Nothing was stored by the refused ceremonies.
    assert_eq!(
        device.platform().store.get(b"m/resident-count").unwrap(),
        None
    );
}

#[test]
fn excluded_credential_is_reported_after_presence() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[ES256]),
    );
    let descriptor = tmap(&[
        ("id", Value::Bytes(registered.credential_id.clone())),
        ("type", text("public-key")),
    ]);
    let params = with(
        make_credential_params("example.com", b"u2", &[ES256]),
        5,
        Value::Array(vec![descriptor.clone()]),
    );
    device.platform_mut().presence.calls.clear();
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::CredentialExcluded)
    );
    assert_eq!(
        device.platform().presence.calls.len(),
        1,
        "presence collected first"
    );
    // The same ID excludes nothing at another RP.
    let other = with(
        make_credential_params("other.com", b"u2", &[ES256]),
        5,
        Value::Array(vec![descriptor]),
    );
    register(&mut device, other);
    // Foreign IDs are ignored.
    let foreign = tmap(&[
        ("id", Value::Bytes(vec![0xAA; 64])),
        ("type", text("public-key")),
    ]);
    register(
        &mut device,
        with(
            make_credential_params("example.com", b"u3", &[ES256]),
            5,
            Value::Array(vec![foreign]),
        ),
    );
}

#[test]
fn excluded_credential_whatever_the_presence_outcome() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[ES256]),
    );
    let descriptor = tmap(&[
        ("id", Value::Bytes(registered.credential_id)),
        ("type", text("public-key")),
    ]);
    let params = with(
        make_credential_params("example.com", b"u2", &[ES256]),
        5,
        Value::Array(vec![descriptor]),
    );
    for outcome in [PresenceOutcome::Denied, PresenceOutcome::TimedOut] {
        device.platform_mut().presence.push(outcome);
        let code = send(&mut device, &request(1, params.clone())).0;
        assert_eq!(code, status(StatusCode::CredentialExcluded), "{outcome:?}");
    }
    device
        .platform_mut()
        .presence
        .push(PresenceOutcome::Cancelled);
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::KeepaliveCancel)
    );
}

#[test]
fn long_credential_lists_are_refused() {
    let mut device = emulator();
    let descriptors = (0..17)
        .map(|i| {
            tmap(&[
                ("id", Value::Bytes(vec![i; 64])),
                ("type", text("public-key")),
            ])
        })
        .collect();
    let params = with(
        make_credential_params("example.com", b"u", &[ES256]),
        5,
        Value::Array(descriptors),
    );
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::RequestTooLarge)
    );
}

#[test]
fn attestation_none_on_request_and_by_setting() {
    let mut device = emulator();
    let params = with(
        make_credential_params("example.com", b"u1", &[ES256]),
        0x0B,
        Value::Array(vec![text("tpm"), text("none"), text("packed")]),
    );
    let (code, body) = send(&mut device, &request(1, params));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 1), Some(&text("none")));
    assert_eq!(member(&body, 3), Some(&Value::Map(vec![])));
    // Preference of only unknown formats falls back to the default (packed).
    let params = with(
        make_credential_params("example.com", b"u1", &[ES256]),
        0x0B,
        Value::Array(vec![text("tpm")]),
    );
    let body = send(&mut device, &request(1, params)).1.unwrap();
    assert_eq!(member(&body, 1), Some(&text("packed")));
    // A synced-passkey profile attests "none" by default.
    let mut passkey = device_with(Config::synced_passkey());
    let body = send(
        &mut passkey,
        &request(1, make_credential_params("example.com", b"u1", &[ES256])),
    )
    .1
    .unwrap();
    assert_eq!(member(&body, 1), Some(&text("none")));
    let ad = parse_auth_data(&bytes_of(member(&body, 2).unwrap()));
    assert_eq!(ad.flags, 0x41 | 0x08 | 0x10, "BE and BS");
    assert_eq!(ad.sign_count, 0);
}

fn device_with(config: Config) -> Device {
    device(config)
}

#[test]
fn cred_protect_extension_sets_ed() {
    let mut device = emulator();
    let params = with(
        make_credential_params("example.com", b"u1", &[ES256]),
        6,
        tmap(&[("credProtect", int(2))]),
    );
    let registered = register(&mut device, params);
    assert_eq!(registered.auth_data.flags & 0x80, 0x80);
    assert_eq!(
        registered.auth_data.extensions,
        Some(tmap(&[("credProtect", int(2))]))
    );
    let bad = with(
        make_credential_params("example.com", b"u1", &[ES256]),
        6,
        tmap(&[("credProtect", int(4))]),
    );
    assert_eq!(
        send(&mut device, &request(1, bad)).0,
        status(StatusCode::InvalidOption)
    );
    // Unknown extensions are ignored, without ED.
    let unknown = with(
        make_credential_params("example.com", b"u1", &[ES256]),
        6,
        tmap(&[("future", int(1))]),
    );
    assert_eq!(register(&mut device, unknown).auth_data.flags & 0x80, 0);
}

// ---------------------------------------------------------------- discoverable credentials

fn rk(params: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    with(params, 7, tmap(&[("rk", Value::Bool(true))]))
}

fn remaining(device: &mut Device) -> Value {
    member(&send(device, &[0x04]).1.unwrap(), 0x14)
        .unwrap()
        .clone()
}

#[test]
fn resident_credentials_are_stored_overwritten_and_counted() {
    let mut device = emulator();
    assert_eq!(remaining(&mut device), int(100));
    let first = register(
        &mut device,
        rk(make_credential_params("example.com", b"alice", &[ES256])),
    );
    assert_eq!(remaining(&mut device), int(99));
    register(
        &mut device,
        rk(make_credential_params("example.com", b"bob", &[ES256])),
    );
    assert_eq!(remaining(&mut device), int(98));
    // Same RP and user: replaces, count unchanged, old ID no longer works.
    let replacement = register(
        &mut device,
        rk(make_credential_params("example.com", b"alice", &[EDDSA])),
    );
    assert_eq!(remaining(&mut device), int(98));
    let (code, _) = send(
        &mut device,
        &request(
            2,
            get_assertion_params("example.com", &[&first.credential_id]),
        ),
    );
    assert_eq!(
        code,
        status(StatusCode::NoCredentials),
        "replaced passkey is gone"
    );
    let (code, body) = send(
        &mut device,
        &request(
            2,
            get_assertion_params("example.com", &[&replacement.credential_id]),
        ),
    );
    assert_eq!(code, 0);
    check_assertion(
        &body.unwrap(),
        &replacement.public_key,
        &client_data_hash(2),
    );
}

#[test]
fn key_store_full() {
    let mut config = Config::security_key();
    config.max_discoverable_credentials = 2;
    let mut device = device(config);
    register(
        &mut device,
        rk(make_credential_params("a.com", b"1", &[ES256])),
    );
    register(
        &mut device,
        rk(make_credential_params("a.com", b"2", &[ES256])),
    );
    assert_eq!(remaining(&mut device), int(0));
    let params = rk(make_credential_params("a.com", b"3", &[ES256]));
    device.platform_mut().presence.calls.clear();
    assert_eq!(
        send(&mut device, &request(1, params)).0,
        status(StatusCode::KeyStoreFull)
    );
    assert!(
        device.platform().presence.calls.is_empty(),
        "refused before asking the user"
    );
    // Replacing an existing account still works when full; non-resident too.
    register(
        &mut device,
        rk(make_credential_params("a.com", b"2", &[ES256])),
    );
    register(&mut device, make_credential_params("a.com", b"3", &[ES256]));
}

#[test]
fn discovery_returns_newest_first_then_next_assertions() {
    let mut device = emulator();
    let users: [&[u8]; 3] = [b"u1", b"u2", b"u3"];
    let registered: Vec<_> = users
        .iter()
        .map(|user| {
            register(
                &mut device,
                rk(make_credential_params("example.com", user, &[ES256])),
            )
        })
        .collect();
    register(
        &mut device,
        rk(make_credential_params("other.com", b"u9", &[ES256])),
    );

    let (code, body) = send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[])),
    );
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 5), Some(&int(3)), "numberOfCredentials");
    let user = member(&body, 4).unwrap();
    assert_eq!(
        user,
        &tmap(&[("id", Value::Bytes(b"u3".to_vec()))]),
        "newest first, no names without UV"
    );
    check_assertion(&body, &registered[2].public_key, &client_data_hash(2));

    for expected in [1usize, 0] {
        let (code, body) = send(&mut device, &[0x08]);
        assert_eq!(code, 0);
        let body = body.unwrap();
        assert_eq!(member(&body, 5), None, "no count on next assertions");
        assert_eq!(
            text_member(member(&body, 4).unwrap(), "id"),
            Some(&Value::Bytes(users[expected].to_vec()))
        );
        check_assertion(
            &body,
            &registered[expected].public_key,
            &client_data_hash(2),
        );
    }
    assert_eq!(send(&mut device, &[0x08]).0, status(StatusCode::NotAllowed));
}

#[test]
fn next_assertion_state_is_cleared_by_other_commands_and_time() {
    let mut device = emulator();
    for user in [b"u1", b"u2", b"u3"] {
        register(
            &mut device,
            rk(make_credential_params("example.com", user, &[ES256])),
        );
    }
    assert_eq!(
        send(&mut device, &[0x08]).0,
        status(StatusCode::NotAllowed),
        "no state"
    );
    send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[])),
    );
    send(&mut device, &[0x04]);
    assert_eq!(
        send(&mut device, &[0x08]).0,
        status(StatusCode::NotAllowed),
        "cleared by getInfo"
    );
    send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[])),
    );
    device.platform().clock.advance(30_001);
    assert_eq!(
        send(&mut device, &[0x08]).0,
        status(StatusCode::NotAllowed),
        "timed out"
    );
    send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[])),
    );
    device.platform().clock.advance(29_000);
    assert_eq!(send(&mut device, &[0x08]).0, 0, "within 30 s");
}

#[test]
fn names_are_returned_after_user_verification_and_truncated() {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let long_name = "é".repeat(40); // 80 bytes
    // With built-in UV enrolled the authenticator is protected: a discoverable credential
    // needs user verification (makeCredUvNotRqd).
    let params = with(
        with(
            make_credential_params("example.com", b"u1", &[ES256]),
            7,
            tmap(&[("rk", Value::Bool(true)), ("uv", Value::Bool(true))]),
        ),
        3,
        tmap(&[
            ("id", Value::Bytes(b"u1".to_vec())),
            ("name", text(&long_name)),
            ("displayName", text("Alice")),
        ]),
    );
    register(&mut device, params);
    let uv = with(
        get_assertion_params("example.com", &[]),
        5,
        tmap(&[("uv", Value::Bool(true))]),
    );
    let body = send(&mut device, &request(2, uv)).1.unwrap();
    let user = member(&body, 4).unwrap();
    assert_eq!(
        text_member(user, "name"),
        Some(&text(&"é".repeat(32))),
        "64 bytes at a char boundary"
    );
    assert_eq!(text_member(user, "displayName"), Some(&text("Alice")));
    let ad = parse_auth_data(&bytes_of(member(&body, 2).unwrap()));
    assert_eq!(ad.flags & 0x05, 0x05);
}

// ---------------------------------------------------------------- getAssertion

#[test]
fn get_assertion_with_allow_list_non_resident() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        make_credential_params("example.com", b"u1", &[EDDSA]),
    );
    let params = get_assertion_params("example.com", &[&[0xAB; 64], &registered.credential_id]);
    let (code, body) = send(&mut device, &request(2, params));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(
        text_member(member(&body, 1).unwrap(), "id"),
        Some(&Value::Bytes(registered.credential_id.clone()))
    );
    assert_eq!(
        member(&body, 4),
        None,
        "no user for a non-discoverable credential"
    );
    assert_eq!(member(&body, 5), None);
    let ad = check_assertion(&body, &registered.public_key, &client_data_hash(2));
    assert_eq!(ad.flags, 0x01);
    assert_eq!(
        ad.sign_count, 2,
        "global counter: registration 1, assertion 2"
    );
    // Bound to the RP: the same ID at another RP is not found.
    let other = get_assertion_params("other.com", &[&registered.credential_id]);
    assert_eq!(
        send(&mut device, &request(2, other)).0,
        status(StatusCode::NoCredentials)
    );
}

#[test]
fn no_credentials_is_reported_without_asking_the_user() {
    let mut device = emulator();
    let (code, _) = send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[])),
    );
    assert_eq!(code, status(StatusCode::NoCredentials));
    let (code, _) = send(
        &mut device,
        &request(2, get_assertion_params("example.com", &[&[1; 64]])),
    );
    assert_eq!(code, status(StatusCode::NoCredentials));
    assert!(device.platform().presence.calls.is_empty());
}

#[test]
fn get_assertion_parameters_and_options() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        rk(make_credential_params("example.com", b"u1", &[ES256])),
    );
    let base = || get_assertion_params("example.com", &[]);
    let cases = vec![
        ("no rpId", without(base(), 1), StatusCode::MissingParameter),
        (
            "no clientDataHash",
            without(base(), 2),
            StatusCode::MissingParameter,
        ),
        (
            "rpId bytes",
            with(base(), 1, Value::Bytes(vec![1])),
            StatusCode::CborUnexpectedType,
        ),
        (
            "allowList map",
            with(base(), 3, tmap(&[])),
            StatusCode::CborUnexpectedType,
        ),
        (
            "options not map",
            with(base(), 5, Value::Bool(true)),
            StatusCode::CborUnexpectedType,
        ),
        (
            "rk option",
            with(base(), 5, tmap(&[("rk", Value::Bool(true))])),
            StatusCode::UnsupportedOption,
        ),
        (
            "uv without method",
            with(base(), 5, tmap(&[("uv", Value::Bool(true))])),
            StatusCode::InvalidOption,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            send(&mut device, &request(2, params)).0,
            status(expected),
            "{name}"
        );
    }
    // up=false: a silent assertion, UP clear, nobody asked.
    device.platform_mut().presence.calls.clear();
    let silent = with(base(), 5, tmap(&[("up", Value::Bool(false))]));
    let body = send(&mut device, &request(2, silent)).1.unwrap();
    let ad = check_assertion(&body, &registered.public_key, &client_data_hash(2));
    assert_eq!(ad.flags & 0x01, 0);
    assert!(device.platform().presence.calls.is_empty());
}

#[test]
fn cred_protect_hides_credentials_without_uv() {
    let mut device = emulator();
    let level = |n: i64| tmap(&[("credProtect", int(n))]);
    let two = register(
        &mut device,
        with(
            rk(make_credential_params("example.com", b"u2", &[ES256])),
            6,
            level(2),
        ),
    );
    let three = register(
        &mut device,
        with(
            rk(make_credential_params("example.com", b"u3", &[ES256])),
            6,
            level(3),
        ),
    );
    // Discovery without UV sees neither level 2 nor level 3.
    assert_eq!(
        send(
            &mut device,
            &request(2, get_assertion_params("example.com", &[]))
        )
        .0,
        status(StatusCode::NoCredentials)
    );
    // With the ID, level 2 is usable, level 3 is not.
    assert_eq!(
        send(
            &mut device,
            &request(
                2,
                get_assertion_params("example.com", &[&two.credential_id])
            )
        )
        .0,
        0
    );
    assert_eq!(
        send(
            &mut device,
            &request(
                2,
                get_assertion_params("example.com", &[&three.credential_id])
            )
        )
        .0,
        status(StatusCode::NoCredentials)
    );
    // An excludeList does not reveal a level-3 credential without UV: registration goes on.
    let descriptor = tmap(&[
        ("id", Value::Bytes(three.credential_id.clone())),
        ("type", text("public-key")),
    ]);
    register(
        &mut device,
        with(
            make_credential_params("example.com", b"u4", &[ES256]),
            5,
            Value::Array(vec![descriptor]),
        ),
    );
    // With built-in UV both are discoverable.
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let uv = with(
        get_assertion_params("example.com", &[]),
        5,
        tmap(&[("uv", Value::Bool(true))]),
    );
    let body = send(&mut device, &request(2, uv)).1.unwrap();
    assert_eq!(member(&body, 5), Some(&int(2)));
}

#[test]
fn counter_modes() {
    // Per-credential: each credential counts its own signatures.
    let mut config = Config::security_key();
    config.counter = CounterMode::PerCredential;
    let mut device = device(config);
    let a = register(
        &mut device,
        rk(make_credential_params("example.com", b"a", &[ES256])),
    );
    let b = register(
        &mut device,
        make_credential_params("example.com", b"b", &[ES256]),
    );
    assert_eq!(a.auth_data.sign_count, 0);
    let count = |device: &mut Device, id: &[u8]| {
        let body = send(
            device,
            &request(2, get_assertion_params("example.com", &[id])),
        )
        .1
        .unwrap();
        parse_auth_data(&bytes_of(member(&body, 2).unwrap())).sign_count
    };
    assert_eq!(count(&mut device, &a.credential_id), 1);
    assert_eq!(count(&mut device, &a.credential_id), 2);
    assert_eq!(count(&mut device, &b.credential_id), 1);
    assert_eq!(count(&mut device, &a.credential_id), 3);
    // Always zero.
    device.config_mut().counter = CounterMode::AlwaysZero;
    assert_eq!(count(&mut device, &a.credential_id), 0);
    // Global: one sequence across credentials.
    device.config_mut().counter = CounterMode::Global;
    let first = count(&mut device, &a.credential_id);
    assert_eq!(count(&mut device, &b.credential_id), first + 1);
}

// ---------------------------------------------------------------- reset and selection

#[test]
fn reset_within_window_forgets_everything() {
    let mut device = device(Config::security_key());
    let resident = register(
        &mut device,
        rk(make_credential_params("example.com", b"u1", &[ES256])),
    );
    let plain = register(
        &mut device,
        make_credential_params("example.com", b"u2", &[ES256]),
    );
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    assert_eq!(remaining(&mut device), int(100));
    for id in [&resident.credential_id, &plain.credential_id] {
        let (code, _) = send(
            &mut device,
            &request(2, get_assertion_params("example.com", &[id])),
        );
        assert_eq!(
            code,
            status(StatusCode::NoCredentials),
            "old master key is gone"
        );
    }
}

#[test]
fn reset_outside_window_and_refusals() {
    let mut device = device(Config::security_key());
    device.platform().clock.advance(10_001);
    assert_eq!(send(&mut device, &[0x07]).0, status(StatusCode::NotAllowed));
    let mut device = device_with(Config::security_key());
    device.platform_mut().presence.push(PresenceOutcome::Denied);
    assert_eq!(
        send(&mut device, &[0x07]).0,
        status(StatusCode::OperationDenied)
    );
    device
        .platform_mut()
        .presence
        .push(PresenceOutcome::TimedOut);
    assert_eq!(
        send(&mut device, &[0x07]).0,
        status(StatusCode::UserActionTimeout)
    );
    // A power cycle opens a new window.
    let mut device = device_with(Config::security_key());
    device.platform().clock.advance(60_000);
    assert_eq!(send(&mut device, &[0x07]).0, status(StatusCode::NotAllowed));
    device.power_cycle();
    device.platform().clock.advance(9_000);
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    // Emulators may lift the window.
    let mut device = emulator();
    device.platform().clock.advance(3_600_000);
    assert_eq!(send(&mut device, &[0x07]).0, 0);
}

#[test]
fn selection_asks_for_presence() {
    let mut device = emulator();
    assert_eq!(send(&mut device, &[0x0B]).0, 0);
    device
        .platform_mut()
        .presence
        .push(PresenceOutcome::TimedOut);
    assert_eq!(
        send(&mut device, &[0x0B]).0,
        status(StatusCode::UserActionTimeout)
    );
    device
        .platform_mut()
        .presence
        .push(PresenceOutcome::Cancelled);
    assert_eq!(
        send(&mut device, &[0x0B]).0,
        status(StatusCode::KeepaliveCancel)
    );
}

// ---------------------------------------------------------------- attestation with x5c

#[test]
fn batch_attestation_signs_with_the_batch_key() {
    use authenticator_core::{AttestationMode, BatchAttestation};
    let batch_secret = [0x11u8; 32];
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.attestation = AttestationMode::Batch(BatchAttestation {
        private_key: zeroize::Zeroizing::new(batch_secret),
        certificates: vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]],
    });
    let mut device = device(config);
    let params = make_credential_params("example.com", b"u1", &[EDDSA]);
    let (code, body) = send(&mut device, &request(1, params));
    assert_eq!(code, 0);
    let body = body.unwrap();
    let statement = member(&body, 3).unwrap();
    assert_eq!(text_member(statement, "alg"), Some(&int(ES256)));
    assert_eq!(
        text_member(statement, "x5c"),
        Some(&Value::Array(vec![Value::Bytes(vec![
            0x30, 0x03, 0x02, 0x01, 0x01
        ])]))
    );
    let batch_key = authenticator_core::credential::PrivateKey::from_secret(
        authenticator_core::credential::Algorithm::Es256,
        &batch_secret,
    )
    .unwrap();
    let mut message = bytes_of(member(&body, 2).unwrap());
    message.extend(client_data_hash(1));
    verify(
        &batch_key.public_cose_key(),
        &message,
        &bytes_of(text_member(statement, "sig").unwrap()),
    );
}

// ---------------------------------------------------------------- determinism

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut device = emulator();
        let mut out = Vec::new();
        for request_bytes in [
            request(
                1,
                rk(make_credential_params("example.com", b"u1", &[ES256])),
            ),
            request(1, make_credential_params("example.com", b"u2", &[EDDSA])),
            request(2, get_assertion_params("example.com", &[])),
        ] {
            out.push(block_on(device.process(&request_bytes)));
        }
        out
    };
    assert_eq!(run(), run());
}
